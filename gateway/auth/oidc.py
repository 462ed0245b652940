"""OIDC resource server: verify bearer access tokens from any standards-compliant identity provider.

The gateway never issues the tokens it accepts (the embedded development provider in
:mod:`gateway.auth.devidp` is just another issuer reached over HTTP). Keys are found by OpenID Connect
Discovery 1.0 and the provider's JWKS (RFC 7517); signatures are checked by joserfc, never by hand.

Rules implemented here, by source:

* RFC 8725 §3.1/§3.2 (JWT BCP): the algorithm comes from an explicit allowlist of asymmetric
  algorithms; ``none`` and every HMAC algorithm are refused, and a key is used only with algorithms of
  its own key type, which closes the HS/RS confusion hole.
* RFC 8725 §3.8/§3.9 and RFC 7519 §4.1: ``iss`` and ``aud`` are checked exactly; ``exp``, ``nbf`` and
  ``iat`` with a small leeway for clock skew.
* RFC 9068 §4: the ``typ`` header is checked (``at+jwt``; a configurable list so that providers issuing
  plain ``JWT`` access tokens still work).
* OpenID Connect Discovery 1.0 §4.3: the discovered ``issuer`` must equal the configured issuer.
* RFC 6750 §3: errors carry what a ``WWW-Authenticate`` challenge needs.
* RFC 9111 §4.2.1: a fetched key set lives as long as the provider's ``Cache-Control: max-age`` (less any
  ``Age``) or ``Expires`` says, bounded (:func:`key_set_lifetime`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import datetime
import email.utils
import hashlib
import json
import logging
import math
import re
import time
import unicodedata
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeGuard, get_args

import httpx
from joserfc import jws
from joserfc.errors import (
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyCurveError,
    InvalidKeyTypeError,
    JoseError,
    KeyParameterError,
    MissingClaimError,
    SecurityWarning,
)
from joserfc.jwk import JWKRegistry, Key
from joserfc.jwt import JWTClaimsRegistry

from gateway.auth.algorithms import ASYMMETRIC_ALGORITHMS, KEY_TYPE_OF_ALGORITHM
from grassroots_common.divisions import is_division_code
from grassroots_common.personal_data import fold, looks_like_identifier
from policies.divisions import is_grid

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "AuthError",
    "AuthErrorCode",
    "ClaimMapping",
    "OIDCVerifier",
    "Principal",
    "TrustedIssuers",
    "key_set_lifetime",
]

_log = logging.getLogger(__name__)

AuthErrorCode = Literal[
    "invalid_token",
    "expired_token",
    "token_not_yet_valid",
    "wrong_audience",
    "wrong_issuer",
    "unsupported_algorithm",
    "unknown_key",
    "malformed_token",
    "insufficient_claims",
    "personal_data_in_subject",
    "org_outside_issuer",
    "token_lifetime_too_long",
    "idp_unavailable",
]


_MESSAGES: Mapping[AuthErrorCode, tuple[str, str]] = {
    "invalid_token": (
        "登录凭证无效，请重新登录。",
        "The access token is not valid. Please sign in again.",
    ),
    "expired_token": (
        "登录已过期，请重新登录。",
        "The access token has expired. Please sign in again.",
    ),
    "token_not_yet_valid": (
        "登录凭证的签发或生效时间晚于本平台的当前时间，尚未生效，本次未处理。通常是统一身份认证服务与本平台的"
        "时钟不一致（与您的设备时间无关）：请稍后重试；如反复出现，请联系平台管理员核对两者的时钟。",
        "The access token's issue or start time is later than this service's clock: it is not valid yet, "
        "and the request was not handled. Usually the identity provider's clock and this service's disagree "
        "(your device's clock plays no part): try again in a while; if it keeps happening, contact the "
        "platform administrator to check both clocks.",
    ),
    "wrong_audience": (
        "该登录凭证不是签发给本平台的，请通过本平台重新登录。",
        "The access token was not issued for this service. Please sign in to this service again.",
    ),
    "wrong_issuer": (
        "该登录凭证不是由本平台信任的统一身份认证服务签发的，本次未处理。请通过本平台认可的统一身份认证"
        "服务重新登录；如该服务应当被信任，请联系平台管理员把它加入受信任的身份认证服务"
        "（GRASSROOTS_OIDC_ISSUER、GRASSROOTS_OIDC_ISSUERS）。",
        "The access token was not issued by an identity provider this service trusts; the request was not "
        "handled. Sign in through a trusted identity provider; if this one should be trusted, contact the "
        "platform administrator to add it (GRASSROOTS_OIDC_ISSUER, GRASSROOTS_OIDC_ISSUERS).",
    ),
    "unsupported_algorithm": (
        "登录凭证的签名方式不被接受，请重新登录。",
        "The access token is signed in a way this service does not accept. Please sign in again.",
    ),
    "unknown_key": (
        "无法识别登录凭证的签名密钥，请重新登录。",
        "The access token was signed with a key this service does not know. Please sign in again.",
    ),
    "malformed_token": (
        "登录凭证格式错误，请重新登录。",
        "The access token is malformed. Please sign in again.",
    ),
    "insufficient_claims": (
        "登录凭证缺少所属组织或角色信息，请联系平台管理员。",
        "The access token lacks organisation or role information. Contact the platform administrator.",
    ),
    "personal_data_in_subject": (
        "登录凭证中的用户标识（sub）是身份证号或手机号，不能作为访问记录中的用户标识，本次未处理。"
        "请联系平台管理员，让统一身份认证服务改用不含个人信息的用户标识。",
        "The access token's user identifier (sub) is an ID number or a mobile number, which may not "
        "identify a user in the access log; the request was not handled. Contact the platform "
        "administrator to have the identity provider use an identifier without personal data.",
    ),
    "org_outside_issuer": (
        "登录凭证所属的组织不在签发它的统一身份认证服务可认定的辖区内，本次未处理。"
        "请联系平台管理员，核对您在身份认证服务中的所属组织，或该服务的辖区配置"
        "（GRASSROOTS_OIDC_ISSUER_JURISDICTIONS，或 GRASSROOTS_OIDC_ISSUERS 中该服务的 jurisdiction）。",
        "The access token names an organisation outside the jurisdiction its identity provider may vouch "
        "for; the request was not handled. Contact the platform administrator to check your organisation "
        "at the identity provider, or the provider's jurisdiction (GRASSROOTS_OIDC_ISSUER_JURISDICTIONS, "
        "or its jurisdiction in GRASSROOTS_OIDC_ISSUERS).",
    ),
    "token_lifetime_too_long": (
        "登录凭证的有效期超过了本平台允许的最长时限，本次未处理。请联系平台管理员：统一身份认证服务签发的"
        "访问令牌有效期须不超过 GRASSROOTS_OIDC_MAX_TOKEN_LIFETIME_S。",
        "The access token is valid for longer than this service allows; the request was not handled. "
        "Contact the platform administrator: the identity provider's access tokens must not outlive "
        "GRASSROOTS_OIDC_MAX_TOKEN_LIFETIME_S.",
    ),
    "idp_unavailable": (
        "统一身份认证服务暂时无法连接，请稍后重试。",
        "The identity provider cannot be reached right now. Please try again later.",
    ),
}
assert set(_MESSAGES) == set(get_args(AuthErrorCode))

# Compact JWS larger than this is refused before any parsing; real access tokens are a few KiB.
_MAX_TOKEN_CHARS = 16 * 1024
# Verified tokens are remembered briefly so a client's repeated calls skip the signature check; bounded
# in count and age, and dropped whenever the key set changes.
_VERIFIED_CACHE_SIZE = 10_000
_VERIFIED_CACHE_TTL_S = 60.0
# How long a fetched key set is trusted (RFC 9111 §4.2.1: the provider's max-age), bounded. At least a
# minute: a provider answering no-store or max-age=0 is not asked again for every token. At most an hour:
# a key it withdrew (after a compromise) stops being trusted within the hour whatever it says. Five minutes
# when it says nothing: removal takes effect within minutes, at one small GET per provider and process.
JWKS_MIN_LIFETIME_S = 60.0
JWKS_MAX_LIFETIME_S = 3600.0
JWKS_DEFAULT_LIFETIME_S = 300.0
# Past its lifetime, while every refetch fails (the provider down or unreachable), the last good key set is
# kept this much longer, each failed attempt logged, rather than refusing every sign-in at the first failed
# GET; after that, tokens are refused idp_unavailable until the provider answers: a key set nobody could
# confirm for over an hour may hold a key the provider withdrew meanwhile (fail closed).
JWKS_STALE_GRACE_S = 3600.0
# Discovery documents and key sets are small; a bigger answer is a misbehaving or hostile endpoint.
_MAX_DOCUMENT_BYTES = 512 * 1024
# 统计用区划代码: twelve ASCII digits (re.ASCII so that other scripts' digits do not pass).
_DIVISION_CODE = re.compile(r"[0-9]{12}", re.ASCII)
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_\-.=]+", re.ASCII)
# What the audit log can record of the caller (audit.events: the actor as text of at most 256 characters,
# each role a short ASCII token). Every request is recorded with them, so a token whose subject or roles
# the log would refuse is refused here, answered as what it is, rather than failing as a 500 unlogged.
_MAX_SUBJECT_CHARS = 256
#: Characters no subject may hold: Unicode's control (Cc), format (Cf) and line and paragraph separator
#: (Zl, Zp) characters.
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
_ROLE = re.compile(r"[A-Za-z0-9_.:@/-]{1,128}", re.ASCII)
# The longest user id every table naming a user holds (grants' requester and approvers, daily quotas,
# break-glass, masking and admission reviews: 128 characters). A user id longer than that (a bare sub, or a
# further provider's qualified "<issuer>#<sub>") is refused at sign-in rather than failing when the user acts.
_MAX_USER_ID = 128
# Actors the gateway writes itself into the audit log: an unauthenticated request ("anonymous") and a
# departmental system ("system:<id>"). A user named so would pass in the log for one of them.
_RESERVED_ACTOR = "anonymous"
_RESERVED_ACTOR_PREFIX = "system:"


class AuthError(Exception):
    """A bearer token was refused, or the identity provider could not be consulted.

    The message is fixed per ``code`` and never includes the token, a claim value or a key: callers may
    log ``str(error)`` and show ``message_zh`` / ``message_en`` to the user as they are.
    """

    code: AuthErrorCode
    message_zh: str
    message_en: str
    #: The organisation a token claimed when its own provider's signature held and it was refused for
    #: another reason (expired, outside the jurisdiction, ...): a division code, no personal data, so that
    #: supervisors can tell which village's sign-ins fail. Never set from a token whose signature failed
    #: (its claims are whatever the sender wrote), never in the message.
    claimed_org: str | None = None

    def __init__(self, code: AuthErrorCode) -> None:
        self.code = code
        self.message_zh, self.message_en = _MESSAGES[code]
        super().__init__(f"{code}: {self.message_en}")

    def __repr__(self) -> str:
        return f"AuthError(code={self.code!r})"

    @property
    def http_status(self) -> int:
        """401 for a refused token (RFC 6750 §3.1); 503 when the provider could not be consulted."""
        return 503 if self.code == "idp_unavailable" else 401

    def www_authenticate(self, realm: str = "grassroots") -> str | None:
        """The RFC 6750 §3 challenge for a 401 answer, or ``None`` for a 503.

        RFC 6750 §3.1 defines a single ``error`` value for every refused token (``invalid_token``); the
        specific code travels in the JSON body. ``error_description`` must be ASCII, so it is English.
        """
        if self.http_status != 401:
            return None
        return f'Bearer realm="{realm}", error="invalid_token", error_description="{self.message_en}"'


@dataclass(frozen=True)
class Principal:
    """The authenticated caller, as the token's issuer describes them (docs/architecture.md)."""

    #: The token's ``sub``; ``<issuer>#<sub>`` for a provider of GRASSROOTS_OIDC_ISSUERS (OIDCVerifier).
    user_id: str
    username: str = field(repr=False)
    org: str
    roles: tuple[str, ...]
    department: str | None
    office: str | None
    token_id: str | None
    #: Micro-grid codes assigned to a grid worker (``grids`` claim; empty for everyone else).
    grids: tuple[str, ...] = ()
    #: ``iat`` and ``exp`` (seconds since the epoch): which sign-in revocations cover this token, and
    #: until when a sign-out of it must be kept (gateway.auth.sessions).
    issued_at: int | None = None
    expires_at: int | None = None
    #: SHA-256 (hex) of the token's signing input (``header.payload``, the signature left out: an ECDSA
    #: signature can be rewritten without the key), naming a token without a ``jti`` in a sign-out; never
    #: the token.
    token_digest: str | None = field(default=None, repr=False, compare=False)
    #: SHA-256 (hex) of the whole compact token: what named a token without a ``jti`` in a sign-out
    #: written before ``token_digest`` left the signature out. Looked up too until such sign-outs have
    #: expired (a day at most, ``oidc_max_token_lifetime_s``), so an upgrade never accepts a signed-out
    #: token again; never the token.
    compact_digest: str | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class ClaimMapping:
    """Which token claim carries each Principal attribute.

    A name is first looked up as a top-level claim (so namespaced claims such as
    ``https://example.org/roles`` work), then as a dotted path into nested objects (Keycloak's
    ``realm_access.roles``).
    """

    org: str = "org_code"
    roles: str = "roles"
    department: str = "department"
    office: str = "office"
    username: str = "preferred_username"
    grids: str = "grids"


