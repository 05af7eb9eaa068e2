"""The public API as a user writes it (the Estimator, input functions, hooks, the zoo), run on
real digits: what docs/guide/estimator.md promises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import aekit
from aekit.data import mnist, numpy_input_fn

SPLIT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-split"


@pytest.mark.slow
def test_what_users_write(tmp_path: Path) -> None:
    if not SPLIT.is_dir():
        pytest.skip("../shared/data/mnist-split is not beside this checkout")
    (x_train, _), (x_test, y_test) = mnist.load_data(SPLIT)
    assert x_train.dtype == np.uint8 and x_train.shape == (8000, 28, 28) and y_test.shape == (2000,)
    est = aekit.AutoEncoder(
        hidden_units=[128, 64, 32],
        keep_prob=None,
        weight_decay=1e-5,
        learning_rate=1e-3,
        model_dir=tmp_path / "fc",
        config=aekit.RunConfig(log_step_count_steps=0),
    )
    est.train(numpy_input_fn(x_train[:2048], batch_size=256, num_epochs=2, shuffle=True))
    result = est.evaluate(numpy_input_fn(x_test, shuffle=False))
    assert set(result) == {"loss", "rmse", "global_step"} and result["global_step"] == 16
    predictions = list(est.predict(numpy_input_fn(x_test[:10], shuffle=False)))
    assert len(predictions) == 10
    assert predictions[0]["prediction"].shape == (28, 28) and predictions[0]["embedding"].shape == (
        32,
    )


def test_a_dataloader_is_an_input(tmp_path: Path) -> None:
    x = torch.rand(40, 8, 8)
    loader = DataLoader(TensorDataset(x), batch_size=10)
    est = aekit.AutoEncoder([8], input_shape=(8, 8), model_dir=tmp_path)
    aekit.train_and_evaluate(
        est, aekit.TrainSpec(loader, max_steps=6), aekit.EvalSpec(loader, every_n_steps=3)
    )
    assert est.global_step == 4  # one pass over the loader: the input ended first
