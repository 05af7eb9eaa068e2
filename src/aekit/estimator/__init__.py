"""The Estimator engine: specs, config, checkpoints, the training loop."""

from aekit.estimator.estimator import Estimator, ModelFn
from aekit.estimator.history import History
from aekit.estimator.run_config import RunConfig
from aekit.estimator.spec import EstimatorSpec, ModeKeys
from aekit.estimator.training import EvalSpec, TrainSpec, train_and_evaluate

__all__ = [
    "Estimator",
    "EstimatorSpec",
    "EvalSpec",
    "History",
    "ModeKeys",
    "ModelFn",
    "RunConfig",
    "TrainSpec",
    "train_and_evaluate",
]
