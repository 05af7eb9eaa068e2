"""Tables or images: decided by the source and the shape, said at load, and overridable.

The values' range alone never decides: a labelled table in [0, 1] or of small integers is a
table (its labels mark anomalies), and images stored as floats are images.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from aekit.cli.main import main
from aekit.cli.settings import SETTINGS
from setting_examples import EXAMPLES


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    """The exit status and stdout + stderr of one command."""
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out + err


def settings_of(model_dir: Path) -> dict[str, object]:
    saved: dict[str, object] = json.loads((model_dir / "hparams.json").read_text())
    return saved


def labelled_rows(values: np.ndarray, anomalies: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """The rows with the last `anomalies` marked 1, spread so that both splits hold some."""
    y = np.zeros(len(values), int)
    y[np.linspace(0, len(values) - 1, anomalies).astype(int)] = 1
    return values, y


TABLES: dict[str, np.ndarray] = {
    # name: rows of a table that the value range would have taken for pixels
    "unit_floats": np.random.default_rng(0).uniform(0, 1, (300, 7)),
    "small_integers": np.random.default_rng(1).integers(7, 98, (300, 9)),
    "binary_columns": np.random.default_rng(2).integers(0, 2, (300, 12)).astype(np.float32),
}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_labelled_tables_are_tables_whatever_their_range(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    x, y = labelled_rows(TABLES[name])
    np.savez(tmp_path / "t.npz", X=x, y=y)
    model_dir = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="aekit"):
        status, err = run(capsys, "train", "fully_connected", "--dataset", tmp_path / "t.npz",
                          "--epochs", "2", "--model-dir", model_dir)  # fmt: skip
    assert status == 0, err
    settings = settings_of(model_dir)
    assert settings["scaling"] == "standard" and settings["exclude_classes"] == [1]
    assert "a table" in caplog.text and "--scaling none says otherwise" in caplog.text
    status, out = run(capsys, "score", "--model-dir", model_dir, "--output", tmp_path / "s")
    assert status == 0 and "auroc=" in out, out  # the anomalies of the labels are scored


def test_a_table_of_anomalies_only_is_refused_naming_the_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x = np.random.default_rng(3).integers(7, 98, (100, 5))
    np.savez(tmp_path / "all.npz", X=x, y=np.ones(100, int))
    status, err = run(capsys, "train", "fully_connected", "--dataset", tmp_path / "all.npz",
                      "--model-dir", tmp_path / "run")  # fmt: skip
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "no normal row is left" in err and "--label-column" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("layout", "kind"),
    [
        ("float_images", "images"),  # (N, 8, 8) floats in [0, 1]
        ("flat_uint8_pixels", "flattened 8x8 pictures"),  # (N, 64) in 0..255
    ],
)
def test_images_stay_images(
    layout: str,
    kind: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    rng = np.random.default_rng(4)
    if layout == "float_images":
        x: np.ndarray = rng.uniform(0, 1, (200, 8, 8)).astype(np.float32)
    else:
        x = rng.integers(0, 256, (200, 64)).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    with caplog.at_level(logging.INFO, logger="aekit"):
        status, err = run(capsys, "train", "fully_connected", "--dataset", tmp_path / "x.npy",
                          "--epochs", "1", "--model-dir", tmp_path / "run")  # fmt: skip
    assert status == 0, err
    assert settings_of(tmp_path / "run")["scaling"] == "none"
    assert kind in caplog.text and "trained as images" in caplog.text


def test_the_flag_overrides_the_guess_both_ways(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x, y = labelled_rows(TABLES["unit_floats"])
    np.savez(tmp_path / "t.npz", X=x, y=y)
    as_images: list[str | Path] = ["--scaling", "none", "--epochs", "1", "--model-dir",
                                   tmp_path / "img"]  # fmt: skip
    status, err = run(capsys, "train", "fully_connected", "--dataset", tmp_path / "t.npz",
                      *as_images)  # fmt: skip
    assert status == 0, err
    assert settings_of(tmp_path / "img")["exclude_classes"] is None  # images: labels unused
    wide = np.random.default_rng(5).normal(size=(100, 6)) * 50
    np.save(tmp_path / "wide.npy", wide)
    status, err = run(capsys, "train", "fully_connected", "--dataset", tmp_path / "wide.npy",
                      "--scaling", "none", "--model-dir", tmp_path / "bad")  # fmt: skip
    assert status == 2 and "pixels run from" in err and "--scaling standard" in err
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    "flags",
    [[f"--{s.name.replace('_', '-')}", EXAMPLES[s.name][0]] for s in SETTINGS if s.images_only],
    ids=" ".join,
)
def test_a_setting_for_images_is_refused_on_a_table_and_leaves_no_model_dir(
    flags: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Each setting declared `images_only`, whatever it is: none is saved as if it had acted.
    x, y = labelled_rows(np.random.default_rng(6).normal(size=(200, 5)) * 10)
    np.savez(tmp_path / "t.npz", X=x, y=y)
    command: list[str | Path] = ["train", "fully_connected", "--dataset", tmp_path / "t.npz",
                                 "--epochs", "1", "--model-dir", tmp_path / "run"]  # fmt: skip
    status, err = run(capsys, *command, *flags)
    assert (
        status == 2 and f"{flags[0]} acts on images" in err and len(err.strip().splitlines()) == 1
    )
    assert not (tmp_path / "run").exists()
    status, err = run(capsys, *command)  # the same command without the flag just works
    assert status == 0, err
