"""Probe (not a figure of the harness): where a data request's added latency goes, stage by stage.

Starts the benchmark's stack (SQLite, one gateway worker) with :mod:`bench.stage_timer` loaded into the
gateway, drives the registry directly and then the gateway at the e2e benchmark's steady 200 requests/s
(page of 20 residents, open loop, load generator in its own process), and prints, for each stage, its
median and p99 over the measured requests, next to the end-to-end latencies the load generator saw.

The stage timer wraps the pipeline's stage functions with ``perf_counter`` timers (a few microseconds per
request); the end-to-end figures of record are ``make bench``'s, not these.
Run: ``python -m bench.probe_stage_latency [seconds]``.
"""

from __future__ import annotations

import json
import sys
import tempfile
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
            gateway = run_load(gateway_url, token, mode="rate", rate=RATE, duration=seconds, warmup=0)
            time.sleep(1.5)
            after = _samples(prefix)
    print(f"steady {RATE:.0f} req/s, {seconds:.0f} s, page of {PAGE}, SQLite, 1 gateway worker")
    print(f"{'end to end (load generator)':58} {'p50 ms':>8} {'p99 ms':>8}")
    for label, run in (("direct to the registry", direct), ("through the gateway", gateway)):
        print(f"  {label:56} {run['p50_ms']:8.2f} {run['p99_ms']:8.2f}")
    added = {pct: gateway[f"{pct}_ms"] - direct[f"{pct}_ms"] for pct in ("p50", "p99")}
    print(f"  {'added':56} {added['p50']:8.2f} {added['p99']:8.2f}")
    print(f"{'stage (inside the gateway)':58} {'p50 ms':>8} {'p99 ms':>8} {'count':>7}")
    for name, values in after.items():
        measured = values[before.get(name, 0) :]
        if measured:
            ordered = sorted(measured)
            p50, p99 = (percentile(ordered, q) * 1000.0 for q in (50, 99))
            print(f"  {name:56} {p50:8.3f} {p99:8.3f} {len(measured):7d}")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 15.0)
