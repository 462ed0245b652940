"""What a new user meets following README.md's walk-through with the CLI: arguments that work on any day,
secrets kept out of argv and world-readable files, and messages in Chinese first, English after.

The API commands run through Typer against the loopback stand-in of ``test_cli_client`` (it records what it
received), the offline ones against real files.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner, Result

from gateway.cli import app as grassroots
from gateway.commands.policy import resolve_at
from policies.scenarios import CHINA_STANDARD_TIME
from tests.gateway.test_cli_client import Gateway, serve_gateway

runner = CliRunner()


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    yield from serve_gateway()


def _cli(*args: str, env: dict[str, str] | None = None) -> Result:
    env = {"GRASSROOTS_TOKEN": "", "GRASSROOTS_URL": "", **(env or {})}
    return runner.invoke(grassroots, list(args), env=env)


_DECIDE = [
    "policy", "decide", "--org", "310151101201", "--role", "village_cadre",
    "--dataset", "residents", "--scenario", "DIBAO_REVIEW",
]  # fmt: skip


def test_decide_at_a_beijing_time_of_day_sends_its_next_occurrence(gateway: Gateway) -> None:
    gateway.answer(200, {"allowed": False, "code": "outside_hours"})
    before = datetime.now(UTC)
    result = _cli(*_DECIDE, "--at", "23:30", "--url", gateway.url, "--token", "t")
    assert result.exit_code == 0, result.stderr
    at = datetime.fromisoformat(gateway.received[0].body["at"])
    # Beijing time, 23:30, and in the next 24 hours: never before the demo's grants (valid from the seed).
    assert at.utcoffset() == timedelta(hours=8)
    assert (at.hour, at.minute) == (23, 30)
    assert before < at <= before + timedelta(days=1)


def test_resolve_at_rolls_over_to_tomorrow_once_the_time_has_passed_today() -> None:
    now = datetime(2026, 11, 22, 23, 45, tzinfo=CHINA_STANDARD_TIME)
    assert resolve_at("23:30", now) == "2026-11-23T23:30:00+08:00"
    assert resolve_at("7:05", now) == "2026-11-23T07:05:00+08:00"
    early = datetime(2026, 11, 22, 6, 0, tzinfo=CHINA_STANDARD_TIME)
    assert resolve_at("23:30:15", early) == "2026-11-22T23:30:15+08:00"
    # A full ISO 8601 time passes through unchanged, and no --at stays "now" (decided by the server).
    assert resolve_at("2026-11-22T23:30:00+08:00", now) == "2026-11-22T23:30:00+08:00"
    assert resolve_at(None, now) is None


def test_decide_refuses_an_impossible_time_of_day_before_calling(gateway: Gateway) -> None:
    result = _cli(*_DECIDE, "--at", "25:30", "--url", gateway.url, "--token", "t")
    assert result.exit_code == 2
    assert result.stderr.startswith("--at 25:30：不是有效的时刻")
    assert gateway.received == []
