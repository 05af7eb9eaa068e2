"""What the README and docs tests share: stand-in data, a folder to type commands in, running them.

`../shared/data/mnist-split` and `mnist-full` hold here 256 training and 64 test images in the
same IDX layout, ADBench's cardio table is 200 random rows, and `AEKIT_DATA_DIR` holds the same
stand-in images for `--dataset mnist`, `fashion_mnist` and `kmnist` (nothing is downloaded).
"""

from __future__ import annotations

import re
import runpy
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from aekit.cli.main import main
from aekit.data.idx import write_idx

ROOT = Path(__file__).resolve().parents[1]
SPLIT_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)  # fmt: skip
DOWNLOADED = ("mnist", "fashion_mnist", "kmnist")


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


def make_checkout(tmp_path: Path) -> Path:
    """A folder to type commands in: the examples inside, ../shared/data beside it.

    The examples find ../shared from their own path, so they run from a copy here.
    """
    for name in ("mnist-split", "mnist-full"):
        stand_in_split(tmp_path / "shared" / "data" / name)
    stand_in_table(tmp_path / "shared" / "data" / "adbench" / "6_cardio.npz")
    work = tmp_path / "checkout"
    shutil.copytree(ROOT / "examples", work / "examples")
    return work


def stand_in_downloads(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`AEKIT_DATA_DIR` pointed at stand-ins of the data sets aekit would download."""
    for name in DOWNLOADED:
        stand_in_split(directory / name)
    monkeypatch.setenv("AEKIT_DATA_DIR", str(directory))


def run_command(command: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """`aekit ...` through its entry point, or `python examples/...` as python runs it.

    In this process (a new interpreter per command would double the time), with the
    examples' folder on sys.path; returns the exit status.
    """
    program, *args = shlex.split(command)
    with monkeypatch.context() as m:
        if program == "aekit":
            return main(args)
        m.syspath_prepend(str(Path(args[0]).resolve().parent))
        m.setattr(sys, "argv", args)
        try:
            runpy.run_path(args[0], run_name="__main__")
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        return 0


@dataclass(frozen=True)
class Block:
    """A fenced code block of a Markdown page."""

    language: str  # the first word of the fence's info string, lower case ("" for none)
    code: str  # without the fences, dedented
    line: int  # the line of the opening fence, 1-based
    skip: bool  # the block is preceded by <!-- no-test --> (or <!-- no-test: why -->)
    note: str  # the comment before the block, if any
    title: str | None  # title="..." of the fence's info string


FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
NO_TEST = "<!-- no-test -->"


def code_blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text, in reading order (indented ones too)."""
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        start = i
        body = []
        i += 1
        while i < len(lines) and not (
            lines[i].strip().startswith(fence) and set(lines[i].strip()) == {fence[0]}
        ):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        i += 1
        before = [line.strip() for line in lines[:start] if line.strip()]
        info = opening["info"].strip()
        title = re.search(r'title="([^"]+)"', info)
        blocks.append(
            Block(
                language=info.split()[0].lstrip(".{").lower() if info else "",
                code="\n".join(body) + "\n",
                line=start + 1,
                skip=bool(before) and before[-1].startswith(NO_TEST[:-4]),
                note=before[-1] if before and before[-1].startswith("<!--") else "",
                title=title[1] if title else None,
            )
        )
    return blocks


def block_commands(block: Block) -> list[str]:
    """The `aekit ...` and `python examples/...` commands of a bash or console block.

    Continued lines are joined, a leading `$ ` is dropped, `&&` and `;` separate commands,
    and comments end them. In a console block only the lines starting with `$ ` are commands
    (the rest is output). A pipe's right side is dropped (the output is not checked).
    """
    console = block.language == "console"
    commands = []
    for line in block.code.replace("\\\n", " ").splitlines():
        line = line.strip()
        if console and not line.startswith("$ "):
            continue
        line = line.removeprefix("$ ")
        words = shlex.split(line, comments=True)
        if "|" in words:
            words = words[: words.index("|")]
        if any(w.startswith(("<", ">", "2>")) for w in words):
            raise ValueError(f"{line!r}: a redirection; drop it, or mark the block {NO_TEST}")
        part: list[str] = []
        for word in [*words, ";"]:
            if word not in ("&&", ";"):
                part.append(word)
                continue
            example = part[:1] == ["python"] and len(part) > 1 and part[1].startswith("examples/")
            if part[:1] == ["aekit"] or example:
                commands.append(shlex.join(part))
            part = []
    return commands
