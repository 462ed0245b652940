"""Field catalog: every field of every dataset with its classification level, semantic type and tags.

Levels follow GB/T 43697-2024 (数据安全技术 数据分类分级规则): data is core (核心), important (重要) or
general (一般); general data is graded further into levels 1–4 by the harm a leak would do to the person
or organisation. Sensitive personal information in the sense of GB/T 35273-2020 §3.2 and PIPL art. 28
(identity numbers, financial accounts, specific identities such as subsistence-allowance status) is
placed at level 4; ordinary personal information (name, phone, address) at level 3.

The level of a response is the highest level among its fields (就高从严, see `max_level`).
"""

from __future__ import annotations

import enum
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from grassroots_common.personal_data import personal_data_in
from masking.errors import CatalogError, UnknownDatasetError, closest_name, unknown_name

__all__ = [
    "Catalog",
    "DatasetSpec",
    "FieldSpec",
    "Level",
    "SemanticType",
    "catalog_document",
    "catalog_from_document",
    "load_catalog",
    "max_level",
    "packaged_catalog_document",
]


class Level(enum.IntEnum):
    """Classification level per GB/T 43697-2024; higher is more sensitive."""

    L1 = 1
    L2 = 2
    L3 = 3
    L4 = 4
    IMPORTANT = 5
    CORE = 6

    @property
    def label_zh(self) -> str:
        return _LEVEL_LABELS_ZH[self]

    @property
    def document_value(self) -> int | str:
        """How the level is written in a catalog or rules document: 1–4, "important" or "core"."""
        if self <= Level.L4:
            return int(self)
        return "important" if self is Level.IMPORTANT else "core"

    @classmethod
    def parse(cls, raw: object) -> Level:
        """Accept 1–4, "L1".."L4", "important"/"重要", "core"/"核心"; raise ValueError otherwise."""
        if isinstance(raw, bool):
            raise ValueError("level must be 1-4, 'important' or 'core'")
        if isinstance(raw, int):
            if 1 <= raw <= 4:
                return cls(raw)
            raise ValueError("general data levels are 1-4; use 'important' or 'core' above them")
        if isinstance(raw, str):
            key = raw.strip().lower()
            if key in _LEVEL_NAMES:
                return _LEVEL_NAMES[key]
        raise ValueError("level must be 1-4, 'important' or 'core'")


_LEVEL_LABELS_ZH = {
    Level.L1: "一般数据1级",
    Level.L2: "一般数据2级",
    Level.L3: "一般数据3级",
    Level.L4: "一般数据4级",
    Level.IMPORTANT: "重要数据",
    Level.CORE: "核心数据",
}
_LEVEL_NAMES = {
    "l1": Level.L1,
    "l2": Level.L2,
    "l3": Level.L3,
    "l4": Level.L4,
    "important": Level.IMPORTANT,
    "重要": Level.IMPORTANT,
    "重要数据": Level.IMPORTANT,
    "core": Level.CORE,
    "核心": Level.CORE,
    "核心数据": Level.CORE,
}


class SemanticType(enum.StrEnum):
    """What a field's values *are*; rules pick operators by it."""

    RECORD_ID = "record_id"
    DIVISION_CODE = "division_code"
    PERSON_NAME = "person_name"
    ID_NUMBER = "id_number"
    MOBILE = "mobile"
    LANDLINE = "landline"
    EMAIL = "email"
    ADDRESS = "address"
    BIRTH_DATE = "birth_date"
    DATE = "date"
    AGE = "age"
    SEX = "sex"
    HOUSEHOLD_NO = "household_no"
    BENEFIT_STATUS = "benefit_status"
    BANK_CARD = "bank_card"
    CREDIT_CODE = "credit_code"
    LICENCE_PLATE = "licence_plate"
    FREE_TEXT = "free_text"
    CATEGORY = "category"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    level: Level
    semantic_type: SemanticType
    title: str = ""
    tags: frozenset[str] = frozenset()
    allowed_values: tuple[str, ...] = ()
    quasi_identifier: bool = False


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    name: str
    title: str
    owner_department: str
    provider_system: str
    record_id_field: str
    fields: Mapping[str, FieldSpec]
    tags: frozenset[str] = frozenset()

    @property
    def quasi_identifiers(self) -> tuple[str, ...]:
        """Fields declared as quasi-identifiers for the k-anonymity guard (GB/T 37964-2019 §3.7)."""
        return tuple(name for name, spec in self.fields.items() if spec.quasi_identifier)

    def field_meant(self, name: str) -> str | None:
        """The catalogued field a name not in the catalog most likely means: the one with that title
        (备注 -> remark), else a code a typo away (mobil -> mobile); None when nothing is close."""
        by_title = next((code for code, spec in self.fields.items() if spec.title == name), None)
        return by_title or field_code_meant(name, self.fields)


