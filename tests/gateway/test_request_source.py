"""Every audit event a request causes records where it came from (``source``), as the gateway resolved it.

A refusal of a request without a valid token said nothing of its sender: a supervisor shown a refusal spike
could not tell which machine to have blocked, nor from where a cadre's refused reads came. Now each
request's events carry its client address: the peer's, or the ``X-Forwarded-For`` address when (and only
when) the peer is a trusted proxy (uvicorn's ``FORWARDED_ALLOW_IPS``). Served by the real app under
uvicorn with the proxy-header handling ``serve`` gets, reached over loopback; the supervisor finds them with
``supervise events --source``, and the log still verifies.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from audit import verify_log
from audit.tables import event_source_index
from gateway.app import create_app
from gateway.auth.devusers import dev_identity_provider
from gateway.cli import app as grassroots
from gateway.refusal_bursts import source_asked
from gateway.settings import Settings
from tests.audit.helpers import query_plan, statements_run
from tests.gateway.conftest import loopback_settings
from tests.uvicorn_thread import loopback_config, uvicorn_thread

RECORDS = "/api/v1/datasets/residents/records"


@dataclass
class Gateway:
    base_url: str
    engine: sa.Engine
    settings: Settings

    def token(self, username: str) -> str:
        return dev_identity_provider(self.settings).mint(username, "grassroots-gateway")

    def get(self, path: str, *, token: str | None = None, **headers: str) -> httpx.Response:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.get(
            f"{self.base_url}{path}", params={"scenario": "DIBAO_REVIEW"}, headers=headers, timeout=30
        )

    def event_of(self, answer: httpx.Response) -> dict[str, Any]:
        """The one event recorded for the request ``answer`` answered (by its request id)."""
        request_id = answer.headers["x-request-id"]
        with self.engine.connect() as conn:
            bodies = conn.execute(sa.text("SELECT body FROM audit_events ORDER BY seq")).scalars().all()
        [event] = [b for b in map(json.loads, bodies) if b["request_id"] == request_id]
        return event


@contextmanager
def _serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forwarded_allow_ips: str | None
) -> Iterator[Gateway]:
    """The app under uvicorn as ``serve`` runs it (proxy headers on); ``forwarded_allow_ips`` None: uvicorn's
    default (``FORWARDED_ALLOW_IPS``, unset here: 127.0.0.1 and ::1, so loopback is a trusted proxy)."""
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    settings = loopback_settings(tmp_path, monkeypatch)
    config = loopback_config(create_app(settings), settings.port, forwarded_allow_ips=forwarded_allow_ips)
    with uvicorn_thread(config, start_timeout_s=60):
        engine = sa.create_engine(settings.database_url)
        try:
            yield Gateway(f"http://127.0.0.1:{settings.port}", engine, settings)
        finally:
            engine.dispose()


@pytest.fixture
def behind_a_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    with _serve(tmp_path, monkeypatch, None) as gateway:
        yield gateway


def test_each_requests_events_record_the_address_it_came_from(behind_a_proxy: Gateway) -> None:
    gw = behind_a_proxy
    # The data path: a request without a token, one with a forged token, a cadre's refused read.
    anonymous = gw.get(RECORDS, **{"X-Forwarded-For": "203.0.113.7"})
    assert anonymous.status_code == 401
    forged = gw.get(RECORDS, token="eyJhbGciOiJFUzI1NiJ9.e30.c2ln", **{"X-Forwarded-For": "203.0.113.7"})
    assert forged.status_code == 401
    cadre = gw.get(RECORDS, token=gw.token("cadre_a"), **{"X-Forwarded-For": "198.51.100.23"})
    assert cadre.status_code == 403, cadre.text
    # A sign-in refused on an administrative endpoint; an administrative act (signing out).
    login = gw.get("/api/v1/me", **{"X-Forwarded-For": "198.51.100.99"})
    assert login.status_code == 401
    token = gw.token("town_officer")
    logout = httpx.post(
        f"{gw.base_url}/api/v1/me/logout",
        headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": "2001:db8:1:2::99"},
        timeout=30,
    )
    assert logout.status_code == 200, logout.text
    # No proxy in between: the peer itself.
    direct = gw.get(RECORDS)

    found = {
        name: (e["kind"], e["outcome"], e["actor"] == "anonymous", e["source"])
        for name, e in [
            ("anonymous", gw.event_of(anonymous)),
            ("forged", gw.event_of(forged)),
            ("cadre", gw.event_of(cadre)),
            ("login", gw.event_of(login)),
            ("logout", gw.event_of(logout)),
            ("direct", gw.event_of(direct)),
        ]
    }
    assert found == {
        "anonymous": ("data.list", "refused", True, "203.0.113.7"),
        "forged": ("data.list", "refused", True, "203.0.113.7"),
        "cadre": ("data.list", "refused", False, "198.51.100.23"),
        "login": ("auth.refused", "refused", True, "198.51.100.99"),
        # an IPv6 client by its /64, the block it can draw fresh addresses from
        "logout": ("auth.logout", "ok", False, "2001:db8:1:2::/64"),
        "direct": ("data.list", "refused", True, "127.0.0.1"),
    }
    assert verify_log(gw.engine).ok

    # The supervisor finds them by address: the CLI (a client of GET /supervision/events) and the API.
    supervisor = gw.token("supervisor")
    runner = CliRunner()

    def events(*args: str) -> Any:
        env = {"GRASSROOTS_TOKEN": "", "GRASSROOTS_URL": ""}
        said = runner.invoke(
            grassroots, ["supervise", "events", *args, "--url", gw.base_url, "--token", supervisor], env=env
        )
        return said.exit_code, said.stdout

    with statements_run(sa.Engine) as sent:
        code, out = events("--source", "203.0.113.7")
    assert code == 0, out
    # The query the route built (the supervisor's district, its unattributed events, the page size) is
    # answered from the source index, in log order, not by reading every event's body.
    [(statement, parameters)] = [(q, p) for q, p in sent if "'$.source'" in q]
    plan = query_plan(gw.engine, statement, parameters)
    assert event_source_index.name in plan and "TEMP B-TREE" not in plan, plan
    listed = json.loads(out)["items"]
    assert [(e["request_id"], e["source"]) for e in listed] == [
        (forged.headers["x-request-id"], "203.0.113.7"),
        (anonymous.headers["x-request-id"], "203.0.113.7"),
    ]
    # An IPv6 address typed as the client had it finds its /64; with another filter, both apply.
    code, out = events("--source", "2001:db8:1:2::99", "--kind", "auth.")
    assert code == 0, out
    assert [e["request_id"] for e in json.loads(out)["items"]] == [logout.headers["x-request-id"]]
    code, out = events(
        "--source", "198.51.100.23", "--outcome", "refused", "--actor", gw.event_of(cadre)["actor"]
    )
    assert [e["request_id"] for e in json.loads(out)["items"]] == [cadre.headers["x-request-id"]]
    # The query itself is an event of its own request (from loopback, no proxy header).
    query_events = [
        e for e in gw_events(gw) if e["kind"] == "supervision.events_queried" and e["actor"] != "anonymous"
    ]
    assert query_events and {e["source"] for e in query_events} == {"127.0.0.1"}

    # What is no address is refused, without repeating it, and nothing is queried.
    code, out = events("--source", "13812345678")
    assert code == 1
    refused = httpx.get(
        f"{gw.base_url}/api/v1/supervision/events",
        params={"source": "13812345678"},
        headers={"Authorization": f"Bearer {supervisor}"},
        timeout=30,
    )
    assert refused.status_code == 422 and refused.json()["error"] == "invalid_source"
    assert "13812345678" not in refused.text and refused.json()["message"].startswith("source 须为")

    # The refusal spike about requests without a valid token names the address to block.
    spike = httpx.get(
        f"{gw.base_url}/api/v1/supervision/anomalies",
        params={
            "rule": "refusal_spike",
            "setting": ["refusal_spike.min_refusals=1", "refusal_spike.min_ratio=0"],
        },
        headers={"Authorization": f"Bearer {supervisor}"},
        timeout=30,
    )
    assert spike.status_code == 200, spike.text
    [nobodys] = [f for f in spike.json()["findings"] if f["unauthenticated"]]
    assert nobodys["sources"][0] == {"source": "203.0.113.7", "refusals": 2}
    assert "203.0.113.7（2 次）" in nobodys["summary_zh"]
    assert verify_log(gw.engine).ok


def gw_events(gw: Gateway) -> list[dict[str, Any]]:
    with gw.engine.connect() as conn:
        return [json.loads(b) for b in conn.execute(sa.text("SELECT body FROM audit_events")).scalars()]


def test_a_forwarded_address_from_a_peer_that_is_no_trusted_proxy_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone can write ``X-Forwarded-For``: from a peer not listed in ``FORWARDED_ALLOW_IPS`` (here only
    192.0.2.1 is) the header is not believed, and the peer's own address is recorded."""
    with _serve(tmp_path, monkeypatch, "192.0.2.1") as gw:
        answer = gw.get(RECORDS, **{"X-Forwarded-For": "203.0.113.7"})
        assert answer.status_code == 401
        assert gw.event_of(answer)["source"] == "127.0.0.1"
        login = gw.get("/api/v1/me", **{"X-Forwarded-For": "203.0.113.7"})
        assert gw.event_of(login)["source"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("typed", "searched"),
    [
        ("203.0.113.7", "203.0.113.7"),
        (" 203.0.113.7 ", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2::99", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2:0:0:0:0/64", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::99/64", "2001:db8:1:2::/64"),
        ("unknown", "unknown"),
        ("other-sources", "other-sources"),
        ("203.0.113.0/24", None),
        ("2001:db8::/48", None),
        ("example.org", None),
        ("13812345678", None),
    ],
)
def test_a_source_is_searched_as_events_record_it(typed: str, searched: str | None) -> None:
    assert source_asked(typed) == searched
