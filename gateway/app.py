"""The FastAPI application: lifespan wiring, one error handler, request ids, request-body limits, routes.

No error answer or log line carries what a request sent: a validation error names only the declared
parameters, and an unexpected exception is logged by its type alone and ends at the outermost layer
(:class:`ContainUnhandledErrors`) instead of reaching uvicorn, which would log its message and traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import os
import threading
import typing
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.routing import Match
from starlette.types import ASGIApp as StarletteASGIApp

from audit import PseudonymRing
from gateway.api_docs import install_api_docs
from gateway.errors import BodyTooLarge, GatewayError, InvalidRequest, NotFound, trailing_slash_refused
from gateway.openapi_doc import house_openapi, operation_id
from gateway.refusal_bursts import CLIENT_SOURCE, source_of
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.validation_hints import validation_hint
from masking import KeyRing

_log = logging.getLogger("gateway.app")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


#: The current request's id, for code that records it without the request object (audit events of refusals).
REQUEST_ID: ContextVar[str | None] = ContextVar("grassroots_request_id", default=None)


class _RandomIds:
    """128-bit random ids from ``os.urandom``, drawn 4 KiB at a time: 32 hex digits in four groups of eight
    (``68712030-20b621c1-77788529-24f6ef1b``), so no id holds a run of digits a scanner would take for a
    mobile (11) or ID number (18): one unbroken run of hex did, once in a few hundred ids.

    ``uuid.uuid4().hex`` cost 4 us an id, most of it building the UUID object, and each id was a
    ``getrandom`` call for which the event loop thread lets go of the GIL (and then may wait for the
    audit writer thread to hand it back). Same source of randomness, one call per 256 ids; a forked
    child starts on fresh bytes, never on its parent's."""

    _BATCH = 4096

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._drop)

    def _drop(self) -> None:
        self._pool, self._at = b"", 0

    def next(self) -> str:
        with self._lock:
            at = self._at
            if at + 16 > len(self._pool):
                self._pool, at = os.urandom(self._BATCH), 0
            self._at = at + 16
            return self._pool[at : at + 16].hex("-", 4)


_request_ids = _RandomIds()


def new_request_id(scope: Scope) -> str:
    """A fresh id for the request of ``scope``, kept in its state and in :data:`REQUEST_ID`; its client
    address in :data:`gateway.refusal_bursts.CLIENT_SOURCE`."""
    request_id = _request_ids.next()
    scope.setdefault("state", {})["request_id"] = request_id
    REQUEST_ID.set(request_id)
    CLIENT_SOURCE.set(source_of(scope))
    return request_id


class RequestIdMiddleware:
    """Pure ASGI: give every request an id (``X-Request-ID``), echoed in the response and in errors."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id(scope)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


class NoStoreApiAnswers:
    """Pure ASGI: every answer under ``/api/`` that sets no ``Cache-Control`` of its own gets ``no-store``.

    Each is for one signed-in caller (who they are, their session, grants naming officials, audit events,
    cases) or an error to one: no browser, proxy or client library may keep a copy (OWASP ASVS V8.2.1;
    RFC 9111 §5.2.2.5). The data path says so itself (``gateway.routes.data``), also in its fast lane,
    which this layer never sees; a route setting its own header keeps it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith("/api/"):
            await self.app(scope, receive, send)
            return

        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                    message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_no_store)


#: Why this process refused to start, in words for the operator (Chinese, then English), when it did.
_REFUSED_START: ContextVar[str | None] = ContextVar("grassroots_refused_start", default=None)


