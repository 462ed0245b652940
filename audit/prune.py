"""Retention pruning: delete archived months past the retention period, behind a signed prefix anchor.

PIPL Art. 56 asks that processing records be kept at least three years (configurable, default 3); keeping
records derived from personal data for ever is itself against minimisation (PIPL Art. 19, GB/T 35273-2020
§6.1). :func:`prune` removes events ``seq <= N`` (and their subject-ref index rows) only when

* every such event is older than the retention period;
* every such event is in archive files that verify, streamed, right now (signature, file digest, every
  link and leaf, range root, and the live log's leaves for the same range);
* ``N`` is the last seq of an archived month: whole archived months go, oldest first, never a gap.

It first signs a checkpoint of the full log (so the anchor's frontier is checked against a root taken
before anything was deleted), then writes the anchor (:mod:`audit.anchor`) to the external checkpoint
location and, in one transaction, stores it in ``audit_prune_anchors``, deletes the rows (the delete
triggers allow exactly ``seq <= N`` once that row exists) and appends a ``supervision.events_pruned``
event. :func:`plan_prune` is the dry run: what would go, and why not.

Incident evidence rows (``audit_incident_evidence``) keep their seq, leaf hash and proof: they are case
files whose proofs stay valid against the incident's recorded tree; the events themselves are in the
archives.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine, delete, func, insert, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from audit import merkle
from audit.anchor import AnchorError, PruneAnchor, anchor_file_name, latest_anchor
from audit.archive import (
    DEFAULT_RETENTION_YEARS,
    latest_of_each_month,
    manifest_sha256,
    month_has_ended,
    month_seq_range,
    retention_cutoff,
    verify_archive,
)
from audit.checkpoints import (
    CheckpointError,
    CheckpointSigner,
    KeyChain,
    key_chain,
    list_checkpoints,
    write_checkpoint,
)
from audit.events import AuditEvent, Outcome, format_timestamp
from audit.log import GENESIS_HASH, AuditLog, iter_leaf_hashes
from audit.query import CHINA_STANDARD_TIME, beijing_month, month_bounds, stored_utc
from audit.tables import audit_archives, audit_events, audit_prune_anchors, audit_subject_refs
from grassroots_common.files import fsync_directory

PRUNED_KIND: Final = "supervision.events_pruned"


class PruneRefused(Exception):
    """Nothing may be pruned (the plan says why); nothing was changed."""

    def __init__(self, plan: PrunePlan) -> None:
        super().__init__("; ".join(plan.reasons) or "nothing to prune")
        self.plan = plan


@dataclass(frozen=True, slots=True)
class PrunePlan:
    """What :func:`prune` would remove now, and why it stops where it does."""

    pruned_through: int  # already pruned (0: nothing yet)
    through_seq: int | None  # would prune through this seq (None: nothing)
    events: int
    months: tuple[dict[str, Any], ...]  # each archived month looked at, with its verdict
    reasons: tuple[str, ...]  # why pruning stops (or cannot start)
    cutoff: datetime
    retention_years: int
    reasons_zh: tuple[str, ...] = ()  # the same reasons in Chinese, naming the month and what to do

    def to_json(self) -> dict[str, Any]:
        return {
            "pruned_through_seq": self.pruned_through,
            "would_prune_through_seq": self.through_seq,
            "events": self.events,
            "months": list(self.months),
            "reasons_zh": list(self.reasons_zh),
            "reasons": list(self.reasons),
            "cutoff": format_timestamp(self.cutoff),
            "retention_years": self.retention_years,
        }


@dataclass(frozen=True, slots=True)
class PruneResult:
    anchor: PruneAnchor
    anchor_file: Path
    events_deleted: int
    refs_deleted: int
    plan: PrunePlan
    change: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.change,
            "anchor_file": self.anchor_file.name,
            "anchor": self.anchor.to_json(),
        }


def checked_anchor(engine: Engine, keys: KeyChain) -> PruneAnchor | None:
    """The latest stored anchor, signed by the key of ``keys`` in office when it was signed (raises
    :class:`AnchorError`): an anchor signed before a key rotation still counts."""
    anchor = latest_anchor(engine)
    if anchor is not None:
        keys.verify_anchor(anchor)
    return anchor


def _newest_between(engine: Engine, first: int, last: int) -> datetime | None:
    c = audit_events.c
    with engine.connect() as conn:
        newest = conn.execute(select(func.max(c.occurred_at)).where(c.seq.between(first, last))).scalar_one()
    if not isinstance(newest, datetime):
        return None
    return stored_utc(newest)


def _oldest_at(engine: Engine, seq: int) -> datetime | None:
    with engine.connect() as conn:
        when = conn.execute(select(audit_events.c.occurred_at).where(audit_events.c.seq == seq)).scalar()
    return when if isinstance(when, datetime) else None


def _chosen_archives(engine: Engine, cut: int) -> list[Any]:
    """One archive per month, the latest (the one reaching furthest), in seq order.

    Archiving a month again supersedes the earlier archive of it; older, shorter archives of a month are
    never planned on."""
    c = audit_archives.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(c.archive_id, c.month, c.first_seq, c.last_seq, c.created_at).where(c.last_seq > cut)
        ).all()
    latest = latest_of_each_month(rows).values()
    return sorted(latest, key=lambda r: (int(r.first_seq), int(r.last_seq)))


def prunable_from(month: str, newest: datetime | None, years: int) -> datetime:
    """The first instant (Beijing time) at which every event of ``month`` (and ``newest``, an event at its
    edge that may belong to the next month) is older than the retention period."""
    base = month_bounds(month)[1]
    if newest is not None and stored_utc(newest) >= base:
        base = stored_utc(newest) + timedelta(microseconds=1)
    local = base.astimezone(CHINA_STANDARD_TIME)
    try:
        return local.replace(year=local.year + years)
    except ValueError:  # 29 February
        return local.replace(year=local.year + years, month=3, day=1)


def _shown(when: datetime) -> str:
    local = when.astimezone(CHINA_STANDARD_TIME)
    return local.strftime("%Y-%m-%d" if local.time() == time(0) else "%Y-%m-%d %H:%M")


def _retention_reason(month: str, newest: datetime | None, cutoff: datetime, years: int) -> tuple[str, str]:
    ready = _shown(prunable_from(month, newest, years))
    return (
        f"not_past_retention: {month} is within the retention period ({years} years, PIPL Art. 56): it has "
        f"events newer than {format_timestamp(cutoff)}; it can be pruned from {ready} (Beijing time)",
        f"{month} 仍在保存期内（{years} 年，《个人信息保护法》第五十六条），最早可于 {ready}（北京时间）清理",
    )


def plan_prune(
    engine: Engine,
    archive_dir: Path,
    keys: KeyChain,
    now: datetime,
    *,
    years: int = DEFAULT_RETENTION_YEARS,
    through_month: str | None = None,
    through_seq: int | None = None,
) -> PrunePlan:
    """The dry run: archived months after the current anchor, oldest first, each checked, up to the first
    that may not go. ``through_month``/``through_seq`` stop earlier; a ``through_seq`` that is not the end
    of an archived month is refused outright (pruning never cuts a month in half).

    Each month is planned on its latest archive only, and only if that archive was made after the month
    ended and reaches the month's last event (a partial archive is never relied on). The first blocker is
    reported: retention before a missing archive, so a month still kept says when it may go.

    ``keys`` are the checkpoint keys (:func:`audit.checkpoints.key_chain`): the anchor and each archive count
    when signed by the key in office at the time, before a rotation or after it."""
    cutoff = retention_cutoff(now, years)
    anchor = checked_anchor(engine, keys)
    cut = 0 if anchor is None else anchor.pruned_through
    rows = _chosen_archives(engine, cut)
    oldest = _oldest_at(engine, cut + 1)
    boundaries = {int(r.last_seq) for r in rows}
    reasons: list[str] = []
    reasons_zh: list[str] = []

    def refuse(en: str, zh: str) -> None:
        reasons.append(en)
        reasons_zh.append(zh)

    months: list[dict[str, Any]] = []
    covered = cut
    if through_seq is not None and through_seq > cut and through_seq not in boundaries:
        refuse(
            # The number typed is not repeated back: it may be anything (an ID number, say).
            "not_month_boundary: the event given (through_seq) is not the last event of an archived month",
            "所给的事件序号（through_seq）不是某个已归档月份的最后一个事件，只能按整月清理",
        )
        rows = []
    for row in rows:
        archive_id, month, first, last = (
            str(row.archive_id),
            str(row.month),
            int(row.first_seq),
            int(row.last_seq),
        )
        if (through_month is not None and month > through_month) or (
            through_seq is not None and covered >= through_seq
        ):
            break
        if last <= covered:
            continue  # wholly inside the months before it (their ranges overlap at the edges)
        entry: dict[str, Any] = {
            "month": month,
            "archive_id": archive_id,
            "first_seq": first,
            "last_seq": last,
            # Made before the month ended: a partial archive, never relied on (see below).
            "complete": month_has_ended(month, stored_utc(row.created_at)),
        }
        months.append(entry)
        if first > covered + 1:
            gap_at = _oldest_at(engine, covered + 1)
            gap_month = beijing_month(gap_at) if gap_at is not None else month
            gap_newest = _newest_between(engine, covered + 1, first - 1)
            if gap_newest is not None and gap_newest >= cutoff:
                entry["verdict"] = "not_past_retention"
                refuse(*_retention_reason(gap_month, gap_newest, cutoff, years))
            else:
                entry["verdict"] = "not_archived"
                refuse(
                    f"not_archived: events {covered + 1}..{first - 1} ({gap_month}) are in no archive; "
                    f"archive {gap_month} first",
                    f"第 {covered + 1}..{first - 1} 号事件（{gap_month}）不在任何归档中，"
                    f"请先归档 {gap_month}",
                )
            break
        newest = _newest_between(engine, covered + 1, last)
        if newest is None or newest >= cutoff:
            entry["verdict"] = "not_past_retention"
            refuse(*_retention_reason(month, newest, cutoff, years))
            break
        month_last = month_seq_range(engine, month)
        if not entry["complete"] or (month_last is not None and month_last[1] > last):
            entry["verdict"] = "partial_archive"
            refuse(
                f"not_archived: {month} has only a partial archive ({archive_id}, made before the month "
                f"ended or not reaching its last event); archive {month} again",
                f"{month} 只有部分归档（{archive_id}，在该月结束前生成或未包含其最后一个事件），"
                f"请重新归档 {month}",
            )
            break
        manifest = Path(archive_dir) / f"{archive_id}.manifest.json"
        verdict = verify_archive(manifest, keys, engine)
        if not verdict.ok:
            entry["verdict"] = "archive_invalid"
            refuse(
                f"archive_invalid: {archive_id}: {verdict.problem}",
                f"{month} 的归档 {archive_id} 现在验证未通过（{verdict.problem_zh or '原因见英文说明'}），"
                "请运行 grassroots supervise archive-verify 查看",
            )
            break
        entry["verdict"] = "prunable"
        entry["manifest_sha256"] = manifest_sha256(manifest)
        covered = last
    else:
        if not reasons:
            # Every archived month was looked at: say what stops the next month (retention first).
            following = oldest if covered == cut else _oldest_at(engine, covered + 1)
            if not isinstance(following, datetime):
                refuse(
                    "nothing_to_prune: no events after the archived months",
                    "已归档月份之后没有事件，没有可清理的内容",
                )
            elif (through_month is None or beijing_month(following) <= through_month) and (
                through_seq is None or covered < through_seq
            ):
                nxt = beijing_month(following)
                span = month_seq_range(engine, nxt)
                nxt_newest = _newest_between(engine, covered + 1, span[1]) if span else following
                if nxt_newest is not None and nxt_newest >= cutoff:
                    # Not yet archived either, but archiving would not help before this date.
                    refuse(*_retention_reason(nxt, nxt_newest, cutoff, years))
                else:
                    refuse(
                        f"not_archived: the next month ({nxt}) has no archive; archive {nxt} first",
                        f"下一个月份 {nxt} 尚未归档，请先归档 {nxt}",
                    )
    if through_seq is not None and covered != max(through_seq, cut) and not reasons:
        refuse(
            f"not_month_boundary: event {through_seq} is not where an archived month ends",
            f"第 {through_seq} 号事件不是某个已归档月份的结束处，只能按整月清理",
        )
    target = covered if covered > cut else None
    if target is None and not reasons:
        refuse(
            f"nothing_to_prune: the log is already pruned through event {cut}",
            f"日志已清理至第 {cut} 号事件，没有可清理的内容",
        )
    return PrunePlan(
        pruned_through=cut,
        through_seq=target,
        events=covered - cut,
        months=tuple(months),
        reasons=tuple(reasons),
        cutoff=cutoff,
        retention_years=years,
        reasons_zh=tuple(reasons_zh),
    )


def _write_external(path: Path, data: bytes) -> None:
    """Write a new file durably and never over an existing one (temporary file, fsync, hard link), and sync
    its directory: the anchor's name must be on disk before any event is deleted, or a power cut could
    leave a pruned database whose anchor outside it is gone."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    finally:
        tmp.unlink()
    fsync_directory(path.parent)


