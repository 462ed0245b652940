"""Readiness (``/readyz``) beside liveness (``/healthz``): a gateway process whose database stops answering
is still alive but no longer ready — 503 with the one error shape, Chinese first, never the database URL —
so a load balancer takes it out of rotation instead of sending it requests that can only fail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from gateway.app import create_app
from gateway.db import upgrade
from gateway.settings import Settings
from tests.stack import _postgres_database, postgres_base_url


@pytest.fixture(autouse=True)
def _no_background_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRASSROOTS_CHECKPOINT_INTERVAL_S", "0")
    monkeypatch.setenv("GRASSROOTS_AUDIT_ARCHIVE_INTERVAL_S", "0")


def _client(tmp_path: Path, url: str) -> Iterator[TestClient]:
    upgrade(url)
    settings = Settings(data_dir=tmp_path / "var", database_url=url, dev_idp_enabled=True)
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_process_with_its_database_is_ready(tmp_path: Path) -> None:
    for client in _client(tmp_path, f"sqlite:///{tmp_path / 'gateway.db'}"):
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}


@pytest.mark.postgres
def test_a_process_whose_database_is_gone_is_alive_but_not_ready(tmp_path: Path) -> None:
    base = postgres_base_url()
    if base is None:
        pytest.skip("GRASSROOTS_TEST_POSTGRES_URL not set")
    url, admin, name = _postgres_database(base)
    try:
        for client in _client(tmp_path, url):
            assert client.get("/readyz").status_code == 200
            with admin.connect() as conn:  # the database goes away under the running process
                conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
            assert client.get("/healthz").status_code == 200  # alive: do not restart it for this
            answer = client.get("/readyz")
            assert answer.status_code == 503
            body = answer.json()
            assert body["error"] == "database_unavailable"
            assert body["message"].startswith("网关暂时无法连接数据库")
            assert body["message_en"].startswith("The gateway cannot reach its database")
            host = make_url(url).host or ""
            assert name not in answer.text and host not in answer.text
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
