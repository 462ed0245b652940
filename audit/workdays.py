"""Which Beijing days are working days: the State Council's holiday schedule (国务院办公厅关于部分节假日安排的
通知), for the deadlines of complaints and incidents.

Two sources, the second overriding the first year by year:

- the ``chinesecalendar`` package (PyPI; MIT; the schedule since 2004, a release each November when the
  next year's notice is out), which knows the statutory holidays (法定节假日, with the days given off in
  lieu) and the adjusted working days (调休上班: a Saturday or Sunday worked in exchange);
- an operator's file (``GRASSROOTS_HOLIDAYS_FILE``, TOML) for a year the installed package does not know
  yet, or corrects: ``[2027]`` with ``holidays = ["2027-01-01", …]`` and ``workdays = ["2027-02-07", …]``
  (the adjusted working days). A year in the file replaces the package's for that year, whole.

A day of a year neither knows is not guessed as a holiday: see :meth:`WorkCalendar.knows`, and
:func:`audit.complaints.period_end` for what a deadline does then (it is conservative and says so).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import chinese_calendar


class HolidayFileError(ValueError):
    """The operator's holidays file cannot be read as a schedule; ``message_zh`` says where and why."""

    def __init__(self, message_zh: str, message_en: str) -> None:
        super().__init__(message_en)
        self.message_zh = message_zh
        self.message_en = message_en


@dataclass(frozen=True)
class WorkCalendar:
    """Statutory holidays and adjusted working days of the ``years`` known; Monday to Friday otherwise."""

    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()
    years: frozenset[int] = field(default_factory=frozenset)

    def knows(self, day: date) -> bool:
        """Whether ``day``'s year has a schedule here. Outside it, :meth:`is_working_day` is Monday to
        Friday only: a holiday not yet announced (or not yet installed) is not known."""
        return day.year in self.years

    def is_working_day(self, day: date) -> bool:
        """工作日: Monday to Friday unless a statutory holiday (or a day given off in lieu), and a Saturday
        or Sunday the schedule makes a working day (调休上班)."""
        if day in self.workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays

    def last_known_day(self) -> date | None:
        return date(max(self.years), 12, 31) if self.years else None

    def with_years(self, schedule: Mapping[int, tuple[Iterable[date], Iterable[date]]]) -> WorkCalendar:
        """This calendar with each year of ``schedule`` (``year -> (holidays, workdays)``) replaced whole."""
        replaced = set(schedule)
        holidays = {d for d in self.holidays if d.year not in replaced}
        workdays = {d for d in self.workdays if d.year not in replaced}
        for holiday_days, working_days in schedule.values():
            holidays.update(holiday_days)
            workdays.update(working_days)
        return WorkCalendar(frozenset(holidays), frozenset(workdays), self.years | replaced)


def package_calendar() -> WorkCalendar:
    """The schedule the installed ``chinesecalendar`` release knows (its holidays include the days given
    off in lieu; its workdays are the adjusted working days)."""
    holidays: Mapping[date, Any] = chinese_calendar.holidays
    workdays: Mapping[date, Any] = chinese_calendar.workdays
    # The package's own range (it refuses a question about any other year): every year it has data for.
    years = {d.year for d in holidays} | {d.year for d in workdays}
    return WorkCalendar(frozenset(holidays), frozenset(workdays), frozenset(years))


def _days(path: Path, year: int, key: str, values: Any) -> list[date]:
    if not isinstance(values, list):
        raise HolidayFileError(
            f"节假日文件 {path} 的 [{year}] {key} 应为日期列表。",
            f"In the holidays file {path}, [{year}] {key} must be a list of dates.",
        )
    days = []
    for value in values:
        try:
            day = value if isinstance(value, date) else date.fromisoformat(str(value))
        except ValueError:
            day = None
        if day is None or day.year != year:
            raise HolidayFileError(
                f"节假日文件 {path} 的 [{year}] {key} 中有不是 {year} 年日期（YYYY-MM-DD）的值。",
                f"In the holidays file {path}, [{year}] {key} holds a value that is not a date of {year} "
                "(YYYY-MM-DD).",
            )
        days.append(day)
    return days


def read_holidays_file(path: Path) -> dict[int, tuple[list[date], list[date]]]:
    """The operator's schedule: ``{year: (holidays, workdays)}``, or :class:`HolidayFileError` (fail
    closed: a schedule half read would make deadlines silently wrong)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise HolidayFileError(
            f"无法读取节假日文件 {path}（{type(exc).__name__}）。",
            f"The holidays file {path} cannot be read ({type(exc).__name__}).",
        ) from None
    schedule = {}
    for name, table in data.items():
        if not (name.isdigit() and len(name) == 4 and isinstance(table, dict)):
            raise HolidayFileError(
                f"节假日文件 {path} 中的 [{name}] 不是年份表：每年写作 [2027]，含 holidays 和 workdays。",
                f"[{name}] in the holidays file {path} is not a year: write [2027] with holidays and "
                "workdays.",
            )
        year = int(name)
        unknown = set(table) - {"holidays", "workdays"}
        if unknown:
            raise HolidayFileError(
                f"节假日文件 {path} 的 [{year}] 只能有 holidays 和 workdays 两项。",
                f"[{year}] in the holidays file {path} takes holidays and workdays only.",
            )
        schedule[year] = (
            _days(path, year, "holidays", table.get("holidays", [])),
            _days(path, year, "workdays", table.get("workdays", [])),
        )
    return schedule


def work_calendar(holidays_file: Path | None = None) -> WorkCalendar:
    """The package's schedule, with the operator's file (if any) laid over it year by year."""
    calendar = package_calendar()
    if holidays_file is None:
        return calendar
    return calendar.with_years(read_holidays_file(holidays_file))


def next_working_day(calendar: WorkCalendar, day: date) -> date:
    """``day`` if it is a working day, else the first working day after it."""
    while not calendar.is_working_day(day):
        day += timedelta(days=1)
    return day
