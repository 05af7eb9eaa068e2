"""A run's settings: defaults, the model dir's saved hparams.json, a config file, and flags.

Later sources win: a model's defaults, then what the model dir saved, then the
config file (TOML or YAML), then the flags given. On a model dir that already
holds a run, a setting that would change the model is refused; only the keys in
`RESUMABLE` may change between runs (the learning rates among them: lowering the rate of
a run by hand is a step decay). Paths (data dir, data set file, save-images) are
stored absolute, so that a run's commands work from any working directory.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from aekit.cli import limits, registry
from aekit.data.sources import DATASET_NAMES
from aekit.errors import ConfigError
from aekit.files import atomic_write_text, ensure_dir, os_reason, writing

HPARAMS_FILE = "hparams.json"
RESUMABLE = frozenset(
    {
        "epochs",
        "device",
        "data_dir",
        "save_images",
        "log_every",
        "clip_grad_norm",
        "learning_rate",
        "pretrain_learning_rate",
    }
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
    "binarize": None,
    "label_column": None,
}


class _Refused(Exception):
    """A YAML structure refused while it is composed, before it is built."""


class _SettingsLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing aliases (`*name`) and deep nesting as it composes.

    An alias can expand a few bytes into gigabytes, and PyYAML composes nested flow
    collections recursively (seconds for a few thousand `[`): both stop at the first step.
    """

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event: Any = self.peek_event()  # type: ignore[no-untyped-call]
            raise _Refused(f"uses the YAML alias *{event.anchor}; write the value out instead")
        if self.depth >= limits.MAX_SETTINGS_DEPTH:
            raise _Refused(
                f"nests lists or tables deeper than {limits.MAX_SETTINGS_DEPTH} levels; "
                "settings are numbers, strings or lists of numbers"
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
    unknown = sorted(set(data) - set(known) - {"example_shape"})
    if unknown:
        raise ConfigError(
            f"{path} holds {_names(unknown)}, not settings of the {data['model']} model; "
            "restore the file or use a new --model-dir"
        )
    settings = {**known, **data}
    check_values(settings, source)
    return settings


def model_settings(model: str) -> dict[str, Any]:
    """Every setting of `model` with its default."""
    entry = registry.get(model)
    return {"model": model, **RUN_DEFAULTS, **entry.training_defaults, **entry.defaults}


def _check_model_name(model: Any, source: str) -> None:
    if not isinstance(model, str):
        raise ConfigError(
            f'model in {source} must be a model name such as "fully_connected", got {_show(model)}'
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
    if from_file.get("model") is not None:
        _check_model_name(from_file["model"], f"config file {config_file}")
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
            f"no model named and {model_dir} holds no run; name one: `aekit train MODEL` with "
            f"MODEL one of {', '.join(registry.names())}"
        )
    _check_model_name(model, "the command line")
    if saved is not None and model != saved["model"]:
        raise ConfigError(
            f"{model_dir} holds a {saved['model']} model, not {model}; use a new --model-dir"
        )
    settings = model_settings(model)
    flags = {k: v for k, v in given.items() if v is not None}
    requested = {
        **_keep_prob(model, from_preset, f"preset {preset}"),
        **_keep_prob(model, from_file, f"config file {config_file}"),
        **_keep_prob(model, flags, "the command line"),
    }
    absolute_paths(requested)  # before comparing with the saved (absolute) paths
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
                    f"{model_dir} was trained with {key}={_show(saved.get(key))}, this command "
                    f"asks for {_show(value)}; drop the setting or use a new --model-dir"
                )
    settings.update(requested)
    check_values(settings)
    return absolute_paths(settings)


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
        _number(most=1)("dropout", rate)
        if rate == 1:
            raise ConfigError("dropout must be below 1 (1 drops every unit), got 1")
        # Rounded: --dropout 0.7 gives 0.3, as --keep-prob 0.3 does, not 0.30000000000000004.
        source["keep_prob"] = round(1 - rate, 12)
    return source


