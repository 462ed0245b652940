"""Keyed pseudonyms for residents and records in the audit log.

PIPL Art. 51(3) and GB/T 35273-2020 §6.2 ask for de-identification of personal information in
processing records: the log must let a supervisor answer a complaint ("who read my data?", PIPL Art. 45
and Art. 56) without letting a reader of the log learn who the residents are. A keyed HMAC-SHA256
(RFC 2104) does both: whoever holds the key can recompute the ref from an ID number the complainant
gives, while the log alone reveals nothing and cannot be reversed by enumerating the (small) space of
ID or phone numbers — an unkeyed hash could be.

A ref reads ``<key_id>:<64 lowercase hex>``; the key id lets the key rotate without making old refs
ambiguous (a lookup computes the ref under every key still kept: :class:`PseudonymRing`).

Refs under two keys are unrelated, so after a rotation nothing in the log says that a resident's ref under
the old key and under the new one are one person — which a rule counting readers per resident needs. An
event written after a rotation therefore also carries, per resident, a *link*: the HMAC under the writing
key, in its own domain, of the resident's ref under each retired key (:meth:`PseudonymRing.links`). Only a
holder of the newer key can compute a link from an old ref (:meth:`PseudonymRing.link_candidates`), so the
links tell a reader of the log nothing, and a leaked old key — the reason to rotate — computes none of
them: new events carry no ref under the old key.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from typing import Any, Final

from grassroots_common.keyids import KEY_ID_PATTERN, MIN_KEY_BYTES

REF_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,16}:[0-9a-f]{64}")

#: The ``details`` key under which an access event carries :meth:`PseudonymRing.links` of its residents.
SUBJECT_REF_LINKS: Final = "subject_ref_links"

# Domain separation: the same key must never produce the same MAC for an audit ref and for anything
# else it might (wrongly) be reused for.
_DOMAIN: Final = b"grassroots-audit-ref-v1\x00"
# Links join a ref under a retired key to the writing key's events. Neither domain tag is a prefix of the
# other (they differ at byte 21), so no link is ever a ref of anything, under any key.
_LINK_DOMAIN: Final = b"grassroots-audit-ref-link-v1\x00"
_BLOCK: Final = 64  # SHA-256's block size in bytes (RFC 2104's B)
_MAC_BYTES: Final = 32  # SHA-256's digest size


def is_ref(value: str) -> bool:
    """True when ``value`` has the ``<key_id>:<hex>`` shape of a :class:`Pseudonymizer` ref."""
    return REF_PATTERN.fullmatch(value) is not None


def packed_ref(ref: str) -> bytes:
    """``ref`` in 33 to 48 bytes instead of its 67 to 81 characters: the key id's ASCII, then the 32 bytes of
    the MAC. What a value sealed with its resident carries (an AES-GCM envelope, README "Unmask"), where
    every byte lengthens each served value. ``ValueError`` for anything that is not a ref."""
    # Checked part by part rather than by REF_PATTERN (done once per served record, this costs about half):
    # the MAC must read back as the very hex it was written as (fromhex alone allows spaces and capitals).
    key_id, _, mac = ref.partition(":")
    try:
        digest = bytes.fromhex(mac)
    except ValueError:
        digest = b""
    if KEY_ID_PATTERN.fullmatch(key_id) is None or len(digest) != _MAC_BYTES or digest.hex() != mac:
        raise ValueError("not a Pseudonymizer ref")
    return key_id.encode("ascii") + digest


def unpacked_ref(packed: bytes) -> str:
    """The ref :func:`packed_ref` packed; ``ValueError`` for bytes it cannot have made."""
    key_id, mac = packed[:-_MAC_BYTES], packed[-_MAC_BYTES:]
    try:
        ref = f"{key_id.decode('ascii')}:{mac.hex()}"
    except UnicodeDecodeError:
        raise ValueError("not a packed ref") from None
    if len(packed) <= _MAC_BYTES or not is_ref(ref):
        raise ValueError("not a packed ref")
    return ref


class Pseudonymizer:
    """HMAC-SHA256 pseudonyms under one key: stable for the key, unrelated across keys.

    The key never appears in ``repr``/``str`` and the object refuses to be pickled, so it cannot leak
    into a log line or a crash dump by accident.
    """

    __slots__ = ("_inner", "_key_id", "_link_inner", "_outer")

    def __init__(self, key: bytes, key_id: str) -> None:
        if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
            raise ValueError(f"pseudonymization key must be at least {MIN_KEY_BYTES} bytes")
        if KEY_ID_PATTERN.fullmatch(key_id) is None:
            raise ValueError("key id must be 1-16 characters of [A-Za-z0-9_-]")
        # RFC 2104 with the key's two padded blocks hashed once: each ref then costs two SHA-256 state
        # copies instead of OpenSSL's per-call HMAC set-up (about 1.7 µs instead of 3.7 µs; a page of
        # 20 residents takes 40 refs). The domain tag is part of every message, so it joins the inner
        # state too. Keys longer than SHA-256's 64-byte block are hashed first, as RFC 2104 §2 says.
        block = (hashlib.sha256(key).digest() if len(key) > _BLOCK else key).ljust(_BLOCK, b"\x00")
        ipad = bytes(b ^ 0x36 for b in block)
        self._inner = hashlib.sha256(ipad + _DOMAIN)
        self._link_inner = hashlib.sha256(ipad + _LINK_DOMAIN)
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        self._key_id = key_id

    @property
    def key_id(self) -> str:
        return self._key_id

    def ref(self, value: str) -> str:
        """The ref of ``value`` (an ID number, a phone, a record id) under this key.

        ``value`` is hashed exactly as given (UTF-8): callers that look a person up from a number typed
        by someone else normalise it the same way the gateway did (e.g. an ID number's check character
        ``x`` upper-cased, GB 11643-1999 §5) — see :func:`normalise_id_number`.
        """
        return f"{self._key_id}:{self._mac(self._inner, value)}"

    def link(self, ref: str) -> str:
        """The link of ``ref`` (a ref under another key) under this key: 64 lowercase hex, no key id.

        What an event written under this key records next to a resident's ref, so that the resident's
        events under the other key can be joined to it by whoever holds this key (and nobody else)."""
        return self._mac(self._link_inner, ref)

    def _mac(self, inner_state: Any, value: str) -> str:
        inner = inner_state.copy()
        inner.update(value.encode("utf-8"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def __repr__(self) -> str:
        return f"Pseudonymizer(key_id={self._key_id!r})"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("Pseudonymizer holds a secret key and cannot be pickled")


class PseudonymRing:
    """The audit-ref keys a gateway keeps: one active key that new events are written with, and retired keys
    kept for lookups only, so that a person or record is still found in the events written before a
    rotation (PIPL Art. 45 and 56: a complaint about a read before the rotation must not come back empty).

    :meth:`ref` writes; :meth:`refs` is what a search by person or record asks for — one ref per kept key,
    all looked up in the same indexed ``IN`` query, so the cost of a lookup grows by a key's ref, not by a
    query.
    """

    __slots__ = ("_active", "_kept")

    def __init__(self, active: Pseudonymizer, retired: Sequence[Pseudonymizer] = ()) -> None:
        kept = (active, *retired)
        ids = [p.key_id for p in kept]
        if len(set(ids)) != len(ids):
            # Two keys under one id would make the id say nothing about which key made a ref.
            raise ValueError("audit ref key ids must be distinct")
        self._active = active
        self._kept = kept

    @property
    def active(self) -> Pseudonymizer:
        return self._active

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The kept key ids, the active one first."""
        return tuple(p.key_id for p in self._kept)

    def ref(self, value: str) -> str:
        """The ref new events carry: under the active key."""
        return self._active.ref(value)

    def refs(self, value: str) -> list[str]:
        """The ref of ``value`` under every kept key, the active key's first: what a lookup searches for."""
        return [p.ref(value) for p in self._kept]

    def links(self, values: Sequence[str]) -> dict[str, list[str]]:
        """What an event written under the active key records to join ``values`` (residents, in the order
        of the event's refs) to their refs under each retired key: ``{retired key id: [link per value]}``,
        each link the active key's :meth:`Pseudonymizer.link` of the value's ref under that retired key.
        Empty while no key was retired (no rotation yet): events then carry nothing more than before."""
        return {old.key_id: [self._active.link(old.ref(value)) for value in values] for old in self._kept[1:]}

    def link_candidates(self, ref: str) -> list[tuple[str, str]]:
        """``(writing key id, link)`` for each kept key other than the one ``ref`` was made under: the link
        an event written under that key would carry for the resident ``ref`` names. An empty list for a
        ref under a key no longer kept (or not a ref)."""
        key_id, _, _ = ref.partition(":")
        if not is_ref(ref) or key_id not in self.key_ids:
            return []
        return [(p.key_id, p.link(ref)) for p in self._kept if p.key_id != key_id]

    def __repr__(self) -> str:
        return f"PseudonymRing(key_ids={self.key_ids!r})"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("PseudonymRing holds secret keys and cannot be pickled")


def normalise_id_number(value: str) -> str:
    """A resident ID number in its stored form: ASCII digits, no spaces or hyphens, check character ``X``
    upper-case (GB 11643).

    A number is typed as people write it: in groups (``310210 19570302 1234``, ``310210-19570302-1234``)
    or full-width, as a Chinese input method in full-width mode gives it (``３１０２１０…``), with any dash
    between the groups (``310210—19570302—1234``). Full-width
    digits passed the check-digit test as they were, so their ref matched nothing: a complaint or a
    transparency lookup found no access at all. NFKC folds them (and the full-width hyphen and space) to
    ASCII first."""
    if value.isascii() and value.isalnum():
        # An ID number as registries send it (18 ASCII digits, perhaps an x): NFKC leaves ASCII as it is
        # and there is no space or dash to take out, so only the upper-casing is left (a page of 20
        # residents normalises 20 numbers; the character-by-character walk below cost most of its refs).
        return value.upper()
    folded = unicodedata.normalize("NFKC", value)
    # Any dash (Unicode category Pd): a Chinese input method gives "—" or "–" for the key a hyphen is on,
    # which NFKC leaves as it is.
    return "".join(ch for ch in folded if not ch.isspace() and unicodedata.category(ch) != "Pd").upper()
