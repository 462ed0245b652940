"""A gateway's masking plans are kept per local day: an age band is the age on the day the data is read.

Before, the runtime kept each plan with no date in its key and the plan bound the day it was first built,
so a gateway running for days (or a year) kept banding ages as of that first day: a resident who turned 50
was still served as 40-49."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from gateway.db import upgrade
from gateway.settings import Settings
from gateway.wiring import build_runtime, close_runtime
from masking import mask_records

# Born 2 June 1980: 49 on 1 June 2030, 50 from 2 June 2030 (China Standard Time).
RESIDENT = {"id": "R1", "birth_date": "1980-06-02"}


async def test_an_age_band_is_the_age_on_the_day_of_the_request_not_the_day_the_plan_was_built(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    upgrade(url)
    runtime = build_runtime(Settings(data_dir=tmp_path / "var", database_url=url, dev_idp_enabled=True))
    try:

        def band(now: datetime) -> object:
            plan = runtime.masking_plan(
                dataset="residents",
                fields=("id", "birth_date"),
                role="village_cadre",
                scenario="DIBAO_REVIEW",
                profile="strict",
                now=now,
            )
            assert plan.decision("birth_date").operator == "age_bucket"
            return mask_records([RESIDENT], plan)[0]["birth_date"]

        assert band(datetime(2030, 6, 1, 12, 0, tzinfo=UTC)) == "40-49"
        # 00:30 on 2 June in Beijing is still 1 June in UTC: the local day counts.
        assert band(datetime(2030, 6, 1, 16, 30, tzinfo=UTC)) == "50-59"
        assert band(datetime(2031, 6, 1, 12, 0, tzinfo=UTC)) == "50-59"
        # A request still in flight from the day before gets that day's band (its plan is not kept).
        assert band(datetime(2030, 6, 1, 12, 0, tzinfo=UTC)) == "40-49"
        assert band(datetime(2031, 6, 1, 13, 0, tzinfo=UTC)) == "50-59"
        # Within a day the plan is built once.
        first = runtime.masking_plan(
            dataset="residents", fields=("id",), role="village_cadre", scenario="DIBAO_REVIEW",
            profile="strict", now=datetime(2031, 6, 1, 14, 0, tzinfo=UTC),
        )  # fmt: skip
        again = runtime.masking_plan(
            dataset="residents", fields=("id",), role="village_cadre", scenario="DIBAO_REVIEW",
            profile="strict", now=datetime(2031, 6, 1, 15, 0, tzinfo=UTC),
        )  # fmt: skip
        assert again is first
    finally:
        await close_runtime(runtime)


async def test_a_dry_run_bands_ages_on_the_day_in_beijing(tmp_path: Path) -> None:
    """The dry run built its plan as of the process's date (UTC on a server): between 00:00 and 08:00 in
    Beijing it banded ages a day behind what the data path serves. It now takes the local day too."""
    from gateway.routes.masking_admin import DryRunBody, _dry_run

    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    upgrade(url)
    runtime = build_runtime(Settings(data_dir=tmp_path / "var", database_url=url, dev_idp_enabled=True))
    try:
        body = DryRunBody(
            dataset="residents",
            role="village_cadre",
            scenario="DIBAO_REVIEW",
            fields=["id", "birth_date"],
            sample=RESIDENT,
        )

        def band(now: datetime) -> object:
            result = _dry_run(runtime, runtime.catalog, runtime.rules, body, "strict", now)
            return result["masked"]["birth_date"]

        assert band(datetime(2030, 6, 1, 12, 0, tzinfo=UTC)) == "40-49"
        # 00:30 on 2 June in Beijing, still 1 June in UTC: the resident is 50, as the data path says.
        assert band(datetime(2030, 6, 1, 16, 30, tzinfo=UTC)) == "50-59"
    finally:
        await close_runtime(runtime)
