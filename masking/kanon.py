"""Re-identification guard: k-anonymity over declared quasi-identifiers (GB/T 37964-2019 §A.2,
Sweeney 2002). For a response above a configurable size, every combination of quasi-identifier values
must be shared by at least k records; otherwise the quasi-identifiers are generalised step by step
(a ladder per field) and, if the top of every ladder still leaves a class smaller than k, the response
is refused with a reason.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from masking.catalog import Catalog, SemanticType
from masking.operators import generalise_address

__all__ = [
    "Generaliser",
    "KAnonymityResult",
    "enforce_k_anonymity",
    "guard_release",
    "ladder_for",
    "smallest_class",
]

Generaliser = Callable[[object], object]


@dataclass(frozen=True, slots=True)
class KAnonymityResult:
    records: list[dict[str, object]]  # empty when refused
    ok: bool
    k: int
    smallest_class: int
    steps: Mapping[str, int]  # generalisation step applied per quasi-identifier
    reason_zh: str = ""
    reason_en: str = ""


def smallest_class(records: Sequence[Mapping[str, object]], quasi_identifiers: Sequence[str]) -> int:
    """Size of the smallest equivalence class over the quasi-identifiers (0 for no records)."""
    if not records:
        return 0
    classes = Counter(tuple(repr(r.get(q)) for q in quasi_identifiers) for r in records)
    return min(classes.values())


def enforce_k_anonymity(
    records: Sequence[Mapping[str, object]],
    quasi_identifiers: Sequence[str],
    *,
    k: int,
    min_records: int = 0,
    ladders: Mapping[str, Sequence[Generaliser]] | None = None,
    allow_suppression: bool = True,
) -> KAnonymityResult:
    """Generalise until k-anonymous, or refuse.

    Responses with fewer than `min_records` records are returned unchanged (a cadre reading one
    household is not a release); so is an empty one (nobody in it). A response of fewer than `k` records
    that is checked can never be k-anonymous: it is refused at once, saying so, without generalising
    anything (GB/T 37964-2019 §A.2: every equivalence class holds at least k records).

    `ladders[q]` lists increasingly coarse generalisers for quasi-identifier `q`; step i applies
    `ladders[q][i-1]` to the original value. A quasi-identifier with no ladder can only be suppressed as
    a whole, which is its final step — unless `allow_suppression` is False, when the top of its ladder
    is the last step and a response still not k-anonymous there is refused.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    base = [dict(r) for r in records]
    ladders = ladders or {}
    steps = {q: 0 for q in quasi_identifiers}
    if len(base) < min_records or not quasi_identifiers or not base:
        return KAnonymityResult(base, True, k, smallest_class(base, quasi_identifiers), steps)
    if len(base) < k:
        n = len(base)
        return KAnonymityResult(
            [],
            False,
            k,
            smallest_class(base, quasi_identifiers),
            steps,
            reason_zh=(
                f"本次查询结果只有 {n} 条记录，少于 {k} 条，无论怎样泛化出生年代、住址等信息，"
                "其中的居民都可能被单独认出，为保护居民隐私已拒绝返回"
            ),
            reason_en=(
                f"This result holds only {n} records, fewer than {k}: however far birth period, address and "
                "similar details are generalised, the residents in it could be singled out; refused to "
                "protect their privacy"
            ),
        )
    extra = 1 if allow_suppression else 0  # the final step: suppression
    tops = {q: len(ladders.get(q, ())) + extra for q in quasi_identifiers}

    def apply() -> list[dict[str, object]]:
        out = []
        for r in base:
            g = dict(r)
            for q, step in steps.items():
                if step == 0 or q not in g:
                    continue
                ladder = ladders.get(q, ())
                g[q] = ladder[step - 1](r[q]) if step <= len(ladder) else None
            out.append(g)
        return out

    current = apply()
    while smallest_class(current, quasi_identifiers) < k:
        # Coarsen the quasi-identifier with the most distinct values first: it splits classes most.
        open_qs = [q for q in quasi_identifiers if steps[q] < tops[q]]
        if not open_qs:
            return KAnonymityResult(
                [],
                False,
                k,
                smallest_class(current, quasi_identifiers),
                dict(steps),
                reason_zh=(
                    f"本次查询结果中，有的居民按出生年代、住址等信息组合后少于 {k} 人，"
                    "可能被单独认出，为保护居民隐私已拒绝返回"
                ),
                reason_en=(
                    f"Some residents in this result are in a group of fewer than {k} people sharing their "
                    "birth period, address and similar details, and could be singled out; refused to protect "
                    "their privacy"
                ),
            )
        q = max(open_qs, key=lambda name: len({repr(r.get(name)) for r in current}))
        steps[q] += 1
        current = apply()
    return KAnonymityResult(current, True, k, smallest_class(current, quasi_identifiers), dict(steps))


