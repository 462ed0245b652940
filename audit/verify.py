"""Whole-log verification: chain, leaves, index copies, head and the latest signed checkpoint.

Walks the log in sequence order in bounded chunks and stops at the first problem, reporting what was
expected and what was found (sigstore style). What each check catches:

* a gap in ``seq`` — a deleted event (``missing_event``);
* ``prev_hash`` not the previous ``entry_hash`` — reordered or inserted events (``prev_hash_mismatch``);
* ``entry_hash``/``leaf_hash`` not derived from the body — an edited body or hash
  (``entry_hash_mismatch``, ``leaf_hash_mismatch``; RFC 6962 §2.1 leaf hashing);
* a query column or the subject-ref index disagreeing with the body — an edited copy that would hide an
  access from a supervisor or a complaint lookup (``column_mismatch``, ``subject_refs_mismatch``);
* the head row disagreeing with the last event — a silently truncated or extended tail (``head_mismatch``,
  ``event_beyond_head``);
* the Merkle root of the first ``tree_size`` events differing from the signed checkpoint, or fewer events
  than it covers — a rewritten history, a truncated tail, or a database restored from an older snapshot
  (``checkpoint_root_mismatch``, ``log_shorter_than_checkpoint``).

A pruned log (:mod:`audit.prune`) starts after a signed prefix anchor (:mod:`audit.anchor`). Then the
anchor's signature is checked (``anchor_invalid``), its copy in the checkpoint directory must be present
and identical (``anchor_not_external``), the first remaining event must link to the anchor's chain hash
(``anchor_chain_mismatch``), and the Merkle accumulator resumes from the anchor's frontier, so every
checkpoint of size ``>= N`` — the one signed just before pruning (embedded in the anchor) and every one in
the directory — must be reproduced from frontier + remaining events (``checkpoint_root_mismatch``): a
forged frontier, or events deleted after the anchor, cannot pass. A checkpoint of size ``< N`` is checked
against the frontier when its root is a run of frontier nodes, and otherwise reported as covered by the
archives (``notes``): those checkpoints are verified against the archive files (``audit archive-verify``),
which hold the pruned leaves. Events missing at the start without an anchor are ``missing_event``.

It refuses to pass on nothing: an empty log passes only when no checkpoint says it had events.
"""

from __future__ import annotations

import hashlib
import json
import json.scanner
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from audit import checkpoints, merkle
from audit.anchor import AnchorError, PruneAnchor, anchor_file_glob, latest_anchor
from audit.checkpoints import (
    Checkpoint,
    CheckpointError,
    key_id_for,
    latest_checkpoint,
    list_checkpoints,
    verify_checkpoint,
)
from audit.events import parse_timestamp
from audit.log import CHAIN_DOMAIN, GENESIS_HASH, AuditUnavailable, chain_hash
from audit.tables import HEAD_ID, audit_events, audit_head, audit_subject_refs

DEFAULT_CHUNK: Final = 5_000
_SQLITE_DATETIME: Final = "%Y-%m-%d %H:%M:%S.%f"
_TEXT_COLUMNS: Final = ("kind", "outcome", "actor", "actor_org", "scenario", "dataset")


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """Outcome of :func:`verify_log`. ``problem`` is a stable code; ``expected``/``found`` say why."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None
    expected: str | None = None
    found: str | None = None
    checkpoint: Checkpoint | None = None
    anchor: PruneAnchor | None = None
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for a terminal: what passed, or the first bad entry and why."""
        covered = f"; checkpoint covers {self.checkpoint.tree_size}" if self.checkpoint else "; no checkpoint"
        if self.anchor is not None:
            covered += f"; events 1..{self.anchor.pruned_through} pruned behind a signed anchor"
        if self.ok:
            return f"audit log intact: {self.checked} events verified{covered}"
        where = f"event {self.first_bad_seq}" if self.first_bad_seq is not None else "log"
        return (
            f"audit log FAILED at {where}: {self.problem} (expected {self.expected}, found {self.found}); "
            f"{self.checked} events verified before it{covered}"
        )


class _VerificationFailedError(Exception):
    def __init__(self, seq: int | None, problem: str, expected: object, found: object) -> None:
        super().__init__(problem)
        self.seq = seq
        self.problem = problem
        self.expected = None if expected is None else str(expected)
        self.found = None if found is None else str(found)


