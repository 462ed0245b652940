"""Client-secret generation and hashing, and a light check of registered public keys.

Secrets are 256-bit random values shown once and stored only as scrypt hashes (RFC 7914) with a per-secret
salt, compared in constant time. Public keys are checked to be public (never a private key pasted by
mistake) and stored as given; signed client assertions (RFC 7523) are verified in ``admission.tokens``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from admission.errors import CredentialError

# RFC 7914 §2 parameters; N=2^14, r=8 costs ~16 MiB and tens of milliseconds, which is fine for a token
# endpoint called once per token lifetime and makes an offline guess of a leaked hash costly.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_DKLEN = 32
_SCHEME = "scrypt"

CLIENT_ID_PREFIX = "gsc_"
# A fixed, public prefix lets secret scanners recognise a leaked secret.
SECRET_PREFIX = "gss_"  # noqa: S105


def new_client_id() -> str:
    return CLIENT_ID_PREFIX + secrets.token_hex(12)


def new_client_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=_DKLEN, maxmem=128 * r * n * 2
    )


def hash_secret(secret: str) -> str:
    """``scrypt$N$r$p$salt$hash``: the parameters travel with the hash so they can be raised later."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"{_SCHEME}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


_DUMMY_HASH: str | None = None


def verify_secret(secret: str, stored: str | None) -> bool:
    """Constant-time check. With no stored hash a dummy hash is still computed, so an unknown client id
    and a wrong secret take the same time."""
    global _DUMMY_HASH
    if stored is None:
        if _DUMMY_HASH is None:
            _DUMMY_HASH = hash_secret(secrets.token_urlsafe(16))
        stored, known = _DUMMY_HASH, False
    else:
        known = True
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != _SCHEME:
            return False
        expected = _unb64(digest)
        actual = _scrypt(secret, _unb64(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected) and known


PublicKeyFormat = Literal["pem", "jwk"]

# JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_JWK_REQUIRED: dict[str, tuple[str, ...]] = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}
_JWK_KTY = frozenset(_JWK_REQUIRED)
# Key types that can sign a client assertion (RFC 7518 §3.1 / RFC 8037 algorithms).
_SIGNING_KEYS = (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)


@dataclass(frozen=True, slots=True)
class RegisteredPublicKey:
    client_id: str
    system_id: str
    key: str = field(repr=False)
    format: PublicKeyFormat
    kid: str | None


def holds_private_key(key: str) -> bool:
    """Whether ``key`` is (or holds) a private key: a PEM ``PRIVATE KEY`` block, or a JWK with a private
    member (RFC 7518 §6.2.2, §6.3.2, §6.4.1; RFC 8037 §2). Such a key must never be registered, nor sent at
    all: the command line asks this before anything leaves the host."""
    text = key.strip()
    if text.startswith("{"):
        try:
            jwk: Any = json.loads(text)
        except json.JSONDecodeError:
            return False
        return isinstance(jwk, dict) and bool(_PRIVATE_JWK_MEMBERS & jwk.keys())
    return "PRIVATE KEY" in text


def check_public_key(key: str) -> tuple[PublicKeyFormat, str]:
    """Validate a PEM public key or a public JWK; return its format and a key id: the JWK's ``kid``, else
    its RFC 7638 thumbprint; for PEM, the SHA-256 of the DER SubjectPublicKeyInfo."""
    text = key.strip()
    if text.startswith("{"):
        try:
            jwk: Any = json.loads(text)
        except json.JSONDecodeError:
            raise _bad_key("JWK 不是合法 JSON", "the JWK is not valid JSON") from None
        if not isinstance(jwk, dict) or jwk.get("kty") not in _JWK_KTY:
            raise _bad_key("JWK 须为 RSA、EC 或 OKP 公钥", "the JWK must be an RSA, EC or OKP public key")
        if _PRIVATE_JWK_MEMBERS & jwk.keys():
            raise _private_key_refused()
        kid = jwk.get("kid")
        if isinstance(kid, str) and kid:
            return "jwk", kid
        # RFC 7638 §3.2: the thumbprint hashes only the required members, sorted, without whitespace.
        required = {k: jwk.get(k) for k in _JWK_REQUIRED[jwk["kty"]]}
        if not all(isinstance(v, str) and v for v in required.values()):
            raise _bad_key("JWK 缺少必需成员", "the JWK lacks required members")
        canonical = json.dumps(required, sort_keys=True, separators=(",", ":")).encode()
        return "jwk", _b64(hashlib.sha256(canonical).digest())
    if "PRIVATE KEY" in text:
        raise _private_key_refused()
    try:
        public = serialization.load_pem_public_key(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise _bad_key("不是合法的 PEM 公钥", "not a valid PEM public key") from None
    if not isinstance(public, _SIGNING_KEYS):
        raise _bad_key("该密钥类型不能用于签名", "this key type cannot sign")
    spki = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "pem", _b64(hashlib.sha256(spki).digest())


def _private_key_refused() -> CredentialError:
    # It was sent, so it has left the system's host: say so, and how to make the public half.
    return _bad_key(
        "只能登记公钥，不得提交私钥。私钥已离开本系统的主机，请视为已泄露：重新生成密钥对，"
        "再用 openssl pkey -in 私钥文件 -pubout -out 公钥文件 导出公钥后登记公钥文件",
        "register a public key, never a private one. The private key has left the system's host, so treat it "
        "as leaked: make a new key pair, then register its public half "
        "(openssl pkey -in PRIVATE.pem -pubout -out PUBLIC.pem)",
    )


def _bad_key(zh: str, en: str) -> CredentialError:
    return CredentialError(zh, en, code="invalid_public_key")
