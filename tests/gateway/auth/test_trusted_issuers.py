"""Several trusted identity providers (a township's and a neighbouring township's unified sign-on), each with
its own discovery and keys, its own audience and its own jurisdiction.

Specification: a token is verified by the provider it names and by no other (RFC 8725 §3.8): a key of
provider A never validates a token naming B, even under a ``kid`` B also publishes; a token of A naming an
organisation of B's jurisdiction is refused (``org_outside_issuer``); a token naming no trusted provider is
refused (``wrong_issuer``) before any key is fetched; each provider's tokens must name its own audience.
A ``sub`` (and a ``jti``) is unique at its own provider only (OpenID Connect Core 1.0 §5.7): the user id of a
further provider's user is ``<issuer>#<sub>``, so one ``sub`` at two providers is two users, to sign-outs,
revocations, quotas, separation of duties and the audit log alike.
The two providers are real HTTP issuers on the stand-in provider process; tokens are minted with PyJWT.
Through the whole stack, the gateway's own development IdP is one provider and the stand-in another.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.auth.oidc import AuthError, AuthErrorCode, OIDCVerifier, TrustedIssuers
from gateway.auth.sessions import RevokedSessions, token_key
from gateway.settings import ConfigurationError, IssuerTrust, Settings
from tests.gateway.auth.conftest import AUDIENCE, Keys, Tenant, claims_for, mint
from tests.gateway.test_grants_api import token_as
from tests.stack import Stack, stack_fixture

#: Township 城桥镇 (A's jurisdiction) and township 新河镇 (B's), with a village of each.
TOWNSHIP_A, VILLAGE_A = "310151101", "310151101201"
TOWNSHIP_B, VILLAGE_B = "310151102", "310151102201"
AUDIENCE_B = "grassroots-gateway-township-b"


@dataclass
class TwoProviders:
    a: Tenant
    b: Tenant
    issuers: TrustedIssuers


@pytest.fixture
async def providers(idp_process: tuple[str, Path], keys: Keys) -> AsyncIterator[TwoProviders]:
    base_url, root = idp_process
    a = Tenant(base_url, root, f"a-{uuid.uuid4().hex[:12]}")
    b = Tenant(base_url, root, f"b-{uuid.uuid4().hex[:12]}")
    for tenant in (a, b):
        tenant.publish_discovery()
    a.publish_keys(keys.rsa, keys.ec)
    # B's key is published under the very kid A's RSA key has ("rsa-1"): a different key of the same name.
    b.publish_keys(keys.attacker)
    issuers = TrustedIssuers(
        [
            OIDCVerifier(a.issuer, AUDIENCE, org_prefixes=(TOWNSHIP_A,), http_timeout_s=2.0),
            # As the gateway wires a provider of GRASSROOTS_OIDC_ISSUERS beside GRASSROOTS_OIDC_ISSUER (A).
            OIDCVerifier(
                b.issuer, AUDIENCE_B, org_prefixes=(TOWNSHIP_B,), http_timeout_s=2.0, qualify_subjects=True
            ),
        ]
    )
    yield TwoProviders(a, b, issuers)
    await issuers.aclose()


async def _refused(issuers: TrustedIssuers, token: str) -> AuthErrorCode:
    with pytest.raises(AuthError) as refused:
        await issuers.verify(token)
    return refused.value.code


async def test_each_provider_signs_in_the_users_of_its_own_jurisdiction(
    providers: TwoProviders, keys: Keys
) -> None:
    a, b = providers.a, providers.b
    of_a = await providers.issuers.verify(mint(keys.rsa, claims_for(a.issuer, org_code=VILLAGE_A)))
    of_b = await providers.issuers.verify(
        mint(keys.attacker, claims_for(b.issuer, org_code=VILLAGE_B, aud=AUDIENCE_B))
    )
    assert (of_a.org, of_b.org) == (VILLAGE_A, VILLAGE_B)


async def test_a_token_of_a_cannot_sign_in_a_user_of_bs_jurisdiction(
    providers: TwoProviders, keys: Keys
) -> None:
    a, b = providers.a, providers.b
    token = mint(keys.rsa, claims_for(a.issuer, org_code=VILLAGE_B))
    assert await _refused(providers.issuers, token) == "org_outside_issuer"
    # ... nor the other way round.
    token = mint(keys.attacker, claims_for(b.issuer, org_code=VILLAGE_A, aud=AUDIENCE_B))
    assert await _refused(providers.issuers, token) == "org_outside_issuer"


async def test_keys_of_a_never_validate_a_token_claiming_b(providers: TwoProviders, keys: Keys) -> None:
    a, b = providers.a, providers.b
    before = a.requests(a.jwks_path)
    # Signed with A's RSA key, under the kid B publishes for its own (different) key: B's key is tried, and
    # fails; A's, which would have held, is never tried.
    claiming_b = claims_for(b.issuer, org_code=VILLAGE_B, aud=AUDIENCE_B)
    assert await _refused(providers.issuers, mint(keys.rsa, claiming_b)) == "invalid_token"
    # Signed with A's EC key, a kid only A publishes: unknown to B.
    assert await _refused(providers.issuers, mint(keys.ec, claiming_b)) == "unknown_key"
    assert a.requests(a.jwks_path) == before  # A's key set was not even fetched for them
    # The same keys do validate A's own tokens.
    assert (await providers.issuers.verify(mint(keys.ec, claims_for(a.issuer, org_code=VILLAGE_A)))).org


async def test_each_provider_has_its_own_audience(providers: TwoProviders, keys: Keys) -> None:
    a, b = providers.a, providers.b
    assert await _refused(
        providers.issuers, mint(keys.attacker, claims_for(b.issuer, org_code=VILLAGE_B))
    ) == ("wrong_audience")
    token = mint(keys.rsa, claims_for(a.issuer, org_code=VILLAGE_A, aud=AUDIENCE_B))
    assert await _refused(providers.issuers, token) == "wrong_audience"


async def test_a_token_naming_no_trusted_provider_is_refused_before_any_key_is_fetched(
    providers: TwoProviders, keys: Keys, idp_process: tuple[str, Path]
) -> None:
    base_url, root = idp_process
    stranger = Tenant(base_url, root, f"s-{uuid.uuid4().hex[:12]}")
    stranger.publish_discovery()
    stranger.publish_keys(keys.rsa)
    token = mint(keys.rsa, claims_for(stranger.issuer, org_code=VILLAGE_A))
    with pytest.raises(AuthError) as refused:
        await providers.issuers.verify(token)
    assert refused.value.code == "wrong_issuer" and refused.value.http_status == 401
    assert refused.value.message_zh.startswith("该登录凭证不是由本平台信任的统一身份认证服务签发的")
    assert "not issued by an identity provider this service trusts" in refused.value.message_en
    assert stranger.requests(stranger.discovery_path) == 0
    for unreadable, code in (
        ("a.b.c", "malformed_token"),
        (mint(keys.rsa, claims_for("", iss=None)), "invalid_token"),
    ):
        assert await _refused(providers.issuers, unreadable) == code


# -- one sub at two providers --------------------------------------------------------------------------------


async def test_one_sub_and_jti_at_two_providers_are_two_users_and_two_tokens(
    providers: TwoProviders, keys: Keys
) -> None:
    """Before, the user id was the bare ``sub`` whoever issued it: signing out u123's token at A (jti-0001)
    or revoking u123's sessions also cut off B's u123, who is someone else."""
    a, b = providers.a, providers.b
    same = {"sub": "u123", "jti": "jti-0001"}
    of_a = await providers.issuers.verify(mint(keys.rsa, claims_for(a.issuer, org_code=VILLAGE_A, **same)))
    of_b = await providers.issuers.verify(
        mint(keys.attacker, claims_for(b.issuer, org_code=VILLAGE_B, aud=AUDIENCE_B, **same))
    )
    assert (of_a.user_id, of_b.user_id) == ("u123", f"{b.issuer}#u123")
    assert token_key(of_a) != token_key(of_b)

    later = float(of_a.issued_at or 0) + 1
    a_signed_out = RevokedSessions(version=1, tokens={token_key(of_a): later + 600})
    a_revoked = RevokedSessions(version=1, users={of_a.user_id: later})
    b_revoked = RevokedSessions(version=1, users={of_b.user_id: later})
    assert [s.refuses(of_a) for s in (a_signed_out, a_revoked, b_revoked)] == [True, True, False]
    assert [s.refuses(of_b) for s in (a_signed_out, a_revoked, b_revoked)] == [False, False, True]


async def test_a_bare_sub_reading_as_another_providers_user_or_a_qualified_id_too_long_is_refused(
    providers: TwoProviders, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = providers.a, providers.b
    # The sub itself is checked before it is qualified: a mobile stays out of the audit log's actor.
    mobile = mint(keys.attacker, claims_for(b.issuer, org_code=VILLAGE_B, aud=AUDIENCE_B, sub="13812345678"))
    assert await _refused(providers.issuers, mobile) == "personal_data_in_subject"
    # A's "sub" written as B's user u123 would be taken for him: refused, not merged.
    posing = mint(keys.rsa, claims_for(a.issuer, org_code=VILLAGE_A, sub=f"{b.issuer}#u123"))
    assert await _refused(providers.issuers, posing) == "invalid_token"
    # A qualified id is kept where every table naming a user can hold it (128 characters).
    room = 128 - len(f"{b.issuer}#")
    fits = mint(keys.attacker, claims_for(b.issuer, org_code=VILLAGE_B, aud=AUDIENCE_B, sub="x" * room))
    assert len((await providers.issuers.verify(fits)).user_id) == 128
    caplog.clear()
    too_long = mint(
        keys.attacker, claims_for(b.issuer, org_code=VILLAGE_B, aud=AUDIENCE_B, sub="y" * (room + 1))
    )
    assert await _refused(providers.issuers, too_long) == "invalid_token"
    logged = caplog.text
    assert (
        b.issuer in logged and str(room + 1) in logged and "y" * 20 not in logged and too_long not in logged
    )


def test_at_most_one_provider_keeps_bare_subs() -> None:
    with pytest.raises(ValueError, match="at most one issuer may keep bare subjects"):
        TrustedIssuers(
            [OIDCVerifier("https://a.example", AUDIENCE), OIDCVerifier("https://b.example", AUDIENCE)]
        )
    with pytest.raises(ValueError, match="no fragment"):
        OIDCVerifier("https://b.example/#x", AUDIENCE, qualify_subjects=True)


# -- configuration -------------------------------------------------------------------------------------------


def test_operators_list_further_providers_with_their_audience_and_jurisdiction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GRASSROOTS_OIDC_ISSUER", "https://idp.sh.example/realms/chongming")
    monkeypatch.setenv(
        "GRASSROOTS_OIDC_ISSUER_JURISDICTIONS", '{"https://idp.sh.example/realms/chongming": ["310151"]}'
    )
    monkeypatch.setenv(
        "GRASSROOTS_OIDC_ISSUERS",
        json.dumps(
            [
                {
                    "issuer": "https://sso.township-b.example",
                    "jurisdiction": ["310151102000"],
                    "audience": "gw-b",
                },
                {"issuer": "https://sso.province.example/", "jurisdiction": ["31"]},
            ]
        ),
    )
    assert Settings().trusted_issuers == (
        IssuerTrust("https://idp.sh.example/realms/chongming", "grassroots-gateway", ("310151",)),
        IssuerTrust("https://sso.township-b.example", "gw-b", ("310151102",), qualifies_subjects=True),
        IssuerTrust("https://sso.province.example/", "grassroots-gateway", ("31",), qualifies_subjects=True),
    )
    # The single-issuer settings alone: as before, one provider, unrestricted unless given a jurisdiction.
    monkeypatch.delenv("GRASSROOTS_OIDC_ISSUERS")
    monkeypatch.delenv("GRASSROOTS_OIDC_ISSUER_JURISDICTIONS")
    assert Settings().trusted_issuers == (
        IssuerTrust("https://idp.sh.example/realms/chongming", "grassroots-gateway", None),
    )


@pytest.mark.parametrize(
    ("entries", "said"),
    [
        ([{"issuer": "https://sso.b.example"}], "identity provider #1 must be written"),
        ([{"issuer": "https://sso.b.example", "jurisdicton": ["310151"]}], "with no other key"),
        (
            [{"issuer": "sso.b.example", "jurisdiction": ["310151"]}],
            "identity provider #1: issuer must be a full URL",
        ),
        ([{"issuer": "https://sso.b.example", "jurisdiction": []}], "list at least one division code"),
        ([{"issuer": "https://sso.b.example", "jurisdiction": ["31015"]}], "cut only where"),
        ([{"issuer": "https://sso.b.example", "jurisdiction": ["31"], "audience": ""}], "audience must be"),
        ([{"issuer": "https://sso.b.example/#u", "jurisdiction": ["31"]}], "must not hold '?' or '#'"),
        ([{"issuer": "https://sso.b.example/?realm=b", "jurisdiction": ["31"]}], "must not hold '?' or '#'"),
    ],
)
def test_a_provider_written_wrongly_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, entries: list[dict[str, Any]], said: str
) -> None:
    from pydantic import ValidationError

    from gateway.settings import configuration_error

    monkeypatch.setenv("GRASSROOTS_OIDC_ISSUERS", json.dumps(entries))
    with pytest.raises(ValidationError) as refused:
        Settings()
    (problem,) = configuration_error(refused.value).problems
    assert problem.variable == "GRASSROOTS_OIDC_ISSUERS" and said in problem.en, problem
    assert problem.zh and not problem.zh.isascii()


def test_a_provider_named_twice_or_a_jurisdiction_in_the_wrong_place_is_refused() -> None:
    issuer = "https://idp.example/realms/county"
    twice = Settings(oidc_issuer=issuer, oidc_issuers=[{"issuer": issuer, "jurisdiction": ["310151"]}])
    with pytest.raises(ConfigurationError, match="named more than once"):
        twice.trusted_issuers  # noqa: B018
    listed = Settings(
        oidc_issuer=issuer,
        oidc_issuers=[{"issuer": "https://sso.b.example", "jurisdiction": ["310151102"]}],
        oidc_issuer_jurisdictions={"https://sso.b.example": ["310151"]},
    )
    with pytest.raises(ConfigurationError, match="its entry's jurisdiction"):
        listed.trusted_issuers  # noqa: B018


def test_production_takes_further_providers_over_https_only() -> None:
    secrets: dict[str, Any] = {
        "mode": "production",
        "audit_hmac_key": "1553bb053a421bd8060bf16536a293d7b2ec353c",
        "masking_kek": "0af83d4723f812406a9ac81e4f93140e1de435425a63184533cc20dd89a4b9bb",
        "service_key_path": Path("/k/s.pem"),
        "checkpoint_key_path": Path("/k/c.pem"),
        "checkpoint_dir": Path("/k/cp"),
    }
    listed = [{"issuer": "https://sso.b.example", "jurisdiction": ["310151102"]}]
    # GRASSROOTS_OIDC_ISSUERS alone is an identity provider too.
    assert Settings(**secrets, oidc_issuers=listed).trusted_issuers[0].issuer == "https://sso.b.example"
    with pytest.raises(ConfigurationError, match="GRASSROOTS_OIDC_ISSUERS"):
        Settings(**secrets, oidc_issuers=[{"issuer": "http://sso.b.example", "jurisdiction": ["31"]}])


# -- through the whole stack ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from stack_fixture("sqlite", tmp_path_factory)


def _me(base_url: str, token: str) -> httpx.Response:
    return httpx.get(f"{base_url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=30.0)


def _beside_the_dev_idp(
    stack: Stack, idp_process: tuple[str, Path], keys: Keys, a_jurisdiction: str
) -> tuple[Tenant, str, dict[str, str]]:
    """A fresh stand-in provider B (新河镇) signing with ``keys.attacker``, A's issuer (the stack's
    development IdP) and the settings of a gateway trusting A for ``a_jurisdiction`` and B
    (GRASSROOTS_OIDC_ISSUERS)."""
    base_url, root = idp_process
    b = Tenant(base_url, root, f"b-{uuid.uuid4().hex[:12]}")
    b.publish_discovery()
    b.publish_keys(keys.attacker)
    a_issuer = f"{stack.base_url}/dev-idp"
    env = {
        "GRASSROOTS_OIDC_ISSUER_JURISDICTIONS": json.dumps({a_issuer: [a_jurisdiction]}),
        "GRASSROOTS_OIDC_ISSUERS": json.dumps([{"issuer": b.issuer, "jurisdiction": [TOWNSHIP_B]}]),
    }
    return b, a_issuer, env


def test_a_gateway_trusting_two_providers_keeps_their_users_and_keys_apart(
    stack: Stack, idp_process: tuple[str, Path], keys: Keys
) -> None:
    """The development IdP (A) for 城桥镇, the stand-in provider (B) for 新河镇, in one gateway process."""
    b, a_issuer, env = _beside_the_dev_idp(stack, idp_process, keys, TOWNSHIP_A)
    with stack.another_gateway(**env) as gateway:
        assert _me(gateway, stack.token("cadre_a")).status_code == 200  # A's user, 东风村 (城桥镇)
        of_b = _me(gateway, mint(keys.attacker, claims_for(b.issuer, org_code=VILLAGE_B)))
        assert of_b.status_code == 200 and of_b.json()["org"] == VILLAGE_B, of_b.text
        # A's token for 星桥村 (新河镇, B's jurisdiction): refused.
        outside = _me(gateway, stack.token("cadre_c"))
        assert (outside.status_code, outside.json()["error"]) == (401, "org_outside_issuer")
        # A token claiming B, signed with A's own key (the development IdP's signing key, its kid): refused.
        a_key = (stack.data_dir / "keys" / "dev-idp-signing.pem").read_bytes()
        a_kid = json.loads(httpx.get(f"{a_issuer}/jwks.json", timeout=10).text)["keys"][0]["kid"]
        import jwt

        forged = jwt.encode(
            claims_for(b.issuer, org_code=VILLAGE_B),
            a_key,
            algorithm="ES256",
            headers={"kid": a_kid, "typ": "at+jwt"},
        )
        assert _me(gateway, forged).json()["error"] == "unknown_key"
        # A provider the gateway does not trust at all.
        stranger = mint(keys.attacker, claims_for("https://sso.unknown.example", org_code=VILLAGE_B))
        refused = _me(gateway, stranger)
        assert (refused.status_code, refused.json()["error"]) == (401, "wrong_issuer")
        assert refused.json()["message"].startswith("该登录凭证不是由本平台信任的统一身份认证服务签发的")


def test_revoking_one_providers_user_leaves_the_same_sub_at_the_other_signed_in(
    stack: Stack, idp_process: tuple[str, Path], keys: Keys
) -> None:
    """The development IdP (A, GRASSROOTS_OIDC_ISSUER) and the stand-in (B, GRASSROOTS_OIDC_ISSUERS) each sign
    in a user of the same sub. Before, the gateway took them for one user: revoking A's cut off B's too.
    Now B's user is "<B's issuer>#<sub>", revoked on their own (by the command line: the issuer's "/" and
    the "#" travel in the path)."""
    # The whole district for A, so that its platform administrator signs in there too.
    b, _, env = _beside_the_dev_idp(stack, idp_process, keys, "310151")
    sub = f"u-{uuid.uuid4().hex[:12]}"
    with stack.another_gateway(**env) as gateway:

        def status(token: str) -> tuple[int, str]:
            answer = _me(gateway, token)
            return answer.status_code, "" if answer.status_code == 200 else answer.json()["error"]

        def revoke(user_id: str) -> None:
            args = ("sessions", "revoke", user_id, "--reason", "调离本村", "--as", "platform_admin")
            done = stack.cli(*args, "--url", gateway, check=False)
            assert done.returncode == 0, done.stderr
            assert done.stdout.startswith("该用户此前签发的全部登录凭证已撤销"), done.stdout

        of_a = token_as(stack, "cadre_a", sub=sub)
        of_b = mint(keys.attacker, claims_for(b.issuer, org_code=VILLAGE_B, sub=sub))
        assert (status(of_a), status(of_b)) == ((200, ""), (200, ""))
        revoke(sub)  # A's user
        assert (status(of_a), status(of_b)) == ((401, "session_revoked"), (200, ""))
        assert _me(gateway, of_b).json()["user_id"] == f"{b.issuer}#{sub}"
        revoke(f"{b.issuer}#{sub}")  # B's user
        assert status(of_b) == (401, "session_revoked")
