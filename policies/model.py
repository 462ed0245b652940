"""Plain value types the policy library takes and returns. Frozen, so a decision cannot be edited
after it is made."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

__all__ = [
    "ROLES",
    "AccessRequest",
    "Check",
    "Decision",
    "Obligations",
    "Reason",
    "Subject",
]

ROLES: tuple[str, ...] = (
    "village_cadre",
    "grid_worker",
    "township_officer",
    "county_officer",
    "data_steward",
    "system_admin",
    "admission_reviewer",
    "supervisor",
    "auditor",
    "platform_admin",
)


@dataclass(frozen=True, slots=True)
class Subject:
    """Who asks: taken from the SSO token by the gateway."""

    user_id: str
    org: str
    roles: tuple[str, ...]
    department: str | None = None
    #: Micro-grid codes assigned to a grid worker (from the identity provider). They narrow the row
    #: scope of a subject whose roles read no wider than a grid (see ``PolicyEngine``).
    grids: tuple[str, ...] = ()

    def __repr__(self) -> str:
        grids = f", grids={self.grids!r}" if self.grids else ""
        return f"Subject(user_id={self.user_id!r}, org={self.org!r}, roles={self.roles!r}{grids})"


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """One read of one dataset for one scenario. ``fields=None`` means all the grant allows."""

    subject: Subject
    action: str
    dataset: str
    scenario: str
    fields: tuple[str, ...] | None
    now: datetime
    record_count_hint: int | None = None


@dataclass(frozen=True, slots=True)
class Reason:
    """A stable machine code plus words a village cadre understands (Chinese first)."""

    code: str
    message_zh: str
    message_en: str


@dataclass(frozen=True, slots=True)
class Obligations:
    """What the gateway must enforce when a read is allowed.

    ``row_scope``: division codes every returned row must fall under (GB/T 35273 §5.2 minimum
    necessary: rows of the caller's own jurisdiction only); for a grid worker, the micro-grid codes
    assigned to them (``divisions.covers`` reads both). ``fields``: the whitelist; anything else
    is dropped, not masked. ``max_records``: per-request cap, already reduced to the quota left.
    """

    row_scope: tuple[str, ...]
    fields: tuple[str, ...]
    masking_profile: str
    max_records: int
    quota_left: int | None
    grant_id: str


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reasons: tuple[Reason, ...]
    obligations: Obligations | None = None

    @property
    def code(self) -> str:
        """The first reason's code (``"allowed"`` for an allowed decision)."""
        return self.reasons[0].code if self.reasons else ("allowed" if self.allowed else "internal_error")


@dataclass(frozen=True, slots=True)
class Check:
    """One condition ``explain`` evaluated: its code, whether it passed, and what it means."""

    code: str
    passed: bool
    message_zh: str
    message_en: str
    #: Codes and counts behind the words (e.g. the grids in force, the records left in today's quota).
    detail: dict[str, str | int] = field(default_factory=dict)
