"""admission is a library of the star: it imports no other product package and no web or HTTP stack."""

from __future__ import annotations

import ast
from pathlib import Path

import admission

FORBIDDEN = {
    "gateway",
    "policies",
    "masking",
    "audit",
    "demoworld",
    "fastapi",
    "starlette",
    "httpx",
    "aiohttp",
    "uvicorn",
}


def test_admission_imports_no_forbidden_module() -> None:
    root = Path(admission.__file__).parent
    found: set[tuple[str, str]] = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            found |= {(path.name, n) for n in names if n.split(".")[0] in FORBIDDEN}
    assert found == set()


def test_offices_toml_ships_with_the_package() -> None:
    assert (Path(admission.__file__).parent / "offices.toml").is_file()
