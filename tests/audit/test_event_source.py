"""An event's ``source``: where the request that caused it came from.

Recorded in the clear beside the actor, in the RFC 8785 body only when there is one: the bodies written
before sources existed encode, byte for byte, as they were hashed, and verify as before. Supervisor queries
find an event by its source on SQLite and PostgreSQL alike (read from the body: no column, no migration),
never by a ``source`` that an act's ``details`` carry (a complaint's channel), and the refusal-spike rule
names the addresses most refusals came from.
"""

from __future__ import annotations

import ipaddress
import json
from datetime import timedelta

import pytest
import rfc8785
import sqlalchemy as sa
from hypothesis import given, settings
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
from audit.verify import verify_log
from tests.audit.conftest import Store
from tests.audit.helpers import T0, make_event

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
    """No migration: the filter is an expression over the stored body (see audit.tables.event_source)."""
    assert "source" not in {c["name"] for c in sa.inspect(store.engine).get_columns("audit_events")}


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
