"""A flood of requests without a valid token fills the audit log no faster than a set allowance.

Per client address and window the first ``GRASSROOTS_AUTH_REFUSAL_BURST`` refusals are recorded one by
one (``auth.refused``, or the data path's refused ``data.*`` event); later ones are answered 429
``too_many_refusals`` with ``Retry-After`` and counted into one ``auth.refused_burst`` event, written when
the window closes. The window is driven by an injected clock, never by sleeping. A valid token from the
same address is served all along, and no summary holds a token.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from gateway.app import create_app
from gateway.auth.devusers import dev_identity_provider
from gateway.refusal_bursts import (
    MAX_CLAIMED_ORGS,
    OTHER_ORGS,
    OVERFLOW_SOURCE,
    UNKNOWN_ORG,
    UNKNOWN_SOURCE,
    RefusalBursts,
    source_of,
)
from gateway.runtime import Runtime
from gateway.settings import Settings
from tests.gateway.conftest import loopback_settings
from tests.uvicorn_thread import loopback_config, uvicorn_thread

LIMIT = 3
WINDOW_S = 60.0
T0 = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
#: A token-shaped string that must never reach an answer or an event.
BOGUS = "eyJhbGciOiJFUzI1NiJ9.FLOODSECRET.c2lnbmF0dXJl"


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Gateway:
    base_url: str
    engine: sa.Engine
    runtime: Runtime
    clock: FakeClock
    settings: Settings
    stop: Callable[[], None]

    def events(self, after: int = 0) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT seq, kind, body FROM audit_events WHERE seq > :s ORDER BY seq"), {"s": after}
            ).mappings()
            return [{"seq": r["seq"], "kind": r["kind"], "body": json.loads(r["body"])} for r in rows]

    def write_closed(self) -> None:
        """What the process's background writer does each second, done now (a test-only route)."""
        assert httpx.post(f"{self.base_url}/test/write-bursts", timeout=30).status_code == 200


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    """The real app under uvicorn (lifespan, middleware, the protocol `serve` uses) on a migrated SQLite
    database; clients reach it over loopback, the address uvicorn trusts for X-Forwarded-For by default."""
    settings = loopback_settings(
        tmp_path, monkeypatch, auth_refusal_burst=LIMIT, auth_refusal_window_s=WINDOW_S
    )
    url, port = settings.database_url, settings.port
    app = create_app(settings)

    @app.post("/test/write-bursts")
    async def write_bursts() -> None:
        await app.state.runtime.write_refusal_bursts()

    with uvicorn_thread(loopback_config(app, port), start_timeout_s=60) as running:
        clock = FakeClock()
        app.state.runtime.refusal_bursts.clock = clock
        engine = sa.create_engine(url)
        try:
            yield Gateway(
                f"http://127.0.0.1:{port}", engine, app.state.runtime, clock, settings, running.stop
            )
        finally:
            engine.dispose()


def _me(gw: Gateway, authorization: str | None, **headers: str) -> httpx.Response:
    if authorization is not None:
        headers["Authorization"] = authorization
    return httpx.get(f"{gw.base_url}/api/v1/me", headers=headers, timeout=30)


def _records(gw: Gateway) -> httpx.Response:
    return httpx.get(
        f"{gw.base_url}/api/v1/datasets/residents/records", params={"scenario": "DIBAO_REVIEW"}, timeout=30
    )


def _refusals(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["body"]["actor"] == "anonymous" and e["kind"] != "auth.refused_burst"]


