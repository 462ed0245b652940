"""Rotating the checkpoint key: a handover signed by the old key and the new one; a chain of keys verifies,
anything outside it (or an old key signing past its handover) is refused as a forgery."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from audit import (
    AuditLog,
    CheckpointError,
    CheckpointSigner,
    KeyAlreadyRotated,
    latest_checkpoint,
    list_checkpoints,
    rotate_signing_key,
    verify_log,
    write_checkpoint,
)
from audit.checkpoints import _store, chain_lock, checkpoint_roots_consistent
from tests.audit.conftest import Store
from tests.audit.helpers import make_event


def _raw(signer: CheckpointSigner) -> str:
    raw = signer.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def _rotated(store: Store, tmp_path: Path) -> tuple[CheckpointSigner, CheckpointSigner, Path, Path]:
    """Five events checkpointed under K1, rotated to K2 at size 5 (plus nothing), three more under K2."""
    log = AuditLog(store.engine)
    key_path, directory = tmp_path / "keys" / "checkpoint.pem", tmp_path / "checkpoints"
    log.append_many([make_event(i) for i in range(5)])
    old = CheckpointSigner.load_or_create(key_path)
    write_checkpoint(store.engine, old, directory)
    retired, new, handover = rotate_signing_key(store.engine, key_path, directory)
    assert retired.key_id == old.key_id and handover.key_id == new.key_id and handover.tree_size == 5
    log.append_many([make_event(i) for i in range(5, 8)])
    write_checkpoint(store.engine, CheckpointSigner.load_or_create(key_path), directory)
    return old, new, key_path, directory


def test_rotation_hands_over_and_the_whole_log_still_verifies(store: Store, tmp_path: Path) -> None:
    old, new, key_path, directory = _rotated(store, tmp_path)
    assert CheckpointSigner.load_or_create(key_path).key_id == new.key_id
    assert oct(os.stat(key_path).st_mode & 0o777) == "0o600"
    handovers = sorted(p.name for p in directory.iterdir() if p.name.endswith("-handover.json"))
    assert len(handovers) == 2
    # The signing host's key file (the new key) and a supervisor's pinned copy of the old key agree.
    for pinned in (new.public_key, old.public_key):
        signed = list_checkpoints(directory, pinned)
        assert [c.tree_size for c in signed] == [5, 5, 5, 8]
        assert sorted(c.key_id == new.key_id for c in signed) == [False, False, True, True]
        report = verify_log(store.engine, directory, pinned)
        assert report.ok, report.summary()
        assert report.checkpoint is not None and report.checkpoint.key_id == new.key_id
    first, last = signed[0], signed[-1]
    checkpoint_roots_consistent(first, last, AuditLog(store.engine).consistency_proof(5, 8))


def test_rotating_twice_chains_three_keys(sqlite: Store, tmp_path: Path) -> None:
    k1, k2, key_path, directory = _rotated(sqlite, tmp_path)
    _, k3, _ = rotate_signing_key(sqlite.engine, key_path, directory)
    AuditLog(sqlite.engine).append(make_event(9))
    write_checkpoint(sqlite.engine, CheckpointSigner.load_or_create(key_path), directory)
    for pinned in (k1, k2, k3):
        assert verify_log(sqlite.engine, directory, pinned.public_key).ok
        assert {c.key_id for c in list_checkpoints(directory, pinned.public_key)} == {
            k1.key_id,
            k2.key_id,
            k3.key_id,
        }
    # A host still holding a retired key file signs nothing more: every verifier would refuse it.
    for retired in (k1, k2):
        with pytest.raises(CheckpointError, match="retired by a handover"):
            write_checkpoint(sqlite.engine, retired, directory)


def test_a_checkpoint_under_an_unrelated_key_is_still_a_forgery(sqlite: Store, tmp_path: Path) -> None:
    old, new, _, directory = _rotated(sqlite, tmp_path)
    latest = latest_checkpoint(directory, new.public_key)
    assert latest is not None
    _store(directory, CheckpointSigner.generate().sign(latest.tree_size, latest.root_hash))
    for pinned in (old, new):
        with pytest.raises(CheckpointError, match="signed by key"):
            latest_checkpoint(directory, pinned.public_key)
        assert not verify_log(sqlite.engine, directory, pinned.public_key).ok


def test_a_handover_between_two_unrelated_keys_links_nothing(sqlite: Store, tmp_path: Path) -> None:
    """Whoever can write the directory but holds no key of the chain makes a perfect handover of their own."""
    _, new, _, directory = _rotated(sqlite, tmp_path)
    x1, x2 = CheckpointSigner.generate(), CheckpointSigner.generate()
    root = latest_checkpoint(directory, new.public_key)
    assert root is not None
    handover = {"from": _raw(x1), "to": _raw(x2)}
    for signer in (x1, x2):
        _store(directory, signer.sign(9, root.root_hash, handover=handover))
    with pytest.raises(CheckpointError, match="signed by key"):
        list_checkpoints(directory, new.public_key)


def test_a_handover_signed_by_the_wrong_key_is_refused(sqlite: Store, tmp_path: Path) -> None:
    """An attacker's handover from the current key to theirs: the copy that names the current key as its
    signer is signed with the attacker's key (they do not hold the current one)."""
    _, new, _, directory = _rotated(sqlite, tmp_path)
    attacker = CheckpointSigner.generate()
    latest = latest_checkpoint(directory, new.public_key)
    assert latest is not None
    handover = {"from": _raw(new), "to": _raw(attacker)}
    _store(directory, attacker.sign(latest.tree_size, latest.root_hash, handover=handover))
    theirs = attacker.sign(latest.tree_size, latest.root_hash, handover=handover)
    _store(directory, dataclasses.replace(theirs, key_id=new.key_id))
    with pytest.raises(CheckpointError, match="signature does not verify"):
        list_checkpoints(directory, new.public_key)
    assert not verify_log(sqlite.engine, directory, new.public_key).ok


