"""Accepting a deliberate restore: the database came back from an older backup, and events were lost.

The signed checkpoints (:mod:`audit.checkpoints`) exist to catch exactly this: a log shorter than a
checkpoint is refused by ``audit verify`` and by ``serve``. After a disk failure, though, restoring last
night's backup is the right thing to do, and the operator needs a way forward that keeps the evidence of
what was lost and says who decided it and why.

An accepted restore is one signed checkpoint file (``...-e<N>-restore.json``) that is at once

* the record: the lost range of leaves ``[lost_from, lost_to)`` (events ``lost_from+1..lost_to``), the lost
  log's latest checkpoint (its file and root), the restored prefix's own checkpoint it matched, the
  operator's reason, and the time; and
* the first checkpoint of epoch N, the log as restored: its tree size is the restored log's, its root the
  restored log's root.

One file, so no moment exists where a record has no checkpoint or the other way round. Nothing is
deleted: the lost log's checkpoints stay beside it, and :func:`audit.checkpoints.checkpoint_history` sorts
them out as ``lost``. Epoch is part of every later checkpoint's signed body, so checkpoints of the log
after the restore (which re-uses the lost events' sequence numbers) are never compared with the lost
log's, and the lost log's are compared only up to the restored size.

Only a restore of *this* log is accepted: every signed checkpoint up to the restored size must be
reproduced by the restored events (RFC 9162 §2.1.4: the restored tree is a prefix of the signed one), and
at least one must exist unless nothing was restored. A different database, or one whose chain is broken,
is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from audit import checkpoints, merkle
from audit.anchor import latest_anchor
from audit.checkpoints import Checkpoint, CheckpointError, CheckpointSigner, checkpoint_history
from audit.log import AuditIntegrityError, AuditUnavailable, iter_leaf_hashes
from audit.verify import PROBLEMS, verify_log

#: The longest reason kept in a restore record (the gateway's own limit for typed reasons is lower).
REASON_MAX: Final = 500


class RestoreRefused(CheckpointError):
    """The restore cannot be accepted; ``str()`` says why in English, ``message_zh`` in Chinese."""


class RestoreAlreadyAccepted(RestoreRefused):
    """The restore was accepted already: ``record`` (file ``record_file``) opens the log's current epoch.
    Nothing was written; the caller may check that the acceptance's audit event exists (see the CLI)."""

    def __init__(self, message_en: str, message_zh: str, record: Checkpoint, record_file: str) -> None:
        super().__init__(message_en, message_zh)
        self.record = record
        self.record_file = record_file


@dataclass(frozen=True, slots=True)
class RestorePlan:
    """What accepting the restore would state: the database holds ``log_size`` events, the latest
    signed checkpoint ``lost`` (file ``lost_file``) says the log had more."""

    log_size: int
    restored_root: bytes
    lost: Checkpoint
    lost_file: str
    prefix_file: str | None  # the largest signed checkpoint the restored events reproduce

    @property
    def lost_events(self) -> int:
        return self.lost.tree_size - self.log_size


