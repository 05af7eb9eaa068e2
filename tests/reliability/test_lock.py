"""Two trainers in one model_dir: the second is refused; a dead owner's lock is taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch

import aekit
from aekit.cli.main import main
from aekit.errors import RunLockedError
from aekit.estimator import checkpoint as ckpt
from aekit.estimator.distributed import Strategy
from aekit.estimator.lock import LOCK_FILE, RunLock
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
        record = json.loads((model_dir / LOCK_FILE).read_text())
        assert record["pid"] == owner.pid

        # The same from the command line: one line, exit status 2, nothing written.
        status = main(["train", "fully_connected", "--dataset", "digits", "--model-dir",
                       str(model_dir), "--epochs", "1"])  # fmt: skip
        err = capsys.readouterr().err.strip()
        assert status == 2 and "Traceback" not in err and len(err.splitlines()) == 1
        assert f"process {owner.pid}" in err
        assert not (model_dir / "hparams.json").exists()
        assert ckpt.latest_checkpoint(model_dir) is None

        # The owner dies holding the lock: its lock file stays, and is taken over.
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(timeout=60)
        assert json.loads((model_dir / LOCK_FILE).read_text())["pid"] == owner.pid
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
    assert not (tmp_path / LOCK_FILE).exists()
    with RunLock(tmp_path) as lock:  # free again
        assert lock.held
    assert not lock.held


def test_stale_lock_file_of_a_dead_process_is_taken_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_pid = int(dead.stdout)
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": dead_pid, "host": "x"}) + "\n")
    est = quiet_estimator(tmp_path)
    with caplog.at_level("INFO", logger="aekit"):
        est.train(batches(tiny_data()), steps=2)
    assert est.global_step == 2
    assert f"left by process {dead_pid}" in caplog.text
    assert not (tmp_path / LOCK_FILE).exists()


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
    assert torch.distributed.is_available()
