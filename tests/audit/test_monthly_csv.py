"""The monthly report's CSV: each day's row carries errors, records read and distinct users like every other
row, and the day rows add up to the month's total (a failed request is counted in both)."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from audit import (
    ANONYMOUS_ACTOR,
    AuditLog,
    MonthlyReport,
    Outcome,
    build_monthly_report,
    load_anomaly_rules,
    render_csv,
    render_html,
)
from tests.audit.conftest import Store
from tests.audit.helpers import make_event

DAY_1 = datetime(2026, 11, 3, 2, 0, tzinfo=UTC)  # 10:00 Beijing time
DAY_2 = DAY_1 + timedelta(days=1)
# November over: the report covers the whole month.
AFTER_NOVEMBER = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)


def _rows(text: str) -> list[dict[str, str]]:
    """The rows keyed by the English half of each bilingual header (``类别/section`` -> ``section``)."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = [cell.split("/", 1)[1] for cell in next(reader)]
    return [dict(zip(header, line, strict=True)) for line in reader]


def _report(store: Store, **names: Any) -> MonthlyReport:
    """November's report on ``store``, made once November is over, with the names the caller knows."""
    return build_monthly_report(store.engine, "2026-11", load_anomaly_rules(), now=AFTER_NOVEMBER, **names)


def _names(report: MonthlyReport) -> dict[tuple[str, str], str]:
    """The CSV's 名称 column by (section, key)."""
    return {(r["section"], r["key"]): r["name"] for r in _rows(render_csv(report))}


def test_headers_are_chinese_first_and_keys_carry_their_chinese_names(sqlite: Store) -> None:
    """Officials open the file in a spreadsheet: every header is Chinese first with the English column
    name after a slash, and refusal reasons, scenarios, anomaly rules and case counts have a 名称 column."""
    log = AuditLog(sqlite.engine)
    log.append_many(
        [
            make_event(1, occurred_at=DAY_1, outcome=Outcome.ALLOWED, scenario="DIBAO_REVIEW"),
            make_event(2, occurred_at=DAY_1, outcome=Outcome.REFUSED, reason="outside_hours"),
        ]
    )
    report = build_monthly_report(
        sqlite.engine,
        "2026-11",
        load_anomaly_rules(),
        now=AFTER_NOVEMBER,
        scenario_names={"DIBAO_REVIEW": "低保年审"},
        reason_names={"outside_hours": "不在允许的时段"},
    )
    text = render_csv(report)
    assert text.startswith("\ufeff类别/section,代码/key,名称/name,允许/allowed,拒绝/refused,出错/errors,")
    rows = _rows(text)
    names = {(r["section"], r["key"]): r["name"] for r in rows}
    assert names[("scenario", "DIBAO_REVIEW")] == "低保年审"
    assert names[("refusal_reason", "outside_hours")] == "不在允许的时段"
    assert names[("cases", "complaints_received")] == "本月受理投诉"
    assert next(r["name"] for r in rows if r["section"] == "total") == "2026-11 全月（全部单位）"
    assert all(r["name"] for r in rows if r["section"] == "anomaly")


def test_organisations_and_departments_are_named_where_the_caller_knows_them(sqlite: Store) -> None:
    """The caller (the gateway) knows the division and department names; the CSV's 名称 column and the
    printed page's first cell carry them, codes kept beside them; an unknown code stays a bare code."""
    AuditLog(sqlite.engine).append_many(
        [
            make_event(1, occurred_at=DAY_1, actor_org="310151101201"),
            make_event(2, occurred_at=DAY_1, actor_org="310151101202"),
        ]
    )
    report = _report(
        sqlite,
        dataset_departments={"residents": "civil_affairs"},
        org_names={"310151101201": "东风村村民委员会"},
        department_names={"civil_affairs": "区民政局"},
    )
    names = _names(report)
    assert names[("organisation", "\t310151101201")] == "东风村村民委员会"
    assert names[("organisation", "\t310151101202")] == ""
    assert names[("department", "civil_affairs")] == "区民政局"
    page = render_html(report)
    assert "<td>东风村村民委员会（310151101201）</td>" in page and "<td>310151101202</td>" in page
    # under the bars of the chart: the short name where known (it was the code's tail, 101201), else the tail
    chart = page.split('id="chart-org"', 1)[1].split("</svg>", 1)[0]
    assert 'class="tick">东风村</text>' in chart and 'class="tick">101202</text>' in chart
    assert "<td>区民政局（civil_affairs）</td>" in page and "<th>单位</th>" in page


