"""The administrative CLI is a thin client of the gateway's HTTP API.

Every command authenticates with a bearer token (``--token`` or ``GRASSROOTS_TOKEN``; in development
``--as USERNAME`` mints one from the development IdP), so the CLI goes through exactly the same permission
checks and audit trail as the API.

A command says only which request it wants made; :func:`api_command` adds the connection options, makes the
request and shows the answer::

    @app.command("show")
    @api_command
    def show_grant(grant_id: str) -> ApiCall:
        \"\"\"One grant.\"\"\"
        return ApiCall("GET", f"/api/v1/grants/{grant_id}")
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import re
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer

from gateway.answer_notes import read_note
from gateway.commands._help import bilingual
from gateway.settings import DEFAULT_HOST, DEFAULT_PORT

if TYPE_CHECKING:
    from gateway.auth.devidp import DevIdentityProvider

if typing.TYPE_CHECKING:
    from gateway.settings import Settings

#: The ``--url`` option's placeholder default: where the gateway listens without ``--host``/``--port``.
#: When neither ``--url`` nor ``GRASSROOTS_URL`` is given, :func:`_resolve_url` puts the address
#: ``GRASSROOTS_HOST``/``GRASSROOTS_PORT`` name in its place.
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"


def load_settings() -> Settings:
    """The gateway's settings from the environment; on a problem, say which variable is wrong (Chinese, then
    English; never a value, never a traceback) and exit 2."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from gateway.settings import ConfigurationError, Settings, configuration_error

    try:
        return Settings()
    except (ValidationError, SettingsError) as exc:
        problem = configuration_error(exc)
    except ConfigurationError as exc:
        problem = exc
    typer.echo(problem.bilingual(), err=True)
    raise typer.Exit(2)


def default_url() -> str:
    """Where the gateway listens, as ``grassroots serve`` reads it: ``GRASSROOTS_HOST``/``GRASSROOTS_PORT``
    (default 127.0.0.1:8000). The development IdP's issuer follows the same two settings, so a token from
    ``dev-token``/``--as`` and the address called agree."""
    from pydantic import ValidationError

    from gateway.settings import GatewayAddress, configuration_error

    try:
        return GatewayAddress().local_url
    except ValidationError as exc:
        typer.echo(configuration_error(exc).bilingual(), err=True)
        raise typer.Exit(2) from None


def _resolve_url(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str:
    # --url, then GRASSROOTS_URL; only when neither is given does GRASSROOTS_HOST/PORT decide. (Compared by
    # name: Typer carries its own copy of Click's ParameterSource.)
    source = ctx.get_parameter_source(param.name or "url")
    if value and source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
        # Without a scheme ("127.0.0.1:8000") the call failed as "cannot reach the gateway, check it is
        # running": refused here, before anything is sent, saying what to write (never the value: it may
        # carry a password).
        from gateway.settings import http_url_or_none

        if http_url_or_none(value) is None:
            given = "GRASSROOTS_URL" if source.name == "ENVIRONMENT" else "--url"
            typer.echo(
                f"{given} 须为以 http:// 或 https:// 开头的完整网关地址，例如 {DEFAULT_URL}。\n"
                f"{given} must be the gateway's full URL starting with http:// or https://, "
                f"e.g. {DEFAULT_URL}",
                err=True,
            )
            raise typer.Exit(2)
        return value
    return default_url()


UrlOption = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="GRASSROOTS_URL",
        callback=_resolve_url,
        show_default=False,
        help=bilingual(
            "网关地址（默认：http://GRASSROOTS_HOST:GRASSROOTS_PORT，即 `grassroots serve` 监听的地址；"
            "未设置时为 127.0.0.1:8000）",
            "gateway base URL (default: http://GRASSROOTS_HOST:GRASSROOTS_PORT, where `grassroots serve` "
            "listens; 127.0.0.1:8000 unless they are set)",
        ),
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="GRASSROOTS_TOKEN",
        help=bilingual(
            "访问令牌（Bearer；开发环境中也可用 --as）", "bearer token (or use --as in development)"
        ),
    ),
]
AsOption = Annotated[
    str | None,
    typer.Option(
        "--as",
        help=bilingual(
            "仅限开发环境：以该演示用户的身份操作（令牌由开发用身份提供方签发）",
            "development only: act as this demo user (token from the development IdP)",
        ),
    ),
]
ScenarioOption = Annotated[
    str, typer.Option(help=bilingual("场景代码，例如 DIBAO_REVIEW", "scenario code, e.g. DIBAO_REVIEW"))
]
ReasonOption = Annotated[
    str, typer.Option("--reason", help=bilingual("理由（记入审计日志）", "why (recorded in the audit log)"))
]


