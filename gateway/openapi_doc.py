"""The OpenAPI document as the gateway answers: its sign-in schemes and its one error shape.

FastAPI's document, left as generated, described another API than the one served:

* the bearer token was a plain ``authorization`` header *parameter* of 90 operations, which OpenAPI 3.1
  says a tool SHALL ignore (§4.8.12.1: a header parameter named ``Authorization`` is not defined here);
  no security scheme was declared, so ``/docs`` had no "Authorize" button and a client generator or a
  fuzzer (schemathesis) sent made-up values in that header instead of a sign-in token;
* every error answer was undocumented (401, 403, 404, 409, 429, 503...) but the 422, which was documented
  as FastAPI's ``{"detail": [...]}``: the gateway answers every error, 422 included, in its one shape
  (``gateway.errors``: ``error``, ``message`` in Chinese, ``message_en``, ``request_id``);
* operation ids were the function name glued to the path and method (``list_grants_api_v1_grants_get``).

:func:`house_openapi` rewrites the generated document: the header parameter becomes the operation's
``security`` requirement (a person's SSO token, a departmental system's access token, or a system's client
credentials at the token endpoint), the 422 and a ``default`` response (every other status) name the
``Error`` schema, and the FastAPI validation schemas no answer has are dropped. Operation ids are the
endpoint functions' names (``GatewayApp``'s ``generate_unique_id_function``), unique across the app.

The parameters and body fields carry the constraints the server checks (``pattern``, ``enum``,
``maxLength``...), each taken from the constant its validator uses, so a client generated from the document
refuses what the server would refuse as malformed. A ``pattern`` is read by ECMA-262 rules (JSON Schema
2020-12 §6.4): :func:`ecma_pattern` refuses a Python expression that could mean something else there.
"""

from __future__ import annotations

import re
from typing import Any, Final

from fastapi.routing import APIRoute

__all__ = ["ERROR_SCHEMA", "ecma_pattern", "house_openapi", "operation_id", "other_formats"]

#: A person signed in through SSO (OIDC access token, RFC 9068), on every endpoint but the systems'.
SIGN_IN: Final = "signIn"
#: A departmental system's access token from ``POST /oauth/token`` (``/api/v1/systems/...``).
SYSTEM_TOKEN: Final = "systemToken"  # noqa: S105 -- a scheme's name, not a secret
#: A system's client id and secret at the token endpoint (``client_secret_basic``, RFC 6749 §2.3.1).
CLIENT_BASIC: Final = "clientSecretBasic"

_SCHEMES: Final[dict[str, dict[str, Any]]] = {
    SIGN_IN: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "统一身份认证（OIDC）签发的访问令牌：Authorization: Bearer <token>。"
        "An access token from the SSO identity provider (OIDC, RFC 9068): Authorization: Bearer <token>.",
    },
    SYSTEM_TOKEN: {
        "type": "oauth2",
        "description": "已准入的部门业务系统以客户端凭证换取的访问令牌。"
        "An admitted departmental system's access token (client credentials grant, RFC 6749 §4.4).",
        "flows": {"clientCredentials": {"tokenUrl": "/oauth/token", "scopes": {}}},
    },
    CLIENT_BASIC: {
        "type": "http",
        "scheme": "basic",
        "description": "系统的 client_id 与 client_secret（也可在表单中提交，或用 private_key_jwt）。"
        "The system's client_id and client_secret (or in the form, or private_key_jwt instead).",
    },
}

ERROR_SCHEMA: Final[dict[str, Any]] = {
    "title": "Error",
    "type": "object",
    "description": "每个错误答复的同一形式：代码、中文说明、英文说明、请求编号；个别错误另附字段"
    "（如 fields、max_page_size、limit_bytes）。从不含请求中提交的值。"
    "Every error answer's one shape: a code, what to do in Chinese and in English, the request id; some "
    "add fields of their own (fields, max_page_size, limit_bytes...). Never a value the request sent.",
    "required": ["error", "message", "message_en"],
    "properties": {
        "error": {"type": "string", "description": "machine-readable code, e.g. no_active_grant"},
        "message": {"type": "string", "description": "说明与处理办法（简体中文）"},
        "message_en": {"type": "string", "description": "the same in English"},
        "request_id": {"type": ["string", "null"], "description": "as in the X-Request-ID header"},
        "fields": {
            "type": "array",
            "items": {"type": "string"},
            "description": "the parameters a 422 names (never their values)",
        },
    },
    "additionalProperties": True,
}

