"""OAuth 2 client-credentials tokens for admitted systems, and signed client assertions.

The gateway is the authorization server for departmental systems (RFC 6749 §4.4): a system authenticates
with its client secret or with a JWT signed by its registered key (RFC 7523 §2.2, ``private_key_jwt``) and
receives a short-lived access token in the RFC 9068 profile (``typ: at+jwt``), signed with the gateway's own
Ed25519 key. Only plain values in and out; the gateway decides where the key lives and adds the live
admission-status check on every call, which a token alone can never express.

Rules implemented here, by source:

* RFC 8725 §3.1: algorithms come from an allowlist per key type; ``none`` and HMAC are never accepted.
* RFC 8725 §3.11/§3.12 and RFC 9068 §2.1/§4: access tokens carry ``typ: at+jwt``, a dedicated issuer and
  audience; a token of any other type, issuer or audience is refused (no cross-JWT confusion with the
  gateway's upstream service tokens or with users' SSO tokens).
* RFC 7523 §3: an assertion's ``iss`` and ``sub`` are the client id, ``aud`` names this server, ``exp`` is
  required and near, ``jti`` is never accepted twice while the assertion could still be valid.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, JWKRegistry, OKPKey, RSAKey

from admission.credentials import RegisteredPublicKey
from admission.errors import AdmissionError
from admission.replay import MAX_JTI_CHARS

#: The audience of system access tokens: the gateway's system-facing API, never a user-facing one.
SYSTEM_AUDIENCE = "grassroots-gateway/systems"
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 (a media type, RFC 9068 §4)
DEFAULT_TTL_S = 300
#: RFC 7523 §3 item 4: an assertion with a far-away expiry could be replayed for longer than the jti cache
#: remembers it, so one living longer than this is refused.
MAX_ASSERTION_LIFETIME_S = 300
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

_ALGORITHMS_BY_KEY: Mapping[str, frozenset[str]] = {
    "RSA": frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
    "EC": frozenset({"ES256", "ES384", "ES512"}),
    "OKP": frozenset({"EdDSA", "Ed25519"}),
}
_MAX_TOKEN_CHARS = 8192

AnyKey = OKPKey | ECKey | RSAKey


class TokenError(AdmissionError):
    """A token or client assertion was refused; ``code`` is the OAuth error code to answer with."""

    code = "invalid_token"


#: A token that is not a system access token at all (a person's sign-in token, say).
NOT_A_SYSTEM_TOKEN: Final = (
    "这不是部门系统的访问令牌：此接口只接受系统用客户端凭证向 POST /oauth/token 换取的令牌"
    "（命令行：grassroots admission token），个人的登录令牌不能使用。",
    "This is not a departmental system's access token: this endpoint takes only a token the system "
    "obtains from POST /oauth/token with its client credentials (grassroots admission token); a person's "
    "sign-in token cannot be used.",
)


def _invalid(code: str, zh: str, en: str) -> TokenError:
    return TokenError(zh, en, code=code)


def credential_generation(secret_hash: str | None, public_key_kid: str | None, method: str) -> str | None:
    """A short fingerprint of the credential a token was obtained with. Rotating the secret or replacing
    the key changes it, so tokens minted with the old credential stop working at once. The secret hash is
    salted, so its digest reveals nothing about the secret."""
    if method == "secret" and secret_hash is not None:
        return "s:" + hashlib.sha256(secret_hash.encode("utf-8")).hexdigest()[:24]
    if method == "key" and public_key_kid is not None:
        return "k:" + hashlib.sha256(public_key_kid.encode("utf-8")).hexdigest()[:24]
    return None


@dataclass(frozen=True, slots=True)
class IssuedAccessToken:
    access_token: str = field(repr=False)
    expires_in: int
    token_type: str = "Bearer"  # noqa: S105 (RFC 6750 token type)

    def as_response(self) -> dict[str, Any]:
        """The RFC 6749 §5.1 success body."""
        return {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
        }


@dataclass(frozen=True, slots=True)
class SystemTokenClaims:
    system_id: str
    client_id: str
    credential: str
    jti: str
    expires_at: int


def _parse(token: str) -> tuple[jws.CompactSignature, dict[str, Any]]:
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS or token.count(".") != 2:
        raise _invalid("invalid_token", "令牌格式错误。", "The token is malformed.")
    try:
        signed = jws.extract_compact(token.encode("ascii"))
    except (JoseError, UnicodeEncodeError, ValueError):
        raise _invalid("invalid_token", "令牌格式错误。", "The token is malformed.") from None
    header = signed.headers()
    # RFC 7515 §4.1.11: no header extension is understood here.
    if not isinstance(header, dict) or "crit" in header or "b64" in header:
        raise _invalid("invalid_token", "令牌格式错误。", "The token is malformed.")
    return signed, header


def _verify(signed: jws.CompactSignature, key: AnyKey, algorithms: Collection[str]) -> dict[str, Any]:
    registry = jws.JWSRegistry(algorithms=list(algorithms))
    try:
        with warnings.catch_warnings():
            # joserfc flags "EdDSA" as superseded by RFC 9864's "Ed25519"; both are on the allowlist.
            warnings.simplefilter("ignore", SecurityWarning)
            valid = jws.validate_compact(signed, key, registry=registry)
    except JoseError:
        valid = False
    if not valid:
        raise _invalid("invalid_token", "令牌签名无效。", "The token signature is not valid.")
    try:
        claims = json.loads(signed.payload)
    except (TypeError, ValueError):
        claims = None
    if not isinstance(claims, dict):
        raise _invalid("invalid_token", "令牌格式错误。", "The token is malformed.")
    return claims


def signing_jwk(private_key: ed25519.Ed25519PrivateKey) -> OKPKey:
    """An Ed25519 private key as the JWK tokens are signed with; its ``thumbprint()`` (RFC 7638) is the
    ``kid`` that names it in each token's header and in :func:`public_jwks`."""
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return OKPKey.import_key(pem)


