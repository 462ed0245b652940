"""Free-text PII detection and masking with Chinese recognizers, measured against presidio.

`FreeTextScanner.scan` applies the patterns of the recognizers of `masking.recognizers` itself, with
presidio's scoring rule (pattern score; 1.0 when `validate_result` says valid, dropped when it says
invalid) but without presidio's per-call machinery (the `regex` module with a timeout,
explanation objects, the blank zh pipeline that contributes no entities: no NER model, issue 4). A
pattern group is only run when a cheap necessary trigger for it occurs in the text: six digits (with
at most single separators between them: every digit-based pattern needs that), six Chinese numerals
or a numeral beside a digit (a mobile typed as 一三八… or 138一二三四…), an "@", a plate prefix, a name
cue word or an honorific, a WeChat, passport or residence cue, a 生 (every birth cue word holds
one: 出生、生于、生日、…生人); within the digits, ID numbers and bank cards need thirteen, landlines a
"0" that follows no digit (one without its area code 电话、座机 or 固话), and a dotted name its dot. A
text with none of them costs one search. The same recognizers inside a stock presidio `AnalyzerEngine`
(`analyzer_engine()`, `scan_with_engine`) give the same findings at the default threshold (tested); the
bench compares the two.

The scanner itself never imports presidio or spaCy (about a second of CPU at every gateway start); they
are imported only for the reference engine (`masking._presidio`), on first use.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import regex as regex_module  # presidio's regex engine, for the patterns `re` cannot write (REACHING)

from grassroots_common.personal_data import NUMERALS, numerals_to_digits
from masking.catalog import SemanticType
from masking.operators import BindContext, MaskFn, ParamValue, TextMasker, get_operator
from masking.recognizers import (
    FLAGS,
    HONORIFICS,
    LEFT_CUES,
    NAME_DOT,
    PERSON,
    Recognizer,
    build_recognizers,
    compact_id_number,
)

__all__ = ["ENTITY_TYPES", "ITEM_SEMANTIC_TYPES", "OWN_OPERATORS", "Finding", "FreeTextScanner"]

ENTITY_TYPES: tuple[str, ...] = (
    "CN_ID_NUMBER",
    "CN_MOBILE",
    "BANK_CARD",
    "CN_CREDIT_CODE",
    "CN_LANDLINE",
    "EMAIL_ADDRESS",
    "CN_LICENCE_PLATE",
    "CN_WECHAT_ID",
    "CN_QQ_NUMBER",
    "PASSPORT",
    "CN_ADDRESS_DETAIL",
    "CN_BIRTH_DATE",
    "PERSON",
)
# When two findings overlap with equal scores, the earlier type in ENTITY_TYPES wins: an ID number
# can pass the Luhn test by chance and is still an ID number; so can a mobile written with its country
# code ("+8613812345678": the card pattern takes its 13 digits, and a card's masking would show eight of
# them); an all-digit 18-character card number passes the GB 32100 check one time in 31 and is still
# more likely a card.
_PRIORITY = {name: len(ENTITY_TYPES) - i for i, name in enumerate(ENTITY_TYPES)}

#: The semantic type of a catalogued field whose values are of each kind the scanner finds: a masking plan
#: masks an item found in free text no more visibly than its profile masks a field of that type
#: (`masking.items`). A WeChat id and a passport number have no field type: the scanner's masking stands.
ITEM_SEMANTIC_TYPES: dict[str, SemanticType] = {
    "CN_ID_NUMBER": SemanticType.ID_NUMBER,
    "CN_MOBILE": SemanticType.MOBILE,
    "BANK_CARD": SemanticType.BANK_CARD,
    "CN_CREDIT_CODE": SemanticType.CREDIT_CODE,
    "CN_LANDLINE": SemanticType.LANDLINE,
    "EMAIL_ADDRESS": SemanticType.EMAIL,
    "CN_LICENCE_PLATE": SemanticType.LICENCE_PLATE,
    "CN_ADDRESS_DETAIL": SemanticType.ADDRESS,
    "CN_BIRTH_DATE": SemanticType.BIRTH_DATE,
    "PERSON": SemanticType.PERSON_NAME,
}

#: The scanner's own masking of each kind that a registered operator does (operator, parameters); the other
#: kinds are masked by the functions below (an e-mail's first letter and domain, a plate's first two
#: characters, a birth date's year, a WeChat id or a house number hidden whole, a passport's letters).
OWN_OPERATORS: dict[str, tuple[str, Mapping[str, ParamValue]]] = {
    "CN_ID_NUMBER": ("cn_id", {"keep_region": 6}),
    "CN_CREDIT_CODE": ("credit_code", {}),
    "BANK_CARD": ("bank_card", {}),
    "CN_MOBILE": ("mobile", {}),
    "CN_LANDLINE": ("landline", {}),
    "PERSON": ("name", {}),
}

_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
# Necessary conditions, one per pattern group. Every digit-based pattern (ID, credit code, card,
# mobile, landline) contains six digits separated by at most one "-" or space each.
_DIGIT_RUN = re.compile(r"\d(?:[-\s]?\d){5}")
_PLATE = re.compile(f"[{_PROVINCES}][A-Z]")
# A mobile written in Chinese numerals (一三八…) holds six numerals with at most single separators; one
# written in digits and numerals mixed (138一二三四5678, 1三8…), a numeral beside a digit.
_NUMERAL_RUN = re.compile(
    f"[{NUMERALS}](?:[-\\s]?[{NUMERALS}]){{5}}|[0-9][-\\s]?[{NUMERALS}]|[{NUMERALS}][-\\s]?[0-9]"
)
_NUMERAL = re.compile(f"[{NUMERALS}]")
_LONG_DIGIT_RUN = re.compile(r"\d(?:[-\s]?\d){12}")
_LANDLINE_START = re.compile(r"[(（]0|(?<![0-9])0")
# A Latin WeChat cue (vx、wx、V信、weixin、wechat), loosened to its first two characters.
_LATIN_WECHAT_CUE = re.compile(r"[VvWw](?:[Xx]|信|[Ee][IiCc])")


def _numerals(text: str) -> bool:
    # Most texts hold no numeral at all: one character-class search settles them.
    return _NUMERAL.search(text) is not None and _NUMERAL_RUN.search(text) is not None


def _wechat_cue(text: str) -> bool:
    return "微信" in text or _LATIN_WECHAT_CUE.search(text) is not None


# The Latin form of a QQ cue (QQ_CUE), in any case; the other is 扣扣.
_LATIN_QQ_CUE = re.compile(r"[Qq]{2}")


def _qq_cue(text: str) -> bool:
    # Most texts hold no Q at all: substring tests settle them faster than the search does.
    return "扣扣" in text or (("Q" in text or "q" in text) and _LATIN_QQ_CUE.search(text) is not None)


def _passport_cue(text: str) -> bool:
    # Every word of PASSPORT_CUE holds one of these.
    return "护照" in text or "通行证" in text or "回乡证" in text or "台胞证" in text


def _residence_cue(text: str) -> bool:
    return "住" in text or "址" in text or "现居" in text


def _phone_cue(text: str) -> bool:
    # A local landline (no area code) is taken only after 电话、座机 or 固话.
    return "电话" in text or "座机" in text or "固话" in text


def _birth_cue(text: str) -> bool:
    # Every word that makes a date a birth date (出生、生于、生日、生辰、…生、…生人) holds 生.
    return "生" in text


def _dwelling_cue(text: str) -> bool:
    # A dwelling's number has a unit (单元) or a room (室) in it.
    return "单元" in text or "室" in text


_TRIGGER_KINDS: dict[str, str] = {
    "CN_ID_NUMBER": "digits",
    "CN_CREDIT_CODE": "digits",
    "BANK_CARD": "digits",
    "CN_MOBILE": "digits",
    "CN_LANDLINE": "digits",
    "EMAIL_ADDRESS": "at",
    "CN_LICENCE_PLATE": "plate",
    "CN_BIRTH_DATE": "birth",
}
# Patterns whose trigger is not their entity's, or is narrower than it: an ID number (15 or 18 digits,
# after a cue 14 to 19) and a bank card (13 to 19) hold thirteen digits with at most single separators,
# which a mobile (11) or a date does not; every landline pattern starts with a "0" that follows no digit,
# or with "(0" / "（0"; a dotted name (阿卜杜·热合曼) holds its dot. Each is tested once per text that has
# the rest of its group's trigger, and spares the patterns a text cannot match.
_PATTERN_TRIGGERS: dict[str, str] = {
    "cn_mobile_numerals": "numerals",
    "wechat_after_cue": "wechat",
    "passport_after_cue": "passport",
    "address_after_cue": "residence",
    "wechat_glued": "wechat",
    "wechat_own_id": "wechat",
    "qq_after_cue": "qq",
    "dwelling": "dwelling",
    "cn_id_18": "long_digits",
    "cn_id_15": "long_digits",
    "cn_id_disability_cert": "long_digits",
    "cn_id_after_cue": "long_digits",
    "bank_card": "long_digits",
    "cn_landline": "landline",
    "cn_landline_compact": "landline",
    "cn_landline_grouped": "landline",
    "cn_landline_local_after_cue": "phone_cue",
    "cn_name_dotted": "dotted",
    "cn_name_honorific": "honorific",
    "cn_name_person_after": "person_after",
    "cn_name_before_contact": "contact_after",
}
#: What every match of PERSON_AFTER holds (本人, 夫妇, 之 and a kin word, a bracket, 男 or 女 before no
#: Chinese character), found from one character class: PERSON_AFTER itself, with its optional comma before
#: the sex, is tried at every character of a text and costs seven times as much.
_PERSON_AFTER_FIRST = "本夫之（(男女"
_PERSON_AFTER_TRIGGER = re.compile(
    rf"[{_PERSON_AFTER_FIRST}]"
    r"(?:(?<=本)人|(?<=夫)妇|(?<=之)[妻夫子女父母]|(?<=[（(])|(?<=[男女])(?![\u4e00-\u9fff]))"
)
#: What every match of CONTACT_AHEAD holds: a phone's or an ID document's word, a mobile's first digits
#: (after +86 or not), an ID number's region and century.
_CONTACT_WORDS = ("联系", "电话", "手机", "身份证", "座机")
_CONTACT_TRIGGER = re.compile("|".join(_CONTACT_WORDS) + r"|1[3-9]\d|[1-9]\d{5}(?:18|19|20)")
_LANGUAGE = "zh"
#: The trigger kinds a text of ASCII characters alone can meet (the others need a Chinese character or
#: an interpunct), and those of them that are digit runs.
_ASCII_DIGIT_KINDS = frozenset({"digits", "long_digits", "landline"})
_ASCII_KINDS = _ASCII_DIGIT_KINDS | {"at", "wechat", "qq"}

# Text is scanned as it reads, one character for one so that spans stay those of the original: full-width
# forms (U+FF01-U+FF5E: "１３８１２３４５６７８") and the ideographic space become ASCII, as NFKC would make
# them; dashes and the minus sign become "-", and zero-width characters a space, so a number split by them
# reads as a number written in groups. Otherwise such a number passes the scan and is served unmasked.
_FOLD: dict[int, str] = {
    **{code: chr(code - 0xFEE0) for code in range(0xFF01, 0xFF5F)},
    0x3000: " ",
    **dict.fromkeys((0x2010, 0x2011, 0x2012, 0x2013, 0x2014, 0x2015, 0x2212, 0xFE63), "-"),
    **dict.fromkeys((0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF), " "),
}
_FOLDABLE = re.compile("[" + "".join(re.escape(chr(code)) for code in sorted(_FOLD)) + "]")
_FOLD_CHARS: Final = {chr(code): to for code, to in _FOLD.items()}


def fold(text: str) -> str:
    """``text`` as the recognizers read it (see ``_FOLD``); the same length, so spans carry over.

    Each foldable character present is replaced whole (``str.replace``), not the text translated character
    by character: Chinese text holds full-width punctuation (，：（）) in nearly every remark, and
    ``str.translate`` looks each of its characters up in the table, raising and catching a KeyError for every
    one not in it (twice the time on a remark)."""
    if text.isascii():
        return text
    found = _FOLDABLE.findall(text)
    if not found:
        return text
    for char in set(found):
        text = text.replace(char, _FOLD_CHARS[char])
    return text


@dataclass(frozen=True, slots=True)
class Finding:
    entity_type: str
    start: int
    end: int
    score: float


#: A finding before it is taken: (entity type, start, end, score).
_Candidate = tuple[str, int, int, float]


@dataclass(frozen=True, slots=True)
class _Rule:
    """One recognizer pattern, compiled for the standard `re` module."""

    entity: str
    trigger: str
    regex: re.Pattern[str]
    group: int | str
    score: float
    validate: Callable[[str], bool | None] | None
    # Where the standard form finds fewer (Recognizer.REACHING): presidio's own pattern (the `regex`
    # module), and the value's own regex.
    exact: Any = None
    value: re.Pattern[str] | None = None

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        """The spans of what this rule finds in ``text``, as presidio's pattern finds them."""
        if self.group == 0:
            return (m.span() for m in self.regex.finditer(text))
        if self.exact is not None and self.value is not None:
            # The standard form finds presidio's first value; only another value after it (which the same
            # cue may reach) needs presidio's pattern, several times slower.
            first = self.regex.search(text)
            if first is None:
                return iter(())
            span = first.span(self.group)
            if self.value.search(text, span[1]) is None:
                return iter((span,))
            return (m.span() for m in self.exact.finditer(text))
        return _values_after_cues(self.regex, self.group, text)


