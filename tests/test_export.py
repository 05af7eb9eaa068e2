"""export_model: TorchScript and ONNX files that match the eager network, at any batch size."""

from __future__ import annotations

import copy
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from aekit.errors import ConfigError
from aekit.estimator import checkpoint as ckpt
from aekit.export import example_input, export_model, export_spec, read_spec
from aekit.models import ConvolutionalNetwork, FullyConnectedNetwork, ReconstructionNetwork

PARTS = ("encoder", "decoder", "autoencoder")
State = tuple[dict[str, torch.Tensor], list[bool], list[bool]]


def make(kind: str) -> ReconstructionNetwork:
    torch.manual_seed(0)
    if kind == "fc":
        return FullyConnectedNetwork((28, 28), [32, 8])
    return ConvolutionalNetwork((1, 28, 28), [4, 4])


def state(network: torch.nn.Module) -> State:
    """Weights, per-module training flags and requires_grad flags, to compare before/after."""
    weights = {k: v.detach().clone() for k, v in network.state_dict().items()}
    modes = [m.training for m in network.modules()]
    grads = [p.requires_grad for p in network.parameters()]
    return weights, modes, grads


def assert_same_state(network: torch.nn.Module, before: State) -> None:
    weights, modes, grads = state(network)
    old_weights, old_modes, old_grads = before
    assert weights.keys() == old_weights.keys()
    assert all(torch.equal(weights[k], old_weights[k]) for k in weights)
    assert (modes, grads) == (old_modes, old_grads)


def expected(network: ReconstructionNetwork, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """What each exported part must compute, from the eager network in eval mode."""
    net = copy.deepcopy(network).eval()
    with torch.no_grad():
        code = net.encode(x)
        return {
            "encoder": code,
            "decoder": torch.sigmoid(net.decode(code)),
            "autoencoder": torch.sigmoid(net(x)[0]).reshape(x.shape),
        }


def run_exports(
    network: ReconstructionNetwork, out: Path, formats: tuple[str, ...]
) -> dict[str, Path]:
    network.train()  # a caller mid-training: export must not switch it to eval
    before = state(network)
    paths = export_model(network, out, formats=formats)
    assert_same_state(network, before)
    suffixes = [{"torchscript": "pt", "onnx": "onnx"}[f] for f in formats]
    names = {"spec.json", *(f"{part}.{s}" for part in PARTS for s in suffixes)}
    assert set(paths) == names
    assert all(p == out / name for name, p in paths.items())
    assert {p.name for p in out.iterdir()} == names  # no temp files left behind
    return paths


# torch 2.13 deprecates TorchScript; loading it is still what a TorchScript consumer does.
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("kind", ["fc", "conv"])
def test_torchscript_matches_eager_at_another_batch_size(kind: str, tmp_path: Path) -> None:
    network = make(kind)
    paths = run_exports(network, tmp_path, ("torchscript",))
    x = example_input(network, 3)
    want = expected(network, x)
    for part in PARTS:
        loaded = torch.jit.load(str(paths[f"{part}.pt"]))  # type: ignore[no-untyped-call]
        arg = want["encoder"] if part == "decoder" else x
        with torch.no_grad():
            got = loaded(arg)
        torch.testing.assert_close(got, want[part], atol=1e-5, rtol=0)
    assert want["autoencoder"].min() >= 0 and want["autoencoder"].max() <= 1


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fc", "conv"])
def test_onnx_runs_in_onnxruntime_with_a_dynamic_batch(kind: str, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    network = make(kind)
    paths = run_exports(network, tmp_path, ("torchscript", "onnx"))
    x = example_input(network, 5)  # the export's example batch is 2
    want = expected(network, x)
    for part in PARTS:
        session = ort.InferenceSession(
            str(paths[f"{part}.onnx"]), providers=["CPUExecutionProvider"]
        )
        arg = want["encoder"] if part == "decoder" else x
        (got,) = session.run(None, {session.get_inputs()[0].name: arg.numpy()})
        torch.testing.assert_close(torch.from_numpy(got), want[part], atol=1e-5, rtol=0)


def test_missing_onnxscript_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # makes `import onnxscript` fail
    network = make("fc")
    with pytest.raises(ConfigError, match=r"pip install 'aekit\[export\]'.*formats="):
        export_model(network, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written
    paths = export_model(network, tmp_path / "ts", formats=("torchscript",))
    assert sorted(paths) == ["autoencoder.pt", "decoder.pt", "encoder.pt", "spec.json"]


@pytest.mark.parametrize(
    ("formats", "example_batch"), [(("savedmodel",), 2), ((), 2), (("onnx",), 1)]
)
def test_bad_arguments_are_config_errors(
    formats: tuple[str, ...], example_batch: int, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError):
        export_model(make("fc"), tmp_path, formats=formats, example_batch=example_batch)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["classifier", "stacked", "plain"])
def test_networks_without_a_decoder_are_refused_before_writing(kind: str, tmp_path: Path) -> None:
    from aekit.models.classifier import ConvClassifierNetwork
    from aekit.models.stacked import StackedNetwork

    network: torch.nn.Module = torch.nn.Linear(4, 4)
    if kind == "classifier":
        network = ConvClassifierNetwork((1, 8, 8), (2, 2), dense_units=4)
    elif kind == "stacked":
        network = StackedNetwork(64, [8, 4], n_classes=3)
    out = tmp_path / "model" / "export"
    with pytest.raises(ConfigError, match="export needs an autoencoder with encode"):
        export_model(network, out, formats=("torchscript",))  # type: ignore[arg-type]
    assert not (tmp_path / "model").exists()


@pytest.mark.slow
def test_an_export_replaces_the_earlier_one_as_a_whole_set(tmp_path: Path) -> None:
    out = tmp_path / "export"
    export_model(make("fc"), out)
    onnx_before = (out / "encoder.onnx").read_bytes()
    assert (out / "decoder.onnx").is_file()
    paths = export_model(make("conv"), out, formats=("torchscript",))
    # One set: the earlier ONNX files do not linger beside the new TorchScript ones.
    assert sorted(p.name for p in out.iterdir()) == sorted(paths) == [
        "autoencoder.pt", "decoder.pt", "encoder.pt", "spec.json"]  # fmt: skip
    assert not (out / "encoder.onnx").exists() and onnx_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no staging folder left


def test_an_output_holding_other_files_is_refused(tmp_path: Path) -> None:
    """The export replaces its folder whole, so it must not take anyone else's files with it."""
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"holds files that are not an export \(notes.txt\)"):
        export_model(make("fc"), tmp_path, formats=("torchscript",))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.parent.iterdir() if ".tmp-" in p.name) == []


