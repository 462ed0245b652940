"""Validators for Chinese identifiers, shared by the free-text recognizers and tests.

Check characters come from python-stdnum, never hand-written: GB 11643-1999 resident ID (`stdnum.cn.ric`,
ISO 7064 MOD 11-2), GB 32100-2015 unified social credit code (`stdnum.cn.uscc`), bank cards (`stdnum.luhn`).
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache

from stdnum import luhn
from stdnum.cn import ric, uscc
from stdnum.exceptions import ValidationError
from stdnum.iso7064 import mod_11_2
from stdnum.util import isdigits

__all__ = [
    "ALL_COMPOUND_SURNAMES",
    "COMPOUND_SURNAMES",
    "SINGLE_SURNAMES",
    "birth_date_parts",
    "id_checksum_ok",
    "is_plausible_id_number",
    "is_valid_bank_card",
    "is_valid_credit_code",
    "is_valid_id_number",
    "is_valid_landline",
    "is_valid_mobile",
    "is_valid_old_id_number",
]

_NOT_DIGIT = re.compile(r"[\s\-()（）+]", re.ASCII)


def is_valid_id_number(text: str) -> bool:
    """python-stdnum's verdict: format, birth date, birth-place county table and check character.

    The steps of `stdnum.cn.ric.validate`, in its order; the county-table lookup (`get_birth_place`,
    ~30 µs, most of the cost) is cached, keyed by region code and birth year, which is all it reads
    and which identifies nobody. Agreement with `ric.is_valid` is tested on vectors and generated
    numbers."""
    return _id_number_holds(text, check_character=True)


def is_plausible_id_number(text: str) -> bool:
    """An 18-character number that is someone's ID number but for, perhaps, its check character: a county
    python-stdnum knows and a real birth date. A registry's mistyped number still names its resident, and
    first-generation numbers (:func:`is_valid_old_id_number`), which have no check character, are taken on
    the same two checks."""
    return _id_number_holds(text, check_character=False)


def _id_number_holds(text: str, *, check_character: bool) -> bool:
    try:
        # `compact` maps Unicode look-alikes to ASCII; ASCII text needs only its upper/strip part.
        number = text.upper().strip() if text.isascii() else ric.compact(text)
        if len(number) != 18 or not isdigits(number[:-1]) or number[-1] not in _CHECK_CHARACTERS:
            return False
        if check_character and number[-1] != ric.calc_check_digit(number):
            return False
        # `get_birth_date`, without compacting a second time: a real calendar date or invalid.
        year = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14])).year
        return _birth_place_known(number[:6], year)
    except (ValidationError, KeyError, IndexError, ValueError):
        # python-stdnum 2.2 raises KeyError for a region code that names a province but no county
        # (e.g. "627800..."); such a number is not a valid ID.
        return False


_CHECK_CHARACTERS = frozenset("0123456789X")


@lru_cache(maxsize=16384)
def _birth_place_known(region: str, year: int) -> bool:
    try:
        ric.get_birth_place(f"{region}{year:04d}01010000")
    except (ValidationError, KeyError, IndexError, ValueError):
        return False
    return True


def is_valid_old_id_number(text: str, *, known_county: bool = True) -> bool:
    """A first-generation (GB 11643-1989) 15-digit number: 6-digit region, birth date as YYMMDD in
    the 1900s, 3-digit sequence. It has no check character, so a real birth date (and, unless
    ``known_county`` is false, a county python-stdnum knows) is all there is to check."""
    number = text.strip() if text.isascii() else ric.compact(text)
    if len(number) != 15 or not isdigits(number) or number[0] == "0":
        return False
    try:
        year = dt.date(1900 + int(number[6:8]), int(number[8:10]), int(number[10:12])).year
    except ValueError:
        return False
    return not known_county or _birth_place_known(number[:6], year)


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


# A date as people write it: its parts in digits or as said in Chinese (三月十二日, 一九四八年, 腊月初八).
_DATE_PART = re.compile(r"[0-9]+|[〇零一二三四五六七八九十廿卅初正腊冬]+")
_NUMERAL_VALUES = {c: i for i, c in enumerate("〇一二三四五六七八九")} | {"零": 0}
_MONTH_NAMES = {"正": 1, "冬": 11, "腊": 12}


def _part_value(part: str) -> int | None:
    """A part's number: 12, 十二, 二十三, 廿三, 初八, 一九四八 (read digit by digit), 腊 (12)."""
    if part.isascii():
        return int(part)
    if part in _MONTH_NAMES:
        return _MONTH_NAMES[part]
    part = part.removeprefix("初")
    tens = {"廿": 20, "卅": 30}.get(part[:1])
    if tens is not None:
        rest = part[1:]
        if rest and rest not in _NUMERAL_VALUES:
            return None
        return tens + (_NUMERAL_VALUES[rest] if rest else 0)
    if "十" in part:
        high, _, low = part.partition("十")
        if len(high) > 1 or len(low) > 1 or not {high, low} <= {*_NUMERAL_VALUES, ""}:
            return None
        return (_NUMERAL_VALUES[high] if high else 1) * 10 + (_NUMERAL_VALUES[low] if low else 0)
    if not all(c in _NUMERAL_VALUES for c in part):
        return None
    return int("".join(str(_NUMERAL_VALUES[c]) for c in part))


