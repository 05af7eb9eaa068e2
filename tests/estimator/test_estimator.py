"""Estimator.train / evaluate / predict with a tiny model_fn."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import aekit
from aekit.estimator import checkpoint as ckpt
from aekit.hooks import Hook, RunContext, StepResult
from tiny import batches, quiet_estimator, tiny_autoencoder_fn, tiny_data, tiny_network


def make(model_dir: Path, **config: Any) -> aekit.Estimator:
    return quiet_estimator(model_dir, **config)


def endless() -> Iterator[torch.Tensor]:
    """Batches drawn from torch's global generator, so a restored RNG replays them."""
    while True:
        yield torch.rand(16, 8)


def test_steps_add_and_max_steps_is_absolute(tmp_path: Path) -> None:
    est = make(tmp_path)
    est.train(endless, steps=5)
    assert est.global_step == 5
    est.train(endless, steps=3)
    assert est.global_step == 8
    est.train(endless, max_steps=12)
    assert est.global_step == 12
    est.train(endless, max_steps=12)
    assert est.global_step == 12
    assert ckpt.step_of(est.latest_checkpoint()) == 12  # type: ignore[arg-type]


def test_train_until_input_ends_and_saves(tmp_path: Path) -> None:
    est = make(tmp_path)
    est.train(batches(tiny_data(), 16, epochs=2))
    assert est.global_step == 8
    assert [ckpt.step_of(p) for p in ckpt.list_checkpoints(tmp_path)] == [8]


def test_steps_and_max_steps_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(aekit.ConfigError, match="not both"):
        make(tmp_path).train(endless, steps=1, max_steps=2)
    with pytest.raises(aekit.ConfigError, match="positive integer"):
        make(tmp_path).train(endless, steps=0)


def test_new_estimator_resumes_from_model_dir(tmp_path: Path) -> None:
    make(tmp_path).train(endless, max_steps=6)
    again = make(tmp_path)
    again.train(endless, steps=4)
    assert again.global_step == 10


def test_resume_reproduces_an_uninterrupted_run(tmp_path: Path) -> None:
    config = {"random_seed": 3, "save_checkpoints_steps": 7}
    straight = make(tmp_path / "a", **config)
    straight.train(endless, max_steps=20)
    make(tmp_path / "b", **config).train(endless, max_steps=10)
    resumed = make(tmp_path / "b", **config)  # a new process would look like this
    resumed.train(endless, max_steps=20)
    for a, b in zip(straight.network.parameters(), resumed.network.parameters(), strict=True):
        assert torch.equal(a, b)
    # Without restoring the RNG the data would differ: a run seeded differently diverges.
    other = make(tmp_path / "c", random_seed=4)
    other.train(endless, max_steps=20)
    first = next(other.network.parameters())
    assert not torch.equal(first, next(straight.network.parameters()))


def test_lr_scheduler_state_resumes(tmp_path: Path) -> None:
    def build() -> aekit.Estimator:
        return aekit.Estimator(
            tiny_autoencoder_fn,
            tiny_network(),
            optimizer=lambda p: torch.optim.SGD(p, lr=1.0),
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.5),
            model_dir=tmp_path,
            config=aekit.RunConfig(log_step_count_steps=0, save_summary_steps=0),
        )

    build().train(endless, max_steps=6)
    est = build()
    est.train(endless, max_steps=9)
    assert est.optimizer.param_groups[0]["lr"] == pytest.approx(0.25)


def test_evaluate_aggregates_over_the_whole_input(tmp_path: Path) -> None:
    est = make(tmp_path)
    x = tiny_data(50)
    est.train(batches(x, 10))
    whole = est.evaluate([x])
    in_uneven_batches = est.evaluate(batches(x, 16))  # 16, 16, 16, 2
    assert in_uneven_batches["rmse"] == pytest.approx(whole["rmse"], rel=1e-9)
    assert in_uneven_batches["loss"] == pytest.approx(whole["loss"], rel=1e-5)
    assert whole["global_step"] == 5
    probs = torch.sigmoid(est.network(x.to(est.device))).detach().cpu()
    assert whole["rmse"] == pytest.approx(float((probs - x).square().mean().sqrt()), rel=1e-5)
    assert est.evaluate(batches(x, 16), steps=1)["rmse"] != pytest.approx(whole["rmse"], rel=1e-9)


