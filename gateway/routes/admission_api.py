"""Admission registry API (准入联审): registration, joint review, supervision, credentials, burden view,
and the OAuth 2 token endpoint and system-facing routes for admitted departmental systems.

People (SSO tokens, casbin function-level permissions on resource ``admission``):

* a department's ``system_admin`` registers, edits, submits, withdraws and resubmits their own department's
  systems (the department comes from the token), sets their credentials and re-certifies them;
* an ``admission_reviewer`` votes for the office named in their token (claim ``office``), never for a
  system of their own department;
* a ``supervisor`` (or ``platform_admin``) suspends, reinstates and revokes systems and runs the lapse job.

Systems (OAuth 2 client credentials, RFC 6749 §4.4): ``POST /oauth/token`` with the client secret
(``client_secret_basic`` / ``client_secret_post``) or a signed assertion (RFC 7523 ``private_key_jwt``)
returns a short-lived RFC 9068 access token signed with the gateway's own Ed25519 key. Every system call
checks the system's admission status live (the process's status snapshot, reloaded whenever the registry
version moves): suspended, revoked, lapsed or never approved systems are refused, naming the system.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import csv
import functools
import io
import json
import os
import re
import secrets
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar
from urllib.parse import parse_qsl, unquote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi import Path as PathParam
from pydantic import Field, SecretStr
from sqlalchemy.orm import Session

import audit
from admission import (
    CLIENT_ASSERTION_TYPE,
    DATASET_ID_PATTERN,
    REQUIRED_KEYS,
    SYSTEM_ID_PATTERN,
    AdmissionConfig,
    AdmissionService,
    BurdenChecklist,
    DatabaseReplayGuard,
    IssuedAccessToken,
    ReplayStoreUnavailable,
    SystemRegistration,
    SystemStatus,
    SystemTokenIssuer,
    TokenError,
    assertion_client_id,
    district_report,
    load_admission_config,
    registration_from_mapping,
    routing_verdict,
    verify_client_assertion,
    village_burden,
)
from admission.model import STATUS_LABELS_ZH
from audit import AuditEvent, Outcome
from gateway.admin_support import (
    OutOfReach,
    PermissionFirstRoute,
    Permitted,
    StrictBody,
    domain_errors,
    record_read,
    refused_reads,
    supervised_prefix,
    unit_of_work,
)
from gateway.admission_settings import AdmissionSettings, admission_settings, system_token_key_path
from gateway.app import get_runtime, json_nested_too_deep, request_id_of
from gateway.auth.oidc import Principal
from gateway.errors import (
    Forbidden,
    GatewayError,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    Unauthenticated,
)
from gateway.free_text import refuse_personal_data
from gateway.openapi_doc import ecma_pattern, other_formats
from gateway.outbound import open_outbound_credential, seal_outbound_credential
from gateway.pipeline import record_audit
from gateway.refusal_bursts import request_source
from gateway.registration_keys import REGISTRATION_KEYS, REGISTRATION_VIEW_KEYS
from gateway.runtime import Runtime
from gateway.settings import RunMode, tls_or_loopback
from gateway.upstream import load_or_create_ed25519
from grassroots_common.divisions import VILLAGE_CODE
from masking import Catalog, SemanticType
from policies import divisions
from policies.scenarios import CHINA_STANDARD_TIME

router = APIRouter(tags=["admission"], route_class=PermissionFirstRoute)

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
#: A system id in a path: one that is not a system id is no system (404), as the model's pattern says.
SystemIdPath = Annotated[str, PathParam(json_schema_extra={"pattern": ecma_pattern(SYSTEM_ID_PATTERN)})]
AuthHeader = Annotated[str | None, Header()]
T = TypeVar("T")

_PREFIX = "/api/v1/admission"
#: Roles that see every registration; a system admin sees only their own department's.
_REGISTRY_WIDE_ROLES = frozenset({"admission_reviewer", "supervisor", "auditor", "platform_admin"})


@lru_cache(maxsize=1)
def admission_config() -> AdmissionConfig:
    return load_admission_config(admission_settings().config_path)


def department_names() -> dict[str, str]:
    """Department code -> Chinese name: the admission offices' names over the shared table
    (:data:`grassroots_common.departments.DEPARTMENT_NAMES_ZH`)."""
    return admission_config().department_names_zh()


def _department_json(department: str) -> dict[str, Any]:
    """A department as a reviewer reads it (区民政局) beside the code machines match on (civil_affairs);
    the name is null for a department neither table names."""
    return {"department": department, "department_name_zh": department_names().get(department)}


def _service(session: Session) -> AdmissionService:
    return AdmissionService(session, admission_config())


# ------------------------------------------------------------------------------------------ helpers


def _is_registry_wide(principal: Principal) -> bool:
    return bool(_REGISTRY_WIDE_ROLES & set(principal.roles))


def _is_department_admin(principal: Principal, reg: SystemRegistration) -> bool:
    return "system_admin" in principal.roles and principal.department == reg.department


def _visible(principal: Principal, reg: SystemRegistration) -> bool:
    return _is_registry_wide(principal) or _is_department_admin(principal, reg)


_NOT_FOUND: Final = (
    "准入登记册中没有这个系统，请核对系统标识（admission list 列出您可查看的系统）。",
    "No such system in the admission registry. Check the system id (admission list shows the systems "
    "you may see).",
)


_SYSTEM_ID: Final = re.compile(SYSTEM_ID_PATTERN)
_NOT_A_SYSTEM_ID: Final = (
    "系统标识只由小写字母、数字和连字符组成（例如 elderly-care-visits），请核对大小写，不要用下划线或空格。",
    "A system id holds only lowercase letters, digits and hyphens (e.g. elderly-care-visits): check the "
    "case, and use no underscores or spaces.",
)


def _not_found(system_id: str) -> NotFound:
    # The same answer as a missing system: a system admin learns nothing about other departments'.
    # The id comes from the link: it is not echoed (a request may carry anything in its path). One that
    # cannot be a system id (Elderly-Care-Visits, elderly_care_visits) is said to be so: no system has it,
    # so that says nothing about any department's systems.
    if _SYSTEM_ID.fullmatch(system_id) is None:
        return NotFound(
            f"{_NOT_FOUND[0]}{_NOT_A_SYSTEM_ID[0]}",
            f"{_NOT_FOUND[1]} {_NOT_A_SYSTEM_ID[1]}",
            code="system_not_found",
        )
    return NotFound(*_NOT_FOUND, code="system_not_found")


def _load_visible(service: AdmissionService, principal: Principal, system_id: str) -> SystemRegistration:
    reg = service.repo.get(system_id)
    if reg is None:
        raise _not_found(system_id)
    if not _visible(principal, reg):
        # Answered as a missing system; the refused read's audit event names the system (a stored id).
        raise OutOfReach(*_NOT_FOUND, code="system_not_found", target={"system_id": reg.system_id})
    return reg


def _load_own(service: AdmissionService, principal: Principal, system_id: str) -> SystemRegistration:
    """A registration the caller administers as their department's system admin (else 404)."""
    reg = service.repo.get(system_id, for_update=True)
    if reg is None or not _is_department_admin(principal, reg):
        raise _not_found(system_id)
    return reg


def _department_of(principal: Principal) -> str:
    if not principal.department:
        raise Forbidden(
            "您的账号未标明所属部门，不能登记部门系统。",
            "Your account carries no department, so it cannot register a departmental system.",
            code="no_department",
        )
    return principal.department


async def _act(
    runtime: Runtime,
    principal: Principal,
    request: Request,
    fn: Callable[[AdmissionService], tuple[T, Sequence[Mapping[str, Any]]]],
) -> T:
    """Run ``fn`` in one unit of work; each change it returns is audited in the same commit."""
    async with unit_of_work(runtime, principal, request_id_of(request)) as uow:
        result, changes = await uow.run(lambda session: fn(_service(session)))
        for change in changes:
            uow.record(change)
    return result


async def _read(runtime: Runtime, fn: Callable[[AdmissionService], T]) -> T:
    def work() -> T:
        with runtime.sessions() as session, domain_errors():
            return fn(_service(session))

    return await asyncio.to_thread(work)


async def _read_system(runtime: Runtime, principal: Principal, fn: Callable[[AdmissionService], T]) -> T:
    """A read of one system by its id: a 404 (no such system, or another department's) is recorded as a
    refused read before it is answered (:func:`gateway.admin_support.refused_reads`)."""
    async with refused_reads(runtime, principal):
        return await _read(runtime, fn)


def _backflow_fields(catalog: Catalog) -> list[str]:
    """Fields villages already get back as backflowed data (数据回流): every catalogued dataset field."""
    return [
        f"{name}.{field}"
        for name, spec in catalog.datasets.items()
        for field in spec.fields
        if field != spec.record_id_field
    ]


_ALIAS_TYPES = frozenset(SemanticType) - {
    SemanticType.RECORD_ID,
    SemanticType.DIVISION_CODE,
    SemanticType.FREE_TEXT,
    SemanticType.CATEGORY,
    SemanticType.OTHER,
}


