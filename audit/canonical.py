"""Canonical JSON (RFC 8785, JSON Canonicalization Scheme).

Every audit event body is hashed over its RFC 8785 form, so the same event always yields the same bytes
on any machine and in any language: keys sorted by UTF-16 code units (§3.2.3), no insignificant
whitespace, numbers in the ECMAScript shortest round-trip form (§3.2.2.3), strings minimally escaped
(§3.2.2.2).

The reference encoder (the ``rfc8785`` package) is pure Python and costs ~100 µs per event — a tenth of
the group-commit budget. For the values audit bodies hold (no floats, keys below U+D800, no lone
surrogates) RFC 8785 output is byte-identical to the C ``json`` encoder with sorted keys and compact
separators: integers within ±(2**53-1) print the same, JSON.stringify and ``json`` escape the same
characters the same way, and code-point order equals UTF-16 order below U+D800. Anything else goes to
the reference encoder; a property test holds the two to the same bytes.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import rfc8785

_MAX_SAFE_INT: Final = 2**53 - 1
_KEY_NEEDS_UTF16_ORDER = re.compile("[^\u0000-\ud7ff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)


def is_plain(value: Any, depth: int = 0) -> bool:
    """True when the fast encoder provably gives RFC 8785 bytes for ``value``."""
    if depth > 64:
        return False
    if value is None or value is True or value is False:
        return True
    kind = type(value)
    if kind is str:
        return bool(value.isascii() or _SURROGATE.search(value) is None)
    if kind is int:
        return bool(-_MAX_SAFE_INT <= value <= _MAX_SAFE_INT)
    if kind is list or kind is tuple:
        return all(is_plain(item, depth + 1) for item in value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or (not key.isascii() and _KEY_NEEDS_UTF16_ORDER.search(key)):
                return False
            if not is_plain(item, depth + 1):
                return False
        return True
    return False  # floats, subclasses, other types: the reference encoder decides (or refuses)


def has_surrogate(text: str) -> bool:
    """True when ``text`` holds a UTF-16 surrogate code point (which UTF-8 and the fast path cannot carry)."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def encode_plain(obj: Any) -> str:
    """RFC 8785 text of a value the caller has established :func:`is_plain` for (or built to be so)."""
    return _ENCODER.encode(obj)


def canonical_json(obj: Any) -> bytes:
    """Encode ``obj`` as RFC 8785 canonical JSON (UTF-8 bytes).

    Raises ``ValueError`` for values JCS cannot represent: NaN/Infinity (RFC 8785 §3.2.2.3), integers
    beyond the IEEE 754 safe range (RFC 8785 §3.2.2.3 via I-JSON, RFC 7493 §2.2), non-string object
    keys and non-JSON types. The message names the problem, never the value (it may be personal data).
    """
    if is_plain(obj):
        return _ENCODER.encode(obj).encode("utf-8")
    try:
        return bytes(rfc8785.dumps(obj))
    except rfc8785.CanonicalizationError as exc:
        raise ValueError(f"not representable as RFC 8785 canonical JSON: {type(exc).__name__}") from None
