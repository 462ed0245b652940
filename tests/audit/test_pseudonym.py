"""Pseudonymizer: keyed HMAC refs (PIPL Art. 51 de-identification; complaint lookup needs the key)."""

from __future__ import annotations

import hashlib
import hmac
import pickle
import string
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit import Pseudonymizer, PseudonymRing, is_ref, normalise_id_number, packed_ref, unpacked_ref

keys = st.binary(min_size=16, max_size=64)


@given(keys, st.text())
def test_ref_is_stable_for_a_key(key: bytes, value: str) -> None:
    a, b = Pseudonymizer(key, "k1"), Pseudonymizer(bytes(key), "k1")
    assert a.ref(value) == b.ref(value)
    assert is_ref(a.ref(value))


@given(st.binary(min_size=16, max_size=200), st.text())
def test_ref_is_rfc2104_hmac_sha256_of_the_domain_tagged_value(key: bytes, value: str) -> None:
    # The precomputed inner/outer states must give exactly the standard MAC, for keys shorter and
    # longer than SHA-256's 64-byte block: refs already in the log must still be found.
    expected = hmac.new(key, b"grassroots-audit-ref-v1\x00" + value.encode("utf-8"), hashlib.sha256)
    assert Pseudonymizer(key, "k1").ref(value) == f"k1:{expected.hexdigest()}"


@given(keys, keys, st.text())
def test_ref_differs_across_keys(key1: bytes, key2: bytes, value: str) -> None:
    if key1 == key2:
        return
    assert Pseudonymizer(key1, "k1").ref(value) != Pseudonymizer(key2, "k1").ref(value)


@given(keys, st.text(), st.text())
def test_different_values_get_different_refs(key: bytes, v1: str, v2: str) -> None:
    p = Pseudonymizer(key, "k1")
    assert (p.ref(v1) == p.ref(v2)) == (v1 == v2)


def test_ref_names_its_key() -> None:
    key = b"0123456789abcdef0123456789abcdef"
    ref1, ref2 = Pseudonymizer(key, "k1").ref("x"), Pseudonymizer(key, "k2").ref("x")
    assert ref1.startswith("k1:") and ref2.startswith("k2:")
    assert ref1.split(":")[1] == ref2.split(":")[1]  # same key, same MAC: the id only labels it


def test_key_never_shows() -> None:
    key = b"super-secret-key-material-123456"
    p = Pseudonymizer(key, "k1")
    for text in (repr(p), str(p), f"{p}"):
        assert "super-secret" not in text and key.hex() not in text
    with pytest.raises(TypeError):
        pickle.dumps(p)


@pytest.mark.parametrize(
    ("key", "key_id"), [(b"short", "k1"), (b"x" * 32, ""), (b"x" * 32, "k:1"), (b"x" * 32, "k" * 17)]
)
def test_weak_keys_and_bad_ids_are_refused(key: bytes, key_id: str) -> None:
    with pytest.raises(ValueError):
        Pseudonymizer(key, key_id)


def test_id_numbers_normalise_before_hashing() -> None:
    p = Pseudonymizer(b"x" * 32, "k1")
    assert p.ref(normalise_id_number(" 11010519491231002x ")) == p.ref("11010519491231002X")


@pytest.mark.parametrize(
    "typed",
    [
        "110105 19491231 002X",
        "110105-19491231-002x",
        # full-width, as a Chinese input method in full-width mode types it (digits, hyphen, space, x)
        "１１０１０５１９４９１２３１００２Ｘ",
        "１１０１０５－１９４９１２３１－００２ｘ",
        "110105\u300019491231\u3000002X",
        # a Chinese input method's dashes, and the number read out and typed digit by digit
        "110105—19491231—002X",
        "110105–19491231–002x",
        " ".join("11010519491231002X"),
    ],
)
def test_an_id_number_typed_as_people_write_it_has_the_stored_form(typed: str) -> None:
    """The complaint and transparency lookups find a person by the ref of this form: a full-width number
    used to keep its full-width digits, and found nobody."""
    assert normalise_id_number(typed) == "11010519491231002X"


def test_ring_writes_with_the_active_key_and_looks_up_under_every_kept_key() -> None:
    old, new = Pseudonymizer(b"o" * 32, "k1"), Pseudonymizer(b"n" * 32, "k2")
    ring = PseudonymRing(new, (old,))
    assert ring.ref("x") == new.ref("x") and ring.active is new
    assert ring.refs("x") == [new.ref("x"), old.ref("x")]
    assert ring.key_ids == ("k2", "k1")
    # One key alone (no rotation yet) looks up exactly what it writes.
    assert PseudonymRing(old).refs("x") == [old.ref("x")]


