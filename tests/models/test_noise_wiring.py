"""The input noise a denoising model applies is the noise it was asked for, not a scaled one.

`evaluate` reports `noisy_input_rmse`, the RMSE of the corrupted input against the clean
one. On images of known pixel values its expected value has a closed form: Gaussian noise
of std s clipped to [0, 1] on a pixel of value c gives the squared error
s²·E[clip(Z, a, b)²] with a = -c/s, b = (1 - c)/s and Z standard normal, where

    E[clip(Z, a, b)²] = Φ(b) - Φ(a) + a·φ(a) - b·φ(b) + a²·Φ(a) + b²·(1 - Φ(b)),

and masking a fraction p of the pixels of an all-ones image gives the squared error p.
With about 10⁵ pixels the sampling error is a fraction of a percent: half the noise, or
twice it, is tens of percent off.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import aekit
from aekit.cli.main import main
from aekit.data import load_dataset, numpy_input_fn

LEVELS = (0.0, 0.3, 0.5, 1.0)  # both ends clip, one side and both sides in between
SIDE = 16  # 16x16 images: 256 pixels, each level on a quarter of them
IMAGES = 512  # 131,072 pixels
RELATIVE = 0.02  # the sampling error of the RMSE is below 0.2% here (checked below)


def phi(z: float) -> float:
    return math.exp(-z * z / 2) / math.sqrt(2 * math.pi)


def big_phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def clipped_gaussian_mse(c: float, s: float) -> float:
    """E[(clip(c + s·Z, 0, 1) - c)²] for Z standard normal."""
    if s == 0:
        return 0.0
    a, b = -c / s, (1 - c) / s
    second_moment = (
        big_phi(b) - big_phi(a) + a * phi(a) - b * phi(b)
        + a * a * big_phi(a) + b * b * (1 - big_phi(b))
    )  # fmt: skip
    return s * s * second_moment


def expected_rmse(pixels: np.ndarray, s: float) -> float:
    """The RMSE Gaussian noise of std `s`, clipped to [0, 1], gives over these pixels."""
    values, counts = np.unique(pixels, return_counts=True)
    mse = sum(n * clipped_gaussian_mse(float(c), s) for c, n in zip(values, counts, strict=True))
    return math.sqrt(mse / counts.sum())


def level_images() -> np.ndarray:
    """IMAGES images of SIDE x SIDE pixels, each of LEVELS on a quarter of every image."""
    row = np.resize(np.asarray(LEVELS, dtype=np.float32), SIDE * SIDE)
    return np.tile(row, (IMAGES, 1)).reshape(IMAGES, SIDE, SIDE)


@pytest.mark.parametrize("s", [0.1, 0.5, 1.0])
def test_closed_form_matches_sampling(s: float) -> None:
    """The formula agrees with numpy's draws, and the tolerance is many sampling errors wide."""
    rng = np.random.default_rng(0)
    pixels = level_images().ravel()
    draws = [
        np.sqrt(
            np.mean((np.clip(pixels + s * rng.standard_normal(pixels.shape), 0, 1) - pixels) ** 2)
        )
        for _ in range(20)
    ]
    expected = expected_rmse(pixels, s)
    assert np.mean(draws) == pytest.approx(expected, rel=2e-3)
    assert np.std(draws) < RELATIVE * expected / 8
    # Half the noise and twice it are far outside the tolerance.
    assert expected_rmse(pixels, s / 2) < expected * (1 - 5 * RELATIVE)
    assert expected_rmse(pixels, s * 2) > expected * (1 + 5 * RELATIVE)


def trained(estimator: aekit.Estimator, images: np.ndarray) -> aekit.Estimator:
    estimator.train(numpy_input_fn(images, batch_size=IMAGES, shuffle=False), steps=1)
    return estimator


def config() -> aekit.RunConfig:
    return aekit.RunConfig(random_seed=0, log_step_count_steps=0, save_summary_steps=0)


def denoiser(model: str, model_dir: Path, **noise: Any) -> aekit.Estimator:
    """A small `model` ("fully_connected" or "convolutional") for SIDE x SIDE images."""
    if model == "convolutional":
        return aekit.ConvolutionalAutoencoder(
            [4], image_shape=(1, SIDE, SIDE), model_dir=model_dir, config=config(), **noise
        )
    return aekit.AutoEncoder(
        [8], input_shape=(SIDE, SIDE), model_dir=model_dir, config=config(), **noise
    )


@pytest.mark.parametrize("model", ["fully_connected", "convolutional"])
@pytest.mark.parametrize("s", [0.1, 0.5, 1.0])
def test_noise_factor_applies_gaussian_noise_of_that_std(
    tmp_path: Path, model: str, s: float
) -> None:
    images = level_images()
    est = trained(denoiser(model, tmp_path, noise_factor=s), images)
    results = est.evaluate(numpy_input_fn(images, batch_size=IMAGES, shuffle=False))
    assert results["noisy_input_rmse"] == pytest.approx(expected_rmse(images, s), rel=RELATIVE)


@pytest.mark.parametrize("s", [0.1, 0.5])
def test_gaussian_noise_tuple_applies_that_std(tmp_path: Path, s: float) -> None:
    """noise=("gaussian", s) is noise_factor=s."""
    images = level_images()
    est = trained(denoiser("fully_connected", tmp_path, noise=("gaussian", s)), images)
    results = est.evaluate(numpy_input_fn(images, batch_size=IMAGES, shuffle=False))
    assert results["noisy_input_rmse"] == pytest.approx(expected_rmse(images, s), rel=RELATIVE)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.6])
def test_masking_zeroes_that_fraction_of_the_pixels(tmp_path: Path, p: float) -> None:
    """On all-ones images a masked pixel is off by 1: the mean squared error is p."""
    ones = np.ones((8 * IMAGES, SIDE, SIDE), dtype=np.float32)  # 10⁶ pixels to evaluate
    est = trained(denoiser("fully_connected", tmp_path, noise=("masking", p)), ones[:IMAGES])
    results = est.evaluate(numpy_input_fn(ones, batch_size=IMAGES, shuffle=False))
    # The binomial sampling error, √((1 - p)/(p·10⁶)), is under 0.3% of p: 2% is 7 of them.
    assert results["noisy_input_rmse"] ** 2 == pytest.approx(p, rel=RELATIVE)


def test_noise_factor_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`aekit train --noise-factor 0.5`, then `aekit evaluate`: the noise is 0.5 on the test set."""
    model_dir = tmp_path / "model"
    status = main(["train", "fully_connected", "--dataset", "digits", "--noise-factor", "0.5",
                   "--hidden-units", "8,2", "--epochs", "1", "--batch-size", "256",
                   "--model-dir", str(model_dir)])  # fmt: skip
    assert status == 0
    capsys.readouterr()
    assert main(["evaluate", "--model-dir", str(model_dir)]) == 0
    printed = capsys.readouterr().out.split()
    metrics = dict(pair.split("=", 1) for pair in printed)
    (_, _), (x_test, _) = load_dataset("digits")
    pixels = x_test.astype(np.float64) / 255  # uint8 pixels, scaled to [0, 1] as in training
    # About 23,000 pixels: the sampling error is about 0.5%; 0.25 or 1.0 would be 40% off.
    assert float(metrics["noisy_input_rmse"]) == pytest.approx(expected_rmse(pixels, 0.5), rel=0.04)
    assert abs(expected_rmse(pixels, 0.25) / expected_rmse(pixels, 0.5) - 1) > 0.4
