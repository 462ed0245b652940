"""What the `freetext` operator shows of each item of personal data it finds in a free-text field.

An item (an ID number, a mobile, a name, an address, a birth date… in a remark) is shown no more than the
plan's profile shows a field of its semantic type to this reader in this scenario (the principle of the
plan's `FallbackDecision`: a landline in a mobile field is shown as in a landline field), and never more
than the scanner's own masking of that kind, which every free-text field had before profiles reached its
items (GB/T 35273-2020 §6.2: show the minimum; of two maskings, the stronger).

"Shows" means the characters of the value an operator leaves in the clear; the length is not counted (most
operators keep it). The rule's operator is taken when it shows no more than the scanner's; the scanner's is
kept when the rule's shows more or the same (``keep``, ``date`` to the month); for the same operator, or a
``partial``, each parameter takes its less revealing value (source ``rule:<id>+scanner``). An operator that
cannot be compared with the scanner's (a registered one of another kind) hides the item whole, as does a
level 3+ type no rule covers (as its field would be) and a type any field of which is important or core
data. The level a type's rule is matched at is the free-text field's, or the highest level the catalog gives
a field of that type if higher (就高从严, GB/T 43697-2024): an ID number in a level-3 remark is matched as
level 4, as the ID number field is.

Response DLP masks what it finds in a field the plan does not protect the same way, as in a free-text field at
that field's level (`FieldDecision.dlp`, `MaskingPlan.dlp_scanners`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from masking.catalog import Catalog, Level, SemanticType
from masking.errors import OperatorError
from masking.freetext import ENTITY_TYPES, ITEM_SEMANTIC_TYPES, OWN_OPERATORS
from masking.operators import REDACTED, BindContext, MaskFn, ParamValue, SubjectMaskFn, get_operator
from masking.rules import RuleSet

__all__ = ["RANDOMISED_OPERATORS", "ItemDecision", "plan_items"]

#: The operator name an item decision gives for the scanner's own masking of the item's kind.
SCANNER = "freetext"

#: Operators whose output for a value differs call to call (a fresh nonce): a free-text field with an item
#: masked by one is not memoised per page.
RANDOMISED_OPERATORS: frozenset[str] = frozenset({"aes_gcm"})

#: Operators that leave none of an item's characters in the clear to the reader, or (``ff1_id``) the
#: region code alone, which the scanner shows of an ID number too, and nothing of any other kind.
_SHOWS_NO_MORE: frozenset[str] = frozenset({"redact", "hmac_pseudonym", "aes_gcm", "ff1_id"})

#: The most leading and trailing characters of an item of each kind the scanner shows in every case: the
#: largest ``partial`` that shows no more than the scanner (a landline's area code can be missing, so only
#: its last two digits count; an address detail and a birth date: nothing, by these terms).
_PARTIAL_BOUND: dict[str, tuple[int, int]] = {
    "CN_ID_NUMBER": (6, 0),
    "CN_CREDIT_CODE": (8, 0),
    "BANK_CARD": (6, 4),
    "CN_MOBILE": (3, 4),
    "CN_LANDLINE": (0, 2),
    "PERSON": (1, 0),
    "EMAIL_ADDRESS": (1, 0),
    "CN_LICENCE_PLATE": (2, 0),
    "CN_ADDRESS_DETAIL": (0, 0),
    "CN_BIRTH_DATE": (0, 0),
}

#: Operators whose own output never shows less than the scanner's for the kind: the scanner's is kept.
#: (A birth date to the year is what the scanner shows, in the sentence's own form; to the month is more. An
#: address generalised keeps its place names, which the scanner hides whole.)
_SHOWS_AT_LEAST: dict[str, frozenset[str]] = {
    "CN_BIRTH_DATE": frozenset({"date"}),
    "CN_ADDRESS_DETAIL": frozenset({"address"}),
}


@dataclass(frozen=True, slots=True)
class ItemDecision:
    """How the items of one kind found in a free-text field are masked, and why."""

    entity_type: str  # the scanner's kind: CN_MOBILE, PERSON, …
    semantic_type: str | None  # the field type of that kind; None: there is none (WeChat id, passport)
    operator: str  # "freetext": the scanner's own masking of that kind
    params: Mapping[str, ParamValue]
    #: "scanner" (the profile's rule shows as much or more, or there is no field type), "rule:<id>",
    #: "rule:<id>+scanner" (the less revealing parameter of each), or "fail-closed:<reason>" (hidden whole)
    source: str
    #: What a field of the semantic type gets here ("rule:<id>", "default:keep", "fail-closed:no-rule", …)
    field_source: str | None = None

    def explained(self) -> dict[str, object]:
        return {
            "entity_type": self.entity_type,
            "semantic_type": self.semantic_type,
            "operator": self.operator,
            "params": dict(self.params),
            "source": self.source,
            "field_source": self.field_source,
        }


def plan_items(
    catalog: Catalog,
    rules: RuleSet,
    *,
    profile: str,
    level: Level,
    role: str,
    scenario: str,
    ctx: BindContext,
) -> tuple[tuple[ItemDecision, ...], dict[str, MaskFn], dict[str, SubjectMaskFn]]:
    """The decision for every kind the scanner finds in a free-text field at ``level``, the bound
    operators of the kinds not masked by the scanner's own (for `FreeTextScanner.masked_by`), and, for the
    kinds whose operator names the record's resident (`aes_gcm`: enc:v3:), those operators bound for her."""
    decisions: list[ItemDecision] = []
    maskers: dict[str, MaskFn] = {}
    sealers: dict[str, SubjectMaskFn] = {}
    for entity in ENTITY_TYPES:
        decision = _decide(catalog, rules, entity, profile=profile, level=level, role=role, scenario=scenario)
        if decision.operator != SCANNER:
            try:
                op = get_operator(decision.operator)
                resolved = op.resolve_params(decision.params)
                maskers[entity] = op.bind(resolved, ctx)
                sealer = op.bind_for_subject(resolved, ctx)
                if sealer is not None:
                    sealers[entity] = sealer
                decision = replace(decision, params=resolved)
            except OperatorError:
                # Only a keyed operator can fail here (no key ring): the item is hidden, never shown.
                source = f"fail-closed:{decision.operator}-unavailable"
                decision = ItemDecision(
                    entity,
                    decision.semantic_type,
                    "redact",
                    {"replacement": REDACTED},
                    source,
                    decision.field_source,
                )
                maskers[entity] = _hidden
        decisions.append(decision)
    return tuple(decisions), maskers, sealers


