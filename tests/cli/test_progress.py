"""What `aekit train` shows: a line per epoch with its figures, summaries at every epoch's end."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from aekit.cli.main import main


def test_a_line_per_epoch_and_summaries_at_every_epochs_end(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="aekit"):
        code = main(["train", "convolutional", "--dataset", "digits", "--num-filters", "4",
                     "--epochs", "3", "--model-dir", str(run)])  # fmt: skip
    assert code == 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert [line.split(" - ")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all(" - mean loss " in line and " - val_rmse " in line for line in lines)
    events = EventAccumulator(str(run / "train"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    # An epoch of the 1,438 training digits is 6 steps of 256: step 1 and every epoch's end.
    assert [e.step for e in events.Images("images/reconstruction")] == [1, 6, 12, 18]
    assert [e.step for e in events.Scalars("loss")] == [1, 6, 12, 18]
