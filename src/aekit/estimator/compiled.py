"""Running a network's forward (and with it the backward) through torch.compile.

The compiled forward is set on the instance, so parameter names, state_dict and
checkpoints are those of the eager network; removing it restores eager mode.
"""

from __future__ import annotations

import logging
import warnings

import torch

_log = logging.getLogger("aekit")


class CompiledForward:
    """Compiles `network.forward` for a training run; falls back to eager if the first step fails.

    Compilation happens lazily in the first call, so a missing C++ compiler or an
    operation torch.compile cannot trace shows up there: `fall_back` then restores
    the eager forward and the step is simply run again.
    """

    def __init__(self, network: torch.nn.Module) -> None:
        self._network = network
        self._proven = False
        with warnings.catch_warnings():
            # Importing the compiler stack warns about torch's own use of deprecated
            # torch.jit APIs; that is torch's business, not the user's.
            warnings.simplefilter("ignore", DeprecationWarning)
            network.forward = torch.compile(network.forward)

    @property
    def active(self) -> bool:
        """Whether the compiled forward is in place."""
        return "forward" in self._network.__dict__

    def step_succeeded(self) -> None:
        """Record that a compiled step ran: later errors are the model's, not the compiler's."""
        self._proven = True

    def fall_back(self, error: BaseException) -> bool:
        """Go back to eager after a failure in the first compiled step; False if it is too late."""
        if self._proven or not self.active:
            return False
        _log.warning(
            "torch.compile failed (%s: %s); training in eager mode",
            type(error).__name__,
            str(error).splitlines()[0] if str(error) else "",
        )
        self.restore()
        return True

    def restore(self) -> None:
        """Put the eager forward back."""
        self._network.__dict__.pop("forward", None)
