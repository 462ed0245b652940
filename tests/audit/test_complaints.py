"""Complaints -> incidents on a real store: exactly the person's accesses, proofs that verify, deadlines."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit import (
    AuditEvent,
    AuditLog,
    CaseConflict,
    CaseHasJurisdiction,
    CaseNotFound,
    CaseOutsideScope,
    Deadlines,
    InvalidCaseInput,
    Outcome,
    Pseudonymizer,
    SubjectMismatch,
    access_seqs_for_person,
    access_seqs_for_subjects,
    accesses_for_subjects,
    add_note,
    assign_incident,
    assign_jurisdiction,
    count_complaints,
    count_incidents,
    dispose_incident,
    due_within,
    escalate_incident,
    get_complaint,
    get_incident,
    hand_down_case,
    incident_for_recheck,
    incidents_to_escalate,
    list_complaints,
    list_incidents,
    open_incident,
    recheck_evidence,
    register_complaint,
    reopen_incident,
    verify_incident_evidence,
)
from audit.anomaly import load_anomaly_rules
from audit.complaints import superior_office
from audit.log import iter_leaf_hashes
from audit.merkle import InvalidProofError
from audit.monthly import build_monthly_report, render_csv, render_html
from audit.query import attempt_seqs_for_records, month_bounds
from audit.tables import (
    UNSERVED_RECORD_READ,
    audit_events,
    requested_record_ref,
    requested_record_ref_index,
)
from tests.audit.conftest import Store
from tests.audit.helpers import PSEUDONYMIZER, make_event

# A Tuesday: 10, 15 and 30 days later are working days (Friday 27 November, Wednesday 2 and Thursday 17
# December), so no deadline here moves for a weekend or a holiday (test_workdays.py covers those).
NOW = datetime(2026, 11, 17, 2, 0, tzinfo=UTC)
ALICE = PSEUDONYMIZER.ref("310151195701010011")
BOB = PSEUDONYMIZER.ref("310151196002020022")


def _complaint(
    session: Session, subject_ref: str = ALICE, source: str = "walk_in", now: datetime = NOW
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A complaint registered by the district's supervision office (org 310151000000), with no summary."""
    return register_complaint(
        session,
        subject_ref=subject_ref,
        source=source,
        summary="",
        ticket=None,
        actor="s",
        now=now,
        org="310151000000",
    )


def populate(store: Store) -> dict[str, list[int]]:
    """Reads touching Alice, Bob, both, neither; a refused read; a supervisory event naming Alice."""
    log = AuditLog(store.engine)
    plan = [
        ("alice", make_event(1, outcome=Outcome.ALLOWED, subject_refs=(ALICE,))),
        ("bob", make_event(2, outcome=Outcome.ALLOWED, subject_refs=(BOB,))),
        ("both", make_event(3, outcome=Outcome.ALLOWED, subject_refs=(BOB, ALICE), actor="user-x")),
        ("none", make_event(4, outcome=Outcome.REFUSED, subject_refs=())),
        ("admin", make_event(5, kind="supervision.lookup", outcome=Outcome.OK, subject_refs=(ALICE,))),
        ("alice", make_event(6, outcome=Outcome.ALLOWED, subject_refs=(ALICE,), actor="user-y")),
    ]
    seqs: dict[str, list[int]] = {}
    for label, event in plan:
        seqs.setdefault(label, []).append(log.append(event).seq)
    return seqs


def test_incident_carries_exactly_the_persons_accesses_with_valid_proofs(store: Store) -> None:
    seqs = populate(store)
    with Session(store.engine) as session:
        complaint, change = register_complaint(
            session,
            subject_ref=ALICE,
            source="hotline_12345",
            summary="居民反映信息被无关人员查看",
            ticket="12345-2026-0001",
            actor="supervisor-1",
            now=NOW,
            org="310151000000",
        )
        assert change["kind"] == "supervision.complaint_registered"
        incident, change = open_incident(
            session, store.engine, complaint_id=complaint["complaint_id"], actor="supervisor-1", now=NOW
        )
        session.commit()
        assert change["evidence_events"] == 3
        full = get_incident(session, incident["incident_id"], NOW, scope="")
    assert [e["seq"] for e in full["evidence"]] == sorted(seqs["alice"] + seqs["both"])
    assert full["tree_size"] == 6
    leaves = dict(enumerate(iter_leaf_hashes(store.engine, 1, 6), start=1))
    assert verify_incident_evidence(full, leaves) == [e["seq"] for e in full["evidence"]]
    # A resident's transparency view: organisation and role, never the reader's user id.
    entries = accesses_for_subjects(store.engine, [ALICE])
    assert [e.seq for e in entries] == sorted(seqs["alice"] + seqs["both"])
    assert all("user" not in str(e.to_json()) for e in entries)


ALICE_RECORD = PSEUDONYMIZER.ref("R-0001")  # record ids, keyed like the gateway keys them
BOB_RECORD = PSEUDONYMIZER.ref("R-0002")
ALICE_VISIT = PSEUDONYMIZER.ref("V-0007")


def read(i: int, dataset: str, subjects: tuple[str, ...], records: tuple[str, ...]) -> AuditEvent:
    """An allowed read as the data path records it: one record ref per served record, in order, and the
    ID-number refs of those records in the same order, duplicates removed."""
    kind = "data.read" if len(records) == 1 else "data.list"
    return make_event(
        i,
        kind=kind,
        outcome=Outcome.ALLOWED,
        reason="allowed",
        dataset=dataset,
        record_count=len(records),
        subject_refs=subjects,
        record_refs=records,
        details={},
    )


def attempt(i: int, dataset: str, record: str, outcome: Outcome = Outcome.REFUSED) -> AuditEvent:
    """A single-record read that served nothing: no resident ref, only the ref of the id asked for."""
    return make_event(
        i,
        kind="data.read",
        outcome=outcome,
        reason="not_found" if outcome is Outcome.REFUSED else "upstream_unavailable",
        actor="outsider",
        dataset=dataset,
        record_count=0,
        subject_refs=(),
        record_refs=(),
        details={"requested_record_ref": record},
    )


def refused_page(i: int) -> AuditEvent:
    return make_event(i, kind="data.list", outcome=Outcome.REFUSED, subject_refs=(), record_refs=())


def lookup(i: int, record: str) -> AuditEvent:
    """Not a data access, though it names a record ref the same way."""
    return make_event(
        i,
        kind="supervision.lookup",
        outcome=Outcome.OK,
        subject_refs=(),
        record_refs=(),
        details={"requested_record_ref": record},
    )


# (label, event, in Alice's complaint?) — the attempts at her records are the accesses she cares most about.
ATTEMPTS_AT_RECORDS = [
    ("attempt before any read served it", attempt(1, "residents", ALICE_RECORD), True),
    ("list read serving Alice and Bob", read(2, "residents", (ALICE, BOB), (ALICE_RECORD, BOB_RECORD)), True),
    ("refused read of Alice's record", attempt(3, "residents", ALICE_RECORD), True),
    ("failed read of Alice's record", attempt(4, "residents", ALICE_RECORD, Outcome.ERROR), True),
    ("refused read of Bob's record", attempt(5, "residents", BOB_RECORD), False),
    ("same ref in another dataset", attempt(6, "occupants", ALICE_RECORD), False),
    ("refused page (no record asked for)", refused_page(7), False),
    # Two records, one ID number: whose is which cannot be told, so neither is taken as hers.
    ("ambiguous read", read(8, "visits", (ALICE,), (ALICE_VISIT, PSEUDONYMIZER.ref("V-0008"))), True),
    ("refused read of a record only the ambiguous read served", attempt(9, "visits", ALICE_VISIT), False),
    ("single read serving Alice in another dataset", read(10, "occupants", (ALICE,), (ALICE_VISIT,)), True),
    ("refused read of that record", attempt(11, "occupants", ALICE_VISIT), True),
    ("supervisory event naming the record", lookup(12, ALICE_RECORD), False),
]  # fmt: skip


