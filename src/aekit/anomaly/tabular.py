"""The autoencoder for the rows of a table, and how it is trained: one recipe for every door.

`AutoencoderOutlierDetector` (scikit-learn's API) and `aekit train fully_connected` on a
table both build `tabular_estimator` and train it with a `TabularRecipe`, so the same seed
gives the same model and the same scores from Python and from the command line.

The network scales each feature (statistics fitted on the training rows and kept as
buffers, so checkpoints and pickles keep them), encodes to a linear code and decodes to a
linear reconstruction in the scaled space; its loss and its per-row score are the mean
squared error there, so no feature dominates by its units. Width, batch size and epochs
follow from the table's shape, and training stops early once the error on a held-out tenth
of the training rows stops falling, keeping the best weights.

The network holds `TABLE_MEMBERS` autoencoders, cross-fitted: a hash of each row's values
(`fold_of`) names the one member that never trains on it. So every training row has a
score from a member that did not see it, scored as a new row is; thresholds and the
score's units are taken from those (aekit.anomaly.scores.TableScore), and flag on new
normal rows the share they promise. A new row's score averages the members'.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aekit import metrics
from aekit.anomaly.folds import TABLE_MEMBERS, fold_of
from aekit.anomaly.scaling import SCALINGS, fit_scaling
from aekit.anomaly.scores import CODE_KEY, SCORE_KEY
from aekit.data.dataset import Dataset
from aekit.data.input_fn import numpy_input_fn
from aekit.errors import ConfigError, InputError
from aekit.estimator import Estimator, EstimatorSpec, ModeKeys, RunConfig
from aekit.estimator.optimizers import adam
from aekit.hooks.base import Hook, RunContext, StepResult
from aekit.hooks.monitors import EarlyStopping
from aekit.models.heads import ReconstructionNetwork, with_weight_decay
from aekit.models.layers import Activation, ActivationLayer, check_units
from aekit.models.memory import build_within_memory

_log = logging.getLogger("aekit")
__all__ = [  # fit_scaling and SCALINGS live in aekit.anomaly.scaling; imported from here too
    "SCALINGS",
    "TABLE_LEARNING_RATE",
    "HeldOutError",
    "TabularNetwork",
    "TabularRecipe",
    "fit_scaling",
    "load_scaling",
    "set_scaling",
    "sized_batch",
    "sized_epochs",
    "sized_hidden_units",
    "tabular_config",
    "tabular_estimator",
    "tabular_model_fn",
]
_CLIP = 1e4  # scaled values beyond this (a heavy tail after robust scaling) are clipped
_BATCH = 8192  # rows per forward pass when scoring
_ROWS_SEEN = 300_000  # the most rows a training run goes through (sized_epochs)
TABLE_LEARNING_RATE = 3e-3
"""Adam's rate for a table: the outlier detector's and `aekit train`'s on a table."""


def sized_hidden_units(n_features: int) -> list[int]:
    """Twice the features wide (8 to 128), then a code of about 2·√features, under the features.

    Chosen over the whole ADBench benchmark: a code of a quarter of the features starved
    the tables with few of them (5 to 10 features), and half of them let the wide ones
    (64 and more) copy their input.
    """
    code = max(1, min(n_features - 1, round(2 * math.sqrt(n_features))))
    return [int(np.clip(2 * n_features, 8, 128)), code]


def sized_batch(n_rows: int) -> int:
    """About 16 steps per epoch, in powers of two from 16 to 512 rows.

    With `TABLE_LEARNING_RATE` and early stopping at a 0.1% gain, this trained ADBench's 22
    tables in a sixth of the CPU time of 64 steps an epoch at a rate of 1e-3 and 0.01%, and
    scored them better (docs/anomaly.md).
    """
    return int(np.clip(2 ** round(np.log2(max(n_rows, 1) / 16)), 16, 512))


