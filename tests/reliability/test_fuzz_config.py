"""Fuzzing the settings the command line reads: config files and edited hparams.json.

Every case ends in a one-line ConfigError (or AekitError), or in settings that are all of
the right type and bounded in what they would write and allocate; quickly, with little
memory, and with nothing written. FUZZ_EXAMPLES cases each (env AEKIT_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aekit.cli import config as run_config
from aekit.cli import limits, run
from aekit.cli import settings as run_settings
from aekit.errors import AekitError, ConfigError
from fuzzing import Bounded, fuzz

MEMORY_LIMIT = 32 << 20  # a settings file may cost a few MiB to read, never gigabytes
SECONDS = 5.0

KEYS = [*sorted(run_settings.BY_NAME), "model", "unknown_key", "hidden-units", "exclude-classes",
        "bad\nkey"]  # fmt: skip
SIZES = st.sampled_from([1, 2, 8, 10**9, 2**40, 10**30, -1, 0])
SCALARS = (
    st.none()
    | st.booleans()
    | SIZES
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
    | st.sampled_from(["relu", "meta", "cpu", "fully_connected", "stacked", "variational"])
)


def nested(depth: int) -> st.SearchStrategy[Any]:
    """Values nested up to `depth` lists and tables deep."""
    return st.recursive(
        SCALARS,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.text("abcxyz_", min_size=1, max_size=4), inner, max_size=3)
        ),
        max_leaves=depth * 3,
    )


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text, text
    assert len(text) < 600, text  # a huge structure is summarised, never printed
    return text


@pytest.fixture(scope="module", autouse=True)
def imports_done(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Open a run once before fuzzing, so first-time imports do not count as allocations."""
    model_dir = tmp_path_factory.mktemp("warm")
    for model in ("fully_connected", "convolutional", "variational", "stacked", "classifier"):
        hparams = {**run_settings.model_settings(model), "example_shape": [8, 8]}
        (model_dir / run_config.HPARAMS_FILE).write_text(json.dumps(hparams))
        with pytest.raises(ConfigError, match="no checkpoint"):
            run.open_run(model_dir)


def accepted(resolved: dict[str, Any]) -> None:
    """What a run accepted must be typed, small to write and of bounded batch size."""
    run_settings.check_values(resolved)
    assert len(json.dumps(resolved)) < limits.MAX_SETTINGS_BYTES
    limits.check_batch_size(resolved, [8, 8])


# --- TOML and YAML text ----------------------------------------------------------------------


def toml_value(value: Any) -> str:
    """`value` as TOML (None has no TOML form: an empty inline table stands for it)."""
    if value is None:
        return "{}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


@st.composite
def alias_bombs(draw: st.DrawFn) -> str:
    """YAML whose anchors and aliases expand a few hundred bytes into a huge structure."""
    width = draw(st.integers(2, 12))
    levels = draw(st.integers(1, 9))
    key = draw(st.sampled_from(KEYS))
    lines = [f"l0: &l0 [{', '.join(['1'] * width)}]"]
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    inner = "\n  ".join(lines)
    return f"{key}:\n  {inner}\nepochs: *l{levels}\n"


@st.composite
def config_texts(draw: st.DrawFn) -> tuple[str, str]:
    """(suffix, text) of a config file: random settings, nesting, aliases or padding."""
    kind = draw(st.sampled_from(["yaml", "toml", "bomb", "deep", "huge", "raw"]))
    table = draw(st.dictionaries(st.sampled_from(KEYS), nested(4), max_size=5))
    if kind == "yaml":
        import yaml

        return "yaml", yaml.safe_dump(table)
    if kind == "toml":
        return "toml", "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in table.items())
    if kind == "bomb":
        return "yaml", draw(alias_bombs())
    if kind == "deep":
        depth = draw(st.integers(5, 5000))
        suffix = draw(st.sampled_from(["yaml", "toml"]))
        sep = ": " if suffix == "yaml" else " = "
        return suffix, f"hidden_units{sep}" + "[" * depth + "1" + "]" * depth + "\n"
    if kind == "huge":
        count = draw(st.sampled_from([10, 3000, 20_000]))
        suffix = draw(st.sampled_from(["yaml", "toml"]))
        sep = ": " if suffix == "yaml" else " = "
        return suffix, f"exclude_classes{sep}[" + ", ".join(["7"] * count) + "]\n"
    return draw(st.sampled_from(["yaml", "toml"])), draw(st.text(max_size=80))


