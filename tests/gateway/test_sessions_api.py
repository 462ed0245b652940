"""Signing out and revoking a user's sessions, through the real stack (SQLite and PostgreSQL).

A sign-out refuses the very token presented, at once in the gateway that took it and within a policy poll
in another process on the same database; an administrator's revocation refuses every token of the user
issued before it, and a token issued afterwards is accepted. Both are audit events that hold no token,
and the refused requests are audited as refusals. The users these tests cut off are made up (their own
``sub``), so the module's other tests keep their demo users.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import jwt
import pytest

from tests.gateway.auth.conftest import ecdsa_twin
from tests.gateway.test_grants_api import events, last_seq, token_as, user_id
from tests.stack import Stack

#: The stack polls every 0.2 s; a revocation must reach another process well within this.
PROPAGATION_S = 5.0
REVOKED = (401, "session_revoked")


def _call(base_url: str, method: str, path: str, token: str | None, body: Any = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, f"{base_url}/api/v1{path}", json=body, headers=headers, timeout=30.0)


def _me(base_url: str, token: str) -> tuple[int, str]:
    answer = _call(base_url, "GET", "/me", token)
    return answer.status_code, "" if answer.status_code == 200 else answer.json()["error"]


def _read(stack: Stack, token: str) -> tuple[int, str]:
    answer = httpx.get(
        stack.records_url,
        params={"scenario": "DIBAO_REVIEW", "page_size": 5},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30.0,
    )
    return answer.status_code, "" if answer.status_code == 200 else answer.json()["error"]


def _someone(stack: Stack) -> str:
    """A token of a cadre of village A under a made-up user id of its own."""
    return token_as(stack, "cadre_a", sub=f"u-{uuid.uuid4().hex[:12]}")


def _without_jti(stack: Stack, sub: str, lifetime_s: int) -> str:
    good = stack.token("cadre_a")
    header = jwt.get_unverified_header(good)
    body = jwt.decode(good, options={"verify_signature": False})
    del body["jti"]
    body.update(sub=sub, exp=body["iat"] + lifetime_s)
    pem = (stack.data_dir / "keys" / "dev-idp-signing.pem").read_bytes()
    return jwt.encode(body, pem, algorithm=header["alg"], headers={"kid": header["kid"], "typ": "at+jwt"})


def _after_this_second(instant: float) -> None:
    """Wait until the clock is past ``instant``'s whole second: a token's ``iat`` is whole seconds, and one
    issued within the revocation's own second counts as issued before it (refused: fail closed)."""
    while time.time() < int(instant) + 1:
        time.sleep(0.05)


