"""Which device each process of a torchrun job takes, for every count of GPUs."""

from __future__ import annotations

import logging

import pytest
import torch

import aekit
from aekit.estimator.distributed import device_of_rank


def test_each_process_takes_the_gpu_of_its_local_rank() -> None:
    assert device_of_rank("auto", 1, 2, gpus=2) == torch.device("cuda", 1)
    assert device_of_rank("cuda", 0, 1, gpus=8) == torch.device("cuda", 0)


def test_no_gpu_or_a_cpu_device_leaves_the_config_alone() -> None:
    assert device_of_rank("auto", 1, 2, gpus=0) is None
    assert device_of_rank("cpu", 1, 2, gpus=4) is None


def test_more_processes_than_gpus(caplog: pytest.LogCaptureFixture) -> None:
    # NCCL cannot put two processes on one GPU: "auto" moves the whole node to the CPU
    # (every rank decides alike from the same counts) and says so once.
    with caplog.at_level(logging.WARNING, logger="aekit"):
        devices = [device_of_rank("auto", r, 2, gpus=1) for r in range(2)]
    assert devices == [torch.device("cpu")] * 2
    assert [r.getMessage() for r in caplog.records if "GPU" in r.getMessage()] == [
        "2 processes per node but 1 GPU(s): training on the CPUs with gloo; start torchrun "
        "with --nproc-per-node 1 (one process per GPU) to use the GPUs"
    ]
    with pytest.raises(aekit.ConfigError, match="--nproc-per-node 1 .*or use device 'cpu'"):
        device_of_rank("cuda", 1, 2, gpus=1)
