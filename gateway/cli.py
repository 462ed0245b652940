"""The ``grassroots`` command line."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shlex
import signal
import stat
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import typer

from gateway.commands._client import load_settings, require_dev_key, unknown_demo_user
from gateway.commands._help import HelpTyper, bilingual
from gateway.commands._offline import (
    database_lost,
    load_checkpoint_key,
    migrate,
    missing_checkpoint_key,
    read_revision,
    require_migrated,
    require_writable_directory,
)
from gateway.commands._usage import BilingualGroup, audit_ref_key_id
from gateway.commands.supervision import DryRunOption, ThroughMonthOption, ThroughSeqOption
from gateway.settings import DEFAULT_HOST, DEFAULT_PORT, ConfigurationError, Settings

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from audit import Checkpoint, CheckpointSigner, PseudonymRing, RestoreAlreadyAccepted, RestorePlan
    from gateway.keys import RingIdentity, StagedKeyFile
    from masking import KeyRing
    from policies import PolicyFileError

app = HelpTyper(
    help=bilingual(
        "基层数据网关：部门业务系统与村（居）委会之间的数据访问网关，按场景授权、脱敏，并留下防篡改的审计记录。"
        "各命令用法见 grassroots 命令 --help。",
        "Grassroots Data Gateway: data access between departmental systems and village committees, "
        "scenario-scoped, masked and recorded in a tamper-evident audit log. See grassroots COMMAND --help.",
    ),
    # Click's own usage errors (missing option, no such option, bad value) in Chinese first, English kept.
    cls=BilingualGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # never print locals (they may hold keys or tokens)
    # Click's own help layout for every command (the groups below inherit it): typer's Rich panels show a
    # type column for every option, a flag included (`--quiet <bool>`, `--help <bool>`), as if it took a
    # value; Click's layout writes a flag as the flag alone (`--quiet`, `--dry-run / --execute`).
    rich_markup_mode=None,
)
db_app = HelpTyper(
    help=bilingual("数据库结构（Alembic 迁移）。", "Database schema (Alembic migrations)."),
    no_args_is_help=True,
)
audit_app = HelpTyper(
    help=bilingual("防篡改审计日志：校验、签发检查点、归档与清理。", "The tamper-evident audit log."),
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")
keys_app = HelpTyper(
    help=bilingual(
        "脱敏数据密钥和审计引用密钥的轮换。脱敏数据密钥由主密钥 KEK 加密保存；"
        "审计引用密钥用于审计日志中的居民引用和记录引用。",
        "Masking data keys (envelope keys under the KEK) and the audit log's resident/record ref keys.",
    ),
    no_args_is_help=True,
)
app.add_typer(audit_app, name="audit")
app.add_typer(keys_app, name="keys")


def _add_area_commands() -> None:
    from gateway.commands import admission, grants, masking, policy, sessions, supervision

    # Each group's help is its own module's (Chinese first, English after).
    app.add_typer(grants.app, name="grants")
    app.add_typer(policy.app, name="policy")
    app.add_typer(masking.app, name="masking")
    app.add_typer(supervision.app, name="supervise")
    app.add_typer(admission.app, name="admission")
    app.add_typer(sessions.app, name="sessions")
    # Retention acts also live under `grassroots audit` (same API client, same permission checks).
    audit_app.command("archive")(supervision.archive)
    audit_app.command("prune")(supervision.prune)


_add_area_commands()


#: Seconds a ``serve --workers N`` worker has to answer the supervisor's ping (uvicorn's default is 5).
WORKER_HEALTHCHECK_TIMEOUT_S = 60


def _settings() -> Settings:
    """The settings, or exit 2 naming each environment variable that is wrong (Chinese, then English)."""
    return load_settings()


def _check_area_settings() -> None:
    """The supervision and admission areas read their own ``GRASSROOTS_`` variables when the app starts;
    checked here, before anything listens, so a wrong one is a message naming it (exit 2), not a traceback
    from inside the server."""
    from pydantic import ValidationError
    from pydantic_settings import BaseSettings, SettingsError

    from gateway.admission_settings import AdmissionSettings
    from gateway.settings import configuration_error
    from gateway.supervision_tasks import SupervisionSettings

    area: type[BaseSettings]
    for area in (SupervisionSettings, AdmissionSettings):
        try:
            area()
        except (ValidationError, SettingsError) as exc:
            prefix = str(area.model_config.get("env_prefix") or "GRASSROOTS_")
            typer.echo(configuration_error(exc, prefix).bilingual(), err=True)
            raise typer.Exit(2) from None


def _check_policy_files(settings: Settings) -> None:
    """The policy files the gateway loads when it starts (GRASSROOTS_POLICY_MODEL_PATH,
    GRASSROOTS_PERMISSIONS_PATH, GRASSROOTS_SCENARIOS_PATH), read and validated before anything listens:
    a missing or invalid one is the file's own message, Chinese then English, exit 2, instead of a
    traceback from inside the server ("Application startup failed", exit 3)."""
    from policies import PolicyFileError
    from policies.permissions import load_permissions
    from policies.scenarios import load_scenarios

    try:
        load_permissions(settings.policy_model_path, settings.permissions_path)
        load_scenarios(settings.scenarios_path)
    except PolicyFileError as exc:
        _refuse_an_unreadable_policy_file(settings, exc)
        typer.echo(
            "策略文件有误，网关未启动（GRASSROOTS_POLICY_MODEL_PATH、GRASSROOTS_PERMISSIONS_PATH、"
            f"GRASSROOTS_SCENARIOS_PATH）：\n  {exc.path}:{exc.line}: {exc.message_zh}\n"
            "the gateway did not start: a policy file is wrong (GRASSROOTS_POLICY_MODEL_PATH, "
            f"GRASSROOTS_PERMISSIONS_PATH, GRASSROOTS_SCENARIOS_PATH):\n  {exc}",
            err=True,
        )
        raise typer.Exit(2) from None


def _refuse_an_unreadable_policy_file(settings: Settings, exc: PolicyFileError) -> None:
    """A policy file a setting names that cannot be read at all (missing, a directory, not UTF-8): named by
    its one variable, with the reason in both languages, as the data files are. It was "a policy file is
    wrong" naming all three variables, with the exception's class name (FileNotFoundError) as the reason."""
    cause = exc.__cause__
    if exc.line != 0 or not isinstance(cause, (OSError, UnicodeDecodeError)):
        return
    named = {
        "GRASSROOTS_POLICY_MODEL_PATH": settings.policy_model_path,
        "GRASSROOTS_PERMISSIONS_PATH": settings.permissions_path,
        "GRASSROOTS_SCENARIOS_PATH": settings.scenarios_path,
    }
    variable = next((v for v, path in named.items() if path is not None and str(path) == exc.path), None)
    if variable is None:
        return
    if isinstance(cause, UnicodeDecodeError):
        zh, en = "不是 UTF-8 编码的文本", "not UTF-8 text"
    else:
        zh = en = cause.strerror or type(cause).__name__
    typer.echo(
        f"无法读取 {variable} 指定的策略文件 {exc.path}（{zh}）：请核对路径（相对路径从当前目录算起）和权限，"
        "或不设置该变量以使用随附的文件，然后重试。\n"
        f"cannot read the policy file {exc.path} that {variable} names ({en}): check the path (a relative "
        "one starts from the current directory) and its permissions, or unset the variable for the shipped "
        "file, and try again",
        err=True,
    )
    raise typer.Exit(2)


def _require_configured_files() -> None:
    """Each data file a setting names must be there and readable before the gateway starts: read only when
    first asked for, a missing one answered every anomaly query, monthly report or burden view with 500
    internal_error (logged as FileNotFoundError) while the gateway looked healthy."""
    from gateway.admission_settings import AdmissionSettings
    from gateway.supervision_tasks import SupervisionSettings

    area, admission = SupervisionSettings(), AdmissionSettings()
    for variable, path in (
        ("GRASSROOTS_ANOMALY_RULES_PATH", area.anomaly_rules_path),
        ("GRASSROOTS_DIVISION_NAMES_FILE", area.division_names_file),
        ("GRASSROOTS_ADMISSION_CONFIG_PATH", admission.config_path),
        ("GRASSROOTS_ADMISSION_VILLAGES_FILE", admission.villages_file),
        ("GRASSROOTS_HOLIDAYS_FILE", area.holidays_file),
    ):
        if path is None:
            continue
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            typer.echo(
                f"无法读取 {variable} 指定的文件 {path}（{reason}）：请核对路径和权限，"
                "或不设置该变量以使用默认值，然后重试。\n"
                f"cannot read the file {path} that {variable} names ({reason}): check the path and its "
                "permissions, or unset the variable for the default, and try again",
                err=True,
            )
            raise typer.Exit(2) from None
    if area.holidays_file is not None:
        # A schedule that cannot be read whole would refuse every complaint (no deadline is counted
        # without it): refused here instead, before the gateway looks healthy.
        from audit import HolidayFileError, work_calendar

        try:
            work_calendar(area.holidays_file)
        except HolidayFileError as exc:
            typer.echo(f"{exc.message_zh}\n{exc.message_en}", err=True)
            raise typer.Exit(2) from None


def _require_production_key_files(settings: Settings) -> None:
    """In production the signing keys are the operator's files: one missing is refused (exit 2), never made.

    Made silently, a mistyped path gave the gateway a new service key (refused by every departmental system)
    or a new checkpoint key (checkpoints no verifier with the real key accepts, a second host's differing
    from the first's). The path is named, never the key."""
    from gateway.admission_settings import system_token_key_path

    if settings.mode.value != "production":
        return
    for variable, path in (
        ("GRASSROOTS_SERVICE_KEY_PATH", settings.effective_service_key_path),
        ("GRASSROOTS_CHECKPOINT_KEY_PATH", settings.effective_checkpoint_key_path),
        # Made by the first token request otherwise: each host its own key, so a departmental system's
        # token issued by one host was refused by the next.
        ("GRASSROOTS_ADMISSION_TOKEN_KEY_PATH", system_token_key_path(settings)),
    ):
        if path.exists():  # a directory or another non-key is named by _load_keys_or_exit, as such
            continue
        typer.echo(
            f"生产模式下找不到密钥文件 {path}（{variable}）：网关在生产模式下不会自行生成密钥"
            "（路径写错时会悄悄换成一把新密钥）。请核对路径；首次部署时生成它："
            f"`openssl genpkey -algorithm ed25519 -out {path} && chmod 600 {path}`，"
            "多台主机共用同一份文件。\n"
            f"no key file at {path} ({variable}) in production mode: the gateway does not make keys in "
            "production (a mistyped path would quietly mean a new key); check the path, or on a first "
            f"install make it: `openssl genpkey -algorithm ed25519 -out {path} && chmod 600 {path}`, "
            "the same file on every host",
            err=True,
        )
        raise typer.Exit(2)


def _require_supervision_directories(settings: Settings) -> None:
    """The directories the gateway writes signed files into: checkpoints (and prune anchors), archives."""
    from gateway.supervision_tasks import SupervisionSettings

    archives = SupervisionSettings().audit_archive_dir or settings.data_dir / "archives"
    require_writable_directory(settings.effective_checkpoint_dir, "GRASSROOTS_CHECKPOINT_DIR")
    require_writable_directory(archives, "GRASSROOTS_AUDIT_ARCHIVE_DIR")


