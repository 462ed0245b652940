"""Probe (not a figure of the harness): where a data request's added latency goes, stage by stage.

Starts the benchmark's stack (SQLite, one gateway worker) with :mod:`bench.stage_timer` loaded into the
gateway, drives the registry directly and then the gateway at the e2e benchmark's steady 200 requests/s
(page of 20 residents, open loop, load generator in its own process), and prints, for each stage, its
median and p99 over the measured requests, next to the end-to-end latencies the load generator saw.

It also watches the gateway's SQLite WAL file while the gateway is measured: its size, and how often SQLite
started it over from its first frame (the checkpoint sequence in the WAL header changes each time). A WAL
that only grows makes every commit's fsync that of a growing file; one that starts over is overwritten in
place once the file has reached its largest cycle (SQLite never truncates it: no ``journal_size_limit``).

The stage timer wraps the pipeline's stage functions with ``perf_counter`` timers (a few microseconds per
request); the end-to-end figures of record are ``make bench``'s, not these.
Run: ``python -m bench.probe_stage_latency [seconds]``.
"""

from __future__ import annotations

import json
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench._measure import percentile
from bench.bench_e2e import PAGE, RATE, _village
from bench.common import REPO, run_load
from bench.stack import running_stack

STAGE_TIMER = Path(__file__).resolve().parent / "stage_timer"


def _samples(prefix: Path) -> dict[str, list[float]]:
    merged: dict[str, list[float]] = {}
    for path in prefix.parent.glob(prefix.name + ".*.json"):
        for name, values in json.loads(path.read_text()).items():
            merged.setdefault(name, []).extend(values)
    return merged


class WalWatch:
    """Samples a SQLite WAL file's size and header checkpoint sequence every 20 ms on a thread of its own
    (plain reads of the file, no SQLite locks: the gateway is not disturbed)."""

    def __init__(self, wal: Path) -> None:
        self._wal = wal
        self.sizes: list[int] = []
        self.generations: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-watch", daemon=True)

    def __enter__(self) -> WalWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                with self._wal.open("rb") as wal:
                    header = wal.read(16)
                self.sizes.append(self._wal.stat().st_size)
            except FileNotFoundError:
                continue
            if len(header) == 16:
                self.generations.add(struct.unpack(">I", header[12:16])[0])

    def summary(self) -> str:
        if not self.sizes:
            return "no WAL file seen"
        return (
            f"file {min(self.sizes) / 1e6:.1f} -> {max(self.sizes) / 1e6:.1f} MB, "
            f"restarts from its first frame: {max(len(self.generations) - 1, 0)}"
        )


def main(seconds: float = 15.0) -> None:
    with tempfile.TemporaryDirectory(prefix="gr-stage-timer-") as tmp:
        prefix = Path(tmp) / "stages"
        env = {"PYTHONPATH": f"{STAGE_TIMER}:{REPO}", "GRASSROOTS_STAGE_TIMER_OUT": str(prefix)}
        with running_stack("sqlite", workers=1, extra_env=env) as stack:
            direct_url = f"{stack.upstream_url}/residents?org_prefix={_village()}&page=1&page_size={PAGE}"
            gateway_url = (
                f"{stack.base_url}/api/v1/datasets/residents/records"
                f"?scenario=DIBAO_REVIEW&page=1&page_size={PAGE}"
            )
            token = "Bearer " + stack.token("cadre_a")
            direct = run_load(
                direct_url,
                "Bearer " + stack.service_token(),
                mode="rate",
                rate=RATE,
                duration=seconds,
                warmup=3,
            )
            run_load(gateway_url, token, mode="rate", rate=RATE, duration=3, warmup=0)  # warm-up
            time.sleep(1.5)  # the timer writes every second
            before = {name: len(values) for name, values in _samples(prefix).items()}
            with WalWatch(Path(stack.database_url.removeprefix("sqlite:///") + "-wal")) as wal:
                gateway = run_load(gateway_url, token, mode="rate", rate=RATE, duration=seconds, warmup=0)
            time.sleep(1.5)
            after = _samples(prefix)
    print(f"steady {RATE:.0f} req/s, {seconds:.0f} s, page of {PAGE}, SQLite, 1 gateway worker")
    print(f"{'end to end (load generator)':58} {'p50 ms':>8} {'p99 ms':>8}")
    for label, run in (("direct to the registry", direct), ("through the gateway", gateway)):
        print(f"  {label:56} {run['p50_ms']:8.2f} {run['p99_ms']:8.2f}")
    added = {pct: gateway[f"{pct}_ms"] - direct[f"{pct}_ms"] for pct in ("p50", "p99")}
    print(f"  {'added':56} {added['p50']:8.2f} {added['p99']:8.2f}")
    print(f"gateway's SQLite WAL while measured: {wal.summary()}")
    print(f"{'stage (inside the gateway)':58} {'p50 ms':>8} {'p99 ms':>8} {'count':>7}")
    for name, values in after.items():
        measured = values[before.get(name, 0) :]
        if measured:
            ordered = sorted(measured)
            p50, p99 = (percentile(ordered, q) * 1000.0 for q in (50, 99))
            print(f"  {name:56} {p50:8.3f} {p99:8.3f} {len(measured):7d}")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 15.0)
