"""A full disk or a read-only model_dir: a clear error, and the previous checkpoint intact.

As root, the disk is a real 512 KiB tmpfs and read-only is a read-only bind mount (root
ignores file modes); as another user, read-only is `chmod`. A file-size limit
(RLIMIT_FSIZE) stands in for a full disk everywhere, with no privileges needed.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import aekit
from aekit.cli.main import main
from aekit.errors import CheckpointError, StorageError
from aekit.estimator import checkpoint as ckpt
from aekit.hooks import Hook
from tiny import quiet_estimator, tiny_data

ROOT = os.geteuid() == 0


def run(*command: str) -> bool:
    if shutil.which(command[0]) is None:
        return False
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


@contextlib.contextmanager
def small_disk(path: Path, size: str = "512k") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` (skips where mounting is not allowed)."""
    path.mkdir()
    if not (ROOT and run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))):
        pytest.skip("mounting a small tmpfs needs root with CAP_SYS_ADMIN")
    try:
        yield path
    finally:
        run("umount", "-l", str(path))


class ReadOnly:
    """Turns a directory read-only and back: a read-only bind mount as root, else chmod."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mounted = False

    def on(self) -> None:
        if ROOT:
            if not (
                run("mount", "--bind", str(self.path), str(self.path))
                and run("mount", "-o", "remount,bind,ro", str(self.path))
            ):
                run("umount", str(self.path))
                pytest.skip("a read-only bind mount needs root with CAP_SYS_ADMIN")
            self.mounted = True
        else:
            self.path.chmod(0o555)

    def off(self) -> None:
        if self.mounted:
            run("umount", "-l", str(self.path))
            self.mounted = False
        elif not ROOT:
            self.path.chmod(0o755)


class AtStep(Hook):
    """Calls `action` after global step `step`."""

    def __init__(self, step: int, action: object) -> None:
        self.step, self.action = step, action

    def after_run(self, context: aekit.hooks.RunContext, result: aekit.hooks.StepResult) -> None:
        if context.global_step == self.step:
            self.action()  # type: ignore[operator]


def data() -> list[torch.Tensor]:
    x = tiny_data(64)
    return [x[i : i + 16] for _ in range(10) for i in range(0, 64, 16)]


def fill(disk: Path) -> Path:
    """Write a file until the disk refuses more."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:  # unbuffered: close() has nothing left to fail
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def one_line(exc: BaseException, *fragments: str) -> None:
    text = str(exc)
    assert "\n" not in text
    for fragment in fragments:
        assert fragment in text, text


def test_full_disk_is_a_clear_error_and_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        model_dir = disk / "model"
        est = quiet_estimator(model_dir, save_checkpoints_steps=5)
        filler: list[Path] = []
        with pytest.raises(CheckpointError) as info:
            est.train(data(), hooks=[AtStep(7, lambda: filler.append(fill(disk)))], max_steps=20)
        assert isinstance(info.value, StorageError)
        one_line(info.value, "cannot write checkpoint", "No space left on device",
                 "earlier checkpoints are untouched")  # fmt: skip
        good = ckpt.latest_checkpoint(model_dir)
        assert good is not None and ckpt.step_of(good) == 5
        assert ckpt.load(good)["global_step"] == 5
        assert not [p for p in model_dir.iterdir() if ".tmp-" in p.name]  # no half-written file
        # Space again: the run resumes from step 5 and finishes.
        filler[0].unlink()
        again = quiet_estimator(model_dir, save_checkpoints_steps=5)
        again.train(data(), max_steps=20)
        assert ckpt.step_of(ckpt.latest_checkpoint(model_dir) or "") == 20


def test_full_disk_while_writing_summaries(tmp_path: Path) -> None:
    """TensorBoard writes from a thread of its own; its disk errors reach the caller."""
    with small_disk(tmp_path / "disk") as disk:
        model_dir = disk / "model"
        est = quiet_estimator(model_dir, save_checkpoints_steps=5, save_summary_steps=1)
        est.train(data(), max_steps=5)
        before = (model_dir / "ckpt-5.pt").read_bytes()
        filler = fill(disk)
        with pytest.raises(StorageError) as info:  # a new event file for eval/
            est.evaluate(data()[:2])
        one_line(info.value, "cannot write TensorBoard events", "No space left on device")
        filler.unlink()
        # The disk fills while the writer thread appends to train/'s events file.
        est = quiet_estimator(model_dir, save_checkpoints_steps=1000, save_summary_steps=1)
        with pytest.raises(StorageError) as info:
            est.train(data() * 10, hooks=[AtStep(7, lambda: fill(disk))], max_steps=400)
        one_line(info.value, "cannot write TensorBoard events", str(model_dir / "train"))
        assert (model_dir / "ckpt-5.pt").read_bytes() == before
        assert ckpt.step_of(ckpt.latest_checkpoint(model_dir) or "") == 5