def _check_startup_settings(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """What the gateway needs at start-up, checked before anything listens: a clean message, exit 2.

    The application builds its identity provider from these when it starts; left to then, a missing
    setting surfaces as a traceback from inside the server."""
    try:
        if not settings.oidc_issuers:
            settings.effective_oidc_issuer  # noqa: B018 (raises when no identity provider is configured)
    except ConfigurationError:
        typer.echo(
            "未配置身份提供方：请设置 GRASSROOTS_OIDC_ISSUER（本单位 OIDC 身份提供方的地址）；"
            "仅在开发环境中可改设 GRASSROOTS_DEV_IDP_ENABLED=true，或直接运行 `make demo` 体验演示。\n"
            "No identity provider: set GRASSROOTS_OIDC_ISSUER (your OIDC identity provider's URL); in "
            "development only, set GRASSROOTS_DEV_IDP_ENABLED=true instead, or run `make demo` for the demo.",
            err=True,
        )
        raise typer.Exit(2) from None
    # At the address given here, as the workers will have it: the development IdP's issuer, and so the
    # key of its jurisdiction, follows --host/--port.
    served = settings.model_copy(update={k: v for k, v in (("host", host), ("port", port)) if v})
    try:
        served.trusted_issuers  # noqa: B018 (raises when a jurisdiction names an issuer not trusted)
    except ConfigurationError as problem:
        typer.echo(problem.bilingual(), err=True)
        raise typer.Exit(2) from None


def _served_here(settings: Settings, issuer: str) -> bool:
    """Whether ``issuer`` is the development IdP this very gateway serves at ``/dev-idp`` (on the address
    ``settings`` listen on, or its public URL): it cannot answer before the gateway has started."""
    from ipaddress import ip_address
    from urllib.parse import urlsplit

    if not settings.dev_idp_enabled:
        return False
    parts = urlsplit(issuer)
    if parts.path.rstrip("/") != "/dev-idp" or parts.hostname is None:
        return False
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    public = urlsplit(settings.effective_public_url)
    if (parts.scheme, parts.hostname, port) == (public.scheme, public.hostname, public.port):
        return True

    def loopback(host: str) -> bool:
        try:
            return host == "localhost" or ip_address(host).is_loopback
        except ValueError:
            return False

    if port != settings.port:
        return False
    wildcard = settings.host in ("", "0.0.0.0", "::")
    return parts.hostname == settings.host or (
        loopback(parts.hostname) and (wildcard or loopback(settings.host))
    )


def _check_identity_provider(settings: Settings) -> None:
    """Ask the configured identity provider for its discovery document and key set once before starting, as
    the gateway will at the first sign-in (OpenID Connect Discovery 1.0 §4).

    Started without it, the gateway said nothing until the first signed-in request, which then answered 503
    idp_unavailable; so did one whose key set could not be fetched, or held no key of the accepted algorithms
    (401 unknown_key). A provider that cannot be reached, or answers something else, is a warning: the gateway
    starts and refuses sign-ins (fail closed) until the provider answers, as it would if the provider went
    down later. A document naming another issuer is refused (exit 2): the gateway would refuse every token
    for as long as GRASSROOTS_OIDC_ISSUER says something else (§4.3).

    The development IdP this gateway serves itself is not asked (nothing listens yet: asking it warned that
    it could not be reached); the document it will serve is read from it directly, so a mismatch (a
    trailing / it drops) is still refused."""
    issuers = [(entry["issuer"], "GRASSROOTS_OIDC_ISSUERS") for entry in settings.oidc_issuers]
    if settings.oidc_issuer is not None:  # else the embedded development IdP, served by this gateway itself
        issuers.insert(0, (settings.oidc_issuer, "GRASSROOTS_OIDC_ISSUER"))
    for issuer, variable in issuers:
        _check_one_identity_provider(settings, issuer, variable)


def _check_one_identity_provider(settings: Settings, issuer: str, variable: str) -> None:
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    if _served_here(settings, issuer):
        from gateway.auth.devusers import dev_identity_provider

        _refuse_another_issuer(dev_identity_provider(settings).issuer, issuer, variable, url)
        return
    document, problem = _fetch_idp_document(url)
    if document is not None:
        _refuse_another_issuer(document.get("issuer"), issuer, variable, url)
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            problem = ("发现文档中没有 jwks_uri", "its discovery document names no jwks_uri")
        elif issuer.startswith("https://") and not jwks_uri.startswith("https://"):
            # The verifier refuses it (Discovery 1.0 §7.2: keys over plain http could be replaced on the way),
            # so every sign-in answered 503 idp_unavailable, "try again later", and the start said nothing.
            problem = (
                f"的发现文档所写的密钥集地址 {jwks_uri[:200]} 不是 https 地址，"
                "网关不会经明文获取验证令牌的密钥",
                f"names a key set without TLS ({jwks_uri[:200]}), from which the gateway will not fetch the "
                "keys tokens are checked against: have the provider announce its https:// jwks_uri",
            )
        else:
            # The key set too, as the first sign-in fetches it: a jwks_uri answering 404, or a key set with
            # no key of the accepted algorithms, refused every sign-in while the start said nothing.
            url = jwks_uri
            problem = _key_set_problem(settings, jwks_uri)
    if problem is None:
        return
    typer.echo(
        f"警告：身份提供方 {url}（{variable}）{problem[0]}。网关照常启动，但在此问题解决之前，"
        "它签发的登录凭证都会被拒绝（503 idp_unavailable 或 401 unknown_key）：请检查该地址是否正确、"
        "本机能否访问。\n"
        f"warning: the identity provider at {url} ({variable}) {problem[1]}. The gateway starts, "
        "but refuses every request signed in through it (503 idp_unavailable or 401 unknown_key) until "
        "this is fixed: check the address and that this host can reach it.",
        err=True,
    )


def _fetch_idp_document(url: str) -> tuple[dict[str, Any] | None, tuple[str, str] | None]:
    """GET one of the identity provider's JSON documents as the verifier does (no redirect, 5 s): the
    document, or what went wrong (Chinese, English)."""
    import httpx

    try:
        response = httpx.get(url, timeout=5.0, follow_redirects=False, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        return None, ("无法连接", f"cannot be reached ({type(exc).__name__})")
    if response.status_code != 200:
        return None, (f"返回 HTTP {response.status_code}", f"answered HTTP {response.status_code}")
    try:
        document = response.json()
    except ValueError:
        return None, ("返回的不是 JSON", "did not answer JSON")
    if not isinstance(document, dict):
        return None, ("返回的不是 JSON 对象", "did not answer a JSON object")
    return document, None


def _refuse_another_issuer(named: object, issuer: str, variable: str, url: str) -> None:
    """Exit 2 when the discovery document names another issuer than configured (Discovery 1.0 §4.3)."""
    if named == issuer:
        return
    shown = str(named)[:200]
    typer.echo(
        f"身份提供方的发现文档 {url} 写明的签发者是 {shown}，与 {variable}（{issuer}）"
        f"不一致，网关会拒绝其签发的所有令牌：请把 {variable} 中的地址设为与之完全相同的值"
        "（包括末尾的 /），然后重试。\n"
        f"the identity provider's discovery document {url} names the issuer {shown}, not "
        f"{variable} ({issuer}), so the gateway would refuse every token it issues: set the "
        f"address in {variable} to exactly that value (a trailing / included), and try again",
        err=True,
    )
    raise typer.Exit(2)


def _key_set_problem(settings: Settings, jwks_uri: str) -> tuple[str, str] | None:
    """What keeps the key set at ``jwks_uri`` from verifying any token, as the verifier reads it."""
    from gateway.auth.oidc import signing_keys, usable_keys

    document, problem = _fetch_idp_document(jwks_uri)
    if document is None:
        return problem
    keys = signing_keys(document)
    if keys is None:
        return ("返回的不是 JWK 密钥集（没有 keys 列表）", "is not a JWK Set (no keys list)")
    if not usable_keys(keys, settings.oidc_algorithms):
        accepted = "、".join(settings.oidc_algorithms)
        return (
            f"的密钥集中没有可用于所接受签名算法（{accepted}，GRASSROOTS_OIDC_ALGORITHMS）的签名密钥",
            f"holds no signing key for the accepted algorithms ({', '.join(settings.oidc_algorithms)}, "
            "GRASSROOTS_OIDC_ALGORITHMS)",
        )
    return None


@db_app.command(
    "upgrade",
    zh="把数据库迁移到当前结构版本。以数据库结构所有者的身份，迁移 GRASSROOTS_DATABASE_URL 所指的数据库。",
)
def db_upgrade() -> None:
    """Migrate the database (GRASSROOTS_DATABASE_URL) to the current schema, as the schema's owner."""
    from gateway.db import head_revision

    settings = _settings()
    before = read_revision(settings)  # creates nothing; exit 2 when the database cannot be reached
    migrate(settings)
    head = head_revision()
    if before == head:
        typer.echo(
            f"数据库结构已是最新版本（{head}），无需迁移。\ndatabase already at the current schema ({head})"
        )
    else:
        typer.echo(
            f"数据库结构已迁移：{before or '空库'} -> {head}。\n"
            f"database migrated: {before or 'empty'} -> {head}"
        )


@db_app.command(
    "current",
    zh="显示数据库与代码各自的结构版本。不创建任何东西；数据库无法连接时退出码为 2。",
)
def db_current() -> None:
    """Show the schema revision of the database and of the code (creates nothing; exit 2 when the database
    cannot be reached)."""
    from gateway.db import DatabaseNotMigrated, ahead_of_code, head_revision

    current, head = read_revision(_settings()), head_revision()
    typer.echo(f"数据库结构版本：{current or '无（未迁移）'}  代码所需版本：{head}")
    typer.echo(f"database: {current or 'none'}  code: {head}")
    if current is not None and ahead_of_code(current, head):
        typer.echo(str(DatabaseNotMigrated.ahead(current, head)))
    elif current != head:
        typer.echo("请运行 `grassroots db upgrade` 迁移数据库。\nRun `grassroots db upgrade` to migrate it.")


@app.command(zh="启动网关（数据库未迁移到当前版本时拒绝启动）。")
def serve(
    host: Annotated[
        str | None, typer.Option(help=bilingual("监听地址（默认：GRASSROOTS_HOST）", "bind address"))
    ] = None,
    port: Annotated[
        int | None,
        # A port outside 1-65535 is a usage error (exit 2), not the traceback of the port probe's bind().
        typer.Option(help=bilingual("监听端口（默认：GRASSROOTS_PORT）", "port"), min=1, max=65535),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            help=bilingual(
                "工作进程数（各进程轮询共享状态）", "worker processes (each polls the shared state)"
            ),
            min=1,
        ),
    ] = 1,
) -> None:
    """Run the gateway (refuses to start on an unmigrated database)."""
    import uvicorn

    settings = _settings()
    _check_startup_settings(settings, host, port)
    _check_area_settings()
    _check_policy_files(settings)
    _require_configured_files()
    require_migrated(settings)
    _require_production_key_files(settings)
    _require_supervision_directories(settings)
    # Served with a checkpoint directory that is not the log's (a typo, a new mount), its periodic
    # checkpoints quietly started a second chain there, one nobody verifies against.
    _refuse_a_lost_checkpoint_directory(settings, ("网关未启动", "the gateway did not start"))
    # In development the key is made on first start, never beside checkpoints another key signed.
    _refuse_a_new_key_beside_signed_files(settings, ("网关未启动", "the gateway did not start"))
    # A ring that cannot say which key made a ref is a message here (exit 2), not a traceback in a worker.
    # Last: in development, reading the ring makes its key files, which a refused start must not leave.
    # Read once: a single-process gateway serves with this ring (passed on below).
    audit_refs = _audit_refs_or_exit(settings)
    # Every key a worker loads at start, loaded here first (and, in development, made once before the
    # workers could race to make it): one that cannot be used is a message naming its setting, exit 2.
    # The masking key ring read here is the one a single-process gateway serves with (passed on below).
    keys, made = _load_keys_or_exit(settings)
    _refuse_log_behind_checkpoints(settings)
    for warning in (unbound_ff1_key_warning(keys), unrestricted_issuer_warning(settings)):
        if warning is not None:
            typer.echo(warning, err=True)
    # Each worker process builds its own Settings (and runtime) from the environment, so the address given
    # here must reach it that way: the development IdP's issuer URL is derived from it.
    if host:
        os.environ["GRASSROOTS_HOST"] = host
    if port:
        os.environ["GRASSROOTS_PORT"] = str(port)
    if workers > 1:
        # Each worker must know it is not alone: on SQLite its quota holds then go to the database.
        os.environ["GRASSROOTS_WORKERS"] = str(workers)
    from gateway.serving import (
        CoalescingHttpToolsProtocol,
        answer_or_exit_pings,
        log_config,
        probe_port,
        reuse_port_address,
    )

    bind_host, bind_port = host or settings.host, port or settings.port
    options: dict[str, Any] = dict(
        factory=True,
        host=bind_host,
        port=bind_port,
        workers=workers,
        log_level=settings.log_level.lower(),
        log_config=log_config(settings.log_level),
        access_log=False,
        # uvloop and httptools (uvicorn[standard]) named, not left to "auto": a missing one fails the
        # start instead of quietly serving at a fraction of the speed.
        loop="uvloop",
        http=CoalescingHttpToolsProtocol,
        # uvicorn's supervisor kills a worker that has not answered its ping within this many seconds and
        # starts another. A worker answers only once its interpreter is up and the CLI imported (spawned,
        # not forked), which on a busy host took longer than uvicorn's 5 s: each new worker was killed in
        # turn, for ever, and the gateway ran one worker short.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_TIMEOUT_S,
    )
    try:
        if workers == 1:
            probe_port(bind_host, bind_port)
        else:
            # Each worker listens on its own SO_REUSEPORT socket, so connections spread over the workers
            # (see gateway.serving.ReusePortAddress); uvicorn's supervisor still starts, watches and
            # restarts them.
            config = uvicorn.Config("gateway.app:create_app", **options)
            address = reuse_port_address(bind_host, bind_port, config.backlog)
    except OSError as exc:
        typer.echo(_cannot_listen(bind_host, bind_port, exc), err=True)
        raise typer.Exit(2) from None
    _check_identity_provider(settings.model_copy(update={"host": bind_host, "port": bind_port}))
    # Last, just before serving: the first start on a database records its masking key ring (of two hosts
    # starting at once, one; the other exits 2 here, its new ring removed). A start refused for any reason
    # above records nothing (nor appends to a log restored from an older backup).
    _record_masking_ring_or_exit(settings, keys, made=made)
    if workers == 1:
        # In this process: the app is given the key rings checked above rather than reading them again.
        # Worker processes (spawned, below) each read them once for themselves.
        from gateway.app import create_app

        uvicorn.run(functools.partial(create_app, keys=keys, audit_refs=audit_refs), **options)
        return
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    logging.getLogger("uvicorn.error").info(
        "Uvicorn running on http://%s:%d with %d workers (Press CTRL+C to quit)",
        bind_host,
        address.getsockname()[1],
        workers,
    )
    answer_or_exit_pings()
    supervisor = Multiprocess(config, sockets=[address])
    with address:
        supervisor.run()
    if any(worker.exitcode == STARTUP_FAILURE for worker in supervisor.processes):
        # uvicorn's supervisor stops when a worker fails to start (its reason is logged above) and returns as
        # after a Ctrl+C: exit 0 told systemd (Restart=on-failure) and monitoring that all was well.
        typer.echo(
            "网关的工作进程启动失败（原因见上方日志），网关已停止。\n"
            "a gateway worker failed to start (the log above says why); the gateway stopped",
            err=True,
        )
        raise typer.Exit(STARTUP_FAILURE)


def _cannot_listen(host: str, port: int, exc: OSError) -> str:
    """Why ``serve`` cannot listen, with what to do about that reason: only a port in use is about the
    port; an address this host does not have (or a name that does not resolve) is about --host /
    GRASSROOTS_HOST, and a port below 1024 needs privileges."""
    import errno
    import socket

    where = f"{host}:{port}（{exc.strerror}）", f"{host}:{port} ({exc.strerror})"
    if exc.errno == errno.EADDRINUSE:
        zh = "端口已被占用，请换用 --port 或停止占用它的进程。"
        en = "the port is in use; choose another with --port or stop the process holding it."
    elif exc.errno == errno.EACCES:
        zh = "没有监听该端口的权限（1024 以下的端口需要特权），请换用 --port 1024 以上的端口。"
        en = "no permission to listen on that port (ports below 1024 need privileges); choose 1024 or above."
    elif isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        zh = "本机没有这个地址，请检查 --host 或 GRASSROOTS_HOST（例如 127.0.0.1 或 0.0.0.0）。"
        en = "this host has no such address; check --host or GRASSROOTS_HOST (e.g. 127.0.0.1 or 0.0.0.0)."
    else:
        zh = "请检查 --host、--port（GRASSROOTS_HOST、GRASSROOTS_PORT）。"
        en = "check --host and --port (GRASSROOTS_HOST, GRASSROOTS_PORT)."
    return f"无法监听 {where[0]}：{zh}\nCannot listen on {where[1]}: {en}"


def unbound_ff1_key_warning(ring: KeyRing) -> str | None:
    """What to say at start when the active masking key predates dataset binding (a ring stored before it):
    the ff1_id operator makes nothing under such a key, so those fields are redacted until a rotation. A
    ring made now is bound from its first key."""
    kid = ring.active_key_id
    if ring.is_scoped(kid):
        return None
    return (
        f"警告：当前数据密钥 {kid} 早于“身份证号假名按数据集绑定”，用它生成的假名无法确定所属数据集；"
        "在轮换前，脱敏规则为 ff1_id 的字段一律显示为 ***。请运行 grassroots keys rotate 并重启网关。\n"
        f"warning: the active masking data key {kid} predates dataset binding of ID-number pseudonyms; until "
        "it is rotated, fields masked with ff1_id are redacted (***). Run `grassroots keys rotate` and "
        "restart the gateways."
    )


def unrestricted_issuer_warning(settings: Settings) -> str | None:
    """What to say at a production start while the identity provider may vouch for any organisation: one
    provider misconfigured or taken over could then sign users into every district the platform serves."""
    issuer = settings.primary_oidc_issuer
    if settings.mode.value != "production" or settings.oidc_issuer_jurisdictions or issuer is None:
        return None
    example = "GRASSROOTS_OIDC_ISSUER_JURISDICTIONS='" + json.dumps({issuer: ["310151"]}) + "'"
    return (
        f"警告：未设置 GRASSROOTS_OIDC_ISSUER_JURISDICTIONS，身份提供方 {issuer} 签发的登录凭证"
        "无论声称哪个地区的组织都会被接受。请把它限定在本平台服务的区划代码内，"
        f"例如 {example}（区划代码按实际填写）。\n"
        f"warning: GRASSROOTS_OIDC_ISSUER_JURISDICTIONS is not set: tokens of the identity provider {issuer} "
        "are accepted whatever organisation they name, in any district. Restrict it to the division codes "
        f"this platform serves, e.g. {example} (with your own codes)."
    )


def masking_keys_or_exit(settings: Settings, *, record: bool = True) -> KeyRing:
    """The masking key ring (made on first use), or exit 2 naming GRASSROOTS_MASKING_KEK: a KEK that does
    not open the ring (another host's, or changed since) ended in a traceback. Also exit 2 for a ring that
    is not the one the database records (another deployment's, a copy from before a rotation, one made here
    while another host made the recorded one): it masked residents under other keys than the other hosts,
    and nothing noticed until an unmask failed. Where the database records none yet, this ring is recorded
    (``record``; ``keys rotate`` records the rotated ring instead)."""
    return _opened_masking_keys_or_exit(settings, offline_actor() if record else None)[0]


def _record_masking_ring_or_exit(settings: Settings, ring: KeyRing, *, made: bool) -> None:
    """Record ``ring`` as the one in use where the database records none yet (exit 2 when another host's
    was recorded since it was checked): ``serve`` does so only once the database is known not to be an
    older copy of the log (a start must not append to a log that forked from what was signed)."""
    from audit import AuditUnavailable
    from gateway.keys import KeyFileError, settle_masking_ring

    try:
        settle_masking_ring(settings, ring, made=made, record_as=offline_actor())
    except AuditUnavailable:
        database_lost(settings)
    except KeyFileError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def _opened_masking_keys_or_exit(settings: Settings, record_as: str | None) -> tuple[KeyRing, bool]:
    """:func:`masking_keys_or_exit`, and whether the ring was made here; recorded as ``record_as``."""
    from audit import AuditUnavailable
    from gateway.keys import KeyFileError, masking_keyring_path, open_masking_keyring, settle_masking_ring
    from masking import KeyRingError, KeyRingMalformed

    try:
        ring, made = open_masking_keyring(settings)
        settle_masking_ring(settings, ring, made=made, record_as=record_as)
        return ring, made
    except AuditUnavailable:
        database_lost(settings)
    except KeyFileError as exc:  # the development KEK file: lost, unreadable, open to others, not a key
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    except KeyRingMalformed:
        # No KEK opens a truncated or edited file: "set GRASSROOTS_MASKING_KEK" sent the operator after the
        # wrong thing. Not to be replaced by a new ring either: that one opens nothing masked before.
        path = masking_keyring_path(settings)
        typer.echo(
            f"无法使用脱敏数据密钥环 {path}：文件不是本版本能读取的密钥环"
            "（被截断、改动过，或由更新版本写入）。请从备份恢复该文件（各主机用同一份），然后重试；"
            "不要删除它另建新密钥环，新密钥环打不开以前脱敏的数据。\n"
            f"cannot use the masking key ring {path}: the file is not a key ring this release reads "
            "(truncated, edited, or written by a newer release). Restore it from a backup (every host: the "
            "same copy) and try again; do not delete it for a new ring, which would open nothing masked "
            "before",
            err=True,
        )
        raise typer.Exit(2) from None
    except KeyRingError as exc:
        path = masking_keyring_path(settings)
        typer.echo(
            f"无法使用脱敏数据密钥环 {path}（GRASSROOTS_MASKING_KEK）：{exc.message_zh}。"
            "请让 GRASSROOTS_MASKING_KEK 与生成该密钥环时的值相同（多台主机用同一个值和同一份密钥环文件），"
            "然后重试。\n"
            f"cannot use the masking key ring {path} (GRASSROOTS_MASKING_KEK): {exc.message_en}; set "
            "GRASSROOTS_MASKING_KEK to the value the ring was made with (every host: the same value and the "
            "same copy of the ring), and try again",
            err=True,
        )
        raise typer.Exit(2) from None


def _refuse_log_behind_checkpoints(settings: Settings) -> None:
    """Exit 2 when the database holds fewer audit events than the latest signed checkpoint in the external
    checkpoint directory says the log had: a database restored from an older backup (or a lost tail).

    Served on, the gateway gave new events the sequence numbers of the lost ones, so the log forked from
    what was signed: every later checkpoint was refused (a log line every interval), and only `audit
    verify` said why. One count and one signed file, not a walk of the log (``audit verify`` does that).
    A checkpoint that does not verify is left to ``audit verify`` and the periodic checkpoint's alarm."""
    from audit import AuditLog, CheckpointError, CheckpointSigner, latest_checkpoint_file
    from gateway.db import make_engine

    directory = settings.effective_checkpoint_dir
    try:
        signer = CheckpointSigner.load_or_create(settings.effective_checkpoint_key_path)
        found = latest_checkpoint_file(directory, signer.public_key) if directory.is_dir() else None
    except CheckpointError:
        return
    if found is None:
        return
    checkpoint, name = found
    engine = make_engine(settings.effective_database_url, pool_size=1)
    try:
        size = AuditLog(engine).size()
    finally:
        engine.dispose()
    if size >= checkpoint.tree_size:
        return
    typer.echo(
        f"网关未启动：数据库中的审计日志只有 {size} 条事件，而检查点目录（GRASSROOTS_CHECKPOINT_DIR）中的"
        f"签名检查点 {name} 记载日志已有 {checkpoint.tree_size} 条：数据库可能是从较旧的备份恢复的，"
        "或日志尾部丢失。继续运行会让新事件占用已丢失事件的序号，此后无法再签发检查点。"
        "请运行 grassroots audit verify 查看详情，把数据库和检查点目录各复制一份留作证据，"
        "并报告本单位数据安全负责人和监督部门。如恢复备份是有意为之且已报告，"
        '运行 grassroots audit accept-restore --reason "…" 记录丢失的事件后再启动'
        "（不要移动或删除检查点文件）。\n"
        f"the gateway did not start: the database's audit log holds {size} events, but the signed "
        f"checkpoint {name} in the checkpoint directory (GRASSROOTS_CHECKPOINT_DIR) says the log had "
        f"{checkpoint.tree_size}: the database was probably restored from an older backup, or its tail was "
        "lost. Served on, new events would take the lost ones' sequence numbers and no checkpoint could be "
        "signed again. Run `grassroots audit verify` for the details, copy the database and the checkpoint "
        "directory as evidence, and report to your data security officer and the supervisory office. If the "
        'restore was deliberate and has been reported, run `grassroots audit accept-restore --reason "..."` '
        "to record the lost events, then start again (do not move or delete the checkpoint files)",
        err=True,
    )
    raise typer.Exit(2)


class KeyFileTooOpen(Exception):
    """A private key file others on the host may read (group or world bits), as the checkpoint key's own
    check refuses (audit.CheckpointSigner): whoever reads the service key can call departmental systems as
    the gateway, whoever reads the token key can mint any system's access token."""

    def __init__(self, path: Path, mode: int) -> None:
        super().__init__(
            f"private key file mode is {mode:o}, readable by other users of this host; "
            f"restrict it to 600 (chmod 600 {path})"
        )
        self.message_zh = f"私钥文件权限为 {mode:o}，本机其他用户也能读取，请改为 600（chmod 600 {path}）"


def _owner_only(load: Callable[[Path], object]) -> Callable[[Path], object]:
    """``load``, refusing first a key file that exists with group or world permission bits."""

    def checked(path: Path) -> object:
        if path.is_file():
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                raise KeyFileTooOpen(path, mode)
        return load(path)

    return checked


def _load_keys_or_exit(settings: Settings) -> tuple[KeyRing, bool]:
    """Load every key the gateway reads when it starts, making the missing ones in development, so that a
    key file that cannot be used (not a PEM Ed25519 key, unreadable, a checkpoint key others may read) is a
    message naming its setting and the file, exit 2, instead of a traceback from the CLI or a worker.
    Returns the masking key ring, read once here and passed on (checked against the database, not yet
    recorded: :func:`_record_masking_ring_or_exit`), and whether it was made here."""
    from audit import CheckpointError, CheckpointSigner
    from gateway.admission_settings import system_token_key_path
    from gateway.upstream import load_or_create_ed25519

    # The audit-ref key (in development audit-hmac.key) was read by `serve` just before, with its ring.
    ring, made = _opened_masking_keys_or_exit(settings, record_as=None)
    token_key = system_token_key_path(settings)
    loaders: tuple[tuple[str, Path | None, Callable[[Path], object]], ...] = (
        (
            "GRASSROOTS_SERVICE_KEY_PATH",
            settings.effective_service_key_path,
            _owner_only(load_or_create_ed25519),
        ),
        (
            "GRASSROOTS_CHECKPOINT_KEY_PATH",
            settings.effective_checkpoint_key_path,
            CheckpointSigner.load_or_create,
        ),
        # Made by the first request for a system token (race-free across workers): only checked here.
        (
            "GRASSROOTS_ADMISSION_TOKEN_KEY_PATH",
            token_key if token_key.exists() else None,
            _owner_only(load_or_create_ed25519),
        ),
    )
    for variable, path, load in loaders:
        if path is None:
            continue
        try:
            load(path)
        except (CheckpointError, KeyFileTooOpen) as exc:
            reason_zh, reason_en = exc.message_zh, str(exc)
        except OSError as exc:
            reason_zh = reason_en = exc.strerror or type(exc).__name__
        except (ValueError, TypeError):  # not a PEM private key, or not an Ed25519 one
            reason_zh, reason_en = "不是 PEM 格式的 Ed25519 私钥", "not a PEM Ed25519 private key"
        else:
            continue
        typer.echo(
            f"密钥文件 {path}（{variable}）无法使用：{reason_zh}。请让 {variable} 指向运行网关的用户可读、"
            "权限为 600 的 Ed25519 私钥（生成：openssl genpkey -algorithm ed25519 -out 文件 && "
            "chmod 600 文件），然后重试。\n"
            f"the key file {path} ({variable}) cannot be used: {reason_en}; point {variable} at an Ed25519 "
            "private key readable by the user the gateway runs as, mode 600 (make one: openssl genpkey "
            "-algorithm ed25519 -out FILE && chmod 600 FILE), and try again",
            err=True,
        )
        raise typer.Exit(2)
    if settings.dev_idp_enabled:
        from gateway.auth.devusers import dev_identity_provider

        dev_identity_provider(settings).jwks()
    return ring, made


@app.command("dev-users", zh="列出演示用户（用户名、岗位、所属单位区划代码）。")
def dev_users(
    as_json: Annotated[bool, typer.Option("--json", help=bilingual("以 JSON 输出", "print JSON"))] = False,
) -> None:
    """The demo identities (username, role, organisation code)."""
    from gateway.auth.devusers import dev_users as load

    users = load()
    if as_json:
        typer.echo(json.dumps(users, ensure_ascii=False, indent=2))
        return
    # Columns as wide as their longest entry: a fixed 18 pushed national_supervisor's row out of line.
    name_width = max((len(u["username"]) for u in users), default=0)
    role_width = max((len(u["role"]) for u in users), default=0)
    for user in users:
        grids = f"  grids {','.join(user['grids'])}" if user.get("grids") else ""
        typer.echo(
            f"{user['username']:<{name_width}}  {user['role']:<{role_width}}  {user['org']}  "
            f"{user['display_name']}{grids}"
        )


@app.command(
    "dev-token",
    zh="""由内置的开发用身份提供方为演示用户签发访问令牌并输出。

    令牌的签发者随 GRASSROOTS_HOST/GRASSROOTS_PORT（或 GRASSROOTS_PUBLIC_URL）而定，与网关一致。

    用 `grassroots demo --port 8300` 启动演示后，请先 export GRASSROOTS_PORT=8300
    （否则会得到 401 wrong_issuer）。""",
)
def dev_token(
    username: Annotated[
        str, typer.Argument(help=bilingual("演示用户名（见 grassroots dev-users）", "a demo user's name"))
    ],
    audience: Annotated[
        str | None, typer.Option(help=bilingual("令牌受众（audience）", "token audience"))
    ] = None,
    ttl: Annotated[
        int | None,
        typer.Option(
            help=bilingual(
                "有效期（秒，默认 3600，不超过 GRASSROOTS_OIDC_MAX_TOKEN_LIFETIME_S）",
                "lifetime in seconds (default 3600, at most GRASSROOTS_OIDC_MAX_TOKEN_LIFETIME_S)",
            ),
            min=1,
        ),
    ] = None,
) -> None:
    """Print an access token for a demo user from the embedded development identity provider.

    Its issuer follows GRASSROOTS_HOST/GRASSROOTS_PORT (or GRASSROOTS_PUBLIC_URL), as the gateway's does.

    After `grassroots demo --port 8300`, export GRASSROOTS_PORT=8300 first (else: 401 wrong_issuer)."""
    from gateway.auth.devidp import DevIdentityProviderForbiddenError, UnknownDevUserError
    from gateway.auth.devusers import dev_identity_provider

    settings = _settings()
    if not settings.dev_idp_enabled:
        settings = settings.model_copy(update={"dev_idp_enabled": True})
    try:
        idp = require_dev_key(dev_identity_provider(settings), username)
        longest = settings.oidc_max_token_lifetime_s
        if ttl is not None and ttl > longest:
            typer.echo(
                f"--ttl 不能超过 {longest} 秒（GRASSROOTS_OIDC_MAX_TOKEN_LIFETIME_S）：网关拒绝有效期更长的"
                "登录凭证（token_lifetime_too_long）。\n"
                f"--ttl may be at most {longest} s (GRASSROOTS_OIDC_MAX_TOKEN_LIFETIME_S): the gateway "
                "refuses longer-lived tokens (token_lifetime_too_long)",
                err=True,
            )
            raise typer.Exit(2)
        typer.echo(idp.mint(username, audience or settings.oidc_audience, ttl_s=ttl or idp.token_ttl_s))
    except DevIdentityProviderForbiddenError:
        typer.echo(
            "生产模式下不提供开发用身份提供方。\n"
            "the development identity provider is never available in production mode",
            err=True,
        )
        raise typer.Exit(2) from None
    except UnknownDevUserError:
        raise unknown_demo_user(username) from None


@audit_app.command(
    "verify",
    zh="""校验整个审计日志（哈希链、Merkle 根、最新的签名检查点）。

    日志被破坏时退出码为 1。以下情况退出码为 2，且未校验任何事件：数据库无法连接或尚未迁移；
    检查点密钥无法读取，或已有签名检查点而密钥缺失；
    日志记载签发过检查点却找不到任何签名检查点（未与检查点核对的日志不能算作校验通过）。""",
)
def audit_verify(
    checkpoints: Annotated[
        Path | None,
        typer.Option(help=bilingual("检查点目录（默认：GRASSROOTS_CHECKPOINT_DIR）", "checkpoint directory")),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", help=bilingual("不显示进度条", "no progress bar"))
    ] = False,
) -> None:
    """Verify the whole audit log (hash chain, Merkle root, latest signed checkpoint). Exit 1 when broken;
    exit 2, nothing verified, when the database cannot be reached or is not migrated, when the checkpoint
    key is unreadable, or missing while signed checkpoints exist, or when no signed checkpoint is found
    although the log records one being signed (a log not checked against them must not read as verified)."""
    from audit import AuditUnavailable, verify_log
    from audit.checkpoints import holds_checkpoints
    from gateway.db import make_engine

    settings = _settings()
    # First, and creating nothing: a fresh data directory gets no empty gateway.db, an unreachable
    # database is exit 2 with a message (not a traceback and exit 1, which reads as tampering).
    require_migrated(settings)
    directory = checkpoints or settings.effective_checkpoint_dir
    key_path = settings.effective_checkpoint_key_path
    public_key = _checkpoint_key_for_verify(key_path, directory)
    engine = make_engine(settings.effective_database_url)
    progress_state = {"last": 0.0}

    def progress(done: int, total: int) -> None:
        if quiet or not sys.stderr.isatty():
            return
        now = time.monotonic()
        if done == total or now - progress_state["last"] > 0.1:
            progress_state["last"] = now
            width = 30
            filled = int(width * done / total) if total else width
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
            sys.stderr.flush()

    use_checkpoints = public_key is not None and directory.is_dir()
    try:
        if not holds_checkpoints(directory):
            _refuse_when_the_log_records_a_checkpoint(engine, directory)
        report = verify_log(
            engine,
            checkpoint_dir=directory if use_checkpoints else None,
            public_key=public_key if use_checkpoints else None,
            progress=progress,
        )
    except AuditUnavailable:
        database_lost(settings)
    finally:
        engine.dispose()
    if not quiet and sys.stderr.isatty():
        sys.stderr.write("\n")
    # Why the log was not checked against a signed checkpoint, when it was not (said, never silent).
    if public_key is None:  # a fresh install: no key and nothing signed yet
        no_checkpoint = (
            "  没有签名检查点（也还没有检查点密钥）：只校验了哈希链与 Merkle 树"
            "（整库重写或恢复旧备份也能通过）；运行 grassroots audit checkpoint 签发一个。",
            "  no signed checkpoint (and no checkpoint key yet): only the hash chain and Merkle tree were "
            "checked (a rewritten or restored log would pass too); run `grassroots audit checkpoint` "
            "to sign one",
        )
    elif report.checked:
        # A key but no directory: a gateway makes its key when it starts and the directory with its first
        # periodic checkpoint, so a fresh install looks like this for a while and must still pass (exit 0).
        # A directory moved, deleted or configured elsewhere looks the same unless the log records a
        # signing (refused above, exit 2): said as a warning, with both ways out.
        no_checkpoint = (
            f"  警告：检查点目录 {directory}（GRASSROOTS_CHECKPOINT_DIR）不存在，"
            f"日志中也没有签发检查点的记录：这 {report.checked} 条事件从未签入检查点，"
            "只校验了哈希链与 Merkle 树（整库重写或恢复旧备份也能通过）。"
            "如果检查点保存在别处，请让 GRASSROOTS_CHECKPOINT_DIR（或 --checkpoints）指向它后重新运行；"
            "否则运行 grassroots audit checkpoint 签发一个。",
            f"  warning: the checkpoint directory {directory} (GRASSROOTS_CHECKPOINT_DIR) does not exist and "
            f"the log records no checkpoint being signed: its {report.checked} events were never checked "
            "against a signed checkpoint, only the hash chain and Merkle tree were (a rewritten or restored "
            "log would pass too); if the checkpoints are kept elsewhere, point GRASSROOTS_CHECKPOINT_DIR (or "
            "--checkpoints) at them and run again, otherwise run `grassroots audit checkpoint` to sign one",
        )
    else:
        no_checkpoint = (
            f"  没有签名检查点（{directory} 不存在），日志也还是空的；"
            "有事件后运行 grassroots audit checkpoint 签发一个。",
            f"  no signed checkpoint ({directory} does not exist) and the log is still empty; once it has "
            "events, run `grassroots audit checkpoint` to sign one",
        )
    lines = report.summary(no_checkpoint)
    if report.ok and report.checkpoint is not None:
        lines.append(
            _checkpoint_age(report.checkpoint.timestamp, report.checked - report.checkpoint.tree_size)
        )
    text = "\n".join(f"{zh}\n{en}" for zh, en in lines)
    if report.ok:
        typer.echo(text)
        return
    typer.echo(text, err=True)
    raise typer.Exit(1)


def _checkpoint_age(signed: datetime, uncovered: int) -> tuple[str, str]:
    """How old the latest signed checkpoint is; with events after it, where to look when the periodic
    checkpoint has stopped (the gateway's ``/readyz`` names why)."""
    from audit.query import after_chinese, elapsed_words

    zh, en = elapsed_words((datetime.now(UTC) - signed).total_seconds())
    line = (
        f"  最新签名检查点签发于{after_chinese(zh)}前",
        f"  the latest signed checkpoint was signed {en} ago",
    )
    if uncovered <= 0:
        return f"{line[0]}。", line[1]
    return (
        f"{line[0]}；如周期检查点长时间未更新，请查看网关 /readyz 中 audit_checkpoints 的失败原因。",
        f"{line[1]}; if the periodic checkpoint has stopped advancing, /readyz (audit_checkpoints) says why",
    )


def _checkpoint_key_for_verify(key_path: Path, directory: Path) -> Ed25519PublicKey | None:
    """The key to check the signed checkpoints with; ``None`` only when there is no key and nothing signed.

    Fails closed (exit 2, nothing verified): a key that cannot be used, or no key while the directory holds
    signed checkpoints or prune anchors, would otherwise yield "intact" from the hash chain alone, which a
    rewritten or restored log also passes. Never creates a key: a new one could not verify the old files.
    """
    from audit.checkpoints import holds_signed_files

    if not key_path.exists():
        if not holds_signed_files(directory):
            return None
        missing_checkpoint_key(
            key_path,
            subject=("审计日志", "audit log"),
            signed=(f"{directory} 中有签名检查点", f"{directory} holds signed checkpoints"),
        )
    return load_checkpoint_key(key_path, subject=("审计日志", "audit log"))


def _recorded_signing(engine: Any) -> tuple[int, str] | None:
    """The latest event recording that a file was signed into the checkpoint directory (its seq and kind):
    a checkpoint (``audit.checkpoint_written``: every on-demand one, and the first periodic one of a chain),
    a key handover (``keys.rotated`` with ``"keys": "checkpoint"``) or a restore record
    (``audit.restore_accepted``). ``None`` when the log records none (a fresh install)."""
    from audit import EventQuery, query_events
    from gateway.keys import latest_rotation

    found: list[tuple[int, str]] = []
    for kind in ("audit.checkpoint_written", "audit.restore_accepted"):
        found += [(e.seq, e.kind) for e in query_events(engine, EventQuery(kind=kind, limit=1)).items]
    handover = latest_rotation(engine, "checkpoint")
    if handover is not None:
        found.append((handover, "keys.rotated"))
    return max(found) if found else None


def _refuse_when_the_log_records_a_checkpoint(
    engine: Any, directory: Path, signing: tuple[str, str] | None = None
) -> None:
    """Exit 2, nothing verified or signed, when no signed checkpoint is at ``directory`` but the log itself
    records that one was signed (:func:`_recorded_signing`): the checkpoints were lost, or the setting
    points elsewhere. Verified, the hash chain alone would pass a rewritten log; signed (``audit
    checkpoint``, ``keys rotate-checkpoint``), a second chain would start there, and a rotation's handover
    would be written where no verifier looks, its old key deleted: the real directory's checkpoints would
    then fail ``audit verify`` as forgeries. ``signing``: what the refused signing command starts its
    message with (``None``: verifying)."""
    recorded = _recorded_signing(engine)
    if recorded is None:
        return
    seq, kind = recorded
    state_zh, state_en = (
        ("中没有签名检查点", "holds no signed checkpoint")
        if directory.is_dir()
        else ("不存在", "does not exist")
    )
    verifying = signing is None
    refused = signing or ("审计日志未校验", "audit log NOT verified")
    done_zh, done_en = (
        ("尚未校验任何事件", "no events were checked")
        if verifying
        else ("未做任何更改", "nothing was changed")
    )
    why_zh, why_en = (
        (
            "只校验哈希链时，整库重写或恢复旧备份也能通过",
            "the hash chain alone would pass a rewritten or restored log too",
        )
        if verifying
        else (
            "在这里签名会另起一条检查点链；轮换密钥时，原目录中的检查点还会因此无法验证",
            "signing here would start a second chain, and a key rotation would leave the directory's "
            "checkpoints unverifiable",
        )
    )
    option_zh, option_en = ("（或 --checkpoints）", " (or --checkpoints)") if verifying else (" ", "")
    typer.echo(
        f"{refused[0]}：日志记载第 {seq} 号事件签发过检查点（{kind}），但检查点目录 "
        f"{directory}（GRASSROOTS_CHECKPOINT_DIR）{state_zh}。{done_zh}；请找回该目录，或让 "
        f"GRASSROOTS_CHECKPOINT_DIR{option_zh}指向它，再重新运行（{why_zh}）。\n"
        f"{refused[1]}: the log records a checkpoint being signed (event {seq}, "
        f"{kind}) but the checkpoint directory {directory} (GRASSROOTS_CHECKPOINT_DIR) "
        f"{state_en}; {done_en}; restore that directory, or point GRASSROOTS_CHECKPOINT_DIR"
        f"{option_en} at it, and run again ({why_en})",
        err=True,
    )
    raise typer.Exit(2)


def _refuse_a_lost_checkpoint_directory(settings: Settings, refused: tuple[str, str]) -> None:
    """:func:`_refuse_when_the_log_records_a_checkpoint` before a command signs into the checkpoint
    directory (a fresh install, whose log records no signing, goes on: its directory is made now)."""
    from audit import AuditUnavailable
    from audit.checkpoints import holds_checkpoints
    from gateway.db import make_engine

    directory = settings.effective_checkpoint_dir
    if holds_checkpoints(directory):
        return
    engine = make_engine(settings.effective_database_url)
    try:
        _refuse_when_the_log_records_a_checkpoint(engine, directory, refused)
    except AuditUnavailable:
        database_lost(settings)
    finally:
        engine.dispose()


def _refuse_a_new_key_beside_signed_files(
    settings: Settings, refused: tuple[str, str] = ("未签发检查点", "no checkpoint written")
) -> None:
    """Exit 2, no key made, when there is no checkpoint key at GRASSROOTS_CHECKPOINT_KEY_PATH but the
    checkpoint directory holds files a key signed. ``audit checkpoint`` made a new key at the (mistyped)
    path, whose checkpoint the chain then refused ("signed by key …, expected …"); the key stayed, and the
    next ``audit verify`` with the same path read every earlier checkpoint as a forgery (exit 1, a false
    tamper alarm) where it had said, rightly, that the key was missing (exit 2). ``serve`` and ``demo``
    did the same in development (a deleted or not restored key file), until they asked here first."""
    from audit.checkpoints import holds_signed_files

    key_path, directory = settings.effective_checkpoint_key_path, settings.effective_checkpoint_dir
    if key_path.exists() or not holds_signed_files(directory):
        return
    typer.echo(
        f"{refused[0]}：{directory} 中有签名检查点，但找不到签发它们的检查点密钥 {key_path}"
        "（GRASSROOTS_CHECKPOINT_KEY_PATH）。新生成的密钥签发的检查点接不上原有的检查点链，"
        "因此没有生成新密钥，未做任何更改；请把签发它们的密钥放到该路径，"
        "或让 GRASSROOTS_CHECKPOINT_KEY_PATH 指向它，再重新运行。\n"
        f"{refused[1]}: {directory} holds signed checkpoints but there is no checkpoint key at "
        f"{key_path} (GRASSROOTS_CHECKPOINT_KEY_PATH); a new key's checkpoint could not join their chain, so "
        "none was made and nothing was changed; put the key that signed them at that path, or point "
        "GRASSROOTS_CHECKPOINT_KEY_PATH at it, and run again",
        err=True,
    )
    raise typer.Exit(2)


@audit_app.command(
    "checkpoint",
    zh="""向检查点目录写入一个签名检查点（树大小、Merkle 根、时间）。

    与 `POST /api/v1/supervision/checkpoints` 一样记为 `audit.checkpoint_written` 审计事件，
    操作者取自操作系统（cli:<用户>@<主机>）。""",
)
def audit_checkpoint() -> None:
    """Write a signed checkpoint (tree size, Merkle root, time) to the checkpoint directory.

    Like `POST /api/v1/supervision/checkpoints` it is recorded as an `audit.checkpoint_written` event,
    naming who ran it as the operating system says (cli:<user>@<host>)."""
    from audit import (
        AuditUnavailable,
        ChainBusy,
        CheckpointError,
        CheckpointSigner,
        KeyRetired,
        write_checkpoint,
    )
    from gateway.db import make_engine

    settings = _settings()
    # Before the signing key is made (on a first checkpoint): a command that cannot reach a migrated
    # database leaves no key behind (exit 2, creating nothing).
    require_migrated(settings)
    _refuse_a_lost_checkpoint_directory(settings, ("未签发检查点", "no checkpoint written"))
    require_writable_directory(settings.effective_checkpoint_dir, "GRASSROOTS_CHECKPOINT_DIR")
    _refuse_a_new_key_beside_signed_files(settings)
    engine = make_engine(settings.effective_database_url)
    try:
        signer = CheckpointSigner.load_or_create(settings.effective_checkpoint_key_path)
        cp = write_checkpoint(engine, signer, settings.effective_checkpoint_dir)
    except (ChainBusy, KeyRetired) as exc:  # each says what to do: wait, or copy the new key here
        typer.echo(f"未签发检查点：{exc.described_zh}。\nno checkpoint written: {exc}", err=True)
        raise typer.Exit(1) from None
    except CheckpointError as exc:
        typer.echo(
            f"未签发检查点：{exc.described_zh}。请先运行 grassroots audit verify 查明原因。\n"
            f"no checkpoint written: {exc}; run `grassroots audit verify` to find out why",
            err=True,
        )
        raise typer.Exit(1) from None
    except AuditUnavailable:
        database_lost(settings)
    # Every supervisory act is an audit event (GB/T 35273-2020 §11.2); the same one the API records.
    # Written after signing, since it names the root; the checkpoint file alone changes nothing.
    try:
        actor = record_offline_act(
            engine,
            "audit.checkpoint_written",
            cp.event_details(),
        )
    except AuditUnavailable:
        typer.echo(
            f"检查点已写入（树大小 {cp.tree_size}），但审计日志暂时无法写入，本次操作未能记录；"
            "请检查数据库后重试。\n"
            f"checkpoint written (size {cp.tree_size}) but the audit log could not record it; "
            "check the database and run the command again",
            err=True,
        )
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    typer.echo(
        f"已写入签名检查点：树大小 {cp.tree_size}，根哈希 {cp.root_hash.hex()}；"
        f"已记入审计日志，操作者为 {actor}。\n"
        f"checkpoint written: size {cp.tree_size}, root {cp.root_hash.hex()}; recorded as {actor}"
    )


@audit_app.command(
    "accept-restore",
    zh="""接受有意从备份恢复的数据库，签名记录丢失的事件。

    用于磁盘损坏后从昨夜的备份恢复等情形：记录丢失了哪些事件、为什么，然后继续。
    数据库中的审计日志比最新签名检查点短时，`grassroots serve` 拒绝启动、`audit verify` 报告失败。
    若恢复是有意为之，本命令先核对：恢复后的日志本身完好，且与签发过的每个检查点（至恢复后的大小）一致
    （否则不是本日志的备份，拒绝）；然后显示丢失的事件范围并请求确认（脚本中用 --yes）。
    确认后用检查点签名密钥在检查点目录写入签名的恢复记录（丢失范围、原根哈希、理由、时间），它同时是恢复后
    日志的第一个检查点；原有检查点全部保留。再记入 `audit.restore_accepted` 审计事件，操作者为
    cli:<用户>@<主机>。此后 `audit verify` 每次都会报告这次恢复。两人同时运行时只有一人签名，另一人被拒绝；
    审计事件未能写入时，重新运行本命令即补记（不再签名）。被拒绝时退出码为 1，无法尝试时为 2。""",
)
def audit_accept_restore(
    reason: Annotated[
        str,
        typer.Option(
            "--reason",
            help=bilingual(
                "为什么恢复了备份（记入恢复记录和审计日志，不要写个人信息）", "why the backup was restored"
            ),
        ),
    ],
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            help=bilingual(
                "检查点签名私钥（默认：GRASSROOTS_CHECKPOINT_KEY_PATH）",
                "checkpoint signing key (private PEM)",
            ),
        ),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", help=bilingual("不再询问确认（用于脚本）", "do not ask for confirmation"))
    ] = False,
) -> None:
    """Accept a database restored from a backup on purpose: sign a record of the lost events.

    For last night's backup restored after a disk failure, say: record which events were lost and why,
    and go on.
    When the database's audit log is shorter than the latest signed checkpoint, `grassroots serve` refuses
    to start and `audit verify` fails. For a deliberate restore this command checks that the restored log
    is intact and reproduces every signed checkpoint up to its size (else it is not this log's backup, and
    is refused), shows the lost range and asks for confirmation (--yes in scripts). Then it writes, with the
    checkpoint signing key, a signed restore record to the checkpoint directory (lost range, old root,
    reason, time) that is also the restored log's first checkpoint, keeping every existing checkpoint, and
    records `audit.restore_accepted` naming cli:<user>@<host>. `audit verify` reports the restore every time
    from then on. Of two runs at once one signs and the other is refused; if the audit event could not be
    written, running the command again records it (signing nothing). Exit 1 when refused, 2 when nothing
    could be tried."""
    from audit import (
        AuditUnavailable,
        CheckpointError,
        CheckpointSigner,
        RestoreAlreadyAccepted,
        accept_restore,
        plan_restore,
    )
    from gateway.db import make_engine
    from gateway.errors import InvalidRequest
    from gateway.routes.grants import checked_reason

    settings = _settings()
    try:
        reason = checked_reason(reason)
    except InvalidRequest as exc:
        typer.echo(f"未接受恢复：{exc.message_zh}\nrestore not accepted: {exc.message_en}", err=True)
        raise typer.Exit(2) from None
    require_migrated(settings)
    directory = settings.effective_checkpoint_dir
    key_path = key or settings.effective_checkpoint_key_path
    if not key_path.is_file():  # never made here: a new key could not vouch for the old checkpoints
        typer.echo(
            f"未接受恢复：找不到检查点签名密钥 {key_path}（GRASSROOTS_CHECKPOINT_KEY_PATH 或 --key）。"
            "恢复记录必须用签发检查点的密钥签名；该密钥保存在数据库之外，请找回后重新运行。\n"
            f"restore not accepted: there is no checkpoint signing key at {key_path} "
            "(GRASSROOTS_CHECKPOINT_KEY_PATH or --key); the restore record must be signed with the key that "
            "signs the checkpoints, kept outside the database: find it and run again",
            err=True,
        )
        raise typer.Exit(2)
    if not directory.is_dir():  # mistyped or not mounted: nothing to check the restore against
        typer.echo(
            f"未接受恢复：找不到检查点目录 {directory}（GRASSROOTS_CHECKPOINT_DIR）。恢复要与签发过的检查点"
            "逐一核对；请核对该设置（或挂载该目录）后重新运行。\n"
            f"restore not accepted: there is no checkpoint directory {directory} "
            "(GRASSROOTS_CHECKPOINT_DIR); a restore is checked against the checkpoints signed so far: "
            "correct the setting (or mount the directory) and run again",
            err=True,
        )
        raise typer.Exit(2)
    engine = make_engine(settings.effective_database_url)
    actors: list[str] = []
    try:
        try:
            signer = CheckpointSigner.load_or_create(key_path)
            plan = plan_restore(engine, directory, signer.public_key)
            typer.echo(_restore_shown(plan, reason))
            if not yes and not _confirmed(bilingual("确认接受这次恢复吗？", "Accept this restore?")):
                _not_accepted("未写入任何内容", "nothing was written")
            record = accept_restore(
                engine,
                signer,
                directory,
                reason,
                plan,
                after_signing=lambda signed: actors.append(_record_restore(engine, signed)),
            )
        except RestoreAlreadyAccepted as exc:
            _record_missing_restore_act(engine, directory, exc)
        except CheckpointError as exc:
            _not_accepted(exc.described_zh, str(exc))
    except AuditUnavailable:
        database_lost(settings)
    finally:
        engine.dispose()
    lost = f"{plan.log_size + 1}..{plan.lost.tree_size}"
    typer.echo(
        f"已接受恢复：事件 #{lost.replace('..', '..#')} 记为丢失；签名恢复记录（恢复纪元 {record.epoch}）"
        f"已写入 {directory}，已记入审计日志，操作者为 {actors[0]}。"
        "现在可以启动网关；grassroots audit verify 每次都会报告这次恢复。\n"
        f"restore accepted: events {lost} recorded as lost; the signed restore record (epoch {record.epoch}) "
        f"is in {directory}; recorded as {actors[0]}. The gateway can start now; `grassroots audit verify` "
        "reports this restore every time"
    )


