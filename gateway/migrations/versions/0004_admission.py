"""admission gateway-side credentials and tokens

Revision ID: 0004
Revises: 0003

Reserved so that work on several areas can add tables without forking the revision chain; an area that
needs no schema change leaves it empty.
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
