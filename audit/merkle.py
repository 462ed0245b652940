"""Merkle tree hashing, proofs and proof verification (RFC 6962 §2.1, RFC 9162 §2.1). Pure functions.

Hashing is domain-separated so a leaf can never be passed off as an inner node (RFC 6962 §2.1,
second-preimage resistance): ``leaf = SHA-256(0x00 || data)``, ``node = SHA-256(0x01 || left || right)``;
the empty tree's root is ``SHA-256("")``. Leaf indices are 0-based as in RFC 9162.

Functions that build trees take *leaf hashes* (what the audit log stores), not leaf data. Proof builders
also exist in a form taking ``subtree_root(start, end)`` so a proof over a log too large for memory can
be computed by streaming each needed range from the database.

Verification raises :class:`InvalidProofError` (expected vs found where that helps) and never returns a
boolean that a caller could forget to check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Final

HASH_SIZE: Final = 32
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
_LEAF_PREFIX: Final = b"\x00"
_NODE_PREFIX: Final = b"\x01"

SubtreeRoot = Callable[[int, int], bytes]


class InvalidProofError(ValueError):
    """A Merkle inclusion or consistency proof does not verify."""


class PrunedRangeError(ValueError):
    """A subtree root needs leaves that were pruned and is not one of the kept frontier nodes.

    Raised by :func:`anchored_subtree_root`: proofs that reach into a pruned prefix must come from the
    signed monthly archives instead.
    """


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 §2.1: ``MTH({d0}) = SHA-256(0x00 || d0)``."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 §2.1: ``SHA-256(0x01 || MTH(left) || MTH(right))``."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n > 1``), RFC 6962 §2.1."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleAccumulator:
    """The root of a growing tree in O(log n) memory (a stack of perfect subtrees, a "compact range").

    Appending leaf hashes one at a time and asking :meth:`root` gives the same value as
    :func:`merkle_root` over the whole list: the RFC 6962 tree of ``n`` leaves is the fold, from the
    right, of the perfect subtrees that the binary digits of ``n`` describe.
    """

    __slots__ = ("_size", "_stack")

    def __init__(self) -> None:
        self._stack: list[bytes] = []
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf: bytes) -> None:
        self._size += 1
        self._stack.append(leaf)
        n = self._size
        while n & 1 == 0:
            right = self._stack.pop()
            left = self._stack.pop()
            self._stack.append(node_hash(left, right))
            n >>= 1

    def root(self) -> bytes:
        return fold_frontier(self._stack)

    def frontier(self) -> list[bytes]:
        """The perfect-subtree roots covering leaves ``[0, size)``, largest (leftmost) first.

        This "compact range" is all a pruned log keeps of its prefix: with it, roots of any larger tree and
        proofs about later leaves can still be computed (see :func:`anchored_subtree_root`).
        """
        return list(self._stack)

    @classmethod
    def resume(cls, size: int, frontier: Sequence[bytes]) -> MerkleAccumulator:
        """An accumulator that continues after ``size`` leaves whose frontier is ``frontier``."""
        if size < 0 or len(frontier) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {max(size, 0).bit_count()} frontier nodes")
        for node in frontier:
            if len(node) != HASH_SIZE:
                raise ValueError(f"frontier nodes must be {HASH_SIZE} bytes")
        acc = cls()
        acc._stack = list(frontier)
        acc._size = size
        return acc


def fold_frontier(frontier: Sequence[bytes]) -> bytes:
    """The RFC 6962 root of a tree given its frontier: the right fold of its perfect subtrees."""
    if not frontier:
        return EMPTY_ROOT
    result = frontier[-1]
    for subtree in reversed(frontier[:-1]):
        result = node_hash(subtree, result)
    return result


def frontier_ranges(size: int) -> list[tuple[int, int]]:
    """Leaf ranges ``[start, end)`` of the frontier nodes of a tree of ``size`` leaves, leftmost first.

    One perfect, aligned subtree per set bit of ``size``, most significant first (RFC 6962 §2.1 splits at
    the largest power of two, so these are exactly the nodes on the tree's right edge's left side).
    """
    ranges: list[tuple[int, int]] = []
    start = 0
    for bit in reversed(range(max(size, 0).bit_length())):
        width = 1 << bit
        if size & width:
            ranges.append((start, start + width))
            start += width
    return ranges


def anchored_subtree_root(size: int, frontier: Sequence[bytes], kept: SubtreeRoot) -> SubtreeRoot:
    """``subtree_root(start, end)`` for a log whose first ``size`` leaves are pruned to ``frontier``.

    Ranges at or after ``size`` come from ``kept`` (the remaining leaves); a range inside the pruned prefix
    is answered when it is a run of whole frontier nodes; a range straddling the cut is split as RFC 6962
    §2.1 splits it. Anything else raises :class:`PrunedRangeError`. Every node an inclusion proof of a
    leaf ``>= size``, or a consistency proof between sizes ``>= size``, asks for is answerable: a left
    sibling lying wholly in the prefix is a maximal aligned subtree of it, i.e. a frontier node.
    """
    if len(frontier) != size.bit_count():
        raise ValueError(f"a tree of {size} leaves has {size.bit_count()} frontier nodes")
    bounds = {0: 0}
    for i, (_, end) in enumerate(frontier_ranges(size)):
        bounds[end] = i + 1

    def subtree_root(start: int, end: int) -> bytes:
        if start >= size:
            return kept(start, end)
        if end <= size:
            first, last = bounds.get(start), bounds.get(end)
            if first is None or last is None or first >= last:
                raise PrunedRangeError(f"leaves [{start}, {end}) were pruned; see the archives")
            return fold_frontier(frontier[first:last])
        k = _split(end - start)
        return node_hash(subtree_root(start, start + k), subtree_root(start + k, end))

    return subtree_root


def merkle_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """RFC 6962 §2.1 Merkle Tree Hash over the given leaf hashes (``EMPTY_ROOT`` for none)."""
    acc = MerkleAccumulator()
    for leaf in leaf_hashes:
        acc.append(leaf)
    return acc.root()


def _list_subtree_root(leaf_hashes: Sequence[bytes]) -> SubtreeRoot:
    def subtree_root(start: int, end: int) -> bytes:
        return merkle_root(leaf_hashes[start:end])

    return subtree_root


def inclusion_proof_from(subtree_root: SubtreeRoot, index: int, tree_size: int) -> list[bytes]:
    """RFC 9162 §2.1.3.1 ``PATH(m, D[n])``, asking ``subtree_root(start, end)`` for each sibling."""
    if not 0 <= index < tree_size:
        raise ValueError("leaf index must be in [0, tree_size)")
    proof: list[bytes] = []
    start, end, m = 0, tree_size, index
    # Walk down from the root; siblings are collected top-down and returned bottom-up.
    while end - start > 1:
        k = _split(end - start)
        if m < k:
            proof.append(subtree_root(start + k, end))
            end = start + k
        else:
            proof.append(subtree_root(start, start + k))
            start, m = start + k, m - k
    proof.reverse()
    return proof


def consistency_proof_from(subtree_root: SubtreeRoot, old_size: int, tree_size: int) -> list[bytes]:
    """RFC 9162 §2.1.4.1 ``PROOF(m, D[n]) = SUBPROOF(m, D[n], true)``."""
    if not 0 < old_size <= tree_size:
        raise ValueError("consistency proofs need 0 < old_size <= tree_size")
    proof: list[bytes] = []
    start, end, m, complete = 0, tree_size, old_size, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            proof.append(subtree_root(start + k, end))
            end = start + k
        else:
            proof.append(subtree_root(start, start + k))
            start, m, complete = start + k, m - k, False
    if not complete:
        proof.append(subtree_root(start, end))
    proof.reverse()
    return proof


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Inclusion proof for leaf ``index`` (0-based) in the tree of all ``leaf_hashes``."""
    return inclusion_proof_from(_list_subtree_root(leaf_hashes), index, len(leaf_hashes))


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """Consistency proof from the tree of the first ``old_size`` leaves to the tree of all of them."""
    return consistency_proof_from(_list_subtree_root(leaf_hashes), old_size, len(leaf_hashes))


