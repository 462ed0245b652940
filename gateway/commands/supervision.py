"""``grassroots supervise ...``: audit queries, reports, anomalies, the monthly report, complaints and
incidents, resident transparency, proofs, checkpoints, retention, archives and pruning.

A thin client of ``/api/v1/supervision`` (same permission checks, same audit trail as the API), except
``archive-verify``, ``prefix-verify`` and ``incident --verify``, which check signatures and proofs
locally so a reviewer need not trust the server. ID numbers are never taken on the command line (shell
history, process lists): they are prompted for without echo in a terminal, or read from
``GRASSROOTS_SUBJECT_ID_NUMBER`` (without a terminal, only from there).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Final, NoReturn

import typer

from gateway.commands._client import ApiCall, api_command, load_settings, refused, show
from gateway.commands._help import HelpTyper, bilingual
from gateway.commands._usage import complaint_case_id, division_code, incident_case_id, month

app = HelpTyper(
    no_args_is_help=True,
    help=bilingual(
        "监督：审计查询、统计报告、投诉与事件。另有异常线索、定期通报、居民查询、证明、检查点、归档与清理。",
        "Audit queries, reports, complaints, incidents; also anomalies, the monthly report, resident "
        "transparency, proofs, checkpoints, retention, archives and pruning.",
    ),
)
_BASE = "/api/v1/supervision"
_ID_ENV = "GRASSROOTS_SUBJECT_ID_NUMBER"
_PublicKeyOption = Annotated[
    Path | None,
    typer.Option(
        help=bilingual(
            "检查点公钥 PEM 文件，用于在本机核验检查点签名（默认：本机配置的检查点密钥，若有）",
            "the checkpoint public key PEM, to check the checkpoint's signature here (default: this "
            "machine's configured checkpoint key, if it has one)",
        )
    ),
]


def _id_number() -> str:
    value = os.environ.get(_ID_ENV)
    if value:
        return value
    if not sys.stdin.isatty():
        # getpass would fall back to reading the number with echo (a GetPassWarning), or abort: in a
        # script or a pipe the environment variable is the only way in (exit 2 like any usage error).
        typer.echo(
            f"需要居民身份证号码：当前不在终端中运行，无法不回显地输入。请设置环境变量 {_ID_ENV}，"
            "或在终端中运行本命令（届时会提示输入，输入内容不显示）。\n"
            f"the resident's ID number is needed and there is no terminal to type it in without echo: "
            f"set {_ID_ENV}, or run the command in a terminal (it then asks, without echo)",
            err=True,
        )
        raise typer.Exit(2)
    entered: str = typer.prompt("居民身份证号码 / resident ID number", hide_input=True)
    return entered


def _one_of(option: str, value: str, choices: list[str]) -> None:
    """Refuse a value the gateway would refuse, naming the option as typed (exit 2, the API's words)."""
    if value not in choices:
        typer.echo(
            f"请求参数有误：{option}（只能是 {'、'.join(choices)} 之一）。\n"
            f"Invalid request parameters: {option} (must be one of {', '.join(choices)}).",
            err=True,
        )
        raise typer.Exit(2)


SinceOption = Annotated[
    str | None,
    typer.Option(
        help=bilingual(
            "起始日期或时间（例如 2026-11-01，按北京时间；或 2026-11-01T08:00:00+08:00）",
            "from this day (e.g. 2026-11-01, Beijing time) or time (2026-11-01T08:00:00+08:00)",
        )
    ),
]
UntilOption = Annotated[
    str | None,
    typer.Option(
        help=bilingual(
            "截止日期（含当天，按北京时间）或时间（不含）",
            "through this day (Beijing time), or until this time",
        )
    ),
]
OrgSubtreeOption = Annotated[
    str | None,
    typer.Option(
        help=bilingual("只看此单位及其下级（区划代码）", "organisation subtree (division code)"),
        callback=division_code,
    ),
]
IncidentArg = Annotated[
    str, typer.Argument(help=bilingual("事件编号", "incident id"), callback=incident_case_id)
]
ComplaintArg = Annotated[
    str, typer.Argument(help=bilingual("投诉编号", "complaint id"), callback=complaint_case_id)
]
LimitOption = Annotated[int, typer.Option(help=bilingual("返回条数（1-500）", "how many (1-500)"))]
OffsetOption = Annotated[
    int,
    typer.Option(
        help=bilingual(
            "跳过的条数（结果中的 total 为符合条件的总数）",
            "skip this many (the answer's total says how many match)",
        )
    ),
]


@app.command(zh="查询审计事件（最新的在前；只含引用，不含个人信息）。")
@api_command
def events(
    org: OrgSubtreeOption = None,
    actor: Annotated[str | None, typer.Option(help=bilingual("操作者的用户编号", "user id"))] = None,
    scenario: Annotated[str | None, typer.Option(help=bilingual("场景代码", "scenario code"))] = None,
    dataset: Annotated[str | None, typer.Option(help=bilingual("数据集", "dataset"))] = None,
    outcome: Annotated[
        str | None,
        typer.Option(help=bilingual("结果：allowed、refused、ok 或 error", "allowed | refused | ok | error")),
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option(
            help=bilingual(
                "事件类型，或以 . 结尾的一类，例如 data.", "event kind, or a family ending in '.', e.g. data."
            )
        ),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            help=bilingual(
                "请求来源地址：IP 地址（IPv6 按其 /64 网段），或 unknown",
                "where the requests came from: an IP address (IPv6: its /64 block), or unknown",
            )
        ),
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    before: Annotated[
        int | None,
        typer.Option(help=bilingual("翻页游标（上一页的 next_before）", "page cursor (next_before)")),
    ] = None,
    limit: Annotated[int, typer.Option(help=bilingual("最多返回条数", "how many at most"))] = 50,
) -> ApiCall:
    """Query audit events (newest first; refs only, never personal data)."""
    params = {
        "org": org,
        "actor": actor,
        "source": source,
        "scenario": scenario,
        "dataset": dataset,
        "outcome": outcome,
        "kind": kind,
        "since": since,
        "until": until,
        "before": before,
        "limit": limit,
    }
    return ApiCall("GET", f"{_BASE}/events", params=params)


@app.command(zh="访问统计：按单位、部门或场景汇总。列出允许与拒绝次数、读取记录数和涉及用户数。")
@api_command
def report(
    group_by: Annotated[
        str,
        typer.Option(
            "--by",
            help=bilingual(
                "统计维度：org（单位）、department（部门）或 scenario（场景）", "org | department | scenario"
            ),
        ),
    ] = "org",
    org: OrgSubtreeOption = None,
    org_level: Annotated[
        int,
        typer.Option(
            help=bilingual("按 2/4/6/9/12 位区划代码汇总单位", "roll organisations up to 2/4/6/9/12 digits")
        ),
    ] = 12,
    since: SinceOption = None,
    until: UntilOption = None,
) -> ApiCall:
    """Counts allowed/refused, records read and distinct users per organisation, department or scenario."""
    from audit.reports import GroupBy

    _one_of("--by", group_by, [g.value for g in GroupBy])
    # The gateway's refusal names its own parameter (org_level); the user typed --org-level.
    _one_of("--org-level", str(org_level), ["2", "4", "6", "9", "12"])
    params = {"group_by": group_by, "org": org, "org_level": org_level, "since": since, "until": until}
    return ApiCall("GET", f"{_BASE}/reports", params=params)


@app.command(zh="运行异常规则，找出异常线索；每条线索列出相关事件的序号。")
@api_command
def anomalies(
    since: SinceOption = None,
    until: UntilOption = None,
    org: OrgSubtreeOption = None,
    rule: Annotated[
        list[str] | None,
        typer.Option(help=bilingual("只运行这条规则（可重复）", "only this rule (repeatable)")),
    ] = None,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help=bilingual(
                "临时调整规则参数，例如 bulk_reading.min_records=200",
                "override, e.g. bulk_reading.min_records=200",
            ),
        ),
    ] = None,
) -> ApiCall:
    """Run the anomaly rules; each finding lists the seqs of its events."""
    params: dict[str, Any] = {"since": since, "until": until, "org": org, "rule": rule, "setting": setting}
    return ApiCall("GET", f"{_BASE}/anomalies", params=params)


