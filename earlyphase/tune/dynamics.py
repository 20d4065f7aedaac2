"""Runs a :class:`~earlyphase.sweep.DynamicsSweepSpec` (docs/experiments.md C) on Ray Tune.

    dynamics  (one trial per point of the grid)        → a network and its linear model under full-batch
                                                          GD, measured on a log-spaced grid → dynamics.csv
    kernel    (one per network, if kernel input dims)   → the NTK at init against the linear model's
                                                          kernel for every d and m → kernel.csv

Every trial reports once (level 0), its tidy table in its checkpoint; the dynamics curves also go to
the trial's TensorBoard log (``loss/train/network``, ``discrepancy/test/both``...). Stages restore
like the IMP stages: on ``--resume`` finished trials are kept.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import ray
from ray import tune

from earlyphase.analysis.dynamics_tables import sweep_summary
from earlyphase.linear_dynamics import dynamics_data, kernel_error_table, run_dynamics
from earlyphase.results import DYNAMICS_COLUMNS, KERNEL_COLUMNS
from earlyphase.sweep import DynamicsSweepSpec, DynamicsTrial
from earlyphase.tune.engine import Execution, Outcome, run_stage, write_table
from earlyphase.tune.trainables import trial_worker_setup

TABLE_FILE = "table.csv"


def _setup(config: dict) -> tuple[DynamicsSweepSpec, DynamicsTrial]:
    """Threads as many as the trial's CPUs; the sweep and the trial from the Tune config."""
    trial_worker_setup()
    return DynamicsSweepSpec.from_json(config["sweep"]), DynamicsTrial.from_config(config["trial"])


def _report(table: pd.DataFrame, metrics: dict) -> None:
    """The single report of a trial (level 0), its table in the checkpoint."""
    with tempfile.TemporaryDirectory() as tmp:
        table.to_csv(Path(tmp) / TABLE_FILE, index=False)
        metrics = {**metrics, "level": 0, "node_id": ray.get_runtime_context().get_node_id()}
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def dynamics_trial(config: dict) -> None:
    """A network and its linear model trained side by side (:func:`~earlyphase.linear_dynamics.run_dynamics`);
    the curves also to TensorBoard."""
    sweep, trial = _setup(config)
    spec = sweep.trial_spec(trial)
    started = time.monotonic()
    table = run_dynamics(spec, trial.seed, dynamics_data(spec, trial.seed, config.get("data_dir")))
    from torch.utils.tensorboard import SummaryWriter

    directory = os.path.join(tune.get_context().get_trial_dir(), "curves")
    with contextlib.closing(SummaryWriter(directory)) as writer:
        for row in table.itertuples():
            writer.add_scalar(f"{row.metric}/{row.split}/{row.model}", row.value, int(row.step))
    last = table[table.step == table.step.max()]
    final = {f"{r.metric}_{r.split}_{r.model}": r.value for r in last.itertuples()}
    _report(table, {**final, "lr": spec.lr, "wall_time_s": time.monotonic() - started})


def kernel_trial(config: dict) -> None:
    """The kernel check of one network at every input dimension and width of the sweep."""
    sweep, trial = _setup(config)
    spec = sweep.trial_spec(trial)
    table = kernel_error_table(spec, trial.seed, sweep.kernel_widths, sweep.kernel_input_dims)
    errors = {
        f"relative_error_d{r.input_dim}_m{r.hidden_width}": r.relative_error for r in table.itertuples()
    }
    _report(table, errors)


def trial_lr(config: dict) -> float:
    """The learning rate a dynamics trial uses (the task's default when the sweep leaves it unset)."""
    sweep = DynamicsSweepSpec.from_json(config["sweep"])
    return sweep.trial_spec(DynamicsTrial.from_config(config["trial"])).lr


def dynamics_label(config: dict) -> str:
    """``s0_gaussian_two_layer_m256_relu_first_lr4`` (dynamics), ``s0_kernel_two_layer_relu_first``."""
    t = DynamicsTrial.from_config(config["trial"])
    if t.stage == "kernel":
        return f"s{t.seed}_kernel_{t.architecture}_{t.activation}_{t.trained_layers}"
    network = f"{t.architecture}_m{t.width}_{t.activation}_{t.trained_layers}"
    return f"s{t.seed}_{t.task}_{network}_lr{trial_lr(config):g}"


def single_report(config: dict) -> int:
    """Every dynamics and kernel trial reports once, at level 0."""
    return 0


def _gather(grid, columns: tuple[str, ...], experiment: str) -> pd.DataFrame:
    """Every trial's table from its checkpoint, with the trial's coordinates as columns (a dynamics
    trial's width and the learning rate it used too)."""
    frames = []
    for result in grid:
        trial = DynamicsTrial.from_config(result.config["trial"])
        with result.checkpoint.as_directory() as directory:
            frame = pd.read_csv(Path(directory) / TABLE_FILE)
        coordinates = {
            "trial_id": result.metrics["trial_id"],
            "seed": trial.seed,
            "task": trial.task,
            "architecture": trial.architecture,
            "activation": trial.activation,
            "trained_layers": trial.trained_layers,
        }
        if trial.stage == "dynamics":
            coordinates |= {"width": trial.width, "lr": trial_lr(result.config)}
        frames.append(frame.assign(**coordinates))
    table = pd.concat(frames, ignore_index=True).assign(experiment=experiment)
    return table[list(columns)]


def run_dynamics_sweep(sweep: DynamicsSweepSpec, execution: Execution) -> Outcome:
    """Run (or finish) the dynamics stage and, if the sweep has kernel input dimensions, the kernel
    stage; write dynamics.csv and kernel.csv; summarise early vs late discrepancy and kernel error."""
    config = {"sweep": sweep.to_json(), "data_dir": execution.data_dir}
    stage = dict(label=dynamics_label, final_level=single_report)
    grid = run_stage("dynamics", dynamics_trial, sweep.dynamics_trials(), config, execution, **stage)
    dynamics = _gather(grid, DYNAMICS_COLUMNS, execution.name)
    order = ["task", "architecture", "width", "activation", "lr", "trained_layers", "seed", "model"]
    dynamics = dynamics.sort_values([*order, "split", "metric", "step"], kind="stable")
    tables = [write_table(execution, "dynamics.csv", dynamics)]
    kernel = None
    if sweep.kernel_trials():
        grid = run_stage("kernel", kernel_trial, sweep.kernel_trials(), config, execution, **stage)
        kernel = _gather(grid, KERNEL_COLUMNS, execution.name)
        keys = ["architecture", "activation", "trained_layers", "seed", "input_dim", "hidden_width"]
        kernel = kernel.sort_values(keys, kind="stable")
        tables.append(write_table(execution, "kernel.csv", kernel))
    return Outcome(sweep_summary(dynamics, kernel), tuple(tables))
