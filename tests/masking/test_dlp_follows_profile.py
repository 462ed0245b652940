"""Response DLP masks what it finds in a field the plan does not protect as the plan's profile masks that
kind of item in a free-text field at the field's level (masking.items), bound once with the plan.

Before, DLP masked every finding with the scanner's fixed operators whatever the profile: under strict an
ID number or a mobile that drifted into an unclassified field (catalog drift) was shown more than in its
own field (hidden) or in a remark (hidden too), and under standard an e-mail kept the domain that
standard.email hides."""

from __future__ import annotations

from typing import Any

from masking import (
    Catalog,
    FreeTextScanner,
    KeyRing,
    MaskingPlan,
    RuleSet,
    Unmask,
    mask_records,
    open_envelope,
    plan_masking,
)
from masking.dlp import DriftAlert, scan_fields_in_place, scan_response
from tests.masking.conftest import AS_OF
from tests.masking.test_freetext_items import ID_NUMBER, MOBILE, rule, with_profile

DRIFTED = f"电话{MOBILE}，身份证号{ID_NUMBER}，邮箱zhang.san@example.com"


def plan_for(
    catalog: Catalog,
    rules: RuleSet,
    scanner: FreeTextScanner,
    fields: tuple[str, ...],
    profile: str,
    keys: KeyRing | None = None,
    **exemptions: str,
) -> MaskingPlan:
    return plan_masking(
        catalog, rules, dataset="residents", fields=fields, role="village_cadre", scenario="s",
        profile=profile, scanner=scanner, keys=keys, exemptions=exemptions, as_of=AS_OF,
    )  # fmt: skip


def served(
    plan: MaskingPlan,
    scanner: FreeTextScanner,
    records: list[dict[str, Any]],
    subjects: list[bytes | None] | None = None,
) -> tuple[list[dict[str, object]], list[DriftAlert]]:
    """What the data path serves: the page masked by the plan, then response DLP over it (the gateway's
    `Runtime.scan_free_text`), each given the records' residents when there are some."""
    masked = mask_records(records, plan, subjects)
    alerts = scan_fields_in_place(
        "residents",
        masked,
        plan.scanned_fields,
        scanner,
        scanners=plan.dlp_scanners,
        unmemoised=plan.dlp_unmemoised,
        sealers=plan.dlp_sealers,
        subjects=subjects,
    )
    return masked, alerts


def test_under_strict_an_id_number_and_a_mobile_in_an_unclassified_field_are_hidden_as_in_a_remark(
    catalog: Catalog, rules: RuleSet, scanner: FreeTextScanner
) -> None:
    fields = ("village_code", "remark", "mobile")
    plan = plan_for(catalog, rules, scanner, fields, "strict", remark="freetext")
    assert "village_code" in plan.scanned_fields
    in_remark = f"电话{MOBILE}，身份证号{ID_NUMBER}"
    record = {"village_code": DRIFTED, "remark": in_remark, "mobile": MOBILE}
    [out], alerts = served(plan, scanner, [record])
    # The scanner alone showed 139****5678 and 310210************ here. (An e-mail is matched at the
    # field's level 1, where strict has no rule for one: the scanner's masking, as a level-1 remark's.)
    assert out["village_code"] == "电话***，身份证号***，邮箱z***@example.com"
    assert str(out["village_code"]).startswith(str(out["remark"])) and out["mobile"] == "***"
    # The drift alerts are what they were: kinds and counts, no values.
    assert [(a.field, a.entity_type, a.count) for a in alerts] == [
        ("village_code", "CN_ID_NUMBER", 1),
        ("village_code", "CN_MOBILE", 1),
        ("village_code", "EMAIL_ADDRESS", 1),
    ]


def test_under_standard_an_email_in_an_unclassified_field_hides_its_domain_as_the_email_field(
    catalog: Catalog, rules: RuleSet, scanner: FreeTextScanner
) -> None:
    plan = plan_for(catalog, rules, scanner, ("village_code",), "standard")
    [out], _ = served(plan, scanner, [{"village_code": DRIFTED}])
    assert out["village_code"] == "电话139****5678，身份证号310210************，邮箱z" + "*" * 20


def test_a_stricter_rule_reaches_dlp_and_a_looser_one_never_shows_more_than_the_scanner(
    catalog: Catalog, scanner: FreeTextScanner
) -> None:
    stricter = with_profile("tight", rule("mobile", "partial", keep_last=4))
    [out], _ = served(plan_for(catalog, stricter, scanner, ("village_code",), "tight"), scanner, [
        {"village_code": f"电话{MOBILE}"}
    ])  # fmt: skip
    assert out["village_code"] == "电话*******5678"
    looser = with_profile("loose", rule("mobile", "keep"), rule("id_number", "keep"))
    [out], _ = served(plan_for(catalog, looser, scanner, ("village_code",), "loose"), scanner, [
        {"village_code": f"电话{MOBILE}，身份证号{ID_NUMBER}"}
    ])  # fmt: skip
    assert out["village_code"] == "电话139****5678，身份证号310210************"


