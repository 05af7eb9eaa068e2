"""PyOD's detectors at their defaults on every split of one table; runs in PyOD's own environment.

    PYOD_PYTHON benchmarks/peers/pyod_scores.py --splits splits.npz --out scores.npz \
        --detectors autoencoder knn ecod copod

`splits.npz` holds `train_<i>` and `test_<i>` rows for splits i = 0, 1, ...; writes each
test part's outlier scores (higher is more abnormal) as `<detector>_<i>` and prints one JSON
line {"<detector>_<i>": [wall seconds, CPU seconds]} of fit + score. Everything runs on one
thread, as aekit's detector does, so that CPU times compare. Make the environment with
`python3 -m venv PEER && PEER/bin/pip install torch==2.13.0 pyod tqdm`.
"""

from __future__ import annotations

import argparse
import json
import os
import time

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_name] = "1"  # before numpy loads its BLAS

import numpy as np  # noqa: E402
import torch  # noqa: E402

DETECTORS = ("autoencoder", "knn", "ecod", "copod")


def build(name: str, seed: int) -> object:
    """PyOD's detector `name` at its defaults (the autoencoder seeded)."""
    if name == "autoencoder":
        from pyod.models.auto_encoder import AutoEncoder

        torch.manual_seed(seed)
        return AutoEncoder(random_state=seed, verbose=0, device="cpu")
    if name == "knn":
        from pyod.models.knn import KNN

        return KNN()
    if name == "ecod":
        from pyod.models.ecod import ECOD

        return ECOD()
    from pyod.models.copod import COPOD

    return COPOD()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--splits", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=DETECTORS)
    args = p.parse_args()
    torch.set_num_threads(1)
    splits = np.load(args.splits)
    count = sum(1 for key in splits.files if key.startswith("train_"))
    scores, seconds = {}, {}
    for name in args.detectors:
        for i in range(count):
            wall, cpu = time.perf_counter(), time.process_time()
            model = build(name, i)
            model.fit(splits[f"train_{i}"])  # type: ignore[attr-defined]
            scores[f"{name}_{i}"] = model.decision_function(splits[f"test_{i}"])  # type: ignore[attr-defined]
            seconds[f"{name}_{i}"] = [time.perf_counter() - wall, time.process_time() - cpu]
    np.savez(args.out, **scores)
    print(json.dumps(seconds))


if __name__ == "__main__":
    main()
