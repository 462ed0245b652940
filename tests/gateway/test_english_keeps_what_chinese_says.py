"""English messages say what the Chinese ones say. The walk-through found English texts thinner than their
Chinese: a refused permission without the Chinese "contact the administrator" advice, an explanation
saying "Scenario DIBAO_REVIEW exists." where the Chinese names 「低保年度复核」.

Two walks: the refusal reasons' catalogue (policies/reasons.py, zh/en templates) and every call in the
product that hands over a Chinese then an English message literal (the errors' ``(message_zh,
message_en)``, an explanation's ``passed(check, zh, en)``). Only clear cases are flagged:

* the English interpolates fewer distinct values than the Chinese (a dropped placeholder);
* the Chinese interpolates a ``name_zh`` and the English no ``name_en`` (a code in place of a name);
* the Chinese tells the reader whom to contact (联系) and the English does not.

A pair whose extra Chinese value has no English counterpart to drop is listed in ``NOT_A_DROP``, saying
why (its advice is still checked).
"""

from __future__ import annotations

import ast
import re
import string
from collections.abc import Iterator
from pathlib import Path

import pytest

from policies import reasons

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "policies", "masking", "audit", "admission")
CJK = re.compile(r"[\u4e00-\u9fff]")
ADVICE_EN = re.compile(r"\b(contact|ask|asked|call)\b", re.IGNORECASE)

#: (file, the Chinese text's start) -> why its extra value is no drop.
NOT_A_DROP = {
    # The Chinese describes the permission in words (查看审计记录和监督案件) beside its name, which the
    # English gives as is ("read audit"): the same permission, no value left out.
    ("gateway/admin_support.py", "您的岗位没有{}的权限"): "the permission's Chinese description",
    # A department's Chinese name (区民政局) comes from the district's table; it has no English name, so
    # the English gives the department's code.
    ("admission/registry.py", "审核人不得来自申请部门"): "no English department name exists",
    # "策略文件"/"场景目录" is the Chinese for which file; the English names the file itself.
    ("gateway/routes/policy.py", "{} {} 有误，原策略继续生效"): "the file's kind, in Chinese only",
    # The field's catalogued title (手机号码) beside its name: the catalog has no English titles, so the
    # English gives the field's name alone, as it does for the field asked for.
    ("gateway/routes/masking_admin.py", "该密文是在字段 {} 中返回的"): "the field's Chinese title",
}


def _template(node: ast.expr) -> tuple[str, list[str]] | None:
    """A string literal or f-string as (text with {} for each value, the values' source)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value, []
    if isinstance(node, ast.JoinedStr):
        text, values = "", []
        for part in node.values:
            if isinstance(part, ast.Constant):
                text += str(part.value)
            elif isinstance(part, ast.FormattedValue):
                text += "{}"
                values.append(ast.unparse(part.value))
        return text, values
    return None


def _problems(zh: str, zh_values: list[str], en: str, en_values: list[str]) -> list[str]:
    found = []
    if len(set(en_values)) < len(set(zh_values)):
        found.append(f"the English drops a value: zh {sorted(set(zh_values))}, en {sorted(set(en_values))}")
    if any(v.endswith("name_zh") for v in zh_values) and not any("name_en" in v for v in en_values):
        found.append("the Chinese gives a name (name_zh), the English none (name_en)")
    if "联系" in zh and ADVICE_EN.search(en) is None:
        found.append("the Chinese says whom to contact, the English does not")
    return found


def _pairs() -> Iterator[tuple[str, int, str, list[str], str, list[str]]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                for first, second in zip(node.args, node.args[1:], strict=False):
                    zh, en = _template(first), _template(second)
                    if zh and en and CJK.search(zh[0]) and not CJK.search(en[0]):
                        yield relative, node.lineno, zh[0], zh[1], en[0], en[1]


def test_no_english_message_in_the_code_drops_what_its_chinese_says() -> None:
    thin = [
        f"{where}:{line}: {problem}\n  zh: {zh}\n  en: {en}"
        for where, line, zh, zh_values, en, en_values in _pairs()
        for problem in _problems(zh, zh_values, en, en_values)
        if "contact" in problem or not any(where == f and zh.startswith(start) for f, start in NOT_A_DROP)
    ]
    assert not thin, "\n".join(thin)


def _fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


@pytest.mark.parametrize(
    ("table", "code"),
    [("_TEXT", code) for code in sorted(reasons._TEXT)]
    + [("_THIRD_PERSON", code) for code in sorted(reasons._THIRD_PERSON)],
)
def test_every_refusal_reason_says_in_english_what_it_says_in_chinese(table: str, code: str) -> None:
    zh, en = getattr(reasons, table)[code]
    assert not _problems(zh, _fields(zh), en, _fields(en))


def test_the_walk_finds_a_thin_english_message() -> None:
    """The checks can fail: the two messages the walk-through found, as they were."""
    assert _problems("使用场景「{}」存在。", ["scenario.name_zh"], "Scenario {} exists.", ["scenario.code"])
    assert _problems(
        "您的岗位没有{}的权限（{} {}），本次未办理。如工作确需，请联系平台管理员核对您的岗位。",
        ["d", "action", "resource"],
        'Your role does not hold the permission "{} {}".',
        ["action", "resource"],
    )
    assert _problems("北京时间 {}:00–{}:00 查看 {} 次", ["a", "b", "n"], "{} reads at night", ["n"])
