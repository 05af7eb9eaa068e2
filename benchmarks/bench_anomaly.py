"""Anomaly detection on ADBench's classical tables: aekit's default detector against the usual.

    python benchmarks/bench_anomaly.py [--data ../shared/data/adbench] [--splits 5]
        [--max-rows 20000] [--sets cardio thyroid ...] [--pyod-python PEER/bin/python]
        [--variants normal unsupervised] [--reconstruction-only] [--command-line]

For each data set (`X`, `y` with 1 = anomaly) and each of `--splits` stratified 60/40
splits, every detector is fitted on the training part, on its normal rows only ("normal")
or on all of them, unlabelled ("unsupervised"), and scores the test part. It prints AUROC,
AUPRC and the CPU seconds of fit + score per set; then per detector the mean AUROC and
AUPRC, the mean AUROC rank, wall and CPU seconds over all sets, aekit's wins and ties
(within 0.005 AUROC) against it, and its CPU time against aekit's, over all sets and on
the sets of more than 10,000 rows. Sets larger than `--max-rows` are subsampled
(stratified, once per set) to that many rows, which keeps the three largest (http, cover,
celeba) within minutes. Every detector runs on one thread, so CPU times compare.

Detectors: aekit's `AutoencoderOutlierDetector` at its defaults; scikit-learn's
`IsolationForest` at its defaults; and, with `--pyod-python`, PyOD's `AutoEncoder`, `KNN`,
`ECOD` and `COPOD` at their defaults, run in PyOD's own environment (see
benchmarks/peers/pyod_scores.py). With `--reconstruction-only`, aekit's detector scored by
its reconstruction error alone (`code_weight=0`) runs too, to show what the rest of the
score adds. With `--command-line`, `aekit train fully_connected` + `aekit score` on each
split (as .npz files with their own split) run too: the same model and score as the
detector, through the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedShuffleSplit, train_test_split
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from aekit.anomaly import AutoencoderOutlierDetector, read_scores_csv
from aekit.cli.main import main as aekit_command

Scorer = Callable[[np.ndarray, np.ndarray, int], np.ndarray]
TIE = 0.005


def aekit_scores(train: np.ndarray, test: np.ndarray, seed: int) -> np.ndarray:
    detector = AutoencoderOutlierDetector(random_state=seed).fit(train)
    scores: np.ndarray = -detector.score_samples(test)
    return scores


def aekit_reconstruction_scores(train: np.ndarray, test: np.ndarray, seed: int) -> np.ndarray:
    detector = AutoencoderOutlierDetector(code_weight=0.0, random_state=seed).fit(train)
    scores: np.ndarray = -detector.score_samples(test)
    return scores


def command_line_scores(train: np.ndarray, test: np.ndarray, seed: int) -> np.ndarray:
    """`aekit train fully_connected` on the split, then `aekit score` of its test rows."""
    with tempfile.TemporaryDirectory() as tmp:
        split = Path(tmp) / "split.npz"
        labels = np.zeros(len(train), int)  # every training row counts as normal
        np.savez(split, x_train=train, y_train=labels, x_test=test, y_test=np.zeros(len(test)))
        run, out = Path(tmp) / "run", Path(tmp) / "scores"
        # --scaling standard: several tables hold values in [0, 1] only, which the command
        # line would otherwise read as pixels.
        train_args = ["train", "fully_connected", "--dataset", split, "--scaling", "standard",
                 "--seed", seed, "--model-dir", run]  # fmt: skip
        for args in (train_args, ["score", "--model-dir", run, "--output", out]):
            with contextlib.redirect_stdout(io.StringIO()):
                if aekit_command([str(a) for a in args]) != 0:
                    raise RuntimeError(f"aekit {args[0]} failed")
        rows = read_scores_csv(out / "scores.csv")
    return np.array([float(row["score"]) for row in rows])


def iforest_scores(train: np.ndarray, test: np.ndarray, seed: int) -> np.ndarray:
    scores: np.ndarray = -IsolationForest(random_state=seed).fit(train).score_samples(test)
    return scores


PYOD_NAMES = {"autoencoder": "pyod-ae", "knn": "knn", "ecod": "ecod", "copod": "copod"}


def pyod_results(
    python: str, splits: list[tuple[np.ndarray, np.ndarray]]
) -> dict[str, list[tuple[np.ndarray, float, float]]]:
    """PyOD's four detectors on every split of one table, in one process of PyOD's environment.

    Per detector: (test scores, wall seconds, CPU seconds) for each split.
    """
    script = Path(__file__).parent / "peers" / "pyod_scores.py"
    with tempfile.TemporaryDirectory() as tmp:
        arrays = {f"{part}_{i}": rows for i, pair in enumerate(splits)
                  for part, rows in zip(("train", "test"), pair, strict=True)}  # fmt: skip
        np.savez(Path(tmp) / "splits.npz", **arrays)  # type: ignore[arg-type]
        command = [python, str(script), "--splits", f"{tmp}/splits.npz", "--out",
                   f"{tmp}/scores.npz", "--detectors", *PYOD_NAMES]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        seconds = json.loads(done.stdout.strip().splitlines()[-1])
        scores = np.load(f"{tmp}/scores.npz")
        return {
            label: [(scores[f"{name}_{i}"], *seconds[f"{name}_{i}"]) for i in range(len(splits))]
            for name, label in PYOD_NAMES.items()
        }


def load(path: Path, max_rows: int) -> tuple[np.ndarray, np.ndarray]:
    data = np.load(path)
    x, y = data["X"].astype(np.float64), data["y"].astype(int)
    if len(x) > max_rows:
        x, _, y, _ = train_test_split(x, y, train_size=max_rows, stratify=y, random_state=0)
    return x, y


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--data", type=Path, default=Path("../shared/data/adbench"))
    p.add_argument("--splits", type=int, default=5)
    p.add_argument("--max-rows", type=int, default=20_000)
    p.add_argument("--sets", nargs="+", help="names without the number, e.g. cardio thyroid")
    p.add_argument("--pyod-python", help="python of an environment with pyod installed")
    p.add_argument("--variants", nargs="+", default=["normal", "unsupervised"],
                   choices=["normal", "unsupervised"])  # fmt: skip
    p.add_argument(
        "--reconstruction-only",
        action="store_true",
        help="also aekit scored by its reconstruction error alone (code_weight=0)",
    )
    p.add_argument(
        "--command-line",
        action="store_true",
        help="also aekit train fully_connected + aekit score on each split",
    )
    args = p.parse_args()
    logging.getLogger("aekit").setLevel(logging.ERROR)
    logging.getLogger("aekit").propagate = False  # the command line configures the root logger
    detectors: dict[str, Scorer] = {"aekit": aekit_scores}
    if args.reconstruction_only:
        detectors["aekit-rec"] = aekit_reconstruction_scores
    if args.command_line:
        detectors["aekit-cli"] = command_line_scores
    detectors["iforest"] = iforest_scores
    files = sorted(args.data.glob("*.npz"), key=lambda f: int(f.stem.split("_")[0]))
    if args.sets:
        files = [f for f in files if f.stem.split("_", 1)[1] in args.sets]
    for variant in args.variants:
        results: dict[str, dict[str, list[float]]] = {}
        fitted_on = "normal training rows" if variant == "normal" else "training rows, unlabelled"
        print(f"\n== {variant}: fitted on the {fitted_on}; AUROC AUPRC CPU-seconds per set")
        large: list[str] = []
        for path in files:
            x, y = load(path, args.max_rows)
            if len(np.load(path)["y"]) > 10_000:
                large.append(path.stem)
            splitter = StratifiedShuffleSplit(args.splits, test_size=0.4, random_state=0)
            parts = [
                (x[tr][y[tr] == 0] if variant == "normal" else x[tr], x[te], y[te])
                for tr, te in splitter.split(x, y)
            ]
            runs: dict[str, list[tuple[np.ndarray, float, float]]] = {}
            for name, scorer in detectors.items():
                runs[name] = []
                for seed, (train, test, _) in enumerate(parts):
                    wall, cpu = time.perf_counter(), time.process_time()
                    with threadpool_limits(1):
                        scores = scorer(train, test, seed)
                    runs[name].append(
                        (scores, time.perf_counter() - wall, time.process_time() - cpu)
                    )
            if args.pyod_python:
                runs |= pyod_results(args.pyod_python, [(tr, te) for tr, te, _ in parts])
            cells = []
            for name, per_split in runs.items():
                figures = [
                    (roc_auc_score(yt, s), average_precision_score(yt, s), w, c)
                    for (s, w, c), (_, _, yt) in zip(per_split, parts, strict=True)
                ]
                auroc, auprc = (statistics.mean(f[i] for f in figures) for i in (0, 1))
                wall, cpu = (sum(f[i] for f in figures) for i in (2, 3))
                results.setdefault(name, {})[path.stem] = [auroc, auprc, wall, cpu]
                cells.append(f"{name} {auroc:.3f} {auprc:.3f} {cpu:.1f}")
            print(f"{path.stem.split('_', 1)[1]:14s} " + "  ".join(cells), flush=True)
        summarise(results, large)


def summarise(results: dict[str, dict[str, list[float]]], large: list[str]) -> None:
    """Per detector: means, mean rank, seconds, aekit's wins and the CPU time against aekit's."""
    names = list(results)
    sets = list(results[names[0]])
    ranks: dict[str, list[float]] = {n: [] for n in names}
    for s in sets:
        order = sorted(names, key=lambda n: -results[n][s][0])
        for i, n in enumerate(order):
            ranks[n].append(i + 1)
    ours = results["aekit"]
    print(f"\n{'detector':10s} {'AUROC':>7s} {'AUPRC':>7s} {'rank':>5s} {'wall s':>7s} "
          f"{'CPU s':>7s}  aekit wins+ties; CPU time / aekit's, all sets (lowest of "
          "the sets over 10,000 rows)")  # fmt: skip
    for n in names:
        mine = results[n]
        auroc, auprc = (statistics.mean(mine[s][i] for s in sets) for i in (0, 1))
        wall, cpu = (sum(mine[s][i] for s in sets) for i in (2, 3))
        versus = ""
        if n != "aekit":
            wins = sum(ours[s][0] >= mine[s][0] - TIE for s in sets)
            ratio = cpu / sum(ours[s][3] for s in sets)
            big = [mine[s][3] / ours[s][3] for s in sets if s in large]
            lowest = f" ({min(big):.2f}x)" if big else ""
            versus = f"{wins} of {len(sets)}; {ratio:.2f}x{lowest}"
        print(f"{n:10s} {auroc:>7.4f} {auprc:>7.4f} {statistics.mean(ranks[n]):>5.2f} "
              f"{wall:>7.1f} {cpu:>7.1f}  {versus}")  # fmt: skip


if __name__ == "__main__":
    main()
