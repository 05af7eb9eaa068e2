"""The NaN policy in one place: what happens when a loss or a weight stops being finite.

The Estimator ORs every step's `isfinite(loss)` into a flag kept on the device
(`NonFiniteFlag`), which costs no host sync. `NanLossGuardHook` reads the flag on a step
schedule and stops training with NanLossError; checkpoints refuse a state past a bad
loss or with NaN weights whatever that schedule (`refuse_nonfinite_state`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from aekit.errors import ConfigError, NanLossError
from aekit.hooks.base import Hook, RunContext, StepResult

if TYPE_CHECKING:
    from aekit.estimator.estimator import Estimator


class NonFiniteFlag:
    """Whether any loss since the last reset was NaN or infinite, kept on the device."""

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


class NanLossGuardHook(Hook):
    """Stops training with NanLossError once the loss is NaN or infinite.

    Reads the Estimator's flag every `every_n_steps` (1: after every step), so the check
    costs a host sync only then.
    """

    def __init__(self, every_n_steps: int = 1) -> None:
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int):
            raise ConfigError(f"every_n_steps must be an integer >= 1, got {every_n_steps!r}")
        self.every_n_steps = max(1, every_n_steps)

    def after_run(self, context: RunContext, result: StepResult) -> None:
        if context.global_step % self.every_n_steps == 0:
            raise_if_loss_nonfinite(context.estimator)


def raise_if_loss_nonfinite(estimator: Estimator) -> None:
    """Raise NanLossError when any loss since the last restore was NaN or infinite."""
    if not estimator.loss_was_nonfinite():
        return
    raise NanLossError(
        f"loss became NaN or infinite by step {estimator.global_step}; {_kept(estimator)}. "
        "Lower the learning rate, check the input data for NaN/Inf (on a GPU, also a "
        "classifier's labels for ids outside [0, n_classes)), or clip gradients"
    )


def raise_if_weights_nonfinite(estimator: Estimator) -> None:
    """Raise NanLossError when a weight is NaN or infinite (a gradient overflowed).

    The loss can stay finite while a gradient does not, and the step after such a
    gradient leaves NaN weights behind.
    """
    flags = [torch.isfinite(p).all() for p in estimator.network.parameters()]
    if not flags or bool(torch.stack(flags).all()):
        return
    raise NanLossError(
        f"the network's weights became NaN or infinite by step {estimator.global_step} "
        f"(a gradient overflowed); {_kept(estimator)}. Lower the learning rate or set "
        "RunConfig(clip_grad_norm=...)"
    )


def refuse_nonfinite_state(estimator: Estimator) -> None:
    """What a checkpoint save checks first: no state past a bad loss, no NaN weights."""
    raise_if_loss_nonfinite(estimator)
    raise_if_weights_nonfinite(estimator)


def _kept(estimator: Estimator) -> str:
    last = estimator.latest_checkpoint()
    return f"the last good checkpoint is {last}" if last else "no checkpoint was written"
