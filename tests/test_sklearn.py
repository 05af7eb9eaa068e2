"""AutoencoderTransformer: scikit-learn's own estimator checks, pipelines and grid search."""

from __future__ import annotations

import pickle
import time
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

import aekit
import aekit.sklearn as sklearn_module
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
    assert not hasattr(ae, "score_samples")  # per-row scores: AutoencoderOutlierDetector
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
    with pytest.raises(
        aekit.ConfigError, match="hidden_units must be a list of 1 to 64 positive integers"
    ):
        AutoencoderTransformer(hidden_units=()).fit(x)
    with pytest.raises(aekit.ConfigError, match="model must be one of"):
        AutoencoderTransformer(model="pca").fit(x)
    with pytest.raises(aekit.ConfigError, match="a hidden layer and the latent size"):
        AutoencoderTransformer(hidden_units=(2,), model="variational").fit(x)
    with pytest.raises(aekit.ConfigError, match="epochs must be an integer >= 1"):
        AutoencoderTransformer(epochs=0).fit(x)


@pytest.mark.parametrize("random_state", [-1, 2**32, 2**70, 1.5, "seed", True, object()])
def test_random_state_is_validated_as_scikit_learn_does(random_state: object) -> None:
    with pytest.raises(aekit.ConfigError) as error:
        AutoencoderTransformer(random_state=random_state).fit(np.ones((4, 3)))  # type: ignore[arg-type]
    assert "random_state must be None, an integer in [0, 4294967295]" in str(error.value)
    assert "\n" not in str(error.value)


def test_random_state_takes_numpy_integers_and_random_states() -> None:
    x = np.random.default_rng(0).random((12, 4))

    def codes(state: Any) -> np.ndarray:
        ae = AutoencoderTransformer(hidden_units=(3,), epochs=1, random_state=state)
        result: np.ndarray = ae.fit_transform(x)
        return result

    np.testing.assert_array_equal(codes(np.uint32(2**32 - 1)), codes(2**32 - 1))
    # A RandomState draws the seed: equal states give equal fits.
    np.testing.assert_array_equal(codes(np.random.RandomState(5)), codes(np.random.RandomState(5)))


def test_hidden_units_from_numpy_grids() -> None:
    """A grid built with numpy gives numpy integers (or arrays): they are layer sizes too."""
    x = np.random.default_rng(0).random((10, 5))
    grid: list[Any] = [(np.int64(4), np.int32(2)), np.array([4, 2]), [np.uint8(4), 2]]
    for units in grid:
        ae = AutoencoderTransformer(hidden_units=units, epochs=1, random_state=0).fit(x)
        assert ae.transform(x).shape == (10, 2) and type(ae.n_components_) is int
    refused: list[Any] = [(np.float64(4.0),), (np.bool_(True),), "64", np.array([4, -1])]
    for bad in refused:
        with pytest.raises(
            aekit.ConfigError, match="hidden_units must be a list of 1 to 64 positive integers"
        ):
            AutoencoderTransformer(hidden_units=bad).fit(x)


@pytest.mark.parametrize(
    ("device", "fragment"),
    [("meta", "cannot train"), ("nope", "unknown device"), (3, "device must be")],
)
def test_devices_that_cannot_train_are_refused(device: object, fragment: str) -> None:
    with pytest.raises(aekit.ConfigError, match=fragment):
        AutoencoderTransformer(device=device).fit(np.ones((4, 3)))  # type: ignore[arg-type]


def test_model_dir_and_model_types() -> None:
    with pytest.raises(aekit.ConfigError, match="model_dir must be a folder's path"):
        AutoencoderTransformer(model_dir=5).fit(np.ones((4, 3)))  # type: ignore[arg-type]
    with pytest.raises(aekit.ConfigError, match="model must be one of"):
        AutoencoderTransformer(model=np.array([1, 2])).fit(np.ones((4, 3)))  # type: ignore[arg-type]


def test_settings_are_checked_before_the_data_or_the_network() -> None:
    """A bad setting is named even when the data are bad too; a giant layer fails at once."""
    with pytest.raises(aekit.ConfigError, match="epochs"):
        AutoencoderTransformer(epochs=-1).fit([[np.nan]])
    start = time.perf_counter()
    with pytest.raises(aekit.ConfigError, match="parameters"):
        AutoencoderTransformer(hidden_units=(10**9,)).fit(np.ones((4, 64)))
    assert time.perf_counter() - start < 5


def test_data_too_large_to_scale_is_refused_naming_the_feature() -> None:
    """±1.7e308 spans more than float64 holds: the range cannot be taken; one clear error."""
    x = np.random.default_rng(0).uniform(-1, 1, (40, 3))
    x[0, 1], x[1, 1] = -1.7e308, 1.7e308
    ae = AutoencoderTransformer(hidden_units=(4, 2), epochs=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning on the way
        with pytest.raises(aekit.InputError, match="feature 1 .* too large to minmax-scale"):
            ae.fit(x)
    big = x.copy()
    big[:2, 1] = [-1e300, 1e300]  # a range float64 holds: scaled as any other
    codes = AutoencoderTransformer(hidden_units=(4, 2), epochs=3, random_state=0).fit_transform(big)
    assert np.isfinite(codes).all()


def test_reachable_from_the_package() -> None:
    assert aekit.sklearn.AutoencoderTransformer is AutoencoderTransformer
    assert aekit.VariationalAutoencoder is aekit.models.VariationalAutoencoder
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        aekit.nope  # noqa: B018


def test_a_memory_map_is_fitted_and_transformed_in_chunks_with_the_same_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20_000, 64), dtype=np.uint8)
    x[:, 5] = 7  # a constant feature keeps scale 1, as in memory
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    monkeypatch.setattr(sklearn_module, "_CHUNK_FLOATS", 64 * 1000)  # chunks of 1,000 rows
    settings: dict[str, Any] = {"hidden_units": (16, 4), "epochs": 2, "random_state": 3,
                                "batch_size": 500}  # fmt: skip
    eager = AutoencoderTransformer(**settings).fit(x)
    tracemalloc.start()
    lazy = AutoencoderTransformer(**settings).fit(mapped)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < x.size * 8 / 4  # a float64 copy would take 8 bytes a value
    np.testing.assert_array_equal(lazy.center_, eager.center_)
    np.testing.assert_array_equal(lazy.scale_, eager.scale_)
    for name, value in eager.network_.state_dict().items():
        torch.testing.assert_close(lazy.network_.state_dict()[name], value, rtol=0, atol=0)
    np.testing.assert_array_equal(lazy.transform(mapped), eager.transform(x))
    assert lazy.score(mapped) == eager.score(x)
    bad = np.lib.format.open_memmap(tmp_path / "bad.npy", mode="w+", dtype=np.float32,
                                    shape=(20_000, 64))  # fmt: skip
    bad[-1, -1] = np.nan  # in the last chunk
    bad.flush()
    with pytest.raises(ValueError, match="NaN"):
        AutoencoderTransformer(**settings).fit(np.load(tmp_path / "bad.npy", mmap_mode="r"))
