"""System access tokens (RFC 9068 profile) and signed client assertions (RFC 7523 private_key_jwt)."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey

from admission import (
    ReplayCache,
    SystemTokenIssuer,
    TokenError,
    assertion_client_id,
    verify_client_assertion,
)
from admission.credentials import RegisteredPublicKey, check_public_key
from admission.tokens import credential_generation

ISSUER = "https://gateway.example.test"
TOKEN_ENDPOINT = ISSUER + "/oauth/token"
T0 = 1_750_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def _sign(header: dict[str, Any], claims: dict[str, Any], key: OKPKey | ECKey) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return jws.serialize_compact(header, json.dumps(claims).encode(), key, algorithms=[header["alg"]])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def issuer(clock: Clock) -> SystemTokenIssuer:
    return SystemTokenIssuer(ed25519.Ed25519PrivateKey.generate(), ISSUER, clock=clock)


def test_issued_token_verifies_and_names_the_system(issuer: SystemTokenIssuer) -> None:
    issued = issuer.issue(client_id="gsc_1", system_id="health-visits", credential="s:abc")
    claims = issuer.verify(issued.access_token)
    assert (claims.system_id, claims.client_id, claims.credential) == ("health-visits", "gsc_1", "s:abc")
    assert issued.as_response()["token_type"] == "Bearer"
    assert issued.access_token not in repr(issued)
    header = jws.extract_compact(issued.access_token.encode()).headers()
    assert header["typ"] == "at+jwt" and header["kid"] == issuer.kid


def test_token_expires(issuer: SystemTokenIssuer, clock: Clock) -> None:
    token = issuer.issue(client_id="gsc_1", system_id="s-1x", credential="s:abc").access_token
    clock.now += issuer.ttl_s + issuer.leeway_s
    with pytest.raises(TokenError):
        issuer.verify(token)


def _forged(issuer: SystemTokenIssuer, clock: Clock) -> dict[str, Callable[[], str]]:
    """Tokens that must be refused, each differing from a good one in exactly one respect."""
    other = SystemTokenIssuer(ed25519.Ed25519PrivateKey.generate(), ISSUER, clock=clock)
    key = OKPKey.generate_key("Ed25519")
    now = int(clock.now)
    good_claims = {
        "iss": ISSUER,
        "sub": "gsc_1",
        "aud": issuer.audience,
        "client_id": "gsc_1",
        "system_id": "s-1x",
        "cred": "s:x",
        "iat": now,
        "exp": now + 60,
        "jti": "j",
    }
    raw_key = issuer._key  # the issuer's own key, to change one thing at a time

    def signed(header: dict[str, Any] | None = None, **claims: Any) -> str:
        return _sign({"alg": "EdDSA", "typ": "at+jwt", **(header or {})}, {**good_claims, **claims}, raw_key)

    return {
        "another gateway's key": lambda: (
            other.issue(client_id="gsc_1", system_id="s-1x", credential="s:x").access_token
        ),
        "a self-made key": lambda: _sign({"alg": "EdDSA", "typ": "at+jwt"}, good_claims, key),
        "plain JWT type (upstream service token)": lambda: signed({"typ": "JWT"}),
        "wrong audience (user SSO audience)": lambda: signed(aud="grassroots-gateway"),
        "wrong issuer": lambda: signed(iss="https://elsewhere.test"),
        "sub differs from client_id": lambda: signed(sub="gsc_2"),
        "no system": lambda: signed(system_id=""),
        "issued in the future": lambda: signed(iat=now + 3600, exp=now + 3700),
        "not a JWT": lambda: "abc.def",
    }


def test_forged_tokens_are_refused(issuer: SystemTokenIssuer, clock: Clock) -> None:
    good = _forged(issuer, clock)
    for case, make in good.items():
        with pytest.raises(TokenError):
            issuer.verify(make())
            pytest.fail(f"accepted: {case}")


def test_jwks_holds_only_the_public_key(issuer: SystemTokenIssuer) -> None:
    (jwk,) = issuer.jwks()["keys"]
    assert "d" not in jwk and jwk["kid"] == issuer.kid and jwk["crv"] == "Ed25519"
    assert "key hidden" in repr(issuer)


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_generation_changes_with_the_credential(a: str, b: str) -> None:
    assert (credential_generation(a, None, "secret") == credential_generation(b, None, "secret")) == (a == b)
    assert credential_generation(a, None, "key") is None


# --- client assertions --------------------------------------------------------------------------------


def _registered(private: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> RegisteredPublicKey:
    pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    fmt, kid = check_public_key(pem)
    assert fmt == "pem"
    return RegisteredPublicKey("gsc_1", "s-1x", pem, "pem", kid)


def _assertion(private: Any, alg: str, **overrides: Any) -> str:
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key = OKPKey.import_key(pem) if alg == "EdDSA" else ECKey.import_key(pem)
    claims = {
        "iss": "gsc_1",
        "sub": "gsc_1",
        "aud": TOKEN_ENDPOINT,
        "exp": int(T0) + 60,
        "iat": int(T0),
        "jti": "a-1",
        **overrides,
    }
    claims = {k: v for k, v in claims.items() if v is not None}
    return _sign({"alg": alg, "typ": "JWT"}, claims, key)


@pytest.mark.parametrize("kind", ["ed25519", "p256"])
def test_assertion_accepted_once(kind: str) -> None:
    private: Any = (
        ed25519.Ed25519PrivateKey.generate() if kind == "ed25519" else ec.generate_private_key(ec.SECP256R1())
    )
    alg = "EdDSA" if kind == "ed25519" else "ES256"
    registered = _registered(private)
    assertion = _assertion(private, alg)
    assert assertion_client_id(assertion) == "gsc_1"
    replay = ReplayCache()
    verify_client_assertion(assertion, registered, audiences=[TOKEN_ENDPOINT], replay=replay, now=T0)
    with pytest.raises(TokenError, match="already been used"):
        verify_client_assertion(assertion, registered, audiences=[TOKEN_ENDPOINT], replay=replay, now=T0)


ASSERTION_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("wrong issuer", {"iss": "gsc_2"}, "iss and sub"),
    ("wrong subject", {"sub": "gsc_2"}, "iss and sub"),
    ("audience elsewhere", {"aud": "https://other.test/token"}, "aud"),
    ("no jti", {"jti": None}, "exp and jti"),
    ("no exp", {"exp": None}, "exp and jti"),
    ("expired", {"exp": int(T0) - 60}, "expired"),
    ("lives too long", {"exp": int(T0) + 3600}, "at most"),
    ("not yet valid", {"nbf": int(T0) + 600, "exp": int(T0) + 290}, "not valid yet"),
    ("jti too long to store", {"jti": "j" * 257}, "at most 256 characters"),
]


@pytest.mark.parametrize(
    ("case", "overrides", "message"), ASSERTION_CASES, ids=[c[0] for c in ASSERTION_CASES]
)
def test_bad_assertions(case: str, overrides: dict[str, Any], message: str) -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(TokenError, match=message) as caught:
        verify_client_assertion(
            _assertion(private, "EdDSA", **overrides),
            _registered(private),
            audiences=[TOKEN_ENDPOINT],
            replay=ReplayCache(),
            now=T0,
        )
    assert caught.value.code == "invalid_client"


def test_assertion_signed_by_another_key_or_alg_is_refused() -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    registered = _registered(private)
    for assertion in (
        _assertion(ed25519.Ed25519PrivateKey.generate(), "EdDSA"),
        _assertion(ec.generate_private_key(ec.SECP256R1()), "ES256"),
    ):
        with pytest.raises(TokenError):
            verify_client_assertion(
                assertion, registered, audiences=[TOKEN_ENDPOINT], replay=ReplayCache(), now=T0
            )


def test_replay_cache_forgets_expired_assertions() -> None:
    cache = ReplayCache()
    assert cache.first_use("c", "j", expires_at=10.0, now=time.time() - 1e9)
    assert not cache.first_use("c", "j", expires_at=10.0, now=5.0)
    assert cache.first_use("c", "j", expires_at=30.0, now=20.0)


def test_a_persons_sign_in_token_is_told_what_this_endpoint_takes(issuer: SystemTokenIssuer) -> None:
    # A system admin's own SSO token (ES256 here, RS256 elsewhere) sent to /systems/me was refused with
    # "令牌签名方式不被接受 / The token algorithm is not accepted": true, and no help.
    key = ECKey.generate_key("P-256")
    sso = _sign({"alg": "ES256", "typ": "at+jwt"}, {"iss": "https://idp.test", "sub": "u-1"}, key)
    plain = _sign({"alg": "EdDSA", "typ": "JWT"}, {"iss": "https://idp.test"}, OKPKey.generate_key("Ed25519"))
    for token in (sso, plain):
        with pytest.raises(TokenError) as info:
            issuer.verify(token)
        assert "/oauth/token" in info.value.message_zh
        assert "grassroots admission token" in info.value.message_en
