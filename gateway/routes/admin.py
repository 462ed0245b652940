"""Administrative API: who am I, may I, signing out, and cutting a user's sessions off."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request

from audit import AuditEvent, Outcome, actor_recorded
from gateway.admin_support import PermissionFirstRoute, Permitted, SignedIn, signed_in, unit_of_work
from gateway.app import get_runtime, request_id_of
from gateway.auth.oidc import Principal, recordable_subject
from gateway.auth.sessions import revoke_token, revoke_user_sessions, token_ref
from gateway.errors import InvalidRequest
from gateway.routes.grants import ReasonBody, checked_reason
from gateway.runtime import Runtime
from grassroots_common.personal_data import fold, looks_like_identifier, personal_data_in

router = APIRouter(prefix="/api/v1", tags=["admin"], route_class=PermissionFirstRoute)

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
    principal: Annotated[Principal, Depends(SignedIn("read me"))],
    runtime: RuntimeDep,
    resource: Annotated[str, Query(pattern=_NAME)],
    action: Annotated[str, Query(pattern=_NAME)],
) -> dict[str, Any]:
    """Whether the caller's roles hold a permission (role -> resource -> action), doing nothing else: a client
    asks before it makes its user type what the act needs, such as a resident's ID number for a complaint,
    only for the act to be refused. Signed in first: an anonymous caller's bad query is answered 401."""
    allowed = runtime.policy().permissions.is_allowed(principal.roles, resource, action)
    return {"resource": resource, "action": action, "allowed": bool(allowed)}


# -- signing out and revoking sessions (gateway.auth.sessions) -------------------------------------------


def _sessions_event(
    kind: str, principal: Principal, request: Request, details: dict[str, str], now: datetime
) -> AuditEvent:
    return AuditEvent(
        kind=kind,
        outcome=Outcome.OK,
        actor=principal.user_id,
        actor_org=principal.org,
        actor_roles=principal.roles,
        request_id=request_id_of(request),
        details=details,
        occurred_at=now,
    )


@router.post("/me/logout")
async def logout(
    request: Request, runtime: RuntimeDep, authorization: Annotated[str | None, Header()] = None
) -> dict[str, Any]:
    """Sign out: the token presented is refused from now on, in every gateway process (this one at once,
    the others within a policy poll), until it would have expired anyway."""
    principal = await signed_in(runtime, authorization, "sign out")
    now = datetime.now(UTC)
    leeway = runtime.settings.oidc_leeway_s
    async with unit_of_work(runtime, principal, request_id_of(request)) as uow:
        key = await uow.run(
            lambda s: revoke_token(s, principal, actor=principal.user_id, now=now, leeway_s=leeway)
        )
        # Never the token: which key named it (jti or digest) and a digest of that key.
        details = {"user_id": principal.user_id, "by": key.partition(":")[0], "token_ref": token_ref(key)}
        uow.record_event(_sessions_event("auth.logout", principal, request, details, now))
    return {
        "signed_out": True,
        "message": "已退出登录。此登录凭证在所有网关进程中均已失效，请重新登录。",
        "message_en": "Signed out. This sign-in token is no longer accepted by any gateway process.",
    }


_USER_ID_MAX = 256


def checked_user_id(user_id: str) -> str:
    """The user id a revocation names: it goes into the audit log, so never an ID or mobile number (the
    identity provider's subject is never one either, gateway.auth.oidc refuses such tokens)."""
    if not user_id.strip() or len(user_id) > _USER_ID_MAX:
        raise InvalidRequest(
            f"用户标识不能为空，且最多 {_USER_ID_MAX} 个字符：请填写统一身份认证中的用户标识（sub；"
            "经 GRASSROOTS_OIDC_ISSUERS 所列身份提供方登录的用户写作“issuer#sub”，"
            "即其 GET /api/v1/me 的 user_id）。",
            f"The user id must be 1 to {_USER_ID_MAX} characters: give the user's identifier (sub) at the "
            "identity provider (for a user of a provider in GRASSROOTS_OIDC_ISSUERS, 'issuer#sub': the "
            "user_id GET /api/v1/me shows).",
            code="invalid_user_id",
        )
    if user_id != user_id.strip():  # no token's subject has them: revoking it as typed would cut no one off
        raise InvalidRequest(
            "用户标识前后有空格，本次未办理：登录凭证中的用户标识不带空格，照此撤销不会让任何人的登录失效。"
            "请去掉空格，照 GET /api/v1/me 所示的 user_id 原样填写。",
            "The user id has spaces before or after it; nothing was done: no sign-in token names such a "
            "user, so revoking it would cut no one off. Remove the spaces and give the user_id exactly as "
            "GET /api/v1/me shows it.",
            code="invalid_user_id",
        )
    if not recordable_subject(user_id):  # no token names such a user; and it would reach the audit log
        raise InvalidRequest(
            "用户标识中含有控制字符、换行或不可见的格式字符，本次未办理。"
            "请照 GET /api/v1/me 所示原样填写用户标识。",
            "The user id holds a control, line-break or invisible format character; nothing was done. Give "
            "the user id exactly as GET /api/v1/me shows it.",
            code="invalid_user_id",
        )
    if looks_like_identifier(fold(user_id)):
        raise InvalidRequest(*_PERSONAL_DATA_IN_USER_ID, code="personal_data_in_user_id")
    return user_id


