"""Retention pruning behind a signed prefix anchor: refusals, verification afterwards, every tamper class,
roots and proofs equal to the full log's, and the database guards (SQLite triggers, PostgreSQL role)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from audit import (
    PRUNED_KIND,
    ArchiveError,
    AuditLog,
    CheckpointSigner,
    KeyChain,
    PruneRefused,
    archive_month,
    archives_for_pruned,
    consistency,
    inclusion_proofs,
    merkle,
    plan_prune,
    postgres_writer_role_sql,
    prune,
    record_archive,
    verify_archive,
    verify_log,
    write_checkpoint,
)
from audit.anchor import anchor_file_glob, anchor_file_name, latest_anchor
from audit.proofs import ProofBuilder
from audit.tables import WRITER_ROLE, audit_events, audit_prune_anchors, audit_subject_refs
from tests.audit.conftest import Store
from tests.audit.helpers import drop_triggers, make_event
from tests.audit.test_merkle import reference_mth

JAN = datetime(2026, 1, 10, 2, 0, tzinfo=UTC)
FEB = datetime(2026, 2, 10, 2, 0, tzinfo=UTC)
MAR = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
LATER = datetime(2029, 3, 5, tzinfo=UTC)  # January and February 2026 are past three years; March is not


@pytest.fixture
def signer() -> CheckpointSigner:
    return CheckpointSigner.generate()


class World:
    def __init__(self, store: Store, signer: CheckpointSigner, root: Path) -> None:
        self.store, self.signer = store, signer
        self.engine = store.engine
        self.archives = root / "archives"
        self.checkpoints = root / "checkpoints"
        self.log = AuditLog(self.engine)

    def populate(self) -> None:
        self.log.append_many(make_event(i, occurred_at=JAN + timedelta(minutes=i)) for i in range(10))
        self.log.append_many(make_event(i, occurred_at=FEB + timedelta(minutes=i)) for i in range(10, 21))
        self.log.append_many(make_event(i, occurred_at=MAR + timedelta(minutes=i)) for i in range(21, 27))

    def archive(self, month: str) -> Path:
        result = archive_month(self.engine, self.signer, self.archives, month)
        with Session(self.engine) as session:
            record_archive(session, result, "auditor", LATER)
            session.commit()
        return result.manifest_file

    def prune(self, **kwargs: object) -> object:
        return prune(
            self.engine,
            self.signer,
            self.archives,
            self.checkpoints,
            actor="auditor",
            now=LATER,
            **kwargs,  # type: ignore[arg-type]
        )

    @property
    def keys(self) -> KeyChain:
        return KeyChain.pinned(self.signer.public_key)

    def verify(self) -> object:
        return verify_log(self.engine, self.checkpoints, self.signer.public_key, chunk=4)

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(audit_events)).scalar_one())


@pytest.fixture
def world(store: Store, signer: CheckpointSigner, tmp_path: Path) -> World:
    w = World(store, signer, tmp_path)
    w.populate()
    write_checkpoint(w.engine, signer, w.checkpoints)
    return w


def test_prune_then_verify_passes_and_roots_and_proofs_are_unchanged(world: World) -> None:
    world.archive("2026-01")
    world.archive("2026-02")
    size = world.log.size()
    before = ProofBuilder.from_engine(world.engine, size)
    roots = {n: before.subtree_root(0, n) for n in range(1, size + 1)}
    wanted = list(range(22, size + 1))
    _, proofs_before = inclusion_proofs(world.engine, wanted, size)

    result = world.prune()

    assert result.anchor.pruned_through == 21  # type: ignore[attr-defined]
    assert result.events_deleted == 21  # type: ignore[attr-defined]
    assert [a["month"] for a in result.anchor.archives] == ["2026-01", "2026-02"]  # type: ignore[attr-defined]
    assert world.count() == size - 21 + 1  # the prune event itself was appended
    with world.engine.connect() as conn:
        low_refs = conn.execute(
            sa.select(sa.func.count()).select_from(audit_subject_refs).where(audit_subject_refs.c.seq <= 21)
        ).scalar_one()
        last_kind = conn.execute(
            sa.select(audit_events.c.kind).order_by(audit_events.c.seq.desc()).limit(1)
        ).scalar_one()
    assert low_refs == 0
    assert last_kind == PRUNED_KIND
    report = world.verify()
    assert report.ok, report.describe()  # type: ignore[attr-defined]
    assert report.anchor is not None  # type: ignore[attr-defined]

    # Roots of every size >= N, inclusion proofs of kept events and consistency proofs are as before.
    root, proofs_after = inclusion_proofs(world.engine, wanted, size)
    assert root == roots[size]
    assert proofs_after == proofs_before
    for old in range(21, size + 1):
        old_root, new_root, proof = consistency(world.engine, old, size)
        assert (old_root, new_root) == (roots[old], roots[size])
        merkle.verify_consistency(old, size, proof, old_root, new_root)
    with pytest.raises(merkle.PrunedRangeError):
        inclusion_proofs(world.engine, [5], size)
    with pytest.raises(merkle.PrunedRangeError):
        inclusion_proofs(world.engine, [5], size, max_in_memory=0)
    # AuditLog's streamed read-side helpers resume from the anchor as well.
    assert world.log.root(size) == roots[size] and world.log.root(21) == roots[21]
    assert world.log.inclusion_proof(22, size) == proofs_after[22][1]
    assert world.log.consistency_proof(21, size) == consistency(world.engine, 21, size)[2]
    # Streaming and in-memory proofs agree on a pruned log too.
    assert inclusion_proofs(world.engine, wanted, size, max_in_memory=0) == (root, proofs_after)

    # Life goes on: new events, a new checkpoint, the archive of a pruned month still verifies.
    world.log.append(make_event(99, occurred_at=MAR + timedelta(days=1)))
    write_checkpoint(world.engine, world.signer, world.checkpoints)
    assert world.verify().ok  # type: ignore[attr-defined]
    manifest = world.archives / f"{result.anchor.archives[0]['archive_id']}.manifest.json"  # type: ignore[attr-defined]
    assert verify_archive(manifest, world.keys, world.engine).ok
    assert archives_for_pruned(world.engine)["pruned_through_seq"] == 21  # type: ignore[index]


def test_the_anchor_file_and_its_name_are_on_disk_before_any_event_is_deleted(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The external anchor is what lets a pruned log still be verified: its data was synced before it was
    linked into place, but not its directory, so after a power cut the database could be pruned with the
    anchor's name lost. The directory is synced after the link, and both before the first DELETE."""
    import os

    steps: list[str] = []
    real_fsync, real_link = os.fsync, os.link

    def fsync(fd: int) -> None:
        target = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if target == world.checkpoints:
            steps.append("sync checkpoint dir")
        real_fsync(fd)

    def link(src: str | os.PathLike[str], dst: str | os.PathLike[str], **kw: object) -> None:
        if Path(dst).parent == world.checkpoints:
            steps.append("link anchor")
        real_link(src, dst, **kw)  # type: ignore[arg-type]

    def delete_seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("DELETE") and "audit_events" in statement:
            steps.append("delete events")

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    sa.event.listen(world.engine, "before_cursor_execute", delete_seen)
    world.archive("2026-01")
    world.archive("2026-02")
    steps.clear()
    world.prune()
    # (The checkpoint the prune writes first is linked and synced before the anchor.)
    until_deleted = steps[: steps.index("delete events") + 1]
    assert until_deleted[-3:] == ["link anchor", "sync checkpoint dir", "delete events"], steps


