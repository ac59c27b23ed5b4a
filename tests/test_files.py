"""`vmas_lightning.files`: atomic writes leave a whole file or the old one; locks exclude other processes."""
import multiprocessing
import os
import socket
import subprocess
import sys

import pytest
import torch

from vmas_lightning.files import LockHeld, atomic_torch_save, atomic_write, atomic_write_text, file_lock, is_remote


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = atomic_write_text(tmp_path / "settings.json", "old\n")

    def half_then_fail(file):
        file.write(b"ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json"]


def test_orphans_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname().replace(".", "-")
    orphan = tmp_path / f".stats.pt.{host}.{dead.stdout.strip()}.abcd1234.tmp"
    alive = tmp_path / f".stats.pt.{host}.{os.getppid()}.abcd1234.tmp"  # our parent: running
    elsewhere = tmp_path / f".stats.pt.other-host.{dead.stdout.strip()}.abcd1234.tmp"  # a pid of another machine
    for path in (orphan, alive, elsewhere):
        path.write_bytes(b"half")
    atomic_torch_save({"mu": torch.ones(2)}, tmp_path / "stats.pt")
    assert torch.equal(torch.load(tmp_path / "stats.pt")["mu"], torch.ones(2))
    assert not orphan.exists() and alive.exists() and elsewhere.exists()


def _hold(path, ready, release):
    with file_lock(path):
        ready.set()
        release.wait(30)


def test_a_held_lock_names_its_holder_and_is_free_once_released(tmp_path):
    lock = tmp_path / "run.lock"
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(lock, ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(LockHeld) as held:
            with file_lock(lock, wait=False):
                pass
        assert held.value.holder == f"pid {holder.pid}"
    finally:
        release.set()
        holder.join(30)
    with file_lock(lock, wait=False):  # free again
        assert lock.read_text() == f"pid {os.getpid()}"


def test_is_remote():
    assert is_remote("s3://bucket/data") and not is_remote("/data/s3") and not is_remote(os.path.join("runs", "x"))
