"""`grassroots keys rotate-checkpoint`, walked as an operator: the log signed under the old key and the new
one verifies, the rotation is an audit event, and serve's start-up check still reads the latest checkpoint."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import sqlalchemy as sa

from audit import CheckpointSigner
from audit.tables import audit_events
from gateway.cli import app as grassroots
from tests.gateway.test_cli_database_gate import _run, live_and_snapshot, runner

__all__ = ["live_and_snapshot"]  # the fixture, imported for the serve test


def _key_ids(directory: Path) -> list[str]:
    files = sorted(directory.glob("checkpoint-*.json"))
    return [json.loads(f.read_text())["key_id"] for f in files]


def test_rotate_then_sign_and_verify_across_the_handover(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    key_path, directory = data_dir / "keys" / "audit-checkpoint-ed25519.pem", data_dir / "checkpoints"
    assert _run(data_dir, "db", "upgrade").exit_code == 0
    assert _run(data_dir, "audit", "checkpoint").exit_code == 0
    old = CheckpointSigner.load_or_create(key_path)
    old_public = tmp_path / "old.pub.pem"
    old_public.write_bytes(old.public_key_pem())

    result = _run(data_dir, "keys", "rotate-checkpoint")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    new = CheckpointSigner.load_or_create(key_path)
    assert new.key_id != old.key_id
    zh, en = result.stdout.splitlines()
    assert zh.startswith(f"检查点签名密钥已轮换：{old.key_id} -> {new.key_id}")
    assert f"请把 {key_path} 复制到每台运行网关的主机" in zh and "kill -HUP" in zh
    assert en.startswith(f"checkpoint signing key rotated: {old.key_id} -> {new.key_id}")
    assert f"Copy {key_path} to every host running the gateway" in en
    assert "PRIVATE" not in result.stdout
    # The old private key is gone (replaced in place), and no temporary copy of either key is left behind.
    assert [p.name for p in key_path.parent.iterdir() if "checkpoint" in p.name] == [key_path.name]
    assert len(list(directory.glob("checkpoint-*-handover.json"))) == 2

    # Before: every `audit checkpoint` and `audit verify` after a key change refused the old checkpoints.
    assert _run(data_dir, "audit", "checkpoint").exit_code == 0
    assert _key_ids(directory)[-1] == new.key_id
    verified = _run(data_dir, "audit", "verify")
    assert verified.exit_code == 0, (verified.stdout, verified.stderr)
    # A supervisor's copy of the old public key follows the handover to the new key.
    env = {"GRASSROOTS_DATA_DIR": str(data_dir), "GRASSROOTS_CHECKPOINT_KEY_PATH": str(old_public)}
    for name in ("GRASSROOTS_DATABASE_URL", "GRASSROOTS_CHECKPOINT_DIR", "GRASSROOTS_MODE"):
        env[name] = None  # type: ignore[assignment]
    pinned = runner.invoke(grassroots, ["audit", "verify"], env=env)
    assert pinned.exit_code == 0, (pinned.stdout, pinned.stderr)

    engine = sa.create_engine(f"sqlite:///{data_dir / 'gateway.db'}")
    with engine.connect() as conn:
        bodies = [json.loads(b) for (b,) in conn.execute(sa.select(audit_events.c.body))]
    engine.dispose()
    rotated = [b for b in bodies if b.get("kind") == "keys.rotated"]
    assert len(rotated) == 1, bodies
    assert {"before": old.key_id, "after": new.key_id, "keys": "checkpoint"}.items() <= rotated[0][
        "details"
    ].items()


def test_a_host_with_a_stale_copy_of_the_old_key_cannot_rotate_again(tmp_path: Path) -> None:
    """A second host still holding the old key file (not yet replaced after the rotation) would hand the log
    over a second time: a fork every verifier refuses. Refused before anything is recorded or written."""
    data_dir = tmp_path / "var"
    key_path = data_dir / "keys" / "audit-checkpoint-ed25519.pem"
    assert _run(data_dir, "db", "upgrade").exit_code == 0
    assert _run(data_dir, "audit", "checkpoint").exit_code == 0
    stale = key_path.read_bytes()
    assert _run(data_dir, "keys", "rotate-checkpoint").exit_code == 0
    rotated = CheckpointSigner.load_or_create(key_path).key_id
    key_path.write_bytes(stale)
    files = sorted(p.name for p in (data_dir / "checkpoints").iterdir())
    again = _run(data_dir, "keys", "rotate-checkpoint")
    assert again.exit_code == 1, (again.stdout, again.stderr)
    zh, en = again.stderr.splitlines()
    # Says the key was already rotated, to which key, and which file to copy from the host that rotated it.
    assert zh.startswith("检查点密钥未轮换：检查点密钥 ed25519:") and "已经轮换过：已在树大小" in zh
    assert f"请从执行轮换的主机把密钥文件 {key_path}（GRASSROOTS_CHECKPOINT_KEY_PATH）复制到本机" in zh
    assert f"was already rotated: handed over to {rotated} at tree size" in en and "-handover.json" in en
    assert (
        f"Copy the key file {key_path} (GRASSROOTS_CHECKPOINT_KEY_PATH) from the host that rotated it" in en
    )
    assert key_path.read_bytes() == stale
    assert sorted(p.name for p in (data_dir / "checkpoints").iterdir()) == files
    engine = sa.create_engine(f"sqlite:///{data_dir / 'gateway.db'}")
    with engine.connect() as conn:
        kinds = [json.loads(b)["kind"] for (b,) in conn.execute(sa.select(audit_events.c.body))]
    engine.dispose()
    assert kinds.count("keys.rotated") == 1
    # ... and that host's `audit checkpoint` says what to do instead of signing a forgery-looking file.
    refused = _run(data_dir, "audit", "checkpoint")
    assert refused.exit_code == 1 and "请从执行轮换的主机把新的密钥文件" in refused.stderr
    assert "audit verify" not in refused.stderr  # nothing to find out: the message says what to copy


def test_a_second_rotation_and_a_missing_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    assert _run(data_dir, "db", "upgrade").exit_code == 0
    missing = _run(data_dir, "keys", "rotate-checkpoint")
    assert missing.exit_code == 1 and missing.stderr.startswith("检查点密钥未轮换")
    assert _run(data_dir, "audit", "checkpoint").exit_code == 0
    for _ in range(2):
        assert _run(data_dir, "keys", "rotate-checkpoint").exit_code == 0
    assert _run(data_dir, "audit", "checkpoint").exit_code == 0
    assert len(set(_key_ids(data_dir / "checkpoints"))) == 3
    assert _run(data_dir, "audit", "verify").exit_code == 0


def test_serve_still_refuses_a_restored_database_after_a_rotation(
    tmp_path: Path, live_and_snapshot: tuple[str, object]
) -> None:
    """Serve's start-up check read the latest checkpoint with the key file's key only, and skipped itself
    when that did not verify: after a key change it let a restored database start. It follows handovers."""
    live, snapshot = live_and_snapshot
    data_dir = tmp_path / "var"
    assert _run(data_dir, "db", "upgrade", database_url=live).exit_code == 0
    assert _run(data_dir, "audit", "checkpoint", database_url=live).exit_code == 0
    restored = snapshot()  # type: ignore[operator]
    assert _run(data_dir, "keys", "rotate-checkpoint", database_url=live).exit_code == 0
    assert _run(data_dir, "audit", "checkpoint", database_url=live).exit_code == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = _run(data_dir, "serve", "--port", str(taken.getsockname()[1]), database_url=restored)
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert result.stderr.startswith("网关未启动：数据库中的审计日志只有")
