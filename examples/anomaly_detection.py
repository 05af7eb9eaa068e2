"""Anomaly detection by reconstruction error: each digit class in turn is the anomaly.

    python examples/anomaly_detection.py [--dataset digits|mnist] [--model variational]

For every class k, an autoencoder is trained on the training images of the other nine
classes only; then every test image is scored by its reconstruction error and the AUROC of
"is class k" is printed, with the mean over the ten classes at the end. `digits` is
scikit-learn's bundled 8x8 set (offline, seconds); `mnist` reads --data-dir
(default ../shared/data/mnist-split).
"""

from __future__ import annotations

import numpy as np
from _common import load_mnist, parser

import aekit
from aekit.anomaly import AnomalyDetector, auroc
from aekit.data import load_dataset, numpy_input_fn


def main() -> None:
    p = parser(__doc__ or "", "runs/anomaly", epochs=15)
    p.add_argument("--dataset", choices=["digits", "mnist"], default="digits")
    p.add_argument("--model", choices=["fully_connected", "variational"], default="fully_connected")
    p.add_argument("--percentile", type=float, default=95.0)
    p.set_defaults(batch_size=None)
    args = p.parse_args()
    if args.dataset == "digits":
        (x_train, y_train), (x_test, y_test) = load_dataset("digits")
        hidden, rate, batch = [32, 8], 1e-2, args.batch_size or 64
    else:
        x_train, y_train, x_test, y_test = load_mnist(args.data_dir)
        hidden, rate, batch = [128, 64, 32], 1e-3, args.batch_size or 256
    shape = tuple(x_train.shape[1:])
    areas = []
    print(
        f"held-out class | AUROC | flagged anomalies | flagged normals ({args.percentile:g}th pct)"
    )
    for k in range(10):
        config = aekit.RunConfig(random_seed=args.seed, log_step_count_steps=0)
        model_dir = f"{args.model_dir}/{args.dataset}-{args.model}-{k}"
        estimator: aekit.Estimator
        if args.model == "variational":
            estimator = aekit.VariationalAutoencoder(
                latent_dim=hidden[-1], hidden_units=hidden[:-1], learning_rate=rate,
                input_shape=shape, model_dir=model_dir, config=config,
            )  # fmt: skip
        else:
            estimator = aekit.AutoEncoder(
                hidden, learning_rate=rate, input_shape=shape, model_dir=model_dir, config=config
            )
        normal = x_train[y_train != k]
        estimator.train(numpy_input_fn(normal, batch_size=batch, num_epochs=args.epochs, seed=0))
        detector = AnomalyDetector(estimator, args.percentile).calibrate(normal)
        is_k = np.asarray(y_test) == k
        area = auroc(detector.score(x_test), is_k)
        flagged = detector.is_anomaly(x_test)
        areas.append(area)
        print(f"{k:14d} | {area:.3f} | {flagged[is_k].mean():17.1%} | {flagged[~is_k].mean():.1%}")
    print(f"mean AUROC {np.mean(areas):.3f}")


if __name__ == "__main__":
    main()
