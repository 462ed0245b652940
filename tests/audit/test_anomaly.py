"""Anomaly rules on prepared event sequences, on a real SQLite log: each finding names exactly its events."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from audit import (
    ANONYMOUS_ACTOR,
    SUBJECT_REF_LINKS,
    AnomalyContext,
    AnomalyRulesError,
    AuditEvent,
    AuditLog,
    Finding,
    GrantWindow,
    Outcome,
    Pseudonymizer,
    PseudonymRing,
    build_monthly_report,
    detect_anomalies,
    load_anomaly_rules,
    render_html,
)
from tests.audit.conftest import Store
from tests.audit.helpers import PSEUDONYMIZER

# 2026-11-10 10:00 Beijing time = 02:00 UTC: inside DIBAO_REVIEW's 7-21 window, not at night.
DAY = datetime(2026, 11, 10, 2, 0, tzinfo=UTC)
RULES = load_anomaly_rules()
CONTEXT = AnomalyContext(
    scenario_hours={"DIBAO_REVIEW": (7, 21)},
    grants={
        "g-active": GrantWindow(DAY - timedelta(days=30), DAY + timedelta(days=30)),
        "g-expired": GrantWindow(DAY - timedelta(days=60), DAY - timedelta(days=1)),
        "g-emergency": GrantWindow(DAY - timedelta(days=1), DAY + timedelta(days=1), break_glass=True),
    },
)


def access(
    minutes: float,
    *,
    actor: str = "u-normal",
    outcome: Outcome = Outcome.ALLOWED,
    reason: str | None = None,
    records: int = 5,
    subjects: tuple[str, ...] = (),
    grant: str | None = "g-active",
    alerts: tuple[str, ...] = (),
    org: str = "310151101201",
) -> AuditEvent:
    details: dict[str, Any] = {}
    if grant is not None and outcome is Outcome.ALLOWED:
        details["grant_id"] = grant
    if alerts:
        details["alerts"] = list(alerts)
    return AuditEvent(
        kind="data.list",
        outcome=outcome,
        actor=actor,
        actor_org=org,
        actor_roles=("village_cadre",),
        scenario="DIBAO_REVIEW",
        dataset="residents",
        record_count=records if outcome is Outcome.ALLOWED else 0,
        subject_refs=tuple(PSEUDONYMIZER.ref(s) for s in subjects) if outcome is Outcome.ALLOWED else (),
        reason=reason or ("allowed" if outcome is Outcome.ALLOWED else "field_not_granted"),
        details=details,
        occurred_at=DAY + timedelta(minutes=minutes),
    )


def refused_act(
    minutes: float, *, actor: str = "u-steward", reason: str = "separation_of_duties"
) -> AuditEvent:
    """An administrative act refused by a rule (``admin.refused``, as the gateway records it)."""
    return AuditEvent(
        kind="admin.refused",
        outcome=Outcome.REFUSED,
        actor=actor,
        actor_org="310151000000",
        actor_roles=("data_steward",),
        reason=reason,
        details={"permission": "approve grants", "grant_id": "grt_0123456789abcdef0123"},
        occurred_at=DAY + timedelta(minutes=minutes),
    )


@dataclass(frozen=True)
class Case:
    name: str
    rule: str
    background: list[AuditEvent]
    suspicious: list[AuditEvent]  # exactly the events the finding must name


BACKGROUND = [access(i * 7) for i in range(6)]  # ordinary daytime work: no rule fires on it

CASES = [
    Case(
        "twelve refusals in an hour",
        "refusal_spike",
        BACKGROUND,
        [access(100 + i, actor="u-prober", outcome=Outcome.REFUSED) for i in range(12)],
    ),
    Case(
        # A steward trying again and again to approve her own requests: attempts as much as refused reads.
        "twelve refused administrative acts in an hour",
        "refusal_spike",
        BACKGROUND,
        [refused_act(100 + i) for i in range(12)],
    ),
    Case(
        "reading at 23:30 Beijing time",
        "off_hours",
        BACKGROUND,
        [access(13 * 60 + 30 + i, actor="u-night") for i in range(2)],
    ),
    Case(
        "reading at 06:30, before the scenario's 07:00 start",
        "off_hours",
        BACKGROUND,
        [access(-3 * 60 - 30, actor="u-early")],
    ),
    Case(
        "600 records in one hour",
        "bulk_reading",
        BACKGROUND,
        [access(120 + i, actor="u-bulk", records=200) for i in range(3)],
    ),
    Case(
        "three records outside the jurisdiction",
        "outside_jurisdiction",
        BACKGROUND,
        [access(200 + i, actor="u-curious", outcome=Outcome.REFUSED, reason="not_found") for i in range(3)],
    ),
    Case(
        # Before, the registry was asked and answered 404 (not_found); refused earlier now, still counted.
        "three residents looked up by ID number in the record's place",
        "outside_jurisdiction",
        BACKGROUND,
        [
            access(200 + i, actor="u-curious", outcome=Outcome.REFUSED, reason="personal_data_in_record_id")
            for i in range(3)
        ],
    ),
    Case(
        "one resident read by three users",
        "one_resident_many_users",
        BACKGROUND,
        [access(300 + i, actor=f"u-{i}", subjects=("resident-7",)) for i in range(3)],
    ),
    Case(
        "reads with no grant, an expired grant and an emergency grant",
        "no_active_grant",
        BACKGROUND,
        [
            access(400, actor="u-nogrant", grant=None),
            access(401, actor="u-nogrant", grant="g-expired"),
            access(402, actor="u-nogrant", grant="g-emergency"),
            access(403, actor="u-nogrant", grant="g-unknown"),
        ],
    ),
]


def load(store: Store, events: list[AuditEvent]) -> list[int]:
    return [r.seq for r in AuditLog(store.engine).append_many(events)]


def test_background_alone_raises_nothing(sqlite: Store) -> None:
    load(sqlite, BACKGROUND)
    assert detect_anomalies(sqlite.engine, RULES, CONTEXT) == []


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_each_rule_names_exactly_the_suspicious_events(sqlite: Store, case: Case) -> None:
    load(sqlite, case.background)
    expected = load(sqlite, case.suspicious)
    findings = detect_anomalies(sqlite.engine, RULES, CONTEXT)
    assert [f.rule for f in findings] == [case.rule]
    assert list(findings[0].seqs) == expected
    assert findings[0].summary_zh and findings[0].summary_en


def test_a_finding_about_a_user_names_the_organisation_they_read_from(sqlite: Store) -> None:
    """A user id alone ("u-1a21c37c13") told the supervisor reading the findings nothing about where to look;
    each finding about a user carries the organisation of its latest event, and the monthly page names it."""
    load(sqlite, BACKGROUND)
    load(
        sqlite,
        [access(100 + i, actor="u-prober", outcome=Outcome.REFUSED, org="310151102201") for i in range(12)],
    )
    (finding,) = detect_anomalies(sqlite.engine, RULES, CONTEXT)
    assert (finding.rule, finding.actor, finding.actor_org) == ("refusal_spike", "u-prober", "310151102201")
    assert finding.to_json()["actor_org"] == "310151102201"
    report = build_monthly_report(
        sqlite.engine, "2026-11", RULES, CONTEXT, org_names={"310151102201": "星桥村村民委员会"}, now=DAY
    )
    assert "<td>u-prober（星桥村村民委员会）</td>" in render_html(report)
    unnamed = build_monthly_report(sqlite.engine, "2026-11", RULES, CONTEXT, now=DAY)
    assert "<td>u-prober（310151102201）</td>" in render_html(unnamed)


def anonymous(minutes: float, reason: str = "missing_token") -> AuditEvent:
    """A data request refused for want of a valid token, as the gateway records it: actor ``anonymous``
    (whoever sent it), charged to no organisation."""
    return replace(
        access(minutes, actor=ANONYMOUS_ACTOR, outcome=Outcome.REFUSED, reason=reason), actor_org=None
    )


def test_refusals_without_a_valid_token_are_no_users_and_are_reported_as_such(sqlite: Store) -> None:
    """Requests without a valid token (actor ``anonymous``: many unknown senders) were grouped as one
    actor, and their refusals reported as 同一用户在 60 分钟内被拒绝 12 次 / "refusals for one user", about a
    user called anonymous. Now they are a finding of their own about no user, saying whose they are not
    and where the senders are counted; a user's own refusals in the same hour are still hers alone, and
    the monthly page names no user for them."""
    load(sqlite, BACKGROUND)
    unknown = load(
        sqlite, [anonymous(100 + i, "expired_token" if i % 3 else "missing_token") for i in range(12)]
    )
    prober = load(sqlite, [access(100.5 + i, actor="u-prober", outcome=Outcome.REFUSED) for i in range(12)])
    findings = detect_anomalies(sqlite.engine, RULES, CONTEXT)
    assert [(f.rule, f.actor, f.unauthenticated, list(f.seqs)) for f in findings] == [
        ("refusal_spike", None, True, unknown),
        ("refusal_spike", "u-prober", False, prober),
    ]
    nobody = findings[0]
    assert "同一用户" not in nobody.summary_zh and "one user" not in nobody.summary_en
    assert nobody.summary_zh.startswith(
        "60 分钟内有 12 次未持有效登录凭证的请求被拒绝（发送方未经认证，不归属于任何用户"
    )
    assert "supervise events --kind auth." in nobody.summary_zh and nobody.summary_en.isascii()
    # and the command that lists these very requests (auth. holds only sign-ins and per-address bursts)
    assert "supervise events --actor anonymous --outcome refused" in nobody.summary_zh
    assert "supervise events --actor anonymous --outcome refused" in nobody.summary_en
    assert (nobody.actor_org, nobody.severity, dict(nobody.metrics)) == (
        None,
        "medium",
        {"refusals": 12, "accesses": 12, "ratio": 1.0},
    )
    shown = nobody.to_json()
    assert (shown["actor"], shown["unauthenticated"]) == (None, True)
    assert findings[1].to_json()["unauthenticated"] is False

    report = build_monthly_report(sqlite.engine, "2026-11", RULES, CONTEXT, unattributed=True, now=DAY)
    assert [(f["actor"], f["unauthenticated"]) for f in report.findings] == [
        (None, True),
        ("u-prober", False),
    ]
    page = render_html(report)
    assert "<td>未持有效登录凭证的请求（不归属于任何用户）</td>" in page and "<td>anonymous" not in page


def test_no_rule_counts_requests_without_a_valid_token_as_a_users(sqlite: Store) -> None:
    """Refused at night and for a reason the jurisdiction rule counts, they still are nobody's reading or
    attempt: with refusals counted at night and the sign-in codes among the jurisdiction rule's reasons,
    neither rule names ``anonymous``; only the refusal spike counts them, as nobody's."""
    load(sqlite, BACKGROUND)
    load(sqlite, [anonymous(13 * 60 + 30 + i) for i in range(12)])  # 23:30 Beijing time on
    rules = RULES.with_overrides(
        {"off_hours.include_refused": True, "outside_jurisdiction.reasons": "not_found,missing_token"}
    )
    findings = detect_anomalies(sqlite.engine, rules, CONTEXT)
    assert [(f.rule, f.actor) for f in findings] == [("refusal_spike", None)]