class StartupRefused(Exception):
    """The process cannot start for a reason the operator fixes; ``str()`` says which (Chinese, then
    English). Logged as that alone, without the traceback uvicorn logs for a failed start."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        _REFUSED_START.set(message)


class ContainUnhandledErrors:
    """Pure ASGI, outside everything (see :class:`GatewayApp`): an exception ends here, not in uvicorn.

    Starlette's ServerErrorMiddleware runs the app's ``Exception`` handler (which logs the exception's type
    and answers the usual 500) and then raises the exception again; uvicorn would log it as "Exception in
    ASGI application" with its message and traceback, and the message can carry what the request sent.
    Here it stops: answered already, nothing more is done; not yet answered, the same 500 is sent.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            # A start-up failure must still say why (operator configuration, not request input): a refusal
            # in its own words, anything else with the traceback Starlette hands uvicorn to log.
            async def plain_refusal(message: Message) -> None:
                refused = _REFUSED_START.get()
                if message["type"] == "lifespan.startup.failed" and refused is not None:
                    message = {**message, "message": refused}
                await send(message)

            await self.app(scope, receive, plain_refusal)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                return  # the 500 (or a part of an answer) is out; the handler logged the type
            _log.error("unhandled error: %s", type(exc).__name__)
            request_id = (scope.get("state") or {}).get("request_id")
            with contextlib.suppress(Exception):  # the client may be gone
                await send_error(scope, send, GatewayError(), request_id)


async def send_error(
    scope: Scope, send: Send, error: GatewayError, request_id: str | None, *, id_header: bool = True
) -> None:
    """Answer ``error`` in the one JSON shape, from a pure-ASGI middleware (no Request, no handler).
    ``id_header`` False: a middleware inside :class:`RequestIdMiddleware`, which adds the header itself."""
    body = json.dumps(error.body(request_id), ensure_ascii=False, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()]
    if request_id and id_header:
        headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class RefuseOversizedBody:
    """Pure ASGI, outside everything but :class:`ContainUnhandledErrors`: a request whose declared
    ``Content-Length`` is over the limit is answered 413 ``body_too_large`` before any of the app runs
    and before a byte of its body is read (no sign-in check, no parsing, no ``100 Continue``).

    A body without a declared length (chunked) is counted as it streams by FastAPI's own limiter
    (``FastAPI(max_body_size=...)``, Starlette's ``RequestBodyLimitMiddleware``), which stops reading at
    the limit; its 413 is rendered by the app's handler (:func:`install_error_handlers`). This layer
    exists because that limiter answers a declared oversize it was never asked to read with a plain-text
    "Content Too Large", not the product's bilingual JSON.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = _header(scope, b"content-length")
            if declared is not None and declared.strip().isdigit() and int(declared) > self.max_body_bytes:
                await send_error(scope, send, BodyTooLarge(self.max_body_bytes), _request_ids.next())
                return
        await self.app(scope, receive, send)


class RefuseRepeatedAuthorization:
    """Pure ASGI, outside the fast lane and FastAPI alike: a request carrying more than one
    ``Authorization`` header is answered 400 ``repeated_header`` before anything reads either.

    RFC 9110 §5.3 lets a header appear more than once only when its value is a list, which credentials
    are not. Both doors used to take the first one; a proxy or WAF in front of the gateway that checks,
    logs or strips the last one would then see another caller than the gateway serves (and audits).
    Which one was meant cannot be known, so neither is used (fail closed)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and sum(1 for key, _ in scope["headers"] if key == b"authorization") > 1:
            await send_error(scope, send, _REPEATED_AUTHORIZATION, _request_ids.next())
            return
        await self.app(scope, receive, send)


_REPEATED_AUTHORIZATION = GatewayError(
    "请求中有多个 Authorization 请求头，无法确定以哪个登录凭证为准，已拒绝。请只保留一个后重试。",
    "The request carries more than one Authorization header, so which credential is meant cannot be "
    "told; it was refused. Send exactly one and retry.",
    code="repeated_header",
    status_code=400,
    headers={"WWW-Authenticate": 'Bearer realm="grassroots", error="invalid_request"'},
)


