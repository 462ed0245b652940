"""Test support: the whole stack on loopback (fixture `stack`, see tests/conftest.py).

The gateway runs as ``python -m gateway.cli serve`` on a migrated, seeded database (SQLite file, or a
throwaway PostgreSQL database when GRASSROOTS_TEST_POSTGRES_URL is set; required in CI). Tokens come from
the embedded development identity provider's key (discovery + JWKS are fetched by the gateway over HTTP).
Both registries require the API key their department issued to the gateway; the seed stores it as each
system's outbound credential, as ``grassroots demo`` does.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from gateway.launch import (
    RegistrySpec,
    public_key_path,
    registry_db,
    start_gateway,
    start_registry,
    stop,
    wait_healthy,
)
from tests.ports import free_port, listens_on

REPO = Path(__file__).resolve().parents[1]  # the checkout (a worktree too), ahead of the editable install


@dataclass
class Stack:
    backend: str
    data_dir: Path
    database_url: str
    env: dict[str, str]
    gateway_port: int
    upstream_port: int
    person_house_port: int = field(default_factory=free_port)
    gateway: subprocess.Popen[bytes] | None = None
    upstream: subprocess.Popen[bytes] | None = None
    person_house: subprocess.Popen[bytes] | None = None
    _engine: sa.Engine | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def records_url(self) -> str:
        return f"{self.base_url}/api/v1/datasets/residents/records"

    def dataset_url(self, dataset: str) -> str:
        return f"{self.base_url}/api/v1/datasets/{dataset}/records"

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            from gateway.db import make_engine

            self._engine = make_engine(self.database_url, pool_size=2)
        return self._engine

    def cli(
        self, *args: str, check: bool = True, env_extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args],
            env={**self.env, **(env_extra or {})},
            cwd=self.data_dir.parent,
            capture_output=True,
            text=True,
            timeout=120,
            check=check,
        )

    def token(self, username: str, **kwargs: Any) -> str:
        from gateway.auth.devusers import dev_identity_provider
        from gateway.settings import Settings

        settings = Settings(
            data_dir=self.data_dir, dev_idp_enabled=True, port=self.gateway_port, host="127.0.0.1"
        )
        return dev_identity_provider(settings).mint(
            username, kwargs.pop("audience", "grassroots-gateway"), **kwargs
        )

    def expired_token(self, username: str) -> str:
        """A token signed by the real IdP key, expired two minutes ago (minted with PyJWT)."""
        import jwt
        from joserfc import jwt as jose_jwt

        good = self.token(username)
        header = jwt.get_unverified_header(good)
        claims = jose_jwt.decode(good, _public_jwk(self)).claims
        now = int(time.time())
        claims.update(iat=now - 3600, nbf=now - 3600, exp=now - 120)
        pem = (self.data_dir / "keys" / "dev-idp-signing.pem").read_bytes()
        return jwt.encode(
            claims, pem, algorithm=header["alg"], headers={"kid": header["kid"], "typ": "at+jwt"}
        )

    def get(self, url: str, username: str | None = None, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token(username)}"} if username else {}
        return httpx.get(url, params=params, headers=headers, timeout=30.0)

    def credentials_file(self, system_id: str) -> Path:
        """The registry's accepted gateway API keys (digests; see demoworld.departmental)."""
        from gateway.seed import gateway_credentials_file

        return gateway_credentials_file(self.data_dir, system_id)

    @property
    def gateway_public_key(self) -> Path:
        """Written by the seed (``grassroots seed-demo`` writes the same file), read by the registries."""
        return public_key_path(self.data_dir / "keys" / "gateway-service-ed25519.pem")

    def _start_registry(
        self, system_id: str, port: int, fault: str, slow_seconds: float, wait: bool = True
    ) -> subprocess.Popen[bytes]:
        path = self.credentials_file(system_id)
        spec = RegistrySpec(
            system_id,
            port=port,
            db=registry_db(self.data_dir, system_id),
            gateway_public_key=self.gateway_public_key,
            # Seeded stacks require the key; a registry whose file was never written runs open.
            gateway_credentials=path if path.exists() else None,
            fault=fault,
            slow_seconds=slow_seconds,
        )
        return start_registry(spec, env=self.env, wait_s=60.0 if wait else None)

    def start_upstream(self, fault: str = "none", slow_seconds: float = 5.0, wait: bool = True) -> None:
        """``wait=False`` returns once the process is started; :meth:`wait_healthy` waits for it."""
        stop(self.upstream)
        self.upstream = self._start_registry(
            "civil-affairs-registry", self.upstream_port, fault, slow_seconds, wait
        )

    def stop_upstream(self) -> None:
        stop(self.upstream)
        self.upstream = None

    def start_person_house(self, fault: str = "none", slow_seconds: float = 5.0, wait: bool = True) -> None:
        """The second departmental system: the person-house registry (一标三实), its own database."""
        stop(self.person_house)
        self.person_house = self._start_registry(
            "person-house-registry", self.person_house_port, fault, slow_seconds, wait
        )

    def start_gateway(
        self, output: Path | None = None, wait: bool = True, errors: Path | None = None
    ) -> None:
        """Start ``grassroots serve``; ``output`` captures its stdout (e.g. console telemetry), ``errors``
        its stderr (its log lines)."""
        self.gateway = start_gateway(
            port=self.gateway_port,
            env=self.env,
            cwd=self.data_dir.parent,
            stdout=output,
            stderr=errors,
            wait_s=60.0 if wait else None,
        )

    def wait_healthy(self) -> None:
        """Wait until each started process (registries, gateway) answers its health check."""
        for proc, port in (
            (self.upstream, self.upstream_port),
            (self.person_house, self.person_house_port),
            (self.gateway, self.gateway_port),
        ):
            if proc is not None:
                wait_healthy(f"http://127.0.0.1:{port}/healthz", proc)
                # Answered by this process, not by another that holds the port (see tests.ports).
                assert listens_on(proc.pid, port) is not False, f"port {port} is not held by pid {proc.pid}"

    @contextlib.contextmanager
    def another_gateway(self, **extra_env: str) -> Iterator[str]:
        """A second ``grassroots serve`` on the same database and data directory (its base URL).

        It trusts the first gateway's development IdP (the issuer of every token the tests mint)."""
        port = free_port()
        env = {
            **self.env,
            "GRASSROOTS_PORT": str(port),
            "GRASSROOTS_OIDC_ISSUER": f"{self.base_url}/dev-idp",
            **extra_env,
        }
        proc = start_gateway(port=port, env=env, cwd=self.data_dir.parent)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(proc)

    def audit_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM audit_events")).scalar_one())

    def last_events(self, n: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT seq, kind, outcome, actor, body FROM audit_events ORDER BY seq DESC LIMIT :n"
                ),
                {"n": n},
            ).mappings()
            return [dict(r) for r in rows][::-1]


