"""How long a model needs: declared in the registry (in optimizer steps), said when a run
stops far short."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from aekit.cli import registry
from aekit.cli.main import main

MEASURED = ("convolutional", "fully_connected", "variational")


def usable(model: str) -> registry.Usable:
    figure = registry.get(model).usable
    assert figure is not None, f"{model} declares no usable epochs"
    return figure


@pytest.mark.parametrize("model", MEASURED)
def test_each_autoencoder_declares_its_epochs_in_its_help(model: str) -> None:
    figure = usable(model)
    assert figure.epochs > 0 and 0 < figure.val_rmse < 1
    said = (
        f"usable reconstructions after about {figure.steps:,} steps ({figure.epochs} epochs of "
        f"8,000 MNIST digits in batches of {figure.batch}"
    )
    assert figure.steps == figure.epochs * -(-8000 // figure.batch)
    assert said in registry.get(model).help and said in registry.models_help()
    assert f"; val_rmse {figure.val_rmse:g})" in registry.get(model).help


def test_models_without_a_reconstruction_declare_none() -> None:
    assert registry.get("classifier").usable is None
    assert registry.models_help().startswith(f"one of: {', '.join(registry.names())}")


@pytest.mark.parametrize("model", MEASURED)
def test_the_note_needs_both_few_steps_and_a_high_error(model: str) -> None:
    figure = usable(model)
    settings = {"model": model, "epochs": 1, "scaling": "none"}
    few = figure.steps // 4  # whatever the epochs: a small data set's take few steps
    high = {"rmse": 3 * figure.val_rmse, "global_step": few}
    note = registry.short_run_note(settings, high)
    assert note is not None and "\n" not in note
    assert note.startswith(f"{model} usually needs ~{figure.steps:,} optimizer steps")
    assert f"this run took {few:,} " in note and note.endswith("raise --epochs")
    usual = {**high, "rmse": figure.val_rmse}
    assert registry.short_run_note(settings, usual) is None  # few steps, but good enough
    enough = {**high, "global_step": figure.steps}
    assert registry.short_run_note(settings, enough) is None  # trained long: the data differ
    many_epochs = {**settings, "epochs": 10 * figure.epochs}  # epochs do not count, steps do
    assert registry.short_run_note(many_epochs, high) is not None
    table = {**settings, "scaling": "standard"}
    assert registry.short_run_note(table, high) is None  # a table trains by its own recipe


def test_no_note_for_a_model_without_a_figure_or_a_run_without_an_rmse() -> None:
    short = {"rmse": 1.0, "global_step": 1}
    assert registry.short_run_note({"model": "classifier", "epochs": 1}, short) is None
    assert registry.short_run_note({"model": "convolutional"}, {"global_step": 1}) is None


def notes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "raise --epochs" in r.getMessage()]


@pytest.mark.slow
def test_a_short_run_says_so_at_its_end_and_a_long_enough_one_does_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = ["train", "fully_connected", "--dataset", "digits"]
    with caplog.at_level(logging.INFO, logger="aekit"):  # 10 epochs of 1,437 images: 60 steps
        assert main([*run, "--epochs", "10", "--model-dir", str(tmp_path / "short")]) == 0
    (note,) = notes(caplog)
    assert "fully_connected usually needs" in note and "this run took 60 " in note
    assert caplog.records[-1].getMessage() == note  # said at the end, after the last epoch
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="aekit"):  # 2 epochs in batches of 8: 360 steps
        assert main([*run, "--epochs", "2", "--batch-size", "8", "--model-dir",
                     str(tmp_path / "long")]) == 0  # fmt: skip
    assert notes(caplog) == []


def test_train_help_shows_the_steps_each_model_needs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    for model in MEASURED:
        assert f"{model}: usable reconstructions after about {usable(model).steps:,} steps" in shown
