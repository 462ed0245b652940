"""Sign-in revocations as stored and as a process holds them (gateway.auth.sessions), on SQLite and
PostgreSQL: which tokens a revocation covers, that expired rows are pruned by the next revocation, that a
process refuses to start without the revocation state, refuses every request once its poll has failed past
the staleness bound, and that migration 0012 goes up and down."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from gateway.app import create_app
from gateway.auth.oidc import Principal
from gateway.auth.sessions import (
    RevokedTokenRow,
    UserRevocationRow,
    load_revoked_sessions,
    revoke_token,
    revoke_user_sessions,
    token_key,
)
from gateway.db import alembic_config, make_engine, upgrade
from gateway.errors import ServiceUnavailable
from gateway.runtime import Runtime
from gateway.settings import Settings

NOW = datetime(2026, 12, 6, 8, 0, 0, 500_000, tzinfo=UTC)
T = int(NOW.timestamp())


def _principal(
    user: str = "u-1", *, jti: str | None = "j-1", iat: int = T - 60, exp: int = T + 3000
) -> Principal:
    return Principal(
        user_id=user,
        username=user,
        org="310151101201",
        roles=("village_cadre",),
        department=None,
        office=None,
        token_id=jti,
        issued_at=iat,
        expires_at=exp,
        token_digest="ab" * 32,
    )


@pytest.fixture
def engine(database: str) -> Iterator[sa.Engine]:
    engine = make_engine(database, pool_size=2)
    yield engine
    engine.dispose()


def _count(engine: sa.Engine, table: type[RevokedTokenRow] | type[UserRevocationRow]) -> int:
    with Session(engine) as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


@pytest.mark.parametrize(
    ("principal", "refused"),
    [
        (_principal(), True),  # the token signed out
        (_principal(jti="j-2"), False),  # another token of the same user
        (_principal("u-2", jti=None), True),  # no jti: named by its digest
        (_principal("u-3", jti="j-3", iat=T - 1), True),  # issued before the revocation
        (_principal("u-3", jti="j-3", iat=T), True),  # in the revocation's own second: refused (fail closed)
        (_principal("u-3", jti="j-3", iat=T + 1), False),  # issued after it: a new sign-in
        (_principal("u-4", jti="j-4", iat=T - 3600), False),  # another user
    ],
)
def test_what_a_revocation_covers(engine: sa.Engine, principal: Principal, refused: bool) -> None:
    with Session(engine) as session, session.begin():
        revoke_token(session, _principal(), actor="u-1", now=NOW, leeway_s=30)
        revoke_token(session, _principal("u-2", jti=None), actor="u-2", now=NOW, leeway_s=30)
        revoke_user_sessions(session, "u-3", actor="u-admin", reason="调离", now=NOW, keep_for_s=86_430)
    with Session(engine) as session:
        assert load_revoked_sessions(session, NOW).refuses(principal) is refused


def test_a_sign_out_written_before_the_signed_part_digest_still_refuses_the_token(engine: sa.Engine) -> None:
    # Before, a token without a jti was named by the digest of the whole compact string; such a row is
    # kept until the token expires, and the token must stay signed out across the upgrade.
    token = dataclasses.replace(_principal("u-5", jti=None), compact_digest="cd" * 32)
    signed_out_before = dataclasses.replace(token, token_digest="cd" * 32)  # the key it was named by
    with Session(engine) as session, session.begin():
        revoke_token(session, signed_out_before, actor="u-5", now=NOW, leeway_s=30)
    with Session(engine) as session:
        revoked = load_revoked_sessions(session, NOW)
    assert revoked.refuses(token)
    assert not revoked.refuses(dataclasses.replace(token, compact_digest="ef" * 32))


def test_a_long_jti_is_kept_as_its_digest() -> None:
    key = token_key(_principal(jti="x" * 1000))
    assert key.startswith("sha256:") and len(key) == len("sha256:") + 64


def test_expired_revocations_are_not_loaded_and_are_pruned_by_the_next_one(engine: sa.Engine) -> None:
    with Session(engine) as session, session.begin():
        revoke_token(session, _principal(exp=T + 10), actor="u-1", now=NOW, leeway_s=30)
        revoke_user_sessions(session, "u-3", actor="u-admin", reason="调离", now=NOW, keep_for_s=100)
    later = NOW + timedelta(seconds=200)
    with Session(engine) as session:
        loaded = load_revoked_sessions(session, later)
        assert not loaded.tokens and not loaded.users
    assert (_count(engine, RevokedTokenRow), _count(engine, UserRevocationRow)) == (1, 1)

    with Session(engine) as session, session.begin():
        revoke_token(session, _principal("u-9", jti="j-9", exp=T + 5000), actor="u-9", now=later, leeway_s=30)
    with Session(engine) as session:
        assert session.scalars(sa.select(RevokedTokenRow.token_key)).all() == ["jti:j-9"]
    assert _count(engine, UserRevocationRow) == 0


def test_every_revocation_moves_the_version_a_process_polls(engine: sa.Engine) -> None:
    with Session(engine) as session:
        before = load_revoked_sessions(session, NOW).version
    with Session(engine) as session, session.begin():
        revoke_user_sessions(session, "u-3", actor="u-admin", reason="调离", now=NOW, keep_for_s=100)
    with Session(engine) as session, session.begin():
        revoke_user_sessions(session, "u-3", actor="u-admin", reason="再次", now=NOW, keep_for_s=100)
    with Session(engine) as session:
        assert load_revoked_sessions(session, NOW).version == before + 2
        assert session.scalars(sa.select(UserRevocationRow.reason)).all() == ["再次"]


# -- the process: fail closed ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_background_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRASSROOTS_CHECKPOINT_INTERVAL_S", "0")
    monkeypatch.setenv("GRASSROOTS_AUDIT_ARCHIVE_INTERVAL_S", "0")


def _settings(tmp_path: Path, url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "var", database_url=url, dev_idp_enabled=True, policy_refresh_interval_s=0.2
    )


def test_a_gateway_that_cannot_load_the_revocations_does_not_start(
    tmp_path: Path, database: str, engine: sa.Engine
) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE auth_revoked_tokens"))
    with pytest.raises(sa.exc.DBAPIError), TestClient(create_app(_settings(tmp_path, database))):
        pass


def test_a_process_whose_revocation_poll_keeps_failing_refuses_past_the_staleness_bound(
    tmp_path: Path, database: str, engine: sa.Engine
) -> None:
    with TestClient(create_app(_settings(tmp_path, database))) as client:
        runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
        runtime.check_session(_principal())  # fresh, nothing revoked
        with engine.begin() as conn:  # the poll now fails: the version moved, the table is gone
            conn.execute(sa.text("DROP TABLE auth_revoked_tokens"))
            conn.execute(sa.text("UPDATE policy_versions SET version = version + 1 WHERE name = 'sessions'"))
            conn.execute(
                sa.text(
                    "INSERT INTO policy_versions (name, version, updated_at) SELECT 'sessions', 1, :t "
                    "WHERE NOT EXISTS (SELECT 1 FROM policy_versions WHERE name = 'sessions')"
                ),
                {"t": NOW},
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                runtime.check_session(_principal())
            except ServiceUnavailable as refused:
                assert refused.code == "policy_stale"
                break
            assert time.monotonic() < deadline, "a process with a failing poll kept accepting tokens"
            time.sleep(0.2)


# -- the migration --------------------------------------------------------------------------------------


def test_migration_0012_goes_up_and_down(database: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(database), "0011")
    engine = make_engine(database, pool_size=1)
    with contextlib.closing(engine.connect()) as conn:
        assert not {"auth_revoked_tokens", "auth_user_revocations"} & set(sa.inspect(conn).get_table_names())
    engine.dispose()
    upgrade(database)
    engine = make_engine(database, pool_size=1)
    with Session(engine) as session, session.begin():
        revoke_user_sessions(session, "u-3", actor="u-admin", reason="调离", now=NOW, keep_for_s=100)
    with Session(engine) as session:
        assert load_revoked_sessions(session, NOW).users.keys() == {"u-3"}
    engine.dispose()
