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

import functools
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from sqlalchemy import Connection, Engine, event, func, select
from sqlalchemy.exc import SQLAlchemyError

from audit import merkle
from audit.anchor import latest_anchor
from audit.events import AuditEvent, canonical_text_and_time
from audit.tables import WRITER_ROLE, audit_events, audit_subject_refs

logger = logging.getLogger(__name__)

GENESIS_HASH: Final = bytes(32)
CHAIN_DOMAIN: Final = b"grassroots-audit-chain-v1\x00"
SUPPORTED_DIALECTS: Final = frozenset({"sqlite", "postgresql"})
_SQLITE_CONFIGURED: Final = "_grassroots_audit_sqlite_durability"
_WRITER_ROLE_ATTR: Final = "_grassroots_audit_writer_role"
#: Where a pooled SQLite connection notes the database file it opened (its connection record's ``info``).
_SQLITE_FILE: Final = "grassroots_sqlite_file"
_LEAF_PREFIX: Final = b"\x00"  # RFC 6962 §2.1 leaf domain (as audit.merkle.leaf_hash)
_sha256 = hashlib.sha256
# The leaf domain already hashed in: each leaf hash copies this state instead of making a new one.
_LEAF_STATE: Final = hashlib.sha256(_LEAF_PREFIX)
# hashlib lets go of the GIL while it hashes 2048 bytes or more in one call. On the event loop thread
# that invites the audit writer thread to take the GIL for a few microseconds of hashing, and the loop
# then waits for it back; fed in pieces below that size, the hash is the same and the loop keeps it.
_GIL_KEPT_CHUNK: Final = 2047


def _leaf_hash(body: bytes) -> bytes:
    """RFC 6962 §2.1 ``SHA-256(0x00 || body)``, computed without releasing the GIL (see above)."""
    digest = _LEAF_STATE.copy()
    if len(body) <= _GIL_KEPT_CHUNK:
        digest.update(body)
    else:
        view = memoryview(body)
        for start in range(0, len(body), _GIL_KEPT_CHUNK):
            digest.update(view[start : start + _GIL_KEPT_CHUNK])
    return digest.digest()


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


class AppendReceipt(NamedTuple):
    """Proof of a durable append: the event's sequence number and chain hash (one per event appended,
    so a named tuple: cheaper to build than a dataclass)."""

    seq: int
    entry_hash: bytes


_receipt = functools.partial(tuple.__new__, AppendReceipt)


class PreparedEvent(NamedTuple):
    """An event already encoded (RFC 8785), leaf-hashed and laid out as its row, ready for the chain.

    Built by :func:`prepare` on the submitting thread, so the thread holding the database lock only
    chains and inserts. (A named tuple: it is built for every event, and builds faster than a dataclass.)
    """

    event: AuditEvent
    body: bytes
    leaf_hash: bytes
    # kind, outcome, actor, actor_org, scenario, dataset, body text: the row between time and hashes.
    columns: tuple[str | None, ...]
    # The stored form of occurred_at on SQLite (SQLAlchemy's DateTime text), and the distinct refs.
    sqlite_time: str
    subject_refs: tuple[str, ...]


# Built once per event: tuple.__new__ skips the named tuple's Python-level __new__ (same object).
_prepared = functools.partial(tuple.__new__, PreparedEvent)


def sqlite_time_text(when: datetime) -> str:
    """How an (aware, UTC) ``occurred_at`` is stored on SQLite: SQLAlchemy's DateTime text, zero-padded."""
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def prepare(event: AuditEvent) -> PreparedEvent:
    """Canonicalise and leaf-hash ``event``; raises ``ValueError`` for an event JCS cannot encode."""
    if not isinstance(event, AuditEvent):
        raise TypeError("expected an AuditEvent")
    text, stamp = canonical_text_and_time(event)
    body = text.encode("utf-8")
    refs = event.subject_refs
    return _prepared(
        (
            event,
            body,
            _leaf_hash(body),
            (
                event.kind,
                event.outcome._value_,
                event.actor,
                event.actor_org,
                event.scenario,
                event.dataset,
                text,
            ),
            # "2025-06-02T02:00:00.000000Z" -> "2025-06-02 02:00:00.000000", as sqlite_time_text would.
            stamp[:10] + " " + stamp[11:26] if len(stamp) == 27 else sqlite_time_text(event.occurred_at),
            refs if len(refs) < 2 else tuple(dict.fromkeys(refs)),
        )
    )


