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


@pytest.mark.parametrize(
    ("command", "ring_file", "keys"),
    [
        ("rotate", "masking-keyring.json", None),
        ("rotate-audit-ref", "audit-ref-keys.json", "audit_ref"),
    ],
)
def test_two_rotations_at_once_each_add_their_own_key(
    tmp_path: Path, command: str, ring_file: str, keys: str | None
) -> None:
    data_dir = tmp_path / "var"
    database = data_dir / "gateway.db"
    upgrade(f"sqlite:///{database}")
    settings = Settings(data_dir=data_dir)
    load_masking_keyring(settings)  # the key files a gateway's first start makes
    load_audit_refs(settings)
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
