"""What a new user meets walking through the README's supervision section, against the real stack.

Each test is one finding of that walk-through: a report written to a folder that does not exist, proofs and
retention looked at without a trace in the log, a resident's name typed into a case, codes where names were
known, and an English-only note in a Chinese-first answer.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from audit import looks_like_personal_data
from demoworld.world import build_world
from tests.stack import Stack

WORLD = build_world()
BASE = "/api/v1/supervision"
VILLAGE_A = WORLD.village_a
VILLAGE_A_NAME = WORLD.division(VILLAGE_A).name  # 东风村村民委员会


def api(stack: Stack, method: str, path: str, user: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {stack.token(user)}"}
    return httpx.request(method, f"{stack.base_url}{BASE}{path}", headers=headers, timeout=60.0, **kwargs)


def this_month() -> str:
    return time.strftime("%Y-%m", time.gmtime(time.time() + 8 * 3600))  # Beijing time


def kinds_since(stack: Stack, before: int) -> list[str]:
    return [e["kind"] for e in stack.last_events(stack.audit_count() - before)]


@pytest.fixture(scope="module")
def traffic(stack: Stack) -> dict[str, Any]:
    """cadre_a reads a page (data of village A in the log), the log is signed twice."""
    resp = stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW", page_size=3)
    assert resp.status_code == 200, resp.text
    first = api(stack, "POST", "/checkpoints", "auditor").json()
    stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW", page_size=1)
    second = api(stack, "POST", "/checkpoints", "auditor").json()
    reader = next(r for r in WORLD.residents if r.id == resp.json()["items"][0]["id"])
    return {"resident": reader, "old": first["tree_size"], "new": second["tree_size"]}


# -- 1. the monthly report's --out --------------------------------------------------------------------


def test_monthly_report_to_a_missing_folder_is_refused_before_the_gateway_is_asked(
    stack: Stack, traffic: dict[str, Any]
) -> None:
    target = stack.data_dir.parent / "no-such-dir" / "report.html"
    before = stack.audit_count()
    out = stack.cli(
        "supervise", "monthly", "--month", this_month(), "--out", str(target),
        "--url", stack.base_url, "--as", "supervisor", check=False,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "FileNotFoundError" not in out.stderr
    zh, en = out.stderr.strip().splitlines()[:2]
    assert zh.startswith("无法写入报告：文件夹") and "不存在" in zh, zh
    assert en.startswith("cannot write the report: the folder") and "does not exist" in en, en
    assert not target.exists()
    # Nothing was handed out, so the log does not say a report was.
    assert "supervision.monthly_report" not in kinds_since(stack, before)


# -- 2. proofs and retention are supervisory acts -----------------------------------------------------


def test_proofs_and_retention_are_audit_events(stack: Stack, traffic: dict[str, Any]) -> None:
    url = ["--url", stack.base_url, "--as", "auditor"]
    before = stack.audit_count()
    assert stack.cli("supervise", "proof", "2", *url).returncode == 0
    events = stack.last_events(stack.audit_count() - before)
    assert [e["kind"] for e in events] == ["supervision.inclusion_proof_viewed"]
    proof = json.loads(events[0]["body"])
    assert proof["actor"] == WORLD.identity("auditor").user_id and proof["outcome"] == "ok"
    assert proof["details"]["seq"] == 2 and proof["details"]["tree_size"] >= 2

    before = stack.audit_count()
    old, new = str(traffic["old"]), str(traffic["new"])
    assert stack.cli("supervise", "consistency", "--old", old, "--new", new, *url).returncode == 0
    (event,) = stack.last_events(stack.audit_count() - before)
    assert event["kind"] == "supervision.consistency_proof_viewed"
    assert json.loads(event["body"])["details"] == {"old_size": traffic["old"], "new_size": traffic["new"]}

    before = stack.audit_count()
    assert stack.cli("supervise", "retention", *url).returncode == 0
    (event,) = stack.last_events(stack.audit_count() - before)
    assert event["kind"] == "supervision.retention_viewed"
    assert json.loads(event["body"])["details"]["retention_years"] == 3
    assert not looks_like_personal_data(event["body"])

    for path, kind in (
        ("/checkpoints", "supervision.checkpoints_listed"),
        ("/archives", "supervision.archives_listed"),
    ):
        before = stack.audit_count()
        assert api(stack, "GET", path, "auditor").status_code == 200
        (event,) = stack.last_events(stack.audit_count() - before)
        assert event["kind"] == kind, path


# -- 3. names typed into a complaint or a case ---------------------------------------------------------


@pytest.fixture(scope="module")
def incident_id(stack: Stack, traffic: dict[str, Any]) -> str:
    body = {"source": "walk_in", "id_number": traffic["resident"].id_number, "summary": "来访反映"}
    resp = api(stack, "POST", "/complaints", "supervisor", json=body)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["incident"]["incident_id"])


@pytest.mark.parametrize(
    ("field", "text", "code"),
    [
        ("summary", "居民王小明来访询问", "personal_data_in_summary"),
        ("summary", "居民{name}来电反映其低保信息被查看", "personal_data_in_summary"),
        ("ticket", "12345-{mobile}", "personal_data_in_ticket"),
        ("ticket", "{id_number}", "personal_data_in_ticket"),
        ("note", "已联系王小明本人", "personal_data_in_note"),
        ("note", "{name}本人来访，说明查看原因", "personal_data_in_note"),
        ("disposition", "居民{name}的低保复核属实", "personal_data_in_note"),
    ],
)
def test_a_name_or_number_typed_into_a_case_is_refused_the_same_way(
    stack: Stack, traffic: dict[str, Any], incident_id: str, field: str, text: str, code: str
) -> None:
    resident = traffic["resident"]
    typed = text.format(name=resident.name, mobile=resident.mobile, id_number=resident.id_number)
    before = stack.audit_count()
    if field in ("summary", "ticket"):
        body = {"source": "walk_in", "id_number": resident.id_number, field: typed}
        resp = api(stack, "POST", "/complaints", "supervisor", json=body)
    elif field == "note":
        resp = api(stack, "POST", f"/incidents/{incident_id}/notes", "supervisor", json={"note": typed})
    else:
        body = {"disposition": "referred", "note": typed}
        resp = api(stack, "POST", f"/incidents/{incident_id}/disposition", "supervisor", json=body)
    assert resp.status_code == 422, resp.text
    answer = resp.json()
    assert answer["error"] == code and answer["personal_data_kind"] in ("person", "mobile", "id_number")
    assert answer["message"].endswith("需要指明居民时请写业务编号。")
    for value in (typed, resident.name, resident.mobile, resident.id_number, "王小明"):
        assert value not in resp.text
    assert stack.audit_count() == before  # nothing registered, nothing recorded


def test_ordinary_case_text_still_goes_through(
    stack: Stack, traffic: dict[str, Any], incident_id: str
) -> None:
    body = {
        "source": "hotline_12345",
        "id_number": traffic["resident"].id_number,
        "summary": "居民通过12345热线反映其低保信息被多人查看，要求说明",
        "ticket": "12345-2026-11-0042",
    }
    assert api(stack, "POST", "/complaints", "supervisor", json=body).status_code == 201
    for note in ("已联系居民本人，说明查看原因", "核对居民信息与访问时间", "联系方式已核实"):
        resp = api(stack, "POST", f"/incidents/{incident_id}/notes", "supervisor", json={"note": note})
        assert resp.status_code == 200, (note, resp.text)


# -- 4. incident --verify ---------------------------------------------------------------------------


def test_incident_verify_prints_the_incident_and_what_was_checked(
    stack: Stack, traffic: dict[str, Any], incident_id: str
) -> None:
    out = stack.cli(
        "supervise", "incident", incident_id, "--verify", "--url", stack.base_url, "--as", "auditor"
    )
    shown = json.loads(out.stdout)
    assert shown["incident_id"] == incident_id and shown["evidence"]
    checked = shown["local_verification"]
    assert checked["evidence_events_verified"] == len(shown["evidence"])
    assert checked["signed_checkpoint_has_root"] is True  # registering the complaint signed that root
    assert "证据事件" in out.stderr and "evidence events verified" in out.stderr
    # And the signature of the checkpoint that records the root, here, with the configured key.
    assert (
        "该检查点的签名已在本机用密钥 ed25519:" in out.stderr and "its signature verified here" in out.stderr
    )


# -- 6. names where the gateway knows them; Chinese first -------------------------------------------


def test_monthly_report_names_organisations_and_departments(stack: Stack, traffic: dict[str, Any]) -> None:
    params = {"month": this_month(), "format": "csv"}
    text = api(stack, "GET", "/reports/monthly", "supervisor", params=params).text.lstrip("\ufeff")
    rows = list(csv.reader(io.StringIO(text)))
    names = {(r[0], r[1]): r[2] for r in rows[1:]}
    assert names[("organisation", f"\t{VILLAGE_A}")] == VILLAGE_A_NAME  # text for spreadsheets
    assert names[("department", "civil_affairs")] == "区民政局"
    assert names[("scenario", "DIBAO_REVIEW")] == "低保年度复核"  # as before

    page = api(stack, "GET", "/reports/monthly", "supervisor", params={"month": this_month()}).text
    assert f"<td>{VILLAGE_A_NAME}（{VILLAGE_A}）</td>" in page
    assert "<td>区民政局（civil_affairs）</td>" in page and "<th>单位</th>" in page

    data = api(
        stack, "GET", "/reports/monthly", "supervisor", params={"month": this_month(), "format": "json"}
    ).json()
    assert {r["key"]: r["name"] for r in data["by_org"]}[VILLAGE_A] == VILLAGE_A_NAME
    assert {r["key"]: r["name"] for r in data["by_department"]}["civil_affairs"] == "区民政局"


def test_who_read_names_the_organisation(stack: Stack, traffic: dict[str, Any]) -> None:
    body = {"id_number": traffic["resident"].id_number}
    accesses = api(stack, "POST", "/transparency", "supervisor", json=body).json()["accesses"]
    assert accesses
    for entry in accesses:
        assert (entry["org"], entry["org_name"]) == (VILLAGE_A, VILLAGE_A_NAME)


def test_division_names_come_from_the_configured_file(tmp_path: Path) -> None:
    from gateway.routes.supervision import _division_names_from

    names = tmp_path / "divisions.csv"
    names.write_text("# code,name\n310151101,城桥镇\n310151101201,东风村村民委员会\nnot-a-code,x\n", "utf-8")
    assert _division_names_from(names, False) == {
        "310151101000": "城桥镇",
        "310151101201": "东风村村民委员会",
    }
    assert _division_names_from(None, False) == {}  # production without a file: codes alone


def test_retention_says_what_pruning_does_chinese_first(stack: Stack, traffic: dict[str, Any]) -> None:
    answer = api(stack, "GET", "/retention", "auditor").json()
    assert answer["pruning"].startswith("超过保存期")
    assert "grassroots supervise prune" in answer["pruning"]
    assert answer["pruning_en"].startswith("Archived months past the retention period")


# -- 7. times as a supervisor types them ------------------------------------------------------------


def today_beijing() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() + 8 * 3600))


@pytest.mark.parametrize("path", ["/events", "/reports", "/anomalies"])
def test_a_swapped_time_range_is_refused_not_answered_empty(
    stack: Stack, traffic: dict[str, Any], path: str
) -> None:
    """since after until held nothing, and an empty answer read as "nobody read anything that week"."""
    params = {"since": "2026-12-06T00:00:00+08:00", "until": "2026-12-01T00:00:00+08:00"}
    resp = api(stack, "GET", path, "supervisor", params=params)
    assert resp.status_code == 422, resp.text
    answer = resp.json()
    assert answer["error"] == "invalid_time_range"
    assert answer["message"].startswith("时间范围有误：起始时间（since）不早于截止时间（until）")
    assert "2026-12-06" not in resp.text and "2026-12-01" not in resp.text  # what was typed is not repeated


def test_days_are_taken_as_people_write_them(stack: Stack, traffic: dict[str, Any]) -> None:
    """A day alone is the Beijing-time day, through the whole of it as an end: cadre_a's read of today is
    found from and until today, however the day is written; a day that does not exist says both forms."""
    y, m, d = today_beijing().split("-")
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in f"{y}年{int(m)}月{int(d)}日")
    for day in (f"{y}-{m}-{d}", f"{y}/{int(m)}/{int(d)}", f"{y}年{int(m)}月{int(d)}日", fullwidth):
        params = {"since": day, "until": day, "kind": "data.", "org": VILLAGE_A}
        resp = api(stack, "GET", "/events", "supervisor", params=params)
        assert resp.status_code == 200, (day, resp.text)
        assert resp.json()["items"], day
        report = api(stack, "GET", "/reports", "supervisor", params={"since": day, "until": day})
        assert report.status_code == 200 and report.json()["totals"]["allowed"] >= 1, day
    for wrong in ("2026-13-01", "2026年2月30日", "yesterday", "2026-12-02T08:00:00"):
        resp = api(stack, "GET", "/events", "supervisor", params={"since": wrong})
        assert resp.status_code == 422, wrong
        message = resp.json()["message"]
        assert "须为日期（例如 2026-12-01 或 2026年12月1日，按北京时间）或带时区的时间" in message, message
        assert wrong not in resp.text


def test_a_deadline_is_a_day_and_never_one_already_past(
    stack: Stack, traffic: dict[str, Any], incident_id: str
) -> None:
    """--due 2026-12-20 means by the end of that day (Beijing time); a deadline already past (a year typed
    wrong) is refused instead of making the case hundreds of days overdue at once, and nothing changes."""
    path = f"/incidents/{incident_id}/assign"
    next_year = str(int(today_beijing()[:4]) + 1)
    resp = api(
        stack, "POST", path, "supervisor", json={"assignee": "inspector-1", "due_at": f"{next_year}-01-20"}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["due_at"] == f"{next_year}-01-20T15:59:59.000000Z"  # 23:59:59 Beijing time
    before = api(stack, "GET", f"/incidents/{incident_id}", "supervisor", params={"events": "false"}).json()
    past = f"{int(today_beijing()[:4]) - 1}-01-20"
    resp = api(stack, "POST", path, "supervisor", json={"assignee": "inspector-2", "due_at": past})
    assert resp.status_code == 422, resp.text
    assert resp.json()["message"].startswith("新的办结期限已经过去（今天是 ")
    after = api(stack, "GET", f"/incidents/{incident_id}", "supervisor", params={"events": "false"}).json()
    assert (after["assignee"], after["due_at"], after["overdue"]) == ("inspector-1", before["due_at"], False)


# -- 8. an events query that finds nothing says why it may have -------------------------------------


@pytest.mark.parametrize(
    ("params", "hint"),
    [
        ({"scenario": "DIBAO_REVEIW"}, "scenario 不在现行场景目录中（现有：DIBAO_REVIEW、"),
        ({"dataset": "residnets"}, "dataset 不在数据目录中（现有："),
        ({"kind": "data"}, "kind 须为完整的事件类型（例如 data.read），或以 . 结尾表示一类（例如 data.）"),
        ({"actor": "cadre_a"}, "actor 须为用户编号（即事件中的 actor，例如 u-5b77c574d1），不是登录名或姓名"),
        # a village code with a digit wrong (…199000 for a township of 310151): within the district's
        # scope, so no outside_scope, and found nothing with no word on why
        ({"org": "310151199000"}, "org 不是本平台区划名录中的单位，也不是其中任何单位的上级，请核对区划代码"),
    ],
)
def test_a_mistyped_filter_is_pointed_out_not_answered_with_a_bare_empty_list(
    stack: Stack, traffic: dict[str, Any], params: dict[str, str], hint: str
) -> None:
    """cadre_a's reads are in the log; a typo in a filter found none, and the bare empty list read as "no
    such access ever happened". The answer now says which filter to check and what it takes."""
    resp = api(stack, "GET", "/events", "supervisor", params=params)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["items"] == []
    assert (
        answer["note"].startswith("在您的监督范围内没有符合条件的事件。请核对：") and hint in answer["note"]
    )
    assert answer["note_en"].startswith("No event within your supervisory scope matches. Check: ")
    typed = next(iter(params.values()))
    assert typed in hint or typed not in answer["note"] + answer["note_en"]  # never the value typed


