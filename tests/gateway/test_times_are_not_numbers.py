"""A time is read from text, never from a number: pydantic takes a number (a JSON number, or a query's
digits) as seconds since 1970.

Found by fuzzing the running demo (schemathesis): ``GET /api/v1/policy/explain?at=2330`` (a cadre meaning
23:30) was accepted and explained the policy as of 1 January 1970 (no grant then: "no_active_grant", which
reads as an answer about tonight), and ``"valid_until": 20261231`` in an approval meant 23 August 1970.
Each is now refused with 422 naming the parameter and the form it takes; the text forms keep working.
Table: (who, method, address, query, body, parameter named).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.stack import Stack, stack_fixture

EXPLAIN = {"dataset": "residents", "scenario": "DIBAO_REVIEW"}
DECIDE = {
    "org": "310151101201",
    "roles": ["village_cadre"],
    "dataset": "residents",
    "scenario": "DIBAO_REVIEW",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from stack_fixture("sqlite", tmp_path_factory)


def call(stack: Stack, user: str, method: str, path: str, params: Any, body: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {stack.token(user)}"}
    return httpx.request(
        method, f"{stack.base_url}/api/v1{path}", params=params, json=body, headers=headers, timeout=30
    )


@pytest.mark.parametrize(
    ("user", "method", "path", "params", "body", "named", "words"),
    [
        ("cadre_a", "GET", "/policy/explain", {**EXPLAIN, "at": "2330"}, None, "at", "带时区"),
        ("cadre_a", "GET", "/policy/explain", {**EXPLAIN, "at": "1767225600"}, None, "at", "带时区"),
        ("platform_admin", "POST", "/policy/decide", None, {**DECIDE, "at": 1767225600}, "at", "带时区"),
        ("platform_admin", "POST", "/policy/explain", None, {**DECIDE, "at": 2330.5}, "at", "带时区"),
        (
            "ca_steward",
            "POST",
            "/grants/grt_x/approve",
            None,
            {"valid_until": 20261231},
            "valid_until",
            "日期",
        ),
        ("ca_steward", "POST", "/grants/grt_x/approve", None, {"valid_from": 0}, "valid_from", "日期"),
        (
            "supervisor",
            "POST",
            "/supervision/incidents/inc_x/assign",
            None,
            {"assignee": "纪检组", "due_at": 1},
            "due_at",
            "日期",
        ),
    ],
)
def test_a_number_is_refused_as_a_time(
    stack: Stack, user: str, method: str, path: str, params: Any, body: Any, named: str, words: str
) -> None:
    resp = call(stack, user, method, path, params, body)
    assert resp.status_code == 422, resp.text
    answer = resp.json()
    assert answer["error"] == "invalid_request" and answer["fields"] == [named]
    assert answer["message"].startswith(f"请求参数有误：{named}（") and words in answer["message"]


def test_a_time_with_its_offset_is_still_read(stack: Stack) -> None:
    resp = call(
        stack, "cadre_a", "GET", "/policy/explain", {**EXPLAIN, "at": "2026-12-06T10:00:00+08:00"}, None
    )
    assert resp.status_code == 200, resp.text
    resp = call(
        stack, "platform_admin", "POST", "/policy/decide", None, {**DECIDE, "at": "2026-12-06T02:00:00Z"}
    )
    assert resp.status_code == 200, resp.text
