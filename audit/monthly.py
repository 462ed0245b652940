"""The monthly notification report (定期通报): figures, CSV, and a printable HTML page with SVG charts.

One month (Beijing time) of data accesses for an organisation subtree: totals, per organisation,
scenario and data-owning department, a daily trend, refusal reasons, anomaly findings, complaint and
incident handling. Charts are inline SVG drawn here — no script, no CDN — so the page prints the same
offline and a PDF can be made from it by any browser. Only codes, counts and refs appear: the report is
meant to be circulated (通报) and must carry no personal data.
"""

from __future__ import annotations

import calendar
import csv
import io
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any, Final

from sqlalchemy import Engine, func, select

from audit.anomaly import ADMIN_REFUSED_KIND, RULES, AnomalyContext, AnomalyRules, evaluate
from audit.complaints import (
    ESCALATED,
    HANDED_DOWN,
    case_scope_conditions,
    hand_downs,
    overdue_condition,
    registering_offices,
)
from audit.events import Outcome, format_timestamp
from audit.query import (
    ACCESS_KIND_PREFIX,
    CHINA_STANDARD_TIME,
    EventQuery,
    after_chinese,
    beijing_clock,
    elapsed_words,
    iter_events,
    month_bounds,
    org_prefix,
    stored_utc,
)
from audit.reports import UNKNOWN, GroupBy, ReportRow, tabulate
from audit.tables import audit_complaints, audit_events, audit_incident_steps, audit_incidents

ROLE_LABELS_ZH: Final = {
    "village_cadre": "村（居）委会干部",
    "grid_worker": "网格员",
    "township_officer": "乡镇（街道）工作人员",
    "county_officer": "区县工作人员",
    "data_steward": "数据管理员",
    "system_admin": "系统管理员",
    "admission_reviewer": "准入联审人员",
    "supervisor": "监督人员",
    "auditor": "审计人员",
    "platform_admin": "平台管理员",
}
RULE_LABELS_ZH: Final = {
    "refusal_spike": "短时间内频繁被拒",
    "off_hours": "非工作时段查看",
    "bulk_reading": "批量读取",
    "outside_jurisdiction": "越权（管辖范围外）尝试",
    "one_resident_many_users": "同一居民被多人查看",
    "no_active_grant": "无有效授权查看",
}
_ALLOWED_COLOUR: Final = "#2f6fb0"
_REFUSED_COLOUR: Final = "#d0542b"
_ERROR_COLOUR: Final = "#8a8a8a"


@dataclass
class MonthlyReport:
    month: str
    org: str | None
    generated_at: datetime
    totals: ReportRow
    by_org: list[ReportRow]
    by_scenario: list[ReportRow]
    by_department: list[ReportRow]
    # One row per day of the month, keyed YYYY-MM-DD, with every count (errors, records read, distinct
    # users too): the CSV's day rows add up to the month's total only with the errors counted.
    daily_rows: list[ReportRow]
    refusal_reasons: list[tuple[str, int]]
    anomalies: dict[str, int]
    findings: list[dict[str, Any]]
    cases: dict[str, int]
    scenario_names: Mapping[str, str] = field(default_factory=dict)
    integrity: Mapping[str, Any] = field(default_factory=dict)
    # Reason code -> what it means in Chinese, for the printed page (the caller knows its codes).
    reason_names: Mapping[str, str] = field(default_factory=dict)
    # Division code (12 digits) and department code -> Chinese name, where the caller knows them.
    org_names: Mapping[str, str] = field(default_factory=dict)
    department_names: Mapping[str, str] = field(default_factory=dict)
    # The month still running when the report was made: the last day (Beijing time, YYYY-MM-DD) its
    # figures go through; the days after it are not shown, since zero rows would read as "no activity" on
    # days that have not happened. None for a month that has ended.
    through_day: str | None = None
    # Why the figures may be empty for another reason than a quiet month (an organisation code that names
    # no known division, say), Chinese and English, given by the caller: said on the page, in the CSV and
    # in the JSON, since an all-zero report alone reads as "nothing happened".
    scope_note: tuple[str, str] | None = None

    @property
    def daily(self) -> list[tuple[str, int, int]]:
        """(YYYY-MM-DD, allowed, refused) per day, for the chart."""
        return [(r.key, r.allowed, r.refused) for r in self.daily_rows]

    def to_json(self) -> dict[str, Any]:
        return {
            "month": self.month,
            "org": self.org,
            "generated_at": format_timestamp(self.generated_at),
            "totals": self.totals.to_json(),
            # Each row with the name the caller gave for its key (None where it gave none).
            "by_org": [{**r.to_json(), "name": self.org_names.get(r.key)} for r in self.by_org],
            "by_scenario": [
                {**r.to_json(), "name": self.scenario_names.get(r.key)} for r in self.by_scenario
            ],
            "by_department": [
                {**r.to_json(), "name": self.department_names.get(r.key)} for r in self.by_department
            ],
            "daily": [_day_json(r) for r in self.daily_rows],
            "refusal_reasons": [{"reason": k, "count": n} for k, n in self.refusal_reasons],
            "anomalies": self.anomalies,
            "findings": self.findings,
            "cases": self.cases,
            "integrity": dict(self.integrity),
            "in_progress": self.through_day is not None,
            "through_day": self.through_day,
            **({"note": self.scope_note[0], "note_en": self.scope_note[1]} if self.scope_note else {}),
        }

    @property
    def in_progress_note(self) -> str | None:
        """For a month still running: that it is, and through which day the figures go, Chinese first."""
        if self.through_day is None:
            return None
        return (
            f"本月尚未结束，数字截至 {_day_zh(self.through_day)}（北京时间），之后的日期未列出。"
            f" Month in progress: figures through {self.through_day} (Beijing time)."
        )


