"""What every administrative endpoint needs: who calls and may they, a unit of work, the audit record.

The pattern (used by grants, policy, masking, supervision and admission routes):

    principal = await require(runtime, authorization, "grants", "approve")
    async with unit_of_work(runtime, principal, request_id) as uow:
        grant, change = GrantService(GrantRepository(uow.session), ...).approve(...)
        uow.record(change)
    return ...

``unit_of_work`` runs the library calls, then appends every recorded change to the audit log IN THE SAME
transaction, and commits both: the change and its record are durable together or not at all. If the log
cannot be written everything is rolled back and the caller gets 503: an administrative change nobody can
account for never happens (fail closed). Library errors become the one
JSON error shape with a fitting status.

An act refused by a business rule after the permission check (a steward approving her own request, a
second vote, a grant already revoked) is rolled back like any failure, and then recorded on its own as an
``admin.refused`` event naming the permission asked and the reason code, durably, before the refusal is
answered (503 instead if the log cannot take it): the attempt is what supervision looks for (PIPL Art. 56).

A read that shows personal data (a registration's ``contact``; the supervision views) is one audit event
(:func:`record_read`: ids only, never what was shown), durable before the answer; a read of a record by
its id that is answered 404 is an ``admin.refused`` event (:func:`refused_reads`), naming the record only
when it exists outside the caller's reach (:class:`OutOfReach`): probing other departments' ids is what
supervision looks for. Reads that show no personal data are not recorded (they would flood the log).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, TypeVar

from fastapi import Header, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session
from starlette.routing import Match
from starlette.types import Scope

from admission.errors import (
    AdmissionConflict,
    AdmissionError,
    AlreadyVoted,
    IllegalTransition,
    RegistrationExists,
    RegistrationNotFound,
    SeparationOfDuties,
)
from audit import ANONYMOUS_ACTOR, AuditEvent, AuditLog, AuditUnavailable, Outcome
from gateway.app import REQUEST_ID, GatewayApp, get_runtime
from gateway.auth.oidc import Principal
from gateway.changes import change_event
from gateway.errors import (
    AuditLogUnavailable,
    Forbidden,
    GatewayError,
    InvalidRequest,
    NotFound,
    Unauthenticated,
)
from gateway.openapi_doc import ecma_pattern, operation_id
from gateway.pipeline import authenticate, record_audit, refusal_details, with_request_source
from gateway.refusal_bursts import request_source
from gateway.runtime import Runtime
from grassroots_common import divisions as grassroots_divisions
from grassroots_common.divisions import DIVISION_CODE
from grassroots_common.personal_data import fold, looks_like_identifier
from masking.errors import MaskingError, UnknownDatasetError
from policies import divisions
from policies.errors import (
    GrantError,
    GrantNotFoundError,
    InvalidTransitionError,
    RequestAlreadyWaitingError,
    SeparationOfDutiesError,
)

_log = logging.getLogger("gateway.admin")
T = TypeVar("T")


class StrictBody(BaseModel):
    """A request body that refuses a key it does not define (422 naming the keys it takes) rather than
    ignore it: a misspelt key ignored is a question answered as if it had not been asked
    (``"field": ["id_number"]`` for ``fields`` in a policy decision answered "allowed"), a note or a
    deadline silently dropped."""

    model_config = ConfigDict(extra="forbid")


#: The OpenAPI constraint of a division code :func:`checked_org` takes (``json_schema_extra``).
ORG_SCHEMA: Final[dict[str, Any]] = {"pattern": ecma_pattern(DIVISION_CODE)}


def checked_org(code: str, name: str = "org_scope") -> str:
    """A division code in its 12-digit form, or a 422 that says what a code looks like: the one check of a
    typed organisation code for every administrative endpoint (grants, policy, supervision), on the parser
    the libraries share (``grassroots_common.divisions``), so a code is accepted or refused the same way
    everywhere, with the same words. The code is never echoed back."""
    try:
        return divisions.normalize(code)
    except ValueError:
        raise InvalidRequest(
            f"{name} 必须是 2、4、6、9 或 12 位的统计用区划代码（例如 310151101000）。",
            f"{name} must be a division code of 2, 4, 6, 9 or 12 digits (for example 310151101000).",
            code="invalid_org",
        ) from None


#: What to change when the code came as ``--org`` (the supervision views'), zh and en.
_INSTEAD_OF_ORG: Final = (
    "请去掉单位条件（--org），或改用本辖区内单位的区划代码。",
    "Leave out the organisation filter (--org), or give the division code of one within your jurisdiction.",
)


def supervised_prefix(
    principal: Principal, org: str | None = None, *, instead: tuple[str, str] = _INSTEAD_OF_ORG
) -> str:
    """The significant prefix of the organisation subtree the caller may look at: their own, or the part of
    it ``org`` names; a code outside it is 404 ``outside_scope`` (a code beyond one's reach is not
    confirmed to be anything), saying what the caller may look at instead and, in ``instead``, what to
    change in the request as she typed it (a view that takes no ``--org`` names its own argument). The
    one check of "whose figures" for every supervision view (least privilege, GB/T 35273-2020 §7.1): a
    township's supervisor sees her own township's, never a neighbour's."""
    mine = checked_org(principal.org, "org")
    own = grassroots_divisions.significant_prefix(mine)
    wanted = grassroots_divisions.significant_prefix(checked_org(org, "org")) if org else own
    if not wanted.startswith(own):
        # "outside your scope" alone left a township supervisor guessing what she may look at.
        raise NotFound(
            f"所查询的单位不在您的监督范围内：您只能查看本单位（{mine}）及其下级单位的记录。{instead[0]}",
            f"The organisation asked for is outside your supervisory scope: you may look at your own "
            f"organisation ({mine}) and those under it only. {instead[1]}",
            code="outside_scope",
        )
    return wanted


