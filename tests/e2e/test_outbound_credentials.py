"""The gateway presents each system's stored outbound credential; the departmental system requires it.

In the stack both registries were started with ``--gateway-credentials`` (the digests of the API keys
their department issued to the gateway), and the seed stored each key as the system's outbound credential,
sealed like ``PUT /api/v1/admission/systems/{id}/outbound-credential`` does. So: with the right key data
flows; with a wrong or missing one the registry refuses and the gateway fails closed (502
``upstream_credential_refused``, audited, no data); a key rotated through the API (or the CLI) is used by
the gateway within one poll; an envelope the gateway cannot open is never replaced by a call without it
(503).
"""

from __future__ import annotations

import json
import time
import uuid
import warnings
from collections.abc import Callable

import httpx
import pytest
import sqlalchemy as sa
from joserfc.errors import SecurityWarning

from demoworld.departmental import (
    CREDENTIAL_HEADER,
    issue_gateway_credential,
    retire_old_gateway_credentials,
)
from tests.stack import Stack

SYSTEM = "civil-affairs-registry"
API = f"/api/v1/admission/systems/{SYSTEM}/outbound-credential"
VILLAGE_A = "310151101201"
PROPAGATION_S = 1.0


def _read(stack: Stack) -> httpx.Response:
    return stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW", page_size=5)


def _until(stack: Stack, check: Callable[[httpx.Response], bool]) -> httpx.Response:
    """Poll the data path until ``check`` holds; fail after PROPAGATION_S (the freshness of system status)."""
    deadline = time.monotonic() + PROPAGATION_S
    while True:
        resp = _read(stack)
        if check(resp):
            return resp
        if time.monotonic() > deadline:
            pytest.fail(f"not within {PROPAGATION_S}s: {resp.status_code} {resp.text[:300]}")
        time.sleep(0.05)


def _store(stack: Stack, credential: str) -> None:
    resp = httpx.put(
        stack.base_url + API,
        json={"credential": credential},
        headers={"Authorization": f"Bearer {stack.token('ca_sysadmin')}"},
        timeout=30.0,
    )
    assert resp.status_code == 204, resp.text


def _service_token(stack: Stack) -> str:
    from gateway.upstream import ServiceTokenSigner, load_or_create_ed25519

    key = load_or_create_ed25519(stack.data_dir / "keys" / "gateway-service-ed25519.pem")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # joserfc on "EdDSA" (RFC 9864); same signature
        return ServiceTokenSigner(key).token_for(SYSTEM)


def _served(resp: httpx.Response) -> bool:
    return resp.status_code == 200 and bool(resp.json()["items"])


def _refused(resp: httpx.Response) -> bool:
    return resp.status_code == 502 and resp.json().get("error") == "upstream_credential_refused"


def test_the_registry_requires_the_key_and_the_gateway_presents_it(stack: Stack) -> None:
    url = f"http://127.0.0.1:{stack.upstream_port}/residents"
    token = {"Authorization": f"Bearer {_service_token(stack)}"}
    # The registry itself: the gateway's signed token alone is no longer enough ...
    bare = httpx.get(url, params={"org_prefix": VILLAGE_A}, headers=token, timeout=10.0)
    assert (bare.status_code, bare.json()["error"]) == (401, "gateway_credential_invalid")
    assert CREDENTIAL_HEADER in bare.json()["message_zh"]
    wrong = httpx.get(
        url, params={"org_prefix": VILLAGE_A}, headers={**token, CREDENTIAL_HEADER: "gk_guess"}, timeout=10.0
    )
    assert wrong.status_code == 401
    # ... and through the gateway data flows, so the gateway presents the stored key.
    resp = _read(stack)
    assert _served(resp), resp.text
    assert {item["village_code"] for item in resp.json()["items"]} == {VILLAGE_A}


