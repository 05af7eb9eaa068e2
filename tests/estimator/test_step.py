"""The training step module: one graph per zoo model, few recompiles, no host reads, precision."""

from __future__ import annotations

import functools
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch._dynamo.testing import CompileCounter
from torch.utils._python_dispatch import TorchDispatchMode

import aekit
from aekit.data import numpy_input_fn
from aekit.estimator import checkpoint as ckpt
from aekit.estimator.step import TrainStep
from aekit.models.classifier import encoder_of
from aekit.models.stacked import StackedDenoisingAutoencoder

QUIET = {"log_step_count_steps": 0, "save_summary_steps": 0}


def images(n: int = 40) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 8, 8), dtype=np.uint8)


def labels(n: int = 40) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 10, n)


def config(**settings: Any) -> aekit.RunConfig:
    return aekit.RunConfig(random_seed=0, **{**QUIET, **settings})


def zoo(root: Path, **settings: Any) -> Iterator[tuple[str, aekit.Estimator, bool]]:
    """(name, estimator, needs labels) for every zoo model and training phase."""
    c = config(**settings)
    fc: dict[str, Any] = {"hidden_units": [16, 4], "input_shape": (8, 8), "config": c}
    image: dict[str, Any] = {"image_shape": (1, 8, 8), "config": c}
    vae: dict[str, Any] = {"latent_dim": 2, "input_shape": (8, 8), "config": c}
    yield "fc", aekit.AutoEncoder(**fc, model_dir=root / "fc"), False
    noisy = aekit.AutoEncoder(**fc, keep_prob=0.8, noise_factor=0.3, model_dir=root / "dn")
    yield "denoising", noisy, False
    yield "conv", aekit.ConvolutionalAutoencoder([4, 4], **image, model_dir=root / "cv"), False
    strided = aekit.ConvolutionalAutoencoder([4], "strided", **image, model_dir=root / "cs")
    yield "conv-strided", strided, False
    yield "vae", aekit.VariationalAutoencoder(**vae, hidden_units=[16], model_dir=root / "v"), False
    conv_vae = aekit.VariationalAutoencoder(
        **vae, encoder="convolutional", num_filters=[4], model_dir=root / "vc"
    )
    yield "vae-conv", conv_vae, False
    stacked = StackedDenoisingAutoencoder(
        [16, 8], input_shape=(8, 8), model_dir=root / "s", config=c
    )
    yield "stacked-layer1", stacked._phase(0), False
    yield "stacked-layer2", stacked._phase(1), False
    yield "stacked-finetune", stacked, True
    yield (
        "classifier",
        aekit.Classifier(conv_filters=[4], dense_units=16, **image, model_dir=root / "c"),
        True,
    )
    autoencoder = aekit.AutoEncoder(**fc, model_dir=root / "ae")
    for frozen in (True, False):
        on_codes = aekit.Classifier(
            encoder=encoder_of(autoencoder.network), freeze_encoder=frozen, **image,
            model_dir=root / f"e{frozen}",
        )  # fmt: skip
        yield f"classifier-encoder-frozen={frozen}", on_codes, True


@pytest.mark.slow
def test_every_zoo_step_is_one_graph(tmp_path: Path) -> None:
    for name, est, labelled in zoo(tmp_path):
        x = torch.as_tensor(images(8), device=est.device)
        y = torch.as_tensor(labels(8), device=est.device)
        est.network.train()
        explained = torch._dynamo.explain(TrainStep(est._model_fn, est.network, est.params))(
            x, y if labelled else None
        )
        reasons = [str(r.reason).splitlines()[0] for r in explained.break_reasons]
        assert (explained.graph_count, explained.graph_break_count) == (1, 0), (name, reasons)