def test_a_query_that_finds_events_carries_no_note(stack: Stack, traffic: dict[str, Any]) -> None:
    for params in ({"scenario": "DIBAO_REVIEW"}, {"dataset": "residents", "kind": "data."}):
        answer = api(stack, "GET", "/events", "supervisor", params=params).json()
        assert answer["items"] and "note" not in answer
    # a known township with nothing to show is told so plainly, its code not called unknown
    quiet = api(stack, "GET", "/events", "supervisor", params={"org": "310151", "kind": "no.such."}).json()
    assert quiet["items"] == [] and "org" not in quiet["note"]


def test_a_report_or_anomaly_run_for_an_unknown_org_says_so(stack: Stack, traffic: dict[str, Any]) -> None:
    """supervise report/anomalies --org with a digit wrong counted nothing and said nothing: all zeros for
    a village that does not exist read as a quiet village."""
    for path in ("/reports", "/anomalies"):
        answer = api(stack, "GET", path, "supervisor", params={"org": "310151199000"}).json()
        assert "org 不是本平台区划名录中的单位，也不是其中任何单位的上级，请核对区划代码" in answer["note"], (
            answer
        )
        assert "Check: org is not a division this platform knows" in answer["note_en"]
        assert "310151199000" not in answer["note"] + answer["note_en"]
        known = api(stack, "GET", path, "supervisor", params={"org": VILLAGE_A}).json()
        assert "note" not in known, known


