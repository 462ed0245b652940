"""A departmental system may require the API key it issued to the gateway (``--gateway-credentials``):
digests only on its side, re-read when the file changes, the gateway's token still required as well; the
key is issued, rotated and retired from the command line. (Through the gateway: tests/e2e.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from demoworld.civil_affairs import REGISTRY_AUDIENCE, ResidentRegistry, create_app
from demoworld.departmental import (
    CREDENTIAL_HEADER,
    GatewayCredentialError,
    GatewayCredentials,
    GatewayTokenVerifier,
    accepted_digests,
    credential_digest,
    issue_gateway_credential,
    retire_old_gateway_credentials,
)
from demoworld.world import build_world
from tests.demoworld._support import bearer, mint, new_gateway_key, public_pem

REPO = Path(__file__).resolve().parents[2]
GATEWAY_KEY = new_gateway_key()
VILLAGE_A = build_world().village_a


def test_issue_keeps_digests_only_and_retire_keeps_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    first = issue_gateway_credential(path)
    second = issue_gateway_credential(path)
    assert first != second and first.startswith("gk_") and len(first) > 40
    text = path.read_text()
    assert first not in text and second not in text
    assert accepted_digests(path) == [credential_digest(first), credential_digest(second)]
    assert retire_old_gateway_credentials(path) == 1
    assert accepted_digests(path) == [credential_digest(second)]


def test_the_check_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    credentials = GatewayCredentials(path)
    with pytest.raises(GatewayCredentialError):  # no file yet: nothing is accepted
        credentials.check("gk_anything")
    old = issue_gateway_credential(path)
    credentials.check(old)
    for presented in (None, "", "gk_guess", old + "x", old.upper()):
        with pytest.raises(GatewayCredentialError):
            credentials.check(presented)
    new = issue_gateway_credential(path)
    credentials.check(old)  # both accepted while the gateway switches over
    credentials.check(new)
    retire_old_gateway_credentials(path)
    credentials.check(new)
    with pytest.raises(GatewayCredentialError):
        credentials.check(old)


def test_a_malformed_file_accepts_nothing(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    key = issue_gateway_credential(path)
    path.write_text(path.read_text() + "not-a-digest\n")
    with pytest.raises(GatewayCredentialError):
        GatewayCredentials(path).check(key)


def test_the_app_needs_both_the_token_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    key = issue_gateway_credential(path)
    records = [r.to_dict() for r in build_world().residents if r.village_code == VILLAGE_A]
    verifier = GatewayTokenVerifier(public_pem(GATEWAY_KEY), audience=REGISTRY_AUDIENCE)
    client = TestClient(create_app(ResidentRegistry(records), verifier, credentials=GatewayCredentials(path)))
    token = bearer(mint(GATEWAY_KEY))

    def get(headers: dict[str, str]) -> httpx.Response:
        return client.get("/residents", params={"org_prefix": VILLAGE_A}, headers=headers)

    served = get({**token, CREDENTIAL_HEADER: key})
    assert served.status_code == 200 and served.json()["items"]
    no_key = get(token)
    assert (no_key.status_code, no_key.json()["error"]) == (401, "gateway_credential_invalid")
    assert no_key.headers["www-authenticate"].startswith("ApiKey")
    assert get({**token, CREDENTIAL_HEADER: "gk_guess"}).status_code == 401
    key_only = get({CREDENTIAL_HEADER: key})
    assert (key_only.status_code, key_only.json()["error"]) == (401, "unauthorized")
    assert client.get("/healthz").status_code == 200


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "demoworld.person_house", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_command_line_issues_retires_and_refuses_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "person-house.keys"
    issued = [_cli("--gateway-credentials", str(path), "--issue-gateway-credential") for _ in range(2)]
    assert all(r.returncode == 0 for r in issued), issued[0].stderr
    keys = [r.stdout.strip() for r in issued]
    assert accepted_digests(path) == [credential_digest(k) for k in keys]
    retired = _cli("--gateway-credentials", str(path), "--retire-old-gateway-credentials")
    assert retired.returncode == 0 and '"retired": 1' in retired.stdout
    assert accepted_digests(path) == [credential_digest(keys[1])]
    assert _cli("--issue-gateway-credential").returncode == 2

    key_file = tmp_path / "gateway.pub.pem"
    key_file.write_bytes(public_pem(GATEWAY_KEY))
    serve = _cli(
        "--db",
        str(tmp_path / "ph.db"),
        "--gateway-public-key",
        str(key_file),
        "--gateway-credentials",
        str(tmp_path / "missing.keys"),
        "--port",
        "1",
    )
    assert serve.returncode == 2 and "does not exist" in serve.stderr
