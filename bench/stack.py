"""The stack under measurement: the real gateway and the real civil-affairs registry as processes on loopback.

Set up the way ``tests/stack.py`` does it (migrated, seeded, development IdP), but without pytest, with a
choice of worker count, and with nginx as a plain reverse proxy in front of the same registry for the peer.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gateway.launch import (
    RegistrySpec,
    demo_registries,
    free_port,
    prepare_demo,
    spawn,
    start_gateway,
    start_registry,
    stop,
    wait_healthy,
    worker_pids,
)

REPO = Path(__file__).resolve().parents[1]
# Start-up waits longer than the tests do: several stacks start in parallel on a loaded machine.
HEALTHY_S = 90.0
STOP_S = 15.0
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
_SETUP_LOCK = threading.Lock()


def rss_mb(pid: int) -> float:
    """Resident set size of one process (VmRSS from /proc), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def postgres_base_url() -> str:
    return (
        os.environ.get("GRASSROOTS_BENCH_POSTGRES_URL")
        or os.environ.get("GRASSROOTS_TEST_POSTGRES_URL")
        or PG_DEFAULT
    )


@dataclass
class Stack:
    backend: str
    workers: int
    root: Path
    database_url: str
    gateway_port: int = field(default_factory=free_port)
    upstream_port: int = field(default_factory=free_port)
    person_house_port: int = field(default_factory=free_port)
    gateway: subprocess.Popen[bytes] | None = None
    upstream: subprocess.Popen[bytes] | None = None
    person_house: subprocess.Popen[bytes] | None = None
    _pg_name: str = ""
    #: More environment for every process of the stack (a probe's ``PYTHONPATH`` and switches).
    extra_env: dict[str, str] = field(default_factory=dict)
    #: More state written into the seeded database (given its URL) before the gateway starts and reads it.
    prepare: Callable[[str], None] | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "var"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def upstream_url(self) -> str:
        return f"http://127.0.0.1:{self.upstream_port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "GRASSROOTS_DATA_DIR": str(self.data_dir),
            "GRASSROOTS_DATABASE_URL": self.database_url,
            "GRASSROOTS_DEV_IDP_ENABLED": "true",
            "GRASSROOTS_HOST": "127.0.0.1",
            "GRASSROOTS_PORT": str(self.gateway_port),
            "GRASSROOTS_LOG_LEVEL": "warning",
            "GRASSROOTS_SCENARIOS_PATH": str(self.root / "scenarios.toml"),
            **self.extra_env,
        }

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"grassroots {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
        return done.stdout

    def token(self, username: str, ttl_s: int = 3600) -> str:
        """An access token for a demo user, from the development IdP's key (as a browser would get)."""
        from gateway.auth.devusers import dev_identity_provider
        from gateway.settings import Settings

        settings = Settings(
            data_dir=self.data_dir, dev_idp_enabled=True, port=self.gateway_port, host="127.0.0.1"
        )
        return dev_identity_provider(settings).mint(username, "grassroots-gateway", ttl_s=ttl_s)

    def service_token(self) -> str:
        """The gateway's own service token for the registry (what a direct caller would present)."""
        from gateway.upstream import ServiceTokenSigner, load_or_create_ed25519

        key = load_or_create_ed25519(self.data_dir / "keys" / "gateway-service-ed25519.pem")
        return ServiceTokenSigner(key).token_for("civil-affairs-registry")

    def gateway_pids(self) -> list[int]:
        """The processes that serve requests: the workers, or the single process when workers == 1."""
        assert self.gateway is not None
        if self.workers == 1:
            return [self.gateway.pid]
        return worker_pids(self.gateway.pid)

    def start(self) -> None:
        from gateway.db import upgrade

        write_bench_scenarios(self.root / "scenarios.toml")
        # In this process (what `grassroots db upgrade` and `seed-demo` do), sparing two interpreter starts;
        # one stack at a time, as Alembic's command context is process-global. No key ring: the registries
        # run without API keys, as they always have here.
        with _SETUP_LOCK:
            upgrade(self.database_url)
            prepared = prepare_demo(
                self.database_url,
                self.data_dir,
                upstream_url=self.upstream_url,
                person_house_url=f"http://127.0.0.1:{self.person_house_port}",
                service_key_path=self.data_dir / "keys" / "gateway-service-ed25519.pem",
            )
        if self.prepare is not None:
            self.prepare(self.database_url)
        # Both registries start at once; the second departmental system (一标三实), as in the demo, is
        # idle unless houses are read.
        upstream, person_house = demo_registries(
            prepared,
            self.data_dir,
            {"civil-affairs-registry": self.upstream_port, "person-house-registry": self.person_house_port},
        )
        self.upstream = start_registry(upstream, env=self.env, wait_s=None)
        self.person_house = start_registry(person_house, env=self.env, wait_s=None)
        wait_healthy(upstream.health_url, self.upstream, HEALTHY_S)
        wait_healthy(person_house.health_url, self.person_house, HEALTHY_S)
        self.token("cadre_a")  # creates the IdP key before the workers read it
        self.gateway = start_gateway(
            port=self.gateway_port,
            env=self.env,
            cwd=self.root,
            workers=self.workers,
            stdout=subprocess.DEVNULL,
            wait_s=HEALTHY_S,
        )
        if self.workers > 1:
            deadline = time.monotonic() + 60
            while len(self.gateway_pids()) < self.workers and time.monotonic() < deadline:
                time.sleep(0.2)

    def close(self) -> None:
        stop(self.gateway, self.upstream, self.person_house, timeout_s=STOP_S)
        if self._pg_name:
            _drop_database(self._pg_name)