class RefuseAnonymousBody:
    """Pure ASGI: a request to the API that carries a body but no ``Authorization`` header is answered
    401 ``missing_token`` before the body is read or parsed.

    FastAPI reads and validates a body before the endpoint runs, and the endpoints check the token first
    thing inside; without this, anyone could have the gateway parse up to ``GRASSROOTS_MAX_BODY_BYTES``
    of JSON for nothing. Only the absent header is refused here (free to check); a present token is still
    verified by the endpoint, so every other answer and its order stay as they were. Every ``/api/v1``
    endpoint requires a token, so the answer is the one the endpoint would give.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"].startswith("/api/v1/")
            and _carries_body(scope)
            and not _header(scope, b"authorization")
        ):
            # The refusal the endpoint itself would raise (code, words, WWW-Authenticate), recorded as the
            # endpoint records it: an ``auth.refused`` event, counted in the source's allowance (a 429
            # past it; a 503 if the log cannot take it). Unrecorded, an anonymous POST left no trace.
            from gateway.admin_support import asked_for, signed_in  # imports this module

            try:
                await signed_in(scope["app"].state.runtime, None, asked_for(scope))
            except GatewayError as error:
                request_id = (scope.get("state") or {}).get("request_id")
                await send_error(scope, send, error, request_id, id_header=False)
                return
        await self.app(scope, receive, send)


def _carries_body(scope: Scope) -> bool:
    declared = _header(scope, b"content-length")
    return _header(scope, b"transfer-encoding") is not None or (
        declared is not None and declared.strip() not in (b"", b"0")
    )


class GatewayApp(FastAPI):
    """FastAPI with :class:`ContainUnhandledErrors` around its whole stack (ServerErrorMiddleware included:
    ``add_middleware`` can only place a middleware inside it), :class:`RefuseOversizedBody` just inside
    it when a body limit is set, :class:`RefuseRepeatedAuthorization`, and then the data path's fast
    lane when one is set (:attr:`fast_lane`).

    The fast lane sits outside FastAPI's own layers (server errors, exception telemetry, body limits,
    request ids): it reads no body, contains its own errors and gives its request its id itself, and
    the five layers it skips cost about a twentieth of a data request's CPU."""

    #: Wraps the rest of the stack (``gateway.routes.data.DataFastLane``); None: FastAPI serves everything.
    fast_lane: Callable[[ASGIApp], ASGIApp] | None = None
    #: The API's routes as their routers declare them (each router carries its whole prefix), in the order
    #: they are routed: ``app.routes`` holds an included router as one entry that only FastAPI's private
    #: code looks into. Read where a request must be matched before routing (``admin_support.asked_for``).
    api_routes: tuple[APIRoute, ...] = ()

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document with the gateway's sign-in schemes and error shape (gateway.openapi_doc)."""
        if self.openapi_schema is None:
            self.openapi_schema = house_openapi(super().openapi())
        return self.openapi_schema

    def build_middleware_stack(self) -> StarletteASGIApp:
        inner: ASGIApp = super().build_middleware_stack()
        if self.fast_lane is not None:
            inner = self.fast_lane(inner)
        inner = RefuseRepeatedAuthorization(inner)
        if self.max_body_size is not None:
            inner = RefuseOversizedBody(inner, self.max_body_size)
        return typing.cast(StarletteASGIApp, ContainUnhandledErrors(inner))


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def error_response(request: Request, error: GatewayError) -> JSONResponse:
    return JSONResponse(
        error.body(request_id_of(request)), status_code=error.status_code, headers=error.headers or None
    )


_SOURCES = ("body", "query", "path", "header", "cookie")
_declared_cache: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()


def _model_names(annotation: Any, out: set[str], seen: set[Any]) -> None:
    """Field names (and aliases) of every model reachable from ``annotation`` (lists, unions, dicts...)."""
    if isinstance(annotation, type) and annotation not in seen:
        if issubclass(annotation, BaseModel):
            seen.add(annotation)
            for name, info in annotation.model_fields.items():
                out.add(name)
                out.update(a for a in (info.alias, info.validation_alias) if isinstance(a, str))
                _model_names(info.annotation, out, seen)
            return
        if dataclasses.is_dataclass(annotation):
            seen.add(annotation)
            with contextlib.suppress(Exception):
                for name, hint in typing.get_type_hints(annotation).items():
                    out.add(name)
                    _model_names(hint, out, seen)
            return
    for arg in typing.get_args(annotation):
        _model_names(arg, out, seen)


