"""What a request sends stays out of answers and logs, and every look at a case file is audited.

- Reads of complaints and incidents (the case files: evidence events, investigation notes) each write
  exactly one audit event, as the event queries and transparency lookups do.
- An unexpected exception whose message carries an ID number answers the usual 500 and leaves neither the
  message nor a traceback in the logs (uvicorn would otherwise log "Exception in ASGI application"), nor
  in a span; database errors do not print bound values.
- At the most verbose level (GRASSROOTS_LOG_LEVEL=TRACE), what a client put in the address (a record id
  in the path, query parameters) and its headers (a token) stay out of the log: uvicorn's TRACE lines log
  every request's ASGI scope, path and query string included.
- The whole surface at once, as an attacker or a careless user would try it: personal data planted in
  every place a client writes (path, query, headers, a malformed Authorization, request bodies) and tokens
  valid, expired, tampered and of another issuer reach no log line (TRACE), span (console exporter), error
  answer or audit event.
- 4xx answers name what to fix without echoing the value sent: validation errors (dict keys), unknown
  scenario, dataset, system, anomaly rule or setting, envelope version and key id, and what a proposed
  policy file holds where a name belongs (a resident list pasted as permissions.csv, say).
"""

from __future__ import annotations

import base64
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from demoworld.world import build_world
from gateway.app import _request_ids, create_app
from gateway.db import make_engine
from gateway.errors import GatewayError
from gateway.launch import start_gateway, stop
from gateway.serving import CoalescingHttpToolsProtocol
from gateway.settings import Settings
from tests.ports import free_port
from tests.stack import REPO, Stack, stack_fixture
from tests.uvicorn_thread import uvicorn_thread

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


def assert_no_echo(resp: httpx.Response, status: int, code: str, *secrets: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert body["error"] == code, body
    assert body["message"] and body["message_en"]
    for secret in secrets:
        assert secret not in resp.text, resp.text
    return body


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


# -- B: an unexpected exception leaves no message or traceback in the logs ----------------------------


@pytest.fixture
def server_with_a_failing_route(tmp_path: Path) -> Iterator[str]:
    """The real app (its middleware and handlers) under uvicorn with the protocol `serve` uses, plus one
    route that fails with an ID number in the exception's message. Logging goes to the root logger
    (``log_config=None``), where caplog sees uvicorn's own records too."""
    app = create_app(Settings(data_dir=tmp_path, dev_idp_enabled=False))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(f"lookup failed for {FAKE_ID}")

    @app.get("/boom-late")
    async def boom_late() -> None:
        raise ValueError(FAKE_ID) from KeyError(FAKE_ID)

    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_config=None,
        log_level="debug",
        loop="asyncio",
        http=CoalescingHttpToolsProtocol,
    )
    with uvicorn_thread(config):
        yield f"http://127.0.0.1:{port}"


