"""Commands that need the current schema refuse an unmigrated database the same way: Chinese first, then
English, naming `grassroots db upgrade`, exit 2, no traceback, and nothing created in the data directory
(no gateway.db, no checkpoint key, no masking key ring). An unreachable database is exit 2 too, named
without its credentials: never exit 1, which `audit verify` keeps for a log that is not intact."""

from __future__ import annotations

import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from gateway.cli import app as grassroots
from gateway.db import head_revision, upgrade
from tests.stack import postgres_base_url, throwaway_postgres

runner = CliRunner()


def _run(data_dir: Path, *args: str, database_url: str | None = None, typed: str | None = None) -> Result:
    env = {
        "GRASSROOTS_DATA_DIR": str(data_dir),
        "GRASSROOTS_DEV_IDP_ENABLED": "true",
        "GRASSROOTS_DATABASE_URL": database_url,
        "GRASSROOTS_OIDC_ISSUER": None,
        "GRASSROOTS_MODE": None,
        "GRASSROOTS_CHECKPOINT_KEY_PATH": None,
        "GRASSROOTS_CHECKPOINT_DIR": None,
    }
    return runner.invoke(grassroots, list(args), env=env, input=typed)


# Every offline command that reads or writes the database itself (not through the gateway's API).
OFFLINE_DATABASE_COMMANDS = [
    ["audit", "verify", "--quiet"],
    ["audit", "checkpoint"],
    ["audit", "accept-restore", "--reason", "restored from the nightly backup", "--yes"],
    ["keys", "rotate"],
    ["keys", "rotate-audit-ref"],
    ["keys", "rotate-checkpoint"],
    ["keys", "replace-lost-ring"],
    ["supervise", "prefix-verify"],
]


def _assert_refused_as_unmigrated(result: Result, revision: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    zh, en = result.stderr.splitlines()
    assert zh.startswith("数据库尚未迁移到当前版本") and "`grassroots db upgrade`" in zh
    assert en.startswith(f"The database schema is at revision {revision}, the code needs {head_revision()}")
    assert "`grassroots db upgrade`" in en
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    "command",
    [
        ["seed-demo"],
        ["serve", "--port", "1"],
        *OFFLINE_DATABASE_COMMANDS,
    ],
)
def test_a_fresh_data_directory_is_refused_and_left_as_it_was(tmp_path: Path, command: list[str]) -> None:
    fresh = tmp_path / "fresh"
    result = _run(fresh, *command)
    _assert_refused_as_unmigrated(result, "none")
    # No gateway.db, no keys, no registry credential files: nothing to clean up before `db upgrade`.
    assert not fresh.exists() or list(fresh.rglob("*")) == []


def test_a_command_run_outside_the_gateways_directory_names_the_file_it_looked_for(tmp_path: Path) -> None:
    """`keys rotate` (or `audit verify`) typed in the home directory, with the default data directory
    `var` under it, answered only "run `grassroots db upgrade`", which would have made a second, empty
    database there. It now names the file it looked for and says to run it from the gateway's directory."""
    elsewhere = tmp_path / "home" / "var"
    result = _run(elsewhere, "keys", "rotate")
    _assert_refused_as_unmigrated(result, "none")
    zh, en = result.stderr.splitlines()
    assert f"数据库文件 {elsewhere / 'gateway.db'} 不存在。若网关已在运行，说明本命令不在它的运行目录中" in zh
    assert f"the database file {elsewhere / 'gateway.db'} does not exist. If a gateway is running" in en
    assert not elsewhere.exists()


def test_seed_demo_refuses_a_database_behind_the_code_and_seeds_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    url = f"sqlite:///{data_dir / 'gateway.db'}"
    upgrade(url, "base")  # the file exists, no revision yet
    before = sorted(p.name for p in data_dir.rglob("*"))
    result = _run(data_dir, "seed-demo")
    _assert_refused_as_unmigrated(result, "none")
    after = sorted(p.name for p in data_dir.rglob("*") if not p.name.endswith(("-wal", "-shm")))
    assert after == before  # no keys/, no *.gateway-credentials, no seeded rows' side files


