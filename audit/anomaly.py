"""Anomaly rules over data-access events; each finding names the event seqs that support it. Refusal
spikes count refused administrative acts (``admin.refused``) too: a steward trying again and again to
approve her own requests is an attempt as much as a refused read is.

A request no valid token identified is recorded with the actor ``anonymous``
(:data:`audit.events.ANONYMOUS_ACTOR`): many unknown senders, no user. No rule counts such requests as
one user's. The refusal-spike rule counts them on their own, per window, as a finding about no one
(``unauthenticated``): a supervisor learns that requests without a valid token were refused in numbers,
and where to look (the ``auth.`` events: failed sign-ins, and the refusals the gateway counts per source
address once one sends too many), not that some user was probing.

Six rules, each parameterised (defaults in ``audit/data/anomaly_rules.toml``): refusal spikes, off-hours
reading, bulk reading, attempts outside jurisdiction, one resident read by many users, reading with no
active grant. They are deliberately simple, explainable counts over fixed windows — a supervisor must be
able to check a finding by hand against the listed events (GB/T 35273-2020 §11.2 security audit: detect
and record abnormal access; GB/T 37964 on re-identification risk from aggregated reads).

The library knows nothing of scenarios or grants: the caller passes the scenario hours and the grant
windows it has (:class:`AnomalyContext`), as plain data.
"""

from __future__ import annotations

import heapq
import tomllib
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine

from audit.events import ANONYMOUS_ACTOR, Outcome, format_timestamp
from audit.pseudonym import SUBJECT_REF_LINKS, PseudonymRing
from audit.query import (
    ACCESS_KIND_PREFIX,
    CHINA_STANDARD_TIME,
    EventQuery,
    EventSummary,
    iter_events,
)

#: A refused administrative act (a missing permission, or a rule such as separation of duties): counted by
#: the refusal-spike rule beside refused data accesses, and by no other rule (it reads no one's data).
ADMIN_REFUSED_KIND: Final = "admin.refused"

RULES: Final = (
    "refusal_spike",
    "off_hours",
    "bulk_reading",
    "outside_jurisdiction",
    "one_resident_many_users",
    "no_active_grant",
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=CHINA_STANDARD_TIME)
#: How many source addresses a refusal spike names: enough to block the senders of a flood, few enough
#: to read in one line.
TOP_SOURCES: Final = 3


