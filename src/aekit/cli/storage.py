"""Where the command line writes: outputs checked before any work, OSErrors as one line.

Every file and directory a sub-command writes goes through `check_output_file` or
`check_output_dir` before anything is computed or written, and every write runs inside
`writing`, which turns the operating system's refusal into a StorageError.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aekit._io import os_reason
from aekit.errors import AekitError, ConfigError, StorageError


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn an OSError of the block (one that is not already an AekitError) into a StorageError."""
    try:
        yield
    except AekitError:
        raise
    except OSError as exc:
        raise StorageError(
            f"cannot write {path} ({os_reason(exc)}); make it writable, free disk space or "
            "write somewhere else"
        ) from exc


def make_dir(path: str | Path) -> Path:
    """`path` and its parents created; StorageError instead of an OSError."""
    path = Path(path)
    with writing(path):
        path.mkdir(parents=True, exist_ok=True)
    return path


def check_output_file(flag: str, path: str | Path) -> Path:
    """`path` as a file to (over)write: not a directory, inside a writable directory."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(
            f"{flag} {path} is a directory; give a file name such as {path / 'picture.png'}"
        )
    _check_creatable(flag, path.parent)
    return path


def check_output_dir(flag: str, path: str | Path) -> Path:
    """`path` as a directory to write into: a writable directory, or one that can be made."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file, not a directory; give a directory path")
    _check_creatable(flag, path)
    return path


def _check_creatable(flag: str, directory: Path) -> None:
    # The nearest existing ancestor decides: it must be a directory this process may write.
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(
            f"{flag} {directory}: {existing} is a file, not a directory; give another path"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StorageError(
            f"cannot write {directory} ({existing} is not writable); make it writable or "
            f"give another {flag}"
        )
