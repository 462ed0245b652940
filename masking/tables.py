"""Tables of the masking library on its own DeclarativeBase: stewards' change proposals and the version row
every gateway process polls. The schema changes only through the gateway's Alembic migration 0002 over
``metadata``; tests may ``metadata.create_all`` a throwaway database.

The packaged TOML files stay the baseline; the effective catalog and rules are the baseline with every
approved proposal applied in approval order (``applied_seq``), so the proposals table is also the
history of every classification, tag and rule change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from grassroots_common.sqltypes import UTCDateTime

__all__ = ["Base", "MaskingProposalRow", "MaskingVersionRow", "metadata"]


class Base(DeclarativeBase):
    pass


metadata = Base.metadata


class MaskingProposalRow(Base):
    """One proposed change to the catalog, the tag set or the rules, and its decision."""

    __tablename__ = "masking_proposals"

    proposal_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(200))
    # The change as asked (small JSON documents, read whole, never queried inside).
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    # What the target looked like when proposed; approval refuses if it moved since (lost update).
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    proposed_by: Mapped[str] = mapped_column(String(128))
    proposer_department: Mapped[str | None] = mapped_column(String(64), nullable=True)
    proposed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decision_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    applied_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)

    __table_args__ = (
        Index("ix_masking_proposals_status", "status", "proposed_at"),
        Index("ix_masking_proposals_applied_seq", "applied_seq"),
    )


class MaskingVersionRow(Base):
    """One row ("masking"); every approval bumps it in the same transaction, so every gateway process
    swaps in the new catalog and rules on its next poll (like the grants' version row)."""

    __tablename__ = "masking_versions"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
