"""What every reconstruction model shares: the model_fn, its summaries, and the Estimator base."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aekit import metrics, summary
from aekit.checks import Number, Optional
from aekit.data.corruption import make_corruption
from aekit.data.input_fn import to_float
from aekit.errors import ConfigError
from aekit.estimator import Estimator, EstimatorSpec, ModeKeys, RunConfig
from aekit.estimator.optimizers import adam
from aekit.models.layers import check_example_size
from aekit.models.memory import build_within_memory

IMAGES_IN_SUMMARY = 6


class ReconstructionNetwork(nn.Module):
    """A network mapping inputs to (reconstruction logits, code), with `image_shape` (C, H, W)."""

    image_shape: tuple[int, int, int]

    @property
    def example_shape(self) -> tuple[int, ...]:
        """The shape of one input example, as exported files take it."""
        return self.image_shape

    def output_of(self, decoded: torch.Tensor) -> torch.Tensor:
        """What the decoder's output stands for: pixel probabilities (the sigmoid of logits)."""
        return torch.sigmoid(decoded)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code of a batch of inputs."""
        raise NotImplementedError

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """Reconstruction logits of a batch of codes."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction logits in the layout of `x`, code)."""
        code = self.encode(x)
        return self.decode(code).reshape(x.shape), code


def as_images(x: torch.Tensor, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """A batch in any layout with C·H·W values per example, as NCHW."""
    check_example_size(x, image_shape[0] * image_shape[1] * image_shape[2], image_shape)
    return x.reshape(-1, *image_shape)


def reconstruction_model_fn(
    network: ReconstructionNetwork,
    features: torch.Tensor,
    labels: torch.Tensor | None,
    mode: ModeKeys,
    params: Mapping[str, Any],
) -> EstimatorSpec:
    """Sigmoid cross-entropy reconstruction with optional input noise and L2 weight decay.

    params: `weight_decay` (L2 on weights, not biases, in the training loss only),
    `noise` ({"kind", "amount"} or None: corrupt inputs in TRAIN and EVAL, target
    stays clean). Predictions: `prediction` (sigmoid output), `embedding` (the
    code, flattened) and `reconstruction_error` (per-example mean squared error).
    """
    clean = to_float(features)
    noise = params.get("noise")
    inputs = clean
    if noise and mode is not ModeKeys.PREDICT:
        inputs = make_corruption(noise["kind"], noise["amount"]).corrupt(clean)
    logits, code = network(inputs)
    if mode is ModeKeys.PREDICT:
        probs = torch.sigmoid(logits)
        return EstimatorSpec(
            mode,
            predictions={
                "prediction": probs,
                "embedding": code.flatten(1),
                "reconstruction_error": metrics.example_mse(clean, probs),
            },
        )
    target = clean if labels is None else to_float(labels)
    # In float32 whatever precision the network ran in: the loss is a sum over pixels.
    loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), target.float())
    if mode is ModeKeys.TRAIN:
        # Training needs the loss alone; metrics and predictions would only slow the step.
        loss = with_weight_decay(loss, network, params)
        if summary.should_record():
            _record(network, clean, inputs if noise else None, torch.sigmoid(logits))
        return EstimatorSpec(mode, loss=loss)
    probs = torch.sigmoid(logits)
    eval_metric_ops = {"rmse": metrics.root_mean_squared_error(target, probs)}
    if noise:
        eval_metric_ops["noisy_input_rmse"] = metrics.root_mean_squared_error(target, inputs)
    return EstimatorSpec(
        mode, predictions={"prediction": probs}, loss=loss, eval_metric_ops=eval_metric_ops
    )


def classifier_model_fn(
    network: nn.Module,
    features: torch.Tensor,
    labels: torch.Tensor | None,
    mode: ModeKeys,
    params: Mapping[str, Any],
) -> EstimatorSpec:
    """Softmax cross-entropy; predictions class_ids, probabilities, logits; metric accuracy."""
    logits = network(to_float(features))
    class_ids = logits.argmax(dim=1)
    predictions = {"class_ids": class_ids, "probabilities": logits.softmax(dim=1), "logits": logits}
    if mode is ModeKeys.PREDICT:
        return EstimatorSpec(mode, predictions=predictions)
    if labels is None:
        raise ConfigError("a classifier needs labels: give the input function (features, labels)")
    labels = labels.long()
    n_classes = logits.shape[1]
    fix = "set n_classes to match the data"
    in_range = None
    if mode is ModeKeys.TRAIN:
        labels, in_range = train_labels(labels, n_classes, fix, labels.device.type == "cpu")
    elif labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise ConfigError(
            f"labels must be class ids in [0, {n_classes}), got values from {int(labels.min())} "
            f"to {int(labels.max())}; {fix}"
        )
    loss = nn.functional.cross_entropy(logits.float(), labels)
    if in_range is not None:
        loss = loss.where(in_range, torch.nan)
    return EstimatorSpec(
        mode,
        predictions=predictions,
        loss=loss,
        eval_metric_ops={"accuracy": metrics.accuracy(labels, class_ids)},
    )


