"""The floor of the chosen stack: a bare Python reverse proxy, for the end-to-end benchmark's fourth peer.

The gateway's server and client stack with nothing else: uvicorn with httptools on uvloop (and the
gateway's coalescing transport) receiving, an aiohttp client session set up as the gateway's (pooled,
keep-alive, no cookie jar) forwarding the path, query and Authorization header to the registry, and the
answer's bytes sent back. No token check, no policy, no masking, no audit.

What it costs per request is what any gateway written on this stack pays before it does any of its work;
the gateway's figures against it show what the work itself costs, and its figures against direct show how
far the stack alone is from a goal stated against direct.

    python -m bench.floor_proxy --port 8500 --upstream http://127.0.0.1:8101
"""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import uvicorn

from gateway.serving import CoalescingHttpToolsProtocol


def make_app(upstream: str) -> Any:
    base = upstream.rstrip("/")
    session: aiohttp.ClientSession | None = None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal session
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    session = aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(limit=256, limit_per_host=128, keepalive_timeout=30),
                        timeout=aiohttp.ClientTimeout(total=10, connect=2),
                        cookie_jar=aiohttp.DummyCookieJar(),
                    )
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if session is not None:
                        await session.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert scope["type"] == "http" and session is not None
        headers = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"
        }
        query = scope.get("query_string", b"").decode("latin-1")
        url = base + scope["path"] + (f"?{query}" if query else "")
        async with session.get(url, headers=headers) as resp:
            body = await resp.read()
            status = resp.status
            content_type = resp.headers.get("Content-Type", "application/json").encode("latin-1")
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]}
        )
        await send({"type": "http.response.body", "body": body})

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor_proxy")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args(argv)
    uvicorn.run(
        make_app(args.upstream),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http=CoalescingHttpToolsProtocol,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
