"""Where the gateway's secrets come from.

Production: from configuration (``SecretStr``) or key files the operator provides; placeholders refused by
``Settings``. Development: generated once under ``<data_dir>/keys`` (mode 0600) so the demo needs no setup.
Key material is never printed or logged.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pydantic import SecretStr

from gateway.settings import RunMode, Settings
from grassroots_common.files import fsync_directory

if TYPE_CHECKING:
    from sqlalchemy import Engine

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


def latest_rotation(engine: Engine, keys: str | None) -> int | None:
    """The seq of the latest ``keys.rotated`` event of ``keys`` (``"checkpoint"``, ``"audit_ref"``; ``None``:
    the masking data keys, whose events carry no ``keys``), or ``None``. Rotations are rare (a key a year,
    a few masking keys): every one is read."""
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
    by it. ``replacing_a_lost_ring``: ``keys replace-lost-ring``, the operator's deliberate choice."""
    from masking import KeyRing

    kek = masking_kek(settings)
    path = masking_keyring_path(settings)
    if path.exists():
        return KeyRing.from_json(kek, path.read_text())
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
    save_masking_keyring(settings, ring)
    return ring


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
            rotated = latest_rotation(engine, None)
            if rotated is not None:
                return (
                    f"审计日志第 {rotated} 号事件记载它已轮换过",
                    f"audit event {rotated} records a rotation of it",
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

    from audit.pseudonym import KEY_ID_PATTERN

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