def _normalise_type(value: str) -> str:
    # RFC 7515 §4.1.9: media types compare case-insensitively and "application/" may be omitted.
    lowered = value.strip().lower()
    return lowered.removeprefix("application/")


_MAX_AGE = re.compile(r"[0-9]+", re.ASCII)


def key_set_lifetime(headers: httpx.Headers, *, now: float) -> float | None:
    """How long a key set answered with ``headers`` stays fresh, in seconds, before any bound; ``None`` when
    the provider said nothing about it.

    RFC 9111 §4.2.1: ``Cache-Control: max-age`` if present, else ``Expires`` minus ``Date`` (or minus
    ``now``, wall time, without one); §4.2.3: less the ``Age`` a cache in between has added. ``no-store``
    and ``no-cache`` say the set may not be reused unchecked (0); so does a malformed freshness (§4.2.1:
    "consider ... invalid freshness information ... to be stale"). The caller bounds the result.
    """
    directives: dict[str, list[str]] = {}
    # Several Cache-Control lines arrive joined by ", " (httpx), as RFC 9110 §5.3 combines them.
    for part in headers.get("cache-control", "").split(","):
        name, _, value = part.strip().partition("=")
        if name:
            directives.setdefault(name.strip().lower(), []).append(value.strip().strip('"'))
    if "no-store" in directives or "no-cache" in directives:
        return 0.0
    lifetime: float | None = None
    if "max-age" in directives:
        values = set(directives["max-age"])
        value = values.pop() if len(values) == 1 else ""
        lifetime = float(value) if _MAX_AGE.fullmatch(value) else 0.0
    elif "expires" in headers:
        expires = _http_date(headers["expires"])
        date = _http_date(headers["date"]) if "date" in headers else now
        lifetime = 0.0 if expires is None or date is None else expires - date
    if lifetime is None:
        return None
    age = headers.get("age", "").strip()
    if _MAX_AGE.fullmatch(age):
        lifetime -= float(age)
    return max(lifetime, 0.0)


