"""Runs a :class:`~earlyphase.sweep.SweepSpec` on Ray Tune, stage by stage.

    dense     (one trial per seed × pretraining)  → rewind states and final weights, ray.put once
    imp       (one chain per seed × pretraining × k) → a report and checkpoint per level; masks, ray.put
    sparse_dense, sparse_imp (sparse pretrainings) → the same, on masks of the plain chains above
    branch    (one per chain × level × b)         → an intervention on that level's mask
    telemetry (one per seed, if asked)            → early-phase measurements → telemetry.csv

Each stage is a Tune experiment under ``<storage>/<name>/<stage>``; an interrupted stage is
restored (finished trials are kept, unfinished ones resume from their last checkpoint), so
nothing finished is trained twice. The tidy table is written to ``<storage>/<name>/results.csv``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import ray
from ray import tune

from earlyphase.analysis.pretraining import pretraining_summary
from earlyphase.analysis.tables import accuracy_summary
from earlyphase.results import RESULT_COLUMNS, TELEMETRY_COLUMNS
from earlyphase.store import load_tensors
from earlyphase.sweep import STAGES, SweepSpec, Trial
from earlyphase.tune import storage
from earlyphase.tune.progress import StageProgress
from earlyphase.tune.trainables import (
    CHECKPOINT_FILE,
    TELEMETRY_FILE,
    branch_trial,
    dense_trial,
    imp_chain_trial,
    telemetry_trial,
)


class SweepFailed(RuntimeError):
    """Some trials failed even after their retries, or the run was interrupted."""


@dataclass(frozen=True)
class Execution:
    """How (not what) to run: where results go and what each trial gets."""

    storage_path: str
    name: str
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_failures: int = 3
    log_every: int = 100
    data_dir: str | None = None
    resume: bool = False  # restore the stages' Tune state (unpickled: the storage must be trusted)

    @property
    def experiment_dir(self) -> str:
        return storage.join(self.storage_path, self.name)

    def with_resources(self, trainable: Callable) -> Callable:
        """``trainable`` asking for each trial's CPUs and GPUs."""
        return tune.with_resources(trainable, {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial})

    def run_config(self, stage: str, progress: tune.Callback) -> tune.RunConfig:
        """Tune's RunConfig of one stage: its directory in the experiment, retries of failed trials
        from their last checkpoint (one kept), artifacts synced, ``progress`` the only output."""
        return tune.RunConfig(
            name=stage,
            storage_path=self.experiment_dir,
            failure_config=tune.FailureConfig(max_failures=self.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            sync_config=tune.SyncConfig(sync_artifacts=True),
            callbacks=[progress],
            verbose=0,
        )


@dataclass(frozen=True)
class Outcome:
    """What a finished sweep tells the user: a summary to print and the tidy tables it wrote."""

    summary: str
    tables: tuple[str, ...]


@dataclass
class ImpStages:
    """What the IMP stages leave for later stages: each results stage's ResultGrids, and the object
    store refs of the dense runs' states by (seed, pretraining) and of the masks by (seed,
    pretraining, k, level)."""

    grids: dict[str, list]
    dense_refs: dict
    mask_refs: dict


def run_imp_stages(
    sweep: SweepSpec, execution: Execution, subset_refs: dict | None = None, share_masks: bool = False
) -> ImpStages:
    """Run (or finish) the dense, IMP and branch stages of an IMP sweep.

    Dense runs and IMP chains run in two rounds: first without pretraining and with dense
    pretraining, then (stages ``sparse_dense``, ``sparse_imp``) the sparse pretrainings, which
    pretrain a level's mask from a chain of the first round. ``subset_refs`` (pretraining JSON → ref
    of its training indices) are the scored subsets; ``share_masks`` keeps every chain's masks."""
    base = {"spec": sweep.run.to_json(), "log_every": execution.log_every, "data_dir": execution.data_dir}
    stages = ImpStages({}, {}, {})
    grids, dense_refs, mask_refs = stages.grids, stages.dense_refs, stages.mask_refs
    branches = sweep.branch_trials()
    split = sweep.telemetry is not None and sweep.telemetry.split_level > 0
    dense_trials, chains = sweep.dense_trials(), sweep.imp_trials() if sweep.levels else []
    need_masks = share_masks or bool(branches) or split or any(t.start_level for t in dense_trials)
    for prefix, sparse in (("", False), ("sparse_", True)):
        round_dense = [t for t in dense_trials if bool(t.start_level) == sparse]
        if not round_dense:
            continue
        dense = tune.with_parameters(dense_trial, mask_refs=mask_refs, subset_refs=subset_refs or {})
        grid = run_stage(prefix + "dense", dense, round_dense, base, execution)
        grids.setdefault("dense", []).append(grid)
        dense_refs.update(_share_dense(grid))
        round_chains = [t for t in chains if bool(t.start_level) == sparse]
        if round_chains:
            imp = tune.with_parameters(imp_chain_trial, dense_refs=dense_refs)
            config = {**base, "levels": sweep.levels}
            grid = run_stage(prefix + "imp", imp, round_chains, config, execution)
            grids.setdefault("imp", []).append(grid)
            if need_masks:
                mask_refs.update(_share_masks(grid))
    if branches:
        branch = tune.with_parameters(branch_trial, dense_refs=dense_refs, mask_refs=mask_refs)
        grids["branch"] = [run_stage("branch", branch, branches, base, execution)]
    return stages


def imp_results(grids: dict[str, list], sweep: SweepSpec, execution: Execution) -> tuple[str, str]:
    """Write results.csv from the IMP stages' grids; return its path and the accuracy summary."""
    table = results_table(grids, sweep, execution.name)
    path = write_table(execution, "results.csv", table)
    plain = table[table.pretraining == "none"]
    summary = [accuracy_summary(plain)] if len(plain) else []
    if (table.pretraining != "none").any():
        summary.append(pretraining_summary(table))
    return path, "\n\n".join(summary)


def run_sweep(sweep: SweepSpec, execution: Execution) -> Outcome:
    """Run (or finish) every stage of an IMP sweep; write results.csv (and telemetry.csv)."""
    stages = run_imp_stages(sweep, execution)
    tables: list[str] = []
    if sweep.telemetry:
        base = {"spec": sweep.run.to_json(), "log_every": execution.log_every, "data_dir": execution.data_dir}
        observe = tune.with_parameters(telemetry_trial, mask_refs=stages.mask_refs)
        config = {**base, "telemetry": sweep.telemetry.to_json()}
        observed = run_stage("telemetry", observe, sweep.telemetry_trials(), config, execution)
        telemetry = telemetry_table(observed, sweep, execution.name)
        tables.append(write_table(execution, "telemetry.csv", telemetry))
    path, summary = imp_results(stages.grids, sweep, execution)
    return Outcome(summary, (path, *tables))


def write_table(execution: Execution, name: str, table: pd.DataFrame) -> str:
    """Write a tidy table into the experiment directory (atomically); return its path."""
    path = storage.join(execution.experiment_dir, name)
    storage.write_text(path, table.to_csv(index=False))
    return path


def trial_label(config: dict) -> str:
    """A readable trial directory prefix: ``s0``, ``s0_k500``, ``s0_k500_L03_random_prune``,
    ``s0_rotation_P2ep_k782``."""
    trial = Trial.from_config(config["trial"])
    label = f"s{trial.seed}"
    pretraining = trial.pretraining_spec
    if pretraining.mode != "none":
        label += f"_{pretraining.name}_P{pretraining.iterations}"
    if trial.rewind_iteration is not None:
        label += f"_k{trial.rewind_iteration}"
    if trial.stage == "branch":
        label += f"_L{trial.level:02d}_{trial.intervention}"
    return label + ("_telemetry" if trial.stage == "telemetry" else "")


def last_level(config: dict) -> int:
    """The level a finished trial's last report names: an IMP chain's last, a branch's own, a dense
    run's (0, or the level whose mask sparse pretraining used), a telemetry run's 0."""
    trial = Trial.from_config(config["trial"])
    return {"imp": config.get("levels"), "branch": trial.level}.get(trial.stage, trial.start_level)


def run_stage(
    stage: str,
    trainable,
    trials: list,
    config: dict,
    execution: Execution,
    label: Callable[[dict], str] = trial_label,
    final_level: Callable[[dict], int] = last_level,
):
    """Run (or, on ``--resume``, restore and finish) one stage: a Tune experiment with one trial per
    element of ``trials`` (objects with ``to_config()``), each seeing ``config`` plus its ``trial``.

    ``label`` names a trial's directory and ``final_level`` says which ``level`` a finished trial
    reports last (both from its Tune config, module-level so Tune can pickle them); a stage whose
    trials did not all get there was interrupted. Returns Tune's ResultGrid."""
    trainable = execution.with_resources(trainable)
    path = storage.join(execution.experiment_dir, stage)
    if execution.resume and tune.Tuner.can_restore(path):  # its StageProgress callback comes back too
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={**config, "trial": tune.grid_search([t.to_config() for t in trials])},
            tune_config=tune.TuneConfig(
                trial_dirname_creator=lambda trial: f"{label(trial.config)}_{trial.trial_id}",
                reuse_actors=False,  # a trial's reported pid is its own worker, never another trial's
            ),
            run_config=execution.run_config(stage, StageProgress(stage)),
        )
    print(f"[earlyphase] stage {stage}: {len(trials)} trial(s)", flush=True)
    grid = tuner.fit()
    if grid.errors:
        raise SweepFailed(f"stage {stage}: {len(grid.errors)} trial(s) failed, first: {grid.errors[0]}")
    # a trial that never started (interrupted while pending) has no config and no metrics
    unfinished = [r for r in grid if not r.config or (r.metrics or {}).get("level") != final_level(r.config)]
    if unfinished:
        raise SweepFailed(
            f"stage {stage} was interrupted with {len(unfinished)} unfinished trial(s); "
            f"continue with --resume --name {execution.name}"
        )
    return grid


