"""Streaming metrics add up exactly across batches."""

from __future__ import annotations

import math

import pytest
import torch

from aekit import metrics


def test_mean_over_batches_equals_mean_of_all() -> None:
    values = torch.arange(10, dtype=torch.float32)
    total = metrics.mean(values[:3]) + metrics.mean(values[3:])
    assert total.result() == pytest.approx(4.5)


def test_weighted_mean() -> None:
    update = metrics.mean(torch.tensor([1.0, 3.0]), weights=torch.tensor([3.0, 1.0]))
    assert update.result() == pytest.approx(1.5)


def test_rmse_is_not_an_average_of_batch_rmses() -> None:
    labels = torch.zeros(4)
    preds = torch.tensor([1.0, 1.0, 1.0, 5.0])
    split = metrics.root_mean_squared_error(
        labels[:3], preds[:3]
    ) + metrics.root_mean_squared_error(labels[3:], preds[3:])
    assert split.result() == pytest.approx(math.sqrt(28 / 4))


def test_mse_mae_accuracy() -> None:
    a, b = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    assert metrics.mean_squared_error(a, b).result() == pytest.approx(5 / 3)
    assert metrics.mean_absolute_error(a, b).result() == pytest.approx(1.0)
    assert metrics.accuracy(
        torch.tensor([1, 2, 3]), torch.tensor([1, 0, 3])
    ).result() == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="one shape"):
        metrics.accuracy(torch.zeros(2), torch.zeros(3))


def test_empty_is_nan_and_kinds_do_not_mix() -> None:
    assert math.isnan(metrics.mean(torch.zeros(0)).result())
    with pytest.raises(ValueError, match="different kinds"):
        _ = metrics.mean(torch.ones(1)) + metrics.root_mean_squared_error(
            torch.ones(1), torch.ones(1)
        )
