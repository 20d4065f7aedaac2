"""Joining a Ray cluster, or starting the embedded local one on loopback only."""

from __future__ import annotations

import os

LOOPBACK = "127.0.0.1"


def loopback_environment() -> None:
    """Make every Ray process started from here listen on 127.0.0.1 only (on Linux Ray otherwise
    binds all interfaces and advertises the machine's external address). Ray reads this when it
    is imported: call it before anything imports ray."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


def start_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None):
    """``address`` (or RAY_ADDRESS) joins a running cluster; otherwise an embedded local Ray starts,
    reachable on loopback only, without the dashboard."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    # a checkpoint per level is the point of an IMP chain, not a bottleneck worth a warning each time
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's own status tables and banners off: earlyphase.tune.progress prints a compact line instead
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if ray.is_initialized():
        return ray.get_runtime_context()
    if address:
        return ray.init(address=address, log_to_driver=True)
    loopback_environment()
    from ray._private import ray_constants

    if ray_constants.ENABLE_RAY_CLUSTER:  # ray was imported before loopback_environment()
        raise RuntimeError(
            "ray was imported before loopback_environment(): a local Ray would listen on all interfaces"
        )
    return ray.init(
        address="local",  # a new Ray: without it, ray.init joins any Ray already running on this machine
        _node_ip_address=LOOPBACK,
        include_dashboard=False,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        configure_logging=True,
        logging_level="warning",
    )


def local_gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