def test_the_monthly_report_counts_refused_acts_in_its_refusal_spikes(sqlite: Store) -> None:
    load(sqlite, BACKGROUND)
    load(sqlite, [refused_act(100 + i, actor="u-steward") for i in range(12)])
    report = build_monthly_report(sqlite.engine, "2026-11", RULES, CONTEXT, now=DAY)
    assert [(f["rule"], f["actor"]) for f in report.findings] == [("refusal_spike", "u-steward")]
    assert report.totals.total == len(BACKGROUND)  # the access tables count data accesses only


@pytest.mark.parametrize(
    ("override", "fires"),
    [
        ({"refusal_spike.min_refusals": 13}, False),
        ({"refusal_spike.min_refusals": 12}, True),
        ({"refusal_spike.enabled": "false"}, False),
        ({"refusal_spike.min_ratio": 1.0}, True),
    ],
)
def test_thresholds_are_parameters(sqlite: Store, override: dict[str, Any], fires: bool) -> None:
    load(sqlite, [access(100 + i, actor="u-prober", outcome=Outcome.REFUSED) for i in range(12)])
    rules = RULES.with_overrides(override)
    assert bool(detect_anomalies(sqlite.engine, rules, CONTEXT, only=["refusal_spike"])) is fires


def test_the_time_window_limits_what_is_read(sqlite: Store) -> None:
    load(sqlite, [access(100 + i, actor="u-prober", outcome=Outcome.REFUSED) for i in range(12)])
    later = DAY + timedelta(days=1)
    assert detect_anomalies(sqlite.engine, RULES, CONTEXT, since=later) == []


