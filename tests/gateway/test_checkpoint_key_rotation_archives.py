"""Archives and prune anchors signed before `grassroots keys rotate-checkpoint`, walked as an operator: after
the rotation `supervise archive-verify`, `supervise prefix-verify`, `audit prune-as-owner` and `audit verify`
still accept what the old key signed while it was in office (they checked the key file's key only)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit import AuditLog, CheckpointSigner, archive_month, record_archive
from gateway.supervision_tasks import archive_closed_months
from tests.audit.helpers import make_event
from tests.gateway.test_cli_database_gate import _run

# Long past the three-year retention period (PIPL Art. 56), whenever the test runs.
JAN = datetime(2020, 1, 10, 2, 0, tzinfo=UTC)
FEB = datetime(2020, 2, 10, 2, 0, tzinfo=UTC)
MAR = datetime(2020, 3, 10, 2, 0, tzinfo=UTC)


def _archive(data_dir: Path, month: str) -> Path:
    """``supervise archive`` goes through the API; the same library calls, with the key file's key."""
    engine = sa.create_engine(f"sqlite:///{data_dir / 'gateway.db'}")
    try:
        signer = CheckpointSigner.load_or_create(data_dir / "keys" / "audit-checkpoint-ed25519.pem")
        result = archive_month(engine, signer, data_dir / "archives", month)
        with Session(engine) as session:
            record_archive(session, result, "auditor", datetime.now(UTC))
            session.commit()
    finally:
        engine.dispose()
    return result.manifest_file


def _ok(*args: str, data_dir: Path) -> str:
    result = _run(data_dir, *args)
    assert result.exit_code == 0, (args, result.stdout, result.stderr, result.exception)
    return result.stdout


def test_archives_and_anchors_signed_before_a_rotation_still_verify_and_prune(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    _ok("db", "upgrade", data_dir=data_dir)
    engine = sa.create_engine(f"sqlite:///{data_dir / 'gateway.db'}")
    log = AuditLog(engine)
    for start, month in ((0, JAN), (10, FEB), (20, MAR)):
        log.append_many(
            make_event(i, occurred_at=month + timedelta(minutes=i)) for i in range(start, start + 10)
        )
    engine.dispose()
    _ok("audit", "checkpoint", data_dir=data_dir)
    jan, feb = _archive(data_dir, "2020-01"), _archive(data_dir, "2020-02")
    pruned = json.loads(
        _ok("audit", "prune-as-owner", "--execute", "--through-month", "2020-01", data_dir=data_dir)
    )
    assert pruned["pruned_through_seq"] == 10

    stale = CheckpointSigner.load_or_create(data_dir / "keys" / "audit-checkpoint-ed25519.pem")
    _ok("keys", "rotate-checkpoint", data_dir=data_dir)
    # A gateway not yet restarted with the new key file: its periodic archiver signs nothing.
    engine = sa.create_engine(f"sqlite:///{data_dir / 'gateway.db'}")
    archived = archive_closed_months(
        engine, stale, data_dir / "archives", datetime.now(UTC), checkpoint_dir=data_dir / "checkpoints"
    )
    engine.dispose()
    assert archived == [] and not list((data_dir / "archives").glob("audit-2020-03-*"))

    # The January archive, the anchor relying on it and the February archive were all signed by the old key.
    assert "归档完好" in _ok(
        "supervise", "archive-verify", "--against-db", str(jan), str(feb), data_dir=data_dir
    )
    assert "已清理部分完好" in _ok("supervise", "prefix-verify", data_dir=data_dir)
    plan = json.loads(_ok("audit", "prune-as-owner", data_dir=data_dir))
    assert plan["would_prune_through_seq"] == 20, plan
    # Pruning on: the new anchor is signed by the new key and continues the old key's anchor.
    done = json.loads(_ok("audit", "prune-as-owner", "--execute", data_dir=data_dir))
    assert done["pruned_through_seq"] == 20
    _ok("audit", "verify", data_dir=data_dir)
    assert "已清理部分完好" in _ok("supervise", "prefix-verify", data_dir=data_dir)
    assert "归档完好" in _ok(
        "supervise", "archive-verify", "--against-db", str(jan), str(feb), data_dir=data_dir
    )