def test_model_dir_turning_read_only_mid_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    read_only = ReadOnly(model_dir)
    est = quiet_estimator(model_dir, save_checkpoints_steps=5)
    try:
        with pytest.raises(CheckpointError) as info:
            est.train(data(), hooks=[AtStep(7, read_only.on)], max_steps=20)
        assert isinstance(info.value, StorageError)
        reason = "Read-only file system" if ROOT else "Permission denied"
        one_line(info.value, "cannot write checkpoint", reason)
        before = (model_dir / "ckpt-5.pt").read_bytes()
        assert ckpt.load(model_dir / "ckpt-5.pt")["global_step"] == 5
        # Read-only from the start: refused before anything else, by the Estimator and the CLI.
        with pytest.raises(StorageError, match="cannot write to model_dir"):
            quiet_estimator(model_dir).train(data(), max_steps=20)
    finally:
        read_only.off()
    assert (model_dir / "ckpt-5.pt").read_bytes() == before
    again = quiet_estimator(model_dir, save_checkpoints_steps=5)
    again.train(data(), max_steps=20)
    assert again.global_step == 20
    assert not [p.name for p in model_dir.iterdir() if p.name.startswith(".")]


def test_cli_on_a_read_only_model_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    read_only = ReadOnly(model_dir)
    read_only.on()
    try:
        status = main(["train", "fully_connected", "--dataset", "digits", "--model-dir",
                       str(model_dir), "--epochs", "1"])  # fmt: skip
    finally:
        read_only.off()
    err = capsys.readouterr().err.strip()
    assert status == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "cannot write" in err and str(model_dir) in err
    assert list(model_dir.iterdir()) == []


def test_file_size_limit_is_a_clear_error(tmp_path: Path) -> None:
    """RLIMIT_FSIZE: the kernel refuses to grow a file past the limit (EFBIG), as a full disk."""
    est = quiet_estimator(tmp_path, save_checkpoints_steps=5)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, hard))

    try:
        with pytest.raises(CheckpointError, match="File too large"):
            est.train(data(), hooks=[AtStep(7, limit)], max_steps=20)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert ckpt.load(tmp_path / "ckpt-5.pt")["global_step"] == 5
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["ckpt-5.pt"]


# -- commands that write outside training: export, score, reconstruct, embed ---------------

