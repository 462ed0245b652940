"""Masking operators: one abstract base, an explicit registry of built-ins, extendable by registering.

An operator is configured once (`resolve_params`, validated when rules load) and bound once per plan
(`bind`) into a plain function `value -> masked value`, so `mask_record` is a tight loop. Every bound
function is pure. A value an operator cannot parse is redacted, never passed through (fail closed).
`None` stays `None` (it reveals only that the source had no value).

References: GB/T 35273-2020 §6.2 and Annex (de-identification of displayed personal information),
GB/T 37964-2019 (个人信息去标识化指南: suppression, generalisation, pseudonymisation, encryption),
GB 11643-1999 (resident ID layout), GB 32100-2015 (unified social credit code layout).
"""

from __future__ import annotations

import datetime as dt
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar, Protocol

from stdnum.cn import uscc

from masking.detectors import COMPOUND_SURNAMES
from masking.errors import KeyRingError, OperatorError, unknown_name
from masking.keys import KeyRing
from masking.reversible import (
    DRY_RUN_MARKER,
    EnvelopeSealer,
    _hmac_with,
    ff1_id_cipher_for,
    ff1_id_pseudonym,
)

__all__ = [
    "ADDRESS_LEVELS",
    "COMPOUND_SURNAMES",
    "OPERATORS",
    "REDACTED",
    "BindContext",
    "FoundItem",
    "MaskFn",
    "Operator",
    "OperatorUnavailableError",
    "Param",
    "ParamValue",
    "SubjectMaskFn",
    "TextMasker",
    "generalise_address",
    "get_operator",
    "is_landline_number",
    "mask_value",
    "register_operator",
]

REDACTED = "***"
ParamValue = str | int | bool
MaskFn = Callable[[object], object]
#: A masking function that also takes the record's subject (an opaque keyed reference, or None).
SubjectMaskFn = Callable[[object, bytes | None], object]


class FoundItem(Protocol):
    """An item of personal data a scanner found (`masking.freetext.Finding` fits): its kind only."""

    @property
    def entity_type(self) -> str: ...


class TextMasker(Protocol):
    """What the `freetext` operator and response DLP need from a scanner (`masking.freetext.FreeTextScanner`
    fits)."""

    def mask(self, text: str) -> str: ...

    def scan_and_mask(self, text: str) -> tuple[str, Sequence[FoundItem]]:
        """The masked text and what was found in it (response DLP counts the kinds as drift)."""
        ...

    def masked_by(self, maskers: Mapping[str, MaskFn]) -> TextMasker:
        """The scanner masking the kinds it finds that ``maskers`` names (entity type, e.g. CN_MOBILE)
        with those operators instead of its own: how a plan's profile reaches the items of free text."""
        ...


class OperatorUnavailableError(OperatorError):
    """The operator cannot be bound in this context (no key ring, no scanner); the plan redacts instead."""


#: A parameter's type as a steward reads it in Chinese (the English line names the Python type).
_KIND_ZH: dict[type, str] = {
    int: "整数（不加引号）",
    str: "文字（加引号）",
    bool: "true 或 false（不加引号）",
}


@dataclass(frozen=True, slots=True)
class Param:
    kind: type[str] | type[int] | type[bool]
    default: ParamValue
    choices: tuple[ParamValue, ...] = ()
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True, slots=True)
class BindContext:
    """What binding may depend on: where the value comes from, keys, the scanner and the reference date."""

    dataset: str = ""
    field: str = ""
    keys: KeyRing | None = None
    scanner: TextMasker | None = None
    as_of: dt.date | None = None


