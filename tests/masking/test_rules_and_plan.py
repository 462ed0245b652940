from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from masking import (
    REDACTED,
    Catalog,
    Finding,
    FreeTextScanner,
    KeyRing,
    Level,
    RulesError,
    RuleSet,
    UnknownDatasetError,
    UnknownProfileError,
    Unmask,
    load_rules,
    mask_record,
    mask_records,
    open_envelope,
    plan_masking,
    response_level,
)
from masking.catalog import catalog_document, catalog_from_document, parse_catalog
from masking.rules import parse_rules
from tests.masking.conftest import AS_OF

ALL_FIELDS = [
    "id",
    "name",
    "id_number",
    "mobile",
    "address",
    "birth_date",
    "household_no",
    "dibao_status",
    "village_code",
    "remark",
]
RESIDENT = {
    "id": "r-0001",
    "name": "欧阳娜娜",
    "id_number": "44011320141005001X",
    "mobile": "13812345678",
    "address": "浙江省湖州市安吉县天荒坪镇余村3组12号",
    "birth_date": "2014-10-05",
    "household_no": "H3305230042",
    "dibao_status": "在保",
    "village_code": "330523101001",
    "remark": "联系人王建国，电话13987654321",
}

# profile -> the record a reader of that profile sees (no key ring, no scanner: keyed/free-text fail closed)
EXPECTED = {
    "standard": {
        "id": "r-0001",
        "name": "欧阳**",
        "id_number": "440113************",
        "mobile": "138****5678",
        "address": "浙江省湖州市安吉县天荒坪镇余村",
        "birth_date": "2014",
        "household_no": "*******0042",
        "dibao_status": "在保",
        "village_code": "330523101001",
        "remark": REDACTED,
    },
    "strict": {
        "id": "r-0001",
        "name": "欧阳**",
        "id_number": REDACTED,
        "mobile": REDACTED,
        "address": "浙江省湖州市安吉县天荒坪镇",
        "birth_date": "10-19",
        "household_no": REDACTED,
        "dibao_status": REDACTED,
        "village_code": "330523101001",
        "remark": REDACTED,
    },
}


@pytest.mark.parametrize("profile", sorted(EXPECTED))
def test_profiles_on_the_demo_resident(catalog: Catalog, rules: RuleSet, profile: str) -> None:
    plan = plan_masking(
        catalog, rules, dataset="residents", fields=ALL_FIELDS, role="village_cadre", scenario="s",
        profile=profile, as_of=AS_OF,
    )  # fmt: skip
    assert mask_record(RESIDENT, plan) == EXPECTED[profile]


def test_standard_profile_masks_free_text_with_the_scanner(
    catalog: Catalog, rules: RuleSet, scanner: object
) -> None:
    plan = plan_masking(
        catalog, rules, dataset="residents", fields=["remark"], role="village_cadre", scenario="s",
        profile="standard", scanner=scanner,  # type: ignore[arg-type]
    )  # fmt: skip
    assert mask_record(RESIDENT, plan) == {"remark": "联系人王**，电话139****4321"}


def test_pseudonymised_profile_uses_the_key_ring(catalog: Catalog, rules: RuleSet, keys: KeyRing) -> None:
    plan = plan_masking(
        catalog, rules, dataset="residents", fields=["id_number", "household_no"], role="analyst",
        scenario="s", profile="pseudonymised", keys=keys,
    )  # fmt: skip
    out = mask_record(RESIDENT, plan)
    assert str(out["id_number"]).startswith(f"ps:{keys.active_key_id}:")
    assert out["id_number"] != out["household_no"]
    without_keys = plan_masking(
        catalog, rules, dataset="residents", fields=["id_number"], role="analyst", scenario="s",
        profile="pseudonymised",
    )  # fmt: skip
    assert mask_record(RESIDENT, without_keys) == {"id_number": REDACTED}
    assert without_keys.decision("id_number").source == "fail-closed:hmac_pseudonym-unavailable"


