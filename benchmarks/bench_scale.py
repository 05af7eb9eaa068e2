"""Time and peak memory against data size: training on images, outlier detection on tables.

    python benchmarks/bench_scale.py [--sizes 10000 100000 1000000] [--jobs ...]
        [--timeout 900] [--pyod-python PEER/bin/python] [--workdir DIR]

Data are generated on the fly into `--workdir` (default: a temporary folder), never
committed: 28x28 uint8 images with digit-like blobs (labels 0..9), and tables of 20 float
columns (normal rows from a correlated Gaussian, 1% anomalies shifted off the pattern).
Each job runs alone in a child process, which reports its wall time and its peak RSS
(`ru_maxrss`, the whole process: Python, torch and the data).

Jobs:
  train-memory   `aekit train fully_connected --epochs 1` on a .npz (read whole)
  train-mmap     the same on a .npy (memory-mapped)
  train-folder   the same on a folder of PNG files, streamed (`--stream always`; sizes up to
                 --max-folder)
  detector       AutoencoderOutlierDetector fit on the normal rows + score of every row
                 (the table as a float64 array in memory)
  detector-parquet  the same read from a Parquet file
  iforest        scikit-learn's IsolationForest, fit + score of the same table
  pyod           PyOD's AutoEncoder, one epoch, fit + score (with --pyod-python)

It prints a table per job and size, the fitted exponent of time and memory against size
(log-log slope over the sizes that ran), and each target of the scaling issue with the
figure beside it. Run it alone: other work on the cores distorts the times.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FEATURES = 20
MIB = 2**20
JOBS = (
    "train-memory",
    "train-mmap",
    "train-folder",
    "detector",
    "detector-parquet",
    "iforest",
    "pyod",
)


# -- data ----------------------------------------------------------------------------------


def images(workdir: Path, n: int) -> tuple[Path, Path]:
    """(a .npy of n uint8 28x28 images, a .npz of the same with labels), written in chunks."""
    npy, npz = workdir / f"images-{n}.npy", workdir / f"images-{n}.npz"
    if not npy.exists():
        out = np.lib.format.open_memmap(npy, mode="w+", dtype=np.uint8, shape=(n, 28, 28))
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[:28, :28]
        for start in range(0, n, 50_000):
            count = min(50_000, n - start)
            cy, cx = rng.uniform(8, 20, (2, count, 1, 1))
            radius = rng.uniform(3, 7, (count, 1, 1))
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
            out[start : start + count] = (255 * blob).astype(np.uint8)
        out.flush()
        del out
    if not npz.exists() and n <= 1_000_000:  # .npz is the in-memory source: keep it bounded
        x = np.load(npy)
        np.savez(npz, x=x, y=(np.arange(n) % 10).astype(np.int64))
    return npy, npz


def folder(workdir: Path, n: int) -> Path:
    """A folder of n PNG files in ten class folders."""
    from PIL import Image

    where = workdir / f"folder-{n}"
    if not where.exists():
        npy, _ = images(workdir, n)
        x = np.load(npy, mmap_mode="r")
        for label in range(10):
            (where / str(label)).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.asarray(x[i])).save(where / str(i % 10) / f"{i:08d}.png")
    return where


def table(workdir: Path, n: int) -> tuple[Path, Path]:
    """(a .npy of n rows: 20 features then a 0/1 label column, the same as Parquet)."""
    npy, parquet = workdir / f"table-{n}.npy", workdir / f"table-{n}.parquet"
    if not npy.exists():
        out = np.lib.format.open_memmap(npy, mode="w+", dtype=np.float64, shape=(n, FEATURES + 1))
        rng = np.random.default_rng(1)
        mixing = rng.normal(size=(5, FEATURES))
        for start in range(0, n, 200_000):
            count = min(200_000, n - start)
            rows = rng.normal(size=(count, 5)) @ mixing + 0.1 * rng.normal(size=(count, FEATURES))
            anomaly = rng.random(count) < 0.01
            rows[anomaly] += rng.normal(0, 3, size=(int(anomaly.sum()), FEATURES))
            out[start : start + count, :FEATURES] = rows
            out[start : start + count, FEATURES] = anomaly
        out.flush()
        del out
    if not parquet.exists():
        from aekit.data.table_files import arrow

        pa, pq = arrow(), arrow("pyarrow.parquet")
        x = np.load(npy, mmap_mode="r")
        names = [f"f{i}" for i in range(FEATURES)] + ["label"]
        with pq.ParquetWriter(parquet, pa.schema([(c, pa.float64()) for c in names])) as w:
            for start in range(0, n, 100_000):
                part = np.asarray(x[start : start + 100_000])
                w.write_table(pa.table({c: part[:, i] for i, c in enumerate(names)}))
    return npy, parquet


# -- jobs, run in the child ------------------------------------------------------------------


def run_job(job: str, n: int, workdir: Path) -> dict[str, Any]:
    """Run one job in this process; what it did."""
    started = time.perf_counter()
    if job.startswith("train-"):
        from aekit.cli.main import main as aekit

        npy, npz = images(workdir, n) if job != "train-folder" else (None, None)
        source = {"train-memory": npz, "train-mmap": npy}.get(job) or folder(workdir, n)
        started = time.perf_counter()  # not the generation
        run = workdir / f"run-{job}-{n}"
        streamed = ["--stream", "always"] if job == "train-folder" else []
        code = aekit(["train", "fully_connected", "--dataset", str(source), "--epochs", "1",
                      "--model-dir", str(run), *streamed])  # fmt: skip
        if code != 0:
            raise SystemExit(f"aekit train ended with status {code}")
        return {"seconds": time.perf_counter() - started, "data_mib": n * 784 / MIB}
    npy, parquet = table(workdir, n)
    data_mib = n * FEATURES * 8 / MIB
    if job == "detector-parquet":
        from aekit.sklearn import AutoencoderOutlierDetector

        started = time.perf_counter()
        # Fitted on every row here (1% anomalies): the file is not split
        detector = AutoencoderOutlierDetector(random_state=0).fit(str(parquet))
        scores = detector.score_samples(str(parquet))
        return {"seconds": time.perf_counter() - started, "data_mib": data_mib,
                "rows_scored": len(scores)}  # fmt: skip
    started = time.perf_counter()
    rows = np.load(npy)
    x, y = rows[:, :FEATURES], rows[:, FEATURES]
    normal = x[y == 0]
    if job == "detector":
        from aekit.sklearn import AutoencoderOutlierDetector

        scores = -AutoencoderOutlierDetector(random_state=0).fit(normal).score_samples(x)
    elif job == "iforest":
        from sklearn.ensemble import IsolationForest

        scores = -IsolationForest(random_state=0).fit(normal).score_samples(x)
    elif job == "pyod":
        from pyod.models.auto_encoder import AutoEncoder

        model = AutoEncoder(epoch_num=1, verbose=0, random_state=0).fit(normal)
        scores = model.decision_function(x)
    else:
        raise SystemExit(f"unknown job {job}")
    from sklearn.metrics import roc_auc_score

    return {"seconds": time.perf_counter() - started, "data_mib": data_mib,
            "auroc": float(roc_auc_score(y, scores))}  # fmt: skip


def child(job: str, n: int, workdir: Path) -> None:
    result = run_job(job, n, workdir)
    result["peak_mib"] = peak_mib()
    print("RESULT " + json.dumps(result), flush=True)


def peak_mib() -> float:
    """This process's peak RSS. VmHWM where Linux has it: `ru_maxrss` survives `exec`, so a
    child started from a large parent would report the parent's size."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the parent ------------------------------------------------------------------------------


