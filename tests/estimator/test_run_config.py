"""RunConfig validation and device resolution."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from aekit import ConfigError, RunConfig


def test_defaults_resolve_to_an_available_device() -> None:
    config = RunConfig()
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert config.torch_device.type == expected


def test_frozen() -> None:
    config = RunConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.model_dir = "x"  # type: ignore[misc]


def test_steps_take_precedence_over_secs() -> None:
    config = RunConfig(save_checkpoints_steps=10)
    assert config.save_checkpoints_secs is None
    assert RunConfig().save_checkpoints_secs == 600.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("save_checkpoints_steps", 0),
        ("save_checkpoints_secs", -1.0),
        ("save_summary_steps", -1),
        ("keep_checkpoint_max", 1.5),
        ("log_step_count_steps", True),
        ("random_seed", "7"),
    ],
)
def test_bad_values_are_refused(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        RunConfig(**{field: value})  # type: ignore[arg-type]


def test_unknown_device_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        RunConfig(device="gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu_is_refused() -> None:
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        RunConfig(device="cuda")
