"""numpy_input_fn and InputFunction feeding an Estimator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import aekit
from aekit.data import InputFunction, MaskingNoise, numpy_input_fn
from aekit.data.context import EpochEnd, InputContext, calling
from tiny import tiny_autoencoder_fn, tiny_network


def images(n: int = 20) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 8), dtype=np.uint8)


def test_batches_are_float_and_cover_every_example_per_epoch() -> None:
    x = images()
    batches = list(numpy_input_fn(x, batch_size=6, num_epochs=2, seed=1)())
    assert [len(f) for f, _ in batches] == [6, 6, 6, 2, 6, 6, 6, 2]  # each epoch its own
    features = torch.cat([f for f, _ in batches])
    assert features.dtype == torch.float32 and float(features.max()) <= 1.0
    first_epoch = sorted(map(tuple, (features[:20] * 255).round().int().tolist()))
    assert first_epoch == sorted(map(tuple, x.tolist()))
    assert all(labels is None for _, labels in batches)


def test_a_resumed_input_starts_where_the_run_s_steps_left_off() -> None:
    x = images()
    whole = [f for f in numpy_input_fn(x, batch_size=6, num_epochs=3, seed=1)().with_epoch_ends()]
    for step in (0, 3, 4, 9):
        resumed = numpy_input_fn(x, batch_size=6, num_epochs=3, seed=1, resume=True)
        later = calling(resumed, InputContext(global_step=step))
        rest = list(later.with_epoch_ends())
        # The marks stay where they were: 4 batches an epoch, then its EpochEnd.
        expected = whole[step + step // 4 :]
        assert len(rest) == len(expected)
        for got, want in zip(rest, expected, strict=True):
            if isinstance(want, EpochEnd):
                assert got == want
            else:
                assert torch.equal(got[0], want[0])


def test_targets_shaped_like_the_images_become_pixels_too() -> None:
    x = images(4)
    features, labels = next(iter(numpy_input_fn(x, x, batch_size=4, shuffle=False)()))
    assert labels is not None and torch.equal(features, labels)
    assert labels.dtype == torch.float32 and float(labels.max()) <= 1.0


def test_unshuffled_keeps_order_and_labels() -> None:
    x, y = images(5), np.arange(5)
    (features, labels), = list(numpy_input_fn(x, y, batch_size=8, shuffle=False)())  # fmt: skip
    assert labels.tolist() == [0, 1, 2, 3, 4]
    assert torch.allclose(features, torch.from_numpy(x).float() / 255)


def test_noise_factor_gives_corrupted_inputs_and_clean_labels() -> None:
    x = images()
    features, labels = next(
        iter(numpy_input_fn(x, batch_size=20, shuffle=False, noise_factor=0.5)())
    )
    assert torch.allclose(labels, torch.from_numpy(x).float() / 255)
    assert not torch.allclose(features, labels)
    masked, _ = next(iter(numpy_input_fn(x, batch_size=20, noise=MaskingNoise(0.5))()))
    assert float((masked == 0).float().mean()) > 0.3


def test_bad_arrays_are_refused() -> None:
    with pytest.raises(aekit.InputError, match="x has 3 examples but y has 2"):
        numpy_input_fn(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(aekit.InputError, match="x is empty"):
        numpy_input_fn(np.zeros((0, 2)))
    bad = np.zeros((3, 2), dtype=np.float32)
    bad[1, 1] = np.nan
    with pytest.raises(aekit.InputError, match="1 NaN or infinite"):
        numpy_input_fn(bad)


def test_trains_an_estimator(tmp_path: Path) -> None:
    est = aekit.Estimator(tiny_autoencoder_fn, tiny_network(), model_dir=tmp_path)
    est.train(numpy_input_fn(images(), batch_size=5, num_epochs=3))
    assert est.global_step == 12
    assert est.evaluate(numpy_input_fn(images(), shuffle=False))["rmse"] > 0


def test_seed_style_input_function() -> None:
    x = images(25)
    train = InputFunction(x, batch_size=10, num_epochs=2, mode=aekit.ModeKeys.TRAIN, seed=0)
    batches = list(train())
    assert [len(f) for f, _ in batches] == [10, 10, 5, 10, 10, 5]  # an epoch at a time
    features, labels = batches[0]
    assert torch.equal(features, labels)  # no noise: input and target are the same image
    noisy = InputFunction(x, 25, 1, "eval", noise_factor=0.5)
    (features, labels), = list(noisy())  # fmt: skip
    assert torch.allclose(labels, torch.from_numpy(x).float() / 255)
    assert not torch.equal(features, labels)


def test_numpy_input_fn_keeps_cpu_data_where_it_is_and_sees_the_estimator_device() -> None:
    from aekit.data.context import InputContext, input_context
    from aekit.estimator.inputs import iterate_batches

    seen = []

    def input_fn() -> list[torch.Tensor]:
        seen.append(input_context().device)
        return [torch.zeros(2, 3)]

    cpu = InputContext(torch.device("cpu"))
    list(iterate_batches(input_fn, cpu))
    assert seen == [torch.device("cpu")] and input_context().device is None
    x = np.arange(12, dtype=np.uint8).reshape(4, 3)
    features, _ = next(iterate_batches(numpy_input_fn(x, batch_size=4), cpu))
    assert isinstance(features, torch.Tensor) and features.device.type == "cpu"