def test_evaluate_on_a_given_checkpoint(tmp_path: Path) -> None:
    est = make(tmp_path, save_checkpoints_steps=2)
    x = tiny_data()
    est.train(batches(x, 8))
    early = est.evaluate([x], checkpoint_path=tmp_path / "ckpt-2.pt")
    late = est.evaluate([x])
    assert early["global_step"] == 2 and late["global_step"] == 8
    assert early["loss"] != late["loss"]


def test_evaluate_without_batches_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(aekit.InputError, match="no batches"):
        est = make(tmp_path)
        est.save_checkpoint()
        est.evaluate([])


def test_predict_yields_single_examples_as_numpy(tmp_path: Path) -> None:
    est = make(tmp_path)
    est.save_checkpoint()  # evaluate and predict need a checkpoint
    x = tiny_data(10)
    out = list(est.predict(batches(x, 4)))
    assert len(out) == 10
    assert set(out[0]) == {"prediction", "code"}
    assert isinstance(out[0]["prediction"], np.ndarray) and out[0]["prediction"].shape == (8,)
    expected = torch.sigmoid(est.network(x.to(est.device))).detach().cpu().numpy()
    np.testing.assert_allclose(np.stack([o["prediction"] for o in out]), expected, rtol=1e-6)
    only = list(est.predict(batches(x, 4), predict_keys=["code"], yield_single_examples=False))
    assert [o["code"].shape for o in only] == [(4, 4), (4, 4), (2, 4)]
    with pytest.raises(aekit.SpecError, match="not among the predictions"):
        list(est.predict(batches(x, 4), predict_keys=["nope"]))


def test_predict_uses_a_given_checkpoint(tmp_path: Path) -> None:
    est = make(tmp_path, save_checkpoints_steps=1, keep_checkpoint_max=0)
    x = tiny_data(8)
    est.train(batches(x, 4, epochs=3))
    first = next(est.predict([x], checkpoint_path=tmp_path / "ckpt-1.pt"))["prediction"]
    last = next(est.predict([x]))["prediction"]
    assert not np.allclose(first, last)


def test_keep_checkpoint_max_prunes(tmp_path: Path) -> None:
    est = make(tmp_path, save_checkpoints_steps=1, keep_checkpoint_max=3)
    est.train(endless, max_steps=7)
    assert [ckpt.step_of(p) for p in ckpt.list_checkpoints(tmp_path)] == [5, 6, 7]


def test_corrupt_newest_checkpoint_falls_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make(tmp_path, save_checkpoints_steps=3).train(endless, max_steps=6)
    newest = tmp_path / "ckpt-6.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    est = make(tmp_path)
    with caplog.at_level(logging.WARNING, logger="aekit"):
        est.train(endless, steps=1)
    assert "skipping unreadable checkpoint" in caplog.text and "ckpt-6.pt" in caplog.text
    assert est.global_step == 4  # resumed from ckpt-3


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    def poisoned() -> Iterator[torch.Tensor]:
        for step in range(100):
            batch = torch.rand(16, 8)
            if step == 5:
                batch[0, 0] = float("nan")
            yield batch

    est = make(tmp_path, save_checkpoints_steps=2)
    with pytest.raises(aekit.NanLossError, match=r"step 6.*ckpt-4.pt"):
        est.train(poisoned)
    assert [ckpt.step_of(p) for p in ckpt.list_checkpoints(tmp_path)] == [2, 4]
    assert all(
        torch.isfinite(t).all() for t in ckpt.load(tmp_path / "ckpt-4.pt")["network"].values()
    )
    with pytest.raises(aekit.NanLossError):
        est.save_checkpoint()


