"""A body key an endpoint does not define is refused, naming the keys it takes, never ignored.

Found while fuzzing the running demo (schemathesis): grant, approval, renewal and break-glass bodies
refused unknown keys, the other twenty-three bodies dropped them. ``POST /api/v1/policy/decide`` with
``"field": ["id_number"]`` (for ``fields``) answered "allowed" where ``fields`` answers
``field_not_granted``; a misspelt deadline or note was dropped with the act done without it. The check
runs after the permission (a caller without it still gets 403, recorded). Table: (who, method, address,
body with a misspelt key, a key the message names).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.gateway.test_times_are_not_numbers import call
from tests.stack import Stack, stack_fixture

DECIDE = {
    "org": "310151101201",
    "roles": ["village_cadre"],
    "dataset": "residents",
    "scenario": "ELDERLY_VISIT",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from stack_fixture("sqlite", tmp_path_factory)


def post(stack: Stack, user: str, path: str, body: Any) -> httpx.Response:
    return call(stack, user, "POST", path, None, body)


@pytest.mark.parametrize(
    ("user", "path", "body", "named"),
    [
        ("platform_admin", "/policy/decide", {**DECIDE, "field": ["id_number"]}, "fields"),
        ("platform_admin", "/policy/explain", {**DECIDE, "grid": ["310151101201-G01"]}, "grids"),
        ("platform_admin", "/policy/replay", {"revoke_grant_id": ["grt_x"]}, "revoke_grant_ids"),
        ("ca_steward", "/grants/grt_x/reject", {"reason": "不符合条件", "note": "x"}, "reason"),
        ("supervisor", "/break-glass/reviews/bgr_x/close", {"note": "已复核", "notes": "x"}, "note"),
        (
            "ca_steward",
            "/masking/dry-run",
            {"dataset": "residents", "role": "village_cadre", "scenario": "DIBAO_REVIEW", "profil": "strict"},
            "profile",
        ),
        (
            "supervisor",
            "/supervision/incidents/inc_x/assign",
            {"assignee": "纪检组", "due": "2026-12-31"},
            "due_at",
        ),
        ("supervisor", "/supervision/audit/prune", {"dryrun": False}, "dry_run"),
        (
            "rv_civil_affairs",
            "/admission/systems/x/reviews",
            {"vote": "approve", "coment": "同意"},
            "comment",
        ),
    ],
)
def test_a_misspelt_key_is_refused(stack: Stack, user: str, path: str, body: Any, named: str) -> None:
    resp = post(stack, user, path, body)
    assert resp.status_code == 422, resp.text
    answer = resp.json()
    assert answer["error"] == "invalid_request" and answer["fields"] == ["body"], answer
    assert "含有本接口没有的字段" in answer["message"] and named in answer["message"]


def test_the_decision_is_answered_for_the_keys_it_defines(stack: Stack) -> None:
    resp = post(stack, "platform_admin", "/policy/decide", {**DECIDE, "fields": ["id_number"]})
    assert resp.status_code == 200 and resp.json()["code"] == "field_not_granted", resp.text


def test_without_the_permission_it_is_still_403(stack: Stack) -> None:
    resp = post(stack, "cadre_a", "/policy/decide", {**DECIDE, "field": ["id_number"]})
    assert resp.status_code == 403 and resp.json()["error"] == "no_permission"
