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
