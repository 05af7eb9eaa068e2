"""The Estimator engine: specs, config, checkpoints, the training loop.

Its names load on first use (aekit.lazy), so that reading `aekit.estimator.run_config`'s
checks (the command line's help does) costs no torch.
"""

from typing import TYPE_CHECKING

from aekit.lazy import attach

if TYPE_CHECKING:
    from aekit.estimator.estimator import Estimator, ModelFn
    from aekit.estimator.history import History
    from aekit.estimator.run_config import RunConfig
    from aekit.estimator.spec import EstimatorSpec, ModeKeys
    from aekit.estimator.training import EvalSpec, TrainSpec, train_and_evaluate

__getattr__, __dir__ = attach(
    __name__,
    {
        "Estimator": "aekit.estimator.estimator",
        "ModelFn": "aekit.estimator.estimator",
        "History": "aekit.estimator.history",
        "RunConfig": "aekit.estimator.run_config",
        "EstimatorSpec": "aekit.estimator.spec",
        "ModeKeys": "aekit.estimator.spec",
        "EvalSpec": "aekit.estimator.training",
        "TrainSpec": "aekit.estimator.training",
        "train_and_evaluate": "aekit.estimator.training",
    },
)

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