class AnomalyRulesError(ValueError):
    """The rules file or an override is not valid (names the rule and key).

    ``rule`` and ``key`` are set only when they are names this module defines (never a name as typed),
    ``needs`` says in Chinese and English what the key takes, so a caller can tell a person what to fix.
    """

    def __init__(
        self,
        message: str,
        *,
        rule: str | None = None,
        key: str | None = None,
        needs: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.rule = rule if rule in RULES else None
        self.key = key if self.rule is not None and key in _KEYS[self.rule] else None
        self.needs = needs


@dataclass(frozen=True, slots=True)
class GrantWindow:
    """When a grant was usable: ``valid_from`` (None: from creation) to ``valid_until``/revocation."""

    valid_from: datetime | None
    valid_until: datetime | None
    break_glass: bool = False

    def active_at(self, when: datetime) -> bool:
        if self.valid_from is not None and when < self.valid_from:
            return False
        return self.valid_until is None or when < self.valid_until


@dataclass(frozen=True, slots=True)
class AnomalyContext:
    """What the caller knows that the log does not: scenario hours and grant validity windows.

    ``grants`` None means "not known": the no-active-grant rule then only flags reads with no grant id.
    ``refs`` (the kept audit-ref keys) are not plain data, but the rule needs a key to join a resident's
    refs across a key rotation, and they stay inside the audit library.
    """

    scenario_hours: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    grants: Mapping[str, GrantWindow] | None = None
    #: The audit-ref keys the gateway keeps: with them, one resident's refs under the keys before and after
    #: a rotation count as one resident (:func:`resident_groups`). None: refs are joined only through the
    #: links the events carry themselves.
    refs: PseudonymRing | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    severity: str
    summary_zh: str
    summary_en: str
    seqs: tuple[int, ...]
    actor: str | None = None
    subject_ref: str | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    metrics: Mapping[str, int | float] = field(default_factory=dict)
    #: The organisation the actor read from in the finding's latest event: a user id alone tells the
    #: supervisor reading the 通报 nothing about where to look.
    actor_org: str | None = None
    #: About requests no valid token identified (``actor`` None): nobody's, whoever sent them.
    unauthenticated: bool = False
    #: A refusal spike's most frequent source addresses, with how many of its refusals each sent (at most
    #: :data:`TOP_SOURCES`, most first): what a supervisor can have blocked. Empty for the other rules.
    sources: tuple[tuple[str, int], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "summary_zh": self.summary_zh,
            "summary_en": self.summary_en,
            "seqs": list(self.seqs),
            "actor": self.actor,
            "actor_org": self.actor_org,
            "unauthenticated": self.unauthenticated,
            "subject_ref": self.subject_ref,
            "window_start": format_timestamp(self.window_start) if self.window_start else None,
            "window_end": format_timestamp(self.window_end) if self.window_end else None,
            "metrics": dict(self.metrics),
            "sources": [{"source": source, "refusals": n} for source, n in self.sources],
        }


# -- rules file -------------------------------------------------------------------------------------

_KEYS: Final[dict[str, dict[str, type]]] = {
    "refusal_spike": {"enabled": bool, "window_minutes": int, "min_refusals": int, "min_ratio": float},
    "off_hours": {
        "enabled": bool,
        "night_start_hour": int,
        "night_end_hour": int,
        "include_refused": bool,
    },
    "bulk_reading": {"enabled": bool, "window_minutes": int, "min_records": int},
    "outside_jurisdiction": {
        "enabled": bool,
        "reasons": list,
        "window_minutes": int,
        "min_attempts": int,
        "count_scope_violation_alerts": bool,
    },
    "one_resident_many_users": {"enabled": bool, "window_days": int, "min_users": int},
    "no_active_grant": {"enabled": bool, "flag_break_glass": bool},
}


def _needs(key: str, expected: type) -> tuple[str, str]:
    """What ``key`` takes, in the words the checks below apply."""
    if expected is bool:
        return "true 或 false", "true or false"
    if expected is int and key.endswith("hour"):
        return "0 到 24 之间的整数（北京时间的小时）", "a whole number from 0 to 24 (Beijing hour)"
    if expected is int and key.startswith(("window", "min_")):
        return "不小于 1 的整数", "a whole number of at least 1"
    if expected is int:
        return "不小于 0 的整数", "a whole number of at least 0"
    if expected is float:
        return "0 到 1 之间的数", "a number from 0 to 1"
    return "用逗号分隔的代码", "codes separated by commas"


def _coerce(rule: str, key: str, value: Any) -> Any:
    expected = _KEYS[rule].get(key)
    if expected is None:
        raise AnomalyRulesError(f"[{rule}] has no setting {key!r}", rule=rule)

    def bad(problem: str) -> AnomalyRulesError:
        return AnomalyRulesError(f"[{rule}] {key} {problem}", rule=rule, key=key, needs=_needs(key, expected))

    if expected is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise bad("must be true or false")
        return value
    if expected is int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise bad("must be a whole number") from None
        if isinstance(value, bool) or number < 0 or (key.endswith("hour") and number > 24):
            raise bad("is out of range")
        if key.startswith(("window", "min_")) and number < 1:
            raise bad("must be at least 1")
        return number
    if expected is float:
        try:
            ratio = float(value)
        except (TypeError, ValueError):
            raise bad("must be a number") from None
        if not 0.0 <= ratio <= 1.0:
            raise bad("must be between 0 and 1")
        return ratio
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
        raise bad("must be a list of codes")
    return tuple(items)


@dataclass(frozen=True, slots=True)
class AnomalyRules:
    """Validated rule settings: ``settings[rule][key]``."""

    settings: Mapping[str, Mapping[str, Any]]

    def __getitem__(self, rule: str) -> Mapping[str, Any]:
        return self.settings[rule]

    def with_overrides(self, overrides: Mapping[str, Any]) -> AnomalyRules:
        """Override keys given as ``{"rule.key": value}`` (e.g. from query parameters)."""
        merged = {rule: dict(values) for rule, values in self.settings.items()}
        for dotted, value in overrides.items():
            rule, _, key = dotted.partition(".")
            if rule not in merged or not key:
                raise AnomalyRulesError(f"unknown rule setting {dotted!r}", rule=rule)
            merged[rule][key] = _coerce(rule, key, value)
        return AnomalyRules(merged)

    def to_json(self) -> dict[str, dict[str, Any]]:
        return {
            rule: {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
            for rule, values in self.settings.items()
        }


def load_anomaly_rules(path: Path | None = None) -> AnomalyRules:
    """Load and validate the rules file (the packaged defaults when ``path`` is None)."""
    if path is None:
        text = resources.files("audit").joinpath("data/anomaly_rules.toml").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AnomalyRulesError(f"anomaly rules file is not valid TOML: {exc}") from None
    unknown = set(doc) - set(RULES)
    if unknown:
        raise AnomalyRulesError(f"unknown anomaly rules: {sorted(unknown)}")
    settings: dict[str, dict[str, Any]] = {}
    for rule in RULES:
        table = doc.get(rule)
        if not isinstance(table, dict):
            raise AnomalyRulesError(f"anomaly rule [{rule}] is missing")
        missing = set(_KEYS[rule]) - set(table)
        if missing:
            raise AnomalyRulesError(f"[{rule}] is missing {sorted(missing)}")
        settings[rule] = {key: _coerce(rule, key, value) for key, value in table.items()}
    return AnomalyRules(settings)


# -- evaluation -------------------------------------------------------------------------------------


def _bucket(when: datetime, minutes: int) -> tuple[datetime, datetime]:
    span = timedelta(minutes=minutes)
    index = (when - _EPOCH) // span
    start = _EPOCH + index * span
    return start.astimezone(UTC), (start + span).astimezone(UTC)


def _local_hour(when: datetime) -> int:
    return when.astimezone(CHINA_STANDARD_TIME).hour


def _in_window(hour: int, start: int, end: int) -> bool:
    """``start <= hour < end``, wrapping past midnight when ``start > end``."""
    if start <= end:
        return start <= hour < end
    return hour >= start or hour < end


def _user(event: EventSummary) -> str | None:
    """Whose act the event is: its actor, or None for a request no valid token identified (any sender)."""
    return None if event.actor == ANONYMOUS_ACTOR else event.actor


def _top_sources(refused: Sequence[EventSummary]) -> tuple[tuple[str, int], ...]:
    """The :data:`TOP_SOURCES` sources that sent most of ``refused``, with their counts (most first, then by
    address); events without a source (written before sources were recorded) are not counted."""
    counts = Counter(e.source for e in refused if e.source is not None)
    return tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:TOP_SOURCES])


