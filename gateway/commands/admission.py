"""``grassroots admission ...``: registration, joint review, supervision, credentials and the burden view
of departmental systems (准入联审), as a thin client of the API (the same permission checks and audit trail
as any other caller). ``token`` and ``me`` act as the system itself, with its client credentials."""

from __future__ import annotations

import functools
import json
import os
import re
import unicodedata
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from gateway.commands._client import (
    DEFAULT_URL,
    ApiCall,
    ReasonOption,
    UrlOption,
    api_command,
    call,
    json_option,
    read_file_text,
    read_secret,
    refused,
    show,
    unreachable,
)
from gateway.commands._help import HelpTyper, bilingual

app = HelpTyper(
    no_args_is_help=True,
    help=bilingual(
        "部门系统准入联审：登记、联审、监管、凭证与减负视图。",
        "System registration and joint review, supervision, credentials and the burden view.",
    ),
)

_BASE = "/api/v1/admission"
SystemArg = Annotated[
    str, typer.Argument(help=bilingual("系统标识，例如 health-visits", "system id, e.g. health-visits"))
]
_YES = {"yes", "y", "true", "1", "是"}
_NO = {"no", "n", "false", "0", "否"}


def _checklist(items: list[str] | None) -> dict[str, Any] | None:
    if not items:
        return None
    from admission.model import BurdenChecklist

    answers: dict[str, Any] = {}
    for typed in items:
        # A Chinese input method in full-width mode types ＝ and ｙｅｓ: the same answer (NFKC). The notes
        # keep what was typed (NFKC would turn their ，into ,).
        key, sep, value = unicodedata.normalize("NFKC", typed).partition("=")
        if not sep:
            typer.echo(
                f"--checklist 的格式是 问题=yes|no（收到 {typed!r}）。\n"
                f"--checklist takes QUESTION=yes|no (got {typed!r})",
                err=True,
            )
            raise typer.Exit(2)
        if key.strip() == "notes":
            answers["notes"] = re.split("[=＝]", typed, maxsplit=1)[1]
        elif key.strip() not in BurdenChecklist.QUESTIONS:
            _unknown_question(key.strip())
        elif value.strip().lower() in _YES | _NO:
            answers[key.strip()] = value.strip().lower() in _YES
        else:
            typer.echo(
                f"--checklist {key}：请回答 yes 或 no（是或否）。\n--checklist {key}: answer yes or no",
                err=True,
            )
            raise typer.Exit(2)
    return answers


def _unknown_question(key: str) -> None:
    """A misspelt question (forces_checkin) named on the terminal of whoever typed it, with the nearest
    question and every one the checklist asks: the gateway's refusal names only the questions, never what
    was typed (it would reach its log and the audit of the refused act). Nothing is sent; exit 2."""
    from difflib import get_close_matches

    from admission.model import BurdenChecklist

    questions = BurdenChecklist.QUESTIONS
    near = get_close_matches(key, questions, n=1)
    guess_zh = f"您是不是要写 {near[0]}？" if near else ""
    guess_en = f" Did you mean {near[0]}?" if near else ""
    typer.echo(
        f"--checklist {key}：减负清单上没有这个问题。{guess_zh}可回答的问题是 "
        f"{'、'.join(f'{q}（{BurdenChecklist.QUESTIONS_ZH[q]}）' for q in questions)}，以及 notes（说明）。"
        f"本次未提交。\n--checklist {key}: no such question on the burden checklist.{guess_en} It asks "
        f"{', '.join(questions)} (and takes notes); nothing was sent.",
        err=True,
    )
    raise typer.Exit(2)


