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

from earlyphase.errors import SpecError
from earlyphase.interventions import BASELINES, get_intervention
from earlyphase.pretraining import check_pretraining
from earlyphase.specs import (
    PRETRAINING_MODES,
    DynamicsSpec,
    PretrainingSpec,
    RunSpec,
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
            if specs.count(spec) > 1:
                raise SpecError(f"pretraining {spec.name} is listed twice in the modes")
            check_pretraining(self.run.replace(pretraining=spec))
            level, k = spec.sparse_level, spec.sparse_rewind_iteration
            if level and not self._has_plain_chain(level, k):
                raise SpecError(
                    f"sparse pretraining {spec.name} needs the mask of level {level} of IMP rewound to "
                    f"k={k}: pretraining none, k among the rewind iterations and levels >= {level}"
                )

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


DYNAMICS_STAGES = ("dynamics", "kernel")
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

    stage: str  # one of DYNAMICS_STAGES
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
