"""Training and inference throughput of the seed autoencoders: aekit against a plain PyTorch loop.

    python benchmarks/bench_training.py [--steps 300] [--rounds 3] [--models fc conv] [--compile]

For each model it prints, from one process: images/s of a plain eager PyTorch loop
(NCHW, torch.optim.Adam's defaults, advanced indexing: what one writes by hand);
of `Estimator.train` through the public API with summaries and logging off, at
their default settings, and compiled; of aekit's own step (model_fn, optimizer)
in a loop with no Estimator around it, which prices the hooks and summaries; the
FLOPs of one training image (torch's FlopCounterMode), the machine's float32
matmul GFLOP/s and the share of that floor reached; for the FC model, the rate of
its step's matrix products run alone, which bounds what any loop around them can
reach; predict throughput; and the peak memory of training on a 60,000-image data
set against what it must hold.

Speeds are the best of the interleaved rounds (other load only ever slows a run);
ratios between two configurations are the median of the ratios within each round,
which cancels most of the drift of a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import aekit
from aekit.data import numpy_input_fn, to_float


def matmul_gflops(n: int = 2048, repeats: int = 10, rounds: int = 3) -> float:
    """The best float32 matrix-product rate of a few rounds, in GFLOP/s."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9)
    return best


def make(
    model: str, model_dir: str, summary_steps: int = 0, log_steps: int = 0, **options: object
) -> aekit.Estimator:
    config = aekit.RunConfig(
        random_seed=0,
        save_summary_steps=summary_steps,
        log_step_count_steps=log_steps,
        save_checkpoints_secs=None,
        save_checkpoints_steps=10**9,
        compile=bool(options.pop("compile", False)),
    )
    if model == "fc":
        return aekit.AutoEncoder(model_dir=model_dir, config=config)
    return aekit.ConvolutionalAutoencoder(model_dir=model_dir, config=config, **options)  # type: ignore[arg-type]


def timed(step: Callable[[], None], steps: int, batch: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


def aekit_images_per_sec(
    model: str, x: np.ndarray, steps: int, batch: int, **settings: object
) -> float:
    with tempfile.TemporaryDirectory() as model_dir:
        est = make(model, model_dir, **settings)  # type: ignore[arg-type]
        est.train(numpy_input_fn(x, batch_size=batch, num_epochs=None), steps=10)  # warm-up
        start = time.perf_counter()
        est.train(numpy_input_fn(x, batch_size=batch, num_epochs=None), steps=steps)
        return steps * batch / (time.perf_counter() - start)


def bare_step_images_per_sec(model: str, x: np.ndarray, steps: int, batch: int) -> float:
    """aekit's model_fn and optimizer in a loop with no Estimator, hooks or summaries."""
    with tempfile.TemporaryDirectory() as model_dir:
        est = make(model, model_dir)
    net, optimizer, params = est.network, est.optimizer, est.params
    assert isinstance(net, aekit.models.heads.ReconstructionNetwork)
    data = torch.from_numpy(x)
    model_fn = aekit.models.heads.reconstruction_model_fn

    def step() -> None:
        images = to_float(data.index_select(0, torch.randint(0, len(data), (batch,))))
        loss = model_fn(net, images, None, aekit.ModeKeys.TRAIN, params).loss
        assert loss is not None
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()

    return timed(step, steps, batch)


def plain_images_per_sec(model: str, x: np.ndarray, steps: int, batch: int) -> float:
    """The loop one writes by hand: NCHW, default Adam, autograd L2, advanced indexing."""
    with tempfile.TemporaryDirectory() as model_dir:
        net = make(model, model_dir, channels_last=False).network
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, 1000, 0.96)
    data = torch.from_numpy(x)
    weights = [p for p in net.parameters() if p.dim() > 1]

    def step() -> None:
        images = data[torch.randint(0, len(data), (batch,))].float() / 255
        logits, _ = net(images)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, images)
        loss = loss + 1e-5 * 0.5 * sum(w.square().sum() for w in weights)  # the seed's L2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        schedule.step()

    return timed(step, steps, batch)


def matmul_only_images_per_sec(model: str, steps: int, batch: int) -> float:
    """The FC step's matrix products alone (forward, weight and input gradients)."""
    with tempfile.TemporaryDirectory() as model_dir:
        net = make(model, model_dir).network
    layers = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    acts = [torch.rand(batch, m.in_features) for m in layers]
    grads = [torch.rand(batch, m.out_features) for m in layers]

    def products() -> None:
        for i, (m, a, g) in enumerate(zip(layers, acts, grads, strict=True)):
            torch.addmm(m.bias, a, m.weight.t())
            torch.mm(g.t(), a)
            if i:  # no gradient is needed for the input images
                torch.mm(g, m.weight)

    return timed(products, steps, batch)


def flops_per_image(model: str, batch: int = 32) -> float:
    with tempfile.TemporaryDirectory() as model_dir:
        net = make(model, model_dir).network
    x = torch.rand(batch, 28, 28)
    with FlopCounterMode(display=False) as counter:
        logits, _ = net(x)
        torch.nn.functional.binary_cross_entropy_with_logits(logits, x).backward()  # type: ignore[no-untyped-call]
    return float(counter.get_total_flops()) / batch