#: Why a login role that may not delete events cannot prune (English, Chinese): what to run instead.
NOT_OWNER_REASON: Final = (
    "database_refused: this database login may not delete audit events (the recommended PostgreSQL "
    "setup: the gateway logs in as a role that is not the schema owner, README: PostgreSQL deployment); "
    "prune on the server with the owner's login, the one `grassroots db upgrade` uses: "
    "GRASSROOTS_DATABASE_URL=<owner's URL> grassroots audit prune-as-owner --execute",
    "网关登录数据库所用的角色不能删除审计事件（PostgreSQL 推荐部署：网关不以数据库结构所有者登录，"
    "见 README「PostgreSQL deployment」）；请在服务器上用数据库所有者的登录（即运行 grassroots db upgrade "
    "所用的）执行清理：GRASSROOTS_DATABASE_URL=<所有者的数据库地址> "
    "grassroots audit prune-as-owner --execute",
)


def can_prune(engine: Engine) -> bool:
    """Whether this database login may carry out a prune: write the anchor row and delete the pruned rows.

    On PostgreSQL only the schema's owner may (README: PostgreSQL deployment); the gateway's recommended
    login role and the insert/select writer role may not, which is what keeps a stolen gateway credential
    from deleting events. The delete triggers still allow only ``seq <=`` an anchored seq, whoever asks.
    SQLite has no roles: its triggers are the guard."""
    if engine.dialect.name != "postgresql":
        return True
    with engine.connect() as conn:
        return bool(
            conn.exec_driver_sql(
                "SELECT has_table_privilege('audit_prune_anchors', 'INSERT') "
                "AND has_table_privilege('audit_events', 'DELETE') "
                "AND has_table_privilege('audit_subject_refs', 'DELETE')"
            ).scalar()
        )


