"""Turning a PREDICT spec's tensors into what `Estimator.predict` yields."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from aekit.errors import SpecError
from aekit.estimator.spec import EstimatorSpec


def select(spec: EstimatorSpec, keys: Sequence[str] | None) -> dict[str, np.ndarray]:
    """The predictions named by `keys` (all by default) as numpy arrays."""
    assert spec.predictions is not None
    predictions = dict(spec.predictions)
    if keys is not None:
        missing = [k for k in keys if k not in predictions]
        if missing:
            raise SpecError(
                f"predict_keys {missing} not among the predictions {sorted(predictions)}"
            )
        predictions = {k: predictions[k] for k in keys}
    return {k: _to_numpy(v) for k, v in predictions.items()}


def single_examples(outputs: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
    """One dict per example of a batch of predictions."""
    sizes = {len(v) for v in outputs.values()}
    if len(sizes) != 1:
        sizes_by_key = {k: len(v) for k, v in outputs.items()}
        raise SpecError(
            f"predictions have different batch sizes {sizes_by_key}; "
            "use yield_single_examples=False"
        )
    for i in range(sizes.pop()):
        yield {key: value[i] for key, value in outputs.items()}


def _to_numpy(value: torch.Tensor) -> np.ndarray:
    value = value.detach()
    if value.dtype in (torch.bfloat16, torch.float16):  # numpy has no bfloat16
        value = value.float()
    array: np.ndarray = value.cpu().numpy()
    return array
