"""``grassroots serve --workers N``: the workers share the connections, and a taken port is refused.

With one listening socket shared by all workers (uvicorn's own supervisor), the worker that wakes first
drains the accept queue: keep-alive connections opened together, as a load balancer's or a reverse proxy's
pool opens them, all landed on one worker while the other idled, so a second worker added nothing. Each
worker now listens on its own ``SO_REUSEPORT`` socket. The test opens a burst of connections before any
of them sends a byte, answers a request on each, and reads from /proc which worker holds each one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.launch import LOOPBACK, start_gateway, stop, worker_pids
from tests.ports import free_port
from tests.stack import Stack

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")]

CONNECTIONS = 32
#: Spread by hash, each of two workers gets Binomial(32, 1/2) connections; fewer than 4 happens once in
#: about 400,000 runs. A shared accept queue gave one worker all 32 (or all but one) in every trial.
AT_LEAST = 4


@pytest.fixture(scope="module")
def two_workers(stack: Stack) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {**stack.env, "GRASSROOTS_PORT": str(port), "GRASSROOTS_OIDC_ISSUER": f"{stack.base_url}/dev-idp"}
    proc = start_gateway(port=port, env=env, cwd=stack.data_dir.parent, workers=2)
    try:
        yield port, proc
    finally:
        stop(proc)


def _established_by_inode(port: int) -> set[str]:
    """Socket inodes of the server side of established TCP connections to ``port`` (IPv4, loopback)."""
    inodes: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        local_port = int(cols[1].rsplit(":", 1)[1], 16)
        if local_port == port and cols[3] == "01":  # 01 = ESTABLISHED
            inodes.add(cols[9])
    return inodes


def _owner_of(inodes: set[str], pids: list[int]) -> Counter[int]:
    owned: Counter[int] = Counter()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                owned[pid] += 1
    return owned


def test_two_workers_each_take_a_share_of_a_burst_of_connections(
    two_workers: tuple[int, subprocess.Popen[bytes]],
) -> None:
    port, proc = two_workers
    workers = worker_pids(proc.pid)
    assert len(workers) == 2, workers
    # Every connection is made (the kernel completes the handshake) before any worker is asked anything.
    conns = [socket.create_connection((LOOPBACK, port), timeout=10) for _ in range(CONNECTIONS)]
    try:
        for conn in conns:
            conn.sendall(f"GET /healthz HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n\r\n".encode())
        for conn in conns:
            assert conn.recv(64).startswith(b"HTTP/1.1 200"), "every connection is answered"
        owned = _owner_of(_established_by_inode(port), workers)
    finally:
        for conn in conns:
            conn.close()
    assert sum(owned.values()) == CONNECTIONS, owned
    assert min(owned[pid] for pid in workers) >= AT_LEAST, f"connections per worker: {dict(owned)}"


@pytest.mark.parametrize("workers", [2, 1])
def test_a_port_another_gateway_listens_on_is_refused_with_the_reason(
    stack: Stack, two_workers: tuple[int, subprocess.Popen[bytes]], workers: int
) -> None:
    """With workers, a plain bind probes first: the running workers' SO_REUSEPORT group would otherwise
    take the new listeners in and share the traffic with a second gateway without a word."""
    port, _ = two_workers
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--workers", str(workers), "--port", str(port)],
        env=stack.env,
        cwd=stack.data_dir.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.index("端口已被占用") < done.stderr.index("the port is in use")


#: Makes each spawned worker take this long before uvicorn's supervisor can hear from it (its interpreter
#: starting on a busy host): longer than uvicorn's own 5 s ping timeout.
SLOW_START = """\
import sys, time
if "--multiprocessing-fork" in sys.argv:
    time.sleep(7)
"""


def test_a_worker_slow_to_start_is_waited_for_not_killed(stack: Stack, tmp_path: Path) -> None:
    """uvicorn's supervisor killed a worker that had not answered its ping within 5 s and started another,
    which a loaded host could not start faster either: a worker killed every few seconds, for ever."""
    (tmp_path / "sitecustomize.py").write_text(SLOW_START)
    port = free_port()
    env = {
        **stack.env,
        "GRASSROOTS_PORT": str(port),
        "GRASSROOTS_OIDC_ISSUER": f"{stack.base_url}/dev-idp",
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{stack.env['PYTHONPATH']}",
        "GRASSROOTS_LOG_LEVEL": "info",  # uvicorn says when a worker starts, and when one "died"
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = start_gateway(
            port=port, env=env, cwd=stack.data_dir.parent, workers=2, stdout=out, stderr=out, wait_s=None
        )
        try:
            deadline = time.monotonic() + 45
            while log.read_text().count("Application startup complete.") < 2 and time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.5)
            assert log.read_text().count("Application startup complete.") == 2, log.read_text()
            assert "died" not in log.read_text()
            assert len(worker_pids(proc.pid)) == 2
        finally:
            stop(proc)
