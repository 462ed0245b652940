"""``grassroots masking ...``: the field catalog, tags and masking rules, through the gateway's API.

A thin client (see ``gateway.commands._client``): the same permission checks, four-eyes approvals and audit
events as the API. Examples (development, against ``grassroots demo``):

    grassroots masking catalog --as ca_steward
    grassroots masking propose-field residents remark --level 4 --reason "备注常含证件号" --as ca_steward
    grassroots masking approve mp-... --as ca_steward2
    grassroots masking dry-run --role village_cadre --scenario DIBAO_REVIEW --as ca_steward \\
        --sample-file sample.json
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.commands._client import (
    ApiCall,
    ReasonOption,
    api_command,
    json_option,
    read_file_text,
    split_list,
)

app = typer.Typer(no_args_is_help=True, help="Field catalog, tags and masking rules (with approvals).")


def _sample(inline: str | None, path: Path | None) -> Any:
    if inline is not None and path is not None:
        typer.echo(
            "--sample 与 --sample-file 只能选一个。\nGive either --sample or --sample-file, not both.",
            err=True,
        )
        raise typer.Exit(2)
    if path is None:
        return json_option(inline, "--sample")
    raw = sys.stdin.read() if str(path) == "-" else read_file_text(path)
    return json_option(raw, "--sample-file")


@app.command("catalog")
@api_command
def catalog(
    dataset: Annotated[str | None, typer.Option(help="only this dataset")] = None,
) -> ApiCall:
    """Datasets and fields with level, semantic type and tags; base and dynamic tags."""
    return ApiCall("GET", "/api/v1/masking/catalog", params={"dataset": dataset})


@app.command("rules")
@api_command
def rules() -> ApiCall:
    """The masking rules in force (first match wins), profiles and operators."""
    return ApiCall("GET", "/api/v1/masking/rules")


@app.command("proposals")
@api_command
def proposals(
    status: Annotated[str | None, typer.Option(help="pending | approved | rejected | withdrawn")] = None,
) -> ApiCall:
    """Change proposals, newest first."""
    return ApiCall("GET", "/api/v1/masking/proposals", params={"status": status})


def _propose(kind: str, payload: dict[str, Any], reason: str) -> ApiCall:
    body = {"kind": kind, "payload": payload, "reason": reason}
    return ApiCall("POST", "/api/v1/masking/proposals", body=body)


@app.command("propose-field")
@api_command
def propose_field(
    dataset: str,
    field: str,
    reason: ReasonOption,
    level: Annotated[str | None, typer.Option(help="1-4, important or core")] = None,
    semantic_type: Annotated[str | None, typer.Option(help="e.g. free_text, mobile, id_number")] = None,
    tags: Annotated[str | None, typer.Option(help="comma-separated tags (replaces the field's tags)")] = None,
    quasi_identifier: Annotated[
        bool | None, typer.Option("--quasi-identifier/--not-quasi-identifier", help="k-anonymity guard")
    ] = None,
) -> ApiCall:
    """Propose a field's classification change (a steward of the owning department approves)."""
    payload: dict[str, Any] = {"dataset": dataset, "field": field}
    if level is not None:
        payload["level"] = int(level) if level.isdigit() else level
    if semantic_type is not None:
        payload["semantic_type"] = semantic_type
    if tags is not None:
        payload["tags"] = split_list(tags)
    if quasi_identifier is not None:
        payload["quasi_identifier"] = quasi_identifier
    return _propose("field_classification", payload, reason)


@app.command("propose-tag")
@api_command
def propose_tag(
    action: Annotated[str, typer.Argument(help="add | delete")],
    tag: str,
    reason: ReasonOption,
) -> ApiCall:
    """Propose adding or deleting a dynamic tag (base tags are a fixed set)."""
    if action not in ("add", "delete"):
        typer.echo("操作只能是 add（新增）或 delete（删除）。\naction must be add or delete", err=True)
        raise typer.Exit(2)
    return _propose(f"tag_{action}", {"tag": tag}, reason)


@app.command("propose-rule")
@api_command
def propose_rule(
    rule: Annotated[str, typer.Option(help="the rule as JSON, or @file.json")],
    reason: ReasonOption,
    before: Annotated[str | None, typer.Option(help="insert before this rule id")] = None,
) -> ApiCall:
    """Propose adding or replacing a rule (a platform administrator approves). Test it first with
    `dry-run --proposal`."""
    raw = read_file_text(Path(rule[1:])) if rule.startswith("@") else rule
    payload: dict[str, Any] = {"rule": json_option(raw, "--rule")}
    if before is not None:
        payload["before"] = before
    return _propose("rule_upsert", payload, reason)


