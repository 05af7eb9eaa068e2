"""Reads one process's share of a Parquet table: run it with torchrun (2 processes).

    torchrun --standalone --nproc-per-node 2 table_shard_job.py TABLE OUT_DIR
    torchrun --standalone --nproc-per-node 2 table_shard_job.py --train OUT_DIR CASE...

Streams `table_input_fn(TABLE)` with the input context the Estimator gives a training
input under torchrun (this process's rank of WORLD_SIZE, equal shares off so that the
union is the whole table) and writes OUT_DIR/rank-R.json: the ids of the rows it got (the
table's first column), the bytes it read (rchar of /proc/self/io) and how far its peak
resident memory rose above where it stood before reading (VmHWM, reset first).

With --train, each CASE (TABLE,BATCH_SIZE,DROP_REMAINDER as 0 or 1) trains an AutoEncoder
for STEPS steps on the endless `table_input_fn(TABLE)`, as the Estimator shares it among
the processes, and writes OUT_DIR/NAME-rank-R.json (NAME: the table's stem): the step it
reached, or the InputError that refused the table. A process still running after
DEADLINE seconds is killed: a hang fails the job rather than the test's patience.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import numpy as np

import aekit
from aekit.data import table_input_fn
from aekit.data.context import InputContext
from aekit.errors import InputError
from aekit.estimator.inputs import iterate_batches

STEPS, DEADLINE = 4, 60


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def bytes_read() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise RuntimeError("no rchar in /proc/self/io")


def train(out_dir: Path, cases: list[str]) -> None:
    signal.alarm(DEADLINE)  # SIGALRM's default: the process ends, and torchrun ends the job
    rank = int(os.environ["RANK"])
    for case in cases:
        path, batch, drop = case.split(",")
        table = Path(path)
        config = aekit.RunConfig(random_seed=0, log_step_count_steps=0, collective_timeout_secs=30)
        est = aekit.AutoEncoder(
            [2], input_shape=(3,), model_dir=out_dir / table.stem, config=config
        )
        input_fn = table_input_fn(
            table, batch_size=int(batch), num_epochs=None, drop_remainder=drop == "1"
        )
        try:
            est.train(input_fn, max_steps=STEPS)
            report: dict[str, object] = {"step": est.global_step}
        except InputError as exc:
            report = {"error": str(exc)}
        (out_dir / f"{table.stem}-rank-{rank}.json").write_text(json.dumps(report))


def main() -> None:
    if sys.argv[1] == "--train":
        train(Path(sys.argv[2]), sys.argv[3:])
        return
    table, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    input_fn = table_input_fn(table, batch_size=1024, seed=0)
    context = InputContext(None, world, rank, equal_shards=False)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here on: the reading alone
    start_rss, start_read = status_kib("VmRSS"), bytes_read()
    ids = [np.asarray(f)[:, 0].astype(np.int64) for f, _ in iterate_batches(input_fn, context)]
    peak, read = status_kib("VmHWM"), bytes_read()  # before the report's lists take memory
    report = {
        "ids": np.concatenate(ids).tolist(),
        "read": read - start_read,
        "peak_growth": (peak - start_rss) * 1024,
    }
    (out_dir / f"rank-{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