def test_a_flood_is_recorded_up_to_the_allowance_then_answered_429_and_summed_up_once(
    gateway: Gateway,
) -> None:
    gw = gateway
    start = gw.events()[-1]["seq"] if gw.events() else 0
    valid = f"Bearer {dev_identity_provider(gw.settings).mint('cadre_a', 'grassroots-gateway')}"

    first = [_me(gw, None) for _ in range(LIMIT)]
    assert [r.status_code for r in first] == [401] * LIMIT

    # Past the allowance: 429, Chinese first, Retry-After until the window closes, no data, no token.
    k_times = [T0 + timedelta(seconds=s) for s in (5, 6, 7, 30)]
    over: list[httpx.Response] = []
    for at, authorization in zip(k_times[:3], (None, f"Bearer {BOGUS}", "Basic dXNlcjpwYXNz"), strict=True):
        gw.clock.now = at
        over.append(_me(gw, authorization))
    gw.clock.now = k_times[3]
    over.append(_records(gw))  # the data path's door counts into the same allowance
    for answer in over:
        assert answer.status_code == 429, answer.text
        body = answer.json()
        assert body["error"] == "too_many_refusals"
        assert body["message"].startswith("从您所在网络地址发出的未登录")
        assert "valid token are not limited" in body["message_en"]
        assert BOGUS not in answer.text and "FLOODSECRET" not in answer.text
        assert set(body) == {"error", "message", "message_en", "request_id"}
    assert [r.headers["Retry-After"] for r in over] == ["55", "54", "53", "30"]

    # A valid token from the same address, mid-flood, is served.
    me = _me(gw, valid)
    assert me.status_code == 200 and me.json()["username"] == "cadre_a"
    # Another client behind the trusted proxy (here: loopback) has an allowance of its own.
    assert _me(gw, None, **{"X-Forwarded-For": "198.51.100.9"}).status_code == 401

    during = gw.events(start)
    assert [e["kind"] for e in _refusals(during)] == ["auth.refused"] * (LIMIT + 1)
    assert not [e for e in during if e["kind"] == "auth.refused_burst"]

    gw.write_closed()  # the window is still open: nothing yet
    assert not [e for e in gw.events(start) if e["kind"] == "auth.refused_burst"]

    gw.clock.now = T0 + timedelta(seconds=WINDOW_S)
    gw.write_closed()
    bursts = [e for e in gw.events(start) if e["kind"] == "auth.refused_burst"]
    assert len(bursts) == 1
    summary = bursts[0]["body"]
    assert (summary["outcome"], summary["actor"], summary["reason"]) == (
        "refused",
        "anonymous",
        "too_many_refusals",
    )
    details = summary["details"]
    assert details["source"] == "127.0.0.1"
    # and as the event's own source, where `supervise events --source` finds it beside the refusals
    assert summary["source"] == "127.0.0.1"
    assert details["count"] == len(over)
    assert details["recorded_individually"] == LIMIT
    assert details["codes"] == {"invalid_token": 1, "malformed_token": 1, "missing_token": 2}
    assert details["doors"] == {"auth.refused": 3, "data.list": 1}
    # None of these tokens names an organisation that can be believed (none, malformed, not a bearer).
    assert details["claimed_orgs"] == {"unknown": 4}
    assert (details["first_at"], details["last_at"]) == (k_times[0].isoformat(), k_times[-1].isoformat())
    assert details["window_start"] == T0.isoformat() and details["window_s"] == WINDOW_S
    assert BOGUS not in json.dumps(summary) and "FLOODSECRET" not in json.dumps(summary)

    gw.write_closed()  # written once
    assert len([e for e in gw.events(start) if e["kind"] == "auth.refused_burst"]) == 1

    # A new window: recorded one by one again.
    assert _me(gw, None).status_code == 401


def test_an_open_window_is_summed_up_when_the_process_stops(gateway: Gateway) -> None:
    gw = gateway
    assert [_me(gw, None).status_code for _ in range(LIMIT + 2)] == [401] * LIMIT + [429] * 2
    assert not [e for e in gw.events() if e["kind"] == "auth.refused_burst"]
    gw.stop()  # the lifespan's shutdown: Runtime.stop, before the appender closes
    assert [e["body"]["details"]["count"] for e in gw.events() if e["kind"] == "auth.refused_burst"] == [2]