def _stored_time_matches(stored: object, when: datetime) -> bool:
    if isinstance(stored, str):
        # SQLite: the exact text SQLAlchemy writes for a UTC instant. Compared as text, not parsed:
        # fromisoformat would accept e.g. any separator, letting a changed byte pass.
        return stored == when.astimezone(UTC).strftime(_SQLITE_DATETIME)
    if isinstance(stored, datetime) and stored.tzinfo is not None:
        return stored == when
    return False


def _hexed(value: object) -> str:
    return value.hex() if isinstance(value, bytes | bytearray | memoryview) else repr(type(value).__name__)


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError("hash column is not binary")


def _time_matches_fast(stored: object, stamp: str, from_iso: Callable[[str], datetime]) -> bool:
    if type(stored) is str:
        # What _stored_time_matches would accept, for the canonical stamp: "…-DDTHH:…ffffffZ" stored
        # as "…-DD HH:…ffffff". Anything else (including a stamp fromisoformat rejects) takes the
        # slow path, which decides.
        return (
            len(stamp) == 27
            and stamp[26] == "Z"
            and stored == stamp[:10] + " " + stamp[11:26]
            and from_iso(stamp).year >= 1000
        )
    return _stored_time_matches(stored, parse_timestamp(stamp))


_SCAN: Final[Callable[[str, int], tuple[Any, int]]] = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


class _Walker:
    def __init__(self, stops: dict[int, list[bytes]], anchor: PruneAnchor | None = None) -> None:
        # Signed roots to reproduce, by tree size (several checkpoints may share one).
        self.stops = stops
        self.anchor_seq = 0 if anchor is None else anchor.pruned_through
        self.prev = GENESIS_HASH if anchor is None else anchor.entry_hash
        self.acc = merkle.MerkleAccumulator() if anchor is None else anchor.resume()
        self.checked = self.anchor_seq

    def check_rows(self, rows: list[Any], refs: dict[int, set[str]]) -> None:
        """Check a chunk of stored rows in order: the common, intact case in one tight loop; any row it
        is not sure of goes through :meth:`check_row`, which reports exactly what is wrong.

        The fast path passes a row only when every check of :meth:`check_row` would: the same hashes
        and column comparisons, and on SQLite the stored time equal to the body's canonical stamp
        (``YYYY-MM-DDTHH:MM:SS.ffffffZ``, year 1000 or later) rewritten as SQLAlchemy stores it.
        """
        sha256 = hashlib.sha256
        # The decoder's scanner straight: one JSON value filling the whole text (stricter than
        # json.loads, which also allows surrounding whitespace; such a row takes the slow path).
        scan = _SCAN
        from_iso = datetime.fromisoformat
        domain = CHAIN_DOMAIN
        leaf_prefix = b"\x00"
        no_refs: set[str] = set()
        stops = self.stops
        acc = self.acc
        for row in rows:
            seq, stored_at, kind, outcome, actor, org, scenario, dataset, text, prev_hash, entry, leaf = row
            indexed = refs.get(seq, no_refs)
            expected = self.checked + 1
            try:
                body = text.encode("utf-8")
                digest = sha256(domain + prev_hash + body).digest()
                leaf_digest = sha256(leaf_prefix + body).digest()
                doc, end = scan(text, 0)
                stamp = doc["occurred_at"]
                intact = (
                    seq == expected
                    and end == len(text)
                    and type(prev_hash) is bytes
                    and prev_hash == self.prev
                    and digest == entry
                    and leaf_digest == leaf
                    and doc["kind"] == kind
                    and doc["outcome"] == outcome
                    and doc["actor"] == actor
                    and doc["actor_org"] == org
                    and doc["scenario"] == scenario
                    and doc["dataset"] == dataset
                    and set(doc["subject_refs"]) == indexed
                    and type(stamp) is str
                    and _time_matches_fast(stored_at, stamp, from_iso)
                )
            except (TypeError, ValueError, KeyError, AttributeError, UnicodeError, StopIteration):
                intact = False
            if not intact or expected in stops:
                self.check_row(_StoredRow(*row), indexed)
                continue
            acc.append(leaf_digest)
            self.prev = digest
            self.checked = expected

    def check_row(self, row: Any, refs: set[str]) -> None:
        seq = self.checked + 1
        if row.seq != seq:
            raise _VerificationFailedError(seq, "missing_event", f"seq {seq}", f"seq {row.seq}")
        try:
            self._check_contents(seq, row, refs)
        except _VerificationFailedError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError, UnicodeError) as exc:
            raise _VerificationFailedError(
                seq, "row_malformed", "a well-formed row", type(exc).__name__
            ) from None
        self.checked = seq

    def _check_contents(self, seq: int, row: Any, refs: set[str]) -> None:
        if not isinstance(row.body, str):
            raise TypeError("body is not text")
        body = row.body.encode("utf-8")
        prev_hash = _as_bytes(row.prev_hash)
        if prev_hash != self.prev:
            problem = "anchor_chain_mismatch" if seq == self.anchor_seq + 1 > 1 else "prev_hash_mismatch"
            raise _VerificationFailedError(seq, problem, self.prev.hex(), prev_hash.hex())
        entry = chain_hash(self.prev, body)
        if entry != row.entry_hash:
            raise _VerificationFailedError(seq, "entry_hash_mismatch", entry.hex(), _hexed(row.entry_hash))
        leaf = merkle.leaf_hash(body)
        if leaf != row.leaf_hash:
            raise _VerificationFailedError(seq, "leaf_hash_mismatch", leaf.hex(), _hexed(row.leaf_hash))
        doc = json.loads(body)
        for column in _TEXT_COLUMNS:
            stored = getattr(row, column)
            if stored != doc[column]:
                raise _VerificationFailedError(
                    seq, "column_mismatch", f"{column}={doc[column]!r}", f"{column}={stored!r}"
                )
        when = parse_timestamp(doc["occurred_at"])
        if not _stored_time_matches(row.occurred_at, when):
            raise _VerificationFailedError(
                seq, "column_mismatch", f"occurred_at={when.isoformat()}", f"occurred_at={row.occurred_at}"
            )
        wanted = set(doc["subject_refs"])
        if refs != wanted:
            raise _VerificationFailedError(
                seq, "subject_refs_mismatch", f"{len(wanted)} subject refs", f"{len(refs)} indexed"
            )
        self.acc.append(leaf)
        self.prev = entry
        signed = self.stops.get(self.acc.size)
        if signed:
            root = self.acc.root()
            for expected_root in signed:
                if root != expected_root:
                    raise _VerificationFailedError(
                        seq, "checkpoint_root_mismatch", expected_root.hex(), root.hex()
                    )


