"""The check on text people type that ends up in the audit log or a case file (reasons, notes, purposes,
complaint summaries, review comments): personal data is refused with a message that says what to take
out, and never repeats it.

The libraries refuse the number and address shapes themselves (``grassroots_common.personal_data``); here
the free-text scanner the responses are masked with adds what only it finds: a name after a cue word
("户主张三", "联系人：李四") or with an honorific ("王先生"), and licence plates. A bare name with nothing
around it cannot be told from ordinary words; the message asks people not to write names at all.
"""

from __future__ import annotations

from functools import lru_cache

from gateway.errors import InvalidRequest
from grassroots_common.personal_data import KIND_NAMES, personal_data_in
from masking import FreeTextScanner

#: Scanner findings that are a person's data (a credit code names an organisation, not a person).
_SCANNER_KINDS = {
    "PERSON": "person",
    "CN_LICENCE_PLATE": "licence_plate",
    "CN_ID_NUMBER": "id_number",
    "CN_MOBILE": "mobile",
    "CN_LANDLINE": "landline",
    "BANK_CARD": "bank_card",
    "EMAIL_ADDRESS": "email",
}


@lru_cache(maxsize=1)
def free_text_scanner() -> FreeTextScanner:
    """The process's one scanner (building it takes about a second): the runtime masks responses with it,
    and typed text is checked with it. Built at start-up by ``gateway.wiring``."""
    return FreeTextScanner()


def personal_data_kind(text: str) -> str | None:
    """The kind of personal data in ``text`` (a key of ``KIND_NAMES``), or None."""
    kind = personal_data_in(text)
    if kind is not None:
        return kind
    for finding in free_text_scanner().scan(text):
        if finding.entity_type in _SCANNER_KINDS:
            return _SCANNER_KINDS[finding.entity_type]
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
