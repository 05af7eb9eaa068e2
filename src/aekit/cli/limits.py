"""Bounds on what the command line reads and allocates, checked before anything is allocated.

Settings come from files anyone may edit: a config file or a saved hparams.json is bounded
in bytes, nesting depth and node count, and the batches and pictures the settings describe
are counted from the settings alone, so a size nobody could allocate is one clear error.
(The network itself is checked by the model constructors, on the meta device: aekit.models.memory.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from aekit.cli import registry
from aekit.errors import ConfigError

MAX_SAMPLES = 1_000_000
"""The most codes `aekit likelihood` draws per image (papers use 5,000)."""

MAX_SETTINGS_BYTES = 64 * 1024
"""Largest config file or hparams.json read (the real ones are under 2 KiB)."""
MAX_SETTINGS_NODES = 2_000
"""Most values (scalars, lists and tables, counted through aliases) in a settings file."""
MAX_SETTINGS_DEPTH = 4
"""Deepest nesting of lists and tables in a settings file (a list of numbers is depth 2)."""
MAX_BATCH_VALUES = 2**31
"""Most activations (float32: 8 GiB) of one batch through the network, training or evaluating."""
EVAL_BATCH = 1000
"""The batch size of the command line's evaluations."""
MAX_PICTURE_PIXELS = 50_000_000
"""Most pixels of a PNG grid the command line draws (about PIL's decompression-bomb limit)."""

_SIZE_SETTINGS = ("hidden_units", "num_filters", "dense_units", "latent_dim", "n_classes")


def check_structure(data: Any, source: str) -> None:
    """ConfigError when `data` nests deeper or holds more values than a settings file may.

    Walks without recursion and counts a shared (aliased) object once per use, so a
    YAML "billion laughs" is refused after MAX_SETTINGS_NODES steps, not expanded.
    """
    stack: list[tuple[Any, int]] = [(data, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_SETTINGS_NODES:
            raise ConfigError(
                f"{source} holds more than {MAX_SETTINGS_NODES:,} values; a settings file "
                "needs a few dozen, remove the rest"
            )
        if isinstance(value, Mapping | list | tuple):
            if depth > MAX_SETTINGS_DEPTH:
                raise ConfigError(
                    f"{source} nests lists or tables deeper than {MAX_SETTINGS_DEPTH} levels; "
                    "settings are numbers, strings or lists of numbers"
                )
            children = value.values() if isinstance(value, Mapping) else value
            stack.extend((child, depth + 1) for child in children)


def check_bytes(size: int, source: str) -> None:
    """ConfigError when a settings file is larger than any real one."""
    if size > MAX_SETTINGS_BYTES:
        raise ConfigError(
            f"{source} is {size:,} bytes, over the limit of {MAX_SETTINGS_BYTES:,} for a "
            "settings file; give a file of settings only"
        )


def _image(shape: Sequence[int]) -> tuple[int, int, int]:
    if len(shape) == 2:
        return 1, shape[0], shape[1]
    if len(shape) == 3:
        return shape[0], shape[1], shape[2]
    raise ConfigError(
        f"this model needs images, but the examples have shape {tuple(shape)}; use images "
        "(H, W) or (C, H, W), or the fully_connected model"
    )


def _matters(settings: Mapping[str, Any], key: str) -> bool:
    # A VAE's encoder uses either hidden_units or num_filters; name only the one it uses.
    if settings["model"] != "variational" or key not in ("hidden_units", "num_filters"):
        return True
    return (key == "num_filters") == bool(settings["encoder"] == "convolutional")


def _conv_maps(channels: int, height: int, width: int, filters: Sequence[int]) -> int:
    # Per block two full-size maps, then half the size (rounded up); the decoder mirrors it.
    count = channels * height * width
    for f in filters:
        count += 2 * f * height * width
        height, width = -(-height // 2), -(-width // 2)
    return 2 * count


def activation_count(settings: Mapping[str, Any], example_shape: Sequence[int]) -> int:
    """About how many values one example makes flow through the settings' network."""
    model = settings["model"]
    n_features = math.prod(example_shape)
    units = registry.hidden_units(settings)
    count: int
    if model in ("fully_connected", "stacked") or (
        model == "variational" and settings["encoder"] == "fully_connected"
    ):
        count = 2 * (n_features + sum(units))
    elif model in ("convolutional", "classifier", "variational"):
        count = _conv_maps(*_image(example_shape), settings["num_filters"])
    else:  # a model without a count would turn the batch-size guard off unseen
        raise LookupError(f"no activation count for the {model} model: add it here")
    extra = [settings.get(k) for k in ("latent_dim", "dense_units", "n_classes")]
    return count + 3 * sum(int(v) for v in extra if isinstance(v, int))


def check_batch_size(settings: Mapping[str, Any], example_shape: Sequence[int]) -> None:
    """ConfigError naming batch_size and the sizes when one batch's activations are too many."""
    given = settings["batch_size"]  # "auto": sized from the data, at most 512 rows
    batch = max(given if isinstance(given, int) else 0, EVAL_BATCH)
    count = batch * activation_count(settings, example_shape)
    if count > MAX_BATCH_VALUES:
        sizes = ", ".join(
            f"{key}={settings[key]!r}"
            for key in _SIZE_SETTINGS
            if key in settings and _matters(settings, key)
        )
        raise ConfigError(
            f"batches of {batch:,} examples of shape {list(example_shape)} through the "
            f"{settings['model']} network make {count:,} values, over the limit of "
            f"{MAX_BATCH_VALUES:,} (batch_size={settings['batch_size']}, {sizes}); choose a "
            "smaller batch_size or smaller sizes"
        )


def check_picture(flag: str, images: int, image_shape: Sequence[int], scale: int = 1) -> None:
    """ConfigError naming `flag` when a grid of `images` pictures would be too large to draw."""
    channels, height, width = _image(image_shape) if len(image_shape) != 3 else image_shape
    pixels = images * channels * (height * scale + 2) * (width * scale + 2)
    if pixels > MAX_PICTURE_PIXELS:
        raise ConfigError(
            f"{flag} {images:,} asks for a picture of {pixels:,} pixels, over the limit of "
            f"{MAX_PICTURE_PIXELS:,}; ask for fewer images"
        )
