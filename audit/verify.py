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

After an accepted restore (:mod:`audit.restore`) the checkpoint directory holds two logs that share a
prefix: the lost one and the restored one, whose later events re-use the lost ones' numbers. The log is
then checked against every checkpoint of the log as it now is (:func:`audit.checkpoints.checkpoint_history`:
the lost log's up to the restored size, the restored log's after), never against the lost tail, and every
accepted restore is reported (``restores``) with each verdict. A restore record that does not verify, or
that the files around it do not fit, is ``checkpoint_invalid``.

It refuses to pass on nothing: an empty log passes only when no checkpoint says it had events.
"""

from __future__ import annotations

import hashlib
import json
import json.scanner
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, NamedTuple, NoReturn

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from audit import merkle
from audit.anchor import AnchorError, PruneAnchor, anchor_file_glob, latest_anchor
from audit.checkpoints import (
    Checkpoint,
    CheckpointError,
    checkpoint_history,
    has_restores,
    key_chain,
    latest_checkpoint_file,
    list_checkpoint_files,
    list_checkpoints,
)
from audit.events import format_timestamp, looks_like_personal_data, parse_timestamp
from audit.log import CHAIN_DOMAIN, GENESIS_HASH, AuditUnavailable, chain_hash, iter_leaf_hashes
from audit.query import EventQuery, beijing_clock, iter_events
from audit.tables import HEAD_ID, audit_events, audit_head, audit_subject_refs

DEFAULT_CHUNK: Final = 5_000
_SQLITE_DATETIME: Final = "%Y-%m-%d %H:%M:%S.%f"
_TEXT_COLUMNS: Final = ("kind", "outcome", "actor", "actor_org", "scenario", "dataset")
# What a query column of an event may be shown as in a verdict: codes, ids and times (see _shown).
_SHOWABLE: Final = re.compile(r"[A-Za-z0-9_.:@/#+ -]{0,256}")
_ID_LIKE: Final = re.compile(r"[0-9]{15}")  # an ID number, even one with a wrong check character

# What each problem code means, for a person: (Chinese, English).
PROBLEMS: Final[dict[str, tuple[str, str]]] = {
    "missing_event": ("事件缺失，已被删除", "an event is missing: it was deleted"),
    "prev_hash_mismatch": (
        "与前一条事件的链接断开，有事件被插入、删除或调换",
        "the link to the previous event is broken: an event was inserted, deleted or reordered",
    ),
    "entry_hash_mismatch": (
        "事件哈希与事件内容不符，内容或哈希被改动",
        "the event hash does not match the event body: the body or the hash was edited",
    ),
    "leaf_hash_mismatch": (
        "Merkle 叶哈希与事件内容不符",
        "the Merkle leaf hash does not match the event body",
    ),
    "column_mismatch": (
        "查询列与事件内容不一致，监督查询看到的是被改动的副本",
        "a query column disagrees with the event body; supervisors would see an edited copy",
    ),
    "subject_refs_mismatch": (
        "居民引用索引与事件内容不一致，投诉查询会漏掉或多出访问",
        "the subject-ref index disagrees with the event body; complaint lookups would miss accesses",
    ),
    "row_malformed": ("存储的记录已损坏，无法解析", "the stored row is malformed"),
    "head_mismatch": (
        "日志头与最后一条事件不一致，尾部被截断或延长",
        "the log head disagrees with the last event: the tail was truncated or extended",
    ),
    "event_beyond_head": ("日志头之后还有事件，有事件绕过日志头写入", "an event lies beyond the log head"),
    "checkpoint_root_mismatch": (
        "Merkle 根与签名检查点不一致，历史已被改写",
        "the Merkle root differs from the signed checkpoint: history was rewritten",
    ),
    "log_shorter_than_checkpoint": (
        "日志比签名检查点记录的短，尾部被截断，或恢复了较旧的备份",
        "the log is shorter than a signed checkpoint: the tail was truncated, or an older backup restored",
    ),
    "anchor_chain_mismatch": (
        "第一条保留事件与清理锚点的链哈希不符",
        "the first kept event does not link to the prune anchor's chain hash",
    ),
    "anchor_invalid": ("清理锚点无法验证", "the prune anchor does not verify"),
    "anchor_not_external": (
        "检查点目录中没有与数据库一致的清理锚点副本",
        "the prune anchor's copy in the checkpoint directory is missing or differs",
    ),
    "checkpoint_invalid": ("签名检查点无法验证", "a signed checkpoint does not verify"),
}


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """Outcome of :func:`verify_log`. ``problem`` is a stable code; ``expected``/``found`` say why
    (``expected_zh``/``found_zh`` in Chinese where the English is words, not hashes or numbers).

    ``checkpoint`` is the latest signed checkpoint the log was checked against and ``checkpoint_file`` its
    file; on a ``checkpoint_invalid`` failure ``checkpoint_file`` names the file that does not verify.
    ``checkpoints_given`` says whether a checkpoint directory and key were given at all.
    :meth:`summary` is what a person reads.
    """

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None
    expected: str | None = None
    found: str | None = None
    checkpoint: Checkpoint | None = None
    anchor: PruneAnchor | None = None
    notes: tuple[str, ...] = ()
    checkpoint_file: str | None = None
    checkpoints_given: bool = False
    expected_zh: str | None = None
    found_zh: str | None = None
    checkpoint_file_size: int | None = None
    notes_zh: tuple[str, ...] = ()
    # Accepted restores (:mod:`audit.restore`), oldest first: said with every verdict, never silent.
    restores: tuple[Checkpoint, ...] = ()
    # On ``checkpoint_root_mismatch``: the events among which one was changed, inserted, removed or moved
    # (first, last), between the last signed checkpoint the log still reproduces (named in
    # ``confirmed_by``, ``None`` when there is none) and the first it does not (``checkpoint_file``).
    rewritten_range: tuple[int, int] | None = None
    confirmed_by: str | None = None

    def describe(self) -> str:
        """One line for a terminal: what passed, or the first bad entry and why."""
        covered = f"; checkpoint covers {self.checkpoint.tree_size}" if self.checkpoint else "; no checkpoint"
        if self.anchor is not None:
            covered += f"; events 1..{self.anchor.pruned_through} pruned behind a signed anchor"
        for record in self.restores:
            lost = record.restore or {}
            covered += f"; restore accepted, events {lost['lost_from'] + 1}..{lost['lost_to']} lost"
        if self.ok:
            return f"audit log intact: {self.checked} events verified{covered}"
        where = f"event {self.first_bad_seq}" if self.first_bad_seq is not None else "log"
        return (
            f"audit log FAILED at {where}: {self.problem} (expected {self.expected}, found {self.found}); "
            f"{self.checked} events verified before it{covered}"
        )

    def summary(self, no_checkpoint: tuple[str, str] | None = None) -> list[tuple[str, str]]:
        """What a person reads, as (Chinese, English) pairs: the verdict first, then what it rests on.

        Says which signed checkpoint the log was checked against (or that there was none), and for a
        failure what failed — an event by its number, or a checkpoint by its file, tree size and reason.
        ``no_checkpoint`` is what to say instead when the caller gave no checkpoint directory (it knows
        why). Every line is free of Python reprs; the Chinese lines of English words (hashes aside).
        """
        if not self.ok:
            return self._failure() + self._restore_lines()
        pairs = [
            (
                f"审计日志完整：已校验 {self.checked} 条事件。",
                f"audit log intact: {self.checked} events verified",
            )
        ]
        cp = self.checkpoint
        if cp is not None:
            named = f" {self.checkpoint_file}" if self.checkpoint_file else ""
            later = self.checked - cp.tree_size
            zh = (
                f"  已对照签名检查点{named} 校验：树大小 {cp.tree_size}，"
                f"签发于 {beijing_clock(cp.timestamp)}（北京时间）"
            )
            en = (
                f"  verified against signed checkpoint{named}: tree size {cp.tree_size}, "
                f"signed {format_timestamp(cp.timestamp)}"
            )
            if later > 0:
                zh += f"；其后 {later} 条事件尚未签入检查点（`grassroots audit checkpoint` 签发新的）"
                en += f"; {later} later event{'s' if later != 1 else ''} not yet covered by a checkpoint"
            pairs.append((zh + "。", en))
        elif self.checkpoints_given:
            pairs.append(
                (
                    "  检查点目录中还没有签名检查点：只校验了哈希链与 Merkle 树"
                    "（整库重写或恢复旧备份也能通过）；运行 grassroots audit checkpoint 签发一个。",
                    "  no signed checkpoint in the checkpoint directory yet: only the hash chain and Merkle "
                    "tree were checked (a rewritten or restored log would pass too); run "
                    "`grassroots audit checkpoint` to sign one",
                )
            )
        else:
            pairs.append(
                no_checkpoint
                or (
                    "  未对照签名检查点：只校验了哈希链与 Merkle 树（整库重写或恢复旧备份也能通过）。",
                    "  not checked against a signed checkpoint: only the hash chain and Merkle tree were "
                    "checked (a rewritten or restored log would pass too)",
                )
            )
        if self.anchor is not None:
            pruned = self.anchor.pruned_through
            pairs.append(
                (
                    f"  事件 1..{pruned} 已在签名锚点之后清理；"
                    "`grassroots supervise prefix-verify` 对照归档校验它们。",
                    f"  events 1..{pruned} were pruned behind a signed anchor; "
                    "`grassroots supervise prefix-verify` checks them against the archives",
                )
            )
        for zh_note, en_note in zip(self.notes_zh, self.notes, strict=False):
            pairs.append((f"  说明：{zh_note}", f"  note: {en_note}"))
        return pairs + self._restore_lines()

    def _restore_lines(self) -> list[tuple[str, str]]:
        """One line per accepted restore: when, which events were lost, the lost log's checkpoint, why."""
        pairs = []
        for record in self.restores:
            lost = record.restore or {}
            first, last = lost["lost_from"] + 1, lost["lost_to"]
            count = last - first + 1
            pairs.append(
                (
                    f"  已接受的数据库恢复：{beijing_clock(record.timestamp)}（北京时间）接受，"
                    f"事件 #{first}..#{last}（共 {count} 条）已丢失，日志从第 {first} 号重新编号；"
                    f"丢失前的签名检查点 {lost['lost_checkpoint']}（根哈希 {lost['lost_root']}）保留为证据；"
                    f"理由：{lost['reason']}。",
                    f"  accepted restore, {format_timestamp(record.timestamp)}: events {first}..{last} "
                    f"({count}) were lost and their numbers re-used from {first}; the lost log's signed "
                    f"checkpoint {lost['lost_checkpoint']} (root {lost['lost_root']}) is kept as evidence; "
                    f"reason: {lost['reason']}",
                )
            )
        return pairs

    def _failure(self) -> list[tuple[str, str]]:
        code = self.problem or "unknown"
        meaning_zh, meaning_en = PROBLEMS.get(code, ("校验未通过", "verification failed"))
        if code == "checkpoint_invalid":
            size = self.checkpoint_file_size
            if self.checkpoint_file:
                sized_zh = f"（树大小 {size}）" if size is not None else ""
                sized_en = f" (tree size {size})" if size is not None else ""
                subject_zh = f"签名检查点 {self.checkpoint_file}{sized_zh}"
                subject_en = f"signed checkpoint {self.checkpoint_file}{sized_en}"
            else:
                subject_zh, subject_en = "签名检查点", "the signed checkpoints"
            return [
                (
                    f"审计日志校验失败：{subject_zh}无法验证：{self.found_zh or meaning_zh}。"
                    "尚未校验任何事件；请保留检查点目录和数据库现场并报告。",
                    f"audit log verification FAILED: {subject_en} does not verify: {self.found} "
                    f"({code}); no events were checked",
                )
            ]
        if code == "checkpoint_root_mismatch" and self.rewritten_range is not None:
            head = self._rewrite_head(meaning_zh, meaning_en)
        elif self.first_bad_seq is not None:
            head = (
                f"审计日志已被破坏：第 #{self.first_bad_seq} 条事件校验失败：{meaning_zh}（{code}）。",
                f"audit log BROKEN at event #{self.first_bad_seq}: {code}: {meaning_en}",
            )
        else:
            head = (f"审计日志已被破坏：{meaning_zh}（{code}）。", f"audit log BROKEN: {code}: {meaning_en}")
        pairs = [head]
        if self.expected is not None or self.found is not None:
            expected, found = self.expected or "-", self.found or "-"
            pairs.append(
                (
                    f"  应为：{self.expected_zh or expected}\n  实为：{self.found_zh or found}",
                    f"  expected: {expected}\n  found:    {found}",
                )
            )
        # What a supervisor who is not a programmer does next: the log is evidence, and a "repair", a
        # restored backup or a restart of the tools that write it would destroy what shows who changed it.
        before = f"发现问题前已校验通过 {self.checked} 条事件。" if self.checked else ""
        pairs.append(
            (
                f"  {before}请不要修改、修复或删除数据库，也不要恢复备份：先把数据库和检查点目录"
                "（GRASSROOTS_CHECKPOINT_DIR）各复制一份留作证据，立即报告本单位数据安全负责人和监督部门。",
                f"  {self.checked} events verified before the problem was found. Do not edit, repair or "
                "delete the database and do not restore a backup: first copy the database and the "
                "checkpoint directory (GRASSROOTS_CHECKPOINT_DIR) as evidence, then report to your data "
                "security officer and the supervisory office.",
            )
        )
        if code == "log_shorter_than_checkpoint":
            # The one case with a way forward that keeps the evidence: a restore done on purpose.
            pairs.append(
                (
                    "  如果是有意从备份恢复（例如磁盘损坏）且已报告：运行 grassroots audit accept-restore "
                    '--reason "…"，签名记录丢失的事件后继续（检查点文件保留，不要移动或删除）。',
                    "  If a backup was restored on purpose (a disk failure, say) and this was reported: run "
                    '`grassroots audit accept-restore --reason "..."` to sign a record of the lost events '
                    "and go on (the checkpoint files stay; do not move or delete them).",
                )
            )
        return pairs

    def _rewrite_head(self, meaning_zh: str, meaning_en: str) -> tuple[str, str]:
        """Where a history rewrite lies: a checkpoint pins only its root, so what can be said is the range
        between the last signed checkpoint the log reproduces and the first it does not, both named."""
        assert self.rewritten_range is not None
        first, last = self.rewritten_range
        failing = f" {self.checkpoint_file}" if self.checkpoint_file else ""
        if first == last:
            where_zh, where_en = f"第 #{first} 号事件被改动或替换", f"event #{first} was changed or replaced"
            span_en = f"event #{first}"
        else:
            where_zh = f"第 #{first}..#{last} 号事件中有事件被改动、插入、删除或调换"
            where_en = f"an event among #{first}..#{last} was changed, inserted, removed or moved"
            span_en = f"events #{first}..#{last}"
        zh = (
            f"审计日志已被破坏：{meaning_zh}（{self.problem}）：前 {last} 条事件算得的 Merkle 根"
            f"与签名检查点{failing}（树大小 {last}）记载的不符，{where_zh}，且其后的哈希被重新计算"
        )
        en = (
            f"audit log BROKEN in {span_en}: {self.problem}: {meaning_en}: the Merkle root of the first "
            f"{last} events differs from the one signed in checkpoint{failing} (tree size {last}); "
            f"{where_en}, and the hashes after it recomputed"
        )
        if self.confirmed_by is not None:
            zh += f"；前 {first - 1} 条事件与签名检查点 {self.confirmed_by} 一致"
            en += f"; the first {first - 1} events match signed checkpoint {self.confirmed_by}"
        return zh + "。", en


