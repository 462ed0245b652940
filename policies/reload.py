"""Policy-as-code reload: validate the three reviewed files together and describe a change.

The casbin model, the permission rules and the scenario catalog are reviewed data; a reload swaps all
three or none (a typo in any file keeps the old policy whole), and every reload is recorded — who, when,
the before/after digests and what changed — as an administrative event (GB/T 35273-2020 §11.1: changes
to access policy are themselves processing records a supervisor can check).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from policies.errors import PolicyFileError
from policies.permissions import DEFAULT_MODEL_PATH, DEFAULT_POLICY_PATH, PermissionModel
from policies.scenarios import DEFAULT_SCENARIOS_PATH, ScenarioCatalog

__all__ = ["PolicyFiles", "policy_change", "validate_policy_files"]


class PolicyFiles:
    """One consistent reading of the three files: the permission model and the scenario catalog."""

    __slots__ = ("permissions", "scenarios")

    def __init__(
        self,
        model_path: str | Path | None = None,
        permissions_path: str | Path | None = None,
        scenarios_path: str | Path | None = None,
    ) -> None:
        self.permissions = PermissionModel(model_path, permissions_path)
        self.scenarios = ScenarioCatalog(scenarios_path)

    def digests(self) -> dict[str, str]:
        return {"permissions": self.permissions.digest, "scenarios": self.scenarios.digest}


def validate_policy_files(
    model_path: str | Path | None = None,
    permissions_path: str | Path | None = None,
    scenarios_path: str | Path | None = None,
) -> list[PolicyFileError]:
    """Every file checked on its own, so one run reports a typo in each file (empty list: all valid).

    The permission rules are checked against the model they name; when the model itself is broken the
    rules are not judged (their columns depend on it)."""
    errors: list[PolicyFileError] = []
    try:
        PermissionModel(model_path or DEFAULT_MODEL_PATH, permissions_path or DEFAULT_POLICY_PATH)
    except PolicyFileError as exc:
        errors.append(exc)
    try:
        ScenarioCatalog(scenarios_path or DEFAULT_SCENARIOS_PATH)
    except PolicyFileError as exc:
        errors.append(exc)
    return errors


def _rule_texts(model: PermissionModel) -> set[str]:
    return {rule.as_text() for rule in model.rules}


def _sorted(values: Iterable[str]) -> list[str]:
    return sorted(values)


def policy_change(
    before_permissions: PermissionModel,
    before_scenarios: ScenarioCatalog,
    after: PolicyFiles,
    actor: str,
) -> dict[str, Any]:
    """The change event of a reload: digests before/after, rules added/removed, scenarios changed."""
    old_rules, new_rules = _rule_texts(before_permissions), _rule_texts(after.permissions)
    old_codes = {s.code: s for s in before_scenarios}
    new_codes = {s.code: s for s in after.scenarios}
    changed = [code for code in old_codes.keys() & new_codes.keys() if old_codes[code] != new_codes[code]]
    return {
        "kind": "policy.reloaded",
        "actor": actor,
        "grant_id": None,
        "before": {
            "permissions_digest": before_permissions.digest,
            "scenarios_digest": before_scenarios.digest,
        },
        "after": {
            "permissions_digest": after.permissions.digest,
            "scenarios_digest": after.scenarios.digest,
        },
        "files": {
            "model": after.permissions.model_path.name,
            "permissions": after.permissions.policy_path.name,
            "scenarios": after.scenarios.path.name,
        },
        "rules_added": _sorted(new_rules - old_rules),
        "rules_removed": _sorted(old_rules - new_rules),
        "scenarios_added": _sorted(new_codes.keys() - old_codes.keys()),
        "scenarios_removed": _sorted(old_codes.keys() - new_codes.keys()),
        "scenarios_changed": _sorted(changed),
    }