def _record_missing_restore_act(engine: Any, directory: Path, accepted: RestoreAlreadyAccepted) -> NoReturn:
    """The restore was accepted already (by an earlier run, or by another run just now): nothing is signed
    again. Re-running is how a missing ``audit.restore_accepted`` event is recorded — the run that signed
    the record could not write it (the database failed just then) — so it is written now, under the chain
    lock (the signing run writes it under the same lock, so it is never written twice). Exit 0 when it was
    missing and is now recorded; otherwise exit 1, nothing written."""
    from audit import CheckpointError, chain_lock
    from audit.verify import restore_event_found

    try:
        with chain_lock(directory):
            found = restore_event_found(engine, accepted.record)
            if found is not False:
                _not_accepted(accepted.described_zh, str(accepted))
            actor = _record_restore(engine, accepted.record, late=True)
    except CheckpointError as exc:  # the lock is held (a rotation, or a run killed holding it)
        _not_accepted(exc.described_zh, str(exc))
    name, epoch = accepted.record_file, accepted.record.epoch
    typer.echo(
        f"恢复早已接受（恢复记录 {name}，恢复纪元 {epoch}），未再次签名；"
        f"但审计日志中缺少它的 audit.restore_accepted 事件（上次未能写入），现已补记，操作者为 {actor}。\n"
        f"the restore was accepted already (restore record {name}, epoch {epoch}) "
        f"and nothing was signed again; its audit.restore_accepted event was missing from the audit log (it "
        f"could not be written then) and is now recorded as {actor}"
    )
    raise typer.Exit(0)


