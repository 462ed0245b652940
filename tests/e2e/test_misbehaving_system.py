"""A departmental system that misbehaves, as real ones do, behind a real gateway process.

The civil-affairs registry's address is taken over by a small aiohttp server of this process (a real
server on loopback, answering what each case says); the gateway calls it as the admitted system
``civil-affairs-registry``. For every fault: no data reaches the cadre, she is told in Chinese first which
system failed, the audit event records the system and the fault's code (a supervisor knows whom to ask and
why), and the gateway's operators get one log line and a metric naming the system and the fault — never
anything the system sent (its HTML error page holds an ID number and a mobile here).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from demoworld.world import build_world
from tests.stack import Stack, stack_fixture

WORLD = build_world()
VILLAGE_A = WORLD.village_a
SYSTEM = "civil-affairs-registry"
SYSTEM_NAME = "区民政局居民信息登记系统"
#: What a broken system's answers hold, which must reach no answer, log line or audit event.
ID_NUMBER = "110101199003077774"
MOBILE = "13912345678"
NAME = "欧阳娜娜"
HTML_PAGE = f"<html><body><h1>500 Internal Server Error</h1><p>{NAME} {ID_NUMBER} {MOBILE}</p></body></html>"

Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]


def record(record_id: str = "R00000001", village: str = VILLAGE_A, **fields: Any) -> dict[str, Any]:
    return {
        "id": record_id,
        "name": NAME,
        "id_number": ID_NUMBER,
        "mobile": MOBILE,
        "address": "上海市崇明区城桥镇东风村3组12号",
        "birth_date": "1990-03-07",
        "household_no": "H0001",
        "dibao_status": "在保",
        "village_code": village,
        "remark": "",
        **fields,
    }


def logs_of(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Path:
    """Where the gateway of ``backend``'s stack writes its log lines (``stderr``) and metrics (``stdout``)."""
    return tmp_path_factory.getbasetemp() / f"misbehaving-system-gateway-{backend}"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack with the gateway's log lines and metrics (the console exporter) in files."""
    logs = logs_of(tmp_path_factory, request.param)
    env = {"GRASSROOTS_OTEL_EXPORTER": "console", "OTEL_METRIC_EXPORT_INTERVAL": "300"}
    yield from stack_fixture(
        request.param, tmp_path_factory, env, gateway_output=logs / "stdout", gateway_errors=logs / "stderr"
    )


