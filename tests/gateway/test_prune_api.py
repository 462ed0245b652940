"""Retention pruning through the real gateway process: API (dry run by default, roles, refusals, the
pruned period explained) and CLI (`grassroots audit archive`, `audit prune`, `audit verify`), on SQLite
and PostgreSQL, plus migration 0007 up and down.

The log starts with events of January and February 2020 (well past three years), appended before the
gateway starts so that they are events 1..20, then the gateway's own events follow.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from audit import AuditLog
from audit.query import CHINA_STANDARD_TIME
from demoworld.world import build_world
from gateway.db import make_engine, upgrade
from gateway.keys import load_masking_keyring
from gateway.settings import Settings
from tests.audit.helpers import make_event
from tests.stack import REPO, Stack, free_port, postgres_base_url, stop, throwaway_postgres

#: tests.audit.helpers.PSEUDONYMIZER's key.
AUDIT_REF_KEY = "test-key-for-audit-refs-0123456789"

BASE = "/api/v1/supervision"
JAN_2020 = datetime(2020, 1, 10, 2, 0, tzinfo=UTC)
FEB_2020 = datetime(2020, 2, 10, 2, 0, tzinfo=UTC)


def _database(backend: str, root: Path, cleanup: contextlib.ExitStack) -> str:
    if backend == "sqlite":
        return f"sqlite:///{root / 'var' / 'gateway.db'}"
    base = postgres_base_url()
    if base is None:
        pytest.skip("GRASSROOTS_TEST_POSTGRES_URL not set")
    return cleanup.enter_context(throwaway_postgres(base))


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp(f"prune-{request.param}")
    (root / "var").mkdir()
    with contextlib.ExitStack() as cleanup:
        url = _database(request.param, root, cleanup)
        upgrade(url)
        engine = make_engine(url, pool_size=1)
        log = AuditLog(engine)
        log.append_many(make_event(i, occurred_at=JAN_2020 + timedelta(minutes=i)) for i in range(10))
        log.append_many(make_event(i, occurred_at=FEB_2020 + timedelta(minutes=i)) for i in range(10, 20))
        engine.dispose()
        yield from gateway_on(request.param, root / "var", url)


def gateway_on(backend: str, data_dir: Path, url: str, login_url: str | None = None) -> Iterator[Stack]:
    """A gateway on ``url`` (logging in with ``login_url`` when given; the stack's own engine uses ``url``)
    and ``data_dir``, stopped afterwards."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "GRASSROOTS_DATA_DIR": str(data_dir),
        "GRASSROOTS_DATABASE_URL": login_url or url,
        "GRASSROOTS_DEV_IDP_ENABLED": "true",
        "GRASSROOTS_HOST": "127.0.0.1",
        "GRASSROOTS_PORT": str(port),
        "GRASSROOTS_LOG_LEVEL": "warning",
        # The walk-through archives months itself: the scheduled archiver (its first round a minute after
        # start) would archive them first on a slow host and refuse the test's own requests as repeats.
        "GRASSROOTS_AUDIT_ARCHIVE_INTERVAL_S": "0",
        # The key the seeded events' subject refs were made with (tests.audit.helpers.PSEUDONYMIZER, id
        # k1): a gateway refuses to make a new k1 beside refs a lost one wrote (gateway.keys).
        "GRASSROOTS_AUDIT_HMAC_KEY": AUDIT_REF_KEY,
    }
    # The seeded events stand for reads a gateway served under its masking key ring: that ring, made here
    # where the seeding left none (a gateway refuses to make one beside data served under another).
    load_masking_keyring(Settings(data_dir=data_dir, database_url=url), replacing_a_lost_ring=True)
    s = Stack(backend, data_dir, url, env, port, free_port())
    try:
        s.start_gateway()
        yield s
    finally:
        stop(s.gateway)
        if s._engine is not None:
            s._engine.dispose()