#: What a supervision permission lets one do, in the words an official reads: the Chinese refusal said
#: only 没有办理此项业务的权限 while the English named the permission, so a township officer trying a
#: supervisor's command could not tell what she lacked (the refusal names the permission code too).
_PERMISSION_ZH: Final[Mapping[str, str]] = {
    "read audit": "查看审计记录和监督案件",
    "register audit": "登记投诉",
    "review audit": "办理投诉和事件",
    "verify audit": "校验审计日志、签发检查点和归档",
    "prune audit": "清理审计日志",
}


async def require(
    runtime: Runtime,
    authorization: str | None,
    resource: str,
    action: str,
    *,
    doing: tuple[str, str] | None = None,
) -> Principal:
    """Authenticate, then the casbin function-level check (role -> resource -> action). 401 or 403.

    ``doing`` names what was asked (Chinese, English) when the permission checked is named after
    something else, so the refusal says what the caller tried rather than the permission's name.
    A refusal is an audit event before it is an answer (see :func:`signed_in`)."""
    principal = await signed_in(runtime, authorization, f"{action} {resource}")
    if not runtime.policy().permissions.is_allowed(principal.roles, resource, action):
        if doing is not None:
            refused = Forbidden(
                f"您的岗位无权{doing[0]}。",
                f"Your role may not {doing[1]} (permission: {action} {resource}).",
                code="no_permission",
            )
        else:
            refused = Forbidden(
                f"您的岗位没有{_PERMISSION_ZH.get(f'{action} {resource}', '办理此项业务')}的权限"
                f"（{action} {resource}），本次未办理。如工作确需，请联系平台管理员核对您的岗位。",
                f'Your role does not hold the permission "{action} {resource}"; nothing was done. '
                "If your work needs it, ask the platform administrator to check your role.",
                code="no_permission",
            )
        await record_refusal(runtime, principal, f"{action} {resource}", refused)
        raise refused
    return principal


#: Where :class:`PermissionFirstRoute` leaves the caller it let in, for the route's :class:`Permitted`.
_PERMITTED_PRINCIPAL = "grassroots.permitted_principal"

#: What the caller asked, for the ``admin.refused`` event of an act a business rule refuses inside the
#: unit of work: the permission's name (set by :func:`signed_in`) and the target named in the path.
_ASKED: ContextVar[str | None] = ContextVar("grassroots_asked", default=None)
_TARGET: ContextVar[Mapping[str, str] | None] = ContextVar("grassroots_target", default=None)

