"""Access reports per organisation, department and scenario (counts, records read, distinct users).

A report counts data accesses (``data.*`` events) in a time window. "Department" is the department that
owns the dataset read (the caller passes the dataset -> department map it knows, e.g. from the scenario
catalog): supervisors ask "how much of civil affairs' data went where", which the event does not state
directly. Organisations can be rolled up to a level (township = 9 digits, county = 6).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import Engine

from audit.events import ANONYMOUS_ACTOR, Outcome
from audit.query import ACCESS_KIND_PREFIX, EventQuery, EventSummary, iter_events, org_prefix

UNKNOWN: Final = "(unknown)"
ORG_LEVELS: Final = (2, 4, 6, 9, 12)


class GroupBy(StrEnum):
    ORG = "org"
    DEPARTMENT = "department"
    SCENARIO = "scenario"


@dataclass
class ReportRow:
    key: str
    allowed: int = 0
    refused: int = 0
    errors: int = 0
    records_read: int = 0
    users: set[str] = field(default_factory=set)

    @property
    def total(self) -> int:
        return self.allowed + self.refused + self.errors

    def add(self, event: EventSummary) -> None:
        if event.outcome == Outcome.ALLOWED.value:
            self.allowed += 1
            self.records_read += event.record_count
        elif event.outcome == Outcome.REFUSED.value:
            self.refused += 1
        else:
            self.errors += 1
        if event.actor != ANONYMOUS_ACTOR:  # no token identified the sender: not a user
            self.users.add(event.actor)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "allowed": self.allowed,
            "refused": self.refused,
            "errors": self.errors,
            "total": self.total,
            "records_read": self.records_read,
            "distinct_users": len(self.users),
        }


def rolled_up_org(code: str | None, digits: int) -> str:
    """The organisation at ``digits`` significant digits (12 = as recorded), padded to 12 digits."""
    if not code or not code.isdigit() or len(code) != 12:
        return UNKNOWN
    return code[:digits].ljust(12, "0")


def group_key(
    event: EventSummary, group_by: GroupBy, org_digits: int, dataset_departments: Mapping[str, str]
) -> str:
    if group_by is GroupBy.ORG:
        return rolled_up_org(event.actor_org, org_digits)
    if group_by is GroupBy.SCENARIO:
        return event.scenario or UNKNOWN
    return dataset_departments.get(event.dataset or "", event.dataset or UNKNOWN)


def tabulate(
    events: Iterable[EventSummary],
    group_by: GroupBy,
    *,
    org_digits: int = 12,
    dataset_departments: Mapping[str, str] | None = None,
) -> list[ReportRow]:
    """Group access events; rows sorted by total (descending), then key."""
    if org_digits not in ORG_LEVELS:
        raise ValueError(f"org_digits must be one of {ORG_LEVELS}")
    departments = dataset_departments or {}
    rows: dict[str, ReportRow] = {}
    for event in events:
        if not event.kind.startswith(ACCESS_KIND_PREFIX):
            continue
        key = group_key(event, group_by, org_digits, departments)
        rows.setdefault(key, ReportRow(key)).add(event)
    return sorted(rows.values(), key=lambda r: (-r.total, r.key))


def access_report(
    engine: Engine,
    group_by: GroupBy | str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    org: str | None = None,
    org_digits: int = 12,
    dataset_departments: Mapping[str, str] | None = None,
    unattributed: bool = False,
) -> dict[str, Any]:
    """The report as plain JSON: ``{"group_by", "rows": [...], "totals": {...}}``. ``unattributed`` adds,
    to an ``org`` subtree, the accesses no organisation is charged with (their rows keyed ``(unknown)``),
    as :class:`~audit.query.EventQuery` says."""
    grouping = GroupBy(group_by)
    if org is not None:
        org_prefix(org)
    query = EventQuery(org=org, unattributed=unattributed, kind=ACCESS_KIND_PREFIX, since=since, until=until)
    events = list(iter_events(engine, query))
    rows = tabulate(events, grouping, org_digits=org_digits, dataset_departments=dataset_departments)
    totals = ReportRow("total")
    for event in events:
        totals.add(event)
    return {
        "group_by": grouping.value,
        "rows": [row.to_json() for row in rows],
        "totals": totals.to_json(),
    }
