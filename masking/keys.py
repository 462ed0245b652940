"""Envelope keys for the keyed operators (HMAC pseudonym, FF1 pseudonym, AES-GCM envelope).

A key-encryption key (KEK, 32 bytes, from configuration or a file) wraps data keys with AES key wrap
(RFC 3394). Only wrapped keys are ever serialised (`to_json`), so the stored key ring is safe at rest.
`rotate()` adds a new active data key; earlier keys become decrypt-only: they still open old envelopes
and FF1 pseudonyms but never produce new ones. Each operator uses its own subkey derived by HKDF-SHA256
(RFC 5869) with the purpose as `info`, so one data key never serves two algorithms.

FF1 pseudonyms are bound to the dataset they are issued for: `derive_scoped` derives the subkey per
(purpose, dataset). A pseudonym carries no key id or version of its own (it must stay a well-formed ID
number), so which derivation made it is a property of the key: keys made from ring format v2 on are marked
`"ff1_scope": "dataset"`; a key without the mark (every key of a v1 ring) may have made unbound pseudonyms
before, so `derive_scoped` refuses it and its FF1 pseudonyms are never reversed (run `keys rotate` once).

Key material never appears in a repr, an exception or a log line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from masking.errors import KeyRingError, KeyRingMalformed, UnscopedKeyError

__all__ = ["DRY_RUN_KEY_ID", "KeyPurpose", "KeyRing", "parse_kek", "read_kek"]

KeyPurpose = Literal["hmac-pseudonym", "ff1-id", "aes-gcm"]
_PURPOSES: tuple[KeyPurpose, ...] = ("hmac-pseudonym", "ff1-id", "aes-gcm")
_KEK_BYTES = 32
# v2 marks keys that derive FF1 subkeys per dataset. A v1 ring still loads (its keys unmarked); a v2 ring
# is refused by code that predates the mark, which would otherwise issue unbound pseudonyms under a
# marked key (and this code would later reverse them as bound: a plausible wrong number).
_FORMAT = "grassroots-masking-keyring/v2"
_FORMATS = ("grassroots-masking-keyring/v1", _FORMAT)
_SCOPE_MARK = "dataset"
#: The key id of a dry-run's throwaway key; keyed operators mark what it makes (``ps:dryrun:…``).
DRY_RUN_KEY_ID = "dryrun"
# What a key's fingerprint is the HMAC of (with the key id after the NUL): no operator MACs anything under
# the data key itself (each derives its subkey by HKDF), so the fingerprint is no value any of them makes.
_FINGERPRINT_LABEL = b"grassroots-masking-keyring/fingerprint/v1\x00"


@dataclass(frozen=True, slots=True)
class _DataKey:
    key_id: str
    created_at: str
    status: Literal["active", "decrypt_only"]
    wrapped: bytes
    #: Derives FF1 subkeys per dataset (made after dataset binding); False for keys of a v1 ring.
    scoped: bool = False


def parse_kek(text: str | bytes) -> bytes:
    """A KEK from configuration: 32 raw bytes, or 64 hex digits, or base64 of 32 bytes."""
    if isinstance(text, bytes) and len(text) == _KEK_BYTES:
        return text
    raw = (text.decode("ascii", "replace") if isinstance(text, bytes) else text).strip()
    candidates: list[bytes] = []
    for decode in (bytes.fromhex, _b64, _b64url):
        try:
            candidates.append(decode(raw))
        except (binascii.Error, ValueError):
            continue
    for candidate in candidates:
        if len(candidate) == _KEK_BYTES:
            return candidate
    raise KeyRingError(
        "密钥加密密钥格式无效：需要 32 字节（64 位十六进制或 base64）",
        "key-encryption key must be 32 bytes (64 hex digits or base64)",
    )


def _b64(raw: str) -> bytes:
    return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)


def _b64url(raw: str) -> bytes:
    return base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=True)


def read_kek(path: Path) -> bytes:
    """Read a KEK file (raw 32 bytes, hex or base64 text)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyRingError(
            f"无法读取密钥文件 {path}", f"cannot read KEK file {path} ({exc.strerror})"
        ) from None
    return parse_kek(data if len(data) == _KEK_BYTES else data.strip())


