"""SIGKILL at random points of training and export; every rerun resumes and ends whole.

AEKIT_KILL_POINTS (default 15) sets how many points run here; `python
benchmarks/crash_points.py --points 200` runs many more and prints a table.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from crash_harness import TRAIN_KINDS, run_points

POINTS = int(os.environ.get("AEKIT_KILL_POINTS", "15"))


@pytest.mark.slow
def test_random_kill_points_resume_and_leave_every_file_whole(tmp_path: Path) -> None:
    seed = int(os.environ.get("AEKIT_KILL_SEED", random.randrange(2**32)))
    outcomes, info = run_points(tmp_path, POINTS, seed)
    failed = [o for o in outcomes if o.problems]
    assert not failed, f"seed {seed}: " + "; ".join(f"{o}" for o in failed)
    killed = [o for o in outcomes if o.killed]
    # Nearly every trap fires (a timer may outlive a short run); the training points
    # must include kills before the first checkpoint and after some.
    assert len(killed) >= POINTS * 2 // 3, (seed, outcomes)
    assert set(info["train_events"]) >= set(TRAIN_KINDS) - {"timer"}
    print(f"kill points: {len(outcomes)} tried, {len(killed)} killed, {len(outcomes)} survived")