def test_incident_carries_refused_attempts_at_the_persons_records(store: Store) -> None:
    log = AuditLog(store.engine)
    seqs = {label: log.append(event).seq for label, event, _ in ATTEMPTS_AT_RECORDS}
    expected = [seqs[label] for label, _, wanted in ATTEMPTS_AT_RECORDS if wanted]
    served = [seqs[label] for label, event, _ in ATTEMPTS_AT_RECORDS if ALICE in event.subject_refs]
    assert access_seqs_for_subjects(store.engine, [ALICE]) == served  # what the subject index alone finds
    assert access_seqs_for_person(store.engine, [ALICE]) == expected
    with Session(store.engine) as session:
        complaint, _ = _complaint(session)
        incident, change = open_incident(
            session, store.engine, complaint_id=complaint["complaint_id"], actor="s", now=NOW
        )
        session.commit()
        full = get_incident(session, incident["incident_id"], NOW, scope="")
    assert change["evidence_events"] == len(expected)
    assert [e["seq"] for e in full["evidence"]] == expected
    size = len(ATTEMPTS_AT_RECORDS)
    leaves = dict(enumerate(iter_leaf_hashes(store.engine, 1, size), start=1))
    assert verify_incident_evidence(full, leaves) == expected
    # "Who read my data" lists reads that served her, not attempts that read nothing.
    assert [e.seq for e in accesses_for_subjects(store.engine, [ALICE])] == served
    # Bob's complaint finds the attempt at his record and none at hers.
    assert access_seqs_for_person(store.engine, [BOB]) == [
        seqs["list read serving Alice and Bob"],
        seqs["refused read of Bob's record"],
    ]


def test_attempts_at_records_are_one_lookup_on_the_partial_expression_index(store: Store) -> None:
    log = AuditLog(store.engine)
    log.append_many([attempt(i, "residents", PSEUDONYMIZER.ref(f"R-{i}")) for i in range(1, 40)])
    log.append_many([make_event(i) for i in range(40, 80)])
    with store.engine.connect() as conn:
        if store.dialect == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")  # a tiny table: ask whether it *can* be used
            explain = "EXPLAIN "
        else:
            explain = "EXPLAIN QUERY PLAN "
        records = [("residents", PSEUDONYMIZER.ref("R-7")), ("residents", PSEUDONYMIZER.ref("R-9"))]
        assert attempt_seqs_for_records(conn, records) == [7, 9]
        asked = requested_record_ref(audit_events.c.body)
        stmt = (
            sa.select(audit_events.c.seq)
            .where(UNSERVED_RECORD_READ)
            .where(asked.in_([ref for _, ref in records]))
        )
        sql = str(stmt.compile(dialect=store.engine.dialect, compile_kwargs={"literal_binds": True}))
        plan = " ".join(str(row) for row in conn.exec_driver_sql(explain + sql))
    assert requested_record_ref_index.name in plan, plan


def test_the_index_never_refuses_an_append(store: Store) -> None:
    """Whatever an unserved read's body holds, its append succeeds (an index that could raise would fail
    a whole group-committed batch closed): PostgreSQL's jsonb refuses \\u0000, which JSON may carry."""
    odd = make_event(
        1,
        kind="data.read",
        outcome=Outcome.REFUSED,
        details={"requested_record_ref": ALICE_RECORD, "note": "\x00"},  # in the body only
    )
    assert AuditLog(store.engine).append(odd).seq == 1
    assert attempt_seqs_for_records(store.engine, [("residents", ALICE_RECORD)]) == [1]


def test_tampered_evidence_fails_verification(sqlite: Store) -> None:
    populate(sqlite)
    with Session(sqlite.engine) as session:
        complaint, _ = _complaint(session)
        incident, _ = open_incident(
            session, sqlite.engine, complaint_id=complaint["complaint_id"], actor="s", now=NOW
        )
        full = get_incident(session, incident["incident_id"], NOW, scope="")
    leaves = dict(enumerate(iter_leaf_hashes(sqlite.engine, 1, 6), start=1))
    bad_proof = {
        **full,
        "evidence": [{**full["evidence"][0], "proof": ["00" * 32] * len(full["evidence"][0]["proof"])}],
    }
    with pytest.raises(InvalidProofError):
        verify_incident_evidence(bad_proof, leaves)
    changed = {**leaves, full["evidence"][0]["seq"]: b"\x01" * 32}
    with pytest.raises(InvalidProofError):
        verify_incident_evidence(full, changed)


def test_case_lifecycle_steps_deadlines_and_overdue(sqlite: Store) -> None:
    populate(sqlite)
    deadlines = Deadlines(complaint_days=15, incident_days=10)
    with Session(sqlite.engine) as session:
        c, _ = _complaint(session, subject_ref=BOB, source="burden_monitoring")
        assert c["due_at"] == "2026-12-02T15:59:59.000000Z"
        i, _ = open_incident(
            session, sqlite.engine, complaint_id=c["complaint_id"], actor="s", now=NOW, deadlines=deadlines
        )
        iid = i["incident_id"]
        with pytest.raises(CaseConflict):
            open_incident(session, sqlite.engine, complaint_id=c["complaint_id"], actor="s", now=NOW)
        assert list_incidents(session, NOW + timedelta(days=9), overdue=True, scope="") == []
        assert [
            x["incident_id"]
            for x in list_incidents(session, NOW + timedelta(days=11), overdue=True, scope="")
        ] == [iid]
        # Nobody made responsible, nothing checked: the case cannot be closed yet.
        with pytest.raises(CaseConflict, match="not been assigned"):
            dispose_incident(
                session,
                incident_id=iid,
                disposition="referred",
                note="移送区纪委监委处理",
                actor="s",
                now=NOW,
                scope="",
            )
        _, change = assign_incident(
            session, incident_id=iid, assignee="inspector-2", actor="s", now=NOW, scope=""
        )
        assert change["kind"] == "supervision.incident_assigned"
        with pytest.raises(InvalidCaseInput, match="at least 8"):
            dispose_incident(
                session,
                incident_id=iid,
                disposition="unsubstantiated",
                note="x",
                actor="s",
                now=NOW,
                scope="",
            )
        _, change = add_note(
            session,
            incident_id=iid,
            note="调取访问记录，核实场景授权",
            actor="inspector-2",
            now=NOW,
            scope="",
        )
        assert change["kind"] == "supervision.incident_note"
        closed, change = dispose_incident(
            session,
            incident_id=iid,
            disposition="unsubstantiated",
            note="每次访问均在授权场景内",
            actor="s",
            now=NOW,
            scope="",
        )
        assert closed["status"] == "closed" and not closed["overdue"]
        assert list_incidents(session, NOW + timedelta(days=30), overdue=True, scope="") == []
        steps = [s["action"] for s in get_incident(session, iid, NOW, scope="")["steps"]]
        assert steps == ["opened", "assigned", "note", "disposed"]
        with pytest.raises(CaseConflict):
            add_note(session, incident_id=iid, note="late", actor="s", now=NOW, scope="")
        with pytest.raises(CaseNotFound):
            get_incident(session, "I-missing", NOW, scope="")


def test_a_deadline_moved_on_assignment_is_in_the_case_file_from_what_to_what(sqlite: Store) -> None:
    """Reassigning an overdue incident with a later deadline takes it off the overdue list; the case file
    showed only "assigned", so whoever read it could not tell the deadline had been moved, nor from when."""
    populate(sqlite)
    deadlines = Deadlines(complaint_days=15, incident_days=10)
    with Session(sqlite.engine) as session:
        c, _ = _complaint(session, subject_ref=BOB, source="hotline_12345")
        i, _ = open_incident(
            session, sqlite.engine, complaint_id=c["complaint_id"], actor="s", now=NOW, deadlines=deadlines
        )
        iid = i["incident_id"]
        later = NOW + timedelta(days=12)
        assert [x["incident_id"] for x in list_incidents(session, later, overdue=True, scope="")] == [iid]
        new_due = datetime(2026, 12, 31, 15, 59, tzinfo=UTC)
        _, change = assign_incident(
            session, incident_id=iid, assignee="inspector-3", actor="s2", now=later, scope="", due_at=new_due
        )
        assert (change["previous_due_at"], change["due_at"]) == (
            "2026-11-27T15:59:59.000000Z",
            "2026-12-31T15:59:00.000000Z",
        )
        steps = get_incident(session, iid, later, scope="")["steps"]
        assert [(s["action"], s["actor"]) for s in steps[-2:]] == [
            ("assigned", "s2"),
            ("deadline_changed", "s2"),
        ]
        assert steps[-1]["note"] == "2026-11-27 23:59（北京时间） → 2026-12-31 23:59（北京时间）"
        # The same assignee again without a new deadline: nothing about a deadline is said.
        _, change = assign_incident(
            session, incident_id=iid, assignee="inspector-3", actor="s2", now=later, scope=""
        )
        assert "previous_due_at" not in change
        assert get_incident(session, iid, later, scope="")["steps"][-1]["action"] == "assigned"


