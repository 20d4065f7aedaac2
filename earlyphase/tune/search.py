"""Optuna searches inside Ray Tune (sweeps/search.py): Optuna proposes, Tune runs the trials in
parallel on the cluster like every other sweep, the held-out validation split selects (never the
test set, whose accuracy is only reported).

    dense       one trial per proposal: a dense run with the sampled lr, momentum, weight decay,
                warmup and batch size, reporting validation accuracy at every evaluation; ASHA stops
                trials that trail at a rung (Optuna's pruners do not run inside Tune)
    earliest_k  stage dense:  the seed's dense run, once (the engine's ``run_stage``), its final
                              weights shared through the object store
                stage search: one IMP chain per proposed k to the target density, stopping at the
                              first level below dense - tolerance; objectives (k: min, validation
                              accuracy at the target density: max), "matches dense" a constraint

A chain rewinds to a k proposed after the dense run, so it replays the dense run's first k
iterations itself (:meth:`earlyphase.imp.IMP.replay`, bitwise the dense run's state on the CPU)
instead of the dense run keeping a state for every k the search might propose.

The study lives in an RDB storage (SQLite study.db in the experiment directory by default) under
the experiment's name. ``--resume`` restores Tune's experiment (finished trials are kept, the
searcher's state with them) and the study continues with the trials still to run.
"""

from __future__ import annotations

import math
import shlex
import time
from pathlib import Path

import optuna
import pandas as pd
import ray
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from ray import tune
from ray.tune.schedulers import AsyncHyperBandScheduler
from ray.tune.search.optuna import OptunaSearch

from earlyphase.commandline import spec_arguments
from earlyphase.imp import IMP, LevelRun
from earlyphase.masks import Mask
from earlyphase.results import PARAMETER_PREFIX, SEARCH_COLUMNS
from earlyphase.specs import RunSpec
from earlyphase.store import load_tensors
from earlyphase.sweep import NO_PRETRAINING, DenseSearchSpec, EarliestKSearchSpec, SearchSpec, Trial
from earlyphase.tune import storage
from earlyphase.tune.engine import Execution, Outcome, SweepFailed, _share_dense, run_stage, write_table
from earlyphase.tune.progress import StageProgress, _duration
from earlyphase.tune.trainables import (
    CHECKPOINT_FILE,
    _curve_writer,
    _report,
    dense_trial,
    trial_worker_setup,
)

SEARCH_STAGE = "search"
K_PARAMETER = "k_plus_1"  # k is drawn log-uniformly as k + 1, so that k = 0 can be proposed


class StudySearch(OptunaSearch):
    """Ray's OptunaSearch, and: each Tune config carries its study trial's number (``study_trial``),
    and the named fields a trial's last result holds become the study trial's user attributes and
    constraints (feasible when <= 0) before Optuna is told the result."""

    def __init__(self, *args, attributes: tuple[str, ...] = (), constraints: tuple[str, ...] = (), **kwargs):
        self._attributes, self._constraints = attributes, constraints
        super().__init__(*args, **kwargs)

    def suggest(self, trial_id: str) -> dict:
        config = super().suggest(trial_id)
        return {**config, "study_trial": self._ot_trials[trial_id].number}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        study_trial = self._ot_trials.get(trial_id)
        if result and study_trial is not None and trial_id not in self._completed_trials:
            study_trial.set_user_attr("tune_trial_id", trial_id)
            for name in set(self._attributes) & set(result):
                study_trial.set_user_attr(name, result[name])
            for name in set(self._constraints) & set(result):
                study_trial.set_constraint(name, result[name])
        super().on_trial_complete(trial_id, result, error)


def _sampler(search: SearchSpec) -> optuna.samplers.TPESampler:
    return optuna.samplers.TPESampler(seed=search.sampler_seed, n_startup_trials=search.startup_trials)


def dense_space(search: DenseSearchSpec) -> dict:
    """The dense search's Optuna distributions, one per sampled parameter."""
    return {
        "lr": FloatDistribution(*search.lr_range, log=True),
        "momentum": FloatDistribution(*search.momentum_range),
        "weight_decay": FloatDistribution(*search.weight_decay_range, log=True),
        "warmup": IntDistribution(*search.warmup_range),
        "batch_size": CategoricalDistribution(search.batch_sizes),
    }


