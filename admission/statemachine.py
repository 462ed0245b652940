"""The registration lifecycle as an explicit table of (state, action) -> next state.

Anything not in the table is refused. The service adds guards the table cannot express (every required
office approved, a renewal round open, the approval period elapsed); the table alone decides which edges
exist, so it is tested exhaustively.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from admission.errors import IllegalTransition as IllegalTransition
from admission.model import STATUS_LABELS_ZH, SystemStatus


class Action(StrEnum):
    SUBMIT = "submit"
    WITHDRAW = "withdraw"
    REVISE = "revise"
    APPROVE = "approve"
    REJECT = "reject"
    REQUEST_CHANGES = "request_changes"
    SUSPEND = "suspend"
    REINSTATE = "reinstate"
    REVOKE = "revoke"
    RECERTIFY = "recertify"
    LAPSE = "lapse"


ACTION_LABELS_ZH: Mapping[Action, str] = MappingProxyType(
    {
        Action.SUBMIT: "提交联审",
        Action.WITHDRAW: "撤回",
        Action.REVISE: "重新修改",
        Action.APPROVE: "通过",
        Action.REJECT: "不予通过",
        Action.REQUEST_CHANGES: "退回修改",
        Action.SUSPEND: "暂停",
        Action.REINSTATE: "恢复",
        Action.REVOKE: "撤销",
        Action.RECERTIFY: "重新审核",
        Action.LAPSE: "到期失效",
    }
)

_S = SystemStatus
_A = Action

TRANSITIONS: Mapping[tuple[SystemStatus, Action], SystemStatus] = MappingProxyType(
    {
        # Filing and joint review (联审). Resubmission after a rejection is allowed.
        (_S.DRAFT, _A.SUBMIT): _S.SUBMITTED,
        (_S.CHANGES_REQUESTED, _A.SUBMIT): _S.SUBMITTED,
        (_S.REJECTED, _A.SUBMIT): _S.SUBMITTED,
        (_S.SUBMITTED, _A.WITHDRAW): _S.DRAFT,
        (_S.REJECTED, _A.REVISE): _S.DRAFT,
        (_S.SUBMITTED, _A.APPROVE): _S.APPROVED,
        (_S.SUBMITTED, _A.REJECT): _S.REJECTED,
        (_S.SUBMITTED, _A.REQUEST_CHANGES): _S.CHANGES_REQUESTED,
        # Re-certification of a live system: the review round runs while the system keeps routing; its
        # outcome renews the approval, or ends it.
        (_S.APPROVED, _A.RECERTIFY): _S.APPROVED,
        (_S.APPROVED, _A.APPROVE): _S.APPROVED,
        (_S.APPROVED, _A.REJECT): _S.REJECTED,
        (_S.APPROVED, _A.REQUEST_CHANGES): _S.CHANGES_REQUESTED,
        # A lapsed system is blocked until it has been fully re-reviewed.
        (_S.LAPSED, _A.RECERTIFY): _S.SUBMITTED,
        # Supervision.
        (_S.APPROVED, _A.SUSPEND): _S.SUSPENDED,
        (_S.SUSPENDED, _A.REINSTATE): _S.APPROVED,
        (_S.APPROVED, _A.LAPSE): _S.LAPSED,
        # No (SUSPENDED, LAPSE): a suspension outlives the approval's end. Only the supervisor lifts it
        # (reinstate; an approval that has ended then lapses) or makes it final (revoke): a department
        # cannot clear it by letting the approval lapse and asking for a fresh review.
        (_S.APPROVED, _A.REVOKE): _S.REVOKED,
        (_S.SUSPENDED, _A.REVOKE): _S.REVOKED,
        (_S.LAPSED, _A.REVOKE): _S.REVOKED,
    }
)

TERMINAL: frozenset[SystemStatus] = frozenset(
    s for s in SystemStatus if not any(state is s for state, _ in TRANSITIONS)
)


def allowed_actions(status: SystemStatus) -> tuple[Action, ...]:
    return tuple(a for a in Action if (status, a) in TRANSITIONS)


_VOTES = frozenset({Action.APPROVE, Action.REJECT, Action.REQUEST_CHANGES})


class Party(StrEnum):
    """Who takes an action: a refusal offers the asker only her own party's actions (a department admin
    told "possible now: suspend" runs it and is refused again: only the supervisors suspend)."""

    DEPARTMENT = "department"
    REVIEWERS = "reviewers"
    SUPERVISORS = "supervisors"


PARTY_OF: Mapping[Action, Party] = MappingProxyType(
    {
        Action.SUBMIT: Party.DEPARTMENT,
        Action.WITHDRAW: Party.DEPARTMENT,
        Action.REVISE: Party.DEPARTMENT,
        Action.RECERTIFY: Party.DEPARTMENT,
        Action.APPROVE: Party.REVIEWERS,
        Action.REJECT: Party.REVIEWERS,
        Action.REQUEST_CHANGES: Party.REVIEWERS,
        Action.SUSPEND: Party.SUPERVISORS,
        Action.REINSTATE: Party.SUPERVISORS,
        Action.REVOKE: Party.SUPERVISORS,
    }
)

PARTY_LABELS: Mapping[Party, tuple[str, str]] = MappingProxyType(
    {
        Party.DEPARTMENT: ("申请部门", "its department"),
        Party.REVIEWERS: ("联审单位", "the reviewing offices"),
        Party.SUPERVISORS: ("监督部门", "the supervisors"),
    }
)


def offered_actions(
    status: SystemStatus, *, under_review: bool, party: Party | None = None
) -> tuple[tuple[str, str], ...]:
    """What a person may do from ``status``, as (action, Chinese label) pairs for a refusal to name; with
    ``party``, only what that party takes.

    Never LAPSE (the daily job's, not a person's), and no vote outside a review round: an approved system's
    vote edges exist only while its renewal round is open."""
    return tuple(
        (a.value, ACTION_LABELS_ZH[a])
        for a in allowed_actions(status)
        if a is not Action.LAPSE
        and (under_review or a not in _VOTES)
        and (party is None or PARTY_OF[a] is party)
    )


def others_actions(
    status: SystemStatus, *, under_review: bool, party: Party
) -> tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...]:
    """What the other parties may do from ``status``: (party zh, party en, actions) for each that may."""
    found = []
    for other in Party:
        if other is party:
            continue
        actions = offered_actions(status, under_review=under_review, party=other)
        if actions:
            found.append((*PARTY_LABELS[other], actions))
    return tuple(found)


def transition(status: SystemStatus, action: Action, *, system_id: str | None = None) -> SystemStatus:
    """The next state, or ``IllegalTransition`` (with zh/en messages) when the edge does not exist."""
    try:
        return TRANSITIONS[(SystemStatus(status), Action(action))]
    except (KeyError, ValueError):
        status_zh = STATUS_LABELS_ZH.get(status) if status in set(SystemStatus) else None
        action_zh = ACTION_LABELS_ZH.get(action) if action in set(Action) else None
        known = status in set(SystemStatus)
        party = PARTY_OF.get(Action(action)) if action in set(Action) else None
        under_review = status == SystemStatus.SUBMITTED
        possible = (
            offered_actions(SystemStatus(status), under_review=under_review, party=party) if known else ()
        )
        others = (
            others_actions(SystemStatus(status), under_review=under_review, party=party)
            if known and party is not None
            else ()
        )
        raise IllegalTransition(
            str(status),
            str(action),
            system_id=system_id,
            status_zh=status_zh,
            action_zh=action_zh,
            possible=possible,
            others=others,
            final=known and SystemStatus(status) in TERMINAL,
        ) from None