def birth_date_parts(text: str) -> tuple[int | None, int, int | None] | None:
    """(year, month, day) of a date written in a remark (1948年3月12日, 1956-07-08, 19480312, 一九四八年
    三月十二日, 48年3月, 3月12日, 腊月初八), year or day None where the text leaves it out; None when it is
    no calendar date (month 13, 2月30日). A four-digit year is one a living resident was born in or
    after 1880; a two-digit one, as written."""
    compact = text.strip()
    if compact.isascii() and compact.isdigit():
        if len(compact) not in (6, 8):
            return None
        parts = [compact[:4], compact[4:6], *([compact[6:]] if len(compact) == 8 else [])]
        has_year = True
    else:
        parts = _DATE_PART.findall(text)
        # A year is written first and is the part before 年 (or a four-digit number before - . /).
        has_year = "年" in text or (bool(parts) and len(parts[0]) == 4)
    # A year and a month, perhaps a day; with no year, a month and a day (a month alone says nothing).
    if not (2 <= len(parts) <= 3 if has_year else len(parts) == 2):
        return None
    numbers = [_part_value(p) for p in parts]
    year = numbers.pop(0) if has_year else None
    month, day = numbers[0], (numbers[1] if len(numbers) == 2 else None)
    if month is None or (len(numbers) == 2 and day is None) or (has_year and year is None):
        return None
    if year is not None and len(parts[0]) == 4 and not 1880 <= year <= 2099:
        return None
    try:
        # A year given in two digits, or none: 2000, a leap year, so 2月29日 stands.
        dt.date(year if year is not None and year >= 1000 else 2000, month, day or 1)
    except ValueError:
        return None
    return year, month, day


# Surnames: every single-character surname of the 百家姓 (in its order), then those of the 2020 census
# frequency list that it lacks (付 肖 覃 …), so rarer surnames (桂, 隋, 冼, 亓 …) are recognised too.
SINGLE_SURNAMES = frozenset(
    "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨朱秦尤许何吕施张孔曹严华金魏陶姜戚谢邹喻柏水窦章云苏潘葛奚范彭郎"
    "鲁韦昌马苗凤花方俞任袁柳酆鲍史唐费廉岑薛雷贺倪汤滕殷罗毕郝邬安常乐于时傅皮卞齐康伍余元卜顾孟平黄"
    "和穆萧尹姚邵湛汪祁毛禹狄米贝明臧计伏成戴谈宋茅庞熊纪舒屈项祝董梁杜阮蓝闵席季麻强贾路娄危江童颜郭"
    "梅盛林刁钟徐邱骆高夏蔡田樊胡凌霍虞万支柯昝管卢莫经房裘缪干解应宗丁宣贲邓郁单杭洪包诸左石崔吉钮龚"
    "程嵇邢滑裴陆荣翁荀羊於惠甄曲家封芮羿储靳汲邴糜松井段富巫乌焦巴弓牧隗山谷车侯宓蓬全郗班仰秋仲伊宫"
    "宁仇栾暴甘钭厉戎祖武符刘景詹束龙叶幸司韶郜黎蓟薄印宿白怀蒲邰从鄂索咸籍赖卓蔺屠蒙池乔阴鬱胥能苍双"
    "闻莘党翟谭贡劳逄姬申扶堵冉宰郦雍卻璩桑桂濮牛寿通边扈燕冀郏浦尚农温别庄晏柴瞿阎充慕连茹习宦艾鱼容"
    "向古易慎戈廖庾终暨居衡步都耿满弘匡国文寇广禄阙东欧殳沃利蔚越夔隆师巩厍聂晁勾敖融冷訾辛阚那简饶空"
    "曾毋沙乜养鞠须丰巢关蒯相查后荆红游竺权逯盖益桓公晋楚闫法汝鄢涂钦岳帅缑亢况郈商牟佘佴墨哈"
    "谯笪年爱阳佟言福"
    "付兰揭植练肖苑苟覃迟邝麦芦隋丛官南原栗谌粟冼楼盘位仝区海豆朴漆卿初门敬来普鹿邸辜阿母亓修赫鲜战玉"
    "银宾呼但尉冶斯檀衣信展智奉尧闭由"
)
# Common compound surnames (复姓). The name operator keeps these two characters, so the list stays with
# the ones in everyday use: a rare one (谷梁) would expose a given-name character of 谷 + 梁X.
COMPOUND_SURNAMES = frozenset(
    (
        "欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙",
        "宇文", "司徒", "司空", "夏侯", "轩辕", "令狐", "钟离", "端木", "独孤", "南宫",
        "西门", "百里", "呼延", "万俟", "闻人", "澹台", "公冶", "太史", "申屠", "宗政",
        "濮阳", "淳于", "单于", "赫连", "东郭", "拓跋", "段干", "左丘", "第五", "梁丘",
    )
)  # fmt: skip
# Every compound surname of the 百家姓 (recognition only: a name is found either way, this lets a
# four-character name such as 公羊子明 be taken whole).
ALL_COMPOUND_SURNAMES = COMPOUND_SURNAMES | frozenset(
    (
        "公羊", "太叔", "仲孙", "鲜于", "闾丘", "亓官", "司寇", "仉督", "子车", "颛孙",
        "巫马", "公西", "漆雕", "乐正", "壤驷", "公良", "夹谷", "宰父", "谷梁", "归海",
        "羊舌", "微生", "东门", "南门", "伯赏", "有琴",
    )
)  # fmt: skip