class _StoredRow(NamedTuple):
    """One ``audit_events`` row as the driver returns it (on SQLite ``occurred_at`` is the raw text, so
    a corrupted timestamp is reported, not raised by a type converter)."""

    seq: Any
    occurred_at: Any
    kind: Any
    outcome: Any
    actor: Any
    actor_org: Any
    scenario: Any
    dataset: Any
    body: Any
    prev_hash: Any
    entry_hash: Any
    leaf_hash: Any


_EVENTS_SQL: Final = (
    "SELECT seq, occurred_at, kind, outcome, actor, actor_org, scenario, dataset, body, prev_hash, "
    "entry_hash, leaf_hash FROM audit_events WHERE seq BETWEEN ? AND ? ORDER BY seq"
)
_REFS_SQL: Final = "SELECT seq, subject_ref FROM audit_subject_refs WHERE seq BETWEEN ? AND ?"


def _fetch_chunk(engine: Engine, low: int, high: int) -> tuple[list[Any], dict[int, set[str]]]:
    """Events ``low..high`` and their indexed refs, read with a plain driver cursor in one short
    transaction (a long-lived reader would stall SQLite WAL checkpoints)."""
    events, refs = _EVENTS_SQL, _REFS_SQL
    if engine.dialect.name != "sqlite":
        events, refs = events.replace("?", "%s"), refs.replace("?", "%s")
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        try:
            cursor.execute(events, (low, high))
            rows = list(cursor.fetchall())
            cursor.execute(refs, (low, high))
            by_seq: dict[int, set[str]] = {}
            for seq, ref in cursor.fetchall():
                found = by_seq.get(seq)
                if found is None:
                    by_seq[seq] = {ref}
                else:
                    found.add(ref)
        finally:
            cursor.close()
    finally:
        raw.close()  # back to the pool, which ends the read transaction
    return rows, by_seq


