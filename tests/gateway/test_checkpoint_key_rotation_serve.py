"""A gateway restarted after `grassroots keys rotate-checkpoint` signs its periodic checkpoints with the new
key, and `audit verify` finds the log intact across the handover: the real stack (SQLite, PostgreSQL)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from audit import CheckpointSigner
from gateway.launch import stop
from tests.stack import Stack, stack_fixture


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from stack_fixture(
        str(request.param), tmp_path_factory, extra_env={"GRASSROOTS_CHECKPOINT_INTERVAL_S": "1"}
    )


def _signed_by(directory: Path, key_id: str) -> list[int]:
    """Tree sizes of the ordinary (not handover) checkpoints ``key_id`` signed."""
    found = []
    for path in directory.glob("checkpoint-*.json"):
        body = json.loads(path.read_text())
        if body["key_id"] == key_id and "handover" not in body:
            found.append(int(body["tree_size"]))
    return found


def _wait_for_checkpoint(stack: Stack, key_id: str, past: int) -> int:
    """Read once (the log grows), then wait for the periodic writer to sign past ``past`` with ``key_id``."""
    served = stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW", page=1, page_size=1)
    assert served.status_code == 200, served.text
    directory = stack.data_dir / "checkpoints"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sizes = [s for s in _signed_by(directory, key_id) if s > past] if directory.exists() else []
        if sizes:
            return max(sizes)
        time.sleep(0.2)
    raise AssertionError(f"no periodic checkpoint signed by {key_id} past {past}")


def test_serve_after_rotation_signs_with_the_new_key(stack: Stack) -> None:
    key_path = stack.data_dir / "keys" / "audit-checkpoint-ed25519.pem"
    old = CheckpointSigner.load_or_create(key_path)
    before = _wait_for_checkpoint(stack, old.key_id, 0)

    stop(stack.gateway)
    rotated = stack.cli("keys", "rotate-checkpoint")
    new = CheckpointSigner.load_or_create(key_path)
    assert f"{old.key_id} -> {new.key_id}" in rotated.stdout
    stack.gateway = None
    stack.start_gateway()
    after = _wait_for_checkpoint(stack, new.key_id, before)
    directory = stack.data_dir / "checkpoints"
    (size,) = {json.loads(p.read_text())["tree_size"] for p in directory.glob("*-handover.json")}
    assert max(_signed_by(directory, old.key_id)) <= size < after  # the old key signed nothing past it

    verified = stack.cli("audit", "verify", check=False)
    assert verified.returncode == 0, (verified.stdout, verified.stderr)


def test_an_archive_signed_before_a_rotation_verifies_over_http_after_it(stack: Stack) -> None:
    """`GET /supervision/archives/{id}/verify` checks the manifest against the key chain of the checkpoint
    directory: an archive the retired key signed while in office verifies after the gateway restarted with
    the new key (checked against the key file's key only, it was refused as signed by another key)."""
    served = stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW", page=1, page_size=1)
    assert served.status_code == 200, served.text
    month = time.strftime("%Y-%m", time.gmtime(time.time() + 8 * 3600))  # this month (Beijing): partial

    def api(method: str, path: str, **kwargs: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {stack.token('auditor')}"}
        url = f"{stack.base_url}/api/v1/supervision{path}"
        return httpx.request(method, url, headers=headers, timeout=60.0, **kwargs)  # type: ignore[arg-type]

    made = api("POST", "/archives", json={"month": month})
    assert made.status_code == 201, made.text
    archive_id = made.json()["manifest_file"].removesuffix(".manifest.json")
    manifest = json.loads((stack.data_dir / "archives" / made.json()["manifest_file"]).read_text())
    key_path = stack.data_dir / "keys" / "audit-checkpoint-ed25519.pem"
    signed_by = CheckpointSigner.load_or_create(key_path).key_id
    assert manifest["key_id"] == signed_by

    stop(stack.gateway)
    stack.cli("keys", "rotate-checkpoint")
    stack.gateway = None
    stack.start_gateway()
    assert CheckpointSigner.load_or_create(key_path).key_id != signed_by  # the archive's key is retired

    verdict = api("GET", f"/archives/{archive_id}/verify")
    assert verdict.status_code == 200, verdict.text
    body = verdict.json()
    assert body["ok"] is True and body["checked"] == made.json()["count"], body
