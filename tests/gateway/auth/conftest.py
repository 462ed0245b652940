"""Fixtures for the SSO tests: an OpenID provider in a separate process, and keys and tokens made with
PyJWT and cryptography (libraries the project contains no code of), never with joserfc or the dev IdP.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from gateway.auth.oidc import OIDCVerifier

AUDIENCE = "grassroots-gateway"
VILLAGE = "310151101001"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class SigningKey:
    """A private key, the algorithm it signs with, and its public JWK as a provider would publish it."""

    kid: str
    alg: str
    private: PrivateKey

    def jwk(self, **extra: Any) -> dict[str, Any]:
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            data = RSAAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            data = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            data = OKPAlgorithm.to_jwk(public, as_dict=True)
        return {**data, "kid": self.kid, "use": "sig", **extra}


@dataclass(frozen=True)
class Keys:
    rsa: SigningKey
    rsa_pss: SigningKey
    ec: SigningKey
    ed: SigningKey
    rsa_next: SigningKey
    attacker: SigningKey

    @property
    def published(self) -> list[SigningKey]:
        return [self.rsa, self.rsa_pss, self.ec, self.ed]


@pytest.fixture(scope="session")
def keys() -> Keys:
    rsa_private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Keys(
        rsa=SigningKey("rsa-1", "RS256", rsa_private),
        # The same RSA key published again under a second kid: RS256 and PS256 share a key type.
        rsa_pss=SigningKey("rsa-pss-1", "PS256", rsa_private),
        ec=SigningKey("ec-1", "ES256", ec.generate_private_key(ec.SECP256R1())),
        ed=SigningKey("ed-1", "EdDSA", ed25519.Ed25519PrivateKey.generate()),
        rsa_next=SigningKey("rsa-2", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        attacker=SigningKey("rsa-1", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    )


#: The order of the P-256 group: an ECDSA signature (r, s) verifies as (r, n - s) does.
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def ecdsa_twin(token: str) -> str:
    """The same ES256 token with its signature rewritten as (r, n - s): valid, and a different string,
    written by anyone holding the token without the provider's key."""
    signing_input, _, signature = token.rpartition(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    r, s = raw[:32], int.from_bytes(raw[32:], "big")
    return f"{signing_input}.{_urlsafe(r + (_P256_ORDER - s).to_bytes(32, 'big'))}"


def _urlsafe(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_for(issuer: str, now: float | None = None, **overrides: Any) -> dict[str, Any]:
    """RFC 9068 access-token claims for a village cadre; an override of ``None`` removes the claim."""
    moment = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": "user-0001",
        "aud": AUDIENCE,
        "exp": moment + 600,
        "iat": moment,
        "nbf": moment,
        "jti": "jti-0001",
        "client_id": "some-client",
        "preferred_username": "cadre_wang",
        "org_code": VILLAGE,
        "roles": ["village_cadre"],
        "department": "civil_affairs",
        "office": "township_office",
    }
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def mint(key: SigningKey, claims: Mapping[str, Any], **header: Any) -> str:
    """Sign with PyJWT. Header entries override the defaults; ``typ=None`` leaves ``typ`` out."""
    headers: dict[str, Any] = {"kid": key.kid, "typ": "at+jwt", **header}
    if headers.get("kid") is None:
        headers.pop("kid")
    return jwt.encode(dict(claims), key.private, algorithm=key.alg, headers=headers)


class Tenant:
    """One issuer on the stand-in provider process: its discovery document and key set are files."""

    def __init__(self, base_url: str, root: Path, name: str) -> None:
        self.name = name
        self.issuer = f"{base_url}/{name}"
        self._base_url = base_url
        self.dir = root / name
        (self.dir / ".well-known").mkdir(parents=True)

    @property
    def discovery_path(self) -> str:
        return f"/{self.name}/.well-known/openid-configuration"

    @property
    def jwks_path(self) -> str:
        return f"/{self.name}/jwks.json"

    def publish_discovery(self, **overrides: Any) -> None:
        document = {
            "issuer": self.issuer,
            "jwks_uri": f"{self._base_url}{self.jwks_path}",
            "id_token_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
            **overrides,
        }
        self._write(self.discovery_path, json.dumps(document).encode())

    def publish_keys(self, *keys: SigningKey | Mapping[str, Any]) -> None:
        entries = [k.jwk() if isinstance(k, SigningKey) else dict(k) for k in keys]
        self._write(self.jwks_path, json.dumps({"keys": entries}).encode())

    def publish_raw(self, path: str, body: bytes) -> None:
        self._write(path, body)

    def set_delay(self, path: str, seconds: float) -> None:
        self._write(path + ".delay", str(seconds).encode())

    def set_status(self, path: str, status: int | None) -> None:
        if status is None:
            (self.dir.parent / (path.lstrip("/") + ".status")).unlink(missing_ok=True)
        else:
            self._write(path + ".status", str(status).encode())

    def set_headers(self, path: str, headers: Mapping[str, str] | None) -> None:
        """Further headers the provider answers ``path`` with (``Cache-Control``...); ``None``: none."""
        if headers is None:
            (self.dir.parent / (path.lstrip("/") + ".headers")).unlink(missing_ok=True)
        else:
            self._write(path + ".headers", json.dumps(dict(headers)).encode())

    def requests(self, path: str) -> int:
        counts = httpx.get(f"{self._base_url}/_requests", timeout=5).json()
        return int(counts.get(path, 0))

    def _write(self, path: str, body: bytes) -> None:
        target = self.dir.parent / path.lstrip("/")
        scratch = target.with_name(target.name + ".tmp")
        scratch.write_bytes(body)
        os.replace(scratch, target)


@pytest.fixture(scope="session")
def idp_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The stand-in provider: a separate Python process on a free loopback port."""
    root = tmp_path_factory.mktemp("idp")
    script = Path(__file__).with_name("idp_server.py")
    process = subprocess.Popen(
        [sys.executable, str(script), str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    port = int(process.stdout.readline())
    try:
        yield f"http://127.0.0.1:{port}", root
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def tenant(idp_process: tuple[str, Path], keys: Keys) -> Tenant:
    """A fresh issuer publishing the four standard keys."""
    base_url, root = idp_process
    issuer = Tenant(base_url, root, f"t-{uuid.uuid4().hex[:12]}")
    issuer.publish_discovery()
    issuer.publish_keys(*keys.published)
    return issuer


VerifierFactory = Callable[..., OIDCVerifier]


@pytest.fixture
async def make_verifier(tenant: Tenant) -> AsyncIterator[VerifierFactory]:
    """Build verifiers for ``tenant`` (overridable), closing them after the test."""
    made: list[OIDCVerifier] = []

    def factory(issuer: str | None = None, audience: str = AUDIENCE, **options: Any) -> OIDCVerifier:
        options.setdefault("http_timeout_s", 2.0)
        verifier = OIDCVerifier(tenant.issuer if issuer is None else issuer, audience, **options)
        made.append(verifier)
        return verifier

    yield factory
    for verifier in made:
        await verifier.aclose()


class FakeClock:
    """A hand-moved clock for the verifier's ``clock`` and ``monotonic`` hooks."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