def dense_searcher(search: DenseSearchSpec, study_url: str, study_name: str) -> StudySearch:
    """TPE over :func:`dense_space`, maximising the last reported validation accuracy."""
    return StudySearch(
        dense_space(search),
        metric="validation_accuracy",
        mode="max",
        sampler=_sampler(search),
        study_name=study_name,
        storage=optuna.storages.RDBStorage(study_url),
        attributes=("test_accuracy", "iterations"),
    )


def earliest_k_space(search: EarliestKSearchSpec) -> dict:
    low, high = search.k_range
    return {K_PARAMETER: IntDistribution(low + 1, high + 1, log=True)}


def earliest_k_searcher(search: EarliestKSearchSpec, study_url: str, study_name: str) -> StudySearch:
    """Multi-objective TPE over k: smallest k, highest validation accuracy at the target density;
    a chain that fell below dense - tolerance is infeasible (its ``shortfall`` > 0)."""
    return StudySearch(
        earliest_k_space(search),
        metric=["rewind_iteration", "validation_accuracy"],
        mode=["min", "max"],
        sampler=_sampler(search),
        study_name=study_name,
        storage=optuna.storages.RDBStorage(study_url),
        attributes=("matched", "level", "density", "test_accuracy"),
        constraints=("shortfall",),
    )


# --- trainables ----------------------------------------------------------------------------------


def _imp(run: RunSpec, seed: int, config: dict) -> IMP:
    """The trial's IMP, with as many threads as its CPUs (like the engine's trainables)."""
    trial_worker_setup()
    return IMP(run, seed, data_dir=config.get("data_dir"))


def dense_search_trial(config: dict) -> None:
    """A dense run with the sampled settings, reporting validation (and test) metrics at every
    evaluation; ASHA may stop it after any report."""
    search = DenseSearchSpec.from_json(config["search"])
    imp = _imp(search.trial_run(config), search.seed, config)
    node = ray.get_runtime_context().get_node_id()
    with _curve_writer("level_00") as write_curve:

        def on_log(row: dict[str, float]) -> None:
            write_curve(row)
            if "validation_accuracy" in row:
                level = {"level": 0, "density": 1.0, "sparsity": 0.0, "iterations": row["iteration"]}
                tune.report({**row, **level, "node_id": node, "attempt_start_level": 0})

        imp.dense([], log_every=config["log_every"], on_log=on_log)


def earliest_k_trial(config: dict, dense_refs: dict) -> None:
    """IMP rewound to the proposed k, level after level to the target density; the chain stops at
    the first level whose validation accuracy falls below ``threshold`` (dense - tolerance). Each
    level is reported; a level the chain goes on from is checkpointed, so a retry resumes there."""
    search = EarliestKSearchSpec.from_json(config["search"])
    imp = _imp(search.run, search.seed, config)
    k, target, threshold = config[K_PARAMETER] - 1, search.target_level, config["threshold"]
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        dense = ray.get(dense_refs[(search.seed, NO_PRETRAINING)]["final"])
        previous, lowest = LevelRun(0, Mask(dense["mask"]), dense["state"], [], {}), math.inf
    else:
        with checkpoint.as_directory() as directory:
            saved = load_tensors(Path(directory) / CHECKPOINT_FILE)
        previous, lowest = (
            LevelRun(saved["level"], Mask(saved["mask"]), saved["state"], [], {}),
            saved["lowest"],
        )
    start = previous.level + 1
    rewind_state = imp.replay(k)
    for level in range(start, target + 1):
        with _curve_writer(f"level_{level:02d}") as on_log:
            run = imp.level(level, k, rewind_state, previous, log_every=config["log_every"], on_log=on_log)
        lowest = min(lowest, run.metrics["validation_accuracy"])
        matching = lowest >= threshold
        goes_on = matching and level < target
        payload = {"level": level, "state": run.state, "mask": dict(run.mask), "lowest": lowest}
        _report(
            run,
            payload if goes_on else None,
            rewind_iteration=k,
            shortfall=threshold - lowest,
            matched=matching and level == target,
            stopped_early=not matching and level < target,
            attempt_start_level=start,
        )
        if not goes_on:
            return
        previous = run