def test_a_monthly_report_for_an_unknown_org_says_so_in_every_format(
    stack: Stack, traffic: dict[str, Any]
) -> None:
    """supervise monthly --org with a digit wrong gave an all-zero 通报 headed with that code and no word on
    why: printed and filed, it read as a quiet month there."""
    hint = "org 不是本平台区划名录中的单位，也不是其中任何单位的上级，请核对区划代码"
    unknown = {"month": this_month(), "org": "310151199000"}
    data = api(stack, "GET", "/reports/monthly", "supervisor", params={**unknown, "format": "json"}).json()
    assert data["totals"]["total"] == 0 and hint in data["note"], data
    assert "Check: org is not a division this platform knows" in data["note_en"]
    assert "310151199000" not in data["note"] + data["note_en"]
    text = api(stack, "GET", "/reports/monthly", "supervisor", params={**unknown, "format": "csv"}).text
    (note,) = [r for r in csv.reader(io.StringIO(text.lstrip("\ufeff"))) if r[0] == "note"]
    assert hint in note[2] and "Check: org is not a division" in note[2]
    page = api(stack, "GET", "/reports/monthly", "supervisor", params=unknown).text
    assert re.search(f'<p class="note" id="scope-note">[^<]*{hint}', page), page[:2000]
    # Saved to a file by the CLI, the note is said on the terminal too, not only on opening the file.
    target = stack.data_dir.parent / "unknown-org-report.csv"
    saved = stack.cli(
        "supervise", "monthly", "--month", this_month(), "--org", "310151199000", "--format", "csv",
        "--out", str(target), "--url", stack.base_url, "--as", "supervisor",
    )  # fmt: skip
    lines = saved.stdout.splitlines()
    assert (
        lines[1].startswith("written ")
        and lines[2].startswith("注意：在您的监督范围内没有")
        and hint in lines[2]
    )
    assert lines[3].startswith("note: No ") and "Check: org is not a division" in lines[3], lines
    assert target.read_bytes().decode("utf-8-sig").count(hint) == 1
    plain = stack.cli(
        "supervise", "monthly", "--month", this_month(), "--org", VILLAGE_A, "--format", "csv",
        "--out", str(target), "--url", stack.base_url, "--as", "supervisor",
    )  # fmt: skip
    assert "注意" not in plain.stdout and "note:" not in plain.stdout
    # A known village's month carries no such note.
    known = {"month": this_month(), "org": VILLAGE_A, "format": "json"}
    assert "note" not in api(stack, "GET", "/reports/monthly", "supervisor", params=known).json()


