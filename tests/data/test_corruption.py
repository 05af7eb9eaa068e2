"""Noise for denoising autoencoders: statistics and the clean target."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aekit import ConfigError, InputError
from aekit.data import Dataset, GaussianNoise, MaskingNoise, SaltAndPepper
from aekit.data.corruption import make_corruption


def test_gaussian_noise_statistics_and_clip() -> None:
    torch.manual_seed(0)
    x = torch.full((200, 500), 0.5)
    noisy = GaussianNoise(0.1).corrupt(x)
    assert float((noisy - x).mean()) == pytest.approx(0.0, abs=2e-3)
    assert float((noisy - x).std()) == pytest.approx(0.1, rel=0.02)
    strong = GaussianNoise(0.5).corrupt(x)
    assert float(strong.min()) == 0.0 and float(strong.max()) == 1.0
    unclipped = GaussianNoise(0.5, clip=False).corrupt(x)
    assert float(unclipped.min()) < 0.0


def test_masking_zeroes_the_fraction() -> None:
    torch.manual_seed(0)
    x = torch.ones(100_000)
    masked = MaskingNoise(0.3).corrupt(x)
    assert float((masked == 0).float().mean()) == pytest.approx(0.3, abs=0.01)
    assert set(np.unique(masked.numpy()).tolist()) == {0.0, 1.0}


def test_salt_and_pepper_fraction_and_balance() -> None:
    torch.manual_seed(0)
    x = torch.full((100_000,), 0.5)
    out = SaltAndPepper(0.2).corrupt(x)
    assert float((out != 0.5).float().mean()) == pytest.approx(0.2, abs=0.01)
    assert float((out == 1).float().mean()) == pytest.approx(0.1, abs=0.01)
    assert float((out == 0).float().mean()) == pytest.approx(0.1, abs=0.01)


def test_map_keeps_the_clean_target() -> None:
    images = np.random.default_rng(0).integers(0, 256, (10, 4, 4), dtype=np.uint8)
    noisy, clean = next(iter(Dataset.from_tensor_slices(images).batch(10).map(GaussianNoise(0.3))))
    assert torch.allclose(clean, torch.from_numpy(images).float() / 255)
    assert not torch.allclose(noisy, clean)
    labels = torch.arange(10)
    _, target = MaskingNoise(0.5)(torch.rand(10, 3), labels)
    assert target is labels


def test_bad_settings_are_refused() -> None:
    for bad in (-0.1, float("nan"), float("inf"), "0.5", True):
        with pytest.raises(ConfigError, match="noise_factor must be a"):
            GaussianNoise(bad)  # type: ignore[arg-type]
    for fraction in (1.5, "0.3", None, float("nan")):
        with pytest.raises(ConfigError, match="fraction must be a number in"):
            MaskingNoise(fraction)  # type: ignore[arg-type]
    masking = MaskingNoise(np.float32(0.25))  # type: ignore[arg-type]
    assert masking.fraction == np.float32(0.25)  # numpy numbers are numbers too
    with pytest.raises(ConfigError, match="masking fraction"):
        MaskingNoise(1.5)
    with pytest.raises(ConfigError, match="unknown noise 'blur'"):
        make_corruption("blur", 0.1)
    with pytest.raises(ConfigError, match="noise kind must be a name"):
        make_corruption(0.3, 0.1)  # type: ignore[arg-type]


def test_integer_images_follow_the_input_functions_rule() -> None:
    """Only uint8 is scaled by 1/255; other integer types must hold 0/1, whatever the map."""
    with pytest.raises(InputError, match="int64 with values from 0 to 2"):
        GaussianNoise(0.1).corrupt(torch.arange(3))
    binary = MaskingNoise(0.0).corrupt(torch.tensor([0, 1, 1], dtype=torch.int16))
    assert binary.dtype == torch.float32 and binary.tolist() == [0.0, 1.0, 1.0]
    assert isinstance(make_corruption("salt_and_pepper", 0.1), SaltAndPepper)
