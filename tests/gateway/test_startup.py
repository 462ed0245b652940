"""Configuration guards, the migration gate and the development commands."""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Collection
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy.schema import CreateIndex

from audit.tables import event_source_index, requested_record_ref_index
from audit.tables import metadata as audit_metadata
from gateway.db import make_engine, upgrade
from gateway.schema import all_metadata
from gateway.settings import ConfigurationError, Settings
from tests.stack import REPO, free_port, postgres_base_url, throwaway_postgres

#: As openssl rand -hex 20 prints: a patterned value ("x" * 40) is refused in production.
STRONG = "1553bb053a421bd8060bf16536a293d7b2ec353c"
#: A key-encryption key of the form GRASSROOTS_MASKING_KEK takes (32 bytes, hex).
KEK = "0af83d4723f812406a9ac81e4f93140e1de435425a63184533cc20dd89a4b9bb"


def _run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"dev_idp_enabled": True, "oidc_issuer": "https://idp.example"}, "DEV_IDP_ENABLED"),
        ({"oidc_issuer": None}, "OIDC_ISSUER"),
        ({"oidc_issuer": "https://idp.example", "audit_hmac_key": "changeme"}, "AUDIT_HMAC_KEY"),
        ({"oidc_issuer": "https://idp.example", "audit_hmac_key": "short"}, "AUDIT_HMAC_KEY"),
        ({"oidc_issuer": "https://idp.example", "masking_kek": None}, "MASKING_KEK"),
        # The key set every token is checked against would travel in plain text: anyone on the path
        # could substitute a key of their own and sign any user (OpenID Connect Discovery 1.0 §3, §7.2).
        ({"oidc_issuer": "http://idp.county.gov.cn/realms/county"}, "OIDC_ISSUER"),
        ({"oidc_issuer": "http://10.1.2.3:8080"}, "OIDC_ISSUER"),
    ],
)
def test_production_mode_refuses_unsafe_settings(overrides: dict[str, object], complaint: str) -> None:
    values: dict[str, object] = {
        "mode": "production",
        "audit_hmac_key": STRONG,
        "masking_kek": KEK,
        "service_key_path": "/keys/service.pem",
        "checkpoint_key_path": "/keys/checkpoint.pem",
        "checkpoint_dir": "/checkpoints",
        **overrides,
    }
    with pytest.raises((ConfigurationError, ValidationError), match=complaint):
        Settings(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "issuer", ["https://idp.example", "http://127.0.0.1:8080/idp", "http://localhost:9000"]
)
def test_production_takes_an_https_issuer_or_one_on_this_host(issuer: str) -> None:
    settings = Settings(
        mode="production",  # type: ignore[arg-type]
        oidc_issuer=issuer,
        audit_hmac_key=STRONG,  # type: ignore[arg-type]
        masking_kek=KEK,  # type: ignore[arg-type]
        service_key_path=Path("/keys/service.pem"),
        checkpoint_key_path=Path("/keys/checkpoint.pem"),
        checkpoint_dir=Path("/checkpoints"),
    )
    assert settings.effective_oidc_issuer == issuer


def test_production_settings_with_real_secrets_are_accepted_and_hidden() -> None:
    settings = Settings(
        mode="production",  # type: ignore[arg-type]
        oidc_issuer="https://idp.example",
        audit_hmac_key=STRONG,  # type: ignore[arg-type]
        masking_kek=KEK,  # type: ignore[arg-type]
        service_key_path=Path("/keys/service.pem"),
        checkpoint_key_path=Path("/keys/checkpoint.pem"),
        checkpoint_dir=Path("/checkpoints"),
    )
    assert STRONG not in repr(settings) and KEK not in repr(settings)
    assert settings.effective_oidc_issuer == "https://idp.example"


def test_serve_refuses_an_unmigrated_database_and_says_how_to_fix_it(tmp_path: Path) -> None:
    env = {"GRASSROOTS_DATA_DIR": str(tmp_path / "var"), "GRASSROOTS_DEV_IDP_ENABLED": "true"}
    result = _run("serve", "--port", "1", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "grassroots db upgrade" in result.stderr


def test_serve_without_an_identity_provider_says_what_to_set_before_starting(tmp_path: Path) -> None:
    # A migrated database, no environment: the configuration is checked before uvicorn starts.
    env = {"GRASSROOTS_DATA_DIR": str(tmp_path / "var")}
    assert _run("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GRASSROOTS_OIDC_ISSUER", "GRASSROOTS_DEV_IDP_ENABLED")
    }
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--port", str(free_port())],
        env={**clean, "PYTHONPATH": str(REPO), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("未配置身份提供方：请设置 GRASSROOTS_OIDC_ISSUER")
    assert "No identity provider: set GRASSROOTS_OIDC_ISSUER" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) <= 3


