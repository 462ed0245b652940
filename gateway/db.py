"""Database engines and the migration gate.

SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL`` so a committed audit event survives
a power cut; PostgreSQL runs with ``synchronous_commit=on``. Alembic is the only way the schema changes;
the app refuses to start on a database that is not at the head revision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class DatabaseNotMigrated(Exception):
    """The database schema is missing or behind; the message says how to migrate."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL + synchronous=FULL: a commit is on disk before it returns (issue: durable audit before respond).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """Build an engine; nothing connects until first use.

    ``hide_parameters``: a database error's message (logged, or carried by an exception) never shows the
    bound values, which may be ID numbers, phone numbers or tokens.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            hide_parameters=True,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(
            parsed,
            hide_parameters=True,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            connect_args={"options": "-c synchronous_commit=on -c timezone=UTC"},
        )
    return create_engine(url, poolclass=NullPool, hide_parameters=True)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation: escape '%' in passwords.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return script.get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def ensure_migrated(engine: Engine) -> None:
    """Refuse to run on an unmigrated or outdated schema, saying exactly how to fix it."""
    head = head_revision()
    try:
        current = current_revision(engine)
    except Exception as exc:  # the database itself is unreachable
        raise DatabaseNotMigrated(
            f"cannot read the schema version ({type(exc).__name__}); check GRASSROOTS_DATABASE_URL"
        ) from None
    if current != head:
        raise DatabaseNotMigrated(
            f"database schema is at revision {current or 'none'}, the code needs {head}. "
            "Run `grassroots db upgrade` (same GRASSROOTS_DATABASE_URL) and start again. "
            "数据库尚未迁移到当前版本，请先执行 `grassroots db upgrade`。"
        )
