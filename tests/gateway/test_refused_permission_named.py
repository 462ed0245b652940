"""Every administrative route's refusal names the permission that route asks for.

A request with a body and no token is refused before routing (``RefuseAnonymousBody``), so what it asked
was found by matching its path against a table of the OpenAPI document's paths, which reads ``{user_id}``
as one segment: ``POST /api/v1/users/<issuer>#<sub>/revoke-sessions`` for a user of a further identity
provider (an issuer is a URL, its ``/`` sent as ``%2F`` and routed decoded) matched nothing, and its
``auth.refused`` event said the caller asked "unknown". Each route now matches the path itself.

The walk covers every route the OpenAPI document gives an ``x-permission``: refused once without a token
(``auth.refused``) and once to a signed-in user whose roles lack the permission (``admin.refused``), each
path parameter that takes a ``/`` given one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa
from fastapi.routing import APIRoute
from starlette.convertors import PathConvertor

from gateway.app import GatewayApp, create_app
from gateway.settings import Settings
from policies import load_permissions
from tests.gateway.test_grants_api import token_as
from tests.stack import Stack, stack_fixture

#: An issuer-qualified user id (``<issuer>#<sub>``, README "Further identity providers").
ISSUER_USER = "https://idp.example.gov.cn/realms/villages#5f0c2a"
#: Demo users, fewest permissions first: each refused act is tried by the first who lacks its permission.
USERS = [
    ("grid_a1", "grid_worker"),
    ("cadre_a", "village_cadre"),
    ("ca_sysadmin", "system_admin"),
    ("rv_services", "admission_reviewer"),
    ("ca_steward", "data_steward"),
    ("supervisor", "supervisor"),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from stack_fixture("sqlite", tmp_path_factory)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> GatewayApp:
    built = create_app(Settings(data_dir=tmp_path_factory.mktemp("routes") / "var"))
    assert isinstance(built, GatewayApp)
    return built


def _permitted_routes(app: GatewayApp) -> list[tuple[APIRoute, str, str]]:
    """(route, method, permission) for every operation the OpenAPI document gives an ``x-permission``,
    each found among the routes the app matches before routing (none left out)."""
    document = app.openapi()["paths"]
    walked = []
    for path, item in document.items():
        for method, operation in item.items():
            permission = operation.get("x-permission")
            if permission is None:
                continue
            [route] = [
                r for r in app.api_routes if r.path_format == path and method.upper() in (r.methods or ())
            ]
            walked.append((route, method.upper(), str(permission)))
    return walked


def _concrete(route: APIRoute) -> str:
    """The route's path with each parameter filled: a ``{name:path}`` one gets an issuer-qualified user id
    (holding ``/``, sent as ``%2F``), any other a plain id."""
    path = route.path_format
    for name, convertor in route.param_convertors.items():
        value = ISSUER_USER if isinstance(convertor, PathConvertor) else "zz1"
        path = path.replace("{" + name + "}", quote(value, safe=""))
    return path


def _events(stack: Stack) -> list[dict[str, Any]]:
    with stack.engine.connect() as conn:
        return [json.loads(b) for (b,) in conn.execute(sa.text("SELECT body FROM audit_events"))]


def _event(stack: Stack, request_id: str) -> dict[str, Any]:
    [event] = [b for b in _events(stack) if b["request_id"] == request_id]
    return event


def test_the_walk_covers_the_routes_with_a_path_parameter_holding_a_slash(app: GatewayApp) -> None:
    slashed = [r.path for r, _, _ in _permitted_routes(app) if "%2F" in _concrete(r)]
    assert "/api/v1/users/{user_id:path}/revoke-sessions" in slashed


def test_every_administrative_refusal_names_the_permission_its_route_asks_for(
    stack: Stack, app: GatewayApp
) -> None:
    permissions = load_permissions()
    wrong = []
    for route, method, permission in _permitted_routes(app):
        url = f"{stack.base_url}{_concrete(route)}"
        anonymous = httpx.request(method, url, json={"reason": "核查"}, timeout=30)
        found = (anonymous.status_code, _event(stack, anonymous.headers["x-request-id"]))
        if (
            found[0] != 401
            or found[1]["kind"] != "auth.refused"
            or found[1]["details"] != {"permission": permission}
        ):
            wrong.append((method, route.path, "anonymous", found[0], found[1]["details"]))
        action, resource = permission.split(" ", 1)
        who = next((u for u, role in USERS if not permissions.is_allowed((role,), resource, action)), None)
        if who is None:
            continue
        headers = {"Authorization": f"Bearer {token_as(stack, who)}"}
        refused = httpx.request(method, url, json={"reason": "核查"}, headers=headers, timeout=30)
        event = _event(stack, refused.headers["x-request-id"])
        if (refused.status_code, event["kind"], event["details"].get("permission")) != (
            403,
            "admin.refused",
            permission,
        ):
            wrong.append((method, route.path, who, refused.status_code, event["details"]))
    assert wrong == []
    # The issuer-qualified id is no target an event records (a person's id, not the platform's).
    assert "idp.example.gov.cn" not in str(_events(stack))
