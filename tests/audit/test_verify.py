"""verify_log detects every tamper class of the audit issue, each performed on a real database.

The attacker here has full database access: each test first drops the append-only triggers.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit import AuditLog, CheckpointSigner, VerificationReport, verify_log, write_checkpoint
from audit.log import chain_hash
from audit.merkle import leaf_hash
from audit.tables import audit_events, audit_head, audit_subject_refs
from tests.audit.conftest import Store, sqlite_store
from tests.audit.helpers import drop_triggers, make_event, rechain, refs_for, restore, snapshot

N = 12


@pytest.fixture
def signer() -> CheckpointSigner:
    return CheckpointSigner.generate()


def build(store: Store, signer: CheckpointSigner, directory: Path, n: int = N) -> AuditLog:
    log = AuditLog(store.engine)
    log.append_many([make_event(i) for i in range(n)])
    write_checkpoint(store.engine, signer, directory)
    drop_triggers(store.engine)
    return log


def check(store: Store, signer: CheckpointSigner, directory: Path) -> VerificationReport:
    return verify_log(store.engine, directory, signer.public_key, chunk=5)


def execute(store: Store, statement: str, **params: Any) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def delete_from(store: Store, where: str) -> None:
    execute(store, f"DELETE FROM audit_subject_refs WHERE {where}")  # noqa: S608 -- fixed test clauses
    execute(store, f"DELETE FROM audit_events WHERE {where}")  # noqa: S608


def test_intact_log_passes_with_progress(store: Store, signer: CheckpointSigner, tmp_path: Path) -> None:
    build(store, signer, tmp_path)
    calls: list[tuple[int, int]] = []
    report = verify_log(
        store.engine,
        tmp_path,
        signer.public_key,
        lambda done, total: calls.append((done, total)),
        chunk=5,
    )
    assert report.ok and report.checked == N and report.first_bad_seq is None
    assert report.checkpoint is not None and report.checkpoint.tree_size == N
    assert calls == [(5, N), (10, N), (N, N)]
    assert "intact" in report.describe()


def test_empty_log_without_checkpoint_passes(store: Store) -> None:
    report = verify_log(store.engine)
    assert report.ok and report.checked == 0


# (name, tamper, expected problem, first bad seq)
Tamper = Callable[[Store], None]
ROW_TAMPERS: list[tuple[str, Tamper, str, int]] = [
    (
        "edited body",
        lambda s: execute(s, "UPDATE audit_events SET body = replace(body, 'user-', 'usr-') WHERE seq = 4"),
        "entry_hash_mismatch",
        4,
    ),
    (
        "edited entry hash",
        lambda s: execute(s, "UPDATE audit_events SET entry_hash = :h WHERE seq = 6", h=b"\x01" * 32),
        "entry_hash_mismatch",
        6,
    ),
    (
        "edited prev hash",
        lambda s: execute(s, "UPDATE audit_events SET prev_hash = :h WHERE seq = 6", h=b"\x01" * 32),
        "prev_hash_mismatch",
        6,
    ),
    (
        "edited leaf hash",
        lambda s: execute(s, "UPDATE audit_events SET leaf_hash = :h WHERE seq = 6", h=b"\x01" * 32),
        "leaf_hash_mismatch",
        6,
    ),
    (
        "edited query column",
        lambda s: execute(s, "UPDATE audit_events SET actor_org = '330102001999' WHERE seq = 3"),
        "column_mismatch",
        3,
    ),
    (
        "edited occurred_at",
        lambda s: execute(
            s, "UPDATE audit_events SET occurred_at = :t WHERE seq = 3", t="2020-01-01 00:00:00.000000"
        ),
        "column_mismatch",
        3,
    ),
    (
        "hidden from complaint lookup",
        lambda s: execute(s, "DELETE FROM audit_subject_refs WHERE seq = 5"),
        "subject_refs_mismatch",
        5,
    ),
    ("deleted event", lambda s: delete_from(s, "seq = 7"), "missing_event", 7),
    ("truncated tail, head left alone", lambda s: delete_from(s, "seq > 10"), "missing_event", 11),
    (
        "head moved",
        lambda s: execute(s, "UPDATE audit_head SET entry_hash = :h", h=b"\x02" * 32),
        "head_mismatch",
        N,
    ),
]


@pytest.mark.parametrize(
    ("name", "tamper", "problem", "bad_seq"), ROW_TAMPERS, ids=[t[0] for t in ROW_TAMPERS]
)
def test_row_tampering_is_detected(
    store: Store,
    signer: CheckpointSigner,
    tmp_path: Path,
    name: str,
    tamper: Tamper,
    problem: str,
    bad_seq: int,
) -> None:
    build(store, signer, tmp_path)
    tamper(store)
    report = check(store, signer, tmp_path)
    assert (report.ok, report.problem, report.first_bad_seq) == (False, problem, bad_seq), report.describe()
    assert report.expected and report.found and report.expected != report.found


def rewrite(
    store: Store, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]], *, recompute: bool
) -> None:
    events, _, head = snapshot(store.engine)
    events = change(events)
    if recompute:
        head = rechain(events)
    restore(store.engine, events, refs_for(events), head)


def forged(row: dict[str, Any]) -> dict[str, Any]:
    """The row with its event turned into a different one, query columns kept consistent with it."""
    return {**row, "body": row["body"].replace("data.read", "data.list"), "kind": "data.list"}


def swap(events: list[dict[str, Any]], a: int, b: int) -> list[dict[str, Any]]:
    out = [dict(r) for r in events]
    keep = ("seq",)
    ra = {k: v for k, v in out[a].items() if k not in keep}
    rb = {k: v for k, v in out[b].items() if k not in keep}
    out[a].update(rb)
    out[b].update(ra)
    return out


def insert_at(events: list[dict[str, Any]], index: int) -> list[dict[str, Any]]:
    """Slip a forged event in at ``index``, its own hashes right, the later rows merely renumbered."""
    new = forged(events[index])
    new["entry_hash"] = chain_hash(new["prev_hash"], new["body"].encode())
    new["leaf_hash"] = leaf_hash(new["body"].encode())
    out = [dict(r) for r in events[:index]] + [new] + [dict(r) for r in events[index:]]
    for seq, row in enumerate(out, start=1):
        row["seq"] = seq
    return out


REWRITES: list[tuple[str, Callable[[list[dict[str, Any]]], list[dict[str, Any]]], bool, str, int]] = [
    ("reordered events", lambda ev: swap(ev, 3, 8), False, "prev_hash_mismatch", 4),
    ("inserted event", lambda ev: insert_at(ev, 5), False, "prev_hash_mismatch", 7),
    # A careful attacker recomputes every hash and the head: only the signed checkpoint notices.
    ("reordered, chain recomputed", lambda ev: swap(ev, 3, 8), True, "checkpoint_root_mismatch", N),
    ("inserted, chain recomputed", lambda ev: insert_at(ev, 5), True, "checkpoint_root_mismatch", N),
    (
        "edited, chain recomputed",
        lambda ev: [*ev[:2], forged(ev[2]), *ev[3:]],
        True,
        "checkpoint_root_mismatch",
        N,
    ),
    ("truncated tail, head recomputed", lambda ev: ev[:9], True, "log_shorter_than_checkpoint", 10),
    ("emptied log", lambda ev: [], True, "log_shorter_than_checkpoint", 1),
]


@pytest.mark.parametrize(
    ("name", "change", "recompute", "problem", "bad_seq"), REWRITES, ids=[r[0] for r in REWRITES]
)
def test_history_rewrites_are_detected(
    store: Store,
    signer: CheckpointSigner,
    tmp_path: Path,
    name: str,
    change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
    recompute: bool,
    problem: str,
    bad_seq: int,
) -> None:
    build(store, signer, tmp_path)
    rewrite(store, change, recompute=recompute)
    report = check(store, signer, tmp_path)
    assert (report.ok, report.problem, report.first_bad_seq) == (False, problem, bad_seq), report.describe()
    if recompute:  # without the checkpoint the rewrite would have passed: that is what it is for
        assert verify_log(store.engine).ok


def test_event_appended_behind_the_heads_back_is_detected(
    store: Store, signer: CheckpointSigner, tmp_path: Path
) -> None:
    build(store, signer, tmp_path)
    events, _, _ = snapshot(store.engine)
    extra = {**forged(events[-1]), "seq": N + 1, "prev_hash": events[-1]["entry_hash"]}
    extra["entry_hash"] = chain_hash(extra["prev_hash"], extra["body"].encode())
    extra["leaf_hash"] = leaf_hash(extra["body"].encode())
    with store.engine.begin() as conn:
        conn.execute(audit_events.insert(), [extra])
        conn.execute(audit_subject_refs.insert(), refs_for([extra]))
    report = check(store, signer, tmp_path)
    assert (report.ok, report.problem, report.first_bad_seq) == (False, "event_beyond_head", N + 1)


def test_invalid_checkpoint_fails_verification(
    store: Store, signer: CheckpointSigner, tmp_path: Path
) -> None:
    build(store, signer, tmp_path)
    report = verify_log(store.engine, tmp_path, CheckpointSigner.generate().public_key)
    assert (report.ok, report.problem) == (False, "checkpoint_invalid")


def test_restored_older_sqlite_snapshot_is_detected(tmp_path: Path, signer: CheckpointSigner) -> None:
    """A real file-level restore: copy of the database taken earlier, put back after a checkpoint."""
    store = sqlite_store(tmp_path / "live.db")
    log = AuditLog(store.engine)
    log.append_many([make_event(i) for i in range(5)])
    with store.engine.connect() as conn:
        conn.exec_driver_sql(f"VACUUM INTO '{tmp_path / 'backup.db'}'")
    log.append_many([make_event(i) for i in range(5, N)])
    checkpoints = tmp_path / "checkpoints"
    write_checkpoint(store.engine, signer, checkpoints)
    store.engine.dispose()
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"live.db{suffix}").unlink(missing_ok=True)
    shutil.copy(tmp_path / "backup.db", tmp_path / "live.db")
    restored = sqlite_store(tmp_path / "live.db")

    report = verify_log(restored.engine, checkpoints, signer.public_key)
    assert (report.ok, report.problem, report.first_bad_seq) == (False, "log_shorter_than_checkpoint", 6)
    assert verify_log(restored.engine).ok  # the snapshot itself is a consistent log

    # Writing on after the restore makes the log long enough again, but its root cannot match.
    AuditLog(restored.engine).append_many([make_event(100 + i) for i in range(N)])
    report = verify_log(restored.engine, checkpoints, signer.public_key)
    assert (report.ok, report.problem, report.first_bad_seq) == (False, "checkpoint_root_mismatch", N)
    restored.engine.dispose()


# -- the law: any single byte changed in any stored event fails verification ------------------------

COLUMNS = [
    "body",
    "prev_hash",
    "entry_hash",
    "leaf_hash",
    "kind",
    "outcome",
    "actor",
    "actor_org",
    "scenario",
    "dataset",
    "occurred_at",
]


@pytest.fixture(scope="module")
def tamper_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    store = sqlite_store(tmp_path_factory.mktemp("law") / "audit.db")
    AuditLog(store.engine).append_many([make_event(i) for i in range(6)])
    drop_triggers(store.engine)
    return store


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seq=st.integers(1, 6),
    column=st.sampled_from(COLUMNS),
    position=st.integers(0, 10_000),
    mask=st.integers(1, 255),
)
def test_any_single_byte_changed_fails_verification(
    tamper_store: Store, seq: int, column: str, position: int, mask: int
) -> None:
    engine = tamper_store.engine
    with engine.connect() as conn:
        original = conn.exec_driver_sql(
            f"SELECT {column} FROM audit_events WHERE seq = ?",  # noqa: S608 -- column from COLUMNS
            (seq,),
        ).scalar_one()
    raw = bytearray(original.encode() if isinstance(original, str) else original)
    raw[position % len(raw)] ^= mask
    try:
        changed: object = raw.decode("utf-8")
        expression = "?"
    except UnicodeDecodeError:  # store the invalid UTF-8 as TEXT anyway, as a raw edit of the file could
        changed, expression = bytes(raw), "CAST(? AS TEXT)" if isinstance(original, str) else "?"
    with engine.begin() as conn:
        statement = f"UPDATE audit_events SET {column} = {expression} WHERE seq = ?"  # noqa: S608
        conn.exec_driver_sql(statement, (changed, seq))
    try:
        report = verify_log(engine)
        assert not report.ok
        assert report.first_bad_seq == seq, report.describe()
    finally:
        with engine.begin() as conn:
            statement = f"UPDATE audit_events SET {column} = ? WHERE seq = ?"  # noqa: S608
            conn.exec_driver_sql(statement, (original, seq))
    assert verify_log(engine).ok


def test_tables_are_the_ones_verified() -> None:
    """Guard for the law above: every column of audit_events is either covered or the key."""
    assert set(audit_events.c.keys()) == {"seq", *COLUMNS}
    assert set(audit_subject_refs.c.keys()) == {"subject_ref", "seq"}
    assert set(audit_head.c.keys()) == {"id", "seq", "entry_hash"}
