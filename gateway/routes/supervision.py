"""Supervision over HTTP: audit queries, reports, anomalies, the monthly report, complaints -> incidents,
resident transparency, proofs and checkpoints, retention, archives and pruning.

Who: roles ``supervisor`` and ``auditor`` (casbin resource ``audit``: ``read`` to look, ``register`` to
take a complaint, ``review`` to handle an incident, ``verify`` for checkpoints and archives). A
supervisor sees the events of their own organisation subtree (division-code prefix), and the complaints
and incidents of it: a case belongs to the office that registered it, and one outside the caller's
subtree answers 404 like a case that does not exist (the attempt recorded as refused). The evidence of a
case and transparency lookups follow the person, wherever the reader sat.

Nothing here returns plain personal data: a resident's ID number arrives in a request body, is turned
into the keyed HMAC ref at once (``runtime.pseudonymizer`` over ``audit.normalise_id_number``), and is
never stored, logged or echoed. Every supervisory act is itself an audit event.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import functools
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import Field
from stdnum.cn import ric

import audit
from audit import (
    AnchorError,
    AnomalyContext,
    AnomalyRules,
    AnomalyRulesError,
    ArchiveError,
    CaseOutsideScope,
    CheckpointError,
    Deadlines,
    EventQuery,
    GrantWindow,
    InvalidProofError,
    Outcome,
    PrunedRangeError,
    PruneRefused,
    SupervisionError,
    normalise_id_number,
    org_prefix,
)
from audit.anomaly import RULES as ANOMALY_RULES
from audit.checkpoints import log_size
from audit.events import format_timestamp
from audit.monthly import ROLE_LABELS_ZH, UNKNOWN_NAMES_ZH
from audit.query import beijing_clock
from audit.reports import UNKNOWN
from audit.workdays import HolidayFileError
from gateway.admin_support import (
    ORG_SCHEMA,
    PermissionFirstRoute,
    Permitted,
    StrictBody,
    checked_org,
    record_read,
    supervised_prefix,
    unit_of_work,
)
from gateway.answer_notes import note_headers
from gateway.app import get_runtime, request_id_of
from gateway.auth.oidc import Principal
from gateway.errors import Forbidden, GatewayError, InvalidRequest, NotFound, ServiceUnavailable
from gateway.evidence import PersonRecords, find_person_records
from gateway.free_text import refuse_personal_data
from gateway.openapi_doc import other_formats
from gateway.refusal_bursts import request_source, source_asked
from gateway.routes.admission_api import department_names
from gateway.runtime import Runtime
from gateway.settings import RunMode
from gateway.supervision_tasks import (
    SupervisionSettings,
    archive_dir,
    archiving_lock,
    deadlines_of,
    signer_for,
)
from gateway.time_inputs import DueAt, Month, SinceTime, UntilTime, checked_range
from grassroots_common.divisions import BOUNDARIES
from policies import GrantRepository, GrantStatus
from policies.divisions import normalize

_log = logging.getLogger("gateway.supervision")
router = APIRouter(prefix="/api/v1/supervision", tags=["supervision"], route_class=PermissionFirstRoute)

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SinceQuery = Annotated[
    SinceTime | None,
    Query(description="from this day (2026-12-01, 2026年12月1日: Beijing time) or RFC 3339 time with offset"),
]
UntilQuery = Annotated[
    UntilTime | None,
    Query(description="through this day (Beijing time, included) or until this RFC 3339 time (excluded)"),
]
AuthHeader = Annotated[str | None, Header()]
#: The largest event sequence number the log can hold (its ``seq`` is a signed 64-bit BIGINT, in SQLite
#: and PostgreSQL alike): a larger cursor reached the database driver, which cannot bind it (a 500).
SEQ_MAX = 2**63 - 1
RESOURCE = "audit"

#: What each refusal code of the data path means, for the printed monthly report (定期通报): its
#: readers are officials, not developers. A code not listed is shown as it is.
REFUSAL_REASONS_ZH: Mapping[str, str] = {
    "no_permission": "岗位无权查看该数据",
    "unknown_scenario": "使用场景不存在",
    "missing_scenario": "未说明使用场景",
    "invalid_scenario": "场景代码有误",
    "repeated_parameter": "查询参数重复",
    "unknown_parameter": "查询参数不被接受",
    "scenario_not_for_role": "该场景不由此岗位办理",
    "scenario_not_for_dataset": "该场景不需要此数据",
    "outside_hours": "不在允许查看的时段",
    "grant_revoked": "授权已撤销",
    "grant_expired": "授权已过期",
    "no_active_grant": "没有有效授权",
    "field_not_granted": "字段未获授权",
    "quota_exceeded": "超出每日限额",
    "too_many_records": "超出单次条数上限",
    "page_size_over_limit": "每页条数超过上限",
    "invalid_page": "分页参数有误",
    "invalid_page_size": "分页参数有误",
    "unknown_dataset": "数据集不存在",
    "not_found": "记录不存在或不在管辖范围内",
    "personal_data_in_record_id": "以身份证号或手机号代替记录编号",
    "trailing_slash": "接口地址末尾多了斜杠",
    "grid_scope_unassigned": "未分配微网格",
    "grid_scope_invalid": "所分配微网格不在本单位",
    "grid_scope_unsupported": "数据集未按微网格划分",
    "reidentification_risk": "可能识别出个人，已拒绝",
    "system_not_registered": "部门系统未登记",
    "system_not_approved": "部门系统未通过准入联审",
    "system_suspended": "部门系统准入已暂停",
    "system_revoked": "部门系统准入已撤销",
    "system_lapsed": "部门系统准入已到期",
    # Sign-in refusals (gateway.auth.oidc.AuthErrorCode, and the two the gateway adds): their requests are
    # charged to no organisation and counted in the reports of the platform's own jurisdiction.
    "missing_token": "未携带登录凭证",
    "session_revoked": "登录已退出或已被撤销",
    "invalid_token": "登录凭证无效",
    "expired_token": "登录凭证已过期",
    "token_not_yet_valid": "登录凭证尚未生效",
    "wrong_audience": "登录凭证不是签发给本网关的",
    "wrong_issuer": "登录凭证的签发方不受信任",
    "unsupported_algorithm": "登录凭证的签名算法不被接受",
    "unknown_key": "登录凭证的签名密钥未知",
    "malformed_token": "登录凭证格式有误",
    "insufficient_claims": "登录凭证缺少必要信息",
    "personal_data_in_subject": "登录凭证的用户标识含个人信息",
    "org_outside_issuer": "所属组织不在签发方的辖区内",
    "token_lifetime_too_long": "登录凭证有效期过长",
    "idp_unavailable": "统一身份认证服务暂不可用",
}


# -- helpers ---------------------------------------------------------------------------------------


def _settings() -> SupervisionSettings:
    return SupervisionSettings()


@contextlib.contextmanager
def supervision_errors() -> Iterator[None]:
    """Library errors of the supervision area -> the one JSON error shape."""
    try:
        yield
    except SupervisionError as exc:
        status = {"not_found": 404, "conflict": 409}.get(exc.kind, 422)
        raise GatewayError(exc.message_zh, exc.message_en, code=exc.code, status_code=status) from None
    except AnomalyRulesError as exc:
        raise bad_rule(exc) from None
    except ArchiveError as exc:
        raise GatewayError(
            f"无法归档：{exc.message_zh}。",
            f"Cannot archive: {exc.message_en}.",
            code="archive_refused",
            status_code=409,
        ) from None
    except PruneRefused as exc:
        raise GatewayError(
            "无法清理：" + "；".join(exc.plan.reasons_zh) + "。",
            f"Prune refused: {exc}",
            code="prune_refused",
            status_code=409,
            extra={"plan": exc.plan.to_json()},
        ) from None
    except AnchorError as exc:
        raise GatewayError(
            "清理锚点无法验证，请立即运行 grassroots audit verify。",
            f"The prune anchor does not verify: {exc}",
            code="anchor_invalid",
            status_code=409,
        ) from None
    except audit.ChainBusy:  # never the lock file's path or holder: an operator reads those on the host
        raise GatewayError(
            "无法签发检查点：另一次密钥轮换、恢复确认或检查点写入正在进行，本次未写入任何内容，请稍后重试。",
            "Checkpoint not written: another key rotation, restore acceptance or checkpoint write is in "
            "progress; nothing was written. Try again shortly.",
            code="checkpoint_chain_busy",
            status_code=503,
            headers={"Retry-After": "30"},
        ) from None
    except audit.KeyRetired as exc:
        raise GatewayError(
            f"无法签发检查点：{exc.message_zh}。",
            f"Checkpoint not written: {exc}.",
            code="checkpoint_key_retired",
            status_code=409,
        ) from None
    except CheckpointError as exc:
        raise GatewayError(
            "无法签发检查点：日志与上一个签名检查点不一致，请立即运行 grassroots audit verify。",
            f"Checkpoint refused: {exc}",
            code="checkpoint_refused",
            status_code=409,
        ) from None


def _pruned_note(runtime: Runtime) -> dict[str, Any] | None:
    """For answers that may reach into a pruned period: which archives hold the events no longer here."""
    return audit.archives_for_pruned(runtime.engine)


def _pruned_part(runtime: Runtime, since: datetime | None) -> dict[str, Any]:
    """For an events query, a report or an anomaly run whose time range reaches into the pruned period:
    which archives hold the events it could not see, and a note saying so. Without it, counts over the
    pruned months read as complete (zero accesses there), as a pruned month's 通报 did."""
    pruned = audit.archives_for_pruned(runtime.engine)
    if pruned is None:
        return {}
    months = sorted(a["month"] for a in pruned.get("archives", []) if a.get("month"))
    if since is not None and months and since >= audit.month_bounds(months[-1])[1]:
        return {}
    through = pruned.get("pruned_through_seq")
    span_zh, span_en = "部分早期事件", "early events"  # the anchor cannot be read: how far is not known
    if months and through:
        span_zh = f"第 1 至 {through} 号事件（{months[0]} 至 {months[-1]}）"
        span_en = f"events 1..{through} ({months[0]} to {months[-1]})"
    return {
        "archived_period": pruned,
        "pruned_note": f"日志中{span_zh}已超过保存期并从数据库清理，本结果未包含这些事件；"
        "它们保存在 archived_period 所列的归档中（grassroots supervise archive-verify 可核验）。",
        "pruned_note_en": f"The log's {span_en} were pruned after the retention period and are not in this "
        "answer; they are kept in the archives archived_period lists (grassroots supervise archive-verify "
        "checks them).",
    }


def _scope(principal: Principal, org: str | None) -> str:
    """The organisation subtree to show: the caller's own, or a part of it (404 outside it)."""
    wanted = supervised_prefix(principal, org)
    return wanted.ljust(12, "0") if wanted else "000000000000"


