"""The audit-ref key ring as the gateway loads it (``gateway.keys``): backwards compatible without a ring
file, rotation adds an active key and keeps the others for lookups, and a ring that cannot say which key
made a ref is refused (fail closed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit import Pseudonymizer
from gateway.keys import (
    AuditRefKeysError,
    audit_hmac_key,
    audit_ref_keys_path,
    load_audit_refs,
    next_audit_ref_key_id,
    rotate_audit_refs,
    save_audit_ref_keys,
)
from gateway.settings import Settings


def test_without_a_ring_file_the_configured_key_alone_writes_and_is_searched(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, audit_hmac_key_id="k7")
    ring = load_audit_refs(settings)
    configured = Pseudonymizer(audit_hmac_key(settings), "k7")
    assert ring.key_ids == ("k7",)
    assert ring.ref("110105194912310029") == configured.ref("110105194912310029")
    assert ring.refs("110105194912310029") == [configured.ref("110105194912310029")]
    assert not audit_ref_keys_path(settings).exists()  # loading creates no ring file


def test_rotation_keeps_the_old_key_for_lookups(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    old = load_audit_refs(settings)
    stored, before, after = rotate_audit_refs(settings)
    assert (before, after) == ("k1", "k2")
    assert load_audit_refs(settings).key_ids == ("k1",)  # not saved yet: nothing rotated
    save_audit_ref_keys(settings, stored)
    ring = load_audit_refs(settings)
    assert ring.key_ids == ("k2", "k1")
    assert ring.ref("x").startswith("k2:") and ring.refs("x")[1] == old.ref("x")
    stored, _, third = rotate_audit_refs(settings, "2027a")
    assert third == "2027a"
    save_audit_ref_keys(settings, stored)
    assert load_audit_refs(settings).key_ids == ("2027a", "k1", "k2")
    assert next_audit_ref_key_id(("2027a", "k1", "k2")) == "k3"
    # The file holds key ids and wrapped keys only.
    doc = json.loads(audit_ref_keys_path(settings).read_text())
    assert (doc["active"], doc["configured"]) == ("2027a", "k1")
    assert all(set(k) == {"key_id", "created_at", "nonce", "wrapped"} for k in doc["keys"])


@pytest.mark.parametrize("repeated", ["k1", "k2"])
def test_a_kept_key_id_cannot_be_used_again(tmp_path: Path, repeated: str) -> None:
    settings = Settings(data_dir=tmp_path)
    save_audit_ref_keys(settings, rotate_audit_refs(settings)[0])
    with pytest.raises(AuditRefKeysError) as refused:
        rotate_audit_refs(settings, repeated)
    assert f"密钥编号 {repeated} 已被保留的密钥使用" in refused.value.message_zh
    assert f"key id {repeated} is already used" in refused.value.message_en
    with pytest.raises(AuditRefKeysError):
        rotate_audit_refs(settings, "k:3")


def test_a_ring_that_cannot_name_one_key_per_id_is_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    save_audit_ref_keys(settings, rotate_audit_refs(settings)[0])
    # The operator changes GRASSROOTS_AUDIT_HMAC_KEY_ID after the rotation: the configured key's refs in
    # the log say k1, so a lookup under another id would match none of them. Refused at start, not guessed.
    with pytest.raises(AuditRefKeysError, match="must not change after a rotation"):
        load_audit_refs(Settings(data_dir=tmp_path, audit_hmac_key_id="k9"))
    # A ring whose rotated-in key reuses the configured key's id: refs under it could be either key's.
    doc = json.loads(audit_ref_keys_path(settings).read_text())
    doc["configured"] = "k2"
    audit_ref_keys_path(settings).write_text(json.dumps(doc))
    with pytest.raises(AuditRefKeysError, match="k2 is used twice"):
        load_audit_refs(Settings(data_dir=tmp_path, audit_hmac_key_id="k2"))
    doc["configured"] = "k1"
    audit_ref_keys_path(settings).write_text(json.dumps(doc))
    # A KEK that does not open the ring (replaced without re-wrapping): refused, not skipped.
    (tmp_path / "keys" / "masking-kek.key").write_text("00" * 32)
    with pytest.raises(AuditRefKeysError, match="GRASSROOTS_MASKING_KEK"):
        load_audit_refs(settings)


def test_serve_refuses_a_changed_configured_key_id_before_it_listens(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gateway.cli import app as grassroots
    from gateway.db import upgrade

    data_dir = tmp_path / "var"
    upgrade(f"sqlite:///{data_dir / 'gateway.db'}")
    settings = Settings(data_dir=data_dir)
    save_audit_ref_keys(settings, rotate_audit_refs(settings)[0])
    env = {
        "GRASSROOTS_DATA_DIR": str(data_dir),
        "GRASSROOTS_DATABASE_URL": None,
        "GRASSROOTS_DEV_IDP_ENABLED": "true",
        "GRASSROOTS_AUDIT_HMAC_KEY_ID": "k9",
        "GRASSROOTS_MODE": None,
        "GRASSROOTS_OIDC_ISSUER": None,
    }
    result = CliRunner().invoke(grassroots, ["serve", "--port", "1"], env=env)
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    zh, en = result.stderr.splitlines()
    assert zh.startswith("GRASSROOTS_AUDIT_HMAC_KEY_ID 现为 k9，但轮换时为 k1")
    assert en.startswith("GRASSROOTS_AUDIT_HMAC_KEY_ID is k9 but was k1 at the rotation")
    key = (data_dir / "keys" / "audit-hmac.key").read_text().strip()
    assert key not in result.stdout + result.stderr
