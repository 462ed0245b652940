"""A generated, labelled corpus of Chinese free text with personal data, and scoring against it.

The same corpus serves the recognizer tests (precision and recall per entity type; goal >= 0.99 recall
for ID numbers and mobiles, issue 4; three texts in ten also hold a birth date or a date that is none,
`birth_part`) and the benchmark that compares `FreeTextScanner.scan` with a stock
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
    "DATE_STYLES",
    "LabelledText",
    "Score",
    "bank_card",
    "birth_part",
    "credit_code",
    "id_number",
    "labelled_corpus",
    "mobile",
    "person_name",
    "remark_part",
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
    if kind == 0:  # 18 digits with a right check character, but no county's code first (no code starts 9)
        # (A county's code and a real birth date with a wrong check character are a mistyped ID number:
        # personal data, which the scanner takes.)
        body = f"9{rng.randint(0, 99_999):05d}19900101{rng.randint(0, 999):03d}"
        return body + mod_11_2.calc_check_digit(body)
    if kind == 1:  # 11 digits that are not a mobile (12x)
        return f"12{rng.randint(0, 999_999_999):09d}"
    if kind == 2:  # an order number
        return f"订单{rng.randint(10**9, 10**10 - 1)}"
    if kind == 3:  # money and dates
        return f"{rng.randint(100, 9999)}元，{rng.randint(2000, 2024)}年{rng.randint(1, 12)}月"
    return f"{rng.randint(1, 30)}组{rng.randint(1, 200)}号"


# -- remarks as clerks write them: house numbers, WeChat ids and names beyond the cue-word forms -------

_DIGIT_NUMERALS = "零一二三四五六七八九"
_PLACES = ("", "", "幸福小区", "东风村", "人民路", "东风村3组")
_LIVES = ("家住", "住", "现住", "住址：", "住在", "现居")
_WECHAT_IDS = ("wang", "lihua", "zhang_san", "chen-li", "liu", "zhaomin")
_ACTS = (
    "反映楼道灯坏了",
    "来电咨询低保",
    "称已搬走",
    "表示同意",
    "要求上门核实",
    "申请临时救助",
    "领取了慰问金",
)


def count_in_numerals(n: int) -> str:
    """1-99 as it is said (三、十二、二十三): how a building or unit is written in numerals."""
    tens, ones = divmod(n, 10)
    if not tens:
        return _DIGIT_NUMERALS[ones]
    return ("" if tens == 1 else _DIGIT_NUMERALS[tens]) + "十" + (_DIGIT_NUMERALS[ones] if ones else "")


def _dwelling(rng: random.Random, numerals: bool) -> str:
    """Building, unit and room (3号楼2单元501室, 三栋二单元五零一室: a room is read digit by digit)."""
    building, unit = rng.randint(1, 30), rng.randint(1, 6)
    room = f"{rng.randint(1, 18)}0{rng.randint(1, 4)}"
    if numerals:
        building_text, unit_text = count_in_numerals(building), count_in_numerals(unit)
        room = "".join(_DIGIT_NUMERALS[int(d)] for d in room)
    else:
        building_text, unit_text = str(building), str(unit)
    return f"{building_text}{rng.choice(('号楼', '栋', '幢'))}{unit_text}单元{room}{rng.choice(('室', ''))}"


def _wechat_id(rng: random.Random) -> str:
    return f"{rng.choice(_WECHAT_IDS)}{rng.randint(100, 2024)}"


def remark_part(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    """One clause of a remark and its labels: a house number after a residence word, in digits or in
    Chinese numerals (住三号楼二单元五零一室、住在十二栋), or bare as a dwelling (building, unit, room)
    in a sentence about a resident; a WeChat id after a cue, glued to a Latin cue (vxwang88) or in
    WeChat's own wxid_ form; a name before what the person did, after a cue (邻居王秀英反映…) or with
    none (王秀英来电咨询…). Half the clauses are look-alikes that are no one's (a street lamp's house
    number, a meeting room, a stairwell, a WeChat group, a village or a body that reported something).
    """
    kind = rng.randrange(14)
    if kind == 0:
        v = f"{rng.randint(1, 30)}号楼{rng.randint(1, 6)}单元{rng.randint(1, 18)}0{rng.randint(1, 4)}室"
        return f"{rng.choice(_LIVES)}{rng.choice(_PLACES)}{v}", [("CN_ADDRESS_DETAIL", v)]
    if kind == 1:
        v = rng.choice((_dwelling(rng, numerals=True), f"{count_in_numerals(rng.randint(1, 30))}栋"))
        return f"{rng.choice(_LIVES)}{rng.choice(_PLACES)}{v}", [("CN_ADDRESS_DETAIL", v)]
    if kind == 2:
        v = _dwelling(rng, numerals=rng.random() < 0.5)
        text = rng.choice(("独居老人，{v}，需上门", "困难户{v}，行动不便", "老人搬到{v}后无人照看"))
        return text.format(v=v), [("CN_ADDRESS_DETAIL", v)]
    if kind == 3:
        v = _wechat_id(rng)
        return f"{rng.choice(('微信号：', 'vx：', '微信 '))}{v}", [("CN_WECHAT_ID", v)]
    if kind == 4:
        v = _wechat_id(rng)
        return f"加{rng.choice(('vx', 'wx', 'VX'))}{v}联系", [("CN_WECHAT_ID", v)]
    if kind == 5:
        v = "wxid_" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(14))
        return f"对方{v}已添加", [("CN_WECHAT_ID", v)]
    if kind == 6:
        v = person_name(rng)
        cue = rng.choice(("邻居", "村民", "其子", "户主", "老人"))
        return f"{cue}{v}{rng.choice(_ACTS)}", [("PERSON", v)]
    if kind == 7:
        v = person_name(rng)
        return f"{v}{rng.choice(_ACTS)}", [("PERSON", v)]
    return rng.choice(
        (
            f"{rng.randint(1, 30)}组{rng.randint(1, 200)}号门前路灯损坏",
            f"{rng.randint(1, 30)}号楼{rng.randint(1, 6)}单元楼道灯不亮",
            f"{count_in_numerals(rng.randint(1, 30))}栋楼顶漏水已报修",
            f"村委会{rng.randint(1, 4)}0{rng.randint(1, 9)}室开会",
            f"住院{rng.randint(2, 30)}天，{rng.randint(1, 12)}月{rng.randint(1, 28)}号出院",
            f"居住{count_in_numerals(rng.randint(2, 30))}年",
            "vx群已建好，wx转账已到",
            f"型号WX{rng.randint(1000, 9999)}，订单AB{rng.randint(10**6, 10**7)}",
            rng.choice(("居民反映楼道灯坏了", "村民代表来电咨询", "群众称已搬走", "有人反映路灯不亮")),
            rng.choice(("向村委反映", "网格员表示同意", "通知要求上门核实", "王庄村申请临时救助")),
        )
    ), []


# -- birth dates in remarks, and the dates that are not one ---------------------------------------------

_FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def _year_in_numerals(year: int) -> str:
    """一九四八: a year is read digit by digit (〇 for zero)."""
    return "".join("〇一二三四五六七八九"[int(d)] for d in str(year))


#: How remarks write a date (year, month, day): in digits with 年月日 or - . /, in Chinese numerals, to the
#: month only, with a two-digit year, in full-width digits, and (after a cue word only) as 19480312.
DATE_STYLES: tuple[Callable[[int, int, int], str], ...] = (
    lambda y, m, d: f"{y}年{m}月{d}日",
    lambda y, m, d: f"{y}-{m:02d}-{d:02d}",
    lambda y, m, d: f"{y}.{m}.{d}",
    lambda y, m, d: f"{_year_in_numerals(y)}年{count_in_numerals(m)}月{count_in_numerals(d)}日",
    lambda y, m, d: f"{y}年{m}月",
    lambda y, m, d: f"{y % 100:02d}年{m}月{d}日",
    lambda y, m, d: f"{y}年{m}月{d}日".translate(_FULL_WIDTH),
    lambda y, m, d: f"{y}/{m}/{d}",
    lambda y, m, d: f"{y}{m:02d}{d:02d}",
)


def _written_date(rng: random.Random, year: int, month: int, day: int, *, cued: bool) -> str:
    """A date as remarks write it; ``cued`` (a word before it) also allows the compact 19480312."""
    return DATE_STYLES[rng.randrange(len(DATE_STYLES) if cued else len(DATE_STYLES) - 1)](year, month, day)


def birth_part(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    """One clause of a remark with a resident's birth date and its label, tied to a word saying it is one,
    before it (出生于、生于、生日：、出生日期、出生年月：) or after it (…出生、…生、…生人), in digits, Chinese
    numerals or full-width digits, with or without the day; or a month and day after 生日. Half the clauses
    are dates that are no one's birth date: a visit, a deadline, a review year, a certificate issued, a rule
    taking effect, or a birth cue in another clause."""
    year, month, day = rng.randint(1935, 2023), rng.randint(1, 12), rng.randint(1, 28)
    kind = rng.randrange(8)
    if kind == 0 or kind == 1:
        v = _written_date(rng, year, month, day, cued=True)
        cue = rng.choice(
            ("出生于", "生于", "生日：", "出生日期：", "出生日期 ", "出生年月：", "该户主出生于")
        )
        return f"{cue}{v}", [("CN_BIRTH_DATE", v)]
    if kind == 2 or kind == 3:
        v = _written_date(rng, year, month, day, cued=False)
        after = rng.choice(("出生", "出生", "生", "生人"))
        return f"{rng.choice(('', '户主', '其子', '于'))}{v}{after}", [("CN_BIRTH_DATE", v)]
    if kind == 4:
        v = f"{month}月{day}日"
        return f"生日{rng.choice(('：', '是', ''))}{v}", [("CN_BIRTH_DATE", v)]
    visit = rng.randint(2015, 2025)
    return rng.choice(
        (
            f"{visit}年{month}月{day}日走访",
            f"请于{visit}年{month}月{day}日前补齐材料",
            f"{visit}年度低保复核",
            f"出生于本村，{visit}年{month}月{day}日入户核查",
            f"{visit}年{month}月{day}日出生证明已办理",
            f"自{visit}年{month}月{day}日起生效",
            f"户主{year}年生，{visit}-{month:02d}-{day:02d}回访",
            f"生日慰问于{visit}年{month}月{day}日开展",
        )
    ), []


def labelled_corpus(n: int, seed: int = 20250601) -> list[LabelledText]:
    """`n` texts as (text, [(entity type, exact surface)]) pairs; the same seed gives the same corpus."""
    rng = random.Random(seed)
    # Remark clauses come from a stream of their own: the identifiers above are the same for a seed.
    remarks = random.Random(f"remarks-{seed}")
    births = random.Random(f"births-{seed}")
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
        if remarks.random() < 0.5:
            part, part_labels = remark_part(remarks)
            parts.insert(remarks.randint(0, len(parts)), part)
            labels.extend(part_labels)
        if births.random() < 0.3:
            part, part_labels = birth_part(births)
            parts.insert(births.randint(0, len(parts)), part)
            labels.extend(part_labels)
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