def _org_arg(scope: str) -> str | None:
    return None if scope == "000000000000" else scope


async def _audit(
    runtime: Runtime,
    principal: Principal,
    request: Request,
    kind: str,
    details: Mapping[str, Any],
    outcome: Outcome = Outcome.OK,
) -> None:
    """Looking at the log is recorded in the log (GB/T 35273-2020 §11.2: audit the auditors)."""
    await record_read(runtime, principal, kind, details, outcome=outcome, request_id=request_id_of(request))


def _subject_ref(runtime: Runtime, id_number: str) -> str:
    """The resident's keyed ref; the number itself is dropped here and never echoed (not even in errors)."""
    normalised = normalise_id_number(id_number)
    if not ric.is_valid(normalised):
        why_zh, why_en = _id_number_problem(normalised)
        raise InvalidRequest(
            f"身份证号码不正确：{why_zh}。请与居民逐位核对后重新输入。",
            f"The ID number is not valid (GB 11643): {why_en}. Check it digit by digit with the resident "
            "and enter it again.",
            code="invalid_id_number",
        )
    return runtime.pseudonymizer.ref(normalised)


def _id_number_problem(number: str) -> tuple[str, str]:
    """What is wrong with a resident's ID number, so the hotline knows what to ask again (GB 11643-1999: 18
    characters, birth date in 7-14, check character last). Says lengths and positions, never a digit."""
    if re.fullmatch(r"\d{15}", number):
        return (
            "这是 15 位的旧号码，请询问居民现行的 18 位身份证号码",
            "this is an old 15-digit number; ask the resident for the current 18-character one",
        )
    if not re.fullmatch(r"\d*X?", number):
        return (
            "只能包含数字，最后一位可以是 X",
            "it may hold digits only, with X allowed as the last character",
        )
    if len(number) != 18:
        return (f"应为 18 位，输入的是 {len(number)} 位", f"it has {len(number)} characters, not 18")
    try:
        date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return (
            "第 7 至 14 位的出生日期不是有效日期",
            "characters 7 to 14 are not a valid date of birth",
        )
    return (
        "最后一位校验码与前 17 位不符，可能有数字输错或前后颠倒",
        "the check character does not match the first 17: a digit may be mistyped or two swapped",
    )


def _lookup_refs(runtime: Runtime, id_number: str) -> list[str]:
    """The resident's refs under every kept audit-ref key (call after :func:`_subject_ref` validated the
    number): a search asks for all of them, so accesses recorded before a key rotation are found too."""
    return runtime.lookup_refs(normalise_id_number(id_number))


def _scenario_context(runtime: Runtime) -> tuple[dict[str, tuple[int, int]], dict[str, str], dict[str, str]]:
    scenarios = runtime.policy().scenarios
    hours = {s.code: (int(s.hours_allowed[0]), int(s.hours_allowed[1])) for s in scenarios}
    names = {s.code: s.name_zh for s in scenarios}
    departments = {name: info.owner_department for name, info in scenarios.datasets.items()}
    return hours, names, departments


#: The states of a grant that was once in force. A grant still requested, waiting for its second steward or
#: rejected never authorised a read: it has no window, so a read recorded under it is flagged.
_TOOK_EFFECT = frozenset({GrantStatus.APPROVED, GrantStatus.EXPIRED, GrantStatus.REVOKED})


def _grant_windows(runtime: Runtime) -> dict[str, GrantWindow]:
    """When each grant was in force, for the ``no_active_grant`` rule: from its ``valid_from`` (never before
    its last approval) to its end or revocation. A grant that never took effect has no window: counted
    from its request, a read recorded under it would look authorised to the supervisor."""
    with runtime.sessions() as session:
        grants = GrantRepository(session).list_grants()
    windows: dict[str, GrantWindow] = {}
    for g in grants:
        if g.status not in _TOOK_EFFECT or g.valid_from is None:
            continue
        until = g.valid_until
        if g.status is GrantStatus.REVOKED and g.updated_at is not None:
            until = min(until, g.updated_at) if until is not None else g.updated_at
        windows[g.grant_id] = GrantWindow(g.valid_from, until, break_glass=g.break_glass)
    return windows


def bad_rule(exc: AnomalyRulesError, defaults: AnomalyRules | None = None) -> InvalidRequest:
    """Say which part of a rule or setting is wrong and what it takes. Only names the library defines are
    repeated (``exc.rule``, ``exc.key``), never the query string as typed; with the rule settings in force,
    so the answer itself lists every key and its current value."""
    if exc.rule is not None and exc.key is not None and exc.needs is not None:
        zh = f"{exc.rule}.{exc.key} 的取值应为：{exc.needs[0]}"
        en = f"{exc.rule}.{exc.key} takes {exc.needs[1]}"
    elif exc.rule is not None:
        keys = list(defaults[exc.rule]) if defaults is not None else []
        zh = f"规则 {exc.rule} 没有这个设置项" + (f"，可设置：{'、'.join(keys)}" if keys else "")
        en = f"rule {exc.rule} has no such setting" + (f"; it has {', '.join(keys)}" if keys else "")
    else:
        zh = f"规则名只能是 {'、'.join(ANOMALY_RULES)}"
        en = f"a rule is one of {', '.join(ANOMALY_RULES)}"
    where_zh, where_en = "。", "."
    if defaults is not None:
        where_zh = "，可设置的项及当前取值列在 rules 中（本回答和每次查询的结果都有）。"
        where_en = ", every key and its current value under 'rules' (in this answer and in every result)."
    return InvalidRequest(
        f"异常规则参数有误：{zh}。设置写作 规则.设置项=值（例如 bulk_reading.min_records=200）{where_zh}",
        f"Invalid anomaly rule parameter: {en}. A setting looks like rule.key=value "
        f"(for example bulk_reading.min_records=200){where_en}",
        code="bad_rule",
        extra={"rules": defaults.to_json()} if defaults is not None else None,
    )


def _anomaly_inputs(runtime: Runtime, overrides: Mapping[str, Any]) -> tuple[AnomalyRules, AnomalyContext]:
    with supervision_errors():
        defaults = audit.load_anomaly_rules(_settings().anomaly_rules_path)
    try:
        rules = defaults.with_overrides(overrides)
    except AnomalyRulesError as exc:
        raise bad_rule(exc, defaults) from None
    hours, _, _ = _scenario_context(runtime)
    return rules, AnomalyContext(
        scenario_hours=hours, grants=_grant_windows(runtime), refs=runtime.audit_refs
    )


