"""A deterministic synthetic country for the policy benchmark, generated from indices.

Nothing here is held in memory as a whole: an organisation, a user or a grant is a pure function of
its index, so the 8-million-user world costs nothing until a request names a user.

Shape (统计用区划代码, six levels): the national root, 31 provinces (the real province codes), and per
province ``cities`` cities, per city ``counties`` counties, per county ``townships`` townships and per
township ``villages`` villages/communities. The national shape has 614,173 organisations
(1 + 31 + 341 + 2,728 + 38,192 + 572,880).

A user is ``(user_id, org, role)`` derived from the user index: 60 % village cadres and 20 % grid
workers in a village, 15 % township officers, 5 % county officers. Grants cite the two scenarios of
``policies/scenarios.toml`` and scope a county (4 %), a township (48 %) or a village (48 %); about one in
three narrows the scenario's fields; 5 % more grants are lapsed or revoked so refusals can say why.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from policies import AccessRequest, GrantStatus, ScenarioGrant, Subject

PROVINCES: tuple[str, ...] = (
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41",
    "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65",
)  # fmt: skip

# The instant the benchmark's requests are made around (a weekday, 10:00 in UTC+8 is 02:00 UTC).
T0 = datetime(2025, 6, 2, 2, 0, tzinfo=UTC)

# Scenario fields as in policies/scenarios.toml; narrowed grants drop the second-approval fields.
SCENARIO_FIELDS: dict[str, tuple[str, ...]] = {
    "DIBAO_REVIEW": (
        "id", "name", "id_number", "mobile", "address", "household_no", "dibao_status", "village_code",
        "remark",
    ),
    "ELDERLY_VISIT": ("id", "name", "birth_date", "address", "mobile", "village_code"),
}  # fmt: skip
NARROWED: dict[str, tuple[str, ...]] = {
    "DIBAO_REVIEW": ("id", "name", "mobile", "address", "household_no", "village_code"),
    "ELDERLY_VISIT": ("id", "name", "address", "village_code"),
}
SCENARIOS = tuple(SCENARIO_FIELDS)


@dataclass(frozen=True, slots=True)
class Shape:
    provinces: int
    cities: int
    counties: int
    townships: int
    villages: int
    users: int
    grants: int  # active grants; 5 % more lapsed or revoked ones are added

    @property
    def n_cities(self) -> int:
        return self.provinces * self.cities

    @property
    def n_counties(self) -> int:
        return self.n_cities * self.counties

    @property
    def n_townships(self) -> int:
        return self.n_counties * self.townships

    @property
    def n_villages(self) -> int:
        return self.n_townships * self.villages

    @property
    def organisations(self) -> int:
        return 1 + self.provinces + self.n_cities + self.n_counties + self.n_townships + self.n_villages


NATIONAL = Shape(
    provinces=31, cities=11, counties=8, townships=14, villages=15, users=8_000_000, grants=100_000
)
# A tenth of the country (three provinces), for quick runs: the same grant density per village.
REGIONAL = Shape(provinces=3, cities=11, counties=8, townships=14, villages=15, users=800_000, grants=10_000)
# The 1,000-user world: 115 organisations; 40 grants give the same share of allowed requests (~40 %)
# as the national world, so both worlds take the same code paths equally often.
SMALL = Shape(provinces=1, cities=1, counties=2, townships=5, villages=10, users=1_000, grants=40)


def _mix(i: int, salt: int) -> int:
    """A cheap deterministic scramble of an index (splitmix64 finaliser)."""
    z = (i * 0x9E3779B97F4A7C15 + salt) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


class World:
    def __init__(self, shape: Shape) -> None:
        self.shape = shape

    # -- organisations ---------------------------------------------------------------------------

    def county(self, k: int) -> str:
        s = self.shape
        p, rest = divmod(k, s.cities * s.counties)
        c, d = divmod(rest, s.counties)
        return f"{PROVINCES[p]}{c + 1:02d}{d + 1:02d}000000"

    def township(self, k: int) -> str:
        county, t = divmod(k, self.shape.townships)
        return f"{self.county(county)[:6]}{101 + t:03d}000"

    def village(self, k: int) -> str:
        township, v = divmod(k, self.shape.villages)
        return f"{self.township(township)[:9]}{201 + v:03d}"

    def organisations(self) -> Iterator[str]:
        """Every organisation code once, root first (streamed)."""
        s = self.shape
        yield "000000000000"
        for p in PROVINCES[: s.provinces]:
            yield f"{p}0000000000"
        for k in range(s.n_cities):
            yield self.county(k * s.counties)[:4] + "00000000"
        for k in range(s.n_counties):
            yield self.county(k)
        for k in range(s.n_townships):
            yield self.township(k)
        for k in range(s.n_villages):
            yield self.village(k)

    # -- users -----------------------------------------------------------------------------------

    def user(self, i: int) -> Subject:
        s = self.shape
        h = _mix(i, 1)
        bucket = i % 20
        if bucket < 12:
            role, org = "village_cadre", self.village(h % s.n_villages)
        elif bucket < 16:
            role, org = "grid_worker", self.village(h % s.n_villages)
        elif bucket < 19:
            role, org = "township_officer", self.township(h % s.n_townships)
        else:
            role, org = "county_officer", self.county(h % s.n_counties)
        grids: tuple[str, ...] = ()
        if role == "grid_worker" and (h >> 12) % 20:  # one grid worker in 20 has no grid assigned yet
            first = 1 + (h >> 16) % 12
            grids = tuple(f"{org}-G{first + k:02d}" for k in range(1 + (h >> 24) % 3))
        return Subject(user_id=f"u{i:08d}", org=org, roles=(role,), grids=grids)

    # -- grants ----------------------------------------------------------------------------------

    def grant(self, g: int) -> ScenarioGrant:
        s = self.shape
        h = _mix(g, 2)
        scenario = SCENARIOS[g % 2]
        kind = (h >> 8) % 100
        if kind < 4:
            scope = self.county((h >> 16) % s.n_counties)
        elif kind < 52:
            scope = self.township((h >> 16) % s.n_townships)
        else:
            scope = self.village((h >> 16) % s.n_villages)
        fields = NARROWED[scenario] if (h >> 40) % 3 == 0 else SCENARIO_FIELDS[scenario]
        valid_from = T0 - timedelta(days=1 + (h >> 44) % 80, seconds=(h >> 24) % 86_400)
        valid_until = T0 + timedelta(days=1 + (h >> 52) % 180, seconds=(h >> 32) % 86_400)
        status = GrantStatus.APPROVED
        if g >= s.grants:  # the lapsed / revoked tail
            if g % 2:
                status = GrantStatus.REVOKED
            else:
                valid_until = T0 - timedelta(days=1 + (h >> 52) % 20)
        return ScenarioGrant(
            grant_id=f"g{g:07d}",
            scenario=scenario,
            org_scope=scope,
            datasets=MappingProxyType({"residents": fields}),
            valid_from=valid_from,
            valid_until=valid_until,
            status=status,
            requested_by=f"u{(h >> 20) % s.users:08d}",
            approved_by="steward",
        )

    @property
    def total_grants(self) -> int:
        return self.shape.grants + self.shape.grants // 20

    def grants(self) -> Iterator[ScenarioGrant]:
        for g in range(self.total_grants):
            yield self.grant(g)

    # -- requests --------------------------------------------------------------------------------

    def requests(self, n: int, seed: int) -> list[AccessRequest]:
        """``n`` requests by uniformly drawn users: mostly their role's scenario, within hours."""
        rng = random.Random(seed)
        out: list[AccessRequest] = []
        for _ in range(n):
            subject = self.user(rng.randrange(self.shape.users))
            role = subject.roles[0]
            if rng.random() < 0.9:
                scenario = {"grid_worker": "ELDERLY_VISIT", "township_officer": "DIBAO_REVIEW"}.get(
                    role, rng.choice(SCENARIOS)
                )
            else:
                scenario = rng.choice((*SCENARIOS, "FLOOD_RELIEF"))  # an unknown scenario now and then
            fields: tuple[str, ...] | None = None
            pick = rng.random()
            if pick < 0.4 and scenario in SCENARIO_FIELDS:
                fields = tuple(rng.sample(SCENARIO_FIELDS[scenario], rng.randint(1, 4)))
            elif pick < 0.5 and scenario in NARROWED:
                fields = tuple(rng.sample(NARROWED[scenario], 3))
            # 07:00-21:00 in UTC+8 is 23:00-13:00 UTC; one in ten requests falls outside.
            offset = (
                rng.randrange(-3 * 3600, 11 * 3600) if rng.random() < 0.9 else rng.randrange(11, 13) * 3600
            )
            hint = rng.choice((None, 20, 50, 150, 400))
            out.append(
                AccessRequest(
                    subject=subject,
                    action="read",
                    dataset="residents",
                    scenario=scenario,
                    fields=fields,
                    now=T0 + timedelta(seconds=offset, microseconds=rng.randrange(1_000_000)),
                    record_count_hint=hint,
                )
            )
        return out


