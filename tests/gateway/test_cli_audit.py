"""`grassroots audit verify` and `grassroots audit checkpoint` as a person reads them, against real files:
what was verified against which signed checkpoint, what failed when a checkpoint does not verify (Chinese
first, never a Python ``None``), and the offline checkpoint recorded in the log like the API's.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

from audit import AuditLog, CheckpointSigner
from audit.tables import audit_events
from gateway.cli import app as grassroots
from gateway.cli import offline_actor
from gateway.db import upgrade
from tests.audit.conftest import Store
from tests.audit.helpers import make_event

runner = CliRunner()
_CJK = re.compile(r"[\u3000-\u30ff\u4e00-\u9fff\uff00-\uffef]")


def _cli(tmp_path: Path, *args: str, settings: dict[str, str] | None = None) -> Result:
    env = {
        "GRASSROOTS_TOKEN": "",
        "GRASSROOTS_URL": "",
        "GRASSROOTS_DATA_DIR": str(tmp_path),
        "GRASSROOTS_DATABASE_URL": f"sqlite:///{tmp_path / 'audit.db'}",
        "GRASSROOTS_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        **(settings or {}),
    }
    return runner.invoke(grassroots, list(args), env=env)


def migrated_sqlite_store(path: Path) -> Store:
    """A SQLite audit store made the way the product makes one (``grassroots db upgrade``): the offline
    commands refuse a database that is not at the code's schema revision."""
    url = f"sqlite:///{path}"
    upgrade(url)
    return Store(sa.create_engine(url), url, None)


def _log_of(tmp_path: Path, events: int) -> None:
    store = migrated_sqlite_store(tmp_path / "audit.db")
    AuditLog(store.engine).append_many(make_event(i) for i in range(events))
    store.engine.dispose()


def _pairs(text: str) -> list[tuple[str, str]]:
    """Every message as (Chinese line, English line): Chinese first, the English free of Chinese."""
    lines = text.splitlines()
    assert len(lines) % 2 == 0, text
    pairs = list(zip(lines[::2], lines[1::2], strict=True))
    for zh, en in pairs:
        assert _CJK.search(zh) and not _CJK.search(en), text
    return pairs


def test_verify_without_a_checkpoint_says_there_was_none(tmp_path: Path) -> None:
    _log_of(tmp_path, 3)
    verified = _cli(tmp_path, "audit", "verify", "--quiet")
    assert verified.exit_code == 0, verified.output
    pairs = _pairs(verified.stdout)
    assert pairs[0] == ("审计日志完整：已校验 3 条事件。", "audit log intact: 3 events verified")
    zh, en = pairs[1]
    assert "没有签名检查点" in zh and "grassroots audit checkpoint" in zh
    assert "no signed checkpoint" in en


def test_verify_names_the_signed_checkpoint_it_checked_against(tmp_path: Path) -> None:
    _log_of(tmp_path, 3)
    assert _cli(tmp_path, "audit", "checkpoint").exit_code == 0
    (name,) = [p.name for p in (tmp_path / "checkpoints").glob("checkpoint-*.json")]
    signed = json.loads((tmp_path / "checkpoints" / name).read_bytes())
    verified = _cli(tmp_path, "audit", "verify", "--quiet")
    assert verified.exit_code == 0, verified.output
    pairs = _pairs(verified.stdout)
    # The checkpoint's own event (seq 4) came after it: the log has 4 events, the checkpoint covers 3.
    assert pairs[0] == ("审计日志完整：已校验 4 条事件。", "audit log intact: 4 events verified")
    zh, en = pairs[1]
    assert f"签名检查点 {name}" in zh and "树大小 3" in zh and "北京时间" in zh
    assert f"signed checkpoint {name}" in en and "tree size 3" in en
    assert f"signed {signed['timestamp']}" in en  # when it was signed
    assert "1 条" in zh and "1 later event" in en  # the events after it are not yet signed
    # How old it is, and where to look when events after it stay uncovered (the periodic one stopped).
    zh, en = pairs[2]
    assert zh.startswith("  最新签名检查点签发于") and "前；" in zh and "/readyz" in zh
    assert en.startswith("  the latest signed checkpoint was signed ") and " ago; " in en and "/readyz" in en


