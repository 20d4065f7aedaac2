"""Experiment storage: a local directory or any URI Ray Tune accepts (``s3://...``, ``gs://...``)."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.fs

from earlyphase.store import atomic_write, check_creatable


def is_uri(path: str) -> bool:
    return "://" in path


def resolve(path: str) -> str:
    """Absolute local path (trials run in their own working directories) or the URI unchanged."""
    return path if is_uri(path) else str(Path(path).expanduser().resolve())


def join(path: str, *parts: str) -> str:
    return "/".join([path.rstrip("/"), *parts]) if is_uri(path) else os.path.join(path, *parts)


def exists(path: str) -> bool:
    if not is_uri(path):
        return os.path.exists(path)
    fs, inner = pyarrow.fs.FileSystem.from_uri(path)
    return fs.get_file_info(inner).type != pyarrow.fs.FileType.NotFound


def list_dirs(path: str) -> list[str]:
    """Names of the sub-directories of ``path`` (empty if it does not exist)."""
    if not is_uri(path):
        return sorted(p.name for p in Path(path).iterdir() if p.is_dir()) if os.path.isdir(path) else []
    fs, inner = pyarrow.fs.FileSystem.from_uri(path)
    selector = pyarrow.fs.FileSelector(inner, allow_not_found=True)
    return sorted(i.base_name for i in fs.get_file_info(selector) if i.type == pyarrow.fs.FileType.Directory)


def write_text(path: str, text: str) -> None:
    """Write atomically: temp file + rename locally; a single object PUT on object stores."""
    if not is_uri(path):
        atomic_write(Path(path), lambda f: f.write(text.encode()))
        return
    fs, inner = pyarrow.fs.FileSystem.from_uri(path)
    with fs.open_output_stream(inner) as f:
        f.write(text.encode())


def read_text(path: str) -> str:
    if not is_uri(path):
        return Path(path).read_text()
    fs, inner = pyarrow.fs.FileSystem.from_uri(path)
    with fs.open_input_stream(inner) as f:
        return f.read().decode()


def make_dir_exclusive(path: str) -> bool:
    """Create the directory ``path`` (and its parents); False if it already existed. Atomic locally;
    check-then-create on object stores, which have no exclusive create."""
    if not is_uri(path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(path)
        except FileExistsError:
            return False
        return True
    if exists(path):
        return False
    fs, inner = pyarrow.fs.FileSystem.from_uri(path)
    fs.create_dir(inner, recursive=True)
    return True


def remove(path: str) -> None:
    """Delete the file ``path`` if it exists."""
    if not is_uri(path):
        Path(path).unlink(missing_ok=True)
        return
    fs, inner = pyarrow.fs.FileSystem.from_uri(path)
    if fs.get_file_info(inner).type != pyarrow.fs.FileType.NotFound:
        fs.delete_file(inner)


def check_name(name: str) -> None:
    """An experiment name is one plain path component: it cannot climb out of the storage path."""
    from earlyphase.errors import SpecError

    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("~"):
        raise SpecError(f"--name {name!r} must be one plain directory name (no '/', '..', '~')")


def check_writable(path: str) -> None:
    """A one-line SpecError unless a local ``path`` can be created (URIs are checked when written)."""
    from earlyphase.errors import SpecError

    if is_uri(path):
        return
    try:
        check_creatable(path)
    except OSError as error:
        raise SpecError(f"--storage-path {path} cannot be written: {error.strerror or error}") from None
