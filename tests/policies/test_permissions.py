"""Function-level permissions: the shipped rules, and validation of the reviewed files with file and
line."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import PermissionModel, PolicyFileError, load_permissions
from policies.permissions import DEFAULT_MODEL_PATH, DEFAULT_POLICY_PATH

from .conftest import CJK

# (roles, resource, action, expected)
RULES = [
    (("village_cadre",), "dataset:residents", "read", True),
    (("grid_worker",), "dataset:residents", "read", True),
    (("township_officer",), "dataset:residents", "read", True),
    (("county_officer",), "dataset:residents", "read", True),
    (("supervisor",), "dataset:residents", "read", False),
    (("auditor",), "dataset:residents", "read", False),
    (("platform_admin",), "dataset:residents", "read", False),
    (("data_steward",), "dataset:residents", "read", False),
    (("village_cadre",), "dataset:households", "read", False),
    (("village_cadre",), "dataset:residents", "write", False),
    (("supervisor",), "audit", "read", True),
    (("auditor",), "audit", "read", True),
    (("auditor",), "audit", "verify", True),
    (("village_cadre",), "audit", "read", False),
    (("data_steward",), "grants", "approve", True),
    (("village_cadre",), "grants", "approve", False),
    (("village_cadre",), "grants", "request", True),
    (("auditor",), "grants", "revoke", False),
    (("supervisor",), "break_glass", "close_review", True),
    (("platform_admin",), "policies", "reload", True),
    ((), "dataset:residents", "read", False),
    (("VILLAGE_CADRE",), "dataset:residents", "read", False),
    (("root",), "dataset:residents", "read", False),
    (("*",), "dataset:residents", "read", False),
    (("supervisor", "village_cadre"), "dataset:residents", "read", True),
]


@pytest.mark.parametrize(("roles", "resource", "action", "expected"), RULES)
def test_shipped_rules(
    permissions: PermissionModel, roles: tuple[str, ...], resource: str, action: str, expected: bool
) -> None:
    assert permissions.is_allowed(roles, resource, action) is expected
    # Memoised answers agree with the first evaluation.
    assert permissions.is_allowed(roles, resource, action) is expected


def _copy_files(tmp_path: Path) -> tuple[Path, Path]:
    model = tmp_path / "model.conf"
    policy = tmp_path / "permissions.csv"
    model.write_text(DEFAULT_MODEL_PATH.read_text(encoding="utf-8"), encoding="utf-8")
    policy.write_text(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"), encoding="utf-8")
    return model, policy


def _line_of(path: Path, needle: str) -> int:
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            return i
    raise AssertionError(needle)


# (file, original line, typo, expected message fragment, error line relative to the original line)
TYPOS = [
    (
        "permissions.csv",
        "p, village_cadre, dataset:residents, read",
        "p, villag_cadre, dataset:residents, read",
        "unknown role",
        0,
    ),
    (
        "permissions.csv",
        "p, village_cadre, dataset:residents, read",
        "p, village_cadre, dataset:residents, raed",
        "unknown action",
        0,
    ),
    (
        "permissions.csv",
        "p, village_cadre, dataset:residents, read",
        "p, village_cadre, datset:residents, read",
        "unknown resource",
        0,
    ),
    (
        "permissions.csv",
        "p, village_cadre, dataset:residents, read",
        "p, village_cadre, dataset:residents",
        "needs 3 values",
        0,
    ),
    (
        "permissions.csv",
        "p, village_cadre, dataset:residents, read",
        "q, village_cadre, dataset:residents, read",
        "unknown rule type",
        0,
    ),
    (
        "permissions.csv",
        "p, village_cadre, dataset:residents, read",
        "p, village_cadre, , read",
        "empty value",
        0,
    ),
    (
        "permissions.csv",
        "p, auditor, audit, verify",
        "p, auditor, audit, verify\np, auditor, audit, verify",
        "duplicate of line",
        1,
    ),
    ("permissions.csv", "p, auditor, audit, verify", "g, auditor, auditer", "unknown role", 0),
    ("permissions.csv", "p, auditor, audit, verify", "p, auditor, audit:x, verify", "only dataset", 0),
    ("model.conf", "r = sub, obj, act", "r = sub, obj, act,", "bad attribute", 0),
    ("model.conf", "[matchers]", "[matcher]", "unknown section", 0),
    (
        "model.conf",
        "e = some(where (p.eft == allow))",
        "e = some(where (p.eft == alow))",
        "unsupported policy effect",
        0,
    ),
    ("model.conf", "m = g(r.sub, p.sub)", "m = g(r.sub, p.subj)", "undefined attribute", 0),
    ("model.conf", "m = g(r.sub, p.sub)", "m = h(r.sub, p.sub)", "unknown function", 0),
    ("model.conf", "m = g(r.sub, p.sub)", "m = (g(r.sub, p.sub)", "unbalanced", 0),
    ("model.conf", "m = g(r.sub, p.sub)", "m = g(r.sub, p.sub)) && (", "casbin rejected", 0),
    ("model.conf", "m = g(r.sub, p.sub)", "m = g(r.sub, x.sub)", "undefined x.sub", 0),
    ("model.conf", "m = g(r.sub, p.sub)", "m = g(r.sub, p.sub) && rr.act", "undefined rr.act", 0),
    ("model.conf", "m = g(r.sub, p.sub)", "m = g(r.sub, p.sub) && allow", "unknown word", 0),
    ("model.conf", "m = g(r.sub, p.sub)", "m g(r.sub, p.sub)", "expected 'key = value'", 0),
    ("model.conf", "p = sub, obj, act", "r = sub, obj, act", "does not belong", 0),
    ("model.conf", "m = g(r.sub, p.sub)", "m = g(r.sub, p.sub) && true\nm = true", "defined twice", 1),
]


@pytest.mark.parametrize(("filename", "original", "typo", "fragment", "offset"), TYPOS)
def test_a_typo_fails_with_file_and_line(
    tmp_path: Path, filename: str, original: str, typo: str, fragment: str, offset: int
) -> None:
    model, policy = _copy_files(tmp_path)
    target = tmp_path / filename
    text = target.read_text(encoding="utf-8")
    line = _line_of(target, original)
    target.write_text(text.replace(original, typo, 1), encoding="utf-8")
    with pytest.raises(PolicyFileError) as info:
        load_permissions(model, policy)
    err = info.value
    assert (err.path, err.line) == (str(target), line + offset), str(err)
    assert fragment in err.message
    assert str(err).startswith(f"{target}:{line + offset}: ")
    # The official who edits the file reads the problem in Chinese too (gateway CLI and reload answer).
    assert CJK.search(err.message_zh) and not CJK.search(err.message), err.message_zh


def test_missing_section_and_empty_rules_fail(tmp_path: Path) -> None:
    model, policy = _copy_files(tmp_path)
    model.write_text(
        model.read_text(encoding="utf-8").replace("[policy_effect]\ne = some(where (p.eft == allow))", "")
    )
    with pytest.raises(PolicyFileError, match="missing section"):
        load_permissions(model, policy)
    model, policy = _copy_files(tmp_path)
    policy.write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(PolicyFileError, match="no permission rules"):
        load_permissions(model, policy)


def test_role_inheritance_cycle_is_rejected(tmp_path: Path) -> None:
    model, policy = _copy_files(tmp_path)
    policy.write_text(
        policy.read_text(encoding="utf-8")
        + "g, county_officer, township_officer\ng, township_officer, county_officer\n",
        encoding="utf-8",
    )
    with pytest.raises(PolicyFileError, match="cycle") as info:
        load_permissions(model, policy)
    assert info.value.line == len(policy.read_text(encoding="utf-8").splitlines())


def test_role_inheritance_grants_the_parent_roles_permissions(tmp_path: Path) -> None:
    model, policy = _copy_files(tmp_path)
    policy.write_text(policy.read_text(encoding="utf-8") + "g, data_steward, supervisor\n", encoding="utf-8")
    perms = load_permissions(model, policy)
    assert not load_permissions().is_allowed(["data_steward"], "break_glass", "close_review")
    assert perms.is_allowed(["data_steward"], "break_glass", "close_review")
    # Inheritance runs one way: the parent gains nothing of the member's.
    assert not perms.is_allowed(["supervisor"], "grants", "approve")


def test_reload_swaps_rules_and_reports_the_change(tmp_path: Path) -> None:
    model, policy = _copy_files(tmp_path)
    perms = load_permissions(model, policy)
    assert perms.is_allowed(["grid_worker"], "dataset:residents", "read")
    before = perms.digest
    policy.write_text(
        policy.read_text(encoding="utf-8").replace("p, grid_worker, dataset:residents, read\n", ""),
        encoding="utf-8",
    )
    event = perms.reload(actor="u-admin")
    assert not perms.is_allowed(["grid_worker"], "dataset:residents", "read")
    assert event["kind"] == "policy.permissions_reloaded"
    assert event["actor"] == "u-admin"
    assert event["removed"] == ["p, grid_worker, dataset:residents, read"]
    assert event["added"] == []
    assert event["before"]["digest"] == before != event["after"]["digest"] == perms.digest
    assert perms.version == 2
    assert perms.reload_if_changed() is None


def test_failed_reload_keeps_the_old_rules(tmp_path: Path) -> None:
    model, policy = _copy_files(tmp_path)
    perms = load_permissions(model, policy)
    policy.write_text(policy.read_text(encoding="utf-8") + "p, grid_worker, dataset:residents, delete\n")
    with pytest.raises(PolicyFileError):
        perms.reload()
    assert perms.is_allowed(["grid_worker"], "dataset:residents", "read")
    assert perms.version == 1


def test_unreadable_file_is_a_policy_file_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError) as info:
        PermissionModel(tmp_path / "absent.conf", DEFAULT_POLICY_PATH)
    assert info.value.line == 0
