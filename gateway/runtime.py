"""The process-wide services the data path uses, built once in the app's lifespan.

The gateway is the only package that knows all four libraries; this is where it wires them: the policy
engine over the grant index, the admission status snapshot over the registry, the masking catalog and
rules, the audit appender, the upstream client. Shared state that other processes can change (grants,
system status and outbound credentials, the masking catalog and rules, sign-in revocations) is re-read
when its version row moves, polled every ``policy_refresh_interval_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from admission import (
    AdmissionRepository,
    RoutingVerdict,
    StatusSnapshot,
    load_status_snapshot,
    registry_version,
)
from audit import (
    ANONYMOUS_ACTOR,
    AuditEvent,
    GroupCommitAppender,
    Outcome,
    Pseudonymizer,
    PseudonymRing,
    normalise_id_number,
)
from gateway.auth.oidc import Principal, TrustedIssuers
from gateway.auth.sessions import SESSIONS_VERSION, RevokedSessions, load_revoked_sessions
from gateway.checkpoint_health import CheckpointHealth
from gateway.errors import Forbidden, GatewayError, NotFound, ServiceUnavailable, Unauthenticated
from gateway.outbound import OutboundCredentialCache
from gateway.quotas import CachedQuotaCounter, CountedWithAudit, SharedHoldWriter
from gateway.refusal_bursts import BURST_KIND, UNKNOWN_SOURCE, RefusalBursts, TooManyRefusals
from gateway.settings import Settings
from gateway.telemetry import Telemetry
from gateway.upstream import LOOKUP_SUFFIX, UpstreamClient, UpstreamTarget
from masking import Catalog, FreeTextScanner, KeyRing, MaskingPlan, RuleSet, SemanticType, plan_masking
from masking.catalog import DatasetSpec
from masking.dlp import scan_fields_in_place
from masking.kanon import KAnonymityResult, guard_release
from masking.stewardship import EffectiveMasking, MaskingDocuments, load_effective, masking_version
from policies import GrantIndex, GrantRepository, PolicyEngine, PolicyFileError
from policies.permissions import PermissionModel
from policies.quotas import SqlQuotaCounter
from policies.scenarios import CHINA_STANDARD_TIME, ScenarioCatalog

_log = logging.getLogger("gateway.runtime")
#: Seconds between two log lines about the same run of failed policy/registry refreshes.
_REFRESH_FAILURE_REPEAT_S = 60.0

#: How long after the audit log's latest failed commit (none committed since) ``/readyz`` says not ready.
#: While requests keep coming each failure renews it; with none (a load balancer has taken the process out)
#: it lapses, the process says ready again and the next request tries the log: no restart is needed.
AUDIT_FAILURE_NOT_READY_S = 10.0

#: The version row a policy-file reload bumps; every process polls it and re-reads its files.
POLICY_FILES_VERSION = "policy_files"
#: The catalog tag that, on a ``category`` field, marks the row's micro-grid code.
GRID_FIELD_TAG = "行政区划"


@dataclass(frozen=True)
class DatasetView:
    """What the data path needs to know of a catalogued dataset."""

    spec: DatasetSpec
    org_field: str
    subject_field: str | None
    #: The field holding each row's micro-grid code, for datasets kept by grid (一标三实).
    grid_field: str | None = None

    def subject_values(self, records: Iterable[Mapping[str, Any]]) -> list[str]:
        """The residents a response touches, normalised so a complaint finds them by ID number."""
        if self.subject_field is None:
            return []
        values: list[str] = []
        for record in records:
            value = record.get(self.subject_field)
            if isinstance(value, str):
                if value:
                    values.append(normalise_id_number(value))
            elif value is not None:
                # A registry that sends the number as a JSON number still served that person: record it.
                values.append(normalise_id_number(str(value)))
        return values


def dataset_view(spec: DatasetSpec) -> DatasetView | None:
    org_field = next(
        (n for n, f in spec.fields.items() if f.semantic_type is SemanticType.DIVISION_CODE), None
    )
    if org_field is None:
        # A dataset whose rows carry no division code cannot be scope-checked: never served.
        return None
    subject = next((n for n, f in spec.fields.items() if f.semantic_type is SemanticType.ID_NUMBER), None)
    # The masking catalog has no grid type of its own: a grid code is catalogued as a category tagged
    # 行政区划 (masking/data/catalog.toml, person-house datasets).
    grid = next(
        (
            n
            for n, f in spec.fields.items()
            if f.semantic_type is SemanticType.CATEGORY and GRID_FIELD_TAG in f.tags
        ),
        None,
    )
    return DatasetView(spec=spec, org_field=org_field, subject_field=subject, grid_field=grid)


_PlanKey = tuple[str, tuple[str, ...], str, str, str]

#: The most plans one masking state keeps for a day (distinct datasets x field sets x roles x scenarios x
#: profiles); past it, a plan is built for its request and not kept.
_PLANS_KEPT = 4096


class _PlanCache:
    """The masking plans of one masking state, for one local day (China Standard Time). A plan is bound to
    the day it is built for (``age_bucket`` counts ages as of it, for a birth-date field or one found in
    free text), so a plan of yesterday is never served today: the first plan built for a new day drops the
    old day's. A request still in flight from the day before (it started before midnight) gets its plan
    built and not kept. One attribute holds the day and its plans, so a reader sees the two together."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: tuple[date, dict[_PlanKey, MaskingPlan]] | None = None

    def get(self, day: date, key: _PlanKey) -> MaskingPlan | None:
        held = self._held
        if held is None or held[0] != day:
            return None
        return held[1].get(key)

    def put(self, day: date, key: _PlanKey, plan: MaskingPlan) -> None:
        held = self._held
        if held is None or held[0] < day:
            held = self._held = (day, {})
        elif held[0] > day:
            return
        if len(held[1]) < _PLANS_KEPT:
            held[1][key] = plan


