"""Bad input to `aekit`: one `aekit: error:` line, status 2, and nothing written before it.

Run in-process through `aekit.cli.main.main` on the 8x8 digits and tiny .npz files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import aekit
from aekit.cli import limits
from aekit.cli.main import main
from aekit.data import numpy_input_fn
from refusals import fails


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` with its bytes: what a refused command must not change."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def fc_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("bad") / "fc"
    status = main(
        ["train", "fully_connected", "--dataset", "digits", "--epochs", "1", "--hidden-units",
         "16,4", "--model-dir", str(model_dir)]
    )  # fmt: skip
    assert status == 0
    return model_dir


@pytest.fixture
def run_copy(fc_run: Path, tmp_path: Path) -> Path:
    """A copy of the trained run that a test may edit."""
    return Path(shutil.copytree(fc_run, tmp_path / "copy"))


@pytest.fixture
def unwritable(tmp_path: Path) -> Iterator[Path]:
    """A directory this process may not write in (a chmod'ed one, or /proc/sys as root)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):
            yield locked
        elif Path("/proc/sys").is_dir() and not os.access("/proc/sys", os.W_OK):
            yield Path("/proc/sys")  # root ignores modes; procfs's sys is read-only
        else:
            pytest.skip("no unwritable directory on this machine")
    finally:
        locked.chmod(0o700)


# --- 1. sizes nobody bounded ---------------------------------------------------------------


def test_yaml_aliases_are_refused_without_expanding_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    laughs = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for level in "bcdefghi":
        laughs.append(f"{level}: &{level} [" + ", ".join(["*" + chr(ord(level) - 1)] * 9) + "]")
    config = tmp_path / "laughs.yaml"
    config.write_text("exclude_classes:\n  " + "\n  ".join(laughs) + "\n")
    tracemalloc.start()
    line = fails(capsys, "train", "fully_connected", "--config", config, "--model-dir",
                 tmp_path / "m")  # fmt: skip
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert "alias" in line and str(config) in line
    assert peak < 50 << 20
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("name", "text", "phrase"),
    [
        ("big.yaml", "epochs: 1\n" + "# padding\n" * 10_000, "bytes"),
        ("deep.yaml", "hidden_units: " + "[" * 50 + "1" + "]" * 50 + "\n", "deeper"),
        ("deep.toml", "hidden_units = " + "[" * 50 + "1" + "]" * 50 + "\n", "deeper"),
        ("wide.yaml", "hidden_units: [" + ", ".join(["1"] * 5000) + "]\n", "values"),
        ("types.yaml", "exclude_classes: {a: 1}\n", "exclude_classes"),
        ("model.toml", "model = [1, 2]\n", "model"),
        ("device.yaml", "device: meta\n", "device"),
        ("latent.yaml", "model: variational\nlatent_dim: 1.5\n", "latent_dim"),
        ("tied.yaml", "model: stacked\ntied_weights: 'yes'\n", "tied_weights"),
        ("nul.yaml", 'data_dir: "a\\0b"\n', "data_dir"),
        ("long.toml", f'dataset = "{"x" * 5000}"\n', "dataset"),
    ],
)
def test_config_files_are_bounded_and_type_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, phrase: str
) -> None:
    config = tmp_path / name
    config.write_text(text)
    line = fails(capsys, "train", "fully_connected", "--config", config, "--model-dir",
                 tmp_path / "m")  # fmt: skip
    assert phrase in line
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("model", "flags", "named"),
    [
        ("fully_connected", ["--hidden-units", "1000000000"], "hidden_units"),
        ("fully_connected", ["--hidden-units", "100000,100000"], "hidden_units"),
        ("variational", ["--latent-dim", "1000000000"], "latent_dim"),
        ("convolutional", ["--num-filters", "100000"], "num_filters"),
        ("classifier", ["--dense-units", "1000000000"], "dense_units"),
        ("stacked", ["--hidden-units", "8", "--n-classes", "1000000000"], "n_classes"),
    ],
)
def test_networks_too_large_are_refused_before_anything_is_allocated(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    model: str,
    flags: list[str],
    named: str,
) -> None:
    tracemalloc.start()
    line = fails(capsys, "train", model, "--dataset", "digits", *flags, "--model-dir",
                 tmp_path / "m")  # fmt: skip
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert "parameters" in line and named in line and "more than this machine's" in line
    assert peak < 200 << 20
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("model", "flags"),
    [
        ("fully_connected", ["--batch-size", "100000000"]),
        ("convolutional", ["--batch-size", "50000000", "--num-filters", "4"]),
        ("classifier", ["--batch-size", "2000000000"]),
    ],
)
def test_batches_too_large_are_refused_before_anything_is_allocated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str, flags: list[str]
) -> None:
    line = fails(capsys, "train", model, "--dataset", "digits", *flags, "--model-dir",
                 tmp_path / "m")  # fmt: skip
    assert "batch_size" in line and f"{limits.MAX_BATCH_VALUES:,}" in line
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("flag", "value"), [("--latent-dim", "1e9"), ("--hidden-units", "8,x"), ("--epochs", "")]
)
def test_a_bad_flag_value_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    line = fails(capsys, "train", "variational", flag, value, "--model-dir", tmp_path / "m")
    assert flag in line and "--help" in line
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    "edit",
    [
        {"hidden_units": [1_000_000_000]},
        {"batch_size": 1_000_000_000},
        {"example_shape": [100_000, 100_000]},
        {"model": "variational"},
        {"dataset": None},
        {"hidden_units": [[[[[[[[16]]]]]]]]},
        {"batch_size": "256"},
        {"exclude_classes": [True]},
        {"num_layers": 3},
        {"device": "meta"},
    ],
)
def test_an_edited_hparams_json_is_refused_in_one_line(
    run_copy: Path, capsys: pytest.CaptureFixture[str], edit: dict[str, object]
) -> None:
    path = run_copy / "hparams.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    before = snapshot(run_copy)
    for command in ("evaluate", "reconstruct", "export"):
        fails(capsys, command, "--model-dir", run_copy)
    fails(capsys, "train", "--model-dir", run_copy, "--epochs", "2")
    assert snapshot(run_copy) == before


