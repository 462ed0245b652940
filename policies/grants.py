"""Scenario grants: "this organisation, for this purpose, these fields, until this date".

Lifecycle (every transition returns a plain dict change event for the gateway to hand to audit)::

    requested ──approve──> approved ──(valid_until passes)──> expired
        │  └─approve (sensitive fields)─> awaiting_second_approval ──approve (2nd steward)──> approved
        └──reject──> rejected            approved ──revoke──> revoked
                                         approved/expired ──renew──> renewed (+ a new approved grant)

Separation of duties (GB/T 35273-2020 §11.1 and GB/T 43697-2024 role separation): nobody approves or
rejects their own request; only a steward of the department owning every dataset of the grant approves;
a grant touching the most sensitive fields needs a second, different steward; an officer requests only
within their own jurisdiction.

``GrantIndex`` answers "which grants cover this organisation for this scenario" by walking the caller's
at most six ancestor codes, so a lookup costs the same at 600,000 organisations as at ten.
"""

from __future__ import annotations

import dataclasses
import enum
import gc
import hashlib
import json
import logging
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final

from sqlalchemy import Integer, String, Text, cast, func, literal_column, select, type_coerce, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from policies import divisions
from policies.errors import (
    GrantError,
    GrantNotFoundError,
    GrantWindowError,
    InvalidTransitionError,
    OutsideJurisdictionError,
    RequestAlreadyWaitingError,
    ReviewNotFoundError,
    SeparationOfDutiesError,
    UnknownScenarioError,
)
from policies.model import Subject
from policies.permissions import PermissionModel
from policies.reasons import outside_fields, request_already_waiting
from policies.scenarios import CHINA_STANDARD_TIME, Scenario, ScenarioCatalog
from policies.tables import WAITING_FOR_STEWARD, BreakGlassReviewRow, GrantRow, PolicyVersionRow

__all__ = [
    "BACKDATE_ALLOWANCE",
    "BREAK_GLASS_MAX_HOURS",
    "BreakGlassReview",
    "GrantEntry",
    "GrantIndex",
    "GrantRepository",
    "GrantService",
    "GrantStatus",
    "RenewalReminder",
    "ScenarioGrant",
    "epoch_us",
    "request_key",
]

_log = logging.getLogger(__name__)

# A hard ceiling: emergency access is for hours, never days.
BREAK_GLASS_MAX_HOURS = 4
# A break-glass reason shorter than this (trimmed) is refused: "测试" tells a reviewer nothing.
BREAK_GLASS_MIN_REASON_CHARS = 4
GRANTS_VERSION = "grants"
# A grant covers nothing before it is approved: a window reaching back would make reads refused at the
# time look allowed in a replay or an explanation of the past (and let an approver launder them). The
# allowance is for the approver's clock lagging the gateway's, not for backdating: a ``valid_from``
# within it is moved up to the approval time; one earlier is refused.
BACKDATE_ALLOWANCE = timedelta(minutes=5)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_AUDITOR = "auditor"
_READ_ACTIONS = frozenset({"read"})
_JURISDICTION_ROLES = frozenset({"village_cadre", "grid_worker", "township_officer", "county_officer"})


class GrantStatus(enum.StrEnum):
    REQUESTED = "requested"
    AWAITING_SECOND_APPROVAL = "awaiting_second_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    REVOKED = "revoked"
    EXPIRED = "expired"
    RENEWED = "renewed"


GRANT_STATUS_ZH: dict[GrantStatus, str] = {
    GrantStatus.REQUESTED: "待审批",
    GrantStatus.AWAITING_SECOND_APPROVAL: "待第二人审批",
    GrantStatus.APPROVED: "已批准",
    GrantStatus.REJECTED: "已驳回",
    GrantStatus.REVOKED: "已撤销",
    GrantStatus.EXPIRED: "已过期",
    GrantStatus.RENEWED: "已续期",
}


#: Waiting for a steward: filed and not yet decided (the first approval of a grant touching the most
#: sensitive fields leaves it waiting for the second). Every other status is decided: approved, or ended.
WAITING: Final = (GrantStatus.REQUESTED, GrantStatus.AWAITING_SECOND_APPROVAL)


def _refused_in_status(
    grant: ScenarioGrant, action_zh: str, action_en: str, hint: tuple[str, str] = ("", "")
) -> InvalidTransitionError:
    """Say which status the grant is in, so "already approved" reads as such (zh first, then en)."""
    status = grant.status
    return InvalidTransitionError(
        f"该授权当前为「{GRANT_STATUS_ZH[status]}」，不能{action_zh}。{hint[0]}",
        f"cannot {action_en} this grant: it is {status.value.replace('_', ' ')}{hint[1]}",
    )


