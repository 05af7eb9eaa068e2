"""Seed 002: a stacked denoising autoencoder, pretrained layer by layer, then fine-tuned.

Greedy pretraining trains layer k as a one-hidden-layer denoising autoencoder on
the output of the frozen layers below it: sigmoid units, masking noise, tied
weights (the decoder uses Wᵀ plus a bias of its own), cross-entropy between the
clean input and the reconstruction. Fine-tuning then trains the whole stack plus
a softmax layer on the labels. Each phase is an Estimator run in a directory of
its own under model_dir (`pretrain/layer<k>/`, and model_dir itself for
fine-tuning), so an interrupted run resumes in whichever phase it stopped.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aekit import metrics, summary
from aekit.data.corruption import make_corruption
from aekit.data.input_fn import to_float
from aekit.errors import ConfigError
from aekit.estimator import Estimator, EstimatorSpec, ModeKeys, RunConfig
from aekit.estimator import checkpoint as ckpt
from aekit.estimator.inputs import InputFn
from aekit.estimator.optimizers import adam
from aekit.models.heads import classifier_model_fn
from aekit.models.layers import check_drop_rate, check_example_size, check_shape, check_units
from aekit.models.memory import build_within_memory

_log = logging.getLogger("aekit")


class StackedNetwork(nn.Module):
    """Sigmoid layers with (tied or separate) decoders for pretraining and a softmax head."""

    def __init__(
        self,
        n_inputs: int,
        hidden_units: Sequence[int],
        n_classes: int,
        tied_weights: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        units = check_units("hidden_units", hidden_units)
        sizes = [n_inputs, *units]
        self.encoders = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.tied_weights = tied_weights
        if tied_weights:
            self.decoder_biases = nn.ParameterList(nn.Parameter(torch.zeros(a)) for a in sizes[:-1])
        else:
            self.decoders = nn.ModuleList(nn.Linear(b, a) for a, b in itertools.pairwise(sizes))
        self.head = nn.Linear(units[-1], n_classes)
        self.dropout = nn.Dropout(dropout)
        self.n_inputs = n_inputs

    def encode(
        self, x: torch.Tensor, depth: int | None = None, dropout: bool = False
    ) -> torch.Tensor:
        """The output of the first `depth` layers (all by default).

        `dropout` drops units after each layer (in training mode); only fine-tuning asks for
        it, so pretraining never sees dropped units.
        """
        check_example_size(x, self.n_inputs, (self.n_inputs,))
        h = x.reshape(len(x), -1)
        for layer in list(self.encoders)[: depth if depth is not None else len(self.encoders)]:
            h = torch.sigmoid(layer(h))
            if dropout:
                h = self.dropout(h)
        return h

    def reconstruct(self, layer: int, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer `layer`'s code of `h` and the logits of its reconstruction of `h`."""
        encoder = self.encoder(layer)
        code = torch.sigmoid(encoder(h))
        if self.tied_weights:
            logits = nn.functional.linear(code, encoder.weight.t(), self.decoder_biases[layer])
        else:
            logits = self.decoders[layer](code)
        return code, logits

    def encoder(self, layer: int) -> nn.Linear:
        """The linear map of layer `layer` (0-based)."""
        linear = self.encoders[layer]
        assert isinstance(linear, nn.Linear)
        return linear

    def layer_parameters(self, layer: int) -> list[nn.Parameter]:
        """What pretraining layer `layer` trains: its weights and both biases."""
        own = list(self.encoder(layer).parameters())
        if self.tied_weights:
            return [*own, self.decoder_biases[layer]]
        return [*own, *self.decoders[layer].parameters()]

    def finetune_parameters(self) -> list[nn.Parameter]:
        """What fine-tuning trains: the stacked layers and the softmax head, not the decoders."""
        return [*self.encoders.parameters(), *self.head.parameters()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.encode(x, dropout=True))
        return logits


