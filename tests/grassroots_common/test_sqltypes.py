"""UTCDateTime: aware UTC in, aware UTC out, on SQLite and (CI) PostgreSQL; naive times refused."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import StatementError

from grassroots_common.sqltypes import UTCDateTime
from tests.stack import postgres_base_url, throwaway_postgres

_metadata = sa.MetaData()
_stamps = sa.Table(
    "stamps", _metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("at", UTCDateTime())
)
BEIJING = timezone(timedelta(hours=8))


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        eng = sa.create_engine(f"sqlite:///{tmp_path / 'stamps.db'}")
        _metadata.create_all(eng)
        yield eng
        eng.dispose()
        return
    base = postgres_base_url()
    if base is None:
        pytest.skip("GRASSROOTS_TEST_POSTGRES_URL not set")
    with throwaway_postgres(base) as url:
        eng = sa.create_engine(url, poolclass=sa.pool.NullPool)
        _metadata.create_all(eng)
        yield eng
        eng.dispose()


@pytest.mark.parametrize(
    "written",
    [
        datetime(2026, 12, 3, 8, 0, 0, 123456, tzinfo=UTC),
        datetime(2026, 12, 3, 16, 0, 0, tzinfo=BEIJING),  # the same instant in Beijing time
        datetime(2027, 1, 1, 0, 30, tzinfo=BEIJING),  # a different UTC date than its local one
    ],
)
def test_the_same_instant_comes_back_as_utc(engine: sa.Engine, written: datetime) -> None:
    with engine.begin() as conn:
        row_id = conn.execute(sa.insert(_stamps).values(at=written)).inserted_primary_key[0]
        read = conn.execute(sa.select(_stamps.c.at).where(_stamps.c.id == row_id)).scalar_one()
    assert read == written
    assert read.utcoffset() == timedelta(0)


def test_a_naive_time_is_refused_not_guessed(engine: sa.Engine) -> None:
    with pytest.raises(StatementError, match="naive datetime"), engine.begin() as conn:
        conn.execute(sa.insert(_stamps).values(at=datetime(2026, 12, 3, 8, 0)))


def test_null_stays_null(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        row_id = conn.execute(sa.insert(_stamps).values(at=None)).inserted_primary_key[0]
        assert conn.execute(sa.select(_stamps.c.at).where(_stamps.c.id == row_id)).scalar_one() is None
