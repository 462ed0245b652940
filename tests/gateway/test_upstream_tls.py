"""In production an admitted system is reached over https:// (or on this host), never plain http.

Over http the gateway's outbound credential and a lookup's ID number would cross the network in clear
text. Registering or updating such an address is refused in production mode, and an upstream already
stored with one is not called (fail closed, 503). Development (the demo) keeps http on loopback.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from admission import registration_from_mapping
from gateway.errors import GatewayError, UpstreamNotEncrypted
from gateway.routes.admission_api import _check_transport
from gateway.settings import RunMode
from gateway.upstream import ServiceTokenSigner, UpstreamClient, UpstreamTarget
from tests.admission.test_model import PAYLOAD
from tests.gateway.test_upstream_urls import server  # noqa: F401  (the loopback upstream fixture)

ORG = ("310151101201",)


def registration(base_url: str) -> Any:
    provides = [{**PAYLOAD["provides"][0], "base_url": base_url}]  # type: ignore[index]
    return registration_from_mapping({**PAYLOAD, "provides": provides}, created_by="u-1")


def runtime_in(mode: RunMode) -> Any:
    return SimpleNamespace(settings=SimpleNamespace(mode=mode))


@pytest.mark.parametrize(
    ("mode", "base_url", "refused"),
    [
        (RunMode.production, "http://care.example.gov.cn", True),
        (RunMode.production, "http://10.1.2.3:8080", True),
        (RunMode.production, "https://care.example.gov.cn", False),
        (RunMode.production, "http://127.0.0.1:9000", False),
        (RunMode.production, "http://localhost:9000", False),
        (RunMode.production, "http://[::1]:9000", False),
        (RunMode.development, "http://care.example.gov.cn", False),
    ],
)
def test_a_registration_on_plain_http_off_this_host_is_refused_in_production(
    mode: RunMode, base_url: str, refused: bool
) -> None:
    reg = registration(base_url)
    if not refused:
        _check_transport(runtime_in(mode), reg)
        return
    with pytest.raises(GatewayError) as caught:
        _check_transport(runtime_in(mode), reg)
    assert (caught.value.status_code, caught.value.code) == (422, "base_url_not_https")
    assert caught.value.message_zh.startswith("生产模式下")
    assert base_url not in caught.value.message_zh + caught.value.message_en


async def test_a_stored_plain_http_upstream_is_not_called_in_production(
    server: tuple[str, list[str]],  # noqa: F811
) -> None:
    loopback_url, seen = server
    client = UpstreamClient(ServiceTokenSigner(Ed25519PrivateKey.generate()), require_tls=True)
    far = UpstreamTarget(
        system_id="reg", base_url="http://192.0.2.10:8080", path="/api/residents", credential="s"
    )
    try:
        with pytest.raises(UpstreamNotEncrypted) as caught:
            await client.list_records(far, org_prefixes=ORG, grids=(), page=1, page_size=5)
        assert caught.value.status_code == 503
        assert caught.value.message_zh.startswith("该部门业务系统登记的地址未加密")
        # The same client still reaches a system on this host over http (the demo's upstreams).
        near = UpstreamTarget(system_id="reg", base_url=loopback_url, path="/api/residents")
        page = await client.list_records(near, org_prefixes=ORG, grids=(), page=1, page_size=5)
    finally:
        await client.close()
    assert page.items == [{"id": "R1"}] and len(seen) == 1