def test_pruning_again_extends_the_anchor_chain(world: World) -> None:
    world.archive("2026-01")
    first = world.prune()
    world.archive("2026-02")
    assert plan_prune(world.engine, world.archives, world.keys, LATER).through_seq == 21
    second = world.prune()
    assert first.anchor.pruned_through == 10  # type: ignore[attr-defined]
    assert second.anchor.pruned_through == 21  # type: ignore[attr-defined]
    assert second.anchor.previous["pruned_through"] == 10  # type: ignore[attr-defined]
    assert len(second.anchor.archives) == 2  # type: ignore[attr-defined]
    assert world.verify().ok  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("not_old_enough", "not_past_retention"),
        ("not_archived", "not_archived"),
        ("archive_tampered", "archive_invalid"),
        ("not_month_boundary", "not_month_boundary"),
        ("gap_between_archives", "not_archived"),
    ],
)
def test_prune_refuses_and_changes_nothing(world: World, case: str, reason: str) -> None:
    kwargs: dict[str, object] = {}
    if case != "not_archived" and case != "gap_between_archives":
        world.archive("2026-01")
    if case == "gap_between_archives":
        world.archive("2026-02")
    if case == "not_old_enough":
        kwargs["years"] = 5
    if case == "archive_tampered":
        events_file = next(world.archives.glob("*.jsonl.gz"))
        lines = gzip.decompress(events_file.read_bytes()).splitlines()
        events_file.unlink()
        events_file.write_bytes(gzip.compress(b"\n".join(lines[:-1]) + b"\n"))
    if case == "not_month_boundary":
        kwargs["through_seq"] = 5
    before = world.count()
    with pytest.raises(PruneRefused) as refused:
        world.prune(**kwargs)
    assert any(r.startswith(reason) for r in refused.value.plan.reasons), refused.value.plan.reasons
    assert world.count() == before
    assert latest_anchor(world.engine) is None
    assert not list(world.checkpoints.glob("prune-anchor-*"))
    assert world.verify().ok  # type: ignore[attr-defined]


