"""CSVLogger refuses bad arguments when built and a bad target before the first step."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import aekit
from aekit.errors import StorageError
from aekit.hooks import CSVLogger, Hook, RunContext
from tiny import BatchLosses, batches, quiet_estimator, tiny_data, tiny_network, train_epochs


def one_line(exc: pytest.ExceptionInfo[Exception]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def refused_before_training(
    model_dir: Path, logger: CSVLogger, error: type[Exception], match: str
) -> str:
    """Train with `logger`; the run must fail with `error` before its first step."""
    steps = BatchLosses()
    with pytest.raises(error, match=match) as exc:
        train_epochs(quiet_estimator(model_dir), 2, [steps, logger])
    assert steps.losses == []
    return one_line(exc)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"path": 5}, "path must be None, a str or an os.PathLike"),
        ({"path": b"log.csv"}, "path must be None, a str or an os.PathLike"),
        ({"path": ""}, "path is empty; give a file name such as 'history.csv'"),
        ({"path": "log\0.csv"}, "without NUL"),
        ({"path": "logs/"}, "names a folder; give a file name such as 'logs/history.csv'"),
        ({"append": "no"}, "append must be True or False, got 'no'"),
        ({"append": 0}, "append must be True or False, got 0"),
    ],
    ids=["int-path", "bytes-path", "empty", "nul", "folder", "str-append", "int-append"],
)
def test_csv_logger_refuses_bad_arguments_when_built(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(aekit.ConfigError, match=match) as exc:
        CSVLogger(**kwargs)
    one_line(exc)


def test_csv_logger_takes_path_likes_and_numpy_bools(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path / "log.csv", append=np.bool_(False))  # type: ignore[arg-type]
    assert logger.path == tmp_path / "log.csv"
    assert logger.append is False


def test_csv_logger_refuses_a_directory_or_the_model_dir_before_training(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    (run / "logs" / "keep.txt").write_text("mine")
    message = refused_before_training(run, CSVLogger("logs"), aekit.ConfigError, "a directory")
    assert f"give a file name such as {run / 'logs' / 'history.csv'}" in message
    assert (run / "logs" / "keep.txt").read_text() == "mine"
    for model_dir in (".", str(run), "logs/.."):
        refused_before_training(run, CSVLogger(model_dir), aekit.ConfigError, "model dir itself")


def test_csv_logger_refuses_a_folder_it_cannot_create_before_training(tmp_path: Path) -> None:
    (tmp_path / "notes").write_text("a file, not a folder")
    message = refused_before_training(
        tmp_path / "run", CSVLogger(tmp_path / "notes" / "log.csv"), aekit.ConfigError, "notes"
    )
    assert "is a file, not a directory; give another path" in message
    assert (tmp_path / "notes").read_text() == "a file, not a folder"
    if sys.platform == "linux":  # /proc refuses new files whoever asks, root included
        refused_before_training(
            tmp_path / "run", CSVLogger("/proc/aekit/log.csv"), StorageError, "/proc"
        )
    # Only the chief touches the file: another rank's begin neither checks nor reads it.
    other = RunContext(aekit.ModeKeys.TRAIN, tiny_network(), str(tmp_path), is_chief=False)
    CSVLogger(tmp_path / "notes" / "log.csv").begin(other)


JUNK = bytes(range(256)) * 4


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (JUNK, "not UTF-8 text"),
        (b"name,score\nada,1\n", "lacks 'step'"),
        (b"step,loss\n4,0.5\n8\n", "row 2 has 1 fields, the header 2"),
        (b"step,loss\n4,lots\n", "row 1 holds 'lots', not a number"),
    ],
    ids=["binary", "another-csv", "short-row", "text-cell"],
)
def test_csv_logger_refuses_a_history_it_did_not_write_on_resume(
    tmp_path: Path, content: bytes, why: str
) -> None:
    (tmp_path / "history.csv").write_bytes(content)
    message = refused_before_training(tmp_path, CSVLogger(), aekit.InputError, "is not a CSV")
    assert why in message
    assert "move it away, or give append=False to replace it" in message
    assert (tmp_path / "history.csv").read_bytes() == content


class StopAtOnce(Hook):
    """Ends a train call before its first step, so that it records nothing."""

    def after_create_session(self, context: RunContext) -> None:
        context.request_stop()


def test_csv_logger_replaces_an_unreadable_history_when_not_appending(tmp_path: Path) -> None:
    (tmp_path / "history.csv").write_bytes(JUNK)
    logger = CSVLogger(append=False)
    # A call that records nothing writes no row: the junk is still not this hook's to keep.
    quiet_estimator(tmp_path).train(batches(tiny_data()), hooks=[StopAtOnce(), logger], verbose=0)
    assert (tmp_path / "history.csv").read_bytes() == JUNK
    train_epochs(quiet_estimator(tmp_path), 2, [logger])
    train_epochs(quiet_estimator(tmp_path), 3, [logger])  # the same hook then appends
    with open(tmp_path / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["step"] for row in rows] == ["4", "8", "12"]
