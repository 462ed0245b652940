"""Complaints -> incidents, a closed loop: register, find the accesses, attach proofs, assign, dispose.

A resident calls the 12345 hotline, tells a burden-monitoring point, or walks in: "who looked at my
data?" (PIPL Art. 44-45, Art. 50: individuals may ask, and handlers must answer and handle complaints).
The complainant's ID number is turned into a keyed ref by the caller *before* anything here sees it and
is never stored; the complaint finds every access that touched that ref and every refused or failed
attempt to read one of that person's records (two indexed lookups: ``audit.query.access_seqs_for_person``),
and the incident carries those events with RFC 9162 inclusion proofs against a stated tree size, so whoever
reviews the case can check the evidence is in the signed log without trusting this database.

Cases belong to a jurisdiction (least privilege, GB/T 35273-2020 §7.1): a complaint is registered by a
supervisory office and belongs to that office's organisation (its division code, ``org``); its incident
carries the same. Every function that reads or acts on a case takes the caller's ``scope`` (the
significant prefix of the caller's division code, :func:`audit.query.org_prefix`; ``""`` is the
national level) and treats a case outside it as not there (:class:`CaseOutsideScope`, a
:class:`CaseNotFound`). The evidence is not scoped: it is about the case, and follows the person to
wherever their data was read.

Functions take the caller's ``Session`` and never commit (the gateway's unit of work does, after it has
durably audited the returned change). Each returns the row as plain data and a change dict
(``{"kind": "supervision.…", "actor": …}``) the caller turns into an audit event.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import ColumnElement, Engine, and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from audit import merkle
from audit.checkpoints import log_size
from audit.events import format_timestamp
from audit.proofs import inclusion_proofs
from audit.pseudonym import is_ref
from audit.query import CHINA_STANDARD_TIME, access_seqs_for_person, beijing_clock, org_prefix
from audit.tables import (
    ComplaintRow,
    IncidentEvidenceRow,
    IncidentRow,
    IncidentStepRow,
)
from audit.workdays import WorkCalendar, next_working_day, package_calendar
from grassroots_common.divisions import BOUNDARIES as DIVISION_BOUNDARIES
from grassroots_common.divisions import ROOT as ROOT_OFFICE
from grassroots_common.personal_data import KIND_NAMES, personal_data_in

MAX_TEXT: Final = 1000


class ComplaintSource(StrEnum):
    HOTLINE_12345 = "hotline_12345"  # 12345 政务服务便民热线
    BURDEN_MONITORING = "burden_monitoring"  # 基层减负监测点
    WALK_IN = "walk_in"  # 来访


class IncidentStatus(StrEnum):
    OPEN = "open"
    INVESTIGATING = "investigating"
    CLOSED = "closed"


class Disposition(StrEnum):
    SUBSTANTIATED = "substantiated"  # 属实，已处理
    UNSUBSTANTIATED = "unsubstantiated"  # 不属实（每次访问都有授权与场景）
    REFERRED = "referred"  # 移送纪检监察或公安机关


@functools.cache
def default_calendar() -> WorkCalendar:
    """The installed ``chinesecalendar`` schedule alone (the gateway lays the operator's file over it)."""
    return package_calendar()


class DayCount(StrEnum):
    """How a handling period's days are counted (``GRASSROOTS_DEADLINE_DAYS``)."""

    CALENDAR = "calendar_days"  # 自然日: every day counts; a last day that is a rest day moves on
    WORKING = "working_days"  # 工作日: only working days count, 调休上班 days included


@dataclass(frozen=True)
class Deadlines:
    """Days to answer a complaint and to close an incident (set to the local 12345 rules), counted as
    ``unit`` says on ``calendar`` (the State Council's schedule, :mod:`audit.workdays`)."""

    complaint_days: int = 15
    incident_days: int = 30
    unit: DayCount = DayCount.CALENDAR
    calendar: WorkCalendar = field(default_factory=default_calendar)
    #: Days the office a case is escalated to (督办) has to see it closed before it goes one level further
    #: up: by default as long as the first office had to answer the complainant.
    escalation_days: int = 15

    def complaint_due(self, received: datetime) -> datetime:
        """When the complainant must have an answer: see :func:`period_end`."""
        return period_end(received, self.complaint_days, self.unit, self.calendar)

    def incident_due(self, opened: datetime) -> datetime:
        """When the incident must be closed: see :func:`period_end`."""
        return period_end(opened, self.incident_days, self.unit, self.calendar)

    def escalation_due(self, escalated: datetime) -> datetime:
        """When the office an overdue case was escalated to at ``escalated`` must have seen it closed, or
        it is escalated one level further: see :func:`period_end`."""
        return period_end(escalated, self.escalation_days, self.unit, self.calendar)

    def estimated(self, start: datetime, due: datetime) -> bool:
        """See :func:`period_estimated`."""
        return period_estimated(start, due, self.calendar)


def _beijing_day(moment: datetime) -> date:
    return _aware(moment).astimezone(CHINA_STANDARD_TIME).date()


def _end_of(day: date) -> datetime:
    """The last second of a Beijing day, in UTC: a deadline typed as a day (``gateway.time_inputs.DueAt``)."""
    last = datetime.combine(day + timedelta(days=1), time(), CHINA_STANDARD_TIME) - timedelta(seconds=1)
    return last.astimezone(UTC)


def period_end(
    start: datetime, days: int, unit: DayCount = DayCount.CALENDAR, calendar: WorkCalendar | None = None
) -> datetime:
    """The last moment of a period of ``days`` days that starts at ``start``, counted in Beijing days as
    the Civil Code counts periods: 第二百零一条, the day it starts on is not counted, the period runs from
    the next day; 第二百零三条, its last day ends at 24:00, and a last day that is a 法定休假日 (a weekend
    day off or a statutory holiday; a Saturday or Sunday the State Council makes a working day, 调休上班,
    is not one) gives way to the first working day after it. A complaint taken at 01:36 on 7 December
    with 15 days to answer is due by the end of 22 December, Beijing time — not at 01:36 on the 22nd, nor
    at a moment of the UTC day. Returned in UTC, as every stored time is.

    ``unit`` WORKING: the period is ``days`` working days (工作日), the first the working day after
    ``start``'s day; holidays do not count, 调休上班 days do.

    A day of a year ``calendar`` does not know (:meth:`WorkCalendar.knows`) is never guessed a holiday,
    and the result leans early, never late, so an overdue case is not hidden: in calendar days the last
    day is not moved at all; in working days Monday to Friday count. :func:`period_estimated` says when
    this happened, so the case can say its deadline is an estimate (期限为估算)."""
    cal = calendar if calendar is not None else default_calendar()
    day = _beijing_day(start)
    if unit is DayCount.WORKING:
        counted = 0
        while counted < days:
            day += timedelta(days=1)
            counted += cal.is_working_day(day)
        return _end_of(day)
    last = day + timedelta(days=days)
    if cal.knows(last):
        last = next_working_day(cal, last)
    return _end_of(last)


def period_estimated(start: datetime, due: datetime, calendar: WorkCalendar | None = None) -> bool:
    """Whether a period from ``start`` to ``due`` runs into a year ``calendar`` does not know: its
    deadline is then the conservative estimate :func:`period_end` describes."""
    cal = calendar if calendar is not None else default_calendar()
    first, last = _beijing_day(start), _beijing_day(due)
    return any(year not in cal.years for year in range(first.year, last.year + 1))


class SupervisionError(Exception):
    """A request the case workflow cannot carry out; ``kind`` is not_found, invalid or conflict."""

    kind = "invalid"
    code = "supervision_invalid"

    def __init__(self, message_zh: str, message_en: str) -> None:
        super().__init__(message_en)
        self.message_zh = message_zh
        self.message_en = message_en


class CaseNotFound(SupervisionError):
    kind = "not_found"
    code = "case_not_found"


class InvalidCaseInput(SupervisionError):
    kind = "invalid"
    code = "invalid_case_input"


class CaseOutsideScope(CaseNotFound):
    """The case exists but lies outside the caller's jurisdiction. Said to the caller exactly as a case
    that does not exist (the same code and words: its existence is not revealed); ``case_id`` and
    ``case_org`` are for the refusal's audit event only."""

    def __init__(self, message_zh: str, message_en: str, *, case_id: str, case_org: str | None) -> None:
        super().__init__(message_zh, message_en)
        self.case_id = case_id
        self.case_org = case_org


_NO_COMPLAINT: Final = (
    "未找到该投诉，或该投诉不在您的监督范围内。",
    "No such complaint, or it is outside your supervisory scope.",
)
_NO_INCIDENT: Final = (
    "未找到该事件，或该事件不在您的监督范围内。",
    "No such incident, or it is outside your supervisory scope.",
)


def checked_scope(scope: str) -> str:
    """``scope`` as a significant division-code prefix (``""``: national), or refused: a scope is never
    guessed, so a malformed one shows nothing rather than everything (fail closed)."""
    if scope == "":
        return scope
    try:
        significant = org_prefix(scope) == scope
    except ValueError:
        significant = False
    if not significant:
        raise InvalidCaseInput(
            "监督范围必须是行政区划代码的有效前缀。",
            "The supervisory scope must be a significant division-code prefix.",
        )
    return scope


def in_scope(case_org: str | None, scope: str) -> bool:
    """Whether a case of ``case_org`` lies in ``scope``: the scope's code is a prefix of the case's. A
    case whose jurisdiction is unknown (``None``) is in the national scope only."""
    if checked_scope(scope) == "":
        return True
    return case_org is not None and case_org.startswith(scope)


def case_scope_conditions(column: Any, scope: str) -> list[ColumnElement[bool]]:
    """SQL for "the case's ``column`` (its org) lies in ``scope``" (none at the national level)."""
    if checked_scope(scope) == "":
        return []
    return [column.startswith(scope, autoescape=True)]


class CaseConflict(SupervisionError):
    kind = "conflict"
    code = "case_conflict"


def _closed(refused_zh: str, refused_en: str) -> CaseConflict:
    """A step asked of a closed incident: what cannot be done, and what to do instead: reopen it when the
    resident disagrees with the answer (:func:`reopen_incident`), or a new complaint for something new (its
    incident gathers the evidence of now)."""
    return CaseConflict(
        f"事件已办结，{refused_zh}。如居民对处理结果有异议，可重新办理该事件"
        "（grassroots supervise reopen）；如有新情况，请登记新的投诉（grassroots supervise complain），"
        "新事件会重新收集证据。",
        f"The incident is closed; {refused_en}. If the resident disagrees with the outcome, reopen it "
        "(grassroots supervise reopen); if something new has come up, register a new complaint (grassroots "
        "supervise complain), whose incident gathers the evidence afresh.",
    )


def _checked_text(
    name: tuple[str, str], value: str | None, *, required: bool = False, limit: int = MAX_TEXT
) -> str:
    """``value`` trimmed, or refused: missing when ``required``, too long, or holding personal data.
    ``name`` is the field's (Chinese, English) name, so each message reads whole in its language."""
    zh, en = name
    text = (value or "").strip()
    if required and not text:
        raise InvalidCaseInput(f"请填写{zh}。", f"The {en} is required.")
    if len(text) > limit:
        raise InvalidCaseInput(f"{zh}过长（最多 {limit} 字）。", f"The {en} is too long (max {limit}).")
    kind = personal_data_in(text)
    if kind is not None:
        # The case file must not become a second copy of the resident's identity (PIPL Art. 51).
        what_zh, what_en = KIND_NAMES[kind]
        raise InvalidCaseInput(
            f"{zh}中含有{what_zh}。请不要填写身份证号、手机号等个人信息，系统已单独以加密方式记录投诉人身份。",
            f"The {en} holds {what_en}. Leave out ID and phone numbers and other personal data; "
            "the complainant is recorded separately as a keyed ref.",
        )
    return text


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def _ts(value: datetime | None) -> str | None:
    return format_timestamp(value) if value is not None else None


def _times(name: str, value: datetime | None) -> dict[str, str | None]:
    """``name`` as stored (UTC, RFC 3339) and ``<name>_beijing``, the Beijing time an official reads off
    the office clock (``YYYY-MM-DD HH:MM:SS``), as the who-read answer and the event list give theirs."""
    if value is None:
        return {name: None, f"{name}_beijing": None}
    aware = _aware(value)
    return {name: _ts(aware), f"{name}_beijing": beijing_clock(aware)}


def _clock(value: datetime) -> str:
    """A deadline as the case file tells it: Beijing time, to the minute."""
    return beijing_clock(value)[:16] + "（北京时间）"


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes for DateTime(timezone=True); every stored time is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class Deadline(StrEnum):
    """The two clocks a case runs against (``Deadlines``): either one missed makes the case overdue."""

    COMPLAINT_ANSWER = "complaint_answer"  # 投诉答复期限 (GRASSROOTS_COMPLAINT_DUE_DAYS)
    INCIDENT_CLOSE = "incident_close"  # 事件办结期限 (GRASSROOTS_INCIDENT_DUE_DAYS)


def _days_overdue(due: datetime, now: datetime) -> int:
    """Calendar days (Beijing time) since the deadline, at least 1 once it has passed: the way a case
    file counts 逾期天数 (missed this morning's deadline this afternoon: overdue by 1 day)."""
    due_day = due.astimezone(CHINA_STANDARD_TIME).date()
    today = now.astimezone(CHINA_STANDARD_TIME).date()
    return max(1, (today - due_day).days)


def _missed(deadline: Deadline, due: datetime, now: datetime) -> dict[str, Any]:
    days = _days_overdue(due, now)
    day = due.astimezone(CHINA_STANDARD_TIME).date().isoformat()
    if deadline is Deadline.COMPLAINT_ANSWER:
        zh = f"投诉答复期限已逾期 {days} 天（应于 {day} 前答复投诉人）"
        en = f"complaint answer deadline missed by {days} day(s) (the complainant was due an answer by {day})"
    else:
        zh = f"事件办结期限已逾期 {days} 天（应于 {day} 前办结）"
        en = f"incident closing deadline missed by {days} day(s) (due to be closed by {day})"
    return {
        "deadline": deadline.value,
        **_times("due_at", due),
        "days_overdue": days,
        "message": zh,
        "message_en": en,
    }


def missed_deadlines(
    *,
    complaint_due: datetime | None,
    incident_due: datetime | None,
    closed: bool,
    now: datetime | None,
) -> list[dict[str, Any]]:
    """The deadlines a case has missed at ``now`` (complaint answer first, then incident close), each with
    the days it is overdue and a Chinese and an English sentence. A closed case has missed none: closing
    the incident is the answer to the complaint. ``now`` None: none (nothing to compare against)."""
    if closed or now is None:
        return []
    missed = []
    if complaint_due is not None and _aware(complaint_due) < now:
        missed.append(_missed(Deadline.COMPLAINT_ANSWER, _aware(complaint_due), now))
    if incident_due is not None and _aware(incident_due) < now:
        missed.append(_missed(Deadline.INCIDENT_CLOSE, _aware(incident_due), now))
    return missed


def complaint_json(
    row: ComplaintRow, now: datetime | None = None, incident: IncidentRow | None = None
) -> dict[str, Any]:
    """The complaint; ``overdue`` when its answer deadline (or its incident's closing deadline) has passed
    and its incident is not closed, ``overdue_deadlines`` saying which (see :func:`missed_deadlines`)."""
    missed = missed_deadlines(
        complaint_due=row.due_at,
        incident_due=incident.due_at if incident is not None else None,
        closed=incident is not None and incident.status == IncidentStatus.CLOSED,
        now=now,
    )
    return {
        "complaint_id": row.complaint_id,
        "source": row.source,
        "subject_ref": row.subject_ref,
        "ticket": row.ticket,
        "summary": row.summary,
        "received_by": row.received_by,
        "org": row.org,
        **_times("received_at", row.received_at),
        **_times("due_at", row.due_at),
        "incident_id": row.incident_id,
        # Where the case stands, so the hotline can answer the caller without opening the incident.
        "incident_status": incident.status if incident is not None else None,
        "disposition": incident.disposition if incident is not None else None,
        "overdue": bool(missed),
        "overdue_deadlines": missed,
        **_estimate("due_estimated", row.due_estimated),
        **_escalation(incident),
    }


def incident_json(
    row: IncidentRow, now: datetime | None = None, complaint: ComplaintRow | None = None
) -> dict[str, Any]:
    """The incident; ``overdue`` when it is not closed and its own closing deadline or its complaint's
    answer deadline has passed, ``overdue_deadlines`` saying which and by how many days."""
    due = _aware(row.due_at)
    missed = missed_deadlines(
        complaint_due=complaint.due_at if complaint is not None else None,
        incident_due=due,
        closed=row.status == IncidentStatus.CLOSED,
        now=now,
    )
    return {
        "incident_id": row.incident_id,
        "complaint_id": row.complaint_id,
        "status": row.status,
        "opened_by": row.opened_by,
        "org": row.org,
        **_times("opened_at", row.opened_at),
        **_times("due_at", due),
        **_times("complaint_due_at", complaint.due_at if complaint is not None else None),
        "overdue": bool(missed),
        "overdue_deadlines": missed,
        **_estimate("due_estimated", row.due_estimated),
        **_estimate("complaint_due_estimated", complaint.due_estimated if complaint is not None else None),
        **_escalation(row),
        "assignee": row.assignee,
        "disposition": row.disposition,
        "closed_by": row.closed_by,
        **_times("closed_at", row.closed_at),
        "tree_size": row.tree_size,
        "root_hash": row.root_hash,
        # Which datasets' systems did not answer the record-id lookup: evidence may be missing there.
        "evidence_complete": not row.evidence_incomplete,
        "evidence_incomplete": _gaps_of(row),
    }


#: What a case says of a deadline that is an estimate (:func:`period_end`), Chinese first.
ESTIMATE_NOTE: Final = (
    "该期限跨入国务院尚未公布（或本系统尚未载入）节假日安排的年份，系按保守方式估算（只会早于、不会晚于"
    "实际期限）。请运维人员更新节假日数据（升级 chinesecalendar，或在 GRASSROOTS_HOLIDAYS_FILE 中补充该年"
    "安排）；已登记的期限不会自动重算，如需调整事件办结期限，请用 grassroots supervise assign --due。",
    "This deadline runs into a year whose holiday schedule the State Council has not published (or this "
    "system has not loaded), so it is a conservative estimate (earlier than, never later than, the real "
    "one). Ask the operators to update the holiday data (upgrade chinesecalendar, or add the year to "
    "GRASSROOTS_HOLIDAYS_FILE); deadlines already set are not recomputed: move an incident's with "
    "grassroots supervise assign --due.",
)


def _estimate(name: str, estimated: bool | None) -> dict[str, Any]:
    """``name`` (whether the deadline is an estimate), and when it is the note saying what that means."""
    if not estimated:
        return {name: False}
    return {name: True, f"{name}_note": ESTIMATE_NOTE[0], f"{name}_note_en": ESTIMATE_NOTE[1]}


def _escalation(incident: IncidentRow | None) -> dict[str, Any]:
    """Whether the case was escalated (督办), to which office it is escalated now, at which level (1: the
    office above the holder, 2: the one above that, …), when, and by when that office must see it closed
    before it goes one level further up; with a sentence."""
    if incident is None or incident.escalated_to is None:
        return {
            "escalated": False,
            "escalated_to": None,
            "escalation_level": 0,
            **_times("escalated_at", None),
            **_times("escalation_due_at", None),
        }
    to = incident.escalated_to
    level = incident.escalation_level or 1
    at = _aware(incident.escalated_at) if incident.escalated_at is not None else None
    due = _aware(incident.escalation_due_at) if incident.escalation_due_at is not None else None
    day = beijing_clock(at)[:10] if at is not None else ""
    tier, tier_zh = office_tier(to)
    if level == 1:
        zh = f"该事件逾期未办结，已于 {day} 提请上级监督机构（{to}）督办"
        en = f"overdue, escalated on {day} to the supervisory office above ({to}) for oversight"
    else:
        zh = (
            f"该事件逾期未办结，督办期限届满仍未办结，已于 {day} 逐级提请{tier_zh}监督机构（{to}）督办"
            f"（第 {level} 级督办）"
        )
        en = (
            f"overdue and still open when the office above's period ran out: escalated on {day} one level "
            f"further, to the {tier} supervisory office ({to}) for oversight (escalation level {level})"
        )
    if superior_office(to) is None:
        zh += "；已督办至全国层面，不再逐级上提"
        en += "; it has reached the national level and goes no further"
    elif due is not None:
        due_day = beijing_clock(due)[:10]
        zh += f"；督办期限 {due_day}（北京时间），届时仍未办结的，提请再上一级督办"
        en += f"; if not closed by the end of {due_day} (Beijing time), it is escalated one level further"
    return {
        "escalated": True,
        "escalated_to": to,
        "escalation_level": level,
        **_times("escalated_at", at),
        **_times("escalation_due_at", due),
        "escalation_message": zh,
        "escalation_message_en": en,
    }


def _gaps_of(incident: IncidentRow) -> list[dict[str, Any]]:
    gaps: list[dict[str, Any]] = (
        json.loads(incident.evidence_incomplete) if incident.evidence_incomplete else []
    )
    return gaps


def register_complaint(
    session: Session,
    *,
    subject_ref: str,
    source: str,
    summary: str | None,
    ticket: str | None,
    actor: str,
    org: str,
    now: datetime,
    deadlines: Deadlines = Deadlines(),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Record a complaint about ``subject_ref`` (already an HMAC ref: the ID number never comes here),
    registered by ``actor`` of the office ``org`` (a division code): the case's jurisdiction."""
    try:
        org_prefix(org)
    except ValueError:
        raise InvalidCaseInput(
            "登记投诉的单位必须是行政区划代码。", "The registering office must be a division code."
        ) from None
    if not is_ref(subject_ref):
        raise InvalidCaseInput(
            "投诉人身份必须以加密标识记录。", "The complainant must be given as a keyed ref."
        )
    try:
        channel = ComplaintSource(source)
    except ValueError:
        raise InvalidCaseInput(
            "投诉来源应为 hotline_12345（12345 热线）、burden_monitoring（减负监测点）或 walk_in（来访）。",
            "source must be hotline_12345, burden_monitoring or walk_in.",
        ) from None
    row = ComplaintRow(
        complaint_id=_id("C"),
        source=channel.value,
        subject_ref=subject_ref,
        ticket=_checked_text(("工单号", "ticket number"), ticket, limit=64) or None,
        summary=_checked_text(("投诉摘要", "complaint summary"), summary),
        received_by=actor,
        received_at=now,
        due_at=deadlines.complaint_due(now),
        incident_id=None,
        org=org,
    )
    row.due_estimated = deadlines.estimated(now, row.due_at)
    session.add(row)
    session.flush()
    change = {
        "kind": "supervision.complaint_registered",
        "actor": actor,
        "complaint_id": row.complaint_id,
        "source": row.source,
        "subject_ref": subject_ref,
        "org": org,
        "due_at": _ts(row.due_at),
        "due_estimated": bool(row.due_estimated),
    }
    return complaint_json(row, now), change


def _complaint(session: Session, complaint_id: str, scope: str, *, lock: bool = False) -> ComplaintRow:
    """The complaint's row, if it lies in ``scope`` (:class:`CaseOutsideScope` otherwise); ``lock`` as for
    :func:`_incident`."""
    row = session.get(ComplaintRow, complaint_id, with_for_update=lock or None, populate_existing=lock)
    if row is None:
        raise CaseNotFound(*_NO_COMPLAINT)
    if not in_scope(row.org, scope):
        raise CaseOutsideScope(*_NO_COMPLAINT, case_id=row.complaint_id, case_org=row.org)
    return row


def _incident(session: Session, incident_id: str, scope: str, *, lock: bool = False) -> IncidentRow:
    """The incident's row, if it lies in ``scope`` (:class:`CaseOutsideScope` otherwise); ``lock``: read
    afresh and held (``FOR UPDATE`` on PostgreSQL) until the commit."""
    row = session.get(IncidentRow, incident_id, with_for_update=lock or None, populate_existing=lock)
    if row is None:
        raise CaseNotFound(*_NO_INCIDENT)
    if not in_scope(row.org, scope):
        raise CaseOutsideScope(*_NO_INCIDENT, case_id=row.incident_id, case_org=row.org)
    return row


def check_case_scope(
    session: Session, scope: str, *, complaint_id: str | None = None, incident_id: str | None = None
) -> None:
    """Raise :class:`CaseNotFound` (or :class:`CaseOutsideScope`) unless the case named lies in ``scope``:
    the check a caller makes before any work on the case, so a refusal is known before anything else."""
    if complaint_id is not None:
        _complaint(session, complaint_id, scope)
    if incident_id is not None:
        _incident(session, incident_id, scope)


def _step(
    session: Session, incident_id: str, action: str, actor: str, at: datetime, note: str | None
) -> None:
    session.add(IncidentStepRow(incident_id=incident_id, action=action, actor=actor, at=at, note=note))


def _complaint_of(session: Session, incident: IncidentRow) -> ComplaintRow | None:
    if incident.complaint_id is None:
        return None
    return session.get(ComplaintRow, incident.complaint_id)


def _incident_of(session: Session, complaint: ComplaintRow) -> IncidentRow | None:
    if complaint.incident_id is None:
        return None
    return session.get(IncidentRow, complaint.incident_id)


def open_incident(
    session: Session,
    engine: Engine,
    *,
    complaint_id: str,
    subject_refs: Sequence[str] = (),
    records: Iterable[tuple[str, str]] = (),
    evidence_incomplete: Sequence[Mapping[str, Any]] = (),
    actor: str,
    now: datetime,
    tree_size: int | None = None,
    deadlines: Deadlines = Deadlines(),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Open the incident for a complaint with every access to the complainant and its inclusion proof.

    Every access: the reads that served the complainant's data, and the refused or failed attempts to read
    one of their records (someone outside the jurisdiction asking for it by id), which served nothing and
    so name the record asked for, never the person (:func:`audit.query.access_seqs_for_person`).

    ``subject_refs`` adds the complainant's refs under older HMAC keys still kept (key rotation); the
    complaint's own ref is always included. ``records`` adds the complainant's records as the departmental
    systems named them (``(dataset, record ref)``), so attempts at records no allowed read ever served are
    found too; ``evidence_incomplete`` lists the datasets whose systems did not answer (each a dict of
    codes and fixed sentences, kept with the incident and returned with it). ``tree_size`` is the tree
    the proofs are against — pass a signed checkpoint's size so the evidence verifies against a
    signature; default: the log's size now.
    """
    complaint = _complaint(session, complaint_id, "")  # the caller registered it a moment ago
    if complaint.incident_id is not None:
        raise CaseConflict("该投诉已立案。", "This complaint already has an incident.")
    missing = _checked_gaps(evidence_incomplete)
    refs = sorted({complaint.subject_ref, *subject_refs})
    seqs = access_seqs_for_person(engine, refs, records)
    size = tree_size if tree_size is not None else log_size(engine)
    seqs = [s for s in seqs if s <= size]
    root, proofs = inclusion_proofs(engine, seqs, size) if size else (merkle.EMPTY_ROOT, {})
    incident = IncidentRow(
        incident_id=_id("I"),
        complaint_id=complaint.complaint_id,
        status=IncidentStatus.OPEN.value,
        opened_by=actor,
        opened_at=now,
        due_at=deadlines.incident_due(now),
        assignee=None,
        disposition=None,
        closed_by=None,
        closed_at=None,
        tree_size=size,
        root_hash=root.hex(),
        evidence_incomplete=json.dumps(missing, ensure_ascii=False) if missing else None,
        org=complaint.org,
    )
    incident.due_estimated = deadlines.estimated(now, incident.due_at)
    session.add(incident)
    session.flush()
    _attach_evidence(session, incident.incident_id, seqs, proofs)
    complaint.incident_id = incident.incident_id
    _step(session, incident.incident_id, "opened", actor, now, None)
    session.flush()
    change = {
        "kind": "supervision.incident_opened",
        "actor": actor,
        "incident_id": incident.incident_id,
        "complaint_id": complaint.complaint_id,
        "evidence_events": len(seqs),
        "tree_size": size,
        "root_hash": incident.root_hash,
        "evidence_incomplete": _gap_codes(missing),
    }
    return incident_json(incident, now, complaint), change


def _checked_gaps(evidence_incomplete: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    missing = [dict(item) for item in evidence_incomplete]
    if any(personal_data_in(json.dumps(item, ensure_ascii=False)) for item in missing):
        raise InvalidCaseInput(
            "证据缺失说明中不得含有个人信息。", "The evidence gaps must not hold personal data."
        )
    return missing


def _gap_codes(missing: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The evidence gaps as codes only (dataset, system, reason): what an event says of them."""
    return [
        {"dataset": m.get("dataset"), "system": m.get("system"), "reason": m.get("reason")} for m in missing
    ]


def _attach_evidence(
    session: Session,
    incident_id: str,
    seqs: Iterable[int],
    proofs: Mapping[int, tuple[bytes, list[bytes]]],
) -> None:
    for seq in seqs:
        leaf, proof = proofs[seq]
        session.add(
            IncidentEvidenceRow(
                incident_id=incident_id,
                seq=seq,
                leaf_hash=leaf.hex(),
                proof=json.dumps([p.hex() for p in proof]),
            )
        )


class SubjectMismatch(SupervisionError):
    """The ID number given for a re-check is not the complainant's (its keyed ref differs)."""

    kind = "invalid"
    code = "subject_mismatch"


def incident_for_recheck(
    session: Session,
    *,
    incident_id: str,
    scope: str,
    subject_ref: str,
    subject_refs: Sequence[str] = (),
) -> dict[str, Any]:
    """The incident whose evidence is to be checked again for the person with ``subject_ref``, refused
    before any departmental system is asked: a closed incident (its evidence is settled: the answer to the
    complainant rests on it), or a person who is not the complainant (asking the systems about them
    would be a read about someone no complaint concerns; PIPL Art. 6, minimum necessary).
    ``subject_refs`` adds the person's refs under older HMAC keys still kept (key rotation): a complaint
    registered before a rotation stored its ref under the key of its day.
    Returns ``{"incident_id", "complaint_id", "evidence_incomplete"}`` (the datasets that did not answer)."""
    incident = _incident(session, incident_id, scope)
    if incident.status == IncidentStatus.CLOSED:
        raise _closed("不能再重新核查证据", "its evidence can no longer be checked again")
    complaint = _complaint_of(session, incident)
    if complaint is None or complaint.subject_ref not in {subject_ref, *subject_refs}:
        raise SubjectMismatch(
            "所输入的身份证号码与该事件投诉人的不一致，未查询任何部门系统。请核对投诉人及事件编号后重新输入。",
            "The ID number given is not the complainant's of this incident; no departmental system was "
            "asked. Check the complainant and the incident id and enter it again.",
        )
    return {
        "incident_id": incident.incident_id,
        "complaint_id": complaint.complaint_id,
        "evidence_incomplete": _gaps_of(incident),
    }


def recheck_evidence(
    session: Session,
    engine: Engine,
    *,
    incident_id: str,
    scope: str,
    subject_ref: str,
    subject_refs: Sequence[str] = (),
    rechecked: Iterable[str],
    records: Iterable[tuple[str, str]] = (),
    evidence_incomplete: Sequence[Mapping[str, Any]] = (),
    actor: str,
    now: datetime,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Search again for the complainant's accesses once departmental systems that did not answer do
    (``subject_refs``: the person's refs under older HMAC keys still kept, searched too).

    ``rechecked`` are the datasets whose systems were asked again, ``records`` what they answered
    (``(dataset, record ref)``) and ``evidence_incomplete`` those of them that still did not answer: their
    gaps replace the incident's earlier ones for those datasets; the gaps of datasets not asked stay.
    Newly found accesses are attached with inclusion proofs against the incident's own tree (the signed
    checkpoint of the complaint), so all its evidence still verifies against one signed root; an access
    after that tree is not the complaint's. Checked again here (:func:`incident_for_recheck`): the
    incident may have been closed while the systems were asked.
    """
    # The incident's row is locked first (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises units of
    # work): two re-checks at once then run one after the other, and the second sees the evidence the first
    # attached instead of inserting it again (a duplicate key, answered 500).
    _incident(session, incident_id, scope, lock=True)
    incident_for_recheck(
        session, incident_id=incident_id, scope=scope, subject_ref=subject_ref, subject_refs=subject_refs
    )
    incident = _incident(session, incident_id, scope)
    asked = sorted(set(rechecked))
    still = _checked_gaps(evidence_incomplete)
    earlier = _gaps_of(incident)
    missing = [m for m in earlier if m.get("dataset") not in asked] + still
    size = int(incident.tree_size)
    held = set(
        session.scalars(select(IncidentEvidenceRow.seq).where(IncidentEvidenceRow.incident_id == incident_id))
    )
    found = [
        s
        for s in access_seqs_for_person(engine, list(dict.fromkeys([subject_ref, *subject_refs])), records)
        if s <= size and s not in held
    ]
    if found:
        root, proofs = inclusion_proofs(engine, found, size)
        if root.hex() != incident.root_hash:
            # The log no longer yields the tree the incident's evidence was proved against: never attach
            # proofs that would not verify with the rest (sigstore-style: say expected vs found).
            raise CaseConflict(
                "审计日志与该事件立案时的签名树不一致，未添加证据。请立即运行 grassroots audit verify。",
                f"The audit log no longer yields the incident's tree (size {size}: expected root "
                f"{incident.root_hash}, found {root.hex()}); no evidence added. Run grassroots audit verify.",
            )
        _attach_evidence(session, incident_id, found, proofs)
    incident.evidence_incomplete = json.dumps(missing, ensure_ascii=False) if missing else None
    gaps = "、".join(sorted({str(m.get("dataset")) for m in missing})) or "无"
    _step(
        session,
        incident_id,
        "evidence_rechecked",
        actor,
        now,
        f"重新核查 {'、'.join(asked) or '无'}；新增证据 {len(found)} 条；仍缺 {gaps}",
    )
    session.flush()
    total = session.scalar(
        select(func.count())
        .select_from(IncidentEvidenceRow)
        .where(IncidentEvidenceRow.incident_id == incident_id)
    )
    change = {
        "kind": "supervision.incident_evidence_rechecked",
        "actor": actor,
        "incident_id": incident_id,
        "complaint_id": incident.complaint_id,
        "subject_ref": subject_ref,
        "datasets_rechecked": asked,
        "new_evidence_events": len(found),
        "new_evidence_seqs": found,
        "evidence_events": int(total or 0),
        "tree_size": size,
        "root_hash": incident.root_hash,
        "evidence_complete": not missing,
        "evidence_incomplete": _gap_codes(missing),
    }
    return incident_json(incident, now, _complaint_of(session, incident)), change


#: How far ahead a person may set an incident's deadline (``assign --due``): a year, as the due-soon
#: list looks ahead at most (``due_within_days`` 366).
MAX_DEADLINE_MOVE: Final = timedelta(days=366)


def assign_incident(
    session: Session,
    *,
    incident_id: str,
    scope: str,
    assignee: str,
    actor: str,
    now: datetime,
    due_at: datetime | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    incident = _incident(session, incident_id, scope)
    if incident.status == IncidentStatus.CLOSED:
        raise _closed("不能再分派", "it cannot be assigned")
    who = _checked_text(("承办人", "assignee"), assignee, required=True, limit=256)
    if due_at is not None:
        if due_at.utcoffset() is None:
            raise InvalidCaseInput("期限必须带时区。", "due_at must carry a time zone.")
        if due_at <= now:
            # A deadline already passed is a typo (2025 for 2026), and would make the case overdue at once.
            today = now.astimezone(CHINA_STANDARD_TIME).date().isoformat()
            raise InvalidCaseInput(
                f"新的办结期限已经过去（今天是 {today}，北京时间），请核对年份和日期；期限须晚于现在。",
                f"The new deadline has already passed (today is {today}, Beijing time); check the year "
                "and the day: a deadline must lie in the future.",
            )
        if due_at > now + MAX_DEADLINE_MOVE:
            # So is one years away (2099 for 2026): the case would never be overdue, never escalated.
            today = now.astimezone(CHINA_STANDARD_TIME).date().isoformat()
            raise InvalidCaseInput(
                f"新的办结期限在一年以后（今天是 {today}，北京时间），请核对年份和日期；"
                "办结期限最多延至一年内，到期未办结的事件会列入逾期并提请上级督办。",
                f"The new deadline is more than a year away (today is {today}, Beijing time); check the "
                "year and the day: a deadline may be moved up to a year ahead, and a case not closed by it "
                "is overdue and escalated.",
            )
    before = _aware(incident.due_at)
    moved = due_at is not None and due_at.astimezone(UTC) != before
    if due_at is not None:
        incident.due_at = due_at.astimezone(UTC)
        incident.due_estimated = False  # a day a person set, not one counted on the holiday schedule
    incident.assignee = who
    incident.status = IncidentStatus.INVESTIGATING.value
    _step(session, incident_id, "assigned", actor, now, who)
    if moved:
        # A deadline moved (later, it takes the case off the overdue list) is in the case file, from what
        # to what, not only in the log: whoever reads the case sees it was moved and by whom.
        _step(
            session,
            incident_id,
            "deadline_changed",
            actor,
            now,
            f"{_clock(before)} → {_clock(_aware(incident.due_at))}",
        )
    session.flush()
    change = {
        "kind": "supervision.incident_assigned",
        "actor": actor,
        "incident_id": incident_id,
        "assignee": who,
        "due_at": _ts(_aware(incident.due_at)),
        **({"previous_due_at": _ts(before)} if moved else {}),
    }
    return incident_json(incident, now, _complaint_of(session, incident)), change


def add_note(
    session: Session, *, incident_id: str, scope: str, note: str, actor: str, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    incident = _incident(session, incident_id, scope)
    if incident.status == IncidentStatus.CLOSED:
        raise _closed("不能再添加调查记录", "no more notes can be added")
    text = _checked_text(("调查记录", "note"), note, required=True)
    _step(session, incident_id, "note", actor, now, text)
    session.flush()
    change = {"kind": "supervision.incident_note", "actor": actor, "incident_id": incident_id}
    return incident_json(incident, now, _complaint_of(session, incident)), change


#: The shortest disposition note: the answer to the resident rests on it ("x" closed a case before).
MIN_DISPOSITION_NOTE = 8


def dispose_incident(
    session: Session,
    *,
    incident_id: str,
    scope: str,
    disposition: str,
    note: str,
    actor: str,
    now: datetime,
) -> tuple[dict[str, Any], dict[str, Any]]:
    incident = _incident(session, incident_id, scope)
    if incident.status == IncidentStatus.CLOSED:
        raise _closed("已有处理结论，不能再次办结", "it already has its disposition")
    if incident.status == IncidentStatus.OPEN:
        # Monitor -> report -> handle: a case nobody was made responsible for cannot be closed.
        raise CaseConflict(
            "事件尚未分派承办人，不能办结：请先分派（assign）并开展核查，再填写处理结论。",
            "The incident has not been assigned: assign it and investigate before disposing of it.",
        )
    try:
        outcome = Disposition(disposition)
    except ValueError:
        raise InvalidCaseInput(
            "处理结论应为 substantiated（属实）、unsubstantiated（不属实）或 referred（移送）。",
            "disposition must be substantiated, unsubstantiated or referred.",
        ) from None
    text = _checked_text(("处理意见", "disposition note"), note, required=True)
    if len(text.strip()) < MIN_DISPOSITION_NOTE:
        raise InvalidCaseInput(
            f"处理意见至少 {MIN_DISPOSITION_NOTE} 个字：请写明核查了什么、结论的依据是什么。",
            f"The disposition note needs at least {MIN_DISPOSITION_NOTE} characters: what was checked "
            "and what the conclusion rests on.",
        )
    incident.status = IncidentStatus.CLOSED.value
    incident.disposition = outcome.value
    incident.closed_by = actor
    incident.closed_at = now
    _step(session, incident_id, "disposed", actor, now, text)
    session.flush()
    change = {
        "kind": "supervision.incident_disposed",
        "actor": actor,
        "incident_id": incident_id,
        "disposition": outcome.value,
    }
    return incident_json(incident, now, _complaint_of(session, incident)), change


class CaseHasJurisdiction(CaseConflict):
    code = "case_has_jurisdiction"


#: The step a hand-down (交办) leaves, its note ``"<from office> → <to office>"``.
HANDED_DOWN: Final = "handed_down"
_MOVE_ARROW: Final = " → "


@dataclass(frozen=True)
class HandDown:
    """One 交办 step: ``incident_id`` moved from office ``from_org`` to office ``to_org`` at ``at``."""

    incident_id: str
    from_org: str
    to_org: str
    at: datetime


def hand_downs(rows: Iterable[Any], action: str = HANDED_DOWN) -> list[HandDown]:
    """The hand-downs among step rows (``incident_id``, ``action``, ``note``, ``at``), in the given order;
    ``action`` ``ESCALATED``: the escalations (督办), which are moves of the same shape, upwards."""
    found = []
    for row in rows:
        if row.action != action or not row.note or _MOVE_ARROW not in row.note:
            continue
        before, after = row.note.split(_MOVE_ARROW, 1)
        found.append(HandDown(row.incident_id, before, after, row.at))
    return found


def registering_offices(moves: Iterable[HandDown]) -> dict[str, str]:
    """Per incident handed down, the office that held it before its first hand-down: the one that registered
    it (or was given it at the national level). ``moves`` in the order they were made."""
    first: dict[str, str] = {}
    for move in moves:
        first.setdefault(move.incident_id, move.from_org)
    return first


def _case_hand_downs(session: Session, incident_id: str | None) -> list[HandDown]:
    if incident_id is None:
        return []
    steps = IncidentStepRow
    rows = session.execute(
        select(steps.incident_id, steps.action, steps.note, steps.at)
        .where(steps.incident_id == incident_id, steps.action == HANDED_DOWN)
        .order_by(steps.step_id)
    ).all()
    return hand_downs(rows)


def _checked_office(org: str) -> str:
    """``org`` as an office's 12-digit division code (not the national root), or refused."""
    try:
        known = len(org) == 12 and org_prefix(org) != ""
    except ValueError:
        known = False
    if not known:
        raise InvalidCaseInput(
            "管辖单位必须是具体单位的 12 位统计用区划代码（不能是全国代码 000000000000）。",
            "The jurisdiction must be an office's 12-digit division code (not the national root).",
        )
    return org


def assign_jurisdiction(
    session: Session, *, complaint_id: str, scope: str, org: str, actor: str, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Give a case whose jurisdiction is not known (``org`` NULL: registered before migration 0013, its
    registration event since pruned) the office ``org`` (a 12-digit division code, not the national root):
    the complaint and its incident both, so the supervisors of that office and above see and handle it.

    Only a case without one: a case's jurisdiction is the office that registered it, and moving a case out
    of a supervisor's sight is no correction (:class:`CaseHasJurisdiction`). Such a case lies in the
    national ``scope`` only (:func:`in_scope`), which covers every office ``org`` may name."""
    _checked_office(org)
    # Locked (PostgreSQL): two assignments at once run one after the other, and the second sees the first's.
    complaint = _complaint(session, complaint_id, scope, lock=True)
    if complaint.org is not None:
        moves = _case_hand_downs(session, complaint.incident_id)
        if moves:  # held now by the office it was handed down to, not the one that registered it
            before, held = moves[0].from_org, complaint.org
            raise CaseHasJurisdiction(
                f"该投诉已有管辖单位，不能更改：它原归 {before} 管辖，已交办给 {held} 办理，"
                "现归承办单位管辖（原管辖单位及其上级仍可查看、督办）。只能为管辖单位不明的投诉指定管辖单位。",
                f"This complaint already has a jurisdiction, which cannot be changed: held by {before}, it "
                f"was handed down to {held}, which now holds it (the office that held it and those above "
                "still see and oversee it). Only a complaint whose jurisdiction is not known can be given "
                "one.",
            )
        raise CaseHasJurisdiction(
            f"该投诉已有管辖单位，不能更改：投诉归登记它的监督机构（{complaint.org}）管辖。"
            "只能为管辖单位不明的投诉指定管辖单位。",
            f"This complaint already has a jurisdiction ({complaint.org}), which cannot be changed: a case "
            "belongs to the office that registered it. Only a complaint whose jurisdiction is not known can "
            "be given one.",
        )
    complaint.org = org
    incident = _incident_of(session, complaint)
    if incident is not None:
        incident.org = org
        _step(session, incident.incident_id, "jurisdiction_assigned", actor, now, org)
    session.flush()
    change = {
        "kind": "supervision.case_jurisdiction_assigned",
        "actor": actor,
        "complaint_id": complaint.complaint_id,
        "incident_id": complaint.incident_id,
        "org": org,
    }
    return complaint_json(complaint, now, incident), change


def hand_down_case(
    session: Session, *, incident_id: str, scope: str, org: str, actor: str, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """交办: the office that holds a case hands it to an office under it (the district's supervisors to a
    township's, 区纪委监委 to 城桥镇纪委), which then sees and handles it as its own — assigns, notes,
    disposes — while every office that saw the case still does: the new ``org`` lies under the old one,
    so whoever's code was a prefix of the old is a prefix of the new (least privilege, GB/T 35273-2020
    §7.1: nobody above loses sight, nobody beside gains it). The closed loop the district's supervision
    plan asks for (监测、举报、处置闭环机制: 对基层举报反映的违规情况及时督促整改) hands a complaint to the
    township that must act on it, and keeps watching it.

    Only downward and only an open case: a case's office is never moved up or sideways (that would take it
    out of sight of the offices below that hold it, or show it to one beside), and a closed case is
    reopened first. A case of no known office is given one at the national level instead
    (:func:`assign_jurisdiction`)."""
    target = _checked_office(org)
    incident = _incident(session, incident_id, scope, lock=True)
    if incident.status == IncidentStatus.CLOSED:
        raise _closed("不能再交办", "it cannot be handed down")
    if incident.org is None:
        raise CaseConflict(
            "该事件的管辖单位不明，不能交办：请先由全国层面指定管辖单位"
            "（grassroots supervise set-jurisdiction）。",
            "The incident's jurisdiction is not known, so it cannot be handed down: it must be given one at "
            "the national level first (grassroots supervise set-jurisdiction).",
        )
    held = org_prefix(incident.org)
    if not (target.startswith(held) and org_prefix(target) != held):
        raise InvalidCaseInput(
            f"只能交办给本事件管辖单位（{incident.org}）的下级单位：交办后上级仍能看到并督办该事件，"
            "不能交给上级或同级单位。请核对区划代码。",
            f"A case can only be handed down to an office under the one that holds it ({incident.org}), "
            "so that the offices above it still see and oversee it; not up, nor sideways. Check the code.",
        )
    before = incident.org
    incident.org = target
    complaint = _complaint_of(session, incident)
    if complaint is not None:
        complaint.org = target
    kind = "supervision.case_handed_down"
    change = _moved(session, incident, HANDED_DOWN, kind, actor, now, before, target)
    return incident_json(incident, now, complaint), change


def _moved(
    session: Session,
    incident: IncidentRow,
    action: str,
    kind: str,
    actor: str,
    now: datetime,
    before: str,
    after: str,
) -> dict[str, Any]:
    """A case gone from one office to another (交办 down, 督办 up): the step, its note
    ``"<from> → <to>"`` (:func:`hand_downs` reads it back), and the change for the log."""
    _step(session, incident.incident_id, action, actor, now, f"{before}{_MOVE_ARROW}{after}")
    session.flush()
    return {
        "kind": kind,
        "actor": actor,
        "incident_id": incident.incident_id,
        "complaint_id": incident.complaint_id,
        "from_org": before,
        "org": after,
    }


#: The step an escalation (督办) leaves, its note ``"<holding office> → <office above>"``.
ESCALATED: Final = "escalated"
#: Who escalates: the periodic supervision task, the gateway's own act (as for scheduled archives).
ESCALATOR: Final = "system"


def superior_office(org: str) -> str | None:
    """The office one level above ``org`` (a 12-digit division code): a township's district, a district's
    city, a city's province, a province's the national level (``000000000000``); None above that."""
    prefix = org_prefix(org)
    if prefix == "":
        return None
    above = max((b for b in DIVISION_BOUNDARIES if b < len(prefix)), default=0)
    return prefix[:above].ljust(12, "0")


#: The tiers of office a case climbs through, by the length of the office's significant division-code
#: prefix: (code, Chinese name).
OFFICE_TIERS: Final[dict[int, tuple[str, str]]] = {
    0: ("national", "全国层面"),
    2: ("province", "省级"),
    4: ("city", "市级"),
    6: ("county", "县级"),
    9: ("township", "乡镇级"),
    12: ("village", "村级"),
}


def office_tier(org: str) -> tuple[str, str]:
    """The tier of the office ``org`` (a division code): ``("city", "市级")`` for ``310100000000``."""
    return OFFICE_TIERS[len(org_prefix(org))]


def _late_condition(now: datetime) -> ColumnElement[bool]:
    """SQL over incidents alone: not closed, and its closing deadline or its complaint's answer deadline
    has passed (:func:`overdue_condition`, without the join: usable in an UPDATE's WHERE)."""
    complaint_late = (
        select(ComplaintRow.complaint_id)
        .where(ComplaintRow.complaint_id == IncidentRow.complaint_id, ComplaintRow.due_at < now)
        .exists()
    )
    late = or_(IncidentRow.due_at < now, complaint_late)
    return and_(IncidentRow.status != IncidentStatus.CLOSED.value, late)


def incidents_to_escalate(session: Session, now: datetime, *, limit: int = 500) -> list[str]:
    """The overdue incidents (:func:`overdue_condition`) held by a known office below the national level
    and either not yet escalated, or escalated to an office below the national level whose period
    (``escalation_due_at``) has run out: what :func:`escalate_incident` is to be asked about, oldest
    deadline first."""
    not_yet = IncidentRow.escalated_to.is_(None)
    further = and_(IncidentRow.escalated_to != ROOT_OFFICE, IncidentRow.escalation_due_at < now)
    stmt = (
        select(IncidentRow.incident_id)
        .where(
            _late_condition(now),
            or_(not_yet, further),
            IncidentRow.org.is_not(None),
            IncidentRow.org != ROOT_OFFICE,
        )
        .order_by(IncidentRow.due_at, IncidentRow.incident_id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def escalate_incident(
    session: Session,
    *,
    incident_id: str,
    now: datetime,
    actor: str = ESCALATOR,
    deadlines: Deadlines = Deadlines(),
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """督办, one level at a time: an overdue incident is escalated to the office one level above the one
    holding it (:func:`superior_office`), which then finds it in its 督办 list
    (``list_incidents(escalated=True)``) and oversees it — the closed loop's "逾期督办" (the district's
    supervision plan: 对基层举报反映的违规情况及时督促整改). That office has its own period to see it closed
    (``deadlines.escalation_due``, ``escalation_due_at``); a case still open and overdue after it is
    escalated one level further (township → county/district → city → province → the national level,
    never past it), leaving the 督办 list of the office it was with for that of the office above.
    Each is recorded as an ``escalated`` step (its note ``"<from> → <to>"``) and the returned change
    (``supervision.incident_escalated``, with the level, the office's tier, the deadlines missed and the
    new period), which the caller appends to the log in the same transaction.

    Once per level, whoever asks and however many ask at once: the row is claimed by one UPDATE whose
    WHERE holds "still overdue, still with the office it was with (and, above the holder, that office's
    period run out)" (PostgreSQL re-checks it on the row another transaction just changed; SQLite's units
    of work run one at a time), so of several gateway processes exactly one escalates and the others get
    None. None too when the case is not due to go up, is held or escalated at the national level or held by
    no known office. Closing stops the climb; reopening clears the escalation (new clocks, new round)."""
    incident = session.get(IncidentRow, incident_id, populate_existing=True)
    if incident is None or incident.org is None:
        return None
    held = incident.escalated_to or incident.org
    above = superior_office(held)
    if above is None:
        return None
    if incident.escalated_to is None:
        level = 1
        still_with = [IncidentRow.escalated_to.is_(None), IncidentRow.org == held]
    else:
        level = (incident.escalation_level or 1) + 1
        still_with = [IncidentRow.escalated_to == held, IncidentRow.escalation_due_at < now]
    previous_due = incident.escalation_due_at
    # The national level has none: nothing is above it.
    due = deadlines.escalation_due(now) if superior_office(above) is not None else None
    claimed = session.execute(
        update(IncidentRow)
        .where(IncidentRow.incident_id == incident_id, *still_with, _late_condition(now))
        .values(escalated_to=above, escalated_at=now, escalation_due_at=due, escalation_level=level)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]  # a CursorResult for an UPDATE
        return None
    session.refresh(incident)
    complaint = _complaint_of(session, incident)
    out = incident_json(incident, now, complaint)
    change = _moved(session, incident, ESCALATED, "supervision.incident_escalated", actor, now, held, above)
    change["escalation_level"] = level
    change["org_level"] = office_tier(above)[0]
    change["missed"] = [
        {"deadline": m["deadline"], "due_at": m["due_at"], "days_overdue": m["days_overdue"]}
        for m in out["overdue_deadlines"]
    ]
    if level > 1 and previous_due is not None:
        change["previous_escalation_due_at"] = _ts(_aware(previous_due))
    change["escalation_due_at"] = _ts(due)
    return out, change


def reopen_incident(
    session: Session,
    *,
    incident_id: str,
    scope: str,
    reason: str,
    actor: str,
    now: datetime,
    deadlines: Deadlines | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Handle a closed incident again (12345 重办): the resident disagrees with the answer, or the review
    finds the conclusion wrong. Back to ``investigating`` with its assignee (``open`` without one), the
    disposition withdrawn, and both clocks started afresh from ``now``: the complaint is answered again
    and the incident closed again, each within its period (PIPL Art. 50: a complaint is handled until it
    is answered). The earlier disposition stays in the steps, and so does the reason."""
    incident = _incident(session, incident_id, scope)
    if incident.status != IncidentStatus.CLOSED:
        raise CaseConflict(
            "事件尚未办结，无需重新办理：可继续添加调查记录或填写处理结论。",
            "The incident is not closed, so there is nothing to reopen: add notes or dispose of it.",
        )
    text = _checked_text(("重新办理的原因", "reason for reopening"), reason, required=True)
    days = deadlines or Deadlines()
    complaint = _complaint_of(session, incident)
    if complaint is not None:
        complaint.due_at = days.complaint_due(now)
        complaint.due_estimated = days.estimated(now, complaint.due_at)
    incident.status = (IncidentStatus.INVESTIGATING if incident.assignee else IncidentStatus.OPEN).value
    incident.disposition = None
    incident.closed_by = None
    incident.closed_at = None
    incident.due_at = days.incident_due(now)
    incident.due_estimated = days.estimated(now, incident.due_at)
    # The clocks start afresh: an escalation was of the earlier round (it stays in the steps and the log).
    incident.escalated_to = None
    incident.escalated_at = None
    incident.escalation_due_at = None
    incident.escalation_level = None
    _step(session, incident_id, "reopened", actor, now, text)
    session.flush()
    change = {
        "kind": "supervision.incident_reopened",
        "actor": actor,
        "incident_id": incident_id,
        "due_at": _ts(_aware(incident.due_at)),
    }
    return incident_json(incident, now, complaint), change


def get_complaint(
    session: Session, complaint_id: str, now: datetime | None = None, *, scope: str
) -> dict[str, Any]:
    """The complaint, if in ``scope``; with ``now``, whether it is overdue (its answer or its incident's
    deadline)."""
    row = _complaint(session, complaint_id, scope)
    return complaint_json(row, now, _incident_of(session, row))


#: What a complaint list can be narrowed to: where its incident stands, or ``overdue`` (not closed and
#: past the complaint's answer deadline or the incident's closing deadline, as ``complaint_json`` says).
COMPLAINT_STATUSES: Final = (*(s.value for s in IncidentStatus), "overdue")


def _complaint_conditions(status: str | None, now: datetime | None) -> list[ColumnElement[bool]]:
    if status is None:
        return []
    if status == "overdue":
        if now is None:
            raise ValueError("an overdue list needs the time to compare against")
        # A complaint without an incident is not closed either (complaint_json counts it the same way).
        not_closed = or_(IncidentRow.status.is_(None), IncidentRow.status != IncidentStatus.CLOSED.value)
        late = or_(ComplaintRow.due_at < now, and_(IncidentRow.due_at.is_not(None), IncidentRow.due_at < now))
        return [not_closed, late]
    try:
        wanted = IncidentStatus(status)
    except ValueError:
        raise InvalidCaseInput(
            f"投诉状态只能是 {'、'.join(COMPLAINT_STATUSES)} 之一。",
            f"The complaint status must be one of {', '.join(COMPLAINT_STATUSES)}.",
        ) from None
    return [IncidentRow.status == wanted.value]


def list_complaints(
    session: Session,
    *,
    scope: str,
    limit: int = 100,
    offset: int = 0,
    now: datetime | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    """Complaints newest first; ``status`` narrows to those whose incident is open, investigating or
    closed, or to the overdue ones (at ``now``); only those in ``scope`` (the caller's jurisdiction and
    below); ``offset`` pages on (:func:`count_complaints` says how many match)."""
    stmt = (
        select(ComplaintRow, IncidentRow)
        .outerjoin(IncidentRow, IncidentRow.incident_id == ComplaintRow.incident_id)
        .where(*_complaint_conditions(status, now), *case_scope_conditions(ComplaintRow.org, scope))
        .order_by(ComplaintRow.received_at.desc(), ComplaintRow.complaint_id.desc())
        .offset(offset)
        .limit(limit)
    )
    return [complaint_json(c, now, i) for c, i in session.execute(stmt)]


def count_complaints(
    session: Session, *, scope: str, status: str | None = None, now: datetime | None = None
) -> int:
    stmt = (
        select(func.count())
        .select_from(ComplaintRow)
        .outerjoin(IncidentRow, IncidentRow.incident_id == ComplaintRow.incident_id)
        .where(*_complaint_conditions(status, now), *case_scope_conditions(ComplaintRow.org, scope))
    )
    return int(session.scalar(stmt) or 0)


def get_incident(session: Session, incident_id: str, now: datetime, *, scope: str) -> dict[str, Any]:
    """The incident, if in ``scope``, with its steps and evidence (seq, leaf hash, proof) — everything to
    re-verify it. The evidence is all of it, wherever the reads were made: it is the case's."""
    incident = _incident(session, incident_id, scope)
    steps = session.scalars(
        select(IncidentStepRow)
        .where(IncidentStepRow.incident_id == incident_id)
        .order_by(IncidentStepRow.step_id)
    )
    evidence = session.scalars(
        select(IncidentEvidenceRow)
        .where(IncidentEvidenceRow.incident_id == incident_id)
        .order_by(IncidentEvidenceRow.seq)
    )
    out = incident_json(incident, now, _complaint_of(session, incident))
    out["steps"] = [
        {"action": s.action, "actor": s.actor, **_times("at", s.at), "note": s.note} for s in steps
    ]
    out["evidence"] = [
        {"seq": e.seq, "leaf_hash": e.leaf_hash, "proof": json.loads(e.proof)} for e in evidence
    ]
    return out


def overdue_condition(now: datetime) -> ColumnElement[bool]:
    """SQL for "overdue at ``now``" over incidents outer-joined to their complaints: not closed, and its
    own closing deadline or its complaint's answer deadline has passed (either clock makes it late)."""
    return and_(
        IncidentRow.status != IncidentStatus.CLOSED.value,
        or_(IncidentRow.due_at < now, ComplaintRow.due_at < now),
    )


def due_soon_condition(now: datetime, due_by: datetime) -> ColumnElement[bool]:
    """SQL for "due soon" (临期) over incidents outer-joined to their complaints: not closed, not yet
    overdue at ``now``, and its closing deadline or its complaint's answer deadline falls by ``due_by``.
    The reminder a supervisor acts on before a case turns up on the overdue list. Both compared in UTC, as
    stored (SQLite compares the stored text)."""
    now, due_by = _aware(now).astimezone(UTC), _aware(due_by).astimezone(UTC)
    return and_(
        IncidentRow.status != IncidentStatus.CLOSED.value,
        IncidentRow.due_at >= now,
        or_(ComplaintRow.due_at.is_(None), ComplaintRow.due_at >= now),
        or_(IncidentRow.due_at <= due_by, ComplaintRow.due_at <= due_by),
    )


def due_within(now: datetime, days: int) -> datetime:
    """The end of the Beijing day ``days`` days after today (0: the end of today): "due within 3 days"
    as an office counts it, by calendar day (a look-ahead window, not a period: no day is skipped)."""
    if not 0 <= days <= 366:
        raise InvalidCaseInput(
            "临期天数应在 0 到 366 之间（0 表示今天到期）。",
            "The days ahead must lie between 0 and 366 (0: due today).",
        )
    return _end_of(_beijing_day(now) + timedelta(days=days))


def escalated_condition(scope: str) -> ColumnElement[bool]:
    """SQL for "in the 督办 list of ``scope``": not closed, and escalated to an office in ``scope`` (the
    office itself or one under it; at the national level, every escalation)."""
    to = [IncidentRow.escalated_to.is_not(None), IncidentRow.status != IncidentStatus.CLOSED.value]
    return and_(*to, *case_scope_conditions(IncidentRow.escalated_to, scope))


def _incident_conditions(
    now: datetime,
    status: str | None,
    overdue: bool,
    scope: str,
    due_by: datetime | None = None,
    escalated: bool = False,
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = case_scope_conditions(IncidentRow.org, scope)
    if escalated:
        conditions.append(escalated_condition(scope))
    if status is not None:
        conditions.append(IncidentRow.status == IncidentStatus(status).value)
    if overdue:
        conditions.append(overdue_condition(now))
    if due_by is not None:
        conditions.append(due_soon_condition(now, due_by))
    return conditions


def list_incidents(
    session: Session,
    now: datetime,
    *,
    scope: str,
    status: str | None = None,
    overdue: bool = False,
    due_by: datetime | None = None,
    escalated: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Incidents by deadline; ``overdue``: those late at ``now`` (:func:`overdue_condition`), the one whose
    earliest missed deadline is oldest first, each saying which deadline it missed and by how many days;
    ``due_by``: those not yet late with a deadline by then (:func:`due_soon_condition`, :func:`due_within`),
    the earliest deadline first; ``escalated``: the caller's 督办 list (:func:`escalated_condition`).
    Only those in ``scope`` (the caller's jurisdiction and below).
    ``offset`` pages on (:func:`count_incidents` says how many match)."""
    stmt = (
        select(IncidentRow, ComplaintRow)
        .outerjoin(ComplaintRow, ComplaintRow.complaint_id == IncidentRow.complaint_id)
        .where(*_incident_conditions(now, status, overdue, scope, due_by, escalated))
    )
    if overdue or escalated or due_by is not None:
        earliest = case(
            (ComplaintRow.due_at < IncidentRow.due_at, ComplaintRow.due_at), else_=IncidentRow.due_at
        )
        stmt = stmt.order_by(earliest, IncidentRow.incident_id)
    else:
        stmt = stmt.order_by(IncidentRow.due_at, IncidentRow.incident_id)
    return [incident_json(i, now, c) for i, c in session.execute(stmt.offset(offset).limit(limit))]


def count_incidents(
    session: Session,
    now: datetime,
    *,
    scope: str,
    status: str | None = None,
    overdue: bool = False,
    due_by: datetime | None = None,
    escalated: bool = False,
) -> int:
    stmt = (
        select(func.count())
        .select_from(IncidentRow)
        .outerjoin(ComplaintRow, ComplaintRow.complaint_id == IncidentRow.complaint_id)
        .where(*_incident_conditions(now, status, overdue, scope, due_by, escalated))
    )
    return int(session.scalar(stmt) or 0)


def verify_incident_evidence(incident: Mapping[str, Any], leaf_hashes: Mapping[int, bytes]) -> list[int]:
    """Check every attached proof against the incident's root; returns the seqs checked.

    ``leaf_hashes`` are the leaves as the log holds them now: a proof that still verifies and a leaf
    that still matches show the evidence is unchanged. Raises :class:`audit.merkle.InvalidProofError`.
    """
    root = bytes.fromhex(incident["root_hash"])
    size = int(incident["tree_size"])
    checked = []
    for item in incident["evidence"]:
        seq = int(item["seq"])
        leaf = bytes.fromhex(item["leaf_hash"])
        current = leaf_hashes.get(seq)
        if current is not None and current != leaf:
            raise merkle.InvalidProofError(f"event {seq} changed since the incident was opened")
        merkle.verify_inclusion(leaf, seq - 1, size, [bytes.fromhex(p) for p in item["proof"]], root)
        checked.append(seq)
    return checked
