"""``--help`` in Simplified Chinese first, English after, laid out for a terminal.

Every help text of ``grassroots`` (a command's description, a group's, an option's or argument's) is made by
:func:`bilingual`: the Chinese paragraph(s), a blank line, the English paragraph(s). The English never holds
a Chinese character, so where one ends and the other begins is always known (:func:`split_bilingual`), and a
test walks every command to hold each help text to that shape.

Click's own formatter counts characters, not terminal columns, and breaks lines only at spaces: a Chinese
sentence (no spaces, each character two columns wide) ran past the edge of the terminal or was cut at
arbitrary places. :class:`BilingualHelpFormatter` wraps by display width (East Asian Width), may break
between two Chinese characters but never before closing punctuation (，。）) or after opening punctuation
(（“), and keeps an English word whole. A command list shows each command's first Chinese sentence on one
line and its English short help on the next, each cut to the width. Click's own notes on a parameter, which
Typer writes in English after its help (``[required]``, ``[default: 20]``, ``[env var: …]``, ``[x>=1]``), are
Chinese first too, on a line of their own: ``[默认 default: 20; 必填 required]`` (:func:`help_record`).

Commands are declared as usual, with ``zh=`` beside the name; the English stays the function's docstring::

    app = HelpTyper(help=bilingual("场景授权：……", "Scenario grants: ..."), no_args_is_help=True)

    @app.command("show", zh="查看一项授权。")
    @api_command
    def show_grant(grant_id: GrantArg) -> ApiCall:
        \"\"\"One grant.\"\"\"
"""

from __future__ import annotations

import inspect
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import typer
import typer.core

# Typer 0.29 runs on its own copy of Click (see gateway.commands._usage); its formatter and helpers are used.
from typer._click import formatting
from typer._click.utils import make_default_short_help

F = TypeVar("F", bound=Callable[..., Any])

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
#: Not at the start of a line (they close what precedes them) / not at the end (they open what follows).
_NO_BREAK_BEFORE = set("，。、；：！？）》」』”’】〕…,.;:!?)]}%")
_NO_BREAK_AFTER = set("（《「『“‘【〔([{")
_HEADINGS = {"Options": "选项", "Arguments": "参数", "Commands": "命令"}
HELP_OPTION_HELP = "显示本帮助并退出。\n\nShow this message and exit."


def has_chinese(text: str) -> bool:
    return _HAN.search(text) is not None


def bilingual(zh: str, en: str) -> str:
    """One help text: the Chinese, a blank line, the English (each may hold paragraphs of its own).

    Refused when the Chinese has no Chinese character or the English has one (it would be read as Chinese
    and move the boundary), so a wrong help text fails when the CLI is imported, not on an official's
    screen."""
    zh, en = inspect.cleandoc(zh), inspect.cleandoc(en)
    if not has_chinese(zh):
        raise ValueError(f"the Chinese help has no Chinese: {zh!r}")
    if has_chinese(en) or not re.search(r"[A-Za-z]", en):
        raise ValueError(f"the English help must be English only: {en!r}")
    return f"{zh}\n\n{en}"


def _paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", inspect.cleandoc(text)) if p.strip()]


def split_bilingual(text: str) -> tuple[str, str]:
    """``(Chinese, English)`` of a help text: the leading paragraphs holding Chinese, then the rest."""
    paragraphs = _paragraphs(text)
    cut = 0
    while cut < len(paragraphs) and has_chinese(paragraphs[cut]):
        cut += 1
    return "\n\n".join(paragraphs[:cut]), "\n\n".join(paragraphs[cut:])


def width(text: str) -> int:
    """Columns ``text`` takes in a terminal: Chinese characters and full-width punctuation take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _join_lines(lines: Sequence[str]) -> str:
    """A paragraph's source lines as one: a space where English met English, nothing next to Chinese."""
    text = ""
    for line in (line.strip() for line in lines):
        if text and line and width(text[-1]) == 1 and width(line[0]) == 1:
            text += " "
        text += line
    return text


