"""Several Ray nodes on loopback: trials spread over nodes and fetch the shared checkpoints from
the object store across nodes; the fake_multinode autoscaler adds GPU workers on demand."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import ray
import yaml
from raytools import (
    ROOT,
    assert_complete,
    listening_addresses,
    non_loopback,
    stop_cluster,
    sweep_command,
    sweep_env,
)

from earlyphase.tune.connect import LOOPBACK, loopback_environment

RAY = str(Path(sys.executable).parent / "ray")


def test_trials_run_on_several_nodes_and_fetch_shared_checkpoints(tmp_path):
    from ray.cluster_utils import Cluster

    before = listening_addresses()
    loopback_environment()
    node = {"num_cpus": 1, "node_ip_address": LOOPBACK}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        for _ in range(2):
            cluster.add_node(**node)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address)
        driver_node = ray.get_runtime_context().get_node_id()
        assert len(ray.nodes()) == 3
        cmd = sweep_command(
            "--preset",
            "smoke",
            "--address",
            cluster.address,
            "--shared-storage",  # every node of this machine shares the file system
            "--storage-path",
            str(tmp_path),
            "--name",
            "nodes",
        )
        done = subprocess.run(cmd, env=sweep_env(), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        table = pd.read_csv(tmp_path / "nodes" / "results.csv")
        assert_complete(table, seeds=1, rewinds=2, levels=2, interventions=2)
        consumers = table[table.stage != "dense"]
        assert consumers.node_id.nunique() >= 2
        # the dense states were put by the driver on the head node: these trials fetched them across nodes
        assert (consumers.node_id != driver_node).any()
        assert non_loopback(listening_addresses() - before) == set()
    finally:
        ray.shutdown()
        cluster.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def test_autoscaler_adds_gpu_workers_for_gpu_trials(tmp_path):
    """Starts a fake_multinode cluster with `ray start` on a free port and its own temp dir, and stops
    exactly that cluster's processes afterwards (`ray stop` would stop every Ray on the machine)."""
    address = f"{LOOPBACK}:{_free_port()}"
    temp_dir = tempfile.mkdtemp(prefix="ep-", dir="/tmp")  # short: Ray's socket paths live in it
    config = yaml.safe_load((ROOT / "tests" / "fake-autoscaler.yaml").read_text())
    config["provider"]["gcs_address"] = address  # where the fake provider's nodes join
    (tmp_path / "autoscaler.yaml").write_text(yaml.safe_dump(config))
    env = sweep_env(RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1")
    start = [
        RAY,
        "start",
        "--head",
        "--node-ip-address",
        LOOPBACK,
        "--port",
        address.split(":")[1],
        "--num-cpus",
        "1",
        "--include-dashboard",
        "false",
        f"--temp-dir={temp_dir}",
        f"--autoscaling-config={tmp_path / 'autoscaler.yaml'}",
    ]
    subprocess.run(start, env=env, check=True, capture_output=True, timeout=120)
    try:
        cmd = sweep_command(
            "--preset",
            "smoke",
            "--address",
            address,
            "--shared-storage",  # every node of this machine shares the file system
            "--gpus-per-trial",
            "1",
            "--storage-path",
            str(tmp_path),
            "--name",
            "autoscale",
        )
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        table = pd.read_csv(tmp_path / "autoscale" / "results.csv")
        assert_complete(table, seeds=1, rewinds=2, levels=2, interventions=2)
        # the head has no GPU: every trial ran on a worker the autoscaler launched for it
        status = subprocess.run(
            [RAY, "status", "--address", address], env=env, capture_output=True, text=True, timeout=60
        ).stdout
        assert "gpu_worker" in status, status
        head = subprocess.run(
            [sys.executable, "-c", _HEAD_ID, address], env=env, capture_output=True, text=True, timeout=120
        ).stdout.strip()
        assert head and head not in set(table.node_id)
    finally:
        stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


_HEAD_ID = """
import sys
import tempfile
import ray
ray.init(address=sys.argv[1], log_to_driver=False)
print(next(n["NodeID"] for n in ray.nodes() if n["Resources"].get("GPU", 0) == 0 and n["Alive"]))
"""