# --- ladders on already-masked values ---------------------------------------------------------------
#
# The guard runs after masking (issue 4), so its inputs are what the operators produced: a date as
# "1957-03-02", "1957-03" or "1957"; an age bucket "60-69" or "80+"; an address cut at some level; a
# 12-digit division code. Each ladder coarsens one step further than the mask did (GB/T 37964-2019
# §A.2.2 generalisation); a value a step cannot read is kept as it is (it was already coarse or redacted).

_DATE = re.compile(r"(\d{4})(?:-\d{2}(?:-\d{2})?)?", re.ASCII)
_BUCKET = re.compile(r"(\d{1,3})-(\d{1,3})", re.ASCII)
_CODE = re.compile(r"\d{12}", re.ASCII)


def _year(value: object) -> object:
    if isinstance(value, str) and (m := _DATE.fullmatch(value)):
        return m.group(1)
    return value


def _period(width: int) -> Generaliser:
    def generalise(value: object) -> object:
        if not isinstance(value, str):
            return value
        if m := _DATE.fullmatch(value):
            low = int(m.group(1)) - int(m.group(1)) % width
            return f"{low}-{low + width - 1}"
        if m := _BUCKET.fullmatch(value):
            low = int(m.group(1)) - int(m.group(1)) % width
            return f"{low}-{low + width - 1}"
        return value

    return generalise


def _address(level: str) -> Generaliser:
    def generalise(value: object) -> object:
        if not isinstance(value, str):
            return value
        return generalise_address(value, level) or value

    return generalise


def _division(significant: int) -> Generaliser:
    def generalise(value: object) -> object:
        if isinstance(value, str) and _CODE.fullmatch(value):
            return value[:significant] + "0" * (12 - significant)
        return value

    return generalise


_LADDERS: dict[SemanticType, tuple[Generaliser, ...]] = {
    SemanticType.BIRTH_DATE: (_year, _period(10), _period(20)),
    SemanticType.DATE: (_year, _period(10), _period(20)),
    SemanticType.AGE: (_period(10), _period(20)),
    SemanticType.ADDRESS: (_address("township"), _address("county")),
    SemanticType.DIVISION_CODE: (_division(9), _division(6)),
}


def ladder_for(semantic_type: SemanticType) -> tuple[Generaliser, ...]:
    """The generalisation steps for values of this semantic type (empty: suppression only)."""
    return _LADDERS.get(semantic_type, ())


def guard_release(
    catalog: Catalog,
    dataset: str,
    records: Sequence[Mapping[str, object]],
    *,
    k: int,
    min_records: int,
    allow_suppression: bool = False,
) -> KAnonymityResult:
    """The re-identification guard for one response: k-anonymity over the catalog's declared
    quasi-identifiers that the response carries, generalising along `ladder_for` each one's type.

    Suppression is off by default: the scenario grant lists a field because the purpose needs it, so
    silently blanking it would hand the reader something other than what was approved; refusing tells
    them to narrow the request instead.
    """
    spec = catalog.dataset(dataset)
    present = {name for record in records for name in record}
    quasi = [q for q in spec.quasi_identifiers if q in present]
    ladders = {q: ladder_for(spec.fields[q].semantic_type) for q in quasi}
    return enforce_k_anonymity(
        records,
        quasi,
        k=k,
        min_records=min_records,
        ladders=ladders,
        allow_suppression=allow_suppression,
    )