@pytest.mark.parametrize(
    ("age", "zh", "en"),
    [
        # It read "签发至今 不到 1 分钟": a space between two Chinese words, and no 前.
        (timedelta(seconds=5), "签发于不到 1 分钟前。", "was signed under a minute ago"),
        (timedelta(minutes=5, seconds=30), "签发于 5 分钟前。", "was signed 5 minutes ago"),
        (timedelta(days=3, hours=1), "签发于 3 天前。", "was signed 3 days ago"),
    ],
)
def test_the_checkpoint_age_reads_naturally_in_both_languages(age: timedelta, zh: str, en: str) -> None:
    from gateway.cli import _checkpoint_age

    said = _checkpoint_age(datetime.now(UTC) - age, 0)
    assert said == (f"  最新签名检查点{zh}", f"  the latest signed checkpoint {en}")


def test_verify_against_a_tampered_checkpoint_says_what_failed(tmp_path: Path) -> None:
    _log_of(tmp_path, 3)
    assert _cli(tmp_path, "audit", "checkpoint").exit_code == 0
    (path,) = (tmp_path / "checkpoints").glob("checkpoint-*.json")
    signed = json.loads(path.read_bytes())
    forged_root = "f" * 64
    path.write_text(json.dumps({**signed, "root_hash": forged_root}))
    broken = _cli(tmp_path, "audit", "verify", "--quiet")
    assert broken.exit_code == 1
    assert "None" not in broken.output
    zh, en = _pairs(broken.stderr)[0]
    assert zh.startswith("审计日志校验失败：签名检查点") and path.name in zh and "树大小 3" in zh
    assert "签名" in zh and "无法验证" in zh
    assert en.startswith("audit log verification FAILED: signed checkpoint") and path.name in en
    assert "tree size 3" in en and "signature does not verify" in en
    assert "#" not in zh + en


def test_checkpoint_from_the_cli_is_an_audit_event_naming_the_operator(tmp_path: Path) -> None:
    _log_of(tmp_path, 3)
    written = _cli(tmp_path, "audit", "checkpoint")
    assert written.exit_code == 0, written.output
    actor = offline_actor()
    assert actor.startswith("cli:")
    zh, en = _pairs(written.stdout)[0]
    assert zh.startswith("已写入签名检查点：树大小 3，根哈希 ") and actor in zh
    assert en.startswith("checkpoint written: size 3") and actor in en
    (path,) = (tmp_path / "checkpoints").glob("checkpoint-*.json")
    signed = json.loads(path.read_bytes())
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    with engine.connect() as conn:
        row = conn.execute(sa.select(audit_events).where(audit_events.c.seq == 4)).one()
    engine.dispose()
    body = json.loads(row.body)
    assert (row.kind, row.actor, row.outcome) == ("audit.checkpoint_written", actor, "ok")
    assert body["details"] == {
        "tree_size": 3,
        "root_hash": signed["root_hash"],
        "key_id": signed["key_id"],
        "via": "cli",
    }


def test_verify_refuses_when_signed_checkpoints_exist_but_the_key_is_missing(tmp_path: Path) -> None:
    """Fail closed: a log checked without its signed checkpoints must not read as verified (exit 2, nothing
    verified), naming the setting and the file to restore."""
    _log_of(tmp_path, 3)
    assert _cli(tmp_path, "audit", "checkpoint").exit_code == 0
    key_path = tmp_path / "keys" / "audit-checkpoint-ed25519.pem"
    key_path.unlink()
    refused = _cli(tmp_path, "audit", "verify", "--quiet")
    assert refused.exit_code == 2, refused.output
    assert refused.stdout == "" and "完整" not in refused.output and "intact" not in refused.output
    ((zh, en),) = _pairs(refused.stderr)
    assert zh.startswith("审计日志未校验：") and en.startswith("audit log NOT verified: ")
    for line in (zh, en):
        assert str(tmp_path / "checkpoints") in line and str(key_path) in line
        assert "GRASSROOTS_CHECKPOINT_KEY_PATH" in line
    assert "找不到检查点密钥" in zh and "尚未校验任何事件" in zh and "公钥 PEM" in zh
    assert "no checkpoint key" in en and "no events were checked" in en and "public key PEM" in en
    assert not key_path.exists()  # verify never creates a key that could not check the old checkpoints


def test_verify_refuses_an_unreadable_checkpoint_key(tmp_path: Path) -> None:
    _log_of(tmp_path, 3)
    key_path = tmp_path / "keys" / "audit-checkpoint-ed25519.pem"
    key_path.parent.mkdir()
    key_path.write_text("not a key\n")
    refused = _cli(tmp_path, "audit", "verify", "--quiet")
    assert refused.exit_code == 2, refused.output
    assert refused.exception is None or isinstance(refused.exception, SystemExit)  # no traceback
    ((zh, en),) = _pairs(refused.stderr)
    assert zh.startswith(f"审计日志未校验：检查点密钥 {key_path}（GRASSROOTS_CHECKPOINT_KEY_PATH）无法使用：")
    assert "不是 PEM" in zh and "尚未校验任何事件" in zh
    assert en.startswith(
        f"audit log NOT verified: the checkpoint key {key_path} (GRASSROOTS_CHECKPOINT_KEY_PATH)"
    )
    assert "not a PEM" in en and "no events were checked" in en


