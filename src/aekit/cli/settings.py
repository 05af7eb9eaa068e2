"""Every setting of `aekit train`, declared once.

A `Setting` is a name, a check (type and bounds: `aekit.checks`), a help text, its
default(s) and the models that take it. From these declarations follow the command line's
flags and their help (`aekit.cli.main`), the checks of config files and of a model dir's
`hparams.json`, which settings a resumed run may change (`aekit.cli.config`), and the
RunConfig fields the settings fill (`run_config_args`). The models' own arguments are
filled by the builders in `aekit.cli.registry`, the code that uses the settings.

To add a setting: declare it below, and use it where it acts (a builder in the registry,
or a RunConfig field named by `run_config`). Nothing else needs to change: its flag, help,
config-file key, saved value and checks follow; `tests/cli/test_settings.py` walks every
declared setting through a flag, a config file and a resumed run, and asks for an example
value of a new one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aekit.checks import (
    Check,
    Choice,
    Device,
    Flag,
    Integer,
    Labels,
    Names,
    Number,
    Optional,
    OrAuto,
    Rates,
    Sizes,
    Text,
)
from aekit.cli import registry
from aekit.errors import ConfigError
from aekit.estimator.run_config import CHECKS as RUN_CONFIG_CHECKS

EVERY_MODEL = tuple(registry.names())
AUTOENCODERS = tuple(name for name in EVERY_MODEL if not registry.get(name).supervised)
_IMAGE_UNITS = ",".join(map(str, registry.IMAGE_UNITS))


@dataclass(frozen=True)
class Setting:
    """One setting: its check, help, default(s), and who takes it.

    Attributes:
        name: the key in config files and hparams.json (`--name-with-dashes` as a flag).
        check: the value's type and bounds.
        help: one line for `aekit train --help`; the defaults are added to it.
        default: the value for every model in `models`, unless `per_model` names another.
        models: the models that take it.
        per_model: defaults that differ by model (a model listed here takes the setting).
        resumable: a resumed run may change it (anything else would mix two models).
        path: a file or directory, stored absolute so that a run's commands work anywhere.
        flag: it has a command-line flag (else it lives in files only).
        exclusive: settings no command line may give together with this one.
        run_config: the RunConfig field it fills, if any.
        images_only: it acts on images only; a table run refuses it when it differs from
            its default (a setting nothing uses must not be saved as if it had acted).
    """

    name: str
    check: Check
    help: str = ""
    default: Any = None
    models: tuple[str, ...] = EVERY_MODEL
    per_model: Mapping[str, Any] | None = None
    resumable: bool = False
    path: bool = False
    flag: bool = True
    exclusive: tuple[str, ...] = ()
    run_config: str | None = None
    images_only: bool = False

    def takes(self, model: str) -> bool:
        """Whether `model` takes this setting."""
        return model in self.models or model in (self.per_model or {})

    def default_for(self, model: str) -> Any:
        """This setting's default for `model` (which takes it)."""
        return (self.per_model or {}).get(model, self.default)


def _per_model(**defaults: Any) -> dict[str, Any]:
    return defaults


NO_MODELS: tuple[str, ...] = ()

