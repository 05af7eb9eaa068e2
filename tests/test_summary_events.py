"""Summaries read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

import aekit
from aekit import summary
from tiny import tiny_autoencoder_fn, tiny_network


def read(directory: Path) -> EventAccumulator:
    events = EventAccumulator(
        str(directory), size_guidance={"histograms": 0, "images": 0, "scalars": 0}
    )
    events.Reload()
    return events


def endless() -> Iterator[torch.Tensor]:
    while True:
        yield torch.rand(4, 8)


def test_training_scalars_at_summary_steps(tmp_path: Path) -> None:
    config = aekit.RunConfig(save_summary_steps=3, log_step_count_steps=2)
    aekit.Estimator(tiny_autoencoder_fn, tiny_network(), model_dir=tmp_path, config=config).train(
        endless, max_steps=7
    )
    events = read(tmp_path / "train")
    scalars = set(events.Tags()["scalars"])
    assert {"loss", "learning_rate", "global_gradient_norm"} <= scalars
    assert {"global_step/sec", "examples/sec"} <= scalars
    assert [e.step for e in events.Scalars("loss")] == [1, 3, 6, 7]  # and the last step
    assert [e.step for e in events.Scalars("examples/sec")] == [2, 4, 6]
    assert all(e.value > 0 for e in events.Scalars("global_gradient_norm"))
    assert events.Scalars("learning_rate")[0].value == pytest.approx(1e-3)


def test_model_fn_summaries_only_on_summary_steps(tmp_path: Path) -> None:
    recorded_on: list[int] = []
    steps_seen = [0]

    def model_fn(
        network: nn.Sequential,
        features: torch.Tensor,
        labels: torch.Tensor | None,
        mode: aekit.ModeKeys,
        params: Mapping[str, Any],
    ) -> aekit.EstimatorSpec:
        steps_seen[0] += 1
        if summary.should_record():
            recorded_on.append(steps_seen[0])
        summary.scalar("custom/mean", features.mean())
        summary.histogram("custom/values", features)
        summary.image("custom/picture", features[:2].reshape(2, 1, 2, 4))
        return tiny_autoencoder_fn(network, features, labels, mode, params)

    config = aekit.RunConfig(save_summary_steps=4, log_step_count_steps=0)
    est = aekit.Estimator(model_fn, tiny_network(), model_dir=tmp_path, config=config)
    est.train(endless, max_steps=9)
    assert recorded_on == [1, 4, 8, 9]
    events = read(tmp_path / "train")
    assert [e.step for e in events.Scalars("custom/mean")] == [1, 4, 8, 9]  # and the last
    assert [e.step for e in events.Histograms("custom/values")] == [1, 4, 8, 9]
    histogram = events.Histograms("custom/values")[0].histogram_value
    assert histogram.num == 32 and 0.0 <= histogram.min <= histogram.max <= 1.0
    assert sum(histogram.bucket) == 32
    picture = events.Images("custom/picture")[0]
    assert (picture.width, picture.height) == (8, 2)  # the batch of two is laid out in a row


def test_evaluate_writes_under_eval_and_named_dirs(tmp_path: Path) -> None:
    est = aekit.Estimator(
        tiny_autoencoder_fn,
        tiny_network(),
        model_dir=tmp_path,
        config=aekit.RunConfig(log_step_count_steps=0),
    )
    est.train(endless, max_steps=5)
    x = torch.rand(10, 8)
    plain = est.evaluate([x])
    named = est.evaluate([x], name="holdout")
    for directory, result in ((tmp_path / "eval", plain), (tmp_path / "eval_holdout", named)):
        events = read(directory)
        assert {"loss", "rmse"} <= set(events.Tags()["scalars"])
        (rmse,) = events.Scalars("rmse")
        assert rmse.step == 5 and rmse.value == pytest.approx(result["rmse"], rel=1e-6)
    with pytest.raises(aekit.ConfigError, match="plain directory name"):
        est.evaluate([x], name="../escape")


def test_recording_switch_outside_an_estimator() -> None:
    assert not summary.should_record()
    summary.scalar("ignored", 1.0)  # a no-op, not an error
    recorder = summary.Recorder()
    with summary.recording(recorder):
        assert summary.should_record()
        summary.scalar("a", torch.tensor(2.0, requires_grad=True) * 1)
        summary.histogram("b", torch.zeros(3))
    assert not summary.should_record()
    assert [(kind, name) for kind, name, _ in recorder.records] == [
        ("scalar", "a"),
        ("histogram", "b"),
    ]
    value = recorder.records[0][2]
    assert isinstance(value, torch.Tensor) and not value.requires_grad


@pytest.mark.parametrize(
    ("shape", "size"), [((5, 7), (7, 5)), ((3, 5, 7), (7, 5)), ((2, 1, 5, 7), (14, 5))]
)
def test_image_layouts(tmp_path: Path, shape: tuple[int, ...], size: tuple[int, int]) -> None:
    writers = summary.EventWriters(tmp_path)
    recorder = summary.Recorder()
    with summary.recording(recorder):
        summary.image("img", torch.rand(shape))
    writers.write_records("train", recorder, step=1)
    writers.close()
    image = read(tmp_path / "train").Images("img")[0]
    assert (image.width, image.height) == size


def test_five_dimensional_image_is_refused(tmp_path: Path) -> None:
    writers = summary.EventWriters(tmp_path)
    recorder = summary.Recorder()
    with summary.recording(recorder):
        summary.image("img", torch.rand(1, 1, 1, 2, 2))
    with pytest.raises(ValueError, match="HW, CHW or NCHW"):
        writers.write_records("train", recorder, step=1)
    writers.close()


def test_histogram_of_non_finite_and_constant_values(tmp_path: Path) -> None:
    writers = summary.EventWriters(tmp_path)
    recorder = summary.Recorder()
    with summary.recording(recorder):
        summary.histogram("constant", torch.full((10,), 3.0))
        summary.histogram("with_nan", torch.tensor([1.0, float("nan"), 2.0]))
        summary.histogram("only_nan", torch.tensor([float("nan")]))
    writers.write_records("train", recorder, step=1)
    writers.close()
    events = read(tmp_path / "train")
    assert events.Histograms("constant")[0].histogram_value.num == 10
    assert events.Histograms("with_nan")[0].histogram_value.num == 2
    assert "only_nan" not in events.Tags()["histograms"]


def test_resuming_from_an_older_checkpoint_purges_the_replayed_steps(tmp_path: Path) -> None:
    def run(max_steps: int) -> None:
        config = aekit.RunConfig(
            save_summary_steps=1,
            log_step_count_steps=0,
            keep_checkpoint_max=0,
            save_checkpoints_steps=2,
        )
        est = aekit.Estimator(
            tiny_autoencoder_fn, tiny_network(), model_dir=tmp_path, config=config
        )
        est.train(endless, max_steps=max_steps)

    run(4)
    (tmp_path / "ckpt-4.pt").unlink()  # lose the newest checkpoint: steps 3 and 4 run again
    run(6)
    steps = [e.step for e in read(tmp_path / "train").Scalars("loss")]
    assert steps == [1, 2, 3, 4, 5, 6]  # each step once: the restart purged the first run's


@pytest.mark.parametrize(
    ("shape", "channels", "size"),
    [
        ((2, 5, 7), 1, (14, 5)),  # CHW, 2 channels: one grey image, channels side by side
        ((4, 5, 7), 1, (28, 5)),  # 4 channels are not taken as RGBA: every channel shown
        ((3, 5, 5, 7), 1, (105, 5)),  # NCHW, 5 channels: 3 examples x 5 channels in a row
        ((2, 3, 5, 7), 3, (14, 5)),  # RGB stays RGB (random values: not grey)
    ],
)
def test_images_of_any_channel_count(
    tmp_path: Path, shape: tuple[int, ...], channels: int, size: tuple[int, int]
) -> None:
    writers = summary.EventWriters(tmp_path)
    recorder = summary.Recorder()
    with summary.recording(recorder):
        summary.image("img", torch.rand(shape))
    writers.write_records("train", recorder, step=1)
    writers.close()
    image = read(tmp_path / "train").Images("img")[0]
    assert (image.width, image.height) == size
    from io import BytesIO

    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(BytesIO(image.encoded_image_string)).convert("RGB"))
    grey = bool((rgb == rgb[..., :1]).all())  # TensorBoard stores grey as equal R, G and B
    assert grey == (channels == 1)


def test_channels_are_laid_out_in_order(tmp_path: Path) -> None:
    writers = summary.EventWriters(tmp_path)
    recorder = summary.Recorder()
    ramp = torch.tensor([0.0, 0.25, 0.5, 0.75]).reshape(4, 1, 1).expand(4, 2, 3)
    with summary.recording(recorder):
        summary.image("ramp", ramp)
    writers.write_records("train", recorder, step=1)
    writers.close()
    from io import BytesIO

    import numpy as np
    from PIL import Image

    encoded = read(tmp_path / "train").Images("ramp")[0].encoded_image_string
    pixels = np.asarray(Image.open(BytesIO(encoded)).convert("L"))
    assert pixels.shape == (2, 12)
    assert [int(pixels[0, 3 * c]) for c in range(4)] == [0, 63, 127, 191]  # 255 x value, cut
    assert (pixels[:, 3:6] == pixels[0, 3]).all()  # channel 1 fills the second block


@pytest.mark.parametrize("channels", [2, 4, 5])
def test_reconstruction_model_on_images_of_any_channel_count(tmp_path: Path, channels: int) -> None:
    """The README promises any channel count: the first summary step must write them."""
    from aekit.data import numpy_input_fn
    from aekit.models.fully_connected import AutoEncoder

    x = torch.randint(0, 256, (8, channels, 4, 4), dtype=torch.uint8)
    est = AutoEncoder(
        hidden_units=[6],
        input_shape=(channels, 4, 4),
        model_dir=tmp_path,
        config=aekit.RunConfig(save_summary_steps=1, log_step_count_steps=0),
    )
    est.train(numpy_input_fn(x, batch_size=4, num_epochs=1))
    events = read(tmp_path / "train")
    assert {"images/input", "images/reconstruction"} <= set(events.Tags()["images"])
    reconstruction = events.Images("images/reconstruction")[0]
    assert reconstruction.width % (channels * 4) == 0 and reconstruction.height == 4
