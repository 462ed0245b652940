"""Where the gateway's secrets come from.

Production: from configuration (``SecretStr``) or key files the operator provides; placeholders refused by
``Settings``. Development: generated once under ``<data_dir>/keys`` (mode 0600) so the demo needs no setup.
Key material is never printed or logged.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pydantic import SecretStr

from gateway.settings import RunMode, Settings
from grassroots_common.files import fsync_directory

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from audit import PseudonymRing
    from masking import KeyRing


class KeyFileError(Exception):
    """A key file the gateway reads cannot be used (or must not be made); ``str()`` is Chinese then English,
    naming the file and what to do, never its content."""

    def __init__(self, message_zh: str, message_en: str) -> None:
        super().__init__(f"{message_zh}\n{message_en}")
        self.message_zh = message_zh
        self.message_en = message_en


def _read_key_file(path: Path, nbytes: int) -> bytes:
    """The key in ``path`` (hex), refusing one others may read (as the Ed25519 key files are refused), one
    that cannot be read and one that is not ``nbytes`` bytes of hex: each was a traceback, and a too-open
    file was used as it was."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise KeyFileError(
            f"密钥文件 {path} 无法读取（{reason}）：请让运行网关的用户可读它（权限 600）后重试",
            f"the key file {path} cannot be read ({reason}): make it readable by the user the gateway runs "
            "as (mode 600) and try again",
        ) from None
    if mode & 0o077:
        raise KeyFileError(
            f"密钥文件 {path} 的权限为 {mode:o}，本机其他用户也能读取，请改为 600（chmod 600 {path}）后重试",
            f"the key file {path} has mode {mode:o}, readable by other users of this host; restrict it to "
            f"600 (chmod 600 {path}) and try again",
        )
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != nbytes:
        raise KeyFileError(
            f"密钥文件 {path} 的内容不是 {nbytes} 字节的十六进制密钥（文件被截断或改动过）："
            "请从备份恢复该文件后重试",
            f"the key file {path} does not hold a {nbytes}-byte hex key (truncated or edited): restore it "
            "from a backup and try again",
        )
    return key


