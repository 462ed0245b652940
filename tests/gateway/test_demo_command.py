"""`grassroots demo` (what `make demo` runs), as a new user starts it: the whole demo comes up on loopback,
a cadre reads her village through it, and the scenarios' opening hours (7:00-21:00 Beijing time) are
either in force — refused outside them, with a start-up notice saying how to try the demo now — or,
with ``--any-hour``, lifted for the demo and said so. SIGTERM stops both registries too."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.launch import stop, wait_healthy
from gateway.serving import MAX_REQUEST_HEAD_BYTES
from policies.scenarios import load_scenarios
from tests.ports import free_port
from tests.stack import REPO


@contextmanager
def _demo(
    root: Path, *flags: str, port: int | None = None, **extra_env: str
) -> Iterator[tuple[str, dict[str, str], Path]]:
    port, upstream_port, house_port = port or free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "GRASSROOTS_DATA_DIR": str(root / "var"),
        "GRASSROOTS_PORT": str(port),
        "GRASSROOTS_LOG_LEVEL": "warning",
        **extra_env,
    }
    env.pop("GRASSROOTS_SCENARIOS_PATH", None)
    env.pop("GRASSROOTS_DATABASE_URL", None)
    err, out = root / "demo.err", root / "demo.out"
    with err.open("wb") as err_file, out.open("wb") as out_file:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "demo",
                "--port",
                str(port),
                "--upstream-port",
                str(upstream_port),
                "--person-house-port",
                str(house_port),
                *flags,
            ],
            env=env,
            cwd=root,
            stdout=out_file,
            stderr=err_file,
            start_new_session=True,
        )
        try:
            wait_healthy(f"http://127.0.0.1:{port}/healthz", proc, timeout_s=120)
            yield f"http://127.0.0.1:{port}", env, err
        finally:
            stop(proc, timeout_s=20)
    assert proc.returncode is not None
    for registry_port in (upstream_port, house_port):  # stopped with the demo, not left behind
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{registry_port}/healthz", timeout=2)


def _dev_token(env: dict[str, str], username: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "dev-token", username],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()


def _read_as_cadre(base: str, env: dict[str, str]) -> httpx.Response:
    token = _dev_token(env, "cadre_a")
    return httpx.get(
        f"{base}/api/v1/datasets/residents/records",
        params={"scenario": "DIBAO_REVIEW", "page_size": "3"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_the_demo_keeps_the_shipped_opening_hours_and_says_so_outside_them(tmp_path: Path) -> None:
    with _demo(tmp_path) as (base, env, err):
        resp = _read_as_cadre(base, env)
        open_now = load_scenarios().get("DIBAO_REVIEW").within_hours(datetime.now(UTC))  # type: ignore[union-attr]
        notice = err.read_text(encoding="utf-8")
    if open_now:
        assert resp.status_code == 200 and len(resp.json()["items"]) == 3
        assert "ANY_HOUR" not in notice
    else:
        assert resp.status_code == 403 and resp.json()["error"] == "outside_hours"
        assert "不在场景开放时间" in notice and "make demo ANY_HOUR=1" in notice


def test_any_hour_opens_every_scenario_all_day_for_the_demo_only(tmp_path: Path) -> None:
    with _demo(tmp_path, "--any-hour") as (base, env, _err):
        resp = _read_as_cadre(base, env)
    assert resp.status_code == 200, resp.text
    items = resp.json()["items"]
    assert len(items) == 3 and all("*" in item["id_number"] for item in items)  # masked as ever
    catalog = load_scenarios(tmp_path / "var" / "demo-scenarios-all-day.toml")
    assert catalog.get("DIBAO_REVIEW").hours_allowed == (0, 24)  # type: ignore[union-attr]
    assert load_scenarios().get("DIBAO_REVIEW").hours_allowed == (7, 21)  # type: ignore[union-attr]


def test_the_demo_refuses_a_request_head_over_the_limit_as_serve_does(tmp_path: Path) -> None:
    """The demo ran uvicorn's own protocol, which sets no limit on a request's head: a 200 MB header was
    held in memory and answered 200. It speaks what `serve` speaks now: 431 past 64 KiB, connection closed."""
    with _demo(tmp_path, "--any-hour") as (base, env, _err):
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Filler: ")
            with contextlib.suppress(OSError):  # the server may close before all of it is sent
                for _ in range(16):
                    conn.sendall(b"a" * MAX_REQUEST_HEAD_BYTES)
            answer = b""
            with contextlib.suppress(OSError):
                while chunk := conn.recv(65536):
                    answer += chunk
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert b'"request_header_too_large"' in answer
        assert _read_as_cadre(base, env).status_code == 200  # the demo serves on


def test_the_demo_logs_as_serve_does_with_time_level_process_and_logger(tmp_path: Path) -> None:
    """The demo ran uvicorn with its default logging: uvicorn's lines without a time or process, and the
    product's warnings through Python's last-resort handler, as bare text (no time, level or logger). Its
    lines are now those `serve` writes (gateway.serving.log_config)."""
    port = free_port()
    # The development IdP trusted for 城桥镇 only: 星桥村's cadre is refused, and the gateway logs why.
    township = json.dumps({f"http://127.0.0.1:{port}/dev-idp": ["310151101"]})
    with _demo(tmp_path, "--any-hour", port=port, GRASSROOTS_OIDC_ISSUER_JURISDICTIONS=township) as (
        base,
        env,
        err,
    ):
        token = _dev_token(env, "cadre_c")
        answer = httpx.get(f"{base}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert answer.status_code == 401 and answer.json()["error"] == "org_outside_issuer", answer.text
    lines = err.read_text(encoding="utf-8").splitlines()
    shape = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d{4} [A-Z]+: +\[\d+\] ")
    assert lines and all(shape.match(line) for line in lines), lines
    refused = next(line for line in lines if "outside its configured jurisdiction" in line)
    assert " WARNING: " in refused and "] gateway.auth.oidc: identity provider " in refused
    assert token not in refused


def test_a_second_demo_is_refused_before_it_starts_anything(tmp_path: Path) -> None:
    # Another demo (here: one listener) holds the civil-affairs registry's port: the second demo checks
    # every port first and refuses, saying which and what to do; no banner, no raw "address already in use".
    import socket

    port, upstream_port, house_port = free_port(), free_port(), free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", upstream_port))
        holder.listen()
        env = {**os.environ, "PYTHONPATH": str(REPO), "GRASSROOTS_DATA_DIR": str(tmp_path / "var")}
        env.pop("GRASSROOTS_DATABASE_URL", None)
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "demo", "--port", str(port), "--upstream-port",
             str(upstream_port), "--person-house-port", str(house_port)],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("无法启动演示：以下端口已被占用")
    assert f"127.0.0.1:{upstream_port}" in done.stderr and "--upstream-port" in done.stderr
    assert "Cannot start the demo" in done.stderr and "another demo" in done.stderr
    assert f":{port}" not in done.stderr.split("Cannot start")[1].split("\n", 2)[-1]  # free ports not named
    assert "demo is running" not in done.stdout and "Traceback" not in done.stderr
    assert not (tmp_path / "var" / "gateway.db").exists()  # nothing was started or migrated


def test_on_another_port_the_banner_says_export_first_and_every_client_command_follows_it(
    tmp_path: Path,
) -> None:
    # The demo runs on a free port (never 8000). In the other terminal, as the banner says, only
    # GRASSROOTS_PORT is exported: no GRASSROOTS_URL, yet both the token (its issuer) and the address the
    # client commands call follow it.
    with _demo(tmp_path) as (base, env, _err):
        port = base.rsplit(":", 1)[1]
        other_terminal = {k: v for k, v in env.items() if k != "GRASSROOTS_URL"}
        shown = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "policy", "show", "--as", "platform_admin"],
            env=other_terminal,
            capture_output=True,
            text=True,
            timeout=60,
        )
        banner = (tmp_path / "demo.out").read_text(encoding="utf-8")
    assert shown.returncode == 0, shown.stderr
    assert "digests" in json.loads(shown.stdout)
    steps = banner.split("Try, in another terminal:\n", 1)[1]
    assert steps.index(f"export GRASSROOTS_PORT={port}\n") < steps.index("dev-token cadre_a")
    assert "401 wrong_issuer" in steps.split("TOKEN=")[0]


def test_on_the_default_address_the_banner_needs_no_export(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import _print_next_steps
    from gateway.settings import Settings

    _print_next_steps(
        Settings(host="127.0.0.1", port=8000, public_url=None, dev_idp_enabled=True, data_dir=Path("var"))
    )
    default = capsys.readouterr().out
    assert "export" not in default and "http://127.0.0.1:8000/docs" in default
    _print_next_steps(
        Settings(host="0.0.0.0", port=8300, public_url=None, dev_idp_enabled=True, data_dir=Path("var"))
    )
    other = capsys.readouterr().out
    assert "  export GRASSROOTS_HOST=0.0.0.0\n  export GRASSROOTS_PORT=8300\n  TOKEN=" in other


@pytest.mark.parametrize(
    "settings_given",
    [
        {"dev_idp_enabled": False, "oidc_issuer": "https://idp.example.gov.cn/realms/chongming"},
        # On, but another provider is the one trusted: dev-token's tokens name it, signed with a key it
        # does not publish (401 unknown_key).
        {"dev_idp_enabled": True, "oidc_issuer": "https://idp.example.gov.cn/realms/chongming"},
    ],
    ids=["dev-idp-off", "another-issuer-trusted"],
)
def test_with_the_built_in_identity_provider_not_trusted_the_banner_suggests_no_dev_token(
    settings_given: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """`GRASSROOTS_DEV_IDP_ENABLED=false GRASSROOTS_OIDC_ISSUER=… grassroots demo` printed
    `TOKEN=$(.venv/bin/grassroots dev-token cadre_a)` and the grid worker's and dev-users lines: every token
    so made is refused by this gateway. The banner now says to sign in at the provider it trusts, naming it,
    and suggests only commands that work there."""
    from gateway.cli import _print_next_steps
    from gateway.settings import Settings

    _print_next_steps(Settings(port=8300, public_url=None, data_dir=Path("var"), **settings_given))
    steps = capsys.readouterr().out.split("Try, in another terminal:\n", 1)[1]
    commands = [
        line.strip() for line in steps.splitlines() if line.strip() and not line.strip().startswith("#")
    ]
    assert not any("dev-token" in line or "dev-users" in line or "--as" in line for line in commands), (
        commands
    )
    assert "wrong_issuer" not in steps  # said of dev-token's tokens only
    assert "https://idp.example.gov.cn/realms/chongming" in steps
    assert "dev-token 和 --as 的令牌在此会被拒绝" in steps and "tokens of dev-token and --as are" in steps
    assert commands[:3] == [
        "export GRASSROOTS_PORT=8300",
        "read -r TOKEN          # 粘贴访问令牌后按回车 / paste the access token, then Enter",
        'curl -s -H "Authorization: Bearer $TOKEN" \\',
    ]
    assert "grassroots audit verify" in commands[-2] and commands[-1] == "Press Ctrl+C to stop."


def test_a_demo_with_the_built_in_identity_provider_off_and_no_other_is_refused_before_it_starts(
    tmp_path: Path,
) -> None:
    """With GRASSROOTS_DEV_IDP_ENABLED=false and no GRASSROOTS_OIDC_ISSUER the demo migrated, seeded and
    printed its banner, then failed with a traceback. Refused first, as `serve` refuses it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "GRASSROOTS_DATA_DIR": str(tmp_path / "var"),
           "GRASSROOTS_DEV_IDP_ENABLED": "false"}  # fmt: skip
    for name in ("GRASSROOTS_DATABASE_URL", "GRASSROOTS_OIDC_ISSUER", "GRASSROOTS_OIDC_ISSUERS"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--port", str(free_port()), "--upstream-port",
         str(free_port()), "--person-house-port", str(free_port())],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("未配置身份提供方：请设置 GRASSROOTS_OIDC_ISSUER")
    assert "Traceback" not in done.stderr and "demo is running" not in done.stdout
    assert not (tmp_path / "var" / "gateway.db").exists()


