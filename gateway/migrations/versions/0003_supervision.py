"""supervision complaints incidents retention

Revision ID: 0003
Revises: 0002

Reserved so that work on several areas can add tables without forking the revision chain; an area that
needs no schema change leaves it empty.
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
