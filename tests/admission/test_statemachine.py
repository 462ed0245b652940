"""The lifecycle table, checked for every (state, action) pair against an independently written spec."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from admission import TRANSITIONS, SystemStatus, transition
from admission.statemachine import TERMINAL, Action, IllegalTransition, allowed_actions

# state -> {action: next state}; every pair not listed must be refused.
SPEC: dict[str, dict[str, str]] = {
    "draft": {"submit": "submitted"},
    "submitted": {
        "withdraw": "draft",
        "approve": "approved",
        "reject": "rejected",
        "request_changes": "changes_requested",
    },
    "changes_requested": {"submit": "submitted"},
    "rejected": {"submit": "submitted", "revise": "draft"},
    "approved": {
        "recertify": "approved",
        "approve": "approved",
        "reject": "rejected",
        "request_changes": "changes_requested",
        "suspend": "suspended",
        "lapse": "lapsed",
        "revoke": "revoked",
    },
    "suspended": {"reinstate": "approved", "revoke": "revoked"},
    "lapsed": {"recertify": "submitted", "revoke": "revoked"},
    "revoked": {},
}

ALL_PAIRS = list(itertools.product(SystemStatus, Action))


def test_spec_names_every_state() -> None:
    assert set(SPEC) == {s.value for s in SystemStatus}


@pytest.mark.parametrize(("state", "action"), ALL_PAIRS, ids=[f"{s}-{a}" for s, a in ALL_PAIRS])
def test_every_pair(state: SystemStatus, action: Action) -> None:
    expected = SPEC[state.value].get(action.value)
    if expected is None:
        with pytest.raises(IllegalTransition) as info:
            transition(state, action, system_id="some-system")
        assert info.value.status == state.value
        assert info.value.action == action.value
        assert "some-system" in info.value.message_zh
        assert "some-system" in info.value.message_en
    else:
        assert transition(state, action) is SystemStatus(expected)


def test_table_has_no_edges_beyond_the_spec() -> None:
    spec_edges = {(s, a): n for s, actions in SPEC.items() for a, n in actions.items()}
    assert {(s.value, a.value): n.value for (s, a), n in TRANSITIONS.items()} == spec_edges


def test_revoked_is_the_only_terminal_state() -> None:
    assert frozenset({SystemStatus.REVOKED}) == TERMINAL
    assert allowed_actions(SystemStatus.REVOKED) == ()


def test_message_is_chinese_first_with_labels() -> None:
    with pytest.raises(IllegalTransition) as info:
        transition(SystemStatus.REVOKED, Action.REINSTATE, system_id="x-sys")
    assert info.value.message_zh == (
        "系统 x-sys 当前状态为「已撤销」，不能执行「恢复」操作。该状态为最终状态，不能再变更。"
    )
    assert info.value.message_en == "Cannot reinstate system x-sys while it is revoked. This status is final."
    assert str(info.value).startswith(info.value.message_zh)


def test_a_refused_action_names_what_can_be_done_instead() -> None:
    with pytest.raises(IllegalTransition) as info:
        transition(SystemStatus.SUSPENDED, Action.SUSPEND, system_id="x-sys")
    assert info.value.message_zh.endswith("当前可以：恢复（reinstate）、撤销（revoke）。")
    assert info.value.message_en.endswith("Possible now: reinstate, revoke.")


@pytest.mark.parametrize(
    ("status", "asked", "offered_zh", "offered_en"),
    [
        # A department admin is offered only what she can run: not "suspend, revoke" (the supervisors'),
        # nor "approve, reject" (the offices' votes).
        (
            SystemStatus.APPROVED,
            Action.SUBMIT,
            "当前可以：重新审核（recertify）。",
            "Possible now: recertify.",
        ),
        (SystemStatus.SUBMITTED, Action.SUBMIT, "当前可以：撤回（withdraw）。", "Possible now: withdraw."),
        (
            SystemStatus.APPROVED,
            Action.WITHDRAW,
            "当前可以：重新审核（recertify）。",
            "Possible now: recertify.",
        ),
        # Nothing of her own: who can, and what.
        (
            SystemStatus.SUSPENDED,
            Action.RECERTIFY,
            "现在不能由您办理，可以办理的是：监督部门——恢复（reinstate）、撤销（revoke）。",
            "Only others can act now: the supervisors may reinstate, revoke.",
        ),
        # A supervisor suspending a system never approved is not told "possible now: submit".
        (
            SystemStatus.DRAFT,
            Action.SUSPEND,
            "现在不能由您办理，可以办理的是：申请部门——提交联审（submit）。",
            "Only others can act now: its department may submit.",
        ),
        (
            SystemStatus.SUBMITTED,
            Action.SUSPEND,
            "现在不能由您办理，可以办理的是：申请部门——撤回（withdraw）；"
            "联审单位——通过（approve）、不予通过（reject）、退回修改（request_changes）。",
            "Only others can act now: its department may withdraw; "
            "the reviewing offices may approve, reject, request_changes.",
        ),
        (
            SystemStatus.APPROVED,
            Action.REINSTATE,
            "当前可以：暂停（suspend）、撤销（revoke）。",
            "Possible now: suspend, revoke.",
        ),
    ],
)
def test_a_refusal_offers_only_the_askers_own_actions(
    status: SystemStatus, asked: Action, offered_zh: str, offered_en: str
) -> None:
    with pytest.raises(IllegalTransition) as info:
        transition(status, asked, system_id="x-sys")
    assert info.value.message_zh.endswith(offered_zh), info.value.message_zh
    assert info.value.message_en.endswith(offered_en), info.value.message_en


def test_unknown_action_is_refused_not_crashing() -> None:
    with pytest.raises(IllegalTransition):
        transition(SystemStatus.DRAFT, "fly")  # type: ignore[arg-type]


@given(st.lists(st.sampled_from(list(Action)), max_size=30))
def test_only_the_review_can_reach_approved_from_outside(actions: list[Action]) -> None:
    """Law: entering `approved` from any other state takes an `approve` or a `reinstate` (of a system that
    was approved before) — never a submission, lapse or recertification."""
    state = SystemStatus.DRAFT
    for action in actions:
        try:
            nxt = transition(state, action)
        except IllegalTransition:
            continue
        if nxt is SystemStatus.APPROVED and state is not SystemStatus.APPROVED:
            assert action in (Action.APPROVE, Action.REINSTATE)
            assert state in (SystemStatus.SUBMITTED, SystemStatus.SUSPENDED)
        state = nxt