def test_unknown_field_is_redacted_and_absent_fields_are_dropped(catalog: Catalog, rules: RuleSet) -> None:
    plan = plan_masking(
        catalog, rules, dataset="residents", fields=["id", "salary"], role="village_cadre", scenario="s",
        profile="standard",
    )  # fmt: skip
    record = {"id": "r1", "salary": 4200, "mobile": "13812345678"}
    assert mask_record(record, plan) == {"id": "r1", "salary": REDACTED}
    assert plan.decision("salary").source == "fail-closed:not-catalogued"
    assert mask_record({"id": "r2"}, plan) == {"id": "r2"}
    assert record == {"id": "r1", "salary": 4200, "mobile": "13812345678"}  # input untouched


CATALOG_WITH_UNRULED = """
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
[datasets.d.fields.secret3]
level = 3
semantic_type = "other"
[datasets.d.fields.secret4]
level = 4
semantic_type = "other"
[datasets.d.fields.vital]
level = "important"
semantic_type = "other"
"""


@pytest.mark.parametrize(
    ("field", "shown", "source"),
    [
        ("id", "v", "default:keep"),
        ("note", "v", "default:keep"),
        ("secret3", REDACTED, "fail-closed:no-rule"),
        ("secret4", REDACTED, "fail-closed:no-rule"),
        ("vital", REDACTED, "fail-closed:important"),
    ],
)
def test_a_field_at_level_3_or_above_with_no_rule_is_redacted(
    rules: RuleSet, field: str, shown: str, source: str
) -> None:
    catalog = parse_catalog(CATALOG_WITH_UNRULED)
    plan = plan_masking(
        catalog, rules, dataset="d", fields=[field], role="r", scenario="s", profile="standard"
    )
    assert mask_record({field: "v"}, plan) == {field: shown}
    assert plan.decision(field).source == source


def test_important_and_core_data_are_redacted_whatever_rule_or_exemption_would_show_them(
    catalog: Catalog, rules: RuleSet
) -> None:
    doc = catalog_document(catalog)
    doc["datasets"]["residents"]["fields"]["mobile"]["level"] = "important"
    doc["datasets"]["residents"]["fields"]["household_no"]["level"] = "core"
    raised = catalog_from_document(doc)
    for exemptions in ({}, {"mobile": "keep", "household_no": "keep"}):
        plan = plan_masking(
            raised, rules, dataset="residents", fields=["mobile", "household_no"], role="village_cadre",
            scenario="DIBAO_REVIEW", profile="standard", exemptions=exemptions,
        )  # fmt: skip
        assert mask_record({"mobile": "13812345678", "household_no": "3102100009"}, plan) == {
            "mobile": REDACTED,
            "household_no": REDACTED,
        }
        assert plan.decision("mobile").source == "fail-closed:important"
        assert plan.decision("household_no").source == "fail-closed:core"


def test_exemption_from_the_policy_overrides_the_rule_for_that_field_only(
    catalog: Catalog, rules: RuleSet
) -> None:
    plan = plan_masking(
        catalog, rules, dataset="residents", fields=["mobile", "id_number", "salary"], role="village_cadre",
        scenario="elderly_visit", profile="standard", exemptions={"mobile": "keep", "salary": "keep"},
    )  # fmt: skip
    out = mask_record({**RESIDENT, "salary": 1}, plan)
    assert out == {"mobile": "13812345678", "id_number": "440113************", "salary": REDACTED}
    assert plan.decision("mobile").source == "exemption"


# (value in a mobile field, what a cadre sees, the operator that masked it)
PHONES_IN_A_MOBILE_FIELD = [
    ("13812345678", "138****5678", "mobile"),
    ("021-59612345", "021-******45", "landline"),  # an elderly resident's home phone
    ("0571 8888 1234", "0571-******34", "landline"),
    ("02159612345", "021-******45", "landline"),
    ("59612345", "******45", "landline"),  # no area code
    ("(0571)87654321转123", "0571-******21", "landline"),  # the extension is dropped
    ("不详", REDACTED, "mobile"),  # neither: fail closed
    ("12345", REDACTED, "mobile"),
    ("1381234567", REDACTED, "mobile"),  # a mobile missing a digit is not read as a landline
]


