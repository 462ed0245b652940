"""Admission registry through the real stack: registration -> joint review -> approval -> credentials ->
token -> first system call; blocking in every non-approved status (in every gateway process, within one
second, on the data path too); lapse by time; credential rotation; a client assertion accepted once across
two gateway processes; an outbound credential rotated through one process presented by the other;
separation of duties; the burden view on the demo world.

Systems created here use ids that no other module uses; the demo systems are restored after each test
that changes them.
"""

from __future__ import annotations

import json
import time
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import OKPKey

from demoworld.departmental import issue_gateway_credential, retire_old_gateway_credentials
from tests.stack import Stack

API = "/api/v1/admission"
REVIEWER_OF = {
    "district_government_office": "rv_gov_office",
    "government_services_office": "rv_services",
    "civil_affairs_bureau": "rv_civil_affairs",
    "science_technology_commission": "rv_science",
    "city_operations_centre": "rv_operations",
    "big_data_centre": "rv_big_data",
}
ANSWERED = {
    "duplicates_platform_function": False,
    "can_embed_in_platform": False,
    "forces_checkins": False,
    "forces_points_or_rankings": False,
    "offers_complaint_entry": True,
}
TOWNSHIP_A = "310151101000"
VILLAGE_A = "310151101201"
BLOCK_DEADLINE_S = 1.0
REPLAY_ATTEMPTS = 12


def call(stack: Stack, method: str, path: str, user: str | None = None, **kwargs: Any) -> httpx.Response:
    headers = dict(kwargs.pop("headers", {}))
    if user is not None:
        headers["Authorization"] = f"Bearer {stack.token(user)}"
    return httpx.request(method, stack.base_url + path, headers=headers, timeout=30.0, **kwargs)


def ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    return resp.json() if resp.content else None


def registration(system_id: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "system_id": system_id,
        "name": "家庭医生随访",
        "purpose": "家庭医生签约居民随访记录",
        "reaches": [TOWNSHIP_A],
        "reaches_villages": True,
        "collects_fields": ["residents.mobile", "health.blood_pressure"],
        "provides": [],
        "security_level": 2,
        "contact": "区卫健委信息科",
        "checklist": ANSWERED,
    }
    body.update(overrides)
    return body


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def approve_all(stack: Stack, system_id: str) -> dict[str, Any]:
    progress = ok(call(stack, "GET", f"{API}/systems/{system_id}/progress", "rv_gov_office"))
    last: dict[str, Any] = {}
    for office in progress["pending"]:
        last = ok(
            call(
                stack,
                "POST",
                f"{API}/systems/{system_id}/reviews",
                REVIEWER_OF[office["code"]],
                json={"vote": "approve", "comment": "同意"},
            ),
            201,
        )
    return last


def admit(stack: Stack, system_id: str, admin: str = "hb_sysadmin", **overrides: Any) -> dict[str, Any]:
    ok(call(stack, "POST", f"{API}/systems", admin, json=registration(system_id, **overrides)), 201)
    ok(call(stack, "POST", f"{API}/systems/{system_id}/submit", admin))
    return approve_all(stack, system_id)


def issue_secret(
    stack: Stack, system_id: str, admin: str = "hb_sysadmin", rotate: bool = False
) -> tuple[str, str]:
    params = {"rotate": "true"} if rotate else {}
    body = ok(
        call(stack, "POST", f"{API}/systems/{system_id}/credentials/client-secret", admin, params=params), 201
    )
    return body["client_id"], body["client_secret"]


