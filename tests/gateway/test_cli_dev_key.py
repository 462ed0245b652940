"""``dev-token`` and ``--as`` sign with the key the gateway made when it started; run where there is none
(another directory than the demo's), they say where they looked and make no key of their own, whose tokens
the gateway would refuse as ``unknown_key`` ("please sign in again", which no sign-in cures)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.auth.devusers import dev_identity_provider
from gateway.cli import app as grassroots
from gateway.settings import Settings

runner = CliRunner()


@pytest.mark.parametrize(
    "args",
    [
        ["dev-token", "cadre_a"],
        ["supervise", "events", "--as", "supervisor", "--url", "http://127.0.0.1:9"],
    ],
)
def test_no_key_where_the_command_looks_is_a_message_and_no_new_key(tmp_path: Path, args: list[str]) -> None:
    data_dir = tmp_path / "elsewhere" / "var"
    result = runner.invoke(
        grassroots, args, env={"GRASSROOTS_DATA_DIR": str(data_dir), "GRASSROOTS_TOKEN": ""}
    )
    assert result.exit_code == 2, result.output  # not 3: the gateway was never called
    zh, en = result.stderr.splitlines()[:2]
    key = data_dir.resolve() / "keys" / "dev-idp-signing.pem"
    assert zh.startswith(f"找不到开发用身份提供方的签名密钥 {key}") and "GRASSROOTS_DATA_DIR" in zh
    assert en.startswith(f"no development identity provider key at {key}")
    assert result.stdout == ""
    assert not data_dir.exists()


def test_the_gateways_key_is_used_where_it_exists(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var", dev_idp_enabled=True)  # type: ignore[call-arg]
    dev_identity_provider(settings).jwks()  # the gateway makes its key when it starts
    result = runner.invoke(
        grassroots, ["dev-token", "cadre_a"], env={"GRASSROOTS_DATA_DIR": str(tmp_path / "var")}
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.count(".") == 2  # a JWS compact token
