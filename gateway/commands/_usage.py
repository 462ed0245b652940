"""Click's own usage errors, told in Simplified Chinese first with Click's English kept below.

A missing option, an option that does not exist, a value Click cannot convert, a command that does not
exist, a flag given a value or an argument too many is refused by Click before any of our code runs, in
English only ("Error: Missing option '--vote'."). Every other message an official reads from ``grassroots``
is Chinese first with English after; so the top-level group catches Click's exceptions itself and puts one
Chinese line in front of Click's unchanged text (usage, hint and the English error), with the same exit
code (2 for a usage error, 1 for an interrupted prompt).
"""

from __future__ import annotations

import re
import sys
import typing
from collections.abc import Sequence
from typing import Any, Final

import typer

# Typer 0.29 runs on its own copy of Click (``typer._click``); its exceptions are the ones raised here, and
# Typer re-exports only a few of them (``typer.BadParameter``), so the module is named directly.
from typer._click import exceptions as errors

from gateway.commands._help import HelpGroup
from grassroots_common.divisions import is_division_code

# Typer's resolver says "No such command 'reviw'. Did you mean 'review', 'revise'?" in a plain UsageError.
_NO_SUCH_COMMAND = re.compile(r"No such command '(?P<name>[^']*)'\.(?: Did you mean (?P<maybe>.*)\?)?")
# Click's words for what a command was given beyond its parameters (a plain UsageError too).
_EXTRA_ARGUMENTS = re.compile(r"Got unexpected extra argument(?:s|\(s\))? \((?P<extra>.*)\)")


def _value_rule(param: Any) -> str:
    """What the parameter takes, in Chinese, when its declared type says it plainly; else empty."""
    described = getattr(param, "type_descriptor", None)  # Typer's account of the annotation
    if described is None:
        return ""
    if described.choices:
        return f"只能是 {'、'.join(str(getattr(c, 'value', c)) for c in described.choices)} 之一"
    kind = described.annotation
    if typing.get_origin(kind) is list:
        (kind,) = typing.get_args(kind) or (None,)
    if kind is int or kind is float:
        info = described.parameter_info
        low = "" if info.min is None else f"不小于 {info.min}"
        high = "" if info.max is None else f"不大于 {info.max}"
        number = "整数" if kind is int else "数字"
        bounds = "、".join(b for b in (low, high) if b)
        return f"须为{bounds} 的{number}" if bounds else f"须为{number}"
    if described.is_path:
        return "须为可用的文件或文件夹路径"
    return ""


class InvalidValue(errors.BadParameter):
    """A value a command's own check refused; ``zh_rule`` says in Chinese what the option takes (the first
    line), Click's English line carries ``message``."""

    def __init__(self, message: str, zh_rule: str) -> None:
        super().__init__(message)
        self.zh_rule = zh_rule


def division_code(value: str | None) -> str | None:
    """Click callback for an option naming an organisation: a division code of 2, 4, 6, 9 or 12 digits, passed
    on as typed (the gateway reads the short forms), or a usage error naming the option the user typed (the
    API would name its own field, ``org_scope``). The gateway's parser decides, so the CLI refuses exactly
    the codes the API refuses (full-width digits, province 00 other than the root)."""
    if value is None or is_division_code(value):
        return value
    raise InvalidValue(
        "must be a division code of 2, 4, 6, 9 or 12 digits (for example 310151101000)",
        "须为 2、4、6、9 或 12 位的统计用区划代码（例如 310151101000）",
    )


def audit_ref_key_id(value: str | None) -> str | None:
    """Click callback for ``keys rotate-audit-ref --key-id``: the shape every audit ref's key id has
    (audit.pseudonym.KEY_ID_PATTERN). Refused as a usage error (exit 2) before the database or a key is
    opened; it was exit 1, after both."""
    from grassroots_common.keyids import KEY_ID_PATTERN

    if value is None or KEY_ID_PATTERN.fullmatch(value) is not None:
        return value
    raise InvalidValue(
        "must be 1 to 16 ASCII letters, digits, _ or -, such as k2",
        "须为 1 到 16 个英文字母、数字、“_”或“-”，例如 k2",
    )


#: Per kind of case (its id's letter): English and Chinese name, and the other kind's letter.
_CASE_KINDS: Final = {"I": ("an incident", "事件", "C"), "C": ("a complaint", "投诉", "I")}


def _case_id_of(letter: str, value: str) -> str:
    """A complaint or incident id, trimmed of the spaces a paste brings. An empty one (a shell variable
    left unset: ``"$INC"`` after a failed ``complain``) or one holding a space or a character with a
    meaning in a URL (``/ ? # %``) made another URL, answered 404 ``no_route`` (页面或接口不存在), which
    said nothing of the id; refused, naming the kind of id the command takes (it named both, C-… or I-…,
    to a command that refuses the other). The other kind's id (``C-…`` for an incident, ``I-…`` for a
    complaint) is refused too: both are in the complaint's answer, and the other one was answered 404, as
    if the case did not exist."""
    trimmed = value.strip()
    name, name_zh, other = _CASE_KINDS[letter]
    if not trimmed or any(c in trimmed for c in "/?#% \t"):
        raise InvalidValue(
            f"must be the {name.split()[1]} id the complaint's answer gave ({letter}-...); "
            "it is empty or not an id",
            f"须为登记投诉时返回的{name_zh}编号（{letter}-…），不能为空，也不能含有空格或 / 等符号",
        )
    other_name, other_zh, _ = _CASE_KINDS[other]
    if trimmed.upper().startswith(f"{other}-"):
        field, command = f"{name.split()[1]}_id", other_name.split()[1]
        raise InvalidValue(
            f"must be {name} id ({letter}-...); {other}-... is {other_name}'s id, whose {field} names its "
            f"{name.split()[1]} (grassroots supervise {command} {other}-... shows it)",
            f"须为{name_zh}编号（{letter}-…）；{other}-… 是{other_zh}编号，"
            f"该{other_zh}的{name_zh}编号见其 {field}（grassroots supervise {command} {other}-… 可查看）",
        )
    return trimmed


