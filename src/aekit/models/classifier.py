"""Seed 003's CNN classifier, and classifiers on top of a trained encoder."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from aekit.errors import ConfigError
from aekit.estimator import Estimator, RunConfig
from aekit.estimator.optimizers import adam
from aekit.models.heads import as_images, classifier_model_fn
from aekit.models.layers import check_drop_rate
from aekit.models.layers import image_shape as to_image_shape
from aekit.models.memory import build_within_memory


class ConvClassifierNetwork(nn.Module):
    """Blocks of a 5×5 convolution and 2×2 max-pooling, a dense layer with dropout, logits."""

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        conv_filters: Sequence[int] = (32, 64),
        dense_units: int = 1024,
        dropout: float = 0.4,
        n_classes: int = 10,
    ) -> None:
        super().__init__()
        channels, height, width = to_image_shape(tuple(image_shape))
        self.image_shape = (channels, height, width)
        blocks: list[nn.Module] = []
        for f in conv_filters:
            blocks += [
                nn.Conv2d(channels, f, 5, padding=2),
                nn.ReLU(),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            channels, height, width = f, math.ceil(height / 2), math.ceil(width / 2)
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * height * width, dense_units),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(dense_units, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.features(as_images(x, self.image_shape)))
        return logits


class EncoderClassifierNetwork(nn.Module):
    """A trained encoder's code fed to fully-connected layers; the encoder frozen or tuned."""

    def __init__(
        self,
        encoder: nn.Module,
        code_size: int,
        hidden_units: Sequence[int] = (),
        n_classes: int = 10,
        freeze_encoder: bool = True,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.freeze_encoder = freeze_encoder
        for p in encoder.parameters():
            p.requires_grad_(not freeze_encoder)
        sizes = [code_size, *hidden_units]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(sizes):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], n_classes))
        self.head = nn.Sequential(*layers)

    def train(self, mode: bool = True) -> EncoderClassifierNetwork:
        """Set training mode; a frozen encoder stays in eval mode (dropout off)."""
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.freeze_encoder:
            with torch.no_grad():
                code = self.encoder(x)
        else:
            code = self.encoder(x)
        logits: torch.Tensor = self.head(code.flatten(1))
        return logits


class Classifier(Estimator):
    """Classifier estimator: accuracy, `class_ids` / `probabilities` / `logits` predictions.

    Without `encoder`, seed 003's CNN on images of `image_shape`. With `encoder`
    (any module mapping a batch to codes, e.g. `autoencoder.network.encode` wrapped
    by `aekit.models.classifier.encoder_of`), fully-connected `hidden_units` on its
    codes; `freeze_encoder=False` fine-tunes the encoder too. `dropout` is the probability
    of dropping a unit (PyTorch's meaning; seed 003's `rate`), unlike `AutoEncoder`'s.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        conv_filters: Sequence[int] = (32, 64),
        dense_units: int = 1024,
        dropout: float = 0.4,
        n_classes: int = 10,
        learning_rate: float = 1e-3,
        encoder: nn.Module | None = None,
        hidden_units: Sequence[int] = (),
        freeze_encoder: bool = True,
        model_dir: str | Path | None = None,
        config: RunConfig | None = None,
    ) -> None:
        check_drop_rate(dropout)
        if learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {learning_rate!r}")
        config = config or RunConfig()
        if config.random_seed is not None:
            torch.manual_seed(config.random_seed)
        network: nn.Module
        if encoder is None:
            network = build_within_memory(
                lambda: ConvClassifierNetwork(
                    image_shape, conv_filters, dense_units, dropout, n_classes
                ),
                f"conv_filters={list(conv_filters)}, dense_units={dense_units}",
            )
            trained = list(network.parameters())
        else:
            code_size, used = _probe(encoder, image_shape)
            network = build_within_memory(
                lambda: EncoderClassifierNetwork(
                    encoder, code_size, hidden_units, n_classes, freeze_encoder
                ),
                f"hidden_units={list(hidden_units)}",
            )
            # Only what computes the code: an autoencoder's decoder stays out of the
            # optimizer, so it is frozen (and out of DDP's reduction) while training.
            trained = [*network.head.parameters(), *([] if freeze_encoder else used)]
        super().__init__(
            classifier_model_fn,
            network,
            optimizer=adam(trained, learning_rate),
            model_dir=model_dir,
            params={
                "n_classes": n_classes,
                "learning_rate": learning_rate,
                "image_shape": list(image_shape),
                "conv_filters": list(conv_filters) if encoder is None else None,
                "dense_units": dense_units if encoder is None else None,
                "dropout": dropout if encoder is None else None,
                "hidden_units": list(hidden_units) if encoder is not None else None,
                "freeze_encoder": freeze_encoder if encoder is not None else None,
            },
            config=config,
        )


class _Encode(nn.Module):
    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code: torch.Tensor = self.network.encode(x)  # type: ignore[operator]
        return code


def encoder_of(network: nn.Module) -> nn.Module:
    """The encoder of a trained autoencoder's network, as a module for `Classifier(encoder=...)`."""
    if not callable(getattr(network, "encode", None)):
        raise ConfigError(
            f"{type(network).__name__} has no encode(); pass an autoencoder's network"
        )
    return _Encode(network)


def _probe(encoder: nn.Module, image_shape: Sequence[int]) -> tuple[int, list[nn.Parameter]]:
    """The size of the encoder's code, and the parameters that code depends on."""
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    code = encoder(torch.zeros(1, *image_shape, device=device))
    encoder.train(was_training)
    used: list[nn.Parameter] = []
    if code.requires_grad:
        trainable = [p for p in encoder.parameters() if p.requires_grad]
        found = torch.autograd.grad(code.sum(), trainable, allow_unused=True)
        used = [p for p, g in zip(trainable, found, strict=True) if g is not None]
    return int(code[0].numel()), used
