"""The administrative CLI is a thin client of the gateway's HTTP API.

Every command authenticates with a bearer token (``--token`` or ``GRASSROOTS_TOKEN``; in development
``--as USERNAME`` mints one from the development IdP), so the CLI goes through exactly the same permission
checks and audit trail as the API.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import httpx
import typer

UrlOption = Annotated[
    str,
    typer.Option("--url", envvar="GRASSROOTS_URL", help="gateway base URL"),
]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", envvar="GRASSROOTS_TOKEN", help="bearer token (or use --as in development)"),
]
AsOption = Annotated[
    str | None,
    typer.Option("--as", help="development only: act as this demo user (token from the development IdP)"),
]
DEFAULT_URL = "http://127.0.0.1:8000"


def _token(token: str | None, as_user: str | None) -> str:
    if token:
        return token
    if as_user:
        from gateway.settings import Settings
        from gateway.wiring import dev_identity_provider

        settings = Settings()
        if not settings.dev_idp_enabled:
            settings = settings.model_copy(update={"dev_idp_enabled": True})
        return dev_identity_provider(settings).mint(as_user, settings.oidc_audience)
    typer.echo("a token is needed: --token, GRASSROOTS_TOKEN, or --as USERNAME in development", err=True)
    raise typer.Exit(2)


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
) -> Any:
    """Call the API; print the error (Chinese and English) and exit 1 on a non-2xx answer."""
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
        typer.echo(f"cannot reach the gateway at {url}: {type(exc).__name__}", err=True)
        raise typer.Exit(3) from None
    if resp.status_code >= 400:
        try:
            err = resp.json()
            typer.echo(f"{err.get('error')}: {err.get('message')}\n{err.get('message_en')}", err=True)
        except ValueError:
            typer.echo(f"HTTP {resp.status_code}", err=True)
        raise typer.Exit(1)
    if raw:
        return resp.content
    return resp.json() if resp.content else None


def show(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))


def default_url() -> str:
    return os.environ.get("GRASSROOTS_URL", DEFAULT_URL)
