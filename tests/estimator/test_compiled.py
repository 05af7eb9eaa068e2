"""RunConfig.compile: compiled training matches eager, and a broken compiler falls back."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

import aekit
from aekit.data import numpy_input_fn
from tiny import quiet_estimator, tiny_data


def _train(model_dir: Path, compile: bool | None, device: str = "auto") -> aekit.Estimator:
    est = quiet_estimator(model_dir, compile=compile, random_seed=0, device=device)
    x = tiny_data().numpy()
    est.train(numpy_input_fn(x, batch_size=16, num_epochs=None, seed=1), steps=5)
    return est


def test_compiling_is_asked_for() -> None:
    assert aekit.RunConfig().compiles is False  # measured no faster on a CPU or a GPU
    assert aekit.RunConfig(device="cpu").compiles is False
    assert aekit.RunConfig(device="cpu", compile=True).compiles is True
    with pytest.raises(aekit.ConfigError, match="compile must be"):
        aekit.RunConfig(compile="yes")  # type: ignore[arg-type]


@pytest.mark.slow
def test_compiled_training_matches_eager_and_keeps_parameter_names(tmp_path: Path) -> None:
    eager = _train(tmp_path / "eager", compile=False)
    compiled = _train(tmp_path / "compiled", compile=True)
    eager_state, compiled_state = eager.network.state_dict(), compiled.network.state_dict()
    assert list(compiled_state) == list(eager_state)
    for name, value in eager_state.items():
        torch.testing.assert_close(compiled_state[name], value, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_a_failing_compiler_falls_back_to_eager(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import torch._inductor.config as inductor_config

    # A C++ compiler that does not exist (the CPU's code generator; a GPU's is Triton), and
    # caches that cannot hand back earlier builds.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor-cache"))
    monkeypatch.setattr(inductor_config, "fx_graph_cache", False)
    monkeypatch.setattr(inductor_config.cpp, "cxx", (str(tmp_path / "no-such-c++"),))
    torch._dynamo.reset()
    with caplog.at_level(logging.WARNING, logger="aekit"):
        est = _train(tmp_path / "run", compile=True, device="cpu")
    torch._dynamo.reset()
    assert est.global_step == 5
    assert any("torch.compile failed" in r.getMessage() for r in caplog.records)
    reference = _train(tmp_path / "eager", compile=False, device="cpu")
    for name, value in reference.network.state_dict().items():
        torch.testing.assert_close(est.network.state_dict()[name], value)