# --- running a search ----------------------------------------------------------------------------


class SearchProgress(StageProgress):
    """A search's progress line, when a trial ends and at most every ``interval`` seconds:

    [earlyphase] search    7/20 trials done, 2 running · best validation accuracy 88.91% · 2m10s
    [earlyphase] search    5/12 trials done, 2 running · 3 matched, smallest matching k 137 · 6m02s
    """

    def __init__(self, stage: str, total: int, interval: float = 30.0):
        self.total = total
        super().__init__(stage, interval)

    @staticmethod
    def levels_of(config: dict) -> int:
        return 1

    def line(self, trials) -> str:
        status = [t.status for t in trials]
        finished = [t.last_result for t in trials if t.status == "TERMINATED" and t.last_result]
        errors = f", {status.count('ERROR')} failed" if "ERROR" in status else ""
        return (
            f"[earlyphase] {self.stage:<9} {len(finished)}/{self.total} trials done, "
            f"{status.count('RUNNING')} running{errors}{self._outcome(finished)} · "
            f"{_duration(time.monotonic() - self.began)}"
        )

    @staticmethod
    def _outcome(finished: list[dict]) -> str:
        """Chains: how many matched and the smallest matching k; dense trials: the best accuracy."""
        if not finished:
            return ""
        if "matched" in finished[0]:
            matched = [r["rewind_iteration"] for r in finished if r["matched"]]
            return f" · {len(matched)} matched" + (f", smallest matching k {min(matched)}" if matched else "")
        return f" · best validation accuracy {100 * max(r['validation_accuracy'] for r in finished):.2f}%"


def _label(config: dict) -> str:
    """A search trial's directory prefix: ``t007`` (dense) or ``t007_k137`` (a chain)."""
    label = f"t{config['study_trial']:03d}"
    return label + (f"_k{config[K_PARAMETER] - 1}" if K_PARAMETER in config else "")


def run_search_stage(
    trainable, searcher, trials: int, config: dict, execution: Execution, scheduler=None
) -> tune.ResultGrid:
    """Run (or, on ``--resume``, restore and finish) the search: a Tune experiment of ``trials``
    trials proposed by ``searcher()`` (called only for a new experiment: a restored one brings its
    searcher's state back), each seeing ``config`` plus its sampled parameters and ``study_trial``."""
    trainable = execution.with_resources(trainable)
    path = storage.join(execution.experiment_dir, SEARCH_STAGE)
    if execution.resume and tune.Tuner.can_restore(path):  # unpickles: only on --resume
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=config,
            tune_config=tune.TuneConfig(
                search_alg=searcher(),
                scheduler=scheduler,
                num_samples=trials,
                reuse_actors=True,  # a trial's worker keeps torch and the dataset loaded for the next
                trial_dirname_creator=lambda trial: f"{_label(trial.config)}_{trial.trial_id}",
            ),
            run_config=execution.run_config(SEARCH_STAGE, SearchProgress(SEARCH_STAGE, trials)),
        )
    print(f"[earlyphase] stage {SEARCH_STAGE}: {trials} trial(s) proposed by Optuna", flush=True)
    grid = tuner.fit()
    if grid.errors:
        raise SweepFailed(f"search: {len(grid.errors)} trial(s) failed, first: {grid.errors[0]}")
    finished = sum(bool(result.metrics.get("done")) for result in grid)
    if finished < trials:
        raise SweepFailed(
            f"the search was interrupted with {finished} of {trials} trials finished; "
            f"continue with --resume --name {execution.name}"
        )
    return grid


