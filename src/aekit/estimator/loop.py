"""What one `Estimator.train` call does, step by step.

The Estimator restores the newest checkpoint and seeds the generators, then hands a
`TrainLoop` the batches. For each step the loop:

1. takes the next batch (the input ending ends training; an input's `EpochEnd` ends an
   epoch, below);
2. tells the hooks a step is about to run (`before_run`); a hook may ask for summaries;
3. runs the optimisation step: forward, backward, optimizer and schedule
   (`aekit.estimator.step`), eager on summary steps and compiled otherwise if asked;
4. checks for a NaN or infinite loss: after every step where reading the device is free
   (`RunConfig.host_sync`), else every `log_step_count_steps` steps and before each save;
5. every `log_step_count_steps` steps: logs the loss and the speed, and writes the speed
   to TensorBoard;
6. on summary steps (the first, every `save_summary_steps`, the last, or when a hook
   asked): writes loss, learning rate, gradient norm and what the model_fn recorded;
7. tells the hooks the step ran (`after_run`);
8. saves a checkpoint every `save_checkpoints_steps` steps or `save_checkpoints_secs`
   seconds, or when a hook asked;
9. stops at the last step or when a hook asked.

Each step's loss also goes into the Estimator's `History`. A record closes at the end of
each epoch of an input that marks them (`EpochEnd`: numpy_input_fn, Dataset.repeat, the
streams), at each evaluation (run by a saving listener, as `train_and_evaluate` does), and
at the end of the call. At an epoch's end the loop saves a checkpoint when a saving
listener asks for one each epoch (`train_and_evaluate`'s evaluation), so the evaluation
joins the epoch's record. New records are shown (`verbose`: "Epoch 3/10 - ...") and
handed to the hooks' `after_record`.

At the end the hooks' `end` runs, then a final checkpoint is saved (if the last step has
none, or a hook's `end` asked for one), and the saving listeners' `end`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from aekit import summary
from aekit.data.context import EpochEnd
from aekit.errors import NanLossError
from aekit.estimator.checkpoint import TrainingState, latest_checkpoint
from aekit.estimator.cpu import ThreadCount
from aekit.estimator.feedback import describe, log_parameter_table, say
from aekit.estimator.history import History, Record
from aekit.estimator.inputs import Batches, Features, Labels, batch_size, to_device
from aekit.estimator.run_config import RunConfig
from aekit.estimator.spec import ModeKeys
from aekit.estimator.step import Stepper
from aekit.hooks.base import CheckpointSaverListener, Hook, RunContext, StepResult
from aekit.hooks.progress import ProgressHook

if TYPE_CHECKING:
    from aekit.estimator.distributed import Strategy

_log = logging.getLogger("aekit")


class TrainLoop:
    """One train call over a stream of batches; `run` is the whole of it.

    Args:
        state: network, optimizer, schedule, scaler, shuffle generator and step.
        stepper: runs one optimisation step.
        strategy: the other processes of a job (decisions they must share).
        config: the RunConfig's intervals.
        writers: TensorBoard's event files.
        save: writes a checkpoint of the state in memory with these hooks' states.
        nonfinite: the flag of NaN or infinite losses, read on the NaN schedule.
        hooks: the user's hooks, in order.
        listeners: told before and after each checkpoint save.
        last_step: the global step to stop at (None: when the input ends).
        model_dir: where the run lives (for hooks and messages).
        history: the Estimator's records, which the loop adds to.
        verbose: 0 quiet, 1 a progress bar and a line per record, 2 the lines alone.
    """

    def __init__(
        self,
        state: TrainingState,
        stepper: Stepper,
        strategy: Strategy,
        config: RunConfig,
        writers: summary.EventWriters,
        save: Callable[[Sequence[Hook]], Path],
        nonfinite: NonFiniteFlag,
        hooks: Sequence[Hook],
        listeners: Sequence[CheckpointSaverListener],
        last_step: int | None,
        model_dir: str,
        history: History,
        verbose: int,
    ) -> None:
        self.state, self.stepper, self.strategy, self.config = state, stepper, strategy, config
        self.writers, self._save_state, self.nonfinite = writers, save, nonfinite
        self.listeners, self.last_step = list(listeners), last_step
        # A listener that hears each epoch (an evaluation) gets a save at each epoch's end.
        self.save_each_epoch = any(listener.each_epoch for listener in listeners)
        self.epochs: int | None = None  # the input's number of epochs, once one has ended
        self.hooks = list(hooks)
        self.history, self.shown = history, len(history)
        # Only the chief speaks; a given hook that draws a bar replaces the loop's own.
        drawn = any(isinstance(h, ProgressHook) and h.draws for h in hooks)
        self.verbose = verbose if strategy.is_chief and not drawn else 0
        self.bar: ProgressHook | None = None
        if self.verbose == 1:
            self.bar = ProgressHook(last_step=last_step)
            self.hooks.insert(0, self.bar)
        # Step lines go to the log (seen where logging is set up), never under a bar.
        self.logs = strategy.is_chief and not drawn and self.bar is None
        self.logs = self.logs and bool(config.log_step_count_steps)
        self.context = RunContext(
            ModeKeys.TRAIN,
            state.network,
            model_dir,
            state.global_step,
            strategy.is_chief,
            history,
            state.optimizer,
        )
        self.nan_every = 1 if config.syncs_every_step else max(1, config.log_step_count_steps)
        # In a job every rank must save at the same step: the clock and hooks' requests
        # are rank 0's, heard only every `decide_every` steps (one broadcast then).
        self.decide_every = max(1, config.log_step_count_steps or 100)
        # A compiled step guards on the thread count: adapting it would recompile.
        adapts = stepper.device.type == "cpu" and not (
            config.cpu_threads == "auto" and config.compiles
        )
        self.threads = ThreadCount(config.cpu_threads if adapts else None)

    def run(self, batches: Batches, hook_states: dict[str, Any]) -> None:
        """Train over `batches` until the last step, the input's end, or a stop request."""
        context, state = self.context, self.state
        log_parameter_table(state.network)
        for hook in self.hooks:
            hook.begin(context)
        for key, hook in keyed(self.hooks):
            if key in hook_states:
                hook.load_state_dict(hook_states[key])
        for listener in self.listeners:
            listener.begin(context)
        for hook in self.hooks:
            hook.after_create_session(context)
        self._start_counting()
        self.saved_step, self.saved_at = state.global_step, time.monotonic()
        self.saved_path = latest_checkpoint(context.model_dir)
        with self.threads, self.stepper.training():
            context.marks_epochs = batches.marks_epochs
            while not context.stop_requested:
                last = self._at_last_step()
                if last and not batches.marks_epochs:
                    break
                item = next(batches, None)  # after the last step: is an epoch's end here?
                if isinstance(item, EpochEnd):
                    self._end_epoch(item)
                    if last:
                        break
                    continue
                if item is None or last:
                    break
                features, labels = item
                step = state.global_step + 1
                context.record_summaries = self._summary_step(step)
                for hook in self.hooks:
                    hook.before_run(context)
                result = self._step(features, labels, context.record_summaries)
                context.global_step = state.global_step
                if step % self.nan_every == 0:
                    check_finite_loss(self.nonfinite, step, context.model_dir)
                self._count(result)
                if context.record_summaries:
                    self._write_summaries(result)
                self.threads.after_step()
                for hook in self.hooks:
                    hook.after_run(context, result)
                if self._save_due(step):
                    self._save()  # a saving listener may evaluate: that closes a record
                if not batches.marks_epochs:  # else at the epoch's end, its evaluation joined
                    self._hand_out_records()
            for hook in self.hooks:
                hook.end(context)
        unsaved = self.saved_step != state.global_step or not latest_checkpoint(context.model_dir)
        if self.strategy.rank0_says(unsaved or context.checkpoint_requested):
            self._save()
        for listener in self.listeners:
            listener.end(context, state.global_step)
        self.history.close_training(state.global_step)
        self._hand_out_records()

    def _end_epoch(self, end: EpochEnd) -> None:
        """Close the epoch's record (with its evaluation, when a listener evaluates each epoch)."""
        self.epochs = end.count
        step = self.state.global_step
        if not self.history.end_epoch(step, end.index):
            return  # no step since the last record: an empty epoch
        if self.save_each_epoch:  # the listeners' evaluation joins the epoch's record
            self.context.epoch_end = end
            try:
                if self.saved_step != step or self.saved_path is None:
                    self._save()
                else:  # saved on schedule just now, before the epoch was known to end
                    for listener in self.listeners:
                        if listener.each_epoch:
                            listener.after_save(self.context, step, self.saved_path)
            finally:
                self.context.epoch_end = None
        self._hand_out_records()

    def _hand_out_records(self) -> None:
        """Show the records added since the last call and hand them to the hooks.

        A record comes after the save whose evaluation closed it: a hook that changes what
        a checkpoint keeps (its counters, the learning rate, the weights) asks for a
        checkpoint, and the same step is written again, so a resumed run starts from there.
        """
        records = self.history.records[self.shown :]
        if not records:  # the same on every rank: records close at collective points
            return
        for record in records:
            if self.verbose:
                say(describe(record, self._head(record)), self.bar)
            for hook in self.hooks:
                hook.after_record(self.context, record)
        self.shown = len(self.history)
        saved = self.saved_step == self.state.global_step
        if self.strategy.rank0_says(saved and self.context.checkpoint_requested):
            self.context.checkpoint_requested = False
            self._save_state(self.hooks)  # else the next save, on schedule, keeps it

    def _head(self, record: Record) -> str:
        """How a record's line starts: "Epoch 3/10" (Keras's), or "step 120/600"."""
        if "epoch" in record:
            epoch = int(record["epoch"]) + 1
            return f"Epoch {epoch}/{self.epochs}" if self.epochs else f"Epoch {epoch}"
        step = f"step {int(record['step'])}"
        return f"{step}/{self.last_step}" if self.last_step else step

    def _at_last_step(self) -> bool:
        return self.last_step is not None and self.state.global_step >= self.last_step

    def _summary_step(self, step: int) -> bool:
        # A step schedule, the same on every rank of a job: summary steps run the eager
        # step module, so all ranks take the same path; only the chief records.
        every = self.config.save_summary_steps
        return bool(every) and (step % every == 0 or step == 1 or step == self.last_step)

    def _step(self, features: Features, labels: Labels, summary_step: bool) -> StepResult:
        device = self.stepper.device
        features, labels = to_device(features, device), to_device(labels, device)
        recorder = summary.Recorder() if summary_step and self.writers.enabled else None
        learning_rate = self.state.optimizer.param_groups[0]["lr"] if summary_step else None
        try:
            out = self.stepper.run(features, labels, summary_step, recorder)
        except Exception as error:
            failure = (
                self.strategy.describe_failure(error, self.context.model_dir)
                if self.strategy.active
                else None
            )
            if failure is not None:
                raise failure from error
            if not self.stepper.fall_back(error):
                raise
            out = self.stepper.run(features, labels, summary_step, recorder)
        if self.state.lr_scheduler is not None:
            self.state.lr_scheduler.step()
        self.state.global_step += 1
        self.nonfinite.observe(out.loss)
        examples = batch_size(features)
        self.history.add_loss(out.loss, examples)
        return StepResult(
            out.spec,
            examples,
            out.loss,
            float(learning_rate) if learning_rate is not None else None,
            out.grad_norm,
            recorder,
        )

    # -- logging and summaries ----------------------------------------------------------

    def _start_counting(self) -> None:
        self.counted_since, self.counted_steps, self.counted_examples = time.perf_counter(), 0, 0

    def _count(self, result: StepResult) -> None:
        """Every log_step_count_steps: the speed to TensorBoard, and a log line off the bar."""
        self.counted_steps += 1
        self.counted_examples += result.batch_size
        every, step = self.config.log_step_count_steps, self.state.global_step
        if not every or step % every:
            return
        assert result.loss is not None
        synchronize(result.loss.device)  # time the work, not its launch
        elapsed = time.perf_counter() - self.counted_since
        speed = self.counted_examples / elapsed if elapsed > 0 else None
        if speed is not None:
            steps_per_sec = self.counted_steps / elapsed
            self.writers.write_scalars(
                "train", {"global_step/sec": steps_per_sec, "examples/sec": speed}, step
            )
        if self.logs:
            speed_text = f", {speed:,.0f} examples/sec" if speed else ""
            # The loss of this one batch; the command line's epoch lines give epoch means.
            _log.info("step %d: batch loss = %.5g%s", step, float(result.loss), speed_text)
        self._start_counting()

    def _write_summaries(self, result: StepResult) -> None:
        if not self.writers.enabled:
            return
        scalars: dict[str, float] = {}
        if result.loss is not None:
            scalars["loss"] = float(result.loss)
        if result.learning_rate is not None:
            scalars["learning_rate"] = result.learning_rate
        if result.grad_norm is not None and bool(torch.isfinite(result.grad_norm)):
            scalars["global_gradient_norm"] = float(result.grad_norm)
        step = self.state.global_step
        self.writers.write_scalars("train", scalars, step)
        if result.recorder is not None:
            self.writers.write_records("train", result.recorder, step)

    # -- checkpoints --------------------------------------------------------------------

    def _save_due(self, step: int) -> bool:
        every_steps = self.config.save_checkpoints_steps
        if every_steps is not None and step % every_steps == 0:
            return True
        secs = self.config.save_checkpoints_secs
        asked = self.context.checkpoint_requested or (
            secs is not None and time.monotonic() - self.saved_at >= secs
        )
        if not self.strategy.active:
            return asked
        return step % self.decide_every == 0 and self.strategy.rank0_says(asked)

    def _save(self) -> None:
        context, step = self.context, self.state.global_step
        context.checkpoint_requested = False
        for listener in self.listeners:
            listener.before_save(context, step)
        path = self._save_state(self.hooks)
        self.saved_step, self.saved_at, self.saved_path = step, time.monotonic(), path
        for listener in self.listeners:
            listener.after_save(context, step, path)


