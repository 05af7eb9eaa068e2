"""What only a GPU shows; skipped without one (CI has none; see ../shared/GPU.md)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import aekit
from aekit.data import load_digits, numpy_input_fn
from aekit.hooks import Hook
from aekit.hooks.base import RunContext

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# "auto": on a GPU machine that is the GPU; a config for "cuda" cannot even be made here.
QUIET = aekit.RunConfig(random_seed=0, log_step_count_steps=20, save_summary_steps=20)


class NoSyncBetweenLogs(Hook):
    """Turns any host synchronisation between logging steps into an error."""

    def before_run(self, context: RunContext) -> None:
        step = context.global_step + 1
        torch.cuda.set_sync_debug_mode("error" if 20 < step < 59 and step % 20 else "default")

    def end(self, context: RunContext) -> None:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("compile", [False, True])
def test_no_host_sync_between_logging_steps(tmp_path: Path, compile: bool) -> None:
    config = dataclasses.replace(QUIET, compile=compile)
    est = aekit.AutoEncoder(model_dir=tmp_path, config=config, input_shape=(8, 8))
    x = load_digits()[0]
    try:
        est.train(numpy_input_fn(x, batch_size=64, num_epochs=None), steps=60,
                  hooks=[NoSyncBetweenLogs()])  # fmt: skip
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert est.global_step == 60


def test_a_checkpoint_resumes_with_its_random_state_on_the_gpu(tmp_path: Path) -> None:
    x = load_digits()[0]
    first = aekit.AutoEncoder(model_dir=tmp_path, config=QUIET, input_shape=(8, 8))
    first.train(numpy_input_fn(x, batch_size=64, num_epochs=None), steps=5)
    again = aekit.AutoEncoder(model_dir=tmp_path, config=QUIET, input_shape=(8, 8))
    again.train(numpy_input_fn(x, batch_size=64, num_epochs=None), steps=5)
    assert again.global_step == 10


def test_bad_labels_stop_training_and_leave_the_gpu_usable(tmp_path: Path) -> None:
    x, y = load_digits()

    def classifier(name: str) -> aekit.Classifier:
        return aekit.Classifier(image_shape=(1, 8, 8), conv_filters=[4], dense_units=8,
                                model_dir=tmp_path / name, config=QUIET)  # fmt: skip

    with pytest.raises(aekit.NanLossError, match="labels"):
        classifier("bad").train(numpy_input_fn(x[:64], np.full(64, 12), batch_size=32), steps=2)
    # No device-side assert fired: this process still trains on the GPU.
    assert classifier("good").train(numpy_input_fn(x, y, batch_size=64), steps=2).global_step == 2
