"""The benchmarks' generated inputs are what they claim to be (no timings are asserted here).

A benchmark is only as honest as its inputs: the synthetic country has the stated shape, the Rego
policy decides exactly like the engine, the fast audit rows are the bytes the audit library writes,
and the free-text corpus labels what it contains.
"""

from __future__ import annotations

import importlib.util
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bench._audit_rows import bulk_load, check_rows, resident_refs
from bench._corpus import corpus
from bench._world_national import NATIONAL, SMALL, T0, Shape, World, grant_rows
from policies import (
    GrantIndex,
    GrantRepository,
    PolicyEngine,
    ScenarioGrant,
    divisions,
    load_permissions,
    load_scenarios,
)
from policies.tables import GrantRow
from policies.tables import metadata as policy_metadata


@pytest.mark.parametrize(
    ("shape", "organisations"), [(SMALL, 115), (NATIONAL, 614_173)], ids=["small", "national"]
)
def test_world_has_the_stated_number_of_organisations(shape: Shape, organisations: int) -> None:
    assert shape.organisations == organisations


def test_small_world_organisations_are_distinct_valid_codes_on_six_levels() -> None:
    codes = list(World(SMALL).organisations())
    assert len(codes) == len(set(codes)) == SMALL.organisations
    assert {int(divisions.level_of(c)) for c in codes} == {0, 1, 2, 3, 4, 5}


def test_national_world_is_a_pure_function_of_indices() -> None:
    a, b = World(NATIONAL), World(NATIONAL)
    for i in (0, 1, 7_999_999, 4_321_987):
        assert a.user(i) == b.user(i)
        assert divisions.is_valid(a.user(i).org)
    last_village = a.village(NATIONAL.n_villages - 1)
    assert divisions.level_of(last_village) == divisions.DivisionLevel.VILLAGE
    assert a.grant(99_999).to_dict() == b.grant(99_999).to_dict()


def test_grant_rows_read_back_as_the_worlds_grants_moved_in_time(tmp_path: Path) -> None:
    """What the national-scale worker reads at start is the world's grants, each instant moved by the
    shift: read at T0 + shift, the index holds every grant (lapsed and revoked ones too) unchanged
    otherwise."""
    world = World(SMALL)
    shift = timedelta(days=555, seconds=7)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'grants.db'}")
    policy_metadata.create_all(engine)
    with engine.begin() as conn:
        for rows in grant_rows(world, shift, batch=7):
            conn.execute(sa.insert(GrantRow), rows)
    with Session(engine) as session:
        index = GrantIndex.from_repository(GrantRepository(session), T0 + shift)
    engine.dispose()

    def key(g: ScenarioGrant, moved: timedelta) -> tuple[object, ...]:
        assert g.valid_from is not None and g.valid_until is not None
        datasets = {k: tuple(v) for k, v in g.datasets.items()}
        return (
            g.grant_id,
            g.scenario,
            g.org_scope,
            datasets,
            g.valid_from + moved,
            g.valid_until + moved,
            g.status,
        )

    loaded = sorted(key(g, timedelta(0)) for g in index.grants())
    assert loaded == sorted(key(g, shift) for g in world.grants())
    assert len(loaded) == world.total_grants


@pytest.mark.skipif(
    importlib.util.find_spec("hobofan_regorus") is None, reason="hobofan-regorus not installed"
)
def test_rego_policy_decides_like_the_engine_on_the_small_world() -> None:
    from bench.bench_policy import new_regorus, rego_data, rego_input, rego_summary, summary

    world = World(SMALL)
    permissions, scenarios = load_permissions(), load_scenarios()
    index = GrantIndex(world.grants())
    engine = PolicyEngine(permissions, scenarios, index)
    import json

    rego = new_regorus()
    rego.add_data_json(json.dumps(rego_data(index.grants(), permissions, scenarios)))
    requests = world.requests(400, seed=3)
    codes = set()
    for request in requests:
        rego.set_input_json(rego_input(request))
        ours = summary(engine.decide(request))
        codes.add(ours[0])
        assert rego_summary(rego.eval_rule("data.grassroots.policy.decision")) == ours
    assert {"allowed", "no_active_grant", "outside_hours", "quota_exceeded", "grid_scope_unassigned"} <= codes
    assert any(len(r.subject.grids) > 1 for r in requests)


def test_fast_audit_rows_are_the_bytes_the_audit_library_writes() -> None:
    check_rows(resident_refs(50), n=300)


def test_bulk_loaded_log_verifies(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from audit import AuditLog, access_seqs_for_person, verify_log

    pool = resident_refs(20)
    bulk_load(tmp_path / "a.db", 500, pool, chunk=200)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    report = verify_log(engine)
    assert report.ok, report.describe()
    assert report.checked == 500
    assert AuditLog(engine).seqs_for_subjects([pool[0]])
    # Refused reads asked for residents' records: a complaint finds more than the reads that served them.
    assert any(
        len(access_seqs_for_person(engine, [r])) > len(AuditLog(engine).seqs_for_subjects([r])) for r in pool
    )
    engine.dispose()


def test_corpus_labels_occur_in_their_text() -> None:
    docs = corpus(300, seed=1)
    assert sum(1 for _, labels in docs if not labels) > 100  # about half carry no personal data
    for text, labels in docs:
        for _, surface in labels:
            assert surface in text


@pytest.mark.parametrize("peer_first", [False, True], ids=["ours-first", "peer-first"])
def test_audit_append_pair_times_each_side_without_the_other_sides_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, peer_first: bool
) -> None:
    """The side timed second starts with the first side's database gone (and the disk flushed), so its
    fsyncs never share the disk with what the first side left behind."""
    from bench import bench_audit

    events = bench_audit.make_events(60, resident_refs(20))
    found: dict[str, list[str]] = {}

    def recording(name: str, real: Any) -> Any:
        def run(path: Path, *args: Any) -> Any:
            found[name] = sorted(p.name for p in tmp_path.iterdir())
            return real(path, *args)

        return run

    monkeypatch.setattr(bench_audit, "_ours_sqlite", recording("ours", bench_audit._ours_sqlite))
    monkeypatch.setattr(bench_audit, "_raw_sqlite", recording("peer", bench_audit._raw_sqlite))
    previous = bench_audit._sqlite_round(tmp_path, "0", events, None)[2] if peer_first else None
    rate, raw, written = bench_audit._sqlite_round(tmp_path, "1", events, previous)
    assert rate > 0 and raw > 0 and len(written[0]) == len(events)
    assert found == {"ours": [], "peer": []}
    assert list(tmp_path.iterdir()) == []
