"""Monthly archives (signed, verifiable files), retention status, and the monthly report renderings."""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from audit import (
    ArchiveError,
    AuditLog,
    CheckpointSigner,
    KeyChain,
    archive_month,
    build_monthly_report,
    canonical_json,
    list_archives,
    load_anomaly_rules,
    record_archive,
    render_csv,
    render_html,
    retention_status,
    verify_archive,
)
from tests.audit.conftest import Store
from tests.audit.helpers import make_event

OCT = datetime(2026, 10, 15, 2, 0, tzinfo=UTC)
NOV = datetime(2026, 11, 3, 2, 0, tzinfo=UTC)


def populate(store: Store) -> None:
    log = AuditLog(store.engine)
    log.append_many(make_event(i, occurred_at=OCT + timedelta(minutes=i)) for i in range(10))
    log.append_many(make_event(i, occurred_at=NOV + timedelta(minutes=i)) for i in range(10, 15))


@pytest.fixture
def signer() -> CheckpointSigner:
    return CheckpointSigner.generate()


def test_archive_verifies_alone_and_against_the_log(
    sqlite: Store, signer: CheckpointSigner, tmp_path: Path
) -> None:
    populate(sqlite)
    result = archive_month(sqlite.engine, signer, tmp_path, "2026-10")
    assert (result.first_seq, result.last_seq, result.count) == (1, 10, 10)
    assert verify_archive(result.manifest_file, KeyChain.pinned(signer.public_key)).ok
    assert (
        verify_archive(result.manifest_file, KeyChain.pinned(signer.public_key), sqlite.engine).checked == 10
    )
    # Never indexed (as when the process died before recording it): the same files are adopted, not
    # rewritten (once indexed, archiving the month again is refused: nothing new to archive).
    manifest = result.manifest_file.read_bytes()
    again = archive_month(sqlite.engine, signer, tmp_path, "2026-10")
    assert again.recovered and again.manifest_file == result.manifest_file
    assert again.to_json() == {**result.to_json(), "recovered": True}
    assert result.manifest_file.read_bytes() == manifest
    with pytest.raises(ArchiveError):
        archive_month(sqlite.engine, signer, tmp_path, "2026-01")


def _rewrite_events(path: Path, change: object) -> None:
    lines = [json.loads(x) for x in gzip.decompress(path.read_bytes()).splitlines()]
    change(lines)  # type: ignore[operator]
    path.unlink()
    path.write_bytes(gzip.compress(b"".join(json.dumps(x).encode() + b"\n" for x in lines)))


def test_retention_lists_months_past_the_period_and_never_prunes(
    sqlite: Store, signer: CheckpointSigner, tmp_path: Path
) -> None:
    populate(sqlite)
    later = datetime(2029, 11, 20, tzinfo=UTC)
    with Session(sqlite.engine) as session:
        status = retention_status(sqlite.engine, session, later, years=3)
        assert status["months_past_retention"] == [{"month": "2026-10", "archived": False, "partial": False}]
        # Archived before October ended: partial, so not counted as archived for pruning.
        early = datetime(2026, 10, 20, tzinfo=UTC)
        record_archive(
            session, archive_month(sqlite.engine, signer, tmp_path, "2026-10", now=early), "a", early
        )
        session.commit()
        status = retention_status(sqlite.engine, session, later, years=3)
        assert status["months_past_retention"] == [{"month": "2026-10", "archived": False, "partial": True}]
        assert status["partially_archived_months"] == ["2026-10"]
        record_archive(session, archive_month(sqlite.engine, signer, tmp_path, "2026-10"), "auditor", later)
        session.commit()
        status = retention_status(sqlite.engine, session, later, years=3)
    assert status["months_past_retention"] == [{"month": "2026-10", "archived": True, "partial": False}]
    assert status["partially_archived_months"] == []
    assert AuditLog(sqlite.engine).size() == 15


