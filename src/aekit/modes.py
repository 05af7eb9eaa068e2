"""ModeKeys: the three things an Estimator asks of a model_fn (and of an input function)."""

from __future__ import annotations

import enum


class ModeKeys(enum.StrEnum):
    """The three things an Estimator asks of a model_fn."""

    TRAIN = "train"
    EVAL = "eval"
    PREDICT = "infer"
