"""The process-wide services the data path uses, built once in the app's lifespan.

The gateway is the only package that knows all four libraries; this is where it wires them: the policy
engine over the grant index, the admission status snapshot over the registry, the masking catalog and
rules, the audit appender, the upstream client. Shared state that other processes can change (grants,
system status) is re-read when its version row moves, polled every ``policy_refresh_interval_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from admission import AdmissionRepository, StatusSnapshot, load_status_snapshot, registry_version
from audit import GroupCommitAppender, Pseudonymizer, normalise_id_number
from gateway.auth.oidc import OIDCVerifier
from gateway.errors import Forbidden, NotFound, ServiceUnavailable
from gateway.settings import Settings
from gateway.telemetry import Telemetry
from gateway.upstream import UpstreamClient, UpstreamTarget
from masking import Catalog, FreeTextScanner, KeyRing, MaskingPlan, RuleSet, SemanticType, plan_masking
from masking.catalog import DatasetSpec
from policies import GrantIndex, GrantRepository, PolicyEngine
from policies.permissions import PermissionModel
from policies.quotas import SqlQuotaCounter, quota_day
from policies.scenarios import ScenarioCatalog

_log = logging.getLogger("gateway.runtime")


@dataclass(frozen=True)
class DatasetView:
    """What the data path needs to know of a catalogued dataset."""

    spec: DatasetSpec
    org_field: str
    subject_field: str | None

    def subject_values(self, records: Iterable[Mapping[str, Any]]) -> list[str]:
        """The residents a response touches, normalised so a complaint finds them by ID number."""
        if self.subject_field is None:
            return []
        values: list[str] = []
        for record in records:
            value = record.get(self.subject_field)
            if isinstance(value, str) and value:
                values.append(normalise_id_number(value))
        return values


def dataset_view(spec: DatasetSpec) -> DatasetView | None:
    org_field = next(
        (n for n, f in spec.fields.items() if f.semantic_type is SemanticType.DIVISION_CODE), None
    )
    if org_field is None:
        # A dataset whose rows carry no division code cannot be scope-checked: never served.
        return None
    subject = next((n for n, f in spec.fields.items() if f.semantic_type is SemanticType.ID_NUMBER), None)
    return DatasetView(spec=spec, org_field=org_field, subject_field=subject)


@dataclass(frozen=True)
class _Routes:
    snapshot: StatusSnapshot
    targets: Mapping[str, UpstreamTarget]


class Runtime:
    def __init__(
        self,
        *,
        settings: Settings,
        engine: Engine,
        verifier: OIDCVerifier,
        upstream: UpstreamClient,
        appender: GroupCommitAppender,
        pseudonymizer: Pseudonymizer,
        telemetry: Telemetry,
        catalog: Catalog,
        rules: RuleSet,
        permissions: PermissionModel,
        scenarios: ScenarioCatalog,
        keys: KeyRing | None = None,
        scanner: FreeTextScanner | None = None,
        free_text: Callable[[str, list[dict[str, Any]]], tuple[list[dict[str, Any]], list[dict[str, Any]]]]
        | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.sessions: sessionmaker[Session] = sessionmaker(engine, expire_on_commit=False)
        self.verifier = verifier
        self.upstream = upstream
        self.appender = appender
        self.pseudonymizer = pseudonymizer
        self.telemetry = telemetry
        self.catalog = catalog
        self.rules = rules
        self.quotas = SqlQuotaCounter(self.sessions)
        self._datasets = {name: dataset_view(spec) for name, spec in catalog.datasets.items()}
        self.keys = keys
        self.scanner = scanner
        self._free_text = free_text
        self._plans: dict[tuple[str, tuple[str, ...], str, str, str], MaskingPlan] = {}
        self._lock = threading.Lock()
        now = datetime.now(UTC)
        with self.sessions() as session:
            grants = GrantIndex.from_repository(GrantRepository(session), now)
            self._routes = self._load_routes(session)
        self._policy = PolicyEngine(permissions, scenarios, grants, quotas=self.quotas)
        self._refresher: asyncio.Task[None] | None = None
        self.last_refresh = time.monotonic()

    # -- policy and registry state, kept fresh across processes ---------------------------------

    def policy(self) -> PolicyEngine:
        return self._policy

    def refresh(self) -> None:
        """Re-read grants and system status if their version rows moved (cheap when nothing changed)."""
        now = datetime.now(UTC)
        with self.sessions() as session:
            self._policy.refresh_grants(GrantRepository(session), now)
            if registry_version(session) != self._routes.snapshot.version:
                self._routes = self._load_routes(session)
        self.last_refresh = time.monotonic()

    async def start(self) -> None:
        await self.upstream.start()
        self._refresher = asyncio.create_task(self._refresh_loop(), name="policy-refresh")

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await self.upstream.close()

    async def _refresh_loop(self) -> None:
        interval = self.settings.policy_refresh_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception as exc:
                # Keep serving with the last known state only briefly: past 10 intervals the
                # state is too old to trust and requests are refused (fail closed).
                _log.error("policy/registry refresh failed: %s", type(exc).__name__)

    def _check_fresh(self) -> None:
        stale_after = max(5.0, self.settings.policy_refresh_interval_s * 10)
        if self._refresher is not None and time.monotonic() - self.last_refresh > stale_after:
            raise ServiceUnavailable(
                "授权策略暂时无法更新，为安全起见本次请求已拒绝，请稍后重试。",
                "Access policy could not be refreshed; the request was refused for safety. Retry later.",
                code="policy_stale",
            )

    @staticmethod
    def _load_routes(session: Session) -> _Routes:
        snapshot = load_status_snapshot(session)
        targets: dict[str, UpstreamTarget] = {}
        for registration in AdmissionRepository(session).list_systems():
            for provided in registration.provides:
                path = provided.endpoints[0] if provided.endpoints else f"/{provided.dataset}"
                targets[provided.dataset] = UpstreamTarget(
                    system_id=registration.system_id, base_url=provided.base_url, path=path
                )
        return _Routes(snapshot=snapshot, targets=targets)

    # -- what the pipeline asks -----------------------------------------------------------------

    def dataset(self, name: str) -> DatasetView | None:
        return self._datasets.get(name)

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
            raise Forbidden(
                verdict.message_zh,
                verdict.message_en,
                code=verdict.code,
                extra={"system": target.system_id},
            )
        return target

    def masking_plan(
        self, *, dataset: str, fields: tuple[str, ...], role: str, scenario: str, profile: str
    ) -> MaskingPlan:
        """Plans are pure functions of their inputs, so each distinct one is built once per process."""
        key = (dataset, fields, role, scenario, profile)
        plan = self._plans.get(key)
        if plan is None:
            plan = plan_masking(
                self.catalog,
                self.rules,
                dataset=dataset,
                fields=fields,
                role=role,
                scenario=scenario,
                profile=profile,
                keys=self.keys,
                scanner=self.scanner,
            )
            if len(self._plans) < 4096:
                self._plans[key] = plan
        return plan

    def scan_free_text(
        self, dataset: str, records: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        if self._free_text is None:
            return records, []
        return self._free_text(dataset, records)

    def consume_quota(self, user_id: str, scenario: str, count: int, now: datetime) -> None:
        if count > 0:
            self.quotas.consume(user_id, scenario, quota_day(now), count)