@app.command(zh="导出定期通报（月度）。格式为可打印的 HTML 页面、CSV、PDF 或 JSON。")
@api_command
def monthly(
    month: Annotated[
        str,
        typer.Option(
            callback=month,
            help=bilingual(
                "月份（北京时间），例如 2026-11、2026-1 或 2026年11月",
                "month (Beijing time), e.g. 2026-11 or 2026-1",
            ),
        ),
    ],
    fmt: Annotated[
        str,
        typer.Option("--format", help=bilingual("格式：html、csv、pdf 或 json", "html | csv | pdf | json")),
    ] = "html",
    org: OrgSubtreeOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help=bilingual(
                "保存到的文件（默认：当前目录下的 audit-report-月份.扩展名）",
                "file to write (default: audit-report-MONTH.EXT in the current directory)",
            )
        ),
    ] = None,
) -> ApiCall:
    """The monthly notification report as a printable HTML page, CSV, PDF or JSON."""
    params = {"month": month, "format": fmt, "org": org}
    if fmt == "json":
        return ApiCall("GET", f"{_BASE}/reports/monthly", params=params)
    target = out or Path(f"audit-report-{month}.{fmt}")
    _check_writable(target)
    return ApiCall("GET", f"{_BASE}/reports/monthly", params=params, raw=True, render=_write_to(target))


