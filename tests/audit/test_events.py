"""AuditEvent: what an event may hold (PIPL Art. 56 processing record, residents only as refs)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import rfc8785
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import DateTime
from sqlalchemy.dialects import sqlite

from audit import AuditEvent, Outcome, canonical_json, looks_like_personal_data
from audit.events import format_timestamp
from audit.log import prepare
from tests.audit.helpers import PSEUDONYMIZER, make_event

REF = PSEUDONYMIZER.ref("resident-1")

INVALID: list[tuple[str, dict[str, Any]]] = [
    ("naive datetime", {"occurred_at": datetime(2024, 5, 1, 8, 0)}),
    ("plain subject id", {"subject_refs": ("110101199003074477",)}),
    ("ref without key id", {"subject_refs": (REF.split(":")[1],)}),
    ("upper-case hex ref", {"subject_refs": (REF.upper(),)}),
    ("plain record id", {"record_refs": ("record-7",)}),
    ("refs as one string", {"subject_refs": REF}),
    ("unknown outcome", {"outcome": "maybe"}),
    ("kind without namespace", {"kind": "read"}),
    ("negative record count", {"record_count": -1}),
    ("bool record count", {"record_count": True}),
    ("empty actor", {"actor": ""}),
    ("actor is a mobile number", {"actor": "13912345678"}),
    ("reason with spaces", {"reason": "not a code"}),
    ("details with ID number", {"details": {"note": "证件号 11010519491231002X"}}),
    ("details with mobile", {"details": {"contacts": ["call +86 139 1234 5678", "13912345678"]}}),
    ("details with NaN", {"details": {"x": float("nan")}}),
    ("details with huge int", {"details": {"x": 2**60}}),
    ("details with non-string key", {"details": {1: "x"}}),
    ("details with an object", {"details": {"x": object()}}),
    ("two refs in one item", {"subject_refs": (f"{REF}\n{REF}",)}),
    ("a field named by a mobile", {"fields": ("name", "13912345678")}),
    ("a role with a newline", {"actor_roles": ("village\ncadre",)}),
    ("an empty field name", {"fields": ("name", "")}),
    ("a scenario that is an ID number", {"scenario": "11010519491231002X"}),
    ("a role that is not a string", {"actor_roles": ("village_cadre", 7)}),
]


@pytest.mark.parametrize(("case", "overrides"), INVALID, ids=[c for c, _ in INVALID])
def test_invalid_events_are_refused(case: str, overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        make_event(1, **overrides)


@pytest.mark.parametrize(
    ("text", "personal"),
    [
        ("11010519491231002X", True),  # GB 11643 check character valid
        ("110105194912310021", False),  # wrong check digit: not an ID number
        ("13912345678", True),
        ("+86 13912345678", True),
        ("12912345678", False),  # no such mobile prefix
        ("330102001001", False),  # a 12-digit division code
        ("4bf92f3577b34da6a3ce929d13912345", False),  # digits inside a hex trace id
        (REF, False),
    ],
)
def test_personal_data_tripwire(text: str, personal: bool) -> None:
    assert looks_like_personal_data(text) is personal


def test_timestamps_are_normalised_to_utc() -> None:
    beijing = timezone(timedelta(hours=8))
    event = make_event(1, occurred_at=datetime(2024, 5, 1, 16, 0, tzinfo=beijing))
    assert event.occurred_at == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    assert event.to_body()["occurred_at"] == "2024-05-01T08:00:00.000000Z"


def test_body_round_trips_and_is_canonical() -> None:
    event = make_event(4)
    body = canonical_json(event.to_body())
    again = AuditEvent.from_body(json.loads(body))
    assert again == event
    assert canonical_json(again.to_body()) == body
    assert body == canonical_json(json.loads(body))


def test_details_cannot_change_after_construction() -> None:
    details: dict[str, Any] = {"grant": "g-1", "pages": [1, 2]}
    event = make_event(1, details=details)
    details["grant"] = "g-2"
    details["pages"].append(3)
    assert event.to_body()["details"] == {"grant": "g-1", "pages": [1, 2]}
    with pytest.raises(TypeError):
        event.details["grant"] = "g-3"  # type: ignore[index]


def test_outcome_accepts_its_string_value() -> None:
    assert make_event(1, outcome="refused").outcome is Outcome.REFUSED


_TOKENS = st.from_regex(r"[A-Za-z0-9_.:@/-]{1,12}", fullmatch=True)
_DETAILS = st.dictionaries(
    st.text(max_size=5),
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    max_size=3,
)
_WHEN = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))]
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    actor=st.text(min_size=1, max_size=12),
    org=st.none() | _TOKENS,
    roles=st.lists(_TOKENS, max_size=2),
    fields=st.lists(_TOKENS, max_size=3),
    refs=st.lists(st.integers(0, 5), max_size=3),
    count=st.integers(0, 2**53 - 1),
    details=_DETAILS,
    when=_WHEN,
)
def test_fast_encodings_equal_their_definitions(
    actor: str,
    org: str | None,
    roles: list[str],
    fields: list[str],
    refs: list[int],
    count: int,
    details: dict[str, Any],
    when: datetime,
) -> None:
    """The appender's shortcuts (body text, timestamp, SQLite time column) are the reference encodings:
    RFC 8785 via the ``rfc8785`` package over ``to_body()``, strftime, and SQLAlchemy's DateTime text."""
    try:
        event = make_event(
            1,
            actor=actor,
            actor_org=org,
            actor_roles=tuple(roles),
            fields=tuple(fields),
            subject_refs=tuple(PSEUDONYMIZER.ref(f"r{k}") for k in refs),
            record_count=count,
            details=details,
            occurred_at=when,
        )
    except ValueError:
        assume(False)
        return
    assert event.canonical_body() == bytes(rfc8785.dumps(event.to_body()))
    utc = event.occurred_at
    if utc.year >= 1000:
        assert format_timestamp(utc) == utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    prepared = prepare(event)
    assert prepared.body == event.canonical_body()
    assert prepared.sqlite_time == DateTime().dialect_impl(sqlite.dialect()).bind_processor(sqlite.dialect())(
        utc
    )  # type: ignore[misc]
    assert prepared.subject_refs == tuple(dict.fromkeys(event.subject_refs))


