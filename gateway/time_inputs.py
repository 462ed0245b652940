"""Times a supervisor types: a calendar day as people write it, or an RFC 3339 time with its offset.

A supervisor asks for "the events of 1 to 5 December", not for ``2026-12-01T00:00:00+08:00``: a day
(``2026-12-01``, ``2026/12/1``, ``2026年12月1日``, full-width digits too) is the Beijing-time calendar day
(UTC+8, the day the log's reports and the case deadlines count in). ``since`` starts at that day's
midnight; ``until`` (exclusive) and a deadline run through the whole of it, so ``--since 2026-12-01
--until 2026-12-05`` covers the 5th. A time without an offset stays refused: which clock it means cannot
be guessed. Anything else, or a day that does not exist (``2026-13-01``), is refused with error type
``time_or_day``, whose hint (``gateway.validation_hints``) shows both forms; the value is never repeated.

A range whose start is not before its end is refused (:func:`checked_range`): it can hold no event, and an
empty answer would read as "nothing happened" to the supervisor who swapped the two.

A month (:data:`Month`, the monthly report's, an archive's, a prune's) is written as people write it too:
``2026-1``, ``2026-01``, ``2026/1``, ``2026年1月``, full-width digits; it becomes ``2026-01``. A month that
does not exist (``2026-13``) or anything else is refused with error type ``month``, the value not repeated.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Final

from pydantic import AwareDatetime, BeforeValidator
from pydantic_core import PydanticCustomError

from audit import CHINA_STANDARD_TIME
from gateway.errors import InvalidRequest

__all__ = ["DueAt", "Moment", "Month", "SinceTime", "UntilTime", "checked_range", "month_label"]

_DAY: Final = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m1>\d{1,2})-(?P<d1>\d{1,2})|/(?P<m2>\d{1,2})/(?P<d2>\d{1,2})"
    r"|年(?P<m3>\d{1,2})月(?P<d3>\d{1,2})[日号]?)"
)


_MONTH: Final = re.compile(r"(?P<y>\d{4})(?:[-/](?P<m1>\d{1,2})|年(?P<m2>\d{1,2})月?)")


def month_label(text: str) -> str | None:
    """``2026-1``, ``2026年1月``, ``２０２６-０１`` -> ``"2026-01"``; None for anything that is not a month
    (``2026-13`` included)."""
    match = _MONTH.fullmatch(unicodedata.normalize("NFKC", text).strip())
    if match is None or not 1 <= int(month := match["m1"] or match["m2"]) <= 12:
        return None
    return f"{match['y']}-{int(month):02d}"


def _month(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    label = month_label(value)
    if label is None:
        raise PydanticCustomError("month", "must be a month such as 2026-11 or 2026-1")
    return label


#: A calendar month (Beijing time), as ``YYYY-MM`` once read; see the module's docstring for what is taken.
Month = Annotated[str, BeforeValidator(_month)]


def _refused() -> PydanticCustomError:
    return PydanticCustomError("time_or_day", "must be a day such as 2026-12-01 or a time with its offset")


def _day(text: str) -> date | None:
    match = _DAY.fullmatch(text)
    if match is None:
        return None
    month = match["m1"] or match["m2"] or match["m3"]
    day = match["d1"] or match["d2"] or match["d3"]
    try:
        return date(int(match["y"]), int(month), int(day))
    except ValueError:
        raise _refused() from None


def _time_with_offset(text: str, refused: PydanticCustomError) -> datetime:
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise refused from None
    if parsed.utcoffset() is None:
        raise refused
    return parsed


def _parser(day_end: timedelta | None) -> BeforeValidator:
    """``day_end`` None: a day means its first moment; else that day's midnight plus ``day_end``.

    Only text is read (or a ``datetime`` handed over in code): pydantic would take a JSON number, or a
    query's digits, as seconds since 1970, so ``"valid_until": 20261231`` meant 23 August 1970."""

    def parse(value: Any) -> Any:
        if isinstance(value, datetime):
            return value
        if not isinstance(value, str):
            raise _refused()
        text = unicodedata.normalize("NFKC", value).strip()
        day = _day(text)
        if day is not None:
            start = datetime.combine(day, time(), CHINA_STANDARD_TIME)
            return start if day_end is None else start + day_end
        return _time_with_offset(text, _refused())

    return BeforeValidator(parse)


def _moment(value: Any) -> Any:
    """An RFC 3339 time with its offset, as text: never a number, which pydantic would read as seconds
    since 1970 (``?at=2330``, meant as 23:30, explained the policy as of 1 January 1970)."""
    if isinstance(value, datetime):
        return value
    refused = PydanticCustomError("timezone_aware", "must be a time with its offset")
    if not isinstance(value, str):
        raise refused
    return _time_with_offset(unicodedata.normalize("NFKC", value).strip(), refused)


#: One moment, as ``2026-12-06T23:30:00+08:00`` (the policy's ``at``): a day alone is not one.
Moment = Annotated[AwareDatetime, BeforeValidator(_moment)]


#: From this time; a day: from its midnight (Beijing time).
SinceTime = Annotated[AwareDatetime, _parser(None)]
#: Until this time, exclusive; a day: through the whole of it (the next day's midnight, Beijing time).
UntilTime = Annotated[AwareDatetime, _parser(timedelta(days=1))]
#: A deadline; a day: its last second (Beijing time), so the case file says "due by" that day.
DueAt = Annotated[AwareDatetime, _parser(timedelta(days=1, seconds=-1))]


def checked_range(since: datetime | None, until: datetime | None, now: datetime | None = None) -> None:
    """Refuse a range that can hold nothing (422 ``invalid_time_range``), naming neither value: a start
    not before the end, or a start still to come (a year mistyped, 2062 for 2026; answered empty, it read
    as "nobody read anything then")."""
    today = (now or datetime.now(CHINA_STANDARD_TIME)).astimezone(CHINA_STANDARD_TIME)
    if since is not None and since > today:
        raise InvalidRequest(
            f"时间范围有误：起始时间（since）晚于现在（今天是 {today:%Y-%m-%d}，北京时间），"
            "日志中不会有这段时间的事件。请核对年份和日期。",
            f"Invalid time range: the start (since) is later than now (today is {today:%Y-%m-%d}, Beijing "
            "time), so no event can lie in it. Check the year and the day.",
            code="invalid_time_range",
        )
    if since is not None and until is not None and since >= until:
        raise InvalidRequest(
            "时间范围有误：起始时间（since）不早于截止时间（until），这段时间内不会有任何事件。"
            "请核对两者是否写反；只写日期时按北京时间计，截止日当天包括在内。",
            "Invalid time range: the start (since) is not before the end (until), so no event can lie "
            "in it. Check whether the two are swapped; a day alone is a Beijing-time day, and the end "
            "day is included.",
            code="invalid_time_range",
        )
