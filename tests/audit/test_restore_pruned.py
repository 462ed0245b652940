"""An accepted restore on a log that is archived and pruned: the backup taken before the prune (the database
comes back with the pruned events and without the anchor) or after it (with the anchor). Afterwards the log,
each archive and the pruned prefix against its archives all verify, and the restored log can be archived and
pruned again."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from audit import (
    CheckpointSigner,
    accept_restore,
    accepted_restores,
    plan_restore,
    verify_archive,
    verify_archived_prefix,
    write_checkpoint,
)
from audit.checkpoints import key_chain
from tests.audit.conftest import Store, sqlite_store
from tests.audit.helpers import make_event
from tests.audit.test_prune import MAR, World

APR = MAR + timedelta(days=31)


def _copy(source: Path, target: Path) -> None:
    """A consistent copy of a whole SQLite database (every table: events, anchors, archives), as a backup
    tool makes it and puts it back (sqlite3's online backup, which overwrites the target's pages)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


@pytest.fixture
def world(tmp_path: Path) -> World:
    store: Store = sqlite_store(tmp_path / "gateway.db")
    w = World(store, CheckpointSigner.generate(), tmp_path)
    w.populate()  # 27 events: January 1..10, February 11..21, March 22..27
    write_checkpoint(w.engine, w.signer, w.checkpoints)
    return w


def _all_verifies(w: World) -> tuple[int, list[str]]:
    """Verify the log, the pruned prefix against its archives and every archive; returns how far the log
    is pruned and the archives checked."""
    report = w.verify()
    assert report.ok, (report.problem, report.first_bad_seq)  # type: ignore[attr-defined]
    prefix = verify_archived_prefix(w.engine, w.archives, w.signer.public_key, w.checkpoints)
    assert prefix.ok, prefix.problem
    keys = key_chain(w.checkpoints, w.signer.public_key)
    manifests = sorted(w.archives.glob("*manifest*.json"))
    for manifest in manifests:
        checked = verify_archive(manifest, keys, w.engine)
        assert checked.ok, (manifest.name, checked.problem)
    return prefix.pruned_through, [m.name for m in manifests]


def _restore_and_accept(w: World, backup: Path, db: Path) -> None:
    w.log.append_many(make_event(i, occurred_at=APR + timedelta(minutes=i)) for i in range(40, 45))
    write_checkpoint(w.engine, w.signer, w.checkpoints)  # the lost log's latest checkpoint
    w.engine.dispose()
    _copy(backup, db)
    plan = plan_restore(w.engine, w.checkpoints, w.signer.public_key)
    assert plan.lost_events > 0
    accept_restore(w.engine, w.signer, w.checkpoints, "disk failure (ticket 118)", plan)


@pytest.mark.parametrize("backup_taken", ["before_prune", "after_prune"])
def test_a_restore_around_a_prune_verifies_and_the_log_can_be_pruned_again(
    world: World, tmp_path: Path, backup_taken: str
) -> None:
    db, backup = tmp_path / "gateway.db", tmp_path / "backup.db"
    world.archive("2026-01")
    if backup_taken == "before_prune":
        _copy(db, backup)
    world.prune(through_month="2026-01")
    if backup_taken == "after_prune":
        _copy(db, backup)
    pruned, archives = _all_verifies(world)
    assert pruned == 10 and len(archives) == 1, archives

    _restore_and_accept(world, backup, db)
    # Before the prune the backup holds January's events again and no anchor: nothing is pruned.
    assert _all_verifies(world) == ((0 if backup_taken == "before_prune" else 10), archives)

    # The restored log goes on: February archived and pruned in the new epoch; everything still verifies.
    write_checkpoint(world.engine, world.signer, world.checkpoints)
    world.archive("2026-02")
    world.prune(through_month="2026-02")
    pruned, after = _all_verifies(world)
    assert pruned == 21 and len(after) == 2, after


def test_an_archive_of_events_a_restore_gave_up_is_named_as_the_lost_logs(
    world: World, tmp_path: Path
) -> None:
    """The nightly backup is taken in March; March is archived next morning, with events made after the
    backup; then the disk fails and the backup is restored. The archive is the lost log's evidence: its
    files and signature verify alone; against the live log it says which restore gave its events up.
    Before, that comparison reported a gap ('live log cannot supply the archived tree'), or once the
    restored log had grown past its range 'live log's events differ from the archived ones' (as if
    tampered with)."""
    db, backup = tmp_path / "gateway.db", tmp_path / "backup.db"
    _copy(db, backup)
    after_backup = MAR + timedelta(days=5)
    world.log.append_many(
        make_event(i, occurred_at=after_backup + timedelta(minutes=i)) for i in range(30, 34)
    )
    lost_archive = world.archive("2026-03")
    _restore_and_accept(world, backup, db)
    keys = key_chain(world.checkpoints, world.signer.public_key)
    assert verify_archive(lost_archive, keys).ok  # the files and the signature
    restores = accepted_restores(world.checkpoints, world.signer.public_key)
    (record_file,) = [name for _, name in restores]
    against_log = verify_archive(lost_archive, keys, world.engine, restores=restores)
    assert not against_log.ok and against_log.checked == 10  # events 22..31
    assert against_log.given_up_by == record_file
    assert against_log.problem is not None and against_log.problem_zh is not None
    assert against_log.problem.startswith(
        f"events 28..31 of this archive were given up by the restore accepted in {record_file} (epoch 1)"
    )
    assert f"本归档中的事件 #28..#31 已因接受的数据库恢复（恢复记录 {record_file}" in against_log.problem_zh
    # Archives made before the backup, or of the restored log, are compared with the live log as before.
    next_day = after_backup + timedelta(days=1)
    world.log.append_many(make_event(i, occurred_at=next_day + timedelta(minutes=i)) for i in range(50, 60))
    again = world.archive("2026-03")
    assert again != lost_archive and verify_archive(again, keys, world.engine, restores=restores).ok
