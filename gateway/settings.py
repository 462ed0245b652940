"""Gateway configuration (pydantic-settings, environment prefix ``GRASSROOTS_``).

Nothing here connects to anything: settings are plain values, read once by the CLI or the app factory.
Secrets are ``SecretStr`` so they never show in a repr or a log line.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Values that betray an unconfigured secret; refused outside development mode.
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "dev", "development", "placeholder"})


class RunMode(StrEnum):
    development = "development"
    production = "production"


class ConfigurationError(Exception):
    """Settings that cannot be used; the message says which variable to fix."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRASSROOTS_", extra="ignore")

    mode: RunMode = Field(RunMode.development, description="development | production")
    data_dir: Path = Field(Path("var"), description="where the SQLite file, keys and checkpoints live")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite:///<data_dir>/gateway.db (WAL mode)"
    )
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = Field(None, description="base URL the gateway is reached at")

    # SSO (OIDC resource server).
    oidc_issuer: str | None = Field(None, description="issuer URL; discovery at <issuer>/.well-known/...")
    oidc_audience: str = "grassroots-gateway"
    oidc_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "PS256", "ES256", "EdDSA"])
    oidc_leeway_s: int = 30
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

    # Data path.
    max_page_size: int = 100
    upstream_timeout_s: float = 5.0
    upstream_connect_timeout_s: float = 2.0
    policy_refresh_interval_s: float = Field(
        0.5, description="how often a process re-reads the policy and registry versions"
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
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _production_guards(self) -> Settings:
        if self.mode is RunMode.production:
            if self.dev_idp_enabled:
                raise ConfigurationError(
                    "GRASSROOTS_DEV_IDP_ENABLED must be false in production mode "
                    "(the development identity provider signs any demo user's token)"
                )
            if not self.oidc_issuer:
                raise ConfigurationError("GRASSROOTS_OIDC_ISSUER is required in production mode")
            for name in ("audit_hmac_key", "masking_kek"):
                value: SecretStr | None = getattr(self, name)
                if value is None or value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
                    raise ConfigurationError(
                        f"GRASSROOTS_{name.upper()} must be set to a real secret in production mode"
                    )
                if len(value.get_secret_value()) < 32:
                    raise ConfigurationError(f"GRASSROOTS_{name.upper()} must be at least 32 characters")
            for name in ("service_key_path", "checkpoint_key_path", "checkpoint_dir"):
                if getattr(self, name) is None:
                    raise ConfigurationError(f"GRASSROOTS_{name.upper()} is required in production mode")
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
            "no identity provider: set GRASSROOTS_OIDC_ISSUER "
            "(or GRASSROOTS_DEV_IDP_ENABLED=true in development)"
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
