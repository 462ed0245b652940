"""Rotating the audit-ref HMAC key loses no complaint: the real stack (SQLite and PostgreSQL), the real CLI.

Before the rotation cadre_a reads a resident's record and cadre_b (the neighbouring village) probes it and a
record of a resident no allowed read ever served; the operator runs ``grassroots keys rotate-audit-ref``; the
gateway restarts with the rotated ring and the same reads and probes happen again. A complaint about each
resident and the transparency answer must find the accesses of both sides of the rotation, new events must
carry the new key id, the rotation must be an audit event naming the operator, and no key may reach the
command's output, the gateway's output or the log.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from demoworld.world import build_world
from gateway.launch import stop
from tests.stack import Stack, stack_fixture

WORLD = build_world()
BASE = "/api/v1/supervision"
UNREAD_VILLAGE = "310151101203"  # no allowed read of its residents happens here (as in test_supervision_api)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from stack_fixture(str(request.param), tmp_path_factory)


def api(stack: Stack, method: str, path: str, user: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {stack.token(user)}"}
    return httpx.request(method, f"{stack.base_url}{BASE}{path}", headers=headers, timeout=60.0, **kwargs)


def complain(stack: Stack, id_number: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Register a walk-in complaint; its answer and its incident as the supervisor reads it back."""
    resp = api(stack, "POST", "/complaints", "supervisor", json={"source": "walk_in", "id_number": id_number})
    assert resp.status_code == 201, resp.text
    answer = resp.json()
    return answer, api(stack, "GET", f"/incidents/{answer['incident']['incident_id']}", "supervisor").json()


def bodies(stack: Stack) -> list[dict[str, Any]]:
    with stack.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT seq, body FROM audit_events ORDER BY seq")).all()
    return [{"seq": int(seq), "raw": body, **json.loads(body)} for seq, body in rows]


def seqs_of(stack: Stack, request_ids: set[str]) -> set[int]:
    return {b["seq"] for b in bodies(stack) if b["request_id"] in request_ids}


def accesses(stack: Stack, record_id: str, unread_id: str) -> dict[str, set[str]]:
    """cadre_a reads ``record_id`` (allowed); cadre_b asks for it and for ``unread_id`` (both refused)."""
    url = stack.records_url
    served = stack.get(f"{url}/{record_id}", "cadre_a", scenario="DIBAO_REVIEW")
    assert served.status_code == 200, served.text
    probes = [stack.get(f"{url}/{i}", "cadre_b", scenario="DIBAO_REVIEW") for i in (record_id, unread_id)]
    assert [p.status_code for p in probes] == [404, 404]
    return {
        "served": {served.headers["x-request-id"]},
        "probe": {probes[0].headers["x-request-id"]},
        "unread_probe": {probes[1].headers["x-request-id"]},
    }


def key_material(stack: Stack) -> list[str]:
    """Every audit-ref key as hex (the configured one and the rotated-in ones, unwrapped here under the
    KEK with AES-GCM independently of the gateway's code), plus the stored wrapped forms."""
    keys = stack.data_dir / "keys"
    configured = (keys / "audit-hmac.key").read_text().strip()
    kek = bytes.fromhex((keys / "masking-kek.key").read_text().strip())
    ring = json.loads((keys / "audit-ref-keys.json").read_text())
    found = [configured]
    for k in ring["keys"]:
        aad = b"grassroots-audit-ref-key\x00" + k["key_id"].encode()
        found.append(AESGCM(kek).decrypt(bytes.fromhex(k["nonce"]), bytes.fromhex(k["wrapped"]), aad).hex())
        found.append(k["wrapped"])
    return found