def unknown_demo_user(username: str) -> typer.Exit:
    """Say no demo user has that name (`dev-token USERNAME`, `--as USERNAME`): exit 2, never a traceback."""
    typer.echo(
        f"没有名为 {username!r} 的演示用户；`grassroots dev-users` 列出全部演示用户。\n"
        f"no demo user named {username!r}; see `grassroots dev-users`",
        err=True,
    )
    return typer.Exit(2)


def require_dev_key(idp: DevIdentityProvider, username: str) -> DevIdentityProvider:
    """The development IdP, once its signing key is known to exist; never a new key made by a client.

    The gateway makes the key when it starts (under ``GRASSROOTS_DATA_DIR``, ``var`` of the directory it was
    started from). Run elsewhere, ``dev-token`` or ``--as`` used to make a key of their own there, and every
    token signed with it was refused as ``unknown_key`` ("please sign in again"), which no sign-in cures.
    A name no demo user has is told first (it needs no key)."""
    if username not in idp.usernames:
        raise unknown_demo_user(username)
    if not idp.key_path.exists():
        where = idp.key_path.resolve()
        typer.echo(
            f"找不到开发用身份提供方的签名密钥 {where}：它由网关（make demo）启动时生成。"
            "请在启动网关的项目目录中运行本命令，或把 GRASSROOTS_DATA_DIR 设为网关的数据目录。"
            "此处没有生成新密钥（网关不认它签发的令牌）。\n"
            f"no development identity provider key at {where}: the gateway (make demo) makes it when it "
            "starts. Run this command in the directory the gateway was started from, or set "
            "GRASSROOTS_DATA_DIR to its data directory. No new key was made here (the gateway would refuse "
            "tokens signed with it).",
            err=True,
        )
        raise typer.Exit(2)
    return idp


#: "Bearer " pasted in front of the token, as the header is written in the README's curl lines (twice, too:
#: "Bearer Bearer eyJ..." was joined into "Bearereyj..." and refused as malformed).
_BEARER_PREFIX = re.compile(r"(?:bearer\s+)+", re.IGNORECASE)
#: Quotes around the whole token (``GRASSROOTS_TOKEN='"eyJ..."'`` from an env file): no token holds one.
_QUOTED = re.compile(r"([\"'“‘])(.*)([\"'”’])", re.DOTALL)
#: What an access token (RFC 6750 b64token; a JWT's base64url and dots) can hold, and nothing else.
_TOKEN_CHARACTERS = re.compile(r"[\x21-\x7e]+")


def pasted_token(token: str) -> str:
    """The token as it was meant, from what was pasted: ``Bearer`` in front (once or twice), quotes, a space
    or newline around it or a line break inside it (copied from a wrapped terminal) are no part of any
    token. A trailing newline
    was sent as is and refused by the HTTP library, which the CLI reported as "cannot reach the gateway";
    a character no token holds (a full-width one, Chinese) is refused here, saying so."""
    cleaned = _BEARER_PREFIX.sub("", token.strip(), count=1)
    quoted = _QUOTED.fullmatch(cleaned.strip())
    if quoted:
        cleaned = _BEARER_PREFIX.sub("", quoted.group(2).strip(), count=1)
    cleaned = "".join(cleaned.split())
    if cleaned and not _TOKEN_CHARACTERS.fullmatch(cleaned):
        typer.echo(
            "登录凭证中有访问令牌不会含有的字符（例如中文或全角字符）：请重新复制完整的访问令牌，"
            "不要加入其他内容。\n"
            "the token holds characters no access token has (Chinese or full-width ones, for example): "
            "copy the whole access token again, and nothing else",
            err=True,
        )
        raise typer.Exit(2)
    return cleaned


def _token(token: str | None, as_user: str | None) -> str:
    if token and (cleaned := pasted_token(token)):
        return cleaned
    if as_user:
        from gateway.auth.devidp import DevIdentityProviderForbiddenError, UnknownDevUserError
        from gateway.auth.devusers import dev_identity_provider

        settings = load_settings()
        if not settings.dev_idp_enabled:
            settings = settings.model_copy(update={"dev_idp_enabled": True})
        try:
            return require_dev_key(dev_identity_provider(settings), as_user).mint(
                as_user, settings.oidc_audience
            )
        except UnknownDevUserError:
            raise unknown_demo_user(as_user) from None
        except DevIdentityProviderForbiddenError:
            typer.echo(
                "生产模式下不提供开发用身份提供方：--as 不可用，请用 --token 或环境变量 GRASSROOTS_TOKEN。\n"
                "the development identity provider is never available in production mode: "
                "--as cannot be used; give --token or GRASSROOTS_TOKEN",
                err=True,
            )
            raise typer.Exit(2) from None
    typer.echo(
        "需要登录凭证：--token、环境变量 GRASSROOTS_TOKEN，或在开发环境中用 --as 用户名。\n"
        "a token is needed: --token, GRASSROOTS_TOKEN, or --as USERNAME in development",
        err=True,
    )
    raise typer.Exit(2)