def _day_zh(day: str) -> str:
    """``2026-11-04`` as ``2026年11月4日``."""
    year, mon, dom = day.split("-")
    return f"{int(year)}年{int(mon)}月{int(dom)}日"


def _case_stats(
    engine: Engine, start: datetime, end: datetime, now: datetime, org: str | None
) -> dict[str, int]:
    """The month's case counts, of the cases in the report's organisation subtree only.

    A complaint is received (受理), and its incident opened (立案), once: by the office that registered it,
    where it counts in that office's report and its superiors', even after it was handed down (交办) —
    the township it went to did not receive it. Hand-downs are counted apart: ``cases_handed_down``, made
    this month by an office in the subtree (a district handing a case to its township), and
    ``cases_handed_down_in``, made this month into the subtree from an office above it. Closed and overdue
    cases count where the case is held now (the office that must close it). Escalations (督办) made this
    month: ``cases_escalated_in``, to an office in the subtree (the overdue cases of the offices below it
    it now oversees), and ``cases_escalated_up``, of the subtree's cases to an office above it."""
    c, i, st = audit_complaints.c, audit_incidents.c, audit_incident_steps.c
    scope = org_prefix(org) if org else ""

    def in_scope(office: str | None) -> bool:
        return scope == "" or (office is not None and office.startswith(scope))

    with engine.connect() as conn:
        # Hand-downs only move a case down, so a case registered in the subtree is held in it now.
        received = conn.execute(
            select(c.incident_id, c.org).where(
                c.received_at >= start, c.received_at < end, *case_scope_conditions(c.org, scope)
            )
        ).all()
        opened = conn.execute(
            select(i.incident_id, i.org).where(
                i.opened_at >= start, i.opened_at < end, *case_scope_conditions(i.org, scope)
            )
        ).all()
        steps = conn.execute(
            select(st.incident_id, st.action, st.note, st.at)
            .where(st.action.in_((HANDED_DOWN, ESCALATED)))
            .order_by(st.step_id)
        ).all()
        moves = hand_downs(steps)
        escalations = [m for m in hand_downs(steps, ESCALATED) if start <= stored_utc(m.at) < end]
        closed = conn.execute(
            select(func.count()).where(
                i.closed_at >= start,
                i.closed_at < end,
                i.status == "closed",
                *case_scope_conditions(i.org, scope),
            )
        ).scalar_one()
        # Either clock makes a case late: its own closing deadline or its complaint's answer deadline.
        overdue = conn.execute(
            select(func.count())
            .select_from(audit_incidents)
            .outerjoin(audit_complaints, c.complaint_id == i.complaint_id)
            .where(overdue_condition(now.astimezone(UTC)), *case_scope_conditions(i.org, scope))
        ).scalar_one()
    registered = registering_offices(moves)

    def registered_here(incident_id: str | None, held: str | None) -> bool:
        return in_scope(registered.get(incident_id or "", held))

    month_moves = [m for m in moves if start <= stored_utc(m.at) < end]
    return {
        "complaints_received": sum(registered_here(x, held) for x, held in received),
        "incidents_opened": sum(registered_here(x, held) for x, held in opened),
        "incidents_closed": int(closed),
        "incidents_overdue": int(overdue),
        "cases_handed_down": sum(in_scope(m.from_org) for m in month_moves),
        "cases_handed_down_in": sum(in_scope(m.to_org) and not in_scope(m.from_org) for m in month_moves),
        "cases_escalated_in": sum(in_scope(m.to_org) for m in escalations),
        "cases_escalated_up": sum(in_scope(m.from_org) and not in_scope(m.to_org) for m in escalations),
    }


