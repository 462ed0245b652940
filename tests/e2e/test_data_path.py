"""The data path end to end, as a village cadre, a township officer and an attacker would use it.

Real processes over loopback: the gateway (OIDC discovery + JWKS from its embedded development IdP) and the
civil-affairs registry (its own app and database), on SQLite and, in CI, PostgreSQL.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from admission import AdmissionService
from demoworld.world import build_world
from policies import GrantRepository, GrantService, GrantStatus, Subject
from policies.permissions import load_permissions
from policies.scenarios import load_scenarios
from tests.stack import Stack

WORLD = build_world()
VILLAGE_A = WORLD.village_a
VILLAGE_B = WORLD.village_b
RESIDENTS_A = WORLD.residents_of(VILLAGE_A)
RESIDENTS_B = WORLD.residents_of(VILLAGE_B)

ID_MASKED = re.compile(r"^\d{6}\*{12}$")
MOBILE_MASKED = re.compile(r"^\d{3}\*{4}\d{4}$")
ERROR_KEYS = {"error", "message", "message_en", "request_id"}


def _all_pages(stack: Stack, username: str, scenario: str = "DIBAO_REVIEW") -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    page: int | None = 1
    while page is not None:
        resp = stack.get(stack.records_url, username, scenario=scenario, page=page, page_size=20)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        items += body["items"]
        page = body["next_page"]
        assert page is None or page > 1
    return items


def _assert_error(resp: object, status: int, code: str) -> dict[str, object]:
    import httpx

    assert isinstance(resp, httpx.Response)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) >= ERROR_KEYS, body
    assert body["error"] == code, body
    assert "items" not in body
    assert "Traceback" not in resp.text
    return dict(body)


def _subject(username: str) -> Subject:
    user = WORLD.identity(username)
    return Subject(user_id=user.user_id, org=user.org, roles=(user.role,), department=user.department)


# ------------------------------------------------------------------------------------- what a cadre sees


def test_cadre_reads_only_her_village_with_identifiers_masked(stack: Stack) -> None:
    items = _all_pages(stack, "cadre_a")
    assert len(items) == len(RESIDENTS_A) > 0
    assert {item["village_code"] for item in items} == {VILLAGE_A}
    assert {item["id"] for item in items} == {r.id for r in RESIDENTS_A}
    for item in items:
        assert ID_MASKED.fullmatch(str(item["id_number"])), item["id_number"]
        assert MOBILE_MASKED.fullmatch(str(item["mobile"])), item["mobile"]
        assert "birth_date" not in item  # not in the DIBAO_REVIEW grant: dropped, not masked
    text = json.dumps(items, ensure_ascii=False)
    for resident in RESIDENTS_A:
        assert resident.id_number not in text
        assert resident.mobile not in text
        assert resident.name not in text or len(resident.name) == 1


def test_the_other_village_cadre_sees_none_of_them(stack: Stack) -> None:
    items = _all_pages(stack, "cadre_b")
    assert {item["village_code"] for item in items} == {VILLAGE_B}
    assert not {item["id"] for item in items} & {r.id for r in RESIDENTS_A}


def test_neighbouring_village_record_answers_404_like_a_missing_one(stack: Stack) -> None:
    neighbour = stack.get(f"{stack.records_url}/{RESIDENTS_A[0].id}", "cadre_b", scenario="DIBAO_REVIEW")
    missing = stack.get(f"{stack.records_url}/R00000000", "cadre_b", scenario="DIBAO_REVIEW")
    a = _assert_error(neighbour, 404, "not_found")
    b = _assert_error(missing, 404, "not_found")
    assert {k: v for k, v in a.items() if k != "request_id"} == {
        k: v for k, v in b.items() if k != "request_id"
    }
    # A next step, Chinese first, that says the same whether the record exists elsewhere or nowhere.
    assert str(a["message"]).startswith("未找到该记录，或该记录不在您的管辖范围内。")
    assert "记录编号可能输错了" in str(a["message"]) and "请先按页查看本辖区的记录" in str(a["message"])
    english = str(a["message_en"])
    assert "mistyped" in english and "list your jurisdiction's records first" in english
    unreadable = stack.get(f"{stack.records_url}/R..0%2B", "cadre_b", scenario="DIBAO_REVIEW")
    c = _assert_error(unreadable, 404, "not_found")
    assert (c["message"], c["message_en"]) == (a["message"], a["message_en"])


def test_own_record_by_id_is_masked(stack: Stack) -> None:
    resident = RESIDENTS_A[0]
    resp = stack.get(f"{stack.records_url}/{resident.id}", "cadre_a", scenario="DIBAO_REVIEW")
    assert resp.status_code == 200, resp.text
    record = resp.json()
    assert record["id"] == resident.id
    assert ID_MASKED.fullmatch(record["id_number"])
    assert resident.id_number not in resp.text


def test_township_officer_covers_both_villages_of_the_township(stack: Stack) -> None:
    codes = {item["village_code"] for item in _all_pages(stack, "town_officer")}
    assert {VILLAGE_A, VILLAGE_B} <= codes
    assert all(code.startswith(VILLAGE_A[:9]) for code in codes)


# ------------------------------------------------------------------------------ refusals a cadre reads


@pytest.mark.parametrize(
    ("username", "params", "status", "code"),
    [
        ("cadre_c", {"scenario": "DIBAO_REVIEW"}, 403, "no_active_grant"),  # other township: no grant
        ("supervisor", {"scenario": "DIBAO_REVIEW"}, 403, "no_permission"),  # role may not read residents
        ("cadre_a", {"scenario": "NO_SUCH_SCENARIO"}, 404, "unknown_scenario"),
        ("cadre_a", {}, 422, "missing_scenario"),
        ("cadre_a", {"scenario": "DIBAO_REVIEW", "page_size": 101}, 422, "page_size_over_limit"),
        ("cadre_a", {"scenario": "DIBAO_REVIEW", "page_size": "many"}, 422, "invalid_page_size"),
        ("cadre_a", {"scenario": "DIBAO_REVIEW", "page": 0}, 422, "invalid_page"),
    ],
)
def test_refusals_are_clear(
    stack: Stack, username: str, params: dict[str, object], status: int, code: str
) -> None:
    body = _assert_error(stack.get(stack.records_url, username, **params), status, code)
    assert str(body["message"]).strip() and str(body["message_en"]).strip()


def test_unknown_dataset_is_404(stack: Stack) -> None:
    resp = stack.get(
        f"{stack.base_url}/api/v1/datasets/no_such_data/records", "cadre_a", scenario="DIBAO_REVIEW"
    )
    _assert_error(resp, 404, "unknown_dataset")


def test_the_api_page_documents_the_query_a_data_request_takes(stack: Stack) -> None:
    """/docs is how a department's developer learns the data path: scenario is required, pages optional."""
    import httpx

    paths = httpx.get(f"{stack.base_url}/openapi.json", timeout=10).json()["paths"]
    listing = paths["/api/v1/datasets/{dataset}/records"]["get"]["parameters"]
    one = paths["/api/v1/datasets/{dataset}/records/{record_id}"]["get"]["parameters"]
    by_name = {p["name"]: p for p in listing}
    assert {"dataset", "scenario", "page", "page_size"} <= set(by_name)
    assert by_name["scenario"]["required"] is True and by_name["scenario"]["in"] == "query"
    assert by_name["page_size"]["schema"]["type"] == "integer" and not by_name["page_size"]["required"]
    assert {"dataset", "record_id", "scenario"} <= {p["name"] for p in one}


