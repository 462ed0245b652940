"""A small async HTTP load generator (aiohttp on uvloop), run in its own process by the benchmarks.

Two modes:

* ``closed``: ``--concurrency`` connections each send the next request as soon as the last answered;
  measures the most requests per second the server sustains.
* ``rate``: an open loop at a steady ``--rate`` requests per second; each latency is measured from the
  moment the request was *scheduled*, so a server that falls behind is charged for the queue it built
  (no coordinated omission).

The Authorization header comes from the environment (``LOADGEN_AUTHORIZATION``), never the command line.
Prints one JSON object: counts, statuses, requests/s, latency percentiles (ms), and the CPU seconds this
process used while measuring, so the table can state what the load generator itself cost.

    python -m bench.loadgen --url URL --mode closed --concurrency 32 --duration 10 --warmup 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100.0 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


class Recorder:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.measuring = False

    def record(self, status: str, latency_s: float) -> None:
        if self.measuring:
            self.statuses[status] += 1
            if status == "200":
                self.latencies.append(latency_s)


async def _one(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> str:
    try:
        async with session.get(url, headers=headers) as resp:
            await resp.read()
            return str(resp.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return type(exc).__name__


async def closed_loop(
    url: str, headers: dict[str, str], concurrency: int, duration: float, warmup: float
) -> tuple[Recorder, float, float]:
    rec = Recorder()
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        stop_at = time.perf_counter() + warmup + duration

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                status = await _one(session, url, headers)
                rec.record(status, time.perf_counter() - started)

        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        await asyncio.sleep(warmup)
        rec.measuring, cpu0, t0 = True, _cpu(), time.perf_counter()
        await asyncio.gather(*tasks)
        elapsed, cpu = time.perf_counter() - t0, _cpu() - cpu0
    return rec, elapsed, cpu


async def open_loop(
    url: str, headers: dict[str, str], rate: float, duration: float, warmup: float, max_in_flight: int
) -> tuple[Recorder, float, float]:
    rec = Recorder()
    connector = aiohttp.TCPConnector(limit=max_in_flight)
    timeout = aiohttp.ClientTimeout(total=30)
    in_flight: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def fire(scheduled: float) -> None:
            status = await _one(session, url, headers)
            rec.record(status, time.perf_counter() - scheduled)

        # Warm the pool at the same rate, then measure.
        loop_start = time.perf_counter()
        total = int((warmup + duration) * rate)
        cpu0, t0 = _cpu(), loop_start
        for i in range(total):
            scheduled = loop_start + i / rate
            if i == int(warmup * rate):
                rec.measuring, cpu0, t0 = True, _cpu(), time.perf_counter()
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) >= max_in_flight:
                rec.record("dropped", 0.0)
                continue
            task = asyncio.create_task(fire(scheduled))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.gather(*in_flight)
        elapsed, cpu = time.perf_counter() - t0, _cpu() - cpu0
    return rec, elapsed, cpu


def summarise(rec: Recorder, elapsed: float, cpu: float, args: argparse.Namespace) -> dict[str, Any]:
    lat = sorted(rec.latencies)
    ok = len(lat)
    total = sum(rec.statuses.values())
    return {
        "mode": args.mode,
        "concurrency": args.concurrency,
        "rate": args.rate,
        "duration_s": round(elapsed, 3),
        "requests": total,
        "ok": ok,
        "errors": total - ok,
        "statuses": dict(rec.statuses),
        "rps": ok / elapsed if elapsed > 0 else 0.0,
        "p50_ms": percentile(lat, 50) * 1000.0,
        "p90_ms": percentile(lat, 90) * 1000.0,
        "p99_ms": percentile(lat, 99) * 1000.0,
        "max_ms": (lat[-1] * 1000.0) if lat else float("nan"),
        "mean_ms": (sum(lat) / ok * 1000.0) if ok else float("nan"),
        "loadgen_cpu_s": round(cpu, 3),
        "loadgen_cpu_pct": round(100.0 * cpu / elapsed, 1) if elapsed > 0 else 0.0,
        "client": f"aiohttp {aiohttp.__version__}" + (" on uvloop" if _UVLOOP else " on asyncio"),
    }


_UVLOOP = False
Result = tuple["Recorder", float, float]


def main(argv: list[str] | None = None) -> int:
    global _UVLOOP
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--url", required=True)
    parser.add_argument("--mode", choices=("closed", "rate"), default="closed")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--max-in-flight", type=int, default=256)
    args = parser.parse_args(argv)
    headers: dict[str, str] = {}
    if os.environ.get("LOADGEN_AUTHORIZATION"):
        headers["Authorization"] = os.environ["LOADGEN_AUTHORIZATION"]
    run: Callable[[Coroutine[Any, Any, Result]], Result] = asyncio.run
    try:
        import uvloop

        run = uvloop.run
        _UVLOOP = True
    except ImportError:
        pass
    if args.mode == "closed":
        rec, elapsed, cpu = run(closed_loop(args.url, headers, args.concurrency, args.duration, args.warmup))
    else:
        rec, elapsed, cpu = run(
            open_loop(args.url, headers, args.rate, args.duration, args.warmup, args.max_in_flight)
        )
    json.dump(summarise(rec, elapsed, cpu, args), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