_ERROR_REF: Final = {"$ref": "#/components/schemas/Error"}
_ERROR_CONTENT: Final = {"application/json": {"schema": _ERROR_REF}}
_DEFAULT_RESPONSE: Final = {
    "description": "错误（401 未登录、403 无权限、404、409、429、502/503/504 等），统一形式。"
    "An error (401, 403, 404, 409, 429, 502/503/504...), in the one error shape.",
    "content": _ERROR_CONTENT,
}
_FASTAPI_VALIDATION_SCHEMAS: Final = ("HTTPValidationError", "ValidationError")


def other_formats(*media_types: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for an endpoint whose ``format`` parameter also answers in ``media_types`` (a CSV
    table, a printable page, a PDF), besides JSON: the document named JSON alone."""
    return {
        200: {
            "description": "JSON，或按 format 参数给出的格式。JSON, or the format asked for (format).",
            "content": {
                "application/json": {},
                **{m: {"schema": {"type": "string", "format": "binary"}} for m in media_types},
            },
        }
    }


#: Python syntax ECMA-262 reads otherwise or not at all: ``\A``/``\Z`` anchors, named groups and
#: backreferences in Python's spelling, atomic groups, inline flags and comments, possessive quantifiers,
#: ``{,n}`` (a literal in ECMA-262), and the escapes whose classes differ (``\s``, ``\b``: Unicode spaces
#: and word boundaries differ; ``\d``/``\w`` match other scripts' digits and letters in Python unless
#: ``re.ASCII``).
_NOT_ECMA: Final = re.compile(r"\\[AZzGsSbB]|\(\?P|\(\?<(?![=!])|\(\?>|\(\?[aiLmsux#-]|[*+?}]\+|\{,")
_UNICODE_CLASSES: Final = re.compile(r"\\[dDwW]")


_FLAGS: Final = re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE


def ecma_pattern(expression: re.Pattern[str] | str, *, anchored: bool = True) -> str:
    """``expression``'s source as an OpenAPI ``pattern``; ValueError when ECMA-262 could read it otherwise.

    Checked when the document is built (and by the tests), so a validator's expression written with Python
    syntax fails the build instead of documenting a pattern a client reads differently. A ``pattern`` is
    searched for, not matched whole: the expression of a validator that uses ``fullmatch`` must say
    ``^...$`` itself (``anchored``), and then both read it alike (``fullmatch`` leaves no trailing newline
    for Python's ``$`` to stop before)."""
    if isinstance(expression, str):
        expression = re.compile(expression)
    source = expression.pattern
    if expression.flags & _FLAGS:
        raise ValueError(f"{source!r} is compiled with flags a pattern cannot carry")
    if anchored and not (source.startswith("^") and source.endswith("$") and not source.endswith("\\$")):
        raise ValueError(
            f"{source!r} is not anchored (^...$): as a pattern it would match any text holding it"
        )
    # An escaped backslash is no escape: drop the pairs before looking for the constructs.
    bare = source.replace("\\\\", "")
    found = _NOT_ECMA.search(bare)
    if found is None and not expression.flags & re.ASCII:
        found = _UNICODE_CLASSES.search(bare)
    if found is not None:
        raise ValueError(f"{found.group()!r} in {source!r} means something else in ECMA-262 (or nothing)")
    return source


def operation_id(route: APIRoute) -> str:
    """The endpoint function's name (``list_grants``): what the code calls it, and unique in this app."""
    return route.name


def _scheme_for(path: str) -> str:
    if path == "/oauth/token":
        return CLIENT_BASIC
    if path.startswith("/api/v1/systems/"):
        return SYSTEM_TOKEN
    return SIGN_IN


def house_openapi(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` (FastAPI's generated document) rewritten in place as described in the module; returned."""
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    components["securitySchemes"] = _SCHEMES
    schemas["Error"] = ERROR_SCHEMA
    for path, item in spec.get("paths", {}).items():
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            parameters = operation.get("parameters", [])
            kept = [
                p
                for p in parameters
                if not (p.get("in") == "header" and p.get("name", "").lower() == "authorization")
            ]
            if len(kept) != len(parameters):
                scheme = _scheme_for(path)
                # The token endpoint also takes the secret in the form, or a signed assertion: optional.
                operation["security"] = [{scheme: []}, {}] if scheme == CLIENT_BASIC else [{scheme: []}]
            if kept:
                operation["parameters"] = kept
            else:
                operation.pop("parameters", None)
            responses = operation["responses"]
            if "422" in responses:
                responses["422"] = {
                    "description": "请求参数有误（说明哪个参数、须为何值，不复述所填的值）。"
                    "Invalid request: names the parameter and what it takes, never the value sent.",
                    "content": _ERROR_CONTENT,
                }
            responses.setdefault("default", _DEFAULT_RESPONSE)
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    return spec
