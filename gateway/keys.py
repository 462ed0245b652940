"""Where the gateway's secrets come from.

Production: from configuration (``SecretStr``) or key files the operator provides; placeholders refused by
``Settings``. Development: generated once under ``<data_dir>/keys`` (mode 0600) so the demo needs no setup.
Key material is never printed or logged.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from gateway.settings import RunMode, Settings

if TYPE_CHECKING:
    from masking import KeyRing


def _read_or_create(path: Path, nbytes: int = 32) -> bytes:
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_bytes(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value.hex())
    return value


def _secret(settings: Settings, configured: SecretStr | None, dev_file: str) -> bytes:
    if configured is not None:
        return configured.get_secret_value().encode()
    if settings.mode is RunMode.production:  # Settings already refuses this; defence in depth.
        raise RuntimeError("secret not configured in production mode")
    return _read_or_create(settings.keys_dir / dev_file)


def audit_hmac_key(settings: Settings) -> bytes:
    return _secret(settings, settings.audit_hmac_key, "audit-hmac.key")


def masking_kek(settings: Settings) -> bytes:
    from masking import parse_kek

    if settings.masking_kek is not None:
        return parse_kek(settings.masking_kek.get_secret_value())
    return _secret(settings, None, "masking-kek.key")


def masking_keyring_path(settings: Settings) -> Path:
    return settings.keys_dir / "masking-keyring.json"


def load_masking_keyring(settings: Settings) -> KeyRing:
    """The data-key ring (wrapped under the KEK), created with one active key on first use."""
    from masking import KeyRing

    kek = masking_kek(settings)
    path = masking_keyring_path(settings)
    if path.exists():
        return KeyRing.from_json(kek, path.read_text())
    ring = KeyRing.generate(kek)
    save_masking_keyring(settings, ring)
    return ring


def save_masking_keyring(settings: Settings, ring: KeyRing) -> None:
    """Write atomically: the ring holds only wrapped keys, but keep it owner-only all the same."""
    path = masking_keyring_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(ring.to_json())
    os.replace(tmp, path)
