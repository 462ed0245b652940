"""On PostgreSQL the running gateway appends audit events as the insert/select-only writer role.

Issue: "the database itself refuses UPDATE and DELETE on events (... on PostgreSQL also a role that can
only insert and select)". The gateway here logs in as a role that is neither the owner nor a superuser,
set up with exactly the SQL the README's "PostgreSQL deployment" section gives (read from the README), and
a test-only trigger records ``current_user`` for every inserted event: the events of a data read (the
group-commit writer, with its quota companion after ``RESET ROLE``) and of an administrative act (written
in the act's own transaction) are inserted by ``grassroots_audit_writer``; that role, and the login role,
are refused UPDATE, DELETE, TRUNCATE and DROP TRIGGER by privilege, not only by the triggers.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from audit import verify_log
from audit.tables import WRITER_ROLE
from gateway.db import DatabaseNotMigrated, ensure_audit_writer, make_engine
from tests.stack import REPO, Stack, postgres_base_url, stack_fixture

pytestmark = pytest.mark.postgres

_ROLE = f"gr_gw_{uuid.uuid4().hex[:10]}"  # cluster-wide: unique per run, dropped afterwards
_OUTSIDER = f"gr_out_{uuid.uuid4().hex[:10]}"  # a login role that was never granted the writer role

# Test-only: records who inserted each event. INSERT on it is the one thing the writer role is given here.
_PROBE = [
    "CREATE TABLE audit_role_probe (seq bigint NOT NULL, inserted_by name NOT NULL)",
    "CREATE FUNCTION audit_role_probe() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "INSERT INTO audit_role_probe VALUES (NEW.seq, current_user); RETURN NULL; END $$",
    "CREATE TRIGGER audit_role_probe AFTER INSERT ON audit_events "
    "FOR EACH ROW EXECUTE FUNCTION audit_role_probe()",
    f"GRANT INSERT ON audit_role_probe TO {WRITER_ROLE}",
]


def readme_grants() -> list[str]:
    """The README's recommended grants (its ``sql`` block naming the writer role), one statement each."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = [
        b
        for b in re.findall(r"```sql\n(.*?)```", readme, re.S)
        if f"GRANT {WRITER_ROLE} TO grassroots_gateway" in b
    ]
    assert len(blocks) == 1, "README: one sql block grants the writer role"
    text = "\n".join(line for line in blocks[0].splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]


def _as(url: str, role: str) -> str:
    return make_url(url).set(username=role, password=None).render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = postgres_base_url()
    if base is None:
        pytest.skip("GRASSROOTS_TEST_POSTGRES_URL not set")
    admin = sa.create_engine(make_url(base), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)

    def set_up(owner_url: str) -> dict[str, str]:
        owner = sa.create_engine(owner_url, poolclass=sa.pool.NullPool)
        with owner.begin() as conn:
            conn.exec_driver_sql(f"CREATE ROLE {_ROLE} LOGIN")
            conn.exec_driver_sql(f"CREATE ROLE {_OUTSIDER} LOGIN")
            for statement in readme_grants():
                conn.exec_driver_sql(statement.replace("grassroots_gateway", _ROLE))
            for statement in _PROBE:
                conn.exec_driver_sql(statement)
            conn.exec_driver_sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {_OUTSIDER}")
        owner.dispose()
        return {"GRASSROOTS_DATABASE_URL": _as(owner_url, _ROLE)}

    try:
        yield from stack_fixture("postgres", tmp_path_factory, before_gateway=set_up)
    finally:
        with admin.connect() as conn:  # the database is gone: the roles own nothing any more
            for role in (_ROLE, _OUTSIDER):
                conn.exec_driver_sql(f"DROP ROLE IF EXISTS {role}")
        admin.dispose()


def _inserted_by(stack: Stack, after: int) -> dict[int, str]:
    with stack.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT seq, inserted_by FROM audit_role_probe WHERE seq > %(after)s", {"after": after}
        )
        return {int(seq): str(who) for seq, who in rows}


def _head(stack: Stack) -> int:
    with stack.engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT coalesce(max(seq), 0) FROM audit_events").scalar_one())


def test_the_gateway_logs_in_as_a_role_that_is_neither_owner_nor_superuser(stack: Stack) -> None:
    login = make_engine(stack.env["GRASSROOTS_DATABASE_URL"], pool_size=1)
    try:
        with login.connect() as conn:
            who, superuser, owner = conn.exec_driver_sql(
                "SELECT current_user, rolsuper, pg_has_role(current_user, tableowner, 'USAGE') "
                "FROM pg_roles, pg_tables WHERE rolname = current_user AND tablename = 'audit_events'"
            ).one()
    finally:
        login.dispose()
    assert (who, superuser, owner) == (_ROLE, False, False)


