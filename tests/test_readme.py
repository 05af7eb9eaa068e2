"""Every README command and Python snippet, run verbatim on stand-ins for the shared MNIST.

They name `../shared/data/mnist-split` and `mnist-full`; here each holds 256 training and 64
test images in the same IDX layout, so everything runs as written in seconds (and ADBench's
cardio table is 200 random rows). Left out: what
downloads MNIST (`aekit ... --dataset mnist`), starts a server (`tensorboard`) or installs (`pip`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runnable_docs import make_checkout, run_command

README = Path(__file__).resolve().parents[1] / "README.md"


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


def test_the_readme_has_the_commands_it_should() -> None:
    commands = readme_commands()
    assert commands[0] == "aekit train fully_connected --dataset digits --model-dir runs/digits"
    for verb in ("train", "evaluate", "reconstruct", "embed", "export", "sample", "score"):
        assert any(c.startswith(f"aekit {verb} ") for c in commands), verb


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A folder to type the README in: the examples inside, ../shared/data/mnist-split beside it."""
    return make_checkout(tmp_path)


@pytest.mark.slow
def test_every_readme_command_runs_as_written(
    checkout: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In this process (a new interpreter per command would double the time): `aekit` through
    its entry point, the examples as `python` runs them, with their folder on sys.path."""
    monkeypatch.chdir(checkout)
    ran = []
    for command in readme_commands():
        code = run_command(command, monkeypatch)
        assert code == 0, f"{command}\n{capsys.readouterr().err[-2000:]}"
        ran.append(command.split()[1])
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
