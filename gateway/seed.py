"""Seed the gateway's own state for the demo world, through the same services users go through.

* Admission: the civil-affairs residents registry is registered by the department's system admin,
  reviewed by every required office and approved (it gets a filing number); a health-commission app is
  left pending; a check-in app that forces daily check-ins is rejected.
* Admission: the public-security bureau's person-house registry (一标三实) is registered and approved
  the same way: a second department's data behind the same gateway.
* Grants: the township officer requests scenario grants for the township (covering villages A and B);
  the owning department's steward approves (civil affairs for DIBAO_REVIEW and ELDERLY_VISIT, public
  security for GRID_VISIT), and a second steward approves the sensitive fields.
* Outbound credentials (when asked for): each registry's department issues the gateway an API key (its
  digest goes into the registry's accepted-keys file) and the department's system admin stores it the way
  ``PUT /api/v1/admission/systems/{id}/outbound-credential`` does: sealed under the key ring, audited.

Every change goes to the audit log. Idempotent: running it twice changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from admission import (
    AdmissionService,
    BurdenChecklist,
    ProvidedDataset,
    SystemRegistration,
    SystemStatus,
)
from audit import AuditEvent, AuditLog
from demoworld.civil_affairs import RESIDENT_FIELDS
from demoworld.person_house import HOUSE_FIELDS, OCCUPANT_FIELDS
from gateway.changes import change_event
from gateway.outbound import seal_outbound_credential, try_open_outbound_credential
from policies import GrantRepository, GrantService, GrantStatus, Subject
from policies.permissions import load_permissions
from policies.scenarios import load_scenarios

if TYPE_CHECKING:
    from masking import KeyRing

CIVIL_AFFAIRS_SYSTEM = "civil-affairs-registry"
PERSON_HOUSE_SYSTEM = "person-house-registry"
DEFAULT_PERSON_HOUSE_URL = "http://127.0.0.1:8102"
PENDING_SYSTEM = "health-followup-app"
REJECTED_SYSTEM = "village-checkin-app"
#: Who stores each demo registry's outbound credential: the system admin of its department.
_SYSTEM_ADMINS = {CIVIL_AFFAIRS_SYSTEM: "ca_sysadmin", PERSON_HOUSE_SYSTEM: "ps_sysadmin"}


def gateway_credentials_file(data_dir: Path, system_id: str) -> Path:
    """Where a demo registry keeps the digests of the API keys it issued to the gateway."""
    return data_dir / f"{system_id}.gateway-credentials"


def _identities() -> dict[str, Mapping[str, Any]]:
    from gateway.auth.devusers import dev_users

    return {user["username"]: user for user in dev_users()}


def _subject(user: Mapping[str, Any]) -> Subject:
    return Subject(
        user_id=str(user["user_id"]),
        org=str(user["org"]),
        roles=(str(user["role"]),),
        department=user.get("department"),
    )


def seed_demo(
    engine: Engine,
    *,
    upstream_url: str,
    person_house_url: str = DEFAULT_PERSON_HOUSE_URL,
    now: datetime | None = None,
    keys: KeyRing | None = None,
    gateway_credentials: Mapping[str, Path] | None = None,
) -> list[str]:
    """Seed admission and grants; return a line per thing created (empty when already seeded).

    ``upstream_url`` is the civil-affairs registry, ``person_house_url`` the person-house registry.
    ``gateway_credentials`` (system id -> accepted-keys file, with ``keys`` to seal under) makes each of
    those registries require an API key from the gateway, and stores it as the outbound credential."""
    now = now or datetime.now(UTC)
    users = _identities()
    log = AuditLog(engine)
    created: list[str] = []
    events: list[AuditEvent] = []

    def record(change: Mapping[str, Any], user: Mapping[str, Any]) -> None:
        events.append(change_event(change, actor_org=str(user["org"]), actor_roles=(str(user["role"]),)))

    with Session(engine) as session:
        created += _seed_admission(session, users, upstream_url, now, record, person_house_url)
        created += _seed_grants(session, users, now, record)
        if gateway_credentials:
            if keys is None:
                raise ValueError("storing outbound credentials needs the key ring")
            created += _seed_outbound_credentials(session, users, keys, gateway_credentials, now, record)
        session.commit()
    if events:
        log.append_many(events)
    return created


# What each registry serves, as it declares it: the registrations below provide exactly these fields.
_PERSON_HOUSE_FIELDS: dict[str, tuple[str, ...]] = {"houses": HOUSE_FIELDS, "occupants": OCCUPANT_FIELDS}


def _registration(
    system_id: str,
    name: str,
    department: str,
    purpose: str,
    *,
    created_by: str,
    collects: tuple[str, ...],
    provides: tuple[ProvidedDataset, ...] = (),
    checklist: BurdenChecklist,
) -> SystemRegistration:
    return SystemRegistration(
        system_id=system_id,
        name=name,
        department=department,
        purpose=purpose,
        reaches=("310151000000",),
        reaches_villages=True,
        collects_fields=collects,
        provides=provides,
        security_level=3,
        contact="区大数据中心值班室",
        checklist=checklist,
        created_by=created_by,
    )


def _seed_admission(
    session: Session,
    users: Mapping[str, Mapping[str, Any]],
    upstream_url: str,
    now: datetime,
    record: Callable[[Mapping[str, Any], Mapping[str, Any]], None],
    person_house_url: str = DEFAULT_PERSON_HOUSE_URL,
) -> list[str]:
    service = AdmissionService(session, clock=lambda: now)
    created: list[str] = []
    reviewers = [u for u in users.values() if u["role"] == "admission_reviewer"]
    ca_admin = users["ca_sysadmin"]
    hb_admin = users["hb_sysadmin"]
    good = BurdenChecklist(
        duplicates_platform_function=False,
        can_embed_in_platform=True,
        forces_checkins=False,
        forces_points_or_rankings=False,
        offers_complaint_entry=True,
    )
    plans: list[tuple[SystemRegistration, Mapping[str, Any], str]] = [
        (
            _registration(
                CIVIL_AFFAIRS_SYSTEM,
                "区民政局居民信息登记系统",
                "civil_affairs",
                "向村（居）委会回流辖区居民基础信息与低保状态，支撑低保复核、高龄走访等场景。",
                created_by=str(ca_admin["user_id"]),
                collects=(),
                provides=(
                    ProvidedDataset(
                        dataset="residents",
                        base_url=upstream_url,
                        # The second endpoint is the record-id lookup a complaint asks (README).
                        endpoints=("/residents", "/residents/lookup"),
                        fields=RESIDENT_FIELDS,
                    ),
                ),
                checklist=good,
            ),
            ca_admin,
            "approve",
        ),
        (
            _registration(
                PERSON_HOUSE_SYSTEM,
                "区公安分局一标三实信息系统",
                "public_security",
                "向村（居）委会和网格员回流所负责微网格内的实有房屋与实有人口信息，支撑网格走访。",
                created_by=str(users["ps_sysadmin"]["user_id"]),
                collects=(),
                provides=tuple(
                    ProvidedDataset(
                        dataset=dataset,
                        base_url=person_house_url,
                        endpoints=(f"/{dataset}", f"/{dataset}/lookup"),
                        fields=fields,
                    )
                    for dataset, fields in _PERSON_HOUSE_FIELDS.items()
                ),
                checklist=good,
            ),
            users["ps_sysadmin"],
            "approve",
        ),
        (
            _registration(
                PENDING_SYSTEM,
                "区卫健委慢病随访小程序",
                "health",
                "村医与网格员登记慢病患者随访情况。",
                created_by=str(hb_admin["user_id"]),
                collects=("residents.name", "residents.id_number", "residents.mobile", "residents.address"),
                checklist=good,
            ),
            hb_admin,
            "pending",
        ),
        (
            _registration(
                REJECTED_SYSTEM,
                "村干部每日打卡应用",
                "health",
                "要求村干部每日定位打卡并上报工作照片。",
                created_by=str(hb_admin["user_id"]),
                collects=("residents.name", "residents.mobile"),
                checklist=BurdenChecklist(
                    duplicates_platform_function=True,
                    can_embed_in_platform=True,
                    forces_checkins=True,
                    forces_points_or_rankings=True,
                    offers_complaint_entry=False,
                ),
            ),
            hb_admin,
            "reject",
        ),
    ]
    for registration, admin, outcome in plans:
        if service.repo.exists(registration.system_id):
            continue
        record(service.register(registration), admin)
        record(service.submit(registration.system_id, str(admin["user_id"])), admin)
        if outcome == "pending":
            created.append(f"admission: {registration.system_id} submitted, awaiting joint review")
            continue
        for reviewer in reviewers:
            if service.get(registration.system_id).status is not SystemStatus.SUBMITTED:
                break
            if reviewer.get("department") == registration.department:
                continue  # recused: a reviewer may not belong to the applying department
            if outcome == "reject":
                change = service.review(
                    registration.system_id,
                    str(reviewer["office"]),
                    str(reviewer["user_id"]),
                    str(reviewer.get("department") or ""),
                    "reject",
                    "强制村干部每日打卡，违反《关于进一步为居村组织减负的若干措施》，且与社区云功能重复。",
                )
            else:
                change = service.review(
                    registration.system_id,
                    str(reviewer["office"]),
                    str(reviewer["user_id"]),
                    str(reviewer.get("department") or ""),
                    "approve",
                    "同意接入。",
                )
            record(change, reviewer)
        status = service.get(registration.system_id).status
        created.append(f"admission: {registration.system_id} {status.value}")
    return created


def _seed_grants(
    session: Session,
    users: Mapping[str, Mapping[str, Any]],
    now: datetime,
    record: Callable[[Mapping[str, Any], Mapping[str, Any]], None],
) -> list[str]:
    repository = GrantRepository(session)
    # Per scenario, so a database seeded before a scenario existed gains its grant on the next run.
    seeded = {grant.scenario for grant in repository.list_grants()}
    service = GrantService(repository, load_scenarios(), load_permissions())
    officer = users["town_officer"]
    created: list[str] = []
    township = str(officer["org"])
    # Each grant is approved by the stewards of the department owning its data (a second one for
    # the most sensitive fields).
    for scenario, days, department in (
        ("DIBAO_REVIEW", 90, "ca"),
        ("ELDERLY_VISIT", 180, "ca"),
        ("GRID_VISIT", 180, "ps"),
    ):
        if scenario in seeded:
            continue
        stewards = [users[f"{department}_steward"], users[f"{department}_steward2"]]
        grant, change = service.request(
            _subject(officer), scenario, township, None, f"{scenario} 年度工作（演示）", now
        )
        record(change, officer)
        for steward in stewards:
            grant, change = service.approve(
                grant.grant_id, _subject(steward), now, valid_until=now + timedelta(days=days)
            )
            record(change, steward)
            if grant.status is GrantStatus.APPROVED:
                break
        created.append(
            f"grant: {scenario} for {township} {grant.status.value} until {grant.valid_until:%Y-%m-%d}"
        )
    return created


def _seed_outbound_credentials(
    session: Session,
    users: Mapping[str, Mapping[str, Any]],
    keys: KeyRing,
    files: Mapping[str, Path],
    now: datetime,
    record: Callable[[Mapping[str, Any], Mapping[str, Any]], None],
) -> list[str]:
    """Each department issues the gateway an API key and its system admin stores it, sealed, as the system's
    outbound credential. A stored credential its registry still accepts is kept (idempotent)."""
    from demoworld.departmental import accepted_digests, credential_digest, issue_gateway_credential

    service = AdmissionService(session, clock=lambda: now)
    created: list[str] = []
    for system_id, path in files.items():
        stored = service.outbound_credential(system_id)
        if stored is not None and path.exists():
            current = try_open_outbound_credential(keys, system_id, stored)
            if current is not None and credential_digest(current) in accepted_digests(path):
                continue
        admin = users[_SYSTEM_ADMINS[system_id]]
        credential = issue_gateway_credential(path)
        sealed = seal_outbound_credential(keys, system_id, credential)
        record(service.set_outbound_credential(system_id, sealed, str(admin["user_id"])), admin)
        created.append(
            f"admission: {system_id} issued the gateway an API key; stored as its outbound credential"
        )
    return created
