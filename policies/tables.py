"""Tables of the policy library on its own DeclarativeBase. The schema changes only through the gateway's
Alembic migrations over ``metadata``; tests may ``metadata.create_all`` a throwaway database."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import JSON, Boolean, Index, Integer, String, Text, literal_column
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from grassroots_common.sqltypes import UTCDateTime

__all__ = [
    "WAITING_FOR_STEWARD",
    "Base",
    "BreakGlassReviewRow",
    "GrantRow",
    "PolicyVersionRow",
    "QuotaUsageRow",
    "UTCDateTime",
    "metadata",
    "waiting_request_index",
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
    # What a request asks for (``policies.grants.request_key``: scenario, organisation, datasets and their
    # fields), set when a request is filed and never changed; NULL for renewals, break-glass grants and
    # rows from before revision 0015. Unique among the requests still waiting (the index below).
    request_key: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        Index("ix_policy_grants_status_until", "status", "valid_until"),
        Index("ix_policy_grants_org_scope", "org_scope"),
    )


#: The grants still waiting for a steward: requests, and grants awaiting their second approval. Literal
#: values, not bind parameters, so that an insert's ``ON CONFLICT ... WHERE`` repeating this condition is
#: seen (by SQLite and PostgreSQL alike) to name the partial index below.
WAITING_FOR_STEWARD: Final = GrantRow.__table__.c.status.in_(
    [literal_column("'requested'"), literal_column("'awaiting_second_approval'")]
)

#: At most one waiting request per ``request_key``: two identical requests sent at the same moment cannot
#: both be filed, whatever the isolation level (PostgreSQL makes the second insert wait for the first's
#: commit, then skip it: ``GrantRepository.add_request``). Leaves the waiting state with the request.
waiting_request_index: Final = Index(
    "ux_policy_grants_waiting_request",
    GrantRow.__table__.c.request_key,
    unique=True,
    sqlite_where=WAITING_FOR_STEWARD,
    postgresql_where=WAITING_FOR_STEWARD,
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