def plan_restore(engine: Engine, directory: Path, public_key: Ed25519PublicKey) -> RestorePlan:
    """Check that the database is a restore of this log behind its latest checkpoint, and say what
    accepting it would give up. Raises :class:`RestoreRefused` (or :class:`CheckpointError` for a
    checkpoint directory that does not verify); :class:`AuditUnavailable` when the database cannot be read."""
    history = checkpoint_history(Path(directory), public_key)
    latest = history.latest
    if latest is None:
        raise RestoreRefused(
            "there is no signed checkpoint: nothing to accept",
            "检查点目录中没有签名检查点，没有需要接受的恢复",
        )
    lost, lost_file = latest
    size = checkpoints.log_size(engine)
    if size >= lost.tree_size and lost.epoch and history.restores:
        record, record_file = history.restores[-1]
        raise RestoreAlreadyAccepted(
            f"the log holds {size} events and is not behind the latest checkpoint {lost_file}, nothing to "
            f"accept: the restore was accepted already (restore record {record_file}, epoch {record.epoch}); "
            "nothing was written",
            f"日志有 {size} 条事件，并未落后于最新签名检查点 {lost_file}，没有需要接受的恢复：恢复已被接受过"
            f"（恢复记录 {record_file}，恢复纪元 {record.epoch}），本次未写入任何内容",
            record,
            record_file,
        )
    if size >= lost.tree_size:
        raise RestoreRefused(
            f"the log holds {size} events and the latest checkpoint {lost_file} covers {lost.tree_size}: "
            "the log is not behind it, nothing to accept",
            f"日志有 {size} 条事件，最新签名检查点 {lost_file} 记载 {lost.tree_size} 条：日志并未落后，"
            "没有需要接受的恢复",
        )
    # The restored events themselves must be intact (chain, leaves, head): a restore is accepted for what
    # it is, a shorter copy of the same log, never to launder a broken one.
    report = verify_log(engine, anchor_key=public_key)
    if not report.ok:
        zh, en = PROBLEMS.get(report.problem or "", ("校验未通过", "verification failed"))
        where = "" if report.first_bad_seq is None else f" at event {report.first_bad_seq}"
        where_zh = "" if report.first_bad_seq is None else f"第 {report.first_bad_seq} 号事件"
        raise RestoreRefused(
            f"the restored log itself is broken{where}: {report.problem}: {en}",
            f"恢复后的日志本身已被破坏：{where_zh}{zh}（{report.problem}）",
        )
    root, prefix_file = _restored_prefix(engine, history.current, size)
    return RestorePlan(size, root, lost, lost_file, prefix_file)


def accept_restore(
    engine: Engine,
    signer: CheckpointSigner,
    directory: Path,
    reason: str,
    shown: RestorePlan,
    *,
    after_signing: Callable[[Checkpoint], None] | None = None,
    wait_s: float = checkpoints.CHAIN_LOCK_WAIT_S,
) -> Checkpoint:
    """Sign and store the restore record (the first checkpoint of the new epoch) for ``shown``.

    All of it under :func:`audit.checkpoints.chain_lock`, everything checked again once the lock is held:
    a restore another run accepted meanwhile is refused with :class:`RestoreAlreadyAccepted` naming its
    record (two records for one epoch are a fork every verifier refuses), as is a database or directory
    that changed since ``shown`` was made (what the operator confirmed) and a key a handover has retired.
    ``after_signing(record)`` runs under the lock once the record is stored (the CLI records the act there,
    so a run that finds the restore accepted also finds its event, or finds it missing). ``reason`` must
    not be blank; the caller checks it for personal data (it is kept in the record and the audit log).
    """
    reason = reason.strip()
    if not reason or len(reason) > REASON_MAX:
        raise RestoreRefused(
            f"a reason of 1 to {REASON_MAX} characters is required",
            f"请填写理由（1 到 {REASON_MAX} 个字）",
        )
    directory = Path(directory)
    with checkpoints.chain_lock(directory, wait_s):
        checkpoints.latest_signable(directory, signer)  # refuses a retired key before anything is signed
        try:
            plan = plan_restore(engine, directory, signer.public_key)
        except RestoreAlreadyAccepted as exc:
            raise RestoreAlreadyAccepted(
                f"another run accepted this restore meanwhile: the restore record {exc.record_file} (epoch "
                f"{exc.record.epoch}) is in {directory}; nothing was written",
                f"另一次运行已在此期间接受了这次恢复：检查点目录 {directory} 中已有恢复记录 {exc.record_file}"
                f"（恢复纪元 {exc.record.epoch}），本次未写入任何内容",
                exc.record,
                exc.record_file,
            ) from None
        if plan != shown:
            raise RestoreRefused(
                "the database or the checkpoint directory changed since the restore was shown; nothing was "
                "written; run again",
                "显示恢复情况之后，数据库或检查点目录已发生变化，本次未写入任何内容；请重新运行",
            )
        record = signer.sign(
            plan.log_size,
            plan.restored_root,
            epoch=plan.lost.epoch + 1,
            restore={
                "lost_from": plan.log_size,
                "lost_to": plan.lost.tree_size,
                "lost_root": plan.lost.root_hash.hex(),
                "lost_checkpoint": plan.lost_file,
                "prefix_checkpoint": plan.prefix_file,
                "reason": reason,
            },
        )
        checkpoints._store(directory, record)
        if after_signing is not None:
            after_signing(record)
    return record