def read_file_text(path: Path) -> str:
    """A file named on the command line (UTF-8), or exit 2 saying why it cannot be read: never a traceback."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        typer.echo(f"无法读取 {path}（{exc.strerror}）。\nCannot read {path} ({exc.strerror}).", err=True)
    except UnicodeDecodeError:
        typer.echo(f"无法读取 {path}：不是 UTF-8 文本。\nCannot read {path}: it is not UTF-8 text.", err=True)
    raise typer.Exit(2)


def json_option(raw: str | None, name: str) -> Any:
    """``raw`` parsed as JSON, or exit 2 naming the option (and where the text stops being JSON)."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        typer.echo(
            f"{name} 必须是 JSON（第 {exc.lineno} 行第 {exc.colno} 列有误）。\n"
            f"{name} must be JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).",
            err=True,
        )
        raise typer.Exit(2) from None


def _note_empty_variable(env: str) -> None:
    """`export GRASSROOTS_SYSTEM_TOKEN=$(grassroots admission token --quiet)` with the token refused (the
    system suspended, a wrong secret) sets the variable empty: "set GRASSROOTS_SYSTEM_TOKEN" alone told
    her to do what she had just done."""
    if env in os.environ and not os.environ[env].strip():
        typer.echo(
            f"环境变量 {env} 已设置，但是空的：给它赋值的命令可能失败了，请看那条命令的提示。\n"
            f"{env} is set but empty: the command that set it may have failed; see what it said.",
            err=True,
        )


def read_secret(given: str | None, *, env: str, what_zh: str, what_en: str) -> str:
    """A secret from its option or ``env`` (``given``), else typed at a terminal without echo, else one
    line of standard input (``… | grassroots admission me``).

    Typer's own prompt falls back, without a terminal, to getpass's "GetPassWarning … input may be echoed"
    and, with nothing to read, an English "Aborted!": a script gets the variable to set instead (exit 2)."""
    if given:
        return given
    if sys.stdin.isatty():
        _note_empty_variable(env)
        typed: str = typer.prompt(f"{what_zh} / {what_en}", hide_input=True)
        return typed
    line = sys.stdin.readline().rstrip("\r\n")
    if line:
        return line
    _note_empty_variable(env)
    typer.echo(
        f"需要{what_zh}：请设置环境变量 {env}，或在终端中运行本命令（届时会提示输入，输入内容不显示）。\n"
        f"the {what_en} is needed: set {env}, or run the command in a terminal (it then asks, without echo)",
        err=True,
    )
    raise typer.Exit(2)


def unreachable(url: str, exc: httpx.HTTPError) -> typer.Exit:
    """Say the gateway cannot be reached (the exception's type only: its text may carry the URL's secrets)."""
    typer.echo(
        f"无法连接网关 {url}（{type(exc).__name__}）：请确认网关已启动、地址正确"
        "（另一地址用 --url 或环境变量 GRASSROOTS_URL 指定）。\n"
        f"cannot reach the gateway at {url}: {type(exc).__name__} "
        "(give another address with --url or GRASSROOTS_URL)",
        err=True,
    )
    return typer.Exit(3)


def refused(error: dict[str, Any]) -> typer.Exit:
    """Print the API's error body (code, Chinese message, then English) and give the exit for a refusal."""
    typer.echo(f"{error.get('error')}: {error.get('message')}\n{error.get('message_en')}", err=True)
    return typer.Exit(1)