def test_a_burst_says_which_organisations_the_refused_tokens_claimed(gateway: Gateway) -> None:
    """A village's app retrying with a token its provider signed for another audience: the summary said
    only the codes, and a supervisor could not tell which village was failing. It now counts the refused
    tokens per claimed organisation (a division code), never the token or the user."""
    gw = gateway
    start = gw.events()[-1]["seq"] if gw.events() else 0
    provider = dev_identity_provider(gw.settings)
    wrong_audience = f"Bearer {provider.mint('cadre_a', 'another-service')}"
    assert [_me(gw, wrong_audience).status_code for _ in range(LIMIT + 3)] == [401] * LIMIT + [429] * 3
    assert _me(gw, f"Bearer {BOGUS}").status_code == 429
    gw.clock.now = T0 + timedelta(seconds=WINDOW_S)
    gw.write_closed()
    [burst] = [e["body"] for e in gw.events(start) if e["kind"] == "auth.refused_burst"]
    assert burst["details"]["claimed_orgs"] == {"310151101201": 3, "unknown": 1}
    raw = json.dumps(burst, ensure_ascii=False)
    assert "cadre_a" not in raw and wrong_audience.split()[1] not in raw and "FLOODSECRET" not in raw
    assert burst["actor_org"] in (None, "")  # the tokens were not accepted: charged to no organisation


# -- the count itself ------------------------------------------------------------------------------------


def test_claimed_organisations_are_counted_in_a_bounded_table() -> None:
    clock = FakeClock()
    bursts = RefusalBursts(limit=0, window_s=10, max_sources=4, clock=clock)
    villages = [f"3101511012{n:02d}" for n in range(MAX_CLAIMED_ORGS + 2)]
    for org in [*villages, villages[0], None, "not-a-code"]:
        assert bursts.admit("a", "expired_token", "auth.refused", org) == 10
    clock.now += timedelta(seconds=10)
    [summary] = bursts.take_closed()
    claimed = summary.details()["claimed_orgs"]
    assert claimed[villages[0]] == 2
    assert all(claimed[v] == 1 for v in villages[1:MAX_CLAIMED_ORGS])
    # Past the bound: one bucket; no claim, or one that is not a division code: another, never as given.
    assert claimed[OTHER_ORGS] == 2 and claimed[UNKNOWN_ORG] == 2
    assert len(claimed) == MAX_CLAIMED_ORGS + 2 and "not-a-code" not in claimed


def test_sources_are_addresses_ipv6_by_its_64_and_anything_else_unknown() -> None:
    assert source_of({"client": ("203.0.113.7", 5000)}) == "203.0.113.7"
    assert source_of({"client": ("2001:db8:1:2:aaaa::1", 5000)}) == "2001:db8:1:2::/64"
    assert source_of({"client": ("::ffff:203.0.113.7", 5000)}) == "203.0.113.7"
    assert source_of({"client": ("11010519491231002X", 1)}) == UNKNOWN_SOURCE
    assert source_of({"client": None}) == UNKNOWN_SOURCE
    assert source_of({}) == UNKNOWN_SOURCE


def test_past_the_tracked_sources_new_ones_share_one_allowance() -> None:
    clock = FakeClock()
    bursts = RefusalBursts(limit=1, window_s=10, max_sources=2, clock=clock)
    assert bursts.admit("a", "missing_token", "auth.refused") is None
    assert bursts.admit("b", "missing_token", "auth.refused") is None
    assert bursts.admit("c", "missing_token", "auth.refused") is None  # the shared one's first
    assert bursts.admit("d", "missing_token", "auth.refused") == 10
    clock.now += timedelta(seconds=10)
    assert [(s.source, s.count) for s in bursts.take_closed()] == [(OVERFLOW_SOURCE, 1)]
    assert bursts.admit("d", "missing_token", "auth.refused") is None  # the table has room again
