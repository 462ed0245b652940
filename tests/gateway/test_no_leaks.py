"""What a request sends stays out of answers and logs, and every look at a case file is audited.

- Reads of complaints and incidents (the case files: evidence events, investigation notes) each write
  exactly one audit event, as the event queries and transparency lookups do.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from demoworld.world import build_world
from tests.stack import Stack

WORLD = build_world()
FAKE_ID = "11010519491231002X"  # a valid GB 11643 check character: the audit tripwire would catch it
PHONE = "13812345678"


def call(stack: Stack, method: str, path: str, user: str | None, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {stack.token(user)}"} if user else {}
    return httpx.request(method, f"{stack.base_url}{path}", headers=headers, timeout=60.0, **kwargs)


def new_events(stack: Stack, after: int) -> list[dict[str, Any]]:
    with stack.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT seq, kind, outcome, actor FROM audit_events WHERE seq > :s ORDER BY seq"),
            {"s": after},
        ).mappings()
        return [dict(r) for r in rows]


def last_seq(stack: Stack) -> int:
    with stack.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT coalesce(max(seq), 0) FROM audit_events")).scalar_one())


# -- A: case-file reads are audited ------------------------------------------------------------------


@pytest.fixture(scope="module")
def case(stack: Stack) -> dict[str, str]:
    resident = WORLD.residents_of(WORLD.village_a)[0]
    resp = call(
        stack,
        "POST",
        "/api/v1/supervision/complaints",
        "supervisor",
        json={"source": "walk_in", "id_number": resident.id_number},
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    return {"complaint_id": body["complaint"]["complaint_id"], "incident_id": body["incident"]["incident_id"]}


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/complaints", "supervision.complaints_listed"),
        ("/complaints/{complaint_id}", "supervision.complaint_viewed"),
        ("/incidents", "supervision.incidents_listed"),
        ("/incidents/overdue", "supervision.incidents_listed"),
        ("/incidents/{incident_id}", "supervision.incident_viewed"),
    ],
)
def test_each_case_file_read_writes_one_audit_event(
    stack: Stack, case: dict[str, str], path: str, kind: str
) -> None:
    before = last_seq(stack)
    resp = call(stack, "GET", "/api/v1/supervision" + path.format(**case), "auditor")
    assert resp.status_code == 200, resp.text
    events = new_events(stack, before)
    assert [(e["kind"], e["outcome"], e["actor"]) for e in events] == [
        (kind, "ok", WORLD.identity("auditor").user_id)
    ]


def test_a_missing_case_file_is_404_and_echoes_nothing(stack: Stack) -> None:
    for path in (f"/complaints/{PHONE}", f"/incidents/{PHONE}"):
        resp = call(stack, "GET", "/api/v1/supervision" + path, "auditor")
        assert resp.status_code == 404 and PHONE not in resp.text
