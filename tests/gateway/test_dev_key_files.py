"""The development key files (``var/keys/audit-hmac.key``, ``var/keys/masking-kek.key``) as the gateway and
its commands read them: made on first use, but never made afresh once something depends on the lost one,
and a file that cannot be used is a message naming it (exit 2), never a traceback and never its content."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit import AuditEvent, AuditLog, Outcome
from gateway.cli import app as grassroots
from gateway.db import make_engine, upgrade
from gateway.keys import KeyFileError, audit_hmac_key, load_audit_refs, load_masking_keyring, masking_kek
from gateway.settings import Settings

ENV = {
    "GRASSROOTS_DATABASE_URL": None,
    "GRASSROOTS_DEV_IDP_ENABLED": "true",
    "GRASSROOTS_AUDIT_HMAC_KEY_ID": None,
    "GRASSROOTS_MODE": None,
    "GRASSROOTS_OIDC_ISSUER": None,
}


def _gateway_dir(tmp_path: Path) -> Settings:
    """A migrated data directory whose audit log names one resident under the development HMAC key."""
    data_dir = tmp_path / "var"
    upgrade(f"sqlite:///{data_dir / 'gateway.db'}")
    settings = Settings(data_dir=data_dir)
    refs = load_audit_refs(settings)  # makes audit-hmac.key, as a gateway's first start does
    load_masking_keyring(settings)  # and the masking KEK and ring, before anything is served
    engine = make_engine(settings.effective_database_url)
    try:
        AuditLog(engine).append(
            AuditEvent(
                kind="data.list",
                outcome=Outcome.ALLOWED,
                actor="u-cadre",
                actor_org="310151101201",
                scenario="DIBAO_REVIEW",
                dataset="residents",
                record_count=1,
                subject_refs=(refs.ref("110105194912310029"),),
                reason="allowed",
            )
        )
    finally:
        engine.dispose()
    return settings


def _serve(settings: Settings) -> tuple[int, str]:
    env = {**ENV, "GRASSROOTS_DATA_DIR": str(settings.data_dir)}
    # On a port already taken: a gateway that got past the key checks stops at the port probe, not serving.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = CliRunner().invoke(grassroots, ["serve", "--port", port], env=env)
    assert "Traceback" not in result.stdout + result.stderr
    return result.exit_code, result.stderr


def test_a_lost_audit_hmac_key_is_not_made_afresh_once_the_log_names_residents_under_it(
    tmp_path: Path,
) -> None:
    settings = _gateway_dir(tmp_path)
    key_file = settings.keys_dir / "audit-hmac.key"
    key_file.unlink()  # a restore that left out keys/, a key file deleted by mistake
    # It was made again, silently, under the same id k1: every earlier access of the resident unfindable
    # from then on (complaints, transparency), and k1 naming two keys for good.
    with pytest.raises(KeyFileError) as refused:
        audit_hmac_key(settings)
    assert "审计日志中已有用它（密钥编号 k1）写下的居民引用" in refused.value.message_zh
    assert "refs under it (key id k1)" in refused.value.message_en
    exit_code, stderr = _serve(settings)
    assert exit_code == 2
    zh, en = stderr.splitlines()[:2]
    assert zh.startswith(f"密钥文件 {key_file} 不存在") and "请从备份恢复该文件" in zh
    assert en.startswith(f"the key file {key_file} does not exist") and "Restore the file" in en
    assert not key_file.exists()  # nothing made


def test_a_fresh_data_directory_still_makes_its_development_keys(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    upgrade(f"sqlite:///{data_dir / 'gateway.db'}")
    settings = Settings(data_dir=data_dir)
    assert len(audit_hmac_key(settings)) == 32
    load_masking_keyring(settings)
    assert (settings.keys_dir / "masking-kek.key").exists()
    assert (settings.keys_dir / "masking-keyring.json").exists()


def test_a_lost_kek_is_not_made_afresh_beside_the_ring_wrapped_under_it(tmp_path: Path) -> None:
    settings = _gateway_dir(tmp_path)
    load_masking_keyring(settings)
    kek_file = settings.keys_dir / "masking-kek.key"
    kek_file.unlink()
    with pytest.raises(KeyFileError, match=r"masking-keyring\.json"):
        masking_kek(settings)
    assert not kek_file.exists()
    result = CliRunner().invoke(
        grassroots, ["keys", "rotate"], env={**ENV, "GRASSROOTS_DATA_DIR": str(settings.data_dir)}
    )
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert result.stderr.startswith(f"密钥文件 {kek_file} 不存在，但用它加密保存的密钥环")
    assert "if the gateway has GRASSROOTS_MASKING_KEK set, set the same value" in result.stderr
    assert not kek_file.exists()


@pytest.mark.parametrize(
    ("content", "mode", "zh", "en"),
    [
        ("ab" * 32, 0o644, "的权限为 644，本机其他用户也能读取", "has mode 644, readable by other users"),
        ("zz", 0o600, "的内容不是 32 字节的十六进制密钥", "does not hold a 32-byte hex key"),
        ("ab" * 16, 0o600, "的内容不是 32 字节的十六进制密钥", "does not hold a 32-byte hex key"),
    ],
)
def test_a_key_file_that_cannot_be_used_is_named_not_a_traceback(
    tmp_path: Path, content: str, mode: int, zh: str, en: str
) -> None:
    settings = _gateway_dir(tmp_path)
    key_file = settings.keys_dir / "audit-hmac.key"
    key_file.write_text(content)
    key_file.chmod(mode)
    with pytest.raises(KeyFileError):  # a too-open file was used as it was, the others a traceback
        audit_hmac_key(settings)
    exit_code, stderr = _serve(settings)
    assert exit_code == 2
    assert stderr.splitlines()[0].startswith(f"密钥文件 {key_file} {zh}")
    assert en in stderr
    assert content not in stderr


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[:100],  # truncated (a copy interrupted, a full disk)
        lambda text: text.replace("grassroots-masking-keyring/v2", "grassroots-masking-keyring/v9"),
    ],
)
def test_a_damaged_masking_key_ring_is_to_be_restored_not_blamed_on_the_kek(
    tmp_path: Path, damage: Callable[[str], str]
) -> None:
    settings = _gateway_dir(tmp_path)
    load_masking_keyring(settings)
    ring_file = settings.keys_dir / "masking-keyring.json"
    ring_file.write_text(damage(ring_file.read_text()))
    before = ring_file.read_text()
    result = CliRunner().invoke(
        grassroots, ["keys", "rotate"], env={**ENV, "GRASSROOTS_DATA_DIR": str(settings.data_dir)}
    )
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    zh, en = result.stderr.splitlines()[:2]
    # It said "set GRASSROOTS_MASKING_KEK to the value the ring was made with": no KEK opens this file.
    assert "GRASSROOTS_MASKING_KEK" not in result.stderr
    assert zh.startswith(f"无法使用脱敏数据密钥环 {ring_file}：文件不是本版本能读取的密钥环")
    assert "从备份恢复" in zh
    assert "Restore it from a backup" in en
    assert ring_file.read_text() == before


def test_serve_makes_no_new_checkpoint_key_beside_checkpoints_the_lost_one_signed(tmp_path: Path) -> None:
    settings = _gateway_dir(tmp_path)
    env = {**ENV, "GRASSROOTS_DATA_DIR": str(settings.data_dir)}
    signed = CliRunner().invoke(grassroots, ["audit", "checkpoint"], env=env)
    assert signed.exit_code == 0, (signed.stdout, signed.stderr, signed.exception)
    key_file = settings.effective_checkpoint_key_path
    key_file.unlink()
    # serve made a new key in development: its checkpoints joined no chain, and `audit verify` then read
    # every earlier checkpoint as a forgery ("signed by key …, expected …"), a false tamper alarm.
    exit_code, stderr = _serve(settings)
    assert exit_code == 2
    zh, en = stderr.splitlines()[:2]
    assert zh.startswith(f"网关未启动：{settings.effective_checkpoint_dir} 中有签名检查点")
    assert en.startswith("the gateway did not start:") and "put the key that signed them at that path" in en
    assert not key_file.exists()


def test_key_files_and_rings_reach_the_disk_before_they_are_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key file or ring written without fsync can be empty under its name after a power cut (the rename
    or the new entry reached the disk, the data not yet): every value masked or pseudonymised under it would
    be lost. Each file is synced before it takes its name, and its directory after."""
    steps: list[str] = []
    real_fsync, real_replace, real_link = os.fsync, os.replace, os.link

    def fsync(fd: int) -> None:
        target = Path(os.readlink(f"/proc/self/fd/{fd}"))
        steps.append(f"sync {target.name if target.is_file() else 'dir'}")
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        steps.append(f"rename {Path(dst).name}")
        real_replace(src, dst)

    def link(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        steps.append(f"link {Path(dst).name}")
        real_link(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "link", link)
    settings = Settings(data_dir=tmp_path / "var")
    audit_hmac_key(settings)
    assert steps == ["sync audit-hmac.key", "sync dir"]
    steps.clear()
    load_masking_keyring(settings)  # makes the KEK, then the ring
    assert steps[:2] == ["sync masking-kek.key", "sync dir"]
    ring = steps[2:]
    # Made where none is: linked into place (a second process making it at once reads this one's instead).
    assert ring[0].startswith("sync .masking-keyring.json.") and ring[1:] == [
        "link masking-keyring.json",
        "sync dir",
    ]