@pytest.mark.parametrize(("value", "shown", "applied"), PHONES_IN_A_MOBILE_FIELD)
def test_a_landline_in_a_mobile_field_is_masked_as_the_landline_rule_would(
    catalog: Catalog, rules: RuleSet, value: str, shown: str, applied: str
) -> None:
    plan = plan_masking(
        catalog, rules, dataset="residents", fields=["mobile"], role="village_cadre",
        scenario="DIBAO_REVIEW", profile="standard",
    )  # fmt: skip
    assert mask_record({"mobile": value}, plan) == {"mobile": shown}
    assert mask_records([{"mobile": value}], plan) == [{"mobile": shown}]
    assert plan.applied("mobile", value).operator == applied
    fallback = plan.explain()[0]["fallback"]
    assert isinstance(fallback, dict)
    assert (fallback["operator"], fallback["source"]) == ("landline", "rule:standard.landline")
    assert "固定电话" in str(fallback["when_zh"])


def test_a_landline_in_a_mobile_field_is_shown_no_more_than_the_profiles_landline_rule_shows() -> None:
    """The fallback is the landline rule of the same profile, level, role and scenario: its parameters
    are kept, and where landlines are redacted (or no rule covers them) so are they in a mobile field."""
    catalog = parse_catalog(
        CATALOG_WITH_UNRULED + '[datasets.d.fields.phone]\nlevel = 3\nsemantic_type = "mobile"\n'
    )
    head = (
        RULES_HEAD + '[[rules]]\nid = "m"\nprofile = "p"\nsemantic_types = ["mobile"]\noperator = "mobile"\n'
    )
    landline = '[[rules]]\nid = "l"\nprofile = "p"\nsemantic_types = ["landline"]\noperator = "landline"\n'
    for extra, shown in (
        (landline + "params = { keep_last = 0 }\n", "021-********"),
        (landline.replace('"landline"\n', '"redact"\n'), REDACTED),
        (landline + 'roles = ["someone_else"]\n', REDACTED),
        ("", REDACTED),
    ):
        plan = plan_masking(
            catalog,
            parse_rules(head + extra),
            dataset="d",
            fields=["phone"],
            role="r",
            scenario="s",
            profile="p",
        )
        assert mask_record({"phone": "021-59612345"}, plan) == {"phone": shown}, extra
        assert mask_record({"phone": "13812345678"}, plan) == {"phone": "138****5678"}


def test_plan_refuses_unknown_profile_dataset_and_exemption_operator(
    catalog: Catalog, rules: RuleSet
) -> None:
    args = {"fields": ["id"], "role": "r", "scenario": "s"}
    with pytest.raises(UnknownProfileError):
        plan_masking(catalog, rules, dataset="residents", profile="lenient", **args)  # type: ignore[arg-type]
    with pytest.raises(UnknownDatasetError):
        plan_masking(catalog, rules, dataset="taxes", profile="standard", **args)  # type: ignore[arg-type]
    with pytest.raises(Exception, match="unknown operator"):
        plan_masking(
            catalog, rules, dataset="residents", profile="standard", exemptions={"id": "show_all"},
            **args,  # type: ignore[arg-type]
        )  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "level"),
    [
        ([], Level.L1),
        (["id", "village_code"], Level.L1),
        (["id", "name"], Level.L3),
        (["id", "name", "id_number"], Level.L4),
        (["id", "not_catalogued"], Level.L4),
    ],
)
def test_response_level_is_the_highest_field_level(catalog: Catalog, fields: list[str], level: Level) -> None:
    assert response_level(catalog, "residents", fields) is level
    if fields:
        plan = plan_masking(
            catalog,
            load_rules(),
            dataset="residents",
            fields=fields,
            role="r",
            scenario="s",
            profile="strict",
        )
        assert plan.level is level


RULES_HEAD = """
schema_version = 1
[profiles.p]
"""
RULE = """
[[rules]]
id = "r1"
profile = "p"
semantic_types = ["mobile"]
roles = ["village_cadre"]
operator = "mobile"
params = { keep_first = 3 }
"""

