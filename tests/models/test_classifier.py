"""The CNN classifier, classifiers on a trained encoder, and the linear probe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import aekit
from aekit.data import load_digits, numpy_input_fn
from aekit.evaluation import linear_probe
from aekit.models.classifier import ConvClassifierNetwork, encoder_of

QUIET = aekit.RunConfig(log_step_count_steps=0, save_summary_steps=0, random_seed=0)


def split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = load_digits()
    return x[:1200], y[:1200], x[1200:1500], y[1200:1500]


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8)])
def test_cnn_logits_shape(shape: tuple[int, int, int]) -> None:
    net = ConvClassifierNetwork(shape, (4, 8), dense_units=16, n_classes=7)
    assert net(torch.rand(2, *shape)).shape == (2, 7)


def test_cnn_learns_digits(tmp_path: Path) -> None:
    x, y, xt, yt = split()
    est = aekit.Classifier(
        image_shape=(1, 8, 8),
        conv_filters=(8, 16),
        dense_units=64,
        model_dir=tmp_path,
        config=QUIET,
    )
    est.save_checkpoint()  # evaluate and predict need a checkpoint
    before = est.evaluate(numpy_input_fn(xt, yt, shuffle=False))["accuracy"]
    est.train(numpy_input_fn(x, y, batch_size=50, num_epochs=8))
    after = est.evaluate(numpy_input_fn(xt, yt, shuffle=False))["accuracy"]
    assert after > 0.75 and after > before + 0.3
    first = next(est.predict(numpy_input_fn(xt[:2], shuffle=False)))
    assert set(first) == {"class_ids", "probabilities", "logits"}


@pytest.mark.parametrize("freeze", [True, False])
def test_classifier_on_a_trained_encoder(tmp_path: Path, freeze: bool) -> None:
    x, y, xt, yt = split()
    autoencoder = aekit.AutoEncoder(
        [32, 16], input_shape=(8, 8), model_dir=tmp_path / "ae", config=QUIET
    )
    autoencoder.train(numpy_input_fn(x, batch_size=50, num_epochs=2))
    encoder_before = {k: v.clone() for k, v in autoencoder.network.state_dict().items()}
    est = aekit.Classifier(
        image_shape=(8, 8),
        encoder=encoder_of(autoencoder.network),
        hidden_units=[16],
        freeze_encoder=freeze,
        model_dir=tmp_path / "clf",
        config=QUIET,
    )
    est.train(numpy_input_fn(x, y, batch_size=50, num_epochs=2))
    changed = any(
        not torch.equal(v, autoencoder.network.state_dict()[k]) for k, v in encoder_before.items()
    )
    assert changed is not freeze
    assert est.evaluate(numpy_input_fn(xt, yt, shuffle=False))["accuracy"] > 0.1
    with pytest.raises(aekit.ConfigError, match="has no encode"):
        encoder_of(torch.nn.Linear(2, 2))


def test_linear_probe_beats_chance(tmp_path: Path) -> None:
    x, y, xt, yt = split()
    autoencoder = aekit.AutoEncoder([32, 16], input_shape=(8, 8), model_dir=tmp_path, config=QUIET)
    autoencoder.train(numpy_input_fn(x, batch_size=50, num_epochs=5))
    accuracy = linear_probe(autoencoder, x, y, xt, yt)
    assert 0.5 < accuracy <= 1.0
    with pytest.raises(aekit.InputError, match="needs labels"):
        linear_probe(autoencoder, x, None, xt, yt)


def test_training_labels_off_the_cpu_turn_the_loss_nan_instead_of_asserting() -> None:
    from aekit.models.heads import train_labels

    good, bad = torch.tensor([0, 3, 9]), torch.tensor([0, 3, 12])
    with pytest.raises(RuntimeError, match=r"class ids in \[0, 10\); fix it"):
        train_labels(bad, 10, "fix it", raise_now=True)
    # Where an assert would end the GPU's use, the ids stay valid and a flag says why.
    kept, flag = train_labels(good, 10, "fix it", raise_now=False)
    assert kept.tolist() == [0, 3, 9] and flag is not None and bool(flag)
    safe, flag = train_labels(bad, 10, "fix it", raise_now=False)
    assert safe.tolist() == [0, 0, 0] and flag is not None and not bool(flag)
    loss = torch.nn.functional.cross_entropy(torch.zeros(3, 10), safe).where(flag, torch.nan)
    assert torch.isnan(loss)
