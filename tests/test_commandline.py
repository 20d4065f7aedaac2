"""The command line generated from the specs: flags, --config / --print-config, one-line errors."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path

import pytest
from raytools import sweep_module

from earlyphase.__main__ import main as run_main
from earlyphase.commandline import spec_flags
from earlyphase.imp import check_run
from earlyphase.specs import RunSpec
from earlyphase.sweep import SweepSpec, Trial
from earlyphase.tune.cli import main as sweep_main
from earlyphase.tune.cli import parser, resolve_sweep
from earlyphase.tune.progress import StageProgress

ROOT = Path(__file__).resolve().parents[1]


def _presets(name: str) -> dict[str, SweepSpec]:
    return sweep_module(name).PRESETS


def _resolve(argv: list[str], family: str = "rewind_grid") -> SweepSpec:
    presets = _presets(family)
    p, flags = parser(family, presets, "test")
    return resolve_sweep(presets, p.parse_args(argv), flags)


def _leaf_fields(cls: type, path=()) -> set[tuple[str, ...]]:
    """Paths of every non-spec field, nested specs (``X`` or ``X | None``) walked into."""
    leaves = set()
    for name, kind in typing.get_type_hints(cls).items():
        nested = [k for k in (kind, *typing.get_args(kind)) if dataclasses.is_dataclass(k)]
        leaves |= _leaf_fields(nested[0], (*path, name)) if nested else {(*path, name)}
    return leaves


@pytest.mark.parametrize("cls", [RunSpec, SweepSpec])
def test_every_spec_field_has_one_flag_with_help(cls):
    flags = spec_flags(cls)
    assert {f.path for f in flags} == _leaf_fields(cls)
    assert len({f.flag for f in flags}) == len(flags)
    assert all(f.help and "\n" not in f.help for f in flags)
    names = {f.flag for f in flags}
    assert {"model", "width", "lr", "batch-size", "pruning-fraction", "layers-to-ignore", "steps"} <= names


def test_flags_change_the_spec_fields_they_name():
    sweep = _resolve(
        [
            "--preset",
            "quick",
            "--model",
            "resnet14",
            "--width",
            "2",
            "--lr",
            "0.2",
            "--batch-size",
            "256",
            "--levels",
            "3",
            "--layers-to-ignore",
            "fc.weight",
            "--milestones",
            "2ep,3ep",
            "--no-augment",
            "--seeds",
            "0,1",
        ]
    )
    quick = _presets("rewind_grid")["quick"]
    run = sweep.run
    assert (run.model.name, run.model.width, run.training.lr, run.data.batch_size) == (
        "resnet14",
        2,
        0.2,
        256,
    )
    assert run.pruning.layers_to_ignore == ("fc.weight",) and run.training.milestones == ("2ep", "3ep")
    assert run.data.augment is False and sweep.seeds == (0, 1) and sweep.levels == 3
    # everything not given stays the preset's
    assert run.training.momentum == quick.run.training.momentum and run.data.dataset == "fashion_mnist"
    assert sweep.rewind_iterations == quick.rewind_iterations and sweep.key() != quick.key()


def test_rewind_steps_resolve_against_the_changed_batch_size():
    sweep = _resolve(["--batch-size", "600", "--rewind-iterations", "0,1ep,1ep5it"])
    assert sweep.rewind_iterations == (0, 100, 105)  # 60,000 / 600 = 100 iterations per epoch


def test_steps_alone_scales_the_milestones_with_the_length():
    quick = _presets("rewind_grid")["quick"].run  # 6 epochs of 469 iterations, the lr drop after 4
    assert quick.training.milestones == ("4ep",)
    assert _resolve(["--steps", "3ep"]).run.training.milestones == ("2ep",)
    assert _resolve(["--steps", "900it"]).run.training.milestones == ("1ep131it",)  # 600 = 900 × 4/6
    # the fraction is kept in the new epoch: 3 epochs of 200 iterations at batch 300 drop after 400
    sweep = _resolve(["--steps", "3ep", "--batch-size", "300"])
    assert sweep.run.training.milestones == ("2ep",) and sweep.run.total_iterations == 600
    assert _resolve(["--steps", "3ep", "--milestones", "1ep"]).run.training.milestones == ("1ep",)
    assert _resolve(["--steps", "3ep", "--milestones", ""]).run.training.milestones == ()
    paper = _resolve(["--preset", "paper", "--steps", "40ep", "--warmup", "100it"]).run.training
    assert (paper.milestones, paper.warmup, paper.steps) == (("20ep", "30ep"), "100it", "40ep")
    assert _resolve(["--preset", "paper", "--warmup", "100it"]).run.training.milestones == ("80ep", "120ep")


def test_steps_scale_the_milestones_of_a_config_too(tmp_path, capsys):
    config = tmp_path / "sweep.json"
    config.write_text(_presets("rewind_grid")["paper"].to_json())
    argv = ["--config", str(config), "--steps", "80ep", "--print-config"]
    assert sweep_main("rewind_grid", {}, "test", argv) == 0
    assert json.loads(capsys.readouterr().out)["run"]["training"]["milestones"] == ["40ep", "60ep"]


def test_milestones_beyond_the_new_end_are_refused_naming_them(capsys):
    argv = ["--preset", "paper", "--steps", "40ep", "--milestones", "30ep,80ep,120ep", "--print-config"]
    assert sweep_main("rewind_grid", _presets("rewind_grid"), "test", argv) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("error: lr milestone(s) 80ep, 120ep at or beyond the end of training")
        and "\n" not in err
    )


def test_levels_alone_drops_the_intervention_levels_it_cuts_off():
    assert _resolve(["--levels", "3"], "interventions").intervention_levels == (2,)
    assert _resolve(["--levels", "4"], "interventions").intervention_levels == (2, 4)


def test_telemetry_flags_create_the_optional_spec():
    sweep = _resolve(["--telemetry-end", "300it", "--split-level", "2", "--split-rewind-iteration", "100"])
    assert sweep.telemetry is not None
    assert (sweep.telemetry.end, sweep.telemetry.split_level, sweep.telemetry.points) == ("300it", 2, 60)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_print_config_and_config_round_trip_bitwise(tmp_path, capsys, suffix):
    argv = ["--preset", "quick", "--model", "resnet14", "--lr", "0.2", "--levels", "3", "--print-config"]
    assert sweep_main("rewind_grid", _presets("rewind_grid"), "test", argv) == 0
    printed = capsys.readouterr().out
    original = SweepSpec.from_dict(json.loads(printed))
    config = tmp_path / f"sweep{suffix}"
    if suffix == ".yaml":
        import yaml

        config.write_text(yaml.safe_dump(json.loads(printed)))
    else:
        config.write_text(printed)
    assert sweep_main("rewind_grid", {}, "test", ["--config", str(config), "--print-config"]) == 0
    again = capsys.readouterr().out
    assert again == printed
    assert SweepSpec.from_dict(json.loads(again)).key() == original.key()
    # flags still override a config
    assert (
        sweep_main("rewind_grid", {}, "test", ["--config", str(config), "--lr", "0.3", "--print-config"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["run"]["training"]["lr"] == 0.3
    assert list(tmp_path.iterdir()) == [config]  # printing writes nothing


def test_run_entry_point_prints_and_reads_its_config(tmp_path, capsys):
    assert run_main(["--run", "smoke_synthetic", "--width", "3", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert RunSpec.from_json(printed).model.width == 3
    (tmp_path / "run.json").write_text(printed)
    assert run_main(["--config", str(tmp_path / "run.json"), "--print-config"]) == 0
    assert capsys.readouterr().out == printed


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lr", "nan"], "finite"),
        (["--lr", "fast"], "expected a number"),
        (["--width", "2.5"], "expected an integer"),
        (["--levels", "x"], "expected an integer"),
        (["--model", "resnet21"], "unknown model"),
        (["--no-such-flag"], "unrecognized arguments"),
        (["--config", "/nonexistent/sweep.json"], "cannot read"),
        (["--config", "{bad_json}"], "not valid json"),
        (["--config", "{not_a_sweep}"], "no field"),
    ],
)
def test_bad_flags_and_configs_are_one_line_errors(argv, message, tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{oops")
    (tmp_path / "other.json").write_text(json.dumps({"run": {"data": {"dataset": "mnist"}}, "colour": "red"}))
    argv = [a.replace("{bad_json}", str(tmp_path / "bad.json")) for a in argv]
    argv = [a.replace("{not_a_sweep}", str(tmp_path / "other.json")) for a in argv]
    try:
        code = sweep_main("rewind_grid", _presets("rewind_grid"), "test", [*argv, "--print-config"])
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and "\n" not in err and message in err.lower(), err


def test_trial_round_trips_through_its_tune_config():
    trial = Trial("dense", 3, keep_states=(0, 500))
    config = json.loads(json.dumps(trial.to_config()))  # what Tune stores
    assert Trial.from_config(config) == trial
    branch = Trial("branch", 1, 500, 3, "random_prune")
    assert Trial.from_config(branch.to_config()) == branch


def _fake(status: str, stage: str, level: int | None = None):
    trial = Trial(stage, 0, 0 if stage == "imp" else None)
    return types.SimpleNamespace(
        status=status,
        config={"trial": trial.to_config(), "levels": 8},
        last_result={"level": level} if level else {},
    )


def test_progress_line_counts_trials_and_levels():
    progress = StageProgress("imp")
    trials = [_fake("TERMINATED", "imp", 8), _fake("RUNNING", "imp", 3), _fake("PENDING", "imp")]
    line = progress.line(trials)
    assert "1/3 trials done, 1 running, 1 pending" in line and "11/24 levels" in line  # pending: 0
    assert "estimating" in line  # nothing finished since the progress started
    trials[1].last_result = {"level": 5}
    progress.began -= 60  # a minute later, two more levels: 11 levels left at 2 per minute
    assert "~5m30s left" in progress.line(trials)
    assert "\n" not in progress.line(trials) and len(progress.line(trials)) < 120


def test_fields_valid_only_together_can_be_given_together(capsys):
    """Each spec is rebuilt once with all its flags: a pretraining mode needs its length."""
    flags = ["--pretraining-mode", "rotation", "--pretraining-iterations", "16it"]
    assert run_main(["--run", "smoke_synthetic", *flags, "--print-config"]) == 0
    pretraining = RunSpec.from_json(capsys.readouterr().out).pretraining
    assert (pretraining.mode, pretraining.iterations) == ("rotation", "16it")
    sweep = _resolve(["--modes", "none,blur_2", "--pretraining-lengths", "1ep", "--batch-size", "600"])
    assert [(p.name, sweep.pretraining_iterations(p)) for p in sweep.pretrainings()] == [
        ("none", 0),
        ("blur_2", 100),
    ]


def test_cpu_early_phase_preset_is_the_documented_grid():
    sweep = _resolve(["--preset", "cpu_early_phase"])
    run = sweep.run
    assert (run.data.dataset, run.data.image_size, run.data.train_subset) == ("fashion_mnist", 14, 20_000)
    assert (run.model.name, run.model.width, run.pruning.fraction) == ("resnet8", 1, 0.5)
    training = run.training
    assert (training.lr, training.warmup, training.milestones, training.data_order) == (
        0.8,
        "0it",
        ("900it",),
        "fresh",
    )
    assert (run.total_iterations, run.data.iterations_per_epoch) == (1200, 157)  # 7.6 epochs of 20,000
    assert (sweep.seeds, sweep.rewind_iterations, sweep.levels) == ((0, 1, 2), (0, 50, 100), 5)
    assert (sweep.intervention_levels, sweep.intervention_rewind_iterations) == ((3, 5), (0,))
    # 3 dense runs, 9 chains of 5 levels, 12 baseline runs: 60 trainings of 1,200 iterations or fewer
    assert len(sweep.imp_trials()) == 9 and len(sweep.branch_trials()) == 12
    check_run(run)  # ResNet-8 builds on 14×14 images
    assert _resolve(["--preset", "cpu_early_phase", "--image-size", "7"]).run.data.input_shape == (1, 7, 7)
