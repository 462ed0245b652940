"""The admission area's settings (``GRASSROOTS_ADMISSION_``), apart from its routes: ``grassroots serve``
checks them before anything listens, and a refused start should not pay for importing the API to do so."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.settings import Settings, refuse_blank_path

__all__ = ["AdmissionSettings", "admission_settings", "system_token_key_path"]


class AdmissionSettings(BaseSettings):
    """Admission-specific configuration (environment prefix ``GRASSROOTS_ADMISSION_``)."""

    model_config = SettingsConfigDict(env_prefix="GRASSROOTS_ADMISSION_", extra="ignore")

    config_path: Path | None = Field(None, description="reviewing offices and periods (offices.toml)")
    token_ttl_s: int = Field(300, ge=30, le=3600, description="lifetime of system access tokens")
    token_key_path: Path | None = Field(
        None, description="Ed25519 key signing system access tokens (default <data_dir>/keys/...)"
    )
    villages_file: Path | None = Field(
        None, description="village/community codes of the district, one per line (burden report)"
    )

    _paths_not_blank = field_validator("config_path", "token_key_path", "villages_file", mode="before")(
        refuse_blank_path
    )


@lru_cache(maxsize=1)
def admission_settings() -> AdmissionSettings:
    return AdmissionSettings()


def system_token_key_path(settings: Settings) -> Path:
    """The key signing system access tokens: ``GRASSROOTS_ADMISSION_TOKEN_KEY_PATH``, or the data
    directory's ``keys/system-token-ed25519.pem``."""
    return admission_settings().token_key_path or settings.keys_dir / "system-token-ed25519.pem"