def _check_writable(target: Path) -> None:
    """Refuse a place the report cannot be written to before the gateway is asked: asking hands a report out
    and records it in the audit log (``supervision.monthly_report``), which must not happen for nothing."""
    folder = target.parent
    problem: tuple[str, str] | None = None
    if target.is_dir():
        problem = (f"{target} 是一个文件夹，请给出文件名", f"{target} is a folder; give a file name")
    elif not folder.exists():
        problem = (
            f"文件夹 {folder} 不存在，请先创建",
            f"the folder {folder} does not exist; create it first",
        )
    elif not folder.is_dir():
        problem = (f"{folder} 不是文件夹", f"{folder} is not a folder")
    elif not os.access(folder, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        problem = (f"没有写入 {target} 的权限", f"no permission to write {target}")
    if problem is not None:
        typer.echo(
            f"无法写入报告：{problem[0]}（--out 指定保存位置）。\ncannot write the report: {problem[1]} "
            "(--out chooses where)",
            err=True,
        )
        raise typer.Exit(2)


def _write_to(target: Path) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        try:
            target.write_bytes(data)
        except OSError as exc:
            # The gateway has handed the report out (and recorded that); say so, and why it is not here.
            why = exc.strerror or type(exc).__name__
            typer.echo(
                f"报告已生成，但无法保存到 {target}：{why}。请检查磁盘空间和权限后重新导出。\n"
                f"the report was produced but could not be saved to {target}: {why}",
                err=True,
            )
            target.unlink(missing_ok=True)
            raise typer.Exit(1) from None
        where = target.resolve()  # the default lands in the current directory: say which one
        typer.echo(f"已写入 {where}（{len(data)} 字节）\nwritten {where} ({len(data)} bytes)")
        note = getattr(data, "note", None)  # what the file says first (a code naming no division)
        if note is not None:
            typer.echo(f"注意：{note[0]}\nnote: {note[1]}")

    return write


@app.command(
    zh="""登记投诉，并为其立案一个事件。事件附有涉及该居民的每次访问及其证明。

    居民身份证号码不在命令行上输入：在终端中会提示输入（不回显），
    或从环境变量 GRASSROOTS_SUBJECT_ID_NUMBER 读取。"""
)
@api_command
def complain(
    source: Annotated[
        str,
        typer.Option(
            help=bilingual(
                "投诉来源：hotline_12345（12345 热线）、burden_monitoring（减负监测点）或 walk_in（来访）",
                "hotline_12345 | burden_monitoring | walk_in",
            )
        ),
    ],
    summary: Annotated[
        str,
        typer.Option(
            help=bilingual(
                "居民反映的内容（不要填写身份证号、手机号）",
                "what the resident reports (no ID or phone numbers)",
            )
        ),
    ] = "",
    ticket: Annotated[
        str | None,
        typer.Option(help=bilingual("工单号，例如 12345 热线工单号", "e.g. the 12345 work-order number")),
    ] = None,
) -> ApiCall:
    """Register a complaint; the incident opens with every access to the person and its proof.

    The resident's ID number is never taken on the command line: it is asked for without echo in a terminal,
    or read from GRASSROOTS_SUBJECT_ID_NUMBER."""
    from audit import ComplaintSource

    # Before the ID number is asked for: a typo here must not cost typing the number again.
    _one_of("source", source, [s.value for s in ComplaintSource])

    def register(_: Any) -> ApiCall:
        body = {"source": source, "id_number": _id_number(), "summary": summary, "ticket": ticket}
        return ApiCall("POST", f"{_BASE}/complaints", body=body, render=_show_registered)

    return _permitted("register", "登记投诉", "register complaints", register)


def _beijing(stamp: Any) -> str:
    """An answer's UTC time (``2026-12-21T12:06:33.713653Z``) as an official reads it, Beijing time."""
    from datetime import datetime

    from audit.query import beijing_clock

    try:
        return beijing_clock(datetime.fromisoformat(str(stamp).replace("Z", "+00:00")))[:16]
    except ValueError:
        return str(stamp)


def registered_sentences(answer: dict[str, Any]) -> list[str]:
    """What a registered complaint means and what to do next, Chinese first: the case numbers, how many
    accesses to the person were found (or that none were), whether a system did not answer, the two
    deadlines and the next command. Names no resident (the answer holds none)."""
    complaint, incident = answer.get("complaint") or {}, answer.get("incident") or {}
    case, found = incident.get("incident_id", ""), int(answer.get("evidence_events") or 0)
    zh = [f"已登记投诉 {complaint.get('complaint_id', '')}，并立案事件 {case}。"]
    en = [f"Complaint {complaint.get('complaint_id', '')} registered; incident {case} opened."]
    if found:
        zh.append(
            f"找到涉及该居民的访问 {found} 次（获准的查看与被拒绝的尝试合计），均已附包含证明，"
            f"可用 grassroots supervise incident {case} 查看。"
        )
        en.append(
            f"Accesses to the resident found (allowed reads and refused attempts): {found}, each with proof."
        )
    else:
        zh.append("审计日志中没有找到涉及该居民的访问：事件仍已立案，核实后可办结并答复投诉人。")
        en.append("No access to the resident was found in the audit log; the incident is open all the same.")
    gaps = answer.get("evidence_incomplete") or []
    zh += [str(g.get("message", "")) for g in gaps]
    en += [str(g.get("message_en", "")) for g in gaps]
    if gaps:
        zh.append(f"系统恢复后请运行 grassroots supervise recheck {case}。")
        en.append(f"Once it answers, run grassroots supervise recheck {case}.")
    zh.append(
        f"答复投诉人期限：{_beijing(complaint.get('due_at'))}；事件办结期限：{_beijing(incident.get('due_at'))}"
        f"（北京时间）。下一步：grassroots supervise assign {case} --to <承办人>"
    )
    en.append(
        f"Answer the complainant by {_beijing(complaint.get('due_at'))}, close the incident by "
        f"{_beijing(incident.get('due_at'))} (Beijing time). Next: grassroots supervise assign {case} "
        "--to <assignee>"
    )
    note_zh, note_en = _estimate_note((complaint, _ANSWER_DEADLINE), (incident, _CLOSING_DEADLINE))
    return zh + note_zh + en + note_en


_ANSWER_DEADLINE: Final = ("答复投诉人期限", "answer deadline")
_CLOSING_DEADLINE: Final = ("事件办结期限", "closing deadline")


def _estimate_note(*answers: tuple[dict[str, Any], tuple[str, str]]) -> tuple[list[str], list[str]]:
    """The warning that a deadline is an estimate (a year without a known holiday schedule), naming
    which deadlines are; the explanation said once."""
    which = [(zh, en, answer) for answer, (zh, en) in answers if answer.get("due_estimated")]
    if not which:
        return [], []
    names_zh, names_en = "、".join(w[0] for w in which), " and ".join(w[1] for w in which)
    answer = which[0][2]
    note_zh, note_en = answer.get("due_estimated_note", ""), answer.get("due_estimated_note_en", "")
    return [f"注意（{names_zh}）：{note_zh}"], [f"Note ({names_en}): {note_en}"]


def _show_registered(answer: Any) -> None:
    show(answer)
    for line in registered_sentences(answer):
        typer.echo(line, err=True)


@app.command(
    "who-read",
    zh="""居民查询：谁（单位、岗位）在何时、为何读取了这位居民的数据。

    居民身份证号码在终端中提示输入（不回显），或从环境变量 GRASSROOTS_SUBJECT_ID_NUMBER 读取。
    结果以 JSON 输出；可转告居民的说明以中文句子另行输出到标准错误。""",
)
@api_command
def who_read(limit: LimitOption = 100, offset: OffsetOption = 0) -> ApiCall:
    """Resident transparency: who (organisation, role) read this person's data, when, for what.

    The resident's ID number is asked for without echo in a terminal, or read from
    GRASSROOTS_SUBJECT_ID_NUMBER. The answer is printed as JSON, newest read first, --limit at a time;
    what to tell the resident follows on stderr, in sentences."""
    return _permitted(
        "read",
        "查询居民数据被谁读取",
        "look up who read a resident's data",
        lambda _: ApiCall(
            "POST",
            f"{_BASE}/transparency",
            params={"limit": limit, "offset": offset},
            body={"id_number": _id_number()},
            render=_show_who_read,
        ),
    )


def who_read_sentences(answer: dict[str, Any]) -> list[str]:
    """What the supervisor tells the resident who called, one line per read, Chinese first: when (Beijing
    time), which organisation and role, for which work, what was read. Names no reader and no resident."""
    accesses = answer.get("accesses") or []
    total = int(answer.get("total", len(accesses)))
    if not accesses and total > 0:
        # An --offset past the last read: the resident's data *was* read; "nobody read it" would be
        # told to the caller otherwise.
        return [
            f"该居民的数据共被查看 {total} 次（只列出获准的查看；被拒绝的尝试见投诉事件），"
            f"但 --offset {answer.get('offset', 0)} 已超过最后一次，本页没有列出任何一次。"
            "请去掉 --offset（从最新的一次看起），或改为小于该次数的值。",
            f"{total} allowed reads of this resident's data (refused attempts are in a complaint's "
            f"incident), but --offset {answer.get('offset', 0)} is past the last of them, so none is "
            "shown here. Leave out --offset (newest first), or give one below that number.",
        ]
    if not accesses:
        return [
            "没有查到该居民的数据被查看的记录（只列出获准的查看；被拒绝的尝试见投诉事件）。",
            "No read of this resident's data was found (allowed reads only; refused attempts are in a "
            "complaint's incident).",
        ]
    first = int(answer.get("offset", 0)) + 1
    last = first + len(accesses) - 1
    shown_zh = shown_en = ""
    if len(accesses) < total:
        span = f"{first}" if first == last else f"{first} 至 {last}"
        shown_zh = f"以下是最近的第 {span} 次（最新的在前）"
        shown_en = f"; shown: the most recent {span.replace(' 至 ', ' to ')}, newest first"
        if last < total:
            shown_zh += f"，更早的请加 --offset {last} 查看"
            shown_en += f", earlier ones with --offset {last}"
        shown_zh = "。" + shown_zh
    lines = [f"该居民的数据共被查看 {total} 次（只列出获准的查看；被拒绝的尝试见投诉事件）{shown_zh}："]
    for a in accesses:
        who = a.get("org_name") or a.get("org") or "未能确定的单位"
        roles = "、".join(a.get("role_labels") or a.get("roles") or [])
        work = a.get("scenario_name") or a.get("scenario") or "未指明的工作"
        what = a.get("dataset_title") or a.get("dataset") or ""
        fields = "、".join(a.get("field_titles") or [])
        when = f"  {a.get('occurred_at_beijing', a.get('occurred_at'))}（北京时间） {who}（{roles}）"
        if a.get("kind") == "masking.unmask_revealed":
            # A steward's unmask: no scenario, and the value was seen whole, not desensitised.
            lines.append(f"{when}还原查看了{what}中的{fields or '数据'}（未脱敏的完整内容）")
            continue
        shown = "（按脱敏规则显示）" if a.get("masking_profile") else ""
        lines.append(f"{when}为「{work}」查看了{what}{shown}" + (f"：{fields}" if fields else ""))
    lines.append(
        f"{total} allowed reads of this resident's data "
        f"(refused attempts are in a complaint's incident){shown_en}"
    )
    return lines


def _show_who_read(answer: Any) -> None:
    show(answer)
    for line in who_read_sentences(answer):
        typer.echo(line, err=True)


def _permitted(action: str, doing_zh: str, doing_en: str, then: Callable[[Any], ApiCall]) -> ApiCall:
    """Ask the gateway whether the caller may ``action`` on the audit log before ``then`` asks for a
    resident's ID number: a role that may not is told so at once (exit 1, as the API's refusal), not after
    typing it."""

    def checked(answer: Any) -> ApiCall:
        if not answer.get("allowed"):
            raise refused(
                {
                    "error": "no_permission",
                    "message": f"您的岗位无权{doing_zh}，无需输入身份证号码。",
                    "message_en": f"Your role may not {doing_en} (permission: {action} audit); "
                    "no ID number is needed.",
                }
            )
        return then(answer)

    return ApiCall("GET", "/api/v1/me/can", params={"resource": "audit", "action": action}, then=checked)


@app.command(zh="列出投诉（最新的在前），可只看某一状态的投诉。")
@api_command
def complaints(
    status: Annotated[
        str | None,
        typer.Option(
            help=bilingual(
                "状态：open、investigating、closed（按其事件的进展）或 overdue（已逾期）",
                "open | investigating | closed (where its incident stands) | overdue",
            )
        ),
    ] = None,
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
) -> ApiCall:
    """List complaints (newest first), optionally only those in one status."""
    from audit.complaints import COMPLAINT_STATUSES

    if status is not None:
        _one_of("status", status, list(COMPLAINT_STATUSES))
    params: dict[str, Any] = {"status": status, "limit": limit, "offset": offset}
    return ApiCall("GET", f"{_BASE}/complaints", params=params)


@app.command(
    zh="""查看一件投诉（其事件、答复期限、是否逾期）。

    结果以 JSON 输出；办理到哪一步、处理结论和答复期限，以中文句子另行输出到标准错误，便于答复投诉人。"""
)
@api_command
def complaint(complaint_id: ComplaintArg) -> ApiCall:
    """Show one complaint (its incident, deadline, whether it is overdue).

    Printed as JSON; where the case stands, its conclusion and the answer deadline follow on stderr, in
    sentences, for whoever answers the complainant."""
    return ApiCall("GET", f"{_BASE}/complaints/{complaint_id}", render=_shown_with(complaint_sentences))


_SOURCES: Final = {
    "hotline_12345": ("12345 热线", "12345 hotline"),
    "burden_monitoring": ("减负监测点", "burden-monitoring point"),
    "walk_in": ("来访", "walk-in"),
}
_DISPOSITIONS: Final = {
    "substantiated": ("属实", "substantiated"),
    "unsubstantiated": ("不属实", "unsubstantiated"),
    "referred": ("已移送纪检监察或公安机关", "referred to the discipline inspection body or the police"),
}


def complaint_sentences(answer: dict[str, Any]) -> list[str]:
    """Where a complaint stands, in words for whoever answers the complainant, Chinese first: the channel
    and ticket, the incident's state (and the command for its next step), its conclusion once closed, and
    while open the answer deadline and each deadline missed. The answer gave only codes
    (``"incident_status": "closed", "disposition": "substantiated"``). Names no resident."""
    cid, iid = answer.get("complaint_id", ""), answer.get("incident_id") or ""
    source_zh, source_en = _SOURCES.get(str(answer.get("source")), (str(answer.get("source")),) * 2)
    ticket = answer.get("ticket")
    zh = f"投诉 {cid}（{source_zh}" + (f"，工单号 {ticket}" if ticket else "") + "）："
    en = f"Complaint {cid} ({source_en}" + (f", ticket {ticket}" if ticket else "") + "): "
    status = answer.get("incident_status")
    if not iid:
        zh, en = zh + "尚未立案。", en + "no incident opened."
    elif status == "closed":
        said_zh, said_en = _DISPOSITIONS.get(str(answer.get("disposition")), ("（未知）", "(unknown)"))
        zh += (
            f"事件 {iid} 已办结，处理结论：{said_zh}。请按处理意见答复投诉人"
            f"（处理意见见 grassroots supervise incident {iid} 的办理步骤）。"
        )
        en += (
            f"incident {iid} is closed: {said_en}. Answer the complainant with its disposition note "
            f"(in the steps of grassroots supervise incident {iid})."
        )
    elif status == "open":
        zh += f"事件 {iid} 已立案，尚未分派承办人（grassroots supervise assign {iid} --to <承办人>）。"
        en += (
            f"incident {iid} is open and not yet assigned "
            f"(grassroots supervise assign {iid} --to <assignee>)."
        )
    else:
        zh, en = zh + f"事件 {iid} 正在核查。", en + f"incident {iid} is under investigation."
    lines_zh, lines_en = [zh], [en]
    if status != "closed":
        due = answer.get("due_at_beijing") or _beijing(answer.get("due_at"))
        lines_zh.append(f"答复投诉人期限：{str(due)[:16]}（北京时间）。")
        lines_en.append(f"Answer the complainant by {str(due)[:16]} (Beijing time).")
        _say_missed(answer, lines_zh, lines_en)
        if answer.get("escalated"):
            # What the hotline tells the caller: the case has gone up to the office above for oversight.
            lines_zh.append(f"{answer.get('escalation_message', '')}。可告知投诉人：已由上级部门督办。")
            lines_en.append(
                f"The incident is {answer.get('escalation_message_en', '')}. The complainant may be told "
                "the office above is overseeing it."
            )
        note_zh, note_en = _estimate_note((answer, _ANSWER_DEADLINE))
        lines_zh += note_zh
        lines_en += note_en
    return lines_zh + lines_en


def _say_missed(answer: dict[str, Any], lines_zh: list[str], lines_en: list[str]) -> None:
    """Each deadline a case has missed, as the answer words it (``overdue_deadlines``)."""
    for missed in answer.get("overdue_deadlines") or []:
        lines_zh.append(f"{missed.get('message', '')}。")
        lines_en.append(f"{missed.get('message_en', '')}.")


def _shown_with(sentences: Callable[[dict[str, Any]], list[str]]) -> Callable[[Any], None]:
    """A renderer printing the answer as JSON on stdout and ``sentences`` of it on stderr."""

    def render(answer: Any) -> None:
        show(answer)
        for line in sentences(answer):
            typer.echo(line, err=True)

    return render


def incident_sentences(answer: dict[str, Any]) -> list[str]:
    """Where an incident stands after a step (hand-down, assign, note, dispose, reopen), in words, Chinese
    first: who holds it, its state and assignee (or its conclusion once closed, or the command for its
    next step), and while open both deadlines on the Beijing clock and each one missed. The step's answer
    was the whole incident as JSON only, a page of codes and UTC stamps. Names no resident."""
    iid, cid, org = answer.get("incident_id", ""), answer.get("complaint_id", ""), answer.get("org")
    zh = f"事件 {iid}" + (f"（管辖单位 {org}）" if org else "") + "："
    en = f"Incident {iid}" + (f" (held by {org})" if org else "") + ": "
    status, assignee = answer.get("status"), answer.get("assignee")
    if status == "closed":
        said_zh, said_en = _DISPOSITIONS.get(str(answer.get("disposition")), ("（未知）", "(unknown)"))
        zh += f"已办结，处理结论：{said_zh}。请按处理意见答复投诉人（grassroots supervise complaint {cid}）。"
        en += f"closed: {said_en}. Answer the complainant (grassroots supervise complaint {cid})."
    elif assignee:
        zh, en = zh + f"正在核查，承办人：{assignee}。", en + f"under investigation by {assignee}."
    else:
        zh += f"尚未分派承办人（grassroots supervise assign {iid} --to <承办人>）。"
        en += f"not yet assigned (grassroots supervise assign {iid} --to <assignee>)."
    lines_zh, lines_en = [zh], [en]
    if status != "closed":
        due = answer.get("due_at_beijing") or _beijing(answer.get("due_at"))
        answer_due = answer.get("complaint_due_at_beijing") or _beijing(answer.get("complaint_due_at"))
        lines_zh.append(
            f"事件办结期限：{str(due)[:16]}；答复投诉人期限：{str(answer_due)[:16]}（北京时间）。"
        )
        lines_en.append(
            f"Close the incident by {str(due)[:16]}, answer the complainant by {str(answer_due)[:16]} "
            "(Beijing time)."
        )
        _say_missed(answer, lines_zh, lines_en)
    return lines_zh + lines_en


_show_step: Final = _shown_with(incident_sentences)


@app.command(
    "set-jurisdiction",
    zh="""为管辖单位不明的投诉指定管辖单位（全国层面）。

    迁移 0013 之前登记、登记事件又已被清理的投诉没有管辖单位，只有全国层面的监督机构看得到。
    指定后，该单位及其上级的监督机构即可查看、办理这件投诉及其事件。已有管辖单位的投诉不能更改。""",
)
@api_command
def set_jurisdiction(
    complaint_id: ComplaintArg,
    org: Annotated[
        str,
        typer.Option(
            help=bilingual(
                "管辖单位的区划代码，例如 310151101000", "division code of the office it belongs to"
            ),
            callback=division_code,
        ),
    ],
) -> ApiCall:
    """Give a complaint whose jurisdiction is not known the office it belongs to (national level).

    A complaint registered before migration 0013 whose registration event was since pruned has none and is
    seen at the national level only; once given one, the supervisors of that office and above it see and
    handle the complaint and its incident. A complaint that has a jurisdiction keeps it."""
    return ApiCall("POST", f"{_BASE}/complaints/{complaint_id}/jurisdiction", body={"org": org})


@app.command(zh="按办结期限列出事件；--escalated 为本单位的督办清单。")
@api_command
def incidents(
    status: Annotated[
        str | None,
        typer.Option(help=bilingual("状态：open、investigating 或 closed", "open | investigating | closed")),
    ] = None,
    overdue: Annotated[
        bool, typer.Option("--overdue", help=bilingual("只看已逾期的", "only those past their deadline"))
    ] = False,
    due_within: Annotated[
        int | None,
        typer.Option(
            "--due-within",
            min=0,
            max=366,
            help=bilingual(
                "临期提醒：只看尚未逾期、N 天内（北京时间，0 为今天）到答复或办结期限的",
                "due soon: only those not yet late with a deadline within N Beijing days (0: today)",
            ),
        ),
    ] = None,
    escalated: Annotated[
        bool,
        typer.Option(
            "--escalated",
            help=bilingual(
                "督办：只看下级逾期未办结、已提请本单位督办的事件",
                "escalation list: the overdue incidents of the offices below escalated to yours",
            ),
        ),
    ] = False,
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
) -> ApiCall:
    """List incidents by deadline (--escalated: those escalated to your office for oversight)."""
    params: dict[str, Any] = {
        "status": status,
        "overdue": str(overdue).lower(),
        "escalated": str(escalated).lower(),
        "due_within_days": due_within,
        "limit": limit,
        "offset": offset,
    }
    return ApiCall("GET", f"{_BASE}/incidents", params=params)


@app.command(
    zh="""查看一个事件（办理步骤、证据事件、包含证明）。

    --verify 在本机逐一校验证明，然后输出事件和结论；有证明未通过时退出码为 1。"""
)
@api_command
def incident(
    incident_id: IncidentArg,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help=bilingual(
                "同时在本机校验每个证明：输出的事件中增加 local_verification，结论输出到标准错误",
                "also check every proof locally: prints the incident with 'local_verification' added, "
                "and the verdict on stderr",
            ),
        ),
    ] = False,
    public_key: _PublicKeyOption = None,
) -> ApiCall:
    """Show an incident (steps, evidence events, inclusion proofs).

    --verify checks every proof here, and the signature of the checkpoint recording their root, then prints
    the incident and the verdict; exit 1 if one fails."""
    if verify:
        return ApiCall(
            "GET", f"{_BASE}/incidents/{incident_id}", then=lambda data: _verify_evidence(data, public_key)
        )
    return ApiCall("GET", f"{_BASE}/incidents/{incident_id}")


