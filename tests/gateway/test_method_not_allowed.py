"""A method an address does not take: 405 with the ``Allow`` header, saying which methods it takes.

Found by fuzzing the running demo (schemathesis): ``DELETE /api/v1/grants`` answered 405 with no ``Allow``
header (RFC 9110 §15.5.6: the server MUST send one) and "请求无法处理。" ("cannot be handled"), which
tells the caller nothing. Starlette's own header would have named only the first route of the address
(``Allow: POST`` for ``/api/v1/grants``, which takes GET too). Table: (method, address, methods it takes).
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
    ("method", "path", "allowed"),
    [
        ("DELETE", "/api/v1/grants", ["GET", "POST"]),
        ("PUT", "/api/v1/grants/grt_x/approve", ["POST"]),
        ("POST", "/api/v1/admission/systems/x/outbound-credential", ["PUT", "DELETE"]),
        ("TRACE", "/healthz", ["GET"]),
        ("GET", "/oauth/token", ["POST"]),
        ("PUT", "/api/v1/datasets/residents/records", ["GET"]),
    ],
)
def test_the_answer_names_the_methods_the_address_takes(
    stack: Stack, method: str, path: str, allowed: list[str]
) -> None:
    headers = {"Authorization": f"Bearer {stack.token('cadre_a')}"}
    resp = httpx.request(method, f"{stack.base_url}{path}", headers=headers, timeout=30)
    assert resp.status_code == 405, resp.text
    assert resp.headers["allow"] == ", ".join(allowed)
    body = resp.json()
    assert body["error"] == "method_not_allowed" and body["allowed_methods"] == allowed
    assert (
        body["message"].startswith("此接口地址不接受这种请求方法") and "、".join(allowed) in body["message"]
    )
    assert body["request_id"] == resp.headers["x-request-id"]
    assert method not in body["message"].replace("、".join(allowed), "")
