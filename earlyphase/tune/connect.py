"""Joining a Ray cluster, or starting the embedded local one on loopback only."""

from __future__ import annotations

import os
import socket

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


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A one-line SpecError unless something listens at ``host:port`` (``ray://host:port`` too);
    ``auto`` is left to Ray, which fails fast when no local cluster runs."""
    from earlyphase.errors import SpecError

    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise SpecError(f"--address {address!r} must be host:port, ray://host:port or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        raise SpecError(f"cannot reach a Ray cluster at {address}: {error.strerror or error}") from None


def connect(address: str | None) -> None:
    """Join ``address`` (checked first) or start the embedded local Ray; one-line SpecError on failure."""
    from earlyphase.errors import SpecError

    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        check_reachable(address)
    try:
        start_ray(address)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise SpecError(f"cannot join the Ray cluster at {address}: {str(error).splitlines()[0]}") from None


def check_local_resources(cpus: float, gpus: float) -> None:
    """Refuse per-trial requests the embedded local Ray (this machine) can never satisfy."""
    from earlyphase.errors import SpecError

    have_cpus, have_gpus = os.cpu_count() or 1, local_gpu_count()
    if cpus > have_cpus:
        raise SpecError(f"--cpus-per-trial {cpus:g} but this machine has {have_cpus} CPUs")
    if gpus > 0 and have_gpus == 0:
        raise SpecError(
            "--gpus-per-trial > 0 but this machine has no GPU; use --address to join a GPU cluster"
        )
    if gpus > have_gpus:
        raise SpecError(f"--gpus-per-trial {gpus:g} but this machine has {have_gpus} GPUs")


def check_cluster_resources(cpus: float, gpus: float) -> None:
    """Refuse a per-trial request that no node the cluster has or can launch could hold, when the
    cluster publishes its node types (autoscaler v2, KubeRay). With a classic autoscaler (types not
    published) the stage's progress line reports it once no trial has started for a minute."""
    import ray
    from ray._private.state import state

    from earlyphase.errors import SpecError

    config = state.get_cluster_config()
    if config is None:
        return
    nodes = [
        (n["Resources"].get("CPU", 0.0), n["Resources"].get("GPU", 0.0)) for n in ray.nodes() if n["Alive"]
    ]
    nodes += [
        (float(g.resources.get("CPU", 0)), float(g.resources.get("GPU", 0)))
        for g in config.node_group_configs
        if g.max_count != 0
    ]
    if not any(c >= cpus and g >= gpus for c, g in nodes):
        offered = ", ".join(sorted({f"{c:g} CPU + {g:g} GPU" for c, g in nodes}))
        raise SpecError(
            f"no node of this cluster can run a trial asking {cpus:g} CPU + {gpus:g} GPU ({offered})"
        )
