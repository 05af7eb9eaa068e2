"""Atomic file writes: a reader sees the old file or the complete new one."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from aekit.errors import StorageError

# A full disk, a read-only or foreign directory, a file-size limit: the user's to fix.
DISK_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Call `write` on a temporary file beside `path`, sync it, then rename it over `path`.

    A full disk or an unwritable directory is a StorageError; `path` is then untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        disk = _disk_error(exc)
        if disk is not None and not isinstance(exc, StorageError):
            raise StorageError(
                f"cannot write {path} ({disk.strerror}); free disk space or make "
                f"{path.parent} writable ({path.name} is left as it was)"
            ) from disk
        raise
    _fsync_dir(path.parent)


def _disk_error(exc: BaseException | None) -> OSError | None:
    # Writers may hide the OSError: torch.save, failing to write, raises a RuntimeError of
    # its own while closing the archive, with the OSError as its context.
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def os_reason(exc: OSError) -> str:
    """The operating system's words for an error, also when it was wrapped in a StorageError."""
    cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
    return cause.strerror or str(cause)


TEMPORARY = re.compile(r"^\..+\.tmp-(\d+)$")
"""Names of `atomic_write`'s temporary files; the number is the writing process's PID."""


def remove_stale_temporaries(directory: str | Path, recursive: bool = False) -> list[Path]:
    """Delete the temporary files of writers that no longer run (killed mid-write)."""
    root = Path(directory)
    if not root.is_dir():
        return []
    candidates = root.rglob(".*.tmp-*") if recursive else root.iterdir()
    stale = [
        p
        for p in candidates
        if (match := TEMPORARY.match(p.name)) and p.is_file()
        if not process_running(int(match.group(1)))
    ]
    for path in stale:
        path.unlink(missing_ok=True)
    return sorted(stale)


def process_running(pid: int) -> bool:
    """Whether a process with this PID runs on this machine (this process included)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # exists but is not ours / not a PID we can ask about: leave its files
    return True


def atomic_write_text(path: str | Path, text: str) -> None:
    """Atomically replace `path` with `text` (UTF-8)."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry itself is on disk.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
