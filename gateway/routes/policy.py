"""Policy over HTTP: dry-run decisions, explanations, policy-as-code reload, and replay (what-if).

* ``POST /policy/decide`` and ``POST /policy/explain``: administrators ask "what would the gateway decide
  for this person, here, for this data and scenario" without anyone reading data.
* ``GET /policy/explain``: a cadre asks why *her own* request is refused, in words she understands.
* ``POST /policy/reload``: re-read model.conf, permissions.csv and scenarios.toml; all validate or the old
  policy stays (422 naming file and line); the reload is an audit event and moves the ``policy_files``
  version row, so every gateway process re-reads its files on its next poll.
* ``POST /policy/replay``: the recorded data requests of the last N days (from the audit log) decided
  under the current and a proposed policy (a grant, revocations, or new file contents); who would gain or
  lose access to what. A data steward replays only grants over her own department's data, against only
  the requests recorded on that data (the platform admin: anything); every replay, allowed or refused,
  is the audit event ``policy.replayed``.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import AuditEvent, Outcome
from audit.tables import AuditEventRow
from gateway.admin_support import (
    ORG_SCHEMA,
    PermissionFirstRoute,
    Permitted,
    SignedIn,
    StrictBody,
    checked_org,
    library_error,
    own_words_for_unknown_query,
    unit_of_work,
)
from gateway.app import REQUEST_ID, get_runtime, request_id_of
from gateway.auth.oidc import Principal
from gateway.errors import Forbidden, GatewayError, InvalidRequest
from gateway.pipeline import (
    UNKNOWN_DATASET,
    check_within_page_limit,
    record_audit,
    subject_of,
    told_of_waiting_request,
)
from gateway.routes.grants import read_only
from gateway.runtime import POLICY_FILES_VERSION, Runtime
from gateway.time_inputs import Moment
from grassroots_common.personal_data import personal_data_in
from policies import (
    ROLES,
    AccessRequest,
    Check,
    Decision,
    GrantRepository,
    GrantStatus,
    PermissionModel,
    PolicyEngine,
    PolicyFileError,
    Reason,
    ReplayChange,
    ScenarioCatalog,
    ScenarioGrant,
    Subject,
    as_if_active,
    replay,
)
from policies.divisions import is_grid
from policies.reasons import APPLY_AGAIN
from policies.reasons import reason as _reason

router = APIRouter(prefix="/api/v1", tags=["policy"], route_class=PermissionFirstRoute)

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]

#: Data requests the replay re-decides (what the data path records).
_DATA_KINDS = ("data.list", "data.read")
_TEXT_MAX = 1_000_000


# -- JSON forms ----------------------------------------------------------------------------------------


def decision_json(decision: Decision, max_page_size: int | None = None) -> dict[str, Any]:
    """``max_page_size`` (the platform's page limit) caps ``max_records`` as the data path does, so the
    dry run reports what one request may really return."""
    obligations = decision.obligations
    return {
        "allowed": decision.allowed,
        "code": decision.code,
        "reasons": [
            {"code": r.code, "message_zh": r.message_zh, "message_en": r.message_en} for r in decision.reasons
        ],
        "obligations": None
        if obligations is None
        else {
            "row_scope": list(obligations.row_scope),
            "fields": list(obligations.fields),
            "masking_profile": obligations.masking_profile,
            "max_records": obligations.max_records
            if max_page_size is None
            else min(obligations.max_records, max_page_size),
            "quota_left": obligations.quota_left,
            "grant_id": obligations.grant_id,
        },
    }


def uncatalogued(runtime: Runtime, dataset: str) -> list[Check] | None:
    """The one failed check of an explanation about a dataset the catalog does not have, or None. The data
    path answers it 404 ``unknown_dataset`` before any policy check; an explanation says the same, not
    "your role may not read 「未编目的数据集」 — ask your administrator" (a typo is no permission matter)."""
    if runtime.dataset(dataset) is not None:
        return None
    return [Check("dataset", False, *UNKNOWN_DATASET, {"reason": "unknown_dataset"})]


def with_provider(runtime: Runtime, dataset: str, checks: list[Check], now: datetime) -> list[Check]:
    """``checks`` and, when the system providing ``dataset`` may not be called now (its admission lapsed,
    suspended, revoked; no provider; its credential unusable), the data path's refusal as one more failed
    check: the policy may allow a read the data path still refuses, and "allowed" would send the reader
    looking for a fault in her own request."""
    try:
        runtime.route(dataset, now)
    except GatewayError as refused:
        return [
            *checks,
            Check("system", False, refused.message_zh, refused.message_en, {"reason": refused.code}),
        ]
    return checks


def explanation_json(checks: list[Check]) -> dict[str, Any]:
    failed = [c for c in checks if not c.passed]
    first = failed[0] if failed else None
    return {
        "allowed": first is None,
        "failed": None
        if first is None
        else {
            "check": first.code,
            "code": first.detail.get("reason", first.code),
            "message_zh": first.message_zh,
            "message_en": first.message_en,
        },
        "checks": [
            {
                "check": c.code,
                "passed": c.passed,
                "message_zh": c.message_zh,
                "message_en": c.message_en,
                "detail": dict(c.detail),
            }
            for c in checks
        ],
    }


def _policy_state(engine: PolicyEngine) -> dict[str, Any]:
    return {"digests": engine.digests, "grants_version": engine.grants.version, "grants": len(engine.grants)}


# -- current policy --------------------------------------------------------------------------------


@router.get("/policy")
async def policy_state(
    _principal: Annotated[
        Principal,
        Depends(Permitted("policies", "explain", doing=("查看当前生效的策略", "view the policy in force"))),
    ],
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """The policy this process decides by: file digests and the grants version. Files by name only: the
    server's directories are nobody's business over HTTP."""
    engine = runtime.policy()
    return {
        **_policy_state(engine),
        "files": {
            "model": Path(engine.permissions.model_path).name,
            "permissions": Path(engine.permissions.policy_path).name,
            "scenarios": Path(engine.scenarios.path).name,
        },
    }


# -- decide / explain ----------------------------------------------------------------------------------


class DecideBody(StrictBody):
    user_id: str = Field("dry-run", max_length=128, description="whose daily quota to read")
    org: str = Field(description="division code of the organisation asking", json_schema_extra=ORG_SCHEMA)
    roles: list[str] = Field(min_length=1, max_length=10)
    grids: list[str] = Field(
        default_factory=list, max_length=99, description="micro-grids assigned (as the IdP's grids claim)"
    )
    department: str | None = None
    dataset: str = Field(max_length=64)
    scenario: str = Field(max_length=64)
    fields: list[str] | None = None
    at: Moment | None = Field(None, description="decide as of this time, with its offset (default: now)")
    record_count_hint: int | None = Field(None, ge=0)


#: A dry run's ``roles`` holding one the platform does not know (``vilage_cadre``): no permission names it,
#: so it was answered "no_permission" as if that were the person's real standing, not as the typo it is.
_UNKNOWN_ROLE: Final = (
    "roles 中有平台不认识的岗位，本次未作判定（请检查拼写；这样的岗位不影响判定，可以去掉）。"
    "可用的岗位：{roles}。",
    "roles holds a role the platform does not know; nothing was decided (check the spelling; such a role "
    "never changes a decision, so it can be left out). The roles are: {roles_en}.",
)
#: A dry run's ``grids`` holding a malformed micro-grid code (``310151101201-G1``): it was answered
#: "grid_scope_invalid ... outside their organisation", sending the administrator to the wrong village.
_MALFORMED_GRID: Final = (
    "grids 中有格式不正确的微网格代码，本次未作判定。微网格代码是所在村（居）的 12 位区划代码加 -G 和两位数字"
    " 01 至 99（例如 310151101201-G03）。",
    "grids holds a malformed micro-grid code; nothing was decided. A micro-grid code is its village's "
    "12-digit division code, -G and two digits 01 to 99 (for example 310151101201-G03).",
)


def _access(body: DecideBody) -> AccessRequest:
    if any(role not in ROLES for role in body.roles):
        zh, en = _UNKNOWN_ROLE
        raise InvalidRequest(
            zh.format(roles="、".join(ROLES)), en.format(roles_en=", ".join(ROLES)), code="unknown_role"
        )
    if not all(is_grid(grid) for grid in body.grids):
        raise InvalidRequest(*_MALFORMED_GRID, code="invalid_grid")
    return AccessRequest(
        subject=Subject(
            user_id=body.user_id,
            org=checked_org(body.org, "org"),
            roles=tuple(body.roles),
            grids=tuple(body.grids),
            department=body.department,
        ),
        action="read",
        dataset=body.dataset,
        scenario=body.scenario,
        fields=tuple(body.fields) if body.fields is not None else None,
        now=body.at or datetime.now(UTC),
        record_count_hint=body.record_count_hint,
    )


def within_page_limit(decision: Decision, records: int | None, max_page_size: int) -> Decision:
    """An allowed decision for ``records`` in one request, refused as the data path refuses a page that
    large (``page_size_over_limit``, the limit in force and what sets it). The engine knows the scenario's
    cap and the quota; the platform's page limit is the gateway's, applied here as on the data path."""
    if records is None or decision.obligations is None:
        return decision
    try:
        check_within_page_limit(records, decision.obligations, max_page_size)
    except InvalidRequest as refused:
        return Decision(
            allowed=False, reasons=(Reason(refused.code, refused.message_zh, refused.message_en),)
        )
    return decision


def told_about_them(decision: Decision, checks: list[Check]) -> Decision:
    """``decision``'s refusal in the words an explanation about the subject uses ("该用户"/"this user"),
    for a reader who is not that subject. The code and obligations stay ``decide``'s; only the words are
    taken, from the first failed check giving the same reason. ``PolicyEngine.decide`` always speaks to
    its subject (on the data path she is the reader) and stays as fast as it is: the third-person words
    are rendered here, on the administrator's dry run only."""
    if decision.allowed or not decision.reasons:
        return decision
    first = decision.reasons[0]
    if first.code == "internal_error":
        words = _reason("internal_error", third_person=True)
    else:
        failed = next((c for c in checks if not c.passed and c.detail.get("reason") == first.code), None)
        if failed is None:
            # Not the engine's reason (the platform's page limit): its words address nobody.
            return decision
        words = Reason(first.code, failed.message_zh, failed.message_en)
    return Decision(allowed=False, reasons=(words, *decision.reasons[1:]), obligations=decision.obligations)


@router.post("/policy/decide")
async def decide(
    principal: Annotated[Principal, Depends(Permitted("policies", "decide"))],
    body: DecideBody,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Dry run: the Decision (with obligations) the data path would take for who/where/what/scenario.
    Nothing is read, nothing is counted against a quota. Told to the caller about the subject the body
    describes, as ``POST /policy/explain`` is: "该用户"/"this user", unless that subject is the caller."""
    engine, access = runtime.policy(), _access(body)
    max_page_size = runtime.settings.max_page_size
    if uncatalogued(runtime, access.dataset) is not None:
        # What the data path answers (404 unknown_dataset) and ``explain`` says, not "this user's role may
        # not read 「未编目的数据集」, ask their administrator": a typo is no permission matter.
        refused = Decision(allowed=False, reasons=(Reason("unknown_dataset", *UNKNOWN_DATASET),))
        return {**decision_json(refused, max_page_size), "policy": _policy_state(engine)}
    about_caller = access.subject == subject_of(principal)
    decision = await asyncio.to_thread(engine.decide, access)
    if not decision.allowed and not about_caller:
        checks = await asyncio.to_thread(engine.explain, access, about_caller=False)
        decision = told_about_them(decision, checks)
    if not decision.allowed and decision.reasons:
        why, _ = await told_of_waiting_request(
            runtime, access, decision.reasons[0], third_person=not about_caller
        )
        decision = replace(decision, reasons=(why, *decision.reasons[1:]))
    if decision.allowed and access.fields:
        # As the data path serves them, as ``explain`` answers: not "allowed" from a broader grant.
        not_served = await asyncio.to_thread(_fields_not_served, engine, access, about_caller)
        if not_served is not None:
            decision = Decision(allowed=False, reasons=(not_served[0],))
    decision = within_page_limit(decision, body.record_count_hint, max_page_size)
    return {**decision_json(decision, max_page_size), "policy": _policy_state(engine)}


@router.post("/policy/explain")
async def explain(
    principal: Annotated[Principal, Depends(Permitted("policies", "explain"))],
    body: DecideBody,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Every condition checked, pass or fail, and the first that failed, in words a cadre understands.
    Told to the caller about the subject the body describes: "该用户"/"this user", unless that subject is
    the caller herself (then "您"/"you", as ``GET /policy/explain`` says it)."""
    engine, access = runtime.policy(), _access(body)
    about_caller = access.subject == subject_of(principal)
    unknown = uncatalogued(runtime, access.dataset)
    if unknown is not None:
        return explanation_json(unknown)
    checks = await asyncio.to_thread(engine.explain, access, about_caller=about_caller)
    checks = await _waiting_request_told(runtime, access, checks, third_person=not about_caller)
    if access.fields and all(c.passed for c in checks):
        checks = await asyncio.to_thread(_fields_as_served, engine, access, checks, about_caller)
    checks = with_provider(runtime, access.dataset, checks, access.now)
    if body.record_count_hint is not None and all(c.passed for c in checks):
        # The platform's page limit is the gateway's, not the engine's: checked here as ``decide`` does,
        # so the explanation's first failure is decide's reason.
        decision = await asyncio.to_thread(engine.decide, access)
        limited = within_page_limit(decision, body.record_count_hint, runtime.settings.max_page_size)
        if not limited.allowed and limited.reasons:
            why = limited.reasons[0]
            checks = [
                *checks,
                Check("page_limit", False, why.message_zh, why.message_en, {"reason": why.code}),
            ]
    return explanation_json(checks)


#: ``GET /policy/explain``'s refusal of a query parameter it does not take (dataset, scenario, fields, at).
_EXPLAIN_MINE_UNKNOWN = (
    "查询参数中有本接口不接受的参数，本次未作解释。本接口只接受 dataset、scenario、fields、at，"
    "解释的是您本人以自己的单位和岗位查看数据；为其他单位或岗位解释须由管理员办理。请去掉其他参数后重试。",
    "The query has a parameter this endpoint does not take; nothing was explained. It takes only dataset, "
    "scenario, fields and at, and explains your own request, as your organisation and role; explaining "
    "for another organisation or role is an administrator's. Remove the other parameters and retry.",
)


@router.get("/policy/explain")
@own_words_for_unknown_query(*_EXPLAIN_MINE_UNKNOWN)
async def explain_mine(
    principal: Annotated[Principal, Depends(SignedIn("explain policies"))],
    runtime: RuntimeDep,
    dataset: Annotated[str, Query(max_length=64)],
    scenario: Annotated[str, Query(max_length=64)],
    fields: Annotated[str | None, Query(description="comma-separated field names")] = None,
    at: Annotated[
        Moment | None, Query(description="explain as of this time, with its offset (default: now)")
    ] = None,
) -> dict[str, Any]:
    """Why is *my* request refused (or allowed)? The caller's own identity, now or ``at`` a time.

    Signed in first: an anonymous caller is answered 401 (and recorded) whatever the query holds. Another
    parameter is refused (422 ``unknown_parameter``, never named): ``org=`` of the neighbouring
    village, ignored, answered "allowed" about the caller's own village, which read as a yes to it."""
    wanted = tuple(f.strip() for f in fields.split(",") if f.strip()) if fields else None
    access = AccessRequest(
        subject=subject_of(principal),
        action="read",
        dataset=dataset,
        scenario=scenario,
        fields=wanted,
        now=at or datetime.now(UTC),
    )
    unknown = uncatalogued(runtime, dataset)
    if unknown is not None:
        return explanation_json(unknown)
    checks = await asyncio.to_thread(runtime.policy().explain, access)
    if wanted and all(c.passed for c in checks):
        checks = await asyncio.to_thread(_fields_as_served, runtime.policy(), access, checks)
    checks = await _waiting_request_told(runtime, access, checks)
    return explanation_json(with_provider(runtime, dataset, checks, access.now))


def _fields_as_served(
    engine: PolicyEngine, access: AccessRequest, checks: list[Check], about_caller: bool = True
) -> list[Check]:
    """The fields asked about, as the data path serves them (:func:`_fields_not_served`), in the
    explanation's ``fields`` check."""
    not_served = _fields_not_served(engine, access, about_caller)
    if not_served is None:
        return checks
    why, grant_id = not_served
    detail: dict[str, str | int] = {"reason": why.code, "grant_id": grant_id}
    told = Check("fields", False, why.message_zh, why.message_en, detail)
    return [told if c.code == "fields" else c for c in checks]


def _fields_not_served(
    engine: PolicyEngine, access: AccessRequest, about_caller: bool = True
) -> tuple[Reason, str] | None:
    """``field_not_granted`` (and the grant served from) when the data path would not serve every field
    asked about. It names no fields: it serves those of the most specific grant in force over the
    caller's organisation. The engine, asked for fields, finds any grant granting them (a broader
    township grant), so a cadre whose village grant leaves out ``mobile`` was told "allowed" for it
    (by ``explain`` and by ``decide``), and then read pages without it."""
    served = engine.decide(replace(access, fields=None))
    if not served.allowed or served.obligations is None or access.fields is None:
        return None
    missing = [f for f in access.fields if f not in served.obligations.fields]
    scenario = engine.scenarios.get(access.scenario)
    if not missing or scenario is None:
        return None
    why = _reason(
        "field_not_granted",
        third_person=not about_caller,
        scenario=scenario.name_zh,
        scenario_en=scenario.name_en,
        fields="、".join(missing),
        fields_en=", ".join(missing),
    )
    return why, served.obligations.grant_id


async def _waiting_request_told(
    runtime: Runtime, access: AccessRequest, checks: list[Check], third_person: bool = False
) -> list[Check]:
    """The failed check that sends the subject to apply (again), in the words the data path refuses with
    when her organisation's request already waits (:func:`told_of_waiting_request`), naming it in
    ``pending_grant``."""
    told = []
    for check in checks:
        code = str(check.detail.get("reason"))
        if not check.passed and code in APPLY_AGAIN:
            refused = Reason(code, check.message_zh, check.message_en)
            why, waiting = await told_of_waiting_request(runtime, access, refused, third_person=third_person)
            if waiting is not None:
                detail = {**check.detail, "pending_grant": waiting}
                check = Check(check.code, False, why.message_zh, why.message_en, detail)
        told.append(check)
    return told


# -- reload --------------------------------------------------------------------------------------------


def _file_error(exc: PolicyFileError, what: str = "策略文件") -> InvalidRequest:
    name = Path(exc.path).name
    where = f"{name}:{exc.line}" if exc.line else name
    return InvalidRequest(
        f"{what} {where} 有误，原策略继续生效：{exc.message_zh}",
        f"{where}: {exc.message} (the current policy stays in force)",
        code="policy_file_invalid",
        extra={"file": name, "line": exc.line, "detail": exc.message},
    )


@router.post("/policy/reload")
async def reload_policy(
    principal: Annotated[Principal, Depends(Permitted("policies", "reload"))],
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Re-read and validate the policy files; swap without restart in every process, or keep the old
    policy whole and answer 422 naming file and line. Recorded (who, before/after digests, what changed)."""
    now = datetime.now(UTC)
    try:
        _, change = await asyncio.to_thread(runtime.policy().reloaded, principal.user_id)
    except PolicyFileError as exc:
        refused = _file_error(exc)
        async with unit_of_work(runtime, principal, request_id_of(request)) as uow:
            uow.record(
                {
                    "kind": "policy.reload_refused",
                    "actor": principal.user_id,
                    "before": {"digests": runtime.policy().digests},
                    "after": None,
                    "file": refused.extra["file"],
                    "line": exc.line,
                }
            )
        raise refused from None
    async with unit_of_work(runtime, principal, request_id_of(request)) as uow:
        version = await uow.run(lambda s: GrantRepository(s).bump_policy_version(now, POLICY_FILES_VERSION))
        uow.record({**change, "policy_files_version": version})
    # The unit of work refreshed this process after the commit: it now decides by the new files.
    return {**change, "policy_files_version": version, "policy": _policy_state(runtime.policy())}


# -- replay (what-if) ----------------------------------------------------------------------------------


class ProposedGrant(StrictBody):
    scenario: str = Field(max_length=64)
    org_scope: str = Field(json_schema_extra=ORG_SCHEMA)
    datasets: dict[str, list[str]] | None = None


class ReplayBody(StrictBody):
    days: int = Field(7, ge=1, le=90)
    grant_id: str | None = Field(None, description="a requested grant, previewed as if approved")
    grant: ProposedGrant | None = Field(None, description="a grant not yet requested, previewed")
    revoke_grant_ids: list[str] = Field(default_factory=list, max_length=1000)
    model: str | None = Field(None, max_length=_TEXT_MAX, description="proposed model.conf content")
    permissions: str | None = Field(None, max_length=_TEXT_MAX, description="proposed permissions.csv")
    scenarios: str | None = Field(None, max_length=_TEXT_MAX, description="proposed scenarios.toml")
    limit: int = Field(50_000, ge=1, le=200_000, description="most recent requests replayed at most")


def recorded_requests(
    session: Session, since: datetime, limit: int, datasets: frozenset[str] | None = None
) -> Iterator[AccessRequest]:
    """The data requests the audit log recorded since ``since`` (newest first), as AccessRequests;
    with ``datasets``, only the requests on those datasets (a steward's department's)."""
    stmt = (
        select(AuditEventRow.body)
        .where(AuditEventRow.kind.in_(_DATA_KINDS))
        .order_by(AuditEventRow.seq.desc())
        .limit(limit)
    )
    for raw in session.scalars(stmt):
        body = json.loads(raw)
        occurred = datetime.fromisoformat(body["occurred_at"])
        if occurred < since:
            break
        org, scenario, dataset = body.get("actor_org"), body.get("scenario"), body.get("dataset")
        if not org or not scenario or not dataset or body.get("actor") in (None, "anonymous"):
            continue
        if datasets is not None and dataset not in datasets:
            continue
        try:
            checked = checked_org(org)
        except InvalidRequest:
            continue
        grids = (body.get("details") or {}).get("actor_grids") or ()
        yield AccessRequest(
            subject=Subject(
                user_id=body["actor"],
                org=checked,
                roles=tuple(body.get("actor_roles") or ()),
                grids=tuple(str(g) for g in grids),
            ),
            action="read",
            dataset=dataset,
            scenario=scenario,
            fields=None,
            now=occurred,
        )


def _proposed_files(
    current: PolicyEngine, body: ReplayBody, workdir: Path
) -> tuple[PermissionModel | None, ScenarioCatalog | None]:
    permissions: PermissionModel | None = None
    scenarios: ScenarioCatalog | None = None
    try:
        if body.model is not None or body.permissions is not None:
            model_path = current.permissions.model_path
            policy_path = current.permissions.policy_path
            if body.model is not None:
                model_path = workdir / "model.conf"
                model_path.write_text(body.model, encoding="utf-8")
            if body.permissions is not None:
                policy_path = workdir / "permissions.csv"
                policy_path.write_text(body.permissions, encoding="utf-8")
            permissions = PermissionModel(model_path, policy_path)
        if body.scenarios is not None:
            path = workdir / "scenarios.toml"
            path.write_text(body.scenarios, encoding="utf-8")
            scenarios = ScenarioCatalog(path)
    except PolicyFileError as exc:
        raise _file_error(exc, "提议的策略文件") from None
    return permissions, scenarios


def _unknown_scenario(catalog: ScenarioCatalog) -> InvalidRequest:
    """A proposed grant's scenario code the catalog does not have: the codes it has are listed (what was
    typed is not repeated), as a grant request lists them; "没有这个使用场景。" alone left a steward
    replaying `--scenario DIBAO_REVEIW` to guess."""
    codes = [s.code for s in catalog]
    return InvalidRequest(
        f"没有这个使用场景，本次未预演。可用的场景：{'、'.join(codes)}"
        "（grassroots grants scenarios 列出各场景）。",
        f"There is no such scenario; nothing was replayed. The scenarios are {', '.join(codes)} "
        "(grassroots grants scenarios lists them).",
        code="unknown_scenario",
    )


def _proposed_grant(
    body: ReplayBody, session: Session, catalog: ScenarioCatalog, principal: Principal
) -> ScenarioGrant | None:
    if body.grant_id is not None:
        existing = GrantRepository(session).get(body.grant_id)
        if existing is None or existing.status not in (
            GrantStatus.REQUESTED,
            GrantStatus.AWAITING_SECOND_APPROVAL,
        ):
            raise InvalidRequest(
                "只能预演尚未生效的授权申请。",
                "Only a grant still awaiting approval can be previewed.",
                code="grant_not_previewable",
            )
        return existing
    if body.grant is None:
        return None
    spec = catalog.get(body.grant.scenario)
    if spec is None:
        raise _unknown_scenario(catalog)
    datasets = dict(spec.datasets) if body.grant.datasets is None else body.grant.datasets
    return ScenarioGrant(
        grant_id="proposed",
        scenario=spec.code,
        org_scope=checked_org(body.grant.org_scope),
        datasets={k: tuple(v) for k, v in datasets.items()},
        valid_from=None,
        valid_until=None,
        status=GrantStatus.REQUESTED,
        requested_by=principal.user_id,
    )


def _change_json(change: ReplayChange) -> dict[str, Any]:
    return {
        "user_id": change.user_id,
        "org": change.org,
        "dataset": change.dataset,
        "scenario": change.scenario,
        "before": change.before,
        "after": change.after,
        "fields_before": list(change.fields_before),
        "fields_after": list(change.fields_after),
        "requests": change.requests,
    }


_PLATFORM_ADMIN = "platform_admin"
_STEWARD = "data_steward"


def _replay_department(principal: Principal) -> str | None:
    """The department whose data ``principal`` may replay changes on; None: every department's (the
    platform admin). A steward stands for her own department only (GB/T 35273-2020 §7.1 access on a
    need-to-know basis), as in approving grants; a steward with no department stands for none."""
    if _PLATFORM_ADMIN in principal.roles:
        return None
    return principal.department or ""


def _owners(catalog: ScenarioCatalog, datasets: Iterable[str]) -> set[str | None]:
    return {info.owner_department if (info := catalog.dataset(name)) else None for name in datasets}


_OUTSIDE_DEPARTMENT = (
    "只能预演本部门数据上的授权变更：所列授权中有不存在的，或涉及其他部门的数据。",
    "A steward replays only changes to grants over her own department's data: a grant named does not "
    "exist or covers another department's data.",
)


def _check_replay_scope(
    body: ReplayBody, session: Session, catalog: ScenarioCatalog, department: str | None
) -> None:
    """Refuse (403) a steward's replay of anything beyond her department's data: policy files (they
    change every department's access), or a grant, proposed grant or revocation whose datasets are not
    all her department's. A grant id that names nothing is refused the same way, so the answer does not
    tell which ids exist in another department."""
    if department is None:
        return
    if body.model is not None or body.permissions is not None or body.scenarios is not None:
        raise Forbidden(
            "只有平台管理员可以预演策略文件的修改（它影响所有部门的数据）。",
            "Only a platform administrator replays policy file changes (they affect every department's "
            "data).",
            code="replay_policy_files_admin_only",
        )
    repository = GrantRepository(session)
    for grant_id in [*([body.grant_id] if body.grant_id is not None else []), *body.revoke_grant_ids]:
        grant = repository.get(grant_id)
        if grant is None or not department or _owners(catalog, grant.datasets) != {department}:
            raise Forbidden(*_OUTSIDE_DEPARTMENT, code="replay_outside_department")
    if body.grant is not None:
        spec = catalog.get(body.grant.scenario)
        if spec is None:
            raise _unknown_scenario(catalog)
        names = list(spec.datasets) if body.grant.datasets is None else list(body.grant.datasets)
        if not department or _owners(catalog, names) != {department}:
            raise Forbidden(
                "只能预演本部门数据上的授权：所提议的授权涉及其他部门的数据。",
                "A steward replays only grants over her own department's data: the proposed grant "
                "covers another department's data.",
                code="replay_outside_department",
            )


def _replay_asked(body: ReplayBody, session: Session, catalog: ScenarioCatalog) -> dict[str, Any]:
    """What was asked, as the audit log keeps it: codes the catalog knows and ids of grants that exist,
    counts for the rest (what was typed may be anything), proposed files by name and length only."""
    repository = GrantRepository(session)
    known = [g for g in body.revoke_grant_ids if repository.get(g) is not None]
    asked: dict[str, Any] = {
        "days": body.days,
        "limit": body.limit,
        "revoke_grant_ids": known,
        "revoke_unknown": len(body.revoke_grant_ids) - len(known),
        "files": {
            name: len(text)
            for name, text in (
                ("model.conf", body.model),
                ("permissions.csv", body.permissions),
                ("scenarios.toml", body.scenarios),
            )
            if text is not None
        },
    }
    if body.grant_id is not None:
        asked["grant_id"] = body.grant_id if repository.get(body.grant_id) is not None else "unknown"
    if body.grant is not None:
        spec = catalog.get(body.grant.scenario)
        try:
            org: str | None = checked_org(body.grant.org_scope)
        except InvalidRequest:
            org = None
        asked["grant"] = {
            "scenario": spec.code if spec is not None else "unknown",
            "org_scope": org if org is not None and personal_data_in(org) is None else "invalid",
            "datasets": None
            if body.grant.datasets is None
            else sorted(d for d in body.grant.datasets if catalog.dataset(d) is not None),
        }
    return asked


def _replayed_event(
    principal: Principal,
    asked: dict[str, Any],
    department: str | None,
    counts: dict[str, int] | None,
    refused: GatewayError | None,
) -> AuditEvent:
    """``policy.replayed``: who replayed what, over whose data, and how many requests changed; never
    who gained or lost (user ids, organisations: the answer's, not the log's)."""
    return AuditEvent(
        kind="policy.replayed",
        outcome=Outcome.REFUSED if refused is not None else Outcome.OK,
        actor=principal.user_id,
        actor_org=principal.org,
        actor_roles=tuple(principal.roles),
        reason=refused.code if refused is not None else None,
        request_id=REQUEST_ID.get(),
        details={
            "asked": asked,
            "department": "all" if department is None else department or None,
            **({"counts": counts} if counts is not None else {}),
        },
    )


@router.post("/policy/replay")
async def replay_policy(
    principal: Annotated[Principal, Depends(Permitted("policies", "replay"))],
    body: ReplayBody,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Replay the last ``days`` of recorded data requests under the current and the proposed policy.

    A data steward replays grants over her own department's data only, against the requests recorded
    on her department's datasets only (403 ``replay_outside_department`` for another department's grant,
    ``replay_policy_files_admin_only`` for policy files); the platform admin replays anything. Either
    way the replay is recorded (``policy.replayed``: what was asked and the counts) before the answer."""
    department = _replay_department(principal)
    now = datetime.now(UTC)
    since = now - timedelta(days=body.days)
    current = runtime.policy().what_if()

    def run(session: Session) -> tuple[dict[str, Any], dict[str, Any] | None, GatewayError | None]:
        asked = _replay_asked(body, session, current.scenarios)
        try:
            return asked, replayed(session), None
        except GatewayError as refused:
            return asked, None, refused
        except Exception as exc:
            mapped = library_error(exc)
            if mapped is None:
                raise
            return asked, None, mapped

    def replayed(session: Session) -> dict[str, Any]:
        if (
            body.grant_id is None
            and body.grant is None
            and not body.revoke_grant_ids
            and body.model is None
            and body.permissions is None
            and body.scenarios is None
        ):
            raise InvalidRequest(
                "请给出要预演的变更：授权、撤销或新的策略文件。",
                "Name a proposed change: a grant, revocations or new policy file contents.",
                code="nothing_proposed",
            )
        _check_replay_scope(body, session, current.scenarios, department)
        with tempfile.TemporaryDirectory(prefix="grassroots-replay-") as tmp:
            permissions, scenarios = _proposed_files(current, body, Path(tmp))
        catalog = scenarios if scenarios is not None else current.scenarios
        grant = _proposed_grant(body, session, catalog, principal)
        add = [as_if_active(grant, since, now + timedelta(days=1))] if grant is not None else []
        grants = current.grants.with_changes(add=add, remove=body.revoke_grant_ids)
        proposed = current.what_if(grants=grants, permissions=permissions, scenarios=scenarios)
        # A steward sees the requests on her department's data only: who else read what is another
        # department's business (the grants she may replay touch nothing else anyway).
        mine = (
            None
            if department is None
            else frozenset(
                name
                for name, info in current.scenarios.datasets.items()
                if info.owner_department == department
            )
        )
        report = replay(recorded_requests(session, since, body.limit, mine), current, proposed)
        return {
            "days": body.days,
            "since": since.isoformat(),
            "total": report.total,
            "unchanged": report.unchanged,
            "gained": [_change_json(c) for c in report.gained],
            "lost": [_change_json(c) for c in report.lost],
            "fields_changed": [_change_json(c) for c in report.changes if c.direction == "fields_changed"],
            "current": _policy_state(current),
            "proposed": {"digests": proposed.digests},
        }

    asked, result, refused = await read_only(runtime, run)
    counts = (
        None
        if result is None
        else {
            "total": result["total"],
            "unchanged": result["unchanged"],
            "gained": len(result["gained"]),
            "lost": len(result["lost"]),
            "fields_changed": len(result["fields_changed"]),
        }
    )
    await record_audit(runtime, _replayed_event(principal, asked, department, counts, refused))
    if refused is not None:
        raise refused
    assert result is not None
    return result