def test_a_stolen_old_key_cannot_sign_past_its_handover(sqlite: Store, tmp_path: Path) -> None:
    old, new, _, directory = _rotated(sqlite, tmp_path)
    stolen = old  # the thief kept a copy of the old key file
    latest = latest_checkpoint(directory, new.public_key)
    assert latest is not None
    _store(directory, stolen.sign(latest.tree_size + 1, latest.root_hash))
    with pytest.raises(CheckpointError, match=r"which signs only tree sizes 0\.\.5 "):
        latest_checkpoint(directory, new.public_key)


def test_a_stolen_old_key_handing_over_again_is_a_fork(sqlite: Store, tmp_path: Path) -> None:
    old, new, _, directory = _rotated(sqlite, tmp_path)
    thief = CheckpointSigner.generate()
    first = list_checkpoints(directory, new.public_key)[0]
    handover = {"from": _raw(old), "to": _raw(thief)}
    for signer in (old, thief):
        _store(directory, signer.sign(first.tree_size, first.root_hash, handover=handover))
    for pinned in (old, new):
        with pytest.raises(CheckpointError, match="handed over twice"):
            latest_checkpoint(directory, pinned.public_key)


# Run as a separate process: one host's `keys rotate-checkpoint` (the library call it makes). The window
# between reading the latest checkpoint and writing the handover is widened: each process, once there, waits
# (up to WAIT_S) for the other one to get there too, as two hosts rotating at the same moment would.
_HOST = """
import pathlib, sys, time
import sqlalchemy as sa
from audit import CheckpointError, checkpoints, rotate_signing_key

url, key_path, directory, arrived, me, wait_s = sys.argv[1:]
advance = checkpoints._advance

def both_here(*args, **kwargs):
    (pathlib.Path(arrived) / me).touch()
    deadline = time.monotonic() + float(wait_s)
    while len(list(pathlib.Path(arrived).iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    return advance(*args, **kwargs)

checkpoints._advance = both_here
engine = sa.create_engine(url)
try:
    print("rotated", rotate_signing_key(engine, pathlib.Path(key_path), pathlib.Path(directory))[1].key_id)
except CheckpointError as exc:
    print("refused", type(exc).__name__, exc)
    print(exc.message_zh)
"""
WAIT_S = 8


