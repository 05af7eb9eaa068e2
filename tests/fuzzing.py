"""What the fuzzers share: hypothesis settings and a bound on a block's memory and time."""

from __future__ import annotations

import os
import time
import tracemalloc

from hypothesis import HealthCheck, settings

FUZZ_EXAMPLES = int(os.environ.get("AEKIT_FUZZ_EXAMPLES", "100"))
fuzz = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class Bounded:
    """Asserts a block allocates at most `limit` bytes (Python and numpy) and is quick."""

    def __init__(self, limit: int, seconds: float = 5.0) -> None:
        self.limit, self.seconds = limit, seconds

    def __enter__(self) -> Bounded:
        tracemalloc.start()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak <= self.limit, f"allocated {peak:,} bytes, limit {self.limit:,}"
        assert time.perf_counter() - self.start < self.seconds
