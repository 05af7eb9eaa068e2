"""A variational autoencoder (Kingma & Welling, 2014) on the zoo's fully-connected or conv encoders.

The encoder body of an existing model maps an input to features; two linear heads turn
them into the mean and log-variance of a diagonal Gaussian q(z|x). A code is drawn with
the reparameterisation trick, z = μ + σ·ε, so gradients flow through μ and σ. The decoder
mirrors the body and gives the logits of a Bernoulli likelihood p(x|z), or the mean of a
Gaussian one whose single standard deviation is learned (a "calibrated" decoder: the
optimum σ² is the mean squared error, so no noise level has to be guessed).

The training loss is the negative β-ELBO per example, in nats: reconstruction negative
log-likelihood plus β times KL(q(z|x) ‖ N(0, I)). β = 1 gives the plain VAE; β > 1 trades
reconstruction for a more factorised code (Higgins et al., 2017). Evaluation reports the
true ELBO (β = 1) whatever β training used.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from aekit import metrics, summary
from aekit.data.context import InputContext
from aekit.data.input_fn import to_float
from aekit.errors import ConfigError, InputError
from aekit.estimator import Estimator, EstimatorSpec, ModeKeys, RunConfig
from aekit.estimator.inputs import InputFn, iterate_batches, to_device
from aekit.estimator.optimizers import adam
from aekit.models.convolutional import ConvolutionalNetwork, Downsample
from aekit.models.fully_connected import FullyConnectedNetwork
from aekit.models.heads import IMAGES_IN_SUMMARY, ReconstructionNetwork, as_images
from aekit.models.layers import Activation, ActivationLayer, check_shape, check_units
from aekit.models.memory import build_within_memory, check_fits

_log = logging.getLogger("aekit")

EncoderKind = Literal["fully_connected", "convolutional"]
Likelihood = Literal["bernoulli", "gaussian"]
ENCODERS = ("fully_connected", "convolutional")
LIKELIHOODS = ("bernoulli", "gaussian")
_LOG_2PI = math.log(2.0 * math.pi)
# Evaluation draws its codes from a generator of its own, seeded alike every time: the
# ELBO of one checkpoint is then reproducible, and training's random stream is untouched.
_EVAL_SEED = 0
# Decoded rows per chunk of the importance-weighted estimate: bounds its memory (~25 MB of
# logits for MNIST) while keeping the decoder's matrix products large.
_IWAE_ROWS = 8192


def gaussian_kl(mean: torch.Tensor, log_variance: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_variance)) ‖ N(0, I)) per example, summed over the latent dimensions.

    The closed form ½·Σ(μ² + σ² − 1 − log σ²); `mean` and `log_variance` are (N, D).
    """
    per_dim = 0.5 * (mean.square() + log_variance.exp() - 1.0 - log_variance)
    return per_dim.flatten(1).sum(1)


