"""The OpenAPI document describes the API the gateway serves: how to sign in, and its one error shape.

Found by fuzzing the running demo against its own document (schemathesis): the sign-in token was an
``authorization`` header *parameter* of 90 operations (which OpenAPI 3.1 says tools ignore), so a client
generator or fuzzer sent made-up values there; no security scheme was declared (no "Authorize" in /docs);
every error status but 422 was undocumented, and the 422 was documented as FastAPI's ``{"detail": [...]}``,
a shape the gateway never answers. Checked on the document the running gateway serves, and against its
real answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.stack import Stack, stack_fixture


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from stack_fixture("sqlite", tmp_path_factory)


@pytest.fixture(scope="module")
def spec(stack: Stack) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{stack.base_url}/openapi.json", timeout=30).json()
    return document


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in spec["paths"].items() for method, op in item.items()]


def test_sign_in_is_a_security_scheme_not_a_header_parameter(spec: dict[str, Any]) -> None:
    as_parameter = [
        (method, path)
        for method, path, op in operations(spec)
        if any(p["in"] == "header" and p["name"].lower() == "authorization" for p in op.get("parameters", []))
    ]
    assert as_parameter == []
    schemes = spec["components"]["securitySchemes"]
    assert schemes["signIn"] == {**schemes["signIn"], "type": "http", "scheme": "bearer"}
    secured = {(method, path): op.get("security") for method, path, op in operations(spec)}
    assert secured[("GET", "/api/v1/datasets/{dataset}/records")] == [{"signIn": []}]
    assert secured[("POST", "/api/v1/grants")] == [{"signIn": []}]
    assert secured[("GET", "/api/v1/systems/me")] == [{"systemToken": []}]
    assert secured[("GET", "/healthz")] is None
    # Every operation that authenticates says so: those without a scheme are the public ones.
    public = {path for (method, path), security in secured.items() if security is None}
    assert public == {
        "/healthz",
        "/readyz",
        "/oauth/jwks",
        "/service/jwks",
        "/.well-known/oauth-authorization-server",
        "/dev-idp/.well-known/openid-configuration",
        "/dev-idp/jwks.json",
        "/dev-idp/token",
    }


def test_every_error_is_documented_in_the_house_shape(spec: dict[str, Any]) -> None:
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error", "message", "message_en"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for method, path, op in operations(spec):
        responses = op["responses"]
        assert responses["default"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }, (method, path)
        if "422" in responses:
            assert responses["422"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }, (method, path)


def test_operation_ids_are_the_endpoints_names(spec: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in operations(spec)]
    assert len(ids) == len(set(ids))
    by_route = {(method, path): op["operationId"] for method, path, op in operations(spec)}
    assert by_route[("GET", "/api/v1/grants")] == "list_grants"
    assert by_route[("GET", "/api/v1/datasets/{dataset}/records")] == "list_records"


@pytest.mark.parametrize(
    ("method", "path", "user", "params", "status"),
    [
        ("GET", "/api/v1/grants", None, {}, 401),
        ("GET", "/api/v1/datasets/residents/records", None, {"scenario": "DIBAO_REVIEW"}, 401),
        ("GET", "/api/v1/grants", "ca_steward", {"limit": "0"}, 422),
        ("GET", "/api/v1/supervision/events", "cadre_a", {}, 403),
        ("GET", "/api/v1/no-such-thing", "cadre_a", {}, 404),
    ],
)
def test_the_answers_have_the_documented_shape(
    stack: Stack, spec: dict[str, Any], method: str, path: str, user: str | None, params: Any, status: int
) -> None:
    headers = {"Authorization": f"Bearer {stack.token(user)}"} if user else {}
    resp = httpx.request(method, f"{stack.base_url}{path}", params=params, headers=headers, timeout=30)
    assert resp.status_code == status, resp.text
    body = resp.json()
    schema = spec["components"]["schemas"]["Error"]
    assert set(schema["required"]) <= set(body)
    for name, value in body.items():
        declared = schema["properties"].get(name)
        if declared is None:
            continue
        kinds = declared["type"] if isinstance(declared["type"], list) else [declared["type"]]
        python = {"string": str, "null": type(None), "array": list}
        assert isinstance(value, tuple(python[k] for k in kinds)), (name, value)


@pytest.mark.parametrize(
    ("path", "user", "fmt"),
    [
        ("/api/v1/supervision/reports/monthly", "supervisor", "csv"),
        ("/api/v1/supervision/reports/monthly", "supervisor", "html"),
        ("/api/v1/admission/burden/report", "rv_civil_affairs", "csv"),
    ],
)
def test_the_other_formats_are_documented(
    stack: Stack, spec: dict[str, Any], path: str, user: str, fmt: str
) -> None:
    """A report asked for as CSV, a page or a PDF answered a media type the document did not name (JSON
    only): a client generated from it could not read the answer."""
    headers = {"Authorization": f"Bearer {stack.token(user)}"}
    resp = httpx.get(f"{stack.base_url}{path}", params={"format": fmt}, headers=headers, timeout=60)
    assert resp.status_code == 200, resp.text
    media_type = resp.headers["content-type"].split(";")[0]
    assert media_type in spec["paths"][path]["get"]["responses"]["200"]["content"]


def test_the_registration_body_is_documented_as_accepted(spec: dict[str, Any]) -> None:
    """POST/PATCH /admission/systems read their JSON by hand (a misspelt key is refused, not dropped), so
    the document had no request body for them: a department's client generated from it could not register
    a system. The documented keys are exactly those a registration takes, and the required ones those a
    draft is refused without."""
    from admission import EDITABLE_FIELDS
    from admission.model import _REQUIRED

    ops = {(method, path): op for method, path, op in operations(spec)}
    draft = ops[("POST", "/api/v1/admission/systems")]["requestBody"]["content"]["application/json"]["schema"]
    change = ops[("PATCH", "/api/v1/admission/systems/{system_id}")]["requestBody"]["content"][
        "application/json"
    ]["schema"]
    assert set(draft["properties"]) == {"system_id", "department", *EDITABLE_FIELDS}
    assert set(change["properties"]) == set(draft["properties"])
    assert draft["required"] == [key for key, _, _ in _REQUIRED]
    assert "required" not in change
