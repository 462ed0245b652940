"""Refreshing the grant index: reading grants for the index decodes them exactly as the repository
does; an incremental refresh (only the grants changed since) gives the same index as a full rebuild;
and a change stamped long before the newest one seen is still picked up by the periodic full rebuild."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from types import MappingProxyType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from policies import GrantIndex, GrantRepository, GrantStatus, ScenarioGrant, metadata
from policies.grants import CHANGE_OVERLAP, FULL_REBUILD_AFTER, _assemble

from .conftest import (
    COUNTY,
    DIBAO_FIELDS,
    ELDERLY_FIELDS,
    T0,
    TOWNSHIP_A,
    TOWNSHIP_B,
    VILLAGE_A1,
    VILLAGE_A2,
    VILLAGE_B1,
    make_grant,
)

SCOPES = (COUNTY, TOWNSHIP_A, TOWNSHIP_B, VILLAGE_A1, VILLAGE_A2, VILLAGE_B1, "310151")
CALLERS = (COUNTY, TOWNSHIP_A, TOWNSHIP_B, VILLAGE_A1, VILLAGE_A2, VILLAGE_B1)
SCENARIOS = {"ELDERLY_VISIT": ELDERLY_FIELDS, "DIBAO_REVIEW": DIBAO_FIELDS}


def _new_session() -> Session:
    return Session(create_engine("sqlite+pysqlite:///:memory:"))


@pytest.fixture
def repo() -> Iterator[GrantRepository]:
    with _new_session() as session:
        metadata.create_all(session.get_bind())
        yield GrantRepository(session)


def _snapshot(index: GrantIndex) -> dict[tuple[str, str], list[ScenarioGrant]]:
    return {(org, sc): index.lookup(org, sc) for org in CALLERS for sc in SCENARIOS}


def _store(repo: GrantRepository, *grants: ScenarioGrant) -> None:
    for grant in grants:
        if repo.get(grant.grant_id) is None:
            repo.add(grant)
        else:
            repo.save(grant)
    repo.bump_policy_version(T0)


# -- decoding ------------------------------------------------------------------------------------

DECODED: list[tuple[str, ScenarioGrant]] = [
    ("plain approved", make_grant("g-plain", "ELDERLY_VISIT", VILLAGE_A1, ELDERLY_FIELDS)),
    (
        "short scope, microseconds, every optional field",
        replace(
            make_grant("g-full", "DIBAO_REVIEW", "310151", DIBAO_FIELDS),
            valid_from=T0 - timedelta(days=2, microseconds=7),
            valid_until=T0 + timedelta(days=3, microseconds=999_999),
            second_approver="u-steward-2",
            reason="年度复核",
            renewed_from="g-old",
            created_at=T0 - timedelta(days=9),
            updated_at=T0 - timedelta(days=2),
        ),
    ),
    (
        "revoked",
        make_grant("g-revoked", "ELDERLY_VISIT", TOWNSHIP_A, ELDERLY_FIELDS, status=GrantStatus.REVOKED),
    ),
    (
        "break-glass, two datasets",
        replace(
            make_grant("g-bg", "ELDERLY_VISIT", VILLAGE_A2, ELDERLY_FIELDS),
            datasets=MappingProxyType({"residents": ("id", "name"), "houses": ("address",)}),
            break_glass=True,
        ),
    ),
]


@pytest.mark.parametrize(("case", "grant"), DECODED, ids=[c for c, _ in DECODED])
def test_grants_read_for_the_index_equal_the_repositorys_own(
    repo: GrantRepository, case: str, grant: ScenarioGrant
) -> None:
    _store(repo, grant)
    [read] = repo.for_index(T0)
    assert read == repo.get(grant.grant_id)
    assert read.valid_until is not None and read.valid_until.utcoffset() == timedelta(0)
    assert [g.grant_id for g in repo.changed_since(T0 - timedelta(days=30))] == [grant.grant_id]


def test_equal_field_lists_and_timestamps_are_shared_not_copied(repo: GrantRepository) -> None:
    _store(repo, *(make_grant(f"g{i}", "ELDERLY_VISIT", VILLAGE_A1, ELDERLY_FIELDS) for i in range(3)))
    grants = repo.for_index(T0)
    assert len(grants) == 3
    assert len({id(g.datasets) for g in grants}) == 1
    assert len({id(g.valid_until) for g in grants}) == 1


# -- incremental refresh -------------------------------------------------------------------------

TRANSITIONS: list[tuple[str, GrantStatus, int, bool]] = [
    # (case, new status, valid_until in days from T0, still listed by the index)
    ("revoked", GrantStatus.REVOKED, 30, True),
    ("expired by the sweep", GrantStatus.EXPIRED, -1, True),
    ("renewed: the successor takes over", GrantStatus.RENEWED, 30, False),
    ("ended long ago", GrantStatus.EXPIRED, -40, False),
]


@pytest.mark.parametrize(
    ("case", "status", "until_days", "listed"), TRANSITIONS, ids=[t[0] for t in TRANSITIONS]
)
def test_a_refresh_applies_one_change_without_a_rebuild(
    repo: GrantRepository, case: str, status: GrantStatus, until_days: int, listed: bool
) -> None:
    keep = make_grant("g-keep", "ELDERLY_VISIT", TOWNSHIP_A, ELDERLY_FIELDS)
    change = make_grant("g-change", "ELDERLY_VISIT", VILLAGE_A1, ELDERLY_FIELDS)
    _store(repo, keep, change)
    index = GrantIndex.from_repository(repo, T0)
    assert index.refreshed(repo, T0) is index  # nothing moved: the same index, no read
    later = T0 + timedelta(minutes=1)
    changed = replace(change, status=status, valid_until=T0 + timedelta(days=until_days), updated_at=later)
    _store(repo, changed)
    fresh = index.refreshed(repo, later)
    assert fresh is not index and fresh.version == repo.policy_version()
    assert fresh.lookup(VILLAGE_A1, "ELDERLY_VISIT") == ([changed] if listed else []) + [keep]
    assert len(fresh) == 1 + listed
    # The old index is untouched: decisions in flight keep seeing it whole.
    assert index.lookup(VILLAGE_A1, "ELDERLY_VISIT") == [change, keep]
    assert _snapshot(fresh) == _snapshot(GrantIndex.from_repository(repo, later))


def test_a_change_stamped_before_the_overlap_is_picked_up_by_the_periodic_full_rebuild(
    repo: GrantRepository,
) -> None:
    grant = replace(make_grant("g1", "ELDERLY_VISIT", VILLAGE_A1, ELDERLY_FIELDS), updated_at=T0)
    _store(repo, grant)
    index = GrantIndex.from_repository(repo, T0)
    # A writer whose clock lags the newest stamp seen by more than the overlap: the incremental
    # refresh cannot see it (the documented bound of CHANGE_OVERLAP) ...
    lagging = replace(grant, status=GrantStatus.REVOKED, updated_at=T0 - 2 * CHANGE_OVERLAP)
    _store(repo, lagging)
    assert index.refreshed(repo, T0).lookup(VILLAGE_A1, "ELDERLY_VISIT") == [grant]
    # ... and the first refresh once the last full build is FULL_REBUILD_AFTER old reads everything.
    _store(repo, lagging)
    rebuilt = index.refreshed(repo, T0 + FULL_REBUILD_AFTER)
    assert rebuilt.lookup(VILLAGE_A1, "ELDERLY_VISIT") == [lagging]


def test_an_index_not_read_from_the_repository_is_rebuilt_whole(repo: GrantRepository) -> None:
    grant = make_grant("g1", "ELDERLY_VISIT", VILLAGE_A1, ELDERLY_FIELDS)
    _store(repo, grant)
    assert GrantIndex().refreshed(repo, T0).lookup(VILLAGE_A1, "ELDERLY_VISIT") == [grant]


_statuses = st.sampled_from(list(GrantStatus))
_grant_specs = st.tuples(
    st.integers(0, 7),  # grant number: changes hit existing grants and add new ones
    st.sampled_from(SCOPES),
    st.sampled_from(sorted(SCENARIOS)),
    _statuses,
    st.integers(-40, 40),  # valid_until, days from T0
    st.booleans(),  # narrowed field list
)


def _grant(spec: tuple[int, str, str, GrantStatus, int, bool], stamp: timedelta) -> ScenarioGrant:
    number, scope, scenario, status, until_days, narrow = spec
    fields = SCENARIOS[scenario][:3] if narrow else SCENARIOS[scenario]
    grant = make_grant(
        f"g{number}",
        scenario,
        scope,
        fields,
        status=status,
        valid_from=T0 - timedelta(days=50),
        valid_until=T0 + timedelta(days=until_days),
    )
    return replace(grant, updated_at=T0 + stamp)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=st.lists(_grant_specs, max_size=8),
    rounds=st.lists(st.lists(_grant_specs, min_size=1, max_size=4), min_size=1, max_size=3),
)
def test_incremental_refresh_equals_a_full_rebuild(
    before: list[tuple[int, str, str, GrantStatus, int, bool]],
    rounds: list[list[tuple[int, str, str, GrantStatus, int, bool]]],
) -> None:
    """The law behind incremental refresh: after any sequence of changes (each stamped no earlier than
    the overlap allows), every lookup answers exactly as an index rebuilt from scratch."""
    with _new_session() as session:
        metadata.create_all(session.get_bind())
        repo = GrantRepository(session)
        initial = {g.grant_id: g for g in (_grant(s, timedelta(minutes=-i)) for i, s in enumerate(before))}
        _store(repo, *initial.values())
        index = GrantIndex.from_repository(repo, T0)
        for minute, changes in enumerate(rounds, start=1):
            stamp = timedelta(minutes=minute) - CHANGE_OVERLAP / 2
            latest = {g.grant_id: g for g in (_grant(s, stamp) for s in changes)}
            _store(repo, *latest.values())
            now = T0 + timedelta(minutes=minute)
            index = index.refreshed(repo, now)
            full = GrantIndex.from_repository(repo, now)
            assert _snapshot(index) == _snapshot(full)
            assert len(index) == len(full) and index.version == full.version


@pytest.mark.parametrize(("case", "grant"), DECODED, ids=[c for c, _ in DECODED])
def test_the_fast_constructor_builds_the_same_grant(case: str, grant: ScenarioGrant) -> None:
    values = [getattr(grant, f.name) for f in dataclasses.fields(ScenarioGrant)]
    built = _assemble(*values)
    assert built == grant and type(built) is ScenarioGrant
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.status = GrantStatus.REVOKED  # type: ignore[misc]