def _hidden(_value: object) -> object:
    return REDACTED


def _type_level(catalog: Catalog, semantic_type: SemanticType, level: Level) -> Level:
    """就高从严: ``level`` (the free-text field's), or the highest a field of ``semantic_type`` has."""
    for spec in catalog.datasets.values():
        for field in spec.fields.values():
            if field.semantic_type == semantic_type and field.level > level:
                level = field.level
    return level


def _decide(
    catalog: Catalog,
    rules: RuleSet,
    entity: str,
    *,
    profile: str,
    level: Level,
    role: str,
    scenario: str,
) -> ItemDecision:
    semantic_type = ITEM_SEMANTIC_TYPES.get(entity)
    if semantic_type is None:
        return ItemDecision(entity, None, SCANNER, {}, "scanner")
    st = semantic_type.value
    type_level = _type_level(catalog, semantic_type, level)
    if type_level > Level.L4:
        source = f"fail-closed:{type_level.document_value}"
        return ItemDecision(entity, st, "redact", {}, source, source)
    rule = rules.match(
        profile=profile, level=type_level, semantic_type=semantic_type, role=role, scenario=scenario
    )
    if rule is None:
        if type_level >= Level.L3:
            return ItemDecision(entity, st, "redact", {}, "fail-closed:no-rule", "fail-closed:no-rule")
        return ItemDecision(entity, st, SCANNER, {}, "scanner", "default:keep")
    field_source = f"rule:{rule.id}"
    op_name, params = rule.operator, dict(rule.params)

    def scanner() -> ItemDecision:
        return ItemDecision(entity, st, SCANNER, {}, "scanner", field_source)

    def taken(met: Mapping[str, ParamValue]) -> ItemDecision:
        source = field_source if met == params else f"{field_source}+scanner"
        return ItemDecision(entity, st, op_name, met, source, field_source)

    if op_name == "keep" or op_name in _SHOWS_AT_LEAST.get(entity, ()):
        return scanner()
    if op_name in _SHOWS_NO_MORE:
        return taken(params)
    own = OWN_OPERATORS.get(entity)
    if own is not None and op_name == own[0]:
        own_params = get_operator(own[0]).resolve_params(own[1])
        return taken(_met(params, own_params))
    if op_name == "partial":
        first, last = _PARTIAL_BOUND[entity]
        met = {
            **params,
            "keep_first": min(int(params["keep_first"]), first),
            "keep_last": min(int(params["keep_last"]), last),
        }
        return taken(met)
    if entity == "CN_BIRTH_DATE" and op_name == "age_bucket" and int(params["width"]) >= 2:
        # An age band of two years or more says less than the year of birth; a band of one year is the
        # age itself, which says what the year does not (whether the birthday has passed).
        return taken(params)
    return ItemDecision(entity, st, "redact", {}, "fail-closed:incomparable", field_source)


def _met(rule: Mapping[str, ParamValue], own: Mapping[str, ParamValue]) -> dict[str, ParamValue]:
    """The rule's parameters, each no more revealing than the scanner's: fewer characters kept (a number),
    a part shown only when both show it (a flag: keep_birth_year, keep_check, preserve_length)."""
    met: dict[str, ParamValue] = {}
    for name, value in rule.items():
        mine = own.get(name, value)
        if isinstance(value, bool) and isinstance(mine, bool):
            met[name] = value and mine
        elif isinstance(value, int) and isinstance(mine, int):
            met[name] = min(value, mine)
        else:
            met[name] = value
    return met
