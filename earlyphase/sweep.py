"""Sweep declarations: the grid of trials an experiment consists of (no Ray here).

A sweep is one :class:`~earlyphase.specs.RunSpec` crossed with seeds, pretrainings, rewind
iterations and interventions. The Ray layer turns it into stages of :class:`Trial`\\ s: one dense
run per (seed, pretraining), one IMP chain per (seed, pretraining, k) reporting level by level
(k = P, the end of pretraining, for a pretraining mode), one branch trial per (chain, level,
intervention) on that level's mask, and optionally one telemetry run per seed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from earlyphase.connectivity import BN_MODES
from earlyphase.errors import SpecError
from earlyphase.interventions import BASELINES, get_intervention
from earlyphase.pretraining import check_pretraining
from earlyphase.specs import (
    PRETRAINING_MODES,
    DynamicsSpec,
    PretrainingSpec,
    RunSpec,
    ScoreSpec,
    Spec,
    TelemetrySpec,
    option,
)

STAGES = ("dense", "imp", "branch", "telemetry")
NO_PRETRAINING = PretrainingSpec().to_json()


@dataclass(frozen=True)
class Trial:
    """One point of a sweep's grid: what a trainable reads from its Tune config (``to_config``)."""

    stage: str  # one of STAGES
    seed: int
    rewind_iteration: int | None = None  # imp, branch: k, the iteration every level rewinds to
    level: int | None = None  # branch: the IMP level whose mask the intervention starts from
    intervention: str = "none"  # branch: the intervention's name; "none" is IMP itself
    keep_states: tuple[int, ...] = ()  # dense: the iterations whose full state is kept for rewinding
    pretraining: str = NO_PRETRAINING  # the PretrainingSpec's canonical JSON: what precedes iteration P

    @property
    def pretraining_spec(self) -> PretrainingSpec:
        return PretrainingSpec.from_json(self.pretraining)

    @property
    def start_level(self) -> int:
        """The level its dense run is: 0, or with sparse pretraining the level whose mask was pretrained."""
        return self.pretraining_spec.sparse_level

    def to_config(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "keep_states": list(self.keep_states)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Trial:
        return cls(**{**config, "keep_states": tuple(config["keep_states"])})


@dataclass(frozen=True)
class SweepSpec(Spec):
    """A run crossed with seeds, pretrainings, rewind iterations, IMP levels, interventions and telemetry.

    The pretraining axis (docs/experiments.md A4) is ``pretraining_modes`` crossed with
    ``pretraining_lengths``: ``none`` once (its chains rewind to every k), every other mode once
    per length P (its one chain rewinds every level to P). Left at their defaults the two fields
    are not part of the canonical dict, so sweeps without pretraining keep their keys."""

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
    pretraining_modes: tuple[str, ...] = option(
        ("none",),
        "pretrainings by their names in results: none (rewound to each k), supervised, random_labels_0.5, "
        "rotation, blur_4, subset_1000, sparse_L3_k500_rotation, ..._reset_optimizer",
        flag="modes",
    )
    pretraining_lengths: tuple[str, ...] = option(
        (), "pretraining lengths P of every mode but none: 500it,2ep", flag="pretraining-lengths"
    )

    def to_dict(self) -> dict[str, Any]:
        values = super().to_dict()
        for f in dataclasses.fields(self):
            if f.name in ("pretraining_modes", "pretraining_lengths") and getattr(self, f.name) == f.default:
                del values[f.name]
        return values

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
        self._validate_pretrainings()
        chain_ks = {trial.rewind_iteration for trial in self.imp_trials()} | set(self.rewind_iterations)
        bad = set(self.intervention_rewind_iterations) - chain_ks
        if bad:
            raise SpecError(
                f"intervention rewind iterations {sorted(bad)} are not among the rewind iterations "
                "(or pretraining lengths)"
            )
        t = self.telemetry
        if t and t.split_level and not self._has_plain_chain(t.split_level, t.split_rewind_iteration):
            raise SpecError(
                f"a telemetry split at level {t.split_level}, k={t.split_rewind_iteration} needs that IMP "
                f"chain: levels >= {t.split_level}, k among the rewind iterations and pretraining none"
            )

    def _validate_pretrainings(self) -> None:
        check_pretraining(self.run)  # what is wrong with the run's own pretraining comes first
        if self.run.pretraining != PretrainingSpec():
            raise SpecError(
                "a sweep's pretraining is its axis: --modes rotation,blur_2 --pretraining-lengths 500it; "
                "the --pretraining-* run fields are for single runs (python -m earlyphase)"
            )
        if not self.pretraining_modes:
            modes = ", ".join(PRETRAINING_MODES[1:])
            raise SpecError(f"give at least one pretraining mode (none, or {modes})")
        pretrained = [name for name in self.pretraining_modes if name != "none"]
        if pretrained and not self.pretraining_lengths:
            raise SpecError(f"pretraining {pretrained[0]} needs --pretraining-lengths (e.g. 500it,2ep)")
        lengths = [self.run.iterations(length) for length in self.pretraining_lengths]
        if len(set(lengths)) != len(lengths):
            raise SpecError(f"pretraining lengths {list(self.pretraining_lengths)} name an iteration twice")
        specs = self.pretrainings()
        for spec in specs:
            if spec.scored_subset and not self.scores_subsets:
                raise SpecError(
                    f"pretraining {spec.name} is chosen by example scores: run it with sweeps/data_diet.py"
                )
            if specs.count(spec) > 1:
                raise SpecError(f"pretraining {spec.name} is listed twice in the modes")
            check_pretraining(self.run.replace(pretraining=spec))
            level, k = spec.sparse_level, spec.sparse_rewind_iteration
            if level and not self._has_plain_chain(level, k):
                raise SpecError(
                    f"sparse pretraining {spec.name} needs the mask of level {level} of IMP rewound to "
                    f"k={k}: pretraining none, k among the rewind iterations and levels >= {level}"
                )

    @property
    def scores_subsets(self) -> bool:
        """Whether its runner computes example scores, so subsets may be chosen by them."""
        return False

    def _has_plain_chain(self, level: int, rewind_iteration: int) -> bool:
        """Whether the sweep runs IMP without pretraining, rewound to ``rewind_iteration``, to ``level``."""
        return (
            "none" in self.pretraining_modes
            and rewind_iteration in self.rewind_iterations
            and level <= self.levels
        )

    def pretrainings(self) -> tuple[PretrainingSpec, ...]:
        """The pretraining axis: ``none`` once, every other mode once per pretraining length."""
        return tuple(
            PretrainingSpec.from_name(name, length)
            for name in self.pretraining_modes
            for length in (("0it",) if name == "none" else self.pretraining_lengths)
        )

    def pretraining_iterations(self, spec: PretrainingSpec) -> int:
        """P in iterations for this sweep's run (0 for none)."""
        return check_pretraining(self.run.replace(pretraining=spec))

    def datasets(self) -> tuple[str, ...]:
        """The datasets its trials load (checked before launch)."""
        return (self.run.data.dataset,)

    def dense_trials(self) -> list[Trial]:
        """One per (seed, pretraining); without pretraining it keeps the state at every k, with a
        mode the pretrained dense run keeps its states at 0 and P."""
        keep = tuple(sorted(set(self.rewind_iterations)))
        return [
            Trial("dense", s, keep_states=keep if p.mode == "none" else (), pretraining=p.to_json())
            for s in self.seeds
            for p in self.pretrainings()
        ]

    def imp_trials(self) -> list[Trial]:
        """One chain per (seed, pretraining, k): every k without pretraining, k = P with it (none
        when a sparse pretraining's own level is already the last)."""
        every_k = sorted(set(self.rewind_iterations))
        return [
            Trial("imp", s, k, pretraining=p.to_json())
            for s in self.seeds
            for p in self.pretrainings()
            if p.sparse_level < self.levels
            for k in (every_k if p.mode == "none" else [self.pretraining_iterations(p)])
        ]

    def branch_trials(self) -> list[Trial]:
        """One per (chain, level, intervention), on the chain's own levels."""
        levels = self.intervention_levels or tuple(range(1, self.levels + 1))
        ks = set(self.intervention_rewind_iterations)
        return [
            Trial("branch", chain.seed, chain.rewind_iteration, level, name, pretraining=chain.pretraining)
            for chain in self.imp_trials()
            if not ks or chain.rewind_iteration in ks
            for level in levels
            if level > chain.start_level
            for name in self.interventions
        ]

    def telemetry_trials(self) -> list[Trial]:
        return [Trial("telemetry", s) for s in self.seeds] if self.telemetry else []


# (axis of DynamicsSweepSpec, the DynamicsSpec field each of its values replaces)
DYNAMICS_AXES = (
    ("tasks", "task"),
    ("architectures", "architecture"),
    ("widths", "hidden_width"),
    ("activations", "activation"),
    ("learning_rates", "dynamics_lr"),
    ("trained_layer_sets", "trained_layers"),
)


@dataclass(frozen=True)
class DynamicsTrial:
    """One point of a linear-dynamics sweep: a network and its linear model trained side by side
    (``dynamics``), or the kernel check of one network at every input dimension and width (``kernel``)."""

    stage: str  # "dynamics" or "kernel"
    seed: int
    task: str
    architecture: str
    activation: str
    trained_layers: str
    width: int | None = None  # dynamics: the hidden width m (kernel: every width of the sweep)
    lr: float | None = None  # dynamics: the learning rate (None: the task's default)

    def to_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DynamicsTrial:
        return cls(**config)


@dataclass(frozen=True)
class DynamicsSweepSpec(Spec):
    """Early-time linear dynamics (docs/experiments.md C): a base DynamicsSpec crossed with tasks,
    architectures, widths, activations, learning rates, trained layers and seeds, plus the kernel
    check of the ``kernel_architectures`` (× activations × trained layers) over input dimensions d
    and widths m on Gaussian inputs. An empty axis keeps the base's value."""

    dynamics: DynamicsSpec = field(default_factory=DynamicsSpec)
    seeds: tuple[int, ...] = option((0,), "seeds: network init and Gaussian data, one trial each")
    tasks: tuple[str, ...] = option((), "tasks, one trial each (empty: --task)")
    architectures: tuple[str, ...] = option((), "architectures, one trial each (empty: --architecture)")
    widths: tuple[int, ...] = option((), "hidden widths m, one trial each (empty: --hidden-width)")
    activations: tuple[str, ...] = option((), "activations, one trial each (empty: --activation)")
    learning_rates: tuple[float, ...] = option((), "learning rates, one trial each (empty: --dynamics-lr)")
    trained_layer_sets: tuple[str, ...] = option(
        (), "trained layers (first, second, both), one trial each (empty: --trained-layers)"
    )
    image_examples: tuple[int, ...] = option(
        (), "train,test examples of the image tasks (empty: --train-examples, --test-examples)"
    )
    kernel_input_dims: tuple[int, ...] = option(
        (), "kernel check: Gaussian input dimensions d (empty: no check)"
    )
    kernel_architectures: tuple[str, ...] = option(
        ("two_layer",), "kernel check: architectures, one trial each per activation and trained layers"
    )
    kernel_widths: tuple[int, ...] = option((1024,), "kernel check: hidden widths m")
    kernel_examples: int = option(500, "kernel check: Gaussian inputs n (the NTK is n x n)")

    def validate(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise SpecError(f"seeds must be distinct and non-empty, got {list(self.seeds)}")
        defaults = DynamicsSpec()
        for axis, name in DYNAMICS_AXES:
            values = getattr(self, axis)
            if len(set(values)) != len(values):
                raise SpecError(f"{axis} {list(values)} name a value twice")
            if values and getattr(self.dynamics, name) != getattr(defaults, name):
                flag = name.replace("_", "-")
                raise SpecError(f"give --{axis.replace('_', '-')} or --{flag}, not both")
        if not self.kernel_widths or min(self.kernel_widths) < 1:
            raise SpecError(f"kernel_widths must be positive and non-empty, got {list(self.kernel_widths)}")
        if self.image_examples and len(self.image_examples) != 2:
            raise SpecError(f"image_examples is train,test: two numbers, got {list(self.image_examples)}")
        if self.kernel_examples < 2:
            raise SpecError(f"kernel_examples must be at least 2, got {self.kernel_examples}")
        for trial in self.dynamics_trials():
            self.trial_spec(trial)  # every trial's DynamicsSpec is valid (one-line SpecError if not)
        for trial in self.kernel_trials():
            for dim in self.kernel_input_dims[1:]:
                self.trial_spec(trial).replace(input_dim=dim)

    def axis(self, axis: str) -> tuple:
        """An axis' values: its own, else the base's single value."""
        name = dict(DYNAMICS_AXES)[axis]
        return getattr(self, axis) or (getattr(self.dynamics, name),)

    def datasets(self) -> tuple[str, ...]:
        """The datasets its trials load (checked before launch): the image tasks."""
        return tuple(task for task in self.axis("tasks") if task != "gaussian")

    def dynamics_trials(self) -> list[DynamicsTrial]:
        return [
            DynamicsTrial("dynamics", seed, task, architecture, activation, layers, width, lr)
            for seed in self.seeds
            for task in self.axis("tasks")
            for architecture in self.axis("architectures")
            for width in self.axis("widths")
            for activation in self.axis("activations")
            for lr in self.axis("learning_rates")
            for layers in self.axis("trained_layer_sets")
        ]

    def kernel_trials(self) -> list[DynamicsTrial]:
        if not self.kernel_input_dims:
            return []
        return [
            DynamicsTrial("kernel", seed, "gaussian", architecture, activation, layers)
            for seed in self.seeds
            for architecture in self.kernel_architectures
            for activation in self.axis("activations")
            for layers in self.axis("trained_layer_sets")
        ]

    def trial_spec(self, trial: DynamicsTrial) -> DynamicsSpec:
        """The DynamicsSpec a trial runs: the base with the trial's axis values (a kernel trial: the
        Gaussian task on ``kernel_examples`` inputs at the first ``kernel_input_dims``; the trial goes
        through every input dimension and width of the sweep)."""
        changes: dict[str, Any] = {
            "task": trial.task,
            "architecture": trial.architecture,
            "activation": trial.activation,
            "trained_layers": trial.trained_layers,
        }
        if trial.stage == "kernel":
            changes |= {"train_examples": self.kernel_examples, "input_dim": self.kernel_input_dims[0]}
        else:
            changes |= {"hidden_width": trial.width, "dynamics_lr": trial.lr}
            if trial.task != "gaussian" and self.image_examples:
                changes |= dict(zip(("train_examples", "test_examples"), self.image_examples))
        return self.dynamics.replace(**changes)


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


@dataclass(frozen=True)
class ScoredSweepSpec(SweepSpec):
    """An IMP sweep whose subset pretrainings may be chosen by example scores (inside a data diet)."""

    @property
    def scores_subsets(self) -> bool:
        return True


@dataclass(frozen=True)
class ScoreTrial:
    """One score network of the scores stage; with ``barriers`` it also scores per-example barriers."""

    seed: int
    barriers: bool = False
    stage: str = "scores"

    def to_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class DataDietSpec(Spec):
    """Lottery tickets on a data diet (docs/experiments.md B): K score networks, then IMP after pretraining
    on subsets chosen by their scores (``--modes subset_easy_el2n_1000,subset_lmc_1000,...``), beside
    plain IMP rewound to the ``--rewind-iterations`` (0, P, 2P)."""

    sweep: ScoredSweepSpec
    scoring: ScoreSpec = field(default_factory=ScoreSpec)
    barrier_networks: int = option(
        1, "score networks that also give per-example barriers for lmc subsets (copies to the run's end)"
    )

    def validate(self) -> None:
        needed = {p.subset_score for p in self.sweep.pretrainings() if p.subset_kind in ("easy", "hard")}
        missing = sorted(needed - set(self.scoring.scores))
        if missing:
            raise SpecError(f"subsets by {', '.join(missing)} need it among --scores")
        if not 1 <= self.barrier_networks <= self.scoring.score_networks:
            raise SpecError(
                f"barrier_networks must lie in 1..{self.scoring.score_networks} (the score networks), "
                f"got {self.barrier_networks}"
            )
        self.sweep.run.check_rewind(self.sweep.run.iterations(self.scoring.score_steps))

    @property
    def lmc_subsets(self) -> bool:
        return any(p.subset_kind == "lmc" for p in self.sweep.pretrainings())

    def datasets(self) -> tuple[str, ...]:
        return self.sweep.datasets()

    def score_trials(self) -> list[ScoreTrial]:
        from earlyphase.scores import score_seeds

        barriers = self.barrier_networks if self.lmc_subsets else 0
        return [ScoreTrial(seed, i < barriers) for i, seed in enumerate(score_seeds(self.scoring))]


@dataclass(frozen=True)
class StabilityTrial:
    """Two copies from the state at k of (seed, pretraining), dense (level 0) or that level's subnetwork."""

    seed: int
    rewind_iteration: int
    level: int
    pretraining: str = NO_PRETRAINING
    stage: str = "stability"

    @property
    def pretraining_spec(self) -> PretrainingSpec:
        return PretrainingSpec.from_json(self.pretraining)

    def to_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class StabilitySpec(Spec):
    """Instability analysis (docs/experiments.md B): the IMP sweep, then from the state at each k of each
    chain, dense or a chosen level's subnetwork, two copies trained with different data orders, the
    error along the line between them and the per-example midpoint barriers."""

    sweep: SweepSpec
    stability_levels: tuple[int, ...] = option(
        (0,), "levels whose copies are compared (0: the dense network)"
    )
    alpha_points: int = option(30, "α grid between the copies, ends included")
    interpolation_bn: str = option(
        "interpolate", f"BatchNorm statistics along the path: {', '.join(BN_MODES)}"
    )
    bn_batches: int = option(20, "training batches that re-estimate BatchNorm statistics")
    barrier_threshold: float = option(
        0.02, "copies are linearly connected when the test error barrier is below"
    )
    barrier_train_examples: int = option(10_000, "training examples evaluated along the path (0: all)")
    example_eps: float = option(0.0, "an example is connected when its midpoint loss barrier is <= this")

    def validate(self) -> None:
        if not self.stability_levels or len(set(self.stability_levels)) != len(self.stability_levels):
            raise SpecError(
                f"stability levels must be distinct and non-empty, got {list(self.stability_levels)}"
            )
        bad = [lv for lv in self.stability_levels if not 0 <= lv <= self.sweep.levels]
        if bad:
            raise SpecError(f"stability levels {bad} are outside 0..{self.sweep.levels} (--levels)")
        if self.alpha_points < 2:
            raise SpecError(f"the α grid needs at least 2 points, got {self.alpha_points}")
        if self.interpolation_bn not in BN_MODES:
            raise SpecError(
                f"unknown BatchNorm handling {self.interpolation_bn!r}; choose one of {', '.join(BN_MODES)}"
            )
        if self.bn_batches < 1 or self.barrier_train_examples < 0 or self.barrier_threshold < 0:
            raise SpecError("bn_batches must be >= 1; barrier_train_examples and barrier_threshold >= 0")
        if any(p.sparse_level for p in self.sweep.pretrainings()):
            raise SpecError("stability sweeps take no sparse pretraining")

    def datasets(self) -> tuple[str, ...]:
        return self.sweep.datasets()

    def trials(self) -> list[StabilityTrial]:
        """One per (seed, pretraining, k) and stability level: every k without pretraining, k = P with it."""
        every_k = sorted(set(self.sweep.rewind_iterations))
        return [
            StabilityTrial(seed, k, level, p.to_json())
            for seed in self.sweep.seeds
            for p in self.sweep.pretrainings()
            for k in (every_k if p.mode == "none" else [self.sweep.pretraining_iterations(p)])
            for level in self.stability_levels
        ]