def test_grants_unknown_means_only_missing_grant_ids_are_flagged(sqlite: Store) -> None:
    expected = load(sqlite, [access(1, grant=None)])
    load(sqlite, [access(2, grant="g-expired")])
    findings = detect_anomalies(
        sqlite.engine, RULES, AnomalyContext(scenario_hours={}), only=["no_active_grant"]
    )
    assert [list(f.seqs) for f in findings] == [expected]


@pytest.mark.parametrize(
    "override",
    [
        {"nope.x": 1},
        {"bulk_reading.nope": 1},
        {"bulk_reading.min_records": 0},
        {"refusal_spike.min_ratio": 2},
    ],
)
def test_bad_overrides_are_refused(override: dict[str, Any]) -> None:
    with pytest.raises(AnomalyRulesError):
        RULES.with_overrides(override)


def test_rules_file_must_name_every_setting(tmp_path: Any) -> None:
    bad = tmp_path / "rules.toml"
    bad.write_text("[refusal_spike]\nenabled = true\n", encoding="utf-8")
    with pytest.raises(AnomalyRulesError):
        load_anomaly_rules(bad)


# -- one resident across audit-ref key rotations ------------------------------------------------------

K1, K2, K3 = (Pseudonymizer(bytes([n]) * 32, f"k{n}") for n in (1, 2, 3))