def public_jwks(key: OKPKey, kid: str) -> dict[str, Any]:
    """The public key set (RFC 7517 §5) of one EdDSA signing key, named by ``kid``: what a party verifying
    the tokens fetches."""
    return {"keys": [{**key.as_dict(private=False), "kid": kid, "alg": "EdDSA", "use": "sig"}]}


class SystemTokenIssuer:
    """Mints and verifies the access tokens of admitted systems with one Ed25519 key of the gateway."""

    def __init__(
        self,
        private_key: ed25519.Ed25519PrivateKey,
        issuer: str,
        *,
        audience: str = SYSTEM_AUDIENCE,
        ttl_s: int = DEFAULT_TTL_S,
        leeway_s: int = 5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = signing_jwk(private_key)
        self.kid = self._key.thumbprint()
        self.issuer = issuer
        self.audience = audience
        self.ttl_s = ttl_s
        self.leeway_s = leeway_s
        self._clock = clock

    def __repr__(self) -> str:
        return f"SystemTokenIssuer(issuer={self.issuer!r}, kid={self.kid!r}, <key hidden>)"

    def jwks(self) -> dict[str, Any]:
        """The public key set (RFC 7517 §5), so a resource server can verify the tokens too."""
        return public_jwks(self._key, self.kid)

    def issue(self, *, client_id: str, system_id: str, credential: str) -> IssuedAccessToken:
        now = int(self._clock())
        claims = {
            # RFC 9068 §2.2: for the client-credentials grant, sub identifies the client.
            "iss": self.issuer,
            "sub": client_id,
            "aud": self.audience,
            "client_id": client_id,
            "system_id": system_id,
            "cred": credential,
            "iat": now,
            "exp": now + self.ttl_s,
            "jti": uuid.uuid4().hex,
        }
        header = {"alg": "EdDSA", "typ": ACCESS_TOKEN_TYPE, "kid": self.kid}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)
            token = jws.serialize_compact(
                header,
                json.dumps(claims, separators=(",", ":")).encode("utf-8"),
                self._key,
                algorithms=["EdDSA"],
            )
        return IssuedAccessToken(token, self.ttl_s)

    def verify(self, token: str) -> SystemTokenClaims:
        """Signature, type, issuer, audience and lifetime; the caller then checks the system's status."""
        signed, header = _parse(token)
        # A person's sign-in token (another algorithm, another type) is the likely mistake here: say what
        # this endpoint takes and where it comes from, not just that the algorithm is not accepted.
        typ = str(header.get("typ", "")).lower()
        if header.get("alg") not in ("EdDSA", "Ed25519") or typ not in (
            ACCESS_TOKEN_TYPE,
            "application/" + ACCESS_TOKEN_TYPE,
        ):
            raise _invalid("invalid_token", *NOT_A_SYSTEM_TOKEN)
        claims = _verify(signed, self._key, ("EdDSA", "Ed25519"))
        now = self._clock()
        if claims.get("iss") != self.issuer or claims.get("aud") != self.audience:
            raise _invalid(
                "invalid_token",
                "令牌不是本网关为系统签发的。",
                "The token was not issued to systems by this gateway.",
            )
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int) or not isinstance(iat, int):
            raise _invalid("invalid_token", "令牌格式错误。", "The token is malformed.")
        if now >= exp + self.leeway_s:
            raise _invalid(
                "invalid_token", "系统访问令牌已过期，请重新申请。", "The access token has expired."
            )
        if iat > now + self.leeway_s:
            raise _invalid("invalid_token", "令牌尚未生效。", "The token is not valid yet.")
        values = [claims.get(k) for k in ("system_id", "client_id", "cred", "jti")]
        if not all(isinstance(v, str) and v for v in values) or claims.get("sub") != claims.get("client_id"):
            raise _invalid("invalid_token", "令牌格式错误。", "The token is malformed.")
        system_id, client_id, cred, jti = (str(v) for v in values)
        return SystemTokenClaims(system_id, client_id, cred, jti, exp)


