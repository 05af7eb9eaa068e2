"""Anomaly detection on ADBench's classical tables: aekit's default detector against the usual.

    python benchmarks/bench_anomaly.py [--data ../shared/data/adbench] [--splits 5]
        [--max-rows 20000] [--sets cardio thyroid ...] [--pyod-python PEER/bin/python]
        [--variants normal unsupervised] [--reconstruction-only] [--command-line]

For each data set (`X`, `y` with 1 = anomaly) and each of `--splits` stratified 60/40
splits, every detector is fitted on the training part, on its normal rows only ("normal")
or on all of them, unlabelled ("unsupervised"), and scores the test part. It prints AUROC,
AUPRC and fit + score seconds per set, then the mean AUROC and AUPRC, the mean AUROC rank,
wins and ties (within 0.005 AUROC) of aekit against each other detector, and the time
ratios. Sets larger than `--max-rows` are subsampled (stratified, once per set) to that
many rows, which keeps the three largest (http, cover, celeba) within minutes.

Detectors: aekit's `AutoencoderOutlierDetector` at its defaults; scikit-learn's
`IsolationForest` at its defaults; PCA reconstruction error (standardised features, the
components keeping 90% of the variance); and, with `--pyod-python`, PyOD's `AutoEncoder`
at its defaults run in its own environment (see benchmarks/peers/pyod_scores.py). With
`--reconstruction-only`, aekit's detector scored by its reconstruction error alone
(`code_weight=0`) runs too, to show what the code's distance adds. With `--command-line`,
`aekit train fully_connected` + `aekit score` on each split (as .npz files with their own
split) run too: the same model and score as the detector, through the command line.
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
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedShuffleSplit, train_test_split
from sklearn.preprocessing import StandardScaler

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


def pca_scores(train: np.ndarray, test: np.ndarray, seed: int) -> np.ndarray:
    scaler = StandardScaler().fit(train)
    pca = PCA(n_components=0.9, random_state=seed).fit(scaler.transform(train))
    z = scaler.transform(test)
    error: np.ndarray = ((pca.inverse_transform(pca.transform(z)) - z) ** 2).mean(axis=1)
    return error


def pyod_scorer(python: str) -> Scorer:
    script = Path(__file__).parent / "peers" / "pyod_scores.py"

    def scores(train: np.ndarray, test: np.ndarray, seed: int) -> np.ndarray:
        with tempfile.TemporaryDirectory() as tmp:
            np.savez(Path(tmp) / "split.npz", train=train, test=test)
            command = [python, str(script), "--split", f"{tmp}/split.npz",
                       "--out", f"{tmp}/scores.npy", "--seed", str(seed)]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            scores.seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]  # type: ignore[attr-defined]
            result: np.ndarray = np.load(f"{tmp}/scores.npy")
            return result

    return scores


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
    if args.pyod_python:
        detectors["pyod"] = pyod_scorer(args.pyod_python)
    detectors |= {"iforest": iforest_scores, "pca": pca_scores}
    files = sorted(args.data.glob("*.npz"), key=lambda f: int(f.stem.split("_")[0]))
    if args.sets:
        files = [f for f in files if f.stem.split("_", 1)[1] in args.sets]
    for variant in args.variants:
        results: dict[str, dict[str, list[float]]] = {d: {} for d in detectors}
        fitted_on = "normal training rows" if variant == "normal" else "training rows, unlabelled"
        print(f"\n== {variant}: fitted on the {fitted_on}")
        print(f"{'set':14s} " + " ".join(f"{d + ' AUROC/AUPRC/s':>24s}" for d in detectors))
        for path in files:
            x, y = load(path, args.max_rows)
            splitter = StratifiedShuffleSplit(args.splits, test_size=0.4, random_state=0)
            per: dict[str, list[tuple[float, float, float]]] = {d: [] for d in detectors}
            for seed, (train_i, test_i) in enumerate(splitter.split(x, y)):
                train = x[train_i][y[train_i] == 0] if variant == "normal" else x[train_i]
                for name, scorer in detectors.items():
                    start = time.perf_counter()
                    scores = scorer(train, x[test_i], seed)
                    seconds = getattr(scorer, "seconds", time.perf_counter() - start)
                    auroc = roc_auc_score(y[test_i], scores)
                    per[name].append((auroc, average_precision_score(y[test_i], scores), seconds))
            cells = []
            for name, rows in per.items():
                auroc, auprc, secs = (statistics.mean(c) for c in zip(*rows, strict=True))
                results[name][path.stem] = [auroc, auprc, secs]
                cells.append(f"{auroc:>9.3f} {auprc:>6.3f} {secs:>7.1f}")
            print(f"{path.stem.split('_', 1)[1]:14s} " + " ".join(cells), flush=True)
        summarise(results)


def summarise(results: dict[str, dict[str, list[float]]]) -> None:
    names = list(results)
    sets = list(results[names[0]])
    ranks: dict[str, list[float]] = {n: [] for n in names}
    for s in sets:
        order = sorted(names, key=lambda n: -results[n][s][0])
        for i, n in enumerate(order):
            ranks[n].append(i + 1)
    print(f"\n{'detector':10s} {'mean AUROC':>10s} {'mean AUPRC':>10s} {'mean rank':>9s} "
          f"{'seconds':>8s}  aekit wins+ties")  # fmt: skip
    for n in names:
        auroc = statistics.mean(results[n][s][0] for s in sets)
        auprc = statistics.mean(results[n][s][1] for s in sets)
        secs = sum(results[n][s][2] for s in sets)
        versus = ""
        if n != "aekit":
            wins = sum(results["aekit"][s][0] >= results[n][s][0] - TIE for s in sets)
            ours = sum(results["aekit"][s][2] for s in sets)
            versus = f"{wins} of {len(sets)}; time {secs / ours:.2f}x aekit's"
        print(f"{n:10s} {auroc:>10.4f} {auprc:>10.4f} {statistics.mean(ranks[n]):>9.2f} "
              f"{secs:>8.1f}  {versus}")  # fmt: skip


if __name__ == "__main__":
    main()
