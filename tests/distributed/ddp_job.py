"""A tiny data-parallel training job for the tests: run it with torchrun.

    torchrun --standalone --nproc-per-node 2 ddp_job.py MODEL_DIR STEPS BATCH [--kill RANK STEP]
        [--own-dir] [--fit EPOCHS]

Trains the FC AutoEncoder on fixed random 8x8 images, then evaluates 37 of them
(an odd count, so the ranks' shares differ) and has rank 0 write the metrics to
MODEL_DIR/eval.json. With --kill, that rank SIGKILLs itself before that step, on
the first attempt only (torchrun's restarts then resume from the checkpoint). Each
rank appends "attempt global_step" to MODEL_DIR/starts-RANK.txt when training starts.
With --own-dir each rank wrongly uses MODEL_DIR-RANK. With --fit, `Estimator.fit` trains
EPOCHS epochs instead (validating on the 37 images) and rank 0 writes the History it
returned to MODEL_DIR/history.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path

import numpy as np

import aekit
from aekit.data import numpy_input_fn


def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (64, 8, 8), dtype=np.uint8)


def estimator(model_dir: str) -> aekit.AutoEncoder:
    config = aekit.RunConfig(
        random_seed=0,
        save_checkpoints_steps=4,
        save_summary_steps=4,
        log_step_count_steps=0,
        collective_timeout_secs=60,
    )
    return aekit.AutoEncoder([16, 4], input_shape=(8, 8), model_dir=model_dir, config=config)


class KillAt(aekit.hooks.Hook):
    """SIGKILLs this process before `step` runs, on a job's first attempt only."""

    def __init__(self, step: int) -> None:
        self.step = step

    def before_run(self, context: aekit.hooks.RunContext) -> None:
        first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
        if first_attempt and context.global_step + 1 == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class RecordStart(aekit.hooks.Hook):
    """Appends this attempt's number and the step training starts from to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def after_create_session(self, context: aekit.hooks.RunContext) -> None:
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        with open(self.path, "a") as f:
            f.write(f"{attempt} {context.global_step}\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("steps", type=int)
    parser.add_argument("batch", type=int)
    parser.add_argument("--kill", type=int, nargs=2, metavar=("RANK", "STEP"))
    parser.add_argument("--own-dir", action="store_true")
    parser.add_argument("--fit", type=int, metavar="EPOCHS")
    args = parser.parse_args()
    if args.own_dir:
        args.model_dir = f"{args.model_dir}-{os.environ['RANK']}"
    est = estimator(args.model_dir)
    hooks: list[aekit.hooks.Hook] = [
        RecordStart(Path(args.model_dir) / f"starts-{est.strategy.rank}.txt")
    ]
    if args.kill and args.kill[0] == est.strategy.rank:
        hooks.append(KillAt(args.kill[1]))
    x = images()
    if args.fit:
        history = est.fit(
            x, epochs=args.fit, batch_size=args.batch, validation_data=x[:37], verbose=0
        )
        if est.strategy.is_chief:
            (Path(args.model_dir) / "history.json").write_text(json.dumps(history.records))
        return
    est.train(
        numpy_input_fn(x, batch_size=args.batch, num_epochs=None, seed=3),
        hooks=hooks,
        max_steps=args.steps,
    )
    metrics = est.evaluate(numpy_input_fn(x[:37], batch_size=5, shuffle=False))
    if est.strategy.is_chief:
        (Path(args.model_dir) / "eval.json").write_text(json.dumps(metrics))


if __name__ == "__main__":
    main()
