"""Projector runs, read back from disk and through TensorBoard's own projector plugin."""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from tensorboard.plugins import base_plugin
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig
from tensorboard.plugins.projector.projector_plugin import ProjectorPlugin
from werkzeug.test import Client

from aekit.errors import ConfigError, InputError
from aekit.viz import projector
from aekit.viz.projector import write_projector

# protobuf ships no type hints; by name, mypy takes it as Any.
text_format: Any = importlib.import_module("google.protobuf.text_format")

N, D, SIDE = 20, 5, 8


def read_config(log_dir: Path) -> Any:
    config = ProjectorConfig()
    text_format.Parse((log_dir / "projector_config.pbtxt").read_text(), config)
    return config


def sample(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N, D)), np.arange(N) % 10, rng.random((N, SIDE, SIDE))


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray, np.ndarray]:
    """A projector run of N embeddings with labels and images."""
    embeddings, labels, images = sample()
    log_dir = tmp_path / "projector"
    written = write_projector(log_dir, embeddings, labels, images)
    return log_dir, written, embeddings, labels, images


def test_files_torch_writes(run: tuple[Path, Path, np.ndarray, np.ndarray, np.ndarray]) -> None:
    log_dir, written, embeddings, labels, _ = run
    assert written == log_dir / "00000" / "embedding"
    assert sorted(p.name for p in written.iterdir()) == [
        "metadata.tsv",
        "sprite.png",
        "tensors.tsv",
    ]
    assert (log_dir / "projector_config.pbtxt").is_file()
    assert any(p.name.startswith("events.out.tfevents.") for p in log_dir.iterdir())

    rows = (written / "tensors.tsv").read_text().splitlines()
    assert len(rows) == N
    table = np.array([[float(v) for v in row.split("\t")] for row in rows])
    assert table.shape == (N, D)
    assert np.allclose(table, embeddings, rtol=1e-12, atol=0)
    assert (written / "metadata.tsv").read_text().splitlines() == [str(v) for v in labels]


