"""``grassroots supervise`` where the command itself, not the gateway, decides: where a report is written,
where the ID number comes from, what ``incident --verify`` prints.

Run through Typer against the loopback stand-in of ``test_cli_client`` (it records each request), and as a
real process with no terminal where a terminal is the point.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from audit import CheckpointSigner, merkle
from gateway.cli import app as grassroots
from tests.gateway.test_cli_client import Gateway, serve_gateway

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    yield from serve_gateway()


def supervise(*args: str, url: str, env: dict[str, str] | None = None) -> Result:
    base = {"GRASSROOTS_TOKEN": "", "GRASSROOTS_URL": "", "GRASSROOTS_SUBJECT_ID_NUMBER": ""}
    return runner.invoke(
        grassroots, ["supervise", *args, "--url", url, "--token", "t"], env={**base, **(env or {})}
    )


def chinese_then_english(text: str) -> tuple[str, str]:
    zh, en = text.strip().splitlines()[:2]
    assert any("\u4e00" <= c <= "\u9fff" for c in zh) and en.isascii(), text
    return zh, en


# -- monthly --out ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "zh_says", "en_says"),
    [
        ("no-such-dir/report.html", "不存在", "does not exist"),
        ("a-file/report.html", "不是文件夹", "is not a folder"),
        ("a-folder", "是一个文件夹", "is a folder"),
    ],
)
def test_monthly_report_refuses_a_place_it_cannot_write_before_asking_the_gateway(
    gateway: Gateway, tmp_path: Path, where: str, zh_says: str, en_says: str
) -> None:
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-folder").mkdir()
    result = supervise("monthly", "--month", "2026-11", "--out", str(tmp_path / where), url=gateway.url)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    zh, en = chinese_then_english(result.stderr)
    assert zh_says in zh and en_says in en
    assert gateway.received == []  # the gateway was not asked: no report handed out, none recorded


def test_monthly_report_that_cannot_be_saved_says_so_without_a_traceback(
    gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway.answer(200, b"<html></html>", content_type="text/html")

    def disk_full(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    target = tmp_path / "report.html"
    result = supervise("monthly", "--month", "2026-11", "--out", str(target), url=gateway.url)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    zh, en = chinese_then_english(result.stderr)
    assert zh.startswith(f"报告已生成，但无法保存到 {target}") and os.strerror(errno.ENOSPC) in zh
    assert en.startswith(f"the report was produced but could not be saved to {target}")
    assert not target.exists()


# -- months as people write them -----------------------------------------------------------------------


@pytest.mark.parametrize("typed", ["2026-1", "2026-01", "2026年1月", "２０２６－１", "2026/1"])
def test_a_month_is_taken_as_people_write_it_and_sent_as_yyyy_mm(
    gateway: Gateway, tmp_path: Path, typed: str
) -> None:
    """``--month 2026-1`` was refused (须为 YYYY-MM 格式); every way of writing January 2026 is now sent as
    2026-01, and the report is saved under that name."""
    gateway.answer(200, b"<html></html>", content_type="text/html")
    os.chdir(tmp_path)
    result = supervise("monthly", "--month", typed, url=gateway.url)
    assert result.exit_code == 0, result.output
    assert [r.path for r in gateway.received] == [
        "/api/v1/supervision/reports/monthly?month=2026-01&format=html"
    ]
    assert (tmp_path / "audit-report-2026-01.html").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["monthly", "--month", "2026-13"],
        ["archive", "--month", "2026年0月"],
        ["prune", "--through-month", "26.1"],
    ],
)
def test_a_month_that_does_not_exist_is_a_usage_error_naming_the_option(
    gateway: Gateway, command: list[str]
) -> None:
    result = supervise(*command, url=gateway.url)
    assert result.exit_code == 2, result.output
    assert "须为存在的月份" in result.output and command[1] in result.output
    assert command[2] not in result.output  # what was typed is not repeated
    assert gateway.received == []


# -- the ID number without a terminal ------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [["who-read"], ["complain", "--source", "walk_in", "--summary", "来访反映"]]
)
def test_no_id_number_and_no_terminal_is_a_usage_error_not_a_getpass_warning(
    gateway: Gateway, command: list[str]
) -> None:
    gateway.answer(200, {"resource": "audit", "action": "read", "allowed": True})  # the role may
    env = {k: v for k, v in os.environ.items() if k != "GRASSROOTS_SUBJECT_ID_NUMBER"}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "supervise",
            *command,
            "--url",
            gateway.url,
            "--token",
            "t",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,  # no controlling terminal: getpass cannot fall back to /dev/tty
    )
    assert out.returncode == 2, out.stderr
    assert "GetPassWarning" not in out.stderr and "Password input may be echoed" not in out.stderr
    zh, en = chinese_then_english(out.stderr)
    assert "GRASSROOTS_SUBJECT_ID_NUMBER" in zh and "终端" in zh
    assert "GRASSROOTS_SUBJECT_ID_NUMBER" in en and "terminal" in en


@pytest.mark.parametrize(
    ("command", "action"),
    [
        (["who-read"], "read"),
        (["complain", "--source", "walk_in", "--summary", "来访反映"], "register"),
        # An auditor (no review) re-checking an incident typed the complainant's number, then got 403.
        (["recheck", "I-9d2eec9b69394daf"], "review"),
    ],
)
def test_a_role_that_may_not_is_refused_before_the_id_number_is_asked_for(
    gateway: Gateway, command: list[str], action: str
) -> None:
    """A cadre running `supervise complain` used to type a resident's ID number (without echo) only for the
    gateway to refuse the act: the command now asks the gateway first and asks for nothing."""
    gateway.answer(200, {"resource": "audit", "action": action, "allowed": False})
    result = supervise(*command, url=gateway.url)  # no ID number in the environment, no terminal
    assert result.exit_code == 1, result.output
    zh, en = chinese_then_english(result.stderr.split(": ", 1)[1])
    assert "无需输入身份证号码" in zh and f"(permission: {action} audit)" in en
    assert [(r.method, r.path.split("?")[0]) for r in gateway.received] == [("GET", "/api/v1/me/can")]


# -- incident --verify --------------------------------------------------------------------------------


def test_incident_verify_prints_the_incident_and_the_verdict(gateway: Gateway) -> None:
    """One evidence event in a tree of one: its leaf hash is the root (RFC 9162 §2.1.1)."""
    leaf = merkle.leaf_hash(b"event 1")
    incident: dict[str, Any] = {
        "incident_id": "I-1",
        "status": "open",
        "root_hash": leaf.hex(),
        "tree_size": 1,
        "evidence": [{"seq": 1, "leaf_hash": leaf.hex(), "proof": []}],
        # What the checkpoint listing answers too: the stand-in gives every request the same body.
        "items": [{"tree_size": 1, "root_hash": leaf.hex()}],
    }
    gateway.answer(200, incident)
    result = supervise("incident", "I-1", "--verify", url=gateway.url)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["incident_id"] == "I-1" and shown["evidence"] == incident["evidence"]
    assert shown["local_verification"] == {
        "evidence_events_verified": 1,
        "root_hash": leaf.hex(),
        "tree_size": 1,
        "signed_checkpoint_has_root": True,
    }
    zh, en = chinese_then_english(result.stderr)
    assert zh.startswith("已在本地校验 1 条证据事件") and en.startswith("1 evidence events verified")
    assert [r.path for r in gateway.received] == [
        "/api/v1/supervision/incidents/I-1",
        "/api/v1/supervision/checkpoints",
    ]


def test_incident_verify_of_no_evidence_says_there_was_none_to_check(gateway: Gateway) -> None:
    # A complaint about a resident nobody read: "已在本地校验 0 条证据事件，均通向根哈希…".
    root = merkle.leaf_hash(b"event 1").hex()
    incident = {"incident_id": "I-1", "root_hash": root, "tree_size": 1, "evidence": []}
    gateway.answer(200, {**incident, "items": [{"tree_size": 1, "root_hash": root}]})
    result = supervise("incident", "I-1", "--verify", url=gateway.url)
    assert result.exit_code == 0, result.output
    zh, en = chinese_then_english(result.stderr)
    assert zh.startswith("该事件没有证据事件（审计日志中没有找到涉及该居民的访问），无需校验包含证明；")
    assert (
        "0 条" not in zh and en.startswith("the incident has no evidence events") and "0 evidence" not in en
    )


def test_incident_help_says_what_verify_prints() -> None:
    text = runner.invoke(grassroots, ["supervise", "incident", "--help"], env={"COLUMNS": "200"}).stdout
    assert "prints the incident" in " ".join(text.split())


# -- archive-verify of a file that cannot be read -----------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "reason_zh", "reason_en"),
    [
        (False, "文件不存在", "no such file"),
        (
            True,
            "这是一个目录，请给出其中的归档清单文件（…/*.manifest.json）",
            "it is a directory: give the manifest files in it (.../*.manifest.json)",
        ),
    ],
)
def test_archive_verify_of_an_unreadable_file_prints_the_verdicts_own_reason(
    tmp_path: Path, folder: bool, reason_zh: str, reason_en: str
) -> None:
    """The Chinese reason is the one the library gave where it met the error, not guessed from English."""
    key = tmp_path / "checkpoint-public.pem"
    key.write_bytes(CheckpointSigner.generate().public_key_pem())
    manifest = tmp_path / "archives" / "audit-2026-10-1-10.manifest.json"
    if folder:
        manifest.mkdir(parents=True)
    result = runner.invoke(
        grassroots,
        ["supervise", "archive-verify", str(manifest), "--public-key", str(key)],
        env={"GRASSROOTS_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 2, result.output
    zh, en = chinese_then_english(result.stderr)
    assert zh.startswith(f"无法读取 {manifest}：{reason_zh}，未做任何验证。请检查路径")
    assert en.startswith(
        f"Cannot read the archive: cannot read {manifest}: {reason_en}. Nothing was verified"
    )
    assert "does NOT verify" not in result.stderr


def test_complaint_shows_one_complaint_as_the_api_does(gateway: Gateway) -> None:
    # GET /complaints/{id} had no command: a supervisor with a 12345 ticket's complaint id had to list all.
    gateway.answer(200, {"complaint_id": "C-1", "incident_id": "I-1", "overdue": False})
    result = supervise("complaint", "C-1", url=gateway.url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["incident_id"] == "I-1"
    assert [(r.method, r.path) for r in gateway.received] == [("GET", "/api/v1/supervision/complaints/C-1")]


def test_a_complaint_says_where_it_stands_in_words_for_answering_the_resident(gateway: Gateway) -> None:
    """The 12345 operator looking a complaint up to answer the caller got codes only ("incident_status":
    "closed", "disposition": "substantiated", a UTC due_at): not what the conclusion was in Chinese, what to
    tell the resident, nor by when. Now a line in words, Chinese first, on stderr."""
    closed = {
        "complaint_id": "C-1",
        "source": "hotline_12345",
        "ticket": "12345-2026-11-0042",
        "incident_id": "I-1",
        "incident_status": "closed",
        "disposition": "substantiated",
        "due_at": "2026-12-22T15:59:59.000000Z",
        "due_at_beijing": "2026-12-22 23:59:59",
        "overdue": False,
        "overdue_deadlines": [],
    }
    gateway.answer(200, closed)
    result = supervise("complaint", "C-1", url=gateway.url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["disposition"] == "substantiated"
    zh, en = chinese_then_english(result.stderr)
    assert zh == (
        "投诉 C-1（12345 热线，工单号 12345-2026-11-0042）：事件 I-1 已办结，处理结论：属实。"
        "请按处理意见答复投诉人（处理意见见 grassroots supervise incident I-1 的办理步骤）。"
    )
    assert en.startswith("Complaint C-1 (12345 hotline, ticket 12345-2026-11-0042): incident I-1 is closed")

    from gateway.commands.supervision import complaint_sentences

    late = {
        **closed,
        "ticket": None,
        "source": "walk_in",
        "incident_status": "investigating",
        "disposition": None,
        "overdue": True,
        "overdue_deadlines": [
            {"message": "投诉答复期限已逾期 1 天（应于 2026-12-22 前答复投诉人）", "message_en": "missed"}
        ],
    }
    assert complaint_sentences(late)[:3] == [
        "投诉 C-1（来访）：事件 I-1 正在核查。",
        "答复投诉人期限：2026-12-22 23:59（北京时间）。",
        "投诉答复期限已逾期 1 天（应于 2026-12-22 前答复投诉人）。",
    ]
    assert all(line.isascii() for line in complaint_sentences(late)[3:])

    # Escalated (督办) and with an estimated deadline: the operator can tell the caller the office above
    # oversees the case, and is warned the date may still move once the year's holidays are known.
    escalated = {
        **late,
        "escalated": True,
        "escalation_message": "该事件逾期未办结，已于 2026-12-23 提请上级监督机构（310151000000）督办",
        "escalation_message_en": "overdue, escalated on 2026-12-23 to the supervisory office above",
        "due_estimated": True,
        "due_estimated_note": "该期限跨入国务院尚未公布…",
        "due_estimated_note_en": "This deadline runs into a year...",
    }
    said = complaint_sentences(escalated)
    assert said[3:5] == [
        "该事件逾期未办结，已于 2026-12-23 提请上级监督机构（310151000000）督办。"
        "可告知投诉人：已由上级部门督办。",
        "注意（答复投诉人期限）：该期限跨入国务院尚未公布…",
    ]
    assert all(line.isascii() for line in said[5:]) and any("escalated on 2026-12-23" in x for x in said[5:])


def test_complain_refuses_an_unknown_source_before_asking_for_the_id_number(gateway: Gateway) -> None:
    # In a terminal the ID number is typed (without echo) before the request; a typo in --source was
    # refused only by the gateway afterwards, so the number had to be typed again. Now nothing is asked
    # or sent (the environment variable stands in for the typed number here).
    result = supervise(
        "complain",
        "--source",
        "hotline",
        "--summary",
        "来电",
        url=gateway.url,
        env={"GRASSROOTS_SUBJECT_ID_NUMBER": "110101199003077777"},
    )
    assert result.exit_code == 2, result.output
    zh, en = chinese_then_english(result.stderr)
    assert "hotline_12345、burden_monitoring、walk_in" in zh and "hotline_12345, burden_monitoring" in en
    assert gateway.received == []


def test_report_refuses_an_unknown_grouping_by_the_option_the_user_typed(gateway: Gateway) -> None:
    # The gateway's 422 named its own parameter (group_by); the user typed --by.
    result = supervise("report", "--by", "village", url=gateway.url)
    assert result.exit_code == 2, result.output
    zh, en = chinese_then_english(result.stderr)
    assert "--by（只能是 org、department、scenario 之一）" in zh
    assert "--by (must be one of org, department, scenario)" in en
    assert "group_by" not in result.stderr
    assert gateway.received == []

    result = supervise("report", "--org-level", "8", url=gateway.url)
    assert result.exit_code == 2, result.output
    zh, en = chinese_then_english(result.stderr)
    assert (
        "--org-level（只能是 2、4、6、9、12 之一）" in zh
        and "--org-level (must be one of 2, 4, 6, 9, 12)" in en
    )
    assert "org_level" not in result.stderr
    assert gateway.received == []


def test_who_read_says_in_words_when_nobody_read_the_data() -> None:
    from gateway.commands.supervision import who_read_sentences

    said = who_read_sentences({"accesses": [], "count": 0, "archived_period": None})
    assert said[0].startswith("没有查到该居民的数据被查看的记录") and said[1].startswith("No read")


def test_who_read_says_how_many_in_all_and_how_to_see_the_earlier_ones() -> None:
    from gateway.commands.supervision import who_read_sentences

    read = {"occurred_at_beijing": "2026-12-06 20:06:02", "org_name": "东风村村民委员会", "roles": []}
    said = who_read_sentences({"accesses": [read] * 2, "count": 2, "total": 5, "offset": 0})
    assert said[0] == (
        "该居民的数据共被查看 5 次（只列出获准的查看；被拒绝的尝试见投诉事件）。"
        "以下是最近的第 1 至 2 次（最新的在前），更早的请加 --offset 2 查看："
    )
    assert said[-1].startswith("5 allowed reads") and "--offset 2" in said[-1]
    last = who_read_sentences({"accesses": [read], "count": 1, "total": 5, "offset": 4})
    assert "以下是最近的第 5 次（最新的在前）：" in last[0] and "--offset" not in last[0]
    whole = who_read_sentences({"accesses": [read], "count": 1, "total": 1, "offset": 0})
    assert whole[0] == "该居民的数据共被查看 1 次（只列出获准的查看；被拒绝的尝试见投诉事件）："


def test_who_read_past_the_last_read_does_not_say_nobody_read_the_data() -> None:
    # --offset 5 of 2 reads: the page is empty, but the resident's data was read twice; the hotline
    # was told "没有查到该居民的数据被查看的记录".
    from gateway.commands.supervision import who_read_sentences

    said = who_read_sentences({"accesses": [], "count": 0, "total": 2, "limit": 100, "offset": 5})
    assert said[0].startswith("该居民的数据共被查看 2 次") and "--offset 5 已超过最后一次" in said[0]
    assert "没有查到" not in said[0]
    assert said[1].startswith("2 allowed reads") and "Leave out --offset" in said[1]
    assert said[1].isascii()


#: One read as the transparency answer gives it.
A_READ = {
    "occurred_at_beijing": "2026-12-06 20:06:02",
    "org_name": "东风村村民委员会",
    "role_labels": ["村（居）委会干部"],
    "scenario_name": "低保年度复核",
    "dataset_title": "居民登记信息",
    "field_titles": ["姓名", "公民身份号码"],
    "masking_profile": "standard",
}


def test_who_read_says_a_steward_unmasked_the_number_in_words_of_its_own() -> None:
    from gateway.commands.supervision import who_read_sentences

    unmask = {
        **A_READ,
        "org_name": "崇明区",
        "role_labels": ["数据管理员"],
        "kind": "masking.unmask_revealed",
    }
    unmask |= {"scenario_name": None, "field_titles": ["公民身份号码"], "masking_profile": None}
    said = who_read_sentences({"accesses": [unmask], "count": 1, "total": 1, "offset": 0})
    assert said[1] == (
        "  2026-12-06 20:06:02（北京时间） 崇明区（数据管理员）"
        "还原查看了居民登记信息中的公民身份号码（未脱敏的完整内容）"
    )


def test_a_registered_complaint_says_what_was_found_and_what_to_do_next() -> None:
    """The answer was JSON only: an official read ``"evidence_events": 0`` and UTC deadlines, and was not
    told that nothing was found, that a system did not answer, by when to answer, or what comes next."""
    from gateway.commands.supervision import registered_sentences

    answer = {
        "complaint": {"complaint_id": "C-1", "due_at": "2026-12-21T12:06:33.713653Z"},
        "incident": {"incident_id": "I-1", "due_at": "2027-01-05T12:06:33.713653Z"},
        "evidence_events": 0,
        "evidence_incomplete": [],
    }
    said = registered_sentences(answer)
    assert said[0] == "已登记投诉 C-1，并立案事件 I-1。"
    assert said[1].startswith("审计日志中没有找到涉及该居民的访问")
    assert said[2] == (
        "答复投诉人期限：2026-12-21 20:06；事件办结期限：2027-01-05 20:06（北京时间）。"
        "下一步：grassroots supervise assign I-1 --to <承办人>"
    )
    assert all(line.isascii() for line in said[3:])
    # the English line gave the raw UTC stamps (2026-12-21T12:06:33.713653Z) beside the Chinese Beijing
    # times, so the two languages named deadlines eight hours apart
    assert said[-1] == (
        "Answer the complainant by 2026-12-21 20:06, close the incident by 2027-01-05 20:06 (Beijing time). "
        "Next: grassroots supervise assign I-1 --to <assignee>"
    )
    gap = {
        "message": "证据可能不完整：部门系统 x（数据集 residents）……",
        "message_en": "Evidence may be incomplete",
    }
    said = registered_sentences({**answer, "evidence_events": 3, "evidence_incomplete": [gap]})
    assert (
        said[1].startswith("找到涉及该居民的访问 3 次（获准的查看与被拒绝的尝试合计）")
        and said[2] == gap["message"]
    )
    assert said[3] == "系统恢复后请运行 grassroots supervise recheck I-1。"
    # The closing deadline runs into a year whose holidays are not known yet: said after the deadlines,
    # naming which one is an estimate, in both languages.
    note = {"due_estimated": True, "due_estimated_note": "系按保守方式估算"}
    note["due_estimated_note_en"] = "estimate"
    said = registered_sentences({**answer, "incident": {**answer["incident"], **note}})
    assert said[3] == "注意（事件办结期限）：系按保守方式估算"
    assert said[-1] == "Note (closing deadline): estimate"


def test_who_read_says_the_fields_were_shown_desensitised() -> None:
    """ "查看了…公民身份号码" told a resident her whole number was read; the cadre saw 310230************."""
    from gateway.commands.supervision import who_read_sentences

    said = who_read_sentences({"accesses": [A_READ], "count": 1, "total": 1, "offset": 0})
    assert said[1].endswith("为「低保年度复核」查看了居民登记信息（按脱敏规则显示）：姓名、公民身份号码")


def test_a_case_step_says_where_the_incident_stands_in_words(gateway: Gateway) -> None:
    """hand-down, assign, note, dispose and reopen printed the whole incident as JSON only (some 800
    characters of codes and UTC stamps): a supervisor was not told in words who holds the case now, who
    investigates it, or by when. Now the state follows on stderr, Chinese first."""
    handed = {
        "incident_id": "I-1",
        "complaint_id": "C-1",
        "status": "investigating",
        "org": "310151101000",
        "assignee": "城桥镇纪委核查组",
        "due_at": "2027-01-06T15:59:59.000000Z",
        "due_at_beijing": "2027-01-06 23:59:59",
        "complaint_due_at": "2026-12-22T15:59:59.000000Z",
        "complaint_due_at_beijing": "2026-12-22 23:59:59",
        "overdue_deadlines": [],
    }
    gateway.answer(200, handed)
    result = supervise("hand-down", "I-1", "--org", "310151101000", url=gateway.url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["org"] == "310151101000"
    said = result.stderr.splitlines()
    assert said[:2] == [
        "事件 I-1（管辖单位 310151101000）：正在核查，承办人：城桥镇纪委核查组。",
        "事件办结期限：2027-01-06 23:59；答复投诉人期限：2026-12-22 23:59（北京时间）。",
    ]
    assert said[2].startswith("Incident I-1 (held by 310151101000): under investigation by")
    assert [(r.method, r.path) for r in gateway.received] == [
        ("POST", "/api/v1/supervision/incidents/I-1/hand-down")
    ]

    from gateway.commands.supervision import incident_sentences

    closed = {**handed, "status": "closed", "disposition": "unsubstantiated"}
    assert incident_sentences(closed)[0] == (
        "事件 I-1（管辖单位 310151101000）：已办结，处理结论：不属实。"
        "请按处理意见答复投诉人（grassroots supervise complaint C-1）。"
    )
    assert len(incident_sentences(closed)) == 2  # no deadlines once closed
    late = {
        **handed,
        "assignee": None,
        "status": "open",
        "overdue_deadlines": [
            {"message": "事件办结期限已逾期 2 天（应于 2027-01-06 前办结）", "message_en": "late"}
        ],
    }
    said = incident_sentences(late)
    assert said[0].endswith("尚未分派承办人（grassroots supervise assign I-1 --to <承办人>）。")
    assert said[2] == "事件办结期限已逾期 2 天（应于 2027-01-06 前办结）。"
    assert all(line.isascii() for line in said[3:])