def _refuse_unknown_keys(file: Path, loaded: dict[str, Any]) -> None:
    """A misspelt key of ``--file`` (``colects``) named on the typist's terminal with the nearest key, before
    any call: the gateway refuses it too, naming only the keys it takes (never what was typed), and left
    the department comparing eleven names by eye. Exit 2, nothing sent."""
    from difflib import get_close_matches

    from gateway.registration_keys import REGISTRATION_KEYS, REGISTRATION_VIEW_KEYS

    unknown = [k for k in loaded if k not in REGISTRATION_KEYS and k not in REGISTRATION_VIEW_KEYS]
    if not unknown:
        return
    named_zh, named_en = [], []
    for key in unknown:
        near = get_close_matches(key, REGISTRATION_KEYS, n=1)
        named_zh.append(f"{key}（是不是 {near[0]}？）" if near else key)
        named_en.append(f"{key} (did you mean {near[0]}?)" if near else key)
    typer.echo(
        f"{file} 中有登记没有的项：{'、'.join(named_zh)}。可填写的项是 {'、'.join(REGISTRATION_KEYS)}。"
        f"本次未提交。\n{file} holds keys a registration does not have: {', '.join(named_en)}. It takes "
        f"{', '.join(REGISTRATION_KEYS)}; nothing was sent.",
        err=True,
    )
    raise typer.Exit(2)


def _declare_lookups(body: dict[str, Any], datasets: list[str]) -> None:
    """Declare the record-id lookup of each of ``datasets`` the way the registration payload does: the
    endpoint ``<collection>/lookup`` among the dataset's ``endpoints``, the collection being its first
    endpoint (``/<dataset>`` when none is given, as the gateway assumes; README "The departmental-system
    contract"). A dataset the registration does not provide is refused: there is nothing to look up in."""
    from gateway.upstream import LOOKUP_SUFFIX

    provided = {p.get("dataset"): p for p in body.get("provides") or [] if isinstance(p, dict)}
    for dataset in datasets:
        entry = provided.get(dataset)
        if entry is None:
            typer.echo(
                f"--lookup {dataset}：登记中没有提供此数据集，"
                f"请同时用 --provides {dataset}=BASE_URL 声明。\n"
                f"--lookup {dataset}: the registration does not provide that dataset; declare it with "
                f"--provides {dataset}=BASE_URL as well",
                err=True,
            )
            raise typer.Exit(2)
        endpoints = [str(e) for e in entry.get("endpoints") or []] or [f"/{dataset}"]
        lookup = endpoints[0].rstrip("/") + LOOKUP_SUFFIX
        entry["endpoints"] = endpoints if lookup in endpoints else [*endpoints, lookup]


