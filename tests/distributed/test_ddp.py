"""Data-parallel training with real processes started by torchrun (gloo, CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aekit.data import numpy_input_fn
from aekit.estimator import checkpoint as ckpt
from launch import load_script, torchrun

JOB = Path(__file__).with_name("ddp_job.py")
pytestmark = pytest.mark.slow


def _run_job(
    model_dir: Path, steps: int, batch: int, *extra: str, restarts: int = 0
) -> subprocess.CompletedProcess[str]:
    """ddp_job.py on 2 processes."""
    return torchrun(
        f"--max-restarts={restarts}", str(JOB), str(model_dir), str(steps), str(batch), *extra
    )


def _weights(path: Path) -> dict[str, torch.Tensor]:
    network: dict[str, torch.Tensor] = ckpt.load(path)["network"]
    return network


def test_two_processes_match_one_on_the_global_batch_and_write_once(tmp_path: Path) -> None:
    job = load_script(JOB)
    run = _run_job(tmp_path / "ddp", 8, 4)
    assert run.returncode == 0, run.stderr[-2000:]
    single = job.estimator(str(tmp_path / "single"))
    x = job.images()
    single.train(numpy_input_fn(x, batch_size=8, num_epochs=None, seed=3), max_steps=8)
    ddp_weights = _weights(tmp_path / "ddp" / "ckpt-8.pt")
    for name, value in single.network.state_dict().items():
        torch.testing.assert_close(ddp_weights[name], value, rtol=1e-5, atol=1e-6)
    # Evaluation adds both processes' sums: the same figures as one process over all 37.
    expected = single.evaluate(numpy_input_fn(x[:37], batch_size=5, shuffle=False))
    got = json.loads((tmp_path / "ddp" / "eval.json").read_text())
    assert got == pytest.approx(expected, rel=1e-6)
    # One writer: one set of checkpoints and one event file per directory.
    assert sorted(p.name for p in (tmp_path / "ddp").glob("ckpt-*")) == ["ckpt-4.pt", "ckpt-8.pt"]
    for sub in ("train", "eval"):
        assert len(list((tmp_path / "ddp" / sub).glob("events.out.tfevents.*"))) == 1
    # The run goes on in one process from the two processes' checkpoint.
    resumed = job.estimator(str(tmp_path / "ddp"))
    resumed.train(numpy_input_fn(x, batch_size=8, num_epochs=None), max_steps=10)
    assert resumed.global_step == 10 and (tmp_path / "ddp" / "ckpt-10.pt").exists()


def test_fit_on_two_processes_matches_one_on_the_global_batch(tmp_path: Path) -> None:
    job = load_script(JOB)
    run = _run_job(tmp_path / "ddp", 0, 4, "--fit", "2")
    assert run.returncode == 0, run.stderr[-2000:]
    records = json.loads((tmp_path / "ddp" / "history.json").read_text())
    single = job.estimator(str(tmp_path / "single"))
    x = job.images()
    expected = single.fit(x, epochs=2, batch_size=8, validation_data=x[:37], verbose=0)
    assert [r["epoch"] for r in records] == [0, 1] and [r["step"] for r in records] == [8, 16]
    for got, want in zip(records, expected, strict=True):
        assert got["val_loss"] == pytest.approx(want["val_loss"], rel=1e-5)
    ddp_weights = _weights(tmp_path / "ddp" / "ckpt-16.pt")
    for name, value in single.network.state_dict().items():
        torch.testing.assert_close(ddp_weights[name], value, rtol=1e-5, atol=1e-6)


def test_a_killed_rank_ends_the_job_and_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    run = _run_job(tmp_path / "run", 8, 4, "--kill", "1", "7")
    assert run.returncode != 0
    assert "ddp_job.py FAILED" in run.stderr or "lost the other processes" in run.stderr
    latest = ckpt.latest_checkpoint(tmp_path / "run")
    assert latest is not None and latest.name == "ckpt-4.pt"
    assert ckpt.load(latest)["global_step"] == 4
    assert not (tmp_path / "run" / "eval.json").exists()


def test_torchrun_restarts_resume_from_the_last_checkpoint(tmp_path: Path) -> None:
    run = _run_job(tmp_path / "run", 12, 4, "--kill", "1", "6", restarts=1)
    assert run.returncode == 0, run.stderr[-2000:]
    # The first attempt started from scratch; the restarted one from ckpt-4, on both ranks.
    for rank in (0, 1):
        starts = (tmp_path / "run" / f"starts-{rank}.txt").read_text().split("\n")
        assert starts[:2] == ["0 0", "1 4"], starts
    latest = ckpt.latest_checkpoint(tmp_path / "run")
    assert latest is not None and ckpt.load(latest)["global_step"] == 12
    assert (tmp_path / "run" / "eval.json").exists()


def test_ranks_that_restore_different_checkpoints_stop_with_a_clear_error(
    tmp_path: Path,
) -> None:
    job = load_script(JOB)
    job.estimator(str(tmp_path / "run-0")).train(
        numpy_input_fn(job.images(), batch_size=8, num_epochs=None), max_steps=4
    )  # rank 0's directory has a checkpoint, rank 1's none
    run = _run_job(tmp_path / "run", 8, 4, "--own-dir")
    assert run.returncode != 0
    assert "restored different steps (0 to 4)" in run.stderr
    assert "same model_dir" in run.stderr


def test_the_command_line_under_torchrun_writes_each_file_once(tmp_path: Path) -> None:
    run_dir, images = tmp_path / "run", tmp_path / "images"
    cli = ["-m", "aekit.cli.main"]
    train = torchrun(
        *cli, "train", "fully_connected", "--dataset", "digits", "--epochs", "2",
        "--model-dir", str(run_dir), "--save-images", str(images),
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-2000:]
    assert train.stdout.count("rmse=") == 1 and train.stdout.count("model dir:") == 1
    assert train.stderr.count("epoch 1/2 - ") == 1  # an epoch's line, reported by rank 0
    # Rank 0 alone says the data and the job; the other rank logs no INFO line.
    assert train.stderr.count("data: digits (a named data set)") == 1
    assert train.stderr.count("2 processes (gloo): global batch 512 (256 per process)") == 1
    assert train.stderr.count(" parameters, ") == 1
    assert train.stderr.count("epoch 2/2 - ") == 1
    assert (run_dir / "hparams.json").is_file()
    # An epoch is ceil(1438 / (256 * 2)) = 3 steps of the two processes' global batch.
    assert [p.name for p in sorted(images.iterdir())] == [
        "reconstructions.gif", "step-0000003.png", "step-0000006.png",
    ]  # fmt: skip
    for sub in ("train", "eval"):
        assert len(list((run_dir / sub).glob("events.out.tfevents.*"))) == 1
    # A command that only writes files: rank 0 does it alone, the other rank exits.
    picture = tmp_path / "reconstruction.png"
    shown = torchrun(*cli, "reconstruct", "--model-dir", str(run_dir), "--output", str(picture))
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert shown.stdout.split() == [str(picture)] and picture.stat().st_size > 0


def test_aekit_train_starts_its_own_processes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "aekit.cli.main", "train", "fully_connected",
        "--dataset", "digits", "--epochs", "1", "--batch-size", "100",
        "--nproc-per-node", "2", "--model-dir", str(run_dir),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    train = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert train.returncode == 0, train.stderr[-2000:]
    assert train.stderr.count("2 processes (gloo): global batch 200 (100 per process)") == 1
    assert "OMP_NUM_THREADS" not in train.stderr  # no launcher banner: aekit set the threads
    assert train.stdout.count("model dir:") == 1
    # An epoch of 1,438 digits at a global batch of 200 is 8 steps, saved at its end.
    assert [p.name for p in run_dir.glob("ckpt-*.pt")] == ["ckpt-8.pt"]
