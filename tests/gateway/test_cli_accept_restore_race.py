"""`grassroots audit accept-restore` run twice: by two operators at the same moment (two real processes on
one checkpoint directory), and again after the run that signed the record could not write its audit event.
Before, both racing runs passed the check of the latest checkpoint and each signed a restore record for the
same epoch: `audit verify` then refused the whole log (two records, a fork) and nothing could clear it. And a
record whose `audit.restore_accepted` event failed to write stayed without one: a re-run only said the log
was not behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from audit import AuditUnavailable, EventQuery, query_events
from gateway.db import make_engine
from tests.gateway.test_cli_accept_restore import REASON, _accept, _behind, _files
from tests.gateway.test_cli_database_gate import _run, live_and_snapshot

__all__ = ["live_and_snapshot"]


def _acts(url: str) -> list[dict[str, object]]:
    engine = make_engine(url)
    try:
        return [e.details for e in query_events(engine, EventQuery(kind="audit.restore_accepted")).items]
    finally:
        engine.dispose()


# One operator's run of the real command in its own process. Two barriers make the two runs meet where two
# people pressing Enter at the same moment could: both have been shown the restore before either accepts it,
# and each, about to store its record, waits (up to WAIT_S) for the other to get there too.
_OPERATOR = """
import pathlib, sys, time
import audit
from audit import checkpoints
from gateway.cli import app

arrived, me, wait_s, reason = sys.argv[1:]

