"""Ports for the processes tests start, one range per pytest-xdist worker.

``gateway.launch.free_port`` asks the kernel for a free port and closes it; the process that is to use it
binds it a second or so later. With two xdist workers starting stacks at the same time, the kernel could
hand the same port to both in that window: one CI run saw a module's gateway fail to bind while the other
worker's stand-in registry answered its health check and then every request (bare ``Not Found``).

Ports here come from a range below the kernel's ephemeral range (``ip_local_port_range``, 32768 and up on
Linux), so neither the kernel's picks nor outgoing connections ever use them, and each worker has a range
of its own, walked in turn: no two live processes of one run are given the same port. A port is still
probed with a plain bind (no ``SO_REUSEADDR``) before it is handed out, so a service of the host or a
second test run on the same machine keeps its port; the start offset is random for the latter's sake.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import threading

_FIRST = 12000
_PER_WORKER = 2000
_WORKERS = 10  # 12000..31999: below the ephemeral range


def _worker_index() -> int:
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = name.removeprefix("gw")
    return int(digits) % _WORKERS if digits.isdigit() else 0


_BASE = _FIRST + _worker_index() * _PER_WORKER
_OFFSETS = itertools.count(random.randrange(_PER_WORKER))
_LOCK = threading.Lock()


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port of this worker's range that nothing is bound to now, and not handed out lately."""
    with _LOCK:
        for _ in range(_PER_WORKER):
            port = _BASE + next(_OFFSETS) % _PER_WORKER
            if _bindable(port):
                return port
    raise RuntimeError(f"no free port in {_BASE}..{_BASE + _PER_WORKER - 1}")


def listens_on(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` holds a listening TCP socket on ``port`` (None where /proc cannot say).

    A health check answered on a port proves only that *something* listens there; a process that failed
    to bind it may not have exited yet."""
    try:
        with open("/proc/net/tcp", encoding="ascii") as table:
            rows = table.read().splitlines()[1:]
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    inodes = set()
    for row in rows:
        fields = row.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
            inodes.add(f"socket:[{inode}]")
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                return True
        except OSError:
            continue
    return False