# SQLite cannot reflect an expression index, so autogenerate skips it (and says so): the test below
# compares that one index's DDL itself.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index")
def test_migrations_create_exactly_the_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": False}), all_metadata()
        )
    assert diff == [], diff
    with engine.connect() as conn:
        triggers = {
            r[0] for r in conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type='trigger'"))
        }
        migrated = {
            index.name: conn.execute(
                sa.text("SELECT sql FROM sqlite_master WHERE type='index' AND name=:name"),
                {"name": index.name},
            ).scalar_one()
            for index in (requested_record_ref_index, event_source_index)
        }
    assert {"audit_events_no_update", "audit_events_no_delete"} <= triggers
    for index in (requested_record_ref_index, event_source_index):
        modelled = str(CreateIndex(index).compile(dialect=engine.dialect))
        assert " ".join(migrated[index.name].split()) == " ".join(modelled.split())


def _index_definitions(engine: sa.Engine, schema: str, names: Collection[str]) -> dict[str, str]:
    """PostgreSQL's own rendering of the named indexes of ``schema``, the schema name left out."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = :s AND indexname IN :n"
            ).bindparams(sa.bindparam("n", expanding=True)),
            {"s": schema, "n": list(names)},
        ).all()
    return {name: definition.replace(f" ON {schema}.", " ON ") for name, definition in rows}


@pytest.mark.postgres
def test_migrations_run_on_postgresql() -> None:
    base = postgres_base_url()
    if base is None:
        pytest.skip("GRASSROOTS_TEST_POSTGRES_URL not set")
    # Alembic compares an expression index by its text, which PostgreSQL rewrites (casts, parentheses, an
    # ELSE NULL): the source index is compared by how PostgreSQL itself renders the migrated one and the
    # one the models create, in a schema of their own.
    by_definition = {event_source_index.name}
    with throwaway_postgres(base) as url:
        upgrade(url)
        engine = make_engine(url)
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": False}), all_metadata()
            )
            roles = conn.execute(
                sa.text("SELECT 1 FROM pg_roles WHERE rolname='grassroots_audit_writer'")
            ).all()
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE SCHEMA modelled")
        migrated = _index_definitions(engine, "public", by_definition)
        engine.dispose()
        modelled_engine = sa.create_engine(url, connect_args={"options": "-c search_path=modelled"})
        audit_metadata.create_all(modelled_engine)
        modelled = _index_definitions(modelled_engine, "modelled", by_definition)
        modelled_engine.dispose()
    assert [d for d in diff if getattr(d[1], "name", None) not in by_definition] == [], diff
    assert len(migrated) == len(by_definition) and migrated == modelled, (migrated, modelled)
    assert roles


def test_dev_users_json_lists_the_demo_identities(tmp_path: Path) -> None:
    result = _run("dev-users", "--json", env={"GRASSROOTS_DATA_DIR": str(tmp_path / "var")}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    users = json.loads(result.stdout)
    by_name = {u["username"]: u for u in users}
    assert {"cadre_a", "cadre_b", "town_officer", "ca_steward", "supervisor"} <= set(by_name)
    assert by_name["cadre_a"]["org"][:9] == by_name["cadre_b"]["org"][:9]  # same township
    assert all({"username", "role", "org"} <= set(u) for u in users)


def test_dev_users_lines_up_its_columns_for_every_name(tmp_path: Path) -> None:
    """A fixed 18-character name column pushed national_supervisor's role and code out of line."""
    result = _run("dev-users", env={"GRASSROOTS_DATA_DIR": str(tmp_path / "var")}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("national_supervisor ") for line in lines)
    starts = [[m.start() for m in re.finditer(r"\S+", line)][1:3] for line in lines]  # role, org code
    assert len({tuple(s) for s in starts}) == 1, lines


def test_dev_token_refuses_unknown_users_and_production_mode(tmp_path: Path) -> None:
    env = {"GRASSROOTS_DATA_DIR": str(tmp_path / "var")}
    assert _run("dev-token", "nobody", env=env, cwd=tmp_path).returncode == 2
    # No gateway has made its development-IdP key here yet: refused, no key of its own made.
    assert _run("dev-token", "cadre_a", env=env, cwd=tmp_path).returncode == 2
    assert not (tmp_path / "var").exists()
    from gateway.auth.devusers import dev_identity_provider
    from gateway.settings import Settings

    dev_identity_provider(Settings(data_dir=tmp_path / "var", dev_idp_enabled=True)).jwks()  # type: ignore[call-arg]
    ok = _run("dev-token", "cadre_a", env=env, cwd=tmp_path)
    assert ok.returncode == 0 and ok.stdout.count(".") == 2
    # Never a token the gateway refuses as outliving GRASSROOTS_OIDC_MAX_TOKEN_LIFETIME_S.
    short = {**env, "GRASSROOTS_OIDC_MAX_TOKEN_LIFETIME_S": "600"}
    too_long = _run("dev-token", "cadre_a", "--ttl", "601", env=short, cwd=tmp_path)
    assert too_long.returncode == 2 and too_long.stdout == ""
    assert "--ttl may be at most 600 s (GRASSROOTS_OIDC_MAX_TOKEN_LIFETIME_S)" in too_long.stderr
    import jwt

    claims = jwt.decode(
        _run("dev-token", "cadre_a", env=short, cwd=tmp_path).stdout.strip(),
        options={"verify_signature": False},
    )
    assert claims["exp"] - claims["iat"] == 600
    prod = _run(
        "dev-token",
        "cadre_a",
        env={
            **env,
            "GRASSROOTS_MODE": "production",
            "GRASSROOTS_OIDC_ISSUER": "https://idp.example",
            "GRASSROOTS_AUDIT_HMAC_KEY": STRONG,
            "GRASSROOTS_MASKING_KEK": KEK,
            "GRASSROOTS_SERVICE_KEY_PATH": "/k/s.pem",
            "GRASSROOTS_CHECKPOINT_KEY_PATH": "/k/c.pem",
            "GRASSROOTS_CHECKPOINT_DIR": "/k/cp",
        },
        cwd=tmp_path,
    )
    assert prod.returncode == 2
    assert prod.stdout == ""


