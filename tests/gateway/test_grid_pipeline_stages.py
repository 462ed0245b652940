"""The data path's grid parts alone: the scope pushed down to a registry, the re-check of the rows it
returns by micro-grid, and which datasets the catalog keeps by grid (the refusal of the others to a grid
worker is the policy engine's: tests/policies/test_grid_scope.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.pipeline import pushdown_scope, recheck_scope, record_subject_refs
from gateway.runtime import dataset_view
from masking import load_catalog

A, B = "310151101201", "310151101202"
TOWN = "310151101000"
A1, A2, A3, A10 = f"{A}-G01", f"{A}-G02", f"{A}-G03", f"{A}-G10"
B1 = f"{B}-G01"
CATALOG = load_catalog()


@pytest.mark.parametrize(
    ("row_scope", "org_prefixes", "grids"),
    [
        ((A,), (A,), ()),
        ((TOWN,), (TOWN,), ()),
        ((A1, A2), (A,), (A1, A2)),  # the grids' village is the jurisdiction every registry needs
        ((A1, B1), (A, B), (A1, B1)),
    ],
)
def test_pushdown_scope(
    row_scope: tuple[str, ...], org_prefixes: tuple[str, ...], grids: tuple[str, ...]
) -> None:
    assert pushdown_scope(row_scope) == (org_prefixes, grids)


@pytest.mark.parametrize(
    ("row_scope", "village", "grid", "kept"),
    [
        ((A1, A2), A, A1, True),
        ((A1, A2), A, A2, True),
        ((A1, A2), A, A3, False),  # another grid of the same village
        ((A1,), A, A10, False),  # G01 is no prefix of G10
        ((A1,), B, B1, False),  # the same grid number in another village
        ((A1,), A, None, False),  # a row without a grid code is never a grid worker's
        ((A1,), A, ["x"], False),  # nor one whose grid code is not text
        ((A1,), A, f"{A}-G1", False),
        ((A,), A, A3, True),  # the village cadre: every grid of her village
        ((TOWN,), A, A3, True),
        ((B,), A, A1, False),
    ],
)
def test_recheck_scope_by_grid(row_scope: tuple[str, ...], village: str, grid: object, kept: bool) -> None:
    records = [{"id": "H1", "village_code": village, "grid_code": grid}]
    result, dropped = recheck_scope(records, row_scope, "village_code", "grid_code")
    assert (len(result), dropped) == ((1, 0) if kept else (0, 1))


def test_a_grid_scope_on_a_dataset_without_grid_field_keeps_nothing() -> None:
    records = [{"id": "R1", "village_code": A}]
    assert recheck_scope(records, (A1,), "village_code", None) == ([], 1)


grid_numbers = st.integers(min_value=1, max_value=99)


@given(st.sets(grid_numbers, min_size=1, max_size=5), st.lists(grid_numbers, max_size=30))
def test_recheck_keeps_exactly_the_rows_of_the_assigned_grids(assigned: set[int], rows: list[int]) -> None:
    scope = tuple(f"{A}-G{n:02d}" for n in sorted(assigned))
    records = [{"id": f"H{i}", "village_code": A, "grid_code": f"{A}-G{n:02d}"} for i, n in enumerate(rows)]
    kept, dropped = recheck_scope(records, scope, "village_code", "grid_code")
    assert [r["grid_code"] for r in kept] == [f"{A}-G{n:02d}" for n in rows if n in assigned]
    assert dropped == sum(1 for n in rows if n not in assigned)


@pytest.mark.parametrize(
    ("dataset", "grid_field"), [("houses", "grid_code"), ("occupants", "grid_code"), ("residents", None)]
)
def test_the_catalog_names_each_datasets_grid_field(dataset: str, grid_field: str | None) -> None:
    view = dataset_view(CATALOG.dataset(dataset))
    assert view is not None and view.grid_field == grid_field and view.org_field == "village_code"


def test_every_served_person_is_recorded_whatever_type_the_registry_sent_the_number_as() -> None:
    """A subject the event leaves out is an access a complaint never finds (the transparency list too)."""
    view = dataset_view(CATALOG.dataset("residents"))
    assert view is not None and view.subject_field == "id_number"
    records = [
        {"id_number": "31023019841206996x"},
        {"id_number": 310230198412069961},  # a JSON number
        {"id_number": ""},
        {"id_number": None},
        {},
    ]
    assert view.subject_values(records) == ["31023019841206996X", "310230198412069961"]


def test_each_record_is_sealed_with_its_own_resident_when_some_records_name_none() -> None:
    """The refs the event names skip records without a resident; the refs sealed into envelopes are one per
    record, so a record naming nobody must not shift her neighbours' refs onto the wrong records."""
    view = dataset_view(CATALOG.dataset("residents"))
    assert view is not None
    records = [{"id_number": ""}, {"id_number": "31023019841206996x"}, {}, {"id_number": 310230198412069961}]
    refs = [f"k1:{n}" for n in view.subject_values(records)]
    assert record_subject_refs(view, records, refs) == [
        None,
        "k1:31023019841206996X",
        None,
        "k1:310230198412069961",
    ]
    whole = records[1::2]
    assert record_subject_refs(view, whole, refs) == refs
