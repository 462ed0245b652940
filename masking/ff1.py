"""FF1 format-preserving encryption: NIST SP 800-38G (2016) §5.1, Algorithms 7 (encrypt) and 8 (decrypt).

Written here because no maintained FF1 package on PyPI supports Python 3.11: `ff3`/`pyfpe` implement
FF3 only, `pyffx` implements the pre-standard FFX draft, `FPE` 0.1.2 is an unmaintained teaching
release, and `fpr-ff1` requires Python >= 3.12. Built on `cryptography`'s AES in ECB mode used
block by block (the PRF of §4.3 is CBC-MAC with a zero IV, which that computes exactly).
Verified against NIST's nine FF1 samples (tests/masking/test_ff1.py).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["FF1"]

_MAX_TWEAK = 1 << 16


class FF1:
    """FF1 over numerals `0..radix-1` with an AES key of 16, 24 or 32 bytes.

    Domain rule of SP 800-38G §5.1 (revised 2019): radix**minlen >= 1_000_000, so short inputs are refused.
    """

    __slots__ = ("_key", "_local", "radix")

    def __init__(self, key: bytes, radix: int = 10) -> None:
        if len(key) not in (16, 24, 32):
            raise ValueError("FF1 needs an AES key of 16, 24 or 32 bytes")
        if not 2 <= radix <= 1 << 16:
            raise ValueError("FF1 radix must be in [2, 65536]")
        self._key = key
        self.radix = radix
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"FF1(radix={self.radix}, key=<{len(self._key) * 8}-bit, hidden>)"

    def _ecb(self) -> object:
        # One encryptor per thread: cryptography's cipher contexts are not safe to share across threads.
        ctx = getattr(self._local, "ctx", None)
        if ctx is None:
            ctx = Cipher(algorithms.AES(self._key), modes.ECB()).encryptor()  # noqa: S305 - FF1's PRF is CBC-MAC built from raw AES blocks
            self._local.ctx = ctx
        return ctx

    def encrypt(self, numerals: Sequence[int], tweak: bytes = b"") -> list[int]:
        return self._crypt(numerals, tweak, decrypt=False)

    def decrypt(self, numerals: Sequence[int], tweak: bytes = b"") -> list[int]:
        return self._crypt(numerals, tweak, decrypt=True)

    def encrypt_int(self, value: int, length: int, tweak: bytes = b"") -> int:
        return _num(self.encrypt(_str(value, length, self.radix), tweak), self.radix)

    def decrypt_int(self, value: int, length: int, tweak: bytes = b"") -> int:
        return _num(self.decrypt(_str(value, length, self.radix), tweak), self.radix)

    def _crypt(self, numerals: Sequence[int], tweak: bytes, *, decrypt: bool) -> list[int]:
        radix = self.radix
        n = len(numerals)
        t = len(tweak)
        if radix**n < 1_000_000 or n > 1 << 32:
            raise ValueError("FF1 input is outside the permitted domain (radix**len must be >= 10**6)")
        if t >= _MAX_TWEAK:
            raise ValueError("FF1 tweak too long")
        if any(not 0 <= x < radix for x in numerals):
            raise ValueError("FF1 input has a numeral outside the radix")
        u = n // 2
        v = n - u
        # Step 3-4: b bytes hold NUM_radix of the longer half; d bytes of PRF output are used.
        b = ((radix**v - 1).bit_length() + 7) // 8
        d = 4 * ((b + 3) // 4) + 4
        p = bytes([1, 2, 1]) + radix.to_bytes(3, "big") + bytes([10, u % 256]) + n.to_bytes(4, "big")
        p += t.to_bytes(4, "big")
        ecb = self._ecb()
        encrypt_block = ecb.update  # type: ignore[attr-defined]
        # The CBC-MAC state after the fixed block P is the same for all ten rounds.
        y_p: bytes = encrypt_block(p)
        q_prefix = tweak + bytes((-t - b - 1) % 16)
        mod_u = radix**u
        mod_v = radix**v
        a = _num(numerals[:u], radix)
        bb = _num(numerals[u:], radix)
        rounds = range(9, -1, -1) if decrypt else range(10)
        for i in rounds:
            m_mod = mod_u if i % 2 == 0 else mod_v
            src = a if decrypt else bb
            q = q_prefix + bytes([i]) + src.to_bytes(b, "big")
            r = _cbc_mac(encrypt_block, y_p, q)
            s = _expand(encrypt_block, r, d)
            y = int.from_bytes(s, "big")
            if decrypt:
                c = (bb - y) % m_mod
                bb, a = a, c
            else:
                c = (a + y) % m_mod
                a, bb = bb, c
        return _str(a, u, radix) + _str(bb, v, radix)


def _cbc_mac(encrypt_block: object, state: bytes, data: bytes) -> bytes:
    enc = encrypt_block
    y = int.from_bytes(state, "big")
    for off in range(0, len(data), 16):
        block = int.from_bytes(data[off : off + 16], "big") ^ y
        y = int.from_bytes(enc(block.to_bytes(16, "big")), "big")  # type: ignore[operator]
    return y.to_bytes(16, "big")


def _expand(encrypt_block: object, r: bytes, d: int) -> bytes:
    # Step 6.iii: S = R || CIPH(R xor [1]^16) || CIPH(R xor [2]^16) ..., first d bytes.
    if d <= 16:
        return r[:d]
    out = bytearray(r)
    r_int = int.from_bytes(r, "big")
    j = 1
    while len(out) < d:
        out += encrypt_block((r_int ^ j).to_bytes(16, "big"))  # type: ignore[operator]
        j += 1
    return bytes(out[:d])


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
