"""`aekit export` and `aekit score` killed with SIGKILL at every write, fsync and rename.

An export is one set: after any kill `export/` holds the three files and the spec of the
earlier export or of the new one, never a mix, and the next run (an export, or training's
clean-up) leaves no temporary, set-aside folder or lock behind. Real processes
(tests/crash_harness.py's fork server), real files, real SIGKILL.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from aekit.estimator import checkpoint as ckpt
from crash_harness import Zygote, export_argv, train_argv

PARTS = ("encoder", "decoder", "autoencoder")
X = torch.rand(3, 64, generator=torch.Generator().manual_seed(0))  # digits: 8x8 images


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Zygote, Path]]:
    """The fork server and a model dir whose export/ holds step 24's export, ckpt-30 beside it."""
    work = tmp_path_factory.mktemp("killed")
    zygote = Zygote(work / "server")
    try:
        base = work / "base"
        assert zygote.run(train_argv(base)).status == 0
        newest = ckpt.latest_checkpoint(base)
        assert newest is not None and ckpt.step_of(newest) == 30
        aside = work / newest.name
        newest.rename(aside)  # export the step before: the "earlier" export
        assert zygote.run(export_argv(base)).status == 0
        aside.rename(newest)
        yield zygote, base
    finally:
        zygote.close()


def outputs(export_dir: Path) -> dict[str, torch.Tensor]:
    """What each exported part computes on X."""
    result = {}
    with warnings.catch_warnings():  # deprecated in torch 2.13, still the way to serve
        warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated")
        modules = {p: torch.jit.load(str(export_dir / f"{p}.pt")) for p in PARTS}  # type: ignore[no-untyped-call]
    code = modules["encoder"](X)
    result["encoder"] = code
    result["decoder"] = modules["decoder"](code)
    result["autoencoder"] = modules["autoencoder"](X)
    return result


def spec_step(export_dir: Path) -> int:
    """The checkpoint step that the export's spec.json names."""
    step: int = json.loads((export_dir / "spec.json").read_text())["made_by"]["step"]
    return step


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.allclose(a[p], b[p]) for p in PARTS)


def leftovers(model_dir: Path) -> list[str]:
    return sorted(
        str(p.relative_to(model_dir))
        for p in model_dir.rglob("*")
        if ".tmp-" in p.name or ".old-" in p.name or p.name == ".aekit-train.lock"
    )


def export_points(zygote: Zygote, model_dir: Path) -> list[tuple[str, int]]:
    """Every export-write, fsync and rename an untrapped export makes, as (kind, n)."""
    done = zygote.run(export_argv(model_dir))
    assert done.status == 0, done.output
    points = [
        (k, n)
        for k in ("export-write", "fsync", "rename")
        for n in range(1, 1 + done.events.get(k, 0))
    ]
    assert {k for k, _ in points} == {"export-write", "fsync", "rename"}, done.events
    return points


@pytest.mark.slow
def test_export_killed_at_every_point_leaves_one_whole_set(
    runs: tuple[Zygote, Path], tmp_path: Path
) -> None:
    zygote, base = runs
    old = outputs(base / "export")
    probe = tmp_path / "probe"
    shutil.copytree(base, probe)
    points = export_points(zygote, probe)
    new = outputs(probe / "export")
    assert not same(old, new)  # step 24 and step 30 differ, so a mix would show
    steps = {"old": spec_step(base / "export"), "new": spec_step(probe / "export")}
    assert steps == {"old": 24, "new": 30}
    # Two renames publish the set: the earlier folder set aside, the new one put in place.
    assert len([p for p in points if p[0] == "rename"]) >= 5
    between_renames = 0
    for kind, n in points:
        model_dir = tmp_path / f"{kind}-{n}"
        shutil.copytree(base, model_dir)
        killed = zygote.run(export_argv(model_dir), {"kind": kind, "n": n, "fraction": 0.5})
        assert killed.status == -9, (kind, n, killed.output[-500:])
        export = model_dir / "export"
        if export.exists():
            found = outputs(export)
            assert same(found, old) or same(found, new), f"{kind} {n}: a mix of two exports"
            # The spec belongs to the same export as the model files beside it.
            assert spec_step(export) == steps["old" if same(found, old) else "new"], (kind, n)
        else:  # killed between the swap's renames: the earlier set waits, whole, beside it
            between_renames += 1
            (aside,) = model_dir.glob(".export.old-*")
            assert same(outputs(aside), old) and spec_step(aside) == steps["old"], (kind, n)
            # Training's clean-up of a model dir puts it back, as an export rerun does.
            ckpt.remove_stale_temporaries(model_dir)
            assert same(outputs(export), old), (kind, n)
        rerun = zygote.run(export_argv(model_dir))
        assert rerun.status == 0, rerun.output
        assert same(outputs(export), new), (kind, n)
        assert sorted(p.name for p in export.iterdir()) == sorted(
            [*(f"{p}.pt" for p in PARTS), "spec.json"]
        )
        assert spec_step(export) == steps["new"], (kind, n)
        assert leftovers(model_dir) == [], (kind, n)
    assert between_renames == 1  # the kill after the first rename of the swap


@pytest.mark.parametrize(("kind", "n"), [("fsync", 1), ("fsync", 2), ("rename", 1), ("rename", 2)])
def test_score_killed_leaves_nothing_a_rerun_does_not_remove(
    runs: tuple[Zygote, Path], tmp_path: Path, kind: str, n: int
) -> None:
    zygote, base = runs
    model_dir = tmp_path / "model"
    shutil.copytree(base, model_dir)
    argv = ["score", "--model-dir", str(model_dir)]
    killed = zygote.run(argv, {"kind": kind, "n": n, "fraction": 0.5})
    assert killed.status == -9, killed.output[-500:]
    if kind == "fsync" and n == 1:  # the CSV was complete on disk, not yet renamed
        assert [p.name for p in (model_dir / "scores").iterdir()] == [
            f".scores.csv.tmp-{p.split('-')[-1]}" for p in leftovers(model_dir)
        ]
    rerun = zygote.run(argv)
    assert rerun.status == 0, rerun.output
    assert leftovers(model_dir) == []
    lines = (model_dir / "scores" / "scores.csv").read_text().splitlines()
    assert lines[0].startswith("index,score,anomaly") and len(lines) > 100