def _values_after_cues(regex: re.Pattern[str], group: int | str, text: str) -> Iterator[tuple[int, int]]:
    """The values of a pattern whose standard-`re` form consumes the cue before its value (``STDLIB``),
    found as presidio finds them through the lookbehind: values do not overlap one another, but a cue may
    lie inside the previous value. ``finditer`` would resume after that value and lose the next one with
    its cue: in "VX号110102199101010078V信wang_jg88" the first WeChat candidate is the ID number and the
    V, and the id after V信 was served in clear. So each search resumes one character after the last
    match's start, and a value that begins inside the last one taken is passed over."""
    taken_end = 0
    pos = 0
    while (m := regex.search(text, pos)) is not None:
        start, end = m.span(group)
        if start >= taken_end:
            yield start, end
            taken_end = end
        pos = m.start() + 1


#: A scanner's rules grouped by their trigger, each trigger tested once per text.
_Groups = list[tuple[Callable[[str], object], tuple[_Rule, ...]]]


def _compile_rules(recognizers: Sequence[Recognizer], flags: int) -> list[_Rule]:
    rules: list[_Rule] = []
    for recognizer in recognizers:
        entity = recognizer.ENTITY
        overridden = recognizer.has_verdict()
        stdlib = recognizer.STDLIB
        for pattern in recognizer.PATTERNS:
            regex, group = stdlib.get(pattern.name, (pattern.regex, 0))
            value = recognizer.REACHING.get(pattern.name)
            if pattern.name in _PATTERN_TRIGGERS:
                trigger = _PATTERN_TRIGGERS[pattern.name]
            elif entity == PERSON:
                trigger = "cue"
            else:
                trigger = _TRIGGER_KINDS[entity]
            rules.append(
                _Rule(
                    entity=entity,
                    trigger=trigger,
                    regex=re.compile(regex, flags),
                    group=group,
                    score=float(pattern.score),
                    validate=recognizer.validate_result if overridden else None,
                    exact=regex_module.compile(pattern.regex, flags) if value is not None else None,
                    value=re.compile(value, flags) if value is not None else None,
                )
            )
    return rules


