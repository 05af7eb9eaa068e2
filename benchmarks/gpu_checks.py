"""The GPU checks of ../shared/GPU.md in one process, for the short time a GPU is lent.

    python benchmarks/gpu_checks.py [--device cuda] [--data DIR] [--out DIR]
        [--parts speed sync agree checkpoint] [--resume-checkpoint DIR]

Parts, each printing a table and adding to `OUT/gpu_checks.json`:

- sync: FC, conv and VAE, eager and compiled, trained through `Estimator.train` with
  `torch.cuda.set_sync_debug_mode("warn")` on from the step after a logging step to the
  next logging step; every synchronisation the loop makes there is listed with its step
  and the aekit frames that made it.
- speed: images/s of `Estimator.train` for FC and conv at several batch sizes, eager,
  compiled and compiled under bf16-mixed; peak GPU memory; CUDA kernels and GPU-busy time
  per step (torch.profiler), so the launch-bound floor can be read off; the FLOP floor at
  the card's measured float32 and bf16 matrix rates; the wall time of one 60,000-image
  epoch, compiled, data resident on the GPU.
- agree: the same seed, data and order on the CPU and on `--device`: the first 100
  training losses, and the initial weights.
- checkpoint: resumes the checkpoint directory given by `--resume-checkpoint` (written on
  another device) here, and writes one from here to `OUT/checkpoint-<device>.tar.gz`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.autograd import DeviceType  # type: ignore[attr-defined]
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

import aekit
from aekit.data import load_data, numpy_input_fn
from aekit.hooks import Hook
from aekit.hooks.base import RunContext, StepResult

MODELS = ("fc", "conv", "vae")


def make(model: str, device: str, log_steps: int = 0, **settings: Any) -> aekit.Estimator:
    """A seed model writing nothing between checkpoints, in a fresh temporary directory."""
    config = aekit.RunConfig(
        device=device,
        random_seed=settings.pop("seed", 0),
        save_summary_steps=log_steps,
        log_step_count_steps=log_steps,
        save_checkpoints_secs=None,
        save_checkpoints_steps=10**9,
        **settings,
    )
    model_dir = tempfile.mkdtemp(prefix=f"gpu-{model}-")
    kind = {
        "fc": aekit.AutoEncoder,
        "conv": aekit.ConvolutionalAutoencoder,
        "vae": aekit.VariationalAutoencoder,
    }[model]
    return kind(model_dir=model_dir, config=config)  # type: ignore[no-any-return]


def flops_per_image(model: str, batch: int = 32) -> float:
    """Forward and backward FLOPs of one training image (counted on the CPU)."""
    net = make(model, "cpu").network
    x = torch.rand(batch, 28, 28)
    with FlopCounterMode(display=False) as counter:
        logits, _ = net(x)
        torch.nn.functional.binary_cross_entropy_with_logits(logits, x).backward()  # type: ignore[no-untyped-call]
    return float(counter.get_total_flops()) / batch


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class StepTimer(Hook):
    """Wall time of the steps after `warmup` up to `warmup + steps`, the device drained."""

    def __init__(self, device: str, warmup: int, steps: int) -> None:
        self.device, self.warmup, self.steps = device, warmup, steps
        self.first_step = self.start = self.seconds = 0.0
        self._begun = 0.0

    def after_create_session(self, context: RunContext) -> None:
        self._begun = time.perf_counter()

    def after_run(self, context: RunContext, result: StepResult) -> None:
        step = context.global_step
        if step == 1:
            synchronize(self.device)
            self.first_step = time.perf_counter() - self._begun
        if step == self.warmup:
            synchronize(self.device)
            self.start = time.perf_counter()
        if step == self.warmup + self.steps:
            synchronize(self.device)
            self.seconds = time.perf_counter() - self.start


class Profiled(Hook):
    """CUDA kernels and their summed time over `steps` steps after `warmup`."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
        self.kernels = self.busy_us = 0.0

    def before_run(self, context: RunContext) -> None:
        if context.global_step == self.warmup:
            torch.cuda.synchronize()
            self.prof.start()

    def after_run(self, context: RunContext, result: StepResult) -> None:
        if context.global_step == self.warmup + self.steps:
            torch.cuda.synchronize()
            self.prof.stop()
            kernels = [
                e
                for e in self.prof.events()  # type: ignore[no-untyped-call]
                if e.device_type == DeviceType.CUDA
            ]
            self.kernels = len(kernels) / self.steps
            self.busy_us = sum(e.device_time for e in kernels) / self.steps


