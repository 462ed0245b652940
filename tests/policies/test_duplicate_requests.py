"""A request identical to one still waiting for a steward is refused, naming the one that waits, and
nothing is filed: the stewards saw two identical requests to approve, while a cadre refused a read was
told "无需重复申请" about the first. What counts as identical, which states count as waiting, renewals,
and two identical requests at the same moment (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session

from policies import (
    GrantRepository,
    GrantService,
    GrantStatus,
    PermissionModel,
    ScenarioCatalog,
    Subject,
    metadata,
)
from policies.errors import RequestAlreadyWaitingError
from policies.grants import request_key

from .conftest import (
    CADRE_A1,
    CADRE_A2,
    CJK,
    STEWARD,
    STEWARD_2,
    T0,
    TOWNSHIP_A,
    TOWNSHIP_OFFICER_A,
    VILLAGE_A1,
    VILLAGE_A2,
)

FIELDS = ["id", "name", "address"]


@pytest.fixture
def service(session: Session, scenarios: ScenarioCatalog, permissions: PermissionModel) -> GrantService:
    return GrantService(GrantRepository(session), scenarios, permissions)


def _ask(
    service: GrantService,
    who: Subject = CADRE_A1,
    scope: str = VILLAGE_A1,
    datasets: Mapping[str, Sequence[str]] | None = None,
    *,
    scenario: str = "ELDERLY_VISIT",
    reason: str = "季度走访",
) -> str:
    asked = {"residents": FIELDS} if datasets is None else datasets
    grant, _ = service.request(who, scenario, scope, asked, reason, T0)
    return grant.grant_id


# (case, who, scenario, organisation, datasets, reason, refused): each against one waiting request of
# CADRE_A1's: ELDERLY_VISIT for VILLAGE_A1, residents id, name, address, "季度走访".
CASES: list[tuple[str, Subject, str, str, dict[str, list[str]], str, bool]] = [
    ("the same again", CADRE_A1, "ELDERLY_VISIT", VILLAGE_A1, {"residents": FIELDS}, "季度走访", True),
    (
        "fields in another order, one twice",
        CADRE_A1,
        "ELDERLY_VISIT",
        VILLAGE_A1,
        {"residents": ["address", "id", "name", "id"]},
        "季度走访",
        True,
    ),
    ("another reason", CADRE_A1, "ELDERLY_VISIT", VILLAGE_A1, {"residents": FIELDS}, "重阳节走访", True),
    (
        "her township, for her village",
        TOWNSHIP_OFFICER_A,
        "ELDERLY_VISIT",
        VILLAGE_A1,
        {"residents": FIELDS},
        "季度走访",
        True,
    ),
    ("fewer fields", CADRE_A1, "ELDERLY_VISIT", VILLAGE_A1, {"residents": ["id", "name"]}, "季度走访", False),
    (
        "more fields",
        CADRE_A1,
        "ELDERLY_VISIT",
        VILLAGE_A1,
        {"residents": [*FIELDS, "mobile"]},
        "季度走访",
        False,
    ),
    ("another village", CADRE_A2, "ELDERLY_VISIT", VILLAGE_A2, {"residents": FIELDS}, "季度走访", False),
    (
        "the whole township",
        TOWNSHIP_OFFICER_A,
        "ELDERLY_VISIT",
        TOWNSHIP_A,
        {"residents": FIELDS},
        "季度走访",
        False,
    ),
    (
        "another scenario (purpose)",
        TOWNSHIP_OFFICER_A,
        "DIBAO_REVIEW",
        VILLAGE_A1,
        {"residents": FIELDS},
        "季度走访",
        False,
    ),
]


@pytest.mark.parametrize(
    ("case", "who", "scenario", "org", "datasets", "reason", "refused"), CASES, ids=[c[0] for c in CASES]
)
def test_a_request_identical_to_one_waiting_is_refused_and_any_other_filed(
    service: GrantService,
    case: str,
    who: Subject,
    scenario: str,
    org: str,
    datasets: dict[str, list[str]],
    reason: str,
    refused: bool,
) -> None:
    waiting = _ask(service)
    before = service.repository.list_grants()
    if not refused:
        filed = _ask(service, who, org, datasets, scenario=scenario, reason=reason)
        assert filed != waiting
        assert len(service.repository.list_grants()) == len(before) + 1
        return
    with pytest.raises(RequestAlreadyWaitingError) as info:
        _ask(service, who, org, datasets, scenario=scenario, reason=reason)
    assert service.repository.list_grants() == before  # nothing filed
    error = info.value
    assert error.code == "request_already_waiting" and error.pending_grant == waiting
    zh, en = error.message_zh, error.message_en
    assert zh.startswith(f"相同的授权申请 {waiting} 已提出") and CJK.search(zh)
    assert "由数据所属部门的数据管理员办理" in zh and "无需重复申请，本次未提出申请" in zh
    assert f"请联系数据管理员驳回 {waiting} 后重新申请" in zh and "不能自行撤回" in zh
    assert en.isascii() and not CJK.search(en)
    assert f"An identical request {waiting}" in en and "waiting for the data steward" in en
    assert "nothing was requested" in en and f"ask the data steward to reject {waiting}" in en


def test_a_request_waits_until_a_steward_decides_it(service: GrantService) -> None:
    """Waiting: ``requested``, and ``awaiting_second_approval`` (the refusal then says the second steward
    decides). Decided (approved, rejected; revoked and expired come after approved): a new request is
    filed, as a cadre asks again after a rejection or for her grant's successor."""
    sensitive = {"residents": ["id", "name", "id_number"]}  # id_number: a second steward approves too
    first = _ask(service, TOWNSHIP_OFFICER_A, TOWNSHIP_A, sensitive, scenario="DIBAO_REVIEW")
    service.approve(first, STEWARD, T0)
    with pytest.raises(RequestAlreadyWaitingError) as info:
        _ask(service, TOWNSHIP_OFFICER_A, TOWNSHIP_A, sensitive, scenario="DIBAO_REVIEW")
    assert info.value.pending_grant == first
    assert "正在等待第二位数据管理员审批" in info.value.message_zh
    assert "waiting for a second data steward" in info.value.message_en
    service.reject(first, STEWARD_2, "范围过大", T0)
    second = _ask(service, TOWNSHIP_OFFICER_A, TOWNSHIP_A, sensitive, scenario="DIBAO_REVIEW")

    service.approve(second, STEWARD, T0)
    service.approve(second, STEWARD_2, T0)
    third = _ask(service, TOWNSHIP_OFFICER_A, TOWNSHIP_A, sensitive, scenario="DIBAO_REVIEW")
    assert len({first, second, third}) == 3
    statuses = {g.grant_id: g.status for g in service.repository.list_grants()}
    assert statuses == {
        first: GrantStatus.REJECTED,
        second: GrantStatus.APPROVED,
        third: GrantStatus.REQUESTED,
    }


