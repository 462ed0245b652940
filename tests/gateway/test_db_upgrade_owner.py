"""`grassroots db upgrade` run by a schema owner that is not a superuser, set up as the README's "PostgreSQL
deployment" says (its superuser block and its grants block, read from the README).

The audit writer role is one for the whole cluster: an owner that may neither create it nor grant it
(no CREATEROLE, no ADMIN OPTION) cannot finish migration 0001/0010. That owner is told so, naming the
statements a superuser runs once, not "run it as the owner" (it is the owner); nothing is changed. After
the README's superuser block, the same owner migrates, hands the writer role to the gateway's login with
the README's grants, and the gateway's login can append to the log.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from audit.tables import WRITER_ROLE
from gateway.db import head_revision
from tests.gateway.test_audit_writer_role import readme_grants
from tests.stack import REPO, postgres_base_url

pytestmark = pytest.mark.postgres

_RUN = uuid.uuid4().hex[:10]
_OWNER = f"gr_own_{_RUN}"  # cluster-wide names: unique per run, dropped afterwards
_GATEWAY = f"gr_gw_{_RUN}"
_DATABASE = f"gr_e2e_own_{_RUN}"


def readme_superuser_block() -> list[str]:
    """The README's once-as-a-superuser statements (the sql block creating the owner), one each."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```sql\n(.*?)```", readme, re.S) if "CREATE DATABASE" in b]
    assert len(blocks) == 1, "README: one sql block creates the owner, the database and the roles"
    renamed = (
        blocks[0]
        .replace(" PASSWORD '…'", "")  # trust authentication here
        .replace("grassroots_owner", _OWNER)
        .replace("grassroots_gateway", _GATEWAY)
        .replace("DATABASE grassroots ", f"DATABASE {_DATABASE} ")
    )
    return [s.strip() for s in renamed.split(";") if s.strip()]


@pytest.fixture
def cluster() -> Iterator[tuple[sa.Engine, str]]:
    base = postgres_base_url()
    if base is None:
        pytest.skip("GRASSROOTS_TEST_POSTGRES_URL not set")
    parsed = make_url(base)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    admin = sa.create_engine(parsed, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        yield admin, parsed.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{_DATABASE}" WITH (FORCE)')
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {_GATEWAY}")
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {_OWNER}")
        admin.dispose()


def _cli(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRASSROOTS_")}
    env.update(PYTHONPATH=str(REPO), GRASSROOTS_DATA_DIR=str(tmp_path / "var"), GRASSROOTS_DATABASE_URL=url)
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_an_owner_that_is_not_a_superuser_is_told_what_a_superuser_runs_once(
    cluster: tuple[sa.Engine, str], tmp_path: Path
) -> None:
    admin, base = cluster
    statements = readme_superuser_block()
    owner_url = make_url(base).set(username=_OWNER, password=None, database=_DATABASE)
    as_owner = owner_url.render_as_string(hide_password=False)
    as_gateway = owner_url.set(username=_GATEWAY).render_as_string(hide_password=False)
    creates_owner = [s for s in statements if s.startswith((f"CREATE ROLE {_OWNER}", "CREATE DATABASE"))]
    assert len(creates_owner) == 2, statements
    with admin.connect() as conn:
        for statement in creates_owner:
            conn.exec_driver_sql(statement)

    # The owner alone (no CREATEROLE, no ADMIN OPTION on the cluster's writer role): refused, saying what
    # a superuser runs, never the login's name; nothing migrated.
    refused = _cli(tmp_path, as_owner, "db", "upgrade")
    assert refused.returncode == 1, refused.stderr
    assert "Traceback" not in refused.stderr
    zh, en = refused.stderr.splitlines()
    assert zh.startswith("数据库迁移未完成（InsufficientPrivilege）：GRASSROOTS_DATABASE_URL 中的登录角色")
    assert f"GRANT {WRITER_ROLE} TO <所有者角色> WITH ADMIN OPTION;" in zh and zh.endswith("未做任何更改。")
    assert f"GRANT {WRITER_ROLE} TO <owner role> WITH ADMIN OPTION;" in en
    assert "must run as the owner" not in en
    assert _OWNER not in refused.stderr
    assert "database: none" in _cli(tmp_path, as_owner, "db", "current").stdout

    # The rest of the README's superuser block; the writer role may already exist on this cluster.
    with admin.connect() as conn:
        for statement in statements:
            if statement in creates_owner:
                continue
            try:
                conn.exec_driver_sql(statement)
            except sa.exc.ProgrammingError as exc:
                assert statement == f"CREATE ROLE {WRITER_ROLE} NOLOGIN", exc
                assert "already exists" in str(exc.orig)

    migrated = _cli(tmp_path, as_owner, "db", "upgrade")
    assert migrated.returncode == 0, migrated.stderr
    # The owner hands the writer role on with the README's grants (it needs ADMIN OPTION for the last).
    owner = sa.create_engine(as_owner, poolclass=sa.pool.NullPool)
    try:
        with owner.begin() as conn:
            for statement in readme_grants():
                conn.exec_driver_sql(statement.replace("grassroots_gateway", _GATEWAY))
    finally:
        owner.dispose()
    current = _cli(tmp_path, as_gateway, "db", "current")
    assert f"database: {head_revision()}  code: {head_revision()}" in current.stdout, current.stderr
    # The gateway's login appends (through the writer role): a signed checkpoint, recorded in the log.
    signed = _cli(tmp_path, as_gateway, "audit", "checkpoint")
    assert signed.returncode == 0, signed.stderr
    verified = _cli(tmp_path, as_gateway, "audit", "verify", "--quiet")
    assert verified.returncode == 0, verified.stderr
    assert "audit log intact: 1 events verified" in verified.stdout


def test_the_gateways_login_running_the_upgrade_is_told_to_use_the_owners(
    cluster: tuple[sa.Engine, str], tmp_path: Path
) -> None:
    """An operator ran `db upgrade` with the gateway's GRASSROOTS_DATABASE_URL (the one `serve` uses): it
    was told to have a superuser create the writer role and grant it WITH ADMIN OPTION, which would not
    have helped (the login may not create tables at all). It is now told to run it with the owner's URL;
    exit 1, nothing migrated."""
    admin, base = cluster
    statements = readme_superuser_block()
    creates = [s for s in statements if s.startswith((f"CREATE ROLE {_OWNER}", "CREATE DATABASE"))]
    creates += [s for s in statements if s.startswith(f"CREATE ROLE {_GATEWAY}")]
    assert len(creates) == 3, statements
    with admin.connect() as conn:
        for statement in creates:
            conn.exec_driver_sql(statement)
    as_gateway = make_url(base).set(username=_GATEWAY, password=None, database=_DATABASE)
    refused = _cli(tmp_path, as_gateway.render_as_string(hide_password=False), "db", "upgrade")
    assert refused.returncode == 1, refused.stderr
    assert "Traceback" not in refused.stderr
    zh, en = refused.stderr.splitlines()
    assert zh.startswith(
        "数据库迁移未完成（InsufficientPrivilege）：运行 `grassroots db upgrade` 的登录角色须是"
    )
    assert "所有者的 GRASSROOTS_DATABASE_URL" in zh and "WITH ADMIN OPTION" not in zh
    assert "must run as the owner of the schema" in en and "WITH ADMIN OPTION" not in en
    as_owner = as_gateway.set(username=_OWNER).render_as_string(hide_password=False)
    assert "database: none" in _cli(tmp_path, as_owner, "db", "current").stdout