def _verify_evidence(data: Any, public_key: Path | None) -> ApiCall:
    """Check the incident's proofs here, then fetch the signed checkpoints to say whether one has its root."""
    from audit import InvalidProofError, verify_incident_evidence

    try:
        checked = verify_incident_evidence(data, {})
    except InvalidProofError as exc:
        typer.echo(f"证据未通过本地校验：{exc}\nevidence does NOT verify: {exc}", err=True)
        raise typer.Exit(1) from None

    def summarise(signed: Any) -> None:
        size, root = data["tree_size"], data["root_hash"]
        of_size = [c for c in signed["items"] if c["tree_size"] == size]
        recording = next((c for c in of_size if c["root_hash"] == root), None)
        if recording is None and of_size:  # signed, with another root: the evidence is of a rewritten log
            _refuse_another_signed_root(of_size[0], size, root, "inclusion")
        match = recording is not None
        key_zh, key_en = _signature_here(recording, size, root, public_key)
        # The incident on stdout (JSON, as without --verify, plus what was checked here); the verdict in
        # words on stderr, so the output still pipes into a JSON tool.
        show(
            {
                **data,
                "local_verification": {
                    "evidence_events_verified": len(checked),
                    "root_hash": data["root_hash"],
                    "tree_size": data["tree_size"],
                    "signed_checkpoint_has_root": match,
                },
            }
        )
        # No evidence (nobody read the complainant's data): "0 条证据事件，均通向根哈希…" said nothing true.
        checked_zh = (
            f"已在本地校验 {len(checked)} 条证据事件，均通向根哈希 {data['root_hash']}"
            if checked
            else "该事件没有证据事件（审计日志中没有找到涉及该居民的访问），无需校验包含证明；"
            f"事件的根哈希 {data['root_hash']}"
        )
        checked_en = (
            f"{len(checked)} evidence events verified against root {data['root_hash']}"
            if checked
            else f"the incident has no evidence events (no access to the resident was found), so no proof "
            f"to check; the incident's root {data['root_hash']}"
        )
        typer.echo(
            f"{checked_zh}（树大小 {data['tree_size']}）；"
            + ("有签名检查点记录此根哈希。" if match else "没有列出该大小的签名检查点。")
            + key_zh,
            err=True,
        )
        typer.echo(
            f"{checked_en} (tree size {data['tree_size']}); "
            + ("a signed checkpoint has this root" if match else "no signed checkpoint of that size listed")
            + key_en,
            err=True,
        )

    return ApiCall("GET", f"{_BASE}/checkpoints", render=summarise)