def test_dry_run_says_what_would_go_and_why_it_stops(world: World) -> None:
    world.archive("2026-01")
    world.archive("2026-02")
    world.archive("2026-03")
    plan = plan_prune(world.engine, world.archives, world.keys, LATER)
    assert plan.through_seq == 21 and plan.events == 21
    assert [m["verdict"] for m in plan.months] == ["prunable", "prunable", "not_past_retention"]
    assert plan.reasons[0].startswith("not_past_retention")
    assert world.count() == 27
    limited = plan_prune(world.engine, world.archives, world.keys, LATER, through_month="2026-01")
    assert limited.through_seq == 10


# -- tamper classes after pruning (the attacker has full database access) ----------------------------


@pytest.fixture
def pruned(world: World) -> World:
    world.archive("2026-01")
    world.archive("2026-02")
    world.prune()
    drop_triggers(world.engine)
    return world


def _replace_anchor(world: World, document: bytes, *, external: bool = True) -> None:
    with world.engine.begin() as conn:
        conn.execute(sa.delete(audit_prune_anchors))
        conn.execute(
            sa.insert(audit_prune_anchors).values(
                pruned_through=json.loads(document)["pruned_through"],
                document=document.decode(),
                created_at=LATER,
            )
        )
    if external:
        through = json.loads(document)["pruned_through"]
        for stale in world.checkpoints.glob(anchor_file_glob(through)):
            stale.unlink()
        (world.checkpoints / anchor_file_name(through, LATER, "0" * 8)).write_bytes(document)


def test_deleting_events_beyond_the_anchor_is_detected(pruned: World) -> None:
    with pruned.engine.begin() as conn:
        conn.execute(sa.delete(audit_subject_refs).where(audit_subject_refs.c.seq == 22))
        conn.execute(sa.delete(audit_events).where(audit_events.c.seq == 22))
    report = pruned.verify()
    assert not report.ok and report.problem == "missing_event" and report.first_bad_seq == 22  # type: ignore[attr-defined]


def test_unsigned_or_foreign_anchor_is_detected(pruned: World) -> None:
    anchor = latest_anchor(pruned.engine)
    assert anchor is not None
    forged = replace(anchor, frontier=tuple(reversed(anchor.frontier)))  # signature no longer fits
    _replace_anchor(pruned, forged.document())
    assert pruned.verify().problem == "anchor_invalid"  # type: ignore[attr-defined]
    other = CheckpointSigner.generate()
    foreign = replace(anchor, key_id=other.key_id)
    foreign = replace(foreign, signature=other.sign_payload(foreign.signed_payload()))
    _replace_anchor(pruned, foreign.document())
    assert pruned.verify().problem == "anchor_invalid"  # type: ignore[attr-defined]