def declared_names(route: Any) -> frozenset[str]:
    """Every name an endpoint declares: its parameters, their aliases and the fields of its body models."""
    if route is None:
        return frozenset()
    with contextlib.suppress(TypeError):
        cached = _declared_cache.get(route)
        if cached is not None:
            return cached
    names: set[str] = set()
    seen: set[Any] = set()
    pending = [getattr(route, "dependant", None)]
    while pending:
        dependant = pending.pop()
        if dependant is None:
            continue
        for group in ("path_params", "query_params", "header_params", "cookie_params", "body_params"):
            for param in getattr(dependant, group, ()):
                names.update(n for n in (param.name, param.alias) if isinstance(n, str))
                _model_names(getattr(param.field_info, "annotation", None), names, seen)
        pending.extend(getattr(dependant, "dependencies", ()))
    body_field = getattr(route, "body_field", None)
    if body_field is not None:
        _model_names(getattr(body_field.field_info, "annotation", None), names, seen)
    result = frozenset(names)
    with contextlib.suppress(TypeError):
        _declared_cache[route] = result
    return result


def field_name(loc: Sequence[Any], declared: frozenset[str]) -> str:
    """``loc`` up to the first part the endpoint does not declare: a list index, a dict key (which may be
    an ID number: ``{"datasets": {"11010519491231002X": 5}}``), a union member's tag. Never a value."""
    kept: list[str] = []
    for part in loc[1:]:
        if not isinstance(part, str) or part not in declared:
            break
        kept.append(part)
    if kept:
        return ".".join(kept)
    source = loc[0] if loc else None
    return source if isinstance(source, str) and source in _SOURCES else "request"


#: Errors about the request as a whole, located by something the caller sent (an unknown key, a position
#: in the text): the hint is given although the name cannot reach that part.
_WHOLE_BODY_KINDS = frozenset({"extra_forbidden", "json_invalid"})


def _body_fields(route: Any) -> list[str]:
    """The top-level fields of the endpoint's body model (also when the body is optional)."""
    annotation = getattr(getattr(getattr(route, "body_field", None), "field_info", None), "annotation", None)
    for model in (annotation, *typing.get_args(annotation)):
        if isinstance(model, type) and issubclass(model, BaseModel):
            return list(model.model_fields)
    return []


def _hint(error: Mapping[str, Any], route: Any) -> tuple[str, str] | None:
    """The shared hint for one error; an unknown key in the body names the keys the endpoint takes."""
    unknown_key_in_body = error.get("type") == "extra_forbidden" and len(error.get("loc", ())) == 2
    return validation_hint(error, _body_fields(route) if unknown_key_in_body else ())


def describe_validation_errors(errors: Sequence[Mapping[str, Any]], route: Any) -> tuple[list[str], str, str]:
    """The parameters named (declared names only) and the zh/en message saying what each needs."""
    declared = declared_names(route)
    hints: dict[str, list[tuple[str, str]]] = {}
    for err in errors:
        loc = err.get("loc", ())
        name = field_name(loc, declared)
        said = hints.setdefault(name, [])
        # A hint about a part the name does not reach (a list item, a dict key) would mislead; but each item
        # of a repeated query parameter (``?status=a&status=b``) is one value of that parameter as typed.
        repeated = len(loc) == 3 and loc[0] == "query" and isinstance(loc[2], int) and loc[1] == name
        whole = (
            ".".join(str(p) for p in loc[1:]) in (name, "")
            or err.get("type") in _WHOLE_BODY_KINDS
            or repeated
        )
        hint = _hint(err, route) if whole else None
        if hint is not None and hint not in said:
            said.append(hint)
    names = sorted(hints)
    zh = "；".join(n + (f"（{'；'.join(h[0] for h in hints[n])}）" if hints[n] else "") for n in names)
    en = "; ".join(n + (f" ({'; '.join(h[1] for h in hints[n])})" if hints[n] else "") for n in names)
    return names, f"请求参数有误：{zh}。", f"Invalid request parameters: {en}."


