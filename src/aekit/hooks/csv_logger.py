"""CSVLogger: the History's records written to a CSV file as training adds them."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from aekit.files import atomic_write_text
from aekit.hooks.base import Hook, RunContext


class CSVLogger(Hook):
    """Writes each record (one per epoch) as a row of `path`; a resumed run appends.

    The file is rewritten whole and atomically for every record: a crash leaves the rows
    written before it, and a key that appears later (a metric first evaluated in epoch
    3) gets its column, empty in earlier rows. Only the writing process (rank 0) writes.

    Args:
        path: the CSV file; a relative path is taken inside the model dir. Default
            `model_dir/history.csv`.
        append: keep the rows already in the file (False: start it afresh).
    """

    def __init__(self, path: str | Path | None = None, append: bool = True) -> None:
        self.path = Path(path) if path is not None else None
        self.append = append
        self.rows: list[dict[str, Any]] = []
        self._target: Path | None = None

    def begin(self, context: RunContext) -> None:
        target = self.path if self.path is not None else Path("history.csv")
        if not target.is_absolute():
            target = Path(context.model_dir) / target
        self._target = target
        self.rows = []
        if self.append and context.is_chief and target.is_file():
            with open(target, newline="", encoding="utf-8") as f:
                self.rows = list(csv.DictReader(f))
        self.append = True  # a later train call of the same hook adds to this run's rows

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
        self._target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self._target, text.getvalue())


def _cell(value: float) -> str:
    # Whole numbers (steps) without ".0"; other values with every digit Python keeps.
    if math.isfinite(value) and value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(value)