# -- 9. an ID number typed wrong at the hotline -------------------------------------------------------


def _swap_two(number: str) -> str:
    """The number with two neighbouring different digits swapped (a common slip), among the first 6."""
    i = next(i for i in range(5) if number[i] != number[i + 1])
    return number[:i] + number[i + 1] + number[i] + number[i + 2 :]


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        (lambda n: n[:-1], "身份证号码不正确：应为 18 位，输入的是 17 位。"),
        (lambda n: n + "7", "身份证号码不正确：应为 18 位，输入的是 19 位。"),
        (
            lambda n: n[:6] + n[8:17],
            "身份证号码不正确：这是 15 位的旧号码，请询问居民现行的 18 位身份证号码。",
        ),
        (lambda n: n[:10] + "A" + n[11:], "身份证号码不正确：只能包含数字，最后一位可以是 X。"),
        (lambda n: n[:10] + "13" + n[12:], "身份证号码不正确：第 7 至 14 位的出生日期不是有效日期。"),
        (_swap_two, "身份证号码不正确：最后一位校验码与前 17 位不符，可能有数字输错或前后颠倒。"),
    ],
)
def test_an_id_number_typed_wrong_says_what_to_ask_the_resident_again(
    stack: Stack, traffic: dict[str, Any], typed: Any, says: str
) -> None:
    """The hotline operator read only "格式或校验位不正确" whatever the slip: a digit missed, an old 15-digit
    number, a swapped pair. The refusal now says which, by lengths and positions, never a digit of it."""
    number = traffic["resident"].id_number
    wrong = typed(number)
    resp = api(stack, "POST", "/transparency", "supervisor", json={"id_number": wrong})
    assert resp.status_code == 422, resp.text
    answer = resp.json()
    assert answer["error"] == "invalid_id_number"
    assert answer["message"] == says + "请与居民逐位核对后重新输入。"
    assert answer["message_en"].startswith("The ID number is not valid (GB 11643): ")
    # The answer's request id is random hex made by the gateway, not anything typed: four digits of the
    # number turned up in it by chance (61549da8-… for an ID number ending 1549, CI of 11d6eea).
    echoed = resp.text.replace(answer["request_id"], "")
    assert answer["request_id"] and answer["request_id"] in resp.text
    for part in (wrong, number, number[:6], number[6:14], number[-4:]):
        assert part not in echoed


