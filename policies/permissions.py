"""Function-level permissions (role -> resource -> action) on casbin, loaded from reviewed files.

Both files are validated line by line before casbin sees them, so a typo fails loudly with the file
and line (``PolicyFileError``) instead of silently denying or allowing. Casbin stays the evaluator;
its answers are memoised per (role, resource, action) because the rule set is small and fixed
between reloads, and an enforce call costs tens of microseconds.

Reload swaps one immutable state object, so a request in flight sees either the old or the new
rules, never a mix; a failed reload keeps the old rules.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import casbin

from policies.errors import PolicyFileError, is_plain_name, shown
from policies.model import ROLES

__all__ = [
    "ACTIONS",
    "DEFAULT_MODEL_PATH",
    "DEFAULT_POLICY_PATH",
    "RESOURCE_KINDS",
    "PermissionModel",
    "load_permissions",
]

_HERE = Path(__file__).resolve().parent
DEFAULT_MODEL_PATH = _HERE / "model.conf"
DEFAULT_POLICY_PATH = _HERE / "permissions.csv"

RESOURCE_KINDS = frozenset(
    {"dataset", "grants", "break_glass", "audit", "policies", "admission", "masking", "unmask", "sessions"}
)
ACTIONS = frozenset(
    {
        "read",
        "request",
        "approve",
        "reject",
        "revoke",
        "renew",
        "invoke",
        "close_review",
        "verify",
        "prune",
        "reload",
        "decide",
        "explain",
        "replay",
        "register",
        "review",
        "expire",
        "propose",
        "dry_run",
    }
)

_SECTIONS = {
    "request_definition": "r",
    "policy_definition": "p",
    "role_definition": "g",
    "policy_effect": "e",
    "matchers": "m",
}
_REQUIRED_SECTIONS = ("request_definition", "policy_definition", "policy_effect", "matchers")
_EFFECTS = frozenset(
    {
        "some(where (p.eft == allow))",
        "!some(where (p.eft == deny))",
        "some(where (p.eft == allow)) && !some(where (p.eft == deny))",
        "priority(p.eft) || deny",
    }
)
_MATCHER_FUNCTIONS = frozenset(
    {"keyMatch", "keyMatch2", "keyMatch3", "keyMatch4", "regexMatch", "globMatch", "ipMatch"}
)
_MATCHER_WORDS = frozenset({"true", "false", "in", "not", "and", "or"})
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEY = re.compile(r"^([rpgem])([0-9]*)$")
_TOKEN = re.compile(r"\"[^\"]*\"|'[^']*'|([A-Za-z_][A-Za-z0-9_]*)(\.[A-Za-z_][A-Za-z0-9_]*)?(\s*\()?")
_RESOURCE = re.compile(r"^(?P<kind>[a-z_]+)(?::(?P<name>[a-z][a-z0-9_\-]*))?$")


@dataclass(frozen=True, slots=True)
class _ModelSpec:
    text: str
    definitions: dict[str, tuple[int, list[str]]]  # key -> (line, tokens) for r/p/g
    matcher_line: int


@dataclass(frozen=True, slots=True)
class PermissionRule:
    ptype: str
    values: tuple[str, ...]
    line: int

    def as_text(self) -> str:
        return ", ".join((self.ptype, *self.values))


@dataclass(slots=True)
class _State:
    enforcer: Any
    rules: tuple[PermissionRule, ...]
    digest: str
    cache: dict[tuple[str, str, str], bool] = field(default_factory=dict)


def _parse_model(path: Path) -> _ModelSpec:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyFileError(
            path,
            0,
            f"无法读取 casbin 模型文件：{type(exc).__name__}",
            f"cannot read casbin model: {type(exc).__name__}",
        ) from exc
    section: str | None = None
    seen_sections: dict[str, int] = {}
    definitions: dict[str, tuple[int, list[str]]] = {}
    values: dict[str, tuple[int, str]] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise PolicyFileError(
                    path,
                    lineno,
                    f"节标题 {shown(line, zh=True)} 缺少右方括号",
                    f"unterminated section header {shown(line)}",
                )
            name = line[1:-1].strip()
            if name not in _SECTIONS:
                raise PolicyFileError(
                    path,
                    lineno,
                    f"未知的节 [{name}]；应为 {sorted(_SECTIONS)} 之一",
                    f"unknown section [{name}]; expected one of {sorted(_SECTIONS)}",
                )
            if name in seen_sections:
                raise PolicyFileError(
                    path, lineno, f"节 [{name}] 出现了两次", f"section [{name}] appears twice"
                )
            seen_sections[name] = lineno
            section = name
            continue
        if section is None:
            raise PolicyFileError(path, lineno, "定义不在任何 [节] 之内", "definition outside any [section]")
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        match = _KEY.match(key)
        if not sep or match is None:
            raise PolicyFileError(
                path,
                lineno,
                f"应为「键 = 值」，实际为 {shown(line, zh=True)}",
                f"expected 'key = value', got {shown(line)}",
            )
        if match.group(1) != _SECTIONS[section]:
            raise PolicyFileError(
                path,
                lineno,
                f"键 {shown(key, zh=True)} 不属于 [{section}]（应以 {_SECTIONS[section]} 开头）",
                f"key {shown(key)} does not belong in [{section}] (expected {_SECTIONS[section]}…)",
            )
        if not value:
            raise PolicyFileError(path, lineno, f"{key} 的值为空", f"{key} has an empty value")
        if key in values:
            raise PolicyFileError(path, lineno, f"{key} 定义了两次", f"{key} is defined twice")
        values[key] = (lineno, value)
        if section in ("request_definition", "policy_definition", "role_definition"):
            tokens = [t.strip() for t in value.split(",")]
            for tok in tokens:
                if section == "role_definition":
                    if tok != "_":
                        raise PolicyFileError(
                            path,
                            lineno,
                            f"角色定义只能写 '_'，实际为 {shown(tok, zh=True)}",
                            f"role definition takes '_' only, got {shown(tok)}",
                        )
                elif _IDENT.match(tok) is None:
                    raise PolicyFileError(
                        path,
                        lineno,
                        f"属性名 {shown(tok, zh=True)} 不合法",
                        f"bad attribute name {shown(tok)}",
                    )
            if len(set(tokens)) != len(tokens) and section != "role_definition":
                raise PolicyFileError(path, lineno, f"{key} 中有重复的属性", f"{key} repeats an attribute")
            definitions[key] = (lineno, tokens)
        elif section == "policy_effect" and value not in _EFFECTS:
            raise PolicyFileError(
                path,
                lineno,
                f"不支持的策略效果 {shown(value, zh=True)}",
                f"unsupported policy effect {shown(value)}",
            )
    for name in _REQUIRED_SECTIONS:
        if name not in seen_sections:
            raise PolicyFileError(path, 0, f"缺少节 [{name}]", f"missing section [{name}]")
    for key in ("r", "p", "e", "m"):
        if key not in values:
            raise PolicyFileError(
                path, seen_sections[_section_of(key)], f"缺少定义 {key} = …", f"missing definition {key} = …"
            )
    matcher_line, matcher = values["m"]
    _check_matcher(path, matcher_line, matcher, definitions)
    return _ModelSpec(text=text, definitions=definitions, matcher_line=matcher_line)


def _section_of(key: str) -> str:
    return next(name for name, letter in _SECTIONS.items() if letter == key[0])


def _bare(name: str, suffix: str = "", *, zh: bool = False) -> str:
    """A matcher's word as written (``r.act``, ``g()``) when it is a plain name; else not shown."""
    if is_plain_name(name):
        return name + suffix
    return shown(name, zh=zh)


