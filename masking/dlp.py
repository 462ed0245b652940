"""Response DLP: catch personal data in fields nobody classified as personal (catalog drift).

Every string in a response that the masking plan does not already protect is scanned (numbers too, as
written, and the keys of nested objects); what the
scanner finds is masked in place and reported as a `DriftAlert` naming dataset, field and entity type,
so the gateway can append an audit event, count a metric and the steward can classify the field
(issue 4). Fields the plan protects (level 3 and above, masked by their rule — free text by the
`freetext` operator, which already scanned it — and uncatalogued fields, redacted) are not scanned
again: pass `protected=plan.protected_fields`.

What is found is masked as the plan's profile masks it in a free-text field at the scanned field's level
(`scanners=plan.dlp_scanners`, bound once with the plan; `masking.items`): an ID number that drifted into an
unclassified field is shown no more than in its own field or in a remark. Without `scanners`, the scanner's
own masking. A finding sealed by `aes_gcm` is sealed with the resident of its record (enc:v3:), as a field's
envelope and an item of a remark are, when the caller gives each record's resident (`subjects`, with
`sealers=plan.dlp_sealers`): whoever unmasks it is recorded as having read her data. Without them (a dry-run)
it names nobody (enc:v2:).

Cost: a value is scanned once per call even when it repeats (a page of one village's residents
carries the same division code twenty times), and the scanner itself returns at once for a value
without a digit, "@", plate prefix or name cue (`FreeTextScanner.scan`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from masking.catalog import Catalog, Level

__all__ = ["DriftAlert", "Scanner", "scan_fields_in_place", "scan_response"]


class _FindingLike(Protocol):
    @property
    def entity_type(self) -> str: ...


class Scanner(Protocol):
    """What `scan_response` needs (`masking.freetext.FreeTextScanner` fits)."""

    def scan_and_mask(self, text: str) -> tuple[str, Sequence[_FindingLike]]: ...


@dataclass(frozen=True, slots=True)
class DriftAlert:
    """Personal data of `entity_type` found `count` times in `dataset.field`. Carries no values."""

    dataset: str
    field: str
    entity_type: str
    count: int


_Memo = dict[str, tuple[str, tuple[str, ...]]]


def scan_response(
    catalog: Catalog,
    dataset: str,
    records: Iterable[Mapping[str, object]],
    scanner: Scanner,
    *,
    protected: Collection[str] | None = None,
    scanners: Mapping[str, Scanner] | None = None,
    unmemoised: Collection[str] = (),
) -> tuple[list[dict[str, object]], list[DriftAlert]]:
    """Scan and mask `records` (already masked by their plan); returns the records and drift alerts.

    Strings nested in lists or dicts are scanned too and reported under the top-level field name.
    `protected` is the set of fields not to scan; the gateway passes `MaskingPlan.protected_fields`
    so DLP and masking agree on the plan actually applied. Without it, the catalog's level-3+ fields
    of `dataset` are protected. Records come back as new dicts; unscanned values are the same objects.
    `scanners` and `unmemoised` as for `scan_fields_in_place`.
    """
    if protected is None:
        spec = catalog.dataset(dataset)
        protected = {name for name, f in spec.fields.items() if f.level >= Level.L3}
    elif not isinstance(protected, set | frozenset):
        protected = frozenset(protected)
    out = [dict(record) for record in records]
    fields = dict.fromkeys(name for record in out for name in record if name not in protected)
    return out, scan_fields_in_place(
        dataset, out, tuple(fields), scanner, scanners=scanners, unmemoised=unmemoised
    )


def scan_fields_in_place(
    dataset: str,
    records: Sequence[dict[str, object]],
    fields: Sequence[str],
    scanner: Scanner,
    *,
    scanners: Mapping[str, Scanner] | None = None,
    unmemoised: Collection[str] = (),
    sealers: Mapping[str, Callable[[bytes | None], Scanner]] | None = None,
    subjects: Sequence[bytes | None] | None = None,
) -> list[DriftAlert]:
    """Scan and mask `fields` of `records` in place (the records are the caller's own: the gateway's, fresh
    from `mask_records`, with `fields=plan.scanned_fields`); returns the drift alerts. `scan_response` is
    this over copies, with every unprotected field.

    `scanners` (`plan.dlp_scanners`) gives the scanner of a field, masking its findings as the plan's profile
    does; a field it does not name gets `scanner`. A value repeated in a field is scanned once, except in
    the `unmemoised` fields (`plan.dlp_unmemoised`: a finding sealed with a fresh nonce each time).

    `subjects`, one per record (None for a record naming nobody), are sealed into what the `sealers`
    (`plan.dlp_sealers`) seal in their fields: a finding sealed by `aes_gcm` names the record's resident
    (enc:v3:), so that unmasking it is recorded as a read of her data. Without them, `scanners` seal it
    naming nobody (enc:v2:)."""
    if subjects is not None and len(subjects) != len(records):
        raise ValueError(f"{len(subjects)} subjects for {len(records)} records")
    counts: Counter[tuple[str, str]] = Counter()
    memos: dict[int, _Memo] = {}
    for name in fields:
        seal = None if subjects is None or not sealers else sealers.get(name)
        if seal is not None:
            # Each record's findings sealed with its own resident, each envelope with a fresh nonce.
            for record, subject in zip(records, subjects or (), strict=True):
                value = record.get(name)
                if value is not None:
                    record[name] = _scan_value(value, name, seal(subject), counts, None)
            continue
        field_scanner = scanner if scanners is None else scanners.get(name, scanner)
        # One memo per scanner: fields masked alike share what was found (a division code in two fields).
        memo = None if name in unmemoised else memos.setdefault(id(field_scanner), {})
        for record in records:
            value = record.get(name)
            if value is None:
                continue
            if type(value) is str:
                record[name] = _scan_text(value, name, field_scanner, counts, memo)
            elif isinstance(value, str | list | tuple | dict | int | float) and not isinstance(value, bool):
                record[name] = _scan_value(value, name, field_scanner, counts, memo)
    return [
        DriftAlert(dataset=dataset, field=field, entity_type=entity, count=n)
        for (field, entity), n in sorted(counts.items())
    ]


def _scan_text(
    text: str, field: str, scanner: Scanner, counts: Counter[tuple[str, str]], memo: _Memo | None
) -> str:
    hit = None if memo is None else memo.get(text)
    if hit is None:
        masked, findings = scanner.scan_and_mask(text)
        hit = (masked, tuple(f.entity_type for f in findings))
        if memo is not None:
            memo[text] = hit
    for entity in hit[1]:
        counts[(field, entity)] += 1
    return hit[0]


def _scan_value(
    value: object, field: str, scanner: Scanner, counts: Counter[tuple[str, str]], memo: _Memo | None
) -> object:
    if isinstance(value, str):
        return _scan_text(value, field, scanner, counts, memo)
    if isinstance(value, int | float) and not isinstance(value, bool):
        # A number is personal data as much as the same digits in a string: an ID number or a mobile sent
        # as a JSON number (a registry's numeric column) was passed over and reached the reader in clear.
        # Read as written; what the scanner masks comes back as text, anything else stays the number.
        text = str(value)
        masked = _scan_text(text, field, scanner, counts, memo)
        return value if masked == text else masked
    if isinstance(value, list | tuple):
        return [_scan_value(v, field, scanner, counts, memo) for v in value]
    if isinstance(value, dict):
        # Keys too: an object keyed by ID numbers carries them as much as its values do.
        return {
            _scan_text(k, field, scanner, counts, memo) if isinstance(k, str) else k: _scan_value(
                v, field, scanner, counts, memo
            )
            for k, v in value.items()
        }
    return value
