"""Every command's help writes a boolean option as a flag: the flag alone (``--quiet``) or its two forms
(``--dry-run / --execute``), never with a value placeholder (``--quiet <bool>``) as if it took a value; and
says everything in Simplified Chinese first, English after, within an 80-column terminal, Click's own
bracketed notes on a parameter (required, default, env var, range) included.
Walked over the real command tree, so a command added later is checked too."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
import typer.testing
from typer.testing import CliRunner

from gateway.cli import app
from gateway.commands._help import has_chinese, split_bilingual, width
from tests.stack import REPO

runner = CliRunner()
#: The command tree, built once: typer builds it again on every ``runner.invoke`` (0.05 s, most of what a
#: ``--help`` costs), and this module reads the help of every command several times.
_TREE = typer.main.get_command(app)


@pytest.fixture(autouse=True, scope="module")
def _one_command_tree() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(typer.testing, "_get_command", lambda _app: _TREE)
        yield


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(_TREE))


def _flags(path: tuple[str, ...]) -> list[Any]:
    """The boolean options of the command at ``path`` (typer builds them on its own copy of Click)."""
    command: Any = _TREE
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


def _command(path: tuple[str, ...]) -> Any:
    command: Any = _TREE
    for name in path:
        command = command.commands[name]
    return command


def _help_texts(path: tuple[str, ...]) -> dict[str, str]:
    """What ``--help`` of the command at ``path`` says in words: its description and each parameter's help
    (arguments, options, ``--help`` itself), by what they describe."""
    command = _command(path)
    ctx = command.context_class(command, info_name=path[-1] if path else "grassroots")
    texts = {"the description": command.help or ""}
    for param in command.get_params(ctx):
        if not getattr(param, "hidden", False):
            texts[param.opts[0] if param.param_type_name == "option" else param.name] = param.help or ""
    return texts


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) or "grassroots" for p in COMMANDS])
def test_every_help_text_is_chinese_first_then_english(path: tuple[str, ...]) -> None:
    """The house rule for what officials read: Simplified Chinese first, English after (each help text is
    made by ``bilingual``, which also keeps the English free of Chinese, so the two can be told apart)."""
    for what, text in _help_texts(path).items():
        zh, en = split_bilingual(text)
        assert zh, f"{what} has no Chinese (first): {text!r}"
        assert en, f"{what} has no English (after the Chinese): {text!r}"
        assert not has_chinese(en), f"{what}: Chinese after the English: {text!r}"


def test_the_walk_reaches_every_group_and_the_commands_arguments() -> None:
    assert {p[0] for p in COMMANDS if p} >= {"grants", "policy", "masking", "supervise", "admission", "audit"}
    assert "grant_id" in _help_texts(("grants", "show"))
    assert "--help" in _help_texts(("grants", "show"))


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) or "grassroots" for p in COMMANDS])
def test_help_fits_80_columns_and_lists_each_command_in_chinese_uncut(path: tuple[str, ...]) -> None:
    """A Chinese character takes two columns: no line of help may run past an 80-column terminal (the
    runner renders at 80), and a command list shows each command's first Chinese sentence whole, the
    English short help on the line below it."""
    shown = runner.invoke(app, [*path, "--help"]).stdout
    assert [line for line in shown.splitlines() if width(line) > 80] == []
    if "命令 / Commands:" in shown:
        listed = shown.split("命令 / Commands:")[1].splitlines()[1:]
        for name in _command(path).commands:
            (line,) = [i for i, text in enumerate(listed) if text.split()[:1] == [name]]
            chinese, english = listed[line], listed[line + 1]
            assert has_chinese(chinese) and not chinese.endswith("…"), chinese
            assert english.strip() and not has_chinese(english), english


#: What Click and Typer write after a parameter's help, in English: ``required``, ``default: 20``,
#: ``env var: GRASSROOTS_TOKEN``, a range ``x>=1`` / ``0<=x<=90`` / ``x<=9``, ``(dynamic)``, ``deprecated``.
_CLICK_NOTE = re.compile(r"required|default:|env var:|<=x|x[<>]=|\(dynamic\)|deprecated", re.IGNORECASE)


def _bracket_notes(shown: str) -> list[str]:
    """Each "; "-separated part of every bracketed note in the parameter sections of a help screen, the
    lines joined first (a note may wrap onto the next line)."""
    sections = shown.split("Arguments:", 1)[-1] if "Arguments:" in shown else shown.split("Options:", 1)[-1]
    joined = " ".join(sections.split())
    return [part.strip() for note in re.findall(r"\[([^\[\]]*)\]", joined) for part in note.split(";")]


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) or "grassroots" for p in COMMANDS])
def test_click_notes_on_a_parameter_are_chinese_first(path: tuple[str, ...]) -> None:
    """``[required]``, ``[default: 20]``, ``[env var: …]``, ``[1<=x<=500]`` came out in English only under
    the Chinese-first help text: each note now says it in Chinese, then Click's English words."""
    shown = runner.invoke(app, [*path, "--help"]).stdout
    for part in _bracket_notes(shown):
        if _CLICK_NOTE.search(part):
            assert has_chinese(part.split()[0]), f"English-only note [{part}] in {' '.join(path)} --help"


