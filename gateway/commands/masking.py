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
    ScenarioOption,
    api_command,
    json_option,
    read_file_text,
    split_list,
)
from gateway.commands._help import HelpTyper, bilingual

app = HelpTyper(
    no_args_is_help=True,
    help=bilingual(
        "脱敏：数据目录（字段分级）、标签和脱敏规则，变更须经审批。",
        "Field catalog, tags and masking rules (with approvals).",
    ),
)
DatasetOption = Annotated[str, typer.Option(help=bilingual("数据集", "dataset"))]
OnlyDatasetOption = Annotated[str | None, typer.Option(help=bilingual("只看这个数据集", "only this dataset"))]
ProposalArg = Annotated[
    str, typer.Argument(help=bilingual("变更申请编号（形如 mp-…）", "proposal id (mp-...)"))
]


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


@app.command(
    "catalog",
    zh="数据目录：数据集、字段及其分级和标签。列出各字段的分级、语义类型和标签，以及基础标签和动态标签。",
)
@api_command
def catalog(dataset: OnlyDatasetOption = None) -> ApiCall:
    """Datasets and fields with level, semantic type and tags; base and dynamic tags."""
    return ApiCall("GET", "/api/v1/masking/catalog", params={"dataset": dataset})


@app.command("rules", zh="生效中的脱敏规则、脱敏方案和脱敏算子。规则按顺序匹配，首条匹配的生效。")
@api_command
def rules() -> ApiCall:
    """The masking rules in force (first match wins), profiles and operators."""
    return ApiCall("GET", "/api/v1/masking/rules")


@app.command("proposals", zh="变更申请列表，最新的在前。")
@api_command
def proposals(
    status: Annotated[
        str | None,
        typer.Option(
            help=bilingual(
                "状态：pending（待审批）、approved（已批准）、rejected（已驳回）或 withdrawn（已撤回）",
                "pending | approved | rejected | withdrawn",
            )
        ),
    ] = None,
) -> ApiCall:
    """Change proposals, newest first."""
    return ApiCall("GET", "/api/v1/masking/proposals", params={"status": status})


def _propose(kind: str, payload: dict[str, Any], reason: str) -> ApiCall:
    body = {"kind": kind, "payload": payload, "reason": reason}
    return ApiCall("POST", "/api/v1/masking/proposals", body=body)


