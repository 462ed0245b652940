"""Build and tear down the Runtime from Settings (the composition root)."""

from __future__ import annotations

import logging

from audit import AuditLog, GroupCommitAppender, PseudonymRing
from gateway.auth.oidc import OIDCVerifier, TrustedIssuers
from gateway.db import ensure_migrated, make_engine
from gateway.free_text import free_text_scanner
from gateway.keys import load_audit_refs, load_masking_keyring, settle_masking_ring
from gateway.runtime import Runtime
from gateway.settings import RunMode, Settings
from gateway.telemetry import setup_telemetry
from gateway.upstream import ServiceTokenSigner, UpstreamClient, load_or_create_ed25519
from masking import KeyRing, load_catalog, load_rules
from policies.permissions import load_permissions
from policies.scenarios import load_scenarios

_log = logging.getLogger("gateway.wiring")


def build_runtime(
    settings: Settings, *, keys: KeyRing | None = None, audit_refs: PseudonymRing | None = None
) -> Runtime:
    """The runtime of one gateway process. `keys` (the masking key ring) and `audit_refs` (the audit-ref key
    ring): when the caller has read them already (``serve`` checks both before starting), so the process
    reads each ring file once; else they are read here."""
    engine = make_engine(settings.effective_database_url)
    ensure_migrated(engine)
    if keys is None:  # before anything is started that a refused ring would leave running
        try:
            keys = _masking_keyring(settings)
        except BaseException:
            engine.dispose()
            raise
    telemetry = setup_telemetry(settings.otel_exporter, settings.otel_endpoint, settings.otel_sample_ratio)
    appender = GroupCommitAppender(AuditLog(engine))
    appender.start()
    catalog = load_catalog()
    scanner = free_text_scanner()

    return Runtime(
        settings=settings,
        engine=engine,
        verifier=TrustedIssuers(
            [
                OIDCVerifier(
                    trust.issuer,
                    trust.audience,
                    algorithms=tuple(settings.oidc_algorithms),
                    leeway_s=settings.oidc_leeway_s,
                    org_prefixes=trust.org_prefixes,
                    max_lifetime_s=settings.oidc_max_token_lifetime_s,
                    qualify_subjects=trust.qualifies_subjects,
                    jwks_lifetime_s=settings.oidc_jwks_lifetime_s,
                )
                for trust in settings.trusted_issuers
            ]
        ),
        upstream=UpstreamClient(
            ServiceTokenSigner(load_or_create_ed25519(settings.effective_service_key_path)),
            timeout_s=settings.upstream_timeout_s,
            connect_timeout_s=settings.upstream_connect_timeout_s,
            require_tls=settings.mode is RunMode.production,
            failures=telemetry.upstream_failures,
        ),
        appender=appender,
        pseudonymizer=audit_refs if audit_refs is not None else load_audit_refs(settings),
        telemetry=telemetry,
        catalog=catalog,
        rules=load_rules(),
        permissions=load_permissions(settings.policy_model_path, settings.permissions_path),
        scenarios=load_scenarios(settings.scenarios_path),
        keys=keys,
        scanner=scanner,
    )


def _masking_keyring(settings: Settings) -> KeyRing:
    """The masking key ring a worker reads at its start (``serve --workers N``, each restart after
    ``kill -HUP`` too), refused (``KeyFileError``) when it is not the ring the database records: a host
    whose ring was not copied again after ``keys rotate`` elsewhere would otherwise restart its workers
    on the old one. ``serve`` recorded the ring (where none was) before any worker started."""
    ring = load_masking_keyring(settings)
    settle_masking_ring(settings, ring, made=False, record_as=None)
    return ring


async def close_runtime(runtime: Runtime) -> None:
    await runtime.stop()
    runtime.appender.close()
    if runtime.quota_holds is not None:
        runtime.quota_holds.close()
    await runtime.verifier.aclose()
    runtime.telemetry.shutdown()
    runtime.engine.dispose()