# The SQLite settings of every connection the log writes through (the bench's raw peer applies this same
# list, so both sides run at the same durability).
SQLITE_PRAGMAS: Final = (
    # WAL + synchronous=FULL: the WAL is fsynced at every commit, so an acknowledged event survives a
    # crash or power cut.
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    # Concurrent appenders (other processes) queue on BEGIN IMMEDIATE instead of failing at once.
    "PRAGMA busy_timeout=10000",
    # The group-commit thread checkpoints the WAL into the database file in its idle moments
    # (GroupCommitAppender, :func:`checkpoint_wal`). This threshold is the backstop for a load that never
    # leaves it idle: SQLite's automatic checkpoint, run inside some caller's commit, every ~64 MiB of WAL
    # (4 KiB pages) rather than SQLite's 4 MiB, as fewer, larger checkpoints copy a page rewritten by
    # many batches once. Checkpoints move data from the WAL into the main file; they do not change when
    # a commit is durable.
    "PRAGMA wal_autocheckpoint=16384",
)

#: How long an append on PostgreSQL waits for a lock (the head row, a table an operator locked) before it
#: is refused (``lock_timeout``), as SQLite's ``busy_timeout`` above: without it a lock held for an hour
#: held every request waiting for its audit event an hour, answered by nothing but the client's timeout.
PG_LOCK_TIMEOUT_MS = 10_000


def _pg_lock_timeout(*, local: bool) -> str:
    return f"SET {'LOCAL ' if local else ''}lock_timeout = {int(PG_LOCK_TIMEOUT_MS)}"


def checkpoint_wal(dbapi_connection: Any) -> tuple[int, int, int]:
    """One PASSIVE WAL checkpoint on a sqlite3 connection: copies what it can into the database file
    without blocking writers or readers. Returns SQLite's (busy, WAL frames, frames checkpointed)."""
    row = dbapi_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(row[0]), int(row[1]), int(row[2])


