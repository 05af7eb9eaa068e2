"""Export a trained ReconstructionNetwork as TorchScript and ONNX files for serving.

Three parts are written: "encoder" (input → code), "decoder" (code → probabilities)
and "autoencoder" (input → probabilities); probabilities are sigmoid(logits), in [0, 1].
A table's model (aekit.anomaly.tabular) outputs a "reconstruction" in the features' own
units instead. Beside them `spec.json` says what each part takes and gives (names, shapes
with the batch axis named, dtypes, value ranges, preprocessing) and which model made them.
Load a `.pt` with `torch.jit.load` and an `.onnx` with onnxruntime; neither unpickles
Python objects.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import shutil
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

import aekit
from aekit import summary
from aekit.errors import ConfigError, StorageError
from aekit.files import (
    atomic_write,
    atomic_write_text,
    ensure_dir,
    os_reason,
    publish_dir,
    remove_stale_temporaries,
    storage_error,
)
from aekit.models.heads import ReconstructionNetwork

FORMATS = {"torchscript": "pt", "onnx": "onnx"}
PARTS = ("encoder", "decoder", "autoencoder")
SPEC_FILE = "spec.json"
_ONNX_REGISTRATION_LOGGER = "torch.onnx._internal.exporter._registration"


class _Part(nn.Module):
    """One exported part of `network`: encoder, decoder or autoencoder."""

    def __init__(self, network: ReconstructionNetwork, part: str) -> None:
        super().__init__()
        self.network = network
        self.part = part

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.part == "decoder":
            return self.network.output_of(self.network.decode(x))
        code = self.network.encode(x)
        if self.part == "encoder":
            return code
        return self.network.output_of(self.network.decode(code)).reshape(x.shape)


def example_input(network: ReconstructionNetwork, batch: int) -> torch.Tensor:
    """A random input batch in the layout the exported files take."""
    return torch.rand(batch, *network.example_shape)


def export_model(
    network: ReconstructionNetwork,
    out_dir: str | Path,
    formats: Sequence[str] = ("torchscript", "onnx"),
    example_batch: int = 2,
    settings: Mapping[str, Any] | None = None,
    step: int | None = None,
) -> dict[str, Path]:
    """Write `<part>.pt` and/or `<part>.onnx` for each part into `out_dir`; return their paths.

    `spec.json` goes beside them (`export_spec`; `settings` and `step` are the run's, when
    known) and is among the paths returned; `read_spec` loads it back.

    The files are published as one set: written into a new folder beside `out_dir`, then
    swapped in for it, so `out_dir` never mixes files of two exports and a killed export
    leaves the earlier one as it was. `out_dir` may only hold an earlier export.
    The network is copied, so the caller's module keeps its mode, device and weights.
    ONNX files take any batch size; TorchScript files are traced, and checked on a
    second batch size so that a graph frozen to one batch size is an error.
    """
    formats = tuple(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ConfigError(f"formats must be some of {sorted(FORMATS)}, got {list(formats)!r}")
    if isinstance(example_batch, bool) or not isinstance(example_batch, int) or example_batch < 2:
        # torch.export treats sizes 0 and 1 as constants, so batch 1 cannot stay dynamic.
        raise ConfigError(f"example_batch must be an integer >= 2, got {example_batch!r}")
    _require_autoencoder(network)
    if "onnx" in formats:
        _require_onnx()
    out = Path(out_dir)
    for directory in (out, out.parent):
        try:  # what an export killed mid-write left (files of older versions, folders)
            remove_stale_temporaries(directory)
        except OSError as exc:
            raise storage_error(directory, exc) from exc
    _require_export_dir(out)
    ensure_dir(out.parent)
    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        staging.mkdir(exist_ok=True)
        names = _write_parts(network, staging, formats, example_batch)
        spec = export_spec(network, formats, settings, step)
        # Inside the staged folder: published with the model files, as one set.
        atomic_write_text(staging / SPEC_FILE, json.dumps(spec, indent=2) + "\n")
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):  # name the export, not the folder it was staged in
            raise StorageError(
                f"cannot write the export {out} ({os_reason(exc)}); free disk space or make "
                f"{out.parent} writable (an earlier export there is untouched)"
            ) from exc
        raise
    publish_dir(staging, out)
    return {name: out / name for name in [*names, SPEC_FILE]}


def _write_parts(
    network: ReconstructionNetwork, folder: Path, formats: tuple[str, ...], example_batch: int
) -> list[str]:
    """Write every part in every format into `folder`; returns the file names."""
    net = _frozen_copy(network)
    x = example_input(net, example_batch)
    x_check = example_input(net, example_batch + 1)
    names: list[str] = []
    # Summaries must not be recorded into the graphs if we run inside a training step.
    with summary.recording(None), torch.no_grad():
        code, code_check = net.encode(x), net.encode(x_check)
        for part in PARTS:
            args, check = ((code,), (code_check,)) if part == "decoder" else ((x,), (x_check,))
            module = _Part(net, part).eval()
            for fmt in formats:
                path = folder / f"{part}.{FORMATS[fmt]}"
                if fmt == "torchscript":
                    _save_torchscript(module, args, check, path)
                else:
                    _save_onnx(module, args, path, _output_name(net))
                names.append(path.name)
    return names


def _frozen_copy(network: ReconstructionNetwork) -> ReconstructionNetwork:
    # A copy, so that the caller's module keeps its mode, device and weights.
    return copy.deepcopy(network).cpu().eval().requires_grad_(False)


def _require_autoencoder(network: object) -> None:
    # Classifiers and the stacked model have no decoder: refuse them before writing anything.
    has = [m for m in ("encode", "decode") if callable(getattr(network, m, None))]
    shaped = any(hasattr(network, a) for a in ("image_shape", "input_shape"))
    if not isinstance(network, nn.Module) or len(has) < 2 or not shaped:
        raise ConfigError(
            f"cannot export a {type(network).__name__}: export needs an autoencoder with "
            "encode() and decode() (fully_connected, convolutional, variational, ...); "
            "classifiers and the stacked model have no decoder to export"
        )


_EXPORT_FILES = frozenset(
    {SPEC_FILE, *(f"{part}.{ext}" for part in PARTS for ext in FORMATS.values())}
)


def _require_export_dir(out: Path) -> None:
    # The whole folder is replaced: it must not hold anything but an earlier export.
    if out.exists() and not out.is_dir():
        raise ConfigError(f"export output {out} is a file; pass a folder (new or empty)")
    if not out.is_dir():
        return
    foreign = sorted(p.name for p in out.iterdir() if p.name not in _EXPORT_FILES)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ConfigError(
            f"export output {out} holds files that are not an export ({shown}); the export "
            "replaces the whole folder, so pass a new or empty one"
        )


# The exporter logs "torchvision is not installed" four times per export; aekit never
# uses torchvision ops, so those lines are noise. onnxscript's optimizer and onnx_ir's passes
# log every rewrite at INFO (about 30 lines a model); their warnings and errors still show.
_QUIETED = {
    _ONNX_REGISTRATION_LOGGER: logging.ERROR,
    "onnxscript": logging.WARNING,
    "onnx_ir": logging.WARNING,
}


@contextlib.contextmanager
def _quiet(levels: dict[str, int]) -> Iterator[None]:
    """Raise each named logger to at least its level while inside."""
    loggers = {logging.getLogger(name): level for name, level in levels.items()}
    before = {logger: logger.level for logger in loggers}
    for logger, level in loggers.items():
        logger.setLevel(max(level, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        for logger, level in before.items():
            logger.setLevel(level)


def onnx_missing() -> str | None:
    """What is missing for ONNX export (the import error), or None when it can run."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        return str(e)
    return None


