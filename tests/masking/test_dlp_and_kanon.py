from __future__ import annotations

import pytest

from masking import (
    Catalog,
    DriftAlert,
    Finding,
    FreeTextScanner,
    enforce_k_anonymity,
    scan_fields_in_place,
    scan_response,
    smallest_class,
)
from masking.catalog import parse_catalog

CATALOG = """
schema_version = 1
[datasets.d]
owner_department = "x"
provider_system = "s"
record_id_field = "id"
[datasets.d.fields.id]
level = 1
semantic_type = "record_id"
[datasets.d.fields.note]
level = 2
semantic_type = "other"
[datasets.d.fields.mobile]
level = 3
semantic_type = "mobile"
"""


def test_personal_data_in_unclassified_fields_is_masked_and_raised(scanner: FreeTextScanner) -> None:
    catalog: Catalog = parse_catalog(CATALOG)
    records: list[dict[str, object]] = [
        {
            "id": "r1",
            "note": "请联系13812345678",
            "mobile": "138****5678",
            "extra": ["身份证110102199101010078"],
        },
        {"id": "r2", "note": "电话13987654321或13700001111", "mobile": "13812345678"},
        {"id": "r3", "note": "无", "mobile": None},
    ]
    masked, alerts = scan_response(catalog, "d", records, scanner)
    assert masked[0]["note"] == "请联系138****5678"
    assert masked[0]["extra"] == ["身份证110102************"]
    assert masked[1]["mobile"] == "13812345678"  # level 3: its rule already decided; not rescanned
    assert masked[2] == records[2]
    assert alerts == [
        DriftAlert("d", "extra", "CN_ID_NUMBER", 1),
        DriftAlert("d", "note", "CN_MOBILE", 3),
    ]
    assert "13812345678" not in repr(alerts)


def test_a_birth_date_in_an_unclassified_field_is_masked_to_the_year_and_raised(
    scanner: FreeTextScanner,
) -> None:
    """A birth date written into a field nobody classified as personal (catalog drift) reached the reader
    whole, though the birth_date field shows only the year; now masked as in a remark and counted."""
    catalog: Catalog = parse_catalog(CATALOG)
    records: list[dict[str, object]] = [
        {"id": "r1", "note": "户主出生于1948年3月12日，独居"},
        {"id": "r2", "note": "生日：1956-07-08", "extra": {"出生日期": "一九五〇年一月二日出生"}},
        {"id": "r3", "note": "2024年3月5日走访，2023年度低保复核"},
    ]
    masked, alerts = scan_response(catalog, "d", records, scanner)
    assert [r["note"] for r in masked] == [
        "户主出生于1948年**月**日，独居",
        "生日：1956-**-**",
        "2024年3月5日走访，2023年度低保复核",
    ]
    assert masked[1]["extra"] == {"出生日期": "1950年**月**日出生"}
    assert alerts == [
        DriftAlert("d", "extra", "CN_BIRTH_DATE", 1),
        DriftAlert("d", "note", "CN_BIRTH_DATE", 2),
    ]


@pytest.mark.parametrize(
    ("value", "shown", "entity"),
    [
        (13812345678, "138****5678", "CN_MOBILE"),  # a mobile as a JSON number
        (110102199101010078, "110102************", "CN_ID_NUMBER"),  # an ID number in a bigint column
        ([13812345678], ["138****5678"], "CN_MOBILE"),
        ({"110102199101010078": "在保"}, {"110102************": "在保"}, "CN_ID_NUMBER"),  # as a key
        (2, 2, None),  # a number that is nothing personal stays the number
        (True, True, None),
        (3.5, 3.5, None),
    ],
)
def test_personal_data_sent_as_a_number_or_a_key_is_found_like_the_same_digits_in_text(
    scanner: FreeTextScanner, value: object, shown: object, entity: str | None
) -> None:
    catalog: Catalog = parse_catalog(CATALOG)
    masked, alerts = scan_response(catalog, "d", [{"id": "r1", "note": value}], scanner)
    assert masked[0]["note"] == shown
    assert [a.entity_type for a in alerts] == ([entity] if entity else [])


class _RecordingScanner:
    """Wraps the real scanner and records every text it is asked to scan."""

    def __init__(self, inner: FreeTextScanner) -> None:
        self.inner = inner
        self.seen: list[str] = []

    def scan_and_mask(self, text: str) -> tuple[str, list[Finding]]:
        self.seen.append(text)
        return self.inner.scan_and_mask(text)


