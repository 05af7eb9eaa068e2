"""The stacked denoising autoencoder: tied weights, greedy phases, fine-tuning, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import aekit
from aekit.data import load_digits, numpy_input_fn
from aekit.estimator import checkpoint as ckpt
from aekit.models.stacked import StackedDenoisingAutoencoder, StackedNetwork


def make(model_dir: Path, tied: bool = True) -> StackedDenoisingAutoencoder:
    return StackedDenoisingAutoencoder(
        [16, 8],
        noise_factor=0.3,
        tied_weights=tied,
        pretrain_learning_rates=[1e-2, 1e-2],
        finetune_learning_rate=1e-2,
        input_shape=(8, 8),
        model_dir=model_dir,
        config=aekit.RunConfig(log_step_count_steps=0, save_summary_steps=5, random_seed=0),
    )


def data() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_digits()
    return x[:300], y[:300]


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_tied_weights_are_one_parameter_with_gradient_from_both_sides() -> None:
    net = StackedNetwork(6, [4], 3, tied_weights=True)
    weights = [p for p in net.parameters() if p.shape == (4, 6)]
    assert len(weights) == 1  # no separate decoder matrix
    code, logits = net.reconstruct(0, torch.rand(5, 6))
    # Gradient through the decoder alone (code detached) still reaches the shared matrix ...
    decoder_only = torch.nn.functional.linear(
        code.detach(), net.encoder(0).weight.t(), net.decoder_biases[0]
    )
    (g_decoder,) = torch.autograd.grad(decoder_only.sum(), net.encoder(0).weight)
    assert g_decoder.abs().sum() > 0
    # ... and the full reconstruction's gradient is the sum of both paths.
    (g_both,) = torch.autograd.grad(logits.sum(), net.encoder(0).weight)
    assert not torch.allclose(g_both, g_decoder)
    untied = StackedNetwork(6, [4], 3, tied_weights=False)
    assert len([p for p in untied.parameters() if p.dim() == 2 and 24 in (p.numel(),)]) == 2


def test_pretraining_freezes_lower_layers_and_fine_tuning_moves_all(tmp_path: Path) -> None:
    x, y = data()
    est = make(tmp_path)
    est.pretrain(numpy_input_fn(x, batch_size=50, num_epochs=None), steps=[6, 0])
    after_first = snapshot(est.network)
    est.pretrain(numpy_input_fn(x, batch_size=50, num_epochs=None), steps=[6, 6])
    after_second = snapshot(est.network)
    assert torch.equal(after_first["encoders.0.weight"], after_second["encoders.0.weight"])
    assert torch.equal(after_first["encoders.0.bias"], after_second["encoders.0.bias"])
    assert not torch.equal(after_first["encoders.1.weight"], after_second["encoders.1.weight"])
    assert torch.equal(after_first["head.weight"], after_second["head.weight"])
    est.train(numpy_input_fn(x, y, batch_size=50), max_steps=6)
    tuned = snapshot(est.network)
    for name in ("encoders.0.weight", "encoders.1.weight", "head.weight"):
        assert not torch.equal(tuned[name], after_second[name]), name
    assert (tmp_path / "pretrain" / "layer1" / "train").is_dir()  # each phase has its summaries


def test_resume_across_phases(tmp_path: Path) -> None:
    x, y = data()
    make(tmp_path).pretrain(numpy_input_fn(x, batch_size=50, num_epochs=None), steps=[6, 0])
    # A new process: layer 1 is done, so only layer 2 trains; then fine-tuning starts from it.
    again = make(tmp_path)
    again.pretrain(numpy_input_fn(x, batch_size=50, num_epochs=None), steps=[6, 4])
    assert [ckpt.step_of(p) for p in ckpt.list_checkpoints(tmp_path / "pretrain" / "layer1")] == [6]
    assert [ckpt.step_of(p) for p in ckpt.list_checkpoints(tmp_path / "pretrain" / "layer2")] == [4]
    layer2 = ckpt.load(tmp_path / "pretrain" / "layer2" / "ckpt-4.pt")["network"]
    third = make(tmp_path)
    third.train(numpy_input_fn(x, y, batch_size=50), max_steps=1)
    # Fine-tuning began from the pretrained stack (one step moved it only a little).
    tuned = third.network.state_dict()["encoders.1.weight"].cpu()
    moved = (tuned - layer2["encoders.1.weight"]).abs()
    assert float(moved.max()) < 0.05
    third.pretrain(numpy_input_fn(x, batch_size=50, num_epochs=None), steps=[6, 8])  # over
    assert [ckpt.step_of(p) for p in ckpt.list_checkpoints(tmp_path / "pretrain" / "layer2")] == [4]


def test_predictions_and_metrics(tmp_path: Path) -> None:
    x, y = data()
    est = make(tmp_path)
    est.train(numpy_input_fn(x, y, batch_size=50, num_epochs=3))
    results = est.evaluate(numpy_input_fn(x, y, shuffle=False))
    assert set(results) == {"accuracy", "loss", "global_step"} and 0 <= results["accuracy"] <= 1
    first = next(est.predict(numpy_input_fn(x[:4], shuffle=False)))
    assert set(first) == {"class_ids", "probabilities", "logits"}
    assert first["probabilities"].shape == (10,) and first["probabilities"].sum() == pytest.approx(
        1, rel=1e-5
    )
    assert first["class_ids"] == first["logits"].argmax()


def test_bad_settings_and_labels(tmp_path: Path) -> None:
    with pytest.raises(aekit.ConfigError, match="one positive pretraining learning rate per layer"):
        StackedDenoisingAutoencoder([4, 4], pretrain_learning_rates=[0.1], model_dir=tmp_path)
    with pytest.raises(aekit.ConfigError, match="unknown noise"):
        StackedDenoisingAutoencoder([4], noise="blur", model_dir=tmp_path)
    est = make(tmp_path)
    est.save_checkpoint()  # evaluate and predict need a checkpoint
    x, _ = data()
    # Training checks labels on the device (no host read per step): a RuntimeError on the
    # CPU at once, a NaN loss on a GPU; evaluation reads them and says which values it saw.
    on_cpu = est.device.type == "cpu"
    error, says = (RuntimeError, "class ids in") if on_cpu else (aekit.NanLossError, "labels")
    with pytest.raises(error, match=says):
        est.train(numpy_input_fn(x[:10], np.full(10, 12), batch_size=5), steps=1)
    with pytest.raises(aekit.ConfigError, match="class ids in"):
        est.evaluate(numpy_input_fn(x[:10], np.full(10, 12), batch_size=5))
    with pytest.raises(aekit.ConfigError, match="one non-negative step count per layer"):
        est.pretrain(numpy_input_fn(x), steps=[1])


def test_dropout_acts_in_fine_tuning_only() -> None:
    torch.manual_seed(0)
    net = StackedNetwork(6, [200, 200], 3, dropout=0.5)
    x = torch.rand(4, 6)
    net.train()
    assert not torch.equal(net(x), net(x))  # units dropped afresh each pass
    assert torch.equal(net.encode(x), net.encode(x))  # what pretraining reads
    net.eval()
    assert torch.equal(net(x), net.head(net.encode(x)))
    with pytest.raises(aekit.ConfigError, match=r"dropout is a drop rate in \[0, 1\)"):
        StackedDenoisingAutoencoder([4], dropout=1.0)


def test_a_run_without_dropout_resumes_as_before(tmp_path: Path) -> None:
    x, y = data()
    make(tmp_path).train(numpy_input_fn(x, y, batch_size=50), max_steps=2)
    latest = ckpt.latest_checkpoint(tmp_path)
    assert latest is not None and "dropout" not in ckpt.load(latest)["params"]
    with pytest.raises(aekit.ConfigError, match="trained with dropout=None"):
        StackedDenoisingAutoencoder(
            [16, 8], noise_factor=0.3, input_shape=(8, 8), model_dir=tmp_path, dropout=0.2,
            pretrain_learning_rates=[1e-2, 1e-2], finetune_learning_rate=1e-2,
        ).train(numpy_input_fn(x, y, batch_size=50), max_steps=3)  # fmt: skip