def test_a_deadline_years_away_is_refused_as_the_typo_it_is(sqlite: Store) -> None:
    """``--due 2099-12-07`` (2026 mistyped) was taken: the case would never be overdue nor escalated."""
    populate(sqlite)
    with Session(sqlite.engine) as session:
        c, _ = _complaint(session, subject_ref=BOB, source="hotline_12345")
        i, _ = open_incident(session, sqlite.engine, complaint_id=c["complaint_id"], actor="s", now=NOW)
        iid, due = i["incident_id"], i["due_at"]
        with pytest.raises(InvalidCaseInput) as refused:
            assign_incident(
                session,
                incident_id=iid,
                assignee="inspector-3",
                actor="s2",
                now=NOW,
                scope="",
                due_at=datetime(2099, 12, 7, 15, 59, 59, tzinfo=UTC),
            )
        assert refused.value.message_zh.startswith("新的办结期限在一年以后（今天是 ")
        assert "2099" not in refused.value.message_zh + refused.value.message_en
        assert refused.value.message_en.isascii()
        assert get_incident(session, iid, NOW, scope="")["due_at"] == due
        within = NOW + timedelta(days=365)
        assign_incident(
            session, incident_id=iid, assignee="inspector-3", actor="s2", now=NOW, scope="", due_at=within
        )


def test_a_closed_incident_is_reopened_with_fresh_deadlines_and_its_history_kept(sqlite: Store) -> None:
    """12345 重办: the resident disagrees with the answer a month on. The incident goes back to investigation
    with its assignee, the disposition is withdrawn (it is no longer the answer), both clocks start again
    from the reopening, so the case is not overdue at once on a deadline met long ago; the earlier
    disposition and the reason stay in the steps. Only a closed incident is reopened, and the reason is
    checked like every typed text."""
    populate(sqlite)
    with Session(sqlite.engine) as session:
        c, _ = _complaint(session)
        i, _ = open_incident(session, sqlite.engine, complaint_id=c["complaint_id"], actor="s", now=NOW)
        iid = i["incident_id"]
        with pytest.raises(CaseConflict, match="not closed"):
            reopen_incident(session, incident_id=iid, scope="", reason="居民有异议", actor="s", now=NOW)
        assign_incident(session, incident_id=iid, assignee="inspector-2", actor="s", now=NOW, scope="")
        dispose_incident(
            session, incident_id=iid, disposition="unsubstantiated", note="每次访问均在授权场景内",
            actor="s", now=NOW, scope=""
        )  # fmt: skip
        later = NOW + timedelta(days=40)  # both first deadlines (15 and 30 days) long past
        with pytest.raises(InvalidCaseInput, match="ID number"):
            reopen_incident(
                session,
                incident_id=iid,
                scope="",
                reason="投诉人 11010519491231002X 再次来电",
                actor="s",
                now=later,
            )
        reopened, change = reopen_incident(
            session, incident_id=iid, scope="", reason="居民对答复有异议，要求重新核查", actor="s2", now=later
        )
        assert change == {
            "kind": "supervision.incident_reopened",
            "actor": "s2",
            "incident_id": iid,
            "due_at": "2027-01-26T15:59:59.000000Z",  # 30 days after the reopening's day
        }
        assert (reopened["status"], reopened["assignee"], reopened["disposition"]) == (
            "investigating",
            "inspector-2",
            None,
        )
        assert (reopened["closed_at"], reopened["closed_by"], reopened["overdue"]) == (None, None, False)
        assert reopened["complaint_due_at"] == "2027-01-11T15:59:59.000000Z"  # 15 days after it
        assert (
            get_complaint(session, c["complaint_id"], later, scope="")["incident_status"] == "investigating"
        )
        assert [x["incident_id"] for x in list_incidents(session, later, overdue=True, scope="")] == []
        steps = get_incident(session, iid, later, scope="")["steps"]
        assert [s["action"] for s in steps] == ["opened", "assigned", "disposed", "reopened"]
        # handled again, it closes again
        closed, _ = dispose_incident(
            session, incident_id=iid, disposition="substantiated", note="重新核查后，查看超出授权范围",
            actor="s", now=later, scope=""
        )  # fmt: skip
        assert (closed["status"], closed["disposition"]) == ("closed", "substantiated")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("summary", "投诉人身份证 11010519491231002X"),
        ("summary", "联系电话 13812345678"),
        ("summary", "投诉人护照号E12345678"),
        ("summary", "回电一三八一二三四五六七八"),
        ("summary", "投诉人微信号：wang_jg88"),
        ("ticket", "13812345678"),
        ("source", "wechat"),
        ("subject_ref", "110105194912310021"),
    ],
)
def test_plain_personal_data_never_enters_a_case_file(sqlite: Store, field: str, value: str) -> None:
    args = {"subject_ref": ALICE, "source": "walk_in", "summary": "", "ticket": None}
    args[field] = value
    with Session(sqlite.engine) as session, pytest.raises(InvalidCaseInput) as refused:
        register_complaint(session, actor="s", org="310151000000", now=NOW, **args)  # type: ignore[arg-type]
    # Each message reads whole in its own language: no Chinese field name inside the English one.
    assert not re.search(r"[\u4e00-\u9fff]", refused.value.message_en), refused.value.message_en


def test_case_tables_hold_no_plain_personal_data(sqlite: Store) -> None:
    populate(sqlite)
    with Session(sqlite.engine) as session:
        c, _ = register_complaint(
            session,
            subject_ref=ALICE,
            source="hotline_12345",
            summary="反映信息被查看",
            ticket="T-1",
            actor="s",
            now=NOW,
            org="310151000000",
        )
        open_incident(session, sqlite.engine, complaint_id=c["complaint_id"], actor="s", now=NOW)
        session.commit()
    with sqlite.engine.connect() as conn:
        text = " ".join(
            str(v)
            for table in (
                "audit_complaints",
                "audit_incidents",
                "audit_incident_evidence",
                "audit_incident_steps",
            )
            for row in conn.execute(sa.text(f"SELECT * FROM {table}"))  # noqa: S608 -- fixed names
            for v in row
        )
    assert ALICE in text
    assert "310151195701010011" not in text


def test_either_deadline_makes_a_case_overdue_and_says_which_and_by_how_many_days(sqlite: Store) -> None:
    """The complaint's answer deadline (15 days) runs out before the incident's (30): on day 16 the case
    is overdue on the complaint's clock alone, on day 31 on both; closing it clears both."""
    populate(sqlite)
    with Session(sqlite.engine) as session:
        c, _ = _complaint(session, source="hotline_12345")
        assert c["overdue"] is False and c["overdue_deadlines"] == []
        i, _ = open_incident(session, sqlite.engine, complaint_id=c["complaint_id"], actor="s", now=NOW)
        iid, cid = i["incident_id"], c["complaint_id"]
        assert i["complaint_due_at"] == c["due_at"] == "2026-12-02T15:59:59.000000Z"
        # Beside each stored UTC time, the Beijing time the office clock shows (a supervisor reading the
        # UTC stamp as local time put every deadline eight hours early).
        assert i["complaint_due_at_beijing"] == c["due_at_beijing"] == "2026-12-02 23:59:59"
        assert i["closed_at"] is None and i["closed_at_beijing"] is None
        assert i["opened_at_beijing"] is not None and c["received_at_beijing"] is not None

        day15 = NOW + timedelta(days=15)  # the answer is due by the end of this day: not yet late
        assert list_incidents(session, day15, overdue=True, scope="") == []
        assert get_complaint(session, cid, day15, scope="")["overdue"] is False

        day16 = NOW + timedelta(days=16)
        (late,) = list_incidents(session, day16, overdue=True, scope="")
        assert late["incident_id"] == iid and late["overdue"] is True
        assert [(d["deadline"], d["days_overdue"], d["due_at"]) for d in late["overdue_deadlines"]] == [
            ("complaint_answer", 1, "2026-12-02T15:59:59.000000Z")
        ]
        assert late["overdue_deadlines"][0]["due_at_beijing"] == "2026-12-02 23:59:59"
        assert (
            late["overdue_deadlines"][0]["message"]
            == "投诉答复期限已逾期 1 天（应于 2026-12-02 前答复投诉人）"
        )
        assert "complaint answer deadline missed by 1 day" in late["overdue_deadlines"][0]["message_en"]
        assert get_incident(session, iid, day16, scope="")["overdue_deadlines"] == late["overdue_deadlines"]
        complaint = get_complaint(session, cid, day16, scope="")
        assert complaint["overdue"] is True
        assert [d["deadline"] for d in complaint["overdue_deadlines"]] == ["complaint_answer"]
        assert [x["overdue"] for x in list_complaints(session, now=day16, scope="")] == [True]
        session.commit()  # the monthly report counts on its own connection
        assert monthly_case_stats(sqlite, day16)["incidents_overdue"] == 1

        day31 = NOW + timedelta(days=31)
        (late,) = list_incidents(session, day31, overdue=True, scope="")
        assert [(d["deadline"], d["days_overdue"]) for d in late["overdue_deadlines"]] == [
            ("complaint_answer", 16),
            ("incident_close", 1),
        ]
        assert late["overdue_deadlines"][1]["message"] == "事件办结期限已逾期 1 天（应于 2026-12-17 前办结）"
        assert [d["deadline"] for d in get_complaint(session, cid, day31, scope="")["overdue_deadlines"]] == [
            "complaint_answer",
            "incident_close",
        ]

        assign_incident(session, incident_id=iid, assignee="inspector-2", actor="s", now=day31, scope="")
        closed, _ = dispose_incident(
            session,
            incident_id=iid,
            disposition="unsubstantiated",
            note="每次访问均在授权场景内",
            actor="s",
            now=day31,
            scope="",
        )
        assert closed["overdue"] is False and closed["overdue_deadlines"] == []
        assert list_incidents(session, day31, overdue=True, scope="") == []
        assert get_complaint(session, cid, day31, scope="")["overdue"] is False
        session.commit()
    assert monthly_case_stats(sqlite, day31)["incidents_overdue"] == 0


