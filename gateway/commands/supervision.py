"""``grassroots supervise ...``: audit queries, reports, anomalies, the monthly report, complaints and
incidents, resident transparency, proofs, checkpoints, retention, archives and pruning.

A thin client of ``/api/v1/supervision`` (same permission checks, same audit trail as the API), except
``archive-verify``, ``prefix-verify`` and ``incident --verify``, which check signatures and proofs
locally so a reviewer need not trust the server. ID numbers are never taken on the command line (shell
history, process lists): they are prompted for without echo, or read from
``GRASSROOTS_SUBJECT_ID_NUMBER``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.commands._client import DEFAULT_URL, AsOption, TokenOption, UrlOption, call, show

app = typer.Typer(no_args_is_help=True, help="Audit queries, reports, complaints, incidents.")
_BASE = "/api/v1/supervision"
_ID_ENV = "GRASSROOTS_SUBJECT_ID_NUMBER"


def _id_number() -> str:
    value = os.environ.get(_ID_ENV)
    if value:
        return value
    entered: str = typer.prompt("居民身份证号码 / resident ID number", hide_input=True)
    return entered


@app.command()
def events(
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_user: AsOption = None,
    org: Annotated[str | None, typer.Option(help="organisation subtree (division code)")] = None,
    actor: Annotated[str | None, typer.Option(help="user id")] = None,
    scenario: Annotated[str | None, typer.Option()] = None,
    dataset: Annotated[str | None, typer.Option()] = None,
    outcome: Annotated[str | None, typer.Option(help="allowed | refused | ok | error")] = None,
    kind: Annotated[
        str | None, typer.Option(help="event kind, or a family ending in '.', e.g. data.")
    ] = None,
    since: Annotated[str | None, typer.Option(help="RFC 3339 time, e.g. 2026-11-01T00:00:00+08:00")] = None,
    until: Annotated[str | None, typer.Option()] = None,
    before: Annotated[int | None, typer.Option(help="page cursor (next_before)")] = None,
    limit: Annotated[int, typer.Option()] = 50,
) -> None:
    """Query audit events (newest first; refs only, never personal data)."""
    params = {
        "org": org,
        "actor": actor,
        "scenario": scenario,
        "dataset": dataset,
        "outcome": outcome,
        "kind": kind,
        "since": since,
        "until": until,
        "before": before,
        "limit": limit,
    }
    show(call("GET", f"{_BASE}/events", url=url, token=token, as_user=as_user, params=params))


@app.command()
def report(
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_user: AsOption = None,
    group_by: Annotated[str, typer.Option("--by", help="org | department | scenario")] = "org",
    org: Annotated[str | None, typer.Option()] = None,
    org_level: Annotated[int, typer.Option(help="roll organisations up to 2/4/6/9/12 digits")] = 12,
    since: Annotated[str | None, typer.Option()] = None,
    until: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Counts allowed/refused, records read and distinct users per organisation, department or scenario."""
    params = {"group_by": group_by, "org": org, "org_level": org_level, "since": since, "until": until}
    show(call("GET", f"{_BASE}/reports", url=url, token=token, as_user=as_user, params=params))


@app.command()
def anomalies(
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_user: AsOption = None,
    since: Annotated[str | None, typer.Option()] = None,
    until: Annotated[str | None, typer.Option()] = None,
    org: Annotated[str | None, typer.Option()] = None,
    rule: Annotated[list[str] | None, typer.Option(help="only this rule (repeatable)")] = None,
    setting: Annotated[
        list[str] | None, typer.Option("--set", help="override, e.g. bulk_reading.min_records=200")
    ] = None,
) -> None:
    """Run the anomaly rules; each finding lists the seqs of its events."""
    params: dict[str, Any] = {"since": since, "until": until, "org": org, "rule": rule, "setting": setting}
    show(call("GET", f"{_BASE}/anomalies", url=url, token=token, as_user=as_user, params=params))


