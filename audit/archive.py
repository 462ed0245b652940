"""Retention and monthly archives: signed, self-verifying files of a month's events.

PIPL Art. 56 asks that processing records be kept at least three years; the retention period is
configurable (default 3 years). Months are archived as two files in an archive directory:

* ``audit-<YYYY-MM>-<first>-<last>.jsonl.gz`` — one JSON line per event: seq, RFC 8785 body,
  ``prev_hash``, ``entry_hash``, ``leaf_hash`` (hex);
* ``….manifest.json`` — month, seq range, the chain hashes at both ends, the Merkle root of the range,
  the log's tree size and root at archiving time, the SHA-256 of the events file, signed with the
  checkpoint key (Ed25519; origin ``grassroots-audit-archive`` so it can never pass for a checkpoint).

:func:`verify_archive` re-derives every leaf and chain link from the bodies, the range root and the
file digest, checks the signature, and — given the live database — that the log still holds exactly
those events (or, once they are pruned, that a signed prefix anchor relies on this very archive). The
check streams the files; nothing is loaded whole.

Archived months past the retention period can then be pruned from the database behind a signed prefix
anchor (:mod:`audit.prune`, :mod:`audit.anchor`): the archive becomes the only copy of those events, so
an archive is verified again, file by file, right before its events are deleted.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol, TypeVar

from cryptography.exceptions import InvalidSignature
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from audit import merkle
from audit.anchor import AnchorError, latest_anchor, pruned_through
from audit.canonical import canonical_json
from audit.checkpoints import Checkpoint, CheckpointError, CheckpointSigner, KeyChain, check_in_office
from audit.events import format_timestamp, parse_timestamp
from audit.log import GENESIS_HASH, chain_hash, iter_leaf_hashes
from audit.query import CHINA_STANDARD_TIME, beijing_month, month_bounds, stored_utc
from audit.tables import ArchiveRow, audit_archives, audit_events
from grassroots_common.files import fsync_directory

ARCHIVE_ORIGIN: Final = "grassroots-audit-archive"
FORMAT_VERSION: Final = 1
DEFAULT_RETENTION_YEARS: Final = 3
_CHUNK: Final = 5_000
_SAFE_NAME = re.compile(r"audit-\d{4}-\d{2}-\d+-\d+(-partial)?")
# The archives' own records: each archive call logs one into the log (usually into the very month it
# archives, while that month runs). Such a record alone is not news that calls for a new partial archive.
ARCHIVE_BOOKKEEPING_KINDS: Final = frozenset({"supervision.month_archived"})


class ArchiveError(Exception):
    """An archive cannot be written (the message says why; ``message_zh`` says it in Chinese)."""

    def __init__(self, message_en: str, message_zh: str | None = None) -> None:
        super().__init__(message_en)
        self.message_en = message_en
        self.message_zh = message_zh or message_en


@dataclass(frozen=True, slots=True)
class ArchiveResult:
    month: str
    first_seq: int
    last_seq: int
    count: int
    range_root: str
    events_file: Path
    manifest_file: Path
    file_sha256: str
    key_id: str
    complete: bool = True  # False: made before the month ended (never used for pruning)
    # True: the files were already in place, written by a run interrupted before it could index them
    recovered: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            **({"recovered": True} if self.recovered else {}),
            "month": self.month,
            "complete": self.complete,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "count": self.count,
            "range_root": self.range_root,
            "events_file": self.events_file.name,
            "manifest_file": self.manifest_file.name,
            "file_sha256": self.file_sha256,
            "key_id": self.key_id,
        }


@dataclass(frozen=True, slots=True)
class ArchiveVerification:
    """Outcome of :func:`verify_archive`: ``problem`` in English, ``problem_zh`` the same in Chinese."""

    ok: bool
    checked: int
    problem: str | None = None
    # False: a file could not be read at all (missing, no permission): nothing was verified, which is
    # not the same as a file that was read and does not verify.
    readable: bool = True
    unreadable_file: str | None = None
    problem_zh: str | None = None
    # The restore record whose accepted restore gave up events of this archive: not compared with the live
    # log, and not a sign of tampering.
    given_up_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "problem": self.problem,
            "problem_zh": self.problem_zh,
            "readable": self.readable,
            **({"given_up_by": self.given_up_by} if self.given_up_by else {}),
        }


def _failed(checked: int, problem: tuple[str, str]) -> ArchiveVerification:
    return ArchiveVerification(False, checked, problem[0], problem_zh=problem[1])


def month_has_ended(month: str, now: datetime) -> bool:
    """True once the Beijing-time month is over at ``now``."""
    return now >= month_bounds(month)[1]


def month_seq_range(engine: Engine, month: str) -> tuple[int, int] | None:
    """The contiguous seq range from the month's first event to its last (Beijing-time month).

    Events are timestamped just before they are appended, so a few events of the neighbouring month can
    sit inside the range at its edges; the archive keeps the range contiguous so the chain verifies.
    """
    start, end = month_bounds(month)
    c = audit_events.c
    with engine.connect() as conn:
        low, high = conn.execute(
            select(func.min(c.seq), func.max(c.seq)).where(c.occurred_at >= start, c.occurred_at < end)
        ).one()
    if low is None:
        return None
    return int(low), int(high)


def _rows(engine: Engine, first: int, last: int) -> Iterator[Any]:
    c = audit_events.c
    low = first
    while low <= last:
        high = min(last, low + _CHUNK - 1)
        stmt = (
            select(c.seq, c.body, c.prev_hash, c.entry_hash, c.leaf_hash)
            .where(c.seq.between(low, high))
            .order_by(c.seq)
        )
        with engine.connect() as conn:
            rows = conn.execute(stmt).all()
        if len(rows) != high - low + 1:
            raise ArchiveError(
                f"events {low}..{high} are not contiguous; run `grassroots audit verify`",
                f"事件 {low}..{high} 不连续，请立即运行 grassroots audit verify",
            )
        yield from rows
        low = high + 1


def _manifest_payload(manifest: dict[str, Any]) -> bytes:
    return canonical_json({k: v for k, v in manifest.items() if k != "signature"})


def archive_month(
    engine: Engine,
    signer: CheckpointSigner,
    directory: Path,
    month: str,
    *,
    now: datetime | None = None,
    checkpoint_dir: Path | None = None,
) -> ArchiveResult:
    """Write the signed archive of ``month``; refuses a month with no events, or one whose events are all
    in an archive of the month already.

    A month that has not ended (Beijing time) may be archived, but the archive is marked partial
    (``complete: false`` in the signed manifest) and pruning never relies on it. Archiving a month again
    once it has more events writes a new archive that supersedes the earlier one: pruning uses only the
    latest archive of a month, and only one made after the month ended that reaches its last event
    (:func:`audit.prune.plan_prune`). While the month runs, the archives' own records
    (:data:`ARCHIVE_BOOKKEEPING_KINDS`) are not new events: otherwise every archive call, logging its own
    record into the month, would make the next call "add" that record and never be refused. Once the
    month has ended the complete archive holds every event of it, those records included.

    Given the ``checkpoint_dir``, a ``signer`` whose key a handover there has retired (a gateway still
    holding the old key file after ``keys rotate-checkpoint``) is refused before anything is written: its
    manifest would be signed past its handover, which every verifier refuses."""
    if checkpoint_dir is not None:
        try:
            check_in_office(checkpoint_dir, signer)
        except CheckpointError as exc:
            raise ArchiveError(exc.message_en, exc.message_zh) from None
    when = (now or datetime.now(UTC)).astimezone(UTC)
    found = month_seq_range(engine, month)
    if found is None:
        raise ArchiveError(*_no_events_message(engine, month))
    first, last = found
    # A neighbouring month's archive may already hold (and pruning may have removed) the range's edge.
    first = max(first, pruned_through(engine) + 1)
    if first > last:
        raise ArchiveError(f"{month} is already archived and pruned", f"{month} 已归档并已清理")
    complete = month_has_ended(month, when)
    news = last if complete else _last_news(engine, first, last)
    earlier = _archive_reaching(engine, month, news, complete_only=complete)
    if earlier is not None and news == last:
        raise ArchiveError(
            f"{month} is already archived in {earlier} (events through {last}); no new events since",
            f"{month} 已归档于 {earlier}（事件截至第 {last} 号），此后没有新事件，无需再次归档",
        )
    if earlier is not None:
        kinds = "、".join(sorted(ARCHIVE_BOOKKEEPING_KINDS))
        raise ArchiveError(
            f"{month} is already archived in {earlier} (events through {news}); since then only the "
            f"archiving acts' own records ({', '.join(sorted(ARCHIVE_BOOKKEEPING_KINDS))}) were added, "
            "nothing new to archive; they go into the complete archive once the month has ended",
            f"{month} 已归档于 {earlier}（事件截至第 {news} 号），此后只有归档操作本身的记录（{kinds}），"
            "没有新事件，无需再次归档；该月结束后的完整归档会包含它们",
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # A partial archive says so in its name too, so the complete archive of the same events (made once the
    # month has ended) can take the plain name.
    stem = f"audit-{month}-{first}-{last}" + ("" if complete else "-partial")
    recovered = _recover_leftovers(engine, signer, directory, stem, (month, first, last, complete))
    if recovered is not None:
        return recovered
    events_path = directory / f"{stem}.jsonl.gz"
    manifest_path = directory / f"{stem}.manifest.json"
    with engine.connect() as conn:
        tree_size = int(conn.execute(select(func.coalesce(func.max(audit_events.c.seq), 0))).scalar_one())
    acc = merkle.MerkleAccumulator()
    prev_first: bytes | None = None
    last_entry = GENESIS_HASH
    count = 0

    def write_events(raw: BinaryIO) -> str:
        nonlocal prev_first, last_entry, count
        hashing = _HashingWriter(raw)
        with gzip.GzipFile(fileobj=hashing, mode="wb", mtime=0) as out:
            for row in _rows(engine, first, last):
                if prev_first is None:
                    prev_first = bytes(row.prev_hash)
                line = canonical_json(
                    {
                        "seq": int(row.seq),
                        "body": row.body,
                        "prev_hash": bytes(row.prev_hash).hex(),
                        "entry_hash": bytes(row.entry_hash).hex(),
                        "leaf_hash": bytes(row.leaf_hash).hex(),
                    }
                )
                out.write(line + b"\n")
                acc.append(bytes(row.leaf_hash))
                last_entry = bytes(row.entry_hash)
                count += 1
        return hashing.hexdigest()

    # The events file first, then the manifest: the signed manifest is what makes the archive exist, so
    # an interruption before it leaves only files a later round sets aside (_recover_leftovers).
    events_sha256 = _write_new_file(directory, events_path.name, write_events)
    tree_root = _tree_root(engine, tree_size)
    manifest: dict[str, Any] = {
        "origin": ARCHIVE_ORIGIN,
        "v": FORMAT_VERSION,
        "month": month,
        "complete": complete,
        "first_seq": first,
        "last_seq": last,
        "count": count,
        "prev_hash": (prev_first or GENESIS_HASH).hex(),
        "last_entry_hash": last_entry.hex(),
        "range_root": acc.root().hex(),
        "tree_size": tree_size,
        "tree_root": tree_root.hex(),
        "events_file": events_path.name,
        "events_sha256": events_sha256,
        "created_at": format_timestamp(when),
        "key_id": signer.key_id,
    }
    manifest["signature"] = base64.b64encode(signer.sign_payload(_manifest_payload(manifest))).decode()
    _write_new_file(directory, manifest_path.name, lambda fh: fh.write(canonical_json(manifest) + b"\n"))
    return _result_of(manifest, manifest_path)


def _result_of(manifest: dict[str, Any], manifest_path: Path, *, recovered: bool = False) -> ArchiveResult:
    return ArchiveResult(
        month=str(manifest["month"]),
        first_seq=int(manifest["first_seq"]),
        last_seq=int(manifest["last_seq"]),
        count=int(manifest["count"]),
        range_root=str(manifest["range_root"]),
        events_file=manifest_path.parent / str(manifest["events_file"]),
        manifest_file=manifest_path,
        file_sha256=str(manifest["events_sha256"]),
        key_id=str(manifest["key_id"]),
        complete=bool(manifest["complete"]),
        recovered=recovered,
    )


_W = TypeVar("_W")
#: Files being written: ``.<final name>.<pid>-<random>.tmp`` in the archive directory itself (a rename
#: never crosses file systems), never an archive until linked into place.
_TEMP_GLOB: Final = ".audit-*.tmp"
#: Where a later round moves the unsigned files of an interrupted one (kept, never deleted: nothing relies
#: on them, but an operator may want to see them).
INTERRUPTED_DIR: Final = "interrupted"


def _write_new_file(directory: Path, name: str, write: Callable[[BinaryIO], _W]) -> _W:
    """Create ``directory/name`` whole or not at all: written to a temporary name beside it, flushed and
    fsynced, then hard-linked into place (which, unlike a rename, never replaces an existing file), and the
    directory fsynced so the new name survives a power cut too. A crash leaves at most the temporary file,
    which the next archiving round removes (:func:`_recover_leftovers`)."""
    tmp = directory / f".{name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "xb") as fh:
            written = write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, directory / name)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_directory(directory)
    return written


def _recover_leftovers(
    engine: Engine,
    signer: CheckpointSigner,
    directory: Path,
    stem: str,
    expected: tuple[str, int, int, bool],
) -> ArchiveResult | None:
    """Clear what an interrupted archiving run (a killed process, a full disk) left, before writing ``stem``
    again; the caller holds the archiving lock, so no other writer is at work in ``directory``.

    * Temporary files are removed: they never became an archive, and the events are still in the log.
    * A signed manifest is never removed or overwritten, whoever signed it. If it is this very archive,
      signed with this key, and it verifies against the live log (the run was interrupted after writing
      it, before the archive was indexed), it is adopted as it is: the result carries ``recovered``.
      Otherwise the month is refused, naming the files, so that nobody loses a signed archive (or the
      evidence that one was altered) to a rewrite.
    * An events file without a manifest, or with a manifest that is not a signed document (cut short by
      an older version, which wrote it in place), is not an archive: both are moved to
      :data:`INTERRUPTED_DIR` and the month is written anew.
    """
    for tmp in directory.glob(_TEMP_GLOB):
        tmp.unlink(missing_ok=True)
    events_path = directory / f"{stem}.jsonl.gz"
    manifest_path = directory / f"{stem}.manifest.json"
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_bytes())
        except ValueError:
            manifest = None
        if isinstance(manifest, dict) and "signature" in manifest:
            verdict = verify_archive(manifest_path, KeyChain.pinned(signer.public_key), engine)
            month, first, last, complete = expected
            same = (
                manifest.get("month") == month
                and manifest.get("first_seq") == first
                and manifest.get("last_seq") == last
                and manifest.get("complete") == complete
                and manifest.get("events_file") == events_path.name
            )
            if verdict.ok and same:
                return _result_of(manifest, manifest_path, recovered=True)
            problem_en = verdict.problem or "it is not the archive of this range"
            problem_zh = verdict.problem_zh or "它不是这一范围的归档"
            raise ArchiveError(
                f"{manifest_path.name} in {directory} is a signed archive manifest that does not verify "
                f"({problem_en}); it is left as it is and the month is not archived over it: check it with "
                "`grassroots supervise archive-verify`, keep the files if they were altered, or move both "
                "files out of the archive directory (e.g. an archive signed with an earlier key) and the "
                "next round archives the month again",
                f"{directory} 中的 {manifest_path.name} 是已签名的归档清单，但未通过校验（{problem_zh}）；"
                "未作改动，也不会覆盖它归档该月：请用 grassroots supervise archive-verify 检查；"
                "如文件被改动过，请保留现场；如确认无须保留（例如以旧密钥签名的归档），"
                "把这两个文件移出归档目录，下一轮即会重新归档",
            )
    leftovers = [p for p in (events_path, manifest_path) if p.exists()]
    if leftovers:
        aside = directory / INTERRUPTED_DIR
        aside.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        for path in leftovers:
            os.rename(path, aside / f"{path.name}.{stamp}")
        fsync_directory(aside)
        fsync_directory(directory)
    return None


def _no_events_message(engine: Engine, month: str) -> tuple[str, str]:
    """Why a month cannot be archived when it has no events: say which months the log does hold."""
    c = audit_events.c
    with engine.connect() as conn:
        oldest, newest = conn.execute(select(func.min(c.occurred_at), func.max(c.occurred_at))).one()
    if oldest is None:
        return f"no audit events in {month}: the log is empty", f"{month} 没有审计事件：日志为空"
    low, high = beijing_month(oldest), beijing_month(newest)
    span = low if low == high else f"{low}..{high}"
    return (
        f"no audit events in {month}: the log's events are from {span} (Beijing time)",
        f"{month} 没有审计事件：日志中的事件在 {span}（北京时间）",
    )


def _last_news(engine: Engine, first: int, last: int) -> int:
    """The last event in ``first..last`` that is not an archive's own record (``first`` if none is)."""
    c = audit_events.c
    with engine.connect() as conn:
        found = conn.execute(
            select(func.max(c.seq)).where(
                c.seq.between(first, last), c.kind.not_in(sorted(ARCHIVE_BOOKKEEPING_KINDS))
            )
        ).scalar_one()
    return first if found is None else int(found)