def _as_text(fn: Callable[[object], object]) -> Callable[[str], str]:
    return lambda text: str(fn(text))


def _compacted(fn: Callable[[object], object]) -> Callable[[object], object]:
    """``fn`` on an ID number as found in text (perhaps in groups), its separators taken out first."""
    return lambda text: fn(compact_id_number(str(text)))


def _digits_first(fn: Callable[[object], object]) -> Callable[[object], object]:
    """``fn`` on a number as found in text, Chinese numerals (一三八…, 幺, 〇) read as digits first: the
    masked mobile is written in digits, 一三八一二三四五六七八 -> 138****5678, the shape of any mobile."""
    return lambda text: fn(numerals_to_digits(str(text)))


#: How an item of a kind is read before an operator masks it, whichever operator that is (the scanner's
#: own or the one a plan gives the kind): an ID number without its separators, a mobile in digits.
_READ_AS: dict[str, Callable[[MaskFn], MaskFn]] = {"CN_ID_NUMBER": _compacted, "CN_MOBILE": _digits_first}


_ENTITY_TYPES: frozenset[str] = frozenset(ENTITY_TYPES)


def _item_masker(entity: str, fn: MaskFn) -> Callable[[str], str]:
    read_as = _READ_AS.get(entity)
    return _as_text(fn if read_as is None else read_as(fn))


