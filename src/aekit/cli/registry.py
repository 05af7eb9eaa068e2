"""Models by name, for the command line: how each is built from the run's settings.

The settings themselves (types, defaults, which model takes which) are declared in
`aekit.cli.settings`; a builder here turns them into the model's arguments. One meaning per
setting name: `dropout` is the probability of dropping a unit for every model, as in
PyTorch. The fully_connected model's own argument is seed 000's keep probability, so its
setting is `keep_prob`; `--dropout D` reaches it as `keep_prob = 1 - D` (aekit.cli.config).
On a table (a `scaling` other than none) fully_connected builds the outlier detector's
model (aekit.anomaly.tabular), trained on one thread so that a seed gives the same model as
`AutoencoderOutlierDetector(random_state=seed)`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aekit.errors import ConfigError

if TYPE_CHECKING:  # the models load when one is built: `aekit --help` needs no torch
    from aekit.estimator import Estimator, RunConfig


Builder = Callable[[Mapping[str, Any], tuple[int, ...], "RunConfig"], "Estimator"]


@dataclass(frozen=True)
class Usable:
    """After how many epochs a model's reconstructions are usable at its defaults.

    Measured on mnist-split (MNIST digits, 8,000 to train and 2,000 to test; see
    docs/measurements.md): the first epoch whose test reconstructions are all recognisable
    digits, and the test RMSE then, at the model's default batch. What counts is the
    optimizer steps (`steps`): a smaller data set's epochs take fewer of them.
    """

    epochs: int
    val_rmse: float
    batch: int

    @property
    def steps(self) -> int:
        """The optimizer steps of those epochs."""
        return self.epochs * math.ceil(DIGIT_COUNT / self.batch)

    def __str__(self) -> str:
        return (
            f"usable reconstructions after about {self.steps:,} steps ({self.epochs} epochs of "
            f"{DIGITS} in batches of {self.batch}; val_rmse {self.val_rmse:g})"
        )


DIGIT_COUNT = 8000
DIGITS = f"{DIGIT_COUNT:,} MNIST digits"
"""The data the `Usable` figures were measured on (mnist-split), as users know it."""
SHORT_RUN = 0.5
"""A run of at most this share of `Usable.epochs` is short..."""
FAR_ABOVE = 1.3
"""...and its error is far above the usual one beyond this many times `Usable.val_rmse`."""


@dataclass(frozen=True)
class ModelEntry:
    """A named model: its builder, a one-line description and, for autoencoders, `usable`.

    `build(settings, example_shape, config)` gets the run's settings (those the model takes,
    `aekit.cli.settings`) and the shape of one example, e.g. (28, 28) or (3, 32, 32).
    """

    name: str
    build: Builder
    description: str
    needs_images: bool = False
    supervised: bool = False
    usable: Usable | None = None

    @property
    def help(self) -> str:
        """The description and, when measured, after how many epochs the model is usable."""
        return self.description + ("" if self.usable is None else f"; {self.usable}")


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


def models_help() -> str:
    """The help of `aekit train`'s MODEL: the names, then each measured model's `usable`."""
    measured = [f"{n}: {_REGISTRY[n].usable}" for n in names() if _REGISTRY[n].usable]
    return f"one of: {', '.join(names())}" + "".join(f"; {line}" for line in measured)


def short_run_note(settings: Mapping[str, Any], result: Mapping[str, float]) -> str | None:
    """One line for the end of a run far shorter than its model needs, whose error shows it.

    Counted in optimizer steps, whatever the data set's size. None when the model has no
    `usable` figure, the run models a table (trained by its own recipe), it took more than
    SHORT_RUN of the usual steps, or its final RMSE is within FAR_ABOVE times the usual one.
    """
    entry = _REGISTRY.get(str(settings.get("model")))
    usable = None if entry is None else entry.usable
    steps, rmse = result.get("global_step"), result.get("rmse")
    if usable is None or is_table_run(settings) or steps is None or rmse is None:
        return None
    if steps > SHORT_RUN * usable.steps or not rmse > FAR_ABOVE * usable.val_rmse:
        return None
    return (
        f"{settings['model']} usually needs ~{usable.steps:,} optimizer steps for usable "
        f"reconstructions (val_rmse {usable.val_rmse:g}); this run took {int(steps):,} and "
        f"reached val_rmse {rmse:.3g}: raise --epochs"
    )


IMAGE_UNITS = [128, 64, 32]
"""fully_connected's hidden units on images (seed 000's); a table's are sized from its features."""


IMAGE_WEIGHT_DECAY = 1e-5
"""fully_connected's L2 factor on images (seed 000's); a table's model has none."""
IMAGE_BATCH, IMAGE_EPOCHS, IMAGE_LEARNING_RATE = 256, 30, 1e-3
"""fully_connected's batch size, epochs and rate on images; a table's follow its size."""


