"""Recognizers for Chinese personal data: patterns, context words and verdicts, presidio-free.

Each recognizer is a small class with class-level patterns and a `validate_result` hook that asks
python-stdnum (or Luhn) for the verdict, the shape of presidio's `PatternRecognizer`. The fast scanner
(`masking.freetext.FreeTextScanner.scan`) compiles them for the standard `re` module; `masking._presidio`
wraps the same objects as presidio recognizers for a stock `AnalyzerEngine`, the reference the fast path
is measured against. Nothing here imports presidio or spaCy: they take about a second of CPU to import,
which every gateway process paid at start for recognizers it never ran through presidio.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from grassroots_common.personal_data import (
    ADDRESS_DETAIL,
    ADDRESS_PLACE,
    CUE_SEP,
    DWELLING,
    MOBILE_IN_NUMERALS,
    PASSPORT_CUE,
    QQ_CUE,
    QQ_NUMBER,
    RESIDENCE_CUE,
    WECHAT_CUE,
    WECHAT_GLUED_CUE,
    WECHAT_GLUED_ID,
    WECHAT_ID,
    WECHAT_OWN_ID,
    is_mobile_in_numerals,
    numerals_to_digits,
)
from grassroots_common.personal_data import PASSPORT as PASSPORT_NUMBER
from masking.detectors import (
    ALL_COMPOUND_SURNAMES,
    SINGLE_SURNAMES,
    birth_date_parts,
    id_checksum_ok,
    is_plausible_id_number,
    is_valid_bank_card,
    is_valid_credit_code,
    is_valid_landline,
    is_valid_mobile,
    is_valid_old_id_number,
)

LANGUAGE = "zh"
# No IGNORECASE: ID check characters, credit codes and plates are upper-case by standard.
FLAGS = re.DOTALL | re.MULTILINE

CN_ID_NUMBER = "CN_ID_NUMBER"
CN_MOBILE = "CN_MOBILE"
CN_LANDLINE = "CN_LANDLINE"
BANK_CARD = "BANK_CARD"
CN_CREDIT_CODE = "CN_CREDIT_CODE"
EMAIL_ADDRESS = "EMAIL_ADDRESS"
CN_LICENCE_PLATE = "CN_LICENCE_PLATE"
CN_WECHAT_ID = "CN_WECHAT_ID"
CN_QQ_NUMBER = "CN_QQ_NUMBER"
PASSPORT = "PASSPORT"
CN_ADDRESS_DETAIL = "CN_ADDRESS_DETAIL"
CN_BIRTH_DATE = "CN_BIRTH_DATE"
PERSON = "PERSON"


@dataclass(frozen=True, slots=True)
class Pattern:
    """A named regular expression and the score of a match (presidio's `Pattern`: name, regex, score)."""

    name: str
    regex: str
    score: float


class Recognizer:
    """One entity type's patterns, context words and verdict.

    ``regex`` of a pattern is written for presidio's engine (the `regex` module, which allows a
    variable-width lookbehind); ``STDLIB`` gives the standard-`re` form where that one does not compile.
    """

    ENTITY: ClassVar[str] = ""
    PATTERNS: ClassVar[tuple[Pattern, ...]] = ()
    CONTEXT: ClassVar[tuple[str, ...]] = ()
    # Pattern name -> (regex for the standard `re` module, group holding the entity) where presidio's
    # pattern needs the `regex` module; the others compile under `re` as they are (group 0).
    STDLIB: ClassVar[dict[str, tuple[str, int | str]]] = {}
    # Of those, the patterns whose lookbehind holds a place of variable length between the cue and the
    # value, so that one cue reaches past a value to the next (家住…十二栋对面三号楼): the standard-`re`
    # form finds the first only. Pattern name -> the value's own regex: where another value follows the
    # first, the fast path runs presidio's own pattern (the `regex` module) on the text.
    REACHING: ClassVar[dict[str, str]] = {}

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def patterns(self) -> tuple[Pattern, ...]:
        return self.PATTERNS

    def validate_result(self, pattern_text: str) -> bool | None:
        """True: the match is the entity (score 1.0); False: it is not (dropped); None: no verdict (the
        pattern's score stands). As presidio's `PatternRecognizer.validate_result`."""
        return None

    @classmethod
    def has_verdict(cls) -> bool:
        return cls.validate_result is not Recognizer.validate_result


class CnIdNumberRecognizer(Recognizer):
    """GB 11643-1999 resident ID numbers (and 15-digit ones of GB 11643-1989); the verdict is
    python-stdnum's `cn.ric.is_valid` for 18 digits, a real birth date and known county for 15."""

    ENTITY = CN_ID_NUMBER
    # In one piece or in the groups people write it in (6-8-4, 6-4-4-4, a space or a hyphen between),
    # as ``grassroots_common.personal_data`` reads typed text; bounded by digits only, so a number glued
    # to letters ("ID310110…", "…1237abc") is still found. The verdict (python-stdnum) keeps it precise.
    PATTERNS = (
        Pattern(
            "cn_id_18",
            r"(?<![0-9])[1-9]\d{5}[ \-]?\d{4}[ \-]?\d{4}[ \-]?\d{3}[\dXx](?![0-9])",
            0.3,
        ),
        # First-generation numbers (GB 11643-1989, 15 digits, YYMMDD, no check character) are still in
        # old household and benefit records; a 6-6-3 grouping is how they were written.
        Pattern("cn_id_15", r"(?<![0-9])[1-9]\d{5}[ \-]?\d{6}[ \-]?\d{3}(?![0-9])", 0.3),
        # A disability certificate's number (残疾人证号) is its holder's ID number followed by the kind
        # (1-7) and the grade (1-4) of disability: twenty characters that hold the whole ID number.
        Pattern("cn_id_disability_cert", r"(?<![0-9])[1-9]\d{16}[\dXx][1-7][1-4](?![0-9])", 0.3),
    )
    CONTEXT = ("身份证", "身份号码", "证件号", "公民身份")

    def __init__(self, *, checksum_only: bool = False) -> None:
        # checksum_only accepts numbers whose check character is right even when stdnum does not know
        # the county code (e.g. synthetic data); the default agrees with python-stdnum exactly.
        self._checksum_only = checksum_only

    def validate_result(self, pattern_text: str) -> bool:
        number = compact_id_number(pattern_text)
        if len(number) == 20:  # a disability certificate: the ID number and two digits
            number = number[:18]
        if len(number) == 15:
            return is_valid_old_id_number(number, known_county=not self._checksum_only)
        if self._checksum_only:
            return id_checksum_ok(number)
        # A known county and a real birth date make it someone's number even when its check character is
        # mistyped: registries hold such numbers, and one served in clear names its resident all the same.
        return is_plausible_id_number(number)


# Words that say an ID number follows. After one of them, the number is taken whatever its check
# character or length: a remark's 身份证310110195703021234 with a mistyped digit is still that resident's
# number, and served in clear (or shown as a bank card, region and last four) when only valid numbers
# counted. A run of 14 to 19 digits (a 15- or 18-character number, one digit short or long) is taken;
# the cn_id operator keeps the region of a 15- or 18-character one and hides anything else whole.
ID_CUES: tuple[str, ...] = (
    "身份证号码",
    "身份证号",
    "身份证",
    "公民身份号码",
    "身份号码",
    "证件号码",
    "证件号",
)
_CUED_ID = r"[0-9](?:[ \-]?[0-9]){13,18}[Xx]?(?![0-9])"


def _after_cue(
    name: str, cue: str, value: str, *, between: str = "", score: float = 0.8
) -> tuple[Pattern, tuple[str, int | str]]:
    """The presidio pattern of ``value`` right after ``cue`` (and what may come ``between``), and its
    standard-`re` form: presidio's `regex` allows the variable-width lookbehind; the standard `re`
    consumes the cue instead and takes the value's group."""
    return (
        Pattern(name, rf"(?<={cue}{CUE_SEP}{between}){value}", score),
        (rf"{cue}{CUE_SEP}{between}(?P<v>{value})", "v"),
    )


_CUED_ID_PATTERN, _CUED_ID_STDLIB = _after_cue(
    "cn_id_after_cue", f"(?:{'|'.join(ID_CUES)})", _CUED_ID, score=0.3
)


class CnIdNumberAfterCueRecognizer(Recognizer):
    """An ID number right after a word naming one (身份证、证件号码…), valid or not (see ``ID_CUES``)."""

    ENTITY = CN_ID_NUMBER
    PATTERNS = (_CUED_ID_PATTERN,)
    STDLIB: ClassVar[dict[str, tuple[str, int | str]]] = {"cn_id_after_cue": _CUED_ID_STDLIB}

    def validate_result(self, pattern_text: str) -> bool:
        return True


# A WeChat id, a passport number or a house number is taken only right after the word that says what it
# is; the cues and shapes are ``grassroots_common.personal_data``'s, which refuses the same in typed text.


_WECHAT_PATTERN, _WECHAT_STDLIB = _after_cue("wechat_after_cue", WECHAT_CUE, WECHAT_ID)
_PASSPORT_PATTERN, _PASSPORT_STDLIB = _after_cue("passport_after_cue", PASSPORT_CUE, PASSPORT_NUMBER)
_QQ_PATTERN, _QQ_STDLIB = _after_cue("qq_after_cue", QQ_CUE, QQ_NUMBER)
_ADDRESS_PATTERN, _ADDRESS_STDLIB = _after_cue(
    "address_after_cue", RESIDENCE_CUE, ADDRESS_DETAIL, between=ADDRESS_PLACE
)


class WeChatIdAfterCueRecognizer(Recognizer):
    """A WeChat id right after a word naming one (微信号：wang_jg88, 微信 zhangsan-1990, vx：wang_jg88), or
    typed onto vx/wx (加vxwang88), and WeChat's own ids (wxid_…), which need no cue."""

    ENTITY = CN_WECHAT_ID
    PATTERNS = (
        _WECHAT_PATTERN,
        Pattern("wechat_glued", rf"(?<={WECHAT_GLUED_CUE}){WECHAT_GLUED_ID}", 0.8),
        Pattern("wechat_own_id", WECHAT_OWN_ID, 0.85),
    )
    STDLIB: ClassVar[dict[str, tuple[str, int | str]]] = {"wechat_after_cue": _WECHAT_STDLIB}


class QQNumberAfterCueRecognizer(Recognizer):
    """A QQ number right after QQ or 扣扣 (QQ：123456789, QQ号12345678, 扣扣 87654321)."""

    ENTITY = CN_QQ_NUMBER
    PATTERNS = (_QQ_PATTERN,)
    STDLIB: ClassVar[dict[str, tuple[str, int | str]]] = {"qq_after_cue": _QQ_STDLIB}


class PassportAfterCueRecognizer(Recognizer):
    """A passport number right after a word naming one (护照号：E12345678, 护照EA1234567)."""

    ENTITY = PASSPORT
    PATTERNS = (_PASSPORT_PATTERN,)
    STDLIB: ClassVar[dict[str, tuple[str, int | str]]] = {"passport_after_cue": _PASSPORT_STDLIB}


class AddressDetailAfterCueRecognizer(Recognizer):
    """The numbered part of where someone lives, after a word saying so (住3号楼2单元501室, 家住幸福路
    88弄12号, 住址：东风村3组12号, 住三号楼二单元五零一室, 住在十二栋): the house number, not the road,
    village or group before it; and a dwelling's number with no such word (3号楼2单元501室, 二单元五零一)."""

    ENTITY = CN_ADDRESS_DETAIL
    PATTERNS = (_ADDRESS_PATTERN, Pattern("dwelling", DWELLING, 0.6))
    STDLIB: ClassVar[dict[str, tuple[str, int | str]]] = {"address_after_cue": _ADDRESS_STDLIB}
    REACHING: ClassVar[dict[str, str]] = {"address_after_cue": ADDRESS_DETAIL}


def compact_id_number(text: str) -> str:
    """An ID number as found in text, without the spaces or hyphens between its groups."""
    return text.replace(" ", "").replace("-", "")


class CnMobileRecognizer(Recognizer):
    ENTITY = CN_MOBILE
    PATTERNS = (
        Pattern("cn_mobile", r"(?<![0-9])(?:(?:\+|00)?86[-\s]?)?1[3-9]\d(?:[-\s]?\d{4}){2}(?![0-9])", 0.5),
    )
    CONTEXT = ("手机", "电话", "联系方式", "联系电话")

    def validate_result(self, pattern_text: str) -> bool:
        return is_valid_mobile(pattern_text)


class CnMobileNumeralsRecognizer(Recognizer):
    """A mobile number written in Chinese numerals, or digits and numerals mixed (一三八一二三四五六七八,
    幺三八…, 138一二三四5678, 1三8…; ``grassroots_common.personal_data.MOBILE_IN_NUMERALS``). One in
    digits only is the digit recognizer's; the verdict is the digit mobile's."""

    ENTITY = CN_MOBILE
    PATTERNS = (Pattern("cn_mobile_numerals", MOBILE_IN_NUMERALS, 0.5),)
    CONTEXT = ("手机", "电话", "联系方式", "联系电话")

    def validate_result(self, pattern_text: str) -> bool:
        return is_mobile_in_numerals(pattern_text) and is_valid_mobile(numerals_to_digits(pattern_text))


class CnLandlineRecognizer(Recognizer):
    ENTITY = CN_LANDLINE
    PATTERNS = (
        Pattern("cn_landline", r"(?<![0-9])(?:[(（]0\d{2,3}[)）][-\s]?|0\d{2,3}-)\d{7,8}(?![0-9])", 0.6),
        Pattern("cn_landline_compact", r"(?<![0-9])0\d{10,11}(?![0-9])", 0.3),
        # the local number in groups, as people write it: 021 5961 2345, 0571-8888-8888
        Pattern(
            "cn_landline_grouped",
            r"(?<![0-9])(?:[(（]0\d{2,3}[)）][-\s]?|0\d{2,3}[-\s])\d{3,4}[-\s]\d{4}(?![0-9])",
            0.6,
        ),
    )
    CONTEXT = ("电话", "座机", "固话")

    def validate_result(self, pattern_text: str) -> bool:
        return is_valid_landline(pattern_text)


# A local number without its area code (59612345, 5961 2345: how a resident writes a home phone) is taken
# only right after a word saying it is a phone number: alone, seven or eight digits are as often a count,
# an amount or a date. Mobiles start with 1 and area codes with 0, so neither is read as one.
LANDLINE_CUE = r"(?:(?:电话|座机|固话)(?:号码|号)?)"
_LOCAL_LANDLINE = r"[2-9]\d{2,3}[-\s]?\d{4}(?![0-9])"
_LOCAL_LANDLINE_PATTERN, _LOCAL_LANDLINE_STDLIB = _after_cue(
    "cn_landline_local_after_cue", LANDLINE_CUE, _LOCAL_LANDLINE
)


class CnLocalLandlineAfterCueRecognizer(Recognizer):
    """A landline's local number with no area code right after a word naming a phone (家中电话59612345,
    座机：5961 2345); masked as the landline operator masks it in a landline field (******45)."""

    ENTITY = CN_LANDLINE
    PATTERNS = (_LOCAL_LANDLINE_PATTERN,)
    STDLIB: ClassVar[dict[str, tuple[str, int | str]]] = {
        "cn_landline_local_after_cue": _LOCAL_LANDLINE_STDLIB
    }

    def validate_result(self, pattern_text: str) -> bool:
        return True


# Cue words before a name: roles in a household or a case, and kin terms as written in remarks
# (其子高慧、其妻…, 紧急联系人：桂秀珍).
LEFT_CUES: tuple[str, ...] = (
    "户主", "姓名", "联系人", "申请人", "村民", "居民", "本人", "家属", "配偶", "丈夫", "妻子", "父亲",
    "母亲", "儿子", "女儿", "孙子", "孙女", "老人", "监护人", "经办人", "代办人", "委托人", "患者",
    "租户", "亲属", "邻居", "低保户", "困难户", "代理人", "负责人", "网格员",
    "其子", "其女", "其妻", "其夫", "其父", "其母", "其兄", "其弟", "其姐", "其妹", "其孙", "儿媳", "女婿",
    # who a resident is in village work: 老党员孙德胜、退役军人王海、五保户李根、其老伴陈桂兰
    "党员", "退役军人", "五保户", "残疾人", "老伴",
    # more kin, as remarks name who helps or stands in: 外孙王浩、其侄子马超代办、哥哥张强、弟弟张勇
    "外孙", "侄子", "侄女", "外甥", "哥哥", "弟弟", "姐姐", "妹妹",
    # kin of the person just named: 户主王伟之妻李娜
    "之妻", "之夫", "之子", "之女", "之父", "之母",
    # who a person is in a payment, a case or a benefit: 户名：王小明、持卡人李秀英、投诉人王强来电
    "户名", "持卡人", "开户人", "收款人", "领款人", "领取人", "签收人", "受益人", "当事人", "投诉人",
    "举报人", "来访人", "来电人", "反映人", "求助人", "赡养人", "抚养人", "扶养人", "承包人", "救助对象",
    "帮扶对象", "低保对象", "监测对象", "服务对象", "特困人员",
    # who signs, vouches for or checks a record: 证明人：李强、审核人：王芳
    "证明人", "见证人", "担保人", "介绍人", "推荐人", "申报人", "填表人", "填报人", "调查人", "核查人",
    "审核人", "审批人", "复核人", "记录人",
)  # fmt: skip
#: Words that begin the next item of a remark typed straight after a name or a date (户主林玉梅本人电话…、
#: 村民高秀强地址…、其子王强户主李伟、1981.3.1生本人…): a cue word of a name, a dwelling, a contact or a
#: document. Longest first, so that an alternation reads 联系人 before 联系.
NEXT_ITEM_WORDS: tuple[str, ...] = tuple(
    sorted(
        {
            *LEFT_CUES,
            *("地址", "住址", "家住", "现住", "户籍", "户口", "电话", "手机", "座机", "联系", "微信"),
            *("邮箱", "卡号", "银行卡", "账号", "身份证", "证件", "车牌", "护照"),
            # the person's own facts, as household records list them (户主王小明性别男、其子陈强年龄12岁)
            *("出生", "生日", "生于", "年龄", "性别", "民族", "籍贯", "学历", "文化程度", "职业"),
            *("现年", "今年", "去年"),
        },
        key=lambda word: (-len(word), word),
    )
)
_NEXT_ITEM = "|".join(NEXT_ITEM_WORDS)


# A birth date is personal information (GB/T 35273-2020 Annex A; PIPL art. 4), and the masking profiles
# never show one whole: standard shows the year, strict and pseudonymised an age band. In a remark a date
# is a birth date only where a word saying so stands right before it (出生于、生于、生日、出生日期、
# 出生年月、生辰…, then at most a colon, 是/为 or a space, and 农历/公历) or right after it (…出生、…生、
# …生人、…生日):
# a visit date, a deadline or a review year (2024年3月5日走访、2023年度低保复核), or a date whose cue is in
# another clause, stays as written. Dates are read as people write them: 1948年3月12日, 1956-07-08,
# 1950.1.2, 19480312 (after a cue word only), two-digit years (48年3月), Chinese numerals
# (一九四八年三月十二日, 腊月初八), with or without the day, and a month and day with no year (生日：3月12日).
_CN_DIGIT = "〇零一二三四五六七八九"
_YEAR = rf"(?:(?<![0-9])(?:1[89]|20)\d{{2}}|(?<![{_CN_DIGIT}])[一二][{_CN_DIGIT}]{{3}})"
_SHORT_YEAR = rf"(?:(?<![0-9])\d{{2}}|(?<![{_CN_DIGIT}])[{_CN_DIGIT}]{{2}})"
_MONTH = r"(?:1[0-2]|0?[1-9]|十[一二]?|[一二三四五六七八九]|正|腊|冬)"
_ONE_TO_NINE = "一二三四五六七八九"
_DAY_IN_NUMERALS = (
    rf"(?:三十一?|二十[{_ONE_TO_NINE}]?|十[{_ONE_TO_NINE}]?|廿[{_ONE_TO_NINE}]?|卅|初[{_ONE_TO_NINE}十]"
    rf"|[{_ONE_TO_NINE}])"
)
# A day in digits or numerals, 日 or 号 after it or not (出生于1948年3月12，: the day is hidden all the same).
_DAY = (
    rf"(?:(?:[12]\d|3[01]|0?[1-9])(?![0-9])(?:\s?[日号])?"
    rf"|{_DAY_IN_NUMERALS}(?![{_CN_DIGIT}十])(?:\s?[日号])?)"
)
_DATE_IN_WORDS = rf"(?:{_YEAR}|{_SHORT_YEAR})\s?年\s?{_MONTH}\s?月(?:\s?{_DAY})?"
_MONTH_AND_DAY = rf"(?<![0-9{_CN_DIGIT}十年])(?<!年\s){_MONTH}\s?月\s?{_DAY}"
_DATE_IN_DIGITS = (
    r"(?<![0-9.\-/])(?:1[89]|20)\d{2}[-./](?:1[0-2]|0?[1-9])(?:[-./](?:[12]\d|3[01]|0?[1-9]))?"
    r"(?![0-9]|[-./]\d)"
)
_DATE_COMPACT = r"(?<![0-9])(?:1[89]|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])?(?![0-9])"
#: Words right before a birth date (longest first: 出生日期 is read whole, not as 出生).
BIRTH_CUE = r"(?:出生日期|出生年月日|出生年月|出生时间|出生于|出生在|出生|生于|生日|生辰|诞生于)"
#: Words right after one: 出生 (not 出生地、出生证、出生医学证明、出生登记、出生人口、出生率), 生日,
#: and 生 alone or as 生人、生的、生于 (not 生效、生病、生活…) or before a conjunction or another item's word
#: (1974年生手机…, typed without a comma).
AFTER_BIRTH = (
    r"(?:出生(?![地证医登率]|人口)|生日|生(?:人|的|于|(?![\u4e00-\u9fff])"
    rf"|(?={_NEXT_ITEM}|[和或与及])))"
)
_CALENDAR = r"(?:农历|阴历|旧历|公历|阳历)?\s?"
_BIRTH_BEFORE_PATTERN, _BIRTH_BEFORE_STDLIB = _after_cue(
    "birth_date_after_cue",
    BIRTH_CUE,
    rf"(?:{_DATE_IN_WORDS}|{_MONTH_AND_DAY}|{_DATE_IN_DIGITS}|{_DATE_COMPACT})",
    between=_CALENDAR,
)


class CnBirthDateRecognizer(Recognizer):
    """A resident's birth date in a remark, tied to a word saying it is one right before or after it
    (该户主出生于1948年3月12日、生日：1956-07-08、出生日期 1950.1.2、1948年3月12日出生、于一九四八年三月十二日
    出生); the verdict is that it is a calendar date (no 13月, no 2月30日)."""

    ENTITY = CN_BIRTH_DATE
    PATTERNS = (
        _BIRTH_BEFORE_PATTERN,
        Pattern(
            "birth_date_before_cue",
            rf"(?:{_DATE_IN_WORDS}|{_MONTH_AND_DAY}|{_DATE_IN_DIGITS})(?=\s?{AFTER_BIRTH})",
            0.8,
        ),
    )
    STDLIB: ClassVar[dict[str, tuple[str, int | str]]] = {"birth_date_after_cue": _BIRTH_BEFORE_STDLIB}
    CONTEXT = ("出生", "生日", "生于")

    def validate_result(self, pattern_text: str) -> bool:
        return birth_date_parts(pattern_text) is not None


class BankCardRecognizer(Recognizer):
    ENTITY = BANK_CARD
    # Card numbers are written whole, in groups whose first is four digits or more (6222 0212 3456 7890 128,
    # 622202 1234567890123), or digit by digit: a lone digit before a space and a number (…2002/8/3 6222…)
    # does not start a candidate, which failed its check and hid the card after it from the search.
    PATTERNS = (
        Pattern(
            "bank_card",
            r"(?<![0-9A-Za-z])[1-9](?:\d{3}(?:[-\s]?\d){9,15}|(?:[-\s]\d){12,18})(?![0-9A-Za-z])",
            0.3,
        ),
    )
    CONTEXT = ("银行卡", "卡号", "账号", "账户")

    def validate_result(self, pattern_text: str) -> bool:
        return is_valid_bank_card(pattern_text)


class CnCreditCodeRecognizer(Recognizer):
    """GB 32100-2015 unified social credit codes; verdict from python-stdnum `cn.uscc.is_valid`."""

    ENTITY = CN_CREDIT_CODE
    PATTERNS = (
        Pattern(
            "cn_uscc",
            r"(?<![0-9A-Za-z])[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}(?![0-9A-Za-z])",
            0.3,
        ),
    )
    CONTEXT = ("统一社会信用代码", "信用代码")

    def validate_result(self, pattern_text: str) -> bool:
        return is_valid_credit_code(pattern_text)


class EmailRecognizer(Recognizer):
    ENTITY = EMAIL_ADDRESS
    PATTERNS = (
        Pattern(
            "email",
            r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
            0.85,
        ),
    )
    CONTEXT = ("邮箱", "电子邮件", "email")


_PROVINCE_ABBR = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"


class CnLicencePlateRecognizer(Recognizer):
    """GA 36-2018 plates: province abbreviation, issuing-office letter, 5 characters (6 for new energy)."""

    ENTITY = CN_LICENCE_PLATE
    PATTERNS = (
        Pattern(
            "cn_plate",
            rf"[{_PROVINCE_ABBR}][A-HJ-NP-Z][·\-\s]?"
            r"(?:[DF][A-HJ-NP-Z0-9]{5}|\d{5}[DF]|[A-HJ-NP-Z0-9]{4}[A-HJ-NP-Z0-9挂学警港澳])(?![A-Za-z0-9])",
            0.7,
        ),
    )
    CONTEXT = ("车牌", "车辆", "牌照")

    def validate_result(self, pattern_text: str) -> bool | None:
        return True if any(c.isdigit() for c in pattern_text) else None


# Surnames that are also everyday words right after a cue (户主来电、本人和家属、联系人都…) are not taken
# as a surname there: their false alarms would outnumber the people found.
_NOT_A_SURNAME_HERE = frozenset("和都从家来那能但由经")
_SURNAME = (
    "(?:"
    + "|".join(sorted(ALL_COMPOUND_SURNAMES))
    + "|["
    + "".join(sorted(SINGLE_SURNAMES - _NOT_A_SURNAME_HERE))
    + "])"
)
# Characters that end a clause or are function words never start or continue a given name; nor does 某
# (王某 is how a note names nobody), the adverbial 地 (高兴地说) or 称 (said: 村民郭志称已搬走 names 郭志).
_GIVEN = (
    r"(?:(?![的了是在和与及或等人户家说到把被为有无已未要会对从向也都还就将其该此住系患某地称])"
    r"[\u4e00-\u9fff])"
)
#: Words that come after a cue word or a contact verb and begin with a surname character, but name nobody
#: (居民信息、村民权益、居民强烈要求、村民陆续领取、联系方式、通知单位、走访高龄老人、居民通过12345反映): a
#: name candidate starting with one is not taken, by the scanner nor by the gateway's check of typed text.
NOT_NAMES: tuple[str, ...] = (
    # what residents have and are
    "信息", "权益", "利益", "权利", "安全", "高龄", "年龄", "年纪", "家庭", "居住", "常住", "户籍", "房屋",
    "房子", "车辆", "经济", "费用", "福利", "卫生", "隐私", "公民", "农民", "党员", "成员", "代表", "群体",
    # how and when they act or feel
    "强烈", "普遍", "曾经", "曾多", "多次", "通过", "满意", "同意", "支持", "关心", "习惯", "平时", "经常",
    "常常", "申请", "严重", "信心", "陆续", "连续", "后来", "马上", "终于", "初步", "单独", "万一", "何时",
    "高兴",
    # whom and what a case worker contacts or tells
    "方式", "时间", "单位", "相关", "双方", "全部", "全体", "部分", "本村", "本社区", "后续", "结果", "反馈",
    "意见", "情况", "原因", "经过", "程序", "安排", "公司", "公安", "法院", "司法", "信访", "计生", "卫健",
    "房管", "水务", "银行", "门卫", "楼长", "房东", "党支部", "干部", "公众", "宣传", "公开", "解释", "管理",
    "服务", "平安", "文明", "谈话", "明确", "明显", "能否", "应当", "时候",
    "向村", "向社区", "向街道", "向镇",
    # who, before 同志/先生/女士, is a kind of person and not a name (感谢广大同志、年轻同志、诸位女士)
    "广大", "年轻", "年青", "年长", "年老", "年迈", "单身", "诸位", "包村", "海外", "华侨", "战友", "空巢",
    "劳模", "爱心",
    # a form's field before the sex (性别 女)
    "性别",
    # what a payment or a benefit record says after its cue words (持卡人须知、申报人申报、受益人范围、年度)
    "须知", "申报", "范围", "金额", "养老", "公示", "年审", "季度", "年度",
)  # fmt: skip
HONORIFICS: tuple[str, ...] = ("同志", "先生", "女士", "老人家", "大爷", "大妈", "阿姨")
_LEFT_CUES = "|".join(LEFT_CUES)
_SEP = r"(?:[:：是为叫\s]|\s*[:：]\s*)?"
# After a name in a remark, the words of where or how the person is (其女王燕在外务工、户主张伟已去世、
# 现居…、于2019年…、住3组、系退役军人、患病、就读于…、独居、代办、和其妻…、均已…) end it as surely as
# punctuation does. Not 都: it ends transliterated names (阿不都).
# Any character that is not a Chinese one ends a name as a comma does: a slash, a bar, a quotation mark, a
# dash, an exclamation or question mark (联系人：王国海/13812345678, 户主王伟|低保 were served in clear).
# The word of the next item ends it too (户主林玉梅本人…、村民高秀强地址…、其子王强户主…, which were served
# in clear), as does 之 (户主王伟之妻…). Not the function words (的、是、有…): after a cue word, a word that
# begins with a surname's character is followed by them as often as a name is (村民文化的…、户主王伟的…).
# When a person did what the note says, and how often, typed straight after the name (户主王伟今日外出、
# 村民李峰下午到村委会、村民刘成多次来电、其子王小红今天到村委会办理: nine in ten such names were served in
# clear), end it too. None of them is taken for a name itself (户主上午已到、户主年底已搬走). They end a
# name without keeping a given character from beginning one (监护人王明天 is still a name; 户主王伟正在家
# masks 王伟正, a character too many, nothing too few), and 刚刚 is none of them: it is a given name
# (代办人王刚刚). Of the 2,000 most frequent words of a Chinese dictionary (jieba's) that begin with a
# surname's character, after a cue word, as many are taken before each of these as before 在 or 本人: 1,702.
TIME_WORDS: tuple[str, ...] = (
    "今日", "今天", "昨日", "昨天", "前日", "前天", "明日", "明天", "近日", "近期", "近来", "最近", "日前",
    "目前", "当日", "当天", "上午", "下午", "中午", "晚上", "早上", "凌晨", "傍晚", "本月", "上月", "本周",
    "上周", "年初", "年底", "月初", "月底", "多次", "一直", "长期", "曾经", "仍然", "已经", "正在",
)  # fmt: skip
_CUE_WORDS = rf"同志|先生|女士|就读|务工|打工|上学|工作|独居|代办|代为|代领|{_NEXT_ITEM}"
# A count of households or people ends a list of names (户主王伟、李娜、张强三户已走访、王伟和李娜两人).
_COUNT = "[一二三四五六七八九十两几][户人家口名位个]"
_RIGHT_CUES = (
    r"[^\u4e00-\u9fff]|[在已现于住系患和与及或均病称家之]|$"
    rf"|{_CUE_WORDS}|{'|'.join(TIME_WORDS)}|{_COUNT}"
)
_NOT_A_NAME = rf"(?!{'|'.join(sorted({*NOT_NAMES, *TIME_WORDS}, key=lambda word: (-len(word), word)))})"
# A given character never begins a word that ends a name: 户主王伟出生于… names 王伟, not 王伟出, and
# 同时电话138… names nobody (时 is a surname, 电话 no given name).
_NAME = rf"{_NOT_A_NAME}{_SURNAME}(?!{_CUE_WORDS}){_GIVEN}(?:(?!{_CUE_WORDS}){_GIVEN})?"
# What a person said or did in the matter (邻居王秀英反映…、村民郭春刚称…、申请、领取…) ends a name too, but
# only a full one: a single surname and two characters, or a compound surname and one or two. A surname
# character and one more before such a verb is as often a word as a two-character name (村民年前申请、
# 户主原本同意、居民高度评价: in 13,000 probes of a cue, an adverb and a verb, taking them flagged 3,848).
_ACTS = r"反映|来电|来访|表示|称|咨询|申请|要求|提出|领取|签字|签收|同意|确认|说"
_COMPOUND = "|".join(sorted(ALL_COMPOUND_SURNAMES))
_SINGLE = "[" + "".join(sorted(SINGLE_SURNAMES - _NOT_A_SURNAME_HERE)) + "]"
_FULL_NAME = rf"{_NOT_A_NAME}(?:(?:{_COMPOUND}){_GIVEN}{{1,2}}|{_SINGLE}{_GIVEN}{{2}})"
# A name after a cue word: one a right cue ends, or a full one before what the person did (one pattern, so
# the text is searched for the cue words once).
_AFTER_CUE = rf"(?:{_NAME}(?={_RIGHT_CUES})|{_FULL_NAME}(?={_ACTS}))"
# Names of Uyghur, Kazakh and other minority residents as written in Chinese: transliterated parts
# joined by an interpunct (阿依古丽·买买提), with no dictionary surname to anchor them; the dot is.
# Their parts take any character a given name may, and 都 (阿不都); each part ends at the first place a
# name ends anyway: a right cue (电话…), a function word, anything not a Chinese character.
NAME_DOT = "[·•・‧]"
_PART = r"(?:(?![的了是在和与及或等人户说到把被为有无已未要会对从向也还就将其该此])[\u4e00-\u9fff])"
_DOTTED_NAME = (
    rf"{_PART}{{1,6}}{NAME_DOT}{_PART}{{1,8}}?(?:{NAME_DOT}{_PART}{{1,8}}?)?(?:(?={_RIGHT_CUES})|(?!{_PART}))"
)


# A name before an honorific starts a clause, or follows a conjunction, a contact word typed straight
# before it (或覃军建同志、电话马军华先生), or what a case note does to or with the person: the verbs and
# prepositions of reaching, visiting, thanking or acting for someone (已通知王伟先生、慰问王建国同志、
# 感谢李娜女士、请王伟先生到村委会、由王伟同志代领、经李娜女士同意, which were served in clear). After any
# other Chinese character where the name starts is not known, nor after a digit, where a unit follows
# (2017年翻修，座机…: 年 is a surname). Each lookbehind holds words of one length (the standard `re` of
# the fast path takes no other).
_HONOURED_AFTER_ONE = "或和与及、请由经给对向让叫找被把将跟同替为帮陪"
_HONOURED_AFTER_TWO = (
    "电话", "手机", "微信", "联系", "通知", "告知", "告诉", "转告", "感谢", "谢谢", "慰问", "看望", "探望",
    "走访", "拜访", "回访", "约谈", "询问", "答复", "陪同", "帮助", "协助", "委托", "邀请", "致电", "提醒",
    "督促", "动员", "劝导", "接待", "照顾", "护送", "接送", "指导", "表扬", "转交", "交给", "送给", "发给",
    "证明", "同意", "推荐", "批准", "认定", "确认", "核实", "表彰", "任命", "聘请",
)  # fmt: skip
# (A two-character word's last character is tested first: it fails at most positions at once.)
_HONOURED_TWO_LAST = "".join(sorted({word[-1] for word in _HONOURED_AFTER_TWO}))
_BEFORE_HONORED_NAME = (
    rf"(?:(?<![\u4e00-\u9fff0-9])|(?<=[{_HONOURED_AFTER_ONE}])"
    rf"|(?<=[{_HONOURED_TWO_LAST}])(?<={'|'.join(_HONOURED_AFTER_TWO)}))"
)


# What after a name says a person is meant as surely as an honorific does (已与张建国本人核实、张建国、李秀英
# 夫妇、张三丰（户主），男、王秀英，女，汉族、王小明之女王丽代领): 本人, 夫妇, 之 and a kin word, a role in
# brackets, or the sex written as household records write it.
# A cue word is no name before them (居民本人同意、村民同志), nor a surname and a form of address (王老太，
# 身份证号码…; 陈阿婆本人).
_NOT_A_CUE = (
    rf"(?!{_LEFT_CUES}|{_SURNAME}(?:老太|老汉|阿婆|阿公|阿姨|阿伯|大爷|大妈|大娘|大伯|大叔|奶奶|爷爷|婆婆))"
)
# The first character of a surname, tested first: these patterns' other tests (the contexts, the words
# that are no names) are long alternations, which every other position of a text then skips.
_SURNAME_START = (
    "(?=["
    + "".join(sorted({*(SINGLE_SURNAMES - _NOT_A_SURNAME_HERE), *(s[0] for s in ALL_COMPOUND_SURNAMES)}))
    + "])"
)
#: A name in the honorific's contexts, the patterns below add what must follow it.
_NAME_IN_CONTEXT = rf"{_BEFORE_HONORED_NAME}{_NOT_A_CUE}{_NAME}"
PERSON_AFTER = rf"本人|夫妇|之[妻夫子女父母]|[（(](?:{_LEFT_CUES})[）)]|[，,、\s]?[男女](?![\u4e00-\u9fff])"
# A contact item typed right after a name ties the two together (王小明13812345678、王小明 身份证…、
# 王小明电话…、王小明（110102…）): a mobile, an ID number, or the word of a phone or an ID document, after at
# most a space and a comma or a colon, or in brackets. In the honorific's contexts.
CONTACT_AHEAD = (
    r"(?:联系电话|联系方式|电话|手机|身份证|座机|(?:\+?86[-\s]?)?1[3-9]\d(?:[-\s]?\d{4}){2}(?![0-9])"
    r"|[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![0-9]))"
)


# The names after the first in a list after a cue word (走访户主王伟、李娜、张强; 联系人王伟和李娜; 其子王强、
# 王刚均在外务工): the first is the cue's, and each one after a 、 or a conjunction is a name as surely,
# ending where a name after a cue ends. Only the enumeration comma and 和/与/及/或 join: after a comma a new
# clause begins as often as a name (户主王伟，家中三口人). A cue word is no name there, and ends the list
# (户主王伟和孙女同住).
# Of the same 2,000 dictionary words, as many are taken in a list as right after a cue word (1,702).
_LIST_JOINT = "[、和与及或]"
_LISTED_NAME = rf"(?!{_LEFT_CUES}){_NAME}(?={_RIGHT_CUES})"
_NAMES_BEFORE = rf"(?:{_LEFT_CUES}){_SEP}{_NAME}(?:{_LIST_JOINT}(?!{_LEFT_CUES}){_NAME}){{0,8}}{_LIST_JOINT}"


class ChineseNameRecognizer(Recognizer):
    """Person names: a dictionary surname + 1-2 characters, anchored by a context cue (户主、联系人、
    其子…) before it, or an honorific (同志、先生…) after it. The blank zh pipeline has no NER model."""

    ENTITY = PERSON
    PATTERNS = (
        Pattern("cn_name_left_cue", rf"(?<=(?:{_LEFT_CUES}){_SEP}){_AFTER_CUE}", 0.85),
        Pattern("cn_name_dotted", rf"(?<=(?:{_LEFT_CUES}){_SEP}){_DOTTED_NAME}", 0.85),
        Pattern("cn_name_listed", rf"(?<={_NAMES_BEFORE}){_LISTED_NAME}", 0.85),
        Pattern(
            "cn_name_honorific",
            rf"{_SURNAME_START}{_NAME_IN_CONTEXT}(?={'|'.join(HONORIFICS)})",
            0.7,
        ),
        Pattern(
            "cn_name_person_after",
            rf"{_SURNAME_START}{_NAME_IN_CONTEXT}(?={PERSON_AFTER})",
            0.7,
        ),
        Pattern(
            "cn_name_before_contact",
            # (the contact within reach of a name's end first: most positions fail it at once)
            rf"{_SURNAME_START}(?=[\u4e00-\u9fff]{{2,4}}[\s，,：:（(]{{0,3}}[联电手身座1-9+])"
            rf"{_NAME_IN_CONTEXT}(?<![村庄镇乡屯寨组])"
            rf"(?=\s?[，,：:]?\s?{CONTACT_AHEAD}|[（(]{CONTACT_AHEAD})",
            0.7,
        ),
    )
    # The left-cue lookbehind has variable width, which presidio's `regex` engine allows and the
    # standard `re` does not: the fast path consumes the cue instead and takes group "v". The two find
    # the same names unless one name's characters are themselves the next name's cue (tested).
    STDLIB: ClassVar[dict[str, tuple[str, int | str]]] = {
        "cn_name_left_cue": (rf"(?:{_LEFT_CUES}){_SEP}(?P<v>{_AFTER_CUE})", "v"),
        "cn_name_dotted": (rf"(?:{_LEFT_CUES}){_SEP}(?P<v>{_DOTTED_NAME})", "v"),
        # The first listed name after the cue's own; where another follows, presidio's pattern (REACHING).
        "cn_name_listed": (
            rf"(?:{_LEFT_CUES}){_SEP}{_NAME}{_LIST_JOINT}(?P<v>{_LISTED_NAME})",
            "v",
        ),
    }
    REACHING: ClassVar[dict[str, str]] = {"cn_name_listed": rf"{_LIST_JOINT}{_LISTED_NAME}"}
    CONTEXT = ("姓名", "户主", "联系人")


def build_recognizers(*, checksum_only_ids: bool = False) -> list[Recognizer]:
    return [
        CnIdNumberRecognizer(checksum_only=checksum_only_ids),
        CnIdNumberAfterCueRecognizer(),
        CnCreditCodeRecognizer(),
        BankCardRecognizer(),
        CnMobileRecognizer(),
        CnMobileNumeralsRecognizer(),
        CnLandlineRecognizer(),
        CnLocalLandlineAfterCueRecognizer(),
        EmailRecognizer(),
        CnLicencePlateRecognizer(),
        WeChatIdAfterCueRecognizer(),
        QQNumberAfterCueRecognizer(),
        PassportAfterCueRecognizer(),
        AddressDetailAfterCueRecognizer(),
        CnBirthDateRecognizer(),
        ChineseNameRecognizer(),
    ]
