"""A token whose subject holds a control character is refused, and the refusal holds nothing of it.

Found by review: a ``sub`` of ``u-forged\\nkind=data.read …`` was accepted, and every audit event of its
requests carried it as the actor, as given: a line of an export or a log forged by whoever can get such a
subject into a token. Refused at validation (401 ``invalid_token``, Chinese first); the refusal's audit
event, the answer and the server log hold no part of the subject. An issuer-qualified user id, with its
"/", still signs in.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.test_grants_api import events, last_seq, token_as
from tests.stack import Stack, stack_fixture

FORGED = "u-forged\nkind=data.read actor=u-someone-else"


@pytest.fixture(scope="module")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("log") / "gateway-stderr.txt"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, server_log: Path) -> Iterator[Stack]:
    yield from stack_fixture("sqlite", tmp_path_factory, gateway_errors=server_log)


@pytest.mark.parametrize("sub", [FORGED, "u-forged\r\n", "u-\u202etsil-kcalb", "u\x1b[31m"])
def test_a_subject_with_a_control_character_is_refused_and_not_recorded(
    stack: Stack, server_log: Path, sub: str
) -> None:
    before = last_seq(stack)
    token = token_as(stack, "cadre_a", sub=sub)
    for path in ("/api/v1/me", "/api/v1/datasets/residents/records?scenario=DIBAO_REVIEW&page_size=1"):
        resp = httpx.get(f"{stack.base_url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert resp.status_code == 401, resp.text
        body = resp.json()
        assert body["error"] == "invalid_token" and body["message"] != body["message_en"], body
        assert body["message_en"].isascii() and "u-forged" not in resp.text
    recorded = events(stack, "", before)
    assert recorded, "the refusals are audit events"
    assert all(e["actor"] == "anonymous" for e in recorded), recorded
    stored = repr(recorded)
    assert "forged" not in stored and "tsil" not in stored and "\\x1b" not in stored
    logged = server_log.read_text(encoding="utf-8", errors="replace")
    assert "forged" not in logged and "tsil" not in logged and "\x1b" not in logged


def test_a_printable_issuer_qualified_subject_still_signs_in(stack: Stack) -> None:
    sub = "https://idp.example.gov.cn/realms/cm/u-0001"
    token = token_as(stack, "cadre_a", sub=sub)
    me = httpx.get(f"{stack.base_url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert me.status_code == 200 and me.json()["user_id"] == sub, me.text
