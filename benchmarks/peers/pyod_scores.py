"""PyOD's AutoEncoder at its defaults on one split; runs in PyOD's own environment.

    PYOD_PYTHON benchmarks/peers/pyod_scores.py --split split.npz --out scores.npy

`split.npz` holds `train` and `test` rows; writes the test rows' outlier scores (higher is
more abnormal) and prints {"seconds": fit + score time} as one JSON line. Make the
environment with `python3 -m venv PEER && PEER/bin/pip install torch==2.13.0 pyod tqdm`.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--split", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    from pyod.models.auto_encoder import AutoEncoder

    split = np.load(args.split)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    model = AutoEncoder(random_state=args.seed, verbose=0, device="cpu")
    model.fit(split["train"])
    scores = model.decision_function(split["test"])
    seconds = time.perf_counter() - start
    np.save(args.out, scores)
    print(json.dumps({"seconds": seconds}))


if __name__ == "__main__":
    main()
