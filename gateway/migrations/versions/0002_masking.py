"""masking catalog, tags and rules management

Revision ID: 0002
Revises: 0001

Reserved so that work on several areas can add tables without forking the revision chain; an area that
needs no schema change leaves it empty.
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