def _check_matcher(
    path: Path, lineno: int, matcher: str, definitions: dict[str, tuple[int, list[str]]]
) -> None:
    roles = {k for k in definitions if k.startswith("g")}
    for m in _TOKEN.finditer(matcher):
        head, attr, call = m.group(1), m.group(2), m.group(3)
        if head is None:
            continue
        if attr is not None:
            owner = definitions.get(head)
            if head[0] not in "rp" or owner is None:
                raise PolicyFileError(
                    path,
                    lineno,
                    f"匹配器引用了未定义的 {_bare(head + attr, zh=True)}",
                    f"matcher refers to undefined {_bare(head + attr)}",
                )
            if attr[1:] not in owner[1] and not (head[0] == "p" and attr == ".eft"):
                raise PolicyFileError(
                    path,
                    lineno,
                    f"匹配器引用了未定义的属性 {_bare(head + attr, zh=True)}",
                    f"matcher refers to undefined attribute {_bare(head + attr)}",
                )
        elif call is not None:
            if head not in roles and head not in _MATCHER_FUNCTIONS:
                raise PolicyFileError(
                    path,
                    lineno,
                    f"匹配器调用了未知的函数 {_bare(head, '()', zh=True)}",
                    f"matcher calls unknown function {_bare(head, '()')}",
                )
        elif head not in _MATCHER_WORDS:
            raise PolicyFileError(
                path,
                lineno,
                f"匹配器中有未知的词 {shown(head, zh=True)}",
                f"matcher has unknown word {shown(head)}",
            )
    if matcher.count("(") != matcher.count(")"):
        raise PolicyFileError(path, lineno, "匹配器的括号不配对", "matcher has unbalanced parentheses")


