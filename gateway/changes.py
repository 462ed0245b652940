"""Administrative changes (grants, admission, policy reloads) become audit events.

Libraries return plain-dict change events (``kind``, ``actor``, ``before``, ``after`` ...) and never import
audit; the gateway turns each into one ``AuditEvent`` here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from audit import AuditEvent, Outcome


def change_event(
    change: Mapping[str, Any],
    *,
    actor_org: str | None = None,
    actor_roles: Sequence[str] = (),
    request_id: str | None = None,
    trace_id: str | None = None,
) -> AuditEvent:
    details = {key: value for key, value in change.items() if key not in ("kind", "actor")}
    after = change.get("after")
    scenario = after.get("scenario") if isinstance(after, Mapping) else None
    return AuditEvent(
        kind=str(change["kind"]),
        outcome=Outcome.OK,
        actor=str(change.get("actor") or "system"),
        actor_org=actor_org,
        actor_roles=tuple(actor_roles),
        scenario=scenario if isinstance(scenario, str) else None,
        dataset=None,
        fields=(),
        record_count=0,
        subject_refs=(),
        record_refs=(),
        reason=None,
        trace_id=trace_id,
        request_id=request_id,
        details=details,
        occurred_at=datetime.now(UTC),
    )


def offline_change_event(kind: str, actor: str, details: Mapping[str, Any]) -> AuditEvent:
    """The audit event of an act done on the server's command line: ``actor`` as the operating system says
    (``cli:<OS user>@<host>``, see ``gateway.cli.offline_actor``), role ``operator``, ``via: cli``."""
    return change_event({"kind": kind, "actor": actor, "via": "cli", **details}, actor_roles=("operator",))