def _first_unreadable(engine: Engine, low: int, high: int) -> int:
    """Find the row a driver could not decode (e.g. invalid UTF-8 written behind our back)."""
    errors = (SQLAlchemyError, engine.dialect.loaded_dbapi.Error)
    for seq in range(low, high + 1):
        try:
            _fetch_chunk(engine, seq, seq)
        except errors:
            return seq
    return low


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _anchor_checks(
    engine: Engine,
    checkpoint_dir: Path | None,
    key: Ed25519PublicKey | None,
    latest: Checkpoint | None,
) -> tuple[PruneAnchor | None, dict[int, list[bytes]], list[str]]:
    """The stored anchor (verified), the signed roots the walk must reproduce, and notes.

    Raises :class:`_VerificationFailedError` for an anchor that cannot be trusted.
    """
    try:
        anchor = latest_anchor(engine)
    except AnchorError as exc:
        raise _VerificationFailedError(
            None, "anchor_invalid", "a well-formed prune anchor", str(exc)
        ) from None
    stops: dict[int, list[bytes]] = {}
    if anchor is None:
        if latest is not None and latest.tree_size > 0:
            stops[latest.tree_size] = [latest.root_hash]
        return None, stops, []
    cut = anchor.pruned_through
    if key is None:
        raise _VerificationFailedError(
            cut + 1, "anchor_invalid", "the checkpoint public key to check the anchor", "no key given"
        )
    try:
        anchor.check_signature(key, key_id_for(key))
        embedded = Checkpoint.from_json(
            {**anchor.checkpoint, "origin": checkpoints.ORIGIN, "v": checkpoints.FORMAT_VERSION}
        )
        verify_checkpoint(embedded, key)
    except (AnchorError, CheckpointError) as exc:
        raise _VerificationFailedError(cut + 1, "anchor_invalid", "a signed prune anchor", str(exc)) from None
    if embedded.tree_size < cut:
        raise _VerificationFailedError(
            cut + 1, "anchor_invalid", f"a pre-prune checkpoint of at least {cut}", embedded.tree_size
        )
    signed = [embedded]
    if checkpoint_dir is not None:
        document = anchor.document()
        copies = sorted(Path(checkpoint_dir).glob(anchor_file_glob(cut)))
        if not any(_read_or_none(path) == document for path in copies):
            raise _VerificationFailedError(
                cut + 1,
                "anchor_not_external",
                f"{anchor_file_glob(cut)} identical to the stored anchor",
                "a different file" if copies else "missing",
            )
        try:
            signed += list_checkpoints(checkpoint_dir, key)
        except CheckpointError as exc:
            raise _VerificationFailedError(
                None, "checkpoint_invalid", "verifiable checkpoints", str(exc)
            ) from None
    notes: list[str] = []

    def pruned_leaves(start: int, end: int) -> bytes:
        raise merkle.PrunedRangeError(f"leaves [{start}, {end}) are pruned")

    prefix_root = anchor.subtree_root(pruned_leaves)
    covered = 0
    for cp in signed:
        if cp.tree_size > cut:
            stops.setdefault(cp.tree_size, [])
            if cp.root_hash not in stops[cp.tree_size]:
                stops[cp.tree_size].append(cp.root_hash)
            continue
        try:
            root = prefix_root(0, cp.tree_size) if cp.tree_size else merkle.EMPTY_ROOT
        except merkle.PrunedRangeError:
            covered += 1
            continue
        if root != cp.root_hash:
            raise _VerificationFailedError(
                cut, "checkpoint_root_mismatch", cp.root_hash.hex(), f"anchor frontier gives {root.hex()}"
            )
    if covered:
        notes.append(
            f"{covered} checkpoint(s) older than the anchor are covered by the archives "
            "(check them with the archive files)"
        )
    return anchor, stops, notes