@app.command("propose-rule-delete")
@api_command
def propose_rule_delete(
    rule_id: str,
    reason: ReasonOption,
) -> ApiCall:
    """Propose deleting a rule (a platform administrator approves)."""
    return _propose("rule_delete", {"rule_id": rule_id}, reason)


@app.command("approve")
@api_command
def approve(
    proposal_id: str,
    note: Annotated[str | None, typer.Option(help="approval note")] = None,
) -> ApiCall:
    """Approve a proposal (not your own): it takes effect in every gateway process."""
    path = f"/api/v1/masking/proposals/{proposal_id}/approve"
    return ApiCall("POST", path, body={"note": note})


@app.command("reject")
@api_command
def reject(
    proposal_id: str,
    note: Annotated[str | None, typer.Option(help="why (required unless withdrawing your own)")] = None,
) -> ApiCall:
    """Reject a proposal, or withdraw your own."""
    path = f"/api/v1/masking/proposals/{proposal_id}/reject"
    return ApiCall("POST", path, body={"note": note})


@app.command("dry-run")
@api_command
def dry_run(
    role: Annotated[str, typer.Option(help="reader's role, e.g. village_cadre")],
    scenario: Annotated[str, typer.Option(help="scenario code, e.g. DIBAO_REVIEW")],
    dataset: Annotated[str, typer.Option(help="dataset")] = "residents",
    profile: Annotated[
        str | None,
        typer.Option(help="masking profile to try (default: the scenario's, as on the data path)"),
    ] = None,
    fields: Annotated[str | None, typer.Option(help="comma-separated fields (default: all)")] = None,
    sample: Annotated[
        str | None,
        typer.Option(help="a sample record as JSON (for real personal data use --sample-file: not argv)"),
    ] = None,
    sample_file: Annotated[
        Path | None,
        typer.Option(
            "--sample-file",
            help="read the sample record (JSON) from this file, or from standard input with '-'; keeps "
            "personal data out of the process list and shell history",
        ),
    ] = None,
    exempt: Annotated[list[str] | None, typer.Option(help="FIELD=OPERATOR exemption (repeatable)")] = None,
    proposal: Annotated[
        str | None, typer.Option(help="dry-run as if this pending proposal were approved")
    ] = None,
) -> ApiCall:
    """Show the plan (field → operator and why) and the masked sample, for a reader of ROLE in SCENARIO
    (both must be codes the policy serves; the scenario picks the profile unless --profile names one)."""
    exemptions: dict[str, str] = {}
    for item in exempt or []:
        name, sep, op = item.partition("=")
        if not sep:
            typer.echo("--exempt 的格式是 字段=脱敏算子。\n--exempt takes FIELD=OPERATOR", err=True)
            raise typer.Exit(2)
        exemptions[name] = op
    body: dict[str, Any] = {
        "dataset": dataset,
        "role": role,
        "scenario": scenario,
        "exemptions": exemptions,
        "sample": _sample(sample, sample_file),
        "proposal_id": proposal,
    }
    if profile is not None:
        body["profile"] = profile
    if fields is not None:
        body["fields"] = split_list(fields)
    return ApiCall("POST", "/api/v1/masking/dry-run", body=body)


@app.command("unmask")
@api_command
def unmask(
    value: str,
    purpose: Annotated[str, typer.Option(help="why the clear value is needed (audited)")],
    field: Annotated[str, typer.Option(help="the field the value came from")],
    dataset: Annotated[str, typer.Option(help="dataset")] = "residents",
    key_id: Annotated[str | None, typer.Option(help="key id (FF1 pseudonyms)")] = None,
) -> ApiCall:
    """Reverse an AES-GCM envelope (enc:v2:...) or an FF1 ID pseudonym; audited before it answers."""
    body = {"value": value, "dataset": dataset, "field": field, "purpose": purpose, "key_id": key_id}
    return ApiCall("POST", "/api/v1/masking/unmask", body=body)


@app.command("drift")
@api_command
def drift(
    days: Annotated[int, typer.Option(help="look back this many days")] = 30,
    dataset: Annotated[str | None, typer.Option(help="only this dataset")] = None,
) -> ApiCall:
    """Catalog-drift alerts: personal data found in fields not classified as personal."""
    params = {"days": days, "dataset": dataset}
    return ApiCall("GET", "/api/v1/masking/drift", params=params)