def api(stack: Stack, method: str, path: str, user: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {stack.token(user)}"}
    return httpx.request(method, f"{stack.base_url}{BASE}{path}", headers=headers, timeout=60.0, **kwargs)


def cli(stack: Stack, *args: str) -> Any:
    done = stack.cli("audit", *args, "--as", "auditor", "--url", stack.base_url)
    return json.loads(done.stdout)


def test_archive_prune_verify_walkthrough(stack: Stack) -> None:
    # Only supervisors and auditors may even ask.
    assert api(stack, "POST", "/audit/prune", "cadre_a", json={}).status_code == 403

    # Nothing archived yet: the dry run (the default) says so and changes nothing.
    dry = api(stack, "POST", "/audit/prune", "auditor", json={})
    assert dry.status_code == 200, dry.text
    assert dry.json()["dry_run"] is True and dry.json()["would_prune_through_seq"] is None
    assert dry.json()["reasons"][0].startswith("not_archived")

    # What a new user meets on the way, each message Chinese first and saying what is wrong.
    no_month = stack.cli("audit", "archive", "--month", "2023-10", "--as", "auditor", "--url", stack.base_url,
                         check=False)  # fmt: skip
    assert no_month.returncode == 1
    assert no_month.stderr.startswith(
        "archive_refused: 无法归档：2023-10 没有审计事件：日志中的事件在 2020-01.."
    )
    assert (
        "Cannot archive: no audit events in 2023-10: the log's events are from 2020-01.." in no_month.stderr
    )
    missing = stack.data_dir / "archives" / "audit-2023-10-*.manifest.json"
    unread = stack.cli("supervise", "archive-verify", str(missing), "--against-db", check=False)
    assert unread.returncode == 2
    assert unread.stderr.startswith(f"无法读取 {missing}：文件不存在，未做任何验证")
    assert (
        f"Cannot read the archive: cannot read {missing}: no such file. Nothing was verified" in unread.stderr
    )
    assert "does NOT verify" not in unread.stderr
    nothing = stack.cli("supervise", "prefix-verify")
    assert nothing.stdout.startswith("日志从未清理过") and "Nothing was pruned" in nothing.stdout
    assert "1..0" not in nothing.stdout
    early = api(stack, "POST", "/audit/prune", "auditor", json={"dry_run": False})
    assert early.status_code == 409
    assert early.json()["message"] == "无法清理：下一个月份 2020-01 尚未归档，请先归档 2020-01。"

    cli(stack, "archive", "--month", "2020-01")
    made = api(stack, "POST", "/archives", "auditor", json={"month": "2020-02"})
    assert made.status_code == 201, made.text
    assert (
        made.json()["complete"] is True
        and made.json()["manifest_file"] == "audit-2020-02-11-20.manifest.json"
    )
    both = sorted((stack.data_dir / "archives").glob("audit-2020-*.manifest.json"))  # what a shell glob gives
    checked = stack.cli("supervise", "archive-verify", *map(str, both), "--against-db")
    assert checked.stdout.splitlines() == [
        "audit-2020-01-1-10.manifest.json: 归档完好：已核对 10 个事件，且与数据库中的日志一致。",
        "audit-2020-01-1-10.manifest.json: archive intact: 10 events verified and match the live log",
        "audit-2020-02-11-20.manifest.json: 归档完好：已核对 10 个事件，且与数据库中的日志一致。",
        "audit-2020-02-11-20.manifest.json: archive intact: 10 events verified and match the live log",
    ]

    dry = api(stack, "POST", "/audit/prune", "supervisor", json={"dry_run": True}).json()
    assert dry["would_prune_through_seq"] == 20
    assert [m["verdict"] for m in dry["months"]] == ["prunable", "prunable"]
    assert stack.audit_count() > 20

    # Not a month boundary: refused, bilingual error, the plan attached.
    refused = api(stack, "POST", "/audit/prune", "auditor", json={"dry_run": False, "through_seq": 15})
    assert refused.status_code == 409
    assert refused.json()["error"] == "prune_refused" and "整月" in refused.json()["message"]

    # A township's supervisor holds the same role, but the log is the whole platform's: she may plan a
    # prune, not execute it (it went through, deleting every township's records of those months).
    town = "town_supervisor_a"
    assert api(stack, "POST", "/audit/prune", town, json={}).json()["would_prune_through_seq"] == 20
    outside = api(stack, "POST", "/audit/prune", town, json={"dry_run": False})
    assert (outside.status_code, outside.json()["error"]) == (403, "prune_outside_jurisdiction")
    assert outside.json()["message"].startswith("清理会删除整个平台审计日志中的已归档月份")
    assert "ask the district's supervision office" in outside.json()["message_en"]

    done = cli(stack, "prune", "--execute")
    assert done["dry_run"] is False and done["pruned_through_seq"] == 20
    assert done["months"] == ["2020-01", "2020-02"]
    assert Path(stack.data_dir / "checkpoints" / done["anchor_file"]).exists()

    verified = stack.cli("audit", "verify", "--quiet")
    assert "intact" in verified.stdout and "events 1..20 were pruned" in verified.stdout
    deep = stack.cli("supervise", "prefix-verify")
    assert "events 1..20 rebuilt from the archives" in deep.stdout

    # The rest is the gateway's own events, this month: retention is what stops pruning, and the answer
    # says when this month may go.
    this_month = datetime.now(UTC).astimezone(CHINA_STANDARD_TIME).strftime("%Y-%m")
    again = api(stack, "POST", "/audit/prune", "auditor", json={"dry_run": False})
    assert again.status_code == 409
    assert again.json()["plan"]["reasons"][0].startswith(f"not_past_retention: {this_month} is within")
    assert again.json()["message"].startswith(f"无法清理：{this_month} 仍在保存期内（3 年")
    assert "最早可于" in again.json()["message"]

    # Archiving this month is allowed but partial (it has not ended): pruning never relies on it.
    current = cli(stack, "archive", "--month", this_month)
    assert current["complete"] is False and current["note"].startswith(f"{this_month} 尚未结束：这是部分归档")
    plan = cli(stack, "prune")
    assert plan["reasons"][0].startswith(f"not_past_retention: {this_month}")
    assert plan["reasons_zh"][0].startswith(f"{this_month} 仍在保存期内")

    # The pruned period is explained, not silently missing.
    pruned = api(stack, "GET", "/proofs/inclusion", "auditor", params={"seq": 5})
    assert pruned.status_code == 410 and pruned.json()["archives"] == ["audit-2020-01-1-10"]
    person = build_world().residents[0].id_number
    seen = api(stack, "POST", "/transparency", "supervisor", json={"id_number": person}).json()
    assert seen["archived_period"]["pruned_through_seq"] == 20
    assert [a["month"] for a in seen["archived_period"]["archives"]] == ["2020-01", "2020-02"]
    # A pruned month's 通报 would count nothing from the database and read as a month nobody accessed
    # anything in: refused, naming the archive, and not recorded as handed out.
    before = stack.last_events(1)[-1]["seq"]
    for fmt in ("json", "html", "csv"):
        gone = api(stack, "GET", "/reports/monthly", "supervisor", params={"month": "2020-01", "format": fmt})
        assert gone.status_code == 410, gone.text
        assert gone.json()["error"] == "month_pruned" and gone.json()["archives"] == ["audit-2020-01-1-10"]
        assert gone.json()["message"].startswith("2020-01 的审计事件已超过保存期，已从数据库清理")
        assert gone.json()["message_en"].startswith("The audit events of 2020-01 were pruned")
    after = [e["kind"] for e in stack.last_events(50) if e["seq"] > before]
    assert "supervision.monthly_report" not in after
    # So is it in a query, a report and an anomaly run reaching into the pruned months: they counted
    # nothing there, and read as if nothing had happened then.
    for path in ("/events", "/reports", "/anomalies"):
        over = api(stack, "GET", path, "auditor", params={"since": "2020-01-01", "until": "2020-02-29"})
        assert over.status_code == 200, over.text
        assert over.json()["archived_period"]["pruned_through_seq"] == 20
        assert over.json()["pruned_note"].startswith(
            "日志中第 1 至 20 号事件（2020-01 至 2020-02）已超过保存期"
        )
        assert over.json()["pruned_note_en"].startswith(
            "The log's events 1..20 (2020-01 to 2020-02) were pruned"
        )
        unbounded = api(stack, "GET", path, "auditor").json()
        assert unbounded["archived_period"]["pruned_through_seq"] == 20
        later = api(stack, "GET", path, "auditor", params={"since": "2020-03-01"}).json()
        assert "archived_period" not in later and "pruned_note" not in later
    kept = api(stack, "GET", "/proofs/inclusion", "auditor", params={"seq": 21})
    assert kept.status_code == 200, kept.text
    assert api(stack, "GET", "/retention", "auditor").json()["pruned_through_seq"] == 20

    kinds = [(e["kind"], e["outcome"]) for e in stack.last_events(40)]
    assert ("supervision.events_pruned", "ok") in kinds
    assert ("supervision.events_pruned", "refused") in kinds


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_migration_0007_up_down_and_refuses_down_once_pruned(backend: str, tmp_path: Path) -> None:
    from alembic import command

    from gateway.db import alembic_config

    (tmp_path / "var").mkdir()
    with contextlib.ExitStack() as cleanup:
        url = _database(backend, tmp_path, cleanup)
        upgrade(url)
        command.downgrade(alembic_config(url), "0006")
        engine = make_engine(url, pool_size=1)
        with engine.connect() as conn:
            assert not sa.inspect(conn).has_table("audit_prune_anchors")
        engine.dispose()
        upgrade(url)
        engine = make_engine(url, pool_size=1)
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO audit_prune_anchors (pruned_through, document, created_at) "
                    "VALUES (1, '{}', :t)"
                ),
                {"t": datetime.now(UTC)},
            )
        engine.dispose()
        with pytest.raises(RuntimeError, match="pruned"):
            command.downgrade(alembic_config(url), "0006")
