"""Scale-out on PostgreSQL: the gateway with 1 and with 2 worker processes, and memory per worker at
national scale.

Three stacks run side by side (each its own throwaway PostgreSQL database and registry); rounds alternate
between them so the shared machine's load falls on all. After the load the 2-worker stack's audit log
must still be one unbroken chain (``grassroots audit verify``) holding one event per request.

The third stack is one worker whose database also holds the national world's grants (bench/_world_national.py:
100,000 active, 5,000 lapsed or revoked), written before ``grassroots serve`` starts, so the worker builds
its grant index from the database at start as in service; it takes the same load as the demo-state
1-worker stack (its peer), and then its resident memory is read from /proc. Full mode only: writing the
grants and a third stack add about 15 s, which the 2-minute quick run has no room for (quick mode's
memory figure is the e2e one, demo state against the bare Python proxy).
"""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bench._world_national import NATIONAL, T0, World, grant_rows
from bench.common import fmt_run, median_run, run_load
from bench.figures import Figure
from bench.stack import Stack, cpu_seconds, rss_mb, running_stacks

CONCURRENCY = 16


def _url(stack: Stack) -> str:
    return f"{stack.base_url}/api/v1/datasets/residents/records?scenario=DIBAO_REVIEW&page=1&page_size=20"


def _state(stack: Stack) -> dict[str, int]:
    from gateway.db import make_engine

    engine = make_engine(stack.database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            return {
                table: int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608
                for table in ("audit_events", "policy_grants")
            }
    finally:
        engine.dispose()


def load_national_grants(database_url: str) -> None:
    """Write the national world's grants into a seeded gateway database, as if approved over months.

    Validity is moved by ``now - T0`` so that, at the worker's wall-clock now, the same share is active,
    lapsed and revoked as in the policy figures (decided at T0); the grants version is bumped as every
    grant transition does."""
    from gateway.db import make_engine
    from policies import GrantRepository
    from policies.tables import GrantRow

    now = datetime.now(UTC).replace(microsecond=0)
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.begin() as conn:
            for rows in grant_rows(World(NATIONAL), now - T0):
                conn.execute(sa.insert(GrantRow), rows)
        with Session(engine) as session:
            GrantRepository(session).bump_policy_version(now)
            session.commit()
    finally:
        engine.dispose()


def grants_in_force(stack: Stack) -> int:
    """How many grants the worker's policy engine holds, as it reports them (``GET /api/v1/policy``)."""
    request = urllib.request.Request(  # noqa: S310 - our own loopback URL
        f"{stack.base_url}/api/v1/policy",
        headers={"Authorization": "Bearer " + stack.token("platform_admin")},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as resp:
        return int(json.load(resp)["grants"])


def _cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """CPU seconds used so far by each of ``pids`` still running."""
    used: dict[int, float] = {}
    for pid in pids:
        try:
            used[pid] = cpu_seconds(pid)
        except FileNotFoundError:
            continue
    return used


def _verify(stack: Stack) -> str:
    """The hash chain and Merkle root of the whole log (the check `grassroots audit verify` makes)."""
    from audit import verify_log
    from gateway.db import make_engine

    engine = make_engine(stack.database_url, pool_size=1)
    try:
        report = verify_log(engine)
    finally:
        engine.dispose()
    if report.ok:
        return f"audit chain intact ({report.checked} events)"
    return f"audit chain BROKEN at #{report.first_bad_seq}: {report.problem}"


def run(quick: bool) -> list[Figure]:
    rounds, duration, warmup = (1, 3.0, 1.0) if quick else (3, 15.0, 3.0)
    national_scale = not quick
    shapes = [("postgres", 1), ("postgres", 2)] + ([("postgres", 1)] if national_scale else [])
    with running_stacks(*shapes, prepare={2: load_national_grants}) as started:
        stacks = dict(zip(("one", "two", "national"), started, strict=False))
        one_worker, two_workers = stacks["one"], stacks["two"]
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in stacks}
        rss_at_start = {
            name: rss_mb(stack.gateway_pids()[0]) for name, stack in stacks.items() if name != "two"
        }
        # How the 2-worker stack's work fell on its workers (CPU each used under the load): with one shared
        # listening socket, one worker used to take every connection. Workers are looked up each round:
        # uvicorn's supervisor replaces a worker that exits or misses its health check (on a loaded machine).
        worker_cpu: dict[int, float] = {}
        replaced: set[int] = set()
        for _ in range(rounds):
            for name, stack in stacks.items():
                auth = "Bearer " + stack.token("cadre_a")
                before = _cpu_by_pid(two_workers.gateway_pids()) if name == "two" else {}
                runs[name].append(
                    run_load(_url(stack), auth, concurrency=CONCURRENCY, duration=duration, warmup=warmup)
                )
                after = _cpu_by_pid(list(before))
                replaced |= before.keys() - after.keys()
                for pid in after:
                    worker_cpu[pid] = worker_cpu.get(pid, 0.0) + after[pid] - before[pid]
        rss = {pid: rss_mb(pid) for pid in two_workers.gateway_pids()}
        national: dict[str, Any] = {}
        if national_scale:
            national = {
                "rss": rss_mb(stacks["national"].gateway_pids()[0]),
                "rss_one": rss_mb(one_worker.gateway_pids()[0]),
                "loaded": grants_in_force(stacks["national"]),
                "loaded_demo": grants_in_force(one_worker),
            }
        sent = sum(r["requests"] for r in runs["two"])
        state = _state(two_workers)
        verify = _verify(two_workers)
    one_run, two_run = median_run(runs["one"], "rps"), median_run(runs["two"], "rps")
    where = f"PostgreSQL 15 (local), {rounds} round(s) alternating, median shown"
    busy = sum(worker_cpu.values()) or 1.0
    split = " / ".join(f"{100 * v / busy:.0f}%" for v in sorted(worker_cpu.values(), reverse=True))
    figures = [
        Figure(
            name="gateway throughput on PostgreSQL, 2 workers vs 1 worker",
            ours=two_run["rps"],
            peer=one_run["rps"],
            unit="req/s",
            peer_name="same gateway, 1 worker",
            goal="— (reported; 2 shared cores also run the registry and the load generator)",
            met=None,
            conditions=f"{fmt_run(two_run)}; {where}; the 2 workers' CPU under load split {split}; "
            + (f"{len(replaced)} worker(s) exited and were replaced during the load; " if replaced else "")
            + f"after the load: {verify}; "
            f"{state['audit_events']} audit events (measured requests {sent}, plus warm-up)",
            area="scale",
            extra={"runs_1_worker": runs["one"], "runs_2_workers": runs["two"]},
        ),
    ]
    if national_scale:
        figures.append(national_figure(national, rss_at_start, rss, runs))
    return figures


def national_figure(
    national: dict[str, Any],
    rss_at_start: dict[str, float],
    rss_demo_workers: dict[int, float],
    runs: dict[str, list[dict[str, Any]]],
) -> Figure:
    """The national-scale worker's memory against the demo-state worker's, both after the same load."""
    one_run, national_run = median_run(runs["one"], "rps"), median_run(runs["national"], "rps")
    national_ok = sum(r["ok"] for r in runs["national"])
    expected = World(NATIONAL).total_grants
    rss_national, rss_one = national["rss"], national["rss_one"]
    loaded, loaded_demo = national["loaded"], national["loaded_demo"]
    return Figure(
        name=f"gateway worker RSS at national scale ({expected:,} grants loaded)",
        ours=rss_national,
        peer=rss_one,
        unit="MB",
        peer_name=f"the same worker with the demo state ({loaded_demo} grants), same load",
        goal="≤ 500 MB per worker at national scale",
        met=rss_national <= 500 and loaded == expected + loaded_demo and national_ok > 0,
        higher_is_better=False,
        conditions=(
            f"VmRSS of a `grassroots serve` worker (1 worker, PostgreSQL) whose grant index was built "
            f"from the database at start: the national world's {NATIONAL.grants:,} active + "
            f"{expected - NATIONAL.grants:,} lapsed/revoked grants plus the demo seed's "
            f"{loaded_demo}, {loaded:,} held (GET /api/v1/policy); read after warm-up: "
            f"{rss_at_start['national']:.0f} MB right after start (demo {rss_at_start['one']:.0f} MB), "
            f"then the load the demo worker took: "
            f"{fmt_run(national_run)}, {national_run['rps']:.0f} req/s vs demo {one_run['rps']:.0f} "
            f"req/s, {national_ok:,} answered 200 in all. The {NATIONAL.users:,} users and "
            f"{NATIONAL.organisations:,} organisations are not policy state: each user arrives in the "
            f"token of each request (org, roles, grids), so no worker holds them. Demo-state workers "
            f"of the 2-worker stack: " + ", ".join(f"{v:.0f} MB" for v in rss_demo_workers.values())
        ),
        area="scale",
        extra={
            "rss_at_start_mb": rss_at_start,
            "rss_2_workers_demo_mb": list(rss_demo_workers.values()),
            "grants_loaded": loaded,
            "runs_national": runs["national"],
        },
    )
