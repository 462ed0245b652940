"""End to end: a page of 20 residents through the whole gateway, side by side with its two peers.

* **direct**: the caller talks to the civil-affairs registry itself (with the gateway's service token);
* **nginx**: Debian's nginx as a plain reverse proxy (one worker, keep-alive upstream) in front of the
  same registry;
* **floor**: a bare Python reverse proxy on the gateway's own server and client stack (uvicorn, httptools,
  uvloop, aiohttp; ``bench.floor_proxy``) doing nothing but forward: what the stack costs before any of the
  gateway's work, so the gateway's figures against it show the price of the work itself;
* **gateway**: token check, policy, upstream call (scope pushed down), re-check, projection, masking,
  free-text DLP, durable audit (SQLite, WAL, synchronous=FULL), one worker.

Peers are measured in the same run, interleaved round by round (direct, nginx, gateway, ...), so a
change in the shared machine's load falls on all three; each figure takes the median round.
"""

from __future__ import annotations

from typing import Any

from bench.common import fmt_run, median_run, run_load
from bench.figures import Figure
from bench.stack import (
    Stack,
    cpu_seconds,
    nginx_version,
    rss_mb,
    running_floor_proxy,
    running_nginx,
    running_stack,
)
from gateway.launch import children

PAGE = 20
CONCURRENCY = 16
RATE = 200.0


def _village() -> str:
    from demoworld.world import build_world

    return build_world().village_a


def _measure(
    stack: Stack,
    nginx_port: int,
    nginx_pids: list[int],
    floor_port: int,
    floor_pid: int,
    *,
    mode: str,
    rounds: int,
    duration: float,
    warmup: float,
) -> dict[str, list[dict[str, Any]]]:
    village = _village()
    query = f"org_prefix={village}&page=1&page_size={PAGE}"
    targets = {
        "direct": (f"{stack.upstream_url}/residents?{query}", [stack.upstream.pid if stack.upstream else 0]),
        "nginx": (f"http://127.0.0.1:{nginx_port}/residents?{query}", nginx_pids),
        "floor": (f"http://127.0.0.1:{floor_port}/residents?{query}", [floor_pid]),
        "gateway": (
            f"{stack.base_url}/api/v1/datasets/residents/records?scenario=DIBAO_REVIEW&page=1&page_size={PAGE}",
            stack.gateway_pids(),
        ),
    }
    upstream_pid = stack.upstream.pid if stack.upstream else 0
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, (url, pids) in targets.items():
            auth = "Bearer " + (stack.token("cadre_a") if name == "gateway" else stack.service_token())
            watched = sorted({*pids, upstream_pid})
            before = {pid: cpu_seconds(pid) for pid in watched}
            run = run_load(
                url, auth, mode=mode, concurrency=CONCURRENCY, rate=RATE, duration=duration, warmup=warmup
            )
            after = {pid: cpu_seconds(pid) for pid in watched}
            served = max(1, run["requests"])
            # Server CPU covers warm-up too; per request it is charged over everything sent.
            total_requests = served * (warmup + duration) / duration
            per_req: dict[str, float] = {}
            for pid in watched:
                role = "registry" if pid == upstream_pid else "proxy"
                per_req[role] = per_req.get(role, 0.0) + (after[pid] - before[pid]) * 1000.0 / total_requests
            run["server_cpu_ms_per_req"] = per_req
            results[name].append(run)
    return results


def _cpu_note(run: dict[str, Any]) -> str:
    parts = [f"{k} {v:.2f} ms" for k, v in sorted(run["server_cpu_ms_per_req"].items())]
    return "server CPU per request: " + ", ".join(parts)


