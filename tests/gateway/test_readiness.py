"""Readiness (``/readyz``) beside liveness (``/healthz``): a gateway process whose database stops answering
is still alive but no longer ready — 503 with the one error shape, Chinese first, never the database URL —
so a load balancer takes it out of rotation instead of sending it requests that can only fail."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from gateway.app import create_app
from gateway.db import upgrade
from gateway.settings import Settings
from tests.stack import _postgres_database, postgres_base_url


@pytest.fixture(autouse=True)
def _no_background_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRASSROOTS_CHECKPOINT_INTERVAL_S", "0")
    monkeypatch.setenv("GRASSROOTS_AUDIT_ARCHIVE_INTERVAL_S", "0")


def _client(tmp_path: Path, url: str) -> Iterator[TestClient]:
    upgrade(url)
    settings = Settings(data_dir=tmp_path / "var", database_url=url, dev_idp_enabled=True)
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_process_with_its_database_is_ready(tmp_path: Path) -> None:
    for client in _client(tmp_path, f"sqlite:///{tmp_path / 'gateway.db'}"):
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "audit_checkpoints": {"status": "off"}}


def test_a_sqlite_file_moved_away_under_the_process_is_not_ready(tmp_path: Path) -> None:
    """The SQLite file moved away (or a backup moved over it) under a running gateway: ``SELECT 1`` on the
    connections still holding the old file answered, and /readyz said ready while every event went into
    that old file. Now not ready, 503 database_unavailable, until the file is back; then ready by itself."""
    path = tmp_path / "gateway.db"
    for client in _client(tmp_path, f"sqlite:///{path}"):
        assert client.get("/readyz").status_code == 200
        path.rename(tmp_path / "aside.db")
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["error"] == "database_unavailable"
        assert str(tmp_path) not in answer.text
        # None there: SQLite makes an empty file in its place, which answers SELECT 1 but is not migrated.
        assert client.get("/readyz").status_code == 503
        (tmp_path / "aside.db").rename(path)
        assert client.get("/readyz").status_code == 200


def test_a_process_whose_audit_log_cannot_commit_is_not_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit log stopped taking events (disk full, a read-only database, a lock held for long): every
    request got 503 audit_unavailable, yet /readyz said ready and a load balancer kept sending it traffic.
    Now not ready while the latest commit failed; ready again by itself once one commits, or once the
    failure is older than the window (no traffic to try the log with: the next request does)."""
    import time

    from gateway import runtime

    path = tmp_path / "gateway.db"
    records = "/api/v1/datasets/residents/records?scenario=DIBAO_REVIEW"
    for client in _client(tmp_path, f"sqlite:///{path}"):
        assert client.get(records).status_code == 401  # refused without a token, and recorded
        with sqlite3.connect(path) as db:  # the database now refuses every new event
            db.execute(
                "CREATE TRIGGER refuse_events BEFORE INSERT ON audit_events "
                "BEGIN SELECT RAISE(ABORT, 'no room'); END"
            )
        answer = client.get(records)
        assert answer.status_code == 503 and answer.json()["error"] == "audit_unavailable"
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"] == "audit_unavailable"
        assert ready.json()["message"].startswith("访问记录暂时无法写入")
        with sqlite3.connect(path) as db:
            db.execute("DROP TRIGGER refuse_events")
        assert client.get(records).status_code == 401  # recorded again
        assert client.get("/readyz").status_code == 200
        with sqlite3.connect(path) as db:
            db.execute(
                "CREATE TRIGGER refuse_events BEFORE INSERT ON audit_events "
                "BEGIN SELECT RAISE(ABORT, 'no room'); END"
            )
        monkeypatch.setattr(runtime, "AUDIT_FAILURE_NOT_READY_S", 0.2)
        assert client.get(records).status_code == 503
        assert client.get("/readyz").status_code == 503
        time.sleep(0.3)
        assert client.get("/readyz").status_code == 200  # let the next request try the log


_BUMP_GRANTS = (
    "INSERT INTO policy_versions (name, version, updated_at) VALUES ('grants', 1, '2026-01-01 00:00:00')"
    " ON CONFLICT (name) DO UPDATE SET version = version + 1"
)


