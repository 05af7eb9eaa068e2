"""docs/architecture.md is true: the layer rule of its module tree and its checkpoint fields."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import torch

from aekit.estimator import checkpoint as ckpt
from aekit.estimator.checkpoint import TrainingState

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "aekit"
PAGE = (ROOT / "docs" / "architecture.md").read_text()
TREE = PAGE.split("```\nsrc/aekit/\n", 1)[1].split("```", 1)[0]


def listed(indent: int) -> list[str]:
    """The module and package names the tree lists at one depth, in order."""
    pattern = rf"^ {{{indent}}}(\w+)(?:/|\.py)"
    return re.findall(pattern, TREE, flags=re.MULTILINE)


def runtime_imports(path: Path) -> set[str]:
    """The aekit modules `path` imports when it runs (not those for type checkers only)."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("aekit.")}


def check_order(order: list[str], modules: list[Path], depth: int) -> list[str]:
    """Imports of a later entry by an earlier one, within the names at `depth`."""
    rank = {name: i for i, name in enumerate(order)}
    wrong = []
    for path in modules:
        here = path.relative_to(SOURCE).with_suffix("").parts[depth]
        for name in runtime_imports(path):
            parts = name.split(".")
            if len(parts) <= depth + 1 or parts[depth + 1] == here or here == "__init__":
                continue
            there = parts[depth + 1]
            if there in rank and rank[there] > rank[here]:
                wrong.append(f"{path.relative_to(SOURCE)} imports {name}")
    return wrong


def test_every_module_is_listed_and_imports_only_what_is_listed_above_it() -> None:
    top = listed(2)
    present = {p.stem for p in SOURCE.glob("*.py")} | {
        p.name for p in SOURCE.iterdir() if p.is_dir()
    }
    assert present - {"__init__", "__pycache__", "py"} <= set(top), sorted(present - set(top))
    assert check_order(top, sorted(SOURCE.rglob("*.py")), 0) == []
    estimator = listed(4)
    files = sorted((SOURCE / "estimator").glob("*.py"))
    assert {p.stem for p in files} - {"__init__"} == set(estimator)
    assert check_order(estimator, files, 1) == []


def test_the_checkpoint_fields_are_those_the_page_names() -> None:
    network = torch.nn.Linear(2, 1)
    state = TrainingState(
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
        lr_scheduler=None,
        grad_scaler=None,
        shuffle_rng=torch.Generator(),
    )
    written = ckpt.build(state, {}, {}, [{}])
    sentence = PAGE.split("Their fields:", 1)[1].split(". ", 1)[0]
    named = re.findall(r"`(\w+)`", sentence)
    assert set(named) - {"state_dict"} == set(written)