BEIJING = timezone(timedelta(hours=8))


@pytest.mark.parametrize(
    ("received_beijing", "answer_by_beijing", "close_by_beijing"),
    [
        # the hotline's night shift: 01:36 on the 7th is still 6 December in UTC
        ("2026-12-07 01:36:41", "2026-12-22 23:59:59", "2027-01-06 23:59:59"),
        ("2026-12-06 23:59:59", "2026-12-21 23:59:59", "2027-01-05 23:59:59"),
        ("2026-12-07 00:00:00", "2026-12-22 23:59:59", "2027-01-06 23:59:59"),
        ("2026-12-07 15:00:00", "2026-12-22 23:59:59", "2027-01-06 23:59:59"),
    ],
)
def test_deadlines_run_to_the_end_of_a_beijing_day_the_day_of_receipt_not_counted(
    sqlite: Store, received_beijing: str, answer_by_beijing: str, close_by_beijing: str
) -> None:
    """民法典第二百零一条、第二百零三条: a period of days starts the day after the complaint is taken and
    its last day ends at 24:00, Beijing time. A call taken at 01:36 on 7 December is answered by the end
    of 22 December (it was due at 01:36 that morning, nearly a whole day short); the case turns overdue
    at the first moment of the next Beijing day, by 1 day, and reopening counts afresh the same way."""
    received = datetime.fromisoformat(received_beijing).replace(tzinfo=BEIJING)
    with Session(sqlite.engine) as session:
        c, change = _complaint(session, source="hotline_12345", now=received)
        i, _ = open_incident(session, sqlite.engine, complaint_id=c["complaint_id"], actor="s", now=received)
        assert (c["due_at_beijing"], i["due_at_beijing"]) == (answer_by_beijing, close_by_beijing)
        assert i["complaint_due_at_beijing"] == answer_by_beijing
        assert change["due_at"] == c["due_at"]
        answer_by = datetime.fromisoformat(answer_by_beijing).replace(tzinfo=BEIJING)
        cid = c["complaint_id"]
        assert get_complaint(session, cid, answer_by, scope="")["overdue"] is False
        late = get_complaint(session, cid, answer_by + timedelta(seconds=1), scope="")
        assert [(d["deadline"], d["days_overdue"]) for d in late["overdue_deadlines"]] == [
            ("complaint_answer", 1)
        ]
        assert late["overdue_deadlines"][0]["message"] == (
            f"投诉答复期限已逾期 1 天（应于 {answer_by_beijing[:10]} 前答复投诉人）"
        )
        iid = i["incident_id"]
        assign_incident(session, incident_id=iid, assignee="inspector-2", actor="s", now=received, scope="")
        dispose_incident(
            session, incident_id=iid, disposition="unsubstantiated", note="每次访问均在授权场景内",
            actor="s", now=received, scope="",
        )  # fmt: skip
        reopened, _ = reopen_incident(
            session, incident_id=iid, scope="", reason="居民对答复有异议", actor="s", now=received
        )
        assert (reopened["complaint_due_at_beijing"], reopened["due_at_beijing"]) == (
            answer_by_beijing,
            close_by_beijing,
        )


def test_cases_due_soon_are_listed_before_they_turn_overdue_by_beijing_day(sqlite: Store) -> None:
    """临期提醒: the overdue list named a case only once it was late; nothing told a supervisor which
    answers fall due this week. ``due_by`` (the end of the Beijing day N days ahead, :func:`due_within`)
    lists the cases not closed and not yet late with either deadline by then, earliest first."""
    with Session(sqlite.engine) as session:
        c, _ = _complaint(session, subject_ref=BOB, source="hotline_12345")  # answer by the end of 2 Dec
        i, _ = open_incident(session, sqlite.engine, complaint_id=c["complaint_id"], actor="s", now=NOW)
        iid = i["incident_id"]

        def soon(now_beijing: str, days: int) -> list[str]:
            now = datetime.fromisoformat(now_beijing).replace(tzinfo=BEIJING)
            due_by = due_within(now, days)
            listed = [x["incident_id"] for x in list_incidents(session, now, due_by=due_by, scope="")]
            assert count_incidents(session, now, due_by=due_by, scope="") == len(listed)
            return listed

        assert soon("2026-11-30 10:00:00", 1) == []  # through the end of 1 December: not yet
        assert soon("2026-11-30 10:00:00", 2) == [iid]  # through the end of the 2nd
        assert soon("2026-12-02 23:30:00", 0) == [iid]  # due today, not late yet
        assert soon("2026-12-03 00:00:00", 30) == []  # late now: on the overdue list instead
        assert soon("2026-11-21 09:00:00", 14) == [iid]
        with pytest.raises(InvalidCaseInput, match="0 and 366"):
            due_within(NOW, -1)
        assign_incident(session, incident_id=iid, assignee="inspector-2", actor="s", now=NOW, scope="")
        dispose_incident(
            session, incident_id=iid, disposition="unsubstantiated", note="每次访问均在授权场景内",
            actor="s", now=NOW, scope="",
        )  # fmt: skip
        assert soon("2026-11-30 10:00:00", 2) == []  # closed: nothing to remind of


def test_a_complaint_without_an_incident_is_overdue_on_its_answer_deadline(sqlite: Store) -> None:
    with Session(sqlite.engine) as session:
        c, _ = _complaint(session, subject_ref=BOB)
        late = get_complaint(session, c["complaint_id"], NOW + timedelta(days=16), scope="")
        assert late["overdue"] is True and late["overdue_deadlines"][0]["days_overdue"] == 1
        assert get_complaint(session, c["complaint_id"], scope="")["overdue"] is False  # no clock given


def monthly_case_stats(store: Store, now: datetime) -> dict[str, int]:
    from audit.monthly import _case_stats

    start, end = month_bounds("2026-11")
    return _case_stats(store.engine, start, end, now, None)


def test_case_lists_page_and_count(store: Store) -> None:
    """Complaints newest first and incidents by deadline, ``limit`` at a time from ``offset``: the pages
    put together are the whole list once each, and the counts say how many there are (they were cut at
    100 with no way on)."""
    populate(store)
    with Session(store.engine) as session:
        opened = []
        # Days whose deadlines all differ: two received on the 20th and 21st (a Friday and a Saturday)
        # would both be due on Monday the 7th, the last days falling on the weekend (period_end).
        for day in (0, 1, 2, 7, 8):
            c, _ = register_complaint(
                session,
                subject_ref=ALICE if day % 2 else BOB,
                source="walk_in",
                summary="",
                ticket=None,
                actor="s",
                now=NOW + timedelta(days=day),
                org="310151000000",
            )
            i, _ = open_incident(
                session,
                store.engine,
                complaint_id=c["complaint_id"],
                actor="s",
                now=NOW + timedelta(days=day),
            )
            opened.append((c["complaint_id"], i["incident_id"]))
        newest_first = [c for c, _ in reversed(opened)]
        pages = [list_complaints(session, limit=2, offset=at, scope="") for at in (0, 2, 4)]
        assert [len(p) for p in pages] == [2, 2, 1]
        assert [x["complaint_id"] for p in pages for x in p] == newest_first
        assert count_complaints(session, scope="") == 5
        assert list_complaints(session, limit=2, offset=5, scope="") == []

        later = NOW + timedelta(days=60)  # every incident is overdue by then
        by_deadline = [i for _, i in opened]
        pages = [list_incidents(session, later, overdue=True, limit=3, offset=at, scope="") for at in (0, 3)]
        assert [x["incident_id"] for p in pages for x in p] == by_deadline
        assert count_incidents(session, later, overdue=True, scope="") == 5
        assert count_incidents(session, NOW, overdue=True, scope="") == 0
        assert count_incidents(session, NOW, status="open", scope="") == 5
        assert count_incidents(session, NOW, status="closed", scope="") == 0