# -- 10. a resident calls again about a closed case ---------------------------------------------------


def test_a_closed_incident_says_what_to_do_when_the_resident_calls_again(
    stack: Stack, traffic: dict[str, Any]
) -> None:
    """A note, an assignment or a second disposition on a closed incident answered only "事件已办结。": the
    supervisor whose resident called back was not told that a new complaint is the way on."""
    body = {"source": "hotline_12345", "id_number": traffic["resident"].id_number, "summary": "居民来电"}
    created = api(stack, "POST", "/complaints", "supervisor", json=body)
    assert created.status_code == 201, created.text
    path = f"/incidents/{created.json()['incident']['incident_id']}"
    assert api(stack, "POST", f"{path}/assign", "supervisor", json={"assignee": "inspector-1"}).is_success
    closing = {"disposition": "unsubstantiated", "note": "每次访问均在低保复核授权内"}
    assert api(stack, "POST", f"{path}/disposition", "supervisor", json=closing).is_success
    for step, payload, refused in (
        ("notes", {"note": "居民再次来电，对结论有异议"}, "不能再添加调查记录"),
        ("assign", {"assignee": "inspector-2"}, "不能再分派"),
        ("disposition", closing, "已有处理结论，不能再次办结"),
    ):
        resp = api(stack, "POST", f"{path}/{step}", "supervisor", json=payload)
        assert (resp.status_code, resp.json()["error"]) == (409, "case_conflict"), step
        assert resp.json()["message"] == (
            f"事件已办结，{refused}。如居民对处理结果有异议，可重新办理该事件"
            "（grassroots supervise reopen）；如有新情况，请登记新的投诉（grassroots supervise complain），"
            "新事件会重新收集证据。"
        )
        assert "reopen it (grassroots supervise reopen)" in resp.json()["message_en"]

    # 重办: the resident disagrees. Another township's supervisor cannot (404, recorded as refused) ...
    incident_id = path.rsplit("/", 1)[1]
    before = stack.audit_count()
    outside = api(stack, "POST", f"{path}/reopen", "town_supervisor_b", json={"reason": "居民有异议"})
    assert (outside.status_code, outside.json()["error"]) == (404, "case_not_found")
    (refused_event,) = stack.last_events(stack.audit_count() - before)
    assert refused_event["kind"] == "supervision.incident_reopened"
    assert json.loads(refused_event["body"])["details"]["refused"] == "outside_scope"
    # ... the district's does, through the CLI; a name in the reason is refused first.
    url = ["--url", stack.base_url, "--as", "supervisor"]
    named = stack.cli(
        "supervise", "reopen", incident_id, "--reason", "居民王小明来电有异议", *url, check=False
    )
    assert named.returncode == 1 and "personal_data_in_note" in named.stderr
    before = stack.audit_count()
    out = stack.cli("supervise", "reopen", incident_id, "--reason", "居民对答复有异议，要求重新核查", *url)
    reopened = json.loads(out.stdout)
    assert (reopened["status"], reopened["disposition"], reopened["overdue"]) == (
        "investigating",
        None,
        False,
    )
    (event,) = stack.last_events(stack.audit_count() - before)
    assert event["kind"] == "supervision.incident_reopened"
    steps = api(stack, "GET", path, "supervisor", params={"events": "false"}).json()["steps"]
    assert [s["action"] for s in steps] == ["opened", "assigned", "disposed", "reopened"]
    assert "居民对答复有异议" not in event["body"]  # the reason stays in the case file, not the log
    again = api(stack, "POST", f"{path}/reopen", "supervisor", json={"reason": "再次重办"})
    assert (again.status_code, again.json()["error"]) == (409, "case_conflict")
    assert api(stack, "POST", f"{path}/disposition", "supervisor", json=closing).is_success


