"""Personal data found in free text is masked as the plan's profile masks a field of its type, for this
reader and scenario, and never more visibly than the scanner's own masking (masking.items).

Before, the scanner's fixed operators masked every item whatever the profile: under a stricter profile a
mobile in a remark was shown more than the same number in the mobile field."""

from __future__ import annotations

from typing import Any

import pytest

from masking import (
    Catalog,
    FreeTextScanner,
    KeyRing,
    RuleSet,
    Unmask,
    mask_record,
    mask_records,
    open_envelope,
    plan_masking,
)
from masking.rules import packaged_rules_document, rules_from_document
from tests.masking.conftest import AS_OF

MOBILE = "13912345678"
ID_NUMBER = "310210195703021234"


def with_profile(name: str, *rules: dict[str, Any]) -> RuleSet:
    """The packaged rules plus a profile ``name`` made of ``rules`` (each gets the profile)."""
    doc = packaged_rules_document()
    doc["profiles"][name] = {"description": "test"}
    doc["rules"] += [{"profile": name, **rule} for rule in rules]
    return rules_from_document(doc)


def rule(semantic_type: str, operator: str, **params: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": f"t.{semantic_type}",
        "semantic_types": [semantic_type],
        "operator": operator,
    }
    return {**out, "params": params} if params else out


FREE_TEXT = rule("free_text", "freetext")


def masked(
    catalog: Catalog,
    rules: RuleSet,
    scanner: FreeTextScanner,
    record: dict[str, object],
    *,
    profile: str,
    keys: KeyRing | None = None,
    exemptions: dict[str, str] | None = None,
) -> dict[str, object]:
    plan = plan_masking(
        catalog, rules, dataset="residents", fields=tuple(record), role="village_cadre", scenario="s",
        profile=profile, scanner=scanner, keys=keys, exemptions=exemptions, as_of=AS_OF,
    )  # fmt: skip
    return mask_record(record, plan)


# (the profile's rule for the item's type, the remark, what the remark shows)
STRICTER = [
    (rule("mobile", "partial", keep_last=4), f"电话{MOBILE}", "电话*******5678"),
    (rule("mobile", "mobile", keep_first=0, keep_last=2), f"电话{MOBILE}", "电话*********78"),
    (rule("mobile", "redact"), f"电话{MOBILE}", "电话***"),
    (rule("id_number", "cn_id", keep_region=2), f"身份证号{ID_NUMBER}", "身份证号31****************"),
    (rule("person_name", "name", preserve_length=False), "联系人王明，", "联系人王**，"),
    (rule("landline", "landline", keep_last=0), "座机0571-87654321", "座机0571-********"),
    (rule("email", "redact"), "邮箱zhang.san@example.com", "邮箱***"),
    (rule("birth_date", "age_bucket", width=10), "该户主出生于1948年3月12日", "该户主出生于70-79"),
]


@pytest.mark.parametrize(("type_rule", "text", "expected"), STRICTER, ids=lambda v: str(v)[:24])
def test_an_item_in_free_text_is_shown_no_more_than_its_profile_shows_a_field_of_its_type(
    catalog: Catalog, scanner: FreeTextScanner, type_rule: dict[str, Any], text: str, expected: str
) -> None:
    rules = with_profile("tight", FREE_TEXT, type_rule)
    assert masked(catalog, rules, scanner, {"remark": text}, profile="tight") == {"remark": expected}


def test_a_mobile_in_a_remark_is_shown_as_the_same_number_in_the_mobile_field(
    catalog: Catalog, scanner: FreeTextScanner
) -> None:
    rules = with_profile("tight", FREE_TEXT, rule("mobile", "partial", keep_last=4))
    out = masked(catalog, rules, scanner, {"remark": f"电话{MOBILE}", "mobile": MOBILE}, profile="tight")
    assert out["remark"] == f"电话{out['mobile']}" == "电话*******5678"


# A rule that shows more than the scanner does: the scanner's masking stands (for the same operator, each
# parameter takes the less revealing value).
LOOSER = [
    (rule("mobile", "keep"), f"电话{MOBILE}", "电话139****5678", "scanner"),
    (rule("id_number", "cn_id", keep_birth_year=True, keep_check=True), f"身份证号{ID_NUMBER}",
     "身份证号310210************", "rule:t.id_number+scanner"),
    (rule("id_number", "cn_id", keep_region=2, keep_birth_year=True), f"身份证号{ID_NUMBER}",
     "身份证号31****************", "rule:t.id_number+scanner"),
    (rule("landline", "landline", keep_last=4), "座机0571-87654321", "座机0571-******21",
     "rule:t.landline+scanner"),
    (rule("mobile", "partial", keep_first=5, keep_last=6), f"电话{MOBILE}", "电话139****5678",
     "rule:t.mobile+scanner"),
    (rule("birth_date", "date", granularity="month"), "出生于1948年3月12日", "出生于1948年**月**日",
     "scanner"),
]  # fmt: skip


