"""Retention pruning on PostgreSQL set up as the README recommends: the gateway logs in as a role that is
not the schema owner (README "PostgreSQL deployment", its SQL read from the README), so that login can
never delete an event, and pruning is done on the server with the owner's login, explicitly.

* `audit prune --execute` through the gateway is refused before anything is signed or written (no
  checkpoint, no external anchor for a prune that cannot happen), naming the command to run instead;
* `audit prune-as-owner --execute` with the gateway's login is refused the same way (exit 2);
* with the owner's URL in GRASSROOTS_DATABASE_URL (as for `db upgrade`) it prunes the archived months past
  retention, the log verifies, and the gateway's login still cannot delete a single event.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from audit import AuditLog
from gateway.db import make_engine, upgrade
from tests.audit.helpers import make_event
from tests.gateway.test_audit_writer_role import _as, readme_grants
from tests.gateway.test_prune_api import FEB_2020, JAN_2020, gateway_on
from tests.stack import Stack, postgres_base_url, throwaway_postgres

pytestmark = pytest.mark.postgres

_ROLE = f"gr_gw_{uuid.uuid4().hex[:10]}"  # cluster-wide: unique per run, dropped afterwards
BASE = "/api/v1/supervision"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = postgres_base_url()
    if base is None:
        pytest.skip("GRASSROOTS_TEST_POSTGRES_URL not set")
    root = tmp_path_factory.mktemp("prune-as-owner")
    (root / "var").mkdir()
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with contextlib.ExitStack() as cleanup:
        owner_url = cleanup.enter_context(throwaway_postgres(base))
        upgrade(owner_url)
        engine = make_engine(owner_url, pool_size=1)
        log = AuditLog(engine)
        log.append_many(make_event(i, occurred_at=JAN_2020 + timedelta(minutes=i)) for i in range(10))
        log.append_many(make_event(i, occurred_at=FEB_2020 + timedelta(minutes=i)) for i in range(10, 20))
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE ROLE {_ROLE} LOGIN")
            for statement in readme_grants():
                conn.exec_driver_sql(statement.replace("grassroots_gateway", _ROLE))
        engine.dispose()
        # The stack's own engine (last_events, audit_count) reads as the owner; the gateway logs in as _ROLE.
        yield from gateway_on("postgres", root / "var", owner_url, _as(owner_url, _ROLE))
    with admin.connect() as conn:  # the database is gone: the role owns nothing any more
        conn.exec_driver_sql(f"DROP ROLE IF EXISTS {_ROLE}")
    admin.dispose()


def _api(stack: Stack, path: str, user: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {stack.token(user)}"}
    return httpx.post(f"{stack.base_url}{BASE}{path}", json=body, headers=headers, timeout=60.0)


def _signed_files(stack: Stack) -> list[str]:
    directory = stack.data_dir / "checkpoints"
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def test_pruning_needs_the_owner_login_and_the_gateway_login_still_cannot_delete(stack: Stack) -> None:
    for month in ("2020-01", "2020-02"):
        made = _api(stack, "/archives", "auditor", {"month": month})
        assert made.status_code == 201, made.text
    dry = _api(stack, "/audit/prune", "auditor", {"dry_run": True}).json()
    assert dry["would_prune_through_seq"] == 20

    # Through the gateway (its login may not delete): refused, naming what to run; nothing signed or written.
    before = _signed_files(stack)
    refused = _api(stack, "/audit/prune", "auditor", {"dry_run": False})
    assert refused.status_code == 409, refused.text
    answer = refused.json()
    assert answer["error"] == "prune_refused"
    assert answer["message"].startswith("无法清理：网关登录数据库所用的角色不能删除审计事件")
    assert "grassroots audit prune-as-owner --execute" in answer["message"]
    assert answer["plan"]["reasons"][0].startswith("database_refused: this database login may not delete")
    assert _signed_files(stack) == before
    assert stack.audit_count() > 20

    # The same command run with the gateway's own login: exit 2, saying which URL to give it.
    as_gateway = stack.cli("audit", "prune-as-owner", "--execute", check=False)
    assert as_gateway.returncode == 2, as_gateway.stderr
    zh, en = as_gateway.stderr.splitlines()
    assert zh.startswith("未清理：GRASSROOTS_DATABASE_URL 所用的数据库登录角色不能删除审计事件")
    assert en.startswith("nothing pruned: the database login in GRASSROOTS_DATABASE_URL may not delete")
    assert _signed_files(stack) == before

    # With the owner's URL, as for `grassroots db upgrade`: the dry run, then the prune.
    owner = {"GRASSROOTS_DATABASE_URL": stack.database_url}
    plan = json.loads(stack.cli("audit", "prune-as-owner", env_extra=owner).stdout)
    assert plan["dry_run"] is True and plan["would_prune_through_seq"] == 20
    done = json.loads(stack.cli("audit", "prune-as-owner", "--execute", env_extra=owner).stdout)
    assert done["dry_run"] is False and done["pruned_through_seq"] == 20
    assert done["months"] == ["2020-01", "2020-02"]
    assert Path(stack.data_dir / "checkpoints" / done["anchor_file"]).exists()
    records = [e for e in stack.last_events(10) if e["kind"] == "supervision.events_pruned"]
    # The refusal through the gateway was recorded too; the prune itself names the operator's OS user.
    assert [e["outcome"] for e in records] == ["refused", "ok"]
    assert records[-1]["actor"].startswith("cli:")

    # The log verifies from the anchor, with the gateway's login, and the gateway answers as before.
    verified = stack.cli("audit", "verify", "--quiet")
    assert "events 1..20 were pruned" in verified.stdout
    assert _api(stack, "/audit/prune", "auditor", {"dry_run": True}).json()["pruned_through_seq"] == 20

    # The guarantee is unchanged: the gateway's login cannot delete an event, pruned range or not.
    login = sa.create_engine(stack.env["GRASSROOTS_DATABASE_URL"], poolclass=sa.pool.NullPool)
    try:
        for statement in ("DELETE FROM audit_events WHERE seq <= 20", "DELETE FROM audit_events"):
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), login.begin() as conn:
                conn.exec_driver_sql(statement)
    finally:
        login.dispose()