def _check_hash(name: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise InvalidProofError(f"{name} must be {HASH_SIZE} bytes, found {len(value)}")


def root_from_inclusion_proof(leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof leads to (RFC 9162 §2.1.3.2 steps 1-5)."""
    if not 0 <= index < tree_size:
        raise InvalidProofError(f"leaf index {index} is outside a tree of size {tree_size}")
    _check_hash("leaf hash", leaf)
    for component in proof:
        _check_hash("proof component", component)
    fn, sn, r = index, tree_size - 1, leaf
    for component in proof:
        if sn == 0:
            raise InvalidProofError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(component, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, component)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProofError("inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that leaf hash ``leaf`` sits at ``index`` in the tree of ``tree_size`` with ``root``.

    RFC 9162 §2.1.3.2. Raises :class:`InvalidProofError`; returns nothing on success.
    """
    _check_hash("root", root)
    computed = root_from_inclusion_proof(leaf, index, tree_size, proof)
    if computed != root:
        raise InvalidProofError(f"inclusion proof leads to root {computed.hex()}, expected {root.hex()}")


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """Check that the tree (``new_size``, ``new_root``) extends (``old_size``, ``old_root``).

    RFC 9162 §2.1.4.2. Raises :class:`InvalidProofError`. Degenerate inputs follow transparency-dev/merkle:
    ``old_size == 0`` is refused (a proof from nothing proves nothing), equal sizes need an empty proof
    and equal roots. Stricter than that reference: every hash must be 32 bytes.
    """
    _check_hash("old root", old_root)
    _check_hash("new root", new_root)
    for component in proof:
        _check_hash("proof component", component)
    if old_size <= 0:
        raise InvalidProofError("consistency from an empty tree is not checked")
    if old_size > new_size:
        raise InvalidProofError(f"old size {old_size} is larger than new size {new_size}")
    if old_size == new_size:
        if proof:
            raise InvalidProofError("equal sizes need an empty consistency proof")
        if old_root != new_root:
            raise InvalidProofError(f"equal sizes but roots differ: {old_root.hex()} vs {new_root.hex()}")
        return
    if not proof:
        raise InvalidProofError("empty consistency proof for different sizes")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        # RFC 9162 §2.1.4.2 step 2: a perfect old tree is its own first proof node.
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for component in path[1:]:
        if sn == 0:
            raise InvalidProofError("consistency proof is longer than expected")
        if fn & 1 or fn == sn:
            fr = node_hash(component, fr)
            sr = node_hash(component, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, component)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProofError("consistency proof is shorter than expected")
    if fr != old_root:
        raise InvalidProofError(f"old root expected {old_root.hex()}, proof gives {fr.hex()}")
    if sr != new_root:
        raise InvalidProofError(f"new root expected {new_root.hex()}, proof gives {sr.hex()}")
