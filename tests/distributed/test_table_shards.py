"""Two processes under torchrun stream a Parquet table: each reads its share, none the whole."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from launch import torchrun

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
