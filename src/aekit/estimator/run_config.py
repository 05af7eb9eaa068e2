"""RunConfig: where a run writes and how often it saves, summarises and logs."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from aekit.checks import Check, Choice, Flag, Integer, Number, Optional, OrAuto, resolve_device
from aekit.errors import ConfigError

if TYPE_CHECKING:
    import torch

_log = logging.getLogger("aekit")

Precision = Literal["32", "bf16-mixed", "16-mixed"]
HostSync = Literal["auto", "every_step", "intervals"]
CORES = os.cpu_count() or 1


@dataclass(frozen=True)
class RunConfig:
    """How an Estimator runs, independent of the model.

    Attributes:
        model_dir: directory for checkpoints and summaries (a temporary one when None).
        random_seed: seeds torch, numpy and random when training starts from scratch.
        device: "auto" (CUDA when present, else CPU) or any torch device string.
        save_checkpoints_steps: save every this many steps (None: use the seconds rule).
        save_checkpoints_secs: save every this many seconds (None: only the steps rule).
        save_summary_steps: write training summaries every this many steps (0: never).
        keep_checkpoint_max: how many recent checkpoints to keep (0: keep all).
        log_step_count_steps: log loss and speed every this many steps (0: never).
        compile: run the training step through torch.compile (forward and backward); None
            (aekit's choice) is off on every device: for the seed models it measured
            1.04-1.06x eager on a CPU and 0.82-1.10x on an H200, for 3-14 s of warm-up
            per Estimator (docs/benchmarks/speed.md). Falls back to eager on failure.
        precision: "32" (float32), "bf16-mixed" (autocast to bfloat16) or "16-mixed"
            (autocast to float16 with gradient scaling); losses and metrics stay float32.
        host_sync: when the loop reads values back from the device: "every_step" checks
            the loss for NaN after every step (free on the CPU), "intervals" only at
            logging, summary and checkpoint steps (no stall between them on a GPU);
            "auto" is "every_step" on the CPU and "intervals" elsewhere.
        collective_timeout_secs: in a data-parallel job, how long a process waits for
            the others in one collective before failing with a clear error.
        clip_grad_norm: before each optimizer step, scale the gradients down so that their
            global L2 norm is at most this (None: no clipping); one exploding batch then
            moves the weights by a bounded amount instead of ruining them.
        cpu_threads: PyTorch's CPU threads while training on the CPU: "auto" keeps torch's
            count while the cores are free and trains on one thread while other work
            keeps them busy (aekit.estimator.cpu.ThreadCount; not with `compile`, whose
            graphs guard on the count); an integer pins that many.
        distributed: whether an Estimator started by torchrun joins the job's processes
            (False: this process works alone, e.g. to draw pictures on rank 0 only).
    """

    model_dir: str | None = None
    random_seed: int | None = None
    device: str = "auto"
    save_checkpoints_steps: int | None = None
    save_checkpoints_secs: float | None = 600.0
    save_summary_steps: int = 100
    keep_checkpoint_max: int = 5
    log_step_count_steps: int = 100
    compile: bool | None = None
    collective_timeout_secs: float = 300.0
    clip_grad_norm: float | None = None
    precision: Precision = "32"
    host_sync: HostSync = "auto"
    cpu_threads: int | Literal["auto"] = "auto"
    distributed: bool = True

    def __post_init__(self) -> None:
        if self.save_checkpoints_steps is not None and self.save_checkpoints_secs is not None:
            # Both given: steps win, as a user who sets steps explicitly expects.
            object.__setattr__(self, "save_checkpoints_secs", None)
        for name, check in CHECKS.items():
            object.__setattr__(self, name, check(f"RunConfig.{name}", getattr(self, name)))
        resolve_device(self.device)

    @property
    def torch_device(self) -> torch.device:
        """The device this config resolves to on this machine."""
        return resolve_device(self.device)

    @property
    def syncs_every_step(self) -> bool:
        """Whether the loop may read device values after every step (see host_sync)."""
        if self.host_sync == "auto":
            return self.torch_device.type == "cpu"
        return self.host_sync == "every_step"

    @property
    def compiles(self) -> bool:
        """Whether the training step is compiled (None: aekit's choice, off)."""
        return bool(self.compile)


CHECKS: dict[str, Check] = {
    "random_seed": Optional(Integer(0, below=2**63)),
    "save_checkpoints_steps": Optional(Integer(1)),
    "save_checkpoints_secs": Optional(Number(positive=True)),
    "save_summary_steps": Integer(0),
    "keep_checkpoint_max": Integer(0),
    "log_step_count_steps": Integer(0),
    "compile": Optional(Flag()),
    "collective_timeout_secs": Number(positive=True),
    "clip_grad_norm": Optional(Number(positive=True)),
    "precision": Choice(*get_args(Precision)),
    "host_sync": Choice(*get_args(HostSync)),
    # More threads than cores only spin against each other, and thousands fail to start.
    "cpu_threads": OrAuto(Integer(1, below=CORES + 1, why="the cores of this machine")),
    "distributed": Flag(),
}
"""How each RunConfig field is checked; the command line checks its settings with these."""


def model_dir_of(model_dir: str | Path | None, config: RunConfig) -> str:
    """The model_dir an Estimator uses: the argument or the config's (not two different ones).

    Neither given: a new temporary directory, removed at exit if nothing was written to it.
    """
    if (
        model_dir is not None
        and config.model_dir is not None
        and Path(model_dir).resolve() != Path(config.model_dir).resolve()
    ):
        raise ConfigError(
            f"model_dir={str(model_dir)!r} contradicts config.model_dir="
            f"{config.model_dir!r}; give only one"
        )
    directory = model_dir or config.model_dir
    if directory is None:
        directory = tempfile.mkdtemp(prefix="aekit-")
        atexit.register(_remove_if_empty, directory)  # one never written to is litter
        _log.info("no model_dir given; using the temporary directory %s", directory)
    return str(directory)


def _remove_if_empty(directory: str) -> None:
    with contextlib.suppress(OSError):  # not empty, or gone: leave it be
        os.rmdir(directory)
