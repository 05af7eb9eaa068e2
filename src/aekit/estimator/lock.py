"""One training process per model_dir: a lock file naming its owner.

`model_dir/.aekit-train.lock` is held with an exclusive `flock` for as long as `train()` runs.
The kernel drops a flock when its holder dies, however it dies, so a lock left behind by a
killed process is simply taken over; the PID and host written into the file only serve the
error message (and, where flock is unsupported, a liveness check on the PID).

Only the process that writes the model_dir takes the lock (`Strategy.is_chief`): in a
distributed job every rank trains into the same directory, but only rank 0 writes it.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from aekit.errors import RunLockedError, StorageError

try:  # POSIX; where it is missing the PID check below is the lock
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".aekit-train.lock"
# Locks this process holds: resolved lock path -> (descriptor, thread, depth).
_HELD: dict[Path, tuple[int, int, int]] = {}
_HELD_GUARD = threading.Lock()
_log = logging.getLogger("aekit")
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class RunLock:
    """The training lock of `model_dir`; use `with RunLock(d):` or acquire()/release()."""

    def __init__(self, model_dir: str | Path) -> None:
        self.model_dir = Path(model_dir)
        self.path = self.model_dir / LOCK_FILE
        self._fd: int | None = None
        self._key: Path | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._key is not None

    def acquire(self) -> RunLock:
        """Take the lock, or raise RunLockedError naming the process that holds it.

        A thread that holds the lock already may take it again (the command line locks
        the model_dir before writing its settings, then the Estimator locks it to train).
        """
        if self._key is not None:
            return self
        try:
            self.model_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _not_writable(self.model_dir, exc) from exc
        key = self.path.resolve()
        with _HELD_GUARD:
            held = _HELD.get(key)
            if held is not None and held[1] == threading.get_ident():
                _HELD[key] = (held[0], held[1], held[2] + 1)
                self._key = key
                return self
        self._lock_file()
        with _HELD_GUARD:
            assert self._fd is not None
            _HELD[key] = (self._fd, threading.get_ident(), 1)
        self._key = key
        return self

    def _lock_file(self) -> None:
        # A holder that is releasing unlinks the file between our open and our lock; then
        # the file we locked is no longer the lock file and we try again on the new one.
        for _ in range(100):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise _not_writable(self.model_dir, exc) from exc
            locked = False
            try:
                locked = self._try_lock(fd) and _is_current(fd, self.path)
                if locked:
                    self._take(fd)
                    return
            except BaseException:
                if locked:  # ours, and not usable (a full disk): leave no lock file behind
                    _unlink_quietly(self.path)
                os.close(fd)
                raise
            os.close(fd)
        raise RunLockedError(f"could not take the lock {self.path}; it changes hands too often")

    def release(self) -> None:
        """Give the lock back and remove the file (a no-op when not held)."""
        key, self._key = self._key, None
        if key is None:
            return
        with _HELD_GUARD:
            fd, owner, depth = _HELD[key]
            if depth > 1:
                _HELD[key] = (fd, owner, depth - 1)
                return
            del _HELD[key]
        self._fd = None
        try:
            if _is_current(fd, self.path):
                self.path.unlink()  # while still locked, so nobody else holds this file
        except OSError as exc:  # a model_dir turned read-only: the next run takes it over
            _log.warning("could not remove the lock file %s: %s", self.path, exc.strerror or exc)
        finally:
            os.close(fd)  # drops the flock

    def _try_lock(self, fd: int) -> bool:
        """Lock `fd`; False when taken. Raises RunLockedError when a live process holds it."""
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                raise self._locked(_read_owner(fd)) from None
            except OSError as exc:
                if exc.errno not in _UNSUPPORTED:
                    raise _not_writable(self.model_dir, exc) from exc
        # No flock on this file system: trust the PID the file names, if it runs here.
        owner = _read_owner(fd)
        if owner and owner.get("pid") != os.getpid() and _alive(owner):
            raise self._locked(owner)
        return True

    def _take(self, fd: int) -> None:
        previous = _read_owner(fd)
        if previous and previous.get("pid") != os.getpid():
            _log.info(
                "taking over the lock %s left by process %s, which no longer runs",
                self.path,
                previous.get("pid"),
            )
        record = {"pid": os.getpid(), "host": socket.gethostname()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        except OSError as exc:
            raise _not_writable(self.model_dir, exc) from exc
        self._fd = fd

    def _locked(self, owner: dict[str, Any] | None) -> RunLockedError:
        who = "another process"
        if owner:
            who = f"process {owner.get('pid')} on {owner.get('host', 'an unknown host')}"
        return RunLockedError(
            f"{self.model_dir} is being trained by {who} (lock file {self.path}); wait for it "
            "to finish or stop it, or train into another model_dir"
        )

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:  # read-only meanwhile: the next run takes it over
        _log.warning("could not remove the lock file %s: %s", path, exc.strerror or exc)


def _read_owner(fd: int) -> dict[str, Any] | None:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"null")
    except (OSError, ValueError):
        return None  # empty (just created) or garbled: nobody to name
    return data if isinstance(data, dict) else None


def _is_current(fd: int, path: Path) -> bool:
    """Whether `fd` is still the file at `path` (not unlinked or replaced meanwhile)."""
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)


def _alive(owner: dict[str, Any]) -> bool:
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if owner.get("host") != socket.gethostname():
        return True  # cannot check another machine's processes: assume it runs
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _not_writable(directory: Path, exc: OSError) -> StorageError:
    return StorageError(
        f"cannot write to model_dir {directory} ({exc.strerror or exc}); make it writable "
        "(or free disk space) or choose another model_dir"
    )
