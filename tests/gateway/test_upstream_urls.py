"""The upstream client's requests, against a real aiohttp server on loopback: the cached list URL asks
for exactly what aiohttp's ``params=`` asked for, and no cookie travels from one request to the next."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.errors import GatewayError
from gateway.upstream import MAX_RESPONSE_BYTES, ServiceTokenSigner, UpstreamClient, UpstreamTarget

# (org prefixes, grids, page, page_size): division codes, grid codes, and characters a query must quote.
CASES = [
    (("310151101201",), (), 1, 20),
    (("310151101201", "310151101202"), ("310151101201-G01",), 3, 50),
    (("31 01&x=1",), ("中文/?#%",), 2, 5),
    ((), (), 1, 1),
]


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[str]]]:
    seen: list[str] = []

    async def records(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.json_response({"items": [{"id": "R1"}], "next_page": None})

    async def record(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        # Answers with a session cookie, and reports any cookie the caller sent.
        resp = web.json_response({"id": request.match_info["rid"], "cookie": request.headers.get("Cookie")})
        resp.set_cookie("SESSION", f"for-{request.match_info['rid']}", path="/")
        return resp

    app = web.Application()
    app.router.add_get("/api/residents", records)
    app.router.add_get("/api/residents/{rid}", record)

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.json_response({"id": "not-a-record-path"})

    app.router.add_get("/{tail:.*}", elsewhere)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/", seen
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("orgs", "grids", "page", "page_size"), CASES)
async def test_list_url_is_the_request_line_aiohttp_builds_from_params(
    server: tuple[str, list[str]], orgs: tuple[str, ...], grids: tuple[str, ...], page: int, page_size: int
) -> None:
    base_url, seen = server
    target = UpstreamTarget(system_id="reg", base_url=base_url, path="/api/residents")
    client = UpstreamClient(ServiceTokenSigner(Ed25519PrivateKey.generate()))
    try:
        for _ in range(2):  # built, then taken from the cache
            await client.list_records(target, org_prefixes=orgs, grids=grids, page=page, page_size=page_size)
    finally:
        await client.close()
    params = [("org_prefix", p) for p in orgs] + [("grid", g) for g in grids]
    params += [("page", str(page)), ("page_size", str(page_size))]
    url = base_url.rstrip("/") + "/api/residents"
    async with aiohttp.ClientSession() as session, session.get(url, params=params) as resp:
        assert resp.status == 200
    assert seen[0] == seen[1] == seen[2]


async def test_a_cookie_set_for_one_request_never_goes_back_with_another(
    server: tuple[str, list[str]],
) -> None:
    base_url, _ = server
    # By host name: aiohttp's default jar ignores cookies from bare IP addresses, and a real departmental
    # system has a name.
    base_url = base_url.replace("127.0.0.1", "localhost")
    target = UpstreamTarget(system_id="reg", base_url=base_url, path="/api/residents")
    client = UpstreamClient(ServiceTokenSigner(Ed25519PrivateKey.generate()))
    try:
        first = await client.get_record(target, "R1", org_prefixes=("310151101201",), grids=())
        second = await client.get_record(target, "R2", org_prefixes=("310151101202",), grids=())
    finally:
        await client.close()
    assert first is not None and second is not None
    assert first["cookie"] is None and second["cookie"] is None


@pytest.mark.parametrize("record_id", [".", "..", "a/../..", "x?page=1", "%2e%2e"])
async def test_a_record_id_is_one_path_segment_and_never_another_path(
    server: tuple[str, list[str]], record_id: str
) -> None:
    base_url, seen = server
    target = UpstreamTarget(system_id="reg", base_url=base_url, path="/api/residents")
    client = UpstreamClient(ServiceTokenSigner(Ed25519PrivateKey.generate()))
    try:
        # What comes back is not this test's concern (another record, an id no reader could open: both
        # refused); what was asked for is.
        with contextlib.suppress(GatewayError):
            await client.get_record(target, record_id, org_prefixes=("310151101201",))
    finally:
        await client.close()
    # Dot segments ask for nothing; anything else is one percent-encoded segment under the collection.
    assert all(path.startswith("/api/residents/") and path.count("/") == 3 and path[15:] for path in seen), (
        seen
    )


ID_NUMBER = "110101199003077777"


@contextlib.asynccontextmanager
async def _registry(app: web.Application) -> AsyncIterator[tuple[UpstreamTarget, UpstreamClient]]:
    """``app`` served on loopback as a departmental system offering the record-id lookup, and a client."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    target = UpstreamTarget(
        "reg", base_url, "/api/residents", credential="gk_x", lookup_path="/api/residents/lookup"
    )
    client = UpstreamClient(ServiceTokenSigner(Ed25519PrivateKey.generate()))
    try:
        yield target, client
    finally:
        await client.close()
        await runner.cleanup()


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"ids": ["R2", "R1", "R2"]}, ["R2", "R1"]),
        ({"ids": []}, []),
        ({"ids": "R1"}, "upstream_bad_response"),
        ({"ids": [1]}, "upstream_bad_response"),
        ({"ids": ["R"] * 1001}, "upstream_bad_response"),
        ([], "upstream_bad_response"),
        (503, "upstream_bad_response"),
        (401, "upstream_credential_refused"),
        (404, None),
    ],
)
async def test_the_record_id_lookup_posts_the_id_number_in_the_body_only(
    answer: object, expected: object
) -> None:
    """Same token and credential as the data path; the ID number never in the request line; ids checked."""
    seen: list[tuple[str, str, str | None, str | None]] = []

    async def lookup(request: web.Request) -> web.Response:
        seen.append(
            (
                request.raw_path,
                await request.text(),
                request.headers.get("Authorization"),
                request.headers.get("X-Api-Key"),
            )
        )
        return web.Response(status=answer) if isinstance(answer, int) else web.json_response(answer)

    app = web.Application()
    app.router.add_post("/api/residents/lookup", lookup)
    async with _registry(app) as (target, client):
        try:
            result: object = await client.lookup_record_ids(target, ID_NUMBER, org_prefixes=("310151",))
        except GatewayError as exc:
            result = exc.code
        assert (
            await client.lookup_record_ids(
                UpstreamTarget("reg", target.base_url, "/api/residents"), ID_NUMBER, org_prefixes=("310151",)
            )
            is None
        )  # a dataset whose system declares no lookup is not asked
    assert result == expected
    [(path, body, authorization, key)] = seen
    assert path == "/api/residents/lookup?org_prefix=310151" and ID_NUMBER not in path
    assert json.loads(body) == {"id_number": ID_NUMBER}
    assert authorization is not None and authorization.startswith("Bearer ") and key == "gk_x"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_a_bad_answer_and_nothing_follows_it(status: int) -> None:
    """A departmental system (or whatever answers at its address: an open redirect, a proxy) answering
    with a redirect to another host used to be followed: the outbound credential went along, a 307/308
    re-posted the lookup's ID number there, and that host's answer was served as the system's."""
    elsewhere: list[tuple[str, str | None, str]] = []

    async def redirect(request: web.Request) -> web.Response:
        # Another origin ("localhost", not "127.0.0.1"): the host a Location can name is anyone's.
        location = f"http://localhost:{request.url.port}/collect"
        return web.Response(status=status, headers={"Location": location})

    async def collect(request: web.Request) -> web.Response:
        elsewhere.append((request.method, request.headers.get("X-Api-Key"), await request.text()))
        return web.json_response({"ids": ["R1"], "items": [{"id": "R1"}], "next_page": None})

    app = web.Application()
    app.router.add_route("*", "/collect", collect)
    app.router.add_route("*", "/{tail:.*}", redirect)
    codes: list[str] = []
    async with _registry(app) as (target, client):
        for call in (
            client.list_records(target, org_prefixes=("310151",), page=1, page_size=5),
            client.get_record(target, "R1", org_prefixes=("310151",)),
            client.lookup_record_ids(target, ID_NUMBER, org_prefixes=("310151",)),
        ):
            with pytest.raises(GatewayError) as caught:
                await call
            codes.append(caught.value.code)
            # Said as what it is (the registered address is wrong), not "failed, retry later".
            assert f"转向了另一个地址（HTTP {status}）" in caught.value.message_zh
            assert "重试也不会解决" in caught.value.message_zh and "稍后重试" not in caught.value.message_zh
            assert "retrying will not help" in caught.value.message_en
    assert codes == ["upstream_bad_response"] * 3
    assert elsewhere == []


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_an_answer_larger_than_the_limit_is_a_bad_answer_and_is_not_read_whole(chunked: bool) -> None:
    """A departmental system (or whatever answers at its address) answering a page of many megabytes used
    to be read whole into memory and parsed, for every request in flight: now past MAX_RESPONSE_BYTES it is
    a bad answer (502, no data), and a chunked body is read no further than the limit."""
    record = {"id": "R1", "name": "x" * 1000, "village_code": "310151101201"}
    records = [record] * (MAX_RESPONSE_BYTES // 1000 + 16)  # just over the limit, valid JSON throughout
    payload = json.dumps({"items": records, "next_page": None}).encode()
    assert len(payload) > MAX_RESPONSE_BYTES

    async def records_page(request: web.Request) -> web.StreamResponse:
        if not chunked:
            return web.Response(body=payload, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        step = 256 * 1024
        for at in range(0, len(payload), step):
            await response.write(payload[at : at + step])
        # The rest of an endless answer: the client must have stopped reading long before.
        with contextlib.suppress(ConnectionResetError):
            for _ in range(64):
                await response.write(b" " * step)
        return response

    app = web.Application()
    app.router.add_get("/api/residents", records_page)
    async with _registry(app) as (target, client):
        with pytest.raises(GatewayError) as caught:
            await client.list_records(target, org_prefixes=("310151",), page=1, page_size=100)
    assert caught.value.code == "upstream_bad_response"
    assert caught.value.status_code == 502


async def test_an_answer_within_the_limit_is_read_as_before() -> None:
    """The limit leaves every legitimate page alone: a full page of 100 long records, chunked or not."""
    record = {"id": "R1", "remark": "备注" * 2000, "village_code": "310151101201"}
    answer = {"items": [{**record, "id": f"R{n}"} for n in range(100)], "next_page": 2}

    async def records_page(request: web.Request) -> web.Response:
        return web.json_response(answer)

    app = web.Application()
    app.router.add_get("/api/residents", records_page)
    async with _registry(app) as (target, client):
        page = await client.list_records(target, org_prefixes=("310151",), page=1, page_size=100)
    assert page.items == answer["items"] and page.next_page == 2


async def test_a_system_failing_every_call_is_one_log_line_a_minute_not_one_per_call(
    server: tuple[str, list[str]], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A departmental system down under load fails every request: one warning each (hundreds a second)
    buried the operators' log. Now the first failure of a kind is logged at once, then one line a minute
    with how many more there were; the metric and the audit log still count each one."""
    import logging

    from gateway import upstream

    base_url, _ = server
    target = UpstreamTarget(system_id="reg", base_url=base_url, path="/api/no-such-collection")
    client = UpstreamClient(ServiceTokenSigner(Ed25519PrivateKey.generate()))
    caplog.set_level(logging.WARNING, logger="gateway.upstream")

    async def fail_n(n: int) -> None:
        for _ in range(n):
            with pytest.raises(GatewayError):
                await client.list_records(
                    target, org_prefixes=["310151101201"], grids=[], page=1, page_size=5
                )

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if "departmental system reg" in r.getMessage()]

    try:
        await fail_n(50)
        assert len(lines()) == 1, lines()
        assert "departmental system reg failed a list call: bad_shape" in lines()[0], lines()
        monkeypatch.setattr(upstream, "FAILURE_LOG_REPEAT_S", 0.0)  # a minute has passed
        await fail_n(1)
        assert len(lines()) == 2
        assert "(49 more such failures in the last" in lines()[1], lines()[1]
    finally:
        await client.close()