@app.command(
    zh="""部门系统恢复应答后，重新核查一个未办结事件的证据。

    会再次要求输入投诉人的身份证号码（不回显，或取自 GRASSROOTS_SUBJECT_ID_NUMBER），须与该事件的投诉人一致。
    新找到的访问连同证明附入事件。"""
)
@api_command
def recheck(
    incident_id: IncidentArg,
    all_systems: Annotated[
        bool,
        typer.Option(
            "--all",
            help=bilingual(
                "重新询问所有部门系统，而不只是先前未应答的",
                "ask every departmental system again, not only those that did not answer",
            ),
        ),
    ] = False,
) -> ApiCall:
    """Check an open incident's evidence again once a departmental system that did not answer is back.

    Asks for the complainant's ID number again (without echo, or GRASSROOTS_SUBJECT_ID_NUMBER): it must be
    the complainant's of this incident. Accesses newly found are attached with their proofs."""
    return _permitted(
        "review",
        "重新核查事件证据",
        "check an incident's evidence again",
        lambda _: ApiCall(
            "POST",
            f"{_BASE}/incidents/{incident_id}/recheck",
            body={"id_number": _id_number(), "all_systems": all_systems},
        ),
    )


@app.command(zh="分派事件的承办人（可同时调整办结期限）。")
@api_command
def assign(
    incident_id: IncidentArg,
    to: Annotated[str, typer.Option("--to", help=bilingual("承办人（负责调查的人）", "who investigates"))],
    due: Annotated[
        str | None,
        typer.Option(
            help=bilingual(
                "新的办结期限：日期（当天结束前，北京时间）或带时区的时间",
                "new deadline: a day (by its end) or a time",
            )
        ),
    ] = None,
) -> ApiCall:
    """Assign an incident (and optionally move its deadline)."""
    body = {"assignee": to, "due_at": due}
    return ApiCall("POST", f"{_BASE}/incidents/{incident_id}/assign", body=body, render=_show_step)


@app.command(
    "hand-down",
    zh="""交办：把事件交给下级单位办理（上级仍可督办）。

    未办结的事件连同其投诉交给本事件管辖单位的下级单位。例如区纪委监委交城桥镇纪委：交办后城桥镇的监督人员即可查看、分派、办结该事件，区里仍能看到并督办。
    只能向下交办，不能交给上级或同级单位。""",
)
@api_command
def hand_down(
    incident_id: IncidentArg,
    org: Annotated[
        str,
        typer.Option(
            help=bilingual(
                "承办单位的区划代码（本事件管辖单位的下级），例如 310151101000",
                "division code of the office under the case's that is to handle it",
            ),
            callback=division_code,
        ),
    ],
) -> ApiCall:
    """Hand an open incident (and its complaint) down to an office under the one that holds it.

    The district's supervisors hand it to a township's, say: the township's supervisors then see, assign and
    close it, and the district still sees and oversees it. Never up, nor sideways."""
    return ApiCall("POST", f"{_BASE}/incidents/{incident_id}/hand-down", body={"org": org}, render=_show_step)


