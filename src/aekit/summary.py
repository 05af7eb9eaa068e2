"""TensorBoard summaries: record from anywhere in a step, written by the Estimator.

A model_fn or hook calls `summary.scalar`, `summary.histogram` or `summary.image`.
Those calls cost nothing unless the Estimator is recording the current step (every
`save_summary_steps`); then the values are kept and written to the model_dir's
event files at that step. `should_record()` lets a model_fn skip work that only
feeds summaries.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

Kind = Literal["scalar", "histogram", "image"]


@dataclass
class Recorder:
    """Summaries recorded during one step, in the order they were made."""

    records: list[tuple[Kind, str, torch.Tensor | float]] = field(default_factory=list)


_active: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar(
    "aekit_summary_recorder", default=None
)


@contextlib.contextmanager
def recording(recorder: Recorder | None) -> Iterator[Recorder | None]:
    """Make `recorder` collect the summary calls made inside the block."""
    token = _active.set(recorder)
    try:
        yield recorder
    finally:
        _active.reset(token)


def should_record() -> bool:
    """Whether summary calls made now will be written."""
    return _active.get() is not None


def _record(kind: Kind, name: str, value: torch.Tensor | float) -> None:
    recorder = _active.get()
    if recorder is not None:
        if isinstance(value, torch.Tensor):
            value = value.detach()
        recorder.records.append((kind, name, value))


def scalar(name: str, value: torch.Tensor | float) -> None:
    """Record a scalar (a 0-d tensor or a number)."""
    _record("scalar", name, value)


def histogram(name: str, values: torch.Tensor) -> None:
    """Record the distribution of a tensor's values."""
    _record("histogram", name, values)


def image(name: str, img: torch.Tensor) -> None:
    """Record an image: HW, CHW, or a NCHW batch shown as a row of images; values in [0, 1]."""
    _record("image", name, img)


class EventWriters:
    """One TensorBoard writer per sub-directory of a model_dir, opened on first use."""

    def __init__(self, model_dir: str | Path, enabled: bool = True) -> None:
        self.model_dir = Path(model_dir)
        self.enabled = enabled  # False: write nothing (the non-chief ranks of a job)
        self._writers: dict[str, SummaryWriter] = {}

    def writer(self, subdir: str) -> SummaryWriter:
        """The writer of `model_dir/subdir`."""
        if subdir not in self._writers:
            # Imported here: tensorboard costs about a second to import and many
            # programs (predict-only, tests) never write a summary.
            from torch.utils.tensorboard import SummaryWriter

            self._writers[subdir] = SummaryWriter(str(self.model_dir / subdir))
        return self._writers[subdir]

    def restart(self, subdir: str, step: int) -> None:
        """Mark a restart at `step`: TensorBoard drops earlier-written events from `step` on.

        After resuming from a checkpoint older than the last events, the steps after
        it run again; without this mark their summaries would show twice.
        """
        if not self.enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        old = self._writers.pop(subdir, None)
        if old is not None:
            old.close()
        self._writers[subdir] = SummaryWriter(str(self.model_dir / subdir), purge_step=step)

    def write_scalars(self, subdir: str, values: dict[str, float], step: int) -> None:
        """Write several scalars at one step."""
        if not self.enabled:
            return
        writer = self.writer(subdir)
        for name, value in values.items():
            writer.add_scalar(name, value, step)

    def write_records(self, subdir: str, recorder: Recorder, step: int) -> None:
        """Write everything a Recorder collected at one step."""
        if not self.enabled:
            return
        writer = self.writer(subdir)
        for kind, name, value in recorder.records:
            if kind == "scalar":
                writer.add_scalar(name, float(value), step)
            elif kind == "histogram":
                assert isinstance(value, torch.Tensor)
                _add_histogram(writer, name, value, step)
            else:
                assert isinstance(value, torch.Tensor)
                _add_image(writer, name, value, step)

    def flush(self) -> None:
        """Push buffered events to disk."""
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        """Flush and close every writer."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


HISTOGRAM_BINS = 30


def _add_histogram(writer: SummaryWriter, name: str, values: torch.Tensor, step: int) -> None:
    # Counted with torch.histc on the tensor's own device: a few hundred microseconds
    # where the writer's own numpy histogram (1,500 edges) takes milliseconds.
    v = values.detach().float().flatten()
    v = v[torch.isfinite(v)]
    if v.numel() == 0:
        return
    stats = torch.stack([v.min(), v.max(), v.sum(), v.square().sum()]).tolist()
    low, high, total, squares = stats
    top = high if high > low else low + 1e-6
    counts = torch.histc(v, bins=HISTOGRAM_BINS, min=low, max=top)
    edges = torch.linspace(low, top, HISTOGRAM_BINS + 1)[1:]
    writer.add_histogram_raw(
        name,
        min=low,
        max=high,
        num=v.numel(),
        sum=total,
        sum_squares=squares,
        bucket_limits=edges.tolist(),
        bucket_counts=counts.tolist(),
        global_step=step,
    )


def _add_image(writer: SummaryWriter, name: str, img: torch.Tensor, step: int) -> None:
    img = img.float().clamp(0, 1).cpu()
    if img.dim() == 2:
        writer.add_image(name, img, step, dataformats="HW")
    elif img.dim() == 3:
        writer.add_image(name, img, step, dataformats="CHW")
    elif img.dim() == 4:
        writer.add_images(name, img, step, dataformats="NCHW")
    else:
        raise ValueError(f"summary.image({name!r}) needs HW, CHW or NCHW, got {tuple(img.shape)}")
