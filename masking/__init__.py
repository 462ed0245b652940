"""What a permitted reader may see: field catalog and classification, masking rules and plans,
Chinese-native operators, keys, free-text PII detection (presidio) and response DLP.

A library: plain data in and out; imports no other package of the project.
presidio/spaCy are imported only when a `FreeTextScanner` is created.

Modules beyond the re-exports below:

* `masking.stewardship` — the catalog, tags and rules as managed data: `StewardshipService.propose /
  approve / reject` (four-eyes; department and platform-admin checks), `load_effective(session,
  baseline)` (packaged files + approved changes), `masking_version(session)` (the polled version row).
  Tables in `masking.tables` (`metadata`).
* `masking.kanon` — `guard_release(catalog, dataset, records, k=, min_records=)`: the re-identification
  guard on masked values, with generalisation ladders per semantic type (`ladder_for`).
* `masking.corpus` — `labelled_corpus(n, seed)` and `score(scan, corpus)`: the generated labelled
  corpus on which `FreeTextScanner.scan` and a stock presidio `AnalyzerEngine`
  (`FreeTextScanner.scan_with_engine`) are measured side by side.
"""

from masking.catalog import Catalog, DatasetSpec, FieldSpec, Level, SemanticType, load_catalog
from masking.dlp import DriftAlert, scan_fields_in_place, scan_response
from masking.errors import (
    CatalogError,
    DryRunValueError,
    KeyRingError,
    KeyRingMalformed,
    MaskingError,
    OperatorError,
    RulesError,
    UnboundEnvelopeError,
    UnknownDatasetError,
    UnknownProfileError,
    UnmaskError,
    UnscopedKeyError,
)
from masking.ff1 import FF1
from masking.freetext import Finding, FreeTextScanner
from masking.kanon import KAnonymityResult, enforce_k_anonymity, guard_release, ladder_for, smallest_class
from masking.keys import KeyRing, parse_kek, read_kek
from masking.operators import (
    OPERATORS,
    REDACTED,
    BindContext,
    Operator,
    Param,
    get_operator,
    mask_value,
    register_operator,
)
from masking.plan import (
    FallbackDecision,
    FieldDecision,
    ItemDecision,
    MaskingPlan,
    mask_record,
    mask_records,
    plan_masking,
    response_level,
)
from masking.reversible import (
    OpenedEnvelope,
    Unmask,
    decrypt_envelope,
    envelope_context_among,
    envelope_names_dataset,
    ff1_id_reveal,
    is_dry_run_value,
    open_envelope,
)
from masking.rules import MaskingRule, RuleSet, load_rules

__all__ = [
    "FF1",
    "OPERATORS",
    "REDACTED",
    "BindContext",
    "Catalog",
    "CatalogError",
    "DatasetSpec",
    "DriftAlert",
    "DryRunValueError",
    "FallbackDecision",
    "FieldDecision",
    "FieldSpec",
    "Finding",
    "FreeTextScanner",
    "ItemDecision",
    "KAnonymityResult",
    "KeyRing",
    "KeyRingError",
    "KeyRingMalformed",
    "Level",
    "MaskingError",
    "MaskingPlan",
    "MaskingRule",
    "OpenedEnvelope",
    "Operator",
    "OperatorError",
    "Param",
    "RuleSet",
    "RulesError",
    "SemanticType",
    "UnboundEnvelopeError",
    "UnknownDatasetError",
    "UnknownProfileError",
    "Unmask",
    "UnmaskError",
    "UnscopedKeyError",
    "decrypt_envelope",
    "enforce_k_anonymity",
    "envelope_context_among",
    "envelope_names_dataset",
    "ff1_id_reveal",
    "get_operator",
    "guard_release",
    "is_dry_run_value",
    "ladder_for",
    "load_catalog",
    "load_rules",
    "mask_record",
    "mask_records",
    "mask_value",
    "open_envelope",
    "parse_kek",
    "plan_masking",
    "read_kek",
    "register_operator",
    "response_level",
    "scan_fields_in_place",
    "scan_response",
    "smallest_class",
]
