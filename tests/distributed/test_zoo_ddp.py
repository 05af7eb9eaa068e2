"""Every zoo model and training phase on 2 real processes started by torchrun (gloo, CPU).

One torchrun job (zoo_job.py zoo) trains everything and writes each rank's weights and
figures; the tests compare them with each other and with one process trained here on
the global batch. A second job is killed mid-epoch and restarted by torchrun.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from aekit.estimator import checkpoint as ckpt
from launch import load_script, torchrun

JOB = Path(__file__).with_name("zoo_job.py")
pytestmark = pytest.mark.slow


job = load_script(JOB)  # the job's builders and settings, for the references made here


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory of one `zoo` job, shared by the tests of this module."""
    out = tmp_path_factory.mktemp("zoo")
    run = torchrun(str(JOB), "zoo", str(out))
    assert run.returncode == 0, _failure(run)
    return out


def _failure(run: subprocess.CompletedProcess[str]) -> str:
    """The ranks' tracebacks (torchrun prefixes their lines with [rankN]:), else the end."""
    lines = [line for line in run.stderr.splitlines() if line.startswith("[rank")]
    return "\n".join(lines[-80:]) if lines else run.stderr[-3000:]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    weights: dict[str, torch.Tensor] = torch.load(path, weights_only=True)
    return weights


def _phase_weights(zoo: Path, phase: str, rank: int) -> dict[str, torch.Tensor]:
    return _weights(zoo / "weights" / f"{phase}-rank{rank}.pt")


def _figures(zoo: Path, rank: int) -> dict[str, Any]:
    figures: dict[str, Any] = json.loads((zoo / f"rank{rank}.json").read_text())
    return figures


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {name for name, value in after.items() if not torch.equal(before[name], value)}


@pytest.mark.parametrize("phase", job.PHASES)
def test_both_ranks_end_every_phase_with_the_same_weights(
    zoo: Path, phase: str, tmp_path: Path
) -> None:
    rank0, rank1 = _phase_weights(zoo, phase, 0), _phase_weights(zoo, phase, 1)
    assert rank0.keys() == rank1.keys()
    for name, value in rank0.items():
        torch.testing.assert_close(rank1[name], value, rtol=0, atol=1e-7, msg=name)
    # Equal but untrained weights would pass the above: the phase must have moved them.
    model = phase.split("-")[0]
    if phase == "stacked-layer2":
        before = _phase_weights(zoo, "stacked-layer1", 0)
    elif phase == "stacked-finetune":
        before = _phase_weights(zoo, "stacked-layer2", 0)
    else:
        before = job.build(model, tmp_path / model).network.state_dict()
    changed = _changed(before, rank0)
    assert changed, f"{phase} left every weight as it was"
    # What a phase does not optimise stays put (Stepper freezes it while training).
    untouched = {
        "stacked-layer1": ("encoders.1.", "decoder_biases.1", "head."),  # the layer above
        "stacked-layer2": ("encoders.0.", "decoder_biases.0", "head."),  # the layer below
        "stacked-finetune": ("decoder_biases.",),  # pretraining's decoders
        "frozen": ("encoder.",),
        "tuned": ("encoder.network.decoder.",),  # the autoencoder's decoder computes no code
    }.get(phase, ())
    assert not {name for name in changed if name.startswith(untouched)}, changed
    if phase == "tuned":
        assert any(name.startswith("encoder.network.encoder.") for name in changed)


