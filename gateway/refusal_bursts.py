"""Floods of requests without a valid token: the evidence kept, its cost bounded.

Every request refused for want of a valid token is an audit event before it is an answer (PIPL Art. 56;
issue 5's failed logins). The log is append-only and cannot be shortened before its retention period,
and each event is a durable commit the real users' requests queue behind, so one anonymous client used
to be able to grow it without limit (a review measured 247 events/s from one client on the demo).

Per source (the client address the gateway sees, :func:`source_of`) and window
(``GRASSROOTS_AUTH_REFUSAL_WINDOW_S``), the first ``GRASSROOTS_AUTH_REFUSAL_BURST`` such refusals are
recorded one by one, as before. Later ones from that source in the window are answered 429
``too_many_refusals`` with ``Retry-After`` and only counted here; when the window closes (or the process
stops) one ``auth.refused_burst`` event records the source, how many were counted, the first and last of
them, the refusal codes seen with their counts, and how many of the refused tokens claimed each
organisation (``claimed_orgs``: the division code a token's own provider signed, as a single refusal's
``details.claimed_org`` has it; ``unknown`` for a token that names none that can be believed — missing,
malformed, its signature not holding — and ``other`` past the first :data:`MAX_CLAIMED_ORGS` codes of a
window), so a supervisor can tell which village is failing. Never a token or a user id: only the
gateway's own codes and division codes.

Only requests that would have been refused anyway are counted or answered 429: the check runs after the
token failed, so a request with a valid token, from any address, is never held up by it. The counts are
per process: with several workers or hosts each counts its own sources, and their summaries add up.
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.errors import GatewayError
from grassroots_common.divisions import is_division_code

#: The audit event kind of one source's counted refusals in one window.
BURST_KIND = "auth.refused_burst"

#: Addresses no source could be read for (no ``client`` in the ASGI scope, or not an IP address).
UNKNOWN_SOURCE = "unknown"

#: Where new sources are counted together once ``max_sources`` are tracked: a bounded table and,
#: across all addresses, at most ``(max_sources + 1) * limit`` events per window.
OVERFLOW_SOURCE = "other-sources"

#: Distinct claimed organisations counted by code per window; later ones go to :data:`OTHER_ORGS`.
MAX_CLAIMED_ORGS = 20

#: Refusals whose token claimed no organisation that can be believed (see the module docstring).
UNKNOWN_ORG = "unknown"

#: Refusals whose token claimed an organisation past the first :data:`MAX_CLAIMED_ORGS` of the window.
OTHER_ORGS = "other"

#: The current request's source (:func:`source_of`), set with its request id (``gateway.app``); None
#: outside a request (a background task's events come from no address).
CLIENT_SOURCE: ContextVar[str | None] = ContextVar("grassroots_client_source", default=None)


def request_source() -> str | None:
    """The source of the request being served, None outside one: what every audit event the request
    causes records as its ``source`` (``gateway.pipeline.with_request_source``), and what the flood
    allowance counts it under."""
    return CLIENT_SOURCE.get()


def source_of(scope: Mapping[str, Any]) -> str:
    """The client address of an ASGI request, as the gateway sees it: uvicorn's ``client``, which its
    proxy-header handling has already replaced by ``X-Forwarded-For`` when, and only when, the peer is a
    trusted proxy (``FORWARDED_ALLOW_IPS``, by default 127.0.0.1 and ::1). An IPv6 client is counted by
    its /64, the block one end site holds (RFC 6177) and can draw fresh addresses from at will; anything
    that is not an IP address is counted as ``unknown``, never recorded as given."""
    client = scope.get("client")
    host = client[0] if client else None
    if not isinstance(host, str):
        return UNKNOWN_SOURCE
    return _address_source(host) or UNKNOWN_SOURCE


def _address_source(text: str) -> str | None:
    """``text`` as a source if it is an IP address (an IPv6 one as its /64), else None."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def source_asked(text: str) -> str | None:
    """A source as a supervisor types it, in the spelling events record (:func:`source_of`), or None when it
    is none: an IPv4 address; an IPv6 address (its /64: ``2001:db8::1`` finds ``2001:db8::/64``) or /64
    block; ``unknown``; ``other-sources`` (the flood counter's shared allowance)."""
    text = text.strip()
    if text in (UNKNOWN_SOURCE, OVERFLOW_SOURCE):
        return text
    if "/" not in text:
        return _address_source(text)
    try:
        block = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    if isinstance(block, ipaddress.IPv6Network) and block.prefixlen == 64:
        return str(block)
    return None