class Operator(ABC):
    """Base of all operators. Subclasses declare `name`, `params` and implement `bind`."""

    name: ClassVar[str]
    summary_zh: ClassVar[str] = ""
    params: ClassVar[Mapping[str, Param]] = {}

    def resolve_params(self, raw: Mapping[str, object]) -> dict[str, ParamValue]:
        """Defaults filled in and every value checked; raises `OperatorError` naming the parameter."""
        unknown = set(raw) - set(self.params)
        if unknown:
            raise OperatorError(
                f"算子 {self.name} 不支持参数 {', '.join(sorted(unknown))}",
                f"operator {self.name} has no parameter(s) {', '.join(sorted(unknown))}",
            )
        out: dict[str, ParamValue] = {}
        for pname, spec in self.params.items():
            value = raw.get(pname, spec.default)
            if type(value) is not spec.kind:  # bool is an int subclass: compare exact types
                raise OperatorError(
                    f"算子 {self.name} 的参数 {pname} 类型应为{_KIND_ZH[spec.kind]}",
                    f"operator {self.name}: parameter {pname} must be of type {spec.kind.__name__}",
                )
            assert isinstance(value, str | int | bool)
            if spec.choices and value not in spec.choices:
                raise OperatorError(
                    f"算子 {self.name} 的参数 {pname} 取值无效，可选：{'、'.join(map(str, spec.choices))}",
                    f"operator {self.name}: parameter {pname} must be one of {list(spec.choices)}",
                )
            too_low = spec.minimum is not None and isinstance(value, int) and value < spec.minimum
            too_high = spec.maximum is not None and isinstance(value, int) and value > spec.maximum
            if too_low or too_high:
                raise OperatorError(
                    f"算子 {self.name} 的参数 {pname} 超出范围，应在 {spec.minimum} 到 {spec.maximum} 之间",
                    f"operator {self.name}: {pname} must be in [{spec.minimum}, {spec.maximum}]",
                )
            out[pname] = value
        self.check_params(out)
        return out

    def check_params(self, params: Mapping[str, ParamValue]) -> None:  # noqa: B027 - optional hook
        """Cross-parameter checks; override when needed."""

    @abstractmethod
    def bind(self, params: Mapping[str, ParamValue], ctx: BindContext) -> MaskFn:
        """A pure function masking one value, with `params` already resolved."""

    def bind_for_subject(self, params: Mapping[str, ParamValue], ctx: BindContext) -> SubjectMaskFn | None:
        """For an operator whose output names the subject of the record (the resident) the value belongs to:
        a function of (value, subject or None) used when the caller knows each record's subject. None (the
        default): the output depends on the value alone and `bind` serves every record."""
        return None

    def __repr__(self) -> str:
        return f"<operator {self.name}>"


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return None


def _textual(fn: Callable[[str], str]) -> MaskFn:
    """Lift a str -> str function: None stays None, anything not textual is redacted."""

    def apply(value: object) -> object:
        if type(value) is str:  # the common case first: one type check per value
            return fn(value)
        if value is None:
            return None
        text = _text(value)
        return REDACTED if text is None else fn(text)

    return apply


def _unread(text: str) -> str:
    """What a structured operator serves for a value it cannot read: ``***``, but an empty (or blank)
    value stays empty: there is nothing to hide, and ``***`` told a cadre there was a number on file.
    Called on the failure path only, so a value that parses costs nothing more."""
    return REDACTED if text.strip() else ""


def _keys(ctx: BindContext, op: str) -> KeyRing:
    if ctx.keys is None:
        raise OperatorUnavailableError(f"算子 {op} 需要密钥环", f"operator {op} needs a key ring")
    return ctx.keys


def _dataset(ctx: BindContext, op: str) -> str:
    # A reversible value is bound to the dataset it is issued for (masking.reversible); one bound to no
    # dataset could be unmasked under any, so without a dataset the operator is unavailable (redacted).
    if not ctx.dataset:
        raise OperatorUnavailableError(
            f"算子 {op} 须知道数据来自哪个数据集", f"operator {op} needs the dataset the value comes from"
        )
    return ctx.dataset


# --- the built-ins ----------------------------------------------------------------------------------


class Keep(Operator):
    name = "keep"
    summary_zh = "原样保留"

    def bind(self, params: Mapping[str, ParamValue], ctx: BindContext) -> MaskFn:
        return _identity


def _identity(value: object) -> object:
    return value


class Redact(Operator):
    name = "redact"
    summary_zh = "整体隐藏"
    params: ClassVar[Mapping[str, Param]] = {"replacement": Param(str, REDACTED)}

    def bind(self, params: Mapping[str, ParamValue], ctx: BindContext) -> MaskFn:
        replacement = str(params["replacement"])
        return lambda _value: replacement