def test_an_unhandled_exception_answers_500_and_logs_only_its_type(
    server_with_a_failing_route: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    for path in ("/boom", "/boom-late"):
        resp = httpx.get(server_with_a_failing_route + path, timeout=30)
        assert resp.status_code == 500
        request_id = resp.json()["request_id"]
        assert request_id and resp.json() == GatewayError().body(request_id)
        assert FAKE_ID not in resp.text
    time.sleep(0.2)  # let the server thread finish logging
    out, err = capfd.readouterr()
    assert FAKE_ID not in caplog.text and FAKE_ID not in out and FAKE_ID not in err
    assert "Traceback" not in caplog.text and "Traceback" not in err
    assert all(r.exc_info is None and FAKE_ID not in r.getMessage() for r in caplog.records)
    assert "unhandled error: RuntimeError" in caplog.text  # the type is still logged
    assert "unhandled error: ValueError" in caplog.text


def test_the_trace_log_keeps_no_address_or_token_a_client_sent(tmp_path: Path) -> None:
    """``serve`` at TRACE, the most verbose level the README offers: uvicorn logs each request's ASGI scope
    and messages. It hid bodies and headers but not the path and query string, so a record id (an ID
    number typed into the address), a query parameter or a mistyped path landed in the log verbatim."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "GRASSROOTS_DATA_DIR": str(tmp_path / "var"),
        "GRASSROOTS_DEV_IDP_ENABLED": "true",
        "GRASSROOTS_CHECKPOINT_INTERVAL_S": "0",
        "GRASSROOTS_LOG_LEVEL": "TRACE",
    }
    subprocess.run(
        [sys.executable, "-m", "gateway.cli", "db", "upgrade"], env=env, cwd=tmp_path, check=True, timeout=120
    )
    port, log = free_port(), tmp_path / "serve.log"
    gateway = start_gateway(port=port, env=env, cwd=tmp_path, stderr=log, stdout=log)
    token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLW9mLWEtdG9rZW4"
    try:
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {token}", "User-Agent": f"probe {PHONE}"}
        for path in (
            f"/api/v1/datasets/residents/records/{FAKE_ID}?scenario=DIBAO_REVIEW",
            f"/api/v1/datasets/residents/records?scenario=DIBAO_REVIEW&{PHONE}=1&page_size={FAKE_ID}",
            f"/api/v1/no-such-page/{FAKE_ID}",
        ):
            assert httpx.get(base + path, headers=headers, timeout=30).status_code >= 400
    finally:
        stop(gateway)
    text = log.read_text(encoding="utf-8")
    assert "ASGI [1] Started scope=" in text  # the level still logs each request, its address as a length:
    assert f"'path': '<{len('/api/v1/datasets/residents/records/' + FAKE_ID)} chars>'" in text
    for secret in (FAKE_ID, PHONE, token, token.split(".")[1], token.split(".")[2]):
        assert secret not in text, text


CARD = "6222020000000000018"  # a bank card number (Luhn-valid)
NAME = "慕容秋水"
ADDRESS = "东风村3组12号"


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Path, Path]]:
    """A stack whose gateway logs at TRACE to one file and prints its spans (console exporter) to another."""
    root = tmp_path_factory.mktemp("watched")
    out, err = root / "gateway-stdout.txt", root / "gateway-stderr.txt"
    extra = {"GRASSROOTS_LOG_LEVEL": "TRACE", "GRASSROOTS_OTEL_EXPORTER": "console"}
    gen = stack_fixture("sqlite", tmp_path_factory, extra, gateway_output=out, gateway_errors=err)
    stack = next(gen)
    try:
        yield stack, out, err
    finally:
        gen.close()


def _foreign_token(stack: Stack, **claims: Any) -> str:
    """A well-formed token signed by a key the gateway does not know, for an issuer it does not trust."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    now = int(time.time())
    body = {"iss": "https://idp.elsewhere.example", "aud": "grassroots-gateway", "sub": "u-x", "iat": now}
    return jwt.encode(
        {**body, "exp": now + 600, **claims},
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": "elsewhere-1", "typ": "at+jwt"},
    )


def test_nothing_a_client_planted_reaches_a_log_span_error_or_audit_event(
    watched: tuple[Stack, Path, Path],
) -> None:
    stack, out, err = watched
    before = last_seq(stack)
    planted = f"{NAME} 身份证{FAKE_ID} 手机{PHONE} 银行卡{CARD} 住{ADDRESS}"
    valid = stack.token("cadre_a")
    tampered = valid[:-6] + ("AAAAAA" if not valid.endswith("AAAAAA") else "BBBBBB")
    tokens = [valid, tampered, stack.expired_token("cadre_a"), _foreign_token(stack, sub=FAKE_ID)]
    headers = {
        "User-Agent": f"probe/1.0 {FAKE_ID}",
        "X-Request-Id": FAKE_ID,
        "X-Forwarded-For": PHONE,
        "Referer": f"http://portal.example/?id={FAKE_ID}&card={CARD}",
        "X-Resident": f"{PHONE};{CARD}",
        "Cookie": f"sid={FAKE_ID}",
    }
    reads = [
        f"/api/v1/datasets/residents/records/{FAKE_ID}?scenario=DIBAO_REVIEW",
        f"/api/v1/datasets/residents/records/{CARD}?scenario=DIBAO_REVIEW",
        f"/api/v1/datasets/residents/records?scenario=DIBAO_REVIEW&page_size={CARD}&{PHONE}={NAME}",
        f"/api/v1/datasets/residents/records?scenario={FAKE_ID}&scenario=DIBAO_REVIEW",
        f"/api/v1/datasets/{PHONE}/records?scenario=DIBAO_REVIEW",
        f"/api/v1/grants/{CARD}",
        f"/api/v1/supervision/events?actor={PHONE}&org={CARD}",
        f"/api/v1/no-such-page/{NAME}/{FAKE_ID}",
    ]
    authorizations = [
        *(f"Bearer {token}" for token in tokens),
        f"Bearer {FAKE_ID}",
        f"Bearer {FAKE_ID}.{PHONE}.{CARD}",
        "Basic " + base64.b64encode(f"{FAKE_ID}:{PHONE}".encode()).decode(),
    ]
    answers: list[httpx.Response] = []
    with httpx.Client(base_url=stack.base_url, timeout=60.0) as client:
        for path in reads:
            for authorization in authorizations:
                answers.append(client.get(path, headers={**headers, "Authorization": authorization}))
        bodies = [
            ("cadre_b", "/api/v1/grants", {"scenario": "ELDERLY_VISIT", "reason": planted}),
            ("cadre_b", "/api/v1/grants", {"scenario": "ELDERLY_VISIT", "reason": "走访", PHONE: FAKE_ID}),
            ("supervisor", "/api/v1/supervision/complaints", {"source": "walk_in", "id_number": CARD}),
            ("supervisor", "/api/v1/supervision/complaints", {"source": PHONE, "id_number": FAKE_ID}),
            ("platform_admin", f"/api/v1/users/{FAKE_ID}/revoke-sessions", {"reason": "调离"}),
            ("platform_admin", "/api/v1/users/u-nosuch/revoke-sessions", {"reason": planted}),
            ("platform_admin", "/api/v1/policy/replay", {"permissions": planted}),
            (
                "ca_steward",
                "/api/v1/masking/unmask",
                {"value": FAKE_ID, "dataset": "residents", "field": CARD},
            ),
        ]
        for user, path, body in bodies:
            auth = {"Authorization": f"Bearer {stack.token(user)}"}
            answers.append(client.post(path, json=body, headers={**headers, **auth}))
    # Stopped (this module's only user of the stack): its shutdown exports every span still batched.
    stop(stack.gateway)
    for answer in answers:
        assert answer.status_code >= 400, (answer.request.url, answer.text)
        assert answer.headers["x-request-id"] != FAKE_ID  # the gateway makes its own request ids
    with stack.engine.connect() as conn:
        events = conn.execute(
            sa.text("SELECT body FROM audit_events WHERE seq > :s"), {"s": before}
        ).scalars()
        audit = "\n".join(str(body) for body in events)
    captured = {
        "log": err.read_text(encoding="utf-8"),
        "spans": out.read_text(encoding="utf-8"),
        "answers": "\n".join(f"{a.headers}\n{a.text}" for a in answers),
        "audit events": audit,
    }
    assert "ASGI [" in captured["log"] and '"name": "data_request"' in captured["spans"]
    assert "data.read" in captured["audit events"]  # the scan sees what was recorded
    secrets = [FAKE_ID, PHONE, CARD, NAME, ADDRESS]
    for token in tokens:
        secrets += [token, *token.split(".")[1:]]
    for where, text in captured.items():
        for secret in secrets:
            assert secret not in text, f"{secret[:24]}… in the {where}"


def test_a_failed_span_names_the_exception_type_only() -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from gateway.telemetry import setup_telemetry

    telemetry = setup_telemetry("console", sample_ratio=1.0)
    exporter = InMemorySpanExporter()
    telemetry.provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        with pytest.raises(RuntimeError), telemetry.request_span("data_request"), telemetry.span("mask"):
            raise RuntimeError(f"bad value {FAKE_ID}")
        spans = exporter.get_finished_spans()
        assert sorted(s.name for s in spans) == ["data_request", "mask"]
        for span in spans:
            assert span.status.status_code.name == "ERROR" and span.status.description == "RuntimeError"
            assert not span.events  # no exception event: it would carry the message and the traceback
            assert FAKE_ID not in span.to_json()
    finally:
        telemetry.provider.shutdown()
        telemetry.meter_provider.shutdown()


def test_database_errors_do_not_print_bound_values(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}", pool_size=1)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (v TEXT PRIMARY KEY)"))
            conn.execute(sa.text("INSERT INTO t VALUES (:v)"), {"v": FAKE_ID})
        with pytest.raises(sa.exc.IntegrityError) as caught, engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO t VALUES (:v)"), {"v": FAKE_ID})
        assert FAKE_ID not in str(caught.value)
    finally:
        engine.dispose()


