"""Micro-grids (微网格) below the village: the jurisdiction relation on grid codes, and the row scope a
grid worker's decision carries."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies import AccessRequest, GrantIndex, PolicyEngine, Subject, covers
from policies.divisions import grid_village, is_grid

from .conftest import CADRE_A1, T0, TOWNSHIP_A, VILLAGE_A1, VILLAGE_A2, make_grant

EngineFactory = Callable[..., PolicyEngine]

G01 = f"{VILLAGE_A1}-G01"
G02 = f"{VILLAGE_A1}-G02"
G10 = f"{VILLAGE_A1}-G10"
OTHER_VILLAGE_G01 = f"{VILLAGE_A2}-G01"

# --- the relation ----------------------------------------------------------------------------------------

COVERS = [
    # (scope, target, covers?)
    (VILLAGE_A1, G01, True),  # a village covers its grids
    (VILLAGE_A1, G10, True),
    ("310151101", G01, True),  # ... and so does every level above it, in short form too
    (TOWNSHIP_A, G01, True),
    ("310151", G01, True),
    ("000000000000", G01, True),
    (G01, G01, True),  # reflexive
    (G01, G02, False),  # sibling grids
    (G01, G10, False),  # "G1" is not a prefix of "G10": codes compare whole
    (G10, G01, False),
    (G01, VILLAGE_A1, False),  # a grid never covers its village
    (G01, TOWNSHIP_A, False),
    (G01, OTHER_VILLAGE_G01, False),  # the same grid number in another village
    (VILLAGE_A2, G01, False),  # a sibling village covers none of this village's grids
    ("310151102", G01, False),  # nor does a sibling township
    (VILLAGE_A1, VILLAGE_A1, True),  # division codes behave as before
]


@pytest.mark.parametrize(("scope", "target", "expected"), COVERS)
def test_covers_with_grid_codes(scope: str, target: str, expected: bool) -> None:
    assert covers(scope, target) is expected


MALFORMED = [
    f"{VILLAGE_A1}-G1",  # one digit: not a code, so it cannot match G10 or G01 by prefix
    f"{VILLAGE_A1}-G010",
    f"{VILLAGE_A1}-G00",  # grids are numbered from 01
    f"{VILLAGE_A1}-g01",
    f"{VILLAGE_A1}G01",
    f"{VILLAGE_A1}-GAB",
    "310151101000-G01",  # a township has no grids of its own
    "310151000000-G01",
    "31015110120-G01",  # eleven digits
    "３１０１５１１０１２０１-G01",  # full-width digits
]


@pytest.mark.parametrize("code", MALFORMED)
def test_malformed_grid_codes_are_refused_whichever_side(code: str) -> None:
    assert not is_grid(code)
    with pytest.raises(ValueError):
        covers(code, G01)
    with pytest.raises(ValueError):
        covers(VILLAGE_A1, code)
    with pytest.raises(ValueError):
        grid_village(code)


@pytest.mark.parametrize(("code", "village"), [(G01, VILLAGE_A1), (OTHER_VILLAGE_G01, VILLAGE_A2)])
def test_grid_village(code: str, village: str) -> None:
    assert is_grid(code) and grid_village(code) == village


villages = st.sampled_from(["310151101001", "310151101201", "310151102001", "441900003001"])
numbers = st.integers(min_value=1, max_value=99)
scopes = st.sampled_from(["000000000000", "31", "3101", "310151", "310151101", "310151102", "44", "4419"])


@given(villages, numbers, numbers)
def test_a_grid_covers_exactly_itself(village: str, a: int, b: int) -> None:
    assert covers(f"{village}-G{a:02d}", f"{village}-G{b:02d}") is (a == b)


@given(scopes, villages, numbers)
def test_a_division_covers_a_grid_exactly_when_it_covers_its_village(
    scope: str, village: str, n: int
) -> None:
    grid = f"{village}-G{n:02d}"
    assert covers(scope, grid) is covers(scope, village)
    assert not covers(grid, village)


# --- the decision's row scope ----------------------------------------------------------------------------

HOUSE_FIELDS = ("id", "address", "village_code", "grid_code")
GRANT = make_grant("g-grid-town-a", "GRID_VISIT", TOWNSHIP_A, HOUSE_FIELDS, dataset="houses")


def _grid_worker(*grids: str, org: str = VILLAGE_A1, roles: tuple[str, ...] = ("grid_worker",)) -> Subject:
    return Subject(user_id="u-grid", org=org, roles=roles, grids=grids)


BOTH = ("village_cadre", "grid_worker")
ROW_SCOPES = [
    # (case, subject, expected row scope or refusal code)
    ("grid worker: the assigned grids", _grid_worker(G02, G01), (G01, G02)),
    ("grid worker: one grid", _grid_worker(G10), (G10,)),
    ("duplicates collapse", _grid_worker(G01, G01), (G01,)),
    ("a grid of another village is ignored", _grid_worker(G01, OTHER_VILLAGE_G01), (G01,)),
    ("only other villages' grids: refused", _grid_worker(OTHER_VILLAGE_G01), "grid_scope_invalid"),
    ("a malformed grid is ignored", _grid_worker(f"{VILLAGE_A1}-G1", G02), (G02,)),
    ("village cadre: the whole village", CADRE_A1, (VILLAGE_A1,)),
    ("a cadre who also works a grid reads her village", _grid_worker(G01, roles=BOTH), (VILLAGE_A1,)),
    ("grid worker without assignments: refused, never the village", _grid_worker(), "grid_scope_unassigned"),
    ("only malformed grids: refused", _grid_worker(f"{VILLAGE_A1}-G1"), "grid_scope_invalid"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "subject", "expected"), ROW_SCOPES, ids=[r[0] for r in ROW_SCOPES])
def test_row_scope_of_a_grid_visit(
    engine_for: EngineFactory, case: str, subject: Subject, expected: tuple[str, ...] | str
) -> None:
    engine = engine_for(GRANT)
    request = AccessRequest(subject, "read", "houses", "GRID_VISIT", None, T0)
    decision = engine.decide(request)
    if isinstance(expected, str):
        assert not decision.allowed and decision.code == expected
        assert decision.reasons[0].message_zh and decision.reasons[0].message_en
        failed = [c for c in engine.explain(request) if not c.passed]
        assert [c.code for c in failed] == ["grid_scope"]
        return
    assert decision.allowed and decision.obligations is not None, decision
    assert decision.obligations.row_scope == expected


def test_explain_tells_a_grid_worker_which_grids(engine_for: EngineFactory) -> None:
    checks = engine_for(GRANT).explain(
        AccessRequest(_grid_worker(G01, G02), "read", "houses", "GRID_VISIT", None, T0)
    )
    grid = next(c for c in checks if c.code == "grid_scope")
    assert grid.passed and grid.detail == {"grids": f"{G01},{G02}"}


def test_grids_do_not_widen_what_the_grant_refuses(engine_for: EngineFactory) -> None:
    other_town = dataclasses.replace(GRANT, org_scope="310151102000")
    decision = engine_for(other_town).decide(
        AccessRequest(_grid_worker(G01), "read", "houses", "GRID_VISIT", None, T0)
    )
    assert decision.code == "no_active_grant"


def test_subject_repr_names_grids_only_when_assigned() -> None:
    assert "grids" not in repr(CADRE_A1)
    assert G01 in repr(_grid_worker(G01))


# --- a dataset not kept by micro-grid ------------------------------------------------------------------

ELDERLY = make_grant("g-elderly-a1", "ELDERLY_VISIT", VILLAGE_A1, ("id", "name", "village_code"))
GRID_KEPT = frozenset({"houses", "occupants"})


def _kept(dataset: str) -> bool:
    return dataset in GRID_KEPT


def _told(engine: PolicyEngine) -> PolicyEngine:
    return PolicyEngine(
        engine.permissions, engine.scenarios, GrantIndex((ELDERLY, GRANT)), kept_by_grid=_kept
    )


KEPT_BY_GRID = [
    # (case, subject, dataset, scenario, expected: None allowed, else the refusal's code)
    ("a grid worker, residents (kept by village only)", _grid_worker(G01), "residents", "ELDERLY_VISIT",
     "grid_scope_unsupported"),
    ("a grid worker, houses (kept by grid)", _grid_worker(G01), "houses", "GRID_VISIT", None),
    ("a village cadre, residents: her whole village", CADRE_A1, "residents", "ELDERLY_VISIT", None),
    ("a cadre who also works a grid, residents", _grid_worker(G01, roles=BOTH), "residents", "ELDERLY_VISIT",
     None),
    ("a grid worker without grids: unassigned comes first", _grid_worker(), "residents", "ELDERLY_VISIT",
     "grid_scope_unassigned"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "subject", "dataset", "scenario", "expected"), KEPT_BY_GRID, ids=[r[0] for r in KEPT_BY_GRID]
)
def test_a_grid_worker_is_refused_a_dataset_not_kept_by_grid(
    engine_for: EngineFactory, case: str, subject: Subject, dataset: str, scenario: str, expected: str | None
) -> None:
    """Her scope is grids; rows without a grid code cannot be cut to them, so the read is refused, never
    widened to the village (GB/T 35273-2020 §5.2). The engine decides it, so decide, explain, a dry run
    and a replay all say what the data path does (they used to say "allowed" where it refused)."""
    engine = _told(engine_for())
    request = AccessRequest(subject, "read", dataset, scenario, None, T0)
    for judge in (engine, engine.what_if(), engine.reloaded()[0]):
        decision = judge.decide(request)
        assert decision.code == (expected or "allowed"), (case, decision)
        failed = [c for c in judge.explain(request) if not c.passed]
        if expected is None:
            assert decision.allowed and not failed
        else:
            assert [(c.code, c.detail["reason"]) for c in failed] == [("grid_scope", expected)]
    if expected == "grid_scope_unsupported":
        why = engine.decide(request).reasons[0]
        assert why.message_zh.startswith("该数据集未按微网格划分")
        assert why.message_en.endswith("use a dataset kept by grid.")


def test_an_engine_not_told_which_datasets_are_kept_by_grid_leaves_that_check_to_its_caller(
    engine_for: EngineFactory,
) -> None:
    request = AccessRequest(_grid_worker(G01), "read", "residents", "ELDERLY_VISIT", None, T0)
    assert engine_for(ELDERLY).decide(request).allowed
