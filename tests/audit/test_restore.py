"""Accepting a deliberate restore: the database back from an older backup, events lost. The restore is
signed (a checkpoint opening a new epoch, naming the lost range, the lost log's root and the reason), the
lost log's checkpoints stay as evidence, the log as restored verifies against its own checkpoints and the
lost log's only up to the restored size, and anything not signed by the chain's key is a forgery."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from audit import (
    AuditLog,
    CheckpointError,
    CheckpointSigner,
    RestoreAlreadyAccepted,
    RestoreRefused,
    accept_restore,
    chain_lock,
    checkpoint_history,
    consistency,
    inclusion_proofs,
    latest_checkpoint,
    list_checkpoints,
    plan_restore,
    rotate_signing_key,
    verify_checkpoint,
    verify_log,
    write_checkpoint,
)
from audit.checkpoints import _store, key_chain
from tests.audit.conftest import Store
from tests.audit.helpers import drop_triggers, make_event, rechain, refs_for, restore, snapshot

REASON = "disk failure, restored from the nightly backup (ticket 118)"


def _restored(store: Store, tmp_path: Path, *, rotate: bool = False) -> tuple[Path, Path, str]:
    """Four events signed, a backup, three more signed (with ``rotate``, by a key handed over to at 7), then
    the backup restored in place. Returns the key path, the checkpoint directory and the lost log's latest
    checkpoint file."""
    log = AuditLog(store.engine)
    key_path, directory = tmp_path / "keys" / "checkpoint.pem", tmp_path / "checkpoints"
    signer = CheckpointSigner.load_or_create(key_path)
    log.append_many([make_event(i) for i in range(4)])
    write_checkpoint(store.engine, signer, directory)
    backup = snapshot(store.engine)
    log.append_many([make_event(i) for i in range(4, 7)])
    if rotate:
        rotate_signing_key(store.engine, key_path, directory)
    else:
        write_checkpoint(store.engine, signer, directory)
    lost = sorted(p.name for p in directory.iterdir())[-1]
    drop_triggers(store.engine)
    restore(store.engine, *backup)
    return key_path, directory, lost


def _accept(store: Store, key_path: Path, directory: Path) -> None:
    signer = CheckpointSigner.load_or_create(key_path)
    accept_restore(
        store.engine, signer, directory, REASON, plan_restore(store.engine, directory, signer.public_key)
    )


def test_an_accepted_restore_verifies_ever_after_and_is_always_reported(store: Store, tmp_path: Path) -> None:
    key_path, directory, lost_file = _restored(store, tmp_path)
    signer = CheckpointSigner.load_or_create(key_path)
    refused = verify_log(store.engine, directory, signer.public_key)
    assert not refused.ok and refused.problem == "log_shorter_than_checkpoint"
    assert any("accept-restore" in en for _, en in refused.summary())

    plan = plan_restore(store.engine, directory, signer.public_key)
    assert (plan.log_size, plan.lost.tree_size, plan.lost_events, plan.lost_file) == (4, 7, 3, lost_file)
    assert plan.prefix_file is not None and plan.prefix_file.startswith("checkpoint-000000000004-")
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    record = accept_restore(store.engine, signer, directory, REASON, plan)
    assert {p.name: p.read_bytes() for p in directory.iterdir() if p.name in before} == before
    assert (record.epoch, record.tree_size) == (1, 4)
    assert record.restore == {
        "lost_from": 4,
        "lost_to": 7,
        "lost_root": plan.lost.root_hash.hex(),
        "lost_checkpoint": lost_file,
        "prefix_checkpoint": plan.prefix_file,
        "reason": REASON,
    }

    # New events take the lost ones' numbers 5..7 and go past them; checkpoints of 7 exist in both
    # epochs with different roots, and only the restored log's is compared.
    log = AuditLog(store.engine)
    for i in range(3):
        log.append(make_event(100 + i))
        write_checkpoint(store.engine, signer, directory)
    log.append_many([make_event(200 + i) for i in range(3)])
    write_checkpoint(store.engine, signer, directory)
    history = checkpoint_history(directory, signer.public_key)
    assert [(c.epoch, c.tree_size) for c, _ in history.lost] == [(0, 7)]
    assert [(c.epoch, c.tree_size) for c, _ in history.current] == [
        (0, 4),
        (1, 4),
        (1, 5),
        (1, 6),
        (1, 7),
        (1, 10),
    ]
    lost_root = history.lost[0][0].root_hash
    assert next(c for c, _ in history.current if c.position == (1, 7)).root_hash != lost_root

    report = verify_log(store.engine, directory, signer.public_key)
    assert report.ok, report.summary()
    assert report.checkpoint is not None and report.checkpoint.position == (1, 10)
    assert [r.restore["lost_to"] for r in report.restores if r.restore] == [7]
    said = "\n".join(f"{zh}\n{en}" for zh, en in report.summary())
    assert "events 5..7 (3) were lost" in said and REASON in said and "事件 #5..#7（共 3 条）已丢失" in said
    assert "restore accepted, events 5..7 lost" in report.describe()

    # What the proofs API and the monthly report read: the log as it is, not the lost one.
    latest = latest_checkpoint(directory, signer.public_key)
    assert latest is not None and latest.position == (1, 10)
    signed = list_checkpoints(directory, signer.public_key)
    assert [c.position for c in signed] == [c.position for c, _ in history.current]
    root, _ = inclusion_proofs(store.engine, [6], 7)
    assert root == next(c.root_hash for c in signed if c.position == (1, 7))
    old_root, new_root, _ = consistency(store.engine, 4, 10)
    assert (old_root, new_root) == (signed[0].root_hash, latest.root_hash)


def test_a_log_that_is_not_a_backup_of_this_one_is_refused(store: Store, tmp_path: Path) -> None:
    """Four events as many as the backup's, but other events: the signed checkpoint of 4 says otherwise."""
    key_path, directory, _ = _restored(store, tmp_path)
    stranger = snapshot(store.engine)
    for row in stranger[0]:
        row["body"] = row["body"].replace('"actor":"', '"actor":"x')
        row["actor"] = "x" + row["actor"]
    head = rechain(stranger[0])
    restore(store.engine, stranger[0], refs_for(stranger[0]), head)
    signer = CheckpointSigner.load_or_create(key_path)
    with pytest.raises(RestoreRefused, match="not a restore of this log"):
        plan_restore(store.engine, directory, signer.public_key)


