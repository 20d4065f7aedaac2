"""Runs a :class:`~earlyphase.sweep.DataDietSpec` on Ray Tune (docs/experiments.md B).

    scores  (one trial per score network)  → its scores (and per-example barriers) in its checkpoint
            → scores.csv; averaged; the scored subsets' indices, ray.put once
    dense, imp, branch (the IMP sweep, subsets pretrained on) → results.csv

A score network is computed once: its trial reports once, with the scores in its checkpoint, and a
resumed experiment restores the finished trials of the stage.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pandas as pd
import ray
import torch
from ray import tune

from earlyphase.analysis.datadiet import averaged_scores, score_agreement_summary
from earlyphase.catalog import dataset_info
from earlyphase.connectivity import copy_data_seeds, example_barriers, train_copies
from earlyphase.data import load_split
from earlyphase.imp import IMP
from earlyphase.results import SCORE_COLUMNS
from earlyphase.scores import scored_network, subset_indices
from earlyphase.specs import RunSpec, ScoreSpec
from earlyphase.store import load_tensors, save_tensors
from earlyphase.sweep import DataDietSpec, ScoreTrial
from earlyphase.tune.engine import Execution, Outcome, imp_results, run_imp_stages, run_stage, write_table
from earlyphase.tune.trainables import CHECKPOINT_FILE, trial_worker_setup

BARRIER = "barrier"


def score_trial(config: dict) -> None:
    """Train one score network for ``score_steps`` and score the training set; with ``barriers``,
    also train two copies of it from there to the run's end with different data orders and score
    each example's midpoint loss barrier. One report (level 0), the scores in its checkpoint."""
    trial_worker_setup()
    trial = ScoreTrial(**config["trial"])
    run, scoring = RunSpec.from_json(config["spec"]), ScoreSpec.from_json(config["scoring"])
    start = time.perf_counter()
    scores, state = scored_network(run, trial.seed, scoring, data_dir=config["data_dir"])
    if trial.barriers:
        k = run.iterations(scoring.score_steps)
        copies = train_copies(
            run, state, k, trial.seed, copy_data_seeds(trial.seed), data_dir=config["data_dir"]
        )
        imp = IMP(run, trial.seed, data_dir=config["data_dir"])
        scores[BARRIER] = example_barriers(imp.new_model(), *copies, imp.data)
    metrics = {
        "level": 0,
        "seed": trial.seed,
        "examples": len(next(iter(scores.values()))),
        "wall_time_s": time.perf_counter() - start,
        **{f"{name}_mean": value.mean().item() for name, value in scores.items()},
    }
    with tempfile.TemporaryDirectory() as tmp:
        save_tensors(Path(tmp) / CHECKPOINT_FILE, scores)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def score_label(config: dict) -> str:
    """``score_s2000003`` (``_barriers`` when it scores barriers too)."""
    trial = config["trial"]
    return f"score_s{trial['seed']}" + ("_barriers" if trial["barriers"] else "")


def reports_level_zero(config: dict) -> int:
    return 0


def scores_table(grid, labels: torch.Tensor, experiment: str) -> pd.DataFrame:
    """One row per (score network, score, example), networks numbered in the order of their seeds."""
    results = sorted(grid, key=lambda result: result.config["trial"]["seed"])
    frames = []
    for network, result in enumerate(results):
        with result.checkpoint.as_directory() as directory:
            scores = load_tensors(Path(directory) / CHECKPOINT_FILE)
        for name, value in scores.items():
            frames.append(
                pd.DataFrame(
                    {"example_index": range(len(value)), "label": labels.numpy(), "value": value.numpy()}
                ).assign(score=name, network=network)
            )
    return pd.concat(frames, ignore_index=True).assign(experiment=experiment)[list(SCORE_COLUMNS)]


def run_data_diet(diet: DataDietSpec, execution: Execution) -> Outcome:
    """The scores stage, scores.csv, the scored subsets, then the IMP sweep on them → results.csv."""
    run = diet.sweep.run
    config = {"spec": run.to_json(), "scoring": diet.scoring.to_json(), "data_dir": execution.data_dir}
    grid = run_stage(
        "scores", score_trial, diet.score_trials(), config, execution, score_label, reports_level_zero
    )
    labels = load_split(run.data.dataset, True, execution.data_dir)[1]
    table = scores_table(grid, labels, execution.name)
    scores_path = write_table(execution, "scores.csv", table)
    averaged = {name: torch.tensor(values) for name, values in averaged_scores(table).items()}
    classes = dataset_info(run.data.dataset).num_classes
    subset_refs = {
        p.to_json(): ray.put(subset_indices(p, averaged, labels, classes))
        for p in diet.sweep.pretrainings()
        if p.scored_subset
    }
    stages = run_imp_stages(diet.sweep, execution, subset_refs)
    results_path, summary = imp_results(stages.grids, diet.sweep, execution)
    return Outcome(f"{score_agreement_summary(table)}\n\n{summary}", (scores_path, results_path))
