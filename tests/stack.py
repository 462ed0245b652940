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
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become healthy in {timeout_s}s")


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


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
        from gateway.settings import Settings
        from gateway.wiring import dev_identity_provider

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

    def _credentials_args(self, system_id: str) -> list[str]:
        # Seeded stacks require the key; a stack seeded without one (``seed-demo``) runs the registry open.
        path = self.credentials_file(system_id)
        return ["--gateway-credentials", str(path)] if path.exists() else []

    def start_upstream(self, fault: str = "none", slow_seconds: float = 5.0) -> None:
        stop(self.upstream)
        self.upstream = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "demoworld.civil_affairs",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.upstream_port),
                "--db",
                str(self.data_dir / "registry.db"),
                "--gateway-public-key",
                str(self.data_dir / "gateway.pub.pem"),
                *self._credentials_args("civil-affairs-registry"),
                "--fault",
                fault,
                "--slow-seconds",
                str(slow_seconds),
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_healthy(f"http://127.0.0.1:{self.upstream_port}/healthz", self.upstream)

    def stop_upstream(self) -> None:
        stop(self.upstream)
        self.upstream = None

    def start_person_house(self, fault: str = "none", slow_seconds: float = 5.0) -> None:
        """The second departmental system: the person-house registry (一标三实), its own database."""
        stop(self.person_house)
        self.person_house = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "demoworld.person_house",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.person_house_port),
                "--db",
                str(self.data_dir / "person_house.db"),
                "--gateway-public-key",
                str(self.data_dir / "gateway.pub.pem"),
                *self._credentials_args("person-house-registry"),
                "--fault",
                fault,
                "--slow-seconds",
                str(slow_seconds),
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_healthy(f"http://127.0.0.1:{self.person_house_port}/healthz", self.person_house)

    def start_gateway(self, output: Path | None = None) -> None:
        """Start ``grassroots serve``; ``output`` captures its stdout (e.g. console telemetry)."""
        sink = output.open("ab") if output is not None else None
        self.gateway = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--port", str(self.gateway_port)],
            env=self.env,
            cwd=self.data_dir.parent,
            stdout=sink,
        )
        if sink is not None:
            sink.close()
        wait_healthy(f"{self.base_url}/healthz", self.gateway)

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
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)],
            env=env,
            cwd=self.data_dir.parent,
        )
        try:
            wait_healthy(f"http://127.0.0.1:{port}/healthz", proc)
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
    from gateway.db import make_engine, upgrade
    from gateway.keys import load_masking_keyring
    from gateway.seed import CIVIL_AFFAIRS_SYSTEM, PERSON_HOUSE_SYSTEM, gateway_credentials_file, seed_demo
    from gateway.settings import Settings

    upgrade(database_url)
    engine = make_engine(database_url, pool_size=1)
    try:
        seed_demo(
            engine,
            upstream_url=upstream_url,
            person_house_url=person_house_url,
            # The same key ring the gateway process loads from this data directory.
            keys=load_masking_keyring(Settings(data_dir=data_dir)),
            gateway_credentials={
                system: gateway_credentials_file(data_dir, system)
                for system in (CIVIL_AFFAIRS_SYSTEM, PERSON_HOUSE_SYSTEM)
            },
        )
    finally:
        engine.dispose()


def _public_jwk(stack: Stack) -> Any:
    from joserfc.jwk import KeySet

    from gateway.settings import Settings
    from gateway.wiring import dev_identity_provider

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
) -> Iterator[Stack]:
    from gateway.upstream import load_or_create_ed25519, public_pem

    admin: sa.Engine | None = None
    pg_name = ""
    if backend == "postgres":
        base = postgres_base_url()
        if base is None:
            pytest.skip("GRASSROOTS_TEST_POSTGRES_URL not set")
        database_url, admin, pg_name = _postgres_database(base)
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
        key = load_or_create_ed25519(data_dir / "keys" / "gateway-service-ed25519.pem")
        (data_dir / "gateway.pub.pem").write_bytes(public_pem(key))
        stack.start_upstream()
        stack.start_person_house()
        stack.start_gateway(gateway_output)
        yield stack
    finally:
        stop(stack.gateway)
        stop(stack.upstream)
        stop(stack.person_house)
        if stack._engine is not None:
            stack._engine.dispose()
        if admin is not None:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
            admin.dispose()
