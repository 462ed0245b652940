"""Policy replay: recorded requests re-decided under a proposed policy list who gains or loses what."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from policies import (
    AccessRequest,
    GrantIndex,
    GrantStatus,
    PermissionModel,
    PolicyEngine,
    ScenarioCatalog,
    as_if_active,
    load_permissions,
    replay,
)
from policies.permissions import DEFAULT_MODEL_PATH, DEFAULT_POLICY_PATH

from .conftest import (
    CADRE_A1,
    CADRE_A2,
    CADRE_B1,
    DIBAO_FIELDS,
    GRID_A1,
    T0,
    TOWNSHIP_B,
    VILLAGE_A1,
    make_grant,
)

RECORDED = [
    AccessRequest(CADRE_A1, "read", "residents", "DIBAO_REVIEW", None, T0 - timedelta(days=d))
    for d in range(3)
] + [
    AccessRequest(CADRE_B1, "read", "residents", "DIBAO_REVIEW", None, T0 - timedelta(days=1)),
    AccessRequest(GRID_A1, "read", "residents", "ELDERLY_VISIT", ("name",), T0),
    AccessRequest(CADRE_A2, "read", "residents", "DIBAO_REVIEW", None, T0),
]


def _engine(permissions: PermissionModel, scenarios: ScenarioCatalog, *grants: object) -> PolicyEngine:
    return PolicyEngine(permissions, scenarios, GrantIndex(grants))  # type: ignore[arg-type]


def test_previewing_a_new_grant_lists_who_gains(
    permissions: PermissionModel, scenarios: ScenarioCatalog
) -> None:
    current = _engine(
        permissions,
        scenarios,
        make_grant("g-a1", "DIBAO_REVIEW", VILLAGE_A1, DIBAO_FIELDS, valid_from=T0 - timedelta(days=5)),
    )
    proposed_grant = make_grant(
        "g-b", "DIBAO_REVIEW", TOWNSHIP_B, ("id", "name"), status=GrantStatus.REQUESTED
    )
    proposed = current.what_if(
        grants=current.grants.with_changes(
            add=[as_if_active(proposed_grant, T0 - timedelta(days=7), T0 + timedelta(days=1))]
        )
    )
    report = replay(RECORDED, current, proposed)
    assert report.total == len(RECORDED)
    assert [
        (c.direction, c.user_id, c.before, c.after, c.fields_after, c.requests) for c in report.changes
    ] == [("gained", CADRE_B1.user_id, "no_active_grant", "allowed", ("id", "name"), 1)]
    assert report.unchanged == len(RECORDED) - 1
    assert report.lost == ()


def test_revoking_lists_who_loses(permissions: PermissionModel, scenarios: ScenarioCatalog) -> None:
    grant = make_grant("g-a1", "DIBAO_REVIEW", VILLAGE_A1, DIBAO_FIELDS, valid_from=T0 - timedelta(days=5))
    current = _engine(permissions, scenarios, grant)
    proposed = current.what_if(grants=current.grants.with_changes(remove=["g-a1"]))
    report = replay(RECORDED, current, proposed)
    assert [(c.direction, c.user_id, c.requests) for c in report.lost] == [("lost", CADRE_A1.user_id, 3)]
    assert report.gained == ()


def test_a_permission_change_is_replayed_too(
    tmp_path: Path, permissions: PermissionModel, scenarios: ScenarioCatalog
) -> None:
    grant = make_grant("g-e", "ELDERLY_VISIT", VILLAGE_A1, ("id", "name"))
    current = _engine(permissions, scenarios, grant)
    policy = tmp_path / "permissions.csv"
    policy.write_text(
        DEFAULT_POLICY_PATH.read_text(encoding="utf-8").replace(
            "p, grid_worker, dataset:residents, read\n", ""
        ),
        encoding="utf-8",
    )
    proposed = current.what_if(permissions=load_permissions(DEFAULT_MODEL_PATH, policy))
    report = replay(RECORDED, current, proposed)
    assert [(c.user_id, c.before, c.after) for c in report.lost] == [
        (GRID_A1.user_id, "allowed", "no_permission")
    ]


def test_what_if_engines_carry_no_quota_counter(
    permissions: PermissionModel, scenarios: ScenarioCatalog
) -> None:
    from policies import InMemoryQuotaCounter

    engine = PolicyEngine(permissions, scenarios, GrantIndex(), quotas=InMemoryQuotaCounter())
    assert engine.what_if().quotas is None
