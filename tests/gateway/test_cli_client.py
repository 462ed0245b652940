"""``api_command``: the one piece of plumbing every admin CLI command goes through.

Each command is run through Typer against a real HTTP server on loopback that records what it received and
answers as told, so the options, the request, the output and the exit codes are the ones a user gets.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from typer.testing import CliRunner, Result

from gateway.cli import app as grassroots
from gateway.commands._client import ApiCall, api_command, split_list


@dataclass
class Received:
    method: str
    path: str
    authorization: str | None
    body: Any


@dataclass
class Gateway:
    """A loopback HTTP server standing in for the gateway's API: it answers ``status`` with ``payload``."""

    url: str
    received: list[Received] = field(default_factory=list)
    status: int = 200
    payload: bytes = b"{}"
    content_type: str = "application/json"

    def answer(self, status: int, payload: Any, content_type: str = "application/json") -> None:
        self.status = status
        self.payload = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.content_type = content_type


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    yield from serve_gateway()


def serve_gateway() -> Iterator[Gateway]:
    """Run the stand-in on loopback for as long as the caller iterates (a fixture's body)."""
    state = Gateway(url="")

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            state.received.append(
                Received(
                    self.command,
                    self.path,
                    self.headers.get("authorization"),
                    _body(raw, self.headers.get("content-type") or ""),
                )
            )
            self.send_response(state.status)
            self.send_header("content-type", state.content_type)
            self.send_header("content-length", str(len(state.payload)))
            self.end_headers()
            self.wfile.write(state.payload)

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def do_PUT(self) -> None:
            self._answer()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def _body(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    return json.loads(raw) if content_type.startswith("application/json") else raw.decode()


def _echo_csv(data: bytes) -> None:
    typer.echo(data.decode("utf-8"), nl=False)


demo = typer.Typer()


@demo.command("fetch")
@api_command
def fetch(
    item: str,
    note: Annotated[str | None, typer.Option(help="a note to send")] = None,
    flag: Annotated[str | None, typer.Option(help="sent as a query parameter when given")] = None,
) -> ApiCall:
    """Fetch one item."""
    if item == "bad":
        typer.echo("item must not be bad", err=True)
        raise typer.Exit(2)
    return ApiCall("POST", f"/api/v1/items/{item}", params={"flag": flag}, body={"note": note})


@demo.command("export")
@api_command
def export() -> ApiCall:
    """Export as CSV."""
    return ApiCall("GET", "/api/v1/export", raw=True, render=_echo_csv)


def _compare_with_checkpoints(first: Any) -> ApiCall:
    if first.get("broken"):
        typer.echo("evidence does not verify", err=True)
        raise typer.Exit(1)

    def say(second: Any) -> None:
        typer.echo(f"{first['root']} listed: {first['root'] in second['roots']}")

    return ApiCall("GET", "/api/v1/checkpoints", render=say)


@demo.command("check")
@api_command
def check(item: str) -> ApiCall:
    """Fetch an item, then the checkpoints to compare it with."""
    return ApiCall("GET", f"/api/v1/items/{item}", then=_compare_with_checkpoints)


@demo.command("other")
def other() -> None:
    """A second command, so Typer keeps ``fetch`` as a subcommand."""


runner = CliRunner()


def _run(*args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(demo, list(args), env={"GRASSROOTS_TOKEN": "", "GRASSROOTS_URL": "", **(env or {})})


def test_success_prints_the_answer_as_indented_json_keeping_chinese(gateway: Gateway) -> None:
    gateway.answer(200, {"name": "张三", "items": [1, 2]})
    result = _run("fetch", "a1", "--note", "复核", "--url", gateway.url, "--token", "tok-1")
    assert result.exit_code == 0
    assert result.stdout == '{\n  "name": "张三",\n  "items": [\n    1,\n    2\n  ]\n}\n'
    assert result.stderr == ""
    # Options left unset are not sent as query parameters; the body is the JSON the command built.
    assert gateway.received == [Received("POST", "/api/v1/items/a1", "Bearer tok-1", {"note": "复核"})]


def test_query_parameters_and_environment_options(gateway: Gateway) -> None:
    gateway.answer(200, {"ok": True})
    result = _run("fetch", "a2", "--flag", "x", env={"GRASSROOTS_URL": gateway.url, "GRASSROOTS_TOKEN": "t2"})
    assert result.exit_code == 0, result.stderr
    assert gateway.received == [Received("POST", "/api/v1/items/a2?flag=x", "Bearer t2", {"note": None})]


def test_api_error_prints_code_chinese_then_english_and_exits_1(gateway: Gateway) -> None:
    gateway.answer(403, {"error": "forbidden", "message": "无权审批", "message_en": "not allowed to approve"})
    result = _run("fetch", "a1", "--url", gateway.url, "--token", "secret-token")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "forbidden: 无权审批\nnot allowed to approve\n"
    assert "secret-token" not in result.stderr


def test_error_without_json_body_says_the_status(gateway: Gateway) -> None:
    gateway.answer(502, b"<html>bad gateway</html>", content_type="text/html")
    result = _run("fetch", "a1", "--url", gateway.url, "--token", "t")
    assert result.exit_code == 1
    assert result.stderr == "HTTP 502\n"


def test_no_token_exits_2_before_any_request(gateway: Gateway) -> None:
    result = _run("fetch", "a1", "--url", gateway.url)
    assert result.exit_code == 2
    assert "a token is needed" in result.stderr
    assert gateway.received == []


@pytest.mark.parametrize(
    "pasted",
    [
        "tok.en-1 ",  # a trailing space
        "tok.en-1\n",  # a trailing newline (echo "$TOKEN" > file; GRASSROOTS_TOKEN=$(cat file)\n)
        "\r\n tok.en-1\r\n",
        "tok.\nen-1",  # a line break inside, copied from a wrapped terminal
        "Bearer tok.en-1",  # the header's scheme copied with it
        "bearer\ttok.en-1\u3000",  # a tab, an ideographic space from a Chinese input method
        "Bearer Bearer tok.en-1",  # Bearer twice: was joined into "Bearertok.en-1", refused as malformed
        '"tok.en-1"',  # quotes kept from an env file (GRASSROOTS_TOKEN='"..."')
        "'Bearer tok.en-1'\n",
        "“tok.en-1”",  # full-width quotes from a document
    ],
)
def test_a_token_pasted_with_spaces_newlines_or_bearer_is_sent_as_the_token(
    gateway: Gateway, pasted: str
) -> None:
    """A token with a trailing newline was refused by the HTTP library before it left, and the CLI said
    "cannot reach the gateway, check it is running" (exit 3): the cadre went looking for a fault that
    was not there. ``Bearer`` in front was sent as part of the token: "malformed, sign in again"."""
    gateway.answer(200, {"ok": True})
    for via in ("option", "environment"):
        gateway.received.clear()
        args, env = (["--token", pasted], None) if via == "option" else ([], {"GRASSROOTS_TOKEN": pasted})
        result = _run("fetch", "a1", "--url", gateway.url, *args, env=env)
        assert result.exit_code == 0, (via, result.stderr)
        assert [r.authorization for r in gateway.received] == ["Bearer tok.en-1"]


def test_a_token_with_characters_no_token_has_is_refused_in_words_before_any_request(
    gateway: Gateway,
) -> None:
    result = _run("fetch", "a1", "--url", gateway.url, "--token", "tok.en-1，")
    assert result.exit_code == 2
    assert result.stderr.startswith("登录凭证中有访问令牌不会含有的字符（例如中文或全角字符）")
    assert "tok.en-1" not in result.stderr and "cannot reach" not in result.stderr
    assert gateway.received == []


def test_unreachable_gateway_exits_3_naming_only_the_error_type() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more: the connection is refused.
    result = _run("fetch", "a1", "--url", f"http://127.0.0.1:{port}", "--token", "t")
    assert result.exit_code == 3
    url = f"http://127.0.0.1:{port}"
    assert result.stderr == (
        f"无法连接网关 {url}（ConnectError）：请确认网关已启动、地址正确"
        "（另一地址用 --url 或环境变量 GRASSROOTS_URL 指定）。\n"
        f"cannot reach the gateway at {url}: ConnectError "
        "(give another address with --url or GRASSROOTS_URL)\n"
    )


def test_the_command_may_refuse_its_arguments_before_calling(gateway: Gateway) -> None:
    result = _run("fetch", "bad", "--url", gateway.url, "--token", "t")
    assert result.exit_code == 2
    assert result.stderr == "item must not be bad\n"
    assert gateway.received == []


def test_raw_answer_goes_to_the_commands_renderer(gateway: Gateway) -> None:
    gateway.answer(200, "区划,人数\n110101,3\n".encode(), content_type="text/csv")
    result = _run("export", "--url", gateway.url, "--token", "t")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "区划,人数\n110101,3\n"


def test_a_follow_up_request_goes_over_the_same_connection_and_its_renderer_shows(gateway: Gateway) -> None:
    gateway.answer(200, {"root": "ab", "roots": ["ab", "cd"]})
    result = _run("check", "a1", "--url", gateway.url, "--token", "t9")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "ab listed: True\n"
    assert gateway.received == [
        Received("GET", "/api/v1/items/a1", "Bearer t9", None),
        Received("GET", "/api/v1/checkpoints", "Bearer t9", None),
    ]


def test_the_follow_up_may_refuse_the_first_answer_before_a_second_request(gateway: Gateway) -> None:
    gateway.answer(200, {"broken": True})
    result = _run("check", "a1", "--url", gateway.url, "--token", "t")
    assert result.exit_code == 1
    assert result.stderr == "evidence does not verify\n"
    assert [r.path for r in gateway.received] == ["/api/v1/items/a1"]


def _supervise(*args: str, url: str) -> Result:
    env = {"GRASSROOTS_TOKEN": "", "GRASSROOTS_URL": ""}
    return runner.invoke(grassroots, ["supervise", *args, "--url", url, "--token", "t"], env=env)


def test_monthly_report_writes_the_answers_bytes_to_its_file(gateway: Gateway, tmp_path: Path) -> None:
    report = "\ufeffsection,key\n区划,3\n".encode()
    gateway.answer(200, report, content_type="text/csv")
    target = tmp_path / "r.csv"
    result = _supervise(
        "monthly", "--month", "2026-11", "--format", "csv", "--out", str(target), url=gateway.url
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        f"已写入 {target.resolve()}（{len(report)} 字节）\nwritten {target.resolve()} ({len(report)} bytes)\n"
    )
    assert target.read_bytes() == report
    assert gateway.received[0].path == "/api/v1/supervision/reports/monthly?month=2026-11&format=csv"


def test_incident_verify_refuses_evidence_that_does_not_lead_to_the_root(gateway: Gateway) -> None:
    leaf, root = "aa" * 32, "bb" * 32
    gateway.answer(
        200, {"root_hash": root, "tree_size": 1, "evidence": [{"seq": 1, "leaf_hash": leaf, "proof": []}]}
    )
    result = _supervise("incident", "I-1", "--verify", url=gateway.url)
    assert result.exit_code == 1
    zh, en = result.stderr.splitlines()[:2]
    assert zh.startswith("证据未通过本地校验：inclusion proof leads to root")
    assert en.startswith("evidence does NOT verify: inclusion proof leads to root")
    # Refused before the checkpoints are even asked for.
    assert [r.path for r in gateway.received] == ["/api/v1/supervision/incidents/I-1"]


@pytest.mark.parametrize(
    ("command", "payload"),
    [
        (
            ["proof", "1"],
            {"leaf_hash": "aa" * 32, "leaf_index": 0, "tree_size": 1, "proof": [], "root_hash": "bb" * 32},
        ),
        (
            ["consistency"],
            {"old_size": 1, "new_size": 2, "proof": [], "old_root": "aa" * 32, "new_root": "bb" * 32},
        ),
    ],
)
def test_a_proof_that_does_not_check_out_is_refused_plainly(
    gateway: Gateway, command: list[str], payload: dict[str, Any]
) -> None:
    gateway.answer(200, payload)
    result = _supervise(*command, url=gateway.url)
    assert result.exit_code == 1
    assert "does NOT verify" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stdout == ""  # nothing is printed as if it were a checked proof


def test_help_lists_the_commands_own_options_then_the_connection_options() -> None:
    params = typer.main.get_command(demo).commands["fetch"].params  # type: ignore[attr-defined]
    assert [p.name for p in params] == ["item", "note", "flag", "url", "token", "as_user"]
    by_name = {p.name: p for p in params}
    assert by_name["url"].opts == ["--url"] and by_name["url"].envvar == "GRASSROOTS_URL"
    assert by_name["token"].opts == ["--token"] and by_name["token"].envvar == "GRASSROOTS_TOKEN"
    assert by_name["as_user"].opts == ["--as"]
    help_text = _run("fetch", "--help").stdout
    assert "Fetch one item." in help_text
    places = [help_text.index(option) for option in ("--note", "--url", "--token", "--as")]
    assert places == sorted(places)


def test_a_command_that_declares_a_connection_option_itself_is_refused() -> None:
    def clashing(url: str) -> ApiCall:
        return ApiCall("GET", url)

    with pytest.raises(TypeError, match="url"):
        api_command(clashing)


# Commands that do not act as a person holding a bearer token: offline validation and verification (a
# reviewer need not trust the server), and the two that act as a departmental system with its own client
# credentials or system token.
_NOT_API_COMMANDS = {
    ("policy", "validate"),
    ("admission", "token"),
    ("admission", "me"),
    ("supervise", "archive-verify"),
    ("supervise", "prefix-verify"),
}


@pytest.mark.parametrize("group", ["grants", "policy", "masking", "admission", "supervise"])
def test_every_admin_command_takes_the_connection_options(group: str) -> None:
    commands = typer.main.get_command(grassroots).commands[group].commands  # type: ignore[attr-defined]
    assert commands
    for name, command in commands.items():
        if (group, name) in _NOT_API_COMMANDS:
            continue
        opts = {p.name: p.opts for p in command.params}
        # Last, as api_command places them: a command still declaring them itself would list them elsewhere.
        assert [p.name for p in command.params][-3:] == ["url", "token", "as_user"], (group, name)
        assert opts.get("url") == ["--url"], (group, name)
        assert opts.get("token") == ["--token"], (group, name)
        assert opts.get("as_user") == ["--as"], (group, name)


# Where the gateway is, when the command is not told: GRASSROOTS_HOST/GRASSROOTS_PORT, as `grassroots serve`
# (and the development IdP's issuer, so `--as`/`dev-token` tokens) read them. `--url` and GRASSROOTS_URL
# still win, in that order.
def _port(url: str) -> str:
    return url.rsplit(":", 1)[1]


def test_without_url_the_command_calls_the_gateway_at_grassroots_host_and_port(gateway: Gateway) -> None:
    env = {"GRASSROOTS_HOST": "127.0.0.1", "GRASSROOTS_PORT": _port(gateway.url)}
    result = _run("fetch", "a1", "--token", "t", env=env)
    assert result.exit_code == 0, result.stderr
    assert [r.path for r in gateway.received] == ["/api/v1/items/a1"]


def test_a_wildcard_listen_address_is_called_on_loopback(gateway: Gateway) -> None:
    result = _run(
        "fetch",
        "a1",
        "--token",
        "t",
        env={"GRASSROOTS_HOST": "0.0.0.0", "GRASSROOTS_PORT": _port(gateway.url)},
    )
    assert result.exit_code == 0, result.stderr
    assert len(gateway.received) == 1


@pytest.mark.parametrize("via", ["--url", "GRASSROOTS_URL"])
def test_url_and_grassroots_url_take_precedence_over_the_port(gateway: Gateway, via: str) -> None:
    with socket.socket() as sock:  # a port nothing listens on: calling it would exit 3
        sock.bind(("127.0.0.1", 0))
        unused = str(sock.getsockname()[1])
    env = {"GRASSROOTS_PORT": unused}
    if via == "--url":
        result = _run(
            "fetch",
            "a1",
            "--token",
            "t",
            "--url",
            gateway.url,
            env={**env, "GRASSROOTS_URL": "http://127.0.0.1:1"},
        )
    else:
        result = _run("fetch", "a1", "--token", "t", env={**env, "GRASSROOTS_URL": gateway.url})
    assert result.exit_code == 0, result.stderr
    assert len(gateway.received) == 1


@pytest.mark.parametrize("via", ["--url", "GRASSROOTS_URL"])
@pytest.mark.parametrize("url", ["127.0.0.1:8000", "gateway.county.gov.cn", "ftp://127.0.0.1:8000"])
def test_a_url_without_http_is_refused_saying_what_to_write(gateway: Gateway, via: str, url: str) -> None:
    """Without a scheme the call failed as "cannot reach the gateway (UnsupportedProtocol): check it is
    running", exit 3, while the gateway ran: now exit 2 before anything is sent, naming where the URL came
    from and what to write (never the value: a URL may carry a password)."""
    if via == "--url":
        result = _run("fetch", "a1", "--token", "t", "--url", url)
    else:
        result = _run("fetch", "a1", "--token", "t", env={"GRASSROOTS_URL": url})
    assert result.exit_code == 2, result.stderr
    assert result.stderr == (
        f"{via} 须为以 http:// 或 https:// 开头的完整网关地址，例如 http://127.0.0.1:8000。\n"
        f"{via} must be the gateway's full URL starting with http:// or https://, e.g. http://127.0.0.1:8000\n"
    )
    assert gateway.received == []


def test_a_port_that_is_not_a_number_is_named_not_a_traceback(gateway: Gateway) -> None:
    result = _run("fetch", "a1", "--token", "t", env={"GRASSROOTS_PORT": "eighty"})
    assert result.exit_code == 2
    zh, en = result.stderr.split("configuration error")
    assert "GRASSROOTS_PORT：须为整数" in zh and "GRASSROOTS_PORT: must be a whole number" in en
    assert "eighty" not in result.stderr and "Traceback" not in result.stderr
    assert gateway.received == []


def test_commands_declaring_the_url_option_themselves_follow_the_port_too(gateway: Gateway) -> None:
    # `admission token` acts as a departmental system (client credentials), not through api_command.
    gateway.answer(200, {"access_token": "sys-tok", "token_type": "Bearer"})
    result = runner.invoke(
        grassroots,
        ["admission", "token", "--client-id", "c1", "--client-secret", "s1", "--quiet"],
        env={"GRASSROOTS_URL": "", "GRASSROOTS_HOST": "127.0.0.1", "GRASSROOTS_PORT": _port(gateway.url)},
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "sys-tok\n"
    assert [r.path for r in gateway.received] == ["/oauth/token"]


def _development_env(gateway: Gateway, tmp_path: Path) -> dict[str, str]:
    """Development mode, the gateway found at the stand-in's address (so `--as` mints for it), and the
    development IdP's key made in its data directory, as a gateway makes it when it starts."""
    from gateway.auth.devusers import dev_identity_provider
    from gateway.settings import Settings

    dev_identity_provider(Settings(data_dir=tmp_path / "var", dev_idp_enabled=True)).jwks()  # type: ignore[call-arg]
    return {
        "GRASSROOTS_HOST": "127.0.0.1",
        "GRASSROOTS_PORT": _port(gateway.url),
        "GRASSROOTS_PUBLIC_URL": "",
        "GRASSROOTS_DATA_DIR": str(tmp_path / "var"),
        "GRASSROOTS_MODE": "development",
    }


def test_as_mints_a_token_whose_issuer_is_the_address_called(gateway: Gateway, tmp_path: Path) -> None:
    import jwt

    env = _development_env(gateway, tmp_path)
    result = _run("fetch", "a1", "--as", "cadre_a", env=env)
    assert result.exit_code == 0, result.stderr
    (received,) = gateway.received
    token = (received.authorization or "").removeprefix("Bearer ")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == f"{gateway.url}/dev-idp"


def test_as_an_unknown_demo_user_is_refused_in_words(gateway: Gateway, tmp_path: Path) -> None:
    # A typo in --as used to end in a Python traceback (UnknownDevUserError); it gets dev-token's words.
    env = _development_env(gateway, tmp_path)
    result = _run("fetch", "a1", "--as", "cadre_z", env=env)
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.stderr
    zh, en = result.stderr.splitlines()[:2]
    assert zh.startswith("没有名为 'cadre_z' 的演示用户") and "grassroots dev-users" in zh
    assert en == "no demo user named 'cadre_z'; see `grassroots dev-users`"
    assert gateway.received == []


def _write_key_pair(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    private = tmp_path / "key.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public = tmp_path / "key.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def _register_public_key(key_file: Path, gateway: Gateway) -> Result:
    command = ["admission", "public-key", "elderly-care-visits", "--file", str(key_file)]
    return runner.invoke(grassroots, [*command, "--url", gateway.url, "--token", "t"])


@pytest.mark.parametrize("form", ["pem", "jwk"])
def test_public_key_refuses_a_private_key_file_before_sending_it(
    gateway: Gateway, tmp_path: Path, form: str
) -> None:
    """`openssl genpkey -out key.pem` writes the private key: passing that file (as the README once said)
    used to upload it to the gateway, which refused it only after it had left the host."""
    private, _ = _write_key_pair(tmp_path)
    if form == "jwk":
        jwk = tmp_path / "key.jwk"
        jwk.write_text(json.dumps({"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "d": "BBBB"}))
        private = jwk
    result = _register_public_key(private, gateway)
    assert result.exit_code == 2, result.output
    assert gateway.received == []
    assert "是私钥，本次未发送" in result.stderr
    assert f"openssl pkey -in {private} -pubout" in result.stderr
    assert "BBBB" not in result.output and "PRIVATE" not in result.output


def test_public_key_sends_a_public_key_file(gateway: Gateway, tmp_path: Path) -> None:
    _, public = _write_key_pair(tmp_path)
    gateway.answer(200, {"system_id": "elderly-care-visits", "kid": "k"})
    result = _register_public_key(public, gateway)
    assert result.exit_code == 0, result.output
    assert [(r.method, r.path) for r in gateway.received] == [
        ("PUT", "/api/v1/admission/systems/elderly-care-visits/credentials/public-key")
    ]
    assert gateway.received[0].body == {"public_key": public.read_text()}


def _signed_inclusion(signer: Any, leaf_data: bytes, signed_root_of: bytes | None = None) -> dict[str, Any]:
    """The gateway's answer to ``supervise proof`` for the only event of a one-event log: the proof is
    empty and the root is the leaf's hash; the attached checkpoint signs the root of ``signed_root_of``."""
    from audit.merkle import leaf_hash

    leaf = leaf_hash(leaf_data)
    checkpoint = signer.sign(1, leaf_hash(signed_root_of or leaf_data)).to_json()
    checkpoint["root_hash"] = leaf.hex()  # what the server says the checkpoint records
    return {
        "seq": 1,
        "leaf_hash": leaf.hex(),
        "leaf_index": 0,
        "tree_size": 1,
        "proof": [],
        **{"root_hash": leaf.hex(), "checkpoint": checkpoint},
    }


def _public_pem(signer: Any, path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(
        signer.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def test_proof_checks_the_checkpoint_signature_here(gateway: Gateway, tmp_path: Path) -> None:
    # The server's word that a signed checkpoint records the root is not enough: a server rewriting its
    # log could hand out a proof and a checkpoint both leading to its new root. The signature is checked
    # here, with the checkpoint public key.
    from audit import CheckpointSigner

    signer, other = CheckpointSigner.generate(), CheckpointSigner.generate()
    env = {"GRASSROOTS_DATA_DIR": str(tmp_path / "no-such-data-dir")}
    key = _public_pem(signer, tmp_path / "checkpoint.pub.pem")

    gateway.answer(200, _signed_inclusion(signer, b"event 1"))
    good = runner.invoke(
        grassroots,
        ["supervise", "proof", "1", "--public-key", str(key), "--url", gateway.url, "--token", "t"],
        env=env,
    )
    assert good.exit_code == 0, good.stderr
    assert f"该检查点的签名已在本机用密钥 {signer.key_id} 核验。" in good.stderr
    assert f"its signature verified here (key {signer.key_id})" in good.stderr

    # No key on this machine and none given: verified proof, and said plainly the signature was not.
    unchecked = runner.invoke(
        grassroots, ["supervise", "proof", "1", "--url", gateway.url, "--token", "t"], env=env
    )
    assert unchecked.exit_code == 0, unchecked.stderr
    assert "该检查点的签名未在本机核验（本机没有检查点密钥）：可用 --public-key 指定" in unchecked.stderr

    # The checkpoint's root edited to the proof's (the signature covers another root), or signed by
    # another key: refused, and nothing printed as verified.
    for answer, pem in (
        (_signed_inclusion(signer, b"event 1 rewritten", signed_root_of=b"event 1"), key),
        (_signed_inclusion(other, b"event 1"), key),
    ):
        gateway.answer(200, answer)
        forged = runner.invoke(
            grassroots,
            ["supervise", "proof", "1", "--public-key", str(pem), "--url", gateway.url, "--token", "t"],
            env=env,
        )
        assert forged.exit_code == 1
        assert "检查点签名未通过本地校验" in forged.stderr
        assert "the checkpoint's signature does NOT verify here" in forged.stderr
        assert forged.stdout == ""


def test_proof_refuses_a_checkpoint_recording_another_root(gateway: Gateway, tmp_path: Path) -> None:
    """The proof leads to the root of a rewritten log; the signed checkpoint attached (genuine, its
    signature good) records the original root. The old CLI printed "已在本地校验：第 1 号事件包含在…"
    with "与所附签名检查点记载的根哈希不同" after it, and exit 0: a script or a hurried reader took it as
    verified. It is refused, exit 1, nothing printed as verified."""
    from audit import CheckpointSigner
    from audit.merkle import leaf_hash

    signer = CheckpointSigner.generate()
    answer = _signed_inclusion(signer, b"event 1 rewritten")
    answer["checkpoint"] = signer.sign(1, leaf_hash(b"event 1")).to_json()  # the genuine signed root
    gateway.answer(200, answer)
    key = _public_pem(signer, tmp_path / "checkpoint.pub.pem")
    result = runner.invoke(
        grassroots,
        ["supervise", "proof", "1", "--public-key", str(key), "--url", gateway.url, "--token", "t"],
        env={"GRASSROOTS_DATA_DIR": str(tmp_path / "no-such-data-dir")},
    )
    assert result.exit_code == 1, result.stderr
    assert result.stderr.startswith("证明未通过本地校验：树大小 1 的签名检查点记载的根哈希为 ")
    assert (
        "the inclusion proof does NOT verify: the signed checkpoint of tree size 1 records root"
        in result.stderr
    )
    assert "已在本地校验" not in result.stderr and result.stdout == ""


def test_incident_verify_refuses_evidence_of_a_root_its_checkpoint_does_not_sign(
    gateway: Gateway, tmp_path: Path
) -> None:
    """The evidence leads to the incident's root, but the signed checkpoint of that tree size records
    another: the evidence is of a rewritten log. The old CLI said "没有列出该大小的签名检查点" (there is
    one) and exited 0."""
    from audit import CheckpointSigner
    from audit.merkle import leaf_hash

    signer = CheckpointSigner.generate()
    leaf = leaf_hash(b"event 1 rewritten")
    # One answer for both requests: the incident (its evidence), then GET /checkpoints (its items).
    gateway.answer(
        200,
        {
            "root_hash": leaf.hex(),
            "tree_size": 1,
            "evidence": [{"seq": 1, "leaf_hash": leaf.hex(), "proof": []}],
            "items": [signer.sign(1, leaf_hash(b"event 1")).to_json()],
        },
    )
    key = _public_pem(signer, tmp_path / "checkpoint.pub.pem")
    result = runner.invoke(
        grassroots,
        [
            "supervise",
            "incident",
            "I-1",
            "--verify",
            "--public-key",
            str(key),
            "--url",
            gateway.url,
            "--token",
            "t",
        ],
        env={"GRASSROOTS_DATA_DIR": str(tmp_path / "no-such-data-dir")},
    )
    assert result.exit_code == 1, result.stderr
    assert result.stderr.startswith("证明未通过本地校验：树大小 1 的签名检查点记载的根哈希为 ")
    assert "没有列出该大小的签名检查点" not in result.stderr and result.stdout == ""


def _signed_consistency(
    signer: Any, events: list[bytes], signed: list[bytes] | None = None
) -> dict[str, Any]:
    """The gateway's answer to ``supervise consistency`` between the logs of 1 and 2 events ``events``, the
    proof right for them; the attached checkpoints sign the roots of ``signed`` (default: the same events)."""
    from audit.merkle import consistency_proof, leaf_hash, merkle_root

    leaves = [leaf_hash(e) for e in events]
    truth = [leaf_hash(e) for e in signed or events]
    return {
        "old_size": 1,
        "new_size": 2,
        "old_root": merkle_root(leaves[:1]).hex(),
        "new_root": merkle_root(leaves).hex(),
        "proof": [p.hex() for p in consistency_proof(leaves, 1)],
        "old_checkpoint": signer.sign(1, merkle_root(truth[:1])).to_json(),
        "new_checkpoint": signer.sign(2, merkle_root(truth)).to_json(),
    }


def test_consistency_checks_both_ends_against_the_signed_checkpoints(
    gateway: Gateway, tmp_path: Path
) -> None:
    """A consistency proof between two roots the server chose proves nothing about the signed history: a
    server that rewrote its log proves the new log consistent with itself. Each end must be the root its
    signed checkpoint records, and the signatures are checked here. The old CLI checked the proof alone
    and printed "verified here: the log of tree size 2 holds the log of tree size 1 unchanged", exit 0."""
    from audit import CheckpointSigner

    signer = CheckpointSigner.generate()
    env = {"GRASSROOTS_DATA_DIR": str(tmp_path / "no-such-data-dir")}
    key = _public_pem(signer, tmp_path / "checkpoint.pub.pem")
    command = ["supervise", "consistency", "--public-key", str(key), "--url", gateway.url, "--token", "t"]

    gateway.answer(200, _signed_consistency(signer, [b"event 1", b"event 2"]))
    good = runner.invoke(grassroots, command, env=env)
    assert good.exit_code == 0, good.stderr
    assert good.stderr.count(f"该检查点的签名已在本机用密钥 {signer.key_id} 核验。") == 2
    assert good.stderr.count(f"its signature verified here (key {signer.key_id})") == 2

    # Event 1 rewritten and the proof computed over the rewritten log; the signed checkpoints are genuine.
    gateway.answer(
        200, _signed_consistency(signer, [b"event 1 rewritten", b"event 2"], [b"event 1", b"event 2"])
    )
    rewritten = runner.invoke(grassroots, command, env=env)
    assert rewritten.exit_code == 1, rewritten.stderr
    assert "证明未通过本地校验：树大小 1 的签名检查点记载的根哈希为" in rewritten.stderr
    assert "the consistency proof does NOT verify: the signed checkpoint of tree size 1" in rewritten.stderr
    assert rewritten.stdout == ""

    # ... and the checkpoints' roots edited to match: their signatures do not verify.
    answer = _signed_consistency(signer, [b"event 1 rewritten", b"event 2"], [b"event 1", b"event 2"])
    answer["old_checkpoint"]["root_hash"], answer["new_checkpoint"]["root_hash"] = (
        answer["old_root"],
        answer["new_root"],
    )
    gateway.answer(200, answer)
    edited = runner.invoke(grassroots, command, env=env)
    assert edited.exit_code == 1 and "检查点签名未通过本地校验" in edited.stderr and edited.stdout == ""


def test_a_list_option_is_split_at_the_commas_a_chinese_input_method_types() -> None:
    """--tags "自由文本，低保对象" (a full-width comma) was sent as one tag and refused as undeclared."""
    assert split_list("自由文本，低保对象") == ["自由文本", "低保对象"]
    assert split_list("name、mobile, address,,") == ["name", "mobile", "address"]
