"""What the seed-faithful summaries cost: training speed with them at the default interval vs off.

    python benchmarks/bench_summaries.py [--steps 1000] [--model fc|conv]

Trains the seed autoencoder through the public API twice on the same data, once
with `save_summary_steps=100` (the default: loss, learning rate, gradient norm,
activation histograms and zero fractions, parameter histograms, images) and once
with summaries off, and prints both speeds and the slowdown.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

import aekit
from aekit.data import numpy_input_fn


def images_per_sec(model: str, summary_steps: int, steps: int, batch_size: int) -> float:
    x = np.random.default_rng(0).integers(0, 256, (10_000, 28, 28), dtype=np.uint8)
    config = aekit.RunConfig(
        random_seed=0,
        save_summary_steps=summary_steps,
        log_step_count_steps=0,
        save_checkpoints_secs=None,
        save_checkpoints_steps=10**9,
    )
    with tempfile.TemporaryDirectory() as model_dir:
        est: aekit.Estimator = (
            aekit.AutoEncoder(model_dir=model_dir, config=config)
            if model == "fc"
            else aekit.ConvolutionalAutoencoder(model_dir=model_dir, config=config)
        )
        est.train(numpy_input_fn(x, batch_size=batch_size, num_epochs=None), max_steps=20)
        start = time.perf_counter()
        est.train(numpy_input_fn(x, batch_size=batch_size, num_epochs=None), steps=steps)
        return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--model", choices=["fc", "conv"], default="fc")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    off, on = [], []
    for _ in range(args.repeats):  # interleaved, best of each, to even out machine noise
        off.append(images_per_sec(args.model, 0, args.steps, args.batch_size))
        on.append(images_per_sec(args.model, 100, args.steps, args.batch_size))
    print(f"{args.model}: summaries off {max(off):9.0f} images/s")
    print(f"{args.model}: every 100     {max(on):9.0f} images/s")
    print(f"slowdown: {100 * (1 - max(on) / max(off)):.1f} %")


if __name__ == "__main__":
    main()