#: Path parameters that name what an act is done to by an id the platform issued or registered: recorded
#: with a refused act. Never ``user_id`` (a person), and never a value that holds an ID or mobile number.
_TARGET_PARAMS = frozenset(
    {"grant_id", "review_id", "proposal_id", "complaint_id", "incident_id", "system_id", "archive_id"}
)


def _note_target(request: Request) -> None:
    _TARGET.set(
        {
            name: value
            for name, value in request.path_params.items()
            if name in _TARGET_PARAMS
            and isinstance(value, str)
            and len(value) <= 64
            and not looks_like_identifier(fold(value))
        }
    )


class _CallerCheck:
    """A route's first check of its caller, run by :class:`PermissionFirstRoute` before anything else."""

    __slots__ = ()

    async def check(self, request: Request) -> Principal:
        raise NotImplementedError

    async def __call__(
        self, request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> Principal:
        checked = request.scope.get(_PERMITTED_PRINCIPAL)
        if isinstance(checked, Principal):
            return checked
        # Not on a PermissionFirstRoute (a router that forgot its route_class): still checked, only later.
        return await self.check(request)


@dataclass(frozen=True, slots=True)
class Permitted(_CallerCheck):
    """The dependency that names an administrative route's permission, once, in its signature:

        principal: Annotated[Principal, Depends(Permitted("grants", "approve"))]

    On a :class:`PermissionFirstRoute` the check runs before the request body is read, so a caller
    without the permission gets 403 (and an ``admin.refused`` event) whatever the body holds, and only a
    permitted caller learns what is wrong with a malformed one (422). ``doing`` as in :func:`require`."""

    resource: str
    action: str
    doing: tuple[str, str] | None = None

    @property
    def permission(self) -> str:
        return f"{self.action} {self.resource}"

    async def check(self, request: Request) -> Principal:
        runtime = await get_runtime(request)
        authorization = request.headers.get("authorization")
        _note_target(request)
        return await require(runtime, authorization, self.resource, self.action, doing=self.doing)


@dataclass(frozen=True, slots=True)
class SignedIn(_CallerCheck):
    """The dependency of a route any signed-in caller may use (``GET /me/can``): on a
    :class:`PermissionFirstRoute` the sign-in is checked before the query is validated, so an anonymous
    caller is answered 401 (and recorded as ``auth.refused`` naming ``asked``) whatever the query holds."""

    asked: str

    async def check(self, request: Request) -> Principal:
        runtime = await get_runtime(request)
        _note_target(request)
        return await signed_in(runtime, request.headers.get("authorization"), self.asked)


class PermissionFirstRoute(APIRoute):
    """An API route whose :class:`Permitted` (or :class:`SignedIn`) dependency runs before anything else:
    before the body is read or validated, before any other parameter. FastAPI validates the body and the
    query before the endpoint runs (and refuses unparsable JSON before any dependency), so a check inside
    the endpoint would answer a cadre's malformed request with 422 and leave no record of the refused
    attempt (PIPL Art. 56: the attempt is what a supervisor needs to see). The permission is published in
    the OpenAPI document as ``x-permission``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        permitted = self.caller_check()
        if isinstance(permitted, Permitted):
            self.openapi_extra = {**(self.openapi_extra or {}), "x-permission": permitted.permission}

    def caller_check(self) -> _CallerCheck | None:
        """The route's :class:`Permitted` or :class:`SignedIn` dependency, if it has one."""
        return next((d.call for d in self.dependant.dependencies if isinstance(d.call, _CallerCheck)), None)

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()
        permitted = self.caller_check()
        if permitted is None:
            return handler
        taken = self.query_names()
        words = getattr(self.endpoint, _OWN_WORDS, None) or _unknown_query_words(taken)

        async def permission_first(request: Request) -> Response:
            request.scope[_PERMITTED_PRINCIPAL] = await permitted.check(request)
            if not taken.issuperset(request.query_params.keys()):
                # After the caller check (an anonymous caller is answered 401 and recorded whatever the
                # query holds), before anything is done: FastAPI ignores a parameter the endpoint does not
                # declare, so a misspelt one (old_size= for first=) was answered for the defaults.
                raise InvalidRequest(*words, code="unknown_parameter")
            response: Response = await handler(request)
            return response

        return permission_first

    def query_names(self) -> frozenset[str]:
        """The query parameters the endpoint and its dependencies declare, by the names a caller writes."""
        names: set[str] = set()
        pending = [self.dependant]
        while pending:
            dependant = pending.pop()
            names.update(param.alias for param in dependant.query_params)
            pending.extend(dependant.dependencies)
        return frozenset(names)


#: An endpoint's own words for a query parameter it does not take (:func:`own_words_for_unknown_query`).
_OWN_WORDS = "_grassroots_unknown_query_words"
_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])


