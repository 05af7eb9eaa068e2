"""Every zoo model trained data-parallel, for the tests: run it with torchrun.

    torchrun --standalone --nproc-per-node 2 zoo_job.py zoo OUT
    torchrun --standalone --nproc-per-node 2 zoo_job.py epochs MODEL_DIR [--kill RANK STEP]

`zoo` trains every model and phase STEPS steps at BATCH examples per process in
OUT/<model>, and each rank writes its weights after every phase to
OUT/weights/<phase>-rank<r>.pt and its figures (random-state digests, the metrics of
evaluating one example, host reads counted between intervals) to OUT/rank<r>.json.
It ends with the `epochs` run in OUT/epochs.

`epochs` trains a noisy, dropout FC autoencoder EPOCHS epochs, one `train` call per
epoch, and writes each rank's final weights to MODEL_DIR/weights-rank<r>.pt. It saves
checkpoints only at the end of each call: a restart then replays the interrupted epoch
from its start (the input's position within an epoch is not in a checkpoint). With
--kill, that rank SIGKILLs itself before that step on the job's first attempt only.
Each rank appends "attempt global_step" to MODEL_DIR/starts-<r>.txt whenever a
`train` call starts training.

The test imports this file too: its single-process references use the same builders.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import signal
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import aekit
from aekit.data import numpy_input_fn
from aekit.estimator.inputs import InputFn
from aekit.hooks import Hook, RunContext, StepResult
from aekit.models.classifier import encoder_of

STEPS = 6  # per model and phase; summaries at steps 1, 3 and 6
BATCH = 4  # per process: one process takes 2 * BATCH to see the same global batch
EXAMPLES = 64
EPOCHS = 3
STEPS_PER_EPOCH = EXAMPLES // (2 * BATCH)
SYNC_WINDOW = (3, 7)  # host reads are counted from after step 3 to after step 7

# Every model and training phase; each rank saves its weights after each.
PHASES = (
    "fc", "denoising", "conv", "vae", "stacked-layer1", "stacked-layer2", "stacked-finetune",
    "cnn", "frozen", "tuned",
)  # fmt: skip
# The phases that draw no random numbers: one process on the global batch matches them.
DETERMINISTIC = ("fc", "conv", "stacked-finetune", "cnn", "frozen", "tuned")
LABELLED = ("stacked", "cnn", "frozen", "tuned")
# Evaluation of the denoising model corrupts its input with this process's noise.
EVALUATED = ("fc", "conv", "vae", "stacked", "cnn", "frozen", "tuned")
SYNC_CHECKED = ("fc", "denoising", "conv", "vae", "cnn", "tuned")

# ATen ops that copy a device value to the host (and so wait for the device).
HOST_READS = frozenset({
    "_local_scalar_dense", "item", "is_nonzero", "equal", "nonzero", "nonzero_static",
    "masked_select", "_unique", "_unique2", "unique_dim", "unique_consecutive",
    "unique_dim_consecutive",
})  # fmt: skip


def data() -> tuple[np.ndarray, np.ndarray]:
    """Fixed random 8x8 uint8 images and class ids 0..9."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (EXAMPLES, 8, 8), dtype=np.uint8), rng.integers(0, 10, EXAMPLES)


def config(**changes: Any) -> aekit.RunConfig:
    """The runs' settings: seeded, on the CPU, only the final checkpoint, no logging."""
    base = aekit.RunConfig(
        random_seed=0,
        device="cpu",
        compile=False,
        save_checkpoints_steps=None,
        save_checkpoints_secs=None,
        save_summary_steps=3,
        log_step_count_steps=0,
        collective_timeout_secs=60,
    )
    return dataclasses.replace(base, **changes)


