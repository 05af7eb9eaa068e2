"""Two trainers in one model_dir: the second is refused; a dead owner's lock is taken over."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import aekit
from aekit.cli.main import main
from aekit.errors import RunLockedError
from aekit.estimator import checkpoint as ckpt
from aekit.estimator.distributed import Strategy
from aekit.estimator.lock import LOCK_FILE, OWNER_FILE, RunLock
from aekit.hooks import Hook
from tiny import batches, quiet_estimator, tiny_data

TESTS = Path(__file__).resolve().parents[1]

# Trains until told to stop: announces the global step it starts from, then waits for a
# line on stdin inside the training loop (so the lock is held), then finishes.
TRAINER = textwrap.dedent(
    """
    import sys
    import torch
    import aekit
    from aekit.hooks import Hook
    from tiny import quiet_estimator

    class Pause(Hook):
        def after_create_session(self, context):
            print(f"training {context.global_step}", flush=True)
            sys.stdin.readline()

    est = quiet_estimator(sys.argv[1])
    try:
        est.train(lambda: (torch.rand(16, 8) for _ in range(1000)), hooks=[Pause()], steps=3)
    except aekit.AekitError as exc:
        print(f"refused {type(exc).__name__}: {exc}", flush=True)
        sys.exit(2)
    print(f"done {est.global_step}", flush=True)
    """
)


def start_trainer(tmp_path: Path, model_dir: Path) -> subprocess.Popen[str]:
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, str(script), str(model_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def read_line(child: subprocess.Popen[str]) -> str:
    assert child.stdout is not None
    return child.stdout.readline().strip()


@pytest.mark.slow
def test_second_process_is_refused_then_dead_owners_lock_is_taken(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = tmp_path / "model"
    first, second = start_trainer(tmp_path, model_dir), start_trainer(tmp_path, model_dir)
    try:
        said = {child: read_line(child) for child in (first, second)}
        # Exactly one got in; the other was refused, naming the owner's PID.
        assert sorted(said.values())[1] == "training 0", said
        owner, refused = (first, second) if said[first] == "training 0" else (second, first)
        assert said[refused].startswith("refused RunLockedError"), said
        assert str(owner.pid) in said[refused] and "another model_dir" in said[refused]
        assert refused.wait(timeout=60) == 2
        record = json.loads((model_dir / OWNER_FILE).read_text())
        assert record["pid"] == owner.pid and (model_dir / LOCK_FILE).is_file()

        # The same from the command line: one line, exit status 2, nothing written.
        status = main(["train", "fully_connected", "--dataset", "digits", "--model-dir",
                       str(model_dir), "--epochs", "1"])  # fmt: skip
        err = capsys.readouterr().err.strip()
        assert status == 2 and "Traceback" not in err and len(err.splitlines()) == 1
        assert f"process {owner.pid}" in err
        assert not (model_dir / "hparams.json").exists()
        assert ckpt.latest_checkpoint(model_dir) is None

        # The owner dies holding the lock: its files stay, and the lock is taken over.
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(timeout=60)
        assert json.loads((model_dir / OWNER_FILE).read_text())["pid"] == owner.pid
        assert (model_dir / LOCK_FILE).is_file()
    finally:
        for child in (first, second):
            if child.poll() is None:
                child.kill()
            child.wait(timeout=60)
            for stream in (child.stdin, child.stdout):
                assert stream is not None
                stream.close()
    est = quiet_estimator(model_dir)
    est.train(batches(tiny_data()), steps=2)
    assert est.global_step == 2
    assert not (model_dir / LOCK_FILE).exists()  # released, and removed, at the end
    assert not (model_dir / OWNER_FILE).exists()


def test_lock_is_exclusive_within_a_process_and_released_on_error(tmp_path: Path) -> None:
    est = quiet_estimator(tmp_path)
    seen: list[BaseException] = []

    def train_elsewhere() -> None:
        try:
            quiet_estimator(tmp_path).train(batches(tiny_data()), steps=1)
        except RunLockedError as exc:
            seen.append(exc)

    class TrainAgain(Hook):
        def after_create_session(self, context: aekit.hooks.RunContext) -> None:
            assert (tmp_path / LOCK_FILE).is_file()
            other = threading.Thread(target=train_elsewhere)  # another thread: refused
            other.start()
            other.join(timeout=60)
            with RunLock(tmp_path):  # the owning thread may take it again
                pass
            assert (tmp_path / LOCK_FILE).is_file()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        est.train(batches(tiny_data()), hooks=[TrainAgain()], steps=1)
    assert len(seen) == 1 and f"process {os.getpid()}" in str(seen[0])
    assert not (tmp_path / LOCK_FILE).exists() and not (tmp_path / OWNER_FILE).exists()
    with RunLock(tmp_path) as lock:  # free again
        assert lock.held
    assert not lock.held


def test_stale_lock_file_of_a_dead_process_is_taken_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_pid = int(dead.stdout)
    # What a killed run leaves: its lock file (no longer locked) and its owner record.
    (tmp_path / LOCK_FILE).write_text("")
    (tmp_path / OWNER_FILE).write_text(json.dumps({"pid": dead_pid, "host": "x"}) + "\n")
    est = quiet_estimator(tmp_path)
    with caplog.at_level("INFO", logger="aekit"):
        est.train(batches(tiny_data()), steps=2)
    assert est.global_step == 2
    assert f"left by process {dead_pid}" in caplog.text
    assert not (tmp_path / LOCK_FILE).exists() and not (tmp_path / OWNER_FILE).exists()


class OtherRank(Strategy):
    """The strategy of a rank other than 0, as far as writing files goes."""

    @property
    def is_chief(self) -> bool:
        return False


def test_only_the_writing_rank_takes_the_lock(tmp_path: Path) -> None:
    held: list[bool] = []

    class Look(Hook):
        def after_create_session(self, context: aekit.hooks.RunContext) -> None:
            held.append((tmp_path / LOCK_FILE).exists())

    other = quiet_estimator(tmp_path)
    other.strategy = OtherRank()
    other.train(batches(tiny_data()), hooks=[Look()], steps=1)
    quiet_estimator(tmp_path).train(batches(tiny_data()), hooks=[Look()], steps=1)
    assert held == [False, True]


def in_thread(job: Callable[[], object]) -> object:
    """What `job` returns or raises, run in a thread of its own."""
    result: list[object] = []

    def run() -> None:
        try:
            result.append(job())
        except Exception as exc:
            result.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive() and len(result) == 1
    return result[0]


def test_owner_file_reentry_and_other_threads(tmp_path: Path) -> None:
    outer = RunLock(tmp_path).acquire()
    owner = json.loads((tmp_path / OWNER_FILE).read_text())
    assert owner == {"pid": os.getpid(), "host": socket.gethostname()}
    # Another thread is refused like another process, and the message names this one.
    refused = in_thread(RunLock(tmp_path).acquire)
    assert isinstance(refused, RunLockedError), refused
    assert f"process {os.getpid()} on {socket.gethostname()}" in str(refused)
    assert len(str(refused).splitlines()) == 1
    # Nor may it release this thread's hold.
    wrong = in_thread(outer.release)
    assert isinstance(wrong, RuntimeError) and "thread that acquired" in str(wrong)
    assert outer.held
    # This thread takes it again; letting go of the inner hold keeps the lock and its files.
    with RunLock(tmp_path) as inner:
        assert inner.held
    assert (tmp_path / LOCK_FILE).is_file() and (tmp_path / OWNER_FILE).is_file()
    assert isinstance(in_thread(RunLock(tmp_path).acquire), RunLockedError)
    outer.release()
    assert not outer.held
    assert not (tmp_path / LOCK_FILE).exists() and not (tmp_path / OWNER_FILE).exists()
    taken = in_thread(lambda: RunLock(tmp_path).acquire().release())
    assert taken is None  # free for another thread now


def test_a_lock_let_go_between_open_and_flock_is_taken_on_the_new_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holder unlinks the lock file and unlocks just after a contender opened it."""
    real_flock = fcntl.flock
    taken, go, gone = threading.Event(), threading.Event(), threading.Event()
    tries: list[int] = []

    def hold() -> None:
        with RunLock(tmp_path):
            taken.set()
            go.wait(timeout=60)
        gone.set()

    def flock(fd: int, operation: int) -> None:
        if operation & fcntl.LOCK_EX and threading.current_thread() is threading.main_thread():
            tries.append(fd)
            if len(tries) == 1:  # the file is open: now the holder lets go
                go.set()
                assert gone.wait(timeout=60)
        real_flock(fd, operation)

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(timeout=60)
    monkeypatch.setattr(fcntl, "flock", flock)
    lock = RunLock(tmp_path).acquire()
    holder.join(timeout=60)
    # The first flock got the unlinked file and did not count; the second took the new one.
    assert len(tries) == 2 and lock.held
    assert (tmp_path / LOCK_FILE).is_file()
    assert json.loads((tmp_path / OWNER_FILE).read_text())["pid"] == os.getpid()
    assert isinstance(in_thread(RunLock(tmp_path).acquire), RunLockedError)
    lock.release()
    assert not (tmp_path / LOCK_FILE).exists()