def test_the_command_line_says_its_own_flag_when_onnx_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from aekit.cli.main import main

    run = tmp_path / "fc"
    assert main(["train", "fully_connected", "--dataset", "digits", "--epochs", "1",
                 "--hidden-units", "8", "--model-dir", str(run)]) == 0  # fmt: skip
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    assert main(["export", "--model-dir", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--format torchscript" in err and "formats=" not in err and len(err.splitlines()) == 1
    assert not (run / "export").exists()
    assert main(["export", "--model-dir", str(run), "--format", "torchscript"]) == 0


# -- spec.json: what each part takes and gives -------------------------------------------


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize(("kind", "x_shape", "code_shape"), [
    ("fc", ["batch", 784], ["batch", 8]),
    ("conv", ["batch", 1, 28, 28], ["batch", 4, 7, 7]),
])  # fmt: skip
def test_the_spec_gives_each_parts_tensors_as_the_files_take_them(
    kind: str, x_shape: list[Any], code_shape: list[Any], tmp_path: Path
) -> None:
    network = make(kind)
    paths = export_model(network, tmp_path, formats=("torchscript",), step=7)
    spec = read_spec(tmp_path)
    assert (
        spec
        == json.loads(paths["spec.json"].read_text())
        == export_spec(network, ("torchscript",), step=7)
    )
    ends = {p: (spec["parts"][p]["inputs"], spec["parts"][p]["outputs"]) for p in PARTS}
    x: dict[str, Any] = {"name": "x", "shape": x_shape, "dtype": "float32", "range": [0, 1]}
    code: dict[str, Any] = {"name": "code", "shape": code_shape, "dtype": "float32", "range": None}
    rebuilt = {**x, "name": "probabilities"}
    for part, (given, taken) in {"encoder": (x, code), "decoder": (code, rebuilt),
                                 "autoencoder": (x, rebuilt)}.items():  # fmt: skip
        (inputs,), (outputs,) = ends[part]
        assert {k: inputs[k] for k in given} == given and {k: outputs[k] for k in taken} == taken
        assert spec["parts"][part]["files"] == [f"{part}.pt"]
        # The files take and give exactly these shapes, at a batch size of their own.
        module = torch.jit.load(str(tmp_path / f"{part}.pt"))  # type: ignore[no-untyped-call]
        with torch.no_grad():
            out = module(torch.rand(3, *inputs["shape"][1:]))
        assert list(out.shape) == [3, *outputs["shape"][1:]]
    assert "pixels / 255" in ends["encoder"][0][0]["preprocessing"]
    made = spec["made_by"]
    assert made["network"] == type(network).__name__ and made["step"] == 7
    assert made["model"] is None and made["settings"] is None  # not known to the library


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny runs trained and exported by the command line: the doc's own, and a table's.

    The convolutional run lives in `runs/convolutional` under the returned "root", as the
    example in docs/export.md expects; its data are 28x28 images, as MNIST's.
    """
    from aekit.cli.main import main

    root = tmp_path_factory.mktemp("exported")
    rng = np.random.default_rng(0)
    np.savez(root / "images.npz", x=rng.integers(0, 256, (60, 28, 28), dtype=np.uint8))
    rows = rng.normal(size=(120, 5)) * [1, 10, 100, 1000, 0.1] + 50  # features of many units
    np.savez(root / "table.npz", X=rows, y=np.zeros(len(rows), dtype=np.int64))
    runs = {
        "conv": ["convolutional", "--dataset", root / "images.npz", "--num-filters", "2,2"],
        "fc": ["fully_connected", "--dataset", root / "images.npz", "--hidden-units", "8"],
        "table": ["fully_connected", "--dataset", root / "table.npz", "--hidden-units", "4,2"],
    }
    dirs = {"conv": root / "runs" / "convolutional", "fc": root / "fc", "table": root / "table"}
    for name, args in runs.items():
        argv = ["train", *map(str, args), "--epochs", "1", "--model-dir", str(dirs[name])]
        assert main(argv) == 0
        assert main(["export", "--model-dir", str(dirs[name])]) == 0
    return {"root": root, **dirs}


@pytest.mark.slow
def test_the_spec_matches_the_onnx_files_and_names_the_run(exported: dict[str, Path]) -> None:
    onnx = pytest.importorskip("onnx")
    for name in ("conv", "fc", "table"):
        spec = read_spec(exported[name] / "export")
        settings = json.loads((exported[name] / "hparams.json").read_text())
        assert spec["made_by"]["settings"] == settings
        assert spec["made_by"]["model"] == settings["model"]
        latest = ckpt.latest_checkpoint(exported[name])
        assert latest is not None and spec["made_by"]["step"] == ckpt.step_of(latest)
        for part in PARTS:
            graph = onnx.load(str(exported[name] / "export" / f"{part}.onnx")).graph
            for key, values in (("inputs", graph.input), ("outputs", graph.output)):
                (declared,) = spec["parts"][part][key]
                (value,) = values
                dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
                assert (value.name, dims) == (declared["name"], declared["shape"]), (name, part)
                elem = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
                assert str(elem) == declared["dtype"]
    assert read_spec(exported["fc"] / "export")["parts"]["encoder"]["inputs"][0]["shape"] == [
        "batch", 784]  # fmt: skip


@pytest.mark.slow
def test_a_tables_spec_takes_rows_in_their_own_units(exported: dict[str, Path]) -> None:
    ort = pytest.importorskip("onnxruntime")
    spec = read_spec(exported["table"] / "export")
    (x,) = spec["parts"]["autoencoder"]["inputs"]
    (out,) = spec["parts"]["autoencoder"]["outputs"]
    assert spec["kind"] == "table" and x["shape"] == ["batch", 5] and x["range"] is None
    assert out["name"] == "reconstruction" and out["range"] is None and x["dtype"] == "float32"
    assert "standard scaling" in x["preprocessing"] and "own units" in x["preprocessing"]
    rows = np.load(exported["root"] / "table.npz")["X"][:20].astype(np.float32)
    session = ort.InferenceSession(
        str(exported["table"] / "export" / "autoencoder.onnx"), providers=["CPUExecutionProvider"]
    )
    (got,) = session.run(None, {x["name"]: rows})
    # The model scales and unscales itself: its rows are in the features' units (a feature of
    # scale 1,000 comes back near its own values, not near the [0, 1] of pixels).
    spread = rows.std(0)
    assert got.shape == rows.shape and (np.abs(got.mean(0) - rows.mean(0)) < 2 * spread).all()


@pytest.mark.slow
def test_the_command_line_tells_the_spec_and_prints_only_the_files(
    exported: dict[str, Path], capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from aekit.cli.main import main

    run = exported["conv"]
    with caplog.at_level(logging.INFO, logger="aekit"):
        assert main(["export", "--model-dir", str(run), "--output", str(run / "again")]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(Path(p).name for p in printed) == sorted(
        f"{part}.{ext}" for part in PARTS for ext in ("pt", "onnx")
    )
    told = [r.getMessage() for r in caplog.records if "spec.json" in r.getMessage()]
    assert told == [f"{run / 'again' / 'spec.json'}: convolutional at step 1, any batch size:"]
    lines = caplog.text
    assert "autoencoder: x float32 [batch, 1, 28, 28] in [0, 1] -> probabilities float32" in lines
    assert "x: pixels / 255 as float32, channels first: (N, 1, 28, 28)" in lines