def token_request(stack: Stack, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{stack.base_url}/oauth/token", timeout=30.0, **kwargs)


def system_token(stack: Stack, client_id: str, secret: str) -> str:
    resp = token_request(stack, data={"grant_type": "client_credentials"}, auth=(client_id, secret))
    body = ok(resp)
    assert body["token_type"] == "Bearer" and resp.headers["cache-control"] == "no-store"
    return str(body["access_token"])


def as_system(base_url: str, token: str, path: str = "/api/v1/systems/me") -> httpx.Response:
    return httpx.get(base_url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30.0)


def audit_kinds(stack: Stack, n: int = 400) -> list[tuple[str, dict[str, Any]]]:
    return [(e["kind"], json.loads(e["body"])) for e in stack.last_events(n)]


def reason(stack: Stack, system_id: str, action: str, user: str = "supervisor") -> dict[str, Any]:
    return dict(
        ok(call(stack, "POST", f"{API}/systems/{system_id}/{action}", user, json={"reason": "演示 / test"}))
    )


# ------------------------------------------------------------------------------- demo-world overlaps


def test_demo_world_has_an_approved_a_pending_and_a_rejected_system(stack: Stack) -> None:
    listed = ok(call(stack, "GET", f"{API}/systems", "supervisor"))["systems"]
    status = {s["system_id"]: s["status"] for s in listed}
    assert status["civil-affairs-registry"] == "approved"
    assert status["health-followup-app"] == "submitted"
    assert status["village-checkin-app"] == "rejected"
    reviews = ok(call(stack, "GET", f"{API}/systems/village-checkin-app/reviews", "rv_gov_office"))["votes"]
    assert any(v["vote"] == "reject" and "打卡" in v["comment"] for v in reviews)


def test_overlaps_of_the_pending_demo_system_are_the_residents_backflow(stack: Stack) -> None:
    body = ok(call(stack, "GET", f"{API}/systems/health-followup-app/overlaps", "rv_services"))
    overlaps = {o["field"]: o for o in body["overlaps"]}
    assert sorted(overlaps) == [
        "residents.address",
        "residents.id_number",
        "residents.mobile",
        "residents.name",
    ]
    for overlap in overlaps.values():
        assert overlap["in_backflow"] is True
        assert overlap["suggestion_en"] == "reuse or prefill instead of collecting again"
        assert "预填" in overlap["suggestion_zh"]
    assert body["new_fields"] == []
    # The civil-affairs registry collects nothing from villages: village A carries one system, no fields.
    burden = ok(call(stack, "GET", f"{API}/burden/villages/{VILLAGE_A}", "supervisor"))
    assert "civil-affairs-registry" in burden["systems"]


# ------------------------------------------------------------------------------------------ journey


def test_journey_registration_to_first_system_call(stack: Stack) -> None:
    sid = new_id("health-visits")
    # Registration by the department's system admin; the department comes from the token.
    created = ok(call(stack, "POST", f"{API}/systems", "hb_sysadmin", json=registration(sid)), 201)
    assert (created["status"], created["department"], created["filing_number"]) == ("draft", "health", None)
    assert created["field_mapping"]["residents.mobile"]["catalog_field"] == "residents.mobile"
    assert created["field_mapping"]["health.blood_pressure"] is None  # not catalogued: reviewers see it
    # Update while a draft; fields not sent are kept.
    updated = ok(call(stack, "PATCH", f"{API}/systems/{sid}", "hb_sysadmin", json={"security_level": 3}))
    assert updated["security_level"] == 3 and updated["purpose"] == created["purpose"]

    ok(call(stack, "POST", f"{API}/systems/{sid}/submit", "hb_sysadmin"))
    progress = ok(call(stack, "GET", f"{API}/systems/{sid}/progress", "rv_big_data"))
    assert len(progress["pending"]) == 6 and progress["signed"] == [] and progress["recused"] == []
    # Reviewers see the overlap with backflowed data before they approve.
    overlaps = ok(call(stack, "GET", f"{API}/systems/{sid}/overlaps", "rv_big_data"))
    assert [o["field"] for o in overlaps["overlaps"]] == ["residents.mobile"]
    assert overlaps["new_fields"] == ["health.blood_pressure"]

    # Blocked before approval: no credentials can be issued.
    early = call(stack, "POST", f"{API}/systems/{sid}/credentials/client-secret", "hb_sysadmin")
    assert early.status_code == 409 and early.json()["error"] == "credential_error"

    final = approve_all(stack, sid)
    assert final["outcome"] == "approved" and final["filing_number"].startswith("CJZR-")
    assert [o["code"] for o in final["pending"]] == [] and len(final["signed"]) == 6

    resp = call(stack, "POST", f"{API}/systems/{sid}/credentials/client-secret", "hb_sysadmin")
    issued = ok(resp, 201)
    assert resp.headers["cache-control"] == "no-store" and issued["client_secret"].startswith("gss_")
    shown = call(stack, "GET", f"{API}/systems/{sid}", "hb_sysadmin").text
    assert issued["client_secret"] not in shown and '"client_secret_issued":true' in shown.replace(" ", "")

    token = system_token(stack, issued["client_id"], issued["client_secret"])
    me = ok(as_system(stack.base_url, token))
    assert me["system_id"] == sid and me["status"] == "approved"
    assert me["filing_number"] == final["filing_number"]
    mine = ok(as_system(stack.base_url, token, "/api/v1/systems/me/burden"))
    assert VILLAGE_A in [v["village_code"] for v in mine["villages"]]
    assert all(v["village_code"].startswith("310151101") for v in mine["villages"])
    assert [o["field"] for o in mine["reuse_or_prefill"]] == ["residents.mobile"]

    # The system token is not a user token and vice versa.
    assert (
        call(stack, "GET", f"{API}/systems", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    )
    assert as_system(stack.base_url, stack.token("hb_sysadmin")).status_code == 401

    kinds = [k for k, body in audit_kinds(stack) if body.get("details", {}).get("system_id") == sid]
    for expected in (
        "admission.registered",
        "admission.updated",
        "admission.submitted",
        "admission.review_vote",
        "admission.approved",
        "admission.credential_issued",
    ):
        assert expected in kinds
    texts = [e["body"] for e in stack.last_events(200)]
    assert not any(issued["client_secret"] in t or token in t for t in texts)


def test_changes_requested_rejection_and_resubmission(stack: Stack) -> None:
    sid = new_id("resubmit")
    ok(call(stack, "POST", f"{API}/systems", "hb_sysadmin", json=registration(sid)), 201)
    ok(call(stack, "POST", f"{API}/systems/{sid}/submit", "hb_sysadmin"))
    # Editing while under review is refused.
    assert call(stack, "PATCH", f"{API}/systems/{sid}", "hb_sysadmin", json={"name": "x"}).status_code == 409
    ok(call(stack, "POST", f"{API}/systems/{sid}/reviews", "rv_gov_office", json={"vote": "approve"}), 201)
    asked = ok(
        call(
            stack,
            "POST",
            f"{API}/systems/{sid}/reviews",
            "rv_science",
            json={"vote": "request_changes", "comment": "手机号请用回流数据预填"},
        ),
        201,
    )
    assert asked["status"] == "changes_requested" and asked["reasons"] == ["手机号请用回流数据预填"]
    ok(call(stack, "PATCH", f"{API}/systems/{sid}", "hb_sysadmin", json={"collects_fields": ["health.bp"]}))
    ok(call(stack, "POST", f"{API}/systems/{sid}/submit", "hb_sysadmin"))
    no_reason = call(stack, "POST", f"{API}/systems/{sid}/reviews", "rv_operations", json={"vote": "reject"})
    assert no_reason.status_code == 422 and no_reason.json()["error"] == "reason_required"
    assert (
        "须写明理由（--comment）" in no_reason.json()["message"]
        and "--comment" in no_reason.json()["message_en"]
    )
    rejected = ok(
        call(
            stack,
            "POST",
            f"{API}/systems/{sid}/reviews",
            "rv_operations",
            json={"vote": "reject", "comment": "与社区云功能重复"},
        ),
        201,
    )
    assert rejected["status"] == "rejected" and rejected["reasons"] == ["与社区云功能重复"]
    # Resubmission after a rejection opens a new round with nobody signed yet.
    again = ok(call(stack, "POST", f"{API}/systems/{sid}/submit", "hb_sysadmin"))
    assert again["status"] == "submitted" and again["round"] == 3 and again["signed"] == []
    ok(call(stack, "POST", f"{API}/systems/{sid}/withdraw", "hb_sysadmin"))
    assert ok(call(stack, "GET", f"{API}/systems/{sid}", "hb_sysadmin"))["status"] == "draft"


# ---------------------------------------------------------------------------------- separation of duties


@pytest.fixture(scope="module")
def ca_system_under_review(stack: Stack) -> str:
    sid = new_id("ca-visits")
    ok(call(stack, "POST", f"{API}/systems", "ca_sysadmin", json=registration(sid)), 201)
    ok(call(stack, "POST", f"{API}/systems/{sid}/submit", "ca_sysadmin"))
    return sid


SEPARATION_CASES: list[tuple[str, str, str, str, dict[str, Any] | None, int, str]] = [
    # (case, user, method, path, body, expected status, expected error)
    (
        "register for another department",
        "hb_sysadmin",
        "POST",
        "/systems",
        {"department": "civil_affairs"},
        403,
        "separation_of_duties",
    ),
    (
        "edit another department's system",
        "hb_sysadmin",
        "PATCH",
        "/systems/{ca}",
        {"name": "x"},
        404,
        "system_not_found",
    ),
    (
        "withdraw another department's system",
        "hb_sysadmin",
        "POST",
        "/systems/{ca}/withdraw",
        None,
        404,
        "system_not_found",
    ),
    (
        "read another department's system",
        "hb_sysadmin",
        "GET",
        "/systems/{ca}",
        None,
        404,
        "system_not_found",
    ),
    (
        "reviewer of the applying department",
        "rv_civil_affairs",
        "POST",
        "/systems/{ca}/reviews",
        {"vote": "approve"},
        403,
        "separation_of_duties",
    ),
    (
        "vote for another office",
        "rv_gov_office",
        "POST",
        "/systems/{ca}/reviews",
        {"vote": "approve", "office": "big_data_centre"},
        403,
        "separation_of_duties",
    ),
    (
        "system admin reviews",
        "ca_sysadmin",
        "POST",
        "/systems/{ca}/reviews",
        {"vote": "approve"},
        403,
        "no_permission",
    ),
    (
        "reviewer suspends",
        "rv_big_data",
        "POST",
        "/systems/civil-affairs-registry/suspend",
        {"reason": "x"},
        403,
        "no_permission",
    ),
    (
        "system admin suspends",
        "ca_sysadmin",
        "POST",
        "/systems/civil-affairs-registry/suspend",
        {"reason": "x"},
        403,
        "no_permission",
    ),
    ("supervisor registers", "supervisor", "POST", "/systems", {}, 403, "no_permission"),
    ("village cadre reads the registry", "cadre_a", "GET", "/systems", None, 403, "no_permission"),
    (
        "reviewer issues credentials",
        "rv_gov_office",
        "POST",
        "/systems/civil-affairs-registry/credentials/client-secret",
        None,
        403,
        "no_permission",
    ),
    ("reviewer runs the lapse job", "rv_gov_office", "POST", "/lapse-due", None, 403, "no_permission"),
]


@pytest.mark.parametrize(
    ("case", "user", "method", "path", "body", "status", "error"),
    SEPARATION_CASES,
    ids=[c[0] for c in SEPARATION_CASES],
)
def test_separation_of_duties(
    stack: Stack,
    ca_system_under_review: str,
    case: str,
    user: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
    error: str,
) -> None:
    payload = None
    if body is not None:
        payload = registration(new_id("sod"), **body) if path == "/systems" and method == "POST" else body
    resp = call(stack, method, API + path.format(ca=ca_system_under_review), user, json=payload)
    assert (resp.status_code, resp.json()["error"]) == (status, error), case
    assert resp.json()["message"] and resp.json()["message_en"]


@pytest.mark.parametrize(
    ("action", "named_zh", "named_en"),
    [
        ("suspend", "暂停部门系统的准入", "suspend a departmental system's admission"),
        ("reinstate", "恢复部门系统的准入", "reinstate a departmental system's admission"),
        ("revoke", "撤销部门系统的准入", "revoke a departmental system's admission"),
    ],
)
def test_a_refused_supervisory_act_is_named_as_asked_not_as_its_permission(
    stack: Stack, action: str, named_zh: str, named_en: str
) -> None:
    """One permission ("revoke admission") governs suspend, reinstate and revoke; a system admin refused a
    reinstatement must read that reinstating was refused, Chinese first, not that revoking was."""
    path = f"{API}/systems/civil-affairs-registry/{action}"
    resp = call(stack, "POST", path, "ca_sysadmin", json={"reason": "核查"})
    assert (resp.status_code, resp.json()["error"]) == (403, "no_permission")
    assert resp.json()["message"] == f"您的岗位无权{named_zh}。"
    assert resp.json()["message_en"].startswith(f"Your role may not {named_en} ")
    if action != "revoke":
        assert "撤销" not in resp.json()["message"]
        assert not resp.json()["message_en"].startswith("Your role may not revoke")


def test_lists_and_views_name_the_department_beside_its_code(stack: Stack) -> None:
    """A reviewer reading the list saw ``"department": "civil_affairs"`` where she looks for 区民政局: each
    list, view and reminder now names the department (Chinese) beside the code machines match on."""
    listed = {s["system_id"]: s for s in ok(call(stack, "GET", f"{API}/systems", "rv_gov_office"))["systems"]}
    named = {
        sid: (s["department"], s["department_name_zh"])
        for sid, s in listed.items()
        if sid in ("civil-affairs-registry", "person-house-registry", "health-followup-app")
    }
    assert named == {
        "civil-affairs-registry": ("civil_affairs", "区民政局"),
        "person-house-registry": ("public_security", "区公安分局"),
        "health-followup-app": ("health", "区卫健委"),
    }
    shown = ok(call(stack, "GET", f"{API}/systems/civil-affairs-registry", "rv_gov_office"))
    assert list(shown)[list(shown).index("department") + 1] == "department_name_zh"
    assert shown["department_name_zh"] == "区民政局"
    cli = stack.cli("admission", "list", "--as", "rv_gov_office", "--url", stack.base_url)
    assert '"department_name_zh": "区民政局"' in cli.stdout


def test_system_admin_lists_only_their_department(stack: Stack, ca_system_under_review: str) -> None:
    health = ok(call(stack, "GET", f"{API}/systems", "hb_sysadmin"))["systems"]
    assert health and {s["department"] for s in health} == {"health"}
    everything = {
        s["system_id"] for s in ok(call(stack, "GET", f"{API}/systems", "rv_gov_office"))["systems"]
    }
    assert ca_system_under_review in everything and "health-followup-app" in everything
    progress = ok(call(stack, "GET", f"{API}/systems/{ca_system_under_review}/progress", "rv_gov_office"))
    assert [o["code"] for o in progress["recused"]] == ["civil_affairs_bureau"]
    assert "civil_affairs_bureau" not in [o["code"] for o in progress["pending"]]


@pytest.mark.parametrize(
    ("overrides", "code", "kind"),
    [
        ({"purpose": "联系户主张三，电话13812345678"}, "personal_data_in_purpose", "mobile"),
        ({"name": "随访 110105194912310021"}, "personal_data_in_name", "id_number"),
        (
            {"checklist": {**ANSWERED, "notes": "投诉找 139 1234 5678"}},
            "personal_data_in_checklist_notes",
            "mobile",
        ),
    ],
)
def test_personal_data_in_a_registration_is_refused(
    stack: Stack, overrides: dict[str, Any], code: str, kind: str
) -> None:
    """Every reviewing office reads the registry; a draft with a resident's number in it is not kept."""
    sid = f"pii-{uuid.uuid4().hex[:8]}"
    resp = call(stack, "POST", f"{API}/systems", "hb_sysadmin", json=registration(sid, **overrides))
    assert resp.status_code == 422 and resp.json()["error"] == code, resp.text
    assert resp.json()["personal_data_kind"] == kind
    for secret in ("13812345678", "110105194912310021", "1234 5678"):
        assert secret not in resp.text
    assert call(stack, "GET", f"{API}/systems/{sid}", "hb_sysadmin").status_code == 404
    ok(call(stack, "POST", f"{API}/systems", "hb_sysadmin", json=registration(sid)), 201)
    edit = call(stack, "PATCH", f"{API}/systems/{sid}", "hb_sysadmin", json=overrides)
    assert edit.status_code == 422 and edit.json()["error"] == code, edit.text


def test_a_registration_key_no_registration_has_is_refused_not_dropped(stack: Stack) -> None:
    """A misspelt key (``colects``) used to be dropped: the system was registered without what it collects.
    The registration's own view, sent back whole, still passes (its status fields are ignored)."""
    sid = new_id("typo")
    body = registration(sid)
    body["colects"] = body.pop("collects_fields")
    resp = call(stack, "POST", f"{API}/systems", "hb_sysadmin", json=body)
    assert (resp.status_code, resp.json()["error"]) == (422, "invalid_registration"), resp.text
    assert resp.json()["message"].startswith("登记内容含有无法识别的项；可填写的项是 system_id、department、")
    assert "colects" not in resp.text
    assert call(stack, "GET", f"{API}/systems/{sid}", "hb_sysadmin").status_code == 404
    created = ok(call(stack, "POST", f"{API}/systems", "hb_sysadmin", json=registration(sid)), 201)
    edit = call(stack, "PATCH", f"{API}/systems/{sid}", "hb_sysadmin", json={"securty_level": 3})
    assert (edit.status_code, edit.json()["error"]) == (422, "invalid_registration"), edit.text
    resent = ok(
        call(stack, "PATCH", f"{API}/systems/{sid}", "hb_sysadmin", json={**created, "status": "approved"})
    )
    assert resent["status"] == "draft"


@pytest.mark.parametrize(
    ("user", "act", "body"),
    [
        ("rv_big_data", "reviews", {"vote": "approve"}),
        ("supervisor", "suspend", {"reason": "核查"}),
        ("supervisor", "revoke", {"reason": "核查"}),
    ],
)
def test_an_unknown_system_id_is_not_echoed_back(
    stack: Stack, user: str, act: str, body: dict[str, Any]
) -> None:
    """The id comes from the link, which may carry anything (a phone number pasted in the wrong place):
    voting, suspending or revoking an unknown one answered 准入登记册中没有系统 <what was typed>."""
    typed = "sys-13812345678"
    resp = call(stack, "POST", f"{API}/systems/{typed}/{act}", user, json=body)
    assert (resp.status_code, resp.json()["error"]) == (404, "system_not_found")
    assert typed not in resp.text and "admission list" in resp.json()["message"]


@pytest.mark.parametrize(
    ("user", "method", "act"),
    [
        ("hb_sysadmin", "GET", ""),
        ("hb_sysadmin", "POST", "/submit"),
        ("hb_sysadmin", "POST", "/recertify"),
        ("rv_big_data", "GET", "/progress"),
    ],
)
def test_an_id_that_cannot_be_a_system_id_is_said_to_be_one(
    stack: Stack, user: str, method: str, act: str
) -> None:
    """Elderly-Care-Visits or elderly_care_visits was answered only "no such system; check the id": the
    admin compared it letter by letter with the one she registered. An id no system can have now says what
    a system id looks like (no system has it, so nothing about anyone's systems is told); a well-formed
    unknown id is answered as before."""
    for typed, hinted in (("Health-Visits-X", True), ("health_visits_x", True), ("health-visits-x", False)):
        resp = call(stack, method, f"{API}/systems/{typed}{act}", user)
        assert (resp.status_code, resp.json()["error"]) == (404, "system_not_found"), resp.text
        assert ("系统标识只由小写字母、数字和连字符组成" in resp.json()["message"]) is hinted
        assert ("lowercase letters, digits and hyphens" in resp.json()["message_en"]) is hinted
        assert typed not in resp.text


def test_a_withdrawn_registration_shows_no_office_as_signed(stack: Stack) -> None:
    sid = new_id("hb-withdrawn")
    ok(call(stack, "POST", f"{API}/systems", "hb_sysadmin", json=registration(sid)), 201)
    ok(call(stack, "POST", f"{API}/systems/{sid}/submit", "hb_sysadmin"))
    ok(call(stack, "POST", f"{API}/systems/{sid}/reviews", "rv_big_data", json={"vote": "approve"}), 201)
    withdrawn = ok(call(stack, "POST", f"{API}/systems/{sid}/withdraw", "hb_sysadmin"))
    assert withdrawn["signed"] == [] and len(withdrawn["pending"]) == 6
    assert withdrawn["note_zh"] == (
        "第 1 轮联审已结束（草稿），其中的表决只作记录；重新提交联审后将开启新一轮，各单位须重新表决。"
    )


def test_the_checklist_is_answered_question_by_question(stack: Stack) -> None:
    """``admission update --checklist forces_checkins=no`` replaced the whole checklist: the answers given
    before were erased, and submit refused them as unanswered."""
    sid = new_id("hb-checklist")
    first = {k: v for k, v in ANSWERED.items() if k != "forces_checkins"}
    ok(call(stack, "POST", f"{API}/systems", "hb_sysadmin", json=registration(sid, checklist=first)), 201)
    patched = ok(
        call(
            stack,
            "PATCH",
            f"{API}/systems/{sid}",
            "hb_sysadmin",
            json={"checklist": {"forces_checkins": False}},
        )
    )
    assert patched["checklist"] == {**ANSWERED, "notes": ""}
    assert ok(call(stack, "POST", f"{API}/systems/{sid}/submit", "hb_sysadmin"))["status"] == "submitted"


def test_a_registration_with_items_left_out_names_them_all(stack: Stack) -> None:
    body = {"system_id": new_id("hb-missing"), "name": "测试系统"}
    resp = call(stack, "POST", f"{API}/systems", "hb_sysadmin", json=body)
    assert (resp.status_code, resp.json()["error"]) == (422, "invalid_registration")
    assert resp.json()["message"].startswith("登记内容缺少 4 项必填内容：建设目的（purpose）、")
    assert "contact" in resp.json()["message_en"]


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_registration_nested_too_deeply_is_refused_not_a_server_error(stack: Stack, method: str) -> None:
    """Valid JSON nested past the parser's recursion limit (``{"a":{"a":...}}``, a few KB) used to answer
    500 internal_error: it is a body the registration cannot be read from, 422 naming the body."""
    sid = new_id("deep")
    if method == "PATCH":
        ok(call(stack, "POST", f"{API}/systems", "hb_sysadmin", json=registration(sid)), 201)
    path = f"{API}/systems" if method == "POST" else f"{API}/systems/{sid}"
    deep = b'{"name":' * 5000 + b"1" + b"}" * 5000
    resp = call(
        stack, method, path, "hb_sysadmin", content=deep, headers={"Content-Type": "application/json"}
    )
    assert (resp.status_code, resp.json()["error"]) == (422, "invalid_request"), resp.text
    assert "嵌套层数过多" in resp.json()["message"] and resp.json()["fields"] == ["body"]


def test_a_registration_reaches_only_inside_the_departments_jurisdiction(stack: Stack) -> None:
    sid = new_id("far")
    resp = call(stack, "POST", f"{API}/systems", "hb_sysadmin", json=registration(sid, reaches=["999999"]))
    assert (resp.status_code, resp.json()["error"]) == (422, "reaches_outside_jurisdiction"), resp.text
    # Division codes are not personal data: the answer names the one to correct (in its 12-digit form).
    body = resp.json()
    assert "辖区" in body["message"] and "999999000000" in body["message"]
    assert "999999000000" in body["message_en"] and "1 of them is outside it" in body["message_en"]
    assert body["outside"] == ["999999000000"]
    assert call(stack, "GET", f"{API}/systems/{sid}", "hb_sysadmin").status_code == 404
    ok(call(stack, "POST", f"{API}/systems", "hb_sysadmin", json=registration(sid)), 201)
    edit = call(stack, "PATCH", f"{API}/systems/{sid}", "hb_sysadmin", json={"reaches": ["440000"]})
    assert (edit.status_code, edit.json()["error"]) == (422, "reaches_outside_jurisdiction")


def test_codes_outside_the_jurisdiction_are_named_up_to_five(stack: Stack) -> None:
    far = [f"4{n}0000" for n in range(1, 8)]  # seven codes of other provinces
    resp = call(stack, "POST", f"{API}/systems", "hb_sysadmin", json=registration(new_id("far"), reaches=far))
    body = resp.json()
    assert (resp.status_code, body["error"]) == (422, "reaches_outside_jurisdiction"), resp.text
    named = [f"{c}000000" for c in far]
    assert all(c in body["message"] for c in named[:5]) and not any(c in resp.text for c in named[5:])
    assert "有 7 个不在辖区内" in body["message"] and "7 of them are outside it" in body["message_en"]
    assert body["outside"] == named[:5]


def test_field_mapping_levels_are_integers_as_in_the_catalog(stack: Stack) -> None:
    created = ok(call(stack, "POST", f"{API}/systems", "hb_sysadmin", json=registration(new_id("lvl"))), 201)
    catalog = ok(call(stack, "GET", "/api/v1/masking/catalog", "supervisor", params={"dataset": "residents"}))
    level = created["field_mapping"]["residents.mobile"]["level"]
    assert level == 3 and type(level) is int
    assert level == catalog["datasets"]["residents"]["fields"]["mobile"]["level"]
    shown = ok(call(stack, "GET", f"{API}/systems/{created['system_id']}", "hb_sysadmin"))
    assert shown["field_mapping"]["residents.mobile"]["level"] == 3


def test_a_misspelt_catalogued_field_is_refused_with_the_fields_the_dataset_has(stack: Stack) -> None:
    """``--collects residents.nmae`` was refused with "use the field names the data catalog lists" and no
    list: the department had to find the catalog. Now the dataset's catalogued fields are named (never
    what was typed)."""
    typo = registration(new_id("typo"), collects_fields=["residents.nmae"])
    resp = call(stack, "POST", f"{API}/systems", "hb_sysadmin", json=typo)
    body = resp.json()
    assert (resp.status_code, body["error"]) == (422, "invalid_registration"), resp.text
    catalog = ok(call(stack, "GET", "/api/v1/masking/catalog", "supervisor", params={"dataset": "residents"}))
    fields = sorted(catalog["datasets"]["residents"]["fields"])
    assert body["catalog_fields"] == fields and body["dataset"] == "residents"
    assert "、".join(fields) in body["message"] and ", ".join(fields) in body["message_en"]
    assert "residents.字段名" in body["message"] and "nmae" not in resp.text


def test_a_registration_cannot_take_over_a_catalogued_dataset(stack: Stack) -> None:
    hijack = registration(
        new_id("hijack"), provides=[{"dataset": "residents", "base_url": "http://127.0.0.1:9/", "fields": []}]
    )
    resp = call(stack, "POST", f"{API}/systems", "hb_sysadmin", json=hijack)
    assert (resp.status_code, resp.json()["error"]) == (403, "dataset_provider_mismatch")


def test_the_cli_declares_a_record_id_lookup_as_the_api_does(stack: Stack, tmp_path: Path) -> None:
    """``admission register --lookup DATASET`` lists ``<collection>/lookup`` among the dataset's endpoints,
    as the registration payload (and the demo seed) does: the gateway then asks that system when a
    complaint is registered (README "The departmental-system contract")."""
    sid = new_id("lookup")
    base = registration(sid)
    # A dataset declared in the file with its own collection path; another given on the command line.
    base["provides"] = [
        {"dataset": "followups", "base_url": "http://127.0.0.1:9/", "endpoints": ["/api/v2/fu"]}
    ]
    file = tmp_path / "registration.json"
    file.write_text(json.dumps(base, ensure_ascii=False), encoding="utf-8")
    url = ["--url", stack.base_url, "--as", "hb_sysadmin"]
    made = stack.cli(
        "admission", "register", *url, "--file", str(file), "--lookup", "followups"
    )  # fmt: skip
    assert json.loads(made.stdout)["provides"][0]["endpoints"] == ["/api/v2/fu", "/api/v2/fu/lookup"]
    stack.cli(
        "admission", "update", sid, *url,
        "--provides", "visits=http://127.0.0.1:9/", "--provides", "plans=http://127.0.0.1:9/",
        "--lookup", "visits",
    )  # fmt: skip
    shown = ok(call(stack, "GET", f"{API}/systems/{sid}", "hb_sysadmin"))
    endpoints = {p["dataset"]: p["endpoints"] for p in shown["provides"]}
    assert endpoints == {"visits": ["/visits", "/visits/lookup"], "plans": []}

    # A lookup for a dataset the registration does not provide: refused before any call, Chinese first.
    before = ok(call(stack, "GET", f"{API}/systems/{sid}", "hb_sysadmin"))
    wrong = stack.cli(
        "admission", "update", sid, *url, "--provides", "visits=http://127.0.0.1:9/", "--lookup", "plans",
        check=False,
    )  # fmt: skip
    assert wrong.returncode == 2
    zh, en = wrong.stderr.strip().splitlines()[:2]
    assert zh.startswith("--lookup plans：登记中没有提供此数据集") and en.startswith("--lookup plans: the")
    assert ok(call(stack, "GET", f"{API}/systems/{sid}", "hb_sysadmin")) == before


# ------------------------------------------------------------------------------------------ blocking


@pytest.fixture(scope="module")
def second_gateway(stack: Stack) -> Iterator[str]:
    """Another gateway process on the same database: a block must reach it within one second too."""
    with stack.another_gateway(GRASSROOTS_PUBLIC_URL=stack.base_url) as url:
        yield url


def _until(check: Any, deadline_s: float) -> tuple[bool, float]:
    """Poll ``check`` until it holds or the deadline passes; (held, seconds taken)."""
    started = time.monotonic()
    while True:
        if check():
            return True, time.monotonic() - started
        if time.monotonic() - started > deadline_s:
            return False, time.monotonic() - started
        time.sleep(0.05)


def _data_status(stack: Stack, base_url: str) -> tuple[int, str | None]:
    resp = httpx.get(
        f"{base_url}/api/v1/datasets/residents/records",
        params={"scenario": "DIBAO_REVIEW", "page_size": 1},
        headers={"Authorization": f"Bearer {stack.token('cadre_a')}"},
        timeout=30.0,
    )
    return resp.status_code, resp.json().get("error") if resp.status_code != 200 else None


issue_pair_cache: dict[str, tuple[str, str]] = {}


def _fresh_system_with_token(stack: Stack) -> tuple[str, str]:
    sid = new_id("blocked")
    admit(stack, sid)
    pair = issue_secret(stack, sid)
    issue_pair_cache[sid] = pair
    return sid, system_token(stack, *pair)


def test_suspension_blocks_every_process_within_one_second(stack: Stack, second_gateway: str) -> None:
    sid, token = _fresh_system_with_token(stack)
    gateways = [stack.base_url, second_gateway]
    for base in gateways:
        assert as_system(base, token).status_code == 200
        assert _data_status(stack, base) == (200, None)

    reason(stack, sid, "suspend")
    reason(stack, "civil-affairs-registry", "suspend")
    try:
        for base in gateways:
            held, _ = _until(lambda b=base: as_system(b, token).status_code == 403, BLOCK_DEADLINE_S)
            assert held, f"system call not blocked within {BLOCK_DEADLINE_S}s at {base}"
            body = as_system(base, token).json()
            assert (body["error"], body["system"]) == ("system_suspended", sid) and sid in body["message"]
            held, _ = _until(
                lambda b=base: _data_status(stack, b) == (403, "system_suspended"), BLOCK_DEADLINE_S
            )
            assert held, f"data path not blocked within {BLOCK_DEADLINE_S}s at {base}"
        refused = token_request(stack, data={"grant_type": "client_credentials"}, auth=issue_pair_cache[sid])
        assert (refused.status_code, refused.json()["error"]) == (400, "unauthorized_client")
        assert refused.json()["admission_status"] == "system_suspended"
    finally:
        reason(stack, sid, "reinstate")
        reason(stack, "civil-affairs-registry", "reinstate")
    for base in gateways:
        assert _until(lambda b=base: as_system(b, token).status_code == 200, BLOCK_DEADLINE_S)[0]
        assert _until(lambda b=base: _data_status(stack, b) == (200, None), BLOCK_DEADLINE_S)[0]
    events = [k for k, b in audit_kinds(stack) if b.get("details", {}).get("system_id") == sid]
    assert "admission.suspended" in events and "admission.reinstated" in events


def _last_token_event(stack: Stack) -> tuple[str, str]:
    """(actor, reason) of the newest system.token audit event."""
    event = next(e for e in reversed(stack.last_events(50)) if e["kind"] == "system.token")
    return str(event["actor"]), str(json.loads(event["body"])["reason"])


def test_a_token_refused_for_the_systems_status_is_logged_under_the_system(stack: Stack) -> None:
    """A client that proved who it is (right secret) but is refused for its admission status is named in
    the audit log; one that did not authenticate stays anonymous (its claimed id proves nothing)."""
    sid = new_id("refused-token")
    admit(stack, sid)
    client_id, secret = issue_secret(stack, sid)
    reason(stack, sid, "suspend")
    try:
        refused = token_request(stack, data={"grant_type": "client_credentials"}, auth=(client_id, secret))
        assert (refused.status_code, refused.json()["error"]) == (400, "unauthorized_client")
        assert _last_token_event(stack) == (f"system:{sid}", "unauthorized_client")
        wrong = token_request(stack, data={"grant_type": "client_credentials"}, auth=(client_id, "gss_wrong"))
        assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
        assert _last_token_event(stack) == ("anonymous", "invalid_client")
    finally:
        reason(stack, sid, "reinstate")
    system_token(stack, client_id, secret)
    assert _last_token_event(stack) == (f"system:{sid}", "issued")


def _assert_blocked(stack: Stack, token: str, sid: str, code: str) -> None:
    for path in ("/api/v1/systems/me", "/api/v1/systems/me/burden"):
        resp = as_system(stack.base_url, token, path)
        body = resp.json()
        assert (resp.status_code, body["error"], body["system"]) == (403, code, sid), path
        assert sid in body["message"] and sid in body["message_en"]


def test_blocked_in_every_non_approved_status(stack: Stack) -> None:
    sid, token = _fresh_system_with_token(stack)
    steps: list[tuple[str, str, Any]] = [
        # (status reached, expected error code, how)
        ("suspended", "system_suspended", lambda: reason(stack, sid, "suspend")),
        ("approved", "", lambda: reason(stack, sid, "reinstate")),
        ("approved", "", lambda: ok(call(stack, "POST", f"{API}/systems/{sid}/recertify", "hb_sysadmin"))),
        (
            "changes_requested",
            "system_not_approved",
            lambda: call(
                stack,
                "POST",
                f"{API}/systems/{sid}/reviews",
                "rv_gov_office",
                json={"vote": "request_changes", "comment": "补充材料"},
            ),
        ),
        (
            "submitted",
            "system_not_approved",
            lambda: call(stack, "POST", f"{API}/systems/{sid}/submit", "hb_sysadmin"),
        ),
        (
            "rejected",
            "system_not_approved",
            lambda: call(
                stack,
                "POST",
                f"{API}/systems/{sid}/reviews",
                "rv_gov_office",
                json={"vote": "reject", "comment": "否"},
            ),
        ),
        (
            "draft",
            "system_not_approved",
            lambda: call(stack, "POST", f"{API}/systems/{sid}/revise", "hb_sysadmin"),
        ),
        (
            "submitted",
            "system_not_approved",
            lambda: call(stack, "POST", f"{API}/systems/{sid}/submit", "hb_sysadmin"),
        ),
        ("approved", "", lambda: approve_all(stack, sid)),
        ("revoked", "system_revoked", lambda: reason(stack, sid, "revoke")),
    ]
    for status, code, step in steps:
        step()
        assert ok(call(stack, "GET", f"{API}/systems/{sid}", "supervisor"))["status"] == status
        if not code:
            assert as_system(stack.base_url, token).status_code == 200, status
            continue
        _assert_blocked(stack, token, sid, code)
        refused = token_request(stack, data={"grant_type": "client_credentials"}, auth=issue_pair_cache[sid])
        # Revocation deletes the credentials; any other block refuses the approved-only grant.
        expected = "invalid_client" if status == "revoked" else "unauthorized_client"
        assert refused.json()["error"] == expected, status


def test_a_never_approved_system_is_blocked_even_with_a_valid_signature(stack: Stack) -> None:
    """A token signed with the gateway's own key for the pending demo system: the live status says no."""
    from admission import SystemTokenIssuer
    from gateway.upstream import load_or_create_ed25519

    key = load_or_create_ed25519(stack.data_dir / "keys" / "system-token-ed25519.pem")
    forged = SystemTokenIssuer(key, stack.base_url).issue(
        client_id="gsc_none", system_id="health-followup-app", credential="s:none"
    )
    _assert_blocked(stack, forged.access_token, "health-followup-app", "system_not_approved")


def set_approved_until(stack: Stack, sid: str, ends: datetime) -> None:
    """As if the approval had been granted earlier: it ends at ``ends`` (every process sees it in a poll)."""
    with stack.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE admission_systems SET approved_until = :t WHERE system_id = :s"),
            {"t": ends, "s": sid},
        )
        conn.execute(sa.text("UPDATE admission_registry_version SET version = version + 1"))


#: Who must act on a lapsing health system: its department, named beside its code.
RECERTIFY_HEALTH = {
    "role": "system_admin",
    "department": "health",
    "department_name_zh": "区卫健委",
    "action": "recertify",
}


def test_lapse_by_time_then_recertification(stack: Stack) -> None:
    sid, token = _fresh_system_with_token(stack)
    # As if the approval had been granted a year ago: it ends two seconds from now.
    ends = datetime.now(UTC) + timedelta(seconds=2)
    set_approved_until(stack, sid, ends)
    reminders = ok(call(stack, "GET", f"{API}/reminders", "hb_sysadmin"))["reminders"]
    mine = next(r for r in reminders if r["system_id"] == sid)
    assert mine["threshold_days"] == 7 and mine["must_act"] == [RECERTIFY_HEALTH]
    # Lapse by time alone: no status change is needed for routing to refuse.
    held, _ = _until(lambda: as_system(stack.base_url, token).status_code == 403, 10.0)
    assert held
    _assert_blocked(stack, token, sid, "system_lapsed")

    lapsed = stack.cli("admission", "lapse-due", "--as", "supervisor", "--url", stack.base_url)
    assert sid in json.loads(lapsed.stdout)["lapsed"]
    assert ok(call(stack, "GET", f"{API}/systems/{sid}", "supervisor"))["status"] == "lapsed"
    _assert_blocked(stack, token, sid, "system_lapsed")
    # The blocked system is the most urgent reminder, with who must act.
    reminders = ok(call(stack, "GET", f"{API}/reminders", "hb_sysadmin"))["reminders"]
    mine = next(r for r in reminders if r["system_id"] == sid)
    assert (mine["lapsed"], mine["threshold_days"]) == (True, 0)
    assert mine["must_act"] == [RECERTIFY_HEALTH]
    assert "已被阻断" in mine["message_zh"] and "blocked" in mine["message_en"]

    reopened = ok(call(stack, "POST", f"{API}/systems/{sid}/recertify", "hb_sysadmin"))
    assert reopened["status"] == "submitted" and reopened["renewal"] is False
    _assert_blocked(stack, token, sid, "system_not_approved")
    final = approve_all(stack, sid)
    assert final["outcome"] == "approved"
    assert datetime.fromisoformat(final["approved_until"]) > datetime.now(UTC) + timedelta(days=300)
    assert as_system(stack.base_url, token).status_code == 200
    kinds = [k for k, b in audit_kinds(stack) if b.get("details", {}).get("system_id") == sid]
    assert "admission.lapsed" in kinds and "admission.recertification_opened" in kinds


def test_an_approval_ending_mid_renewal_keeps_its_round(stack: Stack) -> None:
    """Recertified in time, the approval ended before every office had voted: the reminder told the
    department to apply for the re-review it had already opened, and the lapse job closed the round, so
    the offices that had signed had to sign again. Now the reminder names the round under way, the job
    answers the system under ``review_continues``, and the last office's vote approves it."""
    sid, token = _fresh_system_with_token(stack)
    ok(call(stack, "POST", f"{API}/systems/{sid}/recertify", "hb_sysadmin"))
    ok(call(stack, "POST", f"{API}/systems/{sid}/reviews", "rv_gov_office", json={"vote": "approve"}), 201)
    set_approved_until(stack, sid, datetime.now(UTC) - timedelta(seconds=1))
    reminders = ok(call(stack, "GET", f"{API}/reminders", "hb_sysadmin"))["reminders"]
    mine = next(r for r in reminders if r["system_id"] == sid)
    assert mine["lapsed"] is True and {a["action"] for a in mine["must_act"]} == {"review"}
    assert "重新审核已在进行中" in mine["message_zh"] and "请尽快申请" not in mine["message_zh"]
    assert "under way" in mine["message_en"]

    lapsed = json.loads(
        stack.cli("admission", "lapse-due", "--as", "supervisor", "--url", stack.base_url).stdout
    )
    assert sid in lapsed["lapsed"] and sid in lapsed["review_continues"]
    progress = ok(call(stack, "GET", f"{API}/systems/{sid}/progress", "hb_sysadmin"))
    assert progress["status"] == "submitted"
    assert [o["code"] for o in progress["signed"]] == ["district_government_office"]
    # After the job the system is still blocked: the reminder still names the offices still to vote (it
    # vanished from the reminders once the job had run).
    reminders = ok(call(stack, "GET", f"{API}/reminders", "hb_sysadmin"))["reminders"]
    mine = next(r for r in reminders if r["system_id"] == sid)
    assert mine["lapsed"] is True and {a["action"] for a in mine["must_act"]} == {"review"}
    assert "district_government_office" not in {a["office"] for a in mine["must_act"]}
    assert "重新审核已在进行中" in mine["message_zh"]
    final = approve_all(stack, sid)
    assert final["outcome"] == "approved"
    held, _ = _until(lambda: as_system(stack.base_url, token).status_code == 200, 10.0)
    assert held


def test_a_renewal_round_survives_a_suspension_that_outlives_the_approval(stack: Stack) -> None:
    """Suspended mid-renewal, the system lost its round; reinstated after its approval's end it came back
    "approved" past that end, no round open and nobody told. Now the round is paused while it is
    suspended (out of the offices' work lists), and the reinstatement lapses the ended approval, goes on
    with the round and says so; the offices that signed do not sign again."""
    sid, token = _fresh_system_with_token(stack)
    ok(call(stack, "POST", f"{API}/systems/{sid}/recertify", "hb_sysadmin"))
    ok(call(stack, "POST", f"{API}/systems/{sid}/reviews", "rv_gov_office", json={"vote": "approve"}), 201)
    reason(stack, sid, "suspend")
    listed = ok(call(stack, "GET", f"{API}/systems", "rv_services", params={"awaiting_my_review": "true"}))
    assert sid not in {s["system_id"] for s in listed["systems"]}
    set_approved_until(stack, sid, datetime.now(UTC) - timedelta(seconds=1))

    answer = reason(stack, sid, "reinstate")
    assert (answer["status"], answer["lapsed"], answer["review_continues"]) == ("submitted", True, True)
    assert "已到期失效" in answer["message_zh"] and "need not vote again" in answer["message_en"]
    _assert_blocked(stack, token, sid, "system_not_approved")
    progress = ok(call(stack, "GET", f"{API}/systems/{sid}/progress", "hb_sysadmin"))
    assert [o["code"] for o in progress["signed"]] == ["district_government_office"]
    listed = ok(call(stack, "GET", f"{API}/systems", "rv_services", params={"awaiting_my_review": "true"}))
    assert sid in {s["system_id"] for s in listed["systems"]}
    reminders = ok(call(stack, "GET", f"{API}/reminders", "hb_sysadmin"))["reminders"]
    mine = next(r for r in reminders if r["system_id"] == sid)
    assert mine["lapsed"] is True and {a["action"] for a in mine["must_act"]} == {"review"}
    kinds = [k for k, b in audit_kinds(stack) if b.get("details", {}).get("system_id") == sid]
    assert kinds[-3:] == ["admission.reinstated", "admission.lapsed", "admission.renewal_continued"]
    assert approve_all(stack, sid)["outcome"] == "approved"
    assert _until(lambda: as_system(stack.base_url, token).status_code == 200, 10.0)[0]


def test_a_lapsed_provider_is_explained_to_the_village_user_the_data_path_refuses(stack: Stack) -> None:
    """The residents' registry lapsed: the cadre's read was refused with words addressed to its department
    (须重新通过联审后才能访问), and her own ``policy explain`` answered "allowed". The refusal then named
    the system by its id alone (civil-affairs-registry); now by its registered name, the id beside it."""
    with stack.engine.connect() as conn:
        until = conn.execute(
            sa.text("SELECT approved_until FROM admission_systems WHERE system_id = 'civil-affairs-registry'")
        ).scalar_one()
    set_approved_until(stack, "civil-affairs-registry", datetime.now(UTC) - timedelta(minutes=1))
    try:
        assert _until(lambda: _data_status(stack, stack.base_url) == (403, "system_lapsed"), 10.0)[0]
        refused = httpx.get(
            f"{stack.base_url}/api/v1/datasets/residents/records",
            params={"scenario": "DIBAO_REVIEW", "page_size": 1},
            headers={"Authorization": f"Bearer {stack.token('cadre_a')}"},
            timeout=30.0,
        ).json()
        assert refused["message"] == (
            "提供该数据的部门系统“区民政局居民信息登记系统”（系统标识 civil-affairs-registry）的准入已到期，"
            "尚未重新通过准入联审，网关不向其取数，"
            "本次未返回任何数据。这不是您的账号或授权问题，需由该系统所属部门处理；工作急需时请联系数据所属部门。"
        )
        assert refused["message_en"].startswith(
            "Departmental system 区民政局居民信息登记系统 (id civil-affairs-registry), which provides"
        )
        assert (refused["system"], refused["system_name"]) == (
            "civil-affairs-registry",
            "区民政局居民信息登记系统",
        )
        explained = ok(
            call(
                stack,
                "GET",
                "/api/v1/policy/explain",
                "cadre_a",
                params={"dataset": "residents", "scenario": "DIBAO_REVIEW"},
            )
        )
        assert explained["allowed"] is False
        assert explained["failed"]["check"] == "system" and explained["failed"]["code"] == "system_lapsed"
        assert explained["failed"]["message_zh"] == refused["message"]
    finally:
        set_approved_until(stack, "civil-affairs-registry", until)
    assert _until(lambda: _data_status(stack, stack.base_url) == (200, None), 10.0)[0]


def test_a_second_recertification_while_one_is_open_is_a_conflict(stack: Stack) -> None:
    """An approved system under re-review keeps routing; opening the round again is refused with 409 (the
    state must change first), not as malformed input."""
    sid, token = _fresh_system_with_token(stack)
    opened = ok(call(stack, "POST", f"{API}/systems/{sid}/recertify", "hb_sysadmin"))
    assert opened["renewal"] is True
    twice = call(stack, "POST", f"{API}/systems/{sid}/recertify", "hb_sysadmin")
    body = twice.json()
    assert (twice.status_code, body["error"]) == (409, "recertification_open"), twice.text
    assert "重新审核已在进行中" in body["message"] and "already under way" in body["message_en"]
    assert as_system(stack.base_url, token).status_code == 200


def test_a_reminder_gives_the_date_in_beijing_time(stack: Stack) -> None:
    """An approval ending at 17:00 UTC ends at 01:00 the next day in Beijing, the day officials read."""
    sid, _ = _fresh_system_with_token(stack)
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    ends = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 17, 0, tzinfo=UTC)
    set_approved_until(stack, sid, ends)
    reminders = ok(call(stack, "GET", f"{API}/reminders", "hb_sysadmin"))["reminders"]
    mine = next(r for r in reminders if r["system_id"] == sid)
    beijing = f"{(ends + timedelta(hours=8)):%Y-%m-%d} 01:00（北京时间）"
    assert beijing in mine["message_zh"], mine["message_zh"]
    assert "(Beijing time)" in mine["message_en"]