def test_the_organisation_the_report_covers_is_named_too(sqlite: Store) -> None:
    # The page's header said "范围：310151000000" (a bare code) while every row names its organisation.
    AuditLog(sqlite.engine).append_many([make_event(1, occurred_at=DAY_1, actor_org="310151101201")])
    named = {"310151000000": "崇明区"}
    report = build_monthly_report(
        sqlite.engine,
        "2026-11",
        load_anomaly_rules(),
        org="310151000000",
        now=AFTER_NOVEMBER,
        org_names=named,
    )
    assert "范围：崇明区（310151000000）" in render_html(report)
    total = next(r["name"] for r in _rows(render_csv(report)) if r["section"] == "total")
    assert total == "2026-11 全月（崇明区 310151000000）"
    unnamed = build_monthly_report(
        sqlite.engine, "2026-11", load_anomaly_rules(), org="310151000000", now=AFTER_NOVEMBER
    )
    assert "范围：310151000000 · " in render_html(unnamed)


def test_the_printed_pages_running_title_is_inert_css_text(sqlite: Store) -> None:
    """Every printed page after the first is headed with the report's title and scope, written into the
    page's style sheet: a division name from the names file that holds a quote, a backslash or
    ``</style>`` must stay text there, neither ending the string nor the style element."""
    AuditLog(sqlite.engine).append_many([make_event(1, occurred_at=DAY_1, actor_org="310151101201")])
    odd = '崇明区"}\\</style><p id="injected">'
    page = render_html(_report(sqlite, org="310151000000", org_names={"310151000000": odd}))
    style = page.split("<style>", 1)[1].split("</style>", 1)[0]
    assert page.count("</style>") == 1 and 'id="injected"' not in page
    top = style.split("@top-center { content: ", 1)[1].split("; font-family", 1)[0]
    assert top == (
        '"数据访问情况定期通报（2026年11月） · 范围：崇明区\\22 }\\5c \\3c /style\\3e '
        '\\3c p id=\\22 injected\\22 \\3e （310151000000）"'
    )
    assert 'counter(page) " 页，共 " counter(pages) " 页"' in style


def test_a_findings_list_cut_short_says_so_and_how_to_see_them_all(sqlite: Store) -> None:
    """The page lists the first 20 findings: with 25 it listed 20 and nothing said the list went on, so a
    supervisor took the 20 for all. Now a note gives the month's total and the command that lists them."""
    finding = {"rule": "off_hours", "actor": "u-night", "actor_org": "310151101201", "seqs": [1, 2]}
    month = _report(sqlite, org="310151000000")
    many = replace(month, anomalies={"off_hours": 25}, findings=[finding] * 25)
    page = render_html(many)
    assert page.count("<td>u-night（310151101201）</td>") == 20
    assert (
        "以上仅列出前 20 条线索，本月共 25 条；全部线索可用 grassroots supervise anomalies "
        "--since 2026-11-01 --until 2026-11-30 --org 310151000000 查看。"
    ) in page
    few = replace(month, anomalies={"off_hours": 3}, findings=[finding] * 3)
    assert 'id="findings-left-out"' not in render_html(few)


def test_the_charts_of_a_month_without_accesses_say_there_were_none(sqlite: Store) -> None:
    """October, with no access at all, printed two bare axes (0 to 1) and no bar: read as charts that
    failed to draw. Each now says there was nothing to draw; a month with accesses draws its bars."""
    page = render_html(_report(sqlite))
    for chart in ("chart-daily", "chart-org"):
        svg = page.split(f'id="{chart}"', 1)[1].split("</svg>", 1)[0]
        assert '<text x="378.0" y="122.0" text-anchor="middle" class="empty">本月没有数据访问记录' in svg
    AuditLog(sqlite.engine).append_many([make_event(1, occurred_at=DAY_1, outcome=Outcome.ALLOWED)])
    assert 'class="empty"' not in render_html(_report(sqlite))


