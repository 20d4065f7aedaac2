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
