"""Policy decisions at national scale, side by side with the same policy in Rego on regorus.

World (bench/_world_national.py): 614,173 organisations on six levels of 12-digit division codes,
8,000,000 users derived from their index, 100,000 active grants (+5,000 lapsed or revoked). Quick mode
keeps the organisation tree and takes a tenth of the users and grants.

Figures (issue 3, "Performance"):

* decision p99 of ``PolicyEngine.decide`` in-process at that scale (goal ≤ 30 µs);
* p99 growth from the 1,000-user world to the national one, timed in alternating slices (goal ≤ 1.5×);
* resident memory of the policy state: RSS growth while building the GrantIndex (goal ≤ 500 MB); the
  peer is regorus holding the same grants as its data document;
* our p99 as a ratio to regorus (PyPI ``hobofan-regorus``) evaluating ``bench/policy.rego`` on the
  same requests, ``set_input_json`` + ``eval_rule`` per request; every decision is compared (allowed,
  reason code, chosen grant, field list) and the agreement is reported (goal ≤ 3×);
* reload: rebuilding the GrantIndex from 105,000 grant rows in SQLite (``refresh_grants``) while another
  thread keeps deciding; every decision served during the swap must equal the one before it (goal ≤ 5 s,
  none dropped). The peer is regorus replacing its data document with the same grants. Then the usual
  reload: one grant revoked in another session and picked up incrementally (only changed rows read).
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bench._measure import interleaved_latencies_us, log, percentile, settled_rss_mb
from bench._world_national import NATIONAL, REGIONAL, SMALL, T0, World, grant_rows
from bench.figures import Figure
from policies import (
    AccessRequest,
    Decision,
    GrantIndex,
    GrantRepository,
    GrantStatus,
    PermissionModel,
    PolicyEngine,
    ScenarioCatalog,
    ScenarioGrant,
    divisions,
    load_permissions,
    load_scenarios,
)
from policies.tables import GrantRow
from policies.tables import metadata as policy_metadata

REGO_PATH = Path(__file__).resolve().parent / "policy.rego"
REGO_RULE = "data.grassroots.policy.decision"


# -- the same policy as Rego data ----------------------------------------------------------------


def rego_data(
    grants: Iterable[ScenarioGrant], permissions: PermissionModel, scenarios: ScenarioCatalog
) -> dict[str, Any]:
    by_scope: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for g in grants:
        scope = divisions.normalize(g.org_scope)
        assert g.valid_from is not None and g.valid_until is not None
        by_scope.setdefault(scope, {}).setdefault(g.scenario, []).append(
            {
                "id": g.grant_id,
                "level": int(divisions.level_of(scope)),
                "status": g.status.value,
                "valid_from": int(g.valid_from.timestamp()),
                "valid_until": int(g.valid_until.timestamp()),
                "datasets": {k: list(v) for k, v in g.datasets.items()},
            }
        )
    perms: dict[str, dict[str, dict[str, bool]]] = {}
    for rule in permissions.rules:
        if rule.ptype == "p":
            role, resource, action = rule.values
            perms.setdefault(role, {}).setdefault(resource, {})[action] = True
    return {
        "permissions": perms,
        "scenarios": {
            s.code: {
                "roles_allowed": list(s.roles_allowed),
                "datasets": {k: list(v) for k, v in s.datasets.items()},
                "hours": list(s.hours_allowed),
                "max_records": s.max_records_per_request,
                "masking_profile": s.masking_profile,
            }
            for s in scenarios
        },
        "grants": by_scope,
    }


def rego_input(req: AccessRequest) -> str:
    return json.dumps(
        {
            "subject": {
                "user_id": req.subject.user_id,
                "org": req.subject.org,
                "roles": list(req.subject.roles),
                "grids": list(req.subject.grids),
            },
            "action": req.action,
            "dataset": req.dataset,
            "scenario": req.scenario,
            "fields": None if req.fields is None else list(req.fields),
            # Whole seconds: the grants' validity is generated in whole seconds too.
            "now": int(req.now.timestamp()),
            "record_count_hint": req.record_count_hint,
        }
    )


def summary(decision: Decision) -> tuple[object, ...]:
    ob = decision.obligations
    if ob is None:
        return (decision.code, None, None, None)
    return (decision.code, ob.grant_id, tuple(ob.fields), tuple(ob.row_scope))


def rego_summary(out: dict[str, Any]) -> tuple[object, ...]:
    ob = out.get("obligations")
    if not ob:
        return (out["reason"], None, None, None)
    return (out["reason"], ob["grant_id"], tuple(ob["fields"]), tuple(ob["row_scope"]))


def new_regorus() -> Any:
    import hobofan_regorus as regorus  # PyPI hobofan-regorus: regorus' Python binding

    engine = regorus.Engine()
    engine.add_policy_from_file(str(REGO_PATH))
    return engine


# -- reload under load ---------------------------------------------------------------------------


def _untouched_grant(world: World, probe: list[AccessRequest]) -> str:
    """An active grant whose scope covers none of the probe's callers: revoking it must change no
    decision the reader thread checks."""
    covered = {code for r in probe for code in divisions.ancestors(r.subject.org)}
    for g in world.grants():
        if g.status is GrantStatus.APPROVED and divisions.normalize(g.org_scope) not in covered:
            return g.grant_id
    raise AssertionError("every grant covers a probe request")


def reload_under_load(
    world: World, engine: PolicyEngine, probe: list[AccessRequest], tmp: Path
) -> dict[str, float]:
    db = sa.create_engine(f"sqlite:///{tmp / 'policy.db'}")
    policy_metadata.create_all(db)
    with db.begin() as conn:
        for rows in grant_rows(world):
            conn.execute(sa.insert(GrantRow), rows)
    with Session(db) as session:
        GrantRepository(session).bump_policy_version(T0)
        session.commit()

    expected = [summary(engine.decide(r)) for r in probe]
    stop = threading.Event()
    stats = {"served": 0, "wrong": 0, "max_gap_ms": 0.0}

    def reader() -> None:
        clock = time.perf_counter
        last = clock()
        i = 0
        n = len(probe)
        while not stop.is_set():
            k = i % n
            if summary(engine.decide(probe[k])) != expected[k]:
                stats["wrong"] += 1
            now = clock()
            stats["max_gap_ms"] = max(stats["max_gap_ms"], (now - last) * 1000)
            last = now
            stats["served"] += 1
            i += 1

    old = engine.grants
    victim = _untouched_grant(world, probe)
    thread = threading.Thread(target=reader, name="bench-reader")
    thread.start()
    time.sleep(0.2)

    # 1. Full rebuild: the bench's index was not read from the database, as after a start.
    served_before = stats["served"]
    t0 = time.perf_counter()
    with Session(db) as session:
        swapped = engine.refresh_grants(GrantRepository(session), T0)
    reload_s = time.perf_counter() - t0
    served_during = stats["served"] - served_before
    full_gap_ms = stats["max_gap_ms"]
    assert swapped and engine.grants is not old and len(engine.grants) == len(old)
    time.sleep(0.2)

    # 2. The usual reload: one grant revoked in another process, picked up incrementally.
    later = T0 + timedelta(minutes=1)
    with Session(db) as session:
        repo = GrantRepository(session)
        grant = repo.get(victim)
        assert grant is not None
        repo.save(
            replace(grant, status=GrantStatus.REVOKED, revoked_by="u-bench", reason="bench", updated_at=later)
        )
        repo.bump_policy_version(later)
        session.commit()
    before_incremental = engine.grants
    served_before = stats["served"]
    t0 = time.perf_counter()
    with Session(db) as session:
        swapped = engine.refresh_grants(GrantRepository(session), later)
    incremental_s = time.perf_counter() - t0
    served_incremental = stats["served"] - served_before
    time.sleep(0.2)
    stop.set()
    thread.join()
    fresh = engine.grants
    assert swapped and fresh is not before_incremental and len(fresh) == len(old)
    revoked = [g for g in fresh.grants() if g.grant_id == victim]
    assert [g.status for g in revoked] == [GrantStatus.REVOKED]

    # The same rebuild with nobody else asking, for the record.
    with Session(db) as session:
        t0 = time.perf_counter()
        GrantIndex.from_repository(GrantRepository(session), later)
        alone_s = time.perf_counter() - t0
    db.dispose()
    return {
        "reload_s": reload_s,
        "reload_alone_s": alone_s,
        "served_during": float(served_during),
        "wrong": float(stats["wrong"]),
        "max_gap_ms": full_gap_ms,
        "served_total": float(stats["served"]),
        "incremental_s": incremental_s,
        "served_during_incremental": float(served_incremental),
    }


# -- the benchmark -------------------------------------------------------------------------------


def _p(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    return {
        "p50_us": round(percentile(s, 50), 2),
        "p99_us": round(percentile(s, 99), 2),
        "p999_us": round(percentile(s, 99.9), 2),
        "mean_us": round(sum(s) / len(s), 2),
    }


def run(quick: bool) -> list[Figure]:
    shape = REGIONAL if quick else NATIONAL
    n_requests = 30_000 if quick else 200_000
    n_rego = 2_000 if quick else 20_000
    permissions = load_permissions()
    scenarios = load_scenarios()

    small = World(SMALL)
    small_engine = PolicyEngine(permissions, scenarios, GrantIndex(small.grants()))
    world = World(shape)
    scale = (
        f"{shape.organisations:,} orgs, {shape.users:,} users, {shape.grants:,} active grants "
        f"(+{world.total_grants - shape.grants:,} lapsed/revoked)"
    )
    log(f"building the grant index: {scale}")
    rss0 = settled_rss_mb()
    t0 = time.perf_counter()
    index = GrantIndex(world.grants())
    build_s = time.perf_counter() - t0
    state_mb = settled_rss_mb() - rss0
    engine = PolicyEngine(permissions, scenarios, index)

    requests = world.requests(n_requests, seed=1)
    small_requests = small.requests(n_requests, seed=1)
    for r in requests[:2000]:
        engine.decide(r)
    for r in small_requests[:2000]:
        small_engine.decide(r)
    log(f"timing {n_requests:,} decisions in each world")
    lat_national, lat_small = interleaved_latencies_us(
        [(engine.decide, requests), (small_engine.decide, small_requests)], rounds=20
    )
    national = _p(lat_national)
    small_p = _p(lat_small)
    mix_national = Counter(engine.decide(r).code for r in requests[:20_000])
    mix_small = Counter(small_engine.decide(r).code for r in small_requests[:20_000])

    log("loading the same grants into regorus")
    document = json.dumps(rego_data(index.grants(), permissions, scenarios))
    rego = new_regorus()
    rss1 = settled_rss_mb()
    t0 = time.perf_counter()
    rego.add_data_json(document)
    rego_load_s = time.perf_counter() - t0
    rego_mb = settled_rss_mb() - rss1

    subset = requests[:n_rego]
    inputs = [rego_input(r) for r in subset]

    def rego_decide(text: str) -> Any:
        rego.set_input_json(text)
        return rego.eval_rule(REGO_RULE)

    log(f"timing {n_rego:,} decisions in both engines")
    for text in inputs[:200]:
        rego_decide(text)
    lat_ours_subset, lat_rego = interleaved_latencies_us(
        [(engine.decide, subset), (rego_decide, inputs)], rounds=10
    )
    agree = sum(
        summary(engine.decide(r)) == rego_summary(rego_decide(t)) for r, t in zip(subset, inputs, strict=True)
    )
    ours_subset = _p(lat_ours_subset)
    rego_p = _p(lat_rego)

    log("reloading the grant index under load")
    with tempfile.TemporaryDirectory(prefix="gr-bench-policy-") as tmp:
        reload = reload_under_load(world, engine, requests[:5000], Path(tmp))
    rego.clear_data()
    t0 = time.perf_counter()
    rego.add_data_json(document)
    rego_reload_s = time.perf_counter() - t0

    mix = ", ".join(f"{k} {v / 200:.0f}%" for k, v in mix_national.most_common(4))
    figures = [
        Figure(
            name=f"policy decision p99, {'regional' if quick else 'national'} world",
            ours=national["p99_us"],
            peer=None,
            unit="µs",
            peer_name="",
            goal="≤ 30 µs",
            met=national["p99_us"] <= 30,
            higher_is_better=False,
            conditions=(
                f"PolicyEngine.decide in-process, one thread, {n_requests:,} requests by uniformly "
                "drawn users; "
                f"{scale}; p50 {national['p50_us']} µs; mix: {mix}"
            ),
            area="policy",
            extra={"national": national, "mix": dict(mix_national), "index_build_s": round(build_s, 2)},
        ),
        Figure(
            name="policy decision p99 growth, 1k-user world → "
            + ("regional" if quick else "8M-user")
            + " world",
            ours=national["p99_us"],
            peer=small_p["p99_us"],
            unit="µs",
            peer_name=f"1k-user world ({SMALL.organisations} orgs, {SMALL.grants} grants)",
            goal="≤ 1.5× the 1k-user world",
            met=national["p99_us"] <= 1.5 * small_p["p99_us"],
            higher_is_better=False,
            conditions=(
                f"{n_requests:,} decisions per world, timed in 20 alternating slices; allowed share "
                f"{mix_national['allowed'] / 200:.0f}% vs {mix_small['allowed'] / 200:.0f}%; "
                f"p50 {national['p50_us']} vs {small_p['p50_us']} µs"
            ),
            area="policy",
            extra={"national": national, "small": small_p, "mix_small": dict(mix_small)},
        ),
        Figure(
            name="policy decision p99 vs the same policy in Rego",
            ours=ours_subset["p99_us"],
            peer=rego_p["p99_us"],
            unit="µs",
            peer_name="regorus 0.2.5 (hobofan-regorus) on bench/policy.rego",
            goal="≤ 3× regorus",
            met=ours_subset["p99_us"] <= 3 * rego_p["p99_us"] and agree == n_rego,
            higher_is_better=False,
            conditions=(
                f"same {n_rego:,} requests, same {world.total_grants:,} grants, 10 alternating slices; "
                f"decisions agree on {agree:,}/{n_rego:,}; p50 {ours_subset['p50_us']} vs "
                f"{rego_p['p50_us']} µs; regorus per call = set_input_json + eval_rule"
            ),
            area="policy",
            extra={"ours": ours_subset, "regorus": rego_p, "agree": agree, "compared": n_rego},
        ),
        Figure(
            name="policy state resident memory",
            ours=round(state_mb, 1),
            peer=round(rego_mb, 1),
            unit="MB",
            peer_name="regorus holding the same grants as data",
            goal="≤ 500 MB",
            met=state_mb <= 500,
            higher_is_better=False,
            conditions=(
                f"RSS growth while building the GrantIndex of {len(index):,} grants (users and "
                f"organisations are not policy state: they arrive with each request); regorus: RSS "
                f"growth during add_data_json ({rego_load_s:.1f} s)"
            ),
            area="policy",
            extra={"rego_load_s": round(rego_load_s, 2)},
        ),
        Figure(
            name="policy reload, full rebuild of the grant index from the database, under load",
            ours=round(reload["reload_s"], 2),
            peer=round(rego_reload_s, 2),
            unit="s",
            peer_name="regorus replacing its data document (same grants, JSON ready)",
            goal="≤ 5 s, no request dropped",
            met=reload["reload_s"] <= 5 and reload["wrong"] == 0 and reload["served_during"] > 0,
            higher_is_better=False,
            conditions=(
                f"refresh_grants on an index not read from the database (as at start): "
                f"{world.total_grants:,} rows read from SQLite and indexed while another thread "
                f"decides: {reload['served_during']:,.0f} decisions served during the rebuild, "
                f"{reload['wrong']:.0f} wrong or failed over the whole run, longest pause "
                f"{reload['max_gap_ms']:.0f} ms; {reload['reload_alone_s']:.2f} s with no concurrent load"
            ),
            area="policy",
            extra=reload,
        ),
        Figure(
            name="policy reload after one revocation (incremental), under load",
            ours=round(reload["incremental_s"] * 1000, 1),
            peer=round(reload["reload_s"] * 1000, 1),
            unit="ms",
            peer_name="full rebuild in the same run",
            goal="≤ 5 s, no request dropped",
            met=reload["incremental_s"] <= 5 and reload["wrong"] == 0,
            higher_is_better=False,
            conditions=(
                f"one grant revoked through GrantRepository in another session, then refresh_grants: "
                f"only rows with updated_at within the overlap window are read and applied to a "
                f"copy-on-write index of {world.total_grants:,} grants while another thread decides "
                f"({reload['served_during_incremental']:,.0f} decisions served meanwhile, none wrong)"
            ),
            area="policy",
            extra={"incremental_s": reload["incremental_s"]},
        ),
    ]
    return figures


if __name__ == "__main__":
    import sys

    for fig in run("--quick" in sys.argv):
        print(fig.to_dict())
