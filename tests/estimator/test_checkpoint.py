"""Checkpoint files: atomic save, listing, pruning, safe loading."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from aekit import CheckpointError
from aekit.estimator import checkpoint as ckpt


def _save(model_dir: Path, step: int) -> Path:
    path = ckpt.checkpoint_path(model_dir, step)
    network = torch.nn.Linear(2, 1)
    optimizer = torch.optim.Adam(network.parameters())
    state = {
        "global_step": step,
        "network": network.state_dict(),
        "optimizer": optimizer.state_dict(),
        "w": torch.full((3,), float(step)),
    }
    ckpt.save(path, state)
    return path


def test_round_trip_and_listing_by_step(tmp_path: Path) -> None:
    for step in (5, 100, 20):
        _save(tmp_path, step)
    assert [ckpt.step_of(p) for p in ckpt.list_checkpoints(tmp_path)] == [5, 20, 100]
    latest = ckpt.latest_checkpoint(tmp_path)
    assert latest is not None and latest.name == "ckpt-100.pt"
    state = ckpt.load(latest)
    assert state["global_step"] == 100
    assert torch.equal(state["w"], torch.full((3,), 100.0))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_prune_keeps_the_newest(tmp_path: Path) -> None:
    for step in range(1, 7):
        _save(tmp_path, step)
    removed = ckpt.prune(tmp_path, keep=2)
    assert [ckpt.step_of(p) for p in removed] == [1, 2, 3, 4]
    assert [ckpt.step_of(p) for p in ckpt.list_checkpoints(tmp_path)] == [5, 6]
    assert ckpt.prune(tmp_path, keep=0) == []


def test_truncated_newest_falls_back_to_previous(tmp_path: Path) -> None:
    _save(tmp_path, 1)
    newest = _save(tmp_path, 2)
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt"):
        ckpt.load(newest)
    found = ckpt.load_latest(tmp_path)
    assert found is not None
    assert found[0].name == "ckpt-1.pt" and found[1]["global_step"] == 1


def test_pickle_payload_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (Path.touch, (str(marker),))

    path = tmp_path / "ckpt-3.pt"
    torch.save({"format": ckpt.FORMAT, "version": 1, "x": Payload()}, path)
    with pytest.raises(CheckpointError, match="corrupt or not an aekit checkpoint"):
        ckpt.load(path)
    assert not marker.exists()
    raw = tmp_path / "ckpt-4.pt"
    raw.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError):
        ckpt.load(raw)
    assert not marker.exists()


def test_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ckpt-1.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="not an aekit checkpoint"):
        ckpt.load(path)


def test_missing_file_and_bad_name(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        ckpt.load(tmp_path / "ckpt-9.pt")
    with pytest.raises(CheckpointError, match=r"ckpt-<step>\.pt"):
        ckpt.step_of("model.pt")


def test_unwritable_dir_gives_clear_error_and_keeps_old(tmp_path: Path) -> None:
    old = _save(tmp_path, 1)
    before = old.read_bytes()
    missing_dir = tmp_path / "gone" / "deeper"
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        ckpt.save(missing_dir / "ckpt-2.pt", {"global_step": 2})
    assert old.read_bytes() == before


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".ckpt-5.pt.tmp-{dead_pid}"
    mine = tmp_path / f".ckpt-6.pt.tmp-{os.getpid()}"
    stale.write_bytes(b"half")
    mine.write_bytes(b"being written")
    keep = _save(tmp_path, 4)
    assert ckpt.remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and mine.exists() and keep.exists()


def test_missing_network_or_optimizer_is_refused(tmp_path: Path) -> None:
    """The Estimator restores both: a checkpoint without one cannot be resumed from."""
    whole = torch.load(_save(tmp_path, 3), weights_only=True)
    for key in ("network", "optimizer"):
        path = tmp_path / f"ckpt-{key}.pt"
        torch.save({k: v for k, v in whole.items() if k != key}, path)
        with pytest.raises(CheckpointError, match=f"{key} is None, not a dict"):
            ckpt.load(path)


def test_removing_stale_temporaries_restores_a_swap_cut_short(tmp_path: Path) -> None:
    """A folder set aside by a publisher that died goes back when nothing replaced it."""
    dead = _dead_pid()
    aside = tmp_path / f".export.old-{dead}"
    aside.mkdir()
    (aside / "encoder.pt").write_text("old")
    staged = tmp_path / f".export.tmp-{dead}"
    staged.mkdir()
    (staged / "encoder.pt").write_text("new, maybe half")
    removed = ckpt.remove_stale_temporaries(tmp_path)
    assert removed == [staged]
    assert (tmp_path / "export" / "encoder.pt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    # Set aside, and the new folder was in place already: the old one just goes.
    aside.mkdir()
    assert ckpt.remove_stale_temporaries(tmp_path) == [aside]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    return int(child.stdout)
