"""CSVLogger: the History's records written to a CSV file as training adds them."""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any

from aekit.checks import Text, check_bool, shown
from aekit.errors import ConfigError, InputError, StorageError
from aekit.files import atomic_write_text, check_output_file, os_reason, writing
from aekit.hooks.base import Hook, RunContext


class CSVLogger(Hook):
    """Writes each record (one per epoch) as a row of `path`; a resumed run appends.

    The file is rewritten whole and atomically for every record: a crash leaves the rows
    written before it, and a key that appears later (a metric first evaluated in epoch
    3) gets its column, empty in earlier rows. Only the writing process (rank 0) writes.
    Arguments are checked when the hook is built and the file's place when the run
    begins, so a bad path fails before any step rather than at the first epoch's end.

    Args:
        path: the CSV file; a relative path is taken inside the model dir. Default
            `model_dir/history.csv`.
        append: keep the rows already in the file (False: start it afresh).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, append: bool = True) -> None:
        self.path = _checked_path(path)
        self.append = check_bool("CSVLogger append", append)
        self.rows: list[dict[str, Any]] = []
        self._target: Path | None = None

    def begin(self, context: RunContext) -> None:
        target = self.path if self.path is not None else Path("history.csv")
        if not target.is_absolute():
            target = Path(context.model_dir) / target
        self._target = target
        self.rows = []
        if not context.is_chief:
            return  # only the chief touches the file, the checks' trial file included
        try:
            itself = target.resolve() == Path(context.model_dir).resolve()
        except (OSError, RuntimeError) as exc:  # a symbolic link loop, say
            raise ConfigError(f"CSVLogger path {target} cannot be followed ({exc}); give "
                              "another path") from None  # fmt: skip
        if itself:
            raise ConfigError(
                f"CSVLogger path {target} is the model dir itself; give a file name such as "
                "'history.csv'"
            )
        if target.is_dir():
            raise ConfigError(
                f"CSVLogger path {target} is a directory; give a file name such as "
                f"{target / 'history.csv'}"
            )
        check_output_file("CSVLogger path", target)
        if self.append and target.is_file():
            self.rows = _read_rows(target)

    def after_record(self, context: RunContext, record: dict[str, float]) -> None:
        if not context.is_chief or self._target is None:
            return
        self.rows.append({k: _cell(v) for k, v in record.items()})
        columns: dict[str, None] = {}
        for row in self.rows:
            columns.update(dict.fromkeys(row))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(columns), restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        # `begin` checked the folder; one removed or filled since is still one clear error.
        with writing(self._target):
            self._target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self._target, text.getvalue())
        # The file now holds this hook's rows: a later train call of it adds to them.
        self.append = True


def _checked_path(path: object) -> Path | None:
    """`path` as a Path (None kept), or a ConfigError naming what is wrong with it."""
    if path is None:
        return None
    text = os.fspath(path) if isinstance(path, os.PathLike) else path
    if not isinstance(text, str):
        raise ConfigError(
            f"CSVLogger path must be None, a str or an os.PathLike of str, got {shown(path)}"
        )
    if not text:
        raise ConfigError(
            "CSVLogger path is empty; give a file name such as 'history.csv', or None for "
            "model_dir/history.csv"
        )
    Text()("CSVLogger path", text)
    # Path() drops a trailing slash: "logs/" would silently become a file named "logs".
    if text.endswith(("/", os.sep)):
        raise ConfigError(
            f"CSVLogger path {text!r} names a folder; give a file name such as "
            f"{text + 'history.csv'!r}"
        )
    return Path(text)


def _read_rows(target: Path) -> list[dict[str, Any]]:
    """The rows of a history this hook wrote earlier; anything else is refused untouched."""
    try:
        # utf-8-sig: a file saved again by a spreadsheet may start with a byte-order mark.
        with open(target, newline="", encoding="utf-8-sig") as f:
            lines = [line for line in csv.reader(f) if line]
    except OSError as exc:
        raise StorageError(
            f"cannot read {target} to append to it ({os_reason(exc)}); make it readable, "
            "or give append=False to start it afresh"
        ) from exc
    except UnicodeDecodeError:
        lines, why = [], "not UTF-8 text"
    except csv.Error as exc:
        lines, why = [], f"not CSV: {exc}"
    else:
        if not lines:
            return []  # an empty file: nothing to keep
        why = _problem(lines[0], lines[1:])
    if why:
        raise InputError(
            f"{target} is not a CSV this hook wrote ({why}); move it away, or give "
            "append=False to replace it"
        )
    return [dict(zip(lines[0], line, strict=True)) for line in lines[1:]]


def _problem(header: list[str], body: list[list[str]]) -> str:
    """What keeps header and body from being a history this hook wrote ('' if nothing)."""
    if "step" not in header or "" in header or len(set(header)) != len(header):
        return f"its header {shown(header)} lacks 'step' or repeats or leaves out a name"
    for number, line in enumerate(body, start=1):
        if len(line) != len(header):
            return f"row {number} has {len(line)} fields, the header {len(header)}"
        for cell in line:
            try:
                float(cell or "0")
            except ValueError:
                return f"row {number} holds {shown(cell)}, not a number"
    return ""


def _cell(value: float) -> str:
    # Whole numbers (steps) without ".0"; other values with every digit Python keeps.
    if math.isfinite(value) and value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(value)
