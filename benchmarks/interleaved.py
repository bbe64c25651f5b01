"""Timing several calls side by side: interleaved run by run, so a change in machine load hits all alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_ms(calls: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Median ms of each call over `runs` rounds, the calls interleaved within a round, after one
    untimed warm-up call each."""
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {label: [] for label in calls}
    for _ in range(runs):
        for label, call in calls.items():
            start = time.perf_counter()
            call()
            times[label].append((time.perf_counter() - start) * 1000)
    return {label: statistics.median(values) for label, values in times.items()}
