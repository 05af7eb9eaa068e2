"""What a new user meets: paths, messages, defaults and one meaning per setting name."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from aekit.cli.main import main
from aekit.data.idx import write_idx
from aekit.data.mnist import FILES
from aekit.estimator import checkpoint as ckpt
from aekit.models.fully_connected import AutoEncoder

EXE = [sys.executable, "-m", "aekit.cli.main"]


def aekit(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real command line in a subprocess, in `cwd`."""
    return subprocess.run(
        [*EXE, *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=cwd,
        env=env,
    )


def one_error_line(run: subprocess.CompletedProcess[str], *phrases: str) -> str:
    assert run.returncode == 2, run.stderr
    line = run.stderr.strip()
    assert line.startswith("aekit: error:") and len(line.splitlines()) == 1, line
    for phrase in phrases:
        assert phrase in line, line
    return line


def write_mnist_dir(directory: Path, n_train: int = 40, n_test: int = 20) -> Path:
    """A tiny folder of MNIST-format IDX files (28x28 uint8), uncompressed."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True)
    arrays = (
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train, dtype=np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test, dtype=np.uint8),
    )
    for name, array in zip(FILES, arrays, strict=True):
        write_idx(directory / name.removesuffix(".gz"), array)
    return directory


def test_runs_keep_absolute_paths_and_read_moved_data_from_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # In this process (a subprocess per command took most of a minute); the real executable
    # is covered by test_the_real_executable_prints_only_the_error_line.
    def run(*args: str | Path, cwd: Path) -> tuple[int, str, str]:
        monkeypatch.chdir(cwd)
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    def one_line(result: tuple[int, str, str], *phrases: str) -> None:
        code, _, err = result
        line = err.strip()
        assert code == 2 and line.startswith("aekit: error:") and len(line.splitlines()) == 1
        assert all(phrase in line for phrase in phrases), line

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    write_mnist_dir(tmp_path / "shared" / "mnist")
    code, _, err = run(
        "train", "fully_connected", "--data-dir", "../shared/mnist", "--hidden-units", "4",
        "--epochs", "1", "--batch-size", "20", "--model-dir", "runs/fc",
        "--save-images", "frames", cwd=work,
    )  # fmt: skip
    assert code == 0, err
    model_dir = work / "runs" / "fc"
    saved = json.loads((model_dir / "hparams.json").read_text())
    assert saved["data_dir"] == str(tmp_path / "shared" / "mnist")
    assert saved["save_images"] == str(work / "frames")

    # From another working directory, the saved (absolute) data dir is found.
    code, out, err = run("evaluate", "--model-dir", model_dir, cwd=elsewhere)
    assert code == 0 and "loss=" in out, err

    # The data moved: every command that reads data takes the new place, relative to cwd.
    (tmp_path / "shared" / "mnist").rename(tmp_path / "moved")
    one_line(run("evaluate", "--model-dir", model_dir, cwd=elsewhere), "does not exist")
    for command in ("evaluate", "reconstruct", "embed", "score"):
        code, _, err = run(
            command, "--model-dir", model_dir, "--data-dir", "../moved", cwd=elsewhere
        )
        assert code == 0, (command, err)
    # Commands that read no data do not need it at all.
    assert run("export", "--model-dir", model_dir, "--format", "torchscript", cwd=work)[0] == 0

    # Another data set of another example shape is refused in one line, nothing written.
    before = sorted(p.name for p in model_dir.iterdir())
    one_line(
        run("reconstruct", "--model-dir", model_dir, "--dataset", "digits", cwd=elsewhere),
        "trained on examples of shape [28, 28]",
        "digits holds [8, 8]",
    )
    assert sorted(p.name for p in model_dir.iterdir()) == before


def test_a_data_set_path_is_saved_absolute_and_can_be_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(1)
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "x.npy", rng.random((30, 8, 8), dtype=np.float32))
    monkeypatch.chdir(tmp_path / "data")
    model_dir = tmp_path / "m"
    assert main(["train", "fully_connected", "--dataset", "x.npy", "--hidden-units", "4",
                 "--epochs", "1", "--model-dir", str(model_dir)]) == 0  # fmt: skip
    saved = json.loads((model_dir / "hparams.json").read_text())
    assert saved["dataset"] == str(tmp_path / "data" / "x.npy")
    capsys.readouterr()

    monkeypatch.chdir(tmp_path)
    shutil.move(tmp_path / "data" / "x.npy", tmp_path / "y.npy")
    assert main(["evaluate", "--model-dir", str(model_dir)]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["evaluate", "--model-dir", str(model_dir), "--dataset", "y.npy"]) == 0
    assert "loss=" in capsys.readouterr().out


def test_a_misspelt_model_is_named_before_the_model_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "fc").mkdir(parents=True)
    (tmp_path / "runs" / "fc" / "hparams.json").write_text('{"model": "fully_connected"}')
    assert main(["train", "fc"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'fc'; did you mean fully_connected?" in err
    assert main(["train", "varitional", "--model-dir", "runs/fc"]) == 2
    assert "did you mean variational?" in capsys.readouterr().err


def test_train_without_a_model_is_a_usage_error_naming_the_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("aekit: error: the following arguments are required: model")
    assert "fully_connected" in err and "runs/model" not in err
    assert list(tmp_path.iterdir()) == []


def test_help_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    epochs = text[text.index("--epochs EPOCHS passes") :]
    assert epochs.index("(default: 10 for classifier; 30 for convolutional, stacked") < 200
    assert "auto for fully_connected" in epochs[:300]
    from aekit.anomaly.tabular import TABLE_LEARNING_RATE  # the help's figure is the recipe's

    auto = f"auto: 0.001 on images, {TABLE_LEARNING_RATE:g} on a table"
    assert f"--learning_rate LEARNING_RATE Adam's rate; {auto}" in text
    assert "(default: 0.001 for classifier, convolutional, stacked, variational; auto for " in text
    assert "(default: 0.4 for classifier; 0 for stacked)" in text  # --dropout
    assert main(["score", "--help"]) == 0
    assert "(default: 99.0)" in " ".join(capsys.readouterr().out.split())
    assert main(["sample", "--help"]) == 0
    sample_help = " ".join(capsys.readouterr().out.split())
    assert "--images IMAGES how many images to generate (default: 64)" in sample_help
    assert "--seed SEED random seed of the codes drawn (default: 0)" in sample_help


@pytest.mark.slow
def test_missing_mnist_is_one_short_line_naming_data_dir(tmp_path: Path) -> None:
    # Every mirror is refused at once: a proxy on a closed local port.
    env = {**os.environ, "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)
    empty = tmp_path / "empty"
    empty.mkdir()
    run = aekit(
        "train", "fully_connected", "--data-dir", empty, "--model-dir", tmp_path / "m", env=env
    )
    # Each mirror tried is logged ("downloading URL"); then the error, in one short line.
    assert run.returncode == 2
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith(f"aekit: error: mnist is not in {empty} and could not be downloaded")
    assert "--data-dir" in line and "train-images-idx3-ubyte.gz" in line
    assert len(line) - len(str(empty)) < 250 and "load_data" not in line
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_the_stacked_model_shows_its_parameter_table_once(tmp_path: Path) -> None:
    run = aekit("train", "stacked", "--dataset", "digits", "--hidden-units", "8,4",
                "--pretrain-epochs", "1", "--epochs", "1",
                "--model-dir", tmp_path / "s")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stderr.count(" parameters, ") == 1, run.stderr
    assert (tmp_path / "s" / "pretrain").exists() or list((tmp_path / "s").iterdir())


@pytest.mark.slow
def test_the_bernoulli_vae_lists_no_log_scale_parameter(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model_dir = tmp_path / "vae"
    with caplog.at_level(logging.INFO, logger="aekit"):
        assert main(["train", "variational", "--dataset", "digits", "--hidden-units", "8",
                     "--latent-dim", "2", "--epochs", "1",
                     "--model-dir", str(model_dir)]) == 0  # fmt: skip
    assert "log_scale" not in caplog.text and " parameters, " in caplog.text
    # The key stays in checkpoints (a buffer), so runs of earlier versions still load.
    found = ckpt.load_latest(model_dir, "cpu")
    assert found is not None and any(k.endswith("log_scale") for k in found[1]["network"])
    assert main(["sample", "--model-dir", str(model_dir), "--images", "4"]) == 0


def fc_settings(model_dir: Path) -> dict[str, object]:
    return dict(json.loads((model_dir / "hparams.json").read_text()))


def test_dropout_is_a_drop_rate_and_keep_prob_the_seeds_keep_probability(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--dataset", "digits", "--hidden-units", "4", "--epochs", "1"]
    model_dir = tmp_path / "fc"
    assert main(["train", "fully_connected", *common, "--dropout", "0.7",
                 "--model-dir", str(model_dir)]) == 0  # fmt: skip
    saved = fc_settings(model_dir)
    assert saved["keep_prob"] == 0.3 and "dropout" not in saved

    # The same run resumed with either spelling of the same value; another value is refused.
    assert (
        main(["train", "--model-dir", str(model_dir), "--keep-prob", "0.3", "--epochs", "2"]) == 0
    )
    assert main(["train", "--model-dir", str(model_dir), "--dropout", "0.5"]) == 2
    assert "trained with keep_prob=0.3" in capsys.readouterr().err

    assert main(["train", "fully_connected", "--dropout", "0.1", "--keep-prob", "0.9"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["train", "classifier", "--keep-prob", "0.5", "--model-dir",
                 str(tmp_path / "c")]) == 2  # fmt: skip
    assert "keep_prob is not a setting of the classifier model" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_a_resumed_run_may_lower_its_learning_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    model_dir = tmp_path / "vae"
    common = ["--model-dir", str(model_dir), "--dataset", "digits", "--batch-size", "512"]
    assert main(["train", "variational", *common, "--hidden-units", "8", "--latent-dim", "2",
                 "--epochs", "1"]) == 0  # fmt: skip
    with caplog.at_level(logging.INFO, logger="aekit"):
        assert main(["train", *common, "--epochs", "2", "--learning-rate", "2.5e-4"]) == 0
    assert "learning_rate changed on resume: 0.001 -> 0.00025" in caplog.text
    assert fc_settings(model_dir)["learning_rate"] == 2.5e-4
    latest = ckpt.latest_checkpoint(model_dir)
    assert latest is not None and ckpt.step_of(latest) == 2 * -(-1437 // 512)
    state = ckpt.load(latest, torch.device("cpu"))
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(2.5e-4)
    # The architecture still may not change.
    assert main(["train", *common, "--latent-dim", "3"]) == 2
    assert "trained with latent_dim=2" in capsys.readouterr().err


def test_the_stacked_model_takes_dropout_for_fine_tuning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = tmp_path / "sda"
    common = ["--model-dir", str(model_dir), "--dataset", "digits", "--batch-size", "256"]
    assert main(["train", "stacked", *common, "--hidden-units", "8", "--pretrain-epochs", "1",
                 "--epochs", "1", "--dropout", "0.5"]) == 0  # fmt: skip
    assert fc_settings(model_dir)["dropout"] == 0.5
    latest = ckpt.latest_checkpoint(model_dir)
    assert latest is not None and ckpt.load(latest)["params"]["dropout"] == 0.5
    assert main(["train", *common, "--dropout", "0.2"]) == 2
    assert "trained with dropout=0.5" in capsys.readouterr().err


def test_an_older_run_with_dropout_as_keep_probability_still_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = tmp_path / "old"
    assert main(["train", "fully_connected", "--dataset", "digits", "--hidden-units", "4",
                 "--epochs", "1", "--keep-prob", "0.8",
                 "--model-dir", str(model_dir)]) == 0  # fmt: skip
    # Rewrite hparams.json as earlier versions wrote it: "dropout" held the keep probability.
    old = fc_settings(model_dir)
    old["dropout"] = old.pop("keep_prob")
    (model_dir / "hparams.json").write_text(json.dumps(old))

    assert main(["train", "--model-dir", str(model_dir), "--epochs", "2"]) == 0
    resumed = fc_settings(model_dir)
    assert resumed["keep_prob"] == 0.8 and "dropout" not in resumed
    latest = ckpt.latest_checkpoint(model_dir)
    assert latest is not None and ckpt.step_of(latest) == 2 * -(-1437 // 256)  # two epochs
    capsys.readouterr()
    assert main(["train", "--model-dir", str(model_dir), "--dropout", "0.8"]) == 2
    assert "trained with keep_prob=0.8" in capsys.readouterr().err


def test_estimators_without_a_model_dir_leave_nothing_in_the_system_temp_dir(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    estimator = AutoEncoder(hidden_units=[4], input_shape=(8, 8))
    basetemp = tmp_path_factory.getbasetemp()
    assert Path(estimator.model_dir).is_relative_to(basetemp), estimator.model_dir
    assert Path(tempfile.gettempdir()).is_relative_to(basetemp)
