"""A run's settings from their sources: defaults, the model dir's hparams.json, a config
file and flags.

Later sources win: the model's defaults (`aekit.cli.settings`), then what the model dir
saved, then the config file (TOML or YAML), then the flags given. On a model dir that
already holds a run, a setting that would change the model is refused; only the settings
declared `resumable` may change between runs (the learning rates among them: lowering the
rate of a run by hand is a step decay). Paths are stored absolute.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from aekit.checks import Number, shown
from aekit.cli import limits, registry
from aekit.cli.settings import RESUMABLE, absolute, check_values, model_settings
from aekit.errors import ConfigError
from aekit.files import atomic_write_text, ensure_dir, os_reason, writing

HPARAMS_FILE = "hparams.json"


class _Refused(Exception):
    """A YAML structure refused while it is composed, before it is built."""


class _SettingsLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing aliases (`*name`) and deep nesting as it composes.

    An alias can expand a few bytes into gigabytes, PyYAML composes nested flow
    collections recursively (seconds for a few thousand `[`), and a long list takes seconds
    to compose: each stops at the first step over its bound.
    """

    depth = 0
    nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event: Any = self.peek_event()  # type: ignore[no-untyped-call]
            raise _Refused(f"uses the YAML alias *{event.anchor}; write the value out instead")
        if self.depth >= limits.MAX_SETTINGS_DEPTH:
            raise _Refused(
                f"nests lists or tables deeper than {limits.MAX_SETTINGS_DEPTH} levels; "
                "settings are numbers, strings or lists of numbers"
            )
        self.nodes += 1
        if self.nodes > limits.MAX_SETTINGS_NODES:
            raise _Refused(
                f"holds more than {limits.MAX_SETTINGS_NODES:,} values; a settings file needs a "
                "few dozen, remove the rest"
            )
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def read_bounded(path: Path, source: str) -> str:
    """The text of a settings file, refused when larger than limits.MAX_SETTINGS_BYTES."""
    with open(path, "rb") as f:
        raw = f.read(limits.MAX_SETTINGS_BYTES + 1)
    limits.check_bytes(len(raw), source)
    return raw.decode("utf-8")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Settings from a .toml, .yaml or .yml file (keys may use '-' or '_')."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; check the --config path")
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"config file {path} must end in .toml, .yaml or .yml")
    try:
        text = read_bounded(path, f"config file {path}")
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        else:
            data = yaml.load(text, Loader=_SettingsLoader)  # a SafeLoader
    except ConfigError:
        raise
    except _Refused as exc:
        raise ConfigError(f"config file {path} {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({os_reason(exc)})") from None
    except (Exception, RecursionError) as exc:  # tomllib and yaml raise their own error types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"config file {path} cannot be parsed: {first}; fix its syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a table of settings, not {type(data).__name__}"
        )
    limits.check_structure(data, f"config file {path}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


RECORDED = frozenset({"example_shape", "columns"})
"""What `aekit train` records of its data besides the settings: the examples' shape and a
table's column names."""


def saved_settings(model_dir: str | Path) -> dict[str, Any] | None:
    """What `save` wrote into the model dir, checked; None for a dir without a run.

    The file may have been edited: it is bounded in size and nesting, must name a known
    model, may hold only that model's settings (missing ones get their defaults, as
    older runs lack newer settings) and every value must have the right type.
    """
    path = Path(model_dir) / HPARAMS_FILE
    if not path.is_file():
        return None
    source = str(path)
    try:
        data = json.loads(read_bounded(path, source))
    except ConfigError:
        raise
    except (OSError, ValueError, RecursionError) as exc:
        reason = os_reason(exc) if isinstance(exc, OSError) else str(exc).splitlines()[0][:200]
        raise ConfigError(
            f"{path} is unreadable ({reason}); restore it or use a new --model-dir"
        ) from None
    if not isinstance(data, dict) or "model" not in data:
        raise ConfigError(f"{path} is not an aekit settings file; use a new --model-dir")
    limits.check_structure(data, source)
    _check_model_name(data["model"], source)
    if data["model"] == "fully_connected" and "dropout" in data and "keep_prob" not in data:
        # Runs before `keep_prob` existed saved seed 000's keep probability as "dropout".
        data["keep_prob"] = data.pop("dropout")
    known = model_settings(data["model"])
    unknown = sorted(set(data) - set(known) - RECORDED)
    if unknown:
        raise ConfigError(
            f"{path} holds {_names(unknown)}, not settings of the {data['model']} model; "
            "restore the file or use a new --model-dir"
        )
    settings = {**known, **data}
    check_values(settings, source)
    return settings


def _check_model_name(model: Any, source: str) -> None:
    if not isinstance(model, str):
        raise ConfigError(
            f'model in {source} must be a model name such as "fully_connected", got {shown(model)}'
        )
    registry.get(model)


def resolve(
    model: str | None,
    model_dir: str | Path,
    given: Mapping[str, Any],
    config_file: str | Path | None = None,
    preset: str | None = None,
) -> dict[str, Any]:
    """The complete settings of a run; ConfigError on unknown keys or a contradicted model dir."""
    if model is not None:  # a misspelt name is the problem, whatever the dir holds
        _check_model_name(model, "the command line")
    saved = saved_settings(model_dir)
    from_file = load_config_file(config_file) if config_file else {}
    if preset is not None and preset not in registry.PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(registry.PRESETS)}")
    from_preset = dict(registry.PRESETS[preset]) if preset else {}
    model = _model_of(model, from_file, from_preset, saved, model_dir, config_file)
    settings = model_settings(model)
    flags = {k: v for k, v in given.items() if v is not None}
    requested = {
        **_keep_prob(model, from_preset, f"preset {preset}"),
        **_keep_prob(model, from_file, f"config file {config_file}"),
        **_keep_prob(model, flags, "the command line"),
    }
    absolute(requested)  # before comparing with the saved (absolute) paths
    unknown = sorted(set(requested) - set(settings))
    if unknown:
        raise ConfigError(
            f"{_names(unknown)} is not a setting of the {model} model; known: "
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
                    f"{model_dir} was trained with {key}={shown(saved.get(key))}, this command "
                    f"asks for {shown(value)}; drop the setting or use a new --model-dir"
                )
    settings.update(requested)
    check_values(settings)
    return absolute(settings)


