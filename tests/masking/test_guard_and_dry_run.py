"""The re-identification guard on masked values, DLP scope from the plan, and dry-run keys."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masking import (
    Catalog,
    FreeTextScanner,
    KeyRing,
    MaskingPlan,
    RuleSet,
    Unmask,
    decrypt_envelope,
    mask_record,
    plan_masking,
)
from masking.catalog import SemanticType
from masking.dlp import scan_response
from masking.errors import DryRunValueError
from masking.kanon import guard_release, ladder_for, smallest_class
from masking.operators import MaskFn, TextMasker
from masking.reversible import DRY_RUN_MARKER, ff1_id_reveal, hmac_pseudonym, is_dry_run_value

# (semantic type, masked value, value after each step of its ladder)
LADDERS = [
    (SemanticType.BIRTH_DATE, "1957-03-02", ["1957", "1950-1959", "1940-1959"]),
    (SemanticType.BIRTH_DATE, "1957-03", ["1957", "1950-1959", "1940-1959"]),
    (SemanticType.BIRTH_DATE, "1957", ["1957", "1950-1959", "1940-1959"]),
    (SemanticType.BIRTH_DATE, "60-69", ["60-69", "60-69", "60-79"]),
    (SemanticType.BIRTH_DATE, "***", ["***", "***", "***"]),
    (SemanticType.AGE, "35-39", ["30-39", "20-39"]),
    (SemanticType.ADDRESS, "上海市崇明区城桥镇东风村", ["上海市崇明区城桥镇", "上海市崇明区"]),
    (SemanticType.DIVISION_CODE, "310151101201", ["310151101000", "310151000000"]),
    (SemanticType.DIVISION_CODE, "bad", ["bad", "bad"]),
]


@pytest.mark.parametrize(("semantic_type", "value", "steps"), LADDERS)
def test_ladders_coarsen_masked_values_step_by_step(
    semantic_type: SemanticType, value: str, steps: list[str]
) -> None:
    assert [step(value) for step in ladder_for(semantic_type)] == steps


def test_types_without_a_ladder_can_only_be_suppressed() -> None:
    assert ladder_for(SemanticType.PERSON_NAME) == ()


def _people(*rows: tuple[str, str, str]) -> list[dict[str, object]]:
    return [
        {"id": f"R{i}", "birth_date": b, "address": a, "village_code": v} for i, (b, a, v) in enumerate(rows)
    ]


VILLAGE_A = ("上海市崇明区城桥镇东风村", "310151101201")
VILLAGE_B = ("上海市崇明区城桥镇永乐村", "310151101202")


def test_guard_generalises_only_as_far_as_needed(catalog: Catalog) -> None:
    rows = _people(*[("1951", *VILLAGE_A)] * 2, ("1958", *VILLAGE_A), *[("1962", *VILLAGE_A)] * 3)
    result = guard_release(catalog, "residents", rows, k=3, min_records=2)
    assert result.ok and dict(result.steps) == {"address": 0, "birth_date": 2, "village_code": 0}
    assert [r["birth_date"] for r in result.records] == ["1950-1959"] * 3 + ["1960-1969"] * 3
    assert [r["id"] for r in result.records] == [f"R{i}" for i in range(6)]


def test_guard_refuses_rather_than_suppress_a_field_the_grant_allows(catalog: Catalog) -> None:
    rows = _people(("1931", *VILLAGE_A), *[("1990", *VILLAGE_A)] * 5)
    refused = guard_release(catalog, "residents", rows, k=3, min_records=2)
    assert not refused.ok and refused.records == [] and "保护居民隐私" in refused.reason_zh
    suppressed = guard_release(catalog, "residents", rows, k=3, min_records=2, allow_suppression=True)
    assert suppressed.ok and {r["birth_date"] for r in suppressed.records} == {None}


def test_guard_leaves_small_responses_and_absent_quasi_identifiers_alone(catalog: Catalog) -> None:
    rows = _people(("1931", *VILLAGE_A), ("1990", *VILLAGE_B))
    assert guard_release(catalog, "residents", rows, k=3, min_records=3).records == rows
    names_only = [{"id": "R1", "name": "王**"}, {"id": "R2", "name": "李*"}]
    assert guard_release(catalog, "residents", names_only, k=3, min_records=1).ok


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1930, 2020), st.sampled_from([VILLAGE_A, VILLAGE_B])), min_size=3, max_size=40
    ),
    st.integers(2, 5),
)
def test_whatever_the_guard_releases_is_k_anonymous(
    catalog: Catalog, people: list[tuple[int, tuple[str, str]]], k: int
) -> None:
    rows = _people(*[(str(year), *village) for year, village in people])
    result = guard_release(catalog, "residents", rows, k=k, min_records=0)
    if result.ok:
        assert smallest_class(result.records, ["address", "birth_date", "village_code"]) >= k
        assert len(result.records) == len(rows)
    else:
        assert result.records == []


class _Finder:
    """Marks every text as one mobile finding (enough to see which fields DLP scans)."""

    class _F:
        entity_type = "CN_MOBILE"

    def scan_and_mask(self, text: str) -> tuple[str, list[_F]]:
        return "<masked>", [self._F()]

    def mask(self, text: str) -> str:
        return text

    def masked_by(self, maskers: Mapping[str, MaskFn]) -> TextMasker:
        return self


def _cadre_plan(
    catalog: Catalog, rules: RuleSet, fields: tuple[str, ...], scanner: TextMasker, **exemptions: str
) -> MaskingPlan:
    """A village cadre's plan for ``fields`` of residents under DIBAO_REVIEW."""
    return plan_masking(
        catalog,
        rules,
        dataset="residents",
        fields=fields,
        role="village_cadre",
        scenario="DIBAO_REVIEW",
        profile="standard",
        exemptions=exemptions,
        scanner=scanner,
    )


