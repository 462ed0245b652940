"""Supervision through the real stack: queries, reports, anomalies, complaint -> incident with proofs,
resident transparency, checkpoints (on demand and periodic), proofs, archives — API and CLI.

The complaint test drives real data requests as cadre_a first, and a neighbouring village's cadre asking
for one resident's record by id (refused: outside her jurisdiction), then complains with that resident's ID
number (from demoworld.build_world()), and checks the incident holds exactly the events of the requests
whose answers contained that resident, and the refused attempt at her record, each with a proof.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from audit import looks_like_personal_data, verify_consistency, verify_inclusion
from demoworld.world import build_world
from tests.grassroots_common.test_divisions import CODES
from tests.stack import Stack, stack_fixture

WORLD = build_world()
BASE = "/api/v1/supervision"
VILLAGE_A = WORLD.village_a
SUPERVISION_TABLES = (
    "audit_complaints",
    "audit_incidents",
    "audit_incident_evidence",
    "audit_incident_steps",
    "audit_archives",
)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def stack(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The shared stack, with periodic checkpoints every second so the test can see one being written."""
    yield from stack_fixture(backend, tmp_path_factory, extra_env={"GRASSROOTS_CHECKPOINT_INTERVAL_S": "1"})


def api(stack: Stack, method: str, path: str, user: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {stack.token(user)}"}
    return httpx.request(method, f"{stack.base_url}{BASE}{path}", headers=headers, timeout=60.0, **kwargs)


def read_as(stack: Stack, user: str, **params: Any) -> httpx.Response:
    return stack.get(stack.records_url, user, scenario="DIBAO_REVIEW", **params)


def events_for_requests(stack: Stack, request_ids: set[str]) -> list[int]:
    with stack.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT seq, body FROM audit_events ORDER BY seq")).all()
    return [int(seq) for seq, body in rows if json.loads(body)["request_id"] in request_ids]


@pytest.fixture(scope="module")
def readings(stack: Stack) -> dict[str, Any]:
    """cadre_a reads three pages and one record; cadre_b, of the neighbouring village, asks for that record
    by id and is refused. Returns the resident, the requests that served her, and the refused attempt."""
    seen: dict[str, set[str]] = {}
    for page in (1, 2, 3):
        resp = read_as(stack, "cadre_a", page=page, page_size=4)
        assert resp.status_code == 200, resp.text
        for item in resp.json()["items"]:
            seen.setdefault(item["id"], set()).add(resp.headers["x-request-id"])
    target_id = next(iter(seen))
    single = stack.get(f"{stack.records_url}/{target_id}", "cadre_a", scenario="DIBAO_REVIEW")
    assert single.status_code == 200
    seen[target_id].add(single.headers["x-request-id"])
    # A neighbour's attempt is refused (404, as if there were no such record): nothing of hers is served,
    # so the event names no resident, only the keyed ref of the record id asked for.
    refused = stack.get(f"{stack.records_url}/{target_id}", "cadre_b", scenario="DIBAO_REVIEW")
    assert refused.status_code == 404
    resident = next(r for r in WORLD.residents if r.id == target_id)
    return {
        "resident": resident,
        "request_ids": seen[target_id],
        "attempt_ids": {refused.headers["x-request-id"]},
    }


@pytest.mark.parametrize(
    ("user", "method", "path", "status"),
    [
        ("cadre_a", "GET", "/events", 403),
        ("ca_steward", "GET", "/reports", 403),
        ("auditor", "POST", "/complaints", 403),
        ("auditor", "GET", "/events", 200),
        ("supervisor", "GET", "/events?org=320000", 404),
        ("supervisor", "GET", "/events?org=abc", 422),
        (None, "GET", "/events", 401),
    ],
)
def test_who_may_supervise(stack: Stack, user: str | None, method: str, path: str, status: int) -> None:
    headers = {"Authorization": f"Bearer {stack.token(user)}"} if user else {}
    body = {"source": "walk_in", "id_number": WORLD.residents[0].id_number} if method == "POST" else None
    resp = httpx.request(method, f"{stack.base_url}{BASE}{path}", headers=headers, json=body, timeout=30)
    assert resp.status_code == status, resp.text
    if status >= 400:
        assert {"error", "message", "message_en"} <= set(resp.json())


def test_events_query_filters_by_subtree_and_pages(stack: Stack, readings: dict[str, Any]) -> None:
    first = api(stack, "GET", "/events", "supervisor", params={"org": VILLAGE_A, "kind": "data.", "limit": 2})
    assert first.status_code == 200
    body = first.json()
    assert len(body["items"]) == 2 and body["next_before"] is not None
    second = api(
        stack,
        "GET",
        "/events",
        "supervisor",
        params={"org": VILLAGE_A, "kind": "data.", "limit": 2, "before": body["next_before"]},
    )
    seqs = [e["seq"] for e in body["items"] + second.json()["items"]]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 4
    for item in body["items"] + second.json()["items"]:
        assert item["actor_org"] == VILLAGE_A
        assert not looks_like_personal_data(json.dumps(item, ensure_ascii=False))
    refused = api(stack, "GET", "/events", "supervisor", params={"outcome": "refused", "kind": "data.read"})
    assert refused.json()["items"] and all(e["outcome"] == "refused" for e in refused.json()["items"])


def test_reports_per_org_department_scenario(stack: Stack, readings: dict[str, Any]) -> None:
    by_org = api(stack, "GET", "/reports", "supervisor", params={"group_by": "org"}).json()
    row = next(r for r in by_org["rows"] if r["key"] == VILLAGE_A)
    assert row["allowed"] >= 4 and row["records_read"] >= 13 and row["distinct_users"] == 1
    by_town = api(stack, "GET", "/reports", "supervisor", params={"group_by": "org", "org_level": 9}).json()
    assert VILLAGE_A[:9] + "000" in {r["key"] for r in by_town["rows"]}
    by_dept = api(stack, "GET", "/reports", "auditor", params={"group_by": "department"}).json()
    assert "civil_affairs" in {r["key"] for r in by_dept["rows"]}
    by_scenario = api(stack, "GET", "/reports", "auditor", params={"group_by": "scenario"}).json()
    assert "DIBAO_REVIEW" in {r["key"] for r in by_scenario["rows"]}


def test_grants_and_supervision_accept_and_refuse_the_same_division_codes(stack: Stack) -> None:
    """One validator behind both: a code the grant list refuses the supervision query refuses too, with the
    same bilingual words (never echoing the code); a code one accepts the other does not refuse as
    malformed (the supervision query may still answer 404 for a code outside the supervisor's scope)."""
    headers = {"Authorization": f"Bearer {stack.token('supervisor')}"}
    for code, valid in CODES:
        if not code:
            continue  # an empty parameter is no filter, on both
        grants = httpx.get(
            f"{stack.base_url}/api/v1/grants", params={"org": code}, headers=headers, timeout=60
        )
        events = api(stack, "GET", "/events", "supervisor", params={"org": code, "limit": 1})
        if valid:
            assert grants.status_code == 200, (code, grants.text)
            assert events.status_code in (200, 404), (code, events.text)
            assert events.status_code == 200 or events.json()["error"] == "outside_scope"
            continue
        assert (grants.status_code, events.status_code) == (422, 422), code
        refusals = [
            (r.json()["error"], r.json()["message"], r.json()["message_en"]) for r in (grants, events)
        ]
        assert refusals[0] == refusals[1], code
        error, zh, en = refusals[0]
        assert error == "invalid_org" and zh.startswith("org 必须是") and en.startswith("org must be")
        assert code not in zh.replace("310151101000", "") and code not in en.replace("310151101000", "")


def test_anomaly_rules_are_parameterised_through_the_api(stack: Stack, readings: dict[str, Any]) -> None:
    strict = api(
        stack,
        "GET",
        "/anomalies",
        "supervisor",
        params={"rule": "bulk_reading", "setting": "bulk_reading.min_records=10"},
    ).json()
    cadre_a = WORLD.identity("cadre_a").user_id
    assert any(
        f["rule"] == "bulk_reading" and f["actor"] == cadre_a and f["seqs"] for f in strict["findings"]
    )
    assert strict["rules"]["bulk_reading"]["min_records"] == 10
    default = api(stack, "GET", "/anomalies", "supervisor", params={"rule": "bulk_reading"}).json()
    assert default["findings"] == []
    bad = api(stack, "GET", "/anomalies", "supervisor", params={"setting": "bulk_reading.nope=1"})
    assert bad.status_code == 422


def test_complaint_opens_incident_with_exactly_that_persons_accesses(
    stack: Stack, readings: dict[str, Any]
) -> None:
    resident = readings["resident"]
    served = events_for_requests(stack, readings["request_ids"])
    assert len(served) == len(readings["request_ids"]) >= 2
    [refused] = events_for_requests(stack, readings["attempt_ids"])
    attempt = next(e for e in stack.last_events(10_000) if e["seq"] == refused)
    body = json.loads(attempt["body"])
    assert (attempt["outcome"], attempt["actor"]) == ("refused", WORLD.identity("cadre_b").user_id)
    assert body["subject_refs"] == [] and body["details"]["requested_record_ref"]
    assert resident.id not in attempt["body"]  # the record id only as its keyed ref
    expected = sorted([*served, refused])
    resp = api(
        stack,
        "POST",
        "/complaints",
        "supervisor",
        json={
            "source": "hotline_12345",
            "id_number": resident.id_number.lower(),  # typed with a lower-case check character
            "summary": "居民来电反映其低保信息被查看，要求说明",
            "ticket": "12345-2026-11-0042",
        },
    )
    assert resp.status_code == 201, resp.text
    assert resident.id_number not in resp.text and resident.name not in resp.text
    incident_id = resp.json()["incident"]["incident_id"]
    complaint_id = resp.json()["complaint"]["complaint_id"]
    assert resp.json()["complaint"]["incident_status"] == "open"

    def where_it_stands() -> tuple[str | None, str | None]:
        """The complaint as the hotline reads it: its incident's status and disposition."""
        seen = api(stack, "GET", f"/complaints/{complaint_id}", "auditor").json()
        listed = next(
            c
            for c in api(stack, "GET", "/complaints", "auditor").json()["items"]
            if c["complaint_id"] == complaint_id
        )
        assert (listed["incident_status"], listed["disposition"]) == (
            seen["incident_status"],
            seen["disposition"],
        )
        return seen["incident_status"], seen["disposition"]

    assert where_it_stands() == ("open", None)
    incident = api(stack, "GET", f"/incidents/{incident_id}", "supervisor").json()
    assert resp.json()["evidence_events"] == len(expected)
    assert [e["seq"] for e in incident["evidence"]] == expected  # the refused attempt with its proof too
    assert incident["evidence_verified"] is True
    root = bytes.fromhex(incident["root_hash"])
    for item in incident["evidence"]:
        verify_inclusion(
            bytes.fromhex(item["leaf_hash"]),
            item["seq"] - 1,
            incident["tree_size"],
            [bytes.fromhex(p) for p in item["proof"]],
            root,
        )
    signed = api(stack, "GET", "/checkpoints", "auditor").json()["items"]
    assert any(
        c["tree_size"] == incident["tree_size"] and c["root_hash"] == incident["root_hash"] for c in signed
    )

    # The closed loop: assign, investigate, dispose; every step is an audit event.
    assert (
        api(
            stack,
            "POST",
            f"/incidents/{incident_id}/assign",
            "supervisor",
            json={"assignee": "county-inspector-3"},
        ).status_code
        == 200
    )
    assert (
        api(
            stack,
            "POST",
            f"/incidents/{incident_id}/notes",
            "supervisor",
            json={"note": "核对场景授权与访问时间"},
        ).status_code
        == 200
    )
    with_id = api(
        stack,
        "POST",
        f"/incidents/{incident_id}/notes",
        "supervisor",
        json={"note": f"身份证 {resident.id_number}"},
    )
    assert with_id.status_code == 422 and resident.id_number not in with_id.text
    done = api(
        stack,
        "POST",
        f"/incidents/{incident_id}/disposition",
        "supervisor",
        json={"disposition": "unsubstantiated", "note": "每次访问均在低保复核授权内"},
    )
    assert done.json()["status"] == "closed"
    assert where_it_stands() == ("closed", "unsubstantiated")
    kinds = [e["kind"] for e in stack.last_events(16)]
    for kind in (
        "supervision.complaint_registered",
        "supervision.incident_opened",
        "supervision.incident_assigned",
        "supervision.incident_note",
        "supervision.incident_disposed",
    ):
        assert kind in kinds
    again = api(stack, "POST", f"/incidents/{incident_id}/notes", "supervisor", json={"note": "x"})
    assert again.status_code == 409


def assign(stack: Stack, incident_id: str, due: str | None = None) -> None:
    """Assign the incident; ``due``: a deadline that has passed since (set in the database, as time would:
    the API refuses a deadline in the past)."""
    body = {"assignee": "county-inspector-3"}
    assert api(stack, "POST", f"/incidents/{incident_id}/assign", "supervisor", json=body).is_success
    if due is not None:
        with stack.engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE audit_incidents SET due_at = :due WHERE incident_id = :i"),
                {"due": datetime.fromisoformat(due).astimezone(UTC), "i": incident_id},
            )


