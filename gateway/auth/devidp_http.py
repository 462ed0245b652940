"""The development identity provider's HTTP endpoints (discovery, JWKS, token), mounted by the gateway
under the path its issuer names. Apart from `gateway.auth.devidp`, which mints tokens with no web stack
(the command line's ``--as``)."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.auth.devidp import (
    DEV_GRANT_TYPE,
    DevIdentityProvider,
    UnknownDevUserError,
    _refuse_in_production,
)


def _oauth_error(status: int, code: str, message_zh: str, message_en: str) -> JSONResponse:
    # RFC 6749 §5.2 names the field "error"; the house shape adds the bilingual messages.
    return JSONResponse(
        {"error": code, "message": message_zh, "message_en": message_en, "error_description": message_en},
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


def router(idp: DevIdentityProvider, *, production: bool = False) -> APIRouter:
    """HTTP endpoints of the development provider; mount under the path its issuer names."""
    _refuse_in_production(production)
    api = APIRouter(tags=["dev-idp"])

    @api.get("/.well-known/openid-configuration")
    async def openid_configuration() -> JSONResponse:
        return JSONResponse(idp.discovery())

    @api.get("/jwks.json")
    async def jwks() -> JSONResponse:
        return JSONResponse(idp.jwks(), headers={"Cache-Control": "public, max-age=300"})

    @api.post("/token")
    async def token(request: Request) -> JSONResponse:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return _oauth_error(
                400,
                "invalid_request",
                "请求格式错误：应为表单编码。",
                "The request must be form-encoded (application/x-www-form-urlencoded).",
            )
        body = await request.body()
        try:
            form = parse_qs(
                body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=16
            )
        except (UnicodeDecodeError, ValueError):
            return _oauth_error(
                400, "invalid_request", "请求参数有误。", "The request parameters are not valid."
            )
        # RFC 6749 §3.2: request parameters must not be repeated.
        if any(len(values) != 1 for values in form.values()):
            return _oauth_error(
                400, "invalid_request", "请求参数不能重复。", "A request parameter was given more than once."
            )
        fields = {name: values[0] for name, values in form.items()}
        if fields.get("grant_type") != DEV_GRANT_TYPE:
            return _oauth_error(
                400,
                "unsupported_grant_type",
                "不支持该授权方式。",
                f"Only grant_type={DEV_GRANT_TYPE} is supported.",
            )
        username = fields.get("username", "")
        audience = fields.get("audience", "")
        if not username or not audience:
            return _oauth_error(
                400,
                "invalid_request",
                "缺少用户名或受众参数。",
                "Both username and audience are required.",
            )
        ttl_s = idp.token_ttl_s
        try:
            access_token = idp.mint(username, audience, ttl_s=ttl_s)
        except UnknownDevUserError as error:
            return _oauth_error(400, "invalid_grant", error.message_zh, error.message_en)
        # RFC 6749 §5.1: token responses must not be cached.
        return JSONResponse(
            {"access_token": access_token, "token_type": "Bearer", "expires_in": ttl_s},
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    return api