def test_codes_that_name_nothing_are_neither_repeated_nor_recorded(stack: Stack) -> None:
    """A dataset or scenario code of a valid shape that names nothing is still what someone typed: an ID
    number with a letter in front passes the shape. It is not echoed, logged as typed, or recorded."""
    typed = "id11010519491231002x"
    resp = stack.get(f"{stack.base_url}/api/v1/datasets/{typed}/records", "cadre_a", scenario="DIBAO_REVIEW")
    _assert_error(resp, 404, "unknown_dataset")
    assert typed not in resp.text.lower()
    body = stack.last_events(1)[0]["body"]
    assert json.loads(body)["dataset"] == "invalid" and typed not in body.lower()

    resp = stack.get(stack.records_url, "cadre_a", scenario=typed.upper())
    _assert_error(resp, 404, "unknown_scenario")
    assert typed not in resp.text.lower()
    body = stack.last_events(1)[0]["body"]
    assert json.loads(body).get("scenario") is None and typed not in body.lower()


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "missing_token"),
        ("Bearer not.a.jwt", "malformed_token"),
        ("Basic dXNlcjpwYXNz", "invalid_token"),
        ("Bearer", "invalid_token"),
    ],
)
def test_bad_tokens_get_401_with_www_authenticate(stack: Stack, authorization: str | None, code: str) -> None:
    import httpx

    headers = {"Authorization": authorization} if authorization is not None else {}
    resp = httpx.get(stack.records_url, params={"scenario": "DIBAO_REVIEW"}, headers=headers, timeout=10)
    _assert_error(resp, 401, code)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_quoted_token_or_bearer_twice_is_told_precisely_on_every_endpoint(stack: Stack) -> None:
    """A genuine token sent as ``Bearer "eyJ..."`` or ``Bearer Bearer eyJ...`` was answered "malformed
    token, sign in again", which no sign-in cures. The fault and the header to send are named, bilingual,
    the token never echoed nor recorded; the same token sent plainly is served."""
    import httpx

    token = stack.token("cadre_a")
    query = {"scenario": "DIBAO_REVIEW", "page_size": 5}
    cases = ((f'Bearer "{token}"', "两边多了引号"), (f"Bearer Bearer {token}", "Bearer 写了两次"))
    for header, said in cases:
        for url in (stack.records_url, f"{stack.base_url}/api/v1/me"):
            resp = httpx.get(url, params=query, headers={"Authorization": header}, timeout=10)
            body = _assert_error(resp, 401, "invalid_token")
            assert said in str(body["message"]) and "Authorization: Bearer" in str(body["message_en"])
            assert token not in resp.text and token not in stack.last_events(1)[0]["body"]
    plain = httpx.get(stack.records_url, params=query, headers={"Authorization": f"Bearer {token}"})
    assert plain.status_code == 200, plain.text


