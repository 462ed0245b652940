"""Policy-as-code reload as one unit (all three files or none), offline validation with file and line, and
the duties the API relies on: who sees which grant, auditor independence, delegating never more than one
holds, renewal waiting for a second steward, rejection with a reason, break-glass reviews listed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from policies import (
    GrantError,
    GrantIndex,
    GrantRepository,
    GrantService,
    GrantStatus,
    PermissionModel,
    PolicyEngine,
    PolicyFileError,
    ScenarioCatalog,
    SeparationOfDutiesError,
    Subject,
)
from policies.permissions import DEFAULT_MODEL_PATH, DEFAULT_POLICY_PATH
from policies.reload import validate_policy_files
from policies.scenarios import DEFAULT_SCENARIOS_PATH

from .conftest import (
    AUDITOR,
    CADRE_A1,
    CADRE_B1,
    COUNTY,
    COUNTY_OFFICER,
    OTHER_STEWARD,
    STEWARD,
    STEWARD_2,
    SUPERVISOR,
    T0,
    TOWNSHIP_A,
    TOWNSHIP_OFFICER_A,
    VILLAGE_A1,
)


def _copies(tmp_path: Path) -> tuple[Path, Path, Path]:
    paths = (tmp_path / "model.conf", tmp_path / "permissions.csv", tmp_path / "scenarios.toml")
    for source, target in zip(
        (DEFAULT_MODEL_PATH, DEFAULT_POLICY_PATH, DEFAULT_SCENARIOS_PATH), paths, strict=True
    ):
        target.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    return paths


def _engine(model: Path, policy: Path, catalog: Path) -> PolicyEngine:
    return PolicyEngine(PermissionModel(model, policy), ScenarioCatalog(catalog), GrantIndex())


@pytest.fixture
def service(session: Session, scenarios: ScenarioCatalog, permissions: PermissionModel) -> GrantService:
    return GrantService(GrantRepository(session), scenarios, permissions)


# -- reload ----------------------------------------------------------------------------------------------


def test_reloaded_engine_reports_rules_and_scenarios_changed(tmp_path: Path) -> None:
    model, policy, catalog = _copies(tmp_path)
    engine = _engine(model, policy, catalog)
    policy.write_text(
        policy.read_text(encoding="utf-8").replace("p, grid_worker, dataset:residents, read\n", ""),
        encoding="utf-8",
    )
    catalog.write_text(
        catalog.read_text(encoding="utf-8").replace(
            "max_records_per_request = 100", "max_records_per_request = 50"
        ),
        encoding="utf-8",
    )
    fresh, change = engine.reloaded("u-admin")
    assert change["kind"] == "policy.reloaded" and change["actor"] == "u-admin"
    assert (
        change["rules_removed"] == ["p, grid_worker, dataset:residents, read"] and change["rules_added"] == []
    )
    assert change["scenarios_changed"] == ["ELDERLY_VISIT"]
    assert change["before"]["permissions_digest"] == engine.permissions.digest != fresh.permissions.digest
    assert not fresh.permissions.is_allowed(("grid_worker",), "dataset:residents", "read")
    assert engine.permissions.is_allowed(("grid_worker",), "dataset:residents", "read")  # old one untouched
    assert fresh.grants is engine.grants


@pytest.mark.parametrize(
    ("file_index", "good", "bad", "name"),
    [
        (0, "[matchers]", "[matcher]", "model.conf"),
        (1, "p, auditor, audit, verify", "p, auditor, audit, verfy", "permissions.csv"),
        (2, 'masking_profile = "standard"', "masking_profile = standard", "scenarios.toml"),
    ],
)
def test_a_typo_in_any_file_fails_the_whole_reload_with_its_line(
    tmp_path: Path, file_index: int, good: str, bad: str, name: str
) -> None:
    paths = _copies(tmp_path)
    engine = _engine(*paths)
    target = paths[file_index]
    text = target.read_text(encoding="utf-8")
    line = text[: text.index(good)].count("\n") + 1
    target.write_text(text.replace(good, bad, 1), encoding="utf-8")
    with pytest.raises(PolicyFileError) as caught:
        engine.reloaded()
    assert (Path(caught.value.path).name, caught.value.line) == (name, line)
    (error,) = validate_policy_files(*paths)
    assert (Path(error.path).name, error.line) == (name, line)


def test_validation_reports_each_broken_file(tmp_path: Path) -> None:
    model, policy, catalog = _copies(tmp_path)
    assert validate_policy_files(model, policy, catalog) == []
    policy.write_text("p, nobody, audit, read\n", encoding="utf-8")
    catalog.write_text("[scenarios.X\n", encoding="utf-8")
    names = sorted(Path(e.path).name for e in validate_policy_files(model, policy, catalog))
    assert names == ["permissions.csv", "scenarios.toml"]


# -- duties ----------------------------------------------------------------------------------------------


def test_visibility_table(service: GrantService) -> None:
    grant, _ = service.request(TOWNSHIP_OFFICER_A, "ELDERLY_VISIT", VILLAGE_A1, None, "走访", T0)
    township_b_officer = Subject(user_id="u-town-b", org="310151102000", roles=("township_officer",))
    table = [
        (TOWNSHIP_OFFICER_A, True),  # requested it
        (CADRE_A1, True),  # it covers her village
        (CADRE_B1, False),
        (township_b_officer, False),
        (Subject(user_id="u-county", org=COUNTY, roles=("county_officer",)), True),
        (STEWARD, True),
        (OTHER_STEWARD, False),
        (SUPERVISOR, True),
        (AUDITOR, True),
        # A supervisor or auditor of a township: her own township's grants only (as her audit events).
        (Subject(user_id="u-sup-a", org=TOWNSHIP_A, roles=("supervisor",)), True),
        (Subject(user_id="u-sup-b", org="310151102000", roles=("supervisor",)), False),
        (Subject(user_id="u-aud-b", org="310151102000", roles=("auditor",)), False),
        (Subject(user_id="u-sup-root", org="000000000000", roles=("supervisor",)), True),
        (Subject(user_id="u-sup-bad", org="31015110200", roles=("supervisor",)), False),
        (Subject(user_id="u-sys", org=COUNTY, roles=("system_admin",)), False),
    ]
    for who, visible in table:
        assert service.visible_to(who, grant) is visible, who


def test_an_auditor_takes_no_part_in_grants(service: GrantService) -> None:
    officer_and_auditor = replace(TOWNSHIP_OFFICER_A, roles=("township_officer", "auditor"))
    with pytest.raises(SeparationOfDutiesError):
        service.request(officer_and_auditor, "ELDERLY_VISIT", VILLAGE_A1, None, "走访", T0)
    grant, _ = service.request(TOWNSHIP_OFFICER_A, "ELDERLY_VISIT", VILLAGE_A1, None, "走访", T0)
    with pytest.raises(SeparationOfDutiesError):
        service.approve(grant.grant_id, replace(STEWARD, roles=("data_steward", "auditor")), T0)


def test_nobody_delegates_access_their_own_role_does_not_hold(
    session: Session, scenarios: ScenarioCatalog, tmp_path: Path
) -> None:
    model, policy, _ = _copies(tmp_path)
    policy.write_text(
        policy.read_text(encoding="utf-8").replace("p, township_officer, dataset:residents, read\n", ""),
        encoding="utf-8",
    )
    service = GrantService(GrantRepository(session), scenarios, PermissionModel(model, policy))
    with pytest.raises(SeparationOfDutiesError):
        service.request(TOWNSHIP_OFFICER_A, "DIBAO_REVIEW", VILLAGE_A1, None, "复核", T0)
    grant, _ = service.request(CADRE_A1, "DIBAO_REVIEW", VILLAGE_A1, None, "复核", T0)
    assert grant.status is GrantStatus.REQUESTED


def test_renewal_can_wait_for_the_second_steward(service: GrantService) -> None:
    grant, _ = service.request(TOWNSHIP_OFFICER_A, "DIBAO_REVIEW", TOWNSHIP_A, None, "复核", T0)
    service.approve(grant.grant_id, STEWARD, T0)
    service.approve(grant.grant_id, STEWARD_2, T0)
    (successor,), events = service.renew([grant.grant_id], STEWARD, T0, defer_second_approval=True)
    assert successor.status is GrantStatus.AWAITING_SECOND_APPROVAL
    assert [e["kind"] for e in events] == ["grant.first_approval"]
    assert service.repository.get(grant.grant_id).status is GrantStatus.APPROVED  # type: ignore[union-attr]
    with pytest.raises(SeparationOfDutiesError):
        service.approve(successor.grant_id, STEWARD, T0)
    approved, event = service.approve(successor.grant_id, STEWARD_2, T0)
    assert approved.status is GrantStatus.APPROVED and event["kind"] == "grant.approved"
    assert [e["kind"] for e in service.take_events()] == ["grant.renewed"]
    assert service.repository.get(grant.grant_id).status is GrantStatus.RENEWED  # type: ignore[union-attr]
    with pytest.raises(GrantError):
        service.renew([successor.grant_id], STEWARD, T0, validity_days=0)


def test_a_rejection_needs_a_reason(service: GrantService) -> None:
    grant, _ = service.request(CADRE_A1, "ELDERLY_VISIT", VILLAGE_A1, None, "走访", T0)
    with pytest.raises(GrantError):
        service.reject(grant.grant_id, STEWARD, "  ", T0)
    rejected, _ = service.reject(grant.grant_id, STEWARD, "材料不全", T0)
    assert rejected.status is GrantStatus.REJECTED


def test_break_glass_reviews_are_listed_open_and_closed(service: GrantService) -> None:
    _, first, _ = service.break_glass(CADRE_A1, "DIBAO_REVIEW", "台风转移安置", T0)
    _, second, _ = service.break_glass(CADRE_A1, "ELDERLY_VISIT", "老人走失寻找", T0)
    service.close_review(first.review_id, SUPERVISOR, "属实", T0)
    repository = service.repository
    assert [r.review_id for r in repository.reviews("open")] == [second.review_id]
    assert [r.review_id for r in repository.reviews("closed")] == [first.review_id]
    assert {r.review_id for r in repository.reviews()} == {first.review_id, second.review_id}
    assert {r.notify_org for r in repository.reviews()} == {TOWNSHIP_A}


def test_a_township_supervisor_sees_the_grants_that_cover_her_township(service: GrantService) -> None:
    """A county-wide grant governs reads in her township too: its supervisor may look at it."""
    grant, _ = service.request(COUNTY_OFFICER, "ELDERLY_VISIT", COUNTY, None, "走访", T0)
    assert service.visible_to(Subject(user_id="u-sup-b", org="310151102000", roles=("supervisor",)), grant)