def build_monthly_report(
    engine: Engine,
    month: str,
    rules: AnomalyRules,
    context: AnomalyContext | None = None,
    *,
    org: str | None = None,
    dataset_departments: Mapping[str, str] | None = None,
    scenario_names: Mapping[str, str] | None = None,
    integrity: Mapping[str, Any] | None = None,
    now: datetime | None = None,
    reason_names: Mapping[str, str] | None = None,
    org_names: Mapping[str, str] | None = None,
    department_names: Mapping[str, str] | None = None,
    unattributed: bool = False,
) -> MonthlyReport:
    """The month's figures for ``org``'s subtree; ``unattributed`` adds the events no organisation is
    charged with (counted under ``(unknown)``, 未能确定所属单位), as :class:`~audit.query.EventQuery` says."""
    start, end = month_bounds(month)
    made_at = (now or datetime.now(UTC)).astimezone(UTC)

    def scoped(kind: str) -> EventQuery:
        return EventQuery(org=org, unattributed=unattributed, kind=kind, since=start, until=end)

    events = list(iter_events(engine, scoped(ACCESS_KIND_PREFIX)))
    totals = ReportRow("total")
    days: dict[str, ReportRow] = {}
    # A month still running gets a row per day through today (Beijing time) only.
    running = start <= made_at < end
    through_day = made_at.astimezone(CHINA_STANDARD_TIME).strftime("%Y-%m-%d") if running else None
    cursor = start.astimezone(CHINA_STANDARD_TIME)
    while cursor < end and (through_day is None or cursor.strftime("%Y-%m-%d") <= through_day):
        day = cursor.strftime("%Y-%m-%d")
        days[day] = ReportRow(day)
        cursor += timedelta(days=1)
    reasons: Counter[str] = Counter()
    for e in events:
        totals.add(e)
        day = e.occurred_at.astimezone(CHINA_STANDARD_TIME).strftime("%Y-%m-%d")
        days.setdefault(day, ReportRow(day)).add(e)
        if e.outcome == Outcome.REFUSED.value:
            reasons[e.reason or "unknown"] += 1
    refused_acts = iter_events(engine, scoped(ADMIN_REFUSED_KIND))
    findings = evaluate([*events, *refused_acts], rules, context)
    per_rule = {rule: 0 for rule in RULES}
    for f in findings:
        per_rule[f.rule] += 1
    return MonthlyReport(
        month=month,
        org=org,
        generated_at=made_at,
        totals=totals,
        by_org=tabulate(events, GroupBy.ORG),
        by_scenario=tabulate(events, GroupBy.SCENARIO),
        by_department=tabulate(events, GroupBy.DEPARTMENT, dataset_departments=dataset_departments),
        daily_rows=[r for _, r in sorted(days.items())],
        refusal_reasons=sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])),
        anomalies=per_rule,
        findings=[f.to_json() for f in findings[:50]],
        cases=_case_stats(engine, start, end, made_at, org),
        scenario_names={UNKNOWN: UNKNOWN_NAMES_ZH["scenario"], **(scenario_names or {})},
        integrity=dict(integrity or {}),
        reason_names=dict(reason_names or {}),
        org_names={UNKNOWN: UNKNOWN_NAMES_ZH["organisation"], **(org_names or {})},
        department_names={UNKNOWN: UNKNOWN_NAMES_ZH["department"], **(department_names or {})},
        through_day=through_day,
    )


