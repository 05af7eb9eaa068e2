"""aekit: autoencoders in PyTorch with an Estimator-style API."""

from aekit import data, hooks, metrics, models, summary
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
)

__version__ = "0.1.0"

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
    "InputError",
    "ModeKeys",
    "NanLossError",
    "RunConfig",
    "SpecError",
    "StackedDenoisingAutoencoder",
    "TrainSpec",
    "__version__",
    "data",
    "hooks",
    "metrics",
    "models",
    "summary",
    "train_and_evaluate",
]
