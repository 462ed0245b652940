"""The demo world: deterministic, well-formed identifiers, and the shape the rest of the suite relies on."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum.cn import ric, uscc

from demoworld.world import (
    COMMITTEE_USCC_PREFIX,
    DEFAULT_SEED,
    World,
    build_world,
    gb11714_check_character,
    level_of,
    normalise_division_code,
    significant_prefix,
)

REPO = Path(__file__).resolve().parents[2]
MOBILE = re.compile(r"^1[3-9]\d{9}$")
PHONE_IN_TEXT = re.compile(r"1[3-9]\d{9}")
ID_IN_TEXT = re.compile(r"\d{17}[\dX]")


@pytest.fixture(scope="module")
def world() -> World:
    return build_world()


def test_same_seed_gives_byte_identical_world(world: World) -> None:
    assert build_world(DEFAULT_SEED).to_json() == world.to_json()


def test_world_does_not_depend_on_process_hash_seed(world: World) -> None:
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-m", "demoworld", "world"], cwd=REPO, env=env, capture_output=True, check=True
    ).stdout
    assert hashlib.sha256(out.strip()).hexdigest() == hashlib.sha256(world.to_json().encode()).hexdigest()


def test_another_seed_gives_another_world(world: World) -> None:
    other = build_world(DEFAULT_SEED + 1)
    assert {r.id_number for r in other.residents} != {r.id_number for r in world.residents}


def test_tree_is_province_city_county_townships_committees(world: World) -> None:
    levels = [d.level for d in world.divisions]
    assert levels.count("province") == levels.count("city") == levels.count("county") == 1
    assert levels.count("township") == 3
    for township in (d for d in world.divisions if d.level == "township"):
        assert 3 <= len(world.children_of(township.code)) <= 4


def test_every_division_code_is_twelve_digits_under_its_parent(world: World) -> None:
    for division in world.divisions:
        assert re.fullmatch(r"\d{12}", division.code)
        assert level_of(division.code) == division.level
        if division.parent is not None:
            assert division.code.startswith(significant_prefix(division.parent))


@pytest.mark.parametrize(
    ("kind", "vvv_range"),
    [("community", range(1, 200)), ("village", range(200, 400))],
)
def test_committee_codes_follow_the_statistics_numbering(world: World, kind: str, vvv_range: range) -> None:
    committees = [d for d in world.committees if d.kind == kind]
    assert committees
    assert all(int(d.code[9:]) in vvv_range for d in committees)


def test_every_committee_has_a_valid_unified_social_credit_code(world: World) -> None:
    assert world.committees
    for committee in world.committees:
        code = committee.credit_code
        assert code is not None
        assert uscc.validate(code) == code
        assert code.startswith(COMMITTEE_USCC_PREFIX + committee.code[:6])
        assert gb11714_check_character(code[8:16]) == code[16]
    assert len({d.credit_code for d in world.committees}) == len(world.committees)


def test_only_committees_carry_credit_codes(world: World) -> None:
    assert all(d.credit_code is None for d in world.divisions if d.level != "village")


@pytest.mark.parametrize(
    ("body", "check"),
    # GB 11714 examples: 'D2143569' -> 'X' is the standard's worked example; the rest computed by hand.
    [("D2143569", "X"), ("00000000", "0"), ("10000000", "8")],
)
def test_gb11714_check_character(body: str, check: str) -> None:
    assert gb11714_check_character(body) == check


def test_every_id_number_is_valid_and_matches_the_birth_date(world: World) -> None:
    for resident in world.residents:
        assert ric.is_valid(resident.id_number)
        assert ric.get_birth_date(resident.id_number).isoformat() == resident.birth_date
    assert len({r.id_number for r in world.residents}) == len(world.residents)


def test_mobiles_are_eleven_digit_mainland_numbers(world: World) -> None:
    assert all(MOBILE.fullmatch(r.mobile) for r in world.residents)


def test_every_committee_has_25_to_40_residents(world: World) -> None:
    for committee in world.committees:
        assert 25 <= len(world.residents_of(committee.code)) <= 40


def test_villages_a_and_b_share_a_township_and_both_have_residents(world: World) -> None:
    a, b = world.division(world.village_a), world.division(world.village_b)
    assert a.kind == b.kind == "village"
    assert a.parent == b.parent
    assert world.residents_of(a.code) and world.residents_of(b.code)
    assert world.division(world.village_c).parent != a.parent


def test_resident_ids_are_stable_opaque_and_unique(world: World) -> None:
    assert all(re.fullmatch(r"R[0-9a-f]{8}", r.id) for r in world.residents)
    assert len({r.id for r in world.residents}) == len(world.residents)


def test_resident_fields_are_well_formed(world: World) -> None:
    for resident in world.residents:
        division = world.division(resident.village_code)
        township = world.division(division.parent or "")
        assert resident.address.startswith("上海市崇明区" + township.name)
        assert resident.dibao_status in {"在保", "停保", "未申请"}
        assert resident.household_no.startswith(resident.village_code[6:])


def test_remarks_sometimes_but_not_always_carry_a_relatives_pii(world: World) -> None:
    with_pii = [r for r in world.residents if PHONE_IN_TEXT.search(r.remark) or ID_IN_TEXT.search(r.remark)]
    share = len(with_pii) / len(world.residents)
    assert 0.1 < share < 0.3
    embedded_ids = [m.group() for r in with_pii for m in ID_IN_TEXT.finditer(r.remark)]
    assert embedded_ids
    assert all(ric.is_valid(n) for n in embedded_ids)


def test_repr_of_a_resident_shows_no_personal_data(world: World) -> None:
    resident = world.residents[0]
    text = repr(resident)
    assert resident.name not in text and resident.id_number not in text and resident.mobile not in text


@pytest.mark.parametrize(
    ("username", "role", "org", "department"),
    [
        ("cadre_a", "village_cadre", "310151101201", None),
        ("cadre_b", "village_cadre", "310151101202", None),
        ("cadre_c", "village_cadre", "310151102201", None),
        ("town_officer", "township_officer", "310151101000", None),
        ("county_officer", "county_officer", "310151000000", None),
        ("ca_steward", "data_steward", "310151000000", "civil_affairs"),
        ("ca_sysadmin", "system_admin", "310151000000", "civil_affairs"),
        ("supervisor", "supervisor", "310151000000", None),
        ("auditor", "auditor", "310151000000", None),
    ],
)
def test_demo_identities(world: World, username: str, role: str, org: str, department: str | None) -> None:
    identity = world.identity(username)
    assert (identity.role, identity.org, identity.department) == (role, org, department)
    assert identity.user_id.startswith("u-") and identity.user_id != username


def test_identities_sit_where_the_story_needs_them(world: World) -> None:
    assert world.identity("cadre_a").org == world.village_a
    assert world.identity("cadre_b").org == world.village_b
    assert world.division(world.village_a).parent == world.identity("town_officer").org
    assert len({i.user_id for i in world.identities}) == len(world.identities)


@pytest.mark.parametrize(
    ("code", "prefix", "level"),
    [
        ("000000000000", "", None),
        ("31", "31", "province"),
        ("310000000000", "31", "province"),
        ("3101", "3101", "city"),
        ("310151", "310151", "county"),
        ("310151101", "310151101", "township"),
        ("310151101000", "310151101", "township"),
        ("310151101201", "310151101201", "village"),
        ("310151101001", "310151101001", "village"),
    ],
)
def test_significant_prefix(code: str, prefix: str, level: str | None) -> None:
    assert significant_prefix(code) == prefix
    assert level_of(code) == level


@pytest.mark.parametrize("bad", ["", "31x", "3101511012011", "３１"])
def test_division_code_must_be_ascii_digits(bad: str) -> None:
    with pytest.raises(ValueError):
        normalise_division_code(bad)


@given(st.from_regex(r"\A[0-9]{1,12}\Z"))
def test_significant_prefix_pads_back_to_the_code(code: str) -> None:
    prefix = significant_prefix(code)
    assert prefix.ljust(12, "0") == normalise_division_code(code)
    assert len(prefix) in {0, 2, 4, 6, 9, 12}
