"""``grassroots grants ...``: the scenario catalog, the grant lifecycle and break-glass, as a thin client of
the API (the same permission checks and audit trail as any other caller)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from gateway.commands._client import ApiCall, ReasonOption, ScenarioOption, api_command, split_list
from gateway.commands._help import HelpTyper, bilingual
from gateway.commands._usage import division_code

app = HelpTyper(
    no_args_is_help=True,
    help=bilingual(
        "场景授权：申请、审批、撤销、续期，以及紧急访问。",
        "Scenario grants: request, approve, revoke, renew; and break-glass.",
    ),
)
GrantArg = Annotated[str, typer.Argument(help=bilingual("授权编号", "grant id"))]
OrgScopeOption = Annotated[
    str | None,
    typer.Option(
        help=bilingual(
            "授权适用的单位（区划代码；默认：本单位）",
            "the organisation it covers, a division code (default: your own)",
        ),
        callback=division_code,
    ),
]


def _fields(dataset: str | None, fields: str | None) -> dict[str, list[str]] | None:
    if fields is None:
        return None
    if dataset is None:
        typer.echo("--fields 需要同时给出 --dataset。\n--fields needs --dataset", err=True)
        raise typer.Exit(2)
    return {dataset: split_list(fields)}


@app.command("scenarios", zh="场景目录。列出每个场景的用途、法律依据、字段、限制以及可使用的岗位。")
@api_command
def scenarios(
    code: Annotated[
        str | None, typer.Argument(help=bilingual("只看这个场景（场景代码）", "one scenario's code"))
    ] = None,
) -> ApiCall:
    """The scenario catalog: purpose, legal basis, fields, limits and who may use each."""
    return ApiCall("GET", f"/api/v1/scenarios/{code}" if code else "/api/v1/scenarios")


@app.command("request", zh="为本辖区内的单位申请授权，须注明使用场景。")
@api_command
def request(
    scenario: ScenarioOption,
    reason: ReasonOption,
    org: OrgScopeOption = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help=bilingual("只申请这个数据集（与 --fields 同用）", "narrow to this dataset (with --fields)")
        ),
    ] = None,
    fields: Annotated[
        str | None,
        typer.Option(help=bilingual("--dataset 中的字段，以逗号分隔", "comma-separated fields of --dataset")),
    ] = None,
) -> ApiCall:
    """Request a grant for an organisation of your jurisdiction, citing a scenario."""
    body: dict[str, Any] = {"scenario": scenario, "reason": reason, "org_scope": org}
    narrowed = _fields(dataset, fields)
    if narrowed is not None:
        body["datasets"] = narrowed
    return ApiCall("POST", "/api/v1/grants", body=body)


@app.command("list", zh="列出您可查看的授权。数据管理员看到本部门数据上的授权，工作人员看到本辖区的授权。")
@api_command
def list_grants(
    status: Annotated[
        str | None,
        typer.Option(
            help=bilingual(
                "状态：requested（待审批）、awaiting_second_approval（待第二人审批）、approved（已批准）、"
                "rejected（已驳回）、revoked（已撤销）、expired（已过期）或 renewed（已续期）",
                "requested, awaiting_second_approval, approved, rejected, revoked, expired or renewed",
            )
        ),
    ] = None,
    scenario: Annotated[str | None, typer.Option(help=bilingual("场景代码", "scenario code"))] = None,
    org: Annotated[
        str | None,
        typer.Option(
            help=bilingual(
                "适用于此区划代码或在其范围内的授权", "grants that apply to or lie within this code"
            ),
            callback=division_code,
        ),
    ] = None,
    awaiting_me: Annotated[
        bool,
        typer.Option(
            "--awaiting-me",
            help=bilingual(
                "数据管理员的待办：等待您审批的申请，以及由另一位管理员首次批准、等待您作为第二人审批的授权",
                "a steward's work list: requests waiting on your decision, and grants another steward "
                "approved first awaiting you as the second",
            ),
        ),
    ] = False,
    limit: Annotated[
        int, typer.Option(min=1, max=1000, help=bilingual("每页条数（最新的在前）", "per page, newest first"))
    ] = 200,
    offset: Annotated[
        int,
        typer.Option(
            min=0, help=bilingual("跳过最新的这么多条（见 next_offset）", "skip this many of the newest")
        ),
    ] = 0,
) -> ApiCall:
    """Grants you may see (a steward: on your department's data; an officer: your jurisdiction)."""
    params = {
        "status": status,
        "scenario": scenario,
        "org": org,
        "awaiting_me": "true" if awaiting_me else None,
        "limit": limit,
        "offset": offset,
    }
    return ApiCall("GET", "/api/v1/grants", params=params)


@app.command("show", zh="查看一项授权。")
@api_command
def show_grant(grant_id: GrantArg) -> ApiCall:
    """One grant."""
    return ApiCall("GET", f"/api/v1/grants/{grant_id}")


@app.command(
    "approve",
    zh="批准授权申请（数据所属部门的数据管理员）。涉及敏感字段的，还须另一位数据管理员批准。",
)
@api_command
def approve(
    grant_id: GrantArg,
    valid_from: Annotated[
        str | None,
        typer.Option(
            help=bilingual(
                "生效时间：日期（北京时间，当天零点起；今天即现在起），或带时区的 ISO 8601 时间；"
                "不早于现在（默认：现在）",
                "a day (Beijing time, from its midnight; today: from now) or an ISO 8601 time with its "
                "offset; not before now (default: now)",
            )
        ),
    ] = None,
    valid_until: Annotated[
        str | None,
        typer.Option(
            help=bilingual(
                "到期时间：日期（例如 2026-12-31 或 2026年12月31日，含当天，北京时间当天结束时到期），"
                "或带时区的 ISO 8601 时间（到该时刻为止）"
                "（默认：按场景的有效期；最长为其 max_validity_days）",
                "a day such as 2026-12-31, included (lapses at the end of that Beijing-time day), or an "
                "ISO 8601 time with its offset (lapses at it) (default: the scenario's validity; at most "
                "its max_validity_days)",
            )
        ),
    ] = None,
) -> ApiCall:
    """Approve as a steward of the owning department (sensitive fields: a second steward approves too)."""
    body = {"valid_from": valid_from, "valid_until": valid_until}
    return ApiCall("POST", f"/api/v1/grants/{grant_id}/approve", body=body)


@app.command("reject", zh="驳回授权申请，并说明理由。")
@api_command
def reject(grant_id: GrantArg, reason: ReasonOption) -> ApiCall:
    """Reject a request, saying why."""
    return ApiCall("POST", f"/api/v1/grants/{grant_id}/reject", body={"reason": reason})


@app.command("revoke", zh="撤销已批准的授权。每个网关进程从下一次请求起即拒绝。")
@api_command
def revoke(grant_id: GrantArg, reason: ReasonOption) -> ApiCall:
    """Revoke an approved grant; every gateway process refuses on its next request."""
    return ApiCall("POST", f"/api/v1/grants/{grant_id}/revoke", body={"reason": reason})


@app.command("renew", zh="批量续期授权。到期日错开，避免这批授权在同一天失效。")
@api_command
def renew(
    grant_ids: Annotated[list[str], typer.Argument(help=bilingual("授权编号（一个或多个）", "grant ids"))],
    # The API's bounds, checked here too so a wrong value is refused under the option's own name (the API
    # would name its field, stagger_window_days).
    validity_days: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=3650,
            help=bilingual(
                "有效天数（默认：按场景的有效期；最长为其 max_validity_days）",
                "days the renewed grant lasts (default: the scenario's validity; at most its "
                "max_validity_days)",
            ),
        ),
    ] = None,
    stagger_days: Annotated[
        int,
        typer.Option(
            min=0,
            max=90,
            help=bilingual(
                "把到期日分散在这么多天内（只提前，不超过最长有效期）",
                "spread expiry over this many days (earlier, never past the maximum)",
            ),
        ),
    ] = 14,
) -> ApiCall:
    """Renew many grants at once, expiry staggered so the batch does not lapse on one day."""
    body = {"grant_ids": grant_ids, "validity_days": validity_days, "stagger_window_days": stagger_days}
    return ApiCall("POST", "/api/v1/grants/renew", body=body)


