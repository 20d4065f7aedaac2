"""Sweep declarations: the grid of trials an experiment consists of (no Ray here).

A sweep is one :class:`~earlyphase.specs.RunSpec` crossed with seeds, rewind iterations and
branches. The Ray layer turns it into three stages of trials: one dense run per seed, one IMP
chain per (seed, k) reporting level by level, and one branch trial per (seed, k, level,
intervention) on that level's mask.
"""

from __future__ import annotations

from dataclasses import dataclass

from earlyphase.errors import SpecError
from earlyphase.interventions import BASELINES, get_intervention
from earlyphase.specs import RunSpec, Spec


@dataclass(frozen=True)
class SweepSpec(Spec):
    run: RunSpec
    seeds: tuple[int, ...] = (0,)
    rewind_iterations: tuple[int, ...] = (0,)
    levels: int = 5
    branches: tuple[str, ...] = BASELINES
    branch_levels: tuple[int, ...] = ()  # levels that get branch trials; empty: every level

    def validate(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise SpecError(f"seeds must be distinct and non-empty, got {list(self.seeds)}")
        if not self.rewind_iterations:
            raise SpecError("give at least one rewind iteration")
        for k in self.rewind_iterations:
            self.run.check_rewind(k)
        if self.levels < 0:
            raise SpecError(f"levels must be >= 0, got {self.levels}")
        for name in self.branches:
            get_intervention(name)
        bad = [lv for lv in self.branch_levels if not 1 <= lv <= self.levels]
        if bad:
            raise SpecError(f"branch levels {bad} are outside 1..{self.levels}")

    # Every trial dict names the level its last report carries ("last_level"): a stage whose
    # trials did not all get there was interrupted.

    def dense_trials(self) -> list[dict]:
        return [
            {
                "seed": s,
                "rewind_iterations": sorted(set(self.rewind_iterations)),
                "last_level": 0,
                "label": f"s{s}",
            }
            for s in self.seeds
        ]

    def imp_trials(self) -> list[dict]:
        return [
            {"seed": s, "rewind_iteration": k, "last_level": self.levels, "label": f"s{s}_k{k}"}
            for s in self.seeds
            for k in sorted(set(self.rewind_iterations))
        ]

    def branch_trials(self) -> list[dict]:
        levels = self.branch_levels or tuple(range(1, self.levels + 1))
        return [
            {
                "seed": t["seed"],
                "rewind_iteration": t["rewind_iteration"],
                "level": lv,
                "last_level": lv,
                "intervention": b,
                "label": f"{t['label']}_L{lv}_{b}",
            }
            for t in self.imp_trials()
            for lv in levels
            for b in self.branches
        ]
