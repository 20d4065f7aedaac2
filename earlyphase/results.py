"""The schema of the tidy tables every sweep writes and every analysis reads (pandas only).

``results.csv``: one row per (trial, level). ``density`` is counted from the trial's actual
mask; ``intervention`` is ``none`` for IMP itself; ``pretraining`` is the pretraining's canonical
name (``none`` for plain rewinding, ``rotation``, ``blur_4``...) and ``pretraining_iterations`` its
length P (0 for none); ``attempt_start_level`` is the level the trial's last attempt started at
(> 1 after a retry resumed from a checkpoint). ``telemetry.csv``: one row per (trial, iteration,
metric, group).

Data diet and instability (docs/experiments.md B): ``scores.csv`` has one row per (score network,
score, training example); ``network`` is the score network's number 0..K-1 and the averaged score
is the mean over networks (``barrier``: the per-example midpoint loss barrier, from the networks
that computed it). ``stability.csv`` has one row per (copy pair, α) along the line between the two
copies trained from the state at k (``level`` 0: dense, else that IMP level's subnetwork);
``example_barriers.csv`` one row per (copy pair, training example).
"""

RESULT_COLUMNS = (
    "experiment", "trial_id", "stage", "seed", "model", "dataset", "rewind_iteration", "pretraining",
    "pretraining_iterations", "intervention", "level", "density", "sparsity", "test_accuracy",
    "test_loss", "train_loss", "iterations", "wall_time_s", "spec_key", "node_id", "attempt_start_level",
)  # fmt: skip
TELEMETRY_COLUMNS = (
    "experiment", "trial_id", "seed", "model", "dataset", "iteration", "metric", "group", "value",
)  # fmt: skip
SCORE_COLUMNS = ("experiment", "example_index", "label", "score", "network", "value")
PAIR_COLUMNS = (
    "experiment", "seed", "pretraining", "pretraining_iterations", "rewind_iteration", "level", "density",
)  # fmt: skip
STABILITY_COLUMNS = (*PAIR_COLUMNS, "alpha", "test_error", "train_error", "test_loss", "train_loss")
EXAMPLE_BARRIER_COLUMNS = (*PAIR_COLUMNS, "example_index", "label", "barrier")