def test_wrong_audience_and_expired_tokens_are_refused(stack: Stack) -> None:
    import httpx

    for token, code in (
        (stack.token("cadre_a", audience="some-other-api"), "wrong_audience"),
        (stack.expired_token("cadre_a"), "expired_token"),
    ):
        resp = httpx.get(
            stack.records_url,
            params={"scenario": "DIBAO_REVIEW"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        body = _assert_error(resp, 401, code)
        assert token not in resp.text and token not in json.dumps(body)


# ------------------------------------------------------------------------------------------- the record


def test_every_request_leaves_exactly_one_audit_event(stack: Stack) -> None:
    import httpx

    calls = [
        lambda: stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW", page_size=5),
        lambda: stack.get(f"{stack.records_url}/{RESIDENTS_A[1].id}", "cadre_a", scenario="DIBAO_REVIEW"),
        lambda: stack.get(f"{stack.records_url}/{RESIDENTS_A[1].id}", "cadre_b", scenario="DIBAO_REVIEW"),
        lambda: stack.get(stack.records_url, "cadre_c", scenario="DIBAO_REVIEW"),
        lambda: stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW", page_size=1000),
        lambda: httpx.get(stack.records_url, params={"scenario": "DIBAO_REVIEW"}, timeout=10),
    ]
    expected = [
        ("data.list", "allowed"),
        ("data.read", "allowed"),
        ("data.read", "refused"),
        ("data.list", "refused"),
        ("data.list", "refused"),
        ("data.list", "refused"),
    ]
    for call, (kind, outcome) in zip(calls, expected, strict=True):
        before = stack.audit_count()
        call()
        assert stack.audit_count() == before + 1
        event = stack.last_events(1)[0]
        assert (event["kind"], event["outcome"]) == (kind, outcome)


def test_allowed_read_is_recorded_with_refs_never_plain_identifiers(stack: Stack) -> None:
    resp = stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW", page_size=5)
    assert resp.status_code == 200
    body = json.loads(stack.last_events(1)[0]["body"])
    assert body["record_count"] == 5
    assert len(body["subject_refs"]) == 5 and len(body["record_refs"]) == 5
    assert body["scenario"] == "DIBAO_REVIEW" and body["dataset"] == "residents"
    assert body["actor"] == WORLD.identity("cadre_a").user_id
    assert set(body["fields"]) >= {"id", "id_number", "mobile"}
    assert body["trace_id"] and re.fullmatch(r"[0-9a-f]{32}", body["trace_id"])
    with stack.engine.connect() as conn:
        dump = "\n".join(str(tuple(r)) for r in conn.execute(sa.text("SELECT * FROM audit_events")))
        dump += "\n".join(str(tuple(r)) for r in conn.execute(sa.text("SELECT * FROM audit_subject_refs")))
    for resident in WORLD.residents:
        assert resident.id_number not in dump
        assert resident.mobile not in dump
        assert resident.id not in dump


def test_audit_verify_passes_then_fails_on_any_changed_byte(stack: Stack, tmp_path: object) -> None:
    ok = stack.cli("audit", "verify", "--quiet", check=False)
    assert ok.returncode == 0, ok.stderr
    assert "intact" in ok.stdout
    if stack.backend != "sqlite":
        return  # tampering on PostgreSQL is covered by tests/audit; here we keep the shared database intact
    import shutil
    from pathlib import Path

    copy = Path(str(tmp_path)) / "tampered.db"
    src = stack.data_dir / "gateway.db"
    with sa.create_engine(f"sqlite:///{src}").connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(FULL)")
    shutil.copy(src, copy)
    tampered = sa.create_engine(f"sqlite:///{copy}")
    with tampered.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER audit_events_no_update")
        seq, body = conn.execute(
            sa.text("SELECT seq, body FROM audit_events ORDER BY seq LIMIT 1 OFFSET 3")
        ).one()
        changed = (
            body.replace('"allowed"', '"refused"', 1) if '"allowed"' in body else body.replace("a", "b", 1)
        )
        assert changed != body
        conn.execute(sa.text("UPDATE audit_events SET body = :b WHERE seq = :s"), {"b": changed, "s": seq})
    tampered.dispose()
    env = {**stack.env, "GRASSROOTS_DATABASE_URL": f"sqlite:///{copy}"}
    import subprocess
    import sys

    broken = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "audit", "verify", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert broken.returncode != 0
    assert f"#{seq}" in broken.stderr


# --------------------------------------------------------------------------------- faults: fail closed


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("down", 503, "upstream_unavailable"),
        ("slow", 504, "upstream_timeout"),
        ("garbage", 502, "upstream_bad_response"),
        ("error", 502, "upstream_bad_response"),
        ("drop", 502, "upstream_bad_response"),
    ],
)
def test_upstream_faults_give_no_partial_data(stack: Stack, fault: str, status: int, code: str) -> None:
    try:
        if fault == "down":
            stack.stop_upstream()
        else:
            stack.start_upstream(fault=fault, slow_seconds=5)
        before = stack.audit_count()
        resp = stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW")
        _assert_error(resp, status, code)
        assert stack.audit_count() == before + 1
        assert stack.last_events(1)[0]["outcome"] == "error"
    finally:
        stack.start_upstream()


