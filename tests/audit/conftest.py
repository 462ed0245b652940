"""Fixtures: a fresh audit store per test on SQLite (file in tmp_path) and, when configured, PostgreSQL.

PostgreSQL tests read GRASSROOTS_TEST_POSTGRES_URL; they skip when it is unset, except under CI (env CI
set), where they fail. Each run creates a throwaway database and each test its own schema.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from audit import configure_sqlite_durability, install_immutability_sql, metadata


@dataclass(frozen=True)
class Store:
    engine: sa.Engine
    url: str
    schema: str | None  # PostgreSQL search_path for this test

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name


def install(engine: sa.Engine) -> None:
    metadata.create_all(engine)
    with engine.begin() as conn:
        for statement in install_immutability_sql(engine.dialect.name):
            conn.exec_driver_sql(statement)


def sqlite_store(path: Path) -> Store:
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url, connect_args={"check_same_thread": False})
    configure_sqlite_durability(engine)
    install(engine)
    return Store(engine, url, None)


def postgres_engine(url: str, schema: str) -> sa.Engine:
    return sa.create_engine(url, connect_args={"options": f"-c search_path={schema}"}, pool_size=5)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    base = os.environ.get("GRASSROOTS_TEST_POSTGRES_URL")
    if not base:
        if os.environ.get("CI"):
            pytest.fail("GRASSROOTS_TEST_POSTGRES_URL must be set in CI")
        pytest.skip("GRASSROOTS_TEST_POSTGRES_URL not set")
    parsed = make_url(base)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    name = f"gr_audit_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(parsed, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL unreachable: {type(exc).__name__}")
    try:
        yield parsed.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def postgres_store(postgres_database: str) -> Iterator[Store]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_database, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    engine = postgres_engine(postgres_database, schema)
    install(engine)
    try:
        yield Store(engine, postgres_database, schema)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[Store]:
    store = sqlite_store(tmp_path / "audit.db")
    yield store
    store.engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = sqlite_store(tmp_path / "audit.db")
        yield s
        s.engine.dispose()
    else:
        yield request.getfixturevalue("postgres_store")