@dataclass(frozen=True)
class _MaskingState:
    """The effective catalog and rules (baseline + approved changes) and everything derived from them;
    swapped as one object when the ``masking_versions`` row moves, so a request sees one state."""

    effective: EffectiveMasking
    datasets: Mapping[str, DatasetView | None]
    plans: _PlanCache


@dataclass(frozen=True)
class _Routes:
    snapshot: StatusSnapshot
    targets: Mapping[str, UpstreamTarget]
    #: Systems whose stored outbound credential this process cannot open: not routed (fail closed).
    credential_unavailable: frozenset[str] = frozenset()


#: Why an unadmitted system is not called, told to the village user whose read it refuses (the system's own
#: calls are told ``routing_verdict``'s words, addressed to its department).
_BLOCKED_FOR_READER: Mapping[str, tuple[str, str]] = {
    "system_lapsed": ("的准入已到期，尚未重新通过准入联审", "has an admission that has lapsed"),
    "system_suspended": ("的准入已被暂停", "has had its admission suspended"),
    "system_revoked": ("的准入已被撤销", "has had its admission revoked"),
    "system_not_registered": ("未在准入登记册中登记", "is not in the admission registry"),
    "system_not_approved": ("尚未通过准入联审", "has not been approved by the joint admission review"),
}


