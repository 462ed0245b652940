"""Response DLP: catch personal data in fields nobody classified as personal (catalog drift).

Every string in a response that is not catalogued at level 3 or above is scanned; what the scanner
finds is masked in place and reported as a `DriftAlert` naming dataset, field and entity type, so the
gateway can append an audit event, count a metric and the steward can classify the field (issue 4).
Fields at level 3+ were already masked by their rule and are not scanned again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from masking.catalog import Catalog, Level

__all__ = ["DriftAlert", "Scanner", "scan_response"]


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


def scan_response(
    catalog: Catalog,
    dataset: str,
    records: Iterable[Mapping[str, object]],
    scanner: Scanner,
    *,
    protected: Collection[str] | None = None,
) -> tuple[list[dict[str, object]], list[DriftAlert]]:
    """Scan and mask `records` (already masked by their plan); returns the records and drift alerts.

    Strings nested in lists or dicts are scanned too and reported under the top-level field name.
    `protected` (e.g. `MaskingPlan.protected_fields`) overrides the catalog's level-3+ fields.
    """
    spec = catalog.dataset(dataset)
    if protected is None:
        protected = {name for name, f in spec.fields.items() if f.level >= Level.L3}
    counts: Counter[tuple[str, str]] = Counter()
    out: list[dict[str, object]] = []
    for record in records:
        masked: dict[str, object] = {}
        for name, value in record.items():
            if name in protected:
                masked[name] = value
            else:
                masked[name] = _scan_value(value, name, scanner, counts)
        out.append(masked)
    alerts = [
        DriftAlert(dataset=dataset, field=field, entity_type=entity, count=n)
        for (field, entity), n in sorted(counts.items())
    ]
    return out, alerts


def _scan_value(value: object, field: str, scanner: Scanner, counts: Counter[tuple[str, str]]) -> object:
    if isinstance(value, str):
        masked, findings = scanner.scan_and_mask(value)
        for f in findings:
            counts[(field, f.entity_type)] += 1
        return masked
    if isinstance(value, list | tuple):
        return [_scan_value(v, field, scanner, counts) for v in value]
    if isinstance(value, dict):
        return {k: _scan_value(v, field, scanner, counts) for k, v in value.items()}
    return value
