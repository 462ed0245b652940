"""Re-identification guard: k-anonymity over declared quasi-identifiers (GB/T 37964-2019 §A.2,
Sweeney 2002). For a response above a configurable size, every combination of quasi-identifier values
must be shared by at least k records; otherwise the quasi-identifiers are generalised step by step
(a ladder per field) and, if the top of every ladder still leaves a class smaller than k, the response
is refused with a reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Generaliser", "KAnonymityResult", "enforce_k_anonymity", "smallest_class"]

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
) -> KAnonymityResult:
    """Generalise until k-anonymous, or refuse.

    Responses with fewer than `min_records` records are returned unchanged (a cadre reading one
    household is not a release). `ladders[q]` lists increasingly coarse generalisers for
    quasi-identifier `q`; step i applies `ladders[q][i-1]` to the original value. A quasi-identifier
    with no ladder can only be suppressed as a whole, which is its final step.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    base = [dict(r) for r in records]
    ladders = ladders or {}
    steps = {q: 0 for q in quasi_identifiers}
    if len(base) < min_records or not quasi_identifiers:
        return KAnonymityResult(base, True, k, smallest_class(base, quasi_identifiers), steps)
    tops = {q: len(ladders.get(q, ())) + 1 for q in quasi_identifiers}  # +1: suppression

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
                reason_zh=f"结果集无法满足 {k}-匿名要求，存在重新识别个人的风险，已拒绝返回",
                reason_en=f"the result cannot be made {k}-anonymous; refused to prevent re-identification",
            )
        q = max(open_qs, key=lambda name: len({repr(r.get(name)) for r in current}))
        steps[q] += 1
        current = apply()
    return KAnonymityResult(current, True, k, smallest_class(current, quasi_identifiers), dict(steps))