WRITERS = {
    "export": ["--format", "torchscript"],
    "score": [],
    "reconstruct": [],
    "embed": ["--images", "50"],
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model dir `aekit train` wrote (digits, one epoch)."""
    model_dir = tmp_path_factory.mktemp("trained") / "model"
    status = main(["train", "fully_connected", "--dataset", "digits", "--hidden-units",
                   "8,2", "--epochs", "1", "--batch-size", "256", "--model-dir",
                   str(model_dir)])  # fmt: skip
    assert status == 0
    return model_dir


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` (dot files included) with its contents."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def one_error_line(capsys: pytest.CaptureFixture[str], status: int) -> str:
    err = capsys.readouterr().err.strip()
    assert status == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_writing_commands_on_a_read_only_model_dir(
    trained: Path, tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(trained, model_dir)
    before = snapshot(model_dir)
    read_only = ReadOnly(model_dir)
    read_only.on()
    try:
        status = main([command, "--model-dir", str(model_dir), *WRITERS[command]])
    finally:
        read_only.off()
    err = one_error_line(capsys, status)
    assert "cannot write" in err and str(model_dir) in err, err
    assert snapshot(model_dir) == before  # nothing written, nothing left


def write_each(kind: str, directory: Path, scale: float = 1.0) -> None:
    """Write one output of the library function `kind` into `directory`."""
    from aekit.anomaly import write_scores_csv
    from aekit.export import export_model
    from aekit.files import atomic_write_text
    from aekit.models import FullyConnectedNetwork
    from aekit.viz import write_projector

    if kind == "atomic_write":
        atomic_write_text(directory / "notes.txt", f"{scale}")
    elif kind == "export":
        torch.manual_seed(int(scale))
        network = FullyConnectedNetwork((8,), [4])
        export_model(network, directory / "export", formats=("torchscript",))
    elif kind == "scores":
        write_scores_csv(directory / "scores" / "scores.csv", np.arange(5) * scale, 2.0)
    else:
        write_projector(directory / "projector", np.ones((4, 3)) * scale, ["a", "b", "c", "d"])


LIBRARY_WRITERS = ["atomic_write", "export", "scores", "projector"]


@pytest.mark.parametrize("kind", LIBRARY_WRITERS)
def test_library_writers_on_a_read_only_dir(tmp_path: Path, kind: str) -> None:
    """One StorageError naming the OS's reason (not a cleanup error hiding it), nothing changed."""
    directory = tmp_path / "out"
    directory.mkdir()
    write_each(kind, directory)  # an earlier output, to be left as it was
    before = snapshot(directory)
    read_only = ReadOnly(directory)
    read_only.on()
    try:
        with pytest.raises(StorageError) as info:
            write_each(kind, directory, scale=2.0)
    finally:
        read_only.off()
    one_line(info.value, "cannot write", "Read-only file system" if ROOT else "Permission denied")
    assert snapshot(directory) == before


@pytest.mark.parametrize("kind", LIBRARY_WRITERS)
def test_library_writers_on_a_full_disk(tmp_path: Path, kind: str) -> None:
    with small_disk(tmp_path / "disk", "2m") as disk:
        write_each(kind, disk)
        before = snapshot(disk)
        filler = fill(disk)
        with pytest.raises(StorageError) as info:
            write_each(kind, disk, scale=2.0)
        one_line(info.value, "cannot write", "No space left on device")
        filler.unlink()
        assert snapshot(disk) == before
        write_each(kind, disk, scale=2.0)  # space again: it works and replaces the output
        assert snapshot(disk) != before
        assert not [p for p in disk.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_writing_commands_on_a_full_disk(
    trained: Path, tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with small_disk(tmp_path / "disk", "16m") as disk:
        model_dir = disk / "model"
        shutil.copytree(trained, model_dir)
        # An earlier output of the same command, which a failed run must leave as it was.
        assert main([command, "--model-dir", str(model_dir), *WRITERS[command]]) == 0
        capsys.readouterr()
        filler = fill(disk)
        before = snapshot(model_dir)
        status = main([command, "--model-dir", str(model_dir), *WRITERS[command]])
        err = one_error_line(capsys, status)
        assert "cannot write" in err and "No space left on device" in err, err
        assert snapshot(model_dir) == before
        filler.unlink()  # space again: the command works
        assert main([command, "--model-dir", str(model_dir), *WRITERS[command]]) == 0
        assert not [p for p in model_dir.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]


def test_disk_filling_while_the_projector_writes(tmp_path: Path) -> None:
    """The probe of the event file passes, then tensors.tsv runs out of space midway."""
    from aekit.viz import write_projector

    with small_disk(tmp_path / "disk", "1m") as disk:
        log_dir = disk / "projector"
        rng = np.random.default_rng(0)
        write_projector(log_dir, rng.random((20, 3)))
        before = snapshot(log_dir)
        filler = fill(disk)
        os.truncate(filler, filler.stat().st_size - 64 * 1024)  # room for the small files only
        with pytest.raises(StorageError) as info:
            write_projector(log_dir, rng.random((5000, 40)))  # about 4 MB of text
        one_line(info.value, "cannot write the projector run", str(log_dir),
                 "No space left on device")  # fmt: skip
        assert snapshot(log_dir) == before


def test_full_disk_leaves_no_lock_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The lock file is created (an empty file needs no space), then its owner can't be written."""
    from aekit.estimator.lock import RunLock

    with small_disk(tmp_path / "disk") as disk:
        model_dir = disk / "model"
        model_dir.mkdir()
        fill(disk)
        lock = RunLock(model_dir)
        with pytest.raises(StorageError) as info:
            lock.acquire()
        one_line(info.value, "No space left on device", str(model_dir))
        assert not lock.held and list(model_dir.iterdir()) == []
        # `aekit train` into a new dir on the full disk: one line, nothing left behind.
        new = disk / "new"
        status = main(["train", "fully_connected", "--dataset", "digits", "--model-dir",
                       str(new), "--epochs", "1"])  # fmt: skip
        err = one_error_line(capsys, status)
        assert "No space left on device" in err and str(new) in err, err
        assert not new.exists() or list(new.iterdir()) == []


@pytest.mark.parametrize("command", ["score", "evaluate", "embed"])
def test_a_read_only_model_dir_with_outputs_elsewhere(
    trained: Path, tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command's outputs go where asked; TensorBoard's events, which only the model dir
    takes, are left out with a note, instead of failing after the outputs were written."""
    model_dir = tmp_path / "model"
    shutil.copytree(trained, model_dir)
    before = snapshot(model_dir)
    out = tmp_path / "elsewhere"
    args = {
        "score": ["--output", str(out)],
        "evaluate": [],
        "embed": ["--images", "20", "--plot", "pca", "--output", str(out / "plot.png")],
    }[command]
    read_only = ReadOnly(model_dir)
    read_only.on()
    try:
        status = main([command, "--model-dir", str(model_dir), *args])
    finally:
        read_only.off()
    err = capsys.readouterr().err
    if command == "embed":  # its projector run has to go into the model dir: refused first
        assert status == 2 and "cannot write" in err and str(model_dir) in err, err
    else:
        assert status == 0, err
    if command == "score":
        assert (out / "scores.csv").is_file() and (out / "histogram.png").is_file()
    assert snapshot(model_dir) == before