def train_labels(
    labels: torch.Tensor, n_classes: int, fix: str, raise_now: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Training labels checked where they are, without reading them back to the host.

    With `raise_now` (the CPU) an id outside [0, n_classes) raises at once. Elsewhere a
    failed device-side assert would end the process's use of the GPU, and so would
    cross_entropy's own: as TensorFlow does on a GPU, such a batch trains on class 0 and
    the returned flag turns its loss NaN, which the NaN guard stops at its next check.
    """
    in_range = ((labels >= 0) & (labels < n_classes)).all()
    if raise_now:
        torch._assert_async(in_range, f"labels must be class ids in [0, {n_classes}); {fix}")
        return labels, None
    return labels.where(in_range, 0), in_range


def with_weight_decay(
    loss: torch.Tensor, network: nn.Module, params: Mapping[str, Any]
) -> torch.Tensor:
    """The training loss plus `weight_decay` × ½·Σw² of the weights (not the biases)."""
    weight_decay = params.get("weight_decay")
    return loss + weight_decay * l2_of_weights(network) if weight_decay else loss


def l2_of_weights(network: nn.Module) -> torch.Tensor:
    """½·Σw² over weight matrices and kernels, not biases (TF's l2_regularizer)."""
    weights = [p for p in network.parameters() if p.dim() > 1]
    if not weights:
        return torch.zeros((), device=next(network.parameters()).device)
    if torch.compiler.is_compiling():  # the compiler fuses the plain form by itself
        return 0.5 * torch.stack([w.square().sum() for w in weights]).sum()
    value: torch.Tensor = _HalfSquaredNorm.apply(*weights)  # type: ignore[no-untyped-call]
    return value


class _HalfSquaredNorm(torch.autograd.Function):
    """½·Σw² of several tensors with one multi-tensor kernel forward and one backward.

    Autograd over per-tensor square().sum() launches four kernels per weight each
    way, which measured ~2x slower for the seed models (benchmarks/bench_kernels.py).
    """

    @staticmethod
    def forward(ctx: Any, *weights: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(*weights)
        norms = torch._foreach_norm(weights)
        return 0.5 * torch.stack(norms).square().sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(torch._foreach_mul(ctx.saved_tensors, grad))


def _record(
    network: ReconstructionNetwork,
    clean: torch.Tensor,
    corrupted: torch.Tensor | None,
    probs: torch.Tensor,
) -> None:
    for name, parameter in network.named_parameters():
        summary.histogram(f"parameters/{name}", parameter)
    shape = network.image_shape
    k = IMAGES_IN_SUMMARY
    summary.image("images/input", as_images(clean[:k], shape))
    if corrupted is not None:
        summary.image("images/corrupted_input", as_images(corrupted[:k], shape))
    summary.image("images/reconstruction", as_images(probs[:k], shape))


class ReconstructionEstimator(Estimator):
    """An Estimator over a ReconstructionNetwork, trained with Adam and a staircase decay.

    The learning rate is multiplied by `decay_rate` every `decay_steps` steps,
    as TF's exponential_decay(staircase=True).
    """

    def __init__(
        self,
        network_factory: Any,
        learning_rate: float,
        weight_decay: float | None,
        noise: tuple[str, float] | None,
        model_dir: str | Path | None,
        config: RunConfig | None,
        decay_steps: int = 1000,
        decay_rate: float = 0.96,
        extra_params: Mapping[str, Any] | None = None,
    ) -> None:
        Number(positive=True)("learning_rate", learning_rate)
        Optional(Number())("weight_decay", weight_decay)
        noise_params = None
        if noise is not None:
            kind, amount = noise
            Number()("the noise amount", amount)
            make_corruption(kind, amount)  # validates the kind and the range
            noise_params = {"kind": kind, "amount": float(amount)}
        config = config or RunConfig()
        if config.random_seed is not None:
            torch.manual_seed(config.random_seed)  # the same initial weights for the same seed
        described = ", ".join(f"{k}={v}" for k, v in (extra_params or {}).items())
        network = build_within_memory(network_factory, described)
        super().__init__(
            reconstruction_model_fn,
            network,
            optimizer=lambda p: adam(p, learning_rate),
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, decay_steps, decay_rate),
            model_dir=model_dir,
            params={
                "learning_rate": learning_rate,
                "weight_decay": weight_decay,
                "noise": noise_params,
                **(extra_params or {}),
            },
            config=config,
        )