def test_seed_demo_on_a_migrated_database_still_seeds(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    upgrade(f"sqlite:///{data_dir / 'gateway.db'}")
    result = _run(data_dir, "seed-demo")
    assert result.exit_code == 0, result.stderr
    assert "civil-affairs-registry approved" in result.stdout


@pytest.mark.parametrize("command", OFFLINE_DATABASE_COMMANDS)
def test_offline_commands_refuse_a_database_behind_the_code_and_make_no_key(
    tmp_path: Path, command: list[str]
) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    upgrade(f"sqlite:///{data_dir / 'gateway.db'}", "base")
    result = _run(data_dir, *command)
    _assert_refused_as_unmigrated(result, "none")
    assert not (data_dir / "keys").exists() and not (data_dir / "checkpoints").exists()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    "command", [["db", "current"], ["db", "upgrade"], ["serve", "--port", "1"], *OFFLINE_DATABASE_COMMANDS]
)
def test_an_unreachable_database_is_exit_2_named_without_credentials(
    tmp_path: Path, command: list[str]
) -> None:
    """Not exit 1 (for `audit verify`, tampering) and not a traceback: a monitoring job tells them apart."""
    port = _closed_port()
    data_dir = tmp_path / "var"
    url = f"postgresql+psycopg://auditor:s3cret-pw@127.0.0.1:{port}/gateway?password=s3cret-q"
    result = _run(data_dir, *command, database_url=url)
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    zh, en = result.stderr.splitlines()
    shown = f"postgresql+psycopg://127.0.0.1:{port}/gateway"
    assert zh.startswith(f"无法连接数据库 {shown}（OperationalError）：") and "GRASSROOTS_DATABASE_URL" in zh
    assert en.startswith(f"cannot reach the database at {shown} (OperationalError): ")
    assert "GRASSROOTS_DATABASE_URL" in en
    # What happened, before the general advice: nothing listens there.
    assert "该地址和端口上没有数据库在监听（连接被拒绝）。请确认" in zh
    assert "nothing listens at that host and port (connection refused); check" in en
    for secret in ("auditor", "s3cret"):
        assert secret not in result.stderr
    assert not data_dir.exists()  # no key, no key ring, no checkpoint directory


@pytest.mark.parametrize(
    "command", [["db", "upgrade"], ["serve", "--port", "1"], ["audit", "verify", "--quiet"]]
)
def test_a_password_with_an_unencoded_at_sign_is_named_as_such_and_never_shown(
    tmp_path: Path, command: list[str]
) -> None:
    """`postgresql+psycopg://gw:p@ss-secret@host/db`: the URL is cut at the first "@", so the message showed
    the rest of the password as part of the host (`postgresql+psycopg://ss-secret@127.0.0.1:…/gateway`)
    and told the operator to check that the server runs. It now shows the host alone and says to write the
    "@" as %40."""
    port = _closed_port()
    url = f"postgresql+psycopg://gwlogin7:p@ss-secret@127.0.0.1:{port}/gateway"
    result = _run(tmp_path / "var", *command, database_url=url)
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    zh, en = result.stderr.splitlines()
    shown = f"postgresql+psycopg://127.0.0.1:{port}/gateway"
    assert zh.startswith(f"无法连接数据库 {shown}（") and "含有 @ 字符" in zh and "%40" in zh
    assert en.startswith(f"cannot reach the database at {shown} (") and "percent-encoded as %40" in en
    assert "ss-secret" not in result.stderr and "gwlogin7" not in result.stderr


@pytest.mark.postgres
@pytest.mark.parametrize("wrong", ["username", "database"])
def test_a_login_the_server_refuses_is_told_to_check_role_password_and_database(
    tmp_path: Path, wrong: str
) -> None:
    """A mistyped login role, password or database name reaches a running server, which refuses it: the
    message said only to check that the database runs and its host and port, sending the operator the wrong
    way. It now names what in GRASSROOTS_DATABASE_URL to check, still without the credentials."""
    from sqlalchemy.engine import make_url

    from tests.stack import postgres_base_url

    base = postgres_base_url()
    if base is None:
        pytest.skip("GRASSROOTS_TEST_POSTGRES_URL not set")
    typo = {"username": "gr_no_such_role_x9", "database": "gr_no_such_database_x9"}[wrong]
    url = make_url(base).set(**{wrong: typo}, password="s3cret-pw").render_as_string(hide_password=False)
    result = _run(tmp_path / "var", "serve", "--port", "1", database_url=url)
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    zh, en = result.stderr.splitlines()
    assert "核对 GRASSROOTS_DATABASE_URL 中的登录角色、密码和数据库名" in zh
    assert "the login role, password and database name in GRASSROOTS_DATABASE_URL" in en
    assert "s3cret" not in result.stderr and (wrong == "database" or typo not in result.stderr)
    # Which of them the server refused, said first (all of them were named alike, so the operator checked
    # the server's address too): the login role, or the database.
    said_zh, said_en = {
        "username": (
            "服务器拒绝了登录：该登录角色不存在。",
            "the server refused the login: no such login role; ",
        ),
        "database": ("服务器答复：该数据库不存在", "the server says this database does not exist"),
    }[wrong]
    assert said_zh in zh and said_en in en


