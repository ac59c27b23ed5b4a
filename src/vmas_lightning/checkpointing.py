"""Crash-safe checkpoints and automatic resume.

`AtomicCheckpointIO` writes every checkpoint to a temporary file next to its target, fsyncs it and
renames it over the target, so a run killed at any moment (SIGKILL, node failure, preemption)
leaves either the previous complete `last.ckpt` or the new complete one, never half a file.

`latest_checkpoint(run_dir)` picks the checkpoint a (re)started run resumes from: the newest of
`<run_dir>/checkpoints/last*.ckpt` (ModelCheckpoint, also after a crash or `scontrol requeue`) and
`<run_dir>/hpc_ckpt_*.ckpt` (Lightning's SLURM auto-requeue save on SIGUSR1).
`python -m vmas_lightning.checkpointing RUN_DIR` prints it, or `null` when the run is new;
`slurm/train_4node.sh` passes that to `vmas fit --ckpt_path`.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH
from fsspec.implementations.local import LocalFileSystem

from vmas_lightning.files import atomic_torch_save

CHECKPOINT_FOLDER = "checkpoints"
RESUME_PATTERNS = (f"{CHECKPOINT_FOLDER}/last*.ckpt", "hpc_ckpt_*.ckpt")


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` whose local writes are atomic and durable; remote URLs (s3://...) use
    Lightning's fsspec transaction as before.

    Enable it with `trainer.plugins: [{class_path: vmas_lightning.checkpointing.AtomicCheckpointIO}]`.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Optional[Any] = None) -> None:
        if not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options for local files")
        atomic_torch_save(checkpoint, path)


def latest_checkpoint(run_dir: _PATH) -> Optional[Path]:
    """The newest resumable checkpoint of a run folder (see the module docstring), or None."""
    run_dir = Path(run_dir)
    candidates = [path for pattern in RESUME_PATTERNS for path in run_dir.glob(pattern) if path.is_file()]
    return max(candidates, key=lambda path: path.stat().st_mtime_ns, default=None)


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m vmas_lightning.checkpointing RUN_DIR  (prints the checkpoint to resume from, or null)", file=sys.stderr)
        return 2
    print(latest_checkpoint(args[0]) or "null")
    return 0


if __name__ == "__main__":
    sys.exit(main())