def _registration_body(
    file: Path | None,
    system_id: str | None,
    name: str | None,
    purpose: str | None,
    reaches: list[str] | None,
    reaches_villages: bool | None,
    collects: list[str] | None,
    provides: list[str] | None,
    security_level: int | None,
    contact: str | None,
    checklist: list[str] | None,
    lookups: list[str] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if file is not None:
        loaded = json_option(read_file_text(file), "--file")
        if not isinstance(loaded, dict):
            typer.echo(f"{file} 必须是一个 JSON 对象。\n{file} must hold a JSON object", err=True)
            raise typer.Exit(2)
        _refuse_unknown_keys(file, loaded)
        body.update(loaded)
    provided = None
    if provides:
        provided = []
        for item in provides:
            dataset, sep, base_url = item.partition("=")
            if not sep:
                typer.echo(
                    "--provides 的格式是 数据集=BASE_URL。\n--provides takes DATASET=BASE_URL", err=True
                )
                raise typer.Exit(2)
            provided.append({"dataset": dataset, "base_url": base_url})
    options = {
        "system_id": system_id,
        "name": name,
        "purpose": purpose,
        "reaches": reaches or None,
        "reaches_villages": reaches_villages,
        "collects_fields": collects or None,
        "provides": provided,
        "security_level": security_level,
        "contact": contact,
    }
    body.update({k: v for k, v in options.items() if v is not None})
    if lookups:
        _declare_lookups(body, lookups)
    answers = _checklist(checklist)
    if answers is not None:
        body["checklist"] = {**body.get("checklist", {}), **answers}
    return body


FileOption = Annotated[
    Path | None,
    typer.Option("--file", help=bilingual("登记内容（JSON 对象文件）", "registration as a JSON object")),
]
NameOption = Annotated[str | None, typer.Option(help=bilingual("系统名称", "system name"))]
PurposeOption = Annotated[str | None, typer.Option(help=bilingual("系统用途", "what the system is for"))]
ReachesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--reaches", help=bilingual("覆盖范围：区划代码（可重复）", "division code it reaches (repeat)")
    ),
]
VillagesOption = Annotated[
    bool | None,
    typer.Option(
        "--reaches-villages/--no-villages",
        help=bilingual("是否延伸到村（社区）", "extends down to villages"),
    ),
]
CollectsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--collects",
        help=bilingual(
            "向村（社区）采集的数据目录字段或标签（可重复）",
            "catalog field or tag it collects from villages (repeat)",
        ),
    ),
]
ProvidesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--provides",
        help=bilingual(
            "作为上游提供的数据：数据集=BASE_URL（可重复）",
            "DATASET=BASE_URL it serves as an upstream (repeat)",
        ),
    ),
]
LookupOption = Annotated[
    list[str] | None,
    typer.Option(
        "--lookup",
        help=bilingual(
            "由该系统应答投诉所需的记录编号查询（POST <collection>/lookup）的数据集；"
            "该数据集须已声明提供（--provides 或 --file 中）（可重复）",
            "DATASET whose system answers the record-id lookup (POST <collection>/lookup) a complaint asks; "
            "the dataset must be provided (--provides, or in --file) (repeat)",
        ),
    ),
]
LevelOption = Annotated[
    int | None,
    typer.Option(
        "--security-level",
        help=bilingual("等保级别 1-5", "classified protection (MLPS) level 1-5"),
    ),
]
ContactOption = Annotated[
    str | None, typer.Option(help=bilingual("联系人（科室或个人）", "contact (office or person)"))
]
ChecklistOption = Annotated[
    list[str] | None,
    typer.Option(
        "--checklist",
        help=bilingual(
            "减负清单的回答 问题=yes|no（duplicates_platform_function、can_embed_in_platform、"
            "forces_checkins、forces_points_or_rankings、offers_complaint_entry）（可重复）",
            "burden checklist answer QUESTION=yes|no (duplicates_platform_function, can_embed_in_platform, "
            "forces_checkins, forces_points_or_rankings, offers_complaint_entry) (repeat)",
        ),
    ),
]


@app.command("offices", zh="准入联审的审核单位，以及重新审核的周期。")
@api_command
def offices() -> ApiCall:
    """The reviewing offices of the joint review and the re-certification period."""
    return ApiCall("GET", f"{_BASE}/offices")


@app.command("register", zh="为本部门的系统登记准入（保存为草稿）。")
@api_command
def register(
    system_id: Annotated[
        str | None,
        typer.Option(
            "--system-id",
            help=bilingual(
                "系统标识（小写字母、数字和连字符），例如 health-visits",
                "system id: lowercase letters, digits and hyphens, e.g. health-visits",
            ),
        ),
    ] = None,
    name: NameOption = None,
    purpose: PurposeOption = None,
    reaches: ReachesOption = None,
    reaches_villages: VillagesOption = None,
    collects: CollectsOption = None,
    provides: ProvidesOption = None,
    lookup: LookupOption = None,
    security_level: LevelOption = None,
    contact: ContactOption = None,
    checklist: ChecklistOption = None,
    file: FileOption = None,
) -> ApiCall:
    """File a registration (as a draft) for your own department's system."""
    body = _registration_body(
        file,
        system_id,
        name,
        purpose,
        reaches,
        reaches_villages,
        collects,
        provides,
        security_level,
        contact,
        checklist,
        lookup,
    )
    return ApiCall("POST", f"{_BASE}/systems", body=body)


@app.command("update", zh="修改草稿，或修改被退回修改的登记（只改所给的字段）。")
@api_command
def update(
    system_id: SystemArg,
    name: NameOption = None,
    purpose: PurposeOption = None,
    reaches: ReachesOption = None,
    reaches_villages: VillagesOption = None,
    collects: CollectsOption = None,
    provides: ProvidesOption = None,
    lookup: LookupOption = None,
    security_level: LevelOption = None,
    contact: ContactOption = None,
    checklist: ChecklistOption = None,
    file: FileOption = None,
) -> ApiCall:
    """Change a draft, or a registration sent back for changes (only the given fields change)."""
    body = _registration_body(
        file,
        None,
        name,
        purpose,
        reaches,
        reaches_villages,
        collects,
        provides,
        security_level,
        contact,
        checklist,
        lookup,
    )
    return ApiCall("PATCH", f"{_BASE}/systems/{system_id}", body=body)


