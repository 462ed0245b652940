"""Calls to admitted departmental systems: pooled async client, timeouts, signed service tokens.

The gateway authenticates itself to a departmental system with a short-lived EdDSA JWT (RFC 7519, RFC 8037)
whose audience is the system id; the system verifies it with the gateway's public key. When the department
issued the gateway an API key (its stored outbound credential, see gateway/outbound.py), it goes along in
``X-Api-Key``. Every failure mode maps to one gateway error and no partial data (issue: upstream
down/slow/garbage -> 502/503/504; the system refusing the gateway's credentials -> 502
``upstream_credential_refused``).
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jwt
from joserfc.errors import SecurityWarning
from opentelemetry import metrics
from yarl import URL

from admission import public_jwks, signing_jwk
from gateway.errors import (
    GatewayError,
    UpstreamCredentialRefused,
    UpstreamError,
    UpstreamFailure,
    UpstreamNotEncrypted,
    UpstreamTimeout,
    UpstreamTlsFailed,
    UpstreamUnavailable,
)
from gateway.settings import tls_or_loopback

_log = logging.getLogger("gateway.upstream")

SERVICE_ISSUER = "grassroots-gateway"
TOKEN_TTL_S = 300
TOKEN_REUSE_S = 240
#: Carries the API key the department issued to the gateway (gateway/outbound.py).
CREDENTIAL_HEADER = "X-Api-Key"
#: A provided dataset offers the record-id lookup when its registration lists the endpoint
#: ``<collection path>/lookup`` (``POST``, the ID number in the JSON body; see ``lookup_record_ids``).
LOOKUP_SUFFIX = "/lookup"
#: Record ids are opaque registry ids; anything else cannot exist (a reader asking for one is answered 404,
#: a system answering one is refused). Dots alone ("." and "..") are not ids but path segments (RFC 3986
#: §5.2.4 removes them), which would reach the list endpoint or "/".
RECORD_ID_PATTERN = re.compile(r"^(?!\.+$)[A-Za-z0-9_.\-]{1,64}$")
#: The most record ids one lookup may answer: a person has a handful of records in a registry; more is a
#: bad answer, not evidence.
MAX_LOOKUP_IDS = 1000
#: Seconds between two log lines about the same kind of failure of the same system (the first is at once).
FAILURE_LOG_REPEAT_S = 60.0
_FAILURE_KINDS_KEPT = 10_000
#: List URLs kept for reuse (see ``UpstreamClient._list_url``); past this the cache starts over.
_URL_CACHE_SIZE = 1024
#: The largest answer read from a departmental system. A page of the platform's 100 records is tens of
#: KiB and a lookup at most ``MAX_LOOKUP_IDS`` short ids; an answer past this is a misbehaving (or hostile)
#: system, and reading it whole would hold it in memory (and parse it) for every request in flight: it is
#: a bad answer (502, no data), and reading stops at the limit.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024


def load_or_create_ed25519(path: Path) -> Ed25519PrivateKey:
    """Load an Ed25519 PEM key, creating it (mode 0600) on first use."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return key


def _is_json(media_type: str) -> bool:
    """``application/json`` or a ``+json`` type (RFC 6839), as the contract answers; aiohttp gives the media
    type lower-cased, without parameters (``application/octet-stream`` when none was sent)."""
    return media_type == "application/json" or media_type.endswith("+json")


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class ServiceTokenSigner:
    """Mints the gateway's service tokens; one cached token per audience, renewed before expiry."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._jwk = signing_jwk(key)
        #: RFC 7638 thumbprint: names the key in each token's header and in :meth:`jwks`, so a departmental
        #: system fetching the key set picks the right key while an old and a new key overlap.
        self.kid = self._jwk.thumbprint()
        self._cache: dict[str, tuple[float, str]] = {}

    def __repr__(self) -> str:
        return f"ServiceTokenSigner(kid={self.kid!r}, <key hidden>)"

    def jwks(self) -> dict[str, Any]:
        """The public key set (RFC 7517 §5) a departmental system verifies the gateway's tokens with."""
        return public_jwks(self._jwk, self.kid)

    def token_for(self, audience: str) -> str:
        now = time.time()
        cached = self._cache.get(audience)
        if cached and now - cached[0] < TOKEN_REUSE_S:
            return cached[1]
        claims = {
            "iss": SERVICE_ISSUER,
            "aud": audience,
            "iat": int(now),
            "exp": int(now) + TOKEN_TTL_S,
            "jti": uuid.uuid4().hex,
        }
        with warnings.catch_warnings():
            # joserfc flags "EdDSA" as superseded by RFC 9864's "Ed25519" (the same signature); departmental
            # systems know "EdDSA", so it stays, without a warning per signing on the gateway's stderr.
            warnings.simplefilter("ignore", SecurityWarning)
            token = jwt.encode(
                {"alg": "EdDSA", "typ": "JWT", "kid": self.kid}, claims, self._jwk, algorithms=["EdDSA"]
            )
        self._cache[audience] = (now, token)
        return token


