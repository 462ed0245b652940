"""Admission configuration: the reviewing offices and the re-certification period, read from TOML."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from admission.errors import ConfigurationError
from admission.model import ReviewOffice
from grassroots_common.departments import DEPARTMENT_NAMES_EN, DEPARTMENT_NAMES_ZH


@dataclass(frozen=True, slots=True)
class AdmissionConfig:
    offices: tuple[ReviewOffice, ...]
    approval_period: timedelta = timedelta(days=365)
    reminder_days_before: tuple[int, ...] = (60, 30, 7)
    filing_number_prefix: str = "CJZR"

    def __post_init__(self) -> None:
        codes = [o.code for o in self.offices]
        if len(set(codes)) != len(codes):
            raise _bad("offices", "联审单位代码重复", "office codes must be unique")
        if not any(o.required for o in self.offices):
            raise _bad("offices", "至少需要一个必审单位", "at least one office must be required")
        if self.approval_period <= timedelta(0):
            raise _bad("approval_period_days", "须为正数", "must be positive")
        if any(d <= 0 for d in self.reminder_days_before):
            raise _bad("reminder_days_before", "须为正数", "must be positive")
        object.__setattr__(
            self, "reminder_days_before", tuple(sorted(set(self.reminder_days_before), reverse=True))
        )

    def office(self, code: str) -> ReviewOffice | None:
        return next((o for o in self.offices if o.code == code), None)

    def department_names_zh(self) -> dict[str, str]:
        """Department -> the Chinese name it goes by in the review: that of its own office
        (``civil_affairs`` is 区民政局; the first office, should a department have several), else the
        district's table (``health``, which has no reviewing office, is 区卫健委)."""
        names: dict[str, str] = {}
        for o in self.offices:
            names.setdefault(o.department, o.name_zh)
        return {**DEPARTMENT_NAMES_ZH, **names}

    def department_name_zh(self, department: str) -> str | None:
        """:meth:`department_names_zh` for one department; None for a department no table names."""
        return self.department_names_zh().get(department)

    def department_name_en(self, department: str) -> str | None:
        """The English name :meth:`department_name_zh` has in Chinese (its office's ``name_en``, else the
        district's table); None for a department no table names."""
        office = next((o for o in self.offices if o.department == department), None)
        return office.name_en if office is not None else DEPARTMENT_NAMES_EN.get(department)

    def department_names(self, department: str) -> tuple[str, str]:
        """(Chinese, English) names of ``department`` for a message; one no table names is its code,
        marked as such in both."""
        return (
            self.department_name_zh(department) or f"部门代码 {department}",
            self.department_name_en(department) or f"department code {department}",
        )

    def required_offices(self, applying_department: str) -> tuple[ReviewOffice, ...]:
        """Required offices minus those recused because the applicant is their own department."""
        return tuple(o for o in self.offices if o.required and o.department != applying_department)

    @classmethod
    def from_offices(cls, offices: Sequence[ReviewOffice], **kwargs: Any) -> AdmissionConfig:
        return cls(offices=tuple(offices), **kwargs)


def _bad(key: str, zh: str, en: str) -> ConfigurationError:
    return ConfigurationError(f"准入配置 {key}：{zh}", f"admission configuration {key}: {en}")


def parse_admission_config(data: Mapping[str, Any]) -> AdmissionConfig:
    raw_offices = data.get("offices")
    if not isinstance(raw_offices, list) or not raw_offices:
        raise _bad("offices", "须列出联审单位", "must list the reviewing offices")
    offices: list[ReviewOffice] = []
    for raw in raw_offices:
        if not isinstance(raw, dict):
            raise _bad("offices", "格式不正确", "each office must be a table")
        try:
            values = {k: raw[k] for k in ("code", "name_zh", "name_en", "department")}
        except KeyError as missing:
            raise _bad("offices", f"缺少 {missing}", f"missing {missing}") from None
        if not all(isinstance(v, str) and v for v in values.values()):
            raise _bad("offices", "字段须为非空文本", "fields must be non-empty text")
        required = raw.get("required", True)
        if not isinstance(required, bool):
            raise _bad("offices.required", "须为是/否", "must be true or false")
        offices.append(ReviewOffice(**values, required=required))
    period = data.get("approval_period_days", 365)
    reminders = data.get("reminder_days_before", [60, 30, 7])
    prefix = data.get("filing_number_prefix", "CJZR")
    if not isinstance(period, int) or isinstance(period, bool):
        raise _bad("approval_period_days", "须为整数天数", "must be a whole number of days")
    if not isinstance(reminders, list) or not all(isinstance(d, int) for d in reminders):
        raise _bad("reminder_days_before", "须为整数列表", "must be a list of whole days")
    if not isinstance(prefix, str) or not prefix.isalnum():
        raise _bad("filing_number_prefix", "须为字母数字", "must be alphanumeric")
    return AdmissionConfig(
        offices=tuple(offices),
        approval_period=timedelta(days=period),
        reminder_days_before=tuple(reminders),
        filing_number_prefix=prefix,
    )


def load_admission_config(path: str | Path | None = None) -> AdmissionConfig:
    """Read the configuration from ``path``, or the packaged default (the district plan's six offices)."""
    if path is None:
        text = resources.files("admission").joinpath("offices.toml").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _bad("toml", "无法解析", f"cannot be parsed ({exc})") from None
    return parse_admission_config(data)
