"""Signed checkpoints: an Ed25519 key outside the database, append-only files, verified on read."""

from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path

import pytest

from audit import (
    AuditLog,
    CheckpointError,
    CheckpointSigner,
    extend_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    merkle_root,
    write_checkpoint,
)
from audit import checkpoints as checkpoints_module
from audit.checkpoints import checkpoint_roots_consistent
from audit.merkle import MerkleAccumulator
from tests.audit.conftest import Store
from tests.audit.helpers import drop_triggers, make_event, rechain, refs_for, restore, snapshot


def test_key_file_is_created_private_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "checkpoint.pem"
    signer = CheckpointSigner.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert CheckpointSigner.load_or_create(path).key_id == signer.key_id
    assert CheckpointSigner.load_or_create(tmp_path / "other.pem").key_id != signer.key_id


def test_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pem"
    CheckpointSigner.load_or_create(path)
    path.chmod(0o640)
    with pytest.raises(CheckpointError, match="600"):
        CheckpointSigner.load_or_create(path)


def test_private_key_never_shows(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pem"
    signer = CheckpointSigner.load_or_create(path)
    pem = path.read_text()
    body = "".join(pem.splitlines()[1:-1])
    assert body not in repr(signer) and body not in str(signer)
    with pytest.raises(TypeError):
        pickle.dumps(signer)


def test_checkpoint_signs_the_merkle_root_and_files_are_never_overwritten(
    sqlite: Store, tmp_path: Path
) -> None:
    log = AuditLog(sqlite.engine)
    signer = CheckpointSigner.generate()
    directory = tmp_path / "checkpoints"
    log.append_many([make_event(i) for i in range(5)])
    first = write_checkpoint(sqlite.engine, signer, directory)
    first_files = {p.name: p.read_bytes() for p in directory.iterdir()}
    again = write_checkpoint(sqlite.engine, signer, directory)  # same size, new file
    log.append_many([make_event(i) for i in range(5, 9)])
    latest = write_checkpoint(sqlite.engine, signer, directory)

    leaves = [log.read(seq)[2] for seq in range(1, 10)]
    assert (first.tree_size, first.root_hash) == (5, merkle_root(leaves[:5]))
    assert again.root_hash == first.root_hash
    assert (latest.tree_size, latest.root_hash) == (9, merkle_root(leaves))
    assert len(list(directory.iterdir())) == 3
    assert all((directory / name).read_bytes() == data for name, data in first_files.items())
    assert latest_checkpoint(directory, signer.public_key) == latest
    assert [c.tree_size for c in list_checkpoints(directory, signer.public_key)] == [5, 5, 9]
    checkpoint_roots_consistent(first, latest, log.consistency_proof(5, 9))


def test_empty_directory_has_no_checkpoint_but_a_missing_one_is_an_error(tmp_path: Path) -> None:
    signer = CheckpointSigner.generate()
    (tmp_path / "empty").mkdir()
    assert latest_checkpoint(tmp_path / "empty", signer.public_key) is None
    with pytest.raises(CheckpointError):
        latest_checkpoint(tmp_path / "missing", signer.public_key)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tree_size", 4),
        ("root_hash", "00" * 32),
        ("timestamp", "2030-01-01T00:00:00.000000Z"),
        ("signature", "AAAA"),
    ],
)
def test_tampered_checkpoint_is_refused(sqlite: Store, tmp_path: Path, field: str, value: object) -> None:
    AuditLog(sqlite.engine).append_many([make_event(i) for i in range(5)])
    signer = CheckpointSigner.generate()
    directory = tmp_path / "checkpoints"
    write_checkpoint(sqlite.engine, signer, directory)
    (path,) = directory.iterdir()
    data = json.loads(path.read_text())
    data[field] = value
    os.chmod(path, 0o644)
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError):
        latest_checkpoint(directory, signer.public_key)


