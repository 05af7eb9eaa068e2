"""What the example scripts share: flags, where the data are, the train-and-evaluate run."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

import aekit
from aekit.data import numpy_input_fn

SHARED_SPLIT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-split"


def parser(doc: str, model_dir: str | None, epochs: int = 50) -> argparse.ArgumentParser:
    """Flags every example takes: --data-dir, --model-dir, --epochs, --batch-size, --seed."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument(
        "--data-dir",
        default=str(SHARED_SPLIT) if SHARED_SPLIT.is_dir() else None,
        help="directory with the four MNIST files (default: ../shared/data/mnist-split, "
        "else MNIST is downloaded into the cache)",
    )
    p.add_argument("--model-dir", default=model_dir)
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    return p


def load_mnist(data_dir: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x_train, y_train, x_test, y_test as uint8 arrays."""
    from aekit.data.mnist import load_data

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    (x_train, y_train), (x_test, y_test) = load_data(data_dir)
    return x_train, y_train, x_test, y_test


def run_config(args: argparse.Namespace, train_size: int) -> aekit.RunConfig:
    """Seeded, logging once per epoch."""
    return aekit.RunConfig(
        random_seed=args.seed, log_step_count_steps=-(-train_size // args.batch_size)
    )


def train_and_report(
    estimator: aekit.Estimator, x_train: np.ndarray, x_test: np.ndarray, args: argparse.Namespace
) -> dict[str, float]:
    """Train for args.epochs, evaluating on the test set after every epoch; print the result."""
    steps_per_epoch = -(-len(x_train) // args.batch_size)
    result = aekit.train_and_evaluate(
        estimator,
        aekit.TrainSpec(
            numpy_input_fn(x_train, batch_size=args.batch_size, num_epochs=args.epochs),
            max_steps=steps_per_epoch * args.epochs,
        ),
        aekit.EvalSpec(
            numpy_input_fn(x_test, batch_size=1000, shuffle=False), every_n_steps=steps_per_epoch
        ),
    )
    line = f"after {args.epochs} epochs: test RMSE {result['rmse']:.4f}"
    if "noisy_input_rmse" in result:
        line += f" (the noisy input against the clean image: {result['noisy_input_rmse']:.4f})"
    print(line)
    return result