def test_the_walk_meets_every_kind_of_note_in_chinese() -> None:
    kinds = {
        part.split()[0]
        for path in COMMANDS
        for part in _bracket_notes(runner.invoke(app, [*path, "--help"]).stdout)
    }
    assert {"必填", "默认", "环境变量", "取值范围"} <= kinds


def test_a_notes_line_follows_the_help_chinese_then_english() -> None:
    shown = runner.invoke(app, ["grants", "renew", "--help"]).stdout
    rows = [line.strip() for line in shown.split("--stagger-days")[1].split("--url")[0].strip().splitlines()]
    assert rows[-1] == "[默认 default: 14; 取值范围 range: 0<=x<=90]", rows
    vote = runner.invoke(app, ["admission", "review", "--help"]).stdout.split("--vote")[1]
    assert vote.split("\n  --comment ")[0].splitlines()[-1].strip() == "[必填 required]", vote
    token = runner.invoke(app, ["supervise", "events", "--help"]).stdout.split("--token")[1]
    assert "[环境变量 env var: GRASSROOTS_TOKEN]" in token.split("\n  --as ")[0]


def _printed(*args: str) -> str:
    """``grassroots ARGS --help`` as an operator's 80-column terminal shows it: the real command, in its own
    process (Click's test runner lays help out two columns wider than a terminal does)."""
    env = {**os.environ, "COLUMNS": "80", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args, "--help"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_the_readme_help_excerpt_is_what_the_commands_print() -> None:
    """README "Command line" shows a command list and two options as ``--help`` prints them; the excerpt had
    ``--stagger-days`` wrapped two columns wider than the help ever is, so an operator comparing saw other
    lines. Each entry of the excerpt must be found, line for line, in the real help."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n## Command line\n") :]
    block = section.split("```\n", 2)[1]
    commands, options = block.split("\n\n选项 / Options:")
    assert commands.split("命令 / Commands:\n")[1] + "\n" in _printed()
    shown = _printed("grants", "renew")
    entries = re.split(r"\n(?=  --)", options.split("\n", 1)[1].rstrip("\n"))
    assert len(entries) == 2
    for entry in entries:
        assert entry + "\n" in shown, entry


def _option_help(path: tuple[str, ...], option: str) -> str:
    command: Any = _TREE
    for name in path:
        command = command.commands[name]
    (param,) = [p for p in command.params if option in getattr(p, "opts", ())]
    return str(param.help)


def test_a_status_filter_lists_every_status_with_the_label_the_answer_shows() -> None:
    """`grants list --status` and `admission list --status` ended in 等 ("..."), and the latter called
    submitted 已提交 where every answer says 联审中: a clerk could not tell what to type, nor match it."""
    from admission.model import STATUS_LABELS_ZH
    from policies.grants import GRANT_STATUS_ZH

    for path, labels in (
        (("grants", "list"), GRANT_STATUS_ZH),
        (("admission", "list"), STATUS_LABELS_ZH),
    ):
        text = _option_help(path, "--status")
        assert "等" not in text and "..." not in text, text
        for status, label in labels.items():
            assert f"{status.value}（{label}）" in text, (path, status)
