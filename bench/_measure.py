"""Small measuring helpers shared by bench_policy, bench_masking and bench_audit."""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    """Resident set size of this process, in MB (Linux /proc)."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * _PAGE / 1e6


def settled_rss_mb() -> float:
    gc.collect()
    return rss_mb()


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (q in [0, 100])."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return float(sorted_values[rank])


def latencies_us(fn: Callable[[T], object], items: Sequence[T]) -> list[float]:
    """Per-call latency of ``fn(item)`` in µs, one timing per call (perf_counter_ns)."""
    clock = time.perf_counter_ns
    out = [0.0] * len(items)
    for i, item in enumerate(items):
        t0 = clock()
        fn(item)
        out[i] = (clock() - t0) / 1000.0
    return out


def interleaved_latencies_us(
    runs: Sequence[tuple[Callable[[T], object], Sequence[T]]], rounds: int
) -> list[list[float]]:
    """Time several (fn, items) pairs in alternating slices, so that load from other processes on a
    shared machine falls on every contender alike. Returns each contender's latencies (µs)."""
    results: list[list[float]] = [[] for _ in runs]
    for r in range(rounds):
        for k, (fn, items) in enumerate(runs):
            n = len(items)
            part = items[r * n // rounds : (r + 1) * n // rounds]
            results[k].extend(latencies_us(fn, part))
    return results


def throughput(fn: Callable[[], int], min_seconds: float) -> tuple[float, int, float]:
    """Call ``fn`` (which returns how many units it processed) until ``min_seconds`` have passed;
    return (units per second, units, seconds)."""
    units = 0
    t0 = time.perf_counter()
    elapsed = 0.0
    while elapsed < min_seconds:
        units += fn()
        elapsed = time.perf_counter() - t0
    return units / elapsed, units, elapsed


def log(message: str) -> None:
    print(f"   · {message}", file=sys.stderr, flush=True)
