"""The one line a command logs on the data it loaded: source, counts, shape, dtype, labels."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aekit.cli.main import main


def data_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("data: ")]
    caplog.clear()
    return lines


def test_a_folder_of_pngs_says_what_it_holds_in_train_evaluate_and_score(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder, run = tmp_path / "pngs", tmp_path / "run"
    folder.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (30, 8, 8), dtype=np.uint8)
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(folder / f"{i:02d}.png")
    expected = (
        f"data: {folder} (a folder of images): 24 training and 6 test examples of shape [8, 8], "
        "uint8, no labels"
    )
    with caplog.at_level(logging.INFO, logger="aekit"):
        assert main(["train", "fully_connected", "--dataset", str(folder), "--epochs", "1",
                     "--model-dir", str(run)]) == 0  # fmt: skip
        assert data_lines(caplog) == [expected]
        assert main(["evaluate", "--model-dir", str(run)]) == 0
        assert data_lines(caplog) == [expected]
        # A refused command says nothing before its error.
        a_file = tmp_path / "file.txt"
        a_file.write_text("")
        assert main(["score", "--model-dir", str(run), "--output", str(a_file)]) == 2
        assert data_lines(caplog) == []
        other = tmp_path / "other.npz"
        np.savez(other, x=pixels[:5], y=np.array([0, 1, 0, 1, 1]))
        assert main(["score", "--model-dir", str(run), "--dataset", str(other),
                     "--output", str(tmp_path / "scores")]) == 0  # fmt: skip
        assert data_lines(caplog) == [
            expected,  # the run's data, whose training split sets the threshold
            f"data: {other} (a .npz file): 5 scored examples of shape [8, 8], uint8, "
            "2 classes (labels 0, 1)",
        ]


def test_a_named_data_set_and_a_table_say_so_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="aekit"):
        assert main(["train", "fully_connected", "--dataset", "digits", "--epochs", "1",
                     "--exclude-classes", "9",
                     "--model-dir", str(tmp_path / "d")]) == 0  # fmt: skip
        [line] = data_lines(caplog)
    assert line.startswith("data: digits (a named data set): 1,")
    assert line.endswith(
        "examples of shape [8, 8], uint8, 9 classes (labels 0..8), class 9 left out"
    )
    rows = np.random.default_rng(1).normal(size=(200, 7))
    labels = (np.arange(200) % 10 == 0).astype(int)
    np.savez(tmp_path / "t.npz", X=rows, y=labels)
    with (tmp_path / "t.csv").open("w") as f:  # the same rows as a CSV with a header
        f.write(",".join([f"f{i}" for i in range(7)] + ["label"]) + "\n")
        lines = zip(rows.tolist(), labels.tolist(), strict=True)
        f.writelines(",".join(map(repr, [*row, label])) + "\n" for row, label in lines)
    described = {}
    for source in ("t.npz", "t.csv"):
        run = tmp_path / f"run-{source}"
        with caplog.at_level(logging.INFO, logger="aekit"):
            assert main(["train", "fully_connected", "--dataset", str(tmp_path / source),
                         "--epochs", "1", "--model-dir", str(run)]) == 0  # fmt: skip
            [trained] = data_lines(caplog)
            for command in (["evaluate"], ["score", "--output", str(run / "s")]):
                assert main([command[0], "--model-dir", str(run), *command[1:]]) == 0
                [line] = data_lines(caplog)
                assert trained.startswith(line)  # one line per source, whatever the command
        described[source] = trained.replace(str(tmp_path / source), "T").replace(".csv", ".npz")
    assert described["t.csv"] == described["t.npz"]  # the same rows: the same line
    assert described["t.npz"] == (
        "data: T (a .npz file): 140 training and 40 test examples of shape [7], float64, 1 "
        "class (labels 0), class 1 left out; rows of 7 features, a table: trained as a table "
        "(--scaling none says otherwise); labels 1 mark anomalies"
    )