def measure(job: str, n: int, workdir: Path, timeout: float, python: str) -> dict[str, Any]:
    """One job in a child process: its report, or why there is none."""
    # The data are made here, before the child's clock starts.
    if job == "train-folder":
        folder(workdir, n)
    elif job.startswith("train-"):
        images(workdir, n)
    else:
        table(workdir, n)
    command = [python, __file__, "--child", job, str(n), "--workdir", str(workdir)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"over {timeout:.0f} s"}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return {"status": "ok", **json.loads(line[len("RESULT ") :])}
    why = (done.stderr.strip().splitlines() or ["no output"])[-1]
    if done.returncode < 0 or "MemoryError" in done.stderr:
        why = f"out of memory or killed ({why})"
    return {"status": why[:80]}


def exponent(points: list[tuple[int, float]]) -> float | None:
    """The log-log slope of value against size (None with fewer than two points)."""
    if len(points) < 2:
        return None
    sizes, values = zip(*points, strict=True)
    slope, _ = np.polyfit(np.log(sizes), np.log(values), 1)
    return float(slope)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--jobs", nargs="+", choices=JOBS, default=list(JOBS[:-1]))
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--max-folder", type=int, default=100_000)
    parser.add_argument("--pyod-python", default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", nargs=2, metavar=("JOB", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.workdir)
        return
    jobs = list(args.jobs) + (["pyod"] if args.pyod_python and "pyod" not in args.jobs else [])
    with tempfile.TemporaryDirectory(prefix="aekit-scale-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        results: dict[tuple[str, int], dict[str, Any]] = {}
        print(f"{'job':<18}{'size':>10}{'seconds':>10}{'peak MiB':>10}{'data MiB':>10}  note")
        for job in jobs:
            for n in args.sizes:
                if job == "train-folder" and n > args.max_folder:
                    results[job, n] = {"status": f"skipped (> --max-folder {args.max_folder})"}
                else:
                    python = args.pyod_python if job == "pyod" else sys.executable
                    results[job, n] = measure(job, n, workdir, args.timeout, python)
                r = results[job, n]
                if r["status"] == "ok":
                    note = f"AUROC {r['auroc']:.3f}" if "auroc" in r else ""
                    print(f"{job:<18}{n:>10,}{r['seconds']:>10.1f}{r['peak_mib']:>10.0f}"
                          f"{r['data_mib']:>10.0f}  {note}", flush=True)  # fmt: skip
                else:
                    print(f"{job:<18}{n:>10,}{'':>30}  {r['status']}", flush=True)
        print("\nexponents against size (time, peak memory):")
        for job in jobs:
            ran = [(n, results[job, n]) for n in args.sizes if results[job, n]["status"] == "ok"]
            t = exponent([(n, r["seconds"]) for n, r in ran])
            m = exponent([(n, r["peak_mib"]) for n, r in ran])
            shown = [f"{v:.2f}" if v is not None else "-" for v in (t, m)]
            print(f"  {job:<18} time {shown[0]:>5}   memory {shown[1]:>5}")
        report_targets(results, args.sizes)


def report_targets(results: dict[tuple[str, int], dict[str, Any]], sizes: list[int]) -> None:
    """Each target of the scaling issue with its figure (targets with no run say so)."""
    print("\ntargets:")

    def figure(job: str, n: int) -> dict[str, Any] | None:
        r = results.get((job, n))
        return r if r is not None and r["status"] == "ok" else None

    for n in sizes:
        if (r := figure("train-memory", n)) is not None:
            bound = r["data_mib"] + 400
            print(f"  train in memory, {n:,}: peak {r['peak_mib']:.0f} MiB <= data + 400 = "
                  f"{bound:.0f}: {'met' if r['peak_mib'] <= bound else 'MISSED'}")  # fmt: skip
        for job in ("train-mmap", "train-folder"):
            if (r := figure(job, n)) is not None:
                print(f"  {job}, {n:,}: peak {r['peak_mib']:.0f} MiB <= 600: "
                      f"{'met' if r['peak_mib'] <= 600 else 'MISSED'}")  # fmt: skip
    big = 1_000_000
    d, f = figure("detector", big), figure("iforest", big)
    if d is not None and f is not None:
        ratio = d["seconds"] / f["seconds"]
        bound = 2 * d["data_mib"] + 400
        print(f"  detector 1M x 20: {ratio:.2f}x IsolationForest's time (<= 1.5: "
              f"{'met' if ratio <= 1.5 else 'MISSED'}), peak {d['peak_mib']:.0f} MiB <= "
              f"{bound:.0f}: {'met' if d['peak_mib'] <= bound else 'MISSED'}")  # fmt: skip
    else:
        print("  detector 1M x 20 against IsolationForest: not run (needs --sizes 1000000)")
    if (p := figure("detector-parquet", 10_000_000)) is not None:
        print(f"  detector on 10M Parquet rows: peak {p['peak_mib']:.0f} MiB <= 1024: "
              f"{'met' if p['peak_mib'] <= 1024 else 'MISSED'}")  # fmt: skip
    else:
        print("  detector on 10M Parquet rows: not run (needs --sizes 10000000)")
    for job in ("train-memory", "train-mmap", "detector", "detector-parquet"):
        ran = [(n, results[job, n]) for n in sizes if figure(job, n) is not None]
        t = exponent([(n, r["seconds"]) for n, r in ran])
        if t is not None and not math.isnan(t):
            print(f"  {job}: time exponent {t:.2f} <= 1.1: {'met' if t <= 1.1 else 'MISSED'}")


if __name__ == "__main__":
    main()
