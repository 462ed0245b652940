"""The stage probe's WAL watch reports what SQLite did to the WAL file (no timings are asserted here)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from bench.probe_stage_latency import WalWatch


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the watch never saw it"
        time.sleep(0.01)


def test_the_wal_watch_counts_each_time_sqlite_starts_the_wal_over(tmp_path: Path) -> None:
    con = sqlite3.connect(tmp_path / "g.db", isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t (x BLOB)")
    con.execute("INSERT INTO t VALUES (zeroblob(100000))")
    with WalWatch(tmp_path / "g.db-wal") as watch:
        _until(lambda: len(watch.generations) == 1)
        assert watch.summary().endswith("restarts from its first frame: 0")
        # Everything copied into the database file and no reader left: the next commit starts over.
        assert con.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0] == 0
        con.execute("INSERT INTO t VALUES (1)")
        _until(lambda: len(watch.generations) == 2)
    con.close()
    assert watch.summary().endswith("restarts from its first frame: 1")
    assert min(watch.sizes) > 100_000  # the file kept its size: SQLite overwrites it in place


def test_no_wal_file_is_said_plainly(tmp_path: Path) -> None:
    with WalWatch(tmp_path / "none.db-wal") as watch:
        pass
    assert watch.summary() == "no WAL file seen"