def test_overdue_list(stack: Stack, readings: dict[str, Any]) -> None:
    resident = WORLD.residents_of(VILLAGE_A)[-1]
    created = api(
        stack,
        "POST",
        "/complaints",
        "supervisor",
        json={"source": "walk_in", "id_number": resident.id_number},
    ).json()
    incident_id = created["incident"]["incident_id"]
    assert created["evidence_events"] >= 0
    # A deadline in the past is refused (a typed year wrong); the one given has since passed.
    past = "2020-01-01T00:00:00+08:00"
    refused = api(
        stack,
        "POST",
        f"/incidents/{incident_id}/assign",
        "supervisor",
        json={"assignee": "x", "due_at": past},
    )
    assert refused.status_code == 422 and refused.json()["message"].startswith("新的办结期限已经过去")
    assign(stack, incident_id, due="2020-01-01T00:00:00+08:00")
    overdue = api(stack, "GET", "/incidents/overdue", "auditor").json()["items"]
    assert [i["incident_id"] for i in overdue] == [incident_id]
    assert overdue[0]["overdue"] is True
    # Its own (moved) deadline is missed; the complaint's 15 days to answer are not over yet.
    (missed,) = overdue[0]["overdue_deadlines"]
    assert missed["deadline"] == "incident_close" and missed["days_overdue"] > 365
    assert missed["message"].startswith("事件办结期限已逾期") and missed["message_en"].startswith("incident")
    complaint = api(stack, "GET", f"/complaints/{created['complaint']['complaint_id']}", "auditor").json()
    assert complaint["overdue"] is True and complaint["overdue_deadlines"] == overdue[0]["overdue_deadlines"]

    # The case lists page on: limit and offset, with the total (they stopped at 100 with no way on).
    everything = api(stack, "GET", "/complaints", "auditor").json()
    assert (everything["total"], everything["limit"], everything["offset"]) == (
        len(everything["items"]),
        100,
        0,
    )
    first = api(stack, "GET", "/complaints?limit=1", "auditor").json()
    rest = api(stack, "GET", "/complaints?limit=500&offset=1", "auditor").json()
    assert [c["complaint_id"] for c in first["items"] + rest["items"]] == [
        c["complaint_id"] for c in everything["items"]
    ]
    page = api(stack, "GET", "/incidents/overdue?limit=1&offset=0", "auditor").json()
    assert page["total"] == 1 and [i["incident_id"] for i in page["items"]] == [incident_id]
    assert api(stack, "GET", "/incidents?overdue=true&offset=1", "auditor").json()["items"] == []
    for bad in ("limit=0", "limit=501", "offset=-1"):
        refused = api(stack, "GET", f"/complaints?{bad}", "auditor")
        assert refused.status_code == 422, bad


def test_resident_transparency_shows_org_and_role_not_names(stack: Stack, readings: dict[str, Any]) -> None:
    resident = readings["resident"]
    resp = api(stack, "POST", "/transparency", "supervisor", json={"id_number": resident.id_number})
    assert resp.status_code == 200
    body = resp.json()
    assert body["count"] == len(readings["request_ids"])
    cadre = WORLD.identity("cadre_a")
    for entry in body["accesses"]:
        assert entry["org"] == VILLAGE_A
        assert entry["roles"] == ["village_cadre"] and entry["role_labels"] == ["村（居）委会干部"]
        assert entry["scenario"] == "DIBAO_REVIEW" and entry["scenario_name"] == "低保年度复核"
        # How it was shown: desensitised under the read's profile, not the whole ID number.
        assert entry["masking_profile"] == "standard"
        # What was read, in the catalog's words the resident is told, beside the codes.
        assert entry["dataset"] == "residents" and entry["dataset_title"] == "居民登记信息"
        assert len(entry["field_titles"]) == len(entry["fields"])
        titles = dict(zip(entry["fields"], entry["field_titles"], strict=True))
        assert titles["name"] == "姓名" and titles["id_number"] == "公民身份号码"
        assert titles["dibao_status"] != "dibao_status"
        # The time as the resident is told it: Beijing time, the same instant as the UTC one.
        utc = datetime.fromisoformat(entry["occurred_at"].replace("Z", "+00:00"))
        local = datetime.strptime(entry["occurred_at_beijing"], "%Y-%m-%d %H:%M:%S")
        assert local == (utc + timedelta(hours=8)).replace(tzinfo=None, microsecond=0)
    for secret in (cadre.user_id, cadre.display_name, resident.id_number, resident.name):
        assert secret not in resp.text
    bad = api(stack, "POST", "/transparency", "supervisor", json={"id_number": "110105194912310029"})
    assert bad.status_code == 422 and "110105194912310029" not in bad.text


def test_transparency_finds_the_reads_whatever_way_the_number_was_typed(
    stack: Stack, readings: dict[str, Any]
) -> None:
    """A supervisor types the number the resident reads out on the phone: in groups, or full-width from a
    Chinese input method. Full-width digits passed validation and found no access at all ("nobody read
    your data"), which is false."""
    number = readings["resident"].id_number
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in number)
    grouped = f"{number[:6]}-{number[6:14]}-{number[14:]}"
    # An input method's dash, and the number typed digit by digit as it was read out: the latter was
    # refused as "at most 24 characters" before the number was even looked at.
    dashed = f"{number[:6]}—{number[6:14]}—{number[14:]}"
    spaced = " ".join(number)
    for typed in (number, full_width, grouped, dashed, spaced):
        resp = api(stack, "POST", "/transparency", "supervisor", json={"id_number": typed})
        assert resp.status_code == 200, resp.text
        assert resp.json()["count"] == len(readings["request_ids"]), typed
    # Too short: the hotline is told how many characters were typed, not a field's length limits.
    short = api(stack, "POST", "/transparency", "supervisor", json={"id_number": number[:12]})
    assert (short.status_code, short.json()["error"]) == (422, "invalid_id_number"), short.text
    assert "输入的是 12 位" in short.json()["message"] and number[:12] not in short.text


def test_transparency_pages_newest_first(stack: Stack, readings: dict[str, Any]) -> None:
    """A resident read every day for years has thousands of reads: the answer comes ``limit`` at a time,
    the latest first (what a caller asks about), ``total`` saying how many in all; the pages together are
    the whole list. It was every read at once, oldest first, however many."""
    body = {"id_number": readings["resident"].id_number}
    whole = api(stack, "POST", "/transparency", "supervisor", json=body, params={"limit": 500}).json()
    total = len(readings["request_ids"])
    assert (whole["total"], whole["count"]) == (total, total) and total >= 2
    seqs = [a["seq"] for a in whole["accesses"]]
    assert seqs == sorted(seqs, reverse=True)
    pages = []
    for offset in range(total):
        page = api(
            stack, "POST", "/transparency", "supervisor", json=body, params={"limit": 1, "offset": offset}
        ).json()
        assert (page["count"], page["total"], page["limit"], page["offset"]) == (1, total, 1, offset)
        pages += [a["seq"] for a in page["accesses"]]
    assert pages == seqs
    past = api(stack, "POST", "/transparency", "supervisor", json=body, params={"offset": total}).json()
    assert (past["accesses"], past["total"]) == ([], total)
    too_many = api(stack, "POST", "/transparency", "supervisor", json=body, params={"limit": 501})
    assert too_many.status_code == 422 and body["id_number"] not in too_many.text


