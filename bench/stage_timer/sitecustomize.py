"""Stage timer for ``bench.probe_stage_latency`` (never loaded by the product).

The probe puts this directory first on the gateway's ``PYTHONPATH`` and sets
``GRASSROOTS_STAGE_TIMER_OUT``; Python then imports this module at start-up. It waits until the gateway has
imported its data path, wraps a few stage functions with ``perf_counter`` timers (module attributes, looked
up at each call, so the pipeline calls the wrappers), and writes the durations to
``<GRASSROOTS_STAGE_TIMER_OUT>.<pid>.json`` every second. Processes that never import the data path (the
registries) stop looking after a minute. Only durations are kept: no request content.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

_OUT = os.environ.get("GRASSROOTS_STAGE_TIMER_OUT")
_SAMPLES: dict[str, list[float]] = {}

#: (module, attribute path, stage name). Data path stages run on the event loop; the two audit ones run on
#: the group-commit thread: ``append_prepared`` is a whole batch (BEGIN .. COMMIT), ``_write`` its inserts.
_TARGETS = (
    ("gateway.pipeline", "_run", "request (whole data path, in the gateway)"),
    ("gateway.pipeline", "authenticate", "authenticate (token check)"),
    ("gateway.pipeline", "authorize", "authorize (policy decision)"),
    ("gateway.pipeline", "fetch_upstream", "upstream call (registry round trip)"),
    ("gateway.pipeline", "mask", "mask (structured + free text)"),
    ("gateway.runtime", "Runtime.scan_free_text", "response DLP"),
    ("gateway.pipeline", "_build_event", "build audit event"),
    ("gateway.pipeline", "record_audit", "audit wait (enqueue to durable commit answered)"),
    ("audit.log", "AuditLog.append_prepared", "writer: one batch, BEGIN to COMMIT"),
    ("audit.log", "AuditLog._write", "writer: inserts (events, refs, head)"),
    ("audit.log", "AuditLog.checkpoint_wal", "writer: WAL checkpoint in an idle moment"),
)


def _record(name: str, started: float) -> None:
    _SAMPLES.setdefault(name, []).append(time.perf_counter() - started)


def _wrap(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                _record(name, started)

        return timed_async

    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _record(name, started)

    return timed


def _install() -> bool:
    modules = {m for m, _, _ in _TARGETS}
    if not all(m in sys.modules for m in modules):
        return False
    # A module is fully executed once its last definition exists.
    if not (hasattr(sys.modules["gateway.pipeline"], "_build_event") and "gateway.app" in sys.modules):
        return False
    for module_name, path, name in _TARGETS:
        owner: Any = sys.modules[module_name]
        *parents, attr = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        setattr(owner, attr, _wrap(getattr(owner, attr), name))
    return True


def _dump() -> None:
    assert _OUT is not None
    snapshot = {name: list(values) for name, values in list(_SAMPLES.items())}
    tmp = f"{_OUT}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(snapshot, out)
    os.replace(tmp, f"{_OUT}.{os.getpid()}.json")


def _watch() -> None:
    deadline = time.monotonic() + 60
    while not _install():
        if time.monotonic() > deadline:
            return
        time.sleep(0.005)
    while True:
        time.sleep(1.0)
        _dump()


if _OUT:
    threading.Thread(target=_watch, name="stage-timer", daemon=True).start()
