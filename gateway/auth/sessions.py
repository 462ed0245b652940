"""Sign-in revocation: a user's sign-out, and an administrator cutting a user off, in every process.

Access tokens are verified without asking the identity provider (gateway.auth.oidc), so until they expire
they would stay good after a sign-out, or after a cadre is transferred away or a phone is lost. Two kinds
of revocation close that (GB/T 35273-2020 §6.3 c: access is withdrawn when a person's duties end;
GB/T 22239-2019 8.1.4.1 d: a session can be ended):

* **a token** (sign-out): by its ``jti``, or, when it carries none, by the SHA-256 of its signed part
  (header and claims; not the signature, which the holder of an ECDSA token can rewrite); kept until the
  token itself expires;
* **a user** (``revoke-sessions``): every token of that user issued before the revocation (``iat`` earlier
  than the revocation instant); kept for ``oidc_max_token_lifetime_s`` plus the leeway, after which no such
  token is left: the verifier refuses any token living longer than that (``token_lifetime_too_long``), so
  one issued before the revocation has expired by then.

Both live in the database, so they hold across workers and hosts. Every write moves the ``sessions``
version row in the same transaction; the process that wrote re-reads at once, the others on their next
policy poll (``policy_refresh_interval_s``), exactly as grants and system suspensions do. The check on each
request is a lookup in the in-memory :class:`RevokedSessions` (no database round trip); expired rows are
deleted by the next revocation written. No token is ever stored: only its ``jti`` or its digest.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from sqlalchemy import String, Text, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from gateway.auth.oidc import Principal
from grassroots_common.sqltypes import UTCDateTime
from policies import GrantRepository

__all__ = [
    "SESSIONS_VERSION",
    "RevokedSessions",
    "RevokedTokenRow",
    "UserRevocationRow",
    "load_revoked_sessions",
    "metadata",
    "revoke_token",
    "revoke_user_sessions",
    "token_key",
    "token_ref",
]

#: The ``policy_versions`` row every revocation moves (polled with the grants' and the policy files').
SESSIONS_VERSION = "sessions"
#: A ``jti`` longer than this is kept as its digest (the column stays bounded whatever a provider sends).
_MAX_RAW_JTI = 200


class _Base(DeclarativeBase):
    pass


metadata = _Base.metadata


class RevokedTokenRow(_Base):
    """One signed-out token, until it expires."""

    __tablename__ = "auth_revoked_tokens"

    #: ``jti:<jti>``, or ``sha256:<digest>`` (of a long jti, or of the token's signed part without a jti).
    token_key: Mapped[str] = mapped_column(String(256), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(256))
    #: When the token stops being accepted anyway (its ``exp`` plus the clock-skew leeway); pruned after.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str] = mapped_column(String(256))


class UserRevocationRow(_Base):
    """Every token of one user issued before ``revoked_before`` is refused (one row per user: the latest)."""

    __tablename__ = "auth_user_revocations"

    user_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    revoked_before: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str] = mapped_column(String(256))
    reason: Mapped[str] = mapped_column(Text)
    #: No token it covers is still valid after this (``revoked_before`` + the longest token lifetime).
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


def token_key(principal: Principal) -> str:
    """How a sign-out names the token: its ``jti`` (RFC 7519 §4.1.7), else the digest of the token."""
    jti = principal.token_id
    if jti:
        if len(jti) <= _MAX_RAW_JTI:
            return f"jti:{jti}"
        return "sha256:" + hashlib.sha256(jti.encode("utf-8")).hexdigest()
    if principal.token_digest is None:
        raise ValueError("the principal carries neither a jti nor the token's digest")
    return f"sha256:{principal.token_digest}"


def token_ref(key: str) -> str:
    """What the audit log records of a signed-out token: a short digest of its key (never the token; an
    investigator holding a ``jti`` computes the same ref). Base64url, so it never reads as a phone number
    to the audit log's personal-data guard."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class RevokedSessions:
    """The revocations in force, as one process holds them (swapped whole when the version row moves)."""

    version: int
    #: token key -> when its row expires (seconds since the epoch).
    tokens: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    #: user id -> tokens issued before this instant (seconds since the epoch) are refused.
    users: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def refuses(self, principal: Principal) -> bool:
        """True when the token was signed out, or its user's sessions were revoked after it was issued.

        ``iat`` is whole seconds, rounded down: a token issued before the revocation always counts as
        earlier; one issued later in the same second is refused too (fail closed: sign in again)."""
        if self.tokens and (
            token_key(principal) in self.tokens
            or (
                principal.token_id is None
                and principal.compact_digest is not None
                and f"sha256:{principal.compact_digest}" in self.tokens
            )
        ):
            return True
        revoked_before = self.users.get(principal.user_id)
        if revoked_before is None:
            return False
        issued_at = principal.issued_at
        return issued_at is None or issued_at < revoked_before