def _http_date(value: str) -> float | None:
    """An HTTP-date (RFC 9110 §5.6.7) as a POSIX time; ``None`` when it is none."""
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


class OIDCVerifier:
    """Verify access tokens issued by one OpenID Connect provider for one audience.

    Keys come from the provider's discovery document and JWKS. They are cached; a token naming an unknown
    ``kid`` triggers at most one refetch per ``jwks_refresh_min_interval_s`` (concurrent requests share a
    single fetch), so a flood of forged ``kid`` values cannot turn the gateway against the provider.
    The key set is also refetched once older than its lifetime, so that a key the provider withdrew (after
    a compromise) stops being trusted: the lifetime the provider's caching headers give the key set
    (:func:`key_set_lifetime`; ``JWKS_DEFAULT_LIFETIME_S`` when they give none), or ``jwks_lifetime_s``
    when set, bounded to ``JWKS_MIN_LIFETIME_S``..``JWKS_MAX_LIFETIME_S``. A refetch that fails keeps the
    last good set (logged) for ``jwks_stale_grace_s`` past its lifetime; after that, tokens are refused
    ``idp_unavailable`` until a refetch succeeds. The discovery document is asked again every
    ``discovery_ttl_s``.

    ``org_prefixes`` is the issuer's jurisdiction: the division-code prefixes (``"310151"`` for a county,
    ``""`` for the whole country) an organisation it asserts must start with; ``None`` trusts it for any
    organisation. In a national deployment each province or city runs its own provider, and one that is
    misconfigured or taken over must not vouch for users of another district (GB/T 35273-2020 §7.1, least
    privilege): its token is refused, ``org_outside_issuer``.

    ``max_lifetime_s`` bounds a token's lifetime (``exp - iat``); a longer one is refused,
    ``token_lifetime_too_long``. A revocation of a user's sessions is kept that long (plus the leeway) and
    then forgotten (gateway.auth.sessions): only with the bound enforced is every token it covered expired
    by then. Without it, a token of a provider issuing longer-lived tokens than configured was accepted
    again once the revocation was pruned.

    ``qualify_subjects`` makes the user id ``<issuer>#<sub>`` (and a ``jti`` ``<issuer>#<jti>``) instead of
    the bare ``sub``: OpenID Connect Core 1.0 §5.7 makes ``sub`` unique within its issuer only, so beside
    other providers the user "u123" of one is not the user "u123" of another. The gateway's own provider
    (GRASSROOTS_OIDC_ISSUER) keeps the bare ``sub``; each of GRASSROOTS_OIDC_ISSUERS is qualified.

    ``clock`` (wall time, for ``exp``/``nbf``/``iat``) and ``monotonic`` (for cache ages) exist for
    tests; production code leaves them alone.
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        algorithms: Sequence[str] = ("RS256", "PS256", "ES256", "EdDSA"),
        leeway_s: int = 30,
        accepted_types: Sequence[str] = ("at+jwt", "JWT"),
        claims: ClaimMapping = ClaimMapping(),
        org_prefixes: Sequence[str] | None = None,
        max_lifetime_s: int | None = None,
        qualify_subjects: bool = False,
        jwks_refresh_min_interval_s: float = 30.0,
        http_timeout_s: float = 5.0,
        discovery_ttl_s: float = 3600.0,
        jwks_lifetime_s: float | None = None,
        jwks_stale_grace_s: float = JWKS_STALE_GRACE_S,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not issuer:
            raise ValueError("issuer must not be empty")
        if not audience:
            raise ValueError("audience must not be empty")
        refused = sorted(set(algorithms) - ASYMMETRIC_ALGORITHMS)
        if refused:
            # RFC 8725 §3.1/§3.2: symmetric and "none" algorithms are never acceptable here.
            raise ValueError(f"algorithms not allowed for access tokens: {refused}")
        if not algorithms:
            raise ValueError("at least one algorithm must be allowed")
        if not accepted_types:
            raise ValueError("at least one token type must be accepted")
        if leeway_s < 0:
            raise ValueError("leeway_s must not be negative")
        if max_lifetime_s is not None and max_lifetime_s <= 0:
            raise ValueError("max_lifetime_s must be positive")
        if jwks_lifetime_s is not None and not jwks_lifetime_s > 0:
            raise ValueError("jwks_lifetime_s must be positive")
        if not jwks_stale_grace_s >= 0:
            raise ValueError("jwks_stale_grace_s must not be negative")
        if qualify_subjects and "#" in issuer:
            raise ValueError("an issuer whose subjects are qualified must have no fragment ('#')")
        if org_prefixes is not None and (
            isinstance(org_prefixes, str)  # one code, not a sequence of its digits
            or not all(
                isinstance(p, str) and (p == "" or (p.isascii() and p.isdigit())) for p in org_prefixes
            )
        ):
            raise ValueError("org_prefixes must be division-code prefixes (ASCII digits)")

        self.issuer = issuer
        self.audience = audience
        self._algorithms = frozenset(algorithms)
        self._leeway_s = leeway_s
        self._max_lifetime_s = max_lifetime_s
        self._accepted_types = frozenset(_normalise_type(t) for t in accepted_types)
        self._claims = claims
        # A tuple, for one str.startswith per token; an empty one (an issuer allowed nothing) refuses all.
        self._org_prefixes = None if org_prefixes is None else tuple(org_prefixes)
        # OpenID Connect Core 1.0 §5.7: only iss and sub together identify a user. "#" never occurs in an
        # issuer (Core §2: no fragment), so no qualified id of one issuer begins another's qualifier.
        self.user_id_prefix = issuer + "#" if qualify_subjects else ""
        # The qualifiers of the other issuers trusted beside this one (set by TrustedIssuers), which no plain
        # subject of this issuer may begin with: it would name one of their users.
        self._foreign_prefixes: tuple[str, ...] = ()
        self._refresh_interval_s = jwks_refresh_min_interval_s
        self._http_timeout_s = http_timeout_s
        self._discovery_ttl_s = discovery_ttl_s
        self._jwks_lifetime_s = jwks_lifetime_s
        self._jwks_stale_grace_s = jwks_stale_grace_s
        self._clock = clock
        self._monotonic = monotonic
        # strict_check_header=False: providers add unregistered header parameters (for example
        # Azure's "nonce"); "crit" is refused separately below, so no extension is silently ignored.
        self._registry = jws.JWSRegistry(algorithms=sorted(self._algorithms), strict_check_header=False)
        # joserfc's 512-byte header default refuses standard headers carrying a certificate thumbprint
        # or chain ("x5t", "x5c"); the whole token stays capped by _MAX_TOKEN_CHARS.
        self._registry.max_header_length = 4096
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=http_timeout_s,
            follow_redirects=False,
            headers={"Accept": "application/json"},
        )
        # OpenID Connect Discovery 1.0 §4: a trailing "/" on the issuer is dropped before the suffix.
        self._discovery_url = issuer.rstrip("/") + "/.well-known/openid-configuration"

        self._lock = asyncio.Lock()
        self._jwks_uri: str | None = None
        self._discovered_at: float | None = None
        self._keys: list[Key] | None = None
        self._keys_generation = 0
        self._keys_fetched_at: float | None = None
        # How long the key set held stays fresh from _keys_fetched_at (set at each fetch).
        self._keys_lifetime_s = JWKS_DEFAULT_LIFETIME_S
        self._last_attempt_at: float | None = None
        # Bumped after every fetch attempt; lets a request that waited on the lock see that another
        # request already fetched for it.
        self._generation = 0
        # Tokens already verified: sha256(token) -> (principal, exp, key-set generation, verified at).
        self._verified: OrderedDict[bytes, tuple[Principal, float, int, float]] = OrderedDict()

    def __repr__(self) -> str:
        return f"OIDCVerifier(issuer={self.issuer!r}, audience={self.audience!r})"

    async def __aenter__(self) -> OIDCVerifier:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def verify(self, token: str) -> Principal:
        """Verify ``token`` (the bare compact JWS, without "Bearer ") and map its claims.

        :raises AuthError: with the code naming the first check that failed.
        """
        digest = (
            hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest() if isinstance(token, str) else b""
        )
        cached = self._verified.get(digest)
        if cached is not None:
            principal, exp, generation, verified_at = cached
            # A hit needs the same key set (a refetch may have withdrawn the key), an unexpired token and
            # a bounded age; everything else was checked when the token was first verified.
            if (
                generation == self._keys_generation
                and not self._keys_stale()
                and self._clock() <= exp + self._leeway_s
                and self._monotonic() - verified_at < _VERIFIED_CACHE_TTL_S
            ):
                return principal
            self._verified.pop(digest, None)
        return await self._verify_uncached(token)

    async def _verify_uncached(self, token: str) -> Principal:
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        signed, header = self._parse(token)
        # What names the token in a sign-out is its signed part (header and claims as the provider encoded
        # them), not the compact string: an ES256 signature (r, s) is as valid as (r, n - s), so anyone
        # holding a token can write a second string of it that the provider never issued (ECDSA
        # malleability; RFC 8725 §2.1 weak signatures). A digest of the whole string would let that twin
        # pass a sign-out of the original.
        signing_input = token.rpartition(".")[0]
        signed_digest = hashlib.sha256(signing_input.encode("ascii")).hexdigest()
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise AuthError("unsupported_algorithm")
        self._check_type(header)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthError("malformed_token")

        key = await self._find_key(kid, alg)
        self._check_signature(signed, key)
        claims = self._payload(signed)
        try:
            self._check_claims(claims)
            principal = dataclasses.replace(
                self._principal(claims),
                issued_at=_whole_seconds(claims.get("iat")),
                expires_at=_whole_seconds(claims.get("exp")),
                token_digest=signed_digest,
                compact_digest=digest.hex(),
            )
        except AuthError as error:
            error.claimed_org = _division_code_claim(claims, self._claims.org)
            raise
        exp = claims.get("exp")
        if isinstance(exp, int | float):
            self._verified[digest] = (principal, float(exp), self._keys_generation, self._monotonic())
            while len(self._verified) > _VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)
        return principal

    # -- token structure -------------------------------------------------------------------------

    def _parse(self, token: str) -> tuple[jws.CompactSignature, dict[str, Any]]:
        _check_compact(token)
        try:
            signed = jws.extract_compact(token.encode("ascii"), registry=self._registry)
        except JoseError as error:
            raise AuthError("malformed_token") from error
        header = signed.headers()
        if not isinstance(header, dict):
            raise AuthError("malformed_token")
        # RFC 7515 §4.1.11: this verifier understands no header extension, so any "crit" means the
        # token must be refused rather than half-understood (this also refuses RFC 7797 "b64").
        if "crit" in header or "b64" in header:
            raise AuthError("malformed_token")
        return signed, header

    def _check_type(self, header: Mapping[str, Any]) -> None:
        typ = header.get("typ")
        if typ is None:
            # RFC 7519 §5.1: "typ" is optional and a JWT without it is a plain "JWT".
            typ = "JWT"
        if not isinstance(typ, str) or _normalise_type(typ) not in self._accepted_types:
            raise AuthError("invalid_token")

    def _check_signature(self, signed: jws.CompactSignature, key: Key) -> None:
        try:
            with warnings.catch_warnings():
                # joserfc flags "EdDSA" as superseded by RFC 9864's "Ed25519"; providers still use it
                # and it is in the allowlist on purpose.
                warnings.simplefilter("ignore", SecurityWarning)
                valid = jws.validate_compact(signed, key, registry=self._registry)
        except (KeyParameterError, InvalidKeyTypeError, InvalidKeyCurveError) as error:
            # RFC 8725 §3.1: the key's type, curve, "use" or "alg" does not fit the token's algorithm.
            raise AuthError("unsupported_algorithm") from error
        except JoseError as error:
            raise AuthError("invalid_token") from error
        if not valid:
            raise AuthError("invalid_token")

    @staticmethod
    def _payload(signed: jws.CompactSignature) -> dict[str, Any]:
        try:
            claims = json.loads(signed.payload)
        except (TypeError, ValueError) as error:
            raise AuthError("malformed_token") from error
        if not isinstance(claims, dict):
            raise AuthError("malformed_token")
        return claims

    def _check_claims(self, claims: dict[str, Any]) -> None:
        # RFC 9068 §2.2 requires iss, exp, aud, sub and iat in an access token; jti and client_id are
        # left optional so that providers issuing plain "JWT" access tokens still work.
        registry = JWTClaimsRegistry(
            now=lambda: int(self._clock()),
            leeway=self._leeway_s,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError as error:
            raise AuthError("expired_token") from error
        except MissingClaimError as error:
            # Claim names only (RFC 9068 §2.2 requires them); a provider leaving one out refuses every token
            # it issues, and the user's "sign in again" cannot help: the operator must be told which.
            _log.warning(
                "identity provider %s: access token without the claim(s) %s that RFC 9068 requires; token "
                "refused (invalid_token): configure the provider to issue them",
                self.issuer,
                error.claim,
            )
            raise AuthError("invalid_token") from error
        except InvalidClaimError as error:
            code = _invalid_claim_code(error.claim, claims)
            if code == "wrong_issuer":
                # Signed by this provider's key, yet naming another issuer: a provider known by two addresses
                # (Keycloak answers discovery with the host it was asked on, and stamps tokens with the one
                # the user signed in through). Every sign-in is refused; the operator needs both names.
                _log.warning(
                    "identity provider %s: access token signed by its key names the issuer %s; token refused "
                    "(wrong_issuer): give the provider one public address (its hostname setting) so that "
                    "its tokens and its discovery document name the same issuer",
                    self.issuer,
                    _shown_audiences(claims.get("iss")),
                )
            if code == "wrong_audience":
                # A provider not told about this gateway names its own default audience (Keycloak's
                # "account", a client id): every token of it is refused and signing in again cannot help.
                # The audiences are the provider's client ids, never personal data; shown escaped, cut.
                _log.warning(
                    "identity provider %s: access token for audience %s, not %r (GRASSROOTS_OIDC_AUDIENCE); "
                    "token refused (wrong_audience): if this provider's tokens are meant for this gateway, "
                    "have it put %r in their aud (an audience mapper), or set GRASSROOTS_OIDC_AUDIENCE",
                    self.issuer,
                    _shown_audiences(claims.get("aud")),
                    self.audience,
                    self.audience,
                )
            if code == "token_not_yet_valid":
                # The provider's clock ahead of the gateway's (RFC 7519 §4.1.5/§4.1.6): beyond the leeway a
                # token stamped later than issued would escape a revocation of its user (gateway.auth.
                # sessions). The operator needs the provider and by how much; never the token.
                _log.warning(
                    "identity provider %s: access token %s is %d s ahead of this gateway's clock, beyond "
                    "the %d s leeway (GRASSROOTS_OIDC_LEEWAY_S); token refused: check the provider's and "
                    "the gateway's clocks (NTP)",
                    self.issuer,
                    error.claim,
                    math.ceil(claims[error.claim] - self._clock()),
                    self._leeway_s,
                )
            raise AuthError(code) from error
        except JoseError as error:
            raise AuthError("invalid_token") from error
        exp, iat = claims["exp"], claims["iat"]
        if not (_is_number(exp) and _is_number(iat)):
            raise AuthError("invalid_token")
        if self._max_lifetime_s is not None and exp - iat > self._max_lifetime_s:
            # Numbers only: the operator needs them to set GRASSROOTS_OIDC_MAX_TOKEN_LIFETIME_S right.
            _log.warning(
                "identity provider %s issued an access token valid for %d s, longer than the %d s "
                "configured (GRASSROOTS_OIDC_MAX_TOKEN_LIFETIME_S); token refused",
                self.issuer,
                int(exp - iat),
                self._max_lifetime_s,
            )
            raise AuthError("token_lifetime_too_long")

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        mapping = self._claims
        subject = claims["sub"]
        # The subject is the actor of every audit event and of grants, reviews and complaints; a provider
        # keying users by ID number or mobile (PIPL Art. 51: never kept in plain text) would put them
        # there. Refused here, so no request of such a token runs unlogged (the audit log refuses the
        # value) and the administrator is told why.
        if isinstance(subject, str) and looks_like_identifier(fold(subject)):
            raise AuthError("personal_data_in_subject")
        if not recordable_subject(subject):
            raise AuthError("invalid_token")
        user_id = self._user_id(subject)

        org = _division_code_claim(claims, mapping.org)
        if org is None:
            raise self._insufficient(
                claims, mapping.org, "the user's organisation as a 12-digit division code"
            )
        if self._org_prefixes is not None and not org.startswith(self._org_prefixes):
            # A division code is no personal data; the operator needs it to tell a user filed under the
            # wrong organisation from a provider vouching for another district. Never the token.
            _log.warning(
                "identity provider %s asserted organisation %s, outside its configured jurisdiction; "
                "token refused",
                self.issuer,
                org,
            )
            raise AuthError("org_outside_issuer")

        roles = _lookup(claims, mapping.roles)
        if not isinstance(roles, list) or not all(_recordable_role(r) for r in roles):
            raise self._insufficient(claims, mapping.roles, "a JSON list of role codes (ASCII, no spaces)")

        username = _lookup(claims, mapping.username)
        if username is None:
            username = subject
        elif not isinstance(username, str) or not username:
            raise self._insufficient(claims, mapping.username, "text")

        # The identity provider is authoritative for grid assignments: a malformed claim refuses the
        # token rather than being ignored (ignoring it would widen a grid worker to the whole village).
        grids = _lookup(claims, mapping.grids)
        if grids is None:
            grids = []
        elif not isinstance(grids, list) or not all(isinstance(g, str) and is_grid(g) for g in grids):
            raise self._insufficient(claims, mapping.grids, "a JSON list of micro-grid codes")

        jti = claims.get("jti")
        return Principal(
            user_id=user_id,
            username=username,
            org=org,
            roles=tuple(roles),
            department=self._optional_str(claims, mapping.department),
            office=self._optional_str(claims, mapping.office),
            # A sign-out names the token by its jti (gateway.auth.sessions), which is unique within its
            # issuer only (RFC 7519 §4.1.7: the relying party on several issuers keeps them apart).
            token_id=self.user_id_prefix + jti if isinstance(jti, str) and jti else None,
            grids=tuple(sorted(set(grids))),
        )

    def _insufficient(self, claims: Mapping[str, Any], name: str, wanted: str) -> AuthError:
        """The refusal of a token whose claim ``name`` the gateway needs is missing or not ``wanted``.

        The user is told to contact the administrator; the administrator learns from the log which claim of
        which provider, by its name, never its value (a provider issuing no ``org_code`` or a Keycloak
        keeping roles under ``realm_access.roles`` refuses every sign-in, and nothing else said which)."""
        state = "missing" if _lookup(claims, name) is None else "not " + wanted
        _log.warning(
            "identity provider %s: access token claim %r is %s; token refused (insufficient_claims): have "
            "the provider issue %r as %s (README: Connecting your identity provider)",
            self.issuer,
            name,
            state,
            name,
            wanted,
        )
        return AuthError("insufficient_claims")

    def _optional_str(self, claims: Mapping[str, Any], name: str) -> str | None:
        value = _lookup(claims, name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._insufficient(claims, name, "text")
        return value or None

    def _user_id(self, subject: str) -> str:
        """The user id of ``subject`` (already checked: recordable, no ID number or mobile): qualified by the
        issuer when this verifier qualifies subjects, else the bare ``sub``."""
        if self.user_id_prefix:
            user_id = self.user_id_prefix + subject
        elif self._foreign_prefixes and subject.startswith(self._foreign_prefixes):
            # It would be taken for a user of another trusted provider (their ids are "<issuer>#<sub>").
            _log.warning(
                "identity provider %s: a subject written as another trusted provider's user id; "
                "token refused",
                self.issuer,
            )
            raise AuthError("invalid_token")
        else:
            user_id = subject
        if len(user_id) > _MAX_USER_ID:
            # Lengths only: the subject itself is never logged.
            _log.warning(
                "identity provider %s: a subject of %d characters makes a user id longer than the %d "
                "characters the gateway keeps; token refused",
                self.issuer,
                len(subject),
                _MAX_USER_ID,
            )
            raise AuthError("invalid_token")
        if user_id == _RESERVED_ACTOR or user_id.startswith(_RESERVED_ACTOR_PREFIX):
            # The audit log would show this user's acts as an unauthenticated request's or a system's.
            _log.warning(
                "identity provider %s: a subject the gateway reserves for its own audit actors "
                "('anonymous', 'system:…'); token refused",
                self.issuer,
            )
            raise AuthError("invalid_token")
        return user_id

    # -- keys ------------------------------------------------------------------------------------

    async def _find_key(self, kid: str | None, alg: str) -> Key:
        fetched = await self._ensure_keys()
        generation = self._generation
        key = self._select_key(kid, alg)
        if key is None:
            fetched = await self._refresh_for_unknown_key(generation) or fetched
            key = self._select_key(kid, alg)
            if key is None and fetched:
                # Said once per refetch (so at most once per jwks_refresh_min_interval_s, whatever a flood of
                # forged kids does), naming the key ids the provider publishes, never the token's own: a
                # provider signing with a key it does not publish (a jwks_uri of another realm, a new key
                # used before it is published) refuses every sign-in, and "sign in again" cannot help.
                _log.warning(
                    "identity provider %s: an access token names a signing key that is not in the key set "
                    "just fetched from %s (key ids: %s); token refused (unknown_key). If every sign-in is "
                    "refused so, the provider signs with a key its jwks_uri does not publish",
                    self.issuer,
                    self._jwks_uri,
                    ", ".join(sorted(ascii(k.kid)[:66] for k in self._keys or [])) or "none",
                )
        if key is None:
            raise AuthError("unknown_key")
        return key

    def _select_key(self, kid: str | None, alg: str) -> Key | None:
        keys = self._keys or []
        if kid is not None:
            return next((k for k in keys if k.kid == kid), None)
        # A provider with a single signing key may omit "kid" (RFC 7515 §4.1.4 makes it optional);
        # only then is the one key of the algorithm's type unambiguous.
        candidates = [k for k in keys if k.key_type == KEY_TYPE_OF_ALGORITHM[alg]]
        return candidates[0] if len(candidates) == 1 else None

    async def _ensure_keys(self) -> bool:
        """Fetch the key set if none is held or it is stale; whether this request fetched it."""
        if self._keys is not None and not self._keys_stale():
            return False
        generation = self._generation
        async with self._lock:
            if self._generation != generation:
                # Another request fetched while this one waited: use its result, good or bad.
                if self._keys is None:
                    raise AuthError("idp_unavailable")
                self._refuse_past_grace()
                return False
            if self._keys is not None and self._last_attempt_failed() and not self._attempt_allowed():
                # After a failed refresh, retry only as often as unknown kids may (the rate limit).
                self._refuse_past_grace()
                return False
            try:
                await self._fetch_keys()
            except AuthError:
                if self._keys is None:
                    raise
                self._keep_stale_keys()
                return False
            return True

    def _keep_stale_keys(self) -> None:
        """After a failed refresh: keep the last good key set within the grace (a stale set beats refusing
        everyone while the provider is briefly down), saying so; past it, refuse (and say that)."""
        age = self._monotonic() - (self._keys_fetched_at or 0.0)
        left = self._keys_lifetime_s + self._jwks_stale_grace_s - age
        if left <= 0:
            _log.error(
                "identity provider %s: key set refresh failed, and the key set held was fetched %d s ago "
                "(lifetime %d s, then %d s of grace): it is no longer trusted; every token is refused "
                "(idp_unavailable) until the provider's key set can be fetched again",
                self.issuer,
                age,
                self._keys_lifetime_s,
                self._jwks_stale_grace_s,
            )
            raise AuthError("idp_unavailable")
        _log.warning(
            "identity provider %s: key set refresh failed; keeping the key set fetched %d s ago (lifetime "
            "%d s) for at most %d s more, then refusing every token (idp_unavailable) until a refresh "
            "succeeds",
            self.issuer,
            age,
            self._keys_lifetime_s,
            left,
        )

    def _refuse_past_grace(self) -> None:
        """Refuse (idp_unavailable) while the key set held is past its lifetime and the grace, and every
        refresh since has failed; said in the log by the failed refresh itself (_keep_stale_keys)."""
        fetched = self._keys_fetched_at
        if (
            fetched is not None
            and self._last_attempt_failed()
            and self._monotonic() - fetched >= self._keys_lifetime_s + self._jwks_stale_grace_s
        ):
            raise AuthError("idp_unavailable")

    async def _refresh_for_unknown_key(self, generation: int) -> bool:
        """Refetch the key set unless another request just did or the rate limit forbids; whether this one
        fetched."""
        async with self._lock:
            if self._generation != generation:
                return False
            if not self._attempt_allowed():
                return False
            await self._fetch_keys()
            return True

    def _keys_stale(self) -> bool:
        fetched = self._keys_fetched_at
        return fetched is None or self._monotonic() - fetched >= self._keys_lifetime_s

    def _last_attempt_failed(self) -> bool:
        return self._last_attempt_at != self._keys_fetched_at

    def _attempt_allowed(self) -> bool:
        last = self._last_attempt_at
        return last is None or self._monotonic() - last >= self._refresh_interval_s

    async def _fetch_keys(self) -> None:
        """Fetch the key set (discovering its location first if needed). Call with the lock held."""
        attempted_at = self._monotonic()
        try:
            jwks_uri = await self._discover()
            document, headers = await self._get(jwks_uri)
            keys = signing_keys(document)
            if keys is None:
                _log.warning("identity provider %s: key set at %s is not a JWKS", self.issuer, jwks_uri)
                raise AuthError("idp_unavailable")
            if not usable_keys(keys, self._algorithms):
                # Every token would be refused unknown_key: say why once per fetch.
                _log.warning(
                    "identity provider %s: key set at %s holds no signing key for the accepted algorithms "
                    "(%s, GRASSROOTS_OIDC_ALGORITHMS); every token is refused (unknown_key)",
                    self.issuer,
                    jwks_uri,
                    ", ".join(sorted(self._algorithms)),
                )
            self._keys = keys
            self._keys_generation += 1
            self._keys_fetched_at = attempted_at
            self._keys_lifetime_s = self._lifetime_of(headers)
        finally:
            self._last_attempt_at = attempted_at
            self._generation += 1

    def _lifetime_of(self, headers: httpx.Headers) -> float:
        """The lifetime of a key set answered with ``headers``: the setting if given, else what the provider
        says (its default when it says nothing), within the bounds."""
        lifetime = self._jwks_lifetime_s
        if lifetime is None:
            said = key_set_lifetime(headers, now=self._clock())
            lifetime = JWKS_DEFAULT_LIFETIME_S if said is None else said
        return min(max(lifetime, JWKS_MIN_LIFETIME_S), JWKS_MAX_LIFETIME_S)

    async def _discover(self) -> str:
        if (
            self._jwks_uri is not None
            and self._discovered_at is not None
            and self._monotonic() - self._discovered_at < self._discovery_ttl_s
        ):
            return self._jwks_uri
        try:
            document = await self._get_json(self._discovery_url)
        except AuthError:
            if self._jwks_uri is not None:
                return self._jwks_uri
            raise
        issuer = document.get("issuer")
        jwks_uri = document.get("jwks_uri")
        if issuer != self.issuer:
            # OpenID Connect Discovery 1.0 §4.3: a mismatch means the document is not this issuer's.
            _log.error(
                "identity provider %s: discovery document names a different issuer; refusing it",
                self.issuer,
            )
            raise AuthError("idp_unavailable")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            _log.error("identity provider %s: discovery document has no usable jwks_uri", self.issuer)
            raise AuthError("idp_unavailable")
        if self.issuer.startswith("https://") and not jwks_uri.startswith("https://"):
            # OpenID Connect Discovery 1.0 §7.2: the key set of an https issuer is fetched over TLS too.
            # An http jwks_uri would bring the keys every token is checked against in plain text, where
            # anyone on the path could replace them with their own.
            _log.error(
                "identity provider %s: discovery names a jwks_uri without TLS; refusing it", self.issuer
            )
            raise AuthError("idp_unavailable")
        self._jwks_uri = jwks_uri
        self._discovered_at = self._monotonic()
        return jwks_uri

    async def _get_json(self, url: str) -> dict[str, Any]:
        return (await self._get(url))[0]

    async def _get(self, url: str) -> tuple[dict[str, Any], httpx.Headers]:
        """The JSON object ``url`` answers, and the answer's headers."""
        try:
            # httpx's timeout bounds each wait for a byte, not the whole answer: a provider (or whatever
            # answers at its address) trickling its key set a byte at a time held the key lock, and with
            # it every sign-in of the process, for as long as it liked. The whole answer gets that long.
            async with asyncio.timeout(self._http_timeout_s), self._client.stream("GET", url) as response:
                if response.status_code != 200:
                    _log.warning(
                        "identity provider %s: GET %s answered %d", self.issuer, url, response.status_code
                    )
                    raise AuthError("idp_unavailable")
                headers = response.headers
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > _MAX_DOCUMENT_BYTES:
                        _log.warning("identity provider %s: GET %s answered too much", self.issuer, url)
                        raise AuthError("idp_unavailable")
        except TimeoutError as error:
            _log.warning("identity provider %s: GET %s did not finish in time", self.issuer, url)
            raise AuthError("idp_unavailable") from error
        except httpx.HTTPError as error:
            _log.warning("identity provider %s: GET %s failed (%s)", self.issuer, url, type(error).__name__)
            raise AuthError("idp_unavailable") from error
        try:
            document = json.loads(bytes(body))
        except ValueError as error:
            _log.warning("identity provider %s: GET %s did not answer JSON", self.issuer, url)
            raise AuthError("idp_unavailable") from error
        if not isinstance(document, dict):
            _log.warning("identity provider %s: GET %s did not answer a JSON object", self.issuer, url)
            raise AuthError("idp_unavailable")
        return document, headers


