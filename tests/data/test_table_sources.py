"""Tables read in pieces: every file kind, batch boundaries, take, labels, errors, statistics."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.feather as feather  # type: ignore[import-untyped]
import pyarrow.ipc as ipc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from aekit.anomaly.scaling import StreamingScaling, fit_scaling, stream_scaling
from aekit.data.batching import rebatch
from aekit.data.table_files import open_table
from aekit.data.tables import ArrayTable, TableSource
from aekit.errors import ConfigError, InputError

N, WIDTH = 1_000, 5
NAMES = [f"f{i}" for i in range(WIDTH)]


def rows(n: int = N, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, WIDTH)) * [1, 10, 1e-3, 1e6, 5]


def arrow_table(x: np.ndarray, labels: np.ndarray | None = None) -> pa.Table:
    columns: dict[str, Any] = {name: x[:, i] for i, name in enumerate(NAMES)}
    if labels is not None:
        columns["label"] = labels
    return pa.table(columns)


def write_parquet(path: Path, x: np.ndarray, labels: np.ndarray | None = None) -> Path:
    pq.write_table(arrow_table(x, labels), path, row_group_size=300)  # groups of 300, 100 last
    return path


def write_feather(path: Path, x: np.ndarray, labels: np.ndarray | None = None) -> Path:
    feather.write_feather(arrow_table(x, labels), path, chunksize=256)  # lz4, batches of 256
    return path


def write_stream(path: Path, x: np.ndarray, labels: np.ndarray | None = None) -> Path:
    table = arrow_table(x, labels)
    with pa.OSFile(str(path), "wb") as sink, ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=333)
    return path


def write_csv(path: Path, x: np.ndarray, labels: np.ndarray | None = None) -> Path:
    header = ",".join(NAMES + (["label"] if labels is not None else []))
    body = x if labels is None else np.column_stack([x, labels])
    lines = [",".join(repr(float(v)) for v in row) for row in body]
    path.write_text("\ufeff" + header + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


WRITERS: dict[str, tuple[str, Callable[[Path, np.ndarray, Any], Path]]] = {
    "parquet": (".parquet", write_parquet),
    "feather": (".feather", write_feather),
    "arrow stream": (".arrows", write_stream),
    "csv": (".csv", write_csv),
}


@pytest.fixture(params=list(WRITERS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def written(tmp_path: Path, kind: str, x: np.ndarray, labels: np.ndarray | None = None) -> Path:
    suffix, write = WRITERS[kind]
    return write(tmp_path / f"table{suffix}", x, labels)


def test_every_kind_gives_its_rows_names_and_labels(tmp_path: Path, kind: str) -> None:
    x, y = rows(), np.arange(N) % 3
    table = open_table(written(tmp_path, kind, x, y))
    assert (table.n_rows, len(table), table.n_features) == (N, N, WIDTH)
    assert table.feature_names == tuple(NAMES) and table.label_name == "label"
    np.testing.assert_array_equal(table.to_numpy(), x)  # float64 round trip: exact
    labels = table.labels()
    assert labels is not None and labels.dtype == np.int64
    np.testing.assert_array_equal(labels, y)
    assert open_table(table.name, label_column=False).n_features == WIDTH + 1


@pytest.mark.parametrize("size", [1, 7, 256, 299, 300, 301, 999, 1000, 5000])
def test_batches_have_the_size_asked_across_the_files_own_pieces(
    tmp_path: Path, kind: str, size: int
) -> None:
    x = rows()
    batches = list(open_table(written(tmp_path, kind, x)).batches(size))
    assert [len(b) for b in batches] == [min(size, N - s) for s in range(0, N, size)]
    assert all(b.dtype == np.float64 and b.shape[1] == WIDTH for b in batches)
    np.testing.assert_array_equal(np.concatenate(batches), x)


def test_take_gives_rows_in_the_order_asked_repeats_included(tmp_path: Path, kind: str) -> None:
    x = rows()
    table = open_table(written(tmp_path, kind, x))
    index = np.random.default_rng(1).integers(0, N, size=400)
    index[:3] = [N - 1, 0, N - 1]  # the last row, the first, and a repeat
    np.testing.assert_array_equal(table.take(index), x[index])
    assert table.take(np.array([], dtype=int)).shape == (0, WIDTH)
    with pytest.raises(ConfigError, match="row indices must be in 0..999"):
        table.take([0, N])


def test_an_array_table_converts_a_piece_at_a_time(tmp_path: Path) -> None:
    x32 = rows().astype(np.float32)
    table = ArrayTable(x32, piece_rows=128)
    assert table.feature_names == tuple(str(i) for i in range(WIDTH)) and not table.named
    assert [len(b) for b in table.batches(300)] == [300, 300, 300, 100]
    np.testing.assert_array_equal(table.to_numpy(), x32.astype(np.float64))
    np.testing.assert_array_equal(table.take([5, 2, 5]), x32[[5, 2, 5]].astype(np.float64))
    np.save(tmp_path / "x.npy", rows())
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert ArrayTable(mapped).to_numpy() is not mapped  # a view, checked...
    assert np.shares_memory(ArrayTable(mapped).to_numpy(), mapped)  # ...not a copy


def test_csv_follows_the_csv_rules_for_headers_and_labels(tmp_path: Path) -> None:
    x = rows(10)
    bare = tmp_path / "bare.csv"
    np.savetxt(bare, np.column_stack([np.arange(10) % 2, x]), delimiter=",")
    table = open_table(bare)  # no header: no label column unless given by index
    assert table.feature_names == tuple(str(i) for i in range(WIDTH + 1))
    table = open_table(bare, label_column=0)
    np.testing.assert_array_equal(table.to_numpy(), x)
    np.testing.assert_array_equal(table.labels(), np.arange(10) % 2)
    named = tmp_path / "named.csv"
    named.write_text("a,Target,b\n1,0,2\n\n3,1,4\n")  # a blank line is skipped
    table = open_table(named)
    assert table.feature_names == ("a", "b") and table.label_name == "Target"
    np.testing.assert_array_equal(table.to_numpy(), [[1, 2], [3, 4]])


def test_a_parquet_file_of_integers_and_booleans_reads_as_numbers(tmp_path: Path) -> None:
    path = tmp_path / "mixed.parquet"
    pq.write_table(pa.table({"n": [1, 2, 3], "flag": [True, False, True], "y": [0, 1, 0]}), path)
    table = open_table(path)
    assert table.label_name == "y"
    np.testing.assert_array_equal(table.to_numpy(), [[1, 1], [2, 0], [3, 1]])


def write_bad(path: Path, columns: dict[str, Any]) -> Path:
    if path.suffix == ".csv":
        names = list(columns)
        lines = [",".join(names)]
        lines += [
            ",".join(str(columns[n][i]) for n in names) for i in range(len(columns[names[0]]))
        ]
        path.write_text("\n".join(lines) + "\n")
    elif path.suffix == ".parquet":
        pq.write_table(pa.table(columns), path)
    else:
        feather.write_feather(pa.table(columns), path)
    return path


@pytest.mark.parametrize("suffix", [".parquet", ".feather", ".csv"])
@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ([1.0, float("nan"), 2.0], "column 'b' has missing or NaN values|column 'b' holds NaN"),
        ([1.0, float("inf"), 2.0], "column 'b' holds NaN or infinite values"),
        ([1.0, None, 2.0], "column 'b' has missing"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_column(
    tmp_path: Path, suffix: str, bad: list[float | None], says: str
) -> None:
    path = write_bad(tmp_path / f"bad{suffix}", {"a": [1.0, 2.0, 3.0], "b": bad})
    if suffix == ".csv":
        path.write_text(path.read_text().replace("None", ""))
    with pytest.raises(InputError, match=says) as caught:
        list(open_table(path).batches())
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("suffix", [".parquet", ".feather", ".csv"])
def test_a_column_of_text_is_refused_by_name(tmp_path: Path, suffix: str) -> None:
    path = write_bad(tmp_path / f"text{suffix}", {"a": [1.0, 2.0], "city": ["Oslo", "Lima"]})
    with pytest.raises(InputError, match="column 'city'.*not.*number"):
        list(open_table(path).batches())


def test_files_labels_and_arguments_are_checked(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "t.parquet", rows(20))
    with pytest.raises(InputError, match="no such file"):
        open_table(tmp_path / "missing.parquet")
    with pytest.raises(InputError, match="a folder"):
        open_table(tmp_path)
    (tmp_path / "t.xlsx").write_text("")
    with pytest.raises(InputError, match="cannot tell the table format"):
        open_table(tmp_path / "t.xlsx")
    (tmp_path / "fake.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="cannot read as Parquet"):
        open_table(tmp_path / "fake.parquet")
    with pytest.raises(ConfigError, match="no column named 'kind'"):
        open_table(path, label_column="kind")
    with pytest.raises(ConfigError, match="label_column must be"):
        open_table(path, label_column=1.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="rows_per_batch"):
        next(open_table(path).batches(0))
    floats = write_bad(tmp_path / "y.parquet", {"a": [1.0, 2.0], "y": [0.5, 1.0]})
    with pytest.raises(InputError, match="label column 'y' holds values other than whole"):
        open_table(floats).labels()
    with pytest.raises(InputError, match="X: column '1' holds NaN or infinite values"):
        ArrayTable(np.array([[1.0, np.inf]]), "X").to_numpy()


def test_without_pyarrow_the_error_says_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_parquet(tmp_path / "t.parquet", rows(20))
    real = importlib.import_module

    def no_arrow(name: str, package: str | None = None) -> Any:
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", no_arrow)
    with pytest.raises(ConfigError, match="needs pyarrow; install it with pip install pyarrow"):
        open_table(path)


def test_rebatch_fills_batches_across_pieces() -> None:
    pieces = [np.full((n, 2), float(i)) for i, n in enumerate([3, 0, 5, 1, 4])]
    batches = list(rebatch(iter(pieces), 4))
    assert [len(b) for b in batches] == [4, 4, 4, 1]
    np.testing.assert_array_equal(np.concatenate(batches), np.concatenate(pieces))


@pytest.mark.parametrize("method", ["standard", "minmax"])
@pytest.mark.parametrize("size", [1, 7, 333, N])
def test_streaming_statistics_match_those_of_the_whole_array(method: str, size: int) -> None:
    x = rows()
    x[:, 2] += 1e6  # a mean far larger than the spread: a naive sum of squares would cancel
    x[:, 4] *= 1e300  # near float64's limit: the power-of-two units keep the sums finite
    x[:10, 0] = 0.0
    batches = ArrayTable(x).batches(size)
    center, scale = stream_scaling(batches, WIDTH, method)
    whole_center, whole_scale = fit_scaling(x, method)
    np.testing.assert_allclose(center, whole_center, rtol=1e-12)
    # rtol 1e-6: feature 2's values are only stored to 1e-10 (1e6 × float64's epsilon), a
    # 1e-7 share of its spread; a sum of squares less the squared sum would lose it all.
    np.testing.assert_allclose(scale, whole_scale, rtol=1e-6)
    if method == "minmax":
        np.testing.assert_array_equal(center, x.min(axis=0))
    else:
        np.testing.assert_allclose(scale[:4], x[:, :4].std(axis=0), rtol=1e-6)  # [4] overflows


def test_streaming_statistics_keep_a_constant_feature_and_refuse_an_infinite_scale() -> None:
    statistics = StreamingScaling(2)
    statistics.add(np.array([[5.0, -1.7e308], [5.0, 0.0]]))
    statistics.add(np.array([[5.0, 1.7e308]]))
    with pytest.raises(InputError, match="feature 1 spans -1.7e\\+308 to 1.7e\\+308"):
        statistics.result("minmax")
    constant = StreamingScaling(1)
    constant.add(np.full((4, 1), 3.0))
    assert [list(v) for v in constant.result("standard")] == [[3.0], [1.0]]
    with pytest.raises(InputError, match="no rows"):
        StreamingScaling(1).result("standard")


def test_a_table_source_is_an_abstract_interface() -> None:
    with pytest.raises(TypeError):
        TableSource()  # type: ignore[abstract]
