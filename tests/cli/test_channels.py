"""Images with any number of channels, as an .npz holds them (channels last), train end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from aekit.cli.main import main


@pytest.mark.parametrize("channels", [2, 4, 5])
def test_channels_last_images_train_with_summaries(tmp_path: Path, channels: int) -> None:
    images = np.random.default_rng(0).integers(0, 256, (40, 8, 8, channels), dtype=np.uint8)
    data = tmp_path / "images.npz"
    np.savez(data, x=images)
    run = tmp_path / "run"
    code = main(["train", "convolutional", "--dataset", str(data), "--num-filters", "4",
                 "--epochs", "1", "--model-dir", str(run)])  # fmt: skip
    assert code == 0
    assert json.loads((run / "hparams.json").read_text())["example_shape"] == [channels, 8, 8]
    events = EventAccumulator(str(run / "train"), size_guidance={"images": 0})
    events.Reload()
    assert "images/reconstruction" in events.Tags()["images"]
