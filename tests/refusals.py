"""How a refused command looks: the one check the command-line tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from aekit.cli.main import main


def fails(capsys: pytest.CaptureFixture[str], *args: str | Path) -> str:
    """The single error line of a command that must fail with status 2."""
    status = main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("aekit: error:"), err
    assert "Traceback" not in err
    return lines[0]
