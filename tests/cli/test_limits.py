"""The command line's bounds: settings structures are bounded, outputs checked before writing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import aekit
from aekit.cli import limits
from aekit.cli.main import main
from aekit.errors import ConfigError, StorageError
from aekit.files import check_output_dir, check_output_file, ensure_dir, writable, writing


def test_shared_objects_count_once_per_use() -> None:
    """What YAML aliases build: the same list used many times, counted at every use."""
    row = [1] * 50
    with pytest.raises(ConfigError, match="more than 2,000 values"):
        limits.check_structure({"exclude_classes": [row] * 50}, "f")  # 2,552 values
    deep: list[Any] = [1]
    for _ in range(1000):
        deep = [deep]
    with pytest.raises(ConfigError, match="deeper"):
        limits.check_structure({"exclude_classes": deep}, "f")
    limits.check_structure({"hidden_units": [1, 2], "x": {"y": [1]}}, "f")


def test_writing_turns_os_errors_into_one_storage_line(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(StorageError, match="cannot write") as info:
        ensure_dir(a_file / "sub")
    assert "\n" not in str(info.value)
    with pytest.raises(StorageError), writing(a_file / "x"):
        (a_file / "x").write_text("")
    with pytest.raises(ConfigError), writing(a_file):
        raise ConfigError("kept as it is")


def test_output_checks_write_nothing(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c.png"
    assert check_output_file("--output", target) == target
    assert check_output_dir("--output", tmp_path / "d" / "e") == tmp_path / "d" / "e"
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="is a directory"):
        check_output_file("--output", tmp_path)


# -- bounds on work, threads and paths, checked before work starts ---------------------------


@pytest.fixture
def unwritable(tmp_path: Path) -> Iterator[Path]:
    """A folder no file can be created in: a chmod'ed one, or read-only /proc/sys as root."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not writable(locked):
            yield locked
        elif Path("/proc/sys").is_dir() and not writable("/proc/sys"):
            yield Path("/proc/sys")  # root writes through modes; procfs's sys refuses anyway
        else:
            pytest.skip("no unwritable folder on this machine")
    finally:
        locked.chmod(0o700)


def test_an_output_that_cannot_be_written_is_found_by_trying(unwritable: Path) -> None:
    with pytest.raises(StorageError, match="is not writable"):
        check_output_dir("--save-images", unwritable / "frames")
    with pytest.raises(StorageError, match="is not writable"):
        check_output_file("--output", unwritable / "sub" / "picture.png")
    assert not (unwritable / "frames").exists()


def test_save_images_from_a_config_file_is_checked_before_training(
    unwritable: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "run.toml"
    config.write_text(f'save_images = "{unwritable / "frames"}"\nepochs = 1\n')
    status = main(["train", "fully_connected", "--dataset", "digits", "--config", str(config),
                   "--model-dir", str(tmp_path / "run")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "--save-images" in err, err
    assert not (tmp_path / "run").exists()  # no checkpoint, settings or events


def test_threads_are_bounded_by_the_cores() -> None:
    cores = os.cpu_count() or 1
    assert aekit.RunConfig(cpu_threads=cores).cpu_threads == cores
    with pytest.raises(aekit.ConfigError, match=f"at most {cores} .the cores of this machine"):
        aekit.RunConfig(cpu_threads=cores + 1)
    with pytest.raises(aekit.ConfigError, match="cpu_threads"):
        aekit.RunConfig(cpu_threads=10_000)


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["reconstruct", "--images", "0"], "--images must be an integer >= 1"),
        (["embed", "--images", "100001"], "--images must be below 100001"),
        (["likelihood", "--samples", "1000001"], "--samples must be below 1000001"),
        (["sample", "--manifold-size", "5000"], "--manifold-size must be below 1001"),
        (["score", "--percentile", "nan"], "--percentile must be a finite number"),
    ],
)
def test_counts_are_bounded_as_the_flags_are_read(
    args: list[str], phrase: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main([*args, "--model-dir", str(tmp_path / "none")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and phrase in err, err


@pytest.mark.slow
def test_likelihood_work_is_bounded_by_samples_times_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = tmp_path / "vae"
    small = ["--epochs", "1", "--hidden-units", "16", "--latent-dim", "2"]
    assert main(["train", "variational", "--dataset", "digits", *small,
                 "--model-dir", str(model_dir)]) == 0  # fmt: skip
    many = np.random.default_rng(0).integers(0, 256, (12_000, 8, 8)).astype(np.uint8)
    np.save(tmp_path / "many.npy", many)  # 2,400 test images
    capsys.readouterr()
    status = main(["likelihood", "--model-dir", str(model_dir), "--dataset",
                   str(tmp_path / "many.npy"), "--samples", "1000000"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1, err
    assert "2,400,000,000 codes" in err and "--samples" in err and "--images" in err
    assert not (model_dir / "eval_likelihood").exists()  # refused before any work


def test_every_registered_model_has_an_activation_count_and_a_new_one_must_add_its_own() -> None:
    from aekit.cli import registry
    from aekit.cli.settings import model_settings

    for name in registry.names():  # the batch-size guard is on for each
        assert limits.activation_count(model_settings(name), (28, 28)) > 28 * 28, name
    with pytest.raises(LookupError, match="no activation count for the new model"):
        limits.activation_count({**model_settings("convolutional"), "model": "new"}, (28, 28))