@app.command(zh="添加一条调查记录。")
@api_command
def note(
    incident_id: IncidentArg,
    text: Annotated[str, typer.Option("--text", help=bilingual("调查记录", "investigation note"))],
) -> ApiCall:
    """Add an investigation note."""
    return ApiCall("POST", f"{_BASE}/incidents/{incident_id}/notes", body={"note": text}, render=_show_step)


@app.command(zh="填写处理结论，办结事件。")
@api_command
def dispose(
    incident_id: IncidentArg,
    disposition: Annotated[
        str,
        typer.Option(
            help=bilingual(
                "结论：substantiated（属实）、unsubstantiated（不属实）或 referred（移送）",
                "substantiated | unsubstantiated | referred",
            )
        ),
    ],
    text: Annotated[
        str,
        typer.Option("--note", help=bilingual("处理意见及已采取的措施", "the decision and what was done")),
    ],
) -> ApiCall:
    """Close an incident with its disposition."""
    body = {"disposition": disposition, "note": text}
    return ApiCall("POST", f"{_BASE}/incidents/{incident_id}/disposition", body=body, render=_show_step)


@app.command(
    zh="""重新办理一个已办结的事件（重办）。

    撤回原处理结论，事件回到核查中，投诉答复期限和事件办结期限重新计算；原结论和重办原因留在办理步骤中。"""
)
@api_command
def reopen(
    incident_id: IncidentArg,
    reason: Annotated[
        str,
        typer.Option(
            "--reason",
            help=bilingual("重新办理的原因（不要填写姓名、身份证号、手机号）", "why it is handled again"),
        ),
    ],
) -> ApiCall:
    """Handle a closed incident again: its disposition is withdrawn, it is back under investigation, and
    the complaint's answer and the incident's closing deadlines start afresh; the earlier disposition and
    the reason stay in its steps."""
    return ApiCall(
        "POST", f"{_BASE}/incidents/{incident_id}/reopen", body={"reason": reason}, render=_show_step
    )


@app.command(zh="一条审计事件的包含证明（输出前先在本机校验）。")
@api_command
def proof(
    seq: Annotated[int, typer.Argument(help=bilingual("审计事件的序号", "the event's sequence number"))],
    tree_size: Annotated[
        int | None,
        typer.Option(
            help=bilingual(
                "树大小（默认：最新签名检查点的）", "tree size (default: the latest signed checkpoint)"
            )
        ),
    ] = None,
    public_key: _PublicKeyOption = None,
) -> ApiCall:
    """Inclusion proof of one event (checked locally before it is printed), and the signature of the
    checkpoint that records its root (checked here too, with the checkpoint key)."""
    return _checked_proof("inclusion", {"seq": seq, "tree_size": tree_size}, _check_inclusion, public_key)


def _checked_proof(
    kind: str, params: dict[str, Any], check: Callable[[Any, Path | None], None], public_key: Path | None
) -> ApiCall:
    """Ask for a proof; ``check`` verifies it here (with ``public_key``) before anything is printed."""
    return ApiCall(
        "GET", f"{_BASE}/proofs/{kind}", params=params, render=lambda data: check(data, public_key)
    )


def _check_inclusion(data: Any, public_key: Path | None) -> None:
    from audit import InvalidProofError, verify_inclusion

    try:
        verify_inclusion(
            bytes.fromhex(data["leaf_hash"]),
            data["leaf_index"],
            data["tree_size"],
            [bytes.fromhex(p) for p in data["proof"]],
            bytes.fromhex(data["root_hash"]),
        )
    except InvalidProofError as exc:
        _proof_refused("inclusion", exc)
    seq, size, root = data["seq"], data["tree_size"], data["root_hash"]
    _refuse_another_signed_root(data.get("checkpoint"), size, root, "inclusion")
    signed_zh, signed_en = _signed_with(data.get("checkpoint"))
    key_zh, key_en = _signature_here(data.get("checkpoint"), size, root, public_key)
    show(data)
    typer.echo(
        f"已在本地校验：第 {seq} 号事件包含在树大小 {size} 的日志中（根哈希 {root}）；{signed_zh}{key_zh}\n"
        f"verified here: event {seq} is in the log of tree size {size} (root {root}); {signed_en}{key_en}",
        err=True,
    )


def _refuse_another_signed_root(checkpoint: dict[str, Any] | None, size: int, root: str, kind: str) -> None:
    """Exit 1 when the signed checkpoint attached for ``size`` records another root than the proof's: the
    proof then holds for a log the checkpoint does not sign (a rewritten one), and nothing is verified."""
    if checkpoint is None or (checkpoint.get("tree_size") == size and checkpoint.get("root_hash") == root):
        return
    signed = checkpoint.get("root_hash")
    typer.echo(
        f"证明未通过本地校验：树大小 {size} 的签名检查点记载的根哈希为 {signed}，"
        f"而证明用的是 {root}。请立即运行 grassroots audit verify 并保留现场。\n"
        f"the {kind} proof does NOT verify: the signed checkpoint of tree size {size} records root "
        f"{signed}, the proof uses {root}; run grassroots audit verify now",
        err=True,
    )
    raise typer.Exit(1)


def _signed_with(checkpoint: dict[str, Any] | None) -> tuple[str, str]:
    """That a signed checkpoint records the root the proof leads to (the caller has refused one recording
    another, :func:`_refuse_another_signed_root`), or that there is none of that size, in words."""
    if checkpoint is None:
        return (
            "该树大小没有签名检查点，可用 grassroots supervise checkpoint 签发后再取证明。",
            "no signed checkpoint has that tree size; sign one (grassroots supervise checkpoint) and ask "
            "again",
        )
    from datetime import datetime

    from audit.query import beijing_clock

    stamp = str(checkpoint.get("timestamp"))
    with contextlib.suppress(ValueError):
        stamp = beijing_clock(datetime.fromisoformat(stamp.replace("Z", "+00:00"))) + "（北京时间）"
    return (
        f"与 {stamp}签发的签名检查点记载的根哈希相同。",
        f"the signed checkpoint of {checkpoint.get('timestamp')} records the same root",
    )


def _signature_here(
    checkpoint: dict[str, Any] | None, size: int, root: str, public_key: Path | None
) -> tuple[str, str]:
    """Check here the Ed25519 signature of the checkpoint that records ``root`` at ``size`` (the server's
    word that it matches is not enough: a reviewer need not trust the server). With ``public_key``, or the
    checkpoint key this machine is configured with, following the key handovers in the configured
    checkpoint directory when it has one; exit 1, nothing else said, when the signature does not verify.
    Without a key, say plainly that the signature was not checked here."""
    if checkpoint is None or checkpoint.get("tree_size") != size or checkpoint.get("root_hash") != root:
        return "", ""
    from audit import Checkpoint, CheckpointError, key_chain
    from gateway.commands._offline import load_checkpoint_key

    settings = load_settings()
    key_path = public_key or settings.effective_checkpoint_key_path
    if public_key is None and not key_path.exists():
        return (
            "该检查点的签名未在本机核验（本机没有检查点密钥）：可用 --public-key 指定检查点公钥 PEM 文件。",
            "; its signature was NOT checked here (this machine has no checkpoint key): pass the "
            "checkpoint public key PEM with --public-key",
        )
    source = "--public-key" if public_key is not None else "GRASSROOTS_CHECKPOINT_KEY_PATH"
    key = load_checkpoint_key(key_path, subject=("检查点签名", "checkpoint signature"), source=source)
    try:
        signed = Checkpoint.from_json(checkpoint)
        key_chain(settings.effective_checkpoint_dir, key).verify(signed)
    except CheckpointError as exc:
        typer.echo(
            f"检查点签名未通过本地校验：{exc.described_zh}。请立即运行 grassroots audit verify 并保留现场。\n"
            f"the checkpoint's signature does NOT verify here: {exc}; run grassroots audit verify now",
            err=True,
        )
        raise typer.Exit(1) from None
    return (
        f"该检查点的签名已在本机用密钥 {signed.key_id} 核验。",
        f"; its signature verified here (key {signed.key_id})",
    )


