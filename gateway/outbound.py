"""Outbound credentials: what the gateway presents when *it* calls an admitted departmental system.

**Scheme.** The department's system issues the gateway an API key (a bearer secret of the department's
choosing). The department's system admin stores it through the admission API (write-only; ``grassroots
admission outbound-credential``). On every call the gateway sends it in the ``X-Api-Key`` header
(``gateway.upstream.CREDENTIAL_HEADER``) alongside its own short-lived EdDSA service token in
``Authorization``: the token proves the caller is this gateway and names the system as its audience; the
key proves the department still lets the gateway in, and the department can rotate or withdraw it on its
own side without touching the gateway's keys. A system with no stored credential gets the token only.

**At rest.** AES-256-GCM envelope ``gwoc1 | len(kid) | kid | nonce | ciphertext+tag`` (NIST SP 800-38D)
under an HKDF (RFC 5869) subkey of the masking key ring, with the system id bound as associated data, so a
ciphertext copied onto another system fails to open.

**In memory.** Each process opens an envelope once and keeps the clear value in memory only, keyed by the
SHA-256 of the envelope. Every store seals with a fresh nonce, so a stored (or re-stored) credential always
has a new digest: that digest is the credential's version. Storing one moves the admission registry version,
every process reloads its routes on its next poll and uses the new credential from then on. An envelope that
cannot be opened (a key this process does not hold, a tampered row) makes the system unroutable here (fail
closed), never a call without it. The clear value never reaches a log line, span, metric, error or the audit
log: only system ids and exception type names are logged.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from masking import KeyRing, KeyRingError

_log = logging.getLogger("gateway.outbound")

_OUTBOUND_VERSION = b"gwoc1"
_OUTBOUND_INFO = b"grassroots-gateway/v1/admission-outbound-credential"


def _outbound_key(ring: KeyRing, key_id: str | None, *, for_encryption: bool) -> tuple[str, bytes]:
    # A subkey of its own (HKDF, RFC 5869) so the masking AES-GCM key never encrypts anything else.
    kid, base = ring.derive("aes-gcm", key_id, for_encryption=for_encryption)
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_OUTBOUND_INFO).derive(base)
    return kid, key


def _aad(system_id: str) -> bytes:
    # The system id is bound as associated data: a ciphertext copied to another system fails to open.
    return b"admission-outbound|" + system_id.encode("utf-8")


def seal_outbound_credential(ring: KeyRing, system_id: str, credential: str) -> bytes:
    """AES-256-GCM envelope ``gwoc1 | len(kid) | kid | nonce | ciphertext+tag`` (NIST SP 800-38D)."""
    kid, key = _outbound_key(ring, None, for_encryption=True)
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(key).encrypt(nonce, credential.encode("utf-8"), _aad(system_id))
    kid_bytes = kid.encode("ascii")
    return _OUTBOUND_VERSION + bytes([len(kid_bytes)]) + kid_bytes + nonce + sealed


def open_outbound_credential(ring: KeyRing, system_id: str, blob: bytes) -> str:
    """The clear credential, for the upstream client only; never logged or returned by the API."""
    if not blob.startswith(_OUTBOUND_VERSION):
        raise ValueError("unknown outbound-credential envelope version")
    rest = blob[len(_OUTBOUND_VERSION) :]
    kid = rest[1 : 1 + rest[0]].decode("ascii")
    nonce, sealed = rest[1 + rest[0] : 13 + rest[0]], rest[13 + rest[0] :]
    _, key = _outbound_key(ring, kid, for_encryption=False)
    return AESGCM(key).decrypt(nonce, sealed, _aad(system_id)).decode("utf-8")


def try_open_outbound_credential(ring: KeyRing | None, system_id: str, blob: bytes) -> str | None:
    """The clear credential, or None when this process cannot open it (logged by system id and error type
    only: no key ring, a key id it does not hold, a wrong KEK, tampered bytes)."""
    if ring is None:
        _log.error("outbound credential of %s cannot be opened: no key ring configured", system_id)
        return None
    try:
        return open_outbound_credential(ring, system_id, blob)
    except (KeyRingError, InvalidTag, ValueError, IndexError) as exc:
        _log.error("outbound credential of %s cannot be opened (%s)", system_id, type(exc).__name__)
        return None


class OutboundCredentialCache:
    """The clear outbound credentials of this process, opened once per stored envelope.

    ``resolve`` takes every stored envelope (by system id) and returns the clear credentials plus the
    systems whose envelope could not be opened. Entries of systems whose credential was rotated or cleared
    are dropped on the same call, so no stale clear value lingers in memory."""

    def __init__(self, ring: KeyRing | None) -> None:
        self._ring = ring
        self._opened: dict[str, tuple[bytes, str]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OutboundCredentialCache(systems={sorted(self._opened)})"

    def resolve(self, envelopes: Mapping[str, bytes]) -> tuple[dict[str, str], frozenset[str]]:
        with self._lock:
            opened: dict[str, tuple[bytes, str]] = {}
            failed: set[str] = set()
            for system_id, blob in envelopes.items():
                digest = hashlib.sha256(blob).digest()
                cached = self._opened.get(system_id)
                if cached is not None and cached[0] == digest:
                    opened[system_id] = cached
                    continue
                clear = try_open_outbound_credential(self._ring, system_id, blob)
                if clear is None:
                    failed.add(system_id)
                else:
                    opened[system_id] = (digest, clear)
            self._opened = opened
            return {sid: clear for sid, (_, clear) in opened.items()}, frozenset(failed)