def load_revoked_sessions(session: Session, now: datetime) -> RevokedSessions:
    """Every revocation still in force. The version is read first: a revocation committed between the two
    reads is loaded now and again on the next poll, never missed."""
    version = GrantRepository(session).policy_version(SESSIONS_VERSION)
    tokens = {
        key: expires.timestamp()
        for key, expires in session.execute(
            select(RevokedTokenRow.token_key, RevokedTokenRow.expires_at).where(
                RevokedTokenRow.expires_at > now
            )
        )
    }
    users = {
        user: before.timestamp()
        for user, before in session.execute(
            select(UserRevocationRow.user_id, UserRevocationRow.revoked_before).where(
                UserRevocationRow.expires_at > now
            )
        )
    }
    return RevokedSessions(version=version, tokens=MappingProxyType(tokens), users=MappingProxyType(users))


def _insert(session: Session) -> Any:
    """The dialect's INSERT, for its ON CONFLICT clause (both dialects spell it the same)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _prune(session: Session, now: datetime) -> None:
    session.execute(delete(RevokedTokenRow).where(RevokedTokenRow.expires_at <= now))
    session.execute(delete(UserRevocationRow).where(UserRevocationRow.expires_at <= now))


def revoke_token(session: Session, principal: Principal, *, actor: str, now: datetime, leeway_s: int) -> str:
    """Sign out the token ``principal`` was read from, in the caller's transaction; returns its key.

    Kept until the token's ``exp`` plus ``leeway_s`` (the verifier accepts it that long) and a second
    (``exp`` was rounded down)."""
    if principal.expires_at is None:
        raise ValueError("the principal carries no expiry")
    key = token_key(principal)
    expires = datetime.fromtimestamp(principal.expires_at + leeway_s + 1, UTC)
    _prune(session, now)
    insert = _insert(session)
    session.execute(
        insert(RevokedTokenRow)
        .values(
            token_key=key, user_id=principal.user_id, expires_at=expires, revoked_at=now, revoked_by=actor
        )
        .on_conflict_do_nothing(index_elements=[RevokedTokenRow.token_key])
    )
    GrantRepository(session).bump_policy_version(now, SESSIONS_VERSION)
    return key


def revoke_user_sessions(
    session: Session, user_id: str, *, actor: str, reason: str, now: datetime, keep_for_s: int
) -> datetime:
    """Refuse every token of ``user_id`` issued before ``now``, in the caller's transaction.

    ``keep_for_s``: the longest lifetime of a token (plus leeway); the row is pruned after that. Revoking
    again moves the instant forward and keeps the row at least as long as before."""
    expires = now + timedelta(seconds=keep_for_s)
    _prune(session, now)
    insert = _insert(session)
    stmt = insert(UserRevocationRow).values(
        user_id=user_id, revoked_before=now, revoked_by=actor, reason=reason, expires_at=expires
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[UserRevocationRow.user_id],
            set_={
                "revoked_before": now,
                "revoked_by": actor,
                "reason": reason,
                "expires_at": expires,
            },
        )
    )
    GrantRepository(session).bump_policy_version(now, SESSIONS_VERSION)
    return now
