"""OneGate token: ``base64(AES-256-CBC(key=TOKEN_PASSWORD[:32], IV=0, PKCS#7, "VMID:STIME"))``.

oned (``VirtualMachineContext.cc`` / ``one_util::aes256cbc_encrypt``) writes it to ``token.txt`` on
the context CD; OneGate (``OneGateCloudAuth#decrypt``) decrypts it with the same key and zero IV.
``cryptography`` is used when importable; otherwise a small pure-Python AES keeps the server
standard-library only. Both are checked against the reference test vector in the tests.
"""

from __future__ import annotations

import base64
import hashlib
import random
import re

BLOCK = 16


class TokenError(ValueError):
    """Decryption failed (wrong key, bad padding, bad length): OneGate answers 401."""


# --------------------------------------------------------------------------------------------
# Pure-Python AES (FIPS-197), used only when ``cryptography`` is not importable.
# --------------------------------------------------------------------------------------------


def _xtime(a: int) -> int:
    a <<= 1
    return (a ^ 0x11B) & 0xFF if a & 0x100 else a


def _gmul(a: int, b: int) -> int:
    p = 0
    while b:
        if b & 1:
            p ^= a
        a = _xtime(a)
        b >>= 1
    return p


def _make_sbox() -> tuple[list[int], list[int]]:
    sbox = [0] * 256
    inv = [0] * 256
    for x in range(256):
        # multiplicative inverse in GF(2^8), then the affine transform
        y = 0 if x == 0 else next(c for c in range(1, 256) if _gmul(x, c) == 1)
        s = y
        for shift in range(1, 5):
            s ^= ((y << shift) | (y >> (8 - shift))) & 0xFF
        s ^= 0x63
        sbox[x] = s
        inv[s] = x
    return sbox, inv


_SBOX: list[int] = []
_INV_SBOX: list[int] = []


def _tables() -> tuple[list[int], list[int]]:
    global _SBOX, _INV_SBOX
    if not _SBOX:
        _SBOX, _INV_SBOX = _make_sbox()
    return _SBOX, _INV_SBOX


def _expand_key(key: bytes) -> list[list[int]]:
    sbox, _ = _tables()
    nk, nr = len(key) // 4, {16: 10, 24: 12, 32: 14}[len(key)]
    words = [list(key[4 * i : 4 * i + 4]) for i in range(nk)]
    rcon = 1
    for i in range(nk, 4 * (nr + 1)):
        temp = list(words[i - 1])
        if i % nk == 0:
            temp = [sbox[b] for b in temp[1:] + temp[:1]]
            temp[0] ^= rcon
            rcon = _xtime(rcon)
        elif nk > 6 and i % nk == 4:
            temp = [sbox[b] for b in temp]
        words.append([a ^ b for a, b in zip(words[i - nk], temp, strict=True)])
    return [[b for w in words[4 * r : 4 * r + 4] for b in w] for r in range(nr + 1)]


def _encrypt_block(rk: list[list[int]], block: bytes) -> bytes:
    sbox, _ = _tables()
    s = [b ^ k for b, k in zip(block, rk[0], strict=True)]
    for rnd in range(1, len(rk)):
        s = [sbox[b] for b in s]
        s = [s[(i + 4 * (i % 4)) % 16] for i in range(16)]  # ShiftRows (column-major state)
        if rnd != len(rk) - 1:
            mixed = []
            for c in range(4):
                a = s[4 * c : 4 * c + 4]
                mixed += [
                    _gmul(a[0], 2) ^ _gmul(a[1], 3) ^ a[2] ^ a[3],
                    a[0] ^ _gmul(a[1], 2) ^ _gmul(a[2], 3) ^ a[3],
                    a[0] ^ a[1] ^ _gmul(a[2], 2) ^ _gmul(a[3], 3),
                    _gmul(a[0], 3) ^ a[1] ^ a[2] ^ _gmul(a[3], 2),
                ]
            s = mixed
        s = [b ^ k for b, k in zip(s, rk[rnd], strict=True)]
    return bytes(s)


