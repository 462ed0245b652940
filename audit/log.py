"""The append-only audit log: a hash chain and an RFC 6962 Merkle tree over RFC 8785 event bodies.

Each stored event carries

* ``leaf_hash  = SHA-256(0x00 || body)`` — its RFC 6962 §2.1 leaf, so signed checkpoints over the Merkle
  root give inclusion and consistency proofs (RFC 9162 §2.1.3, §2.1.4);
* ``entry_hash = SHA-256("grassroots-audit-chain-v1" 0x00 || prev_hash || body)`` — the chain link, so
  any edit, deletion, insertion or reordering breaks every later link (domain-separated from the Merkle
  hashes so a chain hash can never pass for a tree node or leaf).

Sequence numbers are gapless 1..N. Every append (one event or a batch) is one transaction that locks the
single ``audit_head`` row (``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so
several processes can append concurrently without forking the chain.

Durability is the point (issue: a response carrying data leaves only after its processing record —
PIPL Art. 56 — is on disk): SQLite runs in WAL with ``synchronous=FULL``, PostgreSQL with
``synchronous_commit=on``. Any database failure surfaces as :class:`AuditUnavailable`, which the gateway
answers with 503 and no data (fail closed).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, Engine, event, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from audit import merkle
from audit.canonical import canonical_json
from audit.events import AuditEvent
from audit.tables import HEAD_ID, audit_events, audit_head, audit_subject_refs

logger = logging.getLogger(__name__)

GENESIS_HASH: Final = bytes(32)
CHAIN_DOMAIN: Final = b"grassroots-audit-chain-v1\x00"
SUPPORTED_DIALECTS: Final = frozenset({"sqlite", "postgresql"})
_SQLITE_CONFIGURED: Final = "_grassroots_audit_sqlite_durability"


def chain_hash(prev_hash: bytes, body: bytes) -> bytes:
    """The chain link of an event: ``SHA-256(domain || prev_hash || body)``."""
    return hashlib.sha256(CHAIN_DOMAIN + prev_hash + body).digest()


class AuditUnavailable(Exception):
    """The audit log could not be written (or read); nothing was committed for the failed call.

    The message never carries SQL parameters or event content. The gateway maps it to HTTP 503.
    """

    code: Final = "audit_unavailable"
    message_zh: Final = "审计日志暂时无法写入，为保护居民信息，本次请求未返回任何数据。请稍后重试。"
    message_en: Final = (
        "The audit log cannot be written right now; to protect residents' data nothing was returned. "
        "Please retry later."
    )

    def __init__(self, detail: str = "audit store unavailable") -> None:
        super().__init__(detail)


class AuditIntegrityError(Exception):
    """The stored log is not what it should be (a gap, a missing head). Run ``grassroots audit verify``."""


@dataclass(frozen=True, slots=True)
class AppendReceipt:
    """Proof of a durable append: the event's sequence number and chain hash."""

    seq: int
    entry_hash: bytes


@dataclass(frozen=True, slots=True)
class PreparedEvent:
    """An event already encoded (RFC 8785) and leaf-hashed, ready for the chain."""

    event: AuditEvent
    body: bytes
    leaf_hash: bytes


def prepare(event: AuditEvent) -> PreparedEvent:
    """Canonicalise and leaf-hash ``event``; raises ``ValueError`` for an event JCS cannot encode."""
    if not isinstance(event, AuditEvent):
        raise TypeError("expected an AuditEvent")
    body = canonical_json(event.to_body())
    return PreparedEvent(event=event, body=body, leaf_hash=merkle.leaf_hash(body))


def _sqlite_durability(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL + synchronous=FULL: the WAL is fsynced at every commit, so an acknowledged event survives
        # a crash or power cut; busy_timeout lets concurrent appenders queue on BEGIN IMMEDIATE.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=10000")
    finally:
        cursor.close()


def configure_sqlite_durability(engine: Engine) -> None:
    """Install the SQLite connect hook (WAL, ``synchronous=FULL``, busy timeout). Idempotent.

    Call it right after creating the engine, before the first connection; :class:`AuditLog` calls it
    too and additionally sets ``synchronous=FULL`` at the start of every append transaction.
    """
    if engine.dialect.name != "sqlite" or getattr(engine, _SQLITE_CONFIGURED, False):
        return
    event.listen(engine, "connect", _sqlite_durability)
    setattr(engine, _SQLITE_CONFIGURED, True)


def _database_failure(exc: BaseException) -> AuditUnavailable:
    # Only the class name and SQLSTATE: driver messages can quote parameters (event content).
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "sqlite_errorname", None)
    logger.warning("audit store failure: %s (%s)", type(exc).__name__, sqlstate or "no sqlstate")
    return AuditUnavailable(f"audit store unavailable ({type(exc).__name__})")


