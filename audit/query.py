"""Supervisor queries over the audit log: filters, keyset pagination, resident transparency.

Everything returned is what the log holds — user ids, organisation codes, roles, scenario and dataset
codes, counts, and residents only as keyed refs — so a supervisor's view never carries plain personal
data (PIPL Art. 51; GB/T 35273-2020 §9.2 access to processing records is itself limited).

Organisation subtrees use the division-code prefix relation (统计用区划代码 ``PP CC DD TTT VVV``): the
significant part of a code (its trailing all-zero levels removed) is a prefix of every code below it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

from sqlalchemy import Connection, Engine, Select, func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from audit.events import Outcome, format_timestamp, is_source
from audit.log import AuditUnavailable
from audit.pseudonym import is_ref
from audit.tables import (
    UNSERVED_RECORD_READ,
    audit_events,
    audit_subject_refs,
    event_source,
    requested_record_ref,
)
from grassroots_common.divisions import significant_prefix

#: Beijing time: scenario hours, "night" and report months are local (UTC+8, no daylight saving).
CHINA_STANDARD_TIME: Final = timezone(timedelta(hours=8), "CST")
#: Event kinds that are data accesses (the pipeline writes ``data.read`` / ``data.list``).
ACCESS_KIND_PREFIX: Final = "data."
#: A data steward's unmask that revealed a resident's data: her ID number, or any value whose envelope was
#: sealed with her (``masking.unmask`` records the act before the value is known; this, written once it is,
#: names the resident by ref). It reads that person's data as much as a served record does, so a complaint
#: and the resident's transparency list include it.
UNMASK_REVEALED_KIND: Final = "masking.unmask_revealed"
MAX_PAGE: Final = 500

_MONTH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


def org_prefix(code: str) -> str:
    """The significant prefix of a division code: ``310151101000`` -> ``310151101``; root -> ``""``.

    Accepts the short forms (``31``, ``3101``, ``310151``, ``310151101``) too. Raises ``ValueError`` for
    anything that is not a division code — the same codes ``policies`` refuses (one shared parser,
    :mod:`grassroots_common.divisions`).
    """
    try:
        return significant_prefix(code)
    except ValueError:
        raise ValueError("organisation must be a division code of 2, 4, 6, 9 or 12 digits") from None


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """``YYYY-MM`` as a half-open UTC interval over the Beijing-time calendar month."""
    match = _MONTH.fullmatch(month) if isinstance(month, str) else None
    if match is None:
        raise ValueError("month must look like 2026-11")
    year, mon = int(match.group(1)), int(match.group(2))
    start = datetime(year, mon, 1, tzinfo=CHINA_STANDARD_TIME)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=CHINA_STANDARD_TIME)
    return start.astimezone(UTC), end.astimezone(UTC)


def stored_utc(when: datetime) -> datetime:
    """A time read back from the database, timezone-aware: SQLite hands back naive datetimes for
    ``DateTime(timezone=True)``, and every stored time is UTC."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def beijing_clock(when: datetime) -> str:
    """A stored time as a resident or official reads it: Beijing time, ``YYYY-MM-DD HH:MM:SS``."""
    return stored_utc(when).astimezone(CHINA_STANDARD_TIME).strftime("%Y-%m-%d %H:%M:%S")


