"""The exception tree of the policy library.

PolicyError
├── PolicyFileError        a reviewed data file (model.conf, permissions.csv, scenarios.toml) is wrong
├── PolicyRefused          ``PolicyEngine.authorize`` refused; carries the Decision
└── GrantError             a grant transition is not allowed (message_zh / message_en for the user)
    ├── UnknownScenarioError       the scenario code names nothing in the catalog
    ├── GrantNotFoundError
    │   └── ReviewNotFoundError    a break-glass post-review, not a grant
    ├── InvalidTransitionError
    ├── RequestAlreadyWaitingError an identical request still waits for a steward (names it)
    ├── GrantWindowError           a validity window longer than the scenario allows, or backdated
    └── SeparationOfDutiesError
        └── OutsideJurisdictionError   an organisation outside the actor's own jurisdiction
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from policies.model import Decision

__all__ = [
    "GrantError",
    "GrantNotFoundError",
    "GrantWindowError",
    "InvalidTransitionError",
    "OutsideJurisdictionError",
    "PolicyError",
    "PolicyFileError",
    "PolicyRefused",
    "RequestAlreadyWaitingError",
    "ReviewNotFoundError",
    "SeparationOfDutiesError",
    "UnknownScenarioError",
    "is_plain_name",
    "shown",
    "shown_all",
]

# A name in a policy file (a role, a resource, an action, a key, a dataset, field or scenario code) is
# letters, digits and a few separators, and holds no long run of digits. What a file has where a name
# belongs is shown in an error only when it is one: errors go into API answers and log lines, and a file
# pasted by mistake (a list of residents as permissions.csv) would otherwise put an ID number, a mobile or a
# name there (house style, habit 4). The file and the line still say where to look.
_SHOWABLE: Final = re.compile(r"(?!.*\d{5})[A-Za-z_][A-Za-z0-9_.:*/-]{0,63}")
_NOT_SHOWN_ZH: Final = "（此处不是名称，不予显示）"
_NOT_SHOWN: Final = "(not a name; not shown)"


def is_plain_name(value: object) -> bool:
    """True when ``value`` may be shown in an error (see above)."""
    return isinstance(value, str) and _SHOWABLE.fullmatch(value) is not None


def shown(value: object, *, zh: bool = False) -> str:
    """``value`` quoted for an error message when it is a plain name, else a note (in Chinese when ``zh``)
    that it is not."""
    if is_plain_name(value):
        return repr(value)
    return _NOT_SHOWN_ZH if zh else _NOT_SHOWN


def shown_all(values: Iterable[object], *, zh: bool = False) -> str:
    """A list of values as :func:`shown` shows each, in the form ``['a', 'b']``."""
    return "[" + ", ".join(shown(v, zh=zh) for v in values) + "]"


class PolicyError(Exception):
    """Base of every error this library raises on purpose."""


class PolicyFileError(PolicyError):
    """A policy data file failed validation. ``line`` is 1-based; 0 when the whole file is at fault.

    ``message_zh`` is what the official editing the file reads first (the CLI and the reload answer show
    it before the English); ``message`` is the same in English, and ``str()`` is ``path:line: message``."""

    def __init__(self, path: str | Path, line: int, message_zh: str, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message_zh = message_zh
        self.message = message
        super().__init__(f"{self.path}:{line}: {message}")


class PolicyRefused(PolicyError):
    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        code = decision.reasons[0].code if decision.reasons else "refused"
        super().__init__(f"access refused: {code}")


class GrantError(PolicyError):
    code = "grant_error"

    def __init__(self, message_zh: str, message_en: str) -> None:
        self.message_zh = message_zh
        self.message_en = message_en
        super().__init__(f"{self.code}: {message_en}")


class UnknownScenarioError(GrantError):
    code = "unknown_scenario"


class GrantNotFoundError(GrantError):
    code = "grant_not_found"


class ReviewNotFoundError(GrantNotFoundError):
    """No break-glass post-review by that id within the caller's reach: one of another township answers
    the same (no 403 confirming it exists). The words say where the reviews one may close are listed,
    never the id typed."""

    code = "review_not_found"

    def __init__(self) -> None:
        super().__init__(
            "找不到该复核事项，或它不在您的监督范围内，本次未办理。请核对复核编号（以 bgr_ 开头）："
            "您可办理的紧急访问复核事项见 grassroots grants reviews（GET /api/v1/break-glass/reviews）。",
            "No such post-review within your reach; nothing was done. Check its id (it begins with bgr_): "
            "grassroots grants reviews (GET /api/v1/break-glass/reviews) lists the reviews you may close.",
        )


class InvalidTransitionError(GrantError):
    code = "invalid_transition"


class RequestAlreadyWaitingError(GrantError):
    """A request identical in substance to one that still waits for a steward (``requested`` or
    ``awaiting_second_approval``): nothing is filed, and ``pending_grant`` names the one that waits."""

    code = "request_already_waiting"

    def __init__(self, pending_grant: str, message_zh: str, message_en: str) -> None:
        self.pending_grant = pending_grant
        super().__init__(message_zh, message_en)


class GrantWindowError(GrantError):
    """A grant's validity window breaks a rule of its scenario: it lasts longer than the scenario's
    ``max_validity_days`` (``validity_over_maximum``) or starts before it was approved
    (``valid_from_in_past``). ``code`` says which."""

    def __init__(self, code: str, message_zh: str, message_en: str) -> None:
        self.code = code
        super().__init__(message_zh, message_en)


class SeparationOfDutiesError(GrantError):
    code = "separation_of_duties"


class OutsideJurisdictionError(SeparationOfDutiesError):
    """Delegating, or breaking the glass, for an organisation the actor's own does not cover."""

    code = "outside_jurisdiction"
