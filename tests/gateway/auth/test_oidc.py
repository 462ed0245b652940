"""The OIDC resource server, against tokens minted by PyJWT and keys served by a separate process.

Specification, by source: RFC 8725 §3.1/§3.2 (algorithm allowlist, no "none", no HMAC, key type must
fit the algorithm), RFC 7519 §4.1 (iss, aud, exp, nbf, iat with leeway), RFC 9068 §4 (typ at+jwt),
OpenID Connect Discovery 1.0 §4.3 (discovered issuer must match), RFC 6750 §3 (challenge).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.auth.oidc import (
    AuthError,
    AuthErrorCode,
    ClaimMapping,
    OIDCVerifier,
    Principal,
    key_set_lifetime,
)
from tests.gateway.auth.conftest import (
    AUDIENCE,
    VILLAGE,
    FakeClock,
    Keys,
    SigningKey,
    Tenant,
    VerifierFactory,
    claims_for,
    ecdsa_twin,
    mint,
)

NOW = 1_700_000_000.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}.{_b64(signature)}"


def _hs256(secret: bytes, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """An HMAC token built by hand, as an attacker would (PyJWT refuses PEM keys as HMAC secrets)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _rsa_public_pem(key: SigningKey) -> bytes:
    return key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _claims(issuer: str, **overrides: Any) -> dict[str, Any]:
    return claims_for(issuer, now=NOW, **overrides)


def _tampered(keys: Keys, issuer: str) -> str:
    header, _, signature = mint(keys.rsa, _claims(issuer)).split(".")
    forged = _b64(json.dumps(_claims(issuer, roles=["platform_admin"])).encode())
    return f"{header}.{forged}.{signature}"


def _signed_non_json(keys: Keys, issuer: str) -> str:
    return jwt.api_jws.PyJWS().encode(
        b"this is not json", keys.rsa.private, algorithm="RS256", headers={"kid": "rsa-1", "typ": "at+jwt"}
    )


def _alg_none(keys: Keys, issuer: str) -> str:
    unsigned_key: Any = None
    return jwt.encode(
        _claims(issuer), unsigned_key, algorithm="none", headers={"typ": "at+jwt", "kid": "rsa-1"}
    )


def _embedded_attacker_key(keys: Keys, issuer: str) -> str:
    # RFC 8725 §3.10 spirit: a key carried in the token itself must never be trusted.
    attacker = SigningKey("attacker-1", "RS256", keys.attacker.private)
    return mint(attacker, _claims(issuer), jwk=attacker.jwk())


@dataclass(frozen=True)
class BadToken:
    name: str
    build: Callable[[Keys, str], str]
    code: AuthErrorCode