# --------------------------------------------------------------------------------------- credentials


def test_a_flood_of_wrong_client_secrets_waits_in_a_bounded_queue_and_a_right_one_still_works(
    stack: Stack,
) -> None:
    """Each client-secret check is an scrypt hash (tens of ms of CPU, 16 MiB), computed for an unknown client
    id too, and anyone can ask for one. They ran on the shared thread pool, as many at once as it had
    threads: 16 anonymous connections posting wrong secrets made village users' reads ten times slower (p50
    6 ms -> 220 ms on the demo). Now one runs at a time per process with a few queued, and the rest are
    refused at once (503 temporarily_unavailable, Retry-After), each refusal still logged."""
    form = {"grant_type": "client_credentials", "client_id": "gsc_" + "0" * 24, "client_secret": "gss_wrong"}
    with ThreadPoolExecutor(max_workers=64) as pool:
        answers = list(pool.map(lambda _: token_request(stack, data=form), range(64)))
    seen = {(r.status_code, r.json()["error"]) for r in answers}
    assert seen == {(401, "invalid_client"), (503, "temporarily_unavailable")}, seen
    busy = next(r for r in answers if r.status_code == 503)
    assert busy.headers["Retry-After"] == "1" and busy.json()["message"].startswith("令牌端点正忙")
    sid, _ = _fresh_system_with_token(stack)
    client_id, secret = issue_pair_cache[sid]
    assert system_token(stack, client_id, secret)


