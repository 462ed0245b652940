"""Probe (not a figure of the harness): the gateway's CPU per data request, the whole app, in this process.

Starts the benchmark's stack (SQLite, the real registry), builds the gateway's ASGI app in this process on
the stack's settings (lifespan and all), and sends it the e2e benchmark's request (a page of 20 residents,
DIBAO_REVIEW) as ASGI calls, ``CONCURRENCY`` at a time as the load generator does: middlewares, fast lane,
token check, policy, upstream call over loopback, masking, DLP, audit event and its durable commit, JSON
answer. Only the HTTP server (uvicorn's parsing and writing) is left out, which no change to the gateway's
own code touches.

Two figures, each CPU time per request, the best of ``REPETITIONS`` repetitions: the event loop's thread
(``time.thread_time``: where the data path runs) and the whole process (``time.process_time``: the audit
writer's thread too). CPU time drifts far less than wall time on a shared machine; to compare two versions
of the code, run this probe on each, alternating, in the same few minutes.
Run: ``python -m bench.probe_request_cpu [requests per repetition]``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from typing import Any

from bench.bench_e2e import CONCURRENCY, PAGE
from bench.stack import Stack, running_stack

REPETITIONS = 7


async def _measure(stack: Stack, requests: int) -> tuple[float, float, Counter[int]]:
    from gateway.app import create_app
    from gateway.settings import Settings

    for name, value in stack.env.items():
        if name.startswith("GRASSROOTS_"):
            os.environ[name] = value
    app: Any = create_app(Settings())
    authorization = ("Bearer " + stack.token("cadre_a")).encode("latin-1")
    query = f"scenario=DIBAO_REVIEW&page=1&page_size={PAGE}".encode()
    statuses: Counter[int] = Counter()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def one() -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/api/v1/datasets/residents/records",
            "raw_path": b"/api/v1/datasets/residents/records",
            "query_string": query,
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1"), (b"authorization", authorization)],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", stack.gateway_port),
            "state": {},
        }

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] += 1

        await app(scope, receive, send)

    async def loop(count: int) -> None:
        for _ in range(count):
            await one()

    async def burst(total: int) -> None:
        share = total // CONCURRENCY
        await asyncio.gather(*(loop(share) for _ in range(CONCURRENCY)))

    best_thread = best_process = float("inf")
    async with app.router.lifespan_context(app):
        app.middleware_stack = app.build_middleware_stack()
        await burst(max(CONCURRENCY, requests // 4))  # warm-up: connections, caches
        statuses.clear()
        for _ in range(REPETITIONS):
            thread0, process0 = time.thread_time(), time.process_time()
            await burst(requests)
            served = requests // CONCURRENCY * CONCURRENCY
            best_thread = min(best_thread, (time.thread_time() - thread0) / served)
            best_process = min(best_process, (time.process_time() - process0) / served)
    return best_thread * 1e6, best_process * 1e6, statuses


def main(requests: int = 800) -> None:
    import uvloop

    with running_stack("sqlite", workers=1) as stack:
        # The server's event loop (uvicorn runs the gateway on uvloop).
        thread_us, process_us, statuses = uvloop.run(_measure(stack, requests))
    print(
        f"CPU per data request (page of {PAGE}, {CONCURRENCY} concurrent, ASGI in-process), "
        f"best of {REPETITIONS} x {requests}; statuses {dict(statuses)}"
    )
    print(f"  event loop thread  {thread_us:8.1f} us")
    print(f"  whole process      {process_us:8.1f} us")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 800)