@pytest.mark.slow
def test_a_partial_batch_recompiles_once_and_summary_steps_keep_the_graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = CompileCounter()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=counter))
    torch._dynamo.reset()
    est = aekit.AutoEncoder(
        [16, 4], input_shape=(8, 8), model_dir=tmp_path,
        config=config(compile=True, save_summary_steps=4),
    )  # fmt: skip
    # 40 examples in batches of 16: two full batches and a partial one per epoch, trained
    # epoch by epoch as the command line does; steps 1, 4 and 8 record summaries (eager).
    est.train(numpy_input_fn(images(), batch_size=16, seed=0))
    assert counter.frame_count <= 2  # the full-batch graph, and one for the partial batch
    seen = counter.frame_count
    for _ in range(2):
        est.train(numpy_input_fn(images(), batch_size=16, seed=0))
    assert est.global_step == 9
    assert counter.frame_count == seen
    torch._dynamo.reset()


# Ops that read a tensor's value back to the host: on a GPU each one stalls the step.
HOST_READS = {"_local_scalar_dense", "item", "nonzero", "equal", "is_nonzero", "masked_select"}


class HostReads(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Counts host reads of tensor values, with where each came from."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.reads: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func.overloadpacket.__name__ in HOST_READS or func.overloadpacket.__name__.startswith(
            "unique"
        ):
            where = traceback.extract_stack(limit=8)[-2]
            self.reads.append(f"{func} at {where.filename}:{where.lineno}")
        return func(*args, **(kwargs or {}))


class CountBetween(aekit.hooks.Hook):
    """Counts host reads from after step `first` to after step `last` (inputs included)."""

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first, last
        self.mode = HostReads()

    def after_run(self, context: aekit.hooks.RunContext, result: aekit.hooks.StepResult) -> None:
        if context.global_step == self.first:
            self.mode.__enter__()  # type: ignore[no-untyped-call]
        elif context.global_step == self.last:
            self.mode.__exit__(None, None, None)  # type: ignore[no-untyped-call]


def test_no_host_reads_between_intervals_with_the_accelerator_policy(tmp_path: Path) -> None:
    settings = {
        "host_sync": "intervals", "log_step_count_steps": 10, "save_summary_steps": 10,
        "save_checkpoints_steps": 10,
    }  # fmt: skip
    for name, est, labelled in zoo(tmp_path, **settings):
        # Steps 2..9: no logging, summary, checkpoint step or epoch's end (12 steps long).
        counter = CountBetween(1, 9)
        input_fn = numpy_input_fn(
            images(96), labels(96) if labelled else None, batch_size=8, num_epochs=None
        )
        est.train(input_fn, hooks=[counter], max_steps=10)
        assert counter.mode.reads == [], name


def test_the_cpu_policy_checks_every_step() -> None:
    assert aekit.RunConfig(device="cpu").syncs_every_step
    assert not aekit.RunConfig(device="cpu", host_sync="intervals").syncs_every_step
    with pytest.raises(aekit.ConfigError, match="host_sync must be one of"):
        aekit.RunConfig(host_sync="never")  # type: ignore[arg-type]
    with pytest.raises(aekit.ConfigError, match="precision must be one of"):
        aekit.RunConfig(precision="bf16")  # type: ignore[arg-type]


def _train_digits(model_dir: Path, precision: str, steps: int = 30) -> aekit.AutoEncoder:
    from aekit.data import load_digits

    x = load_digits()[0]
    est = aekit.AutoEncoder(
        [32, 8], input_shape=(8, 8), learning_rate=0.01, model_dir=model_dir,
        config=config(precision=precision),
    )  # fmt: skip
    est.train(numpy_input_fn(x, batch_size=64, num_epochs=None, seed=0), max_steps=steps)
    return est


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_trains_float32_weights_to_float32_figures(
    tmp_path: Path, precision: str
) -> None:
    full = _train_digits(tmp_path / "32", "32")
    mixed = _train_digits(tmp_path / precision, precision)
    assert all(p.dtype == torch.float32 for p in mixed.network.parameters())
    from aekit.data import load_digits

    x = load_digits()[0][:200]
    got = mixed.evaluate(numpy_input_fn(x, batch_size=50, shuffle=False))
    want = full.evaluate(numpy_input_fn(x, batch_size=50, shuffle=False))
    assert got["loss"] == pytest.approx(want["loss"], rel=0.05)
    assert got["rmse"] == pytest.approx(want["rmse"], rel=0.05)
    state = ckpt.load(ckpt.latest_checkpoint(tmp_path / precision))  # type: ignore[arg-type]
    if precision == "16-mixed":  # the loss scale goes on with the run
        assert state["grad_scaler"]["scale"] > 0
        resumed = aekit.AutoEncoder(
            [32, 8], input_shape=(8, 8), model_dir=tmp_path / precision,
            config=config(precision=precision),
        )  # fmt: skip
        resumed.restore()
        assert resumed._state.grad_scaler is not None
        assert resumed._state.grad_scaler.get_scale() == state["grad_scaler"]["scale"]
    else:
        assert state["grad_scaler"] is None


