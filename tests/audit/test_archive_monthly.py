"""Monthly archives (signed, verifiable files), retention status, and the monthly report renderings."""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from audit import (
    ArchiveError,
    AuditLog,
    CheckpointSigner,
    archive_month,
    build_monthly_report,
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
    assert verify_archive(result.manifest_file, signer.public_key).ok
    assert verify_archive(result.manifest_file, signer.public_key, sqlite.engine).checked == 10
    with pytest.raises(ArchiveError):
        archive_month(sqlite.engine, signer, tmp_path, "2026-10")
    with pytest.raises(ArchiveError):
        archive_month(sqlite.engine, signer, tmp_path, "2026-01")


def _rewrite_events(path: Path, change: object) -> None:
    lines = [json.loads(x) for x in gzip.decompress(path.read_bytes()).splitlines()]
    change(lines)  # type: ignore[operator]
    path.unlink()
    path.write_bytes(gzip.compress(b"".join(json.dumps(x).encode() + b"\n" for x in lines)))


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        ("events_edit", "digest"),
        ("manifest_edit", "signature"),
        ("other_key", "another key"),
    ],
)
def test_tampered_archives_fail(
    sqlite: Store, signer: CheckpointSigner, tmp_path: Path, tamper: str, problem: str
) -> None:
    populate(sqlite)
    result = archive_month(sqlite.engine, signer, tmp_path, "2026-10")
    key = signer.public_key
    if tamper == "events_edit":
        _rewrite_events(result.events_file, lambda lines: lines.pop(3))
    elif tamper == "manifest_edit":
        manifest = json.loads(result.manifest_file.read_bytes())
        manifest["count"] = 9
        result.manifest_file.write_text(json.dumps(manifest))
    else:
        key = CheckpointSigner.generate().public_key
    verdict = verify_archive(result.manifest_file, key)
    assert not verdict.ok
    assert problem in (verdict.problem or "")


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
        now=NOV + timedelta(days=1),
        reason_names={"outside_jurisdiction": "越权尝试"},
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
    ):
        assert needle in page
    assert "<script" not in page


def test_public_key_loads_from_the_signing_key_file(tmp_path: Path) -> None:
    from audit import load_public_key

    signer = CheckpointSigner.load_or_create(tmp_path / "key.pem")
    (tmp_path / "pub.pem").write_bytes(signer.public_key_pem())
    assert load_public_key(tmp_path / "key.pem") == signer.public_key
    assert load_public_key(tmp_path / "pub.pem") == signer.public_key
