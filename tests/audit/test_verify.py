"""verify_log detects every tamper class of the audit issue, each performed on a real database.

The attacker here has full database access: each test first drops the append-only triggers.
"""

from __future__ import annotations

import json
import re
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
    # What a supervisor reads: Chinese first, the event's number, the code; then the same in English.
    zh, en = _assert_told_chinese_first(report)[0]
    assert zh.startswith(f"审计日志已被破坏：第 #{bad_seq} 条事件校验失败") and f"（{problem}）" in zh
    assert en.startswith(f"audit log BROKEN at event #{bad_seq}: {problem}")
    # ... and what to do next, last: keep the evidence, report, repair nothing.
    zh, en = _assert_told_chinese_first(report)[-1]
    verified = f"发现问题前已校验通过 {report.checked} 条事件。" if report.checked else ""
    assert f"{verified}请不要修改、修复或删除数据库，也不要恢复备份" in zh, zh
    assert "各复制一份留作证据，立即报告" in zh
    assert en.startswith(f"  {report.checked} events verified before the problem was found. Do not edit"), en


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


NARROWED: list[tuple[str, Callable[[list[dict[str, Any]]], list[dict[str, Any]]], tuple[int, int], int]] = [
    # (what, change, the events the report says hold the rewrite, how many it says are verified)
    ("edited after the last but one", lambda ev: [*ev[:11], forged(ev[11])], (11, N), 10),
    ("edited between the first two", lambda ev: [*ev[:5], forged(ev[5]), *ev[6:]], (5, 8), 4),
    ("edited before the first", lambda ev: [*ev[:2], forged(ev[2]), *ev[3:]], (1, 4), 0),
    ("reordered across two", lambda ev: swap(ev, 2, 9), (1, 4), 0),
    ("the one event between two", lambda ev: [*ev[:8], forged(ev[8]), *ev[9:]], (9, 9), 8),
]


@pytest.mark.parametrize(("name", "change", "span", "verified"), NARROWED, ids=[r[0] for r in NARROWED])
def test_a_rewrite_is_placed_between_the_signed_checkpoints_around_it(
    store: Store,
    signer: CheckpointSigner,
    tmp_path: Path,
    name: str,
    change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
    span: tuple[int, int],
    verified: int,
) -> None:
    """A rewrite with every hash recomputed passes the chain; only a signed root catches it, and a root
    pins its whole prefix. The report must not name the latest checkpoint's last event as the bad one
    and every event before it as verified: it names the events between the last checkpoint the log
    still reproduces and the first it does not, and both files."""
    log = AuditLog(store.engine)
    for size in (4, 8, 9, 10, N):
        log.append_many([make_event(i) for i in range(log.size(), size)])
        write_checkpoint(store.engine, signer, tmp_path)
    drop_triggers(store.engine)
    rewrite(store, change, recompute=True)

    report = check(store, signer, tmp_path)
    assert (report.ok, report.problem) == (False, "checkpoint_root_mismatch"), report.describe()
    # the old report: "BROKEN at event #12", "11 events verified before the problem was found"
    assert (report.checked, report.first_bad_seq) == (verified, span[1]), report.describe()
    assert report.rewritten_range == span
    files = {int(p.name.split("-")[1]): p.name for p in tmp_path.glob("checkpoint-*.json")}
    assert report.checkpoint_file == files[span[1]]
    assert report.confirmed_by == (files[span[0] - 1] if span[0] > 1 else None)
    text = "\n".join(f"{zh}\n{en}" for zh, en in report.summary())
    first, last = span
    where = f"#{first}" if first == last else f"#{first}..#{last}"
    assert f"第 {where} 号事件" in text and f"BROKEN in event{'' if first == last else 's'} {where}" in text
    assert files[last] in text and (first == 1 or files[first - 1] in text)
    assert "BROKEN at event" not in text  # not the latest checkpoint's last event as the bad one


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
    # Which signed checkpoint says the log was longer, by its file: what the auditor compares the
    # database with (the old report said only "at least 12 events").
    (signed,) = [p.name for p in checkpoints.glob("checkpoint-*.json")]
    assert report.expected == f"at least {N} events (signed checkpoint {signed})"
    assert report.expected_zh == f"至少 {N} 条事件（签名检查点 {signed}）"
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


_CJK = re.compile(r"[\u3000-\u30ff\u4e00-\u9fff\uff00-\uffef]")


def _assert_told_chinese_first(report: VerificationReport) -> list[tuple[str, str]]:
    """What a person reads: (Chinese, English) pairs, the Chinese free of English words, no Python None."""
    pairs = report.summary()
    assert pairs, report.describe()
    for zh, en in pairs:
        assert _CJK.search(zh) and not _CJK.search(en), (zh, en)
        assert "None" not in zh + en and "#None" not in zh + en, (zh, en)
    return pairs