def _parse_policy(path: Path, spec: _ModelSpec) -> tuple[tuple[PermissionRule, ...], str]:
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyFileError(
            path,
            0,
            f"无法读取权限规则文件：{type(exc).__name__}",
            f"cannot read permissions: {type(exc).__name__}",
        ) from exc
    rules: list[PermissionRule] = []
    seen: dict[tuple[str, ...], int] = {}
    grouping: dict[str, set[str]] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        cells = [c.strip() for c in line.split(",")]
        ptype, values = cells[0], tuple(cells[1:])
        definition = spec.definitions.get(ptype)
        if definition is None or ptype[0] not in "pg":
            raise PolicyFileError(
                path,
                lineno,
                f"未知的规则类型 {shown(ptype, zh=True)}（应为 p 或 g）",
                f"unknown rule type {shown(ptype)} (expected p or g)",
            )
        if len(values) != len(definition[1]):
            raise PolicyFileError(
                path,
                lineno,
                f"{ptype} 规则需要 {len(definition[1])} 个值，实际有 {len(values)} 个",
                f"{ptype} rule needs {len(definition[1])} values, got {len(values)}",
            )
        if any(not v for v in values):
            raise PolicyFileError(path, lineno, "有一个值为空", "empty value")
        if ptype[0] == "p":
            role, resource, action = values[0], values[1], values[2]
            _check_role(path, lineno, role)
            rmatch = _RESOURCE.match(resource)
            if rmatch is None or rmatch.group("kind") not in RESOURCE_KINDS:
                raise PolicyFileError(
                    path,
                    lineno,
                    f"未知的资源 {shown(resource, zh=True)}；可用的资源类型有 {sorted(RESOURCE_KINDS)}",
                    f"unknown resource {shown(resource)}; kinds are {sorted(RESOURCE_KINDS)}",
                )
            if (rmatch.group("kind") == "dataset") != (rmatch.group("name") is not None):
                raise PolicyFileError(
                    path,
                    lineno,
                    f"资源 {shown(resource, zh=True)}：只有 dataset:<名称> 可以带名称",
                    f"resource {shown(resource)}: only dataset:<name> takes a name",
                )
            if action not in ACTIONS:
                raise PolicyFileError(
                    path,
                    lineno,
                    f"未知的操作 {shown(action, zh=True)}；可用的操作有 {sorted(ACTIONS)}",
                    f"unknown action {shown(action)}; actions are {sorted(ACTIONS)}",
                )
        else:
            member, parent = values[0], values[1]
            _check_role(path, lineno, member)
            _check_role(path, lineno, parent)
            grouping.setdefault(member, set()).add(parent)
            if _reaches(grouping, parent, member):
                raise PolicyFileError(
                    path,
                    lineno,
                    f"岗位继承经过 {shown(member, zh=True)} 形成了循环",
                    f"role inheritance cycle through {shown(member)}",
                )
        key = (ptype, *values)
        if key in seen:
            raise PolicyFileError(path, lineno, f"与第 {seen[key]} 行重复", f"duplicate of line {seen[key]}")
        seen[key] = lineno
        rules.append(PermissionRule(ptype=ptype, values=values, line=lineno))
    if not any(r.ptype[0] == "p" for r in rules):
        # An empty rule set would deny everything silently; treat it as a broken file.
        raise PolicyFileError(path, 0, "没有任何权限规则", "no permission rules")
    digest = hashlib.sha256(spec.text.encode("utf-8") + b"\x00" + data).hexdigest()
    return tuple(rules), digest