def absolute_paths(settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` with the data dir, a data set path and save-images made absolute.

    Relative paths are read from the working directory; saved absolute, they keep their
    meaning when the run's commands are run from elsewhere.
    """
    for key in ("data_dir", "save_images", "dataset"):
        value = settings.get(key)
        if isinstance(value, str) and value and (key != "dataset" or _is_data_path(value)):
            settings[key] = os.path.abspath(os.path.expanduser(value))
    return settings


def _is_data_path(dataset: str) -> bool:
    # As aekit.data.sources reads it: not a name, and a path that exists or looks like one
    # (a misspelt name stays a name, so that its error lists the names).
    if dataset in DATASET_NAMES:
        return False
    return any(c in dataset for c in "/\\.~") or os.path.exists(dataset)


# What each setting must be, checked before anything is loaded or written; the models
# check their own finer rules (a keep probability, say) when they are built. Sizes that
# allocate (layer widths, classes) are bounded together when the network is built: its
# constructor counts the parameters on the meta device first (aekit.models.memory).
Check = Callable[[str, Any], None]
MAX_LIST = 64  # layers, filters, pretraining rates: real runs use a handful
MAX_EXCLUDED = 1_000
MAX_TEXT = 4096


def _integer(least: int, below: int = 2**31) -> Check:
    # Counts stay below 2**31 by default: steps and batch sizes reach torch as int64 products.
    def check(key: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"{key} must be an integer >= {least}, got {_show(value)}")
        if value >= below:
            raise ConfigError(f"{key} must be below {below}, got {_show(value)}; give less")

    return check


def _number(strictly_positive: bool = False, most: float | None = None) -> Check:
    def check(key: str, value: Any) -> None:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or value < 0 or (strictly_positive and value == 0):
            bound = "> 0" if strictly_positive else ">= 0"
            raise ConfigError(f"{key} must be a finite number {bound}, got {_show(value)}")
        if most is not None and value > most:
            raise ConfigError(f"{key} must be at most {most:g}, got {_show(value)}")

    return check


def _text(key: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty string, got {_show(value)}; quote it")
    # Names and paths: the operating system takes no NUL and no path longer than 4096.
    if "\0" in value or len(value) > MAX_TEXT:
        raise ConfigError(
            f"{key} must be a name or path of at most {MAX_TEXT} characters without NUL, "
            f"got {_show(value)}"
        )


def _choice(*choices: str) -> Check:
    def check(key: str, value: Any) -> None:
        if not isinstance(value, str) or value not in choices:
            raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {_show(value)}")

    return check


def _flag(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {_show(value)}")


def _sizes(key: str, value: Any) -> None:
    if (
        not isinstance(value, list | tuple)
        or not 0 < len(value) <= MAX_LIST
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ConfigError(
            f"{key} must be a list of 1 to {MAX_LIST} positive integers like [128, 64, 32], "
            f"got {_show(value)}"
        )


def _sizes_or_auto(key: str, value: Any) -> None:
    if value != "auto":  # fully_connected: chosen once the data are seen
        _sizes(key, value)


def _classes(key: str, value: Any) -> None:
    if (
        not isinstance(value, list | tuple)
        or len(value) > MAX_EXCLUDED
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise ConfigError(
            f"{key} must be a list of integer class labels like [9] or [3, 5], got {_show(value)}"
        )


def _rates(key: str, value: Any) -> None:
    rates = value if isinstance(value, list | tuple) else [value]
    if not 0 < len(rates) <= MAX_LIST:
        raise ConfigError(f"{key} must be a number or a list of 1 to {MAX_LIST} numbers")
    for rate in rates:
        _number(strictly_positive=True)(key, rate)


def _device(key: str, value: Any) -> None:
    _text(key, value)
    if value == "auto":
        return
    try:
        kind: str | None = torch.device(value).type
    except (RuntimeError, ValueError):
        kind = None
    if kind not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{key} must be auto, cpu, cuda or cuda:N, got {_show(value)}")


def _optional(check: Check) -> Check:
    def optional(key: str, value: Any) -> None:
        if value is not None:
            check(key, value)

    return optional


RULES: dict[str, Check] = {
    "model": _text,
    "dataset": _text,
    "data_dir": _optional(_text),
    "seed": _integer(0, below=2**32),
    "device": _device,
    "save_images": _optional(_text),
    "log_every": _optional(_integer(1)),
    "exclude_classes": _optional(_classes),
    "clip_grad_norm": _optional(_number(strictly_positive=True)),
    "epochs": _integer(1),
    "batch_size": _integer(1),
    "pretrain_epochs": _integer(0),
    "dense_units": _integer(1),
    "n_classes": _integer(2),
    "latent_dim": _integer(1),
    "learning_rate": _number(strictly_positive=True),
    "pretrain_learning_rate": _rates,
    "weight_decay": _optional(_number()),
    "noise_factor": _optional(_number()),
    "dropout": _optional(_number(most=1)),  # the probability of dropping a unit
    "keep_prob": _optional(_number(most=1)),  # fully_connected: of keeping one (seed 000)
    "beta": _number(),
    "hidden_units": _sizes_or_auto,
    "num_filters": _sizes,
    "example_shape": _sizes,
    "activation": _text,
    "downsample": _choice("max_pool", "strided"),
    "noise": _choice("masking", "gaussian", "salt_and_pepper"),
    "encoder": _choice("fully_connected", "convolutional"),
    "decoder": _choice("bernoulli", "gaussian"),
    "binarize": _optional(_choice("dynamic", "fixed")),
    "scaling": _choice("auto", "none", "standard", "robust", "minmax"),
    "label_column": _optional(_text),
    "tied_weights": _flag,
}


def check_values(settings: Mapping[str, Any], source: str | None = None) -> None:
    """ConfigError naming the first setting of the wrong type or out of range.

    Every key needs a rule: a setting nobody checks is how a file smuggles in a structure
    that the run would later allocate or serialise.
    """
    for key, value in settings.items():
        rule = RULES.get(key)
        try:
            if rule is None:
                raise ConfigError(f"{key} is not a setting aekit knows; remove it")
            rule(key, value)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (in {source})" if source else str(exc)) from None


def _names(keys: list[str]) -> str:
    """Setting names for an error message: the first few, odd ones quoted, on one line."""
    shown = [k if k.isidentifier() else repr(k)[:40] for k in keys[:5]]
    return ", ".join(shown) + (f" (and {len(keys) - 5} more)" if len(keys) > 5 else "")


def _show(value: Any) -> str:
    """A value for an error message: short, on one line, never a huge structure."""
    text = repr(value) if not isinstance(value, dict | list | tuple) or len(value) < 20 else ""
    if not text or len(text) > 60 or "\n" in text:
        sized = isinstance(value, dict | list | tuple | str)
        text = f"a {type(value).__name__}" + (f" of {len(value):,} items" if sized else "")
    return text


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
