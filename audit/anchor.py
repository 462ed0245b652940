"""The signed prefix anchor: what a pruned audit log keeps of the events it no longer holds.

Pruning (PIPL Art. 19 / GB/T 35273-2020 §6.1: keep personal-data-derived records no longer than needed,
once the PIPL Art. 56 period is over) removes events ``1..N`` after they were archived. So that the rest of
the log still verifies, an anchor is signed with the checkpoint key (origin
``grassroots-audit-prune-anchor``: never a checkpoint, never an archive manifest) stating

* ``pruned_through`` = N and the chain hash of event N (the next event's ``prev_hash``);
* the RFC 6962 compact-range frontier of leaves ``[0, N)``: the perfect-subtree roots from which the Merkle
  root of any tree size ``>= N`` and proofs about later events are computed (:mod:`audit.merkle`);
* the archives (ids and SHA-256 of manifest and events file) that hold the pruned events;
* the checkpoint signed just before the events were deleted, so the frontier is checked against a root
  computed from the full log;
* the previous anchor (pruning goes month by month), the time and who pruned.

The anchor is stored in ``audit_prune_anchors`` (insert-only; the delete triggers on the event tables
allow deleting only seqs at or below the largest anchored ``pruned_through``) and as a file next to the
checkpoints, in the location the database administrator cannot rewrite. This module only models and reads
anchors; :mod:`audit.prune` writes and verifies them.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine, select

from audit import merkle
from audit.canonical import canonical_json
from audit.events import format_timestamp, parse_timestamp
from audit.tables import audit_prune_anchors

ANCHOR_ORIGIN: Final = "grassroots-audit-prune-anchor"
ANCHOR_VERSION: Final = 1


class AnchorError(Exception):
    """An anchor is malformed, unsigned, signed by another key, or disagrees with the log."""


def anchor_file_name(pruned_through: int, created_at: datetime, nonce: str) -> str:
    """``prune-anchor-<N>-<time>-<nonce>.json``: time and nonce keep a retry after a failed prune from
    colliding with what the failed attempt left behind (verification looks for the copy equal to the stored
    anchor), as checkpoint file names do."""
    return f"prune-anchor-{pruned_through:012d}-{created_at.strftime('%Y%m%dT%H%M%S%fZ')}-{nonce}.json"


def anchor_file_glob(pruned_through: int) -> str:
    return f"prune-anchor-{pruned_through:012d}-*.json"


@dataclass(frozen=True, slots=True)
class PruneAnchor:
    pruned_through: int
    entry_hash: bytes
    frontier: tuple[bytes, ...]
    archives: tuple[dict[str, Any], ...]
    checkpoint: dict[str, Any]
    previous: dict[str, Any] | None
    created_at: datetime
    actor: str
    key_id: str
    signature: bytes = field(default=b"", repr=False)

    @property
    def root_hash(self) -> bytes:
        """Merkle root of the pruned prefix (the tree of ``pruned_through`` leaves)."""
        return merkle.fold_frontier(self.frontier)

    def unsigned(self) -> dict[str, Any]:
        return {
            "origin": ANCHOR_ORIGIN,
            "v": ANCHOR_VERSION,
            "pruned_through": self.pruned_through,
            "entry_hash": self.entry_hash.hex(),
            "frontier": [node.hex() for node in self.frontier],
            "root_hash": self.root_hash.hex(),
            "archives": list(self.archives),
            "checkpoint": self.checkpoint,
            "previous": self.previous,
            "created_at": format_timestamp(self.created_at),
            "actor": self.actor,
            "key_id": self.key_id,
        }

    def signed_payload(self) -> bytes:
        """RFC 8785 canonical JSON of everything but the signature; its ``origin`` separates domains."""
        return canonical_json(self.unsigned())

    def to_json(self) -> dict[str, Any]:
        return {**self.unsigned(), "signature": base64.b64encode(self.signature).decode("ascii")}

    def document(self) -> bytes:
        return canonical_json(self.to_json()) + b"\n"

    @classmethod
    def from_json(cls, data: Any) -> PruneAnchor:
        try:
            if data["origin"] != ANCHOR_ORIGIN or data["v"] != ANCHOR_VERSION:
                raise AnchorError("not a grassroots audit prune anchor")
            through = data["pruned_through"]
            if isinstance(through, bool) or not isinstance(through, int) or through < 1:
                raise AnchorError("anchor pruned_through is invalid")
            frontier = tuple(bytes.fromhex(h) for h in data["frontier"])
            anchor = cls(
                pruned_through=through,
                entry_hash=bytes.fromhex(data["entry_hash"]),
                frontier=frontier,
                archives=tuple(dict(a) for a in data["archives"]),
                checkpoint=dict(data["checkpoint"]),
                previous=None if data["previous"] is None else dict(data["previous"]),
                created_at=parse_timestamp(data["created_at"]),
                actor=str(data["actor"]),
                key_id=str(data["key_id"]),
                signature=base64.b64decode(data["signature"], validate=True),
            )
            if len(anchor.entry_hash) != merkle.HASH_SIZE or any(
                len(n) != merkle.HASH_SIZE for n in frontier
            ):
                raise AnchorError("anchor hashes must be 32 bytes")
            if len(frontier) != through.bit_count():
                raise AnchorError("anchor frontier does not fit its size")
            if data["root_hash"] != anchor.root_hash.hex():
                raise AnchorError("anchor root_hash is not the fold of its frontier")
            return anchor
        except (KeyError, TypeError, ValueError) as exc:
            raise AnchorError(f"anchor is malformed ({type(exc).__name__})") from None

    def check_signature(self, public_key: Ed25519PublicKey, key_id: str) -> None:
        """Raise :class:`AnchorError` unless signed by ``public_key`` (whose id is ``key_id``)."""
        if self.key_id != key_id:
            raise AnchorError(f"anchor signed by key {self.key_id}, expected {key_id}")
        try:
            public_key.verify(self.signature, self.signed_payload())
        except InvalidSignature:
            raise AnchorError(
                f"anchor signature does not verify (pruned through {self.pruned_through})"
            ) from None

    def resume(self) -> merkle.MerkleAccumulator:
        """A Merkle accumulator positioned after the pruned prefix."""
        return merkle.MerkleAccumulator.resume(self.pruned_through, self.frontier)

    def subtree_root(self, kept: merkle.SubtreeRoot) -> merkle.SubtreeRoot:
        return merkle.anchored_subtree_root(self.pruned_through, self.frontier, kept)


def latest_anchor(engine: Engine) -> PruneAnchor | None:
    """The anchor with the largest ``pruned_through`` stored in the database (signature NOT checked)."""
    t = audit_prune_anchors.c
    with engine.connect() as conn:
        row = conn.execute(select(t.document).order_by(t.pruned_through.desc()).limit(1)).first()
    if row is None:
        return None
    try:
        return PruneAnchor.from_json(json.loads(row.document))
    except ValueError:
        raise AnchorError("stored anchor is not JSON") from None


def pruned_through(engine: Engine) -> int:
    """The seq the log is pruned through (0 when nothing was pruned)."""
    anchor = latest_anchor(engine)
    return 0 if anchor is None else anchor.pruned_through
