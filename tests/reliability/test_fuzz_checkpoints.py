"""Fuzzing checkpoints: fields of random types and values, at the top and nested inside.

A newest checkpoint with a damaged or crafted field is a CheckpointError with a one-line
message, and training resumes from the checkpoint before it; a field that is sound in type
but does not fit the model may be another one-line AekitError. Nothing else may escape.

Runs FUZZ_EXAMPLES cases (env AEKIT_FUZZ_EXAMPLES, default 100), as test_fuzz_inputs.py.
"""

from __future__ import annotations

import itertools
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from aekit.errors import AekitError, CheckpointError
from aekit.estimator import checkpoint as ckpt
from fuzzing import fuzz
from tiny import batches, quiet_estimator, tiny_data

CASES = itertools.count()

# Every field Estimator.save_checkpoint writes, the marker's two, and one it never writes.
FIELDS = ["format", "version", "global_step", "network", "optimizer", "lr_scheduler", "rng",
          "rng_by_rank", "shuffle_rng", "grad_scaler", "hooks", "unknown"]  # fmt: skip
# Places inside the fields: a key path into the real state. Not among them: the tensors of an
# optimizer's per-parameter state (exp_avg...), whose shapes only the model can check.
NESTED = [
    ("network", "0.weight"),
    ("optimizer", "state"),
    ("optimizer", "param_groups"),
    ("optimizer", "param_groups", 0),
    ("optimizer", "param_groups", 0, "params"),
    ("optimizer", "param_groups", 0, "lr"),
    ("optimizer", "param_groups", 0, "betas"),
    ("optimizer", "state", 0, "step"),
    ("rng", "torch"),
    ("rng", "python"),
    ("rng", "numpy"),
    ("rng", "numpy", "keys"),
    ("rng", "numpy", "pos"),
    ("rng", "numpy", "kind"),
    ("rng_by_rank", 0),
    ("rng_by_rank", 0, "python"),
]

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["x", "abc", ckpt.FORMAT, ""]),
)
DTYPES = [torch.float32, torch.float64, torch.int64, torch.uint8, torch.bool, torch.complex64]
TENSORS = st.builds(
    lambda dtype, shape: torch.zeros(shape, dtype=dtype),
    st.sampled_from(DTYPES),
    st.lists(st.integers(0, 3), max_size=3),
)
VALUES = st.recursive(
    st.one_of(SCALARS, TENSORS),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.one_of(st.text(max_size=4), st.integers(-2, 2)), inner, max_size=4),
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model dir with ckpt-2 and ckpt-4 of the tiny estimator."""
    model_dir = tmp_path_factory.mktemp("fuzz-checkpoints") / "model"
    est = quiet_estimator(model_dir)
    est.train(batches(tiny_data()), steps=2)
    est.train(batches(tiny_data()), steps=2)
    return model_dir


@pytest.fixture(autouse=True)
def quiet_aekit() -> Iterator[None]:
    # Each case logs that it skipped the damaged checkpoint; that is expected here.
    logger = logging.getLogger("aekit")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text, text
    return text


def put(state: dict[str, Any], path: tuple[str | int, ...], value: object) -> bool:
    """Set state[path[0]][path[1]]... to `value`; False when the path is not there."""
    node: Any = state
    for key in path[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return False
    last = path[-1]
    in_list = isinstance(node, list) and isinstance(last, int) and last < len(node)
    if not (isinstance(node, dict) or in_list):
        return False  # a tuple, a tensor, a number: nothing to put into
    node[last] = value
    return True


@fuzz
@given(
    changes=st.lists(
        st.tuples(
            st.one_of(st.sampled_from(FIELDS).map(lambda f: (f,)), st.sampled_from(NESTED)),
            st.one_of(VALUES, st.just("<delete>")),
        ),
        min_size=1,
        max_size=3,
    )
)
@pytest.mark.slow
def test_fuzz_checkpoint_fields(
    template: Path,
    tmp_path: Path,
    changes: list[tuple[tuple[str | int, ...], object]],
) -> None:
    model_dir = tmp_path / f"case-{next(CASES)}"
    shutil.copytree(template, model_dir)
    state: dict[str, Any] = torch.load(model_dir / "ckpt-4.pt", weights_only=True)
    for path, value in changes:
        if value == "<delete>" and len(path) == 1:
            state.pop(str(path[0]), None)
        else:
            put(state, path, value)
    newest = model_dir / "ckpt-4.pt"
    try:
        torch.save(state, newest)
    except (TypeError, RuntimeError, ValueError, OverflowError):
        return  # a value torch cannot save (a 2**70 integer): no such file can exist
    try:
        loaded = ckpt.load(newest)
    except CheckpointError as exc:
        text = one_line(exc)
        assert str(newest) in text, text
        loaded = None
    est = quiet_estimator(model_dir)
    try:
        est.train(batches(tiny_data()), steps=1)
    except AekitError as exc:
        # Sound types that do not fit this model: refused, with one line, by the Estimator.
        assert loaded is not None, f"ckpt-4 was refused, yet resuming failed: {exc}"
        assert not isinstance(exc, CheckpointError) or "ckpt-4" in str(exc), exc
        one_line(exc)
        return
    # A refused ckpt-4 falls back to ckpt-2; an accepted one resumes from its own step.
    expected = 3 if loaded is None else loaded["global_step"] + 1
    assert est.global_step == expected