def run(quick: bool) -> list[Figure]:
    rounds, duration, warmup = (1, 3.0, 1.0) if quick else (3, 15.0, 3.0)
    figures: list[Figure] = []
    with running_stack("sqlite", workers=1) as stack:
        assert stack.upstream is not None
        with (
            running_nginx(stack.upstream_port) as (nginx_port, nginx_proc),
            running_floor_proxy(stack.upstream_port) as (floor_port, floor_proc),
        ):
            peers = (nginx_port, [nginx_proc.pid, *children(nginx_proc.pid)], floor_port, floor_proc.pid)
            closed = _measure(stack, *peers, mode="closed", rounds=rounds, duration=duration, warmup=warmup)
            steady = _measure(stack, *peers, mode="rate", rounds=rounds, duration=duration, warmup=warmup)
            floor_rss = rss_mb(floor_proc.pid)
        gateway_rss = rss_mb(stack.gateway_pids()[0])

    gw = median_run(closed["gateway"], "rps")
    where = f"SQLite, 1 gateway worker, {rounds} round(s) interleaved, median round of each figure shown"
    for peer_key, peer_label in (("direct", "direct to the registry"), ("nginx", "nginx reverse proxy")):
        peer = median_run(closed[peer_key], "rps")
        ratio = gw["rps"] / peer["rps"]
        figures.append(
            Figure(
                name=f"e2e throughput, page of {PAGE} residents, vs {peer_key}",
                ours=gw["rps"],
                peer=peer["rps"],
                unit="req/s",
                peer_name=peer_label,
                goal=f"≥ 0.6× {peer_key}",
                met=ratio >= 0.6,
                conditions=f"{fmt_run(gw)}; {where}; gateway {_cpu_note(gw)}; {peer_key} {_cpu_note(peer)}",
                area="e2e",
                extra={"gateway_runs": closed["gateway"], f"{peer_key}_runs": closed[peer_key]},
            )
        )
    gw_steady = median_run(steady["gateway"], "p50_ms")
    for peer_key, peer_label in (("direct", "direct to the registry"), ("nginx", "nginx reverse proxy")):
        for pct, limit in (("p50", 1.5), ("p99", 5.0)):
            # Each percentile is the median of that percentile over the rounds, on each side: a p99 taken
            # from the round whose p50 was the median says nothing about the p99s of the rounds.
            gw_pct = median_run(steady["gateway"], f"{pct}_ms")
            peer = median_run(steady[peer_key], f"{pct}_ms")
            added = gw_pct[f"{pct}_ms"] - peer[f"{pct}_ms"]
            dropped = gw_pct["statuses"].get("dropped", 0)
            rounds_seen = (
                f"{pct} per round: gateway "
                + " / ".join(f"{r[f'{pct}_ms']:.2f}" for r in steady["gateway"])
                + f" ms, {peer_key} "
                + " / ".join(f"{r[f'{pct}_ms']:.2f}" for r in steady[peer_key])
                + " ms"
            )
            figures.append(
                Figure(
                    name=f"e2e latency {pct} at a steady {RATE:.0f} req/s, vs {peer_key} "
                    f"(added {added:.2f} ms)",
                    ours=gw_pct[f"{pct}_ms"],
                    peer=peer[f"{pct}_ms"],
                    unit="ms",
                    peer_name=peer_label,
                    goal=f"≤ {peer_key} + {limit} ms",
                    met=added <= limit,
                    higher_is_better=False,
                    conditions=(
                        f"{fmt_run(gw_pct)}; latency from the scheduled send time; "
                        f"gateway answered {gw_pct['rps']:.0f} req/s"
                        + (f", {dropped} dropped at 256 in flight" if dropped else "")
                        + f"; {rounds_seen}; {where}"
                    ),
                    area="e2e",
                    extra={"gateway_runs": steady["gateway"], f"{peer_key}_runs": steady[peer_key]},
                )
            )
    figures += _floor_figures(closed, steady, gw, gw_steady, where)
    nginx_run = median_run(closed["nginx"], "rps")
    figures.append(
        Figure(
            name="server CPU per request: gateway process vs nginx process",
            ours=gw["server_cpu_ms_per_req"].get("proxy", float("nan")),
            peer=nginx_run["server_cpu_ms_per_req"].get("proxy", float("nan")),
            unit="ms",
            peer_name=nginx_version(),
            goal="— (context for the throughput ratio)",
            met=None,
            higher_is_better=False,
            conditions=f"closed loop, {CONCURRENCY} connections; registry CPU not included; {where}",
            area="e2e",
        )
    )
    figures.append(
        Figure(
            name="gateway resident memory (RSS) after the e2e runs",
            ours=gateway_rss,
            peer=floor_rss,
            unit="MB",
            peer_name="bare Python proxy (uvicorn + aiohttp, forwarding only) after the same runs",
            goal="— (reported; the ≤ 500 MB goal is judged at national scale, in the scale figures)",
            met=None,
            higher_is_better=False,
            conditions=(
                "VmRSS after all rounds; demo state (seeded grants, 1 dataset, 358 registry residents), "
                "SQLite, 1 worker; the proxy's RSS is what the interpreter, uvicorn, uvloop and aiohttp "
                "hold before any of the gateway's code, policy, masking (free-text scanner) or audit"
            ),
            area="e2e",
        )
    )
    return figures


