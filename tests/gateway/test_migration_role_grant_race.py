"""Two databases of one PostgreSQL cluster migrated at once both make their migrating role a member of the
cluster-wide writer role (migration 0010); the second grant used to fail with ``unique_violation`` on
``pg_auth_members`` although the membership it asked for then existed (seen in CI: two test workers
migrating their own databases together), so ``db upgrade`` failed for a race, not for anything wrong.

The migration's own statement is run by two sessions at once, as a throwaway role that may grant roles
(CREATEROLE), round after round, the membership taken back between rounds.
"""

from __future__ import annotations

import importlib
import threading
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from audit.tables import WRITER_ROLE
from tests.stack import postgres_base_url

pytestmark = pytest.mark.postgres

_MIGRATION = importlib.import_module("gateway.migrations.versions.0010_audit_writer_membership")
_ROUNDS = 30


@pytest.fixture
def granting_role() -> Iterator[tuple[sa.Engine, str]]:
    base = postgres_base_url()
    if base is None:
        pytest.skip("GRASSROOTS_TEST_POSTGRES_URL not set")
    engine = sa.create_engine(base, isolation_level="AUTOCOMMIT", pool_size=3)
    role = f"gr_race_{uuid.uuid4().hex[:10]}"
    with engine.connect() as conn:
        conn.execute(sa.text(f"CREATE ROLE {role} NOLOGIN CREATEROLE"))
    try:
        yield engine, role
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
        engine.dispose()


def test_two_migrations_granting_the_writer_membership_at_once_both_succeed(
    granting_role: tuple[sa.Engine, str],
) -> None:
    engine, role = granting_role
    grant = _MIGRATION._POSTGRES_UP[0]
    assert f"GRANT {WRITER_ROLE} TO CURRENT_USER" in grant
    failures: list[BaseException] = []
    for _ in range(_ROUNDS):
        with engine.connect() as conn:
            conn.execute(sa.text(f"REVOKE {WRITER_ROLE} FROM {role}"))
        start = threading.Barrier(2)

        def migrate(start: threading.Barrier) -> None:
            with engine.connect() as conn:
                conn.execute(sa.text(f"SET ROLE {role}"))
                start.wait()
                try:
                    conn.execute(sa.text(grant))
                except sa.exc.DBAPIError as error:
                    failures.append(error)
                finally:
                    conn.execute(sa.text("RESET ROLE"))

        threads = [threading.Thread(target=migrate, args=(start,)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
    with engine.connect() as conn:
        member = conn.execute(
            sa.text("SELECT pg_has_role(:role, :writer, 'MEMBER')"), {"role": role, "writer": WRITER_ROLE}
        ).scalar_one()
    assert member
