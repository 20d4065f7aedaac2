"""Helpers for tests that start real Ray: loopback checks, sweep subprocesses, result files."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK_PREFIXES = ("127.", "[::1]", "[::ffff:127.")


def listening_addresses() -> set[str]:
    """Local addresses (host:port) of every listening TCP socket on this machine."""
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    return {line.split()[3] for line in out.splitlines() if line.strip()}


def non_loopback(addresses: set[str]) -> set[str]:
    return {a for a in addresses if not a.startswith(LOOPBACK_PREFIXES)}


def sweep_command(*args: str, script: str = "rewind_grid") -> list[str]:
    return [sys.executable, str(ROOT / "sweeps" / f"{script}.py"), *args]


def sweep_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "PYTHONUNBUFFERED": "1", **extra}
    env.pop("RAY_ADDRESS", None)
    return env


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    """Poll ``predicate`` until it returns something other than None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value is not None:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def trial_dirs(experiment: Path, stage: str) -> list[Path]:
    stage_dir = experiment / stage
    return sorted(p for p in stage_dir.iterdir() if p.is_dir()) if stage_dir.exists() else []


def progress(trial_dir: Path) -> pd.DataFrame:
    """A trial's reports so far (empty while the file is missing or being written)."""
    try:
        return pd.read_csv(trial_dir / "progress.csv")
    except (FileNotFoundError, pd.errors.EmptyDataError, pd.errors.ParserError):
        return pd.DataFrame()


def assert_complete(table: pd.DataFrame, seeds: int, rewinds: int, levels: int, interventions: int) -> None:
    """Every (trial, level) exactly once, and exactly the trials the sweep declares."""
    assert not table.duplicated(["trial_id", "level"]).any()
    dense = table[table.stage == "dense"]
    assert len(dense) == seeds and (dense.level == 0).all() and (dense.density == 1.0).all()
    imp = table[table.stage == "imp"]
    assert len(imp) == seeds * rewinds * levels
    for _, chain in imp.groupby("trial_id"):
        assert sorted(chain.level) == list(range(1, levels + 1))
    branch = table[table.stage == "branch"]
    assert len(branch) == seeds * rewinds * levels * interventions


def stop_cluster(temp_dir: str, timeout: float = 30.0) -> None:
    """Stop every process of the Ray cluster started with ``--temp-dir=temp_dir`` (its session paths
    are in their command lines), and nothing else: no `ray stop`, which ends every Ray here."""
    import psutil

    procs = []
    for proc in psutil.process_iter(["cmdline"]):
        if temp_dir in " ".join(proc.info["cmdline"] or ()) and proc.pid != os.getpid():
            procs.append(proc)
            with contextlib.suppress(psutil.Error):
                proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()


def sweep_module(name: str):
    """The sweep script ``sweeps/<name>.py`` as a module (its PRESETS, its commands)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "sweeps" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_killing_chain_worker(command: list[str], experiment: Path, levels: int) -> tuple[int, str]:
    """Run a sweep and SIGKILL the worker of its first IMP chain once that chain has finished level 2
    (of ``levels``); the sweep's exit code and output.

    The chain's own report names its worker; stages never reuse actors (run_stage sets
    reuse_actors=False), so while the chain is unfinished that process runs it and nothing else."""
    with subprocess.Popen(
        command, env=sweep_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:

        def chain_at_level_two():
            chains = trial_dirs(experiment, "imp")
            rows = progress(chains[0]) if chains else pd.DataFrame()
            return rows if len(rows) >= 2 and rows.level.max() < levels else None

        rows = wait_for(chain_at_level_two, 240, "the IMP chain to finish level 2", interval=0.2)
        assert progress(trial_dirs(experiment, "imp")[0]).level.max() < levels
        os.kill(int(rows.pid.iloc[-1]), signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
    return proc.returncode, out
