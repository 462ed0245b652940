"""How the gateway connects to PostgreSQL: a bounded wait for an unreachable server."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from gateway.db import PG_CONNECT_TIMEOUT_S, make_engine


def _connect_params(url: str) -> dict[str, Any]:
    """The keyword arguments the driver's connect() would be called with (captured, never connected)."""
    engine = make_engine(url)
    seen: dict[str, Any] = {}

    @event.listens_for(engine, "do_connect")
    def capture(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        seen.update(cparams)
        raise ConnectionAbortedError("captured")

    with pytest.raises(Exception, match="captured"):
        engine.connect()
    engine.dispose()
    return seen


def test_a_postgres_connection_waits_a_bounded_time_by_default() -> None:
    params = _connect_params("postgresql+psycopg://gw@db.invalid:5432/grassroots")
    assert params["connect_timeout"] == PG_CONNECT_TIMEOUT_S
    assert "synchronous_commit=on" in params["options"]


def test_the_urls_own_connect_timeout_wins() -> None:
    params = _connect_params("postgresql+psycopg://gw@db.invalid:5432/grassroots?connect_timeout=3")
    assert str(params["connect_timeout"]) == "3"
