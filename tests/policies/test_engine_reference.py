"""Law: PolicyEngine.decide agrees with a small, obviously-correct reference model on 100k random
requests over random grant worlds, with times on grant boundaries (valid_from, valid_until, one
microsecond either side), on the edges of the hours window, and org codes chosen to be prefix traps
(sibling codes whose zero-stripped forms are prefixes of each other, short and trailing-zero forms,
cities without counties, malformed codes), and micro-grid assignments (none, within the organisation,
of a sibling village, malformed) for subjects with and without an organisation-wide role.

The reference shares no code with the engine: it scans every grant, compares codes segment by segment,
and takes roles, datasets and scenarios from literal tables written from the specification.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType

from policies import (
    AccessRequest,
    GrantIndex,
    GrantStatus,
    InMemoryQuotaCounter,
    PermissionModel,
    PolicyEngine,
    ScenarioCatalog,
    ScenarioGrant,
    Subject,
)

SEED = 20250303
WORLDS = 1000
REQUESTS_PER_WORLD = 100

# -- the reference model --------------------------------------------------------------------------

READERS = {"village_cadre", "grid_worker", "township_officer", "county_officer"}
# Roles that read their whole organisation; a reader with none of them (a grid worker) reads only the
# micro-grids assigned to them, and nothing when none is assigned.
ORG_WIDE = {"village_cadre", "township_officer", "county_officer"}
ALL_FIELDS = (
    "id",
    "name",
    "id_number",
    "mobile",
    "address",
    "birth_date",
    "household_no",
    "dibao_status",
    "village_code",
    "remark",
)


@dataclass(frozen=True)
class RefScenario:
    roles: frozenset[str]
    fields: tuple[str, ...]
    cap: int
    quota: int


REF_SCENARIOS = {
    "DIBAO_REVIEW": RefScenario(
        frozenset({"village_cadre", "township_officer"}),
        (
            "id",
            "name",
            "id_number",
            "mobile",
            "address",
            "household_no",
            "dibao_status",
            "village_code",
            "remark",
        ),
        200,
        2000,
    ),
    "ELDERLY_VISIT": RefScenario(
        frozenset({"village_cadre", "grid_worker"}),
        ("id", "name", "birth_date", "address", "mobile", "village_code"),
        100,
        1000,
    ),
}
SEGMENTS = ((0, 2), (2, 4), (4, 6), (6, 9), (9, 12))


def ref_segments(code: str) -> list[str] | None:
    """Five segments of the 12-digit form, or None when the code is malformed."""
    if len(code) not in (2, 4, 6, 9, 12) or not all("0" <= c <= "9" for c in code):
        return None
    full = code + "0" * (12 - len(code))
    segs = [full[a:b] for a, b in SEGMENTS]
    if segs[0] == "00" and full != "0" * 12:
        return None
    return segs


def ref_depth(segs: list[str]) -> int:
    depth = 0
    for i, seg in enumerate(segs, start=1):
        if int(seg) != 0:
            depth = i
    return depth


def ref_covers(scope: str, target: str) -> bool:
    s, t = ref_segments(scope), ref_segments(target)
    assert s is not None and t is not None
    d = ref_depth(s)
    return ref_depth(t) >= d and s[:d] == t[:d]


def ref_grid_within(org: str, grid: str) -> bool:
    """``<12-digit village code>-G<01..99>``, the village inside ``org``."""
    if len(grid) != 16 or grid[12:14] != "-G" or not all("0" <= c <= "9" for c in grid[14:]):
        return False
    if not 1 <= int(grid[14:]) <= 99:
        return False
    village = ref_segments(grid[:12])
    return village is not None and ref_depth(village) == 5 and ref_covers(org, grid[:12])


def ref_active(g: ScenarioGrant, now: datetime) -> bool:
    assert g.valid_from is not None and g.valid_until is not None
    return g.status == GrantStatus.APPROVED and g.valid_from <= now and now < g.valid_until


def ref_decide(
    req: AccessRequest, grants: Sequence[ScenarioGrant], used: dict[tuple[str, str, date], int]
) -> tuple[str, tuple[object, ...] | None]:
    roles = set(req.subject.roles)
    if not (req.action == "read" and req.dataset == "residents" and roles & READERS):
        return "no_permission", None
    sc = REF_SCENARIOS.get(req.scenario)
    if sc is None:
        return "unknown_scenario", None
    if not roles & sc.roles:
        return "scenario_not_for_role", None
    # Only "residents" can pass the permission check, and both scenarios need it.
    local = req.now.astimezone(UTC) + timedelta(hours=8)
    if not 7 <= local.hour < 21:
        return "outside_hours", None
    if ref_segments(req.subject.org) is None:
        return "internal_error", None
    matching = [
        g
        for g in grants
        if g.scenario == req.scenario
        and req.dataset in g.datasets
        and ref_covers(g.org_scope, req.subject.org)
    ]
    active = [g for g in matching if ref_active(g, req.now)]
    if not active:
        if any(g.status == GrantStatus.REVOKED for g in matching):
            return "grant_revoked", None
        if any(
            g.status == GrantStatus.EXPIRED
            or (g.status == GrantStatus.APPROVED and g.valid_until is not None and g.valid_until <= req.now)
            for g in matching
        ):
            return "grant_expired", None
        return "no_active_grant", None

    def rank(g: ScenarioGrant) -> tuple[int, float, str]:
        segs = ref_segments(g.org_scope)
        assert segs is not None and g.valid_until is not None
        return (-ref_depth(segs), -g.valid_until.timestamp(), g.grant_id)

    active.sort(key=rank)
    if req.fields is None:
        chosen: ScenarioGrant | None = active[0]
        assert chosen is not None
        fields = tuple(chosen.datasets[req.dataset])
    else:
        fields = tuple(dict.fromkeys(req.fields))
        chosen = next((g for g in active if all(f in g.datasets[req.dataset] for f in fields)), None)
        if chosen is None:
            return "field_not_granted", None
    if req.record_count_hint is not None and req.record_count_hint > sc.cap:
        return "quota_exceeded", None
    left = max(0, sc.quota - used.get((req.subject.user_id, req.scenario, local.date()), 0))
    if left == 0 or (req.record_count_hint is not None and req.record_count_hint > left):
        return "quota_exceeded", None
    own = ref_segments(req.subject.org)
    assert own is not None
    row_scope: tuple[str, ...] = ("".join(own),)
    if not roles & ORG_WIDE:
        row_scope = tuple(sorted({g for g in req.subject.grids if ref_grid_within(req.subject.org, g)}))
        if not row_scope:
            return ("grid_scope_invalid" if req.subject.grids else "grid_scope_unassigned"), None
    return "allowed", (row_scope, fields, "standard", min(sc.cap, left), left, chosen.grant_id)


# -- random worlds --------------------------------------------------------------------------------

ORGS = (
    "000000000000",
    "310000000000",
    "310100000000",
    "310110000000",
    "310115000000",
    "310151000000",
    "310151100000",
    "310151101000",
    "310151102000",
    "310151101001",
    "310151101002",
    "310151101010",
    "310151101011",
    "310151102001",
    "441900000000",
    "441900003000",
    "441900003021",
    "320000000000",
)
SHORT_FORMS = ("31", "3101", "310151", "310151101", "310151000", "441900003")
MALFORMED = ("3101511", "31015110100", "", "31015110100x", "001234000000")
GRID_POOL = (
    "310151101001-G01",
    "310151101001-G10",
    "310151101010-G01",
    "310151101011-G01",
    "310151102001-G03",
    "441900003021-G99",
    "310151101001-G1",  # malformed: one digit, so no prefix of G10 or G01
    "310151101001-G00",  # numbered from 01
    "310151101000-G01",  # a township has no grids
    "310151101001-g01",
    "310151101001G01",
)
ROLE_POOL = (
    "village_cadre",
    "grid_worker",
    "township_officer",
    "county_officer",
    "supervisor",
    "data_steward",
    "x",
)
SCENARIO_POOL = ("DIBAO_REVIEW", "ELDERLY_VISIT", "NOPE")
STATUSES = [GrantStatus.APPROVED] * 6 + [
    GrantStatus.REVOKED,
    GrantStatus.EXPIRED,
    GrantStatus.REQUESTED,
    GrantStatus.RENEWED,
]
BASE = datetime(2025, 3, 3, 3, 0, tzinfo=UTC)  # 11:00 Beijing time
TICK = timedelta(microseconds=1)
# Beijing time: 06:59:59.999999, 21:00, 20:59:59.999999, 02:00, 07:00.
HOUR_EDGES = (
    datetime(2025, 3, 3, 22, 59, 59, 999999, tzinfo=UTC),
    datetime(2025, 3, 3, 13, 0, tzinfo=UTC),
    datetime(2025, 3, 3, 12, 59, 59, 999999, tzinfo=UTC),
    datetime(2025, 3, 3, 18, 0, tzinfo=UTC),
    datetime(2025, 3, 2, 23, 0, tzinfo=UTC),
)


def random_grant(rng: random.Random, n: int) -> ScenarioGrant:
    scenario = rng.choice(("DIBAO_REVIEW", "ELDERLY_VISIT"))
    allowed = REF_SCENARIOS[scenario].fields
    fields = tuple(f for f in allowed if rng.random() < 0.8) or allowed[:1]
    start = BASE + timedelta(minutes=rng.randint(-120, 60))
    end = start + timedelta(minutes=rng.randint(1, 180))
    dataset = "residents" if rng.random() < 0.9 else "households"
    datasets = {dataset: fields}
    if rng.random() < 0.2:
        # A grant naming two datasets (the index keeps a one-dataset grant's fields at hand; this
        # exercises the other path).
        other = "households" if dataset == "residents" else "residents"
        datasets[other] = tuple(f for f in allowed if rng.random() < 0.5) or allowed[-1:]
    return ScenarioGrant(
        grant_id=f"g{n:02d}",
        scenario=scenario,
        org_scope=rng.choice(ORGS + SHORT_FORMS),
        datasets=MappingProxyType(datasets),
        valid_from=start,
        valid_until=end,
        status=rng.choice(STATUSES),
        requested_by="u-r",
    )


def random_request(
    rng: random.Random, grants: Sequence[ScenarioGrant], users: Sequence[str]
) -> AccessRequest:
    r = rng.random()
    if r < 0.03:
        org = rng.choice(MALFORMED)
    elif r < 0.15:
        org = rng.choice(SHORT_FORMS)
    else:
        org = rng.choice(ORGS)
    roles = tuple(rng.sample(ROLE_POOL, rng.choice((1, 1, 1, 2))))
    t = rng.random()
    if grants and t < 0.6:
        g = rng.choice(grants)
        assert g.valid_from is not None and g.valid_until is not None
        edge = rng.choice((g.valid_from, g.valid_until))
        now = edge + rng.choice((-TICK, timedelta(0), TICK))
    elif t < 0.7:
        now = rng.choice(HOUR_EDGES)
    else:
        now = BASE + timedelta(minutes=rng.randint(-180, 240))
    fields: tuple[str, ...] | None = None
    if rng.random() < 0.5:
        fields = tuple(rng.sample((*ALL_FIELDS, "salary"), rng.randint(1, 4)))
    grids: tuple[str, ...] = ()
    if rng.random() < 0.6:
        grids = tuple(rng.sample(GRID_POOL, rng.randint(1, 3)))
    return AccessRequest(
        subject=Subject(user_id=rng.choice(users), org=org, roles=roles, grids=grids),
        action="read" if rng.random() < 0.95 else "write",
        dataset="residents" if rng.random() < 0.95 else "households",
        scenario=rng.choice(SCENARIO_POOL),
        fields=fields,
        now=now,
        record_count_hint=rng.choice((None, None, 1, 50, 100, 101, 200, 201)),
    )


def test_engine_agrees_with_the_reference_model(
    permissions: PermissionModel, scenarios: ScenarioCatalog
) -> None:
    rng = random.Random(SEED)
    users = ("u1", "u2", "u3")
    checked = 0
    codes: set[str] = set()
    for world in range(WORLDS):
        grants = [random_grant(rng, n) for n in range(rng.randint(0, 8))]
        quotas = InMemoryQuotaCounter()
        used: dict[tuple[str, str, date], int] = {}
        for user in users:
            for scenario in ("DIBAO_REVIEW", "ELDERLY_VISIT"):
                amount = rng.choice((0, 0, 500, 995, 999, 1000, 1950, 2000, 2500))
                quotas.consume(user, scenario, "2025-03-03", amount)
                used[(user, scenario, date(2025, 3, 3))] = amount
        engine = PolicyEngine(permissions, scenarios, GrantIndex(grants), quotas=quotas)
        for _ in range(REQUESTS_PER_WORLD):
            request = random_request(rng, grants, users)
            decision = engine.decide(request)
            ob = decision.obligations
            got = (
                decision.code,
                None
                if ob is None
                else (
                    ob.row_scope,
                    ob.fields,
                    ob.masking_profile,
                    ob.max_records,
                    ob.quota_left,
                    ob.grant_id,
                ),
            )
            want = ref_decide(request, grants, used)
            assert got == want, f"world {world} (seed {SEED}): {request!r}\ngrants: {grants!r}"
            codes.add(want[0])
            checked += 1
    assert checked >= 100_000
    # The generator reaches every outcome, so agreement is not agreement on a few easy cases.
    assert codes == {
        "allowed",
        "no_permission",
        "unknown_scenario",
        "scenario_not_for_role",
        "outside_hours",
        "grant_revoked",
        "grant_expired",
        "no_active_grant",
        "field_not_granted",
        "quota_exceeded",
        "grid_scope_unassigned",
        "grid_scope_invalid",
        "internal_error",
    }