def _overrides(params: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidRequest(
                "规则参数写作 rule.key=value（例如 bulk_reading.min_records=200）。",
                "Rule settings look like rule.key=value (for example bulk_reading.min_records=200).",
                code="bad_rule",
            )
        out[key.strip()] = value.strip()
    return out


def _deadlines() -> Deadlines:
    """The configured periods on the holiday schedule; an unreadable holidays file is 503, never a
    deadline counted without it (fail closed)."""
    try:
        return deadlines_of(_settings())
    except HolidayFileError as exc:
        raise ServiceUnavailable(
            f"无法计算办理期限：{exc.message_zh}请运维人员修正 GRASSROOTS_HOLIDAYS_FILE 后重试。",
            f"Deadlines cannot be counted: {exc.message_en} Ask the operators to fix "
            "GRASSROOTS_HOLIDAYS_FILE and try again.",
            code="holidays_file_invalid",
        ) from None


def _now() -> datetime:
    return datetime.now(UTC)


@lru_cache(maxsize=1)
def _demo_world_divisions() -> tuple[tuple[str, str, str], ...]:
    """(code, name, level) of the demo world's divisions, built once per process."""
    from demoworld.world import build_world

    return tuple((d.code, d.name, d.level) for d in build_world().divisions)


def _division_names_from(path: Path | None, development: bool) -> Mapping[str, str]:
    if path is not None:
        try:
            return _division_names_file(path, path.stat().st_mtime_ns)
        except OSError:
            _log.warning("division names file unreadable; codes are shown alone")
            return {}
    return {code: name for code, name, _ in _demo_world_divisions()} if development else {}


@lru_cache(maxsize=4)
def _division_names_file(path: Path, mtime_ns: int) -> Mapping[str, str]:
    """The ``code,name`` file, read once per version of it (``mtime_ns`` keys the cache)."""
    names: dict[str, str] = {}
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.reader(f):
            if len(row) >= 2 and row[0].strip() and not row[0].lstrip().startswith("#"):
                with contextlib.suppress(ValueError):
                    names[normalize(row[0].strip())] = row[1].strip()
    return MappingProxyType(names)


def division_names(runtime: Runtime) -> Mapping[str, str]:
    """Division code (12 digits) -> name: ``GRASSROOTS_DIVISION_NAMES_FILE`` (``code,name`` lines), in
    development the demo world's divisions; empty otherwise (codes are then shown alone)."""
    path = _settings().division_names_file
    return _division_names_from(path, runtime.settings.mode is RunMode.development)


def _platform_org(runtime: Runtime) -> str | None:
    """``GRASSROOTS_PLATFORM_ORG``; in development the demo world's district; else None (nationwide)."""
    configured = _settings().platform_org
    if configured is not None or runtime.settings.mode is not RunMode.development:
        return configured
    return next((code for code, _, level in _demo_world_divisions() if level == "county"), None)


def _with_unattributed(runtime: Runtime, scope: str) -> bool:
    """Whether a supervisor's scope covers the platform's jurisdiction, and so its unattributed events."""
    platform = _platform_org(runtime)
    return platform is not None and org_prefix(platform).startswith(org_prefix(scope))


# -- queries and reports ---------------------------------------------------------------------------


@router.get("/events")
async def list_events(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "read"))],
    request: Request,
    runtime: RuntimeDep,
    org: Annotated[str | None, Query(json_schema_extra=ORG_SCHEMA)] = None,
    actor: str | None = None,
    scenario: str | None = None,
    dataset: str | None = None,
    outcome: Literal["allowed", "refused", "ok", "error"] | None = None,
    kind: str | None = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
    before: Annotated[int | None, Query(ge=1, le=SEQ_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    source: Annotated[
        str | None,
        Query(
            max_length=64,
            description="where the requests came from: an IP address (IPv6: its /64 block), or unknown",
        ),
    ] = None,
) -> dict[str, Any]:
    """Events of the caller's organisation subtree, newest first; ``next_before`` pages on."""
    scope = _scope(principal, org)
    checked_range(since, until)
    query = EventQuery(
        source=_source_arg(source),
        org=_org_arg(scope),
        unattributed=_with_unattributed(runtime, scope),
        actor=actor,
        scenario=scenario,
        dataset=dataset,
        outcome=outcome,
        kind=kind,
        since=since,
        until=until,
        before=before,
        limit=limit,
    )
    page = await asyncio.to_thread(audit.query_events, runtime.engine, query)
    await _audit(
        runtime, principal, request, "supervision.events_queried", {"org": scope, "results": len(page.items)}
    )
    answer = {"items": [e.to_json() for e in page.items], "next_before": page.next_before, "org": scope}
    answer.update(await asyncio.to_thread(_pruned_part, runtime, since))
    if not page.items and before is None:
        unknown_org = org is not None and not await asyncio.to_thread(_divides_known, runtime, scope)
        answer.update(
            _nothing_found(
                runtime,
                scenario=scenario,
                dataset=dataset,
                kind=kind,
                actor=actor,
                unknown_org=unknown_org,
                source=source is not None,
            )
        )
    return answer


def _source_arg(source: str | None) -> str | None:
    """The ``source`` filter in the spelling events record it (an IPv6 address as its /64); 422 for what is
    no address, never repeating it (a name or a number typed into the wrong box)."""
    if source is None:
        return None
    asked = source_asked(source)
    if asked is None:
        raise InvalidRequest(
            "source 须为请求来源的 IP 地址（例如 203.0.113.7；IPv6 地址按其所在的 /64 网段查找，"
            "例如 2001:db8::1 或 2001:db8::/64），或 unknown（未能读出地址的请求）。本次未查询。",
            "source must be the IP address requests came from (e.g. 203.0.113.7; an IPv6 address is looked "
            "up by its /64 block, e.g. 2001:db8::1 or 2001:db8::/64), or unknown (requests whose address "
            "could not be read). Nothing was queried.",
            code="invalid_source",
        )
    return asked


#: The hint for an ``org`` filter that names none of the platform's divisions (a digit typed wrong).
_UNKNOWN_ORG: Final = (
    "org 不是本平台区划名录中的单位，也不是其中任何单位的上级，请核对区划代码",
    "org is not a division this platform knows (GRASSROOTS_DIVISION_NAMES_FILE) nor above one: "
    "check the code",
)


async def _unknown_org_note(
    runtime: Runtime, org: str | None, scope: str, found: tuple[str, str]
) -> dict[str, str]:
    """A report or an anomaly run that found nothing for an ``org`` naming no known division says so."""
    if org is None or await asyncio.to_thread(_divides_known, runtime, scope):
        return {}
    zh, en = _UNKNOWN_ORG
    return {
        "note": f"在您的监督范围内没有{found[0]}。请核对：{zh}。",
        "note_en": f"No {found[1]}. Check: {en}.",
    }


def _divides_known(runtime: Runtime, scope: str) -> bool:
    """Whether ``scope`` is one of the platform's divisions or above one (True where none are known)."""
    names = division_names(runtime)
    prefix = org_prefix(scope)
    return not names or any(code.startswith(prefix) for code in names)


def _nothing_found(
    runtime: Runtime,
    *,
    scenario: str | None,
    dataset: str | None,
    kind: str | None,
    actor: str | None,
    unknown_org: bool = False,
    source: bool = False,
) -> dict[str, str]:
    """Why an events query may have found nothing, for the filters that look mistyped: an empty list alone
    reads as "nobody did anything" (a scenario typo, ``--kind data`` for the family ``data.``, a login name
    for a user id, a village code with a digit wrong). Names the filters and what they take, never the
    values typed."""
    catalog = runtime.policy().scenarios
    hints: list[tuple[str, str]] = []
    if unknown_org:
        hints.append(_UNKNOWN_ORG)
    if scenario is not None and scenario not in catalog:
        codes = "、".join(s.code for s in catalog)
        hints.append(
            (
                f"scenario 不在现行场景目录中（现有：{codes}）",
                f"scenario is not in the scenario catalog (it has {codes.replace('、', ', ')})",
            )
        )
    if dataset is not None and catalog.dataset(dataset) is None:
        names = sorted(catalog.datasets)
        hints.append(
            (
                f"dataset 不在数据目录中（现有：{'、'.join(names)}）",
                f"dataset is not in the catalog (it has {', '.join(names)})",
            )
        )
    if kind is not None and "." not in kind:
        hints.append(
            (
                "kind 须为完整的事件类型（例如 data.read），或以 . 结尾表示一类（例如 data.）",
                "kind is a whole event kind (e.g. data.read), or a family ending in '.' (e.g. data.)",
            )
        )
    if actor is not None:
        hints.append(
            (
                "actor 须为用户编号（即事件中的 actor，例如 u-5b77c574d1），不是登录名或姓名",
                "actor is a user id (an event's actor, e.g. u-5b77c574d1), not a login name or a name",
            )
        )
    if source:
        hints.append(
            (
                "source 只见于由请求引起的事件（后台任务的事件没有来源地址），"
                "且只见于网关开始记录来源地址之后写入的事件；"
                "经反向代理转发的请求记录的是代理转发的客户端地址，前提是代理的地址已列入 "
                "FORWARDED_ALLOW_IPS",
                "source is found only on events a request caused (a background task's have none), written "
                "since the gateway records sources; a request through a reverse proxy is recorded under the "
                "client address the proxy forwarded, provided the proxy is listed in FORWARDED_ALLOW_IPS",
            )
        )
    zh = "在您的监督范围内没有符合条件的事件。"
    en = "No event within your supervisory scope matches."
    if hints:
        zh += "请核对：" + "；".join(h for h, _ in hints) + "。"
        en += " Check: " + "; ".join(h for _, h in hints) + "."
    return {"note": zh, "note_en": en}


@router.get("/reports")
async def report(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "read"))],
    request: Request,
    runtime: RuntimeDep,
    group_by: Literal["org", "department", "scenario"] = "org",
    org: Annotated[str | None, Query(json_schema_extra=ORG_SCHEMA)] = None,
    org_level: Annotated[
        int, Query(description="significant digits: 2,4,6,9,12", json_schema_extra={"enum": list(BOUNDARIES)})
    ] = 12,
    since: SinceQuery = None,
    until: UntilQuery = None,
) -> dict[str, Any]:
    """Counts per organisation, data-owning department or scenario: allowed, refused, records, users."""
    scope = _scope(principal, org)
    checked_range(since, until)
    if org_level not in BOUNDARIES:
        raise InvalidRequest("org_level 只能是 2、4、6、9 或 12。", "org_level must be 2, 4, 6, 9 or 12.")
    _, _, departments = _scenario_context(runtime)
    body = await asyncio.to_thread(
        audit.access_report,
        runtime.engine,
        group_by,
        since=since,
        until=until,
        org=_org_arg(scope),
        org_digits=org_level,
        dataset_departments=departments,
        unattributed=_with_unattributed(runtime, scope),
    )
    await _audit(
        runtime, principal, request, "supervision.report_viewed", {"group_by": group_by, "org": scope}
    )
    names = await asyncio.to_thread(_row_names, runtime, group_by)
    for row in body["rows"]:
        row["name"] = names.get(row["key"])
    body = {**body, "org": scope, **await asyncio.to_thread(_pruned_part, runtime, since)}
    if body["rows"]:
        return body
    found = ("统计到任何访问", "access within your supervisory scope was counted")
    return {**body, **await _unknown_org_note(runtime, org, scope, found)}


def _row_names(runtime: Runtime, group_by: str) -> Mapping[str, str]:
    """Each row's name, the ``(unknown)`` row's too, in the 通报's words (it was named nothing, null)."""
    if group_by == "org":
        return {UNKNOWN: UNKNOWN_NAMES_ZH["organisation"], **division_names(runtime)}
    if group_by == "department":
        return {UNKNOWN: UNKNOWN_NAMES_ZH["department"], **department_names()}
    return {UNKNOWN: UNKNOWN_NAMES_ZH["scenario"], **_scenario_context(runtime)[1]}


@router.get("/anomalies")
async def anomalies(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "read"))],
    request: Request,
    runtime: RuntimeDep,
    since: SinceQuery = None,
    until: UntilQuery = None,
    org: Annotated[str | None, Query(json_schema_extra=ORG_SCHEMA)] = None,
    rule: Annotated[list[str] | None, Query()] = None,
    setting: Annotated[
        list[str] | None, Query(description="override, e.g. bulk_reading.min_records=200")
    ] = None,
) -> dict[str, Any]:
    """Findings of the anomaly rules, each with the seqs of the events behind it."""
    scope = _scope(principal, org)
    checked_range(since, until)
    rules, context = await asyncio.to_thread(_anomaly_inputs, runtime, _overrides(setting or []))
    if any(r not in ANOMALY_RULES for r in rule or ()):
        raise bad_rule(AnomalyRulesError("unknown anomaly rule"), rules)
    with supervision_errors():
        findings = await asyncio.to_thread(
            audit.detect_anomalies,
            runtime.engine,
            rules,
            context,
            since=since,
            until=until,
            org=_org_arg(scope),
            only=rule,
            unattributed=_with_unattributed(runtime, scope),
        )
    await _audit(
        runtime, principal, request, "supervision.anomalies_viewed", {"org": scope, "findings": len(findings)}
    )
    answer = {"findings": [f.to_json() for f in findings], "rules": rules.to_json(), "org": scope}
    answer.update(await asyncio.to_thread(_pruned_part, runtime, since))
    if findings:
        return answer
    found = ("发现异常线索", "anomaly was found within your supervisory scope")
    return {**answer, **await _unknown_org_note(runtime, org, scope, found)}


