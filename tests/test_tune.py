"""The Ray layer on a real embedded Ray (loopback only): the smoke sweep end to end, a worker
killed mid-chain, a driver interrupted and resumed."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import ray
from raytools import (
    assert_complete,
    listening_addresses,
    non_loopback,
    progress,
    run_killing_chain_worker,
    sweep_command,
    sweep_env,
    sweep_module,
    trial_dirs,
    wait_for,
)

from earlyphase.tune import trainables
from earlyphase.tune.cli import main as sweep_main
from earlyphase.tune.connect import start_ray

SMOKE = ["--preset", "smoke"]


@pytest.fixture(scope="module")
def local_ray():
    before = listening_addresses()
    start_ray(num_cpus=2)
    yield before
    ray.shutdown()


def _rewind_presets():
    return sweep_module("rewind_grid").PRESETS


def test_smoke_sweep_end_to_end(local_ray, tmp_path, capsys):
    presets = _rewind_presets()
    argv = SMOKE + ["--storage-path", str(tmp_path), "--name", "smoke", "--log-every", "16"]
    assert sweep_main("rewind_grid", presets, "smoke", argv) == 0
    experiment = tmp_path / "smoke"
    table = pd.read_csv(experiment / "results.csv")
    assert_complete(table, seeds=1, rewinds=2, levels=2, interventions=2)
    # the dense run was trained once, though both rewind chains and all branches used it
    dense = trial_dirs(experiment, "dense")
    assert len(dense) == 1 and len(progress(dense[0])) == 1
    assert table[table.stage == "imp"].rewind_iteration.tolist() == [0, 0, 32, 32]
    imp = table[table.stage == "imp"].sort_values(["rewind_iteration", "level"])
    assert imp.density.round(4).tolist() == pytest.approx([0.8, 0.64, 0.8, 0.64], abs=1e-3)
    assert (table.sparsity + table.density).tolist() == pytest.approx([1.0] * len(table))
    assert set(table.intervention) == {"none", "random_prune", "random_reinit"}
    assert table.test_accuracy.between(0, 1).all() and (table.dataset == "synthetic").all()
    # per-iteration curves of every level reach TensorBoard
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    chain = trial_dirs(experiment, "imp")[0]
    events = EventAccumulator(str(chain / "curves")).Reload()
    assert {"level_01/train_loss", "level_02/test_accuracy", "level_02/lr"} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("level_01/train_loss")) >= 4
    out = capsys.readouterr().out
    assert "results.csv" in out and "k=32" in out
    # every socket Ray opened listens on loopback only
    assert non_loopback(listening_addresses() - local_ray) == set()


def test_bad_input_is_refused_before_launch(local_ray, tmp_path, capsys):
    presets = _rewind_presets()
    base = SMOKE + ["--storage-path", str(tmp_path)]
    cases = [
        (["--rewind-iterations", "100000"], "outside training"),
        (["--levels", "-2"], "levels"),
        (["--seeds", "1,1"], "seeds"),
        (["--gpus-per-trial", "0.5"], "no gpu"),
        (["--resume", "--name", "never-ran"], "nothing to resume"),
        (["--steps", "zero"], "bad step"),
    ]
    for extra, message in cases:
        assert sweep_main("rewind_grid", presets, "smoke", base + extra) == 2, extra
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err and message in err.lower(), (extra, err)
    assert list(tmp_path.iterdir()) == []


def test_worker_killed_mid_chain_resumes_at_its_last_level(local_ray, tmp_path):
    address = ray.get_runtime_context().gcs_address
    levels = 4
    cmd = sweep_command(
        *SMOKE,
        "--address",
        address,
        "--shared-storage",  # every node of this machine shares the file system
        "--storage-path",
        str(tmp_path),
        "--name",
        "kill",
        "--rewind-iterations",
        "16",
        "--levels",
        str(levels),
        "--steps",
        "6ep",
        "--max-failures",
        "2",
    )
    experiment = tmp_path / "kill"
    returncode, out = run_killing_chain_worker(cmd, experiment, levels)
    assert returncode == 0, out
    table = pd.read_csv(experiment / "results.csv")
    assert_complete(table, seeds=1, rewinds=1, levels=levels, interventions=2)
    chain = table[table.stage == "imp"].set_index("level")
    resumed_at = int(chain.attempt_start_level.max())
    assert resumed_at >= 3  # restarted after its last finished level, not from level 1
    assert (chain.loc[: resumed_at - 1].attempt_start_level == 1).all()
    assert (chain.loc[resumed_at:].attempt_start_level == resumed_at).all()


def _progress_texts(experiment):
    """Each dense/IMP trial's progress.csv as text (trials that never reported are left out)."""
    dirs = trial_dirs(experiment, "dense") + trial_dirs(experiment, "imp")
    return {d.name: (d / "progress.csv").read_text() for d in dirs if (d / "progress.csv").exists()}


