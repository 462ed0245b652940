"""Just enough of the division-code vocabulary (统计用区划代码) for reach and burden computations.

Kept private and tiny instead of importing ``policies``: the libraries never import each other
(see docs/architecture.md), and the rule here is only "12 digits, prefix on the significant part".
"""

from __future__ import annotations

import re

_DIGITS = re.compile(r"^[0-9]+$")
# Significant lengths of province, city, county, township and village codes (PP CC DD TTT VVV).
_LEVEL_LENGTHS = (2, 4, 6, 9, 12)


def normalize(code: str) -> str:
    """Right-pad a short form (``31``, ``310151101``) to the 12-digit form, or raise ``ValueError``.

    Only a whole level's length pads: ``3101511`` (a township code cut short) would pad to another area."""
    code = code.strip()
    if not _DIGITS.fullmatch(code) or len(code) not in _LEVEL_LENGTHS:
        raise ValueError("a division code is 2, 4, 6, 9 or 12 digits")
    return code.ljust(12, "0")


def significant(code: str) -> str:
    """The meaningful prefix of a 12-digit code: the national root ``000000000000`` is the empty prefix."""
    for length in reversed(_LEVEL_LENGTHS):
        if code[length - (3 if length > 6 else 2) : length].strip("0"):
            return code[:length]
    return ""


def is_village(code: str) -> bool:
    return len(significant(code)) == 12


def covers(outer: str, inner: str) -> bool:
    """True when ``inner`` lies within (or is) ``outer``."""
    return inner.startswith(significant(outer))


def overlap(a: str, b: str) -> bool:
    """Two areas overlap exactly when one contains the other: the division tree has no partial overlap."""
    return covers(a, b) or covers(b, a)
