"""The admission registry: repository (all queries), service (the rules), and the routing verdict.

The service never commits: the caller's unit of work does, and hands the returned change events to audit
(admission does not import audit). Each status change, and each change of a stored outbound credential,
bumps ``admission_registry_version`` in the same transaction, so every gateway process can notice a block
(or pick up a rotated credential) within one poll interval.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, NamedTuple, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from admission import credentials as creds
from admission.burden import FieldOverlap, field_overlap
from admission.config import AdmissionConfig, load_admission_config
from admission.errors import (
    AdmissionConflict,
    AlreadyVoted,
    ConfigurationError,
    CredentialConflict,
    IllegalTransition,
    InvalidRegistration,
    ReasonRequired,
    RegistrationExists,
    RegistrationNotFound,
    SeparationOfDuties,
    UnknownOffice,
)
from admission.model import (
    STATUS_LABELS_ZH,
    BurdenChecklist,
    Concern,
    ProvidedDataset,
    ReviewRecord,
    ReviewVote,
    SystemRegistration,
    SystemStatus,
    refuse_personal_data,
)
from admission.statemachine import TERMINAL, Action, Party, offered_actions, others_actions, transition
from admission.tables import ClientRow, RegistryVersionRow, ReviewRow, SystemRow
from admission.tokens import credential_generation

Clock = Callable[[], datetime]
ChangeEvent = dict[str, Any]


#: China Standard Time (UTC+8, no daylight saving): filing numbers count years as Beijing does.
_BEIJING = timezone(timedelta(hours=8), "CST")


def utc_now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------------------------
# Routing verdict


class RoutingSubject(Protocol):
    @property
    def system_id(self) -> str: ...
    @property
    def status(self) -> SystemStatus: ...
    @property
    def approved_until(self) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class RoutingVerdict:
    allowed: bool
    code: str
    message_zh: str
    message_en: str
    system_id: str


def routing_verdict(
    registration: RoutingSubject | None, now: datetime, *, system_id: str | None = None
) -> RoutingVerdict:
    """May the gateway route to this system right now? Fails closed: only an approved system whose approval
    has not reached ``approved_until`` passes (the boundary instant itself is already lapsed)."""
    if registration is None:
        sid = system_id or "?"
        return RoutingVerdict(
            False,
            "system_not_registered",
            f"部门系统 {sid} 未在准入登记册中登记，网关不予转发。",
            f"Departmental system {sid} is not in the admission registry; the gateway will not route to it.",
            sid,
        )
    sid = registration.system_id
    status = SystemStatus(registration.status)
    until = registration.approved_until
    if status is SystemStatus.APPROVED and until is not None and now < until:
        return RoutingVerdict(True, "ok", "已准入", "admitted", sid)
    if status in (SystemStatus.APPROVED, SystemStatus.LAPSED):
        return RoutingVerdict(
            False,
            "system_lapsed",
            f"部门系统 {sid} 的准入已到期，须重新通过联审后才能访问。请本部门系统管理员发起重新审核"
            "（grassroots admission recertify），各审核单位再次同意后即恢复。",
            f"Departmental system {sid}: its admission has lapsed; it must be re-reviewed before use. Its "
            "department's system admin opens the re-review (grassroots admission recertify); it works again "
            "once every office has approved.",
            sid,
        )
    if status is SystemStatus.SUSPENDED:
        return RoutingVerdict(
            False,
            "system_suspended",
            f"部门系统 {sid} 的准入已被暂停，暂不能访问。暂停由监督部门决定，也只能由其恢复，"
            "重新审核不能解除；原因请向本部门系统管理员了解。",
            f"Departmental system {sid} has been suspended and cannot be used for now. The supervisors "
            "suspended it and only they can lift it (a re-review does not); ask your department's system "
            "admin why.",
            sid,
        )
    if status is SystemStatus.REVOKED:
        return RoutingVerdict(
            False,
            "system_revoked",
            f"部门系统 {sid} 的准入已被撤销，不能访问。",
            f"Departmental system {sid}: its admission has been revoked.",
            sid,
        )
    return RoutingVerdict(
        False,
        "system_not_approved",
        f"部门系统 {sid} 尚未通过准入联审（当前状态：{STATUS_LABELS_ZH[status]}），网关不予转发。"
        "各审核单位都同意后才能访问；进度可由本部门系统管理员查看（grassroots admission progress）。",
        f"Departmental system {sid} has not been approved by the joint admission review "
        f"(status: {status.value}); the gateway will not route to it. It may be used once every office "
        "has approved; its department's system admin follows the review (grassroots admission progress).",
        sid,
    )


# --------------------------------------------------------------------------------------------------------
# Status snapshot for gateway processes


class StatusEntry(NamedTuple):
    status: SystemStatus
    approved_until: datetime | None


@dataclass(frozen=True, slots=True)
class _SnapshotSubject:
    system_id: str
    status: SystemStatus
    approved_until: datetime | None


class StatusSnapshot(Mapping[str, StatusEntry]):
    """``system_id -> (status, approved_until)`` as of ``version`` of the registry. A gateway process keeps
    one, polls ``registry_version`` (one indexed row) every fraction of a second, and reloads on change;
    lapse by time needs no reload because ``verdict`` compares ``approved_until`` with ``now``."""

    def __init__(self, entries: Mapping[str, StatusEntry], version: int) -> None:
        self._entries = dict(entries)
        self.version = version

    def __getitem__(self, system_id: str) -> StatusEntry:
        return self._entries[system_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def verdict(self, system_id: str, now: datetime) -> RoutingVerdict:
        entry = self._entries.get(system_id)
        if entry is None:
            return routing_verdict(None, now, system_id=system_id)
        return routing_verdict(_SnapshotSubject(system_id, entry.status, entry.approved_until), now)

    def __repr__(self) -> str:
        return f"StatusSnapshot(version={self.version}, systems={len(self._entries)})"


def registry_version(session: Session) -> int:
    """The current registry version (0 before any status change)."""
    value = session.scalar(select(RegistryVersionRow.version).where(RegistryVersionRow.id == 1))
    return int(value or 0)


def load_status_snapshot(session: Session) -> StatusSnapshot:
    """Read the version first: a change racing with the read leaves the snapshot older than its version
    number at worst, so the next poll sees a newer version and reloads."""
    version = registry_version(session)
    rows = session.execute(select(SystemRow.system_id, SystemRow.status, SystemRow.approved_until)).all()
    entries = {sid: StatusEntry(SystemStatus(status), until) for sid, status, until in rows}
    return StatusSnapshot(entries, version)


# --------------------------------------------------------------------------------------------------------
# Repository: every query lives here.


def _provided_to_json(p: ProvidedDataset) -> dict[str, Any]:
    return {
        "dataset": p.dataset,
        "base_url": p.base_url,
        "endpoints": list(p.endpoints),
        "fields": list(p.fields),
    }


def _row_to_registration(row: SystemRow) -> SystemRegistration:
    return SystemRegistration(
        system_id=row.system_id,
        name=row.name,
        department=row.department,
        purpose=row.purpose,
        reaches=tuple(row.reaches),
        reaches_villages=row.reaches_villages,
        collects_fields=tuple(row.collects_fields),
        provides=tuple(
            ProvidedDataset(p["dataset"], p["base_url"], tuple(p["endpoints"]), tuple(p["fields"]))
            for p in row.provides
        ),
        security_level=row.security_level,
        contact=row.contact,
        checklist=BurdenChecklist.from_mapping(row.checklist),
        status=SystemStatus(row.status),
        filing_number=row.filing_number,
        approved_until=row.approved_until,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        review_round=row.review_round,
        renewal_open=row.renewal_open,
    )


def _copy_into(row: SystemRow, reg: SystemRegistration) -> None:
    row.name = reg.name
    row.department = reg.department
    row.purpose = reg.purpose
    row.reaches = list(reg.reaches)
    row.reaches_villages = reg.reaches_villages
    row.collects_fields = list(reg.collects_fields)
    row.provides = [_provided_to_json(p) for p in reg.provides]
    row.security_level = reg.security_level
    row.contact = reg.contact
    row.checklist = reg.checklist.as_dict()
    row.status = reg.status.value
    row.filing_number = reg.filing_number
    row.approved_until = reg.approved_until
    row.review_round = reg.review_round
    row.renewal_open = reg.renewal_open


def _row_to_review(row: ReviewRow) -> ReviewRecord:
    return ReviewRecord(
        system_id=row.system_id,
        round=row.review_round,
        office=row.office,
        reviewer_id=row.reviewer_id,
        reviewer_department=row.reviewer_department,
        vote=ReviewVote(row.vote),
        comment=row.comment,
        at=row.created_at,
    )


class AdmissionRepository:
    """Reads and writes the admission tables through the caller's session; never commits."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def _row(self, system_id: str, *, for_update: bool = False) -> SystemRow | None:
        stmt = select(SystemRow).where(SystemRow.system_id == system_id)
        if for_update:
            # Serialises concurrent votes on one system, so the last approval is never missed.
            stmt = stmt.with_for_update()
        return self.session.scalars(stmt).one_or_none()

    def get(self, system_id: str, *, for_update: bool = False) -> SystemRegistration | None:
        row = self._row(system_id, for_update=for_update)
        return None if row is None else _row_to_registration(row)

    def exists(self, system_id: str) -> bool:
        return self.session.scalar(select(func.count()).where(SystemRow.system_id == system_id)) == 1

    def add(self, reg: SystemRegistration, now: datetime) -> SystemRegistration:
        row = SystemRow(
            system_id=reg.system_id,
            created_by=reg.created_by,
            created_at=now,
            updated_at=now,
            status_changed_at=now,
        )
        _copy_into(row, reg)
        self.session.add(row)
        self.session.flush()
        return _row_to_registration(row)

    def save(self, reg: SystemRegistration, now: datetime, *, status_changed: bool) -> SystemRegistration:
        row = self._row(reg.system_id)
        if row is None:
            raise RegistrationNotFound(reg.system_id)
        _copy_into(row, reg)
        row.updated_at = now
        if status_changed:
            row.status_changed_at = now
        self.session.flush()
        return _row_to_registration(row)

    def list_systems(self, statuses: Iterable[SystemStatus] | None = None) -> list[SystemRegistration]:
        stmt = select(SystemRow).order_by(SystemRow.system_id)
        if statuses is not None:
            stmt = stmt.where(SystemRow.status.in_([s.value for s in statuses]))
        return [_row_to_registration(r) for r in self.session.scalars(stmt)]

    def due_to_lapse(self, now: datetime) -> list[str]:
        stmt = (
            select(SystemRow.system_id)
            .where(
                # A suspended system stays suspended past its approval's end (see the state machine).
                SystemRow.status == SystemStatus.APPROVED.value,
                SystemRow.approved_until <= now,
            )
            .order_by(SystemRow.system_id)
        )
        return list(self.session.scalars(stmt))

    def add_review(self, record: ReviewRecord) -> None:
        self.session.add(
            ReviewRow(
                system_id=record.system_id,
                review_round=record.round,
                office=record.office,
                reviewer_id=record.reviewer_id,
                reviewer_department=record.reviewer_department,
                vote=record.vote.value,
                comment=record.comment,
                created_at=record.at,
            )
        )
        self.session.flush()

    def reviews(self, system_id: str, review_round: int | None = None) -> list[ReviewRecord]:
        stmt = select(ReviewRow).where(ReviewRow.system_id == system_id)
        if review_round is not None:
            stmt = stmt.where(ReviewRow.review_round == review_round)
        stmt = stmt.order_by(ReviewRow.review_round, ReviewRow.id)
        return [_row_to_review(r) for r in self.session.scalars(stmt)]

    def bump_version(self, now: datetime) -> int:
        """Increment the registry version in this transaction (on PostgreSQL the row lock also serialises
        status changes, which keeps filing-number sequencing race-free)."""
        result = self.session.execute(
            update(RegistryVersionRow)
            .where(RegistryVersionRow.id == 1)
            .values(version=RegistryVersionRow.version + 1, changed_at=now)
            .returning(RegistryVersionRow.version)
        ).scalar_one_or_none()
        if result is None:
            self.session.add(RegistryVersionRow(id=1, version=1, changed_at=now))
            self.session.flush()
            return 1
        return int(result)

    def filing_numbers_with_prefix(self, prefix: str) -> int:
        return int(
            self.session.scalar(
                select(func.count()).where(SystemRow.filing_number.startswith(prefix, autoescape=True))
            )
            or 0
        )

    def client_for_system(self, system_id: str) -> ClientRow | None:
        return self.session.scalars(select(ClientRow).where(ClientRow.system_id == system_id)).one_or_none()

    def client(self, client_id: str) -> ClientRow | None:
        return self.session.get(ClientRow, client_id)

    def add_client(self, row: ClientRow) -> None:
        self.session.add(row)
        self.session.flush()

    def delete_client(self, system_id: str) -> bool:
        row = self.client_for_system(system_id)
        if row is None:
            return False
        self.session.delete(row)
        self.session.flush()
        return True

    def outbound_credential(self, system_id: str) -> bytes | None:
        return self.session.scalar(
            select(SystemRow.outbound_credential_ciphertext).where(SystemRow.system_id == system_id)
        )

    def outbound_credentials(self) -> dict[str, bytes]:
        """Every stored outbound-credential ciphertext, by system id."""
        rows = self.session.execute(
            select(SystemRow.system_id, SystemRow.outbound_credential_ciphertext).where(
                SystemRow.outbound_credential_ciphertext.is_not(None)
            )
        ).all()
        return {system_id: bytes(blob) for system_id, blob in rows if blob is not None}

    def set_outbound_credential(self, system_id: str, ciphertext: bytes | None, now: datetime) -> None:
        row = self._row(system_id)
        if row is None:
            raise RegistrationNotFound(system_id)
        row.outbound_credential_ciphertext = ciphertext
        row.updated_at = now
        self.session.flush()


