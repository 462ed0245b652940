"""Credentials of admitted systems: a client secret shown once and stored hashed, rotation, public keys
for signed client assertions, and the opaque outbound-credential ciphertext."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from sqlalchemy import select
from sqlalchemy.orm import Session

from admission import AdmissionService, CredentialError, SystemStatus
from admission.credentials import check_public_key, hash_secret, verify_secret
from admission.tables import ClientRow

from .conftest import Flow, make_registration


@pytest.fixture
def admitted(flow: Flow) -> str:
    flow.admit(make_registration())
    return "health-visits"


def test_issue_then_verify(service: AdmissionService, session: Session, admitted: str) -> None:
    issued = service.issue_client_secret(admitted, "u-health-admin")
    client_id, secret = issued
    assert service.verify_client_secret(client_id, secret) == admitted
    assert service.verify_client_secret(client_id, secret + "x") is None
    assert service.verify_client_secret("gsc_unknown", secret) is None
    assert service.client_id_for(admitted) == client_id
    stored = session.scalars(select(ClientRow.secret_hash)).one()
    assert stored is not None and secret not in stored and stored.startswith("scrypt$")
    assert secret not in repr(issued) and secret not in json.dumps(issued.event)
    assert issued.event["kind"] == "admission.credential_issued"


def test_rotation_stops_the_old_secret(service: AdmissionService, admitted: str) -> None:
    client_id, old = service.issue_client_secret(admitted, "u-health-admin")
    rotated = service.rotate_client_secret(admitted, "u-health-admin")
    assert rotated.client_id == client_id
    assert rotated.secret != old
    assert service.verify_client_secret(client_id, old) is None
    assert service.verify_client_secret(client_id, rotated.secret) == admitted
    assert rotated.event["kind"] == "admission.credential_rotated"


def test_second_issue_is_refused(service: AdmissionService, admitted: str) -> None:
    service.issue_client_secret(admitted, "u-health-admin")
    with pytest.raises(CredentialError, match="rotate") as info:
        service.issue_client_secret(admitted, "u-health-admin")
    # It said "请使用轮换" and no more: the option to use, and that the old secret then stops working.
    assert f"admission client-secret {admitted} --rotate" in info.value.message_zh
    assert "旧密钥及用它取得的令牌立即失效" in info.value.message_zh
    assert "--rotate" in info.value.message_en and "stop working at once" in info.value.message_en


def test_rotation_without_a_secret_is_refused(service: AdmissionService, admitted: str) -> None:
    with pytest.raises(CredentialError):
        service.rotate_client_secret(admitted, "u-health-admin")


@pytest.mark.parametrize("status", ["draft", "submitted"])
def test_no_credentials_before_approval(flow: Flow, service: AdmissionService, status: str) -> None:
    flow.register(make_registration())
    if status == "submitted":
        service.submit("health-visits", "u-health-admin")
    with pytest.raises(CredentialError) as info:
        service.issue_client_secret("health-visits", "u-health-admin")
    assert "health-visits" in info.value.message_zh
    # What comes next: credentials follow the review, whose progress the admin can follow.
    assert (
        "已通过准入联审" in info.value.message_zh and "grassroots admission progress" in info.value.message_zh
    )
    assert "joint admission review approved" in info.value.message_en


def test_rotation_allowed_while_suspended(service: AdmissionService, admitted: str) -> None:
    client_id, _ = service.issue_client_secret(admitted, "u-health-admin")
    service.suspend(admitted, "u-sup", "密钥疑似泄露")
    _, new = service.rotate_client_secret(admitted, "u-health-admin")
    assert service.verify_client_secret(client_id, new) == admitted


def test_revocation_destroys_credentials(service: AdmissionService, admitted: str) -> None:
    client_id, secret = service.issue_client_secret(admitted, "u-health-admin")
    service.set_outbound_credential(admitted, b"\x01ciphertext", "u-ops")
    event = service.revoke(admitted, "u-sup", "违规")
    assert event["credentials_removed"] is True
    assert service.verify_client_secret(client_id, secret) is None
    assert service.outbound_credential(admitted) is None
    assert service.get(admitted).status is SystemStatus.REVOKED


def test_outbound_credential_is_stored_as_given(service: AdmissionService, admitted: str) -> None:
    assert service.outbound_credential(admitted) is None
    event = service.set_outbound_credential(admitted, b"v1\x00opaque", "u-ops")
    assert service.outbound_credential(admitted) == b"v1\x00opaque"
    assert event["kind"] == "admission.outbound_credential_set" and "opaque" not in json.dumps(event)
    service.set_outbound_credential(admitted, None, "u-ops")
    assert service.outbound_credential(admitted) is None


def _pem(public: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def test_public_key_registration(service: AdmissionService, admitted: str) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    event = service.register_public_key(admitted, _pem(private.public_key()), "u-health-admin")
    client_id = service.client_id_for(admitted)
    assert client_id is not None and event["client_id"] == client_id
    key = service.client_public_key(client_id)
    assert key is not None
    assert (key.system_id, key.format, key.kid) == (admitted, "pem", event["kid"])
    assert "BEGIN PUBLIC KEY" not in repr(key)
    # A secret issued later shares the same client id.
    issued = service.issue_client_secret(admitted, "u-health-admin")
    assert issued.client_id == client_id


# RFC 7638 §3.1 example key and its thumbprint.
RFC7638_JWK = {
    "kty": "RSA",
    "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJE"
        "CPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Q"
        "vzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6"
        "WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    ),
    "e": "AQAB",
    "alg": "RS256",
    "kid": "",
}


@pytest.mark.parametrize(
    ("case", "key", "expected"),
    [
        ("jwk with kid", json.dumps({**RFC7638_JWK, "kid": "2011-04-29"}), ("jwk", "2011-04-29")),
        (
            "jwk without kid: RFC 7638 thumbprint",
            json.dumps(RFC7638_JWK),
            ("jwk", "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"),
        ),
    ],
)
def test_public_key_ids(case: str, key: str, expected: tuple[str, str]) -> None:
    assert check_public_key(key) == expected


def test_ed25519_pem_is_accepted() -> None:
    fmt, kid = check_public_key(_pem(ed25519.Ed25519PrivateKey.generate().public_key()))
    assert fmt == "pem" and len(kid) == 43


@pytest.mark.parametrize(
    ("case", "key"),
    [
        ("private JWK", json.dumps({**RFC7638_JWK, "d": "secret"})),
        ("symmetric JWK", json.dumps({"kty": "oct", "k": "c2VjcmV0"})),
        ("not JSON", "{not json"),
        ("garbage PEM", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"),
        ("private PEM", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"),
        ("plain text", "hello"),
    ],
)
def test_bad_public_keys_are_refused(service: AdmissionService, admitted: str, case: str, key: str) -> None:
    with pytest.raises(CredentialError) as info:
        service.register_public_key(admitted, key, "u-health-admin")
    assert "AAAA" not in str(info.value) and "secret" not in str(info.value)
    assert service.client_id_for(admitted) is None


def test_hash_is_salted_and_checked_in_full() -> None:
    a, b = hash_secret("same"), hash_secret("same")
    assert a != b
    assert verify_secret("same", a) and verify_secret("same", b)
    assert not verify_secret("Same", a)
    assert not verify_secret("same", a.replace("scrypt$", "bcrypt$"))
    assert not verify_secret("same", "scrypt$garbage")
    assert not verify_secret("same", None)


@pytest.mark.parametrize(
    "key",
    [
        json.dumps({**RFC7638_JWK, "d": "secret"}),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
    ],
)
def test_a_private_key_sent_is_refused_saying_it_is_leaked_and_how_to_make_the_public_half(
    service: AdmissionService, admitted: str, key: str
) -> None:
    from admission.credentials import holds_private_key

    assert holds_private_key(key)
    with pytest.raises(CredentialError) as info:
        service.register_public_key(admitted, key, "u-health-admin")
    assert "请视为已泄露" in info.value.message_zh and "openssl pkey -in" in info.value.message_zh
    assert "treat it as leaked" in info.value.message_en


@pytest.mark.parametrize(
    "key", [json.dumps(RFC7638_JWK), "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "{x"]
)
def test_a_public_key_or_garbage_holds_no_private_key(key: str) -> None:
    from admission.credentials import holds_private_key

    assert not holds_private_key(key)