# -- C: 4xx answers do not echo what was sent ------------------------------------------------------


@pytest.mark.parametrize(
    ("loc", "expected"),
    [
        (("body", "datasets", FAKE_ID), "datasets"),
        (("body", "datasets", FAKE_ID, "[key]"), "datasets"),
        (("body", "reason"), "reason"),
        (("body", "items", 3, "note"), "items"),
        (("body", 17), "body"),
        (("query", PHONE), "query"),
        (("body",), "body"),
    ],
)
def test_validation_error_names_only_declared_fields(loc: tuple[Any, ...], expected: str) -> None:
    from gateway.app import field_name

    assert field_name(loc, frozenset({"datasets", "reason", "items", "note"})) == expected


def test_a_dict_key_in_the_body_is_not_echoed(stack: Stack) -> None:
    body = {"scenario": "DIBAO_REVIEW", "datasets": {FAKE_ID: 5}, "reason": "低保复核"}
    out = assert_no_echo(
        call(stack, "POST", "/api/v1/grants", "cadre_a", json=body), 422, "invalid_request", FAKE_ID
    )
    assert out["fields"] == ["datasets"]
    listed = {"scenario": "DIBAO_REVIEW", "datasets": {"residents": [PHONE, 5]}, "reason": "低保复核"}
    out = assert_no_echo(
        call(stack, "POST", "/api/v1/grants", "cadre_a", json=listed), 422, "invalid_request", PHONE
    )
    assert out["fields"] == ["datasets"]