# -- 11. proofs say, in words, what was checked -------------------------------------------------------


def test_proofs_say_in_words_what_was_checked_here(stack: Stack, traffic: dict[str, Any]) -> None:
    """The CLI checked each proof before printing it, but printed only JSON: a supervisor could not tell a
    verified proof from a bare answer. It now says so on stderr, Chinese first (stdout stays JSON)."""
    url = ["--url", stack.base_url, "--as", "auditor"]
    old, new = traffic["old"], traffic["new"]
    out = stack.cli("supervise", "proof", "2", "--tree-size", str(new), *url)
    assert json.loads(out.stdout)["seq"] == 2
    zh, en = out.stderr.strip().splitlines()
    assert zh.startswith(f"已在本地校验：第 2 号事件包含在树大小 {new} 的日志中（根哈希 "), zh
    # The CLI runs with the gateway's configuration here, so it checks the checkpoint's signature itself.
    assert re.search(
        r"；与 \d{4}-\d\d-\d\d \d\d:\d\d:\d\d（北京时间）签发的签名检查点记载的根哈希相同。"
        r"该检查点的签名已在本机用密钥 ed25519:[0-9a-f]+ 核验。$",
        zh,
    ), zh
    assert en.startswith(f"verified here: event 2 is in the log of tree size {new}"), en
    assert re.search(r"; its signature verified here \(key ed25519:[0-9a-f]+\)$", en), en

    out = stack.cli("supervise", "consistency", "--old", str(old), "--new", str(new), *url)
    assert json.loads(out.stdout)["old_size"] == old
    zh, *zh_ends, en, en_end_old, en_end_new = out.stderr.strip().splitlines()
    assert zh == (
        f"已在本地校验：树大小 {new} 的日志包含树大小 {old} 的日志原样不变，其间只追加了 {new - old} 条事件。"
    )
    # Each end against its signed checkpoint, whose signature is checked here too.
    assert [line.split("：")[0] for line in zh_ends] == [f"  树大小 {old}", f"  树大小 {new}"]
    assert all("该检查点的签名已在本机用密钥 ed25519:" in line for line in zh_ends), zh_ends
    assert en.startswith(f"verified here: the log of tree size {new} holds the log of tree size {old}")
    assert en_end_old.startswith(f"  tree size {old}: the signed checkpoint of ")
    assert en_end_new.startswith(f"  tree size {new}: the signed checkpoint of ")
    assert "its signature verified here" in en_end_old + en_end_new

    swapped = api(stack, "GET", "/proofs/consistency", "auditor", params={"old": new, "new": old})
    assert (swapped.status_code, swapped.json()["error"]) == (422, "bad_sizes")
    assert swapped.json()["message"].startswith(
        "无法给出一致性证明：较早的树大小（old）不能大于较新的（new），两者都不能超过日志现有的 "
    )


def test_the_api_documentation_says_a_day_is_taken() -> None:
    """/docs is where an integrator learns the parameters: since/until must say a day is taken, and how."""
    from gateway.app import create_app
    from gateway.settings import Settings

    spec = create_app(Settings()).openapi()
    for path in ("events", "reports", "anomalies"):
        params = {p["name"]: p for p in spec["paths"][f"{BASE}/{path}"]["get"]["parameters"]}
        assert "2026年12月1日" in params["since"]["description"], path
        assert "included" in params["until"]["description"], path