def _quiet_optuna() -> None:
    """No line per told trial from Optuna: the progress line and the summary say it."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def run_dense_search(search: DenseSearchSpec, execution: Execution) -> Outcome:
    """The dense search: trials, results.csv (one row per trial) and the best settings as a command."""
    _quiet_optuna()
    url, name = search.study_url(execution.experiment_dir), execution.name
    config = {"search": search.to_json(), "log_every": execution.log_every, "data_dir": execution.data_dir}
    scheduler = AsyncHyperBandScheduler(
        time_attr="training_iteration",
        metric="validation_accuracy",
        mode="max",
        max_t=max(search.evaluations(b) for b in search.batch_sizes),
        grace_period=search.grace_period,
        reduction_factor=search.reduction_factor,
    )
    grid = run_search_stage(
        dense_search_trial,
        lambda: dense_searcher(search, url, name),
        search.trials,
        config,
        execution,
        scheduler,
    )
    table = dense_search_table(grid, search, name)
    return Outcome(dense_summary(table, search, url, name), (write_table(execution, "results.csv", table),))


def run_earliest_k_search(search: EarliestKSearchSpec, execution: Execution) -> Outcome:
    """The earliest-k search: the dense run once, then the chains; results.csv (the dense run and
    one row per chain level), the Pareto front and the smallest matching k."""
    _quiet_optuna()
    url, name = search.study_url(execution.experiment_dir), execution.name
    base = {"spec": search.run.to_json(), "log_every": execution.log_every, "data_dir": execution.data_dir}
    plain_dense = tune.with_parameters(dense_trial, mask_refs={}, subset_refs={})  # plain dense run
    dense = run_stage("dense", plain_dense, [Trial("dense", search.seed)], base, execution)
    dense_accuracy = dense[0].metrics["validation_accuracy"]
    config = {**base, "search": search.to_json(), "threshold": dense_accuracy - search.tolerance}
    print(
        f"[earlyphase] dense validation accuracy {100 * dense_accuracy:.2f}%: a level matches at "
        f">= {100 * config['threshold']:.2f}%; chains prune to level {search.target_level}",
        flush=True,
    )
    chain = tune.with_parameters(earliest_k_trial, dense_refs=_share_dense(dense))
    grid = run_search_stage(
        chain, lambda: earliest_k_searcher(search, url, name), search.trials, config, execution
    )
    table = earliest_k_table(dense, grid, search, name)
    study = optuna.load_study(study_name=name, storage=url)
    summary = f"{earliest_k_summary(table, search, study, config['threshold'])}\n\n{_study_line(name, url)}"
    return Outcome(summary, (write_table(execution, "results.csv", table),))


# --- tables and summaries ------------------------------------------------------------------------


def _rows(grid, stage: str, seed: int, run_of, parameters: tuple[str, ...]) -> pd.DataFrame:
    """Every report of every trial in ``grid``, tagged with its stage, seed, run key and parameters."""
    frames = []
    for result in grid:
        frame = result.metrics_dataframe
        values = {PARAMETER_PREFIX + p: result.config[p] for p in parameters}
        frames.append(
            frame.assign(
                stage=stage,
                seed=seed,
                spec_key=run_of(result.config).key(),
                study_trial=result.config.get("study_trial"),
                **values,
            )
        )
    return pd.concat(frames, ignore_index=True)


def _tidy(
    table: pd.DataFrame, search: SearchSpec, experiment: str, parameters: tuple[str, ...]
) -> pd.DataFrame:
    run = search.run
    table = table.assign(
        experiment=experiment,
        model=run.model.name,
        dataset=run.data.dataset,
        pretraining=run.pretraining.mode,
        intervention="none",
    )
    columns = [*SEARCH_COLUMNS, *(PARAMETER_PREFIX + p for p in parameters)]
    table = table.reindex(columns=columns)
    table["rewind_iteration"] = table["rewind_iteration"].astype("Int64")
    table["study_trial"] = table["study_trial"].astype("Int64")
    return table.reset_index(drop=True)


def dense_search_table(grid, search: DenseSearchSpec, experiment: str) -> pd.DataFrame:
    """One row per trial: its last evaluation (the value Optuna was told) and its sampled settings."""
    parameters = tuple(dense_space(search))
    rows = _rows(grid, SEARCH_STAGE, search.seed, search.trial_run, parameters)
    rows = rows.drop_duplicates("trial_id", keep="last")
    totals = {result.metrics["trial_id"]: search.trial_run(result.config).total_iterations for result in grid}
    rows = rows.assign(stopped_early=rows.iterations < rows.trial_id.map(totals))
    return _tidy(rows.sort_values("study_trial"), search, experiment, parameters)


def earliest_k_table(dense_grid, grid, search: EarliestKSearchSpec, experiment: str) -> pd.DataFrame:
    """The dense run, then one row per (chain, level); a chain's ``matched`` and ``stopped_early``
    are on each of its rows."""
    dense = _rows(dense_grid, "dense", search.seed, lambda config: search.run, ())
    chains = _rows(grid, "imp", search.seed, lambda config: search.run, (K_PARAMETER,))
    chains = chains.drop_duplicates(["trial_id", "level"], keep="last").sort_values(["study_trial", "level"])
    outcome = ["matched", "stopped_early"]
    chains[outcome] = chains.groupby("trial_id")[outcome].transform("last")
    table = _tidy(pd.concat([dense, chains], ignore_index=True), search, experiment, (K_PARAMETER,))
    return table.astype({PARAMETER_PREFIX + K_PARAMETER: "Int64"})


def best_command(search: DenseSearchSpec, params: dict) -> str:
    """sweeps/rewind_grid.py with a trial's settings, training on the whole training set."""
    run = search.trial_run(params)
    run = run.replace(data=run.data.replace(validation_examples=0))
    return shlex.join(
        ["python", "sweeps/rewind_grid.py", *spec_arguments(run, ("data", "model", "training"))]
    )


