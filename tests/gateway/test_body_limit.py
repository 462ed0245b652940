"""Request bodies are capped platform-wide (GRASSROOTS_MAX_BODY_BYTES) and never parsed for nobody.

Over a real socket, against ``grassroots serve`` (the stack fixture):

- a body over the limit is refused with 413 ``body_too_large`` in the product's bilingual shape, stating
  the limit: declared up front (``Content-Length``) before a byte of it is read, and streamed
  (``Transfer-Encoding: chunked``) once the count passes the limit;
- a 50 MB chunked body is refused after about the limit has arrived, while the client is still sending,
  and the gateway's memory does not grow with it;
- an API request carrying a body but no token is refused 401 ``missing_token`` before its body is read
  or parsed (it used to be parsed first: a broken body answered 422);
- the limit is the setting's (a gateway started with a smaller one refuses at that one).
"""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.settings import Settings
from tests.stack import Stack

LIMIT = Settings.model_fields["max_body_bytes"].default
DECIDE = "/api/v1/policy/decide"
MiB = 1_048_576


def auth(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.token('platform_admin')}"}


def assert_too_large(resp: httpx.Response, limit: int = LIMIT) -> None:
    assert resp.status_code == 413, resp.text
    body = resp.json()
    assert body["error"] == "body_too_large" and body["limit_bytes"] == limit
    assert body["message"].startswith("请求体过大") and str(limit) in body["message"]
    assert str(limit) in body["message_en"] and body["request_id"]
    assert resp.headers["x-request-id"] == body["request_id"]
    assert resp.headers["connection"] == "close"


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    piece = b"[" + b"1," * (size // 2 - 1) + b"1"
    sent = 0
    while sent < total:
        yield piece
        sent += len(piece)


@pytest.mark.parametrize("with_token", [True, False], ids=["signed-in", "anonymous"])
def test_a_declared_length_over_the_limit_is_refused_before_the_body(stack: Stack, with_token: bool) -> None:
    headers = {"content-type": "application/json", **(auth(stack) if with_token else {})}
    resp = httpx.post(f"{stack.base_url}{DECIDE}", content=b"x" * (LIMIT + 1), headers=headers, timeout=30)
    assert_too_large(resp)


def test_a_declared_oversize_with_expect_continue_is_refused_without_the_body(stack: Stack) -> None:
    """The client waits for ``100 Continue`` before sending; it never gets one, it gets the 413."""
    with socket.create_connection(("127.0.0.1", stack.gateway_port), timeout=10) as conn:
        conn.sendall(
            f"POST {DECIDE} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            f"Content-Length: {300 * MiB}\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        status, _, body = read_response(conn)
    assert status == 413 and json.loads(body)["error"] == "body_too_large"


def test_a_chunked_body_over_the_limit_is_refused(stack: Stack) -> None:
    resp = httpx.post(
        f"{stack.base_url}{DECIDE}",
        content=chunks(LIMIT + MiB),
        headers={"content-type": "application/json", **auth(stack)},
        timeout=30,
    )
    assert "content-length" not in resp.request.headers  # streamed: the count decides, not a header
    assert_too_large(resp)


def test_a_body_at_the_limit_is_still_read(stack: Stack) -> None:
    """Just under the limit is an ordinary request: parsed, and answered by the endpoint (422 here)."""
    body = b"[" + b" " * (LIMIT - 2) + b"]"
    resp = httpx.post(
        f"{stack.base_url}{DECIDE}",
        content=body,
        headers={"content-type": "application/json", **auth(stack)},
        timeout=30,
    )
    assert len(body) == LIMIT and resp.status_code == 422 and resp.json()["error"] == "invalid_request"


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def read_response(conn: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        assert piece, data
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        piece = conn.recv(65536)
        assert piece
        body += piece
    return int(lines[0].split()[1]), headers, body


def stream_until_answered(port: int, head: bytes, total: int) -> tuple[int, int, dict[str, str], bytes]:
    """Send ``head``, then up to ``total`` bytes of chunked body, stopping as soon as an answer arrives.
    Returns (body bytes sent before the answer, status, headers, body)."""
    piece = next(chunks(1))
    frame = b"%x\r\n" % len(piece) + piece + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(head)
        while sent < total:
            readable, _, _ = select.select([conn], [], [], 0)
            if readable:
                break
            try:
                conn.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                break  # the gateway closed after answering: the answer is waiting to be read
            sent += len(piece)
        status, headers, body = read_response(conn)
    return sent, status, headers, body


def test_a_50_mb_chunked_body_is_refused_after_about_the_limit_and_memory_stays_flat(stack: Stack) -> None:
    assert stack.gateway is not None
    total = 50 * MiB
    head = (
        f"POST {DECIDE} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {stack.token('platform_admin')}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    before = rss_bytes(stack.gateway.pid)
    sent, status, headers, body = stream_until_answered(stack.gateway_port, head, total)
    grown = rss_bytes(stack.gateway.pid) - before
    answer: dict[str, Any] = json.loads(body)
    assert (status, answer["error"], answer["limit_bytes"]) == (413, "body_too_large", LIMIT)
    assert headers["connection"] == "close"
    # Refused while the client was still sending: what it got out is the limit plus what the two
    # sockets' buffers on loopback hold, nowhere near the 50 MB (the old gateway read it all, then 422).
    assert sent < 16 * MiB, sent
    assert grown < 16 * MiB, grown
    assert httpx.get(f"{stack.base_url}/healthz", timeout=10).status_code == 200


def test_an_anonymous_body_is_refused_before_it_is_parsed(stack: Stack) -> None:
    resp = httpx.post(
        f"{stack.base_url}{DECIDE}", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 401 and resp.json()["error"] == "missing_token", resp.text
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert resp.json()["message"].startswith("缺少登录凭证") and resp.json()["request_id"]


def test_an_anonymous_chunked_body_is_refused_without_being_read(stack: Stack) -> None:
    head = (
        f"POST {DECIDE} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    sent, status, _, body = stream_until_answered(stack.gateway_port, head, 50 * MiB)
    assert (status, json.loads(body)["error"]) == (401, "missing_token")
    assert sent < 16 * MiB, sent


def test_a_signed_in_bad_body_is_still_judged_by_the_endpoint(stack: Stack) -> None:
    """With a token that holds the permission, nothing changes: the body is parsed and a broken one is a 422
    naming it (a caller without the permission is refused 403 before its body is read)."""
    resp = httpx.post(
        f"{stack.base_url}{DECIDE}",
        content=b"{not json",
        headers={"content-type": "application/json", **auth(stack)},
    )
    assert resp.status_code == 422 and resp.json()["error"] == "invalid_request"


def test_the_limit_is_the_setting(stack: Stack) -> None:
    with stack.another_gateway(GRASSROOTS_MAX_BODY_BYTES="4096") as url:
        headers = {"content-type": "application/json", **auth(stack)}
        assert_too_large(httpx.post(url + DECIDE, content=b"x" * 4097, headers=headers, timeout=30), 4096)
        assert_too_large(
            httpx.post(url + DECIDE, content=chunks(8192, 1024), headers=headers, timeout=30), 4096
        )
        assert httpx.post(url + DECIDE, content=b"{}", headers=headers, timeout=30).status_code == 422
