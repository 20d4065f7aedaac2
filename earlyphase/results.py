"""The schema of the tidy tables every sweep writes and every analysis reads (pandas only).

``results.csv``: one row per (trial, level). ``density`` is counted from the trial's actual
mask; ``intervention`` is ``none`` for IMP itself; ``pretraining`` is the pretraining's canonical
name (``none`` for plain rewinding, ``rotation``, ``blur_4``...) and ``pretraining_iterations`` its
length P (0 for none); ``attempt_start_level`` is the level the trial's last attempt started at
(> 1 after a retry resumed from a checkpoint). ``telemetry.csv``: one row per (trial, iteration,
metric, group).

A search (sweeps/search.py) writes ``results.csv`` with :data:`SEARCH_COLUMNS`: a dense search one
row per trial (its last evaluation), an earliest-k search the dense run and one row per (chain,
level). ``validation_*`` are on the held-out validation split (what the search selects on);
``study_trial`` is the Optuna trial number; ``stopped_early``: ASHA stopped the trial, or the chain
fell below dense - tolerance before the target density; ``matched``: the chain reached the target
density matching dense at every level. Then one column per sampled parameter, ``param_<name>``.

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
# Early-time linear dynamics (docs/experiments.md C). ``dynamics.csv``: one row per (trial, step, split,
# model, metric); model is network or linear (metrics loss, accuracy) or both (metric discrepancy); lr is
# the one used (the task's default when the sweep left it unset). ``kernel.csv``: one row per (trial,
# hidden width): the relative spectral error of the linear model's kernel against the network's NTK at init.
DYNAMICS_COLUMNS = (
    "experiment", "trial_id", "seed", "task", "architecture", "width", "activation", "lr", "trained_layers",
    "model", "step", "split", "metric", "value",
)  # fmt: skip
KERNEL_COLUMNS = (
    "experiment", "trial_id", "seed", "task", "architecture", "activation", "trained_layers", "input_dim",
    "hidden_width", "examples", "relative_error",
)  # fmt: skip
SEARCH_COLUMNS = (
    *RESULT_COLUMNS, "validation_accuracy", "validation_loss", "study_trial", "stopped_early", "matched",
)  # fmt: skip
PARAMETER_PREFIX = "param_"
SCORE_COLUMNS = ("experiment", "example_index", "label", "score", "network", "value")
PAIR_COLUMNS = (
    "experiment", "seed", "pretraining", "pretraining_iterations", "rewind_iteration", "level", "density",
)  # fmt: skip
STABILITY_COLUMNS = (*PAIR_COLUMNS, "alpha", "test_error", "train_error", "test_loss", "train_loss")
EXAMPLE_BARRIER_COLUMNS = (*PAIR_COLUMNS, "example_index", "label", "barrier")
