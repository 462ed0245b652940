"""``grassroots serve``'s HTTP protocol: the coalesced writes put the same bytes on the wire as uvicorn's
own httptools protocol, over keep-alive, on ``Connection: close`` and for a streamed body."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.serving import MAX_REQUEST_HEAD_BYTES, CoalescingHttpToolsProtocol


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        for part in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b""})
        return
    body = ('{"path": "' + scope["path"] + '", "text": "数据"}').encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


REQUESTS = (
    b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n"
    b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n"
    b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n"
    b"GET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
)


async def _exchange(protocol: type[asyncio.Protocol], requests: bytes = REQUESTS, chunk: int = 0) -> bytes:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, http=protocol, loop="none", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if chunk:  # a slow client: the request in pieces, as a socket delivers a long one
        for start in range(0, len(requests), chunk):
            if writer.is_closing() or reader.at_eof():
                break
            writer.write(requests[start : start + chunk])
            try:
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.sleep(0)
    else:
        writer.write(requests)
        await writer.drain()
    data = await asyncio.wait_for(reader.read(), timeout=10)  # until the server closes after /c
    writer.close()
    server.should_exit = True
    await task
    return re.sub(rb"date: [^\r]*\r\n", b"", data)


async def test_same_bytes_as_uvicorns_httptools_protocol() -> None:
    ours = await _exchange(CoalescingHttpToolsProtocol)
    stock = await _exchange(HttpToolsProtocol)
    assert ours.count(b"HTTP/1.1 200 OK") == 4
    assert b"4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n" in ours
    assert '"text": "数据"'.encode() in ours
    assert ours == stock


class _Recording(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.sent.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


async def test_writes_of_one_loop_turn_go_out_as_one_and_close_flushes_first() -> None:
    from gateway.serving import _CoalescingTransport

    inner = _Recording()
    transport = _CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"body")
    assert inner.sent == []
    await asyncio.sleep(0)
    assert inner.sent == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    transport.write(b"last")
    transport.close()
    assert inner.sent[-1] == b"last"
    assert inner.closed


async def test_a_request_head_over_the_cap_is_refused_431_and_the_connection_closed() -> None:
    # One endless header, sent in pieces: httptools alone would hold all of it in memory until it ends.
    endless = b"GET /a HTTP/1.1\r\nHost: t\r\nX-Filler: " + b"a" * (4 * MAX_REQUEST_HEAD_BYTES) + b"\r\n\r\n"
    answer = await _exchange(CoalescingHttpToolsProtocol, endless, chunk=4096)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ") and b"connection: close" in head
    error = json.loads(body)
    assert error["error"] == "request_header_too_large"
    assert error["message"].startswith("请求头过大") and "64 KiB" in error["message_en"]
    assert b"HTTP/1.1 200" not in answer


async def test_heads_under_the_cap_and_bodies_of_any_chunking_are_served_as_before() -> None:
    # A large (but allowed) head, then a keep-alive request, delivered in small pieces: the cap counts
    # only an unfinished head, never a finished one or what follows it.
    large = b"GET /a HTTP/1.1\r\nHost: t\r\nX-Filler: " + b"a" * (MAX_REQUEST_HEAD_BYTES - 1024) + b"\r\n\r\n"
    answer = await _exchange(CoalescingHttpToolsProtocol, large + REQUESTS, chunk=4096)
    assert answer.count(b"HTTP/1.1 200 OK") == 5 and b"431" not in answer


async def test_a_request_the_parser_cannot_read_is_answered_400_in_the_products_shape() -> None:
    # uvicorn answered these with "Invalid HTTP request received." as text/plain: the one error a client
    # could not read as JSON, nor a village user in Chinese.
    for bad in (
        b"GET /a HTTP/1.1\r\nHost: t\r\nX-Note: one\rtwo\r\n\r\n",  # a bare CR inside a header
        b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n",  # an unencoded space in the target
        b"GET /a\x00 HTTP/1.1\r\nHost: t\r\n\r\n",
    ):
        stock = await _exchange(HttpToolsProtocol, bad)
        assert stock.startswith(b"HTTP/1.1 400 ") and b"text/plain" in stock, stock
        answer = await _exchange(CoalescingHttpToolsProtocol, bad)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer
        assert b"content-type: application/json" in head and b"connection: close" in head
        assert int(re.search(rb"content-length: (\d+)", head).group(1)) == len(body)  # type: ignore[union-attr]
        error = json.loads(body)
        assert error["error"] == "invalid_http_request" and error["request_id"] is None
        assert error["message"].startswith("请求不符合 HTTP 格式") and "URL-encoded" in error["message_en"]
        assert "two" not in error["message"] + error["message_en"]
