"""Deadlines on the State Council's holiday schedule: a last day that is a rest day gives way to the next
working day (Civil Code Art. 203), working-day periods skip holidays and count 调休上班 days, and a year
the schedule does not know yields a conservative deadline that says it is an estimate.

The 2026 schedule (国办发明电〔2025〕7号): 1–3 January off, 4 January (a Sunday) worked; Spring Festival
15–23 February off, 14 and 28 February (Saturdays) worked; National Day 1–7 October off, 20 September
(a Sunday) and 10 October (a Saturday) worked.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from audit import DayCount, Deadlines, HolidayFileError, work_calendar
from audit.complaints import period_end, period_estimated
from audit.query import CHINA_STANDARD_TIME
from audit.workdays import WorkCalendar, package_calendar

CAL = package_calendar()


def beijing(day: str, clock: str = "10:00") -> datetime:
    return datetime.fromisoformat(f"{day} {clock}").replace(tzinfo=CHINA_STANDARD_TIME)


def last_day(moment: datetime) -> str:
    """The Beijing day a deadline ends (its last second, 23:59:59)."""
    local = moment.astimezone(CHINA_STANDARD_TIME)
    assert (local.hour, local.minute, local.second) == (23, 59, 59)
    return local.date().isoformat()


@pytest.mark.parametrize(
    ("received", "days", "due", "why"),
    [
        ("2026-12-07", 15, "2026-12-22", "a Tuesday: nothing moves"),
        ("2026-11-20", 15, "2026-12-07", "5 December is a Saturday: Monday the 7th"),
        ("2026-09-16", 15, "2026-10-08", "1 October: the holiday ends on the 7th, so the 8th"),
        ("2026-09-25", 15, "2026-10-10", "10 October is a Saturday worked (调休上班): not moved"),
        ("2026-02-05", 15, "2026-02-24", "20 February falls in the Spring Festival: the 24th"),
        ("2026-02-13", 1, "2026-02-14", "14 February is a Saturday worked (调休上班): not moved"),
    ],
)
def test_a_calendar_period_whose_last_day_is_a_rest_day_ends_on_the_next_working_day(
    received: str, days: int, due: str, why: str
) -> None:
    assert last_day(period_end(beijing(received), days, DayCount.CALENDAR, CAL)) == due, why


@pytest.mark.parametrize(
    ("received", "days", "due"),
    [
        ("2026-12-07", 5, "2026-12-14"),  # Tue 8 .. Fri 11, Mon 14
        ("2026-09-28", 5, "2026-10-10"),  # 29, 30 Sep; 1–7 Oct off; 8, 9 Oct; Saturday 10 Oct worked
        ("2026-02-12", 3, "2026-02-24"),  # Fri 13, Sat 14 (worked), then 15–23 off: Tue 24
        ("2026-12-31", 1, "2027-01-01"),  # 2027 not known: a Friday is a working day (an estimate)
    ],
)
def test_a_working_day_period_skips_holidays_and_counts_adjusted_working_days(
    received: str, days: int, due: str
) -> None:
    assert last_day(period_end(beijing(received), days, DayCount.WORKING, CAL)) == due


def test_a_deadline_in_a_year_the_schedule_does_not_know_is_early_never_late_and_says_so() -> None:
    """The installed schedule ends with 2026. A calendar period ending on Saturday 2 January 2027 is not
    moved (the real one can only be as late or later); it is flagged as an estimate, and once the
    operator's file adds 2027 the same period is counted on it (1 January off, 2 January a Saturday)."""
    received = beijing("2026-12-18")
    due = period_end(received, 15, DayCount.CALENDAR, CAL)
    assert last_day(due) == "2027-01-02"
    assert period_estimated(received, due, CAL) is True
    within = period_end(beijing("2026-11-01"), 15, DayCount.CALENDAR, CAL)
    assert period_estimated(beijing("2026-11-01"), within, CAL) is False

    known = CAL.with_years({2027: ([date(2027, 1, 1), date(2027, 1, 2), date(2027, 1, 3)], [])})
    later = period_end(received, 15, DayCount.CALENDAR, known)
    assert last_day(later) == "2027-01-04"
    assert later > due and period_estimated(received, later, known) is False

    deadlines = Deadlines(complaint_days=15, incident_days=30, calendar=CAL)
    assert deadlines.estimated(received, deadlines.complaint_due(received)) is True


def test_the_operators_file_adds_a_year_and_replaces_one_whole(tmp_path: Path) -> None:
    path = tmp_path / "holidays.toml"
    path.write_text(
        '[2027]\nholidays = ["2027-01-01"]\nworkdays = ["2027-02-06"]\n'
        "[2026]\nholidays = []\nworkdays = []\n",
        encoding="utf-8",
    )
    calendar = work_calendar(path)
    assert calendar.knows(date(2027, 6, 1)) and not calendar.is_working_day(date(2027, 1, 1))
    assert calendar.is_working_day(date(2027, 2, 6))  # a Saturday worked
    assert calendar.is_working_day(date(2026, 10, 1))  # 2026 replaced whole: no holidays left
    assert calendar.knows(date(2025, 10, 1)) and not calendar.is_working_day(date(2025, 10, 1))


@pytest.mark.parametrize(
    "text",
    [
        '[2027]\nholidays = ["2028-01-01"]\n',  # a day of another year
        '[2027]\nholidays = ["1 January"]\n',
        '[2027]\nholiday = ["2027-01-01"]\n',  # misspelt key: not ignored
        "[next]\nholidays = []\n",
        "[2027\n",
    ],
)
def test_a_holidays_file_that_cannot_be_read_whole_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "holidays.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(HolidayFileError) as caught:
        work_calendar(path)
    assert "节假日文件" in caught.value.message_zh


def test_every_day_of_a_known_year_is_a_working_day_or_a_rest_day_as_the_schedule_says() -> None:
    """A law over the whole of 2026: a working-day period of n days ends on the n-th working day after
    the start, and a calendar period's last day is always a working day (the 6 worked weekend days
    included, the holidays never)."""
    days = [date(2026, 1, 1) + timedelta(days=n) for n in range(365)]
    working = [d for d in days if CAL.is_working_day(d)]
    assert {date(2026, 1, 4), date(2026, 2, 14), date(2026, 10, 10)} <= set(working)
    assert not {date(2026, 1, 1), date(2026, 2, 16), date(2026, 9, 25), date(2026, 10, 5)} & set(working)
    start = beijing("2025-12-31")
    for n in (1, 10, 100, len(working)):
        assert last_day(period_end(start, n, DayCount.WORKING, CAL)) == working[n - 1].isoformat()
    for n in range(1, 350, 7):
        assert date.fromisoformat(last_day(period_end(start, n, DayCount.CALENDAR, CAL))) in set(working)


def test_an_empty_calendar_knows_no_year() -> None:
    empty = WorkCalendar()
    moment = datetime(2026, 12, 5, 2, tzinfo=UTC)
    assert empty.last_known_day() is None
    assert period_estimated(moment, moment, empty) is True