@pytest.mark.parametrize(("type_rule", "text", "expected", "source"), LOOSER, ids=lambda v: str(v)[:24])
def test_a_rule_that_shows_more_than_the_scanner_never_shows_more_in_free_text(
    catalog: Catalog,
    scanner: FreeTextScanner,
    type_rule: dict[str, Any],
    text: str,
    expected: str,
    source: str,
) -> None:
    rules = with_profile("loose", FREE_TEXT, type_rule)
    assert masked(catalog, rules, scanner, {"remark": text}, profile="loose") == {"remark": expected}
    plan = plan_masking(
        catalog, rules, dataset="residents", fields=["remark"], role="village_cadre", scenario="s",
        profile="loose", scanner=scanner, as_of=AS_OF,
    )  # fmt: skip
    entity = {"mobile": "CN_MOBILE", "id_number": "CN_ID_NUMBER", "landline": "CN_LANDLINE",
              "birth_date": "CN_BIRTH_DATE"}[type_rule["semantic_types"][0]]  # fmt: skip
    (item,) = [i for i in plan.decision("remark").items if i.entity_type == entity]
    assert item.source == source
    assert item.field_source == ("rule:t." + type_rule["semantic_types"][0])


def test_an_item_is_matched_at_the_level_of_a_field_of_its_type_when_that_is_higher(
    catalog: Catalog, scanner: FreeTextScanner
) -> None:
    """The remark is level 3, the ID number field level 4 (就高从严): a rule that hides level-4 ID numbers
    hides one in a remark too."""
    rules = with_profile(
        "by_level",
        FREE_TEXT,
        {"id": "t.id4", "semantic_types": ["id_number"], "levels": [4], "operator": "redact"},
        {"id": "t.id3", "semantic_types": ["id_number"], "levels": [3], "operator": "cn_id"},
    )
    out = masked(catalog, rules, scanner, {"remark": f"身份证号{ID_NUMBER}"}, profile="by_level")
    assert out == {"remark": "身份证号***"}


def test_a_type_no_rule_covers_and_an_operator_that_cannot_be_compared_hide_the_item(
    catalog: Catalog, scanner: FreeTextScanner
) -> None:
    """As a level 3+ field no rule covers is redacted; an operator of another kind (age_bucket for a name)
    cannot be said to show no more than the scanner, so the item is hidden whole (fail closed)."""
    rules = with_profile("odd", FREE_TEXT, rule("person_name", "age_bucket"))
    out = masked(catalog, rules, scanner, {"remark": f"联系人王小明，电话{MOBILE}"}, profile="odd")
    assert out == {"remark": "联系人***，电话***"}
    plan = plan_masking(
        catalog, rules, dataset="residents", fields=["remark"], role="village_cadre", scenario="s",
        profile="odd", scanner=scanner, as_of=AS_OF,
    )  # fmt: skip
    sources = {i.entity_type: (i.operator, i.source) for i in plan.decision("remark").items}
    assert sources["PERSON"] == ("redact", "fail-closed:incomparable")
    assert sources["CN_MOBILE"] == ("redact", "fail-closed:no-rule")
    assert sources["PASSPORT"] == ("freetext", "scanner")  # no field type: the scanner's own masking


def test_the_packaged_strict_profile_hides_in_a_remark_what_it_hides_in_fields(
    catalog: Catalog, rules: RuleSet, scanner: FreeTextScanner
) -> None:
    """strict has no free-text rule (the remark is redacted); a scenario exempting the remark to freetext
    no longer shows its ID numbers and mobiles as the standard scanner masked them."""
    record = {"remark": f"联系人王小明，电话{MOBILE}，身份证号{ID_NUMBER}，出生于1948年3月12日"}
    out = masked(catalog, rules, scanner, record, profile="strict", exemptions={"remark": "freetext"})
    assert out == {"remark": "联系人王**，电话***，身份证号***，出生于70-79"}


def test_the_standard_profile_masks_an_email_in_a_remark_as_its_email_field(
    catalog: Catalog, rules: RuleSet, scanner: FreeTextScanner
) -> None:
    """standard.email keeps the first character and hides the domain; the scanner showed the domain."""
    out = masked(catalog, rules, scanner, {"remark": "邮箱zhang.san@example.com"}, profile="standard")
    assert out == {"remark": "邮箱" + "z" + "*" * 20}


def test_a_keyed_pseudonym_in_a_remark_is_the_id_number_fields(
    catalog: Catalog, rules: RuleSet, scanner: FreeTextScanner, keys: KeyRing
) -> None:
    record = {"remark": f"其子身份证号{ID_NUMBER}", "id_number": ID_NUMBER}
    out = masked(
        catalog, rules, scanner, record, profile="pseudonymised", keys=keys, exemptions={"remark": "freetext"}
    )
    assert str(out["id_number"]).startswith("ps:")
    assert out["remark"] == f"其子身份证号{out['id_number']}"