class _VerificationFailedError(Exception):
    def __init__(
        self,
        seq: int | None,
        problem: str,
        expected: object,
        found: object,
        *,
        expected_zh: str | None = None,
        found_zh: str | None = None,
        file: str | None = None,
        file_size: int | None = None,
        rewritten_range: tuple[int, int] | None = None,
        confirmed_by: str | None = None,
    ) -> None:
        super().__init__(problem)
        self.seq = seq
        self.problem = problem
        self.expected = None if expected is None else str(expected)
        self.found = None if found is None else str(found)
        self.expected_zh = expected_zh
        self.found_zh = found_zh
        self.file = file
        self.file_size = file_size
        self.rewritten_range = rewritten_range
        self.confirmed_by = confirmed_by

    @classmethod
    def checkpoint_invalid(cls, exc: CheckpointError) -> _VerificationFailedError:
        """A checkpoint file that does not verify: named, with its size and the reason in both languages."""
        return cls(
            None,
            "checkpoint_invalid",
            "a verifiable checkpoint",
            exc.message_en,
            expected_zh="可验证的签名检查点",
            found_zh=exc.message_zh,
            file=exc.file,
            file_size=exc.tree_size,
        )

    def report(
        self,
        checked: int,
        checkpoint: Checkpoint | None,
        anchor: PruneAnchor | None,
        notes: list[tuple[str, str]],
        *,
        checkpoint_file: str | None,
        checkpoints_given: bool,
        restores: tuple[Checkpoint, ...] = (),
    ) -> VerificationReport:
        if self.rewritten_range is not None:
            # Only the events up to the last checkpoint the log reproduces are verified: the rewritten
            # ones passed every chain check, their hashes having been recomputed.
            checked = self.rewritten_range[0] - 1
        return VerificationReport(
            False,
            checked,
            self.seq,
            self.problem,
            self.expected,
            self.found,
            checkpoint,
            anchor,
            tuple(en for _, en in notes),
            checkpoint_file=self.file or checkpoint_file,
            checkpoints_given=checkpoints_given,
            expected_zh=self.expected_zh,
            found_zh=self.found_zh,
            checkpoint_file_size=self.file_size,
            notes_zh=tuple(zh for zh, _ in notes),
            restores=restores,
            rewritten_range=self.rewritten_range,
            confirmed_by=self.confirmed_by,
        )