class VariationalNetwork(ReconstructionNetwork):
    """Encoder body → (μ, log σ²) heads; z → decoder. `encode` gives μ, `decode` logits.

    Args:
        input_shape: (C, H, W) of one example; a fully-connected body also takes (H, W) or (D,).
        latent_dim: size of z.
        encoder: "fully_connected" (layers of `hidden_units`) or "convolutional"
            (blocks of `num_filters`, down-sampled by `downsample`).
        likelihood: "bernoulli" (logits) or "gaussian" (mean in [0, 1], one learned σ).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        latent_dim: int,
        encoder: EncoderKind = "fully_connected",
        hidden_units: Sequence[int] = (256, 128),
        num_filters: Sequence[int] = (32, 64),
        downsample: Downsample = "strided",
        activation_fn: Activation = "relu",
        likelihood: Likelihood = "bernoulli",
    ) -> None:
        super().__init__()
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim <= 0:
            raise ConfigError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        if encoder not in ENCODERS:
            raise ConfigError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        if likelihood not in LIKELIHOODS:
            raise ConfigError(f"decoder must be one of {LIKELIHOODS}, got {likelihood!r}")
        self.input_shape = check_shape("input_shape", input_shape)
        self.body: ReconstructionNetwork
        if encoder == "fully_connected":
            self.body = FullyConnectedNetwork(input_shape, hidden_units, activation_fn)
        else:
            if len(self.input_shape) not in (2, 3):
                raise ConfigError(
                    f"the convolutional encoder needs images (H, W) or (C, H, W), got "
                    f"{self.input_shape}; use encoder='fully_connected' for flat data"
                )
            image_shape = self.input_shape if len(self.input_shape) == 3 else (1, *input_shape)
            # NCHW: the linear heads flatten the feature maps, which channels_last would reorder.
            self.body = ConvolutionalNetwork(
                image_shape, num_filters, downsample, activation_fn, channels_last=False
            )
        self.image_shape = self.body.image_shape
        self.latent_dim = latent_dim
        self.likelihood = likelihood
        self.expand_act = ActivationLayer(activation_fn)
        with torch.no_grad():
            # The body's feature shape for one example, e.g. (64, 7, 7): found by running it.
            features = self.body.encode(torch.zeros(1, *self.image_shape))
        self.feature_shape = tuple(features.shape[1:])
        n_features = math.prod(self.feature_shape)
        self.mean = nn.Linear(n_features, latent_dim)
        self.log_variance = nn.Linear(n_features, latent_dim)
        self.expand = nn.Linear(latent_dim, n_features)
        # Gaussian decoder only: log σ shared by every pixel, learned. It starts at σ = 0.1, a
        # typical pixel error: from σ = 1 the reconstruction term is so weak at first that the
        # KL term wins and the code collapses (ELBO on digits -26 instead of -13 after 10 epochs).
        log_scale = torch.tensor(math.log(0.1))
        self.log_scale: torch.Tensor
        if likelihood == "gaussian":
            self.log_scale = nn.Parameter(log_scale)
        else:
            # Unused by a Bernoulli decoder, so not a parameter (nor in the parameter table);
            # kept as a buffer because checkpoints of earlier versions hold this key.
            self.register_buffer("log_scale", log_scale)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) of q(z|x), each (N, latent_dim)."""
        features = self.body.encode(x).flatten(1)
        return self.mean(features), self.log_variance(features)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean: the deterministic code of `x`."""
        return self.posterior(x)[0]

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """Logits of the decoder's mean for codes z (sigmoid gives pixels in [0, 1])."""
        features = self.expand_act(self.expand(code)).reshape(-1, *self.feature_shape)
        logits: torch.Tensor = self.body.decode(features)
        return logits

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits of the reconstruction from z = μ, in the layout of `x`; μ)."""
        mean = self.encode(x)
        return self.decode(mean).reshape(x.shape), mean

    def negative_log_likelihood(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """−log p(target | z) per example, in nats, summed over the pixels."""
        logits, target = logits.flatten(1).float(), target.flatten(1).float()  # float32 sums
        if self.likelihood == "bernoulli":
            nll = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
        else:
            scale = self.log_scale
            nll = (
                0.5 * ((target - torch.sigmoid(logits)) * torch.exp(-scale)).square()
                + scale
                + 0.5 * _LOG_2PI
            )
        return nll.sum(1)


def importance_weighted_log_likelihood(
    network: VariationalNetwork, x: torch.Tensor, samples: int, generator: torch.Generator
) -> torch.Tensor:
    """log p(x) per example (float64, nats), estimated with `samples` codes from q(z|x).

    log (1/k)·Σᵢ p(x|zᵢ)·p(zᵢ)/q(zᵢ|x) (Burda et al., 2016): a lower bound on log p(x) that
    tightens as k grows, equal in expectation to the ELBO at k = 1. The k codes are taken
    in chunks and their weights combined with a running log-sum-exp, so memory does not
    grow with k.
    """
    mean, log_variance = (t.float() for t in network.posterior(x))
    std = torch.exp(0.5 * log_variance)
    n, latent = mean.shape
    target = x.reshape(n, -1)
    per_chunk = max(1, _IWAE_ROWS // n)
    total = torch.full((n,), -math.inf, dtype=torch.float64, device=mean.device)
    for start in range(0, samples, per_chunk):
        k = min(per_chunk, samples - start)
        eps = torch.randn((k, n, latent), generator=generator, device=mean.device)
        z = mean + std * eps
        log_q = -0.5 * (eps.square() + log_variance + _LOG_2PI).sum(-1)
        log_prior = -0.5 * (z.square() + _LOG_2PI).sum(-1)
        logits = network.decode(z.reshape(k * n, latent)).reshape(k * n, -1)
        log_px = -network.negative_log_likelihood(logits, target.repeat(k, 1)).reshape(k, n)
        weights = (log_px + log_prior - log_q).double()
        total = torch.logaddexp(total, torch.logsumexp(weights, 0))
    return total - math.log(samples)


def variational_model_fn(
    network: VariationalNetwork,
    features: torch.Tensor,
    labels: torch.Tensor | None,
    mode: ModeKeys,
    params: Mapping[str, Any],
) -> EstimatorSpec:
    """Negative β-ELBO; metrics `elbo`, `reconstruction_loss`, `kl`, `rmse` (β = 1 on eval).

    Predictions: `embedding` (μ), `log_variance`, `prediction` (decoder mean at z = μ) and
    `reconstruction_error` (per-example mean squared error of that prediction).
    """
    x = to_float(features)
    mean, log_variance = network.posterior(x)
    if mode is ModeKeys.PREDICT:
        probs = torch.sigmoid(network.decode(mean)).reshape(x.shape)
        return EstimatorSpec(
            mode,
            predictions={
                "embedding": mean,
                "log_variance": log_variance,
                "prediction": probs,
                "reconstruction_error": metrics.example_mse(x, probs),
            },
        )
    target = x if labels is None else to_float(labels)
    if mode is ModeKeys.TRAIN:
        noise = torch.randn_like(mean)
    else:
        generator = torch.Generator(device=mean.device).manual_seed(_EVAL_SEED)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    z = mean + torch.exp(0.5 * log_variance) * noise  # the reparameterisation trick
    logits = network.decode(z).reshape(x.shape)
    nll = network.negative_log_likelihood(logits, target)
    kl = gaussian_kl(mean.float(), log_variance.float())
    loss = (nll + float(params.get("beta", 1.0)) * kl).mean()
    if mode is ModeKeys.TRAIN:
        if summary.should_record():
            summary.scalar("reconstruction_loss", nll.detach().mean())
            summary.scalar("kl", kl.detach().mean())
            shape = network.image_shape
            k = IMAGES_IN_SUMMARY
            summary.image("images/input", as_images(x[:k], shape))
            summary.image("images/reconstruction", as_images(torch.sigmoid(logits[:k]), shape))
        return EstimatorSpec(mode, loss=loss)
    probs = torch.sigmoid(logits)
    return EstimatorSpec(
        mode,
        predictions={"prediction": probs},
        loss=loss,
        eval_metric_ops={
            "elbo": metrics.mean(-(nll + kl)),
            "reconstruction_loss": metrics.mean(nll),
            "kl": metrics.mean(kl),
            "rmse": metrics.root_mean_squared_error(target, probs),
        },
    )


class VariationalAutoencoder(Estimator):
    """A VAE estimator: Gaussian code, Bernoulli or Gaussian decoder, β on the KL term, Adam.

    Args:
        latent_dim: size of the code z (2 makes a latent manifold to look at).
        encoder: "fully_connected" (`hidden_units`) or "convolutional" (`num_filters`,
            `downsample`); the decoder mirrors it.
        decoder: "bernoulli" (sigmoid cross-entropy) or "gaussian" (learned σ).
        beta: weight of the KL term in the training loss (1: the ELBO).
        learning_rate: Adam's rate, constant.
        input_shape: shape of one example, e.g. (28, 28) or (1, 28, 28).
    """

    def __init__(
        self,
        latent_dim: int = 16,
        encoder: EncoderKind = "fully_connected",
        hidden_units: Sequence[int] = (256, 128),
        num_filters: Sequence[int] = (32, 64),
        downsample: Downsample = "strided",
        activation_fn: Activation = "relu",
        decoder: Likelihood = "bernoulli",
        beta: float = 1.0,
        learning_rate: float = 1e-3,
        model_dir: str | Path | None = None,
        config: RunConfig | None = None,
        input_shape: Sequence[int] = (28, 28),
    ) -> None:
        for name, value in (("beta", beta), ("learning_rate", learning_rate)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        units = check_units("hidden_units", hidden_units)
        filters = check_units("num_filters", num_filters)
        config = config or RunConfig()
        if config.random_seed is not None:
            torch.manual_seed(config.random_seed)  # the same initial weights for the same seed
        network = build_within_memory(
            lambda: VariationalNetwork(
                input_shape, latent_dim, encoder, units, filters, downsample, activation_fn, decoder
            ),
            f"latent_dim={latent_dim}, hidden_units={units}, num_filters={filters}",
        )
        super().__init__(
            variational_model_fn,
            network,
            optimizer=lambda p: adam(p, learning_rate),
            model_dir=model_dir,
            config=config,
            params={
                "latent_dim": latent_dim,
                "encoder": encoder,
                "hidden_units": units,
                "num_filters": filters,
                "downsample": downsample,
                "activation_fn": activation_fn,
                "decoder": decoder,
                "beta": float(beta),
                "learning_rate": learning_rate,
                "input_shape": list(input_shape),
            },
        )

    @property
    def vae(self) -> VariationalNetwork:
        """The network, typed as what it is."""
        network = self.network
        assert isinstance(network, VariationalNetwork)
        return network

    def generate(self, codes: torch.Tensor | np.ndarray) -> np.ndarray:
        """Decoder means (pixels in [0, 1]) for codes (N, latent_dim), shaped like the inputs."""
        z = torch.as_tensor(np.asarray(codes, dtype=np.float32))
        if z.dim() != 2 or z.shape[1] != self.vae.latent_dim:
            raise ConfigError(
                f"codes must have shape (N, {self.vae.latent_dim}), got {tuple(z.shape)}; "
                "give one row per image"
            )
        self.restore_trained()
        network = self.vae
        was_training = network.training
        network.eval()
        try:
            with torch.no_grad():
                probs = torch.sigmoid(network.decode(z.to(self.device)))
        finally:
            network.train(was_training)
        out: np.ndarray = probs.reshape(len(z), *network.input_shape).cpu().numpy()
        return out

    def log_likelihood(
        self,
        input_fn: InputFn,
        samples: int = 5000,
        seed: int = 0,
        checkpoint_path: str | Path | None = None,
        expected: int | None = None,
    ) -> float:
        """Mean log p(x) over the input's examples, in nats, by importance sampling.

        Each example's estimate uses `samples` codes drawn from q(z|x) (see
        `importance_weighted_log_likelihood`); papers report minus this figure as the test
        negative log-likelihood (k = 5,000 in Burda et al., 2016). The codes come from a
        generator seeded with `seed`, so a checkpoint's figure is reproducible. With the
        `expected` number of examples, the time left is logged every 30 s (large k takes hours).
        """
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ConfigError(f"samples must be a positive integer, got {samples!r}")
        self.restore_trained(checkpoint_path)
        network = self.vae
        generator = torch.Generator(device=self.device).manual_seed(seed)
        total, examples = 0.0, 0
        started = said = time.monotonic()
        was_training = network.training
        network.eval()
        try:
            with torch.inference_mode():
                for features, _ in iterate_batches(input_fn, InputContext(self.device)):
                    x = to_float(to_device(features, self.device))
                    estimate = importance_weighted_log_likelihood(network, x, samples, generator)
                    total += float(estimate.sum())
                    examples += len(x)
                    if expected and time.monotonic() - said >= 30:
                        said = time.monotonic()
                        left = (said - started) / examples * max(0, expected - examples)
                        _log.info(
                            "log p(x): %d of %d examples, about %.0f s left",
                            examples,
                            expected,
                            left,
                        )
        finally:
            network.train(was_training)
        if examples == 0:
            raise InputError("log_likelihood() got no batches from input_fn; give it data")
        return total / examples

    def _check_images_fit(self, n: int, setting: str) -> None:
        """ConfigError naming `setting` when `n` decoded images would not fit in memory."""
        pixels = math.prod(self.vae.input_shape)
        check_fits(
            f"{setting} ({n:,} images of {pixels:,} pixels)", n * pixels * 4, "ask for fewer"
        )

    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        """`n` new images: decoder means at codes drawn from the prior N(0, I).

        With `seed` the draw is reproducible and the global random state is left alone.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ConfigError(f"the number of samples must be a positive integer, got {n!r}")
        self._check_images_fit(n, "the number of samples")
        generator = torch.Generator()
        if seed is not None:
            generator.manual_seed(seed)
        else:
            generator.seed()
        return self.generate(torch.randn(n, self.vae.latent_dim, generator=generator))

    def manifold(self, per_side: int = 20) -> np.ndarray:
        """Images decoded on a per_side × per_side grid of a 2-D latent space, row by row.

        The grid points are evenly spaced quantiles of the prior (5% to 95%), so each image
        stands for an equal share of its mass; z₁ grows to the right and z₂ upwards.
        """
        if self.vae.latent_dim != 2:
            raise ConfigError(
                f"a latent manifold needs a 2-D code, this model's has {self.vae.latent_dim}; "
                "train with latent_dim=2"
            )
        if isinstance(per_side, bool) or not isinstance(per_side, int) or per_side < 2:
            raise ConfigError(f"per_side must be an integer >= 2, got {per_side!r}")
        self._check_images_fit(per_side * per_side, "per_side")
        quantiles = math.sqrt(2.0) * torch.erfinv(2.0 * torch.linspace(0.05, 0.95, per_side) - 1.0)
        z2, z1 = torch.meshgrid(quantiles.flip(0), quantiles, indexing="ij")
        return self.generate(torch.stack([z1.flatten(), z2.flatten()], dim=1))
