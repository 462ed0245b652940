"""The person-house registry (一标三实) as its own process over loopback: who it serves, what, and how it
fails. The same contract as the civil-affairs registry, plus the micro-grid filter."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from demoworld.departmental import open_database
from demoworld.person_house import REGISTRY_AUDIENCE, seed_database
from demoworld.world import World, build_world
from tests.demoworld._support import bearer, mint, new_gateway_key, public_pem
from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]
GATEWAY_KEY = new_gateway_key()
FAULTS = ("none", "out_of_grid", "out_of_scope", "error", "garbage", "drop")
STARTUP_DEADLINE_SECONDS = 60.0
WORLD: World = build_world()
A = WORLD.village_a
G01, G02, G03 = f"{A}-G01", f"{A}-G02", f"{A}-G03"


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One registry process per fault mode over one seeded database; fault -> base URL."""
    workdir = tmp_path_factory.mktemp("person_house")
    db = workdir / "person_house.db"
    engine = open_database(db)
    counts = seed_database(engine)
    engine.dispose()
    assert counts["houses"] == len(WORLD.houses) and counts["occupants"] == len(WORLD.occupants)
    key_file = workdir / "gateway.pub.pem"
    key_file.write_bytes(public_pem(GATEWAY_KEY))
    running: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        for fault in FAULTS:
            port = free_port()
            command = [
                sys.executable, "-m", "demoworld.person_house",
                "--host", "127.0.0.1", "--port", str(port), "--db", str(db),
                "--gateway-public-key", str(key_file), "--fault", fault,
            ]  # fmt: skip
            process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            running[fault] = (process, f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
        for process, url in running.values():
            while True:
                if process.poll() is not None:
                    stderr = process.stderr.read().decode() if process.stderr else ""
                    raise RuntimeError(f"registry exited early: {stderr[-2000:]}")
                try:
                    if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("registry did not become healthy in time")
                time.sleep(0.1)
        yield {fault: url for fault, (_, url) in running.items()}
    finally:
        for process, _ in running.values():
            process.terminate()
        for process, _ in running.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _token(**claims: object) -> dict[str, str]:
    return bearer(mint(GATEWAY_KEY, aud=REGISTRY_AUDIENCE, **claims))


def _all(url: str, collection: str, params: dict[str, str | list[str]]) -> list[dict[str, str]]:
    items: list[dict[str, str]] = []
    page: int | None = 1
    while page is not None:
        response = httpx.get(
            f"{url}/{collection}", params={**params, "page": page, "page_size": 7}, headers=_token()
        )
        assert response.status_code == 200, response.text
        items += response.json()["items"]
        page = response.json()["next_page"]
    return items


# --- authentication --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "headers"),
    [
        ("no token", {}),
        ("a token for the civil-affairs registry", bearer(mint(GATEWAY_KEY))),
        ("signed by a stranger", bearer(mint(new_gateway_key(), aud=REGISTRY_AUDIENCE))),
    ],
)
@pytest.mark.parametrize("path", ["/houses", "/occupants", "/houses/H00000000"])
def test_only_the_gateways_token_for_this_system_is_accepted(
    registries: dict[str, str], case: str, headers: dict[str, str], path: str
) -> None:
    response = httpx.get(f"{registries['none']}{path}", params={"org_prefix": A}, headers=headers)
    assert response.status_code == 401
    assert 'realm="person-house-registry"' in response.headers["www-authenticate"]


# --- scope pushed down -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "grids"),
    [
        ({"org_prefix": A}, {G01, G02, G03}),
        ({"org_prefix": A, "grid": [G01, G02]}, {G01, G02}),
        ({"org_prefix": A, "grid": [G03]}, {G03}),
        ({"org_prefix": WORLD.village_b, "grid": [G01]}, set()),
    ],
)
@pytest.mark.parametrize("collection", ["houses", "occupants"])
def test_lists_hold_exactly_the_rows_of_the_pushed_down_scope(
    registries: dict[str, str], collection: str, params: dict[str, str | list[str]], grids: set[str]
) -> None:
    items = _all(registries["none"], collection, params)
    source = WORLD.houses_in(grids) if collection == "houses" else WORLD.occupants_in(grids)
    assert [i["id"] for i in items] == sorted(r.id for r in source)
    assert items == sorted((r.to_dict() for r in source), key=lambda r: r["id"])


