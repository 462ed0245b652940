"""A complaint's evidence from the departmental systems: the record ids of the person complained about.

The audit log ties a refused or failed read of one record (``details.requested_record_ref``) to a person
only through an allowed read that once served that record to someone; a cadre of another village probing a
record id directly is refused (before any upstream call, or by the registry's 404 inside her own village),
so the log alone never learns whose record it was.
The departmental systems know: each offers a record-id lookup (``POST <collection>/lookup``, the ID number
in the body; README "The departmental-system contract"), which the gateway asks with the same service token
and outbound credential as the data path. The ids come back only to be turned into the keyed record refs
the pipeline writes (under every kept audit-ref key, ``runtime.lookup_refs``), then dropped.

The lookup is itself a read about a person (PIPL Art. 56 processing record): one
``supervision.record_lookup`` event per dataset asked, with the subject ref, the dataset and system and the
number of records found; never the ID number or the record ids. A system that does not answer leaves the
evidence incomplete, and the answer says so, per dataset (``evidence_incomplete``): the complaint is still
registered with what the log holds (fail safe: a resident's complaint is never lost to a registry outage).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from audit import AuditEvent, Outcome
from gateway.auth.oidc import Principal
from gateway.errors import GatewayError, where_raised
from gateway.pipeline import record_audit
from gateway.runtime import Runtime
from gateway.upstream import UpstreamTarget

_log = logging.getLogger("gateway.evidence")

LOOKUP_EVENT: Final = "supervision.record_lookup"

#: Why a dataset's records could not be looked up, in words a supervisor acts on (Chinese, English).
_REASONS: Final[dict[str, tuple[str, str]]] = {
    "upstream_unavailable": ("系统无法连接", "the system cannot be reached"),
    "upstream_timeout": ("系统响应超时", "the system did not answer in time"),
    "upstream_bad_response": ("系统返回了无法识别的数据", "the system gave an unusable answer"),
    "upstream_tls_failed": (
        "系统的加密连接（https）建立失败",
        "no https connection to the system could be made",
    ),
    "upstream_credential_refused": (
        "系统拒绝了网关的调用凭证",
        "the system refused the gateway's credential",
    ),
    "upstream_credential_unavailable": ("网关暂时无法取得调用凭证", "the gateway cannot use its credential"),
    "lookup_not_offered": ("系统未提供按身份证号查询记录编号的接口", "the system offers no record-id lookup"),
    "system_suspended": ("系统准入已暂停", "the system's admission is suspended"),
    "system_revoked": ("系统准入已撤销", "the system's admission is revoked"),
    "system_lapsed": ("系统准入已到期", "the system's admission has lapsed"),
    "system_not_approved": ("系统未通过准入联审", "the system is not approved"),
    "system_not_registered": ("系统未登记", "the system is not registered"),
    "policy_stale": ("网关状态暂时无法更新", "the gateway's state could not be refreshed"),
}


def incomplete_item(
    dataset: str, system: str | None, reason: str, system_name: str | None = None
) -> dict[str, Any]:
    """One line of ``evidence_incomplete``: which dataset and system did not answer, why, and what it means
    for the evidence, in Chinese (``message``) and English (``message_en``). The system is named by its
    registered name, id beside it (a supervisor knows 区民政局居民信息登记系统, not its id). Codes and
    registered names only, no personal data."""
    zh, en = _REASONS.get(reason, ("系统未能完成查询", "the lookup failed"))
    if system and system_name:
        who_zh = f"部门系统“{system_name}”（系统标识 {system}，数据集 {dataset}）"
        who_en = f"departmental system {system_name} (id {system}, dataset {dataset})"
    elif system:
        who_zh = f"部门系统 {system}（数据集 {dataset}）"
        who_en = f"departmental system {system} (dataset {dataset})"
    else:
        who_zh, who_en = f"数据集 {dataset}", f"dataset {dataset}"
    return {
        "dataset": dataset,
        "system": system,
        "system_name": system_name or None,
        "reason": reason,
        "message": (
            f"证据可能不完整：{who_zh}未能按身份证号查询该居民的记录编号（{zh}），"
            "他人直接按记录编号查询该居民记录而被拒绝的访问可能未被找到。请待该系统恢复后重新核查。"
        ),
        "message_en": (
            f"Evidence may be incomplete: {who_en} could not look up the resident's record ids ({en}), "
            "so refused attempts to read one of their records by id may be missing. Check again once the "
            "system answers."
        ),
    }


@dataclass
class PersonRecords:
    """What the departmental systems said about one person: their records as ``(dataset, record ref)``
    pairs, and the datasets that did not answer."""

    records: set[tuple[str, str]] = field(default_factory=set)
    incomplete: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class _LookupFailed:
    """Why a lookup failed: the reason code, and what the system did (``UpstreamFailure.details``: the
    fault's code and HTTP status) when it answered wrongly."""

    reason: str
    fault: dict[str, Any] = field(default_factory=dict)


async def _lookup_one(
    runtime: Runtime, target: UpstreamTarget, id_number: str, org_prefixes: Sequence[str]
) -> list[str] | _LookupFailed:
    """The record ids, or why the lookup failed."""
    try:
        ids = await runtime.upstream.lookup_record_ids(target, id_number, org_prefixes=org_prefixes)
    except GatewayError as exc:
        failure = exc.upstream_failure
        return _LookupFailed(exc.code, failure.details() if failure is not None else {})
    except Exception:
        # Logged by where it raised, never its message (it might quote what was sent).
        _log.error("record-id lookup failed unexpectedly (%s)", where_raised())
        return _LookupFailed("upstream_bad_response")
    return _LookupFailed("lookup_not_offered") if ids is None else ids


async def find_person_records(
    runtime: Runtime,
    principal: Principal,
    id_number: str,
    subject_ref: str,
    *,
    org_prefixes: Sequence[str],
    request_id: str | None,
    now: datetime,
    datasets: Collection[str] | None = None,
    incident_id: str | None = None,
) -> PersonRecords:
    """Ask every catalogued dataset that keeps a person's ID number (``DatasetView.subject_field``) and is
    provided by a registered system for the person's record ids, all systems at once; record each lookup
    (one ``supervision.record_lookup`` event per dataset, durable before this returns: no lookup goes
    unlogged, and if the log cannot be written the caller gets 503 and nothing is registered).

    ``datasets`` narrows the search to those (an incident's evidence checked again where its systems did
    not answer, ``incident_id`` naming it in each event); default: every such dataset.
    ``id_number`` is the normalised ID number, held only for the calls; it goes nowhere else.
    """
    result = PersonRecords()
    asked: list[tuple[str, UpstreamTarget]] = []
    wanted = sorted(runtime.catalog.datasets) if datasets is None else sorted(set(datasets))
    for dataset in wanted:
        view = runtime.dataset(dataset)
        if view is None or view.subject_field is None:
            continue  # no ID number in its records: nobody's records can be found by one
        try:
            target = runtime.route(dataset, now)
        except GatewayError as exc:
            if exc.code == "no_provider":
                continue  # no system provides it: no record of it was ever served or fetched
            system, name = exc.extra.get("system"), exc.extra.get("system_name")
            result.incomplete.append(
                incomplete_item(
                    dataset,
                    system if isinstance(system, str) else None,
                    exc.code,
                    name if isinstance(name, str) else None,
                )
            )
            continue
        if target.lookup_path is None:
            result.incomplete.append(
                incomplete_item(dataset, target.system_id, "lookup_not_offered", target.system_name)
            )
            continue
        asked.append((dataset, target))
    answers = await asyncio.gather(
        *(_lookup_one(runtime, target, id_number, org_prefixes) for _, target in asked)
    )
    for (dataset, target), answer in zip(asked, answers, strict=True):
        found = isinstance(answer, list)
        if isinstance(answer, list):
            # Under every kept key: an attempt recorded before a key rotation names the record by its old ref.
            result.records.update((dataset, ref) for i in answer for ref in runtime.lookup_refs(i))
        else:
            result.incomplete.append(
                incomplete_item(dataset, target.system_id, answer.reason, target.system_name)
            )
        await record_audit(
            runtime,
            AuditEvent(
                kind=LOOKUP_EVENT,
                outcome=Outcome.OK if found else Outcome.ERROR,
                actor=principal.user_id,
                actor_org=principal.org,
                actor_roles=tuple(principal.roles),
                dataset=dataset,
                record_count=len(answer) if isinstance(answer, list) else 0,
                subject_refs=(subject_ref,),
                reason=answer.reason if isinstance(answer, _LookupFailed) else None,
                request_id=request_id,
                details={
                    # What the system did, for the supervisor rechecking (upstream_fault, its status).
                    **(answer.fault if isinstance(answer, _LookupFailed) else {}),
                    "system": target.system_id,
                    "purpose": "complaint" if incident_id is None else "evidence_recheck",
                    **({"incident_id": incident_id} if incident_id is not None else {}),
                },
                occurred_at=now,
            ),
        )
    return result