def accepted_restores(
    directory: Path | None, public_key: Ed25519PublicKey
) -> tuple[tuple[Checkpoint, str], ...]:
    """The verified restore records in ``directory`` with their files (none for no or a missing directory);
    raises :class:`CheckpointError` for a history that does not verify."""
    if directory is None or not Path(directory).is_dir() or not checkpoints.has_restores(Path(directory)):
        return ()
    return checkpoint_history(Path(directory), public_key).restores


def _restored_prefix(
    engine: Engine, current: tuple[tuple[Checkpoint, str], ...], size: int
) -> tuple[bytes, str | None]:
    """The root of the first ``size`` events, and the largest signed checkpoint it reproduces.

    Every checkpoint of the log up to ``size`` must be reproduced (the restored tree is a prefix of the
    signed one); on a pruned log those inside the pruned prefix are the archives' to check, and the
    prune anchor's own signed checkpoint counts. Refuses when none is, unless nothing was restored.
    """
    try:
        anchor = latest_anchor(engine)
        acc = merkle.MerkleAccumulator() if anchor is None else anchor.resume()
        signed = [(cp, name) for cp, name in current if acc.size <= cp.tree_size <= size]
        if anchor is not None and acc.size <= anchor.checkpoint.get("tree_size", -1) <= size:
            signed.append((_embedded(anchor.checkpoint), "prune anchor"))
        stops: dict[int, list[tuple[Checkpoint, str]]] = {}
        for cp, name in signed:
            stops.setdefault(cp.tree_size, []).append((cp, name))
        matched: tuple[int, str] | None = None

        def check(at: int) -> None:
            nonlocal matched
            for cp, name in stops.get(at, ()):
                if acc.root() != cp.root_hash:
                    raise RestoreRefused(
                        f"the restored events 1..{at} do not reproduce the signed checkpoint {name}: this "
                        "database is not a restore of this log (a different or rewritten log)",
                        f"恢复后的事件 1..{at} 与签名检查点 {name} 不一致：该数据库不是本日志的备份恢复"
                        "（而是另一份日志，或历史被改写）",
                    )
                if at > 0 and (matched is None or at >= matched[0]):
                    matched = (at, name)

        check(acc.size)
        for leaf in iter_leaf_hashes(engine, acc.size + 1, size):
            acc.append(leaf)
            check(acc.size)
    except AuditIntegrityError as exc:
        raise RestoreRefused(f"the restored log is not contiguous: {exc}", "恢复后的日志事件不连续") from None
    except SQLAlchemyError as exc:
        raise AuditUnavailable(f"audit store unavailable ({type(exc).__name__})") from None
    if size > 0 and matched is None:
        raise RestoreRefused(
            f"no signed checkpoint covers any of the restored events 1..{size}, so nothing shows they are "
            "this log's",
            f"没有任何签名检查点覆盖恢复后的事件 1..{size}，无法证明它们属于本日志",
        )
    return acc.root(), None if matched is None or matched[1] == "prune anchor" else matched[1]


def _embedded(body: dict[str, object]) -> Checkpoint:
    return Checkpoint.from_json({**body, "origin": checkpoints.ORIGIN, "v": checkpoints.FORMAT_VERSION})
