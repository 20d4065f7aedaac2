"""One experiment, one owner: the experiment directory is created exclusively, held by a lease with a
heartbeat while its driver runs, and records what it runs so a resume continues exactly that.

    <storage>/<name>/sweep.json       the sweep (canonical JSON): the science, never changed by a resume
    <storage>/<name>/settings.json    how it runs (resources, retries, data dir...): some may change
    <storage>/<name>/owner.json       the driver holding it: host, pid, start, heartbeat

A second driver is refused with the owner's host and pid; ``--resume`` takes over a lease whose
owner is dead (same host, no such process) or silent for longer than :data:`STALE_AFTER_S`.
On object stores (``s3://``...) creation is check-then-write, not atomic: the lease still stops
a second driver that starts after the first has written it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from dataclasses import dataclass

from earlyphase.errors import SpecError
from earlyphase.tune import storage

SWEEP_FILE = "sweep.json"
SETTINGS_FILE = "settings.json"
OWNER_FILE = "owner.json"
HEARTBEAT_S = 20.0
STALE_AFTER_S = 90.0
# Settings a resume may change: where and how fast trials run, not what they compute.
SAFE_TO_CHANGE = (
    "address", "cpus_per_trial", "gpus_per_trial", "max_failures", "log_every", "data_dir", "shared_storage",
)  # fmt: skip


def flatten(value, prefix: str = "") -> dict[str, object]:
    """Nested dicts as ``{"run.training.lr": 0.1, ...}``."""
    if not isinstance(value, dict):
        return {prefix: value}
    items: dict[str, object] = {}
    for key, inner in value.items():
        items.update(flatten(inner, f"{prefix}.{key}" if prefix else key))
    return items


def differences(before: dict, after: dict) -> list[str]:
    """``field: old → new`` for every flattened field that differs."""
    old, new = flatten(before), flatten(after)
    missing = object()
    return [
        f"{key}: {json.dumps(old.get(key))} → {json.dumps(new.get(key))}"
        for key in sorted(set(old) | set(new))
        if old.get(key, missing) != new.get(key, missing)
    ]


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Lease:
    """The running driver's hold on an experiment; :meth:`release` (or process exit) gives it up."""

    path: str
    record: dict

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="earlyphase-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self.record["heartbeat"] = time.time()
            with contextlib.suppress(OSError):  # a transient storage error: the next beat tries again
                storage.write_text(self.path, json.dumps(self.record))

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        storage.remove(self.path)


def _owner_record() -> dict:
    now = time.time()
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": now, "heartbeat": now}


def _owner_alive(owner: dict) -> bool:
    if owner.get("host") == socket.gethostname():
        return _process_alive(int(owner.get("pid", -1)))
    return time.time() - float(owner.get("heartbeat", 0)) < STALE_AFTER_S


def claim(experiment_dir: str, sweep_json: str, settings: dict, resume: bool) -> Lease:
    """Create the experiment (exclusively) or, with ``resume``, take it over; return the lease.

    Raises one-line SpecErrors: it exists without ``--resume``, nothing to resume, another driver
    owns it, or the sweep or an unsafe setting differs from what it was started with."""
    sweep_path = storage.join(experiment_dir, SWEEP_FILE)
    settings_path = storage.join(experiment_dir, SETTINGS_FILE)
    owner_path = storage.join(experiment_dir, OWNER_FILE)
    try:
        if not resume:
            if not storage.make_dir_exclusive(experiment_dir):
                raise SpecError(
                    f"experiment {experiment_dir} exists: pass --resume to continue it "
                    "or choose another --name"
                )
            storage.write_text(sweep_path, sweep_json)
            storage.write_text(settings_path, json.dumps(settings, indent=2, sort_keys=True))
            record = _owner_record()
            storage.write_text(owner_path, json.dumps(record))
            return Lease(owner_path, record)
        if not storage.exists(sweep_path):
            raise SpecError(f"nothing to resume: no experiment at {experiment_dir}")
        if storage.exists(owner_path):
            owner = json.loads(storage.read_text(owner_path))
            who = f"{owner.get('host')} (pid {owner.get('pid')})"
            if _owner_alive(owner):
                raise SpecError(f"experiment {experiment_dir} is being run by {who}; wait for it or stop it")
            print(
                f"[earlyphase] taking over {experiment_dir} from {who}, which is no longer running",
                flush=True,
            )
        started = json.loads(storage.read_text(sweep_path))
        changed = differences(started, json.loads(sweep_json))
        if changed:
            raise SpecError(
                f"experiment {experiment_dir} was started with a different sweep ({'; '.join(changed)}); "
                "run it under another --name"
            )
        previous = json.loads(storage.read_text(settings_path)) if storage.exists(settings_path) else {}
        unsafe = [d for d in differences(previous, settings) if d.split(":")[0] not in SAFE_TO_CHANGE]
        if unsafe:
            raise SpecError(
                f"experiment {experiment_dir} was started with other settings ({'; '.join(unsafe)}); "
                f"a resume may change only {', '.join(SAFE_TO_CHANGE)}"
            )
        storage.write_text(settings_path, json.dumps(settings, indent=2, sort_keys=True))
        record = _owner_record()
        storage.write_text(owner_path, json.dumps(record))
        return Lease(owner_path, record)
    except OSError as error:
        raise SpecError(
            f"cannot write the experiment at {experiment_dir}: {error.strerror or error}"
        ) from None
