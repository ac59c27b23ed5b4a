"""The `vmas` command: LightningCLI subcommands plus project subcommands."""
from __future__ import annotations

import tempfile
from pathlib import Path

from vmas_lightning.errors import VMASError


def writable_folder(folder: str | Path, flag: str) -> Path:
    """`folder`, created if needed, once a file could be written in it; else one line naming `flag`
    (checked before the work, not when its result is saved)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        raise VMASError(f"{flag} {folder}: cannot write there ({err.strerror or err}); choose a writable folder") from None
    return folder