RULE_ERRORS = [
    ('operator = "mobile"', 'operator = "mobil"', "rules[0] (r1)", "unknown operator"),
    ("keep_first = 3", "keep_first = 9", "rules[0] (r1)", "keep_first"),
    ("keep_first = 3", "keep_frist = 3", "rules[0] (r1)", "keep_frist"),
    ('profile = "p"', 'profile = "q"', "rules[0] (r1)", "profile"),
    ('semantic_types = ["mobile"]', 'semantic_types = ["phone"]', "rules[0] (r1)", "semantic type"),
    ('roles = ["village_cadre"]', "roles = []", "rules[0] (r1)", "roles"),
    ('roles = ["village_cadre"]', 'roles = ["*", "x"]', "rules[0] (r1)", "roles"),
    ('roles = ["village_cadre"]', "levels = [9]", "rules[0] (r1)", "level"),
    ('id = "r1"', 'id = ""', "rules[0]", "id"),
]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("old", "new", "entry", "mentions"), RULE_ERRORS)
def test_rule_validation_errors_name_file_and_rule(
    tmp_path: Path, old: str, new: str, entry: str, mentions: str
) -> None:
    assert old in RULE
    path = _write(tmp_path, RULES_HEAD + RULE.replace(old, new, 1))
    with pytest.raises(RulesError) as exc:
        load_rules(path)
    assert exc.value.path == str(path)
    assert exc.value.entry == entry
    assert mentions in exc.value.message_en
    assert exc.value.message_zh


#: What the Chinese line says, which a steward reads first: it once said only 含有未知键, 超出范围,
#: 取值无效 or 类型应为 int, while the English line named the key, the range or the valid values.
RULE_ERRORS_ZH = [
    ("params = { keep_first = 3 }", "param = { keep_first = 3 }", "未知的键 param；是否指 params？"),
    ("keep_first = 3", "keep_first = 9", "超出范围，应在 0 到 3 之间"),
    ("keep_first = 3", 'keep_first = "3"', "类型应为整数（不加引号）"),
    ('operator = "mobile"', 'operator = "address"', None),
    ('roles = ["village_cadre"]', "levels = [9]", "一般数据为 1–4 级，更高的写 important 或 core"),
]


@pytest.mark.parametrize(("old", "new", "says"), RULE_ERRORS_ZH)
def test_rule_validation_errors_say_in_chinese_what_is_wrong(
    tmp_path: Path, old: str, new: str, says: str | None
) -> None:
    text = RULE.replace(old, new, 1)
    if says is None:  # an address rule whose level is misspelt
        text = text.replace("params = { keep_first = 3 }", 'params = { level = "vilage" }')
        says = "取值无效，可选：province、city、county、township、village"
    with pytest.raises(RulesError) as exc:
        load_rules(_write(tmp_path, RULES_HEAD + text))
    assert says in exc.value.message_zh


def test_duplicate_rule_ids_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="duplicate"):
        load_rules(_write(tmp_path, RULES_HEAD + RULE + RULE))


def test_first_matching_rule_wins_and_selectors_filter() -> None:
    rules = parse_rules(
        RULES_HEAD
        + RULE
        + '[[rules]]\nid = "r2"\nprofile = "p"\nsemantic_types = ["mobile"]\noperator = "redact"\n'
    )
    kw = {"profile": "p", "level": Level.L3, "scenario": "s"}
    from masking import SemanticType

    cadre = rules.match(semantic_type=SemanticType.MOBILE, role="village_cadre", **kw)  # type: ignore[arg-type]
    other = rules.match(semantic_type=SemanticType.MOBILE, role="township_officer", **kw)  # type: ignore[arg-type]
    none = rules.match(semantic_type=SemanticType.PERSON_NAME, role="village_cadre", **kw)  # type: ignore[arg-type]
    assert (cadre and cadre.id, other and other.id, none) == ("r1", "r2", None)


def test_packaged_rules_declare_standard_and_strict(rules: RuleSet) -> None:
    assert {"standard", "strict"} <= rules.profiles


