"""How ``grassroots serve`` speaks HTTP: uvicorn's httptools protocol, with a response's writes coalesced.

An ASGI response is two messages (``http.response.start``, then ``http.response.body``), and uvicorn
writes each to the transport at once, so a small response costs two ``send`` calls, and on loopback two
deliveries to the peer. :class:`CoalescingHttpToolsProtocol` hands uvicorn a transport that gathers the
writes of one event-loop turn and sends them together at the end of it: the same bytes in the same
order, in one ``send``. A close flushes first, so nothing written is ever dropped by it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import pickle
import socket
import time
from collections.abc import Iterable
from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import multiprocess


class _CoalescingTransport(asyncio.Transport):
    """A transport that defers its writes to the end of the current loop turn and sends them as one."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def _flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(d) for d in self._pending)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()


#: The most a request's head (request line and headers) may take. httptools sets no limit and holds a
#: header in memory until it is complete, so without one a client could grow a worker by sending one
#: endless header. 64 KiB is twice nginx's default ceiling (4 buffers of 8 KiB) and far above what a
#: bearer token and the usual headers need (a few KiB).
MAX_REQUEST_HEAD_BYTES: Final = 64 * 1024
_LINGER_S: Final = 2.0


def _error_response(
    status: bytes, error: str, message: str, message_en: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> bytes:
    """An error answered below the application (no request was read, so no request id), in the product's
    one error shape, Chinese first; the connection is closed."""
    body = json.dumps(
        {"error": error, "message": message, "message_en": message_en, "request_id": None},
        ensure_ascii=False,
    ).encode()
    return b"".join(
        [
            b"HTTP/1.1 " + status + b"\r\n",
            *(name + b": " + value + b"\r\n" for name, value in headers),
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
    )


def _head_too_large_response() -> bytes:
    """431 (RFC 6585 §5)."""
    return _error_response(
        b"431 Request Header Fields Too Large",
        "request_header_too_large",
        f"请求头过大：请求行与请求头合计最多 {MAX_REQUEST_HEAD_BYTES // 1024} KiB，"
        "请检查是否误把数据放进了请求头或链接。",
        f"Request head too large: the request line and headers may take at most "
        f"{MAX_REQUEST_HEAD_BYTES // 1024} KiB; check that no data was put into a header or the link.",
    )


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through :class:`_CoalescingTransport`, with a request's head
    capped at :data:`MAX_REQUEST_HEAD_BYTES` (431 and the connection closed beyond it), and a request the
    parser cannot read answered 400 in the product's error shape, not uvicorn's plain text."""

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request httptools refuses (a CR or LF inside the request line or a header,
        a space in the target, …) was ``Invalid HTTP request received.`` as text/plain, the one error of the
        gateway a client could not read as JSON, nor a village user in Chinese. The same status, headers
        and close, with the product's body; what the client sent is not repeated."""
        self.transport.write(
            _error_response(
                b"400 Bad Request",
                "invalid_http_request",
                "请求不符合 HTTP 格式，无法读取：例如请求行或请求头中有回车、换行等控制字符，"
                "或链接中有未编码的空格。请检查调用方式，链接中的特殊字符须按 URL 编码（如空格写作 %20）。",
                "The request is not valid HTTP and could not be read: for example a control character such "
                "as CR or LF in the request line or a header, or an unencoded space in the link. Check how "
                "the request is made; special characters in the link must be URL-encoded (a space as %20).",
                self.server_state.default_headers,
            )
        )
        self.transport.close()

    _head_open = False
    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CoalescingTransport(transport, self.loop))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_open = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._head_open = False
        super().on_headers_complete()

    _refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the rest of a refused head: read and dropped until the connection closes
        super().data_received(data)
        if self._head_open:
            # Counted only while a head is still incomplete after the chunk: its bytes so far (a chunk
            # that also ended an earlier pipelined request is counted whole; that only errs by that much).
            self._head_bytes += len(data)
            if self._head_bytes > MAX_REQUEST_HEAD_BYTES and not self.transport.is_closing():
                self._refuse_head()

    def _refuse_head(self) -> None:
        """Answer 431 and end the connection without losing the answer: our side is shut for writing at
        once, what the client still sends is dropped, and the socket is closed a moment later (closing it
        with unread bytes would reset it, and the client could lose the answer; a lingering close, as
        nginx does)."""
        self._refused = True
        self._head_open = False
        self.logger.warning("request head over %d bytes refused (431)", MAX_REQUEST_HEAD_BYTES)
        self.transport.write(_head_too_large_response())
        self.transport.write_eof()
        self.loop.call_later(_LINGER_S, self.transport.close)


class ReusePortAddress(socket.socket):
    """The address ``serve --workers N`` listens on; each worker opens its own ``SO_REUSEPORT`` listener.

    uvicorn's supervisor hands every worker the one listening socket, so all workers accept from one
    queue, and the worker that wakes first drains it: 16 keep-alive connections opened together (a load
    balancer's pool, a reverse proxy, the benchmark's load generator) all went to one worker while the
    other idled. With a listener per worker, the kernel spreads new connections over them by hash.

    This object is the supervisor's placeholder: bound with ``SO_REUSEPORT``, so the port is held and a
    clash is reported before any worker starts, but never listening, so the kernel gives it no
    connection. A worker receives it pickled (uvicorn spawns workers with their sockets as arguments),
    and unpickling opens that worker's own listener on the same address.
    """

    __slots__ = ("backlog",)
    backlog: int

    def __reduce__(self) -> tuple[Any, ...]:
        host, port = self.getsockname()[:2]
        return (_listener, (int(self.family), host, port, self.backlog))


def reuse_port_address(host: str, port: int, backlog: int) -> ReusePortAddress:
    """Hold ``host:port`` for workers that listen with ``SO_REUSEPORT``.

    Raises ``OSError`` if anything listens there already, another gateway's workers included: their
    ``SO_REUSEPORT`` listeners would accept this one's into their group and silently share the traffic, so
    the port is first probed with a plain bind, which any listener refuses.
    """
    family = _family(host)
    port = probe_port(host, port)
    sock = ReusePortAddress(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        _share_port(sock)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    sock.backlog = backlog
    return sock


def probe_port(host: str, port: int) -> int:
    """The port (a free one for 0) if nothing listens on ``host:port``; raises ``OSError`` otherwise."""
    with socket.socket(_family(host), socket.SOCK_STREAM, socket.IPPROTO_TCP) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        return int(probe.getsockname()[1])


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _listener(family: int, host: str, port: int, backlog: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        _share_port(sock)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _share_port(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)


#: The packages of the product, whose loggers follow GRASSROOTS_LOG_LEVEL.
_PRODUCT_LOGGERS: Final = ("gateway", "audit", "policies", "masking", "admission")
#: One line each: when, how bad, which process (a worker of several), and what; the product's lines (and
#: other libraries') also name their logger.
LOG_FORMAT: Final = "%(asctime)s %(levelprefix)s [%(process)d] %(message)s"
NAMED_LOG_FORMAT: Final = "%(asctime)s %(levelprefix)s [%(process)d] %(name)s: %(message)s"
_DATE_FORMAT: Final = "%Y-%m-%d %H:%M:%S%z"


#: The parts of a request's ASGI scope its client wrote: the address (a record id is a path segment, and
#: people type ID numbers into it) and the query string.
_CLIENT_WRITTEN: Final = ("path", "raw_path", "query_string")
#: What stands for a client "address" that is none: uvicorn's proxy-header handling takes the
#: X-Forwarded-For value of a trusted proxy's request (127.0.0.1 by default) as the client, unchecked.
_NOT_AN_ADDRESS: Final = "<not an address>"


def _address(host: object) -> object:
    try:
        ipaddress.ip_address(str(host))
    except ValueError:
        return _NOT_AN_ADDRESS
    return host


def _target_hidden(message: Any) -> Any:
    """A logged ASGI scope or message with what its client wrote as placeholders (see below)."""
    if isinstance(message, str) and message.endswith(" - ASGI"):  # "<client host>:<port> - ASGI"
        host, _, port = message.removesuffix(" - ASGI").rpartition(":")
        return f"{_address(host)}:{port} - ASGI"
    if not isinstance(message, dict):
        return message
    hidden = {
        key: f"<{len(value)} chars>" if key in _CLIENT_WRITTEN and value else value
        for key, value in message.items()
    }
    client = message.get("client")
    if isinstance(client, tuple | list) and client:
        hidden["client"] = (_address(client[0]), *client[1:])
    return hidden


class RequestTargetHidden(logging.Filter):
    """Keeps what a client wrote out of uvicorn's TRACE lines.

    At TRACE uvicorn logs every request's ASGI scope and messages (``uvicorn.asgi``: "127.0.0.1:52784 -
    ASGI [4] Started scope={...}"). It puts placeholders for headers and bodies, but printed the path and
    the query string verbatim: an ID number opened as a record id or passed as a parameter went into the log
    (house style, habit 4). They become placeholders too, with their length; and a client "address" that
    is not an IP address (an X-Forwarded-For value, taken unchecked from a trusted proxy) is not shown.
    The rest of the line stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_target_hidden(arg) for arg in record.args)
        else:
            record.args = _target_hidden(record.args)
        return True


def log_config(level: str) -> dict[str, Any]:
    """The logging set-up ``serve`` (and every worker it starts) applies: uvicorn's own, with the time and
    the process id on every line, and a handler for the product's loggers too.

    Without one the product's warnings and errors went through Python's last-resort handler, as bare text
    with no time, level, logger or process (two workers' lines could not be told apart), and its INFO lines
    (a periodic checkpoint written) were dropped whatever GRASSROOTS_LOG_LEVEL said. Other libraries log
    through the root logger at WARNING and above."""
    from uvicorn.config import LOGGING_CONFIG
    from uvicorn.logging import TRACE_LOG_LEVEL

    config: dict[str, Any] = json.loads(json.dumps(LOGGING_CONFIG))  # a copy, never uvicorn's own
    default = config["formatters"]["default"]
    default.update(fmt=LOG_FORMAT, datefmt=_DATE_FORMAT)
    config["formatters"]["named"] = {**default, "fmt": NAMED_LOG_FORMAT}
    config["handlers"]["named"] = {**config["handlers"]["default"], "formatter": "named"}
    config["root"] = {"handlers": ["named"], "level": "WARNING"}
    config.setdefault("filters", {})["request_target_hidden"] = {"()": RequestTargetHidden}
    config["loggers"]["uvicorn.asgi"] = {"filters": ["request_target_hidden"]}
    numeric = TRACE_LOG_LEVEL if level.upper() == "TRACE" else level.upper()
    for name in _PRODUCT_LOGGERS:
        config["loggers"][name] = {"level": numeric}
    return config


class _PromptlyMissedWorker(multiprocess.Process):
    """A worker whose supervisor stops waiting for its answer to a ping as soon as it is gone (see
    :func:`answer_or_exit_pings`). Module-level: uvicorn pickles it to start the worker."""

    def _healthcheck(self, timeout: float) -> bool | None:
        deadline = time.monotonic() + timeout
        try:
            self.parent_conn.send(b"ping")
            while not self.parent_conn.poll(min(0.5, max(0.0, deadline - time.monotonic()))):
                if not self.process.is_alive() or time.monotonic() >= deadline:
                    return None
            started: bool = self.parent_conn.recv()
            return started
        except (OSError, EOFError, pickle.UnpicklingError):
            return None


def answer_or_exit_pings() -> None:
    """Make ``serve --workers N``'s supervisor notice a worker that died while it was being pinged at once.

    uvicorn's supervisor pings each worker every half second and waits for the answer up to its health
    check timeout (60 s here: ``gateway.cli.WORKER_HEALTHCHECK_TIMEOUT_S``). A worker that exits with a
    ping in flight never answers, and the supervisor keeps the pipe's other end itself, so no end of file
    comes either: a worker that failed to start (its interpreter winding down for a moment, long enough to
    be pinged) was noticed a minute later, the gateway stopping only then, and a crashed worker was replaced
    a minute late. Here the wait is cut into half seconds, and ends as soon as the worker is gone.

    uvicorn builds its workers from the module's ``Process`` name, so that name is what is replaced."""
    multiprocess.Process = _PromptlyMissedWorker  # type: ignore[misc]
