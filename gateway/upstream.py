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
from joserfc.jwk import OKPKey
from yarl import URL

from gateway.errors import (
    UpstreamCredentialRefused,
    UpstreamError,
    UpstreamNotEncrypted,
    UpstreamTimeout,
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
#: The most record ids one lookup may answer: a person has a handful of records in a registry; more is a
#: bad answer, not evidence.
MAX_LOOKUP_IDS = 1000
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


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class ServiceTokenSigner:
    """Mints the gateway's service tokens; one cached token per audience, renewed before expiry."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self._jwk = OKPKey.import_key(pem)
        self._cache: dict[str, tuple[float, str]] = {}

    def __repr__(self) -> str:
        return "ServiceTokenSigner(<key hidden>)"

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
            token = jwt.encode({"alg": "EdDSA", "typ": "JWT"}, claims, self._jwk, algorithms=["EdDSA"])
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
    ) -> None:
        self._signer = signer
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

    async def _call_json(self, target: UpstreamTarget, url: URL | str, body: bytes | None = None) -> Any:
        """GET ``url`` (or POST ``body`` as JSON) with the service token and the outbound credential; the
        answer's JSON, None for 404, or the gateway error for every other failure."""
        if self._require_tls and not tls_or_loopback(target.base_url):
            # A registration stored before this rule (or in development) must not carry the outbound
            # credential or a lookup's ID number in clear text across a network (GB/T 35273 §6.3).
            raise UpstreamNotEncrypted(extra={"system": target.system_id})
        if self._session is None:
            await self.start()
        assert self._session is not None
        headers = self._headers(target)
        # Redirects are never followed: aiohttp would resend the outbound credential (and, on a 307 or
        # 308, a lookup's body with its ID number) to whatever host the Location names, and take that
        # host's answer as the admitted system's. A redirect is a bad answer (502, no data).
        try:
            if body is None:
                async with self._session.get(url, headers=headers, allow_redirects=False) as resp:
                    status = resp.status
                    raw = await self._read_bounded(resp, target.system_id)
            else:
                headers["Content-Type"] = "application/json"
                async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                    status = resp.status
                    raw = await self._read_bounded(resp, target.system_id)
        except TimeoutError:
            raise UpstreamTimeout(extra={"system": target.system_id}) from None
        except aiohttp.ClientConnectorError:
            raise UpstreamUnavailable(extra={"system": target.system_id}) from None
        except aiohttp.ClientError:
            # The connection dropped mid-answer: treat as a bad answer, never as partial data.
            raise UpstreamError(extra={"system": target.system_id}) from None
        if status == 404:
            return None
        if status in (401, 403):
            raise UpstreamCredentialRefused(extra={"system": target.system_id, "upstream_status": status})
        if status != 200:
            raise UpstreamError(extra={"system": target.system_id, "upstream_status": status})
        try:
            # orjson: a quarter of json.loads's cost on a page; it refuses NaN, Infinity and integers
            # beyond 64 bits outright, which here means a bad answer (fail closed), not data.
            return orjson.loads(raw)
        except ValueError:  # orjson.JSONDecodeError is one
            raise UpstreamError(extra={"system": target.system_id}) from None

    async def _read_bounded(self, resp: aiohttp.ClientResponse, system_id: str) -> bytes:
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
            _log.warning("departmental system %s answered more than %d bytes; refused", system_id, limit)
            raise UpstreamError(extra={"system": system_id})
        return bytes(raw)

    @staticmethod
    def _check_record(obj: Any, system_id: str) -> dict[str, Any]:
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
            raise UpstreamError(extra={"system": system_id})
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
        body = await self._call_json(target, self._list_url(target, params))
        if not isinstance(body, Mapping) or not isinstance(body.get("items"), list):
            raise UpstreamError(extra={"system": target.system_id})
        next_page = body.get("next_page")
        if next_page is not None and not isinstance(next_page, int):
            raise UpstreamError(extra={"system": target.system_id})
        items = [self._check_record(item, target.system_id) for item in body["items"]]
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
        body = await self._call_json(target, url.extend_query(params) if params else url)
        if body is None:
            return None
        return self._check_record(body, target.system_id)

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
        body = await self._call_json(target, url, orjson.dumps({"id_number": id_number}))
        if body is None:
            return None
        ids = body.get("ids") if isinstance(body, Mapping) else None
        if (
            not isinstance(ids, list)
            or len(ids) > MAX_LOOKUP_IDS
            or not all(isinstance(i, str) and 0 < len(i) <= 64 for i in ids)
        ):
            raise UpstreamError(extra={"system": target.system_id})
        return list(dict.fromkeys(ids))