def meet(stage):
    (pathlib.Path(arrived) / f"{stage}-{me}").touch()
    deadline = time.monotonic() + float(wait_s)
    while len(list(pathlib.Path(arrived).glob(f"{stage}-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)

accept, store = audit.accept_restore, checkpoints._store

def shown_to_both(*args, **kwargs):
    meet("shown")
    return accept(*args, **kwargs)

def both_storing(directory, checkpoint):
    if checkpoint.restore is not None:
        meet("storing")
    return store(directory, checkpoint)

audit.accept_restore, checkpoints._store = shown_to_both, both_storing
app(["audit", "accept-restore", "--reason", reason, "--yes"])
"""
WAIT_S = 8


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_two_operators_accepting_at_once_sign_one_record_and_the_other_is_told_which(
    tmp_path: Path, live_and_snapshot: tuple[str, object]
) -> None:
    data_dir, restored = _behind(tmp_path, *live_and_snapshot)  # #3 lost
    checkpoints, arrived = data_dir / "checkpoints", tmp_path / "arrived"
    arrived.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRASSROOTS_")}
    env |= {"GRASSROOTS_DATA_DIR": str(data_dir), "GRASSROOTS_DATABASE_URL": restored}
    env["GRASSROOTS_DEV_IDP_ENABLED"] = "true"

    def operator(name: str) -> subprocess.Popen[str]:
        argv = [sys.executable, "-c", _OPERATOR, str(arrived), name, str(WAIT_S), REASON]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    operators = [operator("a"), operator("b")]
    outputs = [p.communicate(timeout=180) for p in operators]
    codes = sorted(p.returncode for p in operators)
    assert codes == [0, 1], outputs
    (winner,) = [out for (out, _), p in zip(outputs, operators, strict=True) if p.returncode == 0]
    (loser,) = [err for (_, err), p in zip(outputs, operators, strict=True) if p.returncode == 1]
    assert "restore accepted: events 3..3 recorded as lost" in winner

    (record,) = [p.name for p in checkpoints.glob("checkpoint-*-e1-restore.json")]
    zh, en = loser.strip().splitlines()
    assert zh.startswith("未接受恢复：另一次运行已在此期间接受了这次恢复") and record in zh, zh
    assert "本次未写入任何内容" in zh
    assert en.startswith("restore not accepted: another run accepted this restore meanwhile") and record in en
    assert "nothing was written" in en
    assert not (checkpoints / ".checkpoint-chain.lock").exists()
    # One record, one event; the log verifies (two records for epoch 1 would fail it for good).
    assert [d["epoch"] for d in _acts(restored)] == [1]
    verified = _run(data_dir, "audit", "verify", "--quiet", database_url=restored)
    assert verified.exit_code == 0, (verified.stdout, verified.stderr)


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_restore_record_left_without_its_event_is_recorded_by_running_the_command_again(
    tmp_path: Path, live_and_snapshot: tuple[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir, restored = _behind(tmp_path, *live_and_snapshot)  # #3 lost
    checkpoints = data_dir / "checkpoints"
    import gateway.cli

    def database_gone(*args: object) -> str:
        raise AuditUnavailable("audit store unavailable (OperationalError)")

    with monkeypatch.context() as patched:  # the database fails just after the record is signed
        patched.setattr(gateway.cli, "record_offline_act", database_gone)
        failed = _accept(data_dir, restored, "--yes")
    assert failed.exit_code == 1
    assert (
        "run the same command again to record it" in failed.stderr
        and "重新运行同一条命令补记" in failed.stderr
    )
    (record,) = [p.name for p in checkpoints.glob("checkpoint-*-e1-restore.json")]
    assert _acts(restored) == []
    signed = _files(checkpoints)
    # `audit verify` says so on every run (before, only a re-run of accept-restore noticed): the signed
    # record is the evidence, so the log verifies, with a note saying how to record the event.
    noted = _run(data_dir, "audit", "verify", database_url=restored)
    assert noted.exit_code == 0, (noted.stdout, noted.stderr)
    missing = f"the restore record {record} (epoch 1) has no audit.restore_accepted event in the audit log"
    assert missing in noted.stdout and "再次运行 grassroots audit accept-restore 即可补记" in noted.stdout

    again = _accept(data_dir, restored, "--yes")
    assert again.exit_code == 0, (again.stdout, again.stderr)
    assert f"the restore was accepted already (restore record {record}, epoch 1)" in again.stdout
    assert "event was missing from the audit log" in again.stdout and "现已补记" in again.stdout
    assert _files(checkpoints) == signed  # nothing signed again
    (act,) = _acts(restored)
    assert (act["epoch"], act["lost_from"], act["lost_to"], act["lost_events"]) == (1, 2, 3, 1)
    assert act["reason"] == REASON and act["recorded_late"] is True

    # Once recorded, running it again writes nothing and says why.
    third = _accept(data_dir, restored, "--yes")
    assert third.exit_code == 1
    assert f"the restore was accepted already (restore record {record}, epoch 1); nothing was written" in (
        third.stderr
    )
    assert "恢复已被接受过" in third.stderr and len(_acts(restored)) == 1
    assert _files(checkpoints) == signed
    verified = _run(data_dir, "audit", "verify", database_url=restored)
    assert verified.exit_code == 0, (verified.stdout, verified.stderr)
    assert (
        "has no audit.restore_accepted event" not in verified.stdout and "accepted restore" in verified.stdout
    )


def test_a_re_run_while_the_chain_lock_is_held_is_refused_naming_it(
    tmp_path: Path, live_and_snapshot: tuple[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-running to record a missing event takes the chain lock too; held (a rotation), it is refused
    naming the lock file, not a traceback."""
    import audit

    data_dir, restored = _behind(tmp_path, *live_and_snapshot)
    assert _accept(data_dir, restored, "--yes").exit_code == 0
    real = audit.chain_lock
    monkeypatch.setattr(audit, "chain_lock", lambda directory, wait_s=0.0: real(directory, 0.3))
    with real(data_dir / "checkpoints"):  # a rotation in progress
        held = _accept(data_dir, restored, "--yes")
    assert held.exit_code == 1, (held.stdout, held.stderr, held.exception)
    assert "another key rotation, restore acceptance or checkpoint write holds" in held.stderr
    assert "未接受恢复" in held.stderr
