"""Tune function trainables: thin wrappers that call the science core and report.

Every trial's config holds ``spec`` (the sweep's RunSpec as canonical JSON; the trial's own
pretraining replaces the run's), ``trial`` (its :class:`~earlyphase.sweep.Trial`), ``log_every`` and
``data_dir``. Shared inputs arrive as ObjectRefs through ``tune.with_parameters``: dense states keyed
by (seed, pretraining), masks by (seed, pretraining, k, level); each trial fetches only what it needs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path

import ray
import torch
from ray import tune

from earlyphase.imp import IMP, LevelRun
from earlyphase.masks import Mask
from earlyphase.specs import RunSpec, TelemetrySpec
from earlyphase.store import load_tensors, save_tensors
from earlyphase.sweep import NO_PRETRAINING, Trial
from earlyphase.telemetry import EarlyPhaseTelemetry, log_schedule

CHECKPOINT_FILE = "state.pt"
TELEMETRY_FILE = "telemetry.csv"


def trial_worker_setup() -> None:
    """Threads as many as the trial's CPUs; no line per checkpoint in the driver's output, nor a
    traceback when Ray's SIGTERM of a finished trial's worker lands inside a weakref callback."""
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    sys.unraisablehook = _quiet_exit_in_callbacks
    cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))


def _quiet_exit_in_callbacks(unraisable) -> None:
    """Python can only print (not raise) the SystemExit of Ray's SIGTERM handler when the signal
    arrives during a weakref callback or ``__del__``; Ray kills the worker anyway. Others print."""
    if not isinstance(unraisable.exc_value, SystemExit):
        sys.__unraisablehook__(unraisable)


def _setup(config: dict) -> tuple[IMP, Trial]:
    """Threads as many as the trial's CPUs, the GPU Ray assigned (or the CPU), the data loaded."""
    trial_worker_setup()
    trial = Trial.from_config(config["trial"])
    run = RunSpec.from_json(config["spec"]).replace(pretraining=trial.pretraining_spec)
    return IMP(run, trial.seed, data_dir=config.get("data_dir")), trial


def _tensorboard(subdirectory: str):
    """A TensorBoard writer in the trial's directory (synced to storage with the trial)."""
    from torch.utils.tensorboard import SummaryWriter

    return contextlib.closing(SummaryWriter(os.path.join(tune.get_context().get_trial_dir(), subdirectory)))


@contextlib.contextmanager
def _curve_writer(level_prefix: str):
    """Per-iteration curves (train loss/accuracy, lr, test metrics) into the trial's TensorBoard log."""
    with _tensorboard("curves") as writer:

        def on_log(row: dict[str, float]) -> None:
            for key, value in row.items():
                if key != "iteration":
                    writer.add_scalar(f"{level_prefix}/{key}", value, int(row["iteration"]))

        yield on_log


def _report(run: LevelRun, checkpoint_payload: dict | None = None, **extra) -> None:
    metrics = {**run.metrics, "node_id": ray.get_runtime_context().get_node_id(), **extra}
    if checkpoint_payload is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        save_tensors(Path(tmp) / CHECKPOINT_FILE, checkpoint_payload)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def dense_trial(config: dict, mask_refs: dict, subset_refs: dict) -> None:
    """Level 0: train the dense network once, keeping the full state at every rewind iteration; with
    a pretraining mode, pretrain for P first (keeping the states at 0 and P). Sparse pretraining
    trains the mask of its level of the plain chain rewound to its k, and reports that level. A
    scored subset's indices come from ``subset_refs`` (pretraining JSON → ref)."""
    imp, trial = _setup(config)
    pretraining, mask = imp.spec.pretraining, None
    subset = ray.get(subset_refs[trial.pretraining]) if pretraining.scored_subset else None
    if pretraining.sparse_level:
        key = (trial.seed, NO_PRETRAINING, pretraining.sparse_rewind_iteration, pretraining.sparse_level)
        mask = Mask(ray.get(mask_refs[key]))
    with _curve_writer(f"level_{trial.start_level:02d}") as on_log:
        dense = imp.dense(
            trial.keep_states,
            pretraining_mask=mask,
            pretraining_subset=subset,
            log_every=config["log_every"],
            on_log=on_log,
        )
    payload = {"rewind_states": dense.captured, "state": dense.state, "mask": dict(dense.mask)}
    _report(dense, payload, attempt_start_level=dense.level)