class NonFiniteFlag:
    """Whether any loss since the last reset was NaN or infinite, kept on the device.

    Every step ORs `isfinite(loss)` into it without a host sync; the loop reads it on its
    NaN schedule and a checkpoint save reads it always.
    """

    def __init__(self, device: torch.device) -> None:
        self._flag = torch.zeros((), dtype=torch.bool, device=device)

    def observe(self, loss: torch.Tensor) -> None:
        """Fold one step's loss into the flag (no host sync)."""
        self._flag.logical_or_(~torch.isfinite(loss))

    def seen(self) -> bool:
        """Whether a non-finite loss was observed (reads the device)."""
        return bool(self._flag)

    def reset(self) -> None:
        """Forget earlier losses (after a restore)."""
        self._flag.zero_()


def check_finite_loss(flag: NonFiniteFlag, step: int, model_dir: str) -> None:
    """NanLossError when a loss since the last restore was NaN or infinite."""
    if flag.seen():
        raise NanLossError(
            f"loss became NaN or infinite by step {step}; {_kept(model_dir)}. Lower the "
            "learning rate, check the input data for NaN/Inf (on a GPU, also a classifier's "
            "labels for ids outside [0, n_classes)), or clip gradients"
        )


def check_finite_weights(network: torch.nn.Module, step: int, model_dir: str) -> None:
    """NanLossError when a weight is NaN or infinite (a gradient overflowed).

    The loss can stay finite while a gradient does not, and the step after such a
    gradient leaves NaN weights behind.
    """
    flags = [torch.isfinite(p).all() for p in network.parameters()]
    if flags and not bool(torch.stack(flags).all()):
        raise NanLossError(
            f"the network's weights became NaN or infinite by step {step} (a gradient "
            f"overflowed); {_kept(model_dir)}. Lower the learning rate or set "
            "RunConfig(clip_grad_norm=...)"
        )


def _kept(model_dir: str) -> str:
    kept = latest_checkpoint(model_dir)
    return f"the last good checkpoint is {kept}" if kept else "no checkpoint was written"


def keyed(hooks: Sequence[Hook]) -> Iterator[tuple[str, Hook]]:
    """Stable keys for hooks' checkpointed state: class name, numbered when repeated."""
    seen: dict[str, int] = {}
    for hook in hooks:
        name = type(hook).__qualname__
        seen[name] = seen.get(name, 0) + 1
        yield (name if seen[name] == 1 else f"{name}-{seen[name]}"), hook


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on `device` (CUDA, XPU, MPS, ...; nothing on the CPU)."""
    if device.type == "cpu":
        return
    # torch.cuda, torch.xpu, torch.mps, ...: each backend module has its own synchronize.
    sync = getattr(getattr(torch, device.type, None), "synchronize", None)
    if callable(sync):
        sync()