@app.command("list", zh="列出您可查看的准入登记（系统管理员：本部门的）。")
@api_command
def list_systems(
    status: Annotated[
        list[str] | None,
        typer.Option(
            help=bilingual(
                "状态：draft（草稿）、submitted（联审中）、changes_requested（待修改）、approved（已准入）、"
                "rejected（未通过）、suspended（已暂停）、revoked（已撤销）或 lapsed（已过期）（可重复）",
                "draft, submitted, changes_requested, approved, rejected, suspended, revoked or lapsed "
                "(repeat)",
            )
        ),
    ] = None,
    awaiting_me: Annotated[
        bool,
        typer.Option(
            "--awaiting-me",
            help=bilingual(
                "审核人的待办：联审中、等待本单位表决的",
                "a reviewer's work list: in review and waiting on your office's vote",
            ),
        ),
    ] = False,
) -> ApiCall:
    """Registrations you may see (a system admin: your department's)."""
    params: dict[str, Any] = {"status": status, "awaiting_my_review": str(awaiting_me).lower()}
    return ApiCall("GET", f"{_BASE}/systems", params=params)


@app.command("show", zh="查看一项准入登记。含字段对应关系和凭证状态，不显示任何密钥。")
@api_command
def show_system(
    system_id: SystemArg,
) -> ApiCall:
    """One registration, with its field mapping and credential state (never a secret)."""
    return ApiCall("GET", f"{_BASE}/systems/{system_id}")


def _lifecycle_command(action: str, zh: str, doc: str) -> None:
    def command(system_id: SystemArg) -> ApiCall:
        return ApiCall("POST", f"{_BASE}/systems/{system_id}/{action}")

    command.__doc__ = doc  # before api_command copies it into the command's help
    app.command(action, zh=zh)(api_command(command))


_lifecycle_command(
    "submit",
    "提交准入联审（修改后或被驳回后再次提交也用此命令）。",
    "Send to joint review (also resubmission after changes or a rejection).",
)
_lifecycle_command("withdraw", "把已提交的登记撤回为草稿。", "Take a submitted registration back to draft.")
_lifecycle_command(
    "revise",
    "把被驳回的登记重新打开为草稿，以便修改。",
    "Reopen a rejected registration as a draft to edit it.",
)
_lifecycle_command(
    "recertify",
    "发起一轮重新审核。已到期的系统在重新通过前一直被阻断。",
    "Open a re-certification round (a lapsed system stays blocked until approved).",
)


#: A vote typed in Chinese, as the review's own words put it (同意 / 驳回 / 要求修改).
_VOTES_ZH = {
    "同意": "approve",
    "通过": "approve",
    "驳回": "reject",
    "不同意": "reject",
    "不予通过": "reject",
    "要求修改": "request_changes",
    "退回修改": "request_changes",
}
_VOTE_CODES = frozenset(_VOTES_ZH.values())


@app.command("review", zh="代表本单位表决：同意、驳回或要求修改。")
@api_command
def review(
    system_id: SystemArg,
    vote: Annotated[
        str,
        typer.Option(
            help=bilingual(
                "表决：approve（同意）、reject（驳回）或 request_changes（要求修改），也可直接写中文",
                "approve, reject or request_changes",
            )
        ),
    ],
    comment: Annotated[
        str,
        typer.Option(
            help=bilingual(
                "审核意见（驳回或要求修改时必填）", "comment (required to reject or ask for changes)"
            )
        ),
    ] = "",
    office: Annotated[
        str | None,
        typer.Option(
            help=bilingual(
                "所代表的审核单位代码，见 grassroots admission offices（默认：取自登录凭证）",
                "the code of your office, see grassroots admission offices (default: from your token)",
            )
        ),
    ] = None,
) -> ApiCall:
    """Sign off for your office: approve, reject, or ask for changes."""
    typed = vote.strip()
    code = _VOTES_ZH.get(typed) or (typed.lower() if typed.lower() in _VOTE_CODES else None)
    if code is None:
        # Refused before sending: the API's answer named only the English codes, not the Chinese words.
        typer.echo(
            "--vote 只能是 approve（同意）、reject（驳回）或 request_changes（要求修改），也可直接写中文："
            f"{'、'.join(_VOTES_ZH)}。本次未表决。\n"
            "--vote must be approve, reject or request_changes (or the Chinese words above); "
            "nothing was voted.",
            err=True,
        )
        raise typer.Exit(2)
    body = {"vote": code, "comment": comment, "office": office}
    return ApiCall("POST", f"{_BASE}/systems/{system_id}/reviews", body=body)


