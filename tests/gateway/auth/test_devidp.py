"""The embedded development identity provider, served by a real uvicorn server on loopback.

Its tokens are checked twice: by the gateway's own verifier over HTTP (discovery + JWKS), and by PyJWT
with the published key, so that a bug shared by both halves of the project cannot hide.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from fastapi import FastAPI

from gateway.auth.devidp import (
    DEV_CLIENT_ID,
    DEV_GRANT_TYPE,
    DevIdentityProvider,
    DevIdentityProviderForbiddenError,
    UnknownDevUserError,
)
from gateway.auth.devidp_http import router
from gateway.auth.oidc import AuthError, OIDCVerifier, Principal
from gateway.settings import Settings

AUDIENCE = "grassroots-gateway"

USERS: list[dict[str, object]] = [
    {
        "username": "cadre_a",
        "user_id": "u-cadre-a",
        "role": "village_cadre",
        "org": "310151101001",
        "department": None,
        "office": None,
    },
    {
        "username": "steward",
        "user_id": "u-steward",
        "role": "data_steward",
        "org": "310151000000",
        "department": "civil_affairs",
        "office": None,
    },
    {
        "username": "reviewer",
        "user_id": "u-reviewer",
        "role": "admission_reviewer",
        "org": "310151000000",
        "department": None,
        "office": "county_data_office",
    },
]


@dataclass(frozen=True)
class Served:
    base_url: str
    issuer: str
    idp: DevIdentityProvider


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The router mounted at /dev-idp on a small FastAPI app, served by uvicorn on a free port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    issuer = f"{base_url}/dev-idp"
    idp = DevIdentityProvider(issuer, tmp_path_factory.mktemp("devidp") / "devidp-key.pem", USERS)
    app = FastAPI()
    app.include_router(router(idp), prefix="/dev-idp")
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, log_level="warning", access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Served(base_url, issuer, idp)
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


def _rfc7638_thumbprint(jwk: dict[str, Any]) -> str:
    # RFC 7638 §3.2: the required members only, in lexicographic order, no whitespace.
    required = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}[jwk["kty"]]
    canonical = json.dumps({name: jwk[name] for name in required}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


async def test_discovery_names_the_mounted_issuer_and_reachable_endpoints(served: Served) -> None:
    async with httpx.AsyncClient() as client:
        discovery = (await client.get(f"{served.issuer}/.well-known/openid-configuration")).json()
        jwks = (await client.get(discovery["jwks_uri"])).json()

    assert discovery["issuer"] == served.issuer
    assert discovery["token_endpoint"] == f"{served.issuer}/token"
    assert discovery["grant_types_supported"] == [DEV_GRANT_TYPE]
    [key] = jwks["keys"]
    assert key["kid"] == _rfc7638_thumbprint(key)
    assert (key["use"], key["alg"], key["kty"], key["crv"]) == ("sig", "ES256", "EC", "P-256")
    assert "d" not in key


@pytest.mark.parametrize(
    ("username", "expected"),
    [
        (
            "cadre_a",
            Principal("u-cadre-a", "cadre_a", "310151101001", ("village_cadre",), None, None, None),
        ),
        (
            "steward",
            Principal("u-steward", "steward", "310151000000", ("data_steward",), "civil_affairs", None, None),
        ),
        (
            "reviewer",
            Principal(
                "u-reviewer",
                "reviewer",
                "310151000000",
                ("admission_reviewer",),
                None,
                "county_data_office",
                None,
            ),
        ),
    ],
)
async def test_minted_token_round_trips_through_the_verifier_over_loopback(
    served: Served, username: str, expected: Principal
) -> None:
    async with OIDCVerifier(served.issuer, AUDIENCE, accepted_types=("at+jwt",)) as verifier:
        principal = await verifier.verify(served.idp.mint(username, AUDIENCE))

    assert principal.token_id is not None and principal.issued_at is not None
    assert principal.expires_at == principal.issued_at + 3600
    token = {
        "token_id": principal.token_id,
        "issued_at": principal.issued_at,
        "expires_at": principal.expires_at,
    }
    assert principal == Principal(**{**expected.__dict__, **token})


async def test_token_endpoint_issues_a_bearer_token_the_verifier_accepts(served: Served) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{served.issuer}/token",
            data={"grant_type": DEV_GRANT_TYPE, "username": "steward", "audience": AUDIENCE},
        )
    body = response.json()

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 3600)
    async with OIDCVerifier(served.issuer, AUDIENCE) as verifier:
        assert (await verifier.verify(body["access_token"])).department == "civil_affairs"


async def test_token_is_an_rfc9068_access_token_by_an_independent_library(served: Served) -> None:
    token = served.idp.mint("cadre_a", AUDIENCE, ttl_s=120)
    [published] = served.idp.jwks()["keys"]

    header = jwt.get_unverified_header(token)
    claims = jwt.decode(
        token,
        jwt.PyJWK(published).key,
        algorithms=["ES256"],
        audience=AUDIENCE,
        issuer=served.issuer,
        options={"require": ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"]},
    )

    assert (header["typ"], header["alg"], header["kid"]) == ("at+jwt", "ES256", published["kid"])
    assert claims["exp"] - claims["iat"] == 120
    assert claims["nbf"] == claims["iat"]
    assert (claims["sub"], claims["client_id"], claims["preferred_username"]) == (
        "u-cadre-a",
        DEV_CLIENT_ID,
        "cadre_a",
    )
    assert (claims["org_code"], claims["roles"]) == ("310151101001", ["village_cadre"])
    assert "department" not in claims and "office" not in claims
    assert served.idp.mint("cadre_a", AUDIENCE) != served.idp.mint("cadre_a", AUDIENCE)


async def test_token_for_another_audience_is_refused_by_the_gateway(served: Served) -> None:
    async with OIDCVerifier(served.issuer, AUDIENCE) as verifier:
        with pytest.raises(AuthError) as caught:
            await verifier.verify(served.idp.mint("cadre_a", "some-other-api"))

    assert caught.value.code == "wrong_audience"


@pytest.mark.parametrize(
    ("jurisdiction", "accepted", "refused"),
    [
        (["310151101000"], ["cadre_a"], ["steward", "reviewer"]),  # a township: its villages only
        (["310151"], ["cadre_a", "steward", "reviewer"], []),  # the county: all of them
        (["320102"], [], ["cadre_a", "steward", "reviewer"]),  # another province's district: none
    ],
    ids=["township", "county", "elsewhere"],
)
async def test_the_development_idp_vouches_only_within_its_configured_jurisdiction(
    served: Served, jurisdiction: list[str], accepted: list[str], refused: list[str]
) -> None:
    """The setting as the gateway reads it (a division code, kept as its prefix) keyed by the development
    IdP's issuer, its tokens verified over loopback (discovery + JWKS)."""
    settings = Settings(oidc_issuer=served.issuer, oidc_issuer_jurisdictions={served.issuer: jurisdiction})
    async with OIDCVerifier(served.issuer, AUDIENCE, org_prefixes=settings.issuer_org_prefixes) as verifier:
        for username in accepted:
            assert (await verifier.verify(served.idp.mint(username, AUDIENCE))).username == username
        for username in refused:
            with pytest.raises(AuthError) as caught:
                await verifier.verify(served.idp.mint(username, AUDIENCE))
            assert caught.value.code == "org_outside_issuer"