def test_a_finding_sealed_by_dlp_gets_a_fresh_envelope_each_time(
    catalog: Catalog, scanner: FreeTextScanner, keys: KeyRing
) -> None:
    """Two residents with the same drifted ID number: two envelopes, not one repeated (which would tell the
    reader the two hidden numbers are equal); a field without such an operator is still scanned once."""
    rules = with_profile("sealed", rule("id_number", "aes_gcm"))
    plan = plan_for(catalog, rules, scanner, ("village_code",), "sealed", keys=keys)
    assert plan.dlp_unmemoised == {"village_code"}
    page = [{"village_code": f"身份证号{ID_NUMBER}"} for _ in range(2)]
    first, second = (str(r["village_code"]) for r in served(plan, scanner, page)[0])
    assert first.startswith("身份证号enc:") and second.startswith("身份证号enc:") and first != second


def test_a_finding_sealed_by_dlp_is_sealed_with_the_records_resident(
    catalog: Catalog, scanner: FreeTextScanner, keys: KeyRing
) -> None:
    """A mobile that drifted into an unprotected field, sealed by aes_gcm, was enc:v2: although the record
    names its resident, as the mobile field's envelope beside it (enc:v3:) and a mobile in a remark do: a
    steward unmasking it was not recorded as having read her data (masking.unmask_revealed), and she never
    saw it in her transparency list. Now it is sealed with her; a record naming nobody, and a page served
    without residents (a dry-run), still get enc:v2:. Each envelope has its own nonce."""
    rules = with_profile("sealed", rule("mobile", "aes_gcm"))
    plan = plan_for(catalog, rules, scanner, ("village_code", "mobile"), "sealed", keys=keys)
    assert plan.names_subjects and set(plan.dlp_sealers) == {"village_code"}
    drifted = f"电话{MOBILE}"
    page: list[dict[str, Any]] = [
        {"village_code": drifted, "mobile": MOBILE},
        {"village_code": drifted, "mobile": MOBILE},
        {"village_code": drifted, "mobile": MOBILE},
        {"village_code": None, "mobile": None},
    ]
    her, neighbour = b"a1" + bytes([7] * 32), b"a1" + bytes([9] * 32)
    out, alerts = served(plan, scanner, page, [her, neighbour, None, her])
    found = [str(r["village_code"]).removeprefix("电话") for r in out[:3]]
    assert [f[:7] for f in found] == ["enc:v3:", "enc:v3:", "enc:v2:"] and len(set(found)) == 3
    assert [str(r["mobile"])[:7] for r in out[:3]] == ["enc:v3:", "enc:v3:", "enc:v2:"]
    assert out[3] == {"village_code": None, "mobile": None}
    assert [(a.field, a.entity_type, a.count) for a in alerts] == [("village_code", "CN_MOBILE", 3)]
    unmask = Unmask(actor="steward-1", purpose="dispute", audit_event_id="7")
    for envelope, subject in zip(found, (her, neighbour, None), strict=True):
        opened = open_envelope(envelope, keys, dataset="residents", context="residents.village_code",
                               unmask=unmask)  # fmt: skip
        assert (opened.value, opened.subject) == (MOBILE, subject)
    dry_run, _ = served(plan, scanner, page[:1])
    assert str(dry_run[0]["village_code"]).startswith("电话enc:v2:")


def test_a_page_without_a_sealing_rule_is_served_alike_with_or_without_residents(
    catalog: Catalog, rules: RuleSet, scanner: FreeTextScanner
) -> None:
    plan = plan_for(catalog, rules, scanner, ("village_code", "mobile"), "standard")
    assert not plan.names_subjects and plan.dlp_sealers == {}
    page: list[dict[str, Any]] = [{"village_code": DRIFTED, "mobile": MOBILE}]
    assert served(plan, scanner, page, [b"a1" + bytes(32)]) == served(plan, scanner, page)


def test_the_plan_says_what_dlp_findings_get_in_each_scanned_field(
    catalog: Catalog, rules: RuleSet, scanner: FreeTextScanner
) -> None:
    plan = plan_for(catalog, rules, scanner, ("village_code", "id_number"), "strict")
    village, id_number = plan.explain()
    items = {i["entity_type"]: i for i in village["dlp_items"]}  # type: ignore[union-attr]
    assert (items["CN_ID_NUMBER"]["operator"], items["CN_MOBILE"]["operator"]) == ("redact", "redact")
    assert items["CN_ID_NUMBER"]["source"] == "rule:strict.other_personal"
    assert (items["CN_BIRTH_DATE"]["operator"], items["CN_BIRTH_DATE"]["source"]) == (
        "age_bucket",
        "rule:strict.birth_date",
    )
    assert "dlp_items" not in id_number  # protected: DLP does not scan it


def test_scan_response_takes_the_plans_scanners_too(
    catalog: Catalog, rules: RuleSet, scanner: FreeTextScanner
) -> None:
    """The dry run's DLP (scan_response over the masked sample) masks as the data path does."""
    plan = plan_for(catalog, rules, scanner, ("village_code",), "strict")
    out, _ = scan_response(
        catalog,
        "residents",
        mask_records([{"village_code": f"电话{MOBILE}"}], plan),
        scanner,
        protected=plan.protected_fields,
        scanners=plan.dlp_scanners,
    )
    assert out == [{"village_code": "电话***"}]
