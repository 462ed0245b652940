"""Fixtures shared by the gateway's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.db import upgrade
from tests.stack import postgres_base_url, throwaway_postgres


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
