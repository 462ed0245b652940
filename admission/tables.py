"""SQLAlchemy 2.x typed tables of the admission registry (schema changes go through gateway/migrations)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from grassroots_common.sqltypes import UTCDateTime

NAMING_CONVENTION: dict[str, Any] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class SystemRow(Base):
    __tablename__ = "admission_systems"

    system_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    department: Mapped[str] = mapped_column(String(64), index=True)
    purpose: Mapped[str] = mapped_column(Text)
    reaches: Mapped[list[str]] = mapped_column(JSON)
    reaches_villages: Mapped[bool] = mapped_column(Boolean)
    collects_fields: Mapped[list[str]] = mapped_column(JSON)
    provides: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    security_level: Mapped[int] = mapped_column(Integer)
    contact: Mapped[str] = mapped_column(String(200))
    checklist: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(32), index=True)
    filing_number: Mapped[str | None] = mapped_column(String(64), unique=True)
    approved_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    review_round: Mapped[int] = mapped_column(Integer, default=0)
    renewal_open: Mapped[bool] = mapped_column(Boolean, default=False)
    # Opaque ciphertext of the credential the gateway presents to this upstream; the gateway encrypts and
    # decrypts it (envelope encryption), admission only stores the bytes.
    outbound_credential_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)


class ReviewRow(Base):
    __tablename__ = "admission_reviews"
    __table_args__ = (
        # One vote per office per round, and one office per person per round (separation of duties).
        UniqueConstraint("system_id", "review_round", "office", name="uq_admission_reviews_office"),
        UniqueConstraint("system_id", "review_round", "reviewer_id", name="uq_admission_reviews_reviewer"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    system_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("admission_systems.system_id", ondelete="CASCADE"), index=True
    )
    review_round: Mapped[int] = mapped_column(Integer)
    office: Mapped[str] = mapped_column(String(64))
    reviewer_id: Mapped[str] = mapped_column(String(128))
    reviewer_department: Mapped[str] = mapped_column(String(64))
    vote: Mapped[str] = mapped_column(String(32))
    comment: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ClientRow(Base):
    """OAuth 2 client of an admitted system (RFC 6749 §2.3): a hashed secret and/or a public key for
    signed client assertions (RFC 7523). The secret itself is never stored."""

    __tablename__ = "admission_clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    system_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("admission_systems.system_id", ondelete="CASCADE"), unique=True
    )
    secret_hash: Mapped[str | None] = mapped_column(String(256))
    secret_issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    public_key: Mapped[str | None] = mapped_column(Text)
    public_key_format: Mapped[str | None] = mapped_column(String(8))
    public_key_kid: Mapped[str | None] = mapped_column(String(128))
    public_key_registered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RegistryVersionRow(Base):
    """A single row whose counter goes up with every status change, so each gateway process can poll one
    integer and reload its status snapshot only when something changed."""

    __tablename__ = "admission_registry_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AssertionJtiRow(Base):
    """The ``jti`` of a client assertion some gateway process accepted, kept until the assertion expires
    (RFC 7523 §3 item 7). The primary key is the uniqueness constraint: a second use of the same assertion
    conflicts in the database, whichever process it reaches."""

    __tablename__ = "admission_assertion_jtis"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    jti: Mapped[str] = mapped_column(String(256), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


metadata = Base.metadata