def test_signed_anchor_whose_frontier_disagrees_with_the_prior_checkpoint_is_detected(pruned: World) -> None:
    anchor = latest_anchor(pruned.engine)
    assert anchor is not None
    # A correctly signed anchor (a buggy or coerced prune) with a wrong frontier that still matches the
    # first kept event's link: only the checkpoint signed before pruning can tell.
    wrong = (merkle.node_hash(anchor.frontier[0], anchor.frontier[0]), *anchor.frontier[1:])
    bad = replace(anchor, frontier=wrong)
    bad = replace(bad, signature=pruned.signer.sign_payload(bad.signed_payload()))
    _replace_anchor(pruned, bad.document())
    report = pruned.verify()
    assert not report.ok and report.problem == "checkpoint_root_mismatch", report.describe()  # type: ignore[attr-defined]


def test_anchor_chain_hash_must_link_to_the_first_kept_event(pruned: World) -> None:
    anchor = latest_anchor(pruned.engine)
    assert anchor is not None
    bad = replace(anchor, entry_hash=bytes(32))
    bad = replace(bad, signature=pruned.signer.sign_payload(bad.signed_payload()))
    _replace_anchor(pruned, bad.document())
    assert pruned.verify().problem == "anchor_chain_mismatch"  # type: ignore[attr-defined]


def test_missing_external_anchor_or_removed_anchor_row_is_detected(pruned: World) -> None:
    (path,) = pruned.checkpoints.glob(anchor_file_glob(21))
    saved = path.read_bytes()
    path.unlink()
    assert pruned.verify().problem == "anchor_not_external"  # type: ignore[attr-defined]
    path.write_bytes(saved.replace(b'"actor":"auditor"', b'"actor":"nobody!"'))  # a different copy
    assert pruned.verify().problem == "anchor_not_external"  # type: ignore[attr-defined]
    # A leftover from a failed attempt next to the right copy does no harm.
    (pruned.checkpoints / anchor_file_name(21, LATER, "f" * 8)).write_bytes(saved)
    assert pruned.verify().ok  # type: ignore[attr-defined]
    with pruned.engine.begin() as conn:
        conn.execute(sa.delete(audit_prune_anchors))
    report = pruned.verify()
    assert report.problem == "missing_event" and report.first_bad_seq == 1  # type: ignore[attr-defined]


def test_deleting_events_without_an_anchor_is_detected(world: World) -> None:
    drop_triggers(world.engine)
    with world.engine.begin() as conn:
        conn.execute(sa.delete(audit_subject_refs).where(audit_subject_refs.c.seq <= 10))
        conn.execute(sa.delete(audit_events).where(audit_events.c.seq <= 10))
    report = world.verify()
    assert report.problem == "missing_event" and report.first_bad_seq == 1  # type: ignore[attr-defined]


# -- database guards -----------------------------------------------------------------------------------


def test_triggers_let_only_the_anchored_prefix_go(world: World) -> None:
    engine = world.engine
    with pytest.raises(sa.exc.DatabaseError), engine.begin() as conn:
        conn.execute(sa.delete(audit_events).where(audit_events.c.seq <= 10))
    world.archive("2026-01")
    world.prune()
    for statement in (
        sa.delete(audit_events).where(audit_events.c.seq == 11),
        sa.delete(audit_subject_refs).where(audit_subject_refs.c.seq == 12),
        sa.update(audit_events).where(audit_events.c.seq == 11).values(actor="x"),
        sa.delete(audit_prune_anchors),
        sa.update(audit_prune_anchors).values(document="{}"),
    ):
        with pytest.raises(sa.exc.DatabaseError), engine.begin() as conn:
            conn.execute(statement)
    assert world.verify().ok  # type: ignore[attr-defined]


