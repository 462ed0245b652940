"""A settings problem is a message a person can act on: it names the environment variable, says what is wrong
and what is allowed, Chinese first then English, exits 2, and shows no traceback, no pydantic URL and never
a secret's value. Checked by the settings themselves (so the app never starts on them) and by the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner, Result

from gateway.cli import app as grassroots
from gateway.settings import LOG_LEVELS, ConfigurationError, Settings

runner = CliRunner()
SECRET = "do-not-print-this-value"  # 23 characters: too short for production
#: As openssl rand -hex 20 prints: a patterned value ("x" * 40) is refused in production.
STRONG = "1553bb053a421bd8060bf16536a293d7b2ec353c"
STRONG_KEK = "0af83d4723f812406a9ac81e4f93140e1de435425a63184533cc20dd89a4b9bb"


def _serve(tmp_path: Path, **env: str) -> Result:
    """`grassroots serve` with ``env`` over an otherwise clean GRASSROOTS_ environment."""
    base: dict[str, str | None] = {
        "GRASSROOTS_DATA_DIR": str(tmp_path / "var"),
        "GRASSROOTS_DEV_IDP_ENABLED": "true",
        "GRASSROOTS_DATABASE_URL": None,
        "GRASSROOTS_OIDC_ISSUER": None,
        "GRASSROOTS_MODE": None,
        "GRASSROOTS_OIDC_ALGORITHMS": None,
        "GRASSROOTS_LOG_LEVEL": None,
        "GRASSROOTS_OIDC_ISSUER_JURISDICTIONS": None,
        "GRASSROOTS_HOST": None,
        "GRASSROOTS_PORT": None,
        "GRASSROOTS_KANON_K": None,
        "GRASSROOTS_KANON_MIN_RECORDS": None,
        "GRASSROOTS_MAX_PAGE_SIZE": None,
    }
    return runner.invoke(grassroots, ["serve", "--port", "1"], env={**base, **env})


@pytest.mark.parametrize(
    ("env", "zh", "en"),
    [
        (
            {"GRASSROOTS_MODE": "prod"},
            "GRASSROOTS_MODE：只能是 development、production 之一",
            "GRASSROOTS_MODE: must be one of development, production",
        ),
        (
            {"GRASSROOTS_OIDC_ALGORITHMS": '["HS256"]'},
            "GRASSROOTS_OIDC_ALGORITHMS：不允许的签名算法 ['HS256']（只接受非对称签名算法）；可选：",
            "GRASSROOTS_OIDC_ALGORITHMS: algorithms not allowed ['HS256'] (asymmetric signatures only)",
        ),
        (
            {"GRASSROOTS_OIDC_ALGORITHMS": "RS256"},  # not JSON: pydantic-settings cannot decode it
            "GRASSROOTS_OIDC_ALGORITHMS：无法解析取值：列表须写成 JSON",
            "GRASSROOTS_OIDC_ALGORITHMS: cannot parse the value: a list is written as JSON",
        ),
        (
            {"GRASSROOTS_OIDC_ISSUER_JURISDICTIONS": '["310151"]'},  # a list, not issuer -> codes
            "GRASSROOTS_OIDC_ISSUER_JURISDICTIONS：须为对象",
            "GRASSROOTS_OIDC_ISSUER_JURISDICTIONS: must be an object",
        ),
        (
            {"GRASSROOTS_OIDC_ISSUER_JURISDICTIONS": '{"https://idp.example": 310151'},  # not JSON
            "GRASSROOTS_OIDC_ISSUER_JURISDICTIONS：无法解析取值：须写成 JSON 对象（身份提供方地址 → 区划代码",
            "GRASSROOTS_OIDC_ISSUER_JURISDICTIONS: cannot parse the value: a JSON object (issuer URL -> list",
        ),
        (
            {"GRASSROOTS_OIDC_ISSUER_JURISDICTIONS": '{"http://127.0.0.1:1/dev-idp": ["31015"]}'},
            "GRASSROOTS_OIDC_ISSUER_JURISDICTIONS：区划代码须为 2、4、6、9 或 12 位数字",
            "GRASSROOTS_OIDC_ISSUER_JURISDICTIONS: division codes are 2, 4, 6, 9 or 12 ASCII digits",
        ),
        (
            {"GRASSROOTS_OIDC_ISSUER_JURISDICTIONS": '{"http://127.0.0.1:1/dev-idp": []}'},
            "GRASSROOTS_OIDC_ISSUER_JURISDICTIONS：每个身份提供方至少要列出一个区划代码",
            "GRASSROOTS_OIDC_ISSUER_JURISDICTIONS: list at least one division code",
        ),
        (
            # The development IdP serve --port 1 trusts is http://127.0.0.1:1/dev-idp: this names another.
            {"GRASSROOTS_OIDC_ISSUER_JURISDICTIONS": '{"http://127.0.0.1:1/dev-idp/": ["310151"]}'},
            "GRASSROOTS_OIDC_ISSUER_JURISDICTIONS：键须是所信任的身份提供方的地址（与令牌中的 iss "
            "完全一致）：http://127.0.0.1:1/dev-idp；未被信任的地址：http://127.0.0.1:1/dev-idp/",
            "GRASSROOTS_OIDC_ISSUER_JURISDICTIONS: the keys must be the trusted identity provider's URL",
        ),
        (
            {"GRASSROOTS_LOG_LEVEL": "LOUD"},
            "GRASSROOTS_LOG_LEVEL：未知的日志级别；可选：CRITICAL, ERROR, WARNING, INFO, DEBUG, TRACE",
            "GRASSROOTS_LOG_LEVEL: unknown log level; allowed: CRITICAL, ERROR, WARNING, INFO, DEBUG, TRACE",
        ),
        (
            {"GRASSROOTS_PORT": "eighty"},
            "GRASSROOTS_PORT：须为整数",
            "GRASSROOTS_PORT: must be a whole number",
        ),
        (
            {"GRASSROOTS_KANON_K": "1"},
            "GRASSROOTS_KANON_K：不能小于 2",
            "GRASSROOTS_KANON_K: must be at least 2",
        ),
        # The re-identification guard checks pages from GRASSROOTS_KANON_MIN_RECORDS records up: above the
        # page limit it would never run (silently off); below k every checked page would be refused.
        (
            {"GRASSROOTS_KANON_MIN_RECORDS": "500"},
            "GRASSROOTS_KANON_MIN_RECORDS：须在 GRASSROOTS_KANON_K（3）与每页上限 "
            "GRASSROOTS_MAX_PAGE_SIZE（100）之间",
            "GRASSROOTS_KANON_MIN_RECORDS: must be between GRASSROOTS_KANON_K (3) and the page limit",
        ),
        (
            {"GRASSROOTS_KANON_MIN_RECORDS": "2", "GRASSROOTS_KANON_K": "5"},
            "GRASSROOTS_KANON_MIN_RECORDS：须在 GRASSROOTS_KANON_K（5）与每页上限",
            "a page of fewer than k records can never be k-anonymous and would always be refused",
        ),
        (
            {"GRASSROOTS_DATA_FAST_LANE": "maybe"},
            "GRASSROOTS_DATA_FAST_LANE：须为 true 或 false",
            "GRASSROOTS_DATA_FAST_LANE: must be true or false",
        ),
        (
            {"GRASSROOTS_CHECKPOINT_INTERVAL_S": "often"},  # the supervision area's own settings
            "GRASSROOTS_CHECKPOINT_INTERVAL_S：须为数字",
            "GRASSROOTS_CHECKPOINT_INTERVAL_S: must be a number",
        ),
        # A negative, NaN or infinite interval would switch signed checkpoints, archiving or the policy
        # refresh off as quietly as 0 does (or, for the refresh, spin): refused, naming the variable.
        (
            {"GRASSROOTS_CHECKPOINT_INTERVAL_S": "-300"},
            "GRASSROOTS_CHECKPOINT_INTERVAL_S：不能小于 0",
            "GRASSROOTS_CHECKPOINT_INTERVAL_S: must be at least 0",
        ),
        (
            {"GRASSROOTS_CHECKPOINT_INTERVAL_S": "nan"},
            "GRASSROOTS_CHECKPOINT_INTERVAL_S：须为有限的数字（不能是 inf 或 nan）",
            "GRASSROOTS_CHECKPOINT_INTERVAL_S: must be a finite number (not inf or nan)",
        ),
        (
            {"GRASSROOTS_AUDIT_ARCHIVE_INTERVAL_S": "inf"},
            "GRASSROOTS_AUDIT_ARCHIVE_INTERVAL_S：须为有限的数字",
            "GRASSROOTS_AUDIT_ARCHIVE_INTERVAL_S: must be a finite number",
        ),
        (
            {"GRASSROOTS_POLICY_REFRESH_INTERVAL_S": "inf"},  # a revocation would never reach the process
            "GRASSROOTS_POLICY_REFRESH_INTERVAL_S：须为有限的数字",
            "GRASSROOTS_POLICY_REFRESH_INTERVAL_S: must be a finite number",
        ),
        (
            {"GRASSROOTS_POLICY_REFRESH_INTERVAL_S": "0"},
            "GRASSROOTS_POLICY_REFRESH_INTERVAL_S：须大于 0",
            "GRASSROOTS_POLICY_REFRESH_INTERVAL_S: must be greater than 0",
        ),
        (
            {"GRASSROOTS_UPSTREAM_TIMEOUT_S": "-1"},
            "GRASSROOTS_UPSTREAM_TIMEOUT_S：须大于 0",
            "GRASSROOTS_UPSTREAM_TIMEOUT_S: must be greater than 0",
        ),
        # An hour of clock leeway would take tokens as good for an hour after they expired (RFC 7519
        # §4.1.4: a few minutes at most); negative leeway refuses every token at its edges.
        (
            {"GRASSROOTS_OIDC_LEEWAY_S": "3600"},
            "GRASSROOTS_OIDC_LEEWAY_S：不能大于 300",
            "GRASSROOTS_OIDC_LEEWAY_S: must be at most 300",
        ),
        (
            {"GRASSROOTS_OIDC_LEEWAY_S": "-5"},
            "GRASSROOTS_OIDC_LEEWAY_S：不能小于 0",
            "GRASSROOTS_OIDC_LEEWAY_S: must be at least 0",
        ),
        (
            {"GRASSROOTS_OIDC_ISSUER": "idp.county.gov.cn"},  # no scheme: every sign-in would answer 503
            "GRASSROOTS_OIDC_ISSUER：须为以 https:// 或 http:// 开头的完整地址",
            "GRASSROOTS_OIDC_ISSUER: must be a full URL starting with https:// or http://",
        ),
        (
            {"GRASSROOTS_PUBLIC_URL": "gateway.county.gov.cn:8000"},  # its own example, not an IdP's
            "GRASSROOTS_PUBLIC_URL：须为以 https:// 或 http:// 开头的完整地址，例如 https://gateway.example.gov.cn\n",
            "GRASSROOTS_PUBLIC_URL: must be a full URL starting with https:// or http://, e.g. "
            "https://gateway.example.gov.cn\n",
        ),
        (
            {
                "GRASSROOTS_OTEL_EXPORTER": "otlp",
                "GRASSROOTS_OTEL_ENDPOINT": "collector:4318",
            },  # exported nothing
            "GRASSROOTS_OTEL_ENDPOINT：须为以 https:// 或 http:// 开头的完整地址，例如 http://collector:4318",
            "GRASSROOTS_OTEL_ENDPOINT: must be a full URL starting with https:// or http://, e.g. "
            "http://collector:4318",
        ),
        # A number with its unit: the unit is in the variable's name, the value is the number alone.
        (
            {"GRASSROOTS_CHECKPOINT_INTERVAL_S": "300s"},
            "GRASSROOTS_CHECKPOINT_INTERVAL_S：须为数字，以秒计，不带单位（例如 300）",
            "GRASSROOTS_CHECKPOINT_INTERVAL_S: must be a number, in seconds without a unit (e.g. 300)",
        ),
        (
            {"GRASSROOTS_COMPLAINT_DUE_DAYS": "15天"},
            "GRASSROOTS_COMPLAINT_DUE_DAYS：须为整数，以天计，不带单位（例如 15）",
            "GRASSROOTS_COMPLAINT_DUE_DAYS: must be a whole number, in days without a unit (e.g. 15)",
        ),
        (
            {"GRASSROOTS_MAX_BODY_BYTES": "1MB"},
            "GRASSROOTS_MAX_BODY_BYTES：须为整数，以字节计，不带单位（例如 1048576）",
            "GRASSROOTS_MAX_BODY_BYTES: must be a whole number, in bytes without a unit (e.g. 1048576)",
        ),
        (
            {"GRASSROOTS_ADMISSION_TOKEN_TTL_S": "5m"},
            "GRASSROOTS_ADMISSION_TOKEN_TTL_S：须为整数，以秒计，不带单位（例如 300）",
            "GRASSROOTS_ADMISSION_TOKEN_TTL_S: must be a whole number, in seconds without a unit (e.g. 300)",
        ),
        (
            {"GRASSROOTS_PORT": "8000s"},  # no unit in the name: the plain words
            "GRASSROOTS_PORT：须为整数\n",
            "GRASSROOTS_PORT: must be a whole number\n",
        ),
        (
            {"GRASSROOTS_MAX_PAGE_SIZE": "0"},  # was named as a GRASSROOTS_KANON_MIN_RECORDS problem
            "GRASSROOTS_MAX_PAGE_SIZE：不能小于 1\n",
            "GRASSROOTS_MAX_PAGE_SIZE: must be at least 1\n",
        ),
        (
            {"GRASSROOTS_DATABASE_URL": ""},  # ran on a new SQLite file instead of the database meant
            "GRASSROOTS_DATABASE_URL：不能为空：写入数据库地址，例如 postgresql+psycopg://user@host/db",
            "GRASSROOTS_DATABASE_URL: must not be empty: write the database URL",
        ),
        (
            {"GRASSROOTS_AUDIT_HMAC_KEY": ""},  # development: a Python traceback when the refs were opened
            "GRASSROOTS_AUDIT_HMAC_KEY：至少需要 16 个字符（生产模式下至少 32 个）：写入 openssl",
            "GRASSROOTS_AUDIT_HMAC_KEY: must be at least 16 characters (32 in production mode)",
        ),
        (
            {"GRASSROOTS_HOST": ""},  # uvicorn bound every interface (0.0.0.0 and ::), not loopback
            "GRASSROOTS_HOST：不能为空（空值会监听本机所有网卡）：写入监听地址，例如 127.0.0.1",
            "GRASSROOTS_HOST: must not be empty (empty would listen on every interface)",
        ),
        # Both stopped serve with a traceback (the verifier, the audit refs) instead of naming the variable.
        (
            {"GRASSROOTS_OIDC_AUDIENCE": " "},
            "GRASSROOTS_OIDC_AUDIENCE：不能为空：写入身份提供方签发的登录凭证中的受众（aud）",
            "GRASSROOTS_OIDC_AUDIENCE: must not be empty: write the audience (aud)",
        ),
        (
            {"GRASSROOTS_AUDIT_HMAC_KEY_ID": "key 2027/01"},
            "GRASSROOTS_AUDIT_HMAC_KEY_ID：须为 1 到 16 个英文字母、数字、“_”或“-”，例如 k1",
            "GRASSROOTS_AUDIT_HMAC_KEY_ID: must be 1 to 16 ASCII letters, digits, '_' or '-', e.g. k1",
        ),
        (
            {"GRASSROOTS_ADMISSION_TOKEN_TTL_S": "5"},  # the admission area's (prefix GRASSROOTS_ADMISSION_)
            "GRASSROOTS_ADMISSION_TOKEN_TTL_S：不能小于 30",
            "GRASSROOTS_ADMISSION_TOKEN_TTL_S: must be at least 30",
        ),
    ],
)
def test_serve_names_the_variable_what_is_wrong_and_what_is_allowed(
    tmp_path: Path, env: dict[str, str], zh: str, en: str
) -> None:
    result = _serve(tmp_path, **env)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("配置有误，请修改以下环境变量后重试：\n")
    chinese, english = result.stderr.split("configuration error; fix these environment variables")
    assert zh in chinese and en in english
    assert "Traceback" not in result.stderr and "pydantic" not in result.stderr
    assert "validation error" not in result.stderr
    assert not (tmp_path / "var").exists()  # refused before anything was created


@pytest.mark.parametrize(
    "weak",
    [
        "a" * 64,  # one character
        "0" * 64,  # the hex of 32 zero bytes
        "0123456789abcdef" * 4,  # one run repeated: 16 distinct characters, still guessable
        "abcabcabcabcabcabcabcabcabcabcabcabc",
        ("0123456789abcde" * 5)[:64],  # a run typed until 64 hex digits: its last copy cut short
        "CHANGE_ME_CHANGE_ME_CHANGE_ME_CHANGE_ME",  # a placeholder repeated to pass the length check
        "ababababababababababababababababababababababababababababab1",  # few distinct characters
    ],
)
def test_production_refuses_a_patterned_secret_never_printing_it(tmp_path: Path, weak: str) -> None:
    """A hand-typed key ("aaaa…", "0000…") passed the placeholder and length checks: an audit HMAC key or a
    masking KEK anyone can guess would pseudonymise and encrypt residents' data for nothing."""
    result = _serve(
        tmp_path,
        GRASSROOTS_MODE="production",
        GRASSROOTS_DEV_IDP_ENABLED="false",
        GRASSROOTS_AUDIT_HMAC_KEY=weak,
        GRASSROOTS_MASKING_KEK=weak if len(weak) == 64 else STRONG_KEK,
    )
    assert result.exit_code == 2
    chinese, english = result.stderr.split("configuration error; fix these environment variables")
    assert "GRASSROOTS_AUDIT_HMAC_KEY：生产模式下不能使用有规律的弱密钥" in chinese
    assert "GRASSROOTS_AUDIT_HMAC_KEY: must not be a patterned value in production mode" in english
    assert "openssl rand -hex 32" in english
    assert ("GRASSROOTS_MASKING_KEK: must not be a patterned value" in english) == (len(weak) == 64)
    assert weak not in result.stderr and "Traceback" not in result.stderr


