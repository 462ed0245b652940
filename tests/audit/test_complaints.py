"""Complaints -> incidents on a real store: exactly the person's accesses, proofs that verify, deadlines."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit import (
    AuditLog,
    CaseConflict,
    CaseNotFound,
    Deadlines,
    InvalidCaseInput,
    Outcome,
    accesses_for_subjects,
    add_note,
    assign_incident,
    dispose_incident,
    get_incident,
    list_incidents,
    open_incident,
    register_complaint,
    verify_incident_evidence,
)
from audit.log import iter_leaf_hashes
from audit.merkle import InvalidProofError
from tests.audit.conftest import Store
from tests.audit.helpers import PSEUDONYMIZER, make_event

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
ALICE = PSEUDONYMIZER.ref("310151195701010011")
BOB = PSEUDONYMIZER.ref("310151196002020022")


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
        )
        assert change["kind"] == "supervision.complaint_registered"
        incident, change = open_incident(
            session, store.engine, complaint_id=complaint["complaint_id"], actor="supervisor-1", now=NOW
        )
        session.commit()
        assert change["evidence_events"] == 3
        full = get_incident(session, incident["incident_id"], NOW)
    assert [e["seq"] for e in full["evidence"]] == sorted(seqs["alice"] + seqs["both"])
    assert full["tree_size"] == 6
    leaves = dict(enumerate(iter_leaf_hashes(store.engine, 1, 6), start=1))
    assert verify_incident_evidence(full, leaves) == [e["seq"] for e in full["evidence"]]
    # A resident's transparency view: organisation and role, never the reader's user id.
    entries = accesses_for_subjects(store.engine, [ALICE])
    assert [e.seq for e in entries] == sorted(seqs["alice"] + seqs["both"])
    assert all("user" not in str(e.to_json()) for e in entries)


def test_tampered_evidence_fails_verification(sqlite: Store) -> None:
    populate(sqlite)
    with Session(sqlite.engine) as session:
        complaint, _ = register_complaint(
            session, subject_ref=ALICE, source="walk_in", summary="", ticket=None, actor="s", now=NOW
        )
        incident, _ = open_incident(
            session, sqlite.engine, complaint_id=complaint["complaint_id"], actor="s", now=NOW
        )
        full = get_incident(session, incident["incident_id"], NOW)
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
        c, _ = register_complaint(
            session, subject_ref=BOB, source="burden_monitoring", summary="", ticket=None, actor="s", now=NOW
        )
        assert c["due_at"] == "2026-12-05T02:00:00.000000Z"
        i, _ = open_incident(
            session, sqlite.engine, complaint_id=c["complaint_id"], actor="s", now=NOW, deadlines=deadlines
        )
        iid = i["incident_id"]
        with pytest.raises(CaseConflict):
            open_incident(session, sqlite.engine, complaint_id=c["complaint_id"], actor="s", now=NOW)
        assert list_incidents(session, NOW + timedelta(days=9), overdue=True) == []
        assert [
            x["incident_id"] for x in list_incidents(session, NOW + timedelta(days=11), overdue=True)
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
            )
        _, change = assign_incident(session, incident_id=iid, assignee="inspector-2", actor="s", now=NOW)
        assert change["kind"] == "supervision.incident_assigned"
        with pytest.raises(InvalidCaseInput, match="at least 8"):
            dispose_incident(
                session, incident_id=iid, disposition="unsubstantiated", note="x", actor="s", now=NOW
            )
        _, change = add_note(
            session, incident_id=iid, note="调取访问记录，核实场景授权", actor="inspector-2", now=NOW
        )
        assert change["kind"] == "supervision.incident_note"
        closed, change = dispose_incident(
            session,
            incident_id=iid,
            disposition="unsubstantiated",
            note="每次访问均在授权场景内",
            actor="s",
            now=NOW,
        )
        assert closed["status"] == "closed" and not closed["overdue"]
        assert list_incidents(session, NOW + timedelta(days=30), overdue=True) == []
        steps = [s["action"] for s in get_incident(session, iid, NOW)["steps"]]
        assert steps == ["opened", "assigned", "note", "disposed"]
        with pytest.raises(CaseConflict):
            add_note(session, incident_id=iid, note="late", actor="s", now=NOW)
        with pytest.raises(CaseNotFound):
            get_incident(session, "I-missing", NOW)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("summary", "投诉人身份证 11010519491231002X"),
        ("summary", "联系电话 13812345678"),
        ("ticket", "13812345678"),
        ("source", "wechat"),
        ("subject_ref", "110105194912310021"),
    ],
)
def test_plain_personal_data_never_enters_a_case_file(sqlite: Store, field: str, value: str) -> None:
    args = {"subject_ref": ALICE, "source": "walk_in", "summary": "", "ticket": None}
    args[field] = value
    with Session(sqlite.engine) as session, pytest.raises(InvalidCaseInput) as refused:
        register_complaint(session, actor="s", now=NOW, **args)  # type: ignore[arg-type]
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