def _migrate_and_seed(database_url: str, upstream_url: str, person_house_url: str, data_dir: Path) -> None:
    from gateway.db import upgrade
    from gateway.keys import load_masking_keyring
    from gateway.launch import prepare_demo
    from gateway.settings import Settings

    upgrade(database_url)
    prepare_demo(
        database_url,
        data_dir,
        upstream_url=upstream_url,
        person_house_url=person_house_url,
        service_key_path=data_dir / "keys" / "gateway-service-ed25519.pem",
        # The same key ring the gateway process loads from this data directory.
        keys=load_masking_keyring(Settings(data_dir=data_dir)),
    )


def scenarios_at_any_hour(path: Path) -> Path:
    """The shipped scenario catalog with opening hours lifted, so a test runs at any hour of the day."""
    from policies.scenarios import DEFAULT_SCENARIOS_PATH, without_opening_hours

    shipped = DEFAULT_SCENARIOS_PATH.read_text(encoding="utf-8")
    path.write_text(without_opening_hours(shipped), encoding="utf-8")
    return path


def _public_jwk(stack: Stack) -> Any:
    from joserfc.jwk import KeySet

    from gateway.auth.devusers import dev_identity_provider
    from gateway.settings import Settings

    settings = Settings(
        data_dir=stack.data_dir, dev_idp_enabled=True, port=stack.gateway_port, host="127.0.0.1"
    )
    return KeySet.import_key_set(dev_identity_provider(settings).jwks())


def _postgres_database(base: str) -> tuple[str, sa.Engine, str]:
    parsed = make_url(base)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    name = f"gr_e2e_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(parsed, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    return parsed.set(database=name).render_as_string(hide_password=False), admin, name


