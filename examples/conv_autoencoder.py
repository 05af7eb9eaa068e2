"""Seed 004: the convolutional autoencoder (16, 8, 8 filters; 7,873 weights) on MNIST.

python examples/conv_autoencoder.py [--epochs 50] [--downsample strided] [--model-dir runs/conv]
"""

from __future__ import annotations

from _common import load_mnist, parser, run_config, train_and_report

import aekit


def main() -> None:
    p = parser(__doc__ or "", "runs/conv")
    p.add_argument("--downsample", choices=["max_pool", "strided"], default="max_pool")
    args = p.parse_args()
    x_train, _, x_test, _ = load_mnist(args.data_dir)
    estimator = aekit.ConvolutionalAutoencoder(
        num_filters=[16, 8, 8],
        downsample=args.downsample,
        weight_decay=1e-5,
        learning_rate=1e-3,
        model_dir=args.model_dir,
        config=run_config(args, len(x_train)),
    )
    train_and_report(estimator, x_train, x_test, args)


if __name__ == "__main__":
    main()
