"""The burden view on a small fixed world: which admitted systems reach each village, what they demand,
and what a new system would make villages type again (智能合并、数据预填)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from admission import (
    SystemRegistration,
    SystemStatus,
    district_report,
    field_overlap,
    village_burden,
)
from admission.burden import SUGGESTION_EN

from .conftest import make_registration

TOWNSHIP_1 = "310151101000"
VILLAGE_A = "310151101001"
VILLAGE_B = "310151101002"
VILLAGE_C = "310151101003"
TOWNSHIP_2 = "310151102000"
VILLAGE_D = "310151102001"
VILLAGES = (VILLAGE_A, VILLAGE_B, VILLAGE_C, VILLAGE_D)

APPROVED = SystemStatus.APPROVED


def system(
    system_id: str,
    reaches: tuple[str, ...],
    fields: tuple[str, ...],
    status: SystemStatus = APPROVED,
    **kw: object,
) -> SystemRegistration:
    return make_registration(system_id, reaches=reaches, collects_fields=fields, status=status, **kw)


WORLD = (
    system(
        "civil-affairs-registry",
        (TOWNSHIP_1,),
        ("residents.name", "residents.id_number", "residents.mobile", "residents.address"),
        department="civil_affairs",
    ),
    system("health-visits", (VILLAGE_A,), ("residents.name", "residents.mobile", "health.visit_date")),
    # Stops at the township: it does not burden villages.
    system("street-lamps", (TOWNSHIP_1,), ("residents.mobile", "lamp.id"), reaches_villages=False),
    # Not admitted: a pending or a suspended system burdens no one yet.
    system("pending-survey", (TOWNSHIP_1,), ("residents.mobile",), status=SystemStatus.SUBMITTED),
    system("suspended-app", (VILLAGE_A,), ("residents.name",), status=SystemStatus.SUSPENDED),
    # Another township: shares no village with the new system below.
    system("township2-census", (TOWNSHIP_2,), ("residents.mobile", "housing.type")),
)

NEW = system(
    "elderly-care",
    (VILLAGE_A, VILLAGE_B),
    (
        "residents.name",
        "residents.mobile",
        "residents.subsistence_status",
        "elderly.care_level",
        "housing.type",
    ),
    status=SystemStatus.SUBMITTED,
)
BACKFLOW = ("residents.subsistence_status", "residents.household_number")


def test_overlaps_of_a_new_registration() -> None:
    overlaps = field_overlap(NEW, WORLD, BACKFLOW)
    assert [(o.field, o.collected_by, o.in_backflow) for o in overlaps] == [
        ("residents.mobile", ("civil-affairs-registry", "health-visits"), False),
        ("residents.name", ("civil-affairs-registry", "health-visits"), False),
        ("residents.subsistence_status", (), True),
    ]
    assert {o.suggestion_en for o in overlaps} == {"reuse or prefill instead of collecting again"}
    assert all("预填" in o.suggestion_zh and "智能合并" in o.suggestion_zh for o in overlaps)


def test_equivalent_refs_match_through_the_catalog_mapping() -> None:
    tagged = system("door-to-door", (VILLAGE_B,), ("phone",))
    equivalents = {"residents.mobile": "phone"}
    overlaps = field_overlap(NEW, (*WORLD, tagged), (), equivalents=equivalents)
    by_field = {o.field: o.collected_by for o in overlaps}
    assert by_field["phone"] == ("civil-affairs-registry", "door-to-door", "health-visits")


def test_a_system_never_overlaps_itself() -> None:
    admitted_self = NEW.replace(status=APPROVED)
    assert field_overlap(NEW, (admitted_self,), ()) == []


@pytest.mark.parametrize(
    ("village", "systems", "fields"),
    [
        (
            VILLAGE_A,
            ("civil-affairs-registry", "health-visits"),
            (
                "health.visit_date",
                "residents.address",
                "residents.id_number",
                "residents.mobile",
                "residents.name",
            ),
        ),
        (
            "310151101002",
            ("civil-affairs-registry",),
            ("residents.address", "residents.id_number", "residents.mobile", "residents.name"),
        ),
        ("310151102001", ("township2-census",), ("housing.type", "residents.mobile")),
        ("310151103001", (), ()),
        (
            "310151101",
            ("civil-affairs-registry",),
            ("residents.address", "residents.id_number", "residents.mobile", "residents.name"),
        ),
    ],
)
def test_village_burden(village: str, systems: tuple[str, ...], fields: tuple[str, ...]) -> None:
    burden = village_burden(WORLD, village)
    n_systems, fields_demanded = burden
    assert (n_systems, burden.systems, fields_demanded) == (len(systems), systems, fields)


def test_district_report() -> None:
    report = district_report(WORLD, VILLAGES)
    assert report.systems_per_village == {VILLAGE_A: 2, VILLAGE_B: 1, VILLAGE_C: 1, VILLAGE_D: 1}
    assert [(d.field, d.systems, d.villages) for d in report.duplicate_fields] == [
        ("residents.mobile", ("civil-affairs-registry", "health-visits"), (VILLAGE_A,)),
        ("residents.name", ("civil-affairs-registry", "health-visits"), (VILLAGE_A,)),
    ]
    as_dict = report.as_dict()
    assert as_dict["fields_demanded_more_than_once"][0]["field"] == "residents.mobile"


def test_national_reach_covers_every_village() -> None:
    national = system("national-app", ("000000000000",), ("residents.mobile",))
    assert all(village_burden((national,), v).n_systems == 1 for v in VILLAGES)


field_names = st.sampled_from(
    ["residents.name", "residents.mobile", "residents.address", "health.visit_date", "housing.type", "phone"]
)
reach_codes = st.sampled_from([TOWNSHIP_1, TOWNSHIP_2, *VILLAGES, "310151000000"])
statuses = st.sampled_from(list(SystemStatus))


@st.composite
def registrations(draw: st.DrawFn) -> SystemRegistration:
    return system(
        f"sys-{draw(st.integers(0, 10**6))}",
        tuple(draw(st.lists(reach_codes, min_size=1, max_size=3))),
        tuple(draw(st.lists(field_names, max_size=4))),
        status=draw(statuses),
        reaches_villages=True,
    )


worlds = st.lists(registrations(), max_size=6, unique_by=lambda r: r.system_id)


@given(worlds, registrations(), st.lists(field_names, max_size=3))
def test_overlap_laws(world: list[SystemRegistration], new: SystemRegistration, backflow: list[str]) -> None:
    overlaps = field_overlap(new, world, backflow)
    assert [o.field for o in overlaps] == sorted({o.field for o in overlaps})
    for o in overlaps:
        assert o.field in new.collects_fields
        assert o.collected_by or o.in_backflow
        assert o.suggestion_en == SUGGESTION_EN
        for sid in o.collected_by:
            assert any(r.system_id == sid and r.is_admitted and o.field in r.collects_fields for r in world)
    # Systems that are not admitted never change the answer.
    assert field_overlap(new, [r for r in world if r.is_admitted], backflow) == overlaps


@given(worlds, st.sampled_from(VILLAGES))
def test_village_burden_laws(world: list[SystemRegistration], village: str) -> None:
    burden = village_burden(world, village)
    assert burden.n_systems == len(burden.systems) == len(set(burden.systems))
    assert set(burden.fields_demanded) == {f for f in burden.demand}
    assert all(set(s) <= set(burden.systems) for s in burden.demand.values())
    assert burden == village_burden([r for r in world if r.is_admitted], village)
