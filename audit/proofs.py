"""Many RFC 9162 proofs over one tree size, cheaply: the tree's levels built once, subtrees memoised.

:meth:`audit.log.AuditLog.inclusion_proof` streams every needed range from the database, which is right
for one proof over a huge log but costs O(n) per proof. An incident attaches one proof per access event,
and the API serves proofs on demand: here the leaf hashes of the first ``tree_size`` events are read
once, the perfect subtrees are hashed level by level (RFC 6962 §2.1), and each proof then costs
O(log² n). Above ``max_in_memory`` leaves it falls back to streaming.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from sqlalchemy import Engine

from audit import merkle
from audit.anchor import latest_anchor, pruned_through
from audit.log import iter_leaf_hashes

MAX_IN_MEMORY: Final = 4_000_000


class ProofBuilder:
    """Merkle subtree roots of the first ``tree_size`` leaves, for building proofs.

    On a pruned log (:mod:`audit.anchor`) it holds the leaves after the anchor plus the anchor's frontier:
    level ``h`` keeps the perfect aligned subtrees from the one containing leaf ``offset`` onwards, whose
    left-hand pruned children are exactly the frontier nodes, so proofs about kept events and roots of any
    size ``>= offset`` come out as on the full log.
    """

    def __init__(self, leaves: list[bytes], *, offset: int = 0, frontier: Sequence[bytes] = ()) -> None:
        if len(frontier) != offset.bit_count():
            raise ValueError(f"a prefix of {offset} leaves has {offset.bit_count()} frontier nodes")
        self.offset = offset
        self._frontier = list(frontier)
        # Frontier node of height h (present when bit h of offset is set), by height.
        by_height = {
            (end - start).bit_length() - 1: node
            for (start, end), node in zip(merkle.frontier_ranges(offset), frontier, strict=True)
        }
        self._levels: list[list[bytes]] = [leaves]
        self._first: list[int] = [offset]  # absolute index (at its level) of each level's first node
        level, first = leaves, offset
        while len(level) > 1 or (level and first % 2 == 1):
            height = len(self._levels) - 1
            if first % 2 == 1:
                # The left sibling of this level's first node lies wholly in the pruned prefix.
                level = [by_height[height], *level]
                first -= 1
            level = [merkle.node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            first //= 2
            self._levels.append(level)
            self._first.append(first)
        self._memo: dict[tuple[int, int], bytes] = {}
        self.tree_size = offset + len(leaves)
        self._anchored = merkle.anchored_subtree_root(offset, self._frontier, self._kept_root)

    @classmethod
    def from_engine(cls, engine: Engine, tree_size: int) -> ProofBuilder:
        anchor = latest_anchor(engine)
        if anchor is None or anchor.pruned_through == 0:
            return cls(list(iter_leaf_hashes(engine, 1, tree_size)))
        if tree_size < anchor.pruned_through:
            raise merkle.PrunedRangeError(
                f"tree size {tree_size} lies in the pruned prefix (events 1..{anchor.pruned_through})"
            )
        return cls(
            list(iter_leaf_hashes(engine, anchor.pruned_through + 1, tree_size)),
            offset=anchor.pruned_through,
            frontier=anchor.frontier,
        )

    def leaf(self, index: int) -> bytes:
        if index < self.offset:
            raise merkle.PrunedRangeError(f"event {index + 1} was pruned; see the archives")
        return self._levels[0][index - self.offset]

    def _level_node(self, start: int, end: int) -> bytes | None:
        """An aligned perfect subtree straight from the levels, if it is there."""
        width = end - start
        if width & (width - 1) or start % width:
            return None
        height = width.bit_length() - 1
        if height >= len(self._levels):
            return None
        i = (start >> height) - self._first[height]
        level = self._levels[height]
        return level[i] if 0 <= i < len(level) else None

    def _kept_root(self, start: int, end: int) -> bytes:
        """Root of leaves ``[start, end)``, ``start >= offset``: from the levels, else split and memoised."""
        if start >= end:
            return merkle.EMPTY_ROOT
        found = self._level_node(start, end)
        if found is not None:
            return found
        cached = self._memo.get((start, end))
        if cached is None:
            k = 1 << ((end - start - 1).bit_length() - 1)
            cached = merkle.node_hash(self._kept_root(start, start + k), self._kept_root(start + k, end))
            self._memo[(start, end)] = cached
        return cached

    def subtree_root(self, start: int, end: int) -> bytes:
        """Root of leaves ``[start, end)`` (raises :class:`audit.merkle.PrunedRangeError` when pruned)."""
        if start >= self.offset or start >= end:
            return self._kept_root(start, end)
        # A perfect node straddling the cut is kept in the levels; anything else goes via the frontier.
        found = self._level_node(start, end) if end > self.offset else None
        return found if found is not None else self._anchored(start, end)

    def root(self) -> bytes:
        return self.subtree_root(0, self.tree_size)

    def inclusion_proof(self, seq: int) -> list[bytes]:
        """Proof for event ``seq`` (leaf index ``seq - 1``)."""
        if seq <= self.offset:
            raise merkle.PrunedRangeError(f"event {seq} was pruned; its proof is in the archives")
        return merkle.inclusion_proof_from(self.subtree_root, seq - 1, self.tree_size)

    def consistency_proof(self, old_size: int) -> list[bytes]:
        return merkle.consistency_proof_from(self.subtree_root, old_size, self.tree_size)


def _streamed_root(engine: Engine) -> merkle.SubtreeRoot:
    """``subtree_root`` streaming each range from the database, through the anchor when pruned."""

    def kept(start: int, end: int) -> bytes:
        acc = merkle.MerkleAccumulator()
        for leaf in iter_leaf_hashes(engine, start + 1, end):
            acc.append(leaf)
        return acc.root()

    anchor = latest_anchor(engine)
    return kept if anchor is None else anchor.subtree_root(kept)


def inclusion_proofs(
    engine: Engine, seqs: Iterable[int], tree_size: int, *, max_in_memory: int = MAX_IN_MEMORY
) -> tuple[bytes, dict[int, tuple[bytes, list[bytes]]]]:
    """``(root, {seq: (leaf_hash, proof)})`` for each seq against the tree of ``tree_size`` events.

    Raises :class:`audit.merkle.PrunedRangeError` for a pruned event (its proof is in the archive).
    """
    wanted = sorted(set(seqs))
    if any(not 1 <= s <= tree_size for s in wanted):
        raise ValueError("every event must lie within the tree size")
    if tree_size <= max_in_memory:
        builder = ProofBuilder.from_engine(engine, tree_size)
        return builder.root(), {s: (builder.leaf(s - 1), builder.inclusion_proof(s)) for s in wanted}

    cut = pruned_through(engine)
    if wanted and wanted[0] <= cut:
        raise merkle.PrunedRangeError(f"event {wanted[0]} was pruned; its proof is in the archives")
    streamed = _streamed_root(engine)
    out: dict[int, tuple[bytes, list[bytes]]] = {}
    for s in wanted:
        leaves = list(iter_leaf_hashes(engine, s, s))
        out[s] = (leaves[0], merkle.inclusion_proof_from(streamed, s - 1, tree_size))
    return streamed(0, tree_size), out


def consistency(
    engine: Engine, old_size: int, new_size: int, *, max_in_memory: int = MAX_IN_MEMORY
) -> tuple[bytes, bytes, list[bytes]]:
    """``(old_root, new_root, proof)`` showing the tree of ``old_size`` events is a prefix of ``new_size``.

    On a pruned log an ``old_size`` inside the pruned prefix raises
    :class:`audit.merkle.PrunedRangeError` unless its root is a run of frontier nodes ("covered by the
    archives": check such a checkpoint with the archive files).
    """
    if not 0 < old_size <= new_size:
        raise ValueError("consistency proofs need 0 < old_size <= new_size")
    if new_size <= max_in_memory:
        builder = ProofBuilder.from_engine(engine, new_size)
        return builder.subtree_root(0, old_size), builder.root(), builder.consistency_proof(old_size)

    streamed = _streamed_root(engine)
    proof = merkle.consistency_proof_from(streamed, old_size, new_size)
    return streamed(0, old_size), streamed(0, new_size), proof
