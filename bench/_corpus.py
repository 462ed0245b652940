"""A generated, labelled corpus of Chinese free text (remark fields, visit notes) for the DLP benchmark.

Half the texts carry no personal data at all (work notes with money, dates, house numbers and order
numbers as look-alikes), as remark fields mostly do; the other half carry one to three labelled items:
resident ID numbers (GB 11643, check character by python-stdnum), mobiles, landlines, bank cards (Luhn),
unified social credit codes (GB 32100), e-mail addresses, licence plates and names after a cue word.
Two texts in five also hold a remark clause of masking.corpus.remark_part (house numbers in digits or
Chinese numerals, with or without a residence word; WeChat ids; names before what the person did, with or
without a cue word; or a look-alike of one of them), drawn from a stream of its own so the rest of the
corpus is the same for a seed; one text in four a clause of masking.corpus.birth_part (a resident's birth
date after or before a birth cue word, in digits, numerals or full-width, with or without the day; or a
visit date, a deadline, a review year or a cue in another clause, which are no one's birth date), from a
third stream. With them, about 31 % of the texts carry no personal data. Labels are (entity type, exact
surface text).

The identifier, name and card generators are masking.corpus's (the recognizer tests' corpus), called with
this corpus's regions and without space-separated mobiles; landlines, plates and the plain notes are its own.
"""

from __future__ import annotations

import random

from masking import corpus as corpus_values

# The recognizer corpus's regions plus the demo district's (310151); IDs and credit codes are drawn here.
REGIONS = (*corpus_values.REGIONS, "310151")
PLAIN = (
    "本月走访{n}户，发放慰问物资{m}元",
    "{y}年{mo}月完成年度复核，情况属实",
    "老人身体状况良好，独居，子女在外地务工",
    "房屋为{n}层砖混结构，{y}年翻修",
    "已告知办理流程，材料待补齐后再报镇里",
    "参加村民代表大会，讨论{y}年道路硬化方案",
    "订单编号{o}已办结，费用{m}元",
    "{n}组{k}号门前路灯损坏，已报修",
    "低保金按月发放，本季度共{m}元",
    "网格巡查未发现异常，垃圾分类落实到位",
)


def id_number(rng: random.Random) -> str:
    return corpus_values.id_number(rng, REGIONS)


def _landline(rng: random.Random) -> str:
    area = rng.choice(("0571", "0571", "010", "021"))
    digits = 8 if area in ("010", "021") else rng.choice((7, 8))
    return f"{area}-{rng.randint(2, 8)}{rng.randint(0, 10 ** (digits - 1) - 1):0{digits - 1}d}"


def _plate(rng: random.Random) -> str:
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    return rng.choice("浙沪苏京粤川") + rng.choice(letters[:8]) + f"{rng.randint(10000, 99999)}"


def _plain(rng: random.Random) -> str:
    return rng.choice(PLAIN).format(
        n=rng.randint(1, 30),
        m=rng.randint(100, 9999),
        y=rng.randint(2015, 2025),
        mo=rng.randint(1, 12),
        k=rng.randint(1, 200),
        o=rng.randint(10**9, 10**10 - 1),
    )


def corpus(n: int, seed: int = 20250601) -> list[tuple[str, list[tuple[str, str]]]]:
    rng = random.Random(seed)
    remarks = random.Random(f"remarks-{seed}")
    births = random.Random(f"births-{seed}")
    docs: list[tuple[str, list[tuple[str, str]]]] = []
    for _ in range(n):
        parts: list[str] = [_plain(rng)]
        labels: list[tuple[str, str]] = []
        if rng.random() < 0.5:
            for _ in range(rng.randint(1, 3)):
                kind = rng.randrange(8)
                if kind == 0:
                    v = id_number(rng)
                    parts.append(rng.choice(("身份证号", "证件号码：", "公民身份号码 ")) + v)
                    labels.append(("CN_ID_NUMBER", v))
                elif kind == 1:
                    v = corpus_values.mobile(rng, spaced_share=0.0)
                    parts.append(rng.choice(("电话", "手机：", "联系方式 ", "请回拨")) + v)
                    labels.append(("CN_MOBILE", v))
                elif kind == 2:
                    v = corpus_values.person_name(rng)
                    parts.append(rng.choice(corpus_values.CUES) + rng.choice(("", "：")) + v)
                    labels.append(("PERSON", v))
                elif kind == 3:
                    v = corpus_values.bank_card(rng)
                    parts.append("银行卡号" + v)
                    labels.append(("BANK_CARD", v))
                elif kind == 4:
                    v = _landline(rng)
                    parts.append("座机" + v)
                    labels.append(("CN_LANDLINE", v))
                elif kind == 5:
                    v = corpus_values.credit_code(rng, REGIONS)
                    parts.append("统一社会信用代码" + v)
                    labels.append(("CN_CREDIT_CODE", v))
                elif kind == 6:
                    v = f"{rng.choice(('zhang', 'li.wei', 'wangfang'))}{rng.randint(1, 999)}@example.com"
                    parts.append("邮箱" + v)
                    labels.append(("EMAIL_ADDRESS", v))
                else:
                    v = _plate(rng)
                    parts.append("车牌" + v)
                    labels.append(("CN_LICENCE_PLATE", v))
        rng.shuffle(parts)
        if remarks.random() < 0.4:
            part, part_labels = corpus_values.remark_part(remarks)
            parts.insert(remarks.randint(0, len(parts)), part)
            labels.extend(part_labels)
        if births.random() < 0.25:
            part, part_labels = corpus_values.birth_part(births)
            parts.insert(births.randint(0, len(parts)), part)
            labels.extend(part_labels)
        docs.append(("，".join(parts) + rng.choice(("。", "，已核实。", "；需回访。")), labels))
    return docs