def test_records_named_by_the_departmental_systems_add_the_attempts_at_them(store: Store) -> None:
    """The record-id lookup's answer (``records``) ties attempts the log alone cannot: at a record only an
    ambiguous read served, or none; the dataset still has to match. A dataset whose system did not answer
    is kept with the incident and named in its change event."""
    log = AuditLog(store.engine)
    seqs = {label: log.append(event).seq for label, event, _ in ATTEMPTS_AT_RECORDS}
    from_log = [seqs[label] for label, _, wanted in ATTEMPTS_AT_RECORDS if wanted]
    named = {("visits", ALICE_VISIT)}
    found = access_seqs_for_person(store.engine, [ALICE], named)
    assert found == sorted([*from_log, seqs["refused read of a record only the ambiguous read served"]])
    with pytest.raises(ValueError):
        access_seqs_for_person(store.engine, [ALICE], {("visits", "V-0008")})  # a plain id is refused
    gap = {
        "dataset": "houses",
        "system": "person-house-registry",
        "reason": "upstream_timeout",
        "message": "…",
    }
    with Session(store.engine) as session:
        complaint, _ = _complaint(session)
        incident, change = open_incident(
            session,
            store.engine,
            complaint_id=complaint["complaint_id"],
            records=named,
            evidence_incomplete=[gap],
            actor="s",
            now=NOW,
        )
        session.commit()
        full = get_incident(session, incident["incident_id"], NOW, scope="")
    assert [e["seq"] for e in full["evidence"]] == found
    assert (full["evidence_complete"], full["evidence_incomplete"]) == (False, [gap])
    assert change["evidence_incomplete"] == [
        {"dataset": "houses", "system": "person-house-registry", "reason": "upstream_timeout"}
    ]


def _gap(dataset: str, system: str, reason: str = "upstream_unavailable") -> dict[str, str]:
    return {"dataset": dataset, "system": system, "reason": reason, "message": "…", "message_en": "…"}


def test_a_recheck_adds_what_the_systems_now_name_keeps_the_other_gaps_and_stays_on_the_incidents_tree(
    store: Store,
) -> None:
    """The incident opened while the visits and houses systems were down; visits answers now. The attempt
    at the record only it names is added with a proof against the incident's own tree (one signed root for
    all the evidence), the houses gap stays, nothing is attached twice, and an attempt made after the
    incident was opened is not the complaint's."""
    log = AuditLog(store.engine)
    seqs = {label: log.append(event).seq for label, event, _ in ATTEMPTS_AT_RECORDS}
    with Session(store.engine) as session:
        complaint, _ = _complaint(session)
        opened, _ = open_incident(
            session,
            store.engine,
            complaint_id=complaint["complaint_id"],
            evidence_incomplete=[_gap("visits", "visits-app"), _gap("houses", "person-house-registry")],
            actor="s",
            now=NOW,
        )
        session.commit()
    incident_id = opened["incident_id"]
    later = log.append(attempt(len(ATTEMPTS_AT_RECORDS) + 1, "visits", ALICE_VISIT)).seq
    with Session(store.engine) as session:
        with pytest.raises(SubjectMismatch):
            recheck_evidence(
                session, store.engine, incident_id=incident_id, subject_ref=BOB, rechecked=["visits"],
                actor="s", now=NOW, scope=""
            )  # fmt: skip
        incident, change = recheck_evidence(
            session,
            store.engine,
            incident_id=incident_id,
            subject_ref=ALICE,
            rechecked=["visits"],
            records={("visits", ALICE_VISIT)},
            actor="s",
            now=NOW + timedelta(days=2),
            scope="",
        )
        session.commit()
        full = get_incident(session, incident_id, NOW, scope="")
    new = seqs["refused read of a record only the ambiguous read served"]
    assert change["new_evidence_seqs"] == [new] and later not in [e["seq"] for e in full["evidence"]]
    assert [e["seq"] for e in full["evidence"]] == sorted(
        [*access_seqs_for_person(store.engine, [ALICE]), new]
    )
    assert (full["tree_size"], full["root_hash"]) == (opened["tree_size"], opened["root_hash"])
    leaves = dict(enumerate(iter_leaf_hashes(store.engine, 1, opened["tree_size"]), start=1))
    assert new in verify_incident_evidence(full, leaves)
    assert [m["dataset"] for m in full["evidence_incomplete"]] == ["houses"]
    assert change["evidence_incomplete"] == [
        {"dataset": "houses", "system": "person-house-registry", "reason": "upstream_unavailable"}
    ]
    assert full["steps"][-1]["action"] == "evidence_rechecked"

    with Session(store.engine) as session:
        # Houses still down: its gap is replaced by the new one; nothing found twice.
        incident, change = recheck_evidence(
            session,
            store.engine,
            incident_id=incident_id,
            subject_ref=ALICE,
            rechecked=["houses", "visits"],
            records={("visits", ALICE_VISIT)},
            evidence_incomplete=[_gap("houses", "person-house-registry", "upstream_timeout")],
            actor="s",
            now=NOW + timedelta(days=3),
            scope="",
        )
        assert change["new_evidence_seqs"] == [] and change["evidence_complete"] is False
        assert [m["reason"] for m in incident["evidence_incomplete"]] == ["upstream_timeout"]
        session.commit()
        assign_incident(session, incident_id=incident_id, assignee="inspector", actor="s", now=NOW, scope="")
        dispose_incident(
            session, incident_id=incident_id, disposition="referred", note="移送区纪委监委核查处理",
            actor="s", now=NOW, scope=""
        )  # fmt: skip
        with pytest.raises(CaseConflict, match="closed"):
            recheck_evidence(
                session, store.engine, incident_id=incident_id, subject_ref=ALICE, rechecked=["houses"],
                actor="s", now=NOW, scope=""
            )  # fmt: skip


def _alices_incident_awaiting_visits(store: Store) -> str:
    """The attempts at records logged, and Alice's complaint opened while the visits system was down: the
    incident's id."""
    log = AuditLog(store.engine)
    for _, event, _ in ATTEMPTS_AT_RECORDS:
        log.append(event)
    with Session(store.engine) as session:
        complaint, _ = _complaint(session)
        opened, _ = open_incident(
            session, store.engine, complaint_id=complaint["complaint_id"],
            evidence_incomplete=[_gap("visits", "visits-app")], actor="s", now=NOW,
        )  # fmt: skip
        session.commit()
    return str(opened["incident_id"])


def test_a_recheck_after_a_key_rotation_knows_the_complainant_by_the_older_ref(store: Store) -> None:
    """The complaint was registered under key k1; the audit-ref key has since rotated to k2. The same ID
    number now hashes to a k2 ref: the re-check accepts the complainant by the ref under the kept k1 key and
    still finds their accesses recorded under k1 (with the k2 ref alone it would be a stranger)."""
    incident_id = _alices_incident_awaiting_visits(store)
    alice_now = Pseudonymizer(b"the-rotated-audit-ref-key-987654321", "k2").ref("310151195701010011")
    with Session(store.engine) as session, pytest.raises(SubjectMismatch):
        recheck_evidence(
            session, store.engine, incident_id=incident_id, subject_ref=alice_now,
            rechecked=["visits"], actor="s", now=NOW, scope=""
        )  # fmt: skip
    with Session(store.engine) as session:
        _, change = recheck_evidence(
            session, store.engine, incident_id=incident_id, subject_ref=alice_now,
            subject_refs=[alice_now, ALICE], rechecked=["visits"], records={("visits", ALICE_VISIT)},
            actor="s", now=NOW, scope=""
        )  # fmt: skip
        session.commit()
    assert change["new_evidence_seqs"] and change["evidence_complete"] is True


