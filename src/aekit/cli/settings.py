"""A run's settings: defaults, the model dir's saved hparams.json, a config file, and flags.

Later sources win: a model's defaults, then what the model dir saved, then the
config file (TOML or YAML), then the flags given. On a model dir that already
holds a run, a setting that would change the model is refused; only the keys in
`RESUMABLE` may change between runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aekit._io import atomic_write_text
from aekit.errors import ConfigError
from aekit.models import registry

HPARAMS_FILE = "hparams.json"
RESUMABLE = frozenset({"epochs", "device", "data_dir", "save_images", "log_every"})
RUN_DEFAULTS: dict[str, Any] = {
    "dataset": "mnist",
    "data_dir": None,
    "seed": 0,
    "device": "auto",
    "save_images": None,
    "log_every": None,
    "exclude_classes": None,
}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Settings from a .toml, .yaml or .yml file (keys may use '-' or '_')."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; check the --config path")
    text = path.read_text(encoding="utf-8")
    try:
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
    if saved is not None:
        settings.update(saved)
        for key, value in requested.items():
            if key not in RESUMABLE and _normal(value) != _normal(saved.get(key)):
                raise ConfigError(
                    f"{model_dir} was trained with {key}={saved.get(key)!r}, this command asks "
                    f"for {value!r}; drop the setting or use a new --model-dir"
                )
    settings.update(requested)
    return settings


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
