"""The data path's HTTP surface: residents (and every other catalogued dataset) for village users.

Two doors to the same pipeline (``run_data_request``): the FastAPI routes below, which document the API
(OpenAPI) and serve what the fast lane leaves to them, and :class:`DataFastLane`, a plain ASGI middleware
that answers ``GET`` on these two paths directly. The fast lane exists for cost: FastAPI's routing,
dependency solving and exception middlewares were about a tenth of a data request's CPU. It reproduces
exactly what the routes do — same path parameters, query (last value wins, as Starlette's), header,
request id, JSON encoding (one encoder, :func:`_render`, for both), and error bodies
(``GatewayError.body``; an unexpected error is a plain 500).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Annotated, Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, Header, Path, Request
from fastapi.responses import JSONResponse

from gateway.app import ASGIApp, Receive, Scope, Send, get_runtime, new_request_id, request_id_of
from gateway.errors import GatewayError
from gateway.openapi_doc import ecma_pattern
from gateway.pipeline import DATASET_PATTERN, MAX_PAGE, SCENARIO_PATTERN, run_data_request
from gateway.runtime import Runtime
from gateway.upstream import RECORD_ID_PATTERN

_log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["data"])

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
#: A dataset code that is not one is no dataset (404 ``unknown_dataset``); a record id that is not one no
#: record (404): the document says what each looks like.
DatasetPath = Annotated[str, Path(json_schema_extra={"pattern": ecma_pattern(DATASET_PATTERN)})]
RecordIdPath = Annotated[str, Path(json_schema_extra={"pattern": ecma_pattern(RECORD_ID_PATTERN)})]


#: The query parameters the pipeline reads.
_READ = ("scenario", "page", "page_size")


def data_query(
    pairs: Iterable[tuple[str, str]],
) -> tuple[dict[str, str | None], tuple[str, ...], bool]:
    """The pipeline's parameters from the query's (name, value) pairs, those of them given more than
    once (``?scenario=A&scenario=B`` is refused: which one was meant?) rather than read as its last, and
    whether any other parameter was sent (refused too: ``page_szie=1`` ignored served a full page, and
    ``fields=`` ignored looked like an answer to it)."""
    query: dict[str, str | None] = dict.fromkeys(_READ)
    repeated: list[str] = []
    unknown = False
    for name, value in pairs:
        if name in query:
            if query[name] is not None and name not in repeated:
                repeated.append(name)
            query[name] = value
        else:
            unknown = True
    return query, tuple(repeated), unknown


def _query(request: Request) -> tuple[dict[str, str | None], tuple[str, ...], bool]:
    return data_query(request.query_params.multi_items())


# The query parameters the pipeline reads (``parse_data_request`` validates them, with messages a cadre
# understands), documented here for the OpenAPI page: FastAPI does not see them as route parameters.
_SCENARIO_PARAM: dict[str, Any] = {
    "name": "scenario",
    "in": "query",
    "required": True,
    "description": "使用场景代码（例如 DIBAO_REVIEW；全部场景见 GET /api/v1/scenarios）。"
    "The scenario the data is read for (e.g. DIBAO_REVIEW; GET /api/v1/scenarios lists them).",
    "schema": {"type": "string", "pattern": ecma_pattern(SCENARIO_PATTERN), "example": "DIBAO_REVIEW"},
}
_PAGE_PARAMS: list[dict[str, Any]] = [
    {
        "name": "page",
        "in": "query",
        "required": False,
        "description": "页码，从 1 开始。Page number, from 1.",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1},
    },
    {
        "name": "page_size",
        "in": "query",
        "required": False,
        "description": "每页条数；上限取平台每页上限与场景每次上限中较小者。Records per page; at most the "
        "smaller of the platform's page limit (GRASSROOTS_MAX_PAGE_SIZE) and the scenario's cap.",
        "schema": {"type": "integer", "minimum": 1, "default": 20},
    },
]


# The body is already plain JSON (strings, numbers, lists from the upstream, masked): handed to
# the response as is, it skips FastAPI's jsonable_encoder walk over every field of every record.


def _render(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, as Starlette's JSONResponse writes it (same bytes for strings, integers,
    lists and objects; floats in their shortest form), at a fifteenth of the C ``json`` encoder's cost
    on a page of 20 records. A value JSON cannot carry (NaN, a lone surrogate) raises, as there."""
    return orjson.dumps(payload)


#: Residents' records, masked or not, are personal information: no browser, proxy or client library may
#: keep a copy (OWASP ASVS V8.2.1; RFC 9111 §5.2.2.5). Sent by both doors with every answer, refusals too.
_NO_STORE = (b"cache-control", b"no-store")