def _confirmed(question: str) -> bool:
    """The operator's yes; with no answer to read (a script, a pipe, ssh without a terminal) a refusal that
    says to add --yes, where Click said only "Aborted!"."""
    try:
        return typer.confirm(question, default=False)
    except typer.Abort:
        typer.echo("", err=True)
        _not_accepted(
            "没有得到确认（没有终端时，例如在脚本中，请加 --yes），未写入任何内容",
            "no confirmation was read (without a terminal, as in a script, add --yes); nothing was written",
        )


def _not_accepted(reason_zh: str, reason_en: str) -> NoReturn:
    typer.echo(f"未接受恢复：{reason_zh}。\nrestore not accepted: {reason_en}", err=True)
    raise typer.Exit(1)


def _restore_shown(plan: RestorePlan, reason: str) -> str:
    """What accepting ``plan`` gives up, for the operator to confirm (both languages)."""
    from audit.events import format_timestamp
    from audit.query import beijing_clock

    first, last, count = plan.log_size + 1, plan.lost.tree_size, plan.lost_events
    return (
        f"数据库中的审计日志有 {plan.log_size} 条事件；最新签名检查点 {plan.lost_file} 记载已有 "
        f"{last} 条（签发于 {beijing_clock(plan.lost.timestamp)}，北京时间）。\n"
        f"接受恢复即确认事件 #{first}..#{last}（共 {count} 条已确认的审计事件）已丢失，"
        "新事件将重新使用这些序号。原检查点保留为证据。\n"
        f"理由：{reason}\n"
        f"the database's audit log holds {plan.log_size} events; the latest signed checkpoint "
        f"{plan.lost_file} says the log had {last} (signed {format_timestamp(plan.lost.timestamp)}). "
        f"Accepting the restore states that events {first}..{last} ({count} acknowledged "
        f"event{'s' if count != 1 else ''}) are lost, and new events re-use their numbers. The old "
        f"checkpoints are kept as evidence.\nreason: {reason}"
    )