def test_a_grant_row_that_cannot_be_read_refuses_everything_not_an_old_grant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What README (Scenario grants and policy) says of a re-read that fails on state kept in the database:
    the last state for at most ten intervals (5 s at least), then 503 policy_stale and /readyz says so, until
    the row reads again; then ready by itself."""
    import time

    monkeypatch.setenv("GRASSROOTS_POLICY_REFRESH_INTERVAL_S", "0.05")
    path = tmp_path / "gateway.db"
    for client in _client(tmp_path, f"sqlite:///{path}"):
        with sqlite3.connect(path) as db:
            db.execute(
                "INSERT INTO policy_grants (grant_id, scenario, org_scope, datasets, valid_from,"
                " valid_until, status, requested_by, reason, created_at, updated_at, break_glass) VALUES"
                " ('grt_x', 'DIBAO_REVIEW', '310151101201', '{not json', '2026-01-01 00:00:00',"
                " '2027-01-01 00:00:00', 'approved', 'u', 'r', '2026-01-01', '2026-01-01', 0)"
            )
            db.execute(_BUMP_GRANTS)
        deadline = time.monotonic() + 15
        while client.get("/readyz").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        stale = client.get("/readyz")
        assert stale.status_code == 503 and stale.json()["error"] == "policy_stale"
        with sqlite3.connect(path) as db:
            db.execute("UPDATE policy_grants SET datasets = '{}' WHERE grant_id = 'grt_x'")
            db.execute(_BUMP_GRANTS)
        time.sleep(0.5)
        assert client.get("/readyz").status_code == 200


@pytest.mark.postgres
def test_a_process_whose_database_is_gone_is_alive_but_not_ready(tmp_path: Path) -> None:
    base = postgres_base_url()
    if base is None:
        pytest.skip("GRASSROOTS_TEST_POSTGRES_URL not set")
    url, admin, name = _postgres_database(base)
    try:
        for client in _client(tmp_path, url):
            assert client.get("/readyz").status_code == 200
            with admin.connect() as conn:  # the database goes away under the running process
                conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
            assert client.get("/healthz").status_code == 200  # alive: do not restart it for this
            answer = client.get("/readyz")
            assert answer.status_code == 503
            body = answer.json()
            assert body["error"] == "database_unavailable"
            assert body["message"].startswith("网关暂时无法连接数据库")
            assert body["message_en"].startswith("The gateway cannot reach its database")
            host = make_url(url).host or ""
            assert name not in answer.text and host not in answer.text
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


async def test_a_database_outage_is_a_few_log_lines_not_one_per_refresh(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each process re-reads the policy and registry state every GRASSROOTS_POLICY_REFRESH_INTERVAL_S; with
    the database away each failed read was an ERROR line: twice a second per worker, thousands an hour,
    burying everything else. Now: one when it starts failing, one a minute after that, one on recovery."""
    import asyncio
    import logging
    from types import SimpleNamespace

    from gateway import runtime
    from gateway.runtime import Runtime

    monkeypatch.setattr(runtime, "_REFRESH_FAILURE_REPEAT_S", 0.3)  # a minute, in the real one
    database_up = False

    def refresh() -> None:
        if not database_up:
            raise ConnectionRefusedError(111, "Connection refused")

    process = SimpleNamespace(settings=SimpleNamespace(policy_refresh_interval_s=0.001), refresh=refresh)
    caplog.set_level(logging.INFO, logger="gateway.runtime")
    loop = asyncio.create_task(Runtime._refresh_loop(process))  # type: ignore[arg-type]
    try:
        await asyncio.sleep(0.5)  # a few hundred failed refreshes
        failed = [r.getMessage() for r in caplog.records]
        assert len(failed) == 2, failed
        assert failed[0] == "policy/registry refresh failed: ConnectionRefusedError"
        # Whole seconds since the first failure: 0 on a quiet machine, more on a loaded one.
        assert re.match(r"policy/registry refresh still failing after \d+ s \(", failed[1]), failed[1]
        assert failed[1].endswith(" attempts): ConnectionRefusedError")
        database_up = True
        await asyncio.sleep(0.05)
    finally:
        loop.cancel()
    recovered = caplog.records[-1].getMessage()
    assert len(caplog.records) == 3 and caplog.records[-1].levelname == "WARNING"
    recovered_line = r"policy/registry refresh recovered after \d+ s \(\d+ failed attempts\)$"
    assert re.match(recovered_line, recovered), recovered
