"""Administrative reads that show personal data are audit events; refused reads of a record are too.

A registration's ``contact`` (a person to call about the system: a name, a phone number) reached the
department's system admin and every reviewer with nothing on record. Each such read is now one
``admission.contact_read`` event (the system's id, never the contact), durable before the answer (503 if
the log cannot take it). A read of a system or grant by its id answered 404 (none such, or another
department's) is one ``admin.refused`` event, naming the record only when it exists. Reads that show no
personal data are not recorded.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway.test_admission_api import API, REVIEWER_OF, call, new_id, ok, registration
from tests.gateway.test_grants_api import VILLAGE_A, _request, api, events, last_seq, policy_files, user_id
from tests.stack import Stack, stack_fixture

CONTACT = "王建国 13812345678"
REVIEWER = REVIEWER_OF["big_data_centre"]
AS_REQUESTER = {"roles": ["data_steward", "county_officer"]}  # a steward who may request grants too


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = policy_files(tmp_path_factory.mktemp("admin-reads-policy"))
    yield from stack_fixture("sqlite", tmp_path_factory, extra_env=env)


@pytest.fixture(scope="module")
def system_id(stack: Stack) -> str:
    """A health department's system whose contact is a person's name and mobile number."""
    sid = new_id("reads")
    ok(call(stack, "POST", f"{API}/systems", "hb_sysadmin", json=registration(sid, contact=CONTACT)), 201)
    ok(call(stack, "POST", f"{API}/systems/{sid}/submit", "hb_sysadmin"))
    return sid


def _with_log_refusing(stack: Stack, kind: str) -> None:
    with stack.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse_reads BEFORE INSERT ON audit_events "
            f"WHEN NEW.kind = '{kind}' BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )


def _log_accepts_again(stack: Stack) -> None:
    with stack.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER refuse_reads")


@pytest.mark.parametrize("who", [REVIEWER, "hb_sysadmin"])
def test_a_read_showing_the_contact_is_one_event_without_it(stack: Stack, system_id: str, who: str) -> None:
    before = last_seq(stack)
    resp = call(stack, "GET", f"{API}/systems/{system_id}", who)
    assert ok(resp)["contact"] == CONTACT
    (event,) = events(stack, "", before)
    body = event["body"]
    assert (event["kind"], body["outcome"]) == ("admission.contact_read", "ok")
    assert body["actor"] == user_id(stack, who) and body["request_id"] == resp.headers["x-request-id"]
    assert body["details"] == {"system_id": system_id, "department": "health", "shown": ["contact"]}
    assert "13812345678" not in str(event) and "王建国" not in str(event)


def test_a_read_without_personal_data_writes_no_event(stack: Stack, system_id: str) -> None:
    before = last_seq(stack)
    view = ok(call(stack, "GET", f"{API}/systems/{system_id}", "supervisor"))
    assert "contact" not in view  # a supervisor is not shown the contact
    for path in ("", f"/{system_id}/progress", f"/{system_id}/reviews", f"/{system_id}/overlaps"):
        ok(call(stack, "GET", f"{API}/systems{path}", REVIEWER))
    grant_id = _request(stack, "ca_steward", "ELDERLY_VISIT", VILLAGE_A, **AS_REQUESTER)
    before_grants = last_seq(stack)
    assert api(stack, "GET", f"/grants/{grant_id}", "ca_steward2").status_code == 200
    assert api(stack, "GET", "/grants", "ca_steward2").status_code == 200
    assert events(stack, "", before_grants) == []
    assert [e["kind"] for e in events(stack, "", before)] == ["grant.requested"]


def test_a_contact_read_the_log_cannot_take_is_answered_503_without_the_contact(
    stack: Stack, system_id: str
) -> None:
    _with_log_refusing(stack, "admission.contact_read")
    try:
        before = last_seq(stack)
        resp = call(stack, "GET", f"{API}/systems/{system_id}", REVIEWER)
        assert (resp.status_code, resp.json()["error"]) == (503, "audit_unavailable"), resp.text
        assert "13812345678" not in resp.text
    finally:
        _log_accepts_again(stack)
    assert events(stack, "", before) == []


@pytest.mark.parametrize("path", ["", "/progress", "/reviews", "/overlaps"])
def test_another_department_s_system_is_answered_404_and_recorded(
    stack: Stack, system_id: str, path: str
) -> None:
    before = last_seq(stack)
    resp = call(stack, "GET", f"{API}/systems/{system_id}{path}", "ca_sysadmin")
    assert (resp.status_code, resp.json()["error"]) == (404, "system_not_found"), resp.text
    missing = call(stack, "GET", f"{API}/systems/no-such-system{path}", "ca_sysadmin")
    assert missing.json() == {**resp.json(), "request_id": missing.json()["request_id"]}  # no leak
    (probe, typo) = events(stack, "", before)
    assert (probe["kind"], probe["body"]["reason"]) == ("admin.refused", "system_not_found")
    assert probe["body"]["details"] == {"permission": "read admission", "system_id": system_id}
    assert probe["body"]["request_id"] == resp.json()["request_id"]
    assert typo["body"]["details"] == {"permission": "read admission"}  # what was typed is not recorded


def test_a_grant_out_of_reach_is_answered_404_and_recorded(stack: Stack) -> None:
    # Fewer fields than the request the test above leaves waiting: an identical one is refused (409).
    narrower = {"residents": ["id", "name"]}
    grant_id = _request(stack, "ca_steward", "ELDERLY_VISIT", VILLAGE_A, narrower, **AS_REQUESTER)
    before = last_seq(stack)
    resp = api(stack, "GET", f"/grants/{grant_id}", "ps_steward")
    assert (resp.status_code, resp.json()["error"]) == (404, "grant_not_found"), resp.text
    assert api(stack, "GET", "/grants/13812345678", "ps_steward").status_code == 404
    recorded = events(stack, "", before)
    assert [e["kind"] for e in recorded] == ["admin.refused"] * 2
    assert [e["body"]["details"] for e in recorded] == [
        {"permission": "read grants", "grant_id": grant_id},
        {"permission": "read grants"},
    ]
    assert "13812345678" not in str(recorded)


def test_a_refused_read_the_log_cannot_take_is_answered_503(stack: Stack, system_id: str) -> None:
    _with_log_refusing(stack, "admin.refused")
    try:
        resp = call(stack, "GET", f"{API}/systems/{system_id}", "ca_sysadmin")
        assert (resp.status_code, resp.json()["error"]) == (503, "audit_unavailable"), resp.text
    finally:
        _log_accepts_again(stack)
