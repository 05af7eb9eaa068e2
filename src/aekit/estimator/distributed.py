"""Several processes training one model: the `Strategy` an Estimator holds.

An Estimator started by torchrun (which sets RANK, WORLD_SIZE, LOCAL_RANK and the
rendezvous address) joins the job's process group when it is built: gloo on the CPU,
NCCL on GPUs, one GPU per process. Everything the Estimator does with the other processes
goes through its `Strategy`: wrapping the training step in DistributedDataParallel (which
averages the gradients), the collectives the loop needs, and who writes files (rank 0, the
chief). A process alone gets a Strategy of one, whose collectives do nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import logging
import os
import sys
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from aekit.errors import ConfigError, DistributedError
from aekit.estimator.job import launched
from aekit.metrics import MetricUpdate

_log = logging.getLogger("aekit")

# torch.OutOfMemoryError since 2.5; torch.cuda's before.
_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


class Strategy:
    """How this process works with the others of its job; a job of one without a launcher.

    Build it with `Strategy.join(device, timeout_secs)`, which joins torchrun's process
    group when launched by it, or `Strategy()` for a process that works alone.
    """

    def __init__(self) -> None:
        self.device: torch.device | None = None  # the GPU the launch pins this rank to
        self._joined = False  # False: alone, whatever groups this process may hold
        self._lost_peers = False  # a collective failed because another process went away

    @classmethod
    def join(cls, device: str, timeout_secs: float) -> Strategy:
        """The Strategy of this process: in torchrun's job when launched by it, else alone.

        `device` is RunConfig.device: with "auto" or "cuda", each process takes the GPU of
        its LOCAL_RANK when GPUs are present; the backend follows the device.
        """
        strategy = cls()
        if not launched():
            return strategy
        if device.startswith("cuda:"):
            # Every process would take that one GPU: the launch, not the device string,
            # says which GPU each process gets.
            raise ConfigError(
                f"device {device!r} puts every process of the job on one GPU; under torchrun "
                "use 'cuda' or 'auto' (process LOCAL_RANK takes GPU LOCAL_RANK) and choose the "
                "GPUs with CUDA_VISIBLE_DEVICES"
            )
        strategy.device = device_of_rank(
            device,
            int(os.environ.get("LOCAL_RANK", "0")),
            int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
            torch.cuda.device_count() if torch.cuda.is_available() else 0,
        )
        on_gpu = strategy.device is not None and strategy.device.type == "cuda"
        if on_gpu:
            torch.cuda.set_device(strategy.device)
        if not dist.is_initialized():
            try:
                dist.init_process_group(
                    backend="nccl" if on_gpu else "gloo",
                    timeout=datetime.timedelta(seconds=timeout_secs),
                )
            except (RuntimeError, ValueError) as error:
                raise DistributedError(
                    f"rank {os.environ.get('RANK')} could not join the job's process group "
                    f"({_first_line(error)}); check torchrun's --rdzv-endpoint / MASTER_ADDR "
                    "and that every node can reach it"
                ) from error
            _warn_if_restarts_share_the_store()
        strategy._joined = True
        # Registered by every joined Strategy; the newest (the one that trained last, and
        # saw any failure) runs first, and the group is gone for the others.
        atexit.register(strategy._leave)
        return strategy

    # -- who is who ---------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether a process group of more than one process is running."""
        return self._joined and dist.is_initialized() and dist.get_world_size() > 1

    @property
    def rank(self) -> int:
        """This process's rank in the job (0 alone)."""
        return dist.get_rank() if self.active else 0

    @property
    def world_size(self) -> int:
        """Number of processes in the job (1 alone)."""
        return dist.get_world_size() if self.active else 1

    @property
    def backend(self) -> str | None:
        """The process group's backend ("gloo", "nccl"); None alone."""
        return str(dist.get_backend()) if self.active else None

    @property
    def is_chief(self) -> bool:
        """Whether this process writes files: rank 0, or the only process."""
        return self.rank == 0

    # -- collectives --------------------------------------------------------------------

    def wrap(self, module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """`module` in DDP in a job (its construction copies rank 0's parameters everywhere).

        DDP reduces the gradients of the parameters that require grad and run in
        `module.forward`; aekit hands it the training step, which runs the whole model_fn.
        """
        if not self.active:
            return module
        device_ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    def all_gather(self, value: Any) -> list[Any]:
        """Every process's `value`, in rank order (pickled: small objects of this job only)."""
        if not self.active:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def broadcast_seed(self, seed: int | None) -> int | None:
        """Rank 0's seed on every rank; rank 0 draws one when none is given, so shuffles agree."""
        if not self.active:
            return seed
        return self._broadcast_int(seed if seed is not None else int(torch.randint(0, 2**62, ())))

    def shared_random_int(self) -> int:
        """A number from rank 0's torch generator, the same on every rank (shuffle seeds).

        Every rank draws, so the ranks' own streams advance alike; rank 0's draw is kept.
        """
        drawn = int(torch.randint(0, 2**62, ()))
        return self._broadcast_int(drawn) if self.active else drawn

    def rank0_says(self, flag: bool) -> bool:
        """Rank 0's `flag` on every rank: decisions that depend on a clock or the file system."""
        return bool(self._broadcast_int(int(flag))) if self.active else flag

    def barrier(self) -> None:
        """Wait for every process."""
        if self.active:
            dist.barrier()

    def sum_metrics(
        self, loss_total: torch.Tensor, examples: int, totals: dict[str, MetricUpdate]
    ) -> tuple[torch.Tensor, int, dict[str, MetricUpdate]]:
        """Every process's evaluation sums added up: exact, not an average of averages.

        A process that got no batch (fewer examples than processes) knows no metric names;
        it learns them from the others and adds zeros, so every process runs the same
        collectives and returns the same figures.
        """
        if not self.active:
            return loss_total, examples, totals
        finishes: dict[str, Any] = {}
        for known in self.all_gather({key: update.finish for key, update in totals.items()}):
            finishes.update(known)
        keys = sorted(finishes)
        zero = torch.zeros((), dtype=torch.float64, device=loss_total.device)
        parts = [loss_total.to(torch.float64), zero + examples]
        for key in keys:
            update = totals.get(key)
            parts += [update.total, update.count] if update is not None else [zero, zero]
        packed = torch.stack([t.to(zero) for t in parts])
        dist.all_reduce(packed, op=dist.ReduceOp.SUM)
        summed = {
            key: MetricUpdate(packed[2 + 2 * i], packed[3 + 2 * i], finishes[key])
            for i, key in enumerate(keys)
        }
        return packed[0], int(packed[1]), summed

    def agree_on_step(self, step: int, model_dir: str) -> None:
        """DistributedError unless every process restored the same global step.

        Processes that read different checkpoints would run different collectives and
        wait on each other until the timeout; this names the cause at once. Being a
        collective, it is also a barrier: every process has read its checkpoint.
        """
        if not self.active:
            return
        extremes = self._int_tensor([step, -step])
        dist.all_reduce(extremes, op=dist.ReduceOp.MAX)
        high, low = int(extremes[0]), -int(extremes[1])
        if high != low:
            raise DistributedError(
                f"the processes restored different steps ({low} to {high}) from {model_dir}; "
                "every process must use the same model_dir, on a file system all machines share"
            )

    def _broadcast_int(self, value: int) -> int:
        tensor = self._int_tensor([value])
        dist.broadcast(tensor, src=0)
        return int(tensor.item())

    @staticmethod
    def _int_tensor(values: list[int]) -> torch.Tensor:
        """Integers where the group's backend can move them (NCCL moves only GPU tensors)."""
        tensor = torch.tensor(values, dtype=torch.int64)
        return tensor.cuda() if dist.get_backend() == "nccl" else tensor

    # -- failures -----------------------------------------------------------------------

    def describe_failure(self, error: BaseException, model_dir: str) -> DistributedError | None:
        """What a failed step of a job means: out of device memory, a lost peer, or neither."""
        if not isinstance(error, RuntimeError | dist.DistError):
            return None
        text = str(error)
        where = f"rank {self.rank} of {self.world_size}"
        if isinstance(error, _OUT_OF_MEMORY) or "out of memory" in text.lower():
            # NCCL reports a failed allocation through the same error types as a lost peer.
            return DistributedError(
                f"{where} ran out of device memory ({_first_line(error)}); lower the batch size "
                f"or use RunConfig(precision='bf16-mixed'); the last checkpoint in {model_dir} "
                "is intact"
            )
        signs = ("Connection closed", "Connection reset", "Broken pipe", "timed out", "Timeout",
                 "NCCL", "gloo", "DistBackendError")  # fmt: skip
        if not isinstance(error, dist.DistError) and not any(s in text for s in signs):
            return None
        self._lost_peers = True
        return DistributedError(
            f"{where} lost the other processes ({_first_line(error)}); the last checkpoint in "
            f"{model_dir} is intact: run again to resume from it, or let torchrun "
            "--max-restarts do so"
        )

    def _leave(self) -> None:
        if not dist.is_initialized():
            return
        # On a clean exit, wait for the others first: a process that tore its group down
        # while a peer still used it was seen to abort at exit now and then. Not after a
        # failure (an uncaught exception leaves sys.last_value): the peers must see it go.
        if not self._lost_peers and not hasattr(sys, "last_value"):
            with contextlib.suppress(RuntimeError, dist.DistError):
                dist.barrier()
        dist.destroy_process_group()


def device_of_rank(device: str, local_rank: int, per_node: int, gpus: int) -> torch.device | None:
    """The device of process `local_rank` of `per_node` on a node with `gpus` GPUs.

    With "auto" or "cuda" each process takes the GPU of its local rank, as NCCL needs one
    GPU per process. With fewer GPUs than processes, "auto" trains every process of the
    node on the CPU (gloo), the same choice on every rank; "cuda" is refused. None: the
    RunConfig's device as it is (a CPU, say).
    """
    if device not in ("auto", "cuda") or gpus == 0:
        return None
    if per_node <= gpus:
        return torch.device("cuda", local_rank)
    advice = f"start torchrun with --nproc-per-node {gpus} (one process per GPU)"
    if device == "cuda":
        raise ConfigError(
            f"{per_node} processes per node but {gpus} GPU(s), and NCCL needs a GPU per "
            f"process; {advice}, or use device 'cpu'"
        )
    if local_rank == 0:
        _log.warning(
            "%d processes per node but %d GPU(s): training on the CPUs with gloo; %s to "
            "use the GPUs",
            per_node,
            gpus,
            advice,
        )
    return torch.device("cpu")


def _warn_if_restarts_share_the_store() -> None:
    # With --max-restarts, a restarted attempt that joins through the launcher's own
    # store can read the previous attempt's addresses and fail to connect (PyTorch
    # issue 135712); the launcher, not this process, decides whether the store is shared.
    restarts = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0)
    shared = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    if restarts > 0 and shared and dist.get_rank() == 0:
        _log.warning(
            "torchrun --max-restarts with the rendezvous store shared: a restart may fail to "
            "reconnect; start torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 in its environment"
        )


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