def test_a_wrong_or_missing_credential_fails_closed_audited_then_rotation_restores(stack: Stack) -> None:
    wrong = "gk_wrong_" + uuid.uuid4().hex
    path = stack.credentials_file(SYSTEM)
    try:
        _store(stack, wrong)
        before = stack.audit_count()
        resp = _until(stack, _refused)
        body = resp.json()
        assert "出站凭证" in body["message"] and "outbound credential" in body["message_en"]
        assert body["system"] == SYSTEM and body["upstream_status"] == 401
        assert "items" not in body and wrong not in resp.text
        event = stack.last_events(1)[0]
        assert event["outcome"] == "error"
        assert json.loads(event["body"])["reason"] == "upstream_credential_refused"
        assert stack.audit_count() > before
        assert not any(wrong in e["body"] for e in stack.last_events(50))

        # Cleared: the gateway calls with its token only, and the registry refuses that too.
        cleared = httpx.delete(
            stack.base_url + API,
            headers={"Authorization": f"Bearer {stack.token('ca_sysadmin')}"},
            timeout=30.0,
        )
        assert cleared.status_code == 204
        _until(stack, _refused)
    finally:
        # The department issues a new key and retires every older one; the admin stores it via the API.
        fresh = issue_gateway_credential(path)
        retire_old_gateway_credentials(path)
        _store(stack, fresh)
    _until(stack, _served)


def test_rotation_through_the_cli_is_used_within_a_poll(stack: Stack) -> None:
    assert _served(_read(stack))
    path = stack.credentials_file(SYSTEM)
    # The department issues a new key and at once retires the one the gateway holds.
    rotated = issue_gateway_credential(path)
    retire_old_gateway_credentials(path)
    _until(stack, _refused)
    cli = stack.cli(
        "admission",
        "outbound-credential",
        SYSTEM,
        "--as",
        "ca_sysadmin",
        "--url",
        stack.base_url,
        env_extra={"GRASSROOTS_OUTBOUND_CREDENTIAL": rotated},
    )
    assert "stored" in cli.stdout and rotated not in cli.stdout + cli.stderr
    stored_at = time.monotonic()
    _until(stack, _served)
    assert time.monotonic() - stored_at <= PROPAGATION_S
    kinds = [json.loads(e["body"]) for e in stack.last_events(40)]
    assert any(
        k["kind"] == "admission.outbound_credential_set" and k["details"].get("system_id") == SYSTEM
        for k in kinds
    )


def test_an_envelope_the_gateway_cannot_open_is_refused_not_skipped(stack: Stack) -> None:
    with stack.engine.connect() as conn:
        blob = bytes(
            conn.execute(
                sa.text("SELECT outbound_credential_ciphertext FROM admission_systems WHERE system_id = :s"),
                {"s": SYSTEM},
            ).scalar_one()
        )
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])

    def put(value: bytes) -> None:
        with stack.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE admission_systems SET outbound_credential_ciphertext = :b WHERE system_id = :s"
                ),
                {"b": value, "s": SYSTEM},
            )
            conn.execute(sa.text("UPDATE admission_registry_version SET version = version + 1"))

    try:
        put(tampered)
        resp = _until(stack, lambda r: r.status_code == 503)
        assert resp.json()["error"] == "upstream_credential_unavailable"
        assert resp.json()["system"] == SYSTEM
    finally:
        put(blob)
    _until(stack, _served)


def test_a_system_verifies_the_gateways_tokens_with_the_published_key_set(stack: Stack) -> None:
    """The gateway's service key is published as a JWK Set (GET /service/jwks, no sign-in) and each token
    names its key by kid: a departmental system verifies the tokens it is called with from the key set alone,
    with no PEM file handed over, and tells the gateway's key from any other by its kid."""
    from joserfc import jwt
    from joserfc.jwk import KeySet, OKPKey

    resp = httpx.get(stack.base_url + "/service/jwks", timeout=30.0)
    assert resp.status_code == 200, resp.text
    published = resp.json()
    assert [(k["kty"], k["crv"], k["alg"], k["use"]) for k in published["keys"]] == [
        ("OKP", "Ed25519", "EdDSA", "sig")
    ]
    assert "d" not in published["keys"][0]  # the public half only
    token = _service_token(stack)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        decoded = jwt.decode(token, KeySet.import_key_set(published), algorithms=["EdDSA"])
    assert decoded.header["kid"] == published["keys"][0]["kid"]
    assert (decoded.claims["iss"], decoded.claims["aud"]) == ("grassroots-gateway", SYSTEM)
    # The same key as the PEM file the registries of this stack were started with.
    from_file = OKPKey.import_key(stack.gateway_public_key.read_bytes())
    assert from_file.thumbprint() == published["keys"][0]["kid"]
