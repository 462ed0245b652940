"""RFC 6962 / RFC 9162 Merkle hashing and proofs against transparency-dev's public vectors.

Vectors: /work/shared/vectors/rfc6962.json (leaf indices 0-based).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.merkle import (
    EMPTY_ROOT,
    InvalidProofError,
    MerkleAccumulator,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS: dict[str, Any] = json.loads(Path("/work/shared/vectors/rfc6962.json").read_text())
LEAVES = [bytes.fromhex(x) for x in VECTORS["leaves"]]
LEAF_HASHES = [leaf_hash(x) for x in LEAVES]


def h(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


def reference_mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH, written straight from the definition (an independent oracle)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + reference_mth(leaves[:k]) + reference_mth(leaves[k:])).digest()


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert merkle_root([]) == EMPTY_ROOT == bytes.fromhex(VECTORS["empty_root"])


@pytest.mark.parametrize("size", range(9))
def test_roots_match_vectors(size: int) -> None:
    assert merkle_root(LEAF_HASHES[:size]).hex() == VECTORS["roots"][str(size)]


def test_leaf_and_node_hashes_match_vectors() -> None:
    levels = VECTORS["node_hashes"]["levels"]
    assert [x.hex() for x in LEAF_HASHES] == levels[0]
    assert node_hash(LEAF_HASHES[0], LEAF_HASHES[1]).hex() == levels[1][0]


@pytest.mark.parametrize(
    "case", VECTORS["inclusion_proofs"], ids=lambda c: f"{c['leaf_index']}of{c['tree_size']}"
)
def test_inclusion_proofs_match_vectors(case: dict[str, Any]) -> None:
    proof = inclusion_proof(LEAF_HASHES[: case["tree_size"]], case["leaf_index"])
    assert [p.hex() for p in proof] == case["proof"]
    verify_inclusion(
        bytes.fromhex(case["leaf_hash"]),
        case["leaf_index"],
        case["tree_size"],
        proof,
        bytes.fromhex(case["root"]),
    )


@pytest.mark.parametrize("case", VECTORS["consistency_proofs"], ids=lambda c: f"{c['size1']}to{c['size2']}")
def test_consistency_proofs_match_vectors(case: dict[str, Any]) -> None:
    proof = consistency_proof(LEAF_HASHES[: case["size2"]], case["size1"])
    assert [p.hex() for p in proof] == case["proof"]
    verify_consistency(
        case["size1"], case["size2"], proof, bytes.fromhex(case["root1"]), bytes.fromhex(case["root2"])
    )


@pytest.mark.parametrize("probe", VECTORS["inclusion_probes"], ids=lambda p: p["file"])
def test_inclusion_probes(probe: dict[str, Any]) -> None:
    def check() -> None:
        verify_inclusion(
            bytes.fromhex(probe["leaf_hash"]),
            probe["leaf_index"],
            probe["tree_size"],
            h(probe["proof"]),
            bytes.fromhex(probe["root"]),
        )

    if probe["want_error"]:
        with pytest.raises(InvalidProofError):
            check()
    else:
        check()


@pytest.mark.parametrize("probe", VECTORS["consistency_probes"], ids=lambda p: p["file"])
def test_consistency_probes(probe: dict[str, Any]) -> None:
    def check() -> None:
        verify_consistency(
            probe["size1"],
            probe["size2"],
            h(probe["proof"]),
            bytes.fromhex(probe["root1"]),
            bytes.fromhex(probe["root2"]),
        )

    if probe["want_error"]:
        with pytest.raises(InvalidProofError):
            check()
    else:
        check()


# Advisory edge probes: we follow transparency-dev except that every hash must be 32 bytes, so the one
# probe it accepts with 12-byte "roots" is refused here (a root that is not a SHA-256 digest is garbage).
STRICTER_THAN_REFERENCE = {"testdata/consistency/additional/sizes-are-equal-one-and-proof-is-empty.json"}


@pytest.mark.parametrize("probe", VECTORS["edge_probes"]["consistency"], ids=lambda p: p["file"])
def test_consistency_edge_probes(probe: dict[str, Any]) -> None:
    want_error = probe["want_error"] or probe["file"] in STRICTER_THAN_REFERENCE

    def check() -> None:
        verify_consistency(
            probe["size1"],
            probe["size2"],
            h(probe["proof"]),
            bytes.fromhex(probe["root1"]),
            bytes.fromhex(probe["root2"]),
        )

    if want_error:
        with pytest.raises(InvalidProofError):
            check()
    else:
        check()


leaf_lists = st.lists(st.binary(max_size=8), min_size=1, max_size=40)


@given(leaf_lists)
def test_accumulator_equals_definition(leaves: list[bytes]) -> None:
    acc = MerkleAccumulator()
    for i, leaf in enumerate(leaves, start=1):
        acc.append(leaf_hash(leaf))
        assert acc.size == i
    assert acc.root() == reference_mth(leaves) == merkle_root([leaf_hash(x) for x in leaves])


@given(leaf_lists, st.data())
def test_every_inclusion_proof_verifies_and_pins_the_leaf(leaves: list[bytes], data: st.DataObject) -> None:
    hashes = [leaf_hash(x) for x in leaves]
    index = data.draw(st.integers(0, len(hashes) - 1))
    root = merkle_root(hashes)
    proof = inclusion_proof(hashes, index)
    verify_inclusion(hashes[index], index, len(hashes), proof, root)
    with pytest.raises(InvalidProofError):
        verify_inclusion(leaf_hash(b"forged, longer than any drawn leaf"), index, len(hashes), proof, root)


@given(leaf_lists, st.data())
def test_every_consistency_proof_verifies(leaves: list[bytes], data: st.DataObject) -> None:
    hashes = [leaf_hash(x) for x in leaves]
    old = data.draw(st.integers(1, len(hashes)))
    proof = consistency_proof(hashes, old)
    verify_consistency(old, len(hashes), proof, merkle_root(hashes[:old]), merkle_root(hashes))
    if old < len(hashes):
        with pytest.raises(InvalidProofError):
            verify_consistency(
                old, len(hashes), proof, leaf_hash(b"other, longer than any drawn leaf"), merkle_root(hashes)
            )