def _units(text: str) -> Iterator[tuple[bool, str]]:
    """``(space before it, unit)``: the pieces a line may break between. An English word is one piece, a
    Chinese character another; punctuation holds on to the piece it closes or opens."""
    pieces: list[tuple[bool, str]] = []
    for spaced, word in ((bool(m.group(1)), m.group(2)) for m in re.finditer(r"(\s*)(\S+)", text)):
        parts = re.findall(r"[^\s\u2e80-\uffef]+|.", word)
        for i, part in enumerate(parts):
            space = spaced and i == 0
            glue = (
                pieces and not space and (part[0] in _NO_BREAK_BEFORE or pieces[-1][1][-1] in _NO_BREAK_AFTER)
            )
            if glue:
                before, last = pieces[-1]
                pieces[-1] = (before, last + part)
            else:
                pieces.append((space, part))
    yield from pieces


def wrap(text: str, columns: int) -> list[str]:
    """``text`` (one paragraph) as lines of at most ``columns`` terminal columns (a piece longer than a line
    is cut)."""
    columns = max(columns, 10)
    lines: list[str] = []
    line, used = "", 0
    for space, unit in _units(text):
        gap = 1 if space and line else 0
        size = width(unit)
        if line and used + gap + size > columns:
            lines.append(line)
            line, used, gap = "", 0, 0
        while size > columns:  # a single piece wider than the line: cut it
            cut, taken = "", 0
            for ch in unit:
                if taken + width(ch) > columns - used - gap:
                    break
                cut, taken = cut + ch, taken + width(ch)
            lines.append(line + " " * gap + cut)
            unit, size, line, used, gap = unit[len(cut) :], size - taken, "", 0, 0
        line, used = line + " " * gap + unit, used + gap + size
    if line:
        lines.append(line)
    return lines


def fill(text: str, columns: int) -> list[str]:
    """A help text as lines: each paragraph wrapped to ``columns``, one after another; a paragraph that
    starts with a ``\\b`` line is kept as written (Click's mark for "do not rewrap")."""
    lines: list[str] = []
    for paragraph in _paragraphs(text):
        source = paragraph.splitlines()
        if source[0].strip() == "\b":
            lines.extend(source[1:])
        else:
            lines.extend(wrap(_join_lines(source), columns))
    return lines


class BilingualHelpFormatter(formatting.HelpFormatter):
    """Click's help layout, wrapped by terminal columns: Chinese and English paragraphs alike."""

    def write_heading(self, heading: str) -> None:
        zh = _HEADINGS.get(heading)
        super().write_heading(f"{zh} / {heading}" if zh else heading)

    def write_text(self, text: str) -> None:
        paragraphs = [fill(p, self.width - self.current_indent) for p in _paragraphs(text)]
        indent = " " * self.current_indent
        self.write("\n\n".join("\n".join(indent + line for line in lines) for lines in paragraphs))
        self.write("\n")

    def write_dl(self, rows: Sequence[tuple[str, str]], col_max: int = 30, col_spacing: int = 2) -> None:
        rows = list(rows)
        first_col = min(max((width(first) for first, _ in rows), default=0), col_max) + col_spacing
        margin = " " * (first_col + self.current_indent)
        for first, second in rows:
            self.write(f"{'':>{self.current_indent}}{first}")
            lines = fill(second, max(self.width - first_col - 2, 10)) if second else []
            if not lines:
                self.write("\n")
                continue
            if width(first) <= first_col - col_spacing:
                self.write(" " * (first_col - width(first)))
            else:
                self.write("\n" + margin)
            self.write(lines[0] + "\n")
            for line in lines[1:]:
                self.write(margin + line + "\n")


def short_help(text: str, columns: int) -> str:
    """A command's entry in a command list: its first Chinese sentence, then (next line) its English short
    help, each cut to ``columns``."""
    zh, en = split_bilingual(text)
    first = _join_lines(zh.split("\n\n")[0].splitlines()).split("。")[0] if zh else ""
    if width(first) > columns:
        while width(first) > columns - 1:
            first = first[:-1]
        first += "…"
    english = make_default_short_help(en, max(columns, 10)) if en else ""
    return "\n\n".join(p for p in (first, english) if p)