class DataJSONResponse(JSONResponse):
    """The data path's response, encoded like the fast lane's (one encoder for both doors)."""

    def __init__(self, content: Any, status_code: int = 200) -> None:
        super().__init__(content, status_code, headers={"Cache-Control": "no-store"})

    def render(self, content: Any) -> bytes:
        return _render(content)


def _trailing_slash(request: Request) -> bool:
    return str(request.scope["path"]).endswith("/")


# A data path ending in "/" is served by the same functions, which refuse it (404 ``trailing_slash``,
# audited): the app redirects no slash (``redirect_slashes=False``, gateway.app).
@router.get("/datasets/{dataset}/records/", response_class=DataJSONResponse, include_in_schema=False)
@router.get(
    "/datasets/{dataset}/records",
    response_class=DataJSONResponse,
    openapi_extra={"parameters": [_SCENARIO_PARAM, *_PAGE_PARAMS]},
)
async def list_records(
    dataset: DatasetPath,
    request: Request,
    runtime: RuntimeDep,
    authorization: Annotated[str | None, Header()] = None,
) -> DataJSONResponse:
    """List records of ``dataset`` within the caller's jurisdiction, for one scenario (``?scenario=``).

    Only ``scenario``, ``page`` and ``page_size`` are taken; any other parameter is refused (422
    ``unknown_parameter``): the fields are the grant's. An empty page past the last carries ``note``."""
    query, repeated, unknown = _query(request)
    body = await run_data_request(
        runtime,
        authorization,
        dataset,
        query,
        request_id=request_id_of(request),
        repeated=repeated,
        unknown_parameters=unknown,
        trailing_slash=_trailing_slash(request),
    )
    return DataJSONResponse(body)


@router.get(
    "/datasets/{dataset}/records/{record_id}/", response_class=DataJSONResponse, include_in_schema=False
)
@router.get(
    "/datasets/{dataset}/records/{record_id}",
    response_class=DataJSONResponse,
    openapi_extra={"parameters": [_SCENARIO_PARAM]},
)
async def get_record(
    dataset: DatasetPath,
    record_id: RecordIdPath,
    request: Request,
    runtime: RuntimeDep,
    authorization: Annotated[str | None, Header()] = None,
) -> DataJSONResponse:
    """One record by its stable id; outside the caller's jurisdiction it answers 404 like a missing one."""
    query, repeated, unknown = _query(request)
    body = await run_data_request(
        runtime,
        authorization,
        dataset,
        query,
        record_id=record_id,
        request_id=request_id_of(request),
        repeated=repeated,
        unknown_parameters=unknown,
        trailing_slash=_trailing_slash(request),
    )
    return DataJSONResponse(body)


# -- the fast lane ---------------------------------------------------------------------------------------

#: A trailing "/" is taken too, and refused by the pipeline (404 ``trailing_slash``, audited).
_DATA_PATH = re.compile(r"/api/v1/datasets/([^/]+)/records(?:/([^/]+))?(/)?")
_JSON = (b"content-type", b"application/json")


class DataFastLane:
    """Pure ASGI: ``GET /api/v1/datasets/{dataset}/records[/{record_id}]`` straight to the pipeline.

    Placed outside FastAPI's middleware stack (:class:`gateway.app.GatewayApp`), so it does what
    ``RequestIdMiddleware`` does for the routes: a fresh request id, in the state, the errors and the
    ``X-Request-ID`` header (last, as that middleware appends it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = (
            _DATA_PATH.fullmatch(scope["path"])
            if scope["type"] == "http" and scope["method"] == "GET"
            else None
        )
        if match is None:
            await self.app(scope, receive, send)
            return
        authorization: str | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        query, repeated, unknown = data_query(
            parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        )
        request_id = new_request_id(scope)
        # Refusals too, as the routed door's answers under /api/ (gateway.app.NoStoreApiAnswers).
        headers: list[tuple[bytes, bytes]] = [_JSON, _NO_STORE]
        try:
            payload = await run_data_request(
                scope["app"].state.runtime,
                authorization,
                match.group(1),
                query,
                record_id=match.group(2),
                request_id=request_id,
                repeated=repeated,
                unknown_parameters=unknown,
                trailing_slash=match.group(3) is not None,
            )
            status = 200
        except GatewayError as error:
            payload, status = error.body(request_id), error.status_code
            headers += [
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (error.headers or {}).items()
            ]
        except Exception as exc:
            _log.error("unhandled error: %s", type(exc).__name__)
            fallback = GatewayError()
            payload, status = fallback.body(request_id), fallback.status_code
        content = _render(payload)
        headers.append((b"content-length", str(len(content)).encode("ascii")))
        headers.append((b"x-request-id", request_id.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})