class ReplayGuard(Protocol):
    """Remembers the ``jti`` of every accepted client assertion until it expires (RFC 7523 §3 item 7).

    ``first_use`` records ``(client_id, jti)`` and answers False when it was recorded before; it raises
    rather than answer True when it cannot record (fail closed). The gateway uses the database-backed
    ``admission.replay.DatabaseReplayGuard``, which holds across processes."""

    def first_use(self, client_id: str, jti: str, expires_at: float, now: float) -> bool: ...


class ReplayCache:
    """``jti`` values of client assertions seen in this process, each kept until its assertion expires.

    Only for a single process (tests, tools): it cannot see a replay sent to another gateway process. The
    gateway itself uses ``admission.replay.DatabaseReplayGuard``."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries

    def first_use(self, client_id: str, jti: str, expires_at: float, now: float) -> bool:
        with self._lock:
            while self._seen and next(iter(self._seen.values())) < now:
                self._seen.popitem(last=False)
            key = (client_id, jti)
            if key in self._seen:
                return False
            if len(self._seen) >= self._max:
                self._seen.popitem(last=False)
            self._seen[key] = expires_at
            return True


def _public_key_object(registered: RegisteredPublicKey) -> AnyKey:
    try:
        if registered.format == "jwk":
            key = JWKRegistry.import_key(json.loads(registered.key))
        else:
            public = serialization.load_pem_public_key(registered.key.encode("ascii"))
            if isinstance(public, rsa.RSAPublicKey):
                key = JWKRegistry.import_key(registered.key, "RSA")
            elif isinstance(public, ec.EllipticCurvePublicKey):
                key = JWKRegistry.import_key(registered.key, "EC")
            elif isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
                key = JWKRegistry.import_key(registered.key, "OKP")
            else:
                raise ValueError("unsupported key type")
    except (JoseError, ValueError, TypeError):
        raise _invalid(
            "invalid_client", "登记的公钥无法使用。", "The registered public key cannot be used."
        ) from None
    if not isinstance(key, OKPKey | ECKey | RSAKey) or key.is_private:
        raise _invalid("invalid_client", "登记的公钥无法使用。", "The registered public key cannot be used.")
    return key


def assertion_client_id(assertion: str) -> str:
    """The ``iss`` of an unverified assertion, to find the registered key (verified right after)."""
    signed, _ = _parse(assertion)
    try:
        claims = json.loads(signed.payload)
    except (TypeError, ValueError):
        claims = None
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    if not isinstance(issuer, str) or not issuer or len(issuer) > 64:
        raise _invalid("invalid_client", "客户端断言格式错误。", "The client assertion is malformed.")
    return issuer


def verify_client_assertion(
    assertion: str,
    registered: RegisteredPublicKey,
    *,
    audiences: Collection[str],
    replay: ReplayGuard,
    now: float | None = None,
    leeway_s: int = 5,
) -> None:
    """Check a ``private_key_jwt`` client assertion (RFC 7523 §3) against the system's registered key."""
    signed, header = _parse(assertion)
    key = _public_key_object(registered)
    allowed = _ALGORITHMS_BY_KEY.get(key.key_type, frozenset())
    if header.get("alg") not in allowed:
        raise _invalid(
            "invalid_client",
            "客户端断言的签名算法与登记的公钥不符。",
            "The client assertion algorithm does not fit the registered key.",
        )
    try:
        claims = _verify(signed, key, allowed)
    except TokenError:
        raise _invalid(
            "invalid_client", "客户端断言签名无效。", "The client assertion signature is not valid."
        ) from None
    t = time.time() if now is None else now
    if claims.get("iss") != registered.client_id or claims.get("sub") != registered.client_id:
        raise _invalid(
            "invalid_client",
            "客户端断言的 iss 和 sub 必须是客户端标识。",
            "The client assertion's iss and sub must be the client id.",
        )
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not any(a in audiences for a in auds if isinstance(a, str)):
        raise _invalid(
            "invalid_client",
            "客户端断言的 aud 不是本网关的令牌端点。",
            "The client assertion's aud does not name this token endpoint.",
        )
    exp, jti = claims.get("exp"), claims.get("jti")
    if not isinstance(exp, int) or not isinstance(jti, str) or not jti:
        raise _invalid(
            "invalid_client", "客户端断言须包含 exp 和 jti。", "The client assertion needs exp and jti."
        )
    if len(jti) > MAX_JTI_CHARS:
        raise _invalid(
            "invalid_client",
            f"客户端断言的 jti 不得超过 {MAX_JTI_CHARS} 个字符。",
            f"The client assertion's jti may have at most {MAX_JTI_CHARS} characters.",
        )
    if t >= exp + leeway_s:
        raise _invalid("invalid_client", "客户端断言已过期。", "The client assertion has expired.")
    if exp - t > MAX_ASSERTION_LIFETIME_S + leeway_s:
        raise _invalid(
            "invalid_client",
            f"客户端断言有效期不得超过 {MAX_ASSERTION_LIFETIME_S} 秒。",
            f"The client assertion may live at most {MAX_ASSERTION_LIFETIME_S} seconds.",
        )
    nbf = claims.get("nbf")
    if isinstance(nbf, int) and nbf > t + leeway_s:
        raise _invalid("invalid_client", "客户端断言尚未生效。", "The client assertion is not valid yet.")
    # Last, so only an assertion that passed every other check takes a place in the replay store.
    if not replay.first_use(registered.client_id, jti, exp + leeway_s, t):
        raise _invalid(
            "invalid_client", "客户端断言已被使用过。", "The client assertion has already been used."
        )
