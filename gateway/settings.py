"""Gateway configuration (pydantic-settings, environment prefix ``GRASSROOTS_``).

Nothing here connects to anything: settings are plain values, read once by the CLI or the app factory.
Secrets are ``SecretStr`` so they never show in a repr or a log line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from gateway.validation_hints import validation_hint

ENV_PREFIX = "GRASSROOTS_"
#: Where ``grassroots serve`` listens unless told otherwise, and so where client commands look for it.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
#: Values that betray an unconfigured secret; refused outside development mode.
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "dev", "development", "placeholder"})
# A key of random bytes written as hex or base64 (openssl rand -hex 32: 64 characters drawn from 16) has
# fewer than this many distinct characters with a probability below 10^-20; a typed one ("aaaa…",
# "0000…", "abab…") has.
_WEAK_SECRET_DISTINCT: Final = 8


def patterned_secret(value: str) -> bool:
    """True for a secret typed by hand rather than drawn at random: few distinct characters, or one short
    run repeated ("0123456789abcdef" four times, or a run typed over and over until the length was reached,
    its last copy cut short). Such a key passes a length check and guards nothing."""
    text = value.strip()
    if len(set(text)) < _WEAK_SECRET_DISTINCT:
        return True
    # One run at least twice over: the text shifted by the run's length is the text less that run.
    return any(text[period:] == text[:-period] for period in range(1, len(text) // 2 + 1))


#: The levels uvicorn and the standard library both know (TRACE is uvicorn's, below DEBUG).
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "TRACE")


_MAKE_KEY = (
    "生成：openssl genpkey -algorithm ed25519 -out 文件 && chmod 600 文件",
    "make one: openssl genpkey -algorithm ed25519 -out FILE && chmod 600 FILE",
)
#: The paths production needs set (made under GRASSROOTS_DATA_DIR in development): what each names.
_PRODUCTION_PATHS = (
    (
        "service_key_path",
        f"网关调用部门系统时签名所用的 Ed25519 私钥文件的路径（{_MAKE_KEY[0]}）",
        f"the path of the Ed25519 private key the gateway signs its calls to departmental systems with "
        f"({_MAKE_KEY[1]})",
    ),
    (
        "checkpoint_key_path",
        f"签署审计检查点的 Ed25519 私钥文件的路径，放在数据库主机之外（{_MAKE_KEY[0]}）",
        f"the path of the Ed25519 private key signing audit checkpoints, kept off the database host "
        f"({_MAKE_KEY[1]})",
    ),
    (
        "checkpoint_dir",
        "存放签名审计检查点的目录（只追加，例如 /var/lib/grassroots/checkpoints）",
        "the append-only directory for signed audit checkpoints (e.g. /var/lib/grassroots/checkpoints)",
    ),
)


#: What each URL setting looks like, in the words that refuse one without a scheme.
_URL_EXAMPLES = {
    "oidc_issuer": "https://idp.example.gov.cn/realms/county",
    "public_url": "https://gateway.example.gov.cn",
    "otel_endpoint": "http://collector:4318",
}


class RunMode(StrEnum):
    development = "development"
    production = "production"


@dataclass(frozen=True)
class SettingProblem:
    """One environment variable that cannot be used: which, and what is wrong and allowed (never its value,
    which may be a secret)."""

    variable: str
    zh: str
    en: str


@dataclass(frozen=True)
class IssuerTrust:
    """One identity provider whose access tokens the gateway accepts: its issuer URL (exactly its tokens'
    ``iss``), the audience they must name, and the division-code prefixes of the organisations it may sign
    users in for (``None``: any organisation). ``qualifies_subjects``: its users' ids are ``<issuer>#<sub>``
    (each of GRASSROOTS_OIDC_ISSUERS), not the bare ``sub`` (GRASSROOTS_OIDC_ISSUER), so that one ``sub``
    at two providers is two users."""

    issuer: str
    audience: str
    org_prefixes: tuple[str, ...] | None
    qualifies_subjects: bool = False


class ConfigurationError(Exception):
    """Settings that cannot be used; each problem names the environment variable to fix."""

    def __init__(self, *problems: SettingProblem) -> None:
        super().__init__("; ".join(f"{p.variable}: {p.en}" for p in problems))
        self.problems = problems

    def bilingual(self) -> str:
        """The message for a person: every problem in Chinese, then every problem in English."""
        zh = "\n".join(f"  {p.variable}：{p.zh}" for p in self.problems)
        en = "\n".join(f"  {p.variable}: {p.en}" for p in self.problems)
        return (
            f"配置有误，请修改以下环境变量后重试：\n{zh}\n"
            f"configuration error; fix these environment variables and try again:\n{en}"
        )


class InvalidSetting(ValueError):
    """Raised by a field validator: what is wrong with the value and what is allowed, in both languages."""

    def __init__(self, zh: str, en: str) -> None:
        super().__init__(en)
        self.zh = zh
        self.en = en


def refuse_blank_path(value: Any) -> Any:
    """A path setting's value before it is read: an empty one (``GRASSROOTS_CHECKPOINT_DIR=``, a variable
    left blank in a unit file) is refused. Read as a path it is the current directory, so the gateway
    started and wrote its signed checkpoints, archives or database wherever it was started from."""
    if isinstance(value, str) and not value.strip():
        raise InvalidSetting(
            "不能为空（空值会被当作当前目录）：请写出路径，或删除该变量（unset）以使用默认值",
            "must not be empty (an empty value would mean the current directory): write the path, or "
            "unset the variable for the default",
        )
    return value


def configuration_error(exc: ValidationError | SettingsError, prefix: str = ENV_PREFIX) -> ConfigurationError:
    """Turn pydantic's report into one problem per environment variable (``<prefix><FIELD>``).

    Only the error's kind and limits are used, never its input: the value may be a secret."""
    if isinstance(exc, SettingsError):
        # pydantic-settings could not decode a complex value (a list) from the environment.
        found = re.search(r'field "(\w+)"', str(exc))
        variable = f"{prefix}{found.group(1).upper()}" if found else f"{prefix}*"
        zh, en = (
            '列表须写成 JSON，例如 \'["RS256", "ES256"]\'',
            'a list is written as JSON, e.g. \'["RS256", "ES256"]\'',
        )
        if variable == f"{prefix}OIDC_ISSUERS":
            example = (
                '\'[{"issuer": "https://idp.example.gov.cn/realms/county", "jurisdiction": ["310151"]}]\''
            )
            zh = f"须写成 JSON 列表（每个身份提供方一个对象），例如 {example}"
            en = f"a JSON list (one object per identity provider) is expected, e.g. {example}"
        if variable == f"{prefix}OIDC_ISSUER_JURISDICTIONS":
            example = '\'{"https://idp.example.gov.cn/realms/county": ["310151"]}\''
            zh = f"须写成 JSON 对象（身份提供方地址 → 区划代码列表），例如 {example}"
            en = f"a JSON object (issuer URL -> list of division codes) is expected, e.g. {example}"
        return ConfigurationError(
            SettingProblem(variable, f"无法解析取值：{zh}", f"cannot parse the value: {en}")
        )
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        field = str(error["loc"][0]) if error["loc"] else "*"
        zh, en = _explain(error)
        unit = next((u for suffix, u in _UNITS.items() if field.endswith(suffix)), None)
        if unit is not None and error["type"] in ("int_parsing", "float_parsing"):
            # "300s", "1d", "15天", "1MB": the unit is in the name, the value is the number alone.
            zh, en = (
                f"{zh}，以{unit[0]}计，不带单位（例如 {unit[2]}）",
                f"{en}, in {unit[1]} without a unit (e.g. {unit[2]})",
            )
        problems.append(SettingProblem(f"{prefix}{field.upper()}", zh, en))
    return ConfigurationError(*problems)


