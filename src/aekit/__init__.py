"""aekit: autoencoders in PyTorch with an Estimator-style API."""

from aekit import hooks, metrics, summary
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

__version__ = "0.1.0"

__all__ = [
    "AekitError",
    "CheckpointError",
    "ConfigError",
    "Estimator",
    "EstimatorSpec",
    "EvalSpec",
    "InputError",
    "ModeKeys",
    "NanLossError",
    "RunConfig",
    "SpecError",
    "TrainSpec",
    "__version__",
    "hooks",
    "metrics",
    "summary",
    "train_and_evaluate",
]