def test_db_upgrade_and_seed_demo_commands_are_idempotent(tmp_path: Path) -> None:
    env = {"GRASSROOTS_DATA_DIR": str(tmp_path / "var")}
    assert _run("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    first = _run("seed-demo", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "civil-affairs-registry approved" in first.stdout
    assert "health-followup-app submitted" in first.stdout
    assert "village-checkin-app rejected" in first.stdout
    again = _run("seed-demo", env=env, cwd=tmp_path)
    assert again.returncode == 0 and "already seeded" in again.stdout
    verify = _run("audit", "verify", "--quiet", env=env, cwd=tmp_path)
    assert verify.returncode == 0, verify.stderr


def test_settle_heap_takes_what_start_up_built_out_of_every_later_collection() -> None:
    """What exists when serving begins is frozen (the permanent generation): full collections no longer
    walk it; what is made afterwards is collected as usual."""
    import gc

    from gateway.app import settle_heap

    built_at_start = [{"n": i} for i in range(1000)]
    try:
        settle_heap()
        assert gc.get_freeze_count() >= len(built_at_start)
        tracked = {id(obj) for generation in range(3) for obj in gc.get_objects(generation)}
        assert id(built_at_start) not in tracked
        assert not any(id(item) in tracked for item in built_at_start)
        made_later = [{"m": 1}]
        assert any(obj is made_later for obj in gc.get_objects(0))
    finally:
        gc.unfreeze()


def _production_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A production configuration on a migrated SQLite database, its three key files made by the operator."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("service.pem", "checkpoint.pem", "system-token.pem"):
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        (keys / name).write_bytes(pem)
        (keys / name).chmod(0o600)
    env = {
        "GRASSROOTS_DATA_DIR": str(tmp_path / "var"),
        "GRASSROOTS_MODE": "production",
        "GRASSROOTS_DEV_IDP_ENABLED": "false",
        "GRASSROOTS_OIDC_ISSUER": "https://idp.example",
        "GRASSROOTS_AUDIT_HMAC_KEY": STRONG,
        "GRASSROOTS_MASKING_KEK": KEK,
        "GRASSROOTS_SERVICE_KEY_PATH": str(keys / "service.pem"),
        "GRASSROOTS_CHECKPOINT_KEY_PATH": str(keys / "checkpoint.pem"),
        "GRASSROOTS_ADMISSION_TOKEN_KEY_PATH": str(keys / "system-token.pem"),
        "GRASSROOTS_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
    }
    assert _run("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    return env, keys


def _serve_on_a_taken_port(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """serve past every check, up to the port, which something holds (so it never listens)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        started = _run("serve", "--port", str(taken.getsockname()[1]), env=env, cwd=cwd)
    assert started.returncode == 2 and "Address already in use" in started.stderr, started.stderr
    return started


def test_production_serve_refuses_a_key_file_that_is_not_there_and_makes_none(tmp_path: Path) -> None:
    """A mistyped key path in production once meant a new key, made silently: a service key no departmental
    system knows, a checkpoint key whose signatures no verifier with the real one accepts; and the system
    token key was made by the first token request, each host its own, so a departmental system's token
    issued by one host was refused by the next."""
    env, keys = _production_env(tmp_path)
    for variable, typo in (
        ("GRASSROOTS_SERVICE_KEY_PATH", keys / "servce.pem"),
        ("GRASSROOTS_CHECKPOINT_KEY_PATH", keys / "checkpiont.pem"),
        ("GRASSROOTS_ADMISSION_TOKEN_KEY_PATH", keys / "sytem-token.pem"),
    ):
        refused = _run("serve", "--port", "1", env={**env, variable: str(typo)}, cwd=tmp_path)
        assert refused.returncode == 2, refused.stderr
        zh, en = refused.stderr.splitlines()
        assert zh.startswith(f"生产模式下找不到密钥文件 {typo}（{variable}）")
        assert en.startswith(f"no key file at {typo} ({variable}) in production mode")
        assert f"openssl genpkey -algorithm ed25519 -out {typo}" in en
        assert STRONG not in refused.stderr
        assert sorted(p.name for p in keys.iterdir()) == ["checkpoint.pem", "service.pem", "system-token.pem"]
    # With the three files there, serve goes on to its next check: here the port, which something holds.
    _serve_on_a_taken_port(env, tmp_path)


def test_production_serve_warns_while_its_identity_provider_may_vouch_for_any_organisation(
    tmp_path: Path,
) -> None:
    """One identity provider misconfigured or taken over could sign users into any district: serve says so
    until the provider's jurisdiction is configured (a warning, so single-IdP deployments keep working)."""
    from gateway.cli import unrestricted_issuer_warning

    env, _ = _production_env(tmp_path)
    warned = _serve_on_a_taken_port(env, tmp_path).stderr
    assert (
        "警告：未设置 GRASSROOTS_OIDC_ISSUER_JURISDICTIONS，身份提供方 https://idp.example 签发的" in warned
    )
    assert (
        "warning: GRASSROOTS_OIDC_ISSUER_JURISDICTIONS is not set: tokens of the identity provider "
        "https://idp.example are accepted whatever organisation they name" in warned
    )
    assert """GRASSROOTS_OIDC_ISSUER_JURISDICTIONS='{"https://idp.example": ["310151"]}'""" in warned
    restricted = {**env, "GRASSROOTS_OIDC_ISSUER_JURISDICTIONS": '{"https://idp.example": ["310151"]}'}
    assert "JURISDICTIONS" not in _serve_on_a_taken_port(restricted, tmp_path).stderr
    # Development (the demo IdP, any organisation of the demo world) is not warned about.
    assert unrestricted_issuer_warning(Settings(dev_idp_enabled=True)) is None


def _assert_refused_naming(result: subprocess.CompletedProcess[str], variable: str, *secrets: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    # Chinese first, then English, each naming the setting to fix.
    lines = result.stderr.splitlines()
    english = next(at for at, line in enumerate(lines) if line.isascii())
    zh, en = "\n".join(lines[:english]), "\n".join(lines[english:])
    assert zh and not zh.isascii() and variable in zh and variable in en
    for secret in secrets:
        assert secret not in result.stderr


def test_serve_refuses_a_key_file_it_cannot_use_naming_the_setting(tmp_path: Path) -> None:
    """A key copied to a second host with the wrong mode, a path naming some other file, a directory: each
    ended in a traceback (from the CLI with --workers 2, from a worker's start-up with one)."""
    env, keys = _production_env(tmp_path)
    (keys / "checkpoint.pem").chmod(0o644)  # as `scp` or `cp` without -p leaves it
    for workers in ("1", "2"):
        loose = _run("serve", "--port", "1", "--workers", workers, env=env, cwd=tmp_path)
        _assert_refused_naming(loose, "GRASSROOTS_CHECKPOINT_KEY_PATH")
        assert "chmod 600" in loose.stderr
    (keys / "checkpoint.pem").chmod(0o600)
    # The service key (calls departmental systems as the gateway) and the system token key (mints any
    # system's access token) were accepted readable by every user of the host.
    for variable, name in (
        ("GRASSROOTS_SERVICE_KEY_PATH", "service.pem"),
        ("GRASSROOTS_ADMISSION_TOKEN_KEY_PATH", "system-token.pem"),
    ):
        for mode in (0o644, 0o640):
            (keys / name).chmod(mode)
            loose = _run("serve", "--port", "1", env=env, cwd=tmp_path)
            _assert_refused_naming(loose, variable, STRONG)
            assert f"private key file mode is {mode:o}" in loose.stderr
            assert f"chmod 600 {keys / name}" in loose.stderr
        (keys / name).chmod(0o600)
    (keys / "notes.txt").write_text("not a key")
    (keys / "notes.txt").chmod(0o600)
    for variable, path, reason in (
        ("GRASSROOTS_SERVICE_KEY_PATH", keys / "notes.txt", "not a PEM Ed25519 private key"),
        ("GRASSROOTS_ADMISSION_TOKEN_KEY_PATH", keys, "Is a directory"),
        ("GRASSROOTS_CHECKPOINT_KEY_PATH", keys / "notes.txt", "not a PEM private key"),
    ):
        result = _run("serve", "--port", "1", env={**env, variable: str(path)}, cwd=tmp_path)
        _assert_refused_naming(result, variable)
        assert reason in result.stderr


def test_serve_refuses_a_masking_kek_it_cannot_use_naming_the_setting(tmp_path: Path) -> None:
    """A passphrase where a 32-byte key belongs (the README said only "key-encryption key"), and a second
    host started with another KEK than the one that made the key ring it was given: both were tracebacks."""
    env, _ = _production_env(tmp_path)
    passphrase = "our-district-gateway-kek-passphrase-2026"
    result = _run("serve", "--port", "1", env={**env, "GRASSROOTS_MASKING_KEK": passphrase}, cwd=tmp_path)
    _assert_refused_naming(result, "GRASSROOTS_MASKING_KEK", passphrase)
    assert "openssl rand -hex 32" in result.stderr
    # The first host makes the ring (as a gateway does on its first start, under the right KEK) ...
    from masking import KeyRing, parse_kek

    (tmp_path / "var" / "keys").mkdir(parents=True, exist_ok=True)
    ring = KeyRing.generate(parse_kek(KEK))
    (tmp_path / "var" / "keys" / "masking-keyring.json").write_text(ring.to_json())
    assert _run("keys", "rotate", env=env, cwd=tmp_path).returncode == 0
    other = "9a953d01296c697b092544c92874fae6612e9bec735885d046e02ce1a7d9851b"
    for command in (["serve", "--port", "1", "--workers", "2"], ["keys", "rotate"]):
        wrong = _run(*command, env={**env, "GRASSROOTS_MASKING_KEK": other}, cwd=tmp_path)
        _assert_refused_naming(wrong, "GRASSROOTS_MASKING_KEK", other, KEK)
        assert "masking-keyring.json" in wrong.stderr


class _JSONHandler(http.server.BaseHTTPRequestHandler):
    """A stand-in identity provider's answers: JSON, nothing logged."""

    def answer(self, body: object) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Discovery(_JSONHandler):
    """An identity provider's discovery document that names ``document_issuer`` (a trailing / added)."""

    document_issuer = ""

    def do_GET(self) -> None:
        self.answer({"issuer": self.document_issuer, "jwks_uri": self.document_issuer + "certs"})


def test_serve_refuses_an_issuer_its_provider_does_not_name(tmp_path: Path) -> None:
    """Discovery 1.0 §4.3: the gateway refuses a document naming another issuer, so with a trailing / of
    difference every sign-in answered 503 idp_unavailable, and the start said nothing."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Discovery)
    issuer = f"http://127.0.0.1:{server.server_address[1]}/realms/county"
    _Discovery.document_issuer = issuer + "/"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env, _ = _production_env(tmp_path)
        result = _run(
            "serve", "--port", str(free_port()), env={**env, "GRASSROOTS_OIDC_ISSUER": issuer}, cwd=tmp_path
        )
    finally:
        server.shutdown()
    _assert_refused_naming(result, "GRASSROOTS_OIDC_ISSUER", STRONG, KEK)
    assert f"names the issuer {issuer}/, not GRASSROOTS_OIDC_ISSUER ({issuer})" in result.stderr


def test_serve_warns_at_start_when_the_identity_provider_cannot_be_reached(tmp_path: Path) -> None:
    """It starts (the provider may come back; sign-ins are refused until then, fail closed), and says so
    at once instead of at the first signed-in request."""
    from gateway.launch import start_gateway, stop

    env, _ = _production_env(tmp_path)
    issuer = f"http://127.0.0.1:{free_port()}/realms/county"  # nothing listens there
    township = f"http://127.0.0.1:{free_port()}/realms/township"  # a further provider, nor there
    port, log = free_port(), tmp_path / "serve.log"
    listed = json.dumps([{"issuer": township, "jurisdiction": ["310151101"]}])
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        **env,
        "GRASSROOTS_OIDC_ISSUER": issuer,
        "GRASSROOTS_OIDC_ISSUERS": listed,
    }
    gateway = start_gateway(port=port, env=env, cwd=tmp_path, stderr=log)
    stop(gateway)
    lines = log.read_text(encoding="utf-8").splitlines()
    assert any(
        line.startswith(
            f"warning: the identity provider at {township}/.well-known/openid-configuration "
            "(GRASSROOTS_OIDC_ISSUERS) cannot be reached"
        )
        for line in lines
    ), lines
    # After the warning about the provider's unrestricted jurisdiction, which production also prints.
    at = next(i for i, line in enumerate(lines) if line.startswith("警告：身份提供方"))
    zh, en = lines[at : at + 2]
    assert zh.startswith(
        f"警告：身份提供方 {issuer}/.well-known/openid-configuration（GRASSROOTS_OIDC_ISSUER）无法连接"
    )
    assert en.startswith(f"warning: the identity provider at {issuer}/.well-known/openid-configuration")
    assert "503 idp_unavailable" in en


class _Provider(_JSONHandler):
    """Providers under one address, one per first path segment: each publishes its discovery document, and
    at ``certs`` ``key_sets[name]`` (``None``: 404)."""

    key_sets: ClassVar[dict[str, object]] = {}

    def do_GET(self) -> None:
        name, _, rest = self.path.strip("/").partition("/")
        base = f"http://127.0.0.1:{self.server.server_address[1]}/{name}"
        if rest == ".well-known/openid-configuration":
            body: object = {"issuer": base, "jwks_uri": base + "/certs"}
        elif rest == "certs" and self.key_sets.get(name) is not None:
            body = self.key_sets[name]
        else:
            self.send_response(404)
            self.end_headers()
            return
        self.answer(body)


def test_serve_warns_at_start_when_the_providers_key_set_cannot_verify_a_token(tmp_path: Path) -> None:
    """The start asked for the discovery document only: a jwks_uri answering 404 (every sign-in 503
    idp_unavailable) or a key set holding no key of the accepted algorithms (every sign-in 401 unknown_key,
    whose "sign in again" cannot help) started without a word. Now each is a warning naming the key set's
    address; a provider whose key set is fine is not named."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    from gateway.launch import start_gateway, stop

    ec_key = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True)
    _Provider.key_sets = {
        "gone": None,
        "empty": {"keys": []},
        "wrongtype": {"keys": [{**ec_key, "kid": "ec-1"}]},  # EC, where only RS256 is accepted below
        "fine": {"keys": [{**ec_key, "kid": "ec-1"}]},
    }
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Provider)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    env, _ = _production_env(tmp_path)
    listed = [{"issuer": f"{base}/{name}", "jurisdiction": ["310151101"]} for name in ("gone", "empty")]
    log = tmp_path / "serve.log"
    try:
        for issuer, algorithms in ((f"{base}/wrongtype", ["RS256"]), (f"{base}/fine", ["ES256"])):
            started = {
                **os.environ,
                "PYTHONPATH": str(REPO),
                **env,
                "GRASSROOTS_OIDC_ISSUER": issuer,
                "GRASSROOTS_OIDC_ISSUERS": json.dumps(listed),
                "GRASSROOTS_OIDC_ALGORITHMS": json.dumps(algorithms),
            }
            stop(start_gateway(port=free_port(), env=started, cwd=tmp_path, stderr=log))
            listed = []
    finally:
        server.shutdown()
    written = log.read_text(encoding="utf-8")
    lines = written.splitlines()
    for name, en, zh in (
        ("gone", "answered HTTP 404", "返回 HTTP 404"),
        (
            "empty",
            "holds no signing key for the accepted algorithms (RS256",
            "的密钥集中没有可用于所接受签名算法",
        ),
        (
            "wrongtype",
            "holds no signing key for the accepted algorithms (RS256",
            "的密钥集中没有可用于所接受签名算法",
        ),
    ):
        variable = "GRASSROOTS_OIDC_ISSUER" if name == "wrongtype" else "GRASSROOTS_OIDC_ISSUERS"
        at = next(
            i for i, line in enumerate(lines) if line.startswith(f"警告：身份提供方 {base}/{name}/certs")
        )
        assert lines[at].startswith(f"警告：身份提供方 {base}/{name}/certs（{variable}）{zh}"), lines[at]
        assert lines[at + 1].startswith(
            f"warning: the identity provider at {base}/{name}/certs ({variable}) {en}"
        )
        assert "401 unknown_key" in lines[at + 1]
    # (production also warns of its unrestricted jurisdiction, naming it: not about its keys)
    assert not any(
        line.startswith(
            ("警告：身份提供方 " + base + "/fine", f"warning: the identity provider at {base}/fine")
        )
        for line in lines
    ), written


class _PlainKeySetDiscovery(_JSONHandler):
    """An https provider whose discovery document names its key set at a plain http address."""

    def do_GET(self) -> None:
        base = f"https://127.0.0.1:{self.server.server_address[1]}/realms/county"
        self.answer({"issuer": base, "jwks_uri": f"http://127.0.0.1:{self.server.server_address[1]}/certs"})


def test_serve_warns_at_start_when_an_https_provider_names_a_plain_http_key_set(tmp_path: Path) -> None:
    """The verifier refuses a key set over plain http for an https issuer, so every sign-in answered 503
    idp_unavailable ("try again later"); the start said nothing. Now it warns, naming the discovery document
    and the key set's address."""
    from gateway.launch import start_gateway, stop
    from tests.gateway.test_upstream_tls import _self_signed

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PlainKeySetDiscovery)
    server.socket = _self_signed(tmp_path).wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    issuer = f"https://127.0.0.1:{server.server_address[1]}/realms/county"
    env, _ = _production_env(tmp_path)
    log = tmp_path / "serve.log"
    started = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        **env,
        "GRASSROOTS_OIDC_ISSUER": issuer,
        "SSL_CERT_FILE": str(tmp_path / "cert.pem"),  # the provider's certificate, trusted by this host
    }
    try:
        stop(start_gateway(port=free_port(), env=started, cwd=tmp_path, stderr=log))
    finally:
        server.shutdown()
    lines = log.read_text(encoding="utf-8").splitlines()
    discovery = f"{issuer}/.well-known/openid-configuration"
    plain = f"http://127.0.0.1:{server.server_address[1]}/certs"
    at = next(i for i, line in enumerate(lines) if line.startswith(f"警告：身份提供方 {discovery}"))
    assert f"（GRASSROOTS_OIDC_ISSUER）的发现文档所写的密钥集地址 {plain} 不是 https 地址" in lines[at], (
        lines[at]
    )
    assert lines[at + 1].startswith(
        f"warning: the identity provider at {discovery} (GRASSROOTS_OIDC_ISSUER) names a key set without TLS "
        f"({plain})"
    ), lines[at + 1]


