"""Fast, valid audit-log rows for the verification and complaint-lookup benchmarks.

Writing millions of events through ``AuditLog`` would spend the benchmark's time in setup, so rows are
built here directly: the RFC 8785 body from a template whose keys are already in canonical order (every
value is an ASCII token, so no escaping applies), the RFC 6962 leaf hash and the hash-chain link exactly as
``audit.log`` computes them, and the query columns as SQLAlchemy stores them on SQLite. ``check_rows``
holds the template to ``AuditEvent.to_body`` + ``canonical_json``, and the verification benchmark then
proves the whole generated log valid with ``audit.verify_log`` itself.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.schema import CreateIndex

from audit import AuditEvent, Pseudonymizer, canonical_json, install_immutability_sql, metadata
from audit.log import CHAIN_DOMAIN, GENESIS_HASH
from audit.tables import audit_events, audit_subject_refs
from bench._measure import log

T0 = datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
PSEUDONYMIZER = Pseudonymizer(b"bench-key-for-audit-refs-0123456789", "k1")
_SHA = hashlib.sha256
_LEAF = b"\x00"

_ACTORS: Final = [f"u{k:08d}" for k in range(20000)]
# seq % 117 fixes both seq % 9 and seq % 13 (coprime): the organisation of event seq.
_ORGS: Final = [f"310151{101 + k % 9:03d}{201 + k % 13:03d}" for k in range(117)]

EventRow = tuple[int, str, str, str, str, str, str, str, str, bytes, bytes, bytes]


def resident_refs(n: int) -> list[str]:
    return [PSEUDONYMIZER.ref(f"resident-{k}") for k in range(n)]


def _mix(i: int) -> int:
    z = (i * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 27)


@functools.cache
def record_ref(subject_ref: str) -> str:
    """The keyed ref of the (one) record of the resident with ``subject_ref``, as a read that served it
    records it: one record per resident, so complaints can learn which records are whose."""
    return PSEUDONYMIZER.ref(f"record-of-{subject_ref}")


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


def asked_for(seq: int, pool: Sequence[str]) -> str:
    """The resident whose record a refused read (``refs_of`` empty) asked for, drawn like reads are."""
    r = _mix(seq) >> 8
    hot = max(1, len(pool) // 100)
    return pool[(r >> 4) % hot] if r % 10 == 0 else pool[(r >> 4) % len(pool)]


def rows(
    first_seq: int, count: int, pool: Sequence[str], prev: bytes
) -> Iterator[tuple[EventRow, list[str]]]:
    """Events ``first_seq .. first_seq + count - 1`` chained after ``prev`` (one per 10 ms)."""
    second = -1
    body_prefix = col_prefix = ""
    micros = [f".{k * 10_000:06d}" for k in range(100)]
    for seq in range(first_seq, first_seq + count):
        if seq // 100 != second:
            second = seq // 100
            when = T0 + timedelta(seconds=second)
            body_prefix = when.strftime("%Y-%m-%dT%H:%M:%S")
            col_prefix = when.strftime("%Y-%m-%d %H:%M:%S")
        micro = micros[seq % 100]
        body_ts = body_prefix + micro + "Z"
        col_ts = col_prefix + micro
        refs = refs_of(seq, pool)
        allowed = bool(refs)
        outcome = "allowed" if allowed else "refused"
        reason = "allowed" if allowed else "no_active_grant"
        actor = _ACTORS[_mix(seq + 7) % 20000]
        org = _ORGS[seq % 117]
        subject = ",".join(f'"{r}"' for r in refs)
        # A read serves each resident's record (record refs parallel to the subject refs, as the data
        # path writes them); a refused one asked for some resident's record by id and served nothing.
        records = ",".join(f'"{record_ref(r)}"' for r in refs)
        details = "" if allowed else f'"requested_record_ref":"{record_ref(asked_for(seq, pool))}"'
        body = (
            f'{{"actor":"{actor}","actor_org":"{org}","actor_roles":["village_cadre"],'
            f'"dataset":"residents","details":{{{details}}},"fields":["id","name","mobile"],'
            f'"kind":"data.read","occurred_at":"{body_ts}","outcome":"{outcome}","reason":"{reason}",'
            f'"record_count":{len(refs)},"record_refs":[{records}],"request_id":"req-{seq}",'
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
        assert list(event.record_refs) == [record_ref(r) for r in refs]
        if not refs:
            assert event.details["requested_record_ref"] == record_ref(asked_for(row[0], pool))


def create_store(path: Path) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False})
    metadata.create_all(engine)
    return engine


def bulk_load(path: Path, count: int, pool: Sequence[str], *, chunk: int = 100_000) -> bytes:
    """Fill a fresh SQLite store with ``count`` chained events; returns the head hash.

    Setup, not the thing measured, so it takes every shortcut that leaves the same final store: no
    journal and no syncs while loading (``journal_mode=OFF``, ``synchronous=OFF``, exclusive lock), the
    secondary indexes dropped and rebuilt at the end (one sort each instead of 10M random inserts),
    and the subject refs staged unindexed in a temp table, then inserted in primary-key order so their
    B-tree grows at its right edge. The append-only triggers go in last; the store ends in WAL mode.
    """
    engine = create_store(path)
    engine.dispose()
    secondary = [*audit_events.indexes, *audit_subject_refs.indexes]
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA locking_mode=EXCLUSIVE")
    con.execute("PRAGMA cache_size=-1000000")
    con.execute("PRAGMA temp_store=FILE")
    for index in secondary:
        con.execute(f"DROP INDEX {index.name}")
    con.execute("CREATE TEMP TABLE staged_refs (subject_ref TEXT, seq INTEGER)")
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
        con.executemany("INSERT INTO staged_refs VALUES (?, ?)", refs)
        con.execute("COMMIT")
        done += n
    log(f"{count:,} events inserted in {time.perf_counter() - started:.0f} s; sorting refs, building indexes")
    con.execute("BEGIN")
    con.execute(
        "INSERT INTO audit_subject_refs (subject_ref, seq) "
        "SELECT subject_ref, seq FROM staged_refs ORDER BY subject_ref, seq"
    )
    con.execute("DROP TABLE staged_refs")
    con.execute("INSERT INTO audit_head (id, seq, entry_hash) VALUES (1, ?, ?)", (count, prev))
    con.execute("COMMIT")
    # Same connection, still unjournaled; the sorter may use a second thread for the index builds.
    con.execute("PRAGMA threads=2")
    dialect = sqlite_dialect()
    for index in secondary:
        con.execute(str(CreateIndex(index).compile(dialect=dialect)))
    for statement in install_immutability_sql("sqlite"):
        con.execute(statement)
    con.close()
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    log(f"store ready after {time.perf_counter() - started:.0f} s")
    return prev