_PERSONAL_DATA_IN_USER_ID = (
    "用户标识中含有身份证号或手机号，本次未办理。请填写统一身份认证中的用户标识（sub），不要填写个人信息。",
    "The user id holds an ID number or a mobile number; nothing was done. Give the user's identifier "
    "(sub) at the identity provider, not personal data.",
)
_NUMBERS_OF_PEOPLE = frozenset({"id_number", "mobile"})


# ``:path``: the id of a user of a further provider is "<issuer>#<sub>", whose issuer holds "/" (sent as %2F,
# which the router reads decoded).
@router.post("/users/{user_id:path}/revoke-sessions")
async def revoke_sessions(
    principal: Annotated[
        Principal,
        Depends(Permitted("sessions", "revoke", doing=("撤销用户的登录", "revoke a user's sessions"))),
    ],
    user_id: str,
    body: ReasonBody,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Cut a user off (transferred away, a phone lost): every token of theirs issued before now is refused
    in every gateway process (this one at once, the others within a policy poll). Signing in again later
    gives a token that is accepted, unless the identity provider has disabled the account as well."""
    target = checked_user_id(user_id)
    reason = checked_reason(body.reason)
    now = datetime.now(UTC)
    keep_for = runtime.settings.oidc_max_token_lifetime_s + runtime.settings.oidc_leeway_s
    # Revoked all the same when unseen (a user may hold a token and not have used it yet); said, so that a
    # user name or a person's name typed for the user id is noticed rather than taken for a cut-off user.
    seen = await asyncio.to_thread(actor_recorded, runtime.engine, target)
    if not seen and personal_data_in(target) in _NUMBERS_OF_PEOPLE:
        # An ID number with a wrong check character (a typo) or a mobile in numerals is no token's subject
        # yet, and would reach the audit log as typed; a provider's own numeric sub is revocable once seen.
        raise InvalidRequest(*_PERSONAL_DATA_IN_USER_ID, code="personal_data_in_user_id")
    async with unit_of_work(runtime, principal, request_id_of(request)) as uow:
        revoked_before = await uow.run(
            lambda s: revoke_user_sessions(
                s, target, actor=principal.user_id, reason=reason, now=now, keep_for_s=keep_for
            )
        )
        details = {"user_id": target, "revoked_before": revoked_before.isoformat(), "reason": reason}
        uow.record_event(_sessions_event("auth.sessions_revoked", principal, request, details, now))
    message = "该用户此前签发的全部登录凭证已撤销，所有网关进程将在一个策略刷新周期内拒绝这些凭证。"
    message_en = (
        "Every sign-in token this user was issued before now is revoked; every gateway process refuses them "
        "within one policy refresh interval."
    )
    if not seen:
        message += _NEVER_SEEN
        message_en += _NEVER_SEEN_EN
    return {
        "user_id": target,
        "revoked_before": revoked_before.isoformat(),
        "seen_in_audit_log": seen,
        "message": message,
        "message_en": message_en,
    }


_NEVER_SEEN = (
    "注意：保存期内的审计日志中没有该用户标识的任何请求。请核对所填的是该用户 GET /api/v1/me 所示的 user_id，"
    "而不是用户名或姓名；如填错，请用正确的用户标识重新撤销。"
)
_NEVER_SEEN_EN = (
    " Note: the audit log kept holds no request by this user id. Check that it is the user_id GET /api/v1/me "
    "shows for the user, not a user name or a person's name; if it is not, revoke again with the right one."
)
