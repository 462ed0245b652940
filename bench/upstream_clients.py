"""One async HTTP client doing the gateway's upstream call, in its own process (``bench_upstream_client``).

The call is what ``gateway.upstream.UpstreamClient.list_records`` does: GET the collection with the
jurisdiction pushed down as ``org_prefix`` plus page parameters, a bearer service token, read the body,
``json.loads`` it. Each client keeps one pooled session, as the gateway does, on uvloop (as uvicorn runs
the gateway). Prints JSON: requests, seconds, requests/s and the CPU this process spent per request.

    LOADGEN_AUTHORIZATION="Bearer ..." python -m bench.upstream_clients --client httpx --url URL --prefix P
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

Call = Callable[[], Awaitable[Any]]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _aiohttp(url: str, params: list[tuple[str, str]], headers: dict[str, str]) -> tuple[Call, Any]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=256, limit_per_host=128, keepalive_timeout=30)
    session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=5, connect=2))

    async def call() -> Any:
        async with session.get(url, params=params, headers=headers) as resp:
            raw = await resp.read()
            assert resp.status == 200
        return json.loads(raw)

    return call, session.close


async def _httpx(url: str, params: list[tuple[str, str]], headers: dict[str, str]) -> tuple[Call, Any]:
    import httpx

    client = httpx.AsyncClient(
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=128),
        timeout=httpx.Timeout(5.0, connect=2.0),
    )

    async def call() -> Any:
        resp = await client.get(url, params=tuple(params), headers=headers)
        assert resp.status_code == 200
        return json.loads(resp.content)

    return call, client.aclose


async def _aiosonic(url: str, params: list[tuple[str, str]], headers: dict[str, str]) -> tuple[Call, Any]:
    import aiosonic  # type: ignore[import-untyped]
    from aiosonic.timeout import Timeouts  # type: ignore[import-untyped]

    client = aiosonic.HTTPClient(aiosonic.TCPConnector(timeouts=Timeouts(sock_connect=2, request_timeout=5)))

    async def call() -> Any:
        resp = await client.get(url, params=params, headers=headers)
        raw = await resp.content()
        assert resp.status_code == 200
        return json.loads(raw)

    async def close() -> None:
        await client.connector.cleanup()

    return call, close


CLIENTS = {"aiohttp": _aiohttp, "httpx": _httpx, "aiosonic": _aiosonic}


def version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version(name)
    except PackageNotFoundError:
        return "not installed"


async def measure(
    client: str, url: str, prefix: str, n: int, concurrency: int, warmup: int
) -> dict[str, Any]:
    headers = {"Authorization": os.environ.get("LOADGEN_AUTHORIZATION", "")}
    params = [("org_prefix", prefix), ("page", "1"), ("page_size", "20")]
    call, close = await CLIENTS[client](url, params, headers)
    try:
        for _ in range(warmup):
            await call()
        remaining = n

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                body = await call()
                assert len(body["items"]) == 20

        cpu0, t0 = _cpu(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed, cpu = time.perf_counter() - t0, _cpu() - cpu0
    finally:
        await close()
    return {
        "client": client,
        "version": version(client),
        "requests": n,
        "seconds": elapsed,
        "rps": n / elapsed,
        "client_cpu_us_per_req": cpu / n * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream_clients")
    parser.add_argument("--client", choices=sorted(CLIENTS), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args(argv)
    coro = measure(args.client, args.url, args.prefix, args.requests, args.concurrency, args.warmup)
    try:
        import uvloop

        result = uvloop.run(coro)
    except ImportError:
        result = asyncio.run(coro)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
