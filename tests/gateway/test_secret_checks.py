"""Client-secret checks (scrypt) run on a thread of their own, one at a time, with a bounded queue: past it
the token endpoint refuses at once instead of taking every core and every pooled thread (see
``gateway.routes.admission_api.SecretChecks``; the flood itself is driven in test_admission_api.py)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gateway.errors import GatewayError
from gateway.routes.admission_api import SecretChecks


async def test_checks_run_one_at_a_time_and_past_the_queue_are_refused_at_once() -> None:
    checks = SecretChecks(running=1, waiting=2)
    release = threading.Event()
    lock = threading.Lock()
    active = peak = 0

    def check() -> str:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        release.wait(30)
        with lock:
            active -= 1
        return "checked"

    admitted = [asyncio.create_task(checks.run(check)) for _ in range(3)]  # one running, two waiting
    await asyncio.sleep(0)
    with pytest.raises(GatewayError) as caught:
        await checks.run(check)
    busy = caught.value
    assert (busy.status_code, busy.code, busy.headers["Retry-After"]) == (503, "temporarily_unavailable", "1")
    assert busy.message_zh.startswith("令牌端点正忙")
    release.set()
    assert await asyncio.gather(*admitted) == ["checked"] * 3
    assert peak == 1
    # The places are given back as checks finish.
    assert await checks.run(lambda: "again") == "again"