def test_restored_events_no_checkpoint_covers_are_refused(sqlite: Store, tmp_path: Path) -> None:
    log = AuditLog(sqlite.engine)
    key_path, directory = tmp_path / "key.pem", tmp_path / "checkpoints"
    signer = CheckpointSigner.load_or_create(key_path)
    log.append_many([make_event(i) for i in range(2)])
    backup = snapshot(sqlite.engine)  # before any checkpoint: nothing shows these two are this log's
    log.append_many([make_event(i) for i in range(2, 5)])
    write_checkpoint(sqlite.engine, signer, directory)
    drop_triggers(sqlite.engine)
    restore(sqlite.engine, *backup)
    with pytest.raises(RestoreRefused, match="no signed checkpoint covers"):
        plan_restore(sqlite.engine, directory, signer.public_key)


def test_nothing_to_accept_is_refused(sqlite: Store, tmp_path: Path) -> None:
    key_path, directory, _ = _restored(sqlite, tmp_path)
    _accept(sqlite, key_path, directory)
    with pytest.raises(
        RestoreAlreadyAccepted, match="nothing to accept: the restore was accepted already"
    ) as done:
        _accept(sqlite, key_path, directory)
    assert done.value.record_file.endswith("-e1-restore.json") and done.value.record.epoch == 1


def test_a_restored_log_that_is_itself_broken_is_not_laundered(sqlite: Store, tmp_path: Path) -> None:
    key_path, directory, _ = _restored(sqlite, tmp_path)
    with sqlite.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_events SET body = replace(body, 'subsistence', 'x') WHERE seq = 2")
    with pytest.raises(RestoreRefused, match="restored log itself is broken at event 2"):
        plan_restore(sqlite.engine, directory, CheckpointSigner.load_or_create(key_path).public_key)