@pytest.mark.parametrize("phase", job.DETERMINISTIC)
def test_deterministic_phases_match_one_process_on_the_global_batch(
    zoo: Path, phase: str, tmp_path: Path
) -> None:
    if phase == "stacked-finetune":
        # Pretraining draws noise: fine-tune here from the job's pretrained layers.
        shutil.copytree(zoo / "stacked" / "pretrain", tmp_path / "stacked" / "pretrain")
        single = job.build("stacked", tmp_path / "stacked")
        single.train(job.train_input("stacked", 2 * job.BATCH), max_steps=job.STEPS)
    else:
        single = job.train(phase, tmp_path / phase, 2 * job.BATCH)
    assert single.global_step == job.STEPS
    ddp = _phase_weights(zoo, phase, 0)
    expected = single.network.state_dict()
    assert ddp.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(ddp[name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_ranks_draw_their_own_noise_and_share_the_shuffle(zoo: Path) -> None:
    rank0, rank1 = (_figures(zoo, rank)["rng"] for rank in (0, 1))
    for when in ("start", "step1", "end"):
        assert rank0[when] != rank1[when], when
    for seen in (rank0, rank1):
        assert seen["step1"] != seen["start"]  # the step drew its noise from this generator
    # The shuffle generator is in one state on both ranks, and the input drew from it.
    for when in ("start", "step1", "end"):
        assert rank0[f"shuffle_{when}"] == rank1[f"shuffle_{when}"], when
    assert rank0["shuffle_step1"] != rank0["shuffle_start"]


def test_the_checkpoint_holds_every_ranks_random_state(zoo: Path) -> None:
    state = ckpt.load(zoo / "denoising" / f"ckpt-{job.STEPS}.pt")
    by_rank = state["rng_by_rank"]
    assert len(by_rank) == 2
    for rank in (0, 1):  # each rank's own state at the save, in its place
        assert job.digest(by_rank[rank]["torch"]) == _figures(zoo, rank)["rng"]["end"]
    assert not torch.equal(by_rank[0]["numpy"]["keys"], by_rank[1]["numpy"]["keys"])
    assert by_rank[0]["python"] != by_rank[1]["python"]
    assert torch.equal(state["rng"]["torch"], by_rank[0]["torch"])
    assert job.digest(state["shuffle_rng"]) == _figures(zoo, 0)["rng"]["shuffle_end"]


@pytest.mark.parametrize("model", job.EVALUATED)
def test_evaluating_one_example_on_two_processes_matches_one_process(zoo: Path, model: str) -> None:
    # One process evaluates the job's checkpoint; in the job rank 1 had no batch.
    expected = job.build(model, zoo / model).evaluate(job.eval_input(model))
    assert expected["global_step"] == job.STEPS
    for rank in (0, 1):
        got = _figures(zoo, rank)["eval"][model]
        assert got == pytest.approx(expected, rel=1e-6), rank


def test_the_host_read_counter_sees_reads() -> None:
    with job.CountHostReads() as counter:
        x = torch.arange(4.0)
        _ = x.sum().item(), bool(x[1]), x.nonzero(), x[x > 1], x.masked_select(x > 1)
        x[x > 2] = 0.0
        _ = x * 2, x[torch.tensor([1, 2])]  # no reads: the sizes are known without the values
    assert [read["op"] for read in counter.reads] == [
        "aten._local_scalar_dense.default", "aten._local_scalar_dense.default",
        "aten.nonzero.default", "aten.index.Tensor", "aten.masked_select.default",
        "aten.index_put_.default",
    ]  # fmt: skip


def test_the_control_run_reads_the_loss_in_the_window(zoo: Path) -> None:
    # host_sync="every_step" checks the loss for NaN after every step: the counter in
    # the job sees those reads, so the zeros below are not a counter that sees nothing.
    for rank in (0, 1):
        reads = _figures(zoo, rank)["host_reads_every_step"]
        first, last = job.SYNC_WINDOW
        assert len(reads) >= last - first, reads


@pytest.mark.parametrize("model", job.SYNC_CHECKED)
def test_no_host_reads_between_intervals(zoo: Path, model: str) -> None:
    for rank in (0, 1):
        reads = _figures(zoo, rank)["host_reads"][model]
        places = Counter(f"{read['op']} at\n{read['stack']}" for read in reads)
        assert not reads, f"rank {rank} read the device {len(reads)} times:\n" + "\n".join(
            f"{count} x {place}" for place, count in places.items()
        )


def test_a_rank_killed_mid_epoch_resumes_to_the_same_weights(zoo: Path, tmp_path: Path) -> None:
    kill_step = job.STEPS_PER_EPOCH * 3 // 2  # the middle of epoch 2
    run_dir = tmp_path / "run"
    run = torchrun("--max-restarts=1", str(JOB), "epochs", str(run_dir), "--kill", "1",
                    str(kill_step))  # fmt: skip
    assert run.returncode == 0, _failure(run)
    per_epoch = job.STEPS_PER_EPOCH
    for rank in (0, 1):
        # The first attempt started epochs 1 and 2; the second resumed epoch 2 from the
        # checkpoint at the end of epoch 1 and went on. The run without a kill: one attempt.
        starts = (run_dir / f"starts-{rank}.txt").read_text().splitlines()
        assert starts == ["0 0", f"0 {per_epoch}", f"1 {per_epoch}", f"1 {2 * per_epoch}"]
        unkilled = (zoo / "epochs" / f"starts-{rank}.txt").read_text().splitlines()
        assert unkilled == ["0 0", f"0 {per_epoch}", f"0 {2 * per_epoch}"]
        resumed = _weights(run_dir / f"weights-rank{rank}.pt")
        expected = _weights(zoo / "epochs" / f"weights-rank{rank}.pt")
        assert resumed.keys() == expected.keys()
        for name, value in expected.items():
            assert torch.equal(resumed[name], value), (rank, name)
    final = f"ckpt-{job.EPOCHS * per_epoch}.pt"
    resumed_state = ckpt.load(run_dir / final)["network"]
    for name, value in ckpt.load(zoo / "epochs" / final)["network"].items():
        assert torch.equal(resumed_state[name], value), name
