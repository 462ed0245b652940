"""Who may do what, where, for which scenario: the policy library of the Grassroots Data Gateway.

Plain data in and out; imports no other product package (see docs/architecture.md).
"""

from policies.divisions import DivisionLevel, ancestors, covers, level_of, normalize, parent_of
from policies.engine import PolicyEngine
from policies.errors import (
    GrantError,
    GrantNotFoundError,
    GrantWindowError,
    InvalidTransitionError,
    OutsideJurisdictionError,
    PolicyError,
    PolicyFileError,
    PolicyRefused,
    ReviewNotFoundError,
    SeparationOfDutiesError,
    UnknownScenarioError,
)
from policies.grants import (
    BreakGlassReview,
    GrantIndex,
    GrantRepository,
    GrantService,
    GrantStatus,
    RenewalReminder,
    ScenarioGrant,
)
from policies.model import ROLES, AccessRequest, Check, Decision, Obligations, Reason, Subject
from policies.permissions import PermissionModel, load_permissions
from policies.quotas import InMemoryQuotaCounter, QuotaCounter, SqlQuotaCounter, quota_day
from policies.replay import ReplayChange, ReplayReport, as_if_active, replay
from policies.scenarios import DatasetInfo, Scenario, ScenarioCatalog, load_scenarios
from policies.tables import metadata

__all__ = [
    "ROLES",
    "AccessRequest",
    "BreakGlassReview",
    "Check",
    "DatasetInfo",
    "Decision",
    "DivisionLevel",
    "GrantError",
    "GrantIndex",
    "GrantNotFoundError",
    "GrantRepository",
    "GrantService",
    "GrantStatus",
    "GrantWindowError",
    "InMemoryQuotaCounter",
    "InvalidTransitionError",
    "Obligations",
    "OutsideJurisdictionError",
    "PermissionModel",
    "PolicyEngine",
    "PolicyError",
    "PolicyFileError",
    "PolicyRefused",
    "QuotaCounter",
    "Reason",
    "RenewalReminder",
    "ReplayChange",
    "ReplayReport",
    "ReviewNotFoundError",
    "Scenario",
    "ScenarioCatalog",
    "ScenarioGrant",
    "SeparationOfDutiesError",
    "SqlQuotaCounter",
    "Subject",
    "UnknownScenarioError",
    "ancestors",
    "as_if_active",
    "covers",
    "level_of",
    "load_permissions",
    "load_scenarios",
    "metadata",
    "normalize",
    "parent_of",
    "quota_day",
    "replay",
]
