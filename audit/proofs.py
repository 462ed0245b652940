"""Many RFC 9162 proofs over one tree size, cheaply: the tree's levels built once, subtrees memoised.

:meth:`audit.log.AuditLog.inclusion_proof` streams every needed range from the database, which is right
for one proof over a huge log but costs O(n) per proof. An incident attaches one proof per access event,
and the API serves proofs on demand: here the leaf hashes of the first ``tree_size`` events are read
once, the perfect subtrees are hashed level by level (RFC 6962 §2.1), and each proof then costs
O(log² n). Above ``max_in_memory`` leaves it falls back to streaming.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from sqlalchemy import Engine

from audit import merkle
from audit.log import iter_leaf_hashes

MAX_IN_MEMORY: Final = 4_000_000


class ProofBuilder:
    """Merkle subtree roots of the first ``tree_size`` leaves, for building proofs."""

    def __init__(self, leaves: list[bytes]) -> None:
        self._levels: list[list[bytes]] = [leaves]
        level = leaves
        while len(level) > 1:
            level = [merkle.node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            self._levels.append(level)
        self._memo: dict[tuple[int, int], bytes] = {}
        self.tree_size = len(leaves)

    @classmethod
    def from_engine(cls, engine: Engine, tree_size: int) -> ProofBuilder:
        return cls(list(iter_leaf_hashes(engine, 1, tree_size)))

    def leaf(self, index: int) -> bytes:
        return self._levels[0][index]

    def subtree_root(self, start: int, end: int) -> bytes:
        """Root of leaves ``[start, end)``; perfect aligned subtrees come straight from the levels."""
        if start >= end:
            return merkle.EMPTY_ROOT
        width = end - start
        if width & (width - 1) == 0 and start % width == 0:
            height = width.bit_length() - 1
            return self._levels[height][start >> height]
        cached = self._memo.get((start, end))
        if cached is None:
            k = 1 << ((width - 1).bit_length() - 1)
            cached = merkle.node_hash(self.subtree_root(start, start + k), self.subtree_root(start + k, end))
            self._memo[(start, end)] = cached
        return cached

    def root(self) -> bytes:
        return self.subtree_root(0, self.tree_size)

    def inclusion_proof(self, seq: int) -> list[bytes]:
        """Proof for event ``seq`` (leaf index ``seq - 1``)."""
        return merkle.inclusion_proof_from(self.subtree_root, seq - 1, self.tree_size)

    def consistency_proof(self, old_size: int) -> list[bytes]:
        return merkle.consistency_proof_from(self.subtree_root, old_size, self.tree_size)


def inclusion_proofs(
    engine: Engine, seqs: Iterable[int], tree_size: int, *, max_in_memory: int = MAX_IN_MEMORY
) -> tuple[bytes, dict[int, tuple[bytes, list[bytes]]]]:
    """``(root, {seq: (leaf_hash, proof)})`` for each seq against the tree of ``tree_size`` events."""
    wanted = sorted(set(seqs))
    if any(not 1 <= s <= tree_size for s in wanted):
        raise ValueError("every event must lie within the tree size")
    if tree_size <= max_in_memory:
        builder = ProofBuilder.from_engine(engine, tree_size)
        return builder.root(), {s: (builder.leaf(s - 1), builder.inclusion_proof(s)) for s in wanted}

    def streamed(start: int, end: int) -> bytes:
        acc = merkle.MerkleAccumulator()
        for leaf in iter_leaf_hashes(engine, start + 1, end):
            acc.append(leaf)
        return acc.root()

    out: dict[int, tuple[bytes, list[bytes]]] = {}
    for s in wanted:
        (leaf,) = list(iter_leaf_hashes(engine, s, s))
        out[s] = (leaf, merkle.inclusion_proof_from(streamed, s - 1, tree_size))
    return streamed(0, tree_size), out


def consistency(
    engine: Engine, old_size: int, new_size: int, *, max_in_memory: int = MAX_IN_MEMORY
) -> tuple[bytes, bytes, list[bytes]]:
    """``(old_root, new_root, proof)`` showing the tree of ``old_size`` events is a prefix of ``new_size``."""
    if not 0 < old_size <= new_size:
        raise ValueError("consistency proofs need 0 < old_size <= new_size")
    if new_size <= max_in_memory:
        builder = ProofBuilder.from_engine(engine, new_size)
        return builder.subtree_root(0, old_size), builder.root(), builder.consistency_proof(old_size)

    def streamed(start: int, end: int) -> bytes:
        acc = merkle.MerkleAccumulator()
        for leaf in iter_leaf_hashes(engine, start + 1, end):
            acc.append(leaf)
        return acc.root()

    proof = merkle.consistency_proof_from(streamed, old_size, new_size)
    return streamed(0, old_size), streamed(0, new_size), proof
