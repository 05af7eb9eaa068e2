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
