"""Fast, valid audit-log rows for the verification and complaint-lookup benchmarks.

Writing millions of events through ``AuditLog`` would spend the benchmark's time in setup, so rows are
built here directly: the RFC 8785 body from a template whose keys are already in canonical order (every
value is an ASCII token, so no escaping applies), the RFC 6962 leaf hash and the hash-chain link exactly as
``audit.log`` computes them, and the query columns as SQLAlchemy stores them on SQLite. ``check_rows``
holds the template to ``AuditEvent.to_body`` + ``canonical_json``, and the verification benchmark then
proves the whole generated log valid with ``audit.verify_log`` itself.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from audit import AuditEvent, Pseudonymizer, canonical_json, install_immutability_sql, metadata
from audit.log import CHAIN_DOMAIN, GENESIS_HASH
from audit.tables import audit_events, audit_subject_refs
from bench._measure import log

T0 = datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
PSEUDONYMIZER = Pseudonymizer(b"bench-key-for-audit-refs-0123456789", "k1")
_SHA = hashlib.sha256
_LEAF = b"\x00"

EventRow = tuple[int, str, str, str, str, str, str, str, str, bytes, bytes, bytes]


def resident_refs(n: int) -> list[str]:
    return [PSEUDONYMIZER.ref(f"resident-{k}") for k in range(n)]


def _mix(i: int) -> int:
    z = (i * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 27)


def refs_of(seq: int, pool: Sequence[str]) -> list[str]:
    """Residents an event touches: none for one in ten (refused), three for one in ten (a page), else one.
    One read in ten goes to the 1 % of residents read most (e.g. on subsistence allowance, 低保), so they
    appear in ~10x as many events as the rest."""
    h = _mix(seq)
    kind = h % 10
    count = 0 if kind == 0 else 3 if kind == 1 else 1
    n = len(pool)
    hot = max(1, n // 100)
    out: list[str] = []
    for j in range(count):
        r = h >> (8 + 20 * j)
        ref = pool[(r >> 4) % hot] if r % 10 == 0 else pool[(r >> 4) % n]
        if ref not in out:
            out.append(ref)
    return out


def rows(
    first_seq: int, count: int, pool: Sequence[str], prev: bytes
) -> Iterator[tuple[EventRow, list[str]]]:
    """Events ``first_seq .. first_seq + count - 1`` chained after ``prev`` (one per 10 ms)."""
    second = -1
    body_prefix = col_prefix = ""
    for seq in range(first_seq, first_seq + count):
        if seq // 100 != second:
            second = seq // 100
            when = T0 + timedelta(seconds=second)
            body_prefix = when.strftime("%Y-%m-%dT%H:%M:%S")
            col_prefix = when.strftime("%Y-%m-%d %H:%M:%S")
        micro = f".{(seq % 100) * 10_000:06d}"
        body_ts = body_prefix + micro + "Z"
        col_ts = col_prefix + micro
        refs = refs_of(seq, pool)
        allowed = bool(refs)
        outcome = "allowed" if allowed else "refused"
        reason = "allowed" if allowed else "no_active_grant"
        actor = f"u{_mix(seq + 7) % 20000:08d}"
        org = f"310151{101 + seq % 9:03d}{201 + seq % 13:03d}"
        subject = ",".join(f'"{r}"' for r in refs)
        body = (
            f'{{"actor":"{actor}","actor_org":"{org}","actor_roles":["village_cadre"],'
            f'"dataset":"residents","details":{{}},"fields":["id","name","mobile"],"kind":"data.read",'
            f'"occurred_at":"{body_ts}","outcome":"{outcome}","reason":"{reason}",'
            f'"record_count":{len(refs)},"record_refs":[],"request_id":"req-{seq}",'
            f'"scenario":"DIBAO_REVIEW","subject_refs":[{subject}],"trace_id":"{seq:032x}","v":1}}'
        )
        raw = body.encode()
        entry = _SHA(CHAIN_DOMAIN + prev + raw).digest()
        leaf = _SHA(_LEAF + raw).digest()
        yield (
            (
                seq,
                col_ts,
                "data.read",
                outcome,
                actor,
                org,
                "DIBAO_REVIEW",
                "residents",
                body,
                prev,
                entry,
                leaf,
            ),
            refs,
        )
        prev = entry


def check_rows(pool: Sequence[str], n: int = 200) -> None:
    """The template must be byte-identical to what the audit library would have written."""
    for row, refs in rows(1, n, pool, GENESIS_HASH):
        body = row[8]
        event = AuditEvent.from_body(json.loads(body))
        assert canonical_json(event.to_body()).decode() == body, "template drifted from AuditEvent"
        assert list(event.subject_refs) == refs


def create_store(path: Path) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False})
    metadata.create_all(engine)
    return engine


def bulk_load(path: Path, count: int, pool: Sequence[str], *, chunk: int = 50_000) -> bytes:
    """Fill a fresh SQLite store with ``count`` chained events (fast path: secondary indexes are built
    after the load, no journal during it). Installs the append-only triggers at the end. Returns the
    head hash."""
    engine = create_store(path)
    engine.dispose()
    secondary = [*audit_events.indexes, *audit_subject_refs.indexes]
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-2000000")
    for index in secondary:
        con.execute(f"DROP INDEX {index.name}")
    insert_event = f"INSERT INTO audit_events VALUES ({','.join('?' * 12)})"  # noqa: S608 - constant column list
    prev = GENESIS_HASH
    done = 0
    started = time.perf_counter()
    while done < count:
        n = min(chunk, count - done)
        events: list[EventRow] = []
        refs: list[tuple[str, int]] = []
        for row, touched in rows(done + 1, n, pool, prev):
            events.append(row)
            refs.extend((r, row[0]) for r in touched)
        prev = events[-1][10]
        con.execute("BEGIN")
        con.executemany(insert_event, events)
        con.executemany("INSERT INTO audit_subject_refs (subject_ref, seq) VALUES (?, ?)", refs)
        con.execute("COMMIT")
        done += n
    con.execute("INSERT INTO audit_head (id, seq, entry_hash) VALUES (1, ?, ?)", (count, prev))
    con.close()
    log(f"{count:,} rows inserted in {time.perf_counter() - started:.0f} s; building indexes")
    engine = create_store(path)
    with engine.begin() as conn:
        for index in secondary:
            index.create(conn)
        for statement in install_immutability_sql("sqlite"):
            conn.exec_driver_sql(statement)
    engine.dispose()
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    return prev
