"""aekit.pyod.AutoEncoder under the contracts PyOD's own test suite holds its detectors to
(written here, not copied: attributes, shapes, ranges, ranks, clone), and against PyOD's
BaseDetector formulas when PyOD is installed."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

import aekit
from aekit.anomaly import AutoencoderOutlierDetector
from aekit.pyod import AutoEncoder

N_TRAIN, N_TEST, FEATURES, CONTAMINATION = 400, 200, 6, 0.1


def data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Inliers around a plane, and a tenth of outliers spread far off it (labels 1)."""
    rng = np.random.default_rng(seed)
    outliers = int(n * CONTAMINATION)
    plane = rng.normal(size=(n - outliers, 2)) @ np.random.default_rng(0).normal(size=(2, FEATURES))
    inliers = plane + 0.1 * rng.normal(size=plane.shape)
    far = rng.uniform(-6, 6, size=(outliers, FEATURES))
    return np.vstack([inliers, far]), np.r_[np.zeros(n - outliers), np.ones(outliers)]


@pytest.fixture(scope="module")
def fitted() -> tuple[AutoEncoder, np.ndarray, np.ndarray, np.ndarray]:
    x_train, _ = data(N_TRAIN, 1)
    x_test, y_test = data(N_TEST, 2)
    clf = AutoEncoder(epoch_num=5, contamination=CONTAMINATION, verbose=0).fit(x_train)
    return clf, x_train, x_test, y_test


Fitted = tuple[AutoEncoder, np.ndarray, np.ndarray, np.ndarray]


def test_the_fitted_attributes_and_the_training_scores(fitted: Fitted) -> None:
    clf, x_train, _, _ = fitted
    for name in ("decision_scores_", "labels_", "threshold_", "_mu", "_sigma", "detector_"):
        assert getattr(clf, name, None) is not None, name
    assert clf.decision_scores_.shape == (N_TRAIN,) and clf.labels_.shape == (N_TRAIN,)
    np.testing.assert_array_equal(clf.labels_, clf.decision_scores_ > clf.threshold_)
    # The conformal quantile: at most one training score above PyOD's percentile.
    pyods = np.percentile(clf.decision_scores_, 100 * (1 - CONTAMINATION))
    between = (clf.decision_scores_ > pyods) & (clf.decision_scores_ <= clf.threshold_)
    assert clf.threshold_ >= pyods and between.sum() <= 1
    assert clf.labels_.sum() in (N_TRAIN * CONTAMINATION - 1, N_TRAIN * CONTAMINATION)
    # The training rows' scores are what decision_function gives them: no row is scored by
    # a member that trained on it, so predict agrees with labels_ on the training rows.
    np.testing.assert_array_equal(clf.decision_function(x_train), clf.decision_scores_)
    np.testing.assert_array_equal(clf.predict(x_train), clf.labels_)


def test_scores_labels_and_the_sign_a_pyod_user_expects(fitted: Fitted) -> None:
    clf, _, x_test, y_test = fitted
    scores = clf.decision_function(x_test)
    assert scores.shape == (N_TEST,)
    assert roc_auc_score(y_test, scores) >= 0.8  # higher is more abnormal, as in PyOD
    labels = clf.predict(x_test)
    assert labels.shape == y_test.shape and set(np.unique(labels)) <= {0, 1}
    # The same model and score as the scikit-learn detector, the sign turned.
    np.testing.assert_array_equal(scores, -clf.detector_.score_samples(x_test))
    np.testing.assert_array_equal(labels == 1, clf.detector_.predict(x_test) == -1)


@pytest.mark.parametrize("method", ["linear", "unify"])
def test_probabilities_and_confidence_lie_in_zero_one(fitted: Fitted, method: str) -> None:
    clf, _, x_test, _ = fitted
    proba = clf.predict_proba(x_test, method=method)
    assert proba.shape == (N_TEST, 2) and proba.min() >= 0 and proba.max() <= 1
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-15)
    order = np.argsort(clf.decision_function(x_test), kind="stable")
    assert (np.diff(proba[order, 1]) >= 0).all()  # rises with the score
    proba_again, confidence = clf.predict_proba(x_test, method=method, return_confidence=True)
    np.testing.assert_array_equal(proba_again, proba)
    labels, confidence_again = clf.predict(x_test, return_confidence=True)
    assert confidence.shape == labels.shape == (N_TEST,)
    assert confidence.min() >= 0 and confidence.max() <= 1
    np.testing.assert_array_equal(confidence, confidence_again)
    with pytest.raises(ValueError, match="method must be one of linear, unify"):
        clf.predict_proba(x_test, method="something")
    with pytest.raises(NotFittedError):
        AutoEncoder().predict_proba(x_test)


