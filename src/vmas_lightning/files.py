"""Filesystem helpers every writer shares: atomic durable writes, an exclusive lock, remote paths.

`atomic_write` writes to a hidden temporary file next to the target (a name no other writer uses),
fsyncs it, renames it over the target and fsyncs the folder, so a process killed at any moment leaves
either the old complete file or the new one, never half a file; temporary files of writers that
died (on this machine) are removed by the next write to the same target.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import socket
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import torch


def is_remote(path: str | os.PathLike) -> bool:
    """Whether `path` is a URL (`s3://bucket/prefix`, ...) rather than a local path."""
    return "://" in str(path)


def _host() -> str:
    return socket.gethostname().replace(".", "-")


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{_host()}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _remove_orphans(path: Path) -> None:
    """Temporary files of `path` left by writers on this machine that are no longer running (a pid
    means nothing on another machine sharing the folder: theirs are left alone)."""
    prefix = f".{path.name}.{_host()}."
    for temporary in path.parent.iterdir():
        name = temporary.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix):].split(".")[0]
        if pid.isdigit() and not _running(int(pid)):
            temporary.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    """Whether process `pid` runs on this machine (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Call `write(file)` on a temporary file and put it at `path` atomically and durably."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    temporary = _temporary_name(path)
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself made durable
    finally:
        os.close(folder)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """`atomic_write` of UTF-8 `text`."""
    return atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """`torch.save(obj, path)` by `atomic_write`."""
    return atomic_write(path, lambda file: torch.save(obj, file))


class LockHeld(Exception):
    """`file_lock(wait=False)` found the lock held; `holder` is what the holder wrote ("pid N")."""

    def __init__(self, path: Path, holder: str):
        super().__init__(f"{path}: held by {holder or 'another process'}")
        self.path, self.holder = path, holder


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created, holding "pid N" of this process) for the block; the
    system releases it when the process dies. Without `wait`, raise `LockHeld` at once when another
    process holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            lock.seek(0)
            raise LockHeld(path, lock.read().strip()) from None
        lock.truncate(0)
        lock.write(f"pid {os.getpid()}")
        lock.flush()
        yield
