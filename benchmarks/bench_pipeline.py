"""How fast the input pipeline makes batches, beside one training step of the seed FC model.

    python benchmarks/bench_pipeline.py [--examples 60000] [--batch-size 256]

Prints batches/sec of `numpy_input_fn` alone (shuffled, uint8 -> float, with and
without Gaussian noise) on MNIST-sized data, and the time of one training step of
the seed's fully-connected autoencoder on the same batches, so the ratio shows
whether the pipeline could ever hold training back.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from aekit.data import numpy_input_fn


def batches_per_sec(batches: Iterable[object], limit: int) -> float:
    start = time.perf_counter()
    count = 0
    for _ in batches:
        count += 1
        if count >= limit:
            break
    return count / (time.perf_counter() - start)


def seed_fc_autoencoder() -> nn.Module:
    sizes = [784, 128, 64, 32, 64, 128]
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(128, 784))
    return nn.Sequential(*layers)


def step_seconds(batch_size: int, steps: int = 50) -> float:
    net = seed_fc_autoencoder()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.rand(batch_size, 784)
    for i in range(steps + 10):
        if i == 10:
            start = time.perf_counter()
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(net(x), x)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=60_000)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    images = np.random.default_rng(0).integers(0, 256, (args.examples, 784), dtype=np.uint8)
    epoch = args.examples // args.batch_size
    plain = batches_per_sec(numpy_input_fn(images, batch_size=args.batch_size, seed=0)(), epoch)
    noisy = batches_per_sec(
        numpy_input_fn(images, batch_size=args.batch_size, seed=0, noise_factor=0.5)(), epoch
    )
    step = step_seconds(args.batch_size)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.examples} examples of 784 uint8 pixels, batch {args.batch_size}"
    )
    print(f"pipeline, shuffle + to float:          {plain:9.0f} batches/s")
    print(f"pipeline, shuffle + to float + noise:  {noisy:9.0f} batches/s")
    print(f"training step of the seed FC model:    {1 / step:9.0f} steps/s ({step * 1e3:.2f} ms)")
    print(f"pipeline time per training step:       {100 / (noisy * step):8.1f} % (with noise)")


if __name__ == "__main__":
    main()
