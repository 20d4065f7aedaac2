"""Optuna searches inside Ray Tune on a real embedded Ray (loopback only): both smoke searches end to
end, resuming an interrupted study, a search finding a known optimum, refusals before launch."""

from __future__ import annotations

import math
import signal
import subprocess

import optuna
import pandas as pd
import pytest
import ray
from raytools import sweep_command, sweep_env, sweep_module, trial_dirs, wait_for

from earlyphase.analysis.report import main as report_main
from earlyphase.commandline import apply_flags
from earlyphase.runs import get_run
from earlyphase.sweep import DenseSearchSpec
from earlyphase.tune.cli import main_with_commands, parser
from earlyphase.tune.engine import Execution
from earlyphase.tune.search import best_command, dense_searcher, run_search_stage

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _searches():
    return sweep_module("search")


def _study(experiment) -> optuna.Study:
    return optuna.load_study(study_name=experiment.name, storage=f"sqlite:///{experiment}/study.db")


def _complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))


def test_dense_smoke_search_writes_its_study_results_and_best_command(local_ray, tmp_path, capsys):
    searches = _searches()
    argv = ["dense", "--preset", "smoke", "--storage-path", str(tmp_path), "--name", "dense"]
    assert main_with_commands("search", "", searches.SEARCHES, argv) == 0
    experiment = tmp_path / "dense"
    study = _study(experiment)
    trials = _complete(study)
    table = pd.read_csv(experiment / "results.csv")
    assert len(trials) == len(table) == 4 and set(table.stage) == {"search"}
    # each study trial is one row: the same Tune trial, parameters and value
    rows = table.set_index("study_trial")
    for trial in trials:
        row = rows.loc[trial.number]
        assert trial.user_attrs["tune_trial_id"] == row.trial_id
        assert trial.value == pytest.approx(row.validation_accuracy)
        assert {name: row[f"param_{name}"] for name in trial.params} == pytest.approx(trial.params)
    assert table.param_batch_size.isin([32, 64]).all() and table.param_lr.between(0.01, 0.4).all()
    assert table.validation_accuracy.between(0.1, 1).all() and table.stopped_early.dtype == bool
    full = table.iterations == [2 * math.ceil(3596 / b) for b in table.param_batch_size]  # 2 epochs
    assert (full == ~table.stopped_early).all()
    # the printed command trains the best trial's settings with sweeps/rewind_grid.py
    best = table.loc[table.validation_accuracy.idxmax()]
    out = capsys.readouterr().out
    assert best_command(searches.DENSE["smoke"], best.filter(like="param_").rename(lambda c: c[6:])) in out
    assert study.best_trial.number == best.study_trial
    # Optuna's figures in the report
    assert report_main([str(experiment)]) == 0
    for name in ("optuna_history.png", "optuna_importances.png"):
        assert (experiment / "report" / name).read_bytes().startswith(PNG_SIGNATURE)
    assert "## Optuna study" in (experiment / "report" / "report.md").read_text()


def test_best_command_trains_exactly_the_trial_run_on_the_whole_training_set():
    search = _searches().DENSE["quick"]
    params = {"lr": 0.0731, "momentum": 0.912, "weight_decay": 2.5e-4, "warmup": 120, "batch_size": 256}
    words = best_command(search, params).split()
    assert words[:2] == ["python", "sweeps/rewind_grid.py"]
    rewind_grid = sweep_module("rewind_grid").PRESETS
    for preset in ("smoke", "quick"):  # whatever the preset, the flags set every field of the run
        p, flags = parser("rewind_grid", rewind_grid, "")
        sweep = apply_flags(rewind_grid[preset], p.parse_args(words[2:]), flags)
        run = search.trial_run(params)
        assert sweep.run.data == run.data.replace(validation_examples=0)
        assert (sweep.run.model, sweep.run.training) == (run.model, run.training)