def _record_restore(engine: Any, record: Checkpoint, *, late: bool = False) -> str:
    """The log itself says the restore was accepted (GB/T 35273-2020 §11.2), as its first event after it
    (or, ``late``, once a re-run finds it missing): the sizes, roots and reason (checked free of personal
    data), never a key. Returns the actor named."""
    from audit import AuditUnavailable

    restore = record.restore or {}
    try:
        return record_offline_act(
            engine,
            "audit.restore_accepted",
            {
                "epoch": record.epoch,
                "lost_from": restore.get("lost_from"),
                "lost_to": restore.get("lost_to"),
                "lost_events": int(restore.get("lost_to", 0)) - int(restore.get("lost_from", 0)),
                "lost_root": restore.get("lost_root"),
                "restored_root": record.root_hash.hex(),
                "key_id": record.key_id,
                "reason": restore.get("reason"),
                **({"recorded_late": True} if late else {}),
            },
        )
    except AuditUnavailable:
        _not_accepted(
            "恢复记录已写入检查点目录，但审计日志暂时无法写入，本次操作未能记入日志；请检查数据库后"
            "重新运行同一条命令补记（不会再次签名）",
            "the restore record is in the checkpoint directory, but the audit log could not record the act; "
            "check the database, then run the same command again to record it (nothing is signed again)",
        )