def test_sprite_is_a_square_of_tiles(
    run: tuple[Path, Path, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    _, written, _, _, images = run
    columns = math.ceil(math.sqrt(N))
    with Image.open(written / "sprite.png") as sprite:
        assert sprite.size == (columns * SIDE, columns * SIDE)
        a = np.array(sprite.convert("L"), dtype=np.int16)
    for i in range(N):
        r, c = divmod(i, columns)
        tile = a[r * SIDE : (r + 1) * SIDE, c * SIDE : (c + 1) * SIDE]
        assert np.abs(tile - images[i] * 255).max() <= 1
    assert (a[(N // columns) * SIDE :, (N % columns) * SIDE :] == 0).all()  # unused tiles


def test_config_parses_and_points_at_the_files(
    run: tuple[Path, Path, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    log_dir, written, _, _, _ = run
    config = read_config(log_dir)
    assert len(config.embeddings) == 1
    (embedding,) = config.embeddings
    assert embedding.tensor_name == "embedding:00000"
    assert embedding.tensor_path == "00000/embedding/tensors.tsv"
    assert embedding.metadata_path == "00000/embedding/metadata.tsv"
    assert embedding.sprite.image_path == "00000/embedding/sprite.png"
    assert list(embedding.sprite.single_image_dim) == [SIDE, SIDE]
    for relative in (embedding.tensor_path, embedding.metadata_path, embedding.sprite.image_path):
        assert (log_dir / relative).is_file()
        assert (log_dir / relative).parent == written


def test_tensorboard_projector_plugin_serves_the_run(
    run: tuple[Path, Path, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    log_dir, _, embeddings, labels, _ = run
    multiplexer = EventMultiplexer().AddRunsFromDirectory(str(log_dir))
    multiplexer.Reload()
    context = base_plugin.TBContext(
        logdir=str(log_dir),
        data_provider=MultiplexerDataProvider(multiplexer, str(log_dir)),
        multiplexer=multiplexer,
    )
    routes = ProjectorPlugin(context).get_plugin_apps()
    query = {"run": ".", "name": "embedding:00000"}

    def get(route: str, **args: str) -> Any:
        response = Client(routes[route]).get("/", query_string=args)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response

    assert get("/runs").json == ["."]
    info = get("/info", run=".").json
    assert [e["tensorName"] for e in info["embeddings"]] == ["embedding:00000"]
    assert info["embeddings"][0]["tensorShape"] == [N, D]
    tensor = np.frombuffer(get("/tensor", **query).get_data(), dtype=np.float32)
    assert np.allclose(tensor.reshape(N, D), embeddings, atol=1e-6)
    assert get("/metadata", **query).get_data(as_text=True).splitlines() == [str(v) for v in labels]
    sprite = get("/sprite_image", **query)
    assert sprite.content_type == "image/png"


def test_uint8_colour_images_and_tensors(tmp_path: Path) -> None:
    images = np.zeros((3, 3, 4, 4), dtype=np.uint8)
    images[:, 2] = 255  # blue
    written = write_projector(tmp_path, torch.randn(3, 2), torch.tensor([1, 2, 3]), images)
    with Image.open(written / "sprite.png") as sprite:
        assert sprite.size == (8, 8)
        assert sprite.convert("RGB").getpixel((1, 1)) == (0, 0, 255)
    assert (written / "metadata.tsv").read_text().split() == ["1", "2", "3"]


def test_tall_images_are_padded_to_square(tmp_path: Path) -> None:
    # torch's own sprite writer fails on images taller than wide.
    written = write_projector(tmp_path, np.ones((5, 3)), images=np.ones((5, 10, 6)))
    (embedding,) = read_config(tmp_path).embeddings
    assert list(embedding.sprite.single_image_dim) == [10, 10]
    with Image.open(written / "sprite.png") as sprite:
        assert sprite.size == (30, 30)
        a = np.array(sprite.convert("L"))
    assert (a[:10, 2:8] == 255).all() and (a[:10, :2] == 0).all() and (a[:10, 8:10] == 0).all()


def test_more_embeddings_join_the_config(tmp_path: Path) -> None:
    embeddings, labels, images = sample()
    write_projector(tmp_path, embeddings, labels, images)
    other = write_projector(tmp_path, embeddings[:, :2], tag="encoder/layer 1", step=7)
    assert other == tmp_path / "00007" / "encoder%2flayer 1"
    assert (other / "tensors.tsv").is_file()
    names = [e.tensor_name for e in read_config(tmp_path).embeddings]
    assert names == ["embedding:00000", "encoder/layer 1:00007"]

    # The same tag and step again replaces the embedding, leaving no stale metadata or sprite.
    again = write_projector(tmp_path, embeddings * 2)
    assert sorted(p.name for p in again.iterdir()) == ["tensors.tsv"]
    config = read_config(tmp_path)
    assert [e.tensor_name for e in config.embeddings] == [
        "encoder/layer 1:00007",
        "embedding:00000",
    ]
    assert not config.embeddings[1].metadata_path
    first = (again / "tensors.tsv").read_text().splitlines()[0].split("\t")
    assert np.allclose([float(v) for v in first], embeddings[0] * 2)


@pytest.mark.parametrize(
    ("embeddings", "labels", "images", "match"),
    [
        (np.zeros((0, 5)), None, None, "N, D >= 1"),
        (np.zeros((4, 0)), None, None, "N, D >= 1"),
        (np.array([[0.0, np.nan]]), None, None, "NaN"),
        (np.array([[np.inf], [0.0]]), None, None, "1 of 2"),
        (np.array([["a", "b"]]), None, None, "numbers"),
        (np.zeros((4, 2)), [1, 2, 3], None, "one per embedding"),
        (np.zeros((2, 2)), [[1], [2]], None, "one per embedding"),
        (np.zeros((2, 2)), ["a", "b\tc"], None, "tab"),
        (np.zeros((4, 2)), None, np.zeros((3, 8, 8)), "3 images for 4"),
        (np.zeros((4, 2)), None, np.zeros((4, 2, 8, 8)), "C 1 or 3"),
        (np.zeros((4, 2)), None, np.zeros((4, 64)), "C 1 or 3"),
        (np.zeros((4, 2)), None, np.full((4, 8, 8), np.nan), "NaN"),
        (np.zeros((4, 2)), None, np.zeros((4, 8, 8), dtype=np.int32), "uint8"),
    ],
)
def test_bad_inputs_are_refused_before_writing(
    tmp_path: Path, embeddings: np.ndarray, labels: Any, images: Any, match: str
) -> None:
    with pytest.raises(InputError, match=match):
        write_projector(tmp_path / "run", embeddings, labels, images)
    assert not (tmp_path / "run").exists()


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    for tag in ("", ".", "..", "a\nb"):
        with pytest.raises(ConfigError, match="tag"):
            write_projector(tmp_path / "run", np.zeros((2, 2)), tag=tag)
    with pytest.raises(ConfigError, match="step"):
        write_projector(tmp_path / "run", np.zeros((2, 2)), step=-1)
    assert not (tmp_path / "run").exists()


def test_sprites_too_large_for_the_projector_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(projector, "MAX_SPRITE_SIDE", 39)
    embeddings, labels, images = sample()
    with pytest.raises(InputError, match="40 pixels wide"):
        write_projector(tmp_path / "run", embeddings, labels, images)


def test_a_damaged_config_is_reported(tmp_path: Path) -> None:
    (tmp_path / "projector_config.pbtxt").write_text("embeddings { not a field }")
    with pytest.raises(InputError, match="not a projector config"):
        write_projector(tmp_path, np.zeros((2, 2)))


def test_what_a_killed_writer_left_is_removed(tmp_path: Path) -> None:
    """A staging folder (and a half-written config) of a process that no longer runs."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    staged = tmp_path / f".projector.tmp-{dead}" / "00000" / "embedding"
    staged.mkdir(parents=True)
    (staged / "tensors.tsv").write_text("0.5\n")
    (tmp_path / f".{projector.CONFIG_FILENAME}.tmp-{dead}").write_text("embeddings {")
    embeddings, labels, images = sample()
    folder = write_projector(tmp_path, embeddings, labels, images)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert sorted(p.name for p in folder.iterdir()) == ["metadata.tsv", "sprite.png", "tensors.tsv"]
    assert len((folder / "tensors.tsv").read_text().splitlines()) == len(embeddings)