@app.command("reminders", zh="即将到期的授权，以及每项由谁办理。")
@api_command
def reminders(
    within_days: Annotated[
        int,
        typer.Option(min=1, max=365, help=bilingual("在这么多天内到期的", "lapsing within this many days")),
    ] = 14,
) -> ApiCall:
    """Grants about to lapse and who must act on each."""
    return ApiCall("GET", "/api/v1/grants/reminders", params={"within_days": within_days})


@app.command(
    "expire-due",
    zh="把已过期限的授权标记为已过期。这是平台定时任务；决策时已按时间拒绝这些授权。",
)
@api_command
def expire_due() -> ApiCall:
    """Mark grants past their end as expired (a platform job; decisions already refuse them by time)."""
    return ApiCall("POST", "/api/v1/grants/expire-due")


@app.command(
    "break-glass",
    zh="紧急访问：立即生效，限定小时数。同时通知上级单位，并由监督人员事后审查。",
)
@api_command
def break_glass(
    scenario: ScenarioOption,
    reason: ReasonOption,
    hours: Annotated[
        int, typer.Option(help=bilingual("时长（小时），最多 4", "how many hours, at most 4"))
    ] = 2,
    org: OrgScopeOption = None,
) -> ApiCall:
    """Emergency access: at once, for hours; the level above is notified and a supervisor reviews it."""
    body = {"scenario": scenario, "reason": reason, "hours": hours, "org_scope": org}
    return ApiCall("POST", "/api/v1/break-glass", body=body)


@app.command("notices", zh="本辖区内紧急访问的通知（供上级单位查看）。")
@api_command
def notices() -> ApiCall:
    """Notices of emergency access within your jurisdiction (for the level above)."""
    return ApiCall("GET", "/api/v1/break-glass/notices")


@app.command("reviews", zh="紧急访问的事后审查事项（监督人员）。")
@api_command
def reviews(
    status: Annotated[
        str,
        typer.Option(
            help=bilingual("状态：open（未结）、closed（已结）或 all（全部）", "open, closed or all")
        ),
    ] = "open",
) -> ApiCall:
    """Break-glass post-review items (supervisors)."""
    return ApiCall("GET", "/api/v1/break-glass/reviews", params={"status": status})


@app.command("close-review", zh="办结一项紧急访问事后审查。由监督人员办理，不能是发起紧急访问的本人。")
@api_command
def close_review(
    review_id: Annotated[str, typer.Argument(help=bilingual("审查事项编号", "review id"))],
    note: Annotated[str, typer.Option(help=bilingual("审查结论", "the review's finding"))],
) -> ApiCall:
    """Close a break-glass post-review (a supervisor, never the person who broke the glass)."""
    return ApiCall("POST", f"/api/v1/break-glass/reviews/{review_id}/close", body={"note": note})