def _floor_figures(
    closed: dict[str, list[dict[str, Any]]],
    steady: dict[str, list[dict[str, Any]]],
    gw: dict[str, Any],
    gw_steady: dict[str, Any],
    where: str,
) -> list[Figure]:
    """The bare Python proxy against direct (how far the stack alone is from the goals), and the gateway
    against it (what the gateway's own work costs)."""
    floor, direct = median_run(closed["floor"], "rps"), median_run(closed["direct"], "rps")
    floor_steady, direct_steady = (
        median_run(steady["floor"], "p50_ms"),
        median_run(steady["direct"], "p50_ms"),
    )
    label = "bare Python proxy (uvicorn + aiohttp, forwarding only)"
    reference = "— (reference: the floor of the chosen stack)"
    return [
        Figure(
            name="e2e throughput: the bare Python proxy vs direct",
            ours=floor["rps"],
            peer=direct["rps"],
            unit="req/s",
            peer_name="direct to the registry",
            goal=reference,
            met=None,
            conditions=f"{fmt_run(floor)}; {where}; proxy {_cpu_note(floor)}; direct {_cpu_note(direct)}",
            area="e2e",
            extra={"floor_runs": closed["floor"]},
        ),
        Figure(
            name="e2e throughput: the gateway vs the bare Python proxy",
            ours=gw["rps"],
            peer=floor["rps"],
            unit="req/s",
            peer_name=label,
            goal="— (reference: what the gateway's own work costs)",
            met=None,
            conditions=f"{fmt_run(gw)}; {where}",
            area="e2e",
        ),
        Figure(
            name=f"e2e latency p50 at a steady {RATE:.0f} req/s: the bare Python proxy vs direct "
            f"(added {floor_steady['p50_ms'] - direct_steady['p50_ms']:.2f} ms)",
            ours=floor_steady["p50_ms"],
            peer=direct_steady["p50_ms"],
            unit="ms",
            peer_name="direct to the registry",
            goal=reference,
            met=None,
            higher_is_better=False,
            conditions=f"{fmt_run(floor_steady)}; {where}",
            area="e2e",
            extra={"floor_runs": steady["floor"]},
        ),
        Figure(
            name=f"e2e latency p50 at a steady {RATE:.0f} req/s: the gateway vs the bare Python proxy "
            f"(added {gw_steady['p50_ms'] - floor_steady['p50_ms']:.2f} ms)",
            ours=gw_steady["p50_ms"],
            peer=floor_steady["p50_ms"],
            unit="ms",
            peer_name=label,
            goal="— (reference: what the gateway's own work costs)",
            met=None,
            higher_is_better=False,
            conditions=f"{fmt_run(gw_steady)}; {where}",
            area="e2e",
        ),
    ]
