"""Validators for Chinese identifiers, shared by the free-text recognizers and tests.

Check characters come from python-stdnum, never hand-written: GB 11643-1999 resident ID (`stdnum.cn.ric`,
ISO 7064 MOD 11-2), GB 32100-2015 unified social credit code (`stdnum.cn.uscc`), bank cards (`stdnum.luhn`).
"""

from __future__ import annotations

import re

from stdnum import luhn
from stdnum.cn import ric, uscc
from stdnum.iso7064 import mod_11_2

__all__ = [
    "COMPOUND_SURNAMES",
    "SINGLE_SURNAMES",
    "id_checksum_ok",
    "is_valid_bank_card",
    "is_valid_credit_code",
    "is_valid_id_number",
    "is_valid_landline",
    "is_valid_mobile",
]

_NOT_DIGIT = re.compile(r"[\s\-()（）+]", re.ASCII)


def is_valid_id_number(text: str) -> bool:
    """python-stdnum's verdict: format, birth date, birth-place county table and check character."""
    try:
        return bool(ric.is_valid(text))
    except (KeyError, IndexError, ValueError):
        # python-stdnum 2.2 raises KeyError for a region code that names a province but no county
        # (e.g. "627800..."); such a number is not a valid ID.
        return False


def id_checksum_ok(text: str) -> bool:
    """Only the 18-character shape and the ISO 7064 MOD 11-2 check character (no county/date table)."""
    compact = ric.compact(text)
    return len(compact) == 18 and compact[:17].isdigit() and bool(mod_11_2.is_valid(compact))


def is_valid_credit_code(text: str) -> bool:
    try:
        return bool(uscc.is_valid(text))
    except (KeyError, IndexError, ValueError):
        return False


def is_valid_bank_card(text: str) -> bool:
    digits = _NOT_DIGIT.sub("", text)
    # Payment cards (ISO/IEC 7812, UnionPay included): 13-19 digits ending in a Luhn check digit.
    return (
        digits.isascii()
        and digits.isdigit()
        and 13 <= len(digits) <= 19
        and digits[0] != "0"
        and bool(luhn.is_valid(digits))
    )


_MOBILE = re.compile(r"(?:86|0086)?1[3-9]\d{9}", re.ASCII)


def is_valid_mobile(text: str) -> bool:
    return _MOBILE.fullmatch(_NOT_DIGIT.sub("", text)) is not None


def is_valid_landline(text: str) -> bool:
    """Area code 010 or 02X then 8 digits, or 0[3-9]XX then 7-8 digits (national numbering plan)."""
    digits = _NOT_DIGIT.sub("", text)
    if not (digits.isascii() and digits.isdigit()) or not digits.startswith("0"):
        return False
    if digits.startswith(("010", "02")):
        return len(digits) == 11
    return digits[1] in "3456789" and len(digits) in (11, 12)


# Common single-character surnames (百家姓, the ~300 most frequent in the 2020 census) and compound ones.
SINGLE_SURNAMES = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余于杜叶程魏苏吕丁任卢姚沈钟"
    "姜崔谭陆范汪廖石金韦贾夏付方邹熊白孟秦邱侯江尹薛闫段雷龙黎史陶贺毛郝顾龚邵万覃武钱戴严莫孔向常汤康易乔赖文"
    "施洪辛柯庄凌牛古甘詹申涂左关耿伍葛鲁聂骆盛齐欧岳温景焦殷喻苗柴单阎滕卜祝胥闵包屈席鲍裴褚费蓝童缪舒艾尤"
    "阮毕戚倪殷华邢安季俞纪章梅翟管樊游苑路蒙仇宁丰卞柏谷晏饶邝蔺全麦郁宫解房佟栾巫楚米鞠权迟滑慕廉宗祁练植"
    "窦符封蒲池冉兰穆岑晋云阳邬揭司平查车刁巩连苟荣谈陈黎成贝"
)
COMPOUND_SURNAMES = frozenset(
    (
        "欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙",
        "宇文", "司徒", "司空", "夏侯", "轩辕", "令狐", "钟离", "端木", "独孤", "南宫",
        "西门", "百里", "呼延", "万俟", "闻人", "澹台", "公冶", "太史", "申屠", "宗政",
        "濮阳", "淳于", "单于", "赫连", "东郭", "拓跋", "段干", "左丘", "第五", "梁丘",
    )
)  # fmt: skip
