"""Desensitisation administration over HTTP: the field catalog, tags and rules as managed data.

* ``GET /masking/catalog``, ``GET /masking/rules``: what is in force (packaged baseline + approved changes).
* ``POST /masking/proposals`` → ``.../approve`` | ``.../reject``: a classification, tag or rule change
  needs a second person (``masking.stewardship`` checks department and four-eyes); each step is one
  audit event written before the commit, and approval moves the ``masking_versions`` row every gateway
  process polls, so the data path uses the new catalog and rules within one poll interval.
* ``POST /masking/dry-run``: the plan (field → operator) and a masked sample, against what is in force
  or against a pending proposal, so a rule can be tested before anyone approves it.
* ``POST /masking/unmask``: reverse an AES-GCM envelope or an FF1 pseudonym. Needs the ``unmask``
  permission (checked before the body is read, like every administrative route), a purpose and a steward
  of the department owning the dataset named; the value must have been issued for that dataset (both are
  bound to it). The audit event is appended first and its sequence number is the ``Unmask`` capability the
  library requires. The clear value is returned once, never logged.
* ``GET /masking/drift``: catalog-drift alerts (personal data found by response DLP in fields not
  classified as personal), from the data path's audit events, for the steward to classify.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, NoReturn, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field, field_validator
from sqlalchemy import select

from audit import (
    UNMASK_REVEALED_KIND,
    AuditEvent,
    AuditUnavailable,
    Outcome,
    normalise_id_number,
    served_from_dataset,
    unpacked_ref,
)
from audit.tables import AuditEventRow
from gateway.admin_support import PermissionFirstRoute, Permitted, StrictBody, unit_of_work
from gateway.app import get_runtime, request_id_of
from gateway.auth.oidc import Principal
from gateway.errors import (
    AuditLogUnavailable,
    Forbidden,
    GatewayError,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
)
from gateway.free_text import NOT_BLANK, TEXT_MAX, refuse_personal_data, text_schema
from gateway.openapi_doc import ecma_pattern
from gateway.pipeline import with_request_source
from gateway.runtime import Runtime
from masking import (
    OPERATORS,
    REDACTED,
    BindContext,
    Catalog,
    DryRunValueError,
    FallbackDecision,
    FieldDecision,
    FreeTextScanner,
    KeyRing,
    Level,
    MaskingPlan,
    RuleSet,
    SemanticType,
    UnboundEnvelopeError,
    Unmask,
    UnmaskError,
    UnscopedKeyError,
    envelope_context_among,
    envelope_names_dataset,
    ff1_id_reveal,
    get_operator,
    is_dry_run_value,
    mask_record,
    open_envelope,
    plan_masking,
)
from masking.catalog import DatasetSpec, catalog_document, field_code_meant
from masking.dlp import scan_response
from masking.errors import (
    MaskingError,
    ProposalConflictError,
    ProposalNotFoundError,
    StewardshipForbiddenError,
    UnknownDatasetError,
    UnknownProfileError,
    unknown_name,
)
from masking.rules import rules_document
from masking.stewardship import (
    MaskingRepository,
    ProposalKind,
    ProposalStatus,
    Steward,
    StewardshipService,
)
from policies.scenarios import CHINA_STANDARD_TIME

router = APIRouter(prefix="/api/v1/masking", tags=["masking"], route_class=PermissionFirstRoute)

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
T = TypeVar("T")

_DRIFT_SCAN_LIMIT = 5000


# -- errors ----------------------------------------------------------------------------------------


def _status_of(exc: MaskingError) -> int:
    if isinstance(exc, ProposalNotFoundError | UnknownDatasetError):
        return 404
    if isinstance(exc, StewardshipForbiddenError):
        return 403
    if isinstance(exc, ProposalConflictError):
        return 409
    return 422


@contextmanager
def _masking_errors() -> Iterator[None]:
    """The library's errors as the one JSON error shape, with the status each deserves."""
    try:
        yield
    except MaskingError as exc:
        raise GatewayError(
            exc.message_zh, exc.message_en, code=exc.code, status_code=_status_of(exc)
        ) from None


def _mapped(fn: Callable[[], T]) -> T:
    with _masking_errors():
        return fn()


async def _read(runtime: Runtime, fn: Callable[[MaskingRepository], T]) -> T:
    def work() -> T:
        with runtime.sessions() as session, _masking_errors():
            return fn(MaskingRepository(session))

    return await asyncio.to_thread(work)


def _steward(principal: Principal) -> Steward:
    return Steward(user_id=principal.user_id, roles=tuple(principal.roles), department=principal.department)


def _service(runtime: Runtime, repository: MaskingRepository) -> StewardshipService:
    return StewardshipService(repository, runtime.masking_baseline)


def _checked_text(text: str | None, name_zh: str, name_en: str, *, required: bool) -> str:
    """Reasons, notes and purposes go into the audit log: never personal data there (PIPL art. 51)."""
    value = (text or "").strip()
    if required and NOT_BLANK.search(value) is None:
        raise InvalidRequest(f"请填写{name_zh}。", f"{name_en} is required.", code=f"missing_{name_en}")
    if len(value) > TEXT_MAX:
        raise InvalidRequest(
            f"{name_zh}最多 {TEXT_MAX} 个字。",
            f"{name_en} is at most {TEXT_MAX} characters.",
            code=f"{name_en}_too_long",
        )
    refuse_personal_data(value, name_zh, name_en, code=f"personal_data_in_{name_en}")
    return value


# -- what is in force ------------------------------------------------------------------------------


def _levels() -> list[dict[str, Any]]:
    return [
        {"value": level.document_value, "rank": int(level), "label_zh": level.label_zh} for level in Level
    ]


def _operators() -> list[dict[str, Any]]:
    return [
        {
            "name": op.name,
            "summary_zh": op.summary_zh,
            "params": {
                name: {
                    "type": spec.kind.__name__,
                    "default": spec.default,
                    **({"choices": list(spec.choices)} if spec.choices else {}),
                }
                for name, spec in op.params.items()
            },
        }
        for op in OPERATORS.values()
    ]


