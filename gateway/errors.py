"""One error base class carrying an HTTP status, and one JSON shape for every error.

Shape: ``{"error": code, "message": <zh>, "message_en": <en>, "request_id": ...}``. Messages are written
for the person who reads them (a village cadre first), never carry a stack trace, a token, a key or
personal data.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class UpstreamFailure:
    """What went wrong calling a departmental system, for its operators and supervisors (log line, metric,
    audit event), never for the answer: ``system`` its id, ``call`` one of ``list``/``read``/``lookup``,
    ``fault`` a code of the gateway's own (README "The departmental-system contract": ``timeout``,
    ``redirect``, ``not_json`` …), ``status`` the HTTP status the system answered, when it answered one.
    Codes only: nothing the system sent is kept."""

    system: str
    call: str
    fault: str
    status: int | None = None

    def details(self) -> dict[str, Any]:
        """As an audit event's ``details`` record it."""
        recorded: dict[str, Any] = {"system": self.system, "upstream_fault": self.fault}
        if self.status is not None:
            recorded["upstream_status"] = self.status
        return recorded


class GatewayError(Exception):
    status_code: int = 500
    code: str = "internal_error"
    message_zh: str = "系统内部错误，请稍后重试；如持续出现，请联系平台管理员。"
    message_en: str = "Internal error. Please retry later; contact the platform administrator if it persists."
    #: Set on the error of a failed call to a departmental system (gateway.upstream).
    upstream_failure: UpstreamFailure | None = None

    def __init__(
        self,
        message_zh: str | None = None,
        message_en: str | None = None,
        *,
        code: str | None = None,
        status_code: int | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if message_zh is not None:
            self.message_zh = message_zh
        if message_en is not None:
            self.message_en = message_en
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        super().__init__(self.code)

    def body(self, request_id: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "error": self.code,
            "message": self.message_zh,
            "message_en": self.message_en,
            "request_id": request_id,
        }
        body.update(self.extra)
        return body


class Unauthenticated(GatewayError):
    status_code = 401
    code = "invalid_token"
    message_zh = "登录凭证无效或已过期，请重新登录。"
    message_en = "Your sign-in token is invalid or has expired. Please sign in again."
    #: The organisation a token its own provider signed claimed (gateway.auth.oidc.AuthError.claimed_org):
    #: recorded in the refusal's audit event, never in the answer.
    claimed_org: str | None = None


class Forbidden(GatewayError):
    status_code = 403
    code = "forbidden"
    message_zh = "您没有执行此操作的权限。"
    message_en = "You are not allowed to do this."


class NotFound(GatewayError):
    status_code = 404
    code = "not_found"
    # One answer whether the record exists elsewhere or nowhere (no existence leak), with what to do next.
    message_zh = (
        "未找到该记录，或该记录不在您的管辖范围内。记录编号可能输错了，或该记录不在您的辖区或授权范围内："
        "请先按页查看本辖区的记录，再从中复制记录的 id 查看单条记录。"
    )
    message_en = (
        "Not found, or not within your jurisdiction. The record id may be mistyped, or the record is outside "
        "your jurisdiction or grant: list your jurisdiction's records first, then take the record's id from "
        "that list."
    )


def trailing_slash_refused(form: str | None) -> NotFound:
    """404 ``trailing_slash``: an address that ends in ``/`` where the gateway serves it without one.

    One wording for both doors (the data path's and every other route's): that nothing was done, and the
    address to send instead, as the route's form (``/api/v1/admission/systems/{system_id}``), never the path
    as sent (an id in it may be anything, personal data too). Answered rather than redirected: a redirect's
    address would be built from the caller's ``Host`` header, and a POST's body would be sent again to it."""
    zh = "接口地址末尾多了斜杠“/”，本次请求未被处理，没有读取或更改任何数据。请去掉末尾的斜杠后重新发送"
    en = 'The address ends in a slash "/": the request was not carried out, and nothing was read or changed. '
    en += "Remove the trailing slash and send it again"
    if form is None:  # a route the document leaves out (a page)
        return NotFound(f"{zh}。", f"{en}.", code="trailing_slash")
    braces_zh, braces_en = ("（花括号处填实际的值）", " (with the real values in place of the braces)")
    if "{" not in form:
        braces_zh = braces_en = ""
    return NotFound(
        f"{zh}：正确的地址形如 {form}{braces_zh}。",
        f"{en} to {form}{braces_en}.",
        code="trailing_slash",
    )


class InvalidRequest(GatewayError):
    status_code = 422
    code = "invalid_request"
    message_zh = "请求参数有误。"
    message_en = "The request is not valid."


class UpstreamError(GatewayError):
    status_code = 502
    code = "upstream_bad_response"
    message_zh = "部门业务系统返回了无法识别的数据，本次未返回任何数据，请稍后重试。"
    message_en = "The departmental system returned an unusable answer; no data was returned. Retry later."


class UpstreamCredentialRefused(UpstreamError):
    """The departmental system refused the gateway itself (401/403): its service token or the stored
    outbound credential. Someone must act, so the message says who, not "retry"."""

    code = "upstream_credential_refused"
    message_zh = (
        "部门业务系统拒绝了网关的调用凭证，本次未返回任何数据。请联系平台管理员，"
        "由该系统所属部门的系统管理员核对并更新网关的出站凭证。"
    )
    message_en = (
        "The departmental system refused the gateway's credentials; no data was returned. Contact the "
        "platform administrator: the system's departmental admin must check and update the gateway's "
        "outbound credential."
    )


class UpstreamTlsFailed(UpstreamError):
    """No TLS session with the departmental system: its certificate does not verify, or one side speaks
    https and the other plain http. Retrying changes nothing; its department must fix the address or the
    certificate."""

    code = "upstream_tls_failed"
    message_zh = (
        "部门业务系统的加密连接（https）建立失败：证书无法验证，或其地址与实际提供的协议不符，"
        "本次未返回任何数据。请联系平台管理员，由该系统所属部门核对登记的地址和证书。"
    )
    message_en = (
        "The departmental system's encrypted (https) connection failed: its certificate does not verify, or "
        "its address does not match the protocol it serves; no data was returned. Contact the platform "
        "administrator: the system's department must check its registered address and certificate."
    )


class UpstreamUnavailable(GatewayError):
    status_code = 503
    code = "upstream_unavailable"
    message_zh = "部门业务系统暂时无法连接，本次未返回任何数据，请稍后重试。"
    message_en = "The departmental system cannot be reached; no data was returned. Retry later."


class UpstreamNotEncrypted(GatewayError):
    """A stored registration names a plain http:// upstream off this host; in production the gateway will
    not send its outbound credential or a lookup's ID number over it (fail closed, no call made)."""

    status_code = 503
    code = "upstream_not_encrypted"
    message_zh = (
        "部门业务系统登记的地址未加密（http://），生产模式下网关不向其发送凭证和查询，本次未返回任何数据。"
        "请联系该系统所属部门的系统管理员，将登记地址改为 https://。"
    )
    message_en = (
        "The departmental system is registered at an unencrypted http:// address; in production the gateway "
        "sends it no credential and no query, and no data was returned. Ask the system's departmental admin "
        "to change the registered address to https://."
    )


class UpstreamTimeout(GatewayError):
    status_code = 504
    code = "upstream_timeout"
    message_zh = "部门业务系统响应超时，本次未返回任何数据，请稍后重试。"
    message_en = "The departmental system did not answer in time; no data was returned. Retry later."


class AuditLogUnavailable(GatewayError):
    status_code = 503
    code = "audit_unavailable"
    message_zh = "访问记录暂时无法写入，为保证每次访问可追溯，本次请求已拒绝，请稍后重试。"
    message_en = "The access log cannot be written right now, so the request was refused. Retry later."


class BodyTooLarge(GatewayError):
    """RFC 9110 §15.5.14 (413 Content Too Large): the request body is over the platform's limit
    (``GRASSROOTS_MAX_BODY_BYTES``), refused before more of it is read.

    The answer closes the connection (§15.5.14: the server "MAY close the connection"): the rest of an
    oversized body is not worth reading only to throw it away."""

    status_code = 413
    code = "body_too_large"

    def __init__(self, limit_bytes: int) -> None:
        size = (
            f"{limit_bytes / 1_048_576:g} MiB" if limit_bytes >= 1_048_576 else f"{limit_bytes / 1024:g} KiB"
        )
        super().__init__(
            f"请求体过大：本平台接受的请求体最大为 {size}（{limit_bytes} 字节），"
            "本次请求未处理，请缩小后重试。",
            f"The request body is too large: this platform accepts at most {size} ({limit_bytes} bytes). "
            "The request was not processed; send less and retry.",
            headers={"Connection": "close"},
            extra={"limit_bytes": limit_bytes},
        )


class ServiceUnavailable(GatewayError):
    status_code = 503
    code = "service_unavailable"
    message_zh = "服务暂时不可用，请稍后重试。"
    message_en = "The service is temporarily unavailable. Retry later."


def where_raised() -> str:
    """For a log line in an ``except`` block: the exception's type and where it was raised, never its
    message (a library's message may repeat the value it choked on: a phone number, an ID number)."""
    kind, _, tb = sys.exc_info()
    if kind is None:
        return "no exception"
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return kind.__name__
    code = tb.tb_frame.f_code
    return f"{kind.__name__} at {Path(code.co_filename).name}:{tb.tb_lineno} in {code.co_name}"
