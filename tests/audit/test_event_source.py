"""An event's ``source``: where the request that caused it came from.

Recorded in the clear beside the actor, in the RFC 8785 body only when there is one: the bodies written
before sources existed encode, byte for byte, as they were hashed, and verify as before. Supervisor queries
find an event by its source on SQLite and PostgreSQL alike (read from the body: no column, which the
append-only table could not fill in for old events), never by a ``source`` that an act's ``details`` carry
(a complaint's channel), through an expression index on that body member, newest first; and the
refusal-spike rule names the addresses most refusals came from.
"""

from __future__ import annotations

import ipaddress
import json
from datetime import timedelta

import pytest
import rfc8785
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit import (
    ANONYMOUS_ACTOR,
    AuditEvent,
    AuditLog,
    EventQuery,
    Outcome,
    detect_anomalies,
    load_anomaly_rules,
    query_events,
)
from audit.events import canonical_text_and_time, is_source
from audit.query import org_prefix
from audit.tables import event_source, event_source_index
from audit.verify import verify_log
from tests.audit.conftest import Store
from tests.audit.helpers import T0, make_event, query_plan, statements_run

RULES = load_anomaly_rules()

_SOURCES = (
    st.none()
    | st.ip_addresses(v=4).map(str)
    | st.ip_addresses(v=6).map(lambda a: str(ipaddress.IPv6Network((a, 64), strict=False)))
    | st.sampled_from(["unknown", "other-sources"])
)


@settings(max_examples=200, deadline=None)
@given(source=_SOURCES, i=st.integers(0, 50))
def test_the_body_with_or_without_a_source_is_the_rfc8785_reference_encoding(
    source: str | None, i: int
) -> None:
    assert source is None or is_source(source)
    event = make_event(i, source=source)
    text, _ = canonical_text_and_time(event)
    assert text.encode("utf-8") == bytes(rfc8785.dumps(event.to_body()))
    assert ('"source":' in text) is (source is not None)
    assert AuditEvent.from_body(json.loads(text)) == event


def test_a_body_written_before_sources_reads_back_to_the_same_bytes() -> None:
    """An event without a source has no ``source`` member at all (not null): its body is what version 1
    bodies always were, so the chains already written re-encode and verify unchanged."""
    event = make_event(3)
    body = event.to_body()
    assert "source" not in body
    old_text = canonical_text_and_time(event)[0]
    again = AuditEvent.from_body(json.loads(old_text))
    assert again.source is None and canonical_text_and_time(again)[0] == old_text


@pytest.mark.parametrize(
    "bad",
    [
        "203.0.113.07",
        "2001:0db8::/64",
        "example.org",
        "X-Forwarded-For",
        "13812345678",
        "",
        "1.2.3.4 ",
        "Unknown",
    ],
)
def test_a_source_is_an_address_in_its_one_spelling_or_a_word_of_the_gateways(bad: str) -> None:
    with pytest.raises(ValueError, match="source"):
        make_event(1, source=bad)
    with pytest.raises(ValueError, match="source"):
        EventQuery(source=bad)


def test_a_log_mixing_events_with_and_without_sources_verifies(store: Store) -> None:
    log = AuditLog(store.engine)
    log.append_many([make_event(i, source=None if i % 2 else f"198.51.100.{i}") for i in range(10)])
    report = verify_log(store.engine)
    assert report.ok, report