def test_a_change_after_the_restore_was_shown_is_refused(sqlite: Store, tmp_path: Path) -> None:
    key_path, directory, _ = _restored(sqlite, tmp_path)
    signer = CheckpointSigner.load_or_create(key_path)
    shown = plan_restore(sqlite.engine, directory, signer.public_key)
    AuditLog(sqlite.engine).append(make_event(50))
    with pytest.raises(RestoreRefused, match="changed since"):
        accept_restore(sqlite.engine, signer, directory, REASON, shown)
    with pytest.raises(RestoreRefused, match="reason"):
        accept_restore(sqlite.engine, signer, directory, "  ", shown)
    assert not any(p.name.endswith("-restore.json") for p in directory.iterdir())


def _only(directory: Path, suffix: str) -> Path:
    (found,) = [p for p in directory.iterdir() if p.name.endswith(suffix)]
    return found


@pytest.mark.parametrize(
    "forge",
    [
        "stranger_signed",
        "reason_edited",
        "record_removed",
        "evidence_removed",
        "epoch_renamed",
        "forked",
    ],
)
def test_restore_records_not_signed_by_the_chain_or_not_fitting_are_refused(
    sqlite: Store, tmp_path: Path, forge: str
) -> None:
    key_path, directory, lost_file = _restored(sqlite, tmp_path)
    signer = CheckpointSigner.load_or_create(key_path)
    _accept(sqlite, key_path, directory)
    AuditLog(sqlite.engine).append(make_event(60))
    write_checkpoint(sqlite.engine, signer, directory)
    assert verify_log(sqlite.engine, directory, signer.public_key).ok
    record = _only(directory, "-e1-restore.json")
    body = json.loads(record.read_bytes())
    if forge == "stranger_signed":  # whoever holds only the database signs with a key of their own
        record.unlink()
        stranger = CheckpointSigner.generate()
        cp = stranger.sign(4, bytes.fromhex(body["root_hash"]), epoch=1, restore=body["restore"])
        _store(directory, cp)
    elif forge == "reason_edited":
        body["restore"]["reason"] = "routine maintenance"
        record.write_text(json.dumps(body))
    elif forge == "record_removed":  # the record moved aside: the restored log's checkpoints lose their basis
        shutil.move(record, tmp_path / record.name)
    elif forge == "evidence_removed":
        (directory / lost_file).unlink()
    elif forge == "epoch_renamed":
        record.rename(record.with_name(record.name.replace("-e1-", "-e2-")))
    else:  # a second restore accepted onto the same epoch
        cp = signer.sign(4, bytes.fromhex(body["root_hash"]), epoch=1, restore=body["restore"])
        _store(directory, cp)
    report = verify_log(sqlite.engine, directory, signer.public_key)
    assert not report.ok and report.problem in {"checkpoint_invalid", "log_shorter_than_checkpoint"}, forge
    with pytest.raises(CheckpointError):
        checkpoint_history(directory, signer.public_key)


def test_a_key_handed_over_in_the_lost_log_signs_the_restored_one(store: Store, tmp_path: Path) -> None:
    """The key was rotated at tree size 7, after the backup of 4: the new key signs the restore and the
    restored log's sizes 4..7 (a later epoch), the retired key signs nothing, and a supervisor pinning
    the old key verifies it all."""
    old = CheckpointSigner.load_or_create(tmp_path / "keys" / "checkpoint.pem")
    key_path, directory, _ = _restored(store, tmp_path, rotate=True)
    new = CheckpointSigner.load_or_create(key_path)
    assert new.key_id != old.key_id
    with pytest.raises(CheckpointError, match="retired by a handover"):
        accept_restore(
            store.engine, old, directory, REASON, plan_restore(store.engine, directory, old.public_key)
        )
    _accept(store, key_path, directory)
    AuditLog(store.engine).append(make_event(70))
    write_checkpoint(store.engine, new, directory)
    for pinned in (old, new):
        report = verify_log(store.engine, directory, pinned.public_key)
        assert report.ok, report.summary()
        assert report.checkpoint is not None and report.checkpoint.key_id == new.key_id
    # The retired key's signature on the restored log is refused like any forgery.
    body = json.loads(_only(directory, "-e1-restore.json").read_bytes())
    late = old.sign(5, bytes.fromhex(body["root_hash"]), epoch=1)
    verify_checkpoint(late, old.public_key)  # a valid signature, but the key is out of office
    with pytest.raises(CheckpointError, match="handed over"):
        key_chain(directory, new.public_key).verify(late)