def elapsed_words(seconds: float) -> tuple[str, str]:
    """How long ago, for a person (Chinese, English): minutes under two hours, hours under two days, else
    days (``不到 1 分钟`` / ``under a minute`` below one); never negative (clocks of two hosts differ)."""
    minutes = max(0, int(seconds // 60))
    if minutes < 1:
        return "不到 1 分钟", "under a minute"
    if minutes < 120:
        return f"{minutes} 分钟", f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} 小时", f"{hours} hours"
    return f"{hours // 24} 天", f"{hours // 24} days"


def after_chinese(phrase: str) -> str:
    """``phrase`` set after Chinese text: a space before it when it starts with a digit or a Latin letter
    (``签发于 5 分钟前``), none when it starts with Chinese (``签发于不到 1 分钟前``) — spaces set numbers
    apart from Chinese, never Chinese from Chinese."""
    return f" {phrase}" if phrase[:1].isascii() and phrase[:1].isalnum() else phrase


def beijing_month(when: datetime) -> str:
    """``YYYY-MM`` of the Beijing-time calendar month ``when`` (a stored time) falls in."""
    local = stored_utc(when).astimezone(CHINA_STANDARD_TIME)
    return f"{local.year:04d}-{local.month:02d}"


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.utcoffset() is None:
        raise ValueError("times must be timezone-aware")
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Filters for :func:`query_events`; every one optional, all combined with AND.

    ``org`` selects the actor's organisation subtree; ``kind`` matches a kind exactly, or a family when
    it ends with ``.`` (``data.``); ``before`` is the keyset cursor (results are newest first).
    ``unattributed`` adds, to an ``org`` subtree, the events no organisation is charged with (a token no
    organisation can be read from, a key rotation, a departmental system's own calls): the platform's
    own, for the supervisors of the jurisdiction the platform serves. ``source`` matches an event's source
    exactly (an address in its canonical spelling, an IPv6 /64 block, or ``unknown``: see
    :func:`audit.events.is_source`), the events no request caused and those older than sources never.
    """

    org: str | None = None
    actor: str | None = None
    scenario: str | None = None
    dataset: str | None = None
    outcome: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before: int | None = None
    limit: int = 100
    unattributed: bool = False
    source: str | None = None

    def __post_init__(self) -> None:
        if self.org is not None:
            org_prefix(self.org)
        if self.source is not None and not is_source(self.source):
            raise ValueError("source must be an IP address, an IPv6 /64 block or unknown")
        if self.outcome is not None:
            Outcome(self.outcome)
        if not 1 <= self.limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise ValueError("times must be timezone-aware")


@dataclass(frozen=True, slots=True)
class EventSummary:
    """One event as a supervisor sees it: no bodies beyond what the log itself holds, refs only."""

    seq: int
    occurred_at: datetime
    kind: str
    outcome: str
    actor: str
    actor_org: str | None
    actor_roles: tuple[str, ...]
    scenario: str | None
    dataset: str | None
    fields: tuple[str, ...]
    record_count: int
    reason: str | None
    subject_refs: tuple[str, ...]
    request_id: str | None
    trace_id: str | None
    details: dict[str, Any] = field(default_factory=dict)
    #: Where the request came from (None: no request caused it, or it predates sources).
    source: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "occurred_at": format_timestamp(self.occurred_at),
            # A supervisor reads the list as printed (supervise events): the stored UTC time read as a
            # Beijing time would be eight hours off, so the Beijing clock is given beside it, as in the
            # resident's "who read my data" answer.
            "occurred_at_beijing": beijing_clock(self.occurred_at),
            "kind": self.kind,
            "outcome": self.outcome,
            "actor": self.actor,
            "actor_org": self.actor_org,
            "actor_roles": list(self.actor_roles),
            "source": self.source,
            "scenario": self.scenario,
            "dataset": self.dataset,
            "fields": list(self.fields),
            "record_count": self.record_count,
            "reason": self.reason,
            "subject_refs": list(self.subject_refs),
            "request_id": self.request_id,
            "trace_id": self.trace_id,
            "details": self.details,
        }


@dataclass(frozen=True, slots=True)
class EventPage:
    items: list[EventSummary]
    next_before: int | None


def summary_of(seq: int, body_text: str) -> EventSummary:
    body = json.loads(body_text)
    return EventSummary(
        seq=int(seq),
        occurred_at=datetime.fromisoformat(body["occurred_at"]).astimezone(UTC),
        kind=body["kind"],
        outcome=body["outcome"],
        actor=body["actor"],
        actor_org=body["actor_org"],
        actor_roles=tuple(body["actor_roles"]),
        scenario=body["scenario"],
        dataset=body["dataset"],
        fields=tuple(body["fields"]),
        record_count=int(body["record_count"]),
        reason=body["reason"],
        subject_refs=tuple(body["subject_refs"]),
        request_id=body["request_id"],
        trace_id=body["trace_id"],
        details=body["details"],
        source=body.get("source"),
    )


def _filtered(q: EventQuery, columns: Sequence[Any]) -> Select[Any]:
    c = audit_events.c
    stmt = select(*columns)
    if q.org is not None:
        prefix = org_prefix(q.org)
        if prefix:
            subtree = c.actor_org.startswith(prefix, autoescape=True)
            stmt = stmt.where(or_(subtree, c.actor_org.is_(None)) if q.unattributed else subtree)
    for name in ("actor", "scenario", "dataset", "outcome"):
        value = getattr(q, name)
        if value is not None:
            stmt = stmt.where(getattr(c, name) == value)
    if q.source is not None:
        stmt = stmt.where(event_source(c.body) == q.source)
    if q.kind is not None:
        if q.kind.endswith("."):
            stmt = stmt.where(c.kind.startswith(q.kind, autoescape=True))
        else:
            stmt = stmt.where(c.kind == q.kind)
    if q.since is not None:
        stmt = stmt.where(c.occurred_at >= _utc(q.since))
    if q.until is not None:
        stmt = stmt.where(c.occurred_at < _utc(q.until))
    return stmt


def query_events(source: Engine | Connection, q: EventQuery) -> EventPage:
    """One page of events matching ``q``, newest first; ``next_before`` continues the listing."""
    stmt = _filtered(q, [audit_events.c.seq, audit_events.c.body])
    if q.before is not None:
        stmt = stmt.where(audit_events.c.seq < q.before)
    stmt = stmt.order_by(audit_events.c.seq.desc()).limit(q.limit + 1)
    rows = _fetch(source, stmt)
    items = [summary_of(seq, body) for seq, body in rows[: q.limit]]
    more = len(rows) > q.limit
    return EventPage(items=items, next_before=items[-1].seq if more and items else None)


def iter_events(engine: Engine, q: EventQuery, *, chunk: int = 5_000) -> Iterator[EventSummary]:
    """Every event matching ``q`` (``before``/``limit`` ignored), oldest first, in bounded chunks."""
    after = 0
    while True:
        stmt = (
            _filtered(q, [audit_events.c.seq, audit_events.c.body])
            .where(audit_events.c.seq > after)
            .order_by(audit_events.c.seq)
            .limit(chunk)
        )
        rows = _fetch(engine, stmt)
        for seq, body in rows:
            yield summary_of(seq, body)
        if len(rows) < chunk:
            return
        after = int(rows[-1][0])


def _fetch(source: Engine | Connection, stmt: Select[Any]) -> list[Any]:
    try:
        if isinstance(source, Connection):
            return list(source.execute(stmt).all())
        with source.connect() as conn:
            return list(conn.execute(stmt).all())
    except SQLAlchemyError as exc:
        raise AuditUnavailable(f"audit store unreadable ({type(exc).__name__})") from None


def actor_recorded(source: Engine | Connection, actor: str) -> bool:
    """Whether any event kept in the log has ``actor`` as its actor (one lookup in the actor index)."""
    return bool(_fetch(source, select(audit_events.c.seq).where(audit_events.c.actor == actor).limit(1)))


def events_by_seq(source: Engine | Connection, seqs: Iterable[int]) -> list[EventSummary]:
    """The given events (oldest first); unknown seqs are skipped."""
    wanted = sorted(set(seqs))
    out: list[EventSummary] = []
    for i in range(0, len(wanted), 500):
        part = wanted[i : i + 500]
        stmt = (
            select(audit_events.c.seq, audit_events.c.body)
            .where(audit_events.c.seq.in_(part))
            .order_by(audit_events.c.seq)
        )
        out += [summary_of(seq, body) for seq, body in _fetch(source, stmt)]
    return out


def _checked_refs(subject_refs: Iterable[str]) -> list[str]:
    refs = sorted(set(subject_refs))
    if not all(is_ref(r) for r in refs):
        raise ValueError("subject refs must be Pseudonymizer refs")
    return refs


def _subject_accesses(refs: Sequence[str], *columns: Any) -> Select[Any]:
    """Data accesses (allowed or refused), and unmasks that revealed the person's data, indexed under
    any of ``refs``, oldest first: one indexed lookup on ``audit_subject_refs`` (primary key leads with the
    ref) joined to the events for their kind, as the supervisory events about a complaint are not accesses
    to the person's data."""
    return (
        select(*columns)
        .where(
            audit_events.c.seq.in_(
                select(audit_subject_refs.c.seq).where(audit_subject_refs.c.subject_ref.in_(refs))
            )
        )
        .where(
            or_(
                audit_events.c.kind.startswith(ACCESS_KIND_PREFIX),
                audit_events.c.kind == UNMASK_REVEALED_KIND,
            )
        )
        .order_by(audit_events.c.seq)
    )


def access_seqs_for_subjects(source: Engine | Connection, subject_refs: Iterable[str]) -> list[int]:
    """Seqs of every data access that served any of the given resident refs (one indexed lookup).

    A refused read of one record served nobody and carries no resident ref: :func:`access_seqs_for_person`
    adds those attempts, for a complaint.
    """
    refs = _checked_refs(subject_refs)
    if not refs:
        return []
    return [int(row[0]) for row in _fetch(source, _subject_accesses(refs, audit_events.c.seq))]


def served_from_dataset(source: Engine | Connection, subject_refs: Iterable[str], dataset: str) -> bool:
    """True when an allowed data access of ``dataset`` served any of the given resident refs.

    The gateway asks before it hands out an unmasked FF1 pseudonym: a pseudonym reversed under another
    dataset's key decodes to an unrelated well-formed number, which this tells apart from the real one,
    because every response that carried a pseudonym was audited, with its residents' refs, before it was
    sent. One indexed lookup, stopped at the first hit.
    """
    refs = _checked_refs(subject_refs)
    if not refs:
        return False
    stmt = (
        _subject_accesses(refs, audit_events.c.seq)
        .where(audit_events.c.dataset == dataset, audit_events.c.outcome == Outcome.ALLOWED.value)
        .limit(1)
    )
    return bool(_fetch(source, stmt))


def records_served(body: Mapping[str, Any], subject_refs: Collection[str]) -> Iterator[tuple[str, str]]:
    """``(dataset, record ref)`` of each record an allowed access served that belongs to one of
    ``subject_refs``, where the event says so unambiguously.

    The gateway's data path (``gateway.pipeline``) writes ``record_refs`` one per served record, in order,
    and ``subject_refs`` one per served record's ID number, in the same order, duplicates removed. So the
    two lists are parallel exactly when they are equally long (every record had an ID number, and each a
    different one); a single-record read always is. Otherwise which record is whose cannot be told from
    the event, and nothing is inferred from it.
    """
    subjects, records, dataset = body["subject_refs"], body["record_refs"], body["dataset"]
    if body["outcome"] != Outcome.ALLOWED.value or dataset is None or len(subjects) != len(records):
        return
    for subject, record in zip(subjects, records, strict=True):
        if subject in subject_refs:
            yield dataset, record


def attempt_seqs_for_records(source: Engine | Connection, records: Iterable[tuple[str, str]]) -> list[int]:
    """Seqs of the unserved single-record reads (refused or failed) that asked for one of ``records``
    (``(dataset, record ref)`` pairs), oldest first.

    One lookup on the partial expression index over ``details.requested_record_ref``
    (:data:`audit.tables.requested_record_ref_index`); the dataset is checked too, as record ids are only
    unique within their dataset.
    """
    wanted = set(records)
    refs = sorted({ref for _, ref in wanted})
    if not refs:
        return []
    asked = requested_record_ref(audit_events.c.body)
    seqs: list[int] = []
    for i in range(0, len(refs), 500):
        stmt = (
            select(audit_events.c.seq, audit_events.c.dataset, asked)
            .where(UNSERVED_RECORD_READ)
            .where(asked.in_(refs[i : i + 500]))
        )
        seqs += [int(seq) for seq, dataset, ref in _fetch(source, stmt) if (dataset, ref) in wanted]
    return sorted(set(seqs))


def access_seqs_for_person(
    source: Engine | Connection,
    subject_refs: Iterable[str],
    records: Iterable[tuple[str, str]] = (),
) -> list[int]:
    """Seqs of every data access to the person with these refs, allowed or refused, oldest first — a
    complaint's evidence (PIPL Art. 45, 50).

    Two indexed lookups: the accesses that served the person (:func:`access_seqs_for_subjects`), and the
    refused or failed reads of one of the person's records (:func:`attempt_seqs_for_records`), which name
    the record asked for but no resident (the caller outside the jurisdiction is refused before anything
    is served). The person's records are those the allowed accesses served them (:func:`records_served`):
    an attempt at a record no allowed access ever served them cannot be tied to the person by the log.
    ``records`` adds the person's records learnt elsewhere — ``(dataset, record ref)`` pairs from the
    departmental systems' record-id lookup (``gateway.evidence``) — so those attempts are found too.
    """
    refs = _checked_refs(subject_refs)
    if not refs:
        return []
    wanted = frozenset(refs)
    seqs: list[int] = []
    known: set[tuple[str, str]] = set(records)
    if not all(is_ref(ref) for _, ref in known):
        raise ValueError("record refs must be Pseudonymizer refs")
    for seq, body in _fetch(source, _subject_accesses(refs, audit_events.c.seq, audit_events.c.body)):
        seqs.append(int(seq))
        known.update(records_served(json.loads(body), wanted))
    return sorted({*seqs, *attempt_seqs_for_records(source, known)})


@dataclass(frozen=True, slots=True)
class AccessEntry:
    """One line of a resident's "who read my data" answer (PIPL Art. 45): organisation and role only."""

    seq: int
    occurred_at: datetime
    org: str | None
    roles: tuple[str, ...]
    scenario: str | None
    dataset: str | None
    fields: tuple[str, ...]
    kind: str
    #: The masking profile the fields were shown under (the read's obligation): a resident told "they read
    #: your ID number" is told it was shown desensitised, not whole. None when the event names none.
    masking_profile: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "occurred_at": format_timestamp(self.occurred_at),
            "occurred_at_beijing": beijing_clock(self.occurred_at),
            "org": self.org,
            "roles": list(self.roles),
            "scenario": self.scenario,
            "dataset": self.dataset,
            "fields": list(self.fields),
            "kind": self.kind,
            "masking_profile": self.masking_profile,
        }


def _access_entry(e: EventSummary) -> AccessEntry:
    return AccessEntry(
        seq=e.seq,
        occurred_at=e.occurred_at,
        org=e.actor_org,
        roles=e.actor_roles,
        scenario=e.scenario,
        dataset=e.dataset,
        fields=e.fields,
        kind=e.kind,
        masking_profile=profile if isinstance(profile := e.details.get("masking_profile"), str) else None,
    )


def accesses_for_subjects(source: Engine | Connection, subject_refs: Iterable[str]) -> list[AccessEntry]:
    """Who read this person's data, when, for which scenario: allowed accesses only, oldest first.

    Refused attempts read nothing, so they are not listed here (a complaint's incident carries them:
    :func:`access_seqs_for_person`). The reader's user id is left out on purpose: a resident learns the
    organisation and the role that read their data, not the name of the cadre (names masked, as the
    issue asks).
    """
    seqs = access_seqs_for_subjects(source, subject_refs)
    return [_access_entry(e) for e in events_by_seq(source, seqs) if e.outcome == Outcome.ALLOWED.value]


def accesses_page(
    source: Engine | Connection, subject_refs: Iterable[str], *, limit: int, offset: int = 0
) -> tuple[list[AccessEntry], int]:
    """One page of :func:`accesses_for_subjects`, newest first, and how many there are in all.

    A resident read every working day for years has thousands of reads: the answer is bounded (and the
    latest reads, what a caller asks about first, come first); ``offset`` pages back in time.
    """
    refs = _checked_refs(subject_refs)
    if not refs or limit < 1:
        return [], 0
    allowed = _subject_accesses(refs, audit_events.c.seq).where(
        audit_events.c.outcome == Outcome.ALLOWED.value
    )
    [(total,)] = _fetch(source, select(func.count()).select_from(allowed.order_by(None).subquery()))
    page = allowed.order_by(None).order_by(audit_events.c.seq.desc()).limit(limit).offset(max(offset, 0))
    seqs = [int(row[0]) for row in _fetch(source, page)]
    entries = [_access_entry(e) for e in reversed(events_by_seq(source, seqs))]
    return entries, int(total)
