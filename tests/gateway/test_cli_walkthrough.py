"""What a new user meets following README.md's walk-through with the CLI: arguments that work on any day,
secrets kept out of argv and world-readable files, and messages in Chinese first, English after.

The API commands run through Typer against the loopback stand-in of ``test_cli_client`` (it records what it
received), the offline ones against real files.
"""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

from audit import AuditLog, CheckpointSigner, archive_month
from gateway.cli import app as grassroots
from gateway.commands.policy import resolve_at
from policies.permissions import ACTIONS
from policies.scenarios import CHINA_STANDARD_TIME
from tests.audit.helpers import drop_triggers, make_event
from tests.gateway.test_cli_audit import migrated_sqlite_store
from tests.gateway.test_cli_client import Gateway, serve_gateway

runner = CliRunner()


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    yield from serve_gateway()


def _cli(*args: str, env: dict[str, str] | None = None) -> Result:
    env = {"GRASSROOTS_TOKEN": "", "GRASSROOTS_URL": "", **(env or {})}
    return runner.invoke(grassroots, list(args), env=env)


_DECIDE = [
    "policy", "decide", "--org", "310151101201", "--role", "village_cadre",
    "--dataset", "residents", "--scenario", "DIBAO_REVIEW",
]  # fmt: skip


def test_decide_at_a_beijing_time_of_day_sends_its_next_occurrence(gateway: Gateway) -> None:
    gateway.answer(200, {"allowed": False, "code": "outside_hours"})
    before = datetime.now(UTC)
    result = _cli(*_DECIDE, "--at", "23:30", "--url", gateway.url, "--token", "t")
    assert result.exit_code == 0, result.stderr
    at = datetime.fromisoformat(gateway.received[0].body["at"])
    # Beijing time, 23:30, and in the next 24 hours: never before the demo's grants (valid from the seed).
    assert at.utcoffset() == timedelta(hours=8)
    assert (at.hour, at.minute) == (23, 30)
    assert before < at <= before + timedelta(days=1)


def test_decide_sends_the_record_count_hint(gateway: Gateway) -> None:
    gateway.answer(200, {"allowed": False, "code": "page_size_over_limit"})
    result = _cli(*_DECIDE, "--record-count-hint", "150", "--url", gateway.url, "--token", "t")
    assert result.exit_code == 0, result.stderr
    assert gateway.received[0].body["record_count_hint"] == 150
    _cli(*_DECIDE, "--url", gateway.url, "--token", "t")
    assert "record_count_hint" not in gateway.received[1].body


@pytest.mark.parametrize("typed", ["2026-12-07T23:30", "2026-12-07 23:30:00", "2330", "2026-12-07", "明晚"])
@pytest.mark.parametrize("command", ["decide", "explain"])
def test_at_without_an_offset_is_refused_before_sending_naming_both_forms(
    gateway: Gateway, typed: str, command: str
) -> None:
    """`--at 2026-12-07T23:30` (no zone) or `--at 2330` was sent and answered by the server's
    "须为带时区的时间", which never named the HH:MM form this option also takes. Now refused before anything
    is sent (exit 2), naming both forms."""
    args = [a if a != "decide" else command for a in _DECIDE]
    result = _cli(*args, "--at", typed, "--url", gateway.url, "--token", "t")
    assert result.exit_code == 2
    assert gateway.received == []
    zh, en = result.stderr.strip().split("\n")
    assert "带时区" in zh and "HH:MM" in zh and "未发出请求" in zh
    assert "with its offset" in en and "HH:MM" in en and en.isascii()
    # Full-width digits are read as the server reads them.
    gateway.answer(200, {"allowed": True, "code": "allowed"})
    sent = _cli(*args, "--at", "２０２６-12-07T23:30:00+08:00", "--url", gateway.url, "--token", "t")
    assert sent.exit_code == 0, sent.stderr


