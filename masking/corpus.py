"""A generated, labelled corpus of Chinese free text with personal data, and scoring against it.

The same corpus serves the recognizer tests (precision and recall per entity type; goal >= 0.99 recall
for ID numbers and mobiles, issue 4) and the benchmark that compares `FreeTextScanner.scan` with a stock
presidio `AnalyzerEngine` holding the same recognizers (`FreeTextScanner.scan_with_engine`): both are
scored by `score` on `labelled_corpus(n, seed)` in the same run. Deterministic per seed.

Identifiers are built with python-stdnum's check-digit functions (GB 11643 ISO 7064 MOD 11-2, GB 32100,
Luhn), so only the decoys are invalid. Every value is synthetic.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from stdnum import luhn
from stdnum.cn import ric, uscc
from stdnum.iso7064 import mod_11_2

__all__ = [
    "CUES",
    "LabelledText",
    "Score",
    "bank_card",
    "credit_code",
    "id_number",
    "labelled_corpus",
    "mobile",
    "person_name",
    "score",
]

LabelledText = tuple[str, list[tuple[str, str]]]


REGIONS = ["110102", "360426", "440113", "412723", "330110", "510104", "320106"]
# Common surnames, compound ones and rarer ones of the 百家姓 / census list (桂, 冼, 隋, 亓, 覃).
SURNAMES = [*"王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗桂冼隋亓覃", "欧阳", "司马", "诸葛", "上官"]
GIVEN = list("建国明华娜丽伟强秀英军平志刚桂兰玉梅海燕春")
# Role cues and the kin / contact cues remarks use (其子高慧…, 紧急联系人：桂秀珍).
CUES = ["户主", "联系人", "申请人", "村民", "本人", "监护人", "家属", "其子", "其妻", "紧急联系人", "代办人"]


# The generators below are shared with the benchmark's corpus (bench/_corpus.py), which passes its own
# regions and mobile formats: with the same arguments, the same random stream gives the same values.


def id_number(rng: random.Random, regions: Sequence[str] = REGIONS) -> str:
    """A valid resident ID number (GB 11643, ISO 7064 MOD 11-2 check character) in one of ``regions``."""
    while True:
        body = (
            f"{rng.choice(regions)}{rng.randint(1940, 2015)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        )
        body += f"{rng.randint(0, 999):03d}"
        number = body + mod_11_2.calc_check_digit(body)
        if ric.is_valid(number):
            return number


def mobile(rng: random.Random, spaced_share: float = 0.10) -> str:
    """A mobile number: 15 % written 3-4-4 with hyphens, ``spaced_share`` with spaces, the rest plain."""
    raw = f"1{rng.choice('3456789')}{rng.randint(0, 999_999_999):09d}"
    style = rng.random()
    if style < 0.15:
        return f"{raw[:3]}-{raw[3:7]}-{raw[7:]}"
    if style < 0.15 + spaced_share:
        return f"{raw[:3]} {raw[3:7]} {raw[7:]}"
    return raw


def bank_card(rng: random.Random) -> str:
    """A 62-prefixed (UnionPay) card number with a valid Luhn check digit."""
    body = "62" + "".join(str(rng.randint(0, 9)) for _ in range(15))
    return body + luhn.calc_check_digit(body)


def credit_code(rng: random.Random, regions: Sequence[str] = REGIONS) -> str:
    """A unified social credit code (GB 32100, valid check character) registered in one of ``regions``."""
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    body = rng.choice("159") + rng.choice("123") + rng.choice(regions)
    body += "".join(rng.choice(alphabet) for _ in range(9))
    return body + uscc.calc_check_digit(body)


def person_name(rng: random.Random) -> str:
    """A surname (single or compound) and one or two given-name characters."""
    surname: str = rng.choice(SURNAMES)
    return surname + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))


def _decoy(rng: random.Random) -> str:
    """Look-alikes that are not personal data."""
    kind = rng.randrange(5)
    if kind == 0:  # 18 digits with a wrong check character
        body = f"{rng.choice(REGIONS)}19900101{rng.randint(0, 999):03d}"
        good = mod_11_2.calc_check_digit(body)
        return body + ("0" if good != "0" else "1")
    if kind == 1:  # 11 digits that are not a mobile (12x)
        return f"12{rng.randint(0, 999_999_999):09d}"
    if kind == 2:  # an order number
        return f"订单{rng.randint(10**9, 10**10 - 1)}"
    if kind == 3:  # money and dates
        return f"{rng.randint(100, 9999)}元，{rng.randint(2000, 2024)}年{rng.randint(1, 12)}月"
    return f"{rng.randint(1, 30)}组{rng.randint(1, 200)}号"


def labelled_corpus(n: int, seed: int = 20250601) -> list[LabelledText]:
    """`n` texts as (text, [(entity type, exact surface)]) pairs; the same seed gives the same corpus."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        parts: list[str] = []
        labels: list[tuple[str, str]] = []
        for _ in range(rng.randint(1, 4)):
            kind = rng.randrange(8)
            if kind == 0:
                v = id_number(rng)
                parts.append(rng.choice(["身份证号", "证件号码：", "公民身份号码 ", ""]) + v)
                labels.append(("CN_ID_NUMBER", v))
            elif kind == 1:
                v = mobile(rng)
                parts.append(rng.choice(["电话", "手机：", "联系方式 ", "", "请回拨"]) + v)
                labels.append(("CN_MOBILE", v))
            elif kind == 2:
                v = person_name(rng)
                parts.append(rng.choice(CUES) + rng.choice(["", "：", " "]) + v)
                labels.append(("PERSON", v))
            elif kind == 3:
                v = bank_card(rng)
                parts.append("银行卡号" + v)
                labels.append(("BANK_CARD", v))
            elif kind == 4:
                v = f"0{rng.choice(['571', '571', '10', '21'])}-{rng.randint(2_000_000, 8_999_999)}"
                if v.startswith(("010", "021")):
                    v += str(rng.randint(0, 9))
                parts.append("座机" + v)
                labels.append(("CN_LANDLINE", v))
            elif kind == 5:
                v = credit_code(rng)
                parts.append("统一社会信用代码" + v)
                labels.append(("CN_CREDIT_CODE", v))
            else:
                parts.append(_decoy(rng))
        docs.append(("，".join(parts) + rng.choice(["。", "，已核实。", "；需回访。"]), labels))
    return docs


@dataclass(frozen=True, slots=True)
class Score:
    precision: float
    recall: float
    true_positives: int
    false_positives: int
    false_negatives: int


class _SpanLike(Protocol):
    @property
    def entity_type(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...


def score(scan: Callable[[str], Iterable[_SpanLike]], corpus: Sequence[LabelledText]) -> dict[str, Score]:
    """Precision and recall per entity type of `scan` (e.g. `scanner.scan` or `scanner.scan_with_engine`);
    a finding counts when its type and exact surface text match a label."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for text, labels in corpus:
        found = Counter((f.entity_type, text[f.start : f.end]) for f in scan(text))
        expected = Counter(labels)
        for key, n in expected.items():
            hit = min(n, found[key])
            tp[key[0]] += hit
            fn[key[0]] += n - hit
        for key, n in found.items():
            fp[key[0]] += max(0, n - expected[key])
    types = set(tp) | set(fp) | set(fn)
    return {
        t: Score(
            precision=tp[t] / ((tp[t] + fp[t]) or 1),
            recall=tp[t] / ((tp[t] + fn[t]) or 1),
            true_positives=tp[t],
            false_positives=fp[t],
            false_negatives=fn[t],
        )
        for t in sorted(types)
    }