def test_a_query_column_set_where_the_event_has_none_is_reported_without_a_python_none(
    sqlite: Store, signer: CheckpointSigner, tmp_path: Path
) -> None:
    AuditLog(sqlite.engine).append_many([make_event(0, scenario=None), make_event(1)])
    drop_triggers(sqlite.engine)
    execute(sqlite, "UPDATE audit_events SET scenario = 'DIBAO_REVIEW' WHERE seq = 1")
    report = verify_log(sqlite.engine)
    assert (report.problem, report.expected, report.found) == (
        "column_mismatch",
        "scenario=null",
        'scenario="DIBAO_REVIEW"',
    )
    _assert_told_chinese_first(report)


PERSONAL_VALUES = [
    ("actor", "张三"),
    ("actor", "110101199003071233"),  # a resident ID number
    ("actor", "110101199003071234"),  # one with a wrong check digit: still shown nowhere
    ("actor_org", "13800138000"),  # a mobile number
    ("scenario", "王五 13800138000"),
    ("occurred_at", "李四"),
]


@pytest.mark.parametrize(("column", "value"), PERSONAL_VALUES)
def test_a_query_column_edited_to_personal_data_is_reported_without_it(
    sqlite: Store, signer: CheckpointSigner, tmp_path: Path, column: str, value: str
) -> None:
    """The verdict is printed, pasted into reports and forwarded: what an edited column holds is shown
    only when it is shaped like what an event holds there (a code, an id, a time), never a name or an
    ID or mobile number someone wrote into the database."""
    build(sqlite, signer, tmp_path)
    execute(sqlite, f"UPDATE audit_events SET {column} = :v WHERE seq = 3", v=value)  # noqa: S608 -- fixed names
    report = check(sqlite, signer, tmp_path)
    assert (report.ok, report.problem, report.first_bad_seq) == (False, "column_mismatch", 3)
    text = "\n".join(f"{zh}\n{en}" for zh, en in _assert_told_chinese_first(report)) + report.describe()
    for part in value.split():
        assert part not in text
    assert (
        f"{column}: a value of {len(value)} characters" in text
        and f"{column}：一个 {len(value)} 个字符" in text
    )


def test_a_tampered_checkpoint_is_named_with_what_does_not_verify(
    sqlite: Store, signer: CheckpointSigner, tmp_path: Path
) -> None:
    build(sqlite, signer, tmp_path)
    (path,) = tmp_path.glob("checkpoint-*.json")
    signed = json.loads(path.read_bytes())
    path.write_text(json.dumps({**signed, "root_hash": "0" * 64}))
    report = check(sqlite, signer, tmp_path)
    assert (report.ok, report.problem, report.first_bad_seq) == (False, "checkpoint_invalid", None)
    assert report.checkpoint_file == path.name
    zh, en = _assert_told_chinese_first(report)[0]
    assert zh.startswith(f"审计日志校验失败：签名检查点 {path.name}（树大小 {N}）无法验证")
    assert "签名与内容不符" in zh and not re.search(
        r"[A-Za-z]{4,}", re.sub(r"[0-9a-f]{16,}", "", zh.replace(path.name, ""))
    )
    assert en.startswith(f"audit log verification FAILED: signed checkpoint {path.name} (tree size {N})")
    assert "signature does not verify" in en


def test_a_checkpoint_signed_by_another_key_says_which_key_was_expected(
    sqlite: Store, signer: CheckpointSigner, tmp_path: Path
) -> None:
    build(sqlite, signer, tmp_path)
    other = CheckpointSigner.generate()
    report = verify_log(sqlite.engine, tmp_path, other.public_key)
    zh, en = _assert_told_chinese_first(report)[0]
    assert signer.key_id in zh and other.key_id in zh
    assert signer.key_id in en and other.key_id in en


def test_an_intact_log_says_which_checkpoint_it_was_verified_against(
    sqlite: Store, signer: CheckpointSigner, tmp_path: Path
) -> None:
    log = build(sqlite, signer, tmp_path)
    log.append_many([make_event(N + i) for i in range(2)])
    (path,) = tmp_path.glob("checkpoint-*.json")
    report = check(sqlite, signer, tmp_path)
    assert report.ok and report.checkpoint_file == path.name
    pairs = _assert_told_chinese_first(report)
    assert pairs[0] == (
        f"审计日志完整：已校验 {N + 2} 条事件。",
        f"audit log intact: {N + 2} events verified",
    )
    zh, en = pairs[1]
    assert f"签名检查点 {path.name}" in zh and f"树大小 {N}" in zh and "其后 2 条事件" in zh
    assert f"signed checkpoint {path.name}" in en and f"tree size {N}" in en and "2 later events" in en
    # Without a checkpoint directory it says the log was not checked against any.
    zh, en = _assert_told_chinese_first(verify_log(sqlite.engine))[1]
    assert "未对照签名检查点" in zh and "not checked against a signed checkpoint" in en
