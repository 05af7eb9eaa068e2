"""The seed autoencoders: exact sizes, shapes, the training path and their summaries."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import aekit
from aekit.data import numpy_input_fn
from aekit.models import ConvolutionalNetwork, FullyConnectedNetwork, ReconstructionNetwork
from aekit.models.heads import l2_of_weights

TRAIN, EVAL = aekit.ModeKeys.TRAIN, aekit.ModeKeys.EVAL


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def digits(n: int = 64) -> np.ndarray:
    """Real handwritten digits: scikit-learn's bundled 8x8 images as uint8."""
    from aekit.data import load_digits

    return load_digits()[0][:n]


def test_exact_parameter_counts_of_the_seeds(tmp_path: Path) -> None:
    assert count(FullyConnectedNetwork((28, 28), [128, 64, 32])) == 222_384
    assert count(ConvolutionalNetwork((1, 28, 28), [16, 8, 8])) == 7_873
    est = aekit.ConvolutionalAutoencoder(model_dir=tmp_path)
    assert count(est.network) == 7_873


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 7, 9), (2, 33, 17)])
@pytest.mark.parametrize("downsample", ["max_pool", "strided"])
def test_conv_output_matches_any_input_shape(shape: tuple[int, int, int], downsample: str) -> None:
    net = ConvolutionalNetwork(shape, [4, 4], downsample)  # type: ignore[arg-type]
    x = torch.rand(3, *shape)
    logits, code = net(x)
    assert logits.shape == x.shape
    assert code.shape[:2] == (3, 4)


def test_conv_accepts_flat_and_hw_inputs() -> None:
    net = ConvolutionalNetwork((1, 28, 28), [4])
    assert net(torch.rand(2, 784))[0].shape == (2, 784)
    assert net(torch.rand(2, 28, 28))[0].shape == (2, 28, 28)
    with pytest.raises(aekit.InputError, match="do not fit the model's input shape"):
        net(torch.rand(2, 30, 30))


def test_channels_last_gives_the_same_numbers_and_gradients() -> None:
    """channels_last also computes the one-channel output layer as a depthwise convolution
    and a channel sum; values and every gradient match the transposed convolution's."""
    torch.manual_seed(0)
    a = ConvolutionalNetwork(channels_last=True)
    b = ConvolutionalNetwork(channels_last=False)
    b.load_state_dict(a.state_dict())
    x = torch.rand(4, 28, 28)
    out_a, out_b = a(x)[0], b(x)[0]
    torch.testing.assert_close(out_a, out_b, rtol=1e-4, atol=1e-5)
    out_a.square().sum().backward()
    out_b.square().sum().backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert pa.grad is not None and pb.grad is not None, name
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-4, atol=1e-4, msg=name)


def test_fc_shapes_and_predict_keys(tmp_path: Path) -> None:
    est = aekit.AutoEncoder([16, 4], input_shape=(8, 8), model_dir=tmp_path)
    est.save_checkpoint()  # evaluate and predict need a checkpoint
    out = next(est.predict(numpy_input_fn(digits(3), shuffle=False)))
    assert set(out) == {"prediction", "embedding", "reconstruction_error"}
    assert out["prediction"].shape == (8, 8) and out["embedding"].shape == (4,)
    assert out["prediction"].min() >= 0 and out["prediction"].max() <= 1
    expected = ((out["prediction"] - digits(3)[0] / 255.0) ** 2).mean()
    assert out["reconstruction_error"] == pytest.approx(expected, rel=1e-5)
    # Class labels in the input (as a labelled data set gives them) do not disturb predict.
    labelled = numpy_input_fn(digits(3), np.arange(3), shuffle=False)
    assert len(list(est.predict(labelled))) == 3


@pytest.mark.parametrize("kind", ["fc", "conv"])
def test_loss_decreases_when_training(tmp_path: Path, kind: str) -> None:
    config = aekit.RunConfig(random_seed=0, log_step_count_steps=0, save_summary_steps=0)
    if kind == "fc":
        est: aekit.Estimator = aekit.AutoEncoder(
            [32, 8], input_shape=(8, 8), learning_rate=1e-2, model_dir=tmp_path, config=config
        )
    else:
        est = aekit.ConvolutionalAutoencoder(
            [8, 4], image_shape=(1, 8, 8), learning_rate=1e-2, model_dir=tmp_path, config=config
        )
    est.save_checkpoint()  # evaluate and predict need a checkpoint
    data = digits()
    before = est.evaluate(numpy_input_fn(data, shuffle=False))
    est.train(numpy_input_fn(data, batch_size=16, num_epochs=15, seed=0))
    after = est.evaluate(numpy_input_fn(data, shuffle=False))
    assert after["loss"] < 0.8 * before["loss"]
    assert after["rmse"] < before["rmse"]


def test_weight_decay_is_on_weights_only_and_in_training_only(tmp_path: Path) -> None:
    net = FullyConnectedNetwork((4,), [3])
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.fill_(0.0 if "weight" in name else 5.0)
    assert float(l2_of_weights(net).detach()) == 0.0
    est = aekit.AutoEncoder([3], input_shape=(4,), weight_decay=0.5, model_dir=tmp_path)
    x = torch.rand(8, 4, device=est.device)
    network = cast(ReconstructionNetwork, est.network)
    weights = sum(float(p.detach().square().sum()) for p in network.parameters() if p.dim() > 1)
    spec_train = aekit.models.reconstruction_model_fn(
        network, x, None, aekit.ModeKeys.TRAIN, est.params
    )
    spec_eval = aekit.models.reconstruction_model_fn(
        network, x, None, aekit.ModeKeys.EVAL, est.params
    )
    assert spec_train.loss is not None and spec_eval.loss is not None
    assert float((spec_train.loss - spec_eval.loss).detach()) == pytest.approx(
        0.5 * 0.5 * weights, rel=1e-4
    )


