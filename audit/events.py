"""The audit event: one data access (allowed or refused) or one administrative act.

An event is the processing record PIPL Art. 56 asks for (and GB/T 35273-2020 §10.3 "记录对个人信息的处理"):
who acted, for which organisation and scenario, on which dataset and fields, how many records, touching
which residents, with what outcome and reason, and when. Residents and records appear only as keyed HMAC
refs (see :mod:`audit.pseudonym`); an event carrying something that looks like a plain resident ID number
(GB 11643) or mobile number is refused outright rather than written into a log that cannot be edited.

The body (:meth:`AuditEvent.to_body`) is what gets hashed, in RFC 8785 canonical form.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from json.encoder import encode_basestring as _json_string
from types import MappingProxyType
from typing import Any, Final

from audit.canonical import canonical_json, encode_plain, has_surrogate, is_plain
from audit.pseudonym import is_ref
from grassroots_common.personal_data import looks_like_identifier

BODY_VERSION: Final = 1

_KIND = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+")
_TOKEN = re.compile(r"[A-Za-z0-9_.:@/-]{1,128}")
_MAX_TEXT = 256
# Newline-joined lists of tokens and of refs (see AuditEvent._valid_at_once); neither part may hold one.
_TOKENS = re.compile(r"[A-Za-z0-9_.:@/-]{1,128}(?:\n[A-Za-z0-9_.:@/-]{1,128})*")
_REFS = re.compile(r"[A-Za-z0-9_-]{1,16}:[0-9a-f]{64}(?:\n[A-Za-z0-9_-]{1,16}:[0-9a-f]{64})*")

#: What stands for a request's source that is no single address: a word of the gateway's own (``unknown``:
#: no address could be read; ``other-sources``: many addresses counted together).
_SOURCE_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")

#: The actor of a request no valid token identified (none, expired, forged): who sent it is not known, so
#: it is nobody's access and no user to count (reports, the monthly 通报), whatever the number of senders.
ANONYMOUS_ACTOR: Final = "anonymous"


class Outcome(StrEnum):
    """What happened: a decision (``allowed``/``refused``) or the result of an act (``ok``/``error``)."""

    ALLOWED = "allowed"
    REFUSED = "refused"
    OK = "ok"
    ERROR = "error"


def looks_like_personal_data(text: str) -> bool:
    """True when ``text`` holds what looks like a resident ID number (valid GB 11643 check) or a mobile,
    in one piece or in its usual groups: the tripwire every event's text passes (see
    ``grassroots_common.personal_data``; text people type is checked more broadly before it gets here)."""
    return looks_like_identifier(text)


def is_source(value: object) -> bool:
    """True when ``value`` is an event's ``source`` as written: an IP address or an address block (an IPv6
    client's /64) in its one canonical spelling, so that a query for it finds every event it is in, or a
    lower-case word standing for none (``unknown``). Never a name, a header's text or anything else a
    client wrote: nothing that could be personal data."""
    return isinstance(value, str) and 0 < len(value) <= 64 and _is_source_text(value)


@functools.lru_cache(maxsize=4096)
def _is_source_text(value: str) -> bool:
    """:func:`is_source` of a string, remembered: parsing an address cost 5 us (IPv4) to 24 us (an IPv6
    block) on every event, and a gateway's events come from the same few thousand addresses over and over."""
    if _SOURCE_WORD.fullmatch(value):
        return True
    try:
        parsed: object = ipaddress.ip_network(value) if "/" in value else ipaddress.ip_address(value)
    except ValueError:
        return False
    return str(parsed) == value


def _checked_text(
    name: str, value: object, *, optional: bool, pattern: re.Pattern[str] | None = None
) -> None:
    if value is None:
        if optional:
            return
        raise ValueError(f"{name} is required")
    if not isinstance(value, str) or not value or len(value) > _MAX_TEXT:
        raise ValueError(f"{name} must be a non-empty string of at most {_MAX_TEXT} characters")
    if pattern is not None and pattern.fullmatch(value) is None:
        raise ValueError(f"{name} has an invalid format")
    if looks_like_personal_data(value):
        raise ValueError(f"{name} looks like plain personal data; pass a Pseudonymizer ref instead")


def _joined_match(pattern: re.Pattern[str], parts: Sequence[object]) -> bool:
    """True when every part is a string and ``pattern`` (a newline-separated repetition) matches them all."""
    if not parts:
        return True
    if not all(type(part) is str for part in parts):
        return False
    joined = "\n".join(parts)  # type: ignore[arg-type]  # all str, checked above
    return pattern.fullmatch(joined) is not None and joined.count("\n") == len(parts) - 1


