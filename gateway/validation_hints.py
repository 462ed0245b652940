"""What a pydantic validation error asks of a person, Chinese first then English: one table.

Both places that turn pydantic's report into words use it, so one mistake reads the same wherever it is
made: the ``GRASSROOTS_`` settings (:func:`gateway.settings.configuration_error`, printed by the CLI) and a
request's body and parameters (the 422 answer, :func:`gateway.app.describe_validation_errors`).

A hint is built from the error's type and the schema's own limits (allowed values, lengths, bounds,
formats), never from the value sent: it may be personal data or a secret. No web framework here: the CLI
reads its settings without importing one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["validation_hint"]

_CHOICES_PATTERN = re.compile(r"^\^\(([A-Za-z0-9_|]+)\)\$$")

_KINDS: dict[str, tuple[str, str]] = {
    "missing": ("必须提供", "is required"),
    "int_parsing": ("须为整数", "must be a whole number"),
    "int_type": ("须为整数", "must be a whole number"),
    "int_from_float": ("须为整数", "must be a whole number"),
    "float_parsing": ("须为数字", "must be a number"),
    "float_type": ("须为数字", "must be a number"),
    "finite_number": ("须为有限的数字（不能是 inf 或 nan）", "must be a finite number (not inf or nan)"),
    "bool_parsing": ("须为 true 或 false", "must be true or false"),
    "bool_type": ("须为 true 或 false", "must be true or false"),
    "string_type": ("须为文本", "must be text"),
    # A list in an environment variable is written as JSON too (pydantic-settings decodes it).
    "list_type": ('须为列表（JSON 数组，例如 ["a", "b"]）', 'must be a list (a JSON array, e.g. ["a", "b"])'),
    "dict_type": ("须为对象", "must be an object"),
    "model_attributes_type": ("须为对象", "must be an object"),
    "json_type": ("须为 JSON 文本", "must be JSON text"),
    # Its position in the text is not repeated: it says nothing to a person.
    "json_invalid": (
        "不是有效的 JSON，请检查引号、逗号和括号是否成对",
        "is not valid JSON; check that quotes, commas and brackets are in place",
    ),
    "timezone_aware": (
        "须为带时区的时间，例如 2026-11-22T08:00:00+08:00",
        "must be a time with its offset, e.g. 2026-11-22T08:00:00+08:00",
    ),
    # A supervisor's since/until/due (gateway.time_inputs): a Beijing-time day, or a time with its offset.
    "time_or_day": (
        "须为日期（例如 2026-12-01 或 2026年12月1日，按北京时间）或带时区的时间"
        "（例如 2026-12-01T08:00:00+08:00）",
        "must be a day (e.g. 2026-12-01, Beijing time) or a time with its offset "
        "(e.g. 2026-12-01T08:00:00+08:00)",
    ),
    # A month (gateway.time_inputs.Month): 2026-1, 2026-01 and 2026年1月 are all taken.
    "month": (
        "须为存在的月份（按北京时间），例如 2026-11、2026-1 或 2026年11月",
        "must be a month that exists, e.g. 2026-11 or 2026-1 (Beijing time)",
    ),
}
_BOUNDS = {
    "greater_than_equal": ("ge", "不能小于", "at least"),
    "greater_than": ("gt", "须大于", "greater than"),
    "less_than_equal": ("le", "不能大于", "at most"),
    "less_than": ("lt", "须小于", "less than"),
}
_LENGTHS = {
    "string_too_short": ("min_length", "至少 {} 个字符", "at least {} characters"),
    "string_too_long": ("max_length", "最多 {} 个字符", "at most {} characters"),
    "too_short": ("min_length", "至少 {} 项", "at least {} items"),
    "too_long": ("max_length", "最多 {} 项", "at most {} items"),
}


def _one_of(values: Sequence[str]) -> tuple[str, str] | None:
    return (f"只能是 {'、'.join(values)} 之一", f"must be one of {', '.join(values)}") if values else None


def _expected_values(expected: str) -> list[str]:
    """pydantic lists the schema's values as "'a', 'b' or 'c'" (strings) or "1, 2 or 3" (numbers)."""
    return re.findall(r"'([^']*)'", expected) or [v for v in re.split(r", | or ", expected) if v]


def validation_hint(error: Mapping[str, Any], accepted_fields: Sequence[str] = ()) -> tuple[str, str] | None:
    """What is wrong with one value and what it takes (Chinese, English), or None when the error's type
    says nothing a person could act on. ``accepted_fields``: the keys the object takes, named when it
    holds one it does not (the unknown key itself is what the caller typed and is not repeated)."""
    kind = str(error.get("type"))
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    if kind in _KINDS:
        return _KINDS[kind]
    if kind in _BOUNDS:
        key, zh, en = _BOUNDS[kind]
        return f"{zh} {ctx.get(key)}", f"must be {en} {ctx.get(key)}"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return "不能为空", "must not be empty"
    if kind in _LENGTHS:
        key, zh, en = _LENGTHS[kind]
        return zh.format(ctx.get(key)), en.format(ctx.get(key))
    if kind in ("literal_error", "enum"):
        return _one_of(_expected_values(str(ctx.get("expected", ""))))
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        choices = _CHOICES_PATTERN.match(pattern)
        return (
            _one_of(choices.group(1).split("|")) if choices else ("格式不正确", "is not in the right format")
        )
    if kind.startswith(("datetime_", "date_")):
        return _KINDS["timezone_aware"]
    if kind == "extra_forbidden":
        zh, en = "含有本接口没有的字段", "holds a field this endpoint does not take"
        if accepted_fields:
            zh += f"，可用的字段：{'、'.join(accepted_fields)}"
            en += f"; it takes {', '.join(accepted_fields)}"
        return zh, en
    return None