def call(
    method: str,
    path: str,
    *,
    url: str,
    token: str | None,
    as_user: str | None,
    params: dict[str, Any] | None = None,
    body: Any = None,
    raw: bool = False,
    settled_by: Mapping[str, str] | None = None,
) -> Any:
    """Call the API; print the error (Chinese and English) and exit 1 on a non-2xx answer.

    ``settled_by`` names refusals (by error code) that mean what the command asked for already holds: the
    text given for the code is printed and the command exits 0 instead."""
    headers = {"Authorization": f"Bearer {_token(token, as_user)}"}
    try:
        resp = httpx.request(
            method,
            url.rstrip("/") + path,
            params={k: v for k, v in (params or {}).items() if v is not None},
            json=body,
            headers=headers,
            timeout=60.0,
        )
    except httpx.HTTPError as exc:
        raise unreachable(url, exc) from None
    if resp.status_code >= 400:
        try:
            err = resp.json()
        except ValueError:
            typer.echo(f"HTTP {resp.status_code}", err=True)
            raise typer.Exit(1) from None
        settled = (settled_by or {}).get(err.get("error", "")) if isinstance(err, dict) else None
        if settled is not None:
            typer.echo(settled)
            raise typer.Exit(0)
        raise refused(err)
    if raw:
        body = RawAnswer(resp.content)
        body.note = read_note(resp.headers)
        return body
    return resp.json() if resp.content else None


class RawAnswer(bytes):
    """A non-JSON answer's bytes (``ApiCall.raw``), with the note the gateway sent about it, if any
    (:mod:`gateway.answer_notes`): a renderer that saves the file says the note on the terminal too."""

    note: tuple[str, str] | None = None


def show(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))


#: What separates a list option's items as people type them: the ASCII comma, and the full-width comma and
#: the enumeration comma (、) a Chinese input method gives. No field code or tag holds any of them.
_LIST_SEPARATOR = re.compile("[,，、]")


def split_list(value: str) -> list[str]:
    """``"a, b,,c"`` (or ``"a，b、c"``) -> ``["a", "b", "c"]``: a comma-separated option, blanks dropped."""
    return [item.strip() for item in _LIST_SEPARATOR.split(value) if item.strip()]


@dataclass(frozen=True)
class ApiCall:
    """The request a command wants made; ``render`` shows the answer (pretty JSON unless said otherwise).

    ``raw`` hands ``render`` the body's bytes instead of parsed JSON (CSV, PDF, ...). ``then``, when given,
    takes the answer and returns a further request to make over the same connection (its ``render`` shows
    the result, and this one's is not used): for a command whose second request depends on the first
    answer, such as checking evidence locally before fetching the signed checkpoints to compare it with.
    ``settled_by`` maps the error codes of refusals that mean the request's aim already holds to what to
    say instead (exit 0; see :func:`call`)."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    body: Any = None
    raw: bool = False
    render: Callable[[Any], None] = show
    then: Callable[[Any], ApiCall] | None = None
    settled_by: Mapping[str, str] = field(default_factory=dict)


_CONNECTION = ("url", "token", "as_user")


def api_command(func: Callable[..., ApiCall]) -> Callable[..., None]:
    """Turn a function that describes an API request into a CLI command that makes it.

    The command gains ``--url``, ``--token`` and ``--as`` after its own parameters (so ``--help`` lists them
    last, as every admin command always has), authenticates, calls the API and renders the answer. Errors
    behave as :func:`call` says: exit 1 with the API's bilingual message, 2 without a token, 3 when the
    gateway cannot be reached. The function itself may still exit early (exit 2) on a bad argument."""
    signature = inspect.signature(func)
    clash = set(_CONNECTION) & set(signature.parameters)
    if clash:
        raise TypeError(f"{func.__name__} declares {sorted(clash)} itself; api_command adds them")
    # Typer reads the parameters from ``__signature__`` (evaluated, so the Annotated metadata survives the
    # module's ``from __future__ import annotations``) and the types from ``__annotations__``.
    hints = typing.get_type_hints(func, include_extras=True)
    own = [p.replace(annotation=hints[p.name]) for p in signature.parameters.values()]
    keyword = inspect.Parameter.KEYWORD_ONLY
    connection = [
        inspect.Parameter("url", keyword, default=DEFAULT_URL, annotation=UrlOption),
        inspect.Parameter("token", keyword, default=None, annotation=TokenOption),
        inspect.Parameter("as_user", keyword, default=None, annotation=AsOption),
    ]

    @functools.wraps(func)
    def command(
        *args: Any,
        url: str = DEFAULT_URL,
        token: str | None = None,
        as_user: str | None = None,
        **kwargs: Any,
    ) -> None:
        request = func(*args, **kwargs)
        while True:
            answer = call(
                request.method,
                request.path,
                url=url,
                token=token,
                as_user=as_user,
                params=request.params,
                body=request.body,
                raw=request.raw,
                settled_by=request.settled_by,
            )
            if request.then is None:
                break
            request = request.then(answer)
        request.render(answer)

    command.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*own, *connection], return_annotation=None
    )
    command.__annotations__ = {p.name: p.annotation for p in [*own, *connection]} | {"return": None}
    return command
