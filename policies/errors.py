"""The exception tree of the policy library.

PolicyError
├── PolicyFileError        a reviewed data file (model.conf, permissions.csv, scenarios.toml) is wrong
├── PolicyRefused          ``PolicyEngine.authorize`` refused; carries the Decision
└── GrantError             a grant transition is not allowed (message_zh / message_en for the user)
    ├── UnknownScenarioError       the scenario code names nothing in the catalog
    ├── GrantNotFoundError
    │   └── ReviewNotFoundError    a break-glass post-review, not a grant
    ├── InvalidTransitionError
    ├── GrantWindowError           a validity window longer than the scenario allows, or backdated
    └── SeparationOfDutiesError
        └── OutsideJurisdictionError   an organisation outside the actor's own jurisdiction
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

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
    "ReviewNotFoundError",
    "SeparationOfDutiesError",
    "UnknownScenarioError",
]


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
    code = "review_not_found"


class InvalidTransitionError(GrantError):
    code = "invalid_transition"


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