def _archive_reaching(engine: Engine, month: str, last: int, *, complete_only: bool) -> str | None:
    """An archive of ``month`` already holding its events through ``last``, if any; with ``complete_only``
    (the month has ended) only a complete one counts: a partial archive is superseded, never final."""
    c = audit_archives.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(c.archive_id, c.created_at).where(c.month == month, c.last_seq >= last)
        ).all()
    for row in rows:
        if not complete_only or month_has_ended(month, stored_utc(row.created_at)):
            return str(row.archive_id)
    return None


def _tree_root(engine: Engine, tree_size: int) -> bytes:
    """Root of the first ``tree_size`` events, streamed (from the prune anchor's frontier when pruned)."""
    anchor = latest_anchor(engine)
    acc = merkle.MerkleAccumulator() if anchor is None else anchor.resume()
    if tree_size < acc.size:
        raise merkle.PrunedRangeError(f"tree size {tree_size} lies in the pruned prefix")
    for leaf in iter_leaf_hashes(engine, acc.size + 1, tree_size):
        acc.append(leaf)
    return acc.root()


def record_archive(session: Session, result: ArchiveResult, actor: str, now: datetime) -> dict[str, Any]:
    """Index the archive in the database; returns the change for the audit log."""
    session.add(
        ArchiveRow(
            archive_id=result.manifest_file.name.removesuffix(".manifest.json"),
            month=result.month,
            first_seq=result.first_seq,
            last_seq=result.last_seq,
            range_root=result.range_root,
            file_name=result.events_file.name,
            file_sha256=result.file_sha256,
            key_id=result.key_id,
            created_by=actor,
            created_at=now,
        )
    )
    session.flush()
    return {"kind": "supervision.month_archived", "actor": actor, **result.to_json()}