@router.get(
    "/reports/monthly",
    response_model=None,
    responses=other_formats("text/html", "text/csv", "application/pdf"),
)
async def monthly_report(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "read"))],
    request: Request,
    runtime: RuntimeDep,
    month: Annotated[
        Month | None, Query(description="2026-11, 2026-1 or 2026年11月; default: this month")
    ] = None,
    org: Annotated[str | None, Query(json_schema_extra=ORG_SCHEMA)] = None,
    format: Literal["html", "csv", "pdf", "json"] = "html",
) -> Response | dict[str, Any]:
    """定期通报: the month's figures as a printable HTML page (inline SVG charts), CSV, PDF or JSON."""
    scope = _scope(principal, org)
    this_month = datetime.now(audit.CHINA_STANDARD_TIME).strftime("%Y-%m")
    label = month or this_month
    if label > this_month:
        # A month that has not begun (Beijing time) has nothing to report: an all-zero 通报 would read as
        # a real one, and would be recorded as one.
        raise InvalidRequest(
            f"{label} 尚未开始，还不能出具该月通报；本月为 {this_month}。",
            f"{label} has not begun yet, so there is no report for it; the current month is {this_month}.",
            code="month_not_started",
        )
    pruned = await asyncio.to_thread(_pruned_note, runtime)
    holders = [a["archive_id"] for a in (pruned or {}).get("archives", []) if a.get("month") == label]
    if holders:
        # The month's events were pruned into archives: counted from the database, the 通报 would read as
        # a month in which nothing at all was accessed, and be recorded as handed out.
        raise GatewayError(
            f"{label} 的审计事件已超过保存期，已从数据库清理（归档于 {'、'.join(holders)}），"
            "无法再据数据库出具该月通报（否则会显示该月没有任何访问）。"
            "该月的访问记录以归档文件为准：请用 grassroots supervise archive-verify 核验后查阅。",
            f"The audit events of {label} were pruned after the retention period (archived in "
            f"{', '.join(holders)}), so no report can be made for it from the database (it would show no "
            "access at all that month). The archive is the record of that month: check it with "
            "grassroots supervise archive-verify and read it there.",
            code="month_pruned",
            status_code=410,
            extra={"archives": holders, "archived_period": pruned},
        )
    rules, context = await asyncio.to_thread(_anomaly_inputs, runtime, {})
    _, names, departments = _scenario_context(runtime)
    integrity = await asyncio.to_thread(_integrity, runtime)
    orgs, depts = await asyncio.to_thread(division_names, runtime), department_names()
    report_data = await asyncio.to_thread(
        audit.build_monthly_report,
        runtime.engine,
        label,
        rules,
        context,
        org=_org_arg(scope),
        unattributed=_with_unattributed(runtime, scope),
        dataset_departments=departments,
        scenario_names=names,
        integrity=integrity,
        reason_names=REFUSAL_REASONS_ZH,
        org_names=orgs,
        # A dataset code that names nothing is recorded as "invalid" (never as typed): its refusals
        # have no owning department.
        department_names={**depts, "invalid": "未编目的数据集"},
    )
    # Cases overdue are counted as they stand now, not in the month: they make no month less empty.
    month_cases = (n for case, n in report_data.cases.items() if case != "incidents_overdue")
    if report_data.totals.total == 0 and not any(month_cases):
        # An all-zero 通报 headed with a code of no known division read as a quiet month there.
        found = ("统计到任何数据访问或案件", "data access or case within your supervisory scope was counted")
        unknown = await _unknown_org_note(runtime, org, scope, found)
        if unknown:
            report_data = dataclasses.replace(report_data, scope_note=(unknown["note"], unknown["note_en"]))
        elif pruned is None:
            # A month before the platform began recording: its zeros are not a quiet month either.
            early = await asyncio.to_thread(audit.before_the_log, runtime.engine, label)
            if early is not None:
                report_data = dataclasses.replace(report_data, scope_note=early)
    filename = f"audit-report-{label}"
    # The note inside the file is also a header, so whoever saves the file is told now (the CLI says it).
    noted = {} if report_data.scope_note is None else note_headers(*report_data.scope_note)
    answer: Response | dict[str, Any]
    if format == "json":
        answer = report_data.to_json()
    elif format == "csv":
        answer = Response(
            audit.render_csv(report_data).encode("utf-8"),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}.csv"', **noted},
        )
    elif format == "html":
        answer = HTMLResponse(audit.render_html(report_data), headers=noted)
    else:
        # Recorded once the report exists: a PDF that could not be printed (no Chromium, a failed
        # print) left nothing, and the log must not say a report was handed out.
        answer = Response(
            await html_to_pdf(
                audit.render_html(report_data), runtime.pdf_renders, runtime.settings.pdf_render_wait_s
            ),
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="{filename}.pdf"', **noted},
        )
    await _audit(
        runtime,
        principal,
        request,
        "supervision.monthly_report",
        {"month": label, "format": format, "org": scope},
    )
    return answer


def _integrity(runtime: Runtime) -> dict[str, Any]:
    """The report's 日志完整性 section: the latest signed checkpoint, verified with the checkpoint key.

    ``checked`` is false, with the reason in both languages, when it could not be checked (no key, a key
    that cannot be used, a checkpoint that does not verify): a report that left the section out would read
    as "nothing to check". The key is only loaded, never made: a new one could not verify the old files.
    The server's file paths stay out of the answer; the setting is named instead."""
    directory = runtime.settings.effective_checkpoint_dir
    key_path = runtime.settings.effective_checkpoint_key_path
    if not key_path.exists():
        return _not_checked(
            "checkpoint_key_missing",
            "未能核对签名检查点：服务器上找不到检查点密钥（GRASSROOTS_CHECKPOINT_KEY_PATH），"
            "本报告的日志完整性未经检查点验证。请运维人员恢复签发检查点的密钥或其公钥"
            "（新生成的密钥无法验证已有检查点），然后运行 grassroots audit verify。",
            "The signed checkpoint could not be checked: the server has no checkpoint key "
            "(GRASSROOTS_CHECKPOINT_KEY_PATH), so this report's log integrity is not verified against a "
            "checkpoint. Ask the operator to restore the key that signed the checkpoints, or its public key "
            "(a new key cannot verify them), then run `grassroots audit verify`.",
        )
    try:
        public_key = audit.load_public_key(key_path)
    except (OSError, CheckpointError) as exc:
        reason_zh, reason_en = (
            (exc.message_zh, exc.message_en)
            if isinstance(exc, CheckpointError)
            else ("无法读取", exc.strerror or type(exc).__name__)
        )
        return _not_checked(
            "checkpoint_key_unusable",
            f"未能核对签名检查点：检查点密钥（GRASSROOTS_CHECKPOINT_KEY_PATH）无法使用：{reason_zh}。"
            "请运维人员检查该密钥文件，然后运行 grassroots audit verify。",
            f"The signed checkpoint could not be checked: the checkpoint key "
            f"(GRASSROOTS_CHECKPOINT_KEY_PATH) cannot be used: {reason_en}. Ask the operator to check the "
            "key file, then run `grassroots audit verify`.",
        )
    try:
        cp = audit.latest_checkpoint(directory, public_key) if directory.is_dir() else None
        restores = _accepted_restores(directory, public_key)
    except CheckpointError as exc:
        return _not_checked(
            "checkpoint_invalid",
            f"最新的签名检查点无法验证：{exc.message_zh}。"
            "请运维人员运行 grassroots audit verify 并保留现场。",
            f"The latest signed checkpoint does not verify: {exc.message_en}. Ask the operator to run "
            "`grassroots audit verify` and keep the evidence.",
        )
    if cp is None:
        return {
            "checked": True,
            "note": "本报告生成时尚无签名检查点。",
            "note_en": "There was no signed checkpoint yet when this report was made.",
        }
    return {
        "checked": True,
        "tree_size": cp.tree_size,
        "root_hash": cp.root_hash.hex(),
        "timestamp": cp.to_json()["timestamp"],
        **({"restores": restores} if restores else {}),
    }


def _accepted_restores(directory: Path, public_key: Any) -> list[dict[str, Any]]:
    """Each accepted database restore (``audit accept-restore``): when, the events lost, the reason. A
    report on the log must say that part of it was lost, every time (never only on the day)."""
    if not directory.is_dir() or not audit.has_restores(directory):
        return []
    return [
        {
            "accepted_at": record.to_json()["timestamp"],
            "lost_first_seq": (record.restore or {})["lost_from"] + 1,
            "lost_last_seq": (record.restore or {})["lost_to"],
            "reason": (record.restore or {})["reason"],
        }
        for record, _ in audit.checkpoint_history(directory, public_key).restores
    ]


def _not_checked(problem: str, message_zh: str, message_en: str) -> dict[str, Any]:
    return {"checked": False, "problem": problem, "message": message_zh, "message_en": message_en}


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _fontconfig_knows_chinese() -> bool:
    """Whether fontconfig, through which Chromium finds its fonts, knows one that covers Chinese. Debian's
    ``chromium`` does not bring one (``fonts-noto-cjk`` is a separate package): without it every Chinese
    character of the report prints as an empty box. Unknown (no ``fc-list``, which comes with Chromium's
    own dependencies) counts as none."""
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return False
    try:
        found = subprocess.run(  # noqa: S603 (fontconfig's own lister, fixed arguments)
            [fc_list, ":lang=zh", "family"], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return bool(found.stdout.strip())


#: Seconds a Chinese font, once found, is taken as still there without asking fontconfig again.
FONT_CHECK_TTL_S: Final = 600.0


class FontCheck:
    """:func:`_fontconfig_knows_chinese`, remembered: every PDF ran ``fc-list`` (a process) before printing.

    A font found is remembered for ``FONT_CHECK_TTL_S`` (one removed is noticed after that); none found is
    never remembered, so the first request after an operator installs one (as the 503 asks) prints. Two
    threads asking at once both run ``fc-list``: harmless, and no lock to wait on."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._found_at: float | None = None

    def __call__(self) -> bool:
        now = self._clock()
        if self._found_at is not None and now - self._found_at < FONT_CHECK_TTL_S:
            return True
        found = _fontconfig_knows_chinese()
        self._found_at = now if found else None
        return found


#: The process's check (``html_to_pdf`` asks it in a worker thread).
chinese_font_installed = FontCheck()


#: Seconds a client is asked to wait (``Retry-After``) when every PDF render is taken.
PDF_RETRY_AFTER_S = 30


async def html_to_pdf(page: str, renders: asyncio.Semaphore, wait_s: float) -> bytes:
    """Print the page with headless Chromium (Debian's ``chromium``); 503 when it is not installed, or
    when no Chinese font is (:func:`chinese_font_installed`).

    ``renders`` bounds the Chromiums this process runs at once (``GRASSROOTS_PDF_MAX_CONCURRENT_RENDERS``):
    a request that finds none free within ``wait_s`` gets 503 ``pdf_busy`` with ``Retry-After`` rather
    than one more browser, so a burst of report requests cannot exhaust the server's memory."""
    binary = chromium_binary()
    if binary is None:
        raise ServiceUnavailable(
            "服务器未安装 Chromium，暂不能导出 PDF；请下载 HTML 版本后用浏览器“打印为 PDF”。",
            "Chromium is not installed on the server, so no PDF; download the HTML and print it to PDF.",
            code="pdf_unavailable",
        )
    if not await asyncio.to_thread(chinese_font_installed):
        # A PDF of empty boxes would be handed out, and recorded, as the month's report.
        raise ServiceUnavailable(
            "服务器未安装中文字体，导出的 PDF 中汉字会显示为方框，因此未导出；请运维人员安装中文字体"
            "（Debian：fonts-noto-cjk），或下载 HTML 版本后用浏览器“打印为 PDF”。",
            "The server has no Chinese font, so the PDF's Chinese text would print as empty boxes; none was "
            "made. Ask the operator to install one (Debian: fonts-noto-cjk), or download the HTML and print "
            "it to PDF.",
            code="pdf_unavailable",
        )
    try:
        await asyncio.wait_for(renders.acquire(), timeout=wait_s)
    except TimeoutError:
        raise ServiceUnavailable(
            f"正在生成的 PDF 报告较多，请约 {PDF_RETRY_AFTER_S} 秒后重试，或先下载 HTML 版本。",
            f"Too many PDF reports are being produced; retry in about {PDF_RETRY_AFTER_S} seconds "
            "or download the HTML.",
            code="pdf_busy",
            headers={"Retry-After": str(PDF_RETRY_AFTER_S)},
        ) from None
    try:
        return await _render_pdf(binary, page)
    finally:
        renders.release()


async def _render_pdf(binary: str, page: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="grassroots-pdf-") as tmp:
        html_path = Path(tmp) / "report.html"
        pdf_path = Path(tmp) / "report.pdf"
        html_path.write_text(page, encoding="utf-8")
        args = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--no-pdf-header-footer",
            f"--user-data-dir={tmp}/profile",
            f"--print-to-pdf={pdf_path}",
            html_path.as_uri(),
        ]
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "HOME": tmp}
        )
        try:
            await asyncio.wait_for(proc.wait(), timeout=90)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if not pdf_path.exists() or pdf_path.stat().st_size == 0:
            raise ServiceUnavailable(
                "PDF 生成失败，请稍后重试或下载 HTML 版本。",
                "The PDF could not be produced; retry later or download the HTML.",
                code="pdf_failed",
            )
        return pdf_path.read_bytes()