class TrustedIssuers:
    """Verify access tokens of several identity providers (a province's and a district's unified sign-on),
    each with its own :class:`OIDCVerifier`: its discovery and keys, its audience, its jurisdiction.

    A token is verified by the verifier of the issuer it names (its unverified ``iss``, read only to choose)
    and by no other: the keys of one provider never validate a token naming another (RFC 8725 §3.8: a
    relying party trusting several issuers must keep their keys apart), and that verifier checks ``iss``
    again, exactly, once the signature holds. A token naming no trusted issuer is refused,
    ``wrong_issuer``, before any key is looked for. With a single issuer every token goes to it, exactly as
    before there were several.
    """

    def __init__(self, verifiers: Sequence[OIDCVerifier]) -> None:
        if not verifiers:
            raise ValueError("at least one issuer must be trusted")
        self._by_issuer = {verifier.issuer: verifier for verifier in verifiers}
        if len(self._by_issuer) != len(verifiers):
            raise ValueError("each issuer may be trusted once")
        # A user id is "<issuer>#<sub>" for a qualifying issuer, the bare sub for one that does not: at most
        # one issuer keeps bare subs, and none of them may read as a qualified id, or two people would be
        # one user (see OIDCVerifier).
        if sum(1 for v in verifiers if not v.user_id_prefix) > 1:
            raise ValueError("at most one issuer may keep bare subjects as user ids; qualify the others")
        qualified = tuple(v.user_id_prefix for v in verifiers if v.user_id_prefix)
        for verifier in verifiers:
            if not verifier.user_id_prefix:
                verifier._foreign_prefixes = qualified
        self._only = verifiers[0] if len(verifiers) == 1 else None

    def __repr__(self) -> str:
        return f"TrustedIssuers({sorted(self._by_issuer)!r})"

    @property
    def issuers(self) -> tuple[str, ...]:
        return tuple(self._by_issuer)

    async def verify(self, token: str) -> Principal:
        """Verify ``token`` with its own issuer's verifier (see :meth:`OIDCVerifier.verify`).

        :raises AuthError: ``wrong_issuer`` for a token naming no trusted issuer; else as the verifier does.
        """
        if self._only is not None:
            return await self._only.verify(token)
        verifier = self._by_issuer.get(_claimed_issuer(token))
        if verifier is None:
            raise AuthError("wrong_issuer")
        return await verifier.verify(token)

    async def aclose(self) -> None:
        for verifier in self._by_issuer.values():
            await verifier.aclose()