BAD_TOKENS = [
    # structure
    BadToken("garbage", lambda k, i: "not-a-token", "malformed_token"),
    BadToken("empty", lambda k, i: "", "malformed_token"),
    BadToken("two segments", lambda k, i: "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0", "malformed_token"),
    BadToken("five segments (JWE)", lambda k, i: "a.b.c.d.e", "malformed_token"),
    BadToken("bad base64", lambda k, i: "eyJ@@@.###.$$$", "malformed_token"),
    BadToken("bad base64 length", lambda k, i: "e.e.e", "malformed_token"),
    BadToken("header not JSON", lambda k, i: f"{_b64(b'not json')}.{_b64(b'{}')}.sig", "malformed_token"),
    BadToken(
        "header without alg", lambda k, i: _unsigned({"typ": "at+jwt"}, _claims(i), b"x"), "malformed_token"
    ),
    BadToken("non-ASCII", lambda k, i: "éé.éé.éé", "malformed_token"),
    BadToken("oversized", lambda k, i: "a" * 20_000 + ".b.c", "malformed_token"),
    BadToken("signed payload not JSON", _signed_non_json, "malformed_token"),
    BadToken(
        "unknown critical header",
        lambda k, i: mint(k.rsa, _claims(i), crit=["exp-ext"], **{"exp-ext": 1}),
        "malformed_token",
    ),
    # time (RFC 7519 §4.1.4, §4.1.5, §4.1.6)
    BadToken("expired", lambda k, i: mint(k.rsa, _claims(i, exp=int(NOW) - 3600)), "expired_token"),
    BadToken(
        "nbf in future", lambda k, i: mint(k.rsa, _claims(i, nbf=int(NOW) + 3600)), "token_not_yet_valid"
    ),
    BadToken(
        "iat in future", lambda k, i: mint(k.rsa, _claims(i, iat=int(NOW) + 3600)), "token_not_yet_valid"
    ),
    BadToken("exp missing", lambda k, i: mint(k.rsa, _claims(i, exp=None)), "invalid_token"),
    BadToken("iat missing", lambda k, i: mint(k.rsa, _claims(i, iat=None)), "invalid_token"),
    BadToken("exp not a number", lambda k, i: mint(k.rsa, _claims(i, exp="tomorrow")), "invalid_token"),
    # audience and issuer (RFC 7519 §4.1.1, §4.1.3)
    BadToken("wrong audience", lambda k, i: mint(k.rsa, _claims(i, aud="another-api")), "wrong_audience"),
    BadToken(
        "audience list without us", lambda k, i: mint(k.rsa, _claims(i, aud=["a", "b"])), "wrong_audience"
    ),
    BadToken("audience missing", lambda k, i: mint(k.rsa, _claims(i, aud=None)), "invalid_token"),
    BadToken(
        "wrong issuer", lambda k, i: mint(k.rsa, _claims(i, iss="https://idp.example.org")), "wrong_issuer"
    ),
    BadToken("issuer with trailing slash", lambda k, i: mint(k.rsa, _claims(i, iss=i + "/")), "wrong_issuer"),
    BadToken("issuer missing", lambda k, i: mint(k.rsa, _claims(i, iss=None)), "invalid_token"),
    BadToken("subject missing", lambda k, i: mint(k.rsa, _claims(i, sub=None)), "invalid_token"),
    # algorithms (RFC 8725 §3.1, §3.2)
    BadToken(
        "alg none",
        _alg_none,
        "unsupported_algorithm",
    ),
    BadToken(
        "alg None (case variant)",
        lambda k, i: _unsigned({"alg": "None", "typ": "at+jwt", "kid": "rsa-1"}, _claims(i)),
        "unsupported_algorithm",
    ),
    BadToken(
        "HS256 with a plain secret",
        lambda k, i: jwt.encode(
            _claims(i), "0123456789abcdef0123456789abcdef", algorithm="HS256", headers={"typ": "at+jwt"}
        ),
        "unsupported_algorithm",
    ),
    BadToken(
        "HS256 keyed with the RSA public key (HS/RS confusion)",
        lambda k, i: _hs256(
            _rsa_public_pem(k.rsa), {"alg": "HS256", "typ": "at+jwt", "kid": "rsa-1"}, _claims(i)
        ),
        "unsupported_algorithm",
    ),
    BadToken(
        "ES256 header naming the RSA key",
        lambda k, i: mint(SigningKey("rsa-1", "ES256", k.ec.private), _claims(i)),
        "unsupported_algorithm",
    ),
    BadToken(
        "RS256 header naming the EC key",
        lambda k, i: mint(SigningKey("ec-1", "RS256", k.rsa.private), _claims(i)),
        "unsupported_algorithm",
    ),
    BadToken(
        "PS256 header naming a key published for RS256",
        lambda k, i: mint(SigningKey("rsa-alg-pinned", "PS256", k.rsa.private), _claims(i)),
        "unsupported_algorithm",
    ),
    BadToken(
        "RS512 (not in the allowlist)",
        lambda k, i: mint(SigningKey("rsa-1", "RS512", k.rsa.private), _claims(i)),
        "unsupported_algorithm",
    ),
    # signatures and keys
    BadToken("tampered payload", _tampered, "invalid_token"),
    BadToken(
        "signed by another key under a known kid", lambda k, i: mint(k.attacker, _claims(i)), "invalid_token"
    ),
    BadToken(
        "unknown kid",
        lambda k, i: mint(SigningKey("nobody", "RS256", k.rsa.private), _claims(i)),
        "unknown_key",
    ),
    BadToken("key embedded in the header", _embedded_attacker_key, "unknown_key"),
    BadToken("no kid and several RSA keys", lambda k, i: mint(k.rsa, _claims(i), kid=None), "unknown_key"),
    # token type (RFC 9068 §4)
    BadToken("wrong typ", lambda k, i: mint(k.rsa, _claims(i), typ="dpop+jwt"), "invalid_token"),
    BadToken("typ not a string", lambda k, i: mint(k.rsa, _claims(i), typ=7), "invalid_token"),
    # claims the gateway needs
    BadToken("org missing", lambda k, i: mint(k.rsa, _claims(i, org_code=None)), "insufficient_claims"),
    BadToken("org too short", lambda k, i: mint(k.rsa, _claims(i, org_code="3101")), "insufficient_claims"),
    BadToken(
        "org a number", lambda k, i: mint(k.rsa, _claims(i, org_code=310151101001)), "insufficient_claims"
    ),
    BadToken(
        "org in non-ASCII digits",
        lambda k, i: mint(k.rsa, _claims(i, org_code="٣١٠١٥١١٠١٠٠١")),
        "insufficient_claims",
    ),
    BadToken(
        # twelve digits, but province 00 names nothing below the root: every library refuses it
        "org with province 00",
        lambda k, i: mint(k.rsa, _claims(i, org_code="001234000000")),
        "insufficient_claims",
    ),
    BadToken("roles missing", lambda k, i: mint(k.rsa, _claims(i, roles=None)), "insufficient_claims"),
    BadToken(
        "roles a string", lambda k, i: mint(k.rsa, _claims(i, roles="village_cadre")), "insufficient_claims"
    ),
    BadToken(
        "roles with a number", lambda k, i: mint(k.rsa, _claims(i, roles=["a", 1])), "insufficient_claims"
    ),
    BadToken(
        "department not text", lambda k, i: mint(k.rsa, _claims(i, department=["x"])), "insufficient_claims"
    ),
    *(
        BadToken(f"subject {name}", lambda k, i, sub=sub: mint(k.rsa, _claims(i, sub=sub)), code)
        for name, sub, code in (
            # personal data: it would be the actor of every audit event (the log refuses it, so the request
            # used to fail 500 with no event written)
            ("an ID number", "11010519491231002X", "personal_data_in_subject"),
            ("an ID number in groups", "110105-19491231-002x", "personal_data_in_subject"),
            ("a full-width ID number", "１１０１０５１９４９１２３１００２Ｘ", "personal_data_in_subject"),
            ("a mobile", "13812345678", "personal_data_in_subject"),
            ("a mobile with +86", "+86 138 1234 5678", "personal_data_in_subject"),
            # a character that would forge a line of the log or an export, or pass for another user's id
            # there: accepted, the subject was the actor of every event as given (CWE-117)
            ("with a line feed", "u-forged\nkind=data.read actor=u-other", "invalid_token"),
            ("with a carriage return", "u-forged\r", "invalid_token"),
            ("with a NUL", "u\x00", "invalid_token"),
            ("with an escape", "u\x1b[2Ju", "invalid_token"),
            ("with a tab", "u\tv", "invalid_token"),
            ("with DEL", "u\x7f", "invalid_token"),
            ("with a C1 control", "u\x85v", "invalid_token"),
            ("with a line separator", "u\u2028v", "invalid_token"),
            ("with a right-to-left override", "u-\u202e1234", "invalid_token"),
            ("with a zero-width space", "u\u200bv", "invalid_token"),
        )
    ),
    # claims the audit log could not record (the request used to fail 500 with no event written)
    BadToken("subject too long", lambda k, i: mint(k.rsa, _claims(i, sub="u" * 257)), "invalid_token"),
    # ... or that the tables naming a user (grants, quotas, reviews: 128 characters) could not hold: such a
    # user signed in, then every grant request or read failed on PostgreSQL
    BadToken(
        "subject longer than a user id", lambda k, i: mint(k.rsa, _claims(i, sub="u" * 129)), "invalid_token"
    ),
    # the actors the gateway writes itself: such a user's acts would pass for an unauthenticated request's
    # or a departmental system's in the audit log
    BadToken("subject 'anonymous'", lambda k, i: mint(k.rsa, _claims(i, sub="anonymous")), "invalid_token"),
    BadToken(
        "subject 'system:…'", lambda k, i: mint(k.rsa, _claims(i, sub="system:hb-civil")), "invalid_token"
    ),
    BadToken(
        "subject a lone surrogate", lambda k, i: mint(k.rsa, _claims(i, sub="u\ud800")), "invalid_token"
    ),
    *(
        BadToken(
            f"a role {name}",
            lambda k, i, role=role: mint(k.rsa, _claims(i, roles=["village_cadre", role])),
            "insufficient_claims",
        )
        for name, role in (
            ("that is an ID number", "11010519491231002X"),
            ("too long", "r" * 129),
            ("with spaces", "village cadre"),
            ("in Chinese", "村干部"),
            ("empty", ""),
        )
    ),
]


def _publish_standard(tenant: Tenant, keys: Keys) -> None:
    pinned = SigningKey("rsa-alg-pinned", "RS256", keys.rsa.private)
    tenant.publish_keys(*keys.published, pinned.jwk(alg="RS256"))


