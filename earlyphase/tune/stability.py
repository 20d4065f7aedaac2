"""Runs a :class:`~earlyphase.sweep.StabilitySpec` on Ray Tune (docs/experiments.md B).

dense, imp, branch (the IMP sweep)        → results.csv; rewind states and masks, ray.put
stability (one trial per chain × level)   → two copies from the state at k, the α path and the
                                            per-example barriers in its checkpoint
                                          → stability.csv, example_barriers.csv
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pandas as pd
import ray
import torch
from ray import tune

from earlyphase.analysis.datadiet import instability_summary
from earlyphase.connectivity import (
    copy_data_seeds,
    error_barrier,
    example_barriers,
    fraction_connected,
    train_copies,
)
from earlyphase.data import load_split
from earlyphase.imp import IMP
from earlyphase.masks import Mask
from earlyphase.results import EXAMPLE_BARRIER_COLUMNS, STABILITY_COLUMNS
from earlyphase.store import load_tensors, save_tensors
from earlyphase.sweep import StabilitySpec, StabilityTrial
from earlyphase.tune.engine import Execution, Outcome, imp_results, run_imp_stages, run_stage, write_table
from earlyphase.tune.trainables import CHECKPOINT_FILE, trial_worker_setup

PATH_COLUMNS = ("alpha", "test_error", "test_loss", "train_error", "train_loss")


def stability_trial(config: dict, dense_refs: dict, mask_refs: dict) -> None:
    """From the (seed, pretraining) run's state at k (level 0) or that state under the level's mask,
    train two copies to the end with different data orders; evaluate the line between them and the
    per-example midpoint barriers. One report, the path and barriers in its checkpoint."""
    trial_worker_setup()
    trial = StabilityTrial(**config["trial"])
    spec = StabilitySpec.from_json(config["stability"])
    run = spec.sweep.run.replace(pretraining=trial.pretraining_spec)
    seed, k, level = trial.seed, trial.rewind_iteration, trial.level
    start = time.perf_counter()
    state = ray.get(dense_refs[(seed, trial.pretraining)]["rewind_states"][k])
    mask = Mask(ray.get(mask_refs[(seed, trial.pretraining, k, level)])) if level else None
    copies = train_copies(run, state, k, seed, copy_data_seeds(seed), mask, data_dir=config["data_dir"])
    imp = IMP(run, seed, data_dir=config["data_dir"])
    model = imp.new_model()
    bn = {"bn": spec.interpolation_bn, "bn_batches": spec.bn_batches}
    path = error_barrier(
        model,
        *copies,
        imp.data,
        points=spec.alpha_points,
        threshold=spec.barrier_threshold,
        train_examples=spec.barrier_train_examples or None,
        **bn,
    )
    barriers = example_barriers(model, *copies, imp.data, **bn)
    density = mask.density if mask is not None else 1.0
    metrics = {
        "level": level,
        "density": density,
        "test_barrier": path.test_barrier,
        "train_barrier": path.train_barrier,
        "connected": float(path.connected),
        "fraction_connected": fraction_connected(barriers, spec.example_eps),
        "wall_time_s": time.perf_counter() - start,
    }
    payload = {
        "path": torch.tensor([[getattr(path, c)[i] for c in PATH_COLUMNS] for i in range(len(path.alpha))])
    }
    payload["barriers"] = barriers
    with tempfile.TemporaryDirectory() as tmp:
        save_tensors(Path(tmp) / CHECKPOINT_FILE, payload)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def stability_label(config: dict) -> str:
    """``s0_k100_L00``, with the pretraining: ``s0_rotation_P500it_k500_L02``."""
    trial = StabilityTrial(**config["trial"])
    pretraining = trial.pretraining_spec
    label = f"s{trial.seed}"
    if pretraining.mode != "none":
        label += f"_{pretraining.name}_P{pretraining.iterations}"
    return f"{label}_k{trial.rewind_iteration}_L{trial.level:02d}"


def stability_level(config: dict) -> int:
    return config["trial"]["level"]


def stability_tables(
    grid, spec: StabilitySpec, experiment: str, labels: torch.Tensor
) -> tuple[pd.DataFrame, ...]:
    """stability.csv (a row per pair and α) and example_barriers.csv (a row per pair and example)."""
    paths, examples = [], []
    for result in grid:
        trial = StabilityTrial(**result.config["trial"])
        pretraining = trial.pretraining_spec
        pair = {
            "experiment": experiment,
            "seed": trial.seed,
            "pretraining": pretraining.name,
            "pretraining_iterations": spec.sweep.pretraining_iterations(pretraining),
            "rewind_iteration": trial.rewind_iteration,
            "level": trial.level,
            "density": result.metrics["density"],
        }
        with result.checkpoint.as_directory() as directory:
            saved = load_tensors(Path(directory) / CHECKPOINT_FILE)
        paths.append(pd.DataFrame(saved["path"].numpy(), columns=PATH_COLUMNS).assign(**pair))
        barriers = saved["barriers"].numpy()
        examples.append(
            pd.DataFrame(
                {"example_index": range(len(barriers)), "label": labels.numpy(), "barrier": barriers}
            ).assign(**pair)
        )
    keys = ["pretraining_iterations", "pretraining", "seed", "rewind_iteration", "level"]
    stability = pd.concat(paths, ignore_index=True).sort_values([*keys, "alpha"], kind="stable")
    barriers = pd.concat(examples, ignore_index=True).sort_values([*keys, "example_index"], kind="stable")
    return (
        stability[list(STABILITY_COLUMNS)].reset_index(drop=True),
        barriers[list(EXAMPLE_BARRIER_COLUMNS)].reset_index(drop=True),
    )


def run_stability(spec: StabilitySpec, execution: Execution) -> Outcome:
    """The IMP sweep (results.csv), then the stability stage (stability.csv, example_barriers.csv)."""
    stages = run_imp_stages(spec.sweep, execution, share_masks=any(spec.stability_levels))
    results_path, summary = imp_results(stages.grids, spec.sweep, execution)
    base = {"stability": spec.to_json(), "data_dir": execution.data_dir}
    trainable = tune.with_parameters(
        stability_trial, dense_refs=stages.dense_refs, mask_refs=stages.mask_refs
    )
    grid = run_stage("stability", trainable, spec.trials(), base, execution, stability_label, stability_level)
    labels = load_split(spec.sweep.run.data.dataset, True, execution.data_dir)[1]
    stability, barriers = stability_tables(grid, spec, execution.name, labels)
    paths = (
        results_path,
        write_table(execution, "stability.csv", stability),
        write_table(execution, "example_barriers.csv", barriers),
    )
    return Outcome(f"{instability_summary(stability, barriers, spec.example_eps)}\n\n{summary}", paths)