def _claimed_issuer(token: str) -> str:
    """The ``iss`` a compact JWS names, unverified (to choose whose keys check it, nothing else)."""
    _check_compact(token)
    segment = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError) as error:
        raise AuthError("malformed_token") from error
    if not isinstance(claims, dict):
        raise AuthError("malformed_token")
    issuer = claims.get("iss")
    if not isinstance(issuer, str):
        # RFC 9068 §2.2: iss is required; without it no issuer can be asked.
        raise AuthError("invalid_token")
    return issuer


def _check_compact(token: object) -> None:
    """Refuse (``malformed_token``) what cannot be a compact JWS of a sensible size, before any parsing."""
    if (
        not isinstance(token, str)
        or len(token) > _MAX_TOKEN_CHARS
        or token.count(".") != 2
        or _TOKEN_CHARS.fullmatch(token) is None
    ):
        raise AuthError("malformed_token")


def signing_keys(document: Mapping[str, Any]) -> list[Key] | None:
    """The public signing keys of a JWK Set document, as the verifier uses them (a key it cannot use is
    left out); ``None`` when the document is no JWK Set."""
    entries = document.get("keys")
    if not isinstance(entries, list):
        return None
    keys: list[Key] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        # RFC 7517 §4.2: a key marked for encryption is not a signing key. Symmetric ("oct") keys are
        # never published for verification and must never verify anything here (RFC 8725 §3.2).
        if entry.get("use", "sig") != "sig" or entry.get("kty") not in {"RSA", "EC", "OKP"}:
            continue
        try:
            key = JWKRegistry.import_key(entry)
        except (JoseError, ValueError, TypeError):
            # RFC 7517 §5: skip a key that cannot be understood instead of dropping the whole set.
            continue
        if key.is_private:
            # A provider that publishes private material is misconfigured; use the public half only.
            key = JWKRegistry.import_key(key.as_dict(private=False))
        keys.append(key)
    return keys