def _sqlite_durability(dbapi_connection: Any, record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()
    _note_sqlite_file(dbapi_connection, record.info)


class DatabaseFileReplaced(OSError):
    """The SQLite database file a connection opened is no longer the file at its path (removed, or another
    moved over it, e.g. a backup restored under a running gateway): what it commits goes to a file nobody
    will read again, so it commits nothing (:func:`sqlite_file_replaced`)."""


def _file_identity(path: str) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


def _note_sqlite_file(dbapi_connection: Any, info: dict[Any, Any]) -> None:
    """Note which file ``dbapi_connection`` opened (path and device/inode; an empty path: in memory)."""
    rows = dbapi_connection.execute("PRAGMA database_list").fetchall()
    path = next((file for _seq, name, file in rows if name == "main"), "") or ""
    info[_SQLITE_FILE] = (path, _file_identity(path) if path else None)


def sqlite_file_replaced(connection: Any) -> bool:
    """Whether the database file a pooled SQLite ``connection`` opened has since been removed from its path
    or replaced there. Such a connection still reads and writes the old file (an open file outlives its
    name): the events it appends would be lost when the process ends, and served requests with them."""
    info = connection.info
    noted = info.get(_SQLITE_FILE)
    if noted is None:  # opened before the connect hook was installed: the file it has now
        _note_sqlite_file(connection.driver_connection, info)
        return False
    path, identity = noted
    return bool(path) and _file_identity(path) != identity


def configure_sqlite_durability(engine: Engine) -> None:
    """Install the SQLite connect hook (:data:`SQLITE_PRAGMAS`: WAL, ``synchronous=FULL``, busy timeout,
    checkpoint interval). Idempotent.

    Call it right after creating the engine, before the first connection; :class:`AuditLog` calls it
    too and additionally sets ``synchronous=FULL`` at the start of every append transaction.
    """
    if engine.dialect.name != "sqlite" or getattr(engine, _SQLITE_CONFIGURED, False):
        return
    event.listen(engine, "connect", _sqlite_durability)
    setattr(engine, _SQLITE_CONFIGURED, True)


def use_writer_role(engine: Engine, role: str = WRITER_ROLE) -> None:
    """On PostgreSQL, make every :class:`AuditLog` on ``engine`` append with the privileges of ``role``
    (the insert/select-only :data:`audit.tables.WRITER_ROLE`); a no-op on SQLite. Idempotent.

    Issue: "the database itself refuses UPDATE and DELETE on events ... on PostgreSQL also a role that can
    only insert and select". Each append transaction starts with ``SET LOCAL ROLE role`` (sent with the
    head-row lock in one round trip) and, when the caller's writes continue in the same transaction (a
    :class:`TransactionCompanion`, :meth:`AuditLog.append_within`), ends its audit statements with
    ``RESET ROLE``. So the rows are inserted by a role that cannot update, delete or truncate them nor
    drop the triggers, whatever the login role may do otherwise. The login role must be a member of
    ``role`` (migration 0010 grants it to the role that migrates; README: PostgreSQL deployment).
    """
    if engine.dialect.name != "postgresql":
        return
    if not role.replace("_", "").isalnum():
        raise ValueError("role name must be alphanumeric with underscores")
    setattr(engine, _WRITER_ROLE_ATTR, role)


def writer_role(engine: Engine) -> str | None:
    """The role :func:`use_writer_role` set for ``engine`` (None: appends run as the login role)."""
    role = getattr(engine, _WRITER_ROLE_ATTR, None)
    return role if isinstance(role, str) else None


def _database_failure(exc: BaseException) -> AuditUnavailable:
    # Only the class name and SQLSTATE: driver messages can quote parameters (event content).
    orig = getattr(exc, "orig", None) or exc
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "sqlite_errorname", None)
    logger.warning("audit store failure: %s (%s)", type(exc).__name__, sqlstate or "no sqlstate")
    return AuditUnavailable(f"audit store unavailable ({type(exc).__name__})")


EVENT_COLUMNS: Final = (
    "seq",
    "occurred_at",
    "kind",
    "outcome",
    "actor",
    "actor_org",
    "scenario",
    "dataset",
    "body",
    "prev_hash",
    "entry_hash",
    "leaf_hash",
)


