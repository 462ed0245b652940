"""Supervisor queries and reports over a real store: filters, subtree prefixes, pagination, totals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit import (
    AuditEvent,
    AuditLog,
    EventQuery,
    Outcome,
    access_report,
    month_bounds,
    org_prefix,
    query_events,
)
from tests.audit.conftest import Store
from tests.audit.helpers import PSEUDONYMIZER

T = datetime(2026, 11, 10, 2, 0, tzinfo=UTC)

# (actor, org, scenario, outcome, records, minutes after T)
ROWS = [
    ("cadre-a", "310151101201", "DIBAO_REVIEW", Outcome.ALLOWED, 5, 0),
    ("cadre-a", "310151101201", "DIBAO_REVIEW", Outcome.REFUSED, 0, 1),
    ("cadre-b", "310151101202", "ELDERLY_VISIT", Outcome.ALLOWED, 3, 2),
    ("cadre-c", "310151102201", "DIBAO_REVIEW", Outcome.ALLOWED, 7, 3),
    ("town", "310151101000", "DIBAO_REVIEW", Outcome.ALLOWED, 20, 4),
    ("cadre-a", "310151101201", "DIBAO_REVIEW", Outcome.ALLOWED, 2, 60 * 24 * 30),
]


def populate(store: Store) -> list[int]:
    events = [
        AuditEvent(
            kind="data.list",
            outcome=outcome,
            actor=actor,
            actor_org=org,
            actor_roles=("village_cadre",),
            scenario=scenario,
            dataset="residents",
            record_count=records,
            subject_refs=(PSEUDONYMIZER.ref(f"r-{i}"),) if records else (),
            reason="allowed" if outcome is Outcome.ALLOWED else "no_active_grant",
            occurred_at=T + timedelta(minutes=minutes),
        )
        for i, (actor, org, scenario, outcome, records, minutes) in enumerate(ROWS)
    ]
    events.append(AuditEvent(kind="grants.approved", outcome=Outcome.OK, actor="steward", occurred_at=T))
    return [r.seq for r in AuditLog(store.engine).append_many(events)]


@pytest.mark.parametrize(
    ("query", "expected_seqs"),
    [
        (EventQuery(org="310151101"), [6, 5, 3, 2, 1]),
        (EventQuery(org="310151101201"), [6, 2, 1]),
        (EventQuery(org="310151"), [6, 5, 4, 3, 2, 1]),
        # The steward's approval carries no organisation: the platform's own, shown when asked for.
        (EventQuery(org="310151", unattributed=True), [7, 6, 5, 4, 3, 2, 1]),
        (EventQuery(org="310151101201", unattributed=True), [7, 6, 2, 1]),
        (EventQuery(actor="cadre-a", outcome="refused"), [2]),
        (EventQuery(scenario="ELDERLY_VISIT"), [3]),
        (EventQuery(kind="data."), [6, 5, 4, 3, 2, 1]),
        (EventQuery(kind="grants.approved"), [7]),
        (EventQuery(since=T + timedelta(minutes=2), until=T + timedelta(minutes=4)), [4, 3]),
        (EventQuery(dataset="residents", until=T + timedelta(minutes=1)), [1]),
    ],
)
def test_filters(store: Store, query: EventQuery, expected_seqs: list[int]) -> None:
    populate(store)
    assert [e.seq for e in query_events(store.engine, query).items] == expected_seqs


def test_pagination_walks_everything_once(store: Store) -> None:
    populate(store)
    seen: list[int] = []
    before = None
    while True:
        page = query_events(store.engine, EventQuery(limit=2, before=before))
        seen += [e.seq for e in page.items]
        if page.next_before is None:
            break
        before = page.next_before
    assert seen == [7, 6, 5, 4, 3, 2, 1]


def test_results_carry_refs_not_personal_data(sqlite: Store) -> None:
    populate(sqlite)
    item = query_events(sqlite.engine, EventQuery(actor="town")).items[0]
    assert item.subject_refs == (PSEUDONYMIZER.ref("r-4"),)


def test_an_event_listed_gives_its_time_on_the_beijing_clock_too(sqlite: Store) -> None:
    """supervise events printed only the stored UTC time (2026-11-10T02:04:00.000000Z): a supervisor
    reading it as the office clock placed the read at 2 a.m., not 10 a.m. The Beijing time is beside it."""
    populate(sqlite)
    listed = query_events(sqlite.engine, EventQuery(actor="town")).items[0].to_json()
    assert (listed["occurred_at"], listed["occurred_at_beijing"]) == (
        "2026-11-10T02:04:00.000000Z",
        "2026-11-10 10:04:00",
    )


@pytest.mark.parametrize(
    ("group_by", "org_digits", "expected"),
    [
        (
            "org",
            9,
            {"310151101000": (3, 1, 28, 3), "310151102000": (1, 0, 7, 1)},
        ),
        ("scenario", 12, {"DIBAO_REVIEW": (3, 1, 32, 3), "ELDERLY_VISIT": (1, 0, 3, 1)}),
        ("department", 12, {"civil_affairs": (4, 1, 35, 4)}),
    ],
)
def test_reports(
    sqlite: Store, group_by: str, org_digits: int, expected: dict[str, tuple[int, int, int, int]]
) -> None:
    populate(sqlite)
    report = access_report(
        sqlite.engine,
        group_by,
        until=T + timedelta(days=1),
        org_digits=org_digits,
        dataset_departments={"residents": "civil_affairs"},
    )
    got = {
        r["key"]: (r["allowed"], r["refused"], r["records_read"], r["distinct_users"]) for r in report["rows"]
    }
    assert got == expected
    assert report["totals"]["total"] == sum(a + r for a, r, _, _ in expected.values())


@pytest.mark.parametrize(
    ("code", "prefix"),
    [("000000000000", ""), ("310151101000", "310151101"), ("3101", "3101"), ("310151101201", "310151101201")],
)
def test_org_prefix(code: str, prefix: str) -> None:
    assert org_prefix(code) == prefix


@pytest.mark.parametrize("bad", ["31015", "abc", "3101511012011", ""])
def test_org_prefix_refuses_non_codes(bad: str) -> None:
    with pytest.raises(ValueError):
        org_prefix(bad)


@given(st.integers(2000, 2100), st.integers(1, 12))
def test_months_tile_the_timeline(year: int, month: int) -> None:
    start, end = month_bounds(f"{year:04d}-{month:02d}")
    nxt = f"{year + (month == 12):04d}-{month % 12 + 1:02d}"
    assert month_bounds(nxt)[0] == end
    assert start.hour == 16  # midnight Beijing time