def refusal_spikes(events: Sequence[EventSummary], s: Mapping[str, Any]) -> list[Finding]:
    """Per user and window, the refusals past both thresholds. The refusals of requests no valid token
    identified are grouped per window on their own, never as a user's (:func:`_unauthenticated`). Each
    finding names the sources most of its refusals came from (:func:`_top_sources`)."""
    groups: dict[tuple[str | None, datetime, datetime], list[EventSummary]] = defaultdict(list)
    for e in events:
        groups[(_user(e), *_bucket(e.occurred_at, s["window_minutes"]))].append(e)
    findings = []
    for (actor, start, end), group in sorted(groups.items(), key=lambda item: item[0][1:]):
        refused_events = [e for e in group if e.outcome == Outcome.REFUSED.value]
        refused = [e.seq for e in refused_events]
        ratio = len(refused) / len(group)
        if len(refused) < s["min_refusals"] or ratio < s["min_ratio"]:
            continue
        metrics = {"refusals": len(refused), "accesses": len(group), "ratio": round(ratio, 3)}
        sources = _top_sources(refused_events)
        if actor is None:
            findings.append(
                _unauthenticated(tuple(refused), s["window_minutes"], start, end, metrics, sources)
            )
            continue
        findings.append(
            Finding(
                "refusal_spike",
                "high",
                f"同一用户在 {s['window_minutes']} 分钟内被拒绝 {len(refused)} 次（占 {ratio:.0%}）",
                f"{len(refused)} refusals for one user within {s['window_minutes']} min ({ratio:.0%})",
                tuple(refused),
                actor=actor,
                window_start=start,
                window_end=end,
                metrics=metrics,
                sources=sources,
            )
        )
    return findings