@pytest.mark.parametrize(
    ("form", "content", "error"),
    [
        ({"grant_type": DEV_GRANT_TYPE, "username": "nobody", "audience": AUDIENCE}, None, "invalid_grant"),
        (
            {"grant_type": "password", "username": "cadre_a", "audience": AUDIENCE},
            None,
            "unsupported_grant_type",
        ),
        ({"grant_type": DEV_GRANT_TYPE, "username": "cadre_a"}, None, "invalid_request"),
        ({"grant_type": DEV_GRANT_TYPE, "audience": AUDIENCE}, None, "invalid_request"),
        (
            None,
            f"grant_type={DEV_GRANT_TYPE}&username=cadre_a&username=steward&audience=x",
            "invalid_request",
        ),
        (
            None,
            json.dumps({"grant_type": DEV_GRANT_TYPE, "username": "cadre_a", "audience": "x"}),
            "invalid_request",
        ),
    ],
    ids=["unknown user", "other grant type", "no audience", "no username", "repeated parameter", "JSON body"],
)
async def test_token_endpoint_refuses_bad_requests_with_json_errors(
    served: Served, form: dict[str, str] | None, content: str | None, error: str
) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if content is not None and content.startswith("{"):
        headers = {"Content-Type": "application/json"}
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{served.issuer}/token", data=form, content=content, headers=headers)
    body = response.json()

    assert response.status_code == 400
    assert body["error"] == error
    assert body["message"] and body["message_en"]
    assert "nobody" not in response.text
    assert "access_token" not in body