def _read_or_create(path: Path, nbytes: int = 32, *, needed_by: tuple[str, str] | None = None) -> bytes:
    """The development key in ``path``, made on first use. ``needed_by``: why a missing file must not be
    made afresh (what was written under the lost key, Chinese and English)."""
    if path.exists():
        return _read_key_file(path, nbytes)
    if needed_by is not None:
        zh, en = needed_by
        raise KeyFileError(
            f"密钥文件 {path} 不存在，但{zh}：新生成的密钥打不开、也查不到以前用原密钥写下的内容。"
            "请从备份恢复该文件（或在网关的目录中运行，GRASSROOTS_DATA_DIR 相对于当前目录）后重试；"
            "未生成新密钥",
            f"the key file {path} does not exist, but {en}: a new key would neither open nor find what the "
            "old one wrote. Restore the file from a backup (or run in the gateway's directory: "
            "GRASSROOTS_DATA_DIR is relative to the current one) and try again; no new key was made",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_bytes(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value.hex())
        _synced(fh)
    fsync_directory(path.parent)
    return value


def _secret(
    settings: Settings,
    configured: SecretStr | None,
    dev_file: str,
    needed_by: tuple[str, str] | None = None,
) -> bytes:
    if configured is not None:
        return configured.get_secret_value().encode()
    if settings.mode is RunMode.production:  # Settings already refuses this; defence in depth.
        raise RuntimeError("secret not configured in production mode")
    return _read_or_create(settings.keys_dir / dev_file, needed_by=needed_by)


@contextmanager
def _existing_database(settings: Settings) -> Iterator[Engine | None]:
    """An engine on the gateway's database, or ``None`` where there is no
    database file yet: whether a key is in use is read, and no database is created on the way."""
    from gateway.db import make_engine, missing_sqlite_file

    url = settings.effective_database_url
    if missing_sqlite_file(url):
        yield None
        return
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def _tables(engine: Engine) -> set[str]:
    from sqlalchemy import inspect

    return set(inspect(engine).get_table_names())


def _refs_written_under(settings: Settings, key_id: str) -> bool:
    """Whether the audit log already names residents by refs under ``key_id`` (``<key id>:<hex>``, the
    primary key of ``audit_subject_refs``, so one index range). Creates no database on the way."""
    from sqlalchemy import select

    from audit.tables import AuditSubjectRefRow

    with _existing_database(settings) as engine:
        if engine is None or AuditSubjectRefRow.__tablename__ not in _tables(engine):
            return False
        ref = AuditSubjectRefRow.subject_ref
        # ';' follows ':' in ASCII: every ref of this key id and nothing else.
        query = select(ref).where(ref >= f"{key_id}:", ref < f"{key_id};").limit(1)
        with engine.connect() as connection:
            return connection.execute(query).first() is not None


def latest_rotation(engine: Engine, keys: str) -> int | None:
    """The seq of the latest ``keys.rotated`` event of ``keys`` (``"checkpoint"``, ``"audit_ref"``), or
    ``None``. Rotations are rare (a key a year, a few masking keys): every one is read. The masking data
    keys' rotations (no ``keys``) are read with the ring records (:func:`_recorded_ring`)."""
    from audit import EventQuery
    from audit.query import iter_events

    seqs = [
        e.seq for e in iter_events(engine, EventQuery(kind="keys.rotated")) if e.details.get("keys") == keys
    ]
    return seqs[-1] if seqs else None


def audit_hmac_key(settings: Settings) -> bytes:
    """The configured audit-ref key; in development ``audit-hmac.key``, made on first use but never again
    once the log names residents under its key id: a fresh key under the same id would make every earlier
    access unfindable (complaints, transparency) and the id name two keys for good."""
    needed_by: tuple[str, str] | None = None
    if (
        settings.audit_hmac_key is None
        and not (settings.keys_dir / "audit-hmac.key").exists()
        and _refs_written_under(settings, settings.audit_hmac_key_id)
    ):
        key_id = settings.audit_hmac_key_id
        needed_by = (
            f"审计日志中已有用它（密钥编号 {key_id}）写下的居民引用",
            f"the audit log already names residents by refs under it (key id {key_id})",
        )
    return _secret(settings, settings.audit_hmac_key, "audit-hmac.key", needed_by)


def masking_kek(settings: Settings) -> bytes:
    """The key-encryption key; in development ``masking-kek.key``, made on first use but never while a ring
    wrapped under it is there: a new KEK opens neither ring, and said only "set GRASSROOTS_MASKING_KEK"."""
    from masking import parse_kek

    if settings.masking_kek is not None:
        return parse_kek(settings.masking_kek.get_secret_value())
    wrapped = [p.name for p in (masking_keyring_path(settings), audit_ref_keys_path(settings)) if p.exists()]
    needed_by = (
        (
            f"用它加密保存的密钥环 {'、'.join(wrapped)} 还在"
            "（网关若以 GRASSROOTS_MASKING_KEK 配置主密钥，请在本命令的环境中设置同一值）",
            f"the key rings wrapped under it are there ({', '.join(wrapped)}; if the gateway has "
            "GRASSROOTS_MASKING_KEK set, set the same value for this command)",
        )
        if wrapped
        else None
    )
    return _secret(settings, None, "masking-kek.key", needed_by)


def masking_keyring_path(settings: Settings) -> Path:
    return settings.keys_dir / "masking-keyring.json"


def load_masking_keyring(settings: Settings, *, replacing_a_lost_ring: bool = False) -> KeyRing:
    """The data-key ring (wrapped under the KEK), created with one active key on first use, but never
    while the database shows this deployment already masks under a ring (:func:`_ring_in_use`): a host
    whose copy was not made (or was lost) would otherwise mask under keys of its own, so the same resident
    got other pseudonyms there and nothing it sealed could be opened elsewhere, or what was sealed before
    by it. ``replacing_a_lost_ring``: ``keys replace-lost-ring``, the operator's deliberate choice.

    Whether the ring is the one the database records is :func:`settle_masking_ring`'s to say."""
    return open_masking_keyring(settings, replacing_a_lost_ring=replacing_a_lost_ring)[0]


def open_masking_keyring(settings: Settings, *, replacing_a_lost_ring: bool = False) -> tuple[KeyRing, bool]:
    """:func:`load_masking_keyring`, and whether this call made the ring (it was not there). Two processes
    of one host making it at once agree on one: the file is linked into place only where none is, and the
    slower one reads the faster one's."""
    from masking import KeyRing

    kek = masking_kek(settings)
    path = masking_keyring_path(settings)
    if path.exists():
        return KeyRing.from_json(kek, path.read_text()), False
    if not replacing_a_lost_ring:
        in_use = _ring_in_use(settings)
        if in_use is not None:
            zh, en = in_use
            raise KeyFileError(
                f"脱敏数据密钥环 {path} 不存在，但本部署已在使用密钥环（{zh}）：在这里新建的密钥环打不开以前"
                "加密的内容，同一居民也会得到不同的化名。请从备份或另一台网关主机把 masking-keyring.json "
                f"复制到 {path}（各主机用同一份）后重试；确已无任何副本时，运行 grassroots keys "
                "replace-lost-ring（记入审计日志）。未生成新密钥环",
                f"the masking key ring {path} does not exist, but this deployment already masks under one "
                f"({en}): a ring made here would open nothing sealed before and give residents other "
                "pseudonyms. Copy masking-keyring.json from a backup or another gateway host to "
                f"{path} (the same file on every host) and try again; if no copy exists anywhere, run "
                "grassroots keys replace-lost-ring (recorded in the audit log). No new ring was made",
            )
    ring = KeyRing.generate(kek)
    if stage_masking_keyring(settings, ring).put_in_place_if_absent():
        return ring, True
    return KeyRing.from_json(kek, path.read_text()), False


def _ring_in_use(settings: Settings) -> tuple[str, str] | None:
    """Why the database shows a masking key ring was in use (Chinese, English), or ``None``: data served
    (an allowed ``data.*`` event: masked under the ring's keys), a recorded rotation of it, or an outbound
    credential sealed under it. Creates no database on the way."""
    from sqlalchemy import select

    from admission.tables import SystemRow
    from audit.tables import AuditEventRow

    with _existing_database(settings) as engine:
        if engine is None:
            return None
        tables = _tables(engine)
        if AuditEventRow.__tablename__ in tables:
            events = AuditEventRow.__table__.c
            with engine.connect() as connection:
                served = connection.execute(
                    select(events.seq)
                    .where(events.kind.startswith("data."), events.outcome == "allowed")
                    .order_by(events.seq)
                    .limit(1)
                ).scalar()
            if served is not None:
                return (
                    f"审计日志第 {served} 号事件起已按它脱敏提供数据",
                    f"data masked under it was served from audit event {served} on",
                )
            with engine.connect() as connection:
                recorded = _recorded_ring(connection)
            rotated = recorded.rotated_seq
            if rotated is not None:
                return (
                    f"审计日志第 {rotated} 号事件记载它已轮换过",
                    f"audit event {rotated} records a rotation of it",
                )
            if recorded.identity is not None:
                return (
                    f"审计日志第 {recorded.seq} 号事件记载了它（由 {recorded.actor} 记录）",
                    f"audit event {recorded.seq} records it (recorded by {recorded.actor})",
                )
        if SystemRow.__tablename__ in tables:
            systems = SystemRow.__table__.c
            with engine.connect() as connection:
                sealed = connection.execute(
                    select(systems.system_id)
                    .where(systems.outbound_credential_ciphertext.is_not(None))
                    .limit(1)
                ).scalar()
            if sealed is not None:
                return (
                    "已有部门系统的出站凭据用它加密保存",
                    "a system's outbound credential is sealed under it",
                )
        return None


# -- which masking key ring the database records ----------------------------------------------------
#
# Every host of a deployment must mask under the same ring (the same resident, the same pseudonym; what one
# host sealed, every host opens). The ring is a file each host keeps; the database, which they share, says
# which ring it is: a ``keys.ring_recorded`` audit event holding the ring's identity (:class:`RingIdentity`),
# appended by the first start on the database and again, in the same transaction, by each rotation. The
# latest such event is the ring in use. A start whose ring is not it is refused.

#: The audit event recording which masking key ring the deployment uses.
RING_RECORDED = "keys.ring_recorded"
# One PostgreSQL advisory lock for every reader-then-recorder of the ring (they are per database).
_RING_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"grassroots-masking-ring-identity").digest()[:8], "big", signed=True
)


