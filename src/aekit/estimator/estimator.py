"""The Estimator: trains, evaluates and predicts with a model_fn, owning the loop.

`train` restores the newest checkpoint and hands the batches to a `TrainLoop`
(aekit.estimator.loop), which holds the whole of one train call; `evaluate` and
`predict` are the short loops below.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aekit import summary
from aekit.data.context import InputContext
from aekit.errors import CheckpointError, ConfigError, InputError
from aekit.estimator import checkpoint as ckpt
from aekit.estimator import predictions, rng, run_config
from aekit.estimator.distributed import Strategy
from aekit.estimator.feedback import resolve_verbose, say
from aekit.estimator.fit import fit
from aekit.estimator.history import History
from aekit.estimator.inputs import (
    Batches,
    Features,
    InputFn,
    Labels,
    batch_size,
    iterate_batches,
    to_device,
)
from aekit.estimator.lock import RunLock
from aekit.estimator.loop import (
    NonFiniteFlag,
    TrainLoop,
    check_finite_loss,
    check_finite_weights,
    keyed,
)
from aekit.estimator.optimizers import adam
from aekit.estimator.params import ParamRules
from aekit.estimator.run_config import RunConfig
from aekit.estimator.spec import EstimatorSpec, ModeKeys, check_spec
from aekit.estimator.step import Stepper, autocast
from aekit.hooks.base import CheckpointSaverListener, Hook, RunContext, StepResult
from aekit.metrics import MetricUpdate

_log = logging.getLogger("aekit")

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


# model_fn(network, features, labels, mode, params) -> EstimatorSpec. Typed loosely
# because a model_fn may narrow features to a tensor, which a Protocol would refuse.
ModelFn = Callable[..., EstimatorSpec]


class Estimator:
    """Trains, evaluates and predicts with `model_fn` on `network`.

    Args:
        model_fn: returns an EstimatorSpec for a batch in a given mode.
        network: the torch module holding all trainable state.
        optimizer: an optimizer over `network`'s parameters, or a factory taking the
            parameters; default Adam with `params["learning_rate"]` (1e-3).
        lr_scheduler: factory taking the optimizer; the schedule is stepped every step.
        model_dir: where checkpoints and summaries go (overrides config.model_dir).
        params: hyper-parameters handed to model_fn. Every checkpoint records them; a
            restore refuses a checkpoint whose params differ, except the learning rates
            named in `MUTABLE_PARAMS`, which it applies (and logs).
        config: a RunConfig.
    """

    # Params a resumed run may change; the optimizer's rate follows LEARNING_RATE_PARAM's.
    MUTABLE_PARAMS: frozenset[str] = frozenset({"learning_rate"})
    LEARNING_RATE_PARAM = "learning_rate"

    def __init__(
        self,
        model_fn: ModelFn,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer | OptimizerFactory | None = None,
        lr_scheduler: SchedulerFactory | None = None,
        model_dir: str | Path | None = None,
        params: Mapping[str, Any] | None = None,
        config: RunConfig | None = None,
    ) -> None:
        if not isinstance(network, torch.nn.Module):
            raise ConfigError(f"network must be a torch.nn.Module, got {type(network).__name__}")
        config = config or RunConfig()
        directory = run_config.model_dir_of(model_dir, config)
        self._config = dataclasses.replace(config, model_dir=str(directory))
        self._params: dict[str, Any] = dict(params or {})
        self.strategy = (
            Strategy.join(config.device, config.collective_timeout_secs)
            if config.distributed
            else Strategy()
        )
        self._device = self.strategy.device or self._config.torch_device
        if self._device.type == "cuda":
            # TF32 matmuls and tuned convolution algorithms: free speed on NVIDIA GPUs.
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
        self._model_fn = model_fn
        network = network.to(self._device)
        optimizer = self._make_optimizer(network, optimizer)
        self._state = ckpt.TrainingState(
            network=network,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler(optimizer) if lr_scheduler else None,
            # float16 gradients underflow without loss scaling; bfloat16 has float32's range.
            grad_scaler=torch.amp.GradScaler(self._device.type)
            if self._config.precision == "16-mixed"
            else None,
            # Shuffles draw from this one, in step on every rank of a job (see InputContext).
            shuffle_rng=torch.Generator(),
        )
        self._stepper: Stepper | None = None  # made by the first train()
        self._synced_with: Path | None = None  # checkpoint whose state is in memory
        self._synced_hook_states: dict[str, Any] = {}  # hook state of the synced checkpoint
        self._nonfinite = NonFiniteFlag(self._device)
        self.event_writers = summary.EventWriters(self.model_dir, enabled=self.strategy.is_chief)
        # Losses and metrics per epoch, over every train and evaluate call of this object.
        self.history = History()

    def _make_optimizer(
        self, network: torch.nn.Module, optimizer: torch.optim.Optimizer | OptimizerFactory | None
    ) -> torch.optim.Optimizer:
        if isinstance(optimizer, torch.optim.Optimizer):
            return optimizer
        if optimizer is None:
            return adam(network.parameters(), float(self._params.get("learning_rate", 1e-3)))
        return optimizer(network.parameters())

    # -- properties ---------------------------------------------------------------------

    @property
    def model_dir(self) -> str:
        """Directory holding checkpoints and summaries."""
        assert self._config.model_dir is not None
        return self._config.model_dir

    @property
    def config(self) -> RunConfig:
        """The RunConfig in force (model_dir filled in)."""
        return self._config

    @property
    def params(self) -> dict[str, Any]:
        """A copy of the hyper-parameters handed to model_fn."""
        return dict(self._params)

    @property
    def network(self) -> torch.nn.Module:
        """The torch module being trained."""
        return self._state.network

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimizer updating the network."""
        return self._state.optimizer

    @property
    def device(self) -> torch.device:
        """Where the network and batches live."""
        return self._device

    @property
    def global_step(self) -> int:
        """Training steps taken, as of the state in memory."""
        return self._state.global_step

    def latest_checkpoint(self) -> Path | None:
        """Newest checkpoint file in model_dir, or None."""
        return ckpt.latest_checkpoint(self.model_dir)

    def loss_was_nonfinite(self) -> bool:
        """Whether any training loss since the last restore was NaN or infinite (syncs)."""
        return self._nonfinite.seen()

    # -- checkpoints --------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        """Write the state in memory as `ckpt-<global_step>.pt`; refuse a NaN-tainted state.

        In a data-parallel job every rank calls it at the same step (each rank's random
        state goes into the file); only rank 0 writes; every rank returns the path.
        """
        return self._save(())

    def _save(self, hooks: Sequence[Hook]) -> Path:
        step = self.global_step
        check_finite_loss(self._nonfinite, step, self.model_dir)
        check_finite_weights(self.network, step, self.model_dir)
        hook_states = {key: s for key, hook in keyed(hooks) if (s := hook.state_dict()) is not None}
        checkpoint = ckpt.build(
            self._state, self._params, hook_states, self.strategy.all_gather(rng.get_state())
        )
        path = ckpt.checkpoint_path(self.model_dir, step)
        if self.strategy.is_chief:
            Path(self.model_dir).mkdir(parents=True, exist_ok=True)
            ckpt.save(path, checkpoint)
            ckpt.prune(self.model_dir, self._config.keep_checkpoint_max)
        self.strategy.barrier()  # the file exists before any rank looks for it
        self._synced_with, self._synced_hook_states = path, hook_states
        _log.debug("saved %s", path)
        return path

    def restore(self, checkpoint_path: str | Path | None = None) -> bool:
        """Load a checkpoint (default: the newest readable one) into memory; False if none."""
        return self._restore(checkpoint_path)

    def restore_trained(self, checkpoint_path: str | Path | None = None) -> None:
        """Load the checkpoint to infer with; CheckpointError when there is none to load.

        Evaluating or predicting with the initial random weights is never what was meant
        (TensorFlow's Estimator refuses it too).
        """
        if not self._restore(checkpoint_path):
            raise CheckpointError(
                f"no trained model in {self.model_dir}: no readable ckpt-<step>.pt; train "
                "first, or save the weights in memory with save_checkpoint()"
            )

    def _restore(self, path: str | Path | None = None, with_rng: bool = False) -> bool:
        """Load `path` (default: the newest readable checkpoint); False if there is none."""
        if path is None:
            newest = self.latest_checkpoint()
            if newest is not None and newest == self._synced_with:
                return True  # memory already holds it
            found = ckpt.load_latest(self.model_dir, self._device)
            if found is None:
                return False
            path, checkpoint = found
        else:
            path = Path(path)
            checkpoint = ckpt.load(path, self._device)
        rules = ParamRules(
            self._params, self.MUTABLE_PARAMS, self.LEARNING_RATE_PARAM, self.model_dir
        )
        rank = self.strategy.rank if with_rng else None
        self._synced_hook_states = ckpt.restore(checkpoint, self._state, rules, path, rank)
        self._synced_with = path
        self._nonfinite.reset()
        _log.info("restored %s (step %d)", path, self.global_step)
        return True

    # -- train --------------------------------------------------------------------------

    def train(
        self,
        input_fn: InputFn,
        hooks: Sequence[Hook] | None = None,
        steps: int | None = None,
        max_steps: int | None = None,
        saving_listeners: Sequence[CheckpointSaverListener] = (),
        verbose: int | str = "auto",
    ) -> Estimator:
        """Train until the input ends, `steps` more steps, or global step `max_steps`.

        Resumes from the newest checkpoint in model_dir and saves one at the end. The
        losses (and the metrics of evaluations run meanwhile) go into `self.history`: a
        record per epoch of an input that marks its epochs (`numpy_input_fn(num_epochs=3)`
        gives 3), else one at the end. `verbose`: 0 quiet, 1 a progress bar and a line per
        record ("Epoch 2/3 - ..."), 2 the lines alone, "auto" 1 on a terminal or in a
        notebook and 2 elsewhere (as Keras' `fit`).
        """
        shown = resolve_verbose(verbose)
        if steps is not None and max_steps is not None:
            raise ConfigError("give steps or max_steps to train(), not both")
        for name, value in (("steps", steps), ("max_steps", max_steps)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value <= 0
            ):
                raise ConfigError(f"train({name}=...) must be a positive integer, got {value!r}")
        # Only the writing process (rank 0) locks the model_dir.
        lock = RunLock(self.model_dir) if self.strategy.is_chief else contextlib.nullcontext()
        with lock:
            self._train(input_fn, list(hooks or []), steps, max_steps, saving_listeners, shown)
        return self

    def _train(
        self,
        input_fn: InputFn,
        hooks: list[Hook],
        steps: int | None,
        max_steps: int | None,
        listeners: Sequence[CheckpointSaverListener],
        verbose: int,
    ) -> None:
        strategy = self.strategy
        if strategy.is_chief:
            ckpt.remove_stale_temporaries(self.model_dir)
            summary.repair_event_files(self.model_dir)
        restored = self._restore(with_rng=True)
        strategy.agree_on_step(self.global_step, self.model_dir)  # also a barrier
        if self._at_max_steps(max_steps, verbose):
            return
        if not restored:
            self._seed_a_new_run()
        if (Path(self.model_dir) / "train").is_dir():  # events of an earlier run may follow
            self.event_writers.restart("train", self.global_step + 1)
        last_step = max_steps if steps is None else self.global_step + steps
        loop = TrainLoop(
            self._state,
            self._the_stepper(),
            strategy,
            self._config,
            self.event_writers,
            self._save,
            self._nonfinite,
            hooks,
            listeners,
            last_step,
            self.model_dir,
            self.history,
            verbose,
        )
        context = InputContext(
            self._device,
            strategy.world_size,
            strategy.rank,
            equal_shards=True,
            shuffle_generator=self._state.shuffle_rng,
            global_step=self.global_step,
        )
        finished = False
        try:
            self.network.train()
            loop.run(Batches(input_fn, context), self._synced_hook_states)
            finished = True
        finally:
            # After a failure (a full disk, say) a second error from flushing summaries to
            # the same disk must not hide the first.
            self.event_writers.flush(strict=finished)

    def _the_stepper(self) -> Stepper:
        """The update step, built at the first train call and kept (compiled graphs with it)."""
        if self._stepper is None:
            self._stepper = Stepper(
                self._model_fn,
                self.network,
                self._params,
                self.optimizer,
                self._config,
                self._device,
                self.strategy,
                self._state.grad_scaler,
            )
        return self._stepper

    def _at_max_steps(self, max_steps: int | None, verbose: int) -> bool:
        """Whether the run already stands at `max_steps` (then it says so, and trains nothing)."""
        if max_steps is None or self.global_step < max_steps:
            return False
        line = (
            f"nothing to train: {self.model_dir} is at step {self.global_step}, already "
            f"max_steps={max_steps}; give a larger max_steps, or steps=N for N more"
        )
        if verbose and self.strategy.is_chief:
            say(line)
        else:  # a quiet caller says it in its own terms (the command line: --epochs)
            _log.debug("%s", line)
        return True

    def _seed_a_new_run(self) -> None:
        """Seed a run that restored nothing: rank 0's seed, a stream of its own per rank."""
        seed = self.strategy.broadcast_seed(self._config.random_seed)
        if seed is not None:
            rng.seed_everything(seed, self.strategy.rank)
        shuffle_seed = seed if seed is not None else self.strategy.shared_random_int()
        self._state.shuffle_rng.manual_seed(shuffle_seed)

    def fit(
        self,
        x: Any,
        y: Any = None,
        *,
        epochs: int = 1,
        batch_size: int | None = None,
        validation_data: Any = None,
        validation_split: float = 0.0,
        callbacks: Sequence[Hook] | None = None,
        verbose: int | str = "auto",
        shuffle: bool = True,
        initial_epoch: int | None = None,
    ) -> History:
        """Train on arrays as Keras's `Model.fit` does; returns this call's History.

        Built on `train_and_evaluate` with an evaluation at the end of every epoch: the
        same data, seed and arguments give the same weights to the bit.

        Args:
            x: the features: a NumPy array, a torch tensor, a memory-mapped `.npy` (read
                batch by batch), or a batched `aekit.data.Dataset` (one pass an epoch).
            y: labels (a classifier's class ids, or the images to reconstruct: `fit(x, x)`
                is the same as `fit(x)`); None for an autoencoder.
            epochs: the epoch to end at, counted over the run in the model dir (Keras's
                meaning with `initial_epoch`): after `fit(epochs=5)`, `fit(epochs=10)`
                trains epochs 6 to 10, and `fit(epochs=5)` again trains nothing.
            batch_size: examples a step (per process in a job); default 32, as Keras.
            validation_data: `(x_val, y_val)`, `x_val`, or a batched Dataset: evaluated
                after every epoch into the History as "val_<metric>".
            validation_split: the last fraction of `x` (before shuffling) to validate on.
            callbacks: aekit hooks, e.g. `aekit.hooks.EarlyStopping`, `ReduceLROnPlateau`,
                `CSVLogger`; a watched key that nothing records is refused.
            verbose: 0 quiet, 1 a progress bar and a line per epoch, 2 the lines alone,
                "auto" 1 on a terminal and 2 elsewhere.
            shuffle: a new order every epoch (from RunConfig.random_seed).
            initial_epoch: the epochs already trained; the model dir says it, and a
                value that disagrees is refused (aekit resumes from the model dir).
        """
        return fit(
            self,
            x,
            y,
            epochs=epochs,
            batch_size=batch_size,
            validation_data=validation_data,
            validation_split=validation_split,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=shuffle,
            initial_epoch=initial_epoch,
        )

    def _call_model_fn(self, features: Features, labels: Labels, mode: ModeKeys) -> EstimatorSpec:
        """The model_fn's spec for an EVAL or PREDICT batch, under the run's precision."""
        with autocast(self._device, self._config.precision):
            spec = self._model_fn(self.network, features, labels, mode, self._params)
        return check_spec(spec, mode)

    def _context(self, mode: ModeKeys) -> RunContext:
        return RunContext(
            mode, self.network, self.model_dir, self.global_step, self.strategy.is_chief
        )

    # -- evaluate -----------------------------------------------------------------------

    def evaluate(
        self,
        input_fn: InputFn,
        steps: int | None = None,
        hooks: Sequence[Hook] | None = None,
        name: str | None = None,
        checkpoint_path: str | Path | None = None,
    ) -> dict[str, float]:
        """Metrics over the whole input (or `steps` batches), plus "loss" and "global_step".

        Writes them as scalars to `model_dir/eval` (or `eval_<name>`) and adds them to
        `self.history` ("val_<metric>", or "<name>_<metric>").
        """
        if name is not None and (not name or "/" in name or name.startswith(".")):
            raise ConfigError(f"evaluate(name={name!r}) must be a plain directory name")
        self.restore_trained(checkpoint_path)
        self.strategy.agree_on_step(self.global_step, self.model_dir)
        hooks = list(hooks or [])
        context = self._context(ModeKeys.EVAL)
        totals: dict[str, MetricUpdate] = {}
        loss_total = torch.zeros((), dtype=torch.float64, device=self._device)
        examples = 0
        # Each process evaluates its share; shares may differ by one example.
        shares = InputContext(self._device, self.strategy.world_size, self.strategy.rank)
        with self._inferring(hooks, context), torch.inference_mode():
            for index, (features, labels) in enumerate(iterate_batches(input_fn, shares)):
                if (steps is not None and index >= steps) or context.stop_requested:
                    break
                for hook in hooks:
                    hook.before_run(context)
                features = to_device(features, self._device)
                spec = self._call_model_fn(features, to_device(labels, self._device), ModeKeys.EVAL)
                assert spec.loss is not None
                size = batch_size(features)
                loss_total += spec.loss.detach().to(torch.float64) * size
                examples += size
                for key, update in spec.eval_metric_ops.items():
                    totals[key] = totals[key] + update if key in totals else update
                for hook in hooks:
                    hook.after_run(context, StepResult(spec, size, spec.loss.detach()))
        loss_total, examples, totals = self.strategy.sum_metrics(loss_total, examples, totals)
        if examples == 0:
            raise InputError("evaluate() got no batches from input_fn; give it data to evaluate")
        results = {key: update.result() for key, update in totals.items()}
        results["loss"] = float(loss_total) / examples
        self.event_writers.write_scalars(
            f"eval_{name}" if name else "eval", results, self.global_step
        )
        self.event_writers.flush()
        self.history.add_evaluation(self.global_step, results, name)
        results["global_step"] = float(self.global_step)
        return results

    @contextlib.contextmanager
    def _inferring(self, hooks: Sequence[Hook], context: RunContext) -> Iterator[None]:
        """The network in eval mode, the hooks begun; `end` after a loop without error."""
        for hook in hooks:
            hook.begin(context)
        for hook in hooks:
            hook.after_create_session(context)
        was_training = self.network.training
        self.network.eval()
        try:
            yield
            for hook in hooks:
                hook.end(context)
        finally:
            self.network.train(was_training)

    # -- predict ------------------------------------------------------------------------

    def predict(
        self,
        input_fn: InputFn,
        predict_keys: Sequence[str] | None = None,
        hooks: Sequence[Hook] | None = None,
        checkpoint_path: str | Path | None = None,
        yield_single_examples: bool = True,
    ) -> Iterator[dict[str, np.ndarray]]:
        """Yield predictions as dicts of numpy arrays, one per example (or per batch)."""
        self.restore_trained(checkpoint_path)
        hooks = list(hooks or [])
        context = self._context(ModeKeys.PREDICT)
        with self._inferring(hooks, context):
            for features, labels in iterate_batches(input_fn, InputContext(self._device)):
                if context.stop_requested:
                    break
                for hook in hooks:
                    hook.before_run(context)
                features = to_device(features, self._device)
                with torch.inference_mode():
                    spec = self._call_model_fn(
                        features, to_device(labels, self._device), ModeKeys.PREDICT
                    )
                outputs = predictions.select(spec, predict_keys)
                for hook in hooks:
                    hook.after_run(context, StepResult(spec, batch_size(features)))
                if yield_single_examples:
                    yield from predictions.single_examples(outputs)
                else:
                    yield outputs