def _proof_refused(kind: str, exc: Exception) -> NoReturn:
    """A proof from the gateway that does not check out here: say so plainly, print nothing as verified."""
    typer.echo(f"证明未通过本地校验 / the {kind} proof does NOT verify: {exc}", err=True)
    raise typer.Exit(1)


@app.command(zh="两个树大小之间的一致性证明（输出前先在本机校验）。")
@api_command
def consistency(
    old: Annotated[
        int | None,
        typer.Option(
            help=bilingual(
                "较早的树大小（默认：上一个检查点的）", "older tree size (default: previous checkpoint)"
            )
        ),
    ] = None,
    new: Annotated[
        int | None,
        typer.Option(
            help=bilingual(
                "较新的树大小（默认：最新检查点的）", "newer tree size (default: latest checkpoint)"
            )
        ),
    ] = None,
    public_key: _PublicKeyOption = None,
) -> ApiCall:
    """Consistency proof between two tree sizes (checked locally before it is printed), and the signatures
    of the checkpoints that record both roots (checked here too, with the checkpoint key)."""
    return _checked_proof("consistency", {"old": old, "new": new}, _check_consistency, public_key)


def _check_consistency(data: Any, public_key: Path | None) -> None:
    """The proof, then each end against the signed checkpoint the answer attaches for it: a proof between
    two roots the server chose says nothing about the signed history unless both are the signed roots
    (a server that rewrote its log can prove its new log consistent with itself)."""
    from audit import InvalidProofError, verify_consistency

    try:
        verify_consistency(
            data["old_size"],
            data["new_size"],
            [bytes.fromhex(p) for p in data["proof"]],
            bytes.fromhex(data["old_root"]),
            bytes.fromhex(data["new_root"]),
        )
    except InvalidProofError as exc:
        _proof_refused("consistency", exc)
    old, new = data["old_size"], data["new_size"]
    ends = [
        (old, data["old_root"], data.get("old_checkpoint")),
        (new, data["new_root"], data.get("new_checkpoint")),
    ]
    for size, root, checkpoint in ends:
        _refuse_another_signed_root(checkpoint, size, root, "consistency")
    said = []
    for size, root, checkpoint in ends:  # exit 1 from _signature_here when a signature does not verify
        signed_zh, signed_en = _signed_with(checkpoint)
        key_zh, key_en = _signature_here(checkpoint, size, root, public_key)
        said.append((f"  树大小 {size}：{signed_zh}{key_zh}", f"  tree size {size}: {signed_en}{key_en}"))
    show(data)
    typer.echo(
        f"已在本地校验：树大小 {new} 的日志包含树大小 {old} 的日志原样不变，"
        f"其间只追加了 {new - old} 条事件。\n"
        + "\n".join(zh for zh, _ in said)
        + f"\nverified here: the log of tree size {new} holds the log of tree size {old} unchanged, with "
        f"{new - old} event{'s' if new - old != 1 else ''} appended\n" + "\n".join(en for _, en in said),
        err=True,
    )


@app.command(zh="立即签发一个签名检查点（经由网关；记入审计日志）。")
@api_command
def checkpoint() -> ApiCall:
    """Write a signed checkpoint now (through the gateway; audited)."""
    return ApiCall("POST", f"{_BASE}/checkpoints")


@app.command(zh="列出签名检查点。")
@api_command
def checkpoints() -> ApiCall:
    """List signed checkpoints."""
    return ApiCall("GET", f"{_BASE}/checkpoints")


@app.command(zh="保存期限设置，以及已超过期限的月份（是否已归档）。")
@api_command
def retention() -> ApiCall:
    """Retention policy and the months past it (archived or not)."""
    return ApiCall("GET", f"{_BASE}/retention")


@app.command(zh="把一个月的审计事件归档为签名文件。归档可离线校验；事件在清理前仍留在日志中。")
@api_command
def archive(
    month: Annotated[
        str,
        typer.Option(
            callback=month,
            help=bilingual("月份，例如 2026-11、2026-1 或 2026年11月", "month, e.g. 2026-11 or 2026-1"),
        ),
    ],
) -> ApiCall:
    """Archive a month as signed, verifiable files (the events stay in the log until pruned)."""
    return ApiCall("POST", f"{_BASE}/archives", body={"month": month})


#: The options of a prune, through the API (``audit prune``) or with the owner's login (``audit
#: prune-as-owner``).
DryRunOption = Annotated[
    bool,
    typer.Option(
        "--dry-run/--execute",
        help=bilingual(
            "--dry-run 只说明会清理什么（默认）；--execute 实际清理",
            "only say what would be pruned (default)",
        ),
    ),
]
ThroughMonthOption = Annotated[
    str | None,
    typer.Option(
        callback=month,
        help=bilingual(
            "最多清理到这个月（例如 2026-11、2026-1 或 2026年11月）",
            "prune no later than this month (e.g. 2026-11 or 2026-1)",
        ),
    ),
]
ThroughSeqOption = Annotated[
    int | None,
    typer.Option(
        help=bilingual(
            "清理到这条事件为止（须为某个已归档月份的最后一条）",
            "prune through this event (the last of an archived month)",
        )
    ),
]


@app.command(
    zh="""在签名的前缀锚点之后，删除已超过保存期限且已归档的月份。

    默认只试运行：列出每个已归档月份的判断结果，以及清理在何处停止、为什么。`--execute` 实际清理；
    之后请运行 `grassroots audit verify`。"""
)
@api_command
def prune(
    dry_run: DryRunOption = True,
    through_month: ThroughMonthOption = None,
    through_seq: ThroughSeqOption = None,
) -> ApiCall:
    """Delete archived months past the retention period behind a signed prefix anchor.

    Dry run by default: lists each archived month with its verdict and why pruning stops. `--execute`
    prunes; then run `grassroots audit verify`.
    """
    body: dict[str, Any] = {"dry_run": dry_run}
    if through_month is not None:
        body["through_month"] = through_month
    if through_seq is not None:
        body["through_seq"] = through_seq
    return ApiCall("POST", f"{_BASE}/audit/prune", body=body)


@app.command(zh="列出月度归档。")
@api_command
def archives() -> ApiCall:
    """List monthly archives."""
    return ApiCall("GET", f"{_BASE}/archives")


