"""The Estimator: trains, evaluates and predicts with a model_fn, owning the loop."""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aekit import summary
from aekit.errors import CheckpointError, ConfigError, InputError
from aekit.estimator import checkpoint as ckpt
from aekit.estimator import cpu, distributed, predictions, rng, run_config, settings
from aekit.estimator.inputs import (
    Features,
    InputContext,
    InputFn,
    Labels,
    batch_size,
    iterate_batches,
    to_device,
)
from aekit.estimator.lock import writer_lock
from aekit.estimator.optimizers import adam
from aekit.estimator.run_config import RunConfig
from aekit.estimator.spec import EstimatorSpec, ModeKeys
from aekit.estimator.step import Stepper, autocast, check_spec
from aekit.hooks.base import CheckpointSaverListener, Hook, RunContext, StepResult
from aekit.hooks.basic import (
    LoggingHook,
    ParameterTableHook,
    StepCounterHook,
    StopAtStepHook,
    SummarySaverHook,
)
from aekit.hooks.checkpoint_saver import CheckpointSaverHook
from aekit.hooks.cpu_threads import CpuThreadsHook
from aekit.hooks.nan_guard import NanLossGuardHook, NonFiniteFlag, refuse_nonfinite_state
from aekit.hooks.progress import ProgressHook
from aekit.metrics import MetricUpdate
from aekit.summary import EventWriters

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
        pinned = distributed.join(self._config.device, self._config.collective_timeout_secs)
        self._device = pinned or self._config.torch_device
        if self._device.type == "cuda":
            # TF32 matmuls and tuned convolution algorithms: free speed on NVIDIA GPUs.
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
        self._model_fn = model_fn
        self._network = network.to(self._device)
        self._optimizer = self._make_optimizer(optimizer)
        self._lr_scheduler = lr_scheduler(self._optimizer) if lr_scheduler else None
        self._stepper: Stepper | None = None  # made by the first train()
        # float16 gradients underflow without loss scaling; bfloat16 has float32's range.
        self._scaler = (
            torch.amp.GradScaler(self._device.type)
            if self._config.precision == "16-mixed"
            else None
        )
        self._global_step = 0
        self._synced_with: Path | None = None  # checkpoint whose state is in memory
        self._nonfinite = NonFiniteFlag(self._device)
        # Shuffles draw from this one, in step on every rank of a job (see InputContext).
        self._shuffle_rng = torch.Generator()
        self._train_hooks: list[Hook] = []
        self._synced_hook_states: dict[str, Any] = {}  # hook state of the synced checkpoint
        self.event_writers = EventWriters(self.model_dir, enabled=distributed.is_chief())

    def _make_optimizer(
        self, optimizer: torch.optim.Optimizer | OptimizerFactory | None
    ) -> torch.optim.Optimizer:
        if isinstance(optimizer, torch.optim.Optimizer):
            return optimizer
        if optimizer is None:
            lr = float(self._params.get("learning_rate", 1e-3))
            return adam(self._network.parameters(), lr)
        return optimizer(self._network.parameters())

    # -- properties ---------------------------------------------------------------

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
        return self._network

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimizer updating the network."""
        return self._optimizer

    @property
    def device(self) -> torch.device:
        """Where the network and batches live."""
        return self._device

    @property
    def global_step(self) -> int:
        """Training steps taken, as of the state in memory."""
        return self._global_step

    def latest_checkpoint(self) -> Path | None:
        """Newest checkpoint file in model_dir, or None."""
        return ckpt.latest_checkpoint(self.model_dir)

    # -- checkpoints --------------------------------------------------------------

    def loss_was_nonfinite(self) -> bool:
        """Whether any training loss since the last restore was NaN or infinite (syncs)."""
        return self._nonfinite.seen()

    def save_checkpoint(self) -> Path:
        """Write the state in memory as `ckpt-<global_step>.pt`; refuse a NaN-tainted state.

        In a data-parallel job every rank calls it at the same step (each rank's random
        state goes into the file); only rank 0 writes; every rank returns the path.
        """
        refuse_nonfinite_state(self)
        rng_by_rank = distributed.all_gather(rng.get_state())
        hooks = {
            key: state
            for key, hook in _keyed(self._train_hooks)
            if (state := hook.state_dict()) is not None
        }
        state = {
            "global_step": self._global_step,
            "network": self._network.state_dict(),
            "optimizer": self._optimizer.state_dict(),
            "lr_scheduler": self._lr_scheduler.state_dict() if self._lr_scheduler else None,
            "rng": rng_by_rank[0],
            "rng_by_rank": rng_by_rank,
            "shuffle_rng": self._shuffle_rng.get_state(),
            "grad_scaler": self._scaler.state_dict() if self._scaler is not None else None,
            "hooks": hooks,
            "params": settings.recorded(self._params),
        }
        path = ckpt.checkpoint_path(self.model_dir, self._global_step)
        if distributed.is_chief():
            Path(self.model_dir).mkdir(parents=True, exist_ok=True)
            ckpt.save(path, state)
            ckpt.prune(self.model_dir, self._config.keep_checkpoint_max)
        distributed.barrier()  # the file exists before any rank looks for it
        self._synced_with = path
        self._synced_hook_states = hooks
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
            path, state = found
        else:
            path = Path(path)
            state = ckpt.load(path, self._device)
        changed_rate = settings.compare(
            state.get("params"),
            self._params,
            self.MUTABLE_PARAMS,
            self.LEARNING_RATE_PARAM,
            path,
            self.model_dir,
        )
        if not settings.weights_finite(state["network"]):
            raise CheckpointError(
                f"checkpoint {path} holds NaN or infinite weights; delete it to go back to an "
                "earlier checkpoint, or train from scratch in a new model_dir"
            )
        try:
            self._network.load_state_dict(state["network"])
            self._optimizer.load_state_dict(state["optimizer"])
            ckpt.check_optimizer_state(self._optimizer, path)
            if self._lr_scheduler is not None and state.get("lr_scheduler") is not None:
                self._lr_scheduler.load_state_dict(state["lr_scheduler"])
            if self._scaler is not None and state.get("grad_scaler"):
                self._scaler.load_state_dict(state["grad_scaler"])
            if changed_rate is not None:
                settings.scale_learning_rate(self._optimizer, self._lr_scheduler, *changed_rate)
        except (KeyError, RuntimeError, ValueError, TypeError, AttributeError, IndexError) as exc:
            raise ConfigError(
                f"checkpoint {path} does not fit this model ({str(exc).splitlines()[0][:200]}); "
                "use a fresh model_dir or the model settings it was trained with"
            ) from exc
        self._global_step = int(state["global_step"])
        if with_rng and state.get("rng"):
            try:
                rng.set_rank_state(state.get("rng_by_rank") or [state["rng"]], distributed.rank())
                if state.get("shuffle_rng") is not None:
                    # The checkpoint was loaded onto the training device; generators
                    # take their state from a CPU tensor.
                    self._shuffle_rng.set_state(state["shuffle_rng"].cpu())
            except (AttributeError, KeyError, RuntimeError, TypeError, ValueError) as exc:
                raise CheckpointError(
                    f"checkpoint {path} holds a damaged random-generator state ({exc}); "
                    "delete it to resume from an earlier one"
                ) from exc
        self._synced_hook_states = dict(state.get("hooks") or {})
        self._synced_with = path
        self._nonfinite.reset()
        _log.info("restored %s (step %d)", path, self._global_step)
        return True

    # -- train --------------------------------------------------------------------

    def train(
        self,
        input_fn: InputFn,
        hooks: Sequence[Hook] | None = None,
        steps: int | None = None,
        max_steps: int | None = None,
        saving_listeners: Sequence[CheckpointSaverListener] = (),
    ) -> Estimator:
        """Train until the input ends, `steps` more steps, or global step `max_steps`.

        Resumes from the newest checkpoint in model_dir and saves one at the end.
        """
        if steps is not None and max_steps is not None:
            raise ConfigError("give steps or max_steps to train(), not both")
        for name, value in (("steps", steps), ("max_steps", max_steps)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value <= 0
            ):
                raise ConfigError(f"train({name}=...) must be a positive integer, got {value!r}")
        with writer_lock(self.model_dir):  # only the writing process (rank 0) locks it
            self._train_locked(input_fn, hooks, steps, max_steps, saving_listeners)
        return self

    def _train_locked(
        self,
        input_fn: InputFn,
        hooks: Sequence[Hook] | None,
        steps: int | None,
        max_steps: int | None,
        saving_listeners: Sequence[CheckpointSaverListener],
    ) -> None:
        if distributed.is_chief():
            ckpt.remove_stale_temporaries(self.model_dir)
            summary.repair_event_files(self.model_dir)
        restored = self._restore(with_rng=True)
        distributed.agree_on_step(self._global_step, self.model_dir)  # also a barrier
        if max_steps is not None and self._global_step >= max_steps:
            _log.info("global step %d already reached max_steps=%d", self._global_step, max_steps)
            return
        seed = (
            self._config.random_seed
            if restored
            else distributed.broadcast_seed(self._config.random_seed)
        )  # rank 0's seed, from which every rank derives a stream of its own
        if not restored:
            if seed is not None:
                rng.seed_everything(seed, distributed.rank())
            self._shuffle_rng.manual_seed(
                seed if seed is not None else distributed.shared_random_int()
            )
        if (Path(self.model_dir) / "train").is_dir():  # events of an earlier run may follow
            self.event_writers.restart("train", self._global_step + 1)
        last_step = (
            max_steps
            if max_steps is not None
            else (self._global_step + steps if steps is not None else None)
        )
        c = self._config
        self._train_hooks = self._default_hooks(last_step, hooks or []) + list(hooks or [])
        self._train_hooks.append(
            CheckpointSaverHook(
                c.save_checkpoints_steps,
                c.save_checkpoints_secs,
                saving_listeners,
                decide_every_n_steps=c.log_step_count_steps or 100,
            )
        )
        finished = False
        try:
            with cpu.thread_count_kept():  # hooks may change it; a failure skips their end()
                self._run_training(input_fn, self._train_hooks)
            finished = True
        finally:
            # After a failure (a full disk, say) a second error from flushing summaries to
            # the same disk must not hide the first.
            self.event_writers.flush(strict=finished)
            self._train_hooks = []

    def _default_hooks(self, last_step: int | None, given: Sequence[Hook]) -> list[Hook]:
        c = self._config
        counter = StepCounterHook(c.log_step_count_steps)
        # Progress is shown by the writing rank, unless a given hook draws its own bar.
        shows = distributed.is_chief() and not any(
            isinstance(h, ProgressHook) and h.draws for h in given
        )
        bar = shows and (sys.stderr.isatty() if c.progress_bar is None else c.progress_bar)
        hooks: list[Hook] = [
            ParameterTableHook(),
            NanLossGuardHook(1 if c.syncs_every_step else max(1, c.log_step_count_steps)),
            counter,
            ProgressHook(last_step=last_step)
            if bar
            else LoggingHook(c.log_step_count_steps if shows else 0, counter),
            SummarySaverHook(c.save_summary_steps, last_step),
        ]
        # A compiled step guards on the thread count: adapting it would recompile.
        if self._device.type == "cpu" and not (c.cpu_threads == "auto" and c.compiles):
            hooks.append(CpuThreadsHook(c.cpu_threads))
        if last_step is not None:
            hooks.insert(0, StopAtStepHook(last_step=last_step))
        return hooks

    def _run_training(self, input_fn: InputFn, hooks: list[Hook]) -> None:
        context = RunContext(self, ModeKeys.TRAIN)
        for hook in hooks:
            hook.begin(self)
        for key, hook in _keyed(hooks):
            if key in self._synced_hook_states:
                hook.load_state_dict(self._synced_hook_states[key])
        for hook in hooks:
            hook.after_create_session(context)
        self._network.train()
        shards = distributed.world_size()
        batches = iterate_batches(
            input_fn,
            InputContext(
                self._device,
                shards,
                distributed.rank(),
                equal_shards=True,
                shuffle_generator=self._shuffle_rng,
            ),
        )
        if self._stepper is None:
            self._stepper = Stepper(
                self._model_fn,
                self._network,
                self._params,
                self._optimizer,
                self._config,
                self._device,
                self._scaler,
            )
        with self._stepper.training():
            while not context.stop_requested:
                for hook in hooks:
                    hook.before_run(context)
                try:
                    features, labels = next(batches)
                except StopIteration:
                    break
                result = self._train_step(self._stepper, features, labels, context)
                for hook in hooks:
                    hook.after_run(context, result)
            for hook in hooks:
                hook.end(context)

    def _train_step(
        self, stepper: Stepper, features: Features, labels: Labels, context: RunContext
    ) -> StepResult:
        features, labels = to_device(features, self._device), to_device(labels, self._device)
        summary_step = context.record_summaries  # the same schedule on every rank
        recorder = summary.Recorder() if summary_step and self.event_writers.enabled else None
        learning_rate = self._optimizer.param_groups[0]["lr"] if summary_step else None
        try:
            out = stepper.run(features, labels, summary_step, recorder)
        except Exception as error:
            failure = distributed.peer_failure(error, self.model_dir)
            if failure is not None:
                raise failure from error
            if not stepper.fall_back(error):
                raise
            out = stepper.run(features, labels, summary_step, recorder)
        if self._lr_scheduler is not None:
            self._lr_scheduler.step()
        self._global_step += 1
        self._nonfinite.observe(out.loss)
        return StepResult(
            out.spec,
            batch_size(features),
            out.loss,
            float(learning_rate) if learning_rate is not None else None,
            out.grad_norm,
            recorder,
        )

    def _call_model_fn(self, features: Features, labels: Labels, mode: ModeKeys) -> EstimatorSpec:
        """The model_fn's spec for an EVAL or PREDICT batch, under the run's precision."""
        with autocast(self._device, self._config.precision):
            spec = self._model_fn(self._network, features, labels, mode, self._params)
        return check_spec(spec, mode)

    # -- evaluate -----------------------------------------------------------------

    def evaluate(
        self,
        input_fn: InputFn,
        steps: int | None = None,
        hooks: Sequence[Hook] | None = None,
        name: str | None = None,
        checkpoint_path: str | Path | None = None,
    ) -> dict[str, float]:
        """Metrics over the whole input (or `steps` batches), plus "loss" and "global_step".

        Writes them as scalars to `model_dir/eval` (or `eval_<name>`).
        """
        if name is not None and (not name or "/" in name or name.startswith(".")):
            raise ConfigError(f"evaluate(name={name!r}) must be a plain directory name")
        self.restore_trained(checkpoint_path)
        distributed.agree_on_step(self._global_step, self.model_dir)
        hooks = list(hooks or [])
        context = RunContext(self, ModeKeys.EVAL)
        totals: dict[str, MetricUpdate] = {}
        loss_total = torch.zeros((), dtype=torch.float64, device=self._device)
        examples = 0
        was_training = self._network.training
        self._network.eval()
        try:
            for hook in hooks:
                hook.begin(self)
            for hook in hooks:
                hook.after_create_session(context)
            with torch.inference_mode():
                for index, (features, labels) in enumerate(
                    iterate_batches(input_fn, self._eval_context())
                ):
                    if (steps is not None and index >= steps) or context.stop_requested:
                        break
                    for hook in hooks:
                        hook.before_run(context)
                    features = to_device(features, self._device)
                    spec = self._call_model_fn(
                        features, to_device(labels, self._device), ModeKeys.EVAL
                    )
                    assert spec.loss is not None
                    size = batch_size(features)
                    loss_total += spec.loss.detach().to(torch.float64) * size
                    examples += size
                    for key, update in spec.eval_metric_ops.items():
                        totals[key] = totals[key] + update if key in totals else update
                    for hook in hooks:
                        hook.after_run(context, StepResult(spec, size, spec.loss.detach()))
            for hook in hooks:
                hook.end(context)
        finally:
            self._network.train(was_training)
        loss_total, examples, totals = distributed.sum_metrics(loss_total, examples, totals)
        if examples == 0:
            raise InputError("evaluate() got no batches from input_fn; give it data to evaluate")
        results = {key: update.result() for key, update in totals.items()}
        results["loss"] = float(loss_total) / examples
        self.event_writers.write_scalars(
            f"eval_{name}" if name else "eval", results, self._global_step
        )
        self.event_writers.flush()
        results["global_step"] = float(self._global_step)
        return results

    def _eval_context(self) -> InputContext:
        """Each process evaluates its share; shares may differ by one example."""
        return InputContext(self._device, distributed.world_size(), distributed.rank())

    # -- predict ------------------------------------------------------------------

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
        context = RunContext(self, ModeKeys.PREDICT)
        for hook in hooks:
            hook.begin(self)
        for hook in hooks:
            hook.after_create_session(context)
        was_training = self._network.training
        self._network.eval()
        try:
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
            for hook in hooks:
                hook.end(context)
        finally:
            self._network.train(was_training)


def _keyed(hooks: Sequence[Hook]) -> Iterator[tuple[str, Hook]]:
    """Stable keys for hooks' checkpointed state: class name, numbered when repeated."""
    seen: dict[str, int] = {}
    for hook in hooks:
        name = type(hook).__qualname__
        seen[name] = seen.get(name, 0) + 1
        yield (name if seen[name] == 1 else f"{name}-{seen[name]}"), hook