def test_dlp_scans_what_the_plan_did_not_mask_by_classification(catalog: Catalog, rules: RuleSet) -> None:
    plan = _cadre_plan(catalog, rules, ("id", "remark", "village_code", "not_catalogued"), _Finder())
    assert plan.protected_fields == {"remark", "not_catalogued"}
    record = mask_record(
        {"id": "R1", "remark": "x", "village_code": "310151101201", "not_catalogued": "y"}, plan
    )
    out, alerts = scan_response(catalog, "residents", [record], _Finder(), protected=plan.protected_fields)
    assert out[0]["id"] == out[0]["village_code"] == "<masked>" and out[0]["not_catalogued"] == "***"
    assert {(a.field, a.entity_type) for a in alerts} == {("id", "CN_MOBILE"), ("village_code", "CN_MOBILE")}


@pytest.mark.parametrize(
    ("dibao_status", "served"),
    [
        ("是", "是"),
        ("是，联系电话13812345678", "是，联系电话138****5678"),
        ("11010519491231002X", "110105************"),
        ("户主王小明", "户主王**"),
    ],
)
def test_a_classified_field_its_rule_keeps_as_it_is_is_still_scanned(
    catalog: Catalog, rules: RuleSet, scanner: FreeTextScanner, dibao_status: str, served: str
) -> None:
    """低保 status is level 4 and shown as it is (rule ``standard.benefit_status``: ``keep``). Response DLP
    used to skip every level 4 field as "masked by its classification", so an upstream that put a mobile
    or an ID number there had it served in plain text. A kept field is scanned; a masked one is not."""
    plan = _cadre_plan(catalog, rules, ("id", "name", "mobile", "dibao_status"), scanner)
    assert plan.protected_fields == {"name", "mobile"}
    record = mask_record(
        {"id": "R1", "name": "王小明", "mobile": "13812345678", "dibao_status": dibao_status}, plan
    )
    out, _ = scan_response(catalog, "residents", [record], scanner, protected=plan.protected_fields)
    assert out[0] == {"id": "R1", "name": "王**", "mobile": "138****5678", "dibao_status": served}


