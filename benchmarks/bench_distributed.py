"""Data-parallel scaling: the seed autoencoders trained by 1 and by 2 processes under torchrun.

    python benchmarks/bench_distributed.py [--steps 300] [--models fc conv] [--rounds 2]

Each configuration is a real `torchrun --standalone` job (gloo on the CPU, NCCL with
one GPU per process where GPUs are present) that trains through the public
Estimator API on 10,000 uint8 28x28 images; rank 0 times `steps` steps after a
warm-up, between barriers, and the job's images/s is global batch x steps / time.
Rows: one process with every core's threads (what a single process gets), one
process with one thread, and two processes with one thread each, at the same
global batch (2 x 128 = 256: the same optimisation as one process) and at
2 x 256, and the last once more with DDP's find_unused_parameters on (what
aekit avoids by freezing the parameters outside the optimizer: it prices that
choice). Scaling efficiency is the 2-process rate over twice the 1-thread
1-process rate; the speed-up is over the best single process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def worker(model: str, batch: int, steps: int, model_dir: str, find_unused: bool) -> None:
    """One process of a job: train, time, and (rank 0) print {"images_per_sec": ...}."""
    import numpy as np
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    import aekit
    from aekit.data import numpy_input_fn
    from aekit.estimator.distributed import Strategy

    if find_unused:

        def wrap(
            self: Strategy, module: torch.nn.Module, device: torch.device
        ) -> DistributedDataParallel:
            return DistributedDataParallel(module, find_unused_parameters=True)

        Strategy.wrap = wrap  # type: ignore[method-assign]

    config = aekit.RunConfig(
        random_seed=0,
        save_summary_steps=0,
        log_step_count_steps=0,
        save_checkpoints_secs=None,
        save_checkpoints_steps=10**9,
    )
    x = np.random.default_rng(0).integers(0, 256, (10_000, 28, 28), dtype=np.uint8)
    est = (
        aekit.AutoEncoder(model_dir=model_dir, config=config)
        if model == "fc"
        else aekit.ConvolutionalAutoencoder(model_dir=model_dir, config=config)
    )
    est.train(numpy_input_fn(x, batch_size=batch, num_epochs=None), steps=5)  # warm-up
    world = dist.get_world_size() if dist.is_initialized() else 1
    if dist.is_initialized():
        dist.barrier()
    start = time.perf_counter()
    est.train(numpy_input_fn(x, batch_size=batch, num_epochs=None), steps=steps)
    if dist.is_initialized():
        dist.barrier()
    elapsed = time.perf_counter() - start
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(json.dumps({"images_per_sec": batch * world * steps / elapsed}))


def job(
    model: str, processes: int, threads: int, batch: int, steps: int, find_unused: bool
) -> float:
    """Images/s of one torchrun job."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    with tempfile.TemporaryDirectory() as model_dir:  # one for the job: every rank must share it
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={processes}", __file__, "--worker", model, str(batch), str(steps),
            model_dir, str(int(find_unused)),
        ]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"the {processes}-process {model} job failed:\n{out.stderr[-3000:]}")
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    return float(json.loads(lines[-1])["images_per_sec"])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6] == "1")
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="FC steps (conv: a tenth)")
    parser.add_argument("--models", nargs="+", choices=["fc", "conv"], default=["fc", "conv"])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions (best kept)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    import torch

    print(f"torch {torch.__version__}, {cores} cores; images/s of the whole job")
    for model in args.models:
        steps = args.steps if model == "fc" else max(20, args.steps // 10)
        configs = {  # name: (processes, threads per process, batch per process, find unused)
            f"1 process x {cores} threads, batch 256": (1, cores, 256, False),
            "1 process x 1 thread, batch 256": (1, 1, 256, False),
            "2 processes x 1 thread, batch 2 x 128": (2, 1, 128, False),
            "2 processes x 1 thread, batch 2 x 256": (2, 1, 256, False),
            "2 processes, 2 x 256, find_unused_parameters": (2, 1, 256, True),
        }
        best = dict.fromkeys(configs, 0.0)
        for _ in range(args.rounds):
            for name, (processes, threads, batch, unused) in configs.items():
                speed = job(model, processes, threads, batch, steps, unused)
                best[name] = max(best[name], speed)
        single_best, one_thread = list(best.values())[:2]
        for name, speed in best.items():
            note = ""
            if name.startswith("2 processes"):
                note = (
                    f"efficiency {speed / (2 * one_thread):.0%}, "
                    f"{speed / single_best:.2f}x the best single process"
                )
            print(f"{model}: {name:<45} {speed:9,.0f} images/s  {note}")


if __name__ == "__main__":
    main()