SETTINGS: tuple[Setting, ...] = (
    # -- the data ---------------------------------------------------------------------------
    Setting(
        "dataset",
        Text(),
        "mnist, fashion_mnist, kmnist, digits, or a .npz/.npy/.csv/.parquet/.feather/folder path",
        default="mnist",
    ),
    Setting(
        "data_dir",
        Optional(Text()),
        "directory holding the data set's files (default: "
        "$AEKIT_DATA_DIR/DATASET or ~/.cache/aekit/DATASET, downloaded there if missing)",
        resumable=True,
        path=True,
    ),
    Setting(
        "label_column",
        Optional(Text()),
        "the labels' column of a CSV, Parquet or Feather table (name or index) "
        "or .npz array; on a table, rows with a label other than 0 are anomalies, left "
        "out of training",
    ),
    Setting(
        "exclude_classes",
        Optional(Labels()),
        "leave these labels out of training and evaluation (e.g. 9, for `aekit score`)",
    ),
    Setting(
        "stream",
        Choice("auto", "always", "never"),
        "a folder of images: decode it batch by batch in worker processes as training reaches "
        "it, never whole in memory (the same batches; a resumed run goes on at the same "
        "example); auto streams a folder whose decoded pixels exceed the memory limit for "
        "loaded data (the smaller of 8 GiB and half the RAM, or AEKIT_MAX_DATA_BYTES), which "
        "would otherwise be refused; smaller folders load once, faster than decoding every "
        "epoch",
        default="auto",
        resumable=True,
    ),
    Setting(
        "binarize",
        Optional(Choice("dynamic", "fixed")),
        "0/1 pixels drawn with their "
        "intensity as p: anew every batch, or once; the test images are drawn once "
        "(seed 0)",
        images_only=True,
    ),
    Setting(
        "scaling",
        Choice("auto", "none", "standard", "robust", "minmax"),
        "how a table's "
        "features are scaled; a scaling makes the run a table (the outlier detector's "
        "model: scaled features, linear output, squared errors, early stopping), none "
        "makes it images; auto: standard when the values are not pixels in [0, 1]",
        default="auto",
        models=("fully_connected",),
    ),
    # -- the model --------------------------------------------------------------------------
    Setting(
        "hidden_units",
        OrAuto(Sizes()),
        f"layer sizes, e.g. 128,64,32; auto: {_IMAGE_UNITS} on "
        "images, sized from the features on a table",
        models=NO_MODELS,
        per_model=_per_model(
            fully_connected="auto", variational=[256, 128], stacked=[2000, 2000, 2000]
        ),
    ),
    Setting(
        "num_filters",
        Sizes(),
        "convolution filters per block, e.g. 16,8,8",
        models=NO_MODELS,
        per_model=_per_model(convolutional=[16, 8, 8], variational=[32, 64], classifier=[32, 64]),
    ),
    Setting(
        "downsample",
        Choice("max_pool", "strided"),
        "how convolution blocks halve the image",
        models=NO_MODELS,
        per_model=_per_model(convolutional="max_pool", variational="strided"),
    ),
    Setting(
        "activation",
        Text(),
        "relu, elu, leaky_relu, gelu, tanh or sigmoid",
        default="relu",
        models=AUTOENCODERS,
    ),
    Setting("latent_dim", Integer(1), "size of the code z", default=16, models=("variational",)),
    Setting(
        "encoder",
        Choice("fully_connected", "convolutional"),
        "the VAE's encoder",
        default="fully_connected",
        models=("variational",),
    ),
    Setting(
        "decoder",
        Choice("bernoulli", "gaussian"),
        "the VAE's likelihood",
        default="bernoulli",
        models=("variational",),
    ),
    Setting("beta", Number(), "weight of the KL term", default=1.0, models=("variational",)),
    Setting(
        "dense_units", Integer(1), "width of the dense layer", default=1024, models=("classifier",)
    ),
    Setting(
        "n_classes", Integer(2), "number of classes", default=10, models=("stacked", "classifier")
    ),
    Setting(
        "tied_weights",
        Flag(),
        "pretraining decoders use the encoders' weights transposed",
        default=True,
        models=("stacked",),
        flag=False,
    ),
    # -- regularisation and noise -----------------------------------------------------------
    Setting(
        "dropout",
        Number(most=1),
        "probability of dropping a unit (fully_connected keeps 1 - this: --keep-prob)",
        models=NO_MODELS,
        per_model=_per_model(classifier=0.4, stacked=0.0),
        exclusive=("keep_prob",),
    ),
    Setting(
        "keep_prob",
        Optional(Number(most=1)),
        "probability of keeping a unit, seed 000's form of --dropout",
        models=("fully_connected",),
        exclusive=("dropout",),
        images_only=True,
    ),
    Setting(
        "weight_decay",
        OrAuto(Optional(Number())),
        f"L2 factor on the weights; auto: {registry.IMAGE_WEIGHT_DECAY:g} on images, none on a "
        "table",
        models=NO_MODELS,
        per_model=_per_model(fully_connected="auto", convolutional=1e-5),
    ),
    Setting(
        "noise_factor",
        Optional(Number()),
        "Gaussian input noise: a denoising autoencoder (stacked: the share of pixels masked)",
        models=NO_MODELS,
        per_model=_per_model(fully_connected=None, convolutional=None, stacked=0.5),
        images_only=True,
    ),
    Setting(
        "noise",
        Choice("masking", "gaussian", "salt_and_pepper"),
        "the stacked model's input noise",
        default="masking",
        models=("stacked",),
    ),
    # -- training ---------------------------------------------------------------------------
    Setting(
        "epochs",
        OrAuto(Integer(1)),
        f"passes over the training data; auto: {registry.IMAGE_EPOCHS} on "
        "images, on a table at most what its size allows, stopping early",
        resumable=True,
        models=NO_MODELS,
        per_model=_per_model(
            fully_connected="auto", convolutional=30, variational=30, stacked=30, classifier=10
        ),
    ),
    Setting(
        "batch_size",
        OrAuto(Integer(1)),
        f"examples per step; auto: {registry.IMAGE_BATCH} on images, sized from the rows on a "
        "table",
        models=NO_MODELS,
        per_model=_per_model(
            fully_connected="auto", convolutional=256, variational=128, stacked=100, classifier=100
        ),
    ),
    Setting(
        "learning_rate",
        OrAuto(Number(positive=True)),
        f"Adam's rate; auto: {registry.IMAGE_LEARNING_RATE:g} on images, 0.003 on a table (a "
        "resumed run may lower it: a step decay by hand)",
        resumable=True,
        models=NO_MODELS,
        per_model=_per_model(
            fully_connected="auto",
            convolutional=1e-3,
            variational=1e-3,
            stacked=1e-3,
            classifier=1e-3,
        ),
    ),
    Setting(
        "pretrain_learning_rate",
        Rates(),
        "the stacked model's pretraining rate (one, or one per layer)",
        default=1e-3,
        models=("stacked",),
        resumable=True,
    ),
    Setting(
        "pretrain_epochs",
        Integer(0),
        "epochs of pretraining per layer",
        default=10,
        models=("stacked",),
    ),
    Setting(
        "clip_grad_norm",
        RUN_CONFIG_CHECKS["clip_grad_norm"],
        "clip the gradients' global norm to this",
        resumable=True,
        run_config="clip_grad_norm",
    ),
    # -- the run ----------------------------------------------------------------------------
    Setting(
        "seed",
        Integer(0, below=2**32),
        "seed of the initial weights, shuffles and noise",
        default=0,
        run_config="random_seed",
    ),
    Setting(
        "device",
        Device(),
        "auto, cpu, cuda, cuda:N",
        default="auto",
        resumable=True,
        run_config="device",
    ),
    Setting(
        "save_images",
        Optional(Text()),
        "write a PNG of reconstructions per epoch and a GIF here (autoencoders)",
        resumable=True,
        path=True,
        images_only=True,
    ),
    Setting(
        "log_every",
        Optional(Integer(1)),
        "every N steps, log one batch's loss and the speed (off a terminal; on one the bar "
        "shows them); default: every 100 steps, or once an epoch when an epoch has fewer",
        resumable=True,
    ),
    Setting(
        "example_shape",
        Sizes(),
        "the shape of one example, saved by training",
        flag=False,
        models=NO_MODELS,
    ),
    Setting(
        "columns",
        Optional(Names()),
        "a table's feature columns, by name in order, saved by training",
        flag=False,
        models=NO_MODELS,
    ),
    Setting("model", Text(), "the model's name", flag=False, models=NO_MODELS),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
RESUMABLE = frozenset(s.name for s in SETTINGS if s.resumable)
PATHS = tuple(s.name for s in SETTINGS if s.path)


def model_settings(model: str) -> dict[str, Any]:
    """Every setting `model` takes, with its default, and the model's name."""
    return {
        "model": model,
        **{s.name: s.default_for(model) for s in SETTINGS if s.takes(model)},
    }


def check_for_a_table(settings: Mapping[str, Any]) -> None:
    """ConfigError naming the settings given to a table's run that act on images only."""
    model = settings["model"]
    given = [
        f"--{s.name.replace('_', '-')}"
        for s in SETTINGS
        if s.images_only and s.takes(model) and settings.get(s.name) != s.default_for(model)
    ]
    if given:
        raise ConfigError(
            f"{' and '.join(given)} act{'s' if len(given) == 1 else ''} on images, and this "
            "run's rows are a table; drop "
            f"{'it' if len(given) == 1 else 'them'}, or give --scaling none to read the data "
            "as images"
        )


def check_values(settings: Mapping[str, Any], source: str | None = None) -> None:
    """ConfigError naming the first setting of the wrong type or out of range.

    Every key needs a declaration: a setting nobody checks is how a file smuggles in a
    structure that the run would later allocate or serialise.
    """
    for key, value in settings.items():
        try:
            if key not in BY_NAME:
                raise ConfigError(f"{key} is not a setting aekit knows; remove it")
            BY_NAME[key].check(key, value)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (in {source})" if source else str(exc)) from None


def run_config_args(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The RunConfig fields the settings fill (those declared with `run_config`)."""
    return {s.run_config: settings[s.name] for s in SETTINGS if s.run_config and s.name in settings}


def absolute(settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` with the path settings (and a data set given as a path) made absolute.

    Relative paths are read from the working directory; saved absolute, they keep their
    meaning when the run's commands are run from elsewhere.
    """
    from aekit.data.sources import DATASET_NAMES

    for key in (*PATHS, "dataset"):
        value = settings.get(key)
        if not isinstance(value, str) or not value:
            continue
        # A data set is a path when it is not a name and looks like one or exists (a
        # misspelt name stays a name, so that its error lists the names).
        if key == "dataset" and (
            value in DATASET_NAMES
            or not (any(c in value for c in "/\\.~") or os.path.exists(value))
        ):
            continue
        settings[key] = os.path.abspath(os.path.expanduser(value))
    return settings
