"""The token signature algorithms the resource server will ever consider (RFC 8725 §3.1), apart from the
verifier (`gateway.auth.oidc`) so that the settings can check a configured list without its web stack."""

from __future__ import annotations

from collections.abc import Mapping

# RFC 8725 §3.1: the only algorithms this resource server will ever consider, whatever it is configured
# with. All are public-key signatures, so knowing the verification key never lets anyone sign.
KEY_TYPE_OF_ALGORITHM: Mapping[str, str] = {
    "RS256": "RSA",
    "RS384": "RSA",
    "RS512": "RSA",
    "PS256": "RSA",
    "PS384": "RSA",
    "PS512": "RSA",
    "ES256": "EC",
    "ES384": "EC",
    "ES512": "EC",
    "EdDSA": "OKP",
    "Ed25519": "OKP",
    "Ed448": "OKP",
}
ASYMMETRIC_ALGORITHMS: frozenset[str] = frozenset(KEY_TYPE_OF_ALGORITHM)