def test_day_rows_are_complete_and_add_up_to_the_month(sqlite: Store) -> None:
    log = AuditLog(sqlite.engine)
    log.append_many(
        [
            make_event(1, occurred_at=DAY_1, outcome=Outcome.ALLOWED, record_count=3, actor="u-1"),
            make_event(2, occurred_at=DAY_1, outcome=Outcome.ALLOWED, record_count=2, actor="u-2"),
            make_event(3, occurred_at=DAY_1, outcome=Outcome.REFUSED, record_count=0, actor="u-1"),
            # The upstream was down: neither allowed nor refused, but a request of the month all the same.
            make_event(4, occurred_at=DAY_2, outcome=Outcome.ERROR, record_count=0, actor="u-3"),
        ]
    )
    report = build_monthly_report(sqlite.engine, "2026-11", load_anomaly_rules(), now=AFTER_NOVEMBER)
    rows = _rows(render_csv(report))
    total = next(r for r in rows if r["section"] == "total")
    days = {r["key"]: r for r in rows if r["section"] == "day"}
    assert len(days) == 30
    assert days["2026-11-03"] == {
        "section": "day",
        "key": "2026-11-03",
        "name": "2026年11月3日（北京时间）",
        "allowed": "2",
        "refused": "1",
        "errors": "0",
        "total": "3",
        "records_read": "5",
        "users": "2",
    }
    assert (days["2026-11-04"]["errors"], days["2026-11-04"]["total"]) == ("1", "1")
    assert days["2026-11-05"]["total"] == "0" and days["2026-11-05"]["users"] == "0"
    for column in ("allowed", "refused", "errors", "total", "records_read"):
        assert sum(int(d[column]) for d in days.values()) == int(total[column])
    assert total["total"] == "4"
    daily_json = {d["day"]: d for d in report.to_json()["daily"]}
    assert daily_json["2026-11-04"]["errors"] == 1


def test_rows_of_refusals_that_name_no_scenario_organisation_or_dataset_are_named_in_chinese(
    sqlite: Store,
) -> None:
    """A cadre's request with no scenario (or one that names nothing), a token no organisation could be
    read from, or no dataset, is grouped under ``(unknown)``: the printed 通报 showed that English
    placeholder as the row's name, which its readers cannot act on."""
    AuditLog(sqlite.engine).append_many(
        [
            make_event(
                1, occurred_at=DAY_1, outcome=Outcome.REFUSED, scenario=None, actor_org=None, dataset=None
            ),
            make_event(2, occurred_at=DAY_1, scenario="DIBAO_REVIEW", actor_org="310151101201"),
        ]
    )
    report = _report(
        sqlite,
        scenario_names={"DIBAO_REVIEW": "低保年度复核"},
        dataset_departments={"residents": "civil_affairs"},
    )
    names = _names(report)
    assert names[("scenario", "(unknown)")] == "未指明或无效的使用场景"
    assert names[("organisation", "(unknown)")] == "未能确定所属单位"
    assert names[("department", "(unknown)")] == "未能确定数据所属部门"
    assert names[("scenario", "DIBAO_REVIEW")] == "低保年度复核"
    page = render_html(report)
    assert "(unknown)" not in page and "known)" not in page
    assert "<td>未指明或无效的使用场景</td>" in page and "<td>未能确定所属单位</td>" in page


def test_organisation_codes_stay_text_in_a_spreadsheet(sqlite: Store) -> None:
    """Excel and WPS read a 12-digit division code as a number and show 3.10151E+11 (and save it back so);
    the national code 000000000000 becomes 0. Such codes go out with a leading tab, which makes a
    spreadsheet keep the cell as text; other keys (scenario codes, days, reasons) are written as they are."""
    AuditLog(sqlite.engine).append_many(
        [
            make_event(1, occurred_at=DAY_1, actor_org="310151101201", scenario="DIBAO_REVIEW"),
            make_event(2, occurred_at=DAY_1, actor_org="000000000000", outcome=Outcome.REFUSED),
        ]
    )
    rows = _rows(render_csv(_report(sqlite)))
    orgs = [r["key"] for r in rows if r["section"] == "organisation"]
    assert sorted(orgs) == ["\t000000000000", "\t310151101201"]
    assert all(k.lstrip("\t").isdigit() for k in orgs)
    others = [r["key"] for r in rows if r["section"] != "organisation"]
    assert "DIBAO_REVIEW" in others and "2026-11-03" in others
    assert not any(k.startswith("\t") for k in others)


