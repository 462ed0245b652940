"""The ``grids`` claim: the identity provider names a grid worker's micro-grids, the gateway's Principal
carries them, and a malformed claim refuses the token rather than widening the worker to the village."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from gateway.auth.devidp import DevIdentityProvider
from gateway.auth.oidc import AuthError, OIDCVerifier

G01, G02 = "310151101201-G01", "310151101201-G02"
BASE_CLAIMS: dict[str, Any] = {"sub": "u-1", "org_code": "310151101201", "roles": ["grid_worker"]}


def _principal(**claims: Any) -> Any:
    verifier = OIDCVerifier("https://idp.example", "grassroots-gateway")
    return verifier._principal({**BASE_CLAIMS, **claims})


@pytest.mark.parametrize(
    ("claim", "grids"),
    [
        (None, ()),
        ([], ()),
        ([G02, G01], (G01, G02)),
        ([G01, G01], (G01,)),
    ],
)
def test_grids_claim_becomes_the_principals_grids(claim: object, grids: tuple[str, ...]) -> None:
    extra = {} if claim is None else {"grids": claim}
    assert _principal(**extra).grids == grids


@pytest.mark.parametrize(
    "claim",
    [G01, [G01, 7], ["310151101201-G1"], ["310151101201"], ["310151101000-G01"], {"g": G01}],
)
def test_a_malformed_grids_claim_refuses_the_token(claim: object) -> None:
    with pytest.raises(AuthError) as refused:
        _principal(grids=claim)
    assert refused.value.code == "insufficient_claims"


def test_the_development_idp_puts_assigned_grids_in_the_token(tmp_path: Path) -> None:
    users = [
        {
            "username": "grid_a1",
            "user_id": "u-g",
            "role": "grid_worker",
            "org": "310151101201",
            "grids": [G01],
        },
        {"username": "cadre_a", "user_id": "u-c", "role": "village_cadre", "org": "310151101201"},
    ]
    idp = DevIdentityProvider("http://127.0.0.1:1/dev-idp", tmp_path / "k.pem", users)
    keys = KeySet.import_key_set(idp.jwks())
    grid_claims = jwt.decode(idp.mint("grid_a1", "grassroots-gateway"), keys).claims
    cadre_claims = jwt.decode(idp.mint("cadre_a", "grassroots-gateway"), keys).claims
    assert grid_claims["grids"] == [G01]
    assert "grids" not in cadre_claims
    assert "grids" in idp.discovery()["claims_supported"]
