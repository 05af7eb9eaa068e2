"""The variational autoencoder: its KL and likelihoods, training on real digits, sampling."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import aekit
from aekit.data import load_digits, numpy_input_fn
from aekit.models.variational import (
    VariationalAutoencoder,
    VariationalNetwork,
    gaussian_kl,
    variational_model_fn,
)


def vae(tmp_path: Path, **kwargs: object) -> VariationalAutoencoder:
    settings: dict[str, object] = {
        "latent_dim": 2,
        "hidden_units": [32, 16],
        "input_shape": (8, 8),
        "learning_rate": 3e-3,
        **kwargs,
    }
    config = aekit.RunConfig(random_seed=0, log_step_count_steps=0, save_summary_steps=0)
    return VariationalAutoencoder(model_dir=tmp_path, config=config, **settings)  # type: ignore[arg-type]


def test_kl_of_a_known_gaussian_is_the_closed_form() -> None:
    # N(1, 2²) against N(0, 1): ½(μ² + σ² − 1 − ln σ²) = ½(1 + 4 − 1 − ln 4).
    kl = gaussian_kl(torch.tensor([[1.0]]), torch.tensor([[math.log(4.0)]]))
    assert float(kl) == pytest.approx(0.5 * (4.0 - math.log(4.0)), rel=1e-6)
    # Dimensions add up, and torch's own KL of the same distributions agrees.
    mean = torch.tensor([[0.5, -1.5, 0.0], [2.0, 0.1, -0.3]])
    log_var = torch.tensor([[0.2, -1.0, 0.0], [1.5, -3.0, 0.7]])
    q = torch.distributions.Normal(mean, (0.5 * log_var).exp())
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    expected = torch.distributions.kl_divergence(q, p).sum(1)
    torch.testing.assert_close(gaussian_kl(mean, log_var), expected)
    assert float(gaussian_kl(torch.zeros(1, 4), torch.zeros(1, 4))) == 0.0  # q is the prior


def test_gaussian_likelihood_is_the_normal_density() -> None:
    net = VariationalNetwork((4,), 2, hidden_units=[3], likelihood="gaussian")
    logits, target = torch.randn(5, 4), torch.rand(5, 4)
    sigma = float(net.log_scale.detach().exp())
    density = torch.distributions.Normal(torch.sigmoid(logits), sigma)
    expected = -density.log_prob(target).sum(1)  # type: ignore[no-untyped-call]
    torch.testing.assert_close(net.negative_log_likelihood(logits, target), expected)
    bernoulli = VariationalNetwork((4,), 2, hidden_units=[3])
    binary = (target > 0.5).float()
    bernoulli_density = torch.distributions.Bernoulli(logits=logits)
    expected = -bernoulli_density.log_prob(binary).sum(1)  # type: ignore[no-untyped-call]
    torch.testing.assert_close(bernoulli.negative_log_likelihood(logits, binary), expected)


def test_eval_metrics_are_consistent_with_the_predictions(tmp_path: Path) -> None:
    est = vae(tmp_path, beta=4.0)
    est.save_checkpoint()  # evaluate and predict need a checkpoint
    x = load_digits()[0][:40]
    result = est.evaluate(numpy_input_fn(x, batch_size=16, shuffle=False))
    assert result["elbo"] == pytest.approx(-(result["reconstruction_loss"] + result["kl"]))
    # The loss is the training objective: β weighs the KL term, the ELBO does not.
    assert result["loss"] == pytest.approx(result["reconstruction_loss"] + 4.0 * result["kl"])
    out = list(est.predict(numpy_input_fn(x, shuffle=False)))
    mean = torch.from_numpy(np.stack([p["embedding"] for p in out]))
    log_var = torch.from_numpy(np.stack([p["log_variance"] for p in out]))
    assert result["kl"] == pytest.approx(float(gaussian_kl(mean, log_var).mean()), rel=1e-5)
    # The ELBO of one checkpoint is reproducible: evaluation draws its own fixed noise.
    again = est.evaluate(numpy_input_fn(x, batch_size=16, shuffle=False))
    assert again["elbo"] == result["elbo"]


def test_predictions(tmp_path: Path) -> None:
    est = vae(tmp_path, latent_dim=3)
    est.save_checkpoint()  # evaluate and predict need a checkpoint
    x = load_digits()[0][:5]
    out = list(est.predict(numpy_input_fn(x, shuffle=False)))
    assert set(out[0]) == {"embedding", "log_variance", "prediction", "reconstruction_error"}
    assert out[0]["embedding"].shape == (3,) and out[0]["log_variance"].shape == (3,)
    assert out[0]["prediction"].shape == (8, 8)
    expected = ((out[2]["prediction"] - x[2] / 255.0) ** 2).mean()
    assert out[2]["reconstruction_error"] == pytest.approx(expected, rel=1e-5)


def test_elbo_improves_on_real_digits(tmp_path: Path) -> None:
    x, _ = load_digits()
    train, test = x[:1400], x[1400:]
    est = vae(tmp_path, latent_dim=4)
    est.save_checkpoint()  # evaluate and predict need a checkpoint
    before = est.evaluate(numpy_input_fn(test, shuffle=False))
    est.train(numpy_input_fn(train, batch_size=64, num_epochs=6, seed=0))
    after = est.evaluate(numpy_input_fn(test, shuffle=False))
    # Held-out digits: the bound rises by a third and the reconstructions get closer.
    assert after["elbo"] > before["elbo"] + abs(before["elbo"]) / 3
    assert after["rmse"] < before["rmse"]
    assert after["kl"] > 0


def test_the_code_is_trained_through_the_reparameterisation(tmp_path: Path) -> None:
    est = vae(tmp_path)
    net = est.vae
    x = torch.from_numpy(load_digits()[0][:16]).to(est.device)
    spec = variational_model_fn(net, x, None, aekit.ModeKeys.TRAIN, est.params)
    assert spec.loss is not None
    spec.loss.backward()  # type: ignore[no-untyped-call]
    for head in (net.mean, net.log_variance):
        assert head.weight.grad is not None and float(head.weight.grad.abs().sum()) > 0
    assert net.log_scale.grad is None  # a Bernoulli decoder has no σ to learn


def test_samples_have_the_right_shape_and_range(tmp_path: Path) -> None:
    est = vae(tmp_path)
    est.train(numpy_input_fn(load_digits()[0][:256], batch_size=64), max_steps=4)
    samples = est.sample(7, seed=3)
    assert samples.shape == (7, 8, 8) and samples.dtype == np.float32
    assert samples.min() >= 0.0 and samples.max() <= 1.0
    np.testing.assert_array_equal(samples, est.sample(7, seed=3))
    assert not np.array_equal(samples, est.sample(7, seed=4))
    grid = est.manifold(5)
    assert grid.shape == (25, 8, 8) and grid.min() >= 0.0 and grid.max() <= 1.0
    # The middle of the grid is the prior's median, z = 0 (a GPU picks its kernels by the
    # batch size, so one image and 25 may round differently).
    np.testing.assert_allclose(grid[12], est.generate(np.zeros((1, 2)))[0], atol=1e-4)
    with pytest.raises(aekit.ConfigError, match="positive integer"):
        est.sample(0)
    with pytest.raises(aekit.ConfigError, match=r"shape \(N, 2\)"):
        est.generate(np.zeros((3, 5)))


@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
def test_convolutional_encoder_trains_and_samples(tmp_path: Path, decoder: str) -> None:
    est = vae(tmp_path, encoder="convolutional", num_filters=[4, 8], decoder=decoder)
    assert est.vae.feature_shape == (8, 2, 2)  # 8x8 halved twice
    data = load_digits()[0][:64]
    est.train(numpy_input_fn(data, batch_size=32), max_steps=2)
    result = est.evaluate(numpy_input_fn(data, shuffle=False))
    assert {"elbo", "reconstruction_loss", "kl", "rmse", "loss"} <= set(result)
    assert all(math.isfinite(v) for v in result.values())
    assert est.sample(3, seed=0).shape == (3, 8, 8)
    assert next(est.predict(numpy_input_fn(data[:2], shuffle=False)))["prediction"].shape == (8, 8)


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    with pytest.raises(aekit.ConfigError, match="latent_dim must be a positive integer"):
        vae(tmp_path, latent_dim=0)
    with pytest.raises(aekit.ConfigError, match="beta must be a positive number"):
        vae(tmp_path, beta=-1.0)
    with pytest.raises(aekit.ConfigError, match="decoder must be one of"):
        vae(tmp_path, decoder="poisson")
    with pytest.raises(aekit.ConfigError, match="encoder must be one of"):
        vae(tmp_path, encoder="recurrent")
    with pytest.raises(aekit.ConfigError, match="needs images"):
        vae(tmp_path, encoder="convolutional", input_shape=(64,))
    with pytest.raises(aekit.ConfigError, match="2-D code"):
        vae(tmp_path, latent_dim=3).manifold()


def test_samples_tile_into_one_picture(tmp_path: Path) -> None:
    from aekit.viz import tile_images

    images = np.random.default_rng(0).random((7, 8, 8))
    picture = tile_images(images, 3, padding=1)
    assert picture.size == (3 * 9 + 1, 3 * 9 + 1)  # 3 columns, 3 rows (the last padded)
    grey = np.asarray(picture)[-5, -5]
    assert grey == 128  # the padded tiles are the background's grey
    with pytest.raises(aekit.ConfigError, match="columns"):
        tile_images(images, 0)