def write_bench_scenarios(path: Path) -> None:
    """The shipped scenario catalog with daily quotas and opening hours lifted.

    A load test reads the same page thousands of times a minute, at any hour; with the shipped quotas the
    gateway would (rightly) refuse most of it and the figures would measure refusals. Everything else,
    roles, fields and masking profiles, is the shipped catalog.
    """
    from policies.scenarios import DEFAULT_SCENARIOS_PATH

    text = DEFAULT_SCENARIOS_PATH.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^daily_quota_per_user = \d+", "daily_quota_per_user = 1000000000", text)
    text = re.sub(r"(?m)^hours_allowed = \[[^\]]*\]", "hours_allowed = [0, 24]", text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@contextmanager
def running_stacks(
    *shapes: tuple[str, int],
    extra_env: dict[str, str] | None = None,
    prepare: Mapping[int, Callable[[str], None]] | None = None,
) -> Iterator[list[Stack]]:
    """Stacks of the given (backend, workers) shapes, started in parallel (start-up is mostly waiting).

    ``prepare`` maps a shape's position to more state written into its database before its gateway starts
    (see :attr:`Stack.prepare`)."""
    from concurrent.futures import ThreadPoolExecutor

    stacks: list[Stack] = []
    try:
        for backend, workers in shapes:
            root = Path(tempfile.mkdtemp(prefix=f"gr-bench-{backend}-"))
            pg_name = ""
            if backend == "postgres":
                database_url, pg_name = _create_database()
            else:
                database_url = f"sqlite:///{root / 'var' / 'gateway.db'}"
            stacks.append(
                Stack(
                    backend=backend,
                    workers=workers,
                    root=root,
                    database_url=database_url,
                    _pg_name=pg_name,
                    extra_env=dict(extra_env or {}),
                    prepare=(prepare or {}).get(len(stacks)),
                )
            )
        with ThreadPoolExecutor(max_workers=len(stacks)) as pool:
            for future in [pool.submit(s.start) for s in stacks]:
                future.result()
        yield stacks
    finally:
        for stack in stacks:
            stack.close()
            shutil.rmtree(stack.root, ignore_errors=True)


@contextmanager
def running_stack(
    backend: str = "sqlite", workers: int = 1, extra_env: dict[str, str] | None = None
) -> Iterator[Stack]:
    with running_stacks((backend, workers), extra_env=extra_env) as stacks:
        yield stacks[0]


def _admin_engine() -> object:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    parsed = make_url(postgres_base_url())
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return sa.create_engine(parsed, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def _create_database() -> tuple[str, str]:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    name = f"gr_bench_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine()
    assert isinstance(admin, sa.Engine)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    url = make_url(postgres_base_url())
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url.set(database=name).render_as_string(hide_password=False), name


def _drop_database(name: str) -> None:
    import sqlalchemy as sa

    admin = _admin_engine()
    assert isinstance(admin, sa.Engine)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


# --------------------------------------------------------------------------------------------- nginx


def ensure_nginx() -> str:
    """The nginx binary, installed from Debian's packages when missing (idempotent)."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError("nginx is not installed; install Debian's nginx package (apt-get install nginx)")
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Wait for another apt run rather than fail on the dpkg lock.
    install = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-q", "nginx"]
    if subprocess.run(install, env=apt_env, capture_output=True, timeout=900).returncode != 0:
        subprocess.run(
            ["apt-get", "-o", "DPkg::Lock::Timeout=600", "update", "-q"],
            env=apt_env,
            capture_output=True,
            timeout=900,
        )
        subprocess.run(install, env=apt_env, capture_output=True, timeout=900, check=True)
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).exists():
        raise RuntimeError("nginx did not install")
    return found


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream registry {{
        server 127.0.0.1:{upstream_port};
        keepalive 128;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://registry;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


@contextmanager
def running_nginx(upstream_port: int) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """nginx as a plain reverse proxy (one worker, keep-alive to the registry), foreground, on loopback."""
    binary = ensure_nginx()
    prefix = Path(tempfile.mkdtemp(prefix="gr-bench-nginx-"))
    prefix.chmod(0o755)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, port=port, upstream_port=upstream_port))
    proc = spawn(
        [binary, "-p", str(prefix), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz", proc, timeout_s=30)
        yield port, proc
    finally:
        stop(proc, timeout_s=STOP_S)
        shutil.rmtree(prefix, ignore_errors=True)


@contextmanager
def running_floor_proxy(upstream_port: int) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """The bare Python reverse proxy on the gateway's own server and client stack (bench.floor_proxy)."""
    port = free_port()
    proc = spawn(
        [
            sys.executable,
            "-m",
            "bench.floor_proxy",
            "--port",
            str(port),
            "--upstream",
            f"http://127.0.0.1:{upstream_port}",
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz", proc, timeout_s=30)
        yield port, proc
    finally:
        stop(proc, timeout_s=STOP_S)


def nginx_version() -> str:
    try:
        done = subprocess.run([ensure_nginx(), "-v"], capture_output=True, text=True, timeout=10)
    except (RuntimeError, OSError, subprocess.SubprocessError):
        return "nginx unavailable"
    return (done.stderr or done.stdout).strip().replace("nginx version: ", "")


@dataclass
class Registry:
    """The civil-affairs registry alone, with a fresh gateway service key to call it with."""

    url: str
    token: Callable[[], str]
    proc: subprocess.Popen[bytes]


@contextmanager
def running_registry() -> Iterator[Registry]:
    from gateway.upstream import ServiceTokenSigner, load_or_create_ed25519, public_pem

    root = Path(tempfile.mkdtemp(prefix="gr-bench-registry-"))
    key = load_or_create_ed25519(root / "gateway-service-ed25519.pem")
    (root / "gateway.pub.pem").write_bytes(public_pem(key))
    port = free_port()
    spec = RegistrySpec(
        "civil-affairs-registry",
        port=port,
        db=root / "registry.db",
        gateway_public_key=root / "gateway.pub.pem",
    )
    proc = start_registry(spec, env={**os.environ, "PYTHONPATH": str(REPO)}, wait_s=None)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(spec.health_url, proc, HEALTHY_S)
        yield Registry(
            url=url, token=lambda: ServiceTokenSigner(key).token_for("civil-affairs-registry"), proc=proc
        )
    finally:
        stop(proc, timeout_s=STOP_S)
        shutil.rmtree(root, ignore_errors=True)
