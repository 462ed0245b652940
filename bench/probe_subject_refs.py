"""Probe (not a figure of the harness): what the complaint-lookup index costs a data event on SQLite.

A list read of 20 residents appends one event and 20 ``audit_subject_refs`` rows. This replays that write
with the stdlib sqlite3 driver at the log's durability (WAL, synchronous=FULL, foreign keys on), ten events
a commit, in four shapes, and prints the writer's CPU per event (insert, commit):

* ``none``  the events alone;
* ``text``  20 refs per event as today: ``(subject_ref TEXT, seq)`` rows, a rowid table with its primary key
  and a seq index (``"k1:" + 64 hex``, 67 characters);
* ``int``   the same refs as 8-byte integers (the HMAC's first 8 bytes) in a WITHOUT ROWID table keyed
  ``(key, seq)``, with the seq index; a lookup would confirm each hit against the event's own refs.

Each shape runs with refs that differ for every event (``uniq``, many residents) and with the same 20
residents every time (``same``, as the e2e benchmark reads one page).
Run: ``python -m bench.probe_subject_refs``.
"""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
import time
from pathlib import Path

EVENTS_PER_COMMIT = 10
REFS_PER_EVENT = 20


def run(shape: str, same: bool, commits: int = 300) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="gr-probe-refs-") as tmp:
        conn = sqlite3.connect(Path(tmp) / "probe.db", isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
            conn.execute(f"PRAGMA {pragma}")
        conn.execute("CREATE TABLE ev (seq BIGINT NOT NULL PRIMARY KEY, body TEXT NOT NULL)")
        if shape == "text":
            conn.execute(
                "CREATE TABLE refs (subject_ref VARCHAR(96) NOT NULL, "
                "seq BIGINT NOT NULL REFERENCES ev (seq), PRIMARY KEY (subject_ref, seq))"
            )
        elif shape == "int":
            conn.execute(
                "CREATE TABLE refs (k INTEGER NOT NULL, seq BIGINT NOT NULL REFERENCES ev (seq), "
                "PRIMARY KEY (k, seq)) WITHOUT ROWID"
            )
        if shape != "none":
            conn.execute("CREATE INDEX ix_refs_seq ON refs (seq)")
        batches = []
        seq = 0
        for _ in range(commits):
            rows, refs = [], []
            for _ in range(EVENTS_PER_COMMIT):
                seq += 1
                rows.append((seq, "x" * 600))
                for j in range(REFS_PER_EVENT):
                    digest = hashlib.sha256(f"{0 if same else seq}-{j}".encode()).digest()
                    key = (
                        "k1:" + digest.hex()
                        if shape == "text"
                        else int.from_bytes(digest[:8], "big", signed=True)
                    )
                    refs.append((key, seq))
            batches.append((rows, refs))
        insert = commit = 0.0
        for rows, refs in batches:
            conn.execute("BEGIN IMMEDIATE")
            t0 = time.thread_time()
            conn.executemany("INSERT INTO ev VALUES (?, ?)", rows)
            if shape != "none":
                conn.executemany("INSERT INTO refs VALUES (?, ?)", refs)
            t1 = time.thread_time()
            conn.execute("COMMIT")
            t2 = time.thread_time()
            insert, commit = insert + t1 - t0, commit + t2 - t1
        conn.close()
    n = commits * EVENTS_PER_COMMIT
    return insert / n * 1e6, commit / n * 1e6


def main() -> None:
    print(f"writer CPU per event, {EVENTS_PER_COMMIT} events a commit, {REFS_PER_EVENT} refs each (µs)")
    for shape in ("none", "text", "int"):
        for same in (False, True):
            ins, com = run(shape, same)
            label = "same" if same else "uniq"
            print(f"{shape:5} {label}: insert {ins:6.1f}  commit {com:6.1f}  total {ins + com:6.1f}")


if __name__ == "__main__":
    main()