def _keep_ends(text: str, first: int, last: int, mask_char: str) -> str:
    """Keep at most `first` leading and `last` trailing characters, always masking at least one."""
    n = len(text)
    if n == 0:
        return text
    while first + last >= n:
        if first >= last and first > 0:
            first -= 1
        else:
            last -= 1
    return text[:first] + mask_char * (n - first - last) + (text[n - last :] if last else "")


class Partial(Operator):
    name = "partial"
    summary_zh = "保留前 n 位、后 m 位，其余以 * 代替"
    params: ClassVar[Mapping[str, Param]] = {
        "keep_first": Param(int, 0, minimum=0, maximum=64),
        "keep_last": Param(int, 0, minimum=0, maximum=64),
        "mask_char": Param(str, "*"),
    }

    def check_params(self, params: Mapping[str, ParamValue]) -> None:
        if len(str(params["mask_char"])) != 1:
            raise OperatorError("mask_char 必须是单个字符", "mask_char must be a single character")

    def bind(self, params: Mapping[str, ParamValue], ctx: BindContext) -> MaskFn:
        first, last, ch = int(params["keep_first"]), int(params["keep_last"]), str(params["mask_char"])
        return _textual(lambda t: _keep_ends(t, first, last, ch))


_ID18 = re.compile(r"\d{17}[\dXx]", re.ASCII)
_ID15 = re.compile(r"\d{15}", re.ASCII)


class ChineseIdNumber(Operator):
    """GB 11643-1999: 6-digit region, 8-digit birth date, 3-digit sequence (odd = male), check char.

    Default: region kept, birth date, sequence and check hidden — the sequence's parity reveals sex and
    the check character narrows the hidden digits, so both are hidden unless asked for.
    """

    name = "cn_id"
    summary_zh = "身份证号：保留地区码，隐藏出生日期与顺序码"
    params: ClassVar[Mapping[str, Param]] = {
        "keep_region": Param(int, 6, choices=(0, 2, 4, 6)),
        "keep_birth_year": Param(bool, False),
        "keep_check": Param(bool, False),
    }

    def bind(self, params: Mapping[str, ParamValue], ctx: BindContext) -> MaskFn:
        region = int(params["keep_region"])
        year = bool(params["keep_birth_year"])
        check = bool(params["keep_check"])

        def mask(text: str) -> str:
            t = text.strip()
            if _ID18.fullmatch(t):
                head = t[:region] + "*" * (6 - region) + (t[6:10] if year else "****")
                return head + "*" * 7 + (t[17].upper() if check else "*")
            if _ID15.fullmatch(t):  # pre-1999 15-digit numbers: 6 region, YYMMDD, 3 sequence
                return t[:region] + "*" * (6 - region) + (t[6:8] if year else "**") + "*" * 7
            return _unread(t)

        return _textual(mask)


_MOBILE = re.compile(r"(?:\+?86|0086)?(1[3-9]\d{9})", re.ASCII)
_SEPARATORS = str.maketrans("", "", " -\u00a0")


class Mobile(Operator):
    name = "mobile"
    summary_zh = "手机号：保留前3位和后4位"
    params: ClassVar[Mapping[str, Param]] = {
        "keep_first": Param(int, 3, minimum=0, maximum=3),
        "keep_last": Param(int, 4, minimum=0, maximum=4),
    }

    def bind(self, params: Mapping[str, ParamValue], ctx: BindContext) -> MaskFn:
        first, last = int(params["keep_first"]), int(params["keep_last"])

        stars = "*" * (11 - first - last)

        def mask(text: str) -> str:
            # Plain 11 ASCII digits 1[3-9]... is what _MOBILE would return unchanged: skip the regex.
            if len(text) == 11 and text.isdigit() and text.isascii() and text[0] == "1" and text[1] > "2":
                d = text
            else:
                m = _MOBILE.fullmatch(text.translate(_SEPARATORS))
                if m is None:
                    return _unread(text)
                d = m.group(1)
            return d[:first] + stars + (d[11 - last :] if last else "")

        return _textual(mask)


