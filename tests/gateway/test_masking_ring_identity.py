"""The database records which masking key ring the deployment uses, and a host whose ring is not that one
does not start (README "Keys"): two hosts started at once on a fresh database each made a ring of their own
and both served, masking the same residents under different keys; a host given another deployment's ring,
or a copy from before `keys rotate`, served until an unmask failed.

Each host here is a data directory of its own on one shared database (SQLite file or PostgreSQL), with the
KEK the deployment configures (``GRASSROOTS_MASKING_KEK``), as on hosts that copy the ring file between them.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from typer.testing import CliRunner

from audit import AuditLog
from audit.tables import audit_events
from gateway.changes import offline_change_event
from gateway.cli import app as grassroots
from gateway.db import make_engine
from gateway.keys import (
    RING_RECORDED,
    KeyFileError,
    RingIdentity,
    masking_keyring_path,
    open_masking_keyring,
    record_masking_rotation,
    settle_masking_ring,
)
from gateway.settings import Settings
from gateway.wiring import build_runtime
from masking import KeyRing
from tests.audit.helpers import make_event

KEK = "5a" * 32


def _host(tmp_path: Path, name: str, database: str, kek: str = KEK) -> Settings:
    return Settings(data_dir=tmp_path / name, database_url=database, masking_kek=SecretStr(kek))


def _start(host: Settings, actor: str) -> KeyRing:
    """What a start does with the ring: read it (made where none is and the database allows), then settle
    it against the database."""
    ring, made = open_masking_keyring(host)
    settle_masking_ring(host, ring, made=made, record_as=actor)
    return ring


def _events(database: str) -> list[dict[str, object]]:
    engine = make_engine(database)
    try:
        with engine.connect() as connection:
            bodies = connection.execute(select(audit_events.c.body).order_by(audit_events.c.seq)).scalars()
            return [json.loads(body) for body in bodies]
    finally:
        engine.dispose()


def _recorded(database: str) -> list[dict[str, object]]:
    return [e for e in _events(database) if e["kind"] == RING_RECORDED]


def _env(host: Settings) -> dict[str, str | None]:
    return {
        "GRASSROOTS_DATA_DIR": str(host.data_dir),
        "GRASSROOTS_DATABASE_URL": host.database_url,
        "GRASSROOTS_MASKING_KEK": KEK,
        "GRASSROOTS_MODE": None,
        "GRASSROOTS_DEV_IDP_ENABLED": "true",
        "GRASSROOTS_AUDIT_HMAC_KEY_ID": None,
        "GRASSROOTS_OIDC_ISSUER": None,
    }


def _copy_ring(source: Settings, target: Settings) -> None:
    target.keys_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(masking_keyring_path(source), masking_keyring_path(target))


def test_two_hosts_starting_at_once_on_a_fresh_database_agree_on_one_ring(
    tmp_path: Path, database: str
) -> None:
    hosts = {name: _host(tmp_path, name, database) for name in ("host-a", "host-b")}
    both_made = threading.Barrier(2)
    outcomes: dict[str, KeyRing | KeyFileError] = {}

    def start(name: str) -> None:
        host = hosts[name]
        ring, made = open_masking_keyring(host)  # nothing served yet: each makes a ring
        assert made
        both_made.wait()  # then both record at once, each with an engine of its own
        try:
            settle_masking_ring(host, ring, made=made, record_as=f"cli:operator@{name}")
            outcomes[name] = ring
        except KeyFileError as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=start, args=(name,)) for name in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Exactly one winner, recorded once; the loser refused, its ring removed, told whose file to copy.
    (winner,) = [name for name, outcome in outcomes.items() if isinstance(outcome, KeyRing)]
    (loser,) = [name for name, outcome in outcomes.items() if isinstance(outcome, KeyFileError)]
    refused = outcomes[loser]
    assert isinstance(refused, KeyFileError)
    (recorded,) = _recorded(database)
    assert recorded["actor"] == f"cli:operator@{winner}"
    ring = outcomes[winner]
    assert isinstance(ring, KeyRing)
    assert RingIdentity.from_json(recorded["details"]["ring"]) == RingIdentity.of(ring)  # type: ignore[index]
    loser_file = masking_keyring_path(hosts[loser])
    assert not loser_file.exists() and masking_keyring_path(hosts[winner]).exists()
    assert refused.message_zh.startswith("另一台网关主机先在本数据库上启动")
    assert (
        f"请从 cli:operator@{winner} 所在的主机把 masking-keyring.json 复制到 {loser_file}"
        in refused.message_zh
    )
    assert f"Copy masking-keyring.json from the host of cli:operator@{winner} to {loser_file}" in (
        refused.message_en
    )

    # Started again as told, with the winner's ring: it starts, and nothing more is recorded.
    _copy_ring(hosts[winner], hosts[loser])
    _start(hosts[loser], f"cli:operator@{loser}")
    assert len(_recorded(database)) == 1


def test_a_host_without_the_ring_makes_none_once_one_is_recorded(tmp_path: Path, database: str) -> None:
    first, second = _host(tmp_path, "host-a", database), _host(tmp_path, "host-b", database)
    _start(first, "cli:operator@host-a")
    # Nothing served yet, but the ring is recorded: a second host started later is told to copy it.
    with pytest.raises(KeyFileError) as refused:
        _start(second, "cli:operator@host-b")
    assert "审计日志第 1 号事件记载了它（由 cli:operator@host-a 记录）" in refused.value.message_zh
    assert "audit event 1 records it (recorded by cli:operator@host-a)" in refused.value.message_en
    assert not masking_keyring_path(second).exists()


def test_a_copy_from_before_a_rotation_is_refused(tmp_path: Path, database: str) -> None:
    rotating, stale = _host(tmp_path, "host-a", database), _host(tmp_path, "host-b", database)
    _start(rotating, "cli:operator@host-a")
    _copy_ring(rotating, stale)
    rotated = CliRunner().invoke(grassroots, ["keys", "rotate"], env=_env(rotating))
    assert rotated.exit_code == 0, (rotated.stdout, rotated.stderr, rotated.exception)
    # The rotation and the ring it made recorded together.
    kinds = [e["kind"] for e in _events(database)]
    assert kinds == [RING_RECORDED, "keys.rotated", RING_RECORDED]

    with pytest.raises(KeyFileError) as refused:
        _start(stale, "cli:operator@host-b")
    path = masking_keyring_path(stale)
    assert refused.value.message_zh.startswith(f"脱敏数据密钥环 {path} 中没有审计日志第 3 号事件")
    assert "记载的密钥 k2：这是 grassroots keys rotate 之前的旧副本" in refused.value.message_zh
    assert "lacks the keys k2 that audit event 3 (recorded by cli:" in refused.value.message_en
    assert path.exists()  # a copy this host did not make is left as it is

    # The keys commands refuse it the same way (exit 2, bilingual, nothing recorded), as does serve.
    again = CliRunner().invoke(grassroots, ["keys", "rotate"], env=_env(stale))
    assert again.exit_code == 2
    zh, en = again.stderr.splitlines()[:2]
    assert zh.startswith(f"脱敏数据密钥环 {path} 中没有") and en.startswith(
        f"the masking key ring {path} lacks"
    )
    assert len(_events(database)) == 3
    exit_code, stderr = _serve(stale)
    assert exit_code == 2 and stderr.startswith(f"脱敏数据密钥环 {path} 中没有")
    with pytest.raises(KeyFileError, match="lacks the keys k2"):
        build_runtime(stale)  # a worker of `serve --workers N` (re)started on it, after kill -HUP say

    _copy_ring(rotating, stale)  # the current copy
    _start(stale, "cli:operator@host-b")
    exit_code, stderr = _serve(stale)
    assert exit_code == 2 and "Cannot listen" in stderr  # past every key check, to the taken port


def test_another_deployments_ring_is_refused(tmp_path: Path, database: str) -> None:
    ours, theirs = _host(tmp_path, "host-a", database), _host(tmp_path, "host-b", database)
    _start(ours, "cli:operator@host-a")
    # A ring of another deployment (made on its own database), under the same KEK value.
    elsewhere = _host(tmp_path, "other", f"sqlite:///{tmp_path / 'other' / 'gateway.db'}")
    open_masking_keyring(elsewhere)
    _copy_ring(elsewhere, theirs)
    with pytest.raises(KeyFileError) as refused:
        _start(theirs, "cli:operator@host-b")
    path = masking_keyring_path(theirs)
    assert refused.value.message_zh.startswith(f"脱敏数据密钥环 {path} 不是本部署的密钥环：其中的密钥 k1")
    assert (
        "differ from what audit event 1 (recorded by cli:operator@host-a) records" in refused.value.message_en
    )
    assert "another deployment's ring" in refused.value.message_en
    assert path.exists()
    exit_code, stderr = _serve(theirs)
    assert exit_code == 2 and stderr.startswith(f"脱敏数据密钥环 {path} 不是本部署的密钥环")
    assert len(_recorded(database)) == 1


def test_a_database_in_use_before_identities_records_the_ring_at_its_first_start(
    tmp_path: Path, database: str
) -> None:
    """Upgrade: a deployment that served data and rotated k1 -> k2 before rings were recorded. Its first
    start records the ring it has (the older checks vouched for it); a copy lacking the key the recorded
    rotation made active is refused even before that."""
    host, stale = _host(tmp_path, "host-a", database), _host(tmp_path, "host-b", database)
    ring = KeyRing.generate(bytes.fromhex(KEK))
    stale_ring = KeyRing.from_json(bytes.fromhex(KEK), ring.to_json())
    ring.rotate()
    for settings, kept in ((host, ring), (stale, stale_ring)):
        settings.keys_dir.mkdir(parents=True)
        masking_keyring_path(settings).write_text(kept.to_json())
    engine = make_engine(database)
    try:
        rotation = {"before": "k1", "after": "k2"}
        AuditLog(engine).append_many(
            [make_event(1), offline_change_event("keys.rotated", "cli:operator@host-a", rotation)]
        )
    finally:
        engine.dispose()

    with pytest.raises(KeyFileError) as refused:
        _start(stale, "cli:operator@host-b")
    assert "中没有密钥 k2，而审计日志第 2 号事件记载数据密钥已轮换为 k2" in refused.value.message_zh
    assert (
        "lacks key k2, which audit event 2 records the masking data key rotated to"
        in refused.value.message_en
    )
    assert _recorded(database) == []

    _start(host, "cli:operator@host-a")
    (recorded,) = _recorded(database)
    assert recorded["details"]["ring"] == RingIdentity.of(ring).to_json()  # type: ignore[index]
    assert recorded["details"]["reason"] == "first_start"  # type: ignore[index]
    _start(host, "cli:operator@host-a")  # and the next start only checks
    assert len(_recorded(database)) == 1
    with pytest.raises(KeyFileError, match="lacks the keys k2"):
        _start(stale, "cli:operator@host-b")


def test_a_rotation_of_a_ring_another_host_rotated_meanwhile_is_refused(
    tmp_path: Path, database: str
) -> None:
    host = _host(tmp_path, "host-a", database)
    ring = _start(host, "cli:operator@host-a")
    before = RingIdentity.of(ring)
    # Both hosts read k1 and rotate their copy: the first is recorded, the second is refused.
    first, second = (KeyRing.from_json(bytes.fromhex(KEK), ring.to_json()) for _ in range(2))
    first.rotate(), second.rotate()
    engine = make_engine(database)
    try:
        details = {"before": "k1", "after": "k2"}
        record_masking_rotation(engine, details, actor="cli:a@x", before=before, after=RingIdentity.of(first))
        with pytest.raises(KeyFileError, match="probably rotated on another host just now"):
            record_masking_rotation(
                engine, details, actor="cli:b@y", before=before, after=RingIdentity.of(second)
            )
    finally:
        engine.dispose()
    assert [e["actor"] for e in _events(database) if e["kind"] == "keys.rotated"] == ["cli:a@x"]


def test_replace_lost_ring_records_the_new_ring(tmp_path: Path, database: str) -> None:
    host, other = _host(tmp_path, "host-a", database), _host(tmp_path, "host-b", database)
    _start(host, "cli:operator@host-a")
    _copy_ring(host, other)
    masking_keyring_path(host).unlink()
    replaced = CliRunner().invoke(grassroots, ["keys", "replace-lost-ring"], env=_env(host))
    assert replaced.exit_code == 0, (replaced.stdout, replaced.stderr, replaced.exception)
    new_ring = _start(host, "cli:operator@host-a")
    assert _recorded(database)[-1]["details"]["ring"] == RingIdentity.of(new_ring).to_json()  # type: ignore[index]
    # A host still holding the ring declared lost does not serve with it.
    with pytest.raises(KeyFileError, match="is not this deployment's"):
        _start(other, "cli:operator@host-b")


def test_the_recorded_identity_reveals_no_key_and_survives_a_new_kek(tmp_path: Path) -> None:
    kek, new_kek = bytes.fromhex(KEK), bytes.fromhex("a5" * 32)
    ring = KeyRing.generate(kek)
    ring.rotate()
    identity = RingIdentity.of(ring)
    assert RingIdentity.of(ring.rewrap(new_kek)) == identity  # the same keys, whatever wraps them
    assert RingIdentity.of(KeyRing.generate(kek)) != RingIdentity.of(KeyRing.generate(kek))
    recorded = json.dumps(identity.to_json())
    for key in json.loads(ring.to_json())["keys"]:
        assert key["wrapped"] not in recorded
    assert set(identity.to_json()) == {"active", "keys"}


def _serve(host: Settings) -> tuple[int, str]:
    """``serve`` on a port already taken: a gateway past every key check stops at the port probe."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = CliRunner().invoke(grassroots, ["serve", "--port", port], env=_env(host))
    assert "Traceback" not in result.stdout + result.stderr
    return result.exit_code, result.stderr


