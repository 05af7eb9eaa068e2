"""The command line both timed fits take (aekit_fit.py and keras_fit.py), so they stay alike.

Plain argparse only: keras_fit.py runs in the peer's environment, where aekit is not installed.
"""

from __future__ import annotations

import argparse


def fit_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=["fc", "conv"], required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--data", required=True, help=".npy of uint8 images (N, 28, 28)")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs, after one of warm-up")
    p.add_argument("--batch-size", type=int, default=256)
    return p
