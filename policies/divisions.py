"""Administrative division codes (统计用区划代码) and the jurisdiction relation on them.

A code is twelve digits ``PP CC DD TTT VVV``: province, city, county, township, village/community.
The national root ``000000000000`` stands for the ministry level. Shorter forms (``31``, ``3101``,
``310151``, ``310151101``) are the same code with the trailing segments left off.

Jurisdiction is a prefix relation on the *significant* part of a code, cut at segment boundaries.
Cutting at boundaries matters: stripping trailing zeros character by character would make
``310110`` (one county) look like the parent of ``310115...`` (a sibling county), and the township
``310151100`` look like the parent of villages of township ``310151101``.

A middle segment may legitimately be ``00``: prefecture-level cities without counties (东莞 4419,
中山 4420, 儋州 4604, 嘉峪关 6202) have townships directly below the city, e.g. ``441900003000``.
The level of a code is therefore the level of its *last* non-zero segment.

Below the village: micro-grids (微网格). A grid code is its village's 12-digit code, ``-G`` and a
two-digit number 01-99 (``310151101201-G03``). A village (and everything above it) covers its grids;
a grid covers only itself, never its village nor a sibling grid. Grid codes are fixed width and
compared whole, so ``-G01`` never matches ``-G10`` and ``-G1`` is no code at all.
"""

from __future__ import annotations

import enum
import re

# The parser is shared with the audit library's organisation filter, so a code is accepted or refused the
# same way wherever it is typed (grassroots_common.divisions).
from grassroots_common.divisions import BOUNDARIES as _BOUNDARIES
from grassroots_common.divisions import ROOT, is_division_code
from grassroots_common.divisions import parse_division_code as _parse

__all__ = [
    "ROOT",
    "DivisionLevel",
    "ancestors",
    "covers",
    "grid_village",
    "is_grid",
    "is_valid",
    "level_of",
    "normalize",
    "parent_of",
    "significant",
    "split",
]

_ZEROS = ROOT
_GRID = re.compile(r"([0-9]{12})-G(?:0[1-9]|[1-9][0-9])", re.ASCII)
_GRID_LENGTH = 16


class DivisionLevel(enum.IntEnum):
    """The six levels of the organisation hierarchy, root first."""

    NATIONAL = 0
    PROVINCE = 1
    CITY = 2
    COUNTY = 3
    TOWNSHIP = 4
    VILLAGE = 5


def normalize(code: str) -> str:
    """Return the 12-digit form of ``code``; raise ValueError when it is malformed."""
    return _parse(code)[0]


def is_valid(code: str) -> bool:
    return is_division_code(code)


def level_of(code: str) -> DivisionLevel:
    return DivisionLevel(_parse(code)[1])


def significant(code: str) -> str:
    """The significant part: the code cut after its last non-zero segment (``""`` for the root)."""
    return split(code)[1]


def split(code: str) -> tuple[str, str]:
    """``(normalize(code), significant(code))`` from one parse (the decision path needs both)."""
    full, level = _parse(code)
    return full, (full[: _BOUNDARIES[level - 1]] if level else "")


def covers(scope: str, target: str) -> bool:
    """True when ``target`` lies within the jurisdiction of ``scope`` (reflexive).

    Either may be a micro-grid code: a division covers the grids of the villages it covers; a grid
    covers only itself. Raises ValueError when either code is malformed: a malformed scope must never
    silently match nothing or everything.
    """
    if (type(scope) is str and len(scope) == _GRID_LENGTH) or (
        type(target) is str and len(target) == _GRID_LENGTH
    ):
        return _covers_grid(scope, target)
    return significant(target).startswith(significant(scope))


def is_grid(code: str) -> bool:
    """True for a well-formed micro-grid code (its village part a village-level division code)."""
    try:
        grid_village(code)
    except ValueError:
        return False
    return True


def grid_village(code: str) -> str:
    """The 12-digit code of the village or community a micro-grid lies in; ValueError when ``code``
    is not a grid code."""
    found = _GRID.fullmatch(code) if isinstance(code, str) else None
    if found is None:
        raise ValueError("micro-grid code must be a 12-digit village code, '-G' and two digits 01-99")
    village = found.group(1)
    if _parse(village)[1] != DivisionLevel.VILLAGE:
        raise ValueError("a micro-grid lies within a village or community, not a higher division")
    return village


def _covers_grid(scope: str, target: str) -> bool:
    target_is_grid = type(target) is str and len(target) == _GRID_LENGTH
    target_village = grid_village(target) if target_is_grid else normalize(target)
    if type(scope) is str and len(scope) == _GRID_LENGTH:
        grid_village(scope)
        return target_is_grid and scope == target
    return significant(target_village).startswith(significant(scope))


def parent_of(code: str) -> str | None:
    """The 12-digit code one level up (skipping absent middle segments); None for the root."""
    full, level = _parse(code)
    if level == 0:
        return None
    for lv in range(level - 1, 0, -1):
        start = _BOUNDARIES[lv - 2] if lv > 1 else 0
        if full[start : _BOUNDARIES[lv - 1]].strip("0"):
            return full[: _BOUNDARIES[lv - 1]].ljust(12, "0")
    return ROOT


def ancestors(code: str) -> tuple[str, ...]:
    """Every code covering ``code``, root first, ``code`` itself last (at most six).

    Each non-zero segment ends one ancestor: ``441900003000`` gives the root, ``440000000000``,
    ``441900000000`` and itself, skipping the absent county exactly as :func:`parent_of` does."""
    full, level = _parse(code)
    if level == 0:
        return (ROOT,)
    chain = [ROOT]
    start = 0
    for end in _BOUNDARIES:
        if full[start:end] != _ZEROS[start:end]:
            chain.append(full[:end] + _ZEROS[end:])
        start = end
    return tuple(chain)
