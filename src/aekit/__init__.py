"""aekit: autoencoders in PyTorch with an Estimator-style API.

The names below load on first use (aekit.lazy): `import aekit` costs neither torch nor
scikit-learn until a model, a pipeline or a detector is asked for.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from aekit.errors import (
    AekitError,
    CheckpointError,
    ConfigError,
    InputError,
    NanLossError,
    SpecError,
)
from aekit.lazy import attach

if TYPE_CHECKING:
    from aekit import anomaly, data, hooks, metrics, models, pyod, sklearn, summary
    from aekit.estimator import (
        Estimator,
        EstimatorSpec,
        EvalSpec,
        History,
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
    from aekit.modes import ModeKeys

try:  # one place holds the version: pyproject.toml, read from the installed package's metadata
    __version__ = version("aekit")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"

_WHERE = {
    **{name: f"aekit.{name}" for name in
       ("anomaly", "data", "hooks", "metrics", "models", "pyod", "sklearn", "summary")},
    **dict.fromkeys(("Estimator", "EstimatorSpec", "EvalSpec", "History", "RunConfig",
                     "TrainSpec", "train_and_evaluate"), "aekit.estimator"),
    **dict.fromkeys(("AutoEncoder", "Classifier", "ConvolutionalAutoencoder",
                     "StackedDenoisingAutoencoder", "VariationalAutoencoder"), "aekit.models"),
    "ModeKeys": "aekit.modes",
}  # fmt: skip
__getattr__, __dir__ = attach(__name__, _WHERE)


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