def _notes(param: Any, ctx: Any) -> Iterator[str]:
    """Click's notes on a parameter, which Typer writes in English after its help (``[env var: X;
    default: 20; 1<=x<=500; required]``), each Chinese first: where else the value may come from, what it
    is when not given, the numbers it takes, whether it must be given. Shown when and as Typer shows them
    (its own helpers make the default's text)."""
    if param.show_envvar and param.envvar is not None:
        names = param.envvar if isinstance(param.envvar, str) else ", ".join(param.envvar)
        yield f"环境变量 env var: {names}"
    default = param._extract_default_help_str(ctx=ctx)
    as_text = isinstance(param.show_default, str)
    if as_text or (default is not None and (param.show_default or ctx.show_default)):
        shown = param._get_default_string(ctx=ctx, show_default_is_str=as_text, default_value=default)
        if shown:
            yield f"默认 default: {shown}"
    numbers = param._get_number_range_help_str()
    if numbers:
        yield f"取值范围 range: {numbers}"
    if param.required:
        yield "必填 required"


def help_record(param: Any, ctx: Any) -> tuple[str, str] | None:
    """A parameter's row in ``--help``: Typer's first column (its names and value placeholder), then its
    help text with Click's notes, bilingual (:func:`_notes`), on a line of their own."""
    record = param.get_help_record(ctx)
    if record is None:
        return None
    notes = "; ".join(_notes(param, ctx))
    text = param.help or ""
    return record[0], f"{text}\n\n[{notes}]" if notes else text


def format_parameters(command: Any, ctx: Any, formatter: Any) -> None:
    """Typer's "Arguments" and "Options" sections, each row made by :func:`help_record`."""
    rows: dict[str, list[tuple[str, str]]] = {"argument": [], "option": []}
    for param in command.get_params(ctx):
        record = help_record(param, ctx)
        if record is not None and param.param_type_name in rows:
            rows[param.param_type_name].append(record)
    for kind, heading in (("argument", "Arguments"), ("option", "Options")):
        if rows[kind]:
            with formatter.section(heading):
                formatter.write_dl(rows[kind])


class _Context(typer.Context):
    formatter_class = BilingualHelpFormatter


def _translated_help_option(command: Any, option: Any) -> Any:
    if option is not None:
        option.help = HELP_OPTION_HELP
    return option


class HelpCommand(typer.core.TyperCommand):
    """A command whose ``--help`` is laid out by :class:`BilingualHelpFormatter`."""

    context_class = _Context

    def get_help_option(self, ctx: Any) -> Any:
        return _translated_help_option(self, super().get_help_option(ctx))

    def format_options(self, ctx: Any, formatter: Any) -> None:
        format_parameters(self, ctx, formatter)


class HelpGroup(typer.core.TyperGroup):
    """A group whose ``--help`` lists each command's Chinese summary with its English below."""

    context_class = _Context

    def get_help_option(self, ctx: Any) -> Any:
        return _translated_help_option(self, super().get_help_option(ctx))

    def format_options(self, ctx: Any, formatter: Any) -> None:
        format_parameters(self, ctx, formatter)
        self.format_commands(ctx, formatter)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        commands = [(name, self.commands[name]) for name in self.list_commands(ctx)]
        shown = [(name, command) for name, command in commands if not command.hidden]
        if not shown:
            return
        columns = formatter.width - 6 - max(len(name) for name, _ in shown)
        rows = [(name, short_help(command.help or "", columns)) for name, command in shown]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


#: The Chinese of each command function, so one registered again under another group keeps it.
_CHINESE: dict[Callable[..., Any], str] = {}


class HelpTyper(typer.Typer):
    """A ``typer.Typer`` whose commands and groups show bilingual help.

    ``command(name, zh=...)``: the Chinese of the command's help; its English is the function's docstring
    (so the code's own documentation stays English). A command without Chinese is refused at import."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", HelpGroup)
        # Click's layout, which the formatter above wraps (Typer's Rich panels would bypass it).
        kwargs.setdefault("rich_markup_mode", None)
        super().__init__(**kwargs)

    def command(self, name: str | None = None, *, zh: str | None = None, **kwargs: Any) -> Callable[[F], F]:
        register = super().command

        def decorator(function: F) -> F:
            chinese = zh if zh is not None else _CHINESE.get(function)
            if chinese is None:
                raise TypeError(f"command {name or function.__name__!r} has no Chinese help (zh=...)")
            _CHINESE[function] = chinese
            english = inspect.getdoc(function) or ""
            kwargs.setdefault("cls", HelpCommand)
            register(name, help=bilingual(chinese, english), **kwargs)(function)
            return function

        return decorator