def before_the_log(engine: Engine, month: str) -> tuple[str, str] | None:
    """For a month that ended before the log's first event (the platform had not started recording): a
    note saying so, in both languages; else ``None``. An all-zero 通报 for it read as a quiet month.
    Only for a log never pruned: the months before a pruned log's first kept event are the archives'."""
    with engine.connect() as conn:
        oldest = conn.execute(select(func.min(audit_events.c.occurred_at))).scalar_one_or_none()
    if oldest is None:
        return None
    first = stored_utc(oldest)
    if month_bounds(month)[1] > first:
        return None
    day = first.astimezone(CHINA_STANDARD_TIME).strftime("%Y-%m-%d")
    return (
        f"审计日志从 {day}（北京时间）开始记录，{month} 早于此，本平台在该月还没有任何记录可以统计；"
        "本通报的零不表示该月数据访问情况已核实。",
        f"The audit log begins on {day} (Beijing time); {month} is before it, so the platform has no "
        "record of that month to count: the zeros in this report do not mean the month was checked.",
    )


def _day_json(row: ReportRow) -> dict[str, Any]:
    j = row.to_json()
    return {
        "day": row.key,
        "allowed": row.allowed,
        "refused": row.refused,
        "errors": j["errors"],
        "records_read": j["records_read"],
        "distinct_users": j["distinct_users"],
    }


# -- CSV ---------------------------------------------------------------------------------------------

#: Chinese first for the officials who open the file in a spreadsheet, each with the English column name
#: after a slash for programs (``类别/section``). The ``section`` values stay English codes, stable to filter
#: on; the ``名称/name`` column gives a key's Chinese name where the report has one.
_CSV_HEADER: Final = (
    "类别/section",
    "代码/key",
    "名称/name",
    "允许/allowed",
    "拒绝/refused",
    "出错/errors",
    "合计/total",
    "读取记录数/records_read",
    "涉及用户数/users",
)
_CASE_NAMES_ZH: Final = {
    "complaints_received": "本月受理投诉",
    "incidents_opened": "本月立案事件",
    "incidents_closed": "本月办结事件",
    "incidents_overdue": "当前逾期未办结",
    "cases_handed_down": "本月交办下级",
    "cases_handed_down_in": "本月上级交办",
    "cases_escalated_in": "本月下级逾期提请督办",
    "cases_escalated_up": "本月逾期提请上级督办",
}


def _scope_name(report: MonthlyReport, code_after: str = "（") -> str:
    """The organisation the report covers, named with its code beside it as its rows are (when the division
    names know it), else its code; ``全部单位`` for the whole log. ``code_after`` opens the code: a
    parenthesis, or a space where the text is already in parentheses."""
    if not report.org:
        return "全部单位"
    name = report.org_names.get(report.org)
    if not name:
        return report.org
    return f"{name}{code_after}{report.org}{'）' if code_after == '（' else ''}"


def spreadsheet_text(key: str) -> str:
    """A code a spreadsheet would take for a number, kept as text: Excel and WPS show a 12-digit division
    code as 3.10151E+11 and drop a leading zero, and a file saved back from them keeps that. A leading tab
    makes them read the cell as text; a program reading the CSV strips it (or reads the JSON report)."""
    return f"\t{key}" if key.isdigit() and (len(key) > 11 or key.startswith("0")) else key


