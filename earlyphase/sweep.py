"""Sweep declarations: the grid of trials an experiment consists of (no Ray here).

A sweep is one :class:`~earlyphase.specs.RunSpec` crossed with seeds, rewind iterations and
interventions. The Ray layer turns it into stages of :class:`Trial`\\ s: one dense run per seed,
one IMP chain per (seed, k) reporting level by level, one branch trial per (seed, k, level,
intervention) on that level's mask, and optionally one telemetry run per seed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from earlyphase.errors import SpecError
from earlyphase.interventions import BASELINES, get_intervention
from earlyphase.specs import RunSpec, Spec, TelemetrySpec, option

STAGES = ("dense", "imp", "branch", "telemetry")


@dataclass(frozen=True)
class Trial:
    """One point of a sweep's grid: what a trainable reads from its Tune config (``to_config``)."""

    stage: str  # one of STAGES
    seed: int
    rewind_iteration: int | None = None  # imp, branch: k, the iteration every level rewinds to
    level: int | None = None  # branch: the IMP level whose mask the intervention starts from
    intervention: str = "none"  # branch: the intervention's name; "none" is IMP itself
    keep_states: tuple[int, ...] = ()  # dense: the iterations whose full state is kept for rewinding

    def to_config(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "keep_states": list(self.keep_states)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Trial:
        return cls(**{**config, "keep_states": tuple(config["keep_states"])})


@dataclass(frozen=True)
class SweepSpec(Spec):
    """A run crossed with seeds, rewind iterations, IMP levels, interventions and telemetry."""

    run: RunSpec
    seeds: tuple[int, ...] = option((0,), "seeds: one dense run (init and data order) each")
    rewind_iterations: tuple[int, ...] = field(
        default=(0,),
        metadata={"help": "rewind iterations k, as iterations or steps: 0,500,2ep", "steps": True},
    )
    levels: int = option(5, "IMP levels after the dense run (density 0.8^L at the default fraction)")
    interventions: tuple[str, ...] = option(
        BASELINES,
        "branch trials on each level's subnetwork (see sweeps/interventions.py --list-interventions)",
    )
    intervention_levels: tuple[int, ...] = option((), "levels that get interventions (default: every level)")
    intervention_rewind_iterations: tuple[int, ...] = field(
        default=(), metadata={"help": "k that get interventions (default: every k)", "steps": True}
    )
    telemetry: TelemetrySpec | None = None

    def validate(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise SpecError(f"seeds must be distinct and non-empty, got {list(self.seeds)}")
        if not self.rewind_iterations:
            raise SpecError("give at least one rewind iteration")
        for k in self.rewind_iterations:
            self.run.check_rewind(k)
        if self.levels < 0:
            raise SpecError(f"levels must be >= 0, got {self.levels}")
        for name in self.interventions:
            get_intervention(name)
        bad = [lv for lv in self.intervention_levels if not 1 <= lv <= self.levels]
        if bad:
            raise SpecError(f"intervention levels {bad} are outside 1..{self.levels}")
        bad = set(self.intervention_rewind_iterations) - set(self.rewind_iterations)
        if bad:
            raise SpecError(
                f"intervention rewind iterations {sorted(bad)} are not among the rewind iterations"
            )
        t = self.telemetry
        if (
            t
            and t.split_level
            and (t.split_level > self.levels or t.split_rewind_iteration not in self.rewind_iterations)
        ):
            raise SpecError(
                f"a telemetry split at level {t.split_level}, k={t.split_rewind_iteration} needs that IMP "
                f"chain: levels >= {t.split_level} and k among the rewind iterations"
            )

    def datasets(self) -> tuple[str, ...]:
        """The datasets its trials load (checked before launch)."""
        return (self.run.data.dataset,)

    def dense_trials(self) -> list[Trial]:
        keep = tuple(sorted(set(self.rewind_iterations)))
        return [Trial("dense", s, keep_states=keep) for s in self.seeds]

    def imp_trials(self) -> list[Trial]:
        return [Trial("imp", s, k) for s in self.seeds for k in sorted(set(self.rewind_iterations))]

    def branch_trials(self) -> list[Trial]:
        levels = self.intervention_levels or tuple(range(1, self.levels + 1))
        ks = set(self.intervention_rewind_iterations or self.rewind_iterations)
        return [
            Trial("branch", chain.seed, chain.rewind_iteration, level, name)
            for chain in self.imp_trials()
            if chain.rewind_iteration in ks
            for level in levels
            for name in self.interventions
        ]

    def telemetry_trials(self) -> list[Trial]:
        return [Trial("telemetry", s) for s in self.seeds] if self.telemetry else []


# --- searches (sweeps/search.py): Optuna proposes, Ray Tune runs, the validation split selects --------

STUDY_FILE = "study.db"  # the study's default storage: an SQLite file in the experiment directory


def _check_range(name: str, values: tuple, low_bound: float | None = None, open_low: bool = False) -> None:
    """A ``low,high`` range: two values, low <= high, low >= ``low_bound`` (> with ``open_low``)."""
    if len(values) != 2:
        raise SpecError(f"{name} range takes low,high, got {','.join(map(str, values)) or 'nothing'}")
    low, high = values
    if low > high:
        raise SpecError(f"{name} range {low},{high} has low > high")
    if low_bound is not None and (low <= low_bound if open_low else low < low_bound):
        where = "above" if open_low else "at or above"
        raise SpecError(f"{name} range {low},{high} must lie {where} {low_bound}")


@dataclass(frozen=True)
class SearchSpec(Spec):
    """What every search shares: the run its trials start from (with a validation split to select
    on), the number of trials, Optuna's TPE sampler and where the study is stored."""

    run: RunSpec
    seed: int = option(0, "seed of every trial's network (init and data order)")
    trials: int = option(20, "trials Optuna proposes in all (a resumed search runs the rest)")
    startup_trials: int = option(5, "trials sampled at random before TPE models the results")
    sampler_seed: int = option(0, "seed of Optuna's TPE sampler")
    storage_url: str = option(
        "", "the study's SQLAlchemy URL, e.g. postgresql://host/db (default: study.db in the experiment)"
    )

    def validate(self) -> None:
        if not self.run.data.validation_examples:
            raise SpecError("a search selects on a validation split: set --validation-examples (e.g. 5000)")
        if self.run.pretraining.mode != "none":
            raise SpecError("searches run without pretraining (pretraining mode none)")
        if self.trials < 1 or self.startup_trials < 0:
            raise SpecError(
                f"trials must be >= 1 and startup_trials >= 0, got {self.trials}, {self.startup_trials}"
            )
        if self.storage_url:
            _check_storage_url(self.storage_url)

    def datasets(self) -> tuple[str, ...]:
        """The datasets its trials load (checked before launch)."""
        return (self.run.data.dataset,)

    def study_url(self, experiment_dir: str) -> str:
        """Where the study lives: ``storage_url``, else the SQLite file study.db in the experiment."""
        return self.storage_url or f"sqlite:///{experiment_dir}/{STUDY_FILE}"

    def check_execution(self, execution: Any) -> None:
        """The default SQLite study needs a local experiment directory."""
        if "://" in execution.experiment_dir and not self.storage_url:
            raise SpecError(
                f"the study's default SQLite file cannot live in {execution.experiment_dir}: "
                "give --storage-url (any SQLAlchemy URL) or a local --storage-path"
            )


def _check_storage_url(url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise SpecError(
            f"storage URL {url!r} is not an SQLAlchemy URL (dialect://user@host/database)"
        ) from None
    if parsed.password:
        raise SpecError(
            "storage URL holds a password, which would be recorded in sweep.json: "
            "give it through the database's own means (e.g. PGPASSWORD or ~/.pgpass)"
        )


@dataclass(frozen=True)
class DenseSearchSpec(SearchSpec):
    """Dense training settings that maximise validation accuracy (lr, momentum, weight decay, warmup,
    batch size); ASHA stops trials that trail at an evaluation (every ``eval_every``)."""

    lr_range: tuple[float, ...] = option((0.01, 0.4), "learning rate low,high (log-uniform)")
    momentum_range: tuple[float, ...] = option((0.8, 0.99), "SGD momentum low,high (uniform)")
    weight_decay_range: tuple[float, ...] = option((1e-5, 1e-3), "weight decay low,high (log-uniform)")
    warmup_range: tuple[int, ...] = option((0, 500), "linear lr warmup iterations low,high (uniform)")
    batch_sizes: tuple[int, ...] = option((64, 128, 256), "batch sizes to choose from")
    grace_period: int = option(1, "ASHA: evaluations every trial gets before it can be stopped")
    reduction_factor: int = option(3, "ASHA: at each rung only the best 1/factor of trials continue")

    def validate(self) -> None:
        super().validate()
        _check_range("lr", self.lr_range, 0, open_low=True)
        _check_range("momentum", self.momentum_range, 0)
        if self.momentum_range[1] >= 1:
            raise SpecError(f"momentum range must lie below 1, got {self.momentum_range[1]}")
        _check_range("weight decay", self.weight_decay_range, 0, open_low=True)
        _check_range("warmup", self.warmup_range, 0)
        sizes = self.batch_sizes
        if not sizes or min(sizes) < 1 or len(set(sizes)) < len(sizes):
            raise SpecError(f"batch sizes must be distinct and positive, got {list(self.batch_sizes)}")
        if self.grace_period < 1 or self.reduction_factor < 2:
            raise SpecError(
                f"grace_period must be >= 1 and reduction_factor >= 2, got {self.grace_period}, "
                f"{self.reduction_factor}"
            )

    def trial_run(self, params: dict[str, Any]) -> RunSpec:
        """The run of a trial: ``run`` with the sampled lr, momentum, weight_decay, warmup, batch_size."""
        training = self.run.training.replace(
            lr=float(params["lr"]),
            momentum=float(params["momentum"]),
            weight_decay=float(params["weight_decay"]),
            warmup=f"{int(params['warmup'])}it",
        )
        data = self.run.data.replace(batch_size=int(params["batch_size"]))
        return self.run.replace(data=data, training=training)

    def evaluations(self, batch_size: int) -> int:
        """The evaluations (ASHA's time) a trial of this batch size makes: every eval_every and at the end."""
        run = self.run.replace(data=self.run.data.replace(batch_size=batch_size))
        return -(-run.total_iterations // run.iterations(run.training.eval_every))


@dataclass(frozen=True)
class EarliestKSearchSpec(SearchSpec):
    """The earliest rewind iteration k whose IMP subnetwork at ``target_density`` still matches dense:
    objectives smallest k and highest validation accuracy at the target density; a chain stops at
    the first level whose validation accuracy falls below dense - ``tolerance``."""

    k_range: tuple[int, ...] = field(
        default=(0, 2000),
        metadata={
            "help": "rewind iteration k low,high, as iterations or steps (log-uniform in k + 1)",
            "steps": True,
        },
    )
    target_density: float = option(0.1, "chains prune to the first level at or below this density")
    tolerance: float = option(0.01, "a level matches if its validation accuracy is >= dense - tolerance")

    def validate(self) -> None:
        super().validate()
        _check_range("k", self.k_range, 0)
        self.run.check_rewind(self.k_range[1])
        if not 0 < self.target_density < 1:
            raise SpecError(f"target density must lie in (0, 1), got {self.target_density}")
        if not 0 <= self.tolerance < 1:
            raise SpecError(f"tolerance must lie in [0, 1), got {self.tolerance}")

    @property
    def target_level(self) -> int:
        """The first IMP level whose nominal density (1 - fraction)^L is at or below the target."""
        level, density = 0, 1.0
        while density > self.target_density * (1 + 1e-9):  # 0.8 ** 2 is 0.6400000000000001
            level, density = level + 1, density * (1 - self.run.pruning.fraction)
        return level
