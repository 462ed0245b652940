"""Free-text recognizers: agreement with python-stdnum, and precision/recall on a generated corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stdnum.cn import ric, uscc

from masking import FreeTextScanner
from masking.corpus import labelled_corpus, score
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


# --- generated labelled corpus (masking.corpus, shared with the benchmark) -----------------------------


def test_recall_and_precision_on_a_generated_corpus(scanner: FreeTextScanner) -> None:
    metrics = score(scanner.scan, labelled_corpus(1500))
    for entity, m in metrics.items():
        print(f"{entity:16s} precision={m.precision:.4f} recall={m.recall:.4f}")
    assert metrics["CN_ID_NUMBER"].recall >= 0.99
    assert metrics["CN_MOBILE"].recall >= 0.99
    assert metrics["CN_ID_NUMBER"].precision >= 0.99
    assert metrics["CN_MOBILE"].precision >= 0.99
    for entity in ("BANK_CARD", "CN_LANDLINE", "PERSON"):
        assert metrics[entity].recall >= 0.9, entity


def test_fast_path_finds_what_the_stock_analyzer_engine_finds(scanner: FreeTextScanner) -> None:
    for text, _ in labelled_corpus(150, seed=7):
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
