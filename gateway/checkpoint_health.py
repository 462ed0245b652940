"""How the periodic signed audit checkpoint is doing, for operators (``/readyz``, metrics).

The audit log itself is fail-closed (no durable event, no answer); the periodic checkpoint in the
external directory is the log's *outside* proof (RFC 6962 §3.5 signed tree heads). When writing it
fails (directory unwritable, disk full, key unreadable) the log keeps serving and the proof stops
advancing: that must be visible to whoever runs the gateway, not only a log line per interval.

A failing checkpoint does not make the process not-ready: every process shares the same directory and
key, so all would leave rotation at once and the villages would lose service over a proof that can be
re-signed later (a new checkpoint covers every event written meanwhile). It is reported instead:
``/readyz`` names the component, its state, the failure kind and ages; ``grassroots.audit.checkpoint.age``
(seconds since the log was last covered by a good signed checkpoint) and
``grassroots.audit.checkpoint.failures{kind}`` feed alerts.

Only a closed vocabulary of failure kinds leaves this module — never a path (a directory name can say
whose disk it is), never an exception message, never key material.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from opentelemetry import metrics

from audit import ChainBusy, CheckpointError, KeyRetired
from audit.log import AuditUnavailable

#: The failure kinds (a metric attribute and the ``failure`` of ``/readyz``), a closed set.
KEY_UNAVAILABLE: Final = "key_unavailable"
DIRECTORY_UNWRITABLE: Final = "directory_unwritable"
DISK_FULL: Final = "disk_full"
CHECKPOINT_UNVERIFIABLE: Final = "checkpoint_unverifiable"
LOG_MISMATCH: Final = "log_mismatch"
AUDIT_STORE_UNAVAILABLE: Final = "audit_store_unavailable"
#: The key file here holds a key a rotation handed over (on another host): copy the new one here.
KEY_RETIRED: Final = "key_retired"
#: The checkpoint chain's lock was held past the wait (a rotation of a large log, or a holder killed).
CHAIN_BUSY: Final = "chain_busy"
OTHER: Final = "error"

#: Without a good round for this many intervals the proof is reported stale even if no round failed
#: (a round that hangs, say, on a dead network mount).
STALE_AFTER_INTERVALS: Final = 3


def failure_kind(exc: BaseException) -> str:
    """The kind of a failed checkpoint round (not of loading the key: that is :data:`KEY_UNAVAILABLE`)."""
    if isinstance(exc, OSError):
        return DISK_FULL if exc.errno in (errno.ENOSPC, errno.EDQUOT) else DIRECTORY_UNWRITABLE
    if isinstance(exc, KeyRetired):
        return KEY_RETIRED
    if isinstance(exc, ChainBusy):
        return CHAIN_BUSY
    if isinstance(exc, CheckpointError):
        # A CheckpointError naming a file: the latest checkpoint there does not read or verify; else the
        # log no longer extends the signed checkpoint (the refusal that is the tamper alarm).
        return CHECKPOINT_UNVERIFIABLE if exc.file is not None else LOG_MISMATCH
    if isinstance(exc, AuditUnavailable):
        return AUDIT_STORE_UNAVAILABLE
    return OTHER


@dataclass
class _State:
    last_good_at: datetime | None = None
    latest_signed_at: datetime | None = None
    failing_since: datetime | None = None
    failure: str | None = None


class CheckpointHealth:
    """The periodic checkpoint's state in this process; rounds report to it, readers take views."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._state = _State()
        self._lock = threading.Lock()
        self._failures: metrics.Counter | None = None

    def instrument(self, meter: metrics.Meter) -> None:
        """Register ``grassroots.audit.checkpoint.age`` and ``grassroots.audit.checkpoint.failures``."""
        self._failures = meter.create_counter(
            "grassroots.audit.checkpoint.failures",
            description="failed periodic audit checkpoint rounds, by kind",
        )
        meter.create_observable_gauge(
            "grassroots.audit.checkpoint.age",
            callbacks=[self._observe],
            unit="s",
            description="seconds since the audit log was last covered by a good signed checkpoint",
        )

    def _observe(self, _options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        with self._lock:
            good = self._state.last_good_at
        if good is None:
            return []
        return [metrics.Observation((datetime.now(UTC) - good).total_seconds())]

    def latest_signed_at(self) -> datetime | None:
        with self._lock:
            return self._state.latest_signed_at

    def succeeded(self, now: datetime, latest_signed_at: datetime | None) -> None:
        """A round left the whole log covered by a good signed checkpoint (written now, or already)."""
        with self._lock:
            self._state = _State(last_good_at=now, latest_signed_at=latest_signed_at)

    def failed(self, now: datetime, kind: str) -> None:
        with self._lock:
            state = self._state
            if state.failing_since is None:
                state.failing_since = now
            state.failure = kind
        if self._failures is not None:
            self._failures.add(1, {"kind": kind})

    def view(self, now: datetime) -> dict[str, Any]:
        """What ``/readyz`` shows: ``status`` is ``off``, ``pending`` (no round yet), ``ok``, ``failing``
        or ``stale``; ages in whole seconds; ``failure`` the kind of the latest failure while failing."""
        if self.interval_s <= 0:
            return {"status": "off"}
        with self._lock:
            state = _State(**vars(self._state))

        def age(at: datetime | None) -> int | None:
            return None if at is None else max(0, int((now - at).total_seconds()))

        good_age = age(state.last_good_at)
        if state.failure is not None:
            status = "failing"
        elif good_age is None:
            status = "pending"
        elif good_age > STALE_AFTER_INTERVALS * self.interval_s:
            status = "stale"
        else:
            status = "ok"
        view: dict[str, Any] = {
            "status": status,
            "interval_s": self.interval_s,
            "last_good_age_s": good_age,
            "latest_checkpoint_age_s": age(state.latest_signed_at),
        }
        if state.failure is not None:
            view["failure"] = state.failure
            view["failing_for_s"] = age(state.failing_since)
        return view