def render_csv(report: MonthlyReport) -> str:
    """One table with a ``section`` column; UTF-8 with BOM so spreadsheet software reads the Chinese, and
    organisation codes kept as text (:func:`spreadsheet_text`)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(_CSV_HEADER)

    def row(section: str, r: ReportRow, name: str = "") -> None:
        j = r.to_json()
        writer.writerow(
            (
                section,
                spreadsheet_text(j["key"]),
                name,
                j["allowed"],
                j["refused"],
                j["errors"],
                j["total"],
                j["records_read"],
                j["distinct_users"],
            )
        )

    scope = _scope_name(report, code_after=" ")
    if report.through_day is None:
        row("total", report.totals, f"{report.month} 全月（{scope}）")
    else:
        row(
            "total",
            report.totals,
            f"{report.month} 截至{_day_zh(report.through_day)}（北京时间），本月尚未结束（{scope}）"
            f" / month in progress, through {report.through_day} (Beijing time)",
        )
    if report.scope_note is not None:
        writer.writerow(("note", "", f"{report.scope_note[0]} / {report.scope_note[1]}", *[""] * 6))
    for section, rows, names in (
        ("organisation", report.by_org, report.org_names),
        ("scenario", report.by_scenario, report.scenario_names),
        ("department", report.by_department, report.department_names),
    ):
        for r in rows:
            row(section, r, names.get(r.key, ""))
    # A day is Beijing's calendar day (00:00-24:00 UTC+8), not UTC's: said on every day row, since a
    # spreadsheet user comparing with a system that counts by UTC days would see other figures.
    for day_row in report.daily_rows:
        row("day", day_row, f"{_day_zh(day_row.key)}（北京时间）")
    for reason, count in report.refusal_reasons:
        name = report.reason_names.get(reason, "")
        writer.writerow(("refusal_reason", reason, name, "", count, "", count, "", ""))
    for rule, count in report.anomalies.items():
        writer.writerow(("anomaly", rule, RULE_LABELS_ZH.get(rule, ""), "", "", "", count, "", ""))
    for case, count in report.cases.items():
        writer.writerow(("cases", case, _CASE_NAMES_ZH.get(case, ""), "", "", "", count, "", ""))
    return "\ufeff" + out.getvalue()


# -- SVG charts --------------------------------------------------------------------------------------


def stacked_bar_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[int], str]],
    *,
    title: str,
    element_id: str,
    width: int = 720,
    height: int = 260,
    empty_note: str = "本月没有数据访问记录 / no data accesses this month",
) -> str:
    """A stacked vertical bar chart as inline SVG with axis, gridlines, legend and ``<title>`` tooltips;
    ``empty_note`` across the plot when every bar is zero."""
    left, right, top, bottom = 48, 12, 30, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(values[i] for _, values, _ in series) for i in range(len(labels))]
    peak = max([*totals, 1])
    step = _nice_step(peak)
    ceiling = step * -(-peak // step)
    n = max(len(labels), 1)
    slot = plot_w / n
    bar = min(max(slot * 0.7, 1.0), 56.0)
    parts = [
        f'<svg id="{escape(element_id)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{left}" y="18" class="chart-title">{escape(title)}</text>',
    ]
    for tick in range(0, ceiling + 1, step):
        y = top + plot_h - plot_h * tick / ceiling
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{tick}</text>')
    if not any(totals):
        # An empty axis alone reads as a chart that failed to draw: say there was nothing to draw.
        parts.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
            f'class="empty">{escape(empty_note)}</text>'
        )
    every = max(1, -(-n // 16))
    for i, label in enumerate(labels):
        x = left + slot * i + (slot - bar) / 2
        base = float(top + plot_h)
        for name, values, colour in series:
            value = values[i]
            if value <= 0:
                continue
            h = plot_h * value / ceiling
            base -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{escape(label)} {escape(name)}: {value}</title></rect>"
            )
        if i % every == 0:
            cx = left + slot * i + slot / 2
            parts.append(
                f'<text x="{cx:.1f}" y="{top + plot_h + 16}" text-anchor="middle" class="tick">'
                f"{escape(label)}</text>"
            )
    lx = left
    for name, _, colour in series:
        parts.append(f'<rect x="{lx}" y="{height - 16}" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 16}" y="{height - 6}" class="legend">{escape(name)}</text>')
        lx += 24 + 14 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def _nice_step(peak: int) -> int:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        if peak / step <= 6:
            return step
    return int(10 ** len(str(peak // 6)))


# -- HTML --------------------------------------------------------------------------------------------

_CSS: Final = """
body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", "PingFang SC", sans-serif;
       color: #1d2329; margin: 24px auto; padding: 0 12px; max-width: 960px; line-height: 1.6; }
