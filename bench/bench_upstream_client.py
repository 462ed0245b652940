"""Which async HTTP client the gateway uses for its upstream call, chosen by measurement.

Each candidate runs in its own process against the same registry, doing exactly the gateway's call
(``bench.upstream_clients``); rounds are interleaved so the machine's load falls on all of them. The
figure that decides is the client's own CPU per request: on a loaded gateway that is what it costs,
and the registry's share is the same whichever client calls it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from bench.common import REPO, median_run
from bench.figures import Figure
from bench.stack import running_registry

#: What gateway/upstream.py uses today (the figure's "ours").
CURRENT = "aiohttp"
CANDIDATES = ("aiohttp", "httpx", "aiosonic")
CONCURRENCY = 8
#: Another client must cost at least 20% less CPU per call to be worth a switch (and its error mapping).
SWITCH_MARGIN = 1.2


def _installed(name: str) -> bool:
    from importlib.util import find_spec

    return find_spec(name) is not None


def _one(client: str, url: str, token: str, prefix: str, n: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "LOADGEN_AUTHORIZATION": f"Bearer {token}"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.upstream_clients",
            "--client",
            client,
            "--url",
            url,
            "--prefix",
            prefix,
            "--requests",
            str(n),
            "--concurrency",
            str(CONCURRENCY),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{client}: {done.stderr.strip().splitlines()[-1:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run(quick: bool) -> list[Figure]:
    from demoworld.world import build_world

    rounds, n = (1, 800) if quick else (3, 5000)
    prefix = build_world().village_a
    clients = [c for c in CANDIDATES if _installed(c)]
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in clients}
    with running_registry() as registry:
        url = f"{registry.url}/residents"
        for _ in range(rounds):
            for client in clients:
                results[client].append(_one(client, url, registry.token(), prefix, n))
    best = {c: median_run(runs, "client_cpu_us_per_req") for c, runs in results.items()}
    winner = min(best, key=lambda c: best[c]["client_cpu_us_per_req"])
    conditions = (
        f"{n} requests × {rounds} round(s), {CONCURRENCY} concurrent, page of 20 from the registry, "
        f"uvloop, client in its own process; median round; "
        + ", ".join(
            f"{c} {best[c]['version']}: {best[c]['client_cpu_us_per_req']:.0f} µs CPU, "
            f"{best[c]['rps']:.0f} req/s"
            for c in clients
        )
        + f"; fastest: {winner}"
    )
    figures: list[Figure] = []
    ours = best[CURRENT]
    for peer_name in clients:
        if peer_name == CURRENT:
            continue
        peer = best[peer_name]
        figures.append(
            Figure(
                name=f"upstream HTTP client CPU per call: {CURRENT} (in use) vs {peer_name}",
                ours=ours["client_cpu_us_per_req"],
                peer=peer["client_cpu_us_per_req"],
                unit="µs",
                peer_name=f"{peer_name} {peer['version']}",
                goal=f"≤ {SWITCH_MARGIN}× {peer_name} (else switch: a switch needs a clear win)",
                met=ours["client_cpu_us_per_req"] <= SWITCH_MARGIN * peer["client_cpu_us_per_req"],
                higher_is_better=False,
                conditions=conditions,
                area="e2e",
                extra={"runs": results},
            )
        )
        figures.append(
            Figure(
                name=f"upstream HTTP client throughput: {CURRENT} (in use) vs {peer_name}",
                ours=ours["rps"],
                peer=peer["rps"],
                unit="req/s",
                peer_name=f"{peer_name} {peer['version']}",
                goal="— (bounded by the registry; CPU per call decides)",
                met=None,
                conditions=f"same runs as the CPU figure; winner by CPU: {winner}",
                area="e2e",
            )
        )
    return figures