@app.command("progress", zh="联审进度：哪些单位已表决、哪些待表决、哪些回避。")
@api_command
def progress(
    system_id: SystemArg,
) -> ApiCall:
    """Which offices signed, which are pending, which are recused."""
    return ApiCall("GET", f"{_BASE}/systems/{system_id}/progress")


@app.command(
    "overlaps", zh="查看与已有采集重复的字段。这些字段已由准入系统采集或已回流：请复用或预填，不要重复采集。"
)
@api_command
def overlaps(
    system_id: SystemArg,
) -> ApiCall:
    """Fields already collected by admitted systems or backflowed: reuse or prefill instead."""
    return ApiCall("GET", f"{_BASE}/systems/{system_id}/overlaps")


def _supervision_command(action: str, zh: str, doc: str) -> None:
    def command(system_id: SystemArg, reason: ReasonOption) -> ApiCall:
        return ApiCall("POST", f"{_BASE}/systems/{system_id}/{action}", body={"reason": reason})

    command.__doc__ = doc  # before api_command copies it into the command's help
    app.command(action, zh=zh)(api_command(command))


_supervision_command(
    "suspend",
    "暂停已准入的系统（1 秒内在每个网关进程中阻断）。",
    "Suspend an admitted system (blocked in every gateway process within 1 s).",
)
_supervision_command("reinstate", "恢复已暂停的系统。", "Reinstate a suspended system.")
_supervision_command(
    "revoke",
    "永久撤销系统的准入（其凭证随即删除）。",
    "Revoke a system for good (its credentials are deleted).",
)


@app.command("reminders", zh="即将到期的准入，以及由谁办理。")
@api_command
def reminders() -> ApiCall:
    """Approvals about to lapse, with who must act."""
    return ApiCall("GET", f"{_BASE}/reminders")


@app.command("lapse-due", zh="到期任务：把已过期限的准入标记为已到期（每天运行）。")
@api_command
def lapse_due() -> ApiCall:
    """The lapse job: mark every approval past its end as lapsed (run it daily)."""
    return ApiCall("POST", f"{_BASE}/lapse-due")


@app.command(
    "client-secret",
    zh="签发（或轮换）系统的 OAuth 客户端密钥。"
    "密钥只显示这一次（直接输出，或用 --output 写入仅本人可读的文件）。",
)
@api_command
def client_secret(
    system_id: SystemArg,
    rotate: Annotated[
        bool, typer.Option("--rotate", help=bilingual("替换现有密钥", "replace the current secret"))
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help=bilingual(
                "把结果（客户端编号和密钥）写入此文件，仅本人可读（权限 0600），不在屏幕上输出",
                "write the answer (client id and secret) to this file, readable by you only (mode 0600), "
                "instead of printing it",
            ),
        ),
    ] = None,
) -> ApiCall:
    """Issue (or rotate) the system's OAuth client secret; it is shown this once only (printed, or written
    to a private file with --output)."""
    if output is not None:
        _check_writable(output)  # before the secret is issued: one that cannot be saved is lost
    return ApiCall(
        "POST",
        f"{_BASE}/systems/{system_id}/credentials/client-secret",
        params={"rotate": "true" if rotate else None},
        render=show if output is None else functools.partial(_write_private, output),
    )


