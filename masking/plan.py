"""Masking plans: which operator masks each returned field, decided once per request.

The gateway projects a record onto the scenario grant's whitelisted fields first, then asks for a plan
for exactly those fields. The plan is precomputed (field -> bound operator), so `mask_record` is a
tight loop with no rule lookups. Fail closed everywhere: a field not in the catalog, a level 3+ field
no rule covers, or an operator that cannot be bound here (no key ring, no scanner) is redacted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

from masking.catalog import Catalog, Level, SemanticType, max_level
from masking.errors import OperatorError, UnknownProfileError
from masking.items import RANDOMISED_OPERATORS, ItemDecision, plan_items
from masking.keys import KeyRing
from masking.operators import (
    REDACTED,
    BindContext,
    MaskFn,
    Operator,
    ParamValue,
    SubjectMaskFn,
    TextMasker,
    get_operator,
    is_landline_number,
)
from masking.rules import RuleSet

__all__ = [
    "FallbackDecision",
    "FieldDecision",
    "ItemDecision",
    "MaskingPlan",
    "SubjectScanner",
    "mask_record",
    "mask_records",
    "plan_masking",
    "response_level",
]

#: Operators whose answer is a pure function of the value and costly enough to compute once per page:
#: the free-text scan (a page of one village's residents repeats remarks such as 「退役军人」). Keyed
#: and randomised operators are never memoised (an envelope's fresh nonce must stay fresh), nor is a
#: free-text field an item of which such an operator masks (`masking.items`: the profile's rule for the
#: item's type). What else decides a free-text value's masking (profile, role, scenario, the rules and
#: catalog, the key ring) is fixed for the plan, and the memo lives for one `mask_records` call on one
#: plan, so the value alone is its key.
_PAGE_MEMO_OPERATORS: frozenset[str] = frozenset({"freetext"})


#: A scanner for one record's resident (None: a record naming nobody): response DLP's in a field a finding in
#: which is sealed by `aes_gcm` (`MaskingPlan.dlp_sealers`).
SubjectScanner = Callable[[bytes | None], TextMasker]


def _redact(_value: object) -> object:
    return REDACTED


@dataclass(frozen=True, slots=True)
class FallbackDecision:
    """The operator for values of a field that its own operator cannot read but that are of another known
    kind: a landline in a mobile field (many elderly residents' 手机 holds the home phone). They get what
    the profile's rule for that kind gives, so they are shown no more than in a field of that kind."""

    applies_to: str  # the semantic type of those values
    operator: str
    params: Mapping[str, ParamValue]
    source: str  # "rule:<id>"


@dataclass(frozen=True, slots=True)
class FieldDecision:
    """Why a field is masked the way it is (for dry-runs, the audit record and the steward's UI)."""

    field: str
    level: Level | None  # None: not catalogued
    semantic_type: str | None
    operator: str
    params: Mapping[str, ParamValue]
    source: str  # "rule:<id>", "exemption", "default:keep", "fail-closed:<reason>"
    fallback: FallbackDecision | None = None
    #: For a `freetext` field: how each kind of personal data found in it is masked (`masking.items`).
    items: tuple[ItemDecision, ...] = ()
    #: For a field response DLP scans (`MaskingPlan.scanned_fields`): how each kind of personal data it
    #: finds there is masked, as in a free-text field at this field's level (`masking.items`).
    dlp: tuple[ItemDecision, ...] = ()


@dataclass(frozen=True, slots=True)
class MaskingPlan:
    dataset: str
    profile: str
    role: str
    scenario: str
    level: Level
    decisions: tuple[FieldDecision, ...]
    _ops: tuple[tuple[str, MaskFn], ...]
    #: The fields whose operator seals the record's subject into the value (`aes_gcm`: enc:v3:), and how.
    _subject_ops: tuple[tuple[str, SubjectMaskFn], ...] = ()
    #: The scanner response DLP masks each scanned field's findings with: the profile's, at its level.
    _dlp: tuple[tuple[str, TextMasker], ...] = ()
    #: The scanned fields a finding in which is sealed (`aes_gcm`), and their scanner for a record's subject.
    _dlp_sealing: tuple[tuple[str, SubjectScanner], ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self._ops)

    _protected: frozenset[str] = field(init=False, repr=False, compare=False)
    _scanned: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _page_memo: frozenset[str] = field(init=False, repr=False, compare=False)
    _dlp_scanners: Mapping[str, TextMasker] = field(init=False, repr=False, compare=False)
    _dlp_unmemoised: frozenset[str] = field(init=False, repr=False, compare=False)
    _dlp_sealers: Mapping[str, SubjectScanner] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Asked for on every response (DLP); a plan is immutable, so it is worked out once.
        protected = frozenset(d.field for d in self.decisions if _protected(d))
        object.__setattr__(self, "_protected", protected)
        object.__setattr__(self, "_scanned", tuple(n for n, _ in self._ops if n not in protected))
        memo = frozenset(
            d.field
            for d in self.decisions
            if d.operator in _PAGE_MEMO_OPERATORS
            and not any(i.operator in RANDOMISED_OPERATORS for i in d.items)
        )
        object.__setattr__(self, "_page_memo", memo)
        object.__setattr__(self, "_dlp_scanners", dict(self._dlp))
        unmemoised = frozenset(
            d.field for d in self.decisions if any(i.operator in RANDOMISED_OPERATORS for i in d.dlp)
        )
        object.__setattr__(self, "_dlp_unmemoised", unmemoised)
        object.__setattr__(self, "_dlp_sealers", dict(self._dlp_sealing))

    @property
    def names_subjects(self) -> bool:
        """Whether masking seals each record's subject into some value (given the subjects): a field's, by
        `mask_records`, or a finding of response DLP's (`dlp_sealers`)."""
        return bool(self._subject_ops or self._dlp_sealing)

    @property
    def protected_fields(self) -> frozenset[str]:
        """Fields masked by their classification (level 3+) or redacted as uncatalogued; response DLP
        scans every other string (issue 4), a level 3+ field shown as it is (``keep``) included unless
        its values are themselves what the scanner looks for. Taken from the plan so DLP and masking
        agree even when the catalog is swapped between the two."""
        return self._protected

    @property
    def scanned_fields(self) -> tuple[str, ...]:
        """The plan's fields that response DLP scans (the complement of `protected_fields`), in plan
        order: the only fields of a record from `mask_record` that can hold unmasked text."""
        return self._scanned

    @property
    def dlp_scanners(self) -> Mapping[str, TextMasker]:
        """For each of `scanned_fields` (when the plan was built with a scanner): the scanner that masks
        what response DLP finds there as this profile masks a field of the item's type (`FieldDecision.dlp`),
        bound once with the plan."""
        return self._dlp_scanners

    @property
    def dlp_unmemoised(self) -> frozenset[str]:
        """Scanned fields a finding in which is sealed by a randomised operator (`aes_gcm`): response DLP
        masks each of their values afresh, so each envelope has its own nonce."""
        return self._dlp_unmemoised

    @property
    def dlp_sealers(self) -> Mapping[str, SubjectScanner]:
        """For each scanned field a finding in which is sealed by `aes_gcm`: its DLP scanner for a record's
        resident, sealing those findings with her (enc:v3:) as a field's envelope is; for None (a record
        naming nobody) the same as `dlp_scanners` (enc:v2:)."""
        return self._dlp_sealers

    def decision(self, field: str) -> FieldDecision:
        for d in self.decisions:
            if d.field == field:
                return d
        raise KeyError(field)

    def explain(self) -> list[dict[str, object]]:
        """The plan as plain data: a dry-run answer a steward can read."""
        return [_explained(d) for d in self.decisions]

    def applied(self, field: str, value: object) -> FieldDecision | FallbackDecision:
        """Which of the field's operators masks `value`: its own, or its fallback (a landline in a
        mobile field). What a dry-run tells the steward about the sample."""
        d = self.decision(field)
        if d.fallback is not None and _fallback_applies(d, value):
            return d.fallback
        return d


def _explained(d: FieldDecision) -> dict[str, object]:
    out: dict[str, object] = {
        "field": d.field,
        "level": None if d.level is None else int(d.level),
        "semantic_type": d.semantic_type,
        "operator": d.operator,
        "params": dict(d.params),
        "source": d.source,
    }
    if d.fallback is not None:
        f = d.fallback
        rule = f.source.removeprefix("rule:")
        out["fallback"] = {
            "applies_to": f.applies_to,
            "operator": f.operator,
            "params": dict(f.params),
            "source": f.source,
            "when_zh": f"值不是手机号而是固定电话时，按固定电话规则 {rule} 脱敏；两者都不是的整体隐藏",
            "when_en": f"a landline, not a mobile, is masked by the landline rule {rule};"
            " a value that is neither is redacted",
        }
    if d.items:
        out["items"] = [i.explained() for i in d.items]
    if d.dlp:
        out["dlp_items"] = [i.explained() for i in d.dlp]
    return out


#: Semantic types whose values are what response DLP finds (a name, an ID number, a mobile…): a field of
#: one of these shown as it is (``keep`` by a rule or an exemption) is shown so on purpose, and scanning it
#: would mask the very value the rule keeps.
_IDENTIFIER_TYPES: frozenset[str] = frozenset(
    {
        SemanticType.PERSON_NAME,
        SemanticType.ID_NUMBER,
        SemanticType.MOBILE,
        SemanticType.LANDLINE,
        SemanticType.EMAIL,
        SemanticType.BANK_CARD,
        SemanticType.CREDIT_CODE,
        SemanticType.LICENCE_PLATE,
    }
)


def _protected(decision: FieldDecision) -> bool:
    """Is ``decision``'s field left out of response DLP? Uncatalogued (redacted), or level 3+ and masked by
    its operator. A level 3+ field its rule keeps as it is (``standard.benefit_status``: 低保 status shown
    plainly) is masked by nothing, so personal data an upstream puts there ("是 13812345678") would be
    served in plain text: it is scanned like any unclassified field, unless its values are themselves
    identifiers kept on purpose."""
    if decision.level is None:
        return True
    if decision.level < Level.L3:
        return False
    return decision.operator != "keep" or decision.semantic_type in _IDENTIFIER_TYPES


def plan_masking(
    catalog: Catalog,
    rules: RuleSet,
    *,
    dataset: str,
    fields: Sequence[str],
    role: str,
    scenario: str,
    profile: str,
    exemptions: Mapping[str, str] | None = None,
    keys: KeyRing | None = None,
    scanner: TextMasker | None = None,
    as_of: dt.date | None = None,
) -> MaskingPlan:
    """Decide the operator for each of `fields` (already whitelisted by the grant).

    `exemptions` maps a field to an operator name, granted per scenario through the policy's
    obligations; it never applies to an uncatalogued field. Raises `UnknownDatasetError` for a dataset
    without a catalog entry and `UnknownProfileError` for a profile the rules do not define.
    """
    spec = catalog.dataset(dataset)
    if profile not in rules.profiles:
        raise UnknownProfileError(profile)
    exemptions = exemptions or {}
    for op_name in exemptions.values():
        get_operator(op_name)  # an unknown operator in an obligation is a configuration error: raise
    as_of = as_of or dt.date.today()
    decisions: list[FieldDecision] = []
    ops: list[tuple[str, MaskFn]] = []
    subject_ops: list[tuple[str, SubjectMaskFn]] = []
    seen: set[str] = set()
    for name in fields:
        if name in seen:
            continue
        seen.add(name)
        fspec = spec.fields.get(name)
        if fspec is None:
            decisions.append(FieldDecision(name, None, None, "redact", {}, "fail-closed:not-catalogued"))
            ops.append((name, _redact))
            continue
        if fspec.level > Level.L4:
            # Important and core data (GB/T 43697-2024) are beyond personal information: no rule or
            # exemption shows them, whatever their semantic type — a steward who raises a field to
            # 重要数据 takes it out of every reader's view, not only out of rules that list the level.
            source = f"fail-closed:{fspec.level.document_value}"
            decisions.append(
                FieldDecision(name, fspec.level, fspec.semantic_type.value, "redact", {}, source)
            )
            ops.append((name, _redact))
            continue
        if name in exemptions:
            op_name, params, source = exemptions[name], {}, "exemption"
        else:
            rule = rules.match(
                profile=profile,
                level=fspec.level,
                semantic_type=fspec.semantic_type,
                role=role,
                scenario=scenario,
            )
            if rule is not None:
                op_name, params, source = rule.operator, dict(rule.params), f"rule:{rule.id}"
            elif fspec.level >= Level.L3:
                op_name, params, source = "redact", {}, "fail-closed:no-rule"
            else:
                op_name, params, source = "keep", {}, "default:keep"
        ctx = BindContext(dataset=dataset, field=name, keys=keys, scanner=scanner, as_of=as_of)
        items: tuple[ItemDecision, ...] = ()
        sealers: dict[str, SubjectMaskFn] = {}
        if op_name == "freetext" and scanner is not None:
            # Each item found is masked as this profile masks a field of its type, never more visibly than
            # the scanner's own masking (masking.items).
            item_ctx = BindContext(dataset=dataset, field=name, keys=keys, as_of=as_of)
            items, maskers, sealers = plan_items(
                catalog, rules, profile=profile, level=fspec.level, role=role, scenario=scenario, ctx=item_ctx
            )
            ctx = BindContext(
                dataset=dataset, field=name, keys=keys, scanner=scanner.masked_by(maskers), as_of=as_of
            )
        try:
            op = get_operator(op_name)
            resolved = op.resolve_params(params)
            fn = op.bind(resolved, ctx)
            with_subject = op.bind_for_subject(resolved, ctx)
            if sealers and scanner is not None:
                with_subject = _sealing_items(op, resolved, ctx, scanner, maskers, sealers)
        except OperatorError:
            # Only keyed/scanner operators can fail here (parameters were checked at load):
            # without their dependency the value is hidden rather than shown.
            decisions.append(
                FieldDecision(
                    name,
                    fspec.level,
                    fspec.semantic_type.value,
                    "redact",
                    {},
                    f"fail-closed:{op_name}-unavailable",
                )
            )
            ops.append((name, _redact))
            continue
        fallback = None
        if op_name == "mobile":
            fallback, fn = _with_landline_fallback(rules, fn, ctx, profile, fspec.level, role, scenario)
        decisions.append(
            FieldDecision(
                name, fspec.level, fspec.semantic_type.value, op_name, resolved, source, fallback, items
            )
        )
        ops.append((name, fn))
        if with_subject is not None:
            subject_ops.append((name, with_subject))
    dlp: list[tuple[str, TextMasker]] = []
    dlp_sealing: list[tuple[str, SubjectScanner]] = []
    if scanner is not None:
        for at, d in enumerate(decisions):
            if d.level is None or _protected(d):
                continue
            # Response DLP scans this field: what it finds is masked as in a free-text field at this
            # field's level (the item's type lifted to its highest catalogued level), decided once here.
            dlp_ctx = BindContext(dataset=dataset, field=d.field, keys=keys, as_of=as_of)
            found, maskers, sealers = plan_items(
                catalog, rules, profile=profile, level=d.level, role=role, scenario=scenario, ctx=dlp_ctx
            )
            decisions[at] = replace(d, dlp=found)
            dlp_scanner = scanner.masked_by(maskers)
            dlp.append((d.field, dlp_scanner))
            if sealers:
                # A finding sealed by aes_gcm names the record's resident, as an item of a remark does.
                dlp_sealing.append((d.field, partial(_sealing_scanner, dlp_scanner, sealers)))
    level = max_level(catalog.level_of(dataset, n) for n in seen)
    return MaskingPlan(
        dataset=dataset,
        profile=profile,
        role=role,
        scenario=scenario,
        level=level,
        decisions=tuple(decisions),
        _ops=tuple(ops),
        _subject_ops=tuple(subject_ops),
        _dlp=tuple(dlp),
        _dlp_sealing=tuple(dlp_sealing),
    )


def _sealing_items(
    op: Operator,
    params: Mapping[str, ParamValue],
    ctx: BindContext,
    scanner: TextMasker,
    maskers: Mapping[str, MaskFn],
    sealers: Mapping[str, SubjectMaskFn],
) -> SubjectMaskFn:
    """A free-text field some of whose items are sealed (`aes_gcm`), each sealed with the record's resident
    (enc:v3:) as an envelope of any other field of the record is: whoever unmasks one is recorded as having
    read her data (masking.reversible). A record naming nobody gets enc:v2:, as without subjects."""

    planned = scanner.masked_by(maskers)

    def apply(value: object, subject: bytes | None) -> object:
        masker = _sealing_scanner(planned, sealers, subject)
        return op.bind(params, replace(ctx, scanner=masker))(value)

    return apply


def _sealing_scanner(
    scanner: TextMasker, sealers: Mapping[str, SubjectMaskFn], subject: bytes | None
) -> TextMasker:
    """``scanner`` (the plan's) sealing the kinds ``sealers`` seals with ``subject`` (enc:v3:; None: enc:v2:):
    the scanner of one record, in a free-text field or under response DLP."""
    theirs = {entity: partial(_sealed, sealer, subject=subject) for entity, sealer in sealers.items()}
    return scanner.masked_by(theirs)


def _sealed(sealer: SubjectMaskFn, value: object, *, subject: bytes | None) -> object:
    return sealer(value, subject)


def _with_landline_fallback(
    rules: RuleSet, mobile: MaskFn, ctx: BindContext, profile: str, level: Level, role: str, scenario: str
) -> tuple[FallbackDecision | None, MaskFn]:
    """The `mobile` operator redacts what is not a mobile number. A landline there (021-59612345,
    59612345: a resident's home phone in the 手机 field) gets what the same profile gives a landline
    field at this level, for this reader; without such a rule, or when it redacts anyway, nothing changes
    (fail closed). Anything that is neither stays redacted."""
    rule = rules.match(
        profile=profile, level=level, semantic_type=SemanticType.LANDLINE, role=role, scenario=scenario
    )
    if rule is None or rule.operator == "redact":
        return None, mobile
    try:
        op = get_operator(rule.operator)
        resolved = op.resolve_params(rule.params)
        landline = op.bind(resolved, ctx)
    except OperatorError:
        return None, mobile

    def apply(value: object) -> object:
        out = mobile(value)
        if out == REDACTED and is_landline_number(value):
            return landline(value)
        return out

    decision = FallbackDecision(SemanticType.LANDLINE.value, rule.operator, resolved, f"rule:{rule.id}")
    return decision, apply


def _fallback_applies(decision: FieldDecision, value: object) -> bool:
    # The only fallback is a landline in a field masked by `mobile`. No value is both: a landline starts
    # with 0 (area code) or is 7-8 digits from 2-9, a mobile is 11 digits from 1.
    return decision.operator == "mobile" and is_landline_number(value)


def mask_record(record: Mapping[str, object], plan: MaskingPlan) -> dict[str, object]:
    """The record masked by `plan`; fields not in the plan are dropped. Pure."""
    return {name: fn(record[name]) for name, fn in plan._ops if name in record}


def mask_records(
    records: Iterable[Mapping[str, object]],
    plan: MaskingPlan,
    subjects: Sequence[bytes | None] | None = None,
) -> list[dict[str, object]]:
    """`mask_record` over a page, the same records out. A value of a free-text field that repeats within
    the page is scanned once (the memo lives for this call only: no value outlives the request).

    `subjects`, one per record (None for a record that names nobody), are what an operator that names the
    record's subject seals into its output (`aes_gcm`: enc:v3:); without them it masks as `mask_record`."""
    ops = plan._ops
    if plan._page_memo:
        ops = tuple((name, _memoised(fn) if name in plan._page_memo else fn) for name, fn in ops)
    if subjects is None or not plan._subject_ops:
        return [{name: fn(record[name]) for name, fn in ops if name in record} for record in records]
    sealing = dict(plan._subject_ops)
    per_record = tuple((name, fn, sealing.get(name)) for name, fn in ops)
    return [
        {
            name: fn(record[name]) if seal is None else seal(record[name], subject)
            for name, fn, seal in per_record
            if name in record
        }
        for record, subject in zip(records, subjects, strict=True)
    ]


def _memoised(fn: MaskFn) -> MaskFn:
    seen: dict[str, object] = {}

    def apply(value: object) -> object:
        if type(value) is not str:
            return fn(value)
        hit = seen.get(value, seen)
        if hit is seen:
            hit = seen[value] = fn(value)
        return hit

    return apply


def response_level(catalog: Catalog, dataset: str, fields: Sequence[str]) -> Level:
    """就高从严 (GB/T 43697-2024): the highest level among the returned fields; an uncatalogued field
    counts as level 4."""
    return max_level(catalog.level_of(dataset, name) for name in fields)