@contextlib.contextmanager
def throwaway_postgres(base: str) -> Iterator[str]:
    """A fresh PostgreSQL database on the server at ``base`` (its URL), dropped afterwards."""
    url, admin, name = _postgres_database(base)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def postgres_base_url() -> str | None:
    base = os.environ.get("GRASSROOTS_TEST_POSTGRES_URL")
    if not base:
        if os.environ.get("CI"):
            pytest.fail("GRASSROOTS_TEST_POSTGRES_URL must be set in CI: the PostgreSQL tests must run there")
        return None
    return base


def stack_fixture(
    backend: str,
    tmp_path_factory: pytest.TempPathFactory,
    extra_env: dict[str, str] | None = None,
    gateway_output: Path | None = None,
    before_gateway: Callable[[str], dict[str, str]] | None = None,
    gateway_errors: Path | None = None,
) -> Iterator[Stack]:
    """``before_gateway``, given the migrated, seeded database's URL, runs before the gateway starts and
    returns environment for it (e.g. another login role's URL); ``gateway_output`` and ``gateway_errors``
    capture the gateway's stdout and stderr."""
    cleanup = contextlib.ExitStack()
    if backend == "postgres":
        base = postgres_base_url()
        if base is None:
            pytest.skip("GRASSROOTS_TEST_POSTGRES_URL not set")
        database_url = cleanup.enter_context(throwaway_postgres(base))
    root = tmp_path_factory.mktemp(f"stack-{backend}")
    data_dir = root / "var"
    if backend == "sqlite":
        database_url = f"sqlite:///{data_dir / 'gateway.db'}"
    gateway_port, upstream_port = free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "GRASSROOTS_DATA_DIR": str(data_dir),
        "GRASSROOTS_DATABASE_URL": database_url,
        "GRASSROOTS_DEV_IDP_ENABLED": "true",
        "GRASSROOTS_HOST": "127.0.0.1",
        "GRASSROOTS_PORT": str(gateway_port),
        "GRASSROOTS_UPSTREAM_TIMEOUT_S": "2",
        "GRASSROOTS_POLICY_REFRESH_INTERVAL_S": "0.2",
        "GRASSROOTS_LOG_LEVEL": "warning",
        # The shipped catalog limits reading to 7:00-21:00 Beijing time: a suite run in the evening would
        # be refused. Tests of opening hours bring their own catalog (extra_env).
        "GRASSROOTS_SCENARIOS_PATH": str(scenarios_at_any_hour(root / "scenarios.toml")),
        # Tests archive months themselves (and seed logs starting years ago): the periodic archiver would
        # race them. Its own tests call one round directly (tests/gateway/test_supervision_tasks.py).
        "GRASSROOTS_AUDIT_ARCHIVE_INTERVAL_S": "0",
        # Likewise the escalation of overdue cases (督办) would add steps to the cases tests make overdue
        # and then read; its tests turn it on (test_supervision_api.py) or call a round directly.
        "GRASSROOTS_ESCALATION_INTERVAL_S": "0",
        # Every test reaches the stack from loopback, one source to the flood allowance, and a module's
        # tests refuse dozens of token-less requests a minute; the allowance has tests of its own
        # (tests/gateway/test_refusal_bursts.py).
        "GRASSROOTS_AUTH_REFUSAL_BURST": "1000000",
        **(extra_env or {}),
    }
    stack = Stack(backend, data_dir, database_url, env, gateway_port, upstream_port)
    try:
        # In-process (the same code `grassroots db upgrade` and `seed-demo` run): saves two interpreter
        # start-ups per stack; the CLI commands themselves are tested in tests/gateway/test_startup.py.
        _migrate_and_seed(
            database_url,
            f"http://127.0.0.1:{upstream_port}",
            f"http://127.0.0.1:{stack.person_house_port}",
            data_dir,
        )
        if before_gateway is not None:
            stack.env.update(before_gateway(database_url))
        # The three processes start at once (their start-up is mostly imports, and the gateway calls a
        # registry only when a request needs it), then each must answer its health check.
        stack.start_upstream(wait=False)
        stack.start_person_house(wait=False)
        stack.start_gateway(gateway_output, wait=False, errors=gateway_errors)
        stack.wait_healthy()
        yield stack
    finally:
        stop(stack.gateway, stack.upstream, stack.person_house)
        if stack._engine is not None:
            stack._engine.dispose()
        cleanup.close()
