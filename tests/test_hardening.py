"""Every bad input is refused before launch (one line, exit 2, nothing written, nothing started); one
experiment has one owner; a resume says exactly what differs."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from raytools import sweep_module

from earlyphase.__main__ import main as run_main
from earlyphase.errors import SpecError
from earlyphase.store import save_json
from earlyphase.tune import experiment
from earlyphase.tune.cli import main as sweep_main

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")


def _presets():
    return sweep_module("rewind_grid").PRESETS


def _refused(argv: list[str], capsys) -> str:
    """Run the sweep CLI; assert exit 2 and one line on stderr; return that line (lower case)."""
    try:
        code = sweep_main("rewind_grid", _presets(), "test", argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and "\n" not in err, (code, err)
    return err.lower()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: nothing listens there


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--address", "127.0.0.1:{closed}", "--storage-path", "s3://bucket/x"],
            "cannot reach a ray cluster",
        ),
        (["--address", "127.0.0.1:6379"], "local to this machine"),  # local storage with a cluster
        (["--cpus-per-trial", "nan"], "finite"),
        (["--gpus-per-trial", "nan"], "finite"),
        (["--cpus-per-trial", "inf"], "finite"),
        (["--cpus-per-trial", "64"], f"this machine has {os.cpu_count()} cpus"),
        (["--gpus-per-trial", "1"], "no gpu"),
        (["--seeds", f"{2**31}"], "seeds must lie in"),
        (["--seeds", "-1"], "seeds must lie in"),
        (["--name", "../../x"], "one plain directory name"),
        (["--name", "/tmp/elsewhere"], "one plain directory name"),
        (["--name", ".."], "one plain directory name"),
        (["--storage-path", "/proc/earlyphase"], "cannot be written"),
        (["--layers-to-ignore", "nope.weight"], "names no prunable weight"),  # needs the model
        (["--eval-every", "0it"], "eval_every"),
        (["--gamma", "-1"], "gamma"),
        (["--modes", "rotation", "--pretraining-lengths", "10000it"], "leaves no training"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written_or_started(extra, message, tmp_path, capsys):
    argv = ["--preset", "smoke", "--storage-path", str(tmp_path / "store"), "--name", "x"]
    argv += [a.replace("{closed}", str(_closed_port())) for a in extra]
    started = time.monotonic()
    assert message in _refused(argv, capsys)
    assert time.monotonic() - started < 30  # refused, not retried
    assert not (tmp_path / "store").exists()
    import ray

    assert not ray.is_initialized()  # no local Ray was started for a refused sweep


def test_a_corrupt_test_split_is_found_before_launch(tmp_path, capsys):
    if not FASHION.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(FASHION / name, data / name)
    (data / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03not an idx file")
    argv = ["--preset", "quick", "--data-dir", str(data), "--storage-path", str(tmp_path / "store")]
    assert "t10k-images" in _refused(argv, capsys)
    assert not (tmp_path / "store").exists()


# --- one experiment, one owner ---------------------------------------------------------------------

SETTINGS = {"family": "rewind_grid", "runner": "r:f", "cpus_per_trial": 1.0, "data_dir": None}


def test_an_experiment_is_created_once_and_owned_by_one_driver(tmp_path):
    where = str(tmp_path / "exp")
    lease = experiment.claim(where, '{"a":1}', SETTINGS, resume=False)
    owner = json.loads((tmp_path / "exp" / "owner.json").read_text())
    assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
    with pytest.raises(SpecError, match="exists: pass --resume"):
        experiment.claim(where, '{"a":1}', SETTINGS, resume=False)
    with pytest.raises(SpecError, match=rf"being run by {socket.gethostname()} \(pid {os.getpid()}\)"):
        experiment.claim(where, '{"a":1}', SETTINGS, resume=True)
    lease.release()
    assert not (tmp_path / "exp" / "owner.json").exists()
    experiment.claim(where, '{"a":1}', SETTINGS, resume=True).release()  # released: resumable


def test_resume_takes_over_the_lease_of_a_dead_driver(tmp_path, capsys):
    where = str(tmp_path / "exp")
    experiment.claim(where, '{"a":1}', SETTINGS, resume=False)._stop.set()  # a driver that dies...
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    owner_file = tmp_path / "exp" / "owner.json"
    owner = json.loads(owner_file.read_text())
    save_json(owner_file, {**owner, "pid": dead.pid})  # ...holding its lease
    lease = experiment.claim(where, '{"a":1}', SETTINGS, resume=True)
    assert f"taking over {where} from {socket.gethostname()} (pid {dead.pid})" in capsys.readouterr().out
    assert json.loads(owner_file.read_text())["pid"] == os.getpid()
    lease.release()


def test_a_silent_owner_on_another_host_is_stale_after_its_heartbeat_expires(tmp_path):
    where = str(tmp_path / "exp")
    experiment.claim(where, '{"a":1}', SETTINGS, resume=False)._stop.set()
    owner_file = tmp_path / "exp" / "owner.json"
    recent = {"host": "elsewhere", "pid": 1, "started": time.time(), "heartbeat": time.time()}
    save_json(owner_file, recent)
    with pytest.raises(SpecError, match="being run by elsewhere"):
        experiment.claim(where, '{"a":1}', SETTINGS, resume=True)
    save_json(owner_file, {**recent, "heartbeat": time.time() - experiment.STALE_AFTER_S - 1})
    experiment.claim(where, '{"a":1}', SETTINGS, resume=True).release()


def test_resume_diffs_sweep_and_settings_field_by_field(tmp_path):
    where = str(tmp_path / "exp")
    sweep = {"run": {"training": {"lr": 0.05, "steps": "6ep"}}, "levels": 8}
    experiment.claim(where, json.dumps(sweep), SETTINGS, resume=False).release()
    changed = {"run": {"training": {"lr": 0.1, "steps": "6ep"}}, "levels": 9}
    with pytest.raises(SpecError) as info:
        experiment.claim(where, json.dumps(changed), SETTINGS, resume=True)
    assert "levels: 8 → 9; run.training.lr: 0.05 → 0.1" in str(info.value) and "\n" not in str(info.value)
    faster = {**SETTINGS, "cpus_per_trial": 2.0, "data_dir": "/elsewhere"}  # safe to change
    experiment.claim(where, json.dumps(sweep), faster, resume=True).release()
    other_script = {**faster, "family": "telemetry"}
    with pytest.raises(SpecError, match='family: "rewind_grid" → "telemetry"'):
        experiment.claim(where, json.dumps(sweep), other_script, resume=True)


def test_two_fresh_drivers_with_one_name_race_and_only_one_wins(tmp_path):
    """Two CLI processes started together on the same --name: exactly one claims it."""
    code = (
        "import sys; from earlyphase.tune import experiment; from earlyphase.errors import SpecError\n"
        "try:\n    experiment.claim(sys.argv[1], '{}', {}, resume=False); print('won')\n"
        "except SpecError as e:\n    print('lost', e)\n"
    )
    where = str(tmp_path / "exp")
    procs = [
        subprocess.Popen([sys.executable, "-c", code, where], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        for _ in range(2)
    ]
    outcomes = sorted(p.communicate(timeout=60)[0].split()[0] for p in procs)
    assert outcomes == ["lost", "won"]


def test_results_are_written_with_the_umask_not_0600(tmp_path):
    from earlyphase.tune import storage

    old = os.umask(0o027)
    try:
        storage.write_text(str(tmp_path / "results.csv"), "a,b\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "results.csv").stat().st_mode) == 0o640


# --- python -m earlyphase -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--device", "foo"], "is not a device"),
        (["--device", "cuda:0"], "no cuda device"),
        (["--out", "/proc/earlyphase-out"], "cannot be written"),
        (["--seed", "-3"], "--seed must lie in"),
    ],
)
def test_run_entry_point_refuses_before_training(argv, message, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    started = time.monotonic()
    assert run_main(["--run", "smoke_synthetic", "--levels", "1", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and message in err.lower(), err
    assert time.monotonic() - started < 10  # nothing trained first
