"""A request with a body and no token is refused before its body is read, and recorded like any refusal.

Found by fuzzing the running demo (schemathesis's ignored_auth check) and comparing the answers' request
ids with the audit log: ``POST /api/v1/grants`` with a JSON body and no ``Authorization`` header answered
401 ``missing_token`` from ``RefuseAnonymousBody`` (which keeps the gateway from parsing anonymous JSON)
and left no event, where the same request without a body was an ``auth.refused`` event (README: every
request refused for want of a valid token is an audit event before it is an answer). It is counted in the
source's allowance too (429 past it), like every such refusal. Its answer carried ``X-Request-ID``
twice; now once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa

from tests.stack import Stack, stack_fixture


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from stack_fixture("sqlite", tmp_path_factory, extra_env={"GRASSROOTS_AUTH_REFUSAL_BURST": "3"})


def events_of(stack: Stack, request_id: str) -> list[dict[str, object]]:
    with stack.engine.connect() as conn:
        bodies = [json.loads(b) for (b,) in conn.execute(sa.text("SELECT body FROM audit_events"))]
    return [b for b in bodies if b["request_id"] == request_id]


@pytest.mark.parametrize(
    ("path", "permission"),
    [
        ("/api/v1/grants", "request grants"),
        ("/api/v1/grants/grt_110105194912310021/approve", "approve grants"),
        ("/api/v1/me/logout", "logout"),
    ],
)
def test_the_refusal_is_an_audit_event(stack: Stack, path: str, permission: str) -> None:
    resp = httpx.post(f"{stack.base_url}{path}", json={"reason": "x"}, timeout=30)
    assert resp.status_code == 401 and resp.json()["error"] == "missing_token", resp.text
    assert resp.headers["www-authenticate"].startswith("Bearer")
    # One X-Request-ID, the one in the body (the middleware's answer carried it twice).
    assert resp.headers.get_list("x-request-id") == [resp.json()["request_id"]]
    [event] = events_of(stack, resp.headers["x-request-id"])
    assert event["kind"] == "auth.refused" and event["reason"] == "missing_token"
    assert event["actor"] == "anonymous" and event["details"] == {"permission": permission}
    assert "110105194912310021" not in json.dumps(event)


def test_past_the_allowance_it_is_429(stack: Stack) -> None:
    answers = [httpx.post(f"{stack.base_url}/api/v1/grants", json={}, timeout=30) for _ in range(4)]
    assert answers[-1].status_code == 429 and answers[-1].json()["error"] == "too_many_refusals"