def test_records_outside_scope_from_upstream_are_dropped_and_raised(stack: Stack) -> None:
    try:
        stack.start_upstream(fault="out_of_scope")
        resp = stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW", page_size=100)
        assert resp.status_code == 200
        assert {item["village_code"] for item in resp.json()["items"]} <= {VILLAGE_A}
        event = json.loads(stack.last_events(1)[0]["body"])
        assert "upstream_scope_violation" in event["details"]["alerts"]
        assert event["details"]["scope_violations"] > 0
        neighbour = stack.get(f"{stack.records_url}/{RESIDENTS_B[0].id}", "cadre_a", scenario="DIBAO_REVIEW")
        _assert_error(neighbour, 404, "not_found")
    finally:
        stack.start_upstream()


@pytest.fixture(scope="module")
def routed_gateway(stack: Stack) -> Iterator[str]:
    """A second gateway process on the same database with the fast lane off (FastAPI's routes serve)."""
    with stack.another_gateway(GRASSROOTS_DATA_FAST_LANE="false") as url:
        yield url


FAST_LANE_CASES = [
    # (who, path after /api/v1/datasets/, query) -> the same answer from both doors
    ("cadre_a", "residents/records", {"scenario": "DIBAO_REVIEW", "page_size": 5}),
    ("cadre_a", f"residents/records/{RESIDENTS_A[0].id}", {"scenario": "DIBAO_REVIEW"}),
    ("cadre_a", "residents/records", {"scenario": "DIBAO_REVIEW", "page_size": 5, "page": "x"}),
    ("cadre_a", "nope/records", {"scenario": "DIBAO_REVIEW"}),
    ("cadre_c", "residents/records", {"scenario": "DIBAO_REVIEW"}),
    (None, "residents/records", {"scenario": "DIBAO_REVIEW"}),
    ("cadre_a", "residents/records", {"scenario": ["DIBAO_REVIEW", "ELDERLY_VISIT"]}),
    ("cadre_a", "residents/records", {"scenario": "DIBAO_REVIEW", "page_szie": 1}),
    ("cadre_a", "residents/records", {"scenario": "DIBAO_REVIEW", "page": 999}),
    ("cadre_a", "residents/records/", {"scenario": "DIBAO_REVIEW"}),
    ("cadre_a", f"residents/records/{RESIDENTS_A[0].id}/", {"scenario": "DIBAO_REVIEW"}),
    (None, "residents/records/", {"scenario": "DIBAO_REVIEW"}),
]


def test_a_parameter_given_twice_is_refused_not_read_as_its_last_value(stack: Stack) -> None:
    """``?scenario=A&scenario=B``: which purpose was the read for? Reading the last value would let the
    request say one thing to a proxy or a log and another to the policy. Refused, audited, no data."""
    import httpx

    headers = {"Authorization": f"Bearer {stack.token('cadre_a')}"}
    for query in (
        [("scenario", "DIBAO_REVIEW"), ("scenario", "ELDERLY_VISIT")],
        [("scenario", "DIBAO_REVIEW"), ("page_size", "5"), ("page_size", "50")],
    ):
        resp = httpx.get(stack.records_url, params=query, headers=headers, timeout=30)
        body = _assert_error(resp, 422, "repeated_parameter")
        repeated = query[-1][0]
        assert f"查询参数 {repeated} 只能出现一次" in str(body["message"])
        assert f"parameter {repeated} may appear only once" in str(body["message_en"])
        event = stack.last_events(1)[0]
        assert (event["outcome"], json.loads(event["body"])["reason"]) == ("refused", "repeated_parameter")
    once = httpx.get(stack.records_url, params={"scenario": "DIBAO_REVIEW", "page_size": 5}, headers=headers)
    assert once.status_code == 200, once.text


