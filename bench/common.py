"""Helpers the benchmark modules share: run the load generator in its own process, describe the machine."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def run_load(
    url: str,
    authorization: str | None,
    *,
    mode: str = "closed",
    concurrency: int = 32,
    rate: float = 200.0,
    duration: float = 10.0,
    warmup: float = 2.0,
) -> dict[str, Any]:
    """Drive ``url`` from a separate process (``python -m bench.loadgen``) and return its summary."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("LOADGEN_AUTHORIZATION", None)
    if authorization:
        env["LOADGEN_AUTHORIZATION"] = authorization
    args = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--url",
        url,
        "--mode",
        mode,
        "--concurrency",
        str(concurrency),
        "--rate",
        str(rate),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
    ]
    done = subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=warmup + duration + 120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr.strip()[-400:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    if result["ok"] == 0:
        raise RuntimeError(f"no successful request against {url.split('?')[0]}: {result['statuses']}")
    return result


def median_run(runs: Sequence[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run whose ``key`` is the median (odd counts) or the lower middle: a real run, not a blend."""
    ordered = sorted(runs, key=lambda r: float(r[key]))
    return ordered[(len(ordered) - 1) // 2]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def machine() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": load_average(),
    }


def fmt_run(run: dict[str, Any]) -> str:
    """One line describing a load-generator run, for a figure's conditions."""
    if run["mode"] == "closed":
        shape = f"closed loop, {run['concurrency']} connections"
    else:
        shape = f"open loop at {run['rate']:.0f} req/s"
    return (
        f"{shape}, {run['duration_s']:.0f} s, {run['ok']} ok / {run['errors']} errors, "
        f"load generator CPU {run['loadgen_cpu_pct']:.0f}% of a core"
    )


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else float("nan")
