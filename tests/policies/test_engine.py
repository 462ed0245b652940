"""PolicyEngine.decide as a specification table: who, where, what, scenario -> expected reason code;
then obligations, expiry boundaries, quotas, explain, and failing closed."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import pytest

from policies import (
    AccessRequest,
    GrantIndex,
    GrantStatus,
    InMemoryQuotaCounter,
    PermissionModel,
    PolicyEngine,
    PolicyRefused,
    ScenarioCatalog,
    Subject,
    load_permissions,
    load_scenarios,
)
from policies.grants import GrantEntry
from policies.permissions import DEFAULT_MODEL_PATH, DEFAULT_POLICY_PATH
from policies.reasons import CODES
from policies.scenarios import DEFAULT_SCENARIOS_PATH

from .conftest import (
    CADRE_A1,
    CADRE_A2,
    CADRE_B1,
    CJK,
    COUNTY_OFFICER,
    DIBAO_FIELDS,
    GRID_A1,
    SUPERVISOR,
    T0,
    TOWNSHIP_A,
    TOWNSHIP_B,
    TOWNSHIP_OFFICER_A,
    VILLAGE_A1,
    VILLAGE_A2,
    VILLAGE_B1,
    make_grant,
)

EngineFactory = Callable[..., PolicyEngine]

ELDERLY_NO_MOBILE = ("id", "name", "birth_date", "address", "village_code")

GRANTS = (
    make_grant("g-dibao-a1", "DIBAO_REVIEW", VILLAGE_A1, DIBAO_FIELDS),
    make_grant("g-dibao-town-a", "DIBAO_REVIEW", TOWNSHIP_A, DIBAO_FIELDS),
    make_grant("g-dibao-town-b", "DIBAO_REVIEW", TOWNSHIP_B, DIBAO_FIELDS, status=GrantStatus.REVOKED),
    make_grant("g-elderly-a1", "ELDERLY_VISIT", VILLAGE_A1, ELDERLY_NO_MOBILE),
    make_grant(
        "g-elderly-b1",
        "ELDERLY_VISIT",
        VILLAGE_B1,
        ELDERLY_NO_MOBILE,
        valid_from=T0 - timedelta(days=90),
        valid_until=T0 - timedelta(days=1),
    ),
)

GRID_A2 = Subject(user_id="u-grid-a2", org=VILLAGE_A2, roles=("grid_worker",), grids=(f"{VILLAGE_A2}-G02",))
NIGHT = T0 + timedelta(hours=12)  # 22:00 Beijing time


def req(
    who: Subject,
    scenario: str,
    *,
    dataset: str = "residents",
    fields: tuple[str, ...] | None = None,
    now: datetime = T0,
    action: str = "read",
    hint: int | None = None,
) -> AccessRequest:
    return AccessRequest(
        subject=who,
        action=action,
        dataset=dataset,
        scenario=scenario,
        fields=fields,
        now=now,
        record_count_hint=hint,
    )


# (case, request, expected reason code, expected grant_id for allowed decisions)
TABLE = [
    ("cadre reads own village for dibao", req(CADRE_A1, "DIBAO_REVIEW"), "allowed", "g-dibao-a1"),
    ("neighbour village via township grant", req(CADRE_A2, "DIBAO_REVIEW"), "allowed", "g-dibao-town-a"),
    (
        "township officer via township grant",
        req(TOWNSHIP_OFFICER_A, "DIBAO_REVIEW"),
        "allowed",
        "g-dibao-town-a",
    ),
    ("other township's grant was revoked", req(CADRE_B1, "DIBAO_REVIEW"), "grant_revoked", None),
    ("supervisor does not read residents", req(SUPERVISOR, "DIBAO_REVIEW"), "no_permission", None),
    (
        "unknown role string",
        req(dataclasses.replace(CADRE_A1, roles=("root",)), "DIBAO_REVIEW"),
        "no_permission",
        None,
    ),
    ("no roles at all", req(dataclasses.replace(CADRE_A1, roles=()), "DIBAO_REVIEW"), "no_permission", None),
    (
        "dataset the role cannot read",
        req(CADRE_A1, "DIBAO_REVIEW", dataset="households"),
        "no_permission",
        None,
    ),
    ("action other than read", req(CADRE_A1, "DIBAO_REVIEW", action="write"), "no_permission", None),
    ("unknown scenario", req(CADRE_A1, "NO_SUCH"), "unknown_scenario", None),
    ("grid worker is not a dibao role", req(GRID_A1, "DIBAO_REVIEW"), "scenario_not_for_role", None),
    (
        "county officer does no home visits",
        req(COUNTY_OFFICER, "ELDERLY_VISIT"),
        "scenario_not_for_role",
        None,
    ),
    ("late at night", req(CADRE_A1, "DIBAO_REVIEW", now=NIGHT), "outside_hours", None),
    ("grant lapsed yesterday", req(CADRE_B1, "ELDERLY_VISIT"), "grant_expired", None),
    ("no grant at all", req(GRID_A2, "ELDERLY_VISIT"), "no_active_grant", None),
    (
        "field outside the grant",
        req(CADRE_A1, "ELDERLY_VISIT", fields=("name", "mobile")),
        "field_not_granted",
        None,
    ),
    (
        "field outside the scenario",
        req(CADRE_A1, "DIBAO_REVIEW", fields=("name", "birth_date")),
        "field_not_granted",
        None,
    ),
    (
        "field that does not exist",
        req(CADRE_A1, "DIBAO_REVIEW", fields=("salary",)),
        "field_not_granted",
        None,
    ),
    (
        "fields within the grant",
        req(CADRE_A1, "ELDERLY_VISIT", fields=("name", "birth_date")),
        "allowed",
        "g-elderly-a1",
    ),
    (
        "more records than a request may carry",
        req(CADRE_A1, "DIBAO_REVIEW", hint=201),
        "quota_exceeded",
        None,
    ),
    ("exactly the per-request cap", req(CADRE_A1, "DIBAO_REVIEW", hint=200), "allowed", "g-dibao-a1"),
    (
        "village grant does not reach the township",
        req(dataclasses.replace(TOWNSHIP_OFFICER_A, org=TOWNSHIP_B), "DIBAO_REVIEW"),
        "grant_revoked",
        None,
    ),
    (
        "malformed org code fails closed",
        req(dataclasses.replace(CADRE_A1, org="3101511"), "DIBAO_REVIEW"),
        "internal_error",
        None,
    ),
    (
        "permission is checked before the scenario",
        req(SUPERVISOR, "NO_SUCH", now=NIGHT),
        "no_permission",
        None,
    ),
    ("hours are checked before grants", req(CADRE_B1, "DIBAO_REVIEW", now=NIGHT), "outside_hours", None),
]


@pytest.mark.parametrize(("case", "request_", "code", "grant_id"), TABLE, ids=[t[0] for t in TABLE])
def test_decision_table(
    engine_for: EngineFactory, case: str, request_: AccessRequest, code: str, grant_id: str | None
) -> None:
    decision = engine_for(*GRANTS).decide(request_)
    assert decision.code == code
    assert decision.allowed is (code == "allowed")
    assert (decision.obligations is not None) is decision.allowed
    if decision.obligations is not None:
        assert decision.obligations.grant_id == grant_id
    assert decision.reasons and all(r.message_zh and r.message_en for r in decision.reasons)
    # The English message names the dataset and scenario by the catalog's English names.
    assert not any(CJK.search(r.message_en) for r in decision.reasons), decision.reasons
    assert decision.code in CODES


def test_reasons_name_the_catalogs_english_names_in_english(engine_for: EngineFactory) -> None:
    (refused,) = engine_for().decide(req(CADRE_A1, "DIBAO_REVIEW")).reasons
    assert refused.message_zh == (
        "本单位还没有「低保年度复核」查看「居民登记信息」的有效授权。请先提出申请；已提出的，请等待数据所属部门审批。"
    )
    assert refused.message_en == (
        "Your organisation has no current grant to read \u201cresident registration records\u201d for "
        "\u201cSubsistence-allowance annual review\u201d. Apply for one first; if you have, wait for the "
        "department owning the data to approve it."
    )


@pytest.mark.parametrize(("case", "request_", "code", "grant_id"), TABLE, ids=[t[0] for t in TABLE])
def test_explain_names_the_failing_condition_first(
    engine_for: EngineFactory, case: str, request_: AccessRequest, code: str, grant_id: str | None
) -> None:
    checks = engine_for(*GRANTS).explain(request_)
    failed = [c for c in checks if not c.passed]
    if code == "allowed":
        assert checks and not failed
    else:
        assert failed[0].detail["reason"] == code
        assert failed[0].message_zh and failed[0].message_en


def test_explain_lists_every_failed_condition_it_can_judge(engine_for: EngineFactory) -> None:
    checks = engine_for(*GRANTS).explain(
        req(CADRE_A1, "ELDERLY_VISIT", fields=("mobile",), now=NIGHT, hint=500)
    )
    assert [(c.code, c.passed) for c in checks] == [
        ("permission", True),
        ("scenario", True),
        ("scenario_role", True),
        ("scenario_dataset", True),
        ("hours", False),
        ("grant", True),
        ("fields", False),
        ("quota", False),
    ]


# -- explained to someone else ----------------------------------------------------------------------------

#: Words that address the reader: for an administrator explaining another user's request they would speak
#: to her as if she were the one refused ("您", "本单位" as if it were her unit, "you", "your").
ADDRESSED = re.compile(r"您|本单位|\byour?\b", re.IGNORECASE)
_QUOTA_SPENT = InMemoryQuotaCounter()
_QUOTA_SPENT.consume(CADRE_A1.user_id, "DIBAO_REVIEW", "2025-03-03", 2000)  # T0's Beijing day
#: (case, request, quota counter): every check the engine can pass or fail, the table's and a grid worker's.
GRID_ELSEWHERE = dataclasses.replace(GRID_A1, grids=(f"{VILLAGE_B1}-G01",))
ALL_AT_ONCE = req(CADRE_A1, "ELDERLY_VISIT", fields=("mobile",), now=NIGHT, hint=500)
EXPLAINED = [
    *((t[0], t[1], None) for t in TABLE),
    ("hours, fields and the request cap at once", ALL_AT_ONCE, None),
    ("today's quota spent", req(CADRE_A1, "DIBAO_REVIEW"), _QUOTA_SPENT),
    ("a grid worker's grids", req(GRID_A1, "ELDERLY_VISIT"), None),
    ("a grid worker without grids", req(dataclasses.replace(GRID_A1, grids=()), "ELDERLY_VISIT"), None),
    ("a grid in another village", req(GRID_ELSEWHERE, "ELDERLY_VISIT"), None),
]  # fmt: skip


@pytest.mark.parametrize(("case", "request_", "quotas"), EXPLAINED, ids=[e[0] for e in EXPLAINED])
def test_an_explanation_about_someone_else_speaks_of_this_user(
    permissions: PermissionModel,
    scenarios: ScenarioCatalog,
    case: str,
    request_: AccessRequest,
    quotas: InMemoryQuotaCounter | None,
) -> None:
    engine = PolicyEngine(permissions, scenarios, GrantIndex(GRANTS), quotas=quotas)
    theirs = engine.explain(request_, about_caller=False)
    own = engine.explain(request_)
    # The same checks with the same outcome; only who the words speak to differs.
    assert [(c.code, c.passed, c.detail) for c in theirs] == [(c.code, c.passed, c.detail) for c in own]
    for check in theirs:
        assert not ADDRESSED.search(check.message_zh), check
        assert not ADDRESSED.search(check.message_en), check
        assert not CJK.search(check.message_en), check


def test_the_subjects_own_explanation_still_addresses_her(engine_for: EngineFactory) -> None:
    engine = engine_for(*GRANTS)
    (own,) = [c for c in engine.explain(req(SUPERVISOR, "DIBAO_REVIEW")) if not c.passed][:1]
    (theirs,) = [
        c for c in engine.explain(req(SUPERVISOR, "DIBAO_REVIEW"), about_caller=False) if not c.passed
    ][:1]
    assert own.message_zh == "您的岗位没有查看「居民登记信息」的权限。如工作确需，请联系上级管理员。"
    assert theirs.message_zh == "该用户的岗位没有查看「居民登记信息」的权限。如工作确需，可联系其上级管理员。"
    assert own.message_en.startswith("Your role") and theirs.message_en.startswith("This user's role")
    # decide answers whoever reads data on the data path: the subject herself, in the same words.
    (refused,) = engine.decide(req(SUPERVISOR, "DIBAO_REVIEW")).reasons
    assert refused.message_zh == own.message_zh


def test_obligations_of_an_allowed_decision(engine_for: EngineFactory) -> None:
    decision = engine_for(*GRANTS).decide(req(CADRE_A1, "DIBAO_REVIEW", fields=("name", "mobile", "name")))
    assert decision.obligations is not None
    ob = decision.obligations
    assert ob.row_scope == (VILLAGE_A1,)
    assert ob.fields == ("name", "mobile")
    assert ob.masking_profile == "standard"
    assert ob.max_records == 200
    assert ob.quota_left is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        ob.max_records = 10  # type: ignore[misc]


def test_all_fields_when_none_requested_are_the_grants(engine_for: EngineFactory) -> None:
    ob = engine_for(*GRANTS).authorize(req(CADRE_A1, "ELDERLY_VISIT"))
    assert ob.fields == ELDERLY_NO_MOBILE


def test_row_scope_is_the_callers_org_not_the_grants(engine_for: EngineFactory) -> None:
    assert engine_for(*GRANTS).authorize(req(CADRE_A2, "DIBAO_REVIEW")).row_scope == (VILLAGE_A2,)
    assert engine_for(*GRANTS).authorize(req(TOWNSHIP_OFFICER_A, "DIBAO_REVIEW")).row_scope == (TOWNSHIP_A,)


def test_a_broader_grant_serves_fields_the_specific_one_lacks(engine_for: EngineFactory) -> None:
    town = make_grant("g-elderly-town-a", "ELDERLY_VISIT", TOWNSHIP_A, ("id", "name", "mobile"))
    engine = engine_for(*GRANTS, town)
    assert engine.authorize(req(CADRE_A1, "ELDERLY_VISIT", fields=("mobile",))).grant_id == "g-elderly-town-a"
    assert engine.authorize(req(CADRE_A1, "ELDERLY_VISIT")).grant_id == "g-elderly-a1"


def test_authorize_raises_with_the_decision(engine_for: EngineFactory) -> None:
    with pytest.raises(PolicyRefused) as info:
        engine_for(*GRANTS).authorize(req(CADRE_B1, "DIBAO_REVIEW"))
    assert info.value.decision.code == "grant_revoked"


# -- expiry boundaries: active iff valid_from <= now < valid_until --------------------------------

START = T0 - timedelta(hours=1)
END = T0 + timedelta(hours=1)
TICK = timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("now", "code"),
    [
        (START - TICK, "no_active_grant"),
        (START, "allowed"),
        (END - TICK, "allowed"),
        (END, "grant_expired"),
        (END + TICK, "grant_expired"),
    ],
)
def test_grant_window_is_half_open(engine_for: EngineFactory, now: datetime, code: str) -> None:
    grant = make_grant("g", "DIBAO_REVIEW", VILLAGE_A1, DIBAO_FIELDS, valid_from=START, valid_until=END)
    assert engine_for(grant).decide(req(CADRE_A1, "DIBAO_REVIEW", now=now)).code == code


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (GrantStatus.APPROVED, "allowed"),
        (GrantStatus.REVOKED, "grant_revoked"),
        (GrantStatus.EXPIRED, "grant_expired"),
        (GrantStatus.REQUESTED, "no_active_grant"),
        (GrantStatus.AWAITING_SECOND_APPROVAL, "no_active_grant"),
        (GrantStatus.REJECTED, "no_active_grant"),
        (GrantStatus.RENEWED, "no_active_grant"),
    ],
)
def test_only_approved_grants_are_active(engine_for: EngineFactory, status: GrantStatus, code: str) -> None:
    grant = make_grant("g", "DIBAO_REVIEW", VILLAGE_A1, DIBAO_FIELDS, status=status)
    assert engine_for(grant).decide(req(CADRE_A1, "DIBAO_REVIEW")).code == code


def test_an_active_grant_wins_over_a_revoked_one(engine_for: EngineFactory) -> None:
    revoked = make_grant("g-old", "DIBAO_REVIEW", VILLAGE_A1, DIBAO_FIELDS, status=GrantStatus.REVOKED)
    active = make_grant("g-new", "DIBAO_REVIEW", TOWNSHIP_A, DIBAO_FIELDS)
    assert engine_for(revoked, active).authorize(req(CADRE_A1, "DIBAO_REVIEW")).grant_id == "g-new"


def test_a_grant_for_another_dataset_does_not_cover(engine_for: EngineFactory) -> None:
    other = make_grant("g", "DIBAO_REVIEW", VILLAGE_A1, ("id",), dataset="households")
    assert engine_for(other).decide(req(CADRE_A1, "DIBAO_REVIEW")).code == "no_active_grant"


# -- quotas ---------------------------------------------------------------------------------------


def test_daily_quota_counts_down_and_resets_on_the_beijing_day(
    permissions: PermissionModel, scenarios: ScenarioCatalog
) -> None:
    quotas = InMemoryQuotaCounter()
    engine = PolicyEngine(permissions, scenarios, GrantIndex(GRANTS), quotas=quotas)
    day = "2025-03-03"
    quotas.consume(CADRE_A1.user_id, "DIBAO_REVIEW", day, 1990)
    ob = engine.authorize(req(CADRE_A1, "DIBAO_REVIEW"))
    assert (ob.quota_left, ob.max_records) == (10, 10)
    too_many = engine.decide(req(CADRE_A1, "DIBAO_REVIEW", hint=11))
    assert too_many.code == "quota_exceeded"
    # 10 are left: "the limit is reached, try tomorrow" was not so; it says how many are left.
    assert too_many.reasons[0].message_zh == (
        "今天「低保年度复核」只剩 10 条可查看（每天 2000 条），不够所要的条数。请减少条数，或明天再查。"
    )
    (quota_check,) = [c for c in engine.explain(req(CADRE_A1, "DIBAO_REVIEW")) if c.code == "quota"]
    assert quota_check.message_zh == "未超过查看数量限制（今天还可查看 10 条）。"
    quotas.consume(CADRE_A1.user_id, "DIBAO_REVIEW", day, 10)
    used_up = engine.decide(req(CADRE_A1, "DIBAO_REVIEW"))
    assert used_up.code == "quota_exceeded"
    assert (
        used_up.reasons[0].message_zh
        == "今天「低保年度复核」的查看数量已达上限（每天 2000 条）。请明天再查。"
    )
    # Another scenario and another user are counted apart.
    assert engine.decide(req(CADRE_A1, "ELDERLY_VISIT")).allowed
    assert engine.decide(req(CADRE_A2, "DIBAO_REVIEW")).allowed
    # 2025-03-03 23:30 UTC is still the 3rd in UTC but 07:30 on the 4th in Beijing: a new quota day.
    tomorrow = datetime(2025, 3, 3, 23, 30, tzinfo=UTC)
    assert engine.authorize(req(CADRE_A1, "DIBAO_REVIEW", now=tomorrow)).quota_left == 2000


# -- a dataset the role may read but the scenario does not need -----------------------------------


def test_scenario_not_for_dataset(tmp_path: Path) -> None:
    policy = tmp_path / "permissions.csv"
    policy.write_text(
        DEFAULT_POLICY_PATH.read_text(encoding="utf-8") + "p, village_cadre, dataset:households, read\n",
        encoding="utf-8",
    )
    catalog = tmp_path / "scenarios.toml"
    catalog.write_text(
        DEFAULT_SCENARIOS_PATH.read_text(encoding="utf-8")
        + '\n[datasets.households]\nname_zh = "房屋信息"\nname_en = "households"\n'
        'owner_department = "public_security"\nprovider_system = "person-house-registry"\n'
        'fields = ["id", "address"]\nsecond_approval_fields = []\n',
        encoding="utf-8",
    )
    engine = PolicyEngine(
        load_permissions(DEFAULT_MODEL_PATH, policy), load_scenarios(catalog), GrantIndex(GRANTS)
    )
    decision = engine.decide(req(CADRE_A1, "DIBAO_REVIEW", dataset="households"))
    assert decision.code == "scenario_not_for_dataset"
    assert "房屋信息" in decision.reasons[0].message_zh
    # What to do instead: a cadre who picked the wrong scenario is told where the pairs are listed.
    assert "未返回任何数据" in decision.reasons[0].message_zh
    assert "grassroots grants scenarios" in decision.reasons[0].message_zh
    assert "GET /api/v1/scenarios" in decision.reasons[0].message_en


# -- failing closed -------------------------------------------------------------------------------


class _BrokenIndex(GrantIndex):
    # ``entries`` is what the engine (and ``lookup``) reads.
    def entries(self, significant: str, scenario: str) -> list[GrantEntry]:
        raise RuntimeError("index corrupted: 110101199003071234")


class _BrokenPermissions(PermissionModel):
    def is_allowed(self, roles: object, resource: str, action: str) -> bool:
        raise KeyError("casbin state lost")


def test_an_internal_error_is_a_refusal(
    permissions: PermissionModel, scenarios: ScenarioCatalog, caplog: pytest.LogCaptureFixture
) -> None:
    engine = PolicyEngine(permissions, scenarios, _BrokenIndex(GRANTS))
    decision = engine.decide(req(CADRE_A1, "DIBAO_REVIEW"))
    assert (decision.allowed, decision.code, decision.obligations) == (False, "internal_error", None)
    with pytest.raises(PolicyRefused):
        engine.authorize(req(CADRE_A1, "DIBAO_REVIEW"))
    assert [
        c.detail.get("reason") for c in engine.explain(req(CADRE_A1, "DIBAO_REVIEW")) if not c.passed
    ] == ["internal_error"]
    # The exception text (which could echo personal data) never reaches the log.
    assert "110101199003071234" not in caplog.text
    assert "RuntimeError" in caplog.text


def test_a_broken_permission_model_is_a_refusal(scenarios: ScenarioCatalog) -> None:
    broken = _BrokenPermissions()
    engine = PolicyEngine(broken, scenarios, GrantIndex(GRANTS))
    assert engine.decide(req(CADRE_A1, "DIBAO_REVIEW")).code == "internal_error"


def test_an_empty_index_refuses_everyone(engine_for: EngineFactory) -> None:
    engine = engine_for()
    for who in (CADRE_A1, CADRE_A2, TOWNSHIP_OFFICER_A):
        assert engine.decide(req(who, "DIBAO_REVIEW")).code == "no_active_grant"


def test_a_naive_time_fails_closed(engine_for: EngineFactory) -> None:
    naive = T0.replace(tzinfo=None)
    assert engine_for(*GRANTS).decide(req(CADRE_A1, "DIBAO_REVIEW", now=naive)).code == "internal_error"


class _NoOffset(tzinfo):
    """A tzinfo that knows no offset: such a time is aware by its tzinfo, naive by arithmetic."""

    def utcoffset(self, dt: datetime | None) -> None:
        return None


def test_a_time_without_an_offset_decides_as_the_grants_compare(engine_for: EngineFactory) -> None:
    # The index compares integer bounds; a time it cannot convert falls back to the grant's own
    # datetime comparison: an approved grant cannot compare (fail closed), a revoked one is not asked.
    odd = T0.replace(tzinfo=_NoOffset())
    engine = engine_for(*GRANTS)
    assert engine.decide(req(CADRE_A1, "DIBAO_REVIEW", now=odd)).code == "internal_error"
    assert engine.decide(req(CADRE_B1, "DIBAO_REVIEW", now=odd)).code == "grant_revoked"


def test_a_grant_with_naive_bounds_fails_closed_and_spares_the_index(engine_for: EngineFactory) -> None:
    # The index keeps its bounds as integers; one it cannot convert must neither break the build nor
    # read as "no grant": the decision asks the grant itself, which cannot compare, so it refuses.
    naive = make_grant(
        "g-naive",
        "DIBAO_REVIEW",
        VILLAGE_A1,
        DIBAO_FIELDS,
        valid_from=(T0 - timedelta(days=1)).replace(tzinfo=None),
        valid_until=(T0 + timedelta(days=1)).replace(tzinfo=None),
    )
    engine = engine_for(naive, *GRANTS)
    assert len(engine.grants) == len(GRANTS) + 1
    assert engine.decide(req(CADRE_A1, "DIBAO_REVIEW")).code == "internal_error"
    assert engine.decide(req(CADRE_A1, "ELDERLY_VISIT")).code == "allowed"


def test_a_grant_with_a_malformed_scope_grants_nothing_and_spares_the_rest(engine_for: EngineFactory) -> None:
    bad = make_grant("g-bad", "DIBAO_REVIEW", "3101511", DIBAO_FIELDS)
    engine = engine_for(bad, *GRANTS)
    assert len(engine.grants) == len(GRANTS)
    assert engine.authorize(req(CADRE_A1, "DIBAO_REVIEW")).grant_id == "g-dibao-a1"


# -- what the caller typed is never repeated --------------------------------------------------------------

#: Typed where a code or a field name belongs: an ID number, a name glued to a mobile number.
TYPED_ID = "11010519491231002X"
TYPED_NAME_PHONE = "张三13812345678"


def _spy_on_reasons(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every value the engine hands to the (cached) reason renderer, as text."""
    import policies.engine as engine_module

    seen: list[str] = []
    render = engine_module.reason

    def spy(code: str, **context: object) -> Any:
        seen.extend(str(v) for v in context.values())
        return render(code, **context)

    monkeypatch.setattr(engine_module, "reason", spy)
    return seen