def test_two_processes_of_one_host_making_the_ring_at_once_keep_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ring is linked into place only where none is: a process that made one just after another did
    reads the other's (a rename let it overwrite the file the first was already serving with)."""
    import gateway.keys

    host = _host(tmp_path, "host-a", f"sqlite:///{tmp_path / 'no-database' / 'gateway.db'}")
    first = KeyRing.generate(bytes.fromhex(KEK))

    def the_other_process_made_it_meanwhile(settings: Settings) -> None:
        settings.keys_dir.mkdir(parents=True, exist_ok=True)
        masking_keyring_path(settings).write_text(first.to_json())

    monkeypatch.setattr(gateway.keys, "_ring_in_use", the_other_process_made_it_meanwhile)
    ring, made = open_masking_keyring(host)
    assert not made and RingIdentity.of(ring) == RingIdentity.of(first)
    assert masking_keyring_path(host).read_text() == first.to_json()
    assert [p.name for p in host.keys_dir.iterdir() if p.name.endswith(".tmp")] == []


def test_a_ring_is_made_where_the_file_system_has_no_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    host = _host(tmp_path, "host-a", f"sqlite:///{tmp_path / 'no-database' / 'gateway.db'}")
    ring, made = open_masking_keyring(host)
    assert made and masking_keyring_path(host).read_text() == ring.to_json()
    assert [p.name for p in host.keys_dir.iterdir() if p.name.endswith(".tmp")] == []