def field_code_meant(name: str, codes: Iterable[str]) -> str | None:
    """The field code a typo away from `name` (mobil -> mobile). Field codes are short and share
    prefixes, so they must be closer than other names to be offered."""
    return closest_name(name, codes, cutoff=0.75)


@dataclass(frozen=True, slots=True)
class Catalog:
    datasets: Mapping[str, DatasetSpec]
    base_tags: frozenset[str] = frozenset()
    dynamic_tags: frozenset[str] = frozenset()
    source: str = "<memory>"

    def dataset(self, name: str) -> DatasetSpec:
        try:
            return self.datasets[name]
        except KeyError:
            raise UnknownDatasetError(name) from None

    def field(self, dataset: str, name: str) -> FieldSpec | None:
        """The field's spec, or None when the field is not catalogued (callers must fail closed)."""
        return self.dataset(dataset).fields.get(name)

    def level_of(self, dataset: str, name: str) -> Level:
        """A field's level; an uncatalogued field counts as level 4 so it can never lower a response."""
        spec = self.field(dataset, name)
        return spec.level if spec is not None else Level.L4

    @property
    def tags(self) -> frozenset[str]:
        return self.base_tags | self.dynamic_tags


def max_level(levels: Iterable[Level]) -> Level:
    """就高从严: the level of a whole is the highest level of its parts (GB/T 43697-2024 §6)."""
    return max(levels, default=Level.L1)


def load_catalog(path: Path | None = None) -> Catalog:
    """Load and validate a catalog TOML file (default: the packaged `masking/data/catalog.toml`).

    Raises `CatalogError` naming the file and the offending entry (e.g. `datasets.residents.fields.mobile`).
    """
    if path is None:
        text = resources.files("masking").joinpath("data/catalog.toml").read_text(encoding="utf-8")
        source = "masking/data/catalog.toml"
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise CatalogError(
                source, "<file>", "无法读取文件", f"cannot read file ({exc.strerror})"
            ) from None
    return parse_catalog(text, source=source)


def parse_catalog(text: str, *, source: str = "<memory>") -> Catalog:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(source, "<toml>", "TOML 语法错误", f"TOML syntax error: {exc}") from None
    return _Builder(source).build(doc)


