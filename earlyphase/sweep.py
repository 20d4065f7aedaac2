"""Sweep declarations: the grid of trials an experiment consists of (no Ray here).

A sweep is one :class:`~earlyphase.specs.RunSpec` crossed with seeds, rewind iterations and
branches. The Ray layer turns it into stages of trials: one dense run per seed, one IMP
chain per (seed, k) reporting level by level, one branch trial per (seed, k, level,
intervention) on that level's mask, and optionally one telemetry run per seed.
"""

from __future__ import annotations

from dataclasses import dataclass

from earlyphase.errors import SpecError
from earlyphase.interventions import BASELINES, get_intervention
from earlyphase.specs import RunSpec, Spec, parse_step


@dataclass(frozen=True)
class TelemetrySpec(Spec):
    """Early-phase telemetry of the dense run (EXPERIMENTS.md A2), optionally split into the
    weights IMP keeps and prunes at ``split_level`` of the chain rewound to ``split_rewind_iteration``."""

    end: str = "4000it"
    every_until: int = 100  # every iteration up to here, then ``points`` log-spaced ones
    points: int = 60
    tracked: int = 10
    train_eval_examples: int = 10_000
    split_level: int = 0  # 0: no kept/pruned split
    split_rewind_iteration: int = 0

    def validate(self) -> None:
        parse_step(self.end, 1)
        if self.every_until < 0 or self.points < 0 or self.tracked < 0 or self.train_eval_examples < 1:
            raise SpecError(
                "telemetry every_until, points, tracked must be >= 0 and train_eval_examples >= 1"
            )
        if self.split_level < 0:
            raise SpecError(f"telemetry split level must be >= 0, got {self.split_level}")


@dataclass(frozen=True)
class SweepSpec(Spec):
    run: RunSpec
    seeds: tuple[int, ...] = (0,)
    rewind_iterations: tuple[int, ...] = (0,)
    levels: int = 5
    branches: tuple[str, ...] = BASELINES
    branch_levels: tuple[int, ...] = ()  # levels that get branch trials; empty: every level
    branch_rewind_iterations: tuple[int, ...] = ()  # k that get branch trials; empty: every k
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
        for name in self.branches:
            get_intervention(name)
        bad = [lv for lv in self.branch_levels if not 1 <= lv <= self.levels]
        if bad:
            raise SpecError(f"branch levels {bad} are outside 1..{self.levels}")
        bad = set(self.branch_rewind_iterations) - set(self.rewind_iterations)
        if bad:
            raise SpecError(f"branch rewind iterations {sorted(bad)} are not among the rewind iterations")
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
        ks = set(self.branch_rewind_iterations or self.rewind_iterations)
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
            if t["rewind_iteration"] in ks
            for lv in levels
            for b in self.branches
        ]

    def telemetry_trials(self) -> list[dict]:
        return (
            [{"seed": s, "last_level": 0, "label": f"s{s}_telemetry"} for s in self.seeds]
            if self.telemetry
            else []
        )