@pytest.mark.postgres
def test_postgres_writer_role_cannot_prune_even_an_anchored_prefix(
    postgres_store: Store, signer: CheckpointSigner, tmp_path: Path
) -> None:
    w = World(postgres_store, signer, tmp_path)
    w.populate()
    w.archive("2026-01")
    engine, schema = postgres_store.engine, postgres_store.schema
    with engine.begin() as conn:
        for statement in postgres_writer_role_sql():
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA {schema} TO {WRITER_ROLE}")
        conn.exec_driver_sql(f"GRANT SELECT ON audit_archives TO {WRITER_ROLE}")  # it may plan, not prune
    writer = sa.create_engine(
        postgres_store.url, connect_args={"options": f"-c search_path={schema} -c role={WRITER_ROLE}"}
    )
    try:
        # Pruning through the writer role is refused by the database, and nothing changes.
        with pytest.raises(PruneRefused) as refused:
            prune(writer, signer, w.archives, w.checkpoints, actor="auditor", now=LATER)
        assert refused.value.plan.reasons[0].startswith("database_refused")
        assert w.count() == 27 and latest_anchor(engine) is None
        # Refused before signing: no anchor outside the database for a prune that did not happen.
        assert not list(Path(w.checkpoints).glob("prune-anchor-*.json"))
        w.prune()  # as the owner
        assert w.count() == 27 - 10 + 1
        assert AuditLog(writer).append(make_event(50, occurred_at=MAR)).seq == 29
        for statement in (
            "DELETE FROM audit_events WHERE seq <= 10",
            "DELETE FROM audit_subject_refs WHERE seq <= 10",
            "INSERT INTO audit_prune_anchors (pruned_through, document, created_at) VALUES (20, '{}', now())",
            "DELETE FROM audit_prune_anchors",
        ):
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), writer.begin() as conn:
                conn.exec_driver_sql(statement)
        assert verify_log(writer, w.checkpoints, signer.public_key).ok
    finally:
        writer.dispose()


# -- the law: roots and proofs after pruning equal the full log's (RFC 6962 reference) -----------------


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 80).flatmap(lambda t: st.tuples(st.just(t), st.integers(0, t))))
def test_anchored_roots_and_proofs_equal_the_full_log(sizes: tuple[int, int]) -> None:
    total, cut = sizes
    data = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(total)]
    leaves = [merkle.leaf_hash(d) for d in data]
    prefix = merkle.MerkleAccumulator()
    for leaf in leaves[:cut]:
        prefix.append(leaf)
    builder = ProofBuilder(leaves[cut:], offset=cut, frontier=prefix.frontier())
    # The oracle's root of every prefix, computed once (the loops below ask for each many times).
    references = [reference_mth(data[:size]) for size in range(total + 1)]

    @functools.cache
    def kept(start: int, end: int) -> bytes:
        assert start >= cut  # never asks for a pruned leaf
        return merkle.merkle_root(leaves[start:end])

    streamed = merkle.anchored_subtree_root(cut, prefix.frontier(), kept)
    resumed = merkle.MerkleAccumulator.resume(cut, prefix.frontier())
    for size in range(max(cut, 1), total + 1):
        reference = references[size]
        assert builder.subtree_root(0, size) == streamed(0, size) == reference
        if size > cut:
            resumed.append(leaves[size - 1])
            assert resumed.root() == reference
        for seq in range(cut + 1, size + 1):
            proof = merkle.inclusion_proof_from(builder.subtree_root, seq - 1, size)
            assert proof == merkle.inclusion_proof(leaves[:size], seq - 1)
            assert proof == merkle.inclusion_proof_from(streamed, seq - 1, size)
            merkle.verify_inclusion(leaves[seq - 1], seq - 1, size, proof, reference)
        for old in range(max(cut, 1), size + 1):
            proof = merkle.consistency_proof_from(builder.subtree_root, old, size)
            assert proof == merkle.consistency_proof(leaves[:size], old)
            merkle.verify_consistency(old, size, proof, references[old], reference)
    if cut > 1 and cut & (cut - 1):  # a prefix that is not one perfect subtree hides its inner nodes
        with pytest.raises(merkle.PrunedRangeError):
            streamed(0, 1)


# -- the deep check: the pruned prefix against its archives ---------------------------------------------


def test_archived_prefix_reproduces_the_anchor_and_older_checkpoints(world: World) -> None:
    from audit import verify_archived_prefix

    world.archive("2026-01")
    write_checkpoint(world.engine, world.signer, world.checkpoints)  # size 27; plus the one at 27 before
    world.archive("2026-02")
    world.prune(through_month="2026-01")
    world.prune()
    result = verify_archived_prefix(world.engine, world.archives, world.signer.public_key, world.checkpoints)
    assert result.ok, result.problem
    assert (result.pruned_through, result.events) == (21, 21)