def test_production_takes_a_random_secret(tmp_path: Path) -> None:
    result = _serve(
        tmp_path,
        GRASSROOTS_MODE="production",
        GRASSROOTS_DEV_IDP_ENABLED="false",
        GRASSROOTS_AUDIT_HMAC_KEY=STRONG,
        GRASSROOTS_MASKING_KEK=STRONG_KEK,
    )
    assert "patterned" not in result.stderr and "弱密钥" not in result.stderr
    assert "GRASSROOTS_AUDIT_HMAC_KEY" not in result.stderr and "GRASSROOTS_MASKING_KEK" not in result.stderr


def test_production_guards_name_every_variable_in_chinese_then_english_never_the_secret(
    tmp_path: Path,
) -> None:
    result = _serve(
        tmp_path,
        GRASSROOTS_MODE="production",
        GRASSROOTS_DEV_IDP_ENABLED="false",
        GRASSROOTS_AUDIT_HMAC_KEY=SECRET,
        GRASSROOTS_MASKING_KEK="changeme",
    )
    assert result.exit_code == 2
    chinese, english = result.stderr.split("configuration error; fix these environment variables")
    assert "GRASSROOTS_OIDC_ISSUER：生产模式下必须设置" in chinese
    assert "GRASSROOTS_AUDIT_HMAC_KEY：至少需要 32 个字符" in chinese
    assert "GRASSROOTS_MASKING_KEK：生产模式下必须设为真实密钥" in chinese
    assert "GRASSROOTS_AUDIT_HMAC_KEY: must be at least 32 characters" in english
    assert "GRASSROOTS_MASKING_KEK: must be set to a real secret in production mode" in english
    for name in ("SERVICE_KEY_PATH", "CHECKPOINT_KEY_PATH", "CHECKPOINT_DIR"):
        assert f"GRASSROOTS_{name}：生产模式下必须设置" in chinese
        assert f"GRASSROOTS_{name}: is required in production mode" in english
    # Each says what to write, not only that something is missing.
    assert "GRASSROOTS_AUDIT_HMAC_KEY：至少需要 32 个字符：写入 openssl rand -hex 32 的输出" in chinese
    assert (
        "GRASSROOTS_MASKING_KEK: must be set to a real secret in production mode (it is unset or a "
        "placeholder): write what openssl rand -hex 32 prints" in english
    )
    make_key = "openssl genpkey -algorithm ed25519 -out FILE && chmod 600 FILE"
    for name in ("SERVICE_KEY_PATH", "CHECKPOINT_KEY_PATH"):
        assert f"GRASSROOTS_{name}：生产模式下必须设置：" in chinese and "Ed25519 私钥文件的路径" in chinese
        line = next(line for line in english.splitlines() if f"GRASSROOTS_{name}:" in line)
        assert "the path of the Ed25519 private key" in line and make_key in line
    assert "GRASSROOTS_CHECKPOINT_DIR：生产模式下必须设置：存放签名审计检查点的目录" in chinese
    assert "GRASSROOTS_CHECKPOINT_DIR: is required in production mode: the append-only directory" in english
    assert SECRET not in result.stderr and "changeme" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("algorithms", [["HS256"], ["RS256", "none"], []])