def test_db_current_on_a_fresh_data_directory_says_unmigrated_and_creates_nothing(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    result = _run(fresh, "db", "current")
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert f"database: none  code: {head_revision()}" in result.stdout
    assert "`grassroots db upgrade`" in result.stdout
    assert not fresh.exists()  # asking did not make an empty gateway.db (nor its directory)


@pytest.mark.parametrize("command", [["db", "current"], ["db", "upgrade"], *OFFLINE_DATABASE_COMMANDS])
def test_a_file_that_is_not_a_database_is_exit_2_without_a_traceback(
    tmp_path: Path, command: list[str]
) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    (data_dir / "gateway.db").write_bytes(b"not a database, perhaps a half-copied backup\n" * 100)
    result = _run(data_dir, *command)
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    zh, en = result.stderr.splitlines()
    assert zh.startswith(f"无法连接数据库 sqlite:///{data_dir / 'gateway.db'}（DatabaseError）：")
    assert en.startswith("cannot reach the database at ")
    assert sorted(p.name for p in data_dir.iterdir()) == ["gateway.db"]


def test_db_current_and_upgrade_on_a_migrated_database(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    assert _run(data_dir, "db", "upgrade").exit_code == 0
    result = _run(data_dir, "db", "current")
    assert result.exit_code == 0, result.stderr
    assert f"database: {head_revision()}  code: {head_revision()}" in result.stdout
    assert "db upgrade" not in result.stdout


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("postgres://ops:s3cret-pw@127.0.0.1/gateway", "postgres"),  # libpq's alias, not SQLAlchemy's
        ("mysql://ops:s3cret-pw@127.0.0.1/gateway", "mysql"),
        ("postgresql+psycopg2://ops:s3cret-pw@127.0.0.1/gateway", "postgresql+psycopg2"),  # not installed
    ],
)
@pytest.mark.parametrize("command", [["db", "current"], ["db", "upgrade"], ["serve", "--port", "1"]])
def test_a_database_url_of_another_kind_is_exit_2_naming_the_supported_ones(
    tmp_path: Path, command: list[str], url: str, scheme: str
) -> None:
    """An operator used to psql writes postgres://…: a message naming what works, not a traceback."""
    data_dir = tmp_path / "var"
    result = _run(data_dir, *command, database_url=url)
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    zh, en = result.stderr.splitlines()
    assert zh.startswith(f"配置有误：GRASSROOTS_DATABASE_URL 的协议 {scheme} 不受支持")
    assert "postgresql+psycopg://user@host/db" in zh
    assert en.startswith(f"configuration error: GRASSROOTS_DATABASE_URL has the scheme {scheme}, ")
    for secret in ("ops", "s3cret"):
        assert secret not in result.stderr
    assert not data_dir.exists()


def test_db_upgrade_says_what_it_did(tmp_path: Path) -> None:
    """An operator reads whether `db upgrade` migrated (from which revision) or found nothing to do; both
    used to print the same line."""
    head = head_revision()
    first = _run(tmp_path, "db", "upgrade")
    assert first.exit_code == 0, first.output
    assert (
        f"数据库结构已迁移：空库 -> {head}" in first.stdout
        and f"database migrated: empty -> {head}" in first.stdout
    )
    again = _run(tmp_path, "db", "upgrade")
    assert again.exit_code == 0, again.output
    assert "无需迁移" in again.stdout and f"database already at the current schema ({head})" in again.stdout


