"""An administrative act refused by a business rule is an audit event too.

A steward approving her own grant request (403 ``separation_of_duties``), a reviewer voting twice (409
``already_voted``): the permission check passed, the act was refused inside its unit of work, and the
rollback took every trace with it, so a supervisor never saw the attempt. Each is now one ``admin.refused``
event (the permission asked, the reason code, who, the target's id, the request id; never the body),
written durably after the rollback; if the log cannot take it the caller gets 503, not the refusal.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway.test_admission_api import API, REVIEWER_OF, call, new_id, ok, registration
from tests.gateway.test_grants_api import (
    _request,
    api,
    events,
    fresh_village,
    last_seq,
    policy_files,
    user_id,
)
from tests.stack import Stack, stack_fixture

OWN_REQUEST = {"roles": ["data_steward", "county_officer"]}  # a steward who may request grants too


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = policy_files(tmp_path_factory.mktemp("refused-acts-policy"))
    yield from stack_fixture("sqlite", tmp_path_factory, extra_env=env)


def _own_request(stack: Stack) -> str:
    # A village of its own each time: a request identical to one still waiting would be refused.
    return _request(stack, "ca_steward", "ELDERLY_VISIT", fresh_village(), **OWN_REQUEST)


def _status(stack: Stack, grant_id: str) -> str:
    return str(api(stack, "GET", f"/grants/{grant_id}", "ca_steward2").json()["status"])


def test_a_steward_approving_her_own_request_is_refused_and_recorded(stack: Stack) -> None:
    grant_id = _own_request(stack)
    before = last_seq(stack)
    resp = api(stack, "POST", f"/grants/{grant_id}/approve", "ca_steward", **OWN_REQUEST)
    assert (resp.status_code, resp.json()["error"]) == (403, "separation_of_duties"), resp.text
    (event,) = events(stack, "admin.", before)
    body = event["body"]
    assert (event["kind"], body["outcome"]) == ("admin.refused", "refused")
    assert body["reason"] == "separation_of_duties"
    assert body["actor"] == user_id(stack, "ca_steward")
    assert body["actor_org"] and body["actor_roles"] == OWN_REQUEST["roles"]
    assert body["request_id"] == resp.json()["request_id"]
    assert body["details"] == {"permission": "approve grants", "grant_id": grant_id}
    assert events(stack, "grant.", before) == [] and _status(stack, grant_id) == "requested"


def test_a_grant_id_that_matches_nothing_is_not_recorded(stack: Stack) -> None:
    """A 404's id is whatever was typed (a mobile number here): the refusal is recorded, the id is not."""
    before = last_seq(stack)
    resp = api(stack, "POST", "/grants/grt_does_not_exist/approve", "ca_steward")
    assert (resp.status_code, resp.json()["error"]) == (404, "grant_not_found"), resp.text
    resp = api(stack, "POST", "/grants/13812345678/approve", "ca_steward")
    assert resp.status_code == 404, resp.text
    recorded = events(stack, "admin.refused", before)
    assert [e["body"]["details"] for e in recorded] == [{"permission": "approve grants"}] * 2
    assert "13812345678" not in str(recorded)


def test_a_reviewer_voting_twice_is_refused_and_recorded(stack: Stack) -> None:
    sid = new_id("twice")
    ok(call(stack, "POST", f"{API}/systems", "hb_sysadmin", json=registration(sid)), 201)
    ok(call(stack, "POST", f"{API}/systems/{sid}/submit", "hb_sysadmin"))
    reviewer = REVIEWER_OF["big_data_centre"]
    vote = {"vote": "approve", "comment": "同意"}
    ok(call(stack, "POST", f"{API}/systems/{sid}/reviews", reviewer, json=vote), 201)
    before = last_seq(stack)
    second = {**vote, "comment": "再次同意"}
    again = call(stack, "POST", f"{API}/systems/{sid}/reviews", reviewer, json=second)
    assert (again.status_code, again.json()["error"]) == (409, "already_voted"), again.text
    (event,) = events(stack, "admin.", before)
    assert (event["kind"], event["body"]["reason"]) == ("admin.refused", "already_voted")
    assert event["body"]["details"] == {"permission": "review admission", "system_id": sid}
    assert "再次同意" not in str(event)  # never the body


def test_the_supervisor_s_event_query_lists_refused_acts(stack: Stack) -> None:
    grant_id = _own_request(stack)
    resp = api(stack, "POST", f"/grants/{grant_id}/approve", "ca_steward", **OWN_REQUEST)
    assert resp.status_code == 403, resp.text
    listed = api(stack, "GET", "/supervision/events", "supervisor", params={"kind": "admin.refused"})
    assert listed.status_code == 200, listed.text
    mine = [e for e in listed.json()["items"] if e["request_id"] == resp.json()["request_id"]]
    assert [(e["reason"], e["outcome"]) for e in mine] == [("separation_of_duties", "refused")]


def test_a_refused_act_the_log_cannot_take_is_answered_503(stack: Stack) -> None:
    grant_id = _own_request(stack)
    with stack.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse_refusals BEFORE INSERT ON audit_events WHEN NEW.kind = 'admin.refused' "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
    try:
        before = last_seq(stack)
        resp = api(stack, "POST", f"/grants/{grant_id}/approve", "ca_steward", **OWN_REQUEST)
        assert (resp.status_code, resp.json()["error"]) == (503, "audit_unavailable"), resp.text
    finally:
        with stack.engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER refuse_refusals")
    assert events(stack, "", before) == [] and _status(stack, grant_id) == "requested"
    # The log takes events again: the next refusal is answered and recorded as ever.
    resp = api(stack, "POST", f"/grants/{grant_id}/approve", "ca_steward", **OWN_REQUEST)
    assert resp.status_code == 403 and len(events(stack, "admin.refused", before)) == 1


def test_a_malformed_body_of_a_permitted_caller_is_answered_not_recorded(stack: Stack) -> None:
    """The chosen line: a body refused by validation before the act (422) is no act attempted."""
    grant_id = _own_request(stack)
    before = last_seq(stack)
    resp = api(stack, "POST", f"/grants/{grant_id}/reject", "ca_steward2", {"reason": ""})
    assert resp.status_code == 422, resp.text
    assert events(stack, "admin.refused", before) == []