def test_an_envelope_served_with_its_records_resident_is_sealed_with_her(
    catalog: Catalog, rules: RuleSet, keys: KeyRing
) -> None:
    """Given each record's subject, an aes_gcm field is sealed with it (enc:v3:, opened with that subject);
    a record naming nobody, or a page masked without subjects (a dry-run), gets enc:v2:. Other fields are
    masked exactly as without subjects."""
    plan = plan_masking(
        catalog, rules, dataset="residents", fields=["id", "mobile", "name"], role="village_cadre",
        scenario="s", profile="standard", exemptions={"mobile": "aes_gcm"}, keys=keys, as_of=AS_OF,
    )  # fmt: skip
    assert plan.names_subjects
    page: list[dict[str, object]] = [RESIDENT, {**RESIDENT, "id": "r-0002"}, {"id": "r-0003", "mobile": None}]
    subjects = [b"a1" + bytes(32), None, b"a1" + bytes([7] * 32)]
    masked = mask_records(page, plan, subjects)
    assert [r["mobile"][:7] for r in masked[:2]] == ["enc:v3:", "enc:v2:"]
    assert masked[2]["mobile"] is None
    unmask = Unmask(actor="steward-1", purpose="dispute", audit_event_id="7")
    opened = open_envelope(masked[0]["mobile"], keys, dataset="residents", context="residents.mobile",
                           unmask=unmask)  # fmt: skip
    assert (opened.value, opened.subject) == (RESIDENT["mobile"], subjects[0])
    assert [r.get("name") for r in masked] == [r.get("name") for r in mask_records(page, plan)]
    assert {r["mobile"][:7] for r in mask_records(page[:2], plan)} == {"enc:v2:"}
    without = plan_masking(
        catalog, rules, dataset="residents", fields=["id", "mobile"], role="village_cadre", scenario="s",
        profile="standard", keys=keys, as_of=AS_OF,
    )  # fmt: skip
    assert not without.names_subjects
    assert mask_records(page, without, subjects) == mask_records(page, without)


def test_mask_records_is_mask_record_over_the_page_and_scans_repeated_free_text_once(
    catalog: Catalog, rules: RuleSet, scanner: FreeTextScanner
) -> None:
    plan = plan_masking(
        catalog, rules, dataset="residents", fields=ALL_FIELDS, role="village_cadre", scenario="s",
        profile="standard", scanner=scanner, as_of=AS_OF,
    )  # fmt: skip
    other = {**RESIDENT, "id": "r-0002", "remark": "独居老人", "mobile": None}
    page = [RESIDENT, other, {**RESIDENT, "id": "r-0003"}, {"id": "r-0004"}]
    assert mask_records(page, plan) == [mask_record(record, plan) for record in page]

    scanned: list[str] = []

    class Counting(FreeTextScanner):
        # What the plan's free-text operator calls (with the profile's operators for the items it finds).
        def scan_and_mask(
            self, text: str, maskers: Mapping[str, Callable[[str], str]] | None = None
        ) -> tuple[str, list[Finding]]:
            scanned.append(text)
            return super().scan_and_mask(text, maskers)

    counting = plan_masking(
        catalog, rules, dataset="residents", fields=["id", "remark"], role="village_cadre", scenario="s",
        profile="standard", scanner=Counting(), as_of=AS_OF,
    )  # fmt: skip
    masked = mask_records(page, counting)
    assert [r.get("remark") for r in masked] == [
        "联系人王**，电话139****4321",
        "独居老人",
        "联系人王**，电话139****4321",
        None,
    ]
    assert sorted(scanned) == sorted({str(RESIDENT["remark"]), "独居老人"})  # once per distinct text
    scanned.clear()
    mask_records(page, counting)
    assert len(scanned) == 2  # the memo lives for one call: nothing is kept between requests


def test_mask_records_never_memoises_a_randomised_operator(
    catalog: Catalog, rules: RuleSet, keys: KeyRing
) -> None:
    plan = plan_masking(
        catalog, rules, dataset="residents", fields=["id", "id_number"], role="analyst", scenario="s",
        profile="standard", exemptions={"id_number": "aes_gcm"}, keys=keys, as_of=AS_OF,
    )  # fmt: skip
    first, second = mask_records([RESIDENT, {**RESIDENT, "id": "r-0002"}], plan)
    assert first["id_number"] != second["id_number"]  # a fresh nonce per value, even for the same number