def test_resolve_at_rolls_over_to_tomorrow_once_the_time_has_passed_today() -> None:
    now = datetime(2026, 11, 22, 23, 45, tzinfo=CHINA_STANDARD_TIME)
    assert resolve_at("23:30", now) == "2026-11-23T23:30:00+08:00"
    assert resolve_at("7:05", now) == "2026-11-23T07:05:00+08:00"
    early = datetime(2026, 11, 22, 6, 0, tzinfo=CHINA_STANDARD_TIME)
    assert resolve_at("23:30:15", early) == "2026-11-22T23:30:15+08:00"
    # A full ISO 8601 time passes through unchanged, and no --at stays "now" (decided by the server).
    assert resolve_at("2026-11-22T23:30:00+08:00", now) == "2026-11-22T23:30:00+08:00"
    assert resolve_at(None, now) is None


def test_decide_refuses_an_impossible_time_of_day_before_calling(gateway: Gateway) -> None:
    result = _cli(*_DECIDE, "--at", "25:30", "--url", gateway.url, "--token", "t")
    assert result.exit_code == 2
    assert result.stderr.startswith("--at 25:30：不是有效的时刻")
    assert gateway.received == []


def _two_archives(tmp_path: Path) -> tuple[list[Path], Path, str]:
    """Two signed monthly archives of a real audit log (SQLite), the public key's file and the log's URL."""
    store = migrated_sqlite_store(tmp_path / "audit.db")
    signer = CheckpointSigner.generate()
    log = AuditLog(store.engine)
    jan, feb = datetime(2026, 1, 10, 2, tzinfo=UTC), datetime(2026, 2, 10, 2, tzinfo=UTC)
    log.append_many(make_event(i, occurred_at=jan + timedelta(minutes=i)) for i in range(5))
    log.append_many(make_event(i, occurred_at=feb + timedelta(minutes=i)) for i in range(5, 12))
    manifests = [
        archive_month(store.engine, signer, tmp_path / "archives", month).manifest_file
        for month in ("2026-01", "2026-02")
    ]
    store.engine.dispose()
    public_key = tmp_path / "checkpoint-public.pem"
    public_key.write_bytes(signer.public_key_pem())
    return manifests, public_key, store.url


def test_archive_verify_takes_several_manifests_and_says_which_fails(tmp_path: Path) -> None:
    manifests, public_key, url = _two_archives(tmp_path)
    env = {"GRASSROOTS_DATABASE_URL": url, "GRASSROOTS_DATA_DIR": str(tmp_path)}
    verify = ["supervise", "archive-verify", *map(str, manifests), "--public-key", str(public_key)]
    ok = _cli(*verify, "--against-db", env=env)
    assert ok.exit_code == 0, ok.output
    # Each archive on its own lines, named, Chinese first.
    assert ok.stdout.splitlines() == [
        f"{manifests[0].name}: 归档完好：已核对 5 个事件，且与数据库中的日志一致。",
        f"{manifests[0].name}: archive intact: 5 events verified and match the live log",
        f"{manifests[1].name}: 归档完好：已核对 7 个事件，且与数据库中的日志一致。",
        f"{manifests[1].name}: archive intact: 7 events verified and match the live log",
    ]
    # Tamper with the second archive's events: the first still verifies, the second is named, exit 1.
    events = manifests[1].with_name(manifests[1].name.replace(".manifest.json", ".jsonl.gz"))
    events.write_bytes(events.read_bytes()[:-8] + b"\0" * 8)
    bad = _cli(*verify, env=env)
    assert bad.exit_code == 1
    assert bad.stdout.splitlines() == [
        f"{manifests[0].name}: 归档完好：已核对 5 个事件。",
        f"{manifests[0].name}: archive intact: 5 events verified",
    ]
    assert bad.stderr.startswith(f"{manifests[1].name}: 归档验证未通过")
    assert f"2 个归档中有 1 个未通过校验：{manifests[1]}" in bad.stderr
    assert f"1 of 2 archives do NOT verify: {manifests[1]}" in bad.stderr


