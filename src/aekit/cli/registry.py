"""Models by name, for the command line: how to build each and its default hyper-parameters.

One meaning per setting name: `dropout` is the probability of dropping a unit for every
model, as in PyTorch. The fully_connected model's own argument is seed 000's keep
probability, so its setting is `keep_prob`; `--dropout D` reaches it as `keep_prob = 1 - D`
(see `aekit.cli.settings`).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aekit.errors import ConfigError
from aekit.estimator import Estimator, RunConfig
from aekit.models.convolutional import ConvolutionalAutoencoder
from aekit.models.fully_connected import AutoEncoder
from aekit.models.layers import image_shape

Builder = Callable[[Mapping[str, Any], tuple[int, ...], RunConfig], Estimator]


@dataclass(frozen=True)
class ModelEntry:
    """A named model: its builder, its hyper-parameters with defaults, a one-line description.

    `build(hparams, example_shape, config)` gets every key of `defaults` (possibly
    overridden) and the shape of one example, e.g. (28, 28) or (3, 32, 32).
    """

    name: str
    build: Builder
    defaults: Mapping[str, Any]
    description: str
    needs_images: bool = False
    supervised: bool = False
    training_defaults: Mapping[str, Any] = field(
        default_factory=lambda: {"batch_size": 256, "epochs": 30}
    )


_REGISTRY: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> ModelEntry:
    """Make a model available to `aekit train NAME`."""
    _REGISTRY[entry.name] = entry
    return entry


def get(name: str) -> ModelEntry:
    """The entry named `name`, or a ConfigError listing the choices."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), names(), n=1, cutoff=0.5)
        if not close:  # abbreviations such as "fc" are too short for difflib's ratio
            close = [n for n in names() if "".join(w[0] for w in n.split("_")) == name]
        hint = f"did you mean {close[0]}? " if close else ""
        raise ConfigError(
            f"unknown model {name!r}; {hint}choose one of {', '.join(names())}"
        ) from None


def names() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


IMAGE_UNITS = [128, 64, 32]
"""fully_connected's hidden units on images (seed 000's); a table's are sized from its features."""


def hidden_units(hp: Mapping[str, Any]) -> list[int]:
    """The settings' hidden units; "auto" (not yet sized from the data) as on images."""
    units = hp.get("hidden_units")
    return IMAGE_UNITS if units == "auto" else list(units or [])


def _noise(hp: Mapping[str, Any]) -> tuple[str, float] | None:
    return ("gaussian", hp["noise_factor"]) if hp.get("noise_factor") else None


register(
    ModelEntry(
        name="fully_connected",
        description="seed 000: fully-connected autoencoder (denoising with --noise-factor)",
        defaults={
            "hidden_units": "auto",
            "activation": "relu",
            "keep_prob": None,
            "weight_decay": 1e-5,
            "learning_rate": 1e-3,
            "noise_factor": None,
            "scaling": "auto",
        },
        build=lambda hp, shape, config: AutoEncoder(
            hidden_units=hidden_units(hp),
            scaling=None if hp["scaling"] in ("auto", "none") else hp["scaling"],
            activation_fn=hp["activation"],
            dropout=hp["keep_prob"],  # AutoEncoder's `dropout` is seed 000's keep probability
            weight_decay=hp["weight_decay"],
            learning_rate=hp["learning_rate"],
            input_shape=shape,
            noise=_noise(hp),
            config=config,
        ),
    )
)

register(
    ModelEntry(
        name="convolutional",
        description="seed 004: convolutional autoencoder (max-pool or strided down-sampling)",
        defaults={
            "num_filters": [16, 8, 8],
            "downsample": "max_pool",
            "activation": "relu",
            "weight_decay": 1e-5,
            "learning_rate": 1e-3,
            "noise_factor": None,
        },
        needs_images=True,
        build=lambda hp, shape, config: ConvolutionalAutoencoder(
            num_filters=hp["num_filters"],
            downsample=hp["downsample"],
            activation_fn=hp["activation"],
            weight_decay=hp["weight_decay"],
            learning_rate=hp["learning_rate"],
            image_shape=image_shape(shape),
            noise=_noise(hp),
            config=config,
        ),
    )
)