@dataclass(frozen=True)
class RingIdentity:
    """Which keys a masking key ring holds, as the database records it: the active key id and each key's
    fingerprint (:meth:`masking.KeyRing.fingerprint`, an HMAC of a fixed label under the key), never a key
    or anything a key could be found from. Per key rather than one digest of the ring, so a refusal can say
    which key is missing (a copy from before a rotation) or not this deployment's (another one's ring).
    Independent of the KEK: a ring rewrapped under a new KEK is the same ring."""

    active: str
    fingerprints: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, ring: KeyRing) -> RingIdentity:
        return cls(ring.active_key_id, tuple(sorted((kid, ring.fingerprint(kid)) for kid in ring.key_ids)))

    def to_json(self) -> dict[str, object]:
        return {"active": self.active, "keys": dict(self.fingerprints)}

    @classmethod
    def from_json(cls, doc: object) -> RingIdentity:
        """The identity an event records; one that cannot be read is an identity no ring has (fail closed:
        every ring is refused until it is looked into)."""
        if isinstance(doc, dict):
            active, keys = doc.get("active"), doc.get("keys")
            if isinstance(active, str) and isinstance(keys, dict):
                return cls(active, tuple(sorted((str(k), str(v)) for k, v in keys.items())))
        return cls("", ())


@dataclass(frozen=True)
class RecordedRing:
    """What the audit log says of the masking key ring in use: the identity of the latest
    ``keys.ring_recorded`` event (``None``: none yet, or a masking rotation recorded after it by a release
    that did not record identities), that event's seq and actor, and the key id the latest masking rotation
    made active, with its seq."""

    identity: RingIdentity | None = None
    seq: int | None = None
    actor: str | None = None
    rotated_to: str | None = None
    rotated_seq: int | None = None


