"""Alembic environment: the schema is the union of every library's tables plus the gateway's own."""

from __future__ import annotations

from alembic import context
from sqlalchemy import MetaData

from gateway.db import make_engine
from gateway.schema import all_metadata

config = context.config
target_metadata: list[MetaData] = all_metadata()


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = make_engine(url)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # Batch mode rebuilds a table (copy, drop the original, rename the copy); with foreign keys
            # enforced, dropping a table other rows refer to fails (audit_incidents under its steps). The
            # check is off while migrating (the pragma is ignored inside a transaction, so before one) and
            # every reference is checked once the migrations are done, as SQLite's own docs advise.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=sqlite,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    tables = sorted({str(row[0]) for row in broken})
                    raise RuntimeError(
                        f"migration left rows referring to missing rows in: {', '.join(tables)}"
                    )
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