def pretrain_model_fn(
    network: StackedNetwork,
    features: torch.Tensor,
    labels: torch.Tensor | None,
    mode: ModeKeys,
    params: Mapping[str, Any],
) -> EstimatorSpec:
    """Denoising reconstruction of layer `params["layer"]`'s input; the layers below stay fixed."""
    layer = params["layer"]
    with torch.no_grad():
        clean = network.encode(to_float(features), depth=layer)
    inputs = clean
    if mode is ModeKeys.TRAIN and params["noise_amount"]:
        inputs = make_corruption(params["noise"], params["noise_amount"]).corrupt(clean)
    code, logits = network.reconstruct(layer, inputs)
    if mode is ModeKeys.PREDICT:
        return EstimatorSpec(
            mode, predictions={"code": code, "reconstruction": torch.sigmoid(logits)}
        )
    loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), clean.float())
    if layer == 0 and summary.should_record():
        _record_filters(network)
    return EstimatorSpec(
        mode,
        loss=loss,
        eval_metric_ops={"rmse": metrics.root_mean_squared_error(clean, torch.sigmoid(logits))},
    )


def _record_filters(network: StackedNetwork) -> None:
    weight = network.encoder(0).weight[:64].detach()
    side = math.isqrt(network.n_inputs)
    if side * side != network.n_inputs:
        return
    low = weight.min(dim=1, keepdim=True).values
    high = weight.max(dim=1, keepdim=True).values
    summary.image(
        "first_layer_filters", ((weight - low) / (high - low + 1e-8)).reshape(-1, 1, side, side)
    )


