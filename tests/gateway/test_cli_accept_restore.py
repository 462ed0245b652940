"""`grassroots audit accept-restore`, walked as an operator through a real restore: a backup of the
database (a copy of the SQLite file, or on PostgreSQL a database made from the live one as its template),
more events and checkpoints, then the backup put back. Before, the only way past `serve`'s refusal was to
move the checkpoint files aside by hand, which destroyed the evidence and left no record."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from typer.testing import Result

from audit import CheckpointSigner
from tests.gateway.test_cli_database_gate import _run, live_and_snapshot

__all__ = ["live_and_snapshot"]  # the fixture, shared with the serve refusal's test

REASON = "机房磁盘损坏，按应急预案从昨夜备份恢复（工单 2026-118）"


def _put_back(live: str, backup: str) -> str:
    """The backup restored in place of the live database (SQLite: the file copied back, the live file's
    write-ahead log removed as a restore must); on PostgreSQL the snapshot database serves as restored."""
    if not live.startswith("sqlite:///"):
        return backup
    path = Path(live.removeprefix("sqlite:///"))
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(backup.removeprefix("sqlite:///"), path)
    return live


def _serve_gate(data_dir: Path, url: str) -> Result:
    with socket.socket() as taken:  # were it to start, it would stop at the port (not serve on)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        return _run(data_dir, "serve", "--port", str(taken.getsockname()[1]), database_url=url)


def _accept(data_dir: Path, url: str, *extra: str, reason: str = REASON, typed: str | None = None) -> Result:
    return _run(
        data_dir, "audit", "accept-restore", "--reason", reason, *extra, database_url=url, typed=typed
    )


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_deliberate_restore_is_accepted_recorded_and_reported_ever_after(
    tmp_path: Path, live_and_snapshot: tuple[str, object]
) -> None:
    live, snapshot = live_and_snapshot
    data_dir = tmp_path / "var"
    checkpoints = data_dir / "checkpoints"
    assert _run(data_dir, "db", "upgrade", database_url=live).exit_code == 0
    for _ in range(2):  # checkpoints of 0 and 1 events; the log holds 2 (each checkpoint is an event)
        assert _run(data_dir, "audit", "checkpoint", database_url=live).exit_code == 0
    backup = snapshot()  # type: ignore[operator]
    for _ in range(2):  # after the backup: checkpoints of 2 and 3 events; the log holds 4
        assert _run(data_dir, "audit", "checkpoint", database_url=live).exit_code == 0
    lost_file = sorted(checkpoints.glob("checkpoint-*.json"))[-1].name
    restored = _put_back(live, backup)
    before = _files(checkpoints)

    refused = _serve_gate(data_dir, restored)
    assert refused.exit_code == 2 and "grassroots audit accept-restore" in refused.stderr

    # Asked, and not confirmed: nothing written.
    shown = _accept(data_dir, restored, typed="n\n")
    assert shown.exit_code == 1
    assert "事件 #3..#3（共 1 条已确认的审计事件）已丢失" in shown.stdout
    assert f"the latest signed checkpoint {lost_file} says the log had 3" in shown.stdout
    assert "nothing was written" in shown.stderr
    assert _files(checkpoints) == before

    accepted = _accept(data_dir, restored, "--yes")
    assert accepted.exit_code == 0, (accepted.stdout, accepted.stderr)
    assert "restore accepted: events 3..3 recorded as lost" in accepted.stdout
    after = _files(checkpoints)
    assert {n: after[n] for n in before} == before  # every checkpoint kept, byte for byte
    (record_name,) = set(after) - set(before)
    assert record_name.startswith("checkpoint-000000000002-") and record_name.endswith("-e1-restore.json")
    record = json.loads(after[record_name])
    assert record["epoch"] == 1 and record["tree_size"] == 2
    assert record["restore"]["lost_from"] == 2 and record["restore"]["lost_to"] == 3
    assert record["restore"]["lost_checkpoint"] == lost_file and record["restore"]["reason"] == REASON

    # serve gets past the refusal now; verify passes and says what was accepted.
    started = _serve_gate(data_dir, restored)  # as far as listening: the port is taken (exit 2 there)
    assert "网关未启动" not in started.stderr and "端口已被占用" in started.stderr, started.stderr
    verified = _run(data_dir, "audit", "verify", "--quiet", database_url=restored)
    assert verified.exit_code == 0, verified.stderr
    assert "事件 #3..#3（共 1 条）已丢失" in verified.stdout and REASON in verified.stdout
    assert "accepted restore, " in verified.stdout and "events 3..3 (1) were lost" in verified.stdout

    # The log goes on past the lost log's size, re-using its numbers: checked only against the restored
    # log's checkpoints (size 3 and 4 exist in both epochs, with different roots), and still reported.
    for _ in range(3):
        assert _run(data_dir, "audit", "checkpoint", database_url=restored).exit_code == 0
    verified = _run(data_dir, "audit", "verify", "--quiet", database_url=restored)
    assert verified.exit_code == 0, verified.stderr
    assert "events 3..3 (1) were lost" in verified.stdout and "tree size 5" in verified.stdout
    log = _run(data_dir, "audit", "verify", "--quiet", database_url=restored)
    assert log.exit_code == 0

    # A second acceptance has nothing to accept.
    again = _accept(data_dir, restored, "--yes")
    assert again.exit_code == 1 and "nothing to accept" in again.stderr


def _behind(tmp_path: Path, live: str, snapshot: object) -> tuple[Path, str]:
    """A data directory whose restored database is one event behind the latest signed checkpoint."""
    data_dir = tmp_path / "var"
    assert _run(data_dir, "db", "upgrade", database_url=live).exit_code == 0
    for _ in range(2):
        assert _run(data_dir, "audit", "checkpoint", database_url=live).exit_code == 0
    backup = snapshot()  # type: ignore[operator]
    for _ in range(2):
        assert _run(data_dir, "audit", "checkpoint", database_url=live).exit_code == 0
    return data_dir, _put_back(live, backup)


@pytest.mark.parametrize(
    ("reason", "said_zh", "said_en"),
    [
        ("   ", "请填写理由", "reason is required"),
        ("联系13812345678", "理由中含有手机号", "The reason holds"),
        ("x" * 501, "理由最多 500 个字", "at most 500 characters"),
    ],
)
def test_a_reason_is_required_and_holds_no_personal_data(
    tmp_path: Path, reason: str, said_zh: str, said_en: str
) -> None:
    data_dir = tmp_path / "var"
    result = _accept(data_dir, f"sqlite:///{tmp_path / 'none.db'}", "--yes", reason=reason)
    assert result.exit_code == 2 and said_zh in result.stderr and said_en in result.stderr
    assert "13812345678" not in result.stderr and not data_dir.exists()  # checked before anything is read


def test_refusals_leave_the_checkpoint_directory_as_it_was(
    tmp_path: Path, live_and_snapshot: tuple[str, object]
) -> None:
    live, snapshot = live_and_snapshot
    data_dir, restored = _behind(tmp_path, live, snapshot)
    checkpoints = data_dir / "checkpoints"
    before = _files(checkpoints)

    # The signing key is held outside the database: without it, nothing (and no new key is made).
    missing = _accept(data_dir, restored, "--yes", "--key", str(tmp_path / "elsewhere.pem"))
    assert missing.exit_code == 2 and "找不到检查点签名密钥" in missing.stderr
    assert not (tmp_path / "elsewhere.pem").exists()
    # Nor without the checkpoint directory (mistyped, not mounted): nothing could be tried, exit 2 naming
    # the setting to correct (it exited 1, as for a restore refused, and named no setting).
    checkpoints.rename(tmp_path / "aside")
    unmounted = _accept(data_dir, restored, "--yes")
    assert unmounted.exit_code == 2, unmounted.stderr
    assert f"未接受恢复：找不到检查点目录 {checkpoints}（GRASSROOTS_CHECKPOINT_DIR）" in unmounted.stderr
    assert f"there is no checkpoint directory {checkpoints} (GRASSROOTS_CHECKPOINT_DIR)" in unmounted.stderr
    assert not checkpoints.exists()
    (tmp_path / "aside").rename(checkpoints)
    # A key of one's own signs nothing the checkpoints' key chain would accept.
    other = tmp_path / "other.pem"
    CheckpointSigner.load_or_create(other)
    forged = _accept(data_dir, restored, "--yes", "--key", str(other))
    assert forged.exit_code == 1 and "restore not accepted" in forged.stderr and "expected" in forged.stderr

    # A database that is not a backup of this log (a fresh one, its own single event) is refused.
    stranger_dir = tmp_path / "stranger"
    stranger = f"sqlite:///{tmp_path / 'stranger.db'}"
    assert _run(stranger_dir, "db", "upgrade", database_url=stranger).exit_code == 0
    assert _run(stranger_dir, "audit", "checkpoint", database_url=stranger).exit_code == 0
    assert _run(stranger_dir, "audit", "checkpoint", database_url=stranger).exit_code == 0
    different = _accept(data_dir, stranger, "--yes")
    assert different.exit_code == 1 and "not a restore of this log" in different.stderr
    assert "不是本日志的备份恢复" in different.stderr
    # Run from a script without --yes, nothing to read: said so (it was Click's bare "Aborted!").
    unanswered = _accept(data_dir, restored)
    assert unanswered.exit_code == 1 and "Aborted!" not in unanswered.stderr
    assert (
        "未接受恢复：没有得到确认（没有终端时，例如在脚本中，请加 --yes），未写入任何内容。"
        in unanswered.stderr
    )
    assert (
        "restore not accepted: no confirmation was read (without a terminal, as in a script, add --yes)"
        in (unanswered.stderr)
    )
    assert _files(checkpoints) == before

    # The log records nothing of the refusals; accepted, it records the act with no personal data.
    assert _accept(data_dir, restored, "--yes").exit_code == 0
    from audit import EventQuery, query_events
    from gateway.db import make_engine

    engine = make_engine(restored)
    try:
        (event,) = query_events(engine, EventQuery(kind="audit.restore_accepted")).items
    finally:
        engine.dispose()
    assert event.seq == 3 and event.actor.startswith("cli:")
    details = event.details
    assert (details["lost_from"], details["lost_to"], details["lost_events"], details["epoch"]) == (
        2,
        3,
        1,
        1,
    )
    assert details["reason"] == REASON


def test_archive_verify_against_the_db_names_the_restore_that_gave_an_archives_events_up(
    tmp_path: Path,
) -> None:
    """March archived after the nightly backup, then the backup restored and accepted: `supervise
    archive-verify --against-db` says which restore gave the archive's events up (exit 1), instead of a gap
    in the live log; without --against-db the archive (the lost log's evidence) verifies."""
    from datetime import UTC, datetime, timedelta

    import sqlalchemy as sa

    from audit import AuditLog
    from tests.audit.helpers import make_event
    from tests.gateway.test_checkpoint_key_rotation_archives import _archive

    data_dir, db = tmp_path / "var", tmp_path / "var" / "gateway.db"
    assert _run(data_dir, "db", "upgrade").exit_code == 0
    march = datetime(2020, 3, 10, 2, 0, tzinfo=UTC)
    engine = sa.create_engine(f"sqlite:///{db}")
    AuditLog(engine).append_many(make_event(i, occurred_at=march + timedelta(minutes=i)) for i in range(5))
    engine.dispose()
    assert _run(data_dir, "audit", "checkpoint").exit_code == 0
    shutil.copyfile(db, tmp_path / "backup.db")
    engine = sa.create_engine(f"sqlite:///{db}")
    next_day = march + timedelta(days=1)
    AuditLog(engine).append_many(
        [make_event(i, occurred_at=next_day + timedelta(minutes=i)) for i in range(5, 8)]
    )
    engine.dispose()
    manifest = _archive(data_dir, "2020-03")
    assert _run(data_dir, "audit", "checkpoint").exit_code == 0
    restored = _put_back(f"sqlite:///{db}", f"sqlite:///{tmp_path / 'backup.db'}")
    assert _accept(data_dir, restored, "--yes").exit_code == 0

    alone = _run(data_dir, "supervise", "archive-verify", str(manifest))
    assert alone.exit_code == 0, (alone.stdout, alone.stderr)
    against = _run(data_dir, "supervise", "archive-verify", str(manifest), "--against-db")
    assert against.exit_code == 1, (against.stdout, against.stderr)
    said = against.stdout + against.stderr
    assert "of this archive were given up by the restore accepted in checkpoint-" in said, said
    assert "已因接受的数据库恢复" in said and "cannot supply" not in said and "已被改动" not in said
