"""Administrative API (who am I, policy dry-runs; grows with the grants, audit and admission issues)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header

from gateway.admin_support import signed_in
from gateway.app import get_runtime
from gateway.runtime import Runtime

router = APIRouter(prefix="/api/v1", tags=["admin"])

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


@router.get("/me")
async def whoami(
    runtime: RuntimeDep, authorization: Annotated[str | None, Header()] = None
) -> dict[str, Any]:
    """The caller as the gateway sees them: user id, organisation and roles from the SSO token."""
    principal = await signed_in(runtime, authorization, "read me")
    return {
        "user_id": principal.user_id,
        "username": principal.username,
        "org": principal.org,
        "roles": list(principal.roles),
        "department": principal.department,
        "office": principal.office,
    }