def test_checkpoint_from_another_key_is_refused(sqlite: Store, tmp_path: Path) -> None:
    AuditLog(sqlite.engine).append(make_event(1))
    write_checkpoint(sqlite.engine, CheckpointSigner.generate(), tmp_path)
    with pytest.raises(CheckpointError, match="key"):
        latest_checkpoint(tmp_path, CheckpointSigner.generate().public_key)


def test_refuses_to_sign_over_rewritten_history(store: Store, tmp_path: Path) -> None:
    log = AuditLog(store.engine)
    log.append_many([make_event(i) for i in range(6)])
    signer = CheckpointSigner.generate()
    write_checkpoint(store.engine, signer, tmp_path)
    drop_triggers(store.engine)
    events, _, _ = snapshot(store.engine)
    events[2]["body"] = events[2]["body"].replace("user-", "user-X")
    head = rechain(events)
    restore(store.engine, events, refs_for(events), head)
    with pytest.raises(CheckpointError, match="no longer match"):
        write_checkpoint(store.engine, signer, tmp_path)
    restore(store.engine, events[:4], refs_for(events[:4]), rechain(events[:4]))
    with pytest.raises(CheckpointError, match="refusing to sign"):
        write_checkpoint(store.engine, signer, tmp_path)


def test_a_periodic_writer_reads_only_the_events_since_its_last_checkpoint(
    sqlite: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog(sqlite.engine)
    signer = CheckpointSigner.generate()
    read: list[tuple[int, int]] = []
    real = checkpoints_module.iter_leaf_hashes

    def counting(engine: object, first: int, last: int, *args: object) -> object:
        read.append((first, last))
        return real(engine, first, last, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(checkpoints_module, "iter_leaf_hashes", counting)
    log.append_many([make_event(i) for i in range(7)])
    first, since = extend_checkpoint(sqlite.engine, signer, tmp_path, None)
    log.append_many([make_event(i) for i in range(7, 12)])
    second, since = extend_checkpoint(sqlite.engine, signer, tmp_path, since)

    assert read == [(1, 7), (8, 12)]
    leaves = [log.read(seq)[2] for seq in range(1, 13)]
    assert (first.tree_size, first.root_hash) == (7, merkle_root(leaves[:7]))
    assert (second.tree_size, second.root_hash) == (12, merkle_root(leaves))
    assert since.size == 12 and since.root() == second.root_hash
    assert write_checkpoint(sqlite.engine, signer, tmp_path).root_hash == second.root_hash


def test_a_resumed_writer_still_checks_the_latest_checkpoint(sqlite: Store, tmp_path: Path) -> None:
    """An accumulator that does not extend the signed prefix is refused, whether the latest checkpoint has
    its size (compared at once) or is larger (signed meanwhile by another process: compared on the way);
    one larger than the log, or a checkpoint older than it, means a whole walk instead."""
    log = AuditLog(sqlite.engine)
    signer = CheckpointSigner.generate()
    log.append_many([make_event(i) for i in range(6)])
    _, since = extend_checkpoint(sqlite.engine, signer, tmp_path, None)
    stranger = MerkleAccumulator()
    for i in range(6):
        stranger.append(bytes([i]) * 32)
    with pytest.raises(CheckpointError, match="no longer match"):
        extend_checkpoint(sqlite.engine, signer, tmp_path, stranger)

    short_stranger = MerkleAccumulator()
    for i in range(4):
        short_stranger.append(bytes([i]) * 32)
    with pytest.raises(CheckpointError, match="no longer match"):
        extend_checkpoint(sqlite.engine, signer, tmp_path, short_stranger)  # walks on to 6, compares there

    log.append_many([make_event(i) for i in range(6, 8)])
    too_long = MerkleAccumulator()
    for i in range(9):
        too_long.append(bytes([i]) * 32)
    walked, _ = extend_checkpoint(sqlite.engine, signer, tmp_path, too_long)  # 9 > 8 events: a whole walk
    assert walked.root_hash == merkle_root([log.read(seq)[2] for seq in range(1, 9)])
    resumed, _ = extend_checkpoint(sqlite.engine, signer, tmp_path, since)  # 6 < latest 8: walks 7..8
    assert resumed.root_hash == walked.root_hash
