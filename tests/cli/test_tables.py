"""`aekit train fully_connected` and `aekit score` on rows of a table, run in-process."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from aekit.anomaly import AutoencoderOutlierDetector
from aekit.anomaly.tabular import TabularNetwork, set_scaling, tabular_estimator
from aekit.cli.main import main
from aekit.data import numpy_input_fn
from aekit.errors import ConfigError
from aekit.estimator import checkpoint as ckpt
from aekit.models.fully_connected import AutoEncoder

FEATURES = 12


def table(
    n_normal: int = 600, n_anomalies: int = 40, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Normal rows on a 2-D plane in 12 features of very different units; anomalies off it."""
    rng = np.random.default_rng(seed)
    units = np.logspace(-2, 3, FEATURES)  # 0.01 to 1,000: raw errors would see one feature
    mixing = rng.normal(size=(2, FEATURES))
    normal = rng.normal(size=(n_normal, 2)) @ mixing + 0.05 * rng.normal(size=(n_normal, FEATURES))
    odd = rng.normal(scale=2.0, size=(n_anomalies, FEATURES))
    x = np.concatenate([normal, odd]) * units + 5 * units
    y = np.r_[np.zeros(n_normal, int), np.ones(n_anomalies, int)]
    order = rng.permutation(len(x))
    return x[order], y[order]


