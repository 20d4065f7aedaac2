"""Atomic, pickle-free persistence of tensors and JSON."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def file_mode() -> int:
    """The mode ``open()`` would give a new file (0666 less the umask): mkstemp's 0600 would hide
    results from the rest of a team. The umask is read from /proc (no process-wide umask flip)."""
    try:
        status = Path("/proc/self/status").read_text()
        mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Umask:")), 8)
    except (OSError, StopIteration):
        mask = 0o022
    return 0o666 & ~mask


def check_creatable(path: str | os.PathLike) -> None:
    """Raise the OSError that creating the directory ``path`` would meet, if any: a directory is made
    and removed again in its nearest existing ancestor, so nothing is left behind."""
    path = Path(path).absolute()
    ancestor = next(p for p in (path, *path.parents) if p.exists())
    os.rmdir(tempfile.mkdtemp(prefix=".earlyphase-probe-", dir=ancestor))


def atomic_write(path: Path, write) -> None:
    """Write ``path`` through a temp file in its directory and a rename, with the umask's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_tensors(path: str | os.PathLike, tensors: Any) -> None:
    """Save nested dicts/lists of CPU tensors and plain values atomically (temp file + rename)."""
    atomic_write(Path(path), lambda f: torch.save(_to_cpu(tensors), f))


def load_tensors(path: str | os.PathLike, device: torch.device | str = "cpu") -> Any:
    """Load what :func:`save_tensors` wrote; ``weights_only=True``, never arbitrary pickles."""
    return torch.load(path, map_location=device, weights_only=True)


def save_json(path: str | os.PathLike, value: Any) -> None:
    atomic_write(Path(path), lambda f: f.write(json.dumps(value, indent=2, sort_keys=True).encode()))


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value