def json_nested_too_deep() -> InvalidRequest:
    """422 for a JSON body nested deeper than the parser can follow (Python's recursion limit): valid JSON
    that no endpoint's structure comes near, refused like other unreadable bodies, naming ``body``."""
    return InvalidRequest(
        "请求参数有误：body（JSON 嵌套层数过多，无法读取；请按接口文档的结构提交）。",
        "Invalid request parameters: body (the JSON is nested too deeply to be read; send the structure "
        "the API documents).",
        extra={"fields": ["body"]},
    )


def _route_without_trailing_slash(request: Request) -> bool:
    """Whether the path, without its trailing ``/``, is one the app serves (for any method)."""
    path = str(request.scope.get("path", ""))
    if not path.endswith("/") or path == "/":
        return False
    stripped = {**request.scope, "path": path.rstrip("/")}
    return any(route.matches(stripped)[0] != Match.NONE for route in request.app.router.routes)


def _documented_form(request: Request) -> str | None:
    """The documented address (``/api/v1/admission/systems/{system_id}``) the path, without its trailing
    ``/``, is an instance of: the route taking this method first, else the first route at that address,
    each matching the path itself (``BaseRoute.matches``, as :func:`gateway.admin_support.asked_for` does).
    None for a route the document leaves out (a page of the UI)."""
    app = request.app
    scope = {**request.scope, "path": str(request.scope["path"]).rstrip("/")}
    partial: str | None = None
    for route in app.api_routes if isinstance(app, GatewayApp) else ():
        if not route.include_in_schema:
            continue
        match = route.matches(scope)[0]
        if match is Match.FULL:
            return route.path_format
        if match is Match.PARTIAL and partial is None:
            partial = route.path_format
    return partial


#: The methods an address may take, in the order an ``Allow`` header lists them.
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this address. Starlette's 405 names only the methods of the
    first route that matched the path (``Allow: POST`` for ``DELETE /api/v1/grants``, which takes GET
    too): the address's routes are asked one method at a time instead."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]


def method_not_allowed(allowed: Sequence[str]) -> GatewayError:
    """405 with the ``Allow`` header RFC 9110 §15.5.6 requires, saying which methods the address takes
    (never repeating the one sent: a method is whatever token the caller typed)."""
    return GatewayError(
        f"此接口地址不接受这种请求方法（HTTP 方法），只接受 {'、'.join(allowed)}："
        "请按接口文档（/docs）改用正确的方法。",
        f"This address does not take that request method; it takes {', '.join(allowed)} (see /docs).",
        code="method_not_allowed",
        status_code=405,
        headers={"Allow": ", ".join(allowed)},
        extra={"allowed_methods": list(allowed)},
    )


