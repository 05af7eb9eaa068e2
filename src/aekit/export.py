"""Export a trained ReconstructionNetwork as TorchScript and ONNX files for serving.

Three parts are written: "encoder" (input → code), "decoder" (code → probabilities)
and "autoencoder" (input → probabilities); probabilities are sigmoid(logits), in [0, 1].
Load a `.pt` with `torch.jit.load` and an `.onnx` with onnxruntime; neither unpickles
Python objects.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from aekit import summary
from aekit._io import atomic_write, remove_stale_temporaries
from aekit.errors import ConfigError
from aekit.models.fully_connected import FullyConnectedAutoencoder
from aekit.models.heads import ReconstructionNetwork

FORMATS = {"torchscript": "pt", "onnx": "onnx"}
PARTS = ("encoder", "decoder", "autoencoder")
_ONNX_REGISTRATION_LOGGER = "torch.onnx._internal.exporter._registration"


class _Part(nn.Module):
    """One exported part of `network`: encoder, decoder or autoencoder."""

    def __init__(self, network: ReconstructionNetwork, part: str) -> None:
        super().__init__()
        self.network = network
        self.part = part

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.part == "decoder":
            return torch.sigmoid(self.network.decode(x))
        code = self.network.encode(x)
        if self.part == "encoder":
            return code
        return torch.sigmoid(self.network.decode(code)).reshape(x.shape)


def example_input(network: ReconstructionNetwork, batch: int) -> torch.Tensor:
    """A random input batch in the layout the exported files take."""
    if isinstance(network, FullyConnectedAutoencoder):
        return torch.rand(batch, math.prod(network.input_shape))
    return torch.rand(batch, *network.image_shape)


def export_model(
    network: ReconstructionNetwork,
    out_dir: str | Path,
    formats: Sequence[str] = ("torchscript", "onnx"),
    example_batch: int = 2,
) -> dict[str, Path]:
    """Write `<part>.pt` and/or `<part>.onnx` for each part into `out_dir`; return their paths.

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
    if "onnx" in formats:
        _require_onnx()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)  # left by an export that was killed mid-write

    net = copy.deepcopy(network).cpu().eval().requires_grad_(False)
    x = example_input(net, example_batch)
    x_check = example_input(net, example_batch + 1)
    paths: dict[str, Path] = {}
    # Summaries must not be recorded into the graphs if we run inside a training step.
    with summary.recording(None), torch.no_grad():
        code, code_check = net.encode(x), net.encode(x_check)
        for part in PARTS:
            args, check = ((code,), (code_check,)) if part == "decoder" else ((x,), (x_check,))
            module = _Part(net, part).eval()
            for fmt in formats:
                path = out / f"{part}.{FORMATS[fmt]}"
                if fmt == "torchscript":
                    _save_torchscript(module, args, check, path)
                else:
                    _save_onnx(module, args, path)
                paths[path.name] = path
    return paths


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    # The exporter logs "torchvision is not installed" four times per export; aekit never
    # uses torchvision ops, so those lines are noise.
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ConfigError(
            f"ONNX export needs onnx and onnxscript ({e}); `pip install onnx onnxscript`, "
            "or pass formats=('torchscript',)"
        ) from e


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
            r"aekit\.models\.heads",
        )
        traced = torch.jit.trace(module, args, check_inputs=[args, check])  # type: ignore[no-untyped-call]
        atomic_write(path, lambda f: torch.jit.save(traced, f))


def _save_onnx(module: _Part, args: tuple[torch.Tensor], path: Path) -> None:
    with warnings.catch_warnings(), _quiet(_ONNX_REGISTRATION_LOGGER):
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
            output_names=["code" if module.part == "encoder" else "probabilities"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
    if program is None:  # only the legacy exporter returns None
        raise RuntimeError("torch.onnx.export returned no program")
    data = program.model_proto.SerializeToString()
    atomic_write(path, lambda f: f.write(data))