def own_words_for_unknown_query(zh: str, en: str) -> Callable[[_Endpoint], _Endpoint]:
    """Give an endpoint its own refusal of a query parameter it does not take, in place of the generic
    one (:meth:`PermissionFirstRoute.get_route_handler`), where more can be said of why."""

    def mark(endpoint: _Endpoint) -> _Endpoint:
        setattr(endpoint, _OWN_WORDS, (zh, en))
        return endpoint

    return mark


def _unknown_query_words(taken: frozenset[str]) -> tuple[str, str]:
    """The refusal names what the endpoint takes, never what was sent (a typed value may be anything)."""
    if not taken:
        return (
            "本接口不接受任何查询参数，本次未作处理。请去掉问号（?）及其后的内容后重试。",
            "This endpoint takes no query parameters; nothing was done. Remove the ? and what follows it, "
            "and retry.",
        )
    listed = sorted(taken)
    return (
        f"查询参数中有本接口不接受的参数，本次未作处理。本接口只接受 {'、'.join(listed)}；"
        "请核对参数名的拼写，去掉其他参数后重试。",
        f"The query has a parameter this endpoint does not take; nothing was done. It takes only "
        f"{', '.join(listed)}: check the spelling of the names, remove the others and retry.",
    )


def asked_for(scope: Scope) -> str:
    """What a request asked, as its refusal records it, found before routing (``RefuseAnonymousBody``
    refuses before anything reads the body): what its route's caller check names (:class:`Permitted`'s
    permission, published as ``x-permission``; :class:`SignedIn`'s ``asked``), or else the operation's id;
    never the path as sent (an id in it may be anything). Each route matches the path itself
    (``BaseRoute.matches``, its convertors included), in the order FastAPI routes them: a table of the
    OpenAPI paths read ``{user_id}`` as one segment, so a ``{user_id:path}`` holding ``/`` (an
    issuer-qualified user id) matched nothing and the refusal was recorded as asking "unknown"."""
    app = scope.get("app")
    for route in app.api_routes if isinstance(app, GatewayApp) else ():
        if route.matches(scope)[0] is Match.FULL:
            check = route.caller_check() if isinstance(route, PermissionFirstRoute) else None
            if isinstance(check, Permitted):
                return check.permission
            return check.asked if isinstance(check, SignedIn) else operation_id(route)
    return "unknown"


async def signed_in(runtime: Runtime, authorization: str | None, permission: str) -> Principal:
    """The caller's validated identity (401 otherwise) for an administrative endpoint; ``permission``
    names what was asked (``"approve grants"``). A failed sign-in is recorded as ``auth.refused`` and a
    missing permission (in :func:`require`) as ``admin.refused``, so supervisors see attempts that never
    got past the door, as they see refused data reads (PIPL Art. 56; issue 5's failed logins)."""
    _ASKED.set(permission)
    try:
        return await authenticate(runtime, authorization)
    except Unauthenticated as refused:
        runtime.refuse_flood(request_source(), refused, "auth.refused")
        await record_refusal(runtime, None, permission, refused)
        raise


