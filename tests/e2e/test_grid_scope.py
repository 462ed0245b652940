"""Micro-grid scope end to end, and one login reaching two departments' data.

Real processes over loopback: the gateway, the civil-affairs registry and the public-security bureau's
person-house registry (一标三实), each with its own database; SQLite and, in CI, PostgreSQL. Grid
workers' assignments travel in the development IdP's ``grids`` claim.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from demoworld.world import build_world
from tests.stack import Stack

WORLD = build_world()
A = WORLD.village_a
GRIDS_A = [g.code for g in WORLD.grids_of(A)]
G01, G02, G03 = f"{A}-G01", f"{A}-G02", f"{A}-G03"
ID_MASKED = re.compile(r"^\d{6}\*{12}$")
MOBILE_MASKED = re.compile(r"^\d{3}\*{4}\d{4}$")


def _all(stack: Stack, dataset: str, username: str, scenario: str = "GRID_VISIT") -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    page: int | None = 1
    while page is not None:
        resp = stack.get(stack.dataset_url(dataset), username, scenario=scenario, page=page, page_size=20)
        assert resp.status_code == 200, resp.text
        items += resp.json()["items"]
        page = resp.json()["next_page"]
    return items


def _source(dataset: str, grids: list[str]) -> list[Any]:
    return WORLD.houses_in(grids) if dataset == "houses" else WORLD.occupants_in(grids)


# ------------------------------------------------------------------------- who sees which micro-grids

SEES = [
    # (who, the grids whose rows they see)
    ("grid_a1", [G01, G02]),
    ("grid_a2", [G03]),
    ("cadre_a", GRIDS_A),  # the village cadre: every grid of her village
]


@pytest.mark.parametrize(("username", "grids"), SEES, ids=[s[0] for s in SEES])
@pytest.mark.parametrize("dataset", ["houses", "occupants"])
def test_each_reader_sees_exactly_the_rows_of_their_grids(
    stack: Stack, dataset: str, username: str, grids: list[str]
) -> None:
    items = _all(stack, dataset, username)
    expected = _source(dataset, grids)
    assert expected
    assert sorted(i["id"] for i in items) == sorted(r.id for r in expected)
    assert {i["grid_code"] for i in items} == set(grids)


@pytest.mark.parametrize(("username", "other_grid"), [("grid_a1", G03), ("grid_a2", G01)])
@pytest.mark.parametrize("dataset", ["houses", "occupants"])
def test_a_record_of_another_grid_of_the_same_village_answers_404_like_a_missing_one(
    stack: Stack, dataset: str, username: str, other_grid: str
) -> None:
    url = stack.dataset_url(dataset)
    other = _source(dataset, [other_grid])[0]
    outside = stack.get(f"{url}/{other.id}", username, scenario="GRID_VISIT")
    missing = stack.get(f"{url}/X00000000", username, scenario="GRID_VISIT")
    assert outside.status_code == missing.status_code == 404
    assert outside.json()["error"] == missing.json()["error"] == "not_found"
    assert {k: v for k, v in outside.json().items() if k != "request_id"} == {
        k: v for k, v in missing.json().items() if k != "request_id"
    }
    assert stack.get(f"{url}/{other.id}", "cadre_a", scenario="GRID_VISIT").status_code == 200


def test_own_grids_occupant_is_served_masked(stack: Stack) -> None:
    occupant = WORLD.occupants_in([G01])[0]
    resp = stack.get(f"{stack.dataset_url('occupants')}/{occupant.id}", "grid_a1", scenario="GRID_VISIT")
    assert resp.status_code == 200, resp.text
    record = resp.json()
    assert (record["id"], record["grid_code"], record["relation"]) == (occupant.id, G01, occupant.relation)
    assert ID_MASKED.fullmatch(record["id_number"]) and MOBILE_MASKED.fullmatch(record["mobile"])
    assert "resident_id" not in record  # not in the GRID_VISIT whitelist: dropped, not masked
    assert occupant.id_number not in resp.text and occupant.mobile not in resp.text


def test_a_grid_worker_is_refused_a_dataset_not_kept_by_grid(stack: Stack) -> None:
    resp = stack.get(stack.records_url, "grid_a1", scenario="ELDERLY_VISIT", page_size=5)
    assert resp.status_code == 403, resp.text
    body = resp.json()
    assert body["error"] == "grid_scope_unsupported" and "items" not in body
    assert "网格" in body["message"] or "网格" in json.dumps(body, ensure_ascii=False)


def _grid_a1_token(grids: list[str] | None) -> Any:
    """grid_a1's token with the ``grids`` claim replaced (a list) or left out (None), signed like the IdP."""
    import jwt

    def mint(stack: Stack) -> str:
        good = stack.token("grid_a1")
        header = jwt.get_unverified_header(good)
        body = jwt.decode(good, options={"verify_signature": False})
        body.pop("grids", None)
        if grids is not None:
            body["grids"] = grids
        pem = (stack.data_dir / "keys" / "dev-idp-signing.pem").read_bytes()
        return jwt.encode(body, pem, algorithm=header["alg"], headers={"kid": header["kid"], "typ": "at+jwt"})

    return mint


