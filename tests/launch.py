"""Starting the test jobs: torchrun with two processes, and the job scripts as modules."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType


def torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    """`torchrun --standalone --nproc-per-node 2 ARGS`, one thread per process."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        *args,
    ]  # fmt: skip
    # A store of its own per attempt: with torchrun's shared one a restarted attempt can
    # read the last attempt's addresses (PyTorch issue 135712; docs/distributed.md).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def load_script(path: Path) -> ModuleType:
    """A job script imported as a module, for its builders and settings."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