def _stored_time_matches(stored: object, when: datetime) -> bool:
    if isinstance(stored, str):
        # SQLite: the exact text SQLAlchemy writes for a UTC instant. Compared as text, not parsed:
        # fromisoformat would accept e.g. any separator, letting a changed byte pass.
        return stored == when.astimezone(UTC).strftime(_SQLITE_DATETIME)
    if isinstance(stored, datetime) and stored.tzinfo is not None:
        return stored == when
    return False


def _hexed(value: object) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return "no value" if value is None else "a value that is not binary"


def _hexed_zh(value: object) -> str | None:
    if isinstance(value, bytes | bytearray | memoryview):
        return None  # the hex says it in any language
    return "空值" if value is None else "非二进制值"


def _shown(column: str, value: object) -> tuple[str, str]:
    """``column=value`` as JSON (``null``, ``"text"``), never a Python repr; (English, Chinese).

    Only a value shaped like what an event holds in that column (codes, ids, times: ASCII, no ID or
    mobile number) is shown: a column edited behind the gateway's back may hold anything, a resident's
    name or ID number among them, and the verdict is printed, pasted into reports and forwarded. Any other
    value is described by its length, never shown."""
    if isinstance(value, datetime):
        value = value.isoformat()
    if value is None or (
        isinstance(value, str)
        and _SHOWABLE.fullmatch(value)
        and not looks_like_personal_data(value)
        and not _ID_LIKE.search(value)
    ):
        text = f"{column}={json.dumps(value)}"
        return text, text
    size = len(value) if isinstance(value, str) else len(str(value))
    return (
        f"{column}: a value of {size} characters that no event holds (not shown: it may be personal data)",
        f"{column}：一个 {size} 个字符、不可能出自事件的值（可能含个人信息，不予显示）",
    )


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
            raise _VerificationFailedError(
                seq,
                "missing_event",
                f"seq {seq}",
                f"seq {row.seq}",
                expected_zh=f"第 {seq} 号事件",
                found_zh=f"第 {row.seq} 号事件",
            )
        try:
            self._check_contents(seq, row, refs)
        except _VerificationFailedError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError, UnicodeError) as exc:
            raise _VerificationFailedError(
                seq,
                "row_malformed",
                "a well-formed row",
                type(exc).__name__,
                expected_zh="格式完好的记录",
                found_zh="无法解析的记录",
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
            raise _VerificationFailedError(
                seq,
                "entry_hash_mismatch",
                entry.hex(),
                _hexed(row.entry_hash),
                found_zh=_hexed_zh(row.entry_hash),
            )
        leaf = merkle.leaf_hash(body)
        if leaf != row.leaf_hash:
            raise _VerificationFailedError(
                seq,
                "leaf_hash_mismatch",
                leaf.hex(),
                _hexed(row.leaf_hash),
                found_zh=_hexed_zh(row.leaf_hash),
            )
        doc = json.loads(body)
        for column in _TEXT_COLUMNS:
            stored = getattr(row, column)
            if stored != doc[column]:
                self._column_mismatch(seq, column, doc[column], stored)
        when = parse_timestamp(doc["occurred_at"])
        if not _stored_time_matches(row.occurred_at, when):
            self._column_mismatch(seq, "occurred_at", when.isoformat(), row.occurred_at)
        wanted = set(doc["subject_refs"])
        if refs != wanted:
            raise _VerificationFailedError(
                seq,
                "subject_refs_mismatch",
                f"{len(wanted)} subject refs",
                f"{len(refs)} indexed",
                expected_zh=f"{len(wanted)} 个居民引用",
                found_zh=f"索引中 {len(refs)} 个",
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

    @staticmethod
    def _column_mismatch(seq: int, column: str, expected: object, found: object) -> NoReturn:
        (expected_en, expected_zh), (found_en, found_zh) = _shown(column, expected), _shown(column, found)
        raise _VerificationFailedError(
            seq, "column_mismatch", expected_en, found_en, expected_zh=expected_zh, found_zh=found_zh
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
) -> tuple[PruneAnchor | None, dict[int, list[bytes]], list[tuple[str, str]]]:
    """The stored anchor (verified), the signed roots the walk must reproduce, and (Chinese, English) notes.

    Raises :class:`_VerificationFailedError` for an anchor that cannot be trusted.
    """
    try:
        anchor = latest_anchor(engine)
    except AnchorError as exc:
        raise _VerificationFailedError(
            None,
            "anchor_invalid",
            "a well-formed prune anchor",
            str(exc),
            expected_zh="格式完好的清理锚点",
            found_zh="清理锚点格式损坏",
        ) from None
    stops: dict[int, list[bytes]] = {}
    if anchor is None:
        if latest is not None and latest.tree_size > 0:
            stops[latest.tree_size] = [latest.root_hash]
        return None, stops, []
    cut = anchor.pruned_through
    if key is None:
        raise _VerificationFailedError(
            cut + 1,
            "anchor_invalid",
            "the checkpoint public key to check the anchor",
            "no key given",
            expected_zh="用于校验清理锚点的检查点公钥",
            found_zh="未提供公钥",
        )
    try:
        embedded = key_chain(checkpoint_dir, key).verify_anchor(anchor)
    except (AnchorError, CheckpointError) as exc:
        raise _VerificationFailedError(
            cut + 1,
            "anchor_invalid",
            "a signed prune anchor",
            str(exc),
            expected_zh="已签名的清理锚点",
            found_zh="清理锚点或其中的检查点签名无法验证",
        ) from None
    if embedded.tree_size < cut:
        raise _VerificationFailedError(
            cut + 1,
            "anchor_invalid",
            f"a pre-prune checkpoint of at least {cut}",
            embedded.tree_size,
            expected_zh=f"清理前的检查点，树大小至少 {cut}",
            found_zh=f"树大小 {embedded.tree_size}",
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
                expected_zh=f"与数据库中锚点一致的 {anchor_file_glob(cut)}",
                found_zh="内容不同的文件" if copies else "文件不存在",
            )
        try:
            signed += list_checkpoints(checkpoint_dir, key)
        except CheckpointError as exc:
            raise _VerificationFailedError.checkpoint_invalid(exc) from None
    notes: list[tuple[str, str]] = []

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
                cut,
                "checkpoint_root_mismatch",
                cp.root_hash.hex(),
                f"anchor frontier gives {root.hex()}",
                found_zh=f"由锚点前沿算得 {root.hex()}",
            )
    if covered:
        notes.append(
            (
                f"{covered} 个早于清理锚点的检查点由归档覆盖（用归档文件校验："
                "grassroots supervise prefix-verify）",
                f"{covered} checkpoint(s) older than the anchor are covered by the archives "
                "(check them with the archive files)",
            )
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
    checkpoint_file: str | None = None
    given = checkpoint_dir is not None
    # After an accepted restore: the log as it now is, checked against every signed checkpoint of it (the
    # lost log's up to the restored size, the restored log's since), never against the lost log's tail.
    restored: list[Checkpoint] = []
    restores: tuple[Checkpoint, ...] = ()
    restore_records: tuple[tuple[Checkpoint, str], ...] = ()
    if checkpoint_dir is not None and public_key is not None:
        try:
            if has_restores(checkpoint_dir):
                history = checkpoint_history(checkpoint_dir, public_key)
                found = history.latest
                restored = [cp for cp, _ in history.current]
                restore_records = history.restores
                restores = tuple(cp for cp, _ in restore_records)
            else:
                found = latest_checkpoint_file(checkpoint_dir, public_key)
        except CheckpointError as exc:
            return _VerificationFailedError.checkpoint_invalid(exc).report(
                0, None, None, [], checkpoint_file=None, checkpoints_given=given
            )
        if found is not None:
            checkpoint, checkpoint_file = found

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
        return failure.report(
            0,
            checkpoint,
            None,
            [],
            checkpoint_file=checkpoint_file,
            checkpoints_given=given,
            restores=restores,
        )
    cut = 0 if anchor is None else anchor.pruned_through
    for cp in restored:
        if cp.tree_size > cut and cp.root_hash not in stops.setdefault(cp.tree_size, []):
            stops[cp.tree_size].append(cp.root_hash)
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
                    bad,
                    "row_malformed",
                    "a readable row",
                    "undecodable stored value",
                    expected_zh="可读取的记录",
                    found_zh="无法解码的存储值",
                ) from None
            walker.check_rows(rows, refs)
            if walker.checked < high:
                raise _VerificationFailedError(
                    walker.checked + 1,
                    "missing_event",
                    f"seq {walker.checked + 1}",
                    "no row",
                    expected_zh=f"第 {walker.checked + 1} 号事件",
                    found_zh="没有这条记录",
                )
            if progress is not None:
                progress(walker.checked, total)
            low = high + 1
        if head_seq < walker.checked:
            raise _VerificationFailedError(
                head_seq + 1,
                "event_beyond_head",
                f"last event {head_seq}",
                f"event {walker.checked}",
                expected_zh=f"最后一条事件为第 {head_seq} 号",
                found_zh=f"第 {walker.checked} 号事件",
            )
        if walker.prev != head_hash:
            raise _VerificationFailedError(
                head_seq or None, "head_mismatch", walker.prev.hex(), head_hash.hex()
            )
        longest = max(stops, default=0)
        if longest > head_seq:
            # Named, so the auditor can compare the file with the database: which signed checkpoint says so.
            named = checkpoint is not None and checkpoint.tree_size == longest and checkpoint_file
            by_en, by_zh = (
                (f" (signed checkpoint {checkpoint_file})", f"（签名检查点 {checkpoint_file}）")
                if named
                else ("", "")
            )
            raise _VerificationFailedError(
                head_seq + 1,
                "log_shorter_than_checkpoint",
                f"at least {longest} events{by_en}",
                f"{head_seq} events",
                expected_zh=f"至少 {longest} 条事件{by_zh}",
                found_zh=f"{head_seq} 条事件",
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
                head_seq + 1,
                "subject_refs_mismatch",
                "no refs outside the kept events",
                f"{orphans}",
                expected_zh="保留事件之外没有居民引用",
                found_zh=f"{orphans} 个",
            )
    except _VerificationFailedError as failure:
        if failure.problem == "checkpoint_root_mismatch" and checkpoint_dir is not None and public_key:
            failure = _narrowed(engine, failure, checkpoint_dir, public_key, anchor)
        return failure.report(
            walker.checked,
            checkpoint,
            anchor,
            notes,
            checkpoint_file=checkpoint_file,
            checkpoints_given=given,
            restores=restores,
        )
    except read_errors as exc:
        raise AuditUnavailable(f"audit store unreadable ({type(exc).__name__})") from None
    notes += _unrecorded_restores(engine, restore_records)
    return VerificationReport(
        True,
        walker.checked,
        checkpoint=checkpoint,
        anchor=anchor,
        notes=tuple(en for _, en in notes),
        checkpoint_file=checkpoint_file,
        checkpoints_given=given,
        notes_zh=tuple(zh for zh, _ in notes),
        restores=restores,
    )


def _narrowed(
    engine: Engine,
    failure: _VerificationFailedError,
    directory: Path,
    key: Ed25519PublicKey,
    anchor: PruneAnchor | None,
) -> _VerificationFailedError:
    """A root mismatch at the latest checkpoint, narrowed to the events between the last signed checkpoint
    the log reproduces and the first it does not (the walk checks the latest only, which is enough to
    detect a rewrite but would name the latest's last event as the bad one, and every event before it as
    verified). Read again from the stored leaf hashes, which the walk has just checked against the bodies;
    only on this failure, so an intact log costs nothing more. The failure as found when no checkpoint in
    the directory narrows it."""
    cut = 0 if anchor is None else anchor.pruned_through
    bad_size = failure.seq
    if bad_size is None or bad_size <= cut:
        return failure
    try:
        signed = [
            (cp, name) for cp, name in list_checkpoint_files(directory, key) if cut < cp.tree_size <= bad_size
        ]
    except CheckpointError:
        return failure
    signed.sort(key=lambda found: found[0].tree_size)
    acc = merkle.MerkleAccumulator() if anchor is None else anchor.resume()
    confirmed: str | None = None
    confirmed_size = cut
    at = 0
    try:
        for leaf in iter_leaf_hashes(engine, cut + 1, bad_size):
            acc.append(leaf)
            while at < len(signed) and signed[at][0].tree_size == acc.size:
                cp, name = signed[at]
                at += 1
                root = acc.root()
                if root != cp.root_hash:
                    return _VerificationFailedError(
                        cp.tree_size,
                        "checkpoint_root_mismatch",
                        cp.root_hash.hex(),
                        root.hex(),
                        file=name,
                        file_size=cp.tree_size,
                        rewritten_range=(confirmed_size + 1, cp.tree_size),
                        confirmed_by=confirmed,
                    )
                confirmed, confirmed_size = name, cp.tree_size
    except (SQLAlchemyError, engine.dialect.loaded_dbapi.Error):
        pass  # the rewrite is reported as the walk found it
    return failure


def restore_event_found(engine: Engine, record: Checkpoint) -> bool | None:
    """Whether the log holds the ``audit.restore_accepted`` event of restore record ``record``'s epoch,
    among the events after the restored size (the only place it can be); ``None`` when those were pruned
    (cannot tell). :class:`AuditUnavailable` when the log cannot be read."""
    anchor = latest_anchor(engine)
    if anchor is not None and anchor.pruned_through > record.tree_size:
        return None
    try:
        return any(
            event.seq > record.tree_size and event.details.get("epoch") == record.epoch
            for event in iter_events(engine, EventQuery(kind="audit.restore_accepted"))
        )
    except SQLAlchemyError as exc:
        raise AuditUnavailable(f"audit store unreadable ({type(exc).__name__})") from None


def _unrecorded_restores(
    engine: Engine, records: tuple[tuple[Checkpoint, str], ...]
) -> list[tuple[str, str]]:
    """A note per accepted restore whose ``audit.restore_accepted`` event the log lacks (the run that signed
    the record could not write it): the record is signed evidence of the restore, so the log still
    verifies, but the log itself should say it too, and re-running the command writes it."""
    notes = []
    for record, name in records:
        if restore_event_found(engine, record) is False:
            notes.append(
                (
                    f"恢复记录 {name}（恢复纪元 {record.epoch}）在审计日志中没有对应的 "
                    "audit.restore_accepted 事件（接受恢复时未能写入）；"
                    "再次运行 grassroots audit accept-restore 即可补记。",
                    f"the restore record {name} (epoch {record.epoch}) has no audit.restore_accepted event "
                    "in the audit log (it could not be written when the restore was accepted); run "
                    "`grassroots audit accept-restore` again to record it",
                )
            )
    return notes
