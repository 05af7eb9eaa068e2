"""One training step: a model_fn's TRAIN computation as one module, and what wraps it.

`TrainStep.forward` runs the whole model_fn, so every network method the model_fn calls
(`encode`, `posterior`, `reconstruct`, ...) runs inside it. That module, and nothing else,
is what DistributedDataParallel, torch.compile and autocast wrap: DDP then all-reduces the
gradients of everything the step used, and the compiler traces the step as one graph.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.utils import clip_grad_norm_

from aekit import summary
from aekit.errors import ConfigError
from aekit.estimator import cpu
from aekit.estimator.distributed import Strategy
from aekit.estimator.inputs import Features, Labels
from aekit.estimator.run_config import RunConfig
from aekit.estimator.spec import EstimatorSpec, ModeKeys, check_spec

_log = logging.getLogger("aekit")

_AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


class TrainStep(torch.nn.Module):
    """`forward(features, labels)` runs `model_fn` in TRAIN mode and returns its spec."""

    def __init__(
        self, model_fn: Callable[..., EstimatorSpec], network: torch.nn.Module, params: Any
    ) -> None:
        super().__init__()
        self.network = network
        self.model_fn = model_fn
        self.params = params

    def forward(self, features: Features, labels: Labels) -> EstimatorSpec:
        return self.model_fn(self.network, features, labels, ModeKeys.TRAIN, self.params)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Autocast to the precision's low-precision type ("32": a no-op)."""
    dtype = _AUTOCAST_DTYPES.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@dataclass(frozen=True)
class StepOutput:
    """What one optimisation step gives the loop; tensors stay on the device."""

    spec: EstimatorSpec
    loss: torch.Tensor  # float32, detached
    grad_norm: torch.Tensor | None


class Stepper:
    """Runs optimisation steps of a TrainStep: trainable set, DDP, compile, precision.

    Made once per Estimator, on its first `train`; the DDP wrapper and compiled graphs are
    kept across calls, so training epoch by epoch compiles once. Parameters outside the
    optimizer are frozen while training (and only then): a phase that trains part of a
    network (a stacked layer, a head on a frozen encoder) leaves the rest out of DDP's
    gradient reduction instead of paying `find_unused_parameters` on every step.
    """

    def __init__(
        self,
        model_fn: Callable[..., EstimatorSpec],
        network: torch.nn.Module,
        params: Mapping[str, Any],
        optimizer: torch.optim.Optimizer,
        config: RunConfig,
        device: torch.device,
        strategy: Strategy,
        scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        self.network = network
        self.strategy = strategy
        self.optimizer = optimizer
        self.config = config
        self.device = device
        self.step_module = TrainStep(model_fn, network, params)
        in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
        self.trainable = [
            p for p in network.parameters() if p.requires_grad and id(p) in in_optimizer
        ]
        self._eager: torch.nn.Module | None = None  # the step module, in DDP in a job
        self._compiled: Callable[..., Any] | None = None
        self._proven = False  # a compiled step ran: later errors are the model's
        self.scaler = scaler  # float16 only: the Estimator's, saved with its checkpoints

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        """One `train` call: only the optimizer's parameters require gradients inside it."""
        if self.device.type == "cpu":
            cpu.reuse_heap_pages()
        kept = {id(p) for p in self.trainable}
        before = [(p, p.requires_grad) for p in self.network.parameters()]
        for p, _ in before:
            p.requires_grad_(id(p) in kept)
        try:
            if self._eager is None:  # after freezing: DDP reduces what requires grad
                self._eager = self._wrap()
            yield
        finally:
            for p, flag in before:
                p.requires_grad_(flag)

    def _wrap(self) -> torch.nn.Module:
        eager = self.strategy.wrap(self.step_module, self.device)
        if self.config.compiles:
            with warnings.catch_warnings():
                # Importing the compiler stack warns about torch's own deprecated APIs.
                warnings.simplefilter("ignore", DeprecationWarning)
                self._compiled = torch.compile(eager)
        return eager

    def run(
        self, features: Features, labels: Labels, eager: bool, recorder: summary.Recorder | None
    ) -> StepOutput:
        """Forward, backward and optimizer step on one batch.

        `eager` runs the uncompiled module (summary steps: forward hooks and recorded
        values would split a compiled graph, and must not evict it); `recorder` collects
        the step's summaries and activations.
        """
        assert self._eager is not None, "Stepper.run outside Stepper.training()"
        module = self._eager if eager or self._compiled is None else self._compiled
        watching = (
            summary.watch_activations(self.network, recorder)
            if recorder is not None
            else contextlib.nullcontext()
        )
        with autocast(self.device, self.config.precision), summary.recording(recorder), watching:
            spec = check_spec(module(features, labels), ModeKeys.TRAIN)
        assert spec.loss is not None
        loss = spec.loss.float()
        grad_norm = None
        if spec.train_op is not None:
            self._check_own_update()
            spec.train_op()
        else:
            grad_norm = self._update(loss, recorder is not None)
        if module is self._compiled:
            self._proven = True  # forward and backward compiled and ran
        return StepOutput(spec, loss.detach(), grad_norm)

    def _check_own_update(self) -> None:
        """A train_op replaces the update in which clipping and loss scaling happen."""
        clipped = self.config.clip_grad_norm is not None
        if clipped or self.scaler is not None:
            setting = "clip_grad_norm" if clipped else "precision='16-mixed'"
            raise ConfigError(
                f"model_fn returned a train_op, which replaces aekit's update, and "
                f"RunConfig({setting}) acts inside that update; drop the setting, or return "
                "the loss without a train_op"
            )

    def _update(self, loss: torch.Tensor, summary_step: bool) -> torch.Tensor | None:
        """Backward and optimizer step; the gradients' norm when clipping or summarising."""
        grad_norm = None
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        else:
            loss.backward()  # type: ignore[no-untyped-call]
        if self.config.clip_grad_norm is not None:  # the norm before clipping, for summaries
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            grad_norm = clip_grad_norm_(self.trainable, self.config.clip_grad_norm)
        elif summary_step:
            grad_norm = global_norm(self.trainable)
            if grad_norm is not None and self.scaler is not None:
                grad_norm = grad_norm / self.scaler.get_scale()
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return grad_norm

    def fall_back(self, error: BaseException) -> bool:
        """Go back to eager after a failure in the first compiled step; False if too late.

        Compilation happens in the first call, so a missing C++ compiler or an operation
        the compiler cannot trace shows up there; the caller then runs the step again.
        """
        if self._proven or self._compiled is None:
            return False
        _log.warning(
            "torch.compile failed (%s: %s); training in eager mode",
            type(error).__name__,
            str(error).splitlines()[0] if str(error) else "",
        )
        self._compiled = None
        return True


def global_norm(parameters: list[torch.nn.Parameter]) -> torch.Tensor | None:
    """The L2 norm of all gradients together (None when there are none)."""
    grads = [p.grad.detach() for p in parameters if p.grad is not None]
    if not grads:
        return None
    norm: torch.Tensor = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    return norm