def test_interrupted_driver_resumes_without_retraining(local_ray, tmp_path):
    address = ray.get_runtime_context().gcs_address
    common = [
        *SMOKE,
        "--address",
        address,
        "--shared-storage",  # every node of this machine shares the file system
        "--storage-path",
        str(tmp_path),
        "--name",
        "resume",
        "--rewind-iterations",
        "0,16,32",
        "--levels",
        "3",
        "--steps",
        "4ep",
    ]
    experiment = tmp_path / "resume"
    with subprocess.Popen(
        sweep_command(*common), env=sweep_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:

        def one_chain_done():
            done = [d for d in trial_dirs(experiment, "imp") if len(progress(d)) == 3]
            return done or None

        wait_for(one_chain_done, 240, "a finished IMP chain", interval=0.2)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, out
    assert not (experiment / "results.csv").exists()
    before = _progress_texts(experiment)
    assert any(len(text.splitlines()) == 4 for name, text in before.items() if name.startswith("s0_k"))

    again = subprocess.run(
        sweep_command(*common, "--resume"), env=sweep_env(), capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stdout + again.stderr
    after = _progress_texts(experiment)
    dense_name = trial_dirs(experiment, "dense")[0].name
    assert after[dense_name] == before[dense_name]  # the dense run was not trained again
    for name, text in before.items():
        if name == dense_name:
            continue
        # a chain keeps what it reported and continues from its last checkpoint: at most the level
        # in flight when the driver stopped (reported, not yet in Tune's snapshot) is trained again
        assert after[name].startswith(text)
        old_levels = pd.read_csv(experiment / "imp" / name / "progress.csv").level.iloc[
            : len(text.splitlines()) - 1
        ]
        new_levels = pd.read_csv(experiment / "imp" / name / "progress.csv").level.iloc[len(old_levels) :]
        assert old_levels.empty or new_levels.empty or new_levels.min() >= old_levels.max(), name
    table = pd.read_csv(experiment / "results.csv")
    assert_complete(table, seeds=1, rewinds=3, levels=3, interventions=2)


def test_embedded_local_ray_of_the_cli_listens_on_loopback_only(tmp_path):
    """The user's path: no address, no environment prepared; sockets are sampled while it runs."""
    before = listening_addresses()
    env = sweep_env()
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    cmd = sweep_command(*SMOKE, "--storage-path", str(tmp_path), "--name", "loopback")
    seen: set[str] = set()
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        while proc.poll() is None:
            seen |= listening_addresses() - before
            time.sleep(0.2)
        out = proc.stdout.read()
    assert proc.returncode == 0, out
    assert len(seen) >= 3  # GCS, raylet, workers: the sampling saw Ray's sockets
    assert non_loopback(seen) == set()


def test_interventions_sweep_writes_its_branches(local_ray, tmp_path):
    module = sweep_module("interventions")
    argv = SMOKE + ["--storage-path", str(tmp_path), "--name", "iv"]
    assert sweep_main("interventions", module.PRESETS, "iv", argv) == 0
    table = pd.read_csv(tmp_path / "iv" / "results.csv")
    branch = table[table.stage == "branch"]
    assert sorted(branch.intervention) == ["noise_0.5", "permute_layer", "signs_0_magnitudes_k"]
    assert (branch.rewind_iteration == 32).all() and (branch.level == 2).all()
    imp_density = table[(table.stage == "imp") & (table.level == 2)].density.iloc[0]
    assert branch.density.tolist() == pytest.approx([imp_density] * 3)


def test_telemetry_sweep_writes_a_tidy_table(local_ray, tmp_path):
    module = sweep_module("telemetry")
    argv = SMOKE + ["--storage-path", str(tmp_path), "--name", "tel"]
    assert sweep_main("telemetry", module.PRESETS, "tel", argv) == 0
    telemetry = pd.read_csv(tmp_path / "tel" / "telemetry.csv")
    assert set(telemetry.group) == {"all", "kept", "pruned"}
    assert {"test_accuracy", "grad_norm", "sign_flip_fraction", "cosine_to_final", "weight_9"} <= set(
        telemetry.metric
    )
    iterations = sorted(telemetry.iteration.unique())
    assert iterations[:11] == list(range(11)) and iterations[-1] == 100
    at_init = telemetry[(telemetry.iteration == 0) & (telemetry.metric == "distance_to_init")]
    assert (at_init.value == 0).all()
    # the telemetry run is the dense run again, bitwise: same final accuracy
    results = pd.read_csv(tmp_path / "tel" / "results.csv")
    assert "telemetry" not in set(results.stage)
    observed = trial_dirs(tmp_path / "tel", "telemetry")[0]
    dense_accuracy = results[results.stage == "dense"].test_accuracy.iloc[0]
    assert progress(observed).test_accuracy.iloc[-1] == dense_accuracy
    assert any((observed / "telemetry").iterdir())  # TensorBoard events


def test_a_request_no_node_can_hold_is_reported_within_a_minute(local_ray, tmp_path):
    """On a cluster whose node types are not published, a trial asking for a GPU no node has is
    reported by one line once nothing could start for 60 s (then the driver is interrupted)."""
    cmd = sweep_command(
        *SMOKE,
        "--address",
        ray.get_runtime_context().gcs_address,
        "--shared-storage",
        "--gpus-per-trial",
        "1",
        "--storage-path",
        str(tmp_path),
        "--name",
        "stalled",
    )
    started = time.monotonic()
    with subprocess.Popen(
        cmd, env=sweep_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "no trial could start" in line:
                break
        elapsed = time.monotonic() - started
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    assert any("[earlyphase] dense: no trial could start for 60 s" in line for line in seen), "".join(seen)
    assert elapsed < 120
    assert sum("no trial could start" in line for line in seen) == 1  # said once, not logged forever


def test_trial_workers_print_unraisable_errors_but_not_the_exit_of_rays_sigterm(capsys, monkeypatch):
    monkeypatch.setattr(sys, "unraisablehook", trainables._quiet_exit_in_callbacks)

    class ExitsWhenCollected:  # as Ray's SIGTERM handler raising SystemExit inside a callback
        def __del__(self):
            raise SystemExit(1)

    class FailsWhenCollected:
        def __del__(self):
            raise ValueError("a real error")

    ExitsWhenCollected()
    FailsWhenCollected()
    err = capsys.readouterr().err
    assert "SystemExit" not in err and "ValueError: a real error" in err