class StackedDenoisingAutoencoder(Estimator):
    """Seed 002's deep network: greedy denoising pretraining, then supervised fine-tuning.

    `pretrain(input_fn, steps)` runs the layer-wise phases (skipping finished ones);
    `train` fine-tunes the whole stack with a softmax layer, starting from the
    pretrained weights; `evaluate` reports accuracy and loss; `predict` yields
    `class_ids`, `probabilities` and `logits`.

    Args:
        hidden_units: sizes of the stacked layers.
        noise: "masking" (seed 002), "gaussian" or "salt_and_pepper".
        noise_factor: fraction of pixels masked (or the noise amount).
        pretrain_learning_rates: one rate per layer (or one for all).
        finetune_learning_rate: the rate of the supervised phase.
        dropout: drop rate after each stacked layer while fine-tuning (0: none, as seed 002).
        n_classes: number of classes of the softmax layer.
        input_shape: shape of one example.
    """

    # The fine-tuning optimizer runs at finetune_learning_rate; both rates may change on
    # resume (the pretraining phases record their own rate as learning_rate).
    MUTABLE_PARAMS = frozenset({"finetune_learning_rate", "pretrain_learning_rates"})
    LEARNING_RATE_PARAM = "finetune_learning_rate"

    def __init__(
        self,
        hidden_units: Sequence[int] = (2000, 2000, 2000),
        noise: str = "masking",
        noise_factor: float = 0.5,
        tied_weights: bool = True,
        pretrain_learning_rates: float | Sequence[float] = 1e-3,
        finetune_learning_rate: float = 1e-3,
        dropout: float = 0.0,
        n_classes: int = 10,
        input_shape: Sequence[int] = (28, 28),
        model_dir: str | Path | None = None,
        config: RunConfig | None = None,
    ) -> None:
        units = check_units("hidden_units", hidden_units)
        make_corruption(noise, noise_factor)  # validates
        rates = (
            [float(pretrain_learning_rates)] * len(units)
            if isinstance(pretrain_learning_rates, int | float)
            else [float(r) for r in pretrain_learning_rates]
        )
        if len(rates) != len(units) or any(r <= 0 for r in rates) or finetune_learning_rate <= 0:
            raise ConfigError(
                "give one positive pretraining learning rate per layer (or one for all) and a "
                "positive fine-tuning rate"
            )
        dropout = check_drop_rate(dropout)
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise ConfigError(f"n_classes must be an integer >= 2, got {n_classes!r}")
        config = config or RunConfig()
        if config.random_seed is not None:
            torch.manual_seed(config.random_seed)
        n_inputs = math.prod(check_shape("input_shape", input_shape))
        network = build_within_memory(
            lambda: StackedNetwork(n_inputs, units, n_classes, tied_weights, dropout),
            f"hidden_units={units}, n_classes={n_classes}",
        )
        super().__init__(
            classifier_model_fn,
            network,
            # The decoders serve pretraining only: outside the optimizer they stay frozen
            # (and out of a data-parallel job's gradient reduction) while fine-tuning.
            optimizer=adam(network.finetune_parameters(), finetune_learning_rate),
            model_dir=model_dir,
            params={
                "hidden_units": units,
                "noise": noise,
                "noise_factor": noise_factor,
                "tied_weights": tied_weights,
                "pretrain_learning_rates": rates,
                "finetune_learning_rate": finetune_learning_rate,
                "n_classes": n_classes,
                "input_shape": list(input_shape),
                # Recorded only when used, so checkpoints from before the setting still match.
                **({"dropout": dropout} if dropout else {}),
            },
            config=config,
        )
        self.stack = network

    def pretrain_dir(self, layer: int) -> Path:
        """Where pretraining of `layer` (0-based) keeps its checkpoints and summaries."""
        return Path(self.model_dir) / "pretrain" / f"layer{layer + 1}"

    def pretrain(
        self, input_fn: InputFn, steps: int | Sequence[int], verbose: int | str = "auto"
    ) -> StackedDenoisingAutoencoder:
        """Pretrain every layer for `steps` steps (one number, or one per layer), resuming.

        `verbose` as `Estimator.train`'s; each layer's phase keeps its own `history`.
        """
        layers = len(self.stack.encoders)
        per_layer = [steps] * layers if isinstance(steps, int) else list(steps)
        if len(per_layer) != layers or any(s < 0 for s in per_layer):
            raise ConfigError(
                f"give one non-negative step count per layer ({layers}), got {steps!r}"
            )
        if self.latest_checkpoint() is not None:
            _log.info("fine-tuning has started in %s; pretraining is over", self.model_dir)
            return self
        for layer, layer_steps in enumerate(per_layer):
            if layer_steps == 0:
                continue
            phase = self._phase(layer)
            if self._phase_done(layer, layer_steps):
                phase.restore()  # its final weights, for the layers above
                continue
            _log.info("pretraining layer %d of %d", layer + 1, layers)
            phase.train(input_fn, max_steps=layer_steps, verbose=verbose)
        return self

    def _phase(self, layer: int) -> Estimator:
        rate = self.params["pretrain_learning_rates"][layer]
        params = self.stack.layer_parameters(layer)
        return Estimator(
            pretrain_model_fn,
            self.stack,
            optimizer=adam(params, rate),
            model_dir=self.pretrain_dir(layer),
            params={
                "layer": layer,
                "noise": self.params["noise"],
                "noise_amount": self.params["noise_factor"],
                "learning_rate": rate,
            },
            config=dataclasses.replace(self.config, model_dir=None),
        )

    def _phase_done(self, layer: int, steps: int) -> bool:
        latest = ckpt.latest_checkpoint(self.pretrain_dir(layer))
        return latest is not None and ckpt.step_of(latest) >= steps

    def train(self, input_fn: InputFn, *args: Any, **kwargs: Any) -> StackedDenoisingAutoencoder:
        """Fine-tune the whole stack with the softmax layer, from the pretrained weights."""
        if self.latest_checkpoint() is None:
            self._load_pretrained()
        super().train(input_fn, *args, **kwargs)
        return self

    def _load_pretrained(self) -> None:
        # The last pretraining phase's checkpoint holds every layer's final weights.
        for layer in reversed(range(len(self.stack.encoders))):
            if self._phase(layer).restore():
                _log.info("fine-tuning starts from the pretrained weights of layer %d", layer + 1)
                return