def test_two_hosts_rotating_at_once_make_one_handover_and_the_other_is_told_to_copy_its_key(
    sqlite: Store, tmp_path: Path
) -> None:
    """Both hosts hold a copy of the same key file and share the checkpoint directory. Without the rotation
    lock both passed the check of the latest checkpoint and handed the key over twice: a fork that every
    verifier refuses from then on. With it the second, once it holds the lock, finds the key handed over."""
    AuditLog(sqlite.engine).append_many([make_event(i) for i in range(5)])
    directory, arrived = tmp_path / "checkpoints", tmp_path / "arrived"
    arrived.mkdir()
    first = CheckpointSigner.load_or_create(tmp_path / "host-a.pem")
    write_checkpoint(sqlite.engine, first, directory)
    (tmp_path / "host-b.pem").write_bytes((tmp_path / "host-a.pem").read_bytes())
    os.chmod(tmp_path / "host-b.pem", 0o600)

    def host(name: str) -> subprocess.Popen[str]:
        key = str(tmp_path / f"host-{name}.pem")
        argv = [sys.executable, "-c", _HOST, sqlite.url, key, str(directory), str(arrived), name, str(WAIT_S)]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    hosts = [host("a"), host("b")]
    outputs = [p.communicate(timeout=120) for p in hosts]
    assert [p.returncode for p in hosts] == [0, 0], outputs
    said = sorted((out for out, _ in outputs), key=lambda out: not out.startswith("rotated "))
    assert said[0].startswith("rotated ") and said[1].startswith("refused KeyAlreadyRotated "), said
    new_id = said[0].split()[1]
    en, zh = said[1].splitlines()
    assert f"the checkpoint key {first.key_id} was already rotated: handed over to {new_id}" in en
    assert "Copy the key file" in en and "from the host that rotated it" in en
    assert f"检查点密钥 {first.key_id} 已经轮换过" in zh and "请从执行轮换的主机把密钥文件" in zh
    # One handover (two copies), the chain verifies from the old key and from the new one.
    assert len(list(directory.glob("checkpoint-*-handover.json"))) == 2
    keys = {h: CheckpointSigner.load_or_create(tmp_path / f"host-{h}.pem") for h in ("a", "b")}
    assert sorted(k.key_id for k in keys.values()) == sorted([first.key_id, new_id])  # the other kept its key
    for pinned in keys.values():
        assert [c.tree_size for c in list_checkpoints(directory, pinned.public_key)] == [5, 5, 5]
    assert not (directory / ".checkpoint-chain.lock").exists()


def test_a_key_file_replaced_by_another_run_is_not_rotated_again(sqlite: Store, tmp_path: Path) -> None:
    """Two runs on one host: the second, holding the lock after the first, finds the key file no longer holds
    the key it was asked to retire (it would otherwise hand the brand-new key over at once)."""
    AuditLog(sqlite.engine).append(make_event(1))
    key_path, directory = tmp_path / "key.pem", tmp_path / "checkpoints"
    meant = CheckpointSigner.load_or_create(key_path)
    _, first, _ = rotate_signing_key(sqlite.engine, key_path, directory, retiring=meant.key_id)
    recorded: list[str] = []
    with pytest.raises(KeyAlreadyRotated, match=f"now holds {first.key_id}; nothing was rotated"):
        rotate_signing_key(
            sqlite.engine,
            key_path,
            directory,
            retiring=meant.key_id,
            before_signing=lambda k: recorded.append(k.key_id),
        )
    assert recorded == []  # refused before anything is recorded
    assert CheckpointSigner.load_or_create(key_path).key_id == first.key_id


def test_a_rotation_left_holding_the_lock_is_named_and_nothing_is_rotated(
    sqlite: Store, tmp_path: Path
) -> None:
    key_path, directory = tmp_path / "key.pem", tmp_path / "checkpoints"
    key = CheckpointSigner.load_or_create(key_path)
    directory.mkdir()
    held_by_another = chain_lock(directory)
    held_by_another.__enter__()
    with pytest.raises(
        CheckpointError,
        match=r"another key rotation, restore acceptance or checkpoint write holds .*"
        r"\.checkpoint-chain\.lock",
    ) as held:
        rotate_signing_key(sqlite.engine, key_path, directory, wait_s=0.3)
    held_by_another.__exit__(None, None, None)
    assert (
        "pid" in str(held.value)
        and "另一次密钥轮换、恢复确认或检查点写入正持有锁文件" in held.value.message_zh
    )
    assert CheckpointSigner.load_or_create(key_path).key_id == key.key_id
    assert not list(directory.glob("checkpoint-*"))
    assert not (directory / ".checkpoint-chain.lock").exists()


