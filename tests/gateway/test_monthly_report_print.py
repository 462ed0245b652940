"""The monthly report (定期通报) printed to PDF by the real browser, as the gateway prints it.

A district's month fills several A4 pages. Every table used to be kept whole (``break-inside: avoid``)
and had no ``<thead>``: a long one was pushed to a fresh page, leaving the rest of the page before it
blank, and went on over the next pages without its header row, so a supervisor reading page 3 saw
columns of numbers with no names. Now a long table splits between rows with its header row repeated on
every page it reaches, and no row is cut in two or lost; a short table still moves to the next page whole.

The PDF is read back with poppler's pdftotext: each page's text, in reading order.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from audit import MonthlyReport, render_html
from audit.monthly import RULE_LABELS_ZH
from audit.reports import ReportRow
from gateway.errors import ServiceUnavailable
from gateway.routes import supervision
from gateway.routes.supervision import FontCheck, html_to_pdf
from tests.browser import chromium, pdf_pages_text

N_ORGS = 150
TITLE = "数据访问情况定期通报（2026年11月）"
ORG_HEADER = "单位允许拒绝错误读取记录数涉及用户数"
SCENARIO_HEADER = "使用场景允许拒绝错误读取记录数涉及用户数"


def _row(key: str, n: int) -> ReportRow:
    return ReportRow(key, allowed=n, refused=n % 5, errors=n % 2, records_read=n * 3, users={f"u-{n}"})


def long_report() -> MonthlyReport:
    """A whole November of a district: 150 villages, 40 scenarios, 30 days (no database needed)."""
    orgs = [f"310151{101 + i // 30:03d}{201 + i % 30:03d}" for i in range(N_ORGS)]
    scenarios = [f"SCENARIO_{i:02d}" for i in range(40)]
    by_org = [_row(code, N_ORGS - i) for i, code in enumerate(orgs)]
    return MonthlyReport(
        month="2026-11",
        org=None,
        generated_at=datetime(2026, 12, 1, 2, 0, tzinfo=UTC),
        totals=_row("total", 9999),
        by_org=by_org,
        by_scenario=[_row(s, 40 - i) for i, s in enumerate(scenarios)],
        by_department=[_row("civil_affairs", 500)],
        daily_rows=[_row(f"2026-11-{d:02d}", d) for d in range(1, 31)],
        refusal_reasons=[("outside_hours", 12)],
        anomalies={rule: 1 for rule in RULE_LABELS_ZH},
        findings=[],
        cases={"complaints_received": 1},
        org_names={code: f"甲{i + 1:03d}号村民委员会" for i, code in enumerate(orgs)},
        scenario_names={s: f"乙{i + 1:02d}号场景" for i, s in enumerate(scenarios)},
    )


def printed_pages(report: MonthlyReport) -> list[str]:
    """The report printed by the gateway's own PDF path; each page's text without white space."""
    chromium()
    pdf = asyncio.run(html_to_pdf(render_html(report), asyncio.Semaphore(1), 60.0))
    return [re.sub(r"\s+", "", page) for page in pdf_pages_text(pdf)]


def test_a_long_table_repeats_its_header_row_on_every_page_and_loses_no_row() -> None:
    pages = printed_pages(long_report())
    assert len(pages) >= 4, len(pages)
    org_names = [f"甲{i:03d}号村民委员会" for i in range(1, N_ORGS + 1)]
    seen: list[str] = []
    pages_with_org_rows = 0
    for number, text in enumerate(pages, start=1):
        rows = [(text.index(name), name) for name in org_names if name in text]
        if rows:
            pages_with_org_rows += 1
            assert ORG_HEADER in text, f"page {number} holds organisation rows without the header row"
            assert text.index(ORG_HEADER) < min(at for at, _ in rows), f"page {number}: header after rows"
            seen.extend(name for _, name in sorted(rows))
        if any(f"乙{i:02d}号场景" in text for i in range(1, 41)):
            assert SCENARIO_HEADER in text, f"page {number} holds scenario rows without the header row"
    assert pages_with_org_rows >= 2
    assert seen == org_names  # every row once, in order: none lost, none cut in two
    # the six anomaly rules are one short table: on one page, not split
    rules = list(RULE_LABELS_ZH.values())
    assert [text for text in pages if rules[0] in text] == [text for text in pages if rules[-1] in text]


def test_every_page_carries_its_number_and_the_report_title() -> None:
    """A page that comes loose from the stack (or is read on its own) said neither which report it
    belongs to nor where it goes: now the margin says 第 N 页，共 M 页, and above, after the first page
    (headed with it), the report's title, month and scope."""
    pages = printed_pages(long_report())
    for number, text in enumerate(pages, start=1):
        assert f"第{number}页，共{len(pages)}页" in text, f"page {number}: {text[-60:]}"
        assert TITLE in text, f"page {number} does not say which report it is"


def test_no_pdf_of_empty_boxes_on_a_server_without_a_chinese_font(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Debian's chromium comes without a Chinese font, and printed without one every character of the
    report was an empty box (豆腐块), handed out and recorded as the month's report all the same. The
    gateway now refuses with 503 pdf_unavailable saying what to install. The server here is one whose
    fontconfig (which Chromium draws on) knows no font at all."""
    chromium()
    fonts, config = tmp_path / "fonts", tmp_path / "fonts.conf"
    fonts.mkdir()
    config.write_text(
        f'<?xml version="1.0"?><fontconfig><dir>{fonts}</dir><cachedir>{tmp_path / "cache"}</cachedir>'
        "</fontconfig>",
        encoding="utf-8",
    )
    monkeypatch.setenv("FONTCONFIG_FILE", str(config))
    # A process that has not yet found a font (the check remembers one found by an earlier print).
    monkeypatch.setattr(supervision, "chinese_font_installed", FontCheck())
    with pytest.raises(ServiceUnavailable) as refused:
        asyncio.run(html_to_pdf(render_html(long_report()), asyncio.Semaphore(1), 60.0))
    assert refused.value.code == "pdf_unavailable"
    assert "中文字体" in refused.value.message_zh and "fonts-noto-cjk" in refused.value.message_en
