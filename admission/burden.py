"""The burden view (减负): how many admitted systems reach a village and what they make it type.

The district plan (seeds/003) asks to "对相同的填报项进行智能合并和数据预填，减少村居采集数据量": a field
that an admitted system already collects in the same villages, or that comes back to villages as backflowed
data (数据回流), should be reused or prefilled, not collected again. Only admitted (approved) systems count:
a pending or suspended one does not currently burden anyone. Fields match by exact ref after the optional
``equivalents`` mapping (e.g. ``residents.mobile`` -> ``phone``) that the gateway builds from the catalog.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from admission import _divisions
from admission.model import SystemRegistration

SUGGESTION_EN = "reuse or prefill instead of collecting again"
SUGGESTION_ZH = "复用或预填，不要重复采集（智能合并、数据预填）"


def _key(field: str, equivalents: Mapping[str, str] | None) -> str:
    field = field.strip()
    return equivalents.get(field, field) if equivalents else field


def reaches_village(registration: SystemRegistration, village_code: str) -> bool:
    """A system burdens a village only if it extends down to villages and one of its areas covers it."""
    village = _divisions.normalize(village_code)
    return registration.reaches_villages and any(_divisions.covers(r, village) for r in registration.reaches)


def _shares_villages(a: SystemRegistration, b: SystemRegistration) -> bool:
    return (
        a.reaches_villages
        and b.reaches_villages
        and any(_divisions.overlap(x, y) for x in a.reaches for y in b.reaches)
    )


@dataclass(frozen=True, slots=True)
class VillageBurden:
    village_code: str
    n_systems: int
    fields_demanded: tuple[str, ...]
    systems: tuple[str, ...]
    demand: Mapping[str, tuple[str, ...]]  # field -> systems demanding it

    def __iter__(self) -> Iterator[Any]:
        """Unpacks as ``n_systems, fields_demanded``."""
        return iter((self.n_systems, self.fields_demanded))

    @property
    def fields_demanded_more_than_once(self) -> tuple[str, ...]:
        return tuple(f for f, systems in self.demand.items() if len(systems) > 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "village_code": self.village_code,
            "n_systems": self.n_systems,
            "systems": list(self.systems),
            "fields_demanded": list(self.fields_demanded),
            "demand": {f: list(s) for f, s in self.demand.items()},
        }


def village_burden(
    registrations: Iterable[SystemRegistration],
    village_code: str,
    *,
    equivalents: Mapping[str, str] | None = None,
) -> VillageBurden:
    """The admitted systems that reach ``village_code`` and the fields they demand of it."""
    village = _divisions.normalize(village_code)
    reaching = sorted(
        (r for r in registrations if r.is_admitted and reaches_village(r, village)), key=lambda r: r.system_id
    )
    demand: dict[str, list[str]] = {}
    for reg in reaching:
        for field in dict.fromkeys(_key(f, equivalents) for f in reg.collects_fields):
            demand.setdefault(field, []).append(reg.system_id)
    ordered = dict(sorted(demand.items()))
    return VillageBurden(
        village_code=village,
        n_systems=len(reaching),
        fields_demanded=tuple(ordered),
        systems=tuple(r.system_id for r in reaching),
        demand={f: tuple(s) for f, s in ordered.items()},
    )


@dataclass(frozen=True, slots=True)
class FieldOverlap:
    """A field the new system would collect although villages already supply it or receive it back."""

    field: str
    collected_by: tuple[str, ...]
    in_backflow: bool
    suggestion_zh: str = SUGGESTION_ZH
    suggestion_en: str = SUGGESTION_EN

    def as_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "collected_by": list(self.collected_by),
            "in_backflow": self.in_backflow,
            "suggestion_zh": self.suggestion_zh,
            "suggestion_en": self.suggestion_en,
        }


def field_overlap(
    new_registration: SystemRegistration,
    admitted_registrations: Iterable[SystemRegistration],
    backflow_fields: Iterable[str],
    *,
    equivalents: Mapping[str, str] | None = None,
) -> list[FieldOverlap]:
    """Fields of ``new_registration`` already collected, in overlapping villages, by an admitted system, or
    available as backflowed data; sorted by field. The new system itself is never counted against itself."""
    backflow = {_key(f, equivalents) for f in backflow_fields}
    others = [
        r
        for r in admitted_registrations
        if r.is_admitted
        and r.system_id != new_registration.system_id
        and _shares_villages(new_registration, r)
    ]
    overlaps: list[FieldOverlap] = []
    for field in sorted({_key(f, equivalents) for f in new_registration.collects_fields}):
        collected_by = tuple(
            sorted(r.system_id for r in others if field in {_key(f, equivalents) for f in r.collects_fields})
        )
        if collected_by or field in backflow:
            overlaps.append(FieldOverlap(field, collected_by, field in backflow))
    return overlaps


@dataclass(frozen=True, slots=True)
class DuplicateField:
    field: str
    systems: tuple[str, ...]
    villages: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DistrictReport:
    villages: tuple[VillageBurden, ...]
    duplicate_fields: tuple[DuplicateField, ...]

    @property
    def systems_per_village(self) -> dict[str, int]:
        return {v.village_code: v.n_systems for v in self.villages}

    def as_dict(self) -> dict[str, Any]:
        return {
            "systems_per_village": self.systems_per_village,
            "villages": [v.as_dict() for v in self.villages],
            "fields_demanded_more_than_once": [
                {"field": d.field, "systems": list(d.systems), "villages": list(d.villages)}
                for d in self.duplicate_fields
            ],
        }


def district_report(
    registrations: Iterable[SystemRegistration],
    village_codes: Iterable[str],
    *,
    equivalents: Mapping[str, str] | None = None,
) -> DistrictReport:
    """Systems per village, and every field that more than one admitted system demands of the same village
    (with the systems and the villages where that happens)."""
    regs = [r for r in registrations if r.is_admitted]
    villages = tuple(
        village_burden(regs, v, equivalents=equivalents)
        for v in sorted(dict.fromkeys(_divisions.normalize(c) for c in village_codes))
    )
    systems: dict[str, set[str]] = {}
    where: dict[str, list[str]] = {}
    for burden in villages:
        for field, demanders in burden.demand.items():
            if len(demanders) > 1:
                systems.setdefault(field, set()).update(demanders)
                where.setdefault(field, []).append(burden.village_code)
    duplicates = tuple(
        DuplicateField(field, tuple(sorted(systems[field])), tuple(where[field])) for field in sorted(systems)
    )
    return DistrictReport(villages=villages, duplicate_fields=duplicates)