def build(name: str, model_dir: Path, run_config: aekit.RunConfig | None = None) -> aekit.Estimator:
    """The model `name` (the first part of a phase's name) in `model_dir`."""
    c = run_config or config()
    if name == "fc":
        return aekit.AutoEncoder([16, 4], input_shape=(8, 8), model_dir=model_dir, config=c)
    if name == "denoising":
        return aekit.AutoEncoder(
            [16, 4], input_shape=(8, 8), noise_factor=0.3, keep_prob=0.8, model_dir=model_dir,
            config=c,
        )  # fmt: skip
    if name == "conv":
        return aekit.ConvolutionalAutoencoder(
            num_filters=[4, 4], image_shape=(1, 8, 8), model_dir=model_dir, config=c
        )
    if name == "vae":
        return aekit.VariationalAutoencoder(
            latent_dim=2, hidden_units=[16], input_shape=(8, 8), model_dir=model_dir, config=c
        )
    if name == "stacked":
        return aekit.StackedDenoisingAutoencoder(
            hidden_units=[16, 8], input_shape=(8, 8), model_dir=model_dir, config=c
        )
    if name == "cnn":
        return aekit.Classifier(
            image_shape=(1, 8, 8), conv_filters=[4], dense_units=16, dropout=0.0,
            model_dir=model_dir, config=c,
        )  # fmt: skip
    if name in ("frozen", "tuned"):
        # An untrained autoencoder: its seeded initial weights are the same everywhere.
        autoencoder = aekit.AutoEncoder(
            [16, 4], input_shape=(8, 8), model_dir=f"{model_dir}-encoder", config=c
        )
        return aekit.Classifier(
            encoder=encoder_of(autoencoder.network), freeze_encoder=name == "frozen",
            image_shape=(1, 8, 8), model_dir=model_dir, config=c,
        )  # fmt: skip
    raise ValueError(f"unknown model {name!r}")


def train_input(name: str, batch: int) -> InputFn:
    """Endless shuffled batches; the shuffle seed comes from the Estimator's shared generator."""
    x, y = data()
    return numpy_input_fn(x, y if name in LABELLED else None, batch, num_epochs=None)


def eval_input(name: str) -> InputFn:
    """One example: in a job of two processes, rank 1 gets no batch."""
    x, y = data()
    return numpy_input_fn(x[:1], y[:1] if name in LABELLED else None, 5, shuffle=False)


def train(name: str, model_dir: Path, batch: int, hooks: Sequence[Hook] = ()) -> aekit.Estimator:
    """`name` trained STEPS steps at `batch` examples per process (not the stacked phases)."""
    estimator = build(name, model_dir)
    estimator.train(train_input(name, batch), hooks=hooks, max_steps=STEPS)
    return estimator


def digest(state: torch.Tensor) -> str:
    """A short fingerprint of a generator state."""
    return hashlib.sha256(state.numpy().tobytes()).hexdigest()[:16]


class RecordRandomState(Hook):
    """Fingerprints this rank's torch generator and the shared shuffle generator.

    At the start of training (just seeded), after the first step, and at the end (the
    state the final checkpoint then takes).
    """

    def __init__(self, shuffle_rng: torch.Generator) -> None:
        self.seen: dict[str, str] = {}
        self.shuffle_rng = shuffle_rng

    def _record(self, when: str, context: RunContext) -> None:
        self.seen[when] = digest(torch.get_rng_state())
        self.seen[f"shuffle_{when}"] = digest(self.shuffle_rng.get_state())

    def after_create_session(self, context: RunContext) -> None:
        self._record("start", context)

    def after_run(self, context: RunContext, result: StepResult) -> None:
        if context.global_step == 1:
            self._record("step1", context)

    def end(self, context: RunContext) -> None:
        self._record("end", context)


def _reads_host(func: torch._ops.OpOverload, args: Sequence[Any]) -> bool:
    """Whether `func` reads a device value on the host: a boolean mask counts its Trues."""
    name = func.overloadpacket.__name__
    if name in ("index", "index_put", "index_put_") and len(args) > 1:
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1])
    return name in HOST_READS


