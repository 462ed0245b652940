"""Division codes: normalisation, levels, and jurisdiction as a prefix relation cut at segment
boundaries (docs/architecture.md)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.divisions import (
    ROOT,
    DivisionLevel,
    ancestors,
    covers,
    is_valid,
    level_of,
    normalize,
    parent_of,
    significant,
    split,
)


@pytest.mark.parametrize(
    ("code", "normalised", "level"),
    [
        ("000000000000", ROOT, DivisionLevel.NATIONAL),
        ("31", "310000000000", DivisionLevel.PROVINCE),
        ("3101", "310100000000", DivisionLevel.CITY),
        ("310151", "310151000000", DivisionLevel.COUNTY),
        ("310151000", "310151000000", DivisionLevel.COUNTY),  # trailing-zero township form
        ("310151000000", "310151000000", DivisionLevel.COUNTY),
        ("310151101", "310151101000", DivisionLevel.TOWNSHIP),
        ("310151101001", "310151101001", DivisionLevel.VILLAGE),
        ("310100", "310100000000", DivisionLevel.CITY),
        # Cities without counties (东莞): township directly below the city, county segment 00.
        ("441900003", "441900003000", DivisionLevel.TOWNSHIP),
        ("441900003021", "441900003021", DivisionLevel.VILLAGE),
    ],
)
def test_normalize_and_level(code: str, normalised: str, level: DivisionLevel) -> None:
    assert normalize(code) == normalised
    assert level_of(code) == level


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "3",
        "310",
        "3101510",  # 7 digits: not a level boundary
        "31015110100",  # 11 digits
        "3101511010011",  # 13 digits
        "31015110100a",
        " 310151101001",
        "310151101001 ",
        "３１０１５１",  # full-width digits
        "-31015110100",
        "001234000000",  # province 00 but not the root
    ],
)
def test_malformed_codes_raise(bad: str) -> None:
    assert not is_valid(bad)
    with pytest.raises(ValueError):
        normalize(bad)
    with pytest.raises(ValueError):
        covers(bad, "310151101001")
    with pytest.raises(ValueError):
        covers("310151101001", bad)


def test_non_string_is_rejected() -> None:
    with pytest.raises(ValueError):
        normalize(310151)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("scope", "target", "expected"),
    [
        (ROOT, "310151101001", True),
        (ROOT, ROOT, True),
        ("310151101001", ROOT, False),
        ("31", "310151101001", True),
        ("310151", "310151101001", True),
        ("310151", "310151000000", True),
        ("310151000000", "310151", True),
        ("310151101", "310151101001", True),
        ("310151101001", "310151101001", True),
        ("310151101001", "310151101", False),
        ("310151101001", "310151101002", False),  # sibling villages
        ("310151101", "310151102001", False),  # village of a sibling township
        # Naive zero-stripping would make these match; segment-aligned cutting must not:
        ("310110", "310115000000", False),  # county 310110 vs sibling county 310115
        ("310151100", "310151101001", False),  # township 100 vs village of township 101
        ("310151101010", "310151101011", False),  # village 010 vs sibling village 011
        ("3101", "310151101001", True),
        ("3102", "310151101001", False),
        ("441900", "441900003021", True),
        ("441900003", "441900003021", True),
        ("441900003", "441900004001", False),
    ],
)
def test_covers(scope: str, target: str, expected: bool) -> None:
    assert covers(scope, target) is expected


@pytest.mark.parametrize(
    ("code", "parent"),
    [
        (ROOT, None),
        ("31", ROOT),
        ("3101", "310000000000"),
        ("310151", "310100000000"),
        ("310151101", "310151000000"),
        ("310151101001", "310151101000"),
        ("441900003", "441900000000"),  # absent county level is skipped
    ],
)
def test_parent_of(code: str, parent: str | None) -> None:
    assert parent_of(code) == parent


def test_ancestors_of_a_village_are_six_levels_root_first() -> None:
    assert ancestors("310151101001") == (
        ROOT,
        "310000000000",
        "310100000000",
        "310151000000",
        "310151101000",
        "310151101001",
    )


# -- laws -----------------------------------------------------------------------------------------

_segments = st.tuples(
    st.integers(11, 99).map(lambda n: f"{n:02d}"),
    st.sampled_from(["00", "01", "02", "10", "19"]),
    st.sampled_from(["00", "01", "10", "51"]),
    st.sampled_from(["000", "001", "010", "100", "101"]),
    st.sampled_from(["000", "001", "010", "011", "100"]),
)
codes = st.one_of(st.just(ROOT), _segments.map("".join))


@given(codes)
def test_covers_is_reflexive_and_root_covers_all(code: str) -> None:
    assert covers(code, code)
    assert covers(ROOT, code)


@given(codes)
def test_every_ancestor_covers_and_parent_is_last_proper_ancestor(code: str) -> None:
    chain = ancestors(code)
    assert all(covers(a, code) for a in chain)
    assert len(chain) <= 6
    assert chain[-1] == normalize(code)
    assert parent_of(code) == (chain[-2] if len(chain) > 1 else None)


@given(codes, codes)
def test_covers_equals_membership_in_ancestors(scope: str, target: str) -> None:
    assert covers(scope, target) == (normalize(scope) in ancestors(target))


@given(codes, codes)
def test_a_scope_covers_exactly_the_codes_its_significant_form_prefixes(scope: str, target: str) -> None:
    # What GrantIndex.entries relies on: the caller's significant form cut at the scope's length.
    full, sig = split(target)
    assert (full, sig) == (normalize(target), significant(target))
    key = significant(scope)
    assert covers(scope, target) == (len(key) <= len(sig) and sig[: len(key)] == key)


@given(codes, codes, codes)
def test_covers_is_transitive(a: str, b: str, c: str) -> None:
    if covers(a, b) and covers(b, c):
        assert covers(a, c)


@given(codes, codes)
def test_covers_is_antisymmetric(a: str, b: str) -> None:
    if covers(a, b) and covers(b, a):
        assert normalize(a) == normalize(b)


@given(codes)
def test_short_forms_at_each_level_normalise_to_the_same_code(code: str) -> None:
    cut = significant(code)
    if cut:
        assert normalize(cut) == normalize(code)
