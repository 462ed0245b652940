"""A time range that can hold no event is refused (422 ``invalid_time_range``) rather than answered
empty, which reads as "nobody read anything then": a start after the end, or a start still to come."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.errors import InvalidRequest
from gateway.time_inputs import checked_range

NOW = datetime(2026, 12, 7, 3, 40, tzinfo=UTC)  # 11:40 on 7 December, Beijing time


def test_a_start_still_to_come_is_refused_naming_today_not_the_value_typed() -> None:
    # --since 2062-12-01 (2026 mistyped): the query, the report and the anomaly run answered empty.
    with pytest.raises(InvalidRequest) as raised:
        checked_range(datetime(2062, 12, 1, tzinfo=UTC), None, NOW)
    error = raised.value
    assert error.code == "invalid_time_range"
    assert error.message_zh.startswith(
        "时间范围有误：起始时间（since）晚于现在（今天是 2026-12-07，北京时间）"
    )
    assert error.message_en.startswith(
        "Invalid time range: the start (since) is later than now (today is 2026-12-07"
    )
    assert "2062" not in error.message_zh + error.message_en and error.message_en.isascii()


def test_a_start_up_to_now_and_an_end_still_to_come_are_taken() -> None:
    checked_range(datetime(2026, 12, 6, 16, 0, tzinfo=UTC), None, NOW)  # today, Beijing time
    checked_range(NOW, None, NOW)
    checked_range(None, datetime(2030, 1, 1, tzinfo=UTC), NOW)  # "until the end of the year" is fine