def write_csv(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow([f"feature_{i}" for i in range(x.shape[1])] + ["is_anomaly"])
        out.writerows([*map(float, row), int(label)] for row, label in zip(x, y, strict=True))
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("table")
    x, y = table()
    data = write_csv(tmp / "table.csv", x, y)
    model_dir = tmp / "run"
    assert main(["train", "fully_connected", "--dataset", str(data), "--label-column",
                 "is_anomaly", "--epochs", "40", "--batch-size", "64", "--learning-rate", "0.003",
                 "--model-dir", str(model_dir)]) == 0  # fmt: skip
    return data, model_dir


def test_a_table_is_scaled_sized_and_trained_on_its_normal_rows(
    csv_run: tuple[Path, Path],
) -> None:
    _, model_dir = csv_run
    settings = json.loads((model_dir / "hparams.json").read_text())
    assert settings["scaling"] == "standard"
    assert settings["hidden_units"] == [24, 7]  # 2x the features, a code of about 2·√12
    assert settings["exclude_classes"] == [1]  # label 1 marks the anomalies
    x, y = table()
    train_rows = x[(np.arange(len(x)) % 5 != 4) & (y == 0)]  # every 5th row is a test row
    _, state = ckpt.load_latest(model_dir, "cpu") or (None, {})
    network = state["network"]
    np.testing.assert_allclose(network["center"].numpy(), train_rows.mean(0), rtol=1e-5)
    np.testing.assert_allclose(network["scale"].numpy(), train_rows.std(0), rtol=1e-5)


def test_score_writes_every_row_and_separates_the_anomalies(
    csv_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, model_dir = csv_run
    out_dir = model_dir.parent / "scores"
    status, out, _ = run(capsys, "score", "--model-dir", model_dir, "--dataset", data,
                         "--output", out_dir)  # fmt: skip
    assert status == 0
    auroc = float(out.split("auroc=")[1].split()[0])
    assert auroc > 0.95, out
    with (out_dir / "scores.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 640  # every row of the file, anomalies included
    flagged = [r for r in rows if r["anomaly"] == "1"]
    assert sum(r["label"] == "1" for r in flagged) > 0.8 * len(flagged)


def test_score_adds_the_code_distance_for_rows_beyond_the_normal_range(
    csv_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # Rows on the normal rows' plane, 3.5 standard deviations out: reconstructed well, so
    # the error alone misses many of them; their codes lie far from the training codes.
    _, model_dir = csv_run
    rng = np.random.default_rng(5)
    mixing = np.random.default_rng(0).normal(size=(2, FEATURES))  # the plane of table()
    angle = rng.uniform(0, 2 * np.pi, size=40)
    on_plane = np.r_[rng.normal(size=(200, 2)), 3.5 * np.c_[np.cos(angle), np.sin(angle)]]
    rows = on_plane @ mixing + 0.05 * rng.normal(size=(240, FEATURES))
    units = np.logspace(-2, 3, FEATURES)
    far = write_csv(model_dir.parent / "far.csv", rows * units + 5 * units,
                    np.r_[np.zeros(200, int), np.ones(40, int)])  # fmt: skip
    auroc = {}
    scores = {
        "error": ["--code-weight", "0", "--neighbors", "0"],
        "code": ["--code-weight", "1", "--neighbors", "0"],
        "detector's": ["--code-weight", "0.5", "--neighbors", "2"],
        "default": [],
    }
    for name, chosen in scores.items():
        status, out, _ = run(capsys, "score", "--model-dir", model_dir, "--dataset", far,
                             *chosen, "--output", model_dir.parent / name)  # fmt: skip
        assert status == 0, out
        auroc[name] = float(out.split("auroc=")[1].split()[0])
    assert auroc["default"] == auroc["detector's"]  # on a table the outlier detector's score
    assert auroc["code"] > 0.95 and auroc["code"] > auroc["error"] + 0.1, auroc


@pytest.mark.parametrize("weight", ["-1", "inf", "nan"])
def test_a_bad_code_weight_is_one_line_and_writes_nothing(
    csv_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str], weight: str
) -> None:
    _, model_dir = csv_run
    out_dir = model_dir.parent / f"bad-weight-{weight}"
    status, _, err = run(capsys, "score", "--model-dir", model_dir, "--code-weight", weight,
                         "--output", out_dir)  # fmt: skip
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "--code-weight must be a finite number >= 0" in err
    assert not out_dir.exists()


def test_embed_writes_no_sprite_and_reconstruct_refuses_a_table(
    csv_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, model_dir = csv_run
    status, out, _ = run(capsys, "embed", "--model-dir", model_dir, "--images", "50")
    assert status == 0
    folder = Path(out.split()[0])
    assert (folder / "tensors.tsv").is_file() and not (folder / "sprite.png").exists()
    status, _, err = run(capsys, "reconstruct", "--model-dir", model_dir)
    assert status == 2 and "rows of a table" in err and "aekit score" in err


def test_an_npz_table_without_labels_and_pixels_keep_their_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x, y = table(200, 0)
    np.savez(tmp_path / "rows.npz", X=x, y=y)  # labels, all of them normal
    rows = str(tmp_path / "rows.npz")
    assert main(["train", "fully_connected", "--dataset", rows, "--scaling", "robust",
                 "--epochs", "1", "--model-dir", str(tmp_path / "t")]) == 0  # fmt: skip
    settings = json.loads((tmp_path / "t" / "hparams.json").read_text())
    assert settings["scaling"] == "robust" and settings["exclude_classes"] is None
    assert main(["train", "fully_connected", "--dataset", "digits", "--epochs", "1",
                 "--model-dir", str(tmp_path / "d")]) == 0  # fmt: skip
    settings = json.loads((tmp_path / "d" / "hparams.json").read_text())
    assert settings["scaling"] == "none" and settings["hidden_units"] == [128, 64, 32]


def test_bad_table_settings_are_one_line_errors(
    csv_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _ = csv_run
    cases: list[tuple[list[str | Path], str]] = [
        (["train", "fully_connected", "--dataset", data, "--label-column", "nope"], "nope"),
        (["train", "fully_connected", "--dataset", data, "--scaling", "none"], "--scaling"),
        (["train", "convolutional", "--dataset", data], "fully_connected"),
        (["train", "fully_connected", "--dataset", data, "--noise-factor", "0.3"], "noise"),
        (["train", "fully_connected", "--dataset", "digits", "--label-column", "y"], "drop it"),
        (["train", "fully_connected", "--dataset", data, "--save-images", tmp_path / "f"],
         "--save-images"),
    ]  # fmt: skip
    for args, phrase in cases:
        status, _, err = run(capsys, *args, "--model-dir", tmp_path / "bad")
        lines = err.strip().splitlines()
        assert status == 2 and len(lines) == 1 and lines[0].startswith("aekit: error:"), err
        assert phrase in lines[0], lines[0]
    assert not (tmp_path / "bad").exists() and not (tmp_path / "f").exists()


def test_the_python_api_scales_and_reconstructs_in_the_features_units(tmp_path: Path) -> None:
    x, _ = table(300, 0)
    est = tabular_estimator(FEATURES, [8, 3], model_dir=tmp_path)
    set_scaling(est.network, x, "minmax")
    network = est.network
    assert isinstance(network, TabularNetwork)
    np.testing.assert_allclose(network.center.numpy(), x.min(0), rtol=1e-6)
    est.train(numpy_input_fn(x.astype(np.float32), batch_size=50, num_epochs=30))
    first = next(est.predict(numpy_input_fn(x[:1].astype(np.float32), shuffle=False)))
    # The reconstruction is in the features' own units; its error in the [0, 1] scaled space.
    scaled = (x[0] - x.min(0)) / (x.max(0) - x.min(0))
    back = (first["prediction"] - x.min(0)) / (x.max(0) - x.min(0))
    assert first["reconstruction_error"] == pytest.approx(np.mean((back - scaled) ** 2), rel=1e-3)
    assert np.abs(first["prediction"] - x[0]).max() > 1  # raw units, not the scaled ones
    with pytest.raises(ConfigError, match="set_scaling needs the network of a tabular_estimator"):
        set_scaling(AutoEncoder(input_shape=(FEATURES,), model_dir=tmp_path / "p").network, x,
                    "minmax")  # fmt: skip
    with torch.no_grad():
        assert network.scale_rows(torch.from_numpy(x[:2]).float()).abs().max() <= 1 + 1e-5


def test_the_command_line_and_the_detector_give_the_same_scores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x, y = table(400, 30, seed=3)
    train_rows, test_rows = x[:300][y[:300] == 0], x[300:]
    np.savez(tmp_path / "split.npz", x_train=train_rows, y_train=np.zeros(len(train_rows), int),
             x_test=test_rows, y_test=y[300:])  # fmt: skip
    model_dir, out_dir = tmp_path / "run", tmp_path / "scores"
    assert main(["train", "fully_connected", "--dataset", str(tmp_path / "split.npz"),
                 "--seed", "7", "--model-dir", str(model_dir)]) == 0  # fmt: skip
    status, out, _ = run(capsys, "score", "--model-dir", model_dir, "--output", out_dir)
    assert status == 0, out
    with (out_dir / "scores.csv").open() as f:
        from_cli = np.array([float(r["score"]) for r in csv.DictReader(f)])
    detector = AutoencoderOutlierDetector(random_state=7).fit(train_rows)
    from_python = -detector.score_samples(test_rows)
    # The same model and score; the command line predicts in float32, the detector in float64.
    np.testing.assert_allclose(from_cli, from_python, rtol=1e-4, atol=1e-6)
    settings = json.loads((model_dir / "hparams.json").read_text())
    assert settings["hidden_units"] == detector.hidden_units_
    assert settings["weight_decay"] is None


KILLER = """
import os, signal, sys
from torch.optim import optimizer
from aekit.cli.main import main

steps = [0]
kill_at = int(sys.argv[1])

def before_step(opt, args, kwargs):
    steps[0] += 1
    if steps[0] == kill_at:  # this step is not taken, nor anything after it saved
        os.kill(os.getpid(), signal.SIGKILL)

optimizer.register_optimizer_step_pre_hook(before_step)
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_a_table_run_killed_mid_epoch_resumes_to_the_uninterrupted_weights(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 2)) @ rng.normal(size=(2, 6)) + 0.1 * rng.normal(size=(600, 6))
    data = write_csv(tmp_path / "t.csv", x, np.zeros(len(x), int))
    args = ["train", "fully_connected", "--dataset", str(data), "--seed", "3", "--model-dir"]
    assert main([*args, str(tmp_path / "straight")]) == 0
    saved = sorted(ckpt.step_of(p) for p in ckpt.list_checkpoints(tmp_path / "straight"))
    straight = ckpt.load(ckpt.latest_checkpoint(tmp_path / "straight"))  # type: ignore[arg-type]
    end, epoch = straight["global_step"], saved[-2] - saved[-3]  # a checkpoint an epoch
    # Early stopping (patience 3) ended it 3 epochs after its best, with the best's weights.
    # Killed in the middle of the epoch before the last, the resumed run must carry the best
    # weights and the epochs waited since, and continue with the same batches.
    assert end % epoch == 0 and end < 100 * epoch
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    kill_at = end - epoch - epoch // 2
    command = [sys.executable, str(script), str(kill_at), *args, str(tmp_path / "run")]
    killed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    latest = ckpt.latest_checkpoint(tmp_path / "run")
    assert latest is not None and ckpt.step_of(latest) == end - 2 * epoch
    assert main([*args, str(tmp_path / "run")]) == 0
    resumed = ckpt.load(ckpt.latest_checkpoint(tmp_path / "run"))  # type: ignore[arg-type]
    assert resumed["global_step"] == end
    for name, tensor in straight["network"].items():
        assert torch.equal(resumed["network"][name], tensor), name


def test_score_matches_a_table_s_columns_by_name(
    csv_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, model_dir = csv_run
    with data.open() as f:
        header, *rows = list(csv.reader(f))
    order = [*range(FEATURES - 1, -1, -1), FEATURES]  # the features reversed, the label last
    shuffled = model_dir.parent / "reversed.csv"
    with shuffled.open("w", newline="") as f:
        csv.writer(f).writerows([[row[i] for i in order] for row in [header, *rows]])
    scores = {}
    for name, source in (("trained", data), ("reversed", shuffled)):
        status, out, _ = run(capsys, "score", "--model-dir", model_dir, "--dataset", source,
                             "--output", model_dir.parent / f"by-{name}")  # fmt: skip
        assert status == 0, out
        with (model_dir.parent / f"by-{name}" / "scores.csv").open() as f:
            scores[name] = [r["score"] for r in csv.DictReader(f)]
    assert scores["reversed"] == scores["trained"]  # reordered by name, not taken by position
    renamed = model_dir.parent / "renamed.csv"
    renamed.write_text(data.read_text().replace("feature_0,", "other_0,", 1))
    status, _, err = run(capsys, "score", "--model-dir", model_dir, "--dataset", renamed)
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "lacks 'feature_0' and has 'other_0' besides the columns" in err