def predict_images_per_sec(model: str, x: np.ndarray) -> float:
    with tempfile.TemporaryDirectory() as model_dir:
        est = make(model, model_dir)
        est.save_checkpoint()  # predict refuses an untrained model; its weights are as good
        start = time.perf_counter()
        n = sum(len(b["embedding"]) for b in est.predict(
            numpy_input_fn(x, batch_size=1000, shuffle=False),
            predict_keys=["embedding"], yield_single_examples=False,
        ))  # fmt: skip
        return n / (time.perf_counter() - start)


# VmHWM is the peak of this process image alone; ru_maxrss would carry the parent's
# peak across fork + exec and so overstate it.
_RSS = (
    "import re; print(int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1])"
    " / 1024)\n"
)
_SETUP = (
    "import numpy as np, tempfile, aekit\n"
    "from aekit.data import numpy_input_fn\n"
    "est = aekit.AutoEncoder(model_dir=tempfile.mkdtemp(), config=aekit.RunConfig("
    "log_step_count_steps=0, save_summary_steps=0))\n"
)


def _peak_rss_mb(code: str) -> float:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def peak_rss_mb() -> tuple[float, float]:
    """Peak RSS (MB) of one FC epoch on 60,000 uint8 images, and of the same process
    training 1,000 steps on 256 images, which holds the runtime and model but no data."""
    full = _peak_rss_mb(
        _SETUP + "x = np.random.default_rng(0).integers(0, 256, (60000, 28, 28), dtype=np.uint8)\n"
        "est.train(numpy_input_fn(x, batch_size=256))\n" + _RSS
    )
    runtime = _peak_rss_mb(
        _SETUP + "x = np.random.default_rng(0).integers(0, 256, (256, 28, 28), dtype=np.uint8)\n"
        "est.train(numpy_input_fn(x, batch_size=256, num_epochs=None), steps=235)\n" + _RSS
    )
    return full, runtime


def bench_model(
    model: str, x: np.ndarray, steps: int, batch: int, rounds: int, compile: bool, gflops: float
) -> None:
    """Print one model's rows: each the best of `rounds` interleaved runs."""
    flops = flops_per_image(model)
    floor = gflops * 1e9 / flops
    runs: dict[str, Callable[[], float]] = {
        "plain": lambda: plain_images_per_sec(model, x, steps, batch),
        "bare": lambda: bare_step_images_per_sec(model, x, steps, batch),
        "quiet": lambda: aekit_images_per_sec(model, x, steps, batch),
        "default": lambda: aekit_images_per_sec(
            model, x, steps, batch, summary_steps=100, log_steps=100
        ),
    }
    if compile:
        runs["compiled"] = lambda: aekit_images_per_sec(model, x, steps, batch, compile=True)
    if model == "fc":
        runs["matmuls"] = lambda: matmul_only_images_per_sec(model, steps, batch)
    speeds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            speeds[name].append(run())
    best = {name: max(values) for name, values in speeds.items()}

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(speeds[a], speeds[b], strict=True))

    plain, bare, quiet, default = (best[k] for k in ("plain", "bare", "quiet", "default"))
    rows = [
        ("plain PyTorch loop", plain, f"{plain / floor:.0%} of floor"),
        ("aekit step, no Estimator", bare, f"{ratio('bare', 'plain'):.2f}x plain"),
        ("aekit, summaries off", quiet,
         f"{quiet / floor:.0%} of floor, {ratio('quiet', 'plain'):.2f}x plain"),
        ("aekit, default settings", default,
         f"{ratio('default', 'plain'):.2f}x plain; hooks and summaries cost "
         f"{1 - ratio('default', 'quiet'):.1%}"),
    ]  # fmt: skip
    if compile:
        compiled = best["compiled"]
        rows.append(("aekit, compile=True", compiled, f"{ratio('compiled', 'plain'):.2f}x plain"))
    if model == "fc":
        rows.append(("matrix products alone", best["matmuls"],
                     f"{best['matmuls'] / floor:.0%} of floor; any loop <= "
                     f"{ratio('matmuls', 'plain'):.2f}x plain"))  # fmt: skip
    rows.append(("predict (embedding)", predict_images_per_sec(model, x), ""))
    print(f"{model}: {flops / 1e6:.2f} MFLOP per training image, floor {floor:,.0f} images/s")
    for name, speed, note in rows:
        print(f"{model}: {name:<25} {speed:9,.0f} images/s  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--models", nargs="+", choices=["fc", "conv"], default=["fc", "conv"])
    parser.add_argument("--compile", action="store_true", help="also time RunConfig(compile=True)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (best kept)")
    args = parser.parse_args()
    x = np.random.default_rng(0).integers(0, 256, (10_000, 28, 28), dtype=np.uint8)
    gflops = matmul_gflops()
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads; float32 matmul {gflops:.0f} GFLOP/s")
    for model in args.models:
        steps = args.steps if model == "fc" else max(20, args.steps // 10)
        bench_model(model, x, steps, args.batch_size, args.rounds, args.compile, gflops)
    full, runtime = peak_rss_mb()
    data_mb = 60_000 * 28 * 28 / 2**20
    print(
        f"peak RSS, one FC epoch on 60,000 uint8 images: {full:.0f} MB; runtime and model "
        f"{runtime:.0f} MB + data {data_mb:.0f} MB = {runtime + data_mb:.0f} MB "
        f"-> {full / (runtime + data_mb):.2f}x"
    )


if __name__ == "__main__":
    main()