def test_a_key_rotated_after_the_restore_hands_over_in_the_new_epoch(sqlite: Store, tmp_path: Path) -> None:
    key_path, directory, _ = _restored(sqlite, tmp_path)
    old = CheckpointSigner.load_or_create(key_path)
    _accept(sqlite, key_path, directory)
    AuditLog(sqlite.engine).append(make_event(80))
    _, new, handover = rotate_signing_key(sqlite.engine, key_path, directory)
    assert handover.position == (1, 5)
    assert [p.name.endswith("-e1-handover.json") for p in directory.glob("*-handover.json")] == [True] * 2
    AuditLog(sqlite.engine).append(make_event(81))
    write_checkpoint(sqlite.engine, new, directory)
    for pinned in (old, new):
        report = verify_log(sqlite.engine, directory, pinned.public_key)
        assert report.ok, report.summary()
        assert report.checkpoint is not None and report.checkpoint.position == (1, 6)


def test_a_second_restore_opens_a_second_epoch_and_both_are_reported(sqlite: Store, tmp_path: Path) -> None:
    """Restored to 4 (7 signed), grown to 9 and signed, restored again to an older copy of 2 events: the
    first log's checkpoints of 4 and 7, and the first restored log's above 2, are out of the current log."""
    log = AuditLog(sqlite.engine)
    key_path, directory = tmp_path / "key.pem", tmp_path / "checkpoints"
    signer = CheckpointSigner.load_or_create(key_path)
    log.append_many([make_event(i) for i in range(2)])
    write_checkpoint(sqlite.engine, signer, directory)
    oldest = snapshot(sqlite.engine)
    log.append_many([make_event(i) for i in range(2, 4)])
    write_checkpoint(sqlite.engine, signer, directory)
    backup = snapshot(sqlite.engine)
    log.append_many([make_event(i) for i in range(4, 7)])
    write_checkpoint(sqlite.engine, signer, directory)
    drop_triggers(sqlite.engine)
    restore(sqlite.engine, *backup)
    _accept(sqlite, key_path, directory)
    log.append_many([make_event(i) for i in range(300, 305)])
    write_checkpoint(sqlite.engine, signer, directory)
    restore(sqlite.engine, *oldest)
    assert not verify_log(sqlite.engine, directory, signer.public_key).ok
    _accept(sqlite, key_path, directory)
    log.append(make_event(400))
    write_checkpoint(sqlite.engine, signer, directory)

    history = checkpoint_history(directory, signer.public_key)
    assert [c.position for c, _ in history.current] == [(0, 2), (2, 2), (2, 3)]
    assert [c.position for c, _ in history.lost] == [(0, 4), (0, 7), (1, 4), (1, 9)]
    report = verify_log(sqlite.engine, directory, signer.public_key)
    assert report.ok, report.summary()
    lost = [(r.restore["lost_from"], r.restore["lost_to"]) for r in report.restores if r.restore]
    assert lost == [(4, 7), (2, 9)]


def test_a_restore_waits_for_a_key_rotation_and_is_refused_naming_the_lock(
    sqlite: Store, tmp_path: Path
) -> None:
    """Accepting a restore and rotating the key both change the chain: a restore record beside a handover
    made from the same latest checkpoint is a fork. One lock serves both; held, the restore writes nothing."""
    key_path, directory, _ = _restored(sqlite, tmp_path)
    signer = CheckpointSigner.load_or_create(key_path)
    shown = plan_restore(sqlite.engine, directory, signer.public_key)
    before = {p.name for p in directory.iterdir()}
    with chain_lock(directory), pytest.raises(CheckpointError) as held:  # a rotation in progress
        accept_restore(sqlite.engine, signer, directory, REASON, shown, wait_s=0.3)
    assert "another key rotation, restore acceptance or checkpoint write holds" in str(held.value)
    assert ".checkpoint-chain.lock" in str(held.value) and "nothing was written" in str(held.value)
    assert "另一次密钥轮换、恢复确认或检查点写入正持有锁文件" in held.value.message_zh
    assert {p.name for p in directory.iterdir()} == before
    accept_restore(sqlite.engine, signer, directory, REASON, shown)  # once it is released
    with pytest.raises(RestoreAlreadyAccepted, match=r"another run accepted this restore meanwhile"):
        accept_restore(sqlite.engine, signer, directory, REASON, shown)
    assert len(list(directory.glob("*-restore.json"))) == 1