def _model_of(
    named: str | None,
    from_file: dict[str, Any],
    from_preset: dict[str, Any],
    saved: Mapping[str, Any] | None,
    model_dir: str | Path,
    config_file: str | Path | None,
) -> str:
    """The run's model, named by the command line, the config file, the preset or the dir.

    Takes "model" out of the file's and the preset's settings; refuses a misspelt name and
    a name the dir contradicts.
    """
    if from_file.get("model") is not None:
        _check_model_name(from_file["model"], f"config file {config_file}")
    in_file, in_preset = from_file.pop("model", None), from_preset.pop("model", None)
    model = named or in_file or in_preset or (saved or {}).get("model")
    if model is None:
        raise ConfigError(
            f"no model named and {model_dir} holds no run; name one: `aekit train MODEL` with "
            f"MODEL one of {', '.join(registry.names())}"
        )
    _check_model_name(model, "the command line")
    if saved is not None and model != saved["model"]:
        raise ConfigError(
            f"{model_dir} holds a {saved['model']} model, not {model}; use a new --model-dir"
        )
    return str(model)


def _keep_prob(model: str, source: dict[str, Any], where: str) -> dict[str, Any]:
    """`source` with a drop rate `dropout` turned into fully_connected's `keep_prob`."""
    if model != "fully_connected" or "dropout" not in source:
        return source
    if "keep_prob" in source:
        raise ConfigError(
            f"{where} gives both dropout (drop rate) and keep_prob (keep probability); give one"
        )
    rate = source.pop("dropout")
    if rate is not None:
        Number(most=1)("dropout", rate)
        if rate == 1:
            raise ConfigError("dropout must be below 1 (1 drops every unit), got 1")
        # Rounded: --dropout 0.7 gives 0.3, as --keep-prob 0.3 does, not 0.30000000000000004.
        source["keep_prob"] = round(1 - rate, 12)
    return source


def _names(keys: list[str]) -> str:
    """Setting names for an error message: the first few, odd ones quoted, on one line."""
    shown = [k if k.isidentifier() else repr(k)[:40] for k in keys[:5]]
    return ", ".join(shown) + (f" (and {len(keys) - 5} more)" if len(keys) > 5 else "")


def save(model_dir: str | Path, settings: Mapping[str, Any]) -> None:
    """Write the settings into the model dir (atomically); StorageError if it cannot."""
    path = ensure_dir(model_dir) / HPARAMS_FILE
    with writing(path):
        atomic_write_text(path, json.dumps(dict(settings), indent=2) + "\n")


def _normal(value: Any) -> Any:
    # JSON turns tuples into lists and keeps ints and floats apart: compare as JSON sees them.
    if isinstance(value, tuple | list):
        return [_normal(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value
