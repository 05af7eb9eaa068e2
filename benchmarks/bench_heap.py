"""What keeping freed activations on the heap buys: training steps with glibc's defaults and tuned.

    python benchmarks/bench_heap.py [--models fc conv] [--rounds 3] [--threads 2]

Each measurement is a fresh process (malloc's settings are per process) running aekit's
training step (model_fn, backward, Adam) on a batch of 256 for a fixed number of steps,
with glibc's malloc as it comes or after `aekit.estimator.cpu.reuse_heap_pages()`, which
the Estimator calls when it trains on the CPU. It prints images/s and the minor page
faults per step; rounds interleave the two, a speed is the best of its rounds and the
ratio the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

WORKER = """
import json, resource, sys, tempfile, time, torch, aekit
from aekit.data import to_float
from aekit.estimator import cpu
from aekit.models.heads import reconstruction_model_fn
model, tuned, threads = sys.argv[1], sys.argv[2] == "tuned", int(sys.argv[3])
torch.set_num_threads(threads)
if tuned:
    assert cpu.reuse_heap_pages()
kind = aekit.AutoEncoder if model == "fc" else aekit.ConvolutionalAutoencoder
est = kind(model_dir=tempfile.mkdtemp())
net, params, optimizer = est.network, est.params, est.optimizer
x = torch.randint(0, 256, (256, 28, 28), dtype=torch.uint8)
def step():
    loss = reconstruction_model_fn(net, to_float(x), None, aekit.ModeKeys.TRAIN, params).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
steps = 400 if model == "fc" else 40
for _ in range(5):
    step()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
start = time.perf_counter()
for _ in range(steps):
    step()
seconds = time.perf_counter() - start
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
print(json.dumps({"images_per_s": steps * 256 / seconds, "faults_per_step": faults / steps}))
"""


def measure(model: str, tuned: bool, threads: int) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", WORKER, model, "tuned" if tuned else "default", str(threads)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--models", nargs="+", default=["fc", "conv"], choices=["fc", "conv"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    runs: dict[tuple[str, bool], list[dict[str, float]]] = {}
    for _ in range(args.rounds):
        for model in args.models:
            for tuned in (False, True):
                runs.setdefault((model, tuned), []).append(measure(model, tuned, args.threads))
    print(f"{args.threads} threads, batch 256, best of {args.rounds} interleaved rounds")
    print("model | glibc defaults: images/s, faults/step | tuned: images/s, faults/step | ratio")
    for model in args.models:
        default, kept = runs[model, False], runs[model, True]
        ratio = statistics.median(
            t["images_per_s"] / d["images_per_s"] for d, t in zip(default, kept, strict=True)
        )
        print(
            f"{model} | {max(r['images_per_s'] for r in default):,.0f}, "
            f"{statistics.median(r['faults_per_step'] for r in default):,.0f} | "
            f"{max(r['images_per_s'] for r in kept):,.0f}, "
            f"{statistics.median(r['faults_per_step'] for r in kept):,.1f} | {ratio:.2f}x"
        )


if __name__ == "__main__":
    main()