# -- complaints and incidents ----------------------------------------------------------------------


def _case_scope(principal: Principal) -> str:
    """The jurisdiction whose cases the caller may see and handle: their organisation's subtree (the
    significant prefix of its division code; ``""`` at the national level). Least privilege (GB/T
    35273-2020 §7.1): a township's supervisors do not read another county's complaints."""
    return org_prefix(checked_org(principal.org, "org"))


async def _case_in_scope(
    runtime: Runtime,
    principal: Principal,
    request: Request,
    kind: str,
    *,
    complaint_id: str | None = None,
    incident_id: str | None = None,
) -> str:
    """The caller's scope, once the case named is in it; else 404 ``case_not_found``, the same answer as
    for a case that does not exist (its existence is not revealed), and a case outside the scope is
    recorded as a refused ``kind`` event first (the case's id and jurisdiction; a look across a boundary
    is what supervision of supervisors wants to see)."""
    scope = _case_scope(principal)

    def check() -> None:
        with runtime.sessions() as session:
            audit.check_case_scope(session, scope, complaint_id=complaint_id, incident_id=incident_id)

    with supervision_errors():
        try:
            await asyncio.to_thread(check)
        except CaseOutsideScope as exc:
            named = (
                {"complaint_id": exc.case_id} if complaint_id is not None else {"incident_id": exc.case_id}
            )
            await _audit(
                runtime,
                principal,
                request,
                kind,
                {**named, "refused": "outside_scope", "case_org": exc.case_org},
                outcome=Outcome.REFUSED,
            )
            raise
    return scope


class ComplaintIn(StrictBody):
    source: Literal["hotline_12345", "burden_monitoring", "walk_in"]
    id_number: str = Field(min_length=1, max_length=64, repr=False, description="complainant's ID number")
    summary: str = Field("", max_length=1000)
    ticket: str | None = Field(None, max_length=64, description="e.g. the 12345 work-order number")


def _lookup_scope(runtime: Runtime, principal: Principal) -> str:
    """Where the departmental systems are asked for a complainant's records: the jurisdiction the platform
    serves (``GRASSROOTS_PLATFORM_ORG``; nationwide when unset), or the supervisor's own when it is wider.

    Not the supervisor's own alone: a resident complains wherever she calls or walks in, and a township's
    supervisor asked only within the township found none of the records of a resident living elsewhere, so a
    refused attempt at one (by a cadre of the supervisor's own township, say) was left out of the evidence
    while the answer said ``evidence_complete``. Only ids come back, turned into keyed refs at once; the
    evidence follows the person, as the log's reads do (README "Whose cases a supervisor sees")."""
    own = checked_org(principal.org, "org")
    platform = _platform_org(runtime) or "000000000000"
    return own if org_prefix(platform).startswith(org_prefix(own)) else platform


async def _person_records(
    runtime: Runtime,
    principal: Principal,
    request: Request,
    id_number: str,
    ref: str,
    now: datetime,
    *,
    datasets: list[str] | None = None,
    incident_id: str | None = None,
) -> PersonRecords:
    """The person's records as the departmental systems name them (``gateway.evidence.find_person_records``;
    each lookup an audit event), asked across the jurisdiction the platform serves (:func:`_lookup_scope`)."""
    return await find_person_records(
        runtime,
        principal,
        normalise_id_number(id_number),
        ref,
        org_prefixes=(_lookup_scope(runtime, principal),),
        request_id=request_id_of(request),
        now=now,
        datasets=datasets,
        incident_id=incident_id,
    )


@router.post("/complaints", status_code=201)
async def register_complaint(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "register"))],
    body: ComplaintIn,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Register a complaint and open its incident: every access to the person, each with its proof."""
    # The same check as every typed text (names after cue words too), and the same error family: the case
    # library's own check (ID and phone shapes only) would answer invalid_case_input for the ticket.
    refuse_personal_data(body.summary, "投诉摘要", "complaint summary", code="personal_data_in_summary")
    refuse_personal_data(body.ticket or "", "工单号", "ticket number", code="personal_data_in_ticket")
    ref = _subject_ref(runtime, body.id_number)
    now = _now()
    # The person's record ids from each departmental system (each lookup an audit event), so an attempt
    # at one of their records that no allowed read ever served is found too. Before the checkpoint: the
    # attempts are older than it either way, and the lookups' own events are not evidence.
    found = await _person_records(runtime, principal, request, body.id_number, ref, now)
    signer = await asyncio.to_thread(signer_for, runtime)
    with supervision_errors():
        checkpoint = await asyncio.to_thread(
            audit.write_checkpoint, runtime.engine, signer, runtime.settings.effective_checkpoint_dir
        )
    deadlines = _deadlines()
    async with unit_of_work(runtime, principal, request_id_of(request)) as uow:
        with supervision_errors():
            complaint, registered = await uow.run(
                lambda s: audit.register_complaint(
                    s,
                    subject_ref=ref,
                    source=body.source,
                    summary=body.summary,
                    ticket=body.ticket,
                    actor=principal.user_id,
                    org=checked_org(principal.org, "org"),
                    now=now,
                    deadlines=deadlines,
                )
            )
            incident, opened = await uow.run(
                lambda s: audit.open_incident(
                    s,
                    runtime.engine,
                    complaint_id=complaint["complaint_id"],
                    subject_refs=_lookup_refs(runtime, body.id_number),
                    records=found.records,
                    evidence_incomplete=found.incomplete,
                    actor=principal.user_id,
                    now=now,
                    tree_size=checkpoint.tree_size,
                    deadlines=deadlines,
                )
            )
        uow.record(registered)
        uow.record(opened)
    complaint["incident_id"] = incident["incident_id"]
    complaint["incident_status"] = incident["status"]
    # Accesses older than the retention period were pruned: say where they are rather than omit them.
    pruned = await asyncio.to_thread(_pruned_note, runtime)
    return {
        "complaint": complaint,
        "incident": incident,
        "evidence_events": opened["evidence_events"],
        # Said here too, not only in the incident: the supervisor must see at once that a system did not
        # answer and the search for attempts at the person's records is to be done again.
        "evidence_complete": incident["evidence_complete"],
        "evidence_incomplete": incident["evidence_incomplete"],
        "archived_period": pruned,
    }


#: Case lists page by ``limit`` and ``offset``; ``total`` says how many there are in all.
CaseLimit = Annotated[int, Query(ge=1, le=500)]
CaseOffset = Annotated[int, Query(ge=0, le=1_000_000)]


@router.get("/complaints")
async def list_complaints(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "read"))],
    request: Request,
    runtime: RuntimeDep,
    limit: CaseLimit = 100,
    offset: CaseOffset = 0,
    status: Literal["open", "investigating", "closed", "overdue"] | None = None,
) -> dict[str, Any]:
    """Complaints newest first, ``limit`` at a time from ``offset``; ``total``: how many match.
    ``status``: only those whose incident is open, investigating or closed, or that are overdue."""
    now = _now()
    scope = _case_scope(principal)

    def read() -> tuple[list[dict[str, Any]], int]:
        with runtime.sessions() as session:
            items = audit.list_complaints(
                session, scope=scope, limit=limit, offset=offset, now=now, status=status
            )
            return items, audit.count_complaints(session, scope=scope, status=status, now=now)

    with supervision_errors():
        items, total = await asyncio.to_thread(read)
    await _audit(
        runtime,
        principal,
        request,
        "supervision.complaints_listed",
        {"status": status, "scope": scope, "results": len(items)},
    )
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.get("/complaints/{complaint_id}")
async def get_complaint(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "read"))],
    complaint_id: str,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    scope = await _case_in_scope(
        runtime, principal, request, "supervision.complaint_viewed", complaint_id=complaint_id
    )
    with runtime.sessions() as session, supervision_errors():
        complaint = await asyncio.to_thread(
            lambda: audit.get_complaint(session, complaint_id, _now(), scope=scope)
        )
    # The stored id, not the path text: only what the case file holds reaches the log.
    await _audit(
        runtime,
        principal,
        request,
        "supervision.complaint_viewed",
        {"complaint_id": complaint["complaint_id"], "subject_ref": complaint.get("subject_ref")},
    )
    return complaint


class JurisdictionIn(StrictBody):
    org: str = Field(
        max_length=32,
        description="division code of the office the case is to belong to",
        json_schema_extra=ORG_SCHEMA,
    )


async def _known_office(runtime: Runtime, typed: str) -> str:
    """The office a case is to belong to, as a 12-digit code, or 422: malformed (``invalid_org``), or —
    where the platform knows its divisions (GRASSROOTS_DIVISION_NAMES_FILE; the demo world in development)
    — a well-formed code that names none of them, a typo that would lose the case to every supervisor but
    those above it (``unknown_division``). The national root is left to the case workflow to refuse."""
    org = checked_org(typed, "org")
    names = await asyncio.to_thread(division_names, runtime)
    if names and org not in names and org_prefix(org):
        raise InvalidRequest(
            "org 不是本平台区划名录中的单位：请核对区划代码。",
            "org is not a division this platform knows (GRASSROOTS_DIVISION_NAMES_FILE): check the code.",
            code="unknown_division",
        )
    return org


@router.post("/complaints/{complaint_id}/jurisdiction")
async def assign_case_jurisdiction(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "review"))],
    complaint_id: str,
    body: JurisdictionIn,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Give a case whose jurisdiction is not known the office it belongs to (complaint and incident).

    Such a case (registered before migration 0013, its registration event since pruned) is seen at the
    national level only, so only there can it be named; any other caller gets 404 as for a case that does
    not exist. A case that has a jurisdiction keeps it (409 ``case_has_jurisdiction``)."""
    return await _case_to_office(
        runtime,
        principal,
        request,
        "supervision.case_jurisdiction_assigned",
        body.org,
        lambda s, scope, org, now: audit.assign_jurisdiction(
            s, complaint_id=complaint_id, scope=scope, org=org, actor=principal.user_id, now=now
        ),
        complaint_id=complaint_id,
    )


