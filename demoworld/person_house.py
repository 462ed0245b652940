"""A stand-in person-house registry (一标三实): the district public-security bureau's departmental system.

一标三实 is one standard address (标准地址) and the three "actuals" kept against it: actual population
(实有人口), actual houses (实有房屋) and actual organisations (实有单位). This stand-in serves the houses
and their occupants, each placed in a micro-grid (微网格) of a village or community, so the gateway can
hand a grid worker exactly the households of the grids assigned to them.

Like the civil-affairs registry it trusts nobody but the gateway (a short-lived Ed25519 JWT whose audience
is this system's id and, when configured, the API key this system issued to it; see
``demoworld.departmental``) and serves only what the gateway pushes down: ``org_prefix`` (required) and,
for a grid worker, ``grid`` (the assigned micro-grid codes). Fault modes let the gateway's tests watch
it fail, including ``out_of_grid``: the village filter honoured, the grid filter ignored.

Run::

    python -m demoworld.person_house --host 127.0.0.1 --port 8102 --db var/person_house.db \\
        --gateway-public-key var/keys/gateway-service-ed25519.pub.pem \\
        [--gateway-credentials var/person-house-registry.gateway-credentials] \\
        [--fault none|slow|garbage|error|out_of_scope|out_of_grid|drop] [--slow-seconds 10]
    python -m demoworld.person_house --seed-only --db var/person_house.db
    python -m demoworld.person_house --gateway-credentials FILE --issue-gateway-credential
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Literal, get_args

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic_settings import SettingsConfigDict
from sqlalchemy import Engine, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from demoworld.departmental import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    DepartmentalSettings,
    GatewayCredentials,
    GatewayTokenVerifier,
    ScopeError,
    SystemProfile,
    add_lookup_route,
    departmental_app,
    error_response,
    not_found,
    page_response,
    parse_scope,
    run_departmental,
    scope_required,
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
PROFILE = SystemProfile(
    audience=REGISTRY_AUDIENCE,
    prog="python -m demoworld.person_house",
    title="Person-house registry (demo departmental system)",
    description="Demo person-house registry (一标三实; a departmental system the gateway calls).",
    collections=tuple(COLLECTIONS),
    faults=FAULTS,
    internal_error_zh="一标三实系统内部错误。",
)


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

    def ids_of(self, person_field: str, id_number: str, prefixes: tuple[str, ...]) -> list[str]:
        """Ids of the records whose ``person_field`` is ``id_number``, inside the villages ``prefixes``."""
        return [
            r["id"]
            for r in self._all
            if r[person_field].upper() == id_number and self._inside(r["grid_code"], prefixes, None)
        ]


#: The field of each collection that holds the ID number of the person a record belongs to: a house is
#: its owner's, an occupant record its occupant's (the record-id lookup answers by it).
PERSON_FIELDS: Mapping[str, str] = {"houses": "owner_id_number", "occupants": "id_number"}


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
    credentials: GatewayCredentials | None = None,
    fault: str = "none",
    slow_seconds: float = 10.0,
) -> FastAPI:
    base = departmental_app(PROFILE, verifier, credentials, fault=fault, slow_seconds=slow_seconds)
    app = base.app

    def _scope(
        request: Request, org_prefix: list[str], grid: list[str]
    ) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None] | JSONResponse:
        try:
            prefixes: tuple[str, ...] | None = parse_scope(org_prefix)
        except ScopeError:
            return scope_required(request)
        try:
            grids = parse_grids(grid)
        except GridError:
            return _grid_invalid(request)
        if fault == "out_of_scope":
            return None, None
        if fault == "out_of_grid":
            return prefixes, None
        return prefixes, grids

    def _routes(name: str, collection: ScopedCollection) -> None:
        person_field = PERSON_FIELDS[name]
        add_lookup_route(base, name, lambda number, scope: collection.ids_of(person_field, number, scope))

        @app.get(f"/{name}", dependencies=[Depends(base.authenticate)], name=f"list_{name}")
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
            faulty = await base.fault_response(request)
            if faulty is not None:
                return faulty
            return page_response(collection.in_scope(*scope), page, page_size)

        @app.get(f"/{name}/{{record_id}}", dependencies=[Depends(base.authenticate)], name=f"get_{name}")
        async def get_record(
            request: Request,
            record_id: str,
            org_prefix: Annotated[list[str], Query()] = [],  # noqa: B006
            grid: Annotated[list[str], Query()] = [],  # noqa: B006
        ) -> Response:
            scope = _scope(request, org_prefix, grid)
            if isinstance(scope, JSONResponse):
                return scope
            faulty = await base.fault_response(request)
            if faulty is not None:
                return faulty
            record = collection.get(record_id, *scope)
            if record is None:
                # Outside the pushed-down scope (village or grid) answers exactly like absent.
                return not_found(request)
            return JSONResponse(record)

    for name, collection in registry.collections.items():
        _routes(name, collection)
    return app


# --- command line ----------------------------------------------------------------------------------------


class RegistrySettings(DepartmentalSettings):
    """Environment defaults for the command line (``GRASSROOTS_PERSON_HOUSE_*``)."""

    model_config = SettingsConfigDict(env_prefix="GRASSROOTS_PERSON_HOUSE_")

    port: int = 8102
    db: str = "var/person_house.db"
    fault: Fault = "none"


def main(argv: Sequence[str] | None = None) -> int:
    return run_departmental(
        argv,
        PROFILE,
        RegistrySettings(),
        seed=seed_database,
        load=PersonHouseRegistry.from_database,
        create_app=create_app,
    )


if __name__ == "__main__":
    raise SystemExit(main())
