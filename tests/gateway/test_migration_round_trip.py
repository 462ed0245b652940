"""Downgrading (alembic downgrade, to roll back a release) with incidents on record: on SQLite, Alembic's
batch mode rebuilds a table by copying it, dropping the original and renaming the copy; with foreign keys
enforced, dropping ``audit_incidents`` while steps refer to it failed (FOREIGN KEY constraint failed) halfway
down. Migrations now run with the foreign-key check off on SQLite and check every reference once done."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command

from gateway.db import alembic_config, make_engine, upgrade

AT = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


def _incident_with_a_step(url: str) -> None:
    engine = make_engine(url, pool_size=1)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO audit_incidents (incident_id, complaint_id, status, opened_by, opened_at,"
                " due_at, tree_size, root_hash, org) VALUES ('I-1', NULL, 'open', 'u-s', :at, :at, 0,"
                " :root, '310151101000')"
            ),
            {"at": AT, "root": "00" * 32},
        )
        conn.execute(
            sa.text(
                "INSERT INTO audit_incident_steps (incident_id, action, actor, at, note)"
                " VALUES ('I-1', 'opened', 'u-s', :at, NULL)"
            ),
            {"at": AT},
        )
    engine.dispose()


def _kept(url: str) -> tuple[int, int]:
    engine = make_engine(url, pool_size=1)
    with engine.connect() as conn:
        incidents = conn.execute(sa.text("SELECT count(*) FROM audit_incidents")).scalar_one()
        steps = conn.execute(sa.text("SELECT count(*) FROM audit_incident_steps")).scalar_one()
    engine.dispose()
    return int(incidents), int(steps)


@pytest.mark.slow
def test_downgrading_past_the_incident_migrations_keeps_incidents_and_their_steps(database: str) -> None:
    _incident_with_a_step(database)
    # 0016 down to 0010: every migration since that rebuilds audit_incidents (0011, 0013, 0014) or adds to it.
    command.downgrade(alembic_config(database), "0010")
    assert _kept(database) == (1, 1)
    upgrade(database)
    assert _kept(database) == (1, 1)
    if database.startswith("sqlite"):
        engine = make_engine(database, pool_size=1)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1  # on again for the gateway
        engine.dispose()