async def record_refusal(
    runtime: Runtime,
    principal: Principal | None,
    permission: str,
    error: GatewayError,
    target: Mapping[str, str] | None = None,
) -> None:
    """Append the refusal's event and wait until it is durable; if the log cannot take it the caller gets
    503 instead of the refusal (fail closed, as on the data path). Only codes are recorded: the reason
    code, the permission's name, what it was asked of (``target``: ids such as ``grant_id``), who (from a
    valid token) and the request id, never the token or the request's body."""
    event = AuditEvent(
        kind="admin.refused" if principal is not None else "auth.refused",
        outcome=Outcome.REFUSED,
        actor=principal.user_id if principal is not None else ANONYMOUS_ACTOR,
        actor_org=principal.org if principal is not None else None,
        actor_roles=tuple(principal.roles) if principal is not None else (),
        reason=error.code,
        request_id=REQUEST_ID.get(),
        details={"permission": permission, **(target or {}), **refusal_details(error)},
    )
    await record_audit(runtime, event)


async def record_read(
    runtime: Runtime,
    principal: Principal,
    kind: str,
    details: Mapping[str, Any],
    *,
    outcome: Outcome = Outcome.OK,
    request_id: str | None = None,
) -> None:
    """One audit event for an administrative read that shows personal data, durable before the answer is
    sent (503 instead if the log cannot take it; GB/T 35273-2020 §11.2, PIPL Art. 56). ``details`` name
    what was read by ids only (``system_id``, ``complaint_id``), never the personal data shown; a
    ``None`` value is left out."""
    await record_audit(
        runtime,
        AuditEvent(
            kind=kind,
            outcome=outcome,
            actor=principal.user_id,
            actor_org=principal.org,
            actor_roles=tuple(principal.roles),
            request_id=request_id or REQUEST_ID.get(),
            details={k: v for k, v in details.items() if v is not None},
        ),
    )


class OutOfReach(NotFound):
    """404 for a record that exists outside the caller's reach, answered exactly as one that does not
    exist (no existence leak); ``target`` (the stored id, never the text typed) is kept for the refused
    read's audit event only and never reaches the answer."""

    def __init__(self, message_zh: str, message_en: str, *, code: str, target: Mapping[str, str]) -> None:
        super().__init__(message_zh, message_en, code=code)
        self.target = dict(target)


@asynccontextmanager
async def refused_reads(runtime: Runtime, principal: Principal) -> AsyncIterator[None]:
    """Around a read of one record by its id: a 404 is recorded as ``admin.refused`` (the permission
    asked, the reason code; the record's id only if it exists, :class:`OutOfReach`) before it is
    answered, as a refused act is (:func:`unit_of_work`). Someone trying the ids of another department's
    systems or grants is what supervision looks for."""
    try:
        yield
    except GatewayError as refused:
        if refused.status_code == 404:
            target = refused.target if isinstance(refused, OutOfReach) else None
            await record_refusal(runtime, principal, _ASKED.get() or "unknown", refused, target)
        raise


#: The request conflicts with the present state (HTTP 409): it may succeed once that state has changed.
_CONFLICTS = (
    InvalidTransitionError,
    RequestAlreadyWaitingError,
    IllegalTransition,
    RegistrationExists,
    AlreadyVoted,
    AdmissionConflict,
)


def library_error(exc: Exception) -> GatewayError | None:
    """Map a library's domain error to the gateway's error shape (None: not a domain error)."""
    if isinstance(exc, GrantNotFoundError | RegistrationNotFound | UnknownDatasetError):
        status = 404
    elif isinstance(exc, SeparationOfDutiesError | SeparationOfDuties):
        status = 403
    elif isinstance(exc, _CONFLICTS):
        status = 409
    elif isinstance(exc, GrantError | AdmissionError | MaskingError):
        status = 422
    else:
        return None
    code = getattr(exc, "code", None) or type(exc).__name__
    return GatewayError(
        str(getattr(exc, "message_zh", "")) or "请求无法办理。",
        str(getattr(exc, "message_en", "")) or "The request cannot be carried out.",
        code=str(code),
        status_code=status,
        # The request already waiting, by its id, as the data path's refusal names it.
        extra={"pending_grant": exc.pending_grant} if isinstance(exc, RequestAlreadyWaitingError) else None,
    )


