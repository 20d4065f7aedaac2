"""Compact progress of a stage: one line when a trial ends and at most every ``interval`` seconds.

    [earlyphase] imp      2/3 trials done, 1 running, 0 pending · 21/24 levels · 4m12s · ~35s left

A *level* is one report: the dense run, each IMP level, each branch. Time left extrapolates the
rate of levels finished in this run (so a resumed stage estimates from its own pace).
"""

from __future__ import annotations

import time

from ray import tune

from earlyphase.sweep import Trial


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


STALLED_S = 60.0


class StageProgress(tune.Callback):
    """A Tune callback printing where a stage is, instead of Tune's full status table. It is pickled
    with the stage's Tune state, so a restored stage gets it back and restarts its clock in ``setup``."""

    def __init__(self, stage: str, interval: float = 30.0):
        self.stage = stage
        self.interval = interval
        self.setup()

    def setup(self, **info) -> None:
        self.began = time.monotonic()
        self.done_at_start: int | None = None
        self.last_line = 0.0
        self.idle_since: float | None = None  # when the stage last had nothing running
        self.warned = False

    @staticmethod
    def levels_of(config: dict) -> int:
        """The reports a trial makes: an IMP chain one per level after its start, every other trial (of
        any sweep family) one."""
        if config["trial"].get("stage") != "imp":
            return 1
        return config["levels"] - Trial.from_config(config["trial"]).start_level

    def _levels(self, trials) -> tuple[int, int]:
        done = total = 0
        for trial in trials:
            expected = self.levels_of(trial.config)
            total += expected
            if trial.status == "TERMINATED":
                done += expected
            elif (trial.last_result or {}).get("level") is not None:  # reported, still running
                if expected > 1:
                    start = Trial.from_config(trial.config["trial"]).start_level
                    done += int(trial.last_result["level"]) - start
                else:
                    done += 1
        return done, total

    def line(self, trials) -> str:
        status = [t.status for t in trials]
        finished, running = status.count("TERMINATED"), status.count("RUNNING")
        pending = len(trials) - finished - running - status.count("ERROR")
        done, total = self._levels(trials)
        if self.done_at_start is None:
            self.done_at_start = done
        elapsed = time.monotonic() - self.began
        progress_now = done - self.done_at_start
        left = (
            f"~{_duration(elapsed / progress_now * (total - done))} left"
            if progress_now and done < total
            else ("estimating" if done < total else "done")
        )
        errors = f", {status.count('ERROR')} failed" if "ERROR" in status else ""
        return (
            f"[earlyphase] {self.stage:<9} {finished}/{len(trials)} trials done, {running} running, "
            f"{pending} pending{errors} · {done}/{total} levels · {_duration(elapsed)} · {left}"
        )

    def _print(self, trials) -> None:
        self.last_line = time.monotonic()
        print(self.line(trials), flush=True)

    def on_step_end(self, iteration, trials, **info):
        if self.done_at_start is None:
            self.done_at_start = self._levels(trials)[0]
        if time.monotonic() - self.last_line >= self.interval:
            self._print(trials)
        self._check_stalled(trials)

    def _check_stalled(self, trials) -> None:
        """Say once, after STALLED_S with pending trials and none running, that none can be placed."""
        status = [t.status for t in trials]
        if "RUNNING" in status or "PENDING" not in status:
            self.idle_since = None
            return
        now = time.monotonic()
        self.idle_since = self.idle_since or now
        if not self.warned and now - self.idle_since >= STALLED_S:
            self.warned = True
            print(
                f"[earlyphase] {self.stage}: no trial could start for {STALLED_S:.0f} s: no node has the "
                "CPUs/GPUs one trial asks for (--cpus-per-trial/--gpus-per-trial) — waiting for the "
                "autoscaler; `ray status` shows its view",
                flush=True,
            )

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._print(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._print(trials)