def readme_outsider_check() -> str:
    """The README's "Checking them without the gateway's code" script (its one ``python`` block)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert len(blocks) == 1, "README: one python block, the outsider's check"
    return str(blocks[0])


def test_the_readme_outsider_check_verifies_real_proofs(stack: Stack, tmp_path: Path) -> None:
    """The README says a supervisory office can check a checkpoint and the proofs without this code: its
    script (hashlib and cryptography only, run as its own process, nothing of ours imported) passes the
    proofs the API hands out, signed with the key the operator exports, and refuses altered ones."""
    from cryptography.hazmat.primitives import serialization

    script = tmp_path / "check.py"
    script.write_text(readme_outsider_check(), encoding="utf-8")
    key = serialization.load_pem_private_key(
        (stack.data_dir / "keys" / "audit-checkpoint-ed25519.pem").read_bytes(), password=None
    )
    public = tmp_path / "checkpoint.pub.pem"  # openssl pkey -in ... -pubout
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    assert api(stack, "POST", "/checkpoints", "auditor").status_code == 201
    read_as(stack, "cadre_a", page=1, page_size=2)
    assert api(stack, "POST", "/checkpoints", "auditor").status_code == 201
    consistency = api(stack, "GET", "/proofs/consistency", "auditor").json()
    (tmp_path / "consistency.json").write_text(json.dumps(consistency), encoding="utf-8")

    def outsider(inclusion: dict[str, Any], name: str = "inclusion.json") -> subprocess.CompletedProcess[str]:
        (tmp_path / name).write_text(json.dumps(inclusion), encoding="utf-8")
        return subprocess.run(
            [
                sys.executable,
                "-I",
                str(script),
                str(public),
                str(tmp_path / name),
                str(tmp_path / "consistency.json"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            check=False,
        )

    size = consistency["new_size"]
    for seq in sorted({1, 2, 3, size // 2, size}):
        inclusion = api(stack, "GET", "/proofs/inclusion", "auditor", params={"seq": seq}).json()
        done = outsider(inclusion)
        assert done.returncode == 0, (seq, done.stdout, done.stderr)
        assert f"event {seq} is in the signed log of" in done.stdout
    # Altered: a leaf, a proof node, the signed time; the consistency proof.
    leaf = {**inclusion, "leaf_hash": "00" * 32}
    node = {**inclusion, "proof": ["00" * 32, *inclusion["proof"][1:]]}
    timed = {
        **inclusion,
        "checkpoint": {**inclusion["checkpoint"], "timestamp": "2026-01-01T00:00:00.000000Z"},
    }
    for altered in (leaf, node, timed):
        assert outsider(altered, "altered.json").returncode != 0
    consistency["proof"] = ["00" * 32, *consistency["proof"][1:]]
    (tmp_path / "consistency.json").write_text(json.dumps(consistency), encoding="utf-8")
    assert outsider(inclusion).returncode != 0


def test_inclusion_and_consistency_proofs(stack: Stack, readings: dict[str, Any]) -> None:
    first = api(stack, "POST", "/checkpoints", "auditor")
    assert first.status_code == 201
    read_as(stack, "cadre_a", page=1, page_size=2)
    second = api(stack, "POST", "/checkpoints", "supervisor").json()
    proof = api(stack, "GET", "/proofs/inclusion", "auditor", params={"seq": 3}).json()
    verify_inclusion(
        bytes.fromhex(proof["leaf_hash"]),
        2,
        proof["tree_size"],
        [bytes.fromhex(p) for p in proof["proof"]],
        bytes.fromhex(proof["root_hash"]),
    )
    assert proof["checkpoint"] is not None
    cons = api(
        stack,
        "GET",
        "/proofs/consistency",
        "auditor",
        params={"old": first.json()["tree_size"], "new": second["tree_size"]},
    ).json()
    verify_consistency(
        cons["old_size"],
        cons["new_size"],
        [bytes.fromhex(p) for p in cons["proof"]],
        bytes.fromhex(cons["old_root"]),
        bytes.fromhex(cons["new_root"]),
    )
    assert cons["new_root"] == second["root_hash"]
    missing = api(stack, "GET", "/proofs/inclusion", "auditor", params={"seq": 10**9})
    assert missing.status_code == 404 and missing.json()["error"] == "no_such_event"
    # No tree size was given: the answer says how many events the log holds, not "the given tree size".
    assert "日志中还没有所给序号（seq）的事件（现有" in missing.json()["message"]
    assert "1000000000" not in missing.text
    assert "given tree size" not in missing.json()["message_en"]
    too_big = api(stack, "GET", "/proofs/inclusion", "auditor", params={"seq": 1, "tree_size": 10**9})
    assert too_big.status_code == 404 and "超过了日志现有的" in too_big.json()["message"]


def test_a_query_parameter_an_endpoint_does_not_take_is_refused_not_ignored(stack: Stack) -> None:
    """An auditor asking for the proof between 40 and 36 under names the endpoint does not take (old_size,
    new_size for old, new) was answered the default proof, between the two latest checkpoints, as if that
    were what she asked: FastAPI ignores an undeclared parameter. Refused now, naming what is taken and
    never what was sent; the caller is checked first, and a correct query is answered as before."""
    wrong = api(stack, "GET", "/proofs/consistency", "auditor", params={"old_size": 40, "new_size": 36})
    assert wrong.status_code == 422, wrong.text
    body = wrong.json()
    assert body["error"] == "unknown_parameter"
    assert "本接口只接受 new、old" in body["message"] and "It takes only new, old" in body["message_en"]
    assert "old_size" not in wrong.text and "new_size" not in wrong.text
    # An endpoint that takes no query says so.
    none = api(stack, "GET", "/checkpoints", "auditor", params={"since": "2026-01-01"})
    assert none.status_code == 422 and none.json()["error"] == "unknown_parameter"
    assert "本接口不接受任何查询参数" in none.json()["message"]
    # The caller first: anonymous is 401 whatever the query holds; a refused role is 403.
    anonymous = httpx.get(f"{stack.base_url}{BASE}/proofs/consistency", params={"old_size": 1}, timeout=60)
    assert anonymous.status_code == 401
    cadre = api(stack, "GET", "/proofs/consistency", "cadre_a", params={"old_size": 1})
    assert cadre.status_code == 403
    assert api(stack, "GET", "/checkpoints", "auditor").status_code == 200


def test_periodic_checkpoints_are_written(stack: Stack) -> None:
    directory = stack.data_dir / "checkpoints"
    before = len(list(directory.glob("checkpoint-*.json"))) if directory.exists() else 0
    read_as(stack, "cadre_a", page=1, page_size=1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if len(list(directory.glob("checkpoint-*.json"))) > before:
            break
        time.sleep(0.2)
    assert len(list(directory.glob("checkpoint-*.json"))) > before


FULL_WIDTH = str.maketrans("0123456789-", "０１２３４５６７８９－")


def test_monthly_report_formats(stack: Stack, readings: dict[str, Any]) -> None:
    month = time.strftime("%Y-%m", time.gmtime(time.time() + 8 * 3600))
    # The month's cases count this complaint whether or not another test registered one before.
    walk_in = {"source": "walk_in", "id_number": readings["resident"].id_number, "summary": "来访反映"}
    assert api(stack, "POST", "/complaints", "supervisor", json=walk_in).status_code == 201
    data = api(
        stack, "GET", "/reports/monthly", "supervisor", params={"month": month, "format": "json"}
    ).json()
    assert data["totals"]["allowed"] >= 4 and data["cases"]["complaints_received"] >= 1
    csv_resp = api(stack, "GET", "/reports/monthly", "supervisor", params={"month": month, "format": "csv"})
    assert csv_resp.headers["content-type"].startswith("text/csv")
    header = csv_resp.text.lstrip("\ufeff").split("\r\n", 1)[0]
    assert header.startswith("类别/section,代码/key,名称/name,允许/allowed,拒绝/refused")
    html = api(stack, "GET", "/reports/monthly", "supervisor", params={"month": month}).text
    assert "数据访问情况定期通报" in html and "<svg" in html and "<script" not in html
    # A month as people write it (2026-1, 2026年1月, full-width digits) is the same month; one that does not
    # exist is refused with words saying what is taken, the value not repeated.
    year, number = month.split("-")
    for typed in (
        f"{year}-{int(number)}",
        f"{year}年{int(number)}月",
        f"{year}-{number}".translate(FULL_WIDTH),
    ):
        same = api(stack, "GET", "/reports/monthly", "supervisor", params={"month": typed, "format": "json"})
        assert (same.status_code, same.json()["month"]) == (200, month), same.text
    impossible = api(stack, "GET", "/reports/monthly", "supervisor", params={"month": "2026-13"})
    assert impossible.status_code == 422
    assert "须为存在的月份" in impossible.json()["message"] and "2026-13" not in impossible.text
    future = api(stack, "GET", "/reports/monthly", "supervisor", params={"month": "2099-01"})
    assert (future.status_code, future.json()["error"]) == (422, "month_not_started")
    assert future.json()["message"].startswith("2099-01 尚未开始") and month in future.json()["message"]
    # A month before the log's first event was an all-zero 通报 like any quiet month: it says so.
    early = api(stack, "GET", "/reports/monthly", "supervisor", params={"month": "2020-01", "format": "json"})
    assert early.status_code == 200, early.text
    assert early.json()["note"].startswith("审计日志从 ") and "2020-01 早于此" in early.json()["note"]
    assert (
        early.json()["note_en"].startswith("The audit log begins on ") and early.json()["note_en"].isascii()
    )
    early_csv = api(
        stack, "GET", "/reports/monthly", "supervisor", params={"month": "2020-01", "format": "csv"}
    )
    assert '\r\nnote,,"审计日志从 ' in early_csv.text and "Grassroots-Note" in early_csv.headers
    assert "note" not in data  # the month it began in counts what it holds


def test_the_monthly_report_names_refusals_for_a_dataset_that_names_nothing(stack: Stack) -> None:
    """A cadre's typo in the dataset (recorded as ``invalid``, never as typed) made a department row the
    通报 showed as the bare English word; it is named in Chinese, in the page and the CSV."""
    month = time.strftime("%Y-%m", time.gmtime(time.time() + 8 * 3600))
    typo_url = stack.records_url.replace("/residents/", "/residnets/")
    typo = stack.get(typo_url, "cadre_a", scenario="DIBAO_REVIEW")
    assert typo.status_code == 404
    html = api(stack, "GET", "/reports/monthly", "supervisor", params={"month": month}).text
    assert "<td>未编目的数据集（invalid）</td>" in html and "<td>invalid</td>" not in html
    assert "residnets" not in html
    query = {"month": month, "format": "csv"}
    csv_text = api(stack, "GET", "/reports/monthly", "supervisor", params=query).text
    assert "\r\ndepartment,invalid,未编目的数据集," in csv_text


def test_every_refusal_of_the_data_path_has_words_in_the_monthly_report() -> None:
    """The printed report names refusal reasons in Chinese; a new policy or routing code needs words."""
    from gateway.routes.supervision import REFUSAL_REASONS_ZH
    from policies.reasons import DENIAL_ORDER

    routing = ("system_not_registered", "system_not_approved", "system_suspended", "system_revoked")
    grids = ("grid_scope_unassigned", "grid_scope_invalid", "grid_scope_unsupported")
    parsing = (
        "missing_scenario",
        "invalid_scenario",
        "repeated_parameter",
        "unknown_parameter",
        "invalid_page",
        "invalid_page_size",
    )
    for code in (
        *DENIAL_ORDER,
        *routing,
        "system_lapsed",
        *grids,
        *parsing,
        "not_found",
        "personal_data_in_record_id",
        "reidentification_risk",
    ):
        assert REFUSAL_REASONS_ZH.get(code), code


def test_archive_a_month_and_verify_it(stack: Stack, readings: dict[str, Any]) -> None:
    month = time.strftime("%Y-%m", time.gmtime(time.time() + 8 * 3600))
    made = api(stack, "POST", "/archives", "auditor", json={"month": month})
    assert made.status_code == 201, made.text
    archive_id = made.json()["manifest_file"].removesuffix(".manifest.json")
    before = stack.audit_count()
    verdict = api(stack, "GET", f"/archives/{archive_id}/verify", "auditor").json()
    assert verdict["ok"] is True and verdict["checked"] == made.json()["count"]
    (checked,) = stack.last_events(stack.audit_count() - before)  # verifying is a supervisory act too
    assert checked["kind"] == "supervision.archive_verified"
    assert json.loads(checked["body"])["details"] == {
        "archive_id": archive_id,
        "intact": True,
        "checked": verdict["checked"],
    }
    cli = stack.cli(
        "supervise", "archive-verify", str(stack.data_dir / "archives" / made.json()["manifest_file"])
    )
    assert "archive intact" in cli.stdout
    retention = api(stack, "GET", "/retention", "auditor").json()
    assert retention["retention_years"] == 3 and month in retention["archived_months"]
    assert stack.audit_count() >= made.json()["last_seq"]  # archived events stay in the log


def test_cli_is_a_client_of_the_api(stack: Stack, readings: dict[str, Any]) -> None:
    url = ["--url", stack.base_url, "--as", "supervisor"]
    out = stack.cli("supervise", "events", *url, "--org", VILLAGE_A, "--limit", "1")
    assert json.loads(out.stdout)["items"][0]["actor_org"] == VILLAGE_A
    env = {**stack.env, "GRASSROOTS_SUBJECT_ID_NUMBER": readings["resident"].id_number}
    who = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "supervise", "who-read", *url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    via_api = api(
        stack, "POST", "/transparency", "supervisor", json={"id_number": readings["resident"].id_number}
    )
    assert json.loads(who.stdout)["accesses"] == via_api.json()["accesses"]
    # What to tell the resident, in sentences on stderr: the JSON alone had to be read out field by field.
    said = who.stderr.splitlines()
    count = via_api.json()["count"]
    assert said[0] == f"该居民的数据共被查看 {count} 次（只列出获准的查看；被拒绝的尝试见投诉事件）："
    assert len(said) == count + 2 and said[-1].startswith(f"{count} allowed reads")
    told = "东风村村民委员会（村（居）委会干部）为「低保年度复核」查看了居民登记信息（按脱敏规则显示）："
    assert f"（北京时间） {told}" in said[1]
    assert "姓名、公民身份号码" in said[1]
    for secret in (readings["resident"].id_number, readings["resident"].name):
        assert secret not in who.stderr
    denied = stack.cli("supervise", "events", "--url", stack.base_url, "--as", "cadre_a", check=False)
    assert denied.returncode == 1 and "no_permission" in denied.stderr
    assert stack.cli("supervise", "proof", "1", *url).returncode == 0


def supervision_tables_dump(stack: Stack) -> str:
    """Every value of the case tables and the audit log, as text (bytes as latin-1), for a scan."""
    dump: list[str] = []
    with stack.engine.connect() as conn:
        for table in (*SUPERVISION_TABLES, "audit_events"):
            for row in conn.execute(sa.text(f"SELECT * FROM {table}")):  # noqa: S608 -- fixed names
                dump += [
                    bytes(v).decode("latin-1") if isinstance(v, bytes | memoryview) else str(v) for v in row
                ]
    return "\n".join(dump)


def test_no_plain_personal_data_in_supervision_tables(stack: Stack, readings: dict[str, Any]) -> None:
    haystack = supervision_tables_dump(stack)
    assert "supervision.complaint_registered" in haystack  # the scan does see the new rows
    for resident in WORLD.residents_of(VILLAGE_A):
        for value in (resident.id_number, resident.mobile, resident.name):
            assert value not in haystack
    assert not looks_like_personal_data(haystack)
    if stack.backend == "sqlite":
        raw = b"".join(p.read_bytes() for p in stack.data_dir.glob("gateway.db*"))
        assert readings["resident"].id_number.encode() not in raw


_FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
# Personal data as people type it into a summary or a note: grouped, hyphenated, full-width, a name
# after a cue word. Each is refused with a message that names the kind and does not repeat the value.
DISGUISED: list[tuple[str, Any]] = [
    ("id_number", lambda r: f"身份证 {r.id_number[:6]} {r.id_number[6:14]} {r.id_number[14:]}"),
    ("mobile", lambda r: f"回电 {r.mobile[:3]}-{r.mobile[3:7]}-{r.mobile[7:]}"),
    ("mobile", lambda r: "回电" + r.mobile.translate(_FULL_WIDTH)),
    ("person", lambda r: f"户主{r.name}，反映被查看"),
]


@pytest.mark.parametrize(("kind", "write"), DISGUISED)
def test_personal_data_typed_into_a_summary_or_a_note_is_refused(
    stack: Stack, readings: dict[str, Any], kind: str, write: Any
) -> None:
    resident = readings["resident"]
    text = write(resident)
    before = stack.audit_count()
    complaint = {"source": "walk_in", "id_number": resident.id_number, "summary": text}
    resp = api(stack, "POST", "/complaints", "supervisor", json=complaint)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"] == "personal_data_in_summary" and resp.json()["personal_data_kind"] == kind
    for value in (resident.id_number, resident.mobile, resident.name, text):
        assert value not in resp.text
    assert stack.audit_count() == before  # nothing registered, nothing recorded

    opened = api(stack, "POST", "/complaints", "supervisor", json={**complaint, "summary": "来访反映"})
    incident_id = opened.json()["incident"]["incident_id"]
    for path, body, code in (
        ("notes", {"note": text}, "personal_data_in_note"),
        ("disposition", {"disposition": "referred", "note": text}, "personal_data_in_note"),
        ("assign", {"assignee": text}, "personal_data_in_assignee"),
    ):
        resp = api(stack, "POST", f"/incidents/{incident_id}/{path}", "supervisor", json=body)
        assert resp.status_code == 422 and resp.json()["error"] == code, resp.text
        assert resp.json()["personal_data_kind"] == kind
        assert text not in resp.text


def test_refused_administrative_attempts_are_events(stack: Stack) -> None:
    """A missing permission and a failed sign-in on an administrative endpoint are recorded before the
    answer, as refused reads are: the reason code, the permission asked for, who (from a valid token)
    and the request id; never the token."""
    denied = api(stack, "GET", "/events", "cadre_a")
    assert denied.status_code == 403
    bad_token = "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    failed = httpx.get(f"{stack.base_url}{BASE}/events", headers={"Authorization": bad_token}, timeout=60.0)
    assert failed.status_code == 401

    refused = api(stack, "GET", "/events", "supervisor", params={"kind": "admin.refused"}).json()["items"]
    mine = [e for e in refused if e["request_id"] == denied.headers["x-request-id"]]
    assert len(mine) == 1
    (event,) = mine
    assert (event["outcome"], event["reason"], event["details"]) == (
        "refused",
        "no_permission",
        {"permission": "read audit"},
    )
    assert event["actor_org"] == VILLAGE_A and event["actor_roles"] == ["village_cadre"]

    with stack.engine.connect() as conn:
        bodies = [json.loads(b) for (b,) in conn.execute(sa.text("SELECT body FROM audit_events"))]
    (sign_in,) = [b for b in bodies if b["request_id"] == failed.headers["x-request-id"]]
    assert (sign_in["kind"], sign_in["actor"], sign_in["outcome"]) == ("auth.refused", "anonymous", "refused")
    assert sign_in["details"] == {"permission": "read audit"}
    assert "c2lnbmF0dXJl" not in json.dumps(bodies)

    # No organisation is charged with it: the platform's own event, listed for the district's supervisor
    # (the jurisdiction the platform serves), not for a query narrowed to one village.
    def listed(**params: str) -> set[str | None]:
        items = api(stack, "GET", "/events", "supervisor", params={"kind": "auth.refused", **params}).json()
        return {e["request_id"] for e in items["items"]}

    assert failed.headers["x-request-id"] in listed()
    assert failed.headers["x-request-id"] not in listed(org=VILLAGE_A)


def test_reports_count_the_accesses_the_events_list_shows_the_district(stack: Stack) -> None:
    """A data request no organisation is charged with (no token) is listed for the district's supervisor,
    the jurisdiction the platform serves; the access report, the monthly 通报 (JSON, CSV) and the
    anomaly rules read the same events for her, under (unknown), 未能确定所属单位, and a village's
    figures still leave it out. They did not: the events list showed the refused request and the 通报
    did not count it."""
    anonymous = httpx.get(stack.records_url, params={"scenario": "DIBAO_REVIEW"}, timeout=30.0)
    assert anonymous.status_code == 401
    beijing = timezone(timedelta(hours=8))
    month_start = datetime.now(beijing).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    month = month_start.strftime("%Y-%m")

    listed = api(
        stack,
        "GET",
        "/events",
        "supervisor",
        params={"kind": "data.", "outcome": "refused", "since": month_start.isoformat(), "limit": 500},
    ).json()["items"]
    assert anonymous.headers["x-request-id"] in {e["request_id"] for e in listed}
    unattributed = sum(1 for e in listed if e["actor_org"] is None)

    monthly = api(
        stack, "GET", "/reports/monthly", "supervisor", params={"month": month, "format": "json"}
    ).json()
    assert monthly["totals"]["refused"] == len(listed)
    unknown = {row["key"]: row["refused"] for row in monthly["by_org"]}.get("(unknown)")
    assert unknown == unattributed
    csv_text = api(
        stack, "GET", "/reports/monthly", "supervisor", params={"month": month, "format": "csv"}
    ).text
    assert f"organisation,(unknown),未能确定所属单位,0,{unattributed}," in csv_text

    report = api(stack, "GET", "/reports", "supervisor", params={"since": month_start.isoformat()}).json()
    assert report["totals"]["refused"] == len(listed)
    # named as the 通报 names it (it was "name": null)
    assert {row["key"]: row["name"] for row in report["rows"]}["(unknown)"] == "未能确定所属单位"

    findings = api(
        stack,
        "GET",
        "/anomalies",
        "supervisor",
        params={
            "rule": "refusal_spike",
            "setting": ["refusal_spike.min_refusals=1", "refusal_spike.min_ratio=0"],
        },
    )
    assert findings.status_code == 200, findings.text
    # Requests without a valid token are nobody's: never a user called "anonymous" refused again and again
    # (同一用户…被拒绝), but a finding about no user, as the CLI says it too.
    found = findings.json()["findings"]
    assert "anonymous" not in {f["actor"] for f in found}
    seq = next(e["seq"] for e in listed if e["request_id"] == anonymous.headers["x-request-id"])
    (nobodys,) = [f for f in found if seq in f["seqs"]]
    assert (nobodys["actor"], nobodys["actor_org"], nobodys["unauthenticated"]) == (None, None, True)
    assert "不归属于任何用户" in nobodys["summary_zh"] and "同一用户" not in nobodys["summary_zh"]
    said = stack.cli(
        "supervise", "anomalies", "--rule", "refusal_spike", "--set", "refusal_spike.min_refusals=1",
        "--set", "refusal_spike.min_ratio=0", "--as", "supervisor", "--url", stack.base_url,
    )  # fmt: skip
    assert [f for f in json.loads(said.stdout)["findings"] if seq in f["seqs"]] == [nobodys]
    # The finding says how to list these requests; pasted, that command lists this one (the auth. events
    # it used to point at alone hold no refused data request).
    command = "grassroots supervise events --actor anonymous --outcome refused"
    assert command in nobodys["summary_zh"] and command in nobodys["summary_en"]
    these = stack.cli(*command.split()[1:], "--limit", "500", "--as", "supervisor", "--url", stack.base_url)
    assert seq in {e["seq"] for e in json.loads(these.stdout)["items"]}

    village = api(
        stack,
        "GET",
        "/reports/monthly",
        "supervisor",
        params={"month": month, "format": "json", "org": VILLAGE_A},
    ).json()
    assert "(unknown)" not in {row["key"] for row in village["by_org"]}


def test_every_sign_in_refusal_is_named_for_the_monthly_report() -> None:
    """The 通报 names each refusal reason in Chinese beside its code; a request refused at sign-in is
    recorded with its sign-in code (missing_token, session_revoked, or one of AuthErrorCode)."""
    from typing import get_args

    from gateway.auth.oidc import AuthErrorCode
    from gateway.routes.supervision import REFUSAL_REASONS_ZH

    unnamed = {*get_args(AuthErrorCode), "missing_token", "session_revoked"} - set(REFUSAL_REASONS_ZH)
    assert not unnamed


def test_monthly_report_names_a_sign_in_refusal(stack: Stack) -> None:
    """The district's 通报 counts a request without a token (charged to no organisation): its refusal
    reason is named like every other, 未携带登录凭证（missing_token）, not as the bare code."""
    anonymous = httpx.get(stack.records_url, params={"scenario": "DIBAO_REVIEW"}, timeout=30.0)
    assert anonymous.status_code == 401
    month = datetime.now(timezone(timedelta(hours=8))).strftime("%Y-%m")
    html = api(stack, "GET", "/reports/monthly", "supervisor", params={"month": month}).text
    assert "未携带登录凭证（missing_token）" in html
    csv_text = api(
        stack, "GET", "/reports/monthly", "supervisor", params={"month": month, "format": "csv"}
    ).text
    assert "refusal_reason,missing_token,未携带登录凭证," in csv_text


# -- the departmental systems' record-id lookup: attempts at records no allowed read ever served ---------

#: 新建村: no identity of the demo sits there, so in this module nobody is ever served its residents.
UNREAD_VILLAGE = "310151101203"


@pytest.fixture(scope="module")
def probe(stack: Stack) -> dict[str, Any]:
    """cadre_b (永乐村) asks for a record id of a resident of 新建村 directly: refused (404) after the
    registry found nothing inside her village. No allowed read ever served that resident, so the log alone
    cannot tie the attempt to her: only the civil-affairs registry knows whose record it is."""
    resident = WORLD.residents_of(UNREAD_VILLAGE)[0]
    refused = stack.get(f"{stack.records_url}/{resident.id}", "cadre_b", scenario="DIBAO_REVIEW")
    assert refused.status_code == 404, refused.text
    [seq] = events_for_requests(stack, {refused.headers["x-request-id"]})
    return {"resident": resident, "seq": seq}


def complain_about(stack: Stack, id_number: str) -> httpx.Response:
    return api(
        stack,
        "POST",
        "/complaints",
        "supervisor",
        json={"source": "walk_in", "id_number": id_number, "summary": "居民来访询问谁查看了其信息"},
    )


def events_of(stack: Stack, request_id: str, kind: str) -> list[dict[str, Any]]:
    with stack.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT seq, body FROM audit_events ORDER BY seq")).all()
    bodies = [{"seq": int(seq), "raw": body, **json.loads(body)} for seq, body in rows]
    return [b for b in bodies if b["request_id"] == request_id and b["kind"] == kind]


def test_complaint_finds_a_refused_attempt_at_a_record_no_allowed_read_ever_served(
    stack: Stack, probe: dict[str, Any]
) -> None:
    resident = probe["resident"]
    resp = complain_about(stack, resident.id_number)
    assert resp.status_code == 201, resp.text
    answer = resp.json()
    assert answer["evidence_complete"] is True and answer["evidence_incomplete"] == []
    assert resident.id_number not in resp.text and resident.id not in resp.text

    incident = api(stack, "GET", f"/incidents/{answer['incident']['incident_id']}", "supervisor").json()
    assert probe["seq"] in [e["seq"] for e in incident["evidence"]]
    assert incident["evidence_verified"] is True and incident["evidence_complete"] is True
    item = next(e for e in incident["evidence"] if e["seq"] == probe["seq"])
    verify_inclusion(
        bytes.fromhex(item["leaf_hash"]),
        item["seq"] - 1,
        incident["tree_size"],
        [bytes.fromhex(p) for p in item["proof"]],
        bytes.fromhex(incident["root_hash"]),
    )
    [attempt] = [e for e in incident["events"] if e["seq"] == probe["seq"]]
    assert (attempt["outcome"], attempt["actor"]) == ("refused", WORLD.identity("cadre_b").user_id)

    # The lookup is itself a read about the person: one event per dataset asked, the subject as its ref,
    # counts only, never the ID number or a record id.
    lookups = events_of(stack, resp.headers["x-request-id"], "supervision.record_lookup")
    ref = answer["complaint"]["subject_ref"]
    assert {e["dataset"] for e in lookups} == {"residents", "houses", "occupants"}
    for event in lookups:
        assert (event["outcome"], event["subject_refs"]) == ("ok", [ref])
        assert event["actor"] == WORLD.identity("supervisor").user_id
        assert resident.id_number not in event["raw"] and resident.id not in event["raw"]
        assert not looks_like_personal_data(event["raw"])
    assert next(e for e in lookups if e["dataset"] == "residents")["record_count"] == 1
    # Why the old search missed it: no allowed read in the log ever served this person.
    with stack.engine.connect() as conn:
        bodies = [json.loads(b) for (b,) in conn.execute(sa.text("SELECT body FROM audit_events"))]
    assert not any(
        b["kind"].startswith("data.") and b["outcome"] == "allowed" and ref in b["subject_refs"]
        for b in bodies
    )


def test_complaint_with_a_departmental_system_down_is_registered_and_says_evidence_is_incomplete(
    stack: Stack, probe: dict[str, Any]
) -> None:
    resident = probe["resident"]
    stack.stop_upstream()  # the civil-affairs registry
    try:
        resp = complain_about(stack, resident.id_number)
    finally:
        stack.start_upstream()
    assert resp.status_code == 201, resp.text
    answer = resp.json()
    assert answer["incident"]["status"] == "open"
    assert answer["evidence_complete"] is False
    [missing] = answer["evidence_incomplete"]
    assert (missing["dataset"], missing["system"], missing["reason"]) == (
        "residents",
        "civil-affairs-registry",
        "upstream_unavailable",
    )
    # Named as the supervisor knows it, by its registered name, the id beside it (it was the id only).
    assert missing["system_name"] == "区民政局居民信息登记系统"
    assert missing["message"].startswith(
        "证据可能不完整：部门系统“区民政局居民信息登记系统”"
        "（系统标识 civil-affairs-registry，数据集 residents）"
    )
    assert missing["message_en"].startswith(
        "Evidence may be incomplete: departmental system 区民政局居民信息登记系统 "
        "(id civil-affairs-registry, dataset residents)"
    )
    assert resident.id_number not in resp.text

    incident = api(stack, "GET", f"/incidents/{answer['incident']['incident_id']}", "supervisor").json()
    assert incident["evidence_complete"] is False
    assert incident["evidence_incomplete"] == answer["evidence_incomplete"]
    assert incident["evidence_verified"] is True
    # Without the registry the attempt cannot be tied to the person: that is what the answer warns of.
    assert probe["seq"] not in [e["seq"] for e in incident["evidence"]]

    request_id = resp.headers["x-request-id"]
    [failed] = [
        e for e in events_of(stack, request_id, "supervision.record_lookup") if e["dataset"] == "residents"
    ]
    assert (failed["outcome"], failed["reason"], failed["record_count"]) == (
        "error",
        "upstream_unavailable",
        0,
    )
    # What the system did, for whoever rechecks (the event said only "upstream_unavailable").
    assert (failed["details"]["system"], failed["details"]["upstream_fault"]) == (
        "civil-affairs-registry",
        "unreachable",
    )
    [opened] = events_of(stack, request_id, "supervision.incident_opened")
    assert opened["details"]["evidence_incomplete"] == [
        {"dataset": "residents", "system": "civil-affairs-registry", "reason": "upstream_unavailable"}
    ]


def recheck(stack: Stack, incident_id: str, id_number: str, **extra: Any) -> httpx.Response:
    body = {"id_number": id_number, **extra}
    return api(stack, "POST", f"/incidents/{incident_id}/recheck", "supervisor", json=body)


@pytest.fixture(scope="module")
def incomplete_incident(stack: Stack, probe: dict[str, Any]) -> dict[str, Any]:
    """A complaint about the probed resident registered while the civil-affairs registry was down: its
    incident is open, without the probe, and says the residents lookup did not answer."""
    stack.stop_upstream()
    try:
        resp = complain_about(stack, probe["resident"].id_number)
    finally:
        stack.start_upstream()
    assert resp.status_code == 201, resp.text
    answer = resp.json()
    assert answer["evidence_complete"] is False
    assert probe["seq"] not in events_of_incident(stack, answer["incident"]["incident_id"])
    return answer


def events_of_incident(stack: Stack, incident_id: str) -> list[int]:
    incident = api(stack, "GET", f"/incidents/{incident_id}", "supervisor", params={"events": "false"})
    assert incident.status_code == 200, incident.text
    return [e["seq"] for e in incident.json()["evidence"]]


def test_recheck_refuses_an_id_number_that_is_not_the_complainants(
    stack: Stack, probe: dict[str, Any], incomplete_incident: dict[str, Any]
) -> None:
    incident_id = incomplete_incident["incident"]["incident_id"]
    other = WORLD.residents_of(UNREAD_VILLAGE)[1]
    assert other.id_number != probe["resident"].id_number
    resp = recheck(stack, incident_id, other.id_number)
    assert resp.status_code == 422, resp.text
    error = resp.json()
    assert error["error"] == "subject_mismatch"
    assert error["message"].startswith("所输入的身份证号码与该事件投诉人的不一致")
    assert "not the complainant's" in error["message_en"]
    assert other.id_number not in resp.text and probe["resident"].id_number not in resp.text
    # Refused before any departmental system was asked about that person; the refusal is recorded.
    request_id = resp.headers["x-request-id"]
    assert events_of(stack, request_id, "supervision.record_lookup") == []
    [refused] = events_of(stack, request_id, "supervision.incident_evidence_rechecked")
    assert (refused["outcome"], refused["details"]) == (
        "refused",
        {"incident_id": incident_id, "refused": "subject_mismatch"},
    )
    assert other.id_number not in refused["raw"]
    assert probe["seq"] not in events_of_incident(stack, incident_id)
    # Not an ID number at all: refused by its check character, as when registering.
    number = probe["resident"].id_number
    bad = recheck(stack, incident_id, number[:-1] + ("0" if number[-1] != "0" else "1"))
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_id_number"


def test_recheck_once_the_system_is_back_completes_the_evidence_and_finds_the_probe(
    stack: Stack, probe: dict[str, Any], incomplete_incident: dict[str, Any]
) -> None:
    incident_id = incomplete_incident["incident"]["incident_id"]
    before = events_of_incident(stack, incident_id)
    resident = probe["resident"]
    resp = recheck(stack, incident_id, resident.id_number)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["datasets_rechecked"] == ["residents"]  # only the system that did not answer
    assert answer["evidence_complete"] is True and answer["evidence_incomplete"] == []
    assert answer["new_evidence_seqs"] == [probe["seq"]] and answer["new_evidence_events"] == 1
    assert answer["evidence_events"] == len(before) + 1
    assert resident.id_number not in resp.text and resident.id not in resp.text

    incident = api(stack, "GET", f"/incidents/{incident_id}", "supervisor").json()
    assert incident["status"] == "open" and incident["evidence_complete"] is True
    # The new evidence is proved against the incident's own signed tree, like the rest.
    assert (incident["tree_size"], incident["root_hash"]) == (
        incomplete_incident["incident"]["tree_size"],
        incomplete_incident["incident"]["root_hash"],
    )
    assert incident["evidence_verified"] is True
    assert sorted(e["seq"] for e in incident["evidence"]) == sorted([*before, probe["seq"]])
    [attempt] = [e for e in incident["events"] if e["seq"] == probe["seq"]]
    assert (attempt["outcome"], attempt["actor"]) == ("refused", WORLD.identity("cadre_b").user_id)
    [step] = [s for s in incident["steps"] if s["action"] == "evidence_rechecked"]
    assert step["actor"] == WORLD.identity("supervisor").user_id and "residents" in step["note"]

    request_id = resp.headers["x-request-id"]
    [lookup] = events_of(stack, request_id, "supervision.record_lookup")
    assert (lookup["dataset"], lookup["outcome"], lookup["record_count"]) == ("residents", "ok", 1)
    assert lookup["details"] == {
        "system": "civil-affairs-registry",
        "purpose": "evidence_recheck",
        "incident_id": incident_id,
    }
    [step_event] = events_of(stack, request_id, "supervision.incident_evidence_rechecked")
    details = step_event["details"]
    assert (details["incident_id"], details["datasets_rechecked"]) == (incident_id, ["residents"])
    assert (details["new_evidence_seqs"], details["evidence_complete"]) == ([probe["seq"]], True)
    assert details["subject_ref"] == incomplete_incident["complaint"]["subject_ref"]
    for event in (lookup, step_event):
        assert resident.id_number not in event["raw"] and resident.id not in event["raw"]

    # Nothing left to ask: said so; asking every system again finds nothing new and adds nothing twice.
    again = recheck(stack, incident_id, resident.id_number)
    assert again.status_code == 409 and again.json()["error"] == "evidence_already_complete"
    everything = recheck(stack, incident_id, resident.id_number, all_systems=True)
    assert everything.status_code == 200, everything.text
    assert everything.json()["new_evidence_seqs"] == []
    assert set(everything.json()["datasets_rechecked"]) >= {"residents", "houses", "occupants"}
    assert sorted(events_of_incident(stack, incident_id)) == sorted([*before, probe["seq"]])


def test_recheck_through_the_cli_and_refused_on_a_closed_incident(
    stack: Stack, probe: dict[str, Any]
) -> None:
    resident = probe["resident"]
    stack.stop_upstream()
    try:
        opened = complain_about(stack, resident.id_number)
    finally:
        stack.start_upstream()
    incident_id = opened.json()["incident"]["incident_id"]
    url = ["--url", stack.base_url, "--as", "supervisor"]
    # No terminal and no variable: the command says how to give the number (never on the command line).
    blind = stack.cli("supervise", "recheck", incident_id, *url, check=False)
    assert blind.returncode == 2 and "GRASSROOTS_SUBJECT_ID_NUMBER" in blind.stderr
    done = stack.cli(
        "supervise",
        "recheck",
        incident_id,
        *url,
        env_extra={"GRASSROOTS_SUBJECT_ID_NUMBER": resident.id_number},
    )
    answer = json.loads(done.stdout)
    assert answer["evidence_complete"] is True and probe["seq"] in answer["new_evidence_seqs"]
    assert resident.id_number not in done.stdout + done.stderr

    assert stack.cli("supervise", "assign", incident_id, "--to", "county-inspector-3", *url).returncode == 0
    note = "核对访问场景与授权，越权查询已处理"
    disposed = stack.cli(
        "supervise", "dispose", incident_id, "--disposition", "substantiated", "--note", note, *url
    )
    assert disposed.returncode == 0, disposed.stderr
    closed = recheck(stack, incident_id, resident.id_number, all_systems=True)
    assert closed.status_code == 409, closed.text
    assert closed.json()["error"] == "case_conflict"
    assert closed.json()["message"].startswith("事件已办结，不能再重新核查证据")
    assert closed.json()["message_en"].startswith("The incident is closed")
    [refused] = events_of(stack, closed.headers["x-request-id"], "supervision.incident_evidence_rechecked")
    assert refused["outcome"] == "refused" and refused["details"]["refused"] == "case_conflict"
    via_cli = stack.cli(
        "supervise",
        "recheck",
        incident_id,
        *url,
        check=False,
        env_extra={"GRASSROOTS_SUBJECT_ID_NUMBER": resident.id_number},
    )
    assert via_cli.returncode == 1 and "事件已办结" in via_cli.stderr
    assert resident.id_number not in via_cli.stdout + via_cli.stderr


def test_no_plain_id_number_anywhere_in_the_log_after_rechecks(
    stack: Stack, probe: dict[str, Any], incomplete_incident: dict[str, Any]
) -> None:
    """The scan of test_no_plain_personal_data_in_supervision_tables, after the re-checks: their events,
    steps and evidence hold refs and codes only."""
    haystack = supervision_tables_dump(stack)
    assert "supervision.incident_evidence_rechecked" in haystack  # the scan does see the new rows
    for resident in WORLD.residents_of(UNREAD_VILLAGE):
        assert resident.id_number not in haystack and resident.id not in haystack
    assert not looks_like_personal_data(haystack)


def test_complaint_list_filters_by_status(stack: Stack) -> None:
    """One complaint in each state (open; investigating and overdue; closed), then each filter of the
    complaint list against the unfiltered list: the same complaints, newest first, paged, with the total."""
    residents = WORLD.residents_of(UNREAD_VILLAGE)[2:5]
    ids: dict[str, str] = {}
    for state, resident in zip(("open", "investigating", "closed"), residents, strict=True):
        created = complain_about(stack, resident.id_number)
        assert created.status_code == 201, created.text
        incident_id = created.json()["incident"]["incident_id"]
        ids[state] = created.json()["complaint"]["complaint_id"]
        if state != "open":
            assign(stack, incident_id, due="2020-01-01T00:00:00+08:00" if state == "investigating" else None)
        if state == "closed":
            body = {"disposition": "unsubstantiated", "note": "每次访问均在低保复核授权内"}
            closed = api(stack, "POST", f"/incidents/{incident_id}/disposition", "supervisor", json=body)
            assert closed.status_code == 200, closed.text

    everything = api(stack, "GET", "/complaints", "auditor", params={"limit": 500}).json()["items"]
    for status in ("open", "investigating", "closed", "overdue"):
        got = api(stack, "GET", "/complaints", "auditor", params={"status": status, "limit": 500})
        assert got.status_code == 200, got.text
        want = [
            c["complaint_id"]
            for c in everything
            if (c["overdue"] if status == "overdue" else c["incident_status"] == status)
        ]
        assert [c["complaint_id"] for c in got.json()["items"]] == want, status
        assert got.json()["total"] == len(want)
    by_status = {
        s: {c["complaint_id"] for c in everything if c["incident_status"] == s}
        for s in ("open", "investigating", "closed")
    }
    assert ids["open"] in by_status["open"] and ids["closed"] in by_status["closed"]
    assert ids["investigating"] in by_status["investigating"]
    overdue = api(stack, "GET", "/complaints", "auditor", params={"status": "overdue"}).json()
    assert ids["investigating"] in {c["complaint_id"] for c in overdue["items"]}
    assert ids["closed"] not in {c["complaint_id"] for c in overdue["items"]}
    # Paging keeps the filter: the total is of the filtered list.
    opened = [c["complaint_id"] for c in everything if c["incident_status"] == "open"]
    pages = [
        api(stack, "GET", "/complaints", "auditor", params={"status": "open", "limit": 1, "offset": n}).json()
        for n in range(len(opened) + 1)
    ]
    assert [c["complaint_id"] for p in pages for c in p["items"]] == opened
    assert {p["total"] for p in pages} == {len(opened)} and pages[-1]["items"] == []

    bad = api(stack, "GET", "/complaints", "auditor", params={"status": "pending"})
    assert bad.status_code == 422, bad.text
    error = bad.json()
    assert error["fields"] == ["status"]
    for allowed in ("open", "investigating", "closed", "overdue"):
        assert allowed in error["message"] and allowed in error["message_en"]
    assert error["message"].startswith("请求参数有误") and error["message_en"].startswith("Invalid request")

    url = ["--url", stack.base_url, "--as", "auditor"]
    via_cli = stack.cli("supervise", "complaints", "--status", "closed", "--limit", "500", *url)
    assert [c["complaint_id"] for c in json.loads(via_cli.stdout)["items"]] == [
        c["complaint_id"] for c in everything if c["incident_status"] == "closed"
    ]
    typo = stack.cli("supervise", "complaints", "--status", "pending", *url, check=False)
    assert typo.returncode == 2 and "overdue" in typo.stderr and "只能是" in typo.stderr


def test_a_client_can_ask_whether_its_role_may_act_before_asking_for_an_id_number(stack: Stack) -> None:
    """GET /api/v1/me/can answers from the same permissions the act is checked against (role -> resource ->
    action), so the CLI refuses a cadre's complaint before the cadre types a resident's ID number."""

    def can(user: str, **params: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {stack.token(user)}"}
        return httpx.get(f"{stack.base_url}/api/v1/me/can", params=params, headers=headers, timeout=60.0)

    asked = {"resource": "audit", "action": "register"}
    supervisor = can("supervisor", **asked)
    assert supervisor.status_code == 200 and supervisor.json() == {**asked, "allowed": True}, supervisor.text
    cadre = can("cadre_a", **asked)
    assert cadre.status_code == 200 and cadre.json()["allowed"] is False, cadre.text
    complaint = api(
        stack, "POST", "/complaints", "cadre_a", json={"source": "walk_in", "id_number": "x" * 18}
    )
    assert complaint.status_code == 403, complaint.text  # the act itself is refused alike
    assert can("cadre_a", resource="Audit;", action="x").status_code == 422


TOWN_A, TOWN_B = WORLD.identity("town_supervisor_a").org, WORLD.identity("town_supervisor_b").org


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/events", {"limit": 1}),
        ("/reports", {"group_by": "org"}),
        ("/anomalies", {}),
        ("/reports/monthly", {"month": "2026-12", "format": "json"}),
    ],
)
def test_another_townships_log_is_refused_saying_what_the_supervisor_may_see_instead(
    stack: Stack, path: str, params: dict[str, str]
) -> None:
    """城桥镇's supervisor asking for 堡镇's events (a neighbour's, or a mistyped code) was told only
    "不在您的监督范围内。": nothing said what she may look at, nor how to. Now: her own office's code, that
    those under it are hers too, and to drop --org or give a code within it; never the code she typed."""
    refused = api(stack, "GET", path, "town_supervisor_a", params={**params, "org": TOWN_B})
    assert refused.status_code == 404, refused.text
    body = refused.json()
    assert body["error"] == "outside_scope"
    assert f"本单位（{TOWN_A}）及其下级单位" in body["message"] and "--org" in body["message"]
    assert f"({TOWN_A})" in body["message_en"] and "--org" in body["message_en"]
    assert TOWN_B not in body["message"] + body["message_en"]
    own = api(stack, "GET", path, "town_supervisor_a", params={**params, "org": TOWN_A})
    assert own.status_code == 200, own.text


def test_a_township_supervisor_sees_and_handles_only_its_own_towns_cases(
    stack: Stack, readings: dict[str, Any]
) -> None:
    """A case belongs to the office that registered it. 城桥镇's supervisor gets 404 for 堡镇's complaint and
    incident — read, assign, note, dispose, re-check — exactly as for a case that does not exist, and each
    attempt is a refused event; the lists hold only the caller's jurisdiction; the county sees both towns'
    cases and may act on them. The evidence still follows the person: 堡镇's case holds 城桥镇 reads."""
    resident = readings["resident"]

    def complain(user: str) -> tuple[str, str]:
        resp = api(
            stack,
            "POST",
            "/complaints",
            user,
            json={
                "source": "walk_in",
                "id_number": resident.id_number,
                "summary": "居民来访询问信息被查看情况",
            },
        )
        assert resp.status_code == 201, resp.text
        return resp.json()["complaint"]["complaint_id"], resp.json()["incident"]["incident_id"]

    a_complaint, a_incident = complain("town_supervisor_a")
    b_complaint, b_incident = complain("town_supervisor_b")
    assert api(stack, "GET", f"/complaints/{b_complaint}", "town_supervisor_b").json()["org"] == TOWN_B

    def listed(user: str, path: str, key: str) -> set[str]:
        answer = api(stack, "GET", path, user, params={"limit": 500}).json()
        assert answer["total"] == len(answer["items"])
        return {item[key] for item in answer["items"]}

    for user, mine, theirs in (
        ("town_supervisor_a", (a_complaint, a_incident), (b_complaint, b_incident)),
        ("town_supervisor_b", (b_complaint, b_incident), (a_complaint, a_incident)),
    ):
        complaints = listed(user, "/complaints", "complaint_id")
        incidents = listed(user, "/incidents", "incident_id")
        assert mine[0] in complaints and theirs[0] not in complaints
        assert mine[1] in incidents and theirs[1] not in incidents
        org = WORLD.identity(user).org[:9]
        everyone = api(stack, "GET", "/complaints", user, params={"limit": 500}).json()["items"]
        assert all((c["org"] or "").startswith(org) for c in everyone)
    for user in ("supervisor", "auditor"):  # the county's offices see both towns' cases
        assert {a_complaint, b_complaint} <= listed(user, "/complaints", "complaint_id")
        assert {a_incident, b_incident} <= listed(user, "/incidents", "incident_id")

    # The monthly report's case counts are of the caller's jurisdiction too: each town registered one.
    month = time.strftime("%Y-%m", time.gmtime(time.time() + 8 * 3600))

    def received(user: str) -> int:
        report = api(stack, "GET", "/reports/monthly", user, params={"month": month, "format": "json"})
        return int(report.json()["cases"]["complaints_received"])

    assert received("town_supervisor_a") == received("town_supervisor_b") == 1
    assert received("supervisor") >= 2

    # Evidence is about the case: 堡镇's incident holds the reads cadre_a (城桥镇's 东风村) made.
    b_case = api(stack, "GET", f"/incidents/{b_incident}", "town_supervisor_b").json()
    assert any(e["actor_org"] == VILLAGE_A for e in b_case["events"]), b_case["events"]

    tries = [
        ("GET", f"/complaints/{b_complaint}", None, "supervision.complaint_viewed"),
        ("GET", f"/incidents/{b_incident}", None, "supervision.incident_viewed"),
        (
            "POST",
            f"/incidents/{b_incident}/assign",
            {"assignee": "城桥镇纪委干部"},
            "supervision.incident_assigned",
        ),
        ("POST", f"/incidents/{b_incident}/notes", {"note": "核对访问记录"}, "supervision.incident_note"),
        (
            "POST",
            f"/incidents/{b_incident}/disposition",
            {"disposition": "referred", "note": "移送纪检监察机关处理"},
            "supervision.incident_disposed",
        ),
        (
            "POST",
            f"/incidents/{b_incident}/recheck",
            {"id_number": resident.id_number, "all_systems": True},
            "supervision.incident_evidence_rechecked",
        ),
    ]
    missing = api(stack, "GET", "/incidents/I-0000000000000000", "town_supervisor_a").json()
    before = stack.last_events(1)[0]["seq"]
    for method, path, body, _ in tries:
        resp = api(stack, method, path, "town_supervisor_a", json=body)
        assert resp.status_code == 404, (path, resp.text)
        got = resp.json()
        assert got["error"] == "case_not_found" == missing["error"]
        assert got["message"].replace("投诉", "事件") == missing["message"]  # nothing tells the two apart
        assert b_complaint not in resp.text and b_incident not in resp.text
    refused = [
        e
        for e in stack.last_events(200)
        if e["seq"] > before and e["actor"] == WORLD.identity("town_supervisor_a").user_id
    ]
    assert [(e["kind"], e["outcome"]) for e in refused] == [(kind, "refused") for *_, kind in tries]
    for event in refused:
        details = json.loads(event["body"])["details"]
        assert details["refused"] == "outside_scope" and details["case_org"] == TOWN_B
        assert b_complaint in details.values() or b_incident in details.values()

    # Nothing happened to 堡镇's case; the county may handle it, and 城桥镇 its own (re-check included).
    untouched = api(stack, "GET", f"/incidents/{b_incident}", "supervisor").json()
    assert (untouched["status"], [s["action"] for s in untouched["steps"]]) == ("open", ["opened"])
    assigned = api(
        stack, "POST", f"/incidents/{b_incident}/assign", "supervisor", json={"assignee": "区纪委干部"}
    )
    assert assigned.status_code == 200, assigned.text
    closed = api(
        stack,
        "POST",
        f"/incidents/{b_incident}/disposition",
        "supervisor",
        json={"disposition": "unsubstantiated", "note": "每次访问均在低保复核授权内"},
    )
    assert closed.status_code == 200 and closed.json()["status"] == "closed", closed.text
    own = api(
        stack,
        "POST",
        f"/incidents/{a_incident}/recheck",
        "town_supervisor_a",
        json={"id_number": resident.id_number, "all_systems": True},
    )
    assert own.status_code == 200, own.text


#: 新河镇: no supervisor of the demo sits there, so no other test here counts its cases.
NEW_TOWN = "310151103000"


def test_a_national_supervisor_gives_a_case_of_no_known_office_its_jurisdiction(
    stack: Stack, readings: dict[str, Any]
) -> None:
    """A case from before migration 0013 whose registration event was since pruned has no ``org``: only the
    national level sees it. The permission is checked before the body; below the national level the case
    is not there (404, recorded); a code that names no office is refused in words; the national
    supervisor's assignment is an administrative act in the log, after which the district sees and handles
    the case; and a case that has a jurisdiction keeps it (409), through the API and the CLI alike."""
    registered = complain_about(stack, readings["resident"].id_number)
    assert registered.status_code == 201, registered.text
    complaint_id = registered.json()["complaint"]["complaint_id"]
    incident_id = registered.json()["incident"]["incident_id"]
    with stack.engine.begin() as conn:  # as migration 0013 left it: no event named its office
        conn.execute(
            sa.text("UPDATE audit_complaints SET org = NULL WHERE complaint_id = :c"), {"c": complaint_id}
        )
        conn.execute(
            sa.text("UPDATE audit_incidents SET org = NULL WHERE incident_id = :i"), {"i": incident_id}
        )
    path = f"/complaints/{complaint_id}/jurisdiction"

    def orgs() -> tuple[str | None, str | None]:
        with stack.engine.connect() as conn:
            complaint = conn.execute(
                sa.text("SELECT org FROM audit_complaints WHERE complaint_id = :c"), {"c": complaint_id}
            ).scalar_one()
            incident = conn.execute(
                sa.text("SELECT org FROM audit_incidents WHERE incident_id = :i"), {"i": incident_id}
            ).scalar_one()
        return complaint, incident

    # Permission first: whatever the body holds, a role without `review audit` gets 403 and a record.
    for user in ("cadre_a", "auditor"):
        headers = {"Authorization": f"Bearer {stack.token(user)}", "Content-Type": "application/json"}
        denied = httpx.post(
            f"{stack.base_url}{BASE}{path}", headers=headers, content=b"{not json", timeout=60
        )
        assert denied.status_code == 403 and denied.json()["error"] == "no_permission", denied.text
        assert events_of(stack, denied.headers["x-request-id"], "admin.refused")
    # Below the national level the case does not exist for the caller; each attempt is a refused event.
    for user in ("town_supervisor_a", "supervisor"):
        hidden = api(stack, "POST", path, user, json={"org": NEW_TOWN})
        assert (hidden.status_code, hidden.json()["error"]) == (404, "case_not_found"), hidden.text
        (attempt,) = events_of(
            stack, hidden.headers["x-request-id"], "supervision.case_jurisdiction_assigned"
        )
        assert attempt["outcome"] == "refused" and attempt["details"]["refused"] == "outside_scope"
    # Codes that name no office: malformed, the national root, a well-formed code of no known division.
    for org, code, says in (
        ("3101511", "invalid_org", "统计用区划代码"),
        ("000000000000", "invalid_case_input", "不能是全国代码"),
        ("310151103999", "unknown_division", "不是本平台区划名录中的单位"),
    ):
        bad = api(stack, "POST", path, "national_supervisor", json={"org": org})
        assert (bad.status_code, bad.json()["error"]) == (422, code), bad.text
        assert says in bad.json()["message"] and bad.json()["message_en"].isascii()
    assert orgs() == (None, None)

    url = ["--url", stack.base_url, "--as", "national_supervisor"]
    given = stack.cli("supervise", "set-jurisdiction", complaint_id, "--org", NEW_TOWN, *url)
    answer = json.loads(given.stdout)
    assert (answer["complaint_id"], answer["org"], answer["incident_id"]) == (
        complaint_id,
        NEW_TOWN,
        incident_id,
    )
    assert orgs() == (NEW_TOWN, NEW_TOWN)
    (event,) = [
        e
        for e in stack.last_events(50)
        if (e["kind"], e["outcome"]) == ("supervision.case_jurisdiction_assigned", "ok")
    ]
    body = json.loads(event["body"])
    assert (body["actor"], body["actor_org"]) == (
        WORLD.identity("national_supervisor").user_id,
        "000000000000",
    )
    assert body["details"] == {"complaint_id": complaint_id, "incident_id": incident_id, "org": NEW_TOWN}

    # The district (above 新河镇) now sees and handles the case; 城桥镇 still does not.
    assert api(stack, "GET", f"/complaints/{complaint_id}", "supervisor").status_code == 200
    steps = api(stack, "GET", f"/incidents/{incident_id}", "supervisor").json()["steps"]
    assert (steps[-1]["action"], steps[-1]["note"]) == ("jurisdiction_assigned", NEW_TOWN)
    assert api(stack, "GET", f"/complaints/{complaint_id}", "town_supervisor_a").status_code == 404

    # Once given, kept: neither the national level nor the district may move it (nor name it again).
    for user, org in (("national_supervisor", TOWN_A), ("supervisor", NEW_TOWN)):
        kept = api(stack, "POST", path, user, json={"org": org})
        assert (kept.status_code, kept.json()["error"]) == (409, "case_has_jurisdiction"), kept.text
    again = stack.cli("supervise", "set-jurisdiction", complaint_id, "--org", TOWN_A, *url, check=False)
    assert again.returncode == 1
    zh, en = again.stderr.splitlines()[:2]
    assert zh.startswith("case_has_jurisdiction: 该投诉已有管辖单位，不能更改") and en.isascii(), again.stderr
    assert orgs() == (NEW_TOWN, NEW_TOWN)


def test_a_township_takes_the_complaint_of_a_resident_of_another_township_with_the_whole_evidence(
    stack: Stack, probe: dict[str, Any]
) -> None:
    """A resident of 城桥镇's 新建村 walks into 堡镇's office. The case is 堡镇's, but the departmental
    systems are asked for her records across the platform's jurisdiction, not within 堡镇 only: cadre_b's
    refused attempt at her record (made in 城桥镇) is in the evidence. Asked within 堡镇, the registry found
    none of her records, the attempt was left out, and the answer still said the evidence was complete."""
    resident = probe["resident"]
    resp = api(
        stack,
        "POST",
        "/complaints",
        "town_supervisor_b",
        json={"source": "walk_in", "id_number": resident.id_number, "summary": "居民来访询问谁查看了其信息"},
    )
    assert resp.status_code == 201, resp.text
    answer = resp.json()
    assert answer["complaint"]["org"] == TOWN_B and answer["evidence_complete"] is True
    incident_id = answer["incident"]["incident_id"]
    incident = api(stack, "GET", f"/incidents/{incident_id}", "town_supervisor_b").json()
    assert probe["seq"] in [e["seq"] for e in incident["evidence"]], incident["evidence"]
    lookups = events_of(stack, resp.headers["x-request-id"], "supervision.record_lookup")
    assert next(e for e in lookups if e["dataset"] == "residents")["record_count"] == 1
    assert all(e["actor"] == WORLD.identity("town_supervisor_b").user_id for e in lookups)


def test_the_district_hands_a_case_down_to_a_township_which_then_handles_it(
    stack: Stack, readings: dict[str, Any]
) -> None:
    """监测、举报、处置闭环: the district registers the resident's call and hands it to 城桥镇 to act on.
    Before, a case stayed the registering office's: 城桥镇's supervisor got 404 for it whatever the district
    wrote as assignee, so the township could neither see the evidence nor record what it did. Now the case
    is handed down (交办): 城桥镇 sees, assigns and closes it; the district still sees it and the step; 堡镇
    still does not; it is never handed up or sideways, nor once closed."""
    resident = readings["resident"]
    call = {"source": "hotline_12345", "id_number": resident.id_number, "summary": "居民来电反映信息被查看"}
    registered = api(stack, "POST", "/complaints", "supervisor", json=call)
    assert registered.status_code == 201, registered.text
    complaint = registered.json()["complaint"]["complaint_id"]
    incident = registered.json()["incident"]["incident_id"]
    assert api(stack, "GET", f"/incidents/{incident}", "town_supervisor_a").status_code == 404

    # Not to itself, nor up: an office under the case's own only (the district's is 310151000000).
    for org in ("310151000000", "310100000000"):
        refused = api(stack, "POST", f"/incidents/{incident}/hand-down", "supervisor", json={"org": org})
        assert refused.status_code == 422, refused.text
    assert refused.json()["error"] in ("invalid_case_input", "unknown_division")
    itself = api(
        stack, "POST", f"/incidents/{incident}/hand-down", "supervisor", json={"org": "310151000000"}
    )
    assert itself.json()["message"].startswith("只能交办给本事件管辖单位（310151000000）的下级单位")
    assert (
        api(
            stack, "POST", f"/incidents/{incident}/hand-down", "town_officer", json={"org": TOWN_A}
        ).status_code
        == 403
    )  # a township officer is no supervisor

    handed = api(stack, "POST", f"/incidents/{incident}/hand-down", "supervisor", json={"org": TOWN_A})
    assert handed.status_code == 200, handed.text
    assert handed.json()["org"] == TOWN_A
    assert api(stack, "GET", f"/complaints/{complaint}", "town_supervisor_a").json()["org"] == TOWN_A
    seen = api(stack, "GET", f"/incidents/{incident}", "town_supervisor_a").json()
    assert seen["steps"][-1]["action"] == "handed_down"
    assert seen["steps"][-1]["note"] == f"310151000000 → {TOWN_A}"
    assert any(e["actor_org"] == VILLAGE_A for e in seen["events"])  # the evidence goes with it
    assert api(stack, "GET", f"/incidents/{incident}", "town_supervisor_b").status_code == 404
    # 城桥镇 cannot pass it on to 堡镇 either.
    sideways = api(
        stack, "POST", f"/incidents/{incident}/hand-down", "town_supervisor_a", json={"org": TOWN_B}
    )
    assert sideways.status_code == 422, sideways.text
    assert sideways.json()["message"].startswith(f"只能交办给本事件管辖单位（{TOWN_A}）的下级单位")

    for step, body in (
        ("assign", {"assignee": "城桥镇纪委核查组"}),
        ("notes", {"note": "核对东风村、永乐村干部的查询记录"}),
        ("disposition", {"disposition": "substantiated", "note": "已约谈越权查询的村干部并责令整改"}),
    ):
        done = api(stack, "POST", f"/incidents/{incident}/{step}", "town_supervisor_a", json=body)
        assert done.status_code == 200, (step, done.text)
    district = api(stack, "GET", f"/complaints/{complaint}", "supervisor").json()
    assert (district["incident_status"], district["disposition"]) == ("closed", "substantiated")
    again = api(stack, "POST", f"/incidents/{incident}/hand-down", "supervisor", json={"org": TOWN_A + "1"})
    assert again.status_code == 422  # not a code
    late = api(stack, "POST", f"/incidents/{incident}/hand-down", "supervisor", json={"org": "310151101201"})
    assert (late.status_code, late.json()["error"]) == (409, "case_conflict")

    with stack.engine.connect() as conn:
        bodies = [json.loads(b) for (b,) in conn.execute(sa.text("SELECT body FROM audit_events"))]
    handed_events = [b for b in bodies if b["kind"] == "supervision.case_handed_down"]
    assert [(e["outcome"], e["details"]["org"], e["details"]["from_org"]) for e in handed_events] == [
        ("ok", TOWN_A, "310151000000")
    ]


@pytest.mark.parametrize(
    ("method", "path", "user", "says"),
    [
        ("GET", "/incidents", "town_officer", "您的岗位没有查看审计记录和监督案件的权限（read audit）"),
        ("GET", "/events", "cadre_a", "您的岗位没有查看审计记录和监督案件的权限（read audit）"),
        ("POST", "/incidents/I-0/assign", "auditor", "您的岗位没有办理投诉和事件的权限（review audit）"),
        (
            "POST",
            "/checkpoints",
            "town_officer",
            "您的岗位没有校验审计日志、签发检查点和归档的权限（verify audit）",
        ),
    ],
)
def test_a_role_without_a_supervision_permission_is_told_in_chinese_which_one(
    stack: Stack, method: str, path: str, user: str, says: str
) -> None:
    """城桥镇's officer trying a supervisor's command read 您的岗位没有办理此项业务的权限。 while the English
    beside it named the permission: a Chinese reader could not tell what her role lacked, nor whom to ask."""
    refused = api(stack, method, path, user, json={"assignee": "x"} if method == "POST" else None)
    assert (refused.status_code, refused.json()["error"]) == (403, "no_permission"), refused.text
    message = refused.json()["message"]
    assert message.startswith(says) and message.endswith("请联系平台管理员核对您的岗位。"), message


def test_incidents_due_soon_are_listed_as_a_reminder(stack: Stack, readings: dict[str, Any]) -> None:
    """The overdue list was the only reminder: a case showed up once late. ``due_within_days`` lists the
    open cases not yet late with a deadline by the end of the Beijing day N days ahead, and says which day
    that is; combined with ``overdue`` (which lists the opposite) it is refused, not answered empty."""
    call = {"source": "walk_in", "id_number": readings["resident"].id_number, "summary": "居民来访询问"}
    incident = api(stack, "POST", "/complaints", "supervisor", json=call).json()["incident"]["incident_id"]
    soon = api(stack, "GET", "/incidents", "supervisor", params={"due_within_days": 15, "limit": 500})
    assert soon.status_code == 200, soon.text
    answer = soon.json()
    assert incident in {i["incident_id"] for i in answer["items"]}  # the answer is due in 15 days
    assert all(not i["overdue"] and i["status"] != "closed" for i in answer["items"])
    assert answer["due_by_beijing"].endswith(" 23:59:59") and answer["total"] == len(answer["items"])
    today = api(stack, "GET", "/incidents", "supervisor", params={"due_within_days": 0}).json()
    assert incident not in {i["incident_id"] for i in today["items"]}
    both = api(stack, "GET", "/incidents", "supervisor", params={"due_within_days": 3, "overdue": "true"})
    assert (both.status_code, both.json()["error"]) == (422, "invalid_case_input"), both.text
    assert both.json()["message"].startswith("overdue 与 due_within_days 不能同时使用")
    assert api(stack, "GET", "/incidents", "supervisor", params={"due_within_days": -1}).status_code == 422