def test_settings_refuse_symmetric_none_or_no_algorithms(algorithms: list[str]) -> None:
    # RFC 8725 §3.1/§3.2: refused by the settings, so the app is never built with them.
    with pytest.raises(ValidationError, match="oidc_algorithms"):
        Settings(oidc_algorithms=algorithms)


def test_settings_accept_asymmetric_algorithms_and_any_case_log_level() -> None:
    settings = Settings(oidc_algorithms=["ES256", "EdDSA"], log_level="warning")
    assert settings.oidc_algorithms == ["ES256", "EdDSA"]
    assert settings.log_level == "WARNING" and settings.log_level in LOG_LEVELS


def test_an_issuers_jurisdiction_is_kept_as_the_prefixes_of_its_division_codes() -> None:
    issuer = "https://idp.example.gov.cn/realms/chongming"
    codes = ["310151101000", "310151101", "3101", "310100", "310151101201"]
    settings = Settings(oidc_issuer=issuer, oidc_issuer_jurisdictions={issuer: codes})
    assert settings.issuer_org_prefixes == ("3101", "310151101", "310151101201")
    # Nothing configured: the issuer vouches for any organisation, as before.
    assert Settings(oidc_issuer=issuer).issuer_org_prefixes is None


@pytest.mark.parametrize("level", ["LOUD", "", "verbose"])
def test_settings_refuse_an_unknown_log_level(level: str) -> None:
    with pytest.raises(ValidationError, match="log_level"):
        Settings(log_level=level)