def sized_epochs(n_rows: int, batch_size: int) -> int:
    """About 10,000 steps and at most 300,000 rows seen, within 5 to 100 epochs.

    Early stopping ends most runs sooner. The row budget bites above 3,000 rows an epoch:
    a large table's error settles within a few passes, and every pass costs its rows.
    """
    steps_per_epoch = max(1, -(-n_rows // batch_size))
    return int(np.clip(min(10_000 // steps_per_epoch, _ROWS_SEEN // max(n_rows, 1)), 5, 100))


class TabularNetwork(ReconstructionNetwork):
    """Scaled features; per member, a fully-connected encoder to a linear code and a mirrored
    linear decoder.

    `forward(x)` takes rows in the features' own units and gives (the members' mean
    reconstruction in the scaled space, the members' codes side by side); `output_of` takes
    a reconstruction back to the features' units. `center` and `scale` are set with
    `fit_scaling`'s statistics (`set_scaling`). Member `m` trains on the rows whose
    `fold_of` is not `m`.
    """

    center: torch.Tensor
    scale: torch.Tensor
    input_dtype = torch.float64  # rows are scaled in float64 first (predict_input_fn)

    def __init__(
        self,
        n_features: int,
        hidden_units: Sequence[int],
        activation_fn: Activation = "relu",
        members: int = TABLE_MEMBERS,
    ) -> None:
        super().__init__()
        units = check_units("hidden_units", hidden_units)
        self.n_features = n_features
        self.members = members
        self.code_size = units[-1]
        self.image_shape = (1, 1, n_features)  # drawn as a strip of values, if ever
        # float64: a feature whose mean is far larger than its spread (1e6 ± 1e-3) keeps its
        # scaled values; float32 statistics would shift them by many standard deviations.
        self.register_buffer("center", torch.zeros(n_features, dtype=torch.float64))
        self.register_buffer("scale", torch.ones(n_features, dtype=torch.float64))
        self.encoders = nn.ModuleList(
            _stack([n_features, *units], activation_fn) for _ in range(members)
        )
        self.decoders = nn.ModuleList(
            _stack([*units[::-1], n_features], activation_fn) for _ in range(members)
        )

    def scale_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Rows in the space the network works in: centred, scaled, clipped, in its dtype."""
        # In the weights' dtype: float32 to train, float64 in the detector's scoring copy.
        return self._standardised(x).to(self._dtype())

    def folds(self, x: torch.Tensor) -> torch.Tensor:
        """The member that never trains on each row (`fold_of` its scaled values)."""
        return fold_of(self._standardised(x), self.members)

    def _standardised(self, x: torch.Tensor) -> torch.Tensor:
        """Centred, scaled and clipped, in float64 whatever the weights' dtype."""
        if x.dim() < 2 or x.shape[1:].numel() != self.n_features:
            raise InputError(
                f"rows of shape {tuple(x.shape[1:])} do not fit a model of {self.n_features} "
                "features; give rows with the features it was trained on"
            )
        rows = x.flatten(1).to(self.scale.dtype)
        return ((rows - self.center) / self.scale).clamp(-_CLIP, _CLIP)

    def _dtype(self) -> torch.dtype:
        return next(self.encoders.parameters()).dtype

    @property
    def example_shape(self) -> tuple[int, ...]:
        return (self.n_features,)

    def output_of(self, decoded: torch.Tensor) -> torch.Tensor:
        """A reconstruction in the scaled space back in the features' own units."""
        return (decoded * self.scale + self.center).to(decoded.dtype)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The members' codes of rows in the features' own units, side by side."""
        scaled = self.scale_rows(x)
        return torch.cat([encoder(scaled) for encoder in self.encoders], dim=1)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """The members' mean reconstruction, in the scaled space, of codes side by side."""
        parts = torch.split(code, self.code_size, dim=1)
        rows = [decoder(part) for decoder, part in zip(self.decoders, parts, strict=True)]
        return torch.stack(rows).mean(dim=0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.encode(x)
        return self.decode(code), code  # kept flat: the rows' scaled space

    def member_errors(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each member's reconstruction error of each row, (members, N), and codes (members,
        N, code size)."""
        scaled = self.scale_rows(x)
        codes = torch.stack([encoder(scaled) for encoder in self.encoders])
        rebuilt = torch.stack(
            [decoder(code) for decoder, code in zip(self.decoders, codes, strict=True)]
        )
        return (rebuilt - scaled).square().mean(dim=2), codes

    def errors_and_codes(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each member's error, (members, N), and code, (members, N, code size), of rows, and
        each row's fold.

        Rows go through in batches, each copied on its own: a read-only memory map is read
        a batch at a time, never whole.
        """
        errors, codes, folds = [], [], []
        with torch.no_grad():
            for start in range(0, len(x), _BATCH):
                rows = torch.from_numpy(np.array(x[start : start + _BATCH])).to(self.scale.device)
                error, code = self.member_errors(rows)
                errors.append(error.cpu())
                codes.append(code.cpu())
                folds.append(self.folds(rows).cpu())
        if not errors:
            empty = torch.empty(self.members, 0, self.code_size, dtype=self._dtype())
            return empty[:, :, 0].numpy(), empty.numpy(), np.zeros(0, dtype=np.int64)
        joined = (torch.cat(errors, dim=1), torch.cat(codes, dim=1), torch.cat(folds))
        return joined[0].numpy(), joined[1].numpy(), joined[2].numpy()


def _stack(widths: Sequence[int], activation_fn: Activation) -> nn.Sequential:
    """Linear layers with the activation between them, none after the last (linear output)."""
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), ActivationLayer(activation_fn)]
    return nn.Sequential(*layers[:-1])


def tabular_model_fn(
    network: TabularNetwork,
    features: torch.Tensor,
    labels: torch.Tensor | None,
    mode: ModeKeys,
    params: Mapping[str, Any],
) -> EstimatorSpec:
    """Mean squared reconstruction error of scaled rows; in training each row teaches the
    members other than its `fold_of` (labels, when given, are those folds).

    Predictions: `prediction` (the members' mean reconstruction in the features' own
    units), `embedding` (the members' codes side by side) and `reconstruction_error` (that
    prediction's error; the anomaly score takes each member's, `TableScore`). EVAL's loss
    is the members' mean error.
    """
    errors, codes = network.member_errors(features)
    if mode is ModeKeys.TRAIN:
        folds = network.folds(features) if labels is None else labels.long()
        members = torch.arange(network.members, device=errors.device).unsqueeze(1)
        teaches = (members != folds.unsqueeze(0)).to(errors.dtype)
        loss = (errors * teaches).sum() / teaches.sum().clamp(min=1)
        return EstimatorSpec(mode, loss=with_weight_decay(loss, network, params))
    embedding = torch.cat(list(codes), dim=1)
    reconstruction, target = network.decode(embedding), network.scale_rows(features)
    if mode is ModeKeys.PREDICT:
        prediction = network.output_of(reconstruction).reshape(features.shape)
        error = metrics.example_mse(target, reconstruction)
        predictions = {"prediction": prediction, CODE_KEY: embedding, SCORE_KEY: error}
        return EstimatorSpec(mode, predictions=predictions)
    rmse = metrics.root_mean_squared_error(target, reconstruction)
    return EstimatorSpec(mode, loss=errors.mean(), eval_metric_ops={"rmse": rmse})


def tabular_config(seed: int, device: str = "cpu", **settings: Any) -> RunConfig:
    """The RunConfig the recipe trains under; `settings` add to it (the command line's logs).

    One thread: with more, float sums run in another order, early stopping can end at
    another epoch and the same seed gives other scores. These networks are too small for a
    second thread to pay (12% faster on the largest tables).
    """
    quiet = {"log_step_count_steps": 0, "save_summary_steps": 0}
    return RunConfig(
        random_seed=seed,
        device=device,
        save_checkpoints_secs=None,
        save_checkpoints_steps=10**9,
        cpu_threads=1,
        **{**quiet, **settings},
    )


def tabular_estimator(
    n_features: int,
    hidden_units: Sequence[int],
    learning_rate: float = TABLE_LEARNING_RATE,
    activation_fn: Activation = "relu",
    weight_decay: float | None = None,
    model_dir: str | Path | None = None,
    config: RunConfig | None = None,
) -> Estimator:
    """An Estimator of a TabularNetwork, its initial weights drawn from config's seed.

    Set the network's scaling (`set_scaling`) before training; checkpoints keep it.
    """
    units = check_units("hidden_units", hidden_units)
    config = config or RunConfig()
    if config.random_seed is not None:
        torch.manual_seed(config.random_seed)  # the same initial weights for the same seed
    network = build_within_memory(
        lambda: TabularNetwork(n_features, units, activation_fn),
        f"n_features={n_features}, hidden_units={units}",
    )
    return Estimator(
        tabular_model_fn,
        network,
        optimizer=lambda p: adam(p, learning_rate),
        model_dir=model_dir,
        params={
            "learning_rate": learning_rate,
            "n_features": n_features,
            "hidden_units": units,
            "activation_fn": activation_fn,
            "weight_decay": weight_decay,
        },
        config=config,
    )


def set_scaling(network: torch.nn.Module, rows: np.ndarray, method: str) -> None:
    """Fit `method`'s scaling on training rows (N, features) into a TabularNetwork."""
    if not isinstance(network, TabularNetwork):
        raise ConfigError("set_scaling needs the network of a tabular_estimator")
    flat = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
    if flat.shape[1] != network.n_features or not len(flat):
        raise InputError(f"scaling got rows of shape {flat.shape}; give (N, {network.n_features})")
    load_scaling(network, *fit_scaling(flat, method))


def load_scaling(network: torch.nn.Module, center: np.ndarray, scale: np.ndarray) -> None:
    """Put statistics already fitted (by `fit_scaling` or a streaming pass) into the network."""
    if not isinstance(network, TabularNetwork):
        raise ConfigError("load_scaling needs the network of a tabular_estimator")
    with torch.no_grad():
        network.center.copy_(torch.from_numpy(np.asarray(center, dtype=np.float64)))
        network.scale.copy_(torch.from_numpy(np.asarray(scale, dtype=np.float64)))


class HeldOutError(Hook):
    """At the end of each epoch (every `every_n_steps`): the held-out rows' mean error, into
    the epoch's record of the History as "held_out_loss", which early stopping watches."""

    def __init__(self, held: np.ndarray, every_n_steps: int) -> None:
        self.held = np.ascontiguousarray(held, dtype=np.float64)
        self.every_n_steps = every_n_steps

    def after_run(self, context: RunContext, result: StepResult) -> None:
        if context.global_step % self.every_n_steps or context.history is None:
            return
        network = context.network
        assert isinstance(network, TabularNetwork)
        network.eval()
        errors, _, _ = network.errors_and_codes(self.held)
        network.train()
        context.history.add_evaluation(context.global_step, {"loss": float(errors.mean())},
                                       "held_out")  # fmt: skip


def early_stopping(held_rows: np.ndarray, steps_per_epoch: int, patience: int) -> list[Hook]:
    """Every recipe's early stopping: on the held-out rows each epoch (none without such rows).

    Training stops once `patience` epochs in a row have not lowered the held-out error by
    0.1% of its best, and ends with the best epoch's weights; the best weights and counters
    go into checkpoints, so a resumed run ends as an uninterrupted one.
    """
    if not len(held_rows):
        return []
    stop = EarlyStopping("held_out_loss", patience=patience, relative_delta=1e-3)
    return [HeldOutError(held_rows, steps_per_epoch), stop]


def held_out_split(n: int, seed: int, fraction: float) -> tuple[np.ndarray, int]:
    """(a permutation of the n rows, how many of its first rows are held out): `fraction` of
    them, none under 20 rows. Every recipe holds out its early-stopping rows this way."""
    order = np.random.default_rng(seed).permutation(n)
    return order, int(n * fraction) if n >= 20 else 0


@dataclass(frozen=True)
class TabularRecipe:
    """How a table's rows are trained: the held-out split, batch size, epochs, early stopping.

    Build it with `TabularRecipe.of(rows, ...)`; `input_fn` gives the training batches and
    `hooks` the early stopping. Train with `estimator.train(recipe.input_fn(), hooks=...)`,
    or with `train_and_evaluate` and `max_steps=recipe.max_steps`, to the same result.
    """

    train_rows: np.ndarray
    held_rows: np.ndarray
    batch_size: int
    epochs: int
    patience: int
    seed: int

    @classmethod
    def of(
        cls,
        rows: np.ndarray,
        seed: int,
        batch_size: int | None = None,
        epochs: int | None = None,
        validation_fraction: float = 0.1,
        patience: int = 3,
    ) -> TabularRecipe:
        """Hold out `validation_fraction` of the rows (none under 20 rows); size the rest."""
        # float64: features far from zero (timestamps, large offsets) keep their digits until
        # the model scales them.
        flat = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
        order, n_held = held_out_split(len(flat), seed, validation_fraction)
        train, held = flat[order[n_held:]], flat[order[:n_held]]
        batch = batch_size or sized_batch(len(train))
        return cls(train, held, batch, epochs or sized_epochs(len(train), batch), patience, seed)

    @property
    def steps_per_epoch(self) -> int:
        """Batches per pass over the training rows."""
        return -(-len(self.train_rows) // self.batch_size)

    @property
    def max_steps(self) -> int:
        """The most steps training takes: every epoch to its end."""
        return self.steps_per_epoch * self.epochs

    def input_fn(self) -> Callable[[], Dataset]:
        """The training rows, shuffled with the recipe's seed, `epochs` times, in batches."""
        return numpy_input_fn(
            self.train_rows,
            batch_size=self.batch_size,
            num_epochs=self.epochs,
            seed=self.seed,
            dtype=torch.float64,
            resume=True,  # the run's one input: a resumed run goes on where it stopped
        )

    def hooks(self) -> list[Hook]:
        """Early stopping on the held-out rows (none when no rows are held out)."""
        return early_stopping(self.held_rows, self.steps_per_epoch, self.patience)
