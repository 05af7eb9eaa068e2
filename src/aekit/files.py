"""Writing files safely: outputs checked before any work, atomic writes, one error for the disk.

Every file aekit writes goes through `atomic_write` (a reader sees the old file or the whole
new one) or `publish_dir` (the same for a folder of files); output paths are checked with
`check_output_file` / `check_output_dir` before work starts; and a full disk or unwritable
folder is one StorageError, raised by `writing` around any write.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from aekit.errors import AekitError, ConfigError, InputError, StorageError

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
        _remove_dead_temporaries_of(path)  # a writer of this file killed mid-write left one
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        # On a read-only disk the unlink fails too; that must not hide the first error.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        disk = _disk_error(exc)
        if disk is not None and not isinstance(exc, StorageError):
            raise StorageError(
                f"cannot write {path} ({disk.strerror}); free disk space or make "
                f"{path.parent} writable ({path.name} is left as it was)"
            ) from disk
        raise
    _fsync_dir(path.parent)


def storage_error(path: str | Path, exc: OSError) -> StorageError:
    """The StorageError for failing to write `path` (or create it, for a directory)."""
    if isinstance(exc, StorageError):
        return exc
    return StorageError(
        f"cannot write {path} ({os_reason(exc)}); make it writable, free disk space or "
        "write somewhere else"
    )


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn an OSError of the block (one that is not already an AekitError) into a StorageError."""
    try:
        yield
    except AekitError:
        raise
    except OSError as exc:
        raise storage_error(path, exc) from exc


@contextmanager
def reading(path: str | Path, what: str = "it") -> Iterator[None]:
    """Turn an OSError of the block into one InputError naming `path` and the reason.

    The one way data is read: a link that loops, a file without read permission, one that
    vanished, each is a line naming it rather than a traceback.
    """
    try:
        yield
    except AekitError:
        raise
    except OSError as exc:
        raise InputError(
            f"{path}: cannot read {what} ({os_reason(exc)}); fix or remove it, or give other data"
        ) from None


def ensure_dir(directory: str | Path) -> Path:
    """Create `directory` and its parents as needed; a failure is one StorageError."""
    directory = Path(directory)
    with writing(directory):
        directory.mkdir(parents=True, exist_ok=True)
    return directory


def publish_dir(staging: Path, target: Path) -> None:
    """Swap the complete directory `staging` in as `target`, replacing any earlier `target`.

    A reader sees the old set of files or the new one, never a mix. The old `target` is
    first renamed aside to `.<name>.old-<pid>`; should this process die before the new one
    is in place, `remove_stale_temporaries` of the parent moves the old one back.
    """
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    try:
        remove_stale_temporaries(target.parent)  # and roll back a swap that was cut short
        # os.replace renames a folder as os.rename does; neither destination exists here.
        if target.exists():
            os.replace(target, old)
            try:
                os.replace(staging, target)
            except BaseException:
                os.replace(old, target)
                raise
        else:
            os.replace(staging, target)
    except OSError as exc:
        raise storage_error(target, exc) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if target.exists():  # else the old set could not go back: a later run moves it
            shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(target.parent)


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


TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)$")
"""Names of half-written files and folders (`.<name>.tmp-<pid>`, of `atomic_write` and of
staged folders) and of folders set aside by `publish_dir` (`.<name>.old-<pid>`); the number
is the writing process's PID."""


def remove_stale_temporaries(directory: str | Path, recursive: bool = False) -> list[Path]:
    """Delete what writers that no longer run (killed mid-write) left in `directory`.

    Half-written files and folders go. A folder set aside by a swap that was cut short goes
    back in place when nothing took its place, and goes otherwise.
    """
    root = Path(directory)
    if not root.is_dir():
        return []
    candidates = root.rglob(".*-*") if recursive else root.iterdir()
    stale = [
        (p, match)
        for p in candidates
        if (match := TEMPORARY.match(p.name))
        if not process_running(int(match["pid"]))
    ]
    removed: list[Path] = []
    # Deepest first, so a folder's own stale entries are handled before the folder.
    for path, match in sorted(stale, key=lambda item: len(item[0].parts), reverse=True):
        target = path.with_name(match["name"])
        try:
            if match["kind"] == "old" and path.is_dir() and not target.exists():
                os.replace(path, target)  # the swap died between its renames: undo it
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            else:
                continue
        except FileNotFoundError:
            continue
        removed.append(path)
    return sorted(removed)


def _remove_dead_temporaries_of(path: Path) -> None:
    # Only this file's own temporaries: cheap, and safe beside other writers' files.
    prefix = f".{path.name}.tmp-"
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            pid = entry.name[len(prefix) :]
            if not (entry.name.startswith(prefix) and pid.isdigit()) or entry.is_dir():
                continue
            if not process_running(int(pid)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)


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
    if not writable(existing):
        raise StorageError(
            f"cannot write {directory} ({existing} is not writable); make it writable or "
            f"give another {flag}"
        )


def writable(directory: str | Path) -> bool:
    """Whether a file can be created in `directory`: tried, not read off its mode bits.

    Mode bits do not tell: root writes through them, and a read-only mount or /proc refuses
    whatever they say. The trial file is gone when this returns.
    """
    try:
        with tempfile.TemporaryFile(dir=directory):
            return True
    except OSError:
        return False