def _mask_email(text: str) -> str:
    local, _, domain = text.partition("@")
    return f"{local[:1]}***@{domain}"


def _hidden_whole(text: str) -> str:
    """A WeChat id (any part of one can be searched for and finds the person) or a house number (the
    address operator drops it; the place before it stays): nothing of it is kept."""
    return "***"


def _mask_passport(text: str) -> str:
    # The letters say which kind of passport (E: ordinary, electronic) and identify nobody.
    letters = len(text) - len(text.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))
    return text[:letters] + "*" * (len(text) - letters)


#: The year of a date as written: four digits or numerals first, or two before 年 (48年, 四八年).
_WRITTEN_YEAR = re.compile(
    f"(?:[0-9]{{4}}|[{NUMERALS}]{{4}})(?![0-9{NUMERALS}])|(?:[0-9]{{2}}|[{NUMERALS}]{{2}})(?=\\s?年)"
)
#: A month's or a day's number as written (3, 03, 三, 十二, 二十三, 廿三, 初八, 正, 腊, 冬).
_MONTH_OR_DAY = re.compile(f"[0-9{NUMERALS}十廿卅初正腊冬]+")


def _mask_birth_date(text: str) -> str:
    """A birth date masked as the standard profile's birth_date rule masks the field (``date``, granularity
    year: only the year is shown): the year stays, in digits as that rule writes it (一九四八 -> 1948), the
    month and the day are each "**" whatever their length, and the words and separators stay, so the
    sentence still reads: 1948年3月12日 -> 1948年**月**日, 1956-07-08 -> 1956-**-**, 19480312 -> 1948****,
    生日：3月12日 -> 生日：**月**日."""
    if text.isascii() and text.isdigit():
        return text[:4] + "*" * (len(text) - 4)
    year = _WRITTEN_YEAR.match(text)
    kept = numerals_to_digits(year.group()) if year else ""
    return kept + _MONTH_OR_DAY.sub("**", text[year.end() if year else 0 :])


def _mask_plate(text: str) -> str:
    return text[:2] + "*" * (len(text) - 2)