def test_client_secret_output_writes_a_private_file_and_prints_no_secret(
    gateway: Gateway, tmp_path: Path
) -> None:
    answer = {"client_id": "elderly-care-visits", "client_secret": "s3cr3t-value", "system_id": "x"}
    gateway.answer(201, answer)
    target = tmp_path / "elderly-care.json"
    target.write_text("old")
    target.chmod(0o644)  # an existing, world-readable file is narrowed, not kept as it was
    result = _cli(
        "admission", "client-secret", "elderly-care-visits", "--output", str(target),
        "--url", gateway.url, "--token", "t",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(target.read_text()) == answer
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert "s3cr3t-value" not in result.output
    assert result.stdout.startswith(f"客户端密钥已写入 {target}（仅本人可读，0600）")


def test_client_secret_output_that_cannot_be_written_is_refused_before_any_secret_is_issued(
    gateway: Gateway, tmp_path: Path
) -> None:
    target = tmp_path / "no-such-directory" / "elderly-care.json"
    result = _cli(
        "admission", "client-secret", "elderly-care-visits", "--output", str(target),
        "--url", gateway.url, "--token", "t",
    )  # fmt: skip
    assert result.exit_code == 2
    assert _chinese_then_english(result.stderr)[0].startswith(f"无法写入 {target}")
    assert gateway.received == []


def test_admission_me_takes_the_system_token_from_the_environment_or_a_prompt(gateway: Gateway) -> None:
    gateway.answer(200, {"system_id": "elderly-care-visits", "status": "approved"})
    from_env = _cli("admission", "me", "--url", gateway.url, env={"GRASSROOTS_SYSTEM_TOKEN": "sys-tok-1"})
    assert from_env.exit_code == 0, from_env.output
    prompted = runner.invoke(grassroots, ["admission", "me", "--url", gateway.url], input="sys-tok-2\n")
    assert prompted.exit_code == 0, prompted.output
    assert "sys-tok-2" not in prompted.output  # not echoed
    assert [(r.path, r.authorization) for r in gateway.received] == [
        ("/api/v1/systems/me", "Bearer sys-tok-1"),
        ("/api/v1/systems/me", "Bearer sys-tok-2"),
    ]


@pytest.mark.parametrize(
    ("args", "env_var"),
    [
        (["admission", "me"], "GRASSROOTS_SYSTEM_TOKEN"),
        (["admission", "token", "--client-id", "cid"], "GRASSROOTS_CLIENT_SECRET"),
        (
            ["admission", "outbound-credential", "civil-affairs-registry", "--token", "t"],
            "GRASSROOTS_OUTBOUND_CREDENTIAL",
        ),
    ],
)
def test_a_secret_with_no_terminal_and_nothing_piped_names_its_variable(
    gateway: Gateway, args: list[str], env_var: str
) -> None:
    """In a script (no terminal, nothing on standard input) the prompt used to fall back to getpass's
    'input may be echoed' warning and an English 'Aborted!'; now it names the variable to set, exit 2."""
    result = _cli(*args, "--url", gateway.url)
    assert result.exit_code == 2, result.output
    zh, en = _chinese_then_english(result.stderr)
    assert zh.startswith("需要") and env_var in zh and env_var in en
    assert "Aborted" not in result.output
    assert gateway.received == []


def test_a_variable_set_empty_by_a_failed_command_is_said_to_be_empty(gateway: Gateway) -> None:
    """``export GRASSROOTS_SYSTEM_TOKEN=$(grassroots admission token --quiet)`` with the token refused (the
    system suspended) leaves the variable empty; ``admission me`` then told her only to set it, which she
    had just done. It now says the variable is empty and that the command setting it may have failed."""
    result = _cli("admission", "me", "--url", gateway.url, env={"GRASSROOTS_SYSTEM_TOKEN": ""})
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert (
        lines[0]
        == "环境变量 GRASSROOTS_SYSTEM_TOKEN 已设置，但是空的：给它赋值的命令可能失败了，请看那条命令的提示。"
    )
    assert lines[1].startswith("GRASSROOTS_SYSTEM_TOKEN is set but empty")
    assert lines[2].startswith("需要系统访问令牌")
    assert gateway.received == []
    unset = _cli("admission", "me", "--url", gateway.url)
    assert "已设置，但是空的" not in unset.stderr


def test_a_secret_piped_on_standard_input_is_used_and_not_echoed(gateway: Gateway) -> None:
    gateway.answer(204, None)
    result = runner.invoke(
        grassroots,
        ["admission", "outbound-credential", "civil-affairs-registry", "--url", gateway.url, "--token", "t"],
        input="key-from-pipe\n",
        env={"GRASSROOTS_OUTBOUND_CREDENTIAL": ""},
    )
    assert result.exit_code == 0, result.output
    assert "key-from-pipe" not in result.output
    assert [r.body for r in gateway.received] == [{"credential": "key-from-pipe"}]


_DRY_RUN = ["masking", "dry-run", "--role", "village_cadre", "--scenario", "DIBAO_REVIEW"]
_SAMPLE = {"id_number": "110102199003071234", "mobile": "13812345678"}


def test_dry_run_reads_the_sample_from_a_file_or_standard_input(gateway: Gateway, tmp_path: Path) -> None:
    gateway.answer(200, {"masked": {}})
    sample = tmp_path / "sample.json"
    sample.write_text(json.dumps(_SAMPLE), encoding="utf-8")
    from_file = _cli(*_DRY_RUN, "--sample-file", str(sample), "--url", gateway.url, "--token", "t")
    assert from_file.exit_code == 0, from_file.output
    from_stdin = runner.invoke(
        grassroots,
        [*_DRY_RUN, "--sample-file", "-", "--url", gateway.url, "--token", "t"],
        input=json.dumps(_SAMPLE),
    )
    assert from_stdin.exit_code == 0, from_stdin.output
    assert [r.body["sample"] for r in gateway.received] == [_SAMPLE, _SAMPLE]


def test_dry_run_refuses_a_sample_that_is_not_json_bilingually(gateway: Gateway, tmp_path: Path) -> None:
    sample = tmp_path / "sample.json"
    sample.write_text("{not json", encoding="utf-8")
    result = _cli(*_DRY_RUN, "--sample-file", str(sample), "--url", gateway.url, "--token", "t")
    assert result.exit_code == 2
    assert result.stderr == (
        "--sample-file 必须是 JSON（第 1 行第 2 列有误）。\n"
        "--sample-file must be JSON (line 1, column 2: Expecting property name enclosed in double quotes).\n"
    )
    assert gateway.received == []


@pytest.mark.parametrize(
    "args",
    [
        ["admission", "register", "--file", "{missing}"],
        ["admission", "public-key", "elderly-care-visits", "--file", "{missing}"],
        ["masking", "propose-rule", "--rule", "@{missing}", "--reason", "村干部回访只需尾号"],
        ["policy", "replay", "--days", "7", "--permissions", "{missing}"],
    ],
)
def test_a_file_that_cannot_be_read_is_named_not_a_traceback(
    gateway: Gateway, tmp_path: Path, args: list[str]
) -> None:
    missing = tmp_path / "no-such.json"
    result = _cli(*(a.format(missing=missing) for a in args), "--url", gateway.url, "--token", "t")
    assert result.exit_code == 2, result.output
    assert not isinstance(result.exception, OSError)
    assert _chinese_then_english(result.stderr) == (
        f"无法读取 {missing}（No such file or directory）。",
        f"Cannot read {missing} (No such file or directory).",
    )
    assert gateway.received == []


def test_a_registration_file_that_is_not_json_says_where(gateway: Gateway, tmp_path: Path) -> None:
    registration = tmp_path / "registration.json"
    registration.write_text('{"system_id": "elderly-care-visits",\n "name": "高龄关爱"\n', encoding="utf-8")
    result = _cli("admission", "register", "--file", str(registration), "--url", gateway.url, "--token", "t")
    assert result.exit_code == 2, result.output
    zh, en = _chinese_then_english(result.stderr)
    assert zh == "--file 必须是 JSON（第 3 行第 1 列有误）。"
    assert en.startswith("--file must be JSON (line 3, column 1")
    assert gateway.received == []


def test_a_misspelt_key_of_a_registration_file_is_named_before_any_call(
    gateway: Gateway, tmp_path: Path
) -> None:
    """``"colects"`` in --file went to the gateway, which refused it (exit 1) naming the eleven keys it
    takes but not the one misspelt. The CLI names it, and the nearest key, on the typist's terminal; the
    fields of a registration read back whole (status, filing_number) are still taken."""
    registration = tmp_path / "registration.json"
    registration.write_text(
        '{"system_id": "elderly-care-visits", "colects": ["residents.name"], "status": "approved"}',
        encoding="utf-8",
    )
    result = _cli("admission", "register", "--file", str(registration), "--url", gateway.url, "--token", "t")
    assert result.exit_code == 2, result.output
    zh, en = _chinese_then_english(result.stderr)
    assert "中有登记没有的项：colects（是不是 collects_fields？）。可填写的项是 system_id、" in zh
    assert zh.endswith("本次未提交。")
    assert "colects (did you mean collects_fields?)" in en and en.endswith("nothing was sent.")
    assert gateway.received == []
    gateway.answer(200, {})
    registration.write_text('{"system_id": "elderly-care-visits", "status": "approved"}', encoding="utf-8")
    result = _cli("admission", "register", "--file", str(registration), "--url", gateway.url, "--token", "t")
    assert result.exit_code == 0, result.stderr


def test_checklist_answers_typed_full_width_are_the_same_answers(gateway: Gateway) -> None:
    """A Chinese input method in full-width mode types ＝ and ｙｅｓ; they were refused as a malformed
    answer. The notes keep their Chinese punctuation."""
    gateway.answer(200, {})
    result = _cli(
        "admission", "register", "--system-id", "elderly-care-visits", "--checklist", "forces_checkins＝否",
        "--checklist", "offers_complaint_entry=ｙｅｓ", "--checklist", "notes＝已与平台沟通，可嵌入",
        "--url", gateway.url, "--token", "t",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert gateway.received[0].body["checklist"] == {
        "forces_checkins": False,
        "offers_complaint_entry": True,
        "notes": "已与平台沟通，可嵌入",
    }


def test_a_misspelt_checklist_question_is_named_with_the_nearest_one_before_any_call(
    gateway: Gateway,
) -> None:
    """``--checklist forces_checkin=no`` reached the gateway, which refused it (exit 1) naming the questions
    but not the one misspelt: the department compared five names by eye. The CLI, on the typist's own
    terminal, names it and the nearest question, and sends nothing."""
    result = _cli(
        "admission", "register", "--system-id", "elderly-care-visits", "--checklist", "forces_checkins=no",
        "--checklist", "forces_checkin=no", "--url", gateway.url, "--token", "t",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    zh, en = _chinese_then_english(result.stderr)
    assert zh.startswith("--checklist forces_checkin：减负清单上没有这个问题。您是不是要写 forces_checkins？")
    assert zh.endswith("本次未提交。") and "offers_complaint_entry（是否提供投诉反馈入口）" in zh
    assert "Did you mean forces_checkins?" in en and en.endswith("nothing was sent.")
    assert gateway.received == []


@pytest.mark.parametrize(
    ("typed", "sent"),
    [("同意", "approve"), ("驳回", "reject"), ("要求修改", "request_changes"), (" Reject ", "reject")],
)
def test_a_vote_typed_in_chinese_is_that_vote(gateway: Gateway, typed: str, sent: str) -> None:
    gateway.answer(201, {})
    result = _cli(
        "admission", "review", "elderly-care-visits", "--vote", typed, "--comment", "意见",
        "--url", gateway.url, "--token", "t",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert gateway.received[0].body["vote"] == sent


def test_a_vote_that_is_none_is_refused_naming_the_chinese_words_before_sending(gateway: Gateway) -> None:
    """`--vote ok` was sent, and the answer named only approve, reject, request_changes: a reviewer who had
    read that 同意 works was not told which Chinese words do."""
    result = _cli(
        "admission", "review", "elderly-care-visits", "--vote", "ok", "--comment", "意见",
        "--url", gateway.url, "--token", "t",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert gateway.received == []
    zh, en = _chinese_then_english(result.stderr)
    assert "同意、通过、驳回" in zh and "本次未表决" in zh and "nothing was voted" in en


def _offline_env(tmp_path: Path, url: str | None = None) -> dict[str, str]:
    return {
        "GRASSROOTS_DATA_DIR": str(tmp_path),
        "GRASSROOTS_DATABASE_URL": url or f"sqlite:///{tmp_path / 'gateway.db'}",
        "GRASSROOTS_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
    }


def _chinese_then_english(text: str) -> tuple[str, str]:
    """The first line is Chinese, the second its English."""
    zh, en, *_ = text.splitlines()
    assert _CJK.search(zh) and not _CJK.search(en), text
    return zh, en


_CJK = re.compile(r"[\u3000-\u30ff\u4e00-\u9fff\uff00-\uffef]")


def test_audit_verify_and_checkpoint_speak_chinese_first(tmp_path: Path) -> None:
    store = migrated_sqlite_store(tmp_path / "audit.db")
    AuditLog(store.engine).append_many(make_event(i) for i in range(3))
    store.engine.dispose()
    env = _offline_env(tmp_path, store.url)
    written = _cli("audit", "checkpoint", env=env)
    assert written.exit_code == 0, written.output
    zh, en = _chinese_then_english(written.stdout)
    assert zh.startswith("已写入签名检查点：树大小 3，根哈希 ") and en.startswith(
        "checkpoint written: size 3"
    )
    verified = _cli("audit", "verify", "--quiet", env=env)
    assert verified.exit_code == 0, verified.output
    # The three events and the checkpoint's own record (audit.checkpoint_written, by the CLI's operator).
    assert _chinese_then_english(verified.stdout) == (
        "审计日志完整：已校验 4 条事件。",
        "audit log intact: 4 events verified",
    )


def test_audit_verify_reports_a_broken_log_chinese_first(tmp_path: Path) -> None:
    store = migrated_sqlite_store(tmp_path / "audit.db")
    AuditLog(store.engine).append_many(make_event(i) for i in range(3))
    drop_triggers(store.engine)
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_events SET actor = 'someone-else' WHERE seq = 2"))
    store.engine.dispose()
    broken = _cli("audit", "verify", "--quiet", env=_offline_env(tmp_path, store.url))
    assert broken.exit_code == 1
    zh, en = _chinese_then_english(broken.stderr)
    assert zh.startswith("审计日志已被破坏：第 #2 条事件校验失败") and en.startswith(
        "audit log BROKEN at event #2"
    )


def test_db_current_says_what_to_do_in_both_languages(tmp_path: Path) -> None:
    result = _cli("db", "current", env=_offline_env(tmp_path))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("数据库结构版本：无（未迁移）  代码所需版本：")
    assert lines[1].startswith("database: none  code: ")
    assert lines[2:] == [
        "请运行 `grassroots db upgrade` 迁移数据库。",
        "Run `grassroots db upgrade` to migrate it.",
    ]


def test_dev_token_for_an_unknown_user_is_refused_chinese_first(tmp_path: Path) -> None:
    result = _cli("dev-token", "nobody", env=_offline_env(tmp_path))
    assert result.exit_code == 2
    assert _chinese_then_english(result.stderr) == (
        "没有名为 'nobody' 的演示用户；`grassroots dev-users` 列出全部演示用户。",
        "no demo user named 'nobody'; see `grassroots dev-users`",
    )


def test_policy_validate_speaks_chinese_first(tmp_path: Path) -> None:
    assert _chinese_then_english(_cli("policy", "validate").stdout) == (
        "策略文件校验通过。",
        "policy files valid",
    )
    proposed = tmp_path / "permissions.csv"
    text = Path("policies/permissions.csv").read_text(encoding="utf-8")
    proposed.write_text(text.replace("p, auditor, audit, verify\n", "p, auditor, audit, verfy\n"))
    bad = _cli("policy", "validate", str(proposed))
    assert bad.exit_code == 1
    # Each problem on two lines, file:line first on both, its Chinese then its English.
    where_zh, where_en, *summary = bad.stderr.splitlines()
    line = next(i for i, rule in enumerate(text.splitlines(), start=1) if rule == "p, auditor, audit, verify")
    assert where_zh == f"{proposed}:{line}: 未知的操作 'verfy'；可用的操作有 {sorted(ACTIONS)}"
    assert where_en == f"{proposed}:{line}: unknown action 'verfy'; actions are {sorted(ACTIONS)}"
    assert summary == [
        "策略文件有 1 处错误（见上方 文件:行号），未通过校验。",
        "1 error(s) in the policy files (file:line above); not valid.",
    ]
    other = _cli("policy", "validate", str(tmp_path / "policy.txt"))
    assert other.exit_code == 2
    assert (
        _chinese_then_english(other.stderr)[0]
        == f"{tmp_path / 'policy.txt'}：不是策略文件（应为 .conf、.csv 或 .toml）。"
    )


def test_monthly_report_says_where_it_wrote_the_file(
    gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway.answer(200, "\ufeffsection,key\n".encode(), content_type="text/csv")
    monkeypatch.chdir(tmp_path)
    result = _cli(
        "supervise", "monthly", "--month", "2026-11", "--format", "csv", "--url", gateway.url, "--token", "t"
    )
    assert result.exit_code == 0, result.output
    written = tmp_path.resolve() / "audit-report-2026-11.csv"
    assert written.exists()
    zh, en = _chinese_then_english(result.stdout)
    assert zh.startswith(f"已写入 {written}（") and en.startswith(f"written {written} (")


@pytest.mark.parametrize(
    "args",
    [
        ["grants", "request", "--scenario", "DIBAO_REVIEW", "--reason", "复核", "--fields", "name"],
        ["masking", "propose-tag", "rename", "独居老人", "--reason", "改名"],
        [
            "masking",
            "dry-run",
            "--role",
            "village_cadre",
            "--scenario",
            "DIBAO_REVIEW",
            "--exempt",
            "id_number",
        ],
        [
            "policy",
            "explain",
            "--dataset",
            "residents",
            "--scenario",
            "DIBAO_REVIEW",
            "--org",
            "310151101201",
        ],
        ["policy", "replay", "--scenario", "DIBAO_REVIEW"],
        ["admission", "register", "--checklist", "forces_checkins=maybe"],
    ],
    ids=[
        "fields-without-dataset",
        "tag-action",
        "exempt",
        "explain-for-someone",
        "replay-grant",
        "checklist",
    ],
)
def test_argument_mistakes_are_explained_chinese_first_before_any_call(
    gateway: Gateway, args: list[str]
) -> None:
    result = _cli(*args, "--url", gateway.url, "--token", "t")
    assert result.exit_code == 2, result.output
    _chinese_then_english(result.stderr)
    assert gateway.received == []


def test_without_a_token_the_cli_says_so_chinese_first(gateway: Gateway) -> None:
    no_token = _cli("grants", "list", "--url", gateway.url)
    assert no_token.exit_code == 2
    assert _chinese_then_english(no_token.stderr)[0].startswith("需要登录凭证")
    assert gateway.received == []