def test_earliest_k_smoke_search_reports_the_pareto_front_of_matching_chains(local_ray, tmp_path, capsys):
    searches = _searches()
    argv = ["earliest_k", "--preset", "smoke", "--storage-path", str(tmp_path), "--name", "k"]
    argv += ["--trials", "4", "--k-range", "0,1ep"]  # k in 0..57
    assert main_with_commands("search", "", searches.SEARCHES, argv) == 0
    experiment = tmp_path / "k"
    table = pd.read_csv(experiment / "results.csv")
    dense, chains = table[table.stage == "dense"], table[table.stage == "imp"]
    assert len(dense) == 1 and len(trial_dirs(experiment, "dense")) == 1  # trained once for every chain
    assert (chains.rewind_iteration == chains.param_k_plus_1 - 1).all()
    assert chains.rewind_iteration.between(0, 57).all()
    threshold = dense.validation_accuracy.iloc[0] - 0.05
    finals = chains.groupby("trial_id").tail(1).set_index("study_trial")
    for number, chain in chains.groupby("study_trial"):
        # a chain goes on to level 2 (64% density) while its levels match, stopping at the first that does not
        passing = (chain.validation_accuracy >= threshold).tolist()
        assert passing[:-1] == [True] * (len(chain) - 1)
        assert chain.level.tolist() == list(range(1, len(chain) + 1))
        assert finals.matched[number] == (passing[-1] and len(chain) == 2)
        assert finals.stopped_early[number] == (not passing[-1] and len(chain) < 2)
    study = _study(experiment)
    trials = _complete(study)
    assert len(trials) == 4 and study.directions == [
        optuna.study.StudyDirection.MINIMIZE,
        optuna.study.StudyDirection.MAXIMIZE,
    ]
    for trial in trials:
        final = finals.loc[trial.number]
        assert trial.values == pytest.approx([final.rewind_iteration, final.validation_accuracy])
        assert (trial.constraints["shortfall"] <= 0) == final.matched == trial.user_attrs["matched"]
    # the Pareto front: matching chains no other matching chain beats in both k and accuracy
    matched = finals[finals.matched.astype(bool)]
    front = {
        n
        for n, f in matched.iterrows()
        if not any(
            (o.rewind_iteration <= f.rewind_iteration and o.validation_accuracy >= f.validation_accuracy)
            and (o.rewind_iteration, o.validation_accuracy) != (f.rewind_iteration, f.validation_accuracy)
            for _, o in matched.iterrows()
        )
    }
    assert {t.number for t in study.best_trials} == front
    out = capsys.readouterr().out
    if front:
        assert f"Smallest matching k: {int(matched.rewind_iteration.min())} " in out
    else:
        assert "No chain matched" in out
    assert report_main([str(experiment)]) == 0
    for name in ("optuna_history.png", "optuna_pareto_front.png", "accuracy_vs_density.png"):
        assert (experiment / "report" / name).read_bytes().startswith(PNG_SIGNATURE)


