"""float32 against bfloat16 mixed precision on this CPU: training speed and test RMSE.

    python benchmarks/bench_precision.py [--data-dir ../shared/data/mnist-split] [--epochs 5]
        [--models fc conv] [--rounds 3]

For each seed autoencoder it trains the same model from the same seed with
RunConfig(precision="32") and precision="bf16-mixed", epoch by epoch, and prints the
training images/s of each (best of the interleaved rounds), their median ratio, and the
test RMSE each reaches. bf16 pays only where the CPU has bfloat16 instructions
(AVX-512 BF16 or AMX; lscpu's flags say); elsewhere autocast's casts cost time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import aekit
from aekit.data import mnist, numpy_input_fn
from aekit.estimator.run_config import Precision


def build(model: str, model_dir: str, precision: Precision) -> aekit.Estimator:
    config = aekit.RunConfig(
        random_seed=0, precision=precision, save_summary_steps=0, log_step_count_steps=0,
        save_checkpoints_secs=None, save_checkpoints_steps=10**9,
    )  # fmt: skip
    if model == "fc":
        return aekit.AutoEncoder(model_dir=model_dir, config=config)
    return aekit.ConvolutionalAutoencoder(model_dir=model_dir, config=config)


def run(
    model: str, precision: Precision, x: np.ndarray, x_test: np.ndarray, epochs: int
) -> tuple[float, float]:
    """(training images/s, test RMSE) of one run."""
    with tempfile.TemporaryDirectory() as model_dir:
        est = build(model, model_dir, precision)
        elapsed = 0.0
        for _ in range(epochs):
            start = time.perf_counter()
            est.train(numpy_input_fn(x, batch_size=256))
            elapsed += time.perf_counter() - start
        rmse = est.evaluate(numpy_input_fn(x_test, batch_size=1000, shuffle=False))["rmse"]
    return epochs * len(x) / elapsed, rmse


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data-dir", default=str(Path("..") / "shared" / "data" / "mnist-split"))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--models", nargs="+", choices=["fc", "conv"], default=["fc", "conv"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    (x, _), (x_test, _) = mnist.load_data(args.data_dir)
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"avx512_bf16={'avx512_bf16' in flags}, amx_bf16={'amx_bf16' in flags}; "
        f"{len(x):,} training images, {args.epochs} epochs"
    )
    for model in args.models:
        speeds: dict[Precision, list[float]] = {"32": [], "bf16-mixed": []}
        rmse: dict[Precision, float] = {}
        for _ in range(args.rounds):
            for precision in speeds:
                speed, rmse[precision] = run(model, precision, x, x_test, args.epochs)
                speeds[precision].append(speed)
        ratio = statistics.median(
            b / a for a, b in zip(speeds["32"], speeds["bf16-mixed"], strict=True)
        )
        for precision, values in speeds.items():
            print(
                f"{model}: precision={precision:<10} {max(values):9,.0f} images/s  "
                f"test RMSE {rmse[precision]:.4f}"
            )
        print(f"{model}: bf16-mixed / 32 speed ratio (median of rounds): {ratio:.2f}x")


if __name__ == "__main__":
    main()
