"""Bad input, round four: odd paths, runs refused midway, settings clamped or ignored.

Each case is one `aekit: error:` line and status 2 (or, for a clamped setting, one line
saying so), with the model dir as it was found.
"""

from __future__ import annotations

import csv
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aekit.cli.main import main
from refusals import fails


def folder(root: Path, n: int = 20) -> Path:
    for label in range(2):
        (root / f"class{label}").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = np.random.default_rng(10 * label + i).integers(0, 256, (8, 8), np.uint8)
            Image.fromarray(pixels).save(root / f"class{label}" / f"{i:03d}.png")
    return root


@pytest.mark.parametrize("stream", ["always", "never"])
def test_a_link_that_loops_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stream: str
) -> None:
    images = folder(tmp_path / "images")
    loop = images / "class0" / "loop.png"
    os.symlink(loop.name, loop)  # points at itself
    line = fails(capsys, "train", "fully_connected", "--dataset", images, "--stream", stream,
                 "--model-dir", tmp_path / "run")  # fmt: skip
    assert str(loop) in line and "symbolic links" in line
    assert not (tmp_path / "run").exists()


def test_a_run_refused_midway_leaves_its_model_dir_as_it_found_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = folder(tmp_path / "images")
    damaged = images / "class1" / "012.png"  # its header reads; its pixels are cut off
    damaged.write_bytes(damaged.read_bytes()[:60])
    for model_dir, there in ((tmp_path / "new", None), (tmp_path / "kept", "notes.txt")):
        if there:
            model_dir.mkdir()
            (model_dir / there).write_text("mine")
        line = fails(capsys, "train", "fully_connected", "--dataset", images, "--stream",
                     "always", "--epochs", "1", "--model-dir", model_dir)  # fmt: skip
        assert str(damaged) in line
        if there:
            assert [p.name for p in model_dir.iterdir()] == [there]
        else:
            assert not model_dir.exists()
    # The dir is not claimed: another model may train there once the image is replaced.
    damaged.unlink()
    assert main(["train", "convolutional", "--dataset", str(images), "--epochs", "1",
                 "--model-dir", str(tmp_path / "new")]) == 0  # fmt: skip


@pytest.mark.slow
def test_a_job_of_two_processes_says_a_bad_input_once(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "aekit.cli.main",
            "train",
            "fully_connected",
            "--dataset",
            str(tmp_path / "missing.csv"),
            "--nproc-per-node",
            "2",
            "--model-dir",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and lines == [
        f"aekit: error: {tmp_path / 'missing.csv'}: no such file or folder; check the path"
    ], done.stderr


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("table")
    rows = np.random.default_rng(0).normal(size=(300, 5))
    with (tmp / "t.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow([f"f{i}" for i in range(5)])
        out.writerows(rows.tolist())
    assert main(["train", "fully_connected", "--dataset", str(tmp / "t.csv"), "--epochs", "2",
                 "--model-dir", str(tmp / "run")]) == 0  # fmt: skip
    return tmp / "run"


def test_settings_clamped_say_so_and_settings_out_of_reach_are_refused(
    table_run: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="aekit"):
        assert main(["score", "--model-dir", str(table_run), "--neighbors", "1000000"]) == 0
    said = [r.getMessage() for r in caplog.records if "neighbors=1000000" in r.getMessage()]
    assert len(said) == 1 and "nearest are used" in said[0]
    line = fails(capsys, "score", "--model-dir", table_run, "--code-weight", "1e308")
    assert "--code-weight must be at most" in line


@pytest.mark.parametrize("suffix", [".feather", ".parquet"])
def test_random_bytes_named_as_a_table_are_one_line_in_train_and_score(
    table_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    junk = tmp_path / f"junk{suffix}"
    junk.write_bytes(np.random.default_rng(1).bytes(4096))
    line = fails(capsys, "train", "fully_connected", "--dataset", junk, "--model-dir",
                 tmp_path / "run")  # fmt: skip
    assert str(junk) in line and "write it again" in line
    assert not (tmp_path / "run").exists()
    line = fails(capsys, "score", "--model-dir", table_run, "--dataset", junk)
    assert str(junk) in line and "write it again" in line


def test_embed_output_without_a_plot_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "fully_connected", "--dataset", "digits", "--epochs", "1",
                 "--hidden-units", "8,2", "--model-dir", str(tmp_path / "run")]) == 0  # fmt: skip
    capsys.readouterr()
    line = fails(capsys, "embed", "--model-dir", tmp_path / "run", "--output", tmp_path / "e.png")
    assert "--output names the scatter PNG that --plot draws" in line
    assert not (tmp_path / "e.png").exists()
    table = tmp_path / "floats.npz"  # rows of numbers, not pixels, given to an image run
    np.savez(table, x_train=np.linspace(-3, 3, 640).reshape(10, 64),
             x_test=np.linspace(-3, 3, 640).reshape(10, 64))  # fmt: skip
    line = fails(capsys, "evaluate", "--model-dir", tmp_path / "run", "--dataset", table)
    assert "this run was trained on images" in line and "not pixels" in line


def test_the_images_shown_come_from_every_class_of_a_class_ordered_folder(
    tmp_path: Path,
) -> None:
    from aekit.cli.data import shown

    x = np.repeat(np.arange(10, dtype=np.uint8), 50)[:, None, None] * np.ones((1, 4, 4), np.uint8)
    labels = np.repeat(np.arange(10), 50)  # 500 images listed class by class
    picked, their_labels = shown(x, labels, 10)
    assert len(set(their_labels.tolist())) >= 8 and (picked[:, 0, 0] == their_labels).all()
    again, _ = shown(x, labels, 10)
    assert np.array_equal(again, picked)  # the same images every time, every epoch
