"""Starting the demo's processes on loopback: the two stand-in registries and ``grassroots serve``.

One module for the three places that run them: ``grassroots demo``, the test stack (``tests/stack.py``) and
the benchmark stack (``bench/stack.py``). It also prepares what those processes read at start: the seeded
gateway state, the gateway's public key for the registries, and each registry's accepted-keys file.

Test and benchmark processes are started in a process group of their own (``process_group=0``). ``stop``
asks the leader to shut down (SIGTERM, so uvicorn drains and its supervisor stops its workers, and telemetry
is flushed) and only when it does not stop in time kills the whole group, so no orphaned worker keeps a port
or a database open after a test or a benchmark. ``grassroots demo`` keeps its registries in the terminal's
group instead, so a Ctrl+C reaches them as it reaches the gateway.

The registries are started by module name (``python -m demoworld.<system>``): the gateway never imports
the demo world to run it.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from masking import KeyRing

#: The module that runs each stand-in departmental system, by system id (gateway.seed's ids).
REGISTRY_MODULES: Mapping[str, str] = {
    "civil-affairs-registry": "demoworld.civil_affairs",
    "person-house-registry": "demoworld.person_house",
}
#: What may receive a child's output: inherit (None), ``subprocess.DEVNULL``, or a file (appended to).
Output = Path | int | None
LOOPBACK = "127.0.0.1"
# Loopback is never proxied, whatever http_proxy says in the environment.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class LaunchError(RuntimeError):
    """A process exited, or did not answer its health check in time."""


def free_port() -> int:
    """A TCP port free on loopback right now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """Wait until ``url`` answers 200; fail at once when ``proc`` exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LaunchError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with _NO_PROXY.open(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.1)
    raise LaunchError(f"{url} did not become healthy in {timeout_s}s")


def stop(*procs: subprocess.Popen[bytes] | None, timeout_s: float = 10.0) -> None:
    """Stop processes cleanly (SIGTERM to each, all at once), killing the group of any still running after
    ``timeout_s``. ``None`` and processes that already exited are skipped."""
    running = [p for p in procs if p is not None and p.poll() is None]
    for proc in running:
        proc.terminate()
    deadline = time.monotonic() + timeout_s
    for proc in running:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill(proc)
            proc.wait(timeout=5)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    # Only a group this module created (its leader is the process itself): never the caller's own group.
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, signal.SIGKILL)
            return
    except ProcessLookupError:
        return
    proc.kill()


def _sink(output: Output, stack: list[IO[bytes]]) -> IO[bytes] | int | None:
    if isinstance(output, Path):
        output.parent.mkdir(parents=True, exist_ok=True)
        handle = output.open("ab")
        stack.append(handle)
        return handle
    return output


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdout: Output = None,
    stderr: Output = None,
    own_group: bool = True,
) -> subprocess.Popen[bytes]:
    """Start ``argv``, in a process group of its own unless ``own_group`` is False (then it stays in the
    caller's, so a Ctrl+C in the terminal reaches it too); ``stdout``/``stderr`` as in :data:`Output`."""
    files: list[IO[bytes]] = []
    try:
        return subprocess.Popen(  # noqa: S603 (our own interpreter and modules, or a binary we located)
            list(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdout=_sink(stdout, files),
            stderr=_sink(stderr, files),
            process_group=0 if own_group else None,
        )
    finally:
        # The child holds its own descriptors; ours are closed at once.
        for handle in files:
            handle.close()


@dataclass(frozen=True)
class RegistrySpec:
    """How one stand-in registry is to be served (its ``python -m demoworld.<system>`` options)."""

    system_id: str
    port: int
    db: Path
    gateway_public_key: Path
    #: The registry's accepted-keys file; None serves without requiring the gateway's API key.
    gateway_credentials: Path | None = None
    fault: str | None = None
    slow_seconds: float | None = None
    host: str = LOOPBACK

    @property
    def health_url(self) -> str:
        return f"http://{self.host}:{self.port}/healthz"

    def argv(self, python: str = sys.executable) -> list[str]:
        """The command line that serves it (also what ``seed-demo`` tells a user to run)."""
        argv = [python, "-m", REGISTRY_MODULES[self.system_id], "--host", self.host, "--port", str(self.port)]
        argv += ["--db", str(self.db), "--gateway-public-key", str(self.gateway_public_key)]
        if self.gateway_credentials is not None:
            argv += ["--gateway-credentials", str(self.gateway_credentials)]
        if self.fault is not None:
            argv += ["--fault", self.fault]
        if self.slow_seconds is not None:
            argv += ["--slow-seconds", str(self.slow_seconds)]
        return argv


def start_registry(
    spec: RegistrySpec,
    *,
    env: Mapping[str, str] | None = None,
    stdout: Output = subprocess.DEVNULL,
    stderr: Output = subprocess.DEVNULL,
    wait_s: float | None = 60.0,
    own_group: bool = True,
) -> subprocess.Popen[bytes]:
    """Start a stand-in registry and (unless ``wait_s`` is None) wait until it is healthy."""
    proc = spawn(spec.argv(), env=env, stdout=stdout, stderr=stderr, own_group=own_group)
    if wait_s is not None:
        _wait_or_stop(spec.health_url, proc, wait_s)
    return proc


def start_gateway(
    *,
    port: int,
    env: Mapping[str, str],
    cwd: Path,
    workers: int = 1,
    stdout: Output = None,
    stderr: Output = None,
    wait_s: float | None = 60.0,
) -> subprocess.Popen[bytes]:
    """Start ``grassroots serve`` with ``env`` (its whole configuration) and wait until it is healthy."""
    argv = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)]
    if workers != 1:
        argv += ["--workers", str(workers)]
    proc = spawn(argv, env=env, cwd=cwd, stdout=stdout, stderr=stderr)
    if wait_s is not None:
        _wait_or_stop(f"http://{LOOPBACK}:{port}/healthz", proc, wait_s)
    return proc


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, from /proc."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is parenthesised and may hold spaces: the parent pid follows the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def worker_pids(supervisor_pid: int) -> list[int]:
    """The worker processes of ``grassroots serve --workers N``: the supervisor's children, leaving out
    the multiprocessing resource tracker it also starts."""
    workers: list[int] = []
    for pid in children(supervisor_pid):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers.append(pid)
        except OSError:
            continue
    return workers