def _populate(store: Store) -> list[int]:
    anonymous = dict(kind="data.list", outcome=Outcome.REFUSED, actor=ANONYMOUS_ACTOR, reason="missing_token")
    events = [
        AuditEvent(**anonymous, source="203.0.113.7", occurred_at=T0),  # type: ignore[arg-type]
        AuditEvent(**anonymous, source="2001:db8:1:2::/64", occurred_at=T0),  # type: ignore[arg-type]
        # written before sources were recorded
        AuditEvent(**anonymous, occurred_at=T0),  # type: ignore[arg-type]
        # an act whose details carry a "source" of their own (a complaint's channel), then a subject ref:
        # the end-anchored match on PostgreSQL must not take it for the event's
        AuditEvent(
            kind="supervision.complaint_registered",
            outcome=Outcome.OK,
            actor="u-hotline",
            details={"source": "203.0.113.7", "subject_ref": "x"},
            source="192.0.2.1",
            occurred_at=T0,
        ),
        AuditEvent(
            kind="supervision.complaint_registered",
            outcome=Outcome.OK,
            actor="u-hotline",
            details={"nested": {"source": "203.0.113.7"}},
            occurred_at=T0,
        ),
        AuditEvent(
            kind="data.read",
            outcome=Outcome.REFUSED,
            actor="u-cadre",
            actor_org="310151101201",
            reason="outside_jurisdiction",
            trace_id="ab" * 16,
            source="203.0.113.7",
            occurred_at=T0 + timedelta(minutes=1),
        ),
    ]
    return [r.seq for r in AuditLog(store.engine).append_many(events)]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("203.0.113.7", [6, 1]),
        ("2001:db8:1:2::/64", [2]),
        ("192.0.2.1", [4]),
        ("198.51.100.1", []),
    ],
)
def test_events_are_found_by_their_source_and_only_theirs(
    store: Store, source: str, expected: list[int]
) -> None:
    _populate(store)
    page = query_events(store.engine, EventQuery(source=source))
    assert [e.seq for e in page.items] == expected
    assert all(e.to_json()["source"] == source for e in page.items)
    assert [e.seq for e in query_events(store.engine, EventQuery(source=source, actor="u-cadre")).items] == [
        s for s in expected if s == 6
    ]


def test_the_source_filter_reads_the_body_not_a_column(store: Store) -> None:
    """The filter is an expression over the stored body (see audit.tables.event_source): the events table
    is append-only, and a column could not be filled in for the events written before it."""
    assert "source" not in {c["name"] for c in sa.inspect(store.engine).get_columns("audit_events")}


_KEY_TEXT = st.sampled_from(["source", "subject_refs", "trace_id", "v", "a"])
_VALUE_TEXT = st.text(alphabet='"source:,[]{}\\/ab', max_size=40) | st.sampled_from(
    ['"source":"203.0.113.7","subject_refs":[]', '","subject_refs":[', '"source":"', "}"]
)
_DETAILS = st.recursive(
    st.dictionaries(_KEY_TEXT, _VALUE_TEXT | st.integers(0, 9), max_size=3),
    lambda inner: st.dictionaries(_KEY_TEXT, inner | _VALUE_TEXT, max_size=3),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source=_SOURCES, details=_DETAILS, refs=st.integers(0, 3), trace=st.booleans())
def test_the_database_reads_the_source_the_body_has_and_no_other(
    store: Store, source: str | None, details: dict[str, object], refs: int, trace: bool
) -> None:
    """The expression the filter and its index are built on gives the body's own top-level ``source`` (or
    NULL), whatever ``details`` hold: keys named ``source`` or ``subject_refs`` at any depth, values that
    spell ``"source":"`` or a body's tail. On PostgreSQL it takes the text apart rather than parse it."""
    event = make_event(refs, source=source, details=details, trace_id=f"{refs:032x}" if trace else None)
    text = canonical_text_and_time(event)[0]
    with store.engine.connect() as conn:
        read = conn.execute(sa.select(event_source(sa.literal(text, sa.Text)))).scalar_one()
    assert read == json.loads(text).get("source") == source


def _log_of_many_sources(store: Store) -> list[AuditEvent]:
    """Events from IPv4 and IPv6 clients, and without a source, of two districts and none (unattributed),
    allowed and refused, with a complaint's ``details.source`` among them; appended, and returned in order."""
    events = []
    for i in range(120):
        source = [None, "203.0.113.7", "2001:db8:1:2::/64", "198.51.100.9", "192.0.2.1"][i % 5]
        org = [None, "310151101201", "310152102203"][i % 3]
        details = {"source": "203.0.113.7", "subject_ref": "x"} if i % 7 == 0 else {"page": i}
        events.append(
            make_event(
                i,
                actor="anonymous" if org is None else f"u-{i % 4}",
                actor_org=org,
                source=source,
                details=details,
            )
        )
    AuditLog(store.engine).append_many(events)
    return events


#: The queries GET /api/v1/supervision/events builds for a ``source`` (gateway.routes.supervision: the
#: caller's scope as ``org``, a scope covering the platform's jurisdiction with its unattributed events, the
#: default page of 100), alone and with the other filters a supervisor pairs it with.
_API_QUERIES = {
    "national supervisor": dict(),
    "district supervisor": dict(org="310151000000", unattributed=True),
    "village supervisor": dict(org="310151101201"),
    "refused only": dict(org="310151000000", unattributed=True, outcome="refused"),
    "next page": dict(org="310151000000", unattributed=True, before=60),
    "a day": dict(since=T0, until=T0 + timedelta(days=1)),
    "one actor": dict(actor="u-1"),
}


