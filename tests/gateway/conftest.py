"""Fixtures shared by the gateway's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.db import upgrade
from gateway.settings import Settings
from tests.ports import free_port
from tests.stack import postgres_base_url, throwaway_postgres


def loopback_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> Settings:
    """Settings of a gateway in this process on a migrated SQLite database and a free loopback port, with the
    development IdP and no periodic checkpoint or archive round (``overrides`` on top)."""
    monkeypatch.setenv("GRASSROOTS_CHECKPOINT_INTERVAL_S", "0")
    monkeypatch.setenv("GRASSROOTS_AUDIT_ARCHIVE_INTERVAL_S", "0")
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    upgrade(url)
    fields: dict[str, Any] = dict(
        data_dir=tmp_path / "var", database_url=url, dev_idp_enabled=True, host="127.0.0.1", port=free_port()
    )
    return Settings(**{**fields, **overrides})


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A gateway database migrated to the newest revision: a SQLite file, or a throwaway PostgreSQL one."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'gateway.db'}"
        upgrade(url)
        yield url
        return
    base = postgres_base_url()
    if base is None:
        pytest.skip("GRASSROOTS_TEST_POSTGRES_URL not set")
    with throwaway_postgres(base) as url:
        upgrade(url)
        yield url
