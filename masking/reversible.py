"""Keyed transformations: HMAC pseudonyms, FF1 ID-number pseudonyms and the AES-GCM envelope.

Reversal (FF1 decryption, envelope opening) needs an `Unmask` capability: the caller must name who
unmasks, why, and the id of the audit event it has already appended (issue 4: "decryptable only with
an explicit unmask permission and an audit event"). This library cannot check the audit log itself
(it imports no other package), so the capability is the contract the gateway signs.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from stdnum.iso7064 import mod_11_2

from masking.errors import KeyRingError, UnmaskError
from masking.ff1 import FF1
from masking.keys import KeyRing

__all__ = [
    "ENVELOPE_PREFIX",
    "PSEUDONYM_PREFIX",
    "Unmask",
    "decrypt_envelope",
    "encrypt_envelope",
    "ff1_id_pseudonym",
    "ff1_id_reveal",
    "hmac_pseudonym",
]

PSEUDONYM_PREFIX = "ps"
ENVELOPE_PREFIX = "enc"
_ENVELOPE_VERSION = "v1"


@dataclass(frozen=True, slots=True)
class Unmask:
    """Capability to reverse a reversible mask. All three fields are required and non-empty."""

    actor: str
    purpose: str
    audit_event_id: str

    def __post_init__(self) -> None:
        if not (self.actor.strip() and self.purpose.strip() and self.audit_event_id.strip()):
            raise UnmaskError(
                "还原需要操作人、用途和已记录的审计事件",
                "unmasking needs an actor, a purpose and an already-appended audit event id",
            )


# --- HMAC pseudonym ------------------------------------------------------------------------------


def normalise_for_pseudonym(value: str) -> str:
    # Stability across datasets: the same person's ID written "44011320141005001x" in one system and
    # "44011320141005001X" in another must give the same pseudonym.
    return "".join(value.split()).upper()


def hmac_pseudonym(value: str, keys: KeyRing, *, namespace: str = "default", length: int = 20) -> str:
    """`ps:<key id>:<base32 of HMAC-SHA256>`; keyed, deterministic per key, not reversible.

    The dataset is deliberately *not* mixed in, so equal values in different datasets join (issue 4).
    The namespace separates kinds of identifier when needed.
    """
    key_id, key = keys.derive("hmac-pseudonym", for_encryption=True)
    return _hmac_with(key_id, key, value, namespace, length)


def _hmac_with(key_id: str, key: bytes, value: str, namespace: str, length: int) -> str:
    msg = namespace.encode() + b"\x00" + normalise_for_pseudonym(value).encode()
    digest = hmac.new(key, msg, hashlib.sha256).digest()
    return f"{PSEUDONYM_PREFIX}:{key_id}:{base64.b32encode(digest).decode('ascii').lower()[:length]}"


# --- FF1 pseudonym for resident ID numbers ----------------------------------------------------------
#
# Design (documented in README): an 18-character GB 11643 number is RRRRRR YYYYMMDD SSS C.
# The 6-digit region is kept (it is also the tweak, so equal date+sequence in different counties
# give unrelated outputs). Birth date and sequence are packed as days-since-1900-01-01 * 1000 + seq,
# a number below 73,049,000 (dates 1900-01-01 .. 2099-12-31), and enciphered with FF1 over 8 decimal
# digits with cycle-walking until the result falls back into that range, so it decodes to a real
# calendar date and a sequence. The check character is recomputed with python-stdnum (ISO 7064
# MOD 11-2), so the result is a well-formed number. The birth date in the output is random in
# 1900–2099 and reveals nothing about the person's age.

_ID18 = re.compile(r"(\d{6})(\d{8})(\d{3})[\dXx]", re.ASCII)
_EPOCH = dt.date(1900, 1, 1)
_DAYS = (dt.date(2099, 12, 31) - _EPOCH).days + 1
_DOMAIN = _DAYS * 1000
_FF1_DIGITS = 8
_TWEAK_PREFIX = b"grassroots/ff1-id/v1/"


def _ff1_for(keys: KeyRing, key_id: str | None, *, for_encryption: bool) -> tuple[str, FF1]:
    kid, key = keys.derive("ff1-id", key_id, for_encryption=for_encryption)
    return kid, FF1(key, 10)


def ff1_id_pseudonym(value: str, cipher: FF1) -> str | None:
    """The FF1 pseudonym of an 18-character ID number, or None when `value` is not one."""
    parts = _split_id(value)
    if parts is None:
        return None
    region, x = parts
    tweak = _TWEAK_PREFIX + region.encode()
    x = cipher.encrypt_int(x, _FF1_DIGITS, tweak)
    while x >= _DOMAIN:  # cycle-walking keeps a permutation of [0, _DOMAIN)
        x = cipher.encrypt_int(x, _FF1_DIGITS, tweak)
    return _join_id(region, x)


def ff1_id_reveal(pseudonym: str, keys: KeyRing, *, key_id: str, unmask: Unmask) -> str:
    """Invert `ff1_id_pseudonym` (needs the key id that made it and an `Unmask` capability)."""
    if not isinstance(unmask, Unmask):
        raise UnmaskError("缺少还原授权", "an Unmask capability is required")
    _, cipher = _ff1_for(keys, key_id, for_encryption=False)
    parts = _split_id(pseudonym)
    if parts is None:
        raise UnmaskError("不是有效的身份号码假名", "not a well-formed ID-number pseudonym")
    region, x = parts
    tweak = _TWEAK_PREFIX + region.encode()
    x = cipher.decrypt_int(x, _FF1_DIGITS, tweak)
    while x >= _DOMAIN:
        x = cipher.decrypt_int(x, _FF1_DIGITS, tweak)
    return _join_id(region, x)


def _split_id(value: str) -> tuple[str, int] | None:
    m = _ID18.fullmatch(value.strip())
    if m is None:
        return None
    region, ymd, seq = m.group(1), m.group(2), m.group(3)
    try:
        born = dt.date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:]))
    except ValueError:
        return None
    days = (born - _EPOCH).days
    if not 0 <= days < _DAYS:
        return None
    return region, days * 1000 + int(seq)


def _join_id(region: str, x: int) -> str:
    days, seq = divmod(x, 1000)
    born = _EPOCH + dt.timedelta(days=days)
    body = f"{region}{born:%Y%m%d}{seq:03d}"
    return body + mod_11_2.calc_check_digit(body)


# --- AES-GCM envelope ------------------------------------------------------------------------------
#
# enc:v1:<key id>:<base64url(nonce || ciphertext || tag)>. The associated data binds version, key id
# and the caller's context (e.g. "residents.id_number"), so an envelope moved to another field or
# re-labelled with another key id fails authentication. Random 96-bit nonces (NIST SP 800-38D §8.2.2).


def _aad(key_id: str, context: str) -> bytes:
    return f"grassroots-masking|aes-gcm|{_ENVELOPE_VERSION}|{key_id}|{context}".encode()


def encrypt_envelope(value: str, keys: KeyRing, *, context: str) -> str:
    key_id, key = keys.derive("aes-gcm", for_encryption=True)
    return _seal(AESGCM(key), key_id, value, context)


def _seal(aead: AESGCM, key_id: str, value: str, context: str) -> str:
    nonce = os.urandom(12)
    body = nonce + aead.encrypt(nonce, value.encode(), _aad(key_id, context))
    token = base64.urlsafe_b64encode(body).rstrip(b"=").decode("ascii")
    return f"{ENVELOPE_PREFIX}:{_ENVELOPE_VERSION}:{key_id}:{token}"


def decrypt_envelope(envelope: str, keys: KeyRing, *, context: str, unmask: Unmask) -> str:
    """Open an envelope made by the `aes_gcm` operator; needs the same context and an `Unmask`."""
    if not isinstance(unmask, Unmask):
        raise UnmaskError("缺少还原授权", "an Unmask capability is required")
    parts = envelope.split(":")
    if len(parts) != 4 or parts[0] != ENVELOPE_PREFIX:
        raise UnmaskError("密文格式无效", "not an envelope")
    _, version, key_id, token = parts
    if version != _ENVELOPE_VERSION:
        raise UnmaskError("不支持的密文版本", f"unsupported envelope version {version!r}")
    try:
        body = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise UnmaskError("密文格式无效", "envelope body is not base64url") from None
    if len(body) < 12 + 16:
        raise UnmaskError("密文格式无效", "envelope too short")
    try:
        _, key = keys.derive("aes-gcm", key_id, for_encryption=False)
    except KeyRingError:
        raise UnmaskError("密文所用密钥不存在", f"envelope key {key_id!r} is not in the key ring") from None
    try:
        plain = AESGCM(key).decrypt(body[:12], body[12:], _aad(key_id, context))
    except InvalidTag:
        raise UnmaskError(
            "密文校验失败（被篡改或上下文不符）", "envelope authentication failed (tampered or wrong context)"
        ) from None
    return plain.decode()