def test_bf16_inputs_stay_bf16() -> None:
    from aekit.data.input_fn import to_float

    assert to_float(torch.zeros(2, dtype=torch.bfloat16)).dtype == torch.bfloat16
    assert to_float(torch.zeros(2, dtype=torch.uint8)).dtype == torch.float32


def test_parameters_outside_the_optimizer_are_frozen_only_while_training(tmp_path: Path) -> None:
    stacked = StackedDenoisingAutoencoder([16, 8], input_shape=(8, 8), model_dir=tmp_path)
    biases = [b.detach().clone() for b in stacked.stack.decoder_biases]
    seen: list[bool] = []

    class Look(aekit.hooks.Hook):
        def after_run(self, context: Any, result: Any) -> None:
            seen.append(any(b.requires_grad for b in stacked.stack.decoder_biases))

    stacked.train(numpy_input_fn(images(), labels(), batch_size=8), hooks=[Look()], steps=3)
    assert seen == [False] * 3  # fine-tuning leaves the pretraining decoders alone
    assert all(b.requires_grad for b in stacked.stack.decoder_biases)  # as it was before
    for before, after in zip(biases, stacked.stack.decoder_biases, strict=True):
        assert torch.equal(before, after)


def test_summary_steps_record_activations_through_hooks_only(tmp_path: Path) -> None:
    est = aekit.AutoEncoder(
        [16, 4], input_shape=(8, 8), model_dir=tmp_path, config=config(save_summary_steps=2)
    )
    recorded: list[list[str]] = []

    class Keep(aekit.hooks.Hook):
        def after_run(self, context: Any, result: aekit.hooks.StepResult) -> None:
            names = [name for _, name, _ in result.recorder.records] if result.recorder else []
            recorded.append(names)
            hooks = sum(len(m._forward_hooks) for m in est.network.modules())
            assert hooks == 0  # gone after the step

    est.train(numpy_input_fn(images(), batch_size=8), hooks=[Keep()], steps=4)
    assert recorded[2] == []  # steps 1, 2 and 4 (the last) record summaries, step 3 does not
    for names in recorded[:2]:
        assert {"activations/encoder/act/0", "zero_fraction/decoder/act/0"} <= set(names)


def test_device_faults_are_named() -> None:
    from aekit.estimator.distributed import Strategy
    from aekit.estimator.loop import synchronize

    strategy = Strategy()
    oom = RuntimeError("NCCL error in: ProcessGroupNCCL.cpp: CUDA out of memory. Tried 2 GiB")
    message = str(strategy.describe_failure(oom, "runs/x"))
    assert "ran out of device memory" in message and "lower the batch size" in message
    lost = RuntimeError("[gloo] Connection closed by peer")
    assert "lost the other processes" in str(strategy.describe_failure(lost, "runs/x"))
    assert strategy.describe_failure(ValueError("a model bug"), "runs/x") is None
    synchronize(torch.device("cpu"))
    synchronize(torch.device("meta"))  # no torch.cuda call for a device that is not CUDA


def test_one_gpu_for_every_process_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from aekit.estimator.distributed import Strategy

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(aekit.ConfigError, match="CUDA_VISIBLE_DEVICES"):
        Strategy.join("cuda:1", 10)
