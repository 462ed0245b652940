"""Scenario grants over HTTP: the catalog a cadre requests from, the grant lifecycle, break-glass.

Every transition goes through ``policies.GrantService`` inside a unit of work, so it is one audit event
(``grant.*``, ``break_glass.*``) durably written before the commit; the commit moves the grants version
row, and every gateway process picks the change up on its next poll (this one at once).

Visibility (404 rather than 403 where a 403 would reveal that a grant exists): a steward sees grants
over their department's data, an officer or cadre the grants of their own jurisdiction, a supervisor or
auditor those of her organisation's subtree (as her audit events and cases: a township's, never a
neighbour's; the district's and the root code's, every grant of theirs).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, time
from typing import Annotated, Any, Final, TypeVar

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from gateway.admin_support import (
    ORG_SCHEMA,
    OutOfReach,
    PermissionFirstRoute,
    Permitted,
    StrictBody,
    checked_org,
    domain_errors,
    refused_reads,
    signed_in,
    unit_of_work,
)
from gateway.app import get_runtime, request_id_of
from gateway.auth.oidc import Principal
from gateway.errors import InvalidRequest, NotFound
from gateway.free_text import NOT_BLANK, TEXT_MAX, refuse_personal_data, text_schema
from gateway.pipeline import subject_of
from gateway.routes.admission_api import department_names
from gateway.routes.supervision import division_names
from gateway.runtime import Runtime
from gateway.time_inputs import SinceTime, UntilTime
from policies import (
    BreakGlassReview,
    GrantRepository,
    GrantService,
    GrantStatus,
    RenewalReminder,
    Scenario,
    ScenarioCatalog,
    ScenarioGrant,
    Subject,
    covers,
)
from policies.engine import reads_only_grids
from policies.errors import ReviewNotFoundError, SeparationOfDutiesError
from policies.grants import BREAK_GLASS_MAX_HOURS, GRANT_STATUS_ZH
from policies.scenarios import CHINA_STANDARD_TIME

router = APIRouter(prefix="/api/v1", tags=["grants"], route_class=PermissionFirstRoute)

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
AuthHeader = Annotated[str | None, Header()]

T = TypeVar("T")


# -- helpers used by the policy routes too ----------------------------------------------------------


def checked_reason(text: str, *, required: bool = True, name: str = "reason") -> str:
    """Reasons go into the audit log: never personal data there (PIPL art. 51 security measures)."""
    text = text.strip()
    if required and NOT_BLANK.search(text) is None:
        raise InvalidRequest(
            f"请填写{_ZH_NAMES.get(name, name)}。", f"{name} is required.", code="missing_reason"
        )
    if len(text) > TEXT_MAX:
        raise InvalidRequest(
            f"{_ZH_NAMES.get(name, name)}最多 {TEXT_MAX} 个字。",
            f"{name} is at most {TEXT_MAX} characters.",
            code="reason_too_long",
        )
    refuse_personal_data(text, _ZH_NAMES.get(name, name), name, code="personal_data_in_reason")
    return text


_ZH_NAMES = {"reason": "理由", "note": "复核意见"}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def scenario_json(
    scenario: Scenario,
    catalog: ScenarioCatalog,
    roles: Sequence[str] = (),
    kept_by_grid: Callable[[str], bool] | None = None,
) -> dict[str, Any]:
    """``usable_by_me``: the caller's role does this work and, for one who reads only her micro-grids (a
    grid worker), some dataset of the scenario is kept by grid (``kept_by_grid``): ELDERLY_VISIT reads only
    ``residents``, which the data path refuses to a grid scope, yet was listed usable by her."""
    usable = bool(set(roles).intersection(scenario.roles_allowed))
    if usable and kept_by_grid is not None and reads_only_grids(roles):
        usable = any(kept_by_grid(name) for name in scenario.datasets)
    sensitive = sorted(
        {
            f"{name}.{f}"
            for name, fields in scenario.datasets.items()
            if (info := catalog.dataset(name)) is not None
            for f in fields
            if f in info.second_approval_fields
        }
    )
    return {
        "code": scenario.code,
        "name_zh": scenario.name_zh,
        "name_en": scenario.name_en,
        "purpose": scenario.purpose,
        "legal_basis": scenario.legal_basis,
        "datasets": {name: list(fields) for name, fields in scenario.datasets.items()},
        "owner_departments": sorted(
            {info.owner_department for name in scenario.datasets if (info := catalog.dataset(name))}
        ),
        "masking_profile": scenario.masking_profile,
        "roles_allowed": list(scenario.roles_allowed),
        "max_records_per_request": scenario.max_records_per_request,
        "daily_quota_per_user": scenario.daily_quota_per_user,
        "hours_allowed": list(scenario.hours_allowed),
        "default_validity_days": scenario.default_validity_days,
        "max_validity_days": scenario.max_validity_days,
        "second_approval_fields": sensitive,
        "usable_by_me": usable,
    }


def grant_json(
    grant: ScenarioGrant, org_names: Mapping[str, str], now: datetime | None = None
) -> dict[str, Any]:
    """``org_names`` (division code -> name): a steward reads which village asks (东风村村民委员会) beside
    ``org_scope``, as ``org_name`` (null where no name is configured). The organisation's name only: the
    requester stays a user id."""
    body = grant.to_dict()
    body["org_name"] = org_names.get(grant.org_scope)
    body["created_at"] = _iso(grant.created_at)
    body["updated_at"] = _iso(grant.updated_at)
    body["active"] = grant.is_active(now or datetime.now(UTC))
    body["status_zh"] = GRANT_STATUS_ZH[grant.status]
    return body


def _reminder_json(
    reminder: RenewalReminder, org_names: Mapping[str, str], renewal: ScenarioGrant | None = None
) -> dict[str, Any]:
    """``renewal``: the grant's renewal already waiting for its second steward. The step left is that
    approval (renewing again is refused), so the reminder names it."""
    names = department_names()
    body: dict[str, Any] = {
        "grant_id": reminder.grant_id,
        "scenario": reminder.scenario,
        "org_scope": reminder.org_scope,
        "org_name": org_names.get(reminder.org_scope),
        "valid_until": reminder.valid_until.isoformat(),
        "days_left": reminder.days_left,
        "must_act": {
            "role": reminder.must_act_role,
            "department": reminder.must_act_department,
            # A steward reads 区民政局, not civil_affairs (a grant over two departments' data names both).
            "department_name_zh": "、".join(
                names.get(code, code) for code in reminder.must_act_department.split(",")
            ),
        },
        "requested_by": reminder.requested_by,
    }
    if renewal is not None:
        body["renewal_awaiting_second_approval"] = renewal.grant_id
        body["must_act"] = {**body["must_act"], "action": "second_approval", "grant_id": renewal.grant_id}
    return body


def _review_json(
    review: BreakGlassReview,
    grant: ScenarioGrant | None,
    org_names: Mapping[str, str],
    scenarios: ScenarioCatalog,
) -> dict[str, Any]:
    """A break-glass post-review, with its grant's scenario and organisations named as well as coded: the
    level above reads 东风村村民委员会 and 低保年度复核, not 310151101201 and DIBAO_REVIEW."""
    scenario = scenarios.get(grant.scenario) if grant else None
    return {
        "review_id": review.review_id,
        "grant_id": review.grant_id,
        "invoked_by": review.invoked_by,
        "notify_org": review.notify_org,
        "notify_org_name": org_names.get(review.notify_org),
        "reason": review.reason,
        "status": review.status,
        "opened_at": review.opened_at.isoformat(),
        "closed_by": review.closed_by,
        "closed_at": _iso(review.closed_at),
        "review_note": review.review_note,
        "scenario": grant.scenario if grant else None,
        "scenario_name": scenario.name_zh if scenario else None,
        "scenario_name_en": scenario.name_en if scenario else None,
        "org_scope": grant.org_scope if grant else None,
        "org_name": org_names.get(grant.org_scope) if grant else None,
        "valid_until": _iso(grant.valid_until) if grant else None,
    }


async def read_only(runtime: Runtime, fn: Callable[[Session], T]) -> T:
    """Run a query in its own session off the event loop; library errors map to the error shape."""

    def run() -> T:
        with runtime.sessions() as session:
            return fn(session)

    with domain_errors():
        return await asyncio.to_thread(run)


def _service(runtime: Runtime, session: Session) -> GrantService:
    engine = runtime.policy()
    return GrantService(GrantRepository(session), engine.scenarios, engine.permissions)


_GRANT_NOT_FOUND: Final = ("找不到该授权，或它不在您的管辖范围内。", "No such grant within your reach.")


def _visible_or_404(service: GrantService, subject: Subject, grant_id: str) -> ScenarioGrant:
    grant = service.repository.get(grant_id)
    if grant is None:
        raise NotFound(*_GRANT_NOT_FOUND, code="grant_not_found")
    if not service.visible_to(subject, grant):
        # The same answer; a refused read's audit event names the grant (a stored id, not what was typed).
        raise OutOfReach(*_GRANT_NOT_FOUND, code="grant_not_found", target={"grant_id": grant.grant_id})
    return grant


# -- scenario catalog --------------------------------------------------------------------------------


@router.get("/scenarios")
async def list_scenarios(runtime: RuntimeDep, authorization: AuthHeader = None) -> dict[str, Any]:
    """The scenario catalog: purpose, legal basis, exact fields, limits, who may use each."""
    principal = await signed_in(runtime, authorization, "read scenarios")
    catalog = runtime.policy().scenarios
    kept = runtime.kept_by_grid
    return {"items": [scenario_json(s, catalog, principal.roles, kept) for s in catalog]}


@router.get("/scenarios/{code}")
async def get_scenario(code: str, runtime: RuntimeDep, authorization: AuthHeader = None) -> dict[str, Any]:
    principal = await signed_in(runtime, authorization, "read scenarios")
    catalog = runtime.policy().scenarios
    scenario = catalog.get(code)
    if scenario is None:
        # The code from the path is not echoed (it may be anything a user typed, a phone number included).
        raise NotFound(
            "没有这个使用场景，请核对场景代码；全部场景见 GET /api/v1/scenarios"
            "（命令行：grassroots grants scenarios）。",
            "There is no such scenario. Check the scenario code; GET /api/v1/scenarios "
            "(command line: grassroots grants scenarios) lists them.",
            code="unknown_scenario",
        )
    return scenario_json(scenario, catalog, principal.roles, runtime.kept_by_grid)


# -- grant lifecycle -----------------------------------------------------------------------------------


class GrantRequestBody(BaseModel):
    # A key the body does not define is refused, not ignored: `{"org": ...}` for `org_scope` would
    # otherwise request the grant for the caller's whole organisation (a township, not its village).
    model_config = ConfigDict(extra="forbid")

    scenario: str = Field(max_length=64)
    org_scope: str | None = Field(
        None, description="division code; default: the caller's organisation", json_schema_extra=ORG_SCHEMA
    )
    datasets: dict[str, list[str]] | None = Field(
        None, description="narrow the scenario's fields: {dataset: [field, ...]}; default all it lists"
    )
    reason: str = Field(max_length=2000, json_schema_extra=text_schema(required=True))


class ApproveBody(BaseModel):
    # A misspelt `valid_until` would otherwise approve for the scenario's whole default validity.
    model_config = ConfigDict(extra="forbid")

    # A steward writes days (gateway.time_inputs): `valid_until` 2026-12-31 runs through the whole of that
    # Beijing-time day (the grant lapses at the next midnight: its window is half-open); `valid_from` a day
    # starts at its midnight, today's at the approval (a grant covers nothing before it is approved).
    valid_from: SinceTime | None = Field(
        None, description="a day (Beijing time; today: now) or a time with its offset; default: now"
    )
    valid_until: UntilTime | None = Field(
        None,
        description="a day, included (Beijing time), or a time with its offset, exclusive; "
        "default: the scenario's validity",
    )

    def start(self, now: datetime) -> datetime | None:
        """``valid_from`` as the service takes it, in UTC like every stored time: today given as a day
        means from now, not from a midnight already passed (which the service would refuse as backdating)."""
        start = self.valid_from
        if start is None or (start <= now and start == _beijing_midnight(now)):
            return None
        return start.astimezone(UTC)

    def end(self) -> datetime | None:
        """``valid_until`` in UTC (a day's end is 16:00 UTC), as the grant is stored and read back."""
        return None if self.valid_until is None else self.valid_until.astimezone(UTC)


def _beijing_midnight(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(CHINA_STANDARD_TIME).date(), time(), CHINA_STANDARD_TIME)


class ReasonBody(StrictBody):
    reason: str = Field(max_length=2000, json_schema_extra=text_schema(required=True))


class RenewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grant_ids: list[str] = Field(min_length=1, max_length=1000)
    # A sanity bound only: the scenario's max_validity_days is the limit (422 validity_over_maximum).
    validity_days: int | None = Field(None, gt=0, le=3650)
    stagger_window_days: int = Field(14, ge=0, le=90)


@router.post("/grants", status_code=201)
async def request_grant(
    principal: Annotated[Principal, Depends(Permitted("grants", "request"))],
    body: GrantRequestBody,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """A township or village officer asks for a grant for an organisation of their jurisdiction."""
    scope = checked_org(body.org_scope or principal.org)
    reason = checked_reason(body.reason)
    now = datetime.now(UTC)
    subject = subject_of(principal)

    def file(session: Session) -> tuple[ScenarioGrant, dict[str, Any]]:
        service = _service(runtime, session)
        spec = service.scenarios.get(body.scenario)
        if spec is not None and reads_only_grids(subject.roles):
            _refuse_data_beyond_grids(runtime, spec, body.datasets)
        return service.request(subject, body.scenario, scope, body.datasets, reason, now)

    async with unit_of_work(runtime, principal, request_id_of(request)) as uow:
        grant, change = await uow.run(file)
        uow.record(change)
    return grant_json(grant, await asyncio.to_thread(division_names, runtime), now)


def _refuse_data_beyond_grids(
    runtime: Runtime, spec: Scenario, datasets: Mapping[str, Sequence[str]] | None
) -> None:
    """A grid worker reads only her micro-grids, so a dataset kept without a grid code (residents) serves
    her nothing (403 grid_scope_unsupported on every read); she requested it for her whole village all the
    same. Refused as a request for data her own role cannot read is ("never more than one holds")."""
    kept = runtime.kept_by_grid
    names = list(spec.datasets) if datasets is None else list(datasets)
    beyond = [name for name in names if name in spec.datasets and not kept(name)]
    if beyond:
        raise SeparationOfDutiesError(
            f"网格员只能查看所分配微网格内的数据；「{spec.name_zh}」中的 {'、'.join(beyond)} 未按微网格划分，"
            "您无法查看，也不能为本单位申请，本次未提出申请。请由村（居）委会干部申请。",
            "a grid worker reads only her assigned micro-grids; "
            f"{', '.join(beyond)} of \u201c{spec.name_en}\u201d ({spec.code}) is not kept by micro-grid, so "
            "you cannot read it nor "
            "request it for your organisation; nothing was requested. Ask a village committee cadre to "
            "request it.",
        )


@router.get("/grants")
async def list_grants(
    principal: Annotated[Principal, Depends(Permitted("grants", "read"))],
    runtime: RuntimeDep,
    status: Annotated[str | None, Query(json_schema_extra={"enum": [s.value for s in GrantStatus]})] = None,
    scenario: Annotated[str | None, Query(max_length=64)] = None,
    org: Annotated[
        str | None,
        Query(description="grants that apply to or lie within this code", json_schema_extra=ORG_SCHEMA),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, description="skip this many of the newest; see next_offset")] = 0,
    awaiting_me: Annotated[
        bool,
        Query(
            description="only the grants waiting on your decision: requests, and grants awaiting a second "
            "steward that you did not approve first, over your department's data"
        ),
    ] = False,
) -> dict[str, Any]:
    """Grants the caller may see (a steward: over her department's data; an officer or cadre: her
    jurisdiction; a supervisor or auditor: her organisation's subtree), newest first, ``limit`` at a time
    from ``offset`` (``next_offset``: the next page's, null on the last); ``awaiting_me``: a steward's work
    list."""
    if awaiting_me and not runtime.policy().permissions.is_allowed(principal.roles, "grants", "approve"):
        raise InvalidRequest(
            "只有数据管理员有待审批的授权：您的岗位不审批授权，请去掉 --awaiting-me（awaiting_me）后再列出。",
            "Only a data steward has grants waiting on her decision: your role does not approve grants; "
            "list without --awaiting-me (awaiting_me).",
            code="not_an_approver",
        )
    wanted_status: GrantStatus | None = None
    if status:
        try:
            wanted_status = GrantStatus(status)
        except ValueError:
            raise InvalidRequest(
                f"status 取值有误：只能是 {'、'.join(s.value for s in GrantStatus)} 之一。",
                f"status must be one of {', '.join(s.value for s in GrantStatus)}.",
                code="invalid_status",
            ) from None
    catalog = runtime.policy().scenarios
    if scenario is not None and catalog.get(scenario) is None:
        # A typo (DIBAO_REVEIW) answered an empty list, which reads as "no grants": named, not echoed.
        codes = sorted(s.code for s in catalog)
        raise InvalidRequest(
            f"scenario 不是已有的使用场景代码，请核对：可用的有 {'、'.join(codes)}"
            "（说明见 grassroots grants scenarios）。",
            f"scenario is not a scenario code; the codes are {', '.join(codes)} "
            "(described by grassroots grants scenarios).",
            code="unknown_scenario",
        )
    org_code = checked_org(org, "org") if org else None
    subject = subject_of(principal)
    now = datetime.now(UTC)

    def query(session: Session) -> list[ScenarioGrant]:
        service = _service(runtime, session)
        found = []
        for grant in service.repository.list_grants(status=wanted_status, scenario=scenario):
            if not service.visible_to(subject, grant):
                continue
            if awaiting_me and not service.awaits_decision_by(subject, grant):
                continue
            if org_code is not None and not (
                covers(org_code, grant.org_scope) or covers(grant.org_scope, org_code)
            ):
                continue
            found.append(grant)
        return found

    grants = await read_only(runtime, query)
    newest = grants[::-1]
    page = newest[offset : offset + limit]
    more = offset + limit < len(newest)
    orgs = await asyncio.to_thread(division_names, runtime)
    return {
        "items": [grant_json(g, orgs, now) for g in page],
        "total": len(grants),
        "next_offset": offset + limit if more else None,
    }


@router.get("/grants/reminders")
async def renewal_reminders(
    principal: Annotated[Principal, Depends(Permitted("grants", "read"))],
    runtime: RuntimeDep,
    within_days: Annotated[int, Query(ge=1, le=365)] = 14,
) -> dict[str, Any]:
    """Grants lapsing within ``within_days``, each naming who must act (the owning department's steward)."""
    subject = subject_of(principal)
    now = datetime.now(UTC)
    orgs = await asyncio.to_thread(division_names, runtime)

    def query(session: Session) -> list[dict[str, Any]]:
        service = _service(runtime, session)
        out = []
        for reminder in service.reminders(now, within_days):
            grant = service.repository.get(reminder.grant_id)
            if grant is not None and service.visible_to(subject, grant):
                waiting = service.repository.pending_renewals(reminder.grant_id)
                out.append(_reminder_json(reminder, orgs, waiting[0] if waiting else None))
        return out

    return {"items": await read_only(runtime, query), "within_days": within_days}


@router.post("/grants/renew")
async def renew_grants(
    principal: Annotated[Principal, Depends(Permitted("grants", "renew"))],
    body: RenewBody,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Renew many grants at once, expiry staggered over ``stagger_window_days``. Grants with the most
    sensitive fields wait for a second steward (``POST /grants/{id}/approve``); the old one stays in force."""
    now = datetime.now(UTC)
    ids = list(dict.fromkeys(body.grant_ids))
    async with unit_of_work(runtime, principal, request_id_of(request)) as uow:

        def renew(session: Session) -> tuple[list[ScenarioGrant], list[dict[str, Any]]]:
            service = _service(runtime, session)
            for position, grant_id in enumerate(ids, 1):
                try:
                    _visible_or_404(service, subject_of(principal), grant_id)
                except NotFound as missing:
                    if len(ids) > 1:  # which one, by its place (the id typed is not repeated)
                        missing.message_zh = f"第 {position} 个授权：{missing.message_zh}本批均未续期。"
                        missing.message_en = f"grant {position}: {missing.message_en} Nothing was renewed."
                    raise
            return service.renew(
                ids,
                subject_of(principal),
                now,
                validity_days=body.validity_days,
                stagger_window_days=body.stagger_window_days,
                defer_second_approval=True,
            )

        renewed, changes = await uow.run(renew)
        for change in changes:
            uow.record(change)
    orgs = await asyncio.to_thread(division_names, runtime)
    return {
        "renewed": [grant_json(g, orgs, now) for g in renewed if g.status is GrantStatus.APPROVED],
        "awaiting_second_approval": [
            grant_json(g, orgs, now) for g in renewed if g.status is GrantStatus.AWAITING_SECOND_APPROVAL
        ],
    }


@router.post("/grants/expire-due")
async def expire_due(
    principal: Annotated[Principal, Depends(Permitted("grants", "expire"))],
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """The expiry sweep (a platform job). Decisions never wait for it: a lapsed grant is refused by time."""
    now = datetime.now(UTC)
    async with unit_of_work(runtime, principal, request_id_of(request)) as uow:
        changes = await uow.run(lambda s: _service(runtime, s).expire_due(now, principal.user_id))
        for change in changes:
            uow.record(change)
    return {"expired": [c["grant_id"] for c in changes]}


@router.get("/grants/{grant_id}")
async def get_grant(
    principal: Annotated[Principal, Depends(Permitted("grants", "read"))], grant_id: str, runtime: RuntimeDep
) -> dict[str, Any]:
    """One grant. Its view names officials by user id and a reason refused if it holds personal data: the
    read is not recorded; a 404 (no such grant, or one out of reach) is, as ``admin.refused``."""
    async with refused_reads(runtime, principal):
        grant = await read_only(
            runtime, lambda s: _visible_or_404(_service(runtime, s), subject_of(principal), grant_id)
        )
    return grant_json(grant, await asyncio.to_thread(division_names, runtime))


async def _transition(
    runtime: Runtime,
    request: Request,
    principal: Principal,
    grant_id: str,
    act: Any,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    async with unit_of_work(runtime, principal, request_id_of(request)) as uow:

        def run(session: Session) -> tuple[ScenarioGrant, list[Mapping[str, Any]]]:
            service = _service(runtime, session)
            _visible_or_404(service, subject_of(principal), grant_id)
            grant, change = act(service, now)
            return grant, [change, *service.take_events()]

        grant, changes = await uow.run(run)
        for change in changes:
            uow.record(change)
    return grant_json(grant, await asyncio.to_thread(division_names, runtime), now)


@router.post("/grants/{grant_id}/approve")
async def approve_grant(
    principal: Annotated[Principal, Depends(Permitted("grants", "approve"))],
    grant_id: str,
    request: Request,
    runtime: RuntimeDep,
    body: ApproveBody | None = None,
) -> dict[str, Any]:
    """First approval by a steward of the owning department; a grant with the most sensitive fields then
    awaits a second, different steward's approval. Nobody approves their own request."""
    window = body or ApproveBody()
    return await _transition(
        runtime,
        request,
        principal,
        grant_id,
        lambda service, now: service.approve(
            grant_id,
            subject_of(principal),
            now,
            valid_from=window.start(now),
            valid_until=window.end(),
        ),
    )


@router.post("/grants/{grant_id}/reject")
async def reject_grant(
    principal: Annotated[Principal, Depends(Permitted("grants", "reject"))],
    grant_id: str,
    body: ReasonBody,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    reason = checked_reason(body.reason)
    return await _transition(
        runtime,
        request,
        principal,
        grant_id,
        lambda service, now: service.reject(grant_id, subject_of(principal), reason, now),
    )


@router.post("/grants/{grant_id}/revoke")
async def revoke_grant(
    principal: Annotated[Principal, Depends(Permitted("grants", "revoke"))],
    grant_id: str,
    body: ReasonBody,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Effective on the next request in every process: the commit moves the grants version row."""
    reason = checked_reason(body.reason)
    return await _transition(
        runtime,
        request,
        principal,
        grant_id,
        lambda service, now: service.revoke(grant_id, subject_of(principal), reason, now),
    )


# -- break-glass ---------------------------------------------------------------------------------------


class BreakGlassBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scenario: str = Field(max_length=64)
    reason: str = Field(max_length=2000, json_schema_extra=text_schema(required=True))
    # The service refuses hours outside 1..BREAK_GLASS_MAX_HOURS (policies.grants); documented, not checked
    # here, so the refusal keeps its own words.
    hours: int = Field(
        2,
        description=f"hard limit, at most {BREAK_GLASS_MAX_HOURS}",
        json_schema_extra={"minimum": 1, "maximum": BREAK_GLASS_MAX_HOURS},
    )
    org_scope: str | None = Field(None, json_schema_extra=ORG_SCHEMA)


class CloseReviewBody(StrictBody):
    note: str = Field(max_length=2000, json_schema_extra=text_schema(required=True))


@router.post("/break-glass", status_code=201)
async def break_glass(
    principal: Annotated[Principal, Depends(Permitted("break_glass", "invoke"))],
    body: BreakGlassBody,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Emergency access: effective at once, hard limit in hours, notice to the level above, and a
    post-review item a supervisor must close."""
    reason = checked_reason(body.reason)
    scope = checked_org(body.org_scope) if body.org_scope else None
    now = datetime.now(UTC)
    async with unit_of_work(runtime, principal, request_id_of(request)) as uow:
        grant, review, changes = await uow.run(
            lambda s: _service(runtime, s).break_glass(
                subject_of(principal), body.scenario, reason, now, hours=body.hours, org_scope=scope
            )
        )
        for change in changes:
            uow.record(change)
    orgs = await asyncio.to_thread(division_names, runtime)
    review_json = _review_json(review, grant, orgs, runtime.policy().scenarios)
    return {"grant": grant_json(grant, orgs, now), "review": review_json}


async def _reviews(
    runtime: Runtime, principal: Principal, status: str | None, keep: Callable[..., bool]
) -> list[dict[str, Any]]:
    """The post-reviews ``keep(review, grant, service)`` keeps, with their grants."""

    def query(session: Session) -> list[dict[str, Any]]:
        service = _service(runtime, session)
        orgs, scenarios = division_names(runtime), runtime.policy().scenarios
        found = []
        for review in service.repository.reviews(status):
            grant = service.repository.get(review.grant_id)
            if keep(review, grant, service):
                found.append(_review_json(review, grant, orgs, scenarios))
        return found

    return await read_only(runtime, query)


def _supervises(principal: Principal) -> Callable[..., bool]:
    """Whether a supervisor may see a break-glass's review: when she may see its grant (her organisation's
    subtree, as her audit events and cases: a township's supervisor never a neighbour's)."""
    subject = subject_of(principal)

    def keep(review: BreakGlassReview, grant: ScenarioGrant | None, service: GrantService) -> bool:
        return grant is not None and service.visible_to(subject, grant)

    return keep


@router.get("/break-glass/notices")
async def break_glass_notices(
    principal: Annotated[Principal, Depends(Permitted("break_glass", "read"))], runtime: RuntimeDep
) -> dict[str, Any]:
    """Notices of emergency access for the level above: every break-glass whose notice went to an
    organisation within the caller's jurisdiction (a supervisor: those of her subtree too)."""
    supervised = _supervises(principal) if "supervisor" in principal.roles else None

    def keep(review: BreakGlassReview, grant: ScenarioGrant | None, service: GrantService) -> bool:
        if covers(principal.org, review.notify_org):
            return True
        return supervised is not None and supervised(review, grant, service)

    return {"items": await _reviews(runtime, principal, None, keep)}


@router.get("/break-glass/reviews")
async def break_glass_reviews(
    principal: Annotated[Principal, Depends(Permitted("break_glass", "close_review"))],
    runtime: RuntimeDep,
    status: Annotated[str, Query(pattern="^(open|closed|all)$")] = "open",
) -> dict[str, Any]:
    """Post-review items a supervisor must close (default: the open ones), of her organisation's subtree."""
    items = await _reviews(runtime, principal, None if status == "all" else status, _supervises(principal))
    return {"items": items}


@router.post("/break-glass/reviews/{review_id}/close")
async def close_break_glass_review(
    principal: Annotated[Principal, Depends(Permitted("break_glass", "close_review"))],
    review_id: str,
    body: CloseReviewBody,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """A supervisor, never the person who broke the glass, closes the post-review with a note."""
    note = checked_reason(body.note, name="note")
    now = datetime.now(UTC)
    async with unit_of_work(runtime, principal, request_id_of(request)) as uow:

        def close(session: Session) -> tuple[BreakGlassReview, dict[str, Any]]:
            service = _service(runtime, session)
            review = service.repository.get_review(review_id)
            if review is not None and not _supervises(principal)(
                review, service.repository.get(review.grant_id), service
            ):
                # Another township's review answers as one that does not exist (no 403 confirming it).
                raise ReviewNotFoundError()
            return service.close_review(review_id, subject_of(principal), note, now)

        review, change = await uow.run(close)
        uow.record(change)
        grant = await uow.run(lambda s: GrantRepository(s).get(review.grant_id))
    orgs = await asyncio.to_thread(division_names, runtime)
    return _review_json(review, grant, orgs, runtime.policy().scenarios)