def _unauthenticated(
    seqs: tuple[int, ...],
    minutes: int,
    start: datetime,
    end: datetime,
    metrics: Mapping[str, int | float],
    sources: tuple[tuple[str, int], ...] = (),
) -> Finding:
    """A window's refusals of requests without a valid token: attributed to no one (whoever sent them is
    not known, and they may be many), said so, naming the addresses most of them came from (what a
    supervisor can have blocked), and pointing to where the requests are listed. Medium: nothing was
    served, and there is no user to ask. The requests themselves are the events of actor ``anonymous``
    (each with its refusal code and source); the sources past the flood allowance, the gateway's
    ``auth.refused_burst`` events. Pointing at ``auth.`` alone sent a supervisor to an empty list: the
    refused data requests are recorded as ``data.`` events, not ``auth.`` ones."""
    n = len(seqs)
    if sources:
        from_zh = "主要来源地址：" + "、".join(f"{source}（{count} 次）" for source, count in sources) + "；"
        from_en = "mostly from " + ", ".join(f"{source} ({count})" for source, count in sources) + "; "
        by_source_zh = f"，某一地址的请求可用 grassroots supervise events --source {sources[0][0]} 查看"
        by_source_en = f", grassroots supervise events --source {sources[0][0]} those from one address"
    else:
        from_zh = from_en = by_source_zh = by_source_en = ""
    return Finding(
        "refusal_spike",
        "medium",
        f"{minutes} 分钟内有 {n} 次未持有效登录凭证的请求被拒绝（发送方未经认证，不归属于任何用户；{from_zh}"
        "这些请求可用 grassroots supervise events --actor anonymous --outcome refused 查看"
        f"{by_source_zh}，"
        "按来源地址汇总的拒绝可用 grassroots supervise events --kind auth. 查看）",
        f"{n} refusals of requests without a valid token within {minutes} min (senders not "
        f"authenticated: attributed to no user; {from_en}grassroots supervise events --actor anonymous "
        f"--outcome refused lists these requests{by_source_en}, and grassroots supervise events --kind auth. "
        "the refusals counted per source address)",
        seqs,
        window_start=start,
        window_end=end,
        metrics=metrics,
        unauthenticated=True,
        sources=sources,
    )


def off_hours(
    events: Sequence[EventSummary], s: Mapping[str, Any], scenario_hours: Mapping[str, tuple[int, int]]
) -> list[Finding]:
    by_actor: dict[str, list[EventSummary]] = defaultdict(list)
    for e in events:
        if e.outcome != Outcome.ALLOWED.value and not (
            s["include_refused"] and e.outcome == Outcome.REFUSED.value and _user(e) is not None
        ):
            continue
        hour = _local_hour(e.occurred_at)
        night = _in_window(hour, s["night_start_hour"], s["night_end_hour"])
        hours = scenario_hours.get(e.scenario or "")
        outside = hours is not None and not _in_window(hour, hours[0], hours[1])
        if night or outside:
            by_actor[e.actor].append(e)
    return [
        Finding(
            "off_hours",
            "medium",
            f"在场景允许时段外或夜间（北京时间 {s['night_start_hour']}:00–{s['night_end_hour']}:00）"
            f"查看数据 {len(group)} 次",
            f"{len(group)} reads outside the scenario's hours or at night "
            f"({s['night_start_hour']}:00–{s['night_end_hour']}:00 Beijing time)",
            tuple(e.seq for e in group),
            actor=actor,
            window_start=group[0].occurred_at,
            window_end=group[-1].occurred_at,
            metrics={"reads": len(group), "records": sum(e.record_count for e in group)},
        )
        for actor, group in sorted(by_actor.items())
    ]


def bulk_reading(events: Sequence[EventSummary], s: Mapping[str, Any]) -> list[Finding]:
    groups: dict[tuple[str, datetime, datetime], list[EventSummary]] = defaultdict(list)
    for e in events:
        if e.outcome == Outcome.ALLOWED.value:
            groups[(e.actor, *_bucket(e.occurred_at, s["window_minutes"]))].append(e)
    findings = []
    for (actor, start, end), group in sorted(groups.items(), key=lambda item: item[0][1:]):
        records = sum(e.record_count for e in group)
        if records >= s["min_records"]:
            findings.append(
                Finding(
                    "bulk_reading",
                    "high",
                    f"同一用户在 {s['window_minutes']} 分钟内读取 {records} 条记录",
                    f"{records} records read by one user within {s['window_minutes']} min",
                    tuple(e.seq for e in group),
                    actor=actor,
                    window_start=start,
                    window_end=end,
                    metrics={"records": records, "reads": len(group)},
                )
            )
    return findings


