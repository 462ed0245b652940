"""The development identity provider as a gateway's settings name it, with the demo identities it signs
for. Light on purpose: the command line mints ``--as`` tokens through it without building a gateway's
runtime (`gateway.wiring`, which re-exports both)."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from gateway.auth.devidp import DevIdentityProvider
from gateway.settings import RunMode

if TYPE_CHECKING:
    from gateway.settings import Settings


def dev_users() -> list[dict[str, Any]]:
    """The demo identities (only ever used by the development IdP)."""
    from demoworld.world import build_identities

    return [asdict(identity) for identity in build_identities()]


def dev_identity_provider(settings: Settings) -> DevIdentityProvider:
    return DevIdentityProvider(
        settings.effective_oidc_issuer,
        settings.keys_dir / "dev-idp-signing.pem",
        dev_users(),
        production=settings.mode is RunMode.production,
        # Never longer than the gateway accepts (GRASSROOTS_OIDC_MAX_TOKEN_LIFETIME_S).
        token_ttl_s=min(3600, settings.oidc_max_token_lifetime_s),
    )