def test_a_deeply_nested_or_huge_hparams_json_is_refused(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = run_copy / "hparams.json"
    for text in ('{"model": "fully_connected", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
                 '{"model": "fully_connected", "pad": "' + "x" * 100_000 + '"}'):  # fmt: skip
        path.write_text(text)
        line = fails(capsys, "evaluate", "--model-dir", run_copy)
        assert "hparams.json" in line


def test_sample_sizes_are_checked_before_drawing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vae = tmp_path / "vae"
    assert main(["train", "variational", "--dataset", "digits", "--latent-dim", "2",
                 "--hidden-units", "8", "--epochs", "1", "--model-dir", str(vae)]) == 0  # fmt: skip
    capsys.readouterr()
    before = snapshot(vae)
    for flags in (["--images", "1000000000"], ["--manifold-size", "100000"],
                  ["--images", "4", "--seed", "-1"]):  # fmt: skip
        tracemalloc.start()
        line = fails(capsys, "sample", "--model-dir", vae, *flags)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert flags[-2] in line and peak < 50 << 20
    assert snapshot(vae) == before  # no samples.png before the manifold's error


# --- 2. storage errors ---------------------------------------------------------------------


def test_outputs_in_unwritable_places_are_one_storage_line(
    fc_run: Path, unwritable: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(fc_run)
    target = unwritable / "out"
    for command, flag in (("export", "--output"), ("score", "--output"),
                          ("reconstruct", "--output"), ("embed", "--output")):  # fmt: skip
        extra = ["--plot", "pca"] if command == "embed" else []
        out = target / "x.png" if command in ("reconstruct", "embed") else target
        line = fails(capsys, command, "--model-dir", fc_run, flag, out, *extra)
        assert "cannot write" in line and str(unwritable) in line
    assert snapshot(fc_run) == before


def test_a_failing_mkdir_is_one_storage_line(
    fc_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # procfs lets anyone past the access check and refuses the mkdir itself (ENOENT).
    if not os.access("/proc", os.W_OK | os.X_OK):
        pytest.skip("no procfs to refuse a mkdir")
    for command in ("export", "score"):
        line = fails(capsys, command, "--model-dir", fc_run, "--output", "/proc/aekit-no/out")
        assert "cannot write /proc/aekit-no" in line


def test_outputs_of_the_wrong_kind_are_refused(
    fc_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep me")
    a_dir = tmp_path / "dir"
    a_dir.mkdir()
    line = fails(capsys, "reconstruct", "--model-dir", fc_run, "--output", a_dir)
    assert "is a directory" in line
    assert "is a directory" in fails(
        capsys, "embed", "--model-dir", fc_run, "--plot", "pca", "--output", a_dir
    )
    for command in ("export", "score"):
        assert "is a file" in fails(capsys, command, "--model-dir", fc_run, "--output", a_file)
    assert "is a file" in fails(
        capsys, "reconstruct", "--model-dir", fc_run, "--output", a_file / "x.png"
    )
    assert a_file.read_text() == "keep me" and not any(a_dir.iterdir())
    assert not list(tmp_path.glob(".*tmp*"))


# --- 3. a model dir trained through the Python API -----------------------------------------


def test_train_into_a_python_api_dir_writes_nothing_before_does_not_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = tmp_path / "api"
    x = np.random.default_rng(0).random((64, 8, 8), dtype=np.float32)
    est = aekit.AutoEncoder(hidden_units=[4], input_shape=(8, 8), model_dir=str(model_dir))
    est.train(numpy_input_fn(x, batch_size=32, num_epochs=1), verbose=0)
    before = snapshot(model_dir)
    line = fails(capsys, "train", "fully_connected", "--dataset", "digits", "--hidden-units",
                 "16,4", "--epochs", "1", "--model-dir", model_dir)  # fmt: skip
    assert "does not fit" in line
    assert snapshot(model_dir) == before and not (model_dir / "hparams.json").exists()


# --- 4. tracebacks that became one line ----------------------------------------------------


def test_splits_of_different_shapes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "mixed.npz"
    np.savez(data, x_train=np.zeros((20, 8, 8), np.uint8), x_test=np.zeros((5, 9, 9), np.uint8))
    line = fails(capsys, "train", "fully_connected", "--dataset", data, "--epochs", "1",
                 "--model-dir", tmp_path / "m")  # fmt: skip
    assert "[8, 8]" in line and "[9, 9]" in line
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("labels", "phrase"),
    [
        (np.zeros((40, 2), np.int64), "shape"),
        (np.where(np.arange(40) % 2, 1.0, np.nan), "NaN"),
        (np.zeros(40, np.int64), "two classes"),
    ],
)
def test_linear_probe_labels_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], labels: np.ndarray, phrase: str
) -> None:
    data = tmp_path / "labelled.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.integers(0, 255, (40, 8, 8), dtype=np.uint8), y=labels)
    model_dir = tmp_path / "m"
    assert main(["train", "fully_connected", "--dataset", str(data), "--epochs", "1",
                 "--hidden-units", "4", "--model-dir", str(model_dir)]) == 0  # fmt: skip
    capsys.readouterr()
    assert phrase in fails(capsys, "evaluate", "--model-dir", model_dir, "--linear-probe")


@pytest.mark.parametrize(
    ("model", "flags"),
    [
        ("classifier", ["--num-filters", "4", "--dense-units", "8"]),
        ("stacked", ["--hidden-units", "8", "--pretrain-epochs", "0"]),
    ],
)
def test_export_of_models_without_encoder_and_decoder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str, flags: list[str]
) -> None:
    model_dir = tmp_path / model
    assert main(["train", model, "--dataset", "digits", "--epochs", "1", *flags,
                 "--model-dir", str(model_dir)]) == 0  # fmt: skip
    capsys.readouterr()
    assert "no encoder and decoder" in fails(capsys, "export", "--model-dir", model_dir)
    assert not (model_dir / "export").exists()


