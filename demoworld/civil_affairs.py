"""A stand-in civil-affairs residents registry: a departmental system with its own app and database.

It plays the upstream the gateway calls. It trusts nobody but the gateway (its short-lived Ed25519 service
token and, when configured, the API key this system issued to it; see ``demoworld.departmental``) and only
ever serves records inside the jurisdiction the gateway pushes down (``org_prefix``). Fault modes let the
gateway's tests watch it fail.

Run::

    python -m demoworld.civil_affairs --host 127.0.0.1 --port 8101 --db var/civil_affairs.db \\
        --gateway-public-key var/keys/gateway-service-ed25519.pub.pem \\
        [--gateway-credentials var/civil-affairs-registry.gateway-credentials] \\
        [--fault none|slow|garbage|error|out_of_scope|drop] [--slow-seconds 10]
    python -m demoworld.civil_affairs --seed-only --db var/civil_affairs.db
    python -m demoworld.civil_affairs --gateway-credentials FILE --issue-gateway-credential
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
    not_found,
    page_response,
    parse_scope,
    run_departmental,
    scope_required,
)
from demoworld.world import DEFAULT_SEED

Fault = Literal["none", "slow", "garbage", "error", "out_of_scope", "drop"]
FAULTS: tuple[str, ...] = get_args(Fault)

REGISTRY_AUDIENCE = "civil-affairs-registry"
PROFILE = SystemProfile(
    audience=REGISTRY_AUDIENCE,
    prog="python -m demoworld.civil_affairs",
    title="Civil-affairs residents registry (demo departmental system)",
    description="Demo civil-affairs residents registry (a departmental system the gateway calls).",
    collections=("residents",),
    faults=FAULTS,
    internal_error_zh="民政系统内部错误。",
)

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


_SCOPE_CACHE_LIMIT = 4096


class ResidentRegistry:
    """All residents, loaded once and indexed by village, so the list route never touches the database."""

    def __init__(self, records: Sequence[Mapping[str, str]]) -> None:
        ordered = sorted((dict(r) for r in records), key=lambda r: r["id"])
        self._all: list[dict[str, str]] = ordered
        self._by_id: dict[str, dict[str, str]] = {r["id"]: r for r in ordered}
        self._by_village: dict[str, list[dict[str, str]]] = {}
        self._by_person: dict[str, list[dict[str, str]]] = {}
        for record in ordered:
            self._by_village.setdefault(record["village_code"], []).append(record)
            self._by_person.setdefault(record["id_number"].upper(), []).append(record)
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

    def ids_of(self, id_number: str, scope: tuple[str, ...]) -> list[str]:
        """Ids of the records of the person with ``id_number`` inside ``scope`` (the record-id lookup)."""
        return [
            r["id"]
            for r in self._by_person.get(id_number, ())
            if any(r["village_code"].startswith(p) for p in scope)
        ]


# --- the HTTP app ----------------------------------------------------------------------------------------


def create_app(
    registry: ResidentRegistry,
    verifier: GatewayTokenVerifier,
    *,
    credentials: GatewayCredentials | None = None,
    fault: str = "none",
    slow_seconds: float = 10.0,
) -> FastAPI:
    base = departmental_app(PROFILE, verifier, credentials, fault=fault, slow_seconds=slow_seconds)
    app = base.app
    # Declared before GET /residents/{record_id}; the methods differ, so a record id "lookup" still reads.
    add_lookup_route(base, "residents", registry.ids_of)

    @app.get("/residents", dependencies=[Depends(base.authenticate)])
    async def list_residents(
        request: Request,
        org_prefix: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies query defaults
        page: Annotated[int, Query(ge=1)] = 1,
        page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    ) -> Response:
        try:
            scope: tuple[str, ...] | None = parse_scope(org_prefix)
        except ScopeError:
            return scope_required(request)
        faulty = await base.fault_response(request)
        if faulty is not None:
            return faulty
        if fault == "out_of_scope":
            scope = None
        return page_response(registry.in_scope(scope), page, page_size)

    @app.get("/residents/{record_id}", dependencies=[Depends(base.authenticate)])
    async def get_resident(
        request: Request,
        record_id: str,
        org_prefix: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies query defaults
    ) -> Response:
        try:
            scope: tuple[str, ...] | None = parse_scope(org_prefix)
        except ScopeError:
            return scope_required(request)
        faulty = await base.fault_response(request)
        if faulty is not None:
            return faulty
        if fault == "out_of_scope":
            scope = None
        record = registry.get(record_id, scope)
        if record is None:
            # Outside the pushed-down jurisdiction answers exactly like absent: no existence oracle.
            return not_found(request)
        return JSONResponse(record)

    return app


# --- command line ----------------------------------------------------------------------------------------


class RegistrySettings(DepartmentalSettings):
    """Environment defaults for the command line (``GRASSROOTS_CIVIL_AFFAIRS_*``)."""

    model_config = SettingsConfigDict(env_prefix="GRASSROOTS_CIVIL_AFFAIRS_")

    port: int = 8101
    db: str = "var/civil_affairs.db"
    fault: Fault = "none"


def main(argv: Sequence[str] | None = None) -> int:
    def seed(engine: Engine, seed: int) -> Mapping[str, int]:
        return {"residents": seed_database(engine, seed)}

    return run_departmental(
        argv,
        PROFILE,
        RegistrySettings(),
        seed=seed,
        load=ResidentRegistry.from_database,
        create_app=create_app,
    )


if __name__ == "__main__":
    raise SystemExit(main())