# One host's start, as a process of its own: make the ring, wait until the other host has made its own
# (a file each writes when done), then record it. Prints "won" or the refusal's Chinese message.
_RACER = """
import sys, time
from pathlib import Path
from pydantic import SecretStr
from gateway.keys import KeyFileError, open_masking_keyring, settle_masking_ring
from gateway.settings import Settings

data_dir, database, kek, mine, theirs, actor = sys.argv[1:]
host = Settings(data_dir=Path(data_dir), database_url=database, masking_kek=SecretStr(kek))
ring, made = open_masking_keyring(host)
Path(mine).touch()
deadline = time.monotonic() + 60
while not Path(theirs).exists():
    if time.monotonic() > deadline:
        sys.exit("the other host never made its ring")
    time.sleep(0.001)
try:
    settle_masking_ring(host, ring, made=made, record_as=actor)
except KeyFileError as exc:
    print(exc.message_zh)
else:
    print("won" if made else "not made")
"""


@pytest.mark.parametrize("attempt", range(3))
def test_two_host_processes_starting_at_once_agree_on_one_ring(
    tmp_path: Path, database: str, attempt: int
) -> None:
    """The race above between processes, not threads: SQLite's locks are the file system's between
    processes (BEGIN IMMEDIATE), and PostgreSQL's advisory lock is held by each process's own session."""
    import subprocess
    import sys

    hosts = {name: _host(tmp_path, name, database) for name in ("host-a", "host-b")}
    made = {name: tmp_path / f"{name}.made" for name in hosts}
    other = {"host-a": "host-b", "host-b": "host-a"}
    racers = {
        name: subprocess.Popen(
            [
                sys.executable,
                "-c",
                _RACER,
                str(host.data_dir),
                database,
                KEK,
                str(made[name]),
                str(made[other[name]]),
                f"cli:operator@{name}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, host in hosts.items()
    }
    said = {}
    for name, racer in racers.items():
        out, err = racer.communicate(timeout=120)
        assert racer.returncode == 0, err
        said[name] = out.strip()

    (winner,) = [name for name, words in said.items() if words == "won"]
    loser = other[winner]
    assert said[loser].startswith("另一台网关主机先在本数据库上启动"), said[loser]
    (recorded,) = _recorded(database)
    assert recorded["actor"] == f"cli:operator@{winner}"
    ring = KeyRing.from_json(bytes.fromhex(KEK), masking_keyring_path(hosts[winner]).read_text())
    assert RingIdentity.from_json(recorded["details"]["ring"]) == RingIdentity.of(ring)  # type: ignore[index]
    assert not masking_keyring_path(hosts[loser]).exists()