def _check_writable(path: Path) -> None:
    """Create ``path`` (mode 0600) or check an existing one opens for writing; exit 2 saying why not."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
    except OSError as exc:
        typer.echo(
            f"无法写入 {path}（{exc.strerror}），未签发密钥；请换一个文件。\n"
            f"Cannot write {path} ({exc.strerror}); no secret was issued: choose another file.",
            err=True,
        )
        raise typer.Exit(2) from None


def _write_private(path: Path, answer: Any) -> None:
    """Write ``answer`` as JSON to ``path`` with mode 0600, whatever the umask and even if it existed."""
    data = (json.dumps(answer, ensure_ascii=False, indent=2) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        typer.echo(
            f"无法写入 {path}（{exc.strerror}）；密钥未保存，请换一个文件并加 --rotate 重新签发。\n"
            f"Cannot write {path} ({exc.strerror}); the secret was not saved: choose another file and "
            "issue a new one with --rotate.",
            err=True,
        )
        raise typer.Exit(1) from None
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)  # an existing file keeps its mode on open: narrow it first
        out.write(data)
    typer.echo(
        f"客户端密钥已写入 {path}（仅本人可读，0600），不会再次显示。\n"
        f"Client secret written to {path} (readable by you only, 0600); it is not shown again."
    )


@app.command("public-key", zh="登记签名客户端断言所用的公钥（private_key_jwt）。依据 RFC 7523。")
@api_command
def public_key(
    system_id: SystemArg,
    key_file: Annotated[
        Path,
        typer.Option("--file", help=bilingual("PEM 公钥或公开的 JWK 文件", "PEM public key or public JWK")),
    ],
) -> ApiCall:
    """Register the public key for signed client assertions (RFC 7523 private_key_jwt)."""
    from admission.credentials import holds_private_key

    text = read_file_text(key_file)
    if holds_private_key(text):
        # Refused here, before any request: sent, the private key would have left the host.
        typer.echo(
            f"{key_file} 是私钥，本次未发送。只登记公钥：请用 openssl pkey -in {key_file} -pubout "
            "-out 公钥文件 导出公钥，再用 --file 指定公钥文件；私钥只留在本系统的主机上。\n"
            f"{key_file} is a private key; nothing was sent. Register the public key only: make it with "
            f"openssl pkey -in {key_file} -pubout -out PUBLIC.pem and pass that file to --file; the private "
            "key stays on the system's host.",
            err=True,
        )
        raise typer.Exit(2)
    body = {"public_key": text}
    return ApiCall("PUT", f"{_BASE}/systems/{system_id}/credentials/public-key", body=body)


@app.command("outbound-credential", zh="保存网关调用该系统所用的出站凭证。加密保存，只能写入，无法读回。")
@api_command
def outbound_credential(
    system_id: SystemArg,
    credential: Annotated[
        str | None,
        typer.Option(
            envvar="GRASSROOTS_OUTBOUND_CREDENTIAL",
            help=bilingual(
                "网关调用该系统时出示的凭证：设置 GRASSROOTS_OUTBOUND_CREDENTIAL，或按提示输入（不回显）",
                "the credential the gateway presents to this system: set GRASSROOTS_OUTBOUND_CREDENTIAL or "
                "answer the prompt (never echoed)",
            ),
        ),
    ] = None,
) -> ApiCall:
    """Store (encrypted, write-only) the credential the gateway uses to call this system."""
    secret = read_secret(
        credential,
        env="GRASSROOTS_OUTBOUND_CREDENTIAL",
        what_zh="出站凭证（部门签发给网关的 API 密钥）",
        what_en="outbound credential (the API key the department issued to the gateway)",
    )
    return ApiCall(
        "PUT",
        f"{_BASE}/systems/{system_id}/outbound-credential",
        body={"credential": secret},
        render=_credential_stored,
    )


def _credential_stored(_answer: Any) -> None:
    # The answer carries nothing worth showing (and the credential is never echoed back).
    typer.echo(
        "出站凭证已保存（已加密，无法读回）。\noutbound credential stored (encrypted; it cannot be read back)"
    )


@app.command("burden", zh="覆盖某个村（社区）的准入系统，以及它们向其采集的字段。")
@api_command
def burden(
    village: Annotated[
        str,
        typer.Argument(help=bilingual("12 位的村（社区）区划代码", "12-digit village or community code")),
    ],
) -> ApiCall:
    """Admitted systems reaching one village and the fields they demand of it."""
    return ApiCall("GET", f"{_BASE}/burden/villages/{village}")


@app.command("report", zh="区级减负报告。列出每个村（社区）的系统数，以及被重复采集的字段。")
@api_command
def report(
    village: Annotated[
        list[str] | None,
        typer.Option(help=bilingual("只看这些村（社区）（可重复）", "limit to these villages (repeat)")),
    ] = None,
    as_csv: Annotated[
        bool, typer.Option("--csv", help=bilingual("输出 CSV 而不是 JSON", "CSV instead of JSON"))
    ] = False,
) -> ApiCall:
    """District burden report: systems per village and fields demanded more than once."""
    params = {"village": village, "format": "csv" if as_csv else "json"}
    if as_csv:
        return ApiCall("GET", f"{_BASE}/burden/report", params=params, raw=True, render=_echo_csv)
    return ApiCall("GET", f"{_BASE}/burden/report", params=params)


def _echo_csv(data: bytes) -> None:
    typer.echo(data.decode("utf-8"), nl=False)


# -- acting as the system ----------------------------------------------------------------------------


@app.command("token", zh="以系统身份获取访问令牌。采用 OAuth 2 客户端凭证模式（client_secret_basic）。")
def system_token(
    client_id: Annotated[
        str,
        typer.Option(
            "--client-id",
            envvar="GRASSROOTS_CLIENT_ID",
            help=bilingual("系统的客户端编号", "the system's client id"),
        ),
    ],
    secret: Annotated[
        str | None,
        typer.Option(
            "--client-secret",
            envvar="GRASSROOTS_CLIENT_SECRET",
            help=bilingual(
                "系统的客户端密钥：设置 GRASSROOTS_CLIENT_SECRET，或按提示输入（不回显）",
                "the system's client secret: set GRASSROOTS_CLIENT_SECRET or answer the prompt (not echoed)",
            ),
        ),
    ] = None,
    url: UrlOption = DEFAULT_URL,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help=bilingual("只输出访问令牌", "print only the access token"))
    ] = False,
) -> None:
    """As the system: obtain an access token (OAuth 2 client credentials, client_secret_basic)."""
    secret = read_secret(
        secret, env="GRASSROOTS_CLIENT_SECRET", what_zh="系统的客户端密钥", what_en="system's client secret"
    )
    try:
        resp = httpx.post(
            url.rstrip("/") + "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, secret),
            timeout=30.0,
        )
    except httpx.HTTPError as exc:
        raise unreachable(url, exc) from None
    body = resp.json()
    if resp.status_code != 200:
        raise refused(body)
    typer.echo(body["access_token"] if quiet else json.dumps(body, indent=2))


@app.command("me", zh="以系统身份查看本系统的准入状态和备案号。加 --burden 时查看其减负视图。")
def system_me(
    system_token: Annotated[
        str | None,
        typer.Option(
            "--system-token",
            envvar="GRASSROOTS_SYSTEM_TOKEN",
            help=bilingual(
                "系统的访问令牌：设置 GRASSROOTS_SYSTEM_TOKEN，或按提示输入（不回显）；"
                "写在命令行上会出现在进程列表和命令历史中",
                "the system's access token: set GRASSROOTS_SYSTEM_TOKEN or answer the prompt (not echoed); "
                "on the command line it shows in the process list and shell history",
            ),
        ),
    ] = None,
    burden_view: Annotated[
        bool, typer.Option("--burden", help=bilingual("它覆盖的村（社区）", "the villages it reaches"))
    ] = False,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """As the system: its own admission status and filing number (or, with --burden, its burden view)."""
    system_token = read_secret(
        system_token,
        env="GRASSROOTS_SYSTEM_TOKEN",
        what_zh="系统访问令牌（admission token 获取）",
        what_en="system's access token (from `admission token`)",
    )
    path = "/api/v1/systems/me/burden" if burden_view else "/api/v1/systems/me"
    show(call("GET", path, url=url, token=system_token, as_user=None))
