"""Every declared setting walked through a flag, a config file and a resumed run.

A new setting needs an example in EXAMPLES, and then passes or fails these tests with no
other change: flags, config files, hparams.json and resumption all follow its declaration.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from aekit.cli import config, registry
from aekit.cli.main import _parser, main
from aekit.cli.settings import BY_NAME, SETTINGS, model_settings, run_config_args
from aekit.errors import ConfigError
from aekit.estimator import RunConfig
from aekit.estimator import checkpoint as ckpt
from setting_examples import EXAMPLES

FLAGGED = [s for s in SETTINGS if s.flag]


def a_model_taking(name: str) -> str:
    """A model that takes the setting (the first one by name)."""
    return next(model for model in registry.names() if BY_NAME[name].takes(model))


def test_every_setting_with_a_flag_has_an_example() -> None:
    assert sorted(EXAMPLES) == sorted(s.name for s in FLAGGED)
    assert all(s.help for s in SETTINGS)


@pytest.mark.parametrize("setting", FLAGGED, ids=lambda s: s.name)
def test_the_flag_reads_its_value(setting: Any) -> None:
    text, value = EXAMPLES[setting.name]
    model = a_model_taking(setting.name)
    for spelling in {setting.name.replace("_", "-"), setting.name}:
        args = _parser().parse_args(["train", model, f"--{spelling}", text])
        assert getattr(args, setting.name) == value


@pytest.mark.parametrize("setting", FLAGGED, ids=lambda s: s.name)
def test_flag_and_config_file_give_the_same_saved_settings(setting: Any, tmp_path: Path) -> None:
    _, value = EXAMPLES[setting.name]
    model = a_model_taking(setting.name)
    assert value not in (setting.default_for(model), "auto")  # the example must show
    from_flag = config.resolve(model, tmp_path / "a", {setting.name: value})
    for suffix, dump in ((".toml", _toml), (".yaml", yaml.safe_dump)):
        file = tmp_path / f"settings{suffix}"
        file.write_text(dump({setting.name.replace("_", "-"): value}))
        from_file = config.resolve(model, tmp_path / "b", {}, file)
        assert from_file == from_flag, suffix
    assert from_flag[setting.name] == value
    # What training saves is what a later command reads back, checked.
    config.save(tmp_path / "run", {**from_flag, "example_shape": [8, 8]})
    saved = config.saved_settings(tmp_path / "run")
    assert saved is not None and saved[setting.name] == value
    RunConfig(**run_config_args(saved))  # the RunConfig fields it fills take it


@pytest.mark.parametrize("setting", FLAGGED, ids=lambda s: s.name)
def test_a_resumed_run_changes_only_resumable_settings(setting: Any, tmp_path: Path) -> None:
    _, value = EXAMPLES[setting.name]
    model = a_model_taking(setting.name)
    run = tmp_path / "run"
    config.save(run, {**model_settings(model), "example_shape": [8, 8]})
    before = (run / config.HPARAMS_FILE).read_text()
    if setting.resumable:
        assert config.resolve(None, run, {setting.name: value})[setting.name] == value
    else:
        with pytest.raises(ConfigError, match=setting.name):
            config.resolve(None, run, {setting.name: value})
    assert config.resolve(None, run, {})["model"] == model  # and nothing given is fine
    assert (run / config.HPARAMS_FILE).read_text() == before  # resolving writes nothing


def test_a_value_out_of_bounds_is_refused_by_flag_and_by_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["train", "fully_connected", "--epochs", "0"])
    assert "--epochs must be an integer >= 1, got 0" in capsys.readouterr().err
    file = tmp_path / "bad.json.yaml"
    file.write_text(json.dumps({"epochs": 0}))
    with pytest.raises(ConfigError, match="epochs must be an integer >= 1"):
        config.resolve("fully_connected", tmp_path / "m", {}, file)


def _toml(values: dict[str, Any]) -> str:
    def literal(value: Any) -> str:
        if isinstance(value, list):
            return "[" + ", ".join(literal(v) for v in value) + "]"
        return json.dumps(value)

    return "".join(f"{key} = {literal(value)}\n" for key, value in values.items())


def test_flags_win_over_the_config_file_and_it_over_the_defaults_with_falsy_values_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Zero is a value: a layer that dropped falsy values would let the config file's seed 7
    # and 3 pretraining epochs through, and keep the stacked model's default noise 0.5.
    file = tmp_path / "settings.toml"
    file.write_text("seed = 7\npretrain-epochs = 3\nnoise-factor = 0.0\nhidden-units = [16]\n")
    run = tmp_path / "run"
    flags = [
        "--seed",
        "0",
        "--pretrain-epochs",
        "0",
        "--config",
        str(file),
        "--model-dir",
        str(run),
    ]
    assert main(["train", "stacked", "--dataset", "digits", "--epochs", "1", *flags]) == 0
    saved = json.loads((run / config.HPARAMS_FILE).read_text())
    assert (saved["seed"], saved["pretrain_epochs"], saved["noise_factor"]) == (0, 0, 0.0)
    latest = ckpt.latest_checkpoint(run)  # fine-tuning only: 1,437 digits in batches of 100
    assert latest is not None and ckpt.step_of(latest) == 15
    # Resumed with the same file: the flag's 0 is the saved 0, so nothing contradicts the run.
    assert main(["train", "--epochs", "2", *flags]) == 0
    assert json.loads((run / config.HPARAMS_FILE).read_text())["epochs"] == 2
    capsys.readouterr()
