"""Every command's help writes a boolean option as a flag: the flag alone (``--quiet``) or its two forms
(``--dry-run / --execute``), never with a value placeholder (``--quiet <bool>``) as if it took a value.
Walked over the real command tree, so a command added later is checked too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from gateway.cli import app

runner = CliRunner()


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def _flags(path: tuple[str, ...]) -> list[Any]:
    """The boolean options of the command at ``path`` (typer builds them on its own copy of Click)."""
    command: Any = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return [p for p in command.params if p.param_type_name == "option" and getattr(p, "is_flag", False)]


def test_the_walk_reaches_the_commands_with_flags() -> None:
    with_flags = {" ".join(path) for path in COMMANDS if _flags(path)}
    assert {"audit verify", "admission token", "admission register", "supervise prune"} <= with_flags


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) or "grassroots" for p in COMMANDS])
def test_a_boolean_option_is_shown_as_a_flag_without_a_value(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.stdout
    # The option column of each option line: "-q, --quiet", "--dry-run / --execute", "--url <str>".
    options = result.stdout.split("Options:")[1]
    columns = [line.strip().split("  ")[0] for line in options.splitlines() if line.strip()[:1] == "-"]
    for flag in ["--help", *(p.opts[0] for p in _flags(path))]:
        (shown,) = [c for c in columns if flag in c.replace(",", " ").replace("/", " ").split()]
        assert "<" not in shown and "BOOLEAN" not in shown, shown


@pytest.mark.parametrize("path", COMMANDS)
def test_no_commands_help_shows_docstring_markup(path: tuple[str, ...]) -> None:
    """Click prints a docstring as written: reStructuredText's double backquotes reached the terminal
    (``POST /api/v1/...``); the operator reads one backquote, as the README writes a command."""
    shown = runner.invoke(app, [*path, "--help"])
    assert shown.exit_code == 0, shown.output
    assert "``" not in shown.stdout
