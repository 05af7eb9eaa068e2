"""The README's *Full MNIST* runs, one after another, resumable: a table of their figures.

    python benchmarks/full_mnist.py --data-dir ../shared/data/mnist-full [--runs runs/full]
        [--only fc dae conv vae cnn sda sda-scratch]

Each row is an `aekit train` command on its own model dir under `--runs`, and for a row whose
rate is lowered in steps, the resumptions that lower it (`aekit train --model-dir D --epochs E
--learning-rate R`), run in turn. Training tens of
minutes on a laptop gets interrupted: run the script again and every run resumes from its
last checkpoint (a finished one only evaluates). The wall time of each invocation is added
to `timing.json` in the run's dir, so the time shown is the training's own, over however many
sittings it took. Long runs belong in the background, e.g. `nohup python
benchmarks/full_mnist.py ... > full_mnist.log 2>&1 &`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

AEKIT = [sys.executable, "-c", "import sys; from aekit.cli.main import main; sys.exit(main())"]


@dataclass(frozen=True)
class Run:
    """One row: how to train it, how to measure it, and the published figure it stands beside."""

    name: str
    train: tuple[str, ...]
    measure: tuple[str, ...]
    figures: tuple[str, ...]
    anchor: str
    then: tuple[tuple[str, ...], ...] = ()  # resumptions with new flags, e.g. a lower rate


RUNS = (
    Run("fc", ("fully_connected", "--epochs", "30"), ("evaluate",), ("rmse", "loss"),
        "Keras blog, 784-128-64-32: cross-entropy 0.08-0.09 after 100 epochs"),
    Run("dae", ("fully_connected", "--noise-factor", "0.5", "--epochs", "60"), ("evaluate",),
        ("rmse", "noisy_input_rmse", "loss"), "seed 000's denoising run"),
    Run("conv", ("convolutional", "--epochs", "30"), ("evaluate",), ("rmse", "loss"),
        "seed 004: like the FC model"),
    Run("vae", ("variational", "--hidden-units", "200,200", "--latent-dim", "50", "--activation",
                "tanh", "--binarize", "dynamic", "--batch-size", "100", "--epochs", "500"),
        ("likelihood", "--samples", "5000"), ("nll", "elbo"),
        "Burda et al. (2016), VAE k=1: 86.76 nats",
        then=(("--epochs", "700", "--learning-rate", "3e-4"),
              ("--epochs", "1000", "--learning-rate", "1e-4"),
              ("--epochs", "1200", "--learning-rate", "3e-5"))),
    Run("cnn", ("classifier", "--epochs", "10"), ("evaluate",), ("accuracy",),
        "seed 003's CNN: >= 99.2%"),
    Run("sda", ("--preset", "seed_002", "--dropout", "0.5", "--epochs", "20"),
        ("evaluate",), ("accuracy",), "Vincent et al. (2010), SdA-3: 1.28% error",
        then=(("--epochs", "30", "--learning-rate", "1e-4"),)),
    Run("sda-scratch", ("--preset", "seed_002", "--pretrain-epochs", "0", "--dropout", "0.5",
                        "--epochs", "20"),
        ("evaluate",), ("accuracy",), "the same network from scratch",
        then=(("--epochs", "30", "--learning-rate", "1e-4"),)),
)  # fmt: skip


def command(run: Run, data_dir: str, model_dir: Path) -> list[str]:
    """The `aekit train` command of a row, as the README shows it."""
    head = ["train"] if run.train[0].startswith("--") else ["train", run.train[0]]
    rest = run.train if run.train[0].startswith("--") else run.train[1:]
    return [*head, "--data-dir", data_dir, *rest, "--model-dir", str(model_dir)]


def aekit(args: list[str]) -> str:
    """Run an aekit command, its log passing through; its last line of output."""
    done = subprocess.run([*AEKIT, *args], stdout=subprocess.PIPE, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


def train(run: Run, data_dir: str, model_dir: Path) -> float:
    """Train (or resume) a row; the seconds of training over every sitting so far."""
    timing = model_dir / "timing.json"
    spent = json.loads(timing.read_text())["seconds"] if timing.exists() else 0.0
    start = time.perf_counter()
    aekit(command(run, data_dir, model_dir))
    for flags in run.then:
        aekit(["train", "--model-dir", str(model_dir), *flags])
    spent += time.perf_counter() - start
    timing.write_text(json.dumps({"seconds": spent}) + "\n")
    return float(spent)


def figures(line: str) -> dict[str, float]:
    """`key=value key=value` (the commands' metric line) as a dict."""
    pairs = (item.split("=", 1) for item in line.split() if "=" in item)
    return {key: float(value) for key, value in pairs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--data-dir", required=True, help="e.g. ../shared/data/mnist-full")
    p.add_argument("--runs", default="runs/full", help="a model dir per row is made here")
    p.add_argument("--only", nargs="+", choices=[r.name for r in RUNS], help="these rows only")
    args = p.parse_args()
    rows = []
    for run in RUNS:
        if args.only and run.name not in args.only:
            continue
        model_dir = Path(args.runs) / run.name
        seconds = train(run, args.data_dir, model_dir)
        found = figures(aekit([*run.measure, "--model-dir", str(model_dir)]))
        shown = ", ".join(f"{key} {found[key]:.4g}" for key in run.figures if key in found)
        resumed = "".join(f", then `aekit train --model-dir {model_dir} {' '.join(flags)}`"
                          for flags in run.then)  # fmt: skip
        rows.append(f"| `aekit {' '.join(command(run, args.data_dir, model_dir))}`{resumed} | "
                    f"{shown} | {seconds:,.0f} s | {run.anchor} |")  # fmt: skip
        print(rows[-1], flush=True)
    print("\n| command | figures (test set) | training time | published |\n|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