@pytest.mark.parametrize("case", BAD_TOKENS, ids=lambda c: c.name)
async def test_bad_token_is_refused_with_its_code(
    case: BadToken, tenant: Tenant, keys: Keys, make_verifier: VerifierFactory
) -> None:
    _publish_standard(tenant, keys)
    verifier = make_verifier(clock=lambda: NOW)
    token = case.build(keys, tenant.issuer)

    with pytest.raises(AuthError) as caught:
        await verifier.verify(token)

    assert caught.value.code == case.code
    error = caught.value
    secrets = [part for part in (token, *token.split(".")) if len(part) >= 8]
    for text in (str(error), repr(error), error.message_zh, error.message_en, error.www_authenticate() or ""):
        assert not any(secret in text for secret in secrets)


@dataclass(frozen=True)
class GoodToken:
    name: str
    key: Callable[[Keys], SigningKey]
    header: dict[str, Any]
    claims: dict[str, Any]


GOOD_TOKENS = [
    GoodToken("RS256", lambda k: k.rsa, {}, {}),
    GoodToken("PS256", lambda k: k.rsa_pss, {}, {}),
    GoodToken("ES256", lambda k: k.ec, {}, {}),
    GoodToken("EdDSA (Ed25519)", lambda k: k.ed, {}, {}),
    GoodToken("typ application/at+jwt", lambda k: k.rsa, {"typ": "application/at+jwt"}, {}),
    GoodToken("typ AT+JWT (case-insensitive)", lambda k: k.rsa, {"typ": "AT+JWT"}, {}),
    GoodToken("typ JWT", lambda k: k.rsa, {"typ": "JWT"}, {}),
    GoodToken("typ absent", lambda k: k.rsa, {"typ": None}, {}),
    GoodToken("audience in a list", lambda k: k.ec, {}, {"aud": ["other-api", AUDIENCE]}),
    GoodToken("no nbf", lambda k: k.ec, {}, {"nbf": None}),
    GoodToken("no kid, the only EC key", lambda k: k.ec, {"kid": None}, {}),
    GoodToken("unregistered header parameter", lambda k: k.rsa, {"x-trace": "abc"}, {}),
]


