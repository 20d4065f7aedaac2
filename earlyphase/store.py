"""Atomic, pickle-free persistence of tensors and JSON."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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