async def _case_to_office(
    runtime: Runtime,
    principal: Principal,
    request: Request,
    kind: str,
    typed_org: str,
    act: Callable[[Any, str, str, datetime], Any],
    *,
    complaint_id: str | None = None,
    incident_id: str | None = None,
) -> dict[str, Any]:
    """Give the case named an office: in the caller's jurisdiction (else 404, recorded as a refused
    ``kind``), the office a known one (:func:`_known_office`), then ``act(session, scope, org, now)`` in a
    unit of work that records the change it returns."""
    scope = await _case_in_scope(
        runtime, principal, request, kind, complaint_id=complaint_id, incident_id=incident_id
    )
    org = await _known_office(runtime, typed_org)
    now = _now()
    return await _case_unit(runtime, principal, request, lambda s: act(s, scope, org, now))


async def _incidents(
    request: Request,
    runtime: Runtime,
    principal: Principal,
    status: Literal["open", "investigating", "closed"] | None,
    overdue: bool,
    limit: int,
    offset: int,
    due_within_days: int | None = None,
    escalated: bool = False,
) -> dict[str, Any]:
    now = _now()
    scope = _case_scope(principal)
    if due_within_days is not None and overdue:
        raise InvalidRequest(
            "overdue 与 due_within_days 不能同时使用：前者列出已逾期的事件，"
            "后者列出尚未逾期、即将到期的事件。",
            "overdue and due_within_days cannot be used together: one lists the incidents past a deadline, "
            "the other those not yet past one and due soon.",
            code="invalid_case_input",
        )
    due_by = audit.due_within(now, due_within_days) if due_within_days is not None else None

    def read() -> tuple[list[dict[str, Any]], int]:
        with runtime.sessions() as session:
            items = audit.list_incidents(
                session,
                now,
                scope=scope,
                status=status,
                overdue=overdue,
                due_by=due_by,
                escalated=escalated,
                limit=limit,
                offset=offset,
            )
            total = audit.count_incidents(
                session, now, scope=scope, status=status, overdue=overdue, due_by=due_by, escalated=escalated
            )
            return items, total

    items, total = await asyncio.to_thread(read)
    await _audit(
        runtime,
        principal,
        request,
        "supervision.incidents_listed",
        {
            "status": status,
            "overdue": overdue,
            **({"due_within_days": due_within_days} if due_within_days is not None else {}),
            **({"escalated": True} if escalated else {}),
            "scope": scope,
            "results": len(items),
        },
    )
    answer: dict[str, Any] = {"items": items, "total": total, "limit": limit, "offset": offset}
    if due_by is not None:
        answer["due_by"] = format_timestamp(due_by)
        answer["due_by_beijing"] = beijing_clock(due_by)
    return answer


@router.get("/incidents")
async def list_incidents(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "read"))],
    request: Request,
    runtime: RuntimeDep,
    status: Literal["open", "investigating", "closed"] | None = None,
    overdue: bool = False,
    limit: CaseLimit = 100,
    offset: CaseOffset = 0,
    due_within_days: Annotated[
        int | None,
        Query(
            ge=0,
            le=366,
            description="due soon (临期): not closed, not yet overdue, a deadline by the end of the Beijing "
            "day this many days ahead (0: today)",
        ),
    ] = None,
    escalated: Annotated[
        bool,
        Query(
            description="督办 list: the open incidents escalated, once overdue, to the caller's office (or "
            "one under it) by the periodic supervision task"
        ),
    ] = False,
) -> dict[str, Any]:
    """Incidents by deadline; ``overdue=true`` lists those past their deadline and not closed;
    ``due_within_days=N`` those not yet past one whose answer or closing deadline falls within N Beijing
    days (the reminder before a case is late); ``escalated=true`` the caller's 督办 list, the overdue
    cases of the offices below escalated to hers. ``limit`` at a time from ``offset``; ``total``: how many
    match."""
    return await _incidents(
        request, runtime, principal, status, overdue, limit, offset, due_within_days, escalated
    )


@router.get("/incidents/overdue")
async def overdue_incidents(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "read"))],
    request: Request,
    runtime: RuntimeDep,
    limit: CaseLimit = 100,
    offset: CaseOffset = 0,
) -> dict[str, Any]:
    return await _incidents(request, runtime, principal, None, True, limit, offset)


@router.get("/incidents/{incident_id}")
async def get_incident(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "read"))],
    incident_id: str,
    request: Request,
    runtime: RuntimeDep,
    events: bool = True,
) -> dict[str, Any]:
    """The case file: steps, evidence events (refs only) and their inclusion proofs, re-verified now."""
    scope = await _case_in_scope(
        runtime, principal, request, "supervision.incident_viewed", incident_id=incident_id
    )
    with runtime.sessions() as session, supervision_errors():
        incident = await asyncio.to_thread(
            lambda: audit.get_incident(session, incident_id, _now(), scope=scope)
        )
    seqs = [e["seq"] for e in incident["evidence"]]
    leaves = await asyncio.to_thread(_leaves, runtime, seqs)
    try:
        audit.verify_incident_evidence(incident, leaves)
        incident["evidence_verified"] = True
    except InvalidProofError as exc:
        incident["evidence_verified"] = False
        incident["evidence_problem"] = str(exc)
    pruned = await asyncio.to_thread(_pruned_note, runtime)
    if pruned and any(seq <= (pruned["pruned_through_seq"] or 0) for seq in seqs):
        # Evidence older than the retention period: the proofs still verify; the events are archived.
        incident["archived_period"] = pruned
    if events:
        summaries = await asyncio.to_thread(audit.query.events_by_seq, runtime.engine, seqs)
        incident["events"] = [e.to_json() for e in summaries]
    # Audited before anything is returned: no event written, no case file shown (fail closed).
    await _audit(
        runtime,
        principal,
        request,
        "supervision.incident_viewed",
        {
            "incident_id": incident["incident_id"],
            "complaint_id": incident.get("complaint_id"),
            "evidence_events": len(seqs),
            "events_included": events,
        },
    )
    return incident


def _leaves(runtime: Runtime, seqs: list[int]) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    for seq in seqs:
        with contextlib.suppress(Exception):
            out[seq] = next(audit.log.iter_leaf_hashes(runtime.engine, seq, seq))
    return out


class AssignIn(StrictBody):
    assignee: str = Field(min_length=1, max_length=256)
    due_at: DueAt | None = None


class NoteIn(StrictBody):
    note: str = Field(min_length=1, max_length=1000)


class DispositionIn(StrictBody):
    disposition: Literal["substantiated", "unsubstantiated", "referred"]
    note: str = Field(min_length=1, max_length=1000)


async def _case_unit(runtime: Runtime, principal: Principal, request: Request, fn: Any) -> dict[str, Any]:
    """Run one act on a case (``fn`` returns the case and its change) and record it in the same commit."""
    async with unit_of_work(runtime, principal, request_id_of(request)) as uow:
        with supervision_errors():
            case, change = await uow.run(fn)
        uow.record(change)
    result: dict[str, Any] = case
    return result


async def _case_step(
    runtime: Runtime,
    principal: Principal,
    request: Request,
    incident_id: str,
    kind: str,
    typed: tuple[str, str, str, str],
    step: Callable[[Any, str, datetime], Any],
) -> dict[str, Any]:
    """One step on an incident: in the caller's jurisdiction (else 404, recorded as a refused ``kind``),
    the text typed free of personal data (``typed``: text, its Chinese and English name, the error code),
    then ``step(session, scope, now)`` in a unit of work that records the change it returns."""
    scope = await _case_in_scope(runtime, principal, request, kind, incident_id=incident_id)
    text, name_zh, name_en, code = typed
    refuse_personal_data(text, name_zh, name_en, code=code)
    now = _now()
    return await _case_unit(runtime, principal, request, lambda s: step(s, scope, now))


@router.post("/incidents/{incident_id}/assign")
async def assign_incident(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "review"))],
    incident_id: str,
    body: AssignIn,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    return await _case_step(
        runtime,
        principal,
        request,
        incident_id,
        "supervision.incident_assigned",
        (body.assignee, "承办人", "assignee", "personal_data_in_assignee"),
        lambda s, scope, now: audit.assign_incident(
            s,
            incident_id=incident_id,
            scope=scope,
            assignee=body.assignee,
            actor=principal.user_id,
            now=now,
            due_at=body.due_at,
        ),
    )


@router.post("/incidents/{incident_id}/notes")
async def add_note(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "review"))],
    incident_id: str,
    body: NoteIn,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    return await _case_step(
        runtime,
        principal,
        request,
        incident_id,
        "supervision.incident_note",
        (body.note, "调查记录", "note", "personal_data_in_note"),
        lambda s, scope, now: audit.add_note(
            s, incident_id=incident_id, scope=scope, note=body.note, actor=principal.user_id, now=now
        ),
    )


@router.post("/incidents/{incident_id}/disposition")
async def dispose_incident(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "review"))],
    incident_id: str,
    body: DispositionIn,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    return await _case_step(
        runtime,
        principal,
        request,
        incident_id,
        "supervision.incident_disposed",
        (body.note, "处理意见", "note", "personal_data_in_note"),
        lambda s, scope, now: audit.dispose_incident(
            s,
            incident_id=incident_id,
            scope=scope,
            disposition=body.disposition,
            note=body.note,
            actor=principal.user_id,
            now=now,
        ),
    )


class ReopenIn(StrictBody):
    reason: str = Field(min_length=1, max_length=1000, description="why the incident is handled again")