def _decrypt_block(rk: list[list[int]], block: bytes) -> bytes:
    _, inv = _tables()
    s = [b ^ k for b, k in zip(block, rk[-1], strict=True)]
    for rnd in range(len(rk) - 2, -1, -1):
        s = [s[(i - 4 * (i % 4)) % 16] for i in range(16)]  # InvShiftRows
        s = [inv[b] for b in s]
        s = [b ^ k for b, k in zip(s, rk[rnd], strict=True)]
        if rnd != 0:
            mixed = []
            for c in range(4):
                a = s[4 * c : 4 * c + 4]
                mixed += [
                    _gmul(a[0], 14) ^ _gmul(a[1], 11) ^ _gmul(a[2], 13) ^ _gmul(a[3], 9),
                    _gmul(a[0], 9) ^ _gmul(a[1], 14) ^ _gmul(a[2], 11) ^ _gmul(a[3], 13),
                    _gmul(a[0], 13) ^ _gmul(a[1], 9) ^ _gmul(a[2], 14) ^ _gmul(a[3], 11),
                    _gmul(a[0], 11) ^ _gmul(a[1], 13) ^ _gmul(a[2], 9) ^ _gmul(a[3], 14),
                ]
            s = mixed
    return bytes(s)


def _pure_cbc(key: bytes, data: bytes, encrypt: bool) -> bytes:
    rk = _expand_key(key)
    prev = bytes(BLOCK)
    out = bytearray()
    for i in range(0, len(data), BLOCK):
        chunk = data[i : i + BLOCK]
        if encrypt:
            prev = _encrypt_block(rk, bytes(a ^ b for a, b in zip(chunk, prev, strict=True)))
            out += prev
        else:
            out += bytes(a ^ b for a, b in zip(_decrypt_block(rk, chunk), prev, strict=True))
            prev = chunk
    return bytes(out)


def _crypto_cbc(key: bytes, data: bytes, encrypt: bool) -> bytes | None:
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    cipher = Cipher(algorithms.AES(key), modes.CBC(bytes(BLOCK)))
    ctx = cipher.encryptor() if encrypt else cipher.decryptor()
    return ctx.update(data) + ctx.finalize()


def aes256cbc(key: bytes, data: bytes, encrypt: bool, *, backend: str = "auto") -> bytes:
    """Raw AES-256-CBC with a zero IV, no padding handling. ``backend``: auto|cryptography|pure."""
    if len(key) != 32:
        raise TokenError("key must be 32 bytes")
    if len(data) % BLOCK:
        raise TokenError("wrong final block length")
    if backend in ("auto", "cryptography"):
        out = _crypto_cbc(key, data, encrypt)
        if out is not None:
            return out
        if backend == "cryptography":
            raise TokenError("cryptography is not available")
    return _pure_cbc(key, data, encrypt)


def encrypt_token(plaintext: str, token_password: str, *, backend: str = "auto") -> str:
    """``one_util::aes256cbc_encrypt``: PKCS#7 padding, base64 without line breaks."""
    data = plaintext.encode()
    pad = BLOCK - len(data) % BLOCK
    data += bytes([pad]) * pad
    key = token_password[:32].encode()
    return base64.b64encode(aes256cbc(key, data, True, backend=backend)).decode()


def ruby_decode64(text: str) -> bytes:
    """``Base64.decode64``: lenient, ignores characters outside the alphabet and missing padding."""
    clean = re.sub(r"[^A-Za-z0-9+/]", "", text.split("=", 1)[0])
    clean = clean[: len(clean) - (len(clean) % 4 == 1)]
    clean += "=" * (-len(clean) % 4)
    return base64.b64decode(clean)


def decrypt_token(token: str, token_password: str, *, backend: str = "auto") -> str:
    """``OneGateCloudAuth#decrypt``; raises :class:`TokenError` like OpenSSL would."""
    key = token_password[:32].encode()
    data = aes256cbc(key, ruby_decode64(token), False, backend=backend)
    if not data:
        raise TokenError("wrong final block length")
    pad = data[-1]
    if not 1 <= pad <= BLOCK or data[-pad:] != bytes([pad]) * pad:
        raise TokenError("bad decrypt")
    return data[:-pad].decode("utf-8", errors="replace")


def vm_token(vm_id: int, stime: int, token_password: str) -> str:
    """The token oned writes to ``token.txt`` for a VM (without the trailing newline)."""
    return encrypt_token(f"{vm_id}:{stime}", token_password)


def random_password(rng: random.Random) -> str:
    """``one_util::random_password``: sha256 hex of a random integer."""
    return hashlib.sha256(str(rng.randint(0, 2**31 - 1)).encode()).hexdigest()
