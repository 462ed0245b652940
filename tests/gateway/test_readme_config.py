"""README.md's "Configuration" and "Command line" sections list what the product really reads and runs.

The tables are written by hand; these checks keep them from drifting: every field of every settings model
(the gateway's, the supervision area's, the admission area's) has a row under its environment variable with
the model's default, every environment variable a CLI option reads is named, every variable a row names is
read by the product, and every command is listed.
"""

from __future__ import annotations

import json
import re
from enum import Enum
from typing import Any

import pytest
import typer
from pydantic_settings import BaseSettings

from gateway.cli import app as grassroots
from gateway.routes.admission_api import AdmissionSettings
from gateway.settings import Settings
from gateway.supervision_tasks import SupervisionSettings
from tests.stack import REPO


def _section(title: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _rows(section: str) -> dict[str, str]:
    """``{variable: default cell}`` for every table row naming variables in its first cell."""
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`GRASSROOTS_"):
            continue
        for name in cells[0].split("/"):
            rows[name.strip().strip("`")] = cells[1]
    return rows


def _written(default: Any) -> set[str]:
    """How a default may be written in the table (each in backticks)."""
    if isinstance(default, bool):
        forms = {str(default).lower()}
    elif isinstance(default, float):
        forms = {str(default), f"{default:g}"}
    elif isinstance(default, Enum):
        forms = {str(default.value)}
    elif isinstance(default, list):
        forms = {json.dumps(default, separators=(",", ":"))}
    else:
        forms = {str(default)}
    return {f"`{form}`" for form in forms}


_MODELS: list[tuple[type[BaseSettings], str]] = [
    (Settings, "GRASSROOTS_"),
    (SupervisionSettings, "GRASSROOTS_"),
    (AdmissionSettings, "GRASSROOTS_ADMISSION_"),
]
_SETTINGS = [(model, prefix, name) for model, prefix in _MODELS for name in sorted(model.model_fields)]


@pytest.mark.parametrize(
    ("model", "prefix", "name"), _SETTINGS, ids=[f"{p}{n.upper()}" for _, p, n in _SETTINGS]
)
def test_every_setting_has_a_row_with_its_default(model: type[BaseSettings], prefix: str, name: str) -> None:
    rows = _rows(_section("Configuration"))
    variable = f"{prefix}{name.upper()}"
    assert variable in rows, f"README Configuration has no row for {variable}"
    field = model.model_fields[name]
    default = field.get_default(call_default_factory=True)
    if default is not None:  # None: the row says what is used instead
        assert any(form in rows[variable] for form in _written(default)), (
            f"{variable}: README says {rows[variable]!r}, the default is {default!r}"
        )


def _commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = []
    for name, command in group.commands.items():
        found.append(((*path, name), command))
        if hasattr(command, "commands"):
            found.extend(_commands(command, (*path, name)))
    return found


def test_every_environment_variable_a_command_option_reads_is_named() -> None:
    section = _section("Configuration")
    envvars = {
        envvar
        for _, command in _commands(typer.main.get_command(grassroots))
        for param in getattr(command, "params", [])
        for envvar in ([param.envvar] if isinstance(param.envvar, str) else param.envvar or [])
    }
    assert {"GRASSROOTS_URL", "GRASSROOTS_TOKEN"} <= envvars
    missing = sorted(v for v in envvars if f"`{v}`" not in section)
    assert missing == [], f"README Configuration does not name {missing}"


def test_every_command_is_in_the_command_line_table() -> None:
    section = _section("Command line")
    top = typer.main.get_command(grassroots)
    for path, _command in _commands(top):
        if len(path) == 1:
            assert f"`grassroots {path[0]}" in section, path
        elif path[0] in ("db", "audit", "keys"):  # the offline groups: each command has its row
            assert f"{path[0]} {path[1]}" in section, path
    assert "both departmental registries" in section  # `demo` starts the person-house registry too


def test_every_variable_the_tables_name_is_read_by_the_product() -> None:
    """The other way round: a row left behind when a setting is removed or renamed would have an operator set
    a variable nothing reads. Each row's variable is a settings field, a CLI option's environment variable,
    or read by name from the environment (``GRASSROOTS_SUBJECT_ID_NUMBER``, never an argument)."""
    read = {f"{prefix}{name.upper()}" for model, prefix in _MODELS for name in model.model_fields}
    for _, command in _commands(typer.main.get_command(grassroots)):
        for param in getattr(command, "params", []):
            read.update([param.envvar] if isinstance(param.envvar, str) else param.envvar or [])
    source = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "gateway").rglob("*.py"))
    stale = sorted(v for v in _rows(_section("Configuration")) if v not in read and f'"{v}"' not in source)
    assert stale == [], f"README Configuration names variables nothing reads: {stale}"


def test_every_client_command_is_named_as_reading_the_client_variables() -> None:
    """README says "the client commands (…) read these"; `sessions` and `logout` take `--token` /
    GRASSROOTS_TOKEN and `--url` / GRASSROOTS_URL like the others, but were not named, so an operator could
    not tell they do."""
    section = _section("Configuration")
    sentence = section[section.index("The client commands (") :].split(")", 1)[0]
    named = set(re.findall(r"`([^`]+)`", sentence))
    top = typer.main.get_command(grassroots)
    clients = set()
    for path, command in _commands(top):
        envvars = {p.envvar for p in getattr(command, "params", []) if isinstance(p.envvar, str)}
        if "GRASSROOTS_TOKEN" in envvars:
            clients.add(path[0] if path[0] != "audit" else f"audit {path[1]}")
    assert {"grants", "sessions", "logout"} <= clients
    missing = sorted(c for c in clients if c not in named and c.removeprefix("audit ") not in named)
    assert missing == [], f"README Configuration does not name the client commands {missing}"
