"""The data path, one readable pipeline (house style §1):

    authenticate -> authorize (Decision + obligations) -> fetch upstream (scope pushed down)
      -> re-check scope -> project fields -> mask -> audit (durable) -> respond

Each stage is a plain function that can be tested alone. ``run_data_request`` strings them together and
guarantees the two invariants the issue names: every request, allowed or refused, leaves exactly one audit
event; and no data leaves before its event is durably committed (if the log cannot be written the answer
is 503 and no data).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

from admission import DATASET_ID_PATTERN
from audit import ANONYMOUS_ACTOR, SUBJECT_REF_LINKS, AuditEvent, AuditUnavailable, Outcome, packed_ref
from gateway.auth.oidc import AuthError, Principal
from gateway.errors import (
    AuditLogUnavailable,
    Forbidden,
    GatewayError,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    Unauthenticated,
    trailing_slash_refused,
    where_raised,
)
from gateway.quotas import QuotaHold, QuotaUnavailable
from gateway.refusal_bursts import request_source
from gateway.runtime import DatasetView, Runtime
from gateway.upstream import RECORD_ID_PATTERN, UpstreamTarget
from masking import KAnonymityResult, MaskingPlan, mask_records
from policies import (
    AccessRequest,
    Decision,
    GrantRepository,
    GrantStatus,
    Obligations,
    Reason,
    Scenario,
    Subject,
    covers,
)
from policies.divisions import grid_village, is_grid
from policies.quotas import QuotaKey, quota_day
from policies.reasons import APPLY_AGAIN, request_waiting

_log = logging.getLogger("gateway.pipeline")

#: A record id typed as a resident's ID number (GB 11643: 18 characters, a birth date at 7-14, any check
#: character: a mistyped number is still someone's) or a mainland mobile number, as a whole, so an opaque
#: id that merely holds digits (a registry's 18-digit numeric key) is not mistaken for one.
_ID_NUMBER_RECORD_ID = re.compile(r"[1-9]\d{5}(?P<born>(?:18|19|20)\d{6})\d{3}[\dXx]")
_MOBILE_RECORD_ID = re.compile(r"(?:\+?86)?1[3-9]\d{9}")

#: Pages are counted from 1; past this no registry of a township has records (and the audit event, RFC
#: 8785 JSON, cannot carry integers beyond 2**53 at all). Page sizes beyond the platform's limit are
#: refused at once, before the number reaches anything else.
MAX_PAGE = 1_000_000

#: Policy reasons that mean "this does not exist" rather than "you may not".
_NOT_FOUND_REASONS = {"unknown_scenario"}


#: Dataset and scenario codes are short identifiers; anything else is recorded as "invalid".
#: Letters first, so no number (a phone, an ID) can pass as a code and reach the log. A dataset code is the
#: one a departmental system registers its datasets under (the admission model's pattern).
DATASET_PATTERN = re.compile(DATASET_ID_PATTERN)
SCENARIO_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")


@dataclass(frozen=True)
class DataRequest:
    """What the caller asked for, already parsed from the URL."""

    dataset: str
    scenario: str
    page: int = 1
    page_size: int = 20
    record_id: str | None = None
    request_id: str | None = None
    #: False until the query's page and page_size are read (a request refused before that, for want of a
    #: token or with a page it cannot read): the event then records no page, rather than the defaults.
    paged: bool = True

    @property
    def kind(self) -> str:
        return "data.read" if self.record_id is not None else "data.list"


def _recordable(
    dataset: str, scenario: str | None, record_id: str | None, request_id: str | None
) -> DataRequest:
    """The request as it may be written to the log: codes that fail their pattern are not recorded."""
    return DataRequest(
        dataset if DATASET_PATTERN.fullmatch(dataset) else "invalid",
        scenario if scenario and SCENARIO_PATTERN.fullmatch(scenario) else "",
        record_id=record_id,
        request_id=request_id,
        paged=False,
    )


def parse_data_request(
    dataset: str,
    scenario: str | None,
    page: str | None,
    page_size: str | None,
    record_id: str | None = None,
    request_id: str | None = None,
    max_page_size: int = 100,
    repeated: Sequence[str] = (),
    unknown_parameters: bool = False,
    trailing_slash: bool = False,
) -> DataRequest:
    """Stage 0: turn raw query strings into a DataRequest, or a 422 that says what to fix.

    Parsing happens inside the pipeline (not in the web framework) so a malformed request is audited too.
    ``page`` must be 1..MAX_PAGE and ``page_size`` 1..``max_page_size`` (the platform's page limit; a
    scenario's smaller cap is checked once authorised): the message states the range, never the value.
    """
    base = _recordable(dataset, scenario, record_id, request_id)
    safe_dataset, safe_scenario = base.dataset, base.scenario
    if trailing_slash:
        raise _Unparsable(base, data_path_trailing_slash(record_id is not None))
    if repeated:
        names_zh, names_en = "、".join(repeated), ", ".join(repeated)
        raise _Unparsable(
            base,
            InvalidRequest(
                f"查询参数 {names_zh} 只能出现一次：请只保留一个值后重试。",
                f"The query parameter {names_en} may appear only once: keep one value and retry.",
                code="repeated_parameter",
            ),
        )
    if unknown_parameters:
        # Not named: the name was typed by the caller, and is never repeated back (nor recorded).
        raise _Unparsable(
            base,
            InvalidRequest(
                "查询参数中有本接口不接受的参数，本次未返回任何数据。本接口只接受 scenario、page、page_size；"
                "返回哪些字段由使用场景和本单位的授权决定，不能在查询中指定"
                "（可用 grassroots policy explain 查看）。请去掉其他参数后重试。",
                "The query has a parameter this endpoint does not take; nothing was returned. It takes only "
                "scenario, page and page_size; the fields returned are set by the scenario and your "
                "organisation's grant and cannot be chosen in the query (grassroots policy explain shows "
                "them). Remove the other parameters and retry.",
                code="unknown_parameter",
            ),
        )
    if record_id is not None and personal_data_as_record_id(record_id):
        # Not a record id but a resident's number: it would travel to the departmental system in a URL
        # (access logs, proxies), where the contract never puts one (README: the record-id lookup). Not
        # repeated back; the event keeps it only as the keyed ref of the id asked for.
        raise _Unparsable(
            base,
            InvalidRequest(
                "链接中的记录编号像是身份证号或手机号，本次未查询，也未返回任何数据。"
                "记录编号是查询结果中每条记录的 id（例如 R075f2e45），不能用身份证号或手机号代替："
                "请先按页查看本辖区的记录，再用其 id 查看单条记录。",
                "The record id in the link looks like an ID number or a mobile number; nothing was looked "
                "up or returned. A record id is the id of a record in a list answer (e.g. R075f2e45), "
                "never an ID or phone number: list your jurisdiction's records first, then read one by "
                "its id.",
                code="personal_data_in_record_id",
            ),
        )
    if not scenario:
        raise _Unparsable(
            base,
            InvalidRequest(
                "请在查询参数 scenario 中指明使用场景（例如 scenario=DIBAO_REVIEW）。",
                "Name the scenario in the query parameter scenario (for example scenario=DIBAO_REVIEW).",
                code="missing_scenario",
            ),
        )
    if not safe_scenario:
        raise _Unparsable(
            base,
            InvalidRequest(
                "场景代码格式不正确：场景代码由大写英文字母、数字和下划线组成（例如 DIBAO_REVIEW），"
                "不能写中文名称，前后也不能有空格；各场景的代码见 grassroots grants scenarios"
                "（GET /api/v1/scenarios）。",
                "Malformed scenario code: a scenario code is capital letters, digits and underscores (e.g. "
                "DIBAO_REVIEW), never its Chinese name, with no spaces around it; grassroots grants "
                "scenarios (GET /api/v1/scenarios) lists the codes.",
                code="invalid_scenario",
            ),
        )
    values: dict[str, int] = {}
    for name, raw, default, most in (
        ("page", page, 1, MAX_PAGE),
        ("page_size", page_size, 20, max_page_size),
    ):
        if raw is None or raw == "":
            values[name] = default
            continue
        if not (raw.isascii() and raw.isdigit()):
            # Plain digits only: int() also reads "1_0", "+3", " 5" and other scripts' digits ("٣").
            raise _Unparsable(base, _not_in_range(name, most))
        value = int(raw)
        if 1 <= value <= most:
            values[name] = value
        elif name == "page_size" and value > most:
            raise _Unparsable(base, page_size_over_limit(most, *_PLATFORM_LIMIT))
        else:
            extra = {"max_page_size": most} if name == "page_size" else None
            raise _Unparsable(base, _not_in_range(name, most, extra))
    return DataRequest(
        safe_dataset,
        safe_scenario,
        page=values["page"],
        page_size=values["page_size"],
        record_id=record_id,
        request_id=request_id,
    )


def data_path_trailing_slash(one_record: bool) -> NotFound:
    """404 ``trailing_slash`` for a data path ending in ``/`` (:func:`gateway.errors.trailing_slash_refused`,
    with the data path's form), audited like any refused request."""
    return trailing_slash_refused(
        "/api/v1/datasets/{dataset}/records" + ("/{record_id}" if one_record else "")
    )


def personal_data_as_record_id(record_id: str) -> bool:
    """Whether ``record_id`` is, as a whole, an ID number or a mobile number as people type them: in
    groups (spaces, hyphens), full-width digits from a Chinese input method folded (NFKC)."""
    folded = re.sub(r"[ \-]", "", unicodedata.normalize("NFKC", record_id))
    if _MOBILE_RECORD_ID.fullmatch(folded):
        return True
    id_number = _ID_NUMBER_RECORD_ID.fullmatch(folded)
    if id_number is None:
        return False
    try:
        datetime.strptime(id_number["born"], "%Y%m%d")
    except ValueError:
        return False
    return True


def _not_in_range(name: str, most: int, extra: dict[str, Any] | None = None) -> InvalidRequest:
    return InvalidRequest(
        f"参数 {name} 必须是 1 至 {most} 之间的整数。",
        f"{name} must be a whole number from 1 to {most}.",
        code=f"invalid_{name}",
        extra=extra,
    )


#: Why a page limit is what it is, when the platform's page limit sets it (Chinese, English).
_PLATFORM_LIMIT = ("平台每页上限", "the gateway's page limit")
#: ... and when the scenario's per-request cap sets it.
_SCENARIO_LIMIT = ("本场景本次可查看的上限", "what this scenario allows you per request now")


def page_size_over_limit(limit: int, why_zh: str, why_en: str) -> InvalidRequest:
    """422 ``page_size_over_limit``: more records in one request than ``limit`` allows, and what sets it."""
    return InvalidRequest(
        f"每页最多 {limit} 条（{why_zh}），请减少每页条数后分页查看。",
        f"page_size may be at most {limit} ({why_en}); ask for fewer per page and read page by page.",
        code="page_size_over_limit",
        extra={"max_page_size": limit},
    )


class _Unparsable(Exception):
    def __init__(self, partial: DataRequest, error: GatewayError) -> None:
        super().__init__(error.code)
        self.partial = partial
        self.error = error


@dataclass
class AuditFacts:
    """What the stages learned, gathered for the one audit event of this request."""

    principal: Principal | None = None
    decision: Decision | None = None
    fields: tuple[str, ...] = ()
    subject_refs: list[str] = field(default_factory=list)
    #: After an audit-ref key rotation: the residents' links to their refs under the retired keys,
    #: aligned with ``subject_refs`` once repeats are dropped (``PseudonymRing.links``).
    subject_links: dict[str, list[str]] = field(default_factory=dict)
    record_refs: list[str] = field(default_factory=list)
    record_count: int = 0
    alerts: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    #: The part of the daily quota this request took before calling the upstream (see hold_quota).
    hold: QuotaHold | None = None


# --------------------------------------------------------------------------------------------- stages


#: Quotes a script or a copy from a document may put around a token: no access token holds one (RFC 6750
#: b64token; a JWT is base64url and dots).
_QUOTES = frozenset("\"'`“”‘’")


#: RFC 6750's b64token: all an access token holds (a JWT: base64url and dots).
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def _as_typed(header_value: str) -> str:
    """A header's text as typed: the server reads its bytes as Latin-1, so a full-width quote (UTF-8)
    arrives as three characters; read back as UTF-8 where it is."""
    try:
        return header_value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return header_value


def _malformed_authorization(zh: str, en: str) -> Unauthenticated:
    """401 ``invalid_token`` for an Authorization header that is not ``Bearer <token>`` as RFC 6750 writes
    it (RFC 6750 §3.1: ``invalid_request``); what to send instead is said in ``zh``/``en``."""
    return Unauthenticated(
        zh,
        en,
        code="invalid_token",
        headers={"WWW-Authenticate": 'Bearer realm="grassroots", error="invalid_request"'},
    )


async def authenticate(runtime: Runtime, authorization: str | None) -> Principal:
    """Stage 1: the bearer token, validated against the issuer's keys (discovery + JWKS), and not signed out
    or revoked (gateway.auth.sessions)."""
    if not authorization:
        raise Unauthenticated(
            "缺少登录凭证，请先通过统一身份认证登录。",
            "No sign-in token. Please sign in through single sign-on first.",
            code="missing_token",
            headers={"WWW-Authenticate": 'Bearer realm="grassroots"'},
        )
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and not token.strip():
        # "Bearer" and nothing: what a script sends when fetching the token failed (TOKEN=$(...) empty).
        # Saying Basic is not accepted would send the reader looking in the wrong place.
        raise _malformed_authorization(
            "登录凭证为空：Authorization 请求头中 Bearer 后面没有访问令牌。请重新登录取得访问令牌，"
            "放在 Bearer 之后（Authorization: Bearer <访问令牌>）。",
            "The Authorization header says Bearer but carries no bearer token: sign in again and put the "
            "access token after it (Authorization: Bearer <access token>).",
        )
    if scheme.lower() != "bearer" and scheme[:6].lower() == "bearer":
        # "Bearer" then a full-width space (a Chinese input method), a tab or a colon: it is a bearer
        # token, so "Basic is not accepted" sent the reader looking for something she never sent.
        raise _malformed_authorization(
            "登录凭证格式不对：Authorization 请求头中 Bearer 与访问令牌之间须用一个半角空格隔开"
            "（Authorization: Bearer <访问令牌>），不能用全角空格、制表符或其他符号。",
            "The Authorization header must separate Bearer from the access token by one plain space "
            "(Authorization: Bearer <access token>), not a full-width space, a tab or another character.",
        )
    if scheme.lower() != "bearer":
        # Not an expired or bad token: the header is not a bearer token at all (Basic, a bare token).
        # Say what is expected; the header itself is never repeated.
        raise _malformed_authorization(
            "登录凭证格式不对：请在 Authorization 请求头中使用 Bearer 方式提交访问令牌"
            "（Authorization: Bearer <访问令牌>），不接受 Basic 等其他方式。",
            "The Authorization header must carry a bearer token (Authorization: Bearer <access token>); "
            "other schemes such as Basic are not accepted.",
        )
    token = token.strip()
    typed = _as_typed(token)
    if typed[:1] in _QUOTES or typed[-1:] in _QUOTES:
        # Bearer "eyJ...": the quotes of a script's variable sent along. Said as such, never the token.
        raise _malformed_authorization(
            "登录凭证格式不对：访问令牌两边多了引号。请去掉引号，按 Authorization: Bearer <访问令牌> 发送"
            '（在命令行中写成 -H "Authorization: Bearer $TOKEN"，引号只包住整个请求头）。',
            "The access token is wrapped in quotes: send it without them, as Authorization: Bearer <access "
            'token> (in a shell, -H "Authorization: Bearer $TOKEN": the quotes go around the whole header '
            "only).",
        )
    if token[:6].lower() == "bearer" and (len(token) == 6 or not token[6].isalnum()):
        # Bearer Bearer eyJ...: "Bearer " in the copied token and again in the header.
        raise _malformed_authorization(
            "登录凭证格式不对：Authorization 请求头中 Bearer 写了两次。请只写一次："
            "Authorization: Bearer <访问令牌>（复制的访问令牌本身不应以 Bearer 开头）。",
            "The Authorization header says Bearer twice: write it once, as Authorization: Bearer <access "
            "token> (the access token copied should not itself begin with Bearer).",
        )
    try:
        principal = await runtime.verifier.verify(token)
    except AuthError as exc:
        if exc.code == "idp_unavailable":
            raise ServiceUnavailable(exc.message_zh, exc.message_en, code=exc.code) from None
        if exc.code == "malformed_token" and not _B64TOKEN.fullmatch(token):
            # Checked only once the token failed (no cost to a valid one): a character no token holds,
            # copied along from a web page or a chat (a no-break or zero-width space, a full-width dot).
            # "Sign in again" did not help: the new token, pasted the same way, fails the same way.
            raise _malformed_authorization(
                "登录凭证格式不对：访问令牌中混入了不属于令牌的字符（例如从网页、文档或聊天软件复制时带上的"
                "不换行空格、零宽字符、全角符号或换行）。访问令牌只含英文字母、数字和 - _ . 等符号：请重新"
                "复制令牌本身，按 Authorization: Bearer <访问令牌> 发送。",
                "The access token holds characters no token has (a no-break or zero-width space, a "
                "full-width sign or a line break, copied along from a web page, a document or a chat). An "
                "access token is letters, digits and - _ . only: copy the token itself again and send it as "
                "Authorization: Bearer <access token>.",
            ) from None
        refused = Unauthenticated(
            exc.message_zh,
            exc.message_en,
            code=exc.code,
            headers={"WWW-Authenticate": exc.www_authenticate() or 'Bearer realm="grassroots"'},
        )
        refused.claimed_org = exc.claimed_org
        raise refused from None
    # A valid signature is not enough: the token may have been signed out, or its user cut off.
    try:
        runtime.check_session(principal)
    except Unauthenticated as revoked:
        revoked.claimed_org = principal.org
        raise
    return principal


def refusal_details(error: GatewayError) -> dict[str, Any]:
    """What a refusal's audit event records beside the reason code. A refused sign-in: the organisation
    the token claimed, when its provider's signature held (a division code, no personal data), so
    supervisors can tell which village's sign-ins fail; the event's ``actor_org`` stays empty, the token
    was not accepted. A departmental system's failure: which system, and its fault code (and HTTP status),
    so a supervisor knows whom to ask and why (``UpstreamFailure.details``)."""
    if isinstance(error, Unauthenticated) and error.claimed_org is not None:
        return {"claimed_org": error.claimed_org}
    if error.upstream_failure is not None:
        return error.upstream_failure.details()
    return {}


def subject_of(principal: Principal) -> Subject:
    """Who asks, as the policy engine sees them: everything the SSO token says, grids included (a grid
    worker's row scope is her grids; without them every check of hers answers grid_scope_unassigned)."""
    return Subject(
        user_id=principal.user_id,
        org=principal.org,
        roles=principal.roles,
        department=principal.department,
        grids=principal.grids,
    )


def _access_of(principal: Principal, request: DataRequest, now: datetime) -> AccessRequest:
    return AccessRequest(
        subject=subject_of(principal),
        action="read",
        dataset=request.dataset,
        scenario=request.scenario,
        fields=None,
        now=now,
    )


def authorize(runtime: Runtime, principal: Principal, request: DataRequest, now: datetime) -> Decision:
    """Stage 2: function-level permission, scenario grant, fields, quotas -> a Decision value."""
    return runtime.policy().decide(_access_of(principal, request, now))


async def told_of_waiting_request(
    runtime: Runtime, access: AccessRequest, refused: Reason, *, third_person: bool = False
) -> tuple[Reason, str | None]:
    """``refused``, or, when it sends the subject to apply (again: ``no_active_grant``, ``grant_revoked``,
    ``grant_expired``) while a request of her organisation for this scenario and dataset already waits
    for a steward, the same code in words saying so (``policies.reasons.request_waiting``), with that
    request's id. "已被撤销。如仍需要，请重新申请。" sent a cadre whose new request waited to apply a third
    time. The one place the data path, ``decide`` and ``explain`` word this: the store is asked only for
    such a refusal, never on an allowed read. Fail closed: a lookup that fails leaves the refusal as it
    was (logged), never an error in its place."""
    if refused.code not in APPLY_AGAIN:
        return refused, None

    def lookup() -> tuple[str, GrantStatus] | None:
        with runtime.sessions() as session:
            waiting = GrantRepository(session).waiting_request(
                access.subject.org, access.scenario, access.dataset
            )
        return None if waiting is None else (waiting.grant_id, waiting.status)

    try:
        found = await asyncio.to_thread(lookup)
    except Exception:
        _log.error("the waiting grant request could not be looked up (%s); refusal kept", where_raised())
        return refused, None
    if found is None:
        return refused, None
    grant_id, status = found
    second = status is GrantStatus.AWAITING_SECOND_APPROVAL
    told = request_waiting(refused.code, grant_id, second_approval=second, third_person=third_person)
    return told, grant_id


def check_page_size(request: DataRequest, obligations: Obligations, max_page_size: int) -> None:
    """Page size above the platform limit or the scenario's per-request cap is refused, not truncated."""
    limit = min(max_page_size, obligations.max_records)
    if request.page < 1:
        raise InvalidRequest("页码必须从 1 开始。", "page must be 1 or greater.", code="invalid_page")
    if request.page_size < 1:
        raise InvalidRequest(
            f"每页条数至少为 1（最多 {limit} 条）。",
            f"page_size must be at least 1 (at most {limit}).",
            code="invalid_page_size",
            extra={"max_page_size": limit},
        )
    check_within_page_limit(request.page_size, obligations, max_page_size)


def check_within_page_limit(records: int, obligations: Obligations, max_page_size: int) -> None:
    """More records in one request than the platform's page limit or the scenario's per-request cap allow
    is refused (422 ``page_size_over_limit``). The data path asks it of a page size, the policy dry run of
    a ``record_count_hint``, so a preview refuses what the data path would refuse, in the same words.

    The limit stated is the one in force, the smaller of the two, with what sets it: a scenario that
    allows 200 a request under a platform page limit of 100 can never serve more than 100."""
    limit = min(max_page_size, obligations.max_records)
    if records <= limit:
        return
    if max_page_size <= obligations.max_records:
        raise page_size_over_limit(limit, *_PLATFORM_LIMIT)
    if obligations.quota_left is not None and obligations.quota_left <= limit:
        # What is left of today's quota sets it: "this scenario's limit is 77" told a cadre who read 100 a
        # page all morning neither why nor that tomorrow the page is hers again.
        raise InvalidRequest(
            f"今天本场景的每日查看数量只剩 {limit} 条，不够这一页。请把每页条数减少到 {limit} 条以内，"
            "或明天再查。",
            f"Only {limit} records are left of today's limit for this scenario, fewer than this page. Ask "
            f"for at most {limit} per page, or continue tomorrow.",
            code="page_size_over_limit",
            extra={"max_page_size": limit},
        )
    raise page_size_over_limit(limit, *_SCENARIO_LIMIT)


async def fetch_upstream(
    runtime: Runtime, target: UpstreamTarget, request: DataRequest, obligations: Obligations
) -> tuple[list[dict[str, Any]], int | None]:
    """Stage 3: call the admitted system with the jurisdiction pushed down as a filter."""
    client = runtime.upstream
    org_prefixes, grids = pushdown_scope(obligations.row_scope)
    if request.record_id is not None:
        record = await client.get_record(target, request.record_id, org_prefixes=org_prefixes, grids=grids)
        return ([record] if record is not None else []), None
    page = await client.list_records(
        target, org_prefixes=org_prefixes, page=request.page, page_size=request.page_size, grids=grids
    )
    return page.items, page.next_page


def pushdown_scope(row_scope: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The row scope as upstream filters: ``org_prefix`` division codes (a micro-grid contributes its
    village, since every registry requires one) and ``grid`` micro-grid codes."""
    grids = tuple(code for code in row_scope if is_grid(code))
    if not grids:
        return tuple(row_scope), ()
    divisions = (grid_village(code) if code in grids else code for code in row_scope)
    return tuple(dict.fromkeys(divisions)), grids


def recheck_scope(
    records: Iterable[Mapping[str, Any]],
    row_scope: Sequence[str],
    org_field: str,
    grid_field: str | None = None,
) -> tuple[list[Mapping[str, Any]], int]:
    """Stage 4: never trust the upstream's filter. A row outside every scope is dropped and counted.

    A division scope is checked against the row's division code; a micro-grid scope against the row's
    grid code (``grid_field``), whole and exact: a grid covers only itself."""
    grids = frozenset(code for code in row_scope if is_grid(code))
    scopes = [code for code in row_scope if code not in grids] if grids else row_scope
    kept: list[Mapping[str, Any]] = []
    dropped = 0
    # A page's rows share a handful of division codes (a village's, usually one): each distinct code is
    # checked once per page. ``covers`` is pure, so the memo answers exactly as the check would.
    inside: dict[str, bool] = {}
    for record in records:
        org = record.get(org_field)
        grid = record.get(grid_field) if grids and grid_field is not None else None
        if isinstance(org, str):
            org_inside = inside.get(org)
            if org_inside is None:
                org_inside = inside[org] = any(_covers_safely(scope, org) for scope in scopes)
        else:
            org_inside = False
        if org_inside or (isinstance(grid, str) and grid in grids):
            kept.append(record)
        else:
            dropped += 1
    return kept, dropped


def _covers_safely(scope: str, org: str) -> bool:
    try:
        return covers(scope, org)
    except ValueError:
        return False


def project_fields(records: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> list[dict[str, Any]]:
    """Stage 5: keep only the grant's whitelisted fields (others are dropped, not masked); ``id`` always."""
    wanted = ("id", *(f for f in fields if f != "id"))
    return [{name: record[name] for name in wanted if name in record} for record in records]


def sealed_subjects(plan: MaskingPlan, subject_refs: Sequence[str | None]) -> list[bytes | None] | None:
    """What stage 6 seals into a record's values, one per record (None where it names no resident), given
    ``subject_refs`` (`record_subject_refs`); None when ``plan`` seals no resident into anything (no
    ``aes_gcm``: the usual plan, nothing computed)."""
    if not plan.names_subjects:
        return None
    return [None if r is None else packed_ref(r) for r in subject_refs]


def mask(
    records: Iterable[Mapping[str, Any]], plan: MaskingPlan, subjects: Sequence[bytes | None] | None
) -> list[dict[str, Any]]:
    """Stage 6: desensitise every value by its classification (masking rules, fail closed).

    ``subjects`` (`sealed_subjects`) are sealed into the values of fields whose operator names the record's
    resident (an ``aes_gcm`` envelope, enc:v3:), so that unmasking one later is recorded as a read of her
    data (README "Unmask"); response DLP seals its findings with them too (`Runtime.scan_free_text`)."""
    return mask_records(records, plan, subjects)


def record_subject_refs(
    dataset: DatasetView, kept: Sequence[Mapping[str, Any]], refs: list[str]
) -> list[str | None]:
    """One ref per record of ``kept`` (None where it names no resident), given ``refs``, the refs of
    ``dataset.subject_values(kept)`` in order. When every record names its resident (the usual page) that
    list is already one per record, and nothing is computed."""
    if len(refs) == len(kept):
        return list(refs)
    by_resident = dict(zip(dataset.subject_values(kept), refs, strict=True))
    per_record = (dataset.subject_values((record,)) for record in kept)
    return [by_resident[found[0]] if found else None for found in per_record]


def guard_reidentification(
    result: KAnonymityResult, facts: AuditFacts, min_records: int
) -> list[dict[str, Any]]:
    """Stage 6, last step: a large list must stay k-anonymous over the catalog's quasi-identifiers
    after masking (GB/T 37964-2019 §A.2); it is generalised further, or refused with a reason."""
    generalised = {name: step for name, step in result.steps.items() if step}
    if not result.ok:
        facts.alerts.append("reidentification_risk")
        # "generalised" means applied to released data; on a refusal nothing was released, so what was
        # tried is recorded apart: which quasi-identifiers were coarsened, and how far, before giving up.
        facts.details["reidentification_guard"] = {
            "k": result.k,
            "smallest_class": result.smallest_class,
            "tried": generalised,
        }
        raise Forbidden(
            f"{result.reason_zh}。请把每页条数减少到 {min_records - 1} 条以内后重试；"
            "确需成批数据的，请联系数据管理员。",
            f"{result.reason_en}. Ask for at most {min_records - 1} records per page, "
            "or contact the data steward for bulk data.",
            code="reidentification_risk",
            extra={"k": result.k, "max_page_size": min_records - 1},
        )
    if generalised:
        facts.details["reidentification_guard"] = {"k": result.k, "generalised": generalised}
    return result.records


async def hold_quota(
    runtime: Runtime, principal: Principal, request: DataRequest, facts: AuditFacts, now: datetime
) -> None:
    """Stage 2, last step: take this request's page out of the daily quota before the upstream is called,
    atomically with every other request in flight (and, on a shared database, every other process), so
    parallel requests can never together serve past the quota. What is not served is given back when the
    event is committed (:func:`_served_count`)."""
    scenario = runtime.policy().scenarios.get(request.scenario)
    assert scenario is not None  # the decision allowed it
    wanted = 1 if request.record_id is not None else request.page_size
    key = (principal.user_id, request.scenario, quota_day(now))
    try:
        facts.hold = await runtime.quotas.hold(key, wanted, scenario.daily_quota_per_user)
    except QuotaUnavailable:
        # The daily count is kept with the access log (README, stage 8): unwritable, nothing is served.
        _log.error("the daily quota counter cannot be written; refusing the request")
        raise AuditLogUnavailable() from None
    if facts.hold is not None:
        return
    # Taken meanwhile by requests in flight (or another process): decide again on the count as it now
    # stands, which refuses in the engine's own words (quota used up, or fewer left than the page).
    decision = authorize(runtime, principal, request, now)
    facts.decision = decision
    if not decision.allowed or decision.obligations is None:
        raise await _refused(runtime, principal, request, decision, now)
    if request.record_id is None:
        check_page_size(request, decision.obligations, runtime.settings.max_page_size)
    raise _refusal(decision, fallback="quota_exceeded")


def _refusal(decision: Decision, fallback: str | None = None, waiting: str | None = None) -> Forbidden:
    reason = decision.reasons[0] if decision.reasons and fallback is None else None
    code = fallback or decision.code
    status = 404 if code in _NOT_FOUND_REASONS else 403
    return Forbidden(
        reason.message_zh if reason else _QUOTA_TAKEN[0] if fallback else None,
        reason.message_en if reason else _QUOTA_TAKEN[1] if fallback else None,
        code=code,
        status_code=status,
        extra={"pending_grant": waiting} if waiting is not None else None,
    )


async def _refused(
    runtime: Runtime, principal: Principal, request: DataRequest, decision: Decision, now: datetime
) -> Forbidden:
    """Stage 2's refusal, in the words ``policy explain`` gives: a request of the caller's organisation
    that already waits is named (``pending_grant``) rather than "apply (again)"."""
    if not decision.reasons:
        return _refusal(decision)
    access = _access_of(principal, request, now)
    told, waiting = await told_of_waiting_request(runtime, access, decision.reasons[0])
    return _refusal(replace(decision, reasons=(told, *decision.reasons[1:])), waiting=waiting)


_QUOTA_TAKEN = (
    "今日查看数量已达上限（含正在处理的请求），请明天再查看。",
    "Today's record limit is reached (requests in progress included). Please continue tomorrow.",
)


class EventUnencodable(AuditLogUnavailable):
    """The event itself cannot be encoded (a value RFC 8785 JSON cannot carry): nothing was written."""


def with_request_source(event: AuditEvent) -> AuditEvent:
    """``event`` with the source of the request being served (:func:`gateway.refusal_bursts.request_source`)
    when it has none of its own: every event a request causes says where the request came from, whichever
    code built it. Outside a request (a background task) it is left as it is."""
    source = request_source()
    if event.source is not None or source is None:
        return event
    return replace(event, source=source)


async def record_audit(
    runtime: Runtime, event: AuditEvent, count: tuple[QuotaKey, int] | None = None
) -> None:
    """Stages 7 and 8: append the event and wait until it is durably committed, with ``count`` (the
    records served, added to the caller's daily quota) in the same transaction; fail closed with 503.
    The event records the request's source (:func:`with_request_source`)."""
    started = time.perf_counter()
    try:
        try:
            event = with_request_source(event)
            pending = runtime.appender.append(event, count)  # encodes (RFC 8785) now, or raises
        except (ValueError, TypeError):
            _log.error("the audit event cannot be encoded (%s); refusing the request", where_raised())
            raise EventUnencodable() from None
        await pending
    except AuditLogUnavailable:
        raise
    except AuditUnavailable:
        _log.error("audit append failed; refusing the request", extra={"kind": event.kind})
        raise AuditLogUnavailable() from None
    except Exception:
        _log.error("audit append failed unexpectedly (%s); refusing the request", where_raised())
        raise AuditLogUnavailable() from None
    finally:
        runtime.telemetry.audit_latency_ms.record((time.perf_counter() - started) * 1000.0)


# ------------------------------------------------------------------------------------------ composition


async def run_data_request(
    runtime: Runtime,
    authorization: str | None,
    dataset: str,
    query: Mapping[str, str | None],
    *,
    record_id: str | None = None,
    request_id: str | None = None,
    repeated: Sequence[str] = (),
    unknown_parameters: bool = False,
    trailing_slash: bool = False,
) -> dict[str, Any]:
    """Run the whole pipeline; return the response body or raise a GatewayError (after auditing it).
    ``repeated``: the query's parameters given more than once (refused, 422 ``repeated_parameter``);
    ``unknown_parameters``: the query held a parameter the path does not read (422 ``unknown_parameter``);
    ``trailing_slash``: the path ended in ``/`` (404 ``trailing_slash``)."""
    with runtime.telemetry.request_span("data_request") as root:
        ctx = root.get_span_context()
        trace_id = f"{ctx.trace_id:032x}" if ctx.is_valid else None
        return await _run(
            runtime,
            authorization,
            dataset,
            query,
            record_id,
            request_id,
            trace_id,
            repeated,
            unknown_parameters,
            trailing_slash,
        )


async def _run(
    runtime: Runtime,
    authorization: str | None,
    dataset: str,
    query: Mapping[str, str | None],
    record_id: str | None,
    request_id: str | None,
    trace_id: str | None,
    repeated: Sequence[str],
    unknown_parameters: bool = False,
    trailing_slash: bool = False,
) -> dict[str, Any]:
    telemetry = runtime.telemetry
    facts = AuditFacts()
    now = datetime.now(UTC)
    body: dict[str, Any] | None = None
    failure: GatewayError | None = None
    request = _recordable(dataset, query.get("scenario"), record_id, request_id)
    try:
        with telemetry.span("authenticate"):
            facts.principal = await authenticate(runtime, authorization)
        try:
            request = parse_data_request(
                dataset,
                query.get("scenario"),
                query.get("page"),
                query.get("page_size"),
                record_id,
                request_id,
                runtime.settings.max_page_size,
                repeated,
                unknown_parameters,
                trailing_slash,
            )
        except _Unparsable as bad:
            request = bad.partial
            raise bad.error from None
        body = await _authorized_path(runtime, request, facts, now)
    except GatewayError as exc:
        failure = exc
    except Exception:
        _log.error("unexpected error in the data path: %s", where_raised())
        failure = GatewayError()

    if isinstance(failure, Unauthenticated):
        # No valid token: past the address's allowance this is counted, not recorded (429, no data).
        try:
            runtime.refuse_flood(request_source(), failure, request.kind)
        except GatewayError as busy:
            runtime.telemetry.requests.add(1, {"dataset": "invalid", "outcome": busy.code})
            raise
    with telemetry.span("audit") as span:
        try:
            event, failure = await _audit(runtime, request, facts, failure, trace_id, now)
        except AuditLogUnavailable:
            if facts.hold is not None and facts.hold.in_store:
                await runtime.quotas.give_back(facts.hold)
            raise
        finally:
            if facts.hold is not None:
                runtime.quotas.drop(facts.hold)
        span.set_attribute("grassroots.audit.outcome", event.outcome.value)
    outcome = "allowed" if failure is None else failure.code
    # The event's dataset: a catalogued code or "invalid", never what was typed (bounded label values).
    runtime.telemetry.requests.add(1, {"dataset": event.dataset or "invalid", "outcome": outcome})
    if failure is not None:
        raise failure
    assert body is not None
    return body


async def _audit(
    runtime: Runtime,
    request: DataRequest,
    facts: AuditFacts,
    failure: GatewayError | None,
    trace_id: str | None,
    now: datetime,
) -> tuple[AuditEvent, GatewayError | None]:
    """Stages 7 and 8 for the data path: the event committed, and the failure to answer with. Never
    serve or refuse unlogged (PIPL Art. 56): a request whose event cannot be built or encoded is recorded
    by a minimal event and answered 503, with no data."""
    try:
        event: AuditEvent | None = _build_event(runtime, request, facts, failure, trace_id, now)
    except Exception:
        _log.error("the audit event could not be built (%s)", where_raised())
        event = None
    if event is not None:
        try:
            await record_audit(runtime, event, _served_count(request, facts, failure, now))
            return event, failure
        except EventUnencodable:
            pass
    failure = AuditLogUnavailable()
    event = _minimal_event(runtime, request, facts, trace_id, now)
    await record_audit(runtime, event, _served_count(request, facts, failure, now))
    return event, failure


def _served_count(
    request: DataRequest, facts: AuditFacts, failure: GatewayError | None, now: datetime
) -> tuple[QuotaKey, int] | None:
    """What this request adds to its caller's daily quota for the scenario (None: nothing): the records
    served, less what its hold already took (a refusal gives the whole hold back)."""
    served = 0 if failure is not None else facts.record_count
    if facts.hold is not None:
        return facts.hold.settlement(served)
    principal, decision = facts.principal, facts.decision
    if served <= 0 or principal is None or decision is None or decision.obligations is None:
        return None
    return (principal.user_id, request.scenario, quota_day(now)), served


#: The words for a dataset the catalog does not have (404 ``unknown_dataset``), answered before any policy
#: check; ``policy explain`` says the same (gateway.routes.policy).
UNKNOWN_DATASET: Final = (
    "没有这个数据集，请检查链接中的数据集代码（小写英文，例如 residents）；各使用场景可查看的数据集见"
    " grassroots grants scenarios（GET /api/v1/scenarios）。",
    "There is no such dataset. Check the dataset code in the link (lower case, e.g. residents); the "
    "datasets each scenario may read are listed by grassroots grants scenarios (GET /api/v1/scenarios).",
)


async def _authorized_path(
    runtime: Runtime, request: DataRequest, facts: AuditFacts, now: datetime
) -> dict[str, Any]:
    telemetry = runtime.telemetry
    principal = facts.principal
    assert principal is not None
    dataset = runtime.dataset(request.dataset)
    if dataset is None:
        # The code is not repeated: what a caller typed into the link may be anything, personal data too.
        raise NotFound(*UNKNOWN_DATASET, code="unknown_dataset")
    if request.record_id is not None and not RECORD_ID_PATTERN.fullmatch(request.record_id):
        raise NotFound()

    with telemetry.span("authorize") as span:
        await runtime.quotas.prefetch(principal.user_id, request.scenario, quota_day(now))
        decision = authorize(runtime, principal, request, now)
        facts.decision = decision
        span.set_attribute("grassroots.decision", decision.code)
    if not decision.allowed or decision.obligations is None:
        raise await _refused(runtime, principal, request, decision, now)
    obligations = decision.obligations
    if request.record_id is None:
        check_page_size(request, obligations, runtime.settings.max_page_size)

    target = runtime.route(request.dataset, now)  # raises if the providing system is not admitted
    await hold_quota(runtime, principal, request, facts, now)
    assert facts.hold is not None

    with telemetry.span("fetch_upstream") as span:
        span.set_attribute("grassroots.system", target.system_id)
        raw, next_page = await fetch_upstream(runtime, target, request, obligations)

    with telemetry.span("recheck_scope") as span:
        kept, dropped = recheck_scope(raw, obligations.row_scope, dataset.org_field, dataset.grid_field)
        span.set_attribute("grassroots.scope_violations", dropped)
    if dropped:
        facts.alerts.append("upstream_scope_violation")
        facts.details["scope_violations"] = dropped
        facts.details["system"] = target.system_id
        runtime.telemetry.scope_violations.add(dropped, {"system": target.system_id})
        _log.warning(
            "departmental system %s answered %d record(s) outside the pushed-down scope; dropped",
            target.system_id,
            dropped,
        )
    if request.record_id is not None and not kept:
        # Outside the jurisdiction answers exactly like "does not exist" (no existence leak).
        raise NotFound()
    if len(kept) > facts.hold.count:
        # Never more than the page asked for (and held): an upstream's extra rows are not served.
        kept = kept[: facts.hold.count]

    residents = dataset.subject_values(kept)
    facts.subject_refs = [runtime.pseudonymizer.ref(v) for v in residents]
    # One resident's refs before and after a key rotation are unrelated; the links let the "one resident
    # read by many users" rule count them as one (README "Keys"). Repeats dropped as in the event's refs.
    facts.subject_links = runtime.audit_refs.links(list(dict.fromkeys(residents)))
    facts.record_refs = [runtime.pseudonymizer.ref(str(r["id"])) for r in kept]
    facts.record_count = len(kept)

    with telemetry.span("project_fields"):
        projected = project_fields(kept, obligations.fields)
    facts.fields = tuple(dict.fromkeys(("id", *obligations.fields)))

    with telemetry.span("mask"):
        plan = runtime.masking_plan(
            dataset=request.dataset,
            fields=facts.fields,
            role=acting_role(principal.roles, runtime.policy().scenarios.get(request.scenario)),
            scenario=request.scenario,
            profile=obligations.masking_profile,
            now=now,
        )
        subjects = sealed_subjects(plan, record_subject_refs(dataset, kept, facts.subject_refs))
        masked = mask(projected, plan, subjects)
        drift = runtime.scan_free_text(request.dataset, masked, plan, subjects)
        if drift:
            facts.alerts.append("catalog_drift")
            facts.details["catalog_drift"] = drift
        if request.record_id is None and len(masked) >= runtime.settings.kanon_min_records:
            # Smaller pages are not a release (enforce_k_anonymity would return them unchanged).
            masked = guard_reidentification(
                runtime.reidentification_guard(request.dataset, masked),
                facts,
                runtime.settings.kanon_min_records,
            )
    facts.details["grant_id"] = obligations.grant_id
    facts.details["masking_profile"] = obligations.masking_profile

    if request.record_id is not None:
        return masked[0]
    if not masked and next_page is None and request.page > 1:
        # Past the last page: an empty list alone read as "the data is gone". The page asked for is not
        # repeated (a typed value).
        return {"items": masked, "next_page": None, **_PAST_THE_LAST_PAGE}
    return {"items": masked, "next_page": next_page}


#: The note on an empty page after the last one (Chinese, then English).
_PAST_THE_LAST_PAGE: Final = {
    "note": "这一页没有记录：所查页码已超过最后一页。请从第 1 页开始，按返回的 next_page 翻页"
    "（next_page 为 null 即已是最后一页）。",
    "note_en": "This page holds no records: it is past the last page. Start from page 1 and follow "
    "next_page (null means the last page).",
}


def acting_role(roles: Sequence[str], scenario: Scenario | None) -> str:
    """The role a request is made in, for the masking plan: the first of the caller's roles the scenario
    admits (the decision allowed the read for one of them), so that a role-specific masking rule follows
    the duty the data is read for, not the order of the roles in the token."""
    if scenario is not None:
        for role in roles:
            if role in scenario.roles_allowed:
                return role
    return roles[0] if roles else ""


def _build_event(
    runtime: Runtime,
    request: DataRequest,
    facts: AuditFacts,
    failure: GatewayError | None,
    trace_id: str | None,
    now: datetime,
) -> AuditEvent:
    principal = facts.principal
    if failure is None:
        outcome, reason = Outcome.ALLOWED, "allowed"
    elif failure.status_code >= 500:
        outcome, reason = Outcome.ERROR, failure.code
    else:
        outcome, reason = Outcome.REFUSED, failure.code
    details: dict[str, Any] = dict(facts.details)
    if failure is not None:
        details.update(refusal_details(failure))
    if facts.alerts:
        details["alerts"] = sorted(set(facts.alerts))
    if failure is None and facts.subject_refs and facts.subject_links:
        details[SUBJECT_REF_LINKS] = facts.subject_links
    if request.record_id is not None and failure is not None:
        # The id the caller asked for is recorded only as a keyed HMAC.
        details["requested_record_ref"] = runtime.pseudonymizer.ref(request.record_id)
    if principal is not None and principal.grids:
        # Area codes, not personal data: replay decides a grid worker's past request with these grids.
        details["actor_grids"] = list(principal.grids)
    if request.record_id is None and request.paged:
        details["page"] = request.page
        details["page_size"] = request.page_size
    return AuditEvent(
        kind=request.kind,
        outcome=outcome,
        actor=principal.user_id if principal else ANONYMOUS_ACTOR,
        actor_org=principal.org if principal else None,
        actor_roles=tuple(principal.roles) if principal else (),
        # Only codes the gateway knows are recorded: a well-formed code that names nothing is still
        # something a caller typed, and may be anything ("id11010519491231002x" is a valid code shape).
        scenario=request.scenario if request.scenario in runtime.policy().scenarios else None,
        dataset=request.dataset if runtime.dataset(request.dataset) is not None else "invalid",
        fields=facts.fields if failure is None else (),
        record_count=facts.record_count if failure is None else 0,
        subject_refs=tuple(dict.fromkeys(facts.subject_refs)) if failure is None else (),
        record_refs=tuple(facts.record_refs) if failure is None else (),
        reason=reason,
        trace_id=trace_id,
        request_id=request.request_id,
        details=details,
        occurred_at=now,
        source=request_source(),
    )


def _minimal_event(
    runtime: Runtime, request: DataRequest, facts: AuditFacts, trace_id: str | None, now: datetime
) -> AuditEvent:
    """The event of a request whose full event could not be built or encoded: who asked, for which
    catalogued dataset, and an error outcome; nothing else the request carried."""
    principal = facts.principal
    minimal = AuditEvent(
        kind=request.kind,
        outcome=Outcome.ERROR,
        actor=principal.user_id if principal else ANONYMOUS_ACTOR,
        actor_org=principal.org if principal else None,
        actor_roles=tuple(principal.roles) if principal else (),
        dataset=request.dataset if runtime.dataset(request.dataset) is not None else "invalid",
        reason="audit_event_unbuildable",
        occurred_at=now,
        source=request_source(),
    )
    try:
        return replace(minimal, trace_id=trace_id, request_id=request.request_id)
    except Exception:  # ids that the event refuses are left out, the request is still recorded
        return minimal