@pytest.mark.parametrize("tamper", ["missing", "replaced", "older_checkpoint"])
def test_archived_prefix_detects_a_missing_or_swapped_archive(world: World, tamper: str) -> None:
    from audit import verify_archived_prefix

    jan = world.archive("2026-01")
    world.archive("2026-02")
    world.prune()
    if tamper == "missing":
        jan.unlink()
    elif tamper == "replaced":
        # A validly signed archive of different events under the same name: the anchor's digest differs.
        manifest = json.loads(jan.read_bytes())
        manifest["created_at"] = "2029-03-05T00:00:00.000000Z"
        jan.unlink()
        jan.write_text(json.dumps(manifest))
    else:
        # A (correctly signed) checkpoint of size 5 whose root is not the archived events' root.
        from audit.canonical import canonical_json

        bogus = world.signer.sign(5, bytes(32))
        name = f"checkpoint-{5:012d}-{bogus.timestamp.strftime('%Y%m%dT%H%M%S%fZ')}-00000000.json"
        (world.checkpoints / name).write_bytes(canonical_json(bogus.to_json()) + b"\n")
    result = verify_archived_prefix(world.engine, world.archives, world.signer.public_key, world.checkpoints)
    assert not result.ok
    assert {"missing": "missing", "replaced": "not the one", "older_checkpoint": "size 5"}[tamper] in str(
        result.problem
    )
    # The same, in Chinese, for the operator reading `prefix-verify` (no English inside it).
    said_zh = {"missing": "不存在", "replaced": "不是锚点所依据的", "older_checkpoint": "树大小为 5"}[tamper]
    assert said_zh in str(result.problem_zh)
    assert not re.search(r"\b(is|not|the|of|with|disagrees)\b", str(result.problem_zh))


def test_dry_run_names_the_month_where_the_archives_end(world: World) -> None:
    world.archive("2026-01")
    plan = plan_prune(world.engine, world.archives, world.keys, LATER)
    assert plan.through_seq == 10
    assert plan.reasons == ("not_archived: the next month (2026-02) has no archive; archive 2026-02 first",)
    assert plan.reasons_zh == ("下一个月份 2026-02 尚未归档，请先归档 2026-02",)


def test_retention_is_reported_before_a_missing_archive_with_the_date_the_month_may_go(world: World) -> None:
    # At LATER, January and February 2026 are past three years, March is not (and is not archived): the
    # blocker is retention, so the plan says so, naming the month and when it becomes prunable.
    world.archive("2026-01")
    world.archive("2026-02")
    plan = plan_prune(world.engine, world.archives, world.keys, LATER)
    assert plan.through_seq == 21
    assert len(plan.reasons) == 1 and plan.reasons[0].startswith("not_past_retention: 2026-03 is within")
    assert "can be pruned from 2029-04-01 (Beijing time)" in plan.reasons[0]
    assert plan.reasons_zh == (
        "2026-03 仍在保存期内（3 年，《个人信息保护法》第五十六条），最早可于 2029-04-01（北京时间）清理",
    )

    # Archived too: still retention, with the same date; nothing at all may go a month earlier.
    world.archive("2026-03")
    plan = plan_prune(world.engine, world.archives, world.keys, LATER)
    assert [m["verdict"] for m in plan.months] == ["prunable", "prunable", "not_past_retention"]
    assert "can be pruned from 2029-04-01" in plan.reasons[0] and "2029-04-01" in plan.reasons_zh[0]
    early = plan_prune(world.engine, world.archives, world.keys, datetime(2029, 1, 5, tzinfo=UTC))
    assert (
        early.through_seq is None and "2026-01" in early.reasons_zh[0] and "2029-02-01" in early.reasons_zh[0]
    )
    with pytest.raises(PruneRefused) as refused:
        prune(
            world.engine,
            world.signer,
            world.archives,
            world.checkpoints,
            actor="auditor",
            now=datetime(2029, 1, 5, tzinfo=UTC),
        )
    assert "2026-01" in refused.value.plan.reasons_zh[0]