@pytest.mark.parametrize("case", GOOD_TOKENS, ids=lambda c: c.name)
async def test_good_token_maps_to_principal(
    case: GoodToken, tenant: Tenant, keys: Keys, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier(clock=lambda: NOW)
    token = mint(case.key(keys), claims_for(tenant.issuer, now=NOW, **case.claims), **case.header)

    principal = await verifier.verify(token)

    assert principal == Principal(
        user_id="user-0001",
        username="cadre_wang",
        org=VILLAGE,
        roles=("village_cadre",),
        department="civil_affairs",
        office="township_office",
        token_id="jti-0001",
        issued_at=int(NOW),
        expires_at=int(NOW) + 600,
    )
    # A sign-out of a token without a jti names it by this digest (gateway.auth.sessions), never the token:
    # of the signed part (header.payload), which only the provider's key can vary.
    assert principal.token_digest == hashlib.sha256(token.rpartition(".")[0].encode()).hexdigest()
    assert token not in repr(principal)
    assert "cadre_wang" not in repr(principal)


async def test_an_ecdsa_twin_of_a_token_is_named_as_the_token_in_a_sign_out(
    tenant: Tenant, keys: Keys, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier(clock=lambda: NOW)
    token = mint(keys.ec, claims_for(tenant.issuer, now=NOW, jti=None))
    twin = ecdsa_twin(token)
    assert twin != token

    original, rewritten = await verifier.verify(token), await verifier.verify(twin)

    # Signed out by its digest, the token must stay out whichever of its valid strings comes back.
    assert original.token_id is None
    assert rewritten.token_digest == original.token_digest


async def test_minimal_token_maps_absent_optional_claims(
    tenant: Tenant, keys: Keys, make_verifier: VerifierFactory
) -> None:
    claims = claims_for(
        tenant.issuer, now=NOW, preferred_username=None, department=None, office=None, jti=None, nbf=None
    )
    principal = await make_verifier(clock=lambda: NOW).verify(mint(keys.ec, claims))

    assert (principal.username, principal.department, principal.office, principal.token_id) == (
        "user-0001",
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("mapping", "extra_claims", "expected_org", "expected_roles", "expected_username"),
    [
        (
            ClaimMapping(org="org", roles="realm_access.roles", username="email"),
            {
                "org": "310151101002",
                "realm_access": {"roles": ["township_officer"]},
                "email": "li@example.org",
            },
            "310151101002",
            ("township_officer",),
            "li@example.org",
        ),
        (
            ClaimMapping(org="https://grassroots.example/org", roles="https://grassroots.example/roles"),
            {
                "https://grassroots.example/org": "310151000000",
                "https://grassroots.example/roles": ["supervisor"],
            },
            "310151000000",
            ("supervisor",),
            "cadre_wang",
        ),
    ],
    ids=["keycloak-style nested", "namespaced URI claims"],
)
async def test_claim_mapping_is_configurable(
    mapping: ClaimMapping,
    extra_claims: dict[str, Any],
    expected_org: str,
    expected_roles: tuple[str, ...],
    expected_username: str,
    tenant: Tenant,
    keys: Keys,
    make_verifier: VerifierFactory,
) -> None:
    claims = {**claims_for(tenant.issuer, now=NOW, org_code=None, roles=None), **extra_claims}
    principal = await make_verifier(clock=lambda: NOW, claims=mapping).verify(mint(keys.rsa, claims))

    assert (principal.org, principal.roles, principal.username) == (
        expected_org,
        expected_roles,
        expected_username,
    )


async def test_accepted_types_can_demand_rfc9068_tokens_only(
    tenant: Tenant, keys: Keys, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier(clock=lambda: NOW, accepted_types=("at+jwt",))
    claims = claims_for(tenant.issuer, now=NOW)

    assert (await verifier.verify(mint(keys.rsa, claims))).user_id == "user-0001"
    for typ in ("JWT", None):
        with pytest.raises(AuthError) as caught:
            await verifier.verify(mint(keys.rsa, claims, typ=typ))
        assert caught.value.code == "invalid_token"


async def test_algorithm_outside_a_narrowed_allowlist_is_refused(
    tenant: Tenant, keys: Keys, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier(clock=lambda: NOW, algorithms=("ES256",))

    with pytest.raises(AuthError) as caught:
        await verifier.verify(mint(keys.rsa, claims_for(tenant.issuer, now=NOW)))

    assert caught.value.code == "unsupported_algorithm"


@pytest.mark.parametrize(
    "algorithms",
    [("HS256",), ("RS256", "HS256"), ("none",), ("RS256", "none"), ("HS512",), ()],
    ids=str,
)
def test_verifier_cannot_be_configured_with_symmetric_or_no_algorithms(algorithms: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        OIDCVerifier("https://idp.example.org", AUDIENCE, algorithms=algorithms)


# -- leeway (RFC 7519 §4.1.4/§4.1.5: "a small leeway ... to account for clock skew") ---------------

LEEWAY_CASES = [
    # claim, offset from now (s), leeway, expected code or None for accepted
    ("exp", -31, 30, "expired_token"),
    ("exp", -30, 30, "expired_token"),
    ("exp", -29, 30, None),
    ("exp", 0, 0, "expired_token"),
    ("exp", 1, 0, None),
    ("nbf", 30, 30, None),
    ("nbf", 31, 30, "token_not_yet_valid"),
    ("nbf", 0, 0, None),
    ("nbf", 1, 0, "token_not_yet_valid"),
    ("iat", 30, 30, None),
    ("iat", 31, 30, "token_not_yet_valid"),
    ("iat", 1, 0, "token_not_yet_valid"),
]


@pytest.mark.parametrize(("claim", "offset", "leeway", "expected"), LEEWAY_CASES)
async def test_leeway_boundaries(
    claim: str,
    offset: int,
    leeway: int,
    expected: str | None,
    tenant: Tenant,
    keys: Keys,
    make_verifier: VerifierFactory,
) -> None:
    verifier = make_verifier(clock=lambda: NOW, leeway_s=leeway)
    token = mint(keys.ec, claims_for(tenant.issuer, now=NOW, **{claim: int(NOW) + offset}))

    if expected is None:
        assert (await verifier.verify(token)).org == VILLAGE
    else:
        with pytest.raises(AuthError) as caught:
            await verifier.verify(token)
        assert caught.value.code == expected


@pytest.mark.parametrize(("claim", "ahead"), [("iat", 3600), ("iat", 31), ("nbf", 90)])
async def test_a_provider_clock_ahead_beyond_the_leeway_is_refused_and_logged_with_the_skew(
    claim: str,
    ahead: int,
    tenant: Tenant,
    keys: Keys,
    make_verifier: VerifierFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A token stamped an hour ahead was refused, but told the user to check their device's clock (which
    plays no part) and left the operator no line saying which provider's clock ran ahead, or by how much.
    Now the message points at the provider's and the gateway's clocks, and the log says both."""
    verifier = make_verifier(clock=lambda: NOW, leeway_s=30)
    token = mint(keys.ec, claims_for(tenant.issuer, now=NOW, **{claim: int(NOW) + ahead}))
    caplog.set_level(logging.WARNING, logger="gateway.auth.oidc")
    with pytest.raises(AuthError) as caught:
        await verifier.verify(token)
    assert caught.value.code == "token_not_yet_valid"
    assert "时钟不一致" in caught.value.message_zh and "与您的设备时间无关" in caught.value.message_zh
    assert "identity provider's clock" in caught.value.message_en
    (line,) = [r.getMessage() for r in caplog.records if r.name == "gateway.auth.oidc"]
    assert tenant.issuer in line and f"{claim} is {ahead} s ahead" in line and "30 s leeway" in line, line
    assert token not in line and token.split(".")[1] not in line


@pytest.mark.parametrize(
    ("overrides", "code", "said"),
    [
        # what a provider not yet set up for the gateway issues (Keycloak: aud "account", roles under
        # realm_access.roles, no org_code): every sign-in refused, the user told to sign in again or to
        # contact the administrator, and the administrator's log said nothing of which claim
        ({"org_code": None}, "insufficient_claims", "claim 'org_code' is missing"),
        ({"org_code": "3101"}, "insufficient_claims", "claim 'org_code' is not the user's organisation as a"),
        (
            {"roles": None, "realm_access": {"roles": ["village_cadre"]}},
            "insufficient_claims",
            "claim 'roles' is missing",
        ),
        ({"roles": "village_cadre"}, "insufficient_claims", "claim 'roles' is not a JSON list of role codes"),
        ({"department": ["x"]}, "insufficient_claims", "claim 'department' is not text"),
        ({"grids": "G01"}, "insufficient_claims", "claim 'grids' is not a JSON list of micro-grid codes"),
        ({"aud": "account"}, "wrong_audience", "for audience 'account', not 'grassroots-gateway'"),
        ({"aud": ["account", "x\ny"]}, "wrong_audience", "for audience 'account', 'x\\ny', not"),
        ({"exp": None, "iat": None}, "invalid_token", "without the claim(s) exp,iat that RFC 9068 requires"),
        # a provider known by two addresses: tokens stamped with the one users sign in through
        (
            {"iss": "https://sso.example.gov.cn/realms/x"},
            "wrong_issuer",
            "signed by its key names the issuer 'https://sso.example.gov.cn/realms/x'",
        ),
    ],
)
async def test_a_claim_the_provider_gets_wrong_is_named_in_the_log_never_its_value(
    overrides: dict[str, Any],
    code: AuthErrorCode,
    said: str,
    tenant: Tenant,
    keys: Keys,
    make_verifier: VerifierFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    verifier = make_verifier(clock=lambda: NOW)
    token = mint(keys.ec, _claims(tenant.issuer, **overrides))
    caplog.set_level(logging.WARNING, logger="gateway.auth.oidc")
    with pytest.raises(AuthError) as caught:
        await verifier.verify(token)
    assert caught.value.code == code
    (line,) = [r.getMessage() for r in caplog.records if r.name == "gateway.auth.oidc"]
    assert line.startswith(f"identity provider {tenant.issuer}: ") and said in line, line
    assert not any(part in line for part in token.split(".")), line
    assert "3101'" not in line and "village_cadre" not in line and "G01" not in line


async def test_an_unknown_signing_key_is_logged_once_per_refetch_with_the_keys_the_provider_publishes(
    tenant: Tenant, keys: Keys, make_verifier: VerifierFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A provider signing with a key its jwks_uri does not publish (another realm's key set, a key used
    before it is published) had every sign-in refused unknown_key ("sign in again") and the log silent. Now
    each refetch that still finds no such key says so, naming the key ids published, never the token's
    (anyone may write one): a flood of forged kids refetches, and logs, once per interval."""
    monotonic = FakeClock(1000.0)
    verifier = make_verifier(jwks_refresh_min_interval_s=30, monotonic=monotonic)
    caplog.set_level(logging.WARNING, logger="gateway.auth.oidc")
    for n in range(20):
        with pytest.raises(AuthError) as caught:
            await verifier.verify(
                mint(SigningKey(f"forged-{n}", "RS256", keys.rsa.private), _claims(tenant.issuer))
            )
        assert caught.value.code == "unknown_key"
    monotonic.advance(30)
    with pytest.raises(AuthError):
        await verifier.verify(
            mint(SigningKey("forged-late", "RS256", keys.rsa.private), _claims(tenant.issuer))
        )

    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.auth.oidc"]
    assert len(lines) == 2 and tenant.requests(tenant.jwks_path) == 2, lines
    for line in lines:
        assert "not in the key set just fetched from" in line and tenant.jwks_path in line, line
        assert "'ec-1', 'ed-1', 'rsa-1', 'rsa-pss-1'" in line and "forged" not in line, line


async def test_a_key_set_with_no_key_for_the_accepted_algorithms_is_logged(
    tenant: Tenant, keys: Keys, make_verifier: VerifierFactory, caplog: pytest.LogCaptureFixture
) -> None:
    tenant.publish_keys(keys.ec)
    verifier = make_verifier(algorithms=("RS256", "PS256"))
    caplog.set_level(logging.WARNING, logger="gateway.auth.oidc")
    with pytest.raises(AuthError) as caught:
        await verifier.verify(mint(keys.rsa, _claims(tenant.issuer)))
    assert caught.value.code == "unknown_key"
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.auth.oidc"]
    assert any("holds no signing key for the accepted algorithms (PS256, RS256" in line for line in lines), (
        lines
    )


async def test_a_start_time_that_is_no_number_is_an_invalid_token_not_a_clock(
    tenant: Tenant, keys: Keys, make_verifier: VerifierFactory
) -> None:
    # Python's JSON reads NaN and Infinity; neither is a NumericDate (RFC 7519 §2), nor a skew to log.
    verifier = make_verifier(clock=lambda: NOW)
    for odd in ("NaN", "Infinity"):
        claims = json.dumps(claims_for(tenant.issuer, now=NOW, nbf=0)).replace('"nbf": 0', f'"nbf": {odd}')
        header = base64.urlsafe_b64encode(
            json.dumps({"alg": "ES256", "kid": keys.ec.kid, "typ": "at+jwt"}).encode()
        )
        body = base64.urlsafe_b64encode(claims.encode())
        signing_input = header.rstrip(b"=") + b"." + body.rstrip(b"=")
        signature = jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256).sign(
            signing_input, keys.ec.private
        )
        token = (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()
        with pytest.raises(AuthError) as caught:
            await verifier.verify(token)
        assert caught.value.code == "invalid_token", odd


def _in_process_provider(issuer: str, jwks: dict[str, Any]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(200, json={"issuer": issuer, "jwks_uri": f"{issuer}/jwks.json"})
        return httpx.Response(200, json=jwks)

    return httpx.MockTransport(answer)


async def test_a_key_set_trickled_a_byte_at_a_time_is_given_up_on(keys: Keys) -> None:
    """httpx's timeout bounds each wait for a byte, not the answer: a provider (or whatever answers at its
    address) sending its key set a few bytes every tenth of a second kept the fetch, the key lock and every
    sign-in of the process waiting, then was taken. The whole answer gets the timeout."""
    jwks = json.dumps({"keys": [keys.ec.jwk()]}).encode()

    async def discovery(request: web.Request) -> web.Response:
        return web.json_response({"issuer": issuer, "jwks_uri": f"{issuer}/jwks.json"})

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for at in range(0, len(jwks), 4):  # every wait far below the timeout, the whole far above it
            await response.write(jwks[at : at + 4])
            await asyncio.sleep(0.1)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/idp/.well-known/openid-configuration", discovery)
    app.router.add_get("/idp/jwks.json", trickle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    issuer = f"http://127.0.0.1:{runner.addresses[0][1]}/idp"
    assert len(jwks) // 4 * 0.1 > 4 * 0.5
    try:
        async with OIDCVerifier(issuer, AUDIENCE, clock=lambda: NOW, http_timeout_s=0.5) as verifier:
            with pytest.raises(AuthError) as caught:
                await verifier.verify(mint(keys.ec, claims_for(issuer, now=NOW)))
    finally:
        await runner.cleanup()
    assert caught.value.code == "idp_unavailable"


async def test_an_https_issuer_naming_a_plain_http_key_set_is_refused(keys: Keys) -> None:
    """The discovery document of an https issuer pointing its jwks_uri at plain http used to be followed:
    the keys every token is checked against came unprotected, replaceable by anyone on the path."""
    issuer = "https://idp.example.org"
    fetched: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        if request.url.path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(
                200, json={"issuer": issuer, "jwks_uri": "http://idp.example.org/jwks.json"}
            )
        return httpx.Response(200, json={"keys": [keys.ec.jwk()]})

    async with OIDCVerifier(
        issuer, AUDIENCE, clock=lambda: NOW, transport=httpx.MockTransport(answer)
    ) as verifier:
        with pytest.raises(AuthError) as caught:
            await verifier.verify(mint(keys.ec, claims_for(issuer, now=NOW)))
    assert caught.value.code == "idp_unavailable"
    assert fetched == [f"{issuer}/.well-known/openid-configuration"]  # the http key set was never asked


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(exp_offset=st.integers(-400, 400), nbf_offset=st.integers(-400, 400), leeway=st.integers(0, 120))
async def test_law_a_token_is_accepted_exactly_inside_its_window_widened_by_leeway(
    exp_offset: int, nbf_offset: int, leeway: int, keys: Keys
) -> None:
    issuer = "https://idp.example.org"
    claims = claims_for(issuer, now=NOW, exp=int(NOW) + exp_offset, nbf=int(NOW) + nbf_offset)
    inside = exp_offset > -leeway and nbf_offset <= leeway
    async with OIDCVerifier(
        issuer,
        AUDIENCE,
        leeway_s=leeway,
        clock=lambda: NOW,
        transport=_in_process_provider(issuer, {"keys": [keys.ec.jwk()]}),
    ) as verifier:
        try:
            await verifier.verify(mint(keys.ec, claims))
            accepted = True
        except AuthError as error:
            assert error.code in {"expired_token", "token_not_yet_valid"}
            accepted = False
    assert accepted == inside


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    token=st.builds(
        lambda head, rest: "eyJ" + head + rest,
        st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=5, max_size=60),
        st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!é ", max_size=300),
    )
)
async def test_law_no_error_ever_repeats_the_token(token: str) -> None:
    issuer = "https://idp.example.org"
    async with OIDCVerifier(
        issuer, AUDIENCE, transport=_in_process_provider(issuer, {"keys": []})
    ) as verifier:
        with pytest.raises(AuthError) as caught:
            await verifier.verify(token)
    error = caught.value
    for text in (str(error), repr(error), error.message_zh, error.message_en, error.www_authenticate() or ""):
        assert token not in text
        assert "eyJ" not in text


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_headers = st.fixed_dictionaries(
    {},
    optional={
        "alg": st.sampled_from(["RS256", "ES256", "EdDSA", "HS256", "none", "None", ""]) | _json,
        "kid": st.sampled_from(["ec-1", "rsa-1", ""]) | _json,
        "typ": st.sampled_from(["at+jwt", "JWT"]) | _json,
        "crit": _json,
        "jwk": _json,
        "b64": _json,
    },
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=_headers | _json, payload=_json, signature=st.binary(max_size=80))
async def test_law_any_token_not_signed_by_a_published_key_is_refused_with_an_auth_error(
    header: Any, payload: Any, signature: bytes, keys: Keys
) -> None:
    issuer = "https://idp.example.org"
    token = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}.{_b64(signature)}"
    async with OIDCVerifier(
        issuer, AUDIENCE, transport=_in_process_provider(issuer, {"keys": [keys.ec.jwk(), keys.rsa.jwk()]})
    ) as verifier:
        with pytest.raises(AuthError):
            await verifier.verify(token)


# -- discovery and keys, over loopback to the stand-in provider process ---------------------------


async def test_rotated_key_is_found_by_refetching_the_key_set(
    tenant: Tenant, keys: Keys, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier(jwks_refresh_min_interval_s=0)
    old = mint(keys.rsa, claims_for(tenant.issuer))
    new = mint(keys.rsa_next, claims_for(tenant.issuer))
    assert (await verifier.verify(old)).user_id == "user-0001"

    tenant.publish_keys(keys.rsa_next)
    assert (await verifier.verify(new)).user_id == "user-0001"
    with pytest.raises(AuthError) as caught:
        await verifier.verify(old)

    assert caught.value.code == "unknown_key"
    assert tenant.requests(tenant.jwks_path) == 3
    assert tenant.requests(tenant.discovery_path) == 1


async def test_unknown_kid_refetches_at_most_once_per_interval(
    tenant: Tenant, keys: Keys, make_verifier: VerifierFactory
) -> None:
    monotonic = FakeClock(1000.0)
    verifier = make_verifier(jwks_refresh_min_interval_s=30, monotonic=monotonic)
    assert (await verifier.verify(mint(keys.rsa, claims_for(tenant.issuer)))).org == VILLAGE
    tenant.publish_keys(*keys.published, keys.rsa_next)
    rotated = mint(keys.rsa_next, claims_for(tenant.issuer))

    monotonic.advance(5)
    with pytest.raises(AuthError) as caught:
        await verifier.verify(rotated)
    assert caught.value.code == "unknown_key"
    for n in range(20):
        with pytest.raises(AuthError):
            await verifier.verify(
                mint(SigningKey(f"forged-{n}", "RS256", keys.rsa.private), claims_for(tenant.issuer))
            )
    assert tenant.requests(tenant.jwks_path) == 1

    monotonic.advance(25)
    assert (await verifier.verify(rotated)).org == VILLAGE
    assert tenant.requests(tenant.jwks_path) == 2


async def test_concurrent_unknown_kids_share_one_fetch(
    tenant: Tenant, keys: Keys, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier(jwks_refresh_min_interval_s=0)
    await verifier.verify(mint(keys.rsa, claims_for(tenant.issuer)))
    tenant.publish_keys(*keys.published, keys.rsa_next)
    tenant.set_delay(tenant.jwks_path, 0.3)
    rotated = mint(keys.rsa_next, claims_for(tenant.issuer))

    principals = await asyncio.gather(*(verifier.verify(rotated) for _ in range(10)))

    assert {p.user_id for p in principals} == {"user-0001"}
    assert tenant.requests(tenant.jwks_path) == 2


async def test_key_set_older_than_its_ttl_is_refreshed_and_withdrawn_keys_stop_working(
    tenant: Tenant, keys: Keys, make_verifier: VerifierFactory
) -> None:
    monotonic = FakeClock(1000.0)
    verifier = make_verifier(
        discovery_ttl_s=600, jwks_lifetime_s=600, jwks_refresh_min_interval_s=3600, monotonic=monotonic
    )
    token = mint(keys.rsa, claims_for(tenant.issuer))
    await verifier.verify(token)
    tenant.publish_keys(keys.ec)

    monotonic.advance(599)
    assert (await verifier.verify(token)).org == VILLAGE
    monotonic.advance(1)
    with pytest.raises(AuthError) as caught:
        await verifier.verify(token)

    assert caught.value.code == "unknown_key"
    assert tenant.requests(tenant.discovery_path) == 2


async def test_cached_keys_keep_working_while_the_provider_is_down(
    tenant: Tenant, keys: Keys, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier(jwks_refresh_min_interval_s=0)
    token = mint(keys.rsa, claims_for(tenant.issuer))
    await verifier.verify(token)
    tenant.set_status(tenant.jwks_path, 503)

    assert (await verifier.verify(token)).org == VILLAGE
    with pytest.raises(AuthError) as caught:
        await verifier.verify(mint(keys.rsa_next, claims_for(tenant.issuer)))
    assert caught.value.code == "idp_unavailable"


_HTTP_DATE = "Mon, 07 Dec 2026 13:00:00 GMT"
_TEN_MINUTES_LATER = "Mon, 07 Dec 2026 13:10:00 GMT"


@pytest.mark.parametrize(
    ("headers", "options", "lifetime"),
    [
        ({}, {}, 300),  # the provider says nothing: five minutes
        ({"Cache-Control": "public, max-age=120"}, {}, 120),
        ({"Cache-Control": "max-age=400", "Age": "100"}, {}, 300),  # a cache in between held it 100 s
        ({"Cache-Control": "max-age=5"}, {}, 60),  # at least a minute
        ({"Cache-Control": "no-store"}, {}, 60),
        ({"Cache-Control": "max-age=86400"}, {}, 3600),  # at most an hour
        ({"Cache-Control": "max-age=120"}, {"jwks_lifetime_s": 900}, 900),  # GRASSROOTS_OIDC_JWKS_LIFETIME_S
    ],
)
async def test_a_key_the_provider_removed_is_refused_once_its_key_sets_lifetime_is_over(
    tenant: Tenant,
    keys: Keys,
    make_verifier: VerifierFactory,
    headers: dict[str, str],
    options: dict[str, Any],
    lifetime: int,
) -> None:
    """A key the provider removed from its key set (after a compromise) was trusted for up to an hour: the
    set fetched was kept that long whatever the provider said. It now lives as long as the provider's
    caching headers say (Cache-Control max-age, less Age; or Expires), five minutes when they say nothing, at
    least a minute and at most an hour, or as long as the setting says; then it is fetched again, and a
    token signed by the removed key is refused."""
    monotonic = FakeClock(1000.0)
    tenant.set_headers(tenant.jwks_path, headers)
    verifier = make_verifier(jwks_refresh_min_interval_s=30, monotonic=monotonic, **options)
    token = mint(keys.rsa, claims_for(tenant.issuer))
    assert (await verifier.verify(token)).org == VILLAGE
    tenant.publish_keys(keys.rsa_next, keys.ec)  # rsa-1 (and rsa-pss-1, the same key) removed

    monotonic.advance(lifetime - 1)
    assert (await verifier.verify(token)).org == VILLAGE
    assert tenant.requests(tenant.jwks_path) == 1
    monotonic.advance(1)
    with pytest.raises(AuthError) as caught:
        await verifier.verify(token)
    assert caught.value.code == "unknown_key"
    assert (await verifier.verify(mint(keys.rsa_next, claims_for(tenant.issuer)))).org == VILLAGE
    assert tenant.requests(tenant.jwks_path) == 2  # the key set refetched once, not per token


async def test_a_failed_refetch_keeps_the_last_key_set_for_a_bounded_grace_and_says_so(
    tenant: Tenant, keys: Keys, make_verifier: VerifierFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The provider unreachable when the key set's lifetime is over: the last good set is kept for the grace
    (each failed refetch logged, at most once per refetch interval), never dropped at the first failed GET;
    past the grace tokens are refused idp_unavailable (a set nobody could confirm for that long may hold a
    withdrawn key), and once the provider answers again they are accepted."""
    monotonic = FakeClock(1000.0)
    tenant.set_headers(tenant.jwks_path, {"Cache-Control": "max-age=120"})
    verifier = make_verifier(jwks_refresh_min_interval_s=30, jwks_stale_grace_s=600, monotonic=monotonic)
    caplog.set_level(logging.WARNING, logger="gateway.auth.oidc")
    token = mint(keys.rsa, claims_for(tenant.issuer))
    await verifier.verify(token)
    tenant.set_status(tenant.jwks_path, 503)

    monotonic.advance(120)
    for _ in range(3):
        assert (await verifier.verify(token)).org == VILLAGE
    kept = [r for r in caplog.records if "keeping the key set fetched 120 s ago" in r.getMessage()]
    assert len(kept) == 1 and kept[0].levelno == logging.WARNING
    assert "(lifetime 120 s) for at most 600 s more" in kept[0].getMessage()
    monotonic.advance(599)
    assert (await verifier.verify(token)).org == VILLAGE
    for step in (1, 0, 30, 0):  # past the grace; the next refetch allowed fails too and says so
        monotonic.advance(step)
        with pytest.raises(AuthError) as caught:
            await verifier.verify(token)
        assert caught.value.code == "idp_unavailable"
    said = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(said) == 1, said
    assert "fetched 750 s ago (lifetime 120 s, then 600 s of grace)" in said[0].getMessage()
    assert "is no longer trusted" in said[0].getMessage()
    assert not any(part in r.getMessage() for r in caplog.records for part in token.split("."))

    tenant.set_status(tenant.jwks_path, None)
    monotonic.advance(30)
    assert (await verifier.verify(token)).org == VILLAGE


@pytest.mark.parametrize(
    ("headers", "lifetime"),
    [
        ({}, None),
        ({"Cache-Control": "public, max-age=300, must-revalidate"}, 300.0),
        ({"Cache-Control": 'max-age="300"'}, 300.0),
        ({"Cache-Control": "max-age=300", "Age": "500"}, 0.0),
        ({"Cache-Control": "max-age=soon"}, 0.0),  # invalid freshness: stale (RFC 9111 §4.2.1)
        ({"Cache-Control": "max-age=300, max-age=60"}, 0.0),  # conflicting: invalid
        ({"Cache-Control": "no-cache, max-age=300"}, 0.0),
        ({"Date": _HTTP_DATE, "Expires": _TEN_MINUTES_LATER}, 600.0),
        ({"Expires": _TEN_MINUTES_LATER}, 600.0),  # no Date: from the gateway's clock
        ({"Cache-Control": "max-age=120", "Expires": _TEN_MINUTES_LATER}, 120.0),  # max-age first
        ({"Expires": "0"}, 0.0),  # already expired (RFC 9111 §5.3)
    ],
)
def test_the_key_sets_lifetime_is_read_from_the_caching_headers(
    headers: dict[str, str], lifetime: float | None
) -> None:
    now = 1_796_648_400.0  # _HTTP_DATE
    assert key_set_lifetime(httpx.Headers(headers), now=now) == lifetime


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Outage:
    name: str
    arrange: Callable[[Tenant], None]


OUTAGES = [
    Outage(
        "discovery names another issuer", lambda t: t.publish_discovery(issuer="https://evil.example.org")
    ),
    Outage(
        "discovery issuer differs by a trailing slash", lambda t: t.publish_discovery(issuer=t.issuer + "/")
    ),
    Outage("discovery without jwks_uri", lambda t: t.publish_discovery(jwks_uri=None)),
    Outage("discovery answers 500", lambda t: t.set_status(t.discovery_path, 500)),
    Outage("discovery not JSON", lambda t: t.publish_raw(t.discovery_path, b"<html>sign in</html>")),
    Outage("discovery a JSON list", lambda t: t.publish_raw(t.discovery_path, b"[]")),
    Outage("key set answers 404", lambda t: t.set_status(t.jwks_path, 404)),
    Outage("key set not JSON", lambda t: t.publish_raw(t.jwks_path, b"\x00\x01garbage")),
    Outage("key set without keys", lambda t: t.publish_raw(t.jwks_path, b'{"kty": "RSA"}')),
    Outage("key set too slow", lambda t: t.set_delay(t.jwks_path, 1.5)),
    Outage("discovery too slow", lambda t: t.set_delay(t.discovery_path, 1.5)),
]


@pytest.mark.parametrize("outage", OUTAGES, ids=lambda o: o.name)
async def test_unusable_provider_answers_idp_unavailable(
    outage: Outage, tenant: Tenant, keys: Keys, make_verifier: VerifierFactory
) -> None:
    outage.arrange(tenant)
    verifier = make_verifier(http_timeout_s=0.3)

    with pytest.raises(AuthError) as caught:
        await verifier.verify(mint(keys.rsa, claims_for(tenant.issuer)))

    assert caught.value.code == "idp_unavailable"
    assert caught.value.http_status == 503
    assert caught.value.www_authenticate() is None


async def test_unreachable_provider_answers_idp_unavailable_and_recovers(
    tenant: Tenant, keys: Keys, make_verifier: VerifierFactory
) -> None:
    issuer = f"http://127.0.0.1:{_closed_port()}/nobody"
    down = make_verifier(issuer=issuer, http_timeout_s=0.5)
    with pytest.raises(AuthError) as caught:
        await down.verify(mint(keys.rsa, claims_for(issuer)))
    assert caught.value.code == "idp_unavailable"

    tenant.set_status(tenant.discovery_path, 503)
    verifier = make_verifier()
    token = mint(keys.rsa, claims_for(tenant.issuer))
    with pytest.raises(AuthError):
        await verifier.verify(token)
    tenant.set_status(tenant.discovery_path, None)
    assert (await verifier.verify(token)).org == VILLAGE


async def test_keys_unusable_for_signing_are_ignored(
    tenant: Tenant, keys: Keys, make_verifier: VerifierFactory
) -> None:
    tenant.publish_keys(
        {"kty": "oct", "kid": "rsa-1", "k": _b64(b"0123456789abcdef0123456789abcdef")},
        keys.rsa.jwk(use="enc"),
        {"kty": "RSA", "kid": "broken", "n": "AQAB"},
        {"kty": "PQC", "kid": "future"},
        keys.ec,
    )
    verifier = make_verifier()

    assert (await verifier.verify(mint(keys.ec, claims_for(tenant.issuer)))).org == VILLAGE
    with pytest.raises(AuthError) as caught:
        await verifier.verify(mint(keys.rsa, claims_for(tenant.issuer)))
    assert caught.value.code == "unknown_key"


@pytest.mark.parametrize(
    ("code", "status", "challenged"),
    [
        ("invalid_token", 401, True),
        ("expired_token", 401, True),
        ("unknown_key", 401, True),
        ("insufficient_claims", 401, True),
        ("personal_data_in_subject", 401, True),
        ("org_outside_issuer", 401, True),
        ("idp_unavailable", 503, False),
    ],
)
def test_error_maps_to_http_status_and_rfc6750_challenge(
    code: AuthErrorCode, status: int, challenged: bool
) -> None:
    error = AuthError(code)

    assert error.http_status == status
    challenge = error.www_authenticate(realm="grassroots")
    if challenged:
        assert challenge is not None
        assert challenge.startswith('Bearer realm="grassroots", error="invalid_token", error_description="')
        assert challenge.isascii()
    else:
        assert challenge is None
    assert error.message_zh and error.message_en


async def test_a_remembered_token_still_expires_on_time(
    tenant: Tenant, keys: Keys, make_verifier: VerifierFactory
) -> None:
    """The verified-token cache never outlives the token: exp (with leeway) is checked on every hit."""
    now = [NOW]
    verifier = make_verifier(clock=lambda: now[0], leeway_s=30)
    token = mint(keys.rsa, claims_for(tenant.issuer, now=NOW, exp=NOW + 60))
    assert (await verifier.verify(token)).org == VILLAGE
    requests_before = tenant.requests(tenant.jwks_path)
    now[0] = NOW + 60 + 30
    assert (await verifier.verify(token)).org == VILLAGE  # inside the leeway: a cache hit
    assert tenant.requests(tenant.jwks_path) == requests_before
    now[0] = NOW + 60 + 31
    with pytest.raises(AuthError) as caught:
        await verifier.verify(token)
    assert caught.value.code == "expired_token"


# -- the issuer's jurisdiction ---------------------------------------------------------------------------

# In a national deployment each province or city runs its own provider: one misconfigured or taken over must
# not vouch for users of another district. (prefixes the issuer may assert, the token's org, accepted)
JURISDICTIONS = [
    (None, "440300000000", True),  # none configured: any organisation, as before
    (("310151",), "310151101001", True),  # a village of the county
    (("310151",), "310151000000", True),  # the county itself
    (("310151",), "310152101001", False),  # the next county
    (("310151",), "000000000000", False),  # a district's provider vouching for a national office
    (("31",), "320102000000", False),  # another province
    (("310151101", "310151102"), "310151102201", True),
    (("310151101", "310151102"), "310151103201", False),
    (("",), "440300000000", True),  # the national root: anywhere
    ((), "310151101001", False),  # allowed nothing: nobody
]


@pytest.mark.parametrize(("prefixes", "org", "accepted"), JURISDICTIONS)
async def test_an_issuer_vouches_only_for_organisations_within_its_jurisdiction(
    prefixes: tuple[str, ...] | None,
    org: str,
    accepted: bool,
    tenant: Tenant,
    keys: Keys,
    make_verifier: VerifierFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    verifier = make_verifier(clock=lambda: NOW, org_prefixes=prefixes)
    token = mint(keys.ec, _claims(tenant.issuer, org_code=org))
    if accepted:
        assert (await verifier.verify(token)).org == org
        return
    with caplog.at_level(logging.WARNING, logger="gateway.auth.oidc"):
        for _ in range(2):  # a refusal is never remembered as a verified token
            with pytest.raises(AuthError) as caught:
                await verifier.verify(token)
            assert caught.value.code == "org_outside_issuer"
    error = caught.value
    assert error.http_status == 401 and (error.www_authenticate() or "").isascii()
    assert "辖区" in error.message_zh and "GRASSROOTS_OIDC_ISSUER_JURISDICTIONS" in error.message_zh
    assert "jurisdiction" in error.message_en
    # The operator is told which provider named which organisation; never the token.
    assert f"identity provider {tenant.issuer} asserted organisation {org}" in caplog.text
    assert not any(part in caplog.text for part in token.split("."))


@pytest.mark.parametrize("prefixes", [("31x",), ("３１",), ("310151", None), "310151"])
def test_a_jurisdiction_is_made_of_division_code_prefixes(prefixes: Any) -> None:
    with pytest.raises(ValueError, match="org_prefixes"):
        OIDCVerifier("https://idp.example", AUDIENCE, org_prefixes=prefixes)


async def test_a_token_outliving_the_longest_lifetime_is_refused(
    make_verifier: VerifierFactory, tenant: Tenant, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """exp - iat beyond ``max_lifetime_s`` (GRASSROOTS_OIDC_MAX_TOKEN_LIFETIME_S): a revocation of the user's
    sessions, kept that long, would lapse while such a token is still valid (gateway.auth.sessions)."""
    clock = FakeClock(NOW)
    verifier = make_verifier(max_lifetime_s=3600, clock=clock)
    issued = int(NOW) - 60
    within = mint(keys.rsa, _claims(tenant.issuer, iat=issued, exp=issued + 3600))
    assert (await verifier.verify(within)).user_id == "user-0001"
    longer = mint(keys.rsa, _claims(tenant.issuer, iat=issued, exp=issued + 3601, jti="jti-long"))
    with caplog.at_level(logging.WARNING, logger="gateway.auth.oidc"), pytest.raises(AuthError) as refused:
        await verifier.verify(longer)
    assert refused.value.code == "token_lifetime_too_long" and refused.value.http_status == 401
    assert "valid for 3601 s, longer than the 3600 s configured" in caplog.text
    assert longer not in caplog.text


@pytest.mark.parametrize(
    "sub", ["u" * 128, "anonymous-2", "systems:ops"], ids=["128 characters", "near reserved", "near system:"]
)
async def test_subject_at_the_user_id_bounds_signs_in(
    sub: str, tenant: Tenant, keys: Keys, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier(clock=lambda: NOW)
    token = mint(keys.rsa, claims_for(tenant.issuer, now=NOW, sub=sub))

    assert (await verifier.verify(token)).user_id == sub


@pytest.mark.parametrize(
    "sub", ["https://idp.example.gov.cn/users/u-0001", "wang.li@cm.sh.gov", "张三-0001", "u 0001"]
)
async def test_a_printable_subject_of_any_script_is_kept_as_given(
    sub: str, tenant: Tenant, keys: Keys, make_verifier: VerifierFactory
) -> None:
    """Refusing control and format characters refuses no identifier a provider uses: a URL with "/", an
    e-mail address, Chinese, a space."""
    verifier = make_verifier(clock=lambda: NOW)
    principal = await verifier.verify(mint(keys.ec, claims_for(tenant.issuer, now=NOW, sub=sub)))
    assert principal.user_id == sub
