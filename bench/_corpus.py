"""A generated, labelled corpus of Chinese free text (remark fields, visit notes) for the DLP benchmark.

Half the texts carry no personal data at all (work notes with money, dates, house numbers and order
numbers as look-alikes), as remark fields mostly do; the other half carry one to three labelled items:
resident ID numbers (GB 11643, check character by python-stdnum), mobiles, landlines, bank cards (Luhn),
unified social credit codes (GB 32100), e-mail addresses, licence plates and names after a cue word.
Labels are (entity type, exact surface text).
"""

from __future__ import annotations

import random

from stdnum import luhn
from stdnum.cn import ric, uscc
from stdnum.iso7064 import mod_11_2

REGIONS = ("110102", "360426", "440113", "412723", "330110", "510104", "320106", "310151")
# Common surnames, compound ones and rarer ones of the 百家姓 / census list (桂, 冼, 隋, 亓, 覃).
SURNAMES = (*"王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗桂冼隋亓覃", "欧阳", "司马", "诸葛", "上官")
GIVEN = "建国明华娜丽伟强秀英军平志刚桂兰玉梅海燕春"
# Role cues and the kin / contact cues remarks use (其子高慧…, 紧急联系人：桂秀珍).
CUES = ("户主", "联系人", "申请人", "村民", "本人", "监护人", "家属", "其子", "其妻", "紧急联系人", "代办人")
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
    while True:
        body = (
            f"{rng.choice(REGIONS)}{rng.randint(1940, 2015)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        )
        body += f"{rng.randint(0, 999):03d}"
        number = body + mod_11_2.calc_check_digit(body)
        if ric.is_valid(number):
            return number


def _mobile(rng: random.Random) -> str:
    raw = f"1{rng.choice('3456789')}{rng.randint(0, 999_999_999):09d}"
    return f"{raw[:3]}-{raw[3:7]}-{raw[7:]}" if rng.random() < 0.15 else raw


def _card(rng: random.Random) -> str:
    body = "62" + "".join(str(rng.randint(0, 9)) for _ in range(15))
    return body + luhn.calc_check_digit(body)


def _credit_code(rng: random.Random) -> str:
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    body = rng.choice("159") + rng.choice("123") + rng.choice(REGIONS)
    body += "".join(rng.choice(alphabet) for _ in range(9))
    return body + uscc.calc_check_digit(body)


def _name(rng: random.Random) -> str:
    surname: str = rng.choice(SURNAMES)
    return surname + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))


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
                    v = _mobile(rng)
                    parts.append(rng.choice(("电话", "手机：", "联系方式 ", "请回拨")) + v)
                    labels.append(("CN_MOBILE", v))
                elif kind == 2:
                    v = _name(rng)
                    parts.append(rng.choice(CUES) + rng.choice(("", "：")) + v)
                    labels.append(("PERSON", v))
                elif kind == 3:
                    v = _card(rng)
                    parts.append("银行卡号" + v)
                    labels.append(("BANK_CARD", v))
                elif kind == 4:
                    v = _landline(rng)
                    parts.append("座机" + v)
                    labels.append(("CN_LANDLINE", v))
                elif kind == 5:
                    v = _credit_code(rng)
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
        docs.append(("，".join(parts) + rng.choice(("。", "，已核实。", "；需回访。")), labels))
    return docs
