"""Probe (not a figure of the harness): the CPU each data-path stage spends on the e2e benchmark's page.

Starts the benchmark's stack (SQLite), builds a gateway runtime in this process on the stack's settings,
reads one real page of 20 residents from the registry the way the data path does (token, policy decision,
upstream call, scope re-check, projection), and then runs each CPU-bound stage on that page over and over:
masking (structured fields and the free-text scan), response DLP, the re-identification guard, the audit
refs of the residents and records, building the audit event and encoding it (RFC 8785, leaf hash).

Each figure is CPU time (``time.process_time``), per call, the best of seven repetitions: on a shared
machine CPU time drifts far less than wall time, and the best of several is the least disturbed. To compare
two versions of the code, run this probe on each, alternating, in the same few minutes.
Run: ``python -m bench.probe_stage_cpu [calls per repetition]``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bench.bench_e2e import PAGE
from bench.stack import Stack, running_stack

REPETITIONS = 7


def cpu_us(fn: Callable[[], object], calls: int) -> float:
    """CPU microseconds per call of ``fn``: the best of REPETITIONS runs of ``calls`` calls."""
    best = float("inf")
    for _ in range(REPETITIONS):
        started = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, time.process_time() - started)
    return best / calls * 1e6


async def _measure(stack: Stack, calls: int) -> dict[str, float]:
    from audit.log import prepare
    from gateway import pipeline
    from gateway.settings import Settings
    from gateway.wiring import build_runtime, close_runtime

    for name, value in stack.env.items():
        if name.startswith("GRASSROOTS_"):
            os.environ[name] = value
    runtime = build_runtime(Settings())
    now = datetime.now(UTC)
    principal = await pipeline.authenticate(runtime, "Bearer " + stack.token("cadre_a"))
    request = pipeline.DataRequest("residents", "DIBAO_REVIEW", 1, PAGE, request_id="probe")
    decision = pipeline.authorize(runtime, principal, request, now)
    obligations = decision.obligations
    assert obligations is not None, decision.code
    dataset = runtime.dataset(request.dataset)
    assert dataset is not None
    raw, _ = await pipeline.fetch_upstream(runtime, runtime.route(request.dataset, now), request, obligations)
    kept, _ = pipeline.recheck_scope(raw, obligations.row_scope, dataset.org_field, dataset.grid_field)
    projected = pipeline.project_fields(kept, obligations.fields)
    fields = tuple(dict.fromkeys(("id", *obligations.fields)))
    role = pipeline.acting_role(principal.roles, runtime.policy().scenarios.get(request.scenario))
    plan = runtime.masking_plan(
        dataset=request.dataset,
        fields=fields,
        role=role,
        scenario=request.scenario,
        profile=obligations.masking_profile,
        now=now,
    )

    def dlp() -> object:
        # On fresh copies of the masked page, as the data path scans mask's own dicts in place.
        return runtime.scan_free_text(request.dataset, [dict(r) for r in masked], plan, sealed)

    def copies() -> object:
        return [dict(r) for r in masked]

    facts = pipeline.AuditFacts(principal=principal, decision=decision, fields=fields)

    def refs() -> None:
        residents = dataset.subject_values(kept)
        facts.subject_refs = [runtime.pseudonymizer.ref(v) for v in residents]
        facts.subject_links = runtime.audit_refs.links(list(dict.fromkeys(residents)))
        facts.record_refs = [runtime.pseudonymizer.ref(str(r["id"])) for r in kept]
        facts.record_count = len(kept)

    refs()
    # One resident ref per record, as the data path seals them into enc:v3: envelopes (when the plan has any).
    refs_of_records = pipeline.record_subject_refs(dataset, kept, facts.subject_refs)
    sealed = pipeline.sealed_subjects(plan, refs_of_records)
    masked = pipeline.mask(projected, plan, sealed)
    runtime.scan_free_text(request.dataset, masked, plan, sealed)
    facts.details.update(grant_id=obligations.grant_id, masking_profile=obligations.masking_profile)

    def build() -> Any:
        return pipeline._build_event(runtime, request, facts, None, "0" * 32, now)

    event = build()
    stages: dict[str, Callable[[], object]] = {
        "mask (structured + free text)": lambda: pipeline.mask(
            projected, plan, pipeline.sealed_subjects(plan, refs_of_records)
        ),
        "response DLP (less copying the page)": dlp,
        "  the page copies alone": copies,
        "re-identification guard": lambda: runtime.reidentification_guard(request.dataset, masked),
        "audit refs (residents, records)": refs,
        "build audit event": build,
        "encode audit event (RFC 8785, leaf hash)": lambda: prepare(event),
    }
    try:
        return {name: cpu_us(fn, calls) for name, fn in stages.items()}
    finally:
        await close_runtime(runtime)


def main(calls: int = 300) -> None:
    with running_stack("sqlite", workers=1) as stack:
        figures = asyncio.run(_measure(stack, calls))
    figures["response DLP (less copying the page)"] -= figures["  the page copies alone"]
    print(f"CPU per call, page of {PAGE} residents, best of {REPETITIONS} x {calls} calls")
    for name, us in figures.items():
        print(f"  {name:48} {us:8.1f} us")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