def test_a_parameter_the_data_path_does_not_read_is_refused_by_both_doors(
    stack: Stack, routed_gateway: str
) -> None:
    """``page_szie=1`` (a typo) was ignored and a full page of 20 residents served; ``fields=birth_date``
    was ignored and the answer, without birth dates, looked like one to the question. Refused, audited,
    no data, the name typed never repeated."""
    import httpx

    headers = {"Authorization": f"Bearer {stack.token('cadre_a')}"}
    for base in (stack.base_url, routed_gateway):
        for extra in ({"page_szie": "1"}, {"fields": "birth_date"}):
            query = {"scenario": "DIBAO_REVIEW", **extra}
            resp = httpx.get(f"{base}/api/v1/datasets/residents/records", params=query, headers=headers)
            body = _assert_error(resp, 422, "unknown_parameter")
            assert "只接受 scenario、page、page_size" in str(body["message"])
            event = stack.last_events(1)[0]
            assert (event["outcome"], json.loads(event["body"])["reason"]) == ("refused", "unknown_parameter")
            for typed in ("page_szie", "birth_date"):
                assert typed not in resp.text and typed not in event["body"]


def test_a_trailing_slash_is_refused_and_audited_never_redirected(stack: Stack, routed_gateway: str) -> None:
    """``/records/`` answered 307 with an empty body, its ``Location`` built from the caller's ``Host``
    header, and left nothing in the audit log. Both doors now refuse it (404 ``trailing_slash``, Chinese
    first, naming the path's form and never the path sent) and record the refusal; every other endpoint
    refuses a trailing slash too, without a redirect."""
    import httpx

    headers = {"Authorization": f"Bearer {stack.token('cadre_a')}", "Host": "evil.example"}
    query = {"scenario": "DIBAO_REVIEW", "page_size": 5}
    record = RESIDENTS_A[0].id
    for base in (stack.base_url, routed_gateway):
        for path, form in (
            ("residents/records/", "/api/v1/datasets/{dataset}/records（花括号处填实际的值）。"),
            (
                f"residents/records/{record}/",
                "/api/v1/datasets/{dataset}/records/{record_id}（花括号处填实际的值）。",
            ),
        ):
            url = f"{base}/api/v1/datasets/{path}"
            resp = httpx.get(url, params=query, headers=headers, timeout=30, follow_redirects=False)
            body = _assert_error(resp, 404, "trailing_slash")
            assert "location" not in resp.headers and "evil.example" not in resp.text
            assert str(body["message"]).startswith("接口地址末尾多了斜杠")
            assert str(body["message"]).endswith(form) and "trailing slash" in str(body["message_en"])
            assert record not in resp.text
            event = stack.last_events(1)[0]
            assert (event["outcome"], json.loads(event["body"])["reason"]) == ("refused", "trailing_slash")
            assert event["body"].count(record) == 0
        for path in ("/api/v1/scenarios/", "/api/v1/me/", "/api/v1/grants/"):
            resp = httpx.get(f"{base}{path}", headers=headers, timeout=30, follow_redirects=False)
            body = _assert_error(resp, 404, "trailing_slash")
            assert "location" not in resp.headers and "去掉末尾的斜杠" in str(body["message"])
        unknown = httpx.get(f"{base}/api/v1/nothing-here/", headers=headers, timeout=30)
        _assert_error(unknown, 404, "no_route")
        # Without the slash, every route still answers.
        for path in ("/api/v1/scenarios", "/api/v1/me"):
            assert httpx.get(f"{base}{path}", headers=headers, timeout=30).status_code == 200, path
        ok = httpx.get(f"{base}/api/v1/datasets/residents/records", params=query, headers=headers, timeout=30)
        assert ok.status_code == 200, ok.text


def test_a_page_after_the_last_says_so_in_chinese_first(stack: Stack) -> None:
    """``page=999`` answered ``{"items": [], "next_page": null}`` and nothing else: to a cadre, her
    village's data looked gone. The empty page past the last says what happened and what to do, without
    repeating the page asked for; a page with records carries no note."""
    last = stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW", page=999, page_size=5)
    assert last.status_code == 200, last.text
    body = last.json()
    assert (body["items"], body["next_page"]) == ([], None)
    assert body["note"].startswith("这一页没有记录：所查页码已超过最后一页。请从第 1 页开始")
    assert body["note_en"].startswith("This page holds no records: it is past the last page.")
    assert "999" not in body["note"] + body["note_en"]
    first = stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW", page=1, page_size=5)
    assert first.json()["items"] and "note" not in first.json()


