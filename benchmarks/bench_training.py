"""Training and inference throughput of the seed autoencoders: aekit against a plain PyTorch loop.

    python benchmarks/bench_training.py [--steps 300] [--batch-size 256] [--models fc conv]

For each model it prints, from one process: images/s of `Estimator.train` through
the public API (default hooks, summaries off and on), images/s of a bare PyTorch
loop over the same network, data and optimizer, their ratio, the FLOPs of one
training image (counted by torch's FlopCounterMode), the machine's measured
float32 matmul GFLOP/s, and the share of that floor reached; then predict
throughput, and the peak memory of a 60,000-image MNIST-sized data set.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import aekit
from aekit.data import numpy_input_fn, to_float
from aekit.models.heads import l2_of_weights


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def make(model: str, model_dir: str, summary_steps: int) -> aekit.Estimator:
    config = aekit.RunConfig(
        random_seed=0,
        save_summary_steps=summary_steps,
        log_step_count_steps=0,
        save_checkpoints_secs=None,
        save_checkpoints_steps=10**9,
    )
    if model == "fc":
        return aekit.AutoEncoder(model_dir=model_dir, config=config)
    return aekit.ConvolutionalAutoencoder(model_dir=model_dir, config=config)


def aekit_images_per_sec(
    model: str, x: np.ndarray, steps: int, batch: int, summaries: int
) -> float:
    with tempfile.TemporaryDirectory() as model_dir:
        est = make(model, model_dir, summaries)
        est.train(numpy_input_fn(x, batch_size=batch, num_epochs=None), steps=10)  # warm-up
        start = time.perf_counter()
        est.train(numpy_input_fn(x, batch_size=batch, num_epochs=None), steps=steps)
        return steps * batch / (time.perf_counter() - start)


def plain_images_per_sec(model: str, x: np.ndarray, steps: int, batch: int) -> float:
    with tempfile.TemporaryDirectory() as model_dir:
        net = make(model, model_dir, 0).network
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, 1000, 0.96)
    data = torch.from_numpy(x)

    def step(i: int) -> None:
        index = torch.randint(0, len(data), (batch,))
        images = to_float(data[index])
        logits, _ = net(images)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, images)
        loss = loss + 1e-5 * l2_of_weights(net)  # the same loss as the estimator's
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        schedule.step()

    for i in range(10):
        step(i)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    return steps * batch / (time.perf_counter() - start)


def flops_per_image(model: str, batch: int = 32) -> float:
    with tempfile.TemporaryDirectory() as model_dir:
        net = make(model, model_dir, 0).network
    x = torch.rand(batch, 28, 28)
    with FlopCounterMode(display=False) as counter:
        logits, _ = net(x)
        torch.nn.functional.binary_cross_entropy_with_logits(logits, x).backward()  # type: ignore[no-untyped-call]
    return float(counter.get_total_flops()) / batch


def predict_images_per_sec(model: str, x: np.ndarray) -> float:
    with tempfile.TemporaryDirectory() as model_dir:
        est = make(model, model_dir, 0)
        start = time.perf_counter()
        n = sum(len(b["embedding"]) for b in est.predict(
            numpy_input_fn(x, batch_size=1000, shuffle=False),
            predict_keys=["embedding"], yield_single_examples=False,
        ))  # fmt: skip
        return n / (time.perf_counter() - start)


def peak_rss_mb() -> float:
    """Peak memory (MB) of a fresh process that trains one FC epoch on 60,000 uint8 images."""
    code = (
        "import numpy as np, resource, tempfile, aekit\n"
        "from aekit.data import numpy_input_fn\n"
        "x = np.random.default_rng(0).integers(0, 256, (60000, 28, 28), dtype=np.uint8)\n"
        "est = aekit.AutoEncoder(model_dir=tempfile.mkdtemp(), config=aekit.RunConfig("
        "log_step_count_steps=0, save_summary_steps=0))\n"
        "est.train(numpy_input_fn(x, batch_size=256))\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--models", nargs="+", choices=["fc", "conv"], default=["fc", "conv"])
    args = parser.parse_args()
    x = np.random.default_rng(0).integers(0, 256, (10_000, 28, 28), dtype=np.uint8)
    gflops = matmul_gflops()
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads; float32 matmul {gflops:.0f} GFLOP/s")
    for model in args.models:
        steps = args.steps if model == "fc" else max(20, args.steps // 10)
        flops = flops_per_image(model)
        floor = gflops * 1e9 / flops
        plain = plain_images_per_sec(model, x, steps, args.batch_size)
        ours = aekit_images_per_sec(model, x, steps, args.batch_size, summaries=0)
        summarised = aekit_images_per_sec(model, x, steps, args.batch_size, summaries=100)
        rows = [
            ("plain PyTorch loop", plain, f"{plain / floor:.0%} of floor"),
            (
                "aekit, summaries off",
                ours,
                f"{ours / floor:.0%} of floor, {ours / plain:.2f}x plain",
            ),
            ("aekit, summaries / 100", summarised, f"summaries cost {1 - summarised / ours:.1%}"),
            ("predict (embedding)", predict_images_per_sec(model, x), ""),
        ]
        print(f"{model}: {flops / 1e6:.2f} MFLOP per training image, floor {floor:,.0f} images/s")
        for name, speed, note in rows:
            print(f"{model}: {name:<24} {speed:9,.0f} images/s  {note}")
    print(f"peak RSS, one FC epoch on 60,000 uint8 images: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