def _at_revision(url: str, revision: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    engine.dispose()


@pytest.mark.parametrize(
    "command", [["serve", "--port", "1"], ["db", "upgrade"], ["db", "current"], *OFFLINE_DATABASE_COMMANDS]
)
def test_a_database_a_newer_release_migrated_is_named_so_not_sent_to_db_upgrade(
    tmp_path: Path, command: list[str]
) -> None:
    """An operator who rolled the code back (or restored a newer release's database) was told by `serve`
    and `db current` to run `grassroots db upgrade`, which then said it did not know the revision. Each
    command now says the database is ahead of the code and to run the newer release."""
    data_dir = tmp_path / "var"
    assert _run(data_dir, "db", "upgrade").exit_code == 0
    _at_revision(f"sqlite:///{data_dir / 'gateway.db'}", "0999")
    result = _run(data_dir, *command)
    assert result.exit_code == (0 if command == ["db", "current"] else 2), (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    words = result.stdout if command == ["db", "current"] else result.stderr
    assert f"数据库的结构版本 0999 不是本版本代码所知的版本（本版本最高为 {head_revision()}）" in words
    assert (
        "The database schema is at revision 0999, which this code does not know "
        f"(it goes up to {head_revision()})" in words
    )
    assert "尚未迁移" not in words and "请运行 `grassroots db upgrade` 迁移数据库" not in words


@pytest.mark.postgres
@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["db", "current"], ["audit", "verify"]])
def test_a_login_role_without_the_readme_grants_is_told_to_grant_not_to_check_the_network(
    tmp_path: Path, command: list[str]
) -> None:
    """A fresh or restored database, or a `db upgrade` not followed by the README's grants: the gateway's
    login reaches the server but may not read a table. The message said to check that the database runs
    and its host and port; it now says the login role lacks the grants and where they are."""
    base = postgres_base_url()
    if base is None:
        pytest.skip("GRASSROOTS_TEST_POSTGRES_URL not set")
    role = f"gr_nogrant_{uuid.uuid4().hex[:10]}"  # cluster-wide: unique, dropped afterwards
    admin = sa.create_engine(make_url(base), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
    try:
        with throwaway_postgres(base) as owner_url:
            upgrade(owner_url)
            url = make_url(owner_url).set(username=role, password="s3cret-pw")
            result = _run(tmp_path / "var", *command, database_url=url.render_as_string(hide_password=False))
            assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
            zh, en = result.stderr.splitlines()
            assert (
                zh.startswith("已连接数据库 ") and "登录角色无权读取网关的表（InsufficientPrivilege）" in zh
            )
            assert "README「PostgreSQL deployment」中的 GRANT 语句" in zh and "端口" not in zh
            assert "may not read the gateway's tables (InsufficientPrivilege)" in en
            assert "s3cret" not in result.stderr and role not in result.stderr
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {role}")
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def live_and_snapshot(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, object]]:
    """The live database's URL and a function that snapshots it, returning the snapshot's URL."""
    if request.param == "sqlite":
        live = tmp_path / "gateway.db"

        def snapshot_sqlite() -> str:
            shutil.copyfile(live, tmp_path / "backup.db")
            return f"sqlite:///{tmp_path / 'backup.db'}"

        yield f"sqlite:///{live}", snapshot_sqlite
        return
    base = postgres_base_url()
    if base is None:
        pytest.skip("GRASSROOTS_TEST_POSTGRES_URL not set")
    admin = sa.create_engine(make_url(base), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    snapshot_name = f"gr_snap_{uuid.uuid4().hex[:12]}"
    with throwaway_postgres(base) as live_url:

        def snapshot_postgres() -> str:
            with admin.connect() as conn:
                conn.exec_driver_sql(
                    f'CREATE DATABASE "{snapshot_name}" TEMPLATE "{make_url(live_url).database}"'
                )
            return make_url(live_url).set(database=snapshot_name).render_as_string(hide_password=False)

        try:
            yield live_url, snapshot_postgres
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{snapshot_name}" WITH (FORCE)')
            admin.dispose()


def test_serve_refuses_a_database_older_than_the_latest_signed_checkpoint(
    tmp_path: Path, live_and_snapshot: tuple[str, object]
) -> None:
    """Walked as an operator: pg_dump, more reads and a checkpoint, then pg_restore of the dump. `audit
    verify` said the log was shorter than a signed checkpoint, but `serve` started and served on the restored
    log, giving new events the lost ones' sequence numbers; the only other sign was a log line every
    checkpoint interval. `serve` now refuses, exit 2, naming the checkpoint, both sizes and what to do. The
    restored copy: a SQLite file copy, or on PostgreSQL a database made from the live one as its template."""
    live, snapshot = live_and_snapshot
    data_dir = tmp_path / "var"
    assert _run(data_dir, "db", "upgrade", database_url=live).exit_code == 0
    assert (
        _run(data_dir, "audit", "checkpoint", database_url=live).exit_code == 0
    )  # signed, and recorded as an event
    restored = snapshot()  # type: ignore[operator]
    for _ in range(2):  # the log moves on past the backup, and a checkpoint signs that
        assert _run(data_dir, "audit", "checkpoint", database_url=live).exit_code == 0
    signed = sorted((data_dir / "checkpoints").glob("checkpoint-*.json"))[-1].name
    held = int(sorted((data_dir / "checkpoints").glob("checkpoint-*.json"))[0].name.split("-")[1]) + 1

    with socket.socket() as taken:  # were it to start, it would stop at the port (not serve on)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = _run(data_dir, "serve", "--port", str(taken.getsockname()[1]), database_url=restored)
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    zh, en = result.stderr.splitlines()
    assert zh.startswith(f"网关未启动：数据库中的审计日志只有 {held} 条事件，")
    assert f"签名检查点 {signed} 记载日志已有 {held + 1} 条" in zh and "grassroots audit verify" in zh
    assert en.startswith(f"the gateway did not start: the database's audit log holds {held} events, ")
    assert f"the signed checkpoint {signed} in the checkpoint directory (GRASSROOTS_CHECKPOINT_DIR)" in en
    # audit verify says the same from the log's side (the check serve's message sends the operator to).
    verified = _run(data_dir, "audit", "verify", database_url=restored)
    assert verified.exit_code == 1 and "log_shorter_than_checkpoint" in verified.stderr


def _keys_a_gateway_makes(data_dir: Path) -> None:
    """The development key files a gateway makes on its first start in ``data_dir``."""
    from gateway.keys import audit_hmac_key, load_masking_keyring
    from gateway.settings import Settings

    settings = Settings(data_dir=data_dir)
    load_masking_keyring(settings)
    audit_hmac_key(settings)


@pytest.mark.parametrize(
    ("command", "ring"),
    [(["keys", "rotate"], "masking-keyring.json"), (["keys", "rotate-audit-ref"], "audit-ref-keys.json")],
)
def test_a_key_rotation_tells_the_operator_to_copy_the_ring_to_every_host(
    tmp_path: Path, command: list[str], ring: str
) -> None:
    """The rotated ring is a file on the host the command ran on; a gateway on another host, restarted with
    its old copy, cannot open what the new key wrote. `keys rotate` said nothing of what came next (its help
    said to restart), `rotate-audit-ref` only to restart. Both now name the file to copy to every host and
    how to restart the workers of `serve --workers N` one at a time."""
    data_dir = tmp_path / "var"
    assert _run(data_dir, "db", "upgrade").exit_code == 0
    _keys_a_gateway_makes(data_dir)
    result = _run(data_dir, *command)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    zh, en = result.stdout.splitlines()
    path = data_dir / "keys" / ring
    assert f"请把 {path} 复制到每台运行网关的主机（同一份文件），再重启所有网关" in zh and "kill -HUP" in zh
    assert f"Copy {path} to every host running the gateway (the same file), then restart every gateway" in en
    assert "kill -HUP" in en


@pytest.mark.parametrize(
    ("command", "ring", "what"),
    [
        (["keys", "rotate"], "masking-keyring.json", "masking key ring"),
        (["keys", "rotate-audit-ref"], "audit-ref-keys.json", "audit ref key ring"),
    ],
)
def test_a_key_rotation_run_outside_the_gateways_data_directory_is_refused(
    tmp_path: Path, command: list[str], ring: str, what: str
) -> None:
    """GRASSROOTS_DATA_DIR defaults to `var` under the current directory: an operator who ran `keys rotate`
    from the home directory got "rotated: k1 -> k2" and a `keys.rotated` event in the audit log, while a new
    ring (in development, a new KEK and HMAC key too) was made there and the gateways' ring was untouched;
    copying that ring to every host, as told, would have lost the keys that open what was masked before.
    With no ring where the command looks (and, for audit refs, no key a gateway made there), it now refuses,
    exit 2, naming the absolute path it looked at; nothing is made or recorded."""
    gateway_dir = tmp_path / "srv" / "var"
    database = f"sqlite:///{tmp_path / 'gateway.db'}"
    assert _run(gateway_dir, "db", "upgrade", database_url=database).exit_code == 0
    _keys_a_gateway_makes(gateway_dir)
    elsewhere = tmp_path / "home" / "var"
    result = _run(elsewhere, *command, database_url=database)
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    zh, en = result.stderr.splitlines()
    assert zh.startswith(f"密钥未轮换：{elsewhere / 'keys' / ring} 处没有") and "未写入审计日志" in zh
    assert en.startswith(f"key not rotated: there is no {what} at {elsewhere / 'keys' / ring}.")
    assert f"this command uses {elsewhere}" in en and "Nothing was changed or recorded" in en
    assert not elsewhere.exists()
    engine = sa.create_engine(database)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM audit_events").scalar() == 0
    engine.dispose()
    # In the gateway's directory the same rotation goes through.
    assert _run(gateway_dir, *command, database_url=database).exit_code == 0


def _serve_with_checkpoint_dir(data_dir: Path, checkpoint_dir: Path) -> Result:
    env = {
        "GRASSROOTS_DATA_DIR": str(data_dir),
        "GRASSROOTS_DEV_IDP_ENABLED": "true",
        "GRASSROOTS_DATABASE_URL": None,
        "GRASSROOTS_CHECKPOINT_DIR": str(checkpoint_dir),
    }
    with socket.socket() as taken:  # were it let through, it stops at the port instead of serving
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        return runner.invoke(grassroots, ["serve", "--port", str(taken.getsockname()[1])], env=env)


def test_serve_refuses_a_checkpoint_directory_that_is_not_the_logs(tmp_path: Path) -> None:
    """`serve` with GRASSROOTS_CHECKPOINT_DIR mistyped (or a new, empty mount) started, and its periodic
    checkpoints quietly began a second chain in the new directory, while the log records checkpoints signed
    into the real one. It now refuses, exit 2, naming the event and the directory; nothing is made."""
    data_dir = tmp_path / "var"
    assert _run(data_dir, "db", "upgrade").exit_code == 0
    assert _run(data_dir, "audit", "checkpoint").exit_code == 0  # signed, and recorded as event 1
    elsewhere = tmp_path / "mnt" / "checkpoints"
    result = _serve_with_checkpoint_dir(data_dir, elsewhere)
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    zh, en = result.stderr.splitlines()
    assert zh.startswith(
        "网关未启动：日志记载第 1 号事件签发过检查点（audit.checkpoint_written），但检查点目录 "
    )
    assert f"{elsewhere}（GRASSROOTS_CHECKPOINT_DIR）不存在" in zh
    assert en.startswith("the gateway did not start: the log records a checkpoint being signed (event 1")
    assert not elsewhere.exists()


async def test_a_log_signed_only_by_periodic_checkpoints_still_refuses_a_mistyped_directory(
    tmp_path: Path,
) -> None:
    """A log whose checkpoints were all written by `serve`'s periodic round (the usual deployment)
    recorded no signing, so a mistyped GRASSROOTS_CHECKPOINT_DIR looked like a fresh install: `serve`
    started a second chain there. The chain's first periodic checkpoint is now recorded (once), and the
    same `serve` refuses."""
    from audit import EventQuery, query_events
    from gateway.settings import Settings
    from gateway.supervision_tasks import checkpoint_round
    from gateway.wiring import build_runtime, close_runtime

    data_dir = tmp_path / "var"
    assert _run(data_dir, "db", "upgrade").exit_code == 0
    runtime = build_runtime(Settings(data_dir=data_dir, dev_idp_enabled=True))
    try:
        signer, since = checkpoint_round(runtime, None, None)  # the chain's first: recorded
        signer, since = checkpoint_round(runtime, signer, since)  # signs that event: not recorded
        signer, since = checkpoint_round(runtime, signer, since)  # nothing new: nothing signed
        (event,) = query_events(runtime.engine, EventQuery(kind="audit.checkpoint_written")).items
    finally:
        await close_runtime(runtime)
    assert event.seq == 1 and event.actor == "system" and event.details["scheduled"] is True
    assert event.details["tree_size"] == 0
    assert len(list((data_dir / "checkpoints").glob("checkpoint-*.json"))) == 2  # sizes 0 and 1
    elsewhere = tmp_path / "mnt" / "checkpoints"
    result = _serve_with_checkpoint_dir(data_dir, elsewhere)
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert result.stderr.startswith(
        "网关未启动：日志记载第 1 号事件签发过检查点（audit.checkpoint_written），但检查点目录 "
    )
    assert not elsewhere.exists()