def test_monthly_report_counts_and_renders(sqlite: Store) -> None:
    populate(sqlite)
    report = build_monthly_report(
        sqlite.engine,
        "2026-11",
        load_anomaly_rules(),
        dataset_departments={"residents": "civil_affairs"},
        scenario_names={"subsistence-review": "低保年度复核"},
        # Made once November is over (a month still running lists its days through today only).
        now=datetime(2026, 12, 1, 2, 0, tzinfo=UTC),
        reason_names={"outside_jurisdiction": "越权尝试"},
        integrity={"tree_size": 15, "root_hash": "ab" * 32, "timestamp": "2026-11-30T16:05:09.123456Z"},
    )
    assert report.totals.total == 5
    assert len(report.daily) == 30
    rows = list(csv.reader(io.StringIO(render_csv(report).lstrip("\ufeff"))))
    assert rows[0][0] == "类别/section" and rows[1][:3] == ["total", "total", "2026-11 全月（全部单位）"]
    assert rows[0][6] == "合计/total" and int(rows[1][6]) == 5
    page = render_html(report)
    for needle in (
        "数据访问情况定期通报（2026年11月）",
        'id="chart-daily"',
        'id="chart-org"',
        "@media print",
        "低保年度复核",
        "越权尝试（outside_jurisdiction）",  # refusal reasons in words, the code beside them
        # The checkpoint's time in Beijing time, like the page's own (it was the raw UTC "…Z" string).
        "签名时间 2026-12-01 00:05:09（北京时间）",
        # ... and how old it was when the report was made (a proof that stopped advancing shows).
        "签名时间 2026-12-01 00:05:09（北京时间），在本报告生成前 9 小时。",
    ):
        assert needle in page
    assert "<script" not in page


def test_public_key_loads_from_the_signing_key_file(tmp_path: Path) -> None:
    from audit import load_public_key

    signer = CheckpointSigner.load_or_create(tmp_path / "key.pem")
    (tmp_path / "pub.pem").write_bytes(signer.public_key_pem())
    assert load_public_key(tmp_path / "key.pem") == signer.public_key
    assert load_public_key(tmp_path / "pub.pem") == signer.public_key


_ENGLISH_WORD = re.compile(r"[A-Za-z]{3,}")


@pytest.mark.parametrize(
    ("tamper", "problem", "zh"),
    [
        ("events_edit", "digest", "事件文件的摘要与签名清单不符"),
        ("manifest_edit", "signature", "清单签名无法验证"),
        ("other_key", "archive manifest signed by key", "归档清单由密钥"),
        ("event_removed_and_redigested", "4", "第 4 号事件"),
    ],
)
def test_tampered_archives_fail_saying_why_in_english_and_in_chinese(
    sqlite: Store, signer: CheckpointSigner, tmp_path: Path, tamper: str, problem: str, zh: str
) -> None:
    """``problem`` for programs and the English line; ``problem_zh`` for the Chinese line of
    `archive-verify`, with no English words inside it."""
    populate(sqlite)
    result = archive_month(sqlite.engine, signer, tmp_path, "2026-10")
    key = signer.public_key
    if tamper == "events_edit":
        _rewrite_events(result.events_file, lambda lines: lines.pop(3))
    elif tamper == "manifest_edit":
        manifest = json.loads(result.manifest_file.read_bytes())
        manifest["count"] = 9
        result.manifest_file.write_text(json.dumps(manifest))
    elif tamper == "other_key":
        key = CheckpointSigner.generate().public_key
    else:  # drop an event, then fix the digest and re-sign (as a key holder could): the chain still breaks
        _rewrite_events(result.events_file, lambda lines: lines.pop(3))
        manifest = json.loads(result.manifest_file.read_bytes())
        manifest["events_sha256"] = hashlib.sha256(result.events_file.read_bytes()).hexdigest()
        manifest["signature"] = base64.b64encode(
            signer.sign_payload(canonical_json({k: v for k, v in manifest.items() if k != "signature"}))
        ).decode()
        result.manifest_file.write_bytes(canonical_json(manifest))
    verdict = verify_archive(result.manifest_file, KeyChain.pinned(key))
    assert not verdict.ok and verdict.problem_zh is not None
    assert problem in (verdict.problem or "")
    assert zh in verdict.problem_zh
    # Key ids (ed25519:<hex>) are names, not English words.
    assert not _ENGLISH_WORD.search(re.sub(r"ed25519:[0-9a-f]{16}", "", verdict.problem_zh)), (
        verdict.problem_zh
    )
    assert verdict.to_json()["problem_zh"] == verdict.problem_zh


def test_an_unreadable_archive_is_told_in_chinese_too(signer: CheckpointSigner, tmp_path: Path) -> None:
    verdict = verify_archive(
        tmp_path / "audit-2026-10-1-10.manifest.json", KeyChain.pinned(signer.public_key)
    )
    assert not verdict.readable and verdict.problem_zh == (
        f"无法读取 {tmp_path / 'audit-2026-10-1-10.manifest.json'}：文件不存在"
    )