def test_dropout_only_in_training_mode() -> None:
    net = FullyConnectedNetwork((64,), [64, 32], keep_prob=0.5)
    x = torch.rand(4, 64)
    net.eval()
    assert torch.equal(net(x)[0], net(x)[0])
    net.train()
    torch.manual_seed(0)
    assert not torch.equal(net(x)[0], net(x)[0])
    with pytest.raises(aekit.ConfigError, match="keep_prob is a keep probability"):
        aekit.AutoEncoder(keep_prob=0.0, input_shape=(4,)).save_checkpoint()  # builds it
    # `dropout` is a drop rate wherever it is a name: the seed's keep probability is not one.
    with pytest.raises(TypeError, match="dropout"):
        aekit.AutoEncoder(dropout=0.2)  # type: ignore[call-arg]


def test_denoising_target_is_the_clean_image(tmp_path: Path) -> None:
    est = aekit.AutoEncoder([8], input_shape=(8, 8), noise_factor=0.5, model_dir=tmp_path)
    est.save_checkpoint()  # evaluate and predict need a checkpoint
    x = torch.from_numpy(digits(16)).float().to(est.device) / 255
    network = cast(ReconstructionNetwork, est.network)
    torch.manual_seed(0)
    with torch.no_grad():
        spec = aekit.models.reconstruction_model_fn(
            network, x, None, aekit.ModeKeys.EVAL, est.params
        )
    assert spec.predictions is not None
    probs = spec.predictions["prediction"]
    assert spec.eval_metric_ops["rmse"].result() == pytest.approx(
        float((probs.double() - x.double()).square().mean().sqrt()), rel=1e-6
    )
    assert spec.eval_metric_ops["noisy_input_rmse"].result() > 0.1
    results = est.evaluate(numpy_input_fn(digits(16), shuffle=False))
    assert set(results) >= {"rmse", "noisy_input_rmse", "loss"}


def test_bad_hyper_parameters() -> None:
    with pytest.raises(aekit.ConfigError, match="hidden_units"):
        aekit.AutoEncoder([])
    with pytest.raises(aekit.ConfigError, match="learning_rate"):
        aekit.AutoEncoder(learning_rate=0)
    with pytest.raises(aekit.ConfigError, match="unknown activation 'swish'"):
        aekit.AutoEncoder(activation_fn="swish")
    with pytest.raises(aekit.ConfigError, match="unknown noise"):
        aekit.AutoEncoder(noise=("blur", 0.1))
    with pytest.raises(aekit.ConfigError, match="downsample"):
        aekit.ConvolutionalAutoencoder(downsample="avg")  # type: ignore[arg-type]


def test_learning_rate_decays_in_stairs(tmp_path: Path) -> None:
    est = aekit.AutoEncoder([4], input_shape=(8, 8), learning_rate=0.1, model_dir=tmp_path)
    scheduler = est._state.lr_scheduler
    assert scheduler is not None
    for _ in range(999):
        est.optimizer.step()  # no gradients: changes nothing, keeps the scheduler's order check
        scheduler.step()
    assert est.optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    est.optimizer.step()
    scheduler.step()
    assert est.optimizer.param_groups[0]["lr"] == pytest.approx(0.096)


@pytest.mark.parametrize("kind", ["fc", "conv"])
def test_seed_summaries_are_written(tmp_path: Path, kind: str) -> None:
    config = aekit.RunConfig(save_summary_steps=2, log_step_count_steps=0)
    if kind == "fc":
        est: aekit.Estimator = aekit.AutoEncoder(
            [16, 4], input_shape=(8, 8), noise_factor=0.3, model_dir=tmp_path, config=config
        )
    else:
        est = aekit.ConvolutionalAutoencoder(
            [4], image_shape=(1, 8, 8), noise_factor=0.3, model_dir=tmp_path, config=config
        )
    est.train(numpy_input_fn(digits(), batch_size=16), max_steps=4)
    events = EventAccumulator(str(tmp_path / "train"), size_guidance={"histograms": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    assert {"loss", "learning_rate", "global_gradient_norm"} <= set(tags["scalars"])
    assert any(t.startswith("zero_fraction/") for t in tags["scalars"])
    assert any(t.startswith("parameters/") for t in tags["histograms"])
    assert any(t.startswith("activations/") for t in tags["histograms"])
    assert {"images/input", "images/corrupted_input", "images/reconstruction"} <= set(
        tags["images"]
    )
    fractions = [t for t in tags["scalars"] if t.startswith("zero_fraction/")]
    assert all(0.0 <= e.value <= 1.0 for t in fractions for e in events.Scalars(t))
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 4]


def test_l2_of_weights_value_and_gradient_match_autograd_of_the_formula() -> None:
    torch.manual_seed(0)
    net = FullyConnectedNetwork((6,), [5, 3])
    l2_of_weights(net).backward()  # type: ignore[no-untyped-call]
    fused = {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}
    net.zero_grad(set_to_none=True)
    weights = [p for p in net.parameters() if p.dim() > 1]
    reference = 0.5 * sum(w.square().sum() for w in weights)
    assert isinstance(reference, torch.Tensor)
    reference.backward()  # type: ignore[no-untyped-call]
    torch.testing.assert_close(l2_of_weights(net).detach(), reference.detach())
    assert set(fused) == {n for n, p in net.named_parameters() if p.dim() > 1}  # no bias grads
    for name, p in net.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(fused[name], p.grad)