def test_bad_device_and_save_images_are_refused_before_training(
    tmp_path: Path, unwritable: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["train", "fully_connected", "--dataset", "digits", "--epochs", "1"]
    assert "device" in fails(capsys, *common, "--device", "meta", "--model-dir", tmp_path / "a")
    a_file = tmp_path / "frames.png"
    a_file.write_text("")
    line = fails(capsys, *common, "--save-images", a_file, "--model-dir", tmp_path / "b")
    assert "--save-images" in line and "is a file" in line
    line = fails(capsys, *common, "--save-images", unwritable / "f", "--model-dir", tmp_path / "c")
    assert "cannot write" in line
    assert not any((tmp_path / name).exists() for name in "abc")


def test_a_model_dir_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "run"
    a_file.write_text("not a dir")
    line = fails(capsys, "train", "fully_connected", "--dataset", "digits", "--model-dir", a_file)
    assert "--model-dir" in line and a_file.read_text() == "not a dir"


# --- 5. --exclude-classes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "phrase"),
    [("99", "no example"), ("-1", "no example"), ("3,42", "42"), ("abc", "--exclude-classes")],
)
def test_exclude_classes_must_be_labels_of_the_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, phrase: str
) -> None:
    line = fails(capsys, "train", "fully_connected", "--dataset", "digits", "--epochs", "1",
                 "--exclude-classes", value, "--model-dir", tmp_path / "m")  # fmt: skip
    assert phrase in line
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("value", ["true", "'abc'", "['1']", "1.5", "{a: 1}", "[[1]]"])
def test_exclude_classes_in_a_config_are_type_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"exclude_classes: {value}\n")
    line = fails(capsys, "train", "fully_connected", "--dataset", "digits", "--config", config,
                 "--model-dir", tmp_path / "m")  # fmt: skip
    assert "exclude_classes must be a list of integer" in line


