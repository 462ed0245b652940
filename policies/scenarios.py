"""The scenario catalog: each purpose of processing, the exact fields it needs, who may use it, how much
and when (PIPL art. 6; GB/T 35273-2020 §5.2 minimum necessary). Loaded from ``scenarios.toml``
(reviewed data), validated with file and line, reloadable.
"""

from __future__ import annotations

import hashlib
import re
import threading
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any

from policies.errors import PolicyFileError, is_plain_name, shown, shown_all
from policies.model import ROLES

__all__ = [
    "CHINA_STANDARD_TIME",
    "DEFAULT_SCENARIOS_PATH",
    "DatasetInfo",
    "Scenario",
    "ScenarioCatalog",
    "load_scenarios",
]

#: Builds the error for a problem under ``[header]`` (at ``key``'s line): Chinese message, then English.
_Fail = Callable[[str, str | None, str, str], PolicyFileError]

DEFAULT_SCENARIOS_PATH = Path(__file__).resolve().parent / "scenarios.toml"
# China has a single time zone and no daylight saving time, so a fixed offset is exact and needs no
# tz database on the host.
CHINA_STANDARD_TIME = timezone(timedelta(hours=8), "CST")

_CODE = re.compile(r"^[A-Z][A-Z0-9_]{1,63}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_QUOTED = re.compile(r"'([^']*)'")


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    name: str
    name_zh: str
    name_en: str
    owner_department: str
    provider_system: str
    fields: tuple[str, ...]
    second_approval_fields: frozenset[str]


@dataclass(frozen=True, slots=True)
class Scenario:
    code: str
    name_zh: str
    name_en: str
    purpose: str
    legal_basis: str
    datasets: Mapping[str, tuple[str, ...]]
    masking_profile: str
    roles_allowed: tuple[str, ...]
    max_records_per_request: int
    daily_quota_per_user: int
    hours_allowed: tuple[int, int]
    default_validity_days: int
    #: The longest window a grant for this scenario may have (approval or renewal). Least privilege
    #: (PIPL art. 6; GB/T 35273-2020 §7.1 a, least authorisation for access to personal information):
    #: absent from the file, it is ``default_validity_days`` itself, so only a reviewed catalog line lets
    #: a steward go further.
    max_validity_days: int

    def within_hours(self, now: datetime) -> bool:
        """``hours_allowed = (start, end)`` is the local (UTC+8) window ``start:00 <= t < end:00``."""
        hour = now.astimezone(CHINA_STANDARD_TIME).hour
        start, end = self.hours_allowed
        return start <= hour < end


@dataclass(frozen=True, slots=True)
class _CatalogState:
    scenarios: Mapping[str, Scenario]
    datasets: Mapping[str, DatasetInfo]
    digest: str


def _line_of(text: str, header: str, key: str | None = None) -> int:
    """Best line for an error: the ``key =`` line within ``[header]``, else the header, else 0."""
    lines = text.splitlines()
    start = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped == f"[{header}]":
            start = i
            break
    if start is None:
        return 0
    if key is None:
        return start + 1
    for j in range(start + 1, len(lines)):
        stripped = lines[j].strip()
        if stripped.startswith("[") and not stripped.startswith(f"[{header}."):
            break
        if re.match(rf"^{re.escape(key)}\s*=", stripped):
            return j + 1
    # The key may live in a sub-table, e.g. [scenarios.X.datasets].
    sub = _line_of(text, f"{header}.{key}") if "." not in key else 0
    return sub or start + 1