@pytest.mark.slow
@fuzz
@given(case=config_texts(), model=st.sampled_from(["fully_connected", "variational", "stacked"]))
def test_fuzz_config_files(tmp_path: Path, case: tuple[str, str], model: str) -> None:
    suffix, text = case
    path = tmp_path / f"run.{suffix}"
    path.write_bytes(text.encode("utf-8"))
    model_dir = tmp_path / "model"
    try:
        with Bounded(MEMORY_LIMIT, SECONDS):
            resolved = run_config.resolve(model, model_dir, {}, path)
            accepted(resolved)
    except ConfigError as exc:
        one_line(exc)
    assert not model_dir.exists()  # nothing is written while settings are resolved


# --- hparams.json edits ----------------------------------------------------------------------


@st.composite
def hparams_edits(draw: st.DrawFn) -> str:
    """The text of an hparams.json: a real one with keys changed, removed or added."""
    model = draw(st.sampled_from(["fully_connected", "convolutional", "variational", "stacked",
                                  "classifier"]))  # fmt: skip
    data: Any = {**run_settings.model_settings(model), "example_shape": [8, 8]}
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from([*KEYS, "example_shape"]))
        action = draw(st.sampled_from(["set", "set", "sizes", "drop"]))
        if action == "drop":
            data.pop(key, None)
        elif action == "sizes":
            data[key] = draw(st.lists(SIZES, min_size=1, max_size=3))
        else:
            data[key] = draw(nested(4))
    kind = draw(st.sampled_from(["edit", "edit", "edit", "deep", "huge", "not-a-table", "raw"]))
    if kind == "deep":
        depth = draw(st.integers(5, 100_000))
        data["hidden_units"] = "DEEP"
        return json.dumps(data).replace('"DEEP"', "[" * depth + "1" + "]" * depth)
    if kind == "huge":
        data["dataset"] = "x" * draw(st.sampled_from([100, 70_000, 1_000_000]))
    if kind == "not-a-table":
        data = draw(st.lists(SCALARS, max_size=3))
    if kind == "raw":
        return draw(st.text(max_size=80))
    return json.dumps(data)


@fuzz
@given(text=hparams_edits())
def test_fuzz_hparams_json(tmp_path: Path, text: str) -> None:
    model_dir = tmp_path / "run"
    model_dir.mkdir(exist_ok=True)
    path = model_dir / run_config.HPARAMS_FILE
    path.write_bytes(text.encode("utf-8"))
    with Bounded(MEMORY_LIMIT, SECONDS), pytest.raises(AekitError) as info:
        # The dir holds no checkpoint: the best an hparams.json can get is that error.
        run.open_run(model_dir)
    one_line(info.value)
    assert sorted(p.name for p in model_dir.iterdir()) == [run_config.HPARAMS_FILE]
    assert path.read_bytes() == text.encode("utf-8")


@fuzz
@given(
    given_=st.dictionaries(
        st.sampled_from(sorted(run_settings.BY_NAME)), nested(3), min_size=1, max_size=4
    )
)
def test_fuzz_settings_given_in_python(tmp_path: Path, given_: dict[str, Any]) -> None:
    """Settings handed to `resolve` directly, as a program driving the CLI would."""
    try:
        with Bounded(MEMORY_LIMIT, SECONDS):
            resolved = run_config.resolve("fully_connected", tmp_path / "m", given_)
            accepted(resolved)
    except ConfigError as exc:
        one_line(exc)
    assert not (tmp_path / "m").exists()