h1 { font-size: 22px; text-align: center; margin-bottom: 4px; }
.subtitle { text-align: center; color: #555; margin-top: 0; }
h2 { font-size: 17px; border-left: 4px solid #2f6fb0; padding-left: 8px; margin-top: 28px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid #c8ced6; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #eef2f7; }
.kpis { display: grid; gap: 12px; grid-template-columns: repeat(auto-fit, minmax(130px, 1fr)); }
.kpi { border: 1px solid #c8ced6; border-radius: 6px; padding: 8px 12px; }
.kpi b { display: block; font-size: 22px; color: #2f6fb0; }
figure { margin: 12px 0; page-break-inside: avoid; break-inside: avoid; }
figcaption { font-size: 13px; color: #555; text-align: center; }
figure svg { display: block; max-width: 100%; height: auto; }
svg .grid { stroke: #e3e7ec; stroke-width: 1; }
svg .tick, svg .legend { font-size: 11px; fill: #444; }
svg .chart-title { font-size: 13px; font-weight: bold; fill: #1d2329; }
svg .empty { font-size: 14px; fill: #777; }
.note { font-size: 12px; color: #555; }
@page { size: A4; margin: 18mm 14mm 16mm; }
@media print {
  body { margin: 0; padding: 0; max-width: none; }
  /* A heading stays with what follows it, a chart stays whole (figure above). A long table splits between
     rows, never inside one, its header row repeated at the top of each page; a short one moves whole. */
  h2 { break-after: avoid; page-break-after: avoid; }
  thead { display: table-header-group; }
  tr, p, .kpis, table.short { break-inside: avoid; page-break-inside: avoid; }
  .no-print { display: none; }
}
"""

#: A table of at most this many rows is kept on one page when printed; a longer one splits between rows.
_SHORT_TABLE_ROWS: Final = 12
_MARGIN_BOX_FONT: Final = '"Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", sans-serif'


def _css_string(text: str) -> str:
    """``text`` as a quoted CSS string: quotes, backslashes, angle brackets (the sheet sits in a ``<style>``
    element, which ``</style>`` would end) and control characters written as CSS escapes (CSS Syntax
    Level 3, 4.3.7: a backslash, hex digits, one space)."""
    return '"' + "".join(f"\\{ord(c):x} " if c in '"\\<>&' or not c.isprintable() else c for c in text) + '"'


def _page_css(running_title: str) -> str:
    """The printed page's margins: the report's title, month and scope at the top of every page after
    the first (which carries them as its heading), ``第 N 页，共 M 页`` at the bottom of every page. CSS
    Paged Media margin boxes; a browser without them prints the pages without (Chromium has them)."""
    box = f"font-family: {_MARGIN_BOX_FONT}; font-size: 9pt; color: #555;"
    return (
        "@page { "
        f"@top-center {{ content: {_css_string(running_title)}; {box} }} "
        f'@bottom-center {{ content: "第 " counter(page) " 页，共 " counter(pages) " 页"; {box} }} '
        "} "
        "@page :first { @top-center { content: none; } }"
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A table whose header row is a ``<thead>``, so a printed page repeats it where the table goes on."""
    head = "<thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in headers) + "</tr></thead>"
    if not rows:
        body = f'<tr><td colspan="{len(headers)}">（无）</td></tr>'
    else:
        body = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in r) + "</tr>" for r in rows)
    short = ' class="short"' if len(rows) <= _SHORT_TABLE_ROWS else ""
    return f"<table{short}>{head}<tbody>{body}</tbody></table>"


#: What the rows keyed ``(unknown)`` hold (events that name no scenario, no organisation one can read, or
#: no dataset), in the words of the 通报's readers: officials, not developers.
UNKNOWN_NAMES_ZH: Final = {
    "organisation": "未能确定所属单位",
    "scenario": "未指明或无效的使用场景",
    "department": "未能确定数据所属部门",
}


def _org_chart_label(code: str, names: Mapping[str, str]) -> str:
    """An organisation under its bar: its short name where known (东风村村民委员会 -> 东风村; five
    characters fit a bar's slot when twelve are drawn), else the tail of its code (the table below the
    chart names it)."""
    name = names.get(code, "")
    for suffix in ("村民委员会", "居民委员会", "人民政府"):
        name = name.removesuffix(suffix)
    if name:
        return name if len(name) <= 5 else name[:4] + "…"
    return code.rstrip("0")[-6:] or code


def _finding_subject(finding: Mapping[str, Any], org_names: Mapping[str, str]) -> str:
    """Whom a finding is about: a user id with the organisation they read from (named where known), the
    resident's ref, or requests no valid token identified (nobody's)."""
    if finding.get("unauthenticated"):
        return "未持有效登录凭证的请求（不归属于任何用户）"
    actor, org = finding.get("actor"), finding.get("actor_org")
    if actor and org:
        return f"{actor}（{org_names.get(org) or org}）"
    return str(actor or finding.get("subject_ref") or "")


def _labelled(key: str, label: Mapping[str, str] | None) -> str:
    if label is None or key not in label:
        return key
    # "(unknown)" is no code a reader could look up: the name alone.
    return label[key] if key == UNKNOWN else f"{label[key]}（{key}）"


def _report_rows(rows: Sequence[ReportRow], label: Mapping[str, str] | None = None) -> list[list[Any]]:
    return [
        [_labelled(r.key, label), r.allowed, r.refused, r.errors, r.records_read, len(r.users)] for r in rows
    ]


_HEAD: Final = ("", "允许", "拒绝", "错误", "读取记录数", "涉及用户数")


def _beijing_time(timestamp: object) -> str:
    """A checkpoint's RFC 3339 UTC time as the page's other times are shown: Beijing time, to the second."""
    try:
        at = datetime.fromisoformat(str(timestamp))
    except ValueError:
        return str(timestamp)
    if at.utcoffset() is None:
        return str(timestamp)
    return beijing_clock(at) + "（北京时间）"


#: Findings listed one by one on the page; the rest are counted per rule above them.
_FINDINGS_SHOWN: Final = 20


def _checkpoint_age(timestamp: object, made_at: datetime) -> str:
    """``，在本报告生成前 3 小时`` (or ``…前不到 1 分钟``): how old the latest signed checkpoint was; nothing
    for no valid time."""
    try:
        signed = datetime.fromisoformat(str(timestamp).replace("Z", "+00:00"))
    except ValueError:
        return ""
    if signed.tzinfo is None:
        return ""
    return f"，在本报告生成前{after_chinese(elapsed_words((made_at - signed).total_seconds())[0])}"


def _findings_left_out(report: MonthlyReport, shown: int) -> list[str]:
    """A note under a findings list cut short: how many there are, and how to see them all (the page
    listed the first 20 of 102 with nothing to say the list went on)."""
    total = sum(report.anomalies.values())
    if total <= shown:
        return []
    year, mon = (int(part) for part in report.month.split("-"))
    last = report.through_day or f"{report.month}-{calendar.monthrange(year, mon)[1]:02d}"
    scope = f" --org {report.org}" if report.org else ""
    command = f"grassroots supervise anomalies --since {report.month}-01 --until {last}{scope}"
    return [
        f'<p class="note" id="findings-left-out">以上仅列出前 {shown} 条线索，本月共 {total} 条；'
        f"全部线索可用 {escape(command)} 查看。 Only the first {shown} of {total} findings are listed; "
        "the command lists them all.</p>"
    ]


def render_html(report: MonthlyReport) -> str:
    """A self-contained printable page (A4 print CSS, inline SVG charts, no scripts)."""
    year, mon = report.month.split("-")
    title = f"数据访问情况定期通报（{int(year)}年{int(mon)}月）"
    scope = f"范围：{_scope_name(report)}"
    t = report.totals
    kpis = [
        ("数据访问总次数", t.total),
        ("允许", t.allowed),
        ("拒绝", t.refused),
        ("读取记录数", t.records_read),
        ("涉及用户数", len(t.users)),
        ("异常线索", sum(report.anomalies.values())),
    ]
    daily_chart = stacked_bar_chart(
        [d[-2:] for d, _, _ in report.daily],
        [
            ("允许", [a for _, a, _ in report.daily], _ALLOWED_COLOUR),
            ("拒绝", [r for _, _, r in report.daily], _REFUSED_COLOUR),
            # Failed requests (upstream down, audit unavailable, ...) count in the month's total too.
            *(
                [("出错", [r.errors for r in report.daily_rows], _ERROR_COLOUR)]
                if any(r.errors for r in report.daily_rows)
                else []
            ),
        ],
        title="每日数据访问次数",
        element_id="chart-daily",
    )
    top_orgs = report.by_org[:12]
    org_chart = stacked_bar_chart(
        [_org_chart_label(r.key, report.org_names) for r in top_orgs],
        [
            ("允许", [r.allowed for r in top_orgs], _ALLOWED_COLOUR),
            ("拒绝", [r.refused for r in top_orgs], _REFUSED_COLOUR),
        ],
        title="各单位数据访问次数",
        element_id="chart-org",
    )
    anomaly_rows = [[RULE_LABELS_ZH.get(k, k), n] for k, n in report.anomalies.items()]
    finding_rows = [
        [
            RULE_LABELS_ZH.get(f["rule"], f["rule"]),
            _finding_subject(f, report.org_names),
            len(f["seqs"]),
            ", ".join(str(s) for s in f["seqs"][:8]) + (" …" if len(f["seqs"]) > 8 else ""),
        ]
        for f in report.findings[:_FINDINGS_SHOWN]
    ]
    cases = report.cases
    note = report.in_progress_note
    through = f"；截至{_day_zh(report.through_day)}" if report.through_day else ""
    generated = report.generated_at.astimezone(CHINA_STANDARD_TIME).strftime("%Y-%m-%d %H:%M")
    integrity = report.integrity
    if integrity.get("checked") is False:
        # Could not be checked (no key, say): the page says so and why, never as if there were no checkpoint.
        integrity_text = str(integrity.get("message") or "未能核对签名检查点。")
    elif integrity.get("tree_size") is not None:
        integrity_text = (
            f"最新签名检查点：共 {integrity.get('tree_size')} 条事件，"
            f"根哈希 {str(integrity.get('root_hash', ''))[:16]}…，"
            f"签名时间 {_beijing_time(integrity.get('timestamp'))}"
            f"{_checkpoint_age(integrity.get('timestamp'), report.generated_at)}。"
        )
    else:
        integrity_text = "本报告生成时尚无签名检查点。"
    for restore in integrity.get("restores") or ():
        # An accepted database restore is said in every report after it: part of the log was lost.
        first, last = restore.get("lost_first_seq"), restore.get("lost_last_seq")
        integrity_text += (
            f"已接受的数据库恢复：{_beijing_time(restore.get('accepted_at'))}，"
            f"事件 #{first}..#{last} 已丢失（理由：{restore.get('reason')}）。"
        )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">'
        # A phone lays the page out at its own width (not 980 px, zoomed out); the charts scale to it.
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}{_page_css(f'{title} · {scope}')}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="subtitle">{escape(scope)} · 生成时间 {escape(generated)}（北京时间）</p>',
        *([f'<p class="note" id="in-progress">{escape(note)}</p>'] if note else []),
        *(
            [f'<p class="note" id="scope-note">{escape(" ".join(report.scope_note))}</p>']
            if report.scope_note
            else []
        ),
        "<h2>一、总体情况</h2>",
        '<div class="kpis">'
        + "".join(f'<div class="kpi">{escape(k)}<b>{v}</b></div>' for k, v in kpis)
        + "</div>",
        f'<figure id="fig-daily">{daily_chart}'
        f"<figcaption>图1 每日数据访问次数（允许/拒绝{escape(through)}）</figcaption></figure>",
        "<h2>二、分单位情况</h2>",
        f'<figure id="fig-org">{org_chart}<figcaption>图2 各单位数据访问次数（前12名）</figcaption></figure>',
        _table(("单位", *_HEAD[1:]), _report_rows(report.by_org, report.org_names)),
        "<h2>三、分场景情况</h2>",
        _table(("使用场景", *_HEAD[1:]), _report_rows(report.by_scenario, report.scenario_names)),
        "<h2>四、分部门情况</h2>",
        _table(("数据所属部门", *_HEAD[1:]), _report_rows(report.by_department, report.department_names)),
        "<h2>五、拒绝原因</h2>",
        _table(
            ("拒绝原因", "次数"), [[_labelled(k, report.reason_names), n] for k, n in report.refusal_reasons]
        ),
        "<h2>六、异常线索</h2>",
        _table(("规则", "线索数"), anomaly_rows),
        _table(("规则", "对象", "事件数", "事件序号"), finding_rows),
        *_findings_left_out(report, len(finding_rows)),
        "<h2>七、投诉与事件办理</h2>",
        _table(
            ("事项", "数量"),
            [[zh, cases.get(case, 0)] for case, zh in _CASE_NAMES_ZH.items()],
        ),
        "<h2>八、日志完整性</h2>",
        f"<p>{escape(integrity_text)}</p>",
        '<p class="note">说明：本通报只含单位代码、岗位、场景与统计数字，不含居民个人信息；居民以不可逆的'
        "加密标识记录（《个人信息保护法》第五十一条）。访问记录保存不少于三年（第五十六条）。</p>",
        "</body></html>",
    ]
    return "\n".join(parts)