#: The texts a scanner remembers as holding nothing to find, and the longest it remembers. Remarks are
#: typed from a few set phrases (独居老人，网格员每周走访; 外出务工，常住外省; 低保年审材料已齐) far more
#: often than not, by every clerk of every village, and one dataset's codes and statuses (a village code,
#: 在保) recur in every record: the same short text is scanned again and again, and a scan finding nothing
#: still tests every cue the text's characters may begin (5-9 µs for such a remark). What a scan finds
#: depends on the text alone (the scanner is not changed once built), so a text remembered clean is
#: answered at once. Only texts read in full in which nothing was found are kept (not those the prefilter
#: passes over: a record id, unique in each record, would crowd the phrases out), each at most 128
#: characters (a phrase, a code; a long note is rarely typed twice), at most 4,096 of them (under 2 MB);
#: when full, the memory starts again empty.
CLEAN_TEXTS_KEPT: Final = 4096
CLEAN_TEXT_MAX_CHARS: Final = 128


class FreeTextScanner:
    """Detect and mask Chinese personal data in free text.

    `min_score` drops weak findings (presidio scores; validated identifiers score 1.0).
    `checksum_only_ids=True` also flags 18-digit numbers whose check character is right but whose
    county code python-stdnum does not know (useful on synthetic data); the default agrees with stdnum.
    `clean_texts_kept`: how many short texts found clean it remembers (``CLEAN_TEXTS_KEPT``); 0 reads every
    text in full (the benchmark against the stock engine, which remembers nothing).
    """

    def __init__(
        self,
        *,
        entities: Iterable[str] | None = None,
        min_score: float = 0.5,
        checksum_only_ids: bool = False,
        clean_texts_kept: int = CLEAN_TEXTS_KEPT,
    ) -> None:
        wanted = set(entities) if entities is not None else set(ENTITY_TYPES)
        unknown = wanted - set(ENTITY_TYPES)
        if unknown:
            raise ValueError(f"unknown entity types: {sorted(unknown)}")
        self._min_score = min_score
        self._recognizers: list[Recognizer] = [
            r for r in build_recognizers(checksum_only_ids=checksum_only_ids) if r.ENTITY in wanted
        ]
        self._entities = list(dict.fromkeys(r.ENTITY for r in self._recognizers))
        self._rules = _compile_rules(self._recognizers, FLAGS)
        kinds = {rule.trigger for rule in self._rules}
        # A necessary condition per rule group, each tested once per text: names need a whole cue word
        # before them (户主、联系人…) or an honorific after (同志、先生…). The prefilter in front of them is
        # their union loosened to single characters (a cue's or honorific's first character), which one
        # character class finds fastest; a text without any has nothing to find. Digits are tested as the
        # digit-run trigger itself, not a first digit: record ids, codes and dates (response DLP scans
        # them all) have digits but rarely six in a row.
        cue = re.compile("|".join(map(re.escape, LEFT_CUES)))
        honorific = re.compile("|".join(map(re.escape, HONORIFICS)))
        first = ""
        if "at" in kinds:
            first += "@"
        if "plate" in kinds:
            first += _PROVINCES
        if "cue" in kinds or "dotted" in kinds:
            first += "".join(sorted({word[0] for word in LEFT_CUES}))
        if "honorific" in kinds:
            first += "".join(sorted({word[0] for word in HONORIFICS}))
        if "person_after" in kinds:  # 本人、夫妇, a role in brackets, the sex (PERSON_AFTER)
            first += _PERSON_AFTER_FIRST
        if "contact_after" in kinds:  # a contact's word; the digits are the digit run's
            first += "".join(word[0] for word in _CONTACT_WORDS)
        if "wechat" in kinds:
            first += "微"
        if "passport" in kinds:
            first += "护通回台"
        if "qq" in kinds:
            first += "扣"
        if "residence" in kinds:
            first += "住址现"
        if "dwelling" in kinds:
            first += "单室"
        if "birth" in kinds:
            first += "生"
        digits = bool(kinds & _ASCII_DIGIT_KINDS)  # every one of them holds a digit run
        self._prefilter = _any_of(
            (f"[{first}]", bool(first)),
            (_LATIN_WECHAT_CUE.pattern, "wechat" in kinds),  # the Latin cues (vx、wx、V信、weixin、wechat)
            (_LATIN_QQ_CUE.pattern, "qq" in kinds),
            (_DIGIT_RUN.pattern, digits),
            # Numerals as the run itself, as for digits: 一 and 二 alone are everywhere.
            (_NUMERAL_RUN.pattern, "numerals" in kinds),
        )
        # An ASCII text (a record id, a code, a number: most of what response DLP reads) can hold only the
        # ASCII triggers: "@", a Latin WeChat or QQ cue, a digit run. The rest need Chinese characters (cues,
        # numerals, plate prefixes) or the interpunct of a dotted name.
        self._ascii_prefilter = _any_of(
            ("@", "at" in kinds),
            (_LATIN_WECHAT_CUE.pattern, "wechat" in kinds),
            (_LATIN_QQ_CUE.pattern, "qq" in kinds),
            (_DIGIT_RUN.pattern, digits),
        )
        # ASCII letters and digits alone (a record id such as R075f2e45): no "@", and a digit run has no
        # separator to hold, so it is six digits in a row, which the regex engine finds several times faster.
        self._alnum_prefilter = _any_of(
            (_LATIN_WECHAT_CUE.pattern, "wechat" in kinds),
            (_LATIN_QQ_CUE.pattern, "qq" in kinds),
            ("[0-9]{6}", digits),
        )
        triggers: dict[str, Callable[[str], object]] = {
            "digits": _DIGIT_RUN.search,
            "at": lambda text: "@" in text,
            "plate": _PLATE.search,
            "honorific": honorific.search,
            "person_after": _PERSON_AFTER_TRIGGER.search,
            "contact_after": _CONTACT_TRIGGER.search,
            "cue": cue.search,
            "numerals": _numerals,
            "wechat": _wechat_cue,
            "passport": _passport_cue,
            "qq": _qq_cue,
            "residence": _residence_cue,
            "dwelling": _dwelling_cue,
            "birth": _birth_cue,
            "long_digits": _LONG_DIGIT_RUN.search,
            "landline": _LANDLINE_START.search,
            "phone_cue": _phone_cue,
            "dotted": re.compile(NAME_DOT).search,
        }
        # Rules grouped by trigger (in first-seen order), so each trigger is tested once per text.
        grouped: dict[str, list[_Rule]] = {}
        for rule in self._rules:
            grouped.setdefault(rule.trigger, []).append(rule)
        self._groups: _Groups = [(triggers[kind], tuple(rules)) for kind, rules in grouped.items()]
        self._ascii_groups: _Groups = [
            (triggers[kind], tuple(rules)) for kind, rules in grouped.items() if kind in _ASCII_KINDS
        ]
        self._clean: dict[str, None] = {}
        self._clean_kept = clean_texts_kept
        self._presidio: list[Any] | None = None
        self._analyzer: Any = None
        self._analyzer_lock = threading.Lock()
        ctx = BindContext()

        def op(name: str, **params: Any) -> Callable[[object], object]:
            operator = get_operator(name)
            return operator.bind(operator.resolve_params(params), ctx)

        self._maskers: dict[str, Callable[[str], str]] = {
            entity: _item_masker(entity, op(name, **params))
            for entity, (name, params) in OWN_OPERATORS.items()
        }
        self._maskers["EMAIL_ADDRESS"] = _mask_email
        self._maskers["CN_LICENCE_PLATE"] = _mask_plate
        self._maskers["CN_WECHAT_ID"] = _hidden_whole
        self._maskers["CN_QQ_NUMBER"] = _hidden_whole
        self._maskers["PASSPORT"] = _mask_passport
        self._maskers["CN_ADDRESS_DETAIL"] = _hidden_whole
        self._maskers["CN_BIRTH_DATE"] = _mask_birth_date

    @property
    def entities(self) -> tuple[str, ...]:
        return tuple(self._entities)

    @property
    def min_score(self) -> float:
        """Read only: what a scanner finds is fixed when it is built (its memory of clean texts relies
        on it)."""
        return self._min_score

    def recognizers(self) -> list[Any]:
        """The presidio recognizer objects (to register in another `AnalyzerEngine`); imports presidio."""
        with self._analyzer_lock:
            return list(self._presidio_recognizers())

    def _presidio_recognizers(self) -> list[Any]:
        if self._presidio is None:
            from masking import _presidio

            self._presidio = [_presidio.presidio_recognizer(r) for r in self._recognizers]
        return self._presidio

    def scan(self, text: str) -> list[Finding]:
        """Non-overlapping findings, in text order (spans of ``text``; the text is read folded)."""
        return self._folded_and_found(text)[1]

    def _folded_and_found(self, text: str) -> tuple[str, list[Finding]]:
        """``text`` folded and its findings: answered at once for a text remembered clean, and a text read
        in full with nothing found is remembered (``CLEAN_TEXTS_KEPT``). With no findings, the first is
        ``text`` itself whenever it was not read."""
        if text in self._clean:
            return text, []
        folded = fold(text)
        groups = self._groups_to_read(folded)
        if groups is None:
            return folded, []
        findings = self._read(folded, groups)
        if not findings:
            self._remember_clean(text)
        return folded, findings

    def _remember_clean(self, text: str) -> None:
        """Remember a short text read in full in which nothing was found, so that it is not read again (see
        ``CLEAN_TEXTS_KEPT``). A text the prefilter passes over (a record id, a word with no cue) costs less
        than remembering it, and is not."""
        if len(text) <= CLEAN_TEXT_MAX_CHARS and self._clean_kept > 0:
            clean = self._clean
            if len(clean) >= self._clean_kept:
                clean.clear()
            clean[text] = None

    def _groups_to_read(self, text: str) -> _Groups | None:
        """The rule groups a (folded) text is read with; None when the prefilter shows it holds nothing."""
        if not text:
            return None
        if text.isascii():
            groups = self._ascii_groups
            prefilter = self._alnum_prefilter if text.isalnum() else self._ascii_prefilter
        else:
            prefilter, groups = self._prefilter, self._groups
        if prefilter is None or prefilter.search(text) is None:
            return None
        return groups

    def _read(self, text: str, groups: _Groups) -> list[Finding]:
        # Candidates as plain (entity, start, end, score) tuples: most are never taken, and only those
        # taken become Findings (in _resolve).
        raw: list[_Candidate] = []
        # Spans already found with full confidence, by the priority of their type. A later candidate
        # on exactly such a span, of a type of no higher priority, sorts after it in `_resolve` (or is the
        # same finding again) and can never add to what is taken, so it is dropped before its (costly)
        # check: an ID number is not also validated as a credit code and a bank card, nor twice as an
        # ID number (18 digits after 身份证号 are found by both ID patterns).
        certain: dict[tuple[int, int], int] = {}
        for trigger, rules in groups:
            if not trigger(text):
                continue
            for rule in rules:
                priority = _PRIORITY[rule.entity]
                for span in rule.spans(text):
                    start, end = span
                    if start == end or certain.get(span, 0) >= priority:
                        continue
                    score = rule.score
                    if rule.validate is not None:
                        verdict = rule.validate(text[start:end])
                        if verdict is not None:
                            score = 1.0 if verdict else 0.0
                    if score > 0.0:
                        raw.append((rule.entity, start, end, score))
                        if score >= 1.0:
                            certain[span] = priority
        return _resolve(raw, self._min_score)

    def mask(self, text: str) -> str:
        """`text` with every finding replaced by its type's masking operator."""
        return self.scan_and_mask(text)[0]

    def masked_by(self, maskers: Mapping[str, MaskFn]) -> TextMasker:
        """This scanner masking the kinds in ``maskers`` (entity type -> bound operator) with those
        operators instead of its own (a masking plan's, `masking.items`); each item is read as the
        scanner reads it (an ID number compacted, a mobile in digits). No override: the scanner itself."""
        if not maskers:
            return self
        unknown = set(maskers) - set(ENTITY_TYPES)
        if unknown:
            raise ValueError(f"unknown entity types: {sorted(unknown)}")
        return _MaskedBy(self, maskers)

    def scan_and_mask(
        self, text: str, maskers: Mapping[str, Callable[[str], str]] | None = None
    ) -> tuple[str, list[Finding]]:
        """The masked text and the findings it was masked for (one scan, one fold); ``maskers`` (all of
        the scanner's own, some replaced: see `masked_by`) when given."""
        folded, findings = self._folded_and_found(text)
        if not findings:
            return text, findings
        return self._masked(text, folded, findings, maskers or self._maskers), findings

    def mask_findings(self, text: str, findings: Sequence[Finding]) -> str:
        """`text` with the given non-overlapping, ordered findings (from `scan` or `scan_with_engine`)
        replaced by their type's masking operator."""
        return self._masked(text, fold(text), findings, self._maskers)

    def _masked(
        self,
        text: str,
        folded: str,
        findings: Sequence[Finding],
        maskers: Mapping[str, Callable[[str], str]],
    ) -> str:
        out: list[str] = []
        pos = 0
        for f in findings:
            out.append(text[pos : f.start])
            out.append(maskers[f.entity_type](folded[f.start : f.end]))
            pos = f.end
        out.append(text[pos:])
        return "".join(out)

    def analyzer_engine(self) -> Any:
        """A stock presidio `AnalyzerEngine` on `spacy.blank("zh")` with exactly these recognizers."""
        with self._analyzer_lock:
            if self._analyzer is None:
                from masking import _presidio

                self._analyzer = _presidio.build_analyzer(self._presidio_recognizers())
            return self._analyzer

    def scan_with_engine(self, text: str) -> list[Finding]:
        """The same scan through presidio's full `AnalyzerEngine.analyze` (NLP pipeline, context
        enhancement, de-duplication); the reference the fast path is measured against."""
        results = self.analyzer_engine().analyze(
            text=fold(text), language=_LANGUAGE, entities=self._entities, regex_flags=FLAGS
        )
        raw = [(str(r.entity_type), int(r.start), int(r.end), float(r.score)) for r in results]
        return _resolve(raw, self._min_score)

    def __repr__(self) -> str:
        return f"FreeTextScanner(entities={list(self._entities)}, min_score={self.min_score})"