def install_error_handlers(app: FastAPI) -> None:
    async def on_gateway_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, GatewayError)
        return error_response(request, exc)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        # Name the offending parameters, never echo their values (they may hold personal data), nor the
        # dict keys and list indexes inside them: only names the endpoint itself declares, each with what
        # it needs, read from the schema.
        names, zh, en = describe_validation_errors(exc.errors(), request.scope.get("route"))
        return error_response(request, InvalidRequest(zh, en, extra={"fields": names}))

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):
            # FastAPI's body parsing met JSON nested past the interpreter's limit (``[[[...]]]`` a thousand
            # deep: 2 KB) and answered a bare 400; said as what it is, like any other unreadable body.
            return error_response(request, json_nested_too_deep())
        if exc.status_code == 404:
            if _route_without_trailing_slash(request):
                return error_response(request, trailing_slash_refused(_documented_form(request)))
            return error_response(
                request,
                NotFound(
                    "页面或接口不存在：请核对地址，全部接口及其地址见 /docs。",
                    "No such page or endpoint: check the address; /docs lists every endpoint.",
                    code="no_route",
                ),
            )
        if exc.status_code == 405:
            return error_response(request, method_not_allowed(_allowed_methods(request)))
        limit = request.scope.get(MAX_BODY_SIZE_SCOPE_KEY)
        if exc.status_code == 413 and isinstance(limit, int):
            # FastAPI's limiter stopped reading a streamed (chunked) body at the limit.
            return error_response(request, BodyTooLarge(limit))
        return error_response(
            request,
            GatewayError(
                "请求无法处理。",
                "The request cannot be handled.",
                code="http_error",
                status_code=exc.status_code,
                headers=exc.headers,
            ),
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        _log.error("unhandled error: %s", type(exc).__name__)
        return error_response(request, GatewayError())

    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


def settle_heap() -> None:
    """Move everything start-up built (catalogs, recognizers, the policy index, libraries: ~250,000
    objects) out of the garbage collector's sight, once, when serving begins.

    They live as long as the process, yet every full collection walked them all: measured 145 ms a
    collection, a pause every request in flight waits out (the p99 at a steady 200 req/s).
    ``gc.freeze`` is the standard library's way (Python docs, "gc.freeze": for servers, after start-up);
    objects made later (a reloaded policy index) are collected as usual."""
    gc.collect()
    gc.freeze()


def create_app(
    settings: Settings | None = None,
    *,
    keys: KeyRing | None = None,
    audit_refs: PseudonymRing | None = None,
) -> FastAPI:
    """Build the app. Nothing connects until the lifespan starts. `keys`: the masking key ring, `audit_refs`:
    the audit-ref key ring, when the caller (``serve``, ``demo``) has read them already; otherwise the
    lifespan reads them."""
    from gateway.auth.devusers import dev_identity_provider
    from gateway.db import DatabaseNotMigrated
    from gateway.routes import (
        admin,
        admission_api,
        data,
        grants,
        health,
        masking_admin,
        policy,
        supervision,
    )
    from gateway.wiring import build_runtime, close_runtime

    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            runtime = build_runtime(settings, keys=keys, audit_refs=audit_refs)
        except DatabaseNotMigrated as exc:  # unreachable or behind since `serve` checked it
            raise StartupRefused(str(exc)) from None
        app.state.runtime = runtime
        await runtime.start()
        settle_heap()
        try:
            yield
        finally:
            await close_runtime(runtime)

    app = GatewayApp(
        title="Grassroots Data Gateway · 基层数据网关",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # gateway.api_docs serves /docs without a CDN
        redoc_url=None,
        redirect_slashes=False,
        generate_unique_id_function=operation_id,
        max_body_size=settings.max_body_bytes,
        # FastAPI's own OpenTelemetry bridge stays off: the gateway's telemetry is gateway.telemetry, whose
        # spans carry codes and counts and name a failure by its type only; FastAPI's would, under any
        # globally configured provider, export an unhandled exception with its message and traceback
        # (house style, habit 4). Off, it is also not asked for the global providers on every request
        # (about 3 us of a data request's CPU).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    install_api_docs(app)
    areas = (health, data, admin, grants, policy, masking_admin, supervision, admission_api)
    routers = [area.router for area in areas]
    for router in routers:
        app.include_router(router)
    app.api_routes = tuple(r for router in routers for r in router.routes if isinstance(r, APIRoute))
    if settings.dev_idp_enabled:
        from gateway.auth.devidp_http import router as dev_idp_router

        idp = dev_identity_provider(settings)
        # Its signing key is made now, not at the first sign-in: `dev-token` and `--as` sign with this file
        # and refuse to make one of their own (a key the gateway does not know).
        idp.jwks()
        app.include_router(dev_idp_router(idp), prefix="/dev-idp")
    app.add_middleware(RefuseAnonymousBody)
    app.add_middleware(NoStoreApiAnswers)
    app.add_middleware(RequestIdMiddleware)
    if settings.data_fast_lane:
        app.fast_lane = data.DataFastLane
    return app


async def get_runtime(request: Request) -> Runtime:
    # async: FastAPI would run a plain function in its thread pool, a thread hop on every request.
    runtime: Runtime = request.app.state.runtime
    return runtime
