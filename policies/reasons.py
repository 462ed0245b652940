"""Reason codes (stable, machine-readable) and the words a village cadre reads for each.

Codes are part of the gateway contract; the wording may improve freely. Messages never carry personal
data: only dataset and scenario names, hours and counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from policies.model import Reason

__all__ = [
    "APPLY_AGAIN",
    "CODES",
    "DENIAL_ORDER",
    "outside_fields",
    "reason",
    "request_already_waiting",
    "request_waiting",
]

# The order in which PolicyEngine.decide checks; the first failure is the decision's reason.
DENIAL_ORDER: Final[tuple[str, ...]] = (
    "no_permission",
    "unknown_scenario",
    "scenario_not_for_role",
    "scenario_not_for_dataset",
    "outside_hours",
    "grant_revoked",
    "grant_expired",
    "no_active_grant",
    "field_not_granted",
    "quota_exceeded",
    "grid_scope_unsupported",
)

_TEXT: Final[dict[str, tuple[str, str]]] = {
    "allowed": (
        "可以查看：{dataset}，用途「{scenario}」。",
        "Allowed: {dataset} for \u201c{scenario}\u201d.",
    ),
    "no_permission": (
        "您的岗位没有查看「{dataset}」的权限。如工作确需，请联系上级管理员。",
        "Your role is not allowed to read \u201c{dataset}\u201d. "
        "Ask your administrator if your work needs it.",
    ),
    # The unknown code is not repeated: it is whatever the caller typed.
    "unknown_scenario": (
        "没有找到这个使用场景。请从系统列出的场景中选择（场景目录：GET /api/v1/scenarios，"
        "或命令 grassroots grants scenarios）。",
        "There is no such usage scenario. Choose one of the listed scenarios "
        "(the catalog: GET /api/v1/scenarios, or grassroots grants scenarios).",
    ),
    "scenario_not_for_role": (
        "「{scenario}」这项工作不由您的岗位办理，不能以此用途查看数据。",
        "\u201c{scenario}\u201d is not work your role does, so you cannot read data for it.",
    ),
    "scenario_not_for_dataset": (
        "「{scenario}」这项工作用不到「{dataset}」，本次未返回任何数据。请改用需要这项数据的使用场景，"
        "或查看本场景所用的数据集（各场景可查看哪些数据集：grassroots grants scenarios，"
        "或 GET /api/v1/scenarios）。",
        "\u201c{scenario}\u201d does not need \u201c{dataset}\u201d; nothing was returned. Use a scenario "
        "that needs this data, or read the datasets this one uses (which datasets each scenario reads: "
        "grassroots grants scenarios, or GET /api/v1/scenarios).",
    ),
    "outside_hours": (
        "「{scenario}」只能在每天 {start}:00 至 {end}:00（北京时间）查看数据。",
        "\u201c{scenario}\u201d data can be read only between {start}:00 and {end}:00 (Beijing time).",
    ),
    "grant_revoked": (
        "本单位「{scenario}」的数据授权已被撤销。如仍需要，请重新申请。",
        "Your organisation's grant for \u201c{scenario}\u201d has been revoked. Apply again if still needed.",
    ),
    "grant_expired": (
        "本单位「{scenario}」的数据授权已到期。请联系数据管理部门续期。",
        "Your organisation's grant for \u201c{scenario}\u201d has expired. "
        "Ask the data department to renew it.",
    ),
    "no_active_grant": (
        "本单位还没有「{scenario}」查看「{dataset}」的有效授权。"
        "请先提出申请；已提出的，请等待数据所属部门审批。",
        "Your organisation has no current grant to read \u201c{dataset}\u201d for \u201c{scenario}\u201d. "
        "Apply for one first; if you have, wait for the department owning the data to approve it.",
    ),
    "field_not_granted": (
        "您要查看的部分信息不在「{scenario}」的授权范围内：{fields}。",
        "Some of the information you asked for is outside the grant for \u201c{scenario}\u201d: {fields}.",
    ),
    "quota_exceeded": (
        "今天「{scenario}」的查看数量已达上限（每天 {quota} 条）。请明天再查。",
        "Today's limit for \u201c{scenario}\u201d ({quota} records a day) is used up. Try again tomorrow.",
    ),
    "quota_too_few_left": (
        "今天「{scenario}」只剩 {left} 条可查看（每天 {quota} 条），不够所要的条数。请减少条数，或明天再查。",
        "Only {left} records are left of today's limit for \u201c{scenario}\u201d ({quota} a day), "
        "fewer than asked for. Ask for fewer, or continue tomorrow.",
    ),
    "too_many_records": (
        "「{scenario}」每次最多查看 {limit} 条，请分页查看。",
        "\u201c{scenario}\u201d allows at most {limit} records per request; read page by page.",
    ),
    # Names nobody (a grid worker is told, and so is an administrator asking about one).
    "grid_scope_unsupported": (
        "该数据集未按微网格划分，网格员只能查看所分配网格内的数据，请改用按网格划分的数据集。",
        "This dataset is not kept by micro-grid; a grid worker reads only the grids assigned to them: "
        "use a dataset kept by grid.",
    ),
    "internal_error": (
        "系统暂时无法判断您的权限，为安全起见本次不予查看。请稍后再试或联系管理员。",
        "The system could not check your permission, so for safety this read is refused. "
        "Try again later or contact your administrator.",
    ),
}

CODES: Final[frozenset[str]] = frozenset(_TEXT) - {"too_many_records", "quota_too_few_left"}

# The same reasons told to someone other than the subject (an administrator explaining a request she
# describes): "您" would address the reader as if she were the one refused. Wordings that name nobody
# ("outside_hours", "unknown_scenario", ...) read the same either way and are not repeated here.
_THIRD_PERSON: Final[dict[str, tuple[str, str]]] = {
    "no_permission": (
        "该用户的岗位没有查看「{dataset}」的权限。如工作确需，可联系其上级管理员。",
        "This user's role is not allowed to read \u201c{dataset}\u201d. "
        "Their administrator can be asked if their work needs it.",
    ),
    "scenario_not_for_role": (
        "「{scenario}」这项工作不由该用户的岗位办理，不能以此用途查看数据。",
        "\u201c{scenario}\u201d is not work this user's role does, so they cannot read data for it.",
    ),
    "grant_revoked": (
        "该用户所在单位「{scenario}」的数据授权已被撤销。如仍需要，须重新申请。",
        "This user's organisation's grant for \u201c{scenario}\u201d has been revoked. "
        "It must apply again if still needed.",
    ),
    "grant_expired": (
        "该用户所在单位「{scenario}」的数据授权已到期。须由数据管理部门续期。",
        "This user's organisation's grant for \u201c{scenario}\u201d has expired. "
        "The data department can renew it.",
    ),
    "no_active_grant": (
        "该用户所在单位还没有「{scenario}」查看「{dataset}」的有效授权。须先提出申请。",
        "This user's organisation has no current grant to read \u201c{dataset}\u201d for "
        "\u201c{scenario}\u201d. It must apply for one first.",
    ),
    "field_not_granted": (
        "该用户要查看的部分信息不在「{scenario}」的授权范围内：{fields}。",
        "Some of the information this user asked for is outside the grant for \u201c{scenario}\u201d: "
        "{fields}.",
    ),
    "quota_exceeded": (
        "该用户今天「{scenario}」的查看数量已达上限（每天 {quota} 条），明天才能再查。",
        "This user's limit for \u201c{scenario}\u201d today ({quota} records a day) is used up; "
        "they can read again tomorrow.",
    ),
    "quota_too_few_left": (
        "该用户今天「{scenario}」只剩 {left} 条可查看（每天 {quota} 条），不够所要的条数。",
        "This user has only {left} records left of today's limit for \u201c{scenario}\u201d ({quota} a day), "
        "fewer than asked for.",
    ),
    "internal_error": (
        "系统暂时无法判断该用户的权限，为安全起见不予查看。请稍后再试或联系管理员。",
        "The system could not check this user's permission, so for safety the read is refused. "
        "Try again later or contact the administrator.",
    ),
}


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def reason(code: str, *, wording: str | None = None, third_person: bool = False, **context: object) -> Reason:
    """Build the Reason for ``code``; ``wording`` picks a more specific text under the same code
    (e.g. ``too_many_records`` under ``quota_exceeded``); missing placeholders render empty.
    ``third_person``: told about the subject ("该用户", "this user") to someone else, not to the subject.

    A placeholder's English value may be given apart as ``<name>_en`` (``scenario="低保年度复核",
    scenario_en="Subsistence-allowance annual review"``): the English message uses it, the Chinese one the
    plain value, so neither reads a name in the other language."""
    key = wording or code
    zh, en = (_THIRD_PERSON.get(key) if third_person else None) or _TEXT[key]
    values = _Blank({k: str(v) for k, v in context.items() if not k.endswith("_en")})
    english = _Blank(
        values | {k.removesuffix("_en"): str(v) for k, v in context.items() if k.endswith("_en")}
    )
    return Reason(code=code, message_zh=zh.format_map(values), message_en=en.format_map(english))


# A refusal that sends the subject to apply (again) told while her organisation's request already waits
# for a steward sent her to apply a second or third time: :func:`request_waiting` says that request
# waits instead, after what the earlier grant became, if anything (keyed by the refusal's code).
_EARLIER: Final[dict[str, tuple[str, str]]] = {
    "no_active_grant": ("", ""),
    "grant_revoked": ("原授权已被撤销；", "The earlier grant was revoked. "),
    "grant_expired": ("原授权已过期；", "The earlier grant has expired. "),
}

#: The refusals :func:`request_waiting` rewords.
APPLY_AGAIN: Final[frozenset[str]] = frozenset(_EARLIER)

_REQUEST_WAITING: Final = (
    "{earlier}本单位的授权申请 {grant_id} 已提出，正在{step}（由数据所属部门的数据管理员办理），"
    "批准后即可查看；无需重复申请。",
    "{earlier}Your organisation's request {grant_id} has been filed and is waiting for {step} of the "
    "department owning the data; you can read once it is approved. Do not apply again.",
)
_REQUEST_WAITING_THIRD_PERSON: Final = (
    "{earlier}该用户所在单位的授权申请 {grant_id} 已提出，正在{step}（由数据所属部门的数据管理员办理），"
    "批准后即可查看；无需重复申请。",
    "{earlier}This user's organisation's request {grant_id} has been filed and is waiting for {step} of "
    "the department owning the data; they can read once it is approved. It need not apply again.",
)


_FIRST_STEP: Final = ("等待审批", "the data steward")
_SECOND_STEP: Final = ("等待第二位数据管理员审批", "a second data steward")


def request_waiting(code: str, grant_id: str, *, second_approval: bool, third_person: bool = False) -> Reason:
    """The refusal ``code`` (one of :data:`APPLY_AGAIN`) told when request ``grant_id`` of the subject's
    organisation waits for a steward (``second_approval``: for the second of two). The code stays: only
    the words change, from "apply (again)" to "your request waits; do not apply again"."""
    earlier = _EARLIER[code]
    zh, en = _REQUEST_WAITING_THIRD_PERSON if third_person else _REQUEST_WAITING
    step = _SECOND_STEP if second_approval else _FIRST_STEP
    return Reason(
        code=code,
        message_zh=zh.format(earlier=earlier[0], grant_id=grant_id, step=step[0]),
        message_en=en.format(earlier=earlier[1], grant_id=grant_id, step=step[1]),
    )


# A request filed again while an identical one waits (POST /grants, 409 request_already_waiting): the
# same facts as the read's refusal above (which request, that the owning department's steward decides it,
# do not apply again), and what the cadre can do instead. There is no withdrawal of a request: a steward
# rejecting it is the only way to close one before its decision.
_ALREADY_WAITING: Final = (
    "相同的授权申请 {grant_id} 已提出（同一场景、单位、数据集和字段），正在{step}"
    "（由数据所属部门的数据管理员办理），批准后即可查看；无需重复申请，本次未提出申请。"
    "请等待审批结果；如需修改该申请，请联系数据管理员驳回 {grant_id} 后重新申请"
    "（申请不能自行撤回）。申请其他字段或其他单位的，可以直接提出。",
    "An identical request {grant_id} (the same scenario, organisation, datasets and fields) has been filed "
    "and is waiting for {step} of the department owning the data; it can be read once approved. Do not "
    "apply again: nothing was requested. Wait for the decision; to change that request, ask the data "
    "steward to reject {grant_id}, then request anew (a request cannot be withdrawn). A request for other "
    "fields or another organisation can be filed as it is.",
)


def request_already_waiting(grant_id: str, *, second_approval: bool) -> tuple[str, str]:
    """Why a request identical to ``grant_id``, which waits for a steward (``second_approval``: for the
    second of two), is not filed (Chinese, English)."""
    step = _SECOND_STEP if second_approval else _FIRST_STEP
    zh, en = _ALREADY_WAITING
    return zh.format(grant_id=grant_id, step=step[0]), en.format(grant_id=grant_id, step=step[1])


def outside_fields(outside: Sequence[str], catalogued: Sequence[str]) -> tuple[str, str]:
    """The requested fields outside the grant, as a message names them (Chinese, English): catalogued
    field names listed, the others only counted. A name the catalog does not know is whatever the caller
    typed (``张三13812345678``) and is never repeated."""
    known = [f for f in outside if f in catalogued]
    unknown = len(outside) - len(known)
    if not unknown:
        return "、".join(known), ", ".join(known)
    zh = f"{unknown} 个未编目的字段"
    en = f"{unknown} uncatalogued field{'s' if unknown > 1 else ''}"
    if not known:
        return zh, en
    return f"{'、'.join(known)}，另有 {zh}", f"{', '.join(known)} and {en}"
