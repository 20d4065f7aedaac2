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
from earlyphase.specs import DynamicsSpec, RunSpec, Spec, TelemetrySpec, option

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