def test_rotation_stops_the_old_secret_and_its_tokens(stack: Stack) -> None:
    sid, _ = _fresh_system_with_token(stack)
    client_id, old_secret = issue_pair_cache[sid]
    old_token = system_token(stack, client_id, old_secret)
    again = call(stack, "POST", f"{API}/systems/{sid}/credentials/client-secret", "hb_sysadmin")
    # Issue once; afterwards only rotation (a conflict with the present state, not malformed input).
    assert (again.status_code, again.json()["error"]) == (409, "credential_error")
    assert "请使用轮换" in again.json()["message"]
    same_client, new_secret = issue_secret(stack, sid, rotate=True)
    assert same_client == client_id and new_secret != old_secret

    stale = token_request(stack, data={"grant_type": "client_credentials"}, auth=(client_id, old_secret))
    assert (stale.status_code, stale.json()["error"]) == (401, "invalid_client")
    assert "Basic" in stale.headers["www-authenticate"]
    resp = as_system(stack.base_url, old_token)
    assert (resp.status_code, resp.json()["error"]) == (401, "credential_rotated")
    # client_secret_post works as well as client_secret_basic.
    post = token_request(
        stack,
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": new_secret},
    )
    assert as_system(stack.base_url, ok(post)["access_token"]).status_code == 200
    both = token_request(
        stack,
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": new_secret},
        auth=(client_id, new_secret),
    )
    assert (both.status_code, both.json()["error"]) == (400, "invalid_request")
    assert both.json()["message"].startswith("请求中同时使用了多种客户端认证方式，未签发令牌。请只用以下一种")
    none = token_request(stack, data={"grant_type": "client_credentials"})
    assert (none.status_code, none.json()["error"]) == (400, "invalid_request")
    assert none.json()["message"].startswith("请求中没有客户端认证信息，未签发令牌。")
    for method in ("client_secret_basic", "client_secret_post", "private_key_jwt"):
        assert method in none.json()["message"] and method in none.json()["message_en"]
    wrong_grant = token_request(stack, data={"grant_type": "password"}, auth=(client_id, new_secret))
    assert wrong_grant.json()["error"] == "unsupported_grant_type"
    kinds = [k for k, b in audit_kinds(stack) if b.get("details", {}).get("system_id") == sid]
    assert "admission.credential_rotated" in kinds