@audit_app.command(
    "prune-as-owner",
    zh="""以数据库结构所有者的登录角色，在服务器上清理审计日志。用于按 README 建议配置的 PostgreSQL
    （网关自己的登录角色不能删除事件，`audit prune --execute` 会被拒绝）。

    仅为本命令把 GRASSROOTS_DATABASE_URL 设为所有者的地址（与 `grassroots db upgrade` 相同），
    并使用网关的 GRASSROOTS_DATA_DIR（检查点密钥与目录、归档）。清理计划、检查、签名锚点和
    `supervision.events_pruned` 事件都与 `audit prune` 相同，操作者记为 cli:<用户>@<主机>。
    被拒绝时退出码为 1（未删除任何内容），无法尝试时为 2。""",
)
def audit_prune_as_owner(
    dry_run: DryRunOption = True,
    through_month: ThroughMonthOption = None,
    through_seq: ThroughSeqOption = None,
) -> None:
    """Prune on the server with the schema owner's database login, for PostgreSQL set up as the README
    recommends (the gateway's own login may not delete events, so `audit prune --execute` is refused).

    Set GRASSROOTS_DATABASE_URL to the owner's URL for this command only, as for `grassroots db upgrade`,
    with the gateway's GRASSROOTS_DATA_DIR (checkpoint key and directory, archives). The same plan, checks,
    signed anchor and `supervision.events_pruned` event as `audit prune`, recorded as cli:<user>@<host>.
    Exit 1 when refused (nothing deleted), 2 when nothing could be tried."""
    from audit import (
        AnchorError,
        AuditUnavailable,
        CheckpointError,
        CheckpointSigner,
        PruneRefused,
        can_prune,
        key_chain,
        plan_prune,
        prune,
    )
    from gateway.db import make_engine
    from gateway.supervision_tasks import SupervisionSettings

    settings = _settings()
    _check_area_settings()
    require_migrated(settings)
    area = SupervisionSettings()
    key_path = settings.effective_checkpoint_key_path
    if not key_path.exists():  # never made here: the anchor must be signed with the archives' key
        typer.echo(
            f"未清理：找不到检查点密钥 {key_path}（GRASSROOTS_CHECKPOINT_KEY_PATH）。"
            "清理锚点须用签发归档的同一把密钥签名；"
            "请使用与网关相同的 GRASSROOTS_DATA_DIR / GRASSROOTS_CHECKPOINT_KEY_PATH 重新运行。\n"
            f"nothing pruned: there is no checkpoint key at {key_path} (GRASSROOTS_CHECKPOINT_KEY_PATH); the "
            "anchor must be signed with the key that signed the archives: run again with the gateway's "
            "GRASSROOTS_DATA_DIR / GRASSROOTS_CHECKPOINT_KEY_PATH",
            err=True,
        )
        raise typer.Exit(2)
    try:
        signer = CheckpointSigner.load_or_create(key_path)
    except CheckpointError as exc:
        typer.echo(f"未清理：{exc.message_zh}。\nnothing pruned: {exc}", err=True)
        raise typer.Exit(2) from None
    directory = area.audit_archive_dir or settings.data_dir / "archives"
    engine = make_engine(settings.effective_database_url)
    now = datetime.now(UTC)
    try:
        if dry_run:
            plan = plan_prune(
                engine,
                directory,
                key_chain(settings.effective_checkpoint_dir, signer.public_key),
                now,
                years=area.audit_retention_years,
                through_month=through_month,
                through_seq=through_seq,
            )
            typer.echo(json.dumps({"dry_run": True, **plan.to_json()}, ensure_ascii=False, indent=2))
            return
        if not can_prune(engine):
            typer.echo(
                "未清理：GRASSROOTS_DATABASE_URL 所用的数据库登录角色不能删除审计事件"
                "（它不是数据库结构的所有者）。请把 GRASSROOTS_DATABASE_URL 设为所有者的地址"
                "（与运行 grassroots db upgrade 时相同）后重新运行；"
                "网关平时使用的登录角色有意不能删除事件。\n"
                "nothing pruned: the database login in GRASSROOTS_DATABASE_URL may not delete audit events "
                "(it is not the schema owner); set GRASSROOTS_DATABASE_URL to the owner's URL (the one "
                "`grassroots db upgrade` runs with) and run again; the gateway's everyday login is meant not "
                "to be able to delete events",
                err=True,
            )
            raise typer.Exit(2)
        result = prune(
            engine,
            signer,
            directory,
            settings.effective_checkpoint_dir,
            actor=offline_actor(),
            now=now,
            years=area.audit_retention_years,
            through_month=through_month,
            through_seq=through_seq,
            actor_roles=("operator",),
        )
    except PruneRefused as exc:
        typer.echo(
            f"未清理：{'；'.join(exc.plan.reasons_zh)}。\nnothing pruned: {'; '.join(exc.plan.reasons)}",
            err=True,
        )
        raise typer.Exit(1) from None
    except (AnchorError, CheckpointError) as exc:
        typer.echo(
            "未清理：清理锚点或检查点与日志不一致，请立即运行 grassroots audit verify 查明原因。\n"
            f"nothing pruned: {exc}; run `grassroots audit verify` to find out why",
            err=True,
        )
        raise typer.Exit(1) from None
    except AuditUnavailable:
        database_lost(settings)
    finally:
        engine.dispose()
    done = {"dry_run": False, **result.to_json(), "plan": result.plan.to_json()}
    typer.echo(json.dumps(done, ensure_ascii=False, indent=2))


def record_offline_act(engine: Any, kind: str, details: Mapping[str, Any]) -> str:
    """Append the audit event of an act done on the server's command line (actor :func:`offline_actor`,
    role ``operator``, ``via: cli``) and return the actor it names; raises ``AuditUnavailable``."""
    from audit import AuditLog
    from gateway.changes import offline_change_event

    actor = offline_actor()
    AuditLog(engine).append(offline_change_event(kind, actor, details))
    return actor


def offline_actor() -> str:
    """Who runs an offline command on the server, as the audit log records it: ``cli:<OS user>@<host>``.

    Taken from the operating system (the effective user id and the host name), never from an option: an
    operator with shell access cannot record another name. Commands that act through the API record the
    authenticated (pseudonymous) user instead.
    """
    import pwd
    import socket

    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = f"uid{os.geteuid()}"
    return f"cli:{user}@{socket.gethostname()}"


def _record_rotation(
    settings: Settings,
    details: Mapping[str, Any],
    ring: tuple[RingIdentity | None, RingIdentity] | None = None,
) -> str:
    """Record a key rotation (``keys.rotated``) before the new key is saved, returning the actor named: a
    rotation nobody can account for must not happen (fail closed). Exit 2 when the log cannot be written;
    the caller has saved nothing yet, so nothing is rotated. ``ring``: a masking rotation's ring before
    (``None``: a lost one replaced) and after, recorded with it as the ring in use
    (:func:`gateway.keys.record_masking_rotation`); exit 2 when another host rotated the ring meanwhile."""
    from audit import AuditUnavailable
    from gateway.db import make_engine
    from gateway.keys import KeyFileError, record_masking_rotation

    engine = make_engine(settings.effective_database_url)
    try:
        if ring is None:
            return record_offline_act(engine, "keys.rotated", details)
        actor = offline_actor()
        record_masking_rotation(engine, details, actor=actor, before=ring[0], after=ring[1])
        return actor
    except AuditUnavailable:
        database_lost(settings)
    except KeyFileError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    finally:
        engine.dispose()


@keys_app.command(
    "rotate",
    zh="""新增一把启用中的脱敏数据密钥；旧密钥保留，仅用于解密。需重启网关才能生效。

    审计事件中的操作者取自操作系统（cli:<用户>@<主机>）。""",
)
def keys_rotate() -> None:
    """Add a new active masking data key; older keys stay, decrypt-only. Restart gateways to pick it up.

    The audit event names who ran it as the operating system says (cli:<user>@<host>)."""
    from gateway.keys import RingIdentity, masking_keyring_path, stage_masking_keyring

    settings = _settings()
    # Before the key ring (in development, the KEK too) is read or made: a rotation that cannot be recorded
    # leaves no key file behind (exit 2, creating nothing).
    require_migrated(settings)
    _refuse_a_ring_made_here(settings, masking_keyring_path(settings), ("脱敏数据密钥环", "masking key ring"))
    with _key_rings_locked(settings):  # read, record and save in turn with any other rotation here
        ring = masking_keys_or_exit(settings, record=False)  # the rotation records the ring it makes
        before, identity = ring.active_key_id, RingIdentity.of(ring)
        new_id = ring.rotate()
        staged = _staged_or_exit(stage_masking_keyring, settings, ring)
        actor = _recorded_then_in_place(
            staged, settings, {"before": before, "after": new_id}, ring=(identity, RingIdentity.of(ring))
        )
    zh, en = _after_rotation(masking_keyring_path(settings))
    typer.echo(
        f"数据密钥已轮换：{before} -> {new_id}（旧密钥仅用于解密），审计记录的操作者为 {actor}。{zh}\n"
        f"masking data key rotated: {before} -> {new_id} (older keys are decrypt-only); "
        f"recorded as {actor}. {en}"
    )


@keys_app.command(
    "replace-lost-ring",
    zh="""在脱敏数据密钥环确已丢失且无任何副本时，新建一个密钥环。

    仅当本主机没有密钥环时可用。旧密钥加密的内容（FF1 化名、AES-GCM 密文、出站凭据）从此无法打开，
    同一居民的化名也会改变：出站凭据需重新设置。
    记为 `keys.rotated` 审计事件（"lost_ring": true），操作者为 cli:<用户>@<主机>。
    请先确认备份和其他网关主机上都没有 masking-keyring.json。""",
)
def keys_replace_lost_ring() -> None:
    """Make a new masking key ring when the old one is lost and no copy exists anywhere.

    Only where this host has no ring. What the old keys sealed (FF1 pseudonyms, AES-GCM envelopes, outbound
    credentials) can no longer be opened and residents get new pseudonyms; set outbound credentials again.
    Recorded as `keys.rotated` ("lost_ring": true) naming cli:<user>@<host>. First make sure no backup and
    no other gateway host holds masking-keyring.json."""
    from gateway.keys import (
        KeyFileError,
        RingIdentity,
        load_masking_keyring,
        masking_kek,
        masking_keyring_path,
        stage_masking_keyring,
    )
    from masking import KeyRing

    settings = _settings()
    require_migrated(settings)
    path = masking_keyring_path(settings)
    with _key_rings_locked(settings):
        if path.exists():
            typer.echo(
                f"密钥环 {path} 存在，无需新建：轮换请用 grassroots keys rotate。未做任何更改\n"
                f"the key ring {path} exists, nothing to replace: to rotate, use grassroots keys rotate. "
                "Nothing was changed",
                err=True,
            )
            raise typer.Exit(2)
        try:
            kek = masking_kek(settings)
        except KeyFileError as exc:  # the development KEK file lost beside the audit-ref ring, unreadable, …
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        ring = KeyRing.generate(kek)
        staged = _staged_or_exit(stage_masking_keyring, settings, ring)
        details = {"before": None, "after": ring.active_key_id, "lost_ring": True}
        actor = _recorded_then_in_place(staged, settings, details, ring=(None, RingIdentity.of(ring)))
        load_masking_keyring(settings)  # opens what was written
    zh, en = _after_rotation(path)
    typer.echo(
        f"已新建脱敏数据密钥环（启用密钥 {ring.active_key_id}），审计记录的操作者为 {actor}；旧密钥加密的内容"
        f"无法再打开，出站凭据需重新设置。{zh}\n"
        f"new masking key ring made (active key {ring.active_key_id}); recorded as {actor}. What the lost "
        f"keys sealed can no longer be opened; set outbound credentials again. {en}"
    )


_Ring = TypeVar("_Ring")


def _staged_or_exit(
    stage: Callable[[Settings, _Ring], StagedKeyFile], settings: Settings, ring: _Ring
) -> StagedKeyFile:
    """The rotated ring staged beside its file (``gateway.keys.stage_*``), or exit 1 saying why it cannot
    be written (no space, a quota), before the rotation is recorded: the log must never name a key that
    is not kept."""
    from gateway.keys import KeyFileError

    try:
        return stage(settings, ring)
    except KeyFileError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


def _recorded_then_in_place(
    staged: StagedKeyFile,
    settings: Settings,
    details: dict[str, Any],
    ring: tuple[RingIdentity | None, RingIdentity] | None = None,
) -> str:
    """Record the rotation (``keys.rotated``; a masking ring's with ``ring``, see :func:`_record_rotation`),
    then put its staged ring in place; the actor recorded. A rotation that cannot be recorded drops the
    staged ring (exit 2, nothing changed)."""
    try:
        actor = _record_rotation(settings, details, ring)
    except BaseException:
        staged.discard()
        raise
    try:
        staged.put_in_place()
    except OSError as exc:
        # Recorded, and the new ring is whole on disk beside the old one: one rename puts it in place.
        reason = exc.strerror or type(exc).__name__
        typer.echo(
            f"轮换已写入审计日志，但新的密钥环未能替换 {staged.path}（{reason}）。新密钥环已完整写入 "
            f"{staged.staged}：请将其改名为 {staged.path.name}（mv）后重启网关，不要再次轮换\n"
            f"the rotation is recorded, but the new key ring could not replace {staged.path} ({reason}). It "
            f"is whole in {staged.staged}: rename it to {staged.path.name} (mv) and restart gateways; do not "
            "rotate again",
            err=True,
        )
        raise typer.Exit(1) from None
    return actor


def _key_rings_locked(settings: Settings) -> contextlib.ExitStack:
    """``gateway.keys.key_ring_lock`` held, or exit 2 saying why it cannot be (the key directory not
    writable), before anything is read or recorded."""
    from gateway.keys import KeyFileError, key_ring_lock

    held = contextlib.ExitStack()
    try:
        held.enter_context(key_ring_lock(settings))
    except KeyFileError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    return held


