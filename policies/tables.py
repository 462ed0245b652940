"""Tables of the policy library on its own DeclarativeBase. The schema changes only through the gateway's
Alembic migrations over ``metadata``; tests may ``metadata.create_all`` a throwaway database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from grassroots_common.sqltypes import UTCDateTime

__all__ = [
    "Base",
    "BreakGlassReviewRow",
    "GrantRow",
    "PolicyVersionRow",
    "QuotaUsageRow",
    "UTCDateTime",
    "metadata",
]


class Base(DeclarativeBase):
    pass


metadata = Base.metadata


class GrantRow(Base):
    __tablename__ = "policy_grants"

    grant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    scenario: Mapped[str] = mapped_column(String(64))
    org_scope: Mapped[str] = mapped_column(String(12))
    # {dataset: [field, ...]}: small, read whole, never queried inside.
    datasets: Mapped[dict[str, list[str]]] = mapped_column(JSON)
    valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(32))
    requested_by: Mapped[str] = mapped_column(String(128))
    approved_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    second_approver: Mapped[str | None] = mapped_column(String(128), nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    renewed_from: Mapped[str | None] = mapped_column(String(64), nullable=True)
    break_glass: Mapped[bool] = mapped_column(Boolean, default=False)
    # Why it was rejected or revoked (``reason`` keeps why it was requested).
    decision_reason: Mapped[str] = mapped_column(Text, default="", server_default="")

    __table_args__ = (
        Index("ix_policy_grants_status_until", "status", "valid_until"),
        Index("ix_policy_grants_org_scope", "org_scope"),
    )


class PolicyVersionRow(Base):
    """One row per policy state ("grants"); every grant transition bumps it in the same transaction,
    so every gateway process sees a revocation on its next poll."""

    __tablename__ = "policy_versions"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class QuotaUsageRow(Base):
    """Records read per user, scenario and local (UTC+8) day; incremented by an atomic upsert."""

    __tablename__ = "policy_quota_usage"

    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    scenario: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    used: Mapped[int] = mapped_column(Integer)


class BreakGlassReviewRow(Base):
    """Post-review of an emergency access; stays open until a supervisor (not the invoker) closes it."""

    __tablename__ = "policy_break_glass_reviews"

    review_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[str] = mapped_column(String(64), index=True)
    invoked_by: Mapped[str] = mapped_column(String(128))
    notify_org: Mapped[str] = mapped_column(String(12))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    review_note: Mapped[str | None] = mapped_column(Text, nullable=True)