@router.get("/catalog")
async def get_catalog(
    _principal: Annotated[Principal, Depends(Permitted("masking", "read"))],
    runtime: RuntimeDep,
    dataset: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """Datasets, fields (level, semantic type, tags, quasi-identifier), base and dynamic tags, levels."""
    effective = runtime.masking
    doc = catalog_document(effective.catalog)
    if dataset is not None:
        if dataset not in doc["datasets"]:
            # Name the catalogued datasets (a short, fixed list), never the value that was asked for.
            known = sorted(doc["datasets"])
            raise NotFound(
                f"该数据集未编目，请核对 dataset 参数；已编目的数据集：{'、'.join(known) or '无'}。",
                f"That dataset is not catalogued; check the dataset parameter. Catalogued datasets: "
                f"{', '.join(known) or 'none'}.",
                code="unknown_dataset",
                extra={"datasets": known},
            )
        doc["datasets"] = {dataset: doc["datasets"][dataset]}
    return {
        "version": effective.version,
        "levels": _levels(),
        "semantic_types": [t.value for t in SemanticType],
        "base_tags": doc["tags"]["base"],
        "dynamic_tags": doc["tags"]["dynamic"],
        "datasets": doc["datasets"],
        "skipped_changes": list(effective.skipped),
    }


@router.get("/rules")
async def get_rules(
    _principal: Annotated[Principal, Depends(Permitted("masking", "read"))], runtime: RuntimeDep
) -> dict[str, Any]:
    """The ordered rules (first match wins), the profiles and the operators they may name."""
    effective = runtime.masking
    doc = rules_document(effective.rules)
    return {
        "version": effective.version,
        "profiles": doc["profiles"],
        "rules": doc["rules"],
        "operators": _operators(),
    }


# -- proposals -------------------------------------------------------------------------------------


class ProposalBody(StrictBody):
    kind: ProposalKind
    payload: dict[str, Any]
    reason: str = Field(max_length=2000, json_schema_extra=text_schema(required=True))


class DecisionBody(StrictBody):
    note: str | None = Field(None, max_length=2000, json_schema_extra=text_schema(required=False))


@router.get("/proposals")
async def list_proposals(
    _principal: Annotated[Principal, Depends(Permitted("masking", "read"))],
    runtime: RuntimeDep,
    status: ProposalStatus | None = None,
    kind: ProposalKind | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    items = await _read(runtime, lambda repo: repo.find(status=status, kind=kind, limit=limit))
    return {"items": [p.as_dict() for p in items]}


@router.get("/proposals/{proposal_id}")
async def get_proposal(
    _principal: Annotated[Principal, Depends(Permitted("masking", "read"))],
    proposal_id: str,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    proposal = await _read(runtime, lambda repo: repo.get(proposal_id))
    return proposal.as_dict()


@router.post("/proposals", status_code=201)
async def propose(
    principal: Annotated[Principal, Depends(Permitted("masking", "propose"))],
    body: ProposalBody,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Propose a change; it takes effect only when another authorised person approves it."""
    reason = _checked_text(body.reason, "变更理由", "reason", required=True)
    if body.kind is ProposalKind.RULE_UPSERT:
        _check_rule_selectors(runtime, body.payload.get("rule"))
    tag = body.payload.get("tag")
    if body.kind is ProposalKind.TAG_ADD and isinstance(tag, str):
        # A tag is shown in the catalog to every reader and written to the audit log: a resident's name
        # (户主王建国) is refused as in a reason, not only ID and phone numbers (the library's check).
        refuse_personal_data(tag, "标签名", "tag", code="personal_data_in_tag")
    now = datetime.now(UTC)
    async with unit_of_work(runtime, principal, request_id_of(request)) as uow:
        proposal, change = await uow.run(
            lambda s: _mapped(
                lambda: _service(runtime, MaskingRepository(s)).propose(
                    _steward(principal), body.kind.value, body.payload, reason, now
                )
            )
        )
        uow.record(change)
    return proposal.as_dict()


def _check_rule_selectors(runtime: Runtime, rule: object) -> None:
    """A rule's roles and scenarios must be codes the policy serves: a misspelt one (village_cadr) makes a
    rule that never matches, so a stricter rule written for that reader silently leaves the next,
    looser one in force. The rest of the rule is checked by the library."""
    if not isinstance(rule, dict):
        return
    scenarios = runtime.policy().scenarios
    known = {
        "scenarios": ("场景代码", "scenario code", "unknown_scenario", sorted(s.code for s in scenarios)),
        "roles": (
            "岗位代码",
            "role code",
            "unknown_role",
            sorted({role for s in scenarios for role in s.roles_allowed}),
        ),
    }
    for key, (what_zh, what_en, code, codes) in known.items():
        values = rule.get(key)
        if not isinstance(values, list):
            continue
        typed = next((v for v in values if isinstance(v, str) and v != "*" and v not in codes), None)
        if typed is not None:
            zh, en = unknown_name(what_zh, what_en, typed, codes)
            raise InvalidRequest(
                f"提议的规则中 {key}：{zh}。这样的规则永远不会生效，本次未提出。",
                f"proposed rule, {key}: {en}. Such a rule would never apply; nothing was proposed.",
                code=code,
            )


@router.post("/proposals/{proposal_id}/approve")
async def approve(
    principal: Annotated[Principal, Depends(Permitted("masking", "approve"))],
    proposal_id: str,
    body: DecisionBody,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Approve: the change becomes part of the effective catalog or rules in every gateway process."""
    note = _checked_text(body.note, "审批意见", "note", required=False)
    now = datetime.now(UTC)
    async with unit_of_work(runtime, principal, request_id_of(request)) as uow:
        proposal, change = await uow.run(
            lambda s: _mapped(
                lambda: _service(runtime, MaskingRepository(s)).approve(
                    proposal_id, _steward(principal), note, now
                )
            )
        )
        uow.record(change)
    return proposal.as_dict()


@router.post("/proposals/{proposal_id}/reject")
async def reject(
    principal: Annotated[Principal, Depends(Permitted("masking", "reject"))],
    proposal_id: str,
    body: DecisionBody,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Reject with a reason (or, by the proposer, withdraw)."""
    note = _checked_text(body.note, "驳回理由", "note", required=False)
    now = datetime.now(UTC)
    async with unit_of_work(runtime, principal, request_id_of(request)) as uow:
        proposal, change = await uow.run(
            lambda s: _mapped(
                lambda: _service(runtime, MaskingRepository(s)).reject(
                    proposal_id, _steward(principal), note, now
                )
            )
        )
        uow.record(change)
    return proposal.as_dict()


# -- dry-run ---------------------------------------------------------------------------------------


class DryRunBody(StrictBody):
    dataset: str = Field(max_length=64)
    role: str = Field(max_length=64)
    scenario: str = Field(max_length=64)
    profile: str | None = Field(
        None, max_length=64, description="default: the scenario's masking profile, as on the data path"
    )
    fields: list[str] | None = Field(None, max_length=200)
    sample: dict[str, Any] | None = None
    exemptions: dict[str, str] = Field(default_factory=dict)
    proposal_id: str | None = Field(None, max_length=40)


@router.post("/dry-run")
async def dry_run(
    _principal: Annotated[Principal, Depends(Permitted("masking", "dry_run"))],
    body: DryRunBody,
    runtime: RuntimeDep,
) -> JSONResponse:
    """The plan (field → operator, and why) and the masked sample, for what is in force or for a
    pending proposal. Keyed pseudonyms use a throwaway key here (no re-identification oracle)."""
    if body.proposal_id is not None:
        proposal_id = body.proposal_id
        catalog, rules = await _read(runtime, lambda repo: _service(runtime, repo).preview(proposal_id))
        based_on = f"proposal:{proposal_id}"
    else:
        catalog, rules = runtime.catalog, runtime.rules
        based_on = f"effective:{runtime.masking.version}"
    profile, source = _dry_run_profile(runtime, rules, body)
    now = datetime.now(UTC)
    result = _mapped(lambda: _dry_run(runtime, catalog, rules, body, profile, now))
    result["profile_source"] = source
    result["based_on"] = based_on
    # The sample may be real personal data typed in by the steward: never cached anywhere.
    return JSONResponse(result, headers={"Cache-Control": "no-store"})


def _dry_run_profile(runtime: Runtime, rules: RuleSet, body: DryRunBody) -> tuple[str, str]:
    """(profile, where it came from). A dry-run answers "what would this reader see in this scenario",
    so scenario and role must be ones the data path serves; an unknown code is refused rather than
    answered with a confident plan nobody will ever get. Like the data path, the scenario's obligation
    picks the profile; a steward may name another to try it ("request"). The messages list the valid
    codes (short, fixed lists) and never echo what was typed."""
    scenarios = runtime.policy().scenarios
    scenario = scenarios.get(body.scenario)
    if scenario is None:
        codes = sorted(s.code for s in scenarios)
        raise InvalidRequest(
            f"没有这个场景代码，请核对 scenario；可用的场景：{'、'.join(codes) or '无'}。",
            f"No such scenario code; check scenario. Scenarios: {', '.join(codes) or 'none'}.",
            code="unknown_scenario",
        )
    if body.role not in scenario.roles_allowed:
        served = scenario.roles_allowed
        if any(body.role in s.roles_allowed for s in scenarios):
            zh, en, code = (
                f"场景 {scenario.code} 不向这个岗位提供数据",
                f"Scenario {scenario.code} serves no data to that role",
                "role_not_in_scenario",
            )
        else:
            zh, en, code = "没有这个岗位代码，请核对 role", "No such role code; check role", "unknown_role"
        raise InvalidRequest(
            f"{zh}；场景 {scenario.code} 服务的岗位：{'、'.join(served)}。",
            f"{en}. Roles scenario {scenario.code} serves: {', '.join(served)}.",
            code=code,
        )
    profile, source = (
        (scenario.masking_profile, "scenario") if body.profile is None else (body.profile, "request")
    )
    if profile not in rules.profiles:
        names = sorted(rules.profiles)
        raise InvalidRequest(
            f"没有这个脱敏方案，请核对 profile；可用的方案：{'、'.join(names)}。",
            f"No such masking profile; check profile. Profiles: {', '.join(names)}.",
            code=UnknownProfileError.code,
        )
    return profile, source


def _dry_run(
    runtime: Runtime, catalog: Catalog, rules: RuleSet, body: DryRunBody, profile: str, now: datetime
) -> dict[str, Any]:
    if body.dataset not in catalog.datasets:
        # A steward's typo (occupant): named with the one meant, as propose-field does.
        raise UnknownDatasetError(body.dataset, known=sorted(catalog.datasets))
    spec = catalog.dataset(body.dataset)
    fields = tuple(body.fields) if body.fields is not None else tuple(spec.fields)
    try:
        plan = plan_masking(
            catalog,
            rules,
            dataset=body.dataset,
            fields=fields,
            role=body.role,
            scenario=body.scenario,
            profile=profile,
            exemptions=body.exemptions,
            keys=runtime.keys.for_dry_run() if runtime.keys is not None else None,
            scanner=runtime.scanner,
            # The local day, as the data path's plans (Runtime.masking_plan): an age band is the age on
            # the day in Beijing, not on the UTC date (a day behind until 08:00).
            as_of=now.astimezone(CHINA_STANDARD_TIME).date(),
        )
    except UnknownProfileError as exc:
        raise InvalidRequest(exc.message_zh, exc.message_en, code=exc.code) from None
    # A field name is typed text and could be anything (a resident's name or ID number pasted by mistake):
    # the answer names only catalogued fields. One that is not is referred to by its position among the
    # fields (1-based), as policies.errors.shown does for what is not a name.
    unknown = _positions(fields, spec)
    result: dict[str, Any] = {
        "dataset": body.dataset,
        "role": body.role,
        "scenario": body.scenario,
        "profile": profile,
        "level": plan.level.document_value,
        "level_label_zh": plan.level.label_zh,
        "plan": [_unnamed(entry, unknown) for entry in plan.explain()],
    }
    # A name not in the catalog is planned as it would be served (redacted), but a steward who typed a
    # field's title (姓名) or a typo (mobil) is testing nothing: say so, and name the field meant.
    notes = [_uncatalogued_note(spec, "fields", name, at, len(unknown)) for name, at in unknown.items()]
    exempted = _positions(tuple(body.exemptions), spec)
    notes += [
        _unused_exemption_note(spec, name, fields, exempted.get(name))
        for name in body.exemptions
        if name not in fields
    ]
    if body.sample is not None:
        notes += [
            _fallback_note(plan, d, body.sample[d.field]) for d in plan.decisions if _tells(d, body.sample)
        ]
        if runtime.scanner is not None:
            notes += _items_notes(plan, body.sample, runtime.scanner)
        if body.fields is None:  # every field tried: a sample's key that is none of them was dropped
            untried = _positions(tuple(body.sample), spec)
            notes += [
                _uncatalogued_note(spec, "sample", name, at, len(untried)) for name, at in untried.items()
            ]
    if notes:
        result["notes"] = notes
    if body.sample is not None:
        # An uncatalogued field is redacted (***) as the data path would serve it, under its typed name:
        # left out of the masked sample (the notes say so, by position).
        masked = [{k: v for k, v in mask_record(body.sample, plan).items() if k not in unknown}]
        drift: list[dict[str, Any]] = []
        if runtime.scanner is not None:
            masked, alerts = scan_response(
                catalog,
                body.dataset,
                masked,
                runtime.scanner,
                protected=plan.protected_fields,
                scanners=plan.dlp_scanners,
                unmemoised=plan.dlp_unmemoised,
            )
            drift = [_drift_entry(plan, a.field, a.entity_type, a.count) for a in alerts]
        result["masked"] = masked[0]
        result["drift"] = drift
    return result


def _drift_entry(plan: MaskingPlan, field: str, entity_type: str, count: int) -> dict[str, Any]:
    """A drift finding of the masked sample, with how response DLP masked it (the plan's `dlp_items` for
    the field: the profile's rule for an item of that type, or the scanner's own masking). No values."""
    entry: dict[str, Any] = {"field": field, "entity_type": entity_type, "count": count}
    for item in plan.decision(field).dlp:
        if item.entity_type == entity_type:
            entry.update(operator=item.operator, source=item.source)
    return entry


def _tells(decision: FieldDecision, sample: dict[str, Any]) -> bool:
    """Whether the sample's value of a field with a fallback is not what its own operator reads (a
    landline, or neither, in a mobile field): then the note says which operator masked it."""
    if decision.fallback is None or decision.field not in sample:
        return False
    value = sample[decision.field]
    own = get_operator(decision.operator).bind(decision.params, BindContext())
    return value is not None and own(value) == REDACTED


def _fallback_note(plan: MaskingPlan, decision: FieldDecision, value: object) -> dict[str, Any]:
    """Which operator masked the sample's value of a mobile field that holds no mobile number. The value
    is never repeated: it may be a real resident's phone."""
    applied = plan.applied(decision.field, value)
    name = decision.field
    if isinstance(applied, FallbackDecision):
        rule = applied.source.removeprefix("rule:")
        zh = (
            f"样例中字段 {name} 的值不是手机号，而是固定电话：按固定电话规则 {rule}（算子 "
            f"{applied.operator}）脱敏，显示的与固定电话字段相同。"
        )
        en = (
            f"the sample's {name} is a landline, not a mobile number: masked by the landline rule {rule} "
            f"(operator {applied.operator}), as a landline field would be."
        )
    else:
        zh = f"样例中字段 {name} 的值既不是手机号也不是固定电话，无法识别，整体隐藏（***）。"
        en = f"the sample's {name} is neither a mobile nor a landline number: unrecognised, redacted (***)."
    return {
        "field": name,
        "operator": applied.operator,
        "source": applied.source if isinstance(applied, FallbackDecision) else "fail-closed:unrecognised",
        "message_zh": zh,
        "message_en": en,
    }


def _positions(names: tuple[str, ...], spec: DatasetSpec) -> dict[str, int]:
    """Each of ``names`` not in the catalog of ``spec``, with the (1-based) position it is first given at."""
    out: dict[str, int] = {}
    for at, name in enumerate(names, 1):
        if name not in spec.fields:
            out.setdefault(name, at)
    return out


def _unnamed(entry: dict[str, object], unknown: Mapping[str, int]) -> dict[str, object]:
    """A plan entry, an uncatalogued field's by its position among the fields instead of its name."""
    name = entry["field"]
    if not isinstance(name, str) or name not in unknown:
        return entry
    return {**entry, "field": None, "position": unknown[name], "position_in": "fields"}


def _catalog_hint(spec: DatasetSpec) -> tuple[str, str]:
    """Where a steward finds the catalogued names (a typed name not among them is not shown back)."""
    return (
        f"目录中的字段名见 grassroots masking catalog --dataset {spec.name}"
        f"（GET /api/v1/masking/catalog?dataset={spec.name}）",
        f"The catalogued field names are listed by grassroots masking catalog --dataset {spec.name}"
        f" (GET /api/v1/masking/catalog?dataset={spec.name})",
    )


_NOT_SHOWN_ZH = "（不是目录中的字段名，不予显示）"
_NOT_SHOWN_EN = "(not a catalogued field name; not shown)"


def _items_notes(plan: MaskingPlan, sample: dict[str, Any], scanner: FreeTextScanner) -> list[dict[str, Any]]:
    """What the personal data found in the sample's free text got, by kind (masking.items): the profile's
    rule for a field of that type, or the scanner's own masking where that rule would show more. Counts and
    kinds only: the values are the sample's, perhaps a real resident's."""
    notes: list[dict[str, Any]] = []
    for d in plan.decisions:
        value = sample.get(d.field)
        if not d.items or not isinstance(value, str):
            continue
        found = Counter(f.entity_type for f in scanner.scan(value))
        if not found:
            continue
        items = [
            {"entity_type": i.entity_type, "count": found[i.entity_type], "operator": i.operator,
             "source": i.source}
            for i in d.items
            if i.entity_type in found
        ]  # fmt: skip
        zh = "；".join(
            f"{i['entity_type']} {i['count']} 处按 {i['source']}（算子 {i['operator']}）" for i in items
        )
        en = "; ".join(
            f"{i['count']} {i['entity_type']} by {i['source']} (operator {i['operator']})" for i in items
        )
        message_zh = (
            f"样例中字段 {d.field} 的自由文本里找到的个人信息：{zh}。"
            "scanner 表示按扫描器自身的脱敏（该方案对此类字段的规则显示得不比它少，或没有此类字段）。"
        )
        message_en = (
            f"personal data found in the sample's {d.field}: {en}. scanner: the scanner's own masking"
            " (the profile's rule for such a field shows no less, or there is no such field)."
        )
        notes.append({"field": d.field, "items": items, "message_zh": message_zh, "message_en": message_en})
    return notes


#: A name given where a catalogued field belongs, by where it was given: (how the note refers to it, what
#: became of it), in Chinese and in English. The sample's keys are noted only when every field is tried:
#: a key that is none of them (remark in a dataset without one, 姓名 for name) was left out without a word.
_UNCATALOGUED: dict[str, tuple[str, str, str, str]] = {
    "fields": (
        "fields 中第 {at} 个字段名",
        "按未编目字段处理（整体隐藏为 ***，不列入 masked），未试到任何规则",
        "field name number {at} in fields",
        "redacted as uncatalogued (***, left out of masked), no rule tried",
    ),
    "sample": (
        "样例中第 {at} 个键",
        "未试运行，不在 masked 中",
        "the sample's key number {at}",
        "not tried, left out of masked",
    ),
}


def _uncatalogued_note(spec: DatasetSpec, where: str, name: str, at: int, count: int) -> dict[str, Any]:
    which_zh, done_zh, which_en, done_en = _UNCATALOGUED[where]
    zh = (
        f"{which_zh.format(at=at)}{_NOT_SHOWN_ZH}不在数据集 {spec.name} 的目录中（本次共 {count} 个），"
        + done_zh
    )
    en = (
        f"{which_en.format(at=at)} {_NOT_SHOWN_EN} is not in the catalog of {spec.name} ({count} in all): "
        + done_en
    )
    return _field_note(spec, where, at, spec.field_meant(name), zh, en)


def _field_note(
    spec: DatasetSpec, where: str, at: int, meant: str | None, zh: str, en: str
) -> dict[str, Any]:
    """A note on a name that is not catalogued: never the name, its position in ``where`` (fields, sample
    or exemptions) instead, the field it most likely means and where the catalogued names are."""
    hint_zh, hint_en = _catalog_hint(spec)
    return {
        "field": None,
        "position": at,
        "position_in": where,
        "did_you_mean": meant,
        "message_zh": zh + (f"。是否指 {meant}？" if meant else "。") + hint_zh + "。",
        "message_en": en + (f". Did you mean {meant}? " if meant else ". ") + hint_en + ".",
    }


def _unused_exemption_note(
    spec: DatasetSpec, name: str, fields: tuple[str, ...], at: int | None
) -> dict[str, Any]:
    """An exemption for a field the dry-run does not try (a typo, idnumber=aes_gcm) changes nothing: the
    plan shows the rule's operator, and a steward reading it would think the exemption was tried. A
    catalogued field is named; anything else by its position among the exemptions (``at``)."""
    meant = field_code_meant(name, fields)
    if at is None:
        # A catalogued field: what it might mean is a field tried, never itself ("是否指 name？").
        zh = f"例外（exemption）所指的字段 {name} 不在本次试运行的字段中，未使用，计划中仍是规则的算子"
        en = f"the exemption for field {name} was not used: {name} is not among the fields tried, rules apply"
        return {
            "field": name,
            "did_you_mean": meant,
            "message_zh": zh + (f"。是否指 {meant}？" if meant else "。"),
            "message_en": en + (f". Did you mean {meant}?" if meant else "."),
        }
    zh = (
        f"例外（exemption）中第 {at} 项所指的字段名{_NOT_SHOWN_ZH}不在数据集 {spec.name} 的目录中，"
        "也不在本次试运行的字段中，未使用，计划中仍是规则的算子"
    )
    en = (
        f"exemption number {at} {_NOT_SHOWN_EN} names no field in the catalog of {spec.name} and none of"
        " the fields tried: not used, rules apply"
    )
    return _field_note(spec, "exemptions", at, meant or spec.field_meant(name), zh, en)


# -- unmask ----------------------------------------------------------------------------------------


#: The longest value unmask takes. An ``aes_gcm`` envelope is base64 of the value's UTF-8 bytes plus 63
#: (nonce, tag, a resident's sealed ref): 1,024 characters held a remark of about 230 Chinese characters, so a
#: longer one served to a cadre could never be opened; 65,536 hold about 16,000, far past any registry's
#: free-text field, and stay well inside ``GRASSROOTS_MAX_BODY_BYTES``.
MAX_UNMASK_VALUE_CHARS = 65_536


#: An envelope context: a dotted name, never free text (it is written to the audit log).
_CONTEXT = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


def _irreversible_form(value: str) -> tuple[str, str] | None:
    """What a one-way masking operator made of ``value``, if that is what it is (masking.operators):
    ``*`` is what cn_id, mobile, partial, name, redact... put in place of what they hide; ``ps:`` starts
    an HMAC pseudonym (a keyed hash). Neither has anything behind it to reverse."""
    if "*" in value:
        return "遮盖后的结果（含 *）", "a masked value (it holds *)"
    if value.startswith("ps:"):
        return "关键字哈希假名（ps: 开头）", "an HMAC pseudonym (starting ps:)"
    return None


class UnmaskBody(StrictBody):
    value: str = Field(max_length=MAX_UNMASK_VALUE_CHARS)
    dataset: str = Field(max_length=64)
    field: str = Field(max_length=64)
    purpose: str | None = Field(None, max_length=2000, json_schema_extra=text_schema(required=True))
    method: Literal["aes_gcm", "ff1_id"] | None = None
    key_id: str | None = Field(None, max_length=32)
    context: str | None = Field(None, max_length=128, json_schema_extra={"pattern": ecma_pattern(_CONTEXT)})

    @field_validator("value")
    @classmethod
    def _trimmed(cls, value: str) -> str:
        # Copied from a terminal or a table, a value often brings a space or a line break along: read as
        # part of it, an envelope was taken for an FF1 pseudonym and answered "name the key id".
        return value.strip()


def _unmask_event(
    runtime: Runtime,
    principal: Principal,
    body: UnmaskBody,
    *,
    kind: str,
    outcome: Outcome,
    reason: str,
    request_id: str | None,
    details: dict[str, Any],
) -> AuditEvent:
    catalogued = body.field if runtime.catalog.datasets.get(body.dataset) is not None else None
    return AuditEvent(
        kind=kind,
        outcome=outcome,
        actor=principal.user_id,
        actor_org=principal.org,
        actor_roles=tuple(principal.roles),
        dataset=body.dataset if catalogued else None,
        fields=(body.field,) if catalogued and runtime.catalog.field(body.dataset, body.field) else (),
        reason=reason,
        request_id=request_id,
        # The value itself is not recorded, only a keyed ref of it (so "which value?" can be answered
        # by someone who holds it, PIPL art. 56), never the clear text.
        details={"value_ref": runtime.pseudonymizer.ref(body.value), **details},
    )


def _resident_of(subject: bytes | None) -> str | None:
    """The resident's audit ref an envelope was sealed with (the data path seals `packed_ref`s), if any."""
    if subject is None:
        return None
    try:
        return unpacked_ref(subject)
    except ValueError:
        # Authenticated, so the gateway sealed it: no ref means none can be recorded, and then no value.
        raise UnmaskError("密文格式无效", "the envelope's resident reference is malformed") from None


async def _served_from(runtime: Runtime, id_number: str, dataset: str) -> bool:
    """Whether the audit log shows `id_number` served from `dataset` (refs under every kept key)."""
    refs = runtime.lookup_refs(normalise_id_number(id_number))
    try:
        return await asyncio.to_thread(served_from_dataset, runtime.engine, refs, dataset)
    except AuditUnavailable:
        raise AuditLogUnavailable() from None


async def _ff1_key_that_served(
    runtime: Runtime, keys: KeyRing, body: UnmaskBody, tried: str, capability: Unmask
) -> str | None:
    """The other key of the ring (dataset-scoped, newest first) under which the FF1 pseudonym decodes to a
    number the dataset served, if one does: the key the pseudonym was made with. Nothing is revealed; the
    caller refuses either way."""
    for other in reversed(keys.key_ids):
        if other == tried or not keys.is_scoped(other):
            continue
        try:
            candidate = ff1_id_reveal(body.value, keys, key_id=other, dataset=body.dataset, unmask=capability)
        except MaskingError:
            continue
        if await _served_from(runtime, candidate, body.dataset):
            return other
    return None


def _field_served_in(runtime: Runtime, keys: KeyRing, body: UnmaskBody, capability: Unmask) -> str | None:
    """The other catalogued field of the dataset whose (default) context the envelope opens under, if one
    does: the field it was served in. Nothing is revealed; the caller refuses either way."""
    spec = runtime.catalog.datasets.get(body.dataset)
    others = [name for name in (spec.fields if spec is not None else {}) if name != body.field]
    context = envelope_context_among(
        body.value,
        keys,
        dataset=body.dataset,
        contexts=[f"{body.dataset}.{name}" for name in others],
        unmask=capability,
    )
    return None if context is None else context.split(".", 1)[1]


async def _append(runtime: Runtime, event: AuditEvent) -> int:
    try:
        receipt = await runtime.appender.append(with_request_source(event))
    except AuditUnavailable:
        raise AuditLogUnavailable() from None
    return receipt.seq


#: Checked before the body is read (PermissionFirstRoute): a caller without it gets 403 and an
#: ``admin.refused`` event naming only who asked and this permission, never the value sent, and learns
#: nothing of the body's schema; only a permitted caller is told what is wrong with a malformed body.
_MAY_UNMASK = Permitted("unmask", "invoke", doing=("还原脱敏数据", "reverse masked values"))


@router.post("/unmask")
async def unmask(
    principal: Annotated[Principal, Depends(_MAY_UNMASK)],
    body: UnmaskBody,
    request: Request,
    runtime: RuntimeDep,
) -> JSONResponse:
    """Reverse a reversible mask. Refusals are audited too; the clear value is returned only after its
    audit event is durably written (issue 4)."""
    request_id = request_id_of(request)

    async def refuse(error: GatewayError) -> NoReturn:
        event = _unmask_event(
            runtime,
            principal,
            body,
            kind="masking.unmask",
            outcome=Outcome.REFUSED,
            reason=error.code,
            request_id=request_id,
            details={},
        )
        await _append(runtime, event)
        raise error

    try:
        purpose = _checked_text(body.purpose, "还原用途", "purpose", required=True)
    except InvalidRequest as exc:
        await refuse(exc)
    if runtime.catalog.datasets.get(body.dataset) is None or not runtime.catalog.field(
        body.dataset, body.field
    ):
        await refuse(
            NotFound(
                "数据集或字段未编目，无法还原。",
                "The dataset or field is not catalogued; nothing to unmask.",
                code="unknown_field",
            )
        )
    owner = runtime.catalog.datasets[body.dataset].owner_department
    if principal.department is None or principal.department != owner:
        # Only a steward of the department that owns the data reverses its masks (the README's "data
        # stewards only", read as least privilege: GB/T 35273-2020 §7.1; PIPL art. 51). No exception
        # for a platform admin: the role holds no unmask permission, and administering the platform is
        # not a need to read any department's plain values.
        await refuse(
            Forbidden(
                "只有数据所属部门的数据管理员才能还原该数据集的脱敏数据。",
                "Only a data steward of the department that owns this dataset may unmask its values.",
                code="not_owning_department",
            )
        )
    if not body.value:
        await refuse(
            InvalidRequest(
                "请填写要还原的值：数据接口返回的 aes_gcm 密文（以 enc: 开头）或身份证号假名。",
                "value is required: the aes_gcm envelope (starting enc:) or the ID-number pseudonym the "
                "data API returned.",
                code="missing_value",
            )
        )
    if is_dry_run_value(body.value):
        # A dry-run sample under a throwaway key: no real value behind it, and an FF1 one "unmasked"
        # with a real key would come back as a plausible but wrong ID number, audited as a success.
        dry_run = DryRunValueError()
        await refuse(InvalidRequest(dry_run.message_zh, dry_run.message_en, code=dry_run.code))
    keys = runtime.keys
    if keys is None:
        raise ServiceUnavailable("密钥环未配置，无法还原。", "No key ring is configured.", code="no_key_ring")
    method = body.method or ("aes_gcm" if body.value.startswith("enc:") else "ff1_id")
    spec = runtime.catalog.field(body.dataset, body.field)
    irreversible = _irreversible_form(body.value) if method == "ff1_id" else None
    if irreversible is not None:
        # A value a one-way operator made (310210************, ps:k1:…) was answered as if it were an FF1
        # pseudonym missing its key id, sending the steward to look for a key that cannot help.
        form_zh, form_en = irreversible
        await refuse(
            InvalidRequest(
                f"所提交的值是{form_zh}，这种脱敏不可逆，无法还原，本次未还原任何内容。只有 aes_gcm 密文"
                "（以 enc: 开头）和 FF1 身份证号假名（形如身份证号，不含 *）可以还原；如需核实原值，"
                "请按规定向数据所属部门的业务系统查询。",
                f"The value submitted is {form_en}: that masking is one-way and cannot be reversed; nothing "
                "was unmasked. Only an aes_gcm envelope (starting enc:) and an FF1 ID-number pseudonym "
                "(shaped like an ID number, no *) can be; to check the original value, ask the owning "
                "department's system as the rules provide.",
                code="not_reversible",
            )
        )
    if method == "ff1_id" and (spec is None or spec.semantic_type is not SemanticType.ID_NUMBER):
        # FF1 pseudonyms exist only for ID numbers (the ff1_id operator redacts anything else): for any
        # other field the answer speaks of that field, not of ID numbers and key ids. Its catalogued name
        # and title are not personal data.
        title = f"{spec.title}（{body.field}）" if spec is not None and spec.title else body.field
        await refuse(
            InvalidRequest(
                f"字段 {title} 只能还原 aes_gcm 密文（以 enc: 开头），所提交的值不是这种密文，"
                "无法还原。请核对该值是否取自这个字段的脱敏结果。",
                f"Field {body.field} can be unmasked only from an aes_gcm envelope (starting enc:), "
                "and the value submitted is not one. Check that the value came from this field's masked "
                "output.",
                code="not_reversible",
            )
        )
    if method == "ff1_id" and not body.key_id:
        await refuse(
            InvalidRequest(
                "还原身份证号假名须指明生成它的密钥编号 key_id（命令行：--key-id）。密钥环中的编号："
                f"{'、'.join(keys.key_ids)}，现用 {keys.active_key_id}；假名是在哪把密钥启用时读取到的，"
                "就用哪一把。",
                "Name the key id (key_id; on the command line --key-id) the FF1 pseudonym was made with. "
                f"Key ids in the ring: {', '.join(keys.key_ids)}, active {keys.active_key_id}; use the one "
                "that was active when the pseudonym was read.",
                code="missing_key_id",
            )
        )
    if method == "ff1_id":
        key_id = body.key_id or ""
    else:
        # enc:v<n>:<key id>:<body> (masking.reversible); a malformed envelope fails in open_envelope.
        parts = body.value.split(":")
        key_id = parts[2] if len(parts) == 4 else ""
    if key_id not in keys.key_ids:
        # Only a key id the ring holds is written to the log: the value submitted may hold anything.
        await refuse(
            InvalidRequest(
                "密钥编号不存在，无法还原；请核对密文或 key_id。",
                "No such key id in the key ring; check the value or key_id.",
                code="unknown_key",
            )
        )
    if method == "ff1_id" and not keys.is_scoped(key_id):
        # A key older than dataset binding made pseudonyms that belong to no dataset: whoever names a
        # dataset of their own would get the number. None of them is reversed (masking.keys).
        unbound = UnscopedKeyError()
        await refuse(InvalidRequest(unbound.message_zh, unbound.message_en, code=unbound.code))
    # The envelope is bound to a context (by default "<dataset>.<field>"). The log must say which field
    # was opened, so a context that names another catalogued field than the one requested is refused,
    # and the context used is recorded with the event.
    context = body.context or f"{body.dataset}.{body.field}"
    named = context.split(".", 1)
    if not _CONTEXT.fullmatch(context) or (
        len(named) == 2
        and runtime.catalog.datasets.get(named[0]) is not None
        and runtime.catalog.field(named[0], named[1])
        and context != f"{body.dataset}.{body.field}"
    ):
        await refuse(
            InvalidRequest(
                "还原上下文须与所申请的数据集和字段一致。",
                "The unmask context must match the dataset and field requested.",
                code="context_mismatch",
            )
        )
    if (
        method == "aes_gcm"
        and body.value.startswith("enc:v1:")
        and not envelope_names_dataset(context, body.dataset)
    ):
        # An envelope from before dataset binding whose context names no dataset could be any
        # department's: refused before anything is recorded as allowed (masking.reversible).
        legacy = UnboundEnvelopeError()
        await refuse(InvalidRequest(legacy.message_zh, legacy.message_en, code=legacy.code))
    seq = await _append(
        runtime,
        _unmask_event(
            runtime,
            principal,
            body,
            kind="masking.unmask",
            outcome=Outcome.ALLOWED,
            reason="unmask",
            request_id=request_id,
            details={"purpose": purpose, "method": method, "key_id": key_id, "context": context},
        ),
    )
    capability = Unmask(actor=principal.user_id, purpose=purpose, audit_event_id=str(seq))

    async def failed(error: GatewayError, outcome: Outcome, **details: str) -> NoReturn:
        # Say in the log that the authorised unmask produced nothing (the event above says "allowed").
        event = _unmask_event(
            runtime,
            principal,
            body,
            kind="masking.unmask_failed",
            outcome=outcome,
            reason=error.code,
            request_id=request_id,
            details={"authorised_by_event": seq, **details},
        )
        await _append(runtime, event)
        raise error

    clear, sealed_with, reversal_error = "", None, None
    try:
        if method == "aes_gcm":
            opened = open_envelope(
                body.value,
                keys,
                dataset=body.dataset,
                context=context,
                unmask=capability,
            )
            clear, sealed_with = opened.value, _resident_of(opened.subject)
        else:
            clear = ff1_id_reveal(body.value, keys, key_id=key_id, dataset=body.dataset, unmask=capability)
    except MaskingError as exc:
        reversal_error = GatewayError(exc.message_zh, exc.message_en, code=exc.code, status_code=422)
    if reversal_error is not None and method == "aes_gcm" and body.context is None:
        served_in = _field_served_in(runtime, keys, body, capability)
        if served_in is not None:
            # The envelope is this dataset's, bound to another of its fields: most often an item found in
            # a free-text field (a mobile in a remark) asked for under the field it looked like. Said so,
            # rather than "tampered", naming the field to ask under; its value is not handed out (nor is
            # its resident named: no unmask_revealed for a request that revealed nothing).
            served_spec = runtime.catalog.field(body.dataset, served_in)
            named_zh = (
                f"{served_spec.title}（{served_in}）" if served_spec and served_spec.title else served_in
            )
            wrong_field = InvalidRequest(
                f"该密文是在字段 {named_zh} 中返回的，不属于字段 {body.field}：请把 field（命令行 --field）"
                f"改为 {served_in} 后重试。本次未还原任何内容。",
                f"This envelope was served in field {served_in}, not {body.field}: set field (on the command "
                f"line --field) to {served_in} and try again. Nothing was unmasked.",
                code="wrong_field",
            )
            await failed(wrong_field, Outcome.REFUSED, served_in_field=served_in)
    if reversal_error is not None:
        await failed(reversal_error, Outcome.ERROR)
    if method == "ff1_id" and not await _served_from(runtime, clear, body.dataset):
        made_with = await _ff1_key_that_served(runtime, keys, body, key_id, capability)
        if made_with is not None:
            # The pseudonym is this dataset's, under another key of the ring: after a rotation the key
            # named is most often the active one, not the one active when the value was read. Said so,
            # rather than "not issued for this dataset", which sent the steward to another department.
            wrong_key = InvalidRequest(
                f"该身份证号假名不是用密钥 {key_id} 生成的，而是用 {made_with}："
                f"请把 key_id（命令行 --key-id）改为 {made_with} 后重试。本次未还原任何内容。",
                f"This ID-number pseudonym was not made with key {key_id} but with {made_with}: set key_id "
                f"(on the command line --key-id) to {made_with} and try again. Nothing was unmasked.",
                code="wrong_key_id",
            )
            await failed(wrong_key, Outcome.REFUSED)
        # FF1 has no integrity check: under another dataset's key the pseudonym decodes to an unrelated
        # well-formed number. Every response that carried a real pseudonym was audited with its residents'
        # refs before it was sent, so a number this dataset never served was not issued for it: the
        # request names the wrong dataset (another department's value claimed under one's own dataset, or
        # a mistake). Refused, so nobody acts on a plausible wrong number; recorded without the value.
        mismatch = Forbidden(
            "该假名不是为所申请的数据集生成的，不能以这个数据集的名义还原。请核对假名取自哪个数据集；"
            "其他部门数据集中的值，请由该数据集所属部门的数据管理员还原。",
            "This pseudonym was not issued for the dataset requested and cannot be unmasked in its name. "
            "Check which dataset the pseudonym came from; a value from another department's dataset is "
            "unmasked by a data steward of that department.",
            code="not_issued_for_dataset",
        )
        await failed(mismatch, Outcome.REFUSED)
    view = runtime.dataset(body.dataset)
    if view is not None and view.subject_field == body.field:
        # The value is a resident's ID number: it says whose it is.
        resident: str | None = runtime.pseudonymizer.ref(normalise_id_number(clear))
    else:
        # Any other field says whose it is only when its envelope was sealed with her (enc:v3:, from a
        # record naming her); a v2 envelope (a dry-run's, or from before) names nobody.
        resident = sealed_with
    if resident is not None:
        # Say whose value it is (by ref) before it is handed out, so her complaint and her transparency
        # list show that a steward read it in the clear (PIPL Art. 45). Not written, not handed out (503).
        await _append(
            runtime,
            AuditEvent(
                kind=UNMASK_REVEALED_KIND,
                outcome=Outcome.ALLOWED,
                actor=principal.user_id,
                actor_org=principal.org,
                actor_roles=tuple(principal.roles),
                dataset=body.dataset,
                fields=(body.field,),
                record_count=1,
                subject_refs=(resident,),
                reason="unmask",
                request_id=request_id,
                details={"authorised_by_event": seq, "method": method},
            ),
        )
    return JSONResponse(
        {"value": clear, "method": method, "key_id": key_id, "audit_event_seq": seq},
        headers={"Cache-Control": "no-store"},
    )


# -- drift -----------------------------------------------------------------------------------------


@router.get("/drift")
async def drift(
    _principal: Annotated[Principal, Depends(Permitted("masking", "read"))],
    runtime: RuntimeDep,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
    dataset: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """Catalog-drift alerts of the last ``days``: per dataset, field and entity type, how often
    undeclared personal data was found, when, and how the field is classified now."""
    since = datetime.now(UTC) - timedelta(days=days)

    def work() -> list[tuple[int, datetime, str | None, str]]:
        stmt = (
            select(AuditEventRow.seq, AuditEventRow.occurred_at, AuditEventRow.dataset, AuditEventRow.body)
            .where(
                AuditEventRow.kind.in_(("data.list", "data.read")),
                AuditEventRow.occurred_at >= since,
                AuditEventRow.body.contains('"catalog_drift"'),
            )
            .order_by(AuditEventRow.seq.desc())
            .limit(_DRIFT_SCAN_LIMIT)
        )
        if dataset is not None:
            stmt = stmt.where(AuditEventRow.dataset == dataset)
        with runtime.sessions() as session:
            return [(r[0], r[1], r[2], r[3]) for r in session.execute(stmt)]

    rows = await asyncio.to_thread(work)
    catalog = runtime.catalog
    alerts: dict[tuple[str, str, str], dict[str, Any]] = {}
    for seq, stored_at, _dataset, raw in rows:
        occurred_at = stored_at if stored_at.tzinfo else stored_at.replace(tzinfo=UTC)  # SQLite: naive UTC
        details = json.loads(raw).get("details", {})
        for item in details.get("catalog_drift", []):
            key = (str(item.get("dataset")), str(item.get("field")), str(item.get("entity_type")))
            entry = alerts.get(key)
            if entry is None:
                spec = catalog.datasets.get(key[0])
                fspec = spec.fields.get(key[1]) if spec is not None else None
                entry = alerts[key] = {
                    "dataset": key[0],
                    "field": key[1],
                    "entity_type": key[2],
                    "findings": 0,
                    "responses": 0,
                    "first_seen": occurred_at.isoformat(),
                    "last_seen": occurred_at.isoformat(),
                    "last_event_seq": seq,
                    "level_now": None if fspec is None else fspec.level.document_value,
                    "semantic_type_now": None if fspec is None else fspec.semantic_type.value,
                    # Classified at level 3+ since: the rules mask it now and DLP no longer needs to.
                    "status": "classified" if fspec is not None and fspec.level >= Level.L3 else "open",
                }
            entry["findings"] += int(item.get("count", 0))
            entry["responses"] += 1
            entry["first_seen"] = occurred_at.isoformat()  # rows come newest first
    return {
        "since": since.isoformat(),
        "items": sorted(alerts.values(), key=lambda a: (a["status"] != "open", -a["last_event_seq"])),
        "truncated": len(rows) >= _DRIFT_SCAN_LIMIT,
    }