@pytest.mark.postgres
def test_two_rechecks_at_once_run_one_after_the_other(postgres_store: Store) -> None:
    """Two supervisors re-check the same incident at once (PostgreSQL, READ COMMITTED): the second waits
    for the first and finds its evidence attached, instead of inserting the same rows again (a duplicate
    key, which the API would answer 500)."""
    store = postgres_store
    incident_id = _alices_incident_awaiting_visits(store)

    def recheck(session: Session) -> dict[str, Any]:
        return recheck_evidence(
            session, store.engine, incident_id=incident_id, subject_ref=ALICE, rechecked=["visits"],
            records={("visits", ALICE_VISIT)}, actor="s", now=NOW, scope=""
        )[1]  # fmt: skip

    first = Session(store.engine)
    second = Session(store.engine)
    try:
        assert len(recheck(first)["new_evidence_seqs"]) == 1  # attached, not yet committed
        with ThreadPoolExecutor(1) as pool:
            later = pool.submit(recheck, second)
            # Commit the first only once the second waits on a lock (deterministic, not a sleep).
            with store.engine.connect() as conn:
                for _ in range(200):
                    waiting = conn.exec_driver_sql(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()"
                    ).scalar()
                    if waiting or later.done():
                        break
                    time.sleep(0.05)
            assert waiting, "the second re-check should wait for the first"
            first.commit()
            change = later.result(timeout=30)
        second.commit()
    finally:
        first.close()
        second.close()
    assert change["new_evidence_seqs"] == []
    with Session(store.engine) as session:
        evidence = [e["seq"] for e in get_incident(session, incident_id, NOW, scope="")["evidence"]]
    assert len(evidence) == len(set(evidence)) == change["evidence_events"]


def test_complaints_filter_by_where_their_incident_stands_or_overdue(store: Store) -> None:
    populate(store)
    states: dict[str, str] = {}
    with Session(store.engine) as session:
        for n, state in enumerate(("open", "investigating", "closed", "late")):
            c, _ = register_complaint(
                session, subject_ref=ALICE, source="walk_in", summary="", ticket=None, actor="s",
                now=NOW + timedelta(hours=n), org="310151000000"
            )  # fmt: skip
            i, _ = open_incident(session, store.engine, complaint_id=c["complaint_id"], actor="s", now=NOW)
            states[state] = c["complaint_id"]
            if state != "open":
                # "late": given a deadline two days ahead three days ago, so it has passed by NOW.
                due = NOW - timedelta(days=1) if state == "late" else None
                assign_incident(
                    session,
                    incident_id=i["incident_id"],
                    assignee="x",
                    actor="s",
                    now=NOW - timedelta(days=3) if state == "late" else NOW,
                    due_at=due,
                    scope="",
                )
            if state == "closed":
                dispose_incident(
                    session, incident_id=i["incident_id"], disposition="unsubstantiated",
                    note="每次访问均有授权与场景", actor="s", now=NOW, scope=""
                )  # fmt: skip
        session.commit()

        def ids(status: str) -> list[str]:
            listed = [c["complaint_id"] for c in list_complaints(session, status=status, now=NOW, scope="")]
            assert count_complaints(session, status=status, now=NOW, scope="") == len(listed)
            return listed

        assert ids("open") == [states["open"]]
        assert ids("investigating") == [states["late"], states["investigating"]]  # newest first
        assert ids("closed") == [states["closed"]]
        assert ids("overdue") == [states["late"]]
        # 16 days on, every complaint's answer is late but the closed one's.
        later = NOW + timedelta(days=16)
        overdue = [c["complaint_id"] for c in list_complaints(session, status="overdue", now=later, scope="")]
        assert overdue == [states["late"], states["investigating"], states["open"]]
        assert all(c["overdue"] for c in list_complaints(session, status="overdue", now=later, scope=""))
        with pytest.raises(InvalidCaseInput, match="open, investigating, closed, overdue"):
            list_complaints(session, status="pending", now=NOW, scope="")


TOWN_A, TOWN_B = "310151101000", "310151102000"  # 城桥镇, 堡镇 of one county (310151)


def _case_of(session: Session, store: Store, org: str | None) -> tuple[str, str]:
    c, _ = register_complaint(
        session,
        subject_ref=ALICE,
        source="walk_in",
        summary="",
        ticket=None,
        actor="s",
        org=org or "000000000000",
        now=NOW,
    )
    i, _ = open_incident(session, store.engine, complaint_id=c["complaint_id"], actor="s", now=NOW)
    if org is None:  # a case from before migration 0013 whose registering office is not known
        session.execute(
            sa.text("UPDATE audit_complaints SET org = NULL WHERE complaint_id = :c"),
            {"c": c["complaint_id"]},
        )
        session.execute(
            sa.text("UPDATE audit_incidents SET org = NULL WHERE incident_id = :i"), {"i": i["incident_id"]}
        )
    return c["complaint_id"], i["incident_id"]


def _every_act_on(
    session: Session, scope: str, complaint_id: str, incident_id: str
) -> list[Callable[[], object]]:
    """Every read of and step on one case, as the caller of ``scope``."""
    return [
        lambda: get_complaint(session, complaint_id, NOW, scope=scope),
        lambda: get_incident(session, incident_id, NOW, scope=scope),
        lambda: assign_incident(
            session, incident_id=incident_id, scope=scope, assignee="x", actor="s", now=NOW
        ),
        lambda: add_note(session, incident_id=incident_id, scope=scope, note="核对", actor="s", now=NOW),
        lambda: dispose_incident(
            session,
            incident_id=incident_id,
            scope=scope,
            disposition="referred",
            note="移送纪检监察机关处理",
            actor="s",
            now=NOW,
        ),
        lambda: incident_for_recheck(session, incident_id=incident_id, scope=scope, subject_ref=ALICE),
    ]


@pytest.mark.parametrize(
    ("scope", "sees"),
    [
        # The national level: every case, those whose registering office is not known too.
        ("", {"a", "b", "village", "unknown"}),
        ("31", {"a", "b", "village"}),
        ("310151", {"a", "b", "village"}),  # the county: both its townships' cases and below
        ("310151101", {"a", "village"}),  # town A: its own and its villages' cases
        ("310151101201", {"village"}),
        ("310151102", {"b"}),
        ("32", set()),  # another province
    ],
)
def test_a_case_is_seen_and_handled_only_within_the_jurisdiction_that_covers_it(
    store: Store, scope: str, sees: set[str]
) -> None:
    """A case belongs to the office that registered it; a scope sees a case when the scope's division code
    prefixes the case's. Outside it, reading or acting answers exactly as for a case that does not exist."""
    with Session(store.engine) as session:
        cases = {
            "a": _case_of(session, store, TOWN_A),
            "b": _case_of(session, store, TOWN_B),
            "village": _case_of(session, store, "310151101201"),
            "unknown": _case_of(session, store, None),
        }
        listed = {x["complaint_id"] for x in list_complaints(session, scope=scope)}
        assert listed == {cases[k][0] for k in sees}
        assert count_complaints(session, scope=scope) == len(sees)
        assert {x["incident_id"] for x in list_incidents(session, NOW, scope=scope)} == {
            cases[k][1] for k in sees
        }
        assert count_incidents(session, NOW, scope=scope) == len(sees)
        for label, (complaint_id, incident_id) in cases.items():
            if label in sees:
                assert get_complaint(session, complaint_id, NOW, scope=scope)["complaint_id"] == complaint_id
                assert get_incident(session, incident_id, NOW, scope=scope)["incident_id"] == incident_id
                continue
            for act in _every_act_on(session, scope, complaint_id, incident_id):
                with pytest.raises(CaseOutsideScope) as refused:
                    act()
                # The words and code of a case that does not exist: nothing tells the two apart.
                with pytest.raises(CaseNotFound) as missing:
                    get_incident(session, "I-0000000000000000", NOW, scope=scope)
                assert (refused.value.code, refused.value.message_zh.replace("投诉", "事件")) == (
                    missing.value.code,
                    missing.value.message_zh,
                )


def test_a_case_of_no_known_office_is_given_one_once_and_then_seen_there(store: Store) -> None:
    """A case whose registering office is not known (NULL org) is seen at the national level only; once
    given an office there, complaint and incident belong to it (its township sees and handles them, a
    step says so), and it keeps it: no second assignment, not even to the same office."""
    with Session(store.engine) as session:
        complaint_id, incident_id = _case_of(session, store, None)
        assert list_complaints(session, scope="310151101") == []
        complaint, change = assign_jurisdiction(
            session, complaint_id=complaint_id, scope="", org=TOWN_A, actor="national", now=NOW
        )
        session.commit()
        assert (complaint["org"], complaint["incident_id"]) == (TOWN_A, incident_id)
        assert change == {
            "kind": "supervision.case_jurisdiction_assigned",
            "actor": "national",
            "complaint_id": complaint_id,
            "incident_id": incident_id,
            "org": TOWN_A,
        }
        assert [c["complaint_id"] for c in list_complaints(session, scope="310151101")] == [complaint_id]
        incident = get_incident(session, incident_id, NOW, scope="310151101")
        assert incident["org"] == TOWN_A
        assert [(s["action"], s["note"]) for s in incident["steps"]][-1] == ("jurisdiction_assigned", TOWN_A)
        assert list_complaints(session, scope="310151102") == []
        for org in (TOWN_A, TOWN_B):
            with pytest.raises(CaseHasJurisdiction) as kept:
                assign_jurisdiction(
                    session, complaint_id=complaint_id, scope="", org=org, actor="national", now=NOW
                )
            assert kept.value.kind == "conflict" and "不能更改" in kept.value.message_zh
        assert get_complaint(session, complaint_id, NOW, scope="")["org"] == TOWN_A


