"""The person-house part of the demo world (一标三实) and the registry's filters, in-process."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from stdnum.cn import ric

from demoworld.person_house import GridError, PersonHouseRegistry, ScopedCollection, parse_grids
from demoworld.world import (
    DEFAULT_SEED,
    GRID_CODE,
    World,
    build_identities,
    build_world,
    grid_code,
    village_of_grid,
)

WORLD: World = build_world()
A = WORLD.village_a


def test_same_seed_same_person_house_data() -> None:
    again = build_world(DEFAULT_SEED)
    assert again.to_json() == WORLD.to_json()
    assert (again.grids, again.addresses, again.houses, again.occupants) == (
        WORLD.grids,
        WORLD.addresses,
        WORLD.houses,
        WORLD.occupants,
    )


def test_every_committee_has_three_to_five_consecutively_numbered_grids() -> None:
    for committee in WORLD.committees:
        codes = [g.code for g in WORLD.grids_of(committee.code)]
        assert 3 <= len(codes) <= 5
        assert codes == [f"{committee.code}-G{n:02d}" for n in range(1, len(codes) + 1)]
        assert all(GRID_CODE.fullmatch(c) and village_of_grid(c) == committee.code for c in codes)


def test_every_grid_has_houses_and_every_house_sits_in_its_villages_grid() -> None:
    houses_per_grid = Counter(h.grid_code for h in WORLD.houses)
    assert set(houses_per_grid) == {g.code for g in WORLD.grids}
    for house in WORLD.houses:
        assert village_of_grid(house.grid_code) == house.village_code


def test_one_house_per_household_owned_by_its_head() -> None:
    households = {r.household_no for r in WORLD.residents}
    assert len(WORLD.houses) == len(households)
    residents = {r.id: r for r in WORLD.residents}
    heads = {o.house_id: residents[o.resident_id] for o in WORLD.occupants if o.relation == "户主"}
    for house in WORLD.houses:
        head = heads[house.id]
        assert (house.owner_name, house.owner_id_number, house.address) == (
            head.name,
            head.id_number,
            head.address,
        )


def test_every_resident_occupies_exactly_one_house_in_their_village() -> None:
    houses = {h.id: h for h in WORLD.houses}
    by_resident = Counter(o.resident_id for o in WORLD.occupants if o.resident_id)
    assert set(by_resident) == {r.id for r in WORLD.residents} and set(by_resident.values()) == {1}
    residents = {r.id: r for r in WORLD.residents}
    for occupant in WORLD.occupants:
        house = houses[occupant.house_id]
        assert (occupant.village_code, occupant.grid_code) == (house.village_code, house.grid_code)
        if occupant.resident_id:
            resident = residents[occupant.resident_id]
            assert (occupant.name, occupant.id_number, occupant.mobile) == (
                resident.name,
                resident.id_number,
                resident.mobile,
            )


def test_tenants_are_occupants_registered_elsewhere_with_valid_id_numbers() -> None:
    tenants = [o for o in WORLD.occupants if o.relation == "租客"]
    assert tenants and all(o.resident_id == "" for o in tenants)
    assert all(ric.is_valid(o.id_number) for o in tenants)
    let = {h.id for h in WORLD.houses if h.house_use == "自住兼出租"}
    assert {o.house_id for o in tenants} == let
    ids = [o.id_number for o in WORLD.occupants]
    assert len(set(ids)) == len(ids)


def test_standard_addresses_are_the_houses_places() -> None:
    codes = {a.code: a for a in WORLD.addresses}
    for house in WORLD.houses:
        address = codes[house.address_code]
        assert (address.address, address.grid_code) == (house.address, house.grid_code)


def test_ids_are_opaque_and_unique() -> None:
    for prefix, ids in (("H", [h.id for h in WORLD.houses]), ("P", [o.id for o in WORLD.occupants])):
        assert all(re.fullmatch(rf"{prefix}[0-9a-f]{{8}}", i) for i in ids)
        assert len(set(ids)) == len(ids)


def test_reprs_show_no_personal_data() -> None:
    house, occupant = WORLD.houses[0], WORLD.occupants[0]
    assert house.owner_name not in repr(house) and house.owner_id_number not in repr(house)
    assert occupant.name not in repr(occupant) and occupant.id_number not in repr(occupant)


@pytest.mark.parametrize(
    ("username", "grids"),
    [
        ("grid_a1", (f"{A}-G01", f"{A}-G02")),
        ("grid_a2", (f"{A}-G03",)),
        ("cadre_a", ()),
    ],
)
def test_grid_assignments_of_the_demo_identities(username: str, grids: tuple[str, ...]) -> None:
    identity = WORLD.identity(username)
    assert identity.grids == grids
    assert identity.org == A
    assert set(grids) <= {g.code for g in WORLD.grids_of(A)}
    assert next(i for i in build_identities() if i.username == username).grids == grids


def test_the_person_house_department_has_its_stewards_and_admin() -> None:
    staff = {
        i.username: (i.role, i.department) for i in WORLD.identities if i.department == "public_security"
    }
    assert staff == {
        "ps_steward": ("data_steward", "public_security"),
        "ps_steward2": ("data_steward", "public_security"),
        "ps_sysadmin": ("system_admin", "public_security"),
    }


@pytest.mark.parametrize(
    ("village", "number", "code"),
    [(A, 1, f"{A}-G01"), (A, 10, f"{A}-G10"), ("310151101001", 99, "310151101001-G99")],
)
def test_grid_code_format(village: str, number: int, code: str) -> None:
    assert grid_code(village, number) == code


@pytest.mark.parametrize(("village", "number"), [(A, 0), (A, 100), ("310151101000", 1)])
def test_grid_code_refuses_what_is_not_a_grid(village: str, number: int) -> None:
    with pytest.raises(ValueError):
        grid_code(village, number)


# --- the registry's filters ------------------------------------------------------------------------------

REGISTRY = PersonHouseRegistry(
    {
        "houses": ScopedCollection([h.to_dict() for h in WORLD.houses]),
        "occupants": ScopedCollection([o.to_dict() for o in WORLD.occupants]),
    }
)


@pytest.mark.parametrize(
    ("prefixes", "grids", "expected_grids"),
    [
        ((A,), None, {g.code for g in WORLD.grids_of(A)}),
        ((A,), (f"{A}-G01", f"{A}-G02"), {f"{A}-G01", f"{A}-G02"}),
        ((A,), (f"{A}-G03",), {f"{A}-G03"}),
        ((WORLD.village_b,), (f"{A}-G01",), set()),  # both filters apply
        (("310151101",), (f"{A}-G01",), {f"{A}-G01"}),
    ],
)
@pytest.mark.parametrize("collection", ["houses", "occupants"])
def test_collections_answer_the_intersection_of_village_and_grid_filters(
    collection: str,
    prefixes: tuple[str, ...],
    grids: tuple[str, ...] | None,
    expected_grids: set[str],
) -> None:
    records = REGISTRY.collections[collection].in_scope(prefixes, grids)
    assert {r["grid_code"] for r in records} == expected_grids
    assert [r["id"] for r in records] == sorted(r["id"] for r in records)
    source = WORLD.houses if collection == "houses" else WORLD.occupants
    assert len(records) == sum(1 for r in source if r.grid_code in expected_grids)


def test_get_answers_none_for_another_grid_of_the_same_village() -> None:
    houses = REGISTRY.collections["houses"]
    other = WORLD.houses_in([f"{A}-G03"])[0]
    assert houses.get(other.id, (A,), (f"{A}-G01",)) is None
    assert houses.get(other.id, (A,), (f"{A}-G03",)) == other.to_dict()
    assert houses.get(other.id, (A,), None) == other.to_dict()


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ([], None),
        ([f"{A}-G02", f"{A}-G01", f"{A}-G02"], (f"{A}-G01", f"{A}-G02")),
        ([f" {A}-G03 "], (f"{A}-G03",)),
    ],
)
def test_parse_grids(raw: list[str], parsed: tuple[str, ...] | None) -> None:
    assert parse_grids(raw) == parsed


@pytest.mark.parametrize("bad", [f"{A}-G1", f"{A}-G00", A, "310151101000-G01", f"{A}-G01;drop", ""])
def test_parse_grids_refuses_anything_else(bad: str) -> None:
    with pytest.raises(GridError):
        parse_grids([f"{A}-G01", bad])
