"""``/docs``: the interactive API documentation, served whole by the gateway itself.

FastAPI's own ``/docs`` page loads Swagger UI's script and style sheet from a public CDN. A gateway in a
government network (政务外网) that reaches no public host, or any browser offline, got a blank white page:
the integrators' documentation the README points at did not show. The page now loads Swagger UI from the
gateway's own address: the files come from the ``fastapi-offline`` package, which ships Swagger UI 5 (so the
gateway's OpenAPI 3.1 document renders) and is kept up to date; only its static files are used, not its
application class, so the gateway's own ``FastAPI`` subclass and routing stay as they are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib.resources import files
from pathlib import Path
from typing import Final

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

__all__ = ["DOCS_ASSETS", "DOCS_URL", "install_api_docs"]

DOCS_URL: Final = "/docs"
#: The files the page loads, served under ``/docs/``; nothing else of the package is reachable.
DOCS_ASSETS: Final = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}


def _asset_dir() -> Path:
    return Path(str(files("fastapi_offline") / "static"))


def install_api_docs(app: FastAPI) -> None:
    """Add ``GET /docs`` and its three files to ``app`` (built with ``docs_url=None``); none is in the
    OpenAPI document, none needs a sign-in (the document itself does not)."""
    directory = _asset_dir()
    missing = [name for name in DOCS_ASSETS if not (directory / name).is_file()]
    if missing:  # a broken install: say so at start, not with a blank page later
        raise RuntimeError(f"fastapi-offline lacks {', '.join(missing)} under {directory}")

    async def docs_page() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API 文档 / API documentation",
            swagger_js_url=f"{DOCS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_URL}/favicon.png",
            oauth2_redirect_url=None,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    app.add_api_route(DOCS_URL, docs_page, methods=["GET"], include_in_schema=False)
    for name, media_type in DOCS_ASSETS.items():
        app.add_api_route(
            f"{DOCS_URL}/{name}",
            _asset(directory / name, media_type),
            methods=["GET"],
            include_in_schema=False,
        )


def _asset(path: Path, media_type: str) -> Callable[[], Awaitable[FileResponse]]:
    async def asset() -> FileResponse:
        # Versioned with the installed package, so a day's caching is safe and spares the 1.5 MB script.
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})

    return asset
