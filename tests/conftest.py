import os
from pathlib import Path

import lightning.pytorch  # noqa: F401  (its logger binds sys.stderr on import: before any test captures it)
import pytest

from helpers import ROOT, TINY_CONFIG, fit_tiny

# Never part of what the suite may not write: the environment, git, and Python's and pytest's caches.
SKIPPED_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", "vmas_lightning.egg-info"}
CHECKOUT = pytest.StashKey[dict]()  # the checkout's files at the session's start


def checkout_files() -> dict[str, float]:
    """Every file of the checkout (outside `SKIPPED_DIRS`) with its modification time."""
    files = {}
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
        for name in names:
            path = os.path.join(folder, name)
            files[os.path.relpath(path, ROOT)] = os.stat(path, follow_symlinks=False).st_mtime
    return files


def pytest_sessionstart(session):
    session.config.stash[CHECKOUT] = checkout_files()


def pytest_sessionfinish(session, exitstatus):
    """No test writes into the checkout: a file made or changed there fails the run, named."""
    before, after = session.config.stash[CHECKOUT], checkout_files()
    written = sorted(path for path, mtime in after.items() if before.get(path) != mtime)
    if written:
        shown = ", ".join(written[:10]) + (f" and {len(written) - 10} more" if len(written) > 10 else "")
        session.config.get_terminal_writer().line(f"\nFAILED: tests wrote into the checkout {ROOT}: {shown}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """A small demo dataset for the tiny config (8 train, 4 val, 4 test clips), written once; each
    test clip also as a 25-fps 96x96 H.264 file under `videos/test/`, its shard's source."""
    from vmas_lightning.data.demo import VideoForm, write_demo_dataset
    from vmas_lightning.data.shards import ShardConfig

    root = tmp_path_factory.mktemp("demo")
    write_demo_dataset(root / "data", ShardConfig.from_configs(TINY_CONFIG), {"train": 8, "val": 4, "test": 4},
                       seed=0, test_videos=VideoForm(fps=25.0, size=96))
    return root / "data"


@pytest.fixture(scope="session")
def tiny_ckpt(demo_data, tmp_path_factory) -> Path:
    """A checkpoint of the tiny config trained for 2 steps on the demo data, written once."""
    return fit_tiny(demo_data, tmp_path_factory.mktemp("tiny_fit"))