@pytest.mark.parametrize(
    "labels", [np.array(["cat", "dog"] * 10), np.array([0.5, 1.5] * 10)], ids=["str", "float"]
)
def test_exclude_classes_need_integer_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], labels: np.ndarray
) -> None:
    data = tmp_path / "labels.npz"
    np.savez(data, x=np.zeros((20, 4, 4), np.uint8), y=labels)
    line = fails(capsys, "train", "fully_connected", "--dataset", data, "--exclude-classes", "1",
                 "--model-dir", tmp_path / "m")  # fmt: skip
    assert "labels" in line and "integer" in line
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_the_real_executable_prints_only_the_error_line(fc_run: Path, tmp_path: Path) -> None:
    """No log line (such as the checkpoint's restore) comes before a command's refusal."""
    a_file = tmp_path / "file.txt"
    a_file.write_text("")
    for args in (["sample", "--model-dir", fc_run],
                 ["export", "--model-dir", fc_run, "--output", a_file],
                 ["score", "--model-dir", fc_run, "--percentile", "101"],
                 ["reconstruct", "--model-dir", fc_run, "--images", "0"],
                 ["train", "variational", "--latent-dim", "1e9"]):  # fmt: skip
        run = subprocess.run(
            [sys.executable, "-m", "aekit.cli.main", *map(str, args)],
            capture_output=True, text=True, check=False, timeout=300,
        )  # fmt: skip
        assert run.returncode == 2
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("aekit: error:"), run.stderr


def test_a_data_set_changed_since_training_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data.npz"
    np.savez(data, x=np.zeros((40, 8, 8), np.uint8))
    model_dir = tmp_path / "m"
    assert main(["train", "fully_connected", "--dataset", str(data), "--epochs", "1",
                 "--hidden-units", "4", "--model-dir", str(model_dir)]) == 0  # fmt: skip
    capsys.readouterr()
    np.savez(data, x=np.zeros((40, 9, 9), np.uint8))
    before = snapshot(model_dir)
    for command in ("evaluate", "reconstruct", "embed", "score"):
        line = fails(capsys, command, "--model-dir", model_dir)
        assert "[8, 8]" in line and "[9, 9]" in line
    assert snapshot(model_dir) == before
