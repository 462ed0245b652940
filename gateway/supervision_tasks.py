"""Supervision settings and the periodic signed checkpoint.

The checkpoint task signs the Merkle root of the whole audit log every
``GRASSROOTS_CHECKPOINT_INTERVAL_S`` seconds (default 300) into the external checkpoint directory — the
RFC 6962 §3.5 "signed tree head" cadence that bounds how much history a database administrator could
rewrite unnoticed. It skips a round when nothing was appended since the last checkpoint, and it does
not write an audit event per round (that would make the log grow forever just to say it was signed);
checkpoints asked for by a person (``POST /api/v1/supervision/checkpoints``) are audited.

Settings live here rather than in ``gateway.settings`` so the supervision area stays self-contained;
they read the same ``GRASSROOTS_`` environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from audit import CheckpointError, CheckpointSigner, extend_checkpoint_if_grown
from audit.merkle import MerkleAccumulator
from policies.divisions import normalize

if TYPE_CHECKING:
    from gateway.runtime import Runtime

_log = logging.getLogger("gateway.supervision")


class SupervisionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRASSROOTS_", extra="ignore")

    checkpoint_interval_s: float = Field(
        300.0, description="seconds between periodic signed checkpoints; 0 switches them off"
    )
    audit_retention_years: int = Field(3, ge=1, description="keep processing records (PIPL Art. 56)")
    audit_archive_dir: Path | None = Field(None, description="where monthly archives are written")
    anomaly_rules_path: Path | None = Field(None, description="anomaly rules TOML (default: packaged)")
    complaint_due_days: int = Field(15, ge=1, description="days to answer a complaint")
    incident_due_days: int = Field(30, ge=1, description="days to close an incident")
    division_names_file: Path | None = Field(
        None,
        description="division names for reports and transparency answers: 'code,name' lines (UTF-8); "
        "default: the demo world's in development, none otherwise",
    )
    platform_org: str | None = Field(
        None,
        description="division code of the jurisdiction this platform serves (e.g. 310151000000, a "
        "district's): supervisors whose scope covers it also see the events no organisation is charged "
        "with (a token no organisation can be read from, key rotations, departmental systems' own calls); "
        "default: the demo world's district in development, none otherwise (then only a nationwide scope)",
    )

    @field_validator("platform_org")
    @classmethod
    def _division_code(cls, value: str | None) -> str | None:
        from gateway.settings import InvalidSetting

        if value is None or not value.strip():
            return None
        try:
            return normalize(value.strip())
        except ValueError:
            raise InvalidSetting(
                "须为 2、4、6、9 或 12 位的统计用区划代码（例如 310151000000）",
                "must be a division code of 2, 4, 6, 9 or 12 digits (for example 310151000000)",
            ) from None


def signer_for(runtime: Runtime) -> CheckpointSigner:
    return CheckpointSigner.load_or_create(runtime.settings.effective_checkpoint_key_path)


def checkpoint_if_grown(
    runtime: Runtime, signer: CheckpointSigner, since: MerkleAccumulator | None = None
) -> tuple[int, MerkleAccumulator] | None:
    """Write a checkpoint when the log grew past the latest one; returns the new tree size and the
    accumulator to pass as ``since`` next time (only the events after it are read then), or None."""
    directory = runtime.settings.effective_checkpoint_dir
    written = extend_checkpoint_if_grown(runtime.engine, signer, directory, since)
    if written is None:
        return None
    checkpoint, accumulator = written
    return checkpoint.tree_size, accumulator


async def checkpoint_loop(runtime: Runtime, interval_s: float) -> None:
    """Every ``interval_s``, a signed checkpoint if the log grew. The first one walks the whole log (and
    checks the latest checkpoint against it); later ones read only the events since the last one."""
    signer = await asyncio.to_thread(signer_for, runtime)
    since: MerkleAccumulator | None = None
    while True:
        await asyncio.sleep(interval_s)
        try:
            written = await asyncio.to_thread(checkpoint_if_grown, runtime, signer, since)
            if written is not None:
                size, since = written
                _log.info("periodic audit checkpoint written", extra={"tree_size": size})
        except CheckpointError as exc:
            # Refusing to sign is the alarm: the log no longer extends the last signed checkpoint.
            since = None  # the next attempt walks the whole log again
            _log.error("periodic audit checkpoint refused: %s", exc)
        except Exception as exc:
            _log.error("periodic audit checkpoint failed: %s", type(exc).__name__)


def start_supervision_tasks(runtime: Runtime) -> asyncio.Task[None] | None:
    interval = SupervisionSettings().checkpoint_interval_s
    if interval <= 0:
        return None
    return asyncio.create_task(checkpoint_loop(runtime, interval), name="audit-checkpoints")


async def stop_supervision_tasks(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
