"""The supervision API after an accepted restore, on a real gateway process: the checkpoints listed are
those of the log as it now is, inclusion proofs for event numbers the lost log also used are proved against
the restored log's checkpoints, consistency proofs run from the lost log's checkpoints inside the restored
prefix to the new ones, and the monthly report names the latest checkpoint of the restored log and says
that events were lost."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit import AuditLog
from gateway.db import make_engine
from tests.audit.helpers import make_event
from tests.gateway.test_cli_database_gate import _run
from tests.gateway.test_prune_api import api, gateway_on
from tests.stack import Stack


def _append(url: str, first: int, count: int) -> None:
    engine = make_engine(url, pool_size=1)
    try:
        AuditLog(engine).append_many(make_event(i) for i in range(first, first + count))
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def restored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("restore-api")
    data_dir, live = root / "var", root / "var" / "gateway.db"
    url = f"sqlite:///{live}"
    assert _run(data_dir, "db", "upgrade", database_url=url).exit_code == 0
    _append(url, 0, 10)
    assert _run(data_dir, "audit", "checkpoint", database_url=url).exit_code == 0  # 10 signed; event 11
    shutil.copyfile(live, root / "backup.db")
    _append(url, 10, 5)
    assert _run(data_dir, "audit", "checkpoint", database_url=url).exit_code == 0  # 16 signed; then lost
    for suffix in ("-wal", "-shm"):
        Path(f"{live}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(root / "backup.db", live)
    accepted = _run(
        data_dir, "audit", "accept-restore", "--reason", "disk failure", "--yes", database_url=url
    )
    assert accepted.exit_code == 0, accepted.stderr  # the record signs 11; the event is 12
    _append(url, 100, 6)
    assert _run(data_dir, "audit", "checkpoint", database_url=url).exit_code == 0  # 18 signed (epoch 1)
    yield from gateway_on("sqlite", data_dir, url)


def test_checkpoints_and_proofs_are_of_the_log_as_it_now_is(restored: Stack) -> None:
    listed = api(restored, "GET", "/checkpoints", "auditor").json()
    assert [(c["tree_size"], c.get("epoch", 0)) for c in listed["items"]] == [(10, 0), (11, 1), (18, 1)]
    assert listed["items"][1]["restore"]["lost_to"] == 16

    # Event 14 exists in both logs: proved against the restored log's checkpoint, not the lost one's 16.
    proof = api(restored, "GET", "/proofs/inclusion", "auditor", params={"seq": 14})
    assert proof.status_code == 200, proof.text
    assert proof.json()["tree_size"] == 18 and proof.json()["checkpoint"]["epoch"] == 1

    latest_two = api(restored, "GET", "/proofs/consistency", "auditor")
    assert latest_two.status_code == 200, latest_two.text
    assert (latest_two.json()["old_size"], latest_two.json()["new_size"]) == (11, 18)
    across = api(restored, "GET", "/proofs/consistency", "auditor", params={"old": 10, "new": 18})
    assert across.status_code == 200, across.text
    assert (
        across.json()["old_checkpoint"].get("epoch", 0) == 0 and across.json()["new_checkpoint"]["epoch"] == 1
    )


def test_the_monthly_report_names_the_restored_logs_checkpoint(restored: Stack) -> None:
    report = api(restored, "GET", "/reports/monthly", "supervisor", params={"format": "json"})
    assert report.status_code == 200, report.text
    integrity = report.json()["integrity"]
    assert integrity["checked"] is True and integrity["tree_size"] == 18
    # Every report after it says part of the log was lost, when, and why.
    (said,) = integrity["restores"]
    assert (said["lost_first_seq"], said["lost_last_seq"], said["reason"]) == (12, 16, "disk failure")
    page = api(restored, "GET", "/reports/monthly", "supervisor").text
    assert "已接受的数据库恢复：" in page and "事件 #12..#16 已丢失（理由：disk failure）" in page
