"""How long the command line takes to answer, against the 0.5 s target.

    python benchmarks/bench_startup.py [--repeats 7]

Runs `aekit --version`, `aekit --help`, `aekit train --help` and `python -c "import aekit"`
in fresh processes and prints the median and the fastest wall time of each, and the median
as a share of the target. Run it alone: on a busy machine the interpreter's start dominates.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

TARGET_S = 0.5
EXE = [
    shutil.which("aekit") or sys.executable,
    *([] if shutil.which("aekit") else ["-m", "aekit.cli.main"]),
]
JOBS = {
    "aekit --version": [*EXE, "--version"],
    "aekit --help": [*EXE, "--help"],
    "aekit train --help": [*EXE, "train", "--help"],
    "import aekit": [sys.executable, "-c", "import aekit"],
    "import torch (for scale)": [sys.executable, "-c", "import torch"],
}


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, capture_output=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"{'job':<26} {'median':>8} {'fastest':>8} {'of target':>10}")
    for name, command in JOBS.items():
        timed(command)  # the first run fills the page cache
        times = [timed(command) for _ in range(args.repeats)]
        median = statistics.median(times)
        print(f"{name:<26} {median:7.3f}s {min(times):7.3f}s {median / TARGET_S:9.2f}x")


if __name__ == "__main__":
    main()
