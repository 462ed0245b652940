"""Scale-out on PostgreSQL: the gateway with 1 and with 2 worker processes, and memory per worker.

Two stacks run side by side (each its own throwaway PostgreSQL database and registry); rounds alternate
between them so the shared machine's load falls on both. After the load the 2-worker stack's audit log
must still be one unbroken chain (``grassroots audit verify``) holding one event per request.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

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
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    with running_stacks(("postgres", 1), ("postgres", 2)) as (one_worker, two_workers):
        by_workers = {1: one_worker, 2: two_workers}
        two = by_workers[2]
        # How the 2-worker stack's work fell on its workers (CPU each used under the load): with one shared
        # listening socket, one worker used to take every connection.
        worker_cpu = dict.fromkeys(two.gateway_pids(), 0.0)
        for _ in range(rounds):
            for n, stack in by_workers.items():
                auth = "Bearer " + stack.token("cadre_a")
                before = {pid: cpu_seconds(pid) for pid in worker_cpu} if n == 2 else {}
                runs[n].append(
                    run_load(_url(stack), auth, concurrency=CONCURRENCY, duration=duration, warmup=warmup)
                )
                for pid, start in before.items():
                    worker_cpu[pid] += cpu_seconds(pid) - start
        rss = {pid: rss_mb(pid) for pid in two.gateway_pids()}
        rss_one = rss_mb(by_workers[1].gateway_pids()[0])
        sent = sum(r["requests"] for r in runs[2])
        state = _state(two)
        verify = _verify(two)
    one_run, two_run = median_run(runs[1], "rps"), median_run(runs[2], "rps")
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
            f"after the load: {verify}; "
            f"{state['audit_events']} audit events (measured requests {sent}, plus warm-up)",
            area="scale",
            extra={"runs_1_worker": runs[1], "runs_2_workers": runs[2]},
        ),
        Figure(
            name="resident memory (RSS) per gateway worker after warm-up, PostgreSQL",
            ours=max(rss.values()),
            peer=None,
            unit="MB",
            peer_name="",
            goal="≤ 500 MB per worker at national scale",
            met=max(rss.values()) <= 500,
            higher_is_better=False,
            conditions=(
                "largest of 2 workers ("
                + ", ".join(f"{v:.0f} MB" for v in rss.values())
                + f"; 1-worker process {rss_one:.0f} MB); demo state: {state['policy_grants']} grants, "
                "1 catalogued dataset, free-text scanner loaded. National-scale policy state memory is "
                "the policy figure's; this one is the worker with the demo state"
            ),
            area="scale",
        ),
    ]
    return figures