def test_resumed_search_continues_the_study_without_rerunning_finished_trials(local_ray, tmp_path):
    address = ray.get_runtime_context().gcs_address
    common = ["dense", "--preset", "smoke", "--address", address, "--shared-storage"]
    common += ["--storage-path", str(tmp_path)]
    # trials long enough (20 epochs, none stopped early by ASHA) that the driver is interrupted while
    # some are still to come, even on an idle machine
    common += ["--name", "resume", "--trials", "5", "--steps", "20ep", "--milestones", "10ep"]
    common += ["--grace-period", "20"]
    experiment = tmp_path / "resume"
    command = sweep_command(*common, script="search")
    with subprocess.Popen(
        command, env=sweep_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:

        def two_complete():
            if not (experiment / "study.db").exists():
                return None
            try:
                complete = _complete(_study(experiment))
            except KeyError:  # the database is there, the study not yet
                return None
            return complete if len(complete) >= 2 else None

        wait_for(two_complete, 240, "two complete trials in the study", interval=0.5)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "--resume" in out, out
    assert not (experiment / "results.csv").exists()
    before = {t.number: t for t in _complete(_study(experiment))}
    assert 2 <= len(before) < 5
    finished = {t.user_attrs["tune_trial_id"] for t in before.values()}
    progress_before = {
        d.name: (d / "progress.csv").read_text()
        for d in trial_dirs(experiment, "search")
        if d.name.rsplit("_", 1)[1] in finished
    }
    assert len(progress_before) == len(before)

    resume = sweep_command(*common, "--resume", script="search")
    again = subprocess.run(resume, env=sweep_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    after = _complete(_study(experiment))
    assert len(after) == 5 and len(trial_dirs(experiment, "search")) == 5  # the rest, and only the rest
    for trial in after:
        if trial.number in before:  # the finished trials were not run again: same values, same logs
            assert (trial.params, trial.value) == (before[trial.number].params, before[trial.number].value)
    for name, text in progress_before.items():
        assert (experiment / "search" / name / "progress.csv").read_text() == text
    table = pd.read_csv(experiment / "results.csv")
    assert sorted(table.study_trial) == sorted(t.number for t in after)


def test_search_gets_close_to_a_known_optimum(local_ray, tmp_path):
    """Optuna in Tune on a cheap function of the sampled settings, best at lr 0.05 and momentum 0.9."""

    def bowl(config: dict) -> None:
        from ray import tune

        distance = math.log10(config["lr"] / 0.05) ** 2 + ((config["momentum"] - 0.9) / 0.1) ** 2
        tune.report({"validation_accuracy": 1 - distance})

    run = get_run("smoke_synthetic")
    search = DenseSearchSpec(
        run=run.replace(data=run.data.replace(validation_examples=500)), trials=40, startup_trials=10
    )
    execution = Execution(storage_path=str(tmp_path), name="bowl")
    url = f"sqlite:///{tmp_path}/bowl.db"
    run_search_stage(bowl, lambda: dense_searcher(search, url, "bowl"), search.trials, {}, execution)
    trials = sorted(_complete(optuna.load_study(study_name="bowl", storage=url)), key=lambda t: t.number)
    assert len(trials) == 40
    best = max(trials, key=lambda t: t.value)
    assert abs(math.log10(best.params["lr"] / 0.05)) < 0.15 and abs(best.params["momentum"] - 0.9) < 0.02
    # TPE learned from the results: its proposals are far closer to the optimum than the random start
    distance = [1 - t.value for t in trials]
    assert sorted(distance[20:])[10] < sorted(distance[:10])[5] / 3


@pytest.mark.parametrize(
    "argv, message",
    [
        (["dense", "--lr-range", "0.4,0.01"], "low > high"),
        (["dense", "--lr-range=-0.1,0.3"], "must lie above 0"),
        (["dense", "--lr-range", "0.1"], "low,high"),
        (["dense", "--momentum-range", "0.5,1.2"], "below 1"),
        (["dense", "--weight-decay-range", "0,0.001"], "must lie above 0"),
        (["dense", "--batch-sizes", "64,64"], "distinct"),
        (["dense", "--validation-examples", "0"], "validation split"),
        (["dense", "--validation-examples", "5005"], "multiple of 10"),
        (["earliest_k", "--k-range", "500,100"], "low > high"),
        (["earliest_k", "--k-range", "0,100000"], "outside training"),
        (["earliest_k", "--target-density", "1.5"], "target density"),
        (["earliest_k", "--storage-url", "postgresql://u:secret@db/studies"], "password"),
        (["earliest_k", "--storage-url", "no url"], "not an sqlalchemy url"),
        (["earliest_k", "--storage-path", "s3://bucket/experiments"], "--storage-url"),
        (["frobnicate"], "unknown command"),
        ([], "no command"),
    ],
)
def test_bad_searches_are_refused_before_launch_with_one_line(argv, message, tmp_path, capsys):
    searches = _searches()
    if argv[:1] in (["dense"], ["earliest_k"]):  # the last --storage-path given counts
        argv = [argv[0], "--preset", "smoke", "--storage-path", str(tmp_path), *argv[1:]]
    assert main_with_commands("search", "", searches.SEARCHES, argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and message in err.lower(), err
    assert list(tmp_path.iterdir()) == []