class CountHostReads(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Counts the ATen ops in HOST_READS run while it is active, with where they ran."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.reads: list[dict[str, Any]] = []

    def __torch_dispatch__(
        self,
        func: torch._ops.OpOverload,
        types: Sequence[type],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        if _reads_host(func, args):
            stack = traceback.format_list(traceback.extract_stack()[-25:-1])
            self.reads.append({"op": str(func), "stack": "".join(stack)})
        return func(*args, **(kwargs or {}))


class HostReadWindow(Hook):
    """Counts host reads from the end of step `start` to the end of step `stop`."""

    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop = start, stop
        self.mode: CountHostReads | None = None
        self.closed = False

    def after_run(self, context: RunContext, result: StepResult) -> None:
        # Entered and left by hand: the window spans several steps of the loop.
        if context.global_step == self.start:
            self.mode = CountHostReads()
            self.mode.__enter__()  # type: ignore[no-untyped-call]
        elif context.global_step == self.stop and self.mode is not None:
            self.mode.__exit__(None, None, None)  # type: ignore[no-untyped-call]
            self.closed = True


class KillAt(Hook):
    """SIGKILLs this process before `step` runs, on a job's first attempt only."""

    def __init__(self, step: int) -> None:
        self.step = step

    def before_run(self, context: RunContext) -> None:
        first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
        if first_attempt and context.global_step + 1 == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class RecordStart(Hook):
    """Appends this attempt's number and the step training starts from to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def after_create_session(self, context: RunContext) -> None:
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        with open(self.path, "a") as f:
            f.write(f"{attempt} {context.global_step}\n")


def launched_rank() -> int:
    """torchrun's rank for this process, known before an Estimator joins the group."""
    return int(os.environ.get("RANK", "0"))


def save_weights(network: torch.nn.Module, path: Path) -> None:
    """This rank's weights as they are in memory (not the chief's checkpoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), path)


def train_by_epochs(model_dir: Path, kill: Sequence[int] | None = None) -> None:
    """The `epochs` run: one `train` call per epoch of a model drawing noise and dropout."""
    rank = launched_rank()
    model_dir.mkdir(parents=True, exist_ok=True)
    estimator = build("denoising", model_dir)
    hooks: list[Hook] = [RecordStart(model_dir / f"starts-{rank}.txt")]
    if kill is not None and kill[0] == rank:
        hooks.append(KillAt(kill[1]))
    x, _ = data()
    for epoch in range(1, EPOCHS + 1):
        estimator.train(
            numpy_input_fn(x, batch_size=BATCH, num_epochs=1, shuffle=True, seed=None),
            hooks=hooks,
            max_steps=epoch * STEPS_PER_EPOCH,
        )
    save_weights(estimator.network, model_dir / f"weights-rank{rank}.pt")


def count_host_reads(
    name: str, model_dir: Path, host_sync: str = "intervals"
) -> list[dict[str, Any]]:
    """The host reads in SYNC_WINDOW of training `name` with no interval inside it."""
    run_config = config(
        host_sync=host_sync, log_step_count_steps=100, save_summary_steps=100,
        save_checkpoints_steps=100,
    )  # fmt: skip
    window = HostReadWindow(*SYNC_WINDOW)
    estimator = build(name, model_dir, run_config)
    estimator.train(train_input(name, BATCH), hooks=[window], max_steps=SYNC_WINDOW[1] + 1)
    assert window.mode is not None and window.closed, "the window did not open and close"
    return window.mode.reads


def run_zoo(out: Path) -> None:
    """The `zoo` run (see the module docstring)."""
    rank = launched_rank()
    weights = out / "weights"
    figures: dict[str, Any] = {"eval": {}, "host_reads": {}}
    recorder: RecordRandomState | None = None
    for name in ("fc", "denoising", "conv", "vae", "cnn", "frozen", "tuned"):
        estimator = build(name, out / name)
        if name == "denoising":  # the shared shuffle generator is the estimator's own
            recorder = RecordRandomState(estimator._state.shuffle_rng)
        hooks = [recorder] if recorder is not None and name == "denoising" else []
        estimator.train(train_input(name, BATCH), hooks=hooks, max_steps=STEPS)
        save_weights(estimator.network, weights / f"{name}-rank{rank}.pt")
        if name in EVALUATED:
            figures["eval"][name] = estimator.evaluate(eval_input(name))
    assert recorder is not None
    figures["rng"] = recorder.seen

    stacked = build("stacked", out / "stacked")
    assert isinstance(stacked, aekit.StackedDenoisingAutoencoder)
    x, _ = data()
    pretrain_input = numpy_input_fn(x, batch_size=BATCH, num_epochs=None)
    # Layer 1 alone first: the second call restores it from rank 0's checkpoint, which
    # would hide ranks that had drifted apart.
    stacked.pretrain(pretrain_input, [STEPS, 0])
    save_weights(stacked.network, weights / f"stacked-layer1-rank{rank}.pt")
    stacked.pretrain(pretrain_input, [STEPS, STEPS])
    save_weights(stacked.network, weights / f"stacked-layer2-rank{rank}.pt")
    stacked.train(train_input("stacked", BATCH), max_steps=STEPS)
    save_weights(stacked.network, weights / f"stacked-finetune-rank{rank}.pt")
    figures["eval"]["stacked"] = stacked.evaluate(eval_input("stacked"))

    for name in SYNC_CHECKED:
        figures["host_reads"][name] = count_host_reads(name, out / f"sync-{name}")
    # The control: checking the loss after every step reads it back in the window.
    figures["host_reads_every_step"] = count_host_reads("fc", out / "sync-every-step", "every_step")
    (out / f"rank{rank}.json").write_text(json.dumps(figures, indent=1))
    train_by_epochs(out / "epochs")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", choices=["zoo", "epochs"])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--kill", type=int, nargs=2, metavar=("RANK", "STEP"))
    args = parser.parse_args()
    if args.run == "zoo":
        run_zoo(args.directory)
    else:
        train_by_epochs(args.directory, args.kill)


if __name__ == "__main__":
    main()
