"""Untrusted files: pickles are refused without running, names cannot escape the cache dir.

Every payload here would create a marker file if it ran; each test checks it did not.
"""

from __future__ import annotations

import http.server
import json
import pickle
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from aekit.cli import config as run_config
from aekit.cli.main import main
from aekit.data import mnist, sources
from aekit.errors import AekitError, CheckpointError, ConfigError, InputError
from aekit.estimator import checkpoint as ckpt
from tiny import batches, quiet_estimator, tiny_data

SRC = Path(__file__).resolve().parents[2] / "src" / "aekit"


class Payload:
    """Unpickling this calls Path.touch(marker): the file appears only if the pickle runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))


def crafted_checkpoint(path: Path, marker: Path) -> None:
    """A zip checkpoint with the aekit marker and a pickled object inside."""
    torch.save({"format": ckpt.FORMAT, "version": 1, "global_step": 99, "x": Payload(marker)},
               path)  # fmt: skip


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    status = main(list(args))
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert "Traceback" not in err and err.startswith("aekit: error:")
    assert len(err.splitlines()) == 1, err
    return err


def settings_file(model_dir: Path, **changes: object) -> None:
    """The hparams.json `aekit train fully_connected --dataset digits` writes."""
    settings = run_config.resolve("fully_connected", model_dir, {"dataset": "digits"})
    settings["example_shape"] = [8, 8]
    model_dir.mkdir(parents=True, exist_ok=True)
    run_config.save(model_dir, {**settings, **changes})


@pytest.mark.parametrize("command", ["evaluate", "export", "reconstruct"])
def test_model_dir_with_only_a_pickled_checkpoint_is_refused(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = tmp_path / "fc"
    settings_file(model_dir)
    marker = tmp_path / "pwned"
    crafted_checkpoint(model_dir / "ckpt-12.pt", marker)
    args = ["--format", "torchscript"] if command == "export" else []
    err = cli(capsys, command, "--model-dir", str(model_dir), *args)
    assert "can be read" in err
    assert not marker.exists()
    assert sorted(p.name for p in model_dir.iterdir()) == ["ckpt-12.pt", "hparams.json"]


def test_pickled_newest_checkpoint_is_skipped_on_resume(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    est = quiet_estimator(tmp_path)
    est.train(batches(tiny_data()), steps=4)
    marker = tmp_path / "pwned"
    crafted_checkpoint(tmp_path / "ckpt-100.pt", marker)
    (tmp_path / "ckpt-200.pt").write_bytes(pickle.dumps(Payload(marker)))  # a bare pickle
    again = quiet_estimator(tmp_path)
    with caplog.at_level("WARNING", logger="aekit"):
        again.train(batches(tiny_data()), steps=1)
    assert again.global_step == 5  # resumed from ckpt-4, the newest readable one
    assert "ckpt-200.pt" in caplog.text and "ckpt-100.pt" in caplog.text
    assert not marker.exists()


@pytest.mark.parametrize(
    "state",
    [
        {"global_step": "12"},
        {"global_step": -3},
        {"global_step": 1.5},
        {"global_step": 3, "network": [1, 2]},
        {"global_step": 3, "optimizer": "x"},
    ],
    ids=["step-text", "step-negative", "step-float", "network-list", "optimizer-text"],
)
def test_checkpoint_with_the_marker_but_bad_fields_is_refused(
    tmp_path: Path, state: dict[str, object]
) -> None:
    path = tmp_path / "ckpt-3.pt"
    torch.save({"format": ckpt.FORMAT, "version": 1, **state}, path)
    with pytest.raises(CheckpointError, match="delete it to resume from an earlier one"):
        ckpt.load(path)


def _python_rng(state: dict[str, Any]) -> dict[str, Any]:
    rng = dict(state["rng"])
    version, internal, gauss = rng["python"]
    rng["python"] = (version, internal[:10], gauss)  # too short for random.setstate
    return {"rng": rng, "rng_by_rank": [rng]}


def _numpy_rng(state: dict[str, Any]) -> dict[str, Any]:
    rng = {**state["rng"], "numpy": {**state["rng"]["numpy"], "kind": "PCG64"}}
    return {"rng": rng}


CRAFTED: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "lr_scheduler-int": lambda s: {"lr_scheduler": 5},
    "hooks-text": lambda s: {"hooks": "abc"},
    "hook-state-list": lambda s: {"hooks": {"StepCounterHook": [1, 2]}},
    "version-text": lambda s: {"version": "x"},
    "version-negative": lambda s: {"version": -1},
    "grad_scaler-list": lambda s: {"grad_scaler": [1.0]},
    "network-value-text": lambda s: {"network": {**s["network"], "extra": "x"}},
    "network-int-keys": lambda s: {"network": {1: torch.zeros(1)}},
    "optimizer-groups-text": lambda s: {"optimizer": {"state": {}, "param_groups": "x"}},
    "optimizer-params-text": lambda s: {
        "optimizer": {"state": {}, "param_groups": [{"params": "ab"}]}
    },
    "optimizer-state-text-keys": lambda s: {"optimizer": {**s["optimizer"], "state": {"w": {}}}},
    "rng-text": lambda s: {"rng": "x"},
    "rng-torch-short": lambda s: {"rng": {**s["rng"], "torch": torch.zeros(3)}},
    "rng-python-short": _python_rng,
    "rng-python-tensor-version": lambda s: {  # found by the fuzzer: an ambiguous truth value
        "rng": {**s["rng"], "python": (torch.zeros(2), s["rng"]["python"][1], None)}
    },
    "rng-numpy-kind": _numpy_rng,
    "rng_by_rank-empty": lambda s: {"rng_by_rank": []},
    "rng_by_rank-of-text": lambda s: {"rng_by_rank": ["x"]},
    "shuffle_rng-short": lambda s: {"shuffle_rng": torch.zeros(3, dtype=torch.uint8)},
    "shuffle_rng-text": lambda s: {"shuffle_rng": "x"},
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_field_falls_back_to_the_previous_checkpoint(
    tmp_path: Path, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    est = quiet_estimator(tmp_path)
    est.train(batches(tiny_data()), steps=2)
    est.train(batches(tiny_data()), steps=2)
    newest = tmp_path / "ckpt-4.pt"
    state = torch.load(newest, weights_only=True)
    torch.save({**state, **CRAFTED[name](state)}, newest)
    with pytest.raises(CheckpointError) as info:
        ckpt.load(newest)
    text = str(info.value)
    assert "\n" not in text and str(newest) in text, text
    assert "delete it to resume from an earlier one" in text, text
    again = quiet_estimator(tmp_path)
    with caplog.at_level("WARNING", logger="aekit"):
        again.train(batches(tiny_data()), steps=1)
    assert again.global_step == 3  # resumed from ckpt-2, the newest sound one
    assert "ckpt-4.pt" in caplog.text


def test_data_files_with_pickles_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    objects = np.empty(3, dtype=object)
    objects[:] = [Payload(marker)] * 3
    np.save(tmp_path / "x.npy", objects, allow_pickle=True)
    np.savez(tmp_path / "x.npz", x=objects)
    (tmp_path / "raw.npy").write_bytes(pickle.dumps(Payload(marker)))
    for name in ("x.npy", "x.npz", "raw.npy"):
        with pytest.raises(InputError):
            sources.load_npz(tmp_path / name)
    assert not marker.exists()


def test_yaml_config_cannot_build_python_objects(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    config = tmp_path / "run.yaml"
    config.write_text(f"epochs: !!python/object/apply:pathlib.Path.touch ['{marker}']\n")
    with pytest.raises(ConfigError, match="cannot be parsed"):
        run_config.load_config_file(config)
    assert not marker.exists()


def test_crafted_settings_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in [("hidden_units", "16; rm -rf /"), ("example_shape", None), ("seed", "0")]:
        model_dir = tmp_path / key
        settings_file(model_dir, **{key: value})
        if value is None:
            saved = json.loads((model_dir / "hparams.json").read_text())
            del saved[key]
            (model_dir / "hparams.json").write_text(json.dumps(saved))
        assert key in cli(capsys, "evaluate", "--model-dir", str(model_dir))
        assert sorted(p.name for p in model_dir.iterdir()) == ["hparams.json"]


@pytest.mark.parametrize("name", ["../escape.gz", "/tmp/abs.gz", "sub/../../x.gz", "..", ""])
def test_download_names_cannot_leave_the_cache_dir(tmp_path: Path, name: str) -> None:
    info = mnist.DatasetInfo("evil", ("http://127.0.0.1:9/",), {name: "0" * 32}, "")
    cache = tmp_path / "cache" / "evil"
    with pytest.raises(ConfigError, match="bare file name"):
        mnist._download(info, name, cache, list(info.mirrors), [name], None)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


@pytest.fixture
def hostile_server() -> Iterator[str]:
    """A local HTTP server that suggests its own file name and redirects to a local file."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.endswith("redirect.gz"):
                self.send_response(302)
                self.send_header("Location", "file:///etc/passwd")
                self.end_headers()
                return
            body = b"not the data set"
            self.send_response(200)
            self.send_header("Content-Disposition", 'attachment; filename="../../escape.gz"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_a_server_chooses_neither_the_file_name_nor_a_local_file(
    tmp_path: Path, hostile_server: str
) -> None:
    cache = tmp_path / "cache" / "evil"
    for name in ("train-images-idx3-ubyte.gz", "redirect.gz"):
        info = mnist.DatasetInfo("evil", (hostile_server,), {name: "0" * 32}, "")
        with pytest.raises(AekitError, match="could not download"):
            mnist._download(info, name, cache, [hostile_server], [name], None)
    # Wrong checksum and a refused redirect: nothing kept, nothing written anywhere else.
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def _safe_yaml(path: Path, line: str) -> bool:
    """Whether `line` is yaml.load with a Loader of the module that derives from SafeLoader."""
    import importlib

    import yaml

    match = re.search(r"yaml\.load\([^)]*Loader=(\w+)\)", line)
    if match is None or match.group(1) == "Loader":
        return False
    module = ".".join(("aekit", *path.relative_to(SRC).with_suffix("").parts))
    loader = getattr(importlib.import_module(module), match.group(1), None)
    return isinstance(loader, type) and issubclass(loader, yaml.SafeLoader)


def test_no_code_path_unpickles_user_files() -> None:
    """Loading is torch.load(weights_only=True), np.load(allow_pickle=False), yaml.safe_load."""
    risky = re.compile(
        r"pickle\.loads?\(|weights_only\s*=\s*False|allow_pickle\s*=\s*True|yaml\.load\(|"
        r"yaml\.unsafe_load|marshal\.loads?|(?<![.\w])eval\(|(?<![.\w])exec\("
    )
    loads = re.compile(r"torch\.load\((?![^)]*weights_only=True)")
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if (risky.search(line) or loads.search(line)) and not _safe_yaml(path, line):
                offenders.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert offenders == []
    assert "torch.load(path, map_location=map_location, weights_only=True)" in (
        (SRC / "estimator" / "checkpoint.py").read_text()
    )
