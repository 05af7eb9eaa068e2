"""aekit: autoencoders in PyTorch with an Estimator-style API."""

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from aekit import anomaly, data, hooks, metrics, models, summary
from aekit.errors import (
    AekitError,
    CheckpointError,
    ConfigError,
    InputError,
    NanLossError,
    SpecError,
)
from aekit.estimator import (
    Estimator,
    EstimatorSpec,
    EvalSpec,
    History,
    ModeKeys,
    RunConfig,
    TrainSpec,
    train_and_evaluate,
)
from aekit.models import (
    AutoEncoder,
    Classifier,
    ConvolutionalAutoencoder,
    StackedDenoisingAutoencoder,
    VariationalAutoencoder,
)

try:  # one place holds the version: pyproject.toml, read from the installed package's metadata
    __version__ = version("aekit")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AekitError",
    "AutoEncoder",
    "CheckpointError",
    "Classifier",
    "ConfigError",
    "ConvolutionalAutoencoder",
    "Estimator",
    "EstimatorSpec",
    "EvalSpec",
    "History",
    "InputError",
    "ModeKeys",
    "NanLossError",
    "RunConfig",
    "SpecError",
    "StackedDenoisingAutoencoder",
    "TrainSpec",
    "VariationalAutoencoder",
    "__version__",
    "anomaly",
    "data",
    "hooks",
    "metrics",
    "models",
    "pyod",
    "sklearn",
    "summary",
    "train_and_evaluate",
]


def __getattr__(name: str) -> Any:
    # aekit.sklearn and aekit.pyod import scikit-learn, about a second: they load on first
    # use, not with aekit.
    if name in ("sklearn", "pyod"):
        return importlib.import_module(f"aekit.{name}")
    raise AttributeError(f"module 'aekit' has no attribute {name!r}")
