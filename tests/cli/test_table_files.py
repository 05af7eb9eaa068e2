"""`aekit train` and `aekit score` on Parquet and Feather tables: the same model as from CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.feather as feather  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from aekit.cli.main import main
from aekit.data import load_dataset

FEATURES = 12
TRAIN = ["--epochs", "3", "--batch-size", "64", "--seed", "7"]


def table(n_normal: int = 300, n_anomalies: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Normal rows near a plane of 12 features in very different units; anomalies off it.

    The values are float32 numbers (held as float64), so a CSV file holds them exactly.
    """
    rng = np.random.default_rng(0)
    units = np.logspace(-2, 3, FEATURES)
    mixing = rng.normal(size=(2, FEATURES))
    normal = rng.normal(size=(n_normal, 2)) @ mixing + 0.05 * rng.normal(size=(n_normal, FEATURES))
    odd = rng.normal(scale=2.0, size=(n_anomalies, FEATURES))
    x = (np.concatenate([normal, odd]) * units + 5 * units).astype(np.float32)
    y = np.r_[np.zeros(n_normal, int), np.ones(n_anomalies, int)]
    order = rng.permutation(len(x))
    return x[order].astype(np.float64), y[order]


def write(path: Path, x: np.ndarray, y: np.ndarray, label: str = "is_anomaly") -> Path:
    """The rows and labels as a CSV, Parquet or Feather file, by `path`'s ending."""
    names = [f"feature_{i}" for i in range(x.shape[1])]
    if path.suffix == ".csv":
        with path.open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow([*names, label])
            out.writerows([*map(float, row), int(v)] for row, v in zip(x, y, strict=True))
        return path
    data = pa.table({**{n: x[:, i] for i, n in enumerate(names)}, label: y})
    if path.suffix == ".parquet":
        pq.write_table(data, path, row_group_size=100)
    else:
        feather.write_feather(data, path, chunksize=100)
    return path


def scores(capsys: pytest.CaptureFixture[str], model_dir: Path, data: Path) -> np.ndarray:
    out_dir = model_dir.parent / f"scores-{model_dir.name}-{data.suffix[1:]}"
    status = main(["score", "--model-dir", str(model_dir), "--dataset", str(data),
                   "--output", str(out_dir)])  # fmt: skip
    out, _ = capsys.readouterr()
    assert status == 0, out
    assert float(out.split("auroc=")[1].split()[0]) > 0.9, out
    with (out_dir / "scores.csv").open() as f:
        return np.array([float(r["score"]) for r in csv.DictReader(f)])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("tables")
    x, y = table()
    return {kind: write(tmp / f"table.{kind}", x, y) for kind in ("csv", "parquet", "feather")}


def train(data: Path, model_dir: Path, *extra: str) -> dict[str, object]:
    assert main(["train", "fully_connected", "--dataset", str(data), *TRAIN, *extra,
                 "--model-dir", str(model_dir)]) == 0  # fmt: skip
    settings: dict[str, object] = json.loads((model_dir / "hparams.json").read_text())
    return settings


def test_parquet_and_feather_train_and_score_as_the_same_csv(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root = files["csv"].parent
    settings = {
        kind: train(files[kind], root / kind, "--label-column", "is_anomaly")
        for kind in ("csv", "parquet")
    }
    assert settings["csv"] == {**settings["parquet"], "dataset": str(files["csv"])}
    assert settings["parquet"]["scaling"] == "standard"
    assert settings["parquet"]["exclude_classes"] == [1]
    # The CSV run's model scoring the rows read from Feather, the Parquet run's from Parquet.
    from_feather = scores(capsys, root / "csv", files["feather"])
    assert len(from_feather) == 330  # every row of the file, anomalies included
    np.testing.assert_allclose(scores(capsys, root / "parquet", files["parquet"]), from_feather,
                               rtol=1e-6)  # fmt: skip
    capsys.readouterr()


def test_the_label_column_by_default_name_and_by_index(
    files: dict[str, Path], tmp_path: Path
) -> None:
    x, y = table()
    labelled = write(tmp_path / "labelled.feather", x, y, label="label")
    assert train(labelled, tmp_path / "named", "--epochs", "1")["exclude_classes"] == [1]
    by_index = train(files["parquet"], tmp_path / "index", "--epochs", "1", "--label-column", "12")
    assert by_index["exclude_classes"] == [1] and by_index["hidden_units"] == [24, 7]


def test_integer_pixels_load_as_uint8_split_as_csv(tmp_path: Path) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (20, 6), dtype=np.int64)
    labels = np.arange(20) % 2
    (x_train, y_train), (x_test, y_test) = load_dataset(
        write(tmp_path / "p.parquet", pixels.astype(np.float64), labels)
    )
    assert np.asarray(x_train).dtype == np.float64  # float columns stay numbers
    data = pa.table({**{f"p{i}": pixels[:, i] for i in range(6)}, "label": labels})
    pq.write_table(data, tmp_path / "pixels.parquet")
    (x_train, y_train), (x_test, y_test) = load_dataset(tmp_path / "pixels.parquet")
    assert np.asarray(x_train).dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(x_test), pixels[4::5])
    assert y_test is not None and list(y_test) == list(labels[4::5]) and len(x_train) == 16
    write(tmp_path / "pixels.csv", pixels.astype(np.float64), labels, label="label")
    (_, csv_y), (csv_x, _) = load_dataset(tmp_path / "pixels.csv")
    np.testing.assert_array_equal(np.asarray(csv_x), np.asarray(x_test))
    assert csv_y is not None and y_train is not None and list(csv_y) == list(y_train)


def test_a_bad_table_file_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.parquet").write_text("not a table")
    (tmp_path / "bad.feather").write_text("not a table")
    pq.write_table(pa.table({"a": [1.0, 2.0], "name": ["x", "y"]}), tmp_path / "text.parquet")
    cases = {
        "bad.parquet": "cannot read as Parquet",
        "bad.feather": "cannot read as Arrow",
        "text.parquet": "column 'name' holds string values",
    }
    for name, phrase in cases.items():
        status = main(["train", "fully_connected", "--dataset", str(tmp_path / name),
                       "--model-dir", str(tmp_path / "run")])  # fmt: skip
        _, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert status == 2 and len(lines) == 1 and lines[0].startswith("aekit: error:"), err
        assert phrase in lines[0] and "Traceback" not in err, lines[0]
    assert not (tmp_path / "run").exists()
