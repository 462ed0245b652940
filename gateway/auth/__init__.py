"""Single sign-on: the gateway as an OIDC resource server, and the embedded development provider."""

from gateway.auth.oidc import AuthError, AuthErrorCode, ClaimMapping, OIDCVerifier, Principal, TrustedIssuers

__all__ = ["AuthError", "AuthErrorCode", "ClaimMapping", "OIDCVerifier", "Principal", "TrustedIssuers"]