@pytest.mark.parametrize("source", ["203.0.113.7", "2001:db8:1:2::/64"])
@pytest.mark.parametrize("name", list(_API_QUERIES))
def test_a_source_is_one_backward_range_of_the_source_index(store: Store, source: str, name: str) -> None:
    """At national scale a filter by source alone must not read the whole log: the very statement
    :func:`audit.query_events` sends is answered from ``ix_audit_events_source_seq``, in ``seq`` order (no
    sort), and finds exactly the events whose body has that source, newest first."""
    events = _log_of_many_sources(store)
    q = EventQuery(source=source, limit=100, **_API_QUERIES[name])  # type: ignore[arg-type]
    with statements_run(store.engine) as sent:
        page = query_events(store.engine, q)
    expected = [
        seq
        for seq, e in reversed(list(enumerate(events, start=1)))
        if e.source == source
        and (
            q.org is None
            or (e.actor_org is not None and e.actor_org.startswith(org_prefix(q.org)))
            or (q.unattributed and e.actor_org is None)
        )
        and q.outcome in (None, e.outcome)
        and q.actor in (None, e.actor)
        and (q.before is None or seq < q.before)
    ]
    assert expected and [e.seq for e in page.items] == expected[: q.limit]
    ((statement, parameters),) = sent
    plan = query_plan(store.engine, statement, parameters)
    assert event_source_index.name in plan, plan
    if store.dialect == "sqlite":
        assert "TEMP B-TREE" not in plan, plan  # the index gives the order: no sort
    else:
        assert "Index Scan Backward" in plan and "Sort" not in plan, plan


def _refused(seconds: int, source: str | None, actor: str = ANONYMOUS_ACTOR) -> AuditEvent:
    """A refused data request, as the gateway records it, ``seconds`` into the hour."""
    return AuditEvent(
        kind="data.list",
        outcome=Outcome.REFUSED,
        actor=actor,
        actor_org=None if actor == ANONYMOUS_ACTOR else "310151101201",
        reason="missing_token" if actor == ANONYMOUS_ACTOR else "outside_jurisdiction",
        source=source,
        occurred_at=T0 + timedelta(seconds=seconds),
    )


def test_a_refusal_spike_without_a_valid_token_names_the_addresses_it_came_from(sqlite: Store) -> None:
    """A supervisor reading the finding learns what to block: the (at most three) addresses most of the
    refusals came from, with their counts, most first; events written before sources count for none."""
    senders = ["203.0.113.7"] * 6 + ["198.51.100.9"] * 3 + ["2001:db8:1:2::/64"] * 2 + ["192.0.2.1", None]
    AuditLog(sqlite.engine).append_many([_refused(i, source) for i, source in enumerate(senders)])
    (finding,) = detect_anomalies(sqlite.engine, RULES, only=["refusal_spike"])
    assert finding.unauthenticated
    assert finding.sources == (("203.0.113.7", 6), ("198.51.100.9", 3), ("2001:db8:1:2::/64", 2))
    assert finding.to_json()["sources"] == [
        {"source": "203.0.113.7", "refusals": 6},
        {"source": "198.51.100.9", "refusals": 3},
        {"source": "2001:db8:1:2::/64", "refusals": 2},
    ]
    assert (
        "主要来源地址：203.0.113.7（6 次）、198.51.100.9（3 次）、2001:db8:1:2::/64（2 次）"
        in finding.summary_zh
    )
    assert "mostly from 203.0.113.7 (6), 198.51.100.9 (3), 2001:db8:1:2::/64 (2)" in finding.summary_en
    assert "grassroots supervise events --source 203.0.113.7" in finding.summary_zh
    assert "grassroots supervise events --source 203.0.113.7" in finding.summary_en
    assert finding.summary_en.isascii()


def test_a_users_refusal_spike_names_its_sources_too(sqlite: Store) -> None:
    AuditLog(sqlite.engine).append_many([_refused(i, "192.0.2.44", actor="u-cadre") for i in range(12)])
    (finding,) = detect_anomalies(sqlite.engine, RULES, only=["refusal_spike"])
    assert (finding.actor, finding.sources) == ("u-cadre", (("192.0.2.44", 12),))
