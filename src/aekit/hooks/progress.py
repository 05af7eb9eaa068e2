"""A progress bar on the terminal (tqdm), refreshed by time, over one train call or a whole run."""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm.auto import tqdm

from aekit.checks import Integer, Number, check_bool, shown
from aekit.errors import ConfigError
from aekit.hooks.base import Hook, RunContext, StepResult


class ProgressBar:
    """A tqdm bar on stderr: steps done of `total`, percent, ETA, and what `show` sets.

    One bar may outlive a train call: the command line makes one for the whole run and
    hands it to every epoch's `ProgressHook`, so the percentage and ETA are the run's.
    """

    def __init__(self, total: int | None, initial: int = 0, description: str = "") -> None:
        self._bar = tqdm(
            total=total,
            initial=initial,
            desc=description,
            unit="step",
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=0.5,  # redrawn by time, not by step count
            leave=True,
        )

    def advance(self, steps: int = 1) -> None:
        """Count `steps` more steps done."""
        self._bar.update(steps)

    def describe(self, text: str) -> None:
        """Set the text before the bar (e.g. "epoch 3/10")."""
        self._bar.set_description_str(text, refresh=False)

    def show(self, **values: Any) -> None:
        """Set the values after the bar (loss, speed), drawn at the next refresh."""
        self._bar.set_postfix(values, refresh=False)

    def write(self, line: str) -> None:
        """Print a line above the bar without tearing it."""
        self._bar.write(line, file=sys.stderr)

    def close(self) -> None:
        """Draw the bar a last time and leave it on screen."""
        self._bar.close()


class ProgressHook(Hook):
    """Advances a ProgressBar every step; reads the loss for it at most every `interval` s.

    Without a bar of its own it draws one per train call, from the global step to the
    call's last step (`make_bar` says which). Reading the loss waits for the device, which
    the time bound keeps to a couple of reads a second. An Estimator given a ProgressHook
    that draws leaves out its own bar and step log lines.
    """

    def __init__(
        self,
        bar: ProgressBar | None = None,
        last_step: int | None = None,
        interval: float = 0.5,
        draws: bool = True,
    ) -> None:
        if bar is not None and not isinstance(bar, ProgressBar):
            raise ConfigError(f"bar must be a ProgressBar or None, got {shown(bar)}")
        self._given = bar
        self._bar = bar
        self._last_step = None if last_step is None else Integer(0)("last_step", last_step)
        self._interval = Number()("interval", interval)
        self.draws = check_bool("draws", draws)

    @property
    def bar(self) -> ProgressBar | None:
        """The bar being drawn (None before the loop starts or when not drawing)."""
        return self._bar

    def make_bar(self, context: RunContext) -> ProgressBar:
        """The bar of one train call (when none was given)."""
        return ProgressBar(self._last_step, context.global_step)

    def after_create_session(self, context: RunContext) -> None:
        if self._given is None and self.draws:
            self._bar = self.make_bar(context)
        self._shown_at = time.monotonic()
        self._shown_step = context.global_step
        self._last: StepResult | None = None

    def after_run(self, context: RunContext, result: StepResult) -> None:
        if self._bar is None:
            return
        self._bar.advance()
        self._last = result
        if time.monotonic() - self._shown_at >= self._interval:
            self._show(context)

    def end(self, context: RunContext) -> None:
        if self._bar is None:
            return
        self._show(context)  # the call's last loss, whatever the clock says
        if self._given is None:
            self._bar.close()

    def _show(self, context: RunContext) -> None:
        result, now = self._last, time.monotonic()
        if self._bar is None or result is None or result.loss is None:
            return
        values = {"loss": f"{float(result.loss):.4g}"}
        steps = context.global_step - self._shown_step
        if steps and now > self._shown_at:
            speed = steps * result.batch_size / (now - self._shown_at)
            values["examples_per_s"] = f"{speed:,.0f}"
        self._bar.show(**values)
        self._shown_at, self._shown_step = now, context.global_step