def _equivalents(catalog: Catalog) -> dict[str, str]:
    """A registration may name a field by its semantic type (``mobile``); it then matches the catalogued
    field of that type (``residents.mobile``) in the overlap and burden views."""
    mapping: dict[str, str] = {}
    for name, spec in catalog.datasets.items():
        for field, fspec in spec.fields.items():
            if fspec.semantic_type in _ALIAS_TYPES:
                mapping.setdefault(fspec.semantic_type.value, f"{name}.{field}")
    return mapping


def _field_mapping(catalog: Catalog, fields: Sequence[str]) -> dict[str, Any]:
    """How each declared field maps to the catalog (level, tags), or ``None`` when it is not catalogued."""
    aliases = _equivalents(catalog)
    out: dict[str, Any] = {}
    for ref in fields:
        target = aliases.get(ref, ref)
        dataset, _, name = target.partition(".")
        spec = catalog.datasets.get(dataset)
        fspec = spec.fields.get(name) if spec is not None else None
        if fspec is not None:
            out[ref] = {
                "catalog_field": target,
                # As the catalog writes it: 1-4 as integers, "important"/"core" as names.
                "level": fspec.level.document_value,
                "tags": sorted(fspec.tags),
            }
        elif ref in catalog.tags:
            out[ref] = {"catalog_tag": ref}
        else:
            out[ref] = None
    return out


#: How many out-of-jurisdiction codes a refusal names (the count is always given).
_OUTSIDE_NAMED = 5


def _check_reach(principal: Principal, reg: SystemRegistration) -> None:
    """A department registers systems for its own jurisdiction: every area a registration reaches lies
    inside the registering official's organisation (a typo such as ``999999`` is a code nobody governs)."""
    try:
        outside = [code for code in reg.reaches if not divisions.covers(principal.org, code)]
    except ValueError:
        outside = list(reg.reaches)
    if outside:
        # Division codes are public vocabulary, not personal data: name the ones to correct (normalised
        # to 12 digits by the registration, so nothing but digits is echoed), the first few of them.
        named = outside[:_OUTSIDE_NAMED]
        more_zh = f"等 {len(outside)} 个" if len(outside) > len(named) else ""
        more_en = f" (first {len(named)} shown)" if len(outside) > len(named) else ""
        verb = "is" if len(outside) == 1 else "are"
        raise InvalidRequest(
            f"覆盖范围（reaches）只能填写本单位辖区（{principal.org}）内的区划代码，"
            f"有 {len(outside)} 个不在辖区内：{'、'.join(named)}{more_zh}，请核对。",
            f"reaches may name only divisions inside your own jurisdiction ({principal.org}); "
            f"{len(outside)} of them {verb} outside it: {', '.join(named)}{more_en}.",
            code="reaches_outside_jurisdiction",
            extra={"outside": named},
        )


def _check_against_catalog(
    catalog: Catalog, reg: SystemRegistration, others: list[SystemRegistration]
) -> None:
    """A collected field ref into a catalogued dataset must name a catalogued field, and a system may
    provide a catalogued dataset only if the catalog names it as that dataset's provider; no dataset is
    provided by two systems (otherwise one registration could divert another's traffic)."""
    for ref in reg.collects_fields:
        dataset, dot, name = ref.partition(".")
        spec = catalog.datasets.get(dataset)
        if dot and spec is not None and name not in spec.fields:
            # The dataset is a catalogued one; the field name as submitted is not echoed. The catalog's
            # own field names are: a department that typed residents.nmae learns what it may write.
            names = sorted(spec.fields)
            raise InvalidRequest(
                f"collects_fields：目录中数据集 {dataset} 没有所填的字段，请按数据目录中该数据集的字段名"
                f"填写（写作 {dataset}.字段名）：{'、'.join(names)}。",
                f"collects_fields: the catalog's dataset {dataset} has no such field; use a field name the "
                f"data catalog lists for it (written {dataset}.FIELD): {', '.join(names)}.",
                code="invalid_registration",
                extra={"dataset": dataset, "catalog_fields": names},
            )
    for provided in reg.provides:
        spec = catalog.datasets.get(provided.dataset)
        if spec is not None and spec.provider_system != reg.system_id:
            raise Forbidden(
                f"数据集 {provided.dataset} 在数据目录中由 {spec.provider_system} 提供，"
                f"不能由 {reg.system_id} 提供。",
                f"Dataset {provided.dataset} is provided by {spec.provider_system} in the catalog, "
                f"not by {reg.system_id}.",
                code="dataset_provider_mismatch",
            )
        taken = next(
            (
                o.system_id
                for o in others
                if o.system_id != reg.system_id and provided.dataset in {p.dataset for p in o.provides}
            ),
            None,
        )
        if taken is not None:
            raise GatewayError(
                f"数据集 {provided.dataset} 已由系统 {taken} 登记提供。",
                f"Dataset {provided.dataset} is already provided by system {taken}.",
                code="dataset_already_provided",
                status_code=409,
            )


def _progress_view(service: AdmissionService, system_id: str) -> dict[str, Any]:
    progress = service.review_progress(system_id)
    offices = {o.code: o for o in service.config.offices}

    def office(code: str) -> dict[str, Any]:
        o = offices.get(code)
        return {"code": code, "name_zh": o.name_zh if o else code, "name_en": o.name_en if o else code}

    view: dict[str, Any] = {
        "system_id": progress.system_id,
        "status": progress.status.value,
        "status_zh": STATUS_LABELS_ZH[progress.status],
        "round": progress.round,
        "renewal": progress.renewal,
        "required_offices": [office(c) for c in progress.required_offices],
        "signed": [office(c) for c in progress.approved_by],
        "pending": [office(c) for c in progress.pending],
        "recused": [office(c) for c in progress.recused_offices],
        "votes": [
            {
                "office": v.office,
                "office_name_zh": office(v.office)["name_zh"],
                "reviewer_id": v.reviewer_id,
                "vote": v.vote.value,
                "comment": v.comment,
                "round": v.round,
                "at": v.at.isoformat(),
            }
            for v in progress.votes
        ],
        "concerns": [
            {"code": c.code, "message_zh": c.message_zh, "message_en": c.message_en}
            for c in progress.concerns
        ],
    }
    if progress.round_ended:
        view["note_zh"] = (
            f"第 {progress.round} 轮联审已结束（{STATUS_LABELS_ZH[progress.status]}），其中的表决只作记录；"
            "重新提交联审后将开启新一轮，各单位须重新表决。"
        )
        view["note_en"] = (
            f"Review round {progress.round} has ended ({progress.status.value}); its votes are kept as a "
            "record. Resubmitting opens a new round in which every office votes again."
        )
    return view


def _registration_view(
    service: AdmissionService, catalog: Catalog, reg: SystemRegistration, principal: Principal
) -> dict[str, Any]:
    include_contact = _is_department_admin(principal, reg) or "admission_reviewer" in principal.roles
    # The department's name right after its code, where a reviewer reading the CLI's JSON looks for it.
    view: dict[str, Any] = {}
    for key, value in reg.as_dict(include_contact=include_contact).items():
        view.update(_department_json(value) if key == "department" else {key: value})
    view["status_zh"] = STATUS_LABELS_ZH[reg.status]
    view["field_mapping"] = _field_mapping(catalog, reg.collects_fields)
    client_id = service.client_id_for(reg.system_id)
    state = service.client_state(client_id) if client_id else None
    view["credentials"] = {
        "client_id": client_id,
        "client_secret_issued": bool(state and state.secret_generation),
        "public_key_registered": bool(state and state.key_generation),
        # Write-only: whether one is stored, never the value.
        "outbound_credential_set": service.outbound_credential(reg.system_id) is not None,
    }
    return view


# ------------------------------------------------------------------------------------ request bodies


class ReasonBody(StrictBody):
    reason: str = Field(min_length=1, max_length=2000)


class VoteBody(StrictBody):
    vote: Literal["approve", "reject", "request_changes"]
    comment: str = Field("", max_length=4000)
    office: str | None = Field(None, description="defaults to the office in the reviewer's token")


class PublicKeyBody(StrictBody):
    public_key: str = Field(min_length=1, max_length=16000, description="PEM SubjectPublicKeyInfo or JWK")


class OutboundCredentialBody(StrictBody):
    credential: SecretStr = Field(description="write-only: stored encrypted, never returned")


def _refuse_personal_data_in_text(body: Mapping[str, Any]) -> None:
    """The registration's free text (read by every reviewing office) holds no personal data: 422
    ``personal_data_in_<field>`` naming the kind, as for reasons and comments (the library checks too)."""
    checklist = body.get("checklist")
    notes = checklist.get("notes") if isinstance(checklist, Mapping) else None
    for value, zh, en, code in (
        (body.get("name"), "系统名称", "system name", "personal_data_in_name"),
        (body.get("purpose"), "建设目的", "purpose", "personal_data_in_purpose"),
        (notes, "减负清单说明", "checklist notes", "personal_data_in_checklist_notes"),
    ):
        if isinstance(value, str):
            refuse_personal_data(value, zh, en, code=code)


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        data = None
    except RecursionError:
        raise json_nested_too_deep() from None
    if not isinstance(data, dict):
        raise InvalidRequest("请求体须为 JSON 对象。", "The request body must be a JSON object.")
    return data


