"""The policy facade: one request in, one Decision (with obligations) out.

Checks, in order, the first failure deciding the reason (``reasons.DENIAL_ORDER``):

1. function-level permission (casbin): a role of the caller may ``read`` ``dataset:<name>``;
2. the scenario exists, 3. is work one of the caller's roles does, 4. needs this dataset,
5. the local time is within its hours;
6. a grant for this scenario and dataset whose org scope covers the caller's organisation is active now
   (else: revoked / expired / none);
7. the requested fields are within that grant (PIPL art. 6, GB/T 35273-2020 §5.2 minimum necessary);
8. per-request cap and daily quota;
9. a subject who reads no wider than a micro-grid (a grid worker) has grids assigned, within their
   organisation; with none assigned they read nothing (never the whole village); and the dataset is kept
   by micro-grid (its rows carry a grid code, told by the caller's ``kept_by_grid``): one that is not
   cannot be cut to her grids, so it is refused rather than widened to the village.

An allowed decision's obligations restrict rows to the caller's own organisation (which the matching
grant covers, so it is the intersection of the two) or, for a grid worker, to the micro-grids assigned
to them within it; and fields to the grant's whitelist.
Any unexpected error yields a refusal with reason ``internal_error``: the engine fails closed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any

from policies import divisions
from policies.errors import PolicyRefused
from policies.grants import GrantIndex, GrantRepository, GrantStatus, ScenarioGrant, epoch_us
from policies.model import AccessRequest, Check, Decision, Obligations, Reason
from policies.permissions import PermissionModel
from policies.quotas import QuotaCounter, quota_day
from policies.reasons import outside_fields
from policies.reasons import reason as _render_reason
from policies.reload import PolicyFiles, policy_change
from policies.scenarios import ScenarioCatalog

__all__ = ["INTERNAL_ERROR", "PolicyEngine"]

# A refusal's wording depends only on its code and labels: render each combination once (a quarter of
# a refusal's cost otherwise). Reasons are frozen values, so sharing one is safe. Only catalog names,
# placeholders and counts ever reach it, never what a caller typed (it would keep that text).
reason = lru_cache(maxsize=4096)(_render_reason)

# What a message calls a dataset or scenario code that names nothing in the catalog. The code itself is
# whatever the caller typed (an ID number, a phone number) and is never repeated, as on the data path,
# which records such a code as "invalid" and answers "没有这个数据集".
_UNKNOWN_DATASET = ("未编目的数据集", "an uncatalogued dataset")
_UNKNOWN_SCENARIO = ("未知的使用场景", "an unknown scenario")

_log = logging.getLogger(__name__)

INTERNAL_ERROR = Decision(allowed=False, reasons=(reason("internal_error"),), obligations=None)

# Roles whose jurisdiction is their whole organisation; anyone holding one reads the whole of it, so
# grid assignments narrow only a subject without such a role (a grid worker).
_ORG_WIDE_READERS = frozenset({"village_cadre", "township_officer", "county_officer"})
_NO_GRIDS_ASSIGNED = Reason(
    code="grid_scope_unassigned",
    message_zh="您还没有分配微网格，暂不能查看数据。请联系村（居）委会分配网格。",
    message_en="No micro-grid is assigned to you yet, so no data can be shown. "
    "Ask your village committee to assign your grids.",
)
_GRIDS_OUTSIDE_ORG = Reason(
    code="grid_scope_invalid",
    message_zh="分配给您的微网格不在本单位辖区内，暂不能查看数据。请联系村（居）委会核实网格分配。",
    message_en="The micro-grids assigned to you lie outside your organisation, so no data can be shown. "
    "Ask your village committee to check your grid assignment.",
)
# The two above told about the subject to someone else (``explain(..., about_caller=False)``).
_NO_GRIDS_ASSIGNED_TO_THEM = Reason(
    code=_NO_GRIDS_ASSIGNED.code,
    message_zh="该用户还没有分配微网格，暂不能查看数据。须由村（居）委会分配网格。",
    message_en="No micro-grid is assigned to this user yet, so no data can be shown. "
    "Their village committee assigns the grids.",
)
_THEIR_GRIDS_OUTSIDE_ORG = Reason(
    code=_GRIDS_OUTSIDE_ORG.code,
    message_zh="分配给该用户的微网格不在其单位辖区内，暂不能查看数据。须由村（居）委会核实网格分配。",
    message_en="The micro-grids assigned to this user lie outside their organisation, so no data can be "
    "shown. Their village committee should check the grid assignment.",
)


def reads_only_grids(roles: Iterable[str]) -> bool:
    """Whether a subject with ``roles`` reads no wider than her assigned micro-grids (a grid worker with no
    organisation-wide role): her row scope is grids, and a dataset kept without a grid code serves her
    nothing."""
    return _ORG_WIDE_READERS.isdisjoint(roles)


# "-G01" .. "-G99": the tail of a micro-grid code after its village's 12 digits (divisions._GRID).
_GRID_SUFFIXES = frozenset(f"-G{n:02d}" for n in range(1, 100))


def _row_scope(
    roles: tuple[str, ...], grids: tuple[str, ...], org: str, org_significant: str
) -> tuple[str, ...]:
    """The organisation for a subject holding an organisation-wide role; otherwise (a grid worker) the
    assigned grids within it (GB/T 35273-2020 §5.2 minimum necessary). Assigned grids outside the
    organisation are ignored; none assigned, or none left, is empty, which refuses (fail closed) rather
    than falling back to the whole village."""
    if not _ORG_WIDE_READERS.isdisjoint(roles):
        return (org,)
    village = len(org_significant) == 12
    return tuple(sorted({g for g in grids if _within(org, g, village)}))


def _within(org: str, grid: str, org_is_village: bool) -> bool:
    # The usual case first, exactly: within a village-level org (12 digits, valid) lie precisely the
    # codes "<org>-Gnn" with nn in 01-99. Anything else takes the full parse.
    if (
        org_is_village
        and type(grid) is str
        and len(grid) == 16
        and grid[12:] in _GRID_SUFFIXES
        and grid.startswith(org)
    ):
        return True
    try:
        return divisions.is_grid(grid) and divisions.covers(org, grid)
    except ValueError:
        return False


class _Trail:
    """Collects checks for ``explain``; for ``decide`` it stops at the first failure. ``third_person``:
    the checks are read by someone other than the subject, so they say "该用户", not "您"."""

    __slots__ = ("checks", "first_failure", "third_person")

    def __init__(self, third_person: bool = False) -> None:
        self.checks: list[Check] = []
        self.first_failure: Reason | None = None
        self.third_person = third_person

    def passed(self, code: str, zh: str, en: str, **detail: str | int) -> None:
        self.checks.append(Check(code=code, passed=True, message_zh=zh, message_en=en, detail=detail))

    def failed(self, code: str, why: Reason, **detail: str | int) -> None:
        self.checks.append(
            Check(
                code=code,
                passed=False,
                message_zh=why.message_zh,
                message_en=why.message_en,
                detail={"reason": why.code, **detail},
            )
        )
        if self.first_failure is None:
            self.first_failure = why


class PolicyEngine:
    def __init__(
        self,
        permissions: PermissionModel,
        scenarios: ScenarioCatalog,
        grants: GrantIndex,
        quotas: QuotaCounter | None = None,
        kept_by_grid: Callable[[str], bool] | None = None,
    ) -> None:
        """``kept_by_grid(dataset)``: whether the dataset's rows carry a micro-grid code (the catalog
        knows, and stewards may change it, so it is asked at each decision). A grid worker is refused a
        dataset that is not (check 9). None: nobody told the engine, which then leaves that check to its
        caller."""
        self.permissions = permissions
        self.scenarios = scenarios
        # Replaced wholesale by refresh_grants; a decision reads the reference once.
        self.grants = grants
        self.quotas = quotas
        self.kept_by_grid = kept_by_grid
        self._allowed_reasons: dict[tuple[int, str, str], Reason] = {}

    # -- public API ----------------------------------------------------------------------------

    def decide(self, request: AccessRequest) -> Decision:
        """Never raises: an internal error is a refusal with reason ``internal_error``."""
        try:
            return self._evaluate(request, None)
        except Exception as exc:
            # Type only: the exception text could echo request values.
            _log.error("policy decision failed closed: %s", type(exc).__name__)
            return INTERNAL_ERROR

    def is_allowed(self, request: AccessRequest) -> bool:
        return self.decide(request).allowed

    def authorize(self, request: AccessRequest) -> Obligations:
        """The obligations of an allowed decision; raises PolicyRefused(decision) otherwise."""
        decision = self.decide(request)
        if not decision.allowed or decision.obligations is None:
            raise PolicyRefused(decision)
        return decision.obligations

    def explain(self, request: AccessRequest, *, about_caller: bool = True) -> list[Check]:
        """Every condition checked, pass or fail, in words a cadre understands. Evaluation continues
        past a failure wherever the later conditions can still be judged; the first failed check
        is the reason ``decide`` gives (its code; its words too when ``about_caller``).

        ``about_caller``: the reader is the request's subject, addressed as "您"/"you". An administrator
        explaining a request she describes for someone else reads about "该用户"/"this user" instead."""
        trail = _Trail(third_person=not about_caller)
        try:
            self._evaluate(request, trail)
        except Exception as exc:
            _log.error("policy explanation failed closed: %s", type(exc).__name__)
            why = reason("internal_error", third_person=trail.third_person)
            trail.failed("internal", why)
        return trail.checks

    def what_if(
        self,
        *,
        grants: GrantIndex | None = None,
        permissions: PermissionModel | None = None,
        scenarios: ScenarioCatalog | None = None,
    ) -> PolicyEngine:
        """A copy with some policy state replaced and no quota counter, for dry runs and replay."""
        return PolicyEngine(
            permissions if permissions is not None else self.permissions,
            scenarios if scenarios is not None else self.scenarios,
            grants if grants is not None else self.grants,
            quotas=None,
            kept_by_grid=self.kept_by_grid,
        )

    def reloaded(self, actor: str = "system") -> tuple[PolicyEngine, dict[str, Any]]:
        """A new engine over the policy files re-read from the same paths, sharing this engine's grants
        and quota counter, plus the change event describing the reload.

        Raises ``PolicyFileError`` (file and line) when any file is invalid; nothing is swapped here:
        the caller replaces its reference, so a request in flight sees the old or the new policy whole.
        """
        files = PolicyFiles(self.permissions.model_path, self.permissions.policy_path, self.scenarios.path)
        change = policy_change(self.permissions, self.scenarios, files, actor)
        engine = PolicyEngine(
            files.permissions, files.scenarios, self.grants, self.quotas, kept_by_grid=self.kept_by_grid
        )
        return engine, change

    @property
    def digests(self) -> dict[str, str]:
        """Digests of the policy files this engine decides by (names the policy version)."""
        return {"permissions": self.permissions.digest, "scenarios": self.scenarios.digest}

    def refresh_grants(self, repository: GrantRepository, now: datetime) -> bool:
        """Swap in a rebuilt index when the ``policy_versions`` row moved; True when it did."""
        current = self.grants
        fresh = current.refreshed(repository, now)
        if fresh is current:
            return False
        self.grants = fresh
        return True

    # -- evaluation ----------------------------------------------------------------------------

    def _evaluate(self, req: AccessRequest, trail: _Trail | None) -> Decision:
        if req.now.tzinfo is None:
            # A naive time would be read as the host's local time and shift the hours window.
            raise ValueError("AccessRequest.now must be timezone-aware")
        subject = req.subject
        # Only an explanation for someone else speaks of the subject in the third person.
        third = trail is not None and trail.third_person
        info = self.scenarios.dataset(req.dataset)
        dataset_label = info.name_zh if info is not None else _UNKNOWN_DATASET[0]
        scenario = self.scenarios.get(req.scenario)
        scenario_label = scenario.name_zh if scenario is not None else _UNKNOWN_SCENARIO[0]
        # The catalog's names in each language, for the reasons' Chinese and English messages; a code
        # the catalog does not know is named by a placeholder, never repeated.
        names = {
            "dataset": dataset_label,
            "dataset_en": info.name_en if info is not None else _UNKNOWN_DATASET[1],
            "scenario": scenario_label,
            "scenario_en": scenario.name_en if scenario is not None else _UNKNOWN_SCENARIO[1],
        }

        def refuse(check: str, why: Reason) -> Decision | None:
            if trail is None:
                return Decision(allowed=False, reasons=(why,), obligations=None)
            trail.failed(check, why)
            return None

        # 1. Function-level permission (casbin).
        if self.permissions.is_allowed(subject.roles, f"dataset:{req.dataset}", req.action):
            if trail is not None:
                trail.passed(
                    "permission",
                    f"岗位可以查看「{dataset_label}」。",
                    f"Role may read {names['dataset_en']}.",
                )
        elif (d := refuse("permission", reason("no_permission", third_person=third, **names))) is not None:
            return d

        # 2-5. The scenario.
        if scenario is None:
            d = refuse("scenario", reason("unknown_scenario"))
            return d if d is not None else self._finish_trail(trail)
        if trail is not None:
            trail.passed(
                "scenario",
                f"使用场景「{scenario.name_zh}」存在。",
                f"Scenario \u201c{scenario.name_en}\u201d ({scenario.code}) exists.",
            )
        if set(subject.roles).isdisjoint(scenario.roles_allowed):
            if (
                d := refuse("scenario_role", reason("scenario_not_for_role", third_person=third, **names))
            ) is not None:
                return d
        elif trail is not None:
            trail.passed(
                "scenario_role",
                "该用户的岗位办理这项工作。" if third else "您的岗位办理这项工作。",
                "This user's role does this work." if third else "Your role does this work.",
            )
        if req.dataset not in scenario.datasets:
            why = reason("scenario_not_for_dataset", **names)
            d = refuse("scenario_dataset", why)
            return d if d is not None else self._finish_trail(trail)
        if trail is not None:
            trail.passed("scenario_dataset", "这项工作需要该数据。", "The scenario needs this dataset.")
        if not scenario.within_hours(req.now):
            start, end = scenario.hours_allowed
            why = reason("outside_hours", **names, start=start, end=end)
            if (d := refuse("hours", why)) is not None:
                return d
        elif trail is not None:
            trail.passed("hours", "当前在允许查看的时间内。", "Within the allowed hours.")

        # 6. An active grant covering the caller's organisation for this dataset, and
        # 7. the requested fields within it. Entries come ranked (most specific scope, then longest
        # lasting, then id); one pass finds the first active grant and the first active one granting
        # every requested field, without building candidate lists on the way.
        org, org_significant = divisions.split(subject.org)
        index = self.grants  # read once: a refresh may swap it meanwhile
        entries = index.entries(org_significant, scenario.code)
        dataset = req.dataset
        now_us: int | None
        try:
            now_us = epoch_us(req.now)
        except TypeError:
            # A tzinfo whose utcoffset() is None: compare datetimes exactly as before (grant.is_active).
            now_us = None
        if index.unconvertible:
            # A grant whose bounds the index could not convert fails the decision as it always did
            # (its comparison raises), wherever it ranks.
            for entry in entries:
                if entry[0] is None and dataset in entry[-1].datasets:
                    entry[-1].is_active(req.now)
        wanted: set[str] | None = None
        if req.fields is not None:
            fields = tuple(dict.fromkeys(req.fields))
            wanted = set(fields)
        first: ScenarioGrant | None = None
        first_fields: tuple[str, ...] = ()
        first_id = ""
        chosen: ScenarioGrant | None = None
        chosen_id = ""
        for valid_from, valid_until, only, only_fields, grant_id, grant in entries:
            if only is None:
                several = grant.datasets.get(dataset)
                if several is None:
                    continue
                granted = several
            elif only == dataset:
                granted = only_fields
            else:
                continue
            if (
                grant.is_active(req.now)
                if valid_from is None or now_us is None
                else valid_from <= now_us < valid_until
            ):
                if first is None:
                    first, first_fields, first_id = grant, granted, grant_id
                if wanted is None or wanted.issubset(granted):
                    chosen, chosen_id = grant, grant_id
                    break
        if first is None:
            candidates = [e[-1] for e in entries if dataset in e[-1].datasets]
            if any(g.status is GrantStatus.REVOKED for g in candidates):
                why = reason("grant_revoked", third_person=third, **names)
            elif any(g.has_lapsed(req.now) for g in candidates):
                why = reason("grant_expired", third_person=third, **names)
            else:
                why = reason("no_active_grant", third_person=third, **names)
            d = refuse("grant", why)
            return d if d is not None else self._finish_trail(trail)
        if wanted is None:
            fields = first_fields
        if trail is not None:
            best = chosen or first
            whose_org = ("该用户所在单位", "this user's") if third else ("本单位", "your")
            trail.passed(
                "grant",
                f"{whose_org[0]}有「{scenario_label}」的有效授权。",
                f"An active grant covers {whose_org[1]} organisation ({best.grant_id}).",
                grant_id=best.grant_id,
            )
        if chosen is None:
            outside = [f for f in fields if f not in first_fields]
            listed, listed_en = outside_fields(outside, info.fields if info is not None else ())
            why = reason("field_not_granted", third_person=third, **names, fields=listed, fields_en=listed_en)
            if (d := refuse("fields", why)) is not None:
                return d
            chosen, chosen_id = first, first_id
        elif trail is not None:
            trail.passed("fields", "所查信息都在授权范围内。", "All requested fields are granted.")

        # 8. Per-request cap and daily quota.
        max_records = scenario.max_records_per_request
        quota_left: int | None = None
        hint = req.record_count_hint
        quota_ok = True
        if hint is not None and hint > max_records:
            quota_ok = False
            why = reason("quota_exceeded", wording="too_many_records", **names, limit=max_records)
            if (d := refuse("quota", why)) is not None:
                return d
        if self.quotas is not None:
            used = self.quotas.used(subject.user_id, scenario.code, quota_day(req.now))
            quota_left = max(0, scenario.daily_quota_per_user - used)
            if quota_ok and (quota_left <= 0 or (hint is not None and hint > quota_left)):
                quota_ok = False
                # Some left but fewer than asked: "the limit is reached" was not so, and said to stop.
                why = reason(
                    "quota_exceeded",
                    wording="quota_too_few_left" if quota_left > 0 else None,
                    third_person=third,
                    **names,
                    quota=scenario.daily_quota_per_user,
                    left=quota_left,
                )
                if (d := refuse("quota", why)) is not None:
                    return d
            max_records = min(max_records, quota_left)
        if quota_ok and trail is not None:
            trail.passed(
                "quota",
                "未超过查看数量限制。"
                if quota_left is None
                else f"未超过查看数量限制（今天还可查看 {quota_left} 条）。",
                "Within the record limits."
                if quota_left is None
                else f"Within the record limits ({quota_left} records left today).",
                # The number, as decide's obligations give it; no quota store, nothing counted: no key.
                **({} if quota_left is None else {"quota_left": quota_left}),
            )
        # 9. Below the village: a grid worker reads the households of their assigned micro-grids only.
        row_scope = _row_scope(subject.roles, subject.grids, org, org_significant)
        if not row_scope:
            if subject.grids:
                why = _THEIR_GRIDS_OUTSIDE_ORG if third else _GRIDS_OUTSIDE_ORG
            else:
                why = _NO_GRIDS_ASSIGNED_TO_THEM if third else _NO_GRIDS_ASSIGNED
            if (d := refuse("grid_scope", why)) is not None:
                return d
        elif row_scope[0] != org and self.kept_by_grid is not None and not self.kept_by_grid(req.dataset):
            # Her scope is grids; rows without a grid code cannot be cut to them (GB/T 35273-2020 §5.2).
            if (d := refuse("grid_scope", reason("grid_scope_unsupported"))) is not None:
                return d
        elif trail is not None and row_scope[0] != org:
            trail.passed(
                "grid_scope",
                f"只能查看分配给{'该用户' if third else '您'}的微网格内的数据。",
                f"Only the micro-grids assigned to {'this user' if third else 'you'}.",
                grids=",".join(row_scope),
            )
        if trail is not None and trail.first_failure is not None:
            return Decision(allowed=False, reasons=(trail.first_failure,), obligations=None)

        obligations = Obligations(
            row_scope=row_scope,
            fields=fields,
            masking_profile=scenario.masking_profile,
            max_records=max_records,
            quota_left=quota_left,
            grant_id=chosen_id,
        )
        return Decision(
            allowed=True, reasons=(self._allowed_reason(scenario.code, req.dataset),), obligations=obligations
        )

    def _allowed_reason(self, scenario_code: str, dataset: str) -> Reason:
        key = (self.scenarios.version, scenario_code, dataset)
        cached = self._allowed_reasons.get(key)
        if cached is None:
            scenario = self.scenarios.get(scenario_code)
            info = self.scenarios.dataset(dataset)
            cached = reason(
                "allowed",
                scenario=scenario.name_zh if scenario is not None else scenario_code,
                scenario_en=scenario.name_en if scenario is not None else scenario_code,
                dataset=info.name_zh if info is not None else dataset,
                dataset_en=info.name_en if info is not None else dataset,
            )
            if len(self._allowed_reasons) < 10_000:
                self._allowed_reasons[key] = cached
        return cached

    @staticmethod
    def _finish_trail(trail: _Trail | None) -> Decision:
        assert trail is not None and trail.first_failure is not None
        return Decision(allowed=False, reasons=(trail.first_failure,), obligations=None)
