"""export_model: TorchScript and ONNX files that match the eager network, at any batch size."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

from aekit.errors import ConfigError
from aekit.export import example_input, export_model
from aekit.models import ConvolutionalNetwork, FullyConnectedAutoencoder, ReconstructionNetwork

PARTS = ("encoder", "decoder", "autoencoder")
State = tuple[dict[str, torch.Tensor], list[bool], list[bool]]


def make(kind: str) -> ReconstructionNetwork:
    torch.manual_seed(0)
    if kind == "fc":
        return FullyConnectedAutoencoder((28, 28), [32, 8])
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
    names = {f"{part}.{s}" for part in PARTS for s in suffixes}
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
    assert sorted(paths) == ["autoencoder.pt", "decoder.pt", "encoder.pt"]


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


def test_an_export_replaces_the_earlier_one_as_a_whole_set(tmp_path: Path) -> None:
    out = tmp_path / "export"
    export_model(make("fc"), out)
    onnx_before = (out / "encoder.onnx").read_bytes()
    assert (out / "decoder.onnx").is_file()
    paths = export_model(make("conv"), out, formats=("torchscript",))
    # One set: the earlier ONNX files do not linger beside the new TorchScript ones.
    assert sorted(p.name for p in out.iterdir()) == sorted(paths) == [
        "autoencoder.pt", "decoder.pt", "encoder.pt"]  # fmt: skip
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