class SyncWatch(Hook):
    """Turns CUDA's sync debug mode to "warn" between logging steps and records each sync.

    The watched stretch runs from this hook's `before_run` of a quiet step (one that is
    neither a logging step nor in the first interval, where compilation runs) to its
    `before_run` of the next logging step, so the input pipeline, the step and every
    hook's `after_run` of the quiet steps are inside it.
    """

    def __init__(self, every: int, last: int) -> None:
        self.every, self.last = every, last
        self.watched: list[int] = []
        self.syncs: list[dict[str, Any]] = []
        self._step = 0

    def before_run(self, context: RunContext) -> None:
        self._step = context.global_step + 1
        quiet = self.every < self._step < self.last and self._step % self.every != 0
        torch.cuda.set_sync_debug_mode("warn" if quiet else "default")
        if quiet:
            self.watched.append(self._step)

    def end(self, context: RunContext) -> None:
        torch.cuda.set_sync_debug_mode("default")

    def record(self, message: str) -> None:
        if "prototype" in message:  # torch's notice on turning the mode on
            return
        frames = [
            f"{Path(f.filename).name}:{f.lineno} {f.name}"
            for f in traceback.extract_stack()
            if "aekit" in f.filename or "gpu_checks" in f.filename
        ]
        self.syncs.append({"step": self._step, "message": message[:120], "frames": frames[-6:]})


def endless(x: np.ndarray, batch: int, shuffle: bool = True) -> Any:
    return numpy_input_fn(x, batch_size=batch, num_epochs=None, shuffle=shuffle, seed=0)


def check_sync(x: np.ndarray, device: str, every: int = 50) -> list[dict[str, Any]]:
    rows = []
    for model in MODELS:
        for compiled in (False, True):
            est = make(model, device, log_steps=every, compile=compiled)
            watch = SyncWatch(every, last=3 * every + 10)
            row: dict[str, Any] = {"model": model, "compiled": compiled}
            with warnings.catch_warnings(record=False):
                original = warnings.showwarning

                def show(message: Warning | str, *args: Any, _w: SyncWatch = watch) -> None:
                    if "synchroniz" in str(message):
                        _w.record(str(message))

                warnings.showwarning = show  # type: ignore[assignment]
                warnings.simplefilter("always")
                try:
                    est.train(endless(x, 256), steps=3 * every + 10, hooks=[watch])
                except Exception as error:  # recorded, so one lease reports every failure
                    row["error"] = "".join(traceback.format_exception(error))[-2000:]
                finally:
                    warnings.showwarning = original
                    torch.cuda.set_sync_debug_mode("default")
            row["watched_steps"] = len(watch.watched)
            row["syncs"] = len(watch.syncs)
            row["first_syncs"] = watch.syncs[:3]
            row["steps_with_syncs"] = sorted({s["step"] for s in watch.syncs})
            rows.append(row)
            print(
                f"sync {model:5s} {'compiled' if compiled else 'eager':8s}: "
                f"{len(watch.syncs)} syncs in {len(watch.watched)} watched steps, at steps "
                f"{row['steps_with_syncs'][:10]}"
                + (f"  ERROR {row['error'].splitlines()[-1]}" if "error" in row else ""),
                flush=True,
            )
            for s in watch.syncs[:3]:
                print(f"    step {s['step']}: {s['message']}  <- {' | '.join(s['frames'])}")
    return rows


