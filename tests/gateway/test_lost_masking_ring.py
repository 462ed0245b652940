"""A masking key ring missing where the database shows this deployment already masks under one is not made
afresh (README "Keys"): a host whose copy was never made, or lost, masked under keys of its own, so the
same resident got other pseudonyms there and nothing sealed elsewhere (or before) could be opened. It is
refused, naming what to copy; ``keys replace-lost-ring`` makes a new one deliberately, on the record."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit import AuditLog, Outcome
from gateway.cli import app as grassroots
from gateway.db import make_engine, upgrade
from gateway.keys import KeyFileError, load_masking_keyring
from gateway.settings import Settings
from tests.audit.helpers import make_event


def _deployment(tmp_path: Path, served: bool) -> tuple[Settings, Path]:
    """A migrated data directory whose gateway made its ring; with ``served``, one read served from it."""
    data_dir = tmp_path / "var"
    database = data_dir / "gateway.db"
    upgrade(f"sqlite:///{database}")
    settings = Settings(data_dir=data_dir)
    load_masking_keyring(settings)
    engine = make_engine(f"sqlite:///{database}")
    log = AuditLog(engine)
    log.append_many([make_event(3, outcome=Outcome.REFUSED, record_count=0, subject_refs=())])
    if served:
        log.append_many([make_event(1)])  # an allowed data.read
    engine.dispose()
    return settings, database


def test_a_lost_ring_is_not_made_afresh_once_data_was_served_under_one(tmp_path: Path) -> None:
    settings, _ = _deployment(tmp_path, served=True)
    ring = settings.keys_dir / "masking-keyring.json"
    ring.unlink()  # a new host without its copy, or a lost file
    with pytest.raises(KeyFileError) as refused:
        load_masking_keyring(settings)
    assert not ring.exists()  # the old code made a new ring here and went on
    assert refused.value.message_zh.startswith(f"脱敏数据密钥环 {ring} 不存在，但本部署已在使用密钥环")
    assert "审计日志第 2 号事件起已按它脱敏提供数据" in refused.value.message_zh
    assert "grassroots keys replace-lost-ring" in refused.value.message_zh
    assert "data masked under it was served from audit event 2 on" in refused.value.message_en
    assert "Copy masking-keyring.json from a backup or another gateway host" in refused.value.message_en


def test_a_recorded_rotation_counts_and_a_ring_never_used_is_made(tmp_path: Path) -> None:
    settings, _ = _deployment(tmp_path, served=False)
    ring = settings.keys_dir / "masking-keyring.json"
    ring.unlink()
    load_masking_keyring(settings)  # only a refused read so far: nothing was masked under the old ring
    assert ring.exists()
    env = {
        "GRASSROOTS_DATA_DIR": str(settings.data_dir),
        "GRASSROOTS_DATABASE_URL": None,
        "GRASSROOTS_MODE": None,
    }
    assert CliRunner().invoke(grassroots, ["keys", "rotate"], env=env).exit_code == 0
    ring.unlink()
    with pytest.raises(KeyFileError, match="审计日志第 2 号事件记载它已轮换过"):
        load_masking_keyring(settings)


def test_replace_lost_ring_makes_one_on_the_record_and_only_where_none_is(tmp_path: Path) -> None:
    settings, database = _deployment(tmp_path, served=True)
    ring = settings.keys_dir / "masking-keyring.json"
    env = {
        "GRASSROOTS_DATA_DIR": str(settings.data_dir),
        "GRASSROOTS_DATABASE_URL": None,
        "GRASSROOTS_MODE": None,
    }
    kept = CliRunner().invoke(grassroots, ["keys", "replace-lost-ring"], env=env)
    assert kept.exit_code == 2 and "密钥环" in kept.stderr and "nothing to replace" in kept.stderr
    ring.unlink()
    made = CliRunner().invoke(grassroots, ["keys", "replace-lost-ring"], env=env)
    assert made.exit_code == 0, (made.stdout, made.stderr, made.exception)
    assert "已新建脱敏数据密钥环（启用密钥 k1）" in made.stdout and "new masking key ring made" in made.stdout
    load_masking_keyring(settings)  # the gateway starts on it
    with sqlite3.connect(database) as db:
        bodies = [
            json.loads(b) for (b,) in db.execute("SELECT body FROM audit_events WHERE kind = 'keys.rotated'")
        ]
    assert [b["details"] for b in bodies] == [
        {"before": None, "after": "k1", "lost_ring": True, "via": "cli"}
    ]
    assert bodies[0]["actor"].startswith("cli:")