def _stacked(hp: Mapping[str, Any], shape: tuple[int, ...], config: RunConfig) -> Estimator:
    from aekit.models.stacked import StackedDenoisingAutoencoder

    return StackedDenoisingAutoencoder(
        hidden_units=hp["hidden_units"],
        noise=hp["noise"],
        noise_factor=hp["noise_factor"],
        tied_weights=hp["tied_weights"],
        pretrain_learning_rates=hp["pretrain_learning_rate"],
        finetune_learning_rate=hp["learning_rate"],
        dropout=hp["dropout"],
        n_classes=hp["n_classes"],
        input_shape=shape,
        config=config,
    )


def _classifier(hp: Mapping[str, Any], shape: tuple[int, ...], config: RunConfig) -> Estimator:
    from aekit.models.classifier import Classifier

    return Classifier(
        image_shape=image_shape(shape),
        conv_filters=hp["num_filters"],
        dense_units=hp["dense_units"],
        dropout=hp["dropout"],
        n_classes=hp["n_classes"],
        learning_rate=hp["learning_rate"],
        config=config,
    )


def _variational(hp: Mapping[str, Any], shape: tuple[int, ...], config: RunConfig) -> Estimator:
    from aekit.models.variational import VariationalAutoencoder

    if hp["encoder"] == "convolutional":
        shape = image_shape(shape)  # flat data is refused here, before anything is written
    return VariationalAutoencoder(
        latent_dim=hp["latent_dim"],
        encoder=hp["encoder"],
        hidden_units=hp["hidden_units"],
        num_filters=hp["num_filters"],
        downsample=hp["downsample"],
        activation_fn=hp["activation"],
        decoder=hp["decoder"],
        beta=hp["beta"],
        learning_rate=hp["learning_rate"],
        input_shape=shape,
        config=config,
    )


register(
    ModelEntry(
        name="variational",
        description="variational autoencoder (fully-connected or convolutional encoder, beta-VAE)",
        defaults={
            "latent_dim": 16,
            "encoder": "fully_connected",
            "hidden_units": [256, 128],
            "num_filters": [32, 64],
            "downsample": "strided",
            "activation": "relu",
            "decoder": "bernoulli",
            "beta": 1.0,
            "learning_rate": 1e-3,
        },
        training_defaults={"batch_size": 128, "epochs": 30},
        build=_variational,
    )
)

register(
    ModelEntry(
        name="stacked",
        description="seed 002: stacked denoising autoencoder, greedy pretraining + fine-tuning",
        defaults={
            "hidden_units": [2000, 2000, 2000],
            "noise": "masking",
            "noise_factor": 0.5,
            "tied_weights": True,
            "pretrain_learning_rate": 1e-3,
            "pretrain_epochs": 10,
            "learning_rate": 1e-3,
            "dropout": 0.0,
            "n_classes": 10,
        },
        supervised=True,
        training_defaults={"batch_size": 100, "epochs": 30},
        build=_stacked,
    )
)

register(
    ModelEntry(
        name="classifier",
        description="seed 003: CNN classifier (5x5 conv/pool blocks, dense 1024, dropout 0.4)",
        defaults={
            "num_filters": [32, 64],
            "dense_units": 1024,
            "dropout": 0.4,
            "learning_rate": 1e-3,
            "n_classes": 10,
        },
        needs_images=True,
        supervised=True,
        training_defaults={"batch_size": 100, "epochs": 10},
        build=_classifier,
    )
)

PRESETS: dict[str, dict[str, Any]] = {
    # Seed 002's settings: three layers of 2000 units, half the pixels masked, batches of 100.
    "seed_002": {
        "model": "stacked",
        "hidden_units": [2000, 2000, 2000],
        "noise": "masking",
        "noise_factor": 0.5,
        "batch_size": 100,
    },
}
