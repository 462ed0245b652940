"""PDF export runs at most N headless Chromiums per process; the others wait briefly, then get 503.

Each render of the monthly report is a whole browser (hundreds of MB). Before, every request started its
own, so a burst of report requests could exhaust the server. The renders are stood in for by a coroutine
that holds its place until the test lets it go, so what is checked is how many run at once, with no
timing in it.
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import ServiceUnavailable
from gateway.routes import supervision


class FakeRenders:
    """Stands in for Chromium: counts renders in progress, each finishing only when ``done`` is set."""

    def __init__(self) -> None:
        self.active = 0
        self.most = 0
        self.done = asyncio.Event()

    async def __call__(self, binary: str, page: str) -> bytes:
        self.active += 1
        self.most = max(self.most, self.active)
        try:
            await self.done.wait()
        finally:
            self.active -= 1
        return b"%PDF-" + page.encode()


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> FakeRenders:
    fake = FakeRenders()
    monkeypatch.setattr(supervision, "chromium_binary", lambda: "/usr/bin/chromium")
    monkeypatch.setattr(supervision, "chinese_font_installed", lambda: True)
    monkeypatch.setattr(supervision, "_render_pdf", fake)
    return fake


async def _settle(until: object, rounds: int = 200) -> None:
    """Let the event loop run until ``until()`` holds (a bounded number of turns, no clock)."""
    for _ in range(rounds):
        if until():  # type: ignore[operator]
            return
        await asyncio.sleep(0)


def test_no_more_than_the_bound_render_at_once_and_the_rest_wait_their_turn(renders: FakeRenders) -> None:
    async def scenario() -> list[bytes]:
        slots = asyncio.Semaphore(2)
        tasks = [asyncio.create_task(supervision.html_to_pdf(f"p{i}", slots, 60.0)) for i in range(5)]
        await _settle(lambda: renders.active == 2)
        for _ in range(50):  # more turns change nothing: three requests wait for a free render
            await asyncio.sleep(0)
        assert renders.active == 2 and not any(t.done() for t in tasks)
        renders.done.set()
        return await asyncio.gather(*tasks)

    pages = asyncio.run(scenario())
    assert pages == [f"%PDF-p{i}".encode() for i in range(5)]
    assert renders.most == 2


def test_a_request_that_finds_every_render_taken_gets_503_with_retry_after(renders: FakeRenders) -> None:
    async def scenario() -> list[BaseException | bytes]:
        renders.done.set()  # a render that starts finishes at once
        slots = asyncio.Semaphore(2)
        for _ in range(2):  # the test holds both renders
            await slots.acquire()
        answers = await asyncio.gather(
            *(supervision.html_to_pdf("p", slots, 0.01) for _ in range(3)), return_exceptions=True
        )
        slots.release()  # one render is free again: the next request is served
        answers.append(await supervision.html_to_pdf("q", slots, 0.01))
        return answers

    *busy, served = asyncio.run(scenario())
    assert served == b"%PDF-q"
    for answer in busy:
        assert isinstance(answer, ServiceUnavailable)
        assert (answer.status_code, answer.code) == (503, "pdf_busy")
        assert answer.headers == {"Retry-After": str(supervision.PDF_RETRY_AFTER_S)}
        assert answer.message_zh.startswith("正在生成的 PDF 报告较多")
    assert renders.most == 1