def dense_summary(table: pd.DataFrame, search: DenseSearchSpec, study_url: str, study_name: str) -> str:
    """The best trial by validation accuracy, its settings and the command that trains them."""
    best = table.loc[table.validation_accuracy.idxmax()]
    params = {name: best[PARAMETER_PREFIX + name] for name in dense_space(search)}
    held_out = search.run.data.validation_examples
    return "\n".join(
        [
            f"Best of {len(table)} trials ({int(table.stopped_early.sum())} stopped early by ASHA): "
            f"validation accuracy {100 * best.validation_accuracy:.2f}% (study trial {best.study_trial}; "
            f"its test accuracy {100 * best.test_accuracy:.2f}% played no part in the selection)",
            f"  lr {params['lr']:.4g}, momentum {params['momentum']:.4g}, weight decay "
            f"{params['weight_decay']:.3g}, warmup {int(params['warmup'])} iterations, "
            f"batch size {int(params['batch_size'])}",
            "",
            f"IMP with these settings on the whole training set (the search held out {held_out} examples):",
            "",
            f"    {best_command(search, params)}",
            "",
            _study_line(study_name, study_url),
        ]
    )


def _study_line(name: str, url: str) -> str:
    return f"[earlyphase] study:       {name} in {url}"


def earliest_k_summary(
    table: pd.DataFrame, search: EarliestKSearchSpec, study: optuna.Study, threshold: float
) -> str:
    """The dense reference, the work done, the study's Pareto front and the smallest matching k."""
    chains = table[table.stage == "imp"]
    finals = chains.groupby("trial_id").tail(1)
    dense = table[table.stage == "dense"].iloc[0]
    level = search.target_level
    density = (1 - search.run.pruning.fraction) ** level
    lines = [
        f"Dense run (seed {search.seed}): validation accuracy {100 * dense.validation_accuracy:.2f}%; "
        f"a level matches at >= {100 * threshold:.2f}%.",
        f"{len(finals)} chains to level {level} ({100 * density:.1f}% density): {len(chains)} levels "
        f"trained, {int(finals.stopped_early.sum())} chains stopped early (a grid trains {level} per k).",
    ]
    front = sorted(study.best_trials, key=lambda t: (t.values[0], -t.values[1]))
    if not front:
        lines += [
            "",
            "No chain matched dense at the target density: widen --k-range or raise --target-density.",
        ]
        return "\n".join(lines)
    lines += [
        "",
        "Pareto front of the matching chains (smallest k, highest validation accuracy at the target):",
        "",
        "| study trial | k | validation accuracy % | test accuracy % |",
        "|---:|---:|---:|---:|",
        *(
            f"| {t.number} | {int(t.values[0])} | {100 * t.values[1]:.2f} | "
            f"{100 * t.user_attrs['test_accuracy']:.2f} |"
            for t in front
        ),
        "",
        f"Smallest matching k: {int(front[0].values[0])} (study trial {front[0].number}, "
        f"found after {front[0].number + 1} of {len(finals)} trials)",
    ]
    return "\n".join(lines)