def packaged_catalog_document() -> dict[str, Any]:
    """The packaged catalog as a plain document (the baseline stewards' approved changes apply to)."""
    text = resources.files("masking").joinpath("data/catalog.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def catalog_from_document(doc: Mapping[str, Any], *, source: str = "<document>") -> Catalog:
    """Validate a catalog document (the TOML file's shape, e.g. after approved changes) into a Catalog."""
    return _Builder(source).build(doc)


def catalog_document(catalog: Catalog) -> dict[str, Any]:
    """The inverse of `catalog_from_document`: a JSON- and TOML-ready document of `catalog`."""
    return {
        "schema_version": 1,
        "tags": {"base": sorted(catalog.base_tags), "dynamic": sorted(catalog.dynamic_tags)},
        "datasets": {
            name: {
                "title": spec.title,
                "owner_department": spec.owner_department,
                "provider_system": spec.provider_system,
                "record_id_field": spec.record_id_field,
                "tags": sorted(spec.tags),
                "fields": {fname: _field_document(f) for fname, f in spec.fields.items()},
            }
            for name, spec in catalog.datasets.items()
        },
    }


def _field_document(spec: FieldSpec) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "title": spec.title,
        "level": spec.level.document_value,
        "semantic_type": spec.semantic_type.value,
        "tags": sorted(spec.tags),
    }
    if spec.allowed_values:
        doc["allowed_values"] = list(spec.allowed_values)
    if spec.quasi_identifier:
        doc["quasi_identifier"] = True
    return doc


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, entry: str, zh: str, en: str) -> CatalogError:
        return CatalogError(self.source, entry, zh, en)

    def build(self, doc: Mapping[str, Any]) -> Catalog:
        if doc.get("schema_version") != 1:
            raise self.fail(
                "schema_version", "只支持 schema_version = 1", "only schema_version = 1 is supported"
            )
        self._reject_unknown("<root>", doc, {"schema_version", "tags", "datasets"})
        tags = doc.get("tags", {})
        if not isinstance(tags, dict):
            raise self.fail("tags", "应为表", "must be a table")
        self._reject_unknown("tags", tags, {"base", "dynamic"})
        base = self._str_set("tags.base", tags.get("base", []))
        dynamic = self._str_set("tags.dynamic", tags.get("dynamic", []))
        clash = base & dynamic
        if clash:
            raise self.fail(
                "tags.dynamic",
                "动态标签不得与基础标签重名",
                f"dynamic tags repeat base tags: {sorted(clash)}",
            )
        known_tags = base | dynamic
        raw_datasets = doc.get("datasets")
        if not isinstance(raw_datasets, dict) or not raw_datasets:
            raise self.fail("datasets", "至少需要一个数据集", "at least one dataset is required")
        datasets = {name: self._dataset(name, raw, known_tags) for name, raw in raw_datasets.items()}
        return Catalog(datasets=datasets, base_tags=base, dynamic_tags=dynamic, source=self.source)

    def _dataset(self, name: str, raw: object, known_tags: frozenset[str]) -> DatasetSpec:
        entry = f"datasets.{name}"
        if not isinstance(raw, dict):
            raise self.fail(entry, "应为表", "must be a table")
        self._reject_unknown(
            entry,
            raw,
            {"title", "owner_department", "provider_system", "record_id_field", "tags", "fields"},
        )
        for key in ("owner_department", "provider_system", "record_id_field"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise self.fail(f"{entry}.{key}", "缺失或不是字符串", "missing or not a string")
        raw_fields = raw.get("fields")
        if not isinstance(raw_fields, dict) or not raw_fields:
            raise self.fail(f"{entry}.fields", "至少需要一个字段", "at least one field is required")
        fields = {
            fname: self._field(f"{entry}.fields.{fname}", fname, f, known_tags)
            for fname, f in raw_fields.items()
        }
        id_field = raw["record_id_field"]
        if id_field not in fields:
            raise self.fail(
                f"{entry}.record_id_field",
                "记录标识字段未编目",
                f"record id field {id_field!r} is not catalogued",
            )
        if fields[id_field].level > Level.L2:
            # The stable record id is returned on every record (issue 2), so it must be an opaque,
            # non-personal value; a sensitive id field would defeat masking.
            raise self.fail(
                f"{entry}.fields.{id_field}",
                "记录标识必须是不含个人信息的1级或2级字段",
                "the record id field must be an opaque level 1-2 field",
            )
        return DatasetSpec(
            name=name,
            title=str(raw.get("title", name)),
            owner_department=raw["owner_department"],
            provider_system=raw["provider_system"],
            record_id_field=id_field,
            fields=fields,
            tags=self._tags(f"{entry}.tags", raw.get("tags", []), known_tags),
        )

    def _field(self, entry: str, name: str, raw: object, known_tags: frozenset[str]) -> FieldSpec:
        if not isinstance(raw, dict):
            raise self.fail(entry, "应为表", "must be a table")
        self._reject_unknown(
            entry, raw, {"title", "level", "semantic_type", "tags", "allowed_values", "quasi_identifier"}
        )
        if "level" not in raw:
            raise self.fail(f"{entry}.level", "缺少分级", "level is missing")
        try:
            level = Level.parse(raw["level"])
        except ValueError as exc:
            raise self.fail(f"{entry}.level", "分级无效（1–4、important、core）", str(exc)) from None
        try:
            semantic_type = SemanticType(str(raw.get("semantic_type")))
        except ValueError:
            zh, en = unknown_name(
                "语义类型", "semantic_type", raw.get("semantic_type"), [t.value for t in SemanticType]
            )
            raise self.fail(f"{entry}.semantic_type", zh, en) from None
        allowed = raw.get("allowed_values", [])
        if not isinstance(allowed, list) or not all(isinstance(v, str) for v in allowed):
            raise self.fail(f"{entry}.allowed_values", "应为字符串列表", "must be a list of strings")
        qi = raw.get("quasi_identifier", False)
        if not isinstance(qi, bool):
            raise self.fail(f"{entry}.quasi_identifier", "应为布尔值", "must be true or false")
        return FieldSpec(
            name=name,
            level=level,
            semantic_type=semantic_type,
            title=str(raw.get("title", name)),
            tags=self._tags(f"{entry}.tags", raw.get("tags", []), known_tags),
            allowed_values=tuple(allowed),
            quasi_identifier=qi,
        )

    def _tags(self, entry: str, raw: object, known: frozenset[str]) -> frozenset[str]:
        tags = self._str_set(entry, raw)
        unknown = tags - known
        if unknown:
            # Named in both languages with the declared ones, so the steward sees the typo; a tag typed
            # with personal data in it (an ID or phone number) is not repeated in the answer.
            shown = [tag for tag in sorted(unknown) if personal_data_in(tag) is None]
            declared = sorted(known)
            raise self.fail(
                entry,
                "使用了未登记的标签"
                + (f" {'、'.join(shown)}" if shown else "")
                + f"；已登记的标签：{'、'.join(declared) or '无'}",
                "tags not declared under [tags]"
                + (f": {', '.join(shown)}" if shown else "")
                + f"; declared: {', '.join(declared) or 'none'}",
            )
        return tags

    def _str_set(self, entry: str, raw: object) -> frozenset[str]:
        if not isinstance(raw, list) or not all(isinstance(v, str) and v for v in raw):
            raise self.fail(entry, "应为非空字符串列表", "must be a list of non-empty strings")
        return frozenset(raw)

    def _reject_unknown(self, entry: str, raw: Mapping[str, object], allowed: set[str]) -> None:
        extra = set(raw) - allowed
        if extra:
            raise self.fail(entry, "含有未知键", f"unknown keys: {', '.join(sorted(extra))}")
