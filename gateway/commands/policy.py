"""``grassroots policy ...``: validate the policy files offline; reload, decide, explain and replay through
the API."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.commands._client import ApiCall, ScenarioOption, api_command, read_file_text, split_list
from gateway.commands._help import HelpTyper, bilingual
from gateway.commands._usage import division_code

app = HelpTyper(
    no_args_is_help=True,
    help=bilingual(
        "授权策略：策略文件校验与重新加载，决策试算、原因解释和变更预演。",
        "Policy files, decisions, explanations, replay.",
    ),
)

_KINDS = {".conf": "model", ".csv": "permissions", ".toml": "scenarios"}


@app.command("validate", zh="离线校验策略文件。每处错误输出 文件:行号；有文件不合法时退出码为 1。")
def validate(
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            help=bilingual(
                "model.conf、permissions.csv 和/或 scenarios.toml（默认：当前配置的文件）",
                "model.conf, permissions.csv and/or scenarios.toml (default: the configured ones)",
            )
        ),
    ] = None,
) -> None:
    """Check the policy files offline; print file:line for each error and exit 1 when any is invalid."""
    from gateway.settings import Settings
    from policies.reload import validate_policy_files

    settings = Settings()
    chosen: dict[str, Path | None] = {
        "model": settings.policy_model_path,
        "permissions": settings.permissions_path,
        "scenarios": settings.scenarios_path,
    }
    for path in files or ():
        kind = _KINDS.get(path.suffix)
        if kind is None:
            typer.echo(
                f"{path}：不是策略文件（应为 .conf、.csv 或 .toml）。\n"
                f"{path}: not a policy file (expected .conf, .csv or .toml)",
                err=True,
            )
            raise typer.Exit(2)
        chosen[kind] = path
    errors = validate_policy_files(chosen["model"], chosen["permissions"], chosen["scenarios"])
    for error in errors:
        # Each problem on two lines, both starting file:line (an editor jumps to either): Chinese, English.
        where = f"{error.path}:{error.line}"
        typer.echo(f"{where}: {error.message_zh}\n{where}: {error.message}", err=True)
    if errors:
        typer.echo(
            f"策略文件有 {len(errors)} 处错误（见上方 文件:行号），未通过校验。\n"
            f"{len(errors)} error(s) in the policy files (file:line above); not valid.",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo("策略文件校验通过。\npolicy files valid")


@app.command("show", zh="网关当前据以决策的策略：各策略文件的摘要和授权版本。")
@api_command
def show_policy() -> ApiCall:
    """The policy the gateway decides by: file digests and grants version."""
    return ApiCall("GET", "/api/v1/policy")


@app.command(
    "reload",
    zh="在每个网关进程中重新读取并校验策略文件（平台管理员）。校验不通过时返回 422，原策略继续生效。",
)
@api_command
def reload() -> ApiCall:
    """Re-read and validate the policy files in every gateway process (platform admin); 422 keeps the old."""
    return ApiCall("POST", "/api/v1/policy/reload")


def _access_body(
    org: str,
    roles: list[str],
    dataset: str,
    scenario: str,
    user_id: str | None,
    fields: str | None,
    at: str | None,
    department: str | None,
    grids: list[str] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"org": org, "roles": roles, "dataset": dataset, "scenario": scenario}
    if grids:
        body["grids"] = grids
    if user_id:
        body["user_id"] = user_id
    if fields:
        body["fields"] = split_list(fields)
    if at:
        body["at"] = at
    if department:
        body["department"] = department
    return body


DatasetOption = Annotated[
    str, typer.Option(help=bilingual("数据集，例如 residents", "dataset, e.g. residents"))
]
RoleOption = Annotated[
    list[str] | None,
    typer.Option("--role", help=bilingual("此人的一个岗位（可重复）", "a role of the person (repeatable)")),
]
FieldsOption = Annotated[
    str | None,
    typer.Option(
        help=bilingual(
            "字段，以逗号分隔（默认：授权的全部字段）", "comma-separated fields (default: all granted)"
        )
    ),
]
AtOption = Annotated[
    str | None,
    typer.Option(
        help=bilingual(
            "时间：ISO 8601 带时区，或北京时间的时刻 HH:MM（指下一次到达该时刻）（默认：现在）",
            "ISO 8601 time with offset, or a Beijing time of day HH:MM meaning its next occurrence "
            "(default: now)",
        )
    ),
]


def resolve_at(value: str | None, now: datetime | None = None) -> str | None:
    """``--at``: an ISO 8601 time with offset passes through; ``HH:MM`` (or ``HH:MM:SS``) is that Beijing
    time of day at its next occurrence after ``now``.

    The next occurrence, not today's: the demo's grants are valid from the moment they were seeded, so a
    time earlier today could fall before them and answer ``no_active_grant`` instead of what was asked
    about (the hour). Within the next 24 hours every grant active now is still active."""
    match = _TIME_OF_DAY.fullmatch(value or "")
    if value is None:
        return value
    if match is None:
        # Refused here, before anything is sent: the server's refusal ("须为带时区的时间") never named the
        # HH:MM form this option also takes, so `--at 2330` or `--at 2026-12-07T23:30` left the
        # administrator to guess; which clock a time without an offset means cannot be guessed for her.
        try:
            text = unicodedata.normalize("NFKC", value).strip().replace("Z", "+00:00")
            aware = datetime.fromisoformat(text).utcoffset() is not None
        except ValueError:
            aware = False
        if not aware:
            typer.echo(
                "--at 须为带时区的时间（例如 2026-12-07T23:30:00+08:00），或北京时间的时刻 HH:MM"
                "（例如 23:30，指下一次到达该时刻）；不带时区的时间和单独的日期不能用，"
                "因为无法确定它指哪个时区。"
                "本次未发出请求。\n"
                "--at must be a time with its offset (for example 2026-12-07T23:30:00+08:00) or a Beijing "
                "time of day HH:MM (for example 23:30, its next occurrence); a time without an offset, or a "
                "day alone, is not taken, since which clock it means cannot be told. Nothing was sent.",
                err=True,
            )
            raise typer.Exit(2)
        return value
    try:
        hour, minute, second = (int(part) for part in match.groups(default="0"))
        of_day = time(hour, minute, second)
    except ValueError:
        typer.echo(
            f"--at {value}：不是有效的时刻（HH:MM，北京时间）。\n--at {value}: not a valid time of day "
            "(HH:MM, Beijing time).",
            err=True,
        )
        raise typer.Exit(2) from None
    from policies.scenarios import CHINA_STANDARD_TIME  # here: `policies` brings the policy engine

    local_now = (now or datetime.now(UTC)).astimezone(CHINA_STANDARD_TIME)
    moment = datetime.combine(local_now.date(), of_day, tzinfo=CHINA_STANDARD_TIME)
    if moment <= local_now:
        moment += timedelta(days=1)
    return moment.isoformat()


_TIME_OF_DAY = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
GridOption = Annotated[
    list[str] | None,
    typer.Option(
        "--grid",
        help=bilingual(
            "分配给此人的一个微网格（可重复）", "a micro-grid assigned to the person (repeatable)"
        ),
    ),
]


@app.command(
    "decide",
    zh="决策试算（平台管理员）。给定人员、单位、数据和场景，得出决策及其附带义务。",
)
@api_command
def decide(
    org: Annotated[
        str,
        typer.Option(
            help=bilingual("所在单位的区划代码", "division code of the organisation"), callback=division_code
        ),
    ],
    dataset: DatasetOption,
    scenario: ScenarioOption,
    role: RoleOption = None,
    grid: GridOption = None,
    user_id: Annotated[
        str | None, typer.Option(help=bilingual("按此用户的查看配额计算", "whose quota to read"))
    ] = None,
    fields: FieldsOption = None,
    at: AtOption = None,
    department: Annotated[
        str | None, typer.Option(help=bilingual("所属部门（令牌中的 department）", "department claim"))
    ] = None,
    record_count_hint: Annotated[
        int | None,
        typer.Option(
            min=0,
            help=bilingual(
                "一次请求的记录数（与每页上限比对）",
                "records asked for in one request (checked against the page limits)",
            ),
        ),
    ] = None,
) -> ApiCall:
    """Dry run: the decision (with obligations) for who/where/what/scenario (platform admin)."""
    body = _access_body(org, role or [], dataset, scenario, user_id, fields, resolve_at(at), department, grid)
    if record_count_hint is not None:
        body["record_count_hint"] = record_count_hint
    return ApiCall("POST", "/api/v1/policy/decide", body=body)


@app.command("explain", zh="解释哪个条件未满足及原因。不给 --org 时，解释您本人此刻的请求。")
@api_command
def explain(
    dataset: DatasetOption,
    scenario: ScenarioOption,
    org: Annotated[
        str | None,
        typer.Option(help=bilingual("为这个单位解释（管理员）", "explain for this organisation (admins)")),
    ] = None,
    role: RoleOption = None,
    grid: GridOption = None,
    user_id: Annotated[
        str | None,
        typer.Option(help=bilingual("按此用户的查看配额计算（管理员）", "whose quota to read (admins)")),
    ] = None,
    fields: FieldsOption = None,
    at: AtOption = None,
) -> ApiCall:
    """Which condition fails and why. Without --org: your own request, now or --at a time."""
    if org is None and not role and user_id is None and not grid:
        params = {"dataset": dataset, "scenario": scenario, "fields": fields, "at": resolve_at(at)}
        return ApiCall("GET", "/api/v1/policy/explain", params=params)
    if org is None or not role:
        typer.echo(
            "为他人解释决策需要同时给出 --org 和 --role。\n"
            "explaining for someone else needs both --org and --role",
            err=True,
        )
        raise typer.Exit(2)
    body = _access_body(org, role, dataset, scenario, user_id, fields, resolve_at(at), None, grid)
    return ApiCall("POST", "/api/v1/policy/explain", body=body)


def _read(path: Path | None) -> str | None:
    return read_file_text(path) if path is not None else None


@app.command("replay", zh="变更预演：按拟议的变更，谁会新获得或失去对哪些数据的访问。")
@api_command
def replay(
    days: Annotated[
        int,
        typer.Option(
            help=bilingual("重放最近 N 天记录的请求", "replay the recorded requests of the last N days")
        ),
    ] = 7,
    grant_id: Annotated[
        str | None,
        typer.Option(help=bilingual("一项待审批的授权，按已批准计算", "a requested grant, as if approved")),
    ] = None,
    scenario: Annotated[
        str | None,
        typer.Option(
            help=bilingual("拟议授权的场景（与 --org 同用）", "a proposed grant's scenario (with --org)")
        ),
    ] = None,
    org: Annotated[
        str | None,
        typer.Option(
            help=bilingual("拟议授权适用的单位（区划代码）", "a proposed grant's organisation scope")
        ),
    ] = None,
    revoke: Annotated[
        list[str] | None,
        typer.Option(help=bilingual("拟撤销的授权编号（可重复）", "a grant id to revoke (repeatable)")),
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help=bilingual("拟议的 model.conf", "proposed model.conf"))
    ] = None,
    permissions: Annotated[
        Path | None, typer.Option(help=bilingual("拟议的 permissions.csv", "proposed permissions.csv"))
    ] = None,
    scenarios: Annotated[
        Path | None, typer.Option(help=bilingual("拟议的 scenarios.toml", "proposed scenarios.toml"))
    ] = None,
) -> ApiCall:
    """What-if: who would gain or lose access to what under the proposed change."""
    body: dict[str, Any] = {
        "days": days,
        "grant_id": grant_id,
        "revoke_grant_ids": revoke or [],
        "model": _read(model),
        "permissions": _read(permissions),
        "scenarios": _read(scenarios),
    }
    if scenario is not None or org is not None:
        if scenario is None or org is None:
            typer.echo(
                "拟议授权需要同时给出 --scenario 和 --org。\n"
                "a proposed grant needs both --scenario and --org",
                err=True,
            )
            raise typer.Exit(2)
        body["grant"] = {"scenario": scenario, "org_scope": org}
    return ApiCall("POST", "/api/v1/policy/replay", body=body)
