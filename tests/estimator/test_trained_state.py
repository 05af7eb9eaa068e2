"""What a restore accepts: a trained, finite checkpoint of the same model; new rates applied."""

from __future__ import annotations

import logging
import math
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import aekit
from aekit.data import numpy_input_fn
from aekit.estimator import checkpoint as ckpt
from aekit.models.stacked import StackedDenoisingAutoencoder

QUIET = aekit.RunConfig(random_seed=0, log_step_count_steps=0, save_summary_steps=0)


def images(n: int = 32) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 8, 8), dtype=np.uint8)


def fc(model_dir: Path, **settings: Any) -> aekit.AutoEncoder:
    return aekit.AutoEncoder(input_shape=(8, 8), model_dir=model_dir, config=QUIET, **settings)


def trained(model_dir: Path, **settings: Any) -> aekit.AutoEncoder:
    est = fc(model_dir, hidden_units=[16, 4], **settings)
    est.train(numpy_input_fn(images(), batch_size=8), steps=3)
    return est


def files(model_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    "use",
    [
        lambda est: est.evaluate(numpy_input_fn(images(), shuffle=False)),
        lambda est: next(est.predict(numpy_input_fn(images(), shuffle=False))),
    ],
)
def test_no_inference_without_a_trained_model(tmp_path: Path, use: Callable[[Any], Any]) -> None:
    with pytest.raises(aekit.CheckpointError, match="no trained model in .*train first"):
        use(fc(tmp_path / "empty", hidden_units=[4]))
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "ckpt-5.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(aekit.CheckpointError, match="no trained model"):
        use(fc(junk, hidden_units=[4]))
    vae = aekit.VariationalAutoencoder(2, hidden_units=[8], input_shape=(8, 8), model_dir=junk)
    with pytest.raises(aekit.CheckpointError, match="no trained model"):
        vae.sample(4)
    est = fc(tmp_path / "saved", hidden_units=[4])
    est.save_checkpoint()  # the way to infer with weights made in memory
    use(est)


def test_nan_weights_are_refused_everywhere(tmp_path: Path) -> None:
    trained(tmp_path)
    path = ckpt.latest_checkpoint(tmp_path)
    assert path is not None
    state = ckpt.load(path)
    next(iter(state["network"].values()))[0] = math.nan
    torch.save(state, path)
    est = fc(tmp_path, hidden_units=[16, 4])
    for use in (
        lambda: est.evaluate(numpy_input_fn(images(), shuffle=False)),
        lambda: list(est.predict(numpy_input_fn(images(), shuffle=False))),
        lambda: est.train(numpy_input_fn(images()), steps=1),
    ):
        with pytest.raises(aekit.CheckpointError, match="NaN or infinite weights"):
            use()
    assert ckpt.latest_checkpoint(tmp_path) == path  # nothing new written


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"activation_fn": "elu"}, "activation_fn"),
        ({"keep_prob": 0.5}, "keep_prob"),
        ({"noise_factor": 0.3}, "noise"),
        ({"weight_decay": 0.1}, "weight_decay"),
        ({"hidden_units": [16, 8]}, "hidden_units"),
    ],
)
def test_settings_that_change_the_model_are_refused_on_resume(
    tmp_path: Path, change: dict[str, Any], param: str
) -> None:
    trained(tmp_path)
    before = files(tmp_path)
    settings = {"hidden_units": [16, 4], **change}
    with pytest.raises(aekit.ConfigError, match=f"trained with {param}="):
        fc(tmp_path, **settings).train(numpy_input_fn(images()), steps=1)
    assert files(tmp_path) == before


