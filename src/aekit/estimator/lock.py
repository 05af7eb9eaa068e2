"""One training process per model_dir, locked with the `filelock` library.

`model_dir/.aekit-train.lock` is held (`filelock.FileLock`: an exclusive, non-blocking `flock`)
for as long as `train()` runs. The kernel drops a flock when its holder dies, however it dies,
so a lock left behind by a killed process is simply taken over. The holder's PID and host go
into a second file, `.aekit-train.owner`, which only serves the message a refused run prints.

Only the process that writes the model_dir takes the lock (`Strategy.is_chief`): in a
distributed job every rank trains into the same directory, but only rank 0 writes it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from types import TracebackType
from typing import Any

from filelock import BaseFileLock, FileLock, Timeout

from aekit.errors import RunLockedError, StorageError

LOCK_FILE = ".aekit-train.lock"
# The owner record has a file of its own because the lock file's contents are filelock's:
# releases before 3.30 opened it with O_TRUNC, so every refused attempt erased what the
# holder had written, and where flock is missing filelock keeps its own marker in it. Only
# the holder writes the owner file (to a temporary, renamed into place, so a reader never
# sees half of it), and it removes it before letting go of the lock; a killed holder's record
# stays for the next run's "taking over" message. A reader that finds none names "another
# process".
OWNER_FILE = ".aekit-train.owner"
# A refused attempt with no owner record may have met a lock being let go of (see _let_go):
# it is tried again.
_ATTEMPTS = 3
_log = logging.getLogger("aekit")


class RunLock:
    """The training lock of `model_dir`; use `with RunLock(d):` or acquire()/release().

    Release it in the thread that acquired it.
    """

    def __init__(self, model_dir: str | Path) -> None:
        self.model_dir = Path(model_dir)
        self.path = self.model_dir / LOCK_FILE
        self.owner_path = self.model_dir / OWNER_FILE
        self._lock: BaseFileLock | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._lock is not None

    def acquire(self) -> RunLock:
        """Take the lock, or raise RunLockedError naming the process that holds it.

        A thread that holds the lock already may take it again (the command line locks
        the model_dir before writing its settings, then the Estimator locks it to train).
        """
        if self._lock is not None:
            return self
        try:
            self.model_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _not_writable(self.model_dir, exc) from exc
        # is_singleton: every RunLock of this path in this process shares one FileLock, whose
        # hold count is kept per thread (thread_local, the default). So the holding thread
        # takes it again, while another thread opens a descriptor of its own and flock
        # refuses it exactly as it refuses another process.
        # Where flock is missing (ENOSYS: Lustre mounted noflock, some FUSE file systems) we
        # keep filelock's default fallback to SoftFileLock, with a warning from filelock: the
        # lock file becomes a marker naming PID and host, and a marker whose process no
        # longer runs on this host is taken over; one from another host has to be removed by
        # hand, since nothing here can tell whether that process still runs.
        lock = FileLock(self.path, timeout=0, mode=0o644, thread_local=True, is_singleton=True)
        first = not lock.is_locked  # this thread does not hold it yet
        self._take(lock)
        if first:
            try:
                self._record_owner()
            except BaseException as exc:  # a full disk: let go, and leave no files behind
                self._let_go(lock)
                if isinstance(exc, OSError):
                    raise _not_writable(self.model_dir, exc) from exc
                raise
        self._lock = lock
        return self

    def _take(self, lock: BaseFileLock) -> None:
        owner = None
        for _ in range(_ATTEMPTS):
            try:
                lock.acquire(blocking=False)
                return
            except Timeout:  # a subclass of OSError, so caught first
                owner = _read_owner(self.owner_path)
                if owner:  # held by a process that has named itself
                    break
            except OSError as exc:
                raise _not_writable(self.model_dir, exc) from exc
        raise self._locked(owner)

    def _record_owner(self) -> None:
        previous = _read_owner(self.owner_path)
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        if previous and (previous.get("pid"), previous.get("host")) != (me["pid"], me["host"]):
            _log.info(
                "taking over the lock %s left by process %s, which no longer runs",
                self.path,
                previous.get("pid"),
            )
        # `.<name>.tmp-<pid>`: a killed writer's temporary goes with the others at the next run.
        tmp = self.model_dir / f"{OWNER_FILE}.tmp-{os.getpid()}"
        try:
            tmp.write_text(json.dumps(me) + "\n")
            os.replace(tmp, self.owner_path)
        except BaseException:
            _unlink_quietly(tmp)
            raise

    def release(self) -> None:
        """Give the lock back and remove its files (a no-op when not held)."""
        lock = self._lock
        if lock is None:
            return
        if not lock.is_locked:  # filelock's holds are per thread: this one holds nothing
            raise RuntimeError(f"release the lock {self.path} in the thread that acquired it")
        self._lock = None
        if lock.lock_counter > 1:  # the same thread holds it again elsewhere
            lock.release()
        else:
            self._let_go(lock)

    def _let_go(self, lock: BaseFileLock) -> None:
        # filelock (from 3.30) leaves the lock file in place; it is removed here while still
        # locked. A contender that opened it just before gets its flock on a file no longer
        # in the directory; filelock sees that (no links left) and reports the lock as taken,
        # and _take tries again on the path's new file. Under the soft fallback the unlink is
        # the release, and filelock leaves alone a marker that is no longer its own.
        for path in (self.owner_path, self.path):
            _unlink_quietly(path)
        lock.release()

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
        _log.warning("could not remove %s: %s", path, exc.strerror or exc)


def _read_owner(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read(4096) or b"null")
    except (OSError, ValueError):
        return None  # none (being written or removed) or garbled: nobody to name
    return data if isinstance(data, dict) else None


def _not_writable(directory: Path, exc: OSError) -> StorageError:
    return StorageError(
        f"cannot write to model_dir {directory} ({exc.strerror or exc}); make it writable "
        "(or free disk space) or choose another model_dir"
    )