def test_a_rotation_while_a_checkpoint_is_computed_leaves_no_checkpoint_past_the_handover(
    sqlite: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A periodic checkpoint reads the chain, walks the log (seconds, at millions of events), then signs.
    A rotation landing in that walk used to be followed by a checkpoint the retired key signed past its
    handover, which every verifier refuses. Storing now re-reads the chain under the chain lock: the late
    checkpoint is refused (KeyRetired), nothing is stored, and the log still verifies."""
    from audit import KeyRetired, checkpoints

    log = AuditLog(sqlite.engine)
    key_path, directory = tmp_path / "keys" / "checkpoint.pem", tmp_path / "checkpoints"
    log.append_many([make_event(i) for i in range(5)])
    old = CheckpointSigner.load_or_create(key_path)
    write_checkpoint(sqlite.engine, old, directory)
    log.append_many([make_event(i) for i in range(5, 8)])
    real, rotated = checkpoints._advance, []

    def walk_during_which_a_rotation_lands(*args: object, **kwargs: object) -> object:
        walked = real(*args, **kwargs)  # type: ignore[arg-type]
        if not rotated:  # another operator's rotation, between the walk and the signature
            rotated.append(None)  # (the rotation walks the log too)
            rotated.append(rotate_signing_key(sqlite.engine, key_path, directory, wait_s=1.0))
        return walked

    monkeypatch.setattr(checkpoints, "_advance", walk_during_which_a_rotation_lands)
    before = sorted(p.name for p in directory.glob("checkpoint-*"))
    log.append_many([make_event(8)])
    with pytest.raises(KeyRetired, match="retired by a handover at tree size 9"):
        write_checkpoint(sqlite.engine, old, directory)
    monkeypatch.undo()
    after = sorted(p.name for p in directory.glob("checkpoint-*"))
    assert [n for n in after if n not in before and not n.endswith("-handover.json")] == []
    assert not (directory / ".checkpoint-chain.lock").exists()
    for pinned in (old.public_key, rotated[1][1].public_key):
        report = verify_log(sqlite.engine, directory, pinned)
        assert report.ok, report.summary()


def test_storing_a_checkpoint_while_the_chain_is_locked_waits_then_writes_nothing(
    sqlite: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audit import ChainBusy, checkpoints

    log = AuditLog(sqlite.engine)
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    log.append_many([make_event(i) for i in range(3)])
    monkeypatch.setattr(checkpoints, "STORE_LOCK_WAIT_S", 0.3)
    with chain_lock(directory), pytest.raises(ChainBusy, match="nothing was written"):  # a rotation
        write_checkpoint(sqlite.engine, CheckpointSigner.generate(), directory)
    assert not list(directory.glob("checkpoint-*"))
    assert write_checkpoint(sqlite.engine, CheckpointSigner.generate(), directory).tree_size == 3


def _lock_file_of(directory: Path, host: str, pid: int) -> Path:
    path = directory / ".checkpoint-chain.lock"
    path.write_text(json.dumps({"host": host, "pid": pid, "since": "2026-12-07T00:00:00Z", "nonce": "x"}))
    return path


def test_a_lock_left_by_a_dead_process_of_this_host_is_taken_over(sqlite: Store, tmp_path: Path) -> None:
    """A gateway killed (SIGKILL after a stop timed out) while storing a periodic checkpoint left the lock
    file, and every rotation then waited five minutes and was refused. A lock naming a process of this host
    that has exited is taken over at once; one of a live process, or of another host, is still waited for."""
    import socket

    directory = tmp_path / "checkpoints"
    directory.mkdir()
    AuditLog(sqlite.engine).append_many([make_event(i) for i in range(3)])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    _lock_file_of(directory, socket.gethostname(), int(dead.stdout))
    signer = CheckpointSigner.generate()
    with chain_lock(directory, wait_s=0.3):
        assert json.loads((directory / ".checkpoint-chain.lock").read_text())["pid"] == os.getpid()
    assert not list(directory.glob(".checkpoint-chain.lock*"))  # nothing left aside either

    for host, pid in ((socket.gethostname(), os.getppid()), ("another-host", int(dead.stdout))):
        held = _lock_file_of(directory, host, pid)
        with pytest.raises(CheckpointError, match="holds"):
            rotate_signing_key(sqlite.engine, tmp_path / "key.pem", directory, signer, wait_s=0.3)
        assert held.exists()
        held.unlink()


_WRITES_REFUSED = """
import resource, signal, sys
from pathlib import Path
from audit import CheckpointSigner, merkle
from audit.checkpoints import _store, chain_lock
directory = Path(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))  # every write now fails (EFBIG)
for step in ("lock", "store"):
    try:
        if step == "lock":
            with chain_lock(directory, wait_s=0.3):
                pass
        else:
            _store(directory, CheckpointSigner.generate().sign(0, merkle.EMPTY_ROOT, epoch=0))
    except OSError as exc:
        print(step, exc.errno)
"""


def test_a_write_that_fails_for_want_of_space_leaves_no_lock_behind(tmp_path: Path) -> None:
    """The disk filled while a periodic round took the chain lock: the lock file was created, its body
    could not be written, and the empty file stayed. It named no process, so it was never taken over:
    every later round waited 30 s and failed ``chain_busy`` long after the disk had room again, until an
    operator removed it. A write that fails now removes the file it created (the lock, a checkpoint's
    temporary file), so the next round, once there is room, goes on by itself."""
    import errno

    directory = tmp_path / "checkpoints"
    directory.mkdir()
    refused = subprocess.run(
        [sys.executable, "-c", _WRITES_REFUSED, str(directory)], capture_output=True, text=True, check=True
    )
    assert refused.stdout.split() == ["lock", str(errno.EFBIG), "store", str(errno.EFBIG)]
    assert not list(directory.iterdir())  # neither an empty lock nor a temporary checkpoint file
    with chain_lock(directory, wait_s=0.3):  # the disk has room again: taken at once
        pass
