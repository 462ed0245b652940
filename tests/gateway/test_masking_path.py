"""The data path applies desensitisation: no raw identifier leaves the gateway, response DLP catches
personal data in fields nobody classified as personal (and lists it for the steward), and the
re-identification guard generalises or refuses large lists.

This module's stack checks k-anonymity from 10 records up (GRASSROOTS_KANON_MIN_RECORDS=10, k = 3 as
shipped), so the demo's villages of 30–40 residents exercise the guard.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from demoworld.world import build_world
from tests.gateway.test_masking_api import approve, eventually, ok, propose, refused, stack_with
from tests.stack import Stack

WORLD = build_world()
MIN_RECORDS = 10
# Any unmasked mainland mobile (GB/T 35273 contact data) or 18-character resident ID number (GB 11643).
RAW_MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
RAW_ID = re.compile(r"(?<![0-9A-Za-z])[1-9]\d{16}[0-9Xx](?![0-9A-Za-z])")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from stack_with(request, tmp_path_factory, {"GRASSROOTS_KANON_MIN_RECORDS": str(MIN_RECORDS)})


def pages(stack: Stack, who: str, scenario: str, page_size: int) -> list[httpx.Response]:
    out: list[httpx.Response] = []
    page: int | None = 1
    while page is not None:
        resp = stack.get(stack.records_url, who, scenario=scenario, page=page, page_size=page_size)
        assert resp.status_code == 200, resp.text
        out.append(resp)
        page = resp.json()["next_page"]
    return out


def assert_no_raw_identifiers(responses: list[httpx.Response]) -> None:
    text = "".join(r.text for r in responses)
    for resident in WORLD.residents:
        for value in (resident.id_number, resident.id_number.lower(), resident.mobile):
            assert value not in text
    assert RAW_MOBILE.search(text) is None
    assert RAW_ID.search(text) is None


def last_data_event(stack: Stack, actor_name: str) -> dict[str, Any]:
    from demoworld.world import user_id_for

    with stack.engine.connect() as conn:
        body = conn.execute(
            sa.text(
                "SELECT body FROM audit_events WHERE kind LIKE 'data.%' AND actor = :a "
                "ORDER BY seq DESC LIMIT 1"
            ),
            {"a": user_id_for(actor_name)},
        ).scalar_one()
    return dict(json.loads(body))


# (who, scenario, page size): every list a demo user may read, in small and in guarded page sizes.
READS = [
    ("cadre_a", "DIBAO_REVIEW", 9),
    ("cadre_a", "DIBAO_REVIEW", 40),
    ("cadre_b", "DIBAO_REVIEW", 9),
    ("cadre_a", "ELDERLY_VISIT", 9),
    ("cadre_b", "ELDERLY_VISIT", 9),
    ("town_officer", "DIBAO_REVIEW", 9),
    ("town_officer", "DIBAO_REVIEW", 10),
    ("town_officer", "DIBAO_REVIEW", 100),
]


@pytest.mark.parametrize(("who", "scenario", "page_size"), READS)
def test_no_raw_id_number_or_mobile_in_any_response_byte(
    stack: Stack, who: str, scenario: str, page_size: int
) -> None:
    responses = pages(stack, who, scenario, page_size)
    assert sum(len(r.json()["items"]) for r in responses) > 0
    assert_no_raw_identifiers(responses)


def test_single_record_reads_are_masked_too(stack: Stack) -> None:
    responses = [
        stack.get(f"{stack.records_url}/{resident.id}", "cadre_a", scenario="DIBAO_REVIEW")
        for resident in WORLD.residents_of(WORLD.village_a)
    ]
    assert {r.status_code for r in responses} == {200}
    assert_no_raw_identifiers(responses)


# -- re-identification guard ------------------------------------------------------------------------


def test_a_large_list_that_would_single_residents_out_is_refused_with_a_reason(stack: Stack) -> None:
    # Birth year + village: some residents of 东风村 are alone in their 20-year band even at the top
    # of the generalisation ladder, so 30 of them at once are refused; 9 at a time are not guarded.
    resp = stack.get(stack.records_url, "cadre_a", scenario="ELDERLY_VISIT", page_size=30)
    body = refused(resp, 403, "reidentification_risk")
    assert "保护居民隐私" in body["message"] and f"{MIN_RECORDS - 1} 条以内" in body["message"]
    assert (body["k"], body["max_page_size"]) == (3, MIN_RECORDS - 1)
    assert "items" not in body and not RAW_MOBILE.search(resp.text)
    event = last_data_event(stack, "cadre_a")
    assert (event["outcome"], event["reason"]) == ("refused", "reidentification_risk")
    assert "reidentification_risk" in event["details"]["alerts"]
    guard = event["details"]["reidentification_guard"]
    assert guard["smallest_class"] < 3
    # What was coarsened before giving up is kept (under "tried": nothing was released generalised).
    assert guard["tried"] and "generalised" not in guard
    assert event["record_count"] == 0 and event["subject_refs"] == []


def test_a_list_that_generalisation_makes_k_anonymous_is_served_generalised(stack: Stack) -> None:
    # Ten residents of four villages (ids interleave the villages): classes of one or two per village,
    # so village and address go up one level, to the township, where all ten share one class.
    items = ok(stack.get(stack.records_url, "town_officer", scenario="DIBAO_REVIEW", page_size=10))["items"]
    assert len(items) == 10
    assert {r["village_code"] for r in items} == {"310151101000"}
    assert {r["address"] for r in items} == {"上海市崇明区城桥镇"}
    event = last_data_event(stack, "town_officer")
    assert event["details"]["reidentification_guard"] == {
        "k": 3,
        "generalised": {"address": 1, "village_code": 1},
    }
    # Thirty at once already form classes of three or more per village: nothing is generalised.
    items = ok(stack.get(stack.records_url, "town_officer", scenario="DIBAO_REVIEW", page_size=30))["items"]
    assert all(not r["village_code"].endswith("000") for r in items)
    assert "reidentification_guard" not in last_data_event(stack, "town_officer")["details"]


# -- response DLP and catalog drift -------------------------------------------------------------------


def _reclassify_remark(stack: Stack, proposer: str, approver: str, **changes: Any) -> None:
    approve(
        stack,
        approver,
        propose(
            stack, proposer, "field_classification", {"dataset": "residents", "field": "remark", **changes}
        ),
    )


def test_personal_data_in_a_field_classified_as_not_personal_is_masked_and_listed_as_drift(
    stack: Stack,
) -> None:
    def drift() -> list[dict[str, Any]]:
        headers = {"Authorization": f"Bearer {stack.token('ca_steward')}"}
        resp = httpx.get(f"{stack.base_url}/api/v1/masking/drift", headers=headers, timeout=30)
        items = ok(resp)["items"]
        return [a for a in items if (a["dataset"], a["field"]) == ("residents", "remark")]

    assert drift() == []
    # A steward (wrongly) declares remarks non-personal: level 2, no masking rule applies, shown as is.
    _reclassify_remark(stack, "ca_steward", "ca_steward2", level=2, semantic_type="other")
    try:

        def scanned() -> bool:
            event_items = pages(stack, "cadre_a", "DIBAO_REVIEW", 40)
            return "catalog_drift" in last_data_event(stack, "cadre_a")["details"] and bool(event_items)

        eventually(scanned)
        responses = pages(stack, "cadre_a", "DIBAO_REVIEW", 40)
        assert_no_raw_identifiers(responses)  # response DLP masked what the rules no longer do
        remarks = [r["remark"] for resp in responses for r in resp.json()["items"]]
        assert any(re.search(r"1\d\d\*{4}\d{4}", remark) for remark in remarks)
        event = last_data_event(stack, "cadre_a")
        assert "catalog_drift" in event["details"]["alerts"]
        found = {(d["field"], d["entity_type"]) for d in event["details"]["catalog_drift"]}
        assert ("remark", "CN_MOBILE") in found

        alerts = drift()
        assert {a["entity_type"] for a in alerts} >= {"CN_MOBILE"}
        assert all(a["status"] == "open" and a["level_now"] == 2 for a in alerts)
        assert all(a["findings"] >= a["responses"] >= 1 for a in alerts)
    finally:
        _reclassify_remark(stack, "ca_steward2", "ca_steward", level=3, semantic_type="free_text")
    eventually(lambda: all(a["status"] == "classified" for a in drift()))
    cli = stack.cli("masking", "drift", "--url", stack.base_url, "--as", "ca_steward")
    assert "residents" in cli.stdout and "remark" in cli.stdout