class _MaskedBy:
    """A scanner whose masking of some kinds is a plan's (`FreeTextScanner.masked_by`)."""

    __slots__ = ("_maskers", "_overrides", "_scanner")

    def __init__(
        self, scanner: FreeTextScanner, overrides: Mapping[str, MaskFn], over: _MaskedBy | None = None
    ) -> None:
        self._scanner = scanner
        # Over another's (``over``): only ``overrides`` are new, the rest is taken as that one read it.
        self._overrides: dict[str, MaskFn] = (
            dict(overrides) if over is None else {**over._overrides, **overrides}
        )
        self._maskers: dict[str, Callable[[str], str]] = {
            **(scanner._maskers if over is None else over._maskers),
            **{entity: _item_masker(entity, fn) for entity, fn in overrides.items()},
        }

    def mask(self, text: str) -> str:
        return self._scanner.scan_and_mask(text, self._maskers)[0]

    def scan_and_mask(self, text: str) -> tuple[str, list[Finding]]:
        return self._scanner.scan_and_mask(text, self._maskers)

    def masked_by(self, maskers: Mapping[str, MaskFn]) -> TextMasker:
        # The plan's scanner for one record's resident (masking.plan: its sealed kinds over the plan's), built
        # per record: the kinds already read are not read again.
        if not maskers:
            return self
        if not maskers.keys() <= _ENTITY_TYPES:
            return self._scanner.masked_by({**self._overrides, **maskers})  # raises, naming the unknown
        return _MaskedBy(self._scanner, maskers, over=self)