def test_two_authorization_headers_are_refused_by_both_doors_and_every_endpoint(
    stack: Stack, routed_gateway: str
) -> None:
    """Two ``Authorization`` headers (a cadre without a grant first, one with a grant second): both doors
    used to serve the first, while a proxy in front may check or log the last. Neither is used: 400
    ``repeated_header``, in Chinese first, before anything reads either token."""
    import httpx

    tokens = [("Authorization", f"Bearer {stack.token(who)}") for who in ("cadre_c", "cadre_a")]
    query = {"scenario": "DIBAO_REVIEW", "page_size": 5}
    for base in (stack.base_url, routed_gateway):
        for path in ("/api/v1/datasets/residents/records", "/api/v1/scenarios"):
            for headers in (tokens, tokens[::-1]):
                resp = httpx.get(f"{base}{path}", params=query, headers=headers, timeout=30)
                body = _assert_error(resp, 400, "repeated_header")
                assert "多个 Authorization 请求头" in str(body["message"])
                assert "more than one Authorization header" in str(body["message_en"])
                assert 'error="invalid_request"' in resp.headers["www-authenticate"]
                assert resp.headers["x-request-id"] == body["request_id"]
        one = httpx.get(f"{base}/api/v1/datasets/residents/records", params=query, headers=tokens[1:])
        assert one.status_code == 200, one.text


@pytest.mark.parametrize(("who", "path", "query"), FAST_LANE_CASES)
def test_the_fast_lane_answers_exactly_like_the_documented_routes(
    stack: Stack, routed_gateway: str, who: str | None, path: str, query: dict[str, Any]
) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {stack.token(who)}"} if who else {}
    answers = [
        httpx.get(f"{base}/api/v1/datasets/{path}", params=query, headers=headers, timeout=30)
        for base in (stack.base_url, routed_gateway)
    ]
    fast, routed = answers
    assert fast.status_code == routed.status_code
    for name in ("content-type", "content-length", "www-authenticate", "cache-control"):
        assert fast.headers.get(name) == routed.headers.get(name), name
    if fast.status_code == 200:
        # Records are personal information: nothing between the gateway and the reader keeps a copy.
        assert fast.headers["cache-control"] == "no-store"
    bodies = [{k: v for k, v in a.json().items() if k != "request_id"} for a in answers]
    assert bodies[0] == bodies[1]
    assert fast.json().get("request_id", fast.headers["x-request-id"]) == fast.headers["x-request-id"]
    paths = httpx.get(f"{stack.base_url}/openapi.json", timeout=30).json()["paths"]
    assert "/api/v1/datasets/{dataset}/records/{record_id}" in paths


@contextlib.contextmanager
def _writes_refused(stack: Stack, table: str) -> Iterator[None]:
    """Every INSERT or UPDATE on ``table`` fails (as a full disk would), until the block is left."""
    name = f"test_block_{table}"
    block = {
        "sqlite": [
            f"CREATE TRIGGER {name}_{op.lower()} BEFORE {op} ON {table} "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            for op in ("INSERT", "UPDATE")
        ],
        "postgres": [
            f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'disk full'; END $$",
            f"CREATE TRIGGER {name} BEFORE INSERT OR UPDATE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {name}()",
        ],
    }[stack.backend]
    unblock = {
        "sqlite": [f"DROP TRIGGER {name}_insert", f"DROP TRIGGER {name}_update"],
        "postgres": [f"DROP TRIGGER {name} ON {table}", f"DROP FUNCTION {name}()"],
    }[stack.backend]
    with stack.engine.begin() as conn:
        for statement in block:
            conn.exec_driver_sql(statement)
    try:
        yield
    finally:
        with stack.engine.begin() as conn:
            for statement in unblock:
                conn.exec_driver_sql(statement)


def test_audit_store_unwritable_gives_503_and_no_data(stack: Stack) -> None:
    with _writes_refused(stack, "audit_events"):
        before = stack.audit_count()
        resp = stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW")
        _assert_error(resp, 503, "audit_unavailable")
        assert stack.audit_count() == before
    assert stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW").status_code == 200


def test_an_administrative_refusal_that_cannot_be_logged_gives_503(stack: Stack) -> None:
    """A refused administrative attempt is recorded before it is answered: with the log unwritable the
    caller gets 503, not the 403 (fail closed, as on the data path)."""
    events = f"{stack.base_url}/api/v1/supervision/events"
    with _writes_refused(stack, "audit_events"):
        _assert_error(stack.get(events, "cadre_a"), 503, "audit_unavailable")
    _assert_error(stack.get(events, "cadre_a"), 403, "no_permission")


