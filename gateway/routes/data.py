"""The data path's HTTP surface: residents (and every other catalogued dataset) for village users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse

from gateway.app import get_runtime, request_id_of
from gateway.pipeline import run_data_request
from gateway.runtime import Runtime

router = APIRouter(prefix="/api/v1", tags=["data"])

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def _query(request: Request) -> dict[str, str | None]:
    params = request.query_params
    return {name: params.get(name) for name in ("scenario", "page", "page_size")}


# The body is already plain JSON (strings, numbers, lists from the upstream, masked): handed to
# JSONResponse as is, it skips FastAPI's jsonable_encoder walk over every field of every record.


@router.get("/datasets/{dataset}/records", response_class=JSONResponse)
async def list_records(
    dataset: str,
    request: Request,
    runtime: RuntimeDep,
    authorization: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """List records of ``dataset`` within the caller's jurisdiction, for one scenario (``?scenario=``)."""
    body = await run_data_request(
        runtime,
        authorization,
        dataset,
        _query(request),
        request_id=request_id_of(request),
    )
    return JSONResponse(body)


@router.get("/datasets/{dataset}/records/{record_id}", response_class=JSONResponse)
async def get_record(
    dataset: str,
    record_id: str,
    request: Request,
    runtime: RuntimeDep,
    authorization: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """One record by its stable id; outside the caller's jurisdiction it answers 404 like a missing one."""
    body = await run_data_request(
        runtime,
        authorization,
        dataset,
        _query(request),
        record_id=record_id,
        request_id=request_id_of(request),
    )
    return JSONResponse(body)