# -- a key, but no checkpoint directory ---------------------------------------------------------------


def test_verify_warns_when_a_log_was_never_checkpointed_and_the_directory_is_missing(tmp_path: Path) -> None:
    """A gateway makes its key when it starts and the directory with its first periodic checkpoint: a fresh
    install looks like this for a while and passes (exit 0), but says plainly what was not checked and how
    a moved or misconfigured directory would look the same."""
    _log_of(tmp_path, 3)
    CheckpointSigner.load_or_create(tmp_path / "keys" / "audit-checkpoint-ed25519.pem")
    verified = _cli(tmp_path, "audit", "verify", "--quiet")
    assert verified.exit_code == 0, verified.output
    pairs = _pairs(verified.stdout)
    assert pairs[0] == ("审计日志完整：已校验 3 条事件。", "audit log intact: 3 events verified")
    zh, en = pairs[1]
    assert zh.startswith("  警告：检查点目录") and en.startswith("  warning: the checkpoint directory")
    for line in (zh, en):
        assert str(tmp_path / "checkpoints") in line and "GRASSROOTS_CHECKPOINT_DIR" in line
        assert "grassroots audit checkpoint" in line
    assert "从未签入检查点" in zh and "3 events were never checked against a signed checkpoint" in en
    assert not (tmp_path / "checkpoints").exists()  # verify creates nothing


def test_verify_refuses_when_the_log_records_a_checkpoint_that_is_not_there(tmp_path: Path) -> None:
    """The log itself says a checkpoint was signed (audit.checkpoint_written): with none in the directory,
    the hash chain alone must not read as verified (exit 2, nothing verified), whether the directory is
    gone or emptied."""
    _log_of(tmp_path, 3)
    assert _cli(tmp_path, "audit", "checkpoint").exit_code == 0
    directory = tmp_path / "checkpoints"
    for path in directory.iterdir():
        path.unlink()
    for emptied in (True, False):
        if not emptied:
            directory.rmdir()
        state_zh, state_en = (
            ("中没有签名检查点", "holds no signed checkpoint") if emptied else ("不存在", "does not exist")
        )
        refused = _cli(tmp_path, "audit", "verify", "--quiet")
        assert refused.exit_code == 2, refused.output
        assert refused.stdout == ""
        ((zh, en),) = _pairs(refused.stderr)
        assert zh.startswith("审计日志未校验：日志记载第 4 号事件签发过检查点") and state_zh in zh
        assert en.startswith("audit log NOT verified: the log records a checkpoint being signed (event 4")
        assert state_en in en and "no events were checked" in en
        for line in (zh, en):
            assert str(directory) in line and "GRASSROOTS_CHECKPOINT_DIR" in line


@pytest.mark.parametrize(
    ("first", "command", "refused_zh", "refused_en"),
    [
        (("audit", "checkpoint"), ("audit", "checkpoint"), "未签发检查点", "no checkpoint written"),
        (
            ("audit", "checkpoint"),
            ("keys", "rotate-checkpoint"),
            "检查点密钥未轮换",
            "checkpoint key not rotated",
        ),
        (
            ("keys", "rotate-checkpoint"),
            ("keys", "rotate-checkpoint"),
            "检查点密钥未轮换",
            "checkpoint key not rotated",
        ),
        (("keys", "rotate-checkpoint"), ("audit", "checkpoint"), "未签发检查点", "no checkpoint written"),
    ],
)
def test_signing_into_a_checkpoint_directory_that_is_not_the_logs_is_refused(
    tmp_path: Path, first: tuple[str, ...], command: tuple[str, ...], refused_zh: str, refused_en: str
) -> None:
    """An operator whose GRASSROOTS_CHECKPOINT_DIR was mistyped (or missing from the shell) ran `keys
    rotate-checkpoint`: it made the directory, wrote the handover there and deleted the old private key,
    and from then on `audit verify` with the real directory failed every checkpoint as a forgery (exit 1);
    `audit checkpoint` likewise started a second chain there. When the log records a signing (a checkpoint,
    a handover) and the directory holds no checkpoint, both now refuse, exit 2, nothing signed or made."""
    _log_of(tmp_path, 3)
    CheckpointSigner.load_or_create(tmp_path / "keys" / "audit-checkpoint-ed25519.pem")
    assert _cli(tmp_path, *first).exit_code == 0
    key_before = (tmp_path / "keys" / "audit-checkpoint-ed25519.pem").read_bytes()
    elsewhere = tmp_path / "mistyped-checkpoints"
    refused = _cli(tmp_path, *command, settings={"GRASSROOTS_CHECKPOINT_DIR": str(elsewhere)})
    assert refused.exit_code == 2, refused.output
    assert refused.exception is None or isinstance(refused.exception, SystemExit)
    ((zh, en),) = _pairs(refused.stderr)
    assert zh.startswith(f"{refused_zh}：日志记载第 4 号事件签发过检查点") and "未做任何更改" in zh
    assert en.startswith(f"{refused_en}: the log records a checkpoint being signed (event 4")
    for line in (zh, en):
        assert str(elsewhere) in line and "GRASSROOTS_CHECKPOINT_DIR" in line and "--checkpoints" not in line
    assert not elsewhere.exists()
    assert (tmp_path / "keys" / "audit-checkpoint-ed25519.pem").read_bytes() == key_before
    assert _cli(tmp_path, "audit", "verify", "--quiet").exit_code == 0  # the real directory still verifies


