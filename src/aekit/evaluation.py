"""How good an autoencoder's embedding is: a linear classifier fitted on it."""

from __future__ import annotations

import numpy as np

from aekit.data.input_fn import predict_input_fn
from aekit.data.rows import Rows
from aekit.errors import InputError
from aekit.estimator import Estimator


def embeddings(estimator: Estimator, x: np.ndarray | Rows, batch_size: int = 1000) -> np.ndarray:
    """The `embedding` prediction of every example, stacked."""
    batches = estimator.predict(
        predict_input_fn(x, estimator.network, batch_size),
        predict_keys=["embedding"],
        yield_single_examples=False,
    )
    return np.concatenate([b["embedding"] for b in batches])


def linear_probe(
    estimator: Estimator,
    x_train: np.ndarray | Rows,
    y_train: np.ndarray | None,
    x_test: np.ndarray | Rows,
    y_test: np.ndarray | None,
) -> float:
    """Test accuracy of a logistic regression fitted on the training embeddings.

    The standard yardstick for representations: the better the code separates the
    classes linearly, the higher the accuracy. Features are standardised first.
    """
    if y_train is None or y_test is None:
        raise InputError("a linear probe needs labels; this data set has none")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(embeddings(estimator, x_train), y_train)
    return float(probe.score(embeddings(estimator, x_test), y_test))