def test_ring_refuses_a_key_id_twice_and_never_shows_a_key() -> None:
    with pytest.raises(ValueError, match="distinct"):
        PseudonymRing(Pseudonymizer(b"o" * 32, "k1"), (Pseudonymizer(b"n" * 32, "k1"),))
    key = b"super-secret-key-material-123456"
    ring = PseudonymRing(Pseudonymizer(key, "k2"), (Pseudonymizer(b"o" * 32, "k1"),))
    assert repr(ring) == "PseudonymRing(key_ids=('k2', 'k1'))" and key.hex() not in str(ring)
    with pytest.raises(TypeError):
        pickle.dumps(ring)


@given(st.binary(min_size=16, max_size=200), st.text())
def test_a_link_is_rfc2104_hmac_sha256_in_its_own_domain(key: bytes, ref: str) -> None:
    expected = hmac.new(key, b"grassroots-audit-ref-link-v1\x00" + ref.encode("utf-8"), hashlib.sha256)
    p = Pseudonymizer(key, "k2")
    assert p.link(ref) == expected.hexdigest()
    # Never a ref of anything: the two domains are prefix-free, so link and ref of one text always differ.
    assert p.ref(ref) != f"k2:{p.link(ref)}"


def test_links_join_a_residents_refs_across_rotations_and_only_the_newer_key_computes_them() -> None:
    k1, k2, k3 = (Pseudonymizer(bytes([n]) * 32, f"k{n}") for n in (1, 2, 3))
    assert PseudonymRing(k1).links(["a"]) == {}  # no rotation yet: events carry nothing more
    ring = PseudonymRing(k3, (k1, k2))
    links = ring.links(["a", "b"])
    assert links == {
        "k1": [k3.link(k1.ref("a")), k3.link(k1.ref("b"))],
        "k2": [k3.link(k2.ref("a")), k3.link(k2.ref("b"))],
    }
    # What the rule computes from an old ref meets the link the newer key's events carry.
    assert ("k3", links["k1"][0]) in ring.link_candidates(k1.ref("a"))
    assert ("k3", links["k2"][1]) in ring.link_candidates(k2.ref("b"))
    assert ring.link_candidates(k1.ref("a")) == [("k3", k3.link(k1.ref("a"))), ("k2", k2.link(k1.ref("a")))]
    # The retired key (the leaked one) reproduces no link, and a ref under an unknown key or no ref has none.
    assert k1.link(k1.ref("a")) not in links["k1"]
    assert ring.link_candidates(Pseudonymizer(b"x" * 32, "k9").ref("a")) == []
    assert ring.link_candidates("not a ref") == []


@given(st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=16), st.binary())
def test_a_packed_ref_unpacks_to_the_same_ref(key_id: str, value: bytes) -> None:
    ref = Pseudonymizer(b"k" * 32, key_id).ref(value.hex())
    packed = packed_ref(ref)
    assert len(packed) == len(key_id) + 32 and unpacked_ref(packed) == ref


@pytest.mark.parametrize(
    "text",
    ["k1:" + "AB" * 32, "k1:" + "ab" * 31, "k1:" + "ab" * 31 + "  ", "k1:" + "ab" * 30 + " ab ",
     "k1" + "ab" * 32, ":" + "ab" * 32, "k 1:" + "ab" * 32, "ｋ1:" + "ab" * 32, "k1:" + "zz" * 32],
)  # fmt: skip
def test_only_a_ref_is_packed(text: str) -> None:
    with pytest.raises(ValueError):
        packed_ref(text)


@pytest.mark.parametrize("packed", [b"", bytes(32), b"k 1" + bytes(32), b"\xff" + bytes(32)])
def test_only_a_packed_ref_is_unpacked(packed: bytes) -> None:
    with pytest.raises(ValueError):
        unpacked_ref(packed)


def _normalised_char_by_char(value: str) -> str:
    """The stored form by its definition, one character at a time (NFKC, no spaces, no dashes, upper)."""
    folded = unicodedata.normalize("NFKC", value)
    return "".join(c for c in folded if not c.isspace() and unicodedata.category(c) != "Pd").upper()


@given(st.text(alphabet=st.characters(max_codepoint=0x7F)) | st.text())
def test_normalising_an_id_number_agrees_with_the_definition_for_any_text(value: str) -> None:
    """The shortcut for a number already in plain ASCII letters and digits gives what the character walk
    gives, for every text: a ref computed at read time always equals the one a lookup computes."""
    assert normalise_id_number(value) == _normalised_char_by_char(value)