def _wait_or_stop(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    # A process that never became healthy is not left running behind the error.
    try:
        wait_healthy(url, proc, timeout_s)
    except BaseException:
        stop(proc)
        raise


# --------------------------------------------------------------------------------------- prepared state


def public_key_path(service_key_path: Path) -> Path:
    """Where the gateway's service public key is written for the registries, next to the private key."""
    return service_key_path.with_name(f"{service_key_path.stem}.pub.pem")


def registry_db(data_dir: Path, system_id: str) -> Path:
    """The registry's own SQLite database in the demo's data directory."""
    return data_dir / f"{system_id}.db"


@dataclass(frozen=True)
class PreparedDemo:
    """What the registries read at start, and what the seed created (a line a thing)."""

    seeded: list[str]
    gateway_public_key: Path
    #: system id -> the registry's accepted-keys file; empty when the registries run without API keys.
    gateway_credentials: Mapping[str, Path]


def prepare_demo(
    database_url: str,
    data_dir: Path,
    *,
    upstream_url: str,
    person_house_url: str,
    service_key_path: Path,
    gateway_public_key: Path | None = None,
    keys: KeyRing | None = None,
) -> PreparedDemo:
    """Seed a migrated database for the demo world and write the registries' start-up files.

    With ``keys`` (the key ring the gateway process loads), each registry's department issues the gateway
    an API key, its digest goes into ``data_dir/<system id>.gateway-credentials`` and the key is stored,
    sealed, as the system's outbound credential; without, the registries run without API keys."""
    from gateway.db import make_engine
    from gateway.seed import gateway_credentials_file, seed_demo
    from gateway.upstream import load_or_create_ed25519, public_pem

    files = {} if keys is None else {s: gateway_credentials_file(data_dir, s) for s in REGISTRY_MODULES}
    engine = make_engine(database_url, pool_size=1)
    try:
        seeded = seed_demo(
            engine,
            upstream_url=upstream_url,
            person_house_url=person_house_url,
            keys=keys,
            gateway_credentials=files or None,
        )
    finally:
        engine.dispose()
    pub = gateway_public_key or public_key_path(service_key_path)
    pub.parent.mkdir(parents=True, exist_ok=True)
    pub.write_bytes(public_pem(load_or_create_ed25519(service_key_path)))
    return PreparedDemo(seeded=seeded, gateway_public_key=pub, gateway_credentials=files)


def demo_registries(prepared: PreparedDemo, data_dir: Path, ports: Mapping[str, int]) -> list[RegistrySpec]:
    """Both demo registries (system id -> port) as the seeded gateway expects them: its public key, and the
    accepted-keys file when the seed issued API keys."""
    return [
        RegistrySpec(
            system_id,
            port=port,
            db=registry_db(data_dir, system_id),
            gateway_public_key=prepared.gateway_public_key,
            gateway_credentials=prepared.gateway_credentials.get(system_id),
        )
        for system_id, port in ports.items()
    ]
