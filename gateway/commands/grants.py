"""``grassroots grants ...``: the scenario catalog, the grant lifecycle and break-glass, as a thin client of
the API (the same permission checks and audit trail as any other caller)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from gateway.commands._client import DEFAULT_URL, AsOption, TokenOption, UrlOption, call, show

app = typer.Typer(no_args_is_help=True)

ReasonOption = Annotated[str, typer.Option("--reason", help="why (recorded in the audit log)")]


def _fields(dataset: str | None, fields: str | None) -> dict[str, list[str]] | None:
    if fields is None:
        return None
    if dataset is None:
        typer.echo("--fields needs --dataset", err=True)
        raise typer.Exit(2)
    return {dataset: [f.strip() for f in fields.split(",") if f.strip()]}


@app.command("scenarios")
def scenarios(
    code: Annotated[str | None, typer.Argument(help="one scenario's code")] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_user: AsOption = None,
) -> None:
    """The scenario catalog: purpose, legal basis, fields, limits and who may use each."""
    path = f"/api/v1/scenarios/{code}" if code else "/api/v1/scenarios"
    show(call("GET", path, url=url, token=token, as_user=as_user))


@app.command("request")
def request(
    scenario: Annotated[str, typer.Option(help="scenario code, e.g. DIBAO_REVIEW")],
    reason: ReasonOption,
    org: Annotated[str | None, typer.Option(help="organisation scope (default: your own)")] = None,
    dataset: Annotated[str | None, typer.Option(help="narrow to this dataset (with --fields)")] = None,
    fields: Annotated[str | None, typer.Option(help="comma-separated fields of --dataset")] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_user: AsOption = None,
) -> None:
    """Request a grant for an organisation of your jurisdiction, citing a scenario."""
    body: dict[str, Any] = {"scenario": scenario, "reason": reason, "org_scope": org}
    narrowed = _fields(dataset, fields)
    if narrowed is not None:
        body["datasets"] = narrowed
    show(call("POST", "/api/v1/grants", url=url, token=token, as_user=as_user, body=body))


@app.command("list")
def list_grants(
    status: Annotated[str | None, typer.Option(help="requested, approved, revoked, ...")] = None,
    scenario: Annotated[str | None, typer.Option(help="scenario code")] = None,
    org: Annotated[str | None, typer.Option(help="grants that apply to or lie within this code")] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_user: AsOption = None,
) -> None:
    """Grants you may see (a steward: on your department's data; an officer: your jurisdiction)."""
    params = {"status": status, "scenario": scenario, "org": org}
    show(call("GET", "/api/v1/grants", url=url, token=token, as_user=as_user, params=params))


@app.command("show")
def show_grant(
    grant_id: str, url: UrlOption = DEFAULT_URL, token: TokenOption = None, as_user: AsOption = None
) -> None:
    """One grant."""
    show(call("GET", f"/api/v1/grants/{grant_id}", url=url, token=token, as_user=as_user))


@app.command("approve")
def approve(
    grant_id: str,
    valid_from: Annotated[str | None, typer.Option(help="ISO 8601 with offset (default: now)")] = None,
    valid_until: Annotated[
        str | None, typer.Option(help="ISO 8601 with offset (default: the scenario's validity)")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_user: AsOption = None,
) -> None:
    """Approve as a steward of the owning department (sensitive fields: a second steward approves too)."""
    body = {"valid_from": valid_from, "valid_until": valid_until}
    show(call("POST", f"/api/v1/grants/{grant_id}/approve", url=url, token=token, as_user=as_user, body=body))


@app.command("reject")
def reject(
    grant_id: str,
    reason: ReasonOption,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_user: AsOption = None,
) -> None:
    """Reject a request, saying why."""
    show(
        call(
            "POST",
            f"/api/v1/grants/{grant_id}/reject",
            url=url,
            token=token,
            as_user=as_user,
            body={"reason": reason},
        )
    )


@app.command("revoke")
def revoke(
    grant_id: str,
    reason: ReasonOption,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_user: AsOption = None,
) -> None:
    """Revoke an approved grant; every gateway process refuses on its next request."""
    show(
        call(
            "POST",
            f"/api/v1/grants/{grant_id}/revoke",
            url=url,
            token=token,
            as_user=as_user,
            body={"reason": reason},
        )
    )


@app.command("renew")
def renew(
    grant_ids: Annotated[list[str], typer.Argument(help="grant ids")],
    validity_days: Annotated[int | None, typer.Option(help="default: the scenario's validity")] = None,
    stagger_days: Annotated[int, typer.Option(help="spread expiry over this many days")] = 14,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_user: AsOption = None,
) -> None:
    """Renew many grants at once, expiry staggered so the batch does not lapse on one day."""
    body = {"grant_ids": grant_ids, "validity_days": validity_days, "stagger_window_days": stagger_days}
    show(call("POST", "/api/v1/grants/renew", url=url, token=token, as_user=as_user, body=body))


@app.command("reminders")
def reminders(
    within_days: Annotated[int, typer.Option(help="lapsing within this many days")] = 14,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_user: AsOption = None,
) -> None:
    """Grants about to lapse and who must act on each."""
    params = {"within_days": within_days}
    show(call("GET", "/api/v1/grants/reminders", url=url, token=token, as_user=as_user, params=params))


@app.command("expire-due")
def expire_due(url: UrlOption = DEFAULT_URL, token: TokenOption = None, as_user: AsOption = None) -> None:
    """Mark grants past their end as expired (a platform job; decisions already refuse them by time)."""
    show(call("POST", "/api/v1/grants/expire-due", url=url, token=token, as_user=as_user))


@app.command("break-glass")
def break_glass(
    scenario: Annotated[str, typer.Option(help="scenario code")],
    reason: ReasonOption,
    hours: Annotated[int, typer.Option(help="hard limit, at most 4")] = 2,
    org: Annotated[str | None, typer.Option(help="organisation scope (default: your own)")] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_user: AsOption = None,
) -> None:
    """Emergency access: at once, for hours; the level above is notified and a supervisor reviews it."""
    body = {"scenario": scenario, "reason": reason, "hours": hours, "org_scope": org}
    show(call("POST", "/api/v1/break-glass", url=url, token=token, as_user=as_user, body=body))


@app.command("notices")
def notices(url: UrlOption = DEFAULT_URL, token: TokenOption = None, as_user: AsOption = None) -> None:
    """Notices of emergency access within your jurisdiction (for the level above)."""
    show(call("GET", "/api/v1/break-glass/notices", url=url, token=token, as_user=as_user))


@app.command("reviews")
def reviews(
    status: Annotated[str, typer.Option(help="open, closed or all")] = "open",
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_user: AsOption = None,
) -> None:
    """Break-glass post-review items (supervisors)."""
    params = {"status": status}
    show(call("GET", "/api/v1/break-glass/reviews", url=url, token=token, as_user=as_user, params=params))


@app.command("close-review")
def close_review(
    review_id: str,
    note: Annotated[str, typer.Option(help="the review's finding")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_user: AsOption = None,
) -> None:
    """Close a break-glass post-review (a supervisor, never the person who broke the glass)."""
    show(
        call(
            "POST",
            f"/api/v1/break-glass/reviews/{review_id}/close",
            url=url,
            token=token,
            as_user=as_user,
            body={"note": note},
        )
    )
