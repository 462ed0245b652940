"""Click's own usage errors (missing option, no such option or command, a value it cannot convert) are told
in Chinese first, Click's English kept below, exit 2: the rule every other message to officials follows."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from gateway.cli import app
from gateway.commands._usage import BilingualGroup, InvalidValue, division_code
from tests.grassroots_common.test_divisions import CODES

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "chinese", "english"),
    [
        (
            ["admission", "review", "elderly-care-visits"],
            "命令用法有误：缺少选项 --vote。请运行 root admission review --help 查看用法。",
            "Error: Missing option '--vote'.",
        ),
        (
            ["admission", "review", "x", "--vot", "approve"],
            "命令用法有误：没有选项 --vot。您是不是要用 --vote？",
            "Error: No such option: --vot",
        ),
        (
            ["admission", "reviw", "x"],
            "命令用法有误：没有命令 reviw。您是不是要用 review、revise？请运行 root admission --help",
            "Error: No such command 'reviw'.",
        ),
        (
            ["grants", "renew"],
            "命令用法有误：缺少参数 grant_ids。",
            "Error: Missing argument 'grant_ids'.",
        ),
        (
            ["supervise", "events", "--limit", "abc"],
            "命令用法有误：--limit 的取值有误，须为整数。",
            "Error: Invalid value for '--limit'",
        ),
        (
            ["policy", "decide", "--record-count-hint", "-3"],
            "命令用法有误：--record-count-hint 的取值有误，须为不小于 0 的整数。",
            "Error: Invalid value for '--record-count-hint'",
        ),
        (
            ["supervise", "events", "--limit"],
            "命令用法有误：选项 --limit 后面缺少取值。",
            "Error: Option '--limit' requires an argument.",
        ),
        (
            # A flag given a value: the Chinese said "e.g. a value is missing", the opposite of the trouble.
            ["supervise", "incidents", "--overdue=yes"],
            "命令用法有误：选项 --overdue 是开关，不带取值（只写 --overdue）。",
            "Error: Option '--overdue' does not take a value.",
        ),
        (
            # A value with a space typed without quotes: the Chinese said only "usage is wrong".
            ["supervise", "note", "I-1", "--text", "核对", "访问记录"],
            "命令用法有误：多余的参数 访问记录（取值中有空格时，请把整个取值放在引号中）。"
            "请运行 root supervise note --help 查看用法。",
            "Error: Got unexpected extra argument",
        ),
        (
            ["supervise", "events", "a", "b"],
            "命令用法有误：多余的参数 a b（",
            "Error: Got unexpected extra argument",
        ),
        (["nosuch"], "命令用法有误：没有命令 nosuch。", "Error: No such command 'nosuch'."),
        (
            # A token that is already expired when made: it was minted, and a Python traceback printed.
            ["dev-token", "cadre_a", "--ttl", "0"],
            "命令用法有误：--ttl 的取值有误，须为不小于 1 的整数。",
            "Error: Invalid value for '--ttl'",
        ),
        (
            # Named as the option typed (the API would name its field, org_scope), with what it takes.
            ["grants", "request", "--scenario", "DIBAO_REVIEW", "--reason", "复核", "--org", "3101511"],
            "命令用法有误：--org 的取值有误，须为 2、4、6、9 或 12 位的统计用区划代码（例如 310151101000）。",
            "Error: Invalid value for '--org': must be a division code of 2, 4, 6, 9 or 12 digits",
        ),
        (
            ["supervise", "events", "--org", "东风村"],
            "命令用法有误：--org 的取值有误，须为 2、4、6、9 或 12 位的统计用区划代码",
            "Error: Invalid value for '--org'",
        ),
        (
            # "$INC" left empty by a complaint that failed: the call went to /incidents//assign and came
            # back 404 no_route (页面或接口不存在), which said nothing of the id.
            ["supervise", "assign", "", "--to", "核查组"],
            # and it named C-… or I-…, although this command refuses a C-…
            "命令用法有误：incident_id 的取值有误，须为登记投诉时返回的事件编号（I-…），不能为空",
            "Error: Invalid value for 'incident_id': must be the incident id the complaint's answer gave "
            "(I-...)",
        ),
        (
            ["supervise", "complaint", "C-1/../x"],
            "命令用法有误：complaint_id 的取值有误，须为登记投诉时返回的投诉编号（C-…）",
            "Error: Invalid value for 'complaint_id'",
        ),
        (
            # The complaint's id where the incident's belongs (both are in the answer to complain): it
            # was answered 404 未找到该事件, as if the case did not exist.
            ["supervise", "assign", "C-3ef5277ef9d14aa5", "--to", "核查组"],
            "命令用法有误：incident_id 的取值有误，须为事件编号（I-…）；"
            "C-… 是投诉编号，该投诉的事件编号见其 incident_id（grassroots supervise complaint C-… 可查看）",
            "Error: Invalid value for 'incident_id': must be an incident id (I-...); "
            "C-... is a complaint's id, whose incident_id names its incident "
            "(grassroots supervise complaint C-...",
        ),
        (
            ["supervise", "complaint", "I-9d2eec9b69394daf"],
            "命令用法有误：complaint_id 的取值有误，须为投诉编号（C-…）；"
            "I-… 是事件编号，该事件的投诉编号见其 complaint_id（grassroots supervise incident I-… 可查看）",
            "Error: Invalid value for 'complaint_id': must be a complaint id (C-...); "
            "I-... is an incident's id, whose complaint_id names its complaint",
        ),
        (
            ["supervise", "set-jurisdiction", "i-9d2eec9b69394daf", "--org", "310151103000"],
            "命令用法有误：complaint_id 的取值有误，须为投诉编号（C-…）",
            "Error: Invalid value for 'complaint_id'",
        ),
        (
            ["grants", "renew", "grt_1", "--stagger-days", "-1"],
            "命令用法有误：--stagger-days 的取值有误，须为不小于 0、不大于 90 的整数。",
            "Error: Invalid value for '--stagger-days'",
        ),
        (
            # Was exit 1, after the database and the key ring were opened (and, in development, made).
            ["keys", "rotate-audit-ref", "--key-id", "2027/01"],
            "命令用法有误：--key-id 的取值有误，须为 1 到 16 个英文字母、数字、“_”或“-”，例如 k2。",
            "Error: Invalid value for '--key-id': must be 1 to 16 ASCII letters, digits, _ or -",
        ),
        (
            ["grants", "reminders", "--within-days", "0"],
            "命令用法有误：--within-days 的取值有误，须为不小于 1、不大于 365 的整数。",
            "Error: Invalid value for '--within-days'",
        ),
    ],
)
def test_a_usage_error_is_chinese_first_with_clicks_english_kept(
    args: list[str], chinese: str, english: str
) -> None:
    result = runner.invoke(app, args, env={"GRASSROOTS_TOKEN": "", "GRASSROOTS_URL": ""})
    assert result.exit_code == 2, result.output
    first, *rest = result.stderr.splitlines()
    assert first.startswith(chinese), first
    assert any(line.startswith(english) for line in rest), result.stderr
    assert "Traceback" not in result.output


def test_help_and_no_arguments_still_show_the_help_alone() -> None:
    helped = runner.invoke(app, ["admission", "review", "--help"])
    assert helped.exit_code == 0
    assert helped.stdout.startswith("Usage: root admission review")
    bare = runner.invoke(app, ["admission"])
    assert "命令用法有误" not in bare.output
    assert "Usage: root admission" in bare.output


def _tiny() -> typer.Typer:
    tiny = typer.Typer(cls=BilingualGroup)

    @tiny.command()
    def ok() -> None:
        typer.echo("done")

    @tiny.command()
    def leave(code: int) -> None:
        raise typer.Exit(code)

    @tiny.command()
    def interrupted() -> None:
        raise typer.Abort()

    return tiny


def test_exit_codes_pass_through_and_an_abort_is_told_in_chinese_first() -> None:
    tiny = _tiny()
    ok = runner.invoke(tiny, ["ok"])
    assert (ok.exit_code, ok.stdout) == (0, "done\n")
    assert runner.invoke(tiny, ["leave", "3"]).exit_code == 3
    assert runner.invoke(tiny, ["leave", "0"]).exit_code == 0
    aborted = runner.invoke(tiny, ["interrupted"])
    assert aborted.exit_code == 1
    assert aborted.stderr.splitlines() == ["已中止，未完成该操作。", "Aborted!"]


@pytest.mark.parametrize(("code", "valid"), [c for c in CODES if c[0]])
def test_the_cli_refuses_exactly_the_division_codes_the_gateway_refuses(code: str, valid: bool) -> None:
    """The --org callback checks with the gateway's parser: full-width digits or province 00 are refused
    before anything is sent, as the API would refuse them."""
    try:
        assert division_code(code) == code and valid
    except InvalidValue:
        assert not valid