@pytest.mark.parametrize("grids", [None, []], ids=["no grids claim", "empty grids claim"])
@pytest.mark.parametrize("dataset", ["houses", "occupants"])
def test_a_grid_worker_with_no_grid_assigned_reads_nothing(
    stack: Stack, dataset: str, grids: list[str] | None
) -> None:
    """Fail closed: a missing assignment must never widen a grid worker to the whole village."""
    before = stack.audit_count()
    token = _grid_a1_token(grids)(stack)
    resp = httpx.get(
        stack.dataset_url(dataset),
        params={"scenario": "GRID_VISIT", "page_size": 5},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert resp.status_code == 403, resp.text
    body = resp.json()
    assert body["error"] == "grid_scope_unassigned" and "items" not in body
    assert "网格" in body["message"]
    (event,) = stack.last_events(stack.audit_count() - before)
    recorded = json.loads(event["body"]) if isinstance(event["body"], str) else event["body"]
    assert (recorded["outcome"], recorded["reason"]) == ("refused", "grid_scope_unassigned")


def test_the_other_village_sees_none_of_village_as_grids(stack: Stack) -> None:
    items = _all(stack, "houses", "cadre_b")
    assert items and not {i["grid_code"] for i in items} & set(GRIDS_A)


# --------------------------------------------------------------------- one login, two departments' data


def test_one_login_reads_both_departments_datasets(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {stack.token('cadre_a')}"}
    reads = {
        "residents": ("DIBAO_REVIEW", "civil-affairs"),
        "houses": ("GRID_VISIT", "public-security"),
        "occupants": ("GRID_VISIT", "public-security"),
    }
    villages = {}
    for dataset, (scenario, _department) in reads.items():
        resp = httpx.get(
            stack.dataset_url(dataset),
            params={"scenario": scenario, "page_size": 5},
            headers=headers,
            timeout=30,
        )
        assert resp.status_code == 200, (dataset, resp.text)
        villages[dataset] = {i["village_code"] for i in resp.json()["items"]}
    assert villages == {"residents": {A}, "houses": {A}, "occupants": {A}}


def test_the_person_house_registry_is_an_admitted_system_of_its_own(stack: Stack) -> None:
    resp = stack.get(f"{stack.base_url}/api/v1/admission/systems/person-house-registry", "supervisor")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    system = body.get("system", body)
    assert system["status"] == "approved" and system["department"] == "public_security"


# ------------------------------------------------------------------- never trust the registry's filter


def test_rows_of_other_grids_from_the_registry_are_dropped_and_raised(stack: Stack) -> None:
    before = stack.audit_count()
    stack.start_person_house(fault="out_of_grid")
    try:
        items = _all(stack, "houses", "grid_a1")
    finally:
        stack.start_person_house()
    assert sorted(i["id"] for i in items) == sorted(h.id for h in WORLD.houses_in([G01, G02]))
    events = stack.last_events(stack.audit_count() - before)
    bodies = [json.loads(e["body"]) if isinstance(e["body"], str) else e["body"] for e in events]
    flagged = [b for b in bodies if "upstream_scope_violation" in b.get("details", {}).get("alerts", [])]
    assert flagged and all(b["dataset"] == "houses" for b in flagged)
