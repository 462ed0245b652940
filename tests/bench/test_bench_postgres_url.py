"""Every benchmark that needs PostgreSQL asks the one server README "Performance" names for them."""

from __future__ import annotations

import os

import pytest
from sqlalchemy.engine import make_url

from bench import bench_audit


def test_the_audit_append_figure_uses_the_bench_postgres_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scale-out and admission figures read GRASSROOTS_BENCH_POSTGRES_URL, but the audit append on
    PostgreSQL read GRASSROOTS_TEST_POSTGRES_URL (else 127.0.0.1:5432/test) only: an operator who pointed
    the benchmarks at their server got that figure from another one, or silently none."""
    server = os.environ.get("GRASSROOTS_TEST_POSTGRES_URL")
    if not server:
        pytest.skip("GRASSROOTS_TEST_POSTGRES_URL is not set: no PostgreSQL to point the benchmarks at")
    monkeypatch.setenv("GRASSROOTS_BENCH_POSTGRES_URL", server)
    monkeypatch.setenv("GRASSROOTS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    base = bench_audit._postgres_base()
    assert base is not None, "the server GRASSROOTS_BENCH_POSTGRES_URL names was not used"
    used, named = make_url(base), make_url(server)
    assert (used.host, used.port, used.database) == (named.host, named.port, named.database)
