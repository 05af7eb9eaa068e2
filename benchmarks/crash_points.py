"""Kill aekit training and export with SIGKILL at many random points and check every rerun.

    python benchmarks/crash_points.py --points 200 [--seed 0] [--work DIR]

Each point runs `aekit train` (or, one point in six, `aekit export`) on scikit-learn's digits
with a trap that writes a random fraction of what it is writing (a checkpoint, an export, a
TensorBoard record) and sends itself SIGKILL at the n-th optimizer step, save, fsync, rename or
record, or is killed after a random delay. The same command then runs again; the point
survives when the rerun restored the last complete checkpoint, finished at the requested step,
and every checkpoint, hparams.json, event file and exported file reads back whole. Prints a
table per kind of point and exits non-zero if any point did not survive.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from crash_harness import run_points


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", help="keep the model dirs here (default: a temporary dir)")
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        outcomes, info = run_points(Path(args.work or tmp), args.points, args.seed)
    tried, killed, survived = Counter[str](), Counter[str](), Counter[str]()
    for o in outcomes:
        tried[o.kind] += 1
        killed[o.kind] += o.killed
        survived[o.kind] += not o.problems
    print(f"{'kind':<20} {'tried':>6} {'killed':>7} {'survived':>9}")
    for kind in sorted(tried):
        print(f"{kind:<20} {tried[kind]:>6} {killed[kind]:>7} {survived[kind]:>9}")
    total_ok = sum(survived.values())
    print(f"{'all':<20} {len(outcomes):>6} {sum(killed.values()):>7} {total_ok:>9}")
    resumed = Counter("scratch" if o.resumed_from is None else "checkpoint" for o in outcomes)
    print(f"reruns from scratch: {resumed['scratch']}, from a checkpoint: {resumed['checkpoint']}")
    print(f"events in one training run: {info['train_events']}")
    print(f"{time.perf_counter() - start:.0f} s, seed {args.seed}")
    for o in outcomes:
        if o.problems:
            print(f"FAILED {o.kind} n={o.n} fraction={o.fraction}: {'; '.join(o.problems)}")
    return 0 if total_ok == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
