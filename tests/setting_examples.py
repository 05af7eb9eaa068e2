"""An example value of every setting with a flag, for the tests that walk the settings."""

from __future__ import annotations

from typing import Any

# For each setting with a flag: the word given on the command line, and the value it means.
# Each value differs from the setting's defaults, so that a setting that is dropped on the
# way shows.
EXAMPLES: dict[str, tuple[str, Any]] = {
    "dataset": ("digits", "digits"),
    "data_dir": ("/tmp/aekit-data", "/tmp/aekit-data"),
    "label_column": ("is_anomaly", "is_anomaly"),
    "exclude_classes": ("3,5", [3, 5]),
    "stream": ("always", "always"),
    "binarize": ("dynamic", "dynamic"),
    "scaling": ("robust", "robust"),
    "hidden_units": ("64,8", [64, 8]),
    "num_filters": ("8,4", [8, 4]),
    "downsample": ("strided", "strided"),
    "activation": ("tanh", "tanh"),
    "latent_dim": ("3", 3),
    "encoder": ("convolutional", "convolutional"),
    "decoder": ("gaussian", "gaussian"),
    "beta": ("0.5", 0.5),
    "dense_units": ("32", 32),
    "n_classes": ("3", 3),
    "dropout": ("0.25", 0.25),
    "keep_prob": ("0.8", 0.8),
    "weight_decay": ("0.001", 0.001),
    "noise_factor": ("0.3", 0.3),
    "noise": ("salt_and_pepper", "salt_and_pepper"),
    "epochs": ("7", 7),
    "batch_size": ("64", 64),
    "learning_rate": ("0.01", 0.01),
    "pretrain_learning_rate": ("0.01", 0.01),
    "pretrain_epochs": ("2", 2),
    "clip_grad_norm": ("2.5", 2.5),
    "seed": ("11", 11),
    "device": ("cpu", "cpu"),
    "save_images": ("/tmp/aekit-frames", "/tmp/aekit-frames"),
    "log_every": ("5", 5),
}
