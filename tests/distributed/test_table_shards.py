"""Two processes under torchrun stream a Parquet table: each reads its share, none the whole;
empty row groups neither hang nor starve them, and a share without a batch stops both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from launch import load_script, torchrun

pytestmark = pytest.mark.slow

JOB = Path(__file__).with_name("table_shard_job.py")
ROWS, WIDTH, GROUP = 400_000, 10, 5_000  # 32 MB of float64 in 80 row groups


def test_each_process_reads_a_disjoint_share_and_holds_far_less_than_the_table(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    columns = {"id": np.arange(ROWS, dtype=np.float64)}
    columns.update({f"f{i}": rng.normal(size=ROWS) for i in range(WIDTH - 1)})
    table = tmp_path / "big.parquet"
    pq.write_table(pa.table(columns), table, row_group_size=GROUP, compression="none")
    done = torchrun(str(JOB), str(table), str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    reports = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in range(2)]
    shares = [set(r["ids"]) for r in reports]
    assert all(len(s) == len(r["ids"]) for s, r in zip(shares, reports, strict=True))
    assert not shares[0] & shares[1] and shares[0] | shares[1] == set(range(ROWS))
    size, in_memory = table.stat().st_size, ROWS * WIDTH * 8
    for report, share in zip(reports, shares, strict=True):
        # Its own row groups only: about its share of the file, never the whole of it.
        assert report["read"] < 0.55 * size, (report["read"], size, len(share))
        # Reading buffers and torch's own allocations grew 8 to 17 MB here; holding the table
        # would grow by all of its 32 MB.
        assert report["peak_growth"] < in_memory * 3 / 4, (report["peak_growth"], in_memory)


def write_groups(path: Path, groups: list[int]) -> Path:
    """A Parquet table (an id and two features) in row groups of these sizes, 0 for empty."""
    n = sum(groups)
    data = pa.table({"id": np.arange(n, dtype=np.float64), "a": np.ones(n), "b": np.zeros(n)})
    with pq.ParquetWriter(path, data.schema) as writer:
        for start, size in zip(np.cumsum([0, *groups[:-1]]), groups, strict=True):
            writer.write_table(data.slice(int(start), size))
    return path


def test_empty_row_groups_train_and_a_share_without_a_batch_stops_every_process(
    tmp_path: Path,
) -> None:
    job = load_script(JOB)
    empty = write_groups(tmp_path / "empty.parquet", [5, 0])  # hung both processes
    scattered = write_groups(tmp_path / "scattered.parquet", [0, 3, 0, 0, 4, 0])
    short = write_groups(tmp_path / "short.parquet", [3, 0, 3])  # 3 rows each, batches of 4
    cases = [f"{empty},2,0", f"{scattered},2,1", f"{short},4,1"]
    done = torchrun(str(JOB), "--train", str(tmp_path), *cases)
    assert done.returncode == 0, done.stderr[-2000:]

    def report(name: str, rank: int) -> dict[str, Any]:
        found: dict[str, Any] = json.loads((tmp_path / f"{name}-rank-{rank}.json").read_text())
        return found

    for name in ("empty", "scattered"):
        assert [report(name, r) for r in range(2)] == [{"step": job.STEPS}] * 2
    # Both refuse, alike: the same counts on every process, none left waiting.
    errors = [report("short", r)["error"] for r in range(2)]
    assert errors[0] == errors[1] and errors[0].startswith(str(short)), errors
    assert "rows split [3, 3] among 2 process(es)" in errors[0] and "batch_size=4" in errors[0]
