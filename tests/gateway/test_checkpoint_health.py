"""A periodic signed checkpoint that cannot be written is visible to operators, not only a log line.

Before: a checkpoint directory that could not be written (or a key that could not be read) was an ERROR
line per interval — and a key unreadable at start ended the task for good, silently — while ``/readyz``
said ``{"status": "ready"}`` and nothing said that the log's external proof had stopped advancing. Now
``/readyz`` names the component (state, failure kind, ages; never a path or key material), and two metrics
say it: ``grassroots.audit.checkpoint.age`` and ``grassroots.audit.checkpoint.failures{kind}``. The process
stays ready (see ``gateway.routes.health``). Tests run as root, where chmod does not stop a write: the
checkpoint directory is replaced by a regular file, which no one can create files in.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from audit import (
    AuditLog,
    ChainBusy,
    CheckpointError,
    KeyRetired,
    chain_lock,
    checkpoints,
    rotate_signing_key,
)
from gateway.app import create_app
from gateway.checkpoint_health import (
    CHAIN_BUSY,
    CHECKPOINT_UNVERIFIABLE,
    DIRECTORY_UNWRITABLE,
    DISK_FULL,
    KEY_RETIRED,
    KEY_UNAVAILABLE,
    LOG_MISMATCH,
    CheckpointHealth,
    failure_kind,
)
from gateway.db import upgrade
from gateway.routes.supervision import _integrity
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.supervision_tasks import checkpoint_round
from gateway.wiring import build_runtime, close_runtime
from tests.audit.helpers import make_event


def _until(check: Callable[[], dict[str, Any] | None], rounds: int = 400) -> dict[str, Any]:
    """Poll (bounded, no wall-clock assert) until ``check`` returns something."""
    for _ in range(rounds):
        found = check()
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError("condition never reached")


def _gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interval_s: str, **settings: Any) -> TestClient:
    """A gateway app on a new SQLite database under ``tmp_path`` (its data in ``var``), checkpointing
    every ``interval_s`` and archiving never."""
    monkeypatch.setenv("GRASSROOTS_CHECKPOINT_INTERVAL_S", interval_s)
    monkeypatch.setenv("GRASSROOTS_AUDIT_ARCHIVE_INTERVAL_S", "0")
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    upgrade(url)
    data_dir = tmp_path / "var"
    return TestClient(
        create_app(Settings(data_dir=data_dir, database_url=url, dev_idp_enabled=True, **settings))
    )


def test_readyz_names_a_failing_checkpoint_and_its_recovery_and_stays_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_dir = tmp_path / "cp-of-village-310151-secret"
    secret_dir.write_text("not a directory\n")  # nothing can be created in it, root or not

    with _gateway(tmp_path, monkeypatch, "0.05", checkpoint_dir=secret_dir) as client:

        def component(status: str) -> dict[str, Any] | None:
            answer = client.get("/readyz")
            assert answer.status_code == 200 and answer.json()["status"] == "ready"
            assert "secret" not in answer.text and "PRIVATE" not in answer.text
            view: dict[str, Any] = answer.json()["audit_checkpoints"]
            return view if view["status"] == status else None

        failing = _until(lambda: component("failing"))
        assert failing["failure"] == DIRECTORY_UNWRITABLE
        assert failing["last_good_age_s"] is None and failing["latest_checkpoint_age_s"] is None
        assert isinstance(failing["failing_for_s"], int)

        secret_dir.unlink()
        secret_dir.mkdir()  # the operator fixes it: the next round signs, and the state says so
        ok = _until(lambda: component("ok"))
        assert "failure" not in ok and isinstance(ok["latest_checkpoint_age_s"], int)
        assert any(name.startswith("checkpoint-") for name in os.listdir(secret_dir))


def test_a_new_gateway_has_its_key_at_once_so_reports_say_no_checkpoint_yet_not_a_missing_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A new installation (the demo, walked through at once): until the first periodic checkpoint, an
    # interval in, there was no key, and every monthly report asked the operator to restore it.
    key = Settings(data_dir=tmp_path / "var").effective_checkpoint_key_path
    with _gateway(tmp_path, monkeypatch, "3600"):
        _until(lambda: {} if key.exists() else None)  # loaded on a worker thread as the task starts
        integrity = _integrity(cast(Runtime, SimpleNamespace(settings=Settings(data_dir=tmp_path / "var"))))
    assert integrity["checked"] is True and "problem" not in integrity
    assert integrity["note"] == "本报告生成时尚无签名检查点。"


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    found: dict[str, list[Any]] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


async def test_an_unreadable_key_is_counted_retried_and_recovered_from(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    upgrade(url)
    settings = Settings(data_dir=tmp_path / "var", database_url=url, dev_idp_enabled=True)
    key = settings.effective_checkpoint_key_path
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    key.chmod(0o600)
    runtime = build_runtime(settings)
    try:
        reader = InMemoryMetricReader()
        health = CheckpointHealth(300.0)
        health.instrument(MeterProvider(metric_readers=[reader]).get_meter("test"))
        runtime.checkpoint_health = health

        signer, since = checkpoint_round(runtime, None, None)
        assert signer is None  # not loaded, so the next round tries again (it used to end the task)
        points = _points(reader)
        [failed] = points["grassroots.audit.checkpoint.failures"]
        assert failed.value == 1 and dict(failed.attributes) == {"kind": KEY_UNAVAILABLE}
        assert "grassroots.audit.checkpoint.age" not in points  # never good yet: no made-up age
        assert health.view(datetime.now(UTC))["failure"] == KEY_UNAVAILABLE

        key.unlink()  # replaced: the next round creates and loads a good one, and signs
        signer, since = checkpoint_round(runtime, signer, since)
        assert signer is not None and since is not None
        view = health.view(datetime.now(UTC))
        assert view["status"] == "ok" and "failure" not in view
        [age] = _points(reader)["grassroots.audit.checkpoint.age"]
        assert age.value >= 0
    finally:
        await close_runtime(runtime)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), DISK_FULL),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), DISK_FULL),
        (PermissionError(errno.EACCES, "Permission denied"), DIRECTORY_UNWRITABLE),
        (FileExistsError(errno.EEXIST, "File exists"), DIRECTORY_UNWRITABLE),
        (CheckpointError("bad signature", file="checkpoint-x.json", tree_size=3), CHECKPOINT_UNVERIFIABLE),
        (
            CheckpointError("events 1..3 no longer match the signed checkpoint; refusing to sign"),
            LOG_MISMATCH,
        ),
        (KeyRetired("the checkpoint key k was retired by a handover at tree size 3"), KEY_RETIRED),
        (ChainBusy("another key rotation, restore acceptance or checkpoint write holds x"), CHAIN_BUSY),
    ],
)
def test_failure_kinds_are_a_closed_vocabulary(exc: BaseException, kind: str) -> None:
    assert failure_kind(exc) == kind


async def test_a_round_after_a_rotation_here_signs_with_the_new_key_and_a_held_lock_is_chain_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A serving process loaded its checkpoint key once: after `keys rotate-checkpoint` on its host every
    round was refused ("retired by a handover") until a restart. The round after the refusal now reads the
    key file again. A round that finds the chain locked past the wait (a rotation of a large log) writes
    nothing, says ``chain_busy`` and keeps its accumulator (no full walk next time)."""
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    upgrade(url)
    settings = Settings(data_dir=tmp_path / "var", database_url=url, dev_idp_enabled=True)
    runtime = build_runtime(settings)
    directory, key_path = settings.effective_checkpoint_dir, settings.effective_checkpoint_key_path
    try:
        health = CheckpointHealth(300.0)
        runtime.checkpoint_health = health
        log = AuditLog(runtime.engine)
        log.append_many([make_event(i) for i in range(3)])
        signer, since = checkpoint_round(runtime, None, None)
        # The chain's first checkpoint covers the 3 events, and is itself recorded (event 4).
        assert signer is not None and since is not None and since.size == 3
        assert checkpoints.log_size(runtime.engine) == 4
        old = signer.key_id

        _, new, _ = rotate_signing_key(runtime.engine, key_path, directory)
        log.append_many([make_event(i) for i in range(3, 5)])
        signer, since = checkpoint_round(runtime, signer, since)
        assert (signer, since) == (None, None)
        assert health.view(datetime.now(UTC))["failure"] == KEY_RETIRED
        signer, since = checkpoint_round(runtime, signer, since)
        assert signer is not None and signer.key_id == new.key_id != old and since is not None
        assert health.view(datetime.now(UTC))["status"] == "ok"

        log.append_many([make_event(5)])
        monkeypatch.setattr(checkpoints, "STORE_LOCK_WAIT_S", 0.2)
        kept = since
        with chain_lock(directory):  # another host rotating a large log
            signer, since = checkpoint_round(runtime, signer, since)
        assert since is kept and health.view(datetime.now(UTC))["failure"] == CHAIN_BUSY
        signer, since = checkpoint_round(runtime, signer, since)
        assert (
            since is not None
            and since.size == checkpoints.log_size(runtime.engine)
            and health.view(datetime.now(UTC))["status"] == "ok"
        )
    finally:
        await close_runtime(runtime)


def test_the_api_says_a_busy_chain_is_worth_retrying_and_a_retired_key_what_to_copy() -> None:
    """``POST /api/v1/supervision/checkpoints`` answered every refusal as "the log no longer matches the
    signed checkpoint, run audit verify now" (409), the tamper alarm, also for a rotation in progress."""
    from gateway.errors import GatewayError
    from gateway.routes.supervision import supervision_errors

    busy = ChainBusy("another key rotation, restore acceptance or checkpoint write holds /srv/cp/.lock (h)")
    with pytest.raises(GatewayError) as refused, supervision_errors():
        raise busy
    assert (refused.value.status_code, refused.value.code) == (503, "checkpoint_chain_busy")
    assert refused.value.headers == {"Retry-After": "30"}
    assert "/srv/cp" not in refused.value.message_zh + refused.value.message_en  # no host path leaves
    retired = KeyRetired(
        "the checkpoint key k was retired by a handover at tree size 3", "检查点密钥 k 已交接"
    )
    with pytest.raises(GatewayError) as refused, supervision_errors():
        raise retired
    assert (refused.value.status_code, refused.value.code) == (409, "checkpoint_key_retired")
    assert refused.value.message_zh.startswith("无法签发检查点：检查点密钥 k 已交接")