def _load_checkpoint(result) -> dict:
    with result.checkpoint.as_directory() as directory:
        return load_tensors(Path(directory) / CHECKPOINT_FILE)


def _share_dense(grid) -> dict:
    """Each (seed, pretraining)'s rewind states and final weights in the object store, one ref per state."""
    refs = {}
    for result in grid:
        saved = _load_checkpoint(result)
        trial = Trial.from_config(result.config["trial"])
        refs[(trial.seed, trial.pretraining)] = {
            "rewind_states": {k: ray.put(s) for k, s in saved["rewind_states"].items()},
            "final": ray.put({"state": saved["state"], "mask": saved["mask"]}),
        }
    return refs


def _share_masks(grid) -> dict:
    refs = {}
    for result in grid:
        trial = Trial.from_config(result.config["trial"])
        for level, mask in _load_checkpoint(result)["masks"].items():
            refs[(trial.seed, trial.pretraining, trial.rewind_iteration, level)] = ray.put(mask)
    return refs


def results_table(grids: dict[str, list], sweep: SweepSpec, experiment: str) -> pd.DataFrame:
    """One row per (trial, level) from every stage's reported metrics (``grids``: results stage →
    ResultGrids); retried reports of the same level are kept once (the last). ``pretraining`` is the
    canonical name, ``spec_key`` the key of the run with that pretraining."""
    pretrainings = {
        p.to_json(): {
            "pretraining": p.name,
            "pretraining_iterations": sweep.pretraining_iterations(p),
            "spec_key": sweep.run.replace(pretraining=p).key(),
        }
        for p in sweep.pretrainings()
    }
    frames = []
    for stage, stage_grids in grids.items():
        for result in (result for grid in stage_grids for result in grid):
            frame = result.metrics_dataframe
            if frame is None or frame.empty:
                continue
            trial = Trial.from_config(result.config["trial"])
            frame = frame.assign(
                stage=stage,
                seed=trial.seed,
                rewind_iteration=trial.rewind_iteration,
                intervention=trial.intervention,
                **pretrainings[trial.pretraining],
            )
            frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    table = table.assign(experiment=experiment, model=sweep.run.model.name, dataset=sweep.run.data.dataset)
    table["rewind_iteration"] = table["rewind_iteration"].astype("Int64")
    table = table.drop_duplicates(["trial_id", "level"], keep="last")
    names = dict.fromkeys(p.name for p in sweep.pretrainings())  # in the order of the axis
    order = {
        "stage": {s: i for i, s in enumerate(STAGES)},
        "pretraining": {n: i for i, n in enumerate(names)},
    }
    columns = ["stage", "seed", "pretraining", "pretraining_iterations", "rewind_iteration", "intervention"]
    table = table.sort_values(
        [*columns, "level"], key=lambda c: c.map(order[c.name]) if c.name in order else c
    )
    return table[list(RESULT_COLUMNS)].reset_index(drop=True)


def telemetry_table(grid, sweep: SweepSpec, experiment: str) -> pd.DataFrame:
    """The tidy telemetry of every seed: one row per (trial, iteration, metric, group)."""
    frames = []
    for result in grid:
        with result.checkpoint.as_directory() as directory:
            frame = pd.read_csv(Path(directory) / TELEMETRY_FILE)
        seed = Trial.from_config(result.config["trial"]).seed
        frames.append(frame.assign(trial_id=result.metrics["trial_id"], seed=seed))
    table = pd.concat(frames, ignore_index=True).assign(
        experiment=experiment, model=sweep.run.model.name, dataset=sweep.run.data.dataset
    )
    return table[list(TELEMETRY_COLUMNS)]
