"""The civil-affairs registry as its own process over loopback: who it serves, what, and how it fails."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from demoworld.civil_affairs import seed_database
from demoworld.departmental import open_database
from demoworld.world import World, build_world
from tests.demoworld._support import bearer, mint, new_gateway_key, public_pem
from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]
GATEWAY_KEY = new_gateway_key()
STRANGER_KEY = new_gateway_key()
FAULTS = ("none", "error", "garbage", "out_of_scope", "drop", "slow")
SLOW_SECONDS = 3.0
STARTUP_DEADLINE_SECONDS = 60.0


@dataclass
class Upstream:
    process: subprocess.Popen[bytes]
    base_url: str


def _wait_healthy(upstream: Upstream, deadline: float) -> None:
    while time.monotonic() < deadline:
        if upstream.process.poll() is not None:
            stderr = upstream.process.stderr.read().decode() if upstream.process.stderr else ""
            raise RuntimeError(f"registry exited early: {stderr[-2000:]}")
        try:
            if httpx.get(f"{upstream.base_url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("registry did not become healthy in time")


@pytest.fixture(scope="module")
def world() -> World:
    return build_world()


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Upstream]]:
    """One registry process per fault mode, all over one seeded database, started side by side."""
    workdir = tmp_path_factory.mktemp("civil_affairs")
    db = workdir / "civil_affairs.db"
    engine = open_database(db)
    seed_database(engine)
    engine.dispose()
    key_file = workdir / "gateway.pub.pem"
    key_file.write_bytes(public_pem(GATEWAY_KEY))
    running: dict[str, Upstream] = {}
    try:
        for fault in FAULTS:
            port = free_port()
            command = [
                sys.executable, "-m", "demoworld.civil_affairs",
                "--host", "127.0.0.1", "--port", str(port), "--db", str(db),
                "--gateway-public-key", str(key_file), "--fault", fault, "--slow-seconds", str(SLOW_SECONDS),
            ]  # fmt: skip
            process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            running[fault] = Upstream(process, f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
        for upstream in running.values():
            _wait_healthy(upstream, deadline)
        yield running
    finally:
        for upstream in running.values():
            upstream.process.terminate()
        for upstream in running.values():
            try:
                upstream.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                upstream.process.kill()
                upstream.process.wait()


@pytest.fixture
def registry(upstreams: dict[str, Upstream]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=upstreams["none"].base_url, timeout=10.0) as client:
        yield client


def _faulty(upstreams: dict[str, Upstream], fault: str, timeout: float = 10.0) -> httpx.Client:
    return httpx.Client(base_url=upstreams[fault].base_url, timeout=timeout)


def _token() -> dict[str, str]:
    return bearer(mint(GATEWAY_KEY))


def _without_request_id(body: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in body.items() if k != "request_id"}


def _all_pages(
    client: httpx.Client, params: dict[str, str | list[str]], page_size: int
) -> list[dict[str, str]]:
    items: list[dict[str, str]] = []
    page: int | None = 1
    while page is not None:
        body = client.get(
            "/residents", params={**params, "page": page, "page_size": page_size}, headers=_token()
        )
        assert body.status_code == 200
        items.extend(body.json()["items"])
        page = body.json()["next_page"]
    return items


# --- authentication --------------------------------------------------------------------------------------

UNAUTHENTICATED = [
    ("no token", {}),
    ("not a bearer token", {"Authorization": "Basic Z2F0ZXdheTpwdw=="}),
    ("garbage token", bearer("eyJhbGciOiJFZERTQSJ9.e30.AAAA")),
    ("signed by a stranger", bearer(mint(STRANGER_KEY))),
    ("wrong audience", bearer(mint(GATEWAY_KEY, aud="population-registry"))),
    ("wrong issuer", bearer(mint(GATEWAY_KEY, iss="someone-else"))),
]


@pytest.mark.parametrize(("case", "headers"), UNAUTHENTICATED, ids=[c for c, _ in UNAUTHENTICATED])
@pytest.mark.parametrize("path", ["/residents", "/residents/R00000000"])
def test_unauthenticated_calls_get_401(
    registry: httpx.Client, case: str, headers: dict[str, str], path: str
) -> None:
    response = registry.get(path, params={"org_prefix": "310151101201"}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert (
        body["error"] == "unauthorized" and body["message_zh"] and body["message_en"] and body["request_id"]
    )
    token = headers.get("Authorization", "").removeprefix("Bearer ")
    assert not token or token not in response.text


def test_authentication_comes_before_parameter_checks(registry: httpx.Client) -> None:
    response = registry.get("/residents", params={"org_prefix": "310151101201", "page_size": 999})
    assert response.status_code == 401


def test_health_needs_no_token(registry: httpx.Client) -> None:
    assert registry.get("/healthz").json() == {"status": "ok"}


# --- jurisdiction pushed down ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("org_prefix", "villages"),
    [
        (["310151101201"], {"310151101201"}),
        (["310151101202"], {"310151101202"}),
        (["310151101000"], {"310151101001", "310151101201", "310151101202", "310151101203"}),
        (["310151101"], {"310151101001", "310151101201", "310151101202", "310151101203"}),
        (["310151101201", "310151102201"], {"310151101201", "310151102201"}),
    ],
)
def test_a_scoped_list_returns_exactly_the_residents_inside_the_scope(
    registry: httpx.Client, world: World, org_prefix: list[str], villages: set[str]
) -> None:
    items = _all_pages(registry, {"org_prefix": org_prefix}, page_size=17)
    expected = sorted(r.id for r in world.residents if r.village_code in villages)
    assert [item["id"] for item in items] == expected
    assert {item["village_code"] for item in items} == villages


def test_list_pages_carry_total_and_next_page(registry: httpx.Client, world: World) -> None:
    total = len(world.residents_of(world.village_a))
    first = registry.get(
        "/residents", params={"org_prefix": world.village_a, "page": 1, "page_size": 10}, headers=_token()
    ).json()
    assert (first["total"], first["next_page"], len(first["items"])) == (total, 2, 10)
    last_page = (total + 9) // 10
    last = registry.get(
        "/residents",
        params={"org_prefix": world.village_a, "page": last_page, "page_size": 10},
        headers=_token(),
    ).json()
    assert last["next_page"] is None and len(last["items"]) == total - 10 * (last_page - 1)


def test_a_record_carries_every_registry_field(registry: httpx.Client, world: World) -> None:
    resident = world.residents_of(world.village_a)[0]
    response = registry.get(
        f"/residents/{resident.id}", params={"org_prefix": world.village_a}, headers=_token()
    )
    assert response.status_code == 200
    assert response.json() == resident.to_dict()


def test_a_neighbouring_villages_record_answers_404_like_a_missing_one(
    registry: httpx.Client, world: World
) -> None:
    neighbour = world.residents_of(world.village_b)[0]
    outside = registry.get(
        f"/residents/{neighbour.id}", params={"org_prefix": world.village_a}, headers=_token()
    )
    missing = registry.get("/residents/R00000000", params={"org_prefix": world.village_a}, headers=_token())
    assert outside.status_code == missing.status_code == 404
    assert _without_request_id(outside.json()) == _without_request_id(missing.json())
    inside = registry.get(
        f"/residents/{neighbour.id}", params={"org_prefix": world.village_b}, headers=_token()
    )
    assert inside.status_code == 200


@pytest.mark.parametrize("path", ["/residents", "/residents/R00000000"])
@pytest.mark.parametrize("params", [{}, {"org_prefix": ""}, {"org_prefix": "31015110120x"}])
def test_unscoped_or_malformed_scope_answers_400(
    registry: httpx.Client, path: str, params: dict[str, str]
) -> None:
    response = registry.get(path, params=params, headers=_token())
    assert response.status_code == 400
    assert response.json()["error"] == "scope_required"


@pytest.mark.parametrize("params", [{"page_size": "201"}, {"page_size": "0"}, {"page": "0"}])
def test_out_of_range_paging_answers_422(registry: httpx.Client, params: dict[str, str]) -> None:
    response = registry.get("/residents", params={"org_prefix": "310151101201", **params}, headers=_token())
    assert response.status_code == 422
    assert set(response.json()) >= {"error", "message_zh", "message_en", "request_id"}


# --- fault modes -----------------------------------------------------------------------------------------


def test_fault_error_answers_500(upstreams: dict[str, Upstream]) -> None:
    with _faulty(upstreams, "error") as client:
        response = client.get("/residents", params={"org_prefix": "310151101201"}, headers=_token())
    assert response.status_code == 500


def test_fault_garbage_answers_200_with_a_body_that_is_not_json(upstreams: dict[str, Upstream]) -> None:
    with _faulty(upstreams, "garbage") as client:
        response = client.get("/residents", params={"org_prefix": "310151101201"}, headers=_token())
    assert response.status_code == 200
    with pytest.raises(ValueError):
        json.loads(response.content)


def test_fault_out_of_scope_leaks_other_villages(upstreams: dict[str, Upstream], world: World) -> None:
    with _faulty(upstreams, "out_of_scope") as client:
        listed = _all_pages(client, {"org_prefix": world.village_a}, page_size=200)
        neighbour = world.residents_of(world.village_b)[0]
        single = client.get(
            f"/residents/{neighbour.id}", params={"org_prefix": world.village_a}, headers=_token()
        )
    assert {item["village_code"] for item in listed} - {world.village_a}
    assert single.status_code == 200


def test_fault_drop_closes_the_connection_without_an_answer(upstreams: dict[str, Upstream]) -> None:
    with _faulty(upstreams, "drop") as client:
        assert client.get("/healthz").status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/residents", params={"org_prefix": "310151101201"}, headers=_token())


def test_fault_slow_outlasts_a_short_client_timeout(upstreams: dict[str, Upstream]) -> None:
    with _faulty(upstreams, "slow", timeout=0.5) as client:
        assert client.get("/healthz").status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            client.get("/residents", params={"org_prefix": "310151101201"}, headers=_token())


@pytest.mark.parametrize("fault", ["error", "garbage", "out_of_scope", "slow"])
def test_faulty_registries_still_refuse_strangers(upstreams: dict[str, Upstream], fault: str) -> None:
    with _faulty(upstreams, fault) as client:
        response = client.get("/residents", params={"org_prefix": "310151101201"})
    assert response.status_code == 401


# --- the record-id lookup (a complaint's evidence) -------------------------------------------------------


def test_lookup_answers_the_ids_of_the_persons_records_inside_the_scope_and_nothing_else(
    registry: httpx.Client, world: World
) -> None:
    resident = world.residents_of(world.village_a)[0]
    body = {"id_number": resident.id_number.lower()}  # a lower-case check character is the same number

    def lookup(org_prefix: str) -> httpx.Response:
        return registry.post(
            "/residents/lookup", params={"org_prefix": org_prefix}, json=body, headers=_token()
        )

    assert lookup(world.village_a).json() == {"ids": [resident.id]}
    assert lookup("310151").json() == {"ids": [resident.id]}
    assert lookup(world.village_b).json() == {"ids": []}  # outside the scope: like nobody's
    assert resident.id_number not in str(lookup(world.village_a).request.url)  # in the body, never the URL
    unknown = registry.post(
        "/residents/lookup", params={"org_prefix": "310151"}, json={"id_number": "110101190001011009"},
        headers=_token(),
    )  # fmt: skip
    assert unknown.json() == {"ids": []}


@pytest.mark.parametrize(
    ("params", "headers", "status"),
    [({"org_prefix": "310151"}, {}, 401), ({}, None, 400), ({"org_prefix": "31015x"}, None, 400)],
)
def test_lookup_needs_the_gateways_token_and_a_scope(
    registry: httpx.Client, world: World, params: dict[str, str], headers: dict[str, str] | None, status: int
) -> None:
    response = registry.post(
        "/residents/lookup",
        params=params,
        json={"id_number": world.residents[0].id_number},
        headers=_token() if headers is None else headers,
    )
    assert response.status_code == status
    assert world.residents[0].id_number not in response.text


def test_lookup_fails_by_the_fault_modes_too(upstreams: dict[str, Upstream], world: World) -> None:
    body = {"id_number": world.residents[0].id_number}
    with _faulty(upstreams, "error") as client:
        response = client.post(
            "/residents/lookup", params={"org_prefix": "310151"}, json=body, headers=_token()
        )
        assert response.status_code == 500
    with _faulty(upstreams, "drop") as client, pytest.raises(httpx.RemoteProtocolError):
        client.post("/residents/lookup", params={"org_prefix": "310151"}, json=body, headers=_token())