def test_a_new_learning_rate_is_applied_on_resume(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trained(tmp_path, learning_rate=1e-3)
    est = fc(tmp_path, hidden_units=[16, 4], learning_rate=4e-3)
    with caplog.at_level(logging.INFO, logger="aekit"):
        est.train(numpy_input_fn(images(), batch_size=8), steps=1)
    assert any("learning_rate changed on resume" in r.getMessage() for r in caplog.records)
    # Step 4 of a schedule that decays every 1,000 steps: the new rate itself.
    assert est.optimizer.param_groups[0]["lr"] == pytest.approx(4e-3)
    assert est.params["learning_rate"] == 4e-3
    again = fc(tmp_path, hidden_units=[16, 4], learning_rate=4e-3)
    again.restore()
    assert again.optimizer.param_groups[0]["lr"] == pytest.approx(4e-3)


def test_stacked_rates_may_change_and_layers_may_not(tmp_path: Path) -> None:
    x, y = images(), np.arange(32) % 10

    def stacked(**settings: Any) -> StackedDenoisingAutoencoder:
        return StackedDenoisingAutoencoder(
            input_shape=(8, 8), model_dir=tmp_path, config=QUIET, **settings
        )

    stacked(hidden_units=[8]).train(numpy_input_fn(x, y, batch_size=8), steps=2)
    resumed = stacked(hidden_units=[8], finetune_learning_rate=5e-3)
    resumed.train(numpy_input_fn(x, y, batch_size=8), steps=1)
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(5e-3)
    with pytest.raises(aekit.ConfigError, match="trained with n_classes="):
        stacked(hidden_units=[8], n_classes=5).evaluate(numpy_input_fn(x, y, shuffle=False))


@pytest.mark.parametrize(
    "build",
    [
        lambda: aekit.AutoEncoder([10**9]),
        lambda: aekit.AutoEncoder([128, 10**8, 32]),
        lambda: aekit.ConvolutionalAutoencoder([10**6, 10**5]),
        lambda: aekit.VariationalAutoencoder(10**9),
        lambda: aekit.Classifier(dense_units=10**9),
        lambda: StackedDenoisingAutoencoder([10**7, 10**7]),
    ],
)
def test_networks_too_large_for_memory_are_refused_before_allocating(
    build: Callable[[], Any],
) -> None:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(aekit.ConfigError, match=r"parameters .* more than this machine"):
            build()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20 and time.perf_counter() - start < 5


def test_sample_sizes_are_checked_before_allocating(tmp_path: Path) -> None:
    vae = aekit.VariationalAutoencoder(2, hidden_units=[8], input_shape=(8, 8), model_dir=tmp_path)
    vae.save_checkpoint()
    with pytest.raises(aekit.ConfigError, match=r"number of samples \(1,000,000,000,000"):
        vae.sample(10**12)
    with pytest.raises(aekit.ConfigError, match="per_side"):
        vae.manifold(10**6)
    assert vae.sample(3).shape == (3, 8, 8)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: aekit.AutoEncoder(input_shape=(0, 28)), "input_shape must be"),
        (lambda: aekit.AutoEncoder(input_shape=(28, 2.5)), "input_shape must be"),  # type: ignore[arg-type]
        (lambda: aekit.ConvolutionalAutoencoder(image_shape=(1, -3, 28)), "image_shape must be"),
        (lambda: aekit.VariationalAutoencoder(input_shape=("a",)), "input_shape must be"),  # type: ignore[arg-type]
        (lambda: aekit.AutoEncoder(weight_decay=math.nan), "weight_decay must be"),
        (lambda: aekit.AutoEncoder(weight_decay=-1.0), "weight_decay must be"),
        (lambda: aekit.AutoEncoder(noise_factor=math.nan), "noise amount must be"),
        (lambda: aekit.AutoEncoder(learning_rate=math.inf), "learning_rate must be"),
        (lambda: aekit.RunConfig(device="meta"), "cannot train"),
        (lambda: aekit.RunConfig(device="xpu"), "not available"),
    ],
)
def test_bad_settings_are_one_clear_error(build: Callable[[], Any], message: str) -> None:
    with pytest.raises(aekit.ConfigError, match=message) as caught:
        build()
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("shape", [(4, 8, 8, 3), (4,), (4, 9, 9), (4, 65)])
def test_examples_of_another_shape_are_an_input_error(tmp_path: Path, shape: tuple[int]) -> None:
    est = fc(tmp_path, hidden_units=[4])
    # (N,) is refused by numpy_input_fn itself; the others by the model.
    with pytest.raises(aekit.InputError, match="do not fit the model's input shape|per example"):
        est.train(numpy_input_fn(np.zeros(shape, np.uint8)), steps=1)
    flat = aekit.AutoEncoder([4], input_shape=(64,), config=QUIET)
    # The same number of values in another layout is fine.
    assert flat.network(torch.zeros(2, 8, 8, device=flat.device))[0].shape == (2, 8, 8)