# National numbering plan: area code 010 or 02X (3 digits) or 0[3-9]XX (4 digits), so 02159612345 is
# Shanghai 021 + 5961 2345, never a made-up "0215". The area code may be left out (59612345: how a
# resident writes the home phone in a form); a local number then starts with 2-9 (0 and 1 begin area
# codes, mobiles and service numbers) and is 7 or 8 digits.
_LANDLINE = re.compile(
    r"(?:[(（]?(010|02\d|0[3-9]\d{2})[)）]?[-\s]?)?(\d{3,4}[-\s]?\d{4})(?:(?:-|转|ext\.?|x)\d{1,6})?",
    re.IGNORECASE | re.ASCII,
)
_GROUP_SEPARATOR = re.compile(r"[-\s]")


def _parse_landline(text: str) -> tuple[str | None, str] | None:
    """(area code or None, local number without separators), or None if `text` is not a landline."""
    m = _LANDLINE.fullmatch(text.strip())
    if m is None:
        return None
    # The local number as written in groups (5961 2345) is read as one.
    area, local = m.group(1), _GROUP_SEPARATOR.sub("", m.group(2))
    if area is None and local[0] in "01":
        return None
    return area, local


def is_landline_number(value: object) -> bool:
    """Whether the `landline` operator reads `value` as a landline (area code optional)."""
    text = _text(value)
    return text is not None and _parse_landline(text) is not None


class Landline(Operator):
    name = "landline"
    summary_zh = "固定电话：保留区号和末尾2位"
    params: ClassVar[Mapping[str, Param]] = {"keep_last": Param(int, 2, minimum=0, maximum=4)}

    def bind(self, params: Mapping[str, ParamValue], ctx: BindContext) -> MaskFn:
        last = int(params["keep_last"])

        def mask(text: str) -> str:
            parsed = _parse_landline(text)
            if parsed is None:
                return _unread(text)
            area, local = parsed
            # The extension is dropped: it can identify a single desk.
            masked = "*" * (len(local) - last) + (local[len(local) - last :] if last else "")
            return masked if area is None else f"{area}-{masked}"

        return _textual(mask)


# Compound surnames (复姓): a longer match wins, so "欧阳娜娜" keeps "欧阳".
_NAME_SEPARATORS = "·•・."
_NAME_SEPARATOR = re.compile("[·•・.]")


class PersonName(Operator):
    name = "name"
    summary_zh = "姓名：保留姓氏（含复姓），名字以 * 代替"
    params: ClassVar[Mapping[str, Param]] = {"preserve_length": Param(bool, True)}

    def bind(self, params: Mapping[str, ParamValue], ctx: BindContext) -> MaskFn:
        preserve = bool(params["preserve_length"])

        def mask(text: str) -> str:
            t = text.strip()
            if not t:
                return t
            if _NAME_SEPARATOR.search(t) is not None:
                # Transliterated names (阿卜杜·热合曼): keep the first letter, keep the separators.
                if preserve:
                    return t[0] + "".join(c if c in _NAME_SEPARATORS else "*" for c in t[1:])
                return t[0] + "**"
            cut = 2 if len(t) > 2 and t[:2] in COMPOUND_SURNAMES else 1
            return t[:cut] + ("*" * (len(t) - cut) if preserve else "**")

        return _textual(mask)


ADDRESS_LEVELS: tuple[str, ...] = ("province", "city", "county", "township", "village")
# One optional group per administrative level, cut at the markers of 《行政区划代码》 naming
# (省/自治区/直辖市, 市/州/地区/盟, 区/县/旗/县级市, 镇/乡/街道/苏木, 村/社区/居委会/嘎查).
# No group may contain an ASCII digit, so house numbers (3组12号) can never survive generalisation.
_ADDRESS = re.compile(
    r"(?P<province>(?:北京|上海|天津|重庆)市|[^\d省市区县]{2,8}?(?:省|自治区|特别行政区))?"
    r"(?P<city>[^\d省市区县]{1,10}?(?:市|自治州|地区|盟))?"
    r"(?P<county>[^\d省市区县旗]{1,10}?(?:自治县|自治旗|新区|区|县|旗|市))?"
    r"(?P<township>[^\d镇乡街区县市]{1,10}?(?:街道|镇|乡|苏木))?"
    r"(?P<village>[^\d村区会]{1,12}?(?:村民委员会|居民委员会|村委会|居委会|社区|嘎查|村))?"
)


