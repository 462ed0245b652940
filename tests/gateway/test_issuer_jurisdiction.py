"""Which organisations an identity provider may vouch for, through the real stack.

The provider's word on a user's organisation decides the user's jurisdiction. In a national deployment each
province or city runs its own provider, and one that is misconfigured or taken over could sign users into
any other district. A gateway whose provider is given a jurisdiction (GRASSROOTS_OIDC_ISSUER_JURISDICTIONS)
refuses its tokens for organisations outside it: 401 ``org_outside_issuer``, audited like every refused
sign-in, the token nowhere in the record. Here a second gateway process on the stack's database trusts the
development IdP for township 城桥镇 (310151101) only: 东风村's cadre is let in, 星桥村's (township 102) and
the district's supervisor are not, while the stack's own gateway (no jurisdiction) still takes all three.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest

from tests.gateway.test_grants_api import events, last_seq
from tests.stack import Stack, stack_fixture


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from stack_fixture("sqlite", tmp_path_factory)


@pytest.fixture(scope="module")
def township_gateway(stack: Stack) -> Iterator[str]:
    jurisdiction = json.dumps({f"{stack.base_url}/dev-idp": ["310151101000"]})
    with stack.another_gateway(GRASSROOTS_OIDC_ISSUER_JURISDICTIONS=jurisdiction) as url:
        yield url


def _get(base_url: str, path: str, token: str, **params: str) -> httpx.Response:
    return httpx.get(
        f"{base_url}{path}", params=params, headers={"Authorization": f"Bearer {token}"}, timeout=30.0
    )


def _outside(answer: httpx.Response) -> dict[str, str]:
    assert (answer.status_code, answer.json()["error"]) == (401, "org_outside_issuer"), answer.text
    assert answer.headers["WWW-Authenticate"].startswith('Bearer realm="grassroots", error="invalid_token"')
    body: dict[str, str] = answer.json()
    assert body["message"].startswith("登录凭证所属的组织不在签发它的统一身份认证服务可认定的辖区内")
    assert "outside the jurisdiction its identity provider may vouch for" in body["message_en"]
    return body


@pytest.mark.parametrize(("who", "inside"), [("cadre_a", True), ("cadre_c", False), ("supervisor", False)])
def test_a_provider_vouches_only_for_the_organisations_of_its_jurisdiction(
    stack: Stack, township_gateway: str, who: str, inside: bool
) -> None:
    token = stack.token(who)
    assert _get(stack.base_url, "/api/v1/me", token).status_code == 200  # unrestricted: as before
    answer = _get(township_gateway, "/api/v1/me", token)
    if inside:
        assert answer.status_code == 200, answer.text
    else:
        _outside(answer)


def test_a_refused_data_request_is_audited_without_the_token(stack: Stack, township_gateway: str) -> None:
    token = stack.token("cadre_c")
    seq = last_seq(stack)
    _outside(_get(township_gateway, "/api/v1/datasets/residents/records", token, scenario="DIBAO_REVIEW"))
    (event,) = events(stack, "data.", seq)
    assert (event["kind"], event["actor"], event["body"]["outcome"], event["body"]["reason"]) == (
        "data.list",
        "anonymous",
        "refused",
        "org_outside_issuer",
    )
    # Which village's sign-in failed (星桥村, a division code): the token's own claim, its provider's
    # signature verified; charged to no organisation (actor_org), as the token was not accepted.
    assert event["body"]["details"]["claimed_org"] == "310151102201"
    assert event["body"]["actor_org"] is None
    assert not any(part in json.dumps(event["body"]) for part in token.split("."))


def test_a_refused_administrative_request_is_audited_without_the_token(
    stack: Stack, township_gateway: str
) -> None:
    token = stack.token("supervisor")
    seq = last_seq(stack)
    _outside(_get(township_gateway, "/api/v1/masking/catalog", token))
    (event,) = events(stack, "auth.refused", seq)
    assert (event["actor"], event["body"]["reason"], event["body"]["details"]) == (
        "anonymous",
        "org_outside_issuer",
        {"permission": "read masking", "claimed_org": "310151000000"},
    )
    assert not any(part in json.dumps(event["body"]) for part in token.split("."))


def _tampered(token: str) -> str:
    """The token with one claim changed and its signature kept: the signature no longer holds."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = ["platform_admin"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_a_refused_sign_in_names_the_organisation_its_provider_signed_and_no_other(stack: Stack) -> None:
    """A supervisor reading the failed sign-ins can tell which village's fail (an expired token, a revoked
    one); a token whose signature does not hold names none (its claims are whatever the sender wrote)."""
    for token, reason, claimed in (
        (stack.expired_token("cadre_b"), "expired_token", "310151101202"),
        (_tampered(stack.token("cadre_b")), "invalid_token", None),
    ):
        seq = last_seq(stack)
        refused = _get(stack.base_url, "/api/v1/masking/catalog", token)
        assert (refused.status_code, refused.json()["error"]) == (401, reason)
        assert "310151101202" not in refused.text  # the answer names nothing of the token
        (event,) = events(stack, "auth.refused", seq)
        assert (event["body"]["reason"], event["body"]["details"].get("claimed_org")) == (reason, claimed)
        assert event["body"]["actor_org"] is None