def prune(
    engine: Engine,
    signer: CheckpointSigner,
    archive_dir: Path,
    checkpoint_dir: Path,
    *,
    actor: str,
    now: datetime | None = None,
    years: int = DEFAULT_RETENTION_YEARS,
    through_month: str | None = None,
    through_seq: int | None = None,
    actor_org: str | None = None,
    actor_roles: tuple[str, ...] = (),
    request_id: str | None = None,
    source: str | None = None,
) -> PruneResult:
    """Prune what :func:`plan_prune` allows; raises :class:`PruneRefused` (nothing changed) otherwise.
    ``source``: where the request to prune came from, for its event (None: no request, the CLI)."""
    when = (now or datetime.now(UTC)).astimezone(UTC)
    keys = key_chain(checkpoint_dir, signer.public_key)
    plan = plan_prune(
        engine,
        archive_dir,
        keys,
        when,
        years=years,
        through_month=through_month,
        through_seq=through_seq,
    )
    if plan.through_seq is None:
        raise PruneRefused(plan)
    # Before anything is signed or written (checkpoint, external anchor): a login that may not delete
    # events would otherwise leave an anchor file outside the database for a prune that never happened.
    if not can_prune(engine):
        raise PruneRefused(replace(plan, reasons=(NOT_OWNER_REASON[0],), reasons_zh=(NOT_OWNER_REASON[1],)))
    target = plan.through_seq
    previous = checked_anchor(engine, keys)
    # A checkpoint over the full log first: the anchor's frontier must reproduce its root later.
    checkpoint = write_checkpoint(engine, signer, checkpoint_dir)
    acc = merkle.MerkleAccumulator() if previous is None else previous.resume()
    for leaf in iter_leaf_hashes(engine, acc.size + 1, target):
        acc.append(leaf)
    with engine.connect() as conn:
        entry_hash = bytes(
            conn.execute(select(audit_events.c.entry_hash).where(audit_events.c.seq == target)).scalar_one()
        )
    relied_on = [
        {k: m[k] for k in ("archive_id", "month", "first_seq", "last_seq", "manifest_sha256")}
        for m in plan.months
        if m.get("verdict") == "prunable"
    ]
    unsigned = PruneAnchor(
        pruned_through=target,
        entry_hash=entry_hash,
        frontier=tuple(acc.frontier()),
        archives=(*(previous.archives if previous else ()), *relied_on),
        # Without its origin and version: the anchor must never contain a checkpoint's signed form
        # (CheckpointSigner.sign_payload refuses such a document); verification puts them back.
        checkpoint={k: v for k, v in checkpoint.to_json().items() if k not in ("origin", "v")},
        previous=None
        if previous is None
        else {
            "pruned_through": previous.pruned_through,
            "sha256": hashlib.sha256(previous.document()).hexdigest(),
        },
        created_at=when,
        actor=actor,
        key_id=signer.key_id,
    )
    anchor = PruneAnchor(
        **{f: getattr(unsigned, f) for f in PruneAnchor.__dataclass_fields__ if f != "signature"},
        signature=signer.sign_payload(unsigned.signed_payload()),
    )
    document = anchor.document()
    # External copy first: a pruned database must never exist without its anchor outside it.
    anchor_file = Path(checkpoint_dir) / anchor_file_name(target, when, uuid.uuid4().hex[:8])
    try:
        _write_external(anchor_file, document)
    except FileExistsError:
        raise PruneRefused(
            replace(
                plan,
                reasons=(f"conflict: another prune through event {target} is under way",),
                reasons_zh=(f"另一项清理（至第 {target} 号事件）正在进行，请稍后再试",),
            )
        ) from None
    change: dict[str, Any] = {
        "kind": PRUNED_KIND,
        "actor": actor,
        "pruned_through_seq": target,
        "previous_pruned_through_seq": plan.pruned_through,
        "events": target - plan.pruned_through,
        "months": [m["month"] for m in relied_on],
        "archives": [m["archive_id"] for m in relied_on],
        "anchor_sha256": hashlib.sha256(document).hexdigest(),
        "checkpoint_tree_size": checkpoint.tree_size,
        "retention_years": years,
    }
    event = AuditEvent(
        kind=PRUNED_KIND,
        outcome=Outcome.OK,
        actor=actor,
        actor_org=actor_org,
        actor_roles=actor_roles,
        request_id=request_id,
        details={k: v for k, v in change.items() if k not in ("kind", "actor")},
        occurred_at=when,
        source=source,
    )
    try:
        with engine.begin() as conn:
            # The anchor row first: the delete triggers let rows go only at or below an anchored seq.
            conn.execute(
                insert(audit_prune_anchors).values(
                    pruned_through=target, document=document.decode("utf-8"), created_at=when
                )
            )
            refs = conn.execute(delete(audit_subject_refs).where(audit_subject_refs.c.seq <= target)).rowcount
            events = conn.execute(delete(audit_events).where(audit_events.c.seq <= target)).rowcount
            AuditLog(engine).append_within(conn, [event])
    except IntegrityError:
        raise PruneRefused(
            replace(
                plan,
                reasons=(f"conflict: event {target} was anchored by another prune meanwhile",),
                reasons_zh=(f"第 {target} 号事件已被另一项清理锚定，请重新查看清理计划",),
            )
        ) from None
    except DBAPIError as exc:
        # Privileges were checked above; whatever else the database refused: only the class name (driver
        # messages may quote parameters).
        raise PruneRefused(
            replace(
                plan,
                reasons=(f"database_refused: {type(exc.orig).__name__}; nothing was deleted",),
                reasons_zh=(f"数据库拒绝了本次清理（{type(exc.orig).__name__}），未删除任何事件",),
            )
        ) from None
    return PruneResult(anchor, anchor_file, int(events), int(refs), plan, change)