_FIRST_DIGIT = re.compile(r"\d")


def generalise_address(text: str, level: str) -> str | None:
    """The address cut after the component at `level` (or the deepest present above it); None if no
    administrative component is recognised."""
    t = text.strip()
    # No group of _ADDRESS can contain a digit, so the match never reaches past the first one: the
    # answer depends only on the text before it (the administrative part, without house numbers),
    # which repeats across a village's residents and is worth caching.
    m = _FIRST_DIGIT.search(t)
    return _generalise_prefix(t if m is None else t[: m.start()], level)


@lru_cache(maxsize=4096)
def _generalise_prefix(prefix: str, level: str) -> str | None:
    m = _ADDRESS.match(prefix)
    if m is None:
        return None
    depth = ADDRESS_LEVELS.index(level)
    kept = [m.group(name) or "" for name in ADDRESS_LEVELS[: depth + 1]]
    out = "".join(kept)
    return out or None


class Address(Operator):
    name = "address"
    summary_zh = "地址：泛化到指定行政级别（省/市/区县/乡镇街道/村社区）"
    params: ClassVar[Mapping[str, Param]] = {"level": Param(str, "village", choices=ADDRESS_LEVELS)}

    def bind(self, params: Mapping[str, ParamValue], ctx: BindContext) -> MaskFn:
        level = str(params["level"])
        return _textual(lambda t: generalise_address(t, level) or _unread(t))


_DIGITS_ONLY = re.compile(r"\d{12,19}", re.ASCII)


class BankCard(Operator):
    name = "bank_card"
    summary_zh = "银行卡号：保留前6位（发卡行）和后4位"
    params: ClassVar[Mapping[str, Param]] = {
        "keep_first": Param(int, 6, minimum=0, maximum=6),
        "keep_last": Param(int, 4, minimum=0, maximum=4),
    }

    def bind(self, params: Mapping[str, ParamValue], ctx: BindContext) -> MaskFn:
        first, last = int(params["keep_first"]), int(params["keep_last"])

        def mask(text: str) -> str:
            d = text.translate(_SEPARATORS)
            if not _DIGITS_ONLY.fullmatch(d):
                return _unread(text)
            return _keep_ends(d, first, last, "*")

        return _textual(mask)


_USCC = re.compile(r"[0-9A-HJ-NPQRTUWXY]{18}", re.ASCII)


class CreditCode(Operator):
    """GB 32100-2015: 1 registration authority + 1 type + 6 region + 9 organisation code + 1 check."""

    name = "credit_code"
    summary_zh = "统一社会信用代码：保留登记管理部门、机构类别和登记地码（前8位）"
    params: ClassVar[Mapping[str, Param]] = {
        "keep_first": Param(int, 8, minimum=0, maximum=8),
        "keep_last": Param(int, 0, minimum=0, maximum=1),
    }

    def bind(self, params: Mapping[str, ParamValue], ctx: BindContext) -> MaskFn:
        first, last = int(params["keep_first"]), int(params["keep_last"])

        def mask(text: str) -> str:
            c = uscc.compact(text)
            if not _USCC.fullmatch(c):
                return _unread(text)
            return _keep_ends(c, first, last, "*")

        return _textual(mask)


# Dates as registries write them: ISO (1957-03-02, 19570302, with a time after), other separators and
# unpadded parts (1957/3/2, 1957.03.02), Chinese (1957年3月2日), and dates known only to the month or
# year (1957-03, 1957年3月, 1957). Anything else is redacted.
_DATE = re.compile(
    r"(?P<y>\d{4})(?:"
    r"-?(?P<m>\d{2})-?(?P<d>\d{2})(?:[T ].*)?"
    r"|(?P<sep>[-./])(?P<m2>\d{1,2})(?:(?P=sep)(?P<d2>\d{1,2})(?:[T ].*)?)?"
    r"|年(?P<m3>\d{1,2})月(?:(?P<d3>\d{1,2})日)?"
    r"|年?)"
)


