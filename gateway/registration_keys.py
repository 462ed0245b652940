"""The keys of a system registration, for the admission routes and the CLI alike: what a registration body
may set, and what the registration's own view adds (read back and sent again whole, those are ignored: the
status and filing fields are never taken from the caller)."""

from __future__ import annotations

from typing import Final

from admission.registry import EDITABLE_FIELDS

REGISTRATION_KEYS: Final = ("system_id", "department", *EDITABLE_FIELDS)
REGISTRATION_VIEW_KEYS: Final = frozenset(
    {
        "status",
        "status_zh",
        "department_name_zh",
        "filing_number",
        "approved_until",
        "created_by",
        "review_round",
        "renewal_open",
        "concerns",
        "field_mapping",
        "credentials",
    }
)
