"""Signed checkpoints: (tree size, Merkle root, time) signed with Ed25519, kept outside the database.

The hash chain alone cannot stop someone who rewrites the whole table and recomputes every hash, or who
restores an older copy of the database. A checkpoint — the RFC 6962 §3.5 "signed tree head" idea — pins
the Merkle root of the first ``tree_size`` events under a key the database administrator does not hold,
in a place they cannot rewrite (a directory on another host, a WORM bucket). Verification then checks the
log still contains exactly that prefix (:func:`audit.verify.verify_log`), and RFC 9162 consistency proofs
show one checkpoint extends another.

Files are append-only: a new checkpoint gets a new name (size and time), is written to a temporary file,
fsynced and hard-linked into place — ``link`` fails rather than replace an existing file.

A deliberate restore from an older backup, once accepted (:mod:`audit.restore`), starts a new **epoch**:
its signed record is the epoch's first checkpoint, and every later checkpoint carries the epoch (signed,
and ``-e<N>`` in its name). Positions in the history are (epoch, tree size): the latest checkpoint is the
highest epoch's, and :func:`checkpoint_history` sorts the lost log's checkpoints from the current one's.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import socket
import stat
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from audit import merkle
from audit.anchor import AnchorError, PruneAnchor, latest_anchor
from audit.canonical import canonical_json
from audit.events import format_timestamp, parse_timestamp
from audit.log import AuditIntegrityError, AuditUnavailable, iter_leaf_hashes
from audit.tables import audit_events
from grassroots_common.files import fsync_directory

ORIGIN: Final = "grassroots-audit-log"
FORMAT_VERSION: Final = 1
# ``-e<N>``: the checkpoint belongs to epoch N, the log as restored by the N-th accepted restore (absent for
# epoch 0); ``-handover``/``-restore``: a key handover, an accepted restore (both signed, see below).
_NAME = re.compile(
    r"checkpoint-(\d{12})-(\d{8}T\d{12}Z)-[0-9a-f]{8}(?:-e([1-9]\d{0,5}))?(-handover|-restore)?\.json"
)


class CheckpointError(Exception):
    """A checkpoint cannot be written, read or trusted (bad signature, unknown key, rewritten history).

    ``str()`` is the English reason; ``message_zh`` says it in Chinese (for a person reading a terminal);
    ``file`` and ``tree_size`` name the checkpoint file it is about (its size as the name says), if any.
    """

    def __init__(
        self,
        message_en: str,
        message_zh: str | None = None,
        *,
        file: str | None = None,
        tree_size: int | None = None,
    ) -> None:
        super().__init__(message_en if file is None else f"checkpoint {file}: {message_en}")
        self.message_en = message_en
        self.message_zh = message_zh or "签名检查点无法使用"
        self.file = file
        self.tree_size = tree_size

    @property
    def described_zh(self) -> str:
        """The Chinese reason, naming the checkpoint file first as ``str()`` does in English."""
        return self.message_zh if self.file is None else f"检查点 {self.file}：{self.message_zh}"


class KeyAlreadyRotated(CheckpointError):
    """``keys rotate-checkpoint`` found the key it was to retire already handed over (by another host, or
    another run on this one): nothing was rotated, and rotating again would fork the chain of keys."""


class KeyRetired(CheckpointError):
    """The key asked to sign was handed over to a newer one (``keys rotate-checkpoint``, maybe on another
    host): what it signs now every verifier refuses. The key file in use must be replaced by the new one."""


class ChainBusy(CheckpointError):
    """Another process holds the checkpoint chain's lock (:func:`chain_lock`): nothing was written; the
    same act succeeds once that change (a rotation, a restore acceptance, a checkpoint) has finished."""


def key_id_for(public_key: Ed25519PublicKey) -> str:
    """A short, stable id for a public key: ``ed25519:`` + first 16 hex of SHA-256 of the raw key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement: "the first ``tree_size`` events have Merkle root ``root_hash``"."""

    tree_size: int
    root_hash: bytes
    timestamp: datetime
    key_id: str
    signature: bytes
    # A key handover (see :class:`KeyChain`): {"from": old raw public key, "to": new raw public key}, both
    # base64. Signed, so the old key vouches for the new one; absent from ordinary checkpoints' bytes.
    handover: dict[str, str] | None = None
    # Which log this checkpoint is of: 0 for the log as first kept, N after the N-th accepted restore
    # (:mod:`audit.restore`). Signed when not 0, so no checkpoint of one epoch passes for another's.
    epoch: int = 0
    # An accepted restore (only in the first checkpoint of its epoch): what was lost and why, signed.
    restore: dict[str, Any] | None = None

    def signed_payload(self) -> bytes:
        """The bytes the signature covers: RFC 8785 canonical JSON with an origin for domain separation."""
        return signed_payload(
            self.tree_size,
            self.root_hash,
            self.timestamp,
            self.key_id,
            self.handover,
            self.epoch,
            self.restore,
        )

    @property
    def position(self) -> tuple[int, int]:
        """Where in the history of the log this checkpoint stands: (epoch, tree size), ordered."""
        return self.epoch, self.tree_size

    def event_details(self) -> dict[str, Any]:
        """What the ``audit.checkpoint_written`` event records of this checkpoint (no signature)."""
        return {"tree_size": self.tree_size, "root_hash": self.root_hash.hex(), "key_id": self.key_id}

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "origin": ORIGIN,
            "v": FORMAT_VERSION,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "timestamp": format_timestamp(self.timestamp),
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }
        if self.handover is not None:
            body["handover"] = dict(self.handover)
        if self.epoch:
            body["epoch"] = self.epoch
        if self.restore is not None:
            body["restore"] = dict(self.restore)
        return body

    @classmethod
    def from_json(cls, data: Any) -> Checkpoint:
        try:
            if data["origin"] != ORIGIN or data["v"] != FORMAT_VERSION:
                raise CheckpointError("not a grassroots audit checkpoint", "不是本系统的审计检查点")
            tree_size = data["tree_size"]
            if isinstance(tree_size, bool) or not isinstance(tree_size, int) or tree_size < 0:
                raise CheckpointError("checkpoint tree_size is invalid", "检查点的树大小无效")
            handover = data.get("handover")
            if handover is not None:
                handover = {"from": str(handover["from"]), "to": str(handover["to"])}
            epoch = data.get("epoch", 0)
            if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
                raise CheckpointError("checkpoint epoch is invalid", "检查点的恢复纪元（epoch）无效")
            restore = data.get("restore")
            if restore is not None:
                restore = _restore_body(restore, tree_size, epoch)
            return cls(
                tree_size=tree_size,
                root_hash=bytes.fromhex(data["root_hash"]),
                timestamp=parse_timestamp(data["timestamp"]),
                key_id=str(data["key_id"]),
                signature=base64.b64decode(data["signature"], validate=True),
                handover=handover,
                epoch=epoch,
                restore=restore,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"checkpoint is malformed ({type(exc).__name__})", "检查点内容格式损坏"
            ) from None


def _restore_body(data: Any, tree_size: int, epoch: int) -> dict[str, Any]:
    """The ``restore`` of a checkpoint, checked for shape: it opens epoch ``epoch`` (at least 1) at its own
    tree size, which is where the lost range ``[lost_from, lost_to)`` starts."""
    body = {
        "lost_from": data["lost_from"],
        "lost_to": data["lost_to"],
        "lost_root": str(data["lost_root"]),
        "lost_checkpoint": str(data["lost_checkpoint"]),
        "prefix_checkpoint": None if data["prefix_checkpoint"] is None else str(data["prefix_checkpoint"]),
        "reason": str(data["reason"]),
    }
    sizes = (body["lost_from"], body["lost_to"])
    if (
        epoch < 1
        or any(isinstance(n, bool) or not isinstance(n, int) for n in sizes)
        or body["lost_from"] != tree_size
        or body["lost_to"] <= tree_size
        or len(bytes.fromhex(body["lost_root"])) != merkle.HASH_SIZE
    ):
        raise CheckpointError("checkpoint restore record is invalid", "检查点中的恢复记录无效")
    return body


def signed_payload(
    tree_size: int,
    root_hash: bytes,
    timestamp: datetime,
    key_id: str,
    handover: dict[str, str] | None = None,
    epoch: int = 0,
    restore: dict[str, Any] | None = None,
) -> bytes:
    body: dict[str, Any] = {
        "origin": ORIGIN,
        "v": FORMAT_VERSION,
        "tree_size": tree_size,
        "root_hash": root_hash.hex(),
        "timestamp": format_timestamp(timestamp),
        "key_id": key_id,
    }
    if handover is not None:
        body["handover"] = handover
    if epoch:
        body["epoch"] = epoch
    if restore is not None:
        body["restore"] = restore
    return canonical_json(body)


def verify_checkpoint(checkpoint: Checkpoint, public_key: Ed25519PublicKey) -> None:
    """Raise :class:`CheckpointError` unless ``checkpoint`` is signed by ``public_key``."""
    expected_id = key_id_for(public_key)
    if checkpoint.key_id != expected_id:
        raise CheckpointError(
            f"checkpoint signed by key {checkpoint.key_id}, expected {expected_id}",
            f"检查点由密钥 {checkpoint.key_id} 签名，应为 {expected_id}",
        )
    if len(checkpoint.root_hash) != merkle.HASH_SIZE:
        raise CheckpointError("checkpoint root hash must be 32 bytes", "检查点根哈希应为 32 字节")
    try:
        public_key.verify(checkpoint.signature, checkpoint.signed_payload())
    except InvalidSignature:
        root = checkpoint.root_hash.hex()
        raise CheckpointError(
            f"checkpoint signature does not verify (tree size {checkpoint.tree_size}, root {root}): "
            "the file was changed after signing, or never signed with this key",
            f"签名与内容不符（树大小 {checkpoint.tree_size}，根哈希 {root}）："
            "文件在签发后被改动过，或并非由该密钥签发",
        ) from None


class CheckpointSigner:
    """Ed25519 (RFC 8032) signing key for checkpoints, loaded from a file outside the database.

    The key never appears in ``repr`` and the object refuses to be pickled.
    """

    __slots__ = ("_key_id", "_private_key")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self._key_id = key_id_for(private_key.public_key())

    @classmethod
    def generate(cls) -> CheckpointSigner:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, path: Path) -> CheckpointSigner:
        """Load the PKCS#8 PEM key at ``path``, creating it (mode 0600) if it does not exist.

        Refuses a key file that group or others can read or write: whoever can read it can forge
        checkpoints, whoever can write it can swap it.
        """
        path = Path(path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = cls.generate()._write_temporary(path)
            try:
                os.link(tmp, path)  # never replaces a key another process created meanwhile
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return cls._load(path)

    def _write_temporary(self, path: Path) -> Path:
        """Write this key (PKCS#8 PEM, mode 0600, fsynced) to a new temporary file beside ``path``."""
        pem = self._private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        _write_new_file(tmp, pem, mode=0o600)
        return tmp

    @classmethod
    def _load(cls, path: Path) -> CheckpointSigner:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise CheckpointError(
                f"checkpoint key file mode is {mode:o}; restrict it to 600 (chmod 600)",
                f"检查点密钥文件权限为 {mode:o}，请改为 600（chmod 600 {path}）",
            )
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except ValueError:
            raise CheckpointError(
                "checkpoint key file is not a PEM private key", f"检查点密钥文件 {path} 不是 PEM 私钥"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise CheckpointError("checkpoint key must be an Ed25519 key", "检查点密钥必须是 Ed25519 密钥")
        return cls(key)

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._private_key.public_key()

    def public_key_pem(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(
        self,
        tree_size: int,
        root_hash: bytes,
        timestamp: datetime | None = None,
        handover: dict[str, str] | None = None,
        *,
        epoch: int = 0,
        restore: dict[str, Any] | None = None,
    ) -> Checkpoint:
        if tree_size < 0 or len(root_hash) != merkle.HASH_SIZE or epoch < 0:
            raise ValueError("checkpoint needs a non-negative size and epoch and a 32-byte root")
        when = (timestamp or datetime.now(UTC)).astimezone(UTC)
        # Round-trip the timestamp through its text form so the object equals what gets parsed back.
        when = parse_timestamp(format_timestamp(when))
        payload = signed_payload(tree_size, root_hash, when, self._key_id, handover, epoch, restore)
        signature = self._private_key.sign(payload)
        return Checkpoint(tree_size, root_hash, when, self._key_id, signature, handover, epoch, restore)

    def sign_payload(self, payload: bytes) -> bytes:
        """Ed25519 signature over ``payload`` — an RFC 8785 document whose ``origin`` field says what it
        is (e.g. an archive manifest), so it can never be mistaken for a checkpoint."""
        if (
            not payload.startswith(b"{")
            or b'"origin":' not in payload
            or b'"origin":"' + ORIGIN.encode() in payload
        ):
            raise ValueError("sign_payload signs canonical JSON documents with their own origin")
        return self._private_key.sign(payload)

    def __repr__(self) -> str:
        return f"CheckpointSigner(key_id={self._key_id!r})"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("CheckpointSigner holds a private key and cannot be pickled")


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Load an Ed25519 public key from a PEM file (SubjectPublicKeyInfo).

    Given the signing key's own file (PKCS#8), returns its public half: ``grassroots audit verify``
    on the host that signs passes the configured key path. A file that cannot be read raises
    :class:`OSError`; one that is not an Ed25519 PEM key, :class:`CheckpointError` (in both languages).
    """
    data = Path(path).read_bytes()
    key: object
    try:
        if b"PRIVATE KEY" in data:
            key = serialization.load_pem_private_key(data, password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise CheckpointError(
                    "checkpoint key must be an Ed25519 key", "检查点密钥必须是 Ed25519 密钥"
                )
            return key.public_key()
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CheckpointError(
            "checkpoint key file is not a PEM key", "检查点密钥文件不是 PEM 格式的密钥"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise CheckpointError("checkpoint public key must be an Ed25519 key", "检查点公钥必须是 Ed25519 公钥")
    return key


def _write_new_file(path: Path, data: bytes, *, mode: int) -> None:
    """Create ``path`` (never over another file), write ``data`` whole and fsync it. A write that fails
    (disk full, a file-size limit) removes the file it created: an empty chain lock left behind named no
    process, so every later round waited and was refused (``chain_busy``) long after the disk had room."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        rest = memoryview(data)
        while rest:
            rest = rest[os.write(fd, rest) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    os.close(fd)


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform lets a directory be opened for fsync
        fsync_directory(directory)


def _checkpoint_files(directory: Path) -> list[tuple[int, str, Path]]:
    if not directory.is_dir():
        raise CheckpointError("checkpoint directory does not exist", f"检查点目录 {directory} 不存在")
    found = []
    for entry in directory.iterdir():
        match = _NAME.fullmatch(entry.name)
        if match:
            found.append((int(match.group(3) or 0), int(match.group(1)), match.group(2), entry))
    # Epoch first: after an accepted restore the latest checkpoint is the restored log's, even while the
    # lost log's last one is larger.
    found.sort(key=lambda item: (item[0], item[1], item[2], item[3].name))
    return [(size, stamp, entry) for _, size, stamp, entry in found]


def _named_epoch(path: Path) -> int:
    match = _NAME.fullmatch(path.name)
    return int(match.group(3) or 0) if match else 0


def _parse_checkpoint(path: Path, tree_size: int) -> Checkpoint:
    """The checkpoint in ``path``, NOT yet verified; every :class:`CheckpointError` names the file."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        raise CheckpointError(
            "unreadable, or not JSON",
            "文件无法读取或不是 JSON",
            file=path.name,
            tree_size=tree_size,
        ) from None
    try:
        checkpoint = Checkpoint.from_json(data)
        if checkpoint.tree_size != tree_size:
            raise CheckpointError(
                f"content does not match the file name "
                f"(tree size {checkpoint.tree_size}, the name says {tree_size})",
                f"内容与文件名不符（内容中树大小为 {checkpoint.tree_size}，文件名为 {tree_size}）",
            )
        if path.name.endswith("-handover.json") and checkpoint.handover is None:
            raise CheckpointError("a handover file without a handover", "密钥交接文件中没有交接内容")
        if checkpoint.epoch != _named_epoch(path):
            raise CheckpointError(
                f"content does not match the file name (epoch {checkpoint.epoch})",
                f"内容与文件名不符（内容中恢复纪元为 {checkpoint.epoch}）",
            )
        if path.name.endswith("-restore.json") != (checkpoint.restore is not None):
            raise CheckpointError(
                "a restore record must be in a -restore file, and only there",
                "恢复记录只能且必须保存在 -restore 文件中",
            )
    except CheckpointError as exc:
        raise CheckpointError(exc.message_en, exc.message_zh, file=path.name, tree_size=tree_size) from None
    return checkpoint


def _raw_public_key(encoded: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(encoded, validate=True))
    except ValueError:
        raise CheckpointError("handover names a malformed public key", "密钥交接中的公钥格式损坏") from None


def _encode_public_key(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True, slots=True)
class _KeyPeriod:
    key_id: str
    public_key: Ed25519PublicKey
    # Positions (epoch, tree size): of the handover that brought this key in ((0, 0) for the first key),
    # and of the one that retired it (None while it is the current key).
    first: tuple[int, int]
    last: tuple[int, int] | None


def _at(position: tuple[int, int]) -> str:
    """A position as a person reads it: the tree size, and the epoch after a restore."""
    epoch, size = position
    return f"{size}" if not epoch else f"{size} (epoch {epoch})"


class KeyChain:
    """The checkpoint keys one pinned key trusts: itself and every key linked to it by handovers.

    A handover (``grassroots keys rotate-checkpoint``) is one checkpoint, at the tree size of the moment,
    whose signed body names the old and the new public key, stored twice: signed by the old key and signed by
    the new one (as transparency logs hand a log over to a new key). A link counts only when both copies
    verify, so each end vouches for the other: from a pinned old key (a supervisor's copy) the chain runs
    forward, from the current key (the signing host's file) it runs back. Each key signs only the tree sizes
    between the handover that brought it in and the one that retired it: an old key, even stolen, signs
    nothing past its handover that verifies. A key linked to two successors (or two predecessors) is a fork,
    refused: only a thief of a key makes one.
    """

    __slots__ = ("_epochs", "_periods")

    def __init__(self, periods: Sequence[_KeyPeriod]) -> None:
        self._periods = tuple(periods)
        # The highest epoch a handover was made in (0 until a key is rotated after an accepted restore).
        self._epochs = max(p.first[0] for p in self._periods)

    @classmethod
    def pinned(cls, public_key: Ed25519PublicKey) -> KeyChain:
        """Only ``public_key`` (no directory to read handovers from)."""
        return cls([_KeyPeriod(key_id_for(public_key), public_key, (0, 0), None)])

    @classmethod
    def from_checkpoints(cls, pinned: Ed25519PublicKey, found: Sequence[tuple[Path, Checkpoint]]) -> KeyChain:
        links: dict[tuple[str, str, tuple[int, int], bytes], set[str]] = {}
        keys: dict[str, Ed25519PublicKey] = {}
        for path, cp in found:
            if cp.handover is None or not path.name.endswith("-handover.json"):
                continue
            try:
                old, new = _raw_public_key(cp.handover["from"]), _raw_public_key(cp.handover["to"])
                old_id, new_id = key_id_for(old), key_id_for(new)
                signer = {old_id: old, new_id: new}.get(cp.key_id)
                if signer is None or old_id == new_id:
                    raise CheckpointError(
                        f"handover signed by key {cp.key_id}, expected {old_id} or {new_id}",
                        f"密钥交接由密钥 {cp.key_id} 签名，应为 {old_id} 或 {new_id}",
                    )
                verify_checkpoint(cp, signer)
            except CheckpointError as exc:
                raise CheckpointError(
                    exc.message_en, exc.message_zh, file=path.name, tree_size=cp.tree_size
                ) from None
            keys[old_id], keys[new_id] = old, new
            links.setdefault((old_id, new_id, cp.position, cp.root_hash), set()).add(cp.key_id)
        # A copy signed by only one side (a rotation interrupted between its two writes) links nothing.
        nexts: dict[str, tuple[str, tuple[int, int]]] = {}
        prevs: dict[str, str] = {}
        for (old_id, new_id, size, _), signers in links.items():
            if signers != {old_id, new_id}:
                continue
            if old_id in nexts or new_id in prevs:
                raise CheckpointError(
                    f"key {old_id if old_id in nexts else new_id} was handed over twice (a fork): "
                    "a stolen key made one of the handovers",
                    f"密钥 {old_id if old_id in nexts else new_id} 被交接了两次（分叉）："
                    "其中一次交接是用被盗的密钥伪造的",
                )
            nexts[old_id], prevs[new_id] = (new_id, size), old_id
        first = key_id_for(pinned)
        seen = {first}
        while first in prevs and prevs[first] not in seen:
            first = prevs[first]
            seen.add(first)
        periods: list[_KeyPeriod] = []
        current, start = first, (0, 0)
        keys.setdefault(first, pinned)
        while True:
            following = nexts.get(current)
            if following is None or following[0] in {p.key_id for p in periods}:
                periods.append(_KeyPeriod(current, keys[current], start, None))
                return cls(periods)
            new_id, size = following
            if size < start:
                raise CheckpointError(
                    f"handover to {new_id} at tree size {_at(size)} goes back before {_at(start)}",
                    f"交接给 {new_id} 的树大小 {_at(size)} 小于上一次交接的 {_at(start)}",
                )
            periods.append(_KeyPeriod(current, keys[current], start, size))
            current, start = new_id, size

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(p.key_id for p in self._periods)

    @property
    def current_key_id(self) -> str:
        return self._periods[-1].key_id

    def _period(self, key_id: str, signed: tuple[str, str] = ("checkpoint", "检查点")) -> _KeyPeriod:
        for period in self._periods:
            if period.key_id == key_id:
                return period
        raise CheckpointError(
            f"{signed[0]} signed by key {key_id}, expected {' or '.join(self.key_ids)}",
            f"{signed[1]}由密钥 {key_id} 签名，应为 {'或'.join(self.key_ids)}",
        )

    def successor(self, key_id: str) -> str | None:
        """The key ``key_id`` was handed over to (None: current, or not in the chain)."""
        ids = self.key_ids
        return ids[ids.index(key_id) + 1] if key_id in ids[:-1] else None

    def retired_at(self, key_id: str) -> int | None:
        """The tree size of the handover that retired ``key_id`` (None: current, or not in the chain)."""
        return next((p.last[1] for p in self._periods if p.key_id == key_id and p.last), None)

    def key_for(
        self, key_id: str, at: tuple[int, int] | int, signed: tuple[str, str] = ("checkpoint", "检查点")
    ) -> Ed25519PublicKey:
        """The key that may have signed a document (``signed``: what it is, in English and Chinese) about the
        log at ``at``: the chain's key ``key_id``, once sure that key was in office there.

        ``at`` is a position, (epoch, tree size), ordered by epoch first: the key in office when a restore
        was accepted signs the restored log, even at tree sizes below its own handover (which the lost log
        reached). A bare tree size (an archive manifest, which records no epoch) counts in any epoch the
        chain's handovers reach. Checkpoints, archive manifests (the log's size when archived) and prune
        anchors (the position of the checkpoint they embed) all ask here. Raises :class:`CheckpointError`
        for a key outside the chain, and for a key of the chain signing outside its period: a stolen old
        key signs nothing past its handover, a new key nothing before it."""
        period = self._period(key_id, signed)
        last = period.last
        positions = [at] if isinstance(at, tuple) else [(epoch, at) for epoch in range(self._epochs + 1)]
        if not any(period.first <= p and (last is None or p <= last) for p in positions):
            sizes = f"{_at(period.first)}..{'' if last is None else _at(last)}"
            shown = _at(at) if isinstance(at, tuple) else str(at)
            raise CheckpointError(
                f"{signed[0]} of tree size {shown} signed by key {period.key_id}, which signs only tree "
                f"sizes {sizes} (handed over to another key)",
                f"树大小 {shown} 的{signed[1]}由密钥 {period.key_id} 签名，该密钥只签发树大小 {sizes} 的"
                f"{signed[1]}（已交接给另一把密钥）",
            )
        return period.public_key

    def verify(self, checkpoint: Checkpoint) -> None:
        """Raise :class:`CheckpointError` unless a key of the chain signed ``checkpoint`` while in office."""
        verify_checkpoint(checkpoint, self.key_for(checkpoint.key_id, checkpoint.position))

    def verify_anchor(self, anchor: PruneAnchor) -> Checkpoint:
        """Raise :class:`AnchorError` unless a key of the chain signed the prune ``anchor`` while in office,
        and the checkpoint it embeds (signed just before the prune) verifies too; returns that checkpoint.

        The anchor's key must be in office at the embedded checkpoint's tree size: that was the log's size
        when it was signed (:func:`audit.prune.prune` signs both with one key, one after the other)."""
        try:
            embedded = Checkpoint.from_json({**anchor.checkpoint, "origin": ORIGIN, "v": FORMAT_VERSION})
            self.verify(embedded)
            key = self.key_for(anchor.key_id, embedded.position, ("prune anchor", "清理锚点"))
        except CheckpointError as exc:
            raise AnchorError(str(exc)) from None
        anchor.check_signature(key, anchor.key_id)
        return embedded


def _chain_of(pinned: Ed25519PublicKey, files: Sequence[tuple[int, str, Path]]) -> KeyChain:
    """The chain through the handover files among ``files`` (one listing of the directory)."""
    handovers = [
        (path, _parse_checkpoint(path, size))
        for size, _, path in files
        if path.name.endswith("-handover.json")
    ]
    return KeyChain.from_checkpoints(pinned, handovers)


def key_chain(directory: Path | None, pinned: Ed25519PublicKey) -> KeyChain:
    """The keys ``pinned`` trusts through the handovers in ``directory`` (just itself without one)."""
    if directory is None or not Path(directory).is_dir():
        return KeyChain.pinned(pinned)
    return _chain_of(pinned, _checkpoint_files(Path(directory)))


def _read_checkpoint(path: Path, tree_size: int, chain: KeyChain) -> Checkpoint:
    """The checkpoint in ``path``, verified; every :class:`CheckpointError` names the file."""
    checkpoint = _parse_checkpoint(path, tree_size)
    try:
        chain.verify(checkpoint)
    except CheckpointError as exc:
        raise CheckpointError(exc.message_en, exc.message_zh, file=path.name, tree_size=tree_size) from None
    return checkpoint


def latest_checkpoint(directory: Path, public_key: Ed25519PublicKey) -> Checkpoint | None:
    """The checkpoint with the largest tree size (latest time on ties), signature verified.

    ``None`` when the directory holds no checkpoint yet. Raises :class:`CheckpointError` when the
    directory is missing or the latest file does not verify — never silently falls back to an older one.
    ``public_key`` is the pinned key: a checkpoint signed by a key it reaches through handovers
    (:class:`KeyChain`) verifies too.
    """
    found = latest_checkpoint_file(directory, public_key)
    return None if found is None else found[0]


def latest_checkpoint_file(directory: Path, public_key: Ed25519PublicKey) -> tuple[Checkpoint, str] | None:
    """:func:`latest_checkpoint` and the name of its file (what a person can find and compare).

    After an accepted restore the latest is the restored log's (highest epoch), and it counts only with
    the signed restore record that opened its epoch beside it.
    """
    files = _checkpoint_files(Path(directory))
    if not files:
        return None
    chain = _chain_of(public_key, files)
    tree_size, _, path = files[-1]
    latest = _read_checkpoint(path, tree_size, chain)
    if latest.epoch:
        _opening_restore(files, chain, latest.epoch)
    return latest, path.name


def _opening_restore(files: Sequence[tuple[int, str, Path]], chain: KeyChain, epoch: int) -> Checkpoint:
    """The one verified restore record that opened ``epoch``; refused when missing or forked."""
    found = [
        _read_checkpoint(path, size, chain)
        for size, _, path in files
        if path.name.endswith("-restore.json") and _named_epoch(path) == epoch
    ]
    if len(found) != 1:
        raise _restore_count_error(epoch, len(found))
    return found[0]


def _restore_count_error(epoch: int, count: int) -> CheckpointError:
    return CheckpointError(
        f"epoch {epoch} has {count} restore records, expected exactly one: "
        + ("the record was removed" if not count else "two restores were accepted onto one log (a fork)"),
        f"恢复纪元 {epoch} 有 {count} 个恢复记录，应恰好一个："
        + ("恢复记录已被移除" if not count else "同一日志上接受了两次恢复（分叉）"),
    )


@dataclass(frozen=True, slots=True)
class CheckpointHistory:
    """Every checkpoint in a directory, verified, sorted out by what it describes (oldest first, with its
    file name).

    ``current``: the log as it now is — each epoch's checkpoints up to the size every later restore kept.
    ``lost``: checkpoints of events that accepted restores gave up (the evidence; never deleted).
    ``restores``: the signed restore records, one per epoch after the first (each also in ``current``).
    """

    current: tuple[tuple[Checkpoint, str], ...]
    lost: tuple[tuple[Checkpoint, str], ...]
    restores: tuple[tuple[Checkpoint, str], ...]

    @property
    def latest(self) -> tuple[Checkpoint, str] | None:
        return self.current[-1] if self.current else None


def checkpoint_history(directory: Path, public_key: Ed25519PublicKey) -> CheckpointHistory:
    """Read and verify every checkpoint in ``directory`` (through handovers), and check the restores.

    Refuses (:class:`CheckpointError`, naming the file) a history no accepted restore explains: an epoch
    without its one restore record, a restore whose lost checkpoint is gone or is not the latest of the
    epoch before, or a checkpoint of an epoch smaller than that epoch's restored size.
    """
    files = _checkpoint_files(Path(directory))
    chain = _chain_of(public_key, files)
    read = [(_read_checkpoint(path, size, chain), path.name) for size, _, path in files]
    epochs: dict[int, list[tuple[Checkpoint, str]]] = {}
    for cp, name in read:
        epochs.setdefault(cp.epoch, []).append((cp, name))
    restores: list[tuple[Checkpoint, str]] = []
    for epoch in range(1, max(epochs, default=0) + 1):
        opening = [(cp, name) for cp, name in epochs.get(epoch, []) if cp.restore is not None]
        if len(opening) != 1:
            raise _restore_count_error(epoch, len(opening))
        record, name = opening[0]
        _check_restore(record, name, epochs.get(epoch - 1, []), epochs[epoch])
        restores.append((record, name))
    current: list[tuple[Checkpoint, str]] = []
    lost: list[tuple[Checkpoint, str]] = []
    for cp, name in read:
        kept = min((r.tree_size for r, _ in restores if r.epoch > cp.epoch), default=cp.tree_size)
        (current if cp.tree_size <= kept else lost).append((cp, name))
    return CheckpointHistory(tuple(current), tuple(lost), tuple(restores))


def _check_restore(
    record: Checkpoint,
    name: str,
    before: Sequence[tuple[Checkpoint, str]],
    same: Sequence[tuple[Checkpoint, str]],
) -> None:
    """A restore record must name the latest checkpoint of the epoch before, still present (the evidence
    of what was lost), and open its own epoch (no checkpoint of it smaller)."""
    restore = record.restore or {}
    named = [cp for cp, file in before if file == restore["lost_checkpoint"]]
    problem: tuple[str, str] | None = None
    if (
        not named
        or named[0].tree_size != restore["lost_to"]
        or named[0].root_hash.hex() != restore["lost_root"]
    ):
        problem = (
            f"the lost log's checkpoint {restore['lost_checkpoint']} it names is missing or differs",
            f"其中记载的丢失日志的检查点 {restore['lost_checkpoint']} 不存在或内容不符",
        )
    elif any(cp.tree_size > restore["lost_to"] for cp, _ in before):
        problem = (
            "the epoch before holds a checkpoint larger than the lost range it states",
            "上一恢复纪元中有比所记丢失范围更大的检查点",
        )
    elif any(cp.tree_size < record.tree_size for cp, _ in same):
        problem = (
            "its epoch holds a checkpoint smaller than the restored log",
            "同一恢复纪元中有比恢复后的日志更小的检查点",
        )
    if problem is not None:
        raise CheckpointError(
            f"restore record does not fit the checkpoints: {problem[0]}",
            f"恢复记录与检查点不符：{problem[1]}",
            file=name,
            tree_size=record.tree_size,
        )


def has_restores(directory: Path) -> bool:
    """Whether ``directory`` holds checkpoints of a restored log (a name with an epoch): one listing."""
    return any(_named_epoch(path) for _, _, path in _checkpoint_files(Path(directory)))


def list_checkpoints(directory: Path, public_key: Ed25519PublicKey) -> list[Checkpoint]:
    """Every checkpoint of the log as it now is, oldest first, each signature verified (through handovers).

    After an accepted restore, the checkpoints of the events it gave up are left out (they describe a log
    that no longer exists; :func:`checkpoint_history` has them as ``lost``).
    """
    return [cp for cp, _ in list_checkpoint_files(directory, public_key)]


def list_checkpoint_files(directory: Path, public_key: Ed25519PublicKey) -> list[tuple[Checkpoint, str]]:
    """:func:`list_checkpoints`, each with the name of its file (what a person can find and compare)."""
    files = _checkpoint_files(Path(directory))
    if not any(_named_epoch(path) for _, _, path in files):
        chain = _chain_of(public_key, files)
        return [(_read_checkpoint(path, size, chain), path.name) for size, _, path in files]
    return list(checkpoint_history(directory, public_key).current)


def write_checkpoint(engine: Engine, signer: CheckpointSigner, directory: Path) -> Checkpoint:
    """Sign the Merkle root over every event now in the log and store it as a new file in ``directory``.

    Refuses (:class:`CheckpointError`) to sign a log that no longer contains the previous checkpoint's
    prefix — signing it would launder a rewrite. Roots are computed from the stored leaf hashes; a full
    :func:`audit.verify.verify_log` also re-derives each leaf from its body.
    """
    return extend_checkpoint(engine, signer, directory, None)[0]


def _history_rewritten(tree_size: int) -> CheckpointError:
    return CheckpointError(
        f"events 1..{tree_size} no longer match the signed checkpoint; refusing to sign",
        f"事件 1..{tree_size} 与已签发的检查点不再一致，拒绝签发",
    )


def extend_checkpoint(
    engine: Engine,
    signer: CheckpointSigner,
    directory: Path,
    since: merkle.MerkleAccumulator | None,
) -> tuple[Checkpoint, merkle.MerkleAccumulator]:
    """:func:`write_checkpoint` that reads only the leaves after ``since``, and returns the accumulator at
    the new size for the next call (a periodic writer keeps it between calls).

    ``since`` is an accumulator this process built from this log's first ``since.size`` leaves (a previous
    call's result). The cost is then the new events, not the whole log: a full walk reads every leaf hash
    (measured 0.72 s per 300,000 events, so ~24 s at 10 million, every period, in a serving process).
    The previous checkpoint's root is still checked: directly against ``since`` when it has the same size
    (this writer's own last checkpoint), on the way when it is larger (another process signed since). A
    previous checkpoint smaller than ``since``, or a log smaller than it, means a full walk.

    What a resumed walk does not re-read is the prefix under ``since``: a row rewritten there after it was
    read is not refused here, yet the root signed is still that of the rows as they were, so
    :func:`audit.verify.verify_log` against this checkpoint reports the rewrite.
    """
    directory, previous, size, keys = _signing_inputs(engine, signer, directory)
    return _extend(engine, signer, directory, since, (previous, keys), size)


def extend_checkpoint_if_grown(
    engine: Engine,
    signer: CheckpointSigner,
    directory: Path,
    since: merkle.MerkleAccumulator | None,
) -> tuple[Checkpoint, merkle.MerkleAccumulator] | None:
    """:func:`extend_checkpoint` when the log holds events past the latest checkpoint (or there is none
    yet); otherwise ``None``, having read only the latest checkpoint and the log size — once each, the
    same values the signing then uses (a periodic writer's tick)."""
    directory, previous, size, keys = _signing_inputs(engine, signer, directory)
    if previous is not None and size <= previous.tree_size:
        return None
    return _extend(engine, signer, directory, since, (previous, keys), size)


def latest_signable(directory: Path, signer: CheckpointSigner) -> Checkpoint | None:
    """The latest checkpoint in ``directory`` (verified), once sure ``signer`` may sign after it.

    Refuses a key a handover has retired: a host still holding the old key file after
    ``grassroots keys rotate-checkpoint`` would sign what every verifier then refuses.
    """
    return _signable(directory, signer)[0]


def check_in_office(directory: Path | None, signer: CheckpointSigner) -> KeyChain:
    """The chain of keys from ``signer``'s through the handovers in ``directory``, once sure none of them
    has retired ``signer``'s key (raises :class:`CheckpointError`): what a retired key signs now (a
    checkpoint, an archive manifest, a prune anchor) every verifier refuses as signed past its handover."""
    keys = key_chain(directory, signer.public_key)
    _refuse_retired(keys, signer)
    return keys


def _refuse_retired(keys: KeyChain, signer: CheckpointSigner) -> None:
    retired = keys.retired_at(signer.key_id)
    if retired is not None:
        raise KeyRetired(
            f"the checkpoint key {signer.key_id} was retired by a handover at tree size {retired}; "
            "copy the new key file (GRASSROOTS_CHECKPOINT_KEY_PATH) here from the host that rotated it",
            f"检查点密钥 {signer.key_id} 已在树大小 {retired} 处交接给新密钥，不再签发；"
            "请从执行轮换的主机把新的密钥文件（GRASSROOTS_CHECKPOINT_KEY_PATH）复制到本机",
        )


def _signable(directory: Path, signer: CheckpointSigner) -> tuple[Checkpoint | None, KeyChain]:
    """:func:`latest_signable` and the chain it was verified with, from one listing of the directory."""
    files = _checkpoint_files(Path(directory))
    keys = _chain_of(signer.public_key, files)
    _refuse_retired(keys, signer)
    if not files:
        return None, keys
    tree_size, _, path = files[-1]
    return _read_checkpoint(path, tree_size, keys), keys


def _signing_inputs(
    engine: Engine, signer: CheckpointSigner, directory: Path
) -> tuple[Path, Checkpoint | None, int, KeyChain]:
    """The checkpoint directory (created if missing), its latest checkpoint (:func:`latest_signable`), the
    log size and the keys the latest was verified with: each read once."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    previous, keys = _signable(directory, signer)
    return directory, previous, log_size(engine), keys


def holds_checkpoints(directory: Path) -> bool:
    """Whether ``directory`` exists and holds a checkpoint file (a listing only: nothing is verified)."""
    return directory.is_dir() and any(directory.glob("checkpoint-*.json"))


def holds_signed_files(directory: Path) -> bool:
    """Whether ``directory`` holds a file a checkpoint key signed: a checkpoint or a prune anchor."""
    return holds_checkpoints(directory) or any(directory.glob("prune-anchor-*.json"))


def log_size(engine: Engine) -> int:
    """How many events the log holds (its largest seq); :class:`AuditUnavailable` when it cannot be read."""
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(audit_events.c.seq), 0))).scalar_one())
    except SQLAlchemyError as exc:
        raise AuditUnavailable(f"audit store unavailable ({type(exc).__name__})") from None


def _extend(
    engine: Engine,
    signer: CheckpointSigner,
    directory: Path,
    since: merkle.MerkleAccumulator | None,
    latest: tuple[Checkpoint | None, KeyChain],
    size: int,
) -> tuple[Checkpoint, merkle.MerkleAccumulator]:
    """Sign the root of the first ``size`` events, ``latest`` being the directory's latest checkpoint and
    the keys it was verified with."""
    previous, keys = latest
    acc = _advance(engine, keys, previous, size, since)
    epoch = 0 if previous is None else previous.epoch
    # The root took a walk of the log to compute (seconds, at millions of events): a rotation or a restore
    # acceptance may have changed the chain meanwhile, and a checkpoint signed by a key handed over since,
    # or in an epoch a restore has closed, is one every verifier refuses. Checked again, and stored, where
    # neither can happen; the lock is held for a directory listing and one file write.
    with chain_lock(directory, STORE_LOCK_WAIT_S):
        latest_now, _ = _signable(directory, signer)  # KeyRetired if handed over meanwhile
        if latest_now is not None and latest_now.epoch != epoch:
            raise CheckpointError(
                f"a restore was accepted (epoch {latest_now.epoch}) while this checkpoint was computed; "
                "nothing was signed",
                f"计算本检查点期间已接受了一次恢复（恢复纪元 {latest_now.epoch}），未签发",
            )
        checkpoint = signer.sign(size, acc.root(), epoch=epoch)
        _store(directory, checkpoint)
    return checkpoint, acc


def _advance(
    engine: Engine,
    keys: KeyChain,
    previous: Checkpoint | None,
    size: int,
    since: merkle.MerkleAccumulator | None = None,
) -> merkle.MerkleAccumulator:
    """The Merkle accumulator at ``size``, refusing a log that no longer holds ``previous``'s prefix
    (a prune anchor is checked against ``keys``, since a key handed over since may have signed it)."""
    try:
        if previous is not None and size < previous.tree_size:
            raise CheckpointError(
                f"log has {size} events but checkpoint {previous.tree_size} was signed; refusing to sign",
                f"日志只有 {size} 条事件，却已签发过树大小 {previous.tree_size} 的检查点，拒绝签发",
            )
        acc: merkle.MerkleAccumulator | None = None
        if (
            since is not None
            and since.size <= size
            and (previous is None or previous.tree_size >= since.size)
        ):
            acc = merkle.MerkleAccumulator.resume(since.size, since.frontier())
            if previous is not None and previous.tree_size == acc.size and acc.root() != previous.root_hash:
                raise _history_rewritten(previous.tree_size)
        if acc is None:
            # A pruned log resumes from its signed prefix anchor (audit.anchor): same roots, fewer leaves.
            anchor = latest_anchor(engine)
            if anchor is not None:
                keys.verify_anchor(anchor)
            acc = merkle.MerkleAccumulator() if anchor is None else anchor.resume()
        for leaf in iter_leaf_hashes(engine, acc.size + 1, size):
            acc.append(leaf)
            if previous is not None and acc.size == previous.tree_size and acc.root() != previous.root_hash:
                raise _history_rewritten(previous.tree_size)
        if previous is not None and previous.tree_size == 0 and previous.root_hash != merkle.EMPTY_ROOT:
            raise CheckpointError(
                "previous empty checkpoint has a non-empty root",
                "上一个空检查点的根哈希不是空树的根，拒绝签发",
            )
    except AuditIntegrityError as exc:
        raise CheckpointError(f"log is not contiguous: {exc}", "日志事件不连续，拒绝签发") from None
    except AnchorError as exc:
        raise CheckpointError(f"prune anchor does not verify: {exc}", "清理锚点无法验证，拒绝签发") from None
    except SQLAlchemyError as exc:
        raise AuditUnavailable(f"audit store unavailable ({type(exc).__name__})") from None
    return acc


def _store(directory: Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` as a new file (never over another); a handover's name says it is one."""
    stamp = checkpoint.timestamp.strftime("%Y%m%dT%H%M%S%fZ")
    kind = "-handover" if checkpoint.handover is not None else "-restore" if checkpoint.restore else ""
    epoch = f"-e{checkpoint.epoch}" if checkpoint.epoch else ""
    name = f"checkpoint-{checkpoint.tree_size:012d}-{stamp}-{uuid.uuid4().hex[:8]}{epoch}{kind}.json"
    tmp = directory / f".{name}.tmp"
    _write_new_file(tmp, canonical_json(checkpoint.to_json()) + b"\n", mode=0o644)
    try:
        os.link(tmp, directory / name)
    except FileExistsError:
        raise CheckpointError(
            "checkpoint file already exists; not overwriting", f"检查点文件 {name} 已存在，未覆盖"
        ) from None
    finally:
        tmp.unlink()
    _fsync_directory(directory)


#: The lock file held in the checkpoint directory while the checkpoint chain is changed (a key rotation or an
#: accepted restore) or extended (a checkpoint stored); never a checkpoint's name.
CHAIN_LOCK: Final = ".checkpoint-chain.lock"
#: How long a change of the chain waits for another one to finish (a rotation walks the whole log once:
#: ~24 s at ten million events, measured in :func:`extend_checkpoint`) before it is refused, naming the lock.
CHAIN_LOCK_WAIT_S: Final = 300.0
#: How long storing a checkpoint waits for the lock: past a rotation's walk of a large log, short enough
#: for a request (``POST /api/v1/supervision/checkpoints``); a periodic round refused tries again next time.
STORE_LOCK_WAIT_S: Final = 30.0


@contextlib.contextmanager
def chain_lock(directory: Path, wait_s: float = CHAIN_LOCK_WAIT_S) -> Iterator[None]:
    """The exclusive right to change the checkpoint chain in ``directory`` — hand it over to a new key, or
    open a new epoch with a restore record — among every host sharing it: two such changes at once would
    both pass the check of the latest checkpoint and write two handovers from one key, or two restore
    records for one epoch (or a handover beside a restore), a fork every verifier refuses. Whoever holds it
    reads the latest checkpoint again before writing. Storing an ordinary checkpoint takes it too, briefly,
    so one is never signed by a key a rotation retires, or in an epoch a restore closes, at the same moment.

    A lock file made with ``O_CREAT | O_EXCL``, not ``flock``: exclusive creation is atomic on a local file
    system and on NFSv3 and later (open(2)), the usual way a directory is shared between hosts, and needs no
    lock daemon; ``flock`` on NFS is emulated with byte-range locks through the lock manager, and on a mount
    without one (``nolock``, ``local_lock=``) it is silently local to each host, so both hosts would hold it.
    The price: a run killed outright (SIGKILL, power cut) leaves the file. One left by a process of this
    host that no longer exists (a gateway killed while storing a checkpoint, a rotation killed) is taken
    over at once (:func:`_take_over_if_dead`); any other, the next run waits ``wait_s`` and is refused naming
    it, who held it and since when (fail closed: an operator checks that no rotation or restore is running
    on that host, then removes it). The file says host, process and time, never a key.
    """
    path = Path(directory) / CHAIN_LOCK
    body = canonical_json(
        {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": format_timestamp(datetime.now(UTC)),
            "nonce": uuid.uuid4().hex,
        }
    )
    deadline = time.monotonic() + wait_s
    while True:
        try:
            _write_new_file(path, body, mode=0o644)  # O_CREAT | O_EXCL
            break
        except FileExistsError:
            if _take_over_if_dead(path):
                continue
            if time.monotonic() >= deadline:
                raise _chain_lock_held(path) from None
            time.sleep(0.1)
    try:
        yield
    finally:
        # Only our own file: one removed by hand as stale and taken by another run stays.
        with contextlib.suppress(OSError):
            if path.read_bytes() == body:
                path.unlink()


def _take_over_if_dead(path: Path) -> bool:
    """Remove the lock file at ``path`` when it names a process of this host that has exited; True if so.

    Only this host's processes can be checked (``kill(pid, 0)``); a reused pid reads as alive, so the
    file stays (the safe side). The file is renamed aside before it is removed, and put back if what was
    renamed is not what was judged stale (another waiter took the stale lock over and holds a fresh one)."""
    try:
        seen = path.read_bytes()
        holder = json.loads(seen)
        if holder["host"] != socket.gethostname() or int(holder["pid"]) == os.getpid():
            return False
        os.kill(int(holder["pid"]), 0)
        return False  # alive (or a reused pid): wait for it
    except ProcessLookupError:
        pass
    except (OSError, ValueError, KeyError, TypeError):
        return False  # gone meanwhile (the loop retries), unreadable, or not ours to judge
    aside = path.with_name(f"{path.name}.{uuid.uuid4().hex}.stale")
    try:
        os.rename(path, aside)
    except OSError:
        return False
    if aside.read_bytes() != seen:  # a fresh lock was renamed: put it back
        with contextlib.suppress(OSError):
            os.link(aside, path)
    with contextlib.suppress(OSError):
        aside.unlink()
    return True


def _chain_lock_held(path: Path) -> ChainBusy:
    try:
        holder = json.loads(path.read_bytes())
        who = f"{holder['host']}, pid {holder['pid']}, since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        who = "unreadable"
    return ChainBusy(
        f"another key rotation, restore acceptance or checkpoint write holds {path} ({who}); nothing was "
        "written. Run again once it has finished. If none is running (one was killed), run "
        "`grassroots audit verify`, then remove that file",
        f"另一次密钥轮换、恢复确认或检查点写入正持有锁文件 {path}（{who}），本次未写入任何内容；"
        "请等它完成后重新运行。如确认没有这些操作在进行（上一次被强行中止），"
        "请先运行 grassroots audit verify，再删除该文件",
    )


def _already_rotated(
    retiring: str, holds: str, keys: KeyChain, key_path: Path, directory: Path
) -> KeyAlreadyRotated:
    """Why a rotation found nothing to rotate, and what to copy instead."""
    if holds != retiring:  # this host's key file was replaced meanwhile: it already holds the new key
        return KeyAlreadyRotated(
            f"the checkpoint key {retiring} was already rotated by another run: {key_path} now holds "
            f"{holds}; nothing was rotated (run again to rotate that key too)",
            f"检查点密钥 {retiring} 已经轮换过（另一次运行）：{key_path} 现在是 {holds}；"
            "本次未轮换（如还要轮换这把密钥，请重新运行）",
        )
    size, new = keys.retired_at(retiring), keys.successor(retiring)
    files = sorted(p.name for p in Path(directory).glob(f"checkpoint-{size or 0:012d}-*-handover.json"))
    where = ", ".join(files) or str(directory)
    return KeyAlreadyRotated(
        f"the checkpoint key {retiring} was already rotated: handed over to {new} at tree size {size} "
        f"({where}); nothing was rotated here. Copy the key file {key_path} (GRASSROOTS_CHECKPOINT_KEY_PATH) "
        "from the host that rotated it to this host, then restart the gateway here",
        f"检查点密钥 {retiring} 已经轮换过：已在树大小 {size} 处交接给 {new}（{where}），本次未轮换。"
        f"请从执行轮换的主机把密钥文件 {key_path}（GRASSROOTS_CHECKPOINT_KEY_PATH）复制到本机，"
        "然后重启本机的网关",
    )


def rotate_signing_key(
    engine: Engine,
    key_path: Path,
    directory: Path,
    new: CheckpointSigner | None = None,
    *,
    retiring: str | None = None,
    before_signing: Callable[[CheckpointSigner], None] | None = None,
    wait_s: float = CHAIN_LOCK_WAIT_S,
) -> tuple[CheckpointSigner, CheckpointSigner, Checkpoint]:
    """Hand the checkpoint log over to a new key: returns (old signer, new signer, handover checkpoint).

    Signs the root of every event now in the log twice with one body naming both public keys — by the old
    key (vouching for the new one) and by the new key — then puts the new key in ``key_path``. The order
    makes an interrupted rotation harmless: until both copies exist the old key stays in office (a lone
    copy links nothing), and the new key is saved (``.<name>.<random>.tmp`` beside the key) before either.
    The old private key is not kept: it has signed all it ever will, and a kept copy is one more thing to
    steal; its public half is in both copies of the handover, where every verifier finds it.

    All of it under :func:`chain_lock`, the key file and the latest checkpoint read once the lock is
    held: a key another host (or another run) has handed over meanwhile is refused with
    :class:`KeyAlreadyRotated` — as is a key file no longer holding ``retiring``, the key id the caller
    meant to retire — so two rotations at once never fork the chain. ``before_signing(old)`` runs under the
    lock after those checks, before the log's size is read (the CLI records the rotation there, so the
    handover's root covers that record and a refused rotation records nothing).
    """
    key_path, directory = Path(key_path), Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with chain_lock(directory, wait_s):
        old = CheckpointSigner._load(key_path)
        new = new or CheckpointSigner.generate()
        chain = key_chain(directory, old.public_key)
        if (retiring is not None and old.key_id != retiring) or chain.retired_at(old.key_id) is not None:
            raise _already_rotated(retiring or old.key_id, old.key_id, chain, key_path, directory)
        previous, keys = _signable(directory, old)
        if before_signing is not None:
            before_signing(old)
        acc = _advance(engine, keys, previous, log_size(engine))
        handover = {"from": _encode_public_key(old.public_key), "to": _encode_public_key(new.public_key)}
        when = datetime.now(UTC)
        tmp = new._write_temporary(key_path)
        epoch = 0 if previous is None else previous.epoch
        try:
            _store(directory, old.sign(acc.size, acc.root(), when, handover, epoch=epoch))
            handed = new.sign(acc.size, acc.root(), when, handover, epoch=epoch)
            _store(directory, handed)
        except BaseException:
            tmp.unlink()  # the old key is still in office; the new one was never used
            raise
        # From here the handover is done and ``tmp`` is the only copy of the key now in office.
        os.replace(tmp, key_path)
        _fsync_directory(key_path.parent)
    return old, new, handed


def checkpoint_roots_consistent(older: Checkpoint, newer: Checkpoint, proof: Sequence[bytes]) -> None:
    """RFC 9162 §2.1.4.2: raise :class:`audit.merkle.InvalidProofError` unless ``newer`` extends ``older``."""
    merkle.verify_consistency(older.tree_size, newer.tree_size, proof, older.root_hash, newer.root_hash)
