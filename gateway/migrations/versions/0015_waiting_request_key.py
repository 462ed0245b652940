"""one waiting grant request per thing asked for: ``policy_grants.request_key`` and its unique partial index

Revision ID: 0015
Revises: 0014

A request identical to one still waiting for a steward (same scenario, organisation, datasets and fields;
whoever filed it, whatever its reason) was filed again, and the stewards decided the same grant twice.
The gateway now refuses it (409 ``request_already_waiting``). ``request_key`` is what a request asks for
(``policies.grants.request_key``), set when it is filed; the partial unique index over the waiting
statuses makes two identical requests sent at the same moment file one, on SQLite and PostgreSQL alike.

Requests still waiting at this revision get their key, the earliest filed of each key only: identical
requests filed before it both stay waiting (a steward decides or rejects each), the later ones without a
key, so the index can be built. Decided grants, renewals and break-glass grants keep NULL: they never wait
again, or are not requests.

Frozen copies of ``policies.grants.request_key`` and of the index as they are at this revision.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = "ux_policy_grants_waiting_request"
_WAITING = "status IN ('requested', 'awaiting_second_approval')"

_grants = sa.table(
    "policy_grants",
    sa.column("grant_id", sa.String()),
    sa.column("scenario", sa.String()),
    sa.column("org_scope", sa.String()),
    sa.column("datasets", sa.JSON()),
    sa.column("status", sa.String()),
    sa.column("created_at", sa.String()),
    sa.column("renewed_from", sa.String()),
    sa.column("break_glass", sa.Boolean()),
    sa.column("request_key", sa.String()),
)


def _request_key(scenario: str, org_scope: str, datasets: Mapping[str, Any]) -> str:
    asked = sorted((name, sorted(set(fields))) for name, fields in (datasets or {}).items())
    text = json.dumps(
        [scenario, org_scope, [[name, fields] for name, fields in asked]],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def upgrade() -> None:
    op.add_column("policy_grants", sa.Column("request_key", sa.String(length=64), nullable=True))
    bind = op.get_bind()
    c = _grants.c
    waiting = bind.execute(
        sa.select(c.grant_id, c.scenario, c.org_scope, c.datasets)
        .where(
            c.status.in_(["requested", "awaiting_second_approval"]),
            c.renewed_from.is_(None),
            sa.or_(c.break_glass.is_(None), c.break_glass.is_(False)),
        )
        .order_by(c.created_at, c.grant_id)
    ).all()
    keyed: dict[str, str] = {}
    for grant_id, scenario, org_scope, datasets in waiting:
        keyed.setdefault(_request_key(scenario, org_scope, datasets), grant_id)
    for key, grant_id in keyed.items():
        bind.execute(sa.update(_grants).where(c.grant_id == grant_id).values(request_key=key))
    op.create_index(
        _INDEX,
        "policy_grants",
        ["request_key"],
        unique=True,
        sqlite_where=sa.text(_WAITING),
        postgresql_where=sa.text(_WAITING),
    )


def downgrade() -> None:
    op.drop_index(_INDEX, table_name="policy_grants")
    with op.batch_alter_table("policy_grants") as batch:
        batch.drop_column("request_key")