def _require_onnx() -> None:
    missing = onnx_missing()
    if missing is not None:
        raise ConfigError(
            f"ONNX export needs onnx and onnxscript ({missing}); `pip install 'aekit[export]'`, "
            "or pass formats=('torchscript',)"
        )


def _save_torchscript(
    module: nn.Module, args: tuple[torch.Tensor], check: tuple[torch.Tensor], path: Path
) -> None:
    with warnings.catch_warnings():
        # torch 2.13 deprecates TorchScript, but it is still the format torch.jit.load serves.
        warnings.filterwarnings(
            "ignore", r"`torch\.jit\.(trace|trace_method|save)` is deprecated", DeprecationWarning
        )
        # as_images() checks the per-example size with a Python bool; that size is fixed,
        # so the constant is right (and check_inputs re-traces with another batch size).
        warnings.filterwarnings(
            "ignore",
            "Converting a tensor to a Python boolean",
            torch.jit.TracerWarning,  # type: ignore[attr-defined]
            r"aekit\.models\.",
        )
        traced = torch.jit.trace(module, args, check_inputs=[args, check])  # type: ignore[no-untyped-call]
        atomic_write(path, lambda f: torch.jit.save(traced, f))


def _save_onnx(module: _Part, args: tuple[torch.Tensor], path: Path, output: str) -> None:
    with warnings.catch_warnings(), _quiet(_QUIETED):
        # torch.export deep-copies pytree LeafSpecs, which typing_extensions reports as
        # deprecated use inside torch itself; nothing in our call can avoid it.
        warnings.filterwarnings(
            "ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning
        )
        program = torch.onnx.export(
            module,
            args,
            dynamo=True,
            input_names=["code" if module.part == "decoder" else "x"],
            output_names=["code" if module.part == "encoder" else output],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
    if program is None:  # only the legacy exporter returns None
        raise RuntimeError("torch.onnx.export returned no program")
    data = program.model_proto.SerializeToString()
    atomic_write(path, lambda f: f.write(data))


# --- spec.json: what each part takes and gives, and what made it ------------------------

BATCH_AXIS = "batch"
"""The name of every tensor's first axis in the spec, as in the ONNX files' dynamic shapes."""


def export_spec(
    network: ReconstructionNetwork,
    formats: Sequence[str] = ("torchscript", "onnx"),
    settings: Mapping[str, Any] | None = None,
    step: int | None = None,
) -> dict[str, Any]:
    """What `export_model` writes as `spec.json`, without writing anything.

    Shapes and dtypes come from running each part on the input the export traces with; ranges
    and preprocessing from the kind of network; `settings` and `step` name the run.
    """
    _require_autoencoder(network)
    with summary.recording(None), torch.no_grad():
        return _spec(_frozen_copy(network), tuple(formats), settings, step)


def read_spec(out_dir: str | Path) -> dict[str, Any]:
    """The spec that an export wrote into `out_dir`."""
    path = Path(out_dir) / SPEC_FILE
    try:
        spec: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path} ({exc}); export the model again") from None
    return spec


