"""``grassroots grants ...``: the scenario catalog, the grant lifecycle and break-glass, as a thin client of
the API (the same permission checks and audit trail as any other caller)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from gateway.commands._client import ApiCall, ReasonOption, api_command, split_list
from gateway.commands._usage import division_code

app = typer.Typer(no_args_is_help=True)


def _fields(dataset: str | None, fields: str | None) -> dict[str, list[str]] | None:
    if fields is None:
        return None
    if dataset is None:
        typer.echo("--fields 需要同时给出 --dataset。\n--fields needs --dataset", err=True)
        raise typer.Exit(2)
    return {dataset: split_list(fields)}


@app.command("scenarios")
@api_command
def scenarios(code: Annotated[str | None, typer.Argument(help="one scenario's code")] = None) -> ApiCall:
    """The scenario catalog: purpose, legal basis, fields, limits and who may use each."""
    return ApiCall("GET", f"/api/v1/scenarios/{code}" if code else "/api/v1/scenarios")


@app.command("request")
@api_command
def request(
    scenario: Annotated[str, typer.Option(help="scenario code, e.g. DIBAO_REVIEW")],
    reason: ReasonOption,
    org: Annotated[
        str | None, typer.Option(help="organisation scope (default: your own)", callback=division_code)
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="narrow to this dataset (with --fields)")] = None,
    fields: Annotated[str | None, typer.Option(help="comma-separated fields of --dataset")] = None,
) -> ApiCall:
    """Request a grant for an organisation of your jurisdiction, citing a scenario."""
    body: dict[str, Any] = {"scenario": scenario, "reason": reason, "org_scope": org}
    narrowed = _fields(dataset, fields)
    if narrowed is not None:
        body["datasets"] = narrowed
    return ApiCall("POST", "/api/v1/grants", body=body)


@app.command("list")
@api_command
def list_grants(
    status: Annotated[str | None, typer.Option(help="requested, approved, revoked, ...")] = None,
    scenario: Annotated[str | None, typer.Option(help="scenario code")] = None,
    org: Annotated[
        str | None, typer.Option(help="grants that apply to or lie within this code", callback=division_code)
    ] = None,
) -> ApiCall:
    """Grants you may see (a steward: on your department's data; an officer: your jurisdiction)."""
    return ApiCall("GET", "/api/v1/grants", params={"status": status, "scenario": scenario, "org": org})


@app.command("show")
@api_command
def show_grant(grant_id: str) -> ApiCall:
    """One grant."""
    return ApiCall("GET", f"/api/v1/grants/{grant_id}")


@app.command("approve")
@api_command
def approve(
    grant_id: str,
    valid_from: Annotated[
        str | None, typer.Option(help="ISO 8601 with offset, not before now (default: now)")
    ] = None,
    valid_until: Annotated[
        str | None,
        typer.Option(
            help="ISO 8601 with offset (default: the scenario's validity; at most its max_validity_days)"
        ),
    ] = None,
) -> ApiCall:
    """Approve as a steward of the owning department (sensitive fields: a second steward approves too)."""
    body = {"valid_from": valid_from, "valid_until": valid_until}
    return ApiCall("POST", f"/api/v1/grants/{grant_id}/approve", body=body)


@app.command("reject")
@api_command
def reject(grant_id: str, reason: ReasonOption) -> ApiCall:
    """Reject a request, saying why."""
    return ApiCall("POST", f"/api/v1/grants/{grant_id}/reject", body={"reason": reason})


@app.command("revoke")
@api_command
def revoke(grant_id: str, reason: ReasonOption) -> ApiCall:
    """Revoke an approved grant; every gateway process refuses on its next request."""
    return ApiCall("POST", f"/api/v1/grants/{grant_id}/revoke", body={"reason": reason})


@app.command("renew")
@api_command
def renew(
    grant_ids: Annotated[list[str], typer.Argument(help="grant ids")],
    # The API's bounds, checked here too so a wrong value is refused under the option's own name (the API
    # would name its field, stagger_window_days).
    validity_days: Annotated[
        int | None,
        typer.Option(min=1, max=3650, help="default: the scenario's validity; at most its max_validity_days"),
    ] = None,
    stagger_days: Annotated[
        int,
        typer.Option(
            min=0, max=90, help="spread expiry over this many days (earlier, never past the maximum)"
        ),
    ] = 14,
) -> ApiCall:
    """Renew many grants at once, expiry staggered so the batch does not lapse on one day."""
    body = {"grant_ids": grant_ids, "validity_days": validity_days, "stagger_window_days": stagger_days}
    return ApiCall("POST", "/api/v1/grants/renew", body=body)


@app.command("reminders")
@api_command
def reminders(
    within_days: Annotated[int, typer.Option(min=1, max=365, help="lapsing within this many days")] = 14,
) -> ApiCall:
    """Grants about to lapse and who must act on each."""
    return ApiCall("GET", "/api/v1/grants/reminders", params={"within_days": within_days})


@app.command("expire-due")
@api_command
def expire_due() -> ApiCall:
    """Mark grants past their end as expired (a platform job; decisions already refuse them by time)."""
    return ApiCall("POST", "/api/v1/grants/expire-due")


@app.command("break-glass")
@api_command
def break_glass(
    scenario: Annotated[str, typer.Option(help="scenario code")],
    reason: ReasonOption,
    hours: Annotated[int, typer.Option(help="hard limit, at most 4")] = 2,
    org: Annotated[
        str | None, typer.Option(help="organisation scope (default: your own)", callback=division_code)
    ] = None,
) -> ApiCall:
    """Emergency access: at once, for hours; the level above is notified and a supervisor reviews it."""
    body = {"scenario": scenario, "reason": reason, "hours": hours, "org_scope": org}
    return ApiCall("POST", "/api/v1/break-glass", body=body)


@app.command("notices")
@api_command
def notices() -> ApiCall:
    """Notices of emergency access within your jurisdiction (for the level above)."""
    return ApiCall("GET", "/api/v1/break-glass/notices")


@app.command("reviews")
@api_command
def reviews(status: Annotated[str, typer.Option(help="open, closed or all")] = "open") -> ApiCall:
    """Break-glass post-review items (supervisors)."""
    return ApiCall("GET", "/api/v1/break-glass/reviews", params={"status": status})


@app.command("close-review")
@api_command
def close_review(review_id: str, note: Annotated[str, typer.Option(help="the review's finding")]) -> ApiCall:
    """Close a break-glass post-review (a supervisor, never the person who broke the glass)."""
    return ApiCall("POST", f"/api/v1/break-glass/reviews/{review_id}/close", body={"note": note})
