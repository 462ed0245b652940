"""Single sign-on: the gateway as an OIDC resource server (`gateway.auth.oidc`), and the embedded
development provider (`gateway.auth.devidp`, its demo identities in `gateway.auth.devusers`).

The package imports nothing itself: a command-line client that only mints a development token
(``grassroots ... --as cadre_a``) reads `gateway.auth.devidp` without the resource server's web stack."""