def describe_spec(spec: Mapping[str, Any]) -> list[str]:
    """A few lines for people: each part's input and output, then how to prepare `x`."""
    made, parts = spec["made_by"], spec["parts"]
    at = "" if made.get("step") is None else f" at step {made['step']}"
    lines = [f"{made.get('model') or made['network']}{at}, any batch size:"]
    for part in PARTS:
        (given,), (taken,) = parts[part]["inputs"], parts[part]["outputs"]
        lines.append(f"  {part}: {_shown(given)} -> {_shown(taken)}")
    return [*lines, f"  x: {parts['encoder']['inputs'][0]['preprocessing']}"]


def _shown(tensor: Mapping[str, Any]) -> str:
    bounds = tensor.get("range")
    within = "" if bounds is None else f" in [{bounds[0]:g}, {bounds[1]:g}]"
    return f"{tensor['name']} {tensor['dtype']} [{', '.join(map(str, tensor['shape']))}]{within}"


def _is_table(network: nn.Module) -> bool:
    from aekit.anomaly.tabular import TabularNetwork  # the anomaly package is heavier

    return isinstance(network, TabularNetwork)


def _output_name(network: nn.Module) -> str:
    # A table's model gives rows in the features' units, which are not probabilities.
    return "reconstruction" if _is_table(network) else "probabilities"


def _spec(
    net: ReconstructionNetwork,
    formats: tuple[str, ...],
    settings: Mapping[str, Any] | None,
    step: int | None,
) -> dict[str, Any]:
    table = _is_table(net)
    pixels = None if table else (0.0, 1.0)
    x = example_input(net, 2)
    code = net.encode(x)
    given = _tensor("x", x, pixels, f"{'rows' if table else 'images'} to encode or rebuild")
    given["preprocessing"] = _preprocessing(net, x, settings)
    posterior = " (the posterior mean)" if callable(getattr(net, "posterior", None)) else ""
    coded = _tensor("code", code, None, f"the code of each example{posterior}")
    meaning = "each row rebuilt, in the features' own units" if table else (
        "each pixel's intensity in [0, 1] (times 255: 8-bit pixels)")  # fmt: skip
    ends = {"encoder": (given, coded)}
    for part, source, arg in (("decoder", coded, code), ("autoencoder", given, x)):
        output = _Part(net, part)(arg)  # the shape the traced file gives
        ends[part] = (source, _tensor(_output_name(net), output, pixels, meaning))
    files = {part: [f"{part}.{FORMATS[f]}" for f in formats] for part in PARTS}
    return {
        "spec_version": 1,
        "kind": "table" if table else "images",
        "parts": {
            part: {"files": files[part], "inputs": [takes], "outputs": [gives]}
            for part, (takes, gives) in ends.items()
        },
        "note": "ONNX files name their input and output as here and take any batch size; "
        "a TorchScript file takes the same tensor as its one argument",
        "made_by": {
            "model": None if settings is None else settings.get("model"),
            "network": type(net).__name__,
            "step": step,
            "aekit_version": aekit.__version__,
            "settings": None if settings is None else dict(settings),
        },
    }


def _tensor(
    name: str, value: torch.Tensor, bounds: tuple[float, float] | None, meaning: str
) -> dict[str, Any]:
    return {
        "name": name,
        "shape": [BATCH_AXIS, *value.shape[1:]],
        "dtype": str(value.dtype).removeprefix("torch."),
        "range": None if bounds is None else list(bounds),  # None: any finite number
        "meaning": meaning,
    }


def _preprocessing(
    net: ReconstructionNetwork, x: torch.Tensor, settings: Mapping[str, Any] | None
) -> str:
    """How to turn a user's examples into `x`, in words."""
    features, settings = x.shape[1:].numel(), settings or {}
    if _is_table(net):
        return (
            f"none: rows of {features} float features in their own units, columns in the "
            f"training table's order; the model applies {settings.get('scaling') or 'its'} "
            "scaling (fitted on the training rows) itself"
        )
    images = "(N, {}, {}, {})".format(*net.image_shape)
    layout = f"channels first: {images}"
    if x.dim() == 2:  # a fully-connected model takes each image flattened
        layout = f"images {images} flattened: x.reshape(N, {features})"
    how = f"pixels / 255 as float32, {layout}"
    if settings.get("binarize"):  # evaluation also draws 0/1 pixels (seed 0)
        how += f"; trained on 0/1 pixels drawn with the intensity as p ({settings['binarize']})"
    return how
