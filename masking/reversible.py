"""Keyed transformations: HMAC pseudonyms, FF1 ID-number pseudonyms and the AES-GCM envelope.

The two reversible ones are bound to the dataset they are issued for (an FF1 pseudonym by a subkey derived
per dataset, an envelope by the dataset in its associated data), so reversing one needs the dataset it was
issued for: the gateway lets only that dataset's owning department ask, and a steward who names a dataset of
their own for another department's value gets no number.

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
from collections.abc import Iterable
from dataclasses import dataclass
from operator import mul

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from masking.errors import DryRunValueError, KeyRingError, UnboundEnvelopeError, UnmaskError
from masking.ff1 import FF1
from masking.keys import DRY_RUN_KEY_ID, KeyRing

__all__ = [
    "DRY_RUN_MARKER",
    "ENVELOPE_PREFIX",
    "FF1_ID_RADIX",
    "FF1_OLD_ID_RADIX",
    "MAX_SUBJECT_BYTES",
    "PSEUDONYM_PREFIX",
    "EnvelopeSealer",
    "OpenedEnvelope",
    "Unmask",
    "decrypt_envelope",
    "encrypt_envelope",
    "envelope_context_among",
    "envelope_names_dataset",
    "ff1_id_cipher",
    "ff1_id_cipher_for",
    "ff1_id_pseudonym",
    "ff1_id_reveal",
    "hmac_pseudonym",
    "id_check_char",
    "is_dry_run_value",
    "open_envelope",
]

PSEUDONYM_PREFIX = "ps"
ENVELOPE_PREFIX = "enc"
_ENVELOPE_VERSION = "v2"
#: An envelope sealed with the subject (the resident) it is about: see "AES-GCM envelope" below.
_SUBJECT_ENVELOPE_VERSION = "v3"
#: What every keyed pseudonym a dry-run makes starts with. An HMAC pseudonym carries it as its key id; an
#: FF1 pseudonym, a bare well-formed ID number otherwise, gets it in front, so a dry-run sample can never
#: be taken for (or unmasked as) a real pseudonym.
DRY_RUN_MARKER = f"{PSEUDONYM_PREFIX}:{DRY_RUN_KEY_ID}:"


def is_dry_run_value(value: str) -> bool:
    """True when `value` carries the dry-run marker (case and surrounding blanks ignored)."""
    return value.strip().lower().startswith(DRY_RUN_MARKER)


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
# The 6-digit region is kept (it is also in the tweak, so equal date+sequence in different counties
# give unrelated outputs). Birth date and sequence are packed as days-since-1900-01-01 * 1000 + seq,
# a number below 73,049,000 (dates 1900-01-01 .. 2099-12-31), and enciphered with FF1 as two numerals
# of radix 8547 (8547**2 = 73,051,209, the smallest square above that range; SP 800-38G §5.1 permits
# any radix up to 2**16 with radix**len >= 10**6), with cycle-walking until the result falls back into
# the range, so it decodes to a real calendar date and a sequence. Because the FF1 domain exceeds
# the packed range by only 2,209 values, the walk takes a second step for about 3 in 100,000 inputs.
# The check character is recomputed (ISO 7064 MOD 11-2, GB 11643-1999; table-driven for speed and
# equal to python-stdnum's `calc_check_digit`, which the tests check), so the result is a well-formed
# number. The birth date in the output is random in 1900–2099 and reveals nothing about the age.
#
# Binding. The FF1 key is derived per dataset (`KeyRing.derive_scoped("ff1-id", dataset)`, once per plan and
# cached), not mixed into the tweak: a longer tweak would cost a second AES block per round, and a tweak per
# (dataset, region) would overflow FF1's per-tweak plan cache. The binding is to the dataset, not to its
# owning department: unmasking is authorised per dataset (its current owner in the catalog), so the audit
# event then names the dataset the value really came from, and a change of owner (机构改革) moves the right to
# unmask with the dataset instead of orphaning its pseudonyms. Equal ID numbers therefore give different FF1
# pseudonyms in different datasets; joining across datasets is what `hmac_pseudonym` is for. A pseudonym
# still carries no marker (it stays a well-formed ID number): a key that predates binding is refused.
#
# First-generation numbers (GB 11643-1989, 15 digits: RRRRRR YYMMDD SSS, born 1900-1999, no check
# character) are still in old registries. They get the same construction in their own shape: region kept
# (and in the tweak), days-since-1900-01-01 * 1000 + seq below 36,524,000 enciphered as two numerals of
# radix 6044 (6044**2 = 36,529,936, the smallest square above), cycle-walking back into the range, so the
# result is a 15-digit number with a real 19YY date. Same per-dataset key (FF1 puts the radix in its first
# block, so radix 6044 and radix 8547 are unrelated permutations) and its own tweak tag "gr-i15/". It is
# a different permutation from the 18-character one: a resident's 15- and 18-character numbers get
# unrelated pseudonyms, as the numbers themselves differ; each is stable, so records still join on it.
#
# Layout v2. The tweak is "gr-id2/" + region, 13 bytes: at most 13 bytes keeps FF1's
# Q = T || pad || [i] || NUM(B) (NUM(B) is 2 bytes) in one AES block, so each of the ten Feistel
# rounds costs one AES call (SP 800-38G Algorithm 7 step 6.i). Domain separation from other uses of
# FF1 comes from the key, derived under its own label ("ff1-id"); the tag only versions the layout.
# v1 (8 decimal digits, 27-byte tweak "grassroots/ff1-id/v1/" + region) made different pseudonyms;
# none were stored before the change.

_ID18 = re.compile(r"(\d{6})(\d{8})(\d{3})[\dXx]", re.ASCII)
_EPOCH = dt.date(1900, 1, 1)
_EPOCH_ORDINAL = _EPOCH.toordinal()
_DAYS = (dt.date(2099, 12, 31) - _EPOCH).days + 1
_DOMAIN = _DAYS * 1000
FF1_ID_RADIX = 8547
_FF1_NUMERALS = 2
_TWEAK_PREFIX = b"gr-id2/"
_ID15 = re.compile(r"\d{15}", re.ASCII)
_DAYS15 = (dt.date(1999, 12, 31) - _EPOCH).days + 1
_DOMAIN15 = _DAYS15 * 1000
FF1_OLD_ID_RADIX = 6044
_TWEAK15_PREFIX = b"gr-i15/"


def ff1_id_cipher(key: bytes) -> FF1:
    """The FF1 instance `ff1_id_pseudonym` expects (radix 8547 over a key derived for "ff1-id")."""
    return FF1(key, FF1_ID_RADIX)


def ff1_id_cipher_for(
    keys: KeyRing, dataset: str, key_id: str | None = None, *, for_encryption: bool
) -> tuple[str, FF1]:
    """(key id, FF1 instance) for the pseudonyms of `dataset`; `UnscopedKeyError` for a key that predates
    dataset binding."""
    kid, key = keys.derive_scoped("ff1-id", dataset, key_id, for_encryption=for_encryption)
    return kid, ff1_id_cipher(key)


def ff1_id_pseudonym(value: str, cipher: FF1) -> str | None:
    """The FF1 pseudonym of an ID number, 18 characters or first-generation 15 digits, in the same shape;
    None when `value` is neither.

    `cipher` comes from `ff1_id_cipher`."""
    if cipher.radix != FF1_ID_RADIX:
        raise ValueError("ff1_id_pseudonym needs the cipher made by ff1_id_cipher")
    return _ff1_id(value, cipher, decrypt=False)


def ff1_id_reveal(pseudonym: str, keys: KeyRing, *, key_id: str, dataset: str, unmask: Unmask) -> str:
    """Invert `ff1_id_pseudonym` (needs the key id that made it, the dataset it was issued for and an
    `Unmask` capability). A dry-run's pseudonym is refused: its key is gone, and any real key would
    "reveal" a plausible wrong number. So is one made by a key older than dataset binding
    (`UnscopedKeyError`): it may have been issued for any dataset.

    FF1 cannot tell a wrong dataset from the right one: under another dataset's subkey the answer is an
    unrelated well-formed number, never the real one. A caller that must *refuse* such a request checks
    that the number was served from `dataset` (the gateway does, against the audit log)."""
    if not isinstance(unmask, Unmask):
        raise UnmaskError("缺少还原授权", "an Unmask capability is required")
    if is_dry_run_value(pseudonym):
        raise DryRunValueError()
    _, cipher = ff1_id_cipher_for(keys, dataset, key_id, for_encryption=False)
    clear = _ff1_id(pseudonym, cipher, decrypt=True)
    if clear is None:
        raise UnmaskError("不是有效的身份号码假名", "not a well-formed ID-number pseudonym")
    return clear


def _ff1_id(value: str, cipher: FF1, *, decrypt: bool) -> str | None:
    t = value.strip()
    if len(t) == 15:
        parts, domain, tweak_prefix = _split_id15(t), _DOMAIN15, _TWEAK15_PREFIX
        cipher = cipher.with_radix(FF1_OLD_ID_RADIX)
    else:
        parts, domain, tweak_prefix = _split_id(t), _DOMAIN, _TWEAK_PREFIX
    if parts is None:
        return None
    region, x = parts
    tweak = tweak_prefix + region.encode("ascii")
    step = cipher.decrypt_int if decrypt else cipher.encrypt_int
    x = step(x, _FF1_NUMERALS, tweak)
    while x >= domain:  # cycle-walking keeps a permutation of [0, domain)
        x = step(x, _FF1_NUMERALS, tweak)
    return _join_id15(region, x) if len(t) == 15 else _join_id(region, x)


def _split_id(t: str) -> tuple[str, int] | None:
    if _ID18.fullmatch(t) is None:
        return None
    try:
        born = dt.date(int(t[6:10]), int(t[10:12]), int(t[12:14]))
    except ValueError:
        return None
    days = born.toordinal() - _EPOCH_ORDINAL
    if not 0 <= days < _DAYS:
        return None
    return t[:6], days * 1000 + int(t[14:17])


def _split_id15(t: str) -> tuple[str, int] | None:
    # GB 11643-1989: the year is written without its century, always 19YY.
    if _ID15.fullmatch(t) is None:
        return None
    try:
        born = dt.date(1900 + int(t[6:8]), int(t[8:10]), int(t[10:12]))
    except ValueError:
        return None
    return t[:6], (born.toordinal() - _EPOCH_ORDINAL) * 1000 + int(t[12:15])


def _join_id(region: str, x: int) -> str:
    days, seq = divmod(x, 1000)
    born = dt.date.fromordinal(_EPOCH_ORDINAL + days)
    body = f"{region}{born.year:04d}{born.month:02d}{born.day:02d}{seq:03d}"
    return body + id_check_char(body)


def _join_id15(region: str, x: int) -> str:
    days, seq = divmod(x, 1000)
    born = dt.date.fromordinal(_EPOCH_ORDINAL + days)
    return f"{region}{born.year % 100:02d}{born.month:02d}{born.day:02d}{seq:03d}"


# GB 11643-1999 §5.2.4: weights 2**(17-i) mod 11 for the 17 body digits; check = (12 - sum mod 11) mod 11,
# written "X" for 10. Computed on the ASCII codes, with 48 * sum(weights) taken out once.
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_ASCII_OFFSET = 48 * sum(_ID_WEIGHTS)
_ID_CHECK_CHARS = "10X98765432"


def id_check_char(body: str) -> str:
    """The check character of a 17-digit GB 11643 body (ASCII digits; callers have checked)."""
    return _ID_CHECK_CHARS[(sum(map(mul, _ID_WEIGHTS, body.encode("ascii"))) - _ID_ASCII_OFFSET) % 11]


# --- AES-GCM envelope ------------------------------------------------------------------------------
#
# enc:v2:<key id>:<base64url(nonce || ciphertext || tag)>. The associated data binds version, key id, the
# dataset the envelope is issued for and the caller's context (by default "<dataset>.<field>", or what a rule
# names), so an envelope moved to another field or dataset, or re-labelled with another key id, fails
# authentication. Random 96-bit nonces (NIST SP 800-38D §8.2.2).
#
# enc:v3:<key id>:<base64url(nonce || ciphertext || tag)> is the same envelope sealed with the *subject* the
# value is about, an opaque reference of 1 to 255 bytes the caller gives (the gateway: the resident's keyed
# audit ref, never personal data). The plaintext is <subject length: 1 byte> <subject> <value>, so the subject
# is as authenticated as the value (an edited byte fails the tag) and as confidential: a reader of the
# served envelope learns nothing of it and cannot join envelopes of one resident across responses or
# datasets, as a ref in clear would let them. Only the holder of the key, the gateway at unmask, reads it,
# and so knows whose value it hands out without trusting whoever asks. The version is in the associated
# data: a v3 envelope relabelled v2 (or the reverse) fails authentication, so the subject cannot be dropped.
# A value with no known subject (no record: a dry-run; a record naming no resident) is sealed as v2.
#
# v1 (before dataset binding) bound only version, key id and context. Its context says which dataset it
# belongs to when it is the default "<dataset>.<field>"; a v1 envelope is opened only under a dataset its
# context names that way. One whose context (a rule's) names no dataset is refused (`UnboundEnvelopeError`).

_LEGACY_ENVELOPE_VERSION = "v1"
#: The longest subject a v3 envelope carries (its length is one byte of the plaintext).
MAX_SUBJECT_BYTES = 255


@dataclass(frozen=True, slots=True)
class OpenedEnvelope:
    """What an opened envelope holds: the value and, for a v3 envelope, the subject it was sealed with."""

    value: str
    subject: bytes | None


def _aad(key_id: str, dataset: str, context: str, version: str = _ENVELOPE_VERSION) -> bytes:
    # Key id and dataset are length-prefixed: neither can run into the next part, whatever it holds.
    return (
        f"grassroots-masking|aes-gcm|{version}|{len(key_id)}:{key_id}|{len(dataset)}:{dataset}|{context}"
    ).encode()


def _aad_v1(key_id: str, context: str) -> bytes:
    return f"grassroots-masking|aes-gcm|{_LEGACY_ENVELOPE_VERSION}|{key_id}|{context}".encode()


class EnvelopeSealer:
    """Seals values for one dataset and context under the active key: the key is derived and the associated
    data built once (the `aes_gcm` operator makes one per plan), so a value costs one AES-GCM call."""

    __slots__ = ("_aad", "_aad_subject", "_aead", "_prefix", "_prefix_subject")

    def __init__(self, keys: KeyRing, *, dataset: str, context: str) -> None:
        key_id, key = keys.derive("aes-gcm", for_encryption=True)
        self._aead = AESGCM(key)
        self._aad = _aad(key_id, dataset, context)
        self._aad_subject = _aad(key_id, dataset, context, _SUBJECT_ENVELOPE_VERSION)
        self._prefix = f"{ENVELOPE_PREFIX}:{_ENVELOPE_VERSION}:{key_id}:"
        self._prefix_subject = f"{ENVELOPE_PREFIX}:{_SUBJECT_ENVELOPE_VERSION}:{key_id}:"

    def seal(self, value: str, subject: bytes | None = None) -> str:
        """The envelope of `value`: v3 sealed with `subject` when one is given, v2 otherwise."""
        if subject is None:
            return self._prefix + self._body(value.encode(), self._aad)
        if not 0 < len(subject) <= MAX_SUBJECT_BYTES:
            raise ValueError(f"an envelope's subject is 1 to {MAX_SUBJECT_BYTES} bytes")
        plain = bytes((len(subject),)) + subject + value.encode()
        return self._prefix_subject + self._body(plain, self._aad_subject)

    def _body(self, plain: bytes, aad: bytes) -> str:
        nonce = os.urandom(12)
        body = nonce + self._aead.encrypt(nonce, plain, aad)
        return base64.urlsafe_b64encode(body).rstrip(b"=").decode("ascii")

    def __repr__(self) -> str:
        return "EnvelopeSealer(...)"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("EnvelopeSealer holds a secret key and cannot be pickled")


def encrypt_envelope(
    value: str, keys: KeyRing, *, dataset: str, context: str, subject: bytes | None = None
) -> str:
    """The envelope of `value` for `dataset` and `context`: v3 sealed with `subject` when one is given,
    v2 otherwise."""
    return EnvelopeSealer(keys, dataset=dataset, context=context).seal(value, subject)


def envelope_names_dataset(context: str, dataset: str) -> bool:
    """True when a v1 envelope's `context` ties it to `dataset` (the operator's default context is
    "<dataset>.<field>")."""
    return context.startswith(f"{dataset}.")


def decrypt_envelope(envelope: str, keys: KeyRing, *, dataset: str, context: str, unmask: Unmask) -> str:
    """The value of an envelope made by the `aes_gcm` operator (see `open_envelope`)."""
    return open_envelope(envelope, keys, dataset=dataset, context=context, unmask=unmask).value


def open_envelope(
    envelope: str, keys: KeyRing, *, dataset: str, context: str, unmask: Unmask
) -> OpenedEnvelope:
    """Open an envelope made by the `aes_gcm` operator; needs the dataset it was issued for, the same
    context and an `Unmask`. A v3 envelope's subject comes with the value."""
    if not isinstance(unmask, Unmask):
        raise UnmaskError("缺少还原授权", "an Unmask capability is required")
    parts = envelope.split(":")
    if len(parts) != 4 or parts[0] != ENVELOPE_PREFIX:
        raise UnmaskError("密文格式无效", "not an envelope")
    _, version, key_id, token = parts
    if version not in (_SUBJECT_ENVELOPE_VERSION, _ENVELOPE_VERSION, _LEGACY_ENVELOPE_VERSION):
        # Parts of the submitted value are never echoed (it may hold anything the caller pasted).
        raise UnmaskError(
            f"不支持的密文版本（应为 {_SUBJECT_ENVELOPE_VERSION} 或 {_ENVELOPE_VERSION}），"
            "请核对所提交的密文是否完整",
            f"unsupported envelope version (expected {_SUBJECT_ENVELOPE_VERSION} or {_ENVELOPE_VERSION}); "
            "check the submitted envelope",
        )
    if version == _LEGACY_ENVELOPE_VERSION:
        if not envelope_names_dataset(context, dataset):
            raise UnboundEnvelopeError()
        aad = _aad_v1(key_id, context)
    else:
        aad = _aad(key_id, dataset, context, version)
    try:
        body = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise UnmaskError("密文格式无效", "envelope body is not base64url") from None
    if len(body) < 12 + 16:
        raise UnmaskError("密文格式无效", "envelope too short")
    try:
        _, key = keys.derive("aes-gcm", key_id, for_encryption=False)
    except KeyRingError:
        raise UnmaskError(
            "密文所用密钥不存在（可能已被移出密钥环），请核对所提交的密文",
            "the envelope's key is not in the key ring (it may have been retired); "
            "check the submitted envelope",
        ) from None
    try:
        plain = AESGCM(key).decrypt(body[:12], body[12:], aad)
    except InvalidTag:
        raise UnmaskError(
            "密文校验失败（被篡改，或数据集、上下文与生成时不符）",
            "envelope authentication failed (tampered, or not the dataset or context it was made for)",
        ) from None
    if version != _SUBJECT_ENVELOPE_VERSION:
        return OpenedEnvelope(plain.decode(), None)
    # Authenticated, so made by `EnvelopeSealer.seal`: a length byte of 1..255 and that many bytes follow.
    size = plain[0] if plain else 0
    if size == 0 or len(plain) < 1 + size:
        raise UnmaskError("密文格式无效", "envelope subject is malformed")
    return OpenedEnvelope(plain[1 + size :].decode(), plain[1 : 1 + size])


def envelope_context_among(
    envelope: str, keys: KeyRing, *, dataset: str, contexts: Iterable[str], unmask: Unmask
) -> str | None:
    """The first of ``contexts`` under which ``envelope`` opens for ``dataset``, or ``None``; never the value.

    The envelope carries its context only in the associated data (authenticated, not readable), so an
    envelope opened under the wrong context fails its tag exactly as a tampered one does. A steward who
    names the field the value looked like (``mobile``) rather than the one it was served in (``remark``,
    for an item found in free text) is told which context holds without being handed what it holds: the
    caller asks again under that context, as a new, audited request. Needs an `Unmask`, as opening does.
    """
    if not isinstance(unmask, Unmask):
        # Checked here: each failed opening below is taken for "not this context".
        raise UnmaskError("缺少还原授权", "an Unmask capability is required")
    for context in contexts:
        try:
            open_envelope(envelope, keys, dataset=dataset, context=context, unmask=unmask)
        except UnmaskError:
            continue
        return context
    return None
