"""policy grants gateway-side additions

Revision ID: 0005
Revises: 0004

Reserved so that work on several areas can add tables without forking the revision chain; an area that
needs no schema change leaves it empty.
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
