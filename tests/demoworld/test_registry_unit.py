"""The registry's parts in-process: the gateway token check and the jurisdiction filter."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from joserfc.jwk import OKPKey

from demoworld.civil_affairs import REGISTRY_AUDIENCE, ResidentRegistry
from demoworld.departmental import GatewayTokenError, GatewayTokenVerifier, ScopeError, parse_scope
from demoworld.world import World, build_world, significant_prefix
from tests.demoworld._support import hs256_with_public_key, mint, new_gateway_key, public_pem, unsigned

NOW = 1_800_000_000
GATEWAY_KEY = new_gateway_key()
OTHER_KEY = new_gateway_key()
WORLD: World = build_world()


@pytest.fixture(scope="module")
def verifier() -> GatewayTokenVerifier:
    return GatewayTokenVerifier(public_pem(GATEWAY_KEY), audience=REGISTRY_AUDIENCE, now=lambda: NOW)


def test_a_fresh_gateway_token_is_accepted(verifier: GatewayTokenVerifier) -> None:
    claims = verifier.verify(f"Bearer {mint(GATEWAY_KEY, now=NOW)}")
    assert claims["aud"] == "civil-affairs-registry"


def test_the_fully_specified_ed25519_algorithm_name_is_accepted(verifier: GatewayTokenVerifier) -> None:
    verifier.verify(f"Bearer {mint(GATEWAY_KEY, alg='Ed25519', now=NOW)}")


REJECTED: list[tuple[str, Callable[[OKPKey], str | None]]] = [
    ("no header", lambda k: None),
    ("empty header", lambda k: ""),
    ("basic scheme", lambda k: "Basic Z2F0ZXdheTpwdw=="),
    ("bearer without token", lambda k: "Bearer "),
    ("not a jwt", lambda k: "Bearer not.a.jwt"),
    ("signed by another key", lambda k: f"Bearer {mint(OTHER_KEY, now=NOW)}"),
    ("alg none", lambda k: f"Bearer {unsigned()}"),
    ("hs256 keyed with the public key", lambda k: f"Bearer {hs256_with_public_key(k)}"),
    ("wrong audience", lambda k: f"Bearer {mint(k, now=NOW, aud='population-registry')}"),
    ("audience missing", lambda k: f"Bearer {mint(k, now=NOW, aud=None)}"),
    ("wrong issuer", lambda k: f"Bearer {mint(k, now=NOW, iss='someone-else')}"),
    ("issuer missing", lambda k: f"Bearer {mint(k, now=NOW, iss=None)}"),
    ("expired beyond leeway", lambda k: f"Bearer {mint(k, now=NOW - 400, exp=NOW - 31)}"),
    ("exp missing", lambda k: f"Bearer {mint(k, now=NOW, exp=None)}"),
    ("iat missing", lambda k: f"Bearer {mint(k, now=NOW, iat=None)}"),
    ("lives longer than five minutes", lambda k: f"Bearer {mint(k, now=NOW, exp=NOW + 3600)}"),
    ("issued in the future", lambda k: f"Bearer {mint(k, now=NOW + 120)}"),
    ("wrong typ", lambda k: f"Bearer {mint(k, now=NOW, typ='at+jwt')}"),
    ("typ missing", lambda k: f"Bearer {mint(k, now=NOW, typ=None)}"),
]


@pytest.mark.parametrize(("case", "authorization"), REJECTED, ids=[c for c, _ in REJECTED])
def test_tokens_the_registry_refuses(
    verifier: GatewayTokenVerifier, case: str, authorization: Callable[[OKPKey], str | None]
) -> None:
    header = authorization(GATEWAY_KEY)
    with pytest.raises(GatewayTokenError) as caught:
        verifier.verify(header)
    token = (header or "").removeprefix("Bearer ").strip()
    if token:
        assert token not in str(caught.value)


def test_a_token_within_clock_leeway_is_accepted(verifier: GatewayTokenVerifier) -> None:
    verifier.verify(f"Bearer {mint(GATEWAY_KEY, now=NOW - 300, exp=NOW - 10)}")


def test_verifier_refuses_a_non_ed25519_key() -> None:
    with pytest.raises(ValueError):
        GatewayTokenVerifier(OKPKey.generate_key("X25519").as_pem(private=False), audience=REGISTRY_AUDIENCE)


def test_real_clock_is_the_default() -> None:
    verifier = GatewayTokenVerifier(public_pem(GATEWAY_KEY), audience=REGISTRY_AUDIENCE)
    verifier.verify(f"Bearer {mint(GATEWAY_KEY, now=int(time.time()))}")


@pytest.mark.parametrize(
    ("pushed_down", "scope"),
    [
        (["310151101201"], ("310151101201",)),
        (["310151101000"], ("310151101",)),
        (["310151101"], ("310151101",)),
        (["310151101202", "310151101201", "310151101201"], ("310151101201", "310151101202")),
        (["000000000000"], ("",)),
    ],
)
def test_parse_scope(pushed_down: list[str], scope: tuple[str, ...]) -> None:
    assert parse_scope(pushed_down) == scope


@pytest.mark.parametrize("pushed_down", [[], [""], ["31015110120x"], ["3101511012011"], ["310151", "abc"]])
def test_parse_scope_refuses_missing_or_malformed_prefixes(pushed_down: list[str]) -> None:
    with pytest.raises(ScopeError):
        parse_scope(pushed_down)


REGISTRY = ResidentRegistry([r.to_dict() for r in WORLD.residents])
DIVISION_CODES = [d.code for d in WORLD.divisions]


@given(st.lists(st.sampled_from(DIVISION_CODES), min_size=1, max_size=3))
def test_in_scope_is_exactly_the_residents_under_the_pushed_down_divisions(codes: list[str]) -> None:
    prefixes = [significant_prefix(c) for c in codes]
    expected = sorted(
        (r.id for r in WORLD.residents if any(r.village_code.startswith(p) for p in prefixes)),
    )
    assert [r["id"] for r in REGISTRY.in_scope(parse_scope(codes))] == expected


def test_get_outside_scope_is_none_like_absent() -> None:
    neighbour = WORLD.residents_of(WORLD.village_b)[0]
    assert REGISTRY.get(neighbour.id, (WORLD.village_a,)) is None
    assert REGISTRY.get("R00000000", (WORLD.village_a,)) is None
    assert REGISTRY.get(neighbour.id, (WORLD.village_b,)) == neighbour.to_dict()