@pytest.fixture
def logs(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return logs_of(tmp_path_factory, stack.backend)


@dataclass
class Impostor:
    """The system's answer, set by each test."""

    answer: Answer | None = None
    seen: list[str] = field(default_factory=list)


@contextlib.contextmanager
def serve_on(port: int, impostor: Impostor) -> Iterator[None]:
    """An aiohttp server on ``127.0.0.1:port``, on a thread and event loop of its own, answering every
    request as ``impostor.answer`` says."""

    async def handle(request: web.Request) -> web.StreamResponse:
        impostor.seen.append(request.path)
        assert impostor.answer is not None
        return await impostor.answer(request)

    loop = asyncio.new_event_loop()
    runners: list[web.AppRunner] = []
    started = threading.Event()

    async def start() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10), "the impostor did not start"
    try:
        yield
    finally:
        asyncio.run_coroutine_threadsafe(runners[0].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def impostor(stack: Stack) -> Iterator[Impostor]:
    stack.stop_upstream()
    taken = Impostor()
    try:
        with serve_on(stack.upstream_port, taken):
            yield taken
    finally:
        stack.start_upstream()


# ----------------------------------------------------------------------------------------------- answers


def json_answer(body: object, status: int = 200) -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.json_response(body, status=status)

    return answer


def raw_answer(body: bytes | str, status: int = 200, content_type: str = "application/json") -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        data = body.encode() if isinstance(body, str) else body
        return web.Response(body=data, status=status, headers={"Content-Type": content_type})

    return answer


def slow_answer(seconds: float) -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.json_response({"items": [record()], "total": 1, "next_page": None})

    return answer


def redirect_answer(status: int) -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": "http://localhost:1/elsewhere"})

    return answer


async def reset_mid_body(request: web.Request) -> web.StreamResponse:
    """Promises a long JSON page, sends the start of a record, then resets the connection."""
    response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": "100000"})
    await response.prepare(request)
    await response.write(json.dumps({"items": [record()]}, ensure_ascii=False).encode()[:120])
    assert request.transport is not None
    request.transport.abort()
    return response


HUGE = b'{"items": [], "pad": "' + b" " * (9 * 1024 * 1024) + b'"}'

# (case, the system's answer, status and code the cadre gets, fault code, the system's HTTP status)
FAULTS: list[tuple[str, Answer, int, str, str, int | None]] = [
    ("slow", slow_answer(3.5), 504, "upstream_timeout", "timeout", None),
    ("html_500", raw_answer(HTML_PAGE, 500, "text/html"), 502, "upstream_bad_response", "status", 500),
    ("json_503", json_answer({"error": "maintenance"}, 503), 502, "upstream_bad_response", "status", 503),
    ("path_404", raw_answer(HTML_PAGE, 404, "text/html"), 502, "upstream_bad_response", "status", 404),
    ("refused_401", raw_answer(HTML_PAGE, 401, "text/html"), 502, "upstream_credential_refused",
     "credential_refused", 401),
    ("refused_403", json_answer({"error": "forbidden"}, 403), 502, "upstream_credential_refused",
     "credential_refused", 403),
    ("redirect", redirect_answer(302), 502, "upstream_bad_response", "redirect", 302),
    ("html_200", raw_answer(HTML_PAGE, 200, "text/html"), 502, "upstream_bad_response", "content_type", None),
    ("json_as_text", raw_answer(json.dumps({"items": [record()], "next_page": None}), 200, "text/plain"), 502,
     "upstream_bad_response", "content_type", None),
    ("invalid_json", raw_answer('{"items": [{"id": "R1", "id_number": "' + ID_NUMBER + '"'), 502,
     "upstream_bad_response", "not_json", None),
    ("huge", raw_answer(HUGE), 502, "upstream_bad_response", "too_large", None),
    ("no_items", json_answer({"records": [record()]}), 502, "upstream_bad_response", "bad_shape", None),
    ("missing_id", json_answer({"items": [{**record(), "id": None}], "next_page": None}), 502,
     "upstream_bad_response", "bad_shape", None),
    ("reset", reset_mid_body, 502, "upstream_bad_response", "dropped", None),
    # More than the 5 asked for: served cut to 5, the page said "complete" with the rest missing.
    ("page_overflow", json_answer({"items": [record(f"R{n:08d}") for n in range(1, 7)], "next_page": None}),
     502, "upstream_bad_response", "page_overflow", None),
    ("duplicate_id", json_answer({"items": [record(), record(name="张伟")], "next_page": None}), 502,
     "upstream_bad_response", "duplicate_id", None),
    ("bad_record_id", json_answer({"items": [record("R1/../R2")], "next_page": None}), 502,
     "upstream_bad_response", "bad_record_id", None),
    # Page 1 answered "next: page 1" (or 0): a reader following next_page reads the same page for ever.
    ("next_page_back", json_answer({"items": [record()], "next_page": 1}), 502, "upstream_bad_response",
     "bad_next_page", None),
]  # fmt: skip


def wait_for(path: Path, text: str, timeout_s: float = 10.0) -> str:
    """The file's content once it holds ``text`` (log lines and metrics are written a moment later)."""
    deadline = time.monotonic() + timeout_s
    while True:
        content = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        if text in content or time.monotonic() > deadline:
            return content
        time.sleep(0.1)


#: The faults of one record's read (the list's are FAULTS): (case, answer, status, code, fault, HTTP status).
READ_FAULTS: list[tuple[str, Answer, int, str, str, int | None]] = [
    # Asked for R00000001, answered another record of the same village: served as the one she opened.
    ("wrong_record", json_answer(record("R00000002")), 502, "upstream_bad_response", "wrong_record", None),
    ("html_500", raw_answer(HTML_PAGE, 500, "text/html"), 502, "upstream_bad_response", "status", 500),
]

CASES = [(*case, "list") for case in FAULTS] + [(*case, "read") for case in READ_FAULTS]


@pytest.mark.parametrize(
    ("answer", "status", "code", "fault", "upstream_status", "call"),
    [case[1:] for case in CASES],
    ids=[f"{case[-1]}-{case[0]}" for case in CASES],
)
def test_a_failing_system_serves_nothing_and_is_named_to_the_cadre_the_supervisor_and_the_operator(
    stack: Stack,
    impostor: Impostor,
    logs: Path,
    answer: Answer,
    status: int,
    code: str,
    fault: str,
    upstream_status: int | None,
    call: str,
) -> None:
    impostor.answer = answer
    before = stack.audit_count()
    if call == "list":
        resp = stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW", page_size=5)
    else:
        resp = stack.get(f"{stack.records_url}/R00000001", "cadre_a", scenario="DIBAO_REVIEW")

    # The cadre: no data, told in Chinese first which system failed.
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"] == code and "items" not in body
    assert "\u4e00" <= body["message"][0] <= "\u9fff", body["message"]
    assert SYSTEM_NAME in body["message"] and SYSTEM in body["message_en"]
    assert body["system"] == SYSTEM
    assert body.get("upstream_status") == upstream_status

    # The supervisor: one event, naming the system and the fault.
    assert stack.audit_count() == before + 1
    [event] = stack.last_events(1)
    details = json.loads(event["body"])["details"]
    assert event["outcome"] == "error"
    assert details["system"] == SYSTEM and details["upstream_fault"] == fault
    assert details.get("upstream_status") == upstream_status

    # The operator: a log line and a metric naming the system and the fault.
    line = f"departmental system {SYSTEM} failed a {call} call: {fault}"
    log = wait_for(logs / "stderr", line)
    assert line in log
    metrics = wait_for(logs / "stdout", f'"fault": "{fault}"')
    assert f'"fault": "{fault}"' in metrics and f'"system": "{SYSTEM}"' in metrics

    # Nothing the system sent went anywhere.
    for leaked in (ID_NUMBER, MOBILE, NAME):
        assert leaked not in resp.text and leaked not in event["body"] and leaked not in log


def test_records_outside_the_villages_asked_for_are_dropped_and_the_log_line_names_the_system(
    stack: Stack, impostor: Impostor, logs: Path
) -> None:
    """The log line used to say only "upstream returned records outside the pushed-down scope": the
    system was in the record's ``extra``, which the gateway's log format does not print."""
    neighbour = WORLD.village_b
    impostor.answer = json_answer(
        {"items": [record("R00000001"), record("R00000002", neighbour)], "total": 2, "next_page": None}
    )
    resp = stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW", page_size=5)
    assert resp.status_code == 200, resp.text
    assert [item["id"] for item in resp.json()["items"]] == ["R00000001"]
    details = json.loads(stack.last_events(1)[0]["body"])["details"]
    assert details["alerts"] == ["upstream_scope_violation"] and details["scope_violations"] == 1
    assert details["system"] == SYSTEM
    line = f"departmental system {SYSTEM} answered 1 record(s) outside the pushed-down scope"
    assert line in wait_for(logs / "stderr", line)


def test_personal_data_sent_as_a_number_or_an_objects_key_in_a_kept_field_is_caught_by_the_response_dlp(
    stack: Stack, impostor: Impostor
) -> None:
    """低保状态 is shown as it is (a level 4 field whose rule keeps it), so the response DLP scans it. An ID
    number or a mobile sent there as a JSON number (a registry's numeric column), or as the key of an
    object, was passed over by the scan and reached the cadre in clear; now masked like the same digits in
    a string, and raised as catalog drift naming the field."""
    impostor.answer = json_answer(
        {
            "items": [
                record("R00000001", dibao_status=int(ID_NUMBER)),
                record("R00000002", dibao_status=int(MOBILE)),
                record("R00000003", dibao_status={ID_NUMBER: "在保"}),
                record("R00000004", dibao_status=2),
            ],
            "total": 4,
            "next_page": None,
        }
    )
    resp = stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW", page_size=5)
    assert resp.status_code == 200, resp.text
    assert ID_NUMBER not in resp.text and MOBILE not in resp.text
    statuses = [item["dibao_status"] for item in resp.json()["items"]]
    assert statuses[0] == "110101************" and statuses[1] == "139****5678"
    assert statuses[2] == {"110101************": "在保"} and statuses[3] == 2
    details = json.loads(stack.last_events(1)[0]["body"])["details"]
    assert "catalog_drift" in details["alerts"]
    assert {(d["field"], d["entity_type"]) for d in details["catalog_drift"]} >= {
        ("dibao_status", "CN_ID_NUMBER")
    }


def test_a_birth_date_in_a_remark_or_a_kept_field_is_shown_to_the_year_as_the_birth_date_field_is(
    stack: Stack, impostor: Impostor
) -> None:
    """A resident's birth date written into the registry's remark (该户主出生于1948年3月12日) reached the
    cadre whole, though the birth_date field shows only the year: the remark is now masked to the year by
    the freetext rule, and the same in a field the plan keeps as it is (低保状态) by the response DLP, raised
    as catalog drift. A visit date in the same remark stays."""
    impostor.answer = json_answer(
        {
            "items": [
                record("R00000001", remark="该户主出生于1948年3月12日，独居，2024年3月5日走访"),
                record("R00000002", remark="于一九五〇年一月二日出生", dibao_status="在保，生日：1956-07-08"),
            ],
            "total": 2,
            "next_page": None,
        }
    )
    resp = stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW", page_size=5)
    assert resp.status_code == 200, resp.text
    items = resp.json()["items"]
    assert [item["remark"] for item in items] == [
        "该户主出生于1948年**月**日，独居，2024年3月5日走访",
        "于1950年**月**日出生",
    ]
    assert items[1]["dibao_status"] == "在保，生日：1956-**-**"
    for written in ("3月12日", "一月二日", "07-08"):
        assert written not in resp.text
    details = json.loads(stack.last_events(1)[0]["body"])["details"]
    assert "catalog_drift" in details["alerts"]
    assert {(d["field"], d["entity_type"]) for d in details["catalog_drift"]} == {
        ("dibao_status", "CN_BIRTH_DATE")
    }


def test_fields_the_grant_does_not_name_are_dropped_whatever_the_system_sends(
    stack: Stack, impostor: Impostor
) -> None:
    """A system sending more than the dataset declares (a field the catalog does not have, nested data) or
    more than the scenario needs (birth_date is catalogued, DIBAO_REVIEW does not read it): projected away
    before masking, never shown, masked or not."""
    impostor.answer = json_answer(
        {
            "items": [
                record(
                    internal_note=f"户主{NAME}，身份证{ID_NUMBER}",
                    family={"spouse_id_number": ID_NUMBER, "mobile": MOBILE},
                    birth_date="1990-03-07",
                )
            ],
            "total": 1,
            "next_page": None,
        }
    )
    resp = stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW", page_size=5)
    assert resp.status_code == 200, resp.text
    [item] = resp.json()["items"]
    assert not {"internal_note", "family", "birth_date"} & set(item)
    assert ID_NUMBER not in resp.text and MOBILE not in resp.text and NAME not in resp.text