@contextmanager
def domain_errors() -> Iterator[None]:
    try:
        yield
    except GatewayError:
        raise
    except Exception as exc:
        mapped = library_error(exc)
        if mapped is None:
            raise
        raise mapped from None


@dataclass
class UnitOfWork:
    session: Session
    principal: Principal | None
    request_id: str | None
    changes: list[Mapping[str, Any]] = field(default_factory=list)
    events: list[AuditEvent] = field(default_factory=list)

    def record(self, change: Mapping[str, Any]) -> None:
        """Queue a library change event; it becomes one audit event before the commit."""
        self.changes.append(change)

    def record_event(self, event: AuditEvent) -> None:
        self.events.append(event)

    async def run(self, fn: Callable[[Session], T]) -> T:
        """Run blocking library/database work off the event loop, mapping domain errors."""
        with domain_errors():
            return await asyncio.to_thread(fn, self.session)


def _append_in_session(session: Session, events: Sequence[AuditEvent]) -> None:
    """Write the audit events in the session's own transaction: the change and its record (PIPL Art. 56)
    commit together or not at all. (A separate appender transaction would also deadlock on SQLite, whose
    single write lock this session already holds.)"""
    if not events:
        return
    try:
        AuditLog(session.get_bind().engine).append_within(session.connection(), events)
    except AuditUnavailable:
        _log.error("audit append in the unit of work failed; refusing the change")
        raise AuditLogUnavailable() from None


def _begin(session: Session) -> None:
    if session.get_bind().dialect.name == "sqlite":
        # Hold the write lock from the start: never upgrade a read lock under contention (SQLITE_BUSY).
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")


@asynccontextmanager
async def unit_of_work(
    runtime: Runtime, principal: Principal | None, request_id: str | None = None
) -> AsyncIterator[UnitOfWork]:
    try:
        async with _transaction(runtime, principal, request_id) as uow:
            yield uow
    except GatewayError as refused:
        # A signed-in, permitted caller's act refused by a rule of the domain (403 separation of duties,
        # 404, 409, 422: the libraries' errors as library_error maps them, or the route's own): recorded
        # after the rollback, in its own durable append, so the attempt is on record though the act is not.
        # Not a 5xx (the gateway failed, not the act). A 404's id matched nothing the caller may see: what
        # was typed is not recorded.
        if principal is not None and 400 <= refused.status_code < 500:
            target = _refused_target(refused)
            await record_refusal(runtime, principal, _ASKED.get() or "unknown", refused, target)
        raise


def _refused_target(refused: GatewayError) -> Mapping[str, str] | None:
    """What a refused act's event names: the ids of its path (none for a 404: what was typed matched
    nothing the caller may see), and the request a duplicate was refused for (``pending_grant``)."""
    if refused.status_code == 404:
        return None
    pending = refused.extra.get("pending_grant")
    if not isinstance(pending, str):
        return _TARGET.get()
    return {**(_TARGET.get() or {}), "pending_grant": pending}


@asynccontextmanager
async def _transaction(
    runtime: Runtime, principal: Principal | None, request_id: str | None
) -> AsyncIterator[UnitOfWork]:
    session = runtime.sessions()
    uow = UnitOfWork(session=session, principal=principal, request_id=request_id)
    try:
        await asyncio.to_thread(_begin, session)
        with domain_errors():
            yield uow
        events = [
            with_request_source(event)
            for event in [
                change_event(
                    change,
                    actor_org=principal.org if principal else None,
                    actor_roles=principal.roles if principal else (),
                    request_id=request_id,
                )
                for change in uow.changes
            ]
            + uow.events
        ]
        await asyncio.to_thread(_append_in_session, session, events)
        await asyncio.to_thread(session.commit)
    except BaseException:
        await asyncio.to_thread(session.rollback)
        raise
    finally:
        await asyncio.to_thread(session.close)
    # Changes other processes must see (grants, registry status) moved their version rows in this
    # transaction; refresh this process at once rather than at the next poll.
    await asyncio.to_thread(runtime.refresh)
