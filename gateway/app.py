"""The FastAPI application: lifespan wiring, one error handler, request ids, routes.

No log line carries what a request sent: an unexpected exception is logged by its type alone and ends at
the outermost layer (:class:`ContainUnhandledErrors`) instead of reaching uvicorn, which would log its
message and traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import typing
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp as StarletteASGIApp

from gateway.errors import GatewayError, InvalidRequest, NotFound
from gateway.runtime import Runtime
from gateway.settings import Settings

_log = logging.getLogger("gateway.app")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestIdMiddleware:
    """Pure ASGI: give every request an id (``X-Request-ID``), echoed in the response and in errors."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


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
        if scope["type"] != "http":
            # Lifespan: a start-up failure must still say why (operator configuration, not request input).
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
            body = json.dumps(GatewayError().body(request_id), ensure_ascii=False).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            if request_id:
                headers.append((b"x-request-id", str(request_id).encode()))
            with contextlib.suppress(Exception):  # the client may be gone
                await send({"type": "http.response.start", "status": 500, "headers": headers})
                await send({"type": "http.response.body", "body": body})


class GatewayApp(FastAPI):
    """FastAPI with :class:`ContainUnhandledErrors` around its whole stack (ServerErrorMiddleware included:
    ``add_middleware`` can only place a middleware inside it)."""

    def build_middleware_stack(self) -> StarletteASGIApp:
        inner = super().build_middleware_stack()
        return typing.cast(StarletteASGIApp, ContainUnhandledErrors(inner))


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def error_response(request: Request, error: GatewayError) -> JSONResponse:
    return JSONResponse(
        error.body(request_id_of(request)), status_code=error.status_code, headers=error.headers or None
    )


def install_error_handlers(app: FastAPI) -> None:
    async def on_gateway_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, GatewayError)
        return error_response(request, exc)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        # Name the offending parameters, never echo their values (they may hold personal data).
        names = sorted({".".join(str(p) for p in err.get("loc", ())[1:]) for err in exc.errors()})
        return error_response(
            request,
            InvalidRequest(
                f"请求参数有误：{', '.join(names)}。",
                f"Invalid request parameters: {', '.join(names)}.",
                extra={"fields": names},
            ),
        )

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            return error_response(
                request, NotFound("页面或接口不存在。", "No such page or endpoint.", code="no_route")
            )
        return error_response(
            request,
            GatewayError(
                "请求无法处理。",
                "The request cannot be handled.",
                code="http_error",
                status_code=exc.status_code,
            ),
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        _log.error("unhandled error: %s", type(exc).__name__)
        return error_response(request, GatewayError())

    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Nothing connects until the lifespan starts."""
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
    from gateway.wiring import build_runtime, close_runtime, dev_identity_provider

    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = build_runtime(settings)
        app.state.runtime = runtime
        await runtime.start()
        try:
            yield
        finally:
            await close_runtime(runtime)

    app = GatewayApp(
        title="Grassroots Data Gateway · 基层数据网关",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(data.router)
    app.include_router(admin.router)
    for area in (grants, policy, masking_admin, supervision, admission_api):
        app.include_router(area.router)
    if settings.dev_idp_enabled:
        from gateway.auth.devidp import router as dev_idp_router

        app.include_router(dev_idp_router(dev_identity_provider(settings)), prefix="/dev-idp")
    if settings.data_fast_lane:
        app.add_middleware(data.DataFastLane)  # inside RequestIdMiddleware: it reads the request id
    app.add_middleware(RequestIdMiddleware)
    return app


async def get_runtime(request: Request) -> Runtime:
    # async: FastAPI would run a plain function in its thread pool, a thread hop on every request.
    runtime: Runtime = request.app.state.runtime
    return runtime