def _any_of(*alternatives: tuple[str, bool]) -> re.Pattern[str] | None:
    """One pattern matching any of the wanted ``(pattern, wanted)`` alternatives, in order; None when no
    alternative is wanted (a scanner whose triggers a text cannot meet)."""
    wanted = [pattern for pattern, want in alternatives if want]
    return re.compile("|".join(wanted)) if wanted else None


#: Kinds of which the part outside a finding taken before it is still hidden (a house number: hidden whole,
#: taken without a verdict). One in numerals with a mobile typed straight after it (住二十九栋一单元一一零一
#: 159 2939 0229) reads on into the mobile's first digits, a room number without its unit; the mobile wins
#: the overlap, and the house number was served in clear. So were a WeChat id whose last digits read on
#: into a spaced mobile (vx:chen-li145 9133 0110…) and an e-mail address typed straight after a number
#: (13027409009user486@example.com, 440113…-user708@example.com: its local part takes the digits). Which
#: parts are kept: a house number's on both sides; a WeChat id's before (it starts at its cue, what reads on
#: is another item's), an e-mail address's after (its domain ends it, what reads in is another item's).
_TRIMMED_WHEN_OVERLAPPED: Final = {
    "CN_ADDRESS_DETAIL": (True, True),
    "CN_WECHAT_ID": (True, False),
    "EMAIL_ADDRESS": (False, True),
}


