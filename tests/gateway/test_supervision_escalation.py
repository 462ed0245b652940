"""督办 through the real stack: a township's case left overdue is escalated by the gateway's periodic task to
the district, which finds it in its 督办 list; the township sees that it was escalated, a neighbouring
township sees nothing; the escalation is a step of the case and an event of the log, and the hotline's
`supervise complaint` says it in words. Deadlines say when they are estimates (a year without a known
holiday schedule)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from audit.complaints import period_estimated
from audit.workdays import package_calendar
from demoworld.world import build_world
from tests.stack import Stack, stack_fixture

WORLD = build_world()
BASE = "/api/v1/supervision"
TOWN_A = WORLD.identity("town_supervisor_a").org
DISTRICT = WORLD.identity("supervisor").org
#: How long the test waits for a round of the periodic task (it runs every second here).
ESCALATION_WAIT_S = 30.0


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from stack_fixture(
        str(request.param),
        tmp_path_factory,
        extra_env={"GRASSROOTS_ESCALATION_INTERVAL_S": "1", "GRASSROOTS_CHECKPOINT_INTERVAL_S": "0"},
    )


def api(stack: Stack, method: str, path: str, user: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {stack.token(user)}"}
    return httpx.request(method, f"{stack.base_url}{BASE}{path}", headers=headers, timeout=60.0, **kwargs)


def test_an_overdue_township_case_is_escalated_to_the_district_and_said_so_everywhere(stack: Stack) -> None:
    resident = WORLD.residents_of(WORLD.village_a)[0]
    call = {"source": "hotline_12345", "id_number": resident.id_number, "ticket": "12345-2026-0099"}
    created = api(stack, "POST", "/complaints", "town_supervisor_a", json=call)
    assert created.status_code == 201, created.text
    complaint, incident = created.json()["complaint"], created.json()["incident"]
    incident_id, complaint_id = incident["incident_id"], complaint["complaint_id"]
    assert incident["org"] == TOWN_A and incident["escalated"] is False
    # Whether a deadline is an estimate follows from the schedule the gateway has (today's date decides).
    calendar = package_calendar()
    for answer, due in ((complaint, "due_at"), (incident, "due_at")):
        start = datetime.fromisoformat(str(answer.get("received_at") or answer["opened_at"]))
        expected = period_estimated(start, datetime.fromisoformat(str(answer[due])), calendar)
        assert answer["due_estimated"] is expected
        assert ("due_estimated_note" in answer) is expected
    assert api(stack, "GET", "/incidents", "supervisor", params={"escalated": "true"}).json()["items"] == []

    # Time passes: the answer deadline went by yesterday (set in the database, as time would).
    with stack.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE audit_complaints SET due_at = :due WHERE complaint_id = :c"),
            {"due": datetime.now(UTC) - timedelta(days=1), "c": complaint_id},
        )
    waited_until = time.monotonic() + ESCALATION_WAIT_S
    while not (seen := api(stack, "GET", f"/incidents/{incident_id}", "town_supervisor_a").json())[
        "escalated"
    ]:
        assert time.monotonic() < waited_until, "the periodic task did not escalate the overdue case"
        time.sleep(0.2)
    assert seen["escalated_to"] == DISTRICT
    assert seen["escalation_message"].startswith("该事件逾期未办结，已于")
    assert [s["action"] for s in seen["steps"]].count("escalated") == 1
    assert seen["steps"][-1]["note"] == f"{TOWN_A} → {DISTRICT}"

    supervised = api(stack, "GET", "/incidents", "supervisor", params={"escalated": "true"}).json()
    assert [i["incident_id"] for i in supervised["items"]] == [incident_id] and supervised["total"] == 1
    for user in ("town_supervisor_a", "town_supervisor_b"):  # hers: escalated away; the neighbour: not hers
        assert api(stack, "GET", "/incidents", user, params={"escalated": "true"}).json()["items"] == []
    assert api(stack, "GET", f"/incidents/{incident_id}", "town_supervisor_b").status_code == 404

    time.sleep(2.5)  # more rounds of the task: still escalated once
    with stack.engine.connect() as conn:
        bodies = conn.execute(
            sa.text("SELECT body FROM audit_events WHERE kind = 'supervision.incident_escalated'")
        ).scalars()
        events = [json.loads(b) for b in bodies]
        steps = conn.execute(
            sa.text(
                "SELECT count(*) FROM audit_incident_steps WHERE action = 'escalated' AND incident_id = :i"
            ),
            {"i": incident_id},
        ).scalar_one()
    assert steps == 1
    assert [(e["details"]["incident_id"], e["details"]["org"], e["actor"]) for e in events] == [
        (incident_id, DISTRICT, "system")
    ]
    assert events[0]["details"]["scheduled"] is True
    assert resident.id_number not in json.dumps(events)

    # What the hotline reads out: the case went up for oversight.
    shown = stack.cli(
        "supervise", "complaint", complaint_id, "--as", "town_supervisor_a", "--url", stack.base_url
    )
    assert "提请上级监督机构（" in shown.stderr and "已由上级部门督办" in shown.stderr
    assert shown.stderr.index("提请上级") < shown.stderr.index("escalated on")  # Chinese first
    listed = stack.cli("supervise", "incidents", "--escalated", "--as", "supervisor", "--url", stack.base_url)
    assert [i["incident_id"] for i in json.loads(listed.stdout)["items"]] == [incident_id]

    # The district lets its own period run out too (set in the database, as time would): the periodic task
    # takes the case one level further, to the city, and it leaves the district's 督办 list.
    city = DISTRICT[:4].ljust(12, "0")
    with stack.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE audit_incidents SET escalation_due_at = :due WHERE incident_id = :i"),
            {"due": datetime.now(UTC) - timedelta(minutes=1), "i": incident_id},
        )
    waited_until = time.monotonic() + ESCALATION_WAIT_S
    while (seen := api(stack, "GET", f"/incidents/{incident_id}", "supervisor").json())[
        "escalated_to"
    ] != city:
        assert time.monotonic() < waited_until, "the periodic task did not escalate the case a level further"
        time.sleep(0.2)
    assert seen["escalation_level"] == 2 and seen["steps"][-1]["note"] == f"{DISTRICT} → {city}"
    assert "（第 2 级督办）" in seen["escalation_message"]
    assert api(stack, "GET", "/incidents", "supervisor", params={"escalated": "true"}).json()["items"] == []
    national = api(stack, "GET", "/incidents", "national_supervisor", params={"escalated": "true"}).json()
    assert [(i["incident_id"], i["escalated_to"]) for i in national["items"]] == [(incident_id, city)]
    with stack.engine.connect() as conn:
        bodies = conn.execute(
            sa.text(
                "SELECT body FROM audit_events WHERE kind = 'supervision.incident_escalated' ORDER BY seq"
            )
        ).scalars()
        climbed = [json.loads(b)["details"] for b in bodies][1:]
    assert [(e["from_org"], e["org"], e["escalation_level"], e["org_level"]) for e in climbed] == [
        (DISTRICT, city, 2, "city")
    ]
    shown = stack.cli(
        "supervise", "complaint", complaint_id, "--as", "town_supervisor_a", "--url", stack.base_url
    )
    assert "逐级提请市级监督机构（" in shown.stderr and "escalation level 2" in shown.stderr