def test_quota_counter_unwritable_gives_503_and_no_data(stack: Stack) -> None:
    """Pages that cannot be counted against the daily quota are not served (fail closed): the count
    and the audit event commit in one transaction, so neither is kept; on PostgreSQL the hold on the
    page, taken in the counter before the upstream is called, already fails."""
    with _writes_refused(stack, "policy_quota_usage"):
        before = stack.audit_count()
        resp = stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW")
        _assert_error(resp, 503, "audit_unavailable")
        assert "items" not in resp.json()
        assert RESIDENTS_A[0].name not in resp.text
        if stack.engine.dialect.name == "sqlite":
            assert stack.audit_count() == before  # the in-memory hold is counted with the event: neither
        else:
            # Shared counter: the page's hold is taken before the upstream call and fails, so the
            # refusal itself is recorded (an error, nothing served, nothing counted).
            assert stack.audit_count() == before + 1
    assert stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW").status_code == 200


# ----------------------------------------------------------------- changes seen by the running gateway


def _eventually(check: object, timeout_s: float = 5.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


def test_suspended_system_is_blocked_naming_it_then_reinstated(stack: Stack) -> None:
    def set_status(action: str) -> None:
        with Session(stack.engine) as session:
            service = AdmissionService(session)
            getattr(service, action)(
                "civil-affairs-registry", WORLD.identity("supervisor").user_id, "演示：安全检查"
            )
            session.commit()

    set_status("suspend")
    try:
        _eventually(
            lambda: stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW").status_code == 403, 3.0
        )
        body = _assert_error(
            stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW"), 403, "system_suspended"
        )
        assert body["system"] == "civil-affairs-registry"
        assert "civil-affairs-registry" in str(body["message_en"]) or "居民信息登记系统" in str(
            body["message"]
        )
    finally:
        set_status("reinstate")
    _eventually(
        lambda: stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW").status_code == 200, 3.0
    )


def test_revoked_and_expired_grants_are_refused(stack: Stack) -> None:
    now = datetime.now(UTC)
    with Session(stack.engine) as session:
        repository = GrantRepository(session)
        service = GrantService(repository, load_scenarios(), load_permissions())
        elderly = next(
            g for g in repository.list_grants(scenario="ELDERLY_VISIT") if g.status is GrantStatus.APPROVED
        )
        service.revoke(elderly.grant_id, _subject("ca_steward"), "演示：撤销授权", now)
        # Village C's township gets a DIBAO_REVIEW grant for two seconds (a window can be neither
        # backdated nor written into the store as history a running gateway's refresh would see).
        grant, _ = service.request(
            _subject("county_officer"), "DIBAO_REVIEW", WORLD.village_c[:9], None, "演示：过期授权", now
        )
        for steward in ("ca_steward", "ca_steward2"):
            grant, _ = service.approve(
                grant.grant_id, _subject(steward), now, valid_until=now + timedelta(seconds=2)
            )
            if grant.status is GrantStatus.APPROVED:
                break
        session.commit()
    _eventually(
        lambda: stack.get(stack.records_url, "cadre_a", scenario="ELDERLY_VISIT").status_code == 403, 3.0
    )
    _assert_error(stack.get(stack.records_url, "cadre_a", scenario="ELDERLY_VISIT"), 403, "grant_revoked")
    _eventually(
        lambda: (
            stack.get(stack.records_url, "cadre_c", scenario="DIBAO_REVIEW").json().get("error")
            == "grant_expired"
        ),
        10.0,
    )


# ------------------------------------------------------------------- review findings: quota, paging, ids


def test_parallel_requests_never_serve_past_the_daily_quota(stack: Stack) -> None:
    """A cadre 10 records short of the day's quota sends 40 pages of 5 at once: exactly 10 records are
    served, the rest refused, and the counter ends at the quota (each request holds its page before the
    upstream call; on PostgreSQL the hold is taken in the shared counter row)."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from policies import quota_day
    from tests.gateway.test_grants_api import token_as

    quota = load_scenarios()["DIBAO_REVIEW"].daily_quota_per_user
    user = f"u-quota-race-{time.monotonic_ns()}"
    key = {"u": user, "s": "DIBAO_REVIEW", "d": quota_day(datetime.now(UTC))}
    with stack.engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO policy_quota_usage (user_id, scenario, day, used) VALUES (:u, :s, :d, :n)"),
            {**key, "n": quota - 10},
        )
    token = token_as(stack, "cadre_a", sub=user)

    def read(_: int) -> httpx.Response:
        return httpx.get(
            stack.records_url,
            params={"scenario": "DIBAO_REVIEW", "page_size": 5},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30.0,
        )

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(read, range(40)))
    served = sum(len(a.json()["items"]) for a in answers if a.status_code == 200)
    refusals = {(a.status_code, a.json()["error"]) for a in answers if a.status_code != 200}
    assert refusals <= {(403, "quota_exceeded"), (422, "page_size_over_limit")}, refusals
    assert served == 10
    with stack.engine.connect() as conn:
        used = conn.execute(
            sa.text("SELECT used FROM policy_quota_usage WHERE user_id = :u AND scenario = :s AND day = :d"),
            key,
        ).scalar_one()
    assert used == quota  # exactly what the served events say, nothing held any more


@pytest.mark.parametrize(
    ("query", "code", "range_zh"),
    [
        ({"page": "9007199254740993"}, "invalid_page", "1 至 1000000"),
        ({"page": "-9007199254740993"}, "invalid_page", "1 至 1000000"),
        ({"page_size": "99999999999999999999"}, "page_size_over_limit", "最多 100 条"),
        ({"page_size": "-99999999999999999999"}, "invalid_page_size", "1 至 100"),
        ({"page": "0", "page_size": "0"}, "invalid_page", "1 至 1000000"),
    ],
)
def test_huge_page_numbers_are_refused_at_parse_time_and_audited(
    stack: Stack, query: dict[str, str], code: str, range_zh: str
) -> None:
    before = stack.audit_count()
    resp = stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW", **query)
    body = _assert_error(resp, 422, code)
    assert range_zh in str(body["message"])
    for value in query.values():
        if len(value) > 3:
            assert value.lstrip("-") not in resp.text  # never echoed
    assert stack.audit_count() == before + 1
    event = json.loads(stack.last_events(1)[0]["body"])
    assert (event["outcome"], event["reason"], event["record_count"]) == ("refused", code, 0)


@pytest.mark.parametrize("record_id", ["%2E", "%2E%2E", ".%2E"])
def test_dot_segment_record_ids_answer_404_and_never_reach_another_path(stack: Stack, record_id: str) -> None:
    before = stack.audit_count()
    resp = stack.get(f"{stack.records_url}/{record_id}", "cadre_a", scenario="DIBAO_REVIEW")
    _assert_error(resp, 404, "not_found")
    assert "items" not in resp.text
    assert stack.audit_count() == before + 1


def test_an_id_number_typed_as_the_record_id_is_refused_by_both_doors_and_never_sent_on(
    stack: Stack, routed_gateway: str
) -> None:
    """The ID number went on to the departmental system in the URL (where the contract never puts one)
    and came back 404, which told the cadre nothing. Refused before any call, saying what a record id is;
    never repeated, recorded only as the keyed ref of the id asked for."""
    import httpx

    typed = RESIDENTS_A[0].id_number
    headers = {"Authorization": f"Bearer {stack.token('cadre_a')}"}
    for base in (stack.base_url, routed_gateway):
        resp = httpx.get(
            f"{base}/api/v1/datasets/residents/records/{typed}",
            params={"scenario": "DIBAO_REVIEW"},
            headers=headers,
            timeout=30,
        )
        body = _assert_error(resp, 422, "personal_data_in_record_id")
        assert str(body["message"]).startswith("链接中的记录编号像是身份证号或手机号")
        assert typed not in resp.text
        event = json.loads(stack.last_events(1)[0]["body"])
        assert (event["kind"], event["outcome"], event["reason"]) == (
            "data.read",
            "refused",
            "personal_data_in_record_id",
        )
        assert typed not in json.dumps(event) and event["details"]["requested_record_ref"]


@pytest.mark.parametrize(
    ("username", "query", "code"),
    [
        ("cadre_a", {"page_size": "1000"}, "page_size_over_limit"),
        ("cadre_a", {"page": "0"}, "invalid_page"),
        ("cadre_a", {"page_size": "500", "fields": "birth_date"}, "unknown_parameter"),
        (None, {"page_size": "100", "page": "3"}, "missing_token"),
    ],
)
def test_a_request_refused_before_its_paging_is_read_records_no_page_it_did_not_ask_for(
    stack: Stack, username: str | None, query: dict[str, str], code: str
) -> None:
    """A cadre asking for 1,000 records a page was recorded as having asked for page 1 of 20 (the
    defaults): a supervisor looking for bulk attempts read the opposite of what happened. What was not
    read is not recorded; a request whose paging was read records it."""
    stack.get(stack.records_url, username, scenario="DIBAO_REVIEW", **query)
    event = json.loads(stack.last_events(1)[0]["body"])
    assert (event["outcome"], event["reason"]) == ("refused", code)
    assert "page" not in event["details"] and "page_size" not in event["details"]

    stack.get(stack.records_url, "cadre_c", scenario="DIBAO_REVIEW", page="2", page_size="7")
    event = json.loads(stack.last_events(1)[0]["body"])
    assert event["outcome"] == "refused"  # her village has no grant in force (none, or lapsed by now)
    assert (event["details"]["page"], event["details"]["page_size"]) == (2, 7)
