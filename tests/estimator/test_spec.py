"""EstimatorSpec validation per mode."""

from __future__ import annotations

import pytest
import torch

from aekit import EstimatorSpec, ModeKeys, SpecError, metrics


def test_train_needs_a_loss() -> None:
    with pytest.raises(SpecError, match="TRAIN mode needs a loss"):
        EstimatorSpec(ModeKeys.TRAIN)


def test_eval_needs_a_loss() -> None:
    with pytest.raises(SpecError, match="EVAL mode needs a loss"):
        EstimatorSpec(ModeKeys.EVAL, predictions={"p": torch.zeros(2)})


def test_predict_needs_predictions() -> None:
    with pytest.raises(SpecError, match="PREDICT mode needs predictions"):
        EstimatorSpec(ModeKeys.PREDICT, loss=torch.tensor(1.0))


def test_loss_must_be_scalar() -> None:
    with pytest.raises(SpecError, match=r"scalar tensor, got \(3,\)"):
        EstimatorSpec(ModeKeys.EVAL, loss=torch.zeros(3))


def test_train_loss_must_require_grad() -> None:
    with pytest.raises(SpecError, match="does not require grad"):
        EstimatorSpec(ModeKeys.TRAIN, loss=torch.tensor(1.0))


def test_train_op_allows_a_loss_without_grad() -> None:
    spec = EstimatorSpec(ModeKeys.TRAIN, loss=torch.tensor(1.0), train_op=lambda: None)
    assert spec.train_op is not None


def test_bare_prediction_tensor_is_keyed() -> None:
    spec = EstimatorSpec(ModeKeys.PREDICT, predictions=torch.ones(2))  # type: ignore[arg-type]
    assert spec.predictions is not None
    assert list(spec.predictions) == ["predictions"]


def test_mode_given_as_string_becomes_enum() -> None:
    spec = EstimatorSpec("infer", predictions={"p": torch.ones(2)})  # type: ignore[arg-type]
    assert spec.mode is ModeKeys.PREDICT


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(SpecError, match="must be one of"):
        EstimatorSpec("fit", loss=torch.tensor(1.0))  # type: ignore[arg-type]


def test_metric_ops_must_be_metric_updates() -> None:
    with pytest.raises(SpecError, match=r"eval_metric_ops\['acc'\]"):
        EstimatorSpec(ModeKeys.EVAL, loss=torch.tensor(1.0), eval_metric_ops={"acc": 0.5})  # type: ignore[dict-item]
    ok = EstimatorSpec(
        ModeKeys.EVAL, loss=torch.tensor(1.0), eval_metric_ops={"m": metrics.mean(torch.ones(3))}
    )
    assert "m" in ok.eval_metric_ops
