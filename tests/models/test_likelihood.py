"""Binarized pixels and the importance-weighted log-likelihood of a VAE (Burda et al., 2016)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import aekit
from aekit.data import binarize, numpy_input_fn
from aekit.errors import ConfigError, InputError
from aekit.models.variational import VariationalAutoencoder

PATTERNS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)


def test_a_fixed_draw_is_reproducible_and_follows_the_intensities() -> None:
    pixels = np.tile(np.array([0, 64, 128, 255], dtype=np.uint8), (5000, 1))
    once = binarize(pixels, seed=3)
    assert once.dtype == bool and once.shape == pixels.shape
    assert np.array_equal(once, binarize(pixels, seed=3))
    assert not np.array_equal(once, binarize(pixels, seed=4))
    np.testing.assert_allclose(once.mean(0), [0, 64 / 255, 128 / 255, 1], atol=0.03)
    floats = binarize(torch.full((1000, 3), 0.25))
    assert abs(floats.mean() - 0.25) < 0.03


def test_binarizing_refuses_values_outside_zero_to_one() -> None:
    with pytest.raises(InputError, match=r"values from 0 to 2.*\[0, 1\]"):
        binarize(np.array([[0.0, 2.0]]))
    with pytest.raises(ConfigError, match="'dynamic', 'fixed' or None"):
        numpy_input_fn(np.zeros((4, 2)), binarize="random")  # type: ignore[arg-type]
    batches = numpy_input_fn(np.full((4, 2), 1.5), batch_size=4, binarize="dynamic")
    with pytest.raises(InputError, match=r"intensities in \[0, 1\]"):
        next(iter(batches()))


def _epochs(binarization: str, count: int) -> list[np.ndarray]:
    x = np.full((64, 10), 0.5, dtype=np.float32)
    data = numpy_input_fn(x, batch_size=64, shuffle=False, binarize=binarization)  # type: ignore[arg-type]
    return [next(iter(data()))[0].numpy() for _ in range(count)]


def test_dynamic_binarization_draws_every_batch_anew_and_fixed_once() -> None:
    dynamic = _epochs("dynamic", 2)
    assert set(np.unique(dynamic[0])) == {0.0, 1.0}
    assert not np.array_equal(dynamic[0], dynamic[1])
    fixed = _epochs("fixed", 2)
    assert set(np.unique(fixed[0])) == {0.0, 1.0}
    assert np.array_equal(fixed[0], fixed[1])


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory: pytest.TempPathFactory) -> VariationalAutoencoder:
    """Two pixels and a one-dimensional code: log p(x) can then be integrated exactly."""
    rng = np.random.default_rng(0)
    x = (rng.random((200, 2)) < [0.2, 0.7]).astype(np.float32)
    est = VariationalAutoencoder(
        latent_dim=1,
        hidden_units=(8,),
        input_shape=(2,),
        model_dir=tmp_path_factory.mktemp("vae"),
        config=aekit.RunConfig(random_seed=0),
    )
    est.train(numpy_input_fn(x, batch_size=50, num_epochs=5))
    return est


def _exact_log_likelihood(est: VariationalAutoencoder) -> np.ndarray:
    """log ∫ p(x|z) N(z; 0, 1) dz of each pattern, by the trapezoid rule on a fine grid."""
    z = torch.linspace(-12.0, 12.0, 48_001, dtype=torch.float64)
    with torch.no_grad():
        logits = est.vae.decode(z.float()[:, None]).reshape(len(z), 2).double()
    log_prior = -0.5 * (z.square() + math.log(2 * math.pi))
    step = float(z[1] - z[0])
    exact = []
    for pattern in torch.from_numpy(PATTERNS).double():
        log_px = -torch.nn.functional.binary_cross_entropy_with_logits(
            logits, pattern.expand_as(logits), reduction="none"
        ).sum(1)
        exact.append(float(torch.logsumexp(log_px + log_prior, 0)) + math.log(step))
    return np.array(exact)


def test_the_estimate_converges_to_the_exact_likelihood(tiny_vae: VariationalAutoencoder) -> None:
    exact = _exact_log_likelihood(tiny_vae)
    assert abs(np.exp(exact).sum() - 1.0) < 1e-4  # the four patterns are every outcome
    one_batch = numpy_input_fn(PATTERNS, batch_size=4, shuffle=False)
    # 5,000 codes per example in chunks of 2,048: the running log-sum-exp is exercised.
    estimate = tiny_vae.log_likelihood(one_batch, samples=5000)
    assert estimate == pytest.approx(exact.mean(), abs=0.02)
    each = [
        tiny_vae.log_likelihood(numpy_input_fn(PATTERNS[i : i + 1], shuffle=False), samples=5000)
        for i in range(4)
    ]
    np.testing.assert_allclose(each, exact, atol=0.05)
    assert tiny_vae.log_likelihood(one_batch, samples=200) == tiny_vae.log_likelihood(
        one_batch, samples=200
    )  # the same seed, the same figure


def test_bad_sample_counts_are_refused(tiny_vae: VariationalAutoencoder) -> None:
    data = numpy_input_fn(PATTERNS, shuffle=False)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="samples must be a positive integer"):
            tiny_vae.log_likelihood(data, samples=bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="no batches"):
        tiny_vae.log_likelihood([], samples=2)


def test_the_command_line_trains_binarized_and_reports_the_likelihood(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aekit.cli.main import main

    vae = tmp_path / "vae"
    assert main(["train", "variational", "--dataset", "digits", "--binarize", "dynamic",
                 "--hidden-units", "16,16", "--latent-dim", "4", "--activation", "tanh",
                 "--epochs", "1", "--model-dir", str(vae)]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["likelihood", "--model-dir", str(vae), "--samples", "50", "--images", "40"]) == 0
    figures = dict(item.split("=") for item in capsys.readouterr().out.split())
    assert float(figures["nll"]) == -float(figures["log_likelihood"]) > 0
    assert float(figures["log_likelihood"]) > float(figures["elbo"])
    assert figures["images"] == "40" and figures["samples"] == "50"
    fc = tmp_path / "fc"
    assert main(["train", "fully_connected", "--dataset", "digits", "--epochs", "1",
                 "--hidden-units", "8", "--model-dir", str(fc)]) == 0  # fmt: skip
    capsys.readouterr()
    for args, phrase in (
        (["--model-dir", str(fc)], "cannot give a likelihood"),
        (["--model-dir", str(vae), "--samples", "0"], "--samples must be an integer >= 1"),
        (["--model-dir", str(vae), "--images", "0"], "--images must be an integer >= 1"),
    ):
        assert main(["likelihood", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("aekit: error:") and phrase in err[0], err
