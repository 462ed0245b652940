"""A stand-in person-house registry (一标三实): the district public-security bureau's departmental system.

一标三实 is one standard address (标准地址) and the three "actuals" kept against it: actual population
(实有人口), actual houses (实有房屋) and actual organisations (实有单位). This stand-in serves the houses
and their occupants, each placed in a micro-grid (微网格) of a village or community, so the gateway can
hand a grid worker exactly the households of the grids assigned to them.

Like the civil-affairs registry it trusts nobody but the gateway (a short-lived Ed25519 JWT whose audience
is this system's id) and serves only what the gateway pushes down: ``org_prefix`` (required) and,
for a grid worker, ``grid`` (the assigned micro-grid codes). Fault modes let the gateway's tests watch
it fail, including ``out_of_grid``: the village filter honoured, the grid filter ignored.

Run::

    python -m demoworld.person_house --host 127.0.0.1 --port 8102 --db var/person_house.db \\
        --gateway-public-key var/gateway_upstream_ed25519.pub.pem \\
        [--fault none|slow|garbage|error|out_of_scope|out_of_grid|drop] [--slow-seconds 10]
    python -m demoworld.person_house --seed-only --db var/person_house.db
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Literal, get_args

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from joserfc.errors import JoseError
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Engine, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from uvicorn.protocols.http.h11_impl import H11Protocol

from demoworld.civil_affairs import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    GatewayTokenError,
    GatewayTokenVerifier,
    ScopeError,
    error_response,
    open_database,
    parse_scope,
)
from demoworld.world import DEFAULT_SEED, village_of_grid

Fault = Literal["none", "slow", "garbage", "error", "out_of_scope", "out_of_grid", "drop"]
FAULTS: tuple[str, ...] = get_args(Fault)

REGISTRY_AUDIENCE = "person-house-registry"

HOUSE_FIELDS = (
    "id",
    "address_code",
    "address",
    "house_type",
    "house_use",
    "owner_name",
    "owner_id_number",
    "owner_mobile",
    "village_code",
    "grid_code",
)
OCCUPANT_FIELDS = (
    "id",
    "house_id",
    "resident_id",
    "name",
    "id_number",
    "relation",
    "mobile",
    "village_code",
    "grid_code",
)
#: The collections this registry serves, and the fields of their records.
COLLECTIONS: Mapping[str, tuple[str, ...]] = {"houses": HOUSE_FIELDS, "occupants": OCCUPANT_FIELDS}


# --- storage: the registry's own database ----------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class GridRow(Base):
    """The registry's own tables; not the gateway's schema, so no Alembic (a stand-in system)."""

    __tablename__ = "micro_grids"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    village_code: Mapped[str] = mapped_column(String(12), index=True)


class AddressRow(Base):
    __tablename__ = "standard_addresses"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    address: Mapped[str] = mapped_column(String(200))
    village_code: Mapped[str] = mapped_column(String(12), index=True)
    grid_code: Mapped[str] = mapped_column(String(16), index=True)

    def __repr__(self) -> str:
        return f"AddressRow(code={self.code!r})"


class HouseRow(Base):
    __tablename__ = "houses"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    address_code: Mapped[str] = mapped_column(String(16), index=True)
    address: Mapped[str] = mapped_column(String(200))
    house_type: Mapped[str] = mapped_column(String(16))
    house_use: Mapped[str] = mapped_column(String(16))
    owner_name: Mapped[str] = mapped_column(String(32))
    owner_id_number: Mapped[str] = mapped_column(String(18))
    owner_mobile: Mapped[str] = mapped_column(String(11))
    village_code: Mapped[str] = mapped_column(String(12), index=True)
    grid_code: Mapped[str] = mapped_column(String(16), index=True)

    def __repr__(self) -> str:
        return f"HouseRow(id={self.id!r})"


class OccupantRow(Base):
    __tablename__ = "occupants"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    house_id: Mapped[str] = mapped_column(String(16), index=True)
    resident_id: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(32))
    id_number: Mapped[str] = mapped_column(String(18), unique=True)
    relation: Mapped[str] = mapped_column(String(8))
    mobile: Mapped[str] = mapped_column(String(11))
    village_code: Mapped[str] = mapped_column(String(12), index=True)
    grid_code: Mapped[str] = mapped_column(String(16), index=True)

    def __repr__(self) -> str:
        return f"OccupantRow(id={self.id!r})"


class RegistryMeta(Base):
    __tablename__ = "registry_meta"

    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


def seed_database(engine: Engine, seed: int = DEFAULT_SEED) -> dict[str, int]:
    """Create the tables and, when the registry is empty, load the demo world's person-house data.

    Returns the number of rows per table. An already-seeded database is left as it is: it is this
    system's own store, not a cache of the demo world.
    """
    from demoworld.world import build_world

    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        if not session.scalar(select(func.count()).select_from(HouseRow)):
            world = build_world(seed)
            session.add_all(GridRow(**g.to_dict()) for g in world.grids)
            session.add_all(AddressRow(**a.to_dict()) for a in world.addresses)
            session.add_all(HouseRow(**h.to_dict()) for h in world.houses)
            session.add_all(OccupantRow(**o.to_dict()) for o in world.occupants)
            session.add(RegistryMeta(key="world_seed", value=str(seed)))
            session.flush()
        return {
            table.__tablename__: session.scalar(select(func.count()).select_from(table)) or 0
            for table in (GridRow, AddressRow, HouseRow, OccupantRow)
        }


# --- the in-memory registry ------------------------------------------------------------------------------


class GridError(ValueError):
    """A ``grid`` pushed down by the caller is not a micro-grid code."""


def parse_grids(grids: Sequence[str]) -> tuple[str, ...] | None:
    """The micro-grid codes pushed down, deduplicated and sorted; None when there are none (no grid
    filter). A malformed code is an error, never ignored: ignoring it would widen the answer."""
    if not grids:
        return None
    parsed: set[str] = set()
    for raw in grids:
        code = raw.strip()
        try:
            village_of_grid(code)
        except ValueError:
            raise GridError("grid must be a micro-grid code such as 310151101201-G01") from None
        parsed.add(code)
    return tuple(sorted(parsed))


_SCOPE_CACHE_LIMIT = 4096
Scope = tuple[tuple[str, ...] | None, tuple[str, ...] | None]


class ScopedCollection:
    """One collection (houses or occupants), loaded once and indexed by micro-grid."""

    def __init__(self, records: Sequence[Mapping[str, str]]) -> None:
        ordered = sorted((dict(r) for r in records), key=lambda r: r["id"])
        self._all: list[dict[str, str]] = ordered
        self._by_id: dict[str, dict[str, str]] = {r["id"]: r for r in ordered}
        self._by_grid: dict[str, list[dict[str, str]]] = {}
        for record in ordered:
            self._by_grid.setdefault(record["grid_code"], []).append(record)
        self._scoped: dict[Scope, list[dict[str, str]]] = {}

    def __len__(self) -> int:
        return len(self._all)

    @staticmethod
    def _inside(grid_code: str, prefixes: tuple[str, ...] | None, grids: tuple[str, ...] | None) -> bool:
        # A grid code starts with its village's code, so the village filter can read it directly.
        if prefixes is not None and not any(grid_code.startswith(p) for p in prefixes):
            return False
        return grids is None or grid_code in grids

    def in_scope(
        self, prefixes: tuple[str, ...] | None, grids: tuple[str, ...] | None
    ) -> list[dict[str, str]]:
        """Records inside every filter given (None: no such filter), ordered by id."""
        if prefixes is None and grids is None:
            return self._all
        key: Scope = (prefixes, grids)
        cached = self._scoped.get(key)
        if cached is None:
            if len(self._scoped) >= _SCOPE_CACHE_LIMIT:
                self._scoped.clear()
            chosen = [g for g in self._by_grid if self._inside(g, prefixes, grids)]
            cached = sorted((r for g in chosen for r in self._by_grid[g]), key=lambda r: r["id"])
            self._scoped[key] = cached
        return cached

    def get(
        self, record_id: str, prefixes: tuple[str, ...] | None, grids: tuple[str, ...] | None
    ) -> dict[str, str] | None:
        record = self._by_id.get(record_id)
        if record is None or not self._inside(record["grid_code"], prefixes, grids):
            return None
        return record


class PersonHouseRegistry:
    """Every collection this registry serves, by name."""

    def __init__(self, collections: Mapping[str, ScopedCollection]) -> None:
        self.collections = dict(collections)

    @classmethod
    def from_database(cls, engine: Engine) -> PersonHouseRegistry:
        with Session(engine) as session:
            houses = session.scalars(select(HouseRow)).all()
            occupants = session.scalars(select(OccupantRow)).all()
            return cls(
                {
                    "houses": ScopedCollection([{n: getattr(r, n) for n in HOUSE_FIELDS} for r in houses]),
                    "occupants": ScopedCollection(
                        [{n: getattr(r, n) for n in OCCUPANT_FIELDS} for r in occupants]
                    ),
                }
            )


# --- the HTTP app ----------------------------------------------------------------------------------------


def _unauthorized(request: Request) -> JSONResponse:
    # RFC 6750 §3: tell the client which scheme and why, without echoing the token.
    return error_response(
        request,
        401,
        "unauthorized",
        "调用方未通过认证：需要网关签发的有效令牌。",
        "The caller is not authenticated: a valid gateway-issued token is required.",
        headers={"WWW-Authenticate": f'Bearer realm="{REGISTRY_AUDIENCE}", error="invalid_token"'},
    )


def _scope_required(request: Request) -> JSONResponse:
    return error_response(
        request,
        400,
        "scope_required",
        "必须提供有效的辖区代码（org_prefix），本系统不提供无范围的查询。",
        "A jurisdiction (org_prefix, a division code) is required; the registry never serves unscoped data.",
    )


def _grid_invalid(request: Request) -> JSONResponse:
    return error_response(
        request,
        400,
        "grid_invalid",
        "网格代码（grid）格式不正确，应为村（社区）代码加“-G”和两位编号，例如 310151101201-G01。",
        "A micro-grid code (grid) is a village code, '-G' and two digits, e.g. 310151101201-G01.",
    )


def create_app(
    registry: PersonHouseRegistry,
    verifier: GatewayTokenVerifier,
    *,
    fault: Fault = "none",
    slow_seconds: float = 10.0,
) -> FastAPI:
    if fault not in FAULTS:
        raise ValueError(f"unknown fault mode {fault!r}")
    app = FastAPI(title="Person-house registry (demo departmental system)", docs_url=None, redoc_url=None)

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

    def _scope(
        request: Request, org_prefix: list[str], grid: list[str]
    ) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None] | JSONResponse:
        try:
            prefixes: tuple[str, ...] | None = parse_scope(org_prefix)
        except ScopeError:
            return _scope_required(request)
        try:
            grids = parse_grids(grid)
        except GridError:
            return _grid_invalid(request)
        if fault == "out_of_scope":
            return None, None
        if fault == "out_of_grid":
            return prefixes, None
        return prefixes, grids

    async def _fault_response(request: Request) -> Response | None:
        if fault == "slow":
            await asyncio.sleep(slow_seconds)
        elif fault == "garbage":
            return Response(content=b"<html>\x00\xff not json {", media_type="application/json")
        elif fault == "error":
            return error_response(
                request, 500, "internal_error", "一标三实系统内部错误。", "Registry internal error."
            )
        return None

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    def _routes(name: str, collection: ScopedCollection) -> None:
        @app.get(f"/{name}", dependencies=[Depends(authenticate)], name=f"list_{name}")
        async def list_records(
            request: Request,
            org_prefix: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies query defaults
            grid: Annotated[list[str], Query()] = [],  # noqa: B006
            page: Annotated[int, Query(ge=1)] = 1,
            page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
        ) -> Response:
            scope = _scope(request, org_prefix, grid)
            if isinstance(scope, JSONResponse):
                return scope
            faulty = await _fault_response(request)
            if faulty is not None:
                return faulty
            matching = collection.in_scope(*scope)
            start = (page - 1) * page_size
            items = matching[start : start + page_size]
            next_page = page + 1 if start + page_size < len(matching) else None
            return JSONResponse({"items": items, "total": len(matching), "next_page": next_page})

        @app.get(f"/{name}/{{record_id}}", dependencies=[Depends(authenticate)], name=f"get_{name}")
        async def get_record(
            request: Request,
            record_id: str,
            org_prefix: Annotated[list[str], Query()] = [],  # noqa: B006
            grid: Annotated[list[str], Query()] = [],  # noqa: B006
        ) -> Response:
            scope = _scope(request, org_prefix, grid)
            if isinstance(scope, JSONResponse):
                return scope
            faulty = await _fault_response(request)
            if faulty is not None:
                return faulty
            record = collection.get(record_id, *scope)
            if record is None:
                # Outside the pushed-down scope (village or grid) answers exactly like absent.
                return error_response(request, 404, "not_found", "未找到该记录。", "No such record.")
            return JSONResponse(record)

    for name, collection in registry.collections.items():
        _routes(name, collection)
    return app


class DroppingH11Protocol(H11Protocol):
    """Fault ``drop``: close the connection on a data request without writing a byte of response
    (see ``demoworld.civil_affairs.DroppingH11Protocol``)."""

    DATA_REQUEST_LINES = tuple(f"{verb} /{name}".encode() for verb in ("GET", "HEAD") for name in COLLECTIONS)

    def data_received(self, data: bytes) -> None:
        if data.startswith(self.DATA_REQUEST_LINES):
            self.transport.close()
            return
        super().data_received(data)


# --- command line ----------------------------------------------------------------------------------------


class RegistrySettings(BaseSettings):
    """Environment defaults for the command line (``GRASSROOTS_PERSON_HOUSE_*``)."""

    model_config = SettingsConfigDict(env_prefix="GRASSROOTS_PERSON_HOUSE_")

    host: str = "127.0.0.1"
    port: int = 8102
    db: str = "var/person_house.db"
    gateway_public_key: str | None = None
    fault: Fault = "none"
    slow_seconds: float = 10.0
    seed: int = DEFAULT_SEED


def _parser(settings: RegistrySettings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m demoworld.person_house",
        description="Demo person-house registry (一标三实; a departmental system the gateway calls).",
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
        print(json.dumps({"db": str(args.db), **stored}))
        return 0
    if not args.gateway_public_key:
        print("error: --gateway-public-key is required to serve (PEM, Ed25519)", file=sys.stderr)
        return 2
    try:
        verifier = GatewayTokenVerifier(
            Path(args.gateway_public_key).read_bytes(), audience=REGISTRY_AUDIENCE
        )
    except (OSError, ValueError, JoseError):
        print("error: cannot read an Ed25519 public key (PEM) from --gateway-public-key", file=sys.stderr)
        return 2
    registry = PersonHouseRegistry.from_database(engine)
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