def _frozen_json(value: object, path: str, depth: int = 0) -> Any:
    """A deep, read-only copy of a JSON value; refuses what RFC 8785 cannot encode and plain PII."""
    if depth > 16:
        raise ValueError(f"details nested too deeply at {path}")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        # RFC 8785 §3.2.2.3 / RFC 7493 §2.2: integers must be exact as IEEE 754 doubles.
        if abs(value) > 2**53 - 1:
            raise ValueError(f"details integer out of the I-JSON range at {path}")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"details number not finite at {path}")
        return value
    if isinstance(value, str):
        if looks_like_personal_data(value):
            raise ValueError(f"details value at {path} looks like plain personal data; use a ref")
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"details keys must be strings at {path}")
            if looks_like_personal_data(key):
                raise ValueError(f"details key at {path} looks like plain personal data")
            out[key] = _frozen_json(item, f"{path}.{key}", depth + 1)
        return MappingProxyType(out)
    if isinstance(value, list | tuple):
        return tuple(_frozen_json(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
    raise ValueError(f"details value of type {type(value).__name__} is not JSON at {path}")


def _thawed(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thawed(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thawed(v) for v in value]
    return value


def format_timestamp(value: datetime) -> str:
    """RFC 3339 UTC with microseconds and ``Z``: one spelling per instant, so the hash is stable."""
    utc = value.astimezone(UTC)
    if utc.year >= 1000:
        # Same characters as the strftime below, at a fraction of the cost (this is on every append).
        return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    # glibc's %Y does not pad years below 1000; the spelling already in existing chains is kept.
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("timestamp must carry a UTC offset")
    return parsed.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One processing record (PIPL Art. 56). Immutable; validated on construction.

    ``subject_refs`` and ``record_refs`` must already be :class:`audit.pseudonym.Pseudonymizer` refs;
    ``details`` is free JSON for the act (e.g. a grant id, a policy version) and must not carry personal
    data — strings that look like an ID number or a mobile number are refused.

    ``source`` is where the request that caused the event came from, as the gateway resolved it (the
    client address, a trusted proxy's ``X-Forwarded-For`` only; see :func:`is_source`), or None for an event
    no request caused (and for every event written before it was recorded). It is the actor's side of the
    event, like ``actor`` and ``actor_org``, and kept in the clear for the same reason: a supervisor must
    be able to act on it (have an address blocked). Absent from the body when None, so the bodies written
    before it existed are, byte for byte, what their events encode to.
    """

    kind: str
    outcome: Outcome
    actor: str
    actor_org: str | None = None
    actor_roles: tuple[str, ...] = ()
    scenario: str | None = None
    dataset: str | None = None
    fields: tuple[str, ...] = ()
    record_count: int = 0
    subject_refs: tuple[str, ...] = ()
    record_refs: tuple[str, ...] = ()
    reason: str | None = None
    trace_id: str | None = None
    request_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    source: str | None = None

    def __post_init__(self) -> None:
        if not self._valid_at_once():
            self._validate()  # field by field: raises for the first field at fault, naming it
        object.__setattr__(self, "occurred_at", self.occurred_at.astimezone(UTC))
        object.__setattr__(self, "details", _frozen_json(self.details, "details"))

    def _valid_at_once(self) -> bool:
        """The checks of :meth:`_validate` on the common, valid event, with one regex call per kind of
        value instead of two or three per value (a page of 20 residents carries 40 refs): the tokens are
        joined by a newline, which no token or ref may hold, so the joined string matches exactly when
        every part does (the part count guards a newline inside a part), and the personal-data tripwire
        sees the same numbers (its patterns cannot reach across a newline). False means "ask
        :meth:`_validate`", never "invalid" by itself. Also normalises ``outcome`` and the sequences."""
        try:
            object.__setattr__(self, "outcome", Outcome(self.outcome))
        except ValueError:
            return False
        for name in ("actor_roles", "fields", "subject_refs", "record_refs"):
            items = getattr(self, name)
            if isinstance(items, str) or not isinstance(items, Sequence):
                return False
            object.__setattr__(self, name, tuple(items))
        tokens = [
            value
            for value in (self.actor_org, self.scenario, self.dataset, self.reason, self.trace_id)
            if value is not None
        ]
        if self.request_id is not None:
            tokens.append(self.request_id)
        tokens += self.actor_roles
        tokens += self.fields
        refs = (*self.subject_refs, *self.record_refs)
        return (
            isinstance(self.kind, str)
            and _KIND.fullmatch(self.kind) is not None
            and len(self.kind) <= _MAX_TEXT
            and isinstance(self.actor, str)
            and 0 < len(self.actor) <= _MAX_TEXT
            and _joined_match(_TOKENS, tokens)
            and _joined_match(_REFS, refs)
            and not looks_like_personal_data("\n".join((self.kind, self.actor, *tokens)))
            and type(self.record_count) is int
            and 0 <= self.record_count <= 2**53 - 1
            and isinstance(self.occurred_at, datetime)
            and self.occurred_at.utcoffset() is not None
            and isinstance(self.details, Mapping)
            and (self.source is None or is_source(self.source))
        )

    def _validate(self) -> None:
        _checked_text("kind", self.kind, optional=False, pattern=_KIND)
        try:
            object.__setattr__(self, "outcome", Outcome(self.outcome))
        except ValueError:
            raise ValueError("outcome must be one of allowed, refused, ok, error") from None
        _checked_text("actor", self.actor, optional=False)
        _checked_text("actor_org", self.actor_org, optional=True, pattern=_TOKEN)
        _checked_text("scenario", self.scenario, optional=True, pattern=_TOKEN)
        _checked_text("dataset", self.dataset, optional=True, pattern=_TOKEN)
        _checked_text("reason", self.reason, optional=True, pattern=_TOKEN)
        _checked_text("trace_id", self.trace_id, optional=True, pattern=_TOKEN)
        _checked_text("request_id", self.request_id, optional=True, pattern=_TOKEN)
        for name in ("actor_roles", "fields", "subject_refs", "record_refs"):
            items = getattr(self, name)
            if isinstance(items, str) or not isinstance(items, Sequence):
                raise ValueError(f"{name} must be a sequence of strings")
            object.__setattr__(self, name, tuple(items))
        for role in self.actor_roles:
            _checked_text("actor_roles[]", role, optional=False, pattern=_TOKEN)
        for name in self.fields:
            _checked_text("fields[]", name, optional=False, pattern=_TOKEN)
        for ref in (*self.subject_refs, *self.record_refs):
            if not isinstance(ref, str) or not is_ref(ref):
                raise ValueError("subject_refs and record_refs must be Pseudonymizer refs (<key_id>:<hex>)")
        if isinstance(self.record_count, bool) or not isinstance(self.record_count, int):
            raise ValueError("record_count must be an integer")
        if not 0 <= self.record_count <= 2**53 - 1:
            raise ValueError("record_count must be non-negative")
        if not isinstance(self.occurred_at, datetime) or self.occurred_at.utcoffset() is None:
            raise ValueError("occurred_at must be a timezone-aware datetime")
        if not isinstance(self.details, Mapping):
            raise ValueError("details must be a mapping")
        if self.source is not None and not is_source(self.source):
            raise ValueError("source must be an IP address, an address block or a word such as unknown")

    def to_body(self) -> dict[str, Any]:
        """The JSON object that is canonicalised (RFC 8785) and hashed into the chain and Merkle tree;
        ``source`` only when the event has one (see the class docstring)."""
        body: dict[str, Any] = {
            "v": BODY_VERSION,
            "kind": self.kind,
            "outcome": self.outcome.value,
            "actor": self.actor,
            "actor_org": self.actor_org,
            "actor_roles": list(self.actor_roles),
            "scenario": self.scenario,
            "dataset": self.dataset,
            "fields": list(self.fields),
            "record_count": self.record_count,
            "subject_refs": list(self.subject_refs),
            "record_refs": list(self.record_refs),
            "reason": self.reason,
            "trace_id": self.trace_id,
            "request_id": self.request_id,
            "details": _thawed(self.details),
            "occurred_at": format_timestamp(self.occurred_at),
        }
        if self.source is not None:
            body["source"] = self.source
        return body

    def canonical_body(self) -> bytes:
        """``canonical_json(self.to_body())`` (RFC 8785), computed without the generic checks where the
        validation in ``__post_init__`` already proves them: every field but ``actor`` and ``details``
        is an ASCII token or a bounded integer, so only those two can need the reference encoder."""
        return canonical_text(self).encode("utf-8")

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> AuditEvent:
        """Rebuild an event from a stored body (inverse of :meth:`to_body`)."""
        if body.get("v") != BODY_VERSION:
            raise ValueError("unsupported audit body version")
        return cls(
            kind=body["kind"],
            outcome=Outcome(body["outcome"]),
            actor=body["actor"],
            actor_org=body["actor_org"],
            actor_roles=tuple(body["actor_roles"]),
            scenario=body["scenario"],
            dataset=body["dataset"],
            fields=tuple(body["fields"]),
            record_count=body["record_count"],
            subject_refs=tuple(body["subject_refs"]),
            record_refs=tuple(body["record_refs"]),
            reason=body["reason"],
            trace_id=body["trace_id"],
            request_id=body["request_id"],
            details=body["details"],
            occurred_at=parse_timestamp(body["occurred_at"]),
            source=body.get("source"),
        )


def canonical_text(event: AuditEvent) -> str:
    """The RFC 8785 text of ``event.to_body()``; see :meth:`AuditEvent.canonical_body`."""
    return canonical_text_and_time(event)[0]


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# (days, seconds) since the epoch -> "YYYY-MM-DDTHH:MM:SS" (None below year 1000). One entry: the events
# of a burst share their second, and isoformat costs more than the rest of the encoding together.
_last_second: tuple[tuple[int, int], str | None] = ((0, -1), None)


def _body_stamp(when: datetime) -> str:
    """``format_timestamp(when)`` for an aware UTC datetime (``occurred_at`` after validation)."""
    global _last_second  # a one-entry cache, swapped atomically as a tuple
    since = when - _EPOCH
    key = (since.days, since.seconds)
    cached_key, prefix = _last_second
    if cached_key != key:
        naive = when.replace(microsecond=0, tzinfo=None)
        prefix = naive.isoformat() if naive.year >= 1000 else None
        _last_second = (key, prefix)
    if prefix is None:
        return format_timestamp(when)
    return f"{prefix}.{when.microsecond:06d}Z"


# Separator of the quoted tokens of a list (tokens never hold a quote or a backslash: see _TOKEN, _REFS).
_SEP: Final = '","'


def _reference_text(event: AuditEvent, stamp: str) -> tuple[str, str]:
    return canonical_json(event.to_body()).decode("utf-8"), stamp


def canonical_text_and_time(event: AuditEvent) -> tuple[str, str]:
    """The RFC 8785 text of ``event.to_body()`` and the ``occurred_at`` spelling inside it.

    Written out field by field, which is what RFC 8785 gives for this object: keys in UTF-16 order
    (§3.2.3; all ASCII here), no whitespace, integers as plain digits (§3.2.2.3, bounded by validation).
    Every string but ``actor`` and ``details`` already matched an ASCII token pattern (``source``: an
    address, :func:`is_source`) in ``__post_init__``, so it needs no escaping (§3.2.2.2); ``actor`` goes
    through the JSON string encoder and ``details`` through :func:`audit.canonical.encode_plain`, or — for
    what only the reference encoder handles (lone surrogates, floats) — the whole body through
    ``canonical_json``.
    A property test holds this to ``canonical_json(event.to_body())``.
    """
    stamp = _body_stamp(event.occurred_at)
    details = event.details
    actor = event.actor
    if details:
        thawed = _thawed(details)
        if not is_plain(thawed):
            return _reference_text(event, stamp)
        details_text = encode_plain(thawed)
    else:
        details_text = "{}"
    if not actor.isascii() and has_surrogate(actor):
        return _reference_text(event, stamp)
    # Quoted inline rather than through helper functions: ten calls per event were a sixth of its cost.
    # Optional tokens: null or "token"; token lists: the inside of the brackets ("a","b" or nothing).
    org = "null" if (x := event.actor_org) is None else f'"{x}"'
    dataset = "null" if (x := event.dataset) is None else f'"{x}"'
    reason = "null" if (x := event.reason) is None else f'"{x}"'
    request_id = "null" if (x := event.request_id) is None else f'"{x}"'
    scenario = "null" if (x := event.scenario) is None else f'"{x}"'
    source = "" if (x := event.source) is None else f',"source":"{x}"'
    trace_id = "null" if (x := event.trace_id) is None else f'"{x}"'
    roles = f'"{_SEP.join(t)}"' if (t := event.actor_roles) else ""
    fields = f'"{_SEP.join(t)}"' if (t := event.fields) else ""
    record_refs = f'"{_SEP.join(t)}"' if (t := event.record_refs) else ""
    subject_refs = f'"{_SEP.join(t)}"' if (t := event.subject_refs) else ""
    text = (
        f'{{"actor":{_json_string(actor)},"actor_org":{org},"actor_roles":[{roles}],"dataset":{dataset},'
        f'"details":{details_text},"fields":[{fields}],"kind":"{event.kind}","occurred_at":"{stamp}",'
        f'"outcome":"{event.outcome._value_}","reason":{reason},"record_count":{event.record_count:d},'
        f'"record_refs":[{record_refs}],"request_id":{request_id},"scenario":{scenario}{source},'
        f'"subject_refs":[{subject_refs}],"trace_id":{trace_id},"v":{BODY_VERSION:d}}}'
    )
    return text, stamp
