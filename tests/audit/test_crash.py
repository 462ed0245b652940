"""Crash safety: SIGKILL an appending process repeatedly; every acknowledged event survives, chain intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from audit import verify_log
from audit.tables import audit_events
from tests.audit.conftest import sqlite_store

ROOT = Path(__file__).resolve().parents[2]
KILLS = 3
ACKS_BEFORE_KILL = 150


def run_until_killed(url: str) -> dict[int, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.audit._writer", url, "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    acked: dict[int, str] = {}
    try:
        while len(acked) < ACKS_BEFORE_KILL:
            line = proc.stdout.readline()
            assert line, f"writer exited early with {proc.poll()}"
            seq, entry = line.split()
            acked[int(seq)] = entry
    finally:
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
    # Lines already written before the kill were acknowledged too; a torn last line was not.
    for line in rest.splitlines(keepends=True):
        if line.endswith("\n") and len(line.split()) == 2:
            seq, entry = line.split()
            acked[int(seq)] = entry
    return acked


def test_acknowledged_events_survive_sigkill(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path / "audit.db")
    store.engine.dispose()
    acked: dict[int, str] = {}
    for _ in range(KILLS):
        acked.update(run_until_killed(store.url))

    with store.engine.connect() as conn:
        stored = dict(conn.execute(sa.select(audit_events.c.seq, audit_events.c.entry_hash)).all())
    missing = [seq for seq in acked if seq not in stored]
    assert not missing
    assert all(stored[seq].hex() == entry for seq, entry in acked.items())
    report = verify_log(store.engine)
    assert report.ok, report.describe()
    assert report.checked >= KILLS * ACKS_BEFORE_KILL
    store.engine.dispose()
