"""The Dataset pipeline: tf.data's order semantics, vectorised gathering, determinism."""

from __future__ import annotations

import re
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from aekit import ConfigError, InputError
from aekit.data import Dataset, numpy_input_fn
from aekit.data.context import EpochEnd


def flat(dataset: Dataset) -> list[int]:
    return [int(v) for batch in dataset for v in torch.as_tensor(batch).reshape(-1)]


def test_batch_keeps_or_drops_the_last_partial_batch() -> None:
    data = Dataset.from_tensor_slices(np.arange(10))
    assert [b.tolist() for b in data.batch(4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [b.tolist() for b in data.batch(4, drop_remainder=True)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert data.batch(4).cardinality() == 3 and data.batch(4, True).cardinality() == 2


def test_shuffle_then_repeat_keeps_epochs_whole() -> None:
    order = flat(Dataset.from_tensor_slices(np.arange(20)).shuffle(20, seed=0).repeat(3).batch(7))
    epochs = [order[i * 20 : (i + 1) * 20] for i in range(3)]
    assert all(sorted(epoch) == list(range(20)) for epoch in epochs)
    assert epochs[0] != epochs[1] != epochs[2]  # reshuffled every pass


def test_repeat_then_shuffle_mixes_epochs() -> None:
    order = flat(Dataset.from_tensor_slices(np.arange(20)).repeat(3).shuffle(40, seed=0).batch(7))
    assert Counter(order) == Counter({i: 3 for i in range(20)})
    first_epoch = order[:20]
    assert sorted(first_epoch) != list(range(20))  # some element shows up twice early


def test_each_epoch_ends_with_its_own_batch_and_its_mark() -> None:
    # Unlike tf.data, a batch never mixes two passes: the epochs Keras users count.
    data = Dataset.from_tensor_slices(np.arange(5)).repeat(2).batch(4)
    assert [b.tolist() for b in data] == [[0, 1, 2, 3], [4], [0, 1, 2, 3], [4]]
    marked = [b if isinstance(b, EpochEnd) else b.tolist() for b in data.with_epoch_ends()]
    assert marked == [[0, 1, 2, 3], [4], EpochEnd(0, 2), [0, 1, 2, 3], [4], EpochEnd(1, 2)]
    assert data.cardinality() == 4
    per_epoch = Dataset.from_tensor_slices(np.arange(5)).batch(4).repeat(2).map(lambda b: b * 10)
    assert list(per_epoch.with_epoch_ends())[2] == EpochEnd(0, 2) and per_epoch.cardinality() == 4
    # The outer repeat's passes are the epochs; a shuffle after repeat mixes them: no marks.
    twice = Dataset.from_tensor_slices(np.arange(3)).repeat(2).batch(2).repeat(3)
    assert [e.index for e in twice.with_epoch_ends() if isinstance(e, EpochEnd)] == [0, 1, 2]
    mixed = Dataset.from_tensor_slices(np.arange(6)).repeat(2).shuffle(12, seed=0).batch(4)
    assert not any(isinstance(e, EpochEnd) for e in mixed.with_epoch_ends())
    # take counts batches, not marks; shard shares out each pass alone, cut equal per pass.
    taken = Dataset.from_tensor_slices(np.arange(4)).batch(2).repeat(None).take(3)
    assert [isinstance(e, EpochEnd) for e in taken.with_epoch_ends()] == [0, 0, 1, 0]
    shard = Dataset.from_tensor_slices(np.arange(5)).repeat(2).shard(2, 1, equal=True).batch(8)
    assert [b.tolist() for b in shard] == [[1, 3], [1, 3]] and shard.cardinality() == 2


def test_small_buffer_shuffle_is_local_like_tf() -> None:
    order = flat(Dataset.from_tensor_slices(np.arange(1000)).shuffle(10, seed=3))
    assert sorted(order) == list(range(1000)) and order != list(range(1000))
    # An element can only move ahead by at most the buffer size.
    assert all(pos >= value - 10 for pos, value in enumerate(order))


def test_deterministic_under_a_seed_and_by_torch_seed() -> None:
    def run(seed: int | None) -> list[int]:
        return flat(Dataset.from_tensor_slices(np.arange(50)).shuffle(50, seed=seed).batch(8))

    assert run(5) == run(5) and run(5) != run(6)
    torch.manual_seed(1)
    a = run(None)
    torch.manual_seed(1)
    assert run(None) == a


def test_structures_and_take() -> None:
    x, y = np.arange(12).reshape(6, 2), np.arange(6) * 10
    pairs = list(Dataset.from_tensor_slices((x, y)).batch(4))
    assert (
        isinstance(pairs[0], tuple)
        and pairs[0][0].shape == (4, 2)
        and pairs[1][1].tolist() == [40, 50]
    )
    dicts = list(Dataset.from_tensor_slices({"image": x, "label": y}).take(5).batch(2))
    assert [d["label"].tolist() for d in dicts] == [[0, 10], [20, 30], [40]]
    assert len(list(Dataset.from_tensor_slices(x).batch(2).take(2))) == 2
    single = list(Dataset.from_tensor_slices(torch.arange(3)))
    assert [int(v) for v in single] == [0, 1, 2]


def test_map_before_and_after_batch() -> None:
    x = np.arange(6, dtype=np.float32)
    elementwise = Dataset.from_tensor_slices((x, x)).map(lambda a, b: (a * 2, b + 1)).batch(4)
    first = next(iter(elementwise))
    assert first[0].tolist() == [0, 2, 4, 6] and first[1].tolist() == [1, 2, 3, 4]
    batchwise = Dataset.from_tensor_slices(x).batch(4).map(lambda b: b.sum())
    assert [float(v) for v in batchwise] == [6.0, 9.0]


def test_parallel_map_keeps_order_and_uses_threads() -> None:
    names: set[str] = set()

    def slowish(batch: torch.Tensor) -> torch.Tensor:
        names.add(threading.current_thread().name)
        return batch * 10

    data = Dataset.from_tensor_slices(np.arange(40)).batch(4).map(slowish, num_parallel_calls=3)
    assert flat(data) == [v * 10 for v in range(40)]
    assert all(name != threading.current_thread().name for name in names)


def test_prefetch_yields_everything_and_propagates_errors() -> None:
    data = Dataset.from_tensor_slices(np.arange(100)).batch(10).prefetch(3)
    assert flat(data) == list(range(100))

    def explode(batch: torch.Tensor) -> torch.Tensor:
        if int(batch[0]) == 50:
            raise RuntimeError("bad batch")
        return batch

    with pytest.raises(RuntimeError, match="bad batch"):
        list(Dataset.from_tensor_slices(np.arange(100)).batch(10).map(explode).prefetch(2))
    # Abandoning an endless prefetching iterator stops its thread.
    endless = iter(Dataset.from_tensor_slices(np.arange(5)).repeat().batch(2).prefetch(2))
    next(endless)
    endless.close()  # type: ignore[attr-defined]
    assert not any(t.name == "aekit-prefetch" and t.is_alive() for t in threading.enumerate())


def test_uint8_stays_uint8_until_mapped() -> None:
    images = np.full((4, 2, 2), 255, dtype=np.uint8)
    batch = next(iter(Dataset.from_tensor_slices(images).batch(4)))
    assert batch.dtype == torch.uint8


def test_memmap_is_read_batch_by_batch(tmp_path: Path) -> None:
    path = tmp_path / "big.npy"
    rows = 32 * 100 + 7
    np.save(path, np.arange(rows * 3, dtype=np.int32).reshape(rows, 3))
    mapped = np.load(path, mmap_mode="r")
    seen = torch.cat(list(Dataset.from_tensor_slices(mapped).batch(32)))
    assert torch.equal(seen, torch.from_numpy(np.load(path)))
    shuffled = torch.cat(list(Dataset.from_tensor_slices(mapped).shuffle(rows, seed=0).batch(32)))
    assert sorted(shuffled[:, 0].tolist()) == list(range(0, rows * 3, 3))


def test_to_device_before_batch_gathers_there() -> None:
    data = Dataset.from_tensor_slices(np.arange(8)).to("cpu").batch(4)
    assert all(isinstance(b, torch.Tensor) and b.device.type == "cpu" for b in data)
    moved = Dataset.from_tensor_slices((np.arange(4), np.arange(4))).batch(2).to("cpu")
    assert [len(pair) for pair in moved] == [2, 2]


def test_repeat_of_nothing_ends() -> None:
    assert list(Dataset.from_tensor_slices(np.arange(3)).take(0).repeat()) == []


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(InputError, match="different lengths"):
        Dataset.from_tensor_slices((np.zeros(3), np.zeros(4)))
    with pytest.raises(InputError, match="tensors or numpy arrays"):
        Dataset.from_tensor_slices([[1, 2], [3, 4]])
    with pytest.raises(InputError, match="first dimension"):
        Dataset.from_tensor_slices(np.array(3.0))
    data = Dataset.from_tensor_slices(np.arange(3))
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1"):
        data.batch(0)
    with pytest.raises(ConfigError, match="buffer_size"):
        data.shuffle(-1)
    with pytest.raises(ConfigError, match="already batched"):
        data.batch(2).batch(2)


@pytest.mark.parametrize(
    "values", [np.array(["a", "b"]), np.array([object(), 1]), np.array(["2020-01-01"], "M8[D]")]
)
def test_arrays_that_are_not_numbers_are_refused_when_the_dataset_is_made(
    values: np.ndarray,
) -> None:
    said = re.escape(f"arrays of numbers, got one of dtype {values.dtype}")
    with pytest.raises(InputError, match=said):
        Dataset.from_tensor_slices(values)
    with pytest.raises(InputError, match="arrays of numbers"):
        Dataset.from_tensor_slices((np.zeros(len(values)), values))


def test_a_seed_gives_the_same_order_as_numpy_input_fn() -> None:
    # One seed layout for every input: epoch e of seed s permutes the rows from [s, e]
    # (the folder streams: tests/data/test_image_folder_stream.py).
    x = np.arange(50, dtype=np.float32).reshape(50, 1)
    arrays = numpy_input_fn(x, batch_size=50, num_epochs=2, seed=7)
    from_arrays = [b[0].flatten() for b in arrays() if isinstance(b, tuple)]
    pipeline = Dataset.from_tensor_slices(x).shuffle(50, seed=7).batch(50).repeat(2)
    from_pipeline = [b.flatten() for b in pipeline if isinstance(b, torch.Tensor)]
    assert len(from_arrays) == len(from_pipeline) == 2
    for a, b in zip(from_arrays, from_pipeline, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(from_arrays[0], from_arrays[1])  # a new order each epoch