def usable_keys(keys: Sequence[Key], algorithms: Sequence[str] | frozenset[str]) -> list[Key]:
    """Those of ``keys`` whose type fits one of ``algorithms`` (RFC 8725 §3.1: a key verifies only
    algorithms of its own type)."""
    types = {KEY_TYPE_OF_ALGORITHM[alg] for alg in algorithms if alg in KEY_TYPE_OF_ALGORITHM}
    return [key for key in keys if key.key_type in types]


def recordable_subject(subject: object) -> bool:
    """Whether ``subject`` can be a user id: 1 to 256 characters of UTF-8, none of them unprintable."""
    if not isinstance(subject, str) or not 0 < len(subject) <= _MAX_SUBJECT_CHARS:
        return False
    try:
        subject.encode("utf-8")  # a lone surrogate (JSON "\ud800") cannot be written anywhere
    except UnicodeEncodeError:
        return False
    # The subject is the actor of every audit event: a control character ("\n", "\r", ESC), a line or
    # paragraph separator or an invisible format character (a bidi override) would let it forge a line of
    # a log or an export, or show as another user's id (CWE-117). No provider's identifier holds one.
    return not any(unicodedata.category(char) in _UNPRINTABLE_CATEGORIES for char in subject)


def _recordable_role(role: object) -> bool:
    return isinstance(role, str) and _ROLE.fullmatch(role) is not None and not looks_like_identifier(role)


