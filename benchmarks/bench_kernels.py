"""Three choices on aekit's training step, timed against what they replace.

    python benchmarks/bench_kernels.py

Prints microseconds per call of the seed FC model's L2 penalty (value and
gradient) by autograd over every weight and by aekit's multi-tensor kernel; of
gathering a 256-image uint8 batch by advanced indexing and by index_select; and of
the conv model's one-channel output layer (forward and backward, batch 256,
channels_last) as a transposed convolution and as aekit's depthwise convolution
and channel sum.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from aekit.estimator.cpu import reuse_heap_pages
from aekit.models.convolutional import ConvolutionalNetwork
from aekit.models.fully_connected import FullyConnectedNetwork
from aekit.models.heads import l2_of_weights


def micros(fn: Callable[[], object], calls: int = 300, rounds: int = 3) -> float:
    """Best of `rounds` averages over `calls` calls, in microseconds."""
    for _ in range(10):
        fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def main() -> None:
    net = FullyConnectedNetwork()
    weights = [p for p in net.parameters() if p.dim() > 1]

    def autograd_l2() -> None:
        torch.stack([w.square().sum() for w in weights]).sum().mul(0.5).backward()  # type: ignore[no-untyped-call]

    def fused_l2() -> None:
        l2_of_weights(net).backward()  # type: ignore[no-untyped-call]

    reuse_heap_pages()  # as the Estimator does: the layer's 16 MB input is reused
    conv = ConvolutionalNetwork()
    features = torch.rand(256, 16, 32, 32).contiguous(memory_format=torch.channels_last)
    features.requires_grad_()
    grad = torch.rand(256, 1, 32, 32)  # a loss's gradient: dense, not one broadcast value

    def output_layer(layer: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        return lambda: layer(features).backward(grad)  # type: ignore[no-untyped-call]

    data = torch.randint(0, 256, (10_000, 28, 28), dtype=torch.uint8)
    index = torch.randint(0, len(data), (256,))
    rows = [
        ("L2 penalty, autograd per weight", micros(autograd_l2)),
        ("L2 penalty, multi-tensor kernel", micros(fused_l2)),
        ("uint8 batch, advanced indexing", micros(lambda: data[index])),
        ("uint8 batch, index_select", micros(lambda: data.index_select(0, index))),
        ("output layer, transposed conv", micros(output_layer(conv.output), calls=30)),
        ("output layer, depthwise + sum", micros(output_layer(conv._output), calls=30)),
    ]
    for name, value in rows:
        print(f"{name:<34} {value:8.1f} us")
    print(
        f"L2: {rows[0][1] / rows[1][1]:.1f}x; gather: {rows[2][1] / rows[3][1]:.1f}x; "
        f"output layer: {rows[4][1] / rows[5][1]:.1f}x"
    )


if __name__ == "__main__":
    main()
