"""The `aekit` command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aekit.cli.main import main


def test_demo_trains_evaluates_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--model-dir", str(tmp_path), "--steps", "40"]) == 0
    out = capsys.readouterr().out
    assert "global_step=40" in out and "rmse=" in out
    assert (tmp_path / "ckpt-40.pt").is_file() and (tmp_path / "best" / "best.json").is_file()
    assert main(["demo", "--model_dir", str(tmp_path), "--steps", "60"]) == 0
    assert "global_step=60" in capsys.readouterr().out


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "ckpt-5.pt").write_text("not a checkpoint")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "aekit.cli.main",
            "demo",
            "--model-dir",
            str(tmp_path),
            "--steps",
            "3",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    # The only checkpoint is unreadable: training starts fresh and says so on one line.
    assert run.returncode == 0, run.stderr
    assert "skipping unreadable checkpoint" in run.stderr
    assert (tmp_path / "ckpt-5.pt").read_text() == "not a checkpoint"


def test_demo_with_bad_steps_fails_cleanly(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "aekit.cli.main",
            "demo",
            "--model-dir",
            str(tmp_path),
            "--steps",
            "0",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2
    assert run.stderr.startswith("aekit: error:") and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