@router.post("/incidents/{incident_id}/reopen")
async def reopen_incident(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "review"))],
    incident_id: str,
    body: ReopenIn,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Handle a closed incident again (重办): the disposition withdrawn, both deadlines started afresh."""
    deadlines = _deadlines()
    return await _case_step(
        runtime,
        principal,
        request,
        incident_id,
        "supervision.incident_reopened",
        (body.reason, "重新办理的原因", "reason", "personal_data_in_note"),
        lambda s, scope, now: audit.reopen_incident(
            s,
            incident_id=incident_id,
            scope=scope,
            reason=body.reason,
            actor=principal.user_id,
            now=now,
            deadlines=deadlines,
        ),
    )


class HandDownIn(StrictBody):
    org: str = Field(
        max_length=32, description="division code of the office under the case's that is to handle it"
    )


@router.post("/incidents/{incident_id}/hand-down")
async def hand_down_case(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "review"))],
    incident_id: str,
    body: HandDownIn,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """交办: hand an open case (incident and complaint) to an office under the one that holds it, whose
    supervisors then see and handle it; the offices above still do. Not up, not sideways (422)."""
    return await _case_to_office(
        runtime,
        principal,
        request,
        "supervision.case_handed_down",
        body.org,
        lambda s, scope, org, now: audit.hand_down_case(
            s, incident_id=incident_id, scope=scope, org=org, actor=principal.user_id, now=now
        ),
        incident_id=incident_id,
    )


class RecheckIn(StrictBody):
    # The complainant's ID number again: in the body only, never the URL (access logs, proxies).
    id_number: str = Field(min_length=1, max_length=64, repr=False, description="complainant's ID number")
    all_systems: bool = Field(
        False, description="ask every departmental system again, not only those that did not answer"
    )


@router.post("/incidents/{incident_id}/recheck")
async def recheck_incident_evidence(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "review"))],
    incident_id: str,
    body: RecheckIn,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Ask the departmental systems that did not answer at the complaint (or all) again for the
    complainant's record ids, and attach the accesses newly found, each with its proof against the
    incident's signed tree: the incident's evidence made whole without registering the complaint again."""
    # Before the ID number is even checked: out of scope, the case is not there for this caller.
    scope = await _case_in_scope(
        runtime, principal, request, "supervision.incident_evidence_rechecked", incident_id=incident_id
    )
    ref = _subject_ref(runtime, body.id_number)
    kept = _lookup_refs(runtime, body.id_number)  # a complaint made before a key rotation has an older ref
    now = _now()

    def target() -> dict[str, Any]:
        with runtime.sessions() as session:
            return audit.incident_for_recheck(
                session, incident_id=incident_id, scope=scope, subject_ref=ref, subject_refs=kept
            )

    try:
        with supervision_errors():
            case = await asyncio.to_thread(target)
    except GatewayError as exc:
        if exc.code in ("subject_mismatch", "case_conflict"):
            # Trying ID numbers against a case is itself worth a record (the number, or its ref, never is).
            await _audit(
                runtime,
                principal,
                request,
                "supervision.incident_evidence_rechecked",
                {"incident_id": incident_id, "refused": exc.code},
                outcome=Outcome.REFUSED,
            )
        raise
    asked = None if body.all_systems else sorted({str(m["dataset"]) for m in case["evidence_incomplete"]})
    if asked == []:
        raise GatewayError(
            "该事件的证据已完整，无需重新核查。如需再次询问所有部门系统，"
            "请使用 all_systems（命令行 --all）。",
            "The incident's evidence is complete: nothing to check again. To ask every departmental system "
            "again, use all_systems (--all on the command line).",
            code="evidence_already_complete",
            status_code=409,
        )
    found = await _person_records(
        runtime, principal, request, body.id_number, ref, now, datasets=asked, incident_id=case["incident_id"]
    )
    rechecked = asked if asked is not None else sorted(runtime.catalog.datasets)
    async with unit_of_work(runtime, principal, request_id_of(request)) as uow:
        with supervision_errors():
            incident, change = await uow.run(
                lambda s: audit.recheck_evidence(
                    s,
                    runtime.engine,
                    incident_id=case["incident_id"],
                    scope=scope,
                    subject_ref=ref,
                    subject_refs=kept,
                    rechecked=rechecked,
                    records=found.records,
                    evidence_incomplete=found.incomplete,
                    actor=principal.user_id,
                    now=now,
                )
            )
        uow.record(change)
    return {
        "incident": incident,
        "datasets_rechecked": change["datasets_rechecked"],
        "new_evidence_events": change["new_evidence_events"],
        "new_evidence_seqs": change["new_evidence_seqs"],
        "evidence_events": change["evidence_events"],
        "evidence_complete": incident["evidence_complete"],
        "evidence_incomplete": incident["evidence_incomplete"],
    }


# -- resident transparency -------------------------------------------------------------------------


class PersonIn(StrictBody):
    id_number: str = Field(min_length=1, max_length=64, repr=False)


@router.post("/transparency")
async def who_read_my_data(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "read"))],
    body: PersonIn,
    request: Request,
    runtime: RuntimeDep,
    limit: CaseLimit = 100,
    offset: CaseOffset = 0,
) -> dict[str, Any]:
    """For one person: which organisation and role read their data, when, for which scenario (PIPL Art. 45).

    Reader names and user ids are left out; the organisation (code and name) and role are what a resident
    is told. Newest first, ``limit`` at a time from ``offset``; ``total``: how many reads in all.
    """
    ref = _subject_ref(runtime, body.id_number)
    entries, total = await asyncio.to_thread(
        lambda: audit.accesses_page(
            runtime.engine, _lookup_refs(runtime, body.id_number), limit=limit, offset=offset
        )
    )
    _, names, _ = _scenario_context(runtime)
    orgs = await asyncio.to_thread(division_names, runtime)
    await _audit(
        runtime,
        principal,
        request,
        "supervision.transparency_lookup",
        {"subject_ref": ref, "accesses": len(entries), "total": total, "offset": offset},
    )
    return {
        "accesses": [
            {
                **e.to_json(),
                "org_name": orgs.get(e.org or ""),
                "role_labels": [ROLE_LABELS_ZH.get(r, r) for r in e.roles],
                "scenario_name": names.get(e.scenario or ""),
                **_dataset_titles(runtime, e.dataset, e.fields),
            }
            for e in entries
        ],
        "count": len(entries),
        "total": total,
        "limit": limit,
        "offset": offset,
        # Reads before this point were pruned after the retention period; they are in these archives.
        "archived_period": await asyncio.to_thread(_pruned_note, runtime),
    }


def _dataset_titles(runtime: Runtime, dataset: str | None, fields: Sequence[str]) -> dict[str, Any]:
    """What was read, in the catalog's words a resident is told (居民登记信息: 姓名、公民身份号码), beside the
    codes: ``dataset_title`` and ``field_titles`` in the order of ``fields``; a code the catalog no longer
    holds keeps its code (the record is about the past, the catalog about now)."""
    view = runtime.dataset(dataset) if dataset else None
    if view is None:
        return {"dataset_title": None, "field_titles": list(fields)}
    spec = view.spec
    titles = [spec.fields[f].title or f if f in spec.fields else f for f in fields]
    return {"dataset_title": spec.title, "field_titles": titles}


# -- proofs and checkpoints ------------------------------------------------------------------------


def _public_key(runtime: Runtime) -> Any:
    return signer_for(runtime).public_key


def _key_chain(runtime: Runtime) -> audit.KeyChain:
    """The checkpoint keys: the key file's and those the handovers in the checkpoint directory link it to
    (archives and anchors signed before a key rotation count, by the key then in office)."""
    return audit.key_chain(runtime.settings.effective_checkpoint_dir, _public_key(runtime))


def _checkpoints(runtime: Runtime) -> list[audit.Checkpoint]:
    directory = runtime.settings.effective_checkpoint_dir
    if not directory.is_dir():
        return []
    return audit.list_checkpoints(directory, _public_key(runtime))


@router.get("/checkpoints")
async def list_checkpoints(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "read"))],
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    with supervision_errors():
        items = await asyncio.to_thread(_checkpoints, runtime)
    await _audit(runtime, principal, request, "supervision.checkpoints_listed", {"results": len(items)})
    return {"items": [c.to_json() for c in items[-100:]], "count": len(items)}


