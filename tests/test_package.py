"""The package as a user gets it: `python -m build` makes a wheel and an sdist that install
into a fresh virtual environment, where `aekit` prints its version and help and trains.

The environment borrows the dependencies (torch and the rest) from the one running the
tests through a .pth file, so nothing is downloaded; aekit itself comes only from the wheel
(PYTHONPATH is dropped, and the test checks where `aekit` is imported from).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

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
def test_the_wheel_installs_and_runs_in_a_fresh_environment(dist: Path, tmp_path: Path) -> None:
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

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    purelib = Path(
        _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
    )
    # the dependencies from this environment, after the venv's own site-packages
    (purelib / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel)

    where = _run(python, "-c", "import aekit; print(aekit.__file__)").strip()
    assert Path(where).is_relative_to(venv), where
    _run(python, "-c", EVERY_DEPENDENCY_FOUND)
    aekit = venv / "bin" / "aekit"
    assert _run(aekit, "--version").strip() == f"aekit {VERSION}"
    assert "train" in _run(aekit, "--help")
    trained = _run(
        aekit, "train", "fully_connected", "--dataset", "digits", "--epochs", "1",
        "--model-dir", tmp_path / "run", cwd=tmp_path,
    )  # fmt: skip
    assert "loss=" in trained and (tmp_path / "run" / "hparams.json").is_file()
