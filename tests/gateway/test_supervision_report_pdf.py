"""A monthly report that could not be printed is not recorded as handed out.

The audit log is what a supervisor's own supervisor reads: "supervision.monthly_report ... format pdf,
outcome ok" for a request that answered 503 and delivered nothing would be false. The gateway here finds a
``chromium`` that fails (a script on its PATH that exits 1), so the PDF fails the same way on every
machine, with or without a real Chromium.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa

from tests.stack import Stack, stack_fixture


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    bin_dir = tmp_path_factory.mktemp("failing-chromium")
    fake = bin_dir / "chromium"
    fake.write_text("#!/bin/sh\nexit 1\n", encoding="utf-8")
    fake.chmod(0o755)
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    # The report is the same on either database; one backend keeps this short.
    yield from stack_fixture("sqlite", tmp_path_factory, extra_env={"PATH": path})


def report_events(stack: Stack) -> list[str]:
    with stack.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT body FROM audit_events WHERE kind = 'supervision.monthly_report' ORDER BY seq")
        ).all()
    return [str(r[0]) for r in rows]


def monthly(stack: Stack, fmt: str) -> httpx.Response:
    month = time.strftime("%Y-%m", time.gmtime(time.time() + 8 * 3600))
    return httpx.get(
        f"{stack.base_url}/api/v1/supervision/reports/monthly",
        params={"month": month, "format": fmt},
        headers={"Authorization": f"Bearer {stack.token('supervisor')}"},
        timeout=120.0,
    )


def test_a_pdf_that_failed_is_not_recorded_as_delivered(stack: Stack) -> None:
    before = report_events(stack)
    resp = monthly(stack, "pdf")
    assert resp.status_code == 503 and resp.json()["error"] == "pdf_failed", resp.text
    assert report_events(stack) == before

    assert monthly(stack, "html").status_code == 200
    after = report_events(stack)
    assert len(after) == len(before) + 1 and '"html"' in after[-1]