class KeyRing:
    """Data keys wrapped by a KEK; one active key, older keys decrypt-only."""

    __slots__ = ("_cache", "_kek", "_keys")

    def __init__(self, kek: bytes, keys: list[_DataKey] | None = None) -> None:
        if len(kek) != _KEK_BYTES:
            raise KeyRingError("密钥加密密钥必须为 32 字节", "key-encryption key must be 32 bytes")
        self._kek = kek
        self._keys: dict[str, _DataKey] = {}
        self._cache: dict[tuple[str, str, str | None], bytes] = {}
        for key in keys or []:
            self._keys[key.key_id] = key
        if keys:
            actives = [k for k in keys if k.status == "active"]
            if len(actives) != 1:
                raise KeyRingError(
                    "密钥环必须恰有一个启用的密钥", "a key ring must have exactly one active key"
                )
            for key in keys:
                self._unwrap(key)  # fail now, not at first use, when the KEK does not match

    @classmethod
    def generate(cls, kek: bytes, *, now: datetime | None = None) -> KeyRing:
        """A new ring with one fresh active data key."""
        ring = cls(kek)
        ring.rotate(now=now)
        return ring

    @classmethod
    def from_json(cls, kek: bytes, text: str) -> KeyRing:
        try:
            doc = json.loads(text)
            if doc.get("format") not in _FORMATS:
                raise ValueError("format")
            v2 = doc["format"] == _FORMAT
            keys = [
                _DataKey(
                    key_id=str(k["key_id"]),
                    created_at=str(k["created_at"]),
                    status="active" if k["status"] == "active" else "decrypt_only",
                    wrapped=base64.b64decode(k["wrapped"], validate=True),
                    scoped=v2 and k.get("ff1_scope") == _SCOPE_MARK,
                )
                for k in doc["keys"]
            ]
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise KeyRingMalformed("密钥环文件格式无效", "key ring document is malformed") from None
        return cls(kek, keys)

    def to_json(self) -> str:
        """The ring with data keys wrapped under the KEK; safe to store, never contains clear key bytes."""
        return json.dumps(
            {
                "format": _FORMAT,
                "keys": [
                    {
                        "key_id": k.key_id,
                        "created_at": k.created_at,
                        "status": k.status,
                        "wrapped": base64.b64encode(k.wrapped).decode("ascii"),
                        **({"ff1_scope": _SCOPE_MARK} if k.scoped else {}),
                    }
                    for k in self._keys.values()
                ],
            },
            indent=2,
        )

    def rotate(self, *, now: datetime | None = None) -> str:
        """Add a new active data key and make the previous one decrypt-only; returns the new key id."""
        stamp = (now or datetime.now(UTC)).astimezone(UTC).isoformat()
        new_id = f"k{len(self._keys) + 1}"
        while new_id in self._keys:
            new_id += "x"
        for key_id, key in list(self._keys.items()):
            if key.status == "active":
                self._keys[key_id] = _DataKey(
                    key.key_id, key.created_at, "decrypt_only", key.wrapped, key.scoped
                )
        self._keys[new_id] = _DataKey(
            new_id, stamp, "active", aes_key_wrap(self._kek, os.urandom(32)), scoped=True
        )
        return new_id

    def rewrap(self, new_kek: bytes) -> KeyRing:
        """The same data keys wrapped under a new KEK (KEK rotation)."""
        keys = [
            _DataKey(k.key_id, k.created_at, k.status, aes_key_wrap(new_kek, self._unwrap(k)), k.scoped)
            for k in self._keys.values()
        ]
        return KeyRing(new_kek, keys)

    @property
    def active_key_id(self) -> str:
        for key in self._keys.values():
            if key.status == "active":
                return key.key_id
        raise KeyRingError("密钥环为空，请先生成密钥", "the key ring is empty; generate a key first")

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def status(self, key_id: str) -> str:
        return self._get(key_id).status

    def fingerprint(self, key_id: str) -> str:
        """What says which data key ``key_id`` is without revealing it: HMAC-SHA256 under the unwrapped key of
        a fixed label and the key id, the first 16 bytes in hex. The same key under any KEK gives the same
        fingerprint (a ring rewrapped is the same ring); another key, or the same bytes under another id,
        gives another. A PRF output under a 256-bit key: it tells nothing of the key, nor of any subkey."""
        digest = hmac.new(
            self._unwrap(self._get(key_id)), _FINGERPRINT_LABEL + key_id.encode(), hashlib.sha256
        )
        return digest.digest()[:16].hex()

    def is_scoped(self, key_id: str) -> bool:
        """True when the key derives FF1 subkeys per dataset (it never made an unbound pseudonym)."""
        return self._get(key_id).scoped

    def derive(
        self, purpose: KeyPurpose, key_id: str | None = None, *, for_encryption: bool
    ) -> tuple[str, bytes]:
        """(key id, subkey) for `purpose`. Encryption uses the active key unless a key id is named, and a
        decrypt-only key is refused for encryption. FF1's key is only ever derived per dataset
        (`derive_scoped`): one key for all datasets is what let a pseudonym be unmasked under any."""
        if purpose == "ff1-id":
            raise KeyRingError(
                "身份证号假名的密钥只能按数据集派生",
                "the ff1-id key is derived per dataset only (derive_scoped)",
            )
        return self._derive(purpose, key_id, None, for_encryption=for_encryption)

    def derive_scoped(
        self, purpose: KeyPurpose, scope: str, key_id: str | None = None, *, for_encryption: bool
    ) -> tuple[str, bytes]:
        """(key id, subkey) for `purpose` bound to `scope` (a dataset name): another scope gets an
        unrelated subkey. Derived once per (key, purpose, scope) and cached, so binding costs nothing per
        value. A key that predates scoping is refused (`UnscopedKeyError`), for encryption and decryption."""
        if not scope:
            raise KeyRingError("派生数据集密钥须指明数据集", "a scoped subkey needs a scope (the dataset)")
        kid = key_id or self.active_key_id
        if not self._get(kid).scoped:
            raise UnscopedKeyError()
        return self._derive(purpose, kid, scope, for_encryption=for_encryption)

    def _derive(
        self, purpose: KeyPurpose, key_id: str | None, scope: str | None, *, for_encryption: bool
    ) -> tuple[str, bytes]:
        if purpose not in _PURPOSES:
            raise KeyRingError("未知的密钥用途", f"unknown key purpose {purpose!r}")
        kid = key_id or self.active_key_id
        key = self._get(kid)
        if for_encryption and key.status != "active":
            raise KeyRingError(
                f"密钥 {kid} 已轮换，只能用于解密", f"key {kid} is retired and may only decrypt"
            )
        cached = self._cache.get((kid, purpose, scope))
        if cached is None:
            # RFC 5869 §3.2: the context goes in `info`. The scope follows a NUL, which no purpose holds,
            # so ("ff1-id", scope) can never collide with an unscoped purpose's info.
            info = b"grassroots-masking/v1/" + purpose.encode()
            if scope is not None:
                info = b"grassroots-masking/v2/" + purpose.encode() + b"\x00" + scope.encode("utf-8")
            cached = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
                self._unwrap(key)
            )
            self._cache[(kid, purpose, scope)] = cached
        return kid, cached

    def _get(self, key_id: str) -> _DataKey:
        try:
            return self._keys[key_id]
        except KeyError:
            # The id may come from a request (an unmask's key_id): not echoed in the message.
            raise KeyRingError(
                "密钥环中没有该编号的密钥，请核对密钥编号（key_id）",
                "no key with that id in the key ring; check the key id (key_id)",
            ) from None

    def _unwrap(self, key: _DataKey) -> bytes:
        try:
            return aes_key_unwrap(self._kek, key.wrapped)
        except InvalidUnwrap:
            raise KeyRingError(
                f"无法解开密钥 {key.key_id}：密钥加密密钥不匹配",
                f"cannot unwrap key {key.key_id}: the key-encryption key does not match",
            ) from None

    def __repr__(self) -> str:
        keys = ", ".join(f"{k.key_id}:{k.status}" for k in self._keys.values())
        return f"KeyRing(keys=[{keys}])"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[Any, ...]:
        # Refuse pickling: a pickle would carry the KEK in clear.
        raise TypeError("KeyRing cannot be pickled; store to_json() and the KEK separately")

    @property
    def is_dry_run(self) -> bool:
        """True for the throwaway ring of `for_dry_run`: what its deterministic operators make is marked."""
        return False

    def for_dry_run(self) -> KeyRing:
        """A ring for dry-runs: the deterministic operators (HMAC and FF1 pseudonyms) get a throwaway key.

        A dry-run masks whatever sample the steward types in; with the real keys it would be an oracle
        that turns any guessed ID number into its production pseudonym and so re-identifies
        pseudonymised data (GB/T 37964-2019 §5: the linking key must stay with its custodian). AES-GCM
        envelopes use random nonces and reveal nothing, so they use the real key (and can be unmasked
        with permission, purpose and an audit event, like any other envelope).
        """
        return _DryRunKeyRing(self)


class _DryRunKeyRing(KeyRing):
    __slots__ = ("_real",)

    def __init__(self, real: KeyRing) -> None:
        kek = os.urandom(_KEK_BYTES)
        stamp = datetime.now(UTC).isoformat()
        throwaway = _DataKey(DRY_RUN_KEY_ID, stamp, "active", aes_key_wrap(kek, os.urandom(32)), scoped=True)
        super().__init__(kek, [throwaway])
        self._real = real

    @property
    def is_dry_run(self) -> bool:
        return True

    def derive(
        self, purpose: KeyPurpose, key_id: str | None = None, *, for_encryption: bool
    ) -> tuple[str, bytes]:
        if purpose == "aes-gcm":
            return self._real.derive(purpose, key_id, for_encryption=for_encryption)
        return super().derive(purpose, None, for_encryption=for_encryption)

    def derive_scoped(
        self, purpose: KeyPurpose, scope: str, key_id: str | None = None, *, for_encryption: bool
    ) -> tuple[str, bytes]:
        # Only FF1 is scoped, and a dry-run's FF1 pseudonyms are made under the throwaway key.
        return super().derive_scoped(purpose, scope, None, for_encryption=for_encryption)