@pytest.mark.parametrize(
    ("protected", "scanned"),
    [
        # The number n is scanned as written ("3") wherever it is not protected: digits are digits.
        (None, {"r1", "请联系13812345678", "110102", "3"}),  # catalog: level 3+ (mobile) protected
        (frozenset({"note", "mobile"}), {"r1", "110102", "3"}),  # the plan's set wins over the catalog
        (["id", "note", "mobile", "code", "n"], set()),
        ((), {"r1", "请联系13812345678", "13812345678", "110102", "3"}),
    ],
)
def test_protected_fields_are_never_scanned(
    scanner: FreeTextScanner, protected: frozenset[str] | list[str] | None, scanned: set[str]
) -> None:
    catalog: Catalog = parse_catalog(CATALOG)
    record = {"id": "r1", "note": "请联系13812345678", "mobile": "13812345678", "code": "110102", "n": 3}
    recorder = _RecordingScanner(scanner)
    masked, _ = scan_response(catalog, "d", [record], recorder, protected=protected)
    assert set(recorder.seen) == scanned
    for name in record:
        if name not in scanned and record[name] not in scanned:
            assert masked[0][name] is record[name]


def test_a_repeated_value_is_scanned_once_and_counted_every_time(scanner: FreeTextScanner) -> None:
    catalog: Catalog = parse_catalog(CATALOG)
    page = [{"id": f"r{i}", "note": "村口电话13812345678"} for i in range(20)]
    recorder = _RecordingScanner(scanner)
    masked, alerts = scan_response(catalog, "d", page, recorder, protected=frozenset({"id"}))
    assert recorder.seen == ["村口电话13812345678"]
    assert {r["note"] for r in masked} == {"村口电话138****5678"}
    assert alerts == [DriftAlert("d", "note", "CN_MOBILE", 20)]


QI = ["age", "village"]
RECORDS = [
    {"age": 31, "village": "001", "v": 1},
    {"age": 34, "village": "001", "v": 2},
    {"age": 38, "village": "002", "v": 3},
    {"age": 52, "village": "002", "v": 4},
]
LADDERS = {"age": [lambda a: f"{int(a) // 10 * 10}s", lambda a: "adult"]}


@pytest.mark.parametrize(
    ("k", "min_records", "ok", "steps"),
    [
        (1, 0, True, {"age": 0, "village": 0}),
        (2, 0, True, {"age": 2, "village": 0}),
        (3, 0, True, {"age": 2, "village": 1}),
        (5, 0, False, {"age": 0, "village": 0}),  # 4 records < k: refused, nothing to try
        (5, 10, True, {"age": 0, "village": 0}),
    ],
)
def test_k_anonymity_generalises_then_refuses(
    k: int, min_records: int, ok: bool, steps: dict[str, int]
) -> None:
    result = enforce_k_anonymity(RECORDS, QI, k=k, min_records=min_records, ladders=LADDERS)
    assert (result.ok, dict(result.steps)) == (ok, steps)
    if ok and min_records <= len(RECORDS):
        assert smallest_class(result.records, QI) >= k
        assert [r["v"] for r in result.records] == [1, 2, 3, 4]
    if not ok:
        assert result.records == [] and result.reason_zh and result.reason_en


def test_a_checked_result_of_fewer_than_k_records_is_refused_at_once_saying_why() -> None:
    """Fewer than k records can never be k-anonymous: refused without trying any generalisation, and the
    reason says the result is too small (not that some residents' details happen to be rare)."""
    result = enforce_k_anonymity(RECORDS[:2], QI, k=3, min_records=2, ladders=LADDERS)
    assert (result.ok, result.records, dict(result.steps)) == (False, [], {"age": 0, "village": 0})
    assert result.reason_zh.startswith("本次查询结果只有 2 条记录，少于 3 条")
    assert "only 2 records, fewer than 3" in result.reason_en
    # Under the size the guard checks from, the same records are served as they are (casework).
    assert enforce_k_anonymity(RECORDS[:2], QI, k=3, min_records=3, ladders=LADDERS).records == RECORDS[:2]


def test_an_empty_result_is_not_refused_as_a_re_identification_risk() -> None:
    result = enforce_k_anonymity([], QI, k=3, ladders=LADDERS)
    assert (result.ok, result.records, result.reason_zh) == (True, [], "")


def test_scanning_a_masked_page_in_place_agrees_with_scan_response(scanner: FreeTextScanner) -> None:
    catalog: Catalog = parse_catalog(CATALOG)
    page: list[dict[str, object]] = [
        {"id": "r1", "note": "联系人：王建国，13912345678", "extra": {"k": ["邮箱a@b.cn"]}},
        {"id": "110102199101010078", "note": "无", "mobile": "13812345678"},
        {"id": "r3", "note": "联系人：王建国，13912345678", "mobile": None, "extra": None},
        {"id": "r4"},
    ]
    expected, expected_alerts = scan_response(catalog, "d", page, scanner, protected=frozenset({"mobile"}))
    owned = [dict(record) for record in page]
    alerts = scan_fields_in_place("d", owned, ("id", "note", "extra"), scanner)
    assert owned == expected
    assert alerts == expected_alerts
    assert owned[1]["mobile"] == "13812345678"  # a field not named is left as it is