def test_renewals_are_not_refused_as_duplicates(service: GrantService) -> None:
    """A steward renews a grant (``renew``), never through a request: neither the grant it renews (approved
    or expired, never waiting) nor a new request of the same organisation waiting beside it stops the
    renewal. A request identical to a renewal still waiting for its second steward is refused, as a read
    refused meanwhile is told of that renewal."""
    sensitive = {"residents": ["id", "name", "id_number"]}
    grant = _ask(service, TOWNSHIP_OFFICER_A, TOWNSHIP_A, sensitive, scenario="DIBAO_REVIEW")
    service.approve(grant, STEWARD, T0)
    service.approve(grant, STEWARD_2, T0)
    # Her township asks again while its grant is in force: a new request, filed.
    asked_again = _ask(service, TOWNSHIP_OFFICER_A, TOWNSHIP_A, sensitive, scenario="DIBAO_REVIEW")
    (successor,), _ = service.renew([grant], STEWARD, T0, defer_second_approval=True)
    assert successor.status is GrantStatus.AWAITING_SECOND_APPROVAL
    service.reject(asked_again, STEWARD, "原授权已续期", T0)
    with pytest.raises(RequestAlreadyWaitingError) as info:
        _ask(service, TOWNSHIP_OFFICER_A, TOWNSHIP_A, sensitive, scenario="DIBAO_REVIEW")
    assert info.value.pending_grant == successor.grant_id
    renewed, _ = service.approve(successor.grant_id, STEWARD_2, T0)
    assert renewed.status is GrantStatus.APPROVED
    assert service.repository.get(grant).status is GrantStatus.RENEWED  # type: ignore[union-attr]
    # Renewed at once (both stewards) while an identical request waits: renewed all the same.
    waiting = _ask(service, TOWNSHIP_OFFICER_A, TOWNSHIP_A, sensitive, scenario="DIBAO_REVIEW")
    (again,), _ = service.renew([renewed.grant_id], STEWARD, T0, second=STEWARD_2)
    assert again.status is GrantStatus.APPROVED
    assert service.repository.get(waiting).status is GrantStatus.REQUESTED  # type: ignore[union-attr]