def _lookup(claims: Mapping[str, Any], name: str) -> Any:
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _division_code_claim(claims: Mapping[str, Any], name: str) -> str | None:
    """The claim ``name`` when it is a valid 12-digit division code, else None."""
    org = _lookup(claims, name)
    if not isinstance(org, str) or _DIVISION_CODE.fullmatch(org) is None or not is_division_code(org):
        return None
    return org


def _shown_audiences(aud: object) -> str:
    """A token's ``aud`` (or ``iss``) for the operator's log: each value escaped (no control character
    reaches the log) and cut to 64 characters, at most five of them."""
    names = aud if isinstance(aud, list) else [aud]
    shown = [ascii(name[:64]) if isinstance(name, str) else type(name).__name__ for name in names[:5]]
    return ", ".join(shown) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _whole_seconds(value: object) -> int | None:
    """A NumericDate (RFC 7519 §2) as whole seconds, rounded down: an ``iat`` is never taken as later than
    it was (a sign-in revocation covers it); whoever keeps a token's sign-out adds a second to ``exp``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return math.floor(value)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _invalid_claim_code(claim: str, claims: Mapping[str, Any]) -> AuthErrorCode:
    if claim == "iss":
        return "wrong_issuer" if isinstance(claims.get("iss"), str) else "invalid_token"
    if claim == "aud":
        aud = claims.get("aud")
        return "wrong_audience" if isinstance(aud, str | list) else "invalid_token"
    value = claims.get(claim)
    if claim in {"nbf", "iat"} and _is_number(value) and math.isfinite(value):
        # A numeric nbf/iat refused by the registry is in the future beyond the leeway (NaN and Infinity,
        # which Python's JSON reads, are no NumericDate: invalid).
        return "token_not_yet_valid"
    return "invalid_token"