def archives_for_pruned(engine: Engine) -> dict[str, Any] | None:
    """For lookups that reach into a pruned period: how far the log is pruned and which archives hold it.

    ``None`` when nothing was pruned. Complaint and transparency answers attach this instead of silently
    returning fewer events.
    """
    try:
        anchor = latest_anchor(engine)
    except AnchorError:
        return {"pruned_through_seq": None, "archives": [], "problem": "prune anchor unreadable"}
    if anchor is None:
        return None
    return {
        "pruned_through_seq": anchor.pruned_through,
        "pruned_at": format_timestamp(anchor.created_at),
        "archives": [
            {k: a.get(k) for k in ("archive_id", "month", "first_seq", "last_seq")} for a in anchor.archives
        ],
    }


@dataclass(frozen=True, slots=True)
class PrefixVerification:
    """Outcome of :func:`verify_archived_prefix`: ``problem`` in English, ``problem_zh`` in Chinese."""

    ok: bool
    pruned_through: int
    events: int
    checkpoints_checked: int
    problem: str | None = None
    problem_zh: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "pruned_through_seq": self.pruned_through,
            "events": self.events,
            "checkpoints_checked": self.checkpoints_checked,
            "problem": self.problem,
            "problem_zh": self.problem_zh,
        }


def verify_archived_prefix(
    engine: Engine,
    archive_dir: Path,
    public_key: Ed25519PublicKey,
    checkpoint_dir: Path | None = None,
) -> PrefixVerification:
    """Check the pruned prefix against its archives: the deep check behind "covered by the archives".

    Streams every archive the (verified) anchor relies on, in seq order: manifest digest as named by the
    anchor, each file verified (:func:`audit.archive.verify_archive`), the events gapless and chained from
    genesis to the anchor's chain hash, and the leaves reproducing the anchor's frontier exactly. Every
    checkpoint in ``checkpoint_dir`` of size ``<= N`` — those :func:`audit.verify.verify_log` cannot
    reproduce from the frontier — is checked against the root rebuilt from the archived leaves.

    ``public_key`` is the pinned checkpoint key; the handovers in ``checkpoint_dir`` lead from it to every
    key that signed the anchor and the archives (:class:`audit.checkpoints.KeyChain`).
    """
    try:
        keys = key_chain(checkpoint_dir, public_key)
        anchor = checked_anchor(engine, keys)
        signed: dict[int, list[bytes]] = {}
        if anchor is not None and checkpoint_dir is not None:
            for cp in list_checkpoints(checkpoint_dir, public_key):
                if 0 < cp.tree_size <= anchor.pruned_through:
                    signed.setdefault(cp.tree_size, []).append(cp.root_hash)
    except AnchorError as exc:
        return PrefixVerification(
            False, 0, 0, 0, str(exc), "清理锚点无法验证（未签名、签名不符或与日志不一致）"
        )
    except CheckpointError as exc:
        return PrefixVerification(False, 0, 0, 0, str(exc), exc.message_zh)
    if anchor is None:
        return PrefixVerification(True, 0, 0, 0)
    acc = merkle.MerkleAccumulator()
    state: dict[str, Any] = {"prev": GENESIS_HASH, "problem": None, "checked": 0}

    def take(seq: int, prev_hash: bytes, entry: bytes, leaf: bytes) -> None:
        if state["problem"] is not None or seq <= acc.size or seq > anchor.pruned_through:
            return  # months overlap at their edges; events after the cut are the live log's
        if seq != acc.size + 1:
            state["problem"] = (
                f"events {acc.size + 1}..{seq - 1} are in none of the anchor's archives",
                f"第 {acc.size + 1} 至 {seq - 1} 条事件不在锚点所依据的任何归档中",
            )
        elif prev_hash != state["prev"]:
            state["problem"] = (
                f"event {seq} does not link to the archived event before it",
                f"第 {seq} 条事件与归档中的前一条事件链接不上",
            )
        else:
            acc.append(leaf)
            state["prev"] = entry
            for root in signed.get(acc.size, ()):
                state["checked"] += 1
                if acc.root() != root:
                    state["problem"] = (
                        f"checkpoint of size {acc.size} disagrees with the archived events",
                        f"树大小为 {acc.size} 的签名检查点与归档的事件不一致",
                    )

    def failed(problem: str, problem_zh: str) -> PrefixVerification:
        return PrefixVerification(
            False, anchor.pruned_through, acc.size, state["checked"], problem, problem_zh
        )

    for item in sorted(anchor.archives, key=lambda a: (int(a["first_seq"]), int(a["last_seq"]))):
        manifest = Path(archive_dir) / f"{item['archive_id']}.manifest.json"
        try:
            digest = manifest_sha256(manifest)
        except OSError:
            return failed(f"archive {item['archive_id']} is missing", f"归档 {item['archive_id']} 不存在")
        if digest != item["manifest_sha256"]:
            return failed(
                f"archive {item['archive_id']} is not the one the anchor relies on",
                f"归档 {item['archive_id']} 不是锚点所依据的那一份（清单摘要不符）",
            )
        verdict = verify_archive(manifest, keys, on_event=take)
        if not verdict.ok:
            return failed(
                f"archive {item['archive_id']}: {verdict.problem}",
                f"归档 {item['archive_id']}：{verdict.problem_zh or '验证未通过'}",
            )
        if state["problem"] is not None:
            return failed(*state["problem"])
    if acc.size != anchor.pruned_through:
        return failed(
            f"the archives hold events 1..{acc.size}, the anchor says 1..{anchor.pruned_through}",
            f"归档包含第 1 至 {acc.size} 条事件，锚点记载的是第 1 至 {anchor.pruned_through} 条",
        )
    if state["prev"] != anchor.entry_hash:
        return failed(
            "the last archived event's chain hash differs from the anchor's",
            "归档中最后一条事件的链哈希与锚点记载的不同",
        )
    if tuple(acc.frontier()) != anchor.frontier:
        return failed(
            "the archived leaves do not reproduce the anchor's frontier",
            "归档事件重建不出锚点记载的默克尔树前沿",
        )
    return PrefixVerification(True, anchor.pruned_through, acc.size, state["checked"])