class Runtime:
    def __init__(
        self,
        *,
        settings: Settings,
        engine: Engine,
        verifier: TrustedIssuers,
        upstream: UpstreamClient,
        appender: GroupCommitAppender,
        pseudonymizer: Pseudonymizer | PseudonymRing,
        telemetry: Telemetry,
        catalog: Catalog,
        rules: RuleSet,
        permissions: PermissionModel,
        scenarios: ScenarioCatalog,
        keys: KeyRing | None = None,
        scanner: FreeTextScanner | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.sessions: sessionmaker[Session] = sessionmaker(engine, expire_on_commit=False)
        self.verifier = verifier
        self.upstream = upstream
        #: Headless Chromium renders of this process (``gateway.routes.supervision.html_to_pdf``).
        self.pdf_renders = asyncio.Semaphore(settings.pdf_max_concurrent_renders)
        self.appender = appender
        # Writing uses the active key (``pseudonymizer``); a search by person or record asks for the ref
        # under every kept key (``lookup_refs``), so events written before a key rotation are still found.
        ring = pseudonymizer if isinstance(pseudonymizer, PseudonymRing) else PseudonymRing(pseudonymizer)
        self.audit_refs = ring
        self.pseudonymizer = ring.active
        self.telemetry = telemetry
        from gateway.supervision_tasks import SupervisionSettings

        #: The periodic signed checkpoint's state (``/readyz``, ``grassroots.audit.checkpoint.*`` metrics).
        self.checkpoint_health = CheckpointHealth(SupervisionSettings().checkpoint_interval_s)
        self.checkpoint_health.instrument(telemetry.meter)
        # The catalog and rules given are the baseline; stewards' approved changes apply on top.
        self.masking_baseline = MaskingDocuments.of(catalog, rules)
        # On PostgreSQL several processes (workers, hosts) share the counter: a request's hold on its page
        # is taken in the database, so two of them can never both take the last records; on SQLite with
        # one process it is held in memory, at no cost per request. SQLite served by several workers
        # (``serve --workers N`` sets GRASSROOTS_WORKERS) takes its holds in the database as well: each
        # worker's in-memory holds saw only its own requests, and N workers together served up to N
        # times a daily quota.
        shared = engine.dialect.name != "sqlite" or settings.workers > 1
        self.quota_holds = SharedHoldWriter(engine) if engine.dialect.name == "postgresql" else None
        self.quotas = CachedQuotaCounter(
            SqlQuotaCounter(self.sessions),
            ttl_s=settings.policy_refresh_interval_s,
            shared=shared,
            holds=self.quota_holds,
        )
        # Served pages are counted in the audit transaction of the event that records them.
        appender.attach(CountedWithAudit(self.quotas))
        self.keys = keys
        self.scanner = scanner
        self._outbound = OutboundCredentialCache(keys)
        self._lock = threading.Lock()
        now = datetime.now(UTC)
        with self.sessions() as session:
            grants = GrantIndex.from_repository(GrantRepository(session), now)
            self._routes = self._load_routes(session)
            self._masking = self._load_masking(session)
            self._files_version = GrantRepository(session).policy_version(POLICY_FILES_VERSION)
            # Sign-outs and revoked users: a database that cannot say which are in force stops the start
            # (fail closed) rather than serving tokens that were revoked.
            self._revoked: RevokedSessions = load_revoked_sessions(session, now)
        self._policy = PolicyEngine(
            permissions, scenarios, grants, quotas=self.quotas, kept_by_grid=self.kept_by_grid
        )
        self._refresher: asyncio.Task[None] | None = None
        self.last_refresh = time.monotonic()
        self.refusal_bursts = RefusalBursts(
            settings.auth_refusal_burst, settings.auth_refusal_window_s, settings.auth_refusal_sources
        )
        self._burst_writer: asyncio.Task[None] | None = None

    def lookup_refs(self, value: str) -> list[str]:
        """The refs of ``value`` (a normalised ID number, a record id) under every kept audit-ref key."""
        return self.audit_refs.refs(value)

    # -- policy and registry state, kept fresh across processes ---------------------------------

    def policy(self) -> PolicyEngine:
        return self._policy

    def reload_policy(self, actor: str = "system") -> dict[str, Any]:
        """Re-read model.conf, permissions.csv and scenarios.toml and swap the engine without a restart.

        All three validate or nothing changes (``PolicyFileError`` names file and line); a request in
        flight keeps the engine it started with. Returns the change event (before/after digests)."""
        with self._lock:
            fresh, change = self._policy.reloaded(actor)
            self._policy = fresh
        return change

    def refresh(self) -> None:
        """Re-read grants and system status if their version rows moved (cheap when nothing changed)."""
        now = datetime.now(UTC)
        with self.sessions() as session:
            repository = GrantRepository(session)
            files_version = repository.policy_version(POLICY_FILES_VERSION)
            if files_version != self._files_version:
                # Another process (or this one) reloaded the policy files: pick them up here too.
                self._files_version = files_version
                try:
                    self.reload_policy()
                except PolicyFileError as exc:
                    _log.error("policy files changed but do not validate; old policy kept: %s", exc)
            self._policy.refresh_grants(repository, now)
            if registry_version(session) != self._routes.snapshot.version:
                self._routes = self._load_routes(session)
            if masking_version(session) != self._masking.effective.version:
                self._masking = self._load_masking(session)
            if repository.policy_version(SESSIONS_VERSION) != self._revoked.version:
                self._revoked = load_revoked_sessions(session, now)
        self.last_refresh = time.monotonic()

    async def start(self) -> None:
        await self.upstream.start()
        self._refresher = asyncio.create_task(self._refresh_loop(), name="policy-refresh")
        self._burst_writer = asyncio.create_task(self._burst_loop(), name="refusal-bursts")
        from gateway.supervision_tasks import start_supervision_tasks

        self._supervision = start_supervision_tasks(self)

    async def stop(self) -> None:
        from gateway.supervision_tasks import stop_supervision_tasks

        await stop_supervision_tasks(getattr(self, "_supervision", None))
        if self._burst_writer is not None:
            self._burst_writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._burst_writer
        # Before the appender closes: the counts of windows still open are written, cut short.
        await self.write_refusal_bursts(everything=True)
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await self.upstream.close()

    def refuse_flood(self, source: str | None, refused: GatewayError, door: str) -> None:
        """For a request refused for want of a valid token (``refused``), before its event is recorded:
        raise 429 instead when ``source`` (None: ``unknown``) is past its allowance for the window; it is
        then counted into the source's ``auth.refused_burst`` summary and recorded by that
        (gateway.refusal_bursts)."""
        claimed = refused.claimed_org if isinstance(refused, Unauthenticated) else None
        retry_after_s = self.refusal_bursts.admit(source or UNKNOWN_SOURCE, refused.code, door, claimed)
        if retry_after_s is not None:
            raise TooManyRefusals(retry_after_s) from None

    async def write_refusal_bursts(self, *, everything: bool = False) -> None:
        """Write the ``auth.refused_burst`` event of every closed window (``everything``: of every window,
        as the process stops), each durably; one that cannot be written is kept and tried again."""
        summaries = self.refusal_bursts.take_closed(everything=everything)
        for at, summary in enumerate(summaries):
            try:
                event = AuditEvent(
                    kind=BURST_KIND,
                    outcome=Outcome.REFUSED,
                    actor=ANONYMOUS_ACTOR,
                    reason=TooManyRefusals.code,
                    details=summary.details(),
                    occurred_at=self.refusal_bursts.clock(),
                    # Written by a background task, on no request's behalf: the source it sums up.
                    source=summary.source,
                )
                await self.appender.append(event)
            except Exception as exc:
                _log.error(
                    "refusal burst summary not written (%s); kept for the next try", type(exc).__name__
                )
                self.refusal_bursts.put_back(summaries[at:])
                return

    async def _burst_loop(self) -> None:
        # Often enough that a summary follows its window's close within a second or so; a pass with
        # nothing closed costs a scan of the open windows, no I/O.
        while True:
            await asyncio.sleep(min(1.0, self.settings.auth_refusal_window_s))
            await self.write_refusal_bursts()

    async def _refresh_loop(self) -> None:
        interval = self.settings.policy_refresh_interval_s
        # While the database is away a refresh fails every interval (twice a second by default, in every
        # worker): said when it starts failing, then once a minute, and when it recovers, so an outage is a
        # few lines that say how long it lasted, not thousands that bury everything else.
        failing_since: float | None = None
        failures, said_at = 0, 0.0
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception as exc:
                # Keep serving with the last known state only briefly: past 10 intervals the
                # state is too old to trust and requests are refused (fail closed).
                now, failures = time.monotonic(), failures + 1
                if failing_since is None:
                    failing_since = said_at = now
                    _log.error("policy/registry refresh failed: %s", type(exc).__name__)
                elif now - said_at >= _REFRESH_FAILURE_REPEAT_S:
                    said_at = now
                    _log.error(
                        "policy/registry refresh still failing after %.0f s (%d attempts): %s",
                        now - failing_since,
                        failures,
                        type(exc).__name__,
                    )
            else:
                if failing_since is not None:
                    _log.warning(
                        "policy/registry refresh recovered after %.0f s (%d failed attempts)",
                        time.monotonic() - failing_since,
                        failures,
                    )
                    failing_since, failures = None, 0

    def check_fresh(self) -> None:
        """Raise 503 ``policy_stale`` when the policy and registry state is too old to trust (readiness)."""
        self._check_fresh()

    def _check_fresh(self) -> None:
        stale_after = max(5.0, self.settings.policy_refresh_interval_s * 10)
        if self._refresher is not None and time.monotonic() - self.last_refresh > stale_after:
            raise ServiceUnavailable(
                "授权策略暂时无法更新，为安全起见本次请求已拒绝，请稍后重试。",
                "Access policy could not be refreshed; the request was refused for safety. Retry later.",
                code="policy_stale",
            )

    def check_audit_log(self) -> None:
        """Raise 503 ``audit_unavailable`` (readiness) while the audit log's latest commit failed, within
        ``AUDIT_FAILURE_NOT_READY_S``: every request this process takes is refused until it commits."""
        failed_at = self.appender.failed_at
        if failed_at is not None and time.monotonic() - failed_at < AUDIT_FAILURE_NOT_READY_S:
            raise ServiceUnavailable(
                "访问记录暂时无法写入，本进程暂不能处理请求（处理了也只能拒绝），请稍后重试。",
                "The access log cannot be written right now; this process cannot serve requests now "
                "(it would refuse them). Retry later.",
                code="audit_unavailable",
            )

    def check_session(self, principal: Principal) -> None:
        """Refuse (401 ``session_revoked``) a token that was signed out or whose user's sessions an
        administrator revoked: a lookup in memory, no database round trip. The revocations are as fresh
        as the last poll, so a process whose poll has failed past the staleness bound refuses every
        request (503 ``policy_stale``), as it does for grants."""
        self._check_fresh()
        if self._revoked.refuses(principal):
            raise Unauthenticated(
                "该登录已注销或已被管理员撤销，请重新登录。",
                "This sign-in was signed out or revoked by an administrator. Please sign in again.",
                code="session_revoked",
                headers={
                    "WWW-Authenticate": 'Bearer realm="grassroots", error="invalid_token", '
                    'error_description="This sign-in was signed out or revoked. Please sign in again."'
                },
            )

    def _load_routes(self, session: Session) -> _Routes:
        snapshot = load_status_snapshot(session)
        repository = AdmissionRepository(session)
        # Opened here, once per stored envelope, never per request (gateway/outbound.py).
        credentials, unavailable = self._outbound.resolve(repository.outbound_credentials())
        targets: dict[str, UpstreamTarget] = {}
        for registration in repository.list_systems():
            for provided in registration.provides:
                path = provided.endpoints[0] if provided.endpoints else f"/{provided.dataset}"
                lookup = path.rstrip("/") + LOOKUP_SUFFIX
                targets[provided.dataset] = UpstreamTarget(
                    system_id=registration.system_id,
                    base_url=provided.base_url,
                    path=path,
                    credential=credentials.get(registration.system_id),
                    lookup_path=lookup if lookup in provided.endpoints else None,
                    system_name=registration.name,
                )
        return _Routes(snapshot=snapshot, targets=targets, credential_unavailable=unavailable)

    # -- masking state: catalog and rules as managed data --------------------------------------

    def _load_masking(self, session: Session) -> _MaskingState:
        effective = load_effective(session, self.masking_baseline)
        if effective.skipped:
            _log.error(
                "approved masking changes no longer apply to the packaged catalog/rules: %s",
                ", ".join(effective.skipped),
            )
        datasets = {name: dataset_view(spec) for name, spec in effective.catalog.datasets.items()}
        return _MaskingState(effective=effective, datasets=datasets, plans=_PlanCache())

    @property
    def masking(self) -> EffectiveMasking:
        return self._masking.effective

    @property
    def catalog(self) -> Catalog:
        return self._masking.effective.catalog

    @property
    def rules(self) -> RuleSet:
        return self._masking.effective.rules

    # -- what the pipeline asks -----------------------------------------------------------------

    def dataset(self, name: str) -> DatasetView | None:
        return self._masking.datasets.get(name)

    def kept_by_grid(self, name: str) -> bool:
        """Whether ``name``'s rows carry a micro-grid code, in the catalog in force now: the policy engine
        refuses a grid worker any other dataset (``grid_scope_unsupported``)."""
        view = self._masking.datasets.get(name)
        return view is not None and view.grid_field is not None

    def route(self, dataset: str, now: datetime) -> UpstreamTarget:
        """The admitted system that provides ``dataset``; refuses (naming the system) when not admitted."""
        self._check_fresh()
        routes = self._routes
        target = routes.targets.get(dataset)
        if target is None:
            raise NotFound(
                f"数据集“{dataset}”暂无已登记的提供系统。",
                f"No registered system provides dataset '{dataset}'.",
                code="no_provider",
            )
        verdict = routes.snapshot.verdict(target.system_id, now)
        if not verdict.allowed:
            named_zh, named_en = target.named()
            zh, en = _BLOCKED_FOR_READER.get(verdict.code, _BLOCKED_FOR_READER["system_not_approved"])
            raise Forbidden(
                f"提供该数据的部门系统{named_zh}{zh}，网关不向其取数，本次未返回任何数据。"
                "这不是您的账号或授权问题，需由该系统所属部门处理；工作急需时请联系数据所属部门。",
                f"Departmental system {named_en}, which provides this data, {en}; the gateway does "
                "not call it and no data was returned. This is not a matter of your account or grant: the "
                "system's department must act; if your work is urgent, contact the department owning the "
                "data.",
                code=verdict.code,
                extra={"system": target.system_id, "system_name": target.system_name},
            )
        if target.system_id in routes.credential_unavailable:
            # Fail closed: a system whose stored credential cannot be used is not called without it.
            named_zh, named_en = target.named()
            raise ServiceUnavailable(
                f"网关暂时无法取得调用部门系统{named_zh}所需的凭证，本次未返回任何数据。请联系平台管理员。",
                f"The gateway cannot use its credential for departmental system {named_en}; "
                "no data was returned. Contact the platform administrator.",
                code="upstream_credential_unavailable",
                extra={"system": target.system_id, "system_name": target.system_name},
            )
        return target

    def system_verdict(self, system_id: str, now: datetime) -> RoutingVerdict:
        """May this admitted system be served right now (its own calls to the gateway)? The same live
        snapshot as ``route``, so a suspension reaches every process within one poll interval."""
        self._check_fresh()
        return self._routes.snapshot.verdict(system_id, now)

    def masking_plan(
        self, *, dataset: str, fields: tuple[str, ...], role: str, scenario: str, profile: str, now: datetime
    ) -> MaskingPlan:
        """Plans are pure functions of their inputs and the day (``now``, the request's time: an age band
        is the age on the local day the data is read), so each distinct one is built once per masking state
        and day (the cache lives in the state object, so a catalog or rules change empties it; a new day
        starts it afresh)."""
        state = self._masking
        day = now.astimezone(CHINA_STANDARD_TIME).date()
        key = (dataset, fields, role, scenario, profile)
        plan = state.plans.get(day, key)
        if plan is None:
            plan = plan_masking(
                state.effective.catalog,
                state.effective.rules,
                dataset=dataset,
                fields=fields,
                role=role,
                scenario=scenario,
                profile=profile,
                keys=self.keys,
                scanner=self.scanner,
                as_of=day,
            )
            state.plans.put(day, key, plan)
        return plan

    def scan_free_text(
        self,
        dataset: str,
        records: list[dict[str, Any]],
        plan: MaskingPlan,
        subjects: Sequence[bytes | None] | None = None,
    ) -> list[dict[str, Any]]:
        """Response DLP over ``records`` as ``mask_records`` returned them for ``plan`` (the caller's own
        dicts, scanned and masked in place): the fields the plan does not protect. ``subjects``, as masking
        was given them, seal a finding sealed by ``aes_gcm`` with its record's resident (enc:v3:). Each
        drift alert is counted in a metric naming dataset and field (never a value) so the steward can
        classify it."""
        if self.scanner is None:
            return []
        alerts = scan_fields_in_place(
            dataset,
            records,
            plan.scanned_fields,
            self.scanner,
            scanners=plan.dlp_scanners,
            unmemoised=plan.dlp_unmemoised,
            sealers=plan.dlp_sealers,
            subjects=subjects,
        )
        for alert in alerts:
            self.telemetry.catalog_drift.add(alert.count, {"dataset": alert.dataset, "field": alert.field})
        return [
            {"dataset": a.dataset, "field": a.field, "entity_type": a.entity_type, "count": a.count}
            for a in alerts
        ]

    def reidentification_guard(self, dataset: str, records: list[dict[str, Any]]) -> KAnonymityResult:
        """k-anonymity over the catalog's quasi-identifiers, for list responses of at least
        ``kanon_min_records`` records (GB/T 37964-2019 §A.2)."""
        return guard_release(
            self.catalog,
            dataset,
            records,
            k=self.settings.kanon_k,
            min_records=self.settings.kanon_min_records,
        )
