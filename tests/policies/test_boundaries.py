"""The policy library stays a leaf of the star: it imports no other product package, no web framework
and no HTTP client (docs/architecture.md; also checked by import-linter)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import policies

FORBIDDEN = (
    "gateway",
    "masking",
    "audit",
    "admission",
    "demoworld",
    "fastapi",
    "starlette",
    "httpx",
    "aiohttp",
)
SOURCES = sorted(Path(policies.__file__).parent.glob("*.py"))


@pytest.mark.parametrize("source", SOURCES, ids=[p.name for p in SOURCES])
def test_no_forbidden_imports(source: Path) -> None:
    tree = ast.parse(source.read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported.intersection(FORBIDDEN)


def test_the_public_api_is_exported() -> None:
    for name in (
        "normalize",
        "covers",
        "level_of",
        "parent_of",
        "DivisionLevel",
        "Subject",
        "AccessRequest",
        "Decision",
        "Reason",
        "Obligations",
        "PermissionModel",
        "load_permissions",
        "Scenario",
        "ScenarioCatalog",
        "load_scenarios",
        "ScenarioGrant",
        "GrantStatus",
        "GrantRepository",
        "GrantService",
        "GrantIndex",
        "PolicyEngine",
        "metadata",
    ):
        assert hasattr(policies, name), name