def test_hook_request_stop_and_call_order(tmp_path: Path) -> None:
    calls: list[str] = []

    class StopAtThree(Hook):
        def begin(self, context: RunContext) -> None:
            calls.append("begin")

        def after_create_session(self, context: RunContext) -> None:
            calls.append(f"session@{context.global_step}")

        def before_run(self, context: RunContext) -> None:
            calls.append("before")

        def after_run(self, context: RunContext, result: StepResult) -> None:
            calls.append(f"after@{context.global_step}:{result.batch_size}")
            if context.global_step == 3:
                context.request_stop()

        def end(self, context: RunContext) -> None:
            calls.append("end")

    est = make(tmp_path)
    est.train(endless, hooks=[StopAtThree()])
    assert est.global_step == 3
    assert calls == [
        "begin", "session@0",
        "before", "after@1:16", "before", "after@2:16", "before", "after@3:16",
        "end",
    ]  # fmt: skip


def test_stateful_hook_state_travels_with_the_checkpoint(tmp_path: Path) -> None:
    class CountBatches(Hook):
        def __init__(self) -> None:
            self.seen = 0

        def after_run(self, context: RunContext, result: StepResult) -> None:
            self.seen += result.batch_size

        def state_dict(self) -> dict[str, int]:
            return {"seen": self.seen}

        def load_state_dict(self, state: dict[str, int]) -> None:
            self.seen = state["seen"]

    make(tmp_path).train(endless, hooks=[CountBatches()], max_steps=3)
    counter = CountBatches()
    make(tmp_path).train(endless, hooks=[counter], max_steps=5)
    assert counter.seen == 5 * 16


def test_model_fn_must_return_a_spec_of_its_mode(tmp_path: Path) -> None:
    est = aekit.Estimator(
        lambda network, features, labels, mode, params: {"loss": 1},  # type: ignore[arg-type,return-value]
        tiny_network(),
        model_dir=tmp_path,
    )
    est.save_checkpoint()  # evaluate and predict need a checkpoint
    with pytest.raises(aekit.SpecError, match="must return aekit.EstimatorSpec"):
        est.train(endless, steps=1)

    def wrong_mode(network, features, labels, mode, params):  # type: ignore[no-untyped-def]
        return aekit.EstimatorSpec(aekit.ModeKeys.PREDICT, predictions={"x": features})

    est = aekit.Estimator(wrong_mode, tiny_network(), model_dir=tmp_path)
    with pytest.raises(aekit.SpecError, match="called in EVAL mode but returned a PREDICT"):
        est.evaluate([tiny_data()])


def test_bad_input_fn_results(tmp_path: Path) -> None:
    est = make(tmp_path)
    with pytest.raises(aekit.InputError, match="not an iterable of batches"):
        est.train(lambda: 3, steps=1)  # type: ignore[arg-type,return-value]
    with pytest.raises(aekit.InputError, match="sequence of 3 items"):
        est.train([(tiny_data(), None, None)], steps=1)
    with pytest.raises(aekit.InputError, match="holds a str"):
        est.train([("abc", None)], steps=1)


def test_numpy_batches_and_labels(tmp_path: Path) -> None:
    est = make(tmp_path)
    x = tiny_data(16).numpy()
    est.train([(x, x)])
    assert est.global_step == 1


def test_temporary_model_dir_and_properties(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    est = aekit.Estimator(tiny_autoencoder_fn, tiny_network(), params={"learning_rate": 0.5})
    assert Path(est.model_dir).is_dir() and Path(est.model_dir).parent == tmp_path / "tmp"
    assert est.params == {"learning_rate": 0.5}
    assert est.optimizer.param_groups[0]["lr"] == 0.5
    assert est.config.model_dir == est.model_dir
    assert est.latest_checkpoint() is None
    with pytest.raises(aekit.ConfigError, match="contradicts config.model_dir"):
        aekit.Estimator(
            tiny_autoencoder_fn,
            tiny_network(),
            model_dir=tmp_path / "a",
            config=aekit.RunConfig(model_dir=str(tmp_path / "b")),
        )


def test_checkpoint_of_another_model_is_refused(tmp_path: Path) -> None:
    make(tmp_path).train(endless, steps=1)
    other = aekit.Estimator(
        tiny_autoencoder_fn, torch.nn.Sequential(torch.nn.Linear(8, 3)), model_dir=tmp_path
    )
    with pytest.raises(aekit.ConfigError, match="does not fit this model"):
        other.evaluate([tiny_data()])