def imp_chain_trial(config: dict, dense_refs: dict) -> None:
    """IMP with rewinding to k, level after level; each level is checkpointed and reported, and a
    restarted trial continues after its last finished level. After sparse pretraining the chain
    continues from the pretrained level."""
    imp, trial = _setup(config)
    k, levels = trial.rewind_iteration, config["levels"]
    refs = dense_refs[(trial.seed, trial.pretraining)]
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        dense = ray.get(refs["final"])
        previous = LevelRun(trial.start_level, Mask(dense["mask"]), dense["state"], [], {})
        masks: dict[int, dict] = {}
    else:
        with checkpoint.as_directory() as directory:
            saved = load_tensors(Path(directory) / CHECKPOINT_FILE)
        masks = saved["masks"]
        previous = LevelRun(saved["level"], Mask(masks[saved["level"]]), saved["state"], [], {})
    rewind_state = ray.get(refs["rewind_states"][k])
    start_level = previous.level + 1
    for level in range(start_level, levels + 1):
        with _curve_writer(f"level_{level:02d}") as on_log:
            run = imp.level(level, k, rewind_state, previous, log_every=config["log_every"], on_log=on_log)
        masks[level] = dict(run.mask)
        _report(run, {"level": level, "state": run.state, "masks": masks}, attempt_start_level=start_level)
        previous = run


def branch_trial(config: dict, dense_refs: dict, mask_refs: dict) -> None:
    """An intervention on the subnetwork of (seed, k, level), trained from k like IMP."""
    imp, trial = _setup(config)
    seed, k, level = trial.seed, trial.rewind_iteration, trial.level
    states = dense_refs[(seed, trial.pretraining)]["rewind_states"]
    rewind_states = {k: ray.get(states[k]), 0: ray.get(states[0])}
    mask = Mask(ray.get(mask_refs[(seed, trial.pretraining, k, level)]))
    with _curve_writer(f"level_{level:02d}") as on_log:
        run = imp.branch(
            trial.intervention, level, k, rewind_states, mask, log_every=config["log_every"], on_log=on_log
        )
    _report(run, attempt_start_level=level)


def telemetry_trial(config: dict, mask_refs: dict) -> None:
    """The dense run again (bitwise the same on CPU), observed by the early-phase telemetry; the
    tidy table goes into the checkpoint and TensorBoard."""
    imp, trial = _setup(config)
    spec = TelemetrySpec.from_json(config["telemetry"])
    seed = trial.seed
    end = min(imp.spec.iterations(spec.end), imp.total_iterations - 1)
    split = None
    if spec.split_level:
        key = (seed, NO_PRETRAINING, spec.split_rewind_iteration, spec.split_level)
        split = Mask(ray.get(mask_refs[key]))
    telemetry = EarlyPhaseTelemetry(
        imp.new_model(),
        imp.data,
        log_schedule(end, spec.every_until, spec.points),
        seed,
        tracked=spec.tracked,
        train_eval_examples=spec.train_eval_examples,
        split=split,
    )
    dense = imp.dense([], step_hook=telemetry.hook)
    telemetry.finish(dense.state)
    table = telemetry.table()
    with _tensorboard("telemetry") as writer:
        for row in table.itertuples():
            writer.add_scalar(f"{row.metric}/{row.group}", row.value, int(row.iteration))
    with tempfile.TemporaryDirectory() as tmp:
        table.to_csv(Path(tmp) / TELEMETRY_FILE, index=False)
        metrics = {**dense.metrics, "node_id": ray.get_runtime_context().get_node_id()}
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))