def _parse(path: Path) -> _CatalogState:
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyFileError(
            path,
            0,
            f"无法读取场景目录文件：{type(exc).__name__}",
            f"cannot read scenario catalog: {type(exc).__name__}",
        ) from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        line = int(found.group(1)) if found else 0
        # tomllib quotes what it found ("Cannot declare ('datasets', '…') twice"): shown only when a name.
        said = str(exc)
        said_zh = _QUOTED.sub(lambda m: m[0] if len(m[1]) <= 1 else shown(m[1], zh=True), said)
        said = _QUOTED.sub(lambda m: m[0] if len(m[1]) <= 1 else shown(m[1]), said)
        raise PolicyFileError(path, line, f"TOML 语法错误：{said_zh}", f"TOML syntax: {said}") from exc
    except RecursionError:
        # Arrays or tables nested past the parser's recursion limit (``a = [[[...]]]``): no catalog
        # looks like that, and a policy replay reads proposed files from a request body.
        raise PolicyFileError(
            path, 0, "TOML 嵌套层数过多，无法读取", "TOML nested too deeply to be read"
        ) from None

    def fail(header: str, key: str | None, message_zh: str, message: str) -> PolicyFileError:
        return PolicyFileError(path, _line_of(text, header, key), message_zh, message)

    unknown_top = set(doc) - {"datasets", "scenarios"}
    if unknown_top:
        raise PolicyFileError(
            path,
            0,
            f"未知的顶层表 {shown_all(sorted(unknown_top), zh=True)}",
            f"unknown top-level table(s) {shown_all(sorted(unknown_top))}",
        )
    datasets: dict[str, DatasetInfo] = {}
    for name, table in _table(path, doc, "datasets").items():
        header = f"datasets.{name}"
        if _NAME.match(name) is None or not isinstance(table, dict):
            raise fail(
                header, None, f"数据集名称 {shown(name, zh=True)} 不合法", f"bad dataset name {shown(name)}"
            )
        _expect_keys(
            fail,
            header,
            table,
            {"name_zh", "name_en", "owner_department", "provider_system", "fields", "second_approval_fields"},
        )
        fields = _str_tuple(fail, header, table, "fields")
        if len(set(fields)) != len(fields):
            raise fail(header, "fields", "有字段重复列出", "a field is listed twice")
        sensitive = _str_tuple(fail, header, table, "second_approval_fields")
        extra = set(sensitive) - set(fields)
        if extra:
            raise fail(
                header,
                "second_approval_fields",
                f"不是 {_header(header, zh=True)} 的字段：{shown_all(sorted(extra), zh=True)}",
                f"not fields of {_header(header)}: {shown_all(sorted(extra))}",
            )
        datasets[name] = DatasetInfo(
            name=name,
            name_zh=_str(fail, header, table, "name_zh"),
            name_en=_str(fail, header, table, "name_en"),
            owner_department=_str(fail, header, table, "owner_department"),
            provider_system=_str(fail, header, table, "provider_system"),
            fields=fields,
            second_approval_fields=frozenset(sensitive),
        )
    scenarios: dict[str, Scenario] = {}
    for code, table in _table(path, doc, "scenarios").items():
        header = f"scenarios.{code}"
        if _CODE.match(code) is None or not isinstance(table, dict):
            raise fail(
                header,
                None,
                f"场景代码 {shown(code, zh=True)} 不合法（应为大写字母、数字和下划线，如 DIBAO_REVIEW）",
                f"bad scenario code {shown(code)} (UPPER_SNAKE_CASE)",
            )
        _expect_keys(
            fail,
            header,
            table,
            {
                "name_zh",
                "name_en",
                "purpose",
                "legal_basis",
                "datasets",
                "masking_profile",
                "roles_allowed",
                "max_records_per_request",
                "daily_quota_per_user",
                "hours_allowed",
                "default_validity_days",
            },
            optional={"max_validity_days"},
        )
        ds_table = table["datasets"]
        if not isinstance(ds_table, dict) or not ds_table:
            raise fail(
                header, "datasets", "datasets 至少要列出一个数据集", "datasets must name at least one dataset"
            )
        ds: dict[str, tuple[str, ...]] = {}
        for ds_name in ds_table:
            info = datasets.get(ds_name)
            if info is None:
                raise fail(
                    f"{header}.datasets",
                    ds_name,
                    f"未知的数据集 {shown(ds_name, zh=True)}",
                    f"unknown dataset {shown(ds_name)}",
                )
            wanted = _str_tuple(fail, f"{header}.datasets", ds_table, ds_name)
            if not wanted or len(set(wanted)) != len(wanted):
                raise fail(
                    f"{header}.datasets",
                    ds_name,
                    "字段列表不能为空，也不能重复",
                    "fields must be non-empty and distinct",
                )
            unknown = [f for f in wanted if f not in info.fields]
            if unknown:
                raise fail(
                    f"{header}.datasets",
                    ds_name,
                    f"{ds_name} 没有字段 {shown_all(unknown, zh=True)}",
                    f"{ds_name} has no field(s) {shown_all(unknown)}",
                )
            ds[ds_name] = wanted
        roles = _str_tuple(fail, header, table, "roles_allowed")
        bad_roles = [r for r in roles if r not in ROLES]
        if bad_roles or not roles:
            raise fail(
                header,
                "roles_allowed",
                f"未知的岗位 {shown_all(bad_roles, zh=True)}" if bad_roles else "没有列出任何岗位",
                f"unknown role(s) {shown_all(bad_roles)}" if bad_roles else "no roles",
            )
        hours = table["hours_allowed"]
        if (
            not isinstance(hours, list)
            or len(hours) != 2
            or not all(isinstance(h, int) and not isinstance(h, bool) for h in hours)
            or not 0 <= hours[0] < hours[1] <= 24
        ):
            raise fail(
                header,
                "hours_allowed",
                "hours_allowed 应为 [开始, 结束]，且 0 <= 开始 < 结束 <= 24",
                "hours_allowed must be [start, end] with 0 <= start < end <= 24",
            )
        default_days = _positive(fail, header, table, "default_validity_days")
        max_days = (
            _positive(fail, header, table, "max_validity_days")
            if "max_validity_days" in table
            else default_days
        )
        if max_days < default_days:
            raise fail(
                header,
                "max_validity_days",
                f"max_validity_days（{max_days}）不能小于 default_validity_days（{default_days}）",
                f"max_validity_days ({max_days}) must not be less than "
                f"default_validity_days ({default_days})",
            )
        scenarios[code] = Scenario(
            code=code,
            name_zh=_str(fail, header, table, "name_zh"),
            name_en=_str(fail, header, table, "name_en"),
            purpose=_str(fail, header, table, "purpose"),
            legal_basis=_str(fail, header, table, "legal_basis"),
            datasets=MappingProxyType(ds),
            masking_profile=_str(fail, header, table, "masking_profile"),
            roles_allowed=roles,
            max_records_per_request=_positive(fail, header, table, "max_records_per_request"),
            daily_quota_per_user=_positive(fail, header, table, "daily_quota_per_user"),
            hours_allowed=(hours[0], hours[1]),
            default_validity_days=default_days,
            max_validity_days=max_days,
        )
    if not scenarios:
        raise PolicyFileError(path, 0, "没有定义任何场景", "no scenarios defined")
    return _CatalogState(
        scenarios=MappingProxyType(scenarios),
        datasets=MappingProxyType(datasets),
        digest=hashlib.sha256(raw).hexdigest(),
    )


