"""Administrative API (who am I, policy dry-runs; grows with the grants, audit and admission issues)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query

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


_NAME = r"^[a-z_]{1,40}$"


@router.get("/me/can")
async def may_i(
    runtime: RuntimeDep,
    resource: Annotated[str, Query(pattern=_NAME)],
    action: Annotated[str, Query(pattern=_NAME)],
    authorization: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """Whether the caller's roles hold a permission (role -> resource -> action), doing nothing else: a client
    asks before it makes its user type what the act needs, such as a resident's ID number for a complaint,
    only for the act to be refused."""
    principal = await signed_in(runtime, authorization, "read me")
    allowed = runtime.policy().permissions.is_allowed(principal.roles, resource, action)
    return {"resource": resource, "action": action, "allowed": bool(allowed)}
