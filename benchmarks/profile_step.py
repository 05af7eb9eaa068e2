"""Where a training step's time goes, operation by operation (torch.profiler).

    python benchmarks/profile_step.py [--model conv] [--threads 2] [--steps 10] [--rows 20]

Runs aekit's training step of a seed model (model_fn, backward, Adam; batch 256,
channels_last for conv, the heap kept as the Estimator keeps it) and prints the
operations with the most time of their own, grouped by input shapes so that each
layer's forward and backward convolutions show up on rows of their own.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from torch.profiler import ProfilerActivity, profile

import aekit
from aekit.data import to_float
from aekit.estimator.cpu import reuse_heap_pages
from aekit.models.heads import reconstruction_model_fn


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--model", choices=["fc", "conv"], default="conv")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rows", type=int, default=20)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    reuse_heap_pages()
    kind = aekit.AutoEncoder if args.model == "fc" else aekit.ConvolutionalAutoencoder
    est = kind(model_dir=tempfile.mkdtemp())
    net, params, optimizer = est.network, est.params, est.optimizer
    assert isinstance(net, aekit.models.heads.ReconstructionNetwork)
    x = torch.randint(0, 256, (256, 28, 28), dtype=torch.uint8)

    def step() -> None:
        loss = reconstruction_model_fn(net, to_float(x), None, aekit.ModeKeys.TRAIN, params).loss
        assert loss is not None
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()

    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    per_step = (time.perf_counter() - start) / args.steps
    print(f"{args.model}: {per_step * 1e3:.1f} ms per step, {256 / per_step:,.0f} images/s")
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(args.steps):
            step()
    table = prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=36,
        max_shapes_column_width=70,
    )  # fmt: skip
    print(table)


if __name__ == "__main__":
    main()
