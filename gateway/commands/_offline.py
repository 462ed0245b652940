"""What the commands that use the database themselves (``db current``/``upgrade``, ``audit
verify``/``checkpoint``, ``keys rotate``, ``supervise prefix-verify`` and ``archive-verify``, ``seed-demo``,
``serve``, ``demo``) check before they act, so that a failure is a message and exit 2, never a traceback,
and never leaves a database file or a key behind.

Exit 2 means "nothing was done / nothing verified": a monitoring job must be able to tell an unreachable
database or a missing key from a log that is not intact (exit 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from sqlalchemy.engine import URL

    from gateway.settings import Settings


def require_migrated(settings: Settings) -> None:
    """Refuse (exit 2, Chinese first) unless the database can be reached and is at the code's schema
    revision; nothing is created on the way (:func:`gateway.db.ensure_migrated_url`)."""
    from gateway.db import DatabaseNotMigrated, ensure_migrated_url

    url = database_url(settings)
    try:
        ensure_migrated_url(url)
    except DatabaseNotMigrated as exc:  # DatabaseUnreachable included, with its own words
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def database_url(settings: Settings) -> str:
    """``GRASSROOTS_DATABASE_URL`` (or the data directory's SQLite file), or exit 2 when it is not a database
    URL at all."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    url = settings.effective_database_url
    try:
        parsed = make_url(url)
    except ArgumentError:
        # The URL itself is never printed: it may carry the database password.
        typer.echo(
            "配置有误：GRASSROOTS_DATABASE_URL 不是有效的 SQLAlchemy 数据库地址"
            "（例如 postgresql+psycopg://user@host/db）。\n"
            "configuration error: GRASSROOTS_DATABASE_URL is not a valid SQLAlchemy database URL "
            "(e.g. postgresql+psycopg://user@host/db)",
            err=True,
        )
        raise typer.Exit(2) from None
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS or not _driver_loads(parsed):
        # `postgres://` (libpq's alias, dropped by SQLAlchemy), `mysql://` or a driver not installed here
        # would otherwise end in a traceback from create_engine. Only the scheme is named, never the URL.
        typer.echo(
            f"配置有误：GRASSROOTS_DATABASE_URL 的协议 {parsed.drivername} 不受支持：网关只支持 PostgreSQL"
            "（postgresql+psycopg://user@host/db）和 SQLite（sqlite:///path/gateway.db）。\n"
            f"configuration error: GRASSROOTS_DATABASE_URL has the scheme {parsed.drivername}, which the "
            "gateway does not support: use PostgreSQL (postgresql+psycopg://user@host/db) or SQLite "
            "(sqlite:///path/gateway.db)",
            err=True,
        )
        raise typer.Exit(2)
    return url


#: The databases the gateway runs on (``gateway.db.make_engine``; ``postgresql://`` means psycopg there).
SUPPORTED_BACKENDS = frozenset({"postgresql", "sqlite"})


def _driver_loads(parsed: URL) -> bool:
    """Whether SQLAlchemy knows the URL's dialect and its driver is installed (``postgresql+psycopg2``
    is a dialect SQLAlchemy knows, with a driver this install does not have)."""
    from sqlalchemy.exc import NoSuchModuleError

    if parsed.drivername == "postgresql":  # make_engine reads it as postgresql+psycopg
        return True
    try:
        parsed.get_dialect().import_dbapi()
    except (NoSuchModuleError, ImportError):
        return False
    return True


def read_revision(settings: Settings) -> str | None:
    """The database's schema revision (``None``: not migrated), read without creating anything: a SQLite file
    that does not exist is not migrated, and is neither created nor given its directory by asking. Exit 2
    with :func:`database_lost`'s message when the database cannot be reached or read."""
    from gateway.db import current_revision, make_engine, missing_sqlite_file

    url = database_url(settings)
    if missing_sqlite_file(url):
        return None
    try:
        engine = make_engine(url)
    except OSError as exc:
        database_lost(settings, exc.strerror or type(exc).__name__)
    try:
        return current_revision(engine)
    except Exception as exc:  # down, refused login, not a database file: never a traceback
        database_lost(settings, failure_reason(exc), exc)
    finally:
        engine.dispose()


def migrate(settings: Settings) -> None:
    """Bring the database to the code's schema (``grassroots db upgrade``, ``grassroots demo``), or say why
    not and exit: 2 when it cannot be reached (nothing was done), 1 when the migration itself failed
    (typically a login role that does not own the schema). Never a traceback: the database's own message may
    quote statements and values."""
    from alembic.util import CommandError

    from audit.tables import WRITER_ROLE
    from gateway.db import (
        DatabaseNotMigrated,
        cannot_hand_on_writer_role,
        head_revision,
        make_engine,
        upgrade,
    )

    url = database_url(settings)
    try:
        engine = make_engine(url)
    except OSError as exc:  # a SQLite file whose directory cannot be made
        database_lost(settings, exc.strerror or type(exc).__name__)
    try:
        # Reached first, so "cannot connect" (exit 2) and "the migration failed" (exit 1) are told apart.
        with engine.connect():
            pass
    except Exception as exc:
        database_lost(settings, failure_reason(exc), exc)
    finally:
        engine.dispose()
    try:
        upgrade(url)
    except CommandError:
        # Alembic's words: the database names a revision this code does not know (a newer release).
        typer.echo(str(DatabaseNotMigrated.ahead(read_revision(settings) or "?", head_revision())), err=True)
        raise typer.Exit(2) from None
    except Exception as exc:
        reason = failure_reason(exc)
        if reason == "InsufficientPrivilege" and cannot_hand_on_writer_role(url):
            # The schema's owner that is not a superuser: it may create tables but not the cluster-wide
            # writer role, nor grant it (saying "run it as the owner" to the owner helps nobody).
            typer.echo(
                f"数据库迁移未完成（{reason}）：GRASSROOTS_DATABASE_URL 中的登录角色"
                f"不能创建或授予审计写入角色 {WRITER_ROLE}。"
                f"请由数据库超级用户执行一次 `CREATE ROLE {WRITER_ROLE} NOLOGIN;`"
                f"（已存在则跳过）和 `GRANT {WRITER_ROLE} TO <所有者角色> WITH ADMIN OPTION;`，"
                "再重新运行 grassroots db upgrade（见 README「PostgreSQL deployment」）。未做任何更改。\n"
                f"the migration did not complete ({reason}): the login role in GRASSROOTS_DATABASE_URL "
                f"can neither create nor grant the audit writer role {WRITER_ROLE}; have a database "
                f"superuser run `CREATE ROLE {WRITER_ROLE} NOLOGIN;` (skip it if it exists) and "
                f"`GRANT {WRITER_ROLE} TO <owner role> WITH ADMIN OPTION;` once, then run "
                "`grassroots db upgrade` again (README: PostgreSQL deployment); nothing was changed",
                err=True,
            )
            raise typer.Exit(1) from None
        typer.echo(
            f"数据库迁移未完成（{reason}）：运行 `grassroots db upgrade` 的登录角色须是数据库结构的所有者"
            "（见 README「PostgreSQL deployment」），请用所有者的 GRASSROOTS_DATABASE_URL 重新运行。\n"
            f"the migration did not complete ({reason}): `grassroots db upgrade` must run as the "
            "owner of the schema (README: PostgreSQL deployment); run it again with the owner's "
            "GRASSROOTS_DATABASE_URL",
            err=True,
        )
        raise typer.Exit(1) from None


def failure_reason(exc: BaseException) -> str:
    """What a database failure is called in a message: the driver's exception class (``OperationalError``,
    ``InsufficientPrivilege``), never its text, which may quote a statement, a value or the URL."""
    return type(getattr(exc, "orig", None) or exc).__name__


def database_lost(
    settings: Settings, reason: str = "AuditUnavailable", cause: BaseException | None = None
) -> NoReturn:
    """The database went away after :func:`require_migrated` let the command start: the same message,
    exit 2 (nothing verified or changed), instead of the traceback of ``AuditUnavailable``."""
    from gateway.db import DatabaseUnreachable

    typer.echo(str(DatabaseUnreachable.at(settings.effective_database_url, reason, cause)), err=True)
    raise typer.Exit(2)


def require_writable_directory(directory: Path, variable: str) -> None:
    """Exit 2 unless files can be written in ``directory`` (made by the first write when it does not exist
    yet: then its nearest existing ancestor must take new entries). Checked before a command signs or a
    gateway starts: the gateway otherwise ran without its external checkpoints (each periodic one logged as
    failed, the API's answered 500) and ``audit checkpoint`` ended in a traceback. Leaves nothing behind
    (an unnamed temporary file); the operating system's reason is named, the path too (no secret in it)."""
    import tempfile

    probe = directory
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        if not probe.is_dir():
            raise NotADirectoryError(20, "Not a directory")
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        typer.echo(
            f"无法写入目录 {directory}（{variable}；{probe}：{reason}）：请创建该目录并让运行网关的用户可写"
            f"（例如 install -d -m 700 {directory}），或让 {variable} 指向可写的目录，然后重试。\n"
            f"cannot write to the directory {directory} ({variable}; {probe}: {reason}): create it, writable "
            f"by the user the gateway runs as (e.g. install -d -m 700 {directory}), or point {variable} at a "
            "writable directory, and try again",
            err=True,
        )
        raise typer.Exit(2) from None


def missing_checkpoint_key(
    key_path: Path, *, subject: tuple[str, str], signed: tuple[str, str], hint: tuple[str, str] = ("", "")
) -> NoReturn:
    """Exit 2, nothing verified: there is no checkpoint key to check the signatures with.

    Verifiers only ever load the key: a newly made one could not verify anything signed before, and would
    hide that the real one is lost. ``subject`` is what was not verified, ``signed`` what carries the
    signatures (Chinese, English)."""
    typer.echo(
        f"{subject[0]}未校验：{signed[0]}，但找不到检查点密钥 {key_path}"
        "（GRASSROOTS_CHECKPOINT_KEY_PATH），无法对照其签名校验。尚未校验任何事件；"
        "请把签发它们的密钥或其公钥 PEM 放到该路径，或让 GRASSROOTS_CHECKPOINT_KEY_PATH 指向它"
        f"{hint[0]}，再重新运行（新生成的密钥无法验证它们）。\n"
        f"{subject[1]} NOT verified: {signed[1]} but there is no checkpoint key at {key_path} "
        "(GRASSROOTS_CHECKPOINT_KEY_PATH), so they cannot be checked; no events were checked; put the key "
        "that signed them, or its public key PEM, at that path or point GRASSROOTS_CHECKPOINT_KEY_PATH at "
        f"it{hint[1]}, and run again (a new key cannot verify them)",
        err=True,
    )
    raise typer.Exit(2)


def load_checkpoint_key(
    key_path: Path, *, subject: tuple[str, str], source: str = "GRASSROOTS_CHECKPOINT_KEY_PATH"
) -> Ed25519PublicKey:
    """The public half of the checkpoint key at ``key_path`` (a private or a public PEM), loaded only;
    exit 2, nothing verified, when it cannot be used (the file's own reason, in both languages).
    ``source`` is where the path came from (the setting, or an option), for the message."""
    from audit import CheckpointError, load_public_key

    try:
        return load_public_key(key_path)
    except FileNotFoundError:
        # A mistyped --public-key: the Chinese said "no permission or a read error", which it is not.
        reason_zh, reason_en = "文件不存在，请核对路径", "no such file: check the path"
    except IsADirectoryError:
        reason_zh, reason_en = (
            "这是一个目录，请给出其中的密钥文件",
            "it is a directory: give the key file in it",
        )
    except OSError as exc:
        reason_zh, reason_en = "没有读取权限或读取出错", exc.strerror or type(exc).__name__
    except CheckpointError as exc:
        reason_zh, reason_en = exc.message_zh, exc.message_en
    typer.echo(
        f"{subject[0]}未校验：检查点密钥 {key_path}（{source}）无法使用：{reason_zh}。"
        "尚未校验任何事件；请让该设置指向签发检查点的 Ed25519 密钥或其公钥 PEM（当前用户可读），"
        "再重新运行。\n"
        f"{subject[1]} NOT verified: the checkpoint key {key_path} ({source}) "
        f"cannot be used: {reason_en}; no events were checked; point that setting at the Ed25519 key that "
        "signs the checkpoints, or its public key PEM, readable by this user, and run again",
        err=True,
    )
    raise typer.Exit(2)
