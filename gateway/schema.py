"""The schema is the union of each library's tables (they never share a metadata object)."""

from __future__ import annotations

from sqlalchemy import MetaData


def all_metadata() -> list[MetaData]:
    import admission.tables
    import audit.tables
    import gateway.auth.sessions
    import masking.tables
    import policies.tables

    return [
        policies.tables.metadata,
        audit.tables.metadata,
        admission.tables.metadata,
        masking.tables.metadata,
        # The gateway's own: sign-in revocations (gateway.auth.sessions).
        gateway.auth.sessions.metadata,
    ]