def test_ranks_fit_predict_scoring_and_clone(fitted: Fitted) -> None:
    clf, x_train, x_test, y_test = fitted
    scores = clf.decision_function(x_test)
    order = np.argsort(scores, kind="stable")
    for normalized, top in ((False, N_TRAIN + 1), (True, 1.01)):
        ranks = clf._predict_rank(x_test, normalized=normalized)
        assert (np.diff(ranks[order]) >= 0).all()  # the scores' order
        assert (ranks < top).all() and (ranks > -0.1).all()
    again = clone(clf)
    assert again.get_params() == clf.get_params() and not hasattr(again, "decision_scores_")
    np.testing.assert_array_equal(again.fit_predict(x_train), clf.labels_)  # seed 42: the same
    x_labelled, y_labelled = data(N_TRAIN, 3)
    for scoring in ("roc_auc_score", "prc_n_score"):
        assert 0.5 < clone(clf).fit_predict_score(x_labelled, y_labelled, scoring) <= 1
    with pytest.raises(NotImplementedError):
        clone(clf).fit_predict_score(x_test, y_test, scoring="something")


def test_pyods_names_and_settings(fitted: Fitted) -> None:
    clf, _, _, _ = fitted
    det = clf.detector_
    assert (det.epochs, det.learning_rate, det.random_state) == (5, clf.lr, 42)
    assert AutoencoderOutlierDetector().get_params().keys().isdisjoint({"epoch_num", "lr"})
    with pytest.raises(TypeError, match="dropout_rate"):
        AutoEncoder(dropout_rate=0.2)  # type: ignore[call-arg]
    with pytest.raises(aekit.ConfigError, match="contamination must be at most 0.5"):
        AutoEncoder(contamination=0.7, verbose=0).fit(np.zeros((20, 2)))


def test_the_same_figures_as_pyods_base_detector() -> None:
    """PyOD's own BaseDetector methods over aekit's fitted scores give aekit's answers."""
    pytest.importorskip("pyod")
    from pyod.models.base import BaseDetector

    x_train, _ = data(N_TRAIN, 4)
    x_test, _ = data(N_TEST, 5)
    ours = AutoEncoder(epoch_num=3, verbose=0).fit(x_train)

    class Scored(BaseDetector):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(contamination=CONTAMINATION)

        def fit(self, X: np.ndarray, y: None = None) -> Scored:
            self._set_n_classes(y)
            self.decision_scores_ = ours.decision_scores_
            self._process_decision_scores()
            return self

        def decision_function(self, X: np.ndarray) -> np.ndarray:
            return ours.decision_function(X)

    theirs = Scored().fit(x_train)
    assert ours.threshold_ >= theirs.threshold_  # the conformal quantile, see above
    theirs.threshold_ = ours.threshold_
    theirs.labels_ = (theirs.decision_scores_ > theirs.threshold_).astype(int)
    np.testing.assert_array_equal(theirs.labels_, ours.labels_)
    np.testing.assert_array_equal(theirs.predict(x_test), ours.predict(x_test))
    for method in ("linear", "unify"):
        np.testing.assert_allclose(
            theirs.predict_proba(x_test, method=method), ours.predict_proba(x_test, method=method)
        )
    np.testing.assert_allclose(theirs.predict_confidence(x_test), ours.predict_confidence(x_test))
    np.testing.assert_array_equal(theirs._predict_rank(x_test), ours._predict_rank(x_test))


def test_unify_matches_the_formula_and_equal_training_scores_give_no_nan(fitted: Fitted) -> None:
    clf, _, x_test, _ = fitted
    train, test = clf.decision_scores_, clf.decision_function(x_test)
    z = (test - train.mean()) / (train.std() * np.sqrt(2))
    expected = np.clip([math.erf(v) for v in z], 0, 1)
    np.testing.assert_allclose(clf.predict_proba(x_test, method="unify")[:, 1], expected)
    flat = copy.deepcopy(clf)  # every training score equal: no range or spread to divide by
    at = float(np.median(test))
    flat.decision_scores_ = np.full(N_TRAIN, at)
    unify = flat.predict_proba(x_test, method="unify")[:, 1]
    np.testing.assert_array_equal(unify, (test > at).astype(float))  # a step, not PyOD's NaN
    linear = flat.predict_proba(x_test, method="linear")[:, 1]  # divided by 1, as MinMaxScaler
    np.testing.assert_array_equal(linear, np.clip(test - at, 0, 1))