#: A setting's unit, by its name's ending: (Chinese, English, an example of the number alone).
_UNITS = {
    "_s": ("秒", "seconds", "300"),
    "_days": ("天", "days", "15"),
    "_years": ("年", "years", "3"),
    "_bytes": ("字节", "bytes", "1048576"),
}


def _explain(error: Any) -> tuple[str, str]:
    # A validator's own words first; then the hint a request parameter gets for the same mistake (one
    # table, gateway.validation_hints); pydantic's message only for a kind that table does not know.
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, InvalidSetting):
        return cause.zh, cause.en
    return validation_hint(error) or ("取值无效", f"invalid value ({error['msg']})")


class GatewayAddress(BaseSettings):
    """Where the gateway listens (``GRASSROOTS_HOST``/``GRASSROOTS_PORT``), read on its own: client commands
    find the gateway here, without needing the server's other settings (or its secrets) to be valid."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    host: str = Field(DEFAULT_HOST, description="address `grassroots serve` listens on")
    port: int = Field(DEFAULT_PORT, ge=1, le=65535, description="port `grassroots serve` listens on")

    @field_validator("host")
    @classmethod
    def _host_given(cls, value: str) -> str:
        # Empty, uvicorn bound every interface (0.0.0.0 and ::): a variable left blank for "the default"
        # put the gateway on the network instead of loopback.
        if not value.strip():
            raise InvalidSetting(
                f"不能为空（空值会监听本机所有网卡）：写入监听地址，例如 {DEFAULT_HOST}（只在本机）或 "
                f"0.0.0.0（所有网卡），或删除该变量以使用默认值 {DEFAULT_HOST}",
                f"must not be empty (empty would listen on every interface): write the address to listen "
                f"on, e.g. {DEFAULT_HOST} (this host only) or 0.0.0.0 (every interface), or unset the "
                f"variable for the default {DEFAULT_HOST}",
            )
        return value.strip()

    @property
    def local_url(self) -> str:
        """The base URL a client on this host reaches the gateway at (a wildcard bind is reached on
        loopback)."""
        host = {"": DEFAULT_HOST, "0.0.0.0": DEFAULT_HOST, "::": "::1"}.get(self.host, self.host)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # RFC 3986 §3.2.2: an IPv6 literal in a URL is bracketed
        return f"http://{host}:{self.port}"


def tls_or_loopback(url: str) -> bool:
    """An https URL, or an http one on this host (a loopback address: nothing travels a network). The one
    rule for every address the gateway trusts in production: the OIDC issuer and admitted systems."""
    from ipaddress import ip_address
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(GatewayAddress):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    mode: RunMode = Field(RunMode.development, description="development | production")
    data_dir: Path = Field(Path("var"), description="where the SQLite file, keys and checkpoints live")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite:///<data_dir>/gateway.db (WAL mode)"
    )
    public_url: str | None = Field(None, description="base URL the gateway is reached at")

    # SSO (OIDC resource server).
    oidc_issuer: str | None = Field(None, description="issuer URL; discovery at <issuer>/.well-known/...")
    oidc_audience: str = "grassroots-gateway"
    oidc_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "PS256", "ES256", "EdDSA"])
    # RFC 7519 §4.1.4: leeway for clock skew is "usually no more than a few minutes". Bounded, so that no
    # setting (an hour typed in seconds, say) makes expired tokens good for hours; negative would refuse
    # valid ones.
    oidc_leeway_s: int = Field(30, ge=0, le=300, description="clock leeway for exp/nbf/iat, 0 to 300 s")
    oidc_max_token_lifetime_s: int = Field(
        86_400,
        ge=60,
        description="the longest access-token lifetime the IdP issues: how long a user's revoked sessions "
        "are remembered (`revoke-sessions`); at least the IdP's access-token lifetime",
    )
    # How long a fetched key set of the identity providers is trusted before it is fetched again (a key a
    # provider removed stops being accepted then). Unset: as long as each provider's caching headers say
    # (Cache-Control max-age), 5 minutes when they say nothing; bounded either way (gateway.auth.oidc).
    oidc_jwks_lifetime_s: int | None = Field(
        None,
        ge=60,
        le=3600,
        description="how long a provider's fetched key set is used before it is fetched again, 60 to "
        "3600 s; unset: as its Cache-Control max-age says (60 to 3600 s, 300 when it says nothing)",
    )
    # Which organisations each trusted issuer may vouch for: issuer URL -> division codes, kept as the
    # prefixes every code within them starts with (grassroots_common.divisions.significant_prefix). Empty:
    # the issuer is trusted for any organisation (a single-IdP deployment as before; production `serve`
    # warns).
    oidc_issuer_jurisdictions: dict[str, list[str]] = Field(
        default_factory=dict,
        description="JSON object: trusted issuer URL -> division codes its tokens' organisations must lie "
        "within; empty: any organisation",
    )
    # More identity providers beside GRASSROOTS_OIDC_ISSUER (a province's and a district's unified sign-on):
    # each with its own discovery and keys, its audience, and the organisations it may sign users in for.
    oidc_issuers: list[dict[str, Any]] = Field(
        default_factory=list,
        description='JSON list of further trusted identity providers: [{"issuer": URL, "jurisdiction": '
        '[division codes], "audience": optional, default GRASSROOTS_OIDC_AUDIENCE}]',
    )
    dev_idp_enabled: bool = Field(False, description="serve the embedded development IdP at /dev-idp")

    # Keys. In development mode missing keys are generated under data_dir/keys; in production they
    # must be configured (and must not be placeholders).
    audit_hmac_key: SecretStr | None = Field(None, description="key for resident/record HMAC refs")
    audit_hmac_key_id: str = "k1"
    masking_kek: SecretStr | None = Field(None, description="key-encryption key for masking data keys")
    service_key_path: Path | None = Field(
        None, description="Ed25519 key the gateway signs upstream calls with"
    )
    checkpoint_key_path: Path | None = Field(None, description="Ed25519 key for audit checkpoints")
    checkpoint_dir: Path | None = Field(None, description="append-only directory for signed checkpoints")

    # Requests without a valid token (gateway.refusal_bursts): per client address and window, this many are
    # recorded one by one; later ones are answered 429 and summed up in one auth.refused_burst event. 20 a
    # minute leaves a person whose token expired every retry they would make, and caps a flooding address
    # at 21 events a minute (it wrote about 15,000 before).
    auth_refusal_burst: int = Field(
        20,
        ge=1,
        description="requests without a valid token recorded one by one per client address and window; "
        "beyond: 429 too_many_refusals, counted into one auth.refused_burst event",
    )
    auth_refusal_window_s: float = Field(
        60.0,
        gt=0,
        allow_inf_nan=False,
        description="the window, in seconds, of GRASSROOTS_AUTH_REFUSAL_BURST; its summary is written as it "
        "closes",
    )
    auth_refusal_sources: int = Field(
        10_000,
        ge=1,
        description="client addresses counted separately per process; more are counted together",
    )

    # Request bodies: every endpoint, refused with 413 above this (gateway.app.RefuseOversizedBody). The
    # largest legitimate bodies are a policy replay carrying the proposed policy files (about 10 KB with
    # the shipped ones) and a registration carrying a public key (at most 16 KB): 1 MiB leaves room to grow.
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="largest request body accepted, in bytes; larger: 413 body_too_large"
    )

    # Data path.
    # At least 1: a page size of 0 or less was refused in the words of GRASSROOTS_KANON_MIN_RECORDS.
    max_page_size: int = Field(100, ge=1, description="largest page_size a request may ask for")
    upstream_timeout_s: float = Field(5.0, gt=0, allow_inf_nan=False)
    upstream_connect_timeout_s: float = Field(2.0, gt=0, allow_inf_nan=False)
    # Monthly report as PDF: each render is a headless Chromium of a few hundred MB and seconds of CPU, so
    # a burst of requests must not start one per request.
    pdf_max_concurrent_renders: int = Field(
        2, ge=1, le=16, description="PDF renders (headless Chromium) one process runs at once"
    )
    pdf_render_wait_s: float = Field(
        10.0,
        gt=0,
        allow_inf_nan=False,
        description="how long a PDF request waits for a free render before 503 pdf_busy",
    )
    # Greater than 0 and finite: 0 or less re-reads in a busy loop, and inf never re-reads, so a revocation
    # committed elsewhere would never reach this process (and the staleness guard would never trip).
    policy_refresh_interval_s: float = Field(
        0.5,
        gt=0,
        allow_inf_nan=False,
        description="how often a process re-reads the policy and registry versions",
    )
    workers: int = Field(
        1,
        ge=1,
        description="gateway processes serving this database (`serve --workers N` sets it); above 1 on "
        "SQLite, daily-quota holds are taken in the database, as on PostgreSQL",
    )
    # Policy-as-code files (reviewed data). Default: the files shipped in policies/.
    policy_model_path: Path | None = Field(None, description="casbin model (model.conf)")
    permissions_path: Path | None = Field(None, description="role permissions (permissions.csv)")
    scenarios_path: Path | None = Field(None, description="scenario catalog (scenarios.toml)")
    # Re-identification guard (issue 4): list responses of at least kanon_min_records records must be
    # kanon_k-anonymous over the catalog's quasi-identifiers after masking. k = 3 caps the chance of
    # singling a resident out at 1/3 for readers who are already access-controlled officials.
    kanon_k: int = Field(3, ge=2, le=50, description="k of the k-anonymity guard")
    kanon_min_records: int = Field(50, ge=2, description="list responses this large are k-checked")

    # The data path's plain-ASGI fast lane (gateway.routes.data.DataFastLane); off: FastAPI's routes serve it.
    data_fast_lane: bool = True

    # Telemetry.
    otel_exporter: Literal["none", "otlp", "console"] = "none"
    otel_endpoint: str | None = None
    otel_sample_ratio: float = Field(
        1.0, ge=0.0, le=1.0, description="fraction of traces recorded when an exporter is configured"
    )
    log_level: str = Field("INFO", description="log level: " + ", ".join(LOG_LEVELS))

    _paths_not_blank = field_validator(
        "data_dir",
        "service_key_path",
        "checkpoint_key_path",
        "checkpoint_dir",
        "policy_model_path",
        "permissions_path",
        "scenarios_path",
        mode="before",
    )(refuse_blank_path)

    @field_validator("oidc_algorithms")
    @classmethod
    def _asymmetric_algorithms_only(cls, value: list[str]) -> list[str]:
        # RFC 8725 §3.1/§3.2: "none" and symmetric (HMAC) algorithms are never acceptable for access
        # tokens; refused here, at start-up, rather than by the verifier inside the running app.
        from gateway.auth.algorithms import ASYMMETRIC_ALGORITHMS

        allowed = ", ".join(sorted(ASYMMETRIC_ALGORITHMS))
        refused = sorted(set(value) - ASYMMETRIC_ALGORITHMS)
        if refused:
            raise InvalidSetting(
                f"不允许的签名算法 {refused}（只接受非对称签名算法）；可选：{allowed}",
                f"algorithms not allowed {refused} (asymmetric signatures only); allowed: {allowed}",
            )
        if not value:
            raise InvalidSetting(
                f"至少需要一个签名算法；可选：{allowed}",
                f"at least one algorithm is needed; allowed: {allowed}",
            )
        return value

    @field_validator("oidc_issuer_jurisdictions")
    @classmethod
    def _division_code_prefixes(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        return {issuer.strip(): _jurisdiction_prefixes(codes) for issuer, codes in value.items()}

    @field_validator("oidc_issuers")
    @classmethod
    def _issuer_entries(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Each entry as an operator writes it, checked here with words naming the entry (its place in the
        # list: the URL may be mistyped), so a typo ("jurisdicton") is refused rather than ignored.
        entries: list[dict[str, Any]] = []
        for place, entry in enumerate(value, start=1):
            unknown = sorted(set(entry) - {"issuer", "audience", "jurisdiction"})
            if unknown or "issuer" not in entry or "jurisdiction" not in entry:
                raise InvalidSetting(
                    f"第 {place} 个身份提供方须写成 "
                    '{"issuer": 地址, "jurisdiction": [区划代码, …], "audience": 受众（可省略）}，'
                    "不能有其他键",
                    f"identity provider #{place} must be written "
                    '{"issuer": URL, "jurisdiction": [division codes], "audience": optional}, '
                    "with no other key",
                )
            issuer, audience = entry["issuer"], entry.get("audience")
            if not isinstance(issuer, str) or http_url_or_none(issuer) is None:
                raise InvalidSetting(
                    f"第 {place} 个身份提供方的 issuer 须为以 https:// 或 http:// 开头的完整地址",
                    f"identity provider #{place}: issuer must be a full URL starting with https:// or "
                    "http://",
                )
            if "#" in issuer or "?" in issuer:
                # OpenID Connect Core 1.0 §2: an issuer has no query or fragment; "#" also separates the
                # issuer from the sub in its users' ids ("<issuer>#<sub>").
                raise InvalidSetting(
                    f"第 {place} 个身份提供方的 issuer 不能含有 “?” 或 “#”（OpenID Connect 的 issuer 没有查询"
                    "或片段部分）",
                    f"identity provider #{place}: issuer must not hold '?' or '#' (an OpenID Connect issuer "
                    "has no query or fragment)",
                )
            if audience is not None and (not isinstance(audience, str) or not audience.strip()):
                raise InvalidSetting(
                    f"第 {place} 个身份提供方的 audience 须为非空字符串（省略则为 GRASSROOTS_OIDC_AUDIENCE）",
                    f"identity provider #{place}: audience must be a non-empty string (left out: "
                    "GRASSROOTS_OIDC_AUDIENCE)",
                )
            codes = entry["jurisdiction"]
            if not isinstance(codes, list) or not all(isinstance(code, str) for code in codes):
                codes = []  # refused below, in the words every empty jurisdiction gets
            entries.append(
                {
                    "issuer": issuer.strip(),
                    "audience": None if audience is None else audience.strip(),
                    "jurisdiction": _jurisdiction_prefixes(codes),
                }
            )
        return entries

    @field_validator("database_url")
    @classmethod
    def _database_url_given(cls, value: str | None) -> str | None:
        # Empty (a unit file's "GRASSROOTS_DATABASE_URL=$PG_URL" with PG_URL unset) was taken as unset: the
        # gateway ran on a new SQLite file under GRASSROOTS_DATA_DIR instead of the PostgreSQL database.
        if value is not None and not value.strip():
            raise InvalidSetting(
                "不能为空：写入数据库地址，例如 postgresql+psycopg://user@host/db，或删除该变量以使用 "
                "GRASSROOTS_DATA_DIR 下的 SQLite 文件",
                "must not be empty: write the database URL, e.g. postgresql+psycopg://user@host/db, or unset "
                "the variable for the SQLite file under GRASSROOTS_DATA_DIR",
            )
        return value

    @field_validator("oidc_audience")
    @classmethod
    def _audience_given(cls, value: str) -> str:
        # Empty, the verifier could not be built: the gateway stopped at start-up with a traceback.
        if not value.strip():
            raise InvalidSetting(
                "不能为空：写入身份提供方签发的登录凭证中的受众（aud），或删除该变量以使用默认值 "
                "grassroots-gateway",
                "must not be empty: write the audience (aud) the identity provider puts in its tokens, or "
                "unset the variable for the default grassroots-gateway",
            )
        return value.strip()

    @field_validator("audit_hmac_key_id")
    @classmethod
    def _usable_key_id(cls, value: str) -> str:
        # Written into every audit ref as "<id>:<mac>"; another form stopped every command that opened the
        # audit refs with a traceback.
        from grassroots_common.keyids import KEY_ID_PATTERN

        if KEY_ID_PATTERN.fullmatch(value) is None:
            raise InvalidSetting(
                "须为 1 到 16 个英文字母、数字、“_”或“-”，例如 k1（不设置即为 k1）",
                "must be 1 to 16 ASCII letters, digits, '_' or '-', e.g. k1 (unset: k1)",
            )
        return value

    @field_validator("masking_kek")
    @classmethod
    def _usable_kek(cls, value: SecretStr | None) -> SecretStr | None:
        # Read only when the gateway opened its key ring: a KEK of the wrong form (a passphrase, say) ended
        # in a traceback at start. A placeholder is left to the production guard, which names it so.
        from masking import KeyRingError, parse_kek

        if value is None or value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
            return value
        try:
            parse_kek(value.get_secret_value())
        except KeyRingError:
            raise InvalidSetting(
                "须为 32 字节的密钥，写作 64 位十六进制或 base64（例如 openssl rand -hex 32 的输出）",
                "must be a 32-byte key written as 64 hex digits or base64 (e.g. what openssl rand -hex 32 "
                "prints)",
            ) from None
        return value

    @field_validator("oidc_issuer", "public_url", "otel_endpoint")
    @classmethod
    def _http_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Without a scheme the issuer's discovery request can never be made: the gateway started, then
        # answered every signed-in request 503 idp_unavailable. An OTLP endpoint without one exported
        # nothing, without a word at start.
        if value is None or not value.strip():
            return None
        if http_url_or_none(value) is None:
            example = _URL_EXAMPLES[str(info.field_name)]
            raise InvalidSetting(
                f"须为以 https:// 或 http:// 开头的完整地址，例如 {example}",
                f"must be a full URL starting with https:// or http://, e.g. {example}",
            )
        return value.strip()

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            allowed = ", ".join(LOG_LEVELS)
            raise InvalidSetting(
                f"未知的日志级别；可选：{allowed}（不区分大小写）",
                f"unknown log level; allowed: {allowed} (any case)",
            )
        return level

    @property
    def issuer_org_prefixes(self) -> tuple[str, ...] | None:
        """The division-code prefixes the trusted issuer may assert organisations within (None: any).

        ConfigurationError when the jurisdictions name an issuer the gateway does not trust: that entry
        restricts nothing, most likely a mistyped URL (a token's iss is compared exactly), and tokens of the
        real issuer would go unrestricted. Asked by ``serve`` before it starts (at the address it is given:
        the development IdP's issuer follows it) and by the runtime that builds the verifier."""
        if not self.oidc_issuer_jurisdictions:
            return None
        trusted = self.effective_oidc_issuer
        stray = sorted(set(self.oidc_issuer_jurisdictions) - {trusted})
        if stray:
            listed = {entry["issuer"] for entry in self.oidc_issuers}
            also = (
                (
                    "；GRASSROOTS_OIDC_ISSUERS 所列身份提供方的辖区写在其 jurisdiction 中",
                    "; the jurisdiction "
                    "of a provider listed in GRASSROOTS_OIDC_ISSUERS is its entry's jurisdiction",
                )
                if listed & set(stray)
                else ("", "")
            )
            raise ConfigurationError(
                SettingProblem(
                    "GRASSROOTS_OIDC_ISSUER_JURISDICTIONS",
                    f"键须是所信任的身份提供方的地址（与令牌中的 iss 完全一致）：{trusted}；"
                    f"未被信任的地址：{'、'.join(stray)}{also[0]}",
                    f"the keys must be the trusted identity provider's URL (exactly as in the tokens' iss): "
                    f"{trusted}; not trusted: {', '.join(stray)}{also[1]}",
                )
            )
        return tuple(self.oidc_issuer_jurisdictions[trusted])

    @property
    def primary_oidc_issuer(self) -> str | None:
        """GRASSROOTS_OIDC_ISSUER, else the development IdP when it is enabled, else None."""
        if self.oidc_issuer or self.dev_idp_enabled:
            return self.effective_oidc_issuer
        return None

    @property
    def trusted_issuers(self) -> tuple[IssuerTrust, ...]:
        """Every identity provider whose tokens are accepted: GRASSROOTS_OIDC_ISSUER (or the development
        IdP), with GRASSROOTS_OIDC_AUDIENCE and GRASSROOTS_OIDC_ISSUER_JURISDICTIONS, then each of
        GRASSROOTS_OIDC_ISSUERS. ConfigurationError when there is none, or one is named twice (which of
        the two audiences and jurisdictions would hold?)."""
        trusted: list[IssuerTrust] = []
        primary = self.primary_oidc_issuer
        if primary is None and not self.oidc_issuers:
            self.effective_oidc_issuer  # noqa: B018 (raises: no identity provider is configured)
        if primary is not None:
            trusted.append(IssuerTrust(primary, self.oidc_audience, self.issuer_org_prefixes))
        elif self.oidc_issuer_jurisdictions:
            raise ConfigurationError(
                SettingProblem(
                    "GRASSROOTS_OIDC_ISSUER_JURISDICTIONS",
                    "只用于 GRASSROOTS_OIDC_ISSUER；GRASSROOTS_OIDC_ISSUERS 所列身份提供方的辖区写在其 "
                    "jurisdiction 中",
                    "applies to GRASSROOTS_OIDC_ISSUER only; the jurisdiction of a provider listed in "
                    "GRASSROOTS_OIDC_ISSUERS is its entry's jurisdiction",
                )
            )
        for entry in self.oidc_issuers:
            if any(t.issuer == entry["issuer"] for t in trusted):
                raise ConfigurationError(
                    SettingProblem(
                        "GRASSROOTS_OIDC_ISSUERS",
                        f"身份提供方 {entry['issuer']} 出现了不止一次（含 GRASSROOTS_OIDC_ISSUER），"
                        "每个身份提供方只能写一次",
                        f"the identity provider {entry['issuer']} is named more than once "
                        "(GRASSROOTS_OIDC_ISSUER included); name each provider once",
                    )
                )
            trusted.append(
                IssuerTrust(
                    entry["issuer"],
                    entry["audience"] or self.oidc_audience,
                    tuple(entry["jurisdiction"]),
                    qualifies_subjects=True,
                )
            )
        return tuple(trusted)

    @model_validator(mode="after")
    def _reidentification_guard_applies(self) -> Settings:
        """The guard checks pages of `kanon_min_records` records or more (masking.kanon). Below `kanon_k` a
        checked page could never be k-anonymous (every one refused, whatever it holds); above the largest
        page no page would ever be checked, the guard off without a word. Either is refused at start."""
        low, high = self.kanon_k, self.max_page_size
        if low <= self.kanon_min_records <= high:
            return self
        raise ConfigurationError(
            SettingProblem(
                "GRASSROOTS_KANON_MIN_RECORDS",
                f"须在 GRASSROOTS_KANON_K（{low}）与每页上限 GRASSROOTS_MAX_PAGE_SIZE（{high}）之间："
                f"少于 k 条的页不可能满足 k-匿名，会一律被拒绝；大于每页上限则没有一页会被检查，"
                "再识别保护形同关闭",
                f"must be between GRASSROOTS_KANON_K ({low}) and the page limit GRASSROOTS_MAX_PAGE_SIZE "
                f"({high}): a page of fewer than k records can never be k-anonymous and would always be "
                "refused; above the page limit no page would ever be checked, the re-identification guard "
                "silently off",
            )
        )

    @model_validator(mode="after")
    def _usable_development_hmac_key(self) -> Settings:
        """Outside production (whose guards ask for 32 characters) a GRASSROOTS_AUDIT_HMAC_KEY set shorter
        than an audit ref key can be (16 bytes: grassroots_common.keyids.MIN_KEY_BYTES), empty included,
        stopped serve with a Python traceback when the audit refs were opened."""
        from grassroots_common.keyids import MIN_KEY_BYTES

        key = self.audit_hmac_key
        if self.mode is RunMode.production or key is None:
            return self
        if len(key.get_secret_value().encode()) >= MIN_KEY_BYTES:
            return self
        raise ConfigurationError(
            SettingProblem(
                "GRASSROOTS_AUDIT_HMAC_KEY",
                f"至少需要 {MIN_KEY_BYTES} 个字符（生产模式下至少 32 个）：写入 openssl rand -hex 32 的输出，"
                "或在开发环境中删除该变量（由网关生成）",
                f"must be at least {MIN_KEY_BYTES} characters (32 in production mode): write what openssl "
                "rand -hex 32 prints, or in development unset the variable (the gateway makes one)",
            )
        )

    @model_validator(mode="after")
    def _production_guards(self) -> Settings:
        if self.mode is not RunMode.production:
            return self
        problems: list[SettingProblem] = []
        if self.dev_idp_enabled:
            problems.append(
                SettingProblem(
                    "GRASSROOTS_DEV_IDP_ENABLED",
                    "生产模式下必须为 false（开发用身份提供方会为任何演示用户签发令牌）",
                    "must be false in production mode "
                    "(the development identity provider signs any demo user's token)",
                )
            )
        for entry in self.oidc_issuers:
            if not tls_or_loopback(entry["issuer"]):
                problems.append(
                    SettingProblem(
                        "GRASSROOTS_OIDC_ISSUERS",
                        f"生产模式下身份提供方 {entry['issuer']} 须为 https:// 地址"
                        "（否则验证令牌所用的公钥经明文传输，可被途中篡改）",
                        f"the identity provider {entry['issuer']} must be an https:// URL in production "
                        "mode (over http the keys that tokens are checked against could be replaced on the "
                        "way)",
                    )
                )
        if not self.oidc_issuer:
            if not self.oidc_issuers:
                problems.append(
                    SettingProblem(
                        "GRASSROOTS_OIDC_ISSUER",
                        "生产模式下必须设置（本单位 OIDC 身份提供方的地址）",
                        "is required in production mode (your OIDC identity provider's URL)",
                    )
                )
        elif not tls_or_loopback(self.oidc_issuer):
            # OpenID Connect Discovery 1.0 §3 and §7.2: the issuer is an https URL. Over plain http the
            # discovery document and the key set that every token is checked against arrive unprotected:
            # anyone on the path could hand the gateway a key of their own and sign any user, any role.
            problems.append(
                SettingProblem(
                    "GRASSROOTS_OIDC_ISSUER",
                    "生产模式下须为 https:// 地址（否则验证令牌所用的公钥经明文传输，可被途中篡改）",
                    "must be an https:// URL in production mode (over http the keys that tokens are "
                    "checked against could be replaced on the way)",
                )
            )
        for name in ("audit_hmac_key", "masking_kek"):
            value: SecretStr | None = getattr(self, name)
            variable = f"GRASSROOTS_{name.upper()}"
            if value is None or value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
                problems.append(
                    SettingProblem(
                        variable,
                        "生产模式下必须设为真实密钥（现在未设置或是占位值）："
                        "写入 openssl rand -hex 32 的输出",
                        "must be set to a real secret in production mode (it is unset or a placeholder): "
                        "write what openssl rand -hex 32 prints",
                    )
                )
            elif patterned_secret(value.get_secret_value()):
                problems.append(
                    SettingProblem(
                        variable,
                        "生产模式下不能使用有规律的弱密钥（字符种类太少或由一段重复而成），"
                        "这样的密钥容易被猜中：写入 openssl rand -hex 32 的输出",
                        "must not be a patterned value in production mode (too few distinct characters, "
                        "or one run repeated), which is easy to guess: write what openssl rand -hex 32 "
                        "prints",
                    )
                )
            elif name == "audit_hmac_key" and len(value.get_secret_value()) < 32:
                problems.append(
                    SettingProblem(
                        variable,
                        "至少需要 32 个字符：写入 openssl rand -hex 32 的输出",
                        "must be at least 32 characters: write what openssl rand -hex 32 prints",
                    )
                )
        # Each with what to write: the message alone must tell a new operator what the setting is.
        for name, zh, en in _PRODUCTION_PATHS:
            if getattr(self, name) is None:
                problems.append(
                    SettingProblem(
                        f"GRASSROOTS_{name.upper()}",
                        f"生产模式下必须设置：{zh}",
                        f"is required in production mode: {en}",
                    )
                )
        if problems:
            raise ConfigurationError(*problems)
        return self

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'gateway.db').as_posix()}"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def effective_public_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def effective_oidc_issuer(self) -> str:
        if self.oidc_issuer:
            return self.oidc_issuer
        if self.dev_idp_enabled:
            return f"{self.effective_public_url}/dev-idp"
        raise ConfigurationError(
            SettingProblem(
                "GRASSROOTS_OIDC_ISSUER",
                "未配置身份提供方：请设置（或仅在开发环境中设 GRASSROOTS_DEV_IDP_ENABLED=true）",
                "no identity provider: set it (or GRASSROOTS_DEV_IDP_ENABLED=true in development)",
            )
        )

    @property
    def effective_service_key_path(self) -> Path:
        return self.service_key_path or self.keys_dir / "gateway-service-ed25519.pem"

    @property
    def effective_checkpoint_key_path(self) -> Path:
        return self.checkpoint_key_path or self.keys_dir / "audit-checkpoint-ed25519.pem"

    @property
    def effective_checkpoint_dir(self) -> Path:
        return self.checkpoint_dir or self.data_dir / "checkpoints"