def _table(path: Path, doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise PolicyFileError(path, 0, f"{key} 应为表（table）", f"{key} must be a table")
    return value


def _header(header: str, *, zh: bool = False) -> str:
    """A table's header as an error names it (``[scenarios.DIBAO_REVIEW]``) when its name is a plain name:
    a code the pattern takes may still be a mobile with a letter in front (``policies.errors.shown``)."""
    return f"[{header}]" if is_plain_name(header) else shown(header, zh=zh)


def _expect_keys(
    fail: _Fail,
    header: str,
    table: dict[str, Any],
    required: set[str],
    optional: frozenset[str] | set[str] = frozenset(),
) -> None:
    unknown = sorted(set(table) - required - optional)
    if unknown:
        raise fail(
            header,
            unknown[0],
            f"{_header(header, zh=True)} 中有未知的键 {shown(unknown[0], zh=True)}",
            f"unknown key {shown(unknown[0])} in {_header(header)}",
        )
    missing = sorted(required - set(table))
    if missing:
        raise fail(
            header,
            None,
            f"{_header(header, zh=True)} 缺少 {missing}",
            f"{_header(header)} is missing {missing}",
        )


def _str(fail: _Fail, header: str, table: dict[str, Any], key: str) -> str:
    value = table[key]
    if not isinstance(value, str) or not value.strip():
        raise fail(header, key, f"{key} 应为非空字符串", f"{key} must be a non-empty string")
    return value


def _str_tuple(fail: _Fail, header: str, table: dict[str, Any], key: str) -> tuple[str, ...]:
    value = table[key]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise fail(header, key, f"{key} 应为字符串列表", f"{key} must be a list of strings")
    return tuple(value)


def _positive(fail: _Fail, header: str, table: dict[str, Any], key: str) -> int:
    value = table[key]
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise fail(header, key, f"{key} 应为正整数", f"{key} must be a positive integer")
    return value


class ScenarioCatalog:
    """All scenarios and datasets, swapped as one immutable state on reload."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else DEFAULT_SCENARIOS_PATH
        self._state = _parse(self.path)
        self._lock = threading.Lock()
        self.version = 1

    @property
    def digest(self) -> str:
        return self._state.digest

    def get(self, code: str) -> Scenario | None:
        return self._state.scenarios.get(code)

    def __getitem__(self, code: str) -> Scenario:
        return self._state.scenarios[code]

    def __contains__(self, code: object) -> bool:
        return code in self._state.scenarios

    def __iter__(self) -> Iterator[Scenario]:
        return iter(self._state.scenarios.values())

    def __len__(self) -> int:
        return len(self._state.scenarios)

    def dataset(self, name: str) -> DatasetInfo | None:
        return self._state.datasets.get(name)

    @property
    def datasets(self) -> Mapping[str, DatasetInfo]:
        return self._state.datasets

    def reload(self, actor: str = "system") -> dict[str, Any]:
        """Re-read the file; swap on success and return a change event; keep the old state on error."""
        new = _parse(self.path)
        with self._lock:
            old, self._state = self._state, new
            self.version += 1
        return {
            "kind": "policy.scenarios_reloaded",
            "actor": actor,
            "grant_id": None,
            "before": {"digest": old.digest, "scenarios": sorted(old.scenarios)},
            "after": {"digest": new.digest, "scenarios": sorted(new.scenarios), "version": self.version},
        }


_HOURS_LINE = re.compile(r"(?m)^hours_allowed\s*=\s*\[[^\]]*\]")


def without_opening_hours(catalog_text: str) -> str:
    """The catalog (TOML text) with every scenario open all day (``hours_allowed = [0, 24]``): for a
    demonstration or a test run outside the shipped 7:00-21:00 window, never for a deployment."""
    return _HOURS_LINE.sub("hours_allowed = [0, 24]", catalog_text)


def load_scenarios(path: str | Path | None = None) -> ScenarioCatalog:
    """Load and validate the scenario catalog (default: the ``scenarios.toml`` shipped here)."""
    return ScenarioCatalog(path)