@dataclass(frozen=True, slots=True)
class ScenarioGrant:
    grant_id: str
    scenario: str
    org_scope: str
    datasets: Mapping[str, tuple[str, ...]]
    valid_from: datetime | None
    valid_until: datetime | None
    status: GrantStatus
    requested_by: str
    approved_by: str | None = None
    second_approver: str | None = None
    revoked_by: str | None = None
    reason: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    renewed_from: str | None = None
    break_glass: bool = False
    # Why it was rejected or revoked; ``reason`` stays why it was requested (both are part of its story).
    decision_reason: str = ""

    def is_active(self, now: datetime) -> bool:
        """Active iff approved and ``valid_from <= now < valid_until`` (half-open: the grant has
        lapsed at exactly ``valid_until``)."""
        return (
            self.status is GrantStatus.APPROVED
            and self.valid_from is not None
            and self.valid_until is not None
            and self.valid_from <= now < self.valid_until
        )

    def has_lapsed(self, now: datetime) -> bool:
        return self.status is GrantStatus.EXPIRED or (
            self.status is GrantStatus.APPROVED and self.valid_until is not None and self.valid_until <= now
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form for change events (identifiers only, no personal data)."""
        return {
            "grant_id": self.grant_id,
            "scenario": self.scenario,
            "org_scope": self.org_scope,
            "datasets": {k: list(v) for k, v in self.datasets.items()},
            "valid_from": _iso(self.valid_from),
            "valid_until": _iso(self.valid_until),
            "status": self.status.value,
            "requested_by": self.requested_by,
            "approved_by": self.approved_by,
            "second_approver": self.second_approver,
            "revoked_by": self.revoked_by,
            "reason": self.reason,
            "renewed_from": self.renewed_from,
            "break_glass": self.break_glass,
            "decision_reason": self.decision_reason,
        }


@dataclass(frozen=True, slots=True)
class RenewalReminder:
    grant_id: str
    scenario: str
    org_scope: str
    valid_until: datetime
    days_left: int
    must_act_role: str
    must_act_department: str
    requested_by: str


@dataclass(frozen=True, slots=True)
class BreakGlassReview:
    review_id: str
    grant_id: str
    invoked_by: str
    notify_org: str
    reason: str
    status: str
    opened_at: datetime
    closed_by: str | None = None
    closed_at: datetime | None = None
    review_note: str | None = None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _freeze(datasets: Mapping[str, Iterable[str]]) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({k: tuple(v) for k, v in datasets.items()})


def _asked_for(grant: ScenarioGrant) -> tuple[str, str, tuple[tuple[str, tuple[str, ...]], ...]]:
    """What a request asks for, whoever filed it and whatever its reason says: the scenario (the purpose),
    the organisation, and each dataset with its fields, in no particular order and each named once. Two
    requests asking for the same are one request twice; a steward would approve the same grant twice.
    (A request carries no validity window or volume: the steward sets the window when approving, the
    scenario the volume.)"""
    datasets = tuple(sorted((name, tuple(sorted(set(fields)))) for name, fields in grant.datasets.items()))
    return grant.scenario, grant.org_scope, datasets


def request_key(grant: ScenarioGrant) -> str:
    """``_asked_for`` as a fixed-length key (``policy_grants.request_key``, unique among waiting requests)."""
    scenario, org_scope, datasets = _asked_for(grant)
    text = json.dumps([scenario, org_scope, datasets], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _from_row(row: Any, datasets: Mapping[str, tuple[str, ...]] | None = None) -> ScenarioGrant:
    """``row``: a ``GrantRow`` or a plain result row with the same column names."""
    return ScenarioGrant(
        grant_id=row.grant_id,
        scenario=row.scenario,
        org_scope=row.org_scope,
        datasets=datasets if datasets is not None else _freeze(row.datasets),
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        status=GrantStatus(row.status),
        requested_by=row.requested_by,
        approved_by=row.approved_by,
        second_approver=row.second_approver,
        revoked_by=row.revoked_by,
        reason=row.reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
        renewed_from=row.renewed_from,
        break_glass=row.break_glass,
        decision_reason=row.decision_reason,
    )


def _apply(row: GrantRow, grant: ScenarioGrant) -> None:
    row.scenario = grant.scenario
    row.org_scope = grant.org_scope
    row.datasets = {k: list(v) for k, v in grant.datasets.items()}
    row.valid_from = grant.valid_from
    row.valid_until = grant.valid_until
    row.status = grant.status.value
    row.requested_by = grant.requested_by
    row.approved_by = grant.approved_by
    row.second_approver = grant.second_approver
    row.revoked_by = grant.revoked_by
    row.reason = grant.reason
    row.created_at = grant.created_at or grant.updated_at or _EPOCH
    row.updated_at = grant.updated_at or row.created_at
    row.renewed_from = grant.renewed_from
    row.break_glass = grant.break_glass
    row.decision_reason = grant.decision_reason


class GrantRepository:
    """All queries on grants, the policy version row and break-glass reviews. Never commits."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, grant: ScenarioGrant) -> None:
        row = GrantRow(grant_id=grant.grant_id)
        _apply(row, grant)
        self.session.add(row)
        self.session.flush()

    def save(self, grant: ScenarioGrant) -> None:
        row = self.session.get(GrantRow, grant.grant_id)
        if row is None:
            raise GrantNotFoundError("找不到该授权。", "grant not found")
        _apply(row, grant)
        self.session.flush()

    def get(self, grant_id: str) -> ScenarioGrant | None:
        row = self.session.get(GrantRow, grant_id)
        return _from_row(row) if row is not None else None

    def list_grants(
        self, *, status: GrantStatus | None = None, scenario: str | None = None
    ) -> list[ScenarioGrant]:
        stmt = select(GrantRow).order_by(GrantRow.created_at, GrantRow.grant_id)
        if status is not None:
            stmt = stmt.where(GrantRow.status == status.value)
        if scenario is not None:
            stmt = stmt.where(GrantRow.scenario == scenario)
        return [_from_row(r) for r in self.session.scalars(stmt)]

    def waiting_request(self, org: str, scenario: str, dataset: str) -> ScenarioGrant | None:
        """The earliest filed request for ``scenario`` covering ``org`` and naming ``dataset`` that waits
        for a steward (``requested`` or ``awaiting_second_approval``), or None. One indexed query over the
        scopes that cover ``org`` (its ancestors: at most six codes), not a scan of every request."""
        c = GrantRow.__table__.c
        waiting = [s.value for s in WAITING]
        stmt = (
            select(GrantRow)
            .where(
                # ``status || ''``: keeps SQLite's planner on the org_scope index (a few rows) rather than
                # the (status, valid_until) one, which walks every waiting request in the country (with
                # 20,000 of them: 38 ms a refusal, against 1.3 ms).
                c.status.concat("").in_(waiting),
                c.scenario == scenario,
                c.org_scope.in_(divisions.ancestors(org)),
            )
            .order_by(GrantRow.created_at, GrantRow.grant_id)
        )
        found = (_from_row(r) for r in self.session.scalars(stmt))
        return next((g for g in found if dataset in g.datasets), None)

    def identical_waiting(self, grant: ScenarioGrant) -> ScenarioGrant | None:
        """The earliest filed grant still waiting for a steward that asks for what ``grant`` asks for
        (``_asked_for``), or None: a request, or a renewal waiting for its second approval. One indexed
        query over the few waiting grants of one organisation and scenario."""
        c = GrantRow.__table__.c
        stmt = (
            select(GrantRow)
            .where(
                # ``status || ''``: as in waiting_request, the org_scope index rather than every waiting one.
                c.status.concat("").in_([s.value for s in WAITING]),
                c.scenario == grant.scenario,
                c.org_scope == grant.org_scope,
            )
            .order_by(GrantRow.created_at, GrantRow.grant_id)
        )
        asked = _asked_for(grant)
        for row in self.session.scalars(stmt):
            try:
                waiting = _from_row(row)
                same = _asked_for(waiting) == asked
            except (AttributeError, TypeError, ValueError):
                # A row whose field lists cannot be read asks for nothing this request could repeat.
                _log.error("grant %s skipped: unreadable datasets", row.grant_id)
                continue
            if same:
                return waiting
        return None

    def add_request(self, grant: ScenarioGrant) -> bool:
        """Insert a newly filed request with its ``request_key``; False, with nothing inserted, when an
        identical request already waits. The unique partial index decides, so the check and the insert are
        one statement: on PostgreSQL a concurrent identical insert waits for this one's transaction and is
        then skipped (and the other way round); on SQLite writers are serialised anyway."""
        row = GrantRow(grant_id=grant.grant_id)
        _apply(row, grant)
        values = {attr.key: getattr(row, attr.key) for attr in GrantRow.__mapper__.column_attrs}
        values["request_key"] = request_key(grant)
        stmt = (
            self._insert(GrantRow)
            .values(values)
            .on_conflict_do_nothing(index_elements=[GrantRow.request_key], index_where=WAITING_FOR_STEWARD)
            .returning(GrantRow.grant_id)
        )
        return self.session.execute(stmt).first() is not None

    def _insert(self, table: Any) -> Any:
        """The dialect's INSERT, which has ``ON CONFLICT`` (both SQLite's and PostgreSQL's)."""
        dialect = self.session.get_bind().dialect.name
        return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)

    def for_index(self, now: datetime, keep_days: int = 30) -> list[ScenarioGrant]:
        """Grants the index needs: approved ones, plus recently ended ones (so a refusal can say
        "expired" or "revoked" rather than "no grant")."""
        horizon = now - timedelta(days=keep_days)
        c = GrantRow.__table__.c
        if self.session.get_bind().dialect.name != "sqlite":
            stmt = select(*_index_columns()).where(c.status.in_(_INDEXED_VALUES), c.valid_until > horizon)
            # Core execution on the session's connection: the ORM's result machinery is not needed.
            return _decode(self.session.connection().execute(stmt).fetchall())
        # SQLite: Python's driver releases the GIL around every row it steps through, and while
        # requests keep the other threads busy each re-acquisition waits out a switch interval: a
        # national reload read row by row took 3-10 s under load. Aggregating rows into JSON arrays
        # inside SQLite steps once per chunk of rows instead (the scan then runs beside the request
        # threads, off the GIL), and json.loads of one chunk holds the GIL for ~10 ms.
        # ``status || ''`` keeps SQLite's planner off the (status, valid_until) index: nearly every
        # row qualifies, and a plain scan reads them in half the time of an index walk.
        stmt = (
            select(func.json_group_array(func.json_array(*(c[name] for name in _INDEX_COLUMN_NAMES))))
            .where(c.status.concat("").in_(_INDEXED_VALUES), c.valid_until > horizon)
            .group_by(literal_column("rowid", Integer()) // _SQLITE_CHUNK_ROWS)
        )
        chunks = self.session.connection().execute(stmt).scalars()
        return _decode(row for chunk in chunks for row in json.loads(chunk))

    def changed_since(self, since: datetime) -> list[ScenarioGrant]:
        """Every grant whose ``updated_at`` is at or after ``since``, whatever its status (so a grant
        leaving the index, e.g. ``approved`` -> ``renewed``, is seen too). A full scan of
        ``updated_at`` at worst: ~20 ms for 100,000 rows in SQLite."""
        stmt = select(*_index_columns()).where(GrantRow.updated_at >= since)
        return _decode(self.session.connection().execute(stmt))

    def pending_renewals(self, grant_id: str) -> list[ScenarioGrant]:
        """Successors of ``grant_id`` still waiting for their second steward (``renewed_from`` is not
        indexed: a renewal, a revocation and a second approval ask, never the data path)."""
        stmt = (
            select(GrantRow)
            .where(
                GrantRow.renewed_from == grant_id,
                GrantRow.status == GrantStatus.AWAITING_SECOND_APPROVAL.value,
            )
            .order_by(GrantRow.created_at, GrantRow.grant_id)
        )
        return [_from_row(r) for r in self.session.scalars(stmt)]

    def due_to_expire(self, now: datetime) -> list[ScenarioGrant]:
        stmt = select(GrantRow).where(
            GrantRow.status == GrantStatus.APPROVED.value, GrantRow.valid_until <= now
        )
        return [_from_row(r) for r in self.session.scalars(stmt)]

    def expiring_between(self, start: datetime, end: datetime) -> list[ScenarioGrant]:
        """Approved grants lapsing in ``(start, end]`` that can be renewed: a break-glass grant cannot (it
        lasts hours and ends by itself; its post-review is the supervisor's), so it is never one."""
        stmt = (
            select(GrantRow)
            .where(
                GrantRow.status == GrantStatus.APPROVED.value,
                GrantRow.break_glass.is_(False),
                GrantRow.valid_until > start,
                GrantRow.valid_until <= end,
            )
            .order_by(GrantRow.valid_until, GrantRow.grant_id)
        )
        return [_from_row(r) for r in self.session.scalars(stmt)]

    def policy_version(self, name: str = GRANTS_VERSION) -> int:
        row = self.session.get(PolicyVersionRow, name)
        return row.version if row is not None else 0

    def bump_policy_version(self, now: datetime, name: str = GRANTS_VERSION) -> int:
        """Atomically increment the version row (insert-or-increment), in the caller's transaction."""
        stmt = (
            self._insert(PolicyVersionRow)
            .values(name=name, version=1, updated_at=now)
            .on_conflict_do_update(
                index_elements=[PolicyVersionRow.name],
                set_={"version": PolicyVersionRow.version + 1, "updated_at": now},
            )
            .returning(PolicyVersionRow.version)
        )
        version = int(self.session.execute(stmt).scalar_one())
        self.session.expire_all()
        return version

    def add_review(self, review: BreakGlassReview) -> None:
        self.session.add(
            BreakGlassReviewRow(
                review_id=review.review_id,
                grant_id=review.grant_id,
                invoked_by=review.invoked_by,
                notify_org=review.notify_org,
                reason=review.reason,
                status=review.status,
                opened_at=review.opened_at,
            )
        )
        self.session.flush()

    def get_review(self, review_id: str) -> BreakGlassReview | None:
        row = self.session.get(BreakGlassReviewRow, review_id)
        return _review_from_row(row) if row is not None else None

    def reviews(self, status: str | None = None) -> list[BreakGlassReview]:
        """Break-glass reviews, newest first (``status``: ``open`` or ``closed``; None: all)."""
        stmt = select(BreakGlassReviewRow).order_by(
            BreakGlassReviewRow.opened_at.desc(), BreakGlassReviewRow.review_id
        )
        if status is not None:
            stmt = stmt.where(BreakGlassReviewRow.status == status)
        return [_review_from_row(r) for r in self.session.scalars(stmt)]

    def open_reviews(self) -> list[BreakGlassReview]:
        stmt = (
            select(BreakGlassReviewRow)
            .where(BreakGlassReviewRow.status == "open")
            .order_by(BreakGlassReviewRow.opened_at)
        )
        return [_review_from_row(r) for r in self.session.scalars(stmt)]

    def close_review(self, review_id: str, closed_by: str, closed_at: datetime, note: str) -> None:
        self.session.execute(
            update(BreakGlassReviewRow)
            .where(BreakGlassReviewRow.review_id == review_id)
            .values(status="closed", closed_by=closed_by, closed_at=closed_at, review_note=note)
        )
        self.session.expire_all()


def _review_from_row(row: BreakGlassReviewRow) -> BreakGlassReview:
    return BreakGlassReview(
        review_id=row.review_id,
        grant_id=row.grant_id,
        invoked_by=row.invoked_by,
        notify_org=row.notify_org,
        reason=row.reason,
        status=row.status,
        opened_at=row.opened_at,
        closed_by=row.closed_by,
        closed_at=row.closed_at,
        review_note=row.review_note,
    )


# -- reading grants for the index ----------------------------------------------------------------
#
# A national reload reads ~100,000 rows. Mapped objects, SQLAlchemy's per-value type processing
# (four timestamps a row) and one enum call per row made that 3-16 s; plain column values decoded
# here, with each distinct timestamp and field list decoded once and shared, make it a fraction.

_INDEXED = frozenset({GrantStatus.APPROVED, GrantStatus.REVOKED, GrantStatus.EXPIRED})
_INDEXED_VALUES = tuple(sorted(s.value for s in _INDEXED))
_STATUS_OF: dict[str, GrantStatus] = {s.value: s for s in GrantStatus}


_INDEX_COLUMN_NAMES = (
    "grant_id",
    "scenario",
    "org_scope",
    "datasets",
    "valid_from",
    "valid_until",
    "status",
    "requested_by",
    "approved_by",
    "second_approver",
    "revoked_by",
    "reason",
    "created_at",
    "updated_at",
    "renewed_from",
    "break_glass",
    "decision_reason",
)  # ScenarioGrant's fields, in order
_RAW_TYPES: dict[str, Any] = {
    # The field lists as JSON text on both dialects, so equal lists share one decoded mapping.
    "datasets": Text(),
    # Timestamps without UTCDateTime's per-value processing: _Timestamps decodes each distinct one.
    "valid_from": String(),
    "valid_until": String(),
    "created_at": String(),
    "updated_at": String(),
    "break_glass": Integer(),
}
_SQLITE_CHUNK_ROWS = 4096


def _index_columns() -> list[Any]:
    """The columns of ``ScenarioGrant`` in field order, as the driver returns them."""
    c = GrantRow.__table__.c
    columns: list[Any] = []
    for name in _INDEX_COLUMN_NAMES:
        raw = _RAW_TYPES.get(name)
        if raw is None:
            columns.append(c[name])
        elif name == "datasets":
            columns.append(cast(c[name], raw))
        else:
            columns.append(type_coerce(c[name], raw))
    return columns


def _utc(raw: object) -> datetime | None:
    """A stored timestamp as timezone-aware UTC: SQLite gives ``UTCDateTime``'s naive UTC text,
    PostgreSQL an aware ``datetime`` in the session's time zone."""
    if raw is None:
        return None
    if isinstance(raw, str):
        value = datetime.fromisoformat(raw)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(raw, datetime):
        if raw.tzinfo is None:
            return raw.replace(tzinfo=UTC)
        return raw if raw.tzinfo is UTC else raw.astimezone(UTC)
    raise ValueError("stored timestamp has an unexpected type")


class _Timestamps(dict[object, datetime | None]):
    """Raw value -> decoded timestamp, each distinct value decoded once (and one object shared)."""

    def __missing__(self, raw: object) -> datetime | None:
        if type(raw) is str:
            try:
                # SQLite's naive UTC text; appending the offset is four times faster than
                # ``.replace(tzinfo=UTC)`` (100,000 distinct validity bounds at national scale).
                value: datetime | None = datetime.fromisoformat(raw + "+00:00")
            except ValueError:
                value = _utc(raw)
        else:
            value = _utc(raw)
        self[raw] = value
        return value


class _FieldLists(dict[object, Mapping[str, tuple[str, ...]]]):
    """JSON text -> frozen ``{dataset: fields}``: grants citing one scenario share a handful."""

    def __missing__(self, raw: object) -> Mapping[str, tuple[str, ...]]:
        value = self[raw] = _freeze(json.loads(raw) if isinstance(raw, str | bytes) else {})
        return value


if tuple(f.name for f in dataclasses.fields(ScenarioGrant)) != _INDEX_COLUMN_NAMES:
    raise RuntimeError("_INDEX_COLUMN_NAMES must list ScenarioGrant's fields in order")
_NEW = object.__new__
(_S0, _S1, _S2, _S3, _S4, _S5, _S6, _S7, _S8, _S9, _S10, _S11, _S12, _S13, _S14, _S15, _S16) = (
    getattr(ScenarioGrant, name).__set__ for name in _INDEX_COLUMN_NAMES
)


def _assemble(
    a0: str,
    a1: str,
    a2: str,
    a3: Mapping[str, tuple[str, ...]],
    a4: datetime | None,
    a5: datetime | None,
    a6: GrantStatus,
    a7: str,
    a8: str | None,
    a9: str | None,
    a10: str | None,
    a11: str,
    a12: datetime | None,
    a13: datetime | None,
    a14: str | None,
    a15: bool,
    a16: str,
) -> ScenarioGrant:
    """``ScenarioGrant(a0, ..., a16)`` in half the time: a frozen dataclass's ``__init__`` goes
    through ``object.__setattr__`` once per field, this sets the slots directly (the same values,
    the same object; tests/policies/test_grant_index_refresh.py checks the equivalence). 100,000
    grants per national reload make the difference ~0.15 s."""
    grant: ScenarioGrant = _NEW(ScenarioGrant)
    _S0(grant, a0)
    _S1(grant, a1)
    _S2(grant, a2)
    _S3(grant, a3)
    _S4(grant, a4)
    _S5(grant, a5)
    _S6(grant, a6)
    _S7(grant, a7)
    _S8(grant, a8)
    _S9(grant, a9)
    _S10(grant, a10)
    _S11(grant, a11)
    _S12(grant, a12)
    _S13(grant, a13)
    _S14(grant, a14)
    _S15(grant, a15)
    _S16(grant, a16)
    return grant


def _decode(rows: Iterable[Sequence[Any]]) -> list[ScenarioGrant]:
    times = _Timestamps()
    field_lists = _FieldLists()
    status_of = _STATUS_OF
    grants: list[ScenarioGrant] = []
    append = grants.append
    for (
        grant_id,
        scenario,
        org_scope,
        datasets,
        valid_from,
        valid_until,
        status,
        requested_by,
        approved_by,
        second_approver,
        revoked_by,
        reason,
        created_at,
        updated_at,
        renewed_from,
        break_glass,
        decision_reason,
    ) in rows:
        known = status_of.get(status)
        if known is None:
            # One malformed row must not take every grant down; it simply grants nothing.
            _log.error("grant %s skipped: unknown status", grant_id)
            continue
        append(
            _assemble(
                grant_id,
                scenario,
                org_scope,
                field_lists[datasets],
                times[valid_from],
                times[valid_until],
                known,
                requested_by,
                approved_by,
                second_approver,
                revoked_by,
                reason or "",
                times[created_at],
                times[updated_at],
                renewed_from,
                bool(break_glass),
                decision_reason or "",
            )
        )
    return grants


def _event(
    kind: str,
    actor: str,
    grant_id: str,
    before: ScenarioGrant | None,
    after: ScenarioGrant | None,
    now: datetime,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "actor": actor,
        "grant_id": grant_id,
        "before": before.to_dict() if before is not None else None,
        "after": after.to_dict() if after is not None else None,
        "at": now.isoformat(),
    }


def _end_not_after_start(start: datetime, end: datetime, *, started_now: bool) -> GrantError:
    """``--valid-until 2026-12-01`` with no ``--valid-from`` answered "valid_until must be after
    valid_from", which the steward had not given: both ends are named, in Beijing time, and where the start
    came from (the approval itself, when none was given or it had passed)."""

    def beijing(moment: datetime, *, end: bool = False) -> str:
        local = moment.astimezone(CHINA_STANDARD_TIME)
        if end and (local.hour, local.minute, local.second, local.microsecond) == (0, 0, 0, 0):
            # The end of a day typed alone (``2026-12-01``): that day's 24:00, not the next day's 00:00.
            return (local - timedelta(days=1)).strftime("%Y-%m-%d 24:00")
        return local.strftime("%Y-%m-%d %H:%M")

    until = beijing(end, end=True)
    since_zh = "，即审批时间" if started_now else ""
    since_en = ", the approval" if started_now else ""
    return GrantError(
        f"授权结束时间（valid_until，北京时间 {until}）必须晚于开始时间（valid_from，北京时间 "
        f"{beijing(start)}{since_zh}），本次未批准。请把结束时间改到开始时间之后（只填日期的，授权到该日"
        "北京时间结束时为止），或不填，按场景的有效期。",
        f"valid_until ({until} Beijing time) must be after valid_from ({beijing(start)} Beijing "
        f"time{since_en}); nothing was approved. Give an end after the start (a day alone runs through "
        "that Beijing-time day), or leave it out for the scenario's validity.",
    )


def _too_long(scenario: str, max_days: int) -> GrantWindowError:
    return GrantWindowError(
        "validity_over_maximum",
        f"授权有效期超过了场景 {scenario} 允许的最长 {max_days} 天（最小必要原则）。"
        f"请把结束时间定在开始后 {max_days} 天以内（续期天数不超过 {max_days}）；"
        "到期前可以再续期，确需更长请修订场景目录的 max_validity_days 并经审核。",
        f"the validity exceeds the {max_days} days scenario {scenario} allows at most (minimum "
        f"necessary). Set valid_until within {max_days} days of the start (validity_days at most "
        f"{max_days}); renew before it lapses, or have the catalog's max_validity_days revised and reviewed.",
    )


@contextmanager
def _named_in_batch(position: int, size: int, grant_id: str) -> Iterator[None]:
    """A refusal of one grant in a batch of several names which one (by its place and id), and that
    nothing was done: in a renewal of twenty, "该授权当前为「待审批」" did not say which."""
    try:
        yield
    except GrantError as refused:
        if size > 1:
            # An id that names nothing is not repeated (it may be anything typed): its place says which.
            named = "" if isinstance(refused, GrantNotFoundError) else f"（{grant_id}）"
            named_en = "" if isinstance(refused, GrantNotFoundError) else f" ({grant_id})"
            refused.message_zh = f"第 {position} 个授权{named}：{refused.message_zh}本批均未续期。"
            refused.message_en = f"grant {position}{named_en}: {refused.message_en}; nothing was renewed"
        raise


def _opens_within(spec: Scenario, start: datetime, end: datetime) -> bool:
    """Whether any moment of ``[start, end)`` lies within the scenario's opening hours (whole Beijing
    hours, which begin with the UTC ones: UTC+8 has no minutes)."""
    moment = start
    while moment < end:
        if spec.within_hours(moment):
            return True
        moment = moment.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return False


def _overlaps(org: str, scope: str) -> bool:
    """Whether ``scope`` lies within ``org``'s jurisdiction or covers it; a malformed code matches
    nothing (fail closed)."""
    try:
        return divisions.covers(org, scope) or divisions.covers(scope, org)
    except ValueError:
        return False


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def stagger_days(grant_id: str, window_days: int) -> int:
    """Deterministic spread of expiry dates over ``window_days`` so a renewed batch does not lapse on
    one day and swamp the stewards with renewals again."""
    if window_days <= 1:
        return 0
    return int.from_bytes(hashlib.sha256(grant_id.encode("utf-8")).digest()[:4], "big") % window_days


class GrantService:
    """Enforces the lifecycle and separation of duties. Never commits; the caller's unit of work does."""

    def __init__(
        self, repository: GrantRepository, scenarios: ScenarioCatalog, permissions: PermissionModel
    ) -> None:
        self.repository = repository
        self.scenarios = scenarios
        self.permissions = permissions
        self._pending_events: list[dict[str, Any]] = []

    # -- helpers -------------------------------------------------------------------------------

    def _require(self, actor: Subject, resource: str, action: str) -> None:
        if not self.permissions.is_allowed(actor.roles, resource, action):
            raise SeparationOfDutiesError(
                "您的岗位不能办理此项授权操作。", f"your role may not {action} {resource}"
            )
        if action not in _READ_ACTIONS and _AUDITOR in actor.roles:
            # Whoever audits the grants never takes part in them (GB/T 35273-2020 §11.1: an independent
            # audit function), even when the same person also holds an operational role.
            raise SeparationOfDutiesError(
                "审计人员不能申请、审批或撤销授权。", "an auditor takes no part in the grants they audit"
            )

    def visible_to(self, actor: Subject, grant: ScenarioGrant) -> bool:
        """Whether ``actor`` may see ``grant``: a supervisor or auditor those of her organisation's subtree
        and those that cover it (as her audit events and cases: a township's supervisor never a
        neighbour's, GB/T 35273-2020 §7.1; the root code's sees all); a steward those over her
        department's data; an officer or cadre those inside their jurisdiction and those that cover
        their own organisation. Anyone sees what they requested; a platform administrator all."""
        if actor.user_id == grant.requested_by or "platform_admin" in actor.roles:
            return True
        if {"supervisor", _AUDITOR} & set(actor.roles) and _overlaps(actor.org, grant.org_scope):
            return True
        if "data_steward" in actor.roles and actor.department is not None:
            try:
                if actor.department in self._owner_departments(grant):
                    return True
            except GrantError:
                return False
        return bool(_JURISDICTION_ROLES.intersection(actor.roles)) and _overlaps(actor.org, grant.org_scope)

    def _load(self, grant_id: str) -> ScenarioGrant:
        grant = self.repository.get(grant_id)
        if grant is None:
            raise GrantNotFoundError("找不到该授权。", "grant not found")
        return grant

    def _owner_departments(self, grant: ScenarioGrant) -> set[str]:
        owners = set()
        for name in grant.datasets:
            info = self.scenarios.dataset(name)
            if info is None:
                raise GrantError("授权涉及的数据集不在目录中。", f"dataset {name!r} is not in the catalog")
            owners.add(info.owner_department)
        return owners

    def _require_steward(self, actor: Subject, grant: ScenarioGrant, action: str) -> None:
        self._require(actor, "grants", action)
        owners = self._owner_departments(grant)
        if "data_steward" in actor.roles and owners != {actor.department}:
            raise SeparationOfDutiesError(
                "只有数据所属部门的数据管理员才能办理。",
                "only a steward of the department that owns the data may do this",
            )

    def awaits_decision_by(self, actor: Subject, grant: ScenarioGrant) -> bool:
        """Whether ``grant`` waits on ``actor``: a request, or a grant awaiting its second steward, over
        data of her department that she may decide — never her own request, nor a second approval of a
        grant she approved first (the same rules ``approve`` enforces)."""
        if grant.status is GrantStatus.AWAITING_SECOND_APPROVAL:
            if actor.user_id == grant.approved_by:
                return False
        elif grant.status is not GrantStatus.REQUESTED:
            return False
        if actor.user_id == grant.requested_by:
            return False
        try:
            self._require_steward(actor, grant, "approve")
        except GrantError:
            return False
        return True

    def needs_second_approval(self, grant: ScenarioGrant) -> bool:
        for name, fields in grant.datasets.items():
            info = self.scenarios.dataset(name)
            if info is not None and info.second_approval_fields.intersection(fields):
                return True
        return False

    def _finish(
        self, kind: str, actor: Subject, before: ScenarioGrant | None, after: ScenarioGrant, now: datetime
    ) -> dict[str, Any]:
        if before is None:
            self.repository.add(after)
        else:
            self.repository.save(after)
        if GrantStatus.APPROVED in (after.status, before.status if before is not None else None):
            # Only changes the decision index can see move the version every process polls.
            self.repository.bump_policy_version(now)
        return _event(kind, actor.user_id, after.grant_id, before, after, now)

    # -- transitions ---------------------------------------------------------------------------

    def _unknown_scenario(self) -> UnknownScenarioError:
        """A scenario code the catalog does not have. What was typed is not repeated (it may be anything,
        an ID number pasted into the wrong field too); the catalog's codes are listed instead."""
        codes = [s.code for s in self.scenarios]
        return UnknownScenarioError(
            f"没有这个使用场景。可申请的场景：{'、'.join(codes)}。",
            f"no such scenario; the catalog has {', '.join(codes)}",
        )

    def request(
        self,
        actor: Subject,
        scenario: str,
        org_scope: str,
        datasets: Mapping[str, Sequence[str]] | None,
        reason: str,
        now: datetime,
    ) -> tuple[ScenarioGrant, dict[str, Any]]:
        """File a request. ``datasets=None`` asks for everything the scenario lists."""
        self._require(actor, "grants", "request")
        spec = self.scenarios.get(scenario)
        if spec is None:
            raise self._unknown_scenario()
        scope = divisions.normalize(org_scope)
        if not divisions.covers(actor.org, scope):
            # Delegation only within one's own jurisdiction, never beyond it.
            # Her own code is named (what she typed is not: it may be anything), so a wrong digit is found.
            raise OutsideJurisdictionError(
                f"只能为本辖区内的组织申请授权。您的单位是 {actor.org}，只能为它及其下辖单位申请；"
                "所填单位不在其中，本次未提出申请。请核对 --org（org_scope）的区划代码。",
                "you may request grants only within your own jurisdiction: your organisation is "
                f"{actor.org}, and the organisation given is neither it nor within it; nothing was "
                "requested. Check the division code in --org (org_scope).",
            )
        # A field listed twice (``id,id``) is asked for once: the steward reads the request as filed.
        wanted = (
            dict(spec.datasets)
            if datasets is None
            else {k: tuple(dict.fromkeys(v)) for k, v in datasets.items()}
        )
        if not wanted:
            raise GrantError("申请至少要包含一个数据集。", "a request names at least one dataset")
        # Dataset and field names as typed are never repeated (a mistyped one may be anything, even a
        # phone number); the answer lists what the scenario offers instead.
        offered = "、".join(spec.datasets)
        for name, fields in wanted.items():
            if not self.permissions.is_allowed(actor.roles, f"dataset:{name}", "read"):
                # A request delegates access to the organisations below; never more than one holds.
                raise SeparationOfDutiesError(
                    f"不能为他人申请自己岗位都无权查看的数据。「{spec.name_zh}」包含的数据集：{offered}。",
                    "you may not delegate access to a dataset your own role cannot read; "
                    f"\u201c{spec.name_en}\u201d ({scenario}) covers {', '.join(spec.datasets)}",
                )
            allowed = spec.datasets.get(name)
            if allowed is None:
                raise GrantError(
                    f"该场景不包含这个数据集。「{spec.name_zh}」包含的数据集：{offered}。",
                    "the scenario does not cover that dataset; "
                    f"\u201c{spec.name_en}\u201d ({scenario}) covers {', '.join(spec.datasets)}",
                )
            outside = [f for f in fields if f not in allowed]
            if not fields or outside:
                # The fields at fault are named when the dataset's catalog knows them (a field the
                # scenario does not need, birth_date); a name it does not know is only counted.
                info = self.scenarios.dataset(name)
                listed, listed_en = outside_fields(outside, info.fields if info is not None else ())
                said, said_en = (
                    (f"申请的字段中，{listed} 不在场景所需范围内", f"{listed_en} outside the scenario's list")
                    if outside
                    else ("申请没有列出任何字段", "no fields listed")
                )
                raise GrantError(
                    f"{said}，本次未提出申请。"
                    f"「{spec.name_zh}」在 {name} 中可申请的字段：{'、'.join(allowed)}。",
                    f"{said_en}; nothing was requested. \u201c{spec.name_en}\u201d ({scenario}) offers "
                    f"{', '.join(allowed)} of {name}",
                )
        if not reason.strip():
            raise GrantError("请填写申请理由。", "a reason is required")
        grant = ScenarioGrant(
            grant_id=_new_id("grt"),
            scenario=scenario,
            org_scope=scope,
            datasets=_freeze(wanted),
            valid_from=None,
            valid_until=None,
            status=GrantStatus.REQUESTED,
            requested_by=actor.user_id,
            reason=reason,
            created_at=now,
            updated_at=now,
        )
        # A second try only when an identical request was filed meanwhile and decided before it could be
        # named (then this one is a new request again).
        for _ in range(2):
            self._refuse_if_already_waiting(grant)
            if self.repository.add_request(grant):
                return grant, _event("grant.requested", actor.user_id, grant.grant_id, None, grant, now)
        raise InvalidTransitionError(
            "相同的授权申请刚刚也被提出并已办理，本次未提出申请。"
            "请用 grassroots grants list 查看它的结果，再决定是否重新申请。",
            "an identical request was filed and decided just now, so nothing was requested: see its outcome "
            "with grassroots grants list before requesting again",
        )

    def _refuse_if_already_waiting(self, grant: ScenarioGrant) -> None:
        """Refuse a request identical to one still waiting for a steward (a request of the same
        organisation, or a renewal waiting for its second approval), naming that one, as a refused read
        does (``policies.reasons.request_waiting``): the stewards would otherwise decide it twice."""
        waiting = self.repository.identical_waiting(grant)
        if waiting is None:
            return
        second = waiting.status is GrantStatus.AWAITING_SECOND_APPROVAL
        zh, en = request_already_waiting(waiting.grant_id, second_approval=second)
        raise RequestAlreadyWaitingError(waiting.grant_id, zh, en)

    def approve(
        self,
        grant_id: str,
        actor: Subject,
        now: datetime,
        *,
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
    ) -> tuple[ScenarioGrant, dict[str, Any]]:
        """First or second approval. The window defaults to [now, now + the scenario's validity); it never
        starts before ``now`` (see ``BACKDATE_ALLOWANCE``) nor lasts longer than the scenario's
        ``max_validity_days``. A grant waiting for its second steward takes effect at that approval: a
        window start already passed moves up to it, and a window already closed cannot be approved."""
        grant = self._load(grant_id)
        self._require_steward(actor, grant, "approve")
        if actor.user_id == grant.requested_by:
            raise SeparationOfDutiesError("不能审批自己提出的申请。", "nobody approves their own request")
        if grant.status is GrantStatus.REQUESTED:
            spec = self.scenarios.get(grant.scenario)
            if spec is None:
                raise UnknownScenarioError("没有这个使用场景。", f"unknown scenario {grant.scenario!r}")
            if valid_from is not None and valid_from < now - BACKDATE_ALLOWANCE:
                raise GrantWindowError(
                    "valid_from_in_past",
                    f"授权开始时间（valid_from）不能早于审批时间：授权只对批准之后的访问有效。"
                    f"请不填 valid_from（即从现在开始），或填写现在或以后的时间；"
                    f"审批时间（UTC）为 {now.isoformat(timespec='seconds')}。",
                    "valid_from may not be earlier than the approval: a grant covers only reads after it "
                    "is approved. Leave valid_from out (starts now) or give now or a later time; the "
                    f"approval time (UTC) is {now.isoformat(timespec='seconds')}.",
                )
            start = max(valid_from or now, now)
            end = valid_until or start + timedelta(days=spec.default_validity_days)
            if end <= start:
                raise _end_not_after_start(start, end, started_now=valid_from is None or valid_from <= now)
            if end - start > timedelta(days=spec.max_validity_days):
                raise _too_long(spec.code, spec.max_validity_days)
            status = (
                GrantStatus.AWAITING_SECOND_APPROVAL
                if self.needs_second_approval(grant)
                else GrantStatus.APPROVED
            )
            after = replace(
                grant,
                status=status,
                approved_by=actor.user_id,
                valid_from=start,
                valid_until=end,
                updated_at=now,
            )
            kind = "grant.approved" if status is GrantStatus.APPROVED else "grant.first_approval"
        elif grant.status is GrantStatus.AWAITING_SECOND_APPROVAL:
            if actor.user_id == grant.approved_by:
                raise SeparationOfDutiesError(
                    "第二审批人必须是另一位数据管理员。", "the second approver must be a different person"
                )
            if grant.valid_until is None or grant.valid_until <= now:
                raise InvalidTransitionError(
                    "该授权的有效期在第二位数据管理员审批前已经结束，不能再批准。请驳回它，并重新提出申请。",
                    "the grant's window closed before its second approval: reject it and request anew",
                )
            after = replace(
                grant,
                status=GrantStatus.APPROVED,
                second_approver=actor.user_id,
                valid_from=max(grant.valid_from or now, now),
                updated_at=now,
            )
            kind = "grant.approved"
            if grant.renewed_from is not None:
                self._require_predecessor_in_force(grant.renewed_from)
                self._close_predecessor(grant.renewed_from, actor, now)
        else:
            raise _refused_in_status(grant, "审批", "approve")
        return after, self._finish(kind, actor, grant, after, now)

    def reject(
        self, grant_id: str, actor: Subject, reason: str, now: datetime
    ) -> tuple[ScenarioGrant, dict[str, Any]]:
        grant = self._load(grant_id)
        self._require_steward(actor, grant, "reject")
        if actor.user_id == grant.requested_by:
            raise SeparationOfDutiesError("不能审批自己提出的申请。", "nobody decides on their own request")
        if grant.status not in (GrantStatus.REQUESTED, GrantStatus.AWAITING_SECOND_APPROVAL):
            raise _refused_in_status(grant, "驳回", "reject")
        if not reason.strip():
            raise GrantError("驳回申请必须写明理由。", "a reason is required to reject")
        after = replace(grant, status=GrantStatus.REJECTED, decision_reason=reason, updated_at=now)
        return after, self._finish("grant.rejected", actor, grant, after, now)

    def revoke(
        self, grant_id: str, actor: Subject, reason: str, now: datetime
    ) -> tuple[ScenarioGrant, dict[str, Any]]:
        """Takes effect on every process's next request: the version row is bumped in this transaction."""
        grant = self._load(grant_id)
        self._require_steward(actor, grant, "revoke")
        if not reason.strip():
            raise GrantError("撤销授权必须填写理由。", "a reason is required to revoke")
        if grant.status is not GrantStatus.APPROVED:
            raise _refused_in_status(
                grant,
                "撤销",
                "revoke",
                ("只有已批准的授权可以撤销。", "; only an approved grant can be revoked"),
            )
        after = replace(
            grant,
            status=GrantStatus.REVOKED,
            revoked_by=actor.user_id,
            decision_reason=reason,
            updated_at=now,
        )
        event = self._finish("grant.revoked", actor, grant, after, now)
        # A renewal of this grant still waiting for its second steward would, once approved, restore the
        # access just revoked: it is rejected with the revocation (fail closed).
        for successor in self.repository.pending_renewals(grant_id):
            closed = replace(
                successor,
                status=GrantStatus.REJECTED,
                decision_reason=f"所续期的授权 {grant_id} 已被撤销",
                updated_at=now,
            )
            self.repository.save(closed)
            self._pending_events.append(
                _event("grant.rejected", actor.user_id, successor.grant_id, successor, closed, now)
            )
        return after, event

    def _require_predecessor_in_force(self, grant_id: str) -> None:
        """A renewal continues a grant; once that grant is revoked (or already renewed by another
        successor) there is nothing left to continue, and approving it would restore revoked access."""
        old = self.repository.get(grant_id)
        if old is not None and old.status in (GrantStatus.APPROVED, GrantStatus.EXPIRED):
            return
        status_zh = GRANT_STATUS_ZH[old.status] if old is not None else "不存在"
        raise InvalidTransitionError(
            f"这项续期所接续的授权 {grant_id} 当前为「{status_zh}」，续期不能再批准。"
            "请驳回这项续期；如仍需要，请重新提出申请。",
            f"the grant this renewal continues ({grant_id}) is no longer in force "
            f"({old.status.value if old is not None else 'missing'}): reject the renewal and request anew",
        )

    def _close_predecessor(self, grant_id: str, actor: Subject, now: datetime) -> None:
        """A renewal that waited for its second approver is now in force: its predecessor is renewed."""
        old = self.repository.get(grant_id)
        if old is None or old.status not in (GrantStatus.APPROVED, GrantStatus.EXPIRED):
            return
        closed = replace(old, status=GrantStatus.RENEWED, updated_at=now)
        self.repository.save(closed)
        self._pending_events.append(_event("grant.renewed", actor.user_id, old.grant_id, old, closed, now))

    def take_events(self) -> list[dict[str, Any]]:
        """Change events produced as side effects of the last transition (e.g. a predecessor renewed)."""
        events, self._pending_events = self._pending_events, []
        return events

    def expire_due(self, now: datetime, actor: str = "system") -> list[dict[str, Any]]:
        """Mark approved grants past ``valid_until`` as expired. Decisions never depend on this sweep
        (a lapsed grant is refused by time alone); it keeps lists and reminders tidy."""
        events = []
        for grant in self.repository.due_to_expire(now):
            after = replace(grant, status=GrantStatus.EXPIRED, updated_at=now)
            self.repository.save(after)
            events.append(_event("grant.expired", actor, grant.grant_id, grant, after, now))
        if events:
            self.repository.bump_policy_version(now)
        return events

    def renew(
        self,
        grant_ids: Sequence[str],
        actor: Subject,
        now: datetime,
        *,
        second: Subject | None = None,
        validity_days: int | None = None,
        stagger_window_days: int = 14,
        defer_second_approval: bool = False,
    ) -> tuple[list[ScenarioGrant], list[dict[str, Any]]]:
        """Renew many grants at once. Each old grant becomes ``renewed``; a successor starts now and runs
        ``validity_days`` (default: the scenario's validity; at most its ``max_validity_days``) minus a
        deterministic stagger of under ``stagger_window_days`` so the batch does not lapse on one day; the
        stagger never ends a successor before its predecessor would have lapsed.
        All-or-nothing: any refusal raises before anything is written.

        A grant with the most sensitive fields needs a second steward. With ``second`` given, both act
        at once; with ``defer_second_approval`` the successor waits in ``awaiting_second_approval`` (the
        old grant stays in force meanwhile) until a second, different steward approves it."""
        if validity_days is not None and validity_days <= 0:
            raise GrantError("续期天数必须是正数。", "validity_days must be positive")
        plan: list[tuple[ScenarioGrant, ScenarioGrant]] = []
        for position, grant_id in enumerate(grant_ids, 1):
            with _named_in_batch(position, len(grant_ids), grant_id):
                plan.append(
                    self._renewal_of(
                        grant_id,
                        actor,
                        now,
                        second,
                        validity_days,
                        stagger_window_days,
                        defer_second_approval,
                    )
                )
        renewed: list[ScenarioGrant] = []
        events: list[dict[str, Any]] = []
        for old, successor in plan:
            self.repository.add(successor)
            renewed.append(successor)
            if successor.status is GrantStatus.AWAITING_SECOND_APPROVAL:
                events.append(
                    _event("grant.first_approval", actor.user_id, successor.grant_id, None, successor, now)
                )
                continue
            closed = replace(old, status=GrantStatus.RENEWED, updated_at=now)
            self.repository.save(closed)
            events.append(_event("grant.renewed", actor.user_id, old.grant_id, old, closed, now))
            events.append(_event("grant.approved", actor.user_id, successor.grant_id, None, successor, now))
        if plan:
            self.repository.bump_policy_version(now)
        return renewed, events

    def _renewal_of(
        self,
        grant_id: str,
        actor: Subject,
        now: datetime,
        second: Subject | None,
        validity_days: int | None,
        stagger_window_days: int,
        defer_second_approval: bool,
    ) -> tuple[ScenarioGrant, ScenarioGrant]:
        """One grant of ``renew``'s batch and its successor, or the refusal (nothing written yet)."""
        grant = self._load(grant_id)
        self._require_steward(actor, grant, "renew")
        if actor.user_id == grant.requested_by:
            raise SeparationOfDutiesError("不能审批自己提出的申请。", "nobody renews their own request")
        if grant.break_glass:
            raise InvalidTransitionError(
                "紧急访问授权不能续期：仍需要时请重新申请紧急访问或提出正常授权申请。",
                "an emergency (break-glass) grant cannot be renewed; invoke it again or request a grant",
            )
        if grant.status not in (GrantStatus.APPROVED, GrantStatus.EXPIRED):
            raise _refused_in_status(
                grant,
                "续期",
                "renew",
                ("只有已批准或已过期的授权可以续期。", "; only an approved or expired grant can be renewed"),
            )
        waiting = self.repository.pending_renewals(grant.grant_id)
        if waiting:
            # A second successor would leave two grants in force for one scope once both are approved.
            raise InvalidTransitionError(
                f"授权 {grant.grant_id} 已有一项续期（{waiting[0].grant_id}）在等待第二位数据管理员审批，"
                "请审批或驳回那一项，不要重复续期。",
                f"grant {grant.grant_id} already has a renewal ({waiting[0].grant_id}) waiting for its "
                "second approver: approve or reject that one instead of renewing again",
            )
        spec = self.scenarios.get(grant.scenario)
        if spec is None:
            raise UnknownScenarioError("没有这个使用场景。", f"unknown scenario {grant.scenario!r}")
        second_id: str | None = None
        status = GrantStatus.APPROVED
        if self.needs_second_approval(grant) and second is None and defer_second_approval:
            status = GrantStatus.AWAITING_SECOND_APPROVAL
        elif self.needs_second_approval(grant):
            if second is None:
                raise SeparationOfDutiesError(
                    "涉及敏感字段的授权续期需要第二位数据管理员审批。",
                    "renewing a grant with the most sensitive fields needs a second approver",
                )
            self._require_steward(second, grant, "renew")
            if second.user_id in (actor.user_id, grant.requested_by):
                raise SeparationOfDutiesError(
                    "第二审批人必须是另一位数据管理员。", "the second approver must be a different person"
                )
            second_id = second.user_id
        validity = validity_days or spec.default_validity_days
        if validity > spec.max_validity_days:
            raise _too_long(spec.code, spec.max_validity_days)
        new_id = _new_id("grt")
        # The stagger shortens a successor, never lengthens it: no window outlasts the maximum. Nor does
        # it end the grant before its predecessor would have lapsed: a renewal is asked for to keep access,
        # and a grant renewed a few days after its approval lost up to the whole stagger window.
        days = validity - stagger_days(new_id, min(stagger_window_days, validity))
        start = now
        until = start + timedelta(days=days)
        if grant.valid_until is not None and until < grant.valid_until:
            until = min(grant.valid_until, start + timedelta(days=validity))
        successor = replace(
            grant,
            grant_id=new_id,
            status=status,
            valid_from=start,
            valid_until=until,
            approved_by=actor.user_id,
            second_approver=second_id,
            revoked_by=None,
            created_at=now,
            updated_at=now,
            renewed_from=grant.grant_id,
        )
        return grant, successor

    def reminders(self, now: datetime, within_days: int = 14) -> list[RenewalReminder]:
        """Approved grants lapsing within ``within_days``, each naming who must act: a renewal, so never a
        break-glass grant, which cannot be renewed."""
        out = []
        for grant in self.repository.expiring_between(now, now + timedelta(days=within_days)):
            assert grant.valid_until is not None
            owners = sorted(self._owner_departments(grant))
            out.append(
                RenewalReminder(
                    grant_id=grant.grant_id,
                    scenario=grant.scenario,
                    org_scope=grant.org_scope,
                    valid_until=grant.valid_until,
                    days_left=max(0, (grant.valid_until - now).days),
                    must_act_role="data_steward",
                    must_act_department=",".join(owners),
                    requested_by=grant.requested_by,
                )
            )
        return out

    # -- break-glass ---------------------------------------------------------------------------

    def break_glass(
        self,
        actor: Subject,
        scenario: str,
        reason: str,
        now: datetime,
        *,
        hours: int = 2,
        org_scope: str | None = None,
    ) -> tuple[ScenarioGrant, BreakGlassReview, list[dict[str, Any]]]:
        """Emergency access: effective at once, for at most ``BREAK_GLASS_MAX_HOURS``, within the actor's
        own jurisdiction, for a role the scenario allows. Returns the grant, an open post-review item,
        and events: the grant change plus a ``break_glass.notice`` to the level above."""
        self._require(actor, "break_glass", "invoke")
        spec = self.scenarios.get(scenario)
        if spec is None:
            raise self._unknown_scenario()
        if not set(actor.roles).intersection(spec.roles_allowed):
            raise SeparationOfDutiesError("您的岗位不能使用该场景。", "your role may not use this scenario")
        if len(reason.strip()) < BREAK_GLASS_MIN_REASON_CHARS:
            n = BREAK_GLASS_MIN_REASON_CHARS
            raise GrantError(
                f"紧急访问的理由至少需要 {n} 个字，请写明发生了什么、为什么必须立即查看"
                f"（当前 {len(reason.strip())} 个字）。",
                f"the reason for emergency access must be at least {n} characters long, saying what "
                f"happened and why the data is needed now (got {len(reason.strip())})",
            )
        if not 0 < hours <= BREAK_GLASS_MAX_HOURS:
            # 0 or a negative number is not "too long": say the range, and what was typed, for either side.
            raise GrantError(
                f"紧急访问的时长须为 1 至 {BREAK_GLASS_MAX_HOURS} 小时的整数（当前 {hours}），"
                f"请按需要填写，最长 {BREAK_GLASS_MAX_HOURS} 小时。",
                f"emergency access lasts from 1 to {BREAK_GLASS_MAX_HOURS} whole hours (got {hours}); ask "
                f"for what you need, at most {BREAK_GLASS_MAX_HOURS}",
            )
        scope = divisions.normalize(org_scope or actor.org)
        if not divisions.covers(actor.org, scope):
            raise OutsideJurisdictionError(
                "只能在本辖区内紧急访问。", "emergency access only within your jurisdiction"
            )
        if not _opens_within(spec, now, now + timedelta(hours=hours)):
            # Reads keep to the scenario's hours, break-glass ones too: a grant none of whose hours are
            # open served nothing, yet told the level above and opened a post-review of an access that
            # could not happen, while the cadre believed she had it "at once".
            start, end = spec.hours_allowed
            raise GrantError(
                f"「{spec.name_zh}」只能在每天 {start}:00 至 {end}:00（北京时间）查看数据，紧急访问也不例外；"
                f"所申请的 {hours} 小时都不在这个时段内，本次未开通紧急访问，也未通知上级。"
                f"请于 {start}:00 后再申请；情况紧急的，请先通过电话等方式联系上级或数据所属部门。",
                f"\u201c{spec.name_en}\u201d data can be read only between {start}:00 and {end}:00 (Beijing "
                f"time), emergency access included; none of the {hours} hours asked for is within them, so "
                f"no emergency access was opened and nobody was notified. Ask again after {start}:00; in an "
                "emergency, call the level above or the department owning the data first.",
            )
        grant = ScenarioGrant(
            grant_id=_new_id("bg"),
            scenario=scenario,
            org_scope=scope,
            datasets=spec.datasets,
            valid_from=now,
            valid_until=now + timedelta(hours=hours),
            status=GrantStatus.APPROVED,
            requested_by=actor.user_id,
            approved_by=None,
            reason=reason,
            created_at=now,
            updated_at=now,
            break_glass=True,
        )
        notify_org = divisions.parent_of(actor.org) or divisions.ROOT
        review = BreakGlassReview(
            review_id=_new_id("bgr"),
            grant_id=grant.grant_id,
            invoked_by=actor.user_id,
            notify_org=notify_org,
            reason=reason,
            status="open",
            opened_at=now,
        )
        grant_event = self._finish("grant.break_glass", actor, None, grant, now)
        self.repository.add_review(review)
        notice = {
            "kind": "break_glass.notice",
            "actor": actor.user_id,
            "grant_id": grant.grant_id,
            "review_id": review.review_id,
            "notify_org": notify_org,
            "scenario": scenario,
            "org_scope": scope,
            "valid_until": _iso(grant.valid_until),
            "before": None,
            "after": None,
            "at": now.isoformat(),
        }
        return grant, review, [grant_event, notice]

    def close_review(
        self, review_id: str, actor: Subject, note: str, now: datetime
    ) -> tuple[BreakGlassReview, dict[str, Any]]:
        """A supervisor, never the person who broke the glass, closes the post-review."""
        self._require(actor, "break_glass", "close_review")
        review = self.repository.get_review(review_id)
        if review is None:
            raise ReviewNotFoundError()
        if review.status != "open":
            raise InvalidTransitionError("该复核事项已关闭。", "review already closed")
        if actor.user_id == review.invoked_by:
            raise SeparationOfDutiesError(
                "不能复核自己的紧急访问。", "nobody reviews their own emergency access"
            )
        if not note.strip():
            raise GrantError("请填写复核意见。", "a review note is required")
        self.repository.close_review(review_id, actor.user_id, now, note)
        closed = replace(review, status="closed", closed_by=actor.user_id, closed_at=now, review_note=note)
        event = {
            "kind": "break_glass.review_closed",
            "actor": actor.user_id,
            "grant_id": review.grant_id,
            "before": {"review_id": review_id, "status": "open"},
            "after": {"review_id": review_id, "status": "closed", "note": note},
            "at": now.isoformat(),
        }
        return closed, event


# -- the in-memory index -------------------------------------------------------------------------


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while an index is built. A national rebuild allocates about a
    million objects, which triggers full collections that walk the whole heap (the live index
    included) again and again: measured, that doubles a reload (bench/bench_policy.py). Nothing built
    here is cyclic, and reference counting still frees everything else meanwhile."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _rank_in_scope(grant: ScenarioGrant) -> tuple[float, str]:
    """Within one scope: the grant lasting longest first, then by id (deterministic)."""
    until = grant.valid_until.timestamp() if grant.valid_until is not None else 0.0
    return (-until, grant.grant_id)


def _scope_of(grant: ScenarioGrant) -> str | None:
    """The significant form of the grant's scope (``divisions.significant``): the index key."""
    try:
        return divisions.significant(grant.org_scope)
    except ValueError:
        # One malformed row must not take every grant down; it simply grants nothing.
        _log.error("grant %s skipped: malformed org scope", grant.grant_id)
        return None


# Incremental refresh. A change is found by its ``updated_at``, which is the writer's clock, not the
# database's: a transaction may commit a little after the time it stamped, and another process's
# clock may lag. Each refresh therefore re-reads every change stamped up to CHANGE_OVERLAP before the
# newest one already seen (re-applying a change is harmless), and an index whose last full build is
# older than FULL_REBUILD_AFTER is rebuilt whole on the next change, bounding what even a writer
# lagging by more than the overlap could leave unseen.
CHANGE_OVERLAP = timedelta(minutes=15)
FULL_REBUILD_AFTER = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class _Source:
    """How far a repository-built index has read: the newest ``updated_at`` among its rows, the time
    (caller's clock) of its last full build, and the horizon it keeps ended grants for."""

    newest_change: datetime | None
    full_build_at: datetime
    keep_days: int


def _newest_change(grants: Iterable[ScenarioGrant], start: datetime | None = None) -> datetime | None:
    newest = start
    for grant in grants:
        stamp = grant.updated_at
        if stamp is not None and (newest is None or stamp > newest):
            newest = stamp
    return newest


_MICROSECOND = timedelta(microseconds=1)

GrantEntry = tuple[int | None, int, str | None, tuple[str, ...], str, ScenarioGrant]
"""``(valid_from, valid_until, dataset, fields, grant_id, grant)``: what a decision reads of a grant,
held in one tuple so that it does not chase the grant's datetimes and field mapping through memory
(at national scale each is a cache miss). The bounds are microseconds since the epoch (``epoch_us``);
a grant that cannot be active (not approved, or a bound missing) has bounds ``(0, 0)``, and
``0 <= now < 0`` never holds. ``None`` as ``valid_from``: a bound that could not be converted (naive or
out of range); the engine then asks ``grant.is_active``, which fails exactly as it always did.
``dataset``/``fields``: the grant's only dataset and its fields, or ``None``/``()`` when it names
several (then ``grant.datasets`` is read)."""

# Per scenario, one dict per length of significant scope code holding grants, longest first (the
# most specific scope first); each maps a significant scope to its grants ranked by _rank_in_scope.
# Separate dicts per level keep the few county-level scopes in a small dict that stays in cache.
# Buckets are tuples, not lists: a tuple holds its items inline, one memory access fewer per hit.
_Levels = tuple[tuple[int, dict[str, tuple[GrantEntry, ...]]], ...]


def epoch_us(moment: datetime) -> int:
    """Microseconds since 1970-01-01 UTC: exact (integer), so ``<`` on it is ``<`` on the datetimes.
    Raises TypeError for a naive datetime."""
    return (moment - _EPOCH) // _MICROSECOND


def _entry(grant: ScenarioGrant) -> GrantEntry:
    datasets = grant.datasets
    dataset, fields = next(iter(datasets.items())) if len(datasets) == 1 else (None, ())
    start, end = grant.valid_from, grant.valid_until
    if grant.status is not GrantStatus.APPROVED or start is None or end is None:
        return (0, 0, dataset, fields, grant.grant_id, grant)
    try:
        return (epoch_us(start), epoch_us(end), dataset, fields, grant.grant_id, grant)
    except (TypeError, OverflowError):
        return (None, 0, dataset, fields, grant.grant_id, grant)


def _entry_rank(entry: GrantEntry) -> tuple[float, str]:
    return _rank_in_scope(entry[-1])


def _ranked(bucket: list[GrantEntry]) -> tuple[GrantEntry, ...]:
    if len(bucket) > 1:
        bucket.sort(key=_entry_rank)
    return tuple(bucket)


def _levels(by_length: Mapping[int, dict[str, tuple[GrantEntry, ...]]]) -> _Levels:
    return tuple(sorted(((n, per) for n, per in by_length.items() if per), key=lambda item: -item[0]))


class GrantIndex:
    """Grants keyed by scenario, then by the length and significant form of their org scope
    (``divisions.significant``), as ``GrantEntry`` tuples. Immutable once built: a refresh builds a
    new index and the engine swaps the reference (one assignment), so readers never see a half-built
    index and every decision during a rebuild is served by the old one.

    Keyed by the significant form, the scopes covering a caller are the prefixes of the caller's own
    significant form at segment boundaries (``divisions.covers``), so a lookup slices one string
    instead of building up to six 12-digit ancestor codes, and probes only the code lengths that hold
    grants of that scenario (at national scale: counties, townships and villages).

    ``version`` is the ``policy_versions`` value the index was built from; the gateway compares it with
    ``GrantRepository.policy_version()`` on each request (one primary-key read) and refreshes when it
    moved, which is how a revocation reaches every process on its next request. A refresh applies
    only the grants changed since (copy-on-write: untouched buckets are shared with the old index).
    """

    __slots__ = ("_by_id", "_count", "_source", "_views", "unconvertible", "version")

    def __init__(self, grants: Iterable[ScenarioGrant] = (), version: int = 0) -> None:
        # scenario -> scope length -> significant scope -> entries (ranked by _rank_in_scope below).
        by_scenario: dict[str, dict[int, dict[str, list[GrantEntry]]]] = {}
        by_id: dict[str, ScenarioGrant] = {}
        count = 0
        unconvertible = False
        indexed = _INDEXED
        for grant in grants:
            if grant.status not in indexed:
                continue
            scope = _scope_of(grant)
            if scope is None:
                continue
            by_length = by_scenario.get(grant.scenario)
            if by_length is None:
                by_length = by_scenario[grant.scenario] = {}
            per = by_length.get(len(scope))
            if per is None:
                per = by_length[len(scope)] = {}
            entry = _entry(grant)
            if entry[0] is None:
                unconvertible = True
            bucket = per.get(scope)
            if bucket is None:
                per[scope] = [entry]
            else:
                bucket.append(entry)
            by_id[grant.grant_id] = grant
            count += 1
        self._views: dict[str, _Levels] = {
            sc: _levels(
                {n: {scope: _ranked(bucket) for scope, bucket in per.items()} for n, per in by_length.items()}
            )
            for sc, by_length in by_scenario.items()
        }
        #: True when some entry's bounds are ``None`` (see GrantEntry); may stay True after such a
        #: grant leaves through an incremental refresh (it only turns on a slower, exact check).
        self.unconvertible = unconvertible
        self._by_id = by_id
        self._count = count
        self._source: _Source | None = None
        self.version = version

    def __len__(self) -> int:
        return self._count

    def lookup(self, org: str, scenario: str) -> list[ScenarioGrant]:
        """Grants for ``scenario`` whose scope covers ``org``, ranked: most specific scope first, then
        the one lasting longest, then by id. Raises ValueError when ``org`` is malformed."""
        return self.covering(divisions.significant(org), scenario)

    def covering(self, significant: str, scenario: str) -> list[ScenarioGrant]:
        """``lookup`` for a caller already in significant form (``divisions.split``)."""
        return [entry[-1] for entry in self.entries(significant, scenario)]

    def entries(self, significant: str, scenario: str) -> list[GrantEntry]:
        """The entries of ``covering``, in its order (the decision path reads the bounds from them).

        Scopes covering a code have distinct lengths, so probing from the longest down and keeping each
        scope's grants pre-sorted gives the ranking with no sort per call. At most six probes: cost is
        independent of how many grants exist."""
        levels = self._views.get(scenario)
        if levels is None:
            return []
        size = len(significant)
        found: list[GrantEntry] = []
        for cut, per in levels:
            if cut <= size:
                hit = per.get(significant[:cut])
                if hit:
                    found.extend(hit)
        return found

    def grants(self) -> list[ScenarioGrant]:
        return [
            e[-1] for levels in self._views.values() for _, per in levels for es in per.values() for e in es
        ]

    @classmethod
    def from_repository(cls, repository: GrantRepository, now: datetime, keep_days: int = 30) -> GrantIndex:
        """A full build: every grant the index needs, read in one query."""
        version = repository.policy_version()
        with _gc_paused():
            grants = repository.for_index(now, keep_days)
            index = cls(grants, version=version)
        index._source = _Source(_newest_change(grants), now, keep_days)
        return index

    def refreshed(self, repository: GrantRepository, now: datetime) -> GrantIndex:
        """This index if still current; else a new one with the grants changed since applied (the
        usual case: a revocation costs milliseconds, not a national rebuild); or a full build when
        this index was not read from the repository or its last full build is FULL_REBUILD_AFTER
        old (``now`` earlier than that build counts as old too)."""
        version = repository.policy_version()
        if version == self.version:
            return self
        source = self._source
        if (
            source is None
            or source.newest_change is None
            or not source.full_build_at <= now < source.full_build_at + FULL_REBUILD_AFTER
        ):
            return GrantIndex.from_repository(repository, now, source.keep_days if source else 30)
        with _gc_paused():
            changed = repository.changed_since(source.newest_change - CHANGE_OVERLAP)
            return self._with_changed(changed, version, now, source)

    def _with_changed(
        self, changed: Sequence[ScenarioGrant], version: int, now: datetime, source: _Source
    ) -> GrantIndex:
        """A copy with ``changed`` (the current state of those grants, any status) applied: each
        replaces the grant of the same id; one no longer indexable (renewed, long ended) leaves."""
        horizon = now - timedelta(days=source.keep_days)
        by_id = dict(self._by_id)
        ids = {g.grant_id for g in changed}
        added: dict[tuple[str, str], list[ScenarioGrant]] = {}
        for grant in changed:
            old = by_id.pop(grant.grant_id, None)
            if old is not None and (scope := _scope_of(old)) is not None:
                added.setdefault((old.scenario, scope), [])
            if (
                grant.status in _INDEXED
                and grant.valid_until is not None
                and grant.valid_until > horizon
                and (scope := _scope_of(grant)) is not None
            ):
                by_id[grant.grant_id] = grant
                added.setdefault((grant.scenario, scope), []).append(grant)
        count = self._count
        # Copy-on-write: only the (scenario, scope length) dicts a change touches are copied.
        copied: dict[str, dict[int, dict[str, tuple[GrantEntry, ...]]]] = {}
        copied_keys: set[tuple[str, int]] = set()
        for (scenario, scope), grants in added.items():
            by_length = copied.get(scenario)
            if by_length is None:
                by_length = copied[scenario] = dict(self._views.get(scenario, ()))
            per = by_length.get(len(scope))
            if per is None or (scenario, len(scope)) not in copied_keys:
                per = by_length[len(scope)] = dict(per or {})
                copied_keys.add((scenario, len(scope)))
            before = per.get(scope, ())
            bucket = [e for e in before if e[4] not in ids] + [_entry(g) for g in grants]
            count += len(bucket) - len(before)
            if bucket:
                per[scope] = _ranked(bucket)
            else:
                per.pop(scope, None)
        views = dict(self._views)
        for scenario, by_length in copied.items():
            levels = _levels(by_length)
            if levels:
                views[scenario] = levels
            else:
                views.pop(scenario, None)
        index = GrantIndex(version=version)
        index._views = views
        index.unconvertible = self.unconvertible or any(_entry(g)[0] is None for g in changed)
        index._by_id = by_id
        index._count = count
        index._source = replace(source, newest_change=_newest_change(changed, source.newest_change))
        return index

    def with_changes(self, add: Iterable[ScenarioGrant] = (), remove: Iterable[str] = ()) -> GrantIndex:
        """A what-if copy (for replay): grants added or replaced by id, some removed."""
        added = {g.grant_id: g for g in add}
        gone = set(remove) | set(added)
        kept = [g for g in self.grants() if g.grant_id not in gone]
        return GrantIndex([*kept, *added.values()], version=self.version + 1)