def is_table_run(settings: Mapping[str, Any]) -> bool:
    """Whether the run models rows of a table (scaled features) rather than images."""
    from aekit.anomaly.scaling import SCALINGS  # on use: the help needs no scikit-learn

    return settings.get("scaling") in SCALINGS


def hidden_units(hp: Mapping[str, Any]) -> list[int]:
    """The settings' hidden units; "auto" (not yet sized from the data) as on images."""
    units = hp.get("hidden_units")
    return IMAGE_UNITS if units == "auto" else list(units or [])


def learning_rate(hp: Mapping[str, Any]) -> float:
    """The settings' rate; "auto" (not yet resolved from the data): a table's or an image's."""
    rate = hp["learning_rate"]
    if rate == "auto":
        from aekit.anomaly.tabular import TABLE_LEARNING_RATE  # on use, as is_table_run

        return TABLE_LEARNING_RATE if is_table_run(hp) else IMAGE_LEARNING_RATE
    return float(rate)


def _weight_decay(hp: Mapping[str, Any]) -> float | None:
    decay = hp.get("weight_decay")
    if decay == "auto":
        return None if is_table_run(hp) else IMAGE_WEIGHT_DECAY
    return decay if isinstance(decay, float | int) else None


def _noise(hp: Mapping[str, Any]) -> tuple[str, float] | None:
    return ("gaussian", hp["noise_factor"]) if hp.get("noise_factor") else None


def _fully_connected(hp: Mapping[str, Any], shape: tuple[int, ...], config: RunConfig) -> Estimator:
    from aekit.anomaly.tabular import tabular_estimator
    from aekit.models.fully_connected import AutoEncoder

    if is_table_run(hp):  # settings for images only were refused (settings.images_only)
        return tabular_estimator(
            n_features=math.prod(shape),
            hidden_units=hidden_units(hp),
            learning_rate=learning_rate(hp),
            activation_fn=hp["activation"],
            weight_decay=_weight_decay(hp),
            config=dataclasses.replace(config, cpu_threads=1),  # as the detector trains
        )
    return AutoEncoder(
        hidden_units=hidden_units(hp),
        activation_fn=hp["activation"],
        keep_prob=hp["keep_prob"],
        weight_decay=_weight_decay(hp),
        learning_rate=learning_rate(hp),
        input_shape=shape,
        noise=_noise(hp),
        config=config,
    )


register(
    ModelEntry(
        name="fully_connected",
        description="seed 000: fully-connected autoencoder (denoising with --noise-factor); "
        "on a table, the outlier detector's model",
        build=_fully_connected,
        usable=Usable(epochs=15, val_rmse=0.15, batch=IMAGE_BATCH),
    )
)


def _convolutional(hp: Mapping[str, Any], shape: tuple[int, ...], config: RunConfig) -> Estimator:
    from aekit.models.convolutional import ConvolutionalAutoencoder
    from aekit.models.layers import image_shape

    return ConvolutionalAutoencoder(
        num_filters=hp["num_filters"],
        downsample=hp["downsample"],
        activation_fn=hp["activation"],
        weight_decay=hp["weight_decay"],
        learning_rate=learning_rate(hp),
        image_shape=image_shape(shape),
        noise=_noise(hp),
        config=config,
    )


register(
    ModelEntry(
        name="convolutional",
        description="seed 004: convolutional autoencoder (max-pool or strided down-sampling)",
        needs_images=True,
        usable=Usable(epochs=20, val_rmse=0.149, batch=256),
        build=_convolutional,
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
        finetune_learning_rate=learning_rate(hp),
        dropout=hp["dropout"],
        n_classes=hp["n_classes"],
        input_shape=shape,
        config=config,
    )


def _classifier(hp: Mapping[str, Any], shape: tuple[int, ...], config: RunConfig) -> Estimator:
    from aekit.models.classifier import Classifier
    from aekit.models.layers import image_shape

    return Classifier(
        image_shape=image_shape(shape),
        conv_filters=hp["num_filters"],
        dense_units=hp["dense_units"],
        dropout=hp["dropout"],
        n_classes=hp["n_classes"],
        learning_rate=learning_rate(hp),
        config=config,
    )


def _variational(hp: Mapping[str, Any], shape: tuple[int, ...], config: RunConfig) -> Estimator:
    from aekit.models.layers import image_shape
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
        learning_rate=learning_rate(hp),
        input_shape=shape,
        config=config,
    )


register(
    ModelEntry(
        name="variational",
        description="variational autoencoder (fully-connected or convolutional encoder, beta-VAE)",
        build=_variational,
        usable=Usable(epochs=10, val_rmse=0.156, batch=128),
    )
)

register(
    ModelEntry(
        name="stacked",
        description="seed 002: stacked denoising autoencoder, greedy pretraining + fine-tuning",
        supervised=True,
        build=_stacked,
    )
)

register(
    ModelEntry(
        name="classifier",
        description="seed 003: CNN classifier (5x5 conv/pool blocks, dense 1024, dropout 0.4)",
        needs_images=True,
        supervised=True,
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