def verify_log(
    engine: Engine,
    checkpoint_dir: Path | None = None,
    public_key: Ed25519PublicKey | None = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    chunk: int = DEFAULT_CHUNK,
    anchor_key: Ed25519PublicKey | None = None,
) -> VerificationReport:
    """Verify the whole log (and, given ``checkpoint_dir`` + ``public_key``, the latest checkpoint).

    On a pruned log the prune anchor is checked with ``anchor_key`` (default: ``public_key``) and every
    checkpoint in the directory is checked against anchor frontier + remaining events.
    ``progress(checked, total)`` is called after every chunk. Raises :class:`AuditUnavailable` when the
    database cannot be read at all (that is not evidence of tampering); every integrity problem is
    reported in the returned :class:`VerificationReport`, never raised.
    """
    if (checkpoint_dir is None) != (public_key is None):
        raise ValueError("checkpoint_dir and public_key go together")
    checkpoint: Checkpoint | None = None
    if checkpoint_dir is not None and public_key is not None:
        try:
            checkpoint = latest_checkpoint(checkpoint_dir, public_key)
        except CheckpointError as exc:
            return VerificationReport(
                False, 0, None, "checkpoint_invalid", "a verifiable checkpoint", str(exc)
            )

    try:
        with engine.connect() as conn:
            # max(seq) first, head second: an append in between can only make the head larger.
            max_seq = int(conn.execute(select(func.coalesce(func.max(audit_events.c.seq), 0))).scalar_one())
            head = conn.execute(
                select(audit_head.c.seq, audit_head.c.entry_hash).where(audit_head.c.id == HEAD_ID)
            ).first()
        anchor, stops, notes = _anchor_checks(engine, checkpoint_dir, anchor_key or public_key, checkpoint)
    except SQLAlchemyError as exc:
        raise AuditUnavailable(f"audit store unreadable ({type(exc).__name__})") from None
    except _VerificationFailedError as failure:
        return VerificationReport(
            False, 0, failure.seq, failure.problem, failure.expected, failure.found, checkpoint
        )
    head_seq = int(head.seq) if head is not None else 0
    head_hash = bytes(head.entry_hash) if head is not None else GENESIS_HASH

    read_errors = (SQLAlchemyError, engine.dialect.loaded_dbapi.Error)
    walker = _Walker(stops, anchor)
    # Walk every stored event, even past the head, so the earliest problem is the one reported.
    total = max(max_seq, head_seq)
    try:
        low = walker.checked + 1
        while low <= total:
            high = min(total, low + chunk - 1)
            try:
                rows, refs = _fetch_chunk(engine, low, high)
            except read_errors:
                bad = _first_unreadable(engine, low, high)
                raise _VerificationFailedError(
                    bad, "row_malformed", "a readable row", "undecodable stored value"
                ) from None
            walker.check_rows(rows, refs)
            if walker.checked < high:
                raise _VerificationFailedError(
                    walker.checked + 1, "missing_event", f"seq {walker.checked + 1}", "no row"
                )
            if progress is not None:
                progress(walker.checked, total)
            low = high + 1
        if head_seq < walker.checked:
            raise _VerificationFailedError(
                head_seq + 1, "event_beyond_head", f"last event {head_seq}", f"event {walker.checked}"
            )
        if walker.prev != head_hash:
            raise _VerificationFailedError(
                head_seq or None, "head_mismatch", walker.prev.hex(), head_hash.hex()
            )
        longest = max(stops, default=0)
        if longest > head_seq:
            raise _VerificationFailedError(
                head_seq + 1,
                "log_shorter_than_checkpoint",
                f"at least {longest} events",
                f"{head_seq} events",
            )
        if checkpoint is not None and checkpoint.tree_size == 0 and checkpoint.root_hash != merkle.EMPTY_ROOT:
            raise _VerificationFailedError(
                None, "checkpoint_root_mismatch", merkle.EMPTY_ROOT.hex(), checkpoint.root_hash.hex()
            )
        with engine.connect() as conn:
            orphans = conn.execute(
                select(func.count())
                .select_from(audit_subject_refs)
                .where(
                    (audit_subject_refs.c.seq > head_seq) | (audit_subject_refs.c.seq <= walker.anchor_seq)
                )
            ).scalar_one()
        if orphans:
            raise _VerificationFailedError(
                head_seq + 1, "subject_refs_mismatch", "no refs outside the kept events", f"{orphans}"
            )
    except _VerificationFailedError as failure:
        return VerificationReport(
            False,
            walker.checked,
            failure.seq,
            failure.problem,
            failure.expected,
            failure.found,
            checkpoint,
            anchor,
            tuple(notes),
        )
    except read_errors as exc:
        raise AuditUnavailable(f"audit store unreadable ({type(exc).__name__})") from None
    return VerificationReport(True, walker.checked, checkpoint=checkpoint, anchor=anchor, notes=tuple(notes))
