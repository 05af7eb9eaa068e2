"""AutoencoderTransformer: scikit-learn's own estimator checks, pipelines and grid search."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

import aekit
from aekit.sklearn import AutoencoderTransformer


@parametrize_with_checks([AutoencoderTransformer(hidden_units=(8, 3), epochs=2)])
def test_scikit_learn_estimator_checks(estimator: AutoencoderTransformer, check: object) -> None:
    check(estimator)  # type: ignore[operator]


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    bunch = load_digits()
    return bunch.data, bunch.target


def test_fit_transform_inverse_transform_and_score(digits: tuple[np.ndarray, np.ndarray]) -> None:
    x = digits[0][:600]
    ae = AutoencoderTransformer(hidden_units=(32, 12), epochs=15, random_state=0)
    codes = ae.fit_transform(x)
    assert codes.shape == (600, 12) and codes.dtype == np.float64
    rebuilt = ae.inverse_transform(codes)
    assert rebuilt.shape == x.shape
    assert rebuilt.min() >= x.min() and rebuilt.max() <= x.max()  # the scaling is undone
    mse = float(((rebuilt - x) ** 2).mean())
    assert ae.score(x) == pytest.approx(-mse)
    # The code carries the digit: far better than predicting every pixel's mean.
    assert mse < 0.5 * float(x.var(axis=0).mean())
    np.testing.assert_allclose(ae.score_samples(x).mean(), ae.score(x))
    clone = pickle.loads(pickle.dumps(ae))
    np.testing.assert_allclose(clone.transform(x[:5]), codes[:5], rtol=1e-12)
    with pytest.raises(ValueError, match="give the output of transform"):
        ae.inverse_transform(x[:3])


def test_works_in_a_pipeline_and_a_grid_search(digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = digits
    x_train, y_train, x_test, y_test = x[:800], y[:800], x[1000:], y[1000:]
    pipeline = make_pipeline(
        AutoencoderTransformer(hidden_units=(64, 16), epochs=8, random_state=0),
        LogisticRegression(max_iter=1000),
    )
    pipeline.fit(x_train, y_train)
    assert pipeline.score(x_test, y_test) > 0.8
    # Alone, the transformer's score is its reconstruction: a wider code reconstructs better.
    search = GridSearchCV(
        AutoencoderTransformer(hidden_units=(32, 2), epochs=5, random_state=0),
        {"hidden_units": [(32, 2), (32, 16)]},
        cv=2,
        refit=False,
    )
    search.fit(x_train[:400])
    assert search.best_params_ == {"hidden_units": (32, 16)}


def test_variational_model_and_the_callers_random_state(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    x = digits[0][:300]
    torch.manual_seed(123)
    before = torch.get_rng_state()
    numpy_before = np.random.get_state(legacy=False)["state"]["key"].copy()
    vae = AutoencoderTransformer(hidden_units=(32, 2), model="variational", epochs=5)
    vae.set_params(random_state=1).fit(x)
    assert torch.equal(torch.get_rng_state(), before)  # fit seeded, then put everything back
    assert np.array_equal(np.random.get_state(legacy=False)["state"]["key"], numpy_before)
    codes = vae.transform(x)
    assert codes.shape == (300, 2) and np.isfinite(codes).all()
    assert vae.inverse_transform(codes).shape == x.shape


def test_bad_parameters_fail_in_fit_with_the_fix(digits: tuple[np.ndarray, np.ndarray]) -> None:
    x = digits[0][:20]
    with pytest.raises(aekit.ConfigError, match="hidden_units must be a non-empty list"):
        AutoencoderTransformer(hidden_units=()).fit(x)
    with pytest.raises(aekit.ConfigError, match="model must be one of"):
        AutoencoderTransformer(model="pca").fit(x)
    with pytest.raises(aekit.ConfigError, match="a hidden layer and the latent size"):
        AutoencoderTransformer(hidden_units=(2,), model="variational").fit(x)
    with pytest.raises(aekit.ConfigError, match="epochs must be a positive integer"):
        AutoencoderTransformer(epochs=0).fit(x)


def test_reachable_from_the_package() -> None:
    assert aekit.sklearn.AutoencoderTransformer is AutoencoderTransformer
    assert aekit.VariationalAutoencoder is aekit.models.VariationalAutoencoder
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        aekit.nope  # noqa: B018
