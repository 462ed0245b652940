"""What every stand-in departmental system shares: how it recognises the gateway, its one error shape, the
app scaffolding with its fault modes, and its command line.

A departmental system trusts nobody but the gateway, and checks two things on every data request:

* the gateway's **service token** (``Authorization: Bearer``): a short-lived JWT the gateway signs with
  Ed25519 (RFC 8037), ``iss=grassroots-gateway``, ``aud`` = this system's id;
* when configured (``--gateway-credentials FILE``), the **API key this system issued to the gateway**
  (``X-Api-Key``). The file holds the SHA-256 digests of the keys it accepts, one ``sha256:<hex>`` a line,
  never the keys themselves; it is re-read when it changes, so a department rotates by issuing a new key
  (``--issue-gateway-credential``: appended, printed once), letting the gateway switch to it, then retiring
  the old one (``--retire-old-gateway-credentials``). A missing or unreadable file accepts no key.

Fault modes let the gateway's tests watch a system fail: ``slow``, ``garbage``, ``error``, ``out_of_scope``
(the jurisdiction filter ignored), ``drop`` (the connection closed without an answer), plus any a system
adds of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from joserfc import jwt
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import OKPKey
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings
from sqlalchemy import Engine, create_engine, event
from uvicorn.protocols.http.h11_impl import H11Protocol

from demoworld.world import DEFAULT_SEED, normalise_division_code, significant_prefix

GATEWAY_ISSUER = "grassroots-gateway"
MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 20
#: The fault modes every stand-in system has; a system may add its own.
BASE_FAULTS: tuple[str, ...] = ("none", "slow", "garbage", "error", "out_of_scope", "drop")

# RFC 8725 §3.1: accept only the algorithms this key can verify. "EdDSA" is what the gateway sends;
# "Ed25519" is the fully-specified name RFC 9864 introduces for the same signature over this curve.
ACCEPTED_ALGORITHMS = ("EdDSA", "Ed25519")
MAX_TOKEN_LIFETIME_SECONDS = 300
CLOCK_LEEWAY_SECONDS = 30

#: Where the gateway presents the API key a department issued to it (gateway.upstream.CREDENTIAL_HEADER).
CREDENTIAL_HEADER = "X-Api-Key"
_DIGEST_LINE = re.compile(r"^sha256:([0-9a-f]{64})$")

R = TypeVar("R")
R_contra = TypeVar("R_contra", contravariant=True)


# --- storage ---------------------------------------------------------------------------------------------


def open_database(db_path: str | Path) -> Engine:
    """The system's own SQLite database (WAL), created on first use."""
    path = Path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _wal(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    return engine


# --- the jurisdiction pushed down ------------------------------------------------------------------------


class ScopeError(ValueError):
    """The org_prefix pushed down by the caller is not a division code."""


def parse_scope(org_prefixes: Sequence[str]) -> tuple[str, ...]:
    """Significant prefixes of the division codes the caller pushed down, deduplicated and sorted."""
    if not org_prefixes:
        raise ScopeError("org_prefix is required")
    prefixes: set[str] = set()
    for raw in org_prefixes:
        try:
            prefixes.add(significant_prefix(normalise_division_code(raw.strip())))
        except ValueError:
            raise ScopeError("org_prefix must be a division code of 2 to 12 digits") from None
    return tuple(sorted(prefixes))


# --- recognising the gateway: its service token ----------------------------------------------------------


class GatewayTokenError(Exception):
    """The bearer token is missing or not one the gateway minted for this registry just now."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class GatewayTokenVerifier:
    """Checks the gateway's service token: Ed25519 signature, typ, iss, aud, exp, iat (RFC 8725 §3).

    Tokens are short-lived by contract: one whose ``exp`` lies more than five minutes ahead is refused,
    so a leaked token cannot be replayed for long.
    """

    def __init__(
        self,
        public_key_pem: bytes,
        *,
        audience: str,
        issuer: str = GATEWAY_ISSUER,
        leeway: int = CLOCK_LEEWAY_SECONDS,
        max_lifetime: int = MAX_TOKEN_LIFETIME_SECONDS,
        now: Callable[[], float] = time.time,
    ) -> None:
        key = OKPKey.import_key(public_key_pem)
        if key.curve_name != "Ed25519":
            raise ValueError("the gateway key must be an Ed25519 public key")
        self._key = key
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        self._now = now

    def verify(self, authorization: str | None) -> dict[str, Any]:
        if not authorization:
            raise GatewayTokenError("missing bearer token")
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            raise GatewayTokenError("authorization is not a bearer token")
        try:
            with warnings.catch_warnings():
                # joserfc flags "EdDSA" as superseded by RFC 9864; the signature is the same Ed25519.
                warnings.simplefilter("ignore", SecurityWarning)
                token = jwt.decode(value, self._key, algorithms=list(ACCEPTED_ALGORITHMS))
        except (JoseError, ValueError, TypeError, KeyError):
            raise GatewayTokenError("token is malformed or its signature does not verify") from None
        if str(token.header.get("typ", "")).upper() != "JWT":
            raise GatewayTokenError("token type is not JWT")
        now = int(self._now())
        registry = jwt.JWTClaimsRegistry(
            now=now,
            leeway=self._leeway,
            iss={"essential": True, "value": self._issuer},
            aud={"essential": True, "value": self._audience},
            exp={"essential": True},
            iat={"essential": True},
        )
        try:
            registry.validate(token.claims)
        except JoseError as exc:
            raise GatewayTokenError(f"token claims rejected: {exc.error}") from None
        exp, iat = token.claims["exp"], token.claims["iat"]
        if not isinstance(exp, int | float) or not isinstance(iat, int | float):
            raise GatewayTokenError("exp and iat must be numeric dates")
        if exp > now + self._max_lifetime + self._leeway:
            raise GatewayTokenError("token lives longer than the registry accepts")
        if iat > now + self._leeway:
            raise GatewayTokenError("token issued in the future")
        return dict(token.claims)


# --- recognising the gateway: the API key this system issued to it ---------------------------------------


class GatewayCredentialError(Exception):
    """No API key, or one this system did not issue (or has retired)."""


def credential_digest(credential: str) -> str:
    return "sha256:" + hashlib.sha256(credential.encode("utf-8")).hexdigest()


def accepted_digests(path: Path) -> list[str]:
    """The accepted digests in file order; a malformed line makes the whole file unusable (fail closed)."""
    digests: list[str] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not _DIGEST_LINE.match(line):
            raise ValueError(f"{path}:{number}: expected sha256:<64 hex digits>")
        digests.append(line)
    return digests


def _write_digests(path: Path, digests: Sequence[str]) -> None:
    """Atomically (write, then rename), so a registry reading it never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    body = "# SHA-256 digests of the API keys issued to the gateway; one a line, newest last\n"
    tmp.write_text(body + "".join(f"{d}\n" for d in digests), encoding="utf-8")
    os.replace(tmp, path)


def issue_gateway_credential(path: Path) -> str:
    """A new API key for the gateway: its digest is appended to ``path`` (the old keys stay accepted until
    retired), the key itself is returned once and stored nowhere on this side."""
    credential = "gk_" + secrets.token_urlsafe(32)
    existing = accepted_digests(path) if path.exists() else []
    _write_digests(path, [*existing, credential_digest(credential)])
    return credential


def retire_old_gateway_credentials(path: Path) -> int:
    """Keep only the newest accepted key; returns how many were retired."""
    existing = accepted_digests(path)
    _write_digests(path, existing[-1:])
    return max(0, len(existing) - 1)


class GatewayCredentials:
    """The API keys this system accepts from the gateway, as digests read from a file.

    The file is re-read whenever it changes (checked on each request: one ``stat``), so issuing or retiring
    a key takes effect on the next request without a restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._accepted: tuple[bytes, ...] = ()

    def _current(self) -> tuple[bytes, ...]:
        try:
            st = os.stat(self.path)
        except OSError:
            return ()
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                try:
                    accepted = tuple(d.encode("ascii") for d in accepted_digests(self.path))
                except (OSError, ValueError) as exc:
                    print(f"gateway credentials not usable, accepting none: {exc}", file=sys.stderr)
                    accepted = ()
                self._stamp, self._accepted = stamp, accepted
            return self._accepted

    def check(self, presented: str | None) -> None:
        if not presented:
            raise GatewayCredentialError("missing API key")
        digest = credential_digest(presented).encode("ascii")
        # Compare with every accepted digest in constant time; no early exit on a match.
        matched = False
        for accepted in self._current():
            matched |= hmac.compare_digest(digest, accepted)
        if not matched:
            raise GatewayCredentialError("API key not issued by this system, or retired")


# --- the HTTP app ----------------------------------------------------------------------------------------

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _request_id(request: Request) -> str:
    supplied = request.headers.get("x-request-id", "")
    return supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex


def error_response(
    request: Request,
    status: int,
    error: str,
    message_zh: str,
    message_en: str,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The one error shape: ``{"error", "message", "message_zh", "message_en", "request_id"}``."""
    return JSONResponse(
        status_code=status,
        content={
            "error": error,
            "message": message_en,
            "message_zh": message_zh,
            "message_en": message_en,
            "request_id": _request_id(request),
        },
        headers=dict(headers or {}),
    )


def scope_required(request: Request) -> JSONResponse:
    return error_response(
        request,
        400,
        "scope_required",
        "必须提供有效的辖区代码（org_prefix），本系统不提供无范围的查询。",
        "A jurisdiction (org_prefix, a division code) is required; the registry never serves unscoped data.",
    )


def not_found(request: Request) -> JSONResponse:
    return error_response(request, 404, "not_found", "未找到该记录。", "No such record.")


class LookupIn(BaseModel):
    """The body of a record-id lookup: the person's ID number, in the body so no URL, access log or proxy
    ever holds it."""

    id_number: str = Field(min_length=15, max_length=24, repr=False)


#: The most record ids one lookup answers; a person has a handful of records in any registry.
MAX_LOOKUP_IDS = 1000


def add_lookup_route(
    departmental: Departmental,
    collection: str,
    find: Callable[[str, tuple[str, ...]], Sequence[str]],
) -> None:
    """``POST /<collection>/lookup?org_prefix=CODE`` with ``{"id_number": "..."}`` -> ``{"ids": [...]}``:
    the ids of the records in ``collection`` that belong to the person with that ID number, inside the
    jurisdiction pushed down (required, as on every data request), ordered by id; ``{"ids": []}`` when
    there are none. Only ids, never the records: the gateway asks this to tie attempts at a record id to a
    complaint about its person, and needs nothing else. Recognises the gateway exactly as the data
    requests do, and fails by the same fault modes."""
    app = departmental.app

    @app.post(
        f"/{collection}/lookup",
        dependencies=[Depends(departmental.authenticate)],
        name=f"lookup_{collection}",
    )
    async def lookup_ids(
        request: Request,
        body: LookupIn,
        org_prefix: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies query defaults
    ) -> Response:
        try:
            scope = parse_scope(org_prefix)
        except ScopeError:
            return scope_required(request)
        faulty = await departmental.fault_response(request)
        if faulty is not None:
            return faulty
        wanted = body.id_number.strip().upper()
        return JSONResponse({"ids": sorted(find(wanted, scope))[:MAX_LOOKUP_IDS]})


def page_response(matching: Sequence[Mapping[str, str]], page: int, page_size: int) -> JSONResponse:
    """One page of ``matching`` (ordered by id) as ``{"items", "total", "next_page"}``."""
    start = (page - 1) * page_size
    items = list(matching[start : start + page_size])
    next_page = page + 1 if start + page_size < len(matching) else None
    return JSONResponse({"items": items, "total": len(matching), "next_page": next_page})


@dataclass(frozen=True)
class SystemProfile:
    """Who a stand-in system is: its id (the audience of the gateway's tokens), its command, its name, the
    collections it serves, its fault modes and its own wording of an internal error."""

    audience: str
    prog: str
    title: str
    description: str
    collections: tuple[str, ...]
    faults: tuple[str, ...]
    internal_error_zh: str


@dataclass(frozen=True)
class Departmental:
    """The scaffolding a stand-in system's routes are built on: the app (health check and error handlers
    already in place), the dependency that recognises the gateway, and the fault modes."""

    app: FastAPI
    fault: str
    authenticate: Callable[[Request], Awaitable[None]]
    fault_response: Callable[[Request], Awaitable[Response | None]]


def departmental_app(
    profile: SystemProfile,
    verifier: GatewayTokenVerifier,
    credentials: GatewayCredentials | None,
    *,
    fault: str,
    slow_seconds: float,
) -> Departmental:
    audience, faults, internal_error_zh = profile.audience, profile.faults, profile.internal_error_zh
    if fault not in faults:
        raise ValueError(f"unknown fault mode {fault!r}")
    app = FastAPI(title=profile.title, docs_url=None, redoc_url=None)

    async def authenticate(request: Request) -> None:
        verifier.verify(request.headers.get("authorization"))
        if credentials is not None:
            credentials.check(request.headers.get(CREDENTIAL_HEADER))

    def answer(
        status: int, error: str, zh: str, en: str, headers: Mapping[str, str] | None = None
    ) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
        async def handler(request: Request, _exc: Exception) -> JSONResponse:
            return error_response(request, status, error, zh, en, headers)

        return handler

    # RFC 6750 §3: tell the client which scheme and why, without echoing the token or the key.
    app.add_exception_handler(
        GatewayTokenError,
        answer(
            401,
            "unauthorized",
            "调用方未通过认证：需要网关签发的有效令牌。",
            "The caller is not authenticated: a valid gateway-issued token is required.",
            {"WWW-Authenticate": f'Bearer realm="{audience}", error="invalid_token"'},
        ),
    )
    app.add_exception_handler(
        GatewayCredentialError,
        answer(
            401,
            "gateway_credential_invalid",
            f"调用方未出示本系统签发给网关的有效访问密钥（{CREDENTIAL_HEADER}）。",
            f"The caller did not present a valid API key issued by this system to the gateway "
            f"({CREDENTIAL_HEADER}).",
            {"WWW-Authenticate": f'ApiKey realm="{audience}"'},
        ),
    )
    app.add_exception_handler(
        RequestValidationError,
        answer(
            422,
            "invalid_request",
            f"请求参数无效（page 从 1 开始，page_size 为 1 至 {MAX_PAGE_SIZE}）。",
            f"Invalid query parameters (page starts at 1, page_size is 1 to {MAX_PAGE_SIZE}).",
        ),
    )

    async def fault_response(request: Request) -> Response | None:
        if fault == "slow":
            await asyncio.sleep(slow_seconds)
        elif fault == "garbage":
            return Response(content=b"<html>\x00\xff not json {", media_type="application/json")
        elif fault == "error":
            return error_response(
                request, 500, "internal_error", internal_error_zh, "Registry internal error."
            )
        return None

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return Departmental(app=app, fault=fault, authenticate=authenticate, fault_response=fault_response)


def dropping_protocol(collections: Sequence[str]) -> type[H11Protocol]:
    """Fault ``drop``: close the connection on a data request without writing a byte of response.

    An ASGI app cannot do that (uvicorn answers 500 when the app fails before responding), so the fault
    lives in the HTTP protocol. Requests on loopback arrive with their request line in the first chunk,
    which is all this inspects.

    The close is a half-close (FIN) that then reads and discards the rest of the request until the client
    closes: closing outright while a POST body is still arriving makes the kernel answer that body with a
    reset, and the client sees "connection reset" or "disconnected" by timing."""
    lines = tuple(f"{verb} /{name}".encode() for verb in ("GET", "HEAD", "POST") for name in collections)

    class DroppingH11Protocol(H11Protocol):
        DATA_REQUEST_LINES = lines
        LINGER_SECONDS = 5.0
        dropping = False

        def data_received(self, data: bytes) -> None:
            if self.dropping:
                return  # the rest of a dropped request: read and discarded
            if data.startswith(self.DATA_REQUEST_LINES):
                self.dropping = True
                self.transport.write_eof()
                self.loop.call_later(self.LINGER_SECONDS, self.transport.close)
                return
            super().data_received(data)

    return DroppingH11Protocol


# --- command line ----------------------------------------------------------------------------------------


class DepartmentalSettings(BaseSettings):
    """Environment defaults for a system's command line; each system sets its own prefix and defaults."""

    host: str = "127.0.0.1"
    port: int
    db: str
    gateway_public_key: str | None = None
    gateway_credentials: str | None = None
    fault: str = "none"
    slow_seconds: float = 10.0
    seed: int = DEFAULT_SEED


class CreateApp(Protocol[R_contra]):
    """A system's ``create_app``: its in-memory registry and the gateway checks in, the app out."""

    def __call__(
        self,
        registry: R_contra,
        verifier: GatewayTokenVerifier,
        *,
        credentials: GatewayCredentials | None = None,
        fault: str = "none",
        slow_seconds: float = 10.0,
    ) -> FastAPI: ...


def _parser(prog: str, description: str, settings: DepartmentalSettings, faults: Sequence[str]) -> Any:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.port)
    parser.add_argument("--db", default=settings.db, help="SQLite file of this registry (created and seeded)")
    parser.add_argument(
        "--gateway-public-key",
        default=settings.gateway_public_key,
        help="PEM file with the gateway's Ed25519 public key (verifies its service tokens)",
    )
    parser.add_argument(
        "--gateway-credentials",
        default=settings.gateway_credentials,
        help=f"file of SHA-256 digests of the API keys issued to the gateway; when given, every data "
        f"request must also carry one of them in {CREDENTIAL_HEADER}",
    )
    parser.add_argument(
        "--issue-gateway-credential",
        action="store_true",
        help="issue a new API key for the gateway (digest appended to --gateway-credentials), print it, exit",
    )
    parser.add_argument(
        "--retire-old-gateway-credentials",
        action="store_true",
        help="keep only the newest key in --gateway-credentials, then exit",
    )
    parser.add_argument("--fault", choices=faults, default=settings.fault)
    parser.add_argument("--slow-seconds", type=float, default=settings.slow_seconds)
    parser.add_argument("--seed", type=int, default=settings.seed, help="demo world seed used when seeding")
    parser.add_argument("--seed-only", action="store_true", help="create and seed the database, then exit")
    return parser