# --------------------------------------------------------------------------------------------------------
# Service: the rules.


@dataclass(frozen=True, slots=True)
class ReviewProgress:
    """What a reviewer sees before voting: who has signed, who has not, and the checklist concerns."""

    system_id: str
    status: SystemStatus
    round: int
    renewal: bool
    required_offices: tuple[str, ...]
    recused_offices: tuple[str, ...]
    approved_by: tuple[str, ...]
    pending: tuple[str, ...]
    votes: tuple[ReviewRecord, ...]
    concerns: tuple[Concern, ...]
    #: The round ended without approval (withdrawn, sent back, rejected): its approvals do not carry over.
    round_ended: bool = False


@dataclass(frozen=True, slots=True)
class RecertificationReminder:
    system_id: str
    approved_until: datetime
    days_left: int  # negative once lapsed
    threshold_days: int  # 0 once lapsed
    lapsed: bool = False  # the approval has ended: the system is blocked until it is re-approved


@dataclass(frozen=True, slots=True)
class ClientState:
    client_id: str
    system_id: str
    secret_generation: str | None
    key_generation: str | None

    def accepts(self, generation: str) -> bool:
        return generation in (self.secret_generation, self.key_generation)


@dataclass(frozen=True, slots=True)
class IssuedClientSecret:
    """Returned once at issue or rotation; unpacks as ``client_id, secret``. The secret never appears in
    ``repr`` and is not stored anywhere in clear."""

    client_id: str
    secret: str = field(repr=False)
    event: ChangeEvent = field(repr=False)

    def __iter__(self) -> Iterator[str]:
        return iter((self.client_id, self.secret))