def test_with_another_data_directory_the_banner_exports_it_for_audit_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `GRASSROOTS_DATA_DIR=/tmp/x/var grassroots demo`: the banner's own `audit verify` needs that directory
    # in the other terminal, or it finds no database under ./var and is told to run `db upgrade`.
    from gateway.cli import _print_next_steps
    from gateway.settings import Settings

    data_dir = tmp_path / "var"
    _print_next_steps(Settings(port=8000, public_url=None, dev_idp_enabled=True, data_dir=data_dir))
    steps = capsys.readouterr().out.split("Try, in another terminal:\n", 1)[1]
    assert steps.index(f"  export GRASSROOTS_DATA_DIR={data_dir}\n") < steps.index("grassroots audit verify")
    _print_next_steps(Settings(port=8000, public_url=None, dev_idp_enabled=True, data_dir=Path("var")))
    assert "GRASSROOTS_DATA_DIR" not in capsys.readouterr().out


def test_outside_the_opening_hours_the_banner_names_the_demo_commands_own_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Started as ``grassroots demo --port 8300 …`` (ports taken), at 21:05 the banner said only "run
    ``make demo ANY_HOUR=1``", which starts another demo on the taken default ports."""
    from gateway.cli import _print_opening_hours
    from gateway.settings import Settings
    from policies.scenarios import CHINA_STANDARD_TIME

    five_past_nine = datetime(2026, 12, 6, 21, 5, tzinfo=CHINA_STANDARD_TIME)
    _print_opening_hours(Settings(), any_hour=False, now=five_past_nine)
    notice = capsys.readouterr().err
    assert "现在是北京时间 21:05，不在场景开放时间（7:00-21:00）内" in notice
    assert (
        "make demo ANY_HOUR=1" in notice
        and "grassroots demo 命令（如 --port 等选项）后加上 --any-hour" in notice
    )
    assert "add --any-hour to the grassroots demo command" in notice
    _print_opening_hours(Settings(), any_hour=False, now=five_past_nine.replace(hour=20))
    assert capsys.readouterr().err == ""