@pytest.mark.parametrize(
    ("scope", "org", "refused"),
    [
        ("", "000000000000", InvalidCaseInput),  # the national root is no office: the case stays unseen
        ("", "310151101", InvalidCaseInput),  # the library takes the 12-digit form (the gateway makes it)
        ("", "3101511010001", InvalidCaseInput),
        ("", "００１", InvalidCaseInput),
        ("310151", TOWN_A, CaseOutsideScope),  # below the national level the case is not there at all
        ("310151101", TOWN_A, CaseOutsideScope),
    ],
)
def test_a_jurisdiction_is_refused_unless_an_office_given_at_the_national_level(
    sqlite: Store, scope: str, org: str, refused: type[Exception]
) -> None:
    with Session(sqlite.engine) as session:
        complaint_id, incident_id = _case_of(session, sqlite, None)
        session.commit()
        with pytest.raises(refused):
            assign_jurisdiction(session, complaint_id=complaint_id, scope=scope, org=org, actor="s", now=NOW)
        session.rollback()
        assert get_complaint(session, complaint_id, NOW, scope="")["org"] is None
        assert get_incident(session, incident_id, NOW, scope="")["org"] is None


@pytest.mark.parametrize("scope", ["3101511", "310151000000", "x", "000000000000"])
def test_a_malformed_scope_shows_nothing(sqlite: Store, scope: str) -> None:
    """A scope is a significant division-code prefix; anything else is refused, never read as "all"."""
    with Session(sqlite.engine) as session, pytest.raises(InvalidCaseInput):
        list_complaints(session, scope=scope)


DISTRICT = "310151000000"  # 区纪委监委 of the county whose townships are TOWN_A and TOWN_B


def _handed_down_case(session: Session, store: Store) -> tuple[str, str]:
    """A case the district registered and handed down to TOWN_A."""
    complaint_id, incident_id = _case_of(session, store, DISTRICT)
    hand_down_case(session, incident_id=incident_id, scope="310151", org=TOWN_A, actor="district", now=NOW)
    session.commit()
    return complaint_id, incident_id


def test_set_jurisdiction_on_a_handed_down_case_says_who_holds_it_and_how(store: Store) -> None:
    """Before: the refusal said 投诉归登记它的监督机构管辖 for a case the township holds since it was handed
    down to it. Now it names both: the office that held it, and the one it was handed down to."""
    with Session(store.engine) as session:
        complaint_id, _ = _handed_down_case(session, store)
        with pytest.raises(CaseHasJurisdiction) as handed:
            assign_jurisdiction(session, complaint_id=complaint_id, scope="", org=TOWN_B, actor="n", now=NOW)
        assert "登记它的监督机构管辖" not in handed.value.message_zh
        assert f"它原归 {DISTRICT} 管辖，已交办给 {TOWN_A} 办理" in handed.value.message_zh
        assert f"handed down to {TOWN_A}" in handed.value.message_en
        own, _ = _case_of(session, store, TOWN_B)  # registered there and never moved: still so
        with pytest.raises(CaseHasJurisdiction) as kept:
            assign_jurisdiction(session, complaint_id=own, scope="", org=TOWN_A, actor="n", now=NOW)
        assert f"投诉归登记它的监督机构（{TOWN_B}）管辖" in kept.value.message_zh


@pytest.mark.parametrize(
    ("org", "expected"),
    [
        # received / opened once, where registered; hand-downs apart (made by / into the subtree)
        (None, {"received": 2, "opened": 2, "down": 1, "down_in": 0}),
        (DISTRICT, {"received": 2, "opened": 2, "down": 1, "down_in": 0}),
        (TOWN_A, {"received": 1, "opened": 1, "down": 0, "down_in": 1}),
        (TOWN_B, {"received": 0, "opened": 0, "down": 0, "down_in": 0}),
    ],
)
def test_a_handed_down_case_is_received_once_where_registered_and_shown_as_handed_down(
    store: Store, org: str | None, expected: dict[str, int]
) -> None:
    """Before: the township a case was handed down to counted it as received (本月受理投诉) and opened — it
    received none. Now the district registered one case and handed it down, TOWN_A registered one: the
    district and national reports receive 2, TOWN_A 1 (its own) plus 1 handed down to it (本月上级交办), and
    the township figures add up to the district's with its own office's case."""
    with Session(store.engine) as session:
        _handed_down_case(session, store)
        _case_of(session, store, TOWN_A)
        session.commit()
    report = build_monthly_report(store.engine, "2026-11", load_anomaly_rules(), org=org, now=NOW)
    cases = report.cases
    assert {
        "received": cases["complaints_received"],
        "opened": cases["incidents_opened"],
        "down": cases["cases_handed_down"],
        "down_in": cases["cases_handed_down_in"],
    } == expected
    assert "本月上级交办" in render_html(report) and "cases_handed_down_in" in render_csv(report)


# -- 督办: overdue cases escalated to the office above -------------------------------------------------


@pytest.mark.parametrize(
    ("org", "above"),
    [
        ("310151101000", "310151000000"),  # a township's district
        ("310151101201", "310151101000"),  # a village committee's township
        ("310151000000", "310100000000"),  # a district's city
        ("310100000000", "310000000000"),  # a city's province
        ("310000000000", "000000000000"),  # a province's: the national level
        ("000000000000", None),  # none above the national level
    ],
)
def test_the_office_above(org: str, above: str | None) -> None:
    assert superior_office(org) == above


def test_an_overdue_case_is_escalated_once_to_the_office_above_which_lists_it(store: Store) -> None:
    """An overdue case only sat in the overdue list of the office that let it run late. Now it is
    escalated (督办) to the office above: a step and a change for the log, once; the district finds it in
    its 督办 list (the township, whose case it is, sees that it was escalated, but it is not in her
    督办 list), a neighbour township not at all; reopening starts a new round."""
    with Session(store.engine) as session:
        _, town_case = _case_of(session, store, TOWN_A)
        _, own_case = _case_of(session, store, TOWN_B)
        session.commit()
        assert incidents_to_escalate(session, NOW + timedelta(days=15)) == []  # due by the end of day 15
        late = NOW + timedelta(days=16)
        assert set(incidents_to_escalate(session, late)) == {town_case, own_case}

        done = escalate_incident(session, incident_id=town_case, now=late)
        assert done is not None
        out, change = done
        assert change == {
            "kind": "supervision.incident_escalated",
            "actor": "system",
            "incident_id": town_case,
            "complaint_id": out["complaint_id"],
            "from_org": TOWN_A,
            "org": DISTRICT,
            "escalation_level": 1,
            "org_level": "county",
            "missed": [
                {"deadline": "complaint_answer", "due_at": "2026-12-02T15:59:59.000000Z", "days_overdue": 1}
            ],
            # The district's own period: 15 days from Thursday 3 December, to the end of Friday the 18th.
            "escalation_due_at": "2026-12-18T15:59:59.000000Z",
        }
        assert (out["escalated"], out["escalated_to"]) == (True, DISTRICT)
        assert out["escalation_message"].startswith("该事件逾期未办结，已于 2026-12-03 提请上级监督机构")
        assert escalate_incident(session, incident_id=town_case, now=late) is None  # once
        session.commit()
        # The month's report: the district oversees one case of an office below it; 城桥镇 had one of its
        # cases escalated to the office above; 堡镇 neither (its own late case was not escalated here).
        for org, expected in ((None, (1, 0)), (DISTRICT, (1, 0)), (TOWN_A, (0, 1)), (TOWN_B, (0, 0))):
            report = build_monthly_report(store.engine, "2026-12", load_anomaly_rules(), org=org, now=late)
            assert (report.cases["cases_escalated_in"], report.cases["cases_escalated_up"]) == expected, org
        assert "本月逾期提请上级督办" in render_html(report) and "cases_escalated_up" in render_csv(report)
        steps = get_incident(session, town_case, late, scope=TOWN_A[:9])["steps"]
        assert (steps[-1]["action"], steps[-1]["actor"], steps[-1]["note"]) == (
            "escalated",
            "system",
            f"{TOWN_A} → {DISTRICT}",
        )

        def escalated_list(scope: str) -> list[str]:
            listed = [x["incident_id"] for x in list_incidents(session, late, scope=scope, escalated=True)]
            assert count_incidents(session, late, scope=scope, escalated=True) == len(listed)
            return listed

        assert escalated_list("310151") == [town_case]
        assert escalated_list("") == [town_case]
        assert escalated_list(TOWN_A[:9]) == []  # her own case, escalated away from her: not hers to oversee
        assert escalated_list(TOWN_B[:9]) == []
        assert get_complaint(session, out["complaint_id"], late, scope=TOWN_A[:9])["escalated"] is True

        assign_incident(session, incident_id=town_case, assignee="镇纪委", actor="s", now=late, scope="")
        dispose_incident(
            session, incident_id=town_case, disposition="unsubstantiated", note="每次访问均在授权场景内",
            actor="s", now=late, scope="",
        )  # fmt: skip
        assert escalated_list("310151") == []  # closed: nothing left to oversee
        reopened, _ = reopen_incident(
            session, incident_id=town_case, scope="", reason="居民对答复有异议", actor="s", now=late
        )
        assert reopened["escalated"] is False  # a new round, with new clocks
        assert town_case not in incidents_to_escalate(session, late)