def grant_rows(
    world: World, shift: timedelta = timedelta(0), batch: int = 10_000
) -> Iterator[list[dict[str, Any]]]:
    """The world's grants as ``policy_grants`` rows, in batches, every instant moved by ``shift``.

    Unshifted, validity is around :data:`T0` (the policy benchmark decides at T0); a running gateway decides
    at the wall clock's now, so it is given the rows shifted by ``now - T0``: the same share active, lapsed
    and revoked as the in-process figures see."""
    rows: list[dict[str, Any]] = []
    for g in world.grants():
        assert g.valid_from is not None and g.valid_until is not None
        # Stamped as in service: created and last changed when approved; a revoked grant changed
        # again halfway to T0. (Not all at one instant: an incremental refresh re-reads the changes
        # stamped within its overlap window of the newest one, and a real table's stamps spread
        # over months.)
        changed = g.valid_from
        if g.status is GrantStatus.REVOKED:
            changed = g.valid_from + (T0 - g.valid_from) / 2
        rows.append(
            {
                "grant_id": g.grant_id,
                "scenario": g.scenario,
                "org_scope": g.org_scope,
                "datasets": {k: list(v) for k, v in g.datasets.items()},
                "valid_from": g.valid_from + shift,
                "valid_until": g.valid_until + shift,
                "status": g.status.value,
                "requested_by": g.requested_by,
                "approved_by": g.approved_by,
                "second_approver": None,
                "revoked_by": "u-bench" if g.status is GrantStatus.REVOKED else None,
                "reason": "",
                "created_at": g.valid_from + shift,
                "updated_at": changed + shift,
                "renewed_from": None,
                "break_glass": False,
            }
        )
        if len(rows) == batch:
            yield rows
            rows = []
    if rows:
        yield rows
