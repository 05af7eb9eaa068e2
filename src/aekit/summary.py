"""TensorBoard summaries: record from anywhere in a step, written by the Estimator.

A model_fn or hook calls `summary.scalar`, `summary.histogram` or `summary.image`.
Those calls cost nothing unless the Estimator is recording the current step (every
`save_summary_steps`); then the values are kept and written to the model_dir's
event files at that step. `should_record()` lets a model_fn skip work that only
feeds summaries.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from aekit.errors import StorageError
from aekit.files import process_running

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

Kind = Literal["scalar", "histogram", "image"]
_log = logging.getLogger("aekit")


@dataclass
class Recorder:
    """Summaries recorded during one step, in the order they were made."""

    records: list[tuple[Kind, str, torch.Tensor | float]] = field(default_factory=list)


# The recorder of the summary step being run, or None. A plain module global, not a
# context variable: torch.compile reads it as a constant (None in the compiled step,
# which never records), where reading a ContextVar would split the graph.
_active: Recorder | None = None


@contextlib.contextmanager
def recording(recorder: Recorder | None) -> Iterator[Recorder | None]:
    """Make `recorder` collect the summary calls made inside the block."""
    global _active
    previous, _active = _active, recorder
    try:
        yield recorder
    finally:
        _active = previous


def should_record() -> bool:
    """Whether summary calls made now will be written."""
    return _active is not None


def _record(kind: Kind, name: str, value: torch.Tensor | float) -> None:
    recorder = _active
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


class WatchedActivation(torch.nn.Module):
    """Base of modules whose output is an activation that summary steps record."""


# Modules whose outputs `watch_activations` records: aekit's own and torch's activations.
ACTIVATION_MODULES: tuple[type[torch.nn.Module], ...] = (
    WatchedActivation,
    torch.nn.ReLU,
    torch.nn.ReLU6,
    torch.nn.LeakyReLU,
    torch.nn.ELU,
    torch.nn.GELU,
    torch.nn.SiLU,
    torch.nn.Tanh,
    torch.nn.Sigmoid,
    torch.nn.Softplus,
)


@contextlib.contextmanager
def watch_activations(network: torch.nn.Module, recorder: Recorder) -> Iterator[None]:
    """Record each activation module's output (histogram, fraction of zeros) in the block.

    Forward hooks exist only inside the block, so the steps that record nothing run the
    network as it is (one graph under torch.compile).
    """

    def hook(name: str) -> Any:
        def record(module: torch.nn.Module, inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                value = output.detach()
                recorder.records.append(("histogram", f"activations/{name}", value))
                zeros = (value == 0).float().mean()
                recorder.records.append(("scalar", f"zero_fraction/{name}", zeros))

        return record

    handles = [
        module.register_forward_hook(hook(name.replace(".", "/")))
        for name, module in network.named_modules()
        if isinstance(module, ACTIVATION_MODULES)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class EventWriters:
    """One TensorBoard writer per sub-directory of a model_dir, opened on first use.

    A disk that fills up or turns read-only is a StorageError raised here, in the
    caller's thread: TensorBoard writes from a thread of its own, whose errors would
    otherwise only print a traceback.
    """

    def __init__(self, model_dir: str | Path, enabled: bool = True) -> None:
        self.model_dir = Path(model_dir)
        self.enabled = enabled  # False: write nothing (the non-chief ranks of a job)
        self._writers: dict[str, SummaryWriter] = {}
        self._failure: tuple[Path, OSError] | None = None  # set by a writer thread

    def writer(self, subdir: str) -> SummaryWriter:
        """The writer of `model_dir/subdir`."""
        self._raise_failure()
        if subdir not in self._writers:
            self._writers[subdir] = self._open(subdir)
        return self._writers[subdir]

    def restart(self, subdir: str, step: int) -> None:
        """Mark a restart at `step`: TensorBoard drops earlier-written events from `step` on.

        After resuming from a checkpoint older than the last events, the steps after
        it run again; without this mark their summaries would show twice.
        """
        if not self.enabled:
            return
        old = self._writers.pop(subdir, None)
        if old is not None:
            _close_quietly(old)
        self._writers[subdir] = self._open(subdir, purge_step=step)

    def _open(self, subdir: str, purge_step: int | None = None) -> SummaryWriter:
        # Imported here: tensorboard costs about a second to import and many
        # programs (predict-only, tests) never write a summary.
        from torch.utils.tensorboard import SummaryWriter

        directory = self.model_dir / subdir
        try:
            directory.mkdir(parents=True, exist_ok=True)
            # Fail now, in this thread, if the directory takes no new file or no data.
            with tempfile.TemporaryFile(dir=directory, buffering=0) as probe:
                probe.write(b"\0")
                os.fsync(probe.fileno())
            writer = SummaryWriter(str(directory), purge_step=purge_step)
        except OSError as exc:
            raise _storage_error(directory, exc) from exc
        self._guard(writer, directory)
        return writer

    def _guard(self, writer: SummaryWriter, directory: Path) -> None:
        """Make the writer thread record an OSError for us instead of dying with it."""
        try:
            records = writer._get_file_writer().event_writer._async_writer._writer  # type: ignore[no-untyped-call]
            write, flush = records.write, records.flush
        except AttributeError:  # another torch/tensorboard layout: errors stay theirs
            return

        def guarded(call: Any) -> Any:
            def run(*args: Any) -> None:
                if self._failure is not None:
                    return  # the disk failed: drop events until the caller hears of it
                try:
                    call(*args)
                except OSError as exc:
                    self._failure = (directory, exc)

            return run

        records.write, records.flush = guarded(write), guarded(flush)

    def _raise_failure(self) -> None:
        if self._failure is None:
            return
        directory, exc = self._failure
        self._failure = None
        self.close()  # the next use opens fresh files
        raise _storage_error(directory, exc) from exc

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

    def flush(self, strict: bool = True) -> None:
        """Push buffered events to disk; `strict=False` logs a disk error instead of raising it."""
        try:
            for subdir, writer in self._writers.items():
                try:
                    writer.flush()
                except OSError as exc:
                    self._failure = self._failure or (self.model_dir / subdir, exc)
            self._raise_failure()
        except StorageError as exc:
            if strict:
                raise
            _log.warning("%s", exc)

    def close(self) -> None:
        """Flush and close every writer."""
        writers, self._writers = self._writers, {}
        for writer in writers.values():
            _close_quietly(writer)


def _close_quietly(writer: SummaryWriter) -> None:
    try:
        writer.close()
    except OSError as exc:  # a broken disk was already reported, or will be by the caller
        _log.debug("closing an event writer: %s", exc)


def _storage_error(directory: Path, exc: OSError) -> StorageError:
    return StorageError(
        f"cannot write TensorBoard events to {directory} ({exc.strerror or exc}); free disk "
        "space or make the model_dir writable (checkpoints already written are untouched)"
    )


# events.out.tfevents.<time>.<host>.<pid>.<n>, as TensorBoard's writer names its files.
_EVENT_FILE = re.compile(r"^events\.out\.tfevents\.\d+\.(?P<host>.+)\.(?P<pid>\d+)\.\d+")
_RECORD_HEADER = 12  # uint64 length, uint32 masked CRC of the length; then data and its CRC


def repair_event_files(model_dir: str | Path) -> list[Path]:
    """Cut the torn last record off event files whose writer was killed mid-write.

    Only files of processes on this machine that no longer run are touched; a live
    writer's file may end in a record still being written. Returns the files cut.
    """
    root = Path(model_dir)
    if not root.is_dir():
        return []
    host = socket.gethostname()
    repaired = []
    for path in sorted(root.rglob("events.out.tfevents.*")):
        match = _EVENT_FILE.match(path.name)
        if match is None or match["host"] != host or process_running(int(match["pid"])):
            continue
        end = whole_records_end(path)
        if end is not None:
            with open(path, "r+b") as f:
                f.truncate(end)
            _log.info("cut a torn record off %s (its writer was killed mid-write)", path)
            repaired.append(path)
    return repaired


def whole_records_end(path: str | Path) -> int | None:
    """Where the first torn record of an event file starts, or None when all are whole."""
    from tensorboard.summary.writer.record_writer import masked_crc32c

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        offset = 0
        while offset < size:
            header = f.read(_RECORD_HEADER)
            if len(header) < _RECORD_HEADER:
                return offset
            (length,) = struct.unpack("<Q", header[:8])
            (crc,) = struct.unpack("<I", header[8:])
            if crc != masked_crc32c(header[:8]) or offset + _RECORD_HEADER + length + 4 > size:
                return offset
            offset += _RECORD_HEADER + length + 4
            f.seek(offset)
    return None


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
        writer.add_image(name, _viewable_channels(img.unsqueeze(0))[0], step, dataformats="CHW")
    elif img.dim() == 4:
        writer.add_images(name, _viewable_channels(img), step, dataformats="NCHW")
    else:
        raise ValueError(f"summary.image({name!r}) needs HW, CHW or NCHW, got {tuple(img.shape)}")


def _viewable_channels(images: torch.Tensor) -> torch.Tensor:
    """NCHW images with a channel count TensorBoard can show (it takes 1 or 3).

    1 (grey) and 3 (RGB) stay as they are; any other count becomes one grey image per
    example with its channels side by side, (N, 1, H, C*W): no channel is dropped (4 is
    not taken for RGBA) and the tag stays one image per example.
    """
    n, channels, height, width = images.shape
    if channels in (1, 3):
        return images
    return images.permute(0, 2, 1, 3).reshape(n, 1, height, channels * width)
