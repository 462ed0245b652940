"""FF1 format-preserving encryption: NIST SP 800-38G (2016) §5.1, Algorithms 7 (encrypt) and 8 (decrypt).

Written here because no maintained FF1 package on PyPI supports Python 3.11: `ff3`/`pyfpe` implement
FF3 only, `pyffx` implements the pre-standard FFX draft, `FPE` 0.1.2 is an unmaintained teaching
release, and `fpr-ff1` requires Python >= 3.12. Built on `cryptography`'s AES in ECB mode used
block by block (the PRF of §4.3 is CBC-MAC with a zero IV, which that computes exactly).
Verified against NIST's nine FF1 samples (tests/masking/test_keys_and_reversible.py).

Speed (issue 4: FF1 within 10x of AES-GCM per value): everything that depends only on the key, the
length and the tweak is computed once per (length, tweak) and cached — the CBC-MAC state after P and
after the blocks of Q that hold only the tweak and padding (Algorithm 7 steps 5 and 6.i), and the
round constant [i] already XORed into it. A round then costs one AES block when `tweak` + NUM(B) + 1
byte fit into 16 bytes (a tweak of at most 13 bytes for up to 9-digit halves), and no lists of
numerals are built on the integer entry points (`encrypt_int`, `decrypt_int`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["FF1"]

_MAX_TWEAK = 1 << 16
_PLAN_CACHE_LIMIT = 4096
_MASK128 = (1 << 128) - 1

_Encrypt = Callable[[bytes], bytes]


@dataclass(frozen=True, slots=True)
class _Plan:
    """What FF1 needs per (length, tweak) under one key; ints only, so sharing across threads is safe."""

    u: int
    v: int
    b: int
    d: int
    mod_u: int
    mod_v: int
    blocks: int  # blocks of Q that change per round (hold [i] and NUM(B))
    state: int  # CBC-MAC state after P and the constant leading blocks of Q
    # Per round i: the varying blocks of Q with NUM(B) = 0, already XORed into `state` when blocks == 1.
    rounds: tuple[int, ...]
    # One AES call per round (blocks == 1 and d <= 16): (rounds[i], radix**m) in round order.
    fast: bool
    drop: int
    encrypt_steps: tuple[tuple[int, int], ...]
    decrypt_steps: tuple[tuple[int, int], ...]


class FF1:
    """FF1 over numerals `0..radix-1` with an AES key of 16, 24 or 32 bytes.

    Domain rule of SP 800-38G §5.1 (revised 2019): radix**minlen >= 1_000_000, so short inputs are refused.
    """

    __slots__ = ("_key", "_local", "_plans", "_siblings", "radix")

    def __init__(self, key: bytes, radix: int = 10) -> None:
        if len(key) not in (16, 24, 32):
            raise ValueError("FF1 needs an AES key of 16, 24 or 32 bytes")
        if not 2 <= radix <= 1 << 16:
            raise ValueError("FF1 radix must be in [2, 65536]")
        self._key = key
        self.radix = radix
        self._local = threading.local()
        self._plans: dict[tuple[int, bytes], _Plan] = {}
        self._siblings: dict[int, FF1] = {radix: self}

    def with_radix(self, radix: int) -> FF1:
        """FF1 under the same key over another radix (made once, then reused). The two are independent
        permutations: the radix is part of P, the first block every PRF call starts from (Algorithm 7
        step 5), so the key need not be split."""
        sibling = self._siblings.get(radix)
        if sibling is None:
            sibling = self._siblings[radix] = FF1(self._key, radix)
        return sibling

    def __repr__(self) -> str:
        return f"FF1(radix={self.radix}, key=<{len(self._key) * 8}-bit, hidden>)"

    def _ecb(self) -> _Encrypt:
        # One encryptor per thread: cryptography's cipher contexts are not safe to share across threads.
        enc: _Encrypt | None = getattr(self._local, "enc", None)
        if enc is None:
            ctx = Cipher(algorithms.AES(self._key), modes.ECB()).encryptor()  # noqa: S305 - FF1's PRF is CBC-MAC built from raw AES blocks
            enc = ctx.update
            self._local.enc = enc
        return enc

    # --- numeral-list entry points (the standard's interface) ---------------------------------------

    def encrypt(self, numerals: Sequence[int], tweak: bytes = b"") -> list[int]:
        return self._numerals(numerals, tweak, decrypt=False)

    def decrypt(self, numerals: Sequence[int], tweak: bytes = b"") -> list[int]:
        return self._numerals(numerals, tweak, decrypt=True)

    def _numerals(self, numerals: Sequence[int], tweak: bytes, *, decrypt: bool) -> list[int]:
        radix = self.radix
        n = len(numerals)
        plan = self._plan(n, tweak)
        if any(not 0 <= x < radix for x in numerals):
            raise ValueError("FF1 input has a numeral outside the radix")
        a = _num(numerals[: plan.u], radix)
        b = _num(numerals[plan.u :], radix)
        a, b = self._feistel(plan, a, b, decrypt=decrypt)
        return _str(a, plan.u, radix) + _str(b, plan.v, radix)

    # --- integer entry points: NUM_radix of the numeral string of `length` numerals ---------------

    def encrypt_int(self, value: int, length: int, tweak: bytes = b"") -> int:
        return self._int(value, length, tweak, decrypt=False)

    def decrypt_int(self, value: int, length: int, tweak: bytes = b"") -> int:
        return self._int(value, length, tweak, decrypt=True)

    def _int(self, value: int, length: int, tweak: bytes, *, decrypt: bool) -> int:
        plan = self._plan(length, tweak)
        if not 0 <= value < plan.mod_u * plan.mod_v:
            raise ValueError("FF1 input does not fit in the given number of numerals")
        a, b = divmod(value, plan.mod_v)
        a, b = self._feistel(plan, a, b, decrypt=decrypt)
        return a * plan.mod_v + b

    # --- the algorithm ----------------------------------------------------------------------------

    def _plan(self, n: int, tweak: bytes) -> _Plan:
        plan = self._plans.get((n, tweak))
        if plan is None:
            plan = self._make_plan(n, tweak)
            if len(self._plans) >= _PLAN_CACHE_LIMIT:
                self._plans.clear()
            self._plans[(n, tweak)] = plan
        return plan

    def _make_plan(self, n: int, tweak: bytes) -> _Plan:
        radix = self.radix
        t = len(tweak)
        if n > 1 << 32 or radix**n < 1_000_000:
            raise ValueError("FF1 input is outside the permitted domain (radix**len must be >= 10**6)")
        if t >= _MAX_TWEAK:
            raise ValueError("FF1 tweak too long")
        u = n // 2
        v = n - u
        # Steps 3-4: b bytes hold NUM_radix of the longer half; d bytes of PRF output are used.
        b = ((radix**v - 1).bit_length() + 7) // 8
        d = 4 * ((b + 3) // 4) + 4
        # Step 5: P = [1]^1 || [2]^1 || [1]^1 || [radix]^3 || [10]^1 || [u mod 256]^1 || [n]^4 || [t]^4.
        p = bytes([1, 2, 1]) + radix.to_bytes(3, "big") + bytes([10, u % 256]) + n.to_bytes(4, "big")
        p += t.to_bytes(4, "big")
        enc = self._ecb()
        state = int.from_bytes(enc(p), "big")
        # Step 6.i: Q = T || [0]^((-t-b-1) mod 16) || [i]^1 || [NUM(B)]^b. Its leading blocks that hold
        # only T and padding are the same in every round: fold them into the CBC-MAC state once.
        const = tweak + bytes((-t - b - 1) % 16)
        full = len(const) // 16
        for off in range(0, full * 16, 16):
            state = _cipher_int(enc, state ^ int.from_bytes(const[off : off + 16], "big"))
        tail = int.from_bytes(const[full * 16 :], "big")
        blocks = (len(const) - full * 16 + 1 + b) // 16
        shift = 8 * (1 + b)
        varying = tuple((tail << shift) | (i << (8 * b)) for i in range(10))
        if blocks == 1:
            varying = tuple(state ^ x for x in varying)
        mod_u, mod_v = radix**u, radix**v
        steps = tuple((varying[i], mod_u if i % 2 == 0 else mod_v) for i in range(10))
        return _Plan(
            u=u,
            v=v,
            b=b,
            d=d,
            mod_u=mod_u,
            mod_v=mod_v,
            blocks=blocks,
            state=state,
            rounds=varying,
            fast=blocks == 1 and d <= 16,
            drop=8 * (16 - d),
            encrypt_steps=steps,
            decrypt_steps=steps[::-1],
        )

    def _feistel(self, plan: _Plan, a: int, b: int, *, decrypt: bool) -> tuple[int, int]:
        enc = self._ecb()
        # Step 6.iii-iv: y = NUM(S) with S the first d bytes of R || CIPH(R xor [1]^16) || ...
        if plan.fast:
            drop = plan.drop
            from_bytes = int.from_bytes
            if decrypt:
                for base, m in plan.decrypt_steps:
                    y = from_bytes(enc((base ^ a).to_bytes(16, "big")), "big") >> drop
                    a, b = (b - y) % m, a
            else:
                for base, m in plan.encrypt_steps:
                    y = from_bytes(enc((base ^ b).to_bytes(16, "big")), "big") >> drop
                    a, b = b, (a + y) % m
            return a, b
        mod_u, mod_v = plan.mod_u, plan.mod_v
        order = range(9, -1, -1) if decrypt else range(10)
        for i in order:
            y = self._prf(plan, enc, i, a if decrypt else b)
            m = mod_u if i % 2 == 0 else mod_v
            if decrypt:
                a, b = (b - y) % m, a
            else:
                a, b = b, (a + y) % m
        return a, b

    @staticmethod
    def _prf(plan: _Plan, enc: _Encrypt, i: int, src: int) -> int:
        """The general round function (several varying blocks of Q, or d > 16)."""
        data = plan.rounds[i] ^ src
        if plan.blocks == 1:
            r = _cipher_int(enc, data)
        else:
            r = plan.state
            for j in range(plan.blocks - 1, -1, -1):
                r = _cipher_int(enc, r ^ ((data >> (128 * j)) & _MASK128))
        d = plan.d
        if d <= 16:
            return r >> (8 * (16 - d))
        s = r
        count = (d + 15) // 16
        for j in range(1, count):
            s = (s << 128) | _cipher_int(enc, r ^ j)
        return s >> (8 * (16 * count - d))


def _cipher_int(enc: _Encrypt, block: int) -> int:
    return int.from_bytes(enc(block.to_bytes(16, "big")), "big")


def _num(numerals: Sequence[int], radix: int) -> int:
    x = 0
    for digit in numerals:
        x = x * radix + digit
    return x


def _str(x: int, length: int, radix: int) -> list[int]:
    out = [0] * length
    for i in range(length - 1, -1, -1):
        x, out[i] = divmod(x, radix)
    return out