def _check_role(path: Path, lineno: int, role: str) -> None:
    if role not in ROLES:
        raise PolicyFileError(
            path, lineno, f"未知的岗位 {shown(role, zh=True)}", f"unknown role {shown(role)}"
        )


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    stack, seen = [start], set()
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            stack.extend(graph.get(node, ()))
    return False


def _build_state(model_path: Path, policy_path: Path) -> _State:
    spec = _parse_model(model_path)
    rules, digest = _parse_policy(policy_path, spec)
    try:
        enforcer = casbin.Enforcer(casbin.Enforcer.new_model(text=spec.text))
        for rule in rules:
            if rule.ptype[0] == "p":
                enforcer.add_named_policy(rule.ptype, list(rule.values))
            else:
                enforcer.add_named_grouping_policy(rule.ptype, list(rule.values))
        # Evaluate the matcher once so an expression casbin cannot run fails now, not per request.
        probe = [f"probe_{t}" for t in spec.definitions["r"][1]]
        enforcer.enforce(*probe)
    except Exception as exc:
        raise PolicyFileError(
            model_path,
            spec.matcher_line,
            f"casbin 无法加载该模型：{type(exc).__name__}",
            f"casbin rejected the model: {type(exc).__name__}",
        ) from exc
    return _State(enforcer=enforcer, rules=rules, digest=digest)


class PermissionModel:
    """Casbin-backed answer to "may any of these roles do this action on this resource?"."""

    def __init__(self, model_path: str | Path | None = None, policy_path: str | Path | None = None) -> None:
        self.model_path = Path(model_path) if model_path is not None else DEFAULT_MODEL_PATH
        self.policy_path = Path(policy_path) if policy_path is not None else DEFAULT_POLICY_PATH
        self._lock = threading.Lock()
        self._state = _build_state(self.model_path, self.policy_path)
        self.version = 1

    @property
    def digest(self) -> str:
        """SHA-256 over both files: names the policy version in audit events and replays."""
        return self._state.digest

    @property
    def rules(self) -> tuple[PermissionRule, ...]:
        return self._state.rules

    def is_allowed(self, roles: Iterable[str], resource: str, action: str) -> bool:
        state = self._state
        for role in roles:
            if role not in ROLES:
                # Unknown role strings from a token never reach casbin or the cache (fail closed).
                continue
            key = (role, resource, action)
            allowed = state.cache.get(key)
            if allowed is None:
                with self._lock:
                    allowed = bool(state.enforcer.enforce(role, resource, action))
                if len(state.cache) < 100_000:
                    state.cache[key] = allowed
            if allowed:
                return True
        return False

    def reload(self, actor: str = "system") -> dict[str, Any]:
        """Re-read both files; on success swap atomically and return a change event for audit.

        Raises PolicyFileError and keeps the current rules when the new files are invalid.
        """
        new_state = _build_state(self.model_path, self.policy_path)
        with self._lock:
            old_state, self._state = self._state, new_state
            self.version += 1
        before = {r.as_text() for r in old_state.rules}
        after = {r.as_text() for r in new_state.rules}
        return {
            "kind": "policy.permissions_reloaded",
            "actor": actor,
            "grant_id": None,
            "before": {"digest": old_state.digest, "rules": len(before)},
            "after": {"digest": new_state.digest, "rules": len(after), "version": self.version},
            "added": sorted(after - before),
            "removed": sorted(before - after),
        }

    def reload_if_changed(self, actor: str = "system") -> dict[str, Any] | None:
        """Reload only when the files' digest differs; None when nothing changed."""
        spec = _parse_model(self.model_path)
        _, digest = _parse_policy(self.policy_path, spec)
        if digest == self._state.digest:
            return None
        return self.reload(actor)


def load_permissions(
    model_path: str | Path | None = None, policy_path: str | Path | None = None
) -> PermissionModel:
    """Load and validate the casbin model and permission rules (defaults: the files shipped here)."""
    return PermissionModel(model_path, policy_path)