def _refuse_a_ring_made_here(
    settings: Settings, ring: Path, what: tuple[str, str], recorded: int | None = None
) -> None:
    """Exit 2, nothing made or recorded, when ``ring`` is not where this command looks: run from another
    directory (GRASSROOTS_DATA_DIR is relative to it, ``var`` by default) or with another data directory,
    a rotation made a new ring there (in development a new KEK or HMAC key too), recorded it in the audit
    log as done, and left the gateways' ring as it was: an operator who then copied the new ring to every
    host lost the data keys that opened what was masked before. ``recorded``: the seq of the event recording
    an earlier rotation, whose ring should be there."""
    if ring.exists():
        return
    data_dir = settings.data_dir.resolve()
    earlier_zh, earlier_en = (
        (
            f"审计日志第 {recorded} 号事件记载它已轮换过，"
            "那次写下的密钥环应在网关的 GRASSROOTS_DATA_DIR 中。",
            f" The audit log records an earlier rotation (event {recorded}), whose ring belongs in the "
            "gateway's GRASSROOTS_DATA_DIR.",
        )
        if recorded is not None
        else ("", "")
    )
    typer.echo(
        f"密钥未轮换：{ring.resolve()} 处没有{what[0]}。{earlier_zh}"
        "网关首次启动时在它的 GRASSROOTS_DATA_DIR 下生成密钥文件，"
        f"而本命令使用的是 {data_dir}（GRASSROOTS_DATA_DIR 为相对路径时按当前目录解析）；"
        "在这里轮换只会另建一个网关读不到的新密钥环。请在网关的目录中运行，或把 GRASSROOTS_DATA_DIR 设为网关"
        "所用的目录（绝对路径），再重试。未做任何更改，也未写入审计日志。\n"
        f"key not rotated: there is no {what[1]} at {ring.resolve()}.{earlier_en} "
        "A gateway makes its key files under its GRASSROOTS_DATA_DIR when it first starts, and this command "
        f"uses {data_dir} (a relative "
        "GRASSROOTS_DATA_DIR is taken from the current directory); rotating here would only make a new ring "
        "no gateway reads. Run it in the gateway's directory, or set GRASSROOTS_DATA_DIR to the gateway's "
        "(an absolute path), and try again. Nothing was changed or recorded",
        err=True,
    )
    raise typer.Exit(2)


def _recorded_audit_ref_rotation(settings: Settings) -> int | None:
    """The seq of the latest audit-ref key rotation the log records (``keys.rotated``, ``"keys":
    "audit_ref"``), whose ring must then exist wherever the gateways keep theirs; ``None`` when none."""
    from audit import AuditUnavailable
    from gateway.db import make_engine
    from gateway.keys import latest_rotation

    engine = make_engine(settings.effective_database_url)
    try:
        return latest_rotation(engine, "audit_ref")
    except AuditUnavailable:
        database_lost(settings)
    finally:
        engine.dispose()


def _after_rotation(ring: Path) -> tuple[str, str]:
    """What an operator of several hosts does next: the ring is a file on this host, and a gateway reads it
    at start. A host left with the old copy cannot open what the new key wrote (or find the refs it wrote);
    `serve --workers N` restarts its workers one at a time on SIGHUP (uvicorn), reads served throughout."""
    return (
        f"请把 {ring} 复制到每台运行网关的主机（同一份文件），再重启所有网关"
        "（grassroots serve --workers N 的进程收到 kill -HUP 后逐个重启工作进程，读取不中断）。",
        f"Copy {ring} to every host running the gateway (the same file), then restart every gateway "
        "(kill -HUP to a `grassroots serve --workers N` process restarts its workers one at a time, reads "
        "keep being served).",
    )


def _audit_refs_or_exit(settings: Settings) -> PseudonymRing:
    """The audit-ref key ring, or exit 2 with why it cannot be used (Chinese, then English; no key)."""
    from gateway.keys import KeyFileError, load_audit_refs

    try:
        return load_audit_refs(settings)
    except KeyFileError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@keys_app.command(
    "rotate-audit-ref",
    zh="""新增一把审计引用密钥。审计日志中的居民引用和记录引用改用新密钥；旧密钥保留，仅用于查询。

    与 `keys rotate` 分开：那条命令轮换脱敏数据密钥，影响读者看到的内容；这条命令改变审计日志标识居民的方式
    （例如 HMAC 密钥泄露之后）。新事件用新密钥写入；投诉、居民查询和证据检索会用所有保留的密钥。
    需重启网关才能生效。记为 `keys.rotated` 审计事件（"keys": "audit_ref"），操作者为 cli:<用户>@<主机>。""",
)
def keys_rotate_audit_ref(
    key_id: Annotated[
        str | None,
        typer.Option(
            "--key-id",
            callback=audit_ref_key_id,
            help=bilingual(
                "新密钥的编号（默认：k<n+1>），不能与已保留的密钥重复",
                "id of the new key (default: k<n+1>); never one already kept",
            ),
        ),
    ] = None,
) -> None:
    """Add a new active key for the audit log's resident and record refs; older keys stay, for lookups only.

    Its own command, not `keys rotate`: that one rotates the masking data keys, which change what readers
    see; this one changes how the audit log names residents (e.g. after the HMAC key leaked). New events are
    written under the new key; complaints, transparency and evidence search under every kept key. Restart
    gateways to pick it up. Recorded as `keys.rotated` ("keys": "audit_ref") naming
    cli:<user>@<host>.
    """
    from gateway.keys import (
        KeyFileError,
        audit_ref_keys_path,
        rotate_audit_refs,
        stage_audit_ref_keys,
    )

    settings = _settings()
    dev_hmac = settings.keys_dir / "audit-hmac.key"
    # Before any key is read or made: a rotation that cannot be recorded leaves no key file behind.
    require_migrated(settings)
    if not audit_ref_keys_path(settings).exists():
        # Rotated before (the file must be somewhere), or no configured key and no development key made by a
        # gateway here: this is not the gateway's data directory.
        recorded = _recorded_audit_ref_rotation(settings)
        if recorded is not None or (settings.audit_hmac_key is None and not dev_hmac.exists()):
            what = ("审计引用密钥环", "audit ref key ring")
            _refuse_a_ring_made_here(settings, audit_ref_keys_path(settings), what, recorded)
    with _key_rings_locked(settings):  # read, record and save in turn with any other rotation here
        kept = _audit_refs_or_exit(settings).key_ids
        try:
            ring, before, new_id = rotate_audit_refs(settings, key_id)
        except KeyFileError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
        # Key ids only, never a key.
        details = {"keys": "audit_ref", "before": before, "after": new_id, "kept": [new_id, *kept]}
        staged = _staged_or_exit(stage_audit_ref_keys, settings, ring)
        actor = _recorded_then_in_place(staged, settings, details)
    zh, en = _after_rotation(audit_ref_keys_path(settings))
    typer.echo(
        f"审计引用密钥已轮换：{before} -> {new_id}（旧密钥仅用于查询：{'、'.join(kept)}），"
        f"审计记录的操作者为 {actor}。{zh}\n"
        f"audit ref key rotated: {before} -> {new_id} (older keys kept for lookups only: {', '.join(kept)}); "
        f"recorded as {actor}. {en}"
    )


@keys_app.command(
    "rotate-checkpoint",
    zh="""换用新的检查点签名密钥；旧密钥签发的检查点仍可验证。

    用于例行换钥（Ed25519），或怀疑密钥泄露之后。在当前树大小写一份密钥交接检查点：同一内容写明旧公钥和新公钥，由旧密钥和新密钥各签一份，之后由新密钥签发。
    旧私钥随即删除；旧公钥留在交接文件中，旧密钥签发的检查点照常可验证。只拿到数据库的人伪造不了交接。
    记为 `keys.rotated` 审计事件（"keys": "checkpoint"），操作者为 cli:<用户>@<主机>。
    轮换时持有检查点目录中的锁文件：两台主机同时轮换，后一台不会再交接一次，而是提示密钥已轮换、应复制哪个密钥文件。""",
)
def keys_rotate_checkpoint() -> None:
    """Hand the audit checkpoints over to a new Ed25519 key (a yearly change, or a suspected compromise).

    Writes a key handover at the current tree size: one body naming the old and the new public key, signed
    by the old key and by the new one; the new key signs from then on. The old private key is deleted; its
    public half stays in the handover files, so what it signed still verifies. Whoever holds only the
    database cannot forge a handover. Recorded as `keys.rotated` ("keys": "checkpoint") naming
    cli:<user>@<host>. Holds a lock file in the checkpoint directory: of two hosts rotating at once, the
    second does not hand the key over again but says it was already rotated and which key file to copy.
    """
    from audit import AuditUnavailable, CheckpointError, CheckpointSigner, KeyAlreadyRotated

    settings = _settings()
    require_migrated(settings)
    key_path, directory = settings.effective_checkpoint_key_path, settings.effective_checkpoint_dir
    _refuse_a_lost_checkpoint_directory(settings, ("检查点密钥未轮换", "checkpoint key not rotated"))
    require_writable_directory(directory, "GRASSROOTS_CHECKPOINT_DIR")
    if not key_path.exists():
        typer.echo(
            f"检查点密钥未轮换：{key_path}（GRASSROOTS_CHECKPOINT_KEY_PATH）处没有密钥。"
            "若密钥已丢失，旧检查点无法再签发交接；请找回密钥后再轮换。\n"
            f"checkpoint key not rotated: there is no key at {key_path} (GRASSROOTS_CHECKPOINT_KEY_PATH). "
            "If it is lost, no handover can be signed for the old checkpoints; find the key, then rotate",
            err=True,
        )
        raise typer.Exit(1)
    new = CheckpointSigner.generate()
    try:
        before = CheckpointSigner.load_or_create(key_path).key_id
    except CheckpointError as exc:
        typer.echo(f"检查点密钥未轮换：{exc.described_zh}。\ncheckpoint key not rotated: {exc}", err=True)
        raise typer.Exit(1) from None
    recorded: list[str] = []

    def record(old: CheckpointSigner) -> None:
        # Under the rotation lock, once the key is known not to be handed over already (by another host, or
        # another run here): a refused rotation records nothing. Before the log's size is read, so the
        # handover's signed root covers the record of the rotation itself.
        details = {"keys": "checkpoint", "before": old.key_id, "after": new.key_id}
        recorded.append(_record_rotation(settings, details))

    try:
        handover = _hand_checkpoints_over(settings, new, before, record)
    except KeyAlreadyRotated as exc:
        typer.echo(f"检查点密钥未轮换：{exc.described_zh}。\ncheckpoint key not rotated: {exc}", err=True)
        raise typer.Exit(1) from None
    except CheckpointError as exc:
        typer.echo(
            f"检查点密钥未轮换（仍为 {before}）：{exc.described_zh}。"
            "请先运行 grassroots audit verify 查明原因。\n"
            f"checkpoint key not rotated (still {before}): {exc}; "
            "run `grassroots audit verify` to find out why",
            err=True,
        )
        raise typer.Exit(1) from None
    except AuditUnavailable:
        database_lost(settings)
    (actor,) = recorded
    zh, en = _after_rotation(key_path)
    typer.echo(
        f"检查点签名密钥已轮换：{before} -> {new.key_id}（交接检查点的树大小为 {handover.tree_size}，"
        f"新旧密钥各签一份，在 {directory}），审计记录的操作者为 {actor}。旧私钥已删除；"
        "持有旧公钥的监督方不必更换公钥。仍用旧密钥的网关不再签发检查点，直到换上新文件并重启。"
        f"{zh}\n"
        f"checkpoint signing key rotated: {before} -> {new.key_id} (the handover at tree size "
        f"{handover.tree_size} is signed by both keys, in {directory}); recorded as {actor}. The old private "
        "key is deleted; supervisors holding the old public key need no new one. A gateway still on the old "
        f"key signs no more checkpoints until it has the new file and is restarted. {en}"
    )


def _hand_checkpoints_over(
    settings: Settings, new: CheckpointSigner, retiring: str, record: Callable[[CheckpointSigner], None]
) -> Checkpoint:
    """The handover checkpoint (signed by the new key) of ``audit.rotate_signing_key``, retiring the key
    ``retiring`` only (``record`` runs under the rotation lock, before the log's size is read)."""
    from audit import rotate_signing_key
    from gateway.db import make_engine

    engine = make_engine(settings.effective_database_url)
    try:
        key_path, directory = settings.effective_checkpoint_key_path, settings.effective_checkpoint_dir
        return rotate_signing_key(engine, key_path, directory, new, retiring=retiring, before_signing=record)[
            2
        ]
    finally:
        engine.dispose()


@app.command(
    "seed-demo",
    zh="登记演示用的部门系统和授权（可重复运行）。同时保存各系统签发给网关的 API 密钥作为出站凭证，"
    "然后输出手动启动这两个系统的命令。",
)
def seed_demo_cmd(
    upstream_url: Annotated[
        str, typer.Option(help=bilingual("民政登记系统的地址", "civil-affairs registry URL"))
    ] = "http://127.0.0.1:8101",
    person_house_url: Annotated[
        str, typer.Option(help=bilingual("一标三实系统的地址", "person-house registry URL"))
    ] = "http://127.0.0.1:8102",
) -> None:
    """Register the demo departmental systems and grants, and store the API key each registry issues to the
    gateway as its outbound credential (idempotent); then print how to start the registries by hand."""
    from gateway.launch import demo_registries, prepare_demo
    from gateway.seed import CIVIL_AFFAIRS_SYSTEM, PERSON_HOUSE_SYSTEM

    settings = _settings()
    # Before anything is written (keys, credential files, rows): an unmigrated database is refused as
    # `grassroots serve` refuses it.
    require_migrated(settings)
    # The key ring `grassroots serve` loads from the same data directory opens what is sealed here; the
    # registries started as printed below accept exactly the keys stored (`grassroots demo` does the same).
    prepared = prepare_demo(
        settings.effective_database_url,
        settings.data_dir,
        upstream_url=upstream_url,
        person_house_url=person_house_url,
        service_key_path=settings.effective_service_key_path,
        keys=masking_keys_or_exit(settings),
    )
    for line in prepared.seeded or ["already seeded"]:
        typer.echo(line)
    ports = {CIVIL_AFFAIRS_SYSTEM: _url_port(upstream_url), PERSON_HOUSE_SYSTEM: _url_port(person_house_url)}
    registries = demo_registries(prepared, settings.data_dir, ports)
    commands = "\n".join(f"  {shlex.join(spec.argv())}" for spec in registries)
    typer.echo(
        f"""
启动两个部门系统，再启动网关（各用一个终端）
Start both registries, then the gateway, each in a terminal of its own:
{commands}
  GRASSROOTS_DEV_IDP_ENABLED=true {shlex.join([sys.executable, "-m", "gateway.cli", "serve"])}"""
    )


def _url_port(url: str) -> int:
    port = urlsplit(url).port
    if port is None:
        typer.echo(f"{url} names no port", err=True)
        raise typer.Exit(2)
    return port


