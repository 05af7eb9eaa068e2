"""The command line's bounds: settings structures are bounded, outputs checked before writing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aekit.cli import limits
from aekit.errors import ConfigError, StorageError
from aekit.files import check_output_dir, check_output_file, ensure_dir, writing


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
