"""canonical_json follows RFC 8785 (examples from the RFC's §3.2.2 and §3.2.3)."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from audit import canonical_json


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # RFC 8785 §3.2.2.3 number serialisation (ECMAScript shortest round trip).
        (
            {"numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001]},
            b'{"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27]}',
        ),
        # RFC 8785 §3.2.2.2 string escaping: only what JSON requires, lower-case \u00XX.
        (
            {"string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/"},
            '{"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'.encode(),
        ),
        # RFC 8785 §3.2.3 key order: by UTF-16 code units, so U+1F600 sorts before U+FB33.
        (
            {"\u20ac": 1, "\r": 2, "\ufb33": 3, "1": 4, "\U0001f600": 5, "\u0080": 6, "\u00f6": 7},
            '{"\\r":2,"1":4,"\u0080":6,"\u00f6":7,"\u20ac":1,"\U0001f600":5,"\ufb33":3}'.encode(),
        ),
        ({"b": [], "a": {"d": None, "c": True}}, b'{"a":{"c":true,"d":null},"b":[]}'),
    ],
)
def test_rfc8785_examples(value: object, expected: bytes) -> None:
    assert canonical_json(value) == expected


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 2**60, {1: "a"}, object()])
def test_unrepresentable_values_are_value_errors(value: object) -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": value})


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


@given(json_values)
def test_fast_path_is_byte_identical_to_the_reference_encoder(value: Any) -> None:
    try:
        reference = bytes(rfc8785.dumps(value))
    except rfc8785.CanonicalizationError:
        with pytest.raises(ValueError):
            canonical_json(value)
        return
    assert canonical_json(value) == reference


@pytest.mark.parametrize(
    "value",
    [
        {"\ue000": 1, "\U0001f600": 2},  # code-point order and UTF-16 order disagree here
        {"s": '\x00\x1f\x7f\u2028\u2029"\\/'},
        {"n": [0, -0, 2**53 - 1, -(2**53 - 1)]},
        {"f": [0.1, 1e21, 1e-7, -0.0]},
    ],
)
def test_fast_path_edge_cases_match_reference(value: Any) -> None:
    assert canonical_json(value) == bytes(rfc8785.dumps(value))
