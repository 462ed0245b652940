"""Answers for one signed-in caller are never kept by a browser, proxy or client library.

Found by review: ``GET /api/v1/me`` (who the caller is: user id, organisation, roles, office) and the other
administrative answers carried no ``Cache-Control``, while the data path sends ``no-store`` with every
record (OWASP ASVS V8.2.1; RFC 9111 §5.2.2.5): a shared workstation's browser cache or a caching proxy
could hand one official's answers to the next. Every ``/api/`` answer now says ``no-store`` unless its
route sets a header of its own; table: (who, method, path, expected status).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.stack import Stack, stack_fixture


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from stack_fixture("sqlite", tmp_path_factory)


@pytest.mark.parametrize(
    ("who", "asked", "status"),
    [
        ("cadre_a", "GET /api/v1/me", 200),
        ("cadre_a", "GET /api/v1/me/can?resource=grants&action=read", 200),
        ("cadre_a", "GET /api/v1/scenarios", 200),
        ("cadre_a", "GET /api/v1/grants", 200),
        ("supervisor", "GET /api/v1/supervision/events?limit=5", 200),
        ("supervisor", "GET /api/v1/supervision/complaints", 200),
        (None, "GET /api/v1/me", 401),
        ("cadre_a", "GET /api/v1/grants/grt_nosuchgrant00000000", 404),
        # the data path, which said so before, still does
        ("cadre_a", "GET /api/v1/datasets/residents/records?scenario=DIBAO_REVIEW&page_size=1", 200),
        ("cadre_a", "POST /api/v1/me/logout", 200),
    ],
)
def test_an_answer_to_a_signed_in_caller_is_not_stored(
    stack: Stack, who: str | None, asked: str, status: int
) -> None:
    method, path = asked.split(" ")
    headers = {"Authorization": f"Bearer {stack.token(who)}"} if who else {}
    resp = httpx.request(method, f"{stack.base_url}{path}", headers=headers, timeout=30)
    assert resp.status_code == status, resp.text
    assert resp.headers.get_list("cache-control") == ["no-store"], resp.headers


def test_a_route_that_sets_its_own_cache_header_keeps_it_and_pages_outside_the_api_are_untouched(
    stack: Stack,
) -> None:
    refused = httpx.post(f"{stack.base_url}/oauth/token", data={"grant_type": "password"}, timeout=30)
    assert (
        refused.headers.get_list("cache-control") == ["no-store"] and refused.headers["pragma"] == "no-cache"
    )
    assert "cache-control" not in httpx.get(f"{stack.base_url}/healthz", timeout=30).headers
