"""The schema of the tidy tables every sweep writes and every analysis reads (pandas only).

``results.csv``: one row per (trial, level). ``density`` is counted from the trial's actual
mask; ``intervention`` is ``none`` for IMP itself; ``pretraining`` is the pretraining's canonical
name (``none`` for plain rewinding, ``rotation``, ``blur_4``...) and ``pretraining_iterations`` its
length P (0 for none); ``attempt_start_level`` is the level the trial's last attempt started at
(> 1 after a retry resumed from a checkpoint). ``telemetry.csv``: one row per (trial, iteration,
metric, group).
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
