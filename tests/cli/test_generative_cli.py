"""`aekit train variational`, `aekit sample` and `aekit score`, run in-process on the 8x8 digits."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from aekit.cli.main import main

TEST_DIGITS = 359  # 1,797 digits, every fifth one in the test split


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def fails_cleanly(result: tuple[int, str, str], *phrases: str) -> None:
    status, _, err = result
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aekit: error:"), err
    for phrase in phrases:
        assert phrase in lines[0]


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("cli") / "vae"
    status = main(
        ["train", "variational", "--dataset", "digits", "--latent-dim", "2", "--hidden-units",
         "32,16", "--epochs", "3", "--batch-size", "64", "--learning-rate", "0.003",
         "--exclude-classes", "7", "--model-dir", str(model_dir),
         "--save-images", str(model_dir.parent / "frames")]
    )  # fmt: skip
    assert status == 0
    return model_dir


def test_train_sample_and_manifold(vae_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = json.loads((vae_run / "hparams.json").read_text())
    assert settings["model"] == "variational" and settings["latent_dim"] == 2
    assert settings["exclude_classes"] == [7]
    # One reconstruction picture per epoch, as for the other autoencoders.
    assert len(list((vae_run.parent / "frames").glob("step-*.png"))) == 3
    status, out, _ = run(capsys, "sample", "--model-dir", vae_run, "--images", "10",
                         "--manifold-size", "4")  # fmt: skip
    assert status == 0
    samples, manifold = (Path(p) for p in out.split())
    with Image.open(samples) as grid:
        # 10 images in rows of 4 (as square as possible), each 8x8 enlarged 4x with 2 px gaps.
        assert grid.size == (4 * (4 * 8 + 2 * 4) + 2 * 4, 3 * (4 * 8 + 2 * 4) + 2 * 4)
    with Image.open(manifold) as plot:  # a matplotlib figure: the grid with its axes
        assert manifold.name == "manifold.png" and min(plot.size) >= 200
    events = EventAccumulator(str(vae_run / "eval"), size_guidance={"images": 0})
    events.Reload()
    assert "vae/manifold" in events.Tags()["images"]  # and the same figure in TensorBoard


def test_score_writes_csv_histogram_and_auroc(
    vae_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = vae_run.parent / "scores"
    status, out, _ = run(capsys, "score", "--model-dir", vae_run, "--percentile", "90",
                         "--output", out_dir)  # fmt: skip
    assert status == 0
    summary = out.splitlines()[0]
    assert "percentile 90" in summary and "auroc=" in summary
    with (out_dir / "scores.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == TEST_DIGITS  # the held-out class is scored too
    threshold = float(summary.split("threshold=")[1].split()[0])
    assert all((float(r["score"]) > threshold) == (r["anomaly"] == "1") for r in rows)
    sevens = [float(r["score"]) for r in rows if r["label"] == "7"]
    others = [float(r["score"]) for r in rows if r["label"] != "7"]
    assert sevens and np.median(sevens) > np.median(others)
    with Image.open(out_dir / "histogram.png") as picture:
        assert picture.size == (640, 400)


def test_errors_are_one_line(vae_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tmp = vae_run.parent
    fc = tmp / "fc"
    assert main(["train", "fully_connected", "--dataset", "digits", "--epochs", "1",
                 "--hidden-units", "8", "--model-dir", str(fc)]) == 0  # fmt: skip
    capsys.readouterr()
    fails_cleanly(run(capsys, "sample", "--model-dir", fc), "cannot generate", "variational")
    fails_cleanly(run(capsys, "score", "--model-dir", fc, "--percentile", "100"), "percentile")
    fails_cleanly(run(capsys, "sample", "--model-dir", vae_run, "--images", "0"), "--images")
    flat = tmp / "flat.npz"
    np.savez(flat, x=np.zeros((10, 5), dtype=np.uint8))
    fails_cleanly(
        run(capsys, "train", "variational", "--encoder", "convolutional", "--dataset", flat,
            "--model-dir", tmp / "conv"),
        "needs images",
    )  # fmt: skip
    fails_cleanly(
        run(capsys, "train", "variational", "--dataset", flat, "--exclude-classes", "1",
            "--model-dir", tmp / "nolabels"),
        "needs labels",
    )  # fmt: skip
    fails_cleanly(run(capsys, "score", "--model-dir", vae_run, "--dataset", flat), "shaped like")
    assert not (tmp / "conv").exists() and not (tmp / "nolabels").exists()
