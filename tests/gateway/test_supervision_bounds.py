"""Numbers a supervisor types into the log's queries: refused when out of reach, never a 500.

Found while fuzzing the running demo: ``GET /api/v1/supervision/events?before=99999999999999999999`` (a
cursor past the 64-bit ``seq`` column) reached the database driver, which cannot bind it: 500, an
``OverflowError`` in the log. Now 422 naming ``before`` and its bound.

And the numbers typed are not repeated: an inclusion proof for ``seq`` or ``tree_size``
110105194912310021 (an ID number without its X is a number too) answered "所给的树大小 110105194912310021
超过了…", and a prune's plan "第 … 号事件不是…". Now they say what the log holds, naming the parameter.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.stack import Stack, stack_fixture

BASE = "/api/v1/supervision"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from stack_fixture("sqlite", tmp_path_factory)


def get(stack: Stack, path: str, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {stack.token('supervisor')}"}
    return httpx.get(f"{stack.base_url}{BASE}{path}", params=params, headers=headers, timeout=30)


@pytest.mark.parametrize("before", ["9223372036854775808", "99999999999999999999"])
def test_a_cursor_past_the_log_is_refused_not_a_server_error(stack: Stack, before: str) -> None:
    resp = get(stack, "/events", before=before)
    assert resp.status_code == 422, resp.text
    answer = resp.json()
    assert answer["fields"] == ["before"] and "不能大于 9223372036854775807" in answer["message"]
    assert before not in resp.text


def test_the_largest_cursor_is_still_read(stack: Stack) -> None:
    resp = get(stack, "/events", before="9223372036854775807", limit="1")
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["items"]) == 1


ID_NUMBER = "110105194912310021"


@pytest.mark.parametrize("params", [{"seq": ID_NUMBER}, {"seq": "1", "tree_size": ID_NUMBER}])
def test_a_proof_for_a_number_past_the_log_does_not_repeat_it(stack: Stack, params: dict[str, str]) -> None:
    resp = get(stack, "/proofs/inclusion", **params)
    assert resp.status_code == 404 and resp.json()["error"] == "no_such_event", resp.text
    assert "日志现有" in resp.json()["message"] or "现有" in resp.json()["message"]
    assert ID_NUMBER not in resp.text


def test_a_prune_plan_does_not_repeat_the_number(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {stack.token('supervisor')}"}
    resp = httpx.post(
        f"{stack.base_url}{BASE}/audit/prune",
        json={"dry_run": True, "through_seq": int(ID_NUMBER)},
        headers=headers,
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    assert any(r.startswith("not_month_boundary") for r in resp.json()["reasons"])
    assert ID_NUMBER not in resp.text
