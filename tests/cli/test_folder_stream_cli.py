"""`aekit train` on a streamed folder: the loaded run's batches, resumed at the same example."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aekit.cli.main import main
from aekit.data.arrays import MAX_BYTES_ENV
from aekit.estimator import checkpoint as ckpt

FAST = ["--batch-size", "8", "--hidden-units", "16,4", "--device", "cpu"]


def make_folder(root: Path, n: int, side: int = 8, classes: int = 0, mode: str = "L") -> Path:
    """`n` random images, flat or in `classes` class folders."""
    rng = np.random.default_rng(0)
    shape = (side, side, 3) if mode == "RGB" else (side, side)
    for i in range(n):
        folder = root / f"class{i % classes}" if classes else root
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(
            folder / f"{i:03d}.png"
        )
    return root


def train(run: Path, *args: str) -> dict[str, torch.Tensor]:
    """`aekit train ARGS --model-dir RUN`; the network's weights of its last checkpoint."""
    assert main(["train", *args, "--model-dir", str(run)]) == 0
    found = ckpt.load_latest(run, "cpu")
    assert found is not None
    network: dict[str, torch.Tensor] = found[1]["network"]
    return network


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def data_line(caplog: pytest.LogCaptureFixture) -> str:
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("data: ")]
    caplog.clear()
    assert len(lines) == 1, lines
    return lines[0]


def test_streamed_and_loaded_runs_train_the_same_weights(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_folder(tmp_path / "images", 40)
    args = ["fully_connected", "--dataset", str(folder), "--epochs", "2", *FAST]
    with caplog.at_level(logging.INFO, logger="aekit"):
        streamed = train(tmp_path / "streamed", *args, "--stream", "always")
        said = data_line(caplog)
        loaded = train(tmp_path / "loaded", *args, "--stream", "never")
        assert data_line(caplog).replace(" of images", " of images, streamed") == said
    assert said == (
        f"data: {folder} (a folder of images, streamed): 32 training and 8 test examples of "
        "shape [8, 8], uint8, no labels"
    )
    assert_same_weights(streamed, loaded)
    capsys.readouterr()
    # evaluate streams the whole test split: the loaded run's figures.
    for run in ("streamed", "loaded"):
        assert main(["evaluate", "--model-dir", str(tmp_path / run)]) == 0
    figures = capsys.readouterr().out.splitlines()
    assert len(figures) == 2 and figures[0] == figures[1]


def test_a_resumed_streamed_run_goes_on_at_the_same_example(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "images", 40)
    args = ["fully_connected", "--dataset", str(folder), *FAST, "--stream", "always"]
    train(tmp_path / "resumed", *args, "--epochs", "1")
    resumed = train(tmp_path / "resumed", "--epochs", "2")  # its saved settings, one more epoch
    straight = train(tmp_path / "straight", *args, "--epochs", "2")
    assert_same_weights(resumed, straight)


def test_left_out_classes_and_pictures_match_the_loaded_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Colour files: the command line reads folders grey, streamed or loaded alike.
    folder = make_folder(tmp_path / "images", 45, classes=3, mode="RGB")
    args = ["fully_connected", "--dataset", str(folder), "--epochs", "1", *FAST]
    args += ["--exclude-classes", "2"]
    weights, pictures = [], []
    with caplog.at_level(logging.INFO, logger="aekit"):
        for stream in ("always", "never"):
            frames = tmp_path / f"frames-{stream}"
            run = tmp_path / stream
            weights.append(train(run, *args, "--stream", stream, "--save-images", str(frames)))
            said = data_line(caplog)
            pictures.append(sorted(p.read_bytes() for p in frames.glob("*.png")))
            # A few test images for the grid and the projector, decoded from the listing.
            assert main(["reconstruct", "--model-dir", str(run), "--images", "3"]) == 0
            assert main(["embed", "--model-dir", str(run), "--images", "5"]) == 0
            pictures[-1].append((run / "reconstruction.png").read_bytes())
            caplog.clear()
    assert "24 training and 6 test examples of shape [8, 8], uint8, 2 classes" in said
    assert_same_weights(*weights)
    assert pictures[0] == pictures[1] and len(pictures[0]) == 2


def test_a_classifier_streams_its_labels(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "images", 30, classes=2)
    args = ["classifier", "--dataset", str(folder), "--epochs", "1", "--n-classes", "2"]
    args += ["--batch-size", "8", "--num-filters", "2,2", "--dense-units", "4", "--device", "cpu"]
    streamed = train(tmp_path / "streamed", *args, "--stream", "always")
    assert_same_weights(streamed, train(tmp_path / "loaded", *args, "--stream", "never"))


def test_auto_streams_a_folder_over_the_memory_limit(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = make_folder(tmp_path / "images", 20)
    run = str(tmp_path / "run")
    args = ["fully_connected", "--dataset", str(folder), "--epochs", "1", *FAST]
    with caplog.at_level(logging.INFO, logger="aekit"):
        train(tmp_path / "small", *args)  # auto, under the limit: loaded
        assert "(a folder of images):" in data_line(caplog)
        # 20 images of 64 bytes: over a limit of 1,000 bytes, loading it is refused...
        monkeypatch.setenv(MAX_BYTES_ENV, "1000")
        assert main(["train", *args, "--stream", "never", "--model-dir", run]) == 2
        assert "over the limit of 1,000 bytes" in capsys.readouterr().err
        assert not Path(run).exists()
        # ...and auto streams it.
        train(Path(run), *args)
        assert "(a folder of images, streamed):" in data_line(caplog)
        assert main(["evaluate", "--model-dir", run]) == 0
        assert "streamed" in data_line(caplog)
        # score fits its threshold on the training split in memory: refused in one line.
        capsys.readouterr()
        assert main(["score", "--model-dir", run]) == 2
        err = capsys.readouterr().err
        assert err.startswith("aekit: error: ") and err.count("\n") == 1


def test_binarized_evaluations_score_the_same_draw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_folder(tmp_path / "images", 20)
    args = ["fully_connected", "--dataset", str(folder), "--epochs", "1", *FAST]
    run = tmp_path / "run"
    train(run, *args, "--stream", "always", "--binarize", "dynamic")
    capsys.readouterr()
    for _ in range(2):
        assert main(["evaluate", "--model-dir", str(run)]) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert first == second


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "digits", "--stream", "always"],
         "--stream always streams a folder of images, and digits is not one"),
        (["--stream", "always", "--binarize", "fixed"],
         "--binarize fixed draws the whole training set once"),
        (["--stream", "always", "--scaling", "standard"],
         "is streamed, as images; --scaling standard reads the data as a table"),
        (["--stream", "sometimes"], "--stream must be one of auto, always, never, got 'sometimes'"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    folder = make_folder(tmp_path / "images", 10)
    run = tmp_path / "run"
    argv = ["train", "fully_connected", "--dataset", str(folder), *FAST, "--model-dir", str(run)]
    assert main([*argv, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aekit: error: ") and err.count("\n") == 1 and message in err, err
    assert not run.exists()


def test_an_unreadable_image_is_named_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_folder(tmp_path / "images", 10)
    (folder / "005.png").write_bytes(b"not a png")
    argv = ["train", "fully_connected", "--dataset", str(folder), "--stream", "always", *FAST]
    assert main([*argv, "--model-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "005.png: cannot read this image" in err