def http_url_or_none(value: str) -> str | None:
    """``value`` stripped when it is a full http(s) URL (a scheme and a host), else None."""
    from urllib.parse import urlsplit

    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return value.strip()


def _jurisdiction_prefixes(codes: list[str]) -> list[str]:
    """An identity provider's jurisdiction (division codes) as the prefixes every code within it starts
    with (grassroots_common.divisions.significant_prefix); InvalidSetting for none, or a code cut badly."""
    from grassroots_common.divisions import significant_prefix

    if not codes:
        raise InvalidSetting(
            "每个身份提供方至少要列出一个区划代码（它可认定的辖区），例如 "
            '{"https://idp.example.gov.cn/realms/county": ["310151"]}',
            "list at least one division code (the jurisdiction it may vouch for) for each identity "
            'provider, e.g. {"https://idp.example.gov.cn/realms/county": ["310151"]}',
        )
    try:
        return sorted({significant_prefix(code) for code in codes})
    except ValueError:
        raise InvalidSetting(
            "区划代码须为 2、4、6、9 或 12 位数字（统计用区划代码，例如 31、310151、310151101），"
            "只能在省、市、县、乡、村的分段处截断",
            "division codes are 2, 4, 6, 9 or 12 ASCII digits (e.g. 31, 310151, 310151101): cut "
            "only where a province, city, county, township or village segment ends",
        ) from None