@dataclass(frozen=True, slots=True)
class _Statements:
    """The append transaction's SQL, written for sqlite3's qmark paramstyle (``HEAD_ID`` is 1)."""

    head: str = "SELECT seq, entry_hash FROM audit_head WHERE id = 1"
    head_create: str = "INSERT INTO audit_head (id, seq, entry_hash) VALUES (1, 0, ?) ON CONFLICT DO NOTHING"
    events: str = (
        "INSERT INTO audit_events (seq, occurred_at, kind, outcome, actor, actor_org, scenario, dataset, "
        "body, prev_hash, entry_hash, leaf_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    refs: str = "INSERT INTO audit_subject_refs (subject_ref, seq) VALUES (?, ?)"
    head_move: str = "UPDATE audit_head SET seq = ?, entry_hash = ? WHERE id = 1"


def _postgres_statements(sqlite: _Statements) -> _Statements:
    """psycopg's format paramstyle; FOR UPDATE so that concurrent appenders (other processes) queue on
    the head row and seqs never fork (SQLite gets the same from BEGIN IMMEDIATE)."""
    pg = {f.name: getattr(sqlite, f.name).replace("?", "%s") for f in fields(_Statements)}
    return _Statements(**{**pg, "head": pg["head"] + " FOR UPDATE"})


_SQLITE_SQL: Final = _Statements()
_POSTGRES_SQL: Final = _postgres_statements(_SQLITE_SQL)


class AuditLog:
    """Appends events durably to the chained, Merkle-hashed log and reads it back.

    Owns its transactions (durability is its job — see docs/architecture.md); thread-safe, since each
    call takes its own connection from the engine's pool — or, inside :meth:`pinned_connection`, the one
    connection that thread keeps.
    """

    def __init__(self, engine: Engine) -> None:
        if engine.dialect.name not in SUPPORTED_DIALECTS:
            raise ValueError(f"audit log supports {sorted(SUPPORTED_DIALECTS)}, not {engine.dialect.name}")
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._sql = _SQLITE_SQL if self._sqlite else _POSTGRES_SQL
        self._driver_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        self._pinned = threading.local()
        self._role = writer_role(engine)
        # Role switch and head lock in one simple-protocol round trip (no parameters, so psycopg may send
        # both statements at once); the role name was validated by use_writer_role.
        self._head_as_writer = f"SET LOCAL ROLE {self._role}; {self._sql.head}" if self._role else ""
        self._set_writer_role = f"SET LOCAL ROLE {self._role}" if self._role else ""
        # On PostgreSQL an append is sent as a libpq pipeline (psycopg ``Connection.pipeline``): BEGIN,
        # the role switch and the head lock go out together, then every insert, the head move and the
        # COMMIT, so a batch waits for the server twice instead of once per statement (a companion's
        # writes, which read what they wrote, follow the pipeline with the commit).
        pipeline = getattr(engine.dialect.loaded_dbapi, "Pipeline", None)
        self._pipelined = not self._sqlite and pipeline is not None and bool(pipeline.is_supported())
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

    @contextmanager
    def pinned_connection(self) -> Iterator[None]:
        """Within this block, the calling thread's appends reuse one connection instead of the pool's.

        For the group-commit thread, which appends batch after batch: checking a connection out and in
        (with its reset) and re-asserting durability for every transaction cost a few percent of each
        batch (and, on PostgreSQL, a round trip). The connection is taken at the first append and set
        up once — ``synchronous=FULL`` / ``synchronous_commit=on`` for its whole session, safe because
        nobody else can use it meanwhile. After any failure it is discarded and the next append takes a
        fresh one, so one broken connection fails one batch, not every later one. Other threads are
        unaffected. Not reentrant.
        """
        state = self._pinned
        if getattr(state, "active", False):
            raise RuntimeError("pinned_connection is not reentrant")
        state.active, state.raw = True, None
        try:
            yield
        finally:
            raw, state.active, state.raw = state.raw, False, None
            if raw is not None:
                raw.close()

    def checkpoint_wal(self) -> tuple[int, int, int] | None:
        """On SQLite, one background-safe PASSIVE checkpoint of the WAL (:func:`checkpoint_wal`);
        None on other databases."""
        if not self._sqlite:
            return None
        state = self._pinned
        if getattr(state, "active", False) and state.raw is not None:
            return checkpoint_wal(state.raw.driver_connection)  # this thread's own connection
        raw = self._engine.raw_connection()
        try:
            return checkpoint_wal(raw.driver_connection)
        finally:
            raw.close()

    @property
    def dialect(self) -> str:
        """The database's SQLAlchemy dialect name ("sqlite" or "postgresql")."""
        return str(self._engine.dialect.name)

    def append_prepared(
        self, prepared: Sequence[PreparedEvent], within: Callable[[Any], object] | None = None
    ) -> list[AppendReceipt]:
        """Append already-encoded events in one transaction (used by the group-commit appender).

        Straight on the driver connection (sqlite3 / psycopg ``executemany``): per batch this is the
        same work a hand-written insert does, plus reading and moving the head row. ``within``, if given,
        is called with the driver cursor after the events are written and before the commit: its writes
        commit with the events or, if it raises, none of them do.
        """
        if not prepared:
            return []
        state = self._pinned
        pinned = getattr(state, "active", False)
        raw = state.raw if pinned else None
        fresh = raw is None
        try:
            if raw is None:
                raw = self._engine.raw_connection()
        except (SQLAlchemyError, self._driver_error) as exc:  # a refused connect comes unwrapped
            raise _database_failure(exc) from None
        try:
            cursor = raw.cursor()
            try:
                committed = False
                if pinned and fresh:
                    self._pin_durability(raw, cursor)
                if self._sqlite:
                    # BEGIN IMMEDIATE takes the write lock up front, so two appenders never read the same
                    # head (no chain fork). Unpinned, synchronous=FULL again per transaction: the pool may
                    # hold connections opened before the connect hook was installed.
                    if not pinned:
                        cursor.execute("PRAGMA synchronous=FULL")
                    cursor.execute("BEGIN IMMEDIATE")
                    if sqlite_file_replaced(raw):
                        raise DatabaseFileReplaced("the database file was removed or replaced")
                    receipts = self._write(cursor, prepared)
                elif self._pipelined:
                    # Reading the head syncs the pipeline once; the inserts, the head move and (without a
                    # companion) the COMMIT then go out together, and commit() waits for every answer up
                    # to the COMMIT's own (after the WAL flush): an error in any statement raises there,
                    # and nothing is committed.
                    driver: Any = raw.driver_connection
                    with driver.pipeline():
                        if not pinned:
                            cursor.execute("SET LOCAL synchronous_commit = on")
                            cursor.execute(_pg_lock_timeout(local=True))
                        receipts = self._write(cursor, prepared, pipelined=True)
                        if within is not None:
                            self._leave_writer_role(cursor)
                        else:
                            driver.commit()
                            committed = True
                else:
                    if not pinned:
                        cursor.execute("SET LOCAL synchronous_commit = on")
                        cursor.execute(_pg_lock_timeout(local=True))
                    receipts = self._write(cursor, prepared)
                    if within is not None:
                        self._leave_writer_role(cursor)
                if within is not None:
                    within(cursor)
                if self._sqlite:
                    cursor.execute("COMMIT")
                elif not committed:
                    raw.commit()
            except BaseException:
                try:
                    raw.rollback()
                except self._driver_error:
                    logger.warning("audit rollback failed; the connection is discarded")
                    raw.invalidate()
                raise
            finally:
                cursor.close()
        except (self._driver_error, SQLAlchemyError, OSError) as exc:
            if isinstance(exc, DatabaseFileReplaced):
                # Every pooled connection holds the old file: all are dropped, the next ones open the
                # file now at the path (or, with none there, fail: nothing is appended).
                logger.error(
                    "the SQLite database file was removed or replaced under the running gateway; "
                    "nothing was appended to the old one, its connections are reopened"
                )
                self._engine.dispose()
            if pinned:
                # The session may be gone (server restart, network): never hand it out again; the next
                # batch takes a fresh connection.
                state.raw = None
                if raw.is_valid:  # not already invalidated by a failed rollback
                    raw.invalidate()
            raw.close()
            raise _database_failure(exc) from None
        except BaseException:
            if pinned:
                state.raw = None
            raw.close()
            raise
        if pinned:
            state.raw = raw
        else:
            raw.close()
        return receipts

    def _pin_durability(self, raw: Any, cursor: Any) -> None:
        """Session-wide durability on a connection this thread keeps (see :meth:`pinned_connection`)."""
        if self._sqlite:
            cursor.execute("PRAGMA synchronous=FULL")
        else:
            cursor.execute("SET synchronous_commit = on")
            cursor.execute(_pg_lock_timeout(local=False))
            raw.commit()

    def append_within(self, conn: Connection, events: Iterable[AuditEvent]) -> list[AppendReceipt]:
        """Append in the caller's open transaction; the caller commits (or rolls back) both together.

        For administrative changes: the change and its processing record (PIPL Art. 56) become durable in
        one commit, or neither does. On SQLite the caller's transaction should hold the write lock from the
        start (``BEGIN IMMEDIATE``), so that it never has to upgrade a read lock under contention.
        """
        prepared = [prepare(e) for e in events]
        if not prepared:
            return []
        if self._sqlite and sqlite_file_replaced(conn.connection):
            # The caller's change would commit into the old file with its event: neither is written (the
            # caller rolls back; its connection, returned, is not handed out again).
            self._engine.dispose()
            raise _database_failure(DatabaseFileReplaced("the database file was removed or replaced"))
        try:
            # The caller's driver connection, so the rows join the caller's transaction.
            cursor = conn.connection.cursor()
            try:
                if not self._sqlite:
                    cursor.execute(_pg_lock_timeout(local=True))
                receipts = self._write(cursor, prepared)
                self._leave_writer_role(cursor)
                return receipts
            finally:
                cursor.close()
        except (self._driver_error, SQLAlchemyError) as exc:
            raise _database_failure(exc) from None

    def _write(
        self, cursor: Any, prepared: Sequence[PreparedEvent], *, pipelined: bool = False
    ) -> list[AppendReceipt]:
        """Lock the head, insert the chained rows and move the head, inside the cursor's transaction;
        with a writer role (:func:`use_writer_role`), as that role until the transaction ends or
        :meth:`_leave_writer_role`. ``pipelined``: the cursor's connection is in pipeline mode, where
        one statement per call is the rule (the role switch is queued on its own, at no extra cost)."""
        sql = self._sql
        if self._role is None:
            row = _fetchone(cursor, sql.head)
        elif pipelined:
            cursor.execute(self._set_writer_role)
            row = _fetchone(cursor, sql.head)
        else:
            cursor.execute(self._head_as_writer)
            cursor.nextset()  # past SET's empty result, to the head row's
            row = cursor.fetchone()
        if row is None:
            cursor.execute(sql.head_create, (GENESIS_HASH,))
            row = _fetchone(cursor, sql.head)
        head_seq, head_hash = int(row[0]), bytes(row[1])
        rows, refs, receipts = chained_rows(prepared, head_seq, head_hash, sqlite=self._sqlite)
        cursor.executemany(sql.events, rows)
        if refs:
            cursor.executemany(sql.refs, refs)
        cursor.execute(sql.head_move, (receipts[-1].seq, receipts[-1].entry_hash))
        return receipts

    def _leave_writer_role(self, cursor: Any) -> None:
        """Back to the login role for the rest of the transaction (the caller's or a companion's writes,
        which the writer role may not make). Only then: a transaction that ends with the audit rows drops
        ``SET LOCAL`` at its commit, one round trip fewer."""
        if self._role is not None:
            cursor.execute("RESET ROLE")

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
        """Merkle root of leaves ``[start, end)`` (0-based leaf index = seq - 1), streamed.

        On a pruned log, ranges reaching into the pruned prefix come from the prune anchor's frontier
        (:mod:`audit.anchor`); one it cannot answer raises :class:`audit.merkle.PrunedRangeError`.
        """

        def kept(low: int, high: int) -> bytes:
            acc = merkle.MerkleAccumulator()
            for leaf in self.iter_leaf_hashes(low + 1, high):
                acc.append(leaf)
            return acc.root()

        anchor = latest_anchor(self._engine) if start < end else None
        return kept(start, end) if anchor is None else anchor.subtree_root(kept)(start, end)

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


def chained_rows(
    prepared: Sequence[PreparedEvent],
    head_seq: int = 0,
    head_hash: bytes = GENESIS_HASH,
    *,
    sqlite: bool = True,
) -> tuple[list[tuple[Any, ...]], list[tuple[str, int]], list[AppendReceipt]]:
    """The ``audit_events`` rows (in :data:`EVENT_COLUMNS` order) and ``audit_subject_refs`` rows for
    events appended after ``head_seq``, with their receipts. Only the chain is computed here: it is the
    one sequential step, done under the head lock."""
    rows: list[tuple[Any, ...]] = []
    refs: list[tuple[str, int]] = []
    receipts: list[AppendReceipt] = []
    prev = head_hash
    seq = head_seq
    sha256 = _sha256
    domain = CHAIN_DOMAIN
    add_row, add_ref, add_receipt = rows.append, refs.append, receipts.append
    for item in prepared:
        seq += 1
        entry = sha256(domain + prev + item.body).digest()
        when = item.sqlite_time if sqlite else item.event.occurred_at
        add_row((seq, when, *item.columns, prev, entry, item.leaf_hash))
        for ref in item.subject_refs:
            add_ref((ref, seq))
        add_receipt(_receipt((seq, entry)))
        prev = entry
    return rows, refs, receipts


def _fetchone(cursor: Any, statement: str) -> Any:
    cursor.execute(statement)
    return cursor.fetchone()


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