def test_unknown_user_cannot_be_minted_and_the_error_does_not_echo_the_name(tmp_path: Path) -> None:
    idp = DevIdentityProvider("http://127.0.0.1:1/dev-idp", tmp_path / "k.pem", USERS)

    with pytest.raises(UnknownDevUserError) as caught:
        idp.mint("zhang_san_unknown", AUDIENCE)

    assert "zhang_san_unknown" not in str(caught.value)
    assert "zhang_san_unknown" not in repr(caught.value)


def test_production_mode_refuses_the_provider_and_its_router(tmp_path: Path) -> None:
    with pytest.raises(DevIdentityProviderForbiddenError):
        DevIdentityProvider("http://127.0.0.1:1/dev-idp", tmp_path / "k.pem", USERS, production=True)
    idp = DevIdentityProvider("http://127.0.0.1:1/dev-idp", tmp_path / "k.pem", USERS)
    with pytest.raises(DevIdentityProviderForbiddenError):
        router(idp, production=True)
    assert not (tmp_path / "k.pem").exists()


@pytest.mark.parametrize(("key_type", "alg"), [("EC", "ES256"), ("RSA", "RS256")])
def test_key_is_created_once_private_to_its_owner_and_reused(tmp_path: Path, key_type: str, alg: str) -> None:
    path = tmp_path / "nested" / "devidp.pem"
    first = DevIdentityProvider("http://127.0.0.1:1/dev-idp", path, USERS, key_type=key_type)  # type: ignore[arg-type]
    jwks = first.jwks()
    second = DevIdentityProvider("http://127.0.0.1:1/dev-idp", path, USERS)

    assert os.stat(path).st_mode & 0o777 == 0o600
    assert second.jwks() == jwks
    assert jwks["keys"][0]["alg"] == alg
    assert jwks["keys"][0]["kid"] == _rfc7638_thumbprint(jwks["keys"][0])
    assert [p.name for p in path.parent.iterdir()] == ["devidp.pem"]
    claims = jwt.decode(
        second.mint("cadre_a", AUDIENCE), jwt.PyJWK(jwks["keys"][0]).key, algorithms=[alg], audience=AUDIENCE
    )
    assert claims["sub"] == "u-cadre-a"


def test_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "devidp.pem"
    DevIdentityProvider("http://127.0.0.1:1/dev-idp", path, USERS).jwks()
    path.chmod(0o644)

    with pytest.raises(PermissionError):
        DevIdentityProvider("http://127.0.0.1:1/dev-idp", path, USERS).jwks()


@pytest.mark.parametrize(
    "bad_user",
    [
        {"user_id": "u", "role": "village_cadre", "org": "310151101001"},
        {"username": "x", "user_id": "u", "role": "village_cadre", "org": "3101"},
        {"username": "x", "user_id": "u", "org": "310151101001"},
        {"username": "x", "user_id": "u", "roles": [], "org": "310151101001"},
    ],
    ids=["no username", "short org", "no role", "empty roles"],
)
def test_malformed_demo_users_are_refused_at_construction(
    tmp_path: Path, bad_user: dict[str, object]
) -> None:
    with pytest.raises(ValueError):
        DevIdentityProvider("http://127.0.0.1:1/dev-idp", tmp_path / "k.pem", [bad_user])
