"""User-facing errors: each one prints as a single line and exits non-zero from the CLI."""
from __future__ import annotations

from pathlib import Path


class VMASError(Exception):
    """An error caused by the user's input (file, config, weights), reported as one line."""

    exit_code = 2


class Interrupted(VMASError):
    """Ctrl-C: one line saying what was kept, exit code 130 (128 + SIGINT)."""

    exit_code = 130


class MissingWeightsError(VMASError):
    """Pretrained weights that are neither in a local folder nor reachable on the hub."""

    def __init__(self, what: str, source: str, how: str):
        self.what, self.source, self.how = what, source, how
        super().__init__(f"missing pretrained weights for {what}: '{source}' not found; {how}")

    def __reduce__(self):  # picklable across worker processes
        return type(self), (self.what, self.source, self.how)


class InputFileError(VMASError):
    """An input media file that is missing, empty, truncated or of the wrong kind."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self):  # picklable across worker processes
        return type(self), (self.path, self.problem)