def _registration_schema(*, draft: bool) -> dict[str, Any]:
    """The registration body in the OpenAPI document (read by hand as JSON, so that a misspelt key is
    refused by :func:`_registration_body` rather than dropped): for a client generated from the document
    and for the department's developer reading ``/docs``. A test holds its keys to what is accepted."""
    codes = {"type": "array", "items": {"type": "string", "pattern": "^[0-9]{2,12}$"}}
    schema: dict[str, Any] = {
        "title": "Registration" if draft else "RegistrationChange",
        "type": "object",
        "description": (
            "部门业务系统的准入登记（联系人只给审核办公室看，其余各项不得含个人信息）。"
            "A departmental system's admission registration (the contact is shown to the reviewing offices "
            "only; nothing else may hold personal data). A view of the registration (GET) may be sent back "
            "as it is: its read-only keys (status, filing_number, ...) are ignored."
        ),
        "properties": {
            "system_id": {"type": "string", "pattern": ecma_pattern(SYSTEM_ID_PATTERN)},
            "department": {
                "type": "string",
                "description": "the caller's own department (from the sign-in token) when left out",
            },
            "name": {"type": "string", "maxLength": 200},
            "purpose": {"type": "string"},
            "reaches": {
                **codes,
                "description": "division codes the system reaches (2, 4, 6, 9 or 12 digits)",
            },
            "reaches_villages": {"type": "boolean", "description": "it extends to every village under them"},
            "collects_fields": {
                "type": "array",
                "items": {"type": "string"},
                "description": "catalog field refs (residents.mobile) or tags villages would have to enter",
            },
            "provides": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["dataset", "base_url"],
                    "properties": {
                        "dataset": {"type": "string", "pattern": ecma_pattern(DATASET_ID_PATTERN)},
                        "base_url": {"type": "string", "format": "uri"},
                        "endpoints": {"type": "array", "items": {"type": "string", "pattern": "^/"}},
                        "fields": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
            "security_level": {"type": "integer", "minimum": 1, "maximum": 5, "description": "等保级别"},
            "contact": {"type": "string"},
            "checklist": {
                "type": "object",
                "properties": {
                    **{q: {"type": ["boolean", "null"]} for q in BurdenChecklist.QUESTIONS},
                    "notes": {"type": "string"},
                },
                "additionalProperties": False,
            },
        },
    }
    if draft:
        schema["required"] = list(REQUIRED_KEYS)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def _registration_body(request: Request) -> dict[str, Any]:
    """The registration as sent, refused when it holds a key no registration has: a misspelt one
    (``colects``) would otherwise be dropped and the system registered without it. The keys it takes are
    named, never what was typed."""
    body = await _json_object(request)
    if set(body) - set(REGISTRATION_KEYS) - REGISTRATION_VIEW_KEYS:
        raise InvalidRequest(
            f"登记内容含有无法识别的项；可填写的项是 {'、'.join(REGISTRATION_KEYS)}。",
            f"The registration holds a key it does not define; it takes {', '.join(REGISTRATION_KEYS)}.",
            code="invalid_registration",
        )
    return body


# ------------------------------------------------------------------------------------------ registry


@router.get(f"{_PREFIX}/offices")
async def list_offices(
    _principal: Annotated[Principal, Depends(Permitted("admission", "read"))], runtime: RuntimeDep
) -> dict[str, Any]:
    """The reviewing offices of the joint review (configuration) and the re-certification period."""
    config = admission_config()
    return {
        "offices": [
            {
                "code": o.code,
                "name_zh": o.name_zh,
                "name_en": o.name_en,
                "department": o.department,
                "required": o.required,
            }
            for o in config.offices
        ],
        "approval_period_days": config.approval_period.days,
        "reminder_days_before": list(config.reminder_days_before),
    }


def _check_transport(runtime: Runtime, reg: SystemRegistration) -> None:
    """In production a system is reached over https:// (or on this host): over plain http the gateway's
    outbound credential and a lookup's ID number would cross the network in clear text (GB/T 35273 §6.3;
    the rule the OIDC issuer follows, ``gateway.settings.tls_or_loopback``). The address is not echoed."""
    if runtime.settings.mode is not RunMode.production:
        return
    if any(not tls_or_loopback(p.base_url) for p in reg.provides):
        raise InvalidRequest(
            "生产模式下部门业务系统的地址（provides.base_url）须为 https:// 地址（本机回环地址除外），"
            "否则网关的出站凭证和查询中的身份证号将以明文传输。请改为 https:// 后重新提交。",
            "In production a system's address (provides.base_url) must be an https:// URL (a loopback "
            "address excepted): over http the gateway's outbound credential and a lookup's ID number travel "
            "in clear text. Change it to https:// and submit again.",
            code="base_url_not_https",
        )


@router.post(f"{_PREFIX}/systems", status_code=201, openapi_extra=_registration_schema(draft=True))
async def register_system(
    principal: Annotated[Principal, Depends(Permitted("admission", "register"))],
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """File a registration as a draft. The department is the caller's own (from the token)."""
    department = _department_of(principal)
    body = await _registration_body(request)
    _refuse_personal_data_in_text(body)
    if body.setdefault("department", department) != department:
        name_zh, name_en = admission_config().department_names(department)
        raise Forbidden(
            f"系统管理员只能为本部门（{name_zh}）登记系统：请删去 department 一项（默认即本部门），"
            f"或填写 {department}。",
            f"A system admin registers systems only for their own department ({name_en}): leave "
            f"department out (it defaults to yours) or write {department}.",
            code="separation_of_duties",
        )

    def work(service: AdmissionService) -> tuple[dict[str, Any], list[Mapping[str, Any]]]:
        reg = registration_from_mapping(body, created_by=principal.user_id)
        _check_reach(principal, reg)
        _check_transport(runtime, reg)
        _check_against_catalog(runtime.catalog, reg, service.list_systems())
        change = service.register(reg)
        return _registration_view(service, runtime.catalog, service.get(reg.system_id), principal), [change]

    return await _act(runtime, principal, request, work)


@router.get(f"{_PREFIX}/systems")
async def list_systems(
    principal: Annotated[Principal, Depends(Permitted("admission", "read"))],
    runtime: RuntimeDep,
    status: Annotated[list[SystemStatus] | None, Query()] = None,
    awaiting_my_review: Annotated[
        bool,
        Query(description="only those in review (first or renewal round) whose round waits on your office"),
    ] = False,
) -> dict[str, Any]:
    """Registrations the caller may see (a system admin: their department's), optionally by status;
    ``awaiting_my_review``: a reviewer's work list, renewal rounds of approved systems included."""
    office = principal.office
    if awaiting_my_review and not office:
        raise InvalidRequest(
            "只有代表审核单位的审核人可以筛选“待本单位审核”的系统：您的登录凭证未标明审核单位。",
            "Only a reviewer acting for an office can list the systems awaiting their office's review: "
            "your token names no office.",
            code="no_reviewing_office",
        )

    def waits_on_office(service: AdmissionService, reg: SystemRegistration) -> bool:
        in_review = reg.status is SystemStatus.SUBMITTED or (
            reg.status is SystemStatus.APPROVED and reg.renewal_open
        )
        return in_review and office in service.review_progress(reg.system_id).pending

    def work(service: AdmissionService) -> dict[str, Any]:
        regs = [r for r in service.list_systems(status) if _visible(principal, r)]
        if awaiting_my_review:
            regs = [r for r in regs if waits_on_office(service, r)]
        return {
            "systems": [
                {
                    "system_id": r.system_id,
                    "name": r.name,
                    **_department_json(r.department),
                    "status": r.status.value,
                    "status_zh": STATUS_LABELS_ZH[r.status],
                    "filing_number": r.filing_number,
                    "approved_until": r.approved_until.isoformat() if r.approved_until else None,
                    "renewal_open": r.renewal_open,
                }
                for r in regs
            ]
        }

    return await _read(runtime, work)


@router.get(f"{_PREFIX}/systems/{{system_id}}")
async def get_system(
    principal: Annotated[Principal, Depends(Permitted("admission", "read"))],
    system_id: SystemIdPath,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """The registration; its ``contact`` (a person to call, possibly a name and a phone number) only to
    the department's own system admin and to reviewers, and each such read is an audit event
    (``admission.contact_read``, the system's id, never the contact) written before the answer."""

    def work(service: AdmissionService) -> dict[str, Any]:
        reg = _load_visible(service, principal, system_id)
        return _registration_view(service, runtime.catalog, reg, principal)

    view = await _read_system(runtime, principal, work)
    if "contact" in view:
        await record_read(
            runtime,
            principal,
            "admission.contact_read",
            {"system_id": view["system_id"], "department": view["department"], "shown": ["contact"]},
        )
    return view


@router.patch(f"{_PREFIX}/systems/{{system_id}}", openapi_extra=_registration_schema(draft=False))
async def update_system(
    principal: Annotated[Principal, Depends(Permitted("admission", "register"))],
    system_id: SystemIdPath,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Change fields of a draft, or of a registration sent back for changes (fields not given are kept;
    the checklist's answers not given are kept too)."""
    body = await _registration_body(request)
    _refuse_personal_data_in_text(body)

    def work(service: AdmissionService) -> tuple[dict[str, Any], list[Mapping[str, Any]]]:
        current = _load_own(service, principal, system_id)
        merged = {**current.as_dict(include_contact=True), **body, "system_id": system_id}
        if isinstance(body.get("checklist"), Mapping):
            # The checklist is merged answer by answer (RFC 7396 merge patch): answering one question
            # must not erase the others, which submit would then refuse as unanswered.
            merged["checklist"] = {**current.checklist.as_dict(), **body["checklist"]}
        reg = registration_from_mapping(merged, created_by=current.created_by)
        _check_reach(principal, reg)
        _check_transport(runtime, reg)
        _check_against_catalog(runtime.catalog, reg, service.list_systems())
        change = service.update(reg, principal.user_id)
        return _registration_view(service, runtime.catalog, service.get(system_id), principal), [change]

    return await _act(runtime, principal, request, work)


def _lifecycle(name: str) -> Callable[[AdmissionService, str, str], Mapping[str, Any]]:
    actions: dict[str, Callable[[AdmissionService, str, str], Mapping[str, Any]]] = {
        "submit": lambda s, sid, actor: s.submit(sid, actor),
        "withdraw": lambda s, sid, actor: s.withdraw(sid, actor),
        "revise": lambda s, sid, actor: s.revise(sid, actor),
    }
    return actions[name]


async def _department_action(
    name: str, system_id: str, request: Request, runtime: Runtime, principal: Principal
) -> dict[str, Any]:

    def work(service: AdmissionService) -> tuple[dict[str, Any], list[Mapping[str, Any]]]:
        _load_own(service, principal, system_id)
        change = _lifecycle(name)(service, system_id, principal.user_id)
        return _progress_view(service, system_id), [change]

    return await _act(runtime, principal, request, work)


@router.post(f"{_PREFIX}/systems/{{system_id}}/submit")
async def submit_system(
    principal: Annotated[Principal, Depends(Permitted("admission", "register"))],
    system_id: SystemIdPath,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Send to joint review; also resubmission after changes were requested or after a rejection."""
    return await _department_action("submit", system_id, request, runtime, principal)


@router.post(f"{_PREFIX}/systems/{{system_id}}/withdraw")
async def withdraw_system(
    principal: Annotated[Principal, Depends(Permitted("admission", "register"))],
    system_id: SystemIdPath,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Take a submitted registration back to draft."""
    return await _department_action("withdraw", system_id, request, runtime, principal)


@router.post(f"{_PREFIX}/systems/{{system_id}}/revise")
async def revise_system(
    principal: Annotated[Principal, Depends(Permitted("admission", "register"))],
    system_id: SystemIdPath,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Reopen a rejected registration as a draft, to edit it before resubmitting."""
    return await _department_action("revise", system_id, request, runtime, principal)


# -------------------------------------------------------------------------------------- joint review


@router.post(f"{_PREFIX}/systems/{{system_id}}/reviews", status_code=201)
async def review_system(
    principal: Annotated[Principal, Depends(Permitted("admission", "review"))],
    system_id: SystemIdPath,
    body: VoteBody,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """One office's vote. The reviewer votes only for the office in their token, never on a system of
    their own department; a rejection or a request for changes ends the round with the comment as reason."""
    office = body.office or principal.office
    if not principal.office or office != principal.office:
        # The office by its Chinese name (区大数据中心), as the progress view names it; a code no office
        # of the configuration has is kept as it is.
        own = admission_config().office(principal.office) if principal.office else None
        own_zh = own.name_zh if own is not None else principal.office or "登录凭证未标明"
        own_en = own.name_en if own is not None else principal.office or "none in the token"
        raise Forbidden(
            f"审核人只能代表本单位（{own_zh}）表决。",
            f"A reviewer votes only for their own office ({own_en}).",
            code="separation_of_duties",
        )
    refuse_personal_data(body.comment, "审核意见", "comment", code="personal_data_in_comment")

    def work(service: AdmissionService) -> tuple[dict[str, Any], list[Mapping[str, Any]]]:
        _load_visible(service, principal, system_id)  # an unknown id is not echoed back
        change = service.review(
            system_id,
            office,
            principal.user_id,
            principal.department or "",
            body.vote,
            body.comment,
        )
        view = _progress_view(service, system_id)
        view["outcome"] = str(change["kind"]).removeprefix("admission.")
        if "reasons" in change:
            view["reasons"] = change["reasons"]
        if change.get("filing_number"):
            view["filing_number"] = change["filing_number"]
            view["approved_until"] = change.get("approved_until")
        return view, [change]

    return await _act(runtime, principal, request, work)


@router.get(f"{_PREFIX}/systems/{{system_id}}/progress")
async def review_progress(
    principal: Annotated[Principal, Depends(Permitted("admission", "read"))],
    system_id: SystemIdPath,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Which offices signed, which are pending, which are recused, with every vote of the round."""

    def work(service: AdmissionService) -> dict[str, Any]:
        _load_visible(service, principal, system_id)
        return _progress_view(service, system_id)

    return await _read_system(runtime, principal, work)


@router.get(f"{_PREFIX}/systems/{{system_id}}/reviews")
async def review_history(
    principal: Annotated[Principal, Depends(Permitted("admission", "read"))],
    system_id: SystemIdPath,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Every vote of every round (rejection reasons included)."""

    def work(service: AdmissionService) -> dict[str, Any]:
        _load_visible(service, principal, system_id)
        return {
            "system_id": system_id,
            "votes": [
                {
                    "round": v.round,
                    "office": v.office,
                    "reviewer_id": v.reviewer_id,
                    "vote": v.vote.value,
                    "comment": v.comment,
                    "at": v.at.isoformat(),
                }
                for v in service.reviews(system_id)
            ],
        }

    return await _read_system(runtime, principal, work)


@router.get(f"{_PREFIX}/systems/{{system_id}}/overlaps")
async def system_overlaps(
    principal: Annotated[Principal, Depends(Permitted("admission", "read"))],
    system_id: SystemIdPath,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Fields this registration would collect that admitted systems already collect in the same villages,
    or that villages get back as backflowed data: reuse or prefill instead (智能合并, 数据预填)."""
    catalog = runtime.catalog

    def work(service: AdmissionService) -> dict[str, Any]:
        reg = _load_visible(service, principal, system_id)
        equivalents = _equivalents(catalog)
        overlaps = service.overlaps(system_id, _backflow_fields(catalog), equivalents=equivalents)
        overlapping = {o.field for o in overlaps}
        return {
            "system_id": system_id,
            "status": reg.status.value,
            "collects_fields": list(reg.collects_fields),
            "overlaps": [o.as_dict() for o in overlaps],
            "new_fields": [f for f in reg.collects_fields if equivalents.get(f, f) not in overlapping],
        }

    return await _read_system(runtime, principal, work)


# ------------------------------------------------------------------------------------- supervision


_SUPERVISION_ACTS: Final[dict[str, tuple[str, str]]] = {
    "suspend": ("暂停部门系统的准入", "suspend a departmental system's admission"),
    "reinstate": ("恢复部门系统的准入", "reinstate a departmental system's admission"),
    "revoke": ("撤销部门系统的准入", "revoke a departmental system's admission"),
}


async def _supervise(
    action: Literal["suspend", "reinstate", "revoke"],
    system_id: SystemIdPath,
    body: ReasonBody,
    request: Request,
    runtime: Runtime,
    principal: Principal,
) -> dict[str, Any]:
    refuse_personal_data(body.reason, "理由", "reason", code="personal_data_in_reason")

    def work(service: AdmissionService) -> tuple[dict[str, Any], list[Mapping[str, Any]]]:
        _load_visible(service, principal, system_id)  # an unknown id is not echoed back
        changes: list[Mapping[str, Any]]
        if action == "reinstate":
            changes = list(service.reinstate(system_id, principal.user_id, body.reason))
        else:
            method = {"suspend": service.suspend, "revoke": service.revoke}[action]
            changes = [method(system_id, principal.user_id, body.reason)]
        reg = service.get(system_id)
        answer: dict[str, Any] = {
            "system_id": system_id,
            "status": reg.status.value,
            "status_zh": STATUS_LABELS_ZH[reg.status],
        }
        if action == "reinstate":
            answer.update(_reinstated_view(reg, changes))
        return answer, changes

    return await _act(runtime, principal, request, work)


def _reinstated_view(reg: SystemRegistration, changes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What a reinstatement left to do: an approval that ended during the suspension has lapsed (and a
    renewal round paused by it goes on as a full review); a paused round that had not run out resumes."""
    kinds = {str(c["kind"]) for c in changes}
    lapsed = "admission.lapsed" in kinds
    continues = "admission.renewal_continued" in kinds or reg.renewal_open
    view: dict[str, Any] = {"lapsed": lapsed, "review_continues": continues}
    until = reg.approved_until
    ends = f"{until.astimezone(CHINA_STANDARD_TIME):%Y-%m-%d %H:%M}" if until else "?"
    if lapsed:
        zh = f"准入已于 {ends}（北京时间）到期，系统现已到期失效并被阻断；"
        en = f"Its approval ended on {ends} (Beijing time): it has lapsed and is blocked. "
        if continues:
            zh += (
                "暂停前已开始的重新审核继续进行，已表决同意的审核单位无须再表决，"
                "其余单位表决同意后即恢复使用。"
            )
            en += (
                "The re-certification begun before the suspension goes on: the offices that approved need "
                "not vote again; it works again once the others approve."
            )
        else:
            zh += (
                "须由其所属部门的系统管理员发起重新审核（admission recertify），各审核单位同意后即恢复使用。"
            )
            en += (
                "Its department's system admin opens a re-certification (admission recertify); it works "
                "again once every office approves."
            )
    elif continues:
        zh = (
            "暂停前已开始的重新审核继续进行：已表决同意的审核单位无须再表决，其余单位请在准入到期"
            f"（{ends}，北京时间）前表决。"
        )
        en = (
            "The re-certification begun before the suspension resumes: the offices that approved need not "
            f"vote again; the others should vote before the approval ends ({ends}, Beijing time)."
        )
    else:
        return view
    return {**view, "message_zh": zh, "message_en": en}


@router.post(f"{_PREFIX}/systems/{{system_id}}/suspend")
async def suspend_system(
    # One permission, "revoke admission", governs all three acts; the refusal names the act asked for.
    principal: Annotated[
        Principal, Depends(Permitted("admission", "revoke", doing=_SUPERVISION_ACTS["suspend"]))
    ],
    system_id: SystemIdPath,
    body: ReasonBody,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Suspend an admitted system: every gateway process refuses it within one poll interval."""
    return await _supervise("suspend", system_id, body, request, runtime, principal)


@router.post(f"{_PREFIX}/systems/{{system_id}}/reinstate")
async def reinstate_system(
    # One permission, "revoke admission", governs all three acts; the refusal names the act asked for.
    principal: Annotated[
        Principal, Depends(Permitted("admission", "revoke", doing=_SUPERVISION_ACTS["reinstate"]))
    ],
    system_id: SystemIdPath,
    body: ReasonBody,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    return await _supervise("reinstate", system_id, body, request, runtime, principal)


@router.post(f"{_PREFIX}/systems/{{system_id}}/revoke")
async def revoke_system(
    # One permission, "revoke admission", governs all three acts; the refusal names the act asked for.
    principal: Annotated[
        Principal, Depends(Permitted("admission", "revoke", doing=_SUPERVISION_ACTS["revoke"]))
    ],
    system_id: SystemIdPath,
    body: ReasonBody,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Revoke for good; the system's client credentials and outbound credential are deleted."""
    return await _supervise("revoke", system_id, body, request, runtime, principal)


@router.post(f"{_PREFIX}/systems/{{system_id}}/recertify")
async def recertify_system(
    principal: Annotated[Principal, Depends(Permitted("admission", "renew"))],
    system_id: SystemIdPath,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Open a re-certification round: an approved system keeps working while re-reviewed; a lapsed one
    goes back to full review and stays blocked until every required office approves again."""

    def work(service: AdmissionService) -> tuple[dict[str, Any], list[Mapping[str, Any]]]:
        reg = service.repo.get(system_id, for_update=True)
        if reg is None or not (_is_department_admin(principal, reg) or _is_registry_wide(principal)):
            raise _not_found(system_id)
        change = service.recertify(system_id, principal.user_id)
        return _progress_view(service, system_id), [change]

    return await _act(runtime, principal, request, work)


@router.get(f"{_PREFIX}/reminders")
async def recertification_reminders(
    principal: Annotated[Principal, Depends(Permitted("admission", "read"))], runtime: RuntimeDep
) -> dict[str, Any]:
    """Approvals that lapse within the largest reminder window, and those that have lapsed (blocked; listed
    first), with who must act next."""

    def work(service: AdmissionService) -> dict[str, Any]:
        out: list[dict[str, Any]] = []
        for reminder in service.reminders_due():
            reg = service.get(reminder.system_id)
            if not _visible(principal, reg):
                continue
            # A round under way: a renewal of an approved system, or the review of a lapsed one.
            under_review = reg.renewal_open or reg.status is SystemStatus.SUBMITTED
            if under_review:
                pending = service.review_progress(reg.system_id).pending
                must_act = [
                    {"role": "admission_reviewer", "office": office, "action": "review"} for office in pending
                ]
            else:
                must_act = [
                    {"role": "system_admin", **_department_json(reg.department), "action": "recertify"}
                ]
            # The officials who read this keep Beijing time: 17:00 UTC is already the next day there.
            ends = reminder.approved_until.astimezone(CHINA_STANDARD_TIME)
            if reminder.lapsed and under_review:
                # Its department already asked: the offices still to sign are the ones to act.
                message_zh = (
                    f"系统 {reg.system_id} 的准入已于 {ends:%Y-%m-%d %H:%M}（北京时间）到期，现已被阻断，"
                    "村（社区）无法使用；重新审核已在进行中，尚未表决的审核单位表决同意后即恢复。"
                )
                message_en = (
                    f"The admission of {reg.system_id} lapsed on {ends:%Y-%m-%d %H:%M} (Beijing time); the "
                    "system is blocked. Its re-certification is under way: it works again once the offices "
                    "still to vote have approved."
                )
            elif reminder.lapsed:
                message_zh = (
                    f"系统 {reg.system_id} 的准入已于 {ends:%Y-%m-%d %H:%M}（北京时间）到期，现已被阻断，"
                    "村（社区）无法使用；请尽快申请重新审核。"
                )
                message_en = (
                    f"The admission of {reg.system_id} lapsed on {ends:%Y-%m-%d %H:%M} (Beijing time); the "
                    "system is blocked until it is re-certified and approved again."
                )
            elif under_review:
                message_zh = (
                    f"系统 {reg.system_id} 的准入将于 {ends:%Y-%m-%d %H:%M}（北京时间）到期，"
                    "重新审核已在进行中，请尚未表决的审核单位在到期前表决。"
                )
                message_en = (
                    f"The admission of {reg.system_id} lapses on {ends:%Y-%m-%d %H:%M} (Beijing time); its "
                    "re-certification is under way: the offices still to vote should vote before then."
                )
            else:
                message_zh = (
                    f"系统 {reg.system_id} 的准入将于 {ends:%Y-%m-%d %H:%M}（北京时间）到期，请及时重新审核。"
                )
                message_en = (
                    f"The admission of {reg.system_id} lapses on {ends:%Y-%m-%d %H:%M} "
                    "(Beijing time); re-certify it in time."
                )
            out.append(
                {
                    "system_id": reminder.system_id,
                    **_department_json(reg.department),
                    "approved_until": reminder.approved_until.isoformat(),
                    "days_left": reminder.days_left,
                    "threshold_days": reminder.threshold_days,
                    "renewal_open": reg.renewal_open,
                    "lapsed": reminder.lapsed,
                    "must_act": must_act,
                    "message_zh": message_zh,
                    "message_en": message_en,
                }
            )
        return {"reminders": out}

    return await _read(runtime, work)


@router.post(f"{_PREFIX}/lapse-due")
async def lapse_due(
    principal: Annotated[Principal, Depends(Permitted("admission", "revoke"))],
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """The lapse job: every approval past its end becomes ``lapsed`` (routing already refuses it by time);
    one whose re-certification round was open stays under review in that round (``review_continues``)."""

    def work(service: AdmissionService) -> tuple[dict[str, Any], list[Mapping[str, Any]]]:
        events = service.lapse_due()
        answer = {
            "lapsed": [str(e["system_id"]) for e in events if e["kind"] == "admission.lapsed"],
            "review_continues": [
                str(e["system_id"]) for e in events if e["kind"] == "admission.renewal_continued"
            ],
        }
        return answer, list(events)

    return await _act(runtime, principal, request, work)


# ------------------------------------------------------------------------------------- credentials


@router.post(f"{_PREFIX}/systems/{{system_id}}/credentials/client-secret", status_code=201)
async def issue_client_secret(
    principal: Annotated[Principal, Depends(Permitted("admission", "register"))],
    system_id: SystemIdPath,
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    rotate: bool = False,
) -> dict[str, Any]:
    """Issue (or with ``?rotate=true`` replace) the client secret. It is shown in this answer only and
    stored as a salted scrypt hash; after a rotation the old secret and its tokens stop working."""

    def work(service: AdmissionService) -> tuple[dict[str, Any], list[Mapping[str, Any]]]:
        _load_own(service, principal, system_id)
        issued = (service.rotate_client_secret if rotate else service.issue_client_secret)(
            system_id, principal.user_id
        )
        reg = service.get(system_id)
        return {
            "system_id": system_id,
            "filing_number": reg.filing_number,
            "client_id": issued.client_id,
            "client_secret": issued.secret,
            "token_endpoint": _token_endpoint(runtime),
            "notice_zh": "客户端密钥只显示这一次，请立即妥善保存。",
            "notice_en": "The client secret is shown only this once; store it safely now.",
        }, [issued.event]

    result = await _act(runtime, principal, request, work)
    response.headers["Cache-Control"] = "no-store"
    return result


@router.put(f"{_PREFIX}/systems/{{system_id}}/credentials/public-key")
async def register_public_key(
    principal: Annotated[Principal, Depends(Permitted("admission", "register"))],
    system_id: SystemIdPath,
    body: PublicKeyBody,
    request: Request,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Register (or replace) the public key for signed client assertions (RFC 7523 private_key_jwt)."""

    def work(service: AdmissionService) -> tuple[dict[str, Any], list[Mapping[str, Any]]]:
        _load_own(service, principal, system_id)
        change = service.register_public_key(system_id, body.public_key, principal.user_id)
        return {
            "system_id": system_id,
            "client_id": change["client_id"],
            "kid": change["kid"],
            "token_endpoint": _token_endpoint(runtime),
            "assertion_audience": _token_endpoint(runtime),
        }, [change]

    return await _act(runtime, principal, request, work)


@router.put(f"{_PREFIX}/systems/{{system_id}}/outbound-credential", status_code=204)
async def set_outbound_credential(
    principal: Annotated[Principal, Depends(Permitted("admission", "register"))],
    system_id: SystemIdPath,
    body: OutboundCredentialBody,
    request: Request,
    runtime: RuntimeDep,
) -> Response:
    """Store the credential the gateway presents when it calls this system. Write-only: encrypted with
    AES-GCM under a key derived from the masking key ring, never returned."""
    ring = runtime.keys
    if ring is None:
        raise ServiceUnavailable(
            "密钥环未配置，无法加密保存凭证。", "No key ring is configured; the credential cannot be stored."
        )
    value = body.credential.get_secret_value()
    if not value.strip() or len(value) > 8192:
        raise InvalidRequest(
            "凭证不能为空，且不超过 8192 字符。", "The credential must be 1 to 8192 characters."
        )
    sealed = seal_outbound_credential(ring, system_id, value)

    def work(service: AdmissionService) -> tuple[None, list[Mapping[str, Any]]]:
        _load_own(service, principal, system_id)
        return None, [service.set_outbound_credential(system_id, sealed, principal.user_id)]

    await _act(runtime, principal, request, work)
    return Response(status_code=204)


@router.delete(f"{_PREFIX}/systems/{{system_id}}/outbound-credential", status_code=204)
async def clear_outbound_credential(
    principal: Annotated[Principal, Depends(Permitted("admission", "register"))],
    system_id: SystemIdPath,
    request: Request,
    runtime: RuntimeDep,
) -> Response:

    def work(service: AdmissionService) -> tuple[None, list[Mapping[str, Any]]]:
        _load_own(service, principal, system_id)
        return None, [service.set_outbound_credential(system_id, None, principal.user_id)]

    await _act(runtime, principal, request, work)
    return Response(status_code=204)


# ------------------------------------------------------------------------------------ burden (减负)


@lru_cache(maxsize=1)
def _demo_villages() -> tuple[str, ...]:
    from demoworld.world import build_world

    return tuple(d.code for d in build_world().divisions if d.level == "village")


def _district_villages(runtime: Runtime, regs: Sequence[SystemRegistration]) -> list[str]:
    """The villages a report covers: the configured list (``GRASSROOTS_ADMISSION_VILLAGES_FILE``), in
    development the demo world's, and any village a registration names explicitly."""
    codes: set[str] = set()
    path = admission_settings().villages_file
    if path is not None:
        for line in path.read_text(encoding="utf-8").splitlines():
            code = line.split(",")[0].strip()
            if code and not code.startswith("#"):
                codes.add(divisions.normalize(code))
    elif runtime.settings.mode is RunMode.development:
        codes.update(_demo_villages())
    for reg in regs:
        codes.update(c for c in reg.reaches if divisions.level_of(c) is divisions.DivisionLevel.VILLAGE)
    return sorted(codes)


#: The OpenAPI constraint of a village code :func:`_village_code` takes.
_VILLAGE_SCHEMA: Final = {"pattern": ecma_pattern(VILLAGE_CODE)}


def _village_code(code: str) -> str:
    if VILLAGE_CODE.fullmatch(code):
        return code
    raise InvalidRequest(
        "须为村（居）委会的 12 位统计用区划代码。",
        "Must be the 12-digit division code of a village or community.",
        code="invalid_village",
    )


@router.get(f"{_PREFIX}/burden/villages/{{village_code}}")
async def burden_of_village(
    principal: Annotated[Principal, Depends(Permitted("admission", "read"))],
    village_code: Annotated[str, PathParam(json_schema_extra=_VILLAGE_SCHEMA)],
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """How many admitted systems reach this village and which fields they demand of it; a village outside
    the caller's organisation is 404 ``outside_scope`` (:func:`supervised_prefix`)."""
    code = _village_code(village_code)
    # `admission burden` takes the village as its argument: no --org to leave out.
    supervised_prefix(
        principal,
        code,
        instead=(
            "请改用本辖区内村（社区）的 12 位区划代码。",
            "Give the 12-digit code of a village or community within your jurisdiction.",
        ),
    )
    catalog = runtime.catalog

    def work(service: AdmissionService) -> dict[str, Any]:
        burden = village_burden(
            service.list_systems([SystemStatus.APPROVED]), code, equivalents=_equivalents(catalog)
        )
        view = burden.as_dict()
        view["fields_demanded_more_than_once"] = list(burden.fields_demanded_more_than_once)
        return view

    return await _read(runtime, work)


#: Chinese first for the officials who open the file in a spreadsheet, the English column name after a
#: slash for programs, as in the monthly report's CSV.
_BURDEN_CSV_HEADER: Final = (
    "村（社区）代码/village_code",
    "村（社区）名称/village_name",
    "接入系统数/n_systems",
    "接入系统/systems",
    "采集字段/fields_demanded",
    "被重复采集的字段/fields_demanded_more_than_once",
)


@router.get(f"{_PREFIX}/burden/report", response_model=None, responses=other_formats("text/csv"))
async def burden_report(
    principal: Annotated[Principal, Depends(Permitted("admission", "read"))],
    runtime: RuntimeDep,
    village: Annotated[
        list[str] | None, Query(json_schema_extra={"items": {"type": "string", **_VILLAGE_SCHEMA}})
    ] = None,
    format: Literal["json", "csv"] = "json",
) -> dict[str, Any] | Response:
    """District report: systems per village and fields demanded more than once (JSON or CSV), over the
    villages of the caller's organisation only, as every supervision report is: a township's supervisor
    gets her township's villages, and the repeated fields among them, never a neighbour's (a village
    asked for outside it is 404 ``outside_scope``)."""
    requested = [_village_code(v) for v in village or []]
    scope = supervised_prefix(principal)
    for code in requested:
        supervised_prefix(
            principal,
            code,
            instead=(
                "请去掉村（社区）条件（--village），或改用本辖区内村（社区）的区划代码。",
                "Leave out the village filter (--village), or give the code of a village or community "
                "within your jurisdiction.",
            ),
        )
    catalog = runtime.catalog

    def work(service: AdmissionService) -> dict[str, Any]:
        regs = service.list_systems([SystemStatus.APPROVED])
        villages = requested or [v for v in _district_villages(runtime, regs) if v.startswith(scope)]
        report = district_report(regs, villages, equivalents=_equivalents(catalog))
        return report.as_dict()

    data = await _read(runtime, work)
    if format == "json":
        return data
    # Imported here: the supervision routes import this module (for the departments' names).
    from gateway.routes.supervision import division_names

    villages = await asyncio.to_thread(division_names, runtime)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(_BURDEN_CSV_HEADER)
    for v in data["villages"]:
        repeated = [f for f, systems in v["demand"].items() if len(systems) > 1]
        writer.writerow(
            [
                audit.spreadsheet_text(v["village_code"]),
                villages.get(v["village_code"], ""),
                v["n_systems"],
                ";".join(v["systems"]),
                ";".join(v["fields_demanded"]),
                ";".join(repeated),
            ]
        )
    # UTF-8 with a byte-order mark, as the monthly report's CSV: Excel on Windows reads a file without
    # one in the local code page (GBK), and the Chinese headers and names would come out garbled.
    return Response(
        ("\ufeff" + buffer.getvalue()).encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="burden-report.csv"'},
    )


# ---------------------------------------------------------------------- OAuth 2 for admitted systems

_ISSUERS: dict[tuple[str, str, int], SystemTokenIssuer] = {}
_REPLAY_GUARDS: weakref.WeakKeyDictionary[Runtime, DatabaseReplayGuard] = weakref.WeakKeyDictionary()


def replay_guard(runtime: Runtime) -> DatabaseReplayGuard:
    """The replay check for client assertions: on the shared database, so an assertion is accepted once
    whichever gateway process it reaches (RFC 7523 §3 item 7)."""
    guard = _REPLAY_GUARDS.get(runtime)
    if guard is None:
        guard = _REPLAY_GUARDS.setdefault(runtime, DatabaseReplayGuard(runtime.sessions))
    return guard


class SecretChecks:
    """Client-secret checks of one process, ``running`` at a time with at most ``waiting`` more queued;
    past that the token endpoint answers 503 ``temporarily_unavailable`` (with ``Retry-After``) at once.

    A check is an scrypt hash (RFC 7914: 16 MiB and tens of milliseconds of CPU, computed for an unknown
    client id too, so that it cannot be told from a wrong secret), asked by anyone who can reach
    ``/oauth/token``. They used to run on the default thread pool, as many at once as it has threads: a few
    anonymous clients posting wrong secrets took every core and every pooled thread, and village users'
    reads (which use that pool for quotas and policy refreshes) slowed tenfold. Here they have a thread of
    their own, so a flood costs one core and a few queued checks, and is refused beyond that. Systems
    authenticating with a signed assertion (``private_key_jwt``, no scrypt) never wait here."""

    def __init__(self, running: int = 1, waiting: int = 16) -> None:
        self._executor = ThreadPoolExecutor(max_workers=running, thread_name_prefix="client-secret-check")
        self._capacity = running + waiting
        self._admitted = 0

    async def run(self, check: Callable[[], T]) -> T:
        if self._admitted >= self._capacity:
            busy = OAuthError(
                "temporarily_unavailable",
                "令牌端点正忙，本次未校验客户端凭证，请稍后重试。",
                "The token endpoint is busy and did not check the client credentials; retry shortly.",
                status_code=503,
            )
            busy.headers["Retry-After"] = "1"
            raise busy
        self._admitted += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, check)
        finally:
            self._admitted -= 1


_SECRET_CHECKS: weakref.WeakKeyDictionary[Runtime, SecretChecks] = weakref.WeakKeyDictionary()


def secret_checks(runtime: Runtime) -> SecretChecks:
    checks = _SECRET_CHECKS.get(runtime)
    if checks is None:
        checks = _SECRET_CHECKS.setdefault(runtime, SecretChecks())
    return checks


def _create_key_once(path: Path) -> Ed25519PrivateKey:
    """Create the token-signing key without a race between gateway workers starting together: write a
    private temporary file, then link it into place (atomic; the loser reads the winner's key)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        load_or_create_ed25519(tmp)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return load_or_create_ed25519(path)


def token_issuer(runtime: Runtime) -> SystemTokenIssuer:
    """The gateway's issuer of system access tokens: a dedicated Ed25519 key (not the upstream service
    key, so a service token the gateway sends a system can never pass as that system's access token)."""
    settings = admission_settings()
    path = system_token_key_path(runtime.settings)
    issuer_id = runtime.settings.effective_public_url
    cache_key = (str(path), issuer_id, settings.token_ttl_s)
    issuer = _ISSUERS.get(cache_key)
    if issuer is None:
        issuer = SystemTokenIssuer(_create_key_once(path), issuer_id, ttl_s=settings.token_ttl_s)
        _ISSUERS[cache_key] = issuer
    return issuer


def _token_endpoint(runtime: Runtime) -> str:
    return runtime.settings.effective_public_url.rstrip("/") + "/oauth/token"


class OAuthError(GatewayError):
    """RFC 6749 §5.2 error response, in the gateway's one error shape (``error`` is the OAuth code)."""

    status_code = 400

    def __init__(self, code: str, zh: str, en: str, *, status_code: int = 400, **extra: Any) -> None:
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        if status_code == 401:
            headers["WWW-Authenticate"] = 'Basic realm="grassroots-gateway", charset="UTF-8"'
        super().__init__(
            zh,
            en,
            code=code,
            status_code=status_code,
            headers=headers,
            extra={"error_description": en, **extra},
        )


class _ClientRefused(OAuthError):
    """An authenticated client refused for its system's admission status (RFC 6749 §5.2
    ``unauthorized_client``); it carries the system, which the audit event names as the actor."""

    def __init__(self, system_id: str, admission_status: str, zh: str, en: str) -> None:
        super().__init__("unauthorized_client", zh, en, system=system_id, admission_status=admission_status)
        self.system_id = system_id


def _invalid_client(zh: str = "客户端认证失败。", en: str = "Client authentication failed.") -> OAuthError:
    return OAuthError("invalid_client", zh, en, status_code=401)


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise OAuthError(
            "invalid_request",
            "令牌端点只接受 Basic 认证头。",
            "The token endpoint accepts only Basic authentication.",
        )
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _invalid_client() from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise _invalid_client()
    # RFC 6749 §2.3.1: both parts are form-urlencoded before being joined.
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))


async def _form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError(
            "invalid_request",
            "请求须为 application/x-www-form-urlencoded 表单。",
            "The request must be an application/x-www-form-urlencoded form.",
        )
    body = await request.body()
    if len(body) > 16384:
        raise OAuthError("invalid_request", "请求过大。", "The request is too large.")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "表单编码错误。", "The form is not valid UTF-8.") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            # RFC 6749 §3.2: request parameters must not be included more than once.
            raise OAuthError(
                "invalid_request", "请求中有参数重复，每个参数只能出现一次。", "A parameter is repeated."
            )
        form[name] = value
    return form


async def _audit_system(
    runtime: Runtime,
    kind: str,
    outcome: Outcome,
    system_id: str | None,
    reason: str,
    request: Request,
    **details: Any,
) -> None:
    await record_audit(
        runtime,
        AuditEvent(
            kind=kind,
            outcome=outcome,
            actor=f"system:{system_id}" if system_id else audit.ANONYMOUS_ACTOR,
            reason=reason,
            request_id=request_id_of(request),
            details={"route": request.url.path, **details},
        ),
    )


def _blocked(system_id: str, verdict_code: str, zh: str, en: str, *, status_code: int) -> GatewayError:
    return GatewayError(zh, en, code=verdict_code, status_code=status_code, extra={"system": system_id})


@router.post("/oauth/token")
async def oauth_token(request: Request, runtime: RuntimeDep, authorization: AuthHeader = None) -> Response:
    """OAuth 2 token endpoint for admitted systems (RFC 6749 §4.4 client credentials).

    Client authentication (exactly one, RFC 6749 §2.3): ``client_secret_basic``, ``client_secret_post``,
    or ``private_key_jwt`` (RFC 7523 §2.2: ``client_assertion_type`` = jwt-bearer, ``client_assertion``
    signed by the system's registered key, ``aud`` = this endpoint's URL). Only an approved system whose
    approval has not lapsed gets a token."""
    system_id: str | None = None
    try:
        form = await _form(request)
        if form.get("grant_type") != "client_credentials":
            raise OAuthError(
                "unsupported_grant_type",
                "只支持 client_credentials 授权方式。",
                "Only the client_credentials grant is supported.",
            )
        basic = _basic_credentials(authorization)
        assertion = form.get("client_assertion")
        methods = [basic is not None, "client_secret" in form, assertion is not None]
        if sum(methods) != 1:
            # Which of the two mistakes, and the three ways that work (RFC 6749 §2.3.1, RFC 7523 §2.2):
            # "use exactly one" told a system sending none neither.
            found_zh, found_en = (
                ("请求中没有客户端认证信息", "The request carries no client authentication")
                if not any(methods)
                else (
                    "请求中同时使用了多种客户端认证方式",
                    "The request uses more than one client authentication method",
                )
            )
            raise OAuthError(
                "invalid_request",
                f"{found_zh}，未签发令牌。请只用以下一种："
                "HTTP Basic 认证头（client_id:client_secret，client_secret_basic）；"
                "表单字段 client_id 与 client_secret（client_secret_post）；"
                "或签名的客户端断言 client_assertion 与 client_assertion_type（private_key_jwt）。",
                f"{found_en}; no token was issued. Use exactly one of: an HTTP Basic Authorization header "
                "(client_id:client_secret, client_secret_basic); the form fields client_id and client_secret "
                "(client_secret_post); or a signed client_assertion with its client_assertion_type "
                "(private_key_jwt).",
            )
        authenticate = functools.partial(_authenticate_client, runtime, form, basic, assertion)
        if assertion is None:
            issued, system_id = await secret_checks(runtime).run(authenticate)
        else:
            issued, system_id = await asyncio.to_thread(authenticate)
    except GatewayError as exc:
        # Named only once the client has authenticated (refused for its status, not its credentials);
        # before that, the client id it claims proves nothing and the actor stays anonymous.
        if isinstance(exc, _ClientRefused):
            system_id = exc.system_id
        await _audit_system(runtime, "system.token", Outcome.REFUSED, system_id, exc.code, request)
        raise
    await _audit_system(runtime, "system.token", Outcome.OK, system_id, "issued", request)
    return Response(
        content=_json(issued.as_response()),
        media_type="application/json",
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


def _json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False)


def _authenticate_client(
    runtime: Runtime, form: Mapping[str, str], basic: tuple[str, str] | None, assertion: str | None
) -> tuple[IssuedAccessToken, str]:
    with runtime.sessions() as session:
        service = _service(session)
        if assertion is not None:
            if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
                raise OAuthError(
                    "invalid_request",
                    "client_assertion_type 须为 jwt-bearer。",
                    f"client_assertion_type must be {CLIENT_ASSERTION_TYPE}.",
                )
            try:
                client_id = assertion_client_id(assertion)
                registered = service.client_public_key(client_id)
                if registered is None:
                    raise _invalid_client()
                if form.get("client_id", client_id) != client_id:
                    raise _invalid_client()
                verify_client_assertion(
                    assertion,
                    registered,
                    audiences=(_token_endpoint(runtime), runtime.settings.effective_public_url),
                    replay=replay_guard(runtime),
                )
            except TokenError as exc:
                raise _invalid_client(exc.message_zh, exc.message_en) from None
            except ReplayStoreUnavailable as exc:
                # Fail closed: an assertion that could not be recorded could be replayed elsewhere.
                raise OAuthError(
                    "temporarily_unavailable", exc.message_zh, exc.message_en, status_code=503
                ) from None
            method = "key"
        else:
            if basic is not None:
                client_id, secret = basic
            else:
                client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
            if not client_id or not secret:
                raise _invalid_client()
            if service.verify_client_secret(client_id, secret) is None:
                raise _invalid_client()
            method = "secret"
        state = service.client_state(client_id)
        if state is None:
            raise _invalid_client()
        generation = state.key_generation if method == "key" else state.secret_generation
        if generation is None:
            raise _invalid_client()
        # The token endpoint reads the registry itself (not the snapshot): a system is never handed a
        # token in the instant after its suspension was committed.
        reg = service.repo.get(state.system_id)
        verdict = routing_verdict(reg, datetime.now(UTC), system_id=state.system_id)
        if not verdict.allowed:
            raise _ClientRefused(state.system_id, verdict.code, verdict.message_zh, verdict.message_en)
        issued = token_issuer(runtime).issue(
            client_id=client_id, system_id=state.system_id, credential=generation
        )
        return issued, state.system_id


@router.get("/oauth/jwks")
async def oauth_jwks(runtime: RuntimeDep) -> dict[str, Any]:
    """The public key that signs system access tokens (RFC 7517)."""
    return token_issuer(runtime).jwks()


@router.get("/service/jwks")
async def service_jwks(runtime: RuntimeDep) -> dict[str, Any]:
    """The public key that signs the gateway's service tokens, those it presents to departmental systems on
    every call (RFC 7517; each token names it by ``kid``, its RFC 7638 thumbprint). A system fetches it over
    HTTPS instead of being handed a PEM file, and fetches it again when a token names a ``kid`` it does not
    know (the gateway's operator replaced ``GRASSROOTS_SERVICE_KEY_PATH``)."""
    return runtime.upstream.service_jwks()


@router.get("/.well-known/oauth-authorization-server")
async def oauth_metadata(runtime: RuntimeDep) -> dict[str, Any]:
    """Authorization server metadata for systems (RFC 8414)."""
    base = runtime.settings.effective_public_url.rstrip("/")
    return {
        "issuer": runtime.settings.effective_public_url,
        "token_endpoint": f"{base}/oauth/token",
        "jwks_uri": f"{base}/oauth/jwks",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ],
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA", "ES256", "ES384", "RS256", "PS256"],
    }


# ------------------------------------------------------------------------------- system-facing API


class SystemCaller:
    def __init__(self, system_id: str, client_id: str) -> None:
        self.system_id = system_id
        self.client_id = client_id


async def authenticate_system(runtime: Runtime, authorization: str | None, request: Request) -> SystemCaller:
    """Every system call: the gateway's own token, then the system's admission status live (suspended,
    revoked, lapsed or never approved: refused, naming the system), then the credential it was obtained
    with must still be current (rotation or revocation ends earlier tokens at once)."""
    system_id: str | None = None
    try:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated(
                "缺少系统访问令牌，请先向 /oauth/token 申请。",
                "No system access token; obtain one from /oauth/token first.",
                code="missing_token",
                headers={"WWW-Authenticate": 'Bearer realm="grassroots-systems"'},
            )
        try:
            claims = token_issuer(runtime).verify(token.strip())
        except TokenError as exc:
            raise Unauthenticated(
                exc.message_zh,
                exc.message_en,
                code="invalid_token",
                headers={"WWW-Authenticate": 'Bearer realm="grassroots-systems", error="invalid_token"'},
            ) from None
        system_id = claims.system_id
        verdict = runtime.system_verdict(system_id, datetime.now(UTC))
        if not verdict.allowed:
            raise _blocked(system_id, verdict.code, verdict.message_zh, verdict.message_en, status_code=403)

        def current() -> bool:
            with runtime.sessions() as session:
                state = _service(session).client_state(claims.client_id)
            return (
                state is not None and state.system_id == claims.system_id and state.accepts(claims.credential)
            )

        if not await asyncio.to_thread(current):
            raise Unauthenticated(
                f"系统 {system_id} 的凭证已轮换或撤销，请用新凭证重新申请令牌。",
                f"The credentials of system {system_id} were rotated or revoked; obtain a new token.",
                code="credential_rotated",
                headers={"WWW-Authenticate": 'Bearer realm="grassroots-systems", error="invalid_token"'},
            )
    except GatewayError as exc:
        if system_id is None and isinstance(exc, Unauthenticated):
            # No valid system token: counted past the address's allowance (gateway.refusal_bursts).
            runtime.refuse_flood(request_source(), exc, "system.call")
        await _audit_system(runtime, "system.call", Outcome.REFUSED, system_id, exc.code, request)
        raise
    await _audit_system(runtime, "system.call", Outcome.ALLOWED, system_id, "allowed", request)
    return SystemCaller(system_id, claims.client_id)


@router.get("/api/v1/systems/me", tags=["systems"])
async def system_me(
    request: Request, runtime: RuntimeDep, authorization: AuthHeader = None
) -> dict[str, Any]:
    """The calling system's admission status, filing number (备案号) and approval period."""
    caller = await authenticate_system(runtime, authorization, request)

    def work(service: AdmissionService) -> dict[str, Any]:
        reg = service.get(caller.system_id)
        return {
            "system_id": reg.system_id,
            "name": reg.name,
            **_department_json(reg.department),
            "status": reg.status.value,
            "status_zh": STATUS_LABELS_ZH[reg.status],
            "filing_number": reg.filing_number,
            "approved_until": reg.approved_until.isoformat() if reg.approved_until else None,
            "renewal_open": reg.renewal_open,
            "client_id": caller.client_id,
        }

    return await _read(runtime, work)


@router.get("/api/v1/systems/me/burden", tags=["systems"])
async def system_burden(
    request: Request, runtime: RuntimeDep, authorization: AuthHeader = None
) -> dict[str, Any]:
    """The villages the calling system reaches, how many admitted systems each carries, and which of this
    system's fields villages already supply elsewhere or get back as backflowed data (prefill them)."""
    caller = await authenticate_system(runtime, authorization, request)
    catalog = runtime.catalog

    def work(service: AdmissionService) -> dict[str, Any]:
        reg = service.get(caller.system_id)
        admitted = service.list_systems([SystemStatus.APPROVED])
        equivalents = _equivalents(catalog)
        villages = (
            [
                v
                for v in _district_villages(runtime, admitted)
                if any(divisions.covers(r, v) for r in reg.reaches)
            ]
            if reg.reaches_villages
            else []
        )
        overlaps = service.overlaps(reg.system_id, _backflow_fields(catalog), equivalents=equivalents)
        return {
            "system_id": reg.system_id,
            "reaches_villages": reg.reaches_villages,
            "villages": [village_burden(admitted, v, equivalents=equivalents).as_dict() for v in villages],
            "reuse_or_prefill": [o.as_dict() for o in overlaps],
        }

    return await _read(runtime, work)


__all__ = [
    "AdmissionSettings",
    "authenticate_system",
    "open_outbound_credential",
    "router",
    "seal_outbound_credential",
    "token_issuer",
]