@router.post("/checkpoints", status_code=201)
async def write_checkpoint(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "verify"))],
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Sign the Merkle root of the whole log now and store it in the external checkpoint directory."""
    signer = await asyncio.to_thread(signer_for, runtime)
    with supervision_errors():
        cp = await asyncio.to_thread(
            audit.write_checkpoint, runtime.engine, signer, runtime.settings.effective_checkpoint_dir
        )
    await _audit(
        runtime,
        principal,
        request,
        "audit.checkpoint_written",
        cp.event_details(),
    )
    return cp.to_json()


@router.get("/proofs/inclusion")
async def inclusion_proof(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "read"))],
    request: Request,
    runtime: RuntimeDep,
    seq: Annotated[int, Query(ge=1)] = 1,
    tree_size: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """RFC 9162 inclusion proof of event ``seq``; by default against the latest signed checkpoint."""
    with supervision_errors():
        checkpoints = await asyncio.to_thread(_checkpoints, runtime)
    size = await asyncio.to_thread(log_size, runtime.engine)
    checkpoint = None
    if tree_size is None:
        covering = [c for c in checkpoints if c.tree_size >= seq]
        checkpoint = covering[-1] if covering else None
        tree_size = checkpoint.tree_size if checkpoint else size
    else:
        checkpoint = next((c for c in reversed(checkpoints) if c.tree_size == tree_size), None)
    # The numbers typed are not repeated (an 18-digit "seq" may be an ID number): the log's own size is
    # what the supervisor needs to correct them.
    if tree_size > size:
        raise NotFound(
            f"所给的树大小（tree_size）超过了日志现有的 {size} 条事件。",
            f"The tree size (tree_size) is larger than the log, which holds {size} events.",
            code="no_such_event",
        )
    if seq > tree_size:
        # Say what the log holds (a count, nothing personal): "not within the given tree size" told a
        # supervisor who gave no tree size nothing she could act on.
        raise NotFound(
            f"日志中还没有所给序号（seq）的事件（现有 {size} 条，序号从 1 到 {size}）。"
            if tree_size == size
            else f"所给序号（seq）的事件不在树大小 {tree_size} 之内（日志现有 {size} 条事件）。",
            f"There is no event with that number (seq) in the log yet ({size} events, numbered 1 to {size})."
            if tree_size == size
            else f"The event (seq) is not within tree size {tree_size} (the log holds {size} events).",
            code="no_such_event",
        )
    try:
        root, proofs = await asyncio.to_thread(audit.inclusion_proofs, runtime.engine, [seq], tree_size)
    except PrunedRangeError:
        pruned = await asyncio.to_thread(_pruned_note, runtime) or {}
        holders = [
            a["archive_id"]
            for a in pruned.get("archives", [])
            if a.get("first_seq", 0) <= seq <= a.get("last_seq", 0)
        ]
        raise GatewayError(
            "该事件已过保存期并已清理，请使用归档文件（grassroots supervise archive-verify）。",
            f"Event {seq} was pruned after the retention period; its proof is in archive "
            f"{', '.join(holders) or '(see archived_period)'}.",
            code="event_pruned",
            status_code=410,
            extra={"archives": holders, "archived_period": pruned},
        ) from None
    leaf, proof = proofs[seq]
    audit.verify_inclusion(leaf, seq - 1, tree_size, proof, root)
    if checkpoint is not None and checkpoint.root_hash != root:
        raise GatewayError(
            "日志与签名检查点不一致，请立即运行 grassroots audit verify。",
            "The log disagrees with the signed checkpoint; run grassroots audit verify now.",
            code="checkpoint_mismatch",
            status_code=409,
        )
    # Audited before anything is returned: which event was looked at, against which tree (no content).
    await _audit(
        runtime,
        principal,
        request,
        "supervision.inclusion_proof_viewed",
        {"seq": seq, "tree_size": tree_size, "signed": checkpoint is not None},
    )
    return {
        "seq": seq,
        "leaf_index": seq - 1,
        "tree_size": tree_size,
        "leaf_hash": leaf.hex(),
        "proof": [p.hex() for p in proof],
        "root_hash": root.hex(),
        "checkpoint": checkpoint.to_json() if checkpoint else None,
    }


@router.get("/proofs/consistency")
async def consistency_proof(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "read"))],
    request: Request,
    runtime: RuntimeDep,
    old: Annotated[int | None, Query(ge=1)] = None,
    new: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """RFC 9162 consistency proof between two tree sizes; by default the two latest checkpoints."""
    with supervision_errors():
        checkpoints = await asyncio.to_thread(_checkpoints, runtime)
    sizes = sorted({c.tree_size for c in checkpoints if c.tree_size > 0})
    if old is None or new is None:
        if len(sizes) < 2:
            raise NotFound(
                "至少需要两个签名检查点；请先签发检查点。",
                "Two signed checkpoints are needed; write a checkpoint first.",
                code="not_enough_checkpoints",
            )
        old, new = old or sizes[-2], new or sizes[-1]
    size = await asyncio.to_thread(log_size, runtime.engine)
    if not 0 < old <= new <= size:
        raise InvalidRequest(
            "无法给出一致性证明：较早的树大小（old）不能大于较新的（new），"
            f"两者都不能超过日志现有的 {size} 条事件。"
            "不填时取最近两个签名检查点（grassroots supervise checkpoints 列出它们的树大小）。",
            "No consistency proof: the older tree size (old) may not exceed the newer (new), and neither "
            f"the {size} events the log holds. Left out, they are the two latest signed checkpoints' "
            "(grassroots supervise checkpoints lists them).",
            code="bad_sizes",
        )
    try:
        old_root, new_root, proof = await asyncio.to_thread(audit.consistency, runtime.engine, old, new)
    except PrunedRangeError:
        raise GatewayError(
            "旧检查点早于清理锚点，由归档文件覆盖；请用归档文件核验。",
            f"Tree size {old} lies in the pruned prefix: that checkpoint is covered by the archives.",
            code="covered_by_archive",
            status_code=409,
            extra={"archived_period": await asyncio.to_thread(_pruned_note, runtime)},
        ) from None
    audit.verify_consistency(old, new, proof, old_root, new_root)
    by_size = {c.tree_size: c for c in checkpoints}
    for n, root in ((old, old_root), (new, new_root)):
        signed = by_size.get(n)
        if signed is not None and signed.root_hash != root:
            raise GatewayError(
                "日志与签名检查点不一致，请立即运行 grassroots audit verify。",
                "The log disagrees with the signed checkpoint; run grassroots audit verify now.",
                code="checkpoint_mismatch",
                status_code=409,
            )
    await _audit(
        runtime,
        principal,
        request,
        "supervision.consistency_proof_viewed",
        {"old_size": old, "new_size": new},
    )
    return {
        "old_size": old,
        "new_size": new,
        "old_root": old_root.hex(),
        "new_root": new_root.hex(),
        "proof": [p.hex() for p in proof],
        "old_checkpoint": by_size[old].to_json() if old in by_size else None,
        "new_checkpoint": by_size[new].to_json() if new in by_size else None,
    }


# -- retention and archives ------------------------------------------------------------------------


@router.get("/retention")
async def retention(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "read"))],
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """The retention period, the months past it and whether each is archived, what was pruned."""
    years = _settings().audit_retention_years
    with runtime.sessions() as session:
        status = await asyncio.to_thread(audit.retention_status, runtime.engine, session, _now(), years)
    await _audit(
        runtime,
        principal,
        request,
        "supervision.retention_viewed",
        {
            "retention_years": years,
            "months_past_retention": len(status["months_past_retention"]),
            "pruned_through_seq": status["pruned_through_seq"],
        },
    )
    return status


class ArchiveIn(StrictBody):
    month: Month


@router.post("/archives", status_code=201)
async def archive(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "verify"))],
    body: ArchiveIn,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Write the month's signed archive (events + Merkle root + signature); events stay in the log."""
    signer = await asyncio.to_thread(signer_for, runtime)
    directory = archive_dir(runtime)
    # The periodic archiver (gateway.supervision_tasks) may be writing the same month in another process:
    # wait for it, then archive_month sees its archive and refuses a repeat.
    lock = archiving_lock(runtime.engine, directory, wait=True)
    await asyncio.to_thread(lock.__enter__)
    try:
        with supervision_errors():
            result = await asyncio.to_thread(
                lambda: audit.archive_month(
                    runtime.engine,
                    signer,
                    directory,
                    body.month,
                    checkpoint_dir=runtime.settings.effective_checkpoint_dir,
                )
            )
        now = _now()
        async with unit_of_work(runtime, principal, request_id_of(request)) as uow:
            change = await uow.run(lambda s: audit.record_archive(s, result, principal.user_id, now))
            uow.record(change)
    finally:
        await asyncio.to_thread(lock.__exit__, None, None, None)
    if result.complete:
        return result.to_json()
    return {
        **result.to_json(),
        "note": f"{result.month} 尚未结束：这是部分归档，清理时不会使用；该月结束后请再次归档。",
        "note_en": f"{result.month} has not ended: this archive is partial and pruning never relies on it; "
        "archive the month again after it ends.",
    }


@router.get("/archives")
async def archives(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "read"))],
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    with runtime.sessions() as session:
        items = await asyncio.to_thread(audit.list_archives, session)
    await _audit(runtime, principal, request, "supervision.archives_listed", {"results": len(items)})
    return {"items": items}


@router.get("/archives/{archive_id}/verify")
async def verify_archive(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "verify"))],
    archive_id: str,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Verify an archive's files (signature, digest, every link and leaf) and against the live log."""
    with runtime.sessions() as session:
        known = {a["archive_id"] for a in await asyncio.to_thread(audit.list_archives, session)}
    if archive_id not in known:
        raise NotFound("没有这个归档。", "No such archive.", code="no_such_archive")
    manifest = archive_dir(runtime) / f"{archive_id}.manifest.json"
    with supervision_errors():
        keys = await asyncio.to_thread(_key_chain, runtime)
        restores = await asyncio.to_thread(
            audit.accepted_restores, runtime.settings.effective_checkpoint_dir, _public_key(runtime)
        )
    verdict = await asyncio.to_thread(
        functools.partial(audit.verify_archive, manifest, keys, runtime.engine, restores=restores)
    )
    # The stored archive id (checked against the list above), never other path text; the verdict's code.
    await _audit(
        runtime,
        principal,
        request,
        "supervision.archive_verified",
        {"archive_id": archive_id, "intact": verdict.ok, "checked": verdict.checked},
    )
    return {"archive_id": archive_id, **verdict.to_json()}


class PruneIn(StrictBody):
    dry_run: bool = Field(True, description="only say what would be pruned, and why not (the default)")
    through_month: Month | None = None
    through_seq: int | None = Field(None, ge=1, description="must be the last event of an archived month")


def _refuse_pruning_below_the_platform(runtime: Runtime, principal: Principal) -> None:
    """Pruning deletes months of the whole platform's log, every township's reads included: only a
    supervisor or auditor whose jurisdiction covers the platform's (``GRASSROOTS_PLATFORM_ORG``;
    nationwide when unset) may do it. A township's supervisor holds the same role and could prune the
    district's log. Her dry run, which deletes nothing, stays open."""
    platform = _platform_org(runtime) or "000000000000"
    own = principal.org or ""
    if own and org_prefix(platform).startswith(org_prefix(own)):
        return
    raise Forbidden(
        "清理会删除整个平台审计日志中的已归档月份（各乡镇的记录都在其中），只能由辖区覆盖本平台的监督人员或"
        f"审计人员执行（平台辖区 {platform}）。预演（dry run）不受此限；如需清理，请联系区级监督部门。",
        "Pruning deletes archived months of the whole platform's audit log (every township's records are in "
        "it), so only a supervisor or auditor whose jurisdiction covers the platform's may execute it "
        f"(platform jurisdiction {platform}). The dry run is open to you; to prune, ask the district's "
        "supervision office.",
        code="prune_outside_jurisdiction",
    )


@router.post("/audit/prune")
async def prune_audit_log(
    principal: Annotated[Principal, Depends(Permitted(RESOURCE, "prune"))],
    body: PruneIn,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Prune archived months past the retention period behind a signed prefix anchor (dry run by default).

    PIPL Art. 56 keeps processing records at least ``GRASSROOTS_AUDIT_RETENTION_YEARS`` (default 3)
    years; PIPL Art. 19 / GB/T 35273-2020 §6.1 say not to keep them for ever. Only whole archived months
    whose archives verify now go, oldest first; the anchor is written to the checkpoint directory.
    """
    years = _settings().audit_retention_years
    signer = await asyncio.to_thread(signer_for, runtime)
    directory = archive_dir(runtime)
    now = _now()
    if body.dry_run:
        with supervision_errors():
            plan = await asyncio.to_thread(
                audit.plan_prune,
                runtime.engine,
                directory,
                audit.key_chain(runtime.settings.effective_checkpoint_dir, signer.public_key),
                now,
                years=years,
                through_month=body.through_month,
                through_seq=body.through_seq,
            )
        await _audit(
            runtime,
            principal,
            request,
            "supervision.prune_planned",
            {"would_prune_through_seq": plan.through_seq, "events": plan.events},
        )
        return {"dry_run": True, **plan.to_json()}
    _refuse_pruning_below_the_platform(runtime, principal)
    try:
        with supervision_errors():
            result = await asyncio.to_thread(
                lambda: audit.prune(
                    runtime.engine,
                    signer,
                    directory,
                    runtime.settings.effective_checkpoint_dir,
                    actor=principal.user_id,
                    now=now,
                    years=years,
                    through_month=body.through_month,
                    through_seq=body.through_seq,
                    actor_org=principal.org,
                    actor_roles=tuple(principal.roles),
                    request_id=request_id_of(request),
                    source=request_source(),
                )
            )
    except GatewayError as exc:
        if exc.code == "prune_refused":
            reasons = [str(r).split(":")[0] for r in exc.extra["plan"]["reasons"]]
            await _audit(
                runtime, principal, request, audit.PRUNED_KIND, {"reasons": reasons}, Outcome.REFUSED
            )
        raise
    return {"dry_run": False, **result.to_json(), "plan": result.plan.to_json()}