def test_a_remark_whose_items_are_sealed_is_not_memoised_per_page(
    catalog: Catalog, scanner: FreeTextScanner, keys: KeyRing
) -> None:
    """An envelope's nonce must stay fresh: two residents with the same remark get two envelopes, not one
    repeated (which would tell the reader the two hidden numbers are equal)."""
    rules = with_profile("sealed", FREE_TEXT, rule("id_number", "aes_gcm"))
    plan = plan_masking(
        catalog, rules, dataset="residents", fields=["remark"], role="village_cadre", scenario="s",
        profile="sealed", scanner=scanner, keys=keys, as_of=AS_OF,
    )  # fmt: skip
    page = [{"remark": f"身份证号{ID_NUMBER}"}] * 2
    first, second = (str(r["remark"]) for r in mask_records(page, plan))
    assert first.startswith("身份证号enc:") and second.startswith("身份证号enc:") and first != second


def test_an_envelope_in_a_remark_is_sealed_with_the_records_resident(
    catalog: Catalog, scanner: FreeTextScanner, keys: KeyRing
) -> None:
    """A mobile in a remark sealed by aes_gcm was enc:v2: although the record names its resident, as the
    mobile field's envelope (enc:v3:) does: a steward unmasking it was not recorded as having read her data
    (masking.unmask_revealed), and she never saw it in her transparency list. Now it is sealed with her."""
    rules = with_profile("sealed", FREE_TEXT, rule("mobile", "aes_gcm"))
    plan = plan_masking(
        catalog, rules, dataset="residents", fields=["remark"], role="village_cadre", scenario="s",
        profile="sealed", scanner=scanner, keys=keys, as_of=AS_OF,
    )  # fmt: skip
    assert plan.names_subjects
    page: list[dict[str, object]] = [
        {"remark": f"联系人电话{MOBILE}"},
        {"remark": f"电话{MOBILE}"},
        {"remark": None},
    ]
    subject = b"a1" + bytes([7] * 32)
    sealed, anonymous, empty = mask_records(page, plan, [subject, None, subject])
    envelope = str(sealed["remark"]).removeprefix("联系人电话")
    assert envelope.startswith("enc:v3:") and str(anonymous["remark"]).startswith("电话enc:v2:")
    assert empty == {"remark": None}
    unmask = Unmask(actor="steward-1", purpose="dispute", audit_event_id="7")
    opened = open_envelope(envelope, keys, dataset="residents", context="residents.remark", unmask=unmask)
    assert (opened.value, opened.subject) == (MOBILE, subject)
    assert str(mask_records(page[:1], plan)[0]["remark"]).startswith("联系人电话enc:v2:")  # a dry-run: nobody


def test_the_plan_explains_what_each_kind_of_item_gets(
    catalog: Catalog, rules: RuleSet, scanner: FreeTextScanner
) -> None:
    plan = plan_masking(
        catalog, rules, dataset="residents", fields=["remark", "mobile"], role="village_cadre",
        scenario="s", profile="standard", scanner=scanner, as_of=AS_OF,
    )  # fmt: skip
    remark, mobile = plan.explain()
    items = {i["entity_type"]: i for i in remark["items"]}  # type: ignore[union-attr]
    assert items["CN_MOBILE"] == {
        "entity_type": "CN_MOBILE",
        "semantic_type": "mobile",
        "operator": "mobile",
        "params": {"keep_first": 3, "keep_last": 4},
        "source": "rule:standard.mobile",
        "field_source": "rule:standard.mobile",
    }
    assert (items["CN_LICENCE_PLATE"]["operator"], items["CN_LICENCE_PLATE"]["source"]) == (
        "redact",
        "fail-closed:no-rule",
    )
    assert (items["CN_BIRTH_DATE"]["operator"], items["CN_BIRTH_DATE"]["source"]) == ("freetext", "scanner")
    assert "items" not in mobile


def test_a_scanner_masked_by_over_another_masks_as_one_masked_by_both(scanner: FreeTextScanner) -> None:
    """The plan's scanner for one record (its sealed kinds over the plan's, masking.plan) is built from the
    plan's without reading its kinds again; it masks as one scanner given both, the later kind winning, and
    an unknown kind is still refused."""
    text = f"电话{MOBILE}，身份证号{ID_NUMBER}，邮箱zhang.san@example.com"
    plans = {"CN_MOBILE": lambda v: f"<m:{v}>", "EMAIL_ADDRESS": lambda v: "<e>"}
    record = {"CN_MOBILE": lambda v: f"<r:{v}>", "CN_ID_NUMBER": lambda v: f"<i:{v}>"}
    over = scanner.masked_by(plans).masked_by(record)
    assert over.mask(text) == scanner.masked_by({**plans, **record}).mask(text)
    assert over.mask(text) == f"电话<r:{MOBILE}>，身份证号<i:{ID_NUMBER}>，邮箱<e>"
    assert scanner.masked_by(plans).mask(text) == f"电话<m:{MOBILE}>，身份证号310210************，邮箱<e>"
    with pytest.raises(ValueError, match="NOT_A_KIND"):
        scanner.masked_by(plans).masked_by({"NOT_A_KIND": str})
