"""The package as a user gets it: `python -m build` makes a wheel and an sdist holding what
they must, and the README's user install, run as written in a new virtual environment
(torch from its CPU build, the rest from the package index), installs and trains; aekit
comes only from the wheel (PYTHONPATH is dropped, and the test checks where it is imported
from).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from runnable_docs import code_blocks

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
VERSION = PROJECT["version"]
EVERY_DEPENDENCY_FOUND = """
import importlib.metadata, re
for requirement in importlib.metadata.requires("aekit"):
    if "extra ==" not in requirement:
        importlib.metadata.version(re.split(r"[ <>=!~;\\[]", requirement)[0])
"""
NOT_SOURCE = (
    ".git", ".venv*", ".hypothesis", "runs", "site", "build", "dist", "*.egg-info", "__pycache__",
)  # fmt: skip


def _run(*command: str | Path, cwd: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel built from a copy of the checkout (the wheel from the sdist)."""
    for module in ("build", "setuptools"):
        if not _has(module):
            pytest.skip(f"{module} is not installed: pip install -e '.[test]'")
    tree = tmp_path_factory.mktemp("tree") / "aekit"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(*NOT_SOURCE, ".*_cache"))
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the build backend of this environment, nothing downloaded
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, tree)
    return out


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.mark.slow
def test_the_sdist_holds_what_a_build_needs(dist: Path) -> None:
    with tarfile.open(dist / f"aekit-{VERSION}.tar.gz") as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    needed = {
        "pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "src/aekit/__init__.py",
        "src/aekit/py.typed", "src/aekit/cli/main.py", "src/aekit/data/sources.py",
    }  # fmt: skip
    assert needed <= names, needed - names


@pytest.mark.slow
def test_the_wheel_holds_the_package_and_its_extras(dist: Path) -> None:
    wheel = dist / f"aekit-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"aekit-{VERSION}.dist-info/METADATA").decode()
    assert {
        "aekit/py.typed",
        "aekit/cli/main.py",
        f"aekit-{VERSION}.dist-info/licenses/LICENSE",
    } <= names
    for extra in PROJECT["optional-dependencies"]:
        assert f"Provides-Extra: {extra}" in metadata


@pytest.mark.slow
def test_the_readmes_user_install_works_as_written_in_a_new_environment(tmp_path: Path) -> None:
    """The README's user block, line by line, in a new venv inside a copy of the checkout."""
    [block] = [
        b for b in code_blocks((ROOT / "README.md").read_text()) if "test_package.py" in b.note
    ]
    tree = tmp_path / "aekit"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(*NOT_SOURCE, ".*_cache"))
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"  # as `source venv/bin/activate`
    env["VIRTUAL_ENV"] = str(venv)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.code],
        cwd=tree, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    where = _run(venv / "bin" / "python", "-c", "import aekit; print(aekit.__file__)").strip()
    assert Path(where).is_relative_to(venv), where  # the wheel's, not the clone's
    _run(venv / "bin" / "python", "-c", EVERY_DEPENDENCY_FOUND)
    assert _run(venv / "bin" / "aekit", "--version").strip() == f"aekit {VERSION}"
    assert (tree / "runs" / "first" / "hparams.json").is_file() and "loss=" in done.stdout
