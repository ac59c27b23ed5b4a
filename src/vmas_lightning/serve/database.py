"""The SQLite connection every store of `vmas serve` uses (jobs, studies): autocommit unless a
transaction is begun, rows by column name, WAL with synchronous=FULL so that a committed write
survives kill -9 and a power cut while readers go on."""
from __future__ import annotations

import sqlite3
from pathlib import Path


def connect(path: str | Path) -> sqlite3.Connection:
    """A new connection to the database file `path` (waits up to 30 s for a writer's lock)."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db
