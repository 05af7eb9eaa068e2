"""The convolutional autoencoder of seed 004 (7,873 weights with [16, 8, 8] on MNIST)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from aekit.errors import ConfigError
from aekit.estimator import RunConfig
from aekit.models.heads import ReconstructionEstimator, ReconstructionNetwork, as_images
from aekit.models.layers import Activation, activations, check_shape, check_units
from aekit.models.layers import variance_scaling_ as _init

Downsample = Literal["max_pool", "strided"]


class ConvolutionalNetwork(ReconstructionNetwork):
    """Blocks of two 3×3 convolutions and a 2× down-sampling; transposed convolutions back up.

    A down-sampling of an odd size rounds up (7 → 4), as TF's "SAME" padding does;
    the decoder's output (e.g. 32×32) is cropped at the centre to the input size.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        num_filters: Sequence[int] = (16, 8, 8),
        downsample: Downsample = "max_pool",
        activation_fn: Activation = "relu",
        channels_last: bool | None = None,
    ) -> None:
        super().__init__()
        if len(check_shape("image_shape", image_shape)) != 3:
            raise ConfigError(f"image_shape must be (channels, height, width), got {image_shape!r}")
        if downsample not in ("max_pool", "strided"):
            raise ConfigError(f"downsample must be 'max_pool' or 'strided', got {downsample!r}")
        filters = check_units("num_filters", num_filters)
        channels, height, width = image_shape
        self.image_shape = (channels, height, width)
        self.encoder_convs = nn.ModuleList()
        # One activation module per place it is applied, so summaries can tell them apart.
        self.encoder_act = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        previous = channels
        for f in filters:
            self.encoder_convs.append(
                nn.Sequential(nn.Conv2d(previous, f, 3, padding=1), nn.Conv2d(f, f, 3, padding=1))
            )
            if downsample == "max_pool":
                self.downsamplers.append(nn.MaxPool2d(2, ceil_mode=True))
                self.encoder_act.append(activations(activation_fn, 2))
            else:
                self.downsamplers.append(nn.Conv2d(f, f, 3, stride=2, padding=1))
                self.encoder_act.append(activations(activation_fn, 3))
            previous = f
        self.decoder_convs = nn.ModuleList()
        for f in reversed(filters):
            self.decoder_convs.append(
                nn.ConvTranspose2d(previous, f, 3, stride=2, padding=1, output_padding=1)
            )
            previous = f
        self.decoder_act = activations(activation_fn, len(filters))
        self.output = nn.ConvTranspose2d(previous, channels, 3, padding=1)
        _init(self)
        # channels_last is faster for these convolutions on x86 CPUs (docs/benchmarks/speed.md).
        self.channels_last = channels_last if channels_last is not None else True
        if self.channels_last:
            self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            for p in self.parameters():
                if p.dim() == 4 and 1 in p.shape[:2]:
                    # One channel in or out: both layouts hold the same bytes, but autograd
                    # gives the gradient NCHW strides, which DDP would copy every step.
                    p.data = p.data.contiguous()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = as_images(x, self.image_shape)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for convs, down, acts in zip(
            self.encoder_convs, self.downsamplers, self.encoder_act, strict=True
        ):
            assert isinstance(acts, nn.ModuleList)
            for conv, act in zip(convs.children(), acts, strict=False):
                x = act(conv(x))
            x = down(x)
            if len(acts) > 2:  # a strided convolution's own activation
                x = acts[2](x)
        return x

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        x = code
        for deconv, act in zip(self.decoder_convs, self.decoder_act, strict=True):
            x = act(deconv(x))
        x = self._output(x)
        _, height, width = self.image_shape
        top = (x.shape[-2] - height) // 2
        left = (x.shape[-1] - width) // 2
        cropped: torch.Tensor = x[..., top : top + height, left : left + width]
        return cropped

    def _output(self, x: torch.Tensor) -> torch.Tensor:
        """The output layer; for one channel, as a depthwise convolution and a channel sum.

        A transposed 3x3 convolution of stride 1 is a convolution with the flipped kernel,
        and with one output channel it is the sum over input channels of one small
        convolution each. oneDNN computes that 2-3x faster than the single-output-channel
        (transposed) convolution, which has nothing to vectorise over; same weights.
        """
        out = self.output
        if out.out_channels != 1 or not self.channels_last:
            full: torch.Tensor = out(x)
            return full
        kernels = out.weight.flip(2, 3)  # (in_channels, 1, 3, 3): one kernel per channel
        per_channel = nn.functional.conv2d(x, kernels, padding=1, groups=out.in_channels)
        summed: torch.Tensor = per_channel.sum(1, keepdim=True)
        return summed + out.bias.view(1, 1, 1, 1) if out.bias is not None else summed


class ConvolutionalAutoencoder(ReconstructionEstimator):
    """Seed 004's estimator: the convolutional autoencoder with seed 000's loss and optimizer.

    Arguments not listed here are as for `AutoEncoder`.

    Args:
        num_filters: filters per encoder block (reversed in the decoder).
        downsample: "max_pool" (2×2 max-pooling) or "strided" (a stride-2 convolution).
        image_shape: (channels, height, width) of one example.
        channels_last: memory layout of the activations (None: channels_last).
    """

    def __init__(
        self,
        num_filters: Sequence[int] = (16, 8, 8),
        downsample: Downsample = "max_pool",
        activation_fn: Activation = "relu",
        weight_decay: float | None = 1e-5,
        learning_rate: float = 1e-3,
        model_dir: str | Path | None = None,
        config: RunConfig | None = None,
        image_shape: Sequence[int] = (1, 28, 28),
        noise_factor: float | None = None,
        noise: tuple[str, float] | None = None,
        channels_last: bool | None = None,
    ) -> None:
        filters = check_units("num_filters", num_filters)
        super().__init__(
            lambda: ConvolutionalNetwork(
                image_shape, filters, downsample, activation_fn, channels_last
            ),
            learning_rate,
            weight_decay,
            ("gaussian", noise_factor) if noise_factor is not None else noise,
            model_dir,
            config,
            extra_params={
                "num_filters": filters,
                "downsample": downsample,
                "activation_fn": activation_fn,
                "image_shape": list(image_shape),
            },
        )
