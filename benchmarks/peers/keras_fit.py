"""One timed Keras 3 run of a seed autoencoder; prints {"images_per_s": ...} as one JSON line.

Runs in the peer's own environment (see bench_peers.py for how to make it):

    PEER_PYTHON benchmarks/peers/keras_fit.py --model fc --threads 2 --data images.npy

The networks are seed 000's and seed 004's as aekit builds them: the same layers, He
initialisation, logits scored with sigmoid cross-entropy, L2 of 1e-5 on the kernels, Adam at
1e-3 with the rate x0.96 every 1000 steps; XLA (`jit_compile`) on unless --no-xla.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from fit_args import fit_parser  # beside this script


def main() -> None:
    p = fit_parser()
    p.add_argument("--xla", action=argparse.BooleanOptionalAction, default=True)
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import keras
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(0)
    images = np.load(args.data).astype("float32") / 255.0
    l2 = keras.regularizers.L2(1e-5)
    he = "he_normal"
    if args.model == "fc":
        x = images.reshape(len(images), -1)
        layers = [keras.Input((784,))]
        for units in (128, 64, 32, 64, 128):
            layers.append(
                keras.layers.Dense(units, "relu", kernel_initializer=he, kernel_regularizer=l2)
            )
        layers.append(keras.layers.Dense(784, kernel_initializer=he, kernel_regularizer=l2))
    else:
        x = images[..., None]
        layers = [keras.Input((28, 28, 1))]
        for f in (16, 8, 8):
            for _ in range(2):
                layers.append(
                    keras.layers.Conv2D(
                        f,
                        3,
                        padding="same",
                        activation="relu",
                        kernel_initializer=he,
                        kernel_regularizer=l2,
                    )
                )
            layers.append(keras.layers.MaxPooling2D(2, padding="same"))
        for f in (8, 8, 16):
            layers.append(
                keras.layers.Conv2DTranspose(
                    f,
                    3,
                    strides=2,
                    padding="same",
                    activation="relu",
                    kernel_initializer=he,
                    kernel_regularizer=l2,
                )
            )
        layers.append(
            keras.layers.Conv2DTranspose(
                1, 3, padding="same", kernel_initializer=he, kernel_regularizer=l2
            )
        )
        layers.append(keras.layers.Cropping2D(2))  # 32x32 back to 28x28, as aekit crops
    model = keras.Sequential(layers)
    rate = keras.optimizers.schedules.ExponentialDecay(1e-3, 1000, 0.96, staircase=True)
    model.compile(
        keras.optimizers.Adam(rate),
        keras.losses.BinaryCrossentropy(from_logits=True),
        jit_compile=args.xla,
    )

    ends: list[float] = []

    class Clock(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: object = None) -> None:
            ends.append(time.perf_counter())

    model.fit(
        x,
        x,
        batch_size=args.batch_size,
        epochs=1 + args.epochs,
        shuffle=True,
        verbose=0,
        callbacks=[Clock()],
    )
    seconds = ends[-1] - ends[0]
    print(
        json.dumps(
            {"images_per_s": len(x) * args.epochs / seconds, "parameters": model.count_params()}
        )
    )


if __name__ == "__main__":
    main()
