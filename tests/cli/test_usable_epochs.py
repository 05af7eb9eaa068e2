"""How many epochs a model needs: declared in the registry, said when a run stops far short."""

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
    said = f"usable reconstructions after about {figure.epochs} epochs of 8,000 MNIST digits"
    assert said in registry.get(model).help and said in registry.models_help()
    assert f"(val_rmse {figure.val_rmse:g})" in registry.get(model).help


def test_models_without_a_reconstruction_declare_none() -> None:
    assert registry.get("classifier").usable is None
    assert registry.models_help().startswith(f"one of: {', '.join(registry.names())}")


@pytest.mark.parametrize("model", MEASURED)
def test_the_note_needs_both_few_epochs_and_a_high_error(model: str) -> None:
    figure = usable(model)
    settings = {"model": model, "epochs": 1, "scaling": "none"}
    high, usual = {"rmse": 3 * figure.val_rmse}, {"rmse": figure.val_rmse}
    note = registry.short_run_note(settings, high)
    assert note is not None and "\n" not in note
    assert note.startswith(f"{model} usually needs ~{figure.epochs} epochs")
    assert "this run trained 1" in note and note.endswith("raise --epochs")
    assert registry.short_run_note(settings, usual) is None  # few epochs, but good enough
    enough = {**settings, "epochs": figure.epochs}
    assert registry.short_run_note(enough, high) is None  # trained long: the data differ
    table = {**settings, "scaling": "standard"}
    assert registry.short_run_note(table, high) is None  # a table trains by its own recipe


def test_no_note_for_a_model_without_a_figure_or_a_run_without_an_rmse() -> None:
    assert registry.short_run_note({"model": "classifier", "epochs": 1}, {"rmse": 1.0}) is None
    assert registry.short_run_note({"model": "convolutional", "epochs": 1}, {"loss": 1.0}) is None


def notes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "raise --epochs" in r.getMessage()]


@pytest.mark.slow
def test_a_short_run_says_so_at_its_end_and_a_long_enough_one_does_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = ["train", "fully_connected", "--dataset", "digits", "--model-dir", str(tmp_path / "fc")]
    with caplog.at_level(logging.INFO, logger="aekit"):
        assert main([*run, "--epochs", "1"]) == 0
    (note,) = notes(caplog)
    assert "fully_connected usually needs" in note and "this run trained 1 " in note
    assert caplog.records[-1].getMessage() == note  # said at the end, after the last epoch
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="aekit"):  # the same run, resumed to the figure
        assert main([*run, "--epochs", str(usable("fully_connected").epochs)]) == 0
    assert notes(caplog) == []


def test_train_help_shows_the_epochs_each_model_needs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    for model in MEASURED:
        assert f"{model}: usable reconstructions after about {usable(model).epochs} epochs" in shown
