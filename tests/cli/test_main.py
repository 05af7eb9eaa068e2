"""The `aekit` command on tiny data: the real executable in subprocesses where its own output
matters (training, export, a reader that goes away), the rest in this process."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aekit.cli.main import main
from aekit.estimator import checkpoint as ckpt

EXE = [
    shutil.which("aekit") or sys.executable,
    *([] if shutil.which("aekit") else ["-m", "aekit.cli.main"]),
]


def aekit(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The real executable, which must succeed."""
    run = subprocess.run(
        [*EXE, *map(str, args)], capture_output=True, text=True, check=False, timeout=300
    )
    assert run.returncode == 0, run.stderr
    return run


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("run") / "fc"
    images = model_dir.parent / "frames"
    aekit(
        "train", "fully_connected", "--dataset", "digits", "--epochs", "2", "--batch_size", "128",
        "--hidden-units", "32,8", "--noise-factor", "0.3", "--model-dir", model_dir,
        "--save-images", images,
    )  # fmt: skip
    return model_dir


@pytest.mark.slow
def test_train_writes_settings_checkpoints_and_pictures(trained: Path) -> None:
    settings = json.loads((trained / "hparams.json").read_text())
    assert settings["model"] == "fully_connected" and settings["hidden_units"] == [32, 8]
    assert settings["example_shape"] == [8, 8] and settings["noise_factor"] == 0.3
    steps_per_epoch = -(-1437 // 128)  # 1,797 digits, every fifth one held out
    latest = ckpt.latest_checkpoint(trained)
    assert latest is not None and ckpt.step_of(latest) == 2 * steps_per_epoch
    frames = sorted((trained.parent / "frames").glob("step-*.png"))
    assert len(frames) == 2
    with Image.open(frames[0]) as first:
        width, height = first.size
        assert height > width / 10  # three rows: inputs, noisy inputs, reconstructions
    with Image.open(trained.parent / "frames" / "reconstructions.gif") as gif:
        assert getattr(gif, "n_frames", 1) == 2 and gif.size == (width, height)


@pytest.mark.slow
def test_resume_and_contradicting_flags(
    trained: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # In this process: the executable's own output is test_bad_input's and this file's others.
    before = (trained / "hparams.json").read_text()
    refused = [
        (["--hidden-units", "64"], ("hidden_units", "new --model-dir")),
        (["convolutional"], ("holds a fully_connected model",)),
    ]
    for flags, phrases in refused:
        assert main(["train", *flags, "--model-dir", str(trained)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("aekit: error:") and len(err.splitlines()) == 1, err
        assert all(phrase in err for phrase in phrases), err
    assert (trained / "hparams.json").read_text() == before
    with caplog.at_level(logging.INFO, logger="aekit"):  # its 2 epochs are done: how to go on
        assert main(["train", "--model-dir", str(trained)]) == 0
    assert "nothing to train" in caplog.text and "raise --epochs" in caplog.text
    assert main(["train", "--model-dir", str(trained), "--epochs", "3"]) == 0
    latest = ckpt.latest_checkpoint(trained)
    assert latest is not None and ckpt.step_of(latest) == 3 * 12


@pytest.mark.slow
def test_evaluate_reconstruct_embed(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--model-dir", str(trained)]) == 0
    metrics = capsys.readouterr().out
    assert "rmse=" in metrics and "noisy_input_rmse=" in metrics
    out = trained / "grid.png"
    assert (
        main(["reconstruct", "--model-dir", str(trained), "--images", "7", "--output", str(out)])
        == 0
    )
    with Image.open(out) as grid:
        assert grid.size[0] > 7 * 8 and grid.size[1] > 3 * 8
    capsys.readouterr()
    assert main(["embed", "--model-dir", str(trained), "--images", "40", "--plot", "pca"]) == 0
    printed = capsys.readouterr().out.split()
    projector, plot = Path(printed[0]), Path(printed[1])
    rows = (projector / "tensors.tsv").read_text().strip().splitlines()
    assert len(rows) == 40 and len(rows[0].split("\t")) == 8
    labels = (projector / "metadata.tsv").read_text().split()
    assert len(labels) == 40 and set(labels) <= {str(d) for d in range(10)}
    with Image.open(plot) as picture:
        assert picture.size[0] > 100


@pytest.mark.slow
def test_export_runs_in_onnxruntime(trained: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    run = aekit("export", "--model-dir", trained, "--output", trained / "out")
    files = run.stdout.split()
    names = {Path(f).name for f in files}
    assert len(files) == 6  # the files alone on stdout
    assert {"encoder.pt", "decoder.pt", "autoencoder.pt"} <= names
    assert {"encoder.onnx", "decoder.onnx", "autoencoder.onnx"} <= names
    # A few lines of its own on stderr, none of the ONNX exporter's chatter.
    assert "onnx_ir" not in run.stderr and "rewrite" not in run.stderr, run.stderr
    assert len(run.stderr.splitlines()) < 10, run.stderr
    session = ort.InferenceSession(
        str(trained / "out" / "encoder.onnx"), providers=["CPUExecutionProvider"]
    )
    x = np.random.default_rng(0).random((3, 64), dtype=np.float32)
    (code,) = session.run(None, {session.get_inputs()[0].name: x})
    assert code.shape == (3, 8)


def test_errors_are_one_line_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # In this process: six interpreters took most of a minute. The real executable's one line
    # is tested in test_bad_input.py (test_the_real_executable_prints_only_the_error_line).
    def refused(*args: str | Path, phrase: str = "") -> None:
        assert main([str(a) for a in args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("aekit: error:") and len(err.splitlines()) == 1, err
        assert phrase in err, err

    refused("train", "nope", "--model-dir", tmp_path / "a", phrase="unknown model 'nope'")
    refused("train", "fully_connected", "--dataset", "mnist", "--data-dir", tmp_path / "missing",
            "--model-dir", tmp_path / "b")  # fmt: skip
    flat = tmp_path / "flat.npz"
    np.savez(flat, x=np.zeros((10, 5), dtype=np.uint8))
    refused("train", "convolutional", "--dataset", flat, "--model-dir", tmp_path / "c",
            phrase="needs images")  # fmt: skip
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = [unclosed\n")
    refused("train", "fully_connected", "--config", bad, "--model-dir", tmp_path / "d",
            phrase="cannot be parsed")  # fmt: skip
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("epochs: 1\nnum_layers: 3\n")
    refused("train", "fully_connected", "--config", unknown, "--model-dir", tmp_path / "e",
            phrase="num_layers is not a setting")  # fmt: skip
    refused("evaluate", "--model-dir", tmp_path / "none", phrase="holds no aekit run")
    assert not any((tmp_path / name).exists() for name in "abcde")


@pytest.mark.slow
def test_a_reader_that_goes_away_ends_the_command_without_a_traceback(trained: Path) -> None:
    # `aekit score ... | head -0`: the pipe's reader is gone before aekit writes a line.
    process = subprocess.Popen(
        [*EXE, "score", "--model-dir", str(trained), "--output", str(trained.parent / "scores")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    process.stdout.close()
    _, err = process.communicate(timeout=300)
    assert process.returncode == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
