"""Outbound credentials in one process: the sealed envelope, the per-process cache keyed by the envelope's
digest (opened once; a re-stored credential opened again; a cleared one forgotten), failures that make the
system unroutable instead of called without its key, and a clear value that never shows in a repr or log.
(The credential on the wire and its rotation across processes: tests/e2e and test_admission_api.)"""

from __future__ import annotations

import logging
import os

import pytest
from cryptography.exceptions import InvalidTag

import gateway.outbound as outbound
from gateway.outbound import OutboundCredentialCache, open_outbound_credential, seal_outbound_credential
from gateway.upstream import UpstreamTarget
from masking import KeyRing

SYSTEM = "civil-affairs-registry"
SECRET = "gk_the-departments-key-for-the-gateway"


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.generate(os.urandom(32))


def test_the_envelope_opens_only_for_its_system_and_hides_the_value(ring: KeyRing) -> None:
    blob = seal_outbound_credential(ring, SYSTEM, SECRET)
    assert blob.startswith(b"gwoc1") and SECRET.encode() not in blob
    assert open_outbound_credential(ring, SYSTEM, blob) == SECRET
    with pytest.raises(InvalidTag):
        open_outbound_credential(ring, "person-house-registry", blob)
    # Every seal has a fresh nonce: storing the same value again is a new version.
    assert seal_outbound_credential(ring, SYSTEM, SECRET) != blob


def test_the_cache_opens_each_envelope_once_and_follows_changes(
    ring: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []

    def counting(ring_: KeyRing, system_id: str, blob: bytes) -> str:
        opened.append(system_id)
        return open_outbound_credential(ring_, system_id, blob)

    monkeypatch.setattr(outbound, "open_outbound_credential", counting)
    cache = OutboundCredentialCache(ring)
    blob = seal_outbound_credential(ring, SYSTEM, SECRET)
    for _ in range(3):
        assert cache.resolve({SYSTEM: blob}) == ({SYSTEM: SECRET}, frozenset())
    assert opened == [SYSTEM]

    rotated = seal_outbound_credential(ring, SYSTEM, "gk_rotated")
    assert cache.resolve({SYSTEM: rotated}) == ({SYSTEM: "gk_rotated"}, frozenset())
    assert opened == [SYSTEM, SYSTEM]
    assert cache.resolve({}) == ({}, frozenset())  # cleared: forgotten, not served from memory
    assert SYSTEM not in repr(cache)


def test_an_envelope_that_cannot_be_opened_fails_that_system_only(
    ring: KeyRing, caplog: pytest.LogCaptureFixture
) -> None:
    other_ring = KeyRing.generate(os.urandom(32))  # another KEK and key id set, as after a bad deploy
    good = seal_outbound_credential(ring, SYSTEM, SECRET)
    foreign = seal_outbound_credential(other_ring, "person-house-registry", SECRET)
    tampered = good[:-1] + bytes([good[-1] ^ 1])
    caplog.set_level(logging.ERROR, logger="gateway.outbound")

    cache = OutboundCredentialCache(ring)
    clear, failed = cache.resolve({SYSTEM: good, "person-house-registry": foreign, "third": tampered})
    assert clear == {SYSTEM: SECRET} and failed == {"person-house-registry", "third"}
    assert OutboundCredentialCache(None).resolve({SYSTEM: good}) == ({}, frozenset({SYSTEM}))
    assert caplog.records
    for record in caplog.records:
        assert SECRET not in record.getMessage()


def test_the_target_never_shows_its_credential() -> None:
    target = UpstreamTarget(SYSTEM, "http://127.0.0.1:8101", "/residents", credential=SECRET)
    assert SECRET not in repr(target) and SECRET not in str(target)