def _parse_partial_date(value: object) -> tuple[dt.date, str] | None:
    """The date and how much of it is known ("day", "month" or "year"; unknown parts are 1)."""
    if isinstance(value, dt.datetime):
        return value.date(), "day"
    if isinstance(value, dt.date):
        return value, "day"
    if not isinstance(value, str):
        return None
    m = _DATE.fullmatch(value.strip())
    if m is None:
        return None
    month = m.group("m") or m.group("m2") or m.group("m3")
    day = m.group("d") or m.group("d2") or m.group("d3")
    try:
        parsed = dt.date(int(m.group("y")), int(month or 1), int(day or 1))
    except ValueError:
        return None
    return parsed, "day" if day else "month" if month else "year"


def _parse_date(value: object) -> dt.date | None:
    parsed = _parse_partial_date(value)
    return parsed[0] if parsed is not None and parsed[1] == "day" else None


class DateGeneralise(Operator):
    name = "date"
    summary_zh = "日期：泛化到年或年月"
    params: ClassVar[Mapping[str, Param]] = {"granularity": Param(str, "year", choices=("year", "month"))}

    def bind(self, params: Mapping[str, ParamValue], ctx: BindContext) -> MaskFn:
        month = params["granularity"] == "month"
        keep = 7 if month else 4

        def mask(value: object) -> object:
            # ISO "YYYY-MM-DD" strings (what upstreams send): the C date parser validates them, and the
            # output is then the string's own prefix.
            if type(value) is str and len(value) == 10 and value[4] == "-" and value[7] == "-":
                try:
                    dt.date.fromisoformat(value)
                except ValueError:
                    pass
                else:
                    return value[:keep]
            if value is None:
                return None
            parsed = _parse_partial_date(value)
            if parsed is None:
                return _unread(value) if isinstance(value, str) else REDACTED
            d, known = parsed
            # A date known only to the year is shown as its year under either granularity.
            return f"{d.year:04d}-{d.month:02d}" if month and known != "year" else f"{d.year:04d}"

        return mask


class AgeBucket(Operator):
    name = "age_bucket"
    summary_zh = "年龄段：由出生日期或年龄得出，如 30-39"
    params: ClassVar[Mapping[str, Param]] = {
        "width": Param(int, 10, minimum=1, maximum=50),
        "top": Param(int, 80, minimum=1, maximum=150),
    }

    def bind(self, params: Mapping[str, ParamValue], ctx: BindContext) -> MaskFn:
        width, top = int(params["width"]), int(params["top"])
        as_of = ctx.as_of or dt.date.today()

        def mask(value: object) -> object:
            if value is None:
                return None
            if isinstance(value, int) and not isinstance(value, bool):
                age = value
            else:
                born = _parse_date(value)
                if born is None:
                    return REDACTED
                age = as_of.year - born.year - ((as_of.month, as_of.day) < (born.month, born.day))
            if age < 0:
                return REDACTED
            if age >= top:
                return f"{top}+"
            low = age - age % width
            return f"{low}-{min(low + width, top) - 1}"

        return mask


class HmacPseudonym(Operator):
    name = "hmac_pseudonym"
    summary_zh = "密钥化假名（HMAC-SHA256，带密钥版本，跨数据集稳定，不可还原）"
    params: ClassVar[Mapping[str, Param]] = {
        "namespace": Param(str, "default"),
        "length": Param(int, 20, minimum=16, maximum=52),
    }

    def bind(self, params: Mapping[str, ParamValue], ctx: BindContext) -> MaskFn:
        key_id, key = _keys(ctx, self.name).derive("hmac-pseudonym", for_encryption=True)
        namespace, length = str(params["namespace"]), int(params["length"])
        return _textual(lambda t: _hmac_with(key_id, key, t, namespace, length))


