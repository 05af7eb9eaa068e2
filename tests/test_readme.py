"""The README's self-contained Python snippets, run verbatim (the others need long runs or data)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def snippets() -> list[str]:
    """Every ```python block of the README, in order."""
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def snippet_with(marker: str) -> str:
    found = [code for code in snippets() if marker in code]
    assert len(found) == 1, f"one README snippet should contain {marker!r}"
    return found[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    "marker",
    [
        "def model_fn(network, features, labels, mode, params):",  # the quick start
        "AutoencoderTransformer(hidden_units=(64, 16)",  # the scikit-learn pipeline
    ],
)
def test_readme_snippet_runs_as_written(
    marker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # snippets write under runs/, relative to where they run
    code = snippet_with(marker)
    namespace: dict[str, object] = {"__name__": "__readme__"}
    exec(compile(code, str(README), "exec"), namespace)
    assert os.listdir(tmp_path) == ["runs"] or "runs" not in code
