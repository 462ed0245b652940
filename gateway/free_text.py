"""The check on text people type that ends up in the audit log or a case file (reasons, notes, purposes,
complaint summaries, review comments): personal data is refused with a message that says what to take
out, and never repeats it.

The libraries refuse the number and e-mail shapes, mobiles in Chinese numerals, and WeChat ids, passport
numbers and house numbers after their cue words themselves (``grassroots_common.personal_data``, whose
shapes the response scanner is built from); here the free-text scanner the responses are masked with adds
what only it finds: a name after a cue word ("户主张三", "联系人：李四") or with an honorific ("王先生"),
licence plates, and a birth date tied to a birth cue word ("出生于1948年3月12日", "1948年3月12日出生").
A bare name with nothing around it cannot be told from ordinary words; the message asks people not to
write names at all.

Typed text is held to a stricter test than responses are: the scanner takes a name after a cue word only
where a punctuation mark, the end or the next item's word follows (a masked response must keep its ordinary
words), while a note or a summary also names a person where what follows is what a person does in a case
("居民王小明来访询问") or where a verb of contacting someone comes first ("已联系王小明本人"). Refusing such a
text costs its writer a rewording; accepting it leaves a name in the audit log for years (PIPL Art. 51).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Final

from gateway.errors import InvalidRequest
from gateway.openapi_doc import ecma_pattern
from grassroots_common.personal_data import KIND_NAMES, personal_data_in
from masking import FreeTextScanner

#: The longest reason, note or purpose, counted after the spaces around it are trimmed.
TEXT_MAX: Final = 500
#: Python's ``str.strip`` trims exactly the characters ``str.isspace`` holds (none above U+3000), which are
#: neither ECMA-262's ``\s`` nor ``re``'s: spelled out as ``\uXXXX``, this reads the same in both, and a
#: required text is one this finds something in.
NOT_BLANK: Final = re.compile("[^" + "".join(f"\\u{c:04x}" for c in range(0x3001) if chr(c).isspace()) + "]")


def text_schema(*, required: bool) -> dict[str, Any]:
    """The OpenAPI constraints of a reason, note or purpose (``json_schema_extra``): what
    :func:`gateway.routes.grants.checked_reason` and the masking routes' check refuse, but personal data,
    which no pattern can name."""
    schema: dict[str, Any] = {"maxLength": TEXT_MAX}
    if required:
        schema["pattern"] = ecma_pattern(NOT_BLANK, anchored=False)
    return schema


#: Scanner findings that are a person's data (a credit code names an organisation, not a person).
_SCANNER_KINDS = {
    "PERSON": "person",
    "CN_LICENCE_PLATE": "licence_plate",
    "CN_ID_NUMBER": "id_number",
    "CN_MOBILE": "mobile",
    "CN_LANDLINE": "landline",
    "BANK_CARD": "bank_card",
    "EMAIL_ADDRESS": "email",
    "CN_WECHAT_ID": "wechat_id",
    "CN_QQ_NUMBER": "qq_number",
    "PASSPORT": "passport",
    "CN_ADDRESS_DETAIL": "address",
    "CN_BIRTH_DATE": "birth_date",
}


@lru_cache(maxsize=1)
def free_text_scanner() -> FreeTextScanner:
    """The process's one scanner (building it takes about a second): the runtime masks responses with it,
    and typed text is checked with it. Built at start-up by ``gateway.wiring``."""
    return FreeTextScanner()


#: Who a case note or summary speaks of, besides the scanner's cue words (户主、居民、村民、家属…).
_CASE_CUES = ("群众", "当事人", "投诉人", "来访人", "来电人", "反映人", "举报人")
#: Verbs of reaching a person: the name follows them ("已联系王小明本人", "致电李强").
_CONTACT_VERBS = ("联系", "致电", "电话联系", "告知", "通知", "约谈", "回访", "走访", "询问", "答复", "转告")
#: What follows a person in a case note; the scanner's right context (punctuation, the end, 电话, 同志…)
#: counts as well.
_PERSON_FOLLOWS = (
    "本人", "来访", "来电", "来信", "反映", "询问", "咨询", "投诉", "举报", "表示", "要求", "夫妇", "一家",
    "家属", "家中", "家里", "户口", "电话", "手机", "身份证", "同志", "先生", "女士", "老人", "的",
)  # fmt: skip


@lru_cache(maxsize=1)
def _typed_name() -> re.Pattern[str]:
    """A name as people type it into a case note: surname + one or two characters, after a cue word or a
    contact verb, before a person's context. Built from the scanner's own pieces (its cue words, its
    surnames less those that are everyday words after a cue, its separators), so the two agree on what a
    name looks like; the given name never holds a function word (的、了、是…) or 某 (王某 names nobody)."""
    from masking import recognizers as names

    cues = sorted({*names.LEFT_CUES, *_CASE_CUES, *_CONTACT_VERBS}, key=len, reverse=True)
    not_names = sorted(
        {*names.NOT_NAMES, *names.TIME_WORDS, *names.LEFT_CUES, *_CASE_CUES}, key=lambda w: (-len(w), w)
    )
    given = r"(?:(?![的了是在和与及或等人户家说到把被为有无已未要会对从向也都还就将其该此某])[\u4e00-\u9fff])"
    # When the person did it, as the scanner reads it too (投诉人王伟今日来电): names.TIME_WORDS.
    follows = "|".join(map(re.escape, (*_PERSON_FOLLOWS, *names.TIME_WORDS)))
    name = rf"(?!{'|'.join(map(re.escape, not_names))})(?:{names._SURNAME}){given}{{1,2}}"
    after = rf"(?=[，。、；：:,;.!！?？\s（()）]|$|\d|{follows})"
    after_cue = rf"(?:{'|'.join(map(re.escape, cues))}){names._SEP}{name}{after}"
    # "王小明本人来访": at the start of a clause, 本人 marks a person as an honorific does.
    before_self = rf"(?:^|(?<=[^\u4e00-\u9fff])){name}(?=本人)"
    return re.compile(f"{after_cue}|{before_self}")


#: The groups a run of digits is split into by spaces or hyphens.
_DIGIT_GROUPS: Final = re.compile(r"\d+")


def _written_as_card(number: str) -> bool:
    """Whether a run of 13-19 digits the scanner took for a card is written the way card numbers are:
    in one piece, digit by digit, or in groups of at least four but the last (6222 0212 3456 7890 123,
    622202 1234567890123). A work-order number holds a month or a day between its parts (12345-2026-12-0001,
    15 digits, one in ten passing the Luhn check): the response scan masks it anyway, but typed text is a
    ticket or a note someone must be able to file, so a short group inside the run says it is no card."""
    groups = [len(g) for g in _DIGIT_GROUPS.findall(number)]
    return len(groups) == 1 or set(groups) == {1} or min(groups[:-1]) >= 4


def personal_data_kind(text: str) -> str | None:
    """The kind of personal data in ``text`` (a key of ``KIND_NAMES``), or None."""
    kind = personal_data_in(text)
    if kind is not None:
        return kind
    for finding in free_text_scanner().scan(text):
        if finding.entity_type == "BANK_CARD" and not _written_as_card(text[finding.start : finding.end]):
            continue
        if finding.entity_type in _SCANNER_KINDS:
            return _SCANNER_KINDS[finding.entity_type]
    if _typed_name().search(text) is not None:
        return "person"
    return None


def refuse_personal_data(text: str, name_zh: str, name_en: str, *, code: str) -> None:
    """Raise a 422 naming the kind found when ``text`` holds personal data (the value is never repeated)."""
    kind = personal_data_kind(text)
    if kind is None:
        return
    what_zh, what_en = KIND_NAMES[kind]
    raise InvalidRequest(
        f"{name_zh}中含有{what_zh}。{name_zh}会写入审计记录，请不要填写身份证号、手机号、姓名等个人信息，"
        "需要指明居民时请写业务编号。",
        f"The {name_en} holds {what_en}. It is written to the audit log: leave out ID numbers, phone "
        "numbers, names and other personal data, and refer to residents by a case or record number.",
        code=code,
        extra={"personal_data_kind": kind},
    )
