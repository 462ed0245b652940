"""AuditEvent: what an event may hold (PIPL Art. 56 processing record, residents only as refs)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from audit import AuditEvent, Outcome, canonical_json, looks_like_personal_data
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