def test_the_key_is_what_is_asked_for_whoever_asks_and_why(service: GrantService) -> None:
    one = service.repository.get(_ask(service, datasets={"residents": ["name", "id", "address"]}))
    other = service.repository.get(_ask(service, TOWNSHIP_OFFICER_A, VILLAGE_A1, {"residents": ["id"]}))
    assert one is not None and other is not None
    assert request_key(one) == request_key(
        replace(
            one,
            requested_by="someone",
            reason="另一个理由",
            datasets={"residents": ("id", "address", "name")},
        )
    )
    assert request_key(one) != request_key(other)
    assert request_key(one) != request_key(replace(one, org_scope=VILLAGE_A2))
    assert request_key(one) != request_key(replace(one, scenario="DIBAO_REVIEW"))


# -- two identical requests at the same moment ------------------------------------------------------------


def _wal(dbapi_connection: Any, _record: Any) -> None:
    # As the gateway opens SQLite (gateway.db): readers never wait for the writer.
    dbapi_connection.execute("PRAGMA journal_mode=WAL")


@pytest.fixture(params=["sqlite", "postgres"])
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A database two sessions reach at once: a SQLite file, or a throwaway PostgreSQL database."""
    if request.param == "sqlite":
        db = create_engine(f"sqlite:///{tmp_path / 'grants.db'}", connect_args={"timeout": 30})
        event.listen(db, "connect", _wal)
    else:
        db = create_engine(request.getfixturevalue("postgres_url"))
    metadata.create_all(db)
    yield db
    db.dispose()


def test_two_identical_requests_at_once_file_one(
    shared_db: Engine, scenarios: ScenarioCatalog, permissions: PermissionModel
) -> None:
    """The second request is checked before the first commits, so the check alone finds nothing: its insert
    waits for the first transaction (PostgreSQL: on the unique index; SQLite: on the write lock), then
    files nothing and is refused naming the first."""
    outcome: dict[str, Any] = {}

    def second() -> None:
        with Session(shared_db) as s:
            try:
                _ask(GrantService(GrantRepository(s), scenarios, permissions), TOWNSHIP_OFFICER_A)
                s.commit()
                outcome["filed"] = True
            except RequestAlreadyWaitingError as refused:
                outcome["refused"] = refused

    with Session(shared_db) as s:
        first = _ask(GrantService(GrantRepository(s), scenarios, permissions))
        racer = threading.Thread(target=second)
        racer.start()
        racer.join(1.0)
        waited = racer.is_alive()
        s.commit()
    racer.join(60)
    assert not racer.is_alive()
    assert waited, "the second insert did not wait for the first transaction"
    assert "filed" not in outcome
    assert outcome["refused"].pending_grant == first
    with Session(shared_db) as s:
        assert [g.grant_id for g in GrantRepository(s).list_grants()] == [first]
