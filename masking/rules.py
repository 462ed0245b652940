"""Masking rules: ordered, first match wins, from (profile, level, semantic type, role, scenario) to an
operator with parameters. Rules are data (`masking/data/rules.toml`), validated when loaded: every
operator must exist and its parameters must resolve, so a typo fails at start-up, not on a request.

A field at level 3 or above that no rule matches is redacted (issue 4; GB/T 35273-2020 §6.2: show the
minimum). Levels 1–2 with no rule are shown as they are.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from masking.catalog import Level, SemanticType
from masking.errors import OperatorError, RulesError, unknown_name
from masking.operators import ParamValue, get_operator

__all__ = [
    "ANY",
    "MaskingRule",
    "RuleSet",
    "load_rules",
    "packaged_rules_document",
    "parse_rules",
    "rule_document",
    "rules_document",
    "rules_from_document",
]

ANY = "*"


@dataclass(frozen=True, slots=True)
class MaskingRule:
    id: str
    profile: str
    operator: str
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    levels: frozenset[Level] = frozenset(Level)
    semantic_types: frozenset[SemanticType] | None = None  # None: any
    roles: frozenset[str] | None = None  # None: any
    scenarios: frozenset[str] | None = None  # None: any
    description: str = ""

    def matches(
        self, *, profile: str, level: Level, semantic_type: SemanticType, role: str, scenario: str
    ) -> bool:
        return (
            self.profile == profile
            and level in self.levels
            and (self.semantic_types is None or semantic_type in self.semantic_types)
            and (self.roles is None or role in self.roles)
            and (self.scenarios is None or scenario in self.scenarios)
        )


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[MaskingRule, ...]
    profiles: frozenset[str]
    source: str = "<memory>"
    profile_descriptions: Mapping[str, str] = field(default_factory=dict)

    def match(
        self, *, profile: str, level: Level, semantic_type: SemanticType, role: str, scenario: str
    ) -> MaskingRule | None:
        for rule in self.rules:
            if rule.matches(
                profile=profile, level=level, semantic_type=semantic_type, role=role, scenario=scenario
            ):
                return rule
        return None


def load_rules(path: Path | None = None) -> RuleSet:
    """Load and validate a rules TOML file (default: the packaged `masking/data/rules.toml`)."""
    if path is None:
        text = resources.files("masking").joinpath("data/rules.toml").read_text(encoding="utf-8")
        source = "masking/data/rules.toml"
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise RulesError(source, "<file>", "无法读取文件", f"cannot read file ({exc.strerror})") from None
    return parse_rules(text, source=source)


_RULE_KEYS = {
    "id",
    "profile",
    "operator",
    "params",
    "levels",
    "semantic_types",
    "roles",
    "scenarios",
    "description",
}


def parse_rules(text: str, *, source: str = "<memory>") -> RuleSet:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(source, "<toml>", "TOML 语法错误", f"TOML syntax error: {exc}") from None
    return rules_from_document(doc, source=source)


def packaged_rules_document() -> dict[str, Any]:
    """The packaged rules as a plain document (the baseline approved rule changes apply to)."""
    text = resources.files("masking").joinpath("data/rules.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def rules_from_document(doc: Mapping[str, Any], *, source: str = "<document>") -> RuleSet:
    """Validate a rules document (the TOML file's shape) into a RuleSet; raises `RulesError`."""
    if doc.get("schema_version") != 1:
        raise RulesError(
            source, "schema_version", "只支持 schema_version = 1", "only schema_version = 1 is supported"
        )
    extra = set(doc) - {"schema_version", "profiles", "rules"}
    if extra:
        raise RulesError(source, "<root>", "含有未知键", f"unknown keys: {', '.join(sorted(extra))}")
    profiles_doc = doc.get("profiles")
    if not isinstance(profiles_doc, dict) or not profiles_doc:
        raise RulesError(
            source, "profiles", "至少需要定义一个脱敏方案", "at least one profile must be declared"
        )
    profiles = frozenset(profiles_doc)
    descriptions = {
        name: str(spec.get("description", "")) if isinstance(spec, dict) else ""
        for name, spec in profiles_doc.items()
    }
    raw_rules = doc.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise RulesError(source, "rules", "至少需要一条规则", "at least one [[rules]] entry is required")
    seen: set[str] = set()
    rules: list[MaskingRule] = []
    for index, raw in enumerate(raw_rules):
        rule = _rule(source, index, raw, profiles)
        if rule.id in seen:
            raise RulesError(source, f"rules[{index}] ({rule.id})", "规则标识重复", "duplicate rule id")
        seen.add(rule.id)
        rules.append(rule)
    return RuleSet(rules=tuple(rules), profiles=profiles, source=source, profile_descriptions=descriptions)


def rule_document(rule: MaskingRule) -> dict[str, Any]:
    """One rule in the document shape `rules_from_document` reads (selectors left out match anything)."""
    doc: dict[str, Any] = {"id": rule.id, "profile": rule.profile, "operator": rule.operator}
    if rule.params:
        doc["params"] = dict(rule.params)
    if rule.levels != frozenset(Level):
        doc["levels"] = [level.document_value for level in sorted(rule.levels)]
    if rule.semantic_types is not None:
        doc["semantic_types"] = sorted(t.value for t in rule.semantic_types)
    if rule.roles is not None:
        doc["roles"] = sorted(rule.roles)
    if rule.scenarios is not None:
        doc["scenarios"] = sorted(rule.scenarios)
    if rule.description:
        doc["description"] = rule.description
    return doc


def rules_document(rules: RuleSet) -> dict[str, Any]:
    """The inverse of `rules_from_document`, in rule order."""
    return {
        "schema_version": 1,
        "profiles": {
            name: {"description": rules.profile_descriptions.get(name, "")} for name in sorted(rules.profiles)
        },
        "rules": [rule_document(rule) for rule in rules.rules],
    }


_SEMANTIC_TYPES = tuple(t.value for t in SemanticType)


def _rule(source: str, index: int, raw: object, profiles: frozenset[str]) -> MaskingRule:
    entry = f"rules[{index}]"
    if not isinstance(raw, dict):
        raise RulesError(source, entry, "应为表", "must be a table")
    rid = raw.get("id")
    if not isinstance(rid, str) or not rid:
        raise RulesError(source, entry, "缺少规则标识 id", "id is missing")
    entry = f"rules[{index}] ({rid})"

    def fail(zh: str, en: str) -> RulesError:
        return RulesError(source, entry, zh, en)

    extra = set(raw) - _RULE_KEYS
    if extra:
        # Named in both languages, with the key meant (param -> params): the Chinese line is read first.
        raise fail(*unknown_name("键", "key", sorted(extra)[0], sorted(_RULE_KEYS)))
    profile = raw.get("profile")
    if profile not in profiles:
        raise fail(*unknown_name("脱敏方案", "profile", profile, sorted(profiles)))
    op_name = raw.get("operator")
    if not isinstance(op_name, str):
        raise fail("缺少算子 operator", "operator is missing")
    params = raw.get("params", {})
    if not isinstance(params, dict):
        raise fail("params 应为表", "params must be a table")
    try:
        resolved = get_operator(op_name).resolve_params(params)
    except OperatorError as exc:
        raise fail(exc.message_zh, exc.message_en) from None
    try:
        levels = (
            frozenset(Level.parse(v) for v in _list(raw, "levels", fail))
            if "levels" in raw
            else frozenset(Level)
        )
    except ValueError as exc:
        raise fail("分级无效：一般数据为 1–4 级，更高的写 important 或 core", str(exc)) from None
    semantic_types: frozenset[SemanticType] | None = None
    if "semantic_types" in raw:
        values = _list(raw, "semantic_types", fail)
        if values != [ANY]:
            unknown = next((v for v in values if v not in _SEMANTIC_TYPES), None)
            if unknown is not None:
                raise fail(*unknown_name("语义类型", "semantic type", unknown, _SEMANTIC_TYPES))
            semantic_types = frozenset(SemanticType(v) for v in values)
    return MaskingRule(
        id=rid,
        profile=str(profile),
        operator=op_name,
        params=resolved,
        levels=levels,
        semantic_types=semantic_types,
        roles=_selector(raw, "roles", fail),
        scenarios=_selector(raw, "scenarios", fail),
        description=str(raw.get("description", "")),
    )


def _list(raw: Mapping[str, Any], key: str, fail: Any) -> list[Any]:
    value = raw[key]
    if not isinstance(value, list) or not value:
        raise fail(f"{key} 应为非空列表", f"{key} must be a non-empty list")
    return value


def _selector(raw: Mapping[str, Any], key: str, fail: Any) -> frozenset[str] | None:
    if key not in raw:
        return None
    values: Sequence[object] = _list(raw, key, fail)
    if not all(isinstance(v, str) and v for v in values):
        raise fail(f"{key} 应为字符串列表", f"{key} must be a list of strings")
    if ANY in values:
        if len(values) > 1:
            raise fail(f"{key} 中 * 不能与其他值并列", f"{key}: '*' must stand alone")
        return None
    return frozenset(str(v) for v in values)
