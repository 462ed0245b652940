"""Free-text recognizers: agreement with python-stdnum, and precision/recall on a generated corpus."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from stdnum import luhn
from stdnum.cn import ric, uscc
from stdnum.iso7064 import mod_11_2

from masking import FreeTextScanner
from masking.detectors import id_checksum_ok, is_valid_credit_code, is_valid_id_number

NUMBERS = json.loads(Path("/work/shared/vectors/cn_numbers.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", NUMBERS["resident_id"], ids=lambda c: c["number"])
def test_id_detector_agrees_with_stdnum(scanner: FreeTextScanner, case: dict[str, object]) -> None:
    number = str(case["number"])
    assert is_valid_id_number(number) is case["valid"] is ric.is_valid(number)
    assert id_checksum_ok(number) is case["checksum_valid"]
    found = [f for f in scanner.scan(f"身份证号{number}，") if f.entity_type == "CN_ID_NUMBER"]
    assert bool(found) is case["valid"]


@pytest.mark.parametrize("case", NUMBERS["uscc"], ids=lambda c: c["number"])
def test_credit_code_detector_agrees_with_stdnum(scanner: FreeTextScanner, case: dict[str, object]) -> None:
    number = str(case["number"])
    assert is_valid_credit_code(number) is case["valid"] is uscc.is_valid(number)
    if " " not in number:  # in running text the recognizer sees the compact form only
        found = [f for f in scanner.scan(f"信用代码{number}。") if f.entity_type == "CN_CREDIT_CODE"]
        assert bool(found) is case["valid"]


def test_checksum_only_mode_also_flags_ids_unknown_to_stdnum() -> None:
    lenient = FreeTextScanner(entities=["CN_ID_NUMBER"], checksum_only_ids=True)
    assert [f.entity_type for f in lenient.scan("证件990426199112010074")] == ["CN_ID_NUMBER"]
    assert lenient.scan("证件36042619910102009X") == []  # wrong check character: never


# --- generated labelled corpus ----------------------------------------------------------------------

REGIONS = ["110102", "360426", "440113", "412723", "330110", "510104", "320106"]
SURNAMES = [*"王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗", "欧阳", "司马", "诸葛", "上官"]
GIVEN = list("建国明华娜丽伟强秀英军平志刚桂兰玉梅海燕春")
CUES = ["户主", "联系人", "申请人", "村民", "本人", "监护人", "家属"]


def _id(rng: random.Random) -> str:
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
    style = rng.random()
    if style < 0.15:
        return f"{raw[:3]}-{raw[3:7]}-{raw[7:]}"
    if style < 0.25:
        return f"{raw[:3]} {raw[3:7]} {raw[7:]}"
    return raw


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


def _corpus(n: int, seed: int = 20250601) -> list[tuple[str, list[tuple[str, str]]]]:
    """(text, [(entity type, exact surface)]) pairs."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        parts: list[str] = []
        labels: list[tuple[str, str]] = []
        for _ in range(rng.randint(1, 4)):
            kind = rng.randrange(8)
            if kind == 0:
                v = _id(rng)
                parts.append(rng.choice(["身份证号", "证件号码：", "公民身份号码 ", ""]) + v)
                labels.append(("CN_ID_NUMBER", v))
            elif kind == 1:
                v = _mobile(rng)
                parts.append(rng.choice(["电话", "手机：", "联系方式 ", "", "请回拨"]) + v)
                labels.append(("CN_MOBILE", v))
            elif kind == 2:
                v = _name(rng)
                parts.append(rng.choice(CUES) + rng.choice(["", "：", " "]) + v)
                labels.append(("PERSON", v))
            elif kind == 3:
                v = _card(rng)
                parts.append("银行卡号" + v)
                labels.append(("BANK_CARD", v))
            elif kind == 4:
                v = f"0{rng.choice(['571', '571', '10', '21'])}-{rng.randint(2_000_000, 8_999_999)}"
                if v.startswith(("010", "021")):
                    v += str(rng.randint(0, 9))
                parts.append("座机" + v)
                labels.append(("CN_LANDLINE", v))
            elif kind == 5:
                v = _credit_code(rng)
                parts.append("统一社会信用代码" + v)
                labels.append(("CN_CREDIT_CODE", v))
            else:
                parts.append(_decoy(rng))
        docs.append(("，".join(parts) + rng.choice(["。", "，已核实。", "；需回访。"]), labels))
    return docs


def _score(
    scanner: FreeTextScanner, corpus: list[tuple[str, list[tuple[str, str]]]]
) -> dict[str, tuple[float, float]]:
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for text, labels in corpus:
        found = Counter((f.entity_type, text[f.start : f.end]) for f in scanner.scan(text))
        expected = Counter(labels)
        for key, n in expected.items():
            hit = min(n, found[key])
            tp[key[0]] += hit
            fn[key[0]] += n - hit
        for key, n in found.items():
            fp[key[0]] += max(0, n - expected[key])
    types = set(tp) | set(fp) | set(fn)
    return {
        t: (tp[t] / ((tp[t] + fp[t]) or 1), tp[t] / ((tp[t] + fn[t]) or 1))  # (precision, recall)
        for t in sorted(types)
    }


def test_recall_and_precision_on_a_generated_corpus(scanner: FreeTextScanner) -> None:
    metrics = _score(scanner, _corpus(1500))
    for entity, (precision, recall) in metrics.items():
        print(f"{entity:16s} precision={precision:.4f} recall={recall:.4f}")
    assert metrics["CN_ID_NUMBER"][1] >= 0.99
    assert metrics["CN_MOBILE"][1] >= 0.99
    assert metrics["CN_ID_NUMBER"][0] >= 0.99
    assert metrics["CN_MOBILE"][0] >= 0.99
    for entity in ("BANK_CARD", "CN_LANDLINE", "PERSON"):
        assert metrics[entity][1] >= 0.9, entity


def test_fast_path_finds_what_the_stock_analyzer_engine_finds(scanner: FreeTextScanner) -> None:
    for text, _ in _corpus(150, seed=7):
        fast = [(f.entity_type, f.start, f.end) for f in scanner.scan(text)]
        stock = [(f.entity_type, f.start, f.end) for f in scanner.scan_with_engine(text)]
        assert fast == stock, text


MASKING = [
    ("户主王建国，电话13812345678。", "户主王**，电话138****5678。"),
    ("联系人：欧阳娜娜 手机 138-1234-5678", "联系人：欧阳** 手机 138****5678"),
    ("身份证号110102199101010078已核", "身份证号110102************已核"),
    ("座机0571-87654321，邮箱zhang.san@example.com", "座机0571-******21，邮箱z***@example.com"),
    ("车牌浙A12345停在村口", "车牌浙A*****停在村口"),
    ("银行卡6222021234567890128", "银行卡622202*********0128"),
    ("统一社会信用代码91110000600037341L", "统一社会信用代码91110000**********"),
    ("王建国同志反映困难", "王**同志反映困难"),
    ("本月走访3户，发放物资200元。", "本月走访3户，发放物资200元。"),
    ("订单12812345678", "订单12812345678"),
]


@pytest.mark.parametrize(("text", "masked"), MASKING)
def test_detected_spans_are_masked_with_the_same_operators(
    scanner: FreeTextScanner, text: str, masked: str
) -> None:
    assert scanner.mask(text) == masked


def test_import_of_masking_does_not_import_presidio() -> None:
    import subprocess
    import sys

    code = "import sys, masking; print('presidio_analyzer' in sys.modules or 'spacy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