def test_actor_with_a_lone_surrogate_takes_the_reference_path() -> None:
    event = make_event(1, actor="x\ud800")  # valid as an event; not representable as UTF-8 JSON
    with pytest.raises(ValueError):
        event.canonical_body()
    with pytest.raises(ValueError):
        prepare(event)


_PIECES = st.text(alphabet="0139ab_X:\n -+", max_size=14)


@settings(max_examples=300)
@given(
    fields=st.lists(_PIECES, max_size=4),
    roles=st.lists(_PIECES, max_size=3),
    actor=_PIECES,
    scenario=st.one_of(st.none(), _PIECES),
    refs=st.lists(
        st.sampled_from([REF, REF.upper(), f"{REF}\n{REF}", REF[:-1], "k1:" + "0" * 64]), max_size=3
    ),
)
def test_the_one_pass_checks_agree_with_the_field_by_field_ones(
    fields: list[str], roles: list[str], actor: str, scenario: str | None, refs: list[str]
) -> None:
    """AuditEvent checks whole lists in one regex pass; it must accept exactly what the field-by-field
    checks accept (which stay the definition, and name the field at fault)."""
    from unittest import mock

    def outcome() -> str:
        try:
            make_event(1, fields=fields, actor_roles=roles, actor=actor, scenario=scenario, subject_refs=refs)
        except ValueError as exc:
            return str(exc)
        return "ok"

    fast = outcome()
    with mock.patch.object(AuditEvent, "_valid_at_once", lambda self: False):
        slow = outcome()
    assert fast == slow
