"""Personal data in text people type: reasons, notes, complaint summaries, review comments.

Such text goes into the audit log and into case files, where personal data must never be kept in plain text
(PIPL Art. 51). :func:`personal_data_in` is the one check every library applies to it before storing it;
the gateway adds the free-text scanner's findings (names after a cue word, licence plates) on top.

What people type is not what a validator expects, so the text is first folded the way it would be read:
full-width digits and letters become ASCII (NFKC), and a number written in the groups people use
(``138 1234 5678``, ``110105-19491231-002X``) is read as one number. The shapes are then refused
whatever their check character: a mistyped ID number is still someone's ID number.

:func:`looks_like_identifier` is the narrower tripwire for text the system itself writes into an audit
event (actor ids, codes, details): only a valid GB 11643 ID number or a mainland mobile number, written in
one piece or in the usual groups, so that timestamps, counts and codes are never mistaken for either.

The shapes that only a word before them makes personal data (a WeChat id after 微信号/vx, a passport
number after 护照号, a house number after 家住/住址) and mobiles written in Chinese numerals are defined
here once, as regular-expression text: :func:`personal_data_in` refuses them in typed text, and the
response scanner's recognizers (``masking.recognizers``) are built from the same text to mask them in
remarks, so what a cadre never sees in a remark is also never typed into a kept text.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

# A number may be written in one piece or in the groups people use, with a space or a hyphen between
# groups; only those groupings are read as one number, so a work-order number like "12345-2026-11-0042"
# is not taken for a 15-digit ID. In typed text a number may touch letters ("ID110105...",
# "Tel13812345678"), so the shapes that are personal data for sure are bounded by digits only; the looser
# ones (15 digits, telephone, card) by hex digits too, so a pasted request or trace id is not taken for one.
_S = r"[ \-]?"
_ID_18 = re.compile(rf"(?<![0-9])[1-9]\d{{5}}{_S}\d{{4}}{_S}\d{{4}}{_S}\d{{3}}[0-9Xx](?![0-9])")
_MOBILE = re.compile(rf"(?<![0-9])(?:\+?86{_S})?1[3-9]\d{_S}\d{{4}}{_S}\d{{4}}(?![0-9])")
_ID_15 = re.compile(rf"(?<![0-9A-Fa-f])[1-9]\d{{5}}{_S}\d{{6}}{_S}\d{{3}}(?![0-9A-Fa-f])")
_LANDLINE = re.compile(rf"(?<![0-9A-Fa-f])0[1-9]\d{{1,2}}{_S}[2-9]\d{{2,3}}{_S}\d{{4}}(?![0-9A-Fa-f])")
_CARD = re.compile(rf"(?<![0-9A-Fa-f])[1-9]\d{{3}}(?:{_S}\d{{4}}){{3}}(?:{_S}?\d{{1,3}})?(?![0-9A-Fa-f])")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")

# The narrow tripwire: a number in one piece or in its usual groups (3-4-4 mobile, 6-8-4 ID number),
# bounded by letters too, so that hex digests, UUIDs and refs never match.
_BOUNDARY_L = r"(?<![0-9A-Za-z])"
_BOUNDARY_R = r"(?![0-9A-Za-z])"
_ID_GROUPED = re.compile(_BOUNDARY_L + r"[1-9]\d{5}[ \-]?\d{8}[ \-]?\d{3}[0-9Xx]" + _BOUNDARY_R)
_MOBILE_GROUPED = re.compile(r"(?<![0-9A-Za-z])(?:\+?86[- ]?)?1[3-9]\d[ \-]?\d{4}[ \-]?\d{4}" + _BOUNDARY_R)

# -- shapes shared with the response scanner (masking.recognizers builds its recognizers from these) ---

#: Digits written as Chinese numerals, as hotline and village clerks type a number read out on the phone
#: (一三八一二三四五六七八, 幺三八…: 幺 is how 1 is said in numbers, 两 how 2 sometimes is; 〇 and 零 are 0).
NUMERALS: Final = "〇零一幺二两三四五六七八九"
_NUMERAL_DIGITS: Final = str.maketrans(NUMERALS, "0011223456789")
#: A mobile number written in Chinese numerals, or in digits and numerals mixed (138一二三四5678,
#: 1三8…): eleven of them, 1[3-9] first, perhaps in 3-4-4 groups, not inside a longer run. A match
#: holding no numeral at all is a mobile in digits, which the digit shapes find; ordinary text
#: (二〇二四年、三组、五口人、一千二百元) never holds eleven numerals or digits in a row.
MOBILE_IN_NUMERALS: Final = (
    rf"(?<![{NUMERALS}0-9])[1一幺][3-9三四五六七八九][{NUMERALS}0-9]"
    rf"(?:[-\s]?[{NUMERALS}0-9]{{4}}){{2}}(?![{NUMERALS}0-9])"
)
#: What may stand between a cue word and its value: nothing, a colon, 是/为/叫 or a space.
CUE_SEP: Final = r"(?:[:：是为叫\s]|\s*[:：]\s*)?"
# A WeChat id or a passport number has no check character nor a shape that sets it apart from codes,
# order numbers or words: an explicit cue is what says whose contact or document it is (PIPL art. 28: an
# identity document number is sensitive personal information). Cues are written in Chinese (微信号, V信)
# and, as people type them, in Latin letters (vx, wx, weixin, wechat, any case): a Latin cue is a word of
# its own (not inside "wxyz") followed by a colon or 号 (vx：wang_jg88, VX号 wang_jg88), since a Latin
# word after a space ("wechat channel") is more often English than an id. A digit may come right before
# it: a number typed straight before the cue (…101663vx:zhaomin1506) once left the id in clear.
_LATIN_WECHAT = (
    r"(?<![A-Za-z])(?:[VvWw][Xx]|[Ww][Ee][Ii][Xx][Ii][Nn]|[Ww][Ee][Cc][Hh][Aa][Tt])"
    r"(?:(?:号码|账号|号|\s?[Ii][Dd])\s*[:：]?|\s*[:：])"
)
WECHAT_CUE: Final = rf"(?:微信号码|微信账号|微信号|微信[Ii][Dd]|微信|(?<![A-Za-z])[Vv]信号?|{_LATIN_WECHAT})"
#: A WeChat id is 6-20 letters, digits, "_" or "-"; ids set long ago or typed as a phone number start with
#: a digit (a mobile after the cue is a mobile). It ends where those characters end, or before a hyphen
#: where the run is no single id (longer than 20: 微信 lihua1690-627349831485292963, a card typed after it
#: with a hyphen, was served whole); the longest id that fits is taken. A longer run with no hyphen to end
#: an id at (the id and a number typed together: 微信号：liu580440113200609066751) is taken whole: the id
#: is in it, and the numbers in it are found and masked as what they are.
_WECHAT_ID_END = r"(?:(?![-_A-Za-z0-9])|(?=-[A-Za-z0-9]))"
WECHAT_ID: Final = (
    rf"[A-Za-z0-9](?:[-_A-Za-z0-9]{{5,19}}{_WECHAT_ID_END}|[-_A-Za-z0-9]{{20,}}(?![-_A-Za-z0-9]))"
)
#: vx or wx typed straight onto the id (加vxwang88): the id starts with a letter, so a model number (WX2000)
#: is not taken; nor is WeChat's own form (wxid_…), which is :data:`WECHAT_OWN_ID` whole.
WECHAT_GLUED_CUE: Final = r"(?<![A-Za-z0-9])[VvWw][Xx]"
WECHAT_GLUED_ID: Final = rf"(?![Ii][Dd]_)[A-Za-z][-_A-Za-z0-9]{{5,19}}{_WECHAT_ID_END}"
#: The id WeChat gives an account that never chose one, wxid_ and 6-20 letters and digits: it says what it
#: is without any cue.
WECHAT_OWN_ID: Final = r"(?<![-_A-Za-z0-9])wxid_[A-Za-z0-9]{6,20}(?![-_A-Za-z0-9])"
#: A QQ number (Tencent's other messaging account, as common in older records as a WeChat id is now):
#: 5-11 digits, never starting with 0, right after QQ or 扣扣 (QQ：123456789, QQ号12345678); a QQ group's
#: number (QQ群…) and a QQ mailbox (…@qq.com) are not taken.
QQ_CUE: Final = r"(?:(?<![A-Za-z0-9@.])[Qq]{2}(?![A-Za-z.])(?:号码|号)?|扣扣号?)"
QQ_NUMBER: Final = r"[1-9]\d{4,10}(?![0-9])"
#: A passport, or the travel permits residents of the mainland, Hong Kong, Macao and Taiwan hold, whose
#: numbers have the passport's shape (港澳通行证C12345678, 回乡证H12345678, 台胞证…).
PASSPORT_CUE: Final = r"(?:(?:护照|(?:往来)?港澳(?:台)?通行证|台湾通行证|通行证|回乡证|台胞证)(?:号码|号)?)"
#: Chinese passports are a letter or two then 7-8 digits (E12345678, EA1234567, G12345678); other
#: countries' are of the same kind. A letter first keeps dates and counts after the cue (护照 2024…) out.
PASSPORT: Final = r"[A-Za-z]{1,2}[0-9]{6,9}(?![0-9A-Za-z])"
# A house number is where a person lives: personal data (GB/T 35273-2020 Annex A), and the masking
# profile's own address rule shows an address only down to the village (门牌、组号不显示). In free text it
# is taken only after a word saying someone lives there (家住、住址、现居、住…; not 住院、住房、住宿),
# with at most a place name (幸福路、东风村3组) between: a house number with no one living there in the
# text (3组12号门前路灯损坏) is a place, not a person's address. The detail is the numbered part (楼、栋、
# 单元、室、号、弄…, or 3-2-501); what precedes it, down to a village group, is the coarse part and stays.
RESIDENCE_CUE: Final = (
    r"(?:家庭住址|家庭地址|户籍地址|联系地址|现住址|住址|地址|家住|现住地|现住|现居住地|居住地址|居住地|现居住|现居"
    r"|居住在|居住于|居住|住在|住于"
    r"|住(?![院房宿建户]))"
)
#: A place name between the cue and the detail: no punctuation or function word, digits only as a group.
ADDRESS_PLACE: Final = r"(?:[^\d\s，。；：:,;.!！?？、（()）于在已将的了和与及或]|\d{1,3}组){0,16}?"
# Numbers in a house number may be written in Chinese numerals (三号楼二单元五零一室, 十二栋): a count, or a
# room read digit by digit. A part in numerals has its unit, so a numeral after a house number in digits
# (住3号楼三天) is not taken into it; only the room after a unit may go without (二单元五零一).
_UNIT = r"(?:号楼|号院|号|栋|幢|单元|室|弄|层|楼)"
_IN_NUMERALS = r"[〇零一二两三四五六七八九十]{1,5}"
# A number without its unit (幸福路88号501) ends the digits it is part of: a run of digits right after a house
# number is another number (家住幸福路88弄12号13812345678: a mobile), not more of the address, which it
# swallowed, and the address then lost to the mobile it overlapped and was served in clear. A detail ends
# where no digit follows its last digit, or after a unit (12号 before 138…); never before 组 (3组 is a place).
ADDRESS_DETAIL: Final = (
    rf"(?:\d{{1,3}}-\d{{1,3}}-\d{{1,4}}|(?:\d{{1,5}}|{_IN_NUMERALS}){_UNIT}"
    rf"(?:-?\d{{1,5}}(?:{_UNIT}|(?!\d))|{_IN_NUMERALS}{_UNIT}|(?<=单元){_IN_NUMERALS})*)"
    r"(?:(?<=\d)(?![\d组])|(?<!\d)(?!组))"
)
# A dwelling's number says where a household lives without any word before it: a unit and the room in it
# (2单元501室, 二单元五零一), or a building and a room (3号楼501室), in digits or numerals. A building, a
# unit or a group alone (3号楼2单元楼道灯、3组12号门前路灯) is a place, not a home, and is not taken.
_N = rf"(?:\d{{1,5}}|{_IN_NUMERALS})"
_BUILDING = r"(?:号楼|栋|幢)"
DWELLING: Final = (
    rf"(?<![\d〇零一二两三四五六七八九十])(?:(?:{_N}{_BUILDING}-?)?{_N}单元-?{_N}室?|{_N}{_BUILDING}-?{_N}室)"
    rf"(?![\d〇零一二两三四五六七八九十楼层号])"
)

_MOBILE_NUMERALS = re.compile(MOBILE_IN_NUMERALS)
_NUMERAL = re.compile(f"[{NUMERALS}]")
_AFTER_CUE: Final = (
    (
        "wechat_id",
        re.compile(rf"{WECHAT_CUE}{CUE_SEP}{WECHAT_ID}|{WECHAT_OWN_ID}|{WECHAT_GLUED_CUE}{WECHAT_GLUED_ID}"),
    ),
    ("passport", re.compile(rf"{PASSPORT_CUE}{CUE_SEP}{PASSPORT}")),
    ("qq_number", re.compile(rf"{QQ_CUE}{CUE_SEP}{QQ_NUMBER}")),
    ("address", re.compile(rf"{RESIDENCE_CUE}{CUE_SEP}{ADDRESS_PLACE}{ADDRESS_DETAIL}|{DWELLING}")),
)

_GB11643_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_GB11643_CHECK: Final = "10X98765432"

#: What each kind is called, for a message that says what to take out (never the value itself).
KIND_NAMES: Final[dict[str, tuple[str, str]]] = {
    "id_number": ("身份证号", "an ID number"),
    "mobile": ("手机号", "a mobile number"),
    "landline": ("电话号码", "a telephone number"),
    "bank_card": ("银行卡号", "a bank card number"),
    "email": ("电子邮箱", "an e-mail address"),
    "person": ("姓名", "a name"),
    "licence_plate": ("车牌号", "a licence plate"),
    "wechat_id": ("微信号", "a WeChat id"),
    "qq_number": ("QQ号", "a QQ number"),
    "passport": ("护照号或通行证号", "a passport or travel permit number"),
    "address": ("门牌号等详细地址", "a house number or other address detail"),
    "birth_date": ("出生日期", "a date of birth"),
}


def fold(text: str) -> str:
    """``text`` as it reads: NFKC turns full-width digits and letters into ASCII, and a no-break or an
    ideographic space into a plain one."""
    return unicodedata.normalize("NFKC", text)


def numerals_to_digits(text: str) -> str:
    """``text`` with every Chinese numeral of :data:`NUMERALS` written as its ASCII digit."""
    return text.translate(_NUMERAL_DIGITS)


def is_mobile_in_numerals(candidate: str) -> bool:
    """True when a match of :data:`MOBILE_IN_NUMERALS` holds a numeral (else it is a mobile in digits)."""
    return _NUMERAL.search(candidate) is not None


def identity_number_in(text: str) -> str | None:
    """``"id_number"`` or ``"bank_card"`` when ``text`` holds one (as :func:`personal_data_in` finds them),
    else None: for a field where a name and a phone number belong (a contact person) but a number that
    identifies someone, or opens her account, never does."""
    folded = fold(text)
    if _has_id_number(folded):
        return "id_number"
    return "bank_card" if _has_card_number(folded) else None


def _has_id_number(folded: str) -> bool:
    return bool(_ID_18.search(folded) or _ID_15.search(folded))


def _has_card_number(folded: str) -> bool:
    return any(_luhn(re.sub(r"[ \-]", "", m.group(0))) for m in _CARD.finditer(folded))


def personal_data_in(text: str) -> str | None:
    """The kind of personal data ``text`` holds (a key of :data:`KIND_NAMES`), or None.

    For text people type. ID numbers (18 or 15 digits) are refused whatever their check character, and a
    16-19 digit number only when it passes the Luhn check card numbers carry; a mobile also in Chinese
    numerals; a WeChat id, a passport number or a house number after the word that says what it is.
    Names, licence plates and birth dates are the free-text scanner's (the gateway adds them).
    """
    folded = fold(text)
    if _has_id_number(folded):
        return "id_number"
    if _MOBILE.search(folded) or any(
        is_mobile_in_numerals(m.group(0)) for m in _MOBILE_NUMERALS.finditer(folded)
    ):
        return "mobile"
    if _has_card_number(folded):
        return "bank_card"
    if _LANDLINE.search(folded):
        return "landline"
    if _EMAIL.search(folded):
        return "email"
    for kind, after_cue in _AFTER_CUE:
        if after_cue.search(folded):
            return kind
    return None


def looks_like_identifier(text: str) -> bool:
    """True when ``text`` holds a valid GB 11643 ID number or a mainland mobile number (see the module)."""
    if _MOBILE_GROUPED.search(text):
        return True
    for match in _ID_GROUPED.finditer(text):
        digits = match.group(0).replace(" ", "").replace("-", "")
        if _is_gb11643(digits):
            return True
    return False


def _is_gb11643(candidate: str) -> bool:
    total = sum(int(d) * w for d, w in zip(candidate[:17], _GB11643_WEIGHTS, strict=True))
    return _GB11643_CHECK[total % 11] == candidate[17].upper()


def _luhn(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0
