"""`aekit`: parse the command line, call one library function, report errors in one line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from aekit import __version__
from aekit.errors import AekitError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aekit", description="Autoencoders with an Estimator API."
    )
    parser.add_argument("--version", action="version", version=f"aekit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every detail")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="train a small autoencoder on the bundled 8x8 digits and evaluate it"
    )
    demo.add_argument("--model-dir", "--model_dir", default="runs/demo", help="where to write")
    demo.add_argument("--steps", type=int, default=600, help="training steps (default 600)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname).1s %(message)s" if args.verbose else "%(message)s",
    )
    try:
        if args.command == "demo":
            from aekit.demo import run_demo

            results = run_demo(args.model_dir, steps=args.steps, seed=args.seed)
            print(" ".join(f"{k}={v:.5g}" for k, v in results.items()))
    except AekitError as exc:
        print(f"aekit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aekit: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