def _assertion(private: ed25519.Ed25519PrivateKey, client_id: str, audience: str) -> str:
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return jws.serialize_compact(
            {"alg": "EdDSA", "typ": "JWT"},
            json.dumps(claims).encode(),
            OKPKey.import_key(pem),
            algorithms=["EdDSA"],
        )


def register_public_key(
    stack: Stack, sid: str, private: ed25519.Ed25519PrivateKey | None = None
) -> tuple[ed25519.Ed25519PrivateKey, dict[str, Any]]:
    """Register the public half of ``private`` (a new key if none) for signed client assertions."""
    private = private or ed25519.Ed25519PrivateKey.generate()
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    registered = ok(
        call(
            stack,
            "PUT",
            f"{API}/systems/{sid}/credentials/public-key",
            "hb_sysadmin",
            json={"public_key": pem.decode()},
        )
    )
    return private, registered


def test_signed_client_assertion(stack: Stack) -> None:
    sid, _ = _fresh_system_with_token(stack)
    private = ed25519.Ed25519PrivateKey.generate()
    refused = call(
        stack,
        "PUT",
        f"{API}/systems/{sid}/credentials/public-key",
        "hb_sysadmin",
        json={
            "public_key": private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode()
        },
    )
    assert (refused.status_code, refused.json()["error"]) == (422, "invalid_public_key")
    private, registered = register_public_key(stack, sid, private)
    assertion = _assertion(private, registered["client_id"], registered["assertion_audience"])
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    token = ok(token_request(stack, data=form))["access_token"]
    assert ok(as_system(stack.base_url, token))["system_id"] == sid
    replayed = token_request(stack, data=form)
    assert (replayed.status_code, replayed.json()["error"]) == (401, "invalid_client")
    stranger = _assertion(
        ed25519.Ed25519PrivateKey.generate(), registered["client_id"], registered["assertion_audience"]
    )
    forged = token_request(stack, data={**form, "client_assertion": stranger})
    assert forged.status_code == 401