def test_a_month_still_running_shows_days_through_today_only_and_says_so(sqlite: Store) -> None:
    # November's report made on 4 November listed 5-30 November as zero rows in the CSV and the daily
    # chart, which read as "no activity" on days that had not happened yet.
    AuditLog(sqlite.engine).append_many(
        [make_event(1, occurred_at=DAY_1), make_event(2, occurred_at=DAY_2, outcome=Outcome.REFUSED)]
    )
    # 4 November, 23:30 Beijing time (15:30 UTC): "today" is Beijing's day, not UTC's.
    made = datetime(2026, 11, 4, 15, 30, tzinfo=UTC)
    report = build_monthly_report(sqlite.engine, "2026-11", load_anomaly_rules(), now=made)
    rows = _rows(render_csv(report))
    days = [r["key"] for r in rows if r["section"] == "day"]
    assert days == ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]
    total = next(r for r in rows if r["section"] == "total")
    assert total["total"] == "2"
    assert total["name"] == (
        "2026-11 截至2026年11月4日（北京时间），本月尚未结束（全部单位）"
        " / month in progress, through 2026-11-04 (Beijing time)"
    )
    # a spreadsheet user comparing with a system that counts UTC days is told which day each row is
    assert [r["name"] for r in rows if r["section"] == "day"][-1] == "2026年11月4日（北京时间）"
    assert report.to_json()["in_progress"] is True
    assert report.to_json()["through_day"] == "2026-11-04"
    assert [d["day"] for d in report.to_json()["daily"]] == days
    page = render_html(report)
    note = page.split('id="in-progress">', 1)[1].split("</p>", 1)[0]
    assert note.startswith("本月尚未结束，数字截至 2026年11月4日（北京时间）")
    assert "figures through 2026-11-04" in note
    chart = page.split('id="chart-daily"', 1)[1].split("</svg>", 1)[0]
    assert 'class="tick">04</text>' in chart and 'class="tick">05</text>' not in chart
    # The same month once over: every day, no note.
    ended = build_monthly_report(sqlite.engine, "2026-11", load_anomaly_rules(), now=AFTER_NOVEMBER)
    assert len(ended.daily_rows) == 30 and ended.through_day is None
    assert 'id="in-progress"' not in render_html(ended)
    assert ended.to_json()["in_progress"] is False


def test_requests_no_token_identified_are_counted_but_are_no_user(sqlite: Store) -> None:
    """Requests without a valid token are recorded with the actor ``anonymous``: they are accesses
    (refused) to count, but not a user. The 通报 counted them as one more "涉及用户数", however many
    people sent them (the district's page said 4 users where 3 signed-in users had read)."""
    AuditLog(sqlite.engine).append_many(
        [
            make_event(1, occurred_at=DAY_1, actor="u-1", actor_org="310151101201"),
            make_event(2, occurred_at=DAY_1, actor="u-2", actor_org="310151101201"),
            *(
                make_event(
                    3 + i,
                    occurred_at=DAY_2,
                    actor=ANONYMOUS_ACTOR,
                    actor_org=None,
                    outcome=Outcome.REFUSED,
                    reason="missing_token",
                )
                for i in range(3)
            ),
        ]
    )
    report = _report(sqlite).to_json()
    assert (report["totals"]["total"], report["totals"]["refused"]) == (5, 3)
    assert report["totals"]["distinct_users"] == 2
    by_org = {row["key"]: row for row in report["by_org"]}
    assert (by_org["(unknown)"]["refused"], by_org["(unknown)"]["distinct_users"]) == (3, 0)
    assert {day["day"]: day["distinct_users"] for day in report["daily"]}["2026-11-04"] == 0
    rows = {(r["section"], r["key"].lstrip("\t")): r for r in _rows(render_csv(_report(sqlite)))}
    assert rows[("organisation", "(unknown)")]["users"] == "0"
