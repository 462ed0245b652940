"""A stand-in civil-affairs residents registry: a departmental system with its own app and database.

It plays the upstream the gateway calls. It trusts nobody but the gateway: every data request carries a
short-lived JWT the gateway signs with Ed25519, and the registry only ever serves records inside the
jurisdiction the gateway pushes down (``org_prefix``). Fault modes let the gateway's tests watch it fail.

Run::

    python -m demoworld.civil_affairs --host 127.0.0.1 --port 8101 --db var/civil_affairs.db \\
        --gateway-public-key var/gateway_upstream_ed25519.pub.pem \\
        [--fault none|slow|garbage|error|out_of_scope|drop] [--slow-seconds 10]
    python -m demoworld.civil_affairs --seed-only --db var/civil_affairs.db
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from joserfc import jwt
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import OKPKey
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Engine, String, create_engine, event, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from uvicorn.protocols.http.h11_impl import H11Protocol

from demoworld.world import DEFAULT_SEED, normalise_division_code, significant_prefix

Fault = Literal["none", "slow", "garbage", "error", "out_of_scope", "drop"]
FAULTS: tuple[str, ...] = get_args(Fault)

GATEWAY_ISSUER = "grassroots-gateway"
REGISTRY_AUDIENCE = "civil-affairs-registry"
MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 20

# RFC 8725 §3.1: accept only the algorithms this key can verify. "EdDSA" is what the gateway sends;
# "Ed25519" is the fully-specified name RFC 9864 introduces for the same signature over this curve.
ACCEPTED_ALGORITHMS = ("EdDSA", "Ed25519")
MAX_TOKEN_LIFETIME_SECONDS = 300
CLOCK_LEEWAY_SECONDS = 30

RESIDENT_FIELDS = (
    "id",
    "name",
    "id_number",
    "mobile",
    "address",
    "birth_date",
    "household_no",
    "dibao_status",
    "village_code",
    "remark",
)


# --- storage: the registry's own database ----------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class ResidentRow(Base):
    """The registry's own table. It is not the gateway's schema, so no Alembic: this system is a stand-in."""

    __tablename__ = "residents"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(32))
    id_number: Mapped[str] = mapped_column(String(18), unique=True)
    mobile: Mapped[str] = mapped_column(String(11))
    address: Mapped[str] = mapped_column(String(200))
    birth_date: Mapped[str] = mapped_column(String(10))
    household_no: Mapped[str] = mapped_column(String(16))
    dibao_status: Mapped[str] = mapped_column(String(8))
    village_code: Mapped[str] = mapped_column(String(12), index=True)
    remark: Mapped[str] = mapped_column(String(400))

    def __repr__(self) -> str:
        return f"ResidentRow(id={self.id!r})"


class RegistryMeta(Base):
    __tablename__ = "registry_meta"

    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


def open_database(db_path: str | Path) -> Engine:
    path = Path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _wal(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    return engine


def seed_database(engine: Engine, seed: int = DEFAULT_SEED) -> int:
    """Create the tables and, when the registry is empty, load the demo world's residents.

    Returns the number of residents stored. An already-seeded database is left as it is: it is this
    system's own store, not a cache of the demo world.
    """
    from demoworld.world import build_world

    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        stored = session.scalar(select(func.count()).select_from(ResidentRow)) or 0
        if stored:
            return stored
        world = build_world(seed)
        session.add_all(ResidentRow(**r.to_dict()) for r in world.residents)
        session.add(RegistryMeta(key="world_seed", value=str(seed)))
        return len(world.residents)


# --- the in-memory registry ------------------------------------------------------------------------------


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


_SCOPE_CACHE_LIMIT = 4096


class ResidentRegistry:
    """All residents, loaded once and indexed by village, so the list route never touches the database."""

    def __init__(self, records: Sequence[Mapping[str, str]]) -> None:
        ordered = sorted((dict(r) for r in records), key=lambda r: r["id"])
        self._all: list[dict[str, str]] = ordered
        self._by_id: dict[str, dict[str, str]] = {r["id"]: r for r in ordered}
        self._by_village: dict[str, list[dict[str, str]]] = {}
        for record in ordered:
            self._by_village.setdefault(record["village_code"], []).append(record)
        self._scoped: dict[tuple[str, ...], list[dict[str, str]]] = {}

    @classmethod
    def from_database(cls, engine: Engine) -> ResidentRegistry:
        with Session(engine) as session:
            rows = session.scalars(select(ResidentRow)).all()
            return cls([{name: getattr(row, name) for name in RESIDENT_FIELDS} for row in rows])

    def __len__(self) -> int:
        return len(self._all)

    def in_scope(self, scope: tuple[str, ...] | None) -> list[dict[str, str]]:
        """Records whose village lies under any prefix of ``scope``, ordered by id; None means all."""
        if scope is None:
            return self._all
        cached = self._scoped.get(scope)
        if cached is None:
            if len(self._scoped) >= _SCOPE_CACHE_LIMIT:
                self._scoped.clear()
            villages = [v for v in self._by_village if any(v.startswith(p) for p in scope)]
            if len(villages) == 1:
                cached = self._by_village[villages[0]]
            else:
                cached = sorted((r for v in villages for r in self._by_village[v]), key=lambda r: r["id"])
            self._scoped[scope] = cached
        return cached

    def get(self, record_id: str, scope: tuple[str, ...] | None) -> dict[str, str] | None:
        record = self._by_id.get(record_id)
        if record is None:
            return None
        if scope is not None and not any(record["village_code"].startswith(p) for p in scope):
            return None
        return record


# --- authenticating the gateway --------------------------------------------------------------------------


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
        issuer: str = GATEWAY_ISSUER,
        audience: str = REGISTRY_AUDIENCE,
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


def _unauthorized(request: Request) -> JSONResponse:
    # RFC 6750 §3: tell the client which scheme and why, without echoing the token.
    return error_response(
        request,
        401,
        "unauthorized",
        "调用方未通过认证：需要网关签发的有效令牌。",
        "The caller is not authenticated: a valid gateway-issued token is required.",
        headers={"WWW-Authenticate": 'Bearer realm="civil-affairs-registry", error="invalid_token"'},
    )


def _scope_required(request: Request) -> JSONResponse:
    return error_response(
        request,
        400,
        "scope_required",
        "必须提供有效的辖区代码（org_prefix），本系统不提供无范围的查询。",
        "A jurisdiction (org_prefix, a division code) is required; the registry never serves unscoped data.",
    )


def create_app(
    registry: ResidentRegistry,
    verifier: GatewayTokenVerifier,
    *,
    fault: Fault = "none",
    slow_seconds: float = 10.0,
) -> FastAPI:
    if fault not in FAULTS:
        raise ValueError(f"unknown fault mode {fault!r}")
    app = FastAPI(
        title="Civil-affairs residents registry (demo departmental system)", docs_url=None, redoc_url=None
    )

    async def authenticate(request: Request) -> None:
        verifier.verify(request.headers.get("authorization"))

    @app.exception_handler(GatewayTokenError)
    async def _rejected(request: Request, _exc: GatewayTokenError) -> JSONResponse:
        return _unauthorized(request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, _exc: RequestValidationError) -> JSONResponse:
        return error_response(
            request,
            422,
            "invalid_request",
            f"请求参数无效（page 从 1 开始，page_size 为 1 至 {MAX_PAGE_SIZE}）。",
            f"Invalid query parameters (page starts at 1, page_size is 1 to {MAX_PAGE_SIZE}).",
        )

    async def _fault_response(request: Request) -> Response | None:
        if fault == "slow":
            await asyncio.sleep(slow_seconds)
        elif fault == "garbage":
            return Response(content=b"<html>\x00\xff not json {", media_type="application/json")
        elif fault == "error":
            return error_response(
                request, 500, "internal_error", "民政系统内部错误。", "Registry internal error."
            )
        return None

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/residents", dependencies=[Depends(authenticate)])
    async def list_residents(
        request: Request,
        org_prefix: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies query defaults
        page: Annotated[int, Query(ge=1)] = 1,
        page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    ) -> Response:
        try:
            scope: tuple[str, ...] | None = parse_scope(org_prefix)
        except ScopeError:
            return _scope_required(request)
        faulty = await _fault_response(request)
        if faulty is not None:
            return faulty
        if fault == "out_of_scope":
            scope = None
        matching = registry.in_scope(scope)
        start = (page - 1) * page_size
        items = matching[start : start + page_size]
        next_page = page + 1 if start + page_size < len(matching) else None
        return JSONResponse({"items": items, "total": len(matching), "next_page": next_page})

    @app.get("/residents/{record_id}", dependencies=[Depends(authenticate)])
    async def get_resident(
        request: Request,
        record_id: str,
        org_prefix: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies query defaults
    ) -> Response:
        try:
            scope: tuple[str, ...] | None = parse_scope(org_prefix)
        except ScopeError:
            return _scope_required(request)
        faulty = await _fault_response(request)
        if faulty is not None:
            return faulty
        if fault == "out_of_scope":
            scope = None
        record = registry.get(record_id, scope)
        if record is None:
            # Outside the pushed-down jurisdiction answers exactly like absent: no existence oracle.
            return error_response(request, 404, "not_found", "未找到该记录。", "No such record.")
        return JSONResponse(record)

    return app


class DroppingH11Protocol(H11Protocol):
    """Fault ``drop``: close the connection on a data request without writing a byte of response.

    An ASGI app cannot do that (uvicorn answers 500 when the app fails before responding), so the
    fault lives in the HTTP protocol. Requests on loopback arrive with their request line in the first
    chunk, which is all this inspects.
    """

    DATA_REQUEST_LINES = (b"GET /residents", b"HEAD /residents")

    def data_received(self, data: bytes) -> None:
        if data.startswith(self.DATA_REQUEST_LINES):
            self.transport.close()
            return
        super().data_received(data)


# --- command line ----------------------------------------------------------------------------------------


class RegistrySettings(BaseSettings):
    """Environment defaults for the command line (``GRASSROOTS_CIVIL_AFFAIRS_*``)."""

    model_config = SettingsConfigDict(env_prefix="GRASSROOTS_CIVIL_AFFAIRS_")

    host: str = "127.0.0.1"
    port: int = 8101
    db: str = "var/civil_affairs.db"
    gateway_public_key: str | None = None
    fault: Fault = "none"
    slow_seconds: float = 10.0
    seed: int = DEFAULT_SEED


def _parser(settings: RegistrySettings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m demoworld.civil_affairs",
        description="Demo civil-affairs residents registry (a departmental system the gateway calls).",
    )
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.port)
    parser.add_argument("--db", default=settings.db, help="SQLite file of this registry (created and seeded)")
    parser.add_argument(
        "--gateway-public-key",
        default=settings.gateway_public_key,
        help="PEM file with the gateway's Ed25519 public key (verifies its service tokens)",
    )
    parser.add_argument("--fault", choices=FAULTS, default=settings.fault)
    parser.add_argument("--slow-seconds", type=float, default=settings.slow_seconds)
    parser.add_argument("--seed", type=int, default=settings.seed, help="demo world seed used when seeding")
    parser.add_argument("--seed-only", action="store_true", help="create and seed the database, then exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser(RegistrySettings()).parse_args(argv)
    engine = open_database(args.db)
    stored = seed_database(engine, args.seed)
    if args.seed_only:
        print(json.dumps({"db": str(args.db), "residents": stored}))
        return 0
    if not args.gateway_public_key:
        print("error: --gateway-public-key is required to serve (PEM, Ed25519)", file=sys.stderr)
        return 2
    try:
        verifier = GatewayTokenVerifier(Path(args.gateway_public_key).read_bytes())
    except (OSError, ValueError, JoseError):
        print("error: cannot read an Ed25519 public key (PEM) from --gateway-public-key", file=sys.stderr)
        return 2
    registry = ResidentRegistry.from_database(engine)
    engine.dispose()
    app = create_app(registry, verifier, fault=args.fault, slow_seconds=args.slow_seconds)

    import uvicorn

    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        http=DroppingH11Protocol if args.fault == "drop" else "auto",
        log_level="warning",
        access_log=False,
        # A stand-in system: stop promptly even while a "slow" fault request is still sleeping.
        timeout_graceful_shutdown=1,
    )
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