def test_a_directory_given_as_an_archive_is_told_as_such(signer: CheckpointSigner, tmp_path: Path) -> None:
    """`archive-verify var/archives` (the directory, not its manifests) was told in Chinese as 没有读取权限或
    读取出错 (no permission or a read error), in English as "Is a directory": the Chinese reader was sent to
    check permissions. Both now say it is a directory and to give the manifest files in it."""
    verdict = verify_archive(tmp_path, KeyChain.pinned(signer.public_key))
    assert not verdict.readable
    assert (
        verdict.problem_zh
        == f"无法读取 {tmp_path}：这是一个目录，请给出其中的归档清单文件（…/*.manifest.json）"
    )
    assert (
        verdict.problem
        == f"cannot read {tmp_path}: it is a directory: give the manifest files in it (.../*.manifest.json)"
    )


def _archived_event(i: int, when: datetime) -> Any:
    """What the gateway records for an archive (`record_archive`'s change): the archive's own record."""
    return make_event(
        i,
        kind="supervision.month_archived",
        occurred_at=when,
        subject_refs=(),
        record_refs=(),
        record_count=0,
    )


def test_archiving_a_running_month_again_with_only_the_archives_own_record_since_is_refused(
    sqlite: Store, signer: CheckpointSigner, tmp_path: Path
) -> None:
    """Each archive call logs `supervision.month_archived` into the month it archives; that record alone
    is not news: a repeat is refused, naming the archive that holds the month's events."""
    log = AuditLog(sqlite.engine)
    log.append_many(make_event(i, occurred_at=OCT + timedelta(minutes=i)) for i in range(10))
    mid = datetime(2026, 10, 20, tzinfo=UTC)

    def archive(now: datetime) -> str:
        result = archive_month(sqlite.engine, signer, tmp_path, "2026-10", now=now)
        with Session(sqlite.engine) as session:
            record_archive(session, result, "auditor", now)
            session.commit()
        log.append(_archived_event(100 + log.size(), now))  # as the gateway's unit of work does
        return result.manifest_file.name.removesuffix(".manifest.json")

    first = archive(mid)
    assert first == "audit-2026-10-1-10-partial"
    with pytest.raises(ArchiveError) as again:
        archive(mid + timedelta(minutes=5))
    assert "already archived in audit-2026-10-1-10-partial" in str(again.value)
    assert "supervision.month_archived" in str(again.value)
    assert "已归档于 audit-2026-10-1-10-partial" in again.value.message_zh
    assert "归档操作本身的记录" in again.value.message_zh
    assert not _ENGLISH_WORD.search(
        again.value.message_zh.replace(first, "").replace("supervision.month_archived", "")
    )
    # A real event since: archived again, the earlier partial archive is marked superseded.
    log.append(make_event(50, occurred_at=OCT + timedelta(days=1)))
    second = archive(mid + timedelta(minutes=10))
    assert second == "audit-2026-10-1-12-partial"
    # Once the month has ended a complete archive is always possible, own records included.
    third = archive(datetime(2026, 11, 2, tzinfo=UTC))
    assert third == "audit-2026-10-1-13"
    with Session(sqlite.engine) as session:
        listed = {a["archive_id"]: a for a in list_archives(session)}
    assert {k: (v["complete"], v["superseded_by"]) for k, v in listed.items()} == {
        first: (False, third),
        second: (False, third),
        third: (True, None),
    }


@pytest.mark.parametrize(
    ("seconds", "zh", "en"),
    [
        (-5, "不到 1 分钟", "under a minute"),
        (59, "不到 1 分钟", "under a minute"),
        (60, "1 分钟", "1 minute"),
        (119 * 60 + 59, "119 分钟", "119 minutes"),
        (2 * 3600, "2 小时", "2 hours"),
        (47 * 3600 + 3599, "47 小时", "47 hours"),
        (48 * 3600, "2 天", "2 days"),
    ],
)
def test_elapsed_words(seconds: float, zh: str, en: str) -> None:
    from audit.query import after_chinese, elapsed_words

    assert elapsed_words(seconds) == (zh, en)
    # After Chinese text: a space before a number, none between two Chinese words ("生成前 不到" read oddly).
    assert after_chinese(zh) == (zh if zh.startswith("不到") else f" {zh}")
