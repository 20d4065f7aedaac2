"""The linear-dynamics sweep (docs/experiments.md C): its grid, its command line, its summary, and the
smoke preset through a real (loopback) Ray: dynamics.csv, kernel.csv, TensorBoard, the report."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from raytools import sweep_module, trial_dirs

from earlyphase.analysis.dynamics_tables import discrepancy_summary, early_step
from earlyphase.analysis.report import main as report_main
from earlyphase.commandline import spec_flags
from earlyphase.linear_dynamics import dynamics_data, kernel_error_table, log_step_grid, run_dynamics
from earlyphase.results import DYNAMICS_COLUMNS, KERNEL_COLUMNS
from earlyphase.specs import DynamicsSpec
from earlyphase.sweep import DynamicsSweepSpec, DynamicsTrial
from earlyphase.tune.cli import main as sweep_main

torch.set_num_threads(1)
RUNNER = "earlyphase.tune.dynamics:run_dynamics_sweep"


def _presets() -> dict[str, DynamicsSweepSpec]:
    return sweep_module("linear_dynamics").PRESETS


def _sweep(argv: list[str]) -> int:
    return sweep_main("linear_dynamics", _presets(), "test", argv, DynamicsSweepSpec, RUNNER)


def test_grid_crosses_the_axes_and_keeps_the_base_where_an_axis_is_empty():
    sweep = DynamicsSweepSpec(
        dynamics=DynamicsSpec(hidden_width=64, train_examples=400),
        seeds=(0, 1),
        tasks=("gaussian", "fashion_mnist"),
        activations=("relu", "tanh"),
        learning_rates=(1.0, 2.0),
        image_examples=(300, 50),
        kernel_input_dims=(16, 64),
        kernel_architectures=("two_layer", "cnn"),
    )
    trials = sweep.dynamics_trials()
    assert len(trials) == 2 * 2 * 2 * 2 and len(set(trials)) == 16
    assert {t.width for t in trials} == {64} and {t.trained_layers for t in trials} == {"first"}
    image = sweep.trial_spec(
        DynamicsTrial("dynamics", 1, "fashion_mnist", "two_layer", "tanh", "first", 64, 2.0)
    )
    assert (image.train_examples, image.test_examples, image.lr, image.activation) == (300, 50, 2.0, "tanh")
    gaussian = sweep.trial_spec(trials[0])
    assert (gaussian.task, gaussian.train_examples, gaussian.lr) == ("gaussian", 400, 1.0)
    assert sweep.datasets() == ("fashion_mnist",)
    kernel = sweep.kernel_trials()
    assert len(kernel) == 2 * 2 * 2  # seeds × kernel architectures × activations (× one trained-layer set)
    spec = sweep.trial_spec(kernel[-1])
    assert (spec.task, spec.architecture, spec.train_examples, spec.input_dim) == ("gaussian", "cnn", 500, 16)
    assert DynamicsSweepSpec().kernel_trials() == []  # no input dims, no kernel stage


def test_unset_learning_rate_is_the_tasks_default():
    sweep = DynamicsSweepSpec(tasks=("gaussian", "fashion_mnist"))
    assert [sweep.trial_spec(t).lr for t in sweep.dynamics_trials()] == [4.0, 0.5]
    assert DynamicsSpec(task="cifar10", dynamics_lr=2.0).lr == 2.0


def test_every_field_has_one_flag_with_help():
    flags = spec_flags(DynamicsSweepSpec)
    names = [f.flag for f in flags]
    assert len(set(names)) == len(names)
    assert all(f.help and "\n" not in f.help for f in flags)
    assert {
        "tasks",
        "widths",
        "learning-rates",
        "trained-layer-sets",
        "kernel-input-dims",
        "hidden-width",
    } <= set(names)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--activations", "relu,gelu"], "unknown activation 'gelu'"),
        (["--activation", "gelu"], "unknown activation 'gelu'"),
        (["--architectures", "resnet"], "unknown architecture 'resnet'"),
        (["--kernel-architectures", "mlp"], "unknown architecture 'mlp'"),
        (["--widths", "0"], "hidden_width must be positive"),
        (["--widths", "-3"], "hidden_width must be positive"),
        (["--kernel-widths", "0"], "kernel_widths must be positive"),
        (["--learning-rates", "0"], "dynamics_lr must be positive"),
        (["--dynamics-lr", "-1"], "dynamics_lr must be positive"),
        (["--classes", "3,3"], "two distinct labels"),
        (["--classes", "1,10"], "two distinct labels"),
        (["--classes", "4"], "two distinct labels"),
        (["--tasks", "fashion_mnist", "--train-examples", "20000"], "12000 train"),
        (["--task", "fashion_mnist"], "give --tasks or --task"),
        (["--seeds", "1,1"], "seeds must be distinct"),
        (["--trained-layer-sets", "third"], "unknown trained_layers 'third'"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written_nothing_launched(
    argv, message, tmp_path, capsys, monkeypatch
):
    launched = []
    monkeypatch.setattr("earlyphase.tune.connect.start_ray", lambda *a, **k: launched.append(a))
    assert _sweep(["--preset", "quick", "--storage-path", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and message in err, err
    assert list(tmp_path.iterdir()) == [] and launched == []


def test_early_step_and_the_discrepancy_summary():
    assert early_step([0, 1, 2, 5, 10, 20, 100, 1000]) == 10  # within 1 % of 1000 steps
    assert early_step([0, 5, 50]) == 5  # nothing within 1 %: the first step after 0
    rows = [
        ("gaussian", "two_layer", 8, "relu", 4.0, "first", seed, model, step, split, metric, value)
        for seed, scale in ((0, 1.0), (1, 3.0))
        for step in (0, 1, 100)
        for split in ("train", "test")
        for model, metric, value in (
            ("both", "discrepancy", scale * step / 1000),
            ("network", "accuracy", 0.5 + step / 1000),
            ("linear", "accuracy", 0.5),
        )
    ]
    columns = ["task", "architecture", "width", "activation", "lr", "trained_layers", "seed"]
    table = pd.DataFrame(rows, columns=[*columns, "model", "step", "split", "metric", "value"])
    summary = discrepancy_summary(table).iloc[0]
    assert (summary.early_step, summary.last_step, summary.seeds) == (1, 100, 2)
    assert summary.train_early == pytest.approx(0.002) and summary.test_last == pytest.approx(0.2)
    assert summary.accuracy_network == pytest.approx(0.6) and summary.accuracy_linear == 0.5


def _values(table: pd.DataFrame, **where) -> pd.Series:
    rows = table
    for column, value in where.items():
        rows = rows[rows[column] == value]
    return rows.set_index("step").value


def test_smoke_sweep_writes_dynamics_and_kernel_tables_and_the_report(local_ray, tmp_path, capsys):
    assert _sweep(["--preset", "smoke", "--storage-path", str(tmp_path), "--name", "smoke"]) == 0
    experiment = tmp_path / "smoke"
    dynamics = pd.read_csv(experiment / "dynamics.csv")
    assert tuple(dynamics.columns) == DYNAMICS_COLUMNS
    assert dynamics.trial_id.nunique() == 2 and set(dynamics.width) == {32, 128}
    assert set(dynamics.lr) == {4.0} and set(dynamics.task) == {"gaussian"}
    assert set(zip(dynamics.model, dynamics.metric)) == {
        ("both", "discrepancy"), ("network", "loss"), ("network", "accuracy"), ("linear", "loss"),
        ("linear", "accuracy"),
    }  # fmt: skip
    grid = log_step_grid(300, 12)
    for _, curve in dynamics.groupby(["trial_id", "model", "split", "metric"]):
        assert curve.step.tolist() == grid
    at_start = dynamics[dynamics.step == 0].set_index(["width", "model", "split", "metric"]).value
    # the network trains f − f_0 (center_output, the default), so both models start at exactly 0 output:
    assert (at_start.xs("discrepancy", level="metric") == 0).all()  # discrepancy 0 (module docs)
    assert (at_start.xs("loss", level="metric") == 0.5).all()  # ½·mean (0 − (±1))²
    assert (at_start.xs("accuracy", level="metric") == 0).all()  # an output of exactly 0 counts as wrong
    for width in (32, 128):
        train = _values(dynamics, width=width, split="train", metric="discrepancy")
        assert train[1] < 0.02 and train[300] > 0.3 and train[1] < train[300] / 30  # early ≪ late
    # the table is the science core's: the 128-wide trial again, outside Ray
    sweep = _presets()["smoke"]
    spec = sweep.trial_spec(next(t for t in sweep.dynamics_trials() if t.width == 128))
    direct = run_dynamics(spec, 0, dynamics_data(spec, 0))
    ours = dynamics[dynamics.width == 128].set_index(["step", "split", "model", "metric"]).value
    theirs = direct.set_index(["step", "split", "model", "metric"]).value
    assert ours.sort_index().to_numpy() == pytest.approx(theirs.sort_index().to_numpy(), rel=1e-9, abs=1e-12)

    kernel = pd.read_csv(experiment / "kernel.csv")
    assert tuple(kernel.columns) == KERNEL_COLUMNS
    assert sorted(zip(kernel.input_dim, kernel.hidden_width)) == [(10, 64), (10, 256), (40, 64), (40, 256)]
    assert (kernel.examples == 100).all() and (kernel.task == "gaussian").all()
    kernel_spec = sweep.trial_spec(sweep.kernel_trials()[0])
    expected = kernel_error_table(kernel_spec, 0, (64, 256), (10, 40)).relative_error
    assert kernel.relative_error.tolist() == pytest.approx(expected.tolist(), rel=1e-9)
    assert kernel.relative_error.between(0.05, 0.6).all()  # finite width and n/d: not tiny, not broken

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trial = next(d for d in trial_dirs(experiment, "dynamics") if "_m128_" in d.name)
    events = EventAccumulator(str(trial / "curves")).Reload()
    assert {"loss/train/network", "accuracy/test/linear", "discrepancy/test/both"} <= set(
        events.Tags()["scalars"]
    )
    assert [e.step for e in events.Scalars("discrepancy/train/both")] == grid
    out = capsys.readouterr().out
    assert "RMS discrepancy" in out and "Kernel check" in out and "kernel.csv" in out

    assert report_main([str(experiment)]) == 0  # no results.csv needed
    report = experiment / "report"
    assert (report / "dynamics_gaussian.png").stat().st_size > 10_000
    assert (report / "kernel_error.png").stat().st_size > 10_000
    text = (report / "report.md").read_text()
    assert (
        "![gaussian: network vs linear model](dynamics_gaussian.png)" in text
        and "| d = 10 | d = 40 |" in text
    )