def test_outbound_credential_is_write_only_and_encrypted(stack: Stack) -> None:
    from gateway.keys import load_masking_keyring
    from gateway.outbound import open_outbound_credential
    from gateway.settings import Settings

    sid, _ = _fresh_system_with_token(stack)
    plain = "upstream-password-" + uuid.uuid4().hex
    resp = call(
        stack, "PUT", f"{API}/systems/{sid}/outbound-credential", "hb_sysadmin", json={"credential": plain}
    )
    assert resp.status_code == 204 and resp.content == b""
    shown = call(stack, "GET", f"{API}/systems/{sid}", "hb_sysadmin")
    assert shown.json()["credentials"]["outbound_credential_set"] is True and plain not in shown.text
    other = call(
        stack, "PUT", f"{API}/systems/{sid}/outbound-credential", "ca_sysadmin", json={"credential": "x"}
    )
    assert other.status_code == 404
    with stack.engine.connect() as conn:
        blob = conn.execute(
            sa.text("SELECT outbound_credential_ciphertext FROM admission_systems WHERE system_id = :s"),
            {"s": sid},
        ).scalar_one()
    assert plain.encode() not in bytes(blob)
    ring = load_masking_keyring(Settings(data_dir=stack.data_dir))
    assert open_outbound_credential(ring, sid, bytes(blob)) == plain
    with pytest.raises(InvalidTag):  # bound to its system: the ciphertext opens for no other
        open_outbound_credential(ring, "civil-affairs-registry", bytes(blob))
    assert not any(plain in e["body"] for e in stack.last_events(50))
    assert call(stack, "DELETE", f"{API}/systems/{sid}/outbound-credential", "hb_sysadmin").status_code == 204
    assert (
        ok(call(stack, "GET", f"{API}/systems/{sid}", "hb_sysadmin"))["credentials"][
            "outbound_credential_set"
        ]
        is False
    )