def test_an_identifier_kept_on_purpose_is_not_masked_by_dlp(
    catalog: Catalog, rules: RuleSet, scanner: FreeTextScanner
) -> None:
    """A scenario exemption that shows ID numbers as they are is not undone by the scan."""
    plan = _cadre_plan(catalog, rules, ("id", "id_number"), scanner, id_number="keep")
    assert plan.protected_fields == {"id_number"}
    record = mask_record({"id": "R1", "id_number": "11010519491231002X"}, plan)
    out, _ = scan_response(catalog, "residents", [record], scanner, protected=plan.protected_fields)
    assert out[0]["id_number"] == "11010519491231002X"


def _masked_id(catalog: Catalog, rules: RuleSet, keys: KeyRing, operator: str, value: str) -> object:
    """``value`` as an ID number masked by ``operator`` (a scenario exemption) under ``keys``."""
    return mask_record(
        {"id_number": value},
        plan_masking(
            catalog,
            rules,
            dataset="residents",
            fields=("id_number",),
            role="village_cadre",
            scenario="DIBAO_REVIEW",
            profile="standard",
            exemptions={"id_number": operator},
            keys=keys,
            as_of=dt.date(2025, 6, 1),
        ),
    )["id_number"]


def test_dry_run_keys_hide_pseudonyms_but_keep_envelopes_openable(
    catalog: Catalog, rules: RuleSet, keys: KeyRing
) -> None:
    dry = keys.for_dry_run()
    assert hmac_pseudonym("110102199003071234", dry) != hmac_pseudonym("110102199003071234", keys)
    made_dry = dry.derive_scoped("ff1-id", "residents", for_encryption=True)[1]
    assert made_dry != keys.derive_scoped("ff1-id", "residents", for_encryption=True)[1]
    assert dry.derive("aes-gcm", for_encryption=True) == keys.derive("aes-gcm", for_encryption=True)
    envelope = _masked_id(catalog, rules, dry, "aes_gcm", "110102199003071234")
    unmask = Unmask(actor="u", purpose="p", audit_event_id="1")
    assert isinstance(envelope, str)
    assert (
        decrypt_envelope(envelope, keys, dataset="residents", context="residents.id_number", unmask=unmask)
        == "110102199003071234"
    )
    assert "dryrun" in repr(dry) and "KeyRing" in repr(dry)


# A well-formed number (GB 11643 check character): FF1 recomputes it, so reversal gives this back.
VALID_ID = "11010219900307123X"


def test_dry_run_ff1_pseudonyms_are_marked_and_cannot_be_unmasked(
    catalog: Catalog, rules: RuleSet, keys: KeyRing
) -> None:
    """A dry-run FF1 pseudonym is a well-formed ID number under a throwaway key: unmarked, it would pass
    for a real pseudonym and "unmask" to a plausible but wrong ID number. It carries the dry-run marker
    (like a dry-run HMAC pseudonym), and reversal refuses anything with that marker."""
    real = _masked_id(catalog, rules, keys, "ff1_id", VALID_ID)
    dry = _masked_id(catalog, rules, keys.for_dry_run(), "ff1_id", VALID_ID)
    assert isinstance(real, str) and isinstance(dry, str)
    assert len(real) == 18 and not real.startswith(DRY_RUN_MARKER)
    assert dry.startswith(DRY_RUN_MARKER) and is_dry_run_value(dry)
    body = dry.removeprefix(DRY_RUN_MARKER)
    assert len(body) == 18 and body[:6] == "110102" and body != real  # format kept, not the real pseudonym
    assert hmac_pseudonym(VALID_ID, keys.for_dry_run()).startswith(DRY_RUN_MARKER)
    unmask = Unmask(actor="u", purpose="p", audit_event_id="1")
    with pytest.raises(DryRunValueError) as refused:
        ff1_id_reveal(dry, keys, key_id=keys.active_key_id, dataset="residents", unmask=unmask)
    assert "试运行" in refused.value.message_zh and "dry-run" in refused.value.message_en
    assert body not in refused.value.message_zh + refused.value.message_en
    assert (
        ff1_id_reveal(real, keys, key_id=keys.active_key_id, dataset="residents", unmask=unmask) == VALID_ID
    )
