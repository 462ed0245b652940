"""In production an admitted system is reached over https:// (or on this host), never plain http.

Over http the gateway's outbound credential and a lookup's ID number would cross the network in clear
text. Registering or updating such an address is refused in production mode, and an upstream already
stored with one is not called (fail closed, 503). Development (the demo) keeps http on loopback.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

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
        assert caught.value.message_zh.startswith("部门业务系统 reg 登记的地址未加密")
        # The same client still reaches a system on this host over http (the demo's upstreams).
        near = UpstreamTarget(system_id="reg", base_url=loopback_url, path="/api/residents")
        page = await client.list_records(near, org_prefixes=ORG, grids=(), page=1, page_size=5)
    finally:
        await client.close()
    assert page.items == [{"id": "R1"}] and len(seen) == 1


def _self_signed(directory: Path) -> ssl.SSLContext:
    """A server context with a certificate nobody vouches for (CN=127.0.0.1, self-signed)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return context


@pytest.mark.parametrize("server_tls", [False, True], ids=["https-to-plain-http", "untrusted-certificate"])
async def test_no_tls_session_is_a_bad_gateway_that_says_so_not_retry_later(
    tmp_path: Path, server_tls: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A system registered at https:// that serves plain http, or whose certificate does not verify, was
    answered 503 upstream_unavailable, "暂时无法连接，请稍后重试": retrying changes nothing, and nothing
    told its operators which system or why. Now 502 upstream_tls_failed, naming the system, and a log
    line with its fault code ``tls``."""

    async def records(request: web.Request) -> web.Response:
        return web.json_response({"items": [{"id": "R1"}], "next_page": None})

    app = web.Application()
    app.router.add_get("/api/residents", records)
    runner = web.AppRunner(app)
    await runner.setup()
    context = _self_signed(tmp_path) if server_tls else None
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    port = runner.addresses[0][1]
    client = UpstreamClient(ServiceTokenSigner(Ed25519PrivateKey.generate()))
    target = UpstreamTarget(
        system_id="reg",
        base_url=f"https://127.0.0.1:{port}",
        path="/api/residents",
        system_name="区民政局登记系统",
    )
    try:
        with pytest.raises(GatewayError) as caught, caplog.at_level(logging.WARNING, "gateway.upstream"):
            await client.list_records(target, org_prefixes=ORG, grids=(), page=1, page_size=5)
    finally:
        await client.close()
        await runner.cleanup()
    error = caught.value
    assert (error.status_code, error.code) == (502, "upstream_tls_failed")
    assert error.message_zh.startswith(
        "部门业务系统“区民政局登记系统”（系统标识 reg）的加密连接（https）建立失败"
    )
    assert error.upstream_failure is not None and error.upstream_failure.fault == "tls"
    assert "departmental system reg failed a list call: tls" in caplog.text