@app.command()
def monthly(
    month: Annotated[str, typer.Option(help="YYYY-MM (Beijing time)")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_user: AsOption = None,
    fmt: Annotated[str, typer.Option("--format", help="html | csv | pdf | json")] = "html",
    org: Annotated[str | None, typer.Option()] = None,
    out: Annotated[Path | None, typer.Option(help="file to write (default: audit-report-MONTH.EXT)")] = None,
) -> None:
    """The monthly notification report (定期通报) as a printable HTML page, CSV, PDF or JSON."""
    params = {"month": month, "format": fmt, "org": org}
    if fmt == "json":
        show(call("GET", f"{_BASE}/reports/monthly", url=url, token=token, as_user=as_user, params=params))
        return
    data = call(
        "GET", f"{_BASE}/reports/monthly", url=url, token=token, as_user=as_user, params=params, raw=True
    )
    target = out or Path(f"audit-report-{month}.{fmt}")
    target.write_bytes(data)
    typer.echo(f"written {target} ({len(data)} bytes)")


@app.command()
def complain(
    source: Annotated[str, typer.Option(help="hotline_12345 | burden_monitoring | walk_in")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_user: AsOption = None,
    summary: Annotated[str, typer.Option(help="what the resident reports (no ID or phone numbers)")] = "",
    ticket: Annotated[str | None, typer.Option(help="e.g. the 12345 work-order number")] = None,
) -> None:
    """Register a complaint; the incident opens with every access to the person and its proof."""
    body = {"source": source, "id_number": _id_number(), "summary": summary, "ticket": ticket}
    show(call("POST", f"{_BASE}/complaints", url=url, token=token, as_user=as_user, body=body))


@app.command("who-read")
def who_read(url: UrlOption = DEFAULT_URL, token: TokenOption = None, as_user: AsOption = None) -> None:
    """Resident transparency: who (organisation, role) read this person's data, when, for what."""
    body = {"id_number": _id_number()}
    show(call("POST", f"{_BASE}/transparency", url=url, token=token, as_user=as_user, body=body))


@app.command()
def complaints(url: UrlOption = DEFAULT_URL, token: TokenOption = None, as_user: AsOption = None) -> None:
    """List complaints (newest first)."""
    show(call("GET", f"{_BASE}/complaints", url=url, token=token, as_user=as_user))


@app.command()
def incidents(
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_user: AsOption = None,
    status: Annotated[str | None, typer.Option(help="open | investigating | closed")] = None,
    overdue: Annotated[bool, typer.Option("--overdue", help="only those past their deadline")] = False,
) -> None:
    """List incidents by deadline."""
    params: dict[str, Any] = {"status": status, "overdue": str(overdue).lower()}
    show(call("GET", f"{_BASE}/incidents", url=url, token=token, as_user=as_user, params=params))


@app.command()
def incident(
    incident_id: str,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_user: AsOption = None,
    verify: Annotated[bool, typer.Option("--verify", help="check every proof locally")] = False,
) -> None:
    """Show an incident (steps, evidence events, inclusion proofs)."""
    data = call("GET", f"{_BASE}/incidents/{incident_id}", url=url, token=token, as_user=as_user)
    if not verify:
        show(data)
        return
    from audit import InvalidProofError, verify_incident_evidence

    try:
        checked = verify_incident_evidence(data, {})
    except InvalidProofError as exc:
        typer.echo(f"evidence does NOT verify: {exc}", err=True)
        raise typer.Exit(1) from None
    signed = call("GET", f"{_BASE}/checkpoints", url=url, token=token, as_user=as_user)["items"]
    match = [c for c in signed if c["tree_size"] == data["tree_size"] and c["root_hash"] == data["root_hash"]]
    typer.echo(
        f"{len(checked)} evidence events verified against root {data['root_hash']} "
        f"(tree size {data['tree_size']}); "
        + ("a signed checkpoint has this root" if match else "no signed checkpoint of that size listed")
    )


@app.command()
def assign(
    incident_id: str,
    to: Annotated[str, typer.Option("--to", help="who investigates")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_user: AsOption = None,
    due: Annotated[str | None, typer.Option(help="new deadline, RFC 3339")] = None,
) -> None:
    """Assign an incident (and optionally move its deadline)."""
    body = {"assignee": to, "due_at": due}
    show(
        call(
            "POST",
            f"{_BASE}/incidents/{incident_id}/assign",
            url=url,
            token=token,
            as_user=as_user,
            body=body,
        )
    )


@app.command()
def note(
    incident_id: str,
    text: Annotated[str, typer.Option("--text", help="investigation note")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_user: AsOption = None,
) -> None:
    """Add an investigation note."""
    show(
        call(
            "POST",
            f"{_BASE}/incidents/{incident_id}/notes",
            url=url,
            token=token,
            as_user=as_user,
            body={"note": text},
        )
    )


@app.command()
def dispose(
    incident_id: str,
    disposition: Annotated[str, typer.Option(help="substantiated | unsubstantiated | referred")],
    text: Annotated[str, typer.Option("--note", help="the decision and what was done")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_user: AsOption = None,
) -> None:
    """Close an incident with its disposition."""
    body = {"disposition": disposition, "note": text}
    show(
        call(
            "POST",
            f"{_BASE}/incidents/{incident_id}/disposition",
            url=url,
            token=token,
            as_user=as_user,
            body=body,
        )
    )


@app.command()
def proof(
    seq: int,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_user: AsOption = None,
    tree_size: Annotated[int | None, typer.Option(help="default: the latest signed checkpoint")] = None,
) -> None:
    """Inclusion proof of one event (checked locally before it is printed)."""
    from audit import verify_inclusion

    data = call(
        "GET",
        f"{_BASE}/proofs/inclusion",
        url=url,
        token=token,
        as_user=as_user,
        params={"seq": seq, "tree_size": tree_size},
    )
    verify_inclusion(
        bytes.fromhex(data["leaf_hash"]),
        data["leaf_index"],
        data["tree_size"],
        [bytes.fromhex(p) for p in data["proof"]],
        bytes.fromhex(data["root_hash"]),
    )
    show(data)


@app.command()
def consistency(
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_user: AsOption = None,
    old: Annotated[int | None, typer.Option(help="older tree size (default: previous checkpoint)")] = None,
    new: Annotated[int | None, typer.Option(help="newer tree size (default: latest checkpoint)")] = None,
) -> None:
    """Consistency proof between two tree sizes (checked locally before it is printed)."""
    from audit import verify_consistency

    data = call(
        "GET",
        f"{_BASE}/proofs/consistency",
        url=url,
        token=token,
        as_user=as_user,
        params={"old": old, "new": new},
    )
    verify_consistency(
        data["old_size"],
        data["new_size"],
        [bytes.fromhex(p) for p in data["proof"]],
        bytes.fromhex(data["old_root"]),
        bytes.fromhex(data["new_root"]),
    )
    show(data)


@app.command()
def checkpoint(url: UrlOption = DEFAULT_URL, token: TokenOption = None, as_user: AsOption = None) -> None:
    """Write a signed checkpoint now (through the gateway; audited)."""
    show(call("POST", f"{_BASE}/checkpoints", url=url, token=token, as_user=as_user))


@app.command()
def checkpoints(url: UrlOption = DEFAULT_URL, token: TokenOption = None, as_user: AsOption = None) -> None:
    """List signed checkpoints."""
    show(call("GET", f"{_BASE}/checkpoints", url=url, token=token, as_user=as_user))


@app.command()
def retention(url: UrlOption = DEFAULT_URL, token: TokenOption = None, as_user: AsOption = None) -> None:
    """Retention policy and the months past it (archived or not)."""
    show(call("GET", f"{_BASE}/retention", url=url, token=token, as_user=as_user))


@app.command()
def archive(
    month: Annotated[str, typer.Option(help="YYYY-MM")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_user: AsOption = None,
) -> None:
    """Archive a month as signed, verifiable files (the events stay in the log)."""
    show(call("POST", f"{_BASE}/archives", url=url, token=token, as_user=as_user, body={"month": month}))


@app.command()
def prune(
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_user: AsOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run/--execute", help="only say what would be pruned (default)")
    ] = True,
    through_month: Annotated[str | None, typer.Option(help="prune no later than this month, YYYY-MM")] = None,
    through_seq: Annotated[
        int | None, typer.Option(help="prune through this event (the last of an archived month)")
    ] = None,
) -> None:
    """Delete archived months past the retention period behind a signed prefix anchor.

    Dry run by default: lists each archived month with its verdict and why pruning stops. ``--execute``
    prunes; then run ``grassroots audit verify``.
    """
    body: dict[str, Any] = {"dry_run": dry_run}
    if through_month is not None:
        body["through_month"] = through_month
    if through_seq is not None:
        body["through_seq"] = through_seq
    show(call("POST", f"{_BASE}/audit/prune", url=url, token=token, as_user=as_user, body=body))


@app.command()
def archives(url: UrlOption = DEFAULT_URL, token: TokenOption = None, as_user: AsOption = None) -> None:
    """List monthly archives."""
    show(call("GET", f"{_BASE}/archives", url=url, token=token, as_user=as_user))


@app.command("archive-verify")
def archive_verify(
    manifest: Annotated[Path, typer.Argument(help="the archive's .manifest.json")],
    public_key: Annotated[
        Path | None, typer.Option(help="Ed25519 public key PEM (default: from the checkpoint key)")
    ] = None,
    against_db: Annotated[bool, typer.Option("--against-db", help="also compare with the live log")] = False,
) -> None:
    """Verify an archive offline: signature, file digest, every chain link and leaf, the range root."""
    from audit import CheckpointSigner, load_public_key, verify_archive
    from gateway.settings import Settings

    settings = Settings()
    key_path = settings.effective_checkpoint_key_path
    if public_key is None and not key_path.exists():
        typer.echo("no public key: pass --public-key (the checkpoint key's public half)", err=True)
        raise typer.Exit(2)
    key = (
        load_public_key(public_key)
        if public_key is not None
        else CheckpointSigner.load_or_create(key_path).public_key
    )
    engine = None
    if against_db:
        from gateway.db import make_engine

        engine = make_engine(settings.effective_database_url)
    verdict = verify_archive(manifest, key, engine)
    if not verdict.ok:
        typer.echo(f"archive does NOT verify: {verdict.problem} (after {verdict.checked} events)", err=True)
        raise typer.Exit(1)
    typer.echo(f"archive intact: {verdict.checked} events verified")


@app.command("prefix-verify")
def prefix_verify(
    archive_dir: Annotated[
        Path | None, typer.Option(help="archive directory (default: GRASSROOTS_AUDIT_ARCHIVE_DIR)")
    ] = None,
) -> None:
    """Check a pruned log's prefix offline: every archive its signed anchor relies on, chained from genesis
    to the anchor, rebuilding the anchor's frontier and every older checkpoint's root."""
    from audit import CheckpointSigner, verify_archived_prefix
    from gateway.db import make_engine
    from gateway.settings import Settings
    from gateway.supervision_tasks import SupervisionSettings

    settings = Settings()
    key = CheckpointSigner.load_or_create(settings.effective_checkpoint_key_path).public_key
    directory = archive_dir or SupervisionSettings().audit_archive_dir or settings.data_dir / "archives"
    engine = make_engine(settings.effective_database_url)
    result = verify_archived_prefix(engine, directory, key, settings.effective_checkpoint_dir)
    if not result.ok:
        typer.echo(f"pruned prefix does NOT verify: {result.problem}", err=True)
        raise typer.Exit(1)
    typer.echo(
        f"pruned prefix intact: events 1..{result.pruned_through} rebuilt from the archives; "
        f"{result.checkpoints_checked} older checkpoint(s) reproduced"
    )