class TooManyRefusals(GatewayError):
    """429: more refused requests without a valid token from this address than are recorded one by one.
    Carries no data and repeats nothing the request sent."""

    status_code = 429
    code = "too_many_refusals"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            "从您所在网络地址发出的未登录（或登录凭证无效）请求过多，"
            f"{retry_after_s} 秒内此类请求将被直接拒绝。请重新登录后再试：持有效登录凭证的请求不受此限制。",
            f"Too many requests without a valid sign-in token came from your network address; such requests "
            f"are refused for the next {retry_after_s} s. Sign in again and retry: requests with a valid "
            "token are not limited.",
            headers={"Retry-After": str(retry_after_s)},
        )


@dataclass
class BurstSummary:
    """One source's refusals in one window beyond those recorded one by one."""

    source: str
    window_start: datetime
    window_s: float
    recorded: int
    count: int
    first_at: datetime
    last_at: datetime
    codes: Counter[str]
    doors: Counter[str]
    claimed_orgs: Counter[str] = field(default_factory=Counter)

    def details(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "count": self.count,
            "first_at": self.first_at.isoformat(),
            "last_at": self.last_at.isoformat(),
            "window_start": self.window_start.isoformat(),
            "window_s": self.window_s,
            "recorded_individually": self.recorded,
            "codes": dict(sorted(self.codes.items())),
            "doors": dict(sorted(self.doors.items())),
            "claimed_orgs": dict(sorted(self.claimed_orgs.items())),
        }


@dataclass
class _Window:
    start: datetime
    end: datetime
    recorded: int = 0
    count: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    codes: Counter[str] = field(default_factory=Counter)
    doors: Counter[str] = field(default_factory=Counter)
    claimed_orgs: Counter[str] = field(default_factory=Counter)

    def count_claimed(self, claimed_org: str | None) -> None:
        """One more refusal of a token claiming ``claimed_org``, in a bounded table: a division code (the
        only thing recorded of the claim, and only when it is one), ``unknown``, or ``other``."""
        if claimed_org is None or not is_division_code(claimed_org):
            key = UNKNOWN_ORG
        elif claimed_org in self.claimed_orgs:
            key = claimed_org
        else:
            known = sum(1 for k in self.claimed_orgs if k not in (UNKNOWN_ORG, OTHER_ORGS))
            key = claimed_org if known < MAX_CLAIMED_ORGS else OTHER_ORGS
        self.claimed_orgs[key] += 1


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RefusalBursts:
    """The per-source count of one process (see the module docstring). Used from the event loop only."""

    def __init__(
        self,
        limit: int,
        window_s: float,
        max_sources: int,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_sources = max_sources
        self.clock = clock
        self._windows: dict[str, _Window] = {}
        self._closed: list[BurstSummary] = []

    def admit(self, source: str, code: str, door: str, claimed_org: str | None = None) -> int | None:
        """A refusal of a request without a valid token, from ``source``, for ``code`` at ``door`` (the
        event kind it would be recorded as), its token claiming ``claimed_org`` (a division code its own
        provider signed, else None). None: record it as usual. A number: it was counted instead; answer
        429 with that many seconds in ``Retry-After``."""
        now = self.clock()
        window = self._windows.get(source)
        if window is not None and now >= window.end:
            self._close(source, window)
            window = None
        if window is None:
            if len(self._windows) >= self.max_sources and source != OVERFLOW_SOURCE:
                return self.admit(OVERFLOW_SOURCE, code, door, claimed_org)
            window = self._windows[source] = _Window(now, now + timedelta(seconds=self.window_s))
        if window.recorded < self.limit:
            window.recorded += 1
            return None
        window.count += 1
        window.first_at = window.first_at or now
        window.last_at = now
        window.codes[code] += 1
        window.doors[door] += 1
        window.count_claimed(claimed_org)
        return max(1, math.ceil((window.end - now).total_seconds()))

    def take_closed(self, *, everything: bool = False) -> list[BurstSummary]:
        """The summaries of the windows closed by now (with ``everything``: of every window, as the process
        stops), each once; windows in which nothing was counted end without one."""
        now = self.clock()
        for source, window in list(self._windows.items()):
            if everything or now >= window.end:
                self._close(source, window)
        closed, self._closed = self._closed, []
        return closed

    def put_back(self, summaries: list[BurstSummary]) -> None:
        """Summaries that could not be written: offered again by the next :meth:`take_closed`."""
        self._closed[:0] = summaries

    def _close(self, source: str, window: _Window) -> None:
        del self._windows[source]
        if window.count and window.first_at is not None and window.last_at is not None:
            self._closed.append(
                BurstSummary(
                    source=source,
                    window_start=window.start,
                    window_s=self.window_s,
                    recorded=window.recorded,
                    count=window.count,
                    first_at=window.first_at,
                    last_at=window.last_at,
                    codes=window.codes,
                    doors=window.doors,
                    claimed_orgs=window.claimed_orgs,
                )
            )
