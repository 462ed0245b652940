"""The scenario catalog: the shipped demo scenarios, hours in Beijing time, and validation of
scenarios.toml with file and line."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from policies import PolicyFileError, ScenarioCatalog, load_scenarios
from policies.scenarios import DEFAULT_SCENARIOS_PATH

from .conftest import CJK, DIBAO_FIELDS, ELDERLY_FIELDS


def test_shipped_demo_scenarios(scenarios: ScenarioCatalog) -> None:
    dibao, elderly = scenarios["DIBAO_REVIEW"], scenarios["ELDERLY_VISIT"]
    assert dibao.name_zh == "低保年度复核"
    assert dict(dibao.datasets) == {"residents": DIBAO_FIELDS}
    assert dibao.roles_allowed == ("village_cadre", "township_officer")
    assert dict(elderly.datasets) == {"residents": ELDERLY_FIELDS}
    assert elderly.roles_allowed == ("village_cadre", "grid_worker")
    assert dibao.hours_allowed == (7, 21)
    residents = scenarios.dataset("residents")
    assert residents is not None
    assert residents.owner_department == "civil_affairs"
    assert residents.provider_system == "civil-affairs-registry"
    assert residents.second_approval_fields == {"id_number", "dibao_status"}
    assert "NO_SUCH" not in scenarios
    assert scenarios.get("NO_SUCH") is None
    assert len(scenarios) == 3  # DIBAO_REVIEW, ELDERLY_VISIT, GRID_VISIT
    # No max_validity_days in the shipped file: a grant lasts at most the scenario's default validity.
    assert [(s.default_validity_days, s.max_validity_days) for s in scenarios] == [
        (90, 90),
        (180, 180),
        (180, 180),
    ]


def test_a_maximum_validity_may_be_set_above_the_default(tmp_path: Path) -> None:
    path, _ = _write(
        tmp_path, "default_validity_days = 90", "default_validity_days = 90\nmax_validity_days = 120"
    )
    catalog = load_scenarios(path)
    assert (catalog["DIBAO_REVIEW"].default_validity_days, catalog["DIBAO_REVIEW"].max_validity_days) == (
        90,
        120,
    )
    assert catalog["ELDERLY_VISIT"].max_validity_days == 180


# (UTC time, inside 07:00-21:00 Beijing time?)
HOURS = [
    (datetime(2025, 3, 2, 22, 59, 59, tzinfo=UTC), False),  # 06:59:59 CST
    (datetime(2025, 3, 2, 23, 0, 0, tzinfo=UTC), True),  # 07:00 CST
    (datetime(2025, 3, 3, 12, 59, 59, tzinfo=UTC), True),  # 20:59:59 CST
    (datetime(2025, 3, 3, 13, 0, 0, tzinfo=UTC), False),  # 21:00 CST
    (datetime(2025, 3, 3, 18, 0, 0, tzinfo=UTC), False),  # 02:00 CST
]


@pytest.mark.parametrize(("now", "inside"), HOURS)
def test_hours_are_beijing_time_half_open(scenarios: ScenarioCatalog, now: datetime, inside: bool) -> None:
    assert scenarios["DIBAO_REVIEW"].within_hours(now) is inside


# (original, typo, expected message fragment, line of the typo counted from the original's line)
TYPOS = [
    (
        'roles_allowed = ["village_cadre", "township_officer"]',
        'roles_allowed = ["village_cadr", "township_officer"]',
        "unknown role",
        0,
    ),
    ("max_records_per_request = 200", "max_records_per_request = 0", "positive integer", 0),
    ("max_records_per_request = 200", "max_record_per_request = 200", "unknown key", 0),
    ("hours_allowed = [7, 21]", "hours_allowed = [21, 7]", "hours_allowed", 0),
    ("hours_allowed = [7, 21]", "hours_allowed = [7, 21", "TOML syntax", 1),
    ('masking_profile = "standard"', 'masking_profile = ""', "non-empty string", 0),
    (
        'second_approval_fields = ["id_number", "dibao_status"]',
        'second_approval_fields = ["id_numbr"]',
        "not fields",
        0,
    ),
    # A maximum below the default would refuse the scenario's own default window.
    (
        "default_validity_days = 90",
        "default_validity_days = 90\nmax_validity_days = 30",
        "must not be less than default_validity_days",
        1,
    ),
    (
        "default_validity_days = 90",
        "default_validity_days = 90\nmax_validity_days = 0",
        "positive integer",
        1,
    ),
]


def _write(tmp_path: Path, original: str, typo: str) -> tuple[Path, int]:
    text = DEFAULT_SCENARIOS_PATH.read_text(encoding="utf-8")
    assert original in text
    line = text[: text.index(original)].count("\n") + 1
    path = tmp_path / "scenarios.toml"
    path.write_text(text.replace(original, typo, 1), encoding="utf-8")
    return path, line


@pytest.mark.parametrize(("original", "typo", "fragment", "offset"), TYPOS)
def test_a_typo_fails_with_file_and_line(
    tmp_path: Path, original: str, typo: str, fragment: str, offset: int
) -> None:
    path, line = _write(tmp_path, original, typo)
    with pytest.raises(PolicyFileError) as info:
        load_scenarios(path)
    assert (info.value.path, info.value.line) == (str(path), line + offset), str(info.value)
    assert fragment in info.value.message
    assert CJK.search(info.value.message_zh) and not CJK.search(info.value.message), info.value.message_zh


def test_a_catalog_nested_too_deeply_is_a_file_error_not_a_crash(tmp_path: Path) -> None:
    """Arrays nested past the TOML parser's recursion limit raised RecursionError, which no caller
    expects: a proposed catalog in a policy replay answered 500. It is a file error like a typo."""
    path = tmp_path / "scenarios.toml"
    path.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(PolicyFileError) as info:
        load_scenarios(path)
    assert info.value.path == str(path) and "nested too deeply" in info.value.message
    assert CJK.search(info.value.message_zh)


def test_unknown_field_in_a_scenario_points_at_its_dataset_line(tmp_path: Path) -> None:
    original = 'residents = ["id", "name", "birth_date", "address", "mobile", "village_code"]'
    path, line = _write(tmp_path, original, original.replace("birth_date", "birthday"))
    with pytest.raises(PolicyFileError, match="no field") as info:
        load_scenarios(path)
    assert info.value.line == line


def test_reload_swaps_the_catalog_and_keeps_it_on_error(tmp_path: Path) -> None:
    path, _ = _write(tmp_path, "daily_quota_per_user = 2000", "daily_quota_per_user = 50")
    catalog = load_scenarios(path)
    assert catalog["DIBAO_REVIEW"].daily_quota_per_user == 50
    path.write_text(path.read_text(encoding="utf-8").replace("= 50", "= 60"), encoding="utf-8")
    event = catalog.reload(actor="u-admin")
    assert catalog["DIBAO_REVIEW"].daily_quota_per_user == 60
    assert event["kind"] == "policy.scenarios_reloaded" and event["actor"] == "u-admin"
    path.write_text("not = [toml", encoding="utf-8")
    with pytest.raises(PolicyFileError):
        catalog.reload()
    assert catalog["DIBAO_REVIEW"].daily_quota_per_user == 60