@app.command(
    "archive-verify",
    zh="""离线校验归档文件。核对签名、文件摘要、每一个链接和叶子，以及区间的根哈希。

    有归档未通过校验时退出码为 1，有文件无法读取时为 2（未做任何校验），否则为 0。""",
)
def archive_verify(
    manifests: Annotated[
        list[Path],
        typer.Argument(
            help=bilingual(
                "归档的 .manifest.json 文件（一个或多个）", "the archives' .manifest.json files (one or more)"
            )
        ),
    ],
    public_key: Annotated[
        Path | None,
        typer.Option(
            help=bilingual(
                "Ed25519 公钥 PEM 文件（默认：取自检查点密钥）",
                "Ed25519 public key PEM (default: from the checkpoint key)",
            )
        ),
    ] = None,
    against_db: Annotated[
        bool,
        typer.Option(
            "--against-db", help=bilingual("同时与数据库中的日志比对", "also compare with the live log")
        ),
    ] = False,
    checkpoints: Annotated[
        Path | None,
        typer.Option(
            help=bilingual(
                "检查点目录，其中的密钥交接文件说明轮换前后各由哪把密钥签发（默认：GRASSROOTS_CHECKPOINT_DIR）",
                "checkpoint directory, whose key handovers say which key signed before and after a rotation",
            )
        ),
    ] = None,
) -> None:
    """Verify archives offline: signature, file digest, every chain link and leaf, the range root.

    A manifest signed before a key rotation verifies by the key then in office, found through the handovers
    in the checkpoint directory from the given (or configured) key.

    Exit 1 if any archive does not verify, 2 if a file cannot be read (nothing verified), 0 otherwise."""
    from audit import AuditUnavailable, CheckpointError, accepted_restores, key_chain, verify_archive
    from gateway.commands._offline import (
        database_lost,
        load_checkpoint_key,
        missing_checkpoint_key,
        require_migrated,
    )

    settings = load_settings()
    subject = ("归档", "archive")
    key_path = settings.effective_checkpoint_key_path
    # Loaded, never made: a new key cannot verify a manifest signed before, and would hide the loss.
    if public_key is not None:
        key = load_checkpoint_key(public_key, subject=subject, source="--public-key")
    elif not key_path.exists():
        missing_checkpoint_key(
            key_path,
            subject=subject,
            signed=("归档清单由检查点密钥签名", "archive manifests are signed with the checkpoint key"),
            hint=("，或用 --public-key 指定其公钥 PEM", ", or pass its public key PEM with --public-key"),
        )
    else:
        key = load_checkpoint_key(key_path, subject=subject)
    directory = checkpoints or settings.effective_checkpoint_dir
    try:
        keys = key_chain(directory, key)
        restores = accepted_restores(directory, key) if against_db else ()
    except CheckpointError as exc:
        typer.echo(
            f"归档未校验：密钥交接无法验证：{exc.described_zh}。请保留现场并报告。\n"
            f"archives not verified: the key handovers do not verify: {exc}",
            err=True,
        )
        raise typer.Exit(1) from None
    engine = None
    if against_db:
        from gateway.db import make_engine

        require_migrated(settings)
        engine = make_engine(settings.effective_database_url)
    worst = 0
    failed: list[str] = []
    for manifest in manifests:
        label = f"{manifest.name}: " if len(manifests) > 1 else ""
        try:
            verdict = verify_archive(manifest, keys, engine, restores=restores)
        except AuditUnavailable:
            database_lost(settings)
        if not verdict.readable:
            # Nothing was verified: a wrong path or a missing file, not evidence of tampering (exit 2, not 1).
            typer.echo(
                f"{label}{verdict.problem_zh or '无法读取归档文件'}，未做任何验证。"
                "请检查路径：归档在 GRASSROOTS_AUDIT_ARCHIVE_DIR（默认 var/archives），"
                "`grassroots supervise archives` 列出已有归档。\n"
                f"{label}Cannot read the archive: {verdict.problem}. Nothing was verified; check the path: "
                "archives are in GRASSROOTS_AUDIT_ARCHIVE_DIR (default var/archives), "
                "`grassroots supervise archives` lists them.",
                err=True,
            )
            worst = max(worst, 2) if worst != 1 else 1
            failed.append(str(manifest))
        elif verdict.given_up_by is not None:  # an accepted restore's lost events: reported, not tampering
            typer.echo(
                f"{label}归档未与数据库比对：{verdict.problem_zh}。\n"
                f"{label}archive not compared with the live log: {verdict.problem}",
                err=True,
            )
            worst = 1
            failed.append(str(manifest))
        elif not verdict.ok:
            typer.echo(
                f"{label}归档验证未通过：{verdict.problem_zh or '原因见下方英文说明'}"
                f"（已核对 {verdict.checked} 个事件）。"
                "文件或日志可能已被改动，请保留现场并报告。\n"
                f"{label}archive does NOT verify: {verdict.problem} (after {verdict.checked} events)",
                err=True,
            )
            worst = 1
            failed.append(str(manifest))
        else:
            typer.echo(
                f"{label}归档完好：已核对 {verdict.checked} 个事件"
                f"{'，且与数据库中的日志一致' if against_db else ''}。\n"
                f"{label}archive intact: {verdict.checked} events verified"
                f"{' and match the live log' if against_db else ''}"
            )
    if failed and len(manifests) > 1:
        typer.echo(
            f"{len(manifests)} 个归档中有 {len(failed)} 个未通过校验：{'、'.join(failed)}\n"
            f"{len(failed)} of {len(manifests)} archives do NOT verify: {', '.join(failed)}",
            err=True,
        )
    if worst:
        raise typer.Exit(worst)


@app.command(
    "prefix-verify",
    zh="离线校验已清理日志的前缀。核对签名锚点所依赖的每个归档：从第一条事件一路链接到锚点，"
    "并重建锚点的边界哈希和每个较早检查点的根哈希。",
)
def prefix_verify(
    archive_dir: Annotated[
        Path | None,
        typer.Option(
            help=bilingual(
                "归档目录（默认：GRASSROOTS_AUDIT_ARCHIVE_DIR）",
                "archive directory (default: GRASSROOTS_AUDIT_ARCHIVE_DIR)",
            )
        ),
    ] = None,
) -> None:
    """Check a pruned log's prefix offline: every archive its signed anchor relies on, chained from genesis
    to the anchor, rebuilding the anchor's frontier and every older checkpoint's root."""
    from audit import AuditUnavailable, verify_archived_prefix
    from gateway.commands._offline import (
        database_lost,
        load_checkpoint_key,
        missing_checkpoint_key,
        require_migrated,
    )
    from gateway.db import make_engine
    from gateway.supervision_tasks import SupervisionSettings

    settings = load_settings()
    require_migrated(settings)
    subject = ("已清理部分", "pruned prefix")
    key_path = settings.effective_checkpoint_key_path
    checkpoints = settings.effective_checkpoint_dir
    # Loaded, never made: a new key cannot verify the anchor or checkpoints signed before.
    if not key_path.exists():
        missing_checkpoint_key(
            key_path,
            subject=subject,
            signed=(
                f"清理锚点、检查点（{checkpoints}）和归档清单都由检查点密钥签名",
                f"the prune anchor, the checkpoints in {checkpoints} and the archive manifests are signed "
                "with the checkpoint key",
            ),
        )
    key = load_checkpoint_key(key_path, subject=subject)
    directory = archive_dir or SupervisionSettings().audit_archive_dir or settings.data_dir / "archives"
    engine = make_engine(settings.effective_database_url)
    try:
        result = verify_archived_prefix(engine, directory, key, checkpoints)
    except AuditUnavailable:
        database_lost(settings)
    finally:
        engine.dispose()
    if not result.ok:
        typer.echo(
            f"已清理部分验证未通过：{result.problem_zh or '原因见下方英文说明'}。请保留现场并报告。\n"
            f"pruned prefix does NOT verify: {result.problem}",
            err=True,
        )
        raise typer.Exit(1)
    if result.pruned_through == 0:
        typer.echo(
            "日志从未清理过：所有事件仍在数据库中，没有需要用归档重建的部分"
            "（`grassroots audit verify` 验证整个日志）。\n"
            "Nothing was pruned: every event is still in the database, so there is nothing to rebuild from "
            "the archives (`grassroots audit verify` checks the whole log)."
        )
        return
    typer.echo(
        f"已清理部分完好：第 1..{result.pruned_through} 号事件已由归档重建；"
        f"{result.checkpoints_checked} 个较早的检查点已复现。\n"
        f"pruned prefix intact: events 1..{result.pruned_through} rebuilt from the archives; "
        f"{result.checkpoints_checked} older checkpoint(s) reproduced"
    )