# Dies holding the lock of a model_dir on a file system without flock.
DIES_HOLDING = textwrap.dedent(
    """
    import errno, fcntl, os, sys, warnings

    def no_flock(fd, operation):
        raise OSError(errno.ENOSYS, "Function not implemented")

    fcntl.flock = no_flock
    warnings.simplefilter("ignore")
    from aekit.estimator.lock import RunLock

    held = RunLock(sys.argv[1]).acquire()  # kept: a dropped lock is let go
    print(os.getpid(), flush=True)
    os._exit(0)
    """
)


@pytest.mark.slow
def test_without_flock_filelocks_soft_lock_refuses_and_takes_over_dead_owners(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dead = subprocess.run([sys.executable, "-c", DIES_HOLDING, str(tmp_path)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_pid = int(dead.stdout)
    assert (tmp_path / LOCK_FILE).is_file() and (tmp_path / OWNER_FILE).is_file()

    def no_flock(fd: int, operation: int) -> None:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    with (
        caplog.at_level("INFO", logger="aekit"),
        pytest.warns(UserWarning, match="falling back to SoftFileLock"),
    ):
        lock = RunLock(tmp_path).acquire()
    assert lock.held and f"left by process {dead_pid}" in caplog.text
    refused = in_thread(RunLock(tmp_path).acquire)
    assert isinstance(refused, RunLockedError) and f"process {os.getpid()}" in str(refused)
    lock.release()
    assert not (tmp_path / LOCK_FILE).exists() and not (tmp_path / OWNER_FILE).exists()
    with RunLock(tmp_path) as again:
        assert again.held