# ------------------------------------------- across processes: assertion replay, outbound credential


@pytest.fixture(scope="module")
def signing_system(stack: Stack) -> tuple[ed25519.Ed25519PrivateKey, dict[str, Any]]:
    """An admitted system that authenticates with signed client assertions (private_key_jwt)."""
    sid = new_id("assertion-app")
    admit(stack, sid)
    return register_public_key(stack, sid)


def _assertion_form(assertion: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }


def _post_assertion(base: str, assertion: str) -> httpx.Response:
    return httpx.post(f"{base}/oauth/token", data=_assertion_form(assertion), timeout=30.0)


def test_an_assertion_is_accepted_once_across_two_processes(
    stack: Stack, second_gateway: str, signing_system: tuple[ed25519.Ed25519PrivateKey, dict[str, Any]]
) -> None:
    private, registered = signing_system
    client_id, audience = registered["client_id"], registered["assertion_audience"]

    # One after the other: the first process accepts, the second sees the replay.
    assertion = _assertion(private, client_id, audience)
    first = _post_assertion(stack.base_url, assertion)
    assert first.status_code == 200, first.text
    replayed = _post_assertion(second_gateway, assertion)
    assert (replayed.status_code, replayed.json()["error"]) == (401, "invalid_client")
    assert "已被使用过" in replayed.json()["message"]

    # At once: the same fresh assertion sent to both processes from several threads is accepted once.
    concurrent = _assertion(private, client_id, audience)
    bases = [stack.base_url, second_gateway] * (REPLAY_ATTEMPTS // 2)
    with ThreadPoolExecutor(max_workers=REPLAY_ATTEMPTS) as pool:
        answers = list(pool.map(lambda base: (base, _post_assertion(base, concurrent)), bases))
    accepted = [base for base, r in answers if r.status_code == 200]
    refused = {(r.status_code, r.json()["error"]) for _, r in answers if r.status_code != 200}
    assert len(accepted) == 1, [(b, r.status_code) for b, r in answers]
    assert refused == {(401, "invalid_client")}

    # A fresh assertion still works at either process (nothing else was blocked).
    assert _post_assertion(second_gateway, _assertion(private, client_id, audience)).status_code == 200
    with stack.engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT count(*) FROM admission_assertion_jtis WHERE client_id = :c"), {"c": client_id}
        ).scalar_one()
    assert stored == 3


def test_an_unwritable_replay_store_refuses_assertions(
    stack: Stack, second_gateway: str, signing_system: tuple[ed25519.Ed25519PrivateKey, dict[str, Any]]
) -> None:
    private, registered = signing_system
    assertion = _assertion(private, registered["client_id"], registered["assertion_audience"])
    with stack.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE admission_assertion_jtis RENAME TO test_jtis_moved_away"))
    try:
        for base in (stack.base_url, second_gateway):
            resp = _post_assertion(base, assertion)
            assert (resp.status_code, resp.json()["error"]) == (503, "temporarily_unavailable"), resp.text
            assert resp.headers["cache-control"] == "no-store"
            assert "admission_assertion_jtis" not in resp.text
    finally:
        with stack.engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE test_jtis_moved_away RENAME TO admission_assertion_jtis"))
    # Refused, not recorded: once the store is back, the same assertion is accepted.
    assert _post_assertion(second_gateway, assertion).status_code == 200


def _read_residents(base: str, stack: Stack) -> httpx.Response:
    return httpx.get(
        f"{base}/api/v1/datasets/residents/records",
        params={"scenario": "DIBAO_REVIEW", "page_size": 3},
        headers={"Authorization": f"Bearer {stack.token('cadre_a')}"},
        timeout=30.0,
    )


def test_a_credential_rotated_through_one_process_is_presented_by_the_other(
    stack: Stack, second_gateway: str
) -> None:
    assert _read_residents(second_gateway, stack).status_code == 200
    path = stack.credentials_file("civil-affairs-registry")
    rotated = issue_gateway_credential(path)
    retire_old_gateway_credentials(path)
    refused = _read_residents(second_gateway, stack)
    assert (refused.status_code, refused.json()["error"]) == (502, "upstream_credential_refused")

    stored = call(
        stack,
        "PUT",
        f"{API}/systems/civil-affairs-registry/outbound-credential",
        "ca_sysadmin",
        json={"credential": rotated},
    )
    assert stored.status_code == 204
    stored_at = time.monotonic()
    while _read_residents(second_gateway, stack).status_code != 200:
        assert time.monotonic() - stored_at < BLOCK_DEADLINE_S, "still the old key"
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------- burden view


def test_district_report_counts_systems_and_repeated_fields(stack: Stack) -> None:
    first, second = new_id("report-a"), new_id("report-b")
    admit(stack, first, collects_fields=["residents.mobile", "health.visit_date"])
    admit(stack, second, collects_fields=["mobile", "health.visit_date"])  # "mobile" is residents.mobile
    village = ok(call(stack, "GET", f"{API}/burden/villages/{VILLAGE_A}", "rv_gov_office"))
    assert {first, second, "civil-affairs-registry"} <= set(village["systems"])
    assert village["n_systems"] == len(village["systems"])
    assert {"residents.mobile", "health.visit_date"} <= set(village["fields_demanded_more_than_once"])
    assert {first, second} <= set(village["demand"]["residents.mobile"])

    report = ok(call(stack, "GET", f"{API}/burden/report", "supervisor"))
    assert report["systems_per_village"][VILLAGE_A] >= 3
    assert report["systems_per_village"]["310151102201"] < report["systems_per_village"][VILLAGE_A]
    repeated = {d["field"]: d for d in report["fields_demanded_more_than_once"]}
    assert VILLAGE_A in repeated["residents.mobile"]["villages"]
    assert "310151102201" not in repeated["residents.mobile"]["villages"]  # another township

    # Opened in Excel or WPS as officials do: the file was English-only, without a byte-order mark, and
    # the 12-digit village codes came out as 3.10151E+11 (and were saved back so). Now it reads like the
    # monthly report's CSV: UTF-8 with BOM, Chinese headers first, each village named, codes kept as text.
    csv_resp = call(stack, "GET", f"{API}/burden/report", "supervisor", params={"format": "csv"})
    assert csv_resp.headers["content-type"].startswith("text/csv")
    assert csv_resp.content.startswith(b"\xef\xbb\xbf")
    header, *rows = csv_resp.content.decode("utf-8-sig").split("\r\n")
    assert header == (
        "村（社区）代码/village_code,村（社区）名称/village_name,接入系统数/n_systems,接入系统/systems,"
        "采集字段/fields_demanded,被重复采集的字段/fields_demanded_more_than_once"
    )
    row_a = next(r for r in rows if r.startswith(f"\t{VILLAGE_A},"))
    assert row_a.split(",")[1] == "东风村村民委员会"
    assert "residents.mobile" in row_a.split(",")[5]

    cli = stack.cli(
        "admission", "report", "--csv", "--village", VILLAGE_A, "--as", "supervisor", "--url", stack.base_url
    )
    assert cli.stdout.lstrip("\ufeff").splitlines()[0] == header and len(cli.stdout.splitlines()) == 2
    bad = call(stack, "GET", f"{API}/burden/villages/310151101000", "supervisor")  # a township, not a village
    assert (bad.status_code, bad.json()["error"]) == (422, "invalid_village")


