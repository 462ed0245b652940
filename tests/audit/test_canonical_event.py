"""The hand-written RFC 8785 text of an event body is the reference encoding, field by field.

``audit.events.canonical_text_and_time`` spells the body out instead of running a generic encoder; these
properties hold it to ``rfc8785.dumps(event.to_body())`` (the reference implementation of RFC 8785) for
every optional token present or absent, every list empty or not, and actors and details with control
characters, CJK, non-BMP characters and nesting.
"""

from __future__ import annotations

from typing import Any

import rfc8785
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from audit.events import canonical_text_and_time
from tests.audit.helpers import PSEUDONYMIZER, make_event

_TOKENS = st.from_regex(r"[A-Za-z0-9_.:@/-]{1,12}", fullmatch=True)
_OPTIONAL = st.none() | _TOKENS
# Control characters (RFC 8785 §3.2.2.2 short and \u00xx forms), quotes, backslash, CJK, emoji (non-BMP).
_TEXT = st.text(
    alphabet=st.sampled_from(["\x00", "\x08", "\t", "\n", "\x0c", "\r", "\x1f", "\x7f", '"', "\\", "/"])
    | st.sampled_from(["村", "民", "审", "计", "\u2028", "\ufeff", "😀", "𠀀"])
    | st.characters(codec="utf-8"),
    max_size=10,
)
_LEAVES = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | _TEXT
_DETAILS = st.dictionaries(
    _TEXT,
    st.recursive(
        _LEAVES,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
        max_leaves=6,
    ),
    max_size=3,
)


@settings(max_examples=400, deadline=None)
@given(
    actor=_TEXT.filter(bool),
    optional=st.fixed_dictionaries(
        {
            "actor_org": _OPTIONAL,
            "scenario": _OPTIONAL,
            "dataset": _OPTIONAL,
            "reason": _OPTIONAL,
            "trace_id": _OPTIONAL,
            "request_id": _OPTIONAL,
        }
    ),
    roles=st.lists(_TOKENS, max_size=3),
    fields=st.lists(_TOKENS, max_size=3),
    subject_refs=st.lists(st.integers(0, 5), max_size=3),
    record_refs=st.lists(st.integers(0, 5), max_size=3),
    details=_DETAILS,
)
def test_event_text_is_the_rfc8785_reference_encoding(
    actor: str,
    optional: dict[str, str | None],
    roles: list[str],
    fields: list[str],
    subject_refs: list[int],
    record_refs: list[int],
    details: dict[str, Any],
) -> None:
    try:
        event = make_event(
            1,
            actor=actor,
            actor_roles=tuple(roles),
            fields=tuple(fields),
            subject_refs=tuple(PSEUDONYMIZER.ref(f"s{k}") for k in subject_refs),
            record_refs=tuple(PSEUDONYMIZER.ref(f"r{k}") for k in record_refs),
            details=details,
            **optional,
        )
    except ValueError:
        assume(False)  # refused at construction (e.g. text that looks like personal data)
        return
    text, stamp = canonical_text_and_time(event)
    assert text.encode("utf-8") == bytes(rfc8785.dumps(event.to_body()))
    assert stamp == event.to_body()["occurred_at"]


def test_every_optional_token_absent() -> None:
    absent = ("actor_org", "scenario", "dataset", "reason", "trace_id", "request_id")
    empty = ("actor_roles", "fields", "subject_refs", "record_refs")
    event = make_event(2, **dict.fromkeys(absent), **dict.fromkeys(empty, ()), details={})
    text, _ = canonical_text_and_time(event)
    assert text.encode("utf-8") == bytes(rfc8785.dumps(event.to_body()))
    assert '"actor_org":null' in text and '"fields":[]' in text and '"details":{}' in text
