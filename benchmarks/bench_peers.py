"""aekit against Keras 3 on the seed autoencoders, idle and on a busy machine.

    python benchmarks/bench_peers.py --peer-python PEER/bin/python \
        [--models fc conv] [--threads 2 1] [--busy 0 1 2] [--rounds 3] [--epochs N] [--bf16]

The peer is optional and lives in its own virtual environment (the suite never needs it):

    python -m venv PEER && PEER/bin/pip install tensorflow-cpu keras

Both sides train the same network (seed 000's FC or seed 004's conv autoencoder) on the
same 10,000 MNIST training images (../shared/data/mnist-full, else mnist-split, else random
pixels), batch 256, Adam at 1e-3 with the same decay, sigmoid cross-entropy on logits, L2
of 1e-5; each run is a fresh process (benchmarks/peers/*_fit.py) timing the epochs after a
warm-up one. `--busy K` starts K CPU-bound processes of its own for those runs and ends
them after. aekit runs at its defaults, which adapt the thread count to other load
(`RunConfig(cpu_threads="auto")`), and pinned to the given threads, so the table shows
what adapting buys and costs; `--bf16` adds aekit under `RunConfig(precision="bf16-mixed")`
(worth it on CPUs with AVX-512 BF16 or AMX; Keras stays float32). Keras runs with XLA on
and off and counts at its faster.
Rounds interleave every configuration; a speed is the best of its rounds (load only
slows a run), a ratio the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from aekit.data.mnist import load_data

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"
SIDES = ("keras", "aekit", "aekit pinned")


def training_images(count: int) -> tuple[np.ndarray, str]:
    for name in ("mnist-full", "mnist-split"):
        if (SHARED / name).is_dir():
            (x, _), _ = load_data(str(SHARED / name))
            return x[:count], f"the first {min(count, len(x)):,} {name} training images"
    pixels = np.random.default_rng(0).integers(0, 256, (count, 28, 28), dtype=np.uint8)
    return pixels, f"{count:,} random 28x28 images"


@contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """`count` processes that keep one core each busy, as other work on a shared machine."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def run(side: str, model: str, threads: int, data: Path, args: argparse.Namespace) -> float:
    # Each side sets its threads itself: OMP_NUM_THREADS slowed TensorFlow 4x here.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "KMP_"))}
    common = ["--model", model, "--threads", str(threads), "--data", str(data)]
    common += ["--epochs", str(args.epochs or {"fc": 10, "conv": 3}[model])]
    if side == "keras":
        script = str(HERE / "peers" / "keras_fit.py")
        return max(
            _images_per_s([args.peer_python, script, *common, xla], env)
            for xla in ("--xla", "--no-xla")
        )
    script = str(HERE / "peers" / "aekit_fit.py")
    extra = {"aekit pinned": ["--pin"], "aekit bf16": ["--precision", "bf16-mixed"]}
    return _images_per_s([sys.executable, script, *common, *extra.get(side, [])], env)


def _images_per_s(command: list[str], env: dict[str, str]) -> float:
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["images_per_s"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peer-python", help="the Python of the Keras environment (else aekit only)")
    p.add_argument("--models", nargs="+", default=["fc", "conv"], choices=["fc", "conv"])
    p.add_argument("--threads", nargs="+", type=int, default=[2, 1])
    p.add_argument("--busy", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, help="timed epochs (default: fc 10, conv 3)")
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--bf16", action="store_true", help="also aekit with bf16-mixed precision")
    args = p.parse_args()
    sides = (SIDES if args.peer_python else SIDES[1:]) + (("aekit bf16",) if args.bf16 else ())
    images, described = training_images(args.images)
    print(f"data: {described}; {os.cpu_count()} CPUs; {args.rounds} rounds", flush=True)
    speeds: dict[tuple[str, int, int, str], list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "images.npy"
        np.save(data, images)
        for r in range(args.rounds):
            for busy in args.busy:
                with busy_processes(busy):
                    for model in args.models:
                        for threads in args.threads:
                            for side in sides:
                                speed = run(side, model, threads, data, args)
                                speeds[model, threads, busy, side].append(speed)
                                print(f"round {r + 1} {model} threads={threads} busy={busy} "
                                      f"{side}: {speed:,.0f} images/s", flush=True)  # fmt: skip
    report(speeds, args, sides)


def report(
    speeds: dict[tuple[str, int, int, str], list[float]],
    args: argparse.Namespace,
    sides: tuple[str, ...],
) -> None:
    def ratio(a: tuple[str, int, int, str], b: tuple[str, int, int, str]) -> float:
        return statistics.median(x / y for x, y in zip(speeds[a], speeds[b], strict=True))

    print("\nmodel threads busy | " + " | ".join(sides) + " | aekit / keras | each side / its idle")
    for model in args.models:
        for threads in args.threads:
            for busy in args.busy:
                key = (model, threads, busy)
                cells = [f"{max(speeds[*key, s]):,.0f}" for s in sides]
                vs_peer = ""
                if "keras" in sides:
                    vs_peer = " / ".join(
                        f"{ratio((*key, s), (*key, 'keras')):.2f}x" for s in sides[1:]
                    )
                idle = " / ".join(f"{ratio((*key, s), (model, threads, 0, s)):.0%}" for s in sides)
                print(f"{model} {threads} {busy} | " + " | ".join(cells) + f" | {vs_peer} | {idle}")


if __name__ == "__main__":
    main()
