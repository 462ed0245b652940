"""``grassroots logout`` and ``grassroots sessions revoke``: signing out and cutting a user's sessions off,
as a thin client of the API (the same permission checks and audit trail as any other caller).

The CLI keeps no token of its own (``--token`` / ``GRASSROOTS_TOKEN``), so ``logout`` signs out the token
it is given: use it when a token was written down in a script's environment and must stop working now."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer

from gateway.commands._client import ApiCall, ReasonOption, api_command
from gateway.commands._help import HelpTyper, bilingual

app = HelpTyper(
    no_args_is_help=True,
    help=bilingual("登录会话：撤销某个用户的全部登录。", "Sign-in sessions: revoke a user's sessions."),
)


def _said(answer: Any) -> None:
    typer.echo(f"{answer['message']}\n{answer['message_en']}")


#: A token already signed out, or of a user whose sessions were revoked, is what ``logout`` asks for: the
#: gateway refuses it only after checking its signature and expiry (``session_revoked``), so saying "nothing
#: more to do" here never takes a forged or expired token for a signed-out one.
_ALREADY_SIGNED_OUT = (
    "该登录凭证此前已退出登录或已被管理员撤销，现在已经不能使用，无需再做任何操作。\n"
    "This sign-in token was already signed out or revoked by an administrator: it no longer works, "
    "and nothing more is needed."
)


#: An expired token is refused by every gateway process already: nothing to sign out. Said only when the
#: gateway answered ``expired_token``, which it does after the token's signature held (a forged token is
#: ``invalid_token``, exit 1); the CLI never decides from the token's own, unverified ``exp``.
_ALREADY_EXPIRED = (
    "该登录凭证已经过期，网关已不再接受，无需退出登录。\n"
    "This sign-in token has already expired: the gateway no longer accepts it, and no sign-out is needed."
)


@api_command
def logout() -> ApiCall:
    """Sign out: the token given (--token or GRASSROOTS_TOKEN) is refused from now on by every gateway
    process, until it would have expired anyway. A token already signed out, revoked or expired is said to be
    so (exit 0)."""
    return ApiCall(
        "POST",
        "/api/v1/me/logout",
        render=_said,
        settled_by={"session_revoked": _ALREADY_SIGNED_OUT, "expired_token": _ALREADY_EXPIRED},
    )


@app.command(
    "revoke",
    zh="""撤销某个用户的全部登录（调离岗位、手机丢失）。

    此前签发给该用户的所有令牌，在一个策略刷新周期内被所有网关进程拒绝。仅限平台管理员。""",
)
@api_command
def revoke(
    user_id: Annotated[
        str,
        typer.Argument(
            help=bilingual(
                "用户标识：用户在身份提供方的标识（sub）；经 GRASSROOTS_OIDC_ISSUERS 所列身份提供方登录的用户"
                "写作 issuer#sub（即 GET /api/v1/me 所示的 user_id）",
                "the user id: the user's identifier (sub) at the identity provider; for a user of a provider "
                "in GRASSROOTS_OIDC_ISSUERS, issuer#sub (the user_id GET /api/v1/me shows)",
            )
        ),
    ],
    reason: ReasonOption,
) -> ApiCall:
    """Cut a user off (transferred away, a phone lost): every token issued to them before now is refused by
    every gateway process within one policy refresh interval. Platform administrators only."""
    return ApiCall(
        "POST",
        f"/api/v1/users/{quote(user_id, safe='')}/revoke-sessions",
        body={"reason": reason},
        render=_said,
    )