@app.command("propose-field", zh="申请修改一个字段的分级。由数据所属部门的数据管理员审批。")
@api_command
def propose_field(
    dataset: Annotated[str, typer.Argument(help=bilingual("数据集", "dataset"))],
    field: Annotated[str, typer.Argument(help=bilingual("字段名", "field name"))],
    reason: ReasonOption,
    level: Annotated[
        str | None,
        typer.Option(
            help=bilingual("分级：1-4、important（重要数据）或 core（核心数据）", "1-4, important or core")
        ),
    ] = None,
    semantic_type: Annotated[
        str | None,
        typer.Option(
            help=bilingual("语义类型，例如 free_text、mobile、id_number", "e.g. free_text, mobile, id_number")
        ),
    ] = None,
    tags: Annotated[
        str | None,
        typer.Option(
            help=bilingual(
                "标签，以逗号分隔（替换该字段原有的标签）", "comma-separated tags (replaces the field's tags)"
            )
        ),
    ] = None,
    quasi_identifier: Annotated[
        bool | None,
        typer.Option(
            "--quasi-identifier/--not-quasi-identifier",
            help=bilingual("是否为准标识符（用于 k-匿名保护）", "k-anonymity guard"),
        ),
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


@app.command("propose-tag", zh="申请新增或删除一个动态标签（基础标签为固定集合）。")
@api_command
def propose_tag(
    action: Annotated[str, typer.Argument(help=bilingual("add（新增）或 delete（删除）", "add | delete"))],
    tag: Annotated[str, typer.Argument(help=bilingual("标签", "tag"))],
    reason: ReasonOption,
) -> ApiCall:
    """Propose adding or deleting a dynamic tag (base tags are a fixed set)."""
    if action not in ("add", "delete"):
        typer.echo("操作只能是 add（新增）或 delete（删除）。\naction must be add or delete", err=True)
        raise typer.Exit(2)
    return _propose(f"tag_{action}", {"tag": tag}, reason)


@app.command(
    "propose-rule",
    zh="申请新增或替换一条脱敏规则（由平台管理员审批）。请先用 `dry-run --proposal` 试运行。",
)
@api_command
def propose_rule(
    rule: Annotated[
        str, typer.Option(help=bilingual("规则（JSON），或 @文件.json", "the rule as JSON, or @file.json"))
    ],
    reason: ReasonOption,
    before: Annotated[
        str | None,
        typer.Option(help=bilingual("插在这条规则之前（规则标识）", "insert before this rule id")),
    ] = None,
) -> ApiCall:
    """Propose adding or replacing a rule (a platform administrator approves). Test it first with
    `dry-run --proposal`."""
    raw = read_file_text(Path(rule[1:])) if rule.startswith("@") else rule
    payload: dict[str, Any] = {"rule": json_option(raw, "--rule")}
    if before is not None:
        payload["before"] = before
    return _propose("rule_upsert", payload, reason)


@app.command("propose-rule-delete", zh="申请删除一条脱敏规则（由平台管理员审批）。")
@api_command
def propose_rule_delete(
    rule_id: Annotated[str, typer.Argument(help=bilingual("规则标识", "rule id"))],
    reason: ReasonOption,
) -> ApiCall:
    """Propose deleting a rule (a platform administrator approves)."""
    return _propose("rule_delete", {"rule_id": rule_id}, reason)


@app.command("approve", zh="批准一项变更申请（不能是本人提出的）。批准后在每个网关进程中生效。")
@api_command
def approve(
    proposal_id: ProposalArg,
    note: Annotated[str | None, typer.Option(help=bilingual("审批意见", "approval note"))] = None,
) -> ApiCall:
    """Approve a proposal (not your own): it takes effect in every gateway process."""
    path = f"/api/v1/masking/proposals/{proposal_id}/approve"
    return ApiCall("POST", path, body={"note": note})


@app.command("reject", zh="驳回一项变更申请，或撤回本人提出的申请。")
@api_command
def reject(
    proposal_id: ProposalArg,
    note: Annotated[
        str | None,
        typer.Option(
            help=bilingual("驳回理由（撤回本人的申请时可不填）", "why (required unless withdrawing your own)")
        ),
    ] = None,
) -> ApiCall:
    """Reject a proposal, or withdraw your own."""
    path = f"/api/v1/masking/proposals/{proposal_id}/reject"
    return ApiCall("POST", path, body={"note": note})


@app.command(
    "dry-run",
    zh="脱敏试运行：显示脱敏方案和脱敏后的样例。方案列出每个字段所用的脱敏算子及原因；"
    "按 ROLE 岗位的读者在 SCENARIO 场景下计算（两者都须是策略中有的代码；除非用 --profile 指定，"
    "脱敏方案由场景决定）。",
)
@api_command
def dry_run(
    role: Annotated[
        str,
        typer.Option(help=bilingual("读者的岗位，例如 village_cadre", "reader's role, e.g. village_cadre")),
    ],
    scenario: ScenarioOption,
    dataset: DatasetOption = "residents",
    profile: Annotated[
        str | None,
        typer.Option(
            help=bilingual(
                "要试的脱敏方案（默认：场景的脱敏方案，与实际访问时相同）",
                "masking profile to try (default: the scenario's, as on the data path)",
            )
        ),
    ] = None,
    fields: Annotated[
        str | None,
        typer.Option(
            help=bilingual("字段，以逗号分隔（默认：全部）", "comma-separated fields (default: all)")
        ),
    ] = None,
    sample: Annotated[
        str | None,
        typer.Option(
            help=bilingual(
                "一条样例记录（JSON）；真实个人信息请用 --sample-file，不要写在命令行上",
                "a sample record as JSON (for real personal data use --sample-file: not argv)",
            )
        ),
    ] = None,
    sample_file: Annotated[
        Path | None,
        typer.Option(
            "--sample-file",
            help=bilingual(
                "从此文件读取样例记录（JSON），用 - 表示从标准输入读取；"
                "个人信息不会出现在进程列表和命令历史中",
                "read the sample record (JSON) from this file, or from standard input with '-'; keeps "
                "personal data out of the process list and shell history",
            ),
        ),
    ] = None,
    exempt: Annotated[
        list[str] | None,
        typer.Option(
            help=bilingual("豁免：字段=脱敏算子（可重复）", "FIELD=OPERATOR exemption (repeatable)")
        ),
    ] = None,
    proposal: Annotated[
        str | None,
        typer.Option(
            help=bilingual(
                "假定这项待审批的变更申请已批准，再试运行",
                "dry-run as if this pending proposal were approved",
            )
        ),
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


@app.command(
    "unmask",
    zh="还原脱敏数据。可解开 AES-GCM 密文（enc:…）或 FF1 身份证号假名；先记入审计日志，再给出结果。",
)
@api_command
def unmask(
    value: Annotated[
        str, typer.Argument(help=bilingual("要还原的密文或假名", "the envelope or pseudonym to reverse"))
    ],
    purpose: Annotated[
        str,
        typer.Option(
            help=bilingual(
                "还原用途：为何需要明文（记入审计日志）", "why the clear value is needed (audited)"
            )
        ),
    ],
    field: Annotated[str, typer.Option(help=bilingual("该值所在的字段", "the field the value came from"))],
    dataset: DatasetOption = "residents",
    key_id: Annotated[
        str | None, typer.Option(help=bilingual("密钥编号（FF1 假名）", "key id (FF1 pseudonyms)"))
    ] = None,
) -> ApiCall:
    """Reverse an AES-GCM envelope (enc:...) or an FF1 ID pseudonym; audited before it answers."""
    body = {"value": value, "dataset": dataset, "field": field, "purpose": purpose, "key_id": key_id}
    return ApiCall("POST", "/api/v1/masking/unmask", body=body)


@app.command("drift", zh="编目偏差告警：在未标为个人信息的字段中发现了个人信息。")
@api_command
def drift(
    days: Annotated[int, typer.Option(help=bilingual("回看最近这么多天", "look back this many days"))] = 30,
    dataset: OnlyDatasetOption = None,
) -> ApiCall:
    """Catalog-drift alerts: personal data found in fields not classified as personal."""
    params = {"days": days, "dataset": dataset}
    return ApiCall("GET", "/api/v1/masking/drift", params=params)