@pytest.mark.parametrize(
    ("body", "status", "offered"),
    [
        ({"scenario": PHONE}, 422, "ELDERLY_VISIT"),
        ({"scenario": "ELDERLY_VISIT", "datasets": {"residents": ["id", PHONE]}}, 422, "birth_date"),
        ({"scenario": "ELDERLY_VISIT", "datasets": {PHONE: ["id"]}}, 403, "residents"),
    ],
)
def test_a_grant_request_lists_what_the_catalog_offers_not_what_was_typed(
    stack: Stack, body: dict[str, Any], status: int, offered: str
) -> None:
    """A mistyped scenario, dataset or field name may be anything (here a phone number): the answer names
    the scenario's own datasets and fields instead, in both languages."""
    resp = call(stack, "POST", "/api/v1/grants", "cadre_c", json={**body, "reason": "高龄老人走访"})
    answer = assert_no_echo(resp, status, resp.json()["error"], PHONE)
    assert offered in answer["message"] and offered in answer["message_en"]


def test_unknown_scenario_is_not_echoed(stack: Stack) -> None:
    resp = call(stack, "GET", f"/api/v1/scenarios/{PHONE}", "cadre_a")
    assert_no_echo(resp, 404, "unknown_scenario", PHONE)


def test_an_unknown_scenario_on_the_data_path_says_where_the_scenarios_are_listed(stack: Stack) -> None:
    # "Choose one of the listed scenarios" left the cadre asking: listed where?
    resp = call(
        stack,
        "GET",
        "/api/v1/datasets/residents/records",
        "cadre_a",
        params={"scenario": "DIBAO_REVEIW", "page_size": 5},
    )
    answer = assert_no_echo(resp, resp.status_code, "unknown_scenario", "DIBAO_REVEIW")
    assert resp.status_code in (403, 404)
    assert "/api/v1/scenarios" in answer["message"] and "grants scenarios" in answer["message_en"]


def test_unknown_dataset_is_not_echoed(stack: Stack) -> None:
    resp = call(stack, "GET", "/api/v1/masking/catalog", "ca_steward", params={"dataset": PHONE})
    body = assert_no_echo(resp, 404, "unknown_dataset", PHONE)
    assert "residents" in body["datasets"]  # the valid choices instead


@pytest.mark.parametrize(
    "params",
    [
        {"rule": PHONE},
        {"setting": f"{PHONE}.min_records=1"},
        {"setting": f"bulk_reading.{PHONE}=1"},
        {"setting": f"bulk_reading.min_records={PHONE}x"},
    ],
)
def test_anomaly_rule_and_setting_are_not_echoed(stack: Stack, params: dict[str, str]) -> None:
    resp = call(stack, "GET", "/api/v1/supervision/anomalies", "supervisor", params=params)
    body = assert_no_echo(resp, 422, "bad_rule", PHONE)
    assert "bulk_reading" in body["message_en"]  # the valid rule names instead
    assert body["rules"]["bulk_reading"]["min_records"] == 500  # what the message points to is there


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("bulk_reading.min_records=-1", "bulk_reading.min_records 的取值应为：不小于 1 的整数"),
        ("off_hours.night_start_hour=30", "off_hours.night_start_hour 的取值应为：0 到 24 之间的整数"),
        ("refusal_spike.min_ratio=2", "refusal_spike.min_ratio 的取值应为：0 到 1 之间的数"),
        (
            "bulk_reading.min_record=5",
            "规则 bulk_reading 没有这个设置项，可设置：enabled、window_minutes、min_records",
        ),
    ],
)
def test_a_bad_anomaly_setting_says_which_part_is_wrong(stack: Stack, setting: str, says: str) -> None:
    """Not one catch-all sentence for every mistake: the key (a name the rules define) and what it takes."""
    resp = call(stack, "GET", "/api/v1/supervision/anomalies", "supervisor", params={"setting": setting})
    body = assert_no_echo(resp, 422, "bad_rule")
    assert says in body["message"], body["message"]


