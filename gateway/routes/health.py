"""Liveness and readiness.

``/healthz`` (liveness): the process answers. ``/readyz`` (readiness, for a load balancer or an
orchestrator): this process can serve right now — its database answers (on SQLite: the migrated file at
its path, not one removed or replaced under the process), its policy and registry state is fresh (the
same staleness guard that refuses data requests, fail closed), and its audit log took the latest events
(a failed commit, with none since, makes it not ready for ``AUDIT_FAILURE_NOT_READY_S``). A process that is
alive but not ready should be taken out of rotation, not restarted.

``/readyz`` also says how the periodic signed audit checkpoint is doing (``audit_checkpoints``: state,
failure kind, ages; :mod:`gateway.checkpoint_health`). A failing checkpoint leaves the process ready:
the audit log itself stays fail-closed, and every process shares the checkpoint directory and key, so
making them all not-ready would stop the whole service over a proof the next good round catches up on.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from sqlalchemy import Engine, text

from audit import DatabaseFileReplaced, sqlite_file_replaced
from gateway.app import get_runtime
from gateway.errors import ServiceUnavailable
from gateway.runtime import Runtime

router = APIRouter(tags=["health"])
_log = logging.getLogger("gateway.health")


@router.get("/healthz")
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


def _ping(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return
    for _ in range(2):
        with engine.connect() as conn:
            # A file removed or replaced under the process is still open, and answers; no audit event can
            # be committed to it. Its connections are dropped and a fresh one asked: the file now there.
            if sqlite_file_replaced(conn.connection):
                conn.invalidate()
                engine.dispose()
                continue
            # The version table: an empty file SQLite made in the place of a removed one answers SELECT 1.
            conn.execute(text("SELECT 1 FROM alembic_version"))
            return
    raise DatabaseFileReplaced("the database file was removed or replaced")


@router.get("/readyz")
async def readyz(runtime: Annotated[Runtime, Depends(get_runtime)]) -> dict[str, Any]:
    try:
        await asyncio.to_thread(_ping, runtime.engine)
    except Exception as exc:  # only the class is logged: a driver's message may quote the URL
        _log.warning("not ready: the database did not answer (%s)", type(exc).__name__)
        raise ServiceUnavailable(
            "网关暂时无法连接数据库，本进程暂不能处理请求，请稍后重试。",
            "The gateway cannot reach its database; this process cannot serve requests now. Retry later.",
            code="database_unavailable",
        ) from None
    runtime.check_fresh()  # 503 policy_stale when the policy and registry state could not be refreshed
    runtime.check_audit_log()  # 503 audit_unavailable while the audit log's latest commit failed
    return {"status": "ready", "audit_checkpoints": runtime.checkpoint_health.view(datetime.now(UTC))}