@dataclass(frozen=True)
class UpstreamTarget:
    """Where a dataset lives: the admitted system, its base URL and the collection path."""

    system_id: str
    base_url: str
    path: str
    #: The system's outbound credential, clear and in memory only; None: the service token alone.
    credential: str | None = field(default=None, repr=False)
    #: The record-id lookup endpoint, when the registration declares one (``LOOKUP_SUFFIX``).
    lookup_path: str | None = None
    #: The system's registered name (区民政局居民信息登记系统), how a refusal names it to a village user.
    system_name: str = ""

    def named(self) -> tuple[str, str]:
        """How a refusal names the providing system to a village user: by its registered name, which she
        may have heard of (a system's name is not personal data), with the id beside it for whoever she
        reports the refusal to. Chinese, English."""
        if not self.system_name:
            return f" {self.system_id} ", self.system_id
        return (
            f"“{self.system_name}”（系统标识 {self.system_id}）",
            f"{self.system_name} (id {self.system_id})",
        )


@dataclass(frozen=True)
class UpstreamPage:
    items: list[dict[str, Any]]
    next_page: int | None


class UpstreamClient:
    """A pooled aiohttp session shared by every request of the process.

    aiohttp is chosen by measurement (``bench/bench_upstream_client.py``, see BENCHMARKS.md): on this
    call httpx spends several times the CPU per request; aiosonic is within a few per cent of aiohttp.
    """

    def __init__(
        self,
        signer: ServiceTokenSigner,
        *,
        timeout_s: float = 5.0,
        connect_timeout_s: float = 2.0,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        require_tls: bool = False,
        failures: metrics.Counter | None = None,
    ) -> None:
        self._signer = signer
        #: The public key set of the gateway's service tokens (``GET /service/jwks``).
        self.service_jwks = signer.jwks
        #: ``grassroots.upstream.failures{system, fault}`` (gateway.telemetry), when metrics are kept.
        self._failures = failures
        #: (system, call, fault) -> (when its last log line was written, failures since, unlogged).
        self._failure_lines: dict[tuple[str, str, str], tuple[float | None, int]] = {}
        #: Production: refuse to call an http:// upstream off this host (``tls_or_loopback``).
        self._require_tls = require_tls
        self._max_response_bytes = max_response_bytes
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=connect_timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._list_urls: dict[tuple[str, str, tuple[tuple[str, str], ...]], URL] = {}

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=256, limit_per_host=128, keepalive_timeout=30)
            # No cookie jar: one session serves every user's requests, so a cookie a departmental system
            # set in answer to one request would go back with everyone else's.
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                raise_for_status=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _list_url(self, target: UpstreamTarget, params: tuple[tuple[str, str], ...]) -> URL:
        """The collection URL with its query, built as aiohttp builds it from ``params``
        (``URL(url).extend_query(params)``) and reused: a page asked for again (same system, scope and
        page) skips yarl's parsing and quoting, and the URL's cached parts (host, path and query) come
        along. Only division codes, grid codes and page numbers are kept here, never a record id."""
        key = (target.base_url, target.path, params)
        url = self._list_urls.get(key)
        if url is None:
            url = URL(target.base_url.rstrip("/") + target.path)
            url = url.extend_query(params) if params else url
            if len(self._list_urls) >= _URL_CACHE_SIZE:
                self._list_urls.clear()
            self._list_urls[key] = url
        return url

    def _headers(self, target: UpstreamTarget) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._signer.token_for(target.system_id)}"}
        if target.credential is not None:
            headers[CREDENTIAL_HEADER] = target.credential
        return headers

    def _failure(
        self,
        kind: type[GatewayError],
        target: UpstreamTarget,
        call: str,
        fault: str,
        status: int | None = None,
    ) -> GatewayError:
        """The error for a failed call of ``target``: told to the reader with the system named (who to
        ask), and to the system's operators in one log line and the metric
        ``grassroots.upstream.failures{system, fault}``; the audit event records it too
        (``GatewayError.upstream_failure``). Codes only: nothing the system sent is logged."""
        named_zh, named_en = target.named()
        zh, en = kind.message_zh, kind.message_en
        if fault == "redirect":
            # Configuration, not a passing fault: "retry later" would send the reader round in circles.
            zh = (
                f"部门业务系统把请求转向了另一个地址（HTTP {status}），本次未返回任何数据。网关不跟随转向"
                "（转向会把网关的访问凭证带到别处），重试也不会解决：请联系数据所属部门核对该系统登记的地址。"
            )
            en = (
                f"The departmental system redirected the request elsewhere (HTTP {status}); no data was "
                "returned. The gateway never follows a redirect (it would carry the gateway's credential "
                "away), so retrying will not help: ask the department owning the data to check the "
                "system's registered address."
            )
        elif status is not None and kind is UpstreamError:
            zh = (
                f"部门业务系统出错（HTTP {status}），本次未返回任何数据，"
                "请稍后重试；如持续出现，请联系数据所属部门。"
            )
            en = (
                f"The departmental system failed (HTTP {status}); no data was returned. Retry later; if it "
                "persists, contact the department owning the data."
            )
        # Every departmental-system error's words begin with the system: it is named there.
        zh = zh.replace("部门业务系统", f"部门业务系统{named_zh}", 1)
        en = en.replace("The departmental system", f"Departmental system {named_en}", 1)
        extra: dict[str, Any] = {"system": target.system_id}
        if target.system_name:
            extra["system_name"] = target.system_name
        if status is not None:
            extra["upstream_status"] = status
        error = kind(zh, en, extra=extra)
        error.upstream_failure = UpstreamFailure(target.system_id, call, fault, status)
        self._log_failure(target.system_id, call, fault, status)
        if self._failures is not None:
            self._failures.add(1, {"system": target.system_id, "fault": fault})
        return error

    def _log_failure(self, system_id: str, call: str, fault: str, status: int | None) -> None:
        """One warning for the first failure of a kind (system, call, fault), then at most one per
        :data:`FAILURE_LOG_REPEAT_S` saying how many more there were: a system that is down under load fails
        every request, and a line for each (hundreds a second) would bury the operators' log. The metric
        ``grassroots.upstream.failures`` and the audit log still count every one."""
        key = (system_id, call, fault)
        now = time.monotonic()
        said_at, since = self._failure_lines.get(key, (None, 0))
        if said_at is not None and now - said_at < FAILURE_LOG_REPEAT_S:
            self._failure_lines[key] = (said_at, since + 1)
            return
        if len(self._failure_lines) >= _FAILURE_KINDS_KEPT and key not in self._failure_lines:
            self._failure_lines.clear()  # bounded: systems x calls x faults is small unless ids churn
        self._failure_lines[key] = (now, 0)
        _log.warning(
            "departmental system %s failed a %s call: %s%s; nothing from it was served%s",
            system_id,
            call,
            fault,
            f" (HTTP {status})" if status is not None else "",
            f" ({since} more such failures in the last {now - said_at:.0f} s)"
            if said_at is not None and since
            else "",
        )

    async def _call_json(
        self, target: UpstreamTarget, call: str, url: URL | str, body: bytes | None = None
    ) -> Any:
        """GET ``url`` (or POST ``body`` as JSON) with the service token and the outbound credential; the
        answer's JSON, None for 404, or the gateway error for every other failure (``call`` names the
        contract's call in it: ``list``, ``read`` or ``lookup``)."""
        if self._require_tls and not tls_or_loopback(target.base_url):
            # A registration stored before this rule (or in development) must not carry the outbound
            # credential or a lookup's ID number in clear text across a network (GB/T 35273 §6.3).
            raise self._failure(UpstreamNotEncrypted, target, call, "not_encrypted")
        if self._session is None:
            await self.start()
        assert self._session is not None
        headers = self._headers(target)
        # Redirects are never followed: aiohttp would resend the outbound credential (and, on a 307 or
        # 308, a lookup's body with its ID number) to whatever host the Location names, and take that
        # host's answer as the admitted system's. A redirect is a bad answer (502, no data).
        try:
            if body is None:
                request = self._session.get(url, headers=headers, allow_redirects=False)
            else:
                headers["Content-Type"] = "application/json"
                request = self._session.post(url, data=body, headers=headers, allow_redirects=False)
            async with request as resp:
                status = resp.status
                if status == 404:
                    return None
                if status in (401, 403):
                    raise self._failure(UpstreamCredentialRefused, target, call, "credential_refused", status)
                if 300 <= status < 400:
                    raise self._failure(UpstreamError, target, call, "redirect", status)
                if status != 200:
                    raise self._failure(UpstreamError, target, call, "status", status)
                if not _is_json(resp.content_type):
                    # An HTML page (a proxy's or a login page's) or text: not the contract's answer, and
                    # not read at all.
                    raise self._failure(UpstreamError, target, call, "content_type")
                raw = await self._read_bounded(resp, target, call)
        except GatewayError:
            raise
        except TimeoutError:
            raise self._failure(UpstreamTimeout, target, call, "timeout") from None
        except aiohttp.ClientSSLError:
            raise self._failure(UpstreamTlsFailed, target, call, "tls") from None
        except aiohttp.ClientConnectorError:
            raise self._failure(UpstreamUnavailable, target, call, "unreachable") from None
        except aiohttp.ClientError:
            # The connection dropped mid-answer: treat as a bad answer, never as partial data.
            raise self._failure(UpstreamError, target, call, "dropped") from None
        try:
            # orjson: a quarter of json.loads's cost on a page; it refuses NaN, Infinity and integers
            # beyond 64 bits outright, which here means a bad answer (fail closed), not data.
            return orjson.loads(raw)
        except ValueError:  # orjson.JSONDecodeError is one
            raise self._failure(UpstreamError, target, call, "not_json") from None

    async def _read_bounded(self, resp: aiohttp.ClientResponse, target: UpstreamTarget, call: str) -> bytes:
        """The answer's body, at most ``max_response_bytes`` of it; more is a bad answer (502). A declared
        length is checked before a byte is read (and then read whole, the fast path: aiohttp reads exactly
        that many); a body without one (chunked) is counted as it arrives and reading stops at the limit."""
        limit = self._max_response_bytes
        declared = resp.content_length
        if declared is not None and declared <= limit:
            return await resp.read()
        raw = bytearray()
        if declared is None:
            async for chunk in resp.content.iter_any():
                raw += chunk
                if len(raw) > limit:
                    break
        if declared is not None or len(raw) > limit:
            raise self._failure(UpstreamError, target, call, "too_large")
        return bytes(raw)

    def _check_record(self, obj: Any, target: UpstreamTarget, call: str) -> dict[str, Any]:
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
            raise self._failure(UpstreamError, target, call, "bad_shape")
        if not RECORD_ID_PATTERN.fullmatch(obj["id"]):
            # An id no reader could open (the data path takes only these), or a path: not the contract's.
            raise self._failure(UpstreamError, target, call, "bad_record_id")
        return obj

    async def list_records(
        self,
        target: UpstreamTarget,
        *,
        org_prefixes: Sequence[str],
        page: int,
        page_size: int,
        grids: Sequence[str] = (),
    ) -> UpstreamPage:
        params = (
            *(("org_prefix", p) for p in org_prefixes),
            *(("grid", g) for g in grids),
            ("page", str(page)),
            ("page_size", str(page_size)),
        )
        body = await self._call_json(target, "list", self._list_url(target, params))
        if body is None:
            # 404 for the collection itself: the registered path is not where the system serves it.
            raise self._failure(UpstreamError, target, "list", "status", 404)
        if not isinstance(body, Mapping) or not isinstance(body.get("items"), list):
            raise self._failure(UpstreamError, target, "list", "bad_shape")
        next_page = body.get("next_page")
        if next_page is not None and (not isinstance(next_page, int) or isinstance(next_page, bool)):
            raise self._failure(UpstreamError, target, "list", "bad_shape")
        if next_page is not None and next_page <= page:
            # Pointing back at this page (or an earlier one): a reader, or a script, following next_page
            # reads the same records for ever.
            raise self._failure(UpstreamError, target, "list", "bad_next_page")
        items = [self._check_record(item, target, "list") for item in body["items"]]
        if len(items) > page_size:
            # A system that ignores paging answers everything at once: a page cut to size would look
            # complete (next_page null) with the rest of the village missing, so none of it is served.
            raise self._failure(UpstreamError, target, "list", "page_overflow")
        if len({item["id"] for item in items}) < len(items):
            # Two records under one id: which one a read by that id answers, or the audit log's record
            # ref stands for, cannot be told.
            raise self._failure(UpstreamError, target, "list", "duplicate_id")
        return UpstreamPage(items=items, next_page=next_page)

    async def get_record(
        self,
        target: UpstreamTarget,
        record_id: str,
        *,
        org_prefixes: Sequence[str],
        grids: Sequence[str] = (),
    ) -> dict[str, Any] | None:
        params = [("org_prefix", p) for p in org_prefixes]
        params += [("grid", g) for g in grids]
        # The id is one path segment, whatever it holds: percent-encoded, and never a dot segment, which
        # the URL would resolve away (RFC 3986 §5.2.4) to the list endpoint or "/". The route refuses
        # both already (RECORD_ID_PATTERN); this keeps the client safe on its own.
        if not record_id or record_id.strip(".") == "":
            return None
        collection = URL(target.base_url.rstrip("/") + target.path.rstrip("/"))
        url = collection.with_path(f"{collection.raw_path}/{quote(record_id, safe='')}", encoded=True)
        body = await self._call_json(target, "read", url.extend_query(params) if params else url)
        if body is None:
            return None
        found = self._check_record(body, target, "read")
        if found["id"] != record_id:
            # Another record than the one asked for (a lookup keyed wrongly, a cache mixing answers): served,
            # the reader would take it for the record she opened.
            raise self._failure(UpstreamError, target, "read", "wrong_record")
        return found

    async def lookup_record_ids(
        self, target: UpstreamTarget, id_number: str, *, org_prefixes: Sequence[str]
    ) -> list[str] | None:
        """The ids of the records of the person with ``id_number`` in ``target``'s collection, inside the
        jurisdiction ``org_prefixes`` — the departmental systems' record-id lookup (README: "The
        departmental-system contract"), same credentials as the data path.

        The ID number travels only in the JSON body of a POST, never in the URL (which access logs and
        proxies keep). None when the system does not answer the lookup (404: not offered); a gateway error
        for every failure, as on the data path. Ids are checked to be short strings and few."""
        if target.lookup_path is None:
            return None
        url = URL(target.base_url.rstrip("/") + target.lookup_path).extend_query(
            [("org_prefix", p) for p in org_prefixes]
        )
        body = await self._call_json(target, "lookup", url, orjson.dumps({"id_number": id_number}))
        if body is None:
            return None
        ids = body.get("ids") if isinstance(body, Mapping) else None
        if (
            not isinstance(ids, list)
            or len(ids) > MAX_LOOKUP_IDS
            or not all(isinstance(i, str) and 0 < len(i) <= 64 for i in ids)
        ):
            raise self._failure(UpstreamError, target, "lookup", "bad_shape")
        return list(dict.fromkeys(ids))