def test_an_unfinished_month_is_archived_as_partial_never_pruned_and_superseded_by_a_later_archive(
    store: Store, signer: CheckpointSigner, tmp_path: Path
) -> None:
    log, directory = AuditLog(store.engine), tmp_path / "archives"
    log.append_many(make_event(i, occurred_at=JAN + timedelta(minutes=i)) for i in range(5))

    def archive(now: datetime) -> Path:
        result = archive_month(store.engine, signer, directory, "2026-01", now=now)
        with Session(store.engine) as session:
            record_archive(session, result, "auditor", now)
            session.commit()
        assert json.loads(result.manifest_file.read_bytes())["complete"] is result.complete
        return result.manifest_file

    # Mid-January: allowed, but partial (signed in the manifest).
    mid = datetime(2026, 1, 15, tzinfo=UTC)
    partial = archive(mid)
    assert json.loads(partial.read_bytes())["complete"] is False
    assert verify_archive(partial, KeyChain.pinned(signer.public_key), store.engine).ok
    with pytest.raises(ArchiveError, match="already archived in audit-2026-01-1-5-partial"):
        archive(mid)  # nothing new since: refused, naming the archive that holds it
    log.append_many(make_event(i, occurred_at=JAN + timedelta(minutes=i)) for i in range(5, 10))
    log.append_many(make_event(i, occurred_at=FEB + timedelta(minutes=i)) for i in range(10, 13))

    plan = plan_prune(store.engine, directory, KeyChain.pinned(signer.public_key), LATER)
    assert plan.through_seq is None
    assert [(m["archive_id"], m["verdict"]) for m in plan.months] == [
        ("audit-2026-01-1-5-partial", "partial_archive")
    ]
    assert plan.reasons[0].startswith(
        "not_archived: 2026-01 has only a partial archive (audit-2026-01-1-5-partial"
    )
    assert "部分归档" in plan.reasons_zh[0] and "请重新归档 2026-01" in plan.reasons_zh[0]

    # After the month: archived again, the new archive supersedes the partial one.
    after = datetime(2026, 2, 20, tzinfo=UTC)
    complete = archive(after)
    assert json.loads(complete.read_bytes())["complete"] is True
    plan = plan_prune(store.engine, directory, KeyChain.pinned(signer.public_key), LATER)
    assert [(m["archive_id"], m["verdict"]) for m in plan.months] == [("audit-2026-01-1-10", "prunable")]
    assert plan.through_seq == 10

    # Nothing new in the month since: a third archive is refused, naming the one that holds it.
    with pytest.raises(ArchiveError) as again:
        archive(after)
    assert (
        "audit-2026-01-1-10" in str(again.value) and "已归档于 audit-2026-01-1-10" in again.value.message_zh
    )


def test_archiving_a_month_without_events_says_which_months_the_log_holds(world: World) -> None:
    with pytest.raises(ArchiveError) as refused:
        world.archive("2023-10")
    assert (
        str(refused.value)
        == "no audit events in 2023-10: the log's events are from 2026-01..2026-03 (Beijing time)"
    )
    assert refused.value.message_zh == "2023-10 没有审计事件：日志中的事件在 2026-01..2026-03（北京时间）"


def test_a_missing_archive_file_is_unreadable_not_a_failed_verification(world: World, tmp_path: Path) -> None:
    missing = tmp_path / "archives" / "audit-2023-10-*.manifest.json"
    verdict = verify_archive(missing, world.keys, world.engine)
    assert (verdict.ok, verdict.readable, verdict.unreadable_file) == (False, False, str(missing))
    assert verdict.problem == f"cannot read {missing}: no such file"
    manifest = world.archive("2026-01")
    (manifest.parent / json.loads(manifest.read_bytes())["events_file"]).unlink()
    verdict = verify_archive(manifest, world.keys)
    assert not verdict.readable and str(verdict.unreadable_file).endswith(".jsonl.gz")


def test_a_tampered_archive_blocks_pruning_with_the_reason_in_chinese(world: World) -> None:
    world.archive("2026-01")
    events_file = next(world.archives.glob("*.jsonl.gz"))
    lines = gzip.decompress(events_file.read_bytes()).splitlines()
    events_file.unlink()
    events_file.write_bytes(gzip.compress(b"\n".join(lines[:-1]) + b"\n"))
    plan = plan_prune(world.engine, world.archives, world.keys, LATER)
    assert plan.reasons[0].startswith("archive_invalid: audit-2026-01-1-10: events file digest differs")
    assert "事件文件的摘要与签名清单不符" in plan.reasons_zh[0]
    assert "digest" not in plan.reasons_zh[0]