def test_serve_does_not_warn_about_the_development_idp_it_serves_itself(tmp_path: Path) -> None:
    """GRASSROOTS_OIDC_ISSUER naming this gateway's own development IdP (by another name for loopback): the
    start-time check asked it before anything listened and warned that it could not be reached, which was
    false (sign-ins work). A real mismatch with what it will announce (a trailing / it drops) is still
    refused before it starts."""
    from gateway.launch import start_gateway, stop

    port, log = free_port(), tmp_path / "serve.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "GRASSROOTS_DATA_DIR": str(tmp_path / "var"),
        "GRASSROOTS_DEV_IDP_ENABLED": "true",
        "GRASSROOTS_OIDC_ISSUER": f"http://localhost:{port}/dev-idp",
        "GRASSROOTS_LOG_LEVEL": "warning",
    }
    env.pop("GRASSROOTS_DATABASE_URL", None)
    assert _run("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    gateway = start_gateway(port=port, env=env, cwd=tmp_path, stderr=log)
    try:
        token = _run("dev-token", "cadre_a", env=env, cwd=tmp_path).stdout.strip()
        me = httpx.get(f"http://127.0.0.1:{port}/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200, me.text
    finally:
        stop(gateway)
    written = log.read_text(encoding="utf-8")
    assert "身份提供方" not in written and "identity provider" not in written, written

    other = free_port()
    issuer = f"http://127.0.0.1:{other}/dev-idp/"
    refused = _run("serve", "--port", str(other), env={**env, "GRASSROOTS_OIDC_ISSUER": issuer}, cwd=tmp_path)
    _assert_refused_naming(refused, "GRASSROOTS_OIDC_ISSUER")
    assert f"names the issuer {issuer.rstrip('/')}, not GRASSROOTS_OIDC_ISSUER ({issuer})" in refused.stderr


def test_serve_with_workers_exits_non_zero_when_a_worker_fails_to_start(tmp_path: Path) -> None:
    """uvicorn's supervisor stops when a worker fails to start and returns as after a Ctrl+C: `serve
    --workers 2` exited 0, so systemd (Restart=on-failure) and monitoring took the failed start for a clean
    stop; and it stopped a minute late, the dead workers noticed only when a ping to them timed out. Here
    the workers, and only they, find an unmigrated database (a sitecustomize that points them at
    an empty data directory: what the database turning away the workers' logins after the checks looks
    like); the supervisor's checks passed on the migrated one."""
    data_dir, empty = tmp_path / "var", tmp_path / "empty"
    env = {"GRASSROOTS_DATA_DIR": str(data_dir), "GRASSROOTS_DEV_IDP_ENABLED": "true"}
    assert _run("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    hook = tmp_path / "hook"
    hook.mkdir()
    # GRASSROOTS_WORKERS is set by `serve --workers N` for its workers alone, after its own checks.
    (hook / "sitecustomize.py").write_text(
        "import os\nif os.environ.get('GRASSROOTS_WORKERS'):\n"
        f"    os.environ['GRASSROOTS_DATA_DIR'] = {str(empty)!r}\n"
    )
    clean = {k: v for k, v in os.environ.items() if k != "GRASSROOTS_WORKERS"}
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--workers", "2", "--port", str(free_port())],
        env={**clean, **env, "PYTHONPATH": os.pathsep.join([str(hook), str(REPO)])},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        # Well under the 60 s a worker has to answer a ping: one that died with a ping in flight was noticed
        # only when that ran out (the gateway stopped a minute after its workers had).
        timeout=45,
        check=False,
    )
    assert "Application startup failed" in result.stderr  # the workers, not the supervisor's checks
    # Each worker says why in the words the supervisor's own check uses, without a traceback.
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "请先运行 `grassroots db upgrade`" in result.stderr
    assert "run `grassroots db upgrade`" in result.stderr
    assert result.returncode == 3, result.stderr[-2000:]
    zh, en = result.stderr.splitlines()[-2:]
    assert zh == "网关的工作进程启动失败（原因见上方日志），网关已停止。"
    assert en == "a gateway worker failed to start (the log above says why); the gateway stopped"


def _count_key_ring_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], list[int], int]:
    """A development gateway's environment on ``tmp_path`` with its key rings on disk, as after any earlier
    start; each read of the masking ring (a KEK unwrap) or of the audit-ref ring appended to the first list
    returned, and uvicorn.run replaced by one that builds the app (a factory named or given) and runs its
    lifespan, minus the socket: the gateway starts, answers (its status in the second list), stops."""
    import uvicorn
    from fastapi.testclient import TestClient
    from uvicorn.importer import import_from_string

    import gateway.keys
    from gateway.keys import load_audit_refs, load_masking_keyring
    from masking import KeyRing

    for name in [n for n in os.environ if n.startswith("GRASSROOTS_")]:
        monkeypatch.delenv(name)
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    port = free_port()
    env = {
        "GRASSROOTS_DATA_DIR": str(tmp_path / "var"),
        "GRASSROOTS_DATABASE_URL": url,
        "GRASSROOTS_DEV_IDP_ENABLED": "true",
        "GRASSROOTS_PORT": str(port),  # serve and demo set it; restored after the test
        "GRASSROOTS_CHECKPOINT_INTERVAL_S": "0",
        "GRASSROOTS_AUDIT_ARCHIVE_INTERVAL_S": "0",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    upgrade(url)
    load_masking_keyring(Settings())
    load_audit_refs(Settings())

    reads: list[str] = []
    real_from_json = KeyRing.from_json.__func__  # type: ignore[attr-defined]
    real_read_refs = gateway.keys._read_audit_ref_keys

    def counted(cls: type[KeyRing], kek: bytes, text: str) -> KeyRing:
        reads.append("masking")
        return real_from_json(cls, kek, text)  # type: ignore[no-any-return]

    def counted_refs(settings: Settings) -> gateway.keys.AuditRefKeys:
        reads.append("audit_ref")
        return real_read_refs(settings)

    monkeypatch.setattr(KeyRing, "from_json", classmethod(counted))
    monkeypatch.setattr(gateway.keys, "_read_audit_ref_keys", counted_refs)
    served: list[int] = []

    def run(app: object, **options: object) -> None:
        factory = import_from_string(app) if isinstance(app, str) else app
        assert options.get("factory") is True and callable(factory)
        with TestClient(factory()) as client:
            served.append(client.get("/healthz").status_code)

    monkeypatch.setattr(uvicorn, "run", run)
    return reads, served, port


def test_serve_reads_each_key_ring_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``serve`` checks the key rings before it starts (a KEK that does not open one is exit 2) and warns
    about a masking key older than dataset binding; a single-process gateway then serves with those same
    rings. It used to read the masking ring three times (the check, the warning, the app's start), each a
    KEK unwrap, and the audit-ref ring twice (the check, the app's start)."""
    from typer.testing import CliRunner

    from gateway.cli import app as grassroots

    reads, served, port = _count_key_ring_reads(tmp_path, monkeypatch)
    result = CliRunner().invoke(grassroots, ["serve", "--port", str(port)])
    assert result.exit_code == 0, result.output
    assert served == [200]
    assert sorted(reads) == ["audit_ref", "masking"]


def test_demo_reads_the_masking_key_ring_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo seals the registries' API keys with the masking ring and its gateway serves with it: it read
    the ring file (a KEK unwrap) once for each. The registries are not started here."""
    import signal

    from typer.testing import CliRunner

    import gateway.launch
    from gateway.cli import app as grassroots

    reads, served, port = _count_key_ring_reads(tmp_path, monkeypatch)
    monkeypatch.setattr(gateway.launch, "start_registry", lambda *args, **kwargs: None)
    monkeypatch.setattr(gateway.launch, "wait_healthy", lambda *args, **kwargs: None)
    monkeypatch.setattr(gateway.launch, "stop", lambda *args: None)
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    ports = [str(free_port()), str(free_port())]
    result = CliRunner().invoke(
        grassroots,
        ["demo", "--port", str(port), "--upstream-port", ports[0], "--person-house-port", ports[1]],
    )
    assert result.exit_code == 0, result.output
    assert served == [200]
    assert reads.count("masking") == 1


@pytest.mark.parametrize(
    "typed",
    [
        "serve --port 99999",
        "serve --port 0",
        "demo --port 70000",
        "demo --upstream-port 0",
        "demo --person-house-port 65536",
    ],
)
def test_a_port_that_does_not_exist_is_a_usage_error_not_a_traceback(tmp_path: Path, typed: str) -> None:
    """`serve --port 99999` (a digit too many) ended in the traceback of the port probe's bind():
    "OverflowError: bind(): port must be 0-65535". It is now refused before anything starts, exit 2, Chinese
    first, as GRASSROOTS_PORT=99999 already was."""
    from typer.testing import CliRunner

    from gateway.cli import app

    env = {"GRASSROOTS_DATA_DIR": str(tmp_path / "var"), "GRASSROOTS_DEV_IDP_ENABLED": "true"}
    option = typed.split()[1]
    result = CliRunner().invoke(app, typed.split(), env=env)
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.startswith(f"命令用法有误：{option} 的取值有误，须为不小于 1、不大于 65535 的整数。")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "var").exists()