_MODEL = (REPO / "policies" / "model.conf").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "proposed",
    [
        {"permissions": f"{FAKE_ID},{PHONE},张三\n"},  # a resident list pasted as the permissions
        {"permissions": f"p, {FAKE_ID}, audit, read\n"},
        {"permissions": f"p, village_cadre, dataset:{PHONE}x, read\n"},
        {"permissions": f"p, village_cadre, {PHONE}, read\n"},
        {"permissions": f"p, village_cadre, dataset:residents, {PHONE}\n"},
        {"permissions": f"g, village_cadre, r{PHONE}\n"},
        {"model": _MODEL.replace("r = sub, obj, act", f"张三 {FAKE_ID} {PHONE}")},
        {"model": _MODEL.replace("r = sub, obj, act", f"r{PHONE} = sub, obj, act")},
        {"model": _MODEL.replace("r = sub, obj, act", f"r = sub, obj, {PHONE}")},
        {"model": _MODEL.replace("[request_definition]", f"[request_definition {FAKE_ID}")},
        {"model": _MODEL.replace("p.eft == allow", f"p.eft == allow{PHONE}")},
        {"model": _MODEL.replace("r.act == p.act", f"r.act == p.act && x{PHONE}")},
        {"scenarios": f'[datasets."{FAKE_ID}"]\nname_zh = "x"\n'},
        {"scenarios": f'[scenarios.S{PHONE}]\nname_zh = "x"\n'},
        {"scenarios": f"[scenarios.DIBAO_REVIEW]\nx{PHONE} = 1\n"},
    ],
)
def test_a_proposed_policy_file_is_not_echoed(stack: Stack, proposed: dict[str, str]) -> None:
    """The answer names the file and the line (and the allowed names), never what stands there: a value
    that is not a plain name (a role, a resource, an action, a key) is not shown."""
    resp = call(stack, "POST", "/api/v1/policy/replay", "platform_admin", json={"days": 1, **proposed})
    body = assert_no_echo(resp, 422, "policy_file_invalid", FAKE_ID, PHONE, "张三")
    assert body["line"] >= 0 and body["file"].split(".")[0] in proposed


def test_a_mistyped_name_in_a_proposed_policy_file_is_still_named(stack: Stack) -> None:
    resp = call(
        stack,
        "POST",
        "/api/v1/policy/replay",
        "platform_admin",
        json={"days": 1, "permissions": "p, village_cadre, dataset:residents, verfy\n"},
    )
    body = assert_no_echo(resp, 422, "policy_file_invalid")
    assert "'verfy'" in body["message"] and "'verfy'" in body["message_en"]


def test_unknown_admission_system_is_not_echoed(stack: Stack) -> None:
    resp = call(stack, "GET", f"/api/v1/admission/systems/{PHONE}", "ca_sysadmin")
    assert_no_echo(resp, 404, "system_not_found", PHONE)


@pytest.mark.parametrize(
    ("value", "extra"),
    [
        ("enc:vX13812345678:k1:" + "A" * 40, {}),
        ("enc:v1:nosuch-key-7f3a9c:" + base64.urlsafe_b64encode(bytes(40)).decode().rstrip("="), {}),
        ("110101199003070011", {"method": "ff1_id", "key_id": "nosuch-key-7f3a9c"}),
    ],
)
def test_unmask_errors_do_not_echo_the_submitted_value(
    stack: Stack, value: str, extra: dict[str, str]
) -> None:
    ask = {
        "value": value,
        "dataset": "residents",
        "field": "id_number",
        "purpose": "低保复核中核实户主身份",
        **extra,
    }
    resp = call(stack, "POST", "/api/v1/masking/unmask", "ca_steward", json=ask)
    assert resp.status_code == 422, resp.text
    for secret in ("vX13812345678", PHONE, "nosuch-key-7f3a9c"):
        assert secret not in resp.text, resp.text


def test_request_ids_never_hold_a_run_of_digits_a_scanner_would_take_for_a_phone_or_id_number() -> None:
    """A request id is in every answer: 32 unbroken hex digits held an 11-digit run like 17778852924 once
    in a few hundred ids, which scanners (ours in these tests, a department's DLP) take for a mobile."""
    ids = [_request_ids.next() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{8}(?:-[0-9a-f]{8}){3}", i) for i in ids)
    assert not any(re.search(r"\d{9}", i) for i in ids)