def test_complaints_and_transparency_find_accesses_from_before_and_after_a_key_rotation(
    stack: Stack, tmp_path: Path
) -> None:
    resident = next(r for r in WORLD.residents_of(WORLD.village_a))
    unread = WORLD.residents_of(UNREAD_VILLAGE)[0]
    before = accesses(stack, resident.id, unread.id)
    old_refs = {r for b in bodies(stack) for r in b["subject_refs"]}
    assert old_refs and all(r.startswith("k1:") for r in old_refs)

    # The operator rotates with the gateway stopped, then restarts it with the rotated ring.
    stop(stack.gateway)
    out = stack.cli("keys", "rotate-audit-ref")
    operator = f"cli:{pwd.getpwuid(os.geteuid()).pw_name}@{socket.gethostname()}"
    assert "审计引用密钥已轮换：k1 -> k2" in out.stdout and "audit ref key rotated: k1 -> k2" in out.stdout
    assert operator in out.stdout
    # A key id already kept (the retired k1 or the active k2) is refused, in Chinese then English, and
    # nothing changes.
    ring_file = stack.data_dir / "keys" / "audit-ref-keys.json"
    stored = ring_file.read_text()
    for repeated in ("k1", "k2"):
        refused = stack.cli("keys", "rotate-audit-ref", "--key-id", repeated, check=False)
        assert refused.returncode == 1, refused.stderr
        assert f"密钥编号 {repeated} 已被保留的密钥使用" in refused.stderr
        assert f"key id {repeated} is already used by a kept key" in refused.stderr
    assert ring_file.read_text() == stored
    assert oct(ring_file.stat().st_mode & 0o777) == "0o600"
    gateway_output = tmp_path / "gateway.out"
    with gateway_output.open("wb") as sink:
        stack.gateway = None
        stack.start_gateway(sink)  # type: ignore[arg-type]
        after = accesses(stack, resident.id, unread.id)

        # Writing uses the new key: the allowed read after the restart names the resident under k2 only,
        # the refused probe asks for the record under k2.
        [served_after] = [b for b in bodies(stack) if b["request_id"] in after["served"]]
        assert served_after["subject_refs"] and all(r.startswith("k2:") for r in served_after["subject_refs"])
        assert all(r.startswith("k2:") for r in served_after["record_refs"])
        [probe_after] = [b for b in bodies(stack) if b["request_id"] in after["probe"]]
        assert probe_after["details"]["requested_record_ref"].startswith("k2:")
        [probe_before] = [b for b in bodies(stack) if b["request_id"] in before["probe"]]
        assert probe_before["details"]["requested_record_ref"].startswith("k1:")

        # A complaint finds the reads and the probes of both sides of the rotation.
        answer, incident = complain(stack, resident.id_number)
        assert answer["complaint"]["subject_ref"].startswith("k2:")
        evidence = {e["seq"] for e in incident["evidence"]}
        wanted = seqs_of(stack, before["served"] | before["probe"] | after["served"] | after["probe"])
        assert len(wanted) == 4 and wanted <= evidence
        assert incident["evidence_verified"] is True

        # A resident no allowed read ever served: the probes are tied to her only through the registry's
        # record-id lookup, whose ids are turned into refs under every kept key.
        _, incident = complain(stack, unread.id_number)
        assert seqs_of(stack, before["unread_probe"] | after["unread_probe"]) <= {
            e["seq"] for e in incident["evidence"]
        }

        # Transparency lists the allowed reads of both sides.
        resp = api(stack, "POST", "/transparency", "supervisor", json={"id_number": resident.id_number})
        assert resp.status_code == 200, resp.text
        listed = {a["seq"] for a in resp.json()["accesses"]}
        assert seqs_of(stack, before["served"] | after["served"]) <= listed

        # The read after the rotation carries the resident's link to her k1 ref (hex under k2, never a
        # k1 ref), and the "one resident read by many users" rule counts her reads of both sides as one
        # resident's: one finding naming both, under her k2 ref (two residents of one read each before).
        assert list(served_after["details"]["subject_ref_links"]) == ["k1"]
        [link] = served_after["details"]["subject_ref_links"]["k1"]
        assert len(link) == 64 and link not in {r.partition(":")[2] for r in old_refs}
        every_reader = {"rule": "one_resident_many_users", "setting": "one_resident_many_users.min_users=1"}
        resp = api(stack, "GET", "/anomalies", "supervisor", params=every_reader)
        assert resp.status_code == 200, resp.text
        served = seqs_of(stack, before["served"] | after["served"])
        [finding] = [f for f in resp.json()["findings"] if served & set(f["seqs"])]
        assert served <= set(finding["seqs"])
        assert finding["subject_ref"] == served_after["subject_refs"][0]
    stop(stack.gateway)
    stack.start_gateway()

    # The rotation is an audit event naming the operator as the operating system says; key ids only.
    [rotated] = [b for b in bodies(stack) if b["kind"] == "keys.rotated"]
    assert rotated["actor"] == operator and rotated["actor_roles"] == ["operator"]
    details = rotated["details"]
    assert (details["keys"], details["before"], details["after"], details["via"]) == (
        "audit_ref",
        "k1",
        "k2",
        "cli",
    )
    assert sorted(details["kept"]) == ["k1", "k2"]
    # No key, clear or wrapped, in the command's output, the gateway's output or the log.
    secrets = key_material(stack)
    assert len(secrets) == 3
    logged = "\n".join(b["raw"] for b in bodies(stack))
    shown = out.stdout + out.stderr + gateway_output.read_text(errors="replace")
    for secret in secrets:
        assert secret not in logged and secret not in shown
