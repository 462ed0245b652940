"""The permission comes before the body on every administrative route.

FastAPI validates a request's body before the endpoint runs, so a permission checked inside the endpoint
let a village cadre's malformed POST to an administrative endpoint answer 422, with no record of the
refused attempt, while a well-formed one answered 403 and was audited. Every administrative route now
declares its permission once (``Permitted``) and ``PermissionFirstRoute`` checks it before the body is
read. The routes are taken from the app's own OpenAPI document, so a route added later is covered too;
the shipped casbin policy says which of them the cadre holds (those still get the clear 422).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import Settings
from policies.permissions import load_permissions
from tests.gateway.test_grants_api import events, last_seq
from tests.stack import Stack, stack_fixture

CADRE_ROLES = ("village_cadre",)

MALFORMED = [
    pytest.param(b"{not json", id="not-json"),
    pytest.param(b"[1, 2, 3]", id="wrong-shape"),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from stack_fixture("sqlite", tmp_path_factory)


def bodied_operations() -> list[tuple[str, str, dict[str, Any]]]:
    spec = create_app(Settings()).openapi()
    return [
        (method.upper(), path, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in ("post", "put", "patch", "delete") and "requestBody" in op
    ]


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x-1", path)


def test_every_administrative_route_with_a_body_declares_its_permission() -> None:
    # Unmask too: its refusal once recorded what was asked, so it read the body first, and a cadre's
    # malformed request learnt the body's schema (422) before being told she may not unmask.
    undeclared = {(method, path) for method, path, op in bodied_operations() if "x-permission" not in op}
    assert undeclared == set()


@pytest.mark.parametrize("body", MALFORMED)
def test_a_cadre_s_malformed_administrative_request_is_refused_and_audited(stack: Stack, body: bytes) -> None:
    permissions = load_permissions()
    token = stack.token("cadre_a")
    checked = refused = 0
    for method, path, op in bodied_operations():
        if "x-permission" not in op:
            continue
        action, resource = op["x-permission"].split(" ", 1)
        seq = last_seq(stack)
        answer = httpx.request(
            method,
            f"{stack.base_url}{concrete(path)}",
            content=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=30.0,
        )
        where = f"{method} {path}"
        if permissions.is_allowed(CADRE_ROLES, resource, action):
            # A permitted caller learns what is wrong with the body.
            assert answer.status_code == 422, (where, answer.text)
            assert events(stack, "admin.refused", seq) == [], where
        else:
            assert (answer.status_code, answer.json()["error"]) == (403, "no_permission"), (
                where,
                answer.text,
            )
            audited = events(stack, "admin.refused", seq)
            assert [e["body"]["details"]["permission"] for e in audited] == [op["x-permission"]], where
            refused += 1
        checked += 1
    assert refused >= 20 and checked > refused  # the table is not empty, and both sides were exercised


def test_a_permitted_administrator_still_gets_the_clear_422(stack: Stack) -> None:
    answer = httpx.post(
        f"{stack.base_url}/api/v1/users/u-someone/revoke-sessions",
        content=b"{not json",
        headers={
            "Authorization": f"Bearer {stack.token('platform_admin')}",
            "Content-Type": "application/json",
        },
        timeout=30.0,
    )
    assert answer.status_code == 422, answer.text


@pytest.mark.parametrize(
    ("path", "permission"),
    [
        ("/api/v1/grants/x-1/approve", "approve grants"),
        ("/api/v1/masking/proposals", "propose masking"),
        ("/api/v1/policy/replay", "replay policies"),
        ("/api/v1/supervision/incidents/x-1/disposition", "review audit"),
        ("/api/v1/admission/systems/x-1/suspend", "revoke admission"),
        ("/api/v1/masking/unmask", "invoke unmask"),
    ],
)
def test_named_administrative_acts_refuse_a_cadre_s_malformed_body_with_403(
    stack: Stack, path: str, permission: str
) -> None:
    seq = last_seq(stack)
    answer = httpx.post(
        f"{stack.base_url}{path}",
        content=b"{not json",
        headers={"Authorization": f"Bearer {stack.token('cadre_a')}", "Content-Type": "application/json"},
        timeout=30.0,
    )
    assert (answer.status_code, answer.json()["error"]) == (403, "no_permission"), answer.text
    assert [e["body"]["details"]["permission"] for e in events(stack, "admin.refused", seq)] == [permission]


# ``GET /me/can`` and ``GET /policy/explain`` take no permission, only a sign-in: it used to be checked in
# the endpoint, after FastAPI had validated the query, so an anonymous caller's bad query was answered 422
# and left no event. The sign-in comes first now, as the permission does elsewhere.
@pytest.mark.parametrize(
    ("path", "params", "asked"),
    [
        ("/me/can", {"resource": "NOT A NAME", "action": "x"}, "read me"),
        ("/me/can", {}, "read me"),
        ("/policy/explain", {}, "explain policies"),
        ("/policy/explain", {"dataset": "x" * 100, "scenario": "DIBAO_REVIEW"}, "explain policies"),
    ],
)
def test_an_anonymous_question_is_refused_401_before_its_query_is_read(
    stack: Stack, path: str, params: dict[str, Any], asked: str
) -> None:
    before = last_seq(stack)
    resp = httpx.get(f"{stack.base_url}/api/v1{path}", params=params, timeout=30.0)
    assert (resp.status_code, resp.json()["error"]) == (401, "missing_token"), resp.text
    (event,) = events(stack, "auth.refused", before)
    assert event["body"]["details"]["permission"] == asked
    signed_in = httpx.get(
        f"{stack.base_url}/api/v1{path}",
        params=params,
        headers={"Authorization": f"Bearer {stack.token('cadre_a')}"},
        timeout=30.0,
    )
    assert signed_in.status_code == 422, signed_in.text  # a signed-in caller learns what is wrong
