"""The monthly report (定期通报) in a real browser: headless Chromium renders the page the running gateway
serves; the screenshot must exist and not be blank, and the DOM must hold the headings and both charts.

Chromium comes from Debian's ``chromium`` package (`make test` installs it when missing; see README).
Outside CI the test skips with a reason when no Chromium can be found; in CI it fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import chromium
from tests.stack import Stack, stack_fixture

HEADINGS = ("数据访问情况定期通报", "一、总体情况", "二、分单位情况", "六、异常线索", "七、投诉与事件办理")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # The page is the same on either database; one backend keeps this browser test short.
    yield from stack_fixture("sqlite", tmp_path_factory)


def browser(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        timeout=120,
        env={**os.environ, "HOME": str(profile)},
        check=False,
    )


def png_pixels(data: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Decode an 8-bit RGB/RGBA PNG (what Chromium writes) with the standard library only."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6)
    channels = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * channels
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for y in range(height):
        filter_type = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if filter_type == 1:
                line[i] = (line[i] + left) & 0xFF
            elif filter_type == 2:
                line[i] = (line[i] + up) & 0xFF
            elif filter_type == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif filter_type == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 0xFF
        rows.append(line)
        previous = line
    pixels = [(row[x], row[x + 1], row[x + 2]) for row in rows[::4] for x in range(0, stride, channels * 4)]
    return width, height, pixels


def served_report(stack: Stack, tmp_path: Path) -> str:
    """Drive some traffic, then save the page exactly as the gateway serves it (the browser cannot send a
    bearer header, so it opens the saved response)."""
    for page in (1, 2):
        stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW", page=page, page_size=5)
    stack.get(stack.records_url, "cadre_c", scenario="DIBAO_REVIEW")
    month = time.strftime("%Y-%m", time.gmtime(time.time() + 8 * 3600))
    resp = httpx.get(
        f"{stack.base_url}/api/v1/supervision/reports/monthly",
        params={"month": month, "format": "html"},
        headers={"Authorization": f"Bearer {stack.token('supervisor')}"},
        timeout=60,
    )
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    page = tmp_path / "report.html"
    page.write_text(resp.text, encoding="utf-8")
    return page.as_uri()


def test_monthly_report_renders_in_chromium(stack: Stack, tmp_path: Path) -> None:
    binary = chromium()
    uri = served_report(stack, tmp_path)
    shot = tmp_path / "report.png"
    done = browser(binary, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1000,1400", uri)
    assert shot.exists(), done.stderr.decode(errors="replace")[-2000:]
    width, height, pixels = png_pixels(shot.read_bytes())
    assert (width, height) == (1000, 1400)
    assert len(set(pixels)) > 50  # text, bars and tables, not one flat colour
    assert sum(1 for p in pixels if p != (255, 255, 255)) > len(pixels) // 100
    dom = browser(binary, tmp_path / "profile2", "--dump-dom", uri).stdout.decode("utf-8")
    for heading in HEADINGS:
        assert heading in dom
    assert 'id="chart-daily"' in dom and 'id="chart-org"' in dom and "<rect" in dom


async def _layout_at(binary: str, profile: Path, uri: str, width: int) -> dict[str, Any]:
    """Open ``uri`` in headless Chromium at ``width`` CSS pixels (DevTools protocol over its websocket) and
    measure the page: how wide it lays out, and where each chart's right edge falls."""
    import aiohttp

    process = subprocess.Popen(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(profile)},
    )
    try:
        port_file = profile / "DevToolsActivePort"
        for _ in range(600):
            if port_file.exists() and port_file.read_text().strip():
                break
            await asyncio.sleep(0.1)
        port = port_file.read_text().split()[0]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json") as resp:
                page = next(t for t in await resp.json() if t["type"] == "page")
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                counter = 0

                async def call(method: str, **params: object) -> dict[str, object]:
                    nonlocal counter
                    counter += 1
                    await ws.send_json({"id": counter, "method": method, "params": params})
                    while True:
                        message = await ws.receive_json(timeout=60)
                        if message.get("id") == counter:
                            return dict(message.get("result") or {})

                await call("Page.enable")
                await call(
                    "Emulation.setDeviceMetricsOverride",
                    width=width,
                    height=800,
                    deviceScaleFactor=1,
                    mobile=True,
                )
                await call("Page.navigate", url=uri)
                measure = (
                    "JSON.stringify({viewport: window.innerWidth,"
                    " page: document.documentElement.scrollWidth,"
                    " daily: document.getElementById('chart-daily').getBoundingClientRect().right,"
                    " org: document.getElementById('chart-org').getBoundingClientRect().right,"
                    " kpis: [...document.querySelectorAll('.kpi')].map("
                    "k => [k.getBoundingClientRect().top, k.getBoundingClientRect().width])})"
                )
                for _ in range(100):
                    result = await call("Runtime.evaluate", expression=measure, returnByValue=True)
                    value = result.get("result")
                    if isinstance(value, dict) and "value" in value:
                        return dict(json.loads(value["value"]))
                    await asyncio.sleep(0.1)
                raise AssertionError(f"the page did not load: {result}")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_monthly_report_fits_a_phone_screen(stack: Stack, tmp_path: Path) -> None:
    """Officials open the 通报 on their phones too: the charts were drawn 720 px wide whatever the screen,
    so on a 390 px phone the second half of the month was cut off. The page now lays out at the screen's
    width and the charts scale down to it."""
    binary = chromium()
    uri = served_report(stack, tmp_path)
    layout = asyncio.run(_layout_at(binary, tmp_path / "phone", uri, 390))
    assert layout["viewport"] == 390, layout
    assert layout["page"] <= 390, layout
    assert layout["daily"] <= 390 and layout["org"] <= 390, layout


@pytest.mark.parametrize("width", [1000, 390])
def test_the_key_figures_are_cards_of_one_width(stack: Stack, tmp_path: Path, width: int) -> None:
    """The six key figures wrapped five and one on a desktop screen, the sixth (异常线索) stretched across
    the whole page as if it were a heading: every card has the same width, a whole row on a desktop."""
    binary = chromium()
    uri = served_report(stack, tmp_path)
    kpis = asyncio.run(_layout_at(binary, tmp_path / "screen", uri, width))["kpis"]
    assert len(kpis) == 6
    widths = [w for _, w in kpis]
    assert max(widths) - min(widths) < 1, kpis
    if width == 1000:
        assert len({round(top) for top, _ in kpis}) == 1, kpis


def test_monthly_report_as_pdf(stack: Stack) -> None:
    chromium()
    month = time.strftime("%Y-%m", time.gmtime(time.time() + 8 * 3600))
    resp = httpx.get(
        f"{stack.base_url}/api/v1/supervision/reports/monthly",
        params={"month": month, "format": "pdf"},
        headers={"Authorization": f"Bearer {stack.token('auditor')}"},
        timeout=120,
    )
    assert resp.status_code == 200, resp.text[:500]
    assert resp.headers["content-type"] == "application/pdf"
    assert resp.content.startswith(b"%PDF-") and len(resp.content) > 5000