def _counted(stack: Stack) -> int:
    with stack.engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT coalesce(sum(used), 0) FROM policy_quota_usage").scalar_one())


def test_a_data_read_is_recorded_by_the_writer_role(stack: Stack) -> None:
    before, counted = _head(stack), _counted(stack)
    for page in (1, 2):
        resp = stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW", page_size=5, page=page)
        assert resp.status_code == 200, resp.text
    recorded = _inserted_by(stack, before)
    kinds = {e["seq"]: e["kind"] for e in stack.last_events(_head(stack) - before)}
    assert sorted(recorded) == sorted(kinds)
    assert list(kinds.values()) == ["data.list", "data.list"]
    assert set(recorded.values()) == {WRITER_ROLE}
    # The pages were counted in the same transaction, after RESET ROLE, as the login role.
    assert _counted(stack) > counted


def test_an_administrative_act_and_its_record_commit_together_the_record_as_the_writer_role(
    stack: Stack,
) -> None:
    before = _head(stack)
    body = {
        "scenario": "ELDERLY_VISIT",
        "org_scope": "310151101201",
        "reason": "高龄老人走访",
        "datasets": {"residents": ["id", "name", "village_code"]},
    }
    resp = httpx.post(
        f"{stack.base_url}/api/v1/grants",
        json=body,
        headers={"Authorization": f"Bearer {stack.token('cadre_a')}"},
        timeout=30.0,
    )
    assert resp.status_code == 201, resp.text  # the grant row was written after RESET ROLE
    grant_id = resp.json()["grant_id"]
    events = stack.last_events(_head(stack) - before)
    assert any(e["kind"] == "grant.requested" and grant_id in e["body"] for e in events)
    assert set(_inserted_by(stack, before).values()) == {WRITER_ROLE}


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET actor = 'x'",
        "DELETE FROM audit_events",
        "DELETE FROM audit_subject_refs",
        "UPDATE audit_subject_refs SET subject_ref = 'x'",
        "TRUNCATE audit_events CASCADE",
        "INSERT INTO audit_prune_anchors VALUES (1000000, '{}', now())",
        "DROP TRIGGER audit_events_no_update ON audit_events",
    ],
)
@pytest.mark.parametrize("as_writer", [True, False], ids=["writer-role", "login-role"])
def test_rewriting_is_refused_by_privilege_not_only_by_the_triggers(
    stack: Stack, statement: str, as_writer: bool
) -> None:
    login = sa.create_engine(stack.env["GRASSROOTS_DATABASE_URL"], poolclass=sa.pool.NullPool)
    try:
        with pytest.raises(sa.exc.ProgrammingError) as refused, login.begin() as conn:
            if as_writer:
                conn.exec_driver_sql(f"SET LOCAL ROLE {WRITER_ROLE}")
            conn.exec_driver_sql(statement)
    finally:
        login.dispose()
    message = str(refused.value.orig)
    # The triggers' message says "append-only": these are refused before any trigger runs.
    assert "permission denied" in message or "must be owner" in message, message
    assert "append-only" not in message


def test_the_log_still_verifies(stack: Stack) -> None:
    assert verify_log(stack.engine).ok


def test_a_login_role_that_cannot_become_the_writer_is_refused_at_start(stack: Stack) -> None:
    outsider = make_engine(_as(stack.database_url, _OUTSIDER), pool_size=1)
    try:
        with pytest.raises(DatabaseNotMigrated, match=f"GRANT {WRITER_ROLE} TO"):
            ensure_audit_writer(outsider)
    finally:
        outsider.dispose()
    member = make_engine(stack.env["GRASSROOTS_DATABASE_URL"], pool_size=1)
    try:
        ensure_audit_writer(member)  # the README's setup passes
    finally:
        member.dispose()


def test_a_command_run_as_that_role_says_so_chinese_first_without_an_english_log_line(stack: Stack) -> None:
    """`audit verify` run with a login that may read the tables but is not a member of the writer role:
    stderr began with an English log line, "the login role cannot become grassroots_audit_writer
    (ProgrammingError)", before the Chinese-first refusal it duplicated. The reason is now in the refusal."""
    outsider = {"GRASSROOTS_DATABASE_URL": _as(stack.database_url, _OUTSIDER)}
    result = stack.cli("audit", "verify", "--quiet", check=False, env_extra=outsider)
    assert result.returncode == 2, result.stderr
    zh, en = result.stderr.splitlines()
    assert zh.startswith(f"数据库登录角色无法以审计写入角色 {WRITER_ROLE} 追加审计事件（") and "GRANT" in zh
    assert en.startswith(f"the database login role cannot append audit events as {WRITER_ROLE} (")