def test_a_configuration_error_says_each_problem_in_both_languages() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings(
            mode="production",
            oidc_issuer="https://idp.example",
            audit_hmac_key=STRONG,
            masking_kek=STRONG_KEK,
        )  # type: ignore[arg-type]
    message = caught.value.bilingual()
    zh, en = message.split("configuration error")
    assert "GRASSROOTS_SERVICE_KEY_PATH：生产模式下必须设置" in zh
    assert "GRASSROOTS_SERVICE_KEY_PATH: is required in production mode" in en
    assert STRONG not in message


def test_dev_token_with_a_bad_setting_is_a_message_not_a_traceback() -> None:
    result = runner.invoke(grassroots, ["dev-token", "cadre_a"], env={"GRASSROOTS_MODE": "prod"})
    assert result.exit_code == 2
    assert result.stderr.startswith("配置有误") and "GRASSROOTS_MODE" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("variable", "content", "zh", "en"),
    [
        # A file that cannot be read at all: test_serve_names_the_one_policy_file_setting_it_cannot_read.
        (
            "GRASSROOTS_PERMISSIONS_PATH",
            "p, cadre, residents, verfy\n",
            "未知的岗位 'cadre'",
            "unknown role 'cadre'",
        ),
    ],
)
def test_serve_reads_the_policy_files_before_it_starts(
    tmp_path: Path, variable: str, content: str | None, zh: str, en: str
) -> None:
    """Missing or invalid, a policy file was a traceback from inside the server (exit 3)."""
    path = tmp_path / "policy-file"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    result = _serve(tmp_path, **{variable: str(path)})
    assert result.exit_code == 2, (result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.startswith("策略文件有误，网关未启动（")
    chinese, english = result.stderr.split("the gateway did not start: a policy file is wrong")
    assert f"{path}:" in chinese and zh in chinese
    assert f"{path}:" in english and en in english
    assert not (tmp_path / "var").exists()


@pytest.mark.parametrize(
    ("host", "zh", "en"),
    [
        # TEST-NET-1 (RFC 5737): never an address of this host; only bound, nothing is sent to it.
        ("192.0.2.1", "本机没有这个地址，请检查 --host 或 GRASSROOTS_HOST", "this host has no such address"),
        ("no-such-host.invalid", "本机没有这个地址", "check --host or GRASSROOTS_HOST"),
    ],
)
def test_serve_on_an_address_this_host_lacks_points_at_the_host_not_the_port(
    tmp_path: Path, host: str, zh: str, en: str
) -> None:
    """It said "the port may be in use" for every reason a bind fails."""
    from gateway.db import upgrade

    (tmp_path / "var").mkdir()
    upgrade(f"sqlite:///{tmp_path / 'var' / 'gateway.db'}")
    result = runner.invoke(
        grassroots,
        ["serve", "--host", host, "--port", "8000"],
        env={
            "GRASSROOTS_DATA_DIR": str(tmp_path / "var"),
            "GRASSROOTS_DEV_IDP_ENABLED": "true",
            "GRASSROOTS_DATABASE_URL": None,
            "GRASSROOTS_MODE": None,
            "GRASSROOTS_HOST": None,  # serve --host sets it for its workers: restored after the run
            "GRASSROOTS_PORT": None,
        },
    )
    assert result.exit_code == 2, (result.stderr, result.exception)
    chinese, english = result.stderr.splitlines()
    assert chinese.startswith(f"无法监听 {host}:8000（") and zh in chinese
    assert english.startswith(f"Cannot listen on {host}:8000 (") and en in english
    assert "in use" not in english


@pytest.mark.parametrize(
    "variable",
    [
        "GRASSROOTS_ANOMALY_RULES_PATH",
        "GRASSROOTS_DIVISION_NAMES_FILE",
        "GRASSROOTS_ADMISSION_CONFIG_PATH",
        "GRASSROOTS_ADMISSION_VILLAGES_FILE",
        "GRASSROOTS_HOLIDAYS_FILE",
    ],
)
def test_serve_refuses_a_data_file_setting_that_names_no_readable_file(tmp_path: Path, variable: str) -> None:
    """Read only when first asked for, a missing file once answered every anomaly query, monthly report or
    burden view with 500 internal_error while the gateway looked healthy."""
    missing = tmp_path / "no-such-file"
    result = _serve(tmp_path, **{variable: str(missing)})
    assert result.exit_code == 2, (result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    zh, en = result.stderr.splitlines()
    assert zh.startswith(f"无法读取 {variable} 指定的文件 {missing}（")
    assert en.startswith(f"cannot read the file {missing} that {variable} names (")
    assert not (tmp_path / "var").exists()


def test_serve_refuses_a_holidays_file_it_cannot_read_as_a_schedule(tmp_path: Path) -> None:
    """A holidays file with a misspelt key would refuse every complaint once the gateway ran (no deadline
    is counted without the schedule): refused at start, saying where, Chinese first."""
    holidays = tmp_path / "holidays.toml"
    holidays.write_text('[2027]\nholiday = ["2027-01-01"]\n', encoding="utf-8")
    result = _serve(tmp_path, GRASSROOTS_HOLIDAYS_FILE=str(holidays))
    assert result.exit_code == 2, (result.stderr, result.exception)
    zh, en = result.stderr.splitlines()
    assert zh.startswith(f"节假日文件 {holidays} 的 [2027] 只能有 holidays 和 workdays")
    assert en.startswith(f"[2027] in the holidays file {holidays} takes holidays and workdays only")
    assert not (tmp_path / "var").exists()


@pytest.mark.parametrize(
    "variable",
    [
        "GRASSROOTS_DATA_DIR",
        "GRASSROOTS_CHECKPOINT_DIR",
        "GRASSROOTS_CHECKPOINT_KEY_PATH",
        "GRASSROOTS_SERVICE_KEY_PATH",
        "GRASSROOTS_SCENARIOS_PATH",
        "GRASSROOTS_AUDIT_ARCHIVE_DIR",
        "GRASSROOTS_ANOMALY_RULES_PATH",
        "GRASSROOTS_ADMISSION_TOKEN_KEY_PATH",
        "GRASSROOTS_ADMISSION_VILLAGES_FILE",
    ],
)
def test_serve_refuses_a_path_setting_left_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    """An empty path (``GRASSROOTS_CHECKPOINT_DIR=``, a line of a unit file left blank) is the current
    directory: the gateway started and wrote its signed checkpoints or archives wherever it was started
    from, or named ``.`` as "the file" it could not read. Refused now, naming the variable and saying to
    unset it."""
    monkeypatch.chdir(tmp_path)
    result = _serve(tmp_path, **{variable: " "})
    assert result.exit_code == 2, (result.stderr, result.exception)
    chinese, english = result.stderr.split("configuration error; fix these environment variables")
    zh = "不能为空（空值会被当作当前目录）：请写出路径，或删除该变量（unset）以使用默认值"
    assert f"{variable}：{zh}" in chinese
    assert f"{variable}: must not be empty (an empty value would mean the current directory)" in english
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing made, here or under var/


@pytest.mark.parametrize(
    "variable", ["GRASSROOTS_POLICY_MODEL_PATH", "GRASSROOTS_PERMISSIONS_PATH", "GRASSROOTS_SCENARIOS_PATH"]
)
def test_serve_names_the_one_policy_file_setting_it_cannot_read(tmp_path: Path, variable: str) -> None:
    """It said "a policy file is wrong (GRASSROOTS_POLICY_MODEL_PATH, GRASSROOTS_PERMISSIONS_PATH,
    GRASSROOTS_SCENARIOS_PATH)" and "FileNotFoundError": now the one variable and the reason, Chinese
    first."""
    missing = tmp_path / "no-such-file"
    result = _serve(tmp_path, **{variable: str(missing)})
    assert result.exit_code == 2, (result.stderr, result.exception)
    zh, en = result.stderr.splitlines()
    assert zh.startswith(f"无法读取 {variable} 指定的策略文件 {missing}（No such file or directory）：")
    assert en.startswith(f"cannot read the policy file {missing} that {variable} names (No such file")
    assert "FileNotFoundError" not in result.stderr
    assert not (tmp_path / "var").exists()
