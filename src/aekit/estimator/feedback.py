"""What a run shows its user: the verbose levels, a line per record, the parameter table."""

from __future__ import annotations

import logging
import sys
import weakref
from collections.abc import Mapping

import torch

from aekit.errors import ConfigError
from aekit.hooks.progress import ProgressHook

_log = logging.getLogger("aekit")


def resolve_verbose(verbose: int | str) -> int:
    """0, 1 or 2 for a `verbose` argument; "auto" is 1 on a terminal or in a notebook, else 2."""
    if verbose == "auto":
        interactive = sys.stderr.isatty() or "ipykernel" in sys.modules
        return 1 if interactive else 2
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ConfigError(
            f"verbose must be 0 (quiet), 1 (a progress bar and a line per epoch), 2 (the lines "
            f"alone) or 'auto', got {verbose!r}"
        )
    return int(verbose)


def say(line: str, bar: ProgressHook | None = None) -> None:
    """Print a line for the user on stderr, above the progress bar when there is one."""
    if bar is not None and bar.bar is not None:
        bar.bar.write(line)
    else:
        print(line, file=sys.stderr, flush=True)


def describe(record: Mapping[str, float], head: str) -> str:
    """One line for a record: `head` ("Epoch 3/10"), then "1.52 s - mean loss 0.1047 - ..."."""
    parts = [head]
    if "seconds" in record:
        seconds = record["seconds"]
        parts.append(f"{seconds:.{2 if seconds < 10 else 1}f} s")
    for key, value in record.items():
        if key not in ("step", "epoch", "steps", "seconds"):
            # "loss" is the training steps' mean, not one batch's (the step log lines')
            parts.append(f"{'mean loss' if key == 'loss' else key} {value:.5g}")
    return " - ".join(parts)


# Networks whose table was logged: a network trained in several phases or train calls
# (a stacked autoencoder's pretraining and fine-tuning, an epoch loop) shows it once.
_tabled: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()


def log_parameter_table(network: torch.nn.Module) -> None:
    """Log the network's parameter table, once per network."""
    if network not in _tabled:
        _tabled.add(network)
        _log.info("%s", parameter_table(network))


def parameter_table(network: torch.nn.Module) -> str:
    """A text table of a network's parameters with the total count and size in MB."""
    rows = [
        (name, "x".join(map(str, p.shape)) or "scalar", p.numel(), p.element_size() * p.numel())
        for name, p in network.named_parameters()
    ]
    width = max((len(r[0]) for r in rows), default=4)
    lines = [f"{'name':<{width}}  {'shape':>14}  {'count':>10}"]
    lines += [f"{name:<{width}}  {shape:>14}  {count:>10,}" for name, shape, count, _ in rows]
    total = sum(r[2] for r in rows)
    megabytes = sum(r[3] for r in rows) / 2**20
    lines.append(f"total: {total:,} parameters, {megabytes:.2f} MB")
    return "\n".join(lines)
