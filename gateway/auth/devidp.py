"""The embedded development identity provider: discovery, JWKS and a password-less token endpoint.

It exists so that the demo and the tests have an issuer without an external provider. The gateway
treats it like any other OpenID Connect provider (it verifies its tokens through discovery and JWKS over
HTTP), so nothing in the data path trusts it more than a real one. It has no passwords: anyone who can
reach ``/token`` can sign in as any demo user, which is why it refuses to exist in production mode.

Tokens follow RFC 9068 (JWT profile for OAuth 2.0 access tokens). The signing key is an EC P-256
(ES256) or RSA-2048 (RS256) key generated on first use, stored with mode 0600, and named by its
RFC 7638 thumbprint.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import tempfile
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, RSAKey

__all__ = [
    "DEV_CLIENT_ID",
    "DEV_GRANT_TYPE",
    "DevIdentityProvider",
    "DevIdentityProviderForbiddenError",
    "UnknownDevUserError",
]

DEV_CLIENT_ID = "grassroots-dev"
DEV_GRANT_TYPE = "urn:grassroots:dev-login"

_DIVISION_CODE = re.compile(r"[0-9]{12}", re.ASCII)
_ALGORITHM_OF_KEY_TYPE: Mapping[str, str] = {"EC": "ES256", "RSA": "RS256"}


class DevIdentityProviderForbiddenError(RuntimeError):
    """Raised when the development identity provider is asked for in production mode."""

    message_zh = "生产模式下不得启用内置开发身份认证服务，请改用正式的统一身份认证服务。"
    message_en = (
        "The embedded development identity provider cannot run in production mode; "
        "configure the real identity provider instead."
    )

    def __init__(self) -> None:
        super().__init__(self.message_en)


class UnknownDevUserError(LookupError):
    """No demo user has the requested username."""

    message_zh = "没有这个演示用户。"
    message_en = "There is no demo user with that username."

    def __init__(self) -> None:
        super().__init__(self.message_en)


@dataclass(frozen=True)
class _DevUser:
    username: str
    user_id: str
    roles: tuple[str, ...]
    org: str
    department: str | None
    office: str | None
    grids: tuple[str, ...] = ()


def _refuse_in_production(production: bool) -> None:
    if production:
        raise DevIdentityProviderForbiddenError()


def _user_from(record: Mapping[str, object], index: int) -> _DevUser:
    def text(name: str, *, required: bool) -> str | None:
        value = record.get(name)
        if value is None or value == "":
            if required:
                raise ValueError(f"demo user #{index}: {name!r} is required")
            return None
        if not isinstance(value, str):
            raise ValueError(f"demo user #{index}: {name!r} must be a string")
        return value

    username = text("username", required=True)
    user_id = text("user_id", required=True)
    org = text("org", required=True)
    assert username is not None and user_id is not None and org is not None
    if _DIVISION_CODE.fullmatch(org) is None:
        raise ValueError(f"demo user #{index}: 'org' must be a 12-digit division code")
    raw_roles = record.get("roles")
    if raw_roles is None:
        role = text("role", required=True)
        assert role is not None
        roles: tuple[str, ...] = (role,)
    elif isinstance(raw_roles, list | tuple) and raw_roles and all(isinstance(r, str) for r in raw_roles):
        roles = tuple(raw_roles)
    else:
        raise ValueError(f"demo user #{index}: 'roles' must be a non-empty list of strings")
    raw_grids = record.get("grids") or ()
    if not isinstance(raw_grids, list | tuple) or not all(isinstance(g, str) for g in raw_grids):
        raise ValueError(f"demo user #{index}: 'grids' must be a list of micro-grid codes")
    return _DevUser(
        username=username,
        user_id=user_id,
        roles=roles,
        org=org,
        department=text("department", required=False),
        office=text("office", required=False),
        grids=tuple(raw_grids),
    )


class DevIdentityProvider:
    """Issue RFC 9068 access tokens for the demo identities.

    ``issuer`` must be the public URL the router is mounted at (for example
    ``http://127.0.0.1:8000/dev-idp``), since verifiers find discovery under it.
    """

    def __init__(
        self,
        issuer: str,
        key_path: Path,
        users: Sequence[Mapping[str, object]],
        *,
        production: bool = False,
        key_type: Literal["EC", "RSA"] = "EC",
        token_ttl_s: int = 3600,
    ) -> None:
        _refuse_in_production(production)
        if not issuer.startswith(("http://", "https://")):
            raise ValueError("issuer must be an http(s) URL")
        if key_type not in _ALGORITHM_OF_KEY_TYPE:
            raise ValueError("key_type must be 'EC' or 'RSA'")
        self.issuer = issuer.rstrip("/")
        self.key_path = Path(key_path)
        #: The lifetime of the tokens its /token endpoint issues (within what the gateway accepts).
        self.token_ttl_s = token_ttl_s
        self._key_type = key_type
        parsed = [_user_from(record, index) for index, record in enumerate(users)]
        self._users = {user.username: user for user in parsed}
        if len(self._users) != len(parsed):
            raise ValueError("demo usernames must be unique")
        self._key: ECKey | RSAKey | None = None
        self._key_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DevIdentityProvider(issuer={self.issuer!r})"

    @property
    def usernames(self) -> tuple[str, ...]:
        return tuple(self._users)

    def discovery(self) -> dict[str, Any]:
        """The OpenID Connect Discovery 1.0 §3 metadata for this provider."""
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/jwks.json",
            "token_endpoint": f"{self.issuer}/token",
            "grant_types_supported": [DEV_GRANT_TYPE],
            "token_endpoint_auth_methods_supported": ["none"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.algorithm],
            "claims_supported": [
                "sub",
                "preferred_username",
                "org_code",
                "roles",
                "department",
                "office",
                "grids",
            ],
        }

    @property
    def algorithm(self) -> str:
        return _ALGORITHM_OF_KEY_TYPE[self._signing_key().key_type]

    def jwks(self) -> dict[str, Any]:
        """The public key set (RFC 7517 §5); never the private half."""
        key = self._signing_key()
        public: dict[str, Any] = dict(key.as_dict(private=False))
        public.update({"kid": key.kid, "use": "sig", "alg": self.algorithm})
        return {"keys": [public]}

    def mint(self, username: str, audience: str, ttl_s: int = 3600) -> str:
        """An RFC 9068 access token for the demo user ``username``.

        :raises UnknownDevUserError: when no demo user has that username.
        """
        user = self._users.get(username)
        if user is None:
            raise UnknownDevUserError()
        if not audience:
            raise ValueError("audience must not be empty")
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        key = self._signing_key()
        now = int(time.time())
        # RFC 9068 §2.2: iss, exp, aud, sub, client_id, iat and jti are required.
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user.user_id,
            "aud": audience,
            "exp": now + ttl_s,
            "iat": now,
            "nbf": now,
            "jti": secrets.token_urlsafe(16),
            "client_id": DEV_CLIENT_ID,
            "preferred_username": user.username,
            "org_code": user.org,
            "roles": list(user.roles),
        }
        if user.department is not None:
            claims["department"] = user.department
        if user.office is not None:
            claims["office"] = user.office
        if user.grids:
            # The grid worker's assigned micro-grids (网格分配): the IdP stays the source of truth.
            claims["grids"] = list(user.grids)
        # RFC 9068 §2.1: the "typ" header is "at+jwt" so that an ID token cannot pass for one.
        header = {"alg": self.algorithm, "kid": key.kid, "typ": "at+jwt"}
        with warnings.catch_warnings():
            # joserfc flags "EdDSA" as superseded by RFC 9864's "Ed25519"; relying parties still expect it.
            warnings.simplefilter("ignore", SecurityWarning)
            return jwt.encode(header, claims, key, algorithms=[self.algorithm])

    def _signing_key(self) -> ECKey | RSAKey:
        with self._key_lock:
            if self._key is None:
                self._key = self._load_or_create_key()
            return self._key

    def _load_or_create_key(self) -> ECKey | RSAKey:
        path = self.key_path
        if not path.exists():
            self._create_key_file(path)
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PermissionError(f"{path}: signing key is accessible to other users; run: chmod 600 {path}")
        # The stored key decides the type: a key file made earlier keeps working whatever key_type says.
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        key: ECKey | RSAKey
        if isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name == "secp256r1":
            key = ECKey.import_key(pem)
        elif isinstance(private, rsa.RSAPrivateKey) and private.key_size >= 2048:
            key = RSAKey.import_key(pem)
        else:
            raise ValueError(f"{path}: expected an EC P-256 or RSA (2048 bits or more) private key")
        # RFC 7638: the key's name is its thumbprint, so it changes exactly when the key does.
        return type(key).import_key(key.as_dict(private=True), {"kid": key.thumbprint()})

    def _create_key_file(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        key: ECKey | RSAKey = (
            ECKey.generate_key("P-256") if self._key_type == "EC" else RSAKey.generate_key(2048)
        )
        pem = key.as_pem(private=True)
        # Write under a temporary name and link into place: readers never see a half-written key, and
        # when two processes race, the first key wins and both use it.
        fd, tmp_name = tempfile.mkstemp(prefix=".devidp-", dir=path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
            with contextlib.suppress(FileExistsError):
                os.link(tmp_name, path)
        finally:
            os.unlink(tmp_name)
