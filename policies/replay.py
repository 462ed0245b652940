"""Policy replay (what-if): re-decide recorded requests under a proposed policy and list who would gain
or lose access to what, before the change is approved.

Both engines should carry no quota counter (``PolicyEngine.what_if``): a replay must not depend on, or
change, today's counters. Each request is decided at its own recorded time, so hours and grant windows
apply as they did (a grant's window never starts before its approval, so a grant approved today
never makes an earlier refusal look allowed); to preview a grant not yet approved, add it with
``as_if_active`` over the replayed period.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from policies.engine import PolicyEngine
from policies.grants import GrantStatus, ScenarioGrant
from policies.model import AccessRequest, Decision

__all__ = ["ReplayChange", "ReplayReport", "as_if_active", "replay"]


@dataclass(frozen=True, slots=True)
class ReplayChange:
    """``direction``: ``gained`` (refused before, allowed after), ``lost``, or ``fields_changed``."""

    direction: str
    user_id: str
    org: str
    dataset: str
    scenario: str
    before: str
    after: str
    fields_before: tuple[str, ...]
    fields_after: tuple[str, ...]
    requests: int


@dataclass(frozen=True, slots=True)
class ReplayReport:
    total: int
    unchanged: int
    changes: tuple[ReplayChange, ...]

    @property
    def gained(self) -> tuple[ReplayChange, ...]:
        return tuple(c for c in self.changes if c.direction == "gained")

    @property
    def lost(self) -> tuple[ReplayChange, ...]:
        return tuple(c for c in self.changes if c.direction == "lost")


def _fields(decision: Decision) -> tuple[str, ...]:
    return decision.obligations.fields if decision.obligations is not None else ()


def replay(requests: Iterable[AccessRequest], current: PolicyEngine, proposed: PolicyEngine) -> ReplayReport:
    total = 0
    grouped: Counter[tuple[str, str, str, str, str, str, str, tuple[str, ...], tuple[str, ...]]] = Counter()
    for req in requests:
        total += 1
        before, after = current.decide(req), proposed.decide(req)
        fb, fa = _fields(before), _fields(after)
        if before.allowed == after.allowed and fb == fa:
            continue
        if before.allowed != after.allowed:
            direction = "gained" if after.allowed else "lost"
        else:
            direction = "fields_changed"
        key = (
            direction,
            req.subject.user_id,
            req.subject.org,
            req.dataset,
            req.scenario,
            before.code,
            after.code,
            fb,
            fa,
        )
        grouped[key] += 1
    changes = tuple(
        ReplayChange(
            direction=k[0],
            user_id=k[1],
            org=k[2],
            dataset=k[3],
            scenario=k[4],
            before=k[5],
            after=k[6],
            fields_before=k[7],
            fields_after=k[8],
            requests=n,
        )
        for k, n in sorted(grouped.items())
    )
    return ReplayReport(total=total, unchanged=total - sum(grouped.values()), changes=changes)


def as_if_active(grant: ScenarioGrant, start: datetime, end: datetime) -> ScenarioGrant:
    """A copy of a proposed grant treated as approved over [start, end), for previewing it."""
    return replace(grant, status=GrantStatus.APPROVED, valid_from=start, valid_until=end)
