"""Migration 0015: grant requests still waiting get their ``request_key`` (the earliest of identical ones
filed before it: the later ones stay waiting, for a steward to decide), so the unique index over waiting
requests can be built; after it an identical request is refused naming the earliest. Up and down, on SQLite
and PostgreSQL."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import command
from sqlalchemy.orm import Session

from gateway.db import alembic_config, make_engine, upgrade
from policies import GrantRepository, GrantService, Subject, load_permissions, load_scenarios
from policies.errors import RequestAlreadyWaitingError
from policies.grants import request_key
from policies.tables import GrantRow

T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
VILLAGE = "310151101201"
TOWNSHIP_OFFICER = Subject(user_id="u-town", org="310151101000", roles=("township_officer",))
ASKED = {"residents": ["id", "name", "village_code"]}


def _grant_before_0015(conn: sa.Connection, grant_id: str, status: str, minutes: int, **row: object) -> None:
    """A grant as the schema of 0014 held it (no ``request_key``; the insert names only these columns)."""
    at = T0 + timedelta(minutes=minutes)
    values = {
        "grant_id": grant_id,
        "scenario": "DIBAO_REVIEW",
        "org_scope": VILLAGE,
        "datasets": ASKED,
        "status": status,
        "requested_by": "u-cadre",
        "reason": "年度复核",
        "created_at": at,
        "updated_at": at,
        "break_glass": False,
        "decision_reason": "",
        **row,
    }
    conn.execute(sa.insert(GrantRow.__table__).values(values))


def _keys(engine: sa.Engine) -> dict[str, str | None]:
    with contextlib.closing(engine.connect()) as conn:
        return dict(conn.execute(sa.text("SELECT grant_id, request_key FROM policy_grants")).all())


def test_migration_0015_keys_the_earliest_waiting_request_and_goes_down(database: str) -> None:
    command.downgrade(alembic_config(database), "0014")
    engine = make_engine(database, pool_size=1)
    with engine.begin() as conn:
        # Two identical requests filed before the fix (the second one the duplicate), one decided, a renewal
        # waiting for its second steward, and a request for other fields.
        _grant_before_0015(conn, "grt_first", "requested", 0)
        _grant_before_0015(conn, "grt_duplicate", "awaiting_second_approval", 1)
        _grant_before_0015(conn, "grt_rejected", "rejected", -10)
        _grant_before_0015(conn, "grt_renewal", "awaiting_second_approval", 2, renewed_from="grt_old")
        _grant_before_0015(conn, "grt_other", "requested", 3, datasets={"residents": ["name", "id"]})
    engine.dispose()

    upgrade(database)
    engine = make_engine(database, pool_size=1)
    with Session(engine) as session:
        repository = GrantRepository(session)
        first, other = repository.get("grt_first"), repository.get("grt_other")
        assert first is not None and other is not None
        # The migration's frozen key is the service's.
        assert _keys(engine) == {
            "grt_first": request_key(first),
            "grt_duplicate": None,
            "grt_rejected": None,
            "grt_renewal": None,
            "grt_other": request_key(other),
        }
        service = GrantService(repository, load_scenarios(), load_permissions())
        try:
            service.request(TOWNSHIP_OFFICER, "DIBAO_REVIEW", VILLAGE, ASKED, "再次申请", T0)
        except RequestAlreadyWaitingError as refused:
            assert refused.pending_grant == "grt_first"
        else:
            raise AssertionError("an identical request was filed")
    engine.dispose()

    command.downgrade(alembic_config(database), "0014")
    engine = make_engine(database, pool_size=1)
    with contextlib.closing(engine.connect()) as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("policy_grants")}
    assert "request_key" not in columns
    engine.dispose()
    upgrade(database)