def test_a_township_supervisor_gets_her_own_townships_burden_figures_only(stack: Stack) -> None:
    """The burden report answered 城桥镇's supervisor with every village of the district, 堡镇's counts
    and repeated fields too, while every other supervision report shows her her own township only. Now
    her township's villages only (and the repeated fields among them); a village of 堡镇 asked for,
    in the report or alone, is 404 outside_scope, saying what she may look at, not what is there."""
    neighbour_village = "310151102201"
    admit(stack, new_id("town-b-a"), reaches=["310151102000"], collects_fields=["residents.mobile"])
    admit(stack, new_id("town-b-b"), reaches=["310151102000"], collects_fields=["mobile"])
    district = ok(call(stack, "GET", f"{API}/burden/report", "supervisor"))
    assert neighbour_village in district["systems_per_village"]
    assert any(neighbour_village in d["villages"] for d in district["fields_demanded_more_than_once"])

    own = ok(call(stack, "GET", f"{API}/burden/report", "town_supervisor_a"))
    assert VILLAGE_A in own["systems_per_village"]
    assert all(v.startswith(TOWNSHIP_A[:9]) for v in own["systems_per_village"]), own["systems_per_village"]
    shown = {v for d in own["fields_demanded_more_than_once"] for v in d["villages"]}
    assert shown and all(v.startswith(TOWNSHIP_A[:9]) for v in shown)
    csv_rows = call(stack, "GET", f"{API}/burden/report", "town_supervisor_a", params={"format": "csv"}).text
    assert neighbour_village not in csv_rows and VILLAGE_A in csv_rows

    # What to change names the argument she typed: `admission burden` and `report` take no --org.
    for path, params, change in (
        (f"{API}/burden/report", {"village": neighbour_village}, "--village"),
        (f"{API}/burden/report", {"village": [VILLAGE_A, neighbour_village]}, "--village"),
        (f"{API}/burden/villages/{neighbour_village}", {}, "12 位区划代码"),
    ):
        refused = call(stack, "GET", path, "town_supervisor_a", params=params)
        assert (refused.status_code, refused.json()["error"]) == (404, "outside_scope"), refused.text
        assert neighbour_village not in refused.text
        assert TOWNSHIP_A in refused.json()["message"]
        assert change in refused.json()["message"] and "--org" not in refused.text
    assert ok(call(stack, "GET", f"{API}/burden/villages/{VILLAGE_A}", "town_supervisor_a"))["n_systems"] >= 1
    assert (
        neighbour_village
        in ok(call(stack, "GET", f"{API}/burden/report", "town_supervisor_b"))["systems_per_village"]
    )


def test_the_audit_chain_stays_intact(stack: Stack) -> None:
    """Every admission change above was audited inside its own transaction (SQLite) or before its commit
    (PostgreSQL); either way the hash chain verifies."""
    from audit import verify_log

    report = verify_log(stack.engine)
    assert report.ok and report.checked > 0, report.problem


@pytest.mark.parametrize("text", ["联系人 138 1234 5678", "13812345678", "身份证110105-19491231-002X"])
def test_personal_data_in_a_reason_or_a_comment_is_refused_and_changes_nothing(
    stack: Stack, text: str
) -> None:
    """Reasons and review comments are written to the audit log: personal data in them is a 422 naming
    the problem (it used to pass when grouped, and to fail as a 500 when whole), and nothing changes."""
    sid = new_id("pii")
    ok(call(stack, "POST", f"{API}/systems", "hb_sysadmin", json=registration(sid)), 201)
    ok(call(stack, "POST", f"{API}/systems/{sid}/submit", "hb_sysadmin"))
    office = ok(call(stack, "GET", f"{API}/systems/{sid}/progress", "rv_gov_office"))["pending"][0]["code"]
    vote = {"vote": "reject", "comment": text}
    resp = call(stack, "POST", f"{API}/systems/{sid}/reviews", REVIEWER_OF[office], json=vote)
    assert (resp.status_code, resp.json()["error"]) == (422, "personal_data_in_comment"), resp.text
    assert text not in resp.text
    approve_all(stack, sid)
    before = [k for k, b in audit_kinds(stack) if b.get("details", {}).get("system_id") == sid]
    resp = call(stack, "POST", f"{API}/systems/{sid}/suspend", "supervisor", json={"reason": text})
    assert (resp.status_code, resp.json()["error"]) == (422, "personal_data_in_reason"), resp.text
    assert text not in resp.text
    assert ok(call(stack, "GET", f"{API}/systems/{sid}", "hb_sysadmin"))["status"] == "approved"
    after = [k for k, b in audit_kinds(stack) if b.get("details", {}).get("system_id") == sid]
    assert after == [*before, "admission.contact_read"]  # that read showed the contact; nothing changed


def test_a_vote_for_another_office_names_the_reviewers_own_office_by_name(stack: Stack) -> None:
    body = {"vote": "approve", "office": "science_technology_commission"}
    resp = call(stack, "POST", f"{API}/systems/health-followup-app/reviews", "rv_big_data", json=body)
    assert (resp.status_code, resp.json()["error"]) == (403, "separation_of_duties"), resp.text
    assert resp.json()["message"] == "审核人只能代表本单位（区大数据中心）表决。"
    # The English line named the office by its code (big_data_centre).
    assert (
        resp.json()["message_en"] == "A reviewer votes only for their own office (District Big Data Centre)."
    )


def test_registering_for_another_department_names_ones_own_and_what_to_write(stack: Stack) -> None:
    """The refusal named the department by its code in both languages (本部门（health）) and left the
    system admin to guess the fix."""
    resp = call(
        stack,
        "POST",
        f"{API}/systems",
        "hb_sysadmin",
        json=registration(new_id("dept"), department="civil_affairs"),
    )
    assert (resp.status_code, resp.json()["error"]) == (403, "separation_of_duties"), resp.text
    assert resp.json()["message"] == (
        "系统管理员只能为本部门（区卫健委）登记系统：请删去 department 一项（默认即本部门），或填写 health。"
    )
    assert resp.json()["message_en"] == (
        "A system admin registers systems only for their own department (District Health Commission): "
        "leave department out (it defaults to yours) or write health."
    )


def test_a_reviewers_work_list_is_what_waits_on_their_office(stack: Stack) -> None:
    """``awaiting_my_review``: the systems in review whose round still waits on the caller's office, a
    renewal round of an approved system included (it does not show under ``status=submitted``)."""

    def work_list(user: str) -> list[str]:
        found = ok(call(stack, "GET", f"{API}/systems", user, params={"awaiting_my_review": "true"}))
        return [s["system_id"] for s in found["systems"]]

    sid = new_id("health-worklist")
    ok(call(stack, "POST", f"{API}/systems", "hb_sysadmin", json=registration(sid)), 201)
    assert sid not in work_list("rv_big_data")  # a draft waits on nobody
    ok(call(stack, "POST", f"{API}/systems/{sid}/submit", "hb_sysadmin"))
    assert sid in work_list("rv_big_data") and sid in work_list("rv_gov_office")
    ok(
        call(
            stack,
            "POST",
            f"{API}/systems/{sid}/reviews",
            "rv_big_data",
            json={"vote": "approve", "comment": "同意"},
        ),
        201,
    )
    assert sid not in work_list("rv_big_data") and sid in work_list("rv_gov_office")
    approve_all(stack, sid)
    assert sid not in work_list("rv_gov_office")

    renewed, _ = _fresh_system_with_token(stack)
    ok(call(stack, "POST", f"{API}/systems/{renewed}/recertify", "hb_sysadmin"))
    submitted = ok(call(stack, "GET", f"{API}/systems", "rv_big_data", params={"status": "submitted"}))
    assert renewed not in [s["system_id"] for s in submitted["systems"]]
    assert renewed in work_list("rv_big_data")

    nobody = call(stack, "GET", f"{API}/systems", "hb_sysadmin", params={"awaiting_my_review": "true"})
    assert (nobody.status_code, nobody.json()["error"]) == (422, "no_reviewing_office"), nobody.text
    assert "审核单位" in nobody.json()["message"] and "office" in nobody.json()["message_en"]