# Change-event kinds, past tense, one per action (review outcomes name themselves in ``review``).
_EVENT_KINDS: Mapping[Action, str] = {
    Action.SUBMIT: "submitted",
    Action.WITHDRAW: "withdrawn",
    Action.REVISE: "reopened",
    Action.APPROVE: "approved",
    Action.REJECT: "rejected",
    Action.REQUEST_CHANGES: "changes_requested",
    Action.SUSPEND: "suspended",
    Action.REINSTATE: "reinstated",
    Action.REVOKE: "revoked",
    Action.RECERTIFY: "recertification_opened",
    Action.LAPSE: "lapsed",
}

#: Statuses in which the last review round ended without approval: nothing of it carries over.
_ROUND_ENDED_UNAPPROVED = frozenset(
    {SystemStatus.DRAFT, SystemStatus.CHANGES_REQUESTED, SystemStatus.REJECTED}
)

#: The fields of a registration its department may set and change (besides its id and department).
EDITABLE_FIELDS = (
    "name",
    "purpose",
    "reaches",
    "reaches_villages",
    "collects_fields",
    "provides",
    "security_level",
    "contact",
    "checklist",
)


class AdmissionService:
    """Registration, joint review, supervision, re-certification and credentials.

    Authorisation of *who* may call each method (a department's system admin, a reviewer of an office, a
    supervisor) is the gateway's function-level check; this service enforces the domain rules: the state
    machine, every required office, separation of duties, and credential hygiene.
    """

    def __init__(
        self, session: Session, config: AdmissionConfig | None = None, clock: Clock | None = None
    ) -> None:
        self.session = session
        self.repo = AdmissionRepository(session)
        self.config = config if config is not None else load_admission_config()
        self._clock = clock or utc_now

    # -- helpers -------------------------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the admission clock must return timezone-aware times")
        return now.astimezone(UTC)

    def _load(self, system_id: str, *, for_update: bool = True) -> SystemRegistration:
        reg = self.repo.get(system_id, for_update=for_update)
        if reg is None:
            raise RegistrationNotFound(system_id)
        return reg

    @staticmethod
    def _event(
        kind: str,
        actor: str,
        reg: SystemRegistration,
        before: SystemStatus | None,
        now: datetime,
        **extra: Any,
    ) -> ChangeEvent:
        return {
            "kind": f"admission.{kind}",
            "actor": actor,
            "system_id": reg.system_id,
            "department": reg.department,
            "before": before.value if before is not None else None,
            "after": reg.status.value,
            "at": now.isoformat(),
            **extra,
        }

    def _move(
        self,
        reg: SystemRegistration,
        action: Action,
        actor: str,
        now: datetime,
        *,
        kind: str | None = None,
        **changes: Any,
    ) -> tuple[SystemRegistration, ChangeEvent]:
        before = reg.status
        after = transition(before, action, system_id=reg.system_id)
        self.repo.bump_version(now)
        saved = self.repo.save(reg.replace(status=after, **changes), now, status_changed=after is not before)
        return saved, self._event(kind or _EVENT_KINDS[action], actor, saved, before, now)

    @staticmethod
    def _require_reason(reason: str, field_name: str = "reason") -> str:
        reason = reason.strip()
        if not reason:
            raise ReasonRequired(field_name, "须说明理由", "a reason is required")
        # Reasons and comments are written to the audit log and the review record (PIPL Art. 51).
        return refuse_personal_data(field_name, reason)

    # -- queries -------------------------------------------------------------------------------------

    def get(self, system_id: str) -> SystemRegistration:
        return self._load(system_id, for_update=False)

    def list_systems(self, statuses: Iterable[SystemStatus] | None = None) -> list[SystemRegistration]:
        return self.repo.list_systems(statuses)

    def reviews(self, system_id: str, review_round: int | None = None) -> list[ReviewRecord]:
        return self.repo.reviews(system_id, review_round)

    def review_progress(self, system_id: str) -> ReviewProgress:
        reg = self.get(system_id)
        votes = tuple(self.repo.reviews(system_id, reg.review_round)) if reg.review_round else ()
        required = tuple(o.code for o in self.config.required_offices(reg.department))
        recused = tuple(o.code for o in self.config.offices if o.department == reg.department)
        approved = tuple(v.office for v in votes if v.vote is ReviewVote.APPROVE)
        round_ended = bool(reg.review_round) and reg.status in _ROUND_ENDED_UNAPPROVED
        if round_ended:
            # A resubmission opens a new round every office signs again. The votes stay, as the record.
            approved = ()
        return ReviewProgress(
            system_id=reg.system_id,
            status=reg.status,
            round=reg.review_round,
            renewal=reg.renewal_open,
            required_offices=required,
            recused_offices=recused,
            approved_by=approved,
            pending=tuple(o for o in required if o not in approved),
            votes=votes,
            concerns=reg.checklist.concerns(),
            round_ended=round_ended,
        )

    def overlaps(
        self,
        system_id: str,
        backflow_fields: Iterable[str],
        *,
        equivalents: Mapping[str, str] | None = None,
    ) -> list[FieldOverlap]:
        """The "reuse or prefill" view for reviewers of ``system_id``."""
        reg = self.get(system_id)
        admitted = self.repo.list_systems([SystemStatus.APPROVED])
        return field_overlap(reg, admitted, backflow_fields, equivalents=equivalents)

    def reminders_due(self, now: datetime | None = None) -> list[RecertificationReminder]:
        """Approved systems whose approval ends within the largest reminder window, each with the tightest
        threshold it has crossed (the caller sends one reminder per threshold), and — first, the most
        urgent — systems whose approval has ended (lapsed by time or marked lapsed): blocked until their
        department recertifies them and the offices approve again. A lapsed system whose review goes on
        (``submitted`` after the lapse job continued its renewal round, or after its department recertified
        it) stays listed until the offices have approved it: it is still blocked."""
        now = now or self._now()
        reminders: list[RecertificationReminder] = []
        windows = sorted(self.config.reminder_days_before)
        statuses = [SystemStatus.LAPSED, SystemStatus.APPROVED, SystemStatus.SUBMITTED]
        for reg in self.repo.list_systems(statuses):
            if reg.approved_until is None:
                continue
            if reg.status is SystemStatus.SUBMITTED and reg.approved_until > now:
                continue  # in review, but not past an approval's end (a first review has none)
            left = reg.approved_until - now
            if reg.status is SystemStatus.LAPSED or reg.approved_until <= now:
                # Whole days since it ended, counted toward zero: ended 25 hours ago is -1, not
                # timedelta's floored -2 (ended under a day ago is 0).
                since = -((-left).days)
                reminders.append(
                    RecertificationReminder(reg.system_id, reg.approved_until, since, 0, lapsed=True)
                )
                continue
            threshold = next((d for d in windows if left.total_seconds() <= d * 86400), None)
            if threshold is not None:
                reminders.append(
                    RecertificationReminder(reg.system_id, reg.approved_until, left.days, threshold)
                )
        reminders.sort(key=lambda r: (not r.lapsed, r.approved_until))  # the most urgent first
        return reminders

    # -- registration --------------------------------------------------------------------------------

    def register(self, registration: SystemRegistration) -> ChangeEvent:
        """File a new registration as a draft; ``registration.created_by`` is the acting system admin."""
        if not registration.created_by:
            raise InvalidRegistration("created_by", "须记录登记人", "the registering user is required")
        if self.repo.exists(registration.system_id):
            raise RegistrationExists(registration.system_id)
        now = self._now()
        draft = registration.replace(
            status=SystemStatus.DRAFT,
            filing_number=None,
            approved_until=None,
            review_round=0,
            renewal_open=False,
        )
        saved = self.repo.add(draft, now)
        return self._event("registered", registration.created_by, saved, None, now)

    def update(self, registration: SystemRegistration, actor: str) -> ChangeEvent:
        """Replace the editable fields; only a draft or a registration sent back for changes is editable."""
        current = self._load(registration.system_id)
        if current.status not in (SystemStatus.DRAFT, SystemStatus.CHANGES_REQUESTED):
            under_review = current.status is SystemStatus.SUBMITTED or current.renewal_open
            raise IllegalTransition(
                current.status.value,
                "update",
                system_id=current.system_id,
                status_zh=STATUS_LABELS_ZH[current.status],
                action_zh="修改登记",
                possible=offered_actions(current.status, under_review=under_review, party=Party.DEPARTMENT),
                others=others_actions(current.status, under_review=under_review, party=Party.DEPARTMENT),
                final=current.status in TERMINAL,
            )
        if registration.department != current.department:
            raise InvalidRegistration(
                "department", "登记部门不可更改", "the applying department cannot change"
            )
        now = self._now()
        changed = {
            n: getattr(registration, n)
            for n in EDITABLE_FIELDS
            if getattr(registration, n) != getattr(current, n)
        }
        saved = self.repo.save(current.replace(**changed), now, status_changed=False)
        return self._event("updated", actor, saved, current.status, now, changed_fields=sorted(changed))

    def submit(self, system_id: str, actor: str) -> ChangeEvent:
        """Send to joint review (also resubmission after changes or a rejection); opens a new round."""
        reg = self._load(system_id)
        unanswered = reg.checklist.unanswered()
        if unanswered:
            asked = "；".join(f"{BurdenChecklist.QUESTIONS_ZH[q]}（{q}）" for q in unanswered)
            raise InvalidRegistration(
                "checklist",
                f"减负清单尚未填写完整，还须逐项回答是或否：{asked}",
                f"the burden checklist is incomplete; answer yes or no to {', '.join(unanswered)}",
            )
        if not self.config.required_offices(reg.department):
            raise ConfigurationError(
                "没有可以审核该部门系统的必审单位，请检查联审配置。",
                "No required office can review this department's system; check the review configuration.",
            )
        now = self._now()
        _, event = self._move(
            reg, Action.SUBMIT, actor, now, review_round=reg.review_round + 1, renewal_open=False
        )
        return event

    def withdraw(self, system_id: str, actor: str) -> ChangeEvent:
        reg = self._load(system_id)
        _, event = self._move(reg, Action.WITHDRAW, actor, self._now())
        return event

    def revise(self, system_id: str, actor: str) -> ChangeEvent:
        """Reopen a rejected registration as a draft so it can be edited before resubmission."""
        reg = self._load(system_id)
        _, event = self._move(reg, Action.REVISE, actor, self._now())
        return event

    # -- joint review --------------------------------------------------------------------------------

    def review(
        self,
        system_id: str,
        office: str,
        reviewer_id: str,
        reviewer_department: str,
        vote: ReviewVote | str,
        comment: str = "",
    ) -> ChangeEvent:
        """Record one office's vote. A rejection or a request for changes ends the round at once, with the
        reviewer's comment as the reason; approval needs every required (non-recused) office."""
        vote = ReviewVote(vote)
        reg = self._load(system_id)
        under_review = reg.status is SystemStatus.SUBMITTED or (
            reg.status is SystemStatus.APPROVED and reg.renewal_open
        )
        if not under_review:
            # Told to a reviewer, who can take none of the department's actions (submit, revise): what
            # happens next and where the system will show up again, not "possible now: submit".
            raise IllegalTransition(
                reg.status.value,
                vote.value,
                system_id=system_id,
                status_zh=STATUS_LABELS_ZH[reg.status],
                action_zh="联审表决",
                final=reg.status in TERMINAL,
                hint=(
                    (
                        "它已被监督部门暂停，其重新审核随之暂停，本轮已作的表决仍然有效；监督部门恢复它后，"
                        "它会回到您的待办中（admission list --awaiting-me）。",
                        "It is suspended by the supervisors, and its re-certification is paused with it (the "
                        "votes cast stand); once they reinstate it, it is back in your work list "
                        "(admission list --awaiting-me).",
                    )
                    if reg.status is SystemStatus.SUSPENDED and reg.renewal_open
                    else (
                        "它现在不在联审中，没有需要表决的内容；申请部门提交联审（或发起重新审核）后，"
                        "它会出现在您的待办中（admission list --awaiting-me）。",
                        "It is not under review, so there is nothing to vote on; once its department submits "
                        "it (or opens a re-certification), it appears in your work list "
                        "(admission list --awaiting-me).",
                    )
                ),
            )
        office_cfg = self.config.office(office)
        if office_cfg is None:
            raise UnknownOffice(office)
        if reviewer_department == reg.department or office_cfg.department == reg.department:
            # The department as the progress view names it (its office, 区民政局, or the district's
            # table, 区卫健委); one no table names keeps its code, marked as such.
            name_zh, name_en = self.config.department_names(reg.department)
            raise SeparationOfDuties(
                f"审核人不得来自申请部门（{name_zh}），该单位须回避对系统 {system_id} 的审核。",
                f"A reviewer may not belong to the applying department ({name_en}); "
                f"this review of {system_id} must be done by another office.",
            )
        if reviewer_id == reg.created_by:
            raise SeparationOfDuties(
                f"登记人不得审核自己登记的系统 {system_id}。",
                f"The person who registered {system_id} may not review it.",
            )
        votes = self.repo.reviews(system_id, reg.review_round)
        if any(v.office == office for v in votes):
            raise AlreadyVoted(
                f"{office_cfg.name_zh}已在本轮对系统 {system_id} 表决，每个单位每轮只表决一次。"
                "如需改变意见，请联系申请部门撤回（withdraw）后重新提交，在新一轮中再表决。",
                f"{office_cfg.name_en} has already voted on {system_id} in this round; an office votes once "
                "a round. To change the vote, ask the applying department to withdraw and resubmit it, and "
                "vote in the new round.",
            )
        if any(v.reviewer_id == reviewer_id for v in votes):
            raise SeparationOfDuties(
                "同一审核人在一轮联审中只能代表一个单位表决。",
                "One reviewer may vote for only one office in a review round.",
            )
        if vote is not ReviewVote.APPROVE and not comment.strip():
            # "comment: a reason is required" left a reviewer unsure which option to add, and whether
            # her vote had counted.
            what_zh, what_en = (
                ("驳回", "A vote to reject")
                if vote is ReviewVote.REJECT
                else ("要求修改", "A request for changes")
            )
            raise ReasonRequired(
                "comment",
                f"{what_zh}须写明理由（--comment），理由会退回申请部门并记入联审记录。本次未表决。",
                f"{what_en} needs the reasons (--comment); they go back to the department and into the "
                "review record. Nothing was voted.",
            )
        if vote is not ReviewVote.APPROVE or comment.strip():
            comment = self._require_reason(comment, "comment")
        now = self._now()
        record = ReviewRecord(
            system_id, reg.review_round, office, reviewer_id, reviewer_department, vote, comment, now
        )
        self.repo.add_review(record)
        review_info: dict[str, Any] = {
            "office": office,
            "reviewer_id": reviewer_id,
            "reviewer_department": reviewer_department,
            "vote": vote.value,
            "round": reg.review_round,
            "renewal": reg.renewal_open,
        }
        if vote is ReviewVote.REJECT:
            _, event = self._move(reg, Action.REJECT, reviewer_id, now, renewal_open=False)
            return {**event, **review_info, "reasons": [comment]}
        if vote is ReviewVote.REQUEST_CHANGES:
            _, event = self._move(reg, Action.REQUEST_CHANGES, reviewer_id, now, renewal_open=False)
            return {**event, **review_info, "reasons": [comment]}
        approved = {v.office for v in votes if v.vote is ReviewVote.APPROVE} | {office}
        pending = [o.code for o in self.config.required_offices(reg.department) if o.code not in approved]
        if pending:
            return self._event(
                "review_vote", reviewer_id, reg, reg.status, now, **review_info, pending=pending
            )
        filing = reg.filing_number or self._next_filing_number(now)
        saved, event = self._move(
            reg,
            Action.APPROVE,
            reviewer_id,
            now,
            kind="recertified" if reg.renewal_open else "approved",
            filing_number=filing,
            approved_until=now + self.config.approval_period,
            renewal_open=False,
        )
        return {
            **event,
            **review_info,
            "pending": [],
            "filing_number": saved.filing_number,
            "approved_until": saved.approved_until.isoformat() if saved.approved_until else None,
        }

    def _next_filing_number(self, now: datetime) -> str:
        # 备案号: prefix, year and a per-year sequence. Called after the version bump, whose row lock
        # serialises concurrent approvals on PostgreSQL; the unique constraint backs it up.
        # The year of the filing is the year in Beijing, where it is filed (17:00 UTC on 31 December is
        # already New Year's Day there).
        prefix = f"{self.config.filing_number_prefix}-{now.astimezone(_BEIJING).year}-"
        return f"{prefix}{self.repo.filing_numbers_with_prefix(prefix) + 1:04d}"

    # -- supervision and re-certification ------------------------------------------------------------

    def suspend(self, system_id: str, actor: str, reason: str) -> ChangeEvent:
        """Suspend an approved system. A renewal round in progress is paused, not closed: no office votes
        while the system is suspended, and the round (its signatures) resumes when it is reinstated."""
        reason = self._require_reason(reason)
        reg = self._load(system_id)
        _, event = self._move(reg, Action.SUSPEND, actor, self._now())
        return {**event, "reason": reason, "renewal": reg.renewal_open}

    def reinstate(self, system_id: str, actor: str, reason: str) -> list[ChangeEvent]:
        """Lift a suspension: the events, the reinstatement first. A renewal round paused by the suspension
        resumes with the signatures it had. An approval that ended while the system was suspended lapses at
        once (blocked; never approved past its end), and a renewal round paused then goes on as the full
        review a lapsed system needs, as in :meth:`lapse_due`."""
        reason = self._require_reason(reason)
        reg = self._load(system_id)
        now = self._now()
        reinstated, event = self._move(reg, Action.REINSTATE, actor, now)
        events = [{**event, "reason": reason, "renewal": reinstated.renewal_open}]
        if reinstated.approved_until is None or reinstated.approved_until <= now:
            events += self._lapse(reinstated, actor, now)
        return events

    def revoke(self, system_id: str, actor: str, reason: str) -> ChangeEvent:
        """Revocation is final; the system's client credentials and stored outbound credential go with it."""
        reason = self._require_reason(reason)
        reg = self._load(system_id)
        _, event = self._move(reg, Action.REVOKE, actor, self._now(), renewal_open=False)
        removed = self.repo.delete_client(system_id)
        self.repo.set_outbound_credential(system_id, None, self._now())
        return {**event, "reason": reason, "credentials_removed": removed}

    def recertify(self, system_id: str, actor: str) -> ChangeEvent:
        """Open a re-certification round. An approved system keeps routing while it is re-reviewed; a lapsed
        one goes back to full review and stays blocked until approved."""
        reg = self._load(system_id)
        # The state machine first: a suspended system's paused renewal round is not "already under way"
        # for its department, which can do nothing until the supervisors lift the suspension.
        transition(reg.status, Action.RECERTIFY, system_id=system_id)
        if reg.renewal_open:
            raise AdmissionConflict(
                f"系统 {system_id} 的重新审核已在进行中。",
                f"Re-certification of {system_id} is already under way.",
                code="recertification_open",
            )
        renewal = reg.status is SystemStatus.APPROVED
        _, event = self._move(
            reg, Action.RECERTIFY, actor, self._now(), review_round=reg.review_round + 1, renewal_open=renewal
        )
        return {**event, "renewal": renewal}

    def lapse_due(self, now: datetime | None = None) -> list[ChangeEvent]:
        """Lapse every approval that has reached ``approved_until`` (the boundary instant included).

        An approval that ends while its department's re-certification round is open lapses too (blocked
        from then on), but the round goes on as the full review a lapsed system needs: the department asked
        in time, and the offices that have signed it do not sign again (nor must the department recertify
        once more). A second event, ``admission.renewal_continued``, records that."""
        now = now or self._now()
        actor = "system:recertification"
        events: list[ChangeEvent] = []
        for system_id in self.repo.due_to_lapse(now):
            events += self._lapse(self._load(system_id), actor, now)
        return events

    def _lapse(self, reg: SystemRegistration, actor: str, now: datetime) -> list[ChangeEvent]:
        """Lapse an approved system whose approval has ended; an open renewal round goes on."""
        lapsed, event = self._move(reg, Action.LAPSE, actor, now, renewal_open=False)
        events = [{**event, "approved_until": reg.approved_until.isoformat() if reg.approved_until else None}]
        if reg.renewal_open:
            _, continued = self._move(lapsed, Action.RECERTIFY, actor, now, kind="renewal_continued")
            events.append({**continued, "round": reg.review_round})
        return events

    # -- credentials ---------------------------------------------------------------------------------

    def _require_status(
        self, reg: SystemRegistration, allowed: Iterable[SystemStatus], what_zh: str, what_en: str
    ) -> None:
        if reg.status not in set(allowed):
            raise CredentialConflict(
                f"系统 {reg.system_id} 当前状态为「{STATUS_LABELS_ZH[reg.status]}」，不能{what_zh}。"
                "凭证只发给已通过准入联审的系统（进度：grassroots admission progress）。",
                f"System {reg.system_id} is {reg.status.value}; cannot {what_en}. Credentials go only to a "
                "system the joint admission review approved (progress: grassroots admission progress).",
            )

    def _client_row(self, reg: SystemRegistration, now: datetime) -> ClientRow:
        row = self.repo.client_for_system(reg.system_id)
        if row is None:
            row = ClientRow(client_id=creds.new_client_id(), system_id=reg.system_id, created_at=now)
            self.repo.add_client(row)
        return row

    def issue_client_secret(self, system_id: str, actor: str = "system") -> IssuedClientSecret:
        """Issue the OAuth 2 client secret of an approved system (RFC 6749 §2.3.1). Shown once."""
        reg = self._load(system_id)
        self._require_status(reg, [SystemStatus.APPROVED], "签发凭证", "issue credentials")
        now = self._now()
        row = self._client_row(reg, now)
        if row.secret_hash is not None:
            # "rotate it instead" named no option, nor that the old secret dies with the rotation (a
            # system admin who only lost her copy needs to know the system's running one stops too).
            raise CredentialConflict(
                f"系统 {system_id} 已有客户端密钥（只在签发时显示一次，无法再次查看）。如需新密钥，请使用轮换"
                f"（grassroots admission client-secret {system_id} --rotate；接口：?rotate=true）："
                "轮换后旧密钥及用它取得的令牌立即失效，须同时更新系统中配置的密钥。",
                f"System {system_id} already has a client secret (shown once, when issued; it cannot be "
                "shown again). For a new one, rotate it instead (grassroots admission client-secret "
                f"{system_id} --rotate; API: ?rotate=true): the old secret and every token obtained with it "
                "stop working at once, so update the secret the system is configured with too.",
            )
        return self._set_secret(reg, row, actor, now, "credential_issued")

    def rotate_client_secret(self, system_id: str, actor: str = "system") -> IssuedClientSecret:
        """Replace the secret; the old one stops working in the same transaction. Allowed while suspended,
        so a leaked secret can be replaced before the system is reinstated."""
        reg = self._load(system_id)
        self._require_status(
            reg, [SystemStatus.APPROVED, SystemStatus.SUSPENDED], "轮换凭证", "rotate credentials"
        )
        now = self._now()
        row = self.repo.client_for_system(system_id)
        if row is None or row.secret_hash is None:
            raise CredentialConflict(
                f"系统 {system_id} 尚未签发客户端密钥。",
                f"System {system_id} has no client secret to rotate.",
            )
        return self._set_secret(reg, row, actor, now, "credential_rotated")

    def _set_secret(
        self, reg: SystemRegistration, row: ClientRow, actor: str, now: datetime, kind: str
    ) -> IssuedClientSecret:
        secret = creds.new_client_secret()
        row.secret_hash = creds.hash_secret(secret)
        row.secret_issued_at = now
        self.session.flush()
        event = self._event(kind, actor, reg, reg.status, now, client_id=row.client_id)
        return IssuedClientSecret(row.client_id, secret, event)

    def verify_client_secret(self, client_id: str, secret: str) -> str | None:
        """The system id when the secret matches, else ``None``. Status is not judged here: the caller
        applies ``routing_verdict`` (or a token endpoint refuses non-approved systems)."""
        row = self.repo.client(client_id) if len(client_id) <= 64 else None
        stored = row.secret_hash if row is not None else None
        if not creds.verify_secret(secret, stored) or row is None:
            return None
        return row.system_id

    def client_state(self, client_id: str) -> ClientState | None:
        """What a token endpoint and a system call need to know of a client: its system and the
        fingerprints of its current credentials (see ``admission.tokens.credential_generation``)."""
        row = self.repo.client(client_id) if len(client_id) <= 64 else None
        if row is None:
            return None
        return ClientState(
            client_id=row.client_id,
            system_id=row.system_id,
            secret_generation=credential_generation(row.secret_hash, None, "secret"),
            key_generation=credential_generation(None, row.public_key_kid, "key")
            if row.public_key is not None
            else None,
        )

    def client_id_for(self, system_id: str) -> str | None:
        row = self.repo.client_for_system(system_id)
        return None if row is None else row.client_id

    def register_public_key(self, system_id: str, public_key: str, actor: str) -> ChangeEvent:
        """Register (or replace) the public key for signed client assertions (RFC 7523 §2.2); a JWK must be
        public, a PEM must be a SubjectPublicKeyInfo."""
        reg = self._load(system_id)
        self._require_status(reg, [SystemStatus.APPROVED], "登记公钥", "register a public key")
        key_format, kid = creds.check_public_key(public_key)
        now = self._now()
        row = self._client_row(reg, now)
        row.public_key = public_key.strip()
        row.public_key_format = key_format
        row.public_key_kid = kid
        row.public_key_registered_at = now
        self.session.flush()
        return self._event(
            "public_key_registered", actor, reg, reg.status, now, client_id=row.client_id, kid=kid
        )

    def client_public_key(self, client_id: str) -> creds.RegisteredPublicKey | None:
        row = self.repo.client(client_id)
        if row is None or row.public_key is None or row.public_key_format not in ("pem", "jwk"):
            return None
        fmt: creds.PublicKeyFormat = "pem" if row.public_key_format == "pem" else "jwk"
        return creds.RegisteredPublicKey(
            row.client_id, row.system_id, row.public_key, fmt, row.public_key_kid
        )

    def set_outbound_credential(self, system_id: str, ciphertext: bytes | None, actor: str) -> ChangeEvent:
        """Store the gateway-encrypted credential for calling this upstream (admission never sees clear)."""
        reg = self._load(system_id)
        if reg.status is SystemStatus.REVOKED and ciphertext is not None:
            raise CredentialConflict(
                f"系统 {system_id} 已撤销，不能保存出站凭证。",
                f"System {system_id} is revoked; no outbound credential can be stored.",
            )
        now = self._now()
        self.repo.set_outbound_credential(system_id, ciphertext, now)
        # Every gateway process reloads its routes (and with them the credential it presents) when the
        # version moves, so a rotated credential is used everywhere within one poll interval.
        self.repo.bump_version(now)
        return self._event("outbound_credential_set", actor, reg, reg.status, now, cleared=ciphertext is None)

    def outbound_credential(self, system_id: str) -> bytes | None:
        return self.repo.outbound_credential(system_id)