def outside_jurisdiction(events: Sequence[EventSummary], s: Mapping[str, Any]) -> list[Finding]:
    reasons = set(s["reasons"])
    groups: dict[tuple[str, datetime, datetime], list[EventSummary]] = defaultdict(list)
    for e in events:
        # A request without a valid token is nobody's attempt (refusal_spike counts those on their own).
        refused = e.outcome == Outcome.REFUSED.value and e.reason in reasons and _user(e) is not None
        alerts = e.details.get("alerts") if isinstance(e.details, Mapping) else None
        scope_alert = (
            s["count_scope_violation_alerts"]
            and isinstance(alerts, list)
            and "upstream_scope_violation" in alerts
        )
        if refused or scope_alert:
            groups[(e.actor, *_bucket(e.occurred_at, s["window_minutes"]))].append(e)
    findings = []
    for (actor, start, end), group in sorted(groups.items(), key=lambda item: item[0][1:]):
        if len(group) >= s["min_attempts"]:
            findings.append(
                Finding(
                    "outside_jurisdiction",
                    "high",
                    f"同一用户 {len(group)} 次尝试查看管辖范围或授权以外的数据",
                    f"{len(group)} attempts by one user to read outside their jurisdiction or grant",
                    tuple(e.seq for e in group),
                    actor=actor,
                    window_start=start,
                    window_end=end,
                    metrics={"attempts": len(group)},
                )
            )
    return findings


def _event_links(event: EventSummary) -> list[tuple[str, str, str]]:
    """``(subject ref, retired key id, link)`` from the event's ``subject_ref_links`` (see
    :meth:`PseudonymRing.links`); a malformed entry is skipped, never guessed at."""
    stored = event.details.get(SUBJECT_REF_LINKS) if isinstance(event.details, Mapping) else None
    if not isinstance(stored, Mapping):
        return []
    found = []
    for old_key, links in stored.items():
        if isinstance(links, list) and len(links) == len(event.subject_refs):
            found += [(ref, old_key, link) for ref, link in zip(event.subject_refs, links, strict=True)]
    return found


def resident_groups(events: Sequence[EventSummary], refs: PseudonymRing | None) -> dict[str, str]:
    """Each subject ref of ``events`` -> one representative ref per resident, across audit-ref key rotations.

    Refs under two keys cannot be compared; what joins them is a link (:mod:`audit.pseudonym`): an event
    written under key B after a rotation carries, for each resident, B's link of the resident's ref under
    each retired key A. With the kept keys, the link of every A-ref in ``events`` under every other kept
    key is computed, and a ref and a link that meet are one resident (union-find, so a chain of rotations
    within one window joins too). The representative is the ref of the resident's latest event.
    """
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        root = node
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while node != root:
            parent[node], node = root, parent[node]
        return root

    def union(a: str, b: str) -> None:
        parent[find(a)] = find(b)

    latest: dict[str, str] = {}
    for e in events:
        writer = e.subject_refs[0].partition(":")[0] if e.subject_refs else ""
        for ref, old_key, link in _event_links(e):
            union(ref, f"{writer}>{old_key}:{link}")
        for ref in e.subject_refs:
            find(ref)
    if refs is not None:
        for ref in [node for node in parent if ">" not in node]:
            old_key = ref.partition(":")[0]
            for writer, link in refs.link_candidates(ref):
                union(ref, f"{writer}>{old_key}:{link}")
    for e in events:  # in seq order: the last ref seen for a resident is the latest one
        for ref in e.subject_refs:
            latest[find(ref)] = ref
    return {ref: latest[find(ref)] for e in events for ref in e.subject_refs}


def one_resident_many_users(
    events: Sequence[EventSummary], s: Mapping[str, Any], refs: PseudonymRing | None = None
) -> list[Finding]:
    allowed = [e for e in events if e.outcome == Outcome.ALLOWED.value]
    resident = resident_groups(allowed, refs)
    groups: dict[tuple[str, datetime, datetime], list[EventSummary]] = defaultdict(list)
    for e in allowed:
        for who in {resident[ref] for ref in e.subject_refs}:
            groups[(who, *_bucket(e.occurred_at, s["window_days"] * 1440))].append(e)
    findings = []
    for (ref, start, end), group in sorted(groups.items(), key=lambda item: (item[0][1], item[0][0])):
        users = {e.actor for e in group}
        if len(users) >= s["min_users"]:
            findings.append(
                Finding(
                    "one_resident_many_users",
                    "medium",
                    f"同一居民的信息在 {s['window_days']} 天内被 {len(users)} 名不同用户查看",
                    f"one resident's data read by {len(users)} different users "
                    f"within {s['window_days']} days",
                    tuple(e.seq for e in group),
                    subject_ref=ref,
                    window_start=start,
                    window_end=end,
                    metrics={"users": len(users), "reads": len(group)},
                )
            )
    return findings


