"""Two rotations of the same key ring at once (two terminals, a retried script) take turns: each adds its own
key, the log records each once, and no recorded key is lost (README "Keys")."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.db import upgrade
from gateway.keys import load_audit_refs, load_masking_keyring
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


#: Each rotation command, the ring file it writes, and the "keys" of its keys.rotated event.
ROTATIONS = pytest.mark.parametrize(
    ("command", "ring_file", "keys"),
    [
        ("rotate", "masking-keyring.json", None),
        ("rotate-audit-ref", "audit-ref-keys.json", "audit_ref"),
    ],
)


def _gateway_dir(tmp_path: Path) -> tuple[Path, Path]:
    """A migrated data directory with the key files a gateway's first start makes; and its database."""
    data_dir = tmp_path / "var"
    database = data_dir / "gateway.db"
    upgrade(f"sqlite:///{database}")
    settings = Settings(data_dir=data_dir)
    load_masking_keyring(settings)
    load_audit_refs(settings)
    return data_dir, database


def _rotated(database: Path, keys: str | None) -> list[tuple[str, str]]:
    """(before, after) of every ``keys.rotated`` event of that kind, in log order."""
    with sqlite3.connect(database) as db:
        bodies = [body for (body,) in db.execute("SELECT body FROM audit_events ORDER BY seq")]
    events = [json.loads(body) for body in bodies]
    return [
        (e["details"]["before"], e["details"]["after"])
        for e in events
        if e["kind"] == "keys.rotated" and e["details"].get("keys") == keys
    ]


@ROTATIONS
def test_two_rotations_at_once_each_add_their_own_key(
    tmp_path: Path, command: str, ring_file: str, keys: str | None
) -> None:
    data_dir, database = _gateway_dir(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRASSROOTS_")}
    env |= {"GRASSROOTS_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    # Hold the log's write lock while both start, so that both are past reading the ring and waiting to
    # record the rotation when it is let go: the window two rotations at once always had, made wide.
    blocker = sqlite3.connect(database, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "keys", command],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    time.sleep(6)  # both started and blocked (the log waits up to 10 s for its lock)
    blocker.execute("ROLLBACK")
    blocker.close()
    outcomes = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outcomes
    # Each recorded its own rotation: k1 -> k2, then k2 -> k3; not k1 -> k2 twice with one k2 lost.
    assert _rotated(database, keys) == [("k1", "k2"), ("k2", "k3")]
    stored = json.loads((data_dir / "keys" / ring_file).read_text())
    ids = [key["key_id"] for key in stored["keys"]]
    assert ids[-2:] == ["k2", "k3"]
    assert [p.name for p in (data_dir / "keys").iterdir() if p.name.endswith(".tmp")] == []


@ROTATIONS
def test_a_rotation_that_cannot_write_its_ring_is_neither_done_nor_recorded(
    tmp_path: Path, command: str, ring_file: str, keys: str | None
) -> None:
    from typer.testing import CliRunner

    from gateway.cli import app as grassroots

    data_dir, database = _gateway_dir(tmp_path)
    ring = data_dir / "keys" / ring_file
    before = ring.read_text() if ring.exists() else None
    # What a key directory the operator cannot write into does (chmod, a read-only mount), for any user:
    # the rotation was recorded in the log, then its save was a traceback, the ring as it was.
    (data_dir / "keys" / ".key-rings.lock").mkdir()
    env = {"GRASSROOTS_DATA_DIR": str(data_dir), "GRASSROOTS_DATABASE_URL": None, "GRASSROOTS_MODE": None}
    result = CliRunner().invoke(grassroots, ["keys", command], env=env)
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    zh, en = result.stderr.splitlines()[:2]
    assert zh.startswith(f"密钥未轮换：无法在密钥目录 {data_dir / 'keys'} 中写入") and "未写入审计日志" in zh
    assert en.startswith("key not rotated: cannot write in the key directory") and "nothing was" in en
    assert _rotated(database, keys) == []
    assert (ring.read_text() if ring.exists() else None) == before


@ROTATIONS
def test_a_rotation_whose_ring_cannot_reach_the_disk_is_neither_done_nor_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, ring_file: str, keys: str | None
) -> None:
    """A full disk (or a quota) met while saving the rotated ring: the rotation was recorded first, then the
    save was a traceback, leaving a "k1 -> k2" in the log that can never be undone and no k2 kept. The ring
    is now written and synced before the rotation is recorded, so a ring that cannot be written is known
    first: exit 1, nothing recorded, the ring as it was, no temporary file left."""
    import errno

    from typer.testing import CliRunner

    from gateway.cli import app as grassroots

    data_dir, database = _gateway_dir(tmp_path)
    ring = data_dir / "keys" / ring_file
    before = ring.read_text() if ring.exists() else None
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        # Where a full disk surfaces for a file whose blocks the kernel allocates late (ext4, xfs).
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(f".{ring_file}."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    env = {"GRASSROOTS_DATA_DIR": str(data_dir), "GRASSROOTS_DATABASE_URL": None, "GRASSROOTS_MODE": None}
    result = CliRunner().invoke(grassroots, ["keys", command], env=env)
    assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
    zh, en = result.stderr.splitlines()[:2]
    assert zh.startswith(f"无法写入密钥文件 {ring}（No space left on device）") and "未写入审计日志" in zh
    assert en.startswith(f"cannot write the key file {ring} (No space left on device)")
    assert "nothing was changed or recorded" in en
    assert _rotated(database, keys) == []
    assert (ring.read_text() if ring.exists() else None) == before
    assert [p.name for p in (data_dir / "keys").iterdir() if p.name.endswith(".tmp")] == []
    # Space freed: the same command rotates and records once.
    monkeypatch.setattr(os, "fsync", real_fsync)
    result = CliRunner().invoke(grassroots, ["keys", command], env=env)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert _rotated(database, keys) == [("k1", "k2")]
