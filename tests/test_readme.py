"""Every README command and Python snippet, run verbatim on stand-ins for the shared MNIST.

They name `../shared/data/mnist-split` and `mnist-full`; here each holds 256 training and 64
test images in the same IDX layout, so everything runs as written in seconds (and ADBench's
cardio table is 200 random rows). Left out: what
downloads MNIST (`aekit ... --dataset mnist`), starts a server (`tensorboard`) or installs (`pip`).
"""

from __future__ import annotations

import re
import runpy
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from aekit.cli.main import main
from aekit.data.idx import write_idx

README = Path(__file__).resolve().parents[1] / "README.md"
SPLIT_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)  # fmt: skip


def readme_commands() -> list[str]:
    """Every `aekit ...` and `python examples/...` command of the README, in reading order.

    Lines of the bash blocks (continuations joined) and inline code spans alike; a span that is
    only a verb or holds a placeholder (`aekit train MODEL`, `--seed S`) is prose, not a command.
    """
    commands = []
    spans = re.findall(r"```bash\n(.*?)```|```.*?```|`([^`]+)`", README.read_text(), re.S)
    for block, inline in spans:
        lines = block.replace("\\\n", " ").splitlines() if block else [" ".join(inline.split())]
        for line in lines:
            for part in line.split("#", 1)[0].split("&&"):
                words = part.split()
                aekit = words[:1] == ["aekit"] and len(words) > 2
                example = len(words) > 1 and words[0] == "python" and "examples/" in words[1]
                if (aekit or example) and part.islower():
                    commands.append(" ".join(words))
    # full MNIST is downloaded, not stood in for (the examples' --dataset mnist is the split)
    return [c for c in commands if not (c.startswith("aekit") and "--dataset mnist" in c)]


def stand_in_split(directory: Path) -> None:
    """256 training and 64 test 28x28 images with every digit among the labels."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True)
    arrays = (
        rng.integers(0, 256, (256, 28, 28), dtype=np.uint8),
        (np.arange(256) % 10).astype(np.uint8),
        rng.integers(0, 256, (64, 28, 28), dtype=np.uint8),
        (np.arange(64) % 10).astype(np.uint8),
    )
    for name, array in zip(SPLIT_FILES, arrays, strict=True):
        write_idx(directory / name, array)


def stand_in_table(path: Path) -> None:
    """An ADBench-like table: 21 float features, label 1 on a tenth of the rows."""
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True)
    np.savez(path, X=rng.normal(size=(200, 21)) * 10, y=(np.arange(200) % 10 == 0).astype(int))


def test_the_readme_has_the_commands_it_should() -> None:
    commands = readme_commands()
    assert commands[0] == "aekit train fully_connected --dataset digits --model-dir runs/digits"
    for verb in ("train", "evaluate", "reconstruct", "embed", "export", "sample", "score"):
        assert any(c.startswith(f"aekit {verb} ") for c in commands), verb


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A folder to type the README in: the examples inside, ../shared/data/mnist-split beside it."""
    for name in ("mnist-split", "mnist-full"):
        stand_in_split(tmp_path / "shared" / "data" / name)
    stand_in_table(tmp_path / "shared" / "data" / "adbench" / "6_cardio.npz")
    work = tmp_path / "checkout"
    # the examples find ../shared from their own path, so they run from a copy here
    shutil.copytree(README.parent / "examples", work / "examples")
    return work


@pytest.mark.slow
def test_every_readme_command_runs_as_written(
    checkout: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In this process (a new interpreter per command would double the time): `aekit` through
    its entry point, the examples as `python` runs them, with their folder on sys.path."""
    monkeypatch.chdir(checkout)
    monkeypatch.syspath_prepend(str(checkout / "examples"))
    ran = []
    for command in readme_commands():
        program, *args = shlex.split(command)
        with monkeypatch.context() as m:
            if program == "aekit":
                code = main(args)
            else:
                m.setattr(sys, "argv", args)
                runpy.run_path(args[0], run_name="__main__")
                code = 0
        assert code == 0, f"{command}\n{capsys.readouterr().err[-2000:]}"
        ran.append(args[0])
    assert ran.count("train") >= 3 and "score" in ran and "sample" in ran


@pytest.mark.slow
def test_the_readme_python_snippets_run_in_order(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snippets run in one namespace, as a user pasting them into one session would."""
    monkeypatch.chdir(checkout)
    namespace: dict[str, object] = {"__name__": "__readme__"}
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    for code in blocks:
        exec(compile(code, str(README), "exec"), namespace)
    assert len(blocks) >= 2 and {"est", "detector"} <= namespace.keys()
