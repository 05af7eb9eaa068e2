"""`aekit train --nproc-per-node N`: the flag taken out, the job started, its status passed on.

These tests stand in for torch's launcher; tests/distributed/test_ddp.py starts a real job.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from torch.distributed import run
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

from aekit.cli import launch
from aekit.cli.main import main

TRAIN = ["train", "fully_connected", "--dataset", "digits", "--epochs", "1"]


@pytest.mark.parametrize(
    "flag",
    [
        ["--nproc-per-node", "2"],
        ["--nproc-per-node=2"],
        ["--nproc_per_node", "2"],
        ["--nproc-p", "2"],  # an abbreviation argparse accepts
    ],
)
def test_the_flag_and_its_value_are_taken_out_however_spelt(flag: list[str]) -> None:
    argv = ["-v", "train", "fully_connected", *flag, "--learning-rate", "-1e-3", "--seed=3"]
    assert launch.without_the_flag(argv) == [
        "-v", "train", "fully_connected", "--learning-rate", "-1e-3", "--seed=3",
    ]  # fmt: skip


class Launcher:
    """torch.distributed.run.main, recording its arguments and the threads it would give."""

    def __init__(self, failure: ProcessFailure | None = None) -> None:
        self.failure = failure
        self.calls: list[tuple[list[str], str | None]] = []

    def __call__(self, args: list[str]) -> None:
        self.calls.append((args, os.environ.get("OMP_NUM_THREADS")))
        if self.failure is not None:
            raise ChildFailedError("aekit.cli.main", {self.failure.local_rank: self.failure})


@pytest.fixture
def launcher(monkeypatch: pytest.MonkeyPatch) -> Launcher:
    if launch.CORES < 2:  # --nproc-per-node 2 is refused on one core
        pytest.skip("needs two cores")
    started = Launcher()
    monkeypatch.setattr(run, "main", started)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(launch, "CORES", 4)
    return started


def test_the_same_command_runs_under_torchs_launcher(tmp_path: Path, launcher: Launcher) -> None:
    assert main([*TRAIN, "--nproc-per-node", "2", "--model-dir", str(tmp_path / "r")]) == 0
    args, threads = launcher.calls[0]
    assert args == [
        "--standalone", "--nproc-per-node", "2", "-m", "aekit.cli.main",
        *TRAIN, "--model-dir", str(tmp_path / "r"),
    ]  # fmt: skip
    assert threads == "2"  # 4 cores shared by 2 processes
    assert "OMP_NUM_THREADS" not in os.environ  # restored after the job
    assert not (tmp_path / "r").exists()  # the processes write it, not this one


@pytest.mark.parametrize(
    ("exitcode", "status", "said"),
    [
        (2, 2, None),  # aekit's own error: the process printed it
        (1, 1, "rank 1 of 2 ended with exit status 1"),
        (-9, 137, "rank 1 of 2 ended with signal SIGKILL"),
    ],
)
def test_a_failed_job_passes_on_its_status_in_one_line(
    exitcode: int,
    status: int,
    said: str | None,
    launcher: Launcher,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    launcher.failure = ProcessFailure(1, 4242, exitcode, str(tmp_path / "no-error-file"))
    assert main([*TRAIN, "--nproc-per-node", "2", "--model-dir", str(tmp_path / "r")]) == status
    err = capsys.readouterr().err
    if said is None:
        assert err == ""
    else:
        assert len(err.splitlines()) == 1 and err.startswith(f"aekit: error: {said}"), err
        assert "ChildFailedError" not in err


@pytest.mark.parametrize("count", ["0", "-1", "two", "1.5", "100000"])
def test_a_bad_count_is_one_line(
    count: str, launcher: Launcher, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*TRAIN, "--nproc-per-node", count]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--nproc-per-node" in err, err
    assert not launcher.calls


def test_inside_a_torchrun_job_the_flag_is_refused(
    monkeypatch: pytest.MonkeyPatch,
    launcher: Launcher,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job")
    for count in ("1", "2"):
        assert main([*TRAIN, "--nproc-per-node", count, "--model-dir", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and "already one of a torchrun job" in err, err
    assert not launcher.calls and not (tmp_path / "r").exists()


def test_a_bad_setting_is_refused_once_before_any_process_starts(
    launcher: Launcher, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*TRAIN, "--nproc-per-node", "2", "--preset", "no_such_preset"]) == 2
    assert "unknown preset" in capsys.readouterr().err
    assert not launcher.calls


def test_one_process_trains_here(tmp_path: Path, launcher: Launcher) -> None:
    run_dir = tmp_path / "r"
    assert main([*TRAIN, "--nproc-per-node", "1", "--model-dir", str(run_dir)]) == 0
    assert not launcher.calls and (run_dir / "hparams.json").is_file()
    assert list(run_dir.glob("ckpt-*.pt"))


def test_the_help_names_the_forms_that_work_under_torchrun(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
    assert "torchrun --no-python aekit train" in text
    assert "torchrun -m aekit.cli.main train" in text
    # --log-every says what its default does.
    assert "every 100 steps, or once an epoch when an epoch has fewer" in text