def _complete_months(session: Session) -> set[str]:
    """Months with an archive made after the month ended (an earlier one is partial)."""
    rows = session.execute(select(ArchiveRow.month, ArchiveRow.created_at)).all()
    done = set()
    for month, created in rows:
        if month_has_ended(str(month), stored_utc(created)):
            done.add(str(month))
    return done


class _Archived(Protocol):
    @property
    def month(self) -> str: ...
    @property
    def last_seq(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...


_ArchiveLike = TypeVar("_ArchiveLike", bound=_Archived)


def latest_of_each_month(rows: Iterable[_ArchiveLike]) -> dict[str, _ArchiveLike]:
    """Month -> its latest archive: the one reaching furthest, then the last made. Archiving a month again
    supersedes its earlier archives; pruning plans on this one only (:func:`audit.prune.plan_prune`)."""
    latest: dict[str, _ArchiveLike] = {}
    for r in sorted(rows, key=lambda r: (str(r.month), int(r.last_seq), stored_utc(r.created_at))):
        latest[str(r.month)] = r  # ordered: the last one of each month wins
    return latest


def list_archives(session: Session) -> list[dict[str, Any]]:
    """Every archive, by month. ``complete``: made after the month ended. ``superseded_by``: the month's
    latest archive (:func:`latest_of_each_month`), when that is another one; a superseded archive still
    verifies, but nothing relies on it."""
    rows = list(session.scalars(select(ArchiveRow).order_by(ArchiveRow.month, ArchiveRow.first_seq)))
    latest = latest_of_each_month(rows)
    return [
        {
            "archive_id": r.archive_id,
            "month": r.month,
            "first_seq": r.first_seq,
            "last_seq": r.last_seq,
            "range_root": r.range_root,
            "file_name": r.file_name,
            "file_sha256": r.file_sha256,
            "key_id": r.key_id,
            "created_by": r.created_by,
            "complete": month_has_ended(r.month, stored_utc(r.created_at)),
            "superseded_by": None if latest[r.month] is r else latest[r.month].archive_id,
        }
        for r in rows
    ]


EventSink = Callable[[int, bytes, bytes, bytes], None]


def verify_archive(
    manifest_path: Path,
    keys: KeyChain,
    engine: Engine | None = None,
    *,
    on_event: EventSink | None = None,
    restores: Sequence[tuple[Checkpoint, str]] = (),
) -> ArchiveVerification:
    """Verify an archive (signature, file digest, every leaf and link, range root; the live log if given).

    ``restores`` (:attr:`audit.checkpoints.CheckpointHistory.restores`, with their files): an archive made
    before an accepted restore that holds events it gave up is the lost log's evidence, not comparable with
    the live log (which re-uses those numbers); against the live log it is reported as such, naming the
    restore record, instead of as a gap or as events that differ.

    Streams the events file (bounded memory); ``on_event(seq, prev_hash, entry_hash, leaf_hash)`` sees each
    re-derived event as it passes (trust what it saw only if the result is ok). Problems are reported,
    never raised, so a command can print what differs. A file whose digest differs from the signed
    manifest is reported as such before any finding about its contents.

    ``keys`` are the checkpoint keys (:func:`audit.checkpoints.key_chain`): the manifest counts when signed
    by the key in office at its ``tree_size`` (the log's size when it was archived), so archives signed
    before a key rotation stay verifiable and an old key signs no archive past its handover.
    """
    checked = 0
    try:
        raw_manifest = Path(manifest_path).read_bytes()
    except OSError as exc:
        return _unreadable(Path(manifest_path), exc)
    try:
        manifest = json.loads(raw_manifest)
        if manifest.get("origin") != ARCHIVE_ORIGIN or manifest.get("v") != FORMAT_VERSION:
            return _failed(0, ("not a grassroots audit archive manifest", "不是本系统的审计归档清单"))
        try:
            public_key = keys.key_for(
                str(manifest["key_id"]), int(manifest["tree_size"]), ("archive manifest", "归档清单")
            )
        except CheckpointError as exc:
            return _failed(0, (exc.message_en, exc.message_zh))
        try:
            public_key.verify(base64.b64decode(manifest["signature"]), _manifest_payload(manifest))
        except InvalidSignature:
            return _failed(
                0, ("manifest signature does not verify", "清单签名无法验证：清单在签发后被改动过")
            )
        events_name = str(manifest["events_file"])
        if not _SAFE_NAME.fullmatch(events_name.removesuffix(".jsonl.gz")):
            return _failed(0, ("manifest names an unexpected events file", "清单中的事件文件名不合规"))
        events_path = Path(manifest_path).parent / events_name
        try:
            raw = open(events_path, "rb")  # noqa: SIM115 (closed by the with below)
        except OSError as exc:
            return _unreadable(events_path, exc)
        with raw:
            hashing = _HashingReader(raw)
            try:
                checked, problem = _check_events(hashing, manifest, on_event)
            except (ValueError, KeyError, TypeError, EOFError, gzip.BadGzipFile) as exc:
                problem = (f"archive unreadable ({type(exc).__name__})", "事件文件已损坏，无法解析")
            hashing.drain()
        if hashing.hexdigest() != manifest["events_sha256"]:
            return _failed(
                0,
                (
                    "events file digest differs from the signed manifest",
                    "事件文件的摘要与签名清单不符：事件文件在归档后被改动过",
                ),
            )
        if problem is not None:
            return _failed(checked, problem)
        parse_timestamp(manifest["created_at"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return _failed(checked, (f"archive unreadable ({type(exc).__name__})", "归档文件已损坏，无法解析"))
    if engine is not None:
        lost = _given_up(manifest, restores)
        if lost is not None:
            en, zh, record_file = lost
            return ArchiveVerification(False, checked, en, problem_zh=zh, given_up_by=record_file)
        problem = _against_log(engine, manifest, keys, manifest_sha256(manifest_path))
        if problem is not None:
            return _failed(checked, problem)
    return ArchiveVerification(True, checked)


def _given_up(
    manifest: dict[str, Any], restores: Sequence[tuple[Checkpoint, str]]
) -> tuple[str, str, str] | None:
    """Why ``manifest`` cannot be compared with the live log: it was signed before an accepted restore
    that gave up some of its events (the first such restore; ``None`` when none did)."""
    made, last = parse_timestamp(manifest["created_at"]), int(manifest["last_seq"])
    for record, name in restores:
        kept = int((record.restore or {})["lost_from"])
        if made < record.timestamp and last > kept:
            first = max(int(manifest["first_seq"]), kept + 1)
            return (
                f"events {first}..{last} of this archive were given up by the restore accepted in {name} "
                f"(epoch {record.epoch}): the archive is the lost log's evidence (its files and signature "
                "verify without the live log), and the live log re-uses those numbers, so it is not compared",
                f"本归档中的事件 #{first}..#{last} 已因接受的数据库恢复（恢复记录 {name}，恢复纪元 "
                f"{record.epoch}）而丢失：该归档是丢失日志的证据（不连数据库校验时其文件与签名可以核对），"
                "数据库日志已重新使用这些序号，因此不与之比对",
                name,
            )
    return None


def _unreadable(path: Path, exc: OSError) -> ArchiveVerification:
    """Nothing verified: the reason in both languages, decided here from the error itself (callers print
    ``problem_zh`` as it is, never guess it from the English)."""
    if isinstance(exc, FileNotFoundError):
        reason_en, reason_zh = "no such file", "文件不存在"
    elif isinstance(exc, IsADirectoryError):
        # `archive-verify var/archives`: said as "no permission or a read error" in Chinese, which it is not.
        reason_en = "it is a directory: give the manifest files in it (.../*.manifest.json)"
        reason_zh = "这是一个目录，请给出其中的归档清单文件（…/*.manifest.json）"
    elif isinstance(exc, PermissionError):
        reason_en, reason_zh = exc.strerror or "permission denied", "没有读取权限"
    else:
        reason_en, reason_zh = exc.strerror or type(exc).__name__, "没有读取权限或读取出错"
    return ArchiveVerification(
        False,
        0,
        f"cannot read {path}: {reason_en}",
        readable=False,
        unreadable_file=str(path),
        problem_zh=f"无法读取 {path}：{reason_zh}",
    )


def _check_events(
    source: _HashingReader, manifest: dict[str, Any], on_event: EventSink | None = None
) -> tuple[int, tuple[str, str] | None]:
    """Re-derive every link and leaf of the (gzipped, JSON-lines) events; ``(checked, problem)``, the
    problem in English and Chinese."""
    prev = bytes.fromhex(manifest["prev_hash"])
    expected_seq = int(manifest["first_seq"])
    acc = merkle.MerkleAccumulator()
    checked = 0
    with gzip.GzipFile(fileobj=source, mode="rb") as lines:  # type: ignore[call-overload]
        for line in lines:
            item = json.loads(line)
            body = item["body"].encode("utf-8")
            if item["seq"] != expected_seq:
                found = int(item["seq"])
                return checked, (
                    f"expected event {expected_seq}, found {found}",
                    f"应为第 {expected_seq} 号事件，实为第 {found} 号",
                )
            if bytes.fromhex(item["prev_hash"]) != prev:
                return checked, (
                    f"event {expected_seq}: prev_hash breaks the chain",
                    f"第 {expected_seq} 号事件与前一条事件的链接断开",
                )
            if chain_hash(prev, body).hex() != item["entry_hash"]:
                return checked, (
                    f"event {expected_seq}: entry_hash mismatch",
                    f"第 {expected_seq} 号事件的哈希与内容不符",
                )
            leaf = merkle.leaf_hash(body)
            if leaf.hex() != item["leaf_hash"]:
                return checked, (
                    f"event {expected_seq}: leaf_hash mismatch",
                    f"第 {expected_seq} 号事件的叶哈希与内容不符",
                )
            acc.append(leaf)
            entry = bytes.fromhex(item["entry_hash"])
            if on_event is not None:
                on_event(expected_seq, prev, entry, leaf)
            prev = entry
            expected_seq += 1
            checked += 1
    if expected_seq - 1 != manifest["last_seq"] or checked != manifest["count"]:
        return checked, ("archive is missing events at its end", "归档末尾缺少事件")
    if prev.hex() != manifest["last_entry_hash"]:
        return checked, ("last entry hash differs from the manifest", "最后一条事件的哈希与清单不符")
    if acc.root().hex() != manifest["range_root"]:
        return checked, ("range Merkle root differs from the manifest", "事件范围的 Merkle 根与清单不符")
    return checked, None


class _HashingWriter:
    """A write-only file wrapper that hashes every byte written through it (for gzip to write to)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class _HashingReader:
    """A read-only file wrapper that hashes every byte read through it (for gzip to read from)."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._raw.read(size)
        self._digest.update(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 16):
            pass

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def manifest_sha256(manifest_path: Path) -> str:
    """SHA-256 of a manifest file as stored (a prune anchor names the manifests it relies on by it)."""
    return hashlib.sha256(Path(manifest_path).read_bytes()).hexdigest()


def _against_log(
    engine: Engine, manifest: dict[str, Any], keys: KeyChain, digest: str
) -> tuple[str, str] | None:
    """Compare with the live log, streaming: the range's leaves, and the tree root at archiving time.

    Once the range is pruned the live log cannot show the events: the archive must then be one that the
    latest prefix anchor (signature checked) names with this manifest digest.
    """
    tree_size = int(manifest["tree_size"])
    first, last = int(manifest["first_seq"]), int(manifest["last_seq"])
    try:
        anchor = latest_anchor(engine)
        cut = 0 if anchor is None else anchor.pruned_through
        if anchor is not None and first <= cut:
            keys.verify_anchor(anchor)
            if not any(a.get("manifest_sha256") == digest for a in anchor.archives):
                return (
                    "events are pruned but the prune anchor does not rely on this archive",
                    "这些事件已清理，但清理锚点依据的不是这份归档",
                )
            if last <= cut:
                return None
        acc = merkle.MerkleAccumulator()
        for leaf in iter_leaf_hashes(engine, max(first, cut + 1), last):
            acc.append(leaf)
        if first > cut and acc.root().hex() != manifest["range_root"]:
            return "live log's events differ from the archived ones", "数据库日志中的事件与归档中的不一致"
        if tree_size >= cut and _tree_root(engine, tree_size).hex() != manifest["tree_root"]:
            return (
                "live log no longer has the tree the archive was made from",
                "数据库日志已不再包含归档时的那棵树",
            )
    except AnchorError as exc:
        return f"prune anchor does not verify: {exc}", "清理锚点无法验证"
    except Exception as exc:  # a gap or an unreadable store: report, do not raise
        return (
            f"live log cannot supply the archived tree ({type(exc).__name__})",
            "数据库日志无法提供归档时的事件（有缺口或无法读取）",
        )
    return None


def retention_cutoff(now: datetime, years: int = DEFAULT_RETENTION_YEARS) -> datetime:
    """The instant (Beijing time) before which events are past the retention period (PIPL Art. 56)."""
    if years < 1:
        raise ValueError("retention must be at least one year")
    now_local = now.astimezone(CHINA_STANDARD_TIME)
    try:
        return now_local.replace(year=now_local.year - years)
    except ValueError:  # 29 February
        return now_local.replace(year=now_local.year - years, day=28)


def retention_status(
    engine: Engine, session: Session, now: datetime, years: int = DEFAULT_RETENTION_YEARS
) -> dict[str, Any]:
    """Months whose events are older than the retention period, and whether each is archived."""
    cutoff = retention_cutoff(now, years)
    with engine.connect() as conn:
        oldest = conn.execute(select(func.min(audit_events.c.occurred_at))).scalar_one()
    archived = {r["month"] for r in list_archives(session)}
    complete = _complete_months(session)
    due: list[dict[str, Any]] = []
    if oldest is not None:
        cursor = stored_utc(oldest).astimezone(CHINA_STANDARD_TIME)
        year, month = cursor.year, cursor.month
        while (year, month) < (cutoff.year, cutoff.month):
            label = f"{year:04d}-{month:02d}"
            due.append(
                {"month": label, "archived": label in complete, "partial": label in archived - complete}
            )
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return {
        "retention_years": years,
        "cutoff": format_timestamp(cutoff),
        "months_past_retention": due,
        "archived_months": sorted(archived),
        # Archived only before the month ended: pruning will not rely on these until archived again.
        "partially_archived_months": sorted(archived - complete),
        "pruned_through_seq": pruned_through(engine),
        # Chinese first for the village and county readers of the answer; the English beside it.
        "pruning": "超过保存期且已完整归档的月份，可以在签名锚点之后从数据库清理"
        "（grassroots supervise prune，默认只预演；--execute 才会清理）。",
        "pruning_en": "Archived months past the retention period can be pruned behind a signed anchor "
        "(grassroots supervise prune: a dry run by default, --execute prunes).",
    }
