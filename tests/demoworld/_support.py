"""Helpers for the demo-world tests: a throwaway gateway key and the tokens it mints."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import warnings
from typing import Any

from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import OKPKey

from demoworld.civil_affairs import REGISTRY_AUDIENCE
from demoworld.departmental import GATEWAY_ISSUER


def new_gateway_key() -> OKPKey:
    return OKPKey.generate_key("Ed25519")


def public_pem(key: OKPKey) -> bytes:
    return key.as_pem(private=False)


def claims(now: int | None = None, **overrides: Any) -> dict[str, Any]:
    issued = int(time.time()) if now is None else now
    base: dict[str, Any] = {
        "iss": GATEWAY_ISSUER,
        "aud": REGISTRY_AUDIENCE,
        "iat": issued,
        "exp": issued + 120,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def mint(key: OKPKey, *, alg: str = "EdDSA", typ: str | None = "JWT", **claim_overrides: Any) -> str:
    """A token as the gateway mints it (Ed25519), with any claim overridden (None removes it)."""
    header: dict[str, Any] = {"alg": alg}
    if typ is not None:
        header["typ"] = typ
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        # jws rather than jwt.encode: the latter adds typ "JWT" on its own, and some cases must lack it.
        payload = json.dumps(claims(**claim_overrides)).encode()
        return jws.serialize_compact(header, payload, key, algorithms=[alg])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(alg: str = "none") -> str:
    """An ``alg: none`` token (RFC 8725 §2.1 attack)."""
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims()).encode())}."


def hs256_with_public_key(key: OKPKey) -> str:
    """HS256 keyed with the verifier's public key bytes (RFC 8725 §2.1 algorithm confusion)."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims()).encode())
    signature = hmac.new(public_pem(key), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
