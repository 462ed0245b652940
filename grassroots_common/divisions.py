"""What a division code (统计用区划代码) is: the one parser every library and the gateway validate with.

A code is twelve ASCII digits ``PP CC DD TTT VVV`` (province, city, county, township, village), or the same
code with trailing segments left off (2, 4, 6 or 9 digits). The national root ``000000000000`` stands for
the ministry level; any other code with province ``00`` is no code. Digits of other scripts (full-width
``３１``, Arabic-Indic) are refused: they would match no stored code, so a filter made of them would
silently show nothing. ``policies.divisions`` builds the jurisdiction relation on this parser and
``audit.query`` the organisation-subtree filter, so a code is accepted or refused the same way by both.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "BOUNDARIES",
    "DIVISION_CODE",
    "ROOT",
    "VILLAGE_CODE",
    "is_division_code",
    "parse_division_code",
    "significant_prefix",
]

ROOT: Final = "000000000000"
#: Segment end offsets: province, city, county, township, village.
BOUNDARIES: Final[tuple[int, ...]] = (2, 4, 6, 9, 12)
#: What :func:`parse_division_code` accepts: the root, or 2, 4, 6, 9 or 12 ASCII digits whose province is
#: not ``00``. Written so that it means the same in ECMA-262 as here: the OpenAPI document states it as the
#: ``pattern`` of every division-code parameter.
DIVISION_CODE: Final = re.compile(
    r"^(?:000000000000|(?!00)[0-9]{2}(?:[0-9]{2}(?:[0-9]{2}(?:[0-9]{3}(?:[0-9]{3})?)?)?)?)$"
)
#: A village's or community's code: twelve digits, the province not ``00``, the village segment not ``000``.
VILLAGE_CODE: Final = re.compile(r"^(?!00)[0-9]{9}(?!000)[0-9]{3}$")


def parse_division_code(code: str) -> tuple[str, int]:
    """Return (12-digit form, level 0-5) or raise ValueError.

    The level is that of the *last* non-zero segment: a middle segment may be ``00`` (东莞 4419 has
    townships directly below the city, ``441900003000``).

    Not cached: a national deployment has ~620,000 organisations, so a bounded cache thrashes on a
    uniform stream of callers and a full one costs hundreds of MB; slicing a 12-character string is
    cheaper than a cache miss (bench/bench_policy.py measures both worlds)."""
    if type(code) is str and len(code) == 12 and code.isascii() and code.isdigit():
        full = code
    else:
        if not isinstance(code, str):
            raise ValueError("division code must be a string of digits")
        if DIVISION_CODE.fullmatch(code) is None:
            raise ValueError(
                "division code must be 2, 4, 6, 9 or 12 ASCII digits (统计用区划代码), its province not 00 "
                f"unless it is the root; got {len(code)} characters"
            )
        full = code.ljust(12, "0")
    if full[:2] == "00":
        if full == ROOT:
            return ROOT, 0
        raise ValueError("division code has province segment 00 but is not the national root")
    if full[9:] != "000":
        return full, 5
    if full[6:9] != "000":
        return full, 4
    if full[4:6] != "00":
        return full, 3
    if full[2:4] != "00":
        return full, 2
    return full, 1


def is_division_code(code: str) -> bool:
    """True for what :func:`parse_division_code` accepts."""
    try:
        parse_division_code(code)
    except ValueError:
        return False
    return True


def significant_prefix(code: str) -> str:
    """The code cut after its last non-zero segment (``""`` for the root): what every code inside its
    jurisdiction starts with. ValueError for anything :func:`parse_division_code` refuses."""
    full, level = parse_division_code(code)
    return full[: BOUNDARIES[level - 1]] if level else ""
