"""A run's settings: defaults, the model dir's saved hparams.json, a config file, and flags.

Later sources win: a model's defaults, then what the model dir saved, then the
config file (TOML or YAML), then the flags given. On a model dir that already
holds a run, a setting that would change the model is refused; only the keys in
`RESUMABLE` may change between runs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aekit._io import atomic_write_text
from aekit.errors import ConfigError
from aekit.models import registry

HPARAMS_FILE = "hparams.json"
RESUMABLE = frozenset(
    {"epochs", "device", "data_dir", "save_images", "log_every", "clip_grad_norm"}
)
RUN_DEFAULTS: dict[str, Any] = {
    "dataset": "mnist",
    "data_dir": None,
    "seed": 0,
    "device": "auto",
    "save_images": None,
    "log_every": None,
    "exclude_classes": None,
    "clip_grad_norm": None,
}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Settings from a .toml, .yaml or .yml file (keys may use '-' or '_')."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; check the --config path")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".toml":
            import tomllib

            data: Any = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            raise ConfigError(f"config file {path} must end in .toml, .yaml or .yml")
    except ConfigError:
        raise
    except Exception as exc:  # tomllib and yaml raise their own error types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"config file {path} cannot be parsed: {first}; fix its syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a table of settings, not {type(data).__name__}"
        )
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def saved_settings(model_dir: str | Path) -> dict[str, Any] | None:
    """What `save` wrote into the model dir, or None for a dir without a run."""
    path = Path(model_dir) / HPARAMS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{path} is unreadable ({exc}); restore it or use a new --model-dir"
        ) from None
    if not isinstance(data, dict) or "model" not in data:
        raise ConfigError(f"{path} is not an aekit settings file; use a new --model-dir")
    return data


def resolve(
    model: str | None,
    model_dir: str | Path,
    given: Mapping[str, Any],
    config_file: str | Path | None = None,
    preset: str | None = None,
) -> dict[str, Any]:
    """The complete settings of a run; ConfigError on unknown keys or a contradicted model dir."""
    saved = saved_settings(model_dir)
    from_file = load_config_file(config_file) if config_file else {}
    if preset is not None and preset not in registry.PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(registry.PRESETS)}")
    from_preset = dict(registry.PRESETS[preset]) if preset else {}
    model = (
        model
        or from_file.pop("model", None)
        or from_preset.pop("model", None)
        or (saved or {}).get("model")
    )
    from_file.pop("model", None)
    from_preset.pop("model", None)
    if model is None:
        raise ConfigError(
            f"no model named and {model_dir} holds no run; say e.g. `aekit train fully_connected`"
        )
    if saved is not None and model != saved["model"]:
        raise ConfigError(
            f"{model_dir} holds a {saved['model']} model, not {model}; use a new --model-dir"
        )
    entry = registry.get(model)
    settings: dict[str, Any] = {
        "model": model,
        **RUN_DEFAULTS,
        **entry.training_defaults,
        **entry.defaults,
    }
    requested = {**from_preset, **from_file, **{k: v for k, v in given.items() if v is not None}}
    unknown = sorted(set(requested) - set(settings))
    if unknown:
        raise ConfigError(
            f"{', '.join(unknown)} is not a setting of the {model} model; known: "
            f"{', '.join(sorted(k for k in settings if k != 'model'))}"
        )
    emptied = sorted(k for k, v in requested.items() if v is None and settings.get(k) is not None)
    if emptied:
        raise ConfigError(
            f"{', '.join(emptied)} cannot be empty (null); give a value or leave the key out"
        )
    if saved is not None:
        settings.update(saved)
        for key, value in requested.items():
            if key not in RESUMABLE and _normal(value) != _normal(saved.get(key)):
                raise ConfigError(
                    f"{model_dir} was trained with {key}={saved.get(key)!r}, this command asks "
                    f"for {value!r}; drop the setting or use a new --model-dir"
                )
    settings.update(requested)
    check_values(settings)
    return settings


# What each setting must be, checked before anything is loaded or written; the models
# check their own finer rules (a keep probability, say) when they are built.
_COUNTS = {"epochs": 1, "batch_size": 1, "pretrain_epochs": 0, "dense_units": 1, "n_classes": 2}
_POSITIVE = ("learning_rate", "clip_grad_norm")
_NON_NEGATIVE = ("weight_decay", "noise_factor", "dropout")
_TEXT = ("dataset", "data_dir", "save_images", "device", "activation", "downsample", "noise")


def check_values(settings: Mapping[str, Any]) -> None:
    """ConfigError naming the first setting of the wrong type or out of range."""
    for key, least in _COUNTS.items():
        if key in settings:
            _check_int(key, settings[key], least)
    if settings.get("log_every") is not None:
        _check_int("log_every", settings["log_every"], 1)
    seed: Any = settings.get("seed")
    _check_int("seed", seed, 0)
    if seed >= 2**32:
        raise ConfigError(f"seed must be below 2**32, got {seed}; give a smaller seed")
    for key in _POSITIVE + _NON_NEGATIVE:
        value = settings.get(key)
        if value is not None:
            _check_number(key, value, strictly_positive=key in _POSITIVE)
    rates = settings.get("pretrain_learning_rate")
    for rate in rates if isinstance(rates, list) else [rates] if rates is not None else []:
        _check_number("pretrain_learning_rate", rate, strictly_positive=True)
    for key in ("hidden_units", "num_filters", "example_shape"):
        value = settings.get(key)
        if value is not None and (
            not isinstance(value, list | tuple)
            or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        ):
            raise ConfigError(
                f"{key} must be a non-empty list of positive integers like [128, 64, 32], "
                f"got {value!r}"
            )
    for key in _TEXT:
        value = settings.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}; quote it in the config")
    if "tied_weights" in settings and not isinstance(settings["tied_weights"], bool):
        raise ConfigError(f"tied_weights must be true or false, got {settings['tied_weights']!r}")


def _check_int(key: str, value: Any, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{key} must be an integer >= {least}, got {value!r}")


def _check_number(key: str, value: Any, strictly_positive: bool) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (strictly_positive and value == 0):
        bound = "> 0" if strictly_positive else ">= 0"
        raise ConfigError(f"{key} must be a finite number {bound}, got {value!r}")


def save(model_dir: str | Path, settings: Mapping[str, Any]) -> None:
    """Write the settings into the model dir (atomically)."""
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(model_dir) / HPARAMS_FILE, json.dumps(dict(settings), indent=2) + "\n")


def _normal(value: Any) -> Any:
    # JSON turns tuples into lists and keeps ints and floats apart: compare as JSON sees them.
    if isinstance(value, tuple | list):
        return [_normal(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value