# -- verifiers never make a checkpoint key ------------------------------------------------------------


def _assert_missing_key_refusal(result: Result, key_path: Path, subject_zh: str, subject_en: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    ((zh, en),) = _pairs(result.stderr)
    assert zh.startswith(f"{subject_zh}未校验：") and en.startswith(f"{subject_en} NOT verified: ")
    assert f"找不到检查点密钥 {key_path}（GRASSROOTS_CHECKPOINT_KEY_PATH）" in zh
    assert "尚未校验任何事件" in zh and "新生成的密钥无法验证它们" in zh
    assert f"no checkpoint key at {key_path} (GRASSROOTS_CHECKPOINT_KEY_PATH)" in en
    assert "no events were checked" in en and "a new key cannot verify them" in en
    assert not key_path.exists() and not key_path.parent.exists()


def test_prefix_verify_never_makes_a_checkpoint_key(tmp_path: Path) -> None:
    _log_of(tmp_path, 3)
    key_path = tmp_path / "keys" / "audit-checkpoint-ed25519.pem"
    refused = _cli(tmp_path, "supervise", "prefix-verify")
    _assert_missing_key_refusal(refused, key_path, "已清理部分", "pruned prefix")


def test_archive_verify_without_a_public_key_never_makes_a_checkpoint_key(tmp_path: Path) -> None:
    key_path = tmp_path / "keys" / "audit-checkpoint-ed25519.pem"
    manifest = tmp_path / "archives" / "audit-2026-10-1-10.manifest.json"
    refused = _cli(tmp_path, "supervise", "archive-verify", str(manifest))
    _assert_missing_key_refusal(refused, key_path, "归档", "archive")
    assert "--public-key" in refused.stderr


def test_archive_verify_refuses_an_unusable_checkpoint_key_without_a_traceback(tmp_path: Path) -> None:
    key_path = tmp_path / "keys" / "audit-checkpoint-ed25519.pem"
    key_path.parent.mkdir()
    key_path.write_text("not a key\n")
    key_path.chmod(0o600)
    manifest = tmp_path / "archives" / "audit-2026-10-1-10.manifest.json"
    refused = _cli(tmp_path, "supervise", "archive-verify", str(manifest))
    assert refused.exit_code == 2, refused.output
    assert refused.exception is None or isinstance(refused.exception, SystemExit)
    ((zh, en),) = _pairs(refused.stderr)
    assert zh.startswith(f"归档未校验：检查点密钥 {key_path}（GRASSROOTS_CHECKPOINT_KEY_PATH）无法使用：")
    assert en.startswith(
        f"archive NOT verified: the checkpoint key {key_path} (GRASSROOTS_CHECKPOINT_KEY_PATH)"
    )
    assert key_path.read_text() == "not a key\n"


@pytest.mark.parametrize(
    ("where", "zh", "en"),
    [
        ("missing.pem", "文件不存在，请核对路径", "no such file: check the path"),
        ("keys", "这是一个目录，请给出其中的密钥文件", "it is a directory: give the key file in it"),
    ],
)
def test_a_public_key_that_is_not_there_is_said_so_in_chinese_too(
    tmp_path: Path, where: str, zh: str, en: str
) -> None:
    # A mistyped --public-key was 没有读取权限或读取出错 (no permission or a read error) in Chinese.
    (tmp_path / "keys").mkdir()
    key = tmp_path / where
    manifest = tmp_path / "archives" / "audit-2026-10-1-10.manifest.json"
    refused = _cli(tmp_path, "supervise", "archive-verify", str(manifest), "--public-key", str(key))
    assert refused.exit_code == 2, refused.output
    ((said_zh, said_en),) = _pairs(refused.stderr)
    assert said_zh.startswith(f"归档未校验：检查点密钥 {key}（--public-key）无法使用：{zh}。")
    assert f"cannot be used: {en};" in said_en and "没有读取权限" not in said_zh


def test_a_checkpoint_directory_that_cannot_be_written_is_named_before_anything_is_signed(
    tmp_path: Path,
) -> None:
    """A file where the directory should be (as root, the tests cannot deny a permission; the check is the
    same: a temporary file must be creatable there): `audit checkpoint` and `serve` say which directory and
    why, exit 2, instead of a traceback (checkpoint) or a gateway running without its external checkpoints
    (serve: each periodic one logged as failed, POST /checkpoints answered 500)."""
    _log_of(tmp_path, 3)
    (tmp_path / "not-a-dir").write_text("")
    signed_dir = tmp_path / "not-a-dir" / "checkpoints"
    env = {
        "GRASSROOTS_DATA_DIR": str(tmp_path),
        "GRASSROOTS_DATABASE_URL": f"sqlite:///{tmp_path / 'audit.db'}",
        "GRASSROOTS_CHECKPOINT_DIR": str(signed_dir),
        "GRASSROOTS_DEV_IDP_ENABLED": "true",
        "GRASSROOTS_AUDIT_ARCHIVE_DIR": None,
    }
    for command in (["audit", "checkpoint"], ["serve", "--port", "1"]):
        result = runner.invoke(grassroots, command, env=env)
        assert result.exit_code == 2, (command, result.stdout, result.stderr, result.exception)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        [(zh, en)] = _pairs(result.stderr)
        assert zh.startswith(f"无法写入目录 {signed_dir}（GRASSROOTS_CHECKPOINT_DIR；")
        assert en.startswith(f"cannot write to the directory {signed_dir} (GRASSROOTS_CHECKPOINT_DIR; ")
    assert not (tmp_path / "keys").exists()  # no checkpoint key made for a checkpoint that cannot be kept

    archives = tmp_path / "not-a-dir" / "archives"
    served = runner.invoke(
        grassroots,
        ["serve", "--port", "1"],
        env={**env, "GRASSROOTS_CHECKPOINT_DIR": None, "GRASSROOTS_AUDIT_ARCHIVE_DIR": str(archives)},
    )
    assert served.exit_code == 2, (served.stdout, served.stderr, served.exception)
    assert f"cannot write to the directory {archives} (GRASSROOTS_AUDIT_ARCHIVE_DIR; " in served.stderr


def test_audit_checkpoint_with_a_mistyped_key_path_makes_no_key_and_raises_no_false_alarm(
    tmp_path: Path,
) -> None:
    """With GRASSROOTS_CHECKPOINT_KEY_PATH mistyped, `audit checkpoint` made a new key there, whose
    checkpoint the chain refused (exit 1); the key stayed, and `audit verify` with the same setting, which
    had rightly said the key was missing (exit 2), now read every earlier checkpoint as a forgery (exit 1,
    "verification FAILED"). It now refuses, exit 2, making no key; verify still says the key is missing."""
    _log_of(tmp_path, 3)
    assert _cli(tmp_path, "audit", "checkpoint").exit_code == 0
    mistyped = tmp_path / "keys" / "audit-checkpoint-ed25519.pen"
    setting = {"GRASSROOTS_CHECKPOINT_KEY_PATH": str(mistyped)}
    refused = _cli(tmp_path, "audit", "checkpoint", settings=setting)
    assert refused.exit_code == 2, refused.output
    assert refused.exception is None or isinstance(refused.exception, SystemExit)
    ((zh, en),) = _pairs(refused.stderr)
    assert zh.startswith(
        f"未签发检查点：{tmp_path / 'checkpoints'} 中有签名检查点，但找不到签发它们的检查点密钥"
    )
    assert f"{mistyped}（GRASSROOTS_CHECKPOINT_KEY_PATH）" in zh and "没有生成新密钥" in zh
    assert f"no checkpoint key at {mistyped} (GRASSROOTS_CHECKPOINT_KEY_PATH)" in en
    assert not mistyped.exists()
    assert len(list((tmp_path / "checkpoints").glob("checkpoint-*.json"))) == 1
    verified = _cli(tmp_path, "audit", "verify", "--quiet", settings=setting)
    assert verified.exit_code == 2 and "找不到检查点密钥" in verified.stderr
