"""Seed 000: the fully-connected (and denoising) autoencoder as an Estimator on MNIST.

    python examples/fc_autoencoder.py [--epochs 50] [--noise-factor 0.5] [--model-dir DIR]

The model dir defaults to runs/fc-example, or runs/dae-example with --noise-factor.

Evaluates on the test set after every epoch and prints the final RMSE; with
--noise-factor it trains a denoising autoencoder and also prints the RMSE of the
noisy inputs against the clean images.
"""

from __future__ import annotations

from _common import load_mnist, parser, run_config, train_and_report

import aekit


def main() -> None:
    p = parser(__doc__ or "", model_dir=None)
    p.add_argument("--noise-factor", type=float, default=None)
    args = p.parse_args()
    if args.model_dir is None:  # the denoising run must not resume the plain one
        args.model_dir = "runs/fc-example" if args.noise_factor is None else "runs/dae-example"
    x_train, _, x_test, _ = load_mnist(args.data_dir)
    estimator = aekit.AutoEncoder(
        hidden_units=[128, 64, 32],
        keep_prob=None,
        weight_decay=1e-5,
        learning_rate=1e-3,
        noise_factor=args.noise_factor,
        model_dir=args.model_dir,
        config=run_config(args, len(x_train)),
    )
    train_and_report(estimator, x_train, x_test, args)


if __name__ == "__main__":
    main()