class Ff1IdNumber(Operator):
    name = "ff1_id"
    summary_zh = "身份证号保格式假名（FF1，NIST SP 800-38G；地区码保留，校验码正确；15 位旧号码仍为 15 位）"

    def bind(self, params: Mapping[str, ParamValue], ctx: BindContext) -> MaskFn:
        keys = _keys(ctx, self.name)
        try:
            # The per-dataset key is derived here, once per plan: nothing is added per value.
            _, cipher = ff1_id_cipher_for(keys, _dataset(ctx, self.name), for_encryption=True)
        except KeyRingError as exc:
            # Chiefly an active key older than dataset binding: a pseudonym made under it could not be
            # told from the unbound ones it made before, so none is made (redacted) until `keys rotate`.
            raise OperatorUnavailableError(exc.message_zh, exc.message_en) from None
        if keys.is_dry_run:
            # Under a throwaway key the output is still a well-formed ID number: marked, so nobody takes
            # it for a real pseudonym or asks to unmask it (the HMAC one carries "dryrun" as its key id).
            def dry(t: str) -> str:
                made = ff1_id_pseudonym(t, cipher)
                return REDACTED if made is None else DRY_RUN_MARKER + made

            return _textual(dry)
        return _textual(lambda t: ff1_id_pseudonym(t, cipher) or REDACTED)


class AesGcmEnvelope(Operator):
    name = "aes_gcm"
    summary_zh = "可逆加密（AES-GCM 版本化信封；还原须经授权并记审计）"
    params: ClassVar[Mapping[str, Param]] = {"context": Param(str, "")}

    def bind(self, params: Mapping[str, ParamValue], ctx: BindContext) -> MaskFn:
        return _textual(self._sealer(params, ctx).seal)

    def bind_for_subject(self, params: Mapping[str, ParamValue], ctx: BindContext) -> SubjectMaskFn:
        # A value of a record that names its resident is sealed with her (enc:v3:), so whoever unmasks it
        # later is recorded as having read her data (masking.reversible); without one, enc:v2: as `bind`.
        seal = self._sealer(params, ctx).seal

        def apply(value: object, subject: bytes | None) -> object:
            if type(value) is str:
                return seal(value, subject)
            if value is None:
                return None
            text = _text(value)
            return REDACTED if text is None else seal(text, subject)

        return apply

    def _sealer(self, params: Mapping[str, ParamValue], ctx: BindContext) -> EnvelopeSealer:
        dataset = _dataset(ctx, self.name)
        context = str(params["context"]) or f"{dataset}.{ctx.field}"
        return EnvelopeSealer(_keys(ctx, self.name), dataset=dataset, context=context)


class FreeText(Operator):
    name = "freetext"
    summary_zh = "自由文本：识别其中的个人信息并按类型脱敏"

    def bind(self, params: Mapping[str, ParamValue], ctx: BindContext) -> MaskFn:
        if ctx.scanner is None:
            raise OperatorUnavailableError("自由文本脱敏需要扫描器", "operator freetext needs a scanner")
        return _textual(ctx.scanner.mask)


OPERATORS: dict[str, Operator] = {
    op.name: op
    for op in (
        Keep(),
        Redact(),
        Partial(),
        ChineseIdNumber(),
        Mobile(),
        Landline(),
        PersonName(),
        Address(),
        BankCard(),
        CreditCode(),
        DateGeneralise(),
        AgeBucket(),
        HmacPseudonym(),
        Ff1IdNumber(),
        AesGcmEnvelope(),
        FreeText(),
    )
}


def register_operator(operator: Operator, *, replace: bool = False) -> None:
    """Add an operator to the registry; replacing a built-in must be asked for explicitly."""
    if operator.name in OPERATORS and not replace:
        raise OperatorError(
            f"算子 {operator.name} 已存在", f"operator {operator.name!r} is already registered"
        )
    OPERATORS[operator.name] = operator


def get_operator(name: str) -> Operator:
    try:
        return OPERATORS[name]
    except KeyError:
        raise OperatorError(*unknown_name("脱敏算子", "operator", name, list(OPERATORS))) from None


def mask_value(operator: str, value: object, ctx: BindContext | None = None, **params: ParamValue) -> object:
    """Mask one value (convenience for tests and dry-runs; plans bind once and reuse)."""
    op = get_operator(operator)
    return op.bind(op.resolve_params(params), ctx or BindContext())(value)
