"""Every command and code block of every docs page runs, in reading order; the site builds.

How a page's blocks are run (docs/*.md and below; tests/runnable_docs.py parses them):

- Each page runs in a fresh temporary working directory holding a copy of `examples/`, with
  stand-ins beside it: `../shared/data/mnist-split` and `mnist-full` (256 training and 64 test
  random 28x28 images with labels 0..9, IDX files) and `../shared/data/adbench/6_cardio.npz`
  (200 rows). `AEKIT_DATA_DIR` holds the same stand-in images for `--dataset mnist`,
  `fashion_mnist` and `kmnist`, so nothing is downloaded; `digits` is scikit-learn's own.
- ```` ```python ```` blocks run in order in one namespace per page, as one Python session
  would: a later block may use what an earlier one made.
- ```` ```bash ```` (or `sh`, `shell`) blocks: every line starting with `aekit ` or
  `python examples/` runs (a leading `$ ` is dropped, `\\` continues a line, `&&` and `;`
  separate commands, `#` starts a comment, a pipe's right side is dropped); other lines
  (`pip`, `torchrun`, `tensorboard`, `cd`) are shown, not run. In ```` ```console ````
  blocks only the lines starting with `$ ` are commands; the rest is their output, not
  checked. Each must exit with status 0. Commands run in this process (`aekit` through its
  entry point), interleaved with the Python blocks in reading order.
- A block whose fence names a file, e.g. ```` ```toml title="config.toml" ````, is written
  to that file (relative to the working directory) instead of run, for the blocks after it.
- A block preceded by the line `<!-- no-test -->` (blank lines may come between) is skipped:
  for downloads, GPUs, several machines, installs. Blocks of other languages (text, toml,
  yaml, json, none) are shown, not run.
- Keep it fast: the whole module should take a minute or two, so pages use tiny settings
  (`--epochs 1`, `--dataset digits`, a few steps).

A failure names the page (the test's parameter) and the block's line; Python tracebacks
point at the page's own line numbers.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from aekit.cli.settings import SETTINGS
from runnable_docs import (
    ROOT,
    Block,
    block_commands,
    code_blocks,
    make_checkout,
    run_command,
    stand_in_downloads,
)

DOCS = ROOT / "docs"
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
PYTHON = ("python", "py")
SHELL = ("bash", "sh", "shell", "console")
GENERATED = ("reference/cli.md",)  # written by docs/hooks/cli_reference.py at build time


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_the_page_runs_as_written(
    page: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    path = DOCS / page
    work = make_checkout(tmp_path)
    stand_in_downloads(tmp_path / "aekit-data", monkeypatch)
    monkeypatch.chdir(work)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict[str, object] = {"__name__": "__docs__"}
    try:
        for block in code_blocks(path.read_text()):
            if not block.skip:
                _run_block(block, page, namespace, monkeypatch, capfd)
    finally:
        import matplotlib.pyplot as plt

        plt.close("all")


def _run_block(
    block: Block,
    page: str,
    namespace: dict[str, object],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    where = f"{page}, the block at line {block.line}"
    if block.title is not None:
        target = Path(block.title)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.code)
    elif block.language in PYTHON:
        # blank lines first, so that a traceback's line numbers are the page's
        code = compile("\n" * block.line + block.code, str(DOCS / page), "exec")
        try:
            exec(code, namespace)
        except Exception as exc:
            raise AssertionError(f"{where} raised {exc!r}") from exc
    elif block.language in SHELL:
        for command in block_commands(block):
            status = run_command(command, monkeypatch)
            errors = capfd.readouterr().err[-3000:]
            assert status == 0, f"{where}: `{command}` exited with {status}\n{errors}"


def test_blocks_are_read_as_the_docstring_says() -> None:
    text = "\n".join(
        [
            "# A page",
            "```bash",
            "pip install aekit",
            "aekit train fully_connected \\",
            "    --dataset digits --epochs 1  # one pass",
            "$ aekit evaluate --model-dir runs/x && python examples/fc_autoencoder.py --help",
            "aekit score --model-dir runs/x | head -3",
            "```",
            "<!-- no-test -->",
            "",
            "```bash",
            "aekit train convolutional --device cuda",
            "```",
            "- a list item:",
            "",
            "    ```console",
            "    $ aekit --version",
            "    aekit 0.1.0",
            "    ```",
            '```toml title="config.toml"',
            "epochs = 1",
            "```",
            "```python",
            "x = 1",
            "```",
        ]
    )
    blocks = code_blocks(text)
    assert [(b.language, b.line, b.skip, b.title) for b in blocks] == [
        ("bash", 2, False, None),
        ("bash", 11, True, None),
        ("console", 16, False, None),
        ("toml", 20, False, "config.toml"),
        ("python", 23, False, None),
    ]
    assert block_commands(blocks[0]) == [
        "aekit train fully_connected --dataset digits --epochs 1",
        "aekit evaluate --model-dir runs/x",
        "python examples/fc_autoencoder.py --help",
        "aekit score --model-dir runs/x",
    ]
    assert block_commands(blocks[2]) == ["aekit --version"]
    assert blocks[3].code == "epochs = 1\n" and blocks[4].code == "x = 1\n"


def _nav_pages(entries: object) -> list[str]:
    """The pages named in mkdocs.yml's nav, depth first."""
    if isinstance(entries, str):
        return [entries]
    if isinstance(entries, list):
        return [page for entry in entries for page in _nav_pages(entry)]
    if isinstance(entries, dict):
        return [page for value in entries.values() for page in _nav_pages(value)]
    return []


def test_every_page_is_in_the_nav_and_every_nav_page_exists() -> None:
    nav = _nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    assert len(nav) == len(set(nav)), "a page is twice in the nav"
    assert set(nav) == set(PAGES) | set(GENERATED)


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "cli_reference", DOCS / "hooks" / "cli_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_command_line_reference_names_every_setting_and_option() -> None:
    from aekit.cli.main import _parser, _subparser

    page: str = _hook().cli_reference()
    for setting in SETTINGS:
        assert f"`{setting.name}`" in page, setting.name
        if setting.flag:
            assert f"`--{setting.name.replace('_', '-')}`" in page, setting.name
    parser = _parser()
    commands = ("train", "evaluate", "reconstruct", "embed", "export", "sample", "likelihood")
    for command in (*commands, "score"):
        assert f"## aekit {command}\n" in page
        for action in _subparser(parser, command)._actions:
            if action.dest == "help":
                continue
            assert any(f"`{s}`" in page for s in action.option_strings or ["MODEL"]), action


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    missing = [m for m in ("mkdocs", "material", "mkdocstrings") if not importlib.util.find_spec(m)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: pip install -e '.[docs]' (CI has it)")
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-5000:]
    cli = (site / "reference" / "cli" / "index.html").read_text()
    assert all(s.name in cli for s in SETTINGS)
    assert "aekit.estimator.Estimator" in (site / "reference" / "api" / "index.html").read_text()