def _recorded_ring(connection: Connection) -> RecordedRing:
    """Read :class:`RecordedRing` (rings are recorded and rotated rarely: every such event is read)."""
    from sqlalchemy import select

    from audit.tables import audit_events

    c = audit_events.c
    query = select(c.seq, c.body).where(c.kind.in_((RING_RECORDED, "keys.rotated"))).order_by(c.seq)
    recorded = RecordedRing()
    for seq, body in connection.execute(query):
        event = json.loads(body)
        details = event.get("details") or {}
        if event["kind"] == RING_RECORDED:
            recorded = RecordedRing(
                RingIdentity.from_json(details.get("ring")),
                seq,
                event["actor"],
                recorded.rotated_to,
                recorded.rotated_seq,
            )
        elif details.get("keys") is None:  # a masking rotation (the other rings' carry "keys")
            after = details.get("after")
            recorded = RecordedRing(None, None, None, after if isinstance(after, str) else None, seq)
    return recorded


@contextmanager
def _ring_records_locked(engine: Engine) -> Iterator[Connection]:
    """A transaction in which the recorded ring is read and, when so decided, a new one appended, one at a
    time across every process and host of the database: of two starting at once on a database that records
    no ring, the second reads what the first appended (insert-if-absent), and of two rotations of the same
    ring the second sees that the first changed it. SQLite: its write lock, taken at BEGIN (the audit
    append needs it anyway); PostgreSQL: a transaction-level advisory lock (which needs no privilege on the
    audit tables), taken before the read. Raises ``AuditUnavailable`` when the database fails."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from audit import AuditUnavailable

    try:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _RING_LOCK_KEY})
            try:
                yield connection
            except BaseException:
                connection.rollback()
                raise
            connection.commit()
    except SQLAlchemyError as exc:
        raise AuditUnavailable(f"masking ring record unavailable ({type(exc).__name__})") from None


def settle_masking_ring(settings: Settings, ring: KeyRing, *, made: bool, record_as: str | None) -> None:
    """Refuse (:class:`KeyFileError`) a masking key ring that is not the one the database records: other
    keys (another deployment's ring, or one made on this host while another host made the recorded one) or
    fewer (a copy from before ``keys rotate``); where none is recorded, one lacking the key the latest
    recorded rotation made active. Where none is recorded, record this one (``keys.ring_recorded``) as
    ``record_as`` (the actor, ``cli:<OS user>@<host>``; ``None``: check only): the first start on a
    database (or, on a database in use before identities were recorded, the first start after the
    upgrade, whose ring the older checks vouched for). ``made``: the caller made the ring just now;
    refused, it is removed again, so the next start does not find it. Nothing to check against where
    there is no migrated database yet.

    Raises ``AuditUnavailable`` when the database cannot be read or written."""
    from audit import AuditLog
    from audit.tables import audit_events
    from gateway.changes import offline_change_event

    identity = RingIdentity.of(ring)
    with _existing_database(settings) as engine:
        if engine is None or audit_events.name not in _tables(engine):
            return
        with _ring_records_locked(engine) as connection:
            recorded = _recorded_ring(connection)
            refusal = _ring_refusal(settings, identity, recorded, made=made)
            if refusal is None and recorded.identity is None and record_as is not None:
                details = {"ring": identity.to_json(), "reason": "first_start"}
                AuditLog(engine).append_within(
                    connection, [offline_change_event(RING_RECORDED, record_as, details)]
                )
    if refusal is not None:
        if made:
            _remove_ring_made_here(settings, ring)
        raise refusal


def record_masking_rotation(
    engine: Engine,
    details: Mapping[str, object],
    *,
    actor: str,
    before: RingIdentity | None,
    after: RingIdentity,
) -> None:
    """Record a masking rotation (``keys.rotated`` with ``details``) and the ring it makes the one in use
    (``keys.ring_recorded``) in one transaction: the log never names a rotation without the ring after it.
    ``before``: the ring rotated, which must still be the one recorded (or none be recorded): a host that
    rotated its copy while another host rotated theirs is refused (:class:`KeyFileError`), nothing recorded,
    instead of leaving two rings each recorded once. ``None``: ``keys replace-lost-ring``, whatever was
    recorded. Raises ``AuditUnavailable`` when the log cannot be written."""
    from audit import AuditLog
    from gateway.changes import offline_change_event

    with _ring_records_locked(engine) as connection:
        recorded = _recorded_ring(connection)
        if before is not None and recorded.identity is not None and recorded.identity != before:
            raise KeyFileError(
                f"数据密钥未轮换：数据库记载的脱敏数据密钥环（审计日志第 {recorded.seq} 号事件，由 "
                f"{recorded.actor} 记录）已不是本主机轮换前的那一份，可能另一台主机刚刚轮换过。"
                f"请从 {recorded.actor} 所在的主机复制 masking-keyring.json 到本主机后再决定是否轮换。"
                "未做任何更改，也未写入审计日志",
                f"masking data key not rotated: the masking key ring the database records (audit event "
                f"{recorded.seq}, recorded by {recorded.actor}) is no longer the one this host rotated, "
                f"probably rotated on another host just now. Copy masking-keyring.json from the host of "
                f"{recorded.actor} to this host, then decide whether to rotate. Nothing was changed or "
                "recorded",
            )
        ring_details = {"ring": after.to_json(), "reason": "lost_ring" if before is None else "rotated"}
        AuditLog(engine).append_within(
            connection,
            [
                offline_change_event("keys.rotated", actor, details),
                offline_change_event(RING_RECORDED, actor, ring_details),
            ],
        )


def _ring_refusal(
    settings: Settings, identity: RingIdentity, recorded: RecordedRing, *, made: bool
) -> KeyFileError | None:
    """Why the ring ``identity`` is not the one ``recorded`` (Chinese, English), or ``None``."""
    path = masking_keyring_path(settings)
    have = dict(identity.fingerprints)
    if recorded.identity is None:
        stale = recorded.rotated_to
        if stale is None or stale in have:
            return None
        return KeyFileError(
            f"脱敏数据密钥环 {path} 中没有密钥 {stale}，而审计日志第 {recorded.rotated_seq} 号事件记载"
            f"数据密钥已轮换为 {stale}：这是轮换之前的旧副本，用它服务会按旧密钥脱敏，"
            "也打不开新密钥加密的内容。请从运行 grassroots keys rotate 的主机"
            "复制当前的 masking-keyring.json 到这里后重试。未做任何更改",
            f"the masking key ring {path} lacks key {stale}, which audit event {recorded.rotated_seq} "
            "records the masking data key rotated to: it is a copy from before that rotation, which would "
            "mask under the old key and open nothing sealed under the new one. Copy the current "
            "masking-keyring.json from the host that ran grassroots keys rotate to here and try again. "
            "Nothing was changed",
        )
    if identity == recorded.identity:
        return None
    where_zh = f"审计日志第 {recorded.seq} 号事件（由 {recorded.actor} 记录）"
    where_en = f"audit event {recorded.seq} (recorded by {recorded.actor})"
    if made:
        return KeyFileError(
            f"另一台网关主机先在本数据库上启动，{where_zh}已记载它的脱敏数据密钥环为本部署所用："
            f"本主机刚生成的密钥环 {path} 已删除（与它不同，用它服务会给同一居民另一套化名）。"
            f"请从 {recorded.actor} 所在的主机把 masking-keyring.json 复制到 {path}（各主机用同一份）后重试。"
            "网关未启动",
            f"another gateway host started first on this database, and {where_en} records its masking key "
            f"ring as the deployment's: the ring just made here, {path}, was removed (serving with it would "
            f"give residents other pseudonyms). Copy masking-keyring.json from the host of {recorded.actor} "
            f"to {path} (the same file on every host) and try again. Nothing was changed",
        )
    want = dict(recorded.identity.fingerprints)
    foreign = sorted(k for k in have if want.get(k) != have[k])
    missing = sorted(k for k in want if k not in have)
    if foreign:
        return KeyFileError(
            f"脱敏数据密钥环 {path} 不是本部署的密钥环：其中的密钥 {'、'.join(foreign)} 与{where_zh}"
            "记载的不同（另一个部署的密钥环，或另行生成的）。用它服务会给同一居民另一套化名，"
            f"也打不开本部署加密的内容。请从 {recorded.actor} 所在的主机或本部署的备份"
            f"把 masking-keyring.json 复制到 {path} 后重试。未做任何更改",
            f"the masking key ring {path} is not this deployment's: its keys {', '.join(foreign)} differ "
            f"from what {where_en} records (another deployment's ring, or one made apart). Serving with it "
            "would give residents other pseudonyms and open nothing this deployment sealed. Copy "
            f"masking-keyring.json from the host of {recorded.actor} or this deployment's backup to {path} "
            "and try again. Nothing was changed",
        )
    if missing:
        return KeyFileError(
            f"脱敏数据密钥环 {path} 中没有{where_zh}记载的密钥 {'、'.join(missing)}："
            "这是 grassroots keys rotate 之前的旧副本，用它服务会按旧密钥脱敏，也打不开新密钥加密的内容。"
            f"请从 {recorded.actor} 所在的主机复制当前的 masking-keyring.json 到 {path} 后重试。未做任何更改",
            f"the masking key ring {path} lacks the keys {', '.join(missing)} that {where_en} records: it is "
            "a copy from before grassroots keys rotate, which would mask under the old key and open nothing "
            f"sealed under the new one. Copy the current masking-keyring.json from the host of "
            f"{recorded.actor} to {path} and try again. Nothing was changed",
        )
    # The same keys, another one active: not a ring any rotation wrote.
    return KeyFileError(
        f"脱敏数据密钥环 {path} 的启用密钥为 {identity.active}，而{where_zh}记载的是 "
        f"{recorded.identity.active}：该文件被改动过。请从 {recorded.actor} 所在的主机"
        f"复制 masking-keyring.json 到 {path} 后重试。未做任何更改",
        f"the masking key ring {path} has {identity.active} active, but {where_en} records "
        f"{recorded.identity.active}: the file was edited. Copy masking-keyring.json from the host of "
        f"{recorded.actor} to {path} and try again. Nothing was changed",
    )


def _remove_ring_made_here(settings: Settings, ring: KeyRing) -> None:
    """Remove the ring this process made and the database refused, if the file still holds it (another
    process of this host may have put another in its place since)."""
    path = masking_keyring_path(settings)
    try:
        if path.read_text() == ring.to_json():
            path.unlink()
            fsync_directory(path.parent)
    except FileNotFoundError:
        pass


def save_masking_keyring(settings: Settings, ring: KeyRing) -> None:
    """Write atomically: the ring holds only wrapped keys, but keep it owner-only all the same."""
    stage_masking_keyring(settings, ring).put_in_place()


def stage_masking_keyring(settings: Settings, ring: KeyRing) -> StagedKeyFile:
    """The ring written and synced beside its file, not yet in place (see :class:`StagedKeyFile`)."""
    return _stage_owner_only(masking_keyring_path(settings), ring.to_json())


@contextmanager
def key_ring_lock(settings: Settings) -> Iterator[None]:
    """Hold the key rings of this data directory from the moment one is read until the rotated one is saved.

    Two `keys rotate` (or `rotate-audit-ref`) run at once (two terminals, a retried script) each read the
    same ring, added a different key under the same new id, recorded the same "k7 -> k8", and the later save
    overwrote the earlier: one recorded key was gone, with whatever a gateway restarted in between had
    masked under it. Taken in turn now, the second reads the first's ring and adds the next key. ``flock``
    on a file beside the rings: the rings are files of this host (README "Keys"), and the lock goes with
    the process that held it, however it ended."""
    lock = settings.keys_dir / ".key-rings.lock"
    try:
        settings.keys_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        # Before anything is read or recorded: a rotation that could not save its ring would otherwise be
        # recorded as done (and was a traceback).
        reason = exc.strerror or type(exc).__name__
        raise KeyFileError(
            f"密钥未轮换：无法在密钥目录 {settings.keys_dir} 中写入（{reason}）。"
            "请让运行本命令的用户可写该目录（网关的 GRASSROOTS_DATA_DIR 下的 keys）后重试；"
            "未做任何更改，也未写入审计日志",
            f"key not rotated: cannot write in the key directory {settings.keys_dir} ({reason}). Make it "
            "writable by the user running this command (keys under the gateway's GRASSROOTS_DATA_DIR) and "
            "try again; nothing was changed or recorded",
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class StagedKeyFile:
    """A key file's new content, written and synced under a temporary name beside it, not yet in place.

    A rotation stages its ring first, records itself in the audit log, and only then puts the ring in
    place (:meth:`put_in_place`); a ring that cannot be written (disk full, quota) is known before anything
    is recorded, so the log never names a rotation whose key is not kept (a "k7 -> k8" with no k8). If the
    recording fails, :meth:`discard` drops the staged file and the ring stays as it was."""

    def __init__(self, path: Path, staged: Path) -> None:
        self.path = path
        self.staged = staged

    def put_in_place(self) -> None:
        """Rename the staged file over the key file and sync the directory: the rename is on disk before
        this returns. Without the syncs a power cut after a rotation could leave a ring empty under its
        name (the rename reached the disk, the data not yet), and every value masked or pseudonymised under
        its keys could never be opened again."""
        os.replace(self.staged, self.path)
        fsync_directory(self.path.parent)

    def put_in_place_if_absent(self) -> bool:
        """Link the staged file in as the key file unless one is there already (then drop it: False). The
        link either makes the name or fails, so of two processes making the file at once one wins and the
        other reads the winner's, where a rename would have let the second overwrite the first."""
        try:
            os.link(self.staged, self.path)
        except FileExistsError:
            self.discard()
            return False
        except OSError:  # a file system without hard links: renamed, as before
            if self.path.exists():
                self.discard()
                return False
            self.put_in_place()
            return True
        self.discard()
        fsync_directory(self.path.parent)
        return True

    def discard(self) -> None:
        self.staged.unlink(missing_ok=True)


def _stage_owner_only(path: Path, text: str) -> StagedKeyFile:
    """``text`` written owner-only and synced under a temporary name beside ``path``; a file that cannot be
    written whole (no space, a quota, a read-only disk) is removed and refused as :class:`KeyFileError`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            _synced(fh)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        reason = exc.strerror or type(exc).__name__
        raise KeyFileError(
            f"无法写入密钥文件 {path}（{reason}），未做任何更改，也未写入审计日志；"
            "请腾出该磁盘的空间（或解除配额、只读限制）后重试",
            f"cannot write the key file {path} ({reason}); nothing was changed or recorded. Free space on "
            "that disk (or lift the quota or read-only mount) and try again",
        ) from None
    return StagedKeyFile(path, tmp)


def _write_owner_only(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` durably (:func:`_stage_owner_only`, then put in place)."""
    _stage_owner_only(path, text).put_in_place()


def _synced(fh: IO[str]) -> None:
    fh.flush()
    os.fsync(fh.fileno())


# -- the audit-ref key ring -------------------------------------------------------------------------
#
# The configured key (``GRASSROOTS_AUDIT_HMAC_KEY``, or ``audit-hmac.key`` in development) under
# ``GRASSROOTS_AUDIT_HMAC_KEY_ID`` is always kept. ``grassroots keys rotate-audit-ref`` adds keys to
# ``<data_dir>/keys/audit-ref-keys.json``, each wrapped under the masking KEK (AES-256-GCM, the key id as
# associated data), exactly as the masking data keys are kept next to it; the file names which kept key is
# active. No file: the configured key alone, active, as before rotation existed.

_AUDIT_REF_FORMAT = "grassroots-audit-ref-keys/1"
_AUDIT_REF_AAD = b"grassroots-audit-ref-key\x00"


class AuditRefKeysError(KeyFileError):
    """The audit-ref key ring cannot be used or changed as asked; ``str()`` is Chinese then English."""


@dataclass(frozen=True)
class _WrappedRefKey:
    key_id: str
    created_at: str
    nonce: bytes
    wrapped: bytes


@dataclass(frozen=True)
class AuditRefKeys:
    """What ``audit-ref-keys.json`` holds: the active key id, the configured key's id when the ring was
    written (``configured``), and the rotated-in keys, wrapped."""

    active: str
    configured: str
    keys: tuple[_WrappedRefKey, ...] = ()

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": _AUDIT_REF_FORMAT,
                "active": self.active,
                "configured": self.configured,
                "keys": [
                    {
                        "key_id": k.key_id,
                        "created_at": k.created_at,
                        "nonce": k.nonce.hex(),
                        "wrapped": k.wrapped.hex(),
                    }
                    for k in self.keys
                ],
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> AuditRefKeys:
        try:
            doc = json.loads(text)
            if doc.get("format") != _AUDIT_REF_FORMAT:
                raise ValueError("format")
            keys = tuple(
                _WrappedRefKey(
                    key_id=str(k["key_id"]),
                    created_at=str(k["created_at"]),
                    nonce=bytes.fromhex(k["nonce"]),
                    wrapped=bytes.fromhex(k["wrapped"]),
                )
                for k in doc["keys"]
            )
            return cls(active=str(doc["active"]), configured=str(doc["configured"]), keys=keys)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise AuditRefKeysError(
                "审计引用密钥环文件格式无效", "the audit-ref key ring file is malformed"
            ) from None


def audit_ref_keys_path(settings: Settings) -> Path:
    return settings.keys_dir / "audit-ref-keys.json"


def _read_audit_ref_keys(settings: Settings) -> AuditRefKeys:
    path = audit_ref_keys_path(settings)
    if not path.exists():
        return AuditRefKeys(active=settings.audit_hmac_key_id, configured=settings.audit_hmac_key_id)
    return AuditRefKeys.from_json(path.read_text())


def _unwrap_ref_key(kek: bytes, key: _WrappedRefKey) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        return AESGCM(kek).decrypt(key.nonce, key.wrapped, _AUDIT_REF_AAD + key.key_id.encode())
    except (InvalidTag, ValueError):
        raise AuditRefKeysError(
            f"审计引用密钥 {key.key_id} 无法用当前的密钥加密密钥（GRASSROOTS_MASKING_KEK）解开",
            f"audit-ref key {key.key_id} does not open under the current key-encryption key "
            "(GRASSROOTS_MASKING_KEK)",
        ) from None


def load_audit_refs(settings: Settings) -> PseudonymRing:
    """The audit-ref keys this gateway keeps: the active one writes, every one is searched (README "Keys").

    Refuses (fail closed) a ring whose active key is not kept or whose ids repeat the configured key's id:
    a ref's key id must name one key, or a lookup could miss or misattribute events."""
    from audit import Pseudonymizer, PseudonymRing

    stored = _read_audit_ref_keys(settings)
    if stored.configured != settings.audit_hmac_key_id:
        # The configured key's refs in the log carry the id it had at the rotation: under another id a
        # lookup would compute refs that match none of them, and miss every access silently.
        now_id, then_id = settings.audit_hmac_key_id, stored.configured
        raise AuditRefKeysError(
            f"GRASSROOTS_AUDIT_HMAC_KEY_ID 现为 {now_id}，但轮换时为 {then_id}；轮换后不得更改，请改回原值",
            f"GRASSROOTS_AUDIT_HMAC_KEY_ID is {now_id} but was {then_id} at the rotation; it must not change "
            "after a rotation, set it back",
        )
    configured = Pseudonymizer(audit_hmac_key(settings), settings.audit_hmac_key_id)
    kept = {configured.key_id: configured}
    if stored.keys:
        kek = masking_kek(settings)
        for key in stored.keys:
            if key.key_id in kept:
                raise AuditRefKeysError(
                    f"审计引用密钥编号 {key.key_id} 重复（与 GRASSROOTS_AUDIT_HMAC_KEY_ID 或另一把密钥相同）",
                    f"audit-ref key id {key.key_id} is used twice "
                    "(GRASSROOTS_AUDIT_HMAC_KEY_ID or another key)",
                )
            kept[key.key_id] = Pseudonymizer(_unwrap_ref_key(kek, key), key.key_id)
    if stored.active not in kept:
        raise AuditRefKeysError(
            f"审计引用密钥环指定的启用密钥 {stored.active} 不在保留的密钥中",
            f"the audit-ref key ring's active key {stored.active} is not among the kept keys",
        )
    active = kept.pop(stored.active)
    return PseudonymRing(active, tuple(kept.values()))


_NUMBERED_ID = re.compile(r"k(\d+)")


def next_audit_ref_key_id(kept: tuple[str, ...]) -> str:
    """``k<n+1>`` after the highest ``k<n>`` kept (``k2`` after the default ``k1``)."""
    numbers = [int(m.group(1)) for m in map(_NUMBERED_ID.fullmatch, kept) if m is not None]
    return f"k{max(numbers, default=1) + 1}"


def rotate_audit_refs(
    settings: Settings, new_id: str | None = None, *, now: datetime | None = None
) -> tuple[AuditRefKeys, str, str]:
    """A ring with a fresh active key added (not saved: :func:`stage_audit_ref_keys` before the rotation is
    recorded, put in place after), the key id it replaces and the new id. Refuses a new id that is already
    kept (any kept key, active or retired) or not of the ref key-id shape."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from grassroots_common.keyids import KEY_ID_PATTERN

    ring = load_audit_refs(settings)  # refuses a ring that cannot be read before anything is added
    new_id = new_id if new_id is not None else next_audit_ref_key_id(ring.key_ids)
    if KEY_ID_PATTERN.fullmatch(new_id) is None:
        raise AuditRefKeysError(
            "密钥编号只能由 1-16 个字母、数字、下划线或连字符组成",
            "a key id must be 1-16 characters of A-Z, a-z, 0-9, _ or -",
        )
    if new_id in ring.key_ids:
        raise AuditRefKeysError(
            f"密钥编号 {new_id} 已被保留的密钥使用，不能重复（重复的编号会让旧记录的引用指向两把密钥）；"
            f"请换一个编号，现有编号：{'、'.join(ring.key_ids)}",
            f"key id {new_id} is already used by a kept key and cannot repeat (a ref's key id must name one "
            f"key); choose another, kept ids: {', '.join(ring.key_ids)}",
        )
    stored = _read_audit_ref_keys(settings)
    nonce = secrets.token_bytes(12)
    wrapped = AESGCM(masking_kek(settings)).encrypt(
        nonce, secrets.token_bytes(32), _AUDIT_REF_AAD + new_id.encode()
    )
    stamp = (now or datetime.now(UTC)).astimezone(UTC).isoformat()
    fresh = _WrappedRefKey(key_id=new_id, created_at=stamp, nonce=nonce, wrapped=wrapped)
    ring_doc = AuditRefKeys(active=new_id, configured=stored.configured, keys=(*stored.keys, fresh))
    return ring_doc, ring.active.key_id, new_id


def save_audit_ref_keys(settings: Settings, keys: AuditRefKeys) -> None:
    """Write atomically, owner-only: the keys are wrapped, but the file is a key file all the same."""
    stage_audit_ref_keys(settings, keys).put_in_place()


def stage_audit_ref_keys(settings: Settings, keys: AuditRefKeys) -> StagedKeyFile:
    """The ring written and synced beside its file, not yet in place (see :class:`StagedKeyFile`)."""
    return _stage_owner_only(audit_ref_keys_path(settings), keys.to_json())
