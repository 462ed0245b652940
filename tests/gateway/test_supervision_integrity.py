"""The monthly report's 日志完整性 section (``_integrity``) as a supervisor reads it: when the signed
checkpoint cannot be checked the answer says so and why, in both languages, instead of leaving the section
out (which reads as "nothing to check"); the key is never made, and no server path is in the answer."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from audit import CheckpointSigner, build_monthly_report, load_anomaly_rules, render_html
from gateway.routes.supervision import _integrity
from gateway.runtime import Runtime
from gateway.settings import Settings
from tests.gateway.test_cli_audit import migrated_sqlite_store

_CJK = re.compile(r"[\u3000-\u30ff\u4e00-\u9fff\uff00-\uffef]")


def _integrity_in(data_dir: Path) -> dict[str, Any]:
    runtime = SimpleNamespace(settings=Settings(data_dir=data_dir))
    return _integrity(cast(Runtime, runtime))


def _key_path(data_dir: Path) -> Path:
    return data_dir / "keys" / "audit-checkpoint-ed25519.pem"


def _assert_not_checked(integrity: dict[str, Any], problem: str, data_dir: Path) -> None:
    assert set(integrity) == {"checked", "problem", "message", "message_en"}
    assert (integrity["checked"], integrity["problem"]) == (False, problem)
    zh, en = integrity["message"], integrity["message_en"]
    assert zh.startswith("未能核对签名检查点：") and _CJK.search(zh)
    assert en.startswith("The signed checkpoint could not be checked: ") and not _CJK.search(en)
    for text in (zh, en):
        assert "GRASSROOTS_CHECKPOINT_KEY_PATH" in text and "grassroots audit verify" in text
        assert str(data_dir) not in text  # the setting is named, not the server's file path


def test_a_missing_key_is_said_not_left_out(tmp_path: Path) -> None:
    CheckpointSigner.load_or_create(_key_path(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    _key_path(tmp_path).unlink()
    integrity = _integrity_in(tmp_path)
    _assert_not_checked(integrity, "checkpoint_key_missing", tmp_path)
    assert "找不到检查点密钥" in integrity["message"] and "no checkpoint key" in integrity["message_en"]
    assert "新生成的密钥无法验证" in integrity["message"]
    assert not _key_path(tmp_path).exists()  # never made: a new key could not verify the old checkpoints


def test_an_unusable_key_is_said_with_its_reason(tmp_path: Path) -> None:
    _key_path(tmp_path).parent.mkdir()
    _key_path(tmp_path).write_text("not a key\n")
    integrity = _integrity_in(tmp_path)
    _assert_not_checked(integrity, "checkpoint_key_unusable", tmp_path)
    assert "不是 PEM" in integrity["message"] and "not a PEM" in integrity["message_en"]


@pytest.mark.parametrize("with_directory", [False, True])
def test_no_checkpoint_yet_is_checked_and_says_so(tmp_path: Path, with_directory: bool) -> None:
    CheckpointSigner.load_or_create(_key_path(tmp_path))
    if with_directory:
        (tmp_path / "checkpoints").mkdir()
    integrity = _integrity_in(tmp_path)
    assert integrity["checked"] is True and "tree_size" not in integrity
    assert integrity["note"] == "本报告生成时尚无签名检查点。" and not _CJK.search(integrity["note_en"])


def test_the_printed_report_says_why_the_checkpoint_was_not_checked(tmp_path: Path) -> None:
    integrity = _integrity_in(tmp_path)  # no key at all
    store = migrated_sqlite_store(tmp_path / "audit.db")
    report = build_monthly_report(store.engine, "2026-11", load_anomaly_rules(), integrity=integrity)
    store.engine.dispose()
    assert report.to_json()["integrity"] == integrity
    page = render_html(report)
    assert integrity["message"] in page
    assert "本报告生成时尚无签名检查点" not in page  # not as if there were simply none yet