def _sub(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


def _jti(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


def _until(check: Any, what: str) -> None:
    deadline = time.monotonic() + PROPAGATION_S
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {PROPAGATION_S}s: {what}")
        time.sleep(0.05)


# -- sign-out -------------------------------------------------------------------------------------------


def test_a_signed_out_token_is_refused_at_once_with_a_chinese_first_message(stack: Stack) -> None:
    seq = last_seq(stack)
    token = _someone(stack)
    assert _me(stack.base_url, token) == (200, "")
    assert _read(stack, token) == (200, "")

    out = _call(stack.base_url, "POST", "/me/logout", token)
    assert out.status_code == 200, out.text
    assert out.json()["message"].startswith("已退出登录")

    again = _call(stack.base_url, "GET", "/me", token)
    assert (again.status_code, again.json()["error"]) == REVOKED
    assert again.json()["message"] == "该登录已注销或已被管理员撤销，请重新登录。"
    assert "signed out or revoked" in again.json()["message_en"]
    assert again.headers["WWW-Authenticate"].startswith('Bearer realm="grassroots", error="invalid_token"')
    assert _read(stack, token) == REVOKED
    assert (_call(stack.base_url, "POST", "/me/logout", token).status_code, "twice") == (401, "twice")

    # Only that token: the same user's other sign-in keeps working.
    assert _me(stack.base_url, token_as(stack, "cadre_a", sub=_sub(token))) == (200, "")

    recorded = events(stack, "", seq)
    bodies = " ".join(str(e) for e in recorded)
    assert token not in bodies and _jti(token) not in bodies
    logouts = [e for e in recorded if e["kind"] == "auth.logout"]
    assert [(e["actor"], e["body"]["details"]["user_id"], e["body"]["details"]["by"]) for e in logouts] == [
        (_sub(token), _sub(token), "jti")
    ]
    refusals = [e["body"] for e in recorded if e["body"]["outcome"] == "refused"]
    assert {r["reason"] for r in refusals} == {"session_revoked"}
    assert {r["kind"] for r in refusals} >= {"auth.refused"}
    assert len(refusals) >= 3  # /me, the read, the second sign-out
    # Which village's signed-out token came back (cadre_a's 东风村), charged to no organisation.
    assert {(r["details"]["claimed_org"], r["actor_org"]) for r in refusals} == {("310151101201", None)}


def test_a_token_without_a_jti_is_signed_out_by_its_digest(stack: Stack) -> None:
    sub = f"u-{uuid.uuid4().hex[:12]}"
    first, second = _without_jti(stack, sub, 3000), _without_jti(stack, sub, 3100)
    assert _call(stack.base_url, "POST", "/me/logout", first).status_code == 200
    assert _me(stack.base_url, first) == REVOKED
    # The same token with its ES256 signature rewritten (valid without the key) is the same sign-in.
    assert _me(stack.base_url, ecdsa_twin(first)) == REVOKED
    assert _me(stack.base_url, second) == (200, "")
    logout = events(stack, "auth.logout")[-1]
    assert logout["body"]["details"]["by"] == "sha256"


# -- an administrator cuts a user off -------------------------------------------------------------------


def test_revoking_a_users_sessions_refuses_their_old_tokens_and_accepts_a_new_sign_in(stack: Stack) -> None:
    seq = last_seq(stack)
    sub = f"u-{uuid.uuid4().hex[:12]}"
    phone, laptop = (
        token_as(stack, "cadre_a", sub=sub),
        token_as(stack, "cadre_a", sub=sub, exp=int(time.time()) + 60),
    )
    bystander = _someone(stack)
    assert _read(stack, phone) == (200, "")

    path = f"/users/{sub}/revoke-sessions"
    answer = _call(
        stack.base_url, "POST", path, stack.token("platform_admin"), {"reason": "调离本村，收回权限"}
    )
    assert answer.status_code == 200, answer.text
    revoked_at = time.time()
    assert answer.json()["user_id"] == sub
    assert answer.json()["seen_in_audit_log"] is True
    assert "注意" not in answer.json()["message"]

    assert _read(stack, phone) == REVOKED
    assert _me(stack.base_url, laptop) == REVOKED
    assert _me(stack.base_url, bystander) == (200, "")

    _after_this_second(revoked_at)
    assert _read(stack, token_as(stack, "cadre_a", sub=sub)) == (200, "")

    revoked = events(stack, "auth.sessions_revoked", seq)
    assert [
        (e["actor"], e["body"]["details"]["user_id"], e["body"]["details"]["reason"]) for e in revoked
    ] == [(user_id(stack, "platform_admin"), sub, "调离本村，收回权限")]


def test_revoking_a_user_id_no_request_ever_came_from_says_so(stack: Stack) -> None:
    """A platform administrator typed the cadre's user name (``cadre_b``) or her name for her user id: the
    answer said every token of the user was revoked, and nothing told her that no token names such a user.
    The revocation is still recorded (a user may hold a token not yet used), and the answer says to check."""
    typed = f"cadre_{uuid.uuid4().hex[:6]}"
    answer = _call(
        stack.base_url,
        "POST",
        f"/users/{typed}/revoke-sessions",
        stack.token("platform_admin"),
        {"reason": "调离本村，收回权限"},
    )
    assert answer.status_code == 200, answer.text
    said = answer.json()
    assert said["seen_in_audit_log"] is False
    assert "没有该用户标识的任何请求" in said["message"]
    assert "GET /api/v1/me" in said["message"]
    assert "holds no request by this user id" in said["message_en"]
    assert said["message_en"].isascii()


@pytest.mark.parametrize("typed", ["110105194912310025", "一三八一二三四五六七八"])
def test_a_mistyped_id_number_for_a_user_id_never_reaches_the_audit_log(stack: Stack, typed: str) -> None:
    """An ID number with one wrong check character (or a mobile in numerals) typed for the user id was
    revoked as typed and kept, in plain text, in auth.sessions_revoked. Refused now unless a request by that
    user id is on record (a provider's numeric sub stays revocable once it has been used)."""
    seq = last_seq(stack)
    answer = _call(
        stack.base_url,
        "POST",
        f"/users/{typed}/revoke-sessions",
        stack.token("platform_admin"),
        {"reason": "调离本村"},
    )
    assert (answer.status_code, answer.json()["error"]) == (422, "personal_data_in_user_id")
    assert typed not in answer.text
    assert events(stack, "auth.sessions_revoked", seq) == []


def test_a_token_living_longer_than_a_revocation_is_kept_is_refused(stack: Stack) -> None:
    """A user's revocation is kept GRASSROOTS_OIDC_MAX_TOKEN_LIFETIME_S (plus the leeway), then forgotten.
    Nothing checked that tokens live no longer: one issued before the revocation, valid for longer (a
    provider configured for day-long tokens, the setting left shorter), was accepted again once the
    revocation was pruned. A token outliving the setting is refused from the start now, so every token a
    revocation covers has expired before it is forgotten."""
    sub = f"u-{uuid.uuid4().hex[:12]}"
    with stack.another_gateway(GRASSROOTS_OIDC_MAX_TOKEN_LIFETIME_S="600") as gateway:
        assert _me(gateway, _without_jti(stack, sub, 600)) == (200, "")
        refused = _call(gateway, "GET", "/me", _without_jti(stack, sub, 601))
        assert (refused.status_code, refused.json()["error"]) == (401, "token_lifetime_too_long")
        assert refused.json()["message"].startswith("登录凭证的有效期超过了本平台允许的最长时限")
        assert "GRASSROOTS_OIDC_MAX_TOKEN_LIFETIME_S" in refused.json()["message_en"]


@pytest.mark.parametrize(
    ("who", "path", "body", "expected"),
    [
        ("cadre_a", "/users/u-someone/revoke-sessions", {"reason": "试试"}, (403, "no_permission")),
        ("supervisor", "/users/u-someone/revoke-sessions", {"reason": "试试"}, (403, "no_permission")),
        ("platform_admin", "/users/u-someone/revoke-sessions", {"reason": " "}, (422, "missing_reason")),
        (
            "platform_admin",
            "/users/11010519491231002X/revoke-sessions",
            {"reason": "调离"},
            (422, "personal_data_in_user_id"),
        ),
        (None, "/users/u-someone/revoke-sessions", {"reason": "调离"}, (401, "missing_token")),
        # an escape (a terminal sequence in an export; a newline matches no route at all) and a bidi override
        (
            "platform_admin",
            "/users/u-x%1B[2K/revoke-sessions",
            {"reason": "调离"},
            (422, "invalid_user_id"),
        ),
        (
            "platform_admin",
            "/users/u-%E2%80%AEnimda/revoke-sessions",
            {"reason": "调离"},
            (422, "invalid_user_id"),
        ),
        # pasted with a space before or after it: it names no token's user, so it would revoke no one
        (
            "platform_admin",
            "/users/%20u-someone/revoke-sessions",
            {"reason": "调离"},
            (422, "invalid_user_id"),
        ),
        (
            "platform_admin",
            "/users/u-someone%20/revoke-sessions",
            {"reason": "调离"},
            (422, "invalid_user_id"),
        ),
        (
            "platform_admin",
            "/users/u-someone%E3%80%80/revoke-sessions",
            {"reason": "调离"},
            (422, "invalid_user_id"),
        ),
    ],
)
def test_only_the_platform_administrator_revokes_sessions_with_a_reason_and_a_real_user_id(
    stack: Stack, who: str | None, path: str, body: dict[str, str], expected: tuple[int, str]
) -> None:
    seq = last_seq(stack)
    answer = _call(stack.base_url, "POST", path, stack.token(who) if who else None, body)
    assert (answer.status_code, answer.json()["error"]) == expected
    assert "11010519491231002X" not in answer.text
    assert events(stack, "auth.sessions_revoked", seq) == []
    if expected[0] == 403:
        assert [e["body"]["reason"] for e in events(stack, "admin.refused", seq)] == ["no_permission"]


# -- across processes -----------------------------------------------------------------------------------


def test_another_gateway_process_refuses_within_its_poll(stack: Stack) -> None:
    signed_out, cut_off = _someone(stack), _someone(stack)
    with stack.another_gateway() as other:
        assert _me(other, signed_out) == (200, "") and _me(other, cut_off) == (200, "")

        # Signed out at the first gateway: the second refuses within its poll.
        assert _call(stack.base_url, "POST", "/me/logout", signed_out).status_code == 200
        _until(lambda: _me(other, signed_out) == REVOKED, "the other process refuses a signed-out token")

        # Revoked at the second gateway: it refuses at once, the first within its poll.
        admin = stack.token("platform_admin")
        answer = _call(
            other, "POST", f"/users/{_sub(cut_off)}/revoke-sessions", admin, {"reason": "手机遗失"}
        )
        assert answer.status_code == 200, answer.text
        assert _me(other, cut_off) == REVOKED
        _until(lambda: _me(stack.base_url, cut_off) == REVOKED, "the first process refuses a revoked user")


# -- the command line -----------------------------------------------------------------------------------


def _revoke_by_cli(stack: Stack, sub: str, who: str) -> Any:
    args = ("sessions", "revoke", sub, "--reason", "调离", "--as", who, "--url", stack.base_url)
    return stack.cli(*args, check=False)


def test_the_command_line_signs_out_a_token_and_revokes_a_users_sessions(stack: Stack) -> None:
    token, cut_off = _someone(stack), _someone(stack)
    out = stack.cli("logout", "--token", token, "--url", stack.base_url)
    assert out.stdout.startswith("已退出登录"), out.stdout
    assert _me(stack.base_url, token) == REVOKED

    # Signed out twice: the token already does not work, which is what the cadre asked for (exit 0).
    again = stack.cli("logout", "--token", token, "--url", stack.base_url, check=False)
    assert (again.returncode, again.stdout.startswith("该登录凭证此前已退出登录")) == (0, True)
    assert "nothing more is needed" in again.stdout and token not in again.stdout + again.stderr
    # Every other command still refuses the token (exit 1).
    other = stack.cli("grants", "list", "--token", token, "--url", stack.base_url, check=False)
    assert (other.returncode, other.stderr.startswith("session_revoked:")) == (1, True), other.stderr

    refused = _revoke_by_cli(stack, _sub(cut_off), "cadre_a")
    assert refused.returncode == 1 and refused.stderr.startswith("no_permission: 您的岗位无权撤销用户的登录")
    assert _me(stack.base_url, cut_off) == (200, "")

    done = _revoke_by_cli(stack, _sub(cut_off), "platform_admin")
    assert done.returncode == 0 and done.stdout.startswith("该用户此前签发的全部登录凭证已撤销"), done.stdout
    assert _me(stack.base_url, cut_off) == REVOKED
    # The cut-off user signing out: already done, exit 0.
    late = stack.cli("logout", "--token", cut_off, "--url", stack.base_url, check=False)
    assert (late.returncode, late.stdout.startswith("该登录凭证此前已退出登录")) == (0, True), late.stdout


def _forged(token: str) -> str:
    return token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")


def test_the_command_line_never_takes_a_forged_token_for_a_signed_out_or_expired_one(stack: Stack) -> None:
    token = _someone(stack)
    expired = _without_jti(stack, _sub(token), lifetime_s=-3600)
    # Forged, expired or not: the gateway answers invalid_token (the signature fails before any claim is
    # read), so logout fails, though the forged expired token's own exp says it is long past.
    for bad in (_forged(token), _forged(expired)):
        out = stack.cli("logout", "--token", bad, "--url", stack.base_url, check=False)
        assert out.returncode == 1 and out.stderr.startswith("invalid_token:"), out.stderr
        assert "过期" not in out.stdout + out.stderr


def test_logout_on_a_token_the_gateway_finds_expired_says_nothing_is_needed(stack: Stack) -> None:
    """Before, the gateway's expired_token ended logout with exit 1 and "sign in again", though an expired
    token needs no sign-out: scripts signing out in a clean-up step failed. Now said so, exit 0, only on the
    gateway's own answer (the signature held, then exp was past)."""
    expired = _without_jti(stack, f"u-{uuid.uuid4().hex[:12]}", lifetime_s=-3600)
    assert _me(stack.base_url, expired) == (401, "expired_token")
    out = stack.cli("logout", "--token", expired, "--url", stack.base_url, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("该登录凭证已经过期，网关已不再接受，无需退出登录。"), out.stdout
    assert "has already expired" in out.stdout and expired not in out.stdout + out.stderr
    # Every other command still refuses it (exit 1).
    other = stack.cli("grants", "list", "--token", expired, "--url", stack.base_url, check=False)
    assert (other.returncode, other.stderr.startswith("expired_token:")) == (1, True), other.stderr