_REGISTRY_NAMES = {
    "civil-affairs-registry": "the civil-affairs registry",
    "person-house-registry": "the person-house registry",
}


@app.command(
    zh="在本机运行完整演示。依次迁移数据库、写入演示数据，启动两个部门系统和网关（只监听回环地址）。"
)
def demo(
    port: Annotated[
        int | None,
        typer.Option(
            help=bilingual(
                f"网关端口（默认：GRASSROOTS_PORT，未设置时为 {DEFAULT_PORT}）",
                f"gateway port (default: GRASSROOTS_PORT, else {DEFAULT_PORT})",
            ),
            min=1,
            max=65535,
        ),
    ] = None,
    upstream_port: Annotated[
        int,
        typer.Option(help=bilingual("民政登记系统的端口", "civil-affairs registry port"), min=1, max=65535),
    ] = 8101,
    person_house_port: Annotated[
        int,
        typer.Option(help=bilingual("一标三实系统的端口", "person-house registry port"), min=1, max=65535),
    ] = 8102,
    any_hour: Annotated[
        bool,
        typer.Option(
            "--any-hour",
            help=bilingual(
                "所有场景全天开放（仅用于演示；随附的场景目录只在北京时间 7:00-21:00 开放）",
                "open every scenario all day (demo only; the shipped catalog: 7:00-21:00 Beijing time)",
            ),
        ),
    ] = False,
) -> None:
    """Set up and run the whole demo on loopback: migrate, seed, start both registries and the gateway."""
    from gateway.launch import LaunchError, demo_registries, prepare_demo, start_registry, stop, wait_healthy
    from gateway.seed import CIVIL_AFFAIRS_SYSTEM, PERSON_HOUSE_SYSTEM

    os.environ.setdefault("GRASSROOTS_DEV_IDP_ENABLED", "true")
    # The port is read back from the settings: the development IdP's issuer URL is derived from it, so
    # the port listened on and the one in every token's issuer are always the same.
    if port is not None:
        os.environ["GRASSROOTS_PORT"] = str(port)
    settings = _settings()
    port = settings.port
    _check_area_settings()
    # The development IdP turned off and no provider named: refused here, as `serve` refuses it, rather
    # than seeding, printing a banner and failing with a traceback when the gateway starts.
    _check_startup_settings(settings)
    if settings.mode.value != "development":
        typer.echo("`grassroots demo` runs only in development mode", err=True)
        raise typer.Exit(2)
    _refuse_taken_ports(
        {
            "网关 / the gateway (--port)": (settings.host, port),
            "民政登记系统 / the civil-affairs registry (--upstream-port)": ("127.0.0.1", upstream_port),
            "一标三实系统 / the person-house registry (--person-house-port)": (
                "127.0.0.1",
                person_house_port,
            ),
        }
    )
    if any_hour:
        settings = _all_day_catalog(settings)
    migrate(settings)
    _refuse_a_new_key_beside_signed_files(settings, ("演示未启动", "the demo did not start"))
    url = settings.effective_database_url
    ports = {CIVIL_AFFAIRS_SYSTEM: upstream_port, PERSON_HOUSE_SYSTEM: person_house_port}
    # Read once: the seed seals the registries' API keys with it and the gateway below serves with it.
    masking_keys = masking_keys_or_exit(settings)
    # A key file that cannot be used (or, lost, must not be made afresh): a message, not a traceback.
    audit_refs = _audit_refs_or_exit(settings)
    # Both registries require the API key their department issued to the gateway (stored by the seed as
    # each system's outbound credential, the way the admission API stores one).
    prepared = prepare_demo(
        url,
        settings.data_dir,
        upstream_url=f"http://127.0.0.1:{upstream_port}",
        person_house_url=f"http://127.0.0.1:{person_house_port}",
        service_key_path=settings.effective_service_key_path,
        keys=masking_keys,
    )
    for line in prepared.seeded:
        typer.echo(f"  seeded {line}")

    # uvicorn re-raises the SIGTERM it shut down on: end through the finally below, which stops the
    # registries, rather than by the default action, which would skip it and leave them running.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    # Their output goes to this terminal, next to the gateway's; they stay in its process group, so a
    # Ctrl+C (or a signal to the group) reaches them even if this process cannot stop them.
    registries = {
        spec.system_id: (
            spec,
            start_registry(spec, stdout=None, stderr=None, wait_s=None, own_group=False),
        )
        for spec in demo_registries(prepared, settings.data_dir, ports)
    }
    try:
        for system, (spec, proc) in registries.items():
            try:
                wait_healthy(spec.health_url, proc)
            except LaunchError:
                typer.echo(f"{_REGISTRY_NAMES[system]} did not start; see its output above", err=True)
                raise typer.Exit(1) from None
        _print_next_steps(settings)
        _print_opening_hours(settings, any_hour)
        import uvicorn

        from gateway.serving import CoalescingHttpToolsProtocol, log_config

        # The demo keeps its terminal for the banner above: warnings and errors only, unless
        # GRASSROOTS_LOG_LEVEL says otherwise; in the lines `serve` writes (time, level, process, logger).
        level = settings.log_level if "log_level" in settings.model_fields_set else "WARNING"
        # The protocol `serve` speaks, so the demo has its limits too (a request head over 64 KiB: 431);
        # uvicorn's default httptools protocol held an endless header in memory (200 MB, answered 200).
        from gateway.app import create_app

        uvicorn.run(
            functools.partial(create_app, keys=masking_keys, audit_refs=audit_refs),
            factory=True,
            host=settings.host,
            port=port,
            log_level=level.lower(),
            log_config=log_config(level),
            access_log=False,
            http=CoalescingHttpToolsProtocol,
        )
    finally:
        stop(*(proc for _, proc in registries.values()))


def _refuse_taken_ports(wanted: dict[str, tuple[str, int]]) -> None:
    """Check every port the demo will listen on before starting anything; refuse, saying which, if taken.

    A second demo would otherwise print its banner (the first demo's registries answer its health checks)
    and then fail on each port with a raw "address already in use"."""
    from gateway.serving import probe_port

    taken = []
    for name, (host, port) in wanted.items():
        try:
            probe_port(host, port)
        except OSError as exc:
            taken.append(f"  {name}: {host}:{port} ({exc.strerror})")
    if not taken:
        return
    typer.echo(
        "无法启动演示：以下端口已被占用，可能另一个演示（make demo）正在运行。"
        "请先停止它（在其终端按 Ctrl+C），"
        "或运行 .venv/bin/grassroots demo 并用 --port、--upstream-port、--person-house-port 换用空闲端口。\n"
        "Cannot start the demo: these ports are taken, perhaps by another demo (make demo) still running. "
        "Stop it first (Ctrl+C in its terminal), or run .venv/bin/grassroots demo with free ports: --port, "
        "--upstream-port and --person-house-port.\n" + "\n".join(taken),
        err=True,
    )
    raise typer.Exit(2)


def _all_day_catalog(settings: Settings) -> Settings:
    """Point this process (and so the gateway it runs) at a copy of the catalog open all day."""
    from policies.scenarios import DEFAULT_SCENARIOS_PATH, without_opening_hours

    source = settings.scenarios_path or DEFAULT_SCENARIOS_PATH
    target = settings.data_dir / "demo-scenarios-all-day.toml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(without_opening_hours(source.read_text(encoding="utf-8")), encoding="utf-8")
    os.environ["GRASSROOTS_SCENARIOS_PATH"] = str(target)
    return _settings()


def _print_opening_hours(settings: Settings, any_hour: bool, now: datetime | None = None) -> None:
    """Say when the walk-through's scenario refuses reads because of the hour (outside_hours), and how to
    open every scenario all day: ``make demo ANY_HOUR=1``, or ``--any-hour`` for a demo started as
    ``grassroots demo --port …`` (``make demo`` would start another on the default ports)."""
    from policies.scenarios import CHINA_STANDARD_TIME, load_scenarios

    if any_hour:
        typer.echo(
            "演示：所有场景全天开放（随附的场景目录只允许北京时间 7:00-21:00 读取）。\n"
            "Demo: every scenario is open all day (the shipped catalog allows reading 7:00-21:00 Beijing "
            "time).\n"
        )
        return
    scenario = load_scenarios(settings.scenarios_path).get("DIBAO_REVIEW")
    now = now or datetime.now(UTC)
    if scenario is None or scenario.within_hours(now):
        return
    start, end = scenario.hours_allowed
    local = now.astimezone(CHINA_STANDARD_TIME).strftime("%H:%M")
    typer.echo(
        f"注意：现在是北京时间 {local}，不在场景开放时间（{start}:00-{end}:00）内，读取数据会被拒绝"
        "（outside_hours）。如需现在试用，请停止后运行 `make demo ANY_HOUR=1`，"
        "或在 grassroots demo 命令（如 --port 等选项）后加上 --any-hour（仅用于演示：所有场景全天开放）。\n"
        f"Note: it is {local} in Beijing, outside the scenarios' opening hours ({start}:00-{end}:00), so "
        "reads answer 403 outside_hours. To try the walk-through now, stop and run `make demo ANY_HOUR=1`, "
        "or add --any-hour to the grassroots demo command (with its --port options) "
        "(demo only: every scenario open all day).\n",
        err=True,
    )


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _dev_tokens_accepted(settings: Settings) -> bool:
    """Whether tokens of ``dev-token`` and ``--as`` are accepted by the gateway ``settings`` describe: the
    development IdP is on and is the issuer trusted (its tokens name GRASSROOTS_OIDC_ISSUER when that is
    set, checked against that provider's keys, not the development IdP's)."""
    issuer = settings.primary_oidc_issuer
    return issuer is not None and _served_here(settings, issuer)


def _print_next_steps(settings: Settings) -> None:
    base = settings.effective_public_url
    dev_tokens = _dev_tokens_accepted(settings)
    # dev-token and the client commands find the gateway (and the issuer its tokens must name) through
    # GRASSROOTS_HOST/GRASSROOTS_PORT: another terminal needs them when they are not the defaults, or every
    # token answers 401 wrong_issuer and every client command calls 127.0.0.1:8000.
    exports = [
        f"  export GRASSROOTS_{name}={shlex.quote(str(value))}\n"
        for name, value, default in (
            ("HOST", settings.host, DEFAULT_HOST),
            ("PORT", settings.port, DEFAULT_PORT),
            ("PUBLIC_URL", settings.public_url, None),  # when set, the issuer follows it instead
        )
        if value != default
    ]
    if exports and dev_tokens:
        exports.insert(
            0,
            "  # 网关不在默认地址上：先在新终端中设置以下变量（否则令牌会被拒绝：401 wrong_issuer）\n"
            "  # the gateway is not on the default address: set these first (else tokens answer 401 "
            "wrong_issuer)\n",
        )
    elif exports:
        exports.insert(
            0,
            "  # 网关不在默认地址上：grassroots 的客户端命令要先设置以下变量才会连到它\n"
            "  # the gateway is not on the default address: grassroots client commands need these to reach "
            "it\n",
        )
    # The offline commands (`audit verify` below, `audit checkpoint`, `keys rotate`) open the database and
    # keys under GRASSROOTS_DATA_DIR: another terminal without it finds no database at ./var and is told
    # to migrate one. The path is shown absolute, as the other terminal may be elsewhere.
    if settings.database_url is None and settings.data_dir != Path("var"):
        exports.append(
            "  # 数据目录不是默认的 var：audit verify、keys rotate 等命令也要用同一目录\n"
            "  # the data directory is not the default var: audit verify, keys rotate and others need it\n"
            f"  export GRASSROOTS_DATA_DIR={shlex.quote(str(settings.data_dir.resolve()))}\n"
        )
    if dev_tokens:
        sign_in = f"""  TOKEN=$(.venv/bin/grassroots dev-token cadre_a)
  curl -s -H "Authorization: Bearer $TOKEN" \\
    "{base}/api/v1/datasets/residents/records?scenario=DIBAO_REVIEW&page_size=5"
  # a grid worker sees only the houses of the micro-grids assigned to them
  TOKEN=$(.venv/bin/grassroots dev-token grid_a1)
  curl -s -H "Authorization: Bearer $TOKEN" \\
    "{base}/api/v1/datasets/houses/records?scenario=GRID_VISIT&page_size=5"
  .venv/bin/grassroots dev-users          # every demo identity
"""
    else:
        # The development IdP is off (GRASSROOTS_DEV_IDP_ENABLED=false) or another provider is trusted:
        # a dev-token or --as token would be refused (401 wrong_issuer or unknown_key), and the demo
        # identities exist only there. Only a token of a trusted provider works.
        trusted = ", ".join(trust.issuer for trust in settings.trusted_issuers)
        sign_in = f"""  # 内置的开发用身份提供方未启用（或未被信任）：dev-token 和 --as 的令牌在此会被拒绝。
  # 请在网关信任的身份提供方（{trusted}）登录，取得本演示区域（崇明区 310151…）用户的访问令牌。
  # the built-in identity provider is off (or not the one trusted): tokens of dev-token and --as are
  # refused here. Sign in at the identity provider the gateway trusts ({trusted}) as a user of the
  # demo's area (崇明区, 310151…) and use its access token:
  read -r TOKEN          # 粘贴访问令牌后按回车 / paste the access token, then Enter
  curl -s -H "Authorization: Bearer $TOKEN" \\
    "{base}/api/v1/datasets/residents/records?scenario=DIBAO_REVIEW&page_size=5"
"""
    typer.echo(
        f"""
基层数据网关演示已启动 · Grassroots Data Gateway demo is running
  gateway            {base}   (API docs: {base}/docs)
  civil-affairs registry and person-house registry (一标三实), two departmental systems on
  127.0.0.1, reached only through the gateway

Try, in another terminal:
{"".join(exports)}{sign_in}  .venv/bin/grassroots audit verify       # check the tamper-evident log

Press Ctrl+C to stop.
"""
    )


def _add_logout() -> None:
    from gateway.commands import sessions

    # Registered after the commands defined here, so `grassroots --help` lists it with the API commands.
    app.command(
        "logout",
        zh="""退出登录（注销所给的令牌）。

        所给的令牌（--token 或 GRASSROOTS_TOKEN）自即刻起被所有网关进程拒绝，直至其本应过期之时。
        令牌此前已退出登录、已被撤销或已过期（由网关判定）时，说明无需再做任何操作（退出码 0）。""",
    )(sessions.logout)


_add_logout()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