def no_active_grant(
    events: Sequence[EventSummary], s: Mapping[str, Any], grants: Mapping[str, GrantWindow] | None
) -> list[Finding]:
    by_actor: dict[str, list[EventSummary]] = defaultdict(list)
    for e in events:
        if e.outcome != Outcome.ALLOWED.value:
            continue
        grant_id = e.details.get("grant_id") if isinstance(e.details, Mapping) else None
        if not isinstance(grant_id, str) or not grant_id:
            by_actor[e.actor].append(e)
            continue
        if grants is None:
            continue
        window = grants.get(grant_id)
        if (
            window is None
            or not window.active_at(e.occurred_at)
            or (window.break_glass and s["flag_break_glass"])
        ):
            by_actor[e.actor].append(e)
    return [
        Finding(
            "no_active_grant",
            "high",
            f"在没有有效场景授权（或仅凭紧急授权）的情况下查看数据 {len(group)} 次",
            f"{len(group)} reads with no active scenario grant (or under an emergency grant)",
            tuple(e.seq for e in group),
            actor=actor,
            window_start=group[0].occurred_at,
            window_end=group[-1].occurred_at,
            metrics={"reads": len(group)},
        )
        for actor, group in sorted(by_actor.items())
    ]


def evaluate(
    events: Iterable[EventSummary],
    rules: AnomalyRules,
    context: AnomalyContext | None = None,
    *,
    only: Iterable[str] | None = None,
) -> list[Finding]:
    """Run the enabled rules (or just ``only``) over access events; findings grouped by rule order."""
    ctx = context or AnomalyContext()
    selected = set(only) if only is not None else set(RULES)
    unknown = selected - set(RULES)
    if unknown:
        raise AnomalyRulesError(f"unknown anomaly rules: {sorted(unknown)}")
    counted = sorted(
        (e for e in events if e.kind.startswith(ACCESS_KIND_PREFIX) or e.kind == ADMIN_REFUSED_KIND),
        key=lambda e: e.seq,
    )
    access = [e for e in counted if e.kind.startswith(ACCESS_KIND_PREFIX)]
    findings: list[Finding] = []
    for rule in RULES:
        s = rules[rule]
        if rule not in selected or not s["enabled"]:
            continue
        if rule == "refusal_spike":
            findings += refusal_spikes(counted, s)
        elif rule == "off_hours":
            findings += off_hours(access, s, ctx.scenario_hours)
        elif rule == "bulk_reading":
            findings += bulk_reading(access, s)
        elif rule == "outside_jurisdiction":
            findings += outside_jurisdiction(access, s)
        elif rule == "one_resident_many_users":
            findings += one_resident_many_users(access, s, ctx.refs)
        else:
            findings += no_active_grant(access, s, ctx.grants)
    org_of = {e.seq: e.actor_org for e in counted}
    return [
        replace(f, actor_org=org_of.get(max(f.seqs))) if f.actor is not None and f.seqs else f
        for f in findings
    ]


def detect_anomalies(
    engine: Engine,
    rules: AnomalyRules,
    context: AnomalyContext | None = None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    org: str | None = None,
    only: Iterable[str] | None = None,
    unattributed: bool = False,
) -> list[Finding]:
    """Read the access events and refused administrative acts in ``[since, until)`` (optionally one
    organisation subtree, with the events no organisation is charged with when ``unattributed``, as
    :class:`~audit.query.EventQuery` says) and evaluate."""
    return evaluate(_evaluated_events(engine, org, since, until, unattributed), rules, context, only=only)


def _evaluated_events(
    engine: Engine, org: str | None, since: datetime | None, until: datetime | None, unattributed: bool
) -> Iterator[EventSummary]:
    """The events the rules read, oldest first: data accesses and refused administrative acts."""
    return heapq.merge(
        *(
            iter_events(
                engine, EventQuery(org=org, unattributed=unattributed, kind=kind, since=since, until=until)
            )
            for kind in (ACCESS_KIND_PREFIX, ADMIN_REFUSED_KIND)
        ),
        key=lambda e: e.seq,
    )