def train_speed(
    x: np.ndarray, model: str, device: str, batch: int, compiled: bool, precision: str
) -> dict[str, Any]:
    steps = max(40, 200 * 256 // batch)
    warmup = 15
    est = make(model, device, compile=compiled, precision=precision)
    timer = StepTimer(device, warmup, steps)
    row: dict[str, Any] = {
        "model": model,
        "batch": batch,
        "mode": ("compiled" if compiled else "eager") + ("" if precision == "32" else "+bf16"),
    }
    try:
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        est.train(endless(x, batch), steps=warmup + steps, hooks=[timer])
        row["images_per_s"] = steps * batch / timer.seconds
        row["first_step_s"] = timer.first_step
        if device.startswith("cuda"):
            row["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
            prof = Profiled(warmup=5, steps=5)
            est.train(endless(x, batch), steps=10, hooks=[prof])
            row["kernels_per_step"] = prof.kernels
            row["gpu_busy_us_per_step"] = prof.busy_us
            row["wall_us_per_step"] = 1e6 * timer.seconds / steps
    except Exception as error:
        row["error"] = "".join(traceback.format_exception(error))[-2000:]
    shutil.rmtree(est.model_dir, ignore_errors=True)
    return row


def matmul_tflops(device: str, dtype: torch.dtype, n: int = 8192) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    synchronize(device)
    return 2 * n**3 * 10 / (time.perf_counter() - start) / 1e12


def epoch_seconds(x_full: np.ndarray, model: str, device: str) -> float:
    """Wall time of compiled `train` over one 60,000-image epoch, after a warm one."""
    est = make(model, device, compile=True)
    fn = numpy_input_fn(x_full, batch_size=256, num_epochs=1, shuffle=True, seed=0)
    est.train(fn)
    synchronize(device)
    start = time.perf_counter()
    est.train(fn)
    synchronize(device)
    shutil.rmtree(est.model_dir, ignore_errors=True)
    return time.perf_counter() - start


SPEED_RUNS = [  # (model, batch, compiled, precision), most wanted first: a lease may end early
    *[(m, 256, c, "32") for m in ("fc", "conv") for c in (False, True)],
    *[(m, 256, True, "bf16-mixed") for m in ("fc", "conv")],
    *[(m, 4096, c, "32") for m in ("fc", "conv") for c in (False, True)],
    *[(m, 16384, False, "32") for m in ("fc", "conv")],
    *[(m, 4096, True, "bf16-mixed") for m in ("fc", "conv")],
]


def check_speed(
    x: np.ndarray,
    x_full: np.ndarray,
    device: str,
    result: dict[str, Any],
    save: Callable[[], None],
) -> None:
    """Fills `result` as it goes; `save` writes the report after each run."""
    if device.startswith("cuda"):
        result["fp32_tflops"] = matmul_tflops(device, torch.float32)
        result["bf16_tflops"] = matmul_tflops(device, torch.bfloat16)
        print(
            f"matmul: float32 {result['fp32_tflops']:.1f}, bf16 {result['bf16_tflops']:.1f} TFLOP/s"
        )
    for model in ("fc", "conv"):
        result[f"{model}_flops_per_image"] = flops_per_image(model)
    for i, (model, batch, compiled, precision) in enumerate(SPEED_RUNS):
        row = train_speed(x, model, device, batch, compiled, precision)
        result["rows"].append(row)
        print(
            f"speed {model:4s} b{batch:<6d} {row['mode']:14s} "
            + (
                f"{row['images_per_s']:>12,.0f} img/s  "
                f"first step {row['first_step_s']:.1f} s"
                f"  peak {row.get('peak_mib', 0):.0f} MiB  kernels/step "
                f"{row.get('kernels_per_step', 0):.0f}  GPU busy "
                f"{row.get('gpu_busy_us_per_step', 0):.0f} of "
                f"{row.get('wall_us_per_step', 0):.0f} us"
                if "error" not in row
                else "ERROR " + row["error"].splitlines()[-1]
            ),
            flush=True,
        )
        if i == 3:  # after the batch-256 rows: one epoch at the defaults
            for m in ("fc", "conv"):
                try:
                    result[f"{m}_epoch_s"] = epoch_seconds(x_full, m, device)
                    print(f"epoch {m}: {result[f'{m}_epoch_s']:.2f} s for 60,000 images")
                except Exception as error:
                    result[f"{m}_epoch_error"] = "".join(traceback.format_exception(error))[-2000:]
                    print(f"epoch {m}: ERROR {str(error).splitlines()[0]}")
        save()


class Losses(Hook):
    def __init__(self) -> None:
        self.values: list[torch.Tensor] = []

    def after_run(self, context: RunContext, result: StepResult) -> None:
        assert result.loss is not None
        self.values.append(result.loss.detach())


def losses_on(
    x: np.ndarray, model: str, device: str, compiled: bool
) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
    est = make(model, device, compile=compiled)
    initial = {k: v.detach().cpu().clone() for k, v in est.network.state_dict().items()}
    record = Losses()
    est.train(endless(x, 256, shuffle=False), steps=100, hooks=[record])
    shutil.rmtree(est.model_dir, ignore_errors=True)
    return torch.stack(record.values).cpu().double().numpy(), initial


def check_agree(x: np.ndarray, device: str) -> list[dict[str, Any]]:
    rows = []
    for model in ("fc", "conv"):
        cpu_losses, cpu_init = losses_on(x, model, "cpu", compiled=False)
        for compiled, tf32 in ((False, True), (False, False), (True, True)):
            torch.backends.cudnn.allow_tf32 = tf32
            row: dict[str, Any] = {"model": model, "compiled": compiled, "cudnn_tf32": tf32}
            try:
                dev_losses, dev_init = losses_on(x, model, device, compiled)
                rel = np.abs(dev_losses - cpu_losses) / np.abs(cpu_losses)
                row["max_rel_loss_diff"] = float(rel.max())
                row["rel_loss_diff_at"] = {str(i): float(rel[i]) for i in (0, 9, 49, 99)}
                row["max_init_diff"] = max(
                    float((cpu_init[k] - dev_init[k]).abs().max()) for k in cpu_init
                )
                row["loss_0_100"] = [float(cpu_losses[0]), float(cpu_losses[-1])]
            except Exception as error:
                row["error"] = "".join(traceback.format_exception(error))[-2000:]
            torch.backends.cudnn.allow_tf32 = True
            rows.append(row)
            print(
                f"agree {model}: {json.dumps({k: v for k, v in row.items() if k != 'error'})}"
                + (f" ERROR {row['error'].splitlines()[-1]}" if "error" in row else ""),
                flush=True,
            )
    return rows


def write_checkpoint(x: np.ndarray, x_eval: np.ndarray, device: str, out: Path) -> Path:
    """Trains FC 20 steps here; returns a tarball of its model dir and its evaluation."""
    est = make("fc", device)
    est.train(endless(x, 256), steps=20)
    loss = est.evaluate(numpy_input_fn(x_eval, batch_size=256, shuffle=False))["loss"]
    root = Path(tempfile.mkdtemp())
    shutil.copytree(est.model_dir, root / "fc")
    (root / "expected.json").write_text(json.dumps({"loss": loss, "device": device}))
    target = out / f"checkpoint-{torch.device(device).type}.tar.gz"
    with tarfile.open(target, "w:gz") as tar:
        tar.add(root, arcname="checkpoint")
    return target


def resume_checkpoint(
    x: np.ndarray, x_eval: np.ndarray, device: str, source: Path
) -> dict[str, Any]:
    """Evaluates a checkpoint written on another device here, then trains it on."""
    if source.suffixes[-2:] == [".tar", ".gz"]:
        unpacked = Path(tempfile.mkdtemp())
        with tarfile.open(source) as tar:
            tar.extractall(unpacked, filter="data")
        source = unpacked / "checkpoint"
    expected = json.loads((source / "expected.json").read_text())
    model_dir = Path(tempfile.mkdtemp()) / "fc"
    shutil.copytree(source / "fc", model_dir)
    est = aekit.AutoEncoder(
        model_dir=str(model_dir),
        config=aekit.RunConfig(device=device, save_checkpoints_secs=None),
    )
    loss = est.evaluate(numpy_input_fn(x_eval, batch_size=256, shuffle=False))["loss"]
    before = est.global_step
    est.train(endless(x, 256), steps=20)
    after = est.evaluate(numpy_input_fn(x_eval, batch_size=256, shuffle=False))["loss"]
    row = {
        "written_on": expected["device"],
        "resumed_on": device,
        "eval_loss_there": expected["loss"],
        "eval_loss_here": loss,
        "rel_diff": abs(loss - expected["loss"]) / expected["loss"],
        "steps": [before, est.global_step],
        "eval_loss_after_20_more": after,
    }
    print(f"checkpoint: {json.dumps(row)}", flush=True)
    return row


def check_checkpoint(
    x: np.ndarray, x_eval: np.ndarray, device: str, out: Path, resume: Path | None, data: Path
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    try:
        if resume is not None:
            result["resumed"] = resume_checkpoint(x, x_eval, device, resume)
        written = write_checkpoint(x, x_eval, device, out)
        result["written"] = str(written)
        if device.startswith("cuda"):  # and back on the CPU, with CUDA hidden
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
            command = [sys.executable, __file__, "--device", "cpu", "--parts", "checkpoint",
                       "--data", str(data), "--out", tempfile.mkdtemp(),
                       "--resume-checkpoint", str(written)]  # fmt: skip
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
            result["cpu_only_resume_rc"] = done.returncode
            print("cpu-only resume:", done.stdout.strip().splitlines()[:2], done.stderr[-1500:])
    except Exception as error:
        result["error"] = "".join(traceback.format_exception(error))[-2000:]
        print("checkpoint: ERROR", str(error).splitlines()[0] if str(error) else type(error))
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--device", default="cuda")
    p.add_argument("--data", type=Path, default=Path("../shared/data/mnist-full"))
    p.add_argument("--out", type=Path, default=Path("gpu-checks"))
    p.add_argument("--parts", nargs="+", default=["speed", "sync", "agree", "checkpoint"],
                   choices=["speed", "sync", "agree", "checkpoint"])  # fmt: skip
    p.add_argument("--resume-checkpoint", type=Path)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    (x, _), (x_test, _) = load_data(args.data, download=False)
    report: dict[str, Any] = {"torch": torch.__version__, "device": args.device}
    if args.device.startswith("cuda"):
        report["card"] = torch.cuda.get_device_name()
        print(f"{report['card']}, torch {torch.__version__}", flush=True)
    started = time.perf_counter()
    name = f"gpu_checks-{torch.device(args.device).type}-{'-'.join(args.parts)}.json"

    def save() -> None:
        (args.out / name).write_text(json.dumps(report, indent=1))

    for part in args.parts:
        if part == "speed":
            report["speed"] = {"rows": []}
            check_speed(x[:8192], x, args.device, report["speed"], save)
        elif part == "sync" and args.device.startswith("cuda"):
            report["sync"] = check_sync(x[:8192], args.device)
        elif part == "agree":
            report["agree"] = check_agree(x[:25600], args.device)
        elif part == "checkpoint":
            report["checkpoint"] = check_checkpoint(
                x, x_test[:512], args.device, args.out, args.resume_checkpoint, args.data
            )
        print(f"-- {part} done at {time.perf_counter() - started:.0f} s", flush=True)
        save()


if __name__ == "__main__":
    main()