def test_a_case_not_late_or_held_nationally_is_not_escalated(sqlite: Store) -> None:
    with Session(sqlite.engine) as session:
        _, national = _case_of(session, sqlite, "000000000000")
        _, town_case = _case_of(session, sqlite, TOWN_A)
        late = NOW + timedelta(days=16)
        assert incidents_to_escalate(session, late) == [town_case]
        assert escalate_incident(session, incident_id=national, now=late) is None
        assert escalate_incident(session, incident_id=town_case, now=NOW) is None  # not late yet
        assert get_incident(session, town_case, NOW, scope="")["escalated"] is False


CITY, PROVINCE, NATIONAL = "310100000000", "310000000000", "000000000000"
#: The district's, city's and province's period to see an escalated case closed: 5 days, counted as the
#: other periods are (calendar days; a last day that is a rest day gives way to the next working day).
FIVE_DAYS = Deadlines(escalation_days=5)


def _at(day: str) -> datetime:
    """10:00 Beijing time on ``day`` of December 2026."""
    return datetime.fromisoformat(f"2026-12-{day}T02:00:00+00:00")


def test_escalation_climbs_one_level_each_time_the_office_above_lets_its_period_run_out(store: Store) -> None:
    """Before: a case escalated to the district that the district also let run overdue sat there for ever.
    Now the office it went to has its own period; when that runs out with the case still open and overdue
    it goes one level further (district → city → province → the national level, never past it), each
    climb a step and a change naming from, to and the level, and the case is in the 督办 list of the office
    it is now with, no longer in the one below's."""

    def escalated_list(scope: str, now: datetime) -> list[str]:
        listed = [x["incident_id"] for x in list_incidents(session, now, scope=scope, escalated=True)]
        assert count_incidents(session, now, scope=scope, escalated=True) == len(listed)
        return listed

    def escalate(now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
        assert incidents_to_escalate(session, now) == [case]
        done = escalate_incident(session, incident_id=case, now=now, deadlines=FIVE_DAYS)
        assert done is not None
        assert escalate_incident(session, incident_id=case, now=now, deadlines=FIVE_DAYS) is None  # once
        session.commit()
        return done

    with Session(store.engine) as session:
        _, case = _case_of(session, store, TOWN_A)
        session.commit()
        out, change = escalate(_at("03"))
        assert (out["escalated_to"], out["escalation_level"], change["org_level"]) == (DISTRICT, 1, "county")
        assert out["escalation_due_at"] == "2026-12-08T15:59:59.000000Z"  # 5 days from Thursday the 3rd
        assert out["escalation_message"].endswith(
            "；督办期限 2026-12-08（北京时间），届时仍未办结的，提请再上一级督办"
        )

        # The district's period runs to the end of Tuesday the 8th: not a level further before it ends.
        before_end = datetime(2026, 12, 8, 15, 0, tzinfo=UTC)
        assert incidents_to_escalate(session, before_end) == []
        assert escalate_incident(session, incident_id=case, now=before_end, deadlines=FIVE_DAYS) is None

        out, change = escalate(_at("09"))
        assert change == {
            "kind": "supervision.incident_escalated",
            "actor": "system",
            "incident_id": case,
            "complaint_id": out["complaint_id"],
            "from_org": DISTRICT,
            "org": CITY,
            "escalation_level": 2,
            "org_level": "city",
            "missed": [
                {"deadline": "complaint_answer", "due_at": "2026-12-02T15:59:59.000000Z", "days_overdue": 7}
            ],
            "previous_escalation_due_at": "2026-12-08T15:59:59.000000Z",
            "escalation_due_at": "2026-12-14T15:59:59.000000Z",
        }
        assert out["escalation_message"].startswith(
            "该事件逾期未办结，督办期限届满仍未办结，已于 2026-12-09 逐级提请市级监督机构（310100000000）"
            "督办（第 2 级督办）"
        )
        assert "escalation level 2" in out["escalation_message_en"] and out["escalation_message_en"].isascii()
        # Now with the city: in its 督办 list (and those above it), no longer in the district's.
        assert escalated_list("310151", _at("09")) == []
        assert escalated_list("3101", _at("09")) == [case]
        assert escalated_list("31", _at("09")) == [case]
        assert escalated_list("", _at("09")) == [case]

        # The province's period from Tuesday the 15th ends on Sunday the 20th, a rest day: Monday the 21st.
        out, change = escalate(_at("15"))
        assert (change["from_org"], change["org"], change["escalation_level"]) == (CITY, PROVINCE, 3)
        assert out["escalation_due_at"] == "2026-12-21T15:59:59.000000Z"
        assert escalated_list("3101", _at("15")) == [] and escalated_list("31", _at("15")) == [case]

        out, change = escalate(_at("22"))
        assert (change["from_org"], change["org"], change["escalation_level"]) == (PROVINCE, NATIONAL, 4)
        assert (change["org_level"], change["escalation_due_at"], out["escalation_due_at"]) == (
            "national",
            None,
            None,
        )
        assert out["escalation_message"].endswith("；已督办至全国层面，不再逐级上提")
        assert escalated_list("31", _at("22")) == [] and escalated_list("", _at("22")) == [case]
        never = datetime(2027, 6, 1, tzinfo=UTC)  # never past the national level
        assert incidents_to_escalate(session, never) == []
        assert escalate_incident(session, incident_id=case, now=never, deadlines=FIVE_DAYS) is None

        steps = get_incident(session, case, never, scope="")["steps"]
        assert [s["note"] for s in steps if s["action"] == "escalated"] == [
            f"{TOWN_A} → {DISTRICT}",
            f"{DISTRICT} → {CITY}",
            f"{CITY} → {PROVINCE}",
            f"{PROVINCE} → {NATIONAL}",
        ]
    # The district's month: one case escalated to it, one it let go on up to the city.
    report = build_monthly_report(store.engine, "2026-12", load_anomaly_rules(), org=DISTRICT, now=never)
    assert (report.cases["cases_escalated_in"], report.cases["cases_escalated_up"]) == (1, 1)


def test_closing_stops_the_climb_and_reopening_starts_over_from_the_holder(store: Store) -> None:
    with Session(store.engine) as session:
        _, case = _case_of(session, store, TOWN_A)
        assert escalate_incident(session, incident_id=case, now=_at("03"), deadlines=FIVE_DAYS) is not None
        assign_incident(
            session, incident_id=case, assignee="区纪委", actor="d", now=_at("04"), scope="310151"
        )
        dispose_incident(
            session, incident_id=case, disposition="unsubstantiated", note="每次访问均在授权场景内",
            actor="d", now=_at("05"), scope="310151",
        )  # fmt: skip
        session.commit()
        assert incidents_to_escalate(session, _at("09")) == []  # closed: the district's period is moot
        assert escalate_incident(session, incident_id=case, now=_at("09"), deadlines=FIVE_DAYS) is None
        reopened, _ = reopen_incident(
            session, incident_id=case, scope="", reason="居民对答复有异议", actor="d", now=_at("09")
        )
        assert (reopened["escalated"], reopened["escalation_level"], reopened["escalation_due_at"]) == (
            False,
            0,
            None,
        )
        session.commit()
        # Late again after the new clocks: the round starts over, at the office above the holder.
        late = datetime(2027, 1, 10, tzinfo=UTC)
        done = escalate_incident(session, incident_id=case, now=late, deadlines=FIVE_DAYS)
        assert done is not None
        assert (done[1]["from_org"], done[1]["org"], done[1]["escalation_level"]) == (TOWN_A, DISTRICT, 1)
