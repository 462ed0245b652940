"""An address with a trailing slash: one answer, in the same words on both doors, naming the address to use.

Before, ``GET /api/v1/admission/systems/`` answered "请去掉末尾的斜杠后重试（例如 /api/v1/grants，而不是
/api/v1/grants/）" whatever the address (a new user read about grants while asking for systems), while the
data path said "本次未返回任何数据…地址形如 /api/v1/datasets/{dataset}/records": two wordings, one naming an
unrelated example, neither saying whether a POST had done anything. Now both say that nothing was done, and
the form of the address the request was meant for (never the path sent).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.stack import Stack, stack_fixture

NOTHING_DONE = "接口地址末尾多了斜杠“/”，本次请求未被处理，没有读取或更改任何数据。请去掉末尾的斜杠后重新发送"
NOTHING_DONE_EN = (
    'The address ends in a slash "/": the request was not carried out, and nothing was read or changed.'
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from stack_fixture("sqlite", tmp_path_factory)


def ask(stack: Stack, method: str, path: str, user: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {stack.token(user)}"}
    return httpx.request(method, f"{stack.base_url}{path}", headers=headers, timeout=30, **kwargs)


@pytest.mark.parametrize(
    ("method", "path", "user", "kwargs", "form"),
    [
        ("GET", "/api/v1/admission/systems/", "rv_civil_affairs", {}, "/api/v1/admission/systems"),
        (
            "GET",
            "/api/v1/admission/systems/civil-affairs-registry/",
            "rv_civil_affairs",
            {},
            "/api/v1/admission/systems/{system_id}",
        ),
        ("POST", "/api/v1/grants/", "cadre_a", {"json": {"scenario": "DIBAO_REVIEW"}}, "/api/v1/grants"),
        (
            "GET",
            "/api/v1/datasets/residents/records/",
            "cadre_a",
            {"params": {"scenario": "DIBAO_REVIEW"}},
            "/api/v1/datasets/{dataset}/records",
        ),
        (
            "GET",
            "/api/v1/datasets/residents/records/R075f2e45/",
            "cadre_a",
            {"params": {"scenario": "DIBAO_REVIEW"}},
            "/api/v1/datasets/{dataset}/records/{record_id}",
        ),
    ],
)
def test_the_answer_names_the_address_to_use_and_that_nothing_was_done(
    stack: Stack, method: str, path: str, user: str, kwargs: dict[str, Any], form: str
) -> None:
    resp = ask(stack, method, path, user, **kwargs)
    assert resp.status_code == 404, resp.text
    assert "location" not in resp.headers
    body = resp.json()
    assert body["error"] == "trailing_slash"
    message, message_en = str(body["message"]), str(body["message_en"])
    assert message.startswith(NOTHING_DONE) and message_en.startswith(NOTHING_DONE_EN)
    braces = "{" in form
    assert message.endswith(f"正确的地址形如 {form}" + ("（花括号处填实际的值）" if braces else "") + "。")
    assert message_en.endswith(
        f"send it again to {form}"
        + (" (with the real values in place of the braces)" if braces else "")
        + "."
    )
    assert "/api/v1/grants" not in message or form == "/api/v1/grants"


@pytest.mark.parametrize("path", ["/api/v1/residents", "/api/v1/residents/"])
def test_an_address_the_gateway_does_not_serve_says_so_with_or_without_the_slash(
    stack: Stack, path: str
) -> None:
    """The slash is not the trouble there: both answer "no such endpoint", pointing at the list of them."""
    resp = ask(stack, "GET", path, "cadre_a")
    assert resp.status_code == 404, resp.text
    body = resp.json()
    assert body["error"] == "no_route"
    assert "/docs" in str(body["message"]) and "/docs" in str(body["message_en"])