def read_under(ring: PseudonymRing, minutes: float, actor: str, *residents: str) -> AuditEvent:
    """An allowed read written by a gateway holding ``ring``, as the pipeline writes it."""
    details: dict[str, Any] = {"grant_id": "g-active"}
    links = ring.links(list(residents))
    if links:
        details[SUBJECT_REF_LINKS] = links
    return replace(
        access(minutes, actor=actor), subject_refs=tuple(ring.ref(r) for r in residents), details=details
    )


def many_users(store: Store, refs: PseudonymRing | None, min_users: int = 5) -> list[Finding]:
    rules = RULES.with_overrides({"one_resident_many_users.min_users": min_users})
    context = AnomalyContext(scenario_hours={}, refs=refs)
    return detect_anomalies(store.engine, rules, context, only=["one_resident_many_users"])


def test_one_resident_read_before_and_after_a_key_rotation_counts_once(sqlite: Store) -> None:
    """Six users read resident-7, three before the rotation (k1) and three after (k2): one finding of six
    users at threshold 5 naming all six reads, not two residents of three users each (missed)."""
    before = load(sqlite, [read_under(PseudonymRing(K1), i, f"u-{i}", "resident-7") for i in range(3)])
    rotated = PseudonymRing(K2, (K1,))
    after = load(sqlite, [read_under(rotated, 60 + i, f"u-{3 + i}", "resident-7", "r-8") for i in range(3)])
    [finding] = many_users(sqlite, rotated)
    assert list(finding.seqs) == before + after
    assert finding.metrics["users"] == 6
    assert finding.subject_ref == K2.ref("resident-7")  # the ref of the resident's latest read
    # Without the kept keys nothing can join the two sides: the README's residual limit.
    assert many_users(sqlite, None) == []


def test_two_rotations_in_one_window_and_another_resident_stay_apart(sqlite: Store) -> None:
    """k1 -> k2 -> k3 within one window: five readers of resident-7 under the three keys are one resident
    (a k1 read joins the k3 reads with no k2 read of her in between), and resident-9, read by five other
    users under the three keys too, is never merged with her."""
    ring1, ring2, ring3 = PseudonymRing(K1), PseudonymRing(K2, (K1,)), PseudonymRing(K3, (K1, K2))
    seven = load(
        sqlite,
        [
            read_under(ring1, 1, "u-1", "resident-7"),
            read_under(ring1, 2, "u-2", "resident-7"),
            read_under(ring3, 4, "u-4", "resident-7"),
            read_under(ring3, 5, "u-5", "resident-7"),
            read_under(ring3, 6, "u-6", "resident-7"),
        ],
    )
    nine = load(
        sqlite,
        [
            read_under(ring1, 7, "v-1", "resident-9"),
            read_under(ring2, 8, "v-2", "resident-9"),
            *(read_under(ring3, 9 + i, f"v-{3 + i}", "resident-9") for i in range(3)),
        ],
    )
    findings = many_users(sqlite, ring3)
    assert {f.subject_ref: list(f.seqs) for f in findings} == {
        K3.ref("resident-7"): seven,
        K3.ref("resident-9"): nine,
    }
    # Six readers would be needed for either at threshold 6: neither is merged with the other.
    assert many_users(sqlite, ring3, min_users=6) == []