def incident_case_id(value: str) -> str:
    """Click callback for an incident id (:func:`_case_id_of`)."""
    return _case_id_of("I", value)


def complaint_case_id(value: str) -> str:
    """Click callback for a complaint id (:func:`_case_id_of`)."""
    return _case_id_of("C", value)


def month(value: str | None) -> str | None:
    """Click callback for a month option: ``2026-1``, ``2026-01``, ``2026年1月`` (full-width digits too) are
    passed on as ``2026-01``, the form the gateway and the offline commands compare months in; anything
    else, a month that does not exist (``2026-13``) included, is a usage error naming the option."""
    if value is None:
        return None
    # Imported here: the time parsers pull in the audit library, which most commands never need.
    from gateway.time_inputs import month_label

    label = month_label(value)
    if label is not None:
        return label
    raise InvalidValue(
        "must be a month that exists, such as 2026-11 or 2026-1",
        "须为存在的月份，例如 2026-11、2026-1 或 2026年11月",
    )


def _hint(exc: errors.BadParameter) -> str:
    """The parameter as Click names it in its English line (``--vote``, ``system_id``)."""
    if exc.param_hint is not None:
        hint = exc.param_hint
        text = hint if isinstance(hint, str) else " / ".join(hint)
    elif exc.param is not None:
        text = str(exc.param.get_error_hint())
    else:
        return ""
    return text.replace("'", "")


def _maybe(names: Sequence[str]) -> str:
    return f"您是不是要用 {'、'.join(names)}？" if names else ""


def chinese_line(exc: errors.ClickException) -> str:
    """One Chinese sentence saying what Click refused (Click's English follows it unchanged)."""
    ctx = exc.ctx if isinstance(exc, errors.UsageError) else None
    see = f"请运行 {ctx.command_path} --help 查看用法。" if ctx is not None else ""
    if isinstance(exc, errors.NoSuchOption):
        maybe = _maybe(exc.possibilities or [])
        return f"命令用法有误：没有选项 {exc.option_name}。{maybe}{see}"
    command = _NO_SUCH_COMMAND.fullmatch(exc.message) if isinstance(exc, errors.UsageError) else None
    if command is not None:
        maybe = _maybe(re.findall(r"'([^']*)'", command["maybe"] or ""))
        return f"命令用法有误：没有命令 {command['name']}。{maybe}{see}"
    extra = _EXTRA_ARGUMENTS.fullmatch(exc.message) if isinstance(exc, errors.UsageError) else None
    if extra is not None:
        # Most often a value with a space typed without quotes: its second word is left over.
        return f"命令用法有误：多余的参数 {extra['extra']}（取值中有空格时，请把整个取值放在引号中）。{see}"
    if isinstance(exc, errors.MissingParameter):
        kind = "参数" if exc.param is not None and exc.param.param_type_name == "argument" else "选项"
        rule = _value_rule(exc.param)
        return f"命令用法有误：缺少{kind} {_hint(exc)}{f'（{rule}）' if rule else ''}。{see}"
    if isinstance(exc, errors.BadParameter):
        rule = getattr(exc, "zh_rule", "") or _value_rule(exc.param)
        return f"命令用法有误：{_hint(exc)} 的取值有误{f'，{rule}' if rule else ''}。{see}"
    if isinstance(exc, errors.BadOptionUsage):
        if exc.message.endswith("does not take a value."):  # a flag given one: --quiet=yes
            return f"命令用法有误：选项 {exc.option_name} 是开关，不带取值（只写 {exc.option_name}）。{see}"
        if "requires" in exc.message:  # "Option '--limit' requires an argument."
            return f"命令用法有误：选项 {exc.option_name} 后面缺少取值。{see}"
        return f"命令用法有误：选项 {exc.option_name} 的用法不对。{see}"
    if isinstance(exc, errors.FileError):
        return f"无法打开文件 {exc.ui_filename}：请确认文件存在且有权读取。"
    if isinstance(exc, errors.UsageError):
        return f"命令用法有误。{see}"
    return "命令未能执行。"


def show_bilingual(exc: errors.ClickException) -> None:
    """Chinese first, then Click's own rendering (usage, hint, ``Error: …``) as it would have printed it."""
    if not isinstance(exc, errors.NoArgsIsHelpError):  # that one just prints the help
        typer.echo(chinese_line(exc), err=True)
    exc.show()


class BilingualGroup(HelpGroup):
    """The ``grassroots`` group: runs as Typer does, but renders Click's refusals (and, as every group here,
    its help) bilingually."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            # Not standalone: Click's errors come back to us instead of being printed in English.
            # Exit codes arrive as return values (``Exit`` is returned, not raised); the commands
            # themselves return None.
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except errors.ClickException as exc:
            show_bilingual(exc)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("已中止，未完成该操作。\nAborted!", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)