@pytest.mark.parametrize(
    ("case", "request_", "code"),
    [
        (
            "a dataset code that is an ID number",
            req(CADRE_A1, "DIBAO_REVIEW", dataset=TYPED_ID),
            "no_permission",
        ),
        ("a scenario code that is an ID number", req(CADRE_A1, TYPED_ID), "unknown_scenario"),
        ("both unknown", req(SUPERVISOR, TYPED_NAME_PHONE, dataset=TYPED_ID), "no_permission"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_an_unknown_code_is_never_repeated(
    engine_for: EngineFactory,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    request_: AccessRequest,
    code: str,
) -> None:
    seen = _spy_on_reasons(monkeypatch)
    engine = engine_for(*GRANTS)
    decision = engine.decide(request_)
    checks = engine.explain(request_) + engine.explain(request_, about_caller=False)
    assert decision.code == code and next(c for c in checks if not c.passed).detail["reason"] == code
    said = json.dumps(
        [(r.message_zh, r.message_en) for r in decision.reasons]
        + [(c.message_zh, c.message_en, dict(c.detail)) for c in checks],
        ensure_ascii=False,
    )
    for typed in (TYPED_ID, TYPED_NAME_PHONE, "13812345678"):
        assert typed not in said
        # Nor kept by the rendered-message cache: it never receives what was typed.
        assert not any(typed in value for value in seen)
    if code == "no_permission":
        assert "未编目的数据集" in said and "an uncatalogued dataset" in said


@pytest.mark.parametrize(
    ("fields", "said_zh", "said_en"),
    [
        (("name", TYPED_ID, TYPED_NAME_PHONE), "2 个未编目的字段", "2 uncatalogued fields"),
        (
            ("name", "birth_date", TYPED_ID),
            "birth_date，另有 1 个未编目的字段",
            "birth_date and 1 uncatalogued field",
        ),
        (("name", "birth_date"), "：birth_date。", ": birth_date."),
    ],
)
def test_a_field_outside_the_grant_is_named_only_when_catalogued(
    engine_for: EngineFactory,
    monkeypatch: pytest.MonkeyPatch,
    fields: tuple[str, ...],
    said_zh: str,
    said_en: str,
) -> None:
    """``birth_date`` is a catalogued field of residents that DIBAO_REVIEW does not grant: named. A name
    the catalog does not know is whatever was typed: counted, never repeated."""
    seen = _spy_on_reasons(monkeypatch)
    engine = engine_for(*GRANTS)
    request_ = req(CADRE_A1, "DIBAO_REVIEW", fields=fields)
    (refused,) = engine.decide(request_).reasons
    (failed,) = [c for c in engine.explain(request_, about_caller=False) if not c.passed]
    assert refused.code == "field_not_granted" and failed.detail["reason"] == "field_not_granted"
    assert said_zh in refused.message_zh and said_en in refused.message_en
    assert said_zh in failed.message_zh and failed.message_zh.startswith("该用户")
    for typed in (TYPED_ID, TYPED_NAME_PHONE, "13812345678"):
        assert typed not in refused.message_zh + refused.message_en + failed.message_zh + failed.message_en
        assert not any(typed in value for value in seen)