class AuditLog:
    """Appends events durably to the chained, Merkle-hashed log and reads it back.

    Owns its transactions (durability is its job — see docs/architecture.md); thread-safe, since each
    call takes its own connection from the engine's pool.
    """

    def __init__(self, engine: Engine) -> None:
        if engine.dialect.name not in SUPPORTED_DIALECTS:
            raise ValueError(f"audit log supports {sorted(SUPPORTED_DIALECTS)}, not {engine.dialect.name}")
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        configure_sqlite_durability(engine)

    @property
    def engine(self) -> Engine:
        return self._engine

    def __repr__(self) -> str:
        return f"AuditLog(dialect={self._engine.dialect.name!r})"

    # -- appending ------------------------------------------------------------------------------------

    def append(self, event: AuditEvent) -> AppendReceipt:
        """Append one event and return once it is durably committed."""
        return self.append_prepared([prepare(event)])[0]

    def append_many(self, events: Iterable[AuditEvent]) -> list[AppendReceipt]:
        """Append events in order in ONE transaction: all are committed, or none."""
        return self.append_prepared([prepare(e) for e in events])

    def append_prepared(self, prepared: Sequence[PreparedEvent]) -> list[AppendReceipt]:
        """Append already-encoded events in one transaction (used by the group-commit appender)."""
        if not prepared:
            return []
        try:
            if self._sqlite:
                return self._append_sqlite(prepared)
            return self._append_postgres(prepared)
        except SQLAlchemyError as exc:
            raise _database_failure(exc) from None
        except OSError as exc:
            raise _database_failure(exc) from None

    def append_within(self, conn: Connection, events: Iterable[AuditEvent]) -> list[AppendReceipt]:
        """Append in the caller's open transaction; the caller commits (or rolls back) both together.

        For administrative changes: the change and its processing record (PIPL Art. 56) become durable in
        one commit, or neither does. On SQLite the caller's transaction should hold the write lock from the
        start (``BEGIN IMMEDIATE``), so that it never has to upgrade a read lock under contention.
        """
        prepared = [prepare(e) for e in events]
        if not prepared:
            return []
        head_insert = sqlite_insert(audit_head) if self._sqlite else pg_insert(audit_head)
        try:
            head_seq, head_hash = self._locked_head(conn, head_insert)
            return self._insert(conn, prepared, head_seq, head_hash)
        except SQLAlchemyError as exc:
            raise _database_failure(exc) from None

    def _append_sqlite(self, prepared: Sequence[PreparedEvent]) -> list[AppendReceipt]:
        with self._engine.connect() as raw:
            # Driver-level autocommit so that our explicit BEGIN IMMEDIATE is the transaction: it takes
            # the write lock up front, so two appenders never read the same head (no chain fork).
            conn = raw.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("PRAGMA synchronous=FULL")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                head_seq, head_hash = self._locked_head(conn, sqlite_insert(audit_head))
                receipts = self._insert(conn, prepared, head_seq, head_hash)
                conn.exec_driver_sql("COMMIT")
            except BaseException:
                try:
                    conn.exec_driver_sql("ROLLBACK")
                except SQLAlchemyError:
                    logger.warning("audit rollback failed; the connection is discarded")
                    raw.invalidate()
                raise
            return receipts

    def _append_postgres(self, prepared: Sequence[PreparedEvent]) -> list[AppendReceipt]:
        with self._engine.begin() as conn:
            conn.exec_driver_sql("SET LOCAL synchronous_commit = on")
            head_seq, head_hash = self._locked_head(conn, pg_insert(audit_head))
            return self._insert(conn, prepared, head_seq, head_hash)

    @staticmethod
    def _locked_head(conn: Connection, head_insert: Any) -> tuple[int, bytes]:
        query = select(audit_head.c.seq, audit_head.c.entry_hash).where(audit_head.c.id == HEAD_ID)
        row = conn.execute(query.with_for_update()).first()
        if row is None:
            conn.execute(
                head_insert.values(id=HEAD_ID, seq=0, entry_hash=GENESIS_HASH).on_conflict_do_nothing()
            )
            row = conn.execute(query.with_for_update()).one()
        return int(row.seq), bytes(row.entry_hash)

    @staticmethod
    def _insert(
        conn: Connection, prepared: Sequence[PreparedEvent], head_seq: int, head_hash: bytes
    ) -> list[AppendReceipt]:
        rows, refs, receipts = event_rows(prepared, head_seq, head_hash)
        conn.execute(audit_events.insert(), rows)
        if refs:
            conn.execute(audit_subject_refs.insert(), refs)
        prev = receipts[-1].entry_hash
        conn.execute(
            audit_head.update()
            .where(audit_head.c.id == HEAD_ID)
            .values(seq=receipts[-1].seq, entry_hash=prev)
        )
        return receipts

    # -- reading --------------------------------------------------------------------------------------

    def size(self) -> int:
        """Number of events (the highest sequence number; they are gapless)."""
        try:
            with self._engine.connect() as conn:
                return int(conn.execute(select(func.coalesce(func.max(audit_events.c.seq), 0))).scalar_one())
        except SQLAlchemyError as exc:
            raise _database_failure(exc) from None

    def iter_leaf_hashes(self, first_seq: int, last_seq: int, chunk: int = 10_000) -> Iterator[bytes]:
        """Leaf hashes of events ``first_seq..last_seq`` in order; a gap raises AuditIntegrityError."""
        return iter_leaf_hashes(self._engine, first_seq, last_seq, chunk)

    def subtree_root(self, start: int, end: int) -> bytes:
        """Merkle root of leaves ``[start, end)`` (0-based leaf index = seq - 1), streamed."""
        acc = merkle.MerkleAccumulator()
        for leaf in self.iter_leaf_hashes(start + 1, end):
            acc.append(leaf)
        return acc.root()

    def root(self, tree_size: int) -> bytes:
        """Merkle root of the first ``tree_size`` events."""
        return self.subtree_root(0, tree_size)

    def inclusion_proof(self, seq: int, tree_size: int) -> list[bytes]:
        """RFC 9162 inclusion proof for event ``seq`` (leaf index ``seq - 1``) in a tree of ``tree_size``."""
        return merkle.inclusion_proof_from(self.subtree_root, seq - 1, tree_size)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 consistency proof between two tree sizes of this log (e.g. two checkpoints)."""
        return merkle.consistency_proof_from(self.subtree_root, old_size, new_size)

    def seqs_for_subjects(self, subject_refs: Iterable[str]) -> list[int]:
        """Sequence numbers of every event touching any of the given resident refs (complaint lookup).

        One indexed query on ``audit_subject_refs`` (its primary key leads with ``subject_ref``); pass
        the refs under every key still kept when the HMAC key has rotated.
        """
        refs = sorted(set(subject_refs))
        if not refs:
            return []
        query = (
            select(audit_subject_refs.c.seq)
            .where(audit_subject_refs.c.subject_ref.in_(refs))
            .distinct()
            .order_by(audit_subject_refs.c.seq)
        )
        try:
            with self._engine.connect() as conn:
                return [int(s) for s in conn.execute(query).scalars()]
        except SQLAlchemyError as exc:
            raise _database_failure(exc) from None

    def read(self, seq: int) -> tuple[AuditEvent, bytes, bytes]:
        """Event ``seq`` with its entry hash and leaf hash (for attaching evidence to an incident)."""
        query = select(audit_events.c.body, audit_events.c.entry_hash, audit_events.c.leaf_hash).where(
            audit_events.c.seq == seq
        )
        try:
            with self._engine.connect() as conn:
                row = conn.execute(query).first()
        except SQLAlchemyError as exc:
            raise _database_failure(exc) from None
        if row is None:
            raise KeyError(seq)
        return AuditEvent.from_body(json.loads(row.body)), bytes(row.entry_hash), bytes(row.leaf_hash)


def event_rows(
    prepared: Sequence[PreparedEvent], head_seq: int = 0, head_hash: bytes = GENESIS_HASH
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[AppendReceipt]]:
    """The ``audit_events`` and ``audit_subject_refs`` rows for events appended after ``head_seq``.

    What :class:`AuditLog` inserts, exposed so a benchmark can insert exactly the same rows raw (its
    peer: no head lock, no chain bookkeeping) at the same durability setting.
    """
    rows: list[dict[str, Any]] = []
    refs: list[dict[str, Any]] = []
    receipts: list[AppendReceipt] = []
    prev = head_hash
    seq = head_seq
    for item in prepared:
        seq += 1
        entry = chain_hash(prev, item.body)
        ev = item.event
        rows.append(
            {
                "seq": seq,
                "occurred_at": ev.occurred_at,
                "kind": ev.kind,
                "outcome": ev.outcome.value,
                "actor": ev.actor,
                "actor_org": ev.actor_org,
                "scenario": ev.scenario,
                "dataset": ev.dataset,
                "body": item.body.decode("utf-8"),
                "prev_hash": prev,
                "entry_hash": entry,
                "leaf_hash": item.leaf_hash,
            }
        )
        refs.extend({"subject_ref": ref, "seq": seq} for ref in dict.fromkeys(ev.subject_refs))
        receipts.append(AppendReceipt(seq=seq, entry_hash=entry))
        prev = entry
    return rows, refs, receipts


def iter_leaf_hashes(engine: Engine, first_seq: int, last_seq: int, chunk: int = 10_000) -> Iterator[bytes]:
    """Stream leaf hashes of ``first_seq..last_seq`` in keyset-paginated chunks (bounded memory).

    Short transactions per chunk: a long-lived reader would stall SQLite WAL checkpoints.
    """
    expected = first_seq
    while expected <= last_seq:
        upper = min(last_seq, expected + chunk - 1)
        query = (
            select(audit_events.c.seq, audit_events.c.leaf_hash)
            .where(audit_events.c.seq >= expected, audit_events.c.seq <= upper)
            .order_by(audit_events.c.seq)
        )
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        for seq, leaf in rows:
            if seq != expected:
                raise AuditIntegrityError(f"audit event {expected} is missing (found {seq})")
            yield bytes(leaf)
            expected += 1
        if expected <= upper:
            raise AuditIntegrityError(f"audit event {expected} is missing")
