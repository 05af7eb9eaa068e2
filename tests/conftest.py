"""Settings shared by every test."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _temporary_files_under_basetemp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Temporary files of the tests, and of the commands they start, go under pytest's basetemp.

    An estimator made without a model_dir trains in `tempfile.mkdtemp(prefix="aekit-")`;
    under /tmp those folders outlived every test run. pytest prunes its own basetemps.
    """
    folder = tmp_path_factory.mktemp("tempfile")
    patch = pytest.MonkeyPatch()
    patch.setattr(tempfile, "tempdir", str(folder))
    patch.setenv("TMPDIR", str(folder))  # subprocesses: the real `aekit` and torchrun
    yield
    patch.undo()
