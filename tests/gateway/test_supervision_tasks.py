"""The periodic jobs. The checkpoint tick signs only when the log grew past the latest checkpoint, and
reads the latest checkpoint and the log size once per tick (the writer then reuses them). The archive
round archives each closed month once, recorded like `grassroots audit archive`, and only one process
archives at a time."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.orm import Session

from audit import (
    ArchiveResult,
    AuditLog,
    CheckpointSigner,
    KeyChain,
    archive_month,
    configure_sqlite_durability,
    extend_checkpoint_if_grown,
    latest_checkpoint,
    list_archives,
    list_incidents,
    merkle_root,
    open_incident,
    record_archive,
    register_complaint,
    verify_archive,
    verify_log,
)
from audit import checkpoints as checkpoints_module
from audit.tables import audit_events
from gateway.supervision_tasks import (
    ARCHIVE_SETTLE,
    SupervisionSettings,
    archive_closed_months,
    archiving_lock,
    deadlines_of,
    escalate_overdue,
    escalation_round,
    months_to_archive,
)
from tests.audit.conftest import (  # noqa: F401 - fixtures
    Store,
    postgres_database,
    postgres_engine,
    postgres_store,
    sqlite,
    store,
)
from tests.audit.helpers import PSEUDONYMIZER, make_event


class _Reads:
    """How often one tick listed the checkpoint directory and asked the log for its size."""

    def __init__(self, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.listings = 0
        self.sizes = 0
        real = checkpoints_module._checkpoint_files

        def listing(directory: Path) -> Any:
            self.listings += 1
            return real(directory)

        def statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
            if "max(audit_events.seq)" in sql:
                self.sizes += 1

        monkeypatch.setattr(checkpoints_module, "_checkpoint_files", listing)
        sa.event.listen(engine, "before_cursor_execute", statement)

    def take(self) -> tuple[int, int]:
        taken = (self.listings, self.sizes)
        self.listings = self.sizes = 0
        return taken


def test_a_tick_signs_only_when_the_log_grew_reading_each_input_once(
    store: Store,  # noqa: F811 - the audit store fixture (SQLite, and PostgreSQL when configured)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    directory = tmp_path / "checkpoints"
    signer = CheckpointSigner.generate()
    log = AuditLog(store.engine)
    reads = _Reads(store.engine, monkeypatch)

    log.append_many([make_event(i) for i in range(5)])
    reads.take()
    written = extend_checkpoint_if_grown(store.engine, signer, directory, None)
    assert written is not None and written[0].tree_size == 5
    assert reads.take() == (2, 1)  # listed again under the chain lock, before storing

    # Nothing appended since: no new checkpoint, and no walk.
    assert extend_checkpoint_if_grown(store.engine, signer, directory, written[1]) is None
    assert reads.take() == (1, 1)
    assert len(list(directory.glob("checkpoint-*.json"))) == 1

    log.append_many([make_event(i) for i in range(5, 8)])
    reads.take()
    grown = extend_checkpoint_if_grown(store.engine, signer, directory, written[1])
    assert grown is not None and grown[0].tree_size == 8
    assert reads.take() == (2, 1)
    latest = latest_checkpoint(directory, signer.public_key)
    assert latest is not None and latest.tree_size == 8
    assert latest.root_hash == merkle_root([log.read(seq)[2] for seq in range(1, 9)])
    assert len(list(directory.glob("checkpoint-*.json"))) == 2


# Beijing-time months: 2026-10 ends at 2026-10-31T16:00Z.
OCTOBER = datetime(2026, 10, 15, 4, 0, tzinfo=UTC)
NOVEMBER = datetime(2026, 11, 3, 4, 0, tzinfo=UTC)
OCTOBER_ENDS = datetime(2026, 10, 31, 16, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def _log_october_and_november(target: Store) -> None:
    log = AuditLog(target.engine)
    log.append_many([make_event(i, occurred_at=OCTOBER + timedelta(minutes=i)) for i in range(6)])
    log.append_many([make_event(i, occurred_at=NOVEMBER + timedelta(minutes=i)) for i in range(6, 9)])


def _archive_records(target: Store) -> list[tuple[str, datetime, dict[str, Any]]]:
    c = audit_events.c
    with target.engine.connect() as conn:
        rows = conn.execute(
            sa.select(c.actor, c.occurred_at, c.body)
            .where(c.kind == "supervision.month_archived")
            .order_by(c.seq)
        ).all()
    return [(r.actor, r.occurred_at, json.loads(r.body)["details"]) for r in rows]


def test_a_round_archives_the_previous_month_once_recorded_like_the_cli_and_it_verifies(
    store: Store,  # noqa: F811 - the audit store fixture (SQLite, and PostgreSQL when configured)
    tmp_path: Path,
) -> None:
    _log_october_and_november(store)
    signer = CheckpointSigner.generate()
    directory = tmp_path / "archives"

    written = archive_closed_months(store.engine, signer, directory, NOW)
    assert written is not None
    assert [(r.month, r.first_seq, r.last_seq, r.complete) for r in written] == [("2026-10", 1, 6, True)]
    # The same index row and the same event as `grassroots audit archive`, by the gateway itself.
    with Session(store.engine) as session:
        archives = list_archives(session)
    assert [(a["archive_id"], a["complete"], a["created_by"]) for a in archives] == [
        ("audit-2026-10-1-6", True, "system")
    ]
    ((actor, _, details),) = _archive_records(store)
    assert actor == "system"
    assert details == {**written[0].to_json(), "scheduled": True}

    # A second round (and a later one): October is completely archived, November has not ended.
    assert archive_closed_months(store.engine, signer, directory, NOW) == []
    assert archive_closed_months(store.engine, signer, directory, NOW + timedelta(days=5)) == []
    assert len(_archive_records(store)) == 1
    assert sorted(p.name for p in directory.glob("audit-*")) == [
        "audit-2026-10-1-6.jsonl.gz",
        "audit-2026-10-1-6.manifest.json",
    ]

    verdict = verify_archive(written[0].manifest_file, KeyChain.pinned(signer.public_key), store.engine)
    assert verdict.ok and verdict.checked == 6, verdict

    # Once November has ended, the next round archives it, the first round's own record included.
    december = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    later = archive_closed_months(store.engine, signer, directory, december)
    assert later is not None and [(r.month, r.first_seq, r.last_seq) for r in later] == [("2026-11", 7, 10)]
    assert verify_archive(later[0].manifest_file, KeyChain.pinned(signer.public_key), store.engine).ok


def test_a_month_is_closed_once_it_has_ended_in_beijing_time_and_settled(
    sqlite: Store,  # noqa: F811 - the SQLite store fixture
) -> None:
    _log_october_and_november(sqlite)
    assert months_to_archive(sqlite.engine, OCTOBER_ENDS) == []  # Beijing midnight: just ended
    assert months_to_archive(sqlite.engine, OCTOBER_ENDS + ARCHIVE_SETTLE - timedelta(seconds=1)) == []
    assert months_to_archive(sqlite.engine, OCTOBER_ENDS + ARCHIVE_SETTLE) == ["2026-10"]
    assert months_to_archive(sqlite.engine, OCTOBER_ENDS, settle=timedelta(0)) == ["2026-10"]


def test_only_months_without_a_complete_archive_are_archived_and_empty_months_are_skipped(
    sqlite: Store,  # noqa: F811 - the SQLite store fixture
    tmp_path: Path,
) -> None:
    """August has events and was archived by hand after it ended: left alone. September has no events:
    nothing to archive, no error. October was archived by hand while it ran (partial): archived again."""
    log = AuditLog(sqlite.engine)
    august = datetime(2026, 8, 10, 4, 0, tzinfo=UTC)
    log.append_many([make_event(i, occurred_at=august + timedelta(minutes=i)) for i in range(3)])
    log.append_many([make_event(i, occurred_at=OCTOBER + timedelta(minutes=i)) for i in range(3, 6)])
    signer = CheckpointSigner.generate()
    directory = tmp_path / "archives"

    def by_hand(month: str, when: datetime) -> ArchiveResult:
        result = archive_month(sqlite.engine, signer, directory, month, now=when)
        with Session(sqlite.engine) as session:
            record_archive(session, result, "auditor", when)
            session.commit()
        return result

    assert by_hand("2026-08", datetime(2026, 9, 2, tzinfo=UTC)).complete
    assert not by_hand("2026-10", datetime(2026, 10, 20, tzinfo=UTC)).complete
    assert months_to_archive(sqlite.engine, NOW) == ["2026-10"]
    written = archive_closed_months(sqlite.engine, signer, directory, NOW)
    assert written is not None and [(r.month, r.complete) for r in written] == [("2026-10", True)]
    assert months_to_archive(sqlite.engine, NOW) == []


def test_while_another_process_archives_a_round_does_nothing(
    store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    _log_october_and_november(store)
    signer = CheckpointSigner.generate()
    directory = tmp_path / "archives"
    with archiving_lock(store.engine, directory, wait=False) as held:
        assert held
        assert archive_closed_months(store.engine, signer, directory, NOW) is None
    assert not list(directory.glob("audit-*"))
    written = archive_closed_months(store.engine, signer, directory, NOW)
    assert written is not None and [r.month for r in written] == ["2026-10"]


def test_rounds_started_together_archive_a_month_exactly_once(
    store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Several gateway processes tick at the same moment (one archive directory each, as on several
    hosts): the lock and the index re-read under it leave one archive and one record."""
    _log_october_and_november(store)
    signer = CheckpointSigner.generate()
    start = threading.Barrier(4)
    results: list[list[ArchiveResult] | None] = []

    def tick(n: int) -> None:
        start.wait()
        results.append(archive_closed_months(store.engine, signer, tmp_path / f"host-{n}", NOW))

    threads = [threading.Thread(target=tick, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(len(r or []) for r in results) == [0, 0, 0, 1]
    assert len(_archive_records(store)) == 1
    with Session(store.engine) as session:
        assert [a["archive_id"] for a in list_archives(session)] == ["audit-2026-10-1-6"]


# -- escalating overdue incidents (督办) ----------------------------------------------------------------


def _engine_of_another_process(store: Store) -> sa.Engine:  # noqa: F811
    """An engine of its own, as another gateway process has (its own pool and connections)."""
    if store.schema is not None:
        return postgres_engine(store.url, store.schema)
    engine = sa.create_engine(store.url, connect_args={"check_same_thread": False})
    configure_sqlite_durability(engine)
    return engine


def _overdue_cases(store: Store, n: int) -> list[str]:  # noqa: F811
    received = NOW - timedelta(days=40)  # both deadlines (15 and 30 days) long past
    ids = []
    with Session(store.engine) as session:
        for k in range(n):
            complaint, _ = register_complaint(
                session,
                subject_ref=PSEUDONYMIZER.ref(f"31015119570101{k:04d}"),
                source="hotline_12345",
                summary="",
                ticket=None,
                actor="town-supervisor",
                org="310151101000" if k % 2 else "310151102000",
                now=received,
            )
            incident, _ = open_incident(
                session, store.engine, complaint_id=complaint["complaint_id"], actor="s", now=received
            )
            ids.append(incident["incident_id"])
        session.commit()
    return ids


def _escalating_together(store: Store, now: datetime) -> list[dict[str, Any]]:  # noqa: F811
    """A round of the periodic escalation run at the same moment by four gateway processes (four engines,
    as four processes have); the changes they made, all together."""
    engines = [_engine_of_another_process(store) for _ in range(4)]
    start = threading.Barrier(len(engines))
    made: list[list[dict[str, Any]]] = []
    failures: list[BaseException] = []

    def tick(engine: sa.Engine) -> None:
        start.wait()
        try:
            made.append(escalate_overdue(engine, now))
        except BaseException as exc:  # surfaced below: a thread's exception is otherwise lost
            failures.append(exc)

    threads = [threading.Thread(target=tick, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for engine in engines:
        engine.dispose()
    assert failures == []
    return [change for round_ in made for change in round_]


def _escalations(store: Store) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:  # noqa: F811
    """The ``escalated`` steps (incident, note) and the ``supervision.incident_escalated`` events' details."""
    with store.engine.connect() as conn:
        steps = conn.execute(
            sa.text(
                "SELECT incident_id, note FROM audit_incident_steps"
                " WHERE action = 'escalated' ORDER BY step_id"
            )
        ).all()
        bodies = conn.execute(
            sa.text(
                "SELECT body FROM audit_events WHERE kind = 'supervision.incident_escalated' ORDER BY seq"
            )
        ).scalars()
        return [(i, n) for i, n in steps], [json.loads(b)["details"] for b in bodies]


def test_gateway_processes_escalating_together_escalate_each_overdue_case_exactly_once(
    store: Store,  # noqa: F811
) -> None:
    """Several gateway processes run the periodic escalation at the same moment: each overdue case is
    escalated once — one step, one ``supervision.incident_escalated`` event — and the next rounds change
    nothing. On PostgreSQL the claims race for real (READ COMMITTED: every process reads the same
    candidates, then updates them)."""
    cases = _overdue_cases(store, 6)
    made = _escalating_together(store, NOW)
    assert sorted(c["incident_id"] for c in made) == sorted(cases)
    steps, events = _escalations(store)
    assert sorted(i for i, _ in steps) == sorted(cases)
    assert sorted(e["incident_id"] for e in events) == sorted(cases)
    assert all(e["scheduled"] is True and e["org"] == "310151000000" for e in events)
    assert {note for _, note in steps} == {"310151101000 → 310151000000", "310151102000 → 310151000000"}
    assert escalate_overdue(store.engine, NOW + timedelta(days=1)) == []  # the district's period runs
    with Session(store.engine) as session:
        listed = list_incidents(session, NOW, scope="310151", escalated=True, limit=100)
        assert sorted(x["incident_id"] for x in listed) == sorted(cases)
    assert verify_log(store.engine).ok  # every escalation appended in its own transaction, chained


def test_gateway_processes_escalating_together_take_each_case_one_level_further_exactly_once(
    store: Store,  # noqa: F811
) -> None:
    """Before, a case the district let run past its own period stayed with the district for ever. Now
    the next round takes it to the city — and with four processes racing on the climb, each case goes up
    once: one more step, one more event (level 2), none to the province in the same round."""
    cases = _overdue_cases(store, 4)
    assert len(escalate_overdue(store.engine, NOW)) == 4  # to the district, its period to 7 December
    assert escalate_overdue(store.engine, datetime(2026, 12, 7, 15, 0, tzinfo=UTC)) == []
    made = _escalating_together(store, NOW + timedelta(days=18))
    assert sorted(c["incident_id"] for c in made) == sorted(cases)
    steps, events = _escalations(store)
    assert sorted(i for i, note in steps if note == "310151000000 → 310100000000") == sorted(cases)
    assert len(steps) == 8 and len(events) == 8
    climbed = [e for e in events if e["escalation_level"] == 2]
    assert sorted(e["incident_id"] for e in climbed) == sorted(cases)
    assert all(
        (e["from_org"], e["org"], e["org_level"], e["scheduled"])
        == ("310151000000", "310100000000", "city", True)
        for e in climbed
    )
    with Session(store.engine) as session:
        later = NOW + timedelta(days=18)
        assert list_incidents(session, later, scope="310151", escalated=True, limit=100) == []
        listed = list_incidents(session, later, scope="3101", escalated=True, limit=100)
        assert sorted(x["incident_id"] for x in listed) == sorted(cases)
        assert {x["escalation_level"] for x in listed} == {2}
    assert verify_log(store.engine).ok


def test_the_escalation_period_is_a_setting_counted_as_the_others_and_a_bad_holiday_file_stops_a_round(
    sqlite: Store,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GRASSROOTS_ESCALATION_DUE_DAYS", "5")
    monkeypatch.setenv("GRASSROOTS_DEADLINE_DAYS", "working_days")
    settings = SupervisionSettings()
    days = deadlines_of(settings)
    assert (days.escalation_days, days.unit.value) == (5, "working_days")
    # Five working days from Friday 20 November: Monday 23 to Friday 27.
    assert days.escalation_due(NOW) == datetime(2026, 11, 27, 15, 59, 59, tzinfo=UTC)
    monkeypatch.setenv("GRASSROOTS_ESCALATION_DUE_DAYS", "0")
    with pytest.raises(ValidationError):
        SupervisionSettings()
    monkeypatch.delenv("GRASSROOTS_ESCALATION_DUE_DAYS")
    assert SupervisionSettings().escalation_due_days == 15
    monkeypatch.setenv("GRASSROOTS_ESCALATION_DUE_DAYS", "5")

    _overdue_cases(sqlite, 1)
    spoilt = tmp_path / "holidays.toml"
    spoilt.write_text("[2027\n", encoding="utf-8")
    monkeypatch.setenv("GRASSROOTS_HOLIDAYS_FILE", str(spoilt))
    assert escalation_round(sqlite.engine, NOW, SupervisionSettings()) == []  # nothing counted on guesses
    monkeypatch.delenv("GRASSROOTS_HOLIDAYS_FILE")
    made = escalation_round(sqlite.engine, NOW, SupervisionSettings())
    assert [c["escalation_due_at"] for c in made] == ["2026-11-27T15:59:59.000000Z"]