def run_departmental(
    argv: Sequence[str] | None,
    profile: SystemProfile,
    settings: DepartmentalSettings,
    *,
    seed: Callable[[Engine, int], Mapping[str, int]],
    load: Callable[[Engine], R],
    create_app: CreateApp[R],
) -> int:
    """The ``main`` of a stand-in system: manage its gateway keys, seed its database, or serve."""
    args = _parser(profile.prog, profile.description, settings, profile.faults).parse_args(argv)
    if args.issue_gateway_credential or args.retire_old_gateway_credentials:
        if not args.gateway_credentials:
            print("error: --gateway-credentials FILE is required", file=sys.stderr)
            return 2
        path = Path(args.gateway_credentials)
        try:
            if args.issue_gateway_credential:
                print(issue_gateway_credential(path))
            else:
                print(json.dumps({"retired": retire_old_gateway_credentials(path)}))
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    engine = open_database(args.db)
    stored = seed(engine, args.seed)
    if args.seed_only:
        print(json.dumps({"db": str(args.db), **stored}))
        return 0
    if not args.gateway_public_key:
        print("error: --gateway-public-key is required to serve (PEM, Ed25519)", file=sys.stderr)
        return 2
    try:
        verifier = GatewayTokenVerifier(Path(args.gateway_public_key).read_bytes(), audience=profile.audience)
    except (OSError, ValueError, JoseError):
        print("error: cannot read an Ed25519 public key (PEM) from --gateway-public-key", file=sys.stderr)
        return 2
    credentials: GatewayCredentials | None = None
    if args.gateway_credentials:
        path = Path(args.gateway_credentials)
        if not path.is_file():
            # Configured to require a key but with none to accept: refuse to start rather than serve open.
            print(f"error: --gateway-credentials {path} does not exist", file=sys.stderr)
            return 2
        credentials = GatewayCredentials(path)
    registry = load(engine)
    engine.dispose()
    app = create_app(
        registry, verifier, credentials=credentials, fault=args.fault, slow_seconds=args.slow_seconds
    )

    import uvicorn

    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        http=dropping_protocol(profile.collections) if args.fault == "drop" else "auto",
        log_level="warning",
        access_log=False,
        # A stand-in system: stop promptly even while a "slow" fault request is still sleeping.
        timeout_graceful_shutdown=1,
    )
    uvicorn.Server(config).run()
    return 0
