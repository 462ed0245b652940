"""Database engines and the migration gate.

SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL`` so a committed audit event survives
a power cut; PostgreSQL runs with ``synchronous_commit=on``, and appends audit events as the
insert/select-only ``grassroots_audit_writer`` role (:func:`audit.use_writer_role`). Alembic is the only way
the schema changes; the app refuses to start on a database that is not at the head revision, or (PostgreSQL)
whose login role cannot become the audit writer.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from audit import use_writer_role, writer_role

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_log = logging.getLogger(__name__)
#: Seconds to wait for a PostgreSQL connection (libpq ``connect_timeout``) unless the URL says otherwise.
PG_CONNECT_TIMEOUT_S = 10


class DatabaseNotMigrated(Exception):
    """The database schema is missing or behind (or cannot be read); ``str()`` says how to fix it, Chinese
    first, then English, on two lines."""

    def __init__(self, message_zh: str, message_en: str) -> None:
        super().__init__(f"{message_zh}\n{message_en}")
        self.message_zh = message_zh
        self.message_en = message_en

    @classmethod
    def behind(cls, current: str | None, head: str | None) -> DatabaseNotMigrated:
        return cls(
            f"数据库尚未迁移到当前版本（现为 {current or '无'}，代码需要 {head}）：请先运行 "
            "`grassroots db upgrade`（使用相同的 GRASSROOTS_DATA_DIR / GRASSROOTS_DATABASE_URL），然后重试。",
            f"The database schema is at revision {current or 'none'}, the code needs {head}: run "
            "`grassroots db upgrade` (same GRASSROOTS_DATA_DIR / GRASSROOTS_DATABASE_URL) and try again.",
        )

    @classmethod
    def ahead(cls, current: str, head: str | None) -> DatabaseNotMigrated:
        """A revision no migration of this code names: a newer release migrated the database (or a newer
        release's backup was restored). ``db upgrade`` cannot help, and running older code on a newer schema
        would write rows the newer code does not expect; the fix is the release that knows the revision."""
        return cls(
            f"数据库的结构版本 {current} 不是本版本代码所知的版本（本版本最高为 {head}），"
            "可能已由更新版本的网关迁移过：请改用相同或更新版本的网关"
            "（`grassroots db upgrade` 无法降级，也不要手工修改 alembic_version）。",
            f"The database schema is at revision {current}, which this code does not know (it goes up to "
            f"{head}); a newer gateway release has probably migrated it: run that release or a later one "
            "(`grassroots db upgrade` cannot go back, and alembic_version must not be edited by hand).",
        )


class DatabaseUnreachable(DatabaseNotMigrated):
    """The database cannot be reached or read at all (down, wrong host or port, refused login, not a
    database file); ``str()`` names it without credentials, Chinese first, then English, on two lines.

    A kind of :class:`DatabaseNotMigrated` (whose schema cannot be read), so every start-up check that
    refuses an unmigrated database refuses this one too; the command line tells the two apart, because
    "cannot reach it" and "reached it, schema behind" call for different fixes."""

    @classmethod
    def at(cls, url: str | URL, reason: str, cause: BaseException | None = None) -> DatabaseUnreachable:
        """``cause``: the driver's exception, from which what the server or the network said is told in
        a few words of this code's own (never its text, which names the login role)."""
        shown = url_without_credentials(url)
        if _unencoded_at(url):
            # ``user:p@ss@host``: the URL is cut at the first "@", so the rest of the password was taken
            # for the host name (and shown as one). Said as what it is, the password never repeated.
            return cls(
                f"无法连接数据库 {shown}（{reason}）：GRASSROOTS_DATABASE_URL 中的密码（或登录角色）"
                "含有 @ 字符，须按 URL 编码写成 %40（其中的 : / ? # % 也要编码，例如 python3 -c "
                "'import urllib.parse,getpass; print(urllib.parse.quote(getpass.getpass(), safe=\"\"))'），"
                "否则 @ 之后的部分会被当作主机名；改好后重试。",
                f"cannot reach the database at {shown} ({reason}): the password (or login role) in "
                "GRASSROOTS_DATABASE_URL holds an @, which must be percent-encoded as %40 (and : / ? # % "
                "too, e.g. python3 -c 'import urllib.parse,getpass; print(urllib.parse.quote("
                'getpass.getpass(), safe=""))\'), or what follows it is taken for the host name; fix it, '
                "then try again",
            )
        if reason == "InsufficientPrivilege":
            # Reached and logged in, but refused a table: the grants the owner gives the gateway's login
            # after each upgrade are missing (new tables, a fresh or restored database). "Check that it is
            # running, host and port" sent the operator the wrong way.
            return cls(
                f"已连接数据库 {shown}，但 GRASSROOTS_DATABASE_URL 中的登录角色无权读取网关的表"
                f"（{reason}）：每次运行 grassroots db upgrade 之后（以及新建或恢复数据库之后），"
                "都要由表的所有者把表授权给网关的登录角色（README「PostgreSQL deployment」中的 GRANT 语句），"
                "然后重试。",
                f"reached the database at {shown}, but the login role in GRASSROOTS_DATABASE_URL may not "
                f"read the gateway's tables ({reason}): after every `grassroots db upgrade` (and after "
                "creating or restoring the database) the tables' owner grants them to the gateway's login "
                "role (the GRANT statements in README: PostgreSQL deployment); do that, then try again",
            )
        said_zh, said_en = _connection_failure(cause)
        return cls(
            f"无法连接数据库 {shown}（{reason}）：{said_zh}请确认数据库已启动、地址和端口正确、本机可以访问，"
            "并核对 GRASSROOTS_DATABASE_URL 中的登录角色、密码和数据库名，然后重试。",
            f"cannot reach the database at {shown} ({reason}): {said_en}check that it is running, that host "
            "and port are right and reachable from here, and the login role, password and database name in "
            "GRASSROOTS_DATABASE_URL, then try again",
        )


# What libpq (psycopg) says when a connection fails, as the operator's next step: the server answered
# that the database or the login does not exist, or nothing answered at all. Matched on libpq's and the
# server's English words (a localised server falls back to the general advice alone).
_CONNECTION_FAILURES = (
    (
        ('database "', "does not exist"),
        "服务器答复：该数据库不存在（数据库名写错，或尚未按 README 创建）。",
        "the server says this database does not exist (a typo in its name, or not created yet); ",
    ),
    (
        ('role "', "does not exist"),
        "服务器拒绝了登录：该登录角色不存在。",
        "the server refused the login: no such login role; ",
    ),
    (
        ("authentication failed",),
        "服务器拒绝了登录：密码不对，或该角色不能用这种方式登录。",
        "the server refused the login: a wrong password, or this role may not sign in this way; ",
    ),
    (
        ("no pg_hba.conf entry",),
        "服务器拒绝了登录：其 pg_hba.conf 不允许本机以该角色登录该数据库。",
        "the server refused the login: its pg_hba.conf does not let this role in from here; ",
    ),
    (
        ("Connection refused",),
        "该地址和端口上没有数据库在监听（连接被拒绝）。",
        "nothing listens at that host and port (connection refused); ",
    ),
    (
        ("failed to resolve host",),
        "找不到该主机名。",
        "the host name does not resolve; ",
    ),
    (
        ("timeout expired",),
        "连接超时。",
        "the connection timed out; ",
    ),
)


def _connection_failure(cause: BaseException | None) -> tuple[str, str]:
    """What the failed connection said, in a sentence of each language, or nothing when it is not known."""
    if cause is None:
        return "", ""
    text = str(getattr(cause, "orig", None) or cause)
    for needles, said_zh, said_en in _CONNECTION_FAILURES:
        if all(needle in text for needle in needles):
            return said_zh, said_en
    return "", ""


def url_without_credentials(url: str | URL) -> str:
    """The database URL as a message may show it: no user name, no password, no query (where a driver
    may take a password too); a URL that cannot be parsed is not shown at all."""
    try:
        parsed = make_url(url)
    except Exception:
        return "GRASSROOTS_DATABASE_URL"
    # A password holding an unencoded "@" is cut at its first "@": the rest was parsed as part of the host.
    host = parsed.host.rpartition("@")[2] if parsed.host else parsed.host
    # Built anew: URL.set() takes None as "leave unchanged".
    shown = URL.create(parsed.drivername, host=host, port=parsed.port, database=parsed.database)
    return shown.render_as_string(hide_password=False)


def _unencoded_at(url: str | URL) -> bool:
    """Whether ``url``'s host holds an "@": the user name or password holds one not written as %40."""
    try:
        return "@" in (make_url(url).host or "")
    except Exception:
        return False


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
        engine = create_engine(
            parsed,
            hide_parameters=True,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            connect_args={
                "options": "-c synchronous_commit=on -c timezone=UTC",
                # An unreachable server is an error within seconds (a refused request, a CLI exit 2), not
                # a hang until the operating system gives up; ``?connect_timeout=`` in the URL wins.
                **({} if "connect_timeout" in parsed.query else {"connect_timeout": PG_CONNECT_TIMEOUT_S}),
            },
        )
        use_writer_role(engine)
        return engine
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


def ahead_of_code(current: str | None, head: str | None) -> bool:
    """Whether the database's revision ``current`` is one no migration of this code names (a newer release
    migrated it: :meth:`DatabaseNotMigrated.ahead`), rather than behind ``head`` or at it."""
    if current is None or current == head:
        return False
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    try:
        return script.get_revision(current) is None
    except CommandError:  # no such revision here
        return True


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def ensure_migrated(engine: Engine, *, warn_if_owner: bool = True) -> None:
    """Refuse to run on an unmigrated or outdated schema (:class:`DatabaseNotMigrated`), or on a database
    that cannot be reached (:class:`DatabaseUnreachable`), saying exactly how to fix it. ``warn_if_owner``:
    log :func:`ensure_audit_writer`'s warning about an owner login (the server's start; a command-line
    check would print it before every command's own output)."""
    head = head_revision()
    try:
        current = current_revision(engine)
    except Exception as exc:  # the database itself is unreachable
        reason = type(getattr(exc, "orig", None) or exc).__name__
        raise DatabaseUnreachable.at(engine.url, reason, exc) from None
    if current is not None and ahead_of_code(current, head):
        raise DatabaseNotMigrated.ahead(current, head)
    if current != head:
        raise DatabaseNotMigrated.behind(current, head)
    ensure_audit_writer(engine, warn_if_owner=warn_if_owner)


# What the writer role must be able to do for an append (audit.log.AuditLog._write); SELECT ... FOR UPDATE
# on the head needs UPDATE. No sequences: seqs are computed under the head lock.
_WRITER_NEEDS = (
    ("audit_events", "SELECT"),
    ("audit_events", "INSERT"),
    ("audit_subject_refs", "INSERT"),
    ("audit_head", "SELECT"),
    ("audit_head", "INSERT"),
    ("audit_head", "UPDATE"),
)


def ensure_audit_writer(engine: Engine, *, warn_if_owner: bool = True) -> None:
    """On PostgreSQL, refuse to start unless this login role can ``SET ROLE`` to the audit writer and that
    role can append: otherwise every request would answer 503 (the log fails closed), found only at the
    first read. Warns when the login role owns ``audit_events``: an owner can drop the triggers, so the
    writer role is then a guard against bugs, not against the gateway's own credentials (README:
    PostgreSQL deployment). One short transaction, rolled back."""
    role = writer_role(engine)
    if engine.dialect.name != "postgresql" or role is None:
        return
    checks = " AND ".join(f"has_table_privilege('{t}', '{p}')" for t, p in _WRITER_NEEDS)
    try:
        with engine.connect() as conn:
            owner = conn.exec_driver_sql(
                "SELECT pg_has_role(current_user, tableowner, 'USAGE') FROM pg_tables "
                "WHERE tablename = 'audit_events' AND schemaname = ANY (current_schemas(false))"
            ).scalar()
            conn.exec_driver_sql(f"SET LOCAL ROLE {role}")
            able = conn.exec_driver_sql(f"SELECT {checks}").scalar()
            conn.rollback()
    except Exception as exc:  # not a member (or the role is missing): SET ROLE is refused
        # Said in the refusal below, not logged: a command's stderr began with this English log line,
        # before the Chinese-first message it duplicated.
        failure: str | None = type(getattr(exc, "orig", None) or exc).__name__
        able = False
    else:
        failure = None
        if owner and warn_if_owner:
            _log.warning(
                "the gateway connects as the owner of audit_events: it could drop the append-only "
                "triggers; connect as a login role that is a member of %s and not the owner (README)",
                role,
            )
    if not able:
        raise DatabaseNotMigrated(
            f"数据库登录角色无法以审计写入角色 {role} 追加审计事件{f'（{failure}）' if failure else ''}："
            "请由数据库所有者执行 "
            f"`GRANT {role} TO <网关登录角色>`，并运行 `grassroots db upgrade`"
            "（见 README「PostgreSQL deployment」）。",
            f"the database login role cannot append audit events as {role}"
            f"{f' ({failure})' if failure else ''}: as the database owner run "
            f"`GRANT {role} TO <gateway login role>` and `grassroots db upgrade` (README: PostgreSQL "
            "deployment).",
        )


def cannot_hand_on_writer_role(url: str) -> bool:
    """Whether the login role of ``url`` (PostgreSQL) lacks what ``grassroots db upgrade`` needs for the
    audit writer role: creating it when the cluster has none yet (CREATEROLE), and granting it to itself
    (0010) and later to the gateway's login (README SQL), which needs ADMIN OPTION on it (or, before
    PostgreSQL 16, CREATEROLE). A superuser has both. False when that cannot be told (nothing to add), and
    for a login that may not create tables in the schema at all (the gateway's login, say): it is not the
    owner, and "run it as the owner" is what it needs to hear, not the superuser's statements."""
    from audit.tables import WRITER_ROLE

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.exec_driver_sql(
                "SELECT me.rolsuper, me.rolcreaterole, w.oid IS NOT NULL, "
                "w.oid IS NOT NULL AND pg_has_role(current_user, w.oid, 'MEMBER WITH ADMIN OPTION'), "
                "current_setting('server_version_num')::int, "
                "has_schema_privilege(current_schema(), 'CREATE') "
                "FROM pg_roles me LEFT JOIN pg_roles w ON w.rolname = %(role)s "
                "WHERE me.rolname = current_user",
                {"role": WRITER_ROLE},
            ).one()
    except Exception:
        return False
    finally:
        engine.dispose()
    superuser, createrole, exists, admin, version, creates_tables = row
    if superuser or not creates_tables:
        return False
    if not exists:
        return not createrole
    return not (admin or (createrole and version < 160000))


def missing_sqlite_file(url: str) -> bool:
    """Whether ``url`` names a SQLite file that does not exist yet (connecting to it would create it)."""
    parsed = make_url(url)
    database = parsed.database
    local_file = parsed.get_backend_name() == "sqlite" and database not in (None, "", ":memory:")
    return local_file and not Path(str(database)).exists()


def ensure_migrated_url(url: str) -> None:
    """:func:`ensure_migrated` for a database URL, creating nothing on the way: a SQLite file that does not
    exist yet is unmigrated, and is neither created by connecting to it to ask nor given its directory."""
    if missing_sqlite_file(url):
        # No file at all is also what a command run from another directory sees (GRASSROOTS_DATA_DIR is
        # relative to it, `var` by default): `db upgrade` there would make a second, empty database.
        head, where = head_revision(), Path(str(make_url(url).database)).resolve()
        raise DatabaseNotMigrated(
            f"数据库尚未迁移到当前版本（现为 无，代码需要 {head}）：数据库文件 {where} 不存在。"
            "若网关已在运行，说明本命令不在它的运行目录中："
            "请回到那里（GRASSROOTS_DATA_DIR 相对于当前目录，默认 var），"
            "或设置与网关相同的 GRASSROOTS_DATA_DIR / GRASSROOTS_DATABASE_URL，再重试；"
            "新部署则先运行 `grassroots db upgrade`。",
            f"The database schema is at revision none, the code needs {head}: the database file {where} "
            "does not exist. If a gateway is running, this command is not in its directory: go there "
            "(GRASSROOTS_DATA_DIR is relative to the current directory, var by default) or set the "
            "gateway's GRASSROOTS_DATA_DIR / GRASSROOTS_DATABASE_URL, and try again; for a new "
            "installation, run `grassroots db upgrade` first.",
        )
    engine = make_engine(url)
    try:
        ensure_migrated(engine, warn_if_owner=False)
    finally:
        engine.dispose()