def test_a_house_of_another_grid_of_the_same_village_answers_404_like_a_missing_one(
    registries: dict[str, str],
) -> None:
    url = registries["none"]
    other = WORLD.houses_in([G03])[0]
    outside = httpx.get(f"{url}/houses/{other.id}", params={"org_prefix": A, "grid": G01}, headers=_token())
    missing = httpx.get(f"{url}/houses/H00000000", params={"org_prefix": A, "grid": G01}, headers=_token())
    assert outside.status_code == missing.status_code == 404
    assert {k: v for k, v in outside.json().items() if k != "request_id"} == {
        k: v for k, v in missing.json().items() if k != "request_id"
    }
    inside = httpx.get(f"{url}/houses/{other.id}", params={"org_prefix": A, "grid": G03}, headers=_token())
    assert inside.status_code == 200 and inside.json() == other.to_dict()


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        ({}, 400, "scope_required"),
        ({"grid": G01}, 400, "scope_required"),  # a grid never stands in for the jurisdiction
        ({"org_prefix": A, "grid": f"{A}-G1"}, 400, "grid_invalid"),
        ({"org_prefix": A, "grid": A}, 400, "grid_invalid"),
        ({"org_prefix": A, "page_size": "201"}, 422, "invalid_request"),
    ],
)
def test_unscoped_or_malformed_requests_are_refused(
    registries: dict[str, str], params: dict[str, str], status: int, error: str
) -> None:
    response = httpx.get(f"{registries['none']}/houses", params=params, headers=_token())
    assert response.status_code == status
    body = response.json()
    assert body["error"] == error and body["message_zh"] and body["message_en"] and body["request_id"]


# --- fault modes -----------------------------------------------------------------------------------------


def test_fault_out_of_grid_honours_the_village_but_not_the_grid(registries: dict[str, str]) -> None:
    items = _all(registries["out_of_grid"], "houses", {"org_prefix": A, "grid": [G01]})
    assert {i["village_code"] for i in items} == {A}
    assert {i["grid_code"] for i in items} == {G01, G02, G03}


def test_fault_out_of_scope_ignores_both_filters(registries: dict[str, str]) -> None:
    items = _all(registries["out_of_scope"], "occupants", {"org_prefix": A, "grid": [G01]})
    assert len(items) == len(WORLD.occupants)


def test_fault_error_garbage_and_drop(registries: dict[str, str]) -> None:
    params = {"org_prefix": A}
    assert httpx.get(f"{registries['error']}/houses", params=params, headers=_token()).status_code == 500
    garbage = httpx.get(f"{registries['garbage']}/houses", params=params, headers=_token())
    assert garbage.status_code == 200
    with pytest.raises(ValueError):
        json.loads(garbage.content)
    with httpx.Client(base_url=registries["drop"], timeout=10.0) as client:
        assert client.get("/healthz").status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/occupants", params=params, headers=_token())


@pytest.mark.parametrize(("collection", "field"), [("houses", "owner_id_number"), ("occupants", "id_number")])
def test_lookup_answers_the_ids_of_the_persons_houses_and_occupant_records(
    registries: dict[str, str], collection: str, field: str
) -> None:
    records = WORLD.houses if collection == "houses" else WORLD.occupants
    person = next(r for r in records if r.village_code == A)
    number = getattr(person, field)
    mine = sorted(r.id for r in records if getattr(r, field) == number and r.village_code == A)
    url = f"{registries['none']}/{collection}/lookup"
    inside = httpx.post(url, params={"org_prefix": A}, json={"id_number": number}, headers=_token())
    assert inside.status_code == 200 and inside.json() == {"ids": mine}
    outside = httpx.post(
        url, params={"org_prefix": WORLD.village_b}, json={"id_number": number}, headers=_token()
    )
    assert outside.json() == {"ids": []}
    refused = httpx.post(url, params={"org_prefix": A}, json={"id_number": number})
    assert refused.status_code == 401