def _resolve(raw: list[_Candidate], min_score: float) -> list[Finding]:
    """The findings taken from ``raw``: by score, then type priority, then length, each candidate that
    overlaps none already taken (or, of the kinds in ``_TRIMMED_WHEN_OVERLAPPED``, its part before or
    after those it overlaps); in text order."""
    candidates = [c for c in raw if c[3] >= min_score]
    if len(candidates) > 1:
        # The common case (an ID number and a name in one remark): no two overlap, and every one is taken
        # whatever the order they are considered in.
        candidates.sort(key=_start)
        if any(candidates[i][2] > candidates[i + 1][1] for i in range(len(candidates) - 1)):
            candidates.sort(key=_rank)
            taken: list[_Candidate] = []
            for c in candidates:
                overlapped = [t for t in taken if c[1] < t[2] and t[1] < c[2]]
                if not overlapped:
                    taken.append(c)
                elif c[0] in _TRIMMED_WHEN_OVERLAPPED:
                    entity, start, end, score = c
                    before, after = _TRIMMED_WHEN_OVERLAPPED[entity]
                    first = min(t[1] for t in overlapped)
                    last = max(t[2] for t in overlapped)
                    # The parts outside every finding it overlaps: before the first, after the last. No
                    # other finding taken meets them (one that did would overlap the candidate).
                    if before and first > start:
                        taken.append((entity, start, first, score))
                    if after and end > last:
                        taken.append((entity, last, end, score))
            candidates = sorted(taken, key=_start)
    return [Finding(*c) for c in candidates]


def _start(candidate: _Candidate) -> int:
    return candidate[1]


def _rank(candidate: _Candidate) -> tuple[float, int, int, int]:
    entity, start, end, score = candidate
    return (-score, -_PRIORITY.get(entity, 0), -(end - start), start)
