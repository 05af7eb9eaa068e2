"""The command line answers at once: its help and version load neither torch nor scikit-learn,
and `import aekit` loads scikit-learn only when a detector asks for it."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import contextlib, io, sys
from aekit.cli.main import main
with contextlib.redirect_stdout(io.StringIO()):
    main({args!r})
print(*sorted({{"torch", "sklearn"}} & set(sys.modules)))
"""

COMMANDS = ["train", "evaluate", "reconstruct", "embed", "export", "sample", "likelihood", "score"]


def loaded(code: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return set(done.stdout.split())


@pytest.mark.parametrize(
    "args", [["--version"], ["--help"], *([c, "--help"] for c in COMMANDS)], ids=" ".join
)
def test_help_and_version_load_no_torch(args: list[str]) -> None:
    assert loaded(PROBE.format(args=args)) == set()


@pytest.mark.slow
def test_import_aekit_loads_scikit_learn_only_for_a_detector() -> None:
    report = "print(*{'sklearn'} & set(sys.modules))"
    assert loaded(f"import aekit, sys; aekit.AutoEncoder; {report}") == set()
    assert loaded(f"import aekit, sys; aekit.anomaly.AutoencoderOutlierDetector; {report}") == {
        "sklearn"
    }
